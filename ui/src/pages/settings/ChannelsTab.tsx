import { Label } from "radix-ui";
import { type FormEvent, type ReactNode, useMemo, useState } from "react";
import { type Channel, useChannelChanges, useChannels } from "../../api/alerts";
import { ApiError } from "../../api/client";
import { useProjects, useWorkspaces } from "../../api/queries";
import {
  type ChannelErrors, type ChannelForm, type ChannelType, SEVERITIES, type Severity, TYPE_LABELS,
  channelToForm, createBody, describeScope, describeTarget, emptyChannelForm, updateBody,
} from "./channels";
import { ConfirmButton, EmptyRow, ErrorNote, SecretOnce, Section } from "./parts";

/** The org's notification channels (email, Slack, signed webhooks): where alert firings
 * go, by scope and severity. Secrets are write-only: the table shows hints, an edit keeps
 * them unless typed again. "Send test" asks a data plane serving the scope to send one. */
export function ChannelsTab({ orgId, workspaceId, projectId }: { orgId: string | undefined; workspaceId: string | undefined; projectId: string }) {
  const channels = useChannels(orgId);
  const changes = useChannelChanges(orgId);
  const workspaces = useWorkspaces(orgId);
  const projects = useProjects(workspaceId);
  const [editing, setEditing] = useState<Channel | "new" | null>(null);
  const [secret, setSecret] = useState<{ name: string; value: string } | null>(null);
  const [notes, setNotes] = useState<Record<string, { ok: boolean; text: string }>>({});
  const names = useMemo(() => ({
    workspaces: new Map((workspaces.data ?? []).map((w) => [w.id, w.name])),
    projects: new Map((projects.data ?? []).map((p) => [p.id, p.name])),
  }), [workspaces.data, projects.data]);
  const rows = channels.data ?? [];

  function sendTest(c: Channel) {
    setNotes((n) => ({ ...n, [c.id]: { ok: true, text: "Sending…" } }));
    changes.test.mutate(c.id, {
      onSuccess: (t) => setNotes((n) => ({ ...n, [c.id]: { ok: true, text: `Test queued (data plane ${t.data_plane_id}, project ${names.projects.get(t.project_id) ?? t.project_id}).` } })),
      onError: (e) => setNotes((n) => ({ ...n, [c.id]: { ok: false, text: `Test not sent: ${e.message}` } })),
    });
  }

  return (
    <Section title="Notification channels"
      description="Where alert notifications go: email, a Slack incoming webhook or a signed webhook. A firing goes to every enabled channel whose scope contains its project and that takes its severity. URLs and signing secrets are stored encrypted and never shown again."
      actions={editing === null && <button type="button" className="primary" onClick={() => { setEditing("new"); setSecret(null); }}>Add channel</button>}>
      <ErrorNote error={channels.error} what="list the notification channels" />
      {secret && (
        <SecretOnce label={`Signing secret of ${secret.name}`} secret={secret.value} onDone={() => setSecret(null)}
          lost="if you lose it, set a new one by editing the channel.">
          <p>Your receiver checks <code>X-Apiary-Signature</code> with it (docs/alerts.md).</p>
        </SecretOnce>
      )}
      {editing !== null && orgId && (
        <ChannelEditor key={editing === "new" ? "new" : editing.id} orgId={orgId} channel={editing === "new" ? null : editing}
          currentWorkspace={workspaceId} currentProject={projectId}
          onDone={(generated) => { if (generated) setSecret(generated); setEditing(null); }} />
      )}
      {!channels.error && (
        <table className="grid" aria-label="Notification channels" aria-busy={channels.isPending}>
          <thead>
            <tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Target</th><th scope="col">Scope</th>
              <th scope="col">Severities</th><th scope="col"><span className="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            {rows.map((c) => (
              <tr key={c.id} className={c.enabled ? undefined : "row-revoked"}>
                <td><strong>{c.name}</strong>{!c.enabled && <> <span className="badge revoked">Disabled</span></>}</td>
                <td>{TYPE_LABELS[c.type as ChannelType] ?? c.type}</td>
                <td><span className="wrap">{describeTarget(c)}</span></td>
                <td>{describeScope(c.scope, names)}</td>
                <td><span className="perm-list">{c.severities.map((s) => <code key={s} className={`perm sev-${s}`}>{s}</code>)}</span></td>
                <td className="actions">
                  <button type="button" onClick={() => sendTest(c)} aria-label={`Send test to ${c.name}`}>Send test</button>
                  <button type="button" onClick={() => { setEditing(c); setSecret(null); }} aria-label={`Edit ${c.name}`}>Edit</button>
                  <ConfirmButton label="Delete" title={`Delete the channel ${c.name}?`}
                    description="It stops receiving notifications at once. This cannot be undone."
                    confirm="Delete channel" onConfirm={() => changes.remove.mutate(c.id)} />
                  {notes[c.id] && <div role="status" className={notes[c.id]!.ok ? "ok-note" : "error"}>{notes[c.id]!.text}</div>}
                </td>
              </tr>
            ))}
            {rows.length === 0 && <EmptyRow colSpan={6} loading={channels.isPending}>No notification channels yet: alerts fire, and nobody is told.</EmptyRow>}
          </tbody>
        </table>
      )}
      <ErrorNote error={changes.remove.error} what="delete the channel" />
    </Section>
  );
}

