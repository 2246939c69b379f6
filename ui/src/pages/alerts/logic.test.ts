import { describe, expect, it } from "vitest";
import {
  type AlertForm, chartDomain, describeActivity, describeField, durationSeconds, emptyForm, errorField, errorSlot,
  fromAlert, niceTicks, rangeBounds, stateBadge, thresholdProblem, toCondition, toDuration, typedThresholds,
} from "./logic";

function form(over: Partial<AlertForm> = {}): AlertForm {
  return { ...emptyForm(), name: "model errors", warning: { enabled: true, op: ">=", value: "0.5" }, ...over };
}

function ok(f: AlertForm) {
  const r = toCondition(f);
  if ("errors" in r) throw new Error(JSON.stringify(r.errors));
  return r.condition;
}

function errors(f: AlertForm) {
  const r = toCondition(f);
  if (!("errors" in r)) throw new Error("expected errors");
  return r.errors;
}

describe("toCondition", () => {
  it("makes the docs' aggregate example", () => {
    const c = ok(form({
      window: { amount: "1", unit: "m" },
      filters: [{ kind: "event_type", value: "model" }],
      critical: { enabled: true, op: ">=", value: "0.9" },
    }));
    expect(c).toEqual({
      type: "aggregate", field: "error_rate", window_s: 60, min_duration_s: 0,
      filters: [{ field: "event_type", operator: "is", value: "model", type: "string" }],
      warning: { op: ">=", value: 0.5 }, critical: { op: ">=", value: 0.9 },
    });
  });

  it("makes a drift rule with its direction and comparison, and no aggregate-only keys", () => {
    const c = ok(form({
      type: "drift", fieldKind: "latency_p95", window: { amount: "1", unit: "h" }, direction: "up",
      comparison: { amount: "2", unit: "h" }, minDuration: { amount: "5", unit: "m" },
    }));
    expect(c).toMatchObject({ type: "drift", field: "latency_p95", window_s: 3600, comparison_window_s: 7200, direction: "up", min_duration_s: 300 });
    expect(c.aggregation).toBeUndefined();
    // An empty comparison is the API's default (the window's length): not sent.
    expect(ok(form({ type: "drift" })).comparison_window_s).toBeUndefined();
    // Aggregate rules never carry the drift-only keys (the API refuses them).
    const agg = ok(form({ direction: "down", comparison: { amount: "2", unit: "h" } }));
    expect(agg.direction).toBeUndefined();
    expect(agg.comparison_window_s).toBeUndefined();
  });

  it("names a metric or feedback field with its aggregation", () => {
    const c = ok(form({ fieldKind: "metrics", scoreName: "grounded", aggregation: "share_true", warning: { enabled: true, op: "<", value: "0.8" } }));
    expect(c).toMatchObject({ field: "metrics.grounded", aggregation: "share_true", warning: { op: "<", value: 0.8 } });
    expect(errors(form({ fieldKind: "feedback", scoreName: "" }))["condition.field"]).toMatch(/feedback name/);
    expect(errors(form({ fieldKind: "metrics", scoreName: "a b" }))["condition.field"]).toMatch(/metric name/);
  });

  it("keys each problem by the field the API would name", () => {
    const e = errors(form({ name: " ", window: { amount: "30", unit: "s" }, minDuration: { amount: "2", unit: "d" }, warning: { enabled: true, op: ">=", value: "x" } }));
    expect(e).toEqual({
      name: "Give the alert a name.",
      "condition.window_s": "A window is 1 minute to 7 days.",
      "condition.min_duration_s": "A minimum duration is 0 to 1 day.",
      "condition.warning": "Enter a number.",
    });
    expect(errors(form({ window: { amount: "8", unit: "d" } }))["condition.window_s"]).toBeDefined();
    expect(errors(form({ type: "drift", comparison: { amount: "10", unit: "s" } }))["condition.comparison_window_s"]).toBeDefined();
  });

  it("leaves the rules across thresholds to the server (its 400 names the field)", () => {
    // Critical not stricter, or no threshold at all: a body is still built and sent.
    const c = ok(form({ critical: { enabled: true, op: ">=", value: "0.3" } }));
    expect(c.critical).toEqual({ op: ">=", value: 0.3 });
    const none = ok(form({ warning: { enabled: false, op: ">=", value: "" } }));
    expect(none.warning).toBeUndefined();
    expect(none.critical).toBeUndefined();
  });

  it("is the inverse of fromAlert on what it makes", () => {
    const f = form({
      type: "drift", fieldKind: "feedback", scoreName: "rating", aggregation: "mean", direction: "down",
      window: { amount: "6", unit: "h" }, comparison: { amount: "1", unit: "d" }, minDuration: { amount: "90", unit: "s" },
      filters: [{ kind: "metadata", path: "tenant", operator: "is", value: "acme" }],
      warning: { enabled: true, op: ">", value: "0.25" }, critical: { enabled: true, op: ">=", value: "0.5" },
    });
    const condition = ok(f);
    const back = fromAlert({ name: f.name, description: "", condition: condition as unknown as Record<string, unknown> });
    expect(ok(back)).toEqual(condition);
    expect(back.window).toEqual({ amount: "6", unit: "h" });
    expect(back.minDuration).toEqual({ amount: "90", unit: "s" });
  });

  it("reads a stored rule with only a critical threshold, and the defaults the server filled in", () => {
    const back = fromAlert({ name: "x", description: "d", condition: {
      type: "drift", field: "cost", window_s: 3600, comparison_window_s: 3600, direction: "either",
      critical: { op: ">", value: 1 }, min_duration_s: 0, filters: [],
    } });
    expect(back.warning.enabled).toBe(false);
    expect(back.warning.op).toBe(">");
    expect(back.critical).toEqual({ enabled: true, op: ">", value: "1" });
    expect(back.comparison.amount).toBe(""); // the default: shown empty ("same")
  });
});

