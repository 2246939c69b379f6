import { Link } from "react-router-dom";
import type { EventOut } from "../../api/client";
import { Conversation } from "../../components/Conversation";
import { JsonView } from "../../components/JsonView";
import { conversationOf } from "../../lib/messages";
import { formatMs } from "../../lib/waterfall";
import { formatTime } from "../TracesPage";

function isEmpty(v: unknown): boolean {
  return v == null || (typeof v === "object" && Object.keys(v as object).length === 0);
}

function scalar(v: unknown): string {
  if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(6)));
  return String(v);
}

function Pairs({ data, label }: { data: Record<string, unknown>; label: string }) {
  return (
    <table className="kv" aria-label={label}>
      <tbody>
        {Object.entries(data).map(([k, v]) => (
          <tr key={k}><th scope="row">{k}</th>
            <td>{typeof v === "object" && v !== null ? <JsonView value={v} openDepth={0} /> : scalar(v)}</td></tr>
        ))}
      </tbody>
    </table>
  );
}

/** The event under review, read-only: its chat as a conversation (else its inputs and
 * outputs), error, metadata and the feedback it already has. */
export function EventView({ event, projectId }: { event: EventOut; projectId: string }) {
  const conversation = conversationOf(event.inputs, event.outputs);
  const sessionUrl = event.session_id
    ? `/projects/${projectId}/sessions/${encodeURIComponent(event.session_id)}?event=${encodeURIComponent(event.event_id)}`
    : null;
  return (
    <article className="review-event" aria-labelledby="review-event-title">
      <header>
        <h2 id="review-event-title">{event.event_name || "(unnamed)"}</h2>
        <p className="meta-line">
          <span className={`badge t-${event.event_type ?? ""}`}>{event.event_type ?? "event"}</span>
          <span>{formatTime(event.start_time)}</span>
          {event.duration != null && <span>{formatMs(event.duration)}</span>}
          {sessionUrl && <Link to={sessionUrl}>Open in its session</Link>}
        </p>
      </header>
      {event.error && (
        <section className="error-box" aria-label="Error">
          <h3>Error</h3>
          <pre>{event.error}</pre>
        </section>
      )}
      {conversation.length > 0 ? (
        <section aria-labelledby="review-conv">
          <h3 id="review-conv">Conversation</h3>
          <Conversation messages={conversation} />
        </section>
      ) : (
        <div className="review-io">
          <section aria-labelledby="review-inputs">
            <h3 id="review-inputs">Inputs</h3>
            {isEmpty(event.inputs) ? <p className="muted">None</p> : <JsonView value={event.inputs} />}
          </section>
          <section aria-labelledby="review-outputs">
            <h3 id="review-outputs">Outputs</h3>
            {isEmpty(event.outputs) ? <p className="muted">None</p> : <JsonView value={event.outputs} />}
          </section>
        </div>
      )}
      {!isEmpty(event.metadata) && (
        <section aria-labelledby="review-meta">
          <h3 id="review-meta">Metadata</h3>
          <Pairs data={event.metadata!} label="Metadata" />
        </section>
      )}
      {!isEmpty(event.feedback) && (
        <section aria-labelledby="review-feedback">
          <h3 id="review-feedback">Feedback so far</h3>
          <Pairs data={event.feedback!} label="Feedback so far" />
        </section>
      )}
    </article>
  );
}
