import { describe, expect, it } from "vitest";
import {
  DEFAULT_COLUMNS, DEFAULT_SORT, formatCost, formatSort, formatValue, fromLocalInput, nextSort, numberParam,
  parseColumns, parseSort, pick, schemaPaths, timeWindow, toggleColumn, toLocalInput,
} from "./traceState";

const NOW = 1_750_000_000_000;

describe("time range", () => {
  it("turns presets into a lower bound relative to now", () => {
    expect(timeWindow("15m", null, null, NOW)).toEqual({ gte: NOW - 15 * 60_000 });
    expect(timeWindow("7d", null, null, NOW)).toEqual({ gte: NOW - 7 * 86_400_000 });
    expect(timeWindow("all", null, null, NOW)).toEqual({});
  });

  it("falls back to the last 24 hours for an unknown key", () => {
    expect(timeWindow("nonsense", null, null, NOW)).toEqual({ gte: NOW - 86_400_000 });
    expect(timeWindow(null, 5, 6, NOW)).toEqual({ gte: NOW - 86_400_000 });
  });

  it("uses the custom bounds that are set", () => {
    expect(timeWindow("custom", 10, 20, NOW)).toEqual({ gte: 10, lte: 20 });
    expect(timeWindow("custom", null, 20, NOW)).toEqual({ lte: 20 });
    expect(timeWindow("custom", null, null, NOW)).toEqual({});
  });

  it("round-trips datetime-local values (to the minute)", () => {
    const ms = new Date(2026, 2, 4, 5, 6).getTime();
    expect(toLocalInput(ms)).toBe("2026-03-04T05:06");
    expect(fromLocalInput(toLocalInput(ms))).toBe(ms);
    expect(fromLocalInput("")).toBeNull();
    expect(toLocalInput(null)).toBe("");
    expect(numberParam("12")).toBe(12);
    expect(numberParam("x")).toBeNull();
    expect(numberParam("")).toBeNull();
  });
});

describe("sorting", () => {
  it("parses the URL form and rejects anything else", () => {
    expect(parseSort("duration:asc")).toEqual({ by: "duration", order: "asc" });
    expect(parseSort("total_tokens:desc")).toEqual({ by: "total_tokens", order: "desc" });
    expect(parseSort("metadata:desc")).toEqual(DEFAULT_SORT);
    expect(parseSort("cost:sideways")).toEqual(DEFAULT_SORT);
    expect(parseSort(null)).toEqual(DEFAULT_SORT);
  });

  it("leaves the default out of the URL", () => {
    expect(formatSort(DEFAULT_SORT)).toBeNull();
    expect(formatSort({ by: "cost", order: "asc" })).toBe("cost:asc");
    expect(parseSort(formatSort({ by: "cost", order: "asc" }))).toEqual({ by: "cost", order: "asc" });
  });

  it("flips the sorted column, starts another largest first", () => {
    expect(nextSort(DEFAULT_SORT, "start_time")).toEqual({ by: "start_time", order: "asc" });
    expect(nextSort({ by: "start_time", order: "asc" }, "start_time")).toEqual(DEFAULT_SORT);
    expect(nextSort(DEFAULT_SORT, "duration")).toEqual({ by: "duration", order: "desc" });
    expect(nextSort({ by: "duration", order: "desc" }, "duration")).toEqual({ by: "duration", order: "asc" });
  });
});

describe("chosen columns", () => {
  it("defaults when nothing or garbage is stored", () => {
    expect(parseColumns(null)).toEqual(DEFAULT_COLUMNS);
    expect(parseColumns("{")).toEqual(DEFAULT_COLUMNS);
    expect(parseColumns("[1,2]")).toEqual(DEFAULT_COLUMNS);
  });

  it("keeps known columns and metric/feedback paths, drops the rest", () => {
    const stored = JSON.stringify({
      sessions: ["cost", "bogus", "cost", "metrics.x"],
      events: ["duration", "metrics.accuracy", "feedback.rating", "inputs.secret", 3, "metrics."],
    });
    expect(parseColumns(stored)).toEqual({
      sessions: ["cost"],
      events: ["duration", "metrics.accuracy", "feedback.rating"],
    });
    expect(parseColumns(JSON.stringify({ events: [] }))).toEqual({ sessions: DEFAULT_COLUMNS.sessions, events: [] });
  });

  it("toggles a column on (at the end) and off", () => {
    expect(toggleColumn(["a", "b"], "c", true)).toEqual(["a", "b", "c"]);
    expect(toggleColumn(["a", "b"], "a", false)).toEqual(["b"]);
    expect(toggleColumn(["a", "b"], "a", true)).toEqual(["b", "a"]);
  });

  it("reads nested values and formats them for a cell", () => {
    expect(pick({ judge: { score: 0.5 } }, "judge.score")).toBe(0.5);
    expect(pick({ judge: 1 }, "judge.score")).toBeUndefined();
    expect(pick(null, "a")).toBeUndefined();
    expect(formatValue(0.123456)).toBe("0.1235");
    expect(formatValue(3)).toBe("3");
    expect(formatValue(true)).toBe("true");
    expect(formatValue(undefined)).toBe("—");
    expect(formatValue({ a: 1 })).toBe('{"a":1}');
    expect(formatCost(0)).toBe("—");
    expect(formatCost(0.0012)).toBe("$0.0012");
    expect(formatCost(1.5)).toBe("$1.50");
  });

  it("takes scalar metric and feedback paths from the schema as columns", () => {
    const paths = schemaPaths([
      { name: "metrics.accuracy", value_type: "number" },
      { name: "metrics.judge", value_type: "object" },
      { name: "metrics.judge.verdict", value_type: "string" },
      { name: "feedback.rating", value_type: "number" },
      { name: "metadata.user_id", value_type: "string" },
      { name: "metadata.user_id", value_type: "number" },
      { name: "inputs", value_type: "object" },
    ]);
    expect(paths.scores).toEqual(["feedback.rating", "metrics.accuracy", "metrics.judge.verdict"]);
    expect(paths.byColumn).toEqual({
      metrics: ["accuracy", "judge.verdict"], feedback: ["rating"], metadata: ["user_id"],
    });
  });
});
