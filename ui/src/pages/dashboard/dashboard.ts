// The dashboard's client logic, free of React: time ranges and their buckets, chart data
// (POST /v1/charts/query) as chart points, totals over a range, number formats, and the
// sentences that describe each chart to a screen reader.
import type { components } from "../../api/data";

export type ChartData = components["schemas"]["ChartData"];
export type ChartQuery = components["schemas"]["ChartQuery"];
type SchemaFieldDetail = components["schemas"]["SchemaFieldDetail"];

export type Bucketing = "hour" | "day";

export interface DashboardRange {
  key: "24h" | "7d" | "30d";
  label: string;
  /** The bucket size the charts use for this range. */
  bucketing: Bucketing;
}

/** The ranges the dashboard offers, each with the bucket size that reads well for it:
 * hours for a day or a week (25 or 169 points), days for a month (31 points). */
export const DASHBOARD_RANGES: readonly DashboardRange[] = [
  { key: "24h", label: "Last 24 hours", bucketing: "hour" },
  { key: "7d", label: "Last 7 days", bucketing: "hour" },
  { key: "30d", label: "Last 30 days", bucketing: "day" },
];

export function rangeOf(key: string | null): DashboardRange {
  return DASHBOARD_RANGES.find((r) => r.key === key) ?? DASHBOARD_RANGES[0]!;
}

/** The chart query of one metric over a range, bucketed as the range says (or all in one
 * bucket, for a figure over the whole range). */
export function chartQuery(metric: string, range: DashboardRange, func?: string,
  bucketing: Bucketing | "all" = range.bucketing): ChartQuery {
  return { metric, bucketing, dateRange: { relative: range.key }, ...(func ? { func } : {}) };
}

/** One point per bucket: the bucket's start (epoch ms), the value (null: no value there)
 * and the number of values behind it. */
export interface Point {
  t: number;
  value: number | null;
  count: number;
}

/** The first (ungrouped) series of a chart answer as points; a chart without any data in
 * the range has no series, and reads as ``empty`` (0 for counts and sums, else null). */
export function toPoints(data: ChartData, empty: number | null): Point[] {
  const series = data.series[0];
  const points: Point[] = [];
  data.buckets.forEach((bucket, i) => {
    if (bucket === null) return;
    points.push({
      t: bucket,
      value: series ? (series.values[i] ?? empty) : empty,
      count: series ? (series.counts[i] ?? 0) : 0,
    });
  });
  return points;
}

/** Several charts over the same buckets as rows ``{t, [name]: value}`` for one chart. */
export function mergePoints(named: Record<string, Point[]>): Array<Record<string, number | null>> {
  const rows = new Map<number, Record<string, number | null>>();
  for (const [name, points] of Object.entries(named)) {
    for (const p of points) {
      const row = rows.get(p.t) ?? { t: p.t };
      row[name] = p.value;
      rows.set(p.t, row);
    }
  }
  return [...rows.values()].sort((a, b) => (a.t ?? 0) - (b.t ?? 0));
}

/** Sum of the values (counts and sums). */
export function total(points: Point[]): number {
  return points.reduce((sum, p) => sum + (p.value ?? 0), 0);
}

/** The mean over the whole range of per-bucket means, weighted by the values behind each
 * (error rate: errors / events; an average metric: its average over every value); null
 * when nothing is behind any bucket. */
export function weightedMean(points: Point[]): number | null {
  let weight = 0;
  let sum = 0;
  for (const p of points) {
    if (p.value === null || p.count === 0) continue;
    weight += p.count;
    sum += p.value * p.count;
  }
  return weight === 0 ? null : sum / weight;
}

/** The bucket with the largest value (the first of equals), or null. */
export function peak(points: Point[]): Point | null {
  let best: Point | null = null;
  for (const p of points) {
    if (p.value !== null && (best === null || best.value === null || p.value > best.value)) best = p;
  }
  return best;
}

/** The single value of a ``bucketing: all`` answer (null: no value in the range). */
export function singleValue(data: ChartData | undefined): number | null {
  return data?.series[0]?.values[0] ?? null;
}

// --- formats ----------------------------------------------------------------------------

