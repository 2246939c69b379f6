// The filter builder's conditions <-> the export filter language of POST /v1/events/export
// (apiary/store/_filters.py): a list of {field, operator, value, type}. toFilters and
// fromFilters are inverses on everything the builder makes; a filter the builder has no
// form for is kept as a "raw" condition, so nothing a URL carries is ever dropped.
import type { components } from "../api/data";

export type EventFilter = components["schemas"]["EventFilter"];

export const OPERATORS = [
  "is", "is not", "contains", "not contains", "exists", "not exists",
  "greater than", "less than", "greater than or equal", "less than or equal",
] as const;
export type Operator = (typeof OPERATORS)[number];
export const VALUELESS: ReadonlySet<string> = new Set(["exists", "not exists"]);

/** The operators that compare numbers (for number columns and numeric nested values). */
export const NUMBER_OPERATORS = [
  "greater than", "less than", "greater than or equal", "less than or equal", "is", "is not",
] as const;
export type NumberOperator = (typeof NUMBER_OPERATORS)[number];

/** The JSON columns whose nested keys the builder filters on (metrics, feedback, ...). */
export const NESTED_COLUMNS = ["metadata", "metrics", "feedback", "user_properties"] as const;
export type NestedColumn = (typeof NESTED_COLUMNS)[number];

/** The numeric event columns the builder compares (latency, cost, tokens). */
export const NUMBER_FIELDS = ["duration", "cost", "total_tokens", "prompt_tokens", "completion_tokens"] as const;
export type NumberField = (typeof NUMBER_FIELDS)[number];

export type Condition =
  | { kind: "event_type"; value: string }
  | { kind: "event_name"; operator: Operator; value: string }
  | { kind: NestedColumn; path: string; operator: Operator; value: string }
  | { kind: "number"; field: NumberField; operator: NumberOperator; value: number }
  | { kind: "error"; present: boolean }
  | { kind: "error_text"; operator: "contains" | "not contains"; value: string }
  | { kind: "root" }
  | { kind: "raw"; filter: EventFilter };

export function isNested(kind: string): kind is NestedColumn {
  return (NESTED_COLUMNS as readonly string[]).includes(kind);
}

export const EVENT_TYPES = ["session", "chain", "model", "tool"] as const;

