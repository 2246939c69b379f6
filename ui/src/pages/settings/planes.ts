// Pure logic of the data planes tab (unit-tested in planes.test.ts): a plane's status
// badge and its last health report's figures (the federation stream's Health:
// apiary/control/federation/server.py).

export interface PlaneLike {
  status: "pending" | "active" | "revoked";
  federated: boolean;
  connected: boolean;
  draining: boolean;
  last_seen_at: string | null;
  last_health: Record<string, unknown> | null;
}

/** The status badge: revoked, pending, draining, connected, disconnected, or "local" for
 * a data plane that is not federated (it reports no health). */
export function planeStatus(p: PlaneLike): { label: string; tone: "ok" | "warn" | "off" | "bad" } {
  if (p.status === "revoked") return { label: "Revoked", tone: "off" };
  if (p.status === "pending") return { label: "Pending registration", tone: "warn" };
  if (!p.federated) return { label: "Local (not federated)", tone: "ok" };
  if (p.draining) return { label: p.connected ? "Draining" : "Draining · disconnected", tone: "warn" };
  return p.connected ? { label: "Connected", tone: "ok" } : { label: "Disconnected", tone: "bad" };
}

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

export interface HealthFigures {
  ingestRate: string;
  writerLag: string;
  deadLetters: string;
  evaluatorBacklog: string;
  /** The report's own status and reasons ("degraded: writer lag"), when not ok. */
  problem: string | null;
}

function count(v: number | null): string {
  return v === null ? "—" : v.toLocaleString("en-US");
}

/** The figures of a last-health report for the table ("—" for what it lacks). */
export function healthFigures(h: Record<string, unknown> | null): HealthFigures {
  if (!h) return { ingestRate: "—", writerLag: "—", deadLetters: "—", evaluatorBacklog: "—", problem: null };
  const rate = num(h.ingest_rate);
  const status = typeof h.status === "string" ? h.status : "ok";
  const reasons = Array.isArray(h.reasons) ? h.reasons.map(String) : [];
  return {
    ingestRate: rate === null ? "—" : `${rate >= 100 ? Math.round(rate).toLocaleString("en-US") : Number(rate.toPrecision(3))}/s`,
    writerLag: count(num(h.writer_lag)),
    deadLetters: count(num(h.dead_letters)),
    evaluatorBacklog: count(num(h.evaluator_backlog)),
    problem: status !== "ok" ? status + (reasons.length > 0 ? `: ${reasons.join("; ")}` : "")
      : reasons.length > 0 ? reasons.join("; ") : null,
  };
}
