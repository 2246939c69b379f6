import { type FormEvent, useId, useState } from "react";
import { createKey, type KeyIssuedOut, type KeyOwner, revokeKey, useKeys, useSettingsMutation } from "../../api/settings";
import { ago, DEFAULT_KEY_PERMISSIONS, formatWhen, KEY_PERMISSIONS, keyPrefix } from "./format";
import { ConfirmButton, EmptyRow, ErrorNote, Permissions, SecretOnce, Section } from "./parts";

/** The project's keys (ingestion, one project) and the workspace's keys (every project of it). */
export function KeysTab({ projectId, workspaceId }: { projectId: string; workspaceId: string | undefined }) {
  return (
    <>
      <KeySection owner={{ kind: "project", id: projectId }} title="Project API keys"
        description="For applications that send traces to this project: the SDKs, OpenTelemetry exporters and the API." />
      <KeySection owner={workspaceId ? { kind: "workspace", id: workspaceId } : null} title="Workspace API keys"
        description="Valid for every project of this workspace; choose the project per request (a token narrowed to it)." />
    </>
  );
}

function KeySection({ owner, title, description }: { owner: KeyOwner | null; title: string; description: string }) {
  const keys = useKeys(owner);
  const [creating, setCreating] = useState(false);
  const [issued, setIssued] = useState<KeyIssuedOut | null>(null);
  const noun = owner?.kind === "workspace" ? "workspace" : "project";
  const create = useSettingsMutation(
    (args: { name: string; permissions: string[] }) => createKey(owner!, args.name, args.permissions), ["keys"]);
  const revoke = useSettingsMutation((keyId: string) => revokeKey(owner!, keyId), ["keys"]);
  const rows = keys.data ?? [];
  const tableLabel = `${noun[0]!.toUpperCase()}${noun.slice(1)} API keys`;

  return (
    <Section title={title} description={description}
      actions={!creating && !issued && (
        <button type="button" className="primary" disabled={!owner} onClick={() => { create.reset(); setCreating(true); }}>
          Create {noun} key
        </button>)}>
      {creating && (
        <KeyForm noun={noun} busy={create.isPending} error={create.error} onCancel={() => setCreating(false)}
          onSubmit={(name, permissions) => create.mutate({ name, permissions }, {
            onSuccess: (result) => { setIssued(result); setCreating(false); },
          })} />
      )}
      {issued && (
        <SecretOnce label={`New API key ${issued.key.name}`} secret={issued.api_key} onDone={() => setIssued(null)}>
          <p>Key <strong>{issued.key.name}</strong> was created with <Permissions values={issued.key.permissions} />.
            Send it as <code>Authorization: Bearer &lt;key&gt;</code>.</p>
        </SecretOnce>
      )}
      <ErrorNote error={keys.error} what={`list the ${noun}'s keys`} />
      <ErrorNote error={revoke.error} what="revoke the key" />
      {!keys.error && (
        <table className="grid" aria-label={tableLabel} aria-busy={keys.isPending}>
          <thead>
            <tr>
              <th scope="col">Name</th><th scope="col">Key</th><th scope="col">Scopes</th>
              <th scope="col">Created</th><th scope="col">Last used</th><th scope="col"><span className="sr-only">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {rows.map((k) => (
              <tr key={k.id} className={k.revoked_at ? "row-revoked" : undefined}>
                <td>{k.name}</td>
                <td><code className="id">{keyPrefix(k.id)}</code></td>
                <td><Permissions values={k.permissions} /></td>
                <td>{formatWhen(k.created_at)}</td>
                <td title={formatWhen(k.last_used_at, "Never")}>{ago(k.last_used_at)}</td>
                <td className="actions">
                  {k.revoked_at ? <span className="badge revoked">Revoked {formatWhen(k.revoked_at)}</span> : (
                    <ConfirmButton label="Revoke" title={`Revoke the key ${k.name}?`}
                      description={<>Applications using it are refused from now on (data planes stop accepting it within a minute). This cannot be undone.</>}
                      confirm="Revoke key" disabled={revoke.isPending} onConfirm={() => revoke.mutate(k.id)} />
                  )}
                </td>
              </tr>
            ))}
            {rows.length === 0 && <EmptyRow colSpan={6} loading={keys.isPending}>No {noun} keys yet — create one to send traces.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function KeyForm({ noun, busy, error, onSubmit, onCancel }: {
  noun: string;
  busy: boolean;
  error: Error | null;
  onSubmit: (name: string, permissions: string[]) => void;
  onCancel: () => void;
}) {
  const [name, setName] = useState("");
  const [chosen, setChosen] = useState<string[]>([...DEFAULT_KEY_PERMISSIONS]);
  const id = useId();

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!name.trim() || chosen.length === 0) return;
    onSubmit(name.trim(), KEY_PERMISSIONS.filter((p) => chosen.includes(p)));
  }

  return (
    <form className="settings-form" onSubmit={submit} aria-label={`Create a ${noun} key`}>
      <div className="field">
        <label htmlFor={`${id}-name`}>Key name</label>
        <input id={`${id}-name`} value={name} onChange={(e) => setName(e.target.value)} required maxLength={200}
          placeholder="e.g. production backend" autoFocus />
      </div>
      <fieldset className="perm-grid">
        <legend>Scopes</legend>
        {KEY_PERMISSIONS.map((p) => (
          <label key={p} className="check">
            <input type="checkbox" checked={chosen.includes(p)}
              onChange={(e) => setChosen(e.target.checked ? [...chosen, p] : chosen.filter((c) => c !== p))} />
            <code>{p}</code>
          </label>
        ))}
      </fieldset>
      {chosen.length === 0 && <p className="error" role="alert">Choose at least one scope.</p>}
      <ErrorNote error={error} what="create the key" />
      <div className="form-actions">
        <button type="submit" className="primary" disabled={busy || !name.trim() || chosen.length === 0}>
          {busy ? "Creating…" : "Create key"}
        </button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}
