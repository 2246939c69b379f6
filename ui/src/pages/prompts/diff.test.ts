import { describe, expect, it } from "vitest";
import { diffStats, lineDiff, stableJson } from "./diff";

describe("lineDiff", () => {
  it("marks the changed line as removed then added, numbering both sides", () => {
    const rows = lineDiff("You are helpful.\nAnswer {{question}}.\nBe brief.\n",
      "You are helpful.\nAnswer {{question}} politely.\nBe brief.\n");
    expect(rows).toEqual([
      { kind: "same", text: "You are helpful.", oldNo: 1, newNo: 1 },
      { kind: "removed", text: "Answer {{question}}.", oldNo: 2, newNo: null },
      { kind: "added", text: "Answer {{question}} politely.", oldNo: null, newNo: 2 },
      { kind: "same", text: "Be brief.", oldNo: 3, newNo: 3 },
    ]);
    expect(diffStats(rows)).toEqual({ added: 1, removed: 1 });
  });

  it("handles identical, empty and appended texts", () => {
    expect(diffStats(lineDiff("a\nb", "a\nb"))).toEqual({ added: 0, removed: 0 });
    expect(lineDiff("", "x")).toEqual([{ kind: "added", text: "x", oldNo: null, newNo: 1 }]);
    const appended = lineDiff("a", "a\nb");
    expect(appended.filter((r) => r.kind === "added").map((r) => r.text)).toContain("b");
    expect(appended.at(-1)).toMatchObject({ kind: "added", text: "b", newNo: 2 });
  });

  it("keeps blank lines in the middle", () => {
    const rows = lineDiff("a\n\nb\n", "a\n\nc\n");
    expect(rows.map((r) => [r.kind, r.text])).toEqual([
      ["same", "a"], ["same", ""], ["removed", "b"], ["added", "c"],
    ]);
  });
});

describe("stableJson", () => {
  it("sorts keys at every depth", () => {
    expect(stableJson({ b: 1, a: { d: [2, { z: 1, y: 0 }], c: null } }))
      .toBe(JSON.stringify({ a: { c: null, d: [2, { y: 0, z: 1 }] }, b: 1 }, null, 2));
  });
});