export function formatCount(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export function formatPercent(share: number | null): string {
  if (share === null) return "—";
  const pct = share * 100;
  if (pct === 0) return "0%";
  return `${pct < 10 ? pct.toFixed(1) : pct.toFixed(0)}%`;
}

export function formatDuration(ms: number | null): string {
  if (ms === null) return "—";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

export function formatCost(usd: number | null): string {
  if (usd === null) return "—";
  if (usd === 0) return "$0";
  if (usd < 0.01) return `$${usd.toPrecision(2)}`;
  return `$${usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

/** A compact count for axis ticks: 1.2k, 3.4M. */
export function formatCompact(n: number): string {
  const abs = Math.abs(n);
  if (abs >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (abs >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return `${+n.toFixed(2)}`;
}

/** Axis ticks of durations, short: 0, 300ms, 1.2s, 2m. */
export function formatDurationTick(ms: number): string {
  if (ms === 0) return "0";
  if (ms < 1000) return `${+ms.toFixed(ms < 10 ? 1 : 0)}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(1)}s`;
  return `${+(ms / 60_000).toFixed(1)}m`;
}

/** Axis ticks of costs: $0, $0.00002, $1.5k. */
export function formatCostTick(usd: number): string {
  if (usd === 0) return "$0";
  if (Math.abs(usd) < 0.01) return `$${+usd.toPrecision(2)}`;
  return `$${formatCompact(usd)}`;
}

/** The top of a share axis (0..1) that holds ``max`` with five round ticks (0%, 10%, ...). */
export function shareAxisTop(max: number): number {
  return [0.02, 0.04, 0.08, 0.2, 0.4, 0.8].find((top) => max <= top) ?? 1;
}

export function formatNumber(n: number | null): string {
  if (n === null) return "—";
  return Math.abs(n) >= 100 ? formatCount(n) : `${+n.toFixed(3)}`;
}

/** A bucket's start as its chart label: the hour (with the day when a range spans days),
 * or the day. In the browser's time zone. */
export function formatBucket(t: number, bucketing: Bucketing, withDay: boolean): string {
  const d = new Date(t);
  if (bucketing === "day") return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  const hour = d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  return withDay ? `${d.toLocaleDateString(undefined, { month: "short", day: "numeric" })} ${hour}` : hour;
}

// --- what a screen reader hears ---------------------------------------------------------

/** "Events per hour, last 24 hours: 12 in total; the most, 9, at 14:00." */
export function describeTotal(what: string, points: Point[], range: DashboardRange,
  format: (n: number) => string, at: (t: number) => string): string {
  const head = `${what} per ${range.bucketing}, ${range.label.toLowerCase()}`;
  const sum = total(points);
  if (sum === 0) return `${head}: none.`;
  const top = peak(points)!;
  return `${head}: ${format(sum)} in total; the most, ${format(top.value ?? 0)}, at ${at(top.t)}.`;
}

/** "Error rate per hour, last 24 hours: 25% overall; the highest, 50%, at 14:00." */
export function describeMean(what: string, overallWord: string, points: Point[],
  range: DashboardRange, format: (n: number | null) => string, at: (t: number) => string): string {
  const head = `${what} per ${range.bucketing}, ${range.label.toLowerCase()}`;
  const mean = weightedMean(points);
  if (mean === null) return `${head}: no data.`;
  const top = peak(points)!;
  return `${head}: ${format(mean)} ${overallWord}; the highest, ${format(top.value)}, at ${at(top.t)}.`;
}

/** "Latency per hour, last 24 hours: p50 15 ms and p95 1.13 s over the range; the highest
 * p95, 1.13 s, at 21:00." (``overall``: p50 and p95 over the whole range.) */
export function describeLatency(p50: Point[], p95: Point[], overall: [number | null, number | null],
  range: DashboardRange, at: (t: number) => string): string {
  const head = `Latency per ${range.bucketing}, ${range.label.toLowerCase()}`;
  const top = peak(p95);
  if (top === null && peak(p50) === null) return `${head}: no durations.`;
  const whole = overall[0] !== null || overall[1] !== null
    ? `p50 ${formatDuration(overall[0])} and p95 ${formatDuration(overall[1])} over the range`
    : "durations per bucket";
  return top === null ? `${head}: ${whole}.`
    : `${head}: ${whole}; the highest p95, ${formatDuration(top.value)}, at ${at(top.t)}.`;
}

/** The project's numeric metric names (``metrics.<name>``) from the events' schema, most
 * seen first, at most ``limit``. Explanations and other text fields are left out. */
export function metricNames(details: SchemaFieldDetail[], limit = 6): string[] {
  const seen = new Map<string, number>();
  for (const d of details) {
    if (!d.name.startsWith("metrics.") || d.name.length <= "metrics.".length) continue;
    if (d.value_type !== "number" && d.value_type !== "boolean") continue;
    seen.set(d.name, (seen.get(d.name) ?? 0) + d.occurrences);
  }
  return [...seen.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, limit)
    .map(([name]) => name);
}
