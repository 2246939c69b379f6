import { describe, expect, it } from "vitest";
import type { ComparedEvents, RunComparison, RunObject } from "../../api/experiments";
import {
  direction, formatDelta, formatMetricValue, formatNumber, formatPercent, metricKey, metricLabels,
  metricSummaries, orderRuns, pairDatapoints, resultRows, valueText, wordDiff,
} from "./logic";

function run(id: string, created_at: string): RunObject {
  return {
    id, run_id: id, created_at, configuration: {}, event_ids: [], is_active: true, metadata: {},
    results: {}, scope_id: "p", scope_type: "project",
  };
}

function metric(name: string, datapoints: Array<[string, number, number]>, extra: Partial<RunComparison["metrics"][number]> = {}) {
  return {
    metric_name: name, event_name: "answer", event_type: "chain", metric_type: "numeric",
    old_aggregate: null, new_aggregate: null, difference: null, percentage_change: null,
    found_count: datapoints.length, improved_count: 0, degraded_count: 0, same_count: 0,
    improved: [], degraded: [], same: [], old_values: [], new_values: [],
    datapoints: datapoints.map(([datapoint_id, old_value, new_value]) => ({
      datapoint_id, old_value, new_value, delta: new_value - old_value,
    })),
    ...extra,
  };
}

function comparison(metrics: RunComparison["metrics"], common: string[]): RunComparison {
  return {
    metrics, commonDatapoints: common, event_details: [],
    old_run: run("old", "2026-01-01T00:00:00Z"), new_run: run("new", "2026-01-02T00:00:00Z"),
  };
}

function pair(datapoint_id: string, newOut: unknown, oldOut: unknown): ComparedEvents {
  return {
    datapoint_id,
    event_1: { session_id: `new-${datapoint_id}`, outputs: newOut, inputs: { q: datapoint_id } },
    event_2: { session_id: `old-${datapoint_id}`, outputs: oldOut, inputs: { q: datapoint_id } },
  };
}

describe("direction and formatting", () => {
  it("calls higher improved, lower regressed, float noise unchanged, null not comparable", () => {
    expect(direction(0.25)).toBe("improved");
    expect(direction(-0.1)).toBe("regressed");
    expect(direction(0)).toBe("unchanged");
    expect(direction(1e-12)).toBe("unchanged");
    expect(direction(null)).toBe("missing");
    expect(direction(Number.NaN)).toBe("missing");
  });

  it("formats numbers, signed deltas and percentages", () => {
    expect(formatNumber(0.6666666)).toBe("0.667");
    expect(formatNumber(2)).toBe("2");
    expect(formatNumber(-0.0001)).toBe("0");
    expect(formatNumber(null)).toBe("—");
    expect(formatDelta(0.25)).toBe("+0.25");
    expect(formatDelta(-0.1)).toBe("\u22120.1");
    expect(formatDelta(0.00001)).toBe("0");
    expect(formatDelta(undefined)).toBe("—");
    expect(formatPercent(12.345)).toBe("+12.3%");
    expect(formatPercent(-50)).toBe("\u221250%");
    expect(formatPercent(null)).toBe("");
  });

  it("shows a datapoint's metric value as text", () => {
    expect(formatMetricValue({ value: true })).toBe("true");
    expect(formatMetricValue({ value: 0.5 })).toBe("0.5");
    expect(formatMetricValue({ value: null, text: "good" })).toBe("good");
    expect(formatMetricValue(undefined)).toBe("—");
  });

  it("shows outputs: a lone string field as the string, others as JSON", () => {
    expect(valueText({ answer: "Paris" })).toBe("Paris");
    expect(valueText("plain")).toBe("plain");
    expect(valueText(null)).toBe("");
    expect(valueText({})).toBe("");
    expect(valueText({ a: 1, b: "x" })).toBe('{\n  "a": 1,\n  "b": "x"\n}');
    expect(valueText({ a: 1 })).toBe('{\n  "a": 1\n}');
    expect(valueText([1])).toBe("[\n  1\n]");
  });
});

describe("metric keys and labels", () => {
  it("tells the same name on two events apart, and only then", () => {
    const a = { name: "accuracy", event_name: "answer", event_type: "chain" };
    const b = { name: "accuracy", event_name: "retrieve", event_type: "tool" };
    const c = { name: "exact", event_name: "answer", event_type: "chain" };
    expect(metricKey(a)).not.toBe(metricKey(b));
    const labels = metricLabels([a, b, c, a]);
    expect(labels.get(metricKey(a))).toBe("accuracy (answer)");
    expect(labels.get(metricKey(b))).toBe("accuracy (retrieve)");
    expect(labels.get(metricKey(c))).toBe("exact");
  });
});

describe("orderRuns", () => {
  it("makes the older run the base, whichever was selected first", () => {
    const older = run("a", "2026-01-01T00:00:00Z");
    const newer = run("b", "2026-01-02T00:00:00Z");
    expect(orderRuns(newer, older)).toEqual({ base: older, next: newer });
    expect(orderRuns(older, newer)).toEqual({ base: older, next: newer });
  });
});

