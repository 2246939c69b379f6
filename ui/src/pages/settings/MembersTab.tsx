import { useQueries } from "@tanstack/react-query";
import { type FormEvent, useId, useState } from "react";
import { cp, unwrap } from "../../api/client";
import { useMe, useWorkspaces } from "../../api/queries";
import {
  ensureOk, type InvitationIssuedOut, type RoleOut, useInvitations, useMemberships, useRoles, useSettingsMutation,
} from "../../api/settings";
import { formatWhen, groupPermissions, invitationStatus, scopeLabel } from "./format";
import { ConfirmButton, EmptyRow, ErrorNote, SecretOnce, Section } from "./parts";

interface Props {
  orgId: string | undefined;
  workspaceId: string | undefined;
  projectId: string;
}

/** The organization's members and their roles, its invitations, and its roles. */
export function MembersTab({ orgId, workspaceId, projectId }: Props) {
  const roles = useRoles(orgId);
  const workspaces = useWorkspaces(orgId);
  const projects = useQueries({
    queries: (workspaces.data ?? []).map((w) => ({
      queryKey: ["projects", w.id],
      queryFn: async () => unwrap(await cp.GET("/v1/workspaces/{workspace_id}/projects", { params: { path: { workspace_id: w.id } } })),
    })),
  });
  const projectList = projects.flatMap((q) => q.data ?? []);
  const names: Names = {
    workspaces: new Map((workspaces.data ?? []).map((w) => [w.id, w.name])),
    projects: new Map(projectList.map((p) => [p.id, p.name])),
  };
  const roleNames = (roles.data ?? []).map((r) => r.name);
  return (
    <>
      <Members orgId={orgId} roleNames={roleNames} names={names} />
      <Invitations orgId={orgId} workspaceId={workspaceId} projectId={projectId} roleNames={roleNames} names={names} />
      <Roles roles={roles.data} error={roles.error} loading={roles.isPending} />
    </>
  );
}

type Names = { workspaces: ReadonlyMap<string, string>; projects: ReadonlyMap<string, string> };

