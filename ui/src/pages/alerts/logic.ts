// Pure logic of the alert pages (unit-tested in logic.test.ts): the form <-> the rule's
// condition JSON (docs/alerts.md), the same threshold checks the control plane makes (so
// most mistakes are shown before a round trip, next to the same field the server's 400
// names), which field an API error is about, state badges, and the preview chart's scale.
import { type Condition, type EventFilter, fromFilters, toFilters } from "../../lib/filters";

export type ConditionType = "aggregate" | "drift";
export type Op = ">" | ">=" | "<" | "<=";
export const OPS: readonly Op[] = [">=", ">", "<=", "<"];
const UPPER: ReadonlySet<string> = new Set([">", ">="]);

/** The measured fields without an aggregation, with their labels. */
export const BASIC_FIELDS: ReadonlyArray<readonly [string, string]> = [
  ["event_count", "Event count"],
  ["error_rate", "Error rate (share of events with an error)"],
  ["latency_p50", "Latency p50 (ms)"],
  ["latency_p95", "Latency p95 (ms)"],
  ["latency_p99", "Latency p99 (ms)"],
  ["cost", "Cost ($)"],
  ["tokens", "Tokens"],
];
export type FieldKind = string; // a BASIC_FIELDS key, or "metrics" / "feedback"
export type Aggregation = "mean" | "share_true";
export type Direction = "up" | "down" | "either";

export type Unit = "s" | "m" | "h" | "d";
export const UNITS: ReadonlyArray<readonly [Unit, string, number]> = [
  ["s", "seconds", 1], ["m", "minutes", 60], ["h", "hours", 3600], ["d", "days", 86_400],
];

/** A duration as typed: an amount (text, as the input holds it) and a unit. */
export interface Duration {
  amount: string;
  unit: Unit;
}

export interface ThresholdForm {
  enabled: boolean;
  op: Op;
  value: string;
}

/** What the alert form holds (strings where the user types). */
export interface AlertForm {
  name: string;
  description: string;
  type: ConditionType;
  fieldKind: FieldKind;
  /** For metrics / feedback: the key path (e.g. "grounded"). */
  scoreName: string;
  aggregation: Aggregation;
  filters: Condition[];
  window: Duration;
  /** Drift: empty amount = the API's default (the window's own length). */
  comparison: Duration;
  direction: Direction;
  warning: ThresholdForm;
  critical: ThresholdForm;
  minDuration: Duration;
}

/** The condition JSON of AlertCreate / AlertUpdate. */
export interface ConditionJson {
  type: ConditionType;
  field: string;
  aggregation?: Aggregation;
  filters: EventFilter[];
  window_s: number;
  comparison_window_s?: number;
  direction?: Direction;
  warning?: { op: Op; value: number };
  critical?: { op: Op; value: number };
  min_duration_s: number;
}

/** Field path (as the API names it: "name", "condition.window_s", ...) -> message. */
export type FieldErrors = Record<string, string>;

export function emptyForm(): AlertForm {
  return {
    name: "", description: "", type: "aggregate", fieldKind: "error_rate", scoreName: "",
    aggregation: "mean", filters: [], window: { amount: "5", unit: "m" },
    comparison: { amount: "", unit: "m" }, direction: "either",
    warning: { enabled: true, op: ">=", value: "" },
    critical: { enabled: false, op: ">=", value: "" },
    minDuration: { amount: "0", unit: "s" },
  };
}

/** Seconds as the largest unit that divides them ("300" -> 5 minutes). */
export function toDuration(seconds: number | null | undefined): Duration {
  if (seconds === null || seconds === undefined) return { amount: "", unit: "m" };
  for (const [unit, , size] of [...UNITS].reverse()) {
    if (seconds >= size && seconds % size === 0) return { amount: String(seconds / size), unit };
  }
  return { amount: String(seconds), unit: "s" };
}

