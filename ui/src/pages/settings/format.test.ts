import { describe, expect, it } from "vitest";
import { ago, checkDomain, formatWhen, groupPermissions, invitationStatus, keyPrefix, scopeLabel } from "./format";

describe("keyPrefix", () => {
  it("names the key by its id, never a character of the secret", () => {
    expect(keyPrefix("k123")).toBe("hh_ingst_k123_…");
  });
});

describe("ago", () => {
  const now = Date.parse("2026-01-10T12:00:00Z");
  it("says Never for a key never used", () => {
    expect(ago(null, now)).toBe("Never");
    expect(ago("not a date", now)).toBe("Never");
  });
  it("rounds down to the largest unit", () => {
    expect(ago("2026-01-10T11:59:30Z", now)).toBe("just now");
    expect(ago("2026-01-10T11:59:00Z", now)).toBe("1 minute ago");
    expect(ago("2026-01-10T09:30:00Z", now)).toBe("2 hours ago");
    expect(ago("2026-01-07T12:00:00Z", now)).toBe("3 days ago");
    expect(ago("2025-01-01T12:00:00Z", now)).toBe("1 year ago");
  });
  it("treats a clock skewed into the future as just now", () => {
    expect(ago("2026-01-10T12:05:00Z", now)).toBe("just now");
  });
});

describe("formatWhen", () => {
  it("shows a placeholder for nothing", () => {
    expect(formatWhen(null)).toBe("—");
    expect(formatWhen(undefined, "Never")).toBe("Never");
    expect(formatWhen("garbage")).toBe("—");
  });
  it("formats a real time", () => {
    expect(formatWhen("2026-01-10T12:00:00Z")).toMatch(/2026/);
  });
});

describe("invitationStatus", () => {
  const now = Date.parse("2026-01-10T12:00:00Z");
  const base = { accepted_at: null, revoked_at: null, expires_at: "2026-01-11T00:00:00Z" };
  it("is pending until it expires", () => {
    expect(invitationStatus(base, now)).toBe("pending");
    expect(invitationStatus({ ...base, expires_at: "2026-01-10T12:00:00Z" }, now)).toBe("expired");
  });
  it("keeps accepted and revoked whatever the expiry", () => {
    expect(invitationStatus({ ...base, accepted_at: "2026-01-09T00:00:00Z", expires_at: "2026-01-01T00:00:00Z" }, now)).toBe("accepted");
    expect(invitationStatus({ ...base, revoked_at: "2026-01-09T00:00:00Z" }, now)).toBe("revoked");
  });
});

describe("scopeLabel", () => {
  const names = { workspaces: new Map([["w1", "main"]]), projects: new Map([["p1", "app"]]) };
  it("names the narrowest node, by name when known", () => {
    expect(scopeLabel({ workspace_id: null, project_id: null }, names)).toBe("Organization");
    expect(scopeLabel({ workspace_id: "w1", project_id: null }, names)).toBe("Workspace main");
    expect(scopeLabel({ workspace_id: "w1", project_id: "p1" }, names)).toBe("Project app");
    expect(scopeLabel({ workspace_id: "w9", project_id: null }, names)).toBe("Workspace w9");
  });
});

describe("groupPermissions", () => {
  it("groups by resource, sorted, without duplicates", () => {
    expect(groupPermissions(["events:write", "datasets:read", "events:read", "events:read", "admin"]))
      .toEqual([["admin", []], ["datasets", ["read"]], ["events", ["read", "write"]]]);
  });
});

describe("checkDomain", () => {
  it("normalizes", () => {
    expect(checkDomain("  @Example.COM. ")).toEqual({ domain: "example.com" });
    expect(checkDomain("sub.example.co.uk")).toEqual({ domain: "sub.example.co.uk" });
  });
  it("refuses what is not a domain", () => {
    expect(checkDomain("")).toHaveProperty("error");
    expect(checkDomain("localhost")).toHaveProperty("error");
    expect(checkDomain("a b.com")).toHaveProperty("error");
    expect(checkDomain("-bad.com")).toHaveProperty("error");
  });
});
