// Pieces of the traces page: the time range picker, the column chooser, the search box,
// a session id cell, and the empty state that says how to send a first trace.
import { Label } from "radix-ui";
import { type FormEvent, useEffect, useId, useState } from "react";
import {
  type ColumnOption, fromLocalInput, RANGES, toLocalInput,
} from "./traceState";

/** A session (or event) id in full: monospace, cut visually by CSS, the whole id in the
 * tooltip and in the accessible name (the text is the full id). */
export function FullId({ id }: { id: string }) {
  return <code className="full-id" title={id}>{id}</code>;
}

export function TimeRange({ range, from, to, onChange }: {
  range: string;
  from: number | null;
  to: number | null;
  onChange: (next: { range: string; from?: number | null; to?: number | null }) => void;
}) {
  const id = useId();
  return (
    <div className="range">
      <Label.Root htmlFor={`${id}-range`}>Time range</Label.Root>
      <select id={`${id}-range`} value={range} onChange={(e) => {
        const next = e.target.value;
        if (next === "custom") onChange({ range: next, from: from ?? Date.now() - 86_400_000, to });
        else onChange({ range: next });
      }}>
        {RANGES.map((r) => <option key={r.key} value={r.key}>{r.label}</option>)}
      </select>
      {range === "custom" && (
        <>
          <Label.Root htmlFor={`${id}-from`}>From</Label.Root>
          <input id={`${id}-from`} type="datetime-local" value={toLocalInput(from)}
            onChange={(e) => onChange({ range, from: fromLocalInput(e.target.value), to })} />
          <Label.Root htmlFor={`${id}-to`}>To</Label.Root>
          <input id={`${id}-to`} type="datetime-local" value={toLocalInput(to)}
            onChange={(e) => onChange({ range, from, to: fromLocalInput(e.target.value) })} />
        </>
      )}
    </div>
  );
}

export function SearchBox({ value, onSearch }: { value: string; onSearch: (text: string) => void }) {
  const id = useId();
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  function submit(event: FormEvent) {
    event.preventDefault();
    onSearch(text.trim());
  }
  return (
    <form className="search" role="search" onSubmit={submit}>
      <Label.Root htmlFor={`${id}-q`} className="visually-hidden">Search names, inputs and outputs</Label.Root>
      <input id={`${id}-q`} type="search" placeholder="Search names, inputs, outputs…" value={text}
        onChange={(e) => setText(e.target.value)} />
      <button type="submit">Search</button>
      {value && <button type="button" className="link" onClick={() => onSearch("")}>Clear search</button>}
    </form>
  );
}

/** Checkboxes for the columns a table may show (a disclosure: keyboard and screen-reader
 * friendly without a popover). */
export function ColumnChooser({ table, options, chosen, onToggle }: {
  table: string;
  options: ColumnOption[];
  chosen: readonly string[];
  onToggle: (id: string, on: boolean) => void;
}) {
  const id = useId();
  const base = options.filter((o) => !o.id.includes("."));
  const scores = options.filter((o) => o.id.includes("."));
  const box = (o: ColumnOption) => (
    <label key={o.id} className="check">
      <input type="checkbox" checked={chosen.includes(o.id)} onChange={(e) => onToggle(o.id, e.target.checked)} />
      <span>{o.label}</span>
    </label>
  );
  return (
    <details className="column-chooser">
      <summary>Columns</summary>
      <div className="column-panel">
        <fieldset>
          <legend>Columns of the {table} table</legend>
          {base.map(box)}
        </fieldset>
        {scores.length > 0 && (
          <fieldset>
            <legend>Metrics and feedback</legend>
            {scores.map(box)}
          </fieldset>
        )}
        {scores.length === 0 && table === "events" && (
          <p className="muted" id={`${id}-none`}>No metrics or feedback recorded in this project yet.</p>
        )}
        {table === "sessions" && (
          <p className="muted">Metric and feedback columns are per event: add a filter or search to list events.</p>
        )}
      </div>
    </details>
  );
}

/** No sessions to show: how to send a first trace (or widen the range). */
export function NoTraces({ rangeLabel, dataPlaneUrl }: { rangeLabel: string; dataPlaneUrl: string }) {
  return (
    <div className="empty-state">
      <p><strong>No sessions in {rangeLabel.toLowerCase()}.</strong> Try a longer time range, or send a trace:</p>
      <ol>
        <li>Create an API key in <em>Settings → API keys</em>.</li>
        <li>Point an OpenTelemetry OTLP/HTTP exporter at <code>{dataPlaneUrl}/v1/traces</code> with the header
          {" "}<code>Authorization: Bearer &lt;API key&gt;</code>, or use the HoneyHive SDK, or
          {" "}<code>POST {dataPlaneUrl}/v1/events</code>.</li>
        <li>New sessions appear here within seconds, without a reload.</li>
      </ol>
    </div>
  );
}
