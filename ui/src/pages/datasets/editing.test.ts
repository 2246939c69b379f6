import { describe, expect, it } from "vitest";
import { cellText, editorText, importErrorText, pageOf, parseMessages, parseObject } from "./editing";

describe("parseObject", () => {
  it("takes an object", () => {
    expect(parseObject('{"q": 1}', false)).toEqual({ ok: true, value: { q: 1 } });
  });
  it("makes empty text an empty object, or null when nullable", () => {
    expect(parseObject("  ", false)).toEqual({ ok: true, value: {} });
    expect(parseObject("", true)).toEqual({ ok: true, value: null });
    expect(parseObject("null", true)).toEqual({ ok: true, value: null });
  });
  it("reports invalid JSON", () => {
    const r = parseObject('{"q": ', false);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/^Not valid JSON/);
  });
  it("refuses what is not an object", () => {
    for (const text of ["[1]", "3", '"s"', "null"]) {
      expect(parseObject(text, false)).toEqual({ ok: false, error: "Must be a JSON object ({ … })" });
    }
  });
});

describe("parseMessages", () => {
  it("takes a list of objects, empty text as none", () => {
    expect(parseMessages('[{"role": "user"}]')).toEqual({ ok: true, value: [{ role: "user" }] });
    expect(parseMessages("")).toEqual({ ok: true, value: [] });
  });
  it("refuses anything else", () => {
    expect(parseMessages('{"role": "user"}').ok).toBe(false);
    expect(parseMessages("[1]").ok).toBe(false);
    expect(parseMessages("[").ok).toBe(false);
  });
});

describe("rendering", () => {
  it("editorText leaves empty values blank", () => {
    expect(editorText(null)).toBe("");
    expect(editorText({})).toBe("");
    expect(editorText([])).toBe("");
    expect(editorText({ a: 1 })).toBe('{\n  "a": 1\n}');
  });
  it("cellText is one line, cut", () => {
    expect(cellText(null)).toBe("—");
    expect(cellText({})).toBe("—");
    expect(cellText({ a: "b" })).toBe('{"a":"b"}');
    const long = cellText({ a: "x".repeat(500) }, 20);
    expect(long).toHaveLength(20);
    expect(long.endsWith("…")).toBe(true);
  });
  it("pageOf clamps the page", () => {
    const items = Array.from({ length: 55 }, (_, i) => i);
    expect(pageOf(items, 1, 25)).toEqual({ rows: items.slice(0, 25), pages: 3, page: 1 });
    expect(pageOf(items, 9, 25).page).toBe(3);
    expect(pageOf(items, 3, 25).rows).toEqual([50, 51, 52, 53, 54]);
    expect(pageOf([], 0, 25)).toEqual({ rows: [], pages: 1, page: 1 });
  });
});

describe("importErrorText", () => {
  it("keeps a message that names its line, prefixes one that does not", () => {
    expect(importErrorText({ line: 2, message: "line 2 is not valid JSON: x" })).toBe("Line 2 is not valid JSON: x");
    expect(importErrorText({ line: 3, message: "CSV line 3 has 3 cells" })).toBe("CSV line 3 has 3 cells");
    expect(importErrorText({ line: 12, message: "line 1 of something" })).toBe("Line 12: line 1 of something");
    expect(importErrorText({ line: 4, message: "ground_truth must be an object" })).toBe("Line 4: ground_truth must be an object");
  });
});