const PATH = /^[A-Za-z0-9_\-:@$#]+(\.[A-Za-z0-9_\-:@$#]+){0,7}$/;

/** Whether a metadata path is one the filter language accepts (dotted keys, up to 8). */
export function validPath(path: string): boolean {
  return PATH.test(path);
}

/** The type the server should read a typed-in value as: "42" is a number, "true" a boolean. */
export function valueType(value: string): "number" | "boolean" | "string" {
  if (value === "true" || value === "false") return "boolean";
  if (value.trim() !== "" && Number.isFinite(Number(value))) return "number";
  return "string";
}

function typedValue(value: string): string | number | boolean {
  const type = valueType(value);
  if (type === "number") return Number(value);
  if (type === "boolean") return value === "true";
  return value;
}

/** One condition as the filter language. */
export function toFilter(c: Condition): EventFilter {
  switch (c.kind) {
    case "event_type":
      return { field: "event_type", operator: "is", value: c.value, type: "string" };
    case "event_name":
      return VALUELESS.has(c.operator)
        ? { field: "event_name", operator: c.operator, value: null, type: "string" }
        : { field: "event_name", operator: c.operator, value: c.value, type: "string" };
    case "metadata":
    case "metrics":
    case "feedback":
    case "user_properties": {
      const field = `${c.kind}.${c.path}`;
      if (VALUELESS.has(c.operator)) return { field, operator: c.operator, value: null, type: "string" };
      if (c.operator === "contains" || c.operator === "not contains") {
        return { field, operator: c.operator, value: c.value, type: "string" };
      }
      return { field, operator: c.operator, value: typedValue(c.value), type: valueType(c.value) };
    }
    case "number":
      return { field: c.field, operator: c.operator, value: c.value, type: "number" };
    case "error":
      return { field: "error", operator: c.present ? "exists" : "not exists", value: null, type: "string" };
    case "error_text":
      return { field: "error", operator: c.operator, value: c.value, type: "string" };
    case "root":
      return { field: "parent_id", operator: "not exists", value: null, type: "string" };
    case "raw":
      return c.filter;
  }
}

export function toFilters(conditions: readonly Condition[]): EventFilter[] {
  return conditions.map(toFilter);
}

/** Whether two filters mean the same (a missing type is "string", a missing value null). */
export function sameFilter(a: EventFilter, b: EventFilter): boolean {
  return a.field === b.field && a.operator === b.operator && (a.value ?? null) === (b.value ?? null)
    && (a.type ?? "string") === (b.type ?? "string");
}

function isOperator(op: string): op is Operator {
  return (OPERATORS as readonly string[]).includes(op);
}

/** The builder's condition for one filter of the language (``raw`` when it has no form). */
export function fromFilter(f: EventFilter): Condition {
  const op = f.operator;
  const value = f.value;
  if (f.field === "event_type" && op === "is" && typeof value === "string" && (f.type ?? "string") === "string") {
    return { kind: "event_type", value };
  }
  if (f.field === "event_name" && isOperator(op) && (f.type ?? "string") === "string") {
    if (VALUELESS.has(op) && value == null) return { kind: "event_name", operator: op, value: "" };
    if (!VALUELESS.has(op) && typeof value === "string") return { kind: "event_name", operator: op, value };
  }
  if (f.field === "error" && (op === "exists" || op === "not exists") && value == null) {
    return { kind: "error", present: op === "exists" };
  }
  if (f.field === "error" && (op === "contains" || op === "not contains") && typeof value === "string"
    && (f.type ?? "string") === "string") {
    return { kind: "error_text", operator: op, value };
  }
  if (f.field === "parent_id" && op === "not exists" && value == null) return { kind: "root" };
  if ((NUMBER_FIELDS as readonly string[]).includes(f.field) && f.type === "number"
    && (NUMBER_OPERATORS as readonly string[]).includes(op) && typeof value === "number" && Number.isFinite(value)) {
    return { kind: "number", field: f.field as NumberField, operator: op as NumberOperator, value };
  }
  const dot = f.field.indexOf(".");
  const column = dot > 0 ? f.field.slice(0, dot) : "";
  if (isNested(column) && isOperator(op)) {
    const path = f.field.slice(dot + 1);
    if (validPath(path)) {
      if (VALUELESS.has(op) && value == null) return { kind: column, path, operator: op, value: "" };
      if (!VALUELESS.has(op) && value != null) {
        const text = String(value);
        const candidate: Condition = { kind: column, path, operator: op, value: text };
        // Only when it comes back the same (types included) is it the builder's own.
        if (sameFilter(toFilter(candidate), f)) {
          return candidate;
        }
      }
    }
  }
  return { kind: "raw", filter: f };
}

export function fromFilters(filters: readonly EventFilter[]): Condition[] {
  return filters.map(fromFilter);
}

/** A condition in words, for chips and screen readers. */
export function describe(c: Condition): string {
  const f = toFilter(c);
  if (c.kind === "root") return "root events only";
  if (c.kind === "error") return c.present ? "has an error" : "has no error";
  if (c.kind === "error_text") return `error ${c.operator} ${JSON.stringify(c.value)}`;
  return f.value == null ? `${f.field} ${f.operator}` : `${f.field} ${f.operator} ${JSON.stringify(f.value)}`;
}

/** The filters as a URL parameter value, and back (invalid input: no filters). */
export function encodeFilters(filters: readonly EventFilter[]): string {
  return JSON.stringify(filters);
}

export function decodeFilters(text: string | null): EventFilter[] | null {
  if (text == null) return null;
  try {
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed)) return null;
    const out: EventFilter[] = [];
    for (const item of parsed) {
      if (typeof item !== "object" || item === null) return null;
      const { field, operator, value, type } = item as Record<string, unknown>;
      if (typeof field !== "string" || typeof operator !== "string") return null;
      if (!(value == null || typeof value === "string" || typeof value === "number" || typeof value === "boolean")) return null;
      out.push({ field, operator, value: value ?? null, type: typeof type === "string" ? type : null });
    }
    return out;
  } catch {
    return null;
  }
}
