import { describe, expect, it } from "vitest";
import {
  type Condition, type EventFilter, decodeFilters, describe as describeCondition, encodeFilters, fromFilter, fromFilters,
  toFilter, toFilters, valueType,
} from "./filters";

describe("filter builder -> filter language", () => {
  it("writes each kind of condition as the server's filter", () => {
    const conditions: Condition[] = [
      { kind: "event_type", value: "model" },
      { kind: "event_name", operator: "contains", value: "chat" },
      { kind: "metadata", path: "user_id", operator: "is", value: "alice" },
      { kind: "metadata", path: "app.tenant.tier", operator: "greater than", value: "3" },
      { kind: "metadata", path: "flag", operator: "is", value: "true" },
      { kind: "metadata", path: "user_id", operator: "exists", value: "ignored" },
      { kind: "error", present: true },
      { kind: "error", present: false },
      { kind: "root" },
    ];
    expect(toFilters(conditions)).toEqual([
      { field: "event_type", operator: "is", value: "model", type: "string" },
      { field: "event_name", operator: "contains", value: "chat", type: "string" },
      { field: "metadata.user_id", operator: "is", value: "alice", type: "string" },
      { field: "metadata.app.tenant.tier", operator: "greater than", value: 3, type: "number" },
      { field: "metadata.flag", operator: "is", value: true, type: "boolean" },
      { field: "metadata.user_id", operator: "exists", value: null, type: "string" },
      { field: "error", operator: "exists", value: null, type: "string" },
      { field: "error", operator: "not exists", value: null, type: "string" },
      { field: "parent_id", operator: "not exists", value: null, type: "string" },
    ]);
  });

  it("keeps a substring search a string even when it looks like a number", () => {
    expect(toFilter({ kind: "metadata", path: "zip", operator: "contains", value: "123" }))
      .toEqual({ field: "metadata.zip", operator: "contains", value: "123", type: "string" });
  });

  it("types values as the server reads them", () => {
    expect(valueType("42")).toBe("number");
    expect(valueType("-1.5e3")).toBe("number");
    expect(valueType("false")).toBe("boolean");
    expect(valueType("alice")).toBe("string");
    expect(valueType("")).toBe("string");
    expect(valueType(" ")).toBe("string");
  });
});

describe("filter language -> filter builder", () => {
  it("round-trips everything the builder makes", () => {
    const conditions: Condition[] = [
      { kind: "event_type", value: "tool" },
      { kind: "event_name", operator: "is not", value: "x" },
      { kind: "event_name", operator: "not exists", value: "" },
      { kind: "metadata", path: "user_id", operator: "is", value: "alice" },
      { kind: "metadata", path: "n", operator: "less than", value: "10" },
      { kind: "metadata", path: "ok", operator: "is not", value: "false" },
      { kind: "metadata", path: "a.b", operator: "not exists", value: "" },
      { kind: "error", present: true },
      { kind: "root" },
    ];
    expect(fromFilters(toFilters(conditions))).toEqual(conditions);
  });

  it("keeps a filter it has no form for as raw, unchanged", () => {
    const odd: EventFilter[] = [
      { field: "duration", operator: "greater than", value: "1000", type: "string" }, // a number column typed as a string
      { field: "metadata.user_id", operator: "is", value: "42", type: "string" }, // typed as a string on purpose
      { field: "event_type", operator: "is not", value: "model", type: "string" },
      { field: "feedback.rating", operator: "is", value: "5", type: "string" },
      { field: "start_time", operator: "after", value: 1_700_000_000_000, type: "datetime" },
      { field: "cost", operator: "contains", value: 1, type: "number" },
    ];
    const conditions = fromFilters(odd);
    expect(conditions.map((c) => c.kind)).toEqual(["raw", "raw", "raw", "raw", "raw", "raw"]);
    expect(toFilters(conditions)).toEqual(odd);
  });

  it("recognises builder filters without a type (string is the default)", () => {
    expect(fromFilter({ field: "event_type", operator: "is", value: "model" }))
      .toEqual({ kind: "event_type", value: "model" });
    expect(fromFilter({ field: "error", operator: "exists" })).toEqual({ kind: "error", present: true });
  });
});

