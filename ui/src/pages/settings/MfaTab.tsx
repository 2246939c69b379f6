// The Security tab of Settings: the signed-in account's two-factor authentication (TOTP
// enrolment with a QR code, the recovery codes shown once, turning it off) and password.
import { useQueryClient } from "@tanstack/react-query";
import QRCode from "qrcode";
import { Label } from "radix-ui";
import { type FormEvent, useEffect, useState } from "react";
import { answerOf, useChangePassword, useTotpConfirm, useTotpDisable, useTotpEnrol } from "../../api/account";
import { useMe } from "../../api/queries";
import { groupSecret, normalizeCode, parseOtpauth, recoveryCodesText } from "../account/accountLogic";
import "../account/account.css";

export function MfaTab() {
  const me = useMe();
  if (me.isPending) return <p role="status">Loading your account…</p>;
  if (me.error) return <p role="alert" className="error">{me.error.message}</p>;
  return (
    <div className="security">
      <TwoFactor enabled={me.data.user.mfa_enabled} email={me.data.user.email} />
      {me.data.user.has_password ? <PasswordCard /> : (
        <section className="sec-card" aria-labelledby="pw-title">
          <header><h2 id="pw-title">Password</h2></header>
          <p>This account signs in with single sign-on only: it has no password to change.</p>
        </section>
      )}
    </div>
  );
}

function TwoFactor({ enabled, email }: { enabled: boolean; email: string }) {
  const [codes, setCodes] = useState<string[] | null>(null);
  const on = enabled || codes !== null;
  return (
    <section className="sec-card" aria-labelledby="tfa-title">
      <header>
        <h2 id="tfa-title">Two-factor authentication</h2>
        <span className={`pill ${on ? "on" : "off"}`}>{on ? "On" : "Off"}</span>
      </header>
      {codes ? <RecoveryCodes codes={codes} email={email} onDone={() => setCodes(null)} />
        : enabled ? <TurnOff /> : <Enrol onEnabled={setCodes} />}
    </section>
  );
}

function Enrol({ onEnabled }: { onEnabled: (codes: string[]) => void }) {
  const enrol = useTotpEnrol();
  const confirm = useTotpConfirm();
  const [qr, setQr] = useState<string | null>(null);
  const [qrError, setQrError] = useState<string | null>(null);
  const [code, setCode] = useState("");
  const uri = enrol.data?.otpauth_uri;

  useEffect(() => {
    if (!uri) return;
    let live = true;
    QRCode.toDataURL(uri, { margin: 1, width: 200, errorCorrectionLevel: "M" }).then(
      (url) => live && setQr(url),
      (e: Error) => live && setQrError(e.message),
    );
    return () => { live = false; };
  }, [uri]);

  if (!enrol.data) {
    return (
      <>
        <p>Protect your account with a code from an authenticator app (1Password, Google Authenticator, Authy, …)
          in addition to your password.</p>
        {enrol.error && <p role="alert" className="error">{enrol.error.message}</p>}
        <div className="actions">
          <button type="button" className="primary" disabled={enrol.isPending} onClick={() => enrol.mutate()}>
            Set up an authenticator app
          </button>
        </div>
      </>
    );
  }

  const parsed = parseOtpauth(enrol.data.otpauth_uri);
  function submit(event: FormEvent) {
    event.preventDefault();
    confirm.mutate(normalizeCode(code, false), { onSuccess: (out) => onEnabled(out.recovery_codes) });
  }
  return (
    <div className="enrol">
      <div>
        {qr ? <img src={qr} alt="QR code to scan with your authenticator app" width={200} height={200} />
          : qrError ? <p role="alert" className="error">The QR code could not be drawn ({qrError}); enter the key instead.</p>
            : <p role="status">Drawing the QR code…</p>}
      </div>
      <div>
        <ol>
          <li>Scan the QR code with your authenticator app.</li>
          <li>
            <Label.Root htmlFor="totp-secret">Or enter this setup key{parsed?.account ? ` for ${parsed.account}` : ""}:</Label.Root>{" "}
            <input id="totp-secret" className="secret" readOnly value={groupSecret(enrol.data.secret)}
              onFocus={(e) => e.target.select()} />
          </li>
          <li>Enter the {parsed?.digits ?? 6}-digit code the app shows.</li>
        </ol>
        <form onSubmit={submit}>
          <div className="field">
            <Label.Root htmlFor="totp-confirm">Code from your authenticator app</Label.Root>
            <input id="totp-confirm" inputMode="numeric" autoComplete="one-time-code" required value={code}
              aria-invalid={confirm.isError || undefined} aria-describedby={confirm.error ? "totp-confirm-error" : undefined}
              onChange={(e) => setCode(e.target.value)} />
          </div>
          {confirm.error && (
            <p id="totp-confirm-error" role="alert" className="error">
              {answerOf(confirm.error)[0] === 401 ? "That code is not right. Check the app's clock and try the current code." : confirm.error.message}
            </p>
          )}
          <div className="actions" style={{ marginTop: 0 }}>
            <button type="submit" className="primary" disabled={confirm.isPending}>Turn on</button>
            <button type="button" onClick={() => { enrol.reset(); confirm.reset(); setCode(""); setQr(null); }}>Cancel</button>
          </div>
        </form>
      </div>
    </div>
  );
}

