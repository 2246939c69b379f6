// The traces page's state that is not the filters: the time range (presets or a custom
// window), the sort (a whitelisted column and a direction, as the planes accept them), and
// the chosen columns (persisted per project in localStorage). Pure functions: unit-tested.

export const RANGES: { key: string; label: string; ms: number | null }[] = [
  { key: "15m", label: "Last 15 minutes", ms: 15 * 60_000 },
  { key: "1h", label: "Last hour", ms: 3_600_000 },
  { key: "24h", label: "Last 24 hours", ms: 86_400_000 },
  { key: "7d", label: "Last 7 days", ms: 7 * 86_400_000 },
  { key: "30d", label: "Last 30 days", ms: 30 * 86_400_000 },
  { key: "all", label: "All time", ms: null },
  { key: "custom", label: "Custom…", ms: null },
];
export const DEFAULT_RANGE = "24h";

export interface TimeWindow {
  gte?: number;
  lte?: number;
}

/** The epoch-ms bounds of a range: a preset relative to ``now``, or the custom ``from`` /
 * ``to`` (epoch ms, either may be missing); an unknown key is the default range. */
export function timeWindow(key: string | null, from: number | null, to: number | null, now: number): TimeWindow {
  if (key === "custom") {
    const out: TimeWindow = {};
    if (from !== null && Number.isFinite(from)) out.gte = from;
    if (to !== null && Number.isFinite(to)) out.lte = to;
    return out;
  }
  const range = RANGES.find((r) => r.key === key) ?? RANGES.find((r) => r.key === DEFAULT_RANGE)!;
  return range.ms === null ? {} : { gte: now - range.ms };
}

/** A ``datetime-local`` input's value (local time, minutes) for epoch ms, and back. */
export function toLocalInput(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return "";
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(text: string): number | null {
  if (!text) return null;
  const ms = new Date(text).getTime();
  return Number.isFinite(ms) ? ms : null;
}

/** A URL number parameter (epoch ms), or null. */
export function numberParam(text: string | null): number | null {
  if (text === null || text.trim() === "") return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

// --- sorting ------------------------------------------------------------------------------

export const SORT_KEYS = ["start_time", "duration", "cost", "total_tokens"] as const;
export type SortKey = (typeof SORT_KEYS)[number];
export type SortOrder = "asc" | "desc";
export interface Sort {
  by: SortKey;
  order: SortOrder;
}
export const DEFAULT_SORT: Sort = { by: "start_time", order: "desc" };

/** ``duration:asc`` (the URL form) → a sort; anything else is the default (newest first). */
export function parseSort(text: string | null): Sort {
  if (!text) return DEFAULT_SORT;
  const [by, order] = text.split(":");
  if (!(SORT_KEYS as readonly string[]).includes(by ?? "") || (order !== "asc" && order !== "desc")) return DEFAULT_SORT;
  return { by: by as SortKey, order };
}

export function formatSort(sort: Sort): string | null {
  return sort.by === DEFAULT_SORT.by && sort.order === DEFAULT_SORT.order ? null : `${sort.by}:${sort.order}`;
}

/** The sort after a click on ``by``'s header: the other direction on the sorted column,
 * largest (or newest) first on another. */
export function nextSort(current: Sort, by: SortKey): Sort {
  if (current.by === by) return { by, order: current.order === "desc" ? "asc" : "desc" };
  return { by, order: "desc" };
}

// --- columns ------------------------------------------------------------------------------

export type Table = "sessions" | "events";

export interface ColumnOption {
  id: string;
  label: string;
}

/** Columns a user may show or hide (the start time and the name are always shown). */
export const SESSION_COLUMNS: ColumnOption[] = [
  { id: "session_id", label: "Session ID" },
  { id: "event_count", label: "Events" },
  { id: "duration", label: "Duration" },
  { id: "error_count", label: "Errors" },
  { id: "model_call_count", label: "Model calls" },
  { id: "total_tokens", label: "Tokens" },
  { id: "cost", label: "Cost" },
  { id: "source", label: "Source" },
];
export const EVENT_COLUMNS: ColumnOption[] = [
  { id: "event_type", label: "Type" },
  { id: "duration", label: "Latency" },
  { id: "error", label: "Status" },
  { id: "model", label: "Model" },
  { id: "total_tokens", label: "Tokens" },
  { id: "cost", label: "Cost" },
  { id: "session_id", label: "Session" },
];
export const DEFAULT_COLUMNS: Record<Table, string[]> = {
  sessions: ["session_id", "event_count", "duration", "error_count", "total_tokens", "cost"],
  events: ["event_type", "duration", "error", "model", "total_tokens", "cost", "session_id"],
};

/** A nested column (a metric or a feedback key) from the project's schema. */
export function isNestedColumn(id: string): boolean {
  return /^(metrics|feedback)\.[^.].*/.test(id);
}

const MAX_COLUMNS = 40;

export function columnsKey(projectId: string): string {
  return `apiary.traces.columns.${projectId}`;
}

/** The stored column choice of a project (validated; the defaults for anything missing or
 * malformed). */
export function parseColumns(text: string | null): Record<Table, string[]> {
  const out: Record<Table, string[]> = { sessions: [...DEFAULT_COLUMNS.sessions], events: [...DEFAULT_COLUMNS.events] };
  if (!text) return out;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null) return out;
    for (const table of ["sessions", "events"] as const) {
      const list = (parsed as Record<string, unknown>)[table];
      if (!Array.isArray(list)) continue;
      const known = new Set((table === "sessions" ? SESSION_COLUMNS : EVENT_COLUMNS).map((c) => c.id));
      const ids = list.filter((v): v is string => typeof v === "string"
        && (known.has(v) || (table === "events" && isNestedColumn(v) && v.length <= 300)));
      out[table] = [...new Set(ids)].slice(0, MAX_COLUMNS);
    }
  } catch {
    // a hand-edited or foreign value: the defaults
  }
  return out;
}