function FieldError({ id, message }: { id: string; message: string | undefined }) {
  if (!message) return null;
  return <p id={id} className="error field-error" role="alert">{message}</p>;
}

function Field({ id, label, error, hint, children }: { id: string; label: string; error?: string; hint?: ReactNode; children: ReactNode }) {
  return (
    <div className="field">
      <Label.Root htmlFor={id}>{label}</Label.Root>
      {children}
      {hint && <p>{hint}</p>}
      <FieldError id={`${id}-error`} message={error} />
    </div>
  );
}

/** The create / edit form; the server's 400 is shown next to the field it names. */
function ChannelEditor({ orgId, channel, currentWorkspace, currentProject, onDone }: {
  orgId: string;
  channel: Channel | null;
  currentWorkspace: string | undefined;
  currentProject: string;
  onDone: (generated: { name: string; value: string } | null) => void;
}) {
  const changes = useChannelChanges(orgId);
  const [form, setForm] = useState<ChannelForm>(() => channel ? channelToForm(channel) : {
    ...emptyChannelForm(), workspaceId: currentWorkspace ?? "", projectId: currentProject,
  });
  const [errors, setErrors] = useState<ChannelErrors>({});
  const [general, setGeneral] = useState<string | null>(null);
  const workspaces = useWorkspaces(orgId);
  const projects = useProjects(form.workspaceId || currentWorkspace);
  const set = <K extends keyof ChannelForm>(key: K, value: ChannelForm[K]) => setForm((f) => ({ ...f, [key]: value }));
  const busy = changes.create.isPending || changes.update.isPending;
  const cfg = channel?.config ?? {};
  const hint = (field: string) => typeof cfg[`${field}_hint`] === "string" ? `set (${String(cfg[`${field}_hint`])}); leave empty to keep it` : undefined;

  function failed(error: Error) {
    const field = error instanceof ApiError && typeof error.details.field === "string" ? error.details.field : null;
    const slot = field?.startsWith("scope") ? "scope" : field;
    if (slot && FORM_FIELDS.has(slot)) {
      setErrors({ [slot]: error.message });
      setGeneral(null);
    } else {
      setGeneral(error.message);
    }
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    setGeneral(null);
    const built = channel ? updateBody(form, channel) : createBody(form);
    if ("errors" in built) return setErrors(built.errors);
    setErrors({});
    if (channel) {
      changes.update.mutate({ channelId: channel.id, body: built.body }, { onSuccess: () => onDone(null), onError: failed });
    } else {
      changes.create.mutate(built.body as Parameters<typeof changes.create.mutate>[0], {
        onSuccess: (created) => onDone(created.signing_secret ? { name: created.name, value: created.signing_secret } : null),
        onError: failed,
      });
    }
  }

  const title = channel ? `Edit the channel ${channel.name}` : "Add a notification channel";
  const describedBy = (key: string) => errors[key] ? `ch-${key.replace(/\./g, "-")}-error` : undefined;
  return (
    <form className="settings-form grid-form" aria-label={title} onSubmit={submit} noValidate>
      <Field id="ch-name" label="Channel name" error={errors.name}>
        <input id="ch-name" value={form.name} onChange={(e) => set("name", e.target.value)} aria-invalid={!!errors.name} aria-describedby={describedBy("name")} />
      </Field>
      <Field id="ch-type" label="Type" hint={channel ? "The type of a channel never changes." : undefined}>
        <select id="ch-type" value={form.type} disabled={channel !== null} onChange={(e) => set("type", e.target.value as ChannelType)}>
          {(["slack", "email", "webhook"] as const).map((t) => <option key={t} value={t}>{TYPE_LABELS[t]}</option>)}
        </select>
      </Field>
      {form.type === "slack" && (
        <Field id="ch-config-webhook_url" label="Slack webhook URL" error={errors["config.webhook_url"]} hint={hint("webhook_url")}>
          <input id="ch-config-webhook_url" type="password" autoComplete="off" spellCheck={false} value={form.slackUrl}
            placeholder={channel ? "unchanged" : "https://hooks.slack.com/services/…"} onChange={(e) => set("slackUrl", e.target.value)}
            aria-invalid={!!errors["config.webhook_url"]} aria-describedby={describedBy("config.webhook_url")} />
        </Field>
      )}
      {form.type === "webhook" && (
        <>
          <Field id="ch-config-url" label="Webhook URL" error={errors["config.url"]} hint={hint("url")}>
            <input id="ch-config-url" type="password" autoComplete="off" spellCheck={false} value={form.webhookUrl}
              placeholder={channel ? "unchanged" : "https://hooks.example.com/apiary"} onChange={(e) => set("webhookUrl", e.target.value)}
              aria-invalid={!!errors["config.url"]} aria-describedby={describedBy("config.url")} />
          </Field>
          <Field id="ch-config-secret" label="Signing secret" error={errors["config.secret"]}
            hint={channel ? (cfg.has_secret ? "set; leave empty to keep it" : "leave empty to keep it") : "16 to 512 characters; leave empty to have one generated (shown once)."}>
            <input id="ch-config-secret" type="password" autoComplete="new-password" spellCheck={false} value={form.secret}
              placeholder={channel ? "unchanged" : "generated"} onChange={(e) => set("secret", e.target.value)}
              aria-invalid={!!errors["config.secret"]} aria-describedby={describedBy("config.secret")} />
          </Field>
        </>
      )}
      {form.type === "email" && (
        <>
          <Field id="ch-config-recipients" label="Recipients" error={errors["config.recipients"]} hint="Addresses separated by commas.">
            <input id="ch-config-recipients" value={form.recipients} onChange={(e) => set("recipients", e.target.value)}
              placeholder="oncall@example.com" aria-invalid={!!errors["config.recipients"]} aria-describedby={describedBy("config.recipients")} />
          </Field>
          <Field id="ch-config-from_address" label="From address (optional)" error={errors["config.from_address"]}>
            <input id="ch-config-from_address" value={form.fromAddress} onChange={(e) => set("fromAddress", e.target.value)} />
          </Field>
          <Field id="ch-config-smtp_url" label="SMTP URL (optional)" error={errors["config.smtp_url"]}
            hint={hint("smtp_url") ?? "smtps://user:password@mail.example.com; empty: the data plane's mail server."}>
            <input id="ch-config-smtp_url" type="password" autoComplete="off" spellCheck={false} value={form.smtpUrl}
              placeholder={channel && typeof cfg.smtp_url_hint === "string" ? "unchanged" : ""} onChange={(e) => set("smtpUrl", e.target.value)}
              aria-invalid={!!errors["config.smtp_url"]} aria-describedby={describedBy("config.smtp_url")} />
            {channel && typeof cfg.smtp_url_hint === "string" && (
              <label className="check"><input type="checkbox" checked={form.clearSmtpUrl} onChange={(e) => set("clearSmtpUrl", e.target.checked)} /> Remove the SMTP URL</label>
            )}
          </Field>
        </>
      )}
      <Field id="ch-scope" label="Scope" error={errors.scope}>
        <select id="ch-scope" value={form.scope} onChange={(e) => set("scope", e.target.value as ChannelForm["scope"])}
          aria-invalid={!!errors.scope} aria-describedby={describedBy("scope")}>
          <option value="org">The whole organization</option>
          <option value="workspace">A workspace</option>
          <option value="project">A project</option>
        </select>
        {form.scope !== "org" && (
          <>
            <Label.Root htmlFor="ch-scope-workspace" className="sr-only">Workspace</Label.Root>
            <select id="ch-scope-workspace" value={form.workspaceId} onChange={(e) => setForm((f) => ({ ...f, workspaceId: e.target.value, projectId: "" }))}>
              <option value="">Choose a workspace…</option>
              {workspaces.data?.map((w) => <option key={w.id} value={w.id}>{w.name}</option>)}
            </select>
          </>
        )}
        {form.scope === "project" && (
          <>
            <Label.Root htmlFor="ch-scope-project" className="sr-only">Project</Label.Root>
            <select id="ch-scope-project" value={form.projectId} onChange={(e) => set("projectId", e.target.value)}>
              <option value="">Choose a project…</option>
              {projects.data?.map((p) => <option key={p.id} value={p.id}>{p.name}</option>)}
            </select>
          </>
        )}
      </Field>
      <fieldset className="perm-grid">
        <legend>Severities</legend>
        {SEVERITIES.map((s) => (
          <label key={s} className="check">
            <input type="checkbox" checked={form.severities.includes(s)}
              onChange={(e) => set("severities", e.target.checked ? SEVERITIES.filter((x) => x === s || form.severities.includes(x)) : form.severities.filter((x) => x !== s) as Severity[])} />
            {s}
          </label>
        ))}
        <FieldError id="ch-severities-error" message={errors.severities} />
      </fieldset>
      <label className="check"><input type="checkbox" checked={form.enabled} onChange={(e) => set("enabled", e.target.checked)} /> Enabled</label>
      {general && <p className="error settings-error" role="alert">{general}</p>}
      <div className="form-actions">
        <button type="submit" className="primary" disabled={busy}>{busy ? "Saving…" : channel ? "Save channel" : "Create channel"}</button>
        <button type="button" onClick={() => onDone(null)}>Cancel</button>
      </div>
    </form>
  );
}

const FORM_FIELDS: ReadonlySet<string> = new Set([
  "name", "scope", "severities", "config.recipients", "config.from_address", "config.smtp_url",
  "config.webhook_url", "config.url", "config.secret",
]);