function RecoveryCodes({ codes, email, onDone }: { codes: string[]; email: string; onDone: () => void }) {
  const queryClient = useQueryClient();
  const [copied, setCopied] = useState(false);
  const text = recoveryCodesText(codes, email);
  const download = `data:text/plain;charset=utf-8,${encodeURIComponent(text)}`;
  return (
    <>
      <div className="notice ok" role="status"><p>Two-factor authentication is on.</p></div>
      <h3 style={{ marginTop: 14 }}>Save your recovery codes</h3>
      <p>Each code signs you in once if you lose your authenticator app. They are shown only now: keep them somewhere safe.</p>
      <ul className="codes" aria-label="Recovery codes">
        {codes.map((c) => <li key={c}>{c}</li>)}
      </ul>
      <div className="actions">
        <a className="button" href={download} download="apiary-recovery-codes.txt">Download</a>
        <button type="button" onClick={() => {
          void navigator.clipboard?.writeText(text).then(() => setCopied(true), () => setCopied(false));
        }}>{copied ? "Copied" : "Copy"}</button>
        <button type="button" className="primary" onClick={() => {
          onDone();
          void queryClient.invalidateQueries({ queryKey: ["me"] });
        }}>I have saved my recovery codes</button>
      </div>
    </>
  );
}

function TurnOff() {
  const disable = useTotpDisable();
  const [code, setCode] = useState("");
  function submit(event: FormEvent) {
    event.preventDefault();
    const typed = code.trim();
    // Six digits: an authenticator code; anything else: a recovery code, as typed.
    disable.mutate(/^[\d\s-]+$/.test(typed) ? normalizeCode(typed, false) : typed, { onSuccess: () => setCode("") });
  }
  return (
    <>
      <p>Signing in asks for a code from your authenticator app after your password.</p>
      <form onSubmit={submit}>
        <div className="field">
          <Label.Root htmlFor="totp-disable">Authenticator or recovery code</Label.Root>
          <input id="totp-disable" autoComplete="one-time-code" required value={code}
            aria-describedby="totp-disable-help" onChange={(e) => setCode(e.target.value)} />
          <p id="totp-disable-help" className="field-hint">To turn two-factor authentication off, prove you still have it.</p>
        </div>
        {disable.error && <p role="alert" className="error">{disable.error.message}</p>}
        <div className="actions" style={{ marginTop: 0 }}>
          <button type="submit" disabled={disable.isPending}>Turn off two-factor authentication</button>
        </div>
      </form>
    </>
  );
}

function PasswordCard() {
  const change = useChangePassword();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const mismatch = again !== "" && next !== again;
  function submit(event: FormEvent) {
    event.preventDefault();
    if (next !== again) return;
    change.mutate({ current_password: current, new_password: next }, {
      onSuccess: () => { setCurrent(""); setNext(""); setAgain(""); },
    });
  }
  const [status, body] = change.error ? answerOf(change.error) : [0, null];
  const field = (body as { details?: { field?: string } } | null)?.details?.field;
  return (
    <section className="sec-card" aria-labelledby="pw-title">
      <header><h2 id="pw-title">Password</h2></header>
      <p>Changing it signs out your other sessions.</p>
      <form onSubmit={submit}>
        <div className="field">
          <Label.Root htmlFor="pw-current">Current password</Label.Root>
          <input id="pw-current" type="password" autoComplete="current-password" required value={current}
            aria-invalid={(status === 401 || field === "current_password") || undefined} onChange={(e) => setCurrent(e.target.value)} />
        </div>
        <div className="field">
          <Label.Root htmlFor="pw-new">New password</Label.Root>
          <input id="pw-new" type="password" autoComplete="new-password" required value={next}
            aria-invalid={field === "new_password" || field === "password" || undefined} onChange={(e) => setNext(e.target.value)} />
        </div>
        <div className="field">
          <Label.Root htmlFor="pw-again">Confirm new password</Label.Root>
          <input id="pw-again" type="password" autoComplete="new-password" required value={again}
            aria-invalid={mismatch || undefined} aria-describedby={mismatch ? "pw-mismatch" : undefined}
            onChange={(e) => setAgain(e.target.value)} />
          {mismatch && <p id="pw-mismatch" className="field-error">The two new passwords differ.</p>}
        </div>
        {change.error && <p role="alert" className="error">{change.error.message}</p>}
        {change.isSuccess && (
          <div className="notice ok" role="status" style={{ marginTop: 0 }}>
            <p>Password changed{change.data.revoked_sessions ? `; ${change.data.revoked_sessions} other session${change.data.revoked_sessions === 1 ? " was" : "s were"} signed out` : ""}.</p>
          </div>
        )}
        <div className="actions" style={{ marginTop: 0 }}>
          <button type="submit" className="primary" disabled={change.isPending || mismatch}>Change password</button>
        </div>
      </form>
    </section>
  );
}
