import { describe, expect, it } from "vitest";
import type { Evaluator, EvaluatorVersion } from "../../api/evaluators";
import { filterArrayOf, formatScore, latestVersion, onlineState, parseBound, parseParams, parseSampling } from "./logic";

function version(n: number, pct = 100): EvaluatorVersion {
  return { version: n, criteria: null, code: "def evaluate(event): return 1", return_type: "float", pass_min: null, pass_max: null,
    sampling_pct: pct, filters: {}, model_params: {}, message: null, created_by: null, created_at: "2026-01-01T00:00:00Z" };
}

function evaluator(over: Partial<Evaluator> = {}): Evaluator {
  return { id: "e", project_id: "p", name: "words", type: "python", description: "", enabled: true,
    deployed_version: 2, versions: [version(1), version(2, 25), version(3)], ...over };
}

describe("onlineState", () => {
  it("is online with the deployed version's sampling", () => {
    expect(onlineState(evaluator())).toEqual({ online: true, reason: null, samplingPct: 25, version: 2 });
  });
  it("says why it is not", () => {
    expect(onlineState(evaluator({ deployed_version: null })).reason).toBe("no version deployed");
    expect(onlineState(evaluator({ enabled: false })).reason).toBe("disabled");
    expect(onlineState(evaluator({ type: "human" })).online).toBe(false);
    expect(onlineState(evaluator({ versions: [version(1), version(2, 0)] })).reason).toBe("samples 0 % of events");
    expect(onlineState(evaluator({ deployed_version: 9 })).reason).toBe("no version deployed");
  });
  it("finds the latest version", () => {
    expect(latestVersion(evaluator())?.version).toBe(3);
    expect(latestVersion(evaluator({ versions: [] }))).toBeUndefined();
  });
});

describe("parsing", () => {
  it("reads filters in both shapes", () => {
    const f = { field: "event_type", operator: "is", value: "model", type: "string" };
    expect(filterArrayOf({ filterArray: [f] })).toEqual([f]);
    expect(filterArrayOf([f])).toEqual([f]);
    expect(filterArrayOf({})).toEqual([]);
    expect(filterArrayOf(null)).toEqual([]);
  });
  it("checks sampling, bounds and parameters", () => {
    expect(parseSampling("25")).toEqual({ value: 25 });
    expect(parseSampling("12.345")).toEqual({ value: 12.35 });
    expect("error" in parseSampling("101")).toBe(true);
    expect("error" in parseSampling("")).toBe(true);
    expect("error" in parseSampling("x")).toBe(true);
    expect(parseBound("")).toBeNull();
    expect(parseBound("0.5")).toBe(0.5);
    expect(parseBound("a")).toBeUndefined();
    expect(parseParams("")).toEqual({ value: {} });
    expect(parseParams('{"model": "m"}')).toEqual({ value: { model: "m" } });
    expect("error" in parseParams("[1]")).toBe(true);
    expect("error" in parseParams("{")).toBe(true);
  });
  it("formats scores", () => {
    expect(formatScore(5)).toBe("5");
    expect(formatScore(0.5)).toBe("0.5");
    expect(formatScore(true)).toBe("true");
    expect(formatScore(null)).toBe("no score");
  });
});
