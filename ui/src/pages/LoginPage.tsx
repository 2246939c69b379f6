import { useQueryClient } from "@tanstack/react-query";
import { Label } from "radix-ui";
import { type FormEvent, useState } from "react";
import { Link, useLocation, useNavigate } from "react-router-dom";
import { answerOf, useSignedIn, useSsoDiscover, useSsoMfa } from "../api/account";
import { apiError, appBasename, controlPlaneBase, cp } from "../api/client";
import { forgetDataPlanes } from "../api/queries";
import { AuthCard } from "./account/AuthCard";
import { discoverFailure, normalizeCode, ssoReturnPath, ssoStartUrl } from "./account/accountLogic";

/** The sign-in page, shown for any URL while signed out (that URL opens once signed in):
 * email and password, then the TOTP code (or a recovery code) when the account has one;
 * "Sign in with SSO" (`?sso=1`): the email's domain names the organization's identity
 * provider, the browser goes there and comes back here signed in, or (`?mfa=required`)
 * asked for the account's code first. */
export function LoginPage() {
  const location = useLocation();
  const params = new URLSearchParams(location.search);
  if (params.get("mfa") === "required") return <SsoSecondFactor />;
  if (params.has("sso")) return <SsoSignIn />;
  return <PasswordSignIn />;
}

/** The current URL with `sso`/`mfa` set or removed, without a past `sso_error` (other
 * parameters kept). */
function withParam(search: string, key: string, value: string | null): string {
  const params = new URLSearchParams(search);
  for (const k of ["sso", "mfa", "sso_error"]) params.delete(k);
  if (value !== null) params.set(key, value);
  const query = params.toString();
  return query ? `?${query}` : "";
}

/** Why the last SSO sign-in failed (the control plane's callback sends the browser back
 * with `sso_error`). */
function SsoError() {
  const location = useLocation();
  const message = new URLSearchParams(location.search).get("sso_error");
  if (!message) return null;
  return <div className="notice bad" role="alert" style={{ margin: "14px 0 0" }}><p>Single sign-on failed: {message}</p></div>;
}

function PasswordSignIn() {
  const queryClient = useQueryClient();
  const location = useLocation();
  const navigate = useNavigate();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [needsCode, setNeedsCode] = useState(false);
  const [useRecovery, setUseRecovery] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const typed = normalizeCode(code, useRecovery);
      const second = needsCode && typed ? (useRecovery ? { recovery_code: typed } : { totp_code: typed }) : {};
      const result = await cp.POST("/v1/auth/login", { body: { email, password, ...second } });
      if (!result.response.ok) {
        const failure = apiError(result.response.status, result.error);
        if (failure.errorCode === "mfa_required" && !needsCode) {
          setNeedsCode(true);
          return;
        }
        setError(failure.status === 429 ? `Too many attempts: ${failure.message}` : failure.message);
        return;
      }
      forgetDataPlanes();
      if (new URLSearchParams(location.search).has("sso_error")) {
        navigate({ pathname: location.pathname, search: withParam(location.search, "sso", null) }, { replace: true });
      }
      await queryClient.invalidateQueries();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <AuthCard>
      <h1>Sign in to Apiary</h1>
      <SsoError />
      <form onSubmit={submit} aria-describedby={error ? "login-error" : undefined}>
        {!needsCode ? (
          <>
            <div className="field">
              <Label.Root htmlFor="email">Email</Label.Root>
              <input id="email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
            </div>
            <div className="field">
              <Label.Root htmlFor="password">Password</Label.Root>
              <input id="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
            </div>
          </>
        ) : (
          <CodeField code={code} setCode={setCode} useRecovery={useRecovery} setUseRecovery={setUseRecovery} />
        )}
        {error && <p id="login-error" className="error" role="alert">{error}</p>}
        <button type="submit" className="primary" disabled={busy}>{needsCode ? "Verify" : "Sign in"}</button>
      </form>
      {!needsCode && (
        <>
          <div className="auth-divider">or</div>
          <Link className="button" style={{ width: "100%" }} to={{ search: withParam(location.search, "sso", "1") }}>
            Sign in with SSO
          </Link>
          <p className="auth-alt">New to Apiary? <Link to="/signup">Create an account</Link></p>
        </>
      )}
    </AuthCard>
  );
}

