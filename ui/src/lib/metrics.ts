// An event's metrics as HoneyHive stores them: ``name`` (the score), ``name_explanation``,
// and ``name_<extra>``; grouped back into one row per metric for the span's detail.

export interface MetricRow {
  name: string;
  value: unknown;
  explanation: string | null;
  extras: [string, unknown][];
}

/** One row per metric, in key order: its value, explanation and extras (``name_<x>`` keys
 * whose ``name`` is itself a metric; a key with an explanation of its own is a metric).
 * Keys no metric claims are rows of their own. */
export function metricRows(metrics: Record<string, unknown> | null | undefined): MetricRow[] {
  if (!metrics) return [];
  const keys = Object.keys(metrics);
  const owner = new Map<string, string>();
  // Shorter keys first: ``a_b`` is claimed by the longest unclaimed ``a`` it starts with,
  // unless it has an explanation of its own (then it is a metric).
  const resolved: string[] = [];
  for (const key of [...keys].sort((a, b) => a.length - b.length)) {
    const own = `${key}_explanation` in metrics;
    const base = own ? undefined
      : resolved.filter((n) => !owner.has(n) && key.startsWith(`${n}_`)).sort((a, b) => b.length - a.length)[0];
    if (base !== undefined) owner.set(key, base);
    resolved.push(key);
  }
  const rows = new Map<string, MetricRow>();
  for (const key of keys) {
    if (!owner.has(key)) rows.set(key, { name: key, value: metrics[key], explanation: null, extras: [] });
  }
  for (const key of keys) {
    const base = owner.get(key);
    const row = base === undefined ? undefined : rows.get(base);
    if (!row || base === undefined) continue;
    const suffix = key.slice(base.length + 1);
    const value = metrics[key];
    if (suffix === "explanation" && typeof value === "string") row.explanation = value;
    else row.extras.push([suffix, value]);
  }
  return [...rows.values()];
}

/** A metric value for reading: numbers to 4 significant digits, booleans as pass/fail. */
export function formatMetric(value: unknown): string {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  if (typeof value === "boolean") return value ? "pass" : "fail";
  if (value == null) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}
