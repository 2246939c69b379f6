import { describe, expect, it } from "vitest";
import type { Criterion } from "../../api/review";
import { answersFrom, criteriaFromDrafts, criteriaOf, DEFAULT_CRITERIA, describeCriteria, feedbackOf, keyFromLabel, progressOf } from "./scoring";

const criteria: Criterion[] = [
  { key: "quality", kind: "rating", label: "Quality" },
  { key: "helpful", kind: "thumbs" },
  { key: "tone", kind: "category", options: ["formal", "casual"] },
  { key: "note", kind: "text", label: "Note" },
];

describe("scoring", () => {
  it("uses a rating and a comment for a queue without criteria", () => {
    expect(criteriaOf([])).toBe(DEFAULT_CRITERIA);
    expect(criteriaOf(undefined)).toBe(DEFAULT_CRITERIA);
    expect(criteriaOf(criteria)).toBe(criteria);
  });

  it("describes criteria in one line", () => {
    expect(describeCriteria(criteria)).toBe("Quality (1–5) · helpful (thumbs) · tone (formal/casual) · Note (text)");
  });

  it("turns answers into feedback, leaving out blank text and unknown keys", () => {
    expect(feedbackOf(criteria, { quality: 4, helpful: false, note: "  ", other: 1 })).toEqual({ quality: 4, helpful: false });
    expect(feedbackOf(criteria, { tone: "casual", note: " fine " })).toEqual({ tone: "casual", note: "fine" });
    expect(feedbackOf(criteria, {})).toEqual({});
  });

  it("reads recorded feedback back into answers of the right kinds", () => {
    expect(answersFrom(criteria, { quality: 2, helpful: "yes", tone: "formal", note: "x", extra: 1 }))
      .toEqual({ quality: 2, tone: "formal", note: "x" });
    expect(answersFrom(criteria, null)).toEqual({});
  });

  it("counts scored and skipped items as done", () => {
    expect(progressOf({ pending: 2, in_progress: 1, completed: 3, skipped: 1 })).toEqual({ done: 4, total: 7 });
    expect(progressOf(undefined)).toEqual({ done: 0, total: 0 });
  });

  it("derives feedback keys from labels", () => {
    expect(keyFromLabel("Overall quality")).toBe("overall_quality");
    expect(keyFromLabel("  3 Tone!")).toBe("tone");
    expect(keyFromLabel("???")).toBe("score");
  });
});

describe("criteriaFromDrafts", () => {
  it("names keys after labels and splits a category's labels", () => {
    expect(criteriaFromDrafts([
      { label: " Overall quality ", kind: "rating", options: "" },
      { label: "Tone", kind: "category", options: "formal, casual,, formal" },
    ])).toEqual([
      { key: "overall_quality", kind: "rating", label: "Overall quality" },
      { key: "tone", kind: "category", label: "Tone", options: ["formal", "casual"] },
    ]);
  });

  it("says why drafts cannot be criteria", () => {
    expect(criteriaFromDrafts([{ label: " ", kind: "text", options: "" }])).toBe("Criterion 1 needs a name.");
    expect(criteriaFromDrafts([{ label: "A b", kind: "text", options: "" }, { label: "a B", kind: "thumbs", options: "" }]))
      .toBe("Two criteria are named “a B”.");
    expect(criteriaFromDrafts([{ label: "Tone", kind: "category", options: "only" }]))
      .toBe("“Tone” needs two or more labels, separated by commas.");
  });
});