function CodeField({ code, setCode, useRecovery, setUseRecovery }: {
  code: string; setCode: (v: string) => void; useRecovery: boolean; setUseRecovery: (v: boolean) => void;
}) {
  return (
    <div className="field">
      <Label.Root htmlFor="code">{useRecovery ? "Recovery code" : "Authentication code"}</Label.Root>
      <input id="code" autoFocus autoComplete="one-time-code" inputMode={useRecovery ? "text" : "numeric"}
        aria-describedby="code-help" required value={code} onChange={(e) => setCode(e.target.value)} />
      <p id="code-help" className="field-hint">{useRecovery ? "Enter one of your recovery codes." : "Enter the 6-digit code from your authenticator app."}</p>
      <button type="button" className="link" style={{ alignSelf: "flex-start" }}
        onClick={() => { setUseRecovery(!useRecovery); setCode(""); }}>
        {useRecovery ? "Use an authenticator code" : "Use a recovery code"}
      </button>
    </div>
  );
}

/** "Sign in with SSO": which provider serves this email's domain, then off to it. */
function SsoSignIn() {
  const location = useLocation();
  const discover = useSsoDiscover();
  const [email, setEmail] = useState("");
  const [leaving, setLeaving] = useState(false);

  function submit(event: FormEvent) {
    event.preventDefault();
    discover.mutate(email.trim(), {
      onSuccess: (found) => {
        setLeaving(true);
        const back = ssoReturnPath(appBasename(), location.pathname, location.search);
        window.location.assign(ssoStartUrl(controlPlaneBase(), found.provider_id, back));
      },
    });
  }

  const failure = discover.error ? discoverFailure(...answerOf(discover.error)) : null;
  return (
    <AuthCard>
      <h1>Sign in to Apiary</h1>
      <p className="auth-sub">Single sign-on: your organization's identity provider signs you in.</p>
      <SsoError />
      <form onSubmit={submit}>
        <div className="field">
          <Label.Root htmlFor="sso-email">Work email</Label.Root>
          <input id="sso-email" type="email" autoComplete="username" required value={email} autoFocus
            aria-invalid={failure ? true : undefined} aria-describedby={failure ? "sso-error" : "sso-hint"}
            onChange={(e) => setEmail(e.target.value)} />
          <p id="sso-hint" className="field-hint">Only its domain is used, to find your organization's provider.</p>
        </div>
        {failure && <p id="sso-error" className="error" role="alert">{failure}</p>}
        {leaving && discover.data && (
          <p role="status" className="muted">Opening {discover.data.provider_name}…</p>
        )}
        <button type="submit" className="primary" disabled={discover.isPending || leaving}>Continue with SSO</button>
      </form>
      <p className="auth-back"><Link to={{ search: withParam(location.search, "sso", null) }}>Sign in with a password instead</Link></p>
    </AuthCard>
  );
}

/** Back from the identity provider, the account's own second factor is still needed. */
function SsoSecondFactor() {
  const location = useLocation();
  const navigate = useNavigate();
  const finish = useSsoMfa();
  const signedIn = useSignedIn();
  const [code, setCode] = useState("");
  const [useRecovery, setUseRecovery] = useState(false);

  function submit(event: FormEvent) {
    event.preventDefault();
    const typed = normalizeCode(code, useRecovery);
    finish.mutate(useRecovery ? { recovery_code: typed } : { totp_code: typed }, {
      // Signed in: this same page, without the sign-in's parameter (left before the app
      // re-renders signed in, which unmounts this form).
      onSuccess: () => {
        navigate({ pathname: location.pathname, search: withParam(location.search, "mfa", null) }, { replace: true });
        void signedIn();
      },
    });
  }

  const error = finish.error;
  const expired = error && answerOf(error)[0] === 401 && /log in again/i.test(error.message);
  return (
    <AuthCard>
      <h1>Sign in to Apiary</h1>
      <p className="auth-sub">Your identity provider signed you in. Your account also asks for its second factor.</p>
      <form onSubmit={submit} aria-describedby={error ? "login-error" : undefined}>
        <CodeField code={code} setCode={setCode} useRecovery={useRecovery} setUseRecovery={setUseRecovery} />
        {error && <p id="login-error" className="error" role="alert">{error.message}</p>}
        <button type="submit" className="primary" disabled={finish.isPending}>Verify</button>
      </form>
      {expired && <p className="auth-back"><Link to={{ search: withParam(location.search, "sso", "1") }}>Start the SSO sign-in again</Link></p>}
      <p className="auth-back"><Link to={{ search: withParam(location.search, "mfa", null) }}>Cancel</Link></p>
    </AuthCard>
  );
}
