import { Collapsible } from "radix-ui";
import { type ReactNode, useState } from "react";
import { useOutletContext } from "react-router-dom";
import type { EventOut } from "../api/client";
import { conversationOf } from "../lib/messages";
import { formatMetric, metricRows } from "../lib/metrics";
import { formatMs } from "../lib/waterfall";
import type { ProjectContext } from "../pages/ProjectLayout";
import { formatTime } from "../pages/TracesPage";
import { Conversation } from "./Conversation";
import { JsonView } from "./JsonView";
import { AddToDataset, AddToQueue, FeedbackForm } from "./SpanActions";
import "../pages/datasets/datasets.css";

function Section({ title, children, defaultOpen = true }: { title: string; children: ReactNode; defaultOpen?: boolean }) {
  const [open, setOpen] = useState(defaultOpen);
  return (
    <Collapsible.Root open={open} onOpenChange={setOpen} className="section">
      <h3>
        <Collapsible.Trigger className="section-toggle">
          <span aria-hidden="true">{open ? "▾" : "▸"}</span> {title}
        </Collapsible.Trigger>
      </h3>
      <Collapsible.Content>{children}</Collapsible.Content>
    </Collapsible.Root>
  );
}

function isEmpty(v: unknown): boolean {
  return v == null || (typeof v === "object" && Object.keys(v as object).length === 0);
}

function KeyValues({ data, label }: { data: Record<string, unknown>; label: string }) {
  return (
    <table className="kv" aria-label={label}>
      <tbody>
        {Object.entries(data).map(([k, v]) => (
          <tr key={k}>
            <th scope="row">{k}</th>
            <td>{typeof v === "object" && v !== null ? <JsonView value={v} openDepth={0} />
              : typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toPrecision(6))) : String(v)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Metrics({ metrics }: { metrics: Record<string, unknown> }) {
  return (
    <ul className="metric-list" aria-label="Metrics">
      {metricRows(metrics).map((m) => (
        <li key={m.name}>
          <div className="metric-head">
            <span className="metric-name">{m.name}</span>
            <span className="metric-value">{formatMetric(m.value)}</span>
          </div>
          {m.explanation && <p className="metric-expl">{m.explanation}</p>}
          {m.extras.length > 0 && (
            <p className="metric-extras">{m.extras.map(([k, v]) => `${k}: ${formatMetric(v)}`).join(" · ")}</p>
          )}
        </li>
      ))}
    </ul>
  );
}

/** One event: timing, error, its chat as a conversation, inputs/outputs, metadata, metrics
 * (with their explanations), feedback; inside a project page, the actions: add feedback,
 * add to a dataset, add to an annotation queue (``actions={false}`` leaves them out). */
export function SpanDetail({ event, actions = true }: { event: EventOut; actions?: boolean }) {
  const conversation = conversationOf(event.inputs, event.outputs);
  const project = useOutletContext<ProjectContext | undefined>();
  const act = actions && project?.dp ? project : null;
  return (
    <article className="detail" aria-labelledby="detail-title">
      <header>
        <h2 id="detail-title">{event.event_name || "(unnamed)"}</h2>
        <p className="meta-line">
          <span className={`badge t-${event.event_type ?? ""}`}>{event.event_type ?? "event"}</span>
          <span>{formatTime(event.start_time)}</span>
          {event.duration != null && <span>{formatMs(event.duration)}</span>}
          <code className="id" title="event id">{event.event_id}</code>
        </p>
      </header>
      {event.error && (
        <section className="error-box" aria-label="Error">
          <h3>Error</h3>
          <pre>{event.error}</pre>
        </section>
      )}
      {act && (
        <Section title="Add to a dataset or a queue">
          <div className="span-actions">
            <AddToDataset key={`d-${event.event_id}`} projectId={act.projectId} dp={act.dp} eventIds={[event.event_id]} />
            <AddToQueue key={`q-${event.event_id}`} projectId={act.projectId} dp={act.dp} event={event} />
          </div>
        </Section>
      )}
      {conversation.length > 0 && (
        <Section title="Conversation">
          <Conversation messages={conversation} />
        </Section>
      )}
      {!isEmpty(event.inputs) && <Section title="Inputs" defaultOpen={conversation.length === 0}><JsonView value={event.inputs} /></Section>}
      {!isEmpty(event.outputs) && <Section title="Outputs" defaultOpen={conversation.length === 0}><JsonView value={event.outputs} /></Section>}
      {!isEmpty(event.metadata) && <Section title="Metadata"><KeyValues data={event.metadata!} label="Metadata" /></Section>}
      {!isEmpty(event.metrics) && <Section title="Metrics"><Metrics metrics={event.metrics!} /></Section>}
      {(act || !isEmpty(event.feedback)) && (
        <Section title="Feedback">
          {!isEmpty(event.feedback) ? <KeyValues data={event.feedback!} label="Feedback" /> : <p className="muted">No feedback yet.</p>}
          {act && <FeedbackForm key={event.event_id} projectId={act.projectId} dp={act.dp} event={event} />}
        </Section>
      )}
      {!isEmpty(event.config) && <Section title="Configuration" defaultOpen={false}><JsonView value={event.config} /></Section>}
    </article>
  );
}