/** The seconds of a typed duration, or null if it is not a whole number of seconds >= 0. */
export function durationSeconds(d: Duration): number | null {
  if (d.amount.trim() === "") return null;
  const n = Number(d.amount);
  const size = UNITS.find(([u]) => u === d.unit)?.[2] ?? 1;
  const s = n * size;
  if (!Number.isFinite(s) || s < 0 || Math.abs(s - Math.round(s)) > 1e-6) return null;
  return Math.round(s);
}

export function formatSeconds(seconds: number): string {
  const d = toDuration(seconds);
  const [, label] = UNITS.find(([u]) => u === d.unit)!;
  const n = Number(d.amount);
  return `${d.amount} ${n === 1 ? label.slice(0, -1) : label}`;
}

const WEEK_S = 7 * 86_400;

/** The measured field's name in the API ("error_rate", "metrics.grounded"). */
export function fieldOf(form: AlertForm): string {
  return form.fieldKind === "metrics" || form.fieldKind === "feedback"
    ? `${form.fieldKind}.${form.scoreName.trim()}` : form.fieldKind;
}

const SCORE_PATH = /^[A-Za-z0-9_\-:@$#]+(\.[A-Za-z0-9_\-:@$#]+){0,7}$/;

function threshold(t: ThresholdForm, where: string, errors: FieldErrors): { op: Op; value: number } | undefined {
  if (!t.enabled) return undefined;
  const n = Number(t.value);
  if (t.value.trim() === "" || !Number.isFinite(n)) {
    errors[where] = "Enter a number.";
    return undefined;
  }
  return { op: t.op, value: n };
}

/** The form's thresholds as far as they are numbers (for the live advice). */
export function typedThresholds(form: AlertForm): { warning?: { op: Op; value: number }; critical?: { op: Op; value: number } } {
  const read = (t: ThresholdForm) => (t.enabled && t.value.trim() !== "" && Number.isFinite(Number(t.value)) ? { op: t.op, value: Number(t.value) } : undefined);
  const out: { warning?: { op: Op; value: number }; critical?: { op: Op; value: number } } = {};
  const w = read(form.warning);
  const c = read(form.critical);
  if (w) out.warning = w;
  if (c) out.critical = c;
  return out;
}

/** The thresholds' rules across fields, as the control plane checks them
 * (apiary/control/config/alerts.py): the message and the field it is about, or null. */
export function thresholdProblem(
  type: ConditionType,
  warning: { op: Op; value: number } | undefined,
  critical: { op: Op; value: number } | undefined,
): [string, string] | null {
  if (!warning && !critical) return ["condition.warning", "Set a warning or a critical threshold (or both)."];
  if (type === "drift") {
    for (const [stage, t] of [["warning", warning], ["critical", critical]] as const) {
      if (t && (!UPPER.has(t.op) || t.value <= 0)) {
        return [`condition.${stage}`, "A drift threshold is a relative change in the rule's direction: use > or >= with a positive value (0.5 = 50 %)."];
      }
    }
  }
  if (warning && critical) {
    const upper = UPPER.has(warning.op);
    if (UPPER.has(critical.op) !== upper) {
      return ["condition.critical", `Warning and critical must compare in the same direction (warning ${warning.op}, critical ${critical.op}).`];
    }
    const w = warning.value;
    const c = critical.value;
    const stricter = (upper ? c > w : c < w)
      || (c === w && (critical.op === ">" || critical.op === "<") && (warning.op === ">=" || warning.op === "<="));
    if (!stricter) {
      return ["condition.critical", `Critical (${critical.op} ${c}) must be stricter than warning (${warning.op} ${w}).`];
    }
  }
  return null;
}

/** The form as the API's condition, or the problems by field that keep a body from being
 * built (a name, numbers, durations in range). */
export function toCondition(form: AlertForm): { condition: ConditionJson } | { errors: FieldErrors } {
  const errors: FieldErrors = {};
  if (!form.name.trim()) errors.name = "Give the alert a name.";
  const scored = form.fieldKind === "metrics" || form.fieldKind === "feedback";
  if (scored && !SCORE_PATH.test(form.scoreName.trim())) {
    errors["condition.field"] = `Enter the ${form.fieldKind === "metrics" ? "metric" : "feedback"} name: keys separated by dots, e.g. grounded.`;
  }
  const window = durationSeconds(form.window);
  if (window === null || window < 60 || window > WEEK_S) errors["condition.window_s"] = "A window is 1 minute to 7 days.";
  let comparison: number | undefined;
  if (form.type === "drift" && form.comparison.amount.trim() !== "") {
    const c = durationSeconds(form.comparison);
    if (c === null || c < 60 || c > WEEK_S) errors["condition.comparison_window_s"] = "A comparison period is 1 minute to 7 days.";
    else comparison = c;
  }
  const minDuration = durationSeconds(form.minDuration);
  if (minDuration === null || minDuration > 86_400) errors["condition.min_duration_s"] = "A minimum duration is 0 to 1 day.";
  const warning = threshold(form.warning, "condition.warning", errors);
  const critical = threshold(form.critical, "condition.critical", errors);
  // The rules across thresholds (thresholdProblem) are the control plane's to enforce: the
  // form shows them as advice while typing, and the server's 400 next to the field.
  if (Object.keys(errors).length > 0) return { errors };
  const condition: ConditionJson = {
    type: form.type, field: fieldOf(form), filters: toFilters(form.filters),
    window_s: window!, min_duration_s: minDuration!,
  };
  if (scored) condition.aggregation = form.aggregation;
  if (form.type === "drift") {
    condition.direction = form.direction;
    if (comparison !== undefined) condition.comparison_window_s = comparison;
  }
  if (warning) condition.warning = warning;
  if (critical) condition.critical = critical;
  return { condition };
}

function thresholdForm(t: unknown, fallbackOp: Op): ThresholdForm {
  if (t && typeof t === "object" && "op" in t && "value" in t) {
    const { op, value } = t as { op: Op; value: number };
    return { enabled: true, op, value: String(value) };
  }
  return { enabled: false, op: fallbackOp, value: "" };
}

/** A stored alert back into the form (inverse of toCondition on what the form makes). */
export function fromAlert(alert: { name: string; description: string; condition: Record<string, unknown> }): AlertForm {
  const c = alert.condition as Partial<ConditionJson> & { field?: string };
  const field = String(c.field ?? "event_count");
  const dot = field.indexOf(".");
  const prefix = dot < 0 ? "" : field.slice(0, dot);
  const scored = prefix === "metrics" || prefix === "feedback";
  const warning = thresholdForm(c.warning, ">=");
  const critical = thresholdForm(c.critical, warning.enabled ? warning.op : ">=");
  if (!warning.enabled && critical.enabled) warning.op = critical.op;
  return {
    name: alert.name, description: alert.description,
    type: c.type === "drift" ? "drift" : "aggregate",
    fieldKind: scored ? prefix : field, scoreName: scored ? field.slice(dot + 1) : "",
    aggregation: c.aggregation === "share_true" ? "share_true" : "mean",
    filters: fromFilters((c.filters ?? []) as EventFilter[]),
    window: toDuration(c.window_s ?? 300),
    comparison: c.type === "drift" && c.comparison_window_s !== undefined && c.comparison_window_s !== c.window_s
      ? toDuration(c.comparison_window_s) : { amount: "", unit: "m" },
    direction: c.direction ?? "either",
    warning, critical,
    minDuration: toDuration(c.min_duration_s ?? 0),
  };
}

/** The form field a failed request is about: the body's ``details.field`` (a rule across
 * fields), else the location that starts a validation message ("invalid request:
 * condition.window_s: Input should be ..."). Null when it names none. */
export function errorField(error: unknown): string | null {
  // An ApiError (api/client.ts), read by its shape: this module stays free of the clients.
  if (!(error instanceof Error) || !("details" in error)) return null;
  const details = (error as Error & { details: unknown }).details;
  const named = typeof details === "object" && details !== null ? (details as Record<string, unknown>).field : undefined;
  if (typeof named === "string" && named) return named;
  const m = /^invalid request: ([A-Za-z_][\w.]*): /.exec(error.message);
  return m ? m[1]! : null;
}

/** Where a field-named error is shown: thresholds' sub-fields ("condition.warning.value")
 * at their threshold, the rest at themselves. */
export function errorSlot(field: string): string {
  const m = /^(condition\.(?:warning|critical))\b/.exec(field);
  if (m) return m[1]!;
  if (field.startsWith("condition.filters")) return "condition.filters";
  return field;
}

/** Every slot the form shows an error next to (anything else is shown above the buttons). */
export const FORM_SLOTS: ReadonlySet<string> = new Set([
  "name", "description", "condition.type", "condition.field", "condition.aggregation", "condition.filters",
  "condition.window_s", "condition.comparison_window_s", "condition.direction",
  "condition.warning", "condition.critical", "condition.min_duration_s",
]);

export interface AlertLike {
  state: "active" | "triggered" | "resolved" | "paused" | "muted";
  stage: "warning" | "critical" | null;
  evaluation_state: "triggered" | "resolved" | null;
}

/** The state badge: its text and CSS class ("Triggered · critical", "Muted · triggered"). */
export function stateBadge(a: AlertLike): { label: string; tone: string } {
  switch (a.state) {
    case "triggered":
      return { label: a.stage ? `Triggered · ${a.stage}` : "Triggered", tone: a.stage === "critical" ? "critical" : "warning" };
    case "muted":
      return { label: a.evaluation_state === "triggered" ? `Muted · triggered${a.stage ? ` (${a.stage})` : ""}` : "Muted", tone: "muted" };
    case "paused":
      return { label: "Paused", tone: "paused" };
    case "resolved":
      return { label: "Resolved", tone: "ok" };
    default:
      return { label: "Active", tone: "active" };
  }
}

const FIELD_LABELS = new Map(BASIC_FIELDS);

/** The measured field for a table cell ("error rate", "mean of metrics.grounded"). */
export function describeField(condition: Record<string, unknown>): string {
  const field = String(condition.field ?? "");
  const base = FIELD_LABELS.get(field)?.replace(/ \(.*\)$/, "") ?? field;
  const agg = condition.aggregation === "share_true" ? "share true of " : condition.aggregation === "mean" ? "mean of " : "";
  const lower = base.charAt(0).toLowerCase() + base.slice(1);
  const drift = condition.type === "drift" ? `change of ${agg}${lower}` : agg ? `${agg}${lower}` : base;
  const window = typeof condition.window_s === "number" ? ` over ${formatSeconds(condition.window_s)}` : "";
  return drift.charAt(0).toUpperCase() + drift.slice(1) + window;
}

/** The thresholds in a line ("warning ≥ 0.5 · critical ≥ 0.9"). */
export function describeThresholds(condition: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const stage of ["warning", "critical"] as const) {
    const t = condition[stage] as { op: string; value: number } | null | undefined;
    if (t) parts.push(`${stage} ${t.op} ${t.value}`);
  }
  return parts.join(" · ");
}

