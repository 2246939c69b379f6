import { describe, expect, it } from "vitest";
import {
  type ChartData, chartQuery, DASHBOARD_RANGES, describeLatency, describeMean, describeTotal, formatCost,
  formatCostTick, formatDuration, formatDurationTick, shareAxisTop,
  formatPercent, mergePoints, metricNames, peak, rangeOf, singleValue, toPoints, total, weightedMean,
} from "./dashboard";

const H = 3_600_000;

function chart(buckets: (number | null)[], series: { values: (number | null)[]; counts: number[] }[]): ChartData {
  return {
    metric: "event_count", func: "count", bucketing: "hour", groupBy: null, dateRange: null, source: "events",
    exact: true, buckets, series: series.map((s) => ({ group: null, ...s })), truncated: false,
  };
}

describe("ranges", () => {
  it("buckets a day and a week by hour, a month by day; unknown keys are the first range", () => {
    expect(DASHBOARD_RANGES.map((r) => [r.key, r.bucketing])).toEqual([["24h", "hour"], ["7d", "hour"], ["30d", "day"]]);
    expect(rangeOf("30d").bucketing).toBe("day");
    expect(rangeOf(null).key).toBe("24h");
    expect(rangeOf("1y").key).toBe("24h");
  });

  it("asks the charts API for a relative range", () => {
    expect(chartQuery("duration", rangeOf("7d"), "p95")).toEqual(
      { metric: "duration", bucketing: "hour", dateRange: { relative: "7d" }, func: "p95" });
    expect(chartQuery("event_count", rangeOf("24h"), undefined, "all")).toEqual(
      { metric: "event_count", bucketing: "all", dateRange: { relative: "24h" } });
  });
});

describe("points", () => {
  it("lays the first series over the buckets", () => {
    const points = toPoints(chart([0, H, 2 * H], [{ values: [1, 0, 4], counts: [1, 0, 4] }]), 0);
    expect(points).toEqual([{ t: 0, value: 1, count: 1 }, { t: H, value: 0, count: 0 }, { t: 2 * H, value: 4, count: 4 }]);
    expect(total(points)).toBe(5);
    expect(peak(points)).toEqual({ t: 2 * H, value: 4, count: 4 });
  });

  it("reads a chart without series as empty buckets", () => {
    const counts = toPoints(chart([0, H], []), 0);
    expect(counts.map((p) => p.value)).toEqual([0, 0]);
    expect(total(counts)).toBe(0);
    const averages = toPoints(chart([0, H], []), null);
    expect(averages.map((p) => p.value)).toEqual([null, null]);
    expect(weightedMean(averages)).toBeNull();
    expect(peak(averages)).toBeNull();
  });

  it("skips a null bucket (bucketing all without a range)", () => {
    expect(toPoints(chart([null], [{ values: [3], counts: [3] }]), 0)).toEqual([]);
    expect(singleValue(chart([null], [{ values: [3], counts: [3] }]))).toBe(3);
    expect(singleValue(chart([0], []))).toBeNull();
    expect(singleValue(undefined)).toBeNull();
  });

  it("weights per-bucket means by the values behind them", () => {
    // error rate: 1 of 2 events, then 0 of 6: 1 of 8 overall, not the mean of 50% and 0%
    const points = toPoints(chart([0, H, 2 * H], [{ values: [0.5, 0, null], counts: [2, 6, 0] }]), null);
    expect(weightedMean(points)).toBeCloseTo(0.125);
  });

  it("merges series over the same buckets, in time order", () => {
    const a = toPoints(chart([H, 0], [{ values: [2, 1], counts: [1, 1] }]), null);
    const b = toPoints(chart([0, H], [{ values: [10, null], counts: [1, 0] }]), null);
    expect(mergePoints({ p50: a, p95: b })).toEqual([{ t: 0, p50: 1, p95: 10 }, { t: H, p50: 2, p95: null }]);
  });
});

