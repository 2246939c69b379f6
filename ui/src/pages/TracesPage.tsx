import { type ColumnDef, createColumnHelper } from "@tanstack/react-table";
import { useCallback, useEffect, useMemo, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import type { components } from "../api/data";
import type { EventOut } from "../api/client";
import { PAGE_SIZE, useEventList, useScoreFields, useSessionList } from "../api/traces";
import { DataTable } from "../components/DataTable";
import { FilterBuilder } from "../components/FilterBuilder";
import { type Condition, decodeFilters, encodeFilters, fromFilters, toFilters } from "../lib/filters";
import { formatMs } from "../lib/waterfall";
import { useProjectContext } from "./ProjectLayout";
import { ColumnChooser, FullId, NoTraces, SearchBox, TimeRange } from "./traces/parts";
import {
  type ColumnOption, columnsKey, DEFAULT_RANGE, EVENT_COLUMNS, formatCost, formatCount, formatSort, formatValue,
  nextSort, numberParam, parseColumns, parseSort, pick, RANGES, SESSION_COLUMNS, type SortKey, type Table,
  timeWindow, toggleColumn,
} from "./traces/traceState";
import "./traces/traces.css";

type SessionSummary = components["schemas"]["SessionSummary"];

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
/** Column id -> the server's sort key (the same for both tables). */
const SORTABLE: Record<string, SortKey> = {
  start_time: "start_time", duration: "duration", cost: "cost", total_tokens: "total_tokens",
};

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** The columns chosen for a table, persisted per project in localStorage. */
function useChosenColumns(projectId: string): [Record<Table, string[]>, (table: Table, id: string, on: boolean) => void] {
  const key = columnsKey(projectId);
  const [chosen, setChosen] = useState(() => parseColumns(localStorage.getItem(key)));
  const [forKey, setForKey] = useState(key);
  if (forKey !== key) { // another project: its own choice
    setForKey(key);
    setChosen(parseColumns(localStorage.getItem(key)));
  }
  const toggle = useCallback((table: Table, id: string, on: boolean) => {
    setChosen((current) => {
      const next = { ...current, [table]: toggleColumn(current[table], id, on) };
      try {
        localStorage.setItem(key, JSON.stringify(next));
      } catch {
        // storage full or disabled: the choice lasts for this visit
      }
      return next;
    });
  }, [key]);
  return [chosen, toggle];
}

/** The project's sessions (newest first) or, with filters or a search, its matching
 * events; a time range, sortable columns (server-side), chosen columns, server-side pages,
 * and polling so that new data appears without a reload. Everything but the columns is in
 * the URL. */
export function TracesPage() {
  const { projectId, dp } = useProjectContext();
  const [params, setParams] = useSearchParams();
  const rangeKey = RANGES.some((r) => r.key === params.get("range")) ? params.get("range")! : DEFAULT_RANGE;
  const from = numberParam(params.get("from"));
  const to = numberParam(params.get("to"));
  const filters = useMemo(() => decodeFilters(params.get("f")) ?? [], [params]);
  const conditions = fromFilters(filters);
  const search = params.get("q") ?? "";
  const sort = parseSort(params.get("sort"));
  const page = Math.max(1, Number(params.get("page")) || 1);
  const filtered = filters.length > 0 || search !== "";
  // The window of a relative range moves with each poll; its start is recomputed per query.
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => { // a relative range follows the clock (once a minute)
    const timer = setInterval(() => setNow(Date.now()), 60_000);
    return () => clearInterval(timer);
  }, []);
  const when = useMemo(() => timeWindow(rangeKey, from, to, now), [rangeKey, from, to, now]);

  function update(next: {
    range?: string; from?: number | null; to?: number | null; conditions?: Condition[]; q?: string; sort?: string | null; page?: number;
  }) {
    const p = new URLSearchParams(params);
    if (next.range !== undefined) {
      p.set("range", next.range);
      if (next.range !== "custom") { p.delete("from"); p.delete("to"); }
      setNow(Date.now());
    }
    for (const bound of ["from", "to"] as const) {
      const v = next[bound];
      if (v !== undefined) {
        if (v === null) p.delete(bound);
        else p.set(bound, String(Math.round(v)));
      }
    }
    if (next.conditions !== undefined) {
      if (next.conditions.length > 0) p.set("f", encodeFilters(toFilters(next.conditions)));
      else p.delete("f");
    }
    if (next.q !== undefined) {
      if (next.q) p.set("q", next.q);
      else p.delete("q");
    }
    if (next.sort !== undefined) {
      if (next.sort) p.set("sort", next.sort);
      else p.delete("sort");
    }
    p.set("page", String(next.page ?? 1));
    setParams(p);
  }

  const sessions = useSessionList(dp, when, sort, page, !filtered);
  const events = useEventList(dp, filters, search, when, sort, page, filtered);
  const schema = useScoreFields(dp);
  const [chosen, toggleColumnFor] = useChosenColumns(projectId);
  const scoreOptions: ColumnOption[] = useMemo(() => {
    const known = new Set(schema.data?.scores ?? []);
    for (const id of chosen.events) if (id.includes(".")) known.add(id); // chosen earlier, not in the schema now
    return [...known].sort().map((id) => ({ id, label: id }));
  }, [schema.data, chosen.events]);

  const eventColumns = useMemo(() => {
    const all: Record<string, ColumnDef<EventOut, any>> = {
      event_type: eventColumn.accessor("event_type", { id: "event_type", header: "Type", cell: (c) => <span className={`badge t-${c.getValue() ?? ""}`}>{c.getValue() ?? "—"}</span> }),
      duration: eventColumn.accessor("duration", { id: "duration", header: "Latency", cell: (c) => (c.getValue() == null ? "—" : formatMs(c.getValue()!)) }),
      error: eventColumn.accessor("error", { id: "error", header: "Status", cell: (c) => (c.getValue() ? <span className="status-error" title={c.getValue()!}>Error</span> : <span className="status-ok">OK</span>) }),
      model: eventColumn.accessor((e) => (typeof e.model === "string" && e.model ? e.model : null), { id: "model", header: "Model", cell: (c) => c.getValue() ?? "—" }),
      total_tokens: eventColumn.accessor((e) => num(e.total_tokens), { id: "total_tokens", header: "Tokens", cell: (c) => formatCount(c.getValue()) }),
      cost: eventColumn.accessor((e) => num(e.cost), { id: "cost", header: "Cost", cell: (c) => formatCost(c.getValue()) }),
      session_id: eventColumn.accessor("session_id", {
        id: "session_id", header: "Session",
        cell: (c) => (c.getValue() ? <Link to={sessionLink(projectId, c.getValue()!)} className="id-link"><FullId id={c.getValue()!} /></Link> : "—"),
      }),
    };
    const columns: ColumnDef<EventOut, any>[] = [
      eventColumn.accessor("start_time", { id: "start_time", header: "Started", cell: (c) => formatTime(c.getValue()) }),
      eventColumn.accessor("event_name", {
        id: "event_name", header: "Name",
        cell: (c) => {
          const e = c.row.original;
          const name = e.event_name || "(unnamed)";
          return e.session_id ? <Link to={sessionLink(projectId, e.session_id, e.event_id)}>{name}</Link> : name;
        },
      }),
    ];
    for (const id of chosen.events) {
      const known = all[id];
      if (known) columns.push(known);
      else if (id.includes(".")) {
        const [column, ...rest] = id.split(".");
        const path = rest.join(".");
        columns.push(eventColumn.accessor((e) => pick(column === "metrics" ? e.metrics : e.feedback, path), {
          id, header: id, cell: (c) => <span className="num">{formatValue(c.getValue())}</span>,
        }));
      }
    }
    return columns;
  }, [projectId, chosen.events]);

  const sessionColumns = useMemo(() => {
    const all: Record<string, ColumnDef<SessionSummary, any>> = {
      session_id: sessionColumn.accessor("session_id", { id: "session_id", header: "Session ID", cell: (c) => <FullId id={c.getValue()} /> }),
      event_count: sessionColumn.accessor("event_count", { id: "event_count", header: "Events", cell: (c) => <span className="num">{c.getValue()}</span> }),
      duration: sessionColumn.accessor("duration", { id: "duration", header: "Duration", cell: (c) => formatMs(c.getValue()) }),
      error_count: sessionColumn.accessor("error_count", { id: "error_count", header: "Errors", cell: (c) => (c.getValue() > 0 ? <span className="status-error">{c.getValue()}</span> : "0") }),
      model_call_count: sessionColumn.accessor("model_call_count", { id: "model_call_count", header: "Model calls" }),
      total_tokens: sessionColumn.accessor("total_tokens", { id: "total_tokens", header: "Tokens", cell: (c) => formatCount(c.getValue()) }),
      cost: sessionColumn.accessor("cost", { id: "cost", header: "Cost", cell: (c) => formatCost(c.getValue()) }),
      source: sessionColumn.accessor("source", { id: "source", header: "Source", cell: (c) => c.getValue() || "—" }),
    };
    const columns: ColumnDef<SessionSummary, any>[] = [
      sessionColumn.accessor("start_time", { id: "start_time", header: "Started", cell: (c) => formatTime(c.getValue()) }),
      sessionColumn.accessor("session_name", {
        id: "session_name", header: "Session",
        cell: (c) => {
          const s = c.row.original;
          return <Link to={sessionLink(projectId, s.session_id)}>{c.getValue() || <FullId id={s.session_id} />}</Link>;
        },
      }),
    ];
    for (const id of chosen.sessions) {
      const known = all[id];
      if (known) columns.push(known);
    }
    return columns;
  }, [projectId, chosen.sessions]);

  const active = filtered ? events : sessions;
  const total = filtered ? events.data?.totalEvents ?? 0 : sessions.data?.totalSessions ?? 0;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const noun = filtered ? "event" : "session";
  const table: Table = filtered ? "events" : "sessions";
  const rangeLabel = rangeKey === "custom" ? "This time range" : RANGES.find((r) => r.key === rangeKey)!.label;
  const onSort = (key: string) => update({ sort: formatSort(nextSort(sort, key as SortKey)) });
  const failed = active.error && !active.data;

  return (
    <div className="page traces-page">
      <div className="page-head">
        <h1>Traces</h1>
        <TimeRange range={rangeKey} from={from} to={to} onChange={(n) => update(n)} />
        <SearchBox value={search} onSearch={(q) => update({ q })} />
        <span className="spacer" />
        <span className="live" aria-live="off">
          {active.dataUpdatedAt ? `Live · updated ${new Date(active.dataUpdatedAt).toLocaleTimeString()}` : ""}
        </span>
      </div>
      <FilterBuilder conditions={conditions} onChange={(next) => update({ conditions: next })}
        suggestions={schema.data?.byColumn}
        emptyText={search ? "No filters: the search alone picks the events."
          : "No filters: every session in the time range. Add a filter or search to list matching events."} />
      <div className="table-bar">
        <p className="table-title">
          {filtered ? "Matching events" : "Sessions"}
          {search && <> containing <q>{search}</q></>}
        </p>
        <ColumnChooser table={table} options={filtered ? [...EVENT_COLUMNS, ...scoreOptions] : SESSION_COLUMNS}
          chosen={chosen[table]} onToggle={(id, on) => toggleColumnFor(table, id, on)} />
      </div>
      {active.error && (
        <div className="error-box" role="alert">
          <strong>{filtered ? "The events could not be loaded" : "The sessions could not be loaded"}:</strong> {active.error.message}
          {failed && filtered && <p>Check the filters and the search above: change or remove the one the message names.</p>}
          {failed && !filtered && <p>Retrying every few seconds.</p>}
        </div>
      )}
      {!failed && <div className="table-scroll">
        {filtered ? (
          <DataTable label="Events" data={events.data?.events ?? []} columns={eventColumns} rowId={(e) => `${e.session_id ?? ""}/${e.event_id}`}
            loading={events.isPending && !events.error}
            empty={search ? `No events in ${rangeLabel.toLowerCase()} contain “${search}”.` : `No events match in ${rangeLabel.toLowerCase()}.`}
            rowClass={(e) => (e.error ? "row-error" : undefined)}
            sortable={SORTABLE} sort={sort} onSort={onSort} />
        ) : (
          <DataTable label="Sessions" data={sessions.data?.sessions ?? []} columns={sessionColumns} rowId={(s) => s.session_id}
            loading={sessions.isPending && !sessions.error}
            empty={<NoTraces rangeLabel={rangeLabel} dataPlaneUrl={dp.plane.url} />}
            rowClass={(s) => (s.error_count > 0 ? "row-error" : undefined)}
            sortable={SORTABLE} sort={sort} onSort={onSort} />
        )}
      </div>}
      {!failed && <nav className="pager" aria-label="Pages">
        <button type="button" disabled={page <= 1} onClick={() => update({ page: page - 1 })}>Previous</button>
        <span>Page {page} of {pages} · {total.toLocaleString("en-US")} {noun}{total === 1 ? "" : "s"}</span>
        <button type="button" disabled={page >= pages} onClick={() => update({ page: page + 1 })}>Next</button>
      </nav>}
    </div>
  );
}
