// The experiments pages' client logic: metric keys and labels, deltas and their direction,
// pairing two runs' datapoints (metric changes, outputs) and word-level output diffs.
import { diffWords } from "diff";
import type {
  ComparedEvents, DatapointMetric, DatapointResult, MetricComparison, RunComparison, RunResult,
} from "../../api/experiments";

/** A metric is a name scored on events of one name and type: runs may score "accuracy" on
 * two different steps. */
export interface MetricId {
  name: string;
  event_name?: string | null;
  event_type?: string | null;
}

export function metricKey(m: MetricId): string {
  return JSON.stringify([m.name, m.event_name ?? null, m.event_type ?? null]);
}

/** Labels for metrics: the bare name, or "name (event)" when the name is scored on more
 * than one event. */
export function metricLabels(metrics: MetricId[]): Map<string, string> {
  const counts = new Map<string, Set<string>>();
  for (const m of metrics) {
    const seen = counts.get(m.name) ?? new Set<string>();
    seen.add(metricKey(m));
    counts.set(m.name, seen);
  }
  const labels = new Map<string, string>();
  for (const m of metrics) {
    const ambiguous = (counts.get(m.name)?.size ?? 0) > 1;
    const where = m.event_name ?? m.event_type ?? "?";
    labels.set(metricKey(m), ambiguous ? `${m.name} (${where})` : m.name);
  }
  return labels;
}

export type Direction = "improved" | "regressed" | "unchanged" | "missing";

/** Higher is better (the API's convention: ``improved`` means a higher value). Differences
 * below ``epsilon`` (float noise) are unchanged. */
export function direction(delta: number | null | undefined, epsilon = 1e-9): Direction {
  if (delta == null || !Number.isFinite(delta)) return "missing";
  if (delta > epsilon) return "improved";
  if (delta < -epsilon) return "regressed";
  return "unchanged";
}

export const DIRECTION_LABEL: Record<Direction, string> = {
  improved: "Improved",
  regressed: "Regressed",
  unchanged: "Unchanged",
  missing: "Not comparable",
};

/** A number for people: at most 3 decimals, no trailing zeros. */
export function formatNumber(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return "—";
  const rounded = Math.round(value * 1000) / 1000;
  return Object.is(rounded, -0) ? "0" : String(rounded);
}

/** A signed delta: "+0.25", "−0.1" (a real minus sign), "0". */
export function formatDelta(delta: number | null | undefined): string {
  if (delta == null || !Number.isFinite(delta)) return "—";
  const text = formatNumber(Math.abs(delta));
  if (text === "0") return "0";
  return delta > 0 ? `+${text}` : `\u2212${text}`;
}

export function formatPercent(percent: number | null | undefined): string {
  if (percent == null || !Number.isFinite(percent)) return "";
  const rounded = Math.round(percent * 10) / 10;
  if (rounded === 0) return "0%";
  return `${rounded > 0 ? "+" : "\u2212"}${Math.abs(rounded)}%`;
}

/** A datapoint's metric value as text: booleans, numbers, labels. */
export function formatMetricValue(metric: Pick<DatapointMetric, "value" | "text"> | undefined): string {
  if (!metric) return "—";
  if (typeof metric.value === "boolean") return metric.value ? "true" : "false";
  if (typeof metric.value === "number") return formatNumber(metric.value);
  return metric.text ?? "—";
}

/** An event's inputs or outputs as text: a lone string field as that string (an answer),
 * anything else as indented JSON; nothing is "". */
export function valueText(value: unknown): string {
  if (value == null) return "";
  if (typeof value === "string") return value;
  if (typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) return "";
    const only = entries[0];
    if (entries.length === 1 && only && typeof only[1] === "string") return only[1];
  }
  return JSON.stringify(value, null, 2) ?? String(value);
}

export interface DiffPart {
  text: string;
  kind: "same" | "added" | "removed";
}

/** A word-level diff of two outputs (jsdiff's diffWords): what the new run removed and
 * added, in reading order. */
export function wordDiff(before: string, after: string): DiffPart[] {
  return diffWords(before, after).map((c) => ({
    text: c.value,
    kind: c.added ? "added" : c.removed ? "removed" : "same",
  }));
}

/** Of two runs, the base (the older) and the new one (the newer); same time: as given. */
export function orderRuns<T extends { created_at: string }>(first: T, second: T): { base: T; next: T } {
  return Date.parse(second.created_at) < Date.parse(first.created_at)
    ? { base: second, next: first }
    : { base: first, next: second };
}

