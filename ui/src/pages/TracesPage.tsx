import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { createColumnHelper } from "@tanstack/react-table";
import { Label } from "radix-ui";
import { useMemo } from "react";
import { Link, useSearchParams } from "react-router-dom";
import type { components } from "../api/data";
import { type EventOut, unwrap } from "../api/client";
import { DataTable } from "../components/DataTable";
import { FilterBuilder } from "../components/FilterBuilder";
import { type Condition, decodeFilters, encodeFilters, fromFilters, toFilters } from "../lib/filters";
import { formatMs } from "../lib/waterfall";
import { useProjectContext } from "./ProjectLayout";

type SessionSummary = components["schemas"]["SessionSummary"];

export const RANGES: { key: string; label: string; ms: number | null }[] = [
  { key: "15m", label: "Last 15 minutes", ms: 15 * 60_000 },
  { key: "1h", label: "Last hour", ms: 3_600_000 },
  { key: "24h", label: "Last 24 hours", ms: 86_400_000 },
  { key: "7d", label: "Last 7 days", ms: 7 * 86_400_000 },
  { key: "30d", label: "Last 30 days", ms: 30 * 86_400_000 },
  { key: "all", label: "All time", ms: null },
];
const PAGE_SIZE = 50;
const POLL_MS = 3000;