describe("formats and summaries", () => {
  it("formats figures", () => {
    expect(formatPercent(null)).toBe("—");
    expect(formatPercent(0)).toBe("0%");
    expect(formatPercent(0.0123)).toBe("1.2%");
    expect(formatPercent(0.25)).toBe("25%");
    expect(formatDuration(null)).toBe("—");
    expect(formatDuration(4.2)).toBe("4 ms");
    expect(formatDuration(1500)).toBe("1.50 s");
    expect(formatDuration(90_000)).toBe("1.5 min");
    expect(formatCost(0)).toBe("$0");
    expect(formatCost(0.000123)).toBe("$0.00012");
    expect(formatCost(1234.5)).toBe("$1,234.50");
    expect(formatDurationTick(0)).toBe("0");
    expect(formatDurationTick(300)).toBe("300ms");
    expect(formatDurationTick(1200)).toBe("1.2s");
    expect(formatCostTick(0.000024)).toBe("$0.000024");
    expect([0, 0.015, 0.25, 0.5, 1].map(shareAxisTop)).toEqual([0.02, 0.02, 0.4, 0.8, 1]);
    expect(formatCostTick(1500)).toBe("$1.5k");
  });

  it("describes a count chart and a mean chart in a sentence", () => {
    const range = rangeOf("24h");
    const at = (t: number) => `${t / H}h`;
    const events = toPoints(chart([0, H, 2 * H], [{ values: [3, 9, 0], counts: [3, 9, 0] }]), 0);
    expect(describeTotal("Events", events, range, String, at))
      .toBe("Events per hour, last 24 hours: 12 in total; the most, 9, at 1h.");
    expect(describeTotal("Events", toPoints(chart([0], []), 0), range, String, at)).toBe("Events per hour, last 24 hours: none.");
    const rate = toPoints(chart([0, H], [{ values: [0.5, 0], counts: [2, 2] }]), null);
    expect(describeMean("Error rate", "overall", rate, range, formatPercent, at))
      .toBe("Error rate per hour, last 24 hours: 25% overall; the highest, 50%, at 0h.");
    expect(describeMean("Error rate", "overall", toPoints(chart([0], []), null), range, formatPercent, at))
      .toBe("Error rate per hour, last 24 hours: no data.");
    const p50 = toPoints(chart([0, H], [{ values: [10, 20], counts: [1, 1] }]), null);
    const p95 = toPoints(chart([0, H], [{ values: [100, 40], counts: [1, 1] }]), null);
    expect(describeLatency(p50, p95, [15, 95], range, at))
      .toBe("Latency per hour, last 24 hours: p50 15 ms and p95 95 ms over the range; the highest p95, 100 ms, at 0h.");
    const none = toPoints(chart([0], []), null);
    expect(describeLatency(none, none, [null, null], range, at)).toBe("Latency per hour, last 24 hours: no durations.");
  });
});

describe("metric names", () => {
  const detail = (name: string, value_type: string, occurrences: number, event_type = "model") =>
    ({ name, value_type, occurrences, event_type, event_name: "x", first_seen: null, last_seen: null });

  it("keeps numeric and boolean metrics, most seen first, across event types", () => {
    expect(metricNames([
      detail("metrics.accuracy", "number", 5), detail("metrics.accuracy", "number", 7, "chain"),
      detail("metrics.accuracy_explanation", "string", 12), detail("metrics.exact", "boolean", 9),
      detail("metadata.latency", "number", 99), detail("metrics.", "number", 1), detail("metrics.nested", "object", 50),
    ])).toEqual(["metrics.accuracy", "metrics.exact"]);
  });

  it("stops at the limit", () => {
    const many = Array.from({ length: 10 }, (_, i) => detail(`metrics.m${i}`, "number", i));
    expect(metricNames(many, 3)).toEqual(["metrics.m9", "metrics.m8", "metrics.m7"]);
  });
});