// --- the preview chart ---------------------------------------------------------------

export const PREVIEW_RANGES = [
  { key: "1h", label: "Last hour", seconds: 3600 },
  { key: "24h", label: "Last 24 hours", seconds: 86_400 },
  { key: "7d", label: "Last 7 days", seconds: 7 * 86_400 },
] as const;
export type PreviewRangeKey = (typeof PREVIEW_RANGES)[number]["key"];

export function previewRange(key: string | null): (typeof PREVIEW_RANGES)[number] {
  return PREVIEW_RANGES.find((r) => r.key === key) ?? PREVIEW_RANGES[1];
}

/** ``from`` and ``to`` (unix seconds) of a range ending now, ``to`` rounded down to the
 * minute so that a re-render asks for the same query. */
export function rangeBounds(seconds: number, nowMs: number = Date.now()): { from: number; to: number } {
  const to = Math.floor(nowMs / 60_000) * 60;
  return { from: to - seconds, to };
}

export interface PreviewPoint {
  t: number;
  value: number | null;
}

/** The y axis' domain: the series and both thresholds, padded 10 % (a flat line and its
 * threshold stay visible; a zero-height range gets ±1 or ±10 % around its value). */
export function chartDomain(
  series: readonly PreviewPoint[],
  thresholds: ReadonlyArray<{ value: number } | null | undefined>,
): [number, number] {
  const values: number[] = [];
  for (const p of series) if (p.value !== null && Number.isFinite(p.value)) values.push(p.value);
  for (const t of thresholds) if (t && Number.isFinite(t.value)) values.push(t.value);
  if (values.length === 0) return [0, 1];
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.1;
  // Counts, rates and latencies are never negative: do not pad below zero.
  lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad;
  hi += pad;
  return [lo, hi];
}

