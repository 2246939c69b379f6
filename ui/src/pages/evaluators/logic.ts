// What the evaluator pages compute from the control plane's definitions.
import type { Evaluator, EvaluatorVersion } from "../../api/evaluators";
import type { EventFilter } from "../../lib/filters";

export const TYPE_LABELS: Record<string, string> = { python: "Python metric", llm: "LLM judge", human: "Human review" };
export const RETURN_TYPES = ["float", "boolean", "string", "categorical"] as const;
export type ReturnType = (typeof RETURN_TYPES)[number];

export const PYTHON_TEMPLATE = `def evaluate(event):
    """Score one event: return a number, a bool, a string, or
    {"score": ..., "explanation": "..."}."""
    answer = str(event["outputs"].get("content", ""))
    return {"score": len(answer.split()), "explanation": "words in the answer"}
`;

export const JUDGE_TEMPLATE = `Rate how well the answer addresses the question, from 1 (not at all) to 5 (fully).

Question: {{inputs}}
Answer: {{outputs}}
`;

/** The version the project runs (the deployed one), if any. */
export function deployedVersion(e: Evaluator): EvaluatorVersion | undefined {
  return e.deployed_version == null ? undefined : e.versions.find((v) => v.version === e.deployed_version);
}

export function latestVersion(e: Evaluator): EvaluatorVersion | undefined {
  return e.versions.reduce<EvaluatorVersion | undefined>((best, v) => (!best || v.version > best.version ? v : best), undefined);
}

export interface OnlineState {
  online: boolean;
  /** Why it is not online, when it is not. */
  reason: string | null;
  samplingPct: number | null;
  version: number | null;
}

/** Whether the evaluator scores new events (the data plane's rule: enabled, a deployed
 * version sampling more than 0 %, not a human rubric). */
export function onlineState(e: Evaluator): OnlineState {
  const live = deployedVersion(e);
  const base = { samplingPct: live?.sampling_pct ?? null, version: live?.version ?? null };
  if (e.type === "human") return { ...base, online: false, reason: "scored by reviewers" };
  if (!live) return { ...base, online: false, reason: "no version deployed" };
  if (!e.enabled) return { ...base, online: false, reason: "disabled" };
  if (live.sampling_pct <= 0) return { ...base, online: false, reason: "samples 0 % of events" };
  return { ...base, online: true, reason: null };
}

/** The export filters of a version's ``filters`` ({filterArray: [...]} or a list). */
export function filterArrayOf(filters: unknown): EventFilter[] {
  const list = Array.isArray(filters) ? filters
    : filters && typeof filters === "object" ? (filters as { filterArray?: unknown }).filterArray : undefined;
  return Array.isArray(list) ? list.filter((f): f is EventFilter => !!f && typeof f === "object") : [];
}

/** A sampling percentage typed by the user, or an error message. */
export function parseSampling(text: string): { value: number } | { error: string } {
  const value = Number(text.trim());
  if (text.trim() === "" || !Number.isFinite(value) || value < 0 || value > 100) {
    return { error: "Sampling is a percentage from 0 to 100." };
  }
  return { value: Math.round(value * 100) / 100 };
}

/** A pass bound typed by the user: empty is none. */
export function parseBound(text: string): number | null | undefined {
  if (text.trim() === "") return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

export function formatScore(score: unknown): string {
  if (score === null || score === undefined) return "no score";
  if (typeof score === "number") return Number.isInteger(score) ? String(score) : score.toFixed(4).replace(/0+$/, "");
  return String(score);
}

/** Model parameters as typed (JSON object), or an error message. */
export function parseParams(text: string): { value: Record<string, unknown> } | { error: string } {
  if (text.trim() === "") return { value: {} };
  try {
    const value: unknown = JSON.parse(text);
    if (value && typeof value === "object" && !Array.isArray(value)) return { value: value as Record<string, unknown> };
  } catch { /* reported below */ }
  return { error: "Model parameters must be a JSON object, e.g. {\"model\": \"gpt-4o-mini\"}." };
}
