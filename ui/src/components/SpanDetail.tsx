import { Collapsible } from "radix-ui";
import { type ReactNode, useState } from "react";
import type { EventOut } from "../api/client";
import { conversationOf } from "../lib/messages";
import { formatMs } from "../lib/waterfall";
import { formatTime } from "../pages/TracesPage";
import { JsonView } from "./JsonView";

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

/** One event: timing, error, its chat as a conversation, inputs/outputs, metadata, metrics. */
export function SpanDetail({ event }: { event: EventOut }) {
  const conversation = conversationOf(event.inputs, event.outputs);
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
      {conversation.length > 0 && (
        <Section title="Conversation">
          <ol className="conversation" aria-label="Conversation">
            {conversation.map((m, i) => (
              <li key={i} className={`msg role-${m.role}`}>
                <span className="role">{m.role}</span>
                {m.text && <div className="msg-text">{m.text}</div>}
                {m.toolCalls.map((t, j) => (
                  <div key={j} className="tool-call">
                    <span className="role">tool call</span> <code>{t.name}</code>
                    <pre>{t.arguments}</pre>
                  </div>
                ))}
              </li>
            ))}
          </ol>
        </Section>
      )}
      {!isEmpty(event.inputs) && <Section title="Inputs" defaultOpen={conversation.length === 0}><JsonView value={event.inputs} /></Section>}
      {!isEmpty(event.outputs) && <Section title="Outputs" defaultOpen={conversation.length === 0}><JsonView value={event.outputs} /></Section>}
      {!isEmpty(event.metadata) && <Section title="Metadata"><KeyValues data={event.metadata!} label="Metadata" /></Section>}
      {!isEmpty(event.metrics) && <Section title="Metrics"><KeyValues data={event.metrics!} label="Metrics" /></Section>}
      {!isEmpty(event.feedback) && <Section title="Feedback"><KeyValues data={event.feedback!} label="Feedback" /></Section>}
      {!isEmpty(event.config) && <Section title="Configuration" defaultOpen={false}><JsonView value={event.config} /></Section>}
    </article>
  );
}