describe("typedThresholds", () => {
  it("reads the enabled thresholds that are numbers", () => {
    expect(typedThresholds(form({ critical: { enabled: true, op: ">", value: "0.9" } }))).toEqual({ warning: { op: ">=", value: 0.5 }, critical: { op: ">", value: 0.9 } });
    expect(typedThresholds(form({ warning: { enabled: true, op: ">=", value: "x" }, critical: { enabled: false, op: ">", value: "0.9" } }))).toEqual({});
  });
});

describe("thresholdProblem (the control plane's rules)", () => {
  const t = (op: ">" | ">=" | "<" | "<=", value: number) => ({ op, value });
  it("needs one threshold", () => {
    expect(thresholdProblem("aggregate", undefined, undefined)).toEqual(["condition.warning", "Set a warning or a critical threshold (or both)."]);
    expect(thresholdProblem("aggregate", undefined, t("<", 3))).toBeNull();
  });
  it("wants both in the same direction, critical the stricter", () => {
    expect(thresholdProblem("aggregate", t(">=", 0.5), t(">=", 0.9))).toBeNull();
    expect(thresholdProblem("aggregate", t(">=", 0.5), t(">", 0.5))).toBeNull();
    expect(thresholdProblem("aggregate", t("<", 0.8), t("<", 0.5))).toBeNull();
    expect(thresholdProblem("aggregate", t(">=", 0.5), t(">=", 0.5))).toEqual(["condition.critical", "Critical (>= 0.5) must be stricter than warning (>= 0.5)."]);
    expect(thresholdProblem("aggregate", t(">=", 0.5), t(">=", 0.3))?.[0]).toBe("condition.critical");
    expect(thresholdProblem("aggregate", t(">", 0.5), t(">=", 0.5))?.[0]).toBe("condition.critical");
    expect(thresholdProblem("aggregate", t(">=", 0.5), t("<", 0.9))).toEqual(["condition.critical", "Warning and critical must compare in the same direction (warning >=, critical <)."]);
  });
  it("wants a drift threshold to be an upper bound on a positive change", () => {
    expect(thresholdProblem("drift", t("<", 0.5), undefined)?.[0]).toBe("condition.warning");
    expect(thresholdProblem("drift", t(">=", 0.5), t(">", 0))?.[0]).toBe("condition.critical");
    expect(thresholdProblem("drift", t(">=", 0.5), t(">=", 1))).toBeNull();
  });
});

/** An ApiError's shape (api/client.ts builds the client at import, which needs a page). */
function apiError(status: number, message: string, details: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), { status, errorCode: "x", details });
}

describe("errorField and errorSlot", () => {
  it("takes details.field, else the location a validation message starts with", () => {
    expect(errorField(apiError(400, "critical must be stricter", { field: "condition.critical" }))).toBe("condition.critical");
    expect(errorField(apiError(400, "invalid request: condition.window_s: Input should be greater than or equal to 60"))).toBe("condition.window_s");
    expect(errorField(apiError(409, "an alert with this name exists in the project", { field: "name" }))).toBe("name");
    expect(errorField(apiError(400, "something else"))).toBeNull();
    expect(errorField(new Error("network"))).toBeNull();
  });
  it("shows a threshold's sub-field at its threshold", () => {
    expect(errorSlot("condition.warning.value")).toBe("condition.warning");
    expect(errorSlot("condition.critical")).toBe("condition.critical");
    expect(errorSlot("condition.filters")).toBe("condition.filters");
    expect(errorSlot("condition.window_s")).toBe("condition.window_s");
  });
});

describe("durations", () => {
  it("reads typed amounts and shows seconds in the largest whole unit", () => {
    expect(durationSeconds({ amount: "1.5", unit: "h" })).toBe(5400);
    expect(durationSeconds({ amount: "", unit: "m" })).toBeNull();
    expect(durationSeconds({ amount: "-1", unit: "m" })).toBeNull();
    expect(durationSeconds({ amount: "0.5", unit: "s" })).toBeNull();
    expect(toDuration(5400)).toEqual({ amount: "90", unit: "m" });
    expect(toDuration(86_400)).toEqual({ amount: "1", unit: "d" });
    expect(toDuration(0)).toEqual({ amount: "0", unit: "s" });
  });
});