function Members({ orgId, roleNames, names }: { orgId: string | undefined; roleNames: string[]; names: Names }) {
  const me = useMe();
  const members = useMemberships(orgId);
  const change = useSettingsMutation(async ({ id, role }: { id: string; role: string }) => unwrap(await cp.PATCH(
    "/v1/orgs/{org_id}/memberships/{membership_id}", { params: { path: { org_id: orgId!, membership_id: id } }, body: { role } })), ["memberships"]);
  const remove = useSettingsMutation(async (id: string) => ensureOk(await cp.DELETE(
    "/v1/orgs/{org_id}/memberships/{membership_id}", { params: { path: { org_id: orgId!, membership_id: id } } })), ["memberships"]);
  const rows = members.data ?? [];
  return (
    <Section title="Members" description="Everyone with a role in this organization, or in one of its workspaces or projects.">
      <ErrorNote error={members.error} what="list the members" />
      <ErrorNote error={change.error} what="change the role" />
      <ErrorNote error={remove.error} what="remove the member" />
      {change.isSuccess && <p role="status" className="ok-note">Role changed to {change.data.role}.</p>}
      {!members.error && (
        <table className="grid" aria-label="Members" aria-busy={members.isPending}>
          <thead>
            <tr><th scope="col">Member</th><th scope="col">Applies to</th><th scope="col">Role</th><th scope="col"><span className="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            {rows.map((m) => {
              const who = m.email ?? m.user_id;
              const options = roleNames.includes(m.role) ? roleNames : [m.role, ...roleNames];
              return (
                <tr key={m.id}>
                  <td>{who}{m.user_id === me.data?.user.id && <span className="badge you">you</span>}</td>
                  <td>{scopeLabel(m, names)}</td>
                  <td>
                    <select aria-label={`Role of ${who} (${scopeLabel(m, names)})`} value={m.role} disabled={change.isPending}
                      onChange={(e) => change.mutate({ id: m.id, role: e.target.value })}>
                      {options.map((r) => <option key={r} value={r}>{r}</option>)}
                    </select>
                  </td>
                  <td className="actions">
                    <ConfirmButton label="Remove" title={`Remove ${who}?`} confirm="Remove member" disabled={remove.isPending}
                      description={m.user_id === me.data?.user.id
                        ? <>This is you: you lose the role <strong>{m.role}</strong> on {scopeLabel(m, names).toLowerCase()}, and what it gave you access to.</>
                        : <>They lose the role <strong>{m.role}</strong> on {scopeLabel(m, names).toLowerCase()}.</>}
                      onConfirm={() => remove.mutate(m.id)} />
                  </td>
                </tr>
              );
            })}
            {rows.length === 0 && <EmptyRow colSpan={4} loading={members.isPending}>No members.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function Invitations({ orgId, workspaceId, projectId, roleNames, names }: Props & { roleNames: string[]; names: Names }) {
  const invitations = useInvitations(orgId);
  const [issued, setIssued] = useState<InvitationIssuedOut | null>(null);
  const invite = useSettingsMutation(async (body: { email: string; role: string; workspace_id?: string; project_id?: string }) =>
    unwrap(await cp.POST("/v1/orgs/{org_id}/invitations", { params: { path: { org_id: orgId! } }, body })), ["invitations"]);
  const revoke = useSettingsMutation(async (id: string) => ensureOk(await cp.DELETE(
    "/v1/orgs/{org_id}/invitations/{invitation_id}", { params: { path: { org_id: orgId!, invitation_id: id } } })), ["invitations"]);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("");
  const [where, setWhere] = useState<"org" | "workspace" | "project">("org");
  const id = useId();
  const chosenRole = role || (roleNames.includes("member") ? "member" : roleNames[0] ?? "");

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!email.trim() || !chosenRole) return;
    const body = {
      email: email.trim(), role: chosenRole,
      ...(where !== "org" && workspaceId ? { workspace_id: workspaceId } : {}),
      ...(where === "project" ? { project_id: projectId } : {}),
    };
    invite.mutate(body, { onSuccess: (result) => { setIssued(result); setEmail(""); } });
  }

  const rows = [...(invitations.data ?? [])].sort((a, b) => b.created_at.localeCompare(a.created_at));
  return (
    <Section title="Invitations" description="Invite someone by email; they join when they accept with their own account.">
      <form className="settings-form inline" onSubmit={submit} aria-label="Invite a member">
        <div className="field">
          <label htmlFor={`${id}-email`}>Email</label>
          <input id={`${id}-email`} type="email" required value={email} onChange={(e) => setEmail(e.target.value)} placeholder="name@example.com" />
        </div>
        <div className="field">
          <label htmlFor={`${id}-role`}>Role</label>
          <select id={`${id}-role`} value={chosenRole} onChange={(e) => setRole(e.target.value)}>
            {roleNames.length === 0 && <option value="">…</option>}
            {roleNames.map((r) => <option key={r} value={r}>{r}</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${id}-where`}>On</label>
          <select id={`${id}-where`} value={where} onChange={(e) => setWhere(e.target.value as typeof where)}>
            <option value="org">The organization</option>
            <option value="workspace" disabled={!workspaceId}>This workspace</option>
            <option value="project">This project</option>
          </select>
        </div>
        <button type="submit" className="primary" disabled={invite.isPending || !email.trim() || !chosenRole}>
          {invite.isPending ? "Inviting…" : "Send invitation"}
        </button>
      </form>
      <ErrorNote error={invite.error} what="invite" />
      {issued && (
        <SecretOnce label={`Invitation token for ${issued.invitation.email}`} secret={issued.token} onDone={() => setIssued(null)}
          lost="if it is lost, withdraw the invitation and invite again.">
          <p>Invited <strong>{issued.invitation.email}</strong> as {issued.invitation.role}. When email delivery is configured they
            receive a link; otherwise send them this token to accept with.</p>
        </SecretOnce>
      )}
      <ErrorNote error={invitations.error} what="list the invitations" />
      <ErrorNote error={revoke.error} what="withdraw the invitation" />
      {!invitations.error && (
        <table className="grid" aria-label="Invitations" aria-busy={invitations.isPending}>
          <thead>
            <tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Applies to</th><th scope="col">Sent</th>
              <th scope="col">Expires</th><th scope="col">Status</th><th scope="col"><span className="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            {rows.map((inv) => {
              const status = invitationStatus(inv);
              return (
                <tr key={inv.id} className={status === "pending" ? undefined : "row-revoked"}>
                  <td>{inv.email}</td>
                  <td>{inv.role}</td>
                  <td>{scopeLabel(inv, names)}</td>
                  <td>{formatWhen(inv.created_at)}</td>
                  <td>{formatWhen(inv.expires_at)}</td>
                  <td><span className={`badge status-${status}`}>{status}</span></td>
                  <td className="actions">
                    {status === "pending" && (
                      <ConfirmButton label="Withdraw" title={`Withdraw the invitation of ${inv.email}?`} confirm="Withdraw invitation"
                        description="Its link stops working; you can invite them again later." disabled={revoke.isPending}
                        onConfirm={() => revoke.mutate(inv.id)} />
                    )}
                  </td>
                </tr>
              );
            })}
            {rows.length === 0 && <EmptyRow colSpan={7} loading={invitations.isPending}>No invitations yet — invite someone above.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function Roles({ roles, error, loading }: { roles: RoleOut[] | undefined; error: Error | null; loading: boolean }) {
  const rows = roles ?? [];
  return (
    <Section title="Roles" description="Built-in roles, and the organization's custom roles (managed with the API).">
      <ErrorNote error={error} what="list the roles" />
      {!error && (
        <table className="grid" aria-label="Roles" aria-busy={loading}>
          <thead><tr><th scope="col">Role</th><th scope="col">Kind</th><th scope="col">Permissions</th></tr></thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.id}>
                <td><strong>{r.name}</strong></td>
                <td className="nowrap">{r.builtin ? "Built-in" : <span className="badge">Custom</span>}</td>
                <td className="perm-groups">
                  {groupPermissions(r.permissions).map(([resource, actions]) => (
                    <span key={resource} className="perm-group"><span className="perm-resource">{resource}</span>{actions.length > 0 && `: ${actions.join(", ")}`}</span>
                  ))}
                </td>
              </tr>
            ))}
            {rows.length === 0 && <EmptyRow colSpan={3} loading={loading}>No roles.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}