export function formatTime(ms: number | null | undefined): string {
  if (ms == null) return "—";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function sessionLink(projectId: string, sessionId: string, eventId?: string): string {
  const base = `/projects/${projectId}/sessions/${encodeURIComponent(sessionId)}`;
  return eventId ? `${base}?event=${encodeURIComponent(eventId)}` : base;
}

const eventColumn = createColumnHelper<EventOut>();
const sessionColumn = createColumnHelper<SessionSummary>();

/** The project's sessions (newest first) or, with filters, its matching events; a time
 * range, server-side pages, and polling so that new data appears without a reload. */
export function TracesPage() {
  const { projectId, dp } = useProjectContext();
  const [params, setParams] = useSearchParams();
  const range = RANGES.find((r) => r.key === params.get("range")) ?? RANGES[2]!;
  const filters = decodeFilters(params.get("f")) ?? [];
  const conditions = fromFilters(filters);
  const page = Math.max(1, Number(params.get("page")) || 1);
  const filtered = filters.length > 0;

  function update(next: { range?: string; conditions?: Condition[]; page?: number }) {
    const p = new URLSearchParams(params);
    if (next.range !== undefined) p.set("range", next.range);
    if (next.conditions !== undefined) {
      if (next.conditions.length > 0) p.set("f", encodeFilters(toFilters(next.conditions)));
      else p.delete("f");
    }
    p.set("page", String(next.page ?? 1));
    setParams(p);
  }

  const sessions = useQuery({
    queryKey: ["sessions", projectId, range.key, page],
    enabled: !filtered,
    queryFn: async () => unwrap(await dp.client.GET("/v1/sessions", {
      params: { query: { limit: PAGE_SIZE, page, ...(range.ms !== null ? { start: String(Date.now() - range.ms) } : {}) } },
    })),
    placeholderData: keepPreviousData,
    refetchInterval: POLL_MS, // paused while the tab is hidden
  });

  const events = useQuery({
    queryKey: ["events", projectId, filters, range.key, page],
    enabled: filtered,
    queryFn: async () => unwrap(await dp.client.POST("/v1/events/export", {
      body: { filters, limit: PAGE_SIZE, page, ...(range.ms !== null ? { dateRange: { $gte: Date.now() - range.ms } } : {}) },
    })),
    placeholderData: keepPreviousData,
    refetchInterval: POLL_MS,
  });

  const eventColumns = useMemo(() => [
    eventColumn.accessor("start_time", { header: "Started", cell: (c) => formatTime(c.getValue()) }),
    eventColumn.accessor("event_name", {
      header: "Name",
      cell: (c) => {
        const e = c.row.original;
        const name = e.event_name || "(unnamed)";
        return e.session_id ? <Link to={sessionLink(projectId, e.session_id, e.event_id)}>{name}</Link> : name;
      },
    }),
    eventColumn.accessor("event_type", { header: "Type", cell: (c) => <span className={`badge t-${c.getValue() ?? ""}`}>{c.getValue() ?? "—"}</span> }),
    eventColumn.accessor("duration", { header: "Duration", cell: (c) => (c.getValue() == null ? "—" : formatMs(c.getValue()!)) }),
    eventColumn.accessor("error", { header: "Status", cell: (c) => (c.getValue() ? <span className="status-error" title={c.getValue()!}>Error</span> : <span className="status-ok">OK</span>) }),
    eventColumn.accessor("session_id", { header: "Session", cell: (c) => <code className="id">{c.getValue()?.slice(0, 12) ?? "—"}</code> }),
  ], [projectId]);

  const sessionColumns = useMemo(() => [
    sessionColumn.accessor("start_time", { header: "Started", cell: (c) => formatTime(c.getValue()) }),
    sessionColumn.accessor("session_name", {
      header: "Session",
      cell: (c) => <Link to={sessionLink(projectId, c.row.original.session_id)}>{c.getValue() || c.row.original.session_id.slice(0, 16)}</Link>,
    }),
    sessionColumn.accessor("event_count", { header: "Events" }),
    sessionColumn.accessor("duration", { header: "Duration", cell: (c) => formatMs(c.getValue()) }),
    sessionColumn.accessor("error_count", { header: "Errors", cell: (c) => (c.getValue() > 0 ? <span className="status-error">{c.getValue()}</span> : "0") }),
    sessionColumn.accessor("total_tokens", { header: "Tokens" }),
    sessionColumn.accessor("cost", { header: "Cost", cell: (c) => (c.getValue() > 0 ? `$${c.getValue().toFixed(4)}` : "—") }),
  ], [projectId]);

  const active = filtered ? events : sessions;
  const total = filtered ? events.data?.totalEvents ?? 0 : sessions.data?.totalSessions ?? 0;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const noun = filtered ? "event" : "session";

  return (
    <div className="page">
      <div className="page-head">
        <h1>Traces</h1>
        <div className="range">
          <Label.Root htmlFor="range-select">Time range</Label.Root>
          <select id="range-select" value={range.key} onChange={(e) => update({ range: e.target.value })}>
            {RANGES.map((r) => <option key={r.key} value={r.key}>{r.label}</option>)}
          </select>
        </div>
        <span className="live">
          {active.dataUpdatedAt ? `Live · updated ${new Date(active.dataUpdatedAt).toLocaleTimeString()}` : ""}
        </span>
      </div>
      <FilterBuilder conditions={conditions} onChange={(next) => update({ conditions: next })} />
      {active.error && <p className="error" role="alert">{active.error.message}</p>}
      {filtered ? (
        <DataTable label="Events" data={events.data?.events ?? []} columns={eventColumns} rowId={(e) => e.event_id}
          loading={events.isPending} empty="No events match in this time range."
          rowClass={(e) => (e.error ? "row-error" : undefined)} />
      ) : (
        <DataTable label="Sessions" data={sessions.data?.sessions ?? []} columns={sessionColumns} rowId={(s) => s.session_id}
          loading={sessions.isPending} empty="No sessions in this time range."
          rowClass={(s) => (s.error_count > 0 ? "row-error" : undefined)} />
      )}
      <nav className="pager" aria-label="Pages">
        <button type="button" disabled={page <= 1} onClick={() => update({ page: page - 1 })}>Previous</button>
        <span>Page {page} of {pages} · {total} {noun}{total === 1 ? "" : "s"}</span>
        <button type="button" disabled={page >= pages} onClick={() => update({ page: page + 1 })}>Next</button>
      </nav>
    </div>
  );
}
