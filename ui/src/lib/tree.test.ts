import { describe, expect, it } from "vitest";
import { allNodes, buildTree, visibleRows, type TreeEvent } from "./tree";

const ev = (event_id: string, parent_id: string | null, start_time: number): TreeEvent => ({ event_id, parent_id, start_time });
const ids = (nodes: { event: TreeEvent }[]) => nodes.map((n) => n.event.event_id);

describe("buildTree", () => {
  it("nests events under their parents, siblings by start time", () => {
    const roots = buildTree([
      ev("c2", "root", 30), ev("root", null, 0), ev("c1", "root", 10), ev("g", "c1", 20),
    ]);
    expect(ids(roots)).toEqual(["root"]);
    expect(ids(roots[0]!.children)).toEqual(["c1", "c2"]);
    expect(ids(roots[0]!.children[0]!.children)).toEqual(["g"]);
    expect(roots[0]!.children[0]!.children[0]!.depth).toBe(2);
  });

  it("breaks start-time ties by event id", () => {
    const roots = buildTree([ev("b", "r", 5), ev("r", null, 0), ev("a", "r", 5)]);
    expect(ids(roots[0]!.children)).toEqual(["a", "b"]);
  });

  it("makes an event whose parent is missing a root, and '' means no parent", () => {
    const roots = buildTree([ev("orphan", "gone", 5), { event_id: "r", parent_id: "", start_time: 1 }]);
    expect(ids(roots)).toEqual(["r", "orphan"]);
  });

  it("shows every event once, even with duplicates and a parent-id cycle", () => {
    const events = [ev("a", "b", 1), ev("b", "a", 2), ev("a", "b", 1), ev("self", "self", 3), ev("x", "a", 4)];
    const roots = buildTree(events);
    expect(ids(allNodes(roots)).sort()).toEqual(["a", "b", "self", "x"]);
    expect(ids(roots)).toContain("self");
    // The a <-> b cycle is cut once: one of them is a root, the other its child.
    const cycle = roots.filter((r) => r.event.event_id === "a" || r.event.event_id === "b");
    expect(cycle).toHaveLength(1);
    expect(cycle[0]!.children.map((c) => c.event.event_id)).toContain(cycle[0]!.event.event_id === "a" ? "b" : "a");
  });

  it("builds a 2,000-deep chain without recursion", () => {
    const events = [ev("n0", null, 0)];
    for (let i = 1; i < 2000; i++) events.push(ev(`n${i}`, `n${i - 1}`, i));
    const rows = visibleRows(buildTree(events), new Set());
    expect(rows).toHaveLength(2000);
    expect(rows[1999]!.depth).toBe(1999);
  });
});

describe("visibleRows", () => {
  it("lists depth-first and hides the children of collapsed nodes", () => {
    const roots = buildTree([ev("r", null, 0), ev("a", "r", 1), ev("a1", "a", 2), ev("b", "r", 3)]);
    expect(ids(visibleRows(roots, new Set()))).toEqual(["r", "a", "a1", "b"]);
    expect(ids(visibleRows(roots, new Set(["a"])))).toEqual(["r", "a", "b"]);
    expect(ids(visibleRows(roots, new Set(["r"])))).toEqual(["r"]);
  });
});
