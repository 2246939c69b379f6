// The datapoint editor's logic: JSON fields checked in the browser (invalid JSON is an
// inline error, never a request), and a datapoint's cells shown compactly in the table.

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** A JSON object from an editor field. Empty text is ``{}`` (or null when ``nullable``). */
export function parseObject(text: string, nullable: boolean): Parsed<Record<string, unknown> | null> {
  if (!text.trim()) return { ok: true, value: nullable ? null : {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `Not valid JSON: ${(e as Error).message}` };
  }
  if (value === null && nullable) return { ok: true, value: null };
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, error: "Must be a JSON object ({ … })" };
  }
  return { ok: true, value: value as Record<string, unknown> };
}

/** A JSON list of message objects (chat history). Empty text is ``[]``. */
export function parseMessages(text: string): Parsed<Record<string, unknown>[]> {
  if (!text.trim()) return { ok: true, value: [] };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `Not valid JSON: ${(e as Error).message}` };
  }
  if (!Array.isArray(value) || !value.every((m) => typeof m === "object" && m !== null && !Array.isArray(m))) {
    return { ok: false, error: "Must be a JSON list of message objects ([{ … }])" };
  }
  return { ok: true, value: value as Record<string, unknown>[] };
}

/** Pretty JSON for an editor field ("" for null or an empty object/list). */
export function editorText(value: unknown): string {
  if (value == null) return "";
  if (typeof value === "object" && Object.keys(value).length === 0) return "";
  return JSON.stringify(value, null, 2);
}

/** A compact one-line rendering of a cell ("—" when empty), cut at ``max`` characters. */
export function cellText(value: unknown, max = 120): string {
  if (value == null) return "—";
  if (typeof value === "object" && Object.keys(value).length === 0) return "—";
  const text = JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The page of ``items`` (1-based) and how many pages there are. */
export function pageOf<T>(items: readonly T[], page: number, size: number): { rows: T[]; pages: number; page: number } {
  const pages = Math.max(1, Math.ceil(items.length / size));
  const p = Math.min(Math.max(1, page), pages);
  return { rows: items.slice((p - 1) * size, p * size), pages, page: p };
}

/** An import error for reading: the API's message when it already names the line
 * ("line 2 is not valid JSON…", "CSV line 3 has…"), else "Line N: message". */
export function importErrorText(error: { line: number; message: string }): string {
  const m = error.message;
  if (new RegExp(`\\bline ${error.line}\\b`, "i").test(m)) return m.charAt(0).toUpperCase() + m.slice(1);
  return `Line ${error.line}: ${m}`;
}