describe("stateBadge and describeField", () => {
  const alert = (state: "active" | "triggered" | "resolved" | "paused" | "muted", stage: "warning" | "critical" | null = null,
    evaluation_state: "triggered" | "resolved" | null = null) => ({ state, stage, evaluation_state });
  it("shows the stage while triggered, and what a muted alert's evaluator says", () => {
    expect(stateBadge(alert("triggered", "critical", "triggered"))).toEqual({ label: "Triggered · critical", tone: "critical" });
    expect(stateBadge(alert("triggered", "warning", "triggered")).tone).toBe("warning");
    expect(stateBadge(alert("muted", "warning", "triggered")).label).toBe("Muted · triggered (warning)");
    expect(stateBadge(alert("muted")).label).toBe("Muted");
    expect(stateBadge(alert("paused")).label).toBe("Paused");
    expect(stateBadge(alert("active")).label).toBe("Active");
  });
  it("describes the measure", () => {
    expect(describeField({ type: "aggregate", field: "error_rate", window_s: 60 })).toBe("Error rate over 1 minute");
    expect(describeField({ type: "drift", field: "latency_p95", window_s: 3600 })).toBe("Change of latency p95 over 1 hour");
    expect(describeField({ type: "aggregate", field: "metrics.grounded", aggregation: "share_true", window_s: 172_800 })).toBe("Share true of metrics.grounded over 2 days");
  });
});

describe("chart scaling", () => {
  it("spans the series and both thresholds, padded, never below zero for positive data", () => {
    const [lo, hi] = chartDomain([{ t: 1, value: 0.05 }, { t: 2, value: 0.3 }, { t: 3, value: null }], [{ value: 0.5 }, { value: 0.9 }]);
    expect(lo).toBe(0);
    expect(hi).toBeCloseTo(0.985);
    const [lo2] = chartDomain([{ t: 1, value: 0.1 }], [{ value: 0.9 }]);
    expect(lo2).toBeCloseTo(0.02);
  });
  it("keeps a threshold far above the data in view", () => {
    const [, hi] = chartDomain([{ t: 1, value: 2 }], [{ value: 100 }]);
    expect(hi).toBeGreaterThan(100);
  });
  it("gives a flat or empty series a visible range", () => {
    expect(chartDomain([{ t: 1, value: 5 }, { t: 2, value: 5 }], [])).toEqual([4.5, 5.5]);
    expect(chartDomain([{ t: 1, value: 0 }], [null])).toEqual([-1, 1]);
    expect(chartDomain([{ t: 1, value: null }], [])).toEqual([0, 1]);
  });
  it("pads negative values both ways (a drift's change)", () => {
    const [lo, hi] = chartDomain([{ t: 1, value: -0.5 }, { t: 2, value: 0.5 }], []);
    expect(lo).toBeCloseTo(-0.6);
    expect(hi).toBeCloseTo(0.6);
  });
  it("puts ticks on round numbers", () => {
    expect(niceTicks(0.1206, 1.08)).toEqual({ domain: [0, 1.25], ticks: [0, 0.25, 0.5, 0.75, 1, 1.25] });
    expect(niceTicks(0, 1)).toEqual({ domain: [0, 1], ticks: [0, 0.25, 0.5, 0.75, 1] });
    expect(niceTicks(-0.6, 0.6)).toEqual({ domain: [-1, 1], ticks: [-1, -0.5, 0, 0.5, 1] });
    expect(niceTicks(120, 1870)).toEqual({ domain: [0, 2000], ticks: [0, 500, 1000, 1500, 2000] });
    expect(niceTicks(5, 5)).toEqual({ domain: [5, 5], ticks: [5, 5] });
  });
  it("asks for whole minutes", () => {
    expect(rangeBounds(3600, 1_700_000_059_999)).toEqual({ from: 1_699_996_440, to: 1_700_000_040 });
  });
});

describe("describeActivity", () => {
  const base = { id: "e", kind: "transition", stage: "warning", state: "triggered", value: 0.62, threshold: 0.5, muted: false,
    channel_id: null, channel_type: null, outcome: null, attempts: null, detail: null, at: "2026-12-06T04:00:00Z" };
  it("says what happened", () => {
    expect(describeActivity(base)).toBe("Triggered warning at 0.62 (threshold 0.5)");
    expect(describeActivity({ ...base, muted: true })).toBe("Triggered warning at 0.62 (threshold 0.5) · muted, nothing sent");
    expect(describeActivity({ ...base, stage: "resolution", state: "resolved", value: 0.1, threshold: null })).toBe("Resolved at 0.1");
    expect(describeActivity({ ...base, kind: "delivery", channel_type: "slack", outcome: "delivered", attempts: 2 }))
      .toBe("Delivered warning to the slack channel after 2 attempts");
    expect(describeActivity({ ...base, kind: "delivery", channel_type: "webhook", outcome: "dead_lettered", attempts: 9, detail: "HTTP 503" }))
      .toBe("Not delivered (dead-lettered) warning to the webhook channel after 9 attempts: HTTP 503");
  });
});