export function toggleColumn(chosen: readonly string[], id: string, on: boolean): string[] {
  const without = chosen.filter((c) => c !== id);
  return on ? [...without, id] : without;
}

/** The value at a dotted ``path`` of an object (undefined when absent). */
export function pick(obj: unknown, path: string): unknown {
  let current: unknown = obj;
  for (const key of path.split(".")) {
    if (typeof current !== "object" || current === null || Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

/** A metric or feedback value for a table cell. */
export function formatValue(value: unknown): string {
  if (value === undefined || value === null) return "—";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return String(Number(value.toPrecision(4)));
  }
  if (typeof value === "boolean" || typeof value === "string") return String(value);
  return JSON.stringify(value);
}

export function formatCost(cost: number | null | undefined): string {
  if (cost == null || cost <= 0) return "—";
  return cost >= 0.01 ? `$${cost.toFixed(2)}` : `$${cost.toFixed(4)}`;
}

export function formatCount(n: number | null | undefined): string {
  if (n == null || n === 0) return "—";
  return n.toLocaleString("en-US");
}

// --- the project's schema ----------------------------------------------------------------

export interface SchemaPaths {
  /** ``metrics.x`` / ``feedback.y`` paths with a scalar value, for columns. */
  scores: string[];
  /** Known nested paths per column (metadata, metrics, feedback, user_properties), for suggestions. */
  byColumn: Record<string, string[]>;
}

export function schemaPaths(details: readonly { name: string; value_type: string }[]): SchemaPaths {
  const scores = new Set<string>();
  const byColumn: Record<string, Set<string>> = {};
  for (const d of details) {
    const dot = d.name.indexOf(".");
    if (dot <= 0 || d.value_type === "object" || d.value_type === "array" || d.value_type === "null") continue;
    const column = d.name.slice(0, dot);
    (byColumn[column] ??= new Set()).add(d.name.slice(dot + 1));
    if (column === "metrics" || column === "feedback") scores.add(d.name);
  }
  return {
    scores: [...scores].sort(),
    byColumn: Object.fromEntries(Object.entries(byColumn).map(([k, v]) => [k, [...v].sort()])),
  };
}
