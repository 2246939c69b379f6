import { useQueryClient } from "@tanstack/react-query";
import { Label } from "radix-ui";
import { type FormEvent, useState } from "react";
import { apiError, cp } from "../api/client";
import { forgetDataPlanes } from "../api/queries";

/** Email and password, then the TOTP code (or a recovery code) when the account has one. */
export function LoginPage() {
  const queryClient = useQueryClient();
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
      const second = needsCode && code.trim() ? (useRecovery ? { recovery_code: code.trim() } : { totp_code: code.trim() }) : {};
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
      await queryClient.invalidateQueries();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="centered login">
      <h1>Sign in to Apiary</h1>
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
          <div className="field">
            <p id="code-help">{useRecovery ? "Enter one of your recovery codes." : "Enter the 6-digit code from your authenticator app."}</p>
            <Label.Root htmlFor="code">{useRecovery ? "Recovery code" : "Authentication code"}</Label.Root>
            <input id="code" autoFocus autoComplete="one-time-code" inputMode={useRecovery ? "text" : "numeric"}
              aria-describedby="code-help" required value={code} onChange={(e) => setCode(e.target.value)} />
            <button type="button" className="link" onClick={() => { setUseRecovery(!useRecovery); setCode(""); }}>
              {useRecovery ? "Use an authenticator code" : "Use a recovery code"}
            </button>
          </div>
        )}
        {error && <p id="login-error" className="error" role="alert">{error}</p>}
        <button type="submit" className="primary" disabled={busy}>{needsCode ? "Verify" : "Sign in"}</button>
      </form>
    </main>
  );
}
