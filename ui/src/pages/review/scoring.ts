// The scoring form's model: the queue's criteria (a default when it names none), the
// reviewer's answers, and the feedback they become.
import type { Criterion } from "../../api/review";

export type Answer = number | boolean | string;
export type Answers = Readonly<Record<string, Answer>>;

/** A queue made without criteria (by the SDK, say) is scored with a rating and a comment. */
export const DEFAULT_CRITERIA: readonly Criterion[] = [
  { key: "rating", kind: "rating", label: "Rating" },
  { key: "comment", kind: "text", label: "Comment" },
];

export function criteriaOf(criteria: readonly Criterion[] | undefined): readonly Criterion[] {
  return criteria && criteria.length > 0 ? criteria : DEFAULT_CRITERIA;
}

export function labelOf(c: Criterion): string {
  return c.label || c.key;
}

/** One line for the queues table: "Quality (1–5) · Helpful (thumbs) · Tone (formal/casual)". */
export function describeCriteria(criteria: readonly Criterion[]): string {
  return criteria.map((c) => {
    const what = c.kind === "rating" ? "1–5" : c.kind === "thumbs" ? "thumbs"
      : c.kind === "category" ? (c.options ?? []).join("/") : "text";
    return `${labelOf(c)} (${what})`;
  }).join(" · ");
}

/** The feedback to record: every answered criterion (blank text left out). */
export function feedbackOf(criteria: readonly Criterion[], answers: Answers): Record<string, Answer> {
  const out: Record<string, Answer> = {};
  for (const c of criteria) {
    const v = answers[c.key];
    if (v === undefined) continue;
    if (typeof v === "string" && v.trim() === "" && c.kind === "text") continue;
    out[c.key] = typeof v === "string" && c.kind === "text" ? v.trim() : v;
  }
  return out;
}

/** The answers a previously recorded feedback gives back (to show, and change, a score). */
export function answersFrom(criteria: readonly Criterion[], feedback: Record<string, unknown> | null | undefined): Answers {
  const out: Record<string, Answer> = {};
  if (!feedback) return out;
  for (const c of criteria) {
    const v = feedback[c.key];
    if (c.kind === "rating" && typeof v === "number") out[c.key] = v;
    else if (c.kind === "thumbs" && typeof v === "boolean") out[c.key] = v;
    else if ((c.kind === "category" || c.kind === "text") && typeof v === "string") out[c.key] = v;
  }
  return out;
}

/** The first criterion of a kind: where a shortcut's value goes. */
export function firstOf(criteria: readonly Criterion[], kind: Criterion["kind"]): Criterion | undefined {
  return criteria.find((c) => c.kind === kind);
}

/** Progress of a queue from its item counts: reviewed (scored or skipped) of all items. */
export function progressOf(counts: Record<string, number> | undefined): { done: number; total: number } {
  const c = counts ?? {};
  const done = (c.completed ?? 0) + (c.skipped ?? 0);
  return { done, total: done + (c.pending ?? 0) + (c.in_progress ?? 0) };
}

/** A criterion's key from its label: "Overall quality" → "overall_quality". */
export function keyFromLabel(label: string): string {
  const key = label.trim().toLowerCase().replace(/[^a-z0-9_.-]+/g, "_").replace(/^[^a-z]+/, "").replace(/_+$/, "");
  return key || "score";
}

/** A criterion as the new-queue form holds it: a name, a kind, labels as typed. */
export interface CriterionDraft {
  label: string;
  kind: Criterion["kind"];
  options: string;
}

/** Drafts → criteria, or the reason they cannot be. */
export function criteriaFromDrafts(drafts: readonly CriterionDraft[]): Criterion[] | string {
  const out: Criterion[] = [];
  const keys = new Set<string>();
  for (const [i, d] of drafts.entries()) {
    const label = d.label.trim();
    if (!label) return `Criterion ${i + 1} needs a name.`;
    const key = keyFromLabel(label);
    if (keys.has(key)) return `Two criteria are named “${label}”.`;
    keys.add(key);
    const c: Criterion = { key, kind: d.kind, label };
    if (d.kind === "category") {
      const options = [...new Set(d.options.split(",").map((o) => o.trim()).filter(Boolean))];
      if (options.length < 2) return `“${label}” needs two or more labels, separated by commas.`;
      c.options = options;
    }
    out.push(c);
  }
  return out;
}
