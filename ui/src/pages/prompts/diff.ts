// A line diff of two prompt versions (jsdiff's diffLines), as numbered rows to render.
import { diffLines } from "diff";

export interface DiffRow {
  kind: "same" | "added" | "removed";
  text: string;
  /** Line number in the old text (removed, same), else null. */
  oldNo: number | null;
  /** Line number in the new text (added, same), else null. */
  newNo: number | null;
}

function lines(value: string): string[] {
  const parts = value.split("\n");
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop(); // a final newline ends a line
  return parts;
}

/** Rows of the line diff from ``before`` to ``after``. */
export function lineDiff(before: string, after: string): DiffRow[] {
  const rows: DiffRow[] = [];
  let oldNo = 1;
  let newNo = 1;
  for (const change of diffLines(before, after)) {
    for (const text of lines(change.value)) {
      if (change.added) rows.push({ kind: "added", text, oldNo: null, newNo: newNo++ });
      else if (change.removed) rows.push({ kind: "removed", text, oldNo: oldNo++, newNo: null });
      else rows.push({ kind: "same", text, oldNo: oldNo++, newNo: newNo++ });
    }
  }
  return rows;
}

/** How many lines were added and removed. */
export function diffStats(rows: readonly DiffRow[]): { added: number; removed: number } {
  return {
    added: rows.filter((r) => r.kind === "added").length,
    removed: rows.filter((r) => r.kind === "removed").length,
  };
}

/** Canonical JSON (sorted keys, 2-space indent), so that model parameters diff by line. */
export function stableJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object") {
      return Object.fromEntries(Object.keys(v as Record<string, unknown>).sort()
        .map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2);
}