/** The run's metric averages (aggregates) by metric key, in the result's order. */
export function metricAggregates(result: RunResult): Array<{ key: string; name: string; aggregate: number | null }> {
  const labels = metricLabels(result.metrics.details.map((d) => ({ ...d, name: d.metric_name })));
  return result.metrics.details.map((d) => {
    const key = metricKey({ ...d, name: d.metric_name });
    return { key, name: labels.get(key) ?? d.metric_name, aggregate: d.aggregate ?? null };
  });
}

export interface ResultRow {
  /** The datapoint id, else the session id. */
  id: string;
  datapointId: string | null;
  sessionId: string;
  passed: boolean;
  inputs: unknown;
  outputs: unknown;
  /** One value per metric key (the first the datapoint has). */
  values: Map<string, DatapointMetric>;
}

/** The run's results as rows: each datapoint with its metric values by key and the
 * inputs/outputs of its first event (``events`` from the run's event pairs). */
export function resultRows(datapoints: DatapointResult[], events: ComparedEvents[] = []): ResultRow[] {
  const byDatapoint = new Map(events.map((e) => [e.datapoint_id, e.event_1]));
  return datapoints.map((d) => {
    const values = new Map<string, DatapointMetric>();
    for (const m of d.metrics) {
      const key = metricKey(m);
      if (!values.has(key)) values.set(key, m);
    }
    const event = d.datapoint_id ? byDatapoint.get(d.datapoint_id) : undefined;
    return {
      id: d.datapoint_id ?? d.session_id,
      datapointId: d.datapoint_id ?? null,
      sessionId: d.session_id,
      passed: d.passed,
      inputs: event?.inputs,
      outputs: event?.outputs,
      values,
    };
  });
}

export interface MetricChange {
  key: string;
  label: string;
  before: number;
  after: number;
  delta: number;
  direction: Direction;
}

export interface PairedDatapoint {
  datapointId: string;
  baseOutput: string;
  newOutput: string;
  inputs: unknown;
  baseSession: string | null;
  newSession: string | null;
  changes: MetricChange[];
  /** Some metric went down. */
  regressed: boolean;
  /** Some metric went up. */
  improved: boolean;
  outputChanged: boolean;
}

function sessionOf(event: Record<string, unknown> | undefined): string | null {
  const id = event?.session_id;
  return typeof id === "string" && id ? id : null;
}

/** Every datapoint both runs have, with its metric changes (from the comparison's
 * per-datapoint deltas) and both outputs (``event_1`` is the new run's event). Datapoints
 * keep the comparison's order; one only the events know comes after. */
export function pairDatapoints(comparison: RunComparison, events: ComparedEvents[]): PairedDatapoint[] {
  const labels = metricLabels(comparison.metrics.map((m) => ({ ...m, name: m.metric_name })));
  const byEvent = new Map(events.map((e) => [e.datapoint_id, e]));
  const ids = [...comparison.commonDatapoints];
  for (const e of events) if (!ids.includes(e.datapoint_id)) ids.push(e.datapoint_id);
  const changes = new Map<string, MetricChange[]>();
  for (const m of comparison.metrics) {
    const key = metricKey({ ...m, name: m.metric_name });
    for (const d of m.datapoints) {
      const list = changes.get(d.datapoint_id) ?? [];
      list.push({
        key, label: labels.get(key) ?? m.metric_name, before: d.old_value, after: d.new_value,
        delta: d.delta, direction: direction(d.delta),
      });
      changes.set(d.datapoint_id, list);
    }
  }
  return ids.map((id) => {
    const pair = byEvent.get(id);
    const newEvent = pair?.event_1;
    const baseEvent = pair?.event_2;
    const own = changes.get(id) ?? [];
    const baseOutput = valueText(baseEvent?.outputs);
    const newOutput = valueText(newEvent?.outputs);
    return {
      datapointId: id,
      baseOutput,
      newOutput,
      inputs: newEvent?.inputs ?? baseEvent?.inputs,
      baseSession: sessionOf(baseEvent),
      newSession: sessionOf(newEvent),
      changes: own,
      regressed: own.some((c) => c.direction === "regressed"),
      improved: own.some((c) => c.direction === "improved"),
      outputChanged: baseOutput !== newOutput,
    };
  });
}

export interface MetricSummary {
  key: string;
  label: string;
  metric: MetricComparison;
  direction: Direction;
}

/** The comparison's metrics with labels and the direction of their aggregate change. */
export function metricSummaries(comparison: RunComparison): MetricSummary[] {
  const labels = metricLabels(comparison.metrics.map((m) => ({ ...m, name: m.metric_name })));
  return comparison.metrics.map((metric) => {
    const key = metricKey({ ...metric, name: metric.metric_name });
    return { key, label: labels.get(key) ?? metric.metric_name, metric, direction: direction(metric.difference) };
  });
}
