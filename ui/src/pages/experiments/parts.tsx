// Small pieces the experiments pages share.
import { Link } from "react-router-dom";
import { ApiError } from "../../api/client";
import { type Direction, DIRECTION_LABEL, type DiffPart } from "./logic";
import "./experiments.css";

const ARROW: Record<Direction, string> = { improved: "▲", regressed: "▼", unchanged: "=", missing: "·" };

/** A change's direction: colored AND said in words (never color alone). */
export function DirectionBadge({ direction }: { direction: Direction }) {
  return (
    <span className={`dir dir-${direction}`}>
      <span aria-hidden="true">{ARROW[direction]} </span>{DIRECTION_LABEL[direction]}
    </span>
  );
}

export function RunStatus({ status }: { status: string | null | undefined }) {
  const s = status || "pending";
  return <span className={`run-status rs-${s}`}>{s}</span>;
}

export function PassBadge({ passed }: { passed: boolean }) {
  return passed
    ? <span className="pass">✓ Passed</span>
    : <span className="fail">✗ Failed</span>;
}

/** An API failure as a message (with the API's status), never a blank page. */
export function QueryError({ error, what, projectId }: { error: Error; what: string; projectId?: string }) {
  const status = error instanceof ApiError ? ` (${error.status})` : "";
  return (
    <div className="xp-error" role="alert">
      <p><strong>Could not load {what}{status}:</strong> {error.message}</p>
      {projectId && <p><Link to={`/projects/${projectId}/experiments`}>Back to the experiments</Link></p>}
    </div>
  );
}

export function formatCreated(iso: string | null | undefined): string {
  if (!iso) return "—";
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? iso : new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function runName(run: { name?: string | null; id: string }): string {
  return run.name || run.id.slice(0, 8);
}

/** One side of a word diff: the base side shows what was removed, the new side what was
 * added (with <del>/<ins>, which screen readers announce). */
export function DiffSide({ parts, side, label }: { parts: DiffPart[]; side: "base" | "new"; label: string }) {
  const hidden = side === "base" ? "added" : "removed";
  const empty = parts.every((p) => p.kind === hidden || p.text === "");
  return (
    <div className="diff-side">
      <h4>{label}</h4>
      <pre className="diff-text">
        {empty ? <span className="muted">(no output)</span> : parts.map((p, i) =>
          p.kind === hidden ? null
            : p.kind === "added" ? <ins key={i}>{p.text}</ins>
              : p.kind === "removed" ? <del key={i}>{p.text}</del>
                : <span key={i}>{p.text}</span>)}
      </pre>
    </div>
  );
}