/** Round ticks over a domain (1, 2, 2.5 or 5 times a power of ten apart), and the domain
 * widened to them: ``[0, 0.25, 0.5, 0.75, 1]``, not ``0.1206, 0.3705, ...``. */
export function niceTicks(lo: number, hi: number, count = 5): { domain: [number, number]; ticks: number[] } {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return { domain: [lo, hi], ticks: [lo, hi] };
  const raw = (hi - lo) / Math.max(1, count - 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * power >= raw - 1e-12) ?? 10) * power;
  const start = Math.floor(lo / step + 1e-9) * step;
  const end = Math.ceil(hi / step - 1e-9) * step;
  const ticks: number[] = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { domain: [ticks[0]!, ticks[ticks.length - 1]!], ticks };
}

/** A tick's time for a range: hours:minutes within a day, else day and hour. */
export function formatTick(t: number, rangeSeconds: number): string {
  const d = new Date(t * 1000);
  if (rangeSeconds <= 86_400) return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit" });
}

/** A measured value for a tooltip or a table: at most 4 significant digits. */
export function formatValue(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  if (v === 0) return "0";
  const abs = Math.abs(v);
  if (abs >= 1e6 || abs < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

// --- activity -------------------------------------------------------------------------

export interface ActivityItem {
  id: string;
  kind: "transition" | "delivery" | string;
  stage: string | null;
  state: string | null;
  value: number | null;
  threshold: number | null;
  muted: boolean;
  channel_id: string | null;
  channel_type: string | null;
  outcome: string | null;
  attempts: number | null;
  detail: string | null;
  at: string;
}

/** One activity row's sentence. */
export function describeActivity(a: ActivityItem): string {
  if (a.kind === "transition") {
    const what = a.stage === "resolution" || a.state === "resolved" ? "Resolved" : `Triggered ${a.stage ?? ""}`.trim();
    const value = a.value !== null ? ` at ${formatValue(a.value)}` : "";
    const threshold = a.threshold !== null ? ` (threshold ${formatValue(a.threshold)})` : "";
    return `${what}${value}${threshold}${a.muted ? " · muted, nothing sent" : ""}`;
  }
  const channel = a.channel_type ? `${a.channel_type} channel` : "channel";
  const outcome = a.outcome === "delivered" ? "Delivered" : a.outcome === "dead_lettered" ? "Not delivered (dead-lettered)" : (a.outcome ?? "Delivery");
  const attempts = a.attempts ? ` after ${a.attempts} attempt${a.attempts === 1 ? "" : "s"}` : "";
  return `${outcome}${a.stage ? ` ${a.stage}` : ""} to the ${channel}${attempts}${a.detail ? `: ${a.detail}` : ""}`;
}