describe("wordDiff", () => {
  it("diffs word by word", () => {
    const parts = wordDiff("The capital is Lyon.", "The capital is Paris.");
    expect(parts.filter((p) => p.kind === "removed").map((p) => p.text.trim())).toEqual(["Lyon"]);
    expect(parts.filter((p) => p.kind === "added").map((p) => p.text.trim())).toEqual(["Paris"]);
    expect(parts.filter((p) => p.kind !== "added").map((p) => p.text).join("")).toBe("The capital is Lyon.");
    expect(parts.filter((p) => p.kind !== "removed").map((p) => p.text).join("")).toBe("The capital is Paris.");
  });

  it("is all same for equal texts", () => {
    expect(wordDiff("a b", "a b").every((p) => p.kind === "same")).toBe(true);
  });
});

describe("pairDatapoints", () => {
  const cmp = comparison([
    metric("accuracy", [["dp1", 0.5, 0.9], ["dp2", 0.8, 0.3], ["dp3", 1, 1]]),
    metric("exact", [["dp1", 0, 1]]),
  ], ["dp1", "dp2", "dp3"]);
  const events = [
    pair("dp2", { answer: "Berlin" }, { answer: "Bonn" }),
    pair("dp1", { answer: "Paris" }, { answer: "Lyon" }),
    pair("dp3", { answer: "Rome" }, { answer: "Rome" }),
  ];

  it("pairs each datapoint's metric changes and both outputs, in the comparison's order", () => {
    const rows = pairDatapoints(cmp, events);
    expect(rows.map((r) => r.datapointId)).toEqual(["dp1", "dp2", "dp3"]);
    const [dp1, dp2, dp3] = rows;
    expect(dp1!.changes.map((c) => [c.label, c.before, c.after, c.direction])).toEqual([
      ["accuracy", 0.5, 0.9, "improved"], ["exact", 0, 1, "improved"]]);
    expect(dp1!.baseOutput).toBe("Lyon");
    expect(dp1!.newOutput).toBe("Paris");
    expect(dp1!.newSession).toBe("new-dp1");
    expect(dp1!.baseSession).toBe("old-dp1");
    expect(dp1!.inputs).toEqual({ q: "dp1" });
    expect([dp1!.improved, dp1!.regressed, dp1!.outputChanged]).toEqual([true, false, true]);
    expect(dp2!.regressed).toBe(true);
    expect(dp2!.changes[0]!.delta).toBeCloseTo(-0.5);
    expect([dp3!.improved, dp3!.regressed, dp3!.outputChanged]).toEqual([false, false, false]);
    expect(dp3!.changes[0]!.direction).toBe("unchanged");
  });

  it("keeps datapoints without events or without deltas", () => {
    const rows = pairDatapoints(cmp, [pair("dp9", { answer: "x" }, { answer: "y" })]);
    expect(rows.map((r) => r.datapointId)).toEqual(["dp1", "dp2", "dp3", "dp9"]);
    expect(rows[0]!.baseOutput).toBe("");
    expect(rows[0]!.newSession).toBeNull();
    expect(rows[3]!.changes).toEqual([]);
    expect(rows[3]!.regressed).toBe(false);
  });

  it("summarizes each metric's aggregate change", () => {
    const summary = metricSummaries(comparison([
      metric("accuracy", [], { old_aggregate: 0.5, new_aggregate: 0.7, difference: 0.2 }),
      metric("latency", [], { old_aggregate: 2, new_aggregate: 1, difference: -1 }),
      metric("label", [], { difference: null }),
    ], []));
    expect(summary.map((s) => [s.label, s.direction])).toEqual([
      ["accuracy", "improved"], ["latency", "regressed"], ["label", "missing"]]);
  });
});

describe("resultRows", () => {
  it("gives each datapoint its values by metric key and its first event's inputs and outputs", () => {
    const rows = resultRows([
      { session_id: "s1", datapoint_id: "dp1", passed: true, metrics: [
        { name: "accuracy", event_name: "answer", event_type: "chain", value: 0.9, passed: true },
        { name: "accuracy", event_name: "answer", event_type: "chain", value: 0.1, passed: false },
        { name: "label", event_name: "answer", event_type: "chain", value: null, text: "good" },
      ] },
      { session_id: "s2", datapoint_id: null, passed: false, metrics: [] },
    ], [pair("dp1", { answer: "Paris" }, { answer: "Paris" })]);
    expect(rows.map((r) => [r.id, r.datapointId, r.sessionId, r.passed])).toEqual([
      ["dp1", "dp1", "s1", true], ["s2", null, "s2", false]]);
    const key = metricKey({ name: "accuracy", event_name: "answer", event_type: "chain" });
    expect(rows[0]!.values.get(key)?.value).toBe(0.9);
    expect(rows[0]!.outputs).toEqual({ answer: "Paris" });
    expect(rows[1]!.outputs).toBeUndefined();
  });
});
