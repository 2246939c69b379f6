import { type FormEvent, useId, useState } from "react";
import type { ProjectDataPlane } from "../../api/client";
import { unwrap } from "../../api/client";
import { type CredentialCreate, type CredentialOut, ensureOk, useProviderCredentials, useSettingsMutation } from "../../api/settings";
import { formatWhen } from "./format";
import { ConfirmButton, EmptyRow, ErrorNote, Section } from "./parts";

const PROVIDERS = ["openai", "anthropic", "azure", "gemini", "vertex_ai", "bedrock", "mistral", "groq", "cohere", "together_ai", "openrouter"];

/** The LLM proxy's provider keys, on the project's data plane: shared by every project of the
 * workspace, write-only (the API answers the last four characters at most). */
export function ProviderKeysTab({ dp }: { dp: ProjectDataPlane }) {
  const credentials = useProviderCredentials(dp);
  const [adding, setAdding] = useState(false);
  const [rotating, setRotating] = useState<string | null>(null);
  const create = useSettingsMutation(async (body: CredentialCreate) => unwrap(await dp.client.POST("/v1/proxy/credentials", { body })), ["credentials"]);
  const rotate = useSettingsMutation(async ({ id, apiKey }: { id: string; apiKey: string }) => unwrap(await dp.client.PUT(
    "/v1/proxy/credentials/{credential_id}", { params: { path: { credential_id: id } }, body: { api_key: apiKey } })), ["credentials"]);
  const remove = useSettingsMutation(async (id: string) => ensureOk(await dp.client.DELETE(
    "/v1/proxy/credentials/{credential_id}", { params: { path: { credential_id: id } } })), ["credentials"]);
  const rows = credentials.data ?? [];

  return (
    <Section title="Provider keys"
      description={<>Keys of LLM providers for the proxy, evaluators and experiments, shared by every project of this workspace
        and stored encrypted on the data plane <strong>{dp.plane.name}</strong>. Keys are write-only: only their last four characters are ever shown.</>}
      actions={!adding && <button type="button" className="primary" onClick={() => { create.reset(); setAdding(true); }}>Add provider key</button>}>
      {adding && (
        <CredentialForm busy={create.isPending} error={create.error} onCancel={() => setAdding(false)}
          onSubmit={(body, done) => create.mutate(body, { onSuccess: () => { done(); setAdding(false); } })} />
      )}
      {create.isSuccess && !adding && <p role="status" className="ok-note">Saved the {create.data.provider} key ending in {create.data.key_hint}.</p>}
      <ErrorNote error={credentials.error} what="list the provider keys" />
      <ErrorNote error={remove.error} what="delete the provider key" />
      {!credentials.error && (
        <table className="grid" aria-label="Provider keys" aria-busy={credentials.isPending}>
          <thead>
            <tr><th scope="col">Name</th><th scope="col">Provider</th><th scope="col">Key</th><th scope="col">Endpoint</th>
              <th scope="col">Updated</th><th scope="col"><span className="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            {rows.map((c: CredentialOut) => (
              <tr key={c.id}>
                <td>{c.name ?? <span className="muted">—</span>}</td>
                <td><span className="badge">{c.provider}</span></td>
                <td><code aria-label={`Key ending in ${c.key_hint.replace("…", "") || "(hidden)"}`}>{c.key_hint}</code></td>
                <td>{c.api_base ? <code className="wrap">{c.api_base}</code> : <span className="muted">default</span>}{c.api_version && <span className="muted"> · {c.api_version}</span>}</td>
                <td>{formatWhen(c.updated_at)}</td>
                <td className="actions">
                  {rotating === c.id ? (
                    <RotateForm credential={c} busy={rotate.isPending} error={rotate.error} onCancel={() => setRotating(null)}
                      onSubmit={(apiKey, done) => rotate.mutate({ id: c.id, apiKey }, { onSuccess: () => { done(); setRotating(null); } })} />
                  ) : (
                    <>
                      <button type="button" onClick={() => { rotate.reset(); setRotating(c.id); }}>Rotate<span className="sr-only"> {c.name ?? c.provider} key</span></button>
                      <ConfirmButton label="Delete" title={`Delete the ${c.provider} key ${c.name ?? ""}?`.replace(/ \?$/, "?")} confirm="Delete key"
                        description="Calls through the proxy, evaluators and experiments using this provider fail until another key is added."
                        disabled={remove.isPending} onConfirm={() => remove.mutate(c.id)} />
                    </>
                  )}
                </td>
              </tr>
            ))}
            {rows.length === 0 && <EmptyRow colSpan={6} loading={credentials.isPending}>No provider keys yet — add one to use LLM judges and the proxy.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}

/** The secret is read from the form once (uncontrolled, never in state or an attribute) and
 * the form is cleared when the data plane took it. */
function CredentialForm({ busy, error, onSubmit, onCancel }: {
  busy: boolean;
  error: Error | null;
  onSubmit: (body: CredentialCreate, done: () => void) => void;
  onCancel: () => void;
}) {
  const id = useId();
  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    const text = (k: string) => String(data.get(k) ?? "").trim();
    onSubmit({
      provider: text("provider"), api_key: String(data.get("api_key") ?? ""),
      ...(text("name") ? { name: text("name") } : {}),
      ...(text("api_base") ? { api_base: text("api_base") } : {}),
      ...(text("api_version") ? { api_version: text("api_version") } : {}),
    }, () => form.reset());
  }
  return (
    <form className="settings-form grid-form" onSubmit={submit} aria-label="Add a provider key" autoComplete="off">
      <div className="field">
        <label htmlFor={`${id}-provider`}>Provider</label>
        <input id={`${id}-provider`} name="provider" required list={`${id}-providers`} placeholder="openai" />
        <datalist id={`${id}-providers`}>{PROVIDERS.map((p) => <option key={p} value={p} />)}</datalist>
      </div>
      <div className="field"><label htmlFor={`${id}-name`}>Name (optional)</label><input id={`${id}-name`} name="name" maxLength={200} placeholder="e.g. production" /></div>
      <div className="field">
        <label htmlFor={`${id}-key`}>API key</label>
        <input id={`${id}-key`} name="api_key" type="password" required autoComplete="new-password" aria-describedby={`${id}-key-help`} />
        <p id={`${id}-key-help`}>Write-only: stored encrypted, never shown again.</p>
      </div>
      <div className="field"><label htmlFor={`${id}-base`}>Base URL (optional)</label><input id={`${id}-base`} name="api_base" type="url" placeholder="https://… for compatible endpoints" /></div>
      <div className="field"><label htmlFor={`${id}-version`}>API version (optional)</label><input id={`${id}-version`} name="api_version" placeholder="Azure only" /></div>
      <ErrorNote error={error} what="add the provider key" />
      <div className="form-actions">
        <button type="submit" className="primary" disabled={busy}>{busy ? "Saving…" : "Save key"}</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}

function RotateForm({ credential, busy, error, onSubmit, onCancel }: {
  credential: CredentialOut;
  busy: boolean;
  error: Error | null;
  onSubmit: (apiKey: string, done: () => void) => void;
  onCancel: () => void;
}) {
  const id = useId();
  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const apiKey = String(new FormData(form).get("api_key") ?? "");
    if (apiKey) onSubmit(apiKey, () => form.reset());
  }
  return (
    <form className="rotate-form" onSubmit={submit} aria-label={`Rotate the ${credential.provider} key`} autoComplete="off">
      <label htmlFor={`${id}-key`}>New {credential.provider} key</label>
      <input id={`${id}-key`} name="api_key" type="password" required autoComplete="new-password" autoFocus />
      <button type="submit" className="primary" disabled={busy}>{busy ? "Saving…" : "Save"}</button>
      <button type="button" onClick={onCancel}>Cancel</button>
      <ErrorNote error={error} what="rotate the key" />
    </form>
  );
}
