// Pure helpers of the settings pages (unit-tested in format.test.ts).

/** The permissions an API key may carry (the control plane's KEY_GRANTABLE; it answers 400
 * for anything else), in the order the form lists them. */
export const KEY_PERMISSIONS: readonly string[] = [
  "events:write", "events:read", "project:read", "workspace:read",
  "datasets:read", "datasets:write", "prompts:read", "prompts:write",
  "evaluators:read", "evaluators:write", "queues:read", "queues:write",
  "annotations:write", "alerts:read", "alerts:write", "proxy:use",
];

/** The API's default for a new key. */
export const DEFAULT_KEY_PERMISSIONS: readonly string[] = ["events:write", "events:read"];

/** The visible start of a key: keys are ``hh_ingst_<key id>_<secret>``, so the id names
 * the key without a character of its secret. */
export function keyPrefix(keyId: string): string {
  return `hh_ingst_${keyId}_…`;
}

/** A date and time for a table cell, or "—"; "Never" for an absent last use. */
export function formatWhen(iso: string | null | undefined, absent = "—"): string {
  if (!iso) return absent;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return absent;
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** How long ago, coarsely ("just now", "5 minutes ago", "3 days ago"). */
export function ago(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return "Never";
  const then = new Date(iso).getTime();
  if (Number.isNaN(then)) return "Never";
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 60) return "just now";
  const units: Array<[number, string]> = [[86_400 * 365, "year"], [86_400 * 30, "month"], [86_400, "day"], [3600, "hour"], [60, "minute"]];
  for (const [size, name] of units) {
    if (s >= size) {
      const n = Math.floor(s / size);
      return `${n} ${name}${n === 1 ? "" : "s"} ago`;
    }
  }
  return "just now";
}

export type InvitationStatus = "pending" | "accepted" | "revoked" | "expired";

/** An invitation's state: accepted and revoked are final, else pending until it expires. */
export function invitationStatus(
  inv: { accepted_at: string | null; revoked_at: string | null; expires_at: string },
  now: number = Date.now(),
): InvitationStatus {
  if (inv.accepted_at) return "accepted";
  if (inv.revoked_at) return "revoked";
  if (new Date(inv.expires_at).getTime() <= now) return "expired";
  return "pending";
}

/** Where a membership or invitation applies, with the names the page knows. */
export function scopeLabel(
  m: { workspace_id: string | null; project_id: string | null },
  names: { workspaces: ReadonlyMap<string, string>; projects: ReadonlyMap<string, string> },
): string {
  if (m.project_id) return `Project ${names.projects.get(m.project_id) ?? m.project_id}`;
  if (m.workspace_id) return `Workspace ${names.workspaces.get(m.workspace_id) ?? m.workspace_id}`;
  return "Organization";
}

/** Permissions grouped by resource ("events:read", "events:write" → events: read, write). */
export function groupPermissions(permissions: readonly string[]): Array<[string, string[]]> {
  const groups = new Map<string, string[]>();
  for (const p of permissions) {
    const at = p.indexOf(":");
    const resource = at < 0 ? p : p.slice(0, at);
    const action = at < 0 ? "" : p.slice(at + 1);
    const list = groups.get(resource) ?? [];
    if (action && !list.includes(action)) list.push(action);
    groups.set(resource, list);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([r, actions]) => [r, actions.sort()]);
}

/** A normalized email domain, or an error message for what cannot be one. */
export function checkDomain(input: string): { domain: string } | { error: string } {
  const domain = input.trim().toLowerCase().replace(/^@/, "").replace(/\.$/, "");
  if (!domain) return { error: "Enter a domain, e.g. example.com" };
  if (!/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/.test(domain)) {
    return { error: `"${input.trim()}" is not a domain name like example.com` };
  }
  return { domain };
}
