import { describe, expect, it } from "vitest";
import { formatMetric, metricRows } from "./metrics";

describe("metricRows", () => {
  it("groups a metric's explanation and extras under it", () => {
    expect(metricRows({ relevance: 0.8, relevance_explanation: "on topic", relevance_model: "judge", latency: 3 })).toEqual([
      { name: "relevance", value: 0.8, explanation: "on topic", extras: [["model", "judge"]] },
      { name: "latency", value: 3, explanation: null, extras: [] },
    ]);
  });
  it("gives the longest metric name its keys", () => {
    const rows = metricRows({ a: 1, a_b: 2, a_b_explanation: "why" });
    expect(rows).toEqual([
      { name: "a", value: 1, explanation: null, extras: [] },
      { name: "a_b", value: 2, explanation: "why", extras: [] },
    ]);
  });
  it("keeps unclaimed keys as metrics, and handles nothing", () => {
    expect(metricRows({ tone_explanation: "x" })).toEqual([{ name: "tone_explanation", value: "x", explanation: null, extras: [] }]);
    expect(metricRows(null)).toEqual([]);
    expect(metricRows({})).toEqual([]);
  });
});

describe("formatMetric", () => {
  it("reads values", () => {
    expect(formatMetric(0.123456)).toBe("0.1235");
    expect(formatMetric(3)).toBe("3");
    expect(formatMetric(true)).toBe("pass");
    expect(formatMetric(false)).toBe("fail");
    expect(formatMetric(null)).toBe("—");
    expect(formatMetric("ok")).toBe("ok");
    expect(formatMetric({ a: 1 })).toBe('{"a":1}');
  });
});
