import { useQuery } from "@tanstack/react-query";
import { type FormEvent, useId, useRef, useState } from "react";
import { cp, unwrap } from "../../api/client";
import {
  type DomainOut, ensureOk, type OidcProviderCreate, type OidcProviderOut, useDomains, useOidcProviders, useRoles,
  useSettingsMutation, useSsoSettings,
} from "../../api/settings";
import { checkDomain, formatWhen } from "./format";
import { ConfirmButton, EmptyRow, ErrorNote, Section } from "./parts";

/** The organization's OpenID Connect providers, its email domains, and its SSO settings. */
export function SsoTab({ orgId }: { orgId: string | undefined }) {
  return (
    <>
      <Providers orgId={orgId} />
      <Domains orgId={orgId} />
      <Settings orgId={orgId} />
    </>
  );
}

function Providers({ orgId }: { orgId: string | undefined }) {
  const providers = useOidcProviders(orgId);
  const roles = useRoles(orgId);
  const [adding, setAdding] = useState(false);
  const create = useSettingsMutation(async (body: OidcProviderCreate) => unwrap(await cp.POST(
    "/v1/orgs/{org_id}/sso/oidc", { params: { path: { org_id: orgId! } }, body })), ["oidc"]);
  const toggle = useSettingsMutation(async ({ id, enabled }: { id: string; enabled: boolean }) => unwrap(await cp.PATCH(
    "/v1/orgs/{org_id}/sso/oidc/{provider_id}", { params: { path: { org_id: orgId!, provider_id: id } }, body: { enabled } })), ["oidc"]);
  const remove = useSettingsMutation(async (id: string) => ensureOk(await cp.DELETE(
    "/v1/orgs/{org_id}/sso/oidc/{provider_id}", { params: { path: { org_id: orgId!, provider_id: id } } })), ["oidc"]);
  const rows = providers.data ?? [];
  return (
    <Section title="Identity providers (OIDC)"
      description="Members sign in with your identity provider. Client secrets are write-only: they are stored encrypted and never shown."
      actions={!adding && <button type="button" className="primary" disabled={!orgId} onClick={() => { create.reset(); setAdding(true); }}>Add provider</button>}>
      {adding && (
        <ProviderForm roleNames={(roles.data ?? []).map((r) => r.name)} busy={create.isPending} error={create.error}
          onCancel={() => setAdding(false)}
          onSubmit={(body, done) => create.mutate(body, { onSuccess: () => { done(); setAdding(false); } })} />
      )}
      <ErrorNote error={providers.error} what="list the identity providers" />
      <ErrorNote error={toggle.error} what="change the provider" />
      <ErrorNote error={remove.error} what="delete the provider" />
      {!providers.error && (
        <table className="grid" aria-label="Identity providers" aria-busy={providers.isPending}>
          <thead>
            <tr><th scope="col">Name</th><th scope="col">Issuer</th><th scope="col">Client ID</th><th scope="col">New members</th>
              <th scope="col">Redirect URI</th><th scope="col">Status</th><th scope="col"><span className="sr-only">Actions</span></th></tr>
          </thead>
          <tbody>
            {rows.map((p: OidcProviderOut) => (
              <tr key={p.id}>
                <td>{p.name}</td>
                <td><code className="wrap">{p.issuer}</code></td>
                <td><code className="wrap">{p.client_id}</code></td>
                <td>{p.default_role}</td>
                <td><code className="wrap">{p.redirect_uri}</code></td>
                <td><span className={`badge ${p.enabled ? "status-ok-badge" : ""}`}>{p.enabled ? "Enabled" : "Disabled"}</span></td>
                <td className="actions">
                  <button type="button" disabled={toggle.isPending} onClick={() => toggle.mutate({ id: p.id, enabled: !p.enabled })}>
                    {p.enabled ? "Disable" : "Enable"}<span className="sr-only"> {p.name}</span>
                  </button>
                  <ConfirmButton label="Delete" title={`Delete the provider ${p.name}?`} confirm="Delete provider" disabled={remove.isPending}
                    description="Its members can no longer sign in with it (they keep their accounts)." onConfirm={() => remove.mutate(p.id)} />
                </td>
              </tr>
            ))}
            {rows.length === 0 && <EmptyRow colSpan={7} loading={providers.isPending}>No identity providers yet — add one to offer “Sign in with SSO”.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function ProviderForm({ roleNames, busy, error, onSubmit, onCancel }: {
  roleNames: string[];
  busy: boolean;
  error: Error | null;
  onSubmit: (body: OidcProviderCreate, done: () => void) => void;
  onCancel: () => void;
}) {
  const id = useId();
  const form = useRef<HTMLFormElement>(null);
  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    // Read once from the form (uncontrolled): the secret never sits in React state or a DOM
    // attribute, and the form is cleared when the API accepted it.
    const data = new FormData(event.currentTarget);
    const text = (k: string) => String(data.get(k) ?? "").trim();
    const secret = String(data.get("client_secret") ?? "");
    onSubmit({
      name: text("name"), issuer: text("issuer"), client_id: text("client_id"),
      scopes: text("scopes") || "openid email profile", default_role: text("default_role") || "member",
      ...(secret ? { client_secret: secret } : {}),
    }, () => form.current?.reset());
  }
  return (
    <form ref={form} className="settings-form grid-form" onSubmit={submit} aria-label="Add an identity provider" autoComplete="off">
      <div className="field"><label htmlFor={`${id}-name`}>Name</label><input id={`${id}-name`} name="name" required maxLength={200} placeholder="e.g. Okta" /></div>
      <div className="field"><label htmlFor={`${id}-issuer`}>Issuer URL</label><input id={`${id}-issuer`} name="issuer" type="url" required placeholder="https://idp.example.com" /></div>
      <div className="field"><label htmlFor={`${id}-client`}>Client ID</label><input id={`${id}-client`} name="client_id" required /></div>
      <div className="field">
        <label htmlFor={`${id}-secret`}>Client secret</label>
        <input id={`${id}-secret`} name="client_secret" type="password" autoComplete="new-password" aria-describedby={`${id}-secret-help`} />
        <p id={`${id}-secret-help`}>Write-only; leave empty for a public client.</p>
      </div>
      <div className="field"><label htmlFor={`${id}-scopes`}>Scopes</label><input id={`${id}-scopes`} name="scopes" defaultValue="openid email profile" /></div>
      <div className="field">
        <label htmlFor={`${id}-role`}>Role of new members</label>
        <select id={`${id}-role`} name="default_role" defaultValue="member">
          {(roleNames.length ? roleNames : ["member"]).map((r) => <option key={r} value={r}>{r}</option>)}
        </select>
      </div>
      <ErrorNote error={error} what="add the provider" />
      <div className="form-actions">
        <button type="submit" className="primary" disabled={busy}>{busy ? "Adding…" : "Add provider"}</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}

function Domains({ orgId }: { orgId: string | undefined }) {
  const domains = useDomains(orgId);
  const [value, setValue] = useState("");
  const [invalid, setInvalid] = useState<string | null>(null);
  const id = useId();
  const claim = useSettingsMutation(async (domain: string) => unwrap(await cp.POST(
    "/v1/orgs/{org_id}/domains", { params: { path: { org_id: orgId! } }, body: { domain } })), ["domains"]);
  const remove = useSettingsMutation(async (domainId: string) => ensureOk(await cp.DELETE(
    "/v1/orgs/{org_id}/domains/{domain_id}", { params: { path: { org_id: orgId!, domain_id: domainId } } })), ["domains"]);

  function submit(event: FormEvent) {
    event.preventDefault();
    const checked = checkDomain(value);
    if ("error" in checked) { setInvalid(checked.error); return; }
    setInvalid(null);
    claim.mutate(checked.domain, { onSuccess: () => setValue("") });
  }
  // Instance administrators approve claims here too (GET /v1/admin/domains answers 403 to
  // everyone else, who then sees no Approve button).
  const admin = useQuery({
    queryKey: ["settings", "admin-domains"],
    queryFn: async () => unwrap(await cp.GET("/v1/admin/domains")),
    retry: false,
  });
  const approve = useSettingsMutation(async (domainId: string) => unwrap(await cp.POST(
    "/v1/admin/domains/{domain_id}/approve", { params: { path: { domain_id: domainId } } })), ["domains", "admin-domains"]);
  const rows = domains.data ?? [];
  return (
    <Section title="Domains" description="Email domains your organization owns. A claim takes effect once an instance administrator approves it; then your providers are trusted for those addresses.">
      <form className="settings-form inline" onSubmit={submit} aria-label="Claim a domain">
        <div className="field">
          <label htmlFor={`${id}-domain`}>Domain</label>
          <input id={`${id}-domain`} value={value} onChange={(e) => setValue(e.target.value)} placeholder="example.com"
            aria-invalid={invalid ? true : undefined} aria-describedby={invalid ? `${id}-domain-error` : undefined} />
        </div>
        <button type="submit" className="primary" disabled={claim.isPending || !value.trim()}>{claim.isPending ? "Adding…" : "Add domain"}</button>
      </form>
      {invalid && <p id={`${id}-domain-error`} className="error" role="alert">{invalid}</p>}
      <ErrorNote error={claim.error} what="add the domain" />
      <ErrorNote error={domains.error} what="list the domains" />
      <ErrorNote error={remove.error} what="delete the domain" />
      <ErrorNote error={approve.error} what="approve the domain" />
      {!domains.error && (
        <table className="grid" aria-label="Domains" aria-busy={domains.isPending}>
          <thead><tr><th scope="col">Domain</th><th scope="col">Claimed</th><th scope="col">Verification</th><th scope="col"><span className="sr-only">Actions</span></th></tr></thead>
          <tbody>
            {rows.map((d: DomainOut) => (
              <tr key={d.id}>
                <td><strong>{d.domain}</strong></td>
                <td>{formatWhen(d.created_at)}</td>
                <td>{d.approved
                  ? <span className="badge status-ok-badge">Approved {formatWhen(d.approved_at)}</span>
                  : <span className="badge status-pending">Awaiting administrator approval</span>}</td>
                <td className="actions">
                  {admin.isSuccess && !d.approved && (
                    <button type="button" disabled={approve.isPending} onClick={() => approve.mutate(d.id)}>
                      Approve<span className="sr-only"> {d.domain}</span>
                    </button>
                  )}
                  <ConfirmButton label="Delete" title={`Delete the domain ${d.domain}?`} confirm="Delete domain" disabled={remove.isPending}
                    description="Your identity providers are no longer trusted for its addresses." onConfirm={() => remove.mutate(d.id)} />
                </td>
              </tr>
            ))}
            {rows.length === 0 && <EmptyRow colSpan={4} loading={domains.isPending}>No domains yet — add the domain of your members' email addresses.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function Settings({ orgId }: { orgId: string | undefined }) {
  const settings = useSsoSettings(orgId);
  const id = useId();
  const save = useSettingsMutation(async (trust: boolean) => unwrap(await cp.PUT(
    "/v1/orgs/{org_id}/sso/settings", { params: { path: { org_id: orgId! } }, body: { trust_idp_mfa: trust } })), ["sso-settings"]);
  return (
    <Section title="SSO settings">
      <ErrorNote error={settings.error} what="read the SSO settings" />
      <ErrorNote error={save.error} what="change the SSO settings" />
      {settings.data && (
        <div className="check-row">
          <input id={id} type="checkbox" checked={settings.data.trust_idp_mfa} disabled={save.isPending}
            aria-describedby={`${id}-help`} onChange={(e) => save.mutate(e.target.checked)} />
          <div>
            <label htmlFor={id}><strong>Trust the identity provider's MFA</strong></label>
            <p id={`${id}-help`} className="muted">When the provider says the user passed multi-factor authentication, do not ask SSO users for their TOTP code again.</p>
          </div>
        </div>
      )}
      {settings.isPending && !settings.error && <p role="status" className="muted">Loading…</p>}
      {save.isSuccess && <p role="status" className="ok-note">Saved.</p>}
    </Section>
  );
}