describe("filters in the URL", () => {
  it("decodes what it encodes", () => {
    const filters = toFilters([{ kind: "metadata", path: "user_id", operator: "is", value: "alice" }, { kind: "root" }]);
    expect(decodeFilters(encodeFilters(filters))).toEqual(filters);
  });

  it("refuses what is not a filter list", () => {
    expect(decodeFilters(null)).toBeNull();
    expect(decodeFilters("{")).toBeNull();
    expect(decodeFilters('{"field":"a"}')).toBeNull();
    expect(decodeFilters('[{"field":1,"operator":"is"}]')).toBeNull();
    expect(decodeFilters('[{"field":"a","operator":"is","value":{"x":1}}]')).toBeNull();
  });
});

describe("metrics, feedback, user properties, numbers and error text", () => {
  const conditions: Condition[] = [
    { kind: "metrics", path: "accuracy", operator: "greater than", value: "0.8" },
    { kind: "metrics", path: "judge.verdict", operator: "is", value: "pass" },
    { kind: "feedback", path: "rating", operator: "less than or equal", value: "2" },
    { kind: "feedback", path: "liked", operator: "is", value: "true" },
    { kind: "user_properties", path: "plan", operator: "is not", value: "free" },
    { kind: "user_properties", path: "country", operator: "exists", value: "" },
    { kind: "number", field: "duration", operator: "greater than", value: 1500 },
    { kind: "number", field: "cost", operator: "less than", value: 0.01 },
    { kind: "number", field: "total_tokens", operator: "greater than or equal", value: 1000 },
    { kind: "error_text", operator: "contains", value: "timeout" },
    { kind: "error_text", operator: "not contains", value: "rate limit" },
  ];

  it("writes them in the filter language, numbers typed as numbers", () => {
    expect(toFilters(conditions)).toEqual([
      { field: "metrics.accuracy", operator: "greater than", value: 0.8, type: "number" },
      { field: "metrics.judge.verdict", operator: "is", value: "pass", type: "string" },
      { field: "feedback.rating", operator: "less than or equal", value: 2, type: "number" },
      { field: "feedback.liked", operator: "is", value: true, type: "boolean" },
      { field: "user_properties.plan", operator: "is not", value: "free", type: "string" },
      { field: "user_properties.country", operator: "exists", value: null, type: "string" },
      { field: "duration", operator: "greater than", value: 1500, type: "number" },
      { field: "cost", operator: "less than", value: 0.01, type: "number" },
      { field: "total_tokens", operator: "greater than or equal", value: 1000, type: "number" },
      { field: "error", operator: "contains", value: "timeout", type: "string" },
      { field: "error", operator: "not contains", value: "rate limit", type: "string" },
    ]);
  });

  it("reads them back as the same conditions, through the URL form too", () => {
    expect(fromFilters(toFilters(conditions))).toEqual(conditions);
    expect(fromFilters(decodeFilters(encodeFilters(toFilters(conditions)))!)).toEqual(conditions);
  });

  it("describes them in words", () => {
    expect(describeCondition({ kind: "metrics", path: "accuracy", operator: "greater than", value: "0.8" }))
      .toBe("metrics.accuracy greater than 0.8");
    expect(describeCondition({ kind: "error_text", operator: "contains", value: "timeout" }))
      .toBe('error contains "timeout"');
    expect(describeCondition({ kind: "number", field: "duration", operator: "less than", value: 200 }))
      .toBe("duration less than 200");
  });

  it("keeps an unknown nested column or a non-finite number raw", () => {
    expect(fromFilter({ field: "config.model", operator: "is", value: "gpt", type: "string" }).kind).toBe("raw");
    expect(fromFilter({ field: "inputs.q", operator: "contains", value: "x", type: "string" }).kind).toBe("raw");
    expect(fromFilter({ field: "duration", operator: "greater than", value: "abc", type: "number" }).kind).toBe("raw");
  });
});
