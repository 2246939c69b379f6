import { describe, expect, it } from "vitest";
import { healthFigures, type PlaneLike, planeStatus } from "./planes";

const plane = (over: Partial<PlaneLike> = {}): PlaneLike => ({
  status: "active", federated: true, connected: true, draining: false, last_seen_at: "2026-12-06T04:00:00Z", last_health: null, ...over,
});

describe("planeStatus", () => {
  it("says connected, draining, revoked, pending or disconnected", () => {
    expect(planeStatus(plane())).toEqual({ label: "Connected", tone: "ok" });
    expect(planeStatus(plane({ draining: true }))).toEqual({ label: "Draining", tone: "warn" });
    expect(planeStatus(plane({ draining: true, connected: false })).label).toBe("Draining · disconnected");
    expect(planeStatus(plane({ connected: false }))).toEqual({ label: "Disconnected", tone: "bad" });
    expect(planeStatus(plane({ status: "revoked", connected: true }))).toEqual({ label: "Revoked", tone: "off" });
    expect(planeStatus(plane({ status: "pending" })).label).toBe("Pending registration");
    expect(planeStatus(plane({ federated: false, connected: false })).label).toBe("Local (not federated)");
  });
});

describe("healthFigures", () => {
  it("formats the last report", () => {
    expect(healthFigures({ ingest_rate: 1234.56, writer_lag: 12000, dead_letters: 3, evaluator_backlog: 0, status: "ok", reasons: [] }))
      .toEqual({ ingestRate: "1,235/s", writerLag: "12,000", deadLetters: "3", evaluatorBacklog: "0", problem: null });
    expect(healthFigures({ ingest_rate: 0.5 }).ingestRate).toBe("0.5/s");
  });
  it("says what a degraded report says, and dashes for what is missing", () => {
    expect(healthFigures({ status: "degraded", reasons: ["writer lag 12000", "dead letters"] }).problem).toBe("degraded: writer lag 12000; dead letters");
    expect(healthFigures({ status: "draining" }).problem).toBe("draining");
    expect(healthFigures(null)).toEqual({ ingestRate: "—", writerLag: "—", deadLetters: "—", evaluatorBacklog: "—", problem: null });
    expect(healthFigures({ writer_lag: "x" }).writerLag).toBe("—");
  });
});
