import { Label } from "radix-ui";
import { type FormEvent, useState } from "react";
import { Link } from "react-router-dom";
import { answerOf, useResendVerification, useSignup } from "../../api/account";
import { AuthCard } from "./AuthCard";
import { signupFailure } from "./accountLogic";

/** Sign-up: name, email and password; then "check your inbox" for the verification link
 * (the account exists and is signed in, but owns nothing until the link is used). */
export function SignupPage() {
  const signup = useSignup();
  const resend = useResendVerification();
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");

  function submit(event: FormEvent) {
    event.preventDefault();
    resend.reset();
    signup.mutate({ email: email.trim(), password, display_name: name.trim() || null });
  }

  if (signup.isSuccess) {
    const address = signup.data.user.email;
    return (
      <AuthCard>
        <div className="notice ok" role="status" style={{ margin: "0 0 16px" }}><p>Your account was created.</p></div>
        <h1>Check your inbox</h1>
        <p className="auth-sub">
          We sent a link to <strong>{address}</strong>. Open it to verify your address, then sign in.
          The link works once and expires.
        </p>
        <p className="auth-alt">
          No email?{" "}
          <button type="button" className="link" disabled={resend.isPending} onClick={() => resend.mutate()}>
            Send the link again
          </button>
        </p>
        {resend.isSuccess && (
          <p role="status" className="auth-alt">
            {resend.data.mailed ? `A new link is on its way to ${resend.data.email}; older links no longer work.`
              : "No mail could be sent from this installation; ask its operator for your link."}
          </p>
        )}
        {resend.error && <p role="alert" className="error">{resend.error.message}</p>}
      </AuthCard>
    );
  }

  const failure = signup.error
    ? signupFailure(...answerOf(signup.error))
    : null;
  const on = (field: string) => failure?.field === field;

  return (
    <AuthCard>
      <h1>Create your account</h1>
      <p className="auth-sub">Trace, evaluate and review your LLM applications.</p>
      <form onSubmit={submit} noValidate={false}>
        <div className="field">
          <Label.Root htmlFor="signup-name">Name <span className="muted">(optional)</span></Label.Root>
          <input id="signup-name" autoComplete="name" value={name} maxLength={200} onChange={(e) => setName(e.target.value)} />
        </div>
        <div className="field">
          <Label.Root htmlFor="signup-email">Email</Label.Root>
          <input id="signup-email" type="email" autoComplete="email" required value={email} maxLength={320}
            aria-invalid={on("email") || undefined} aria-describedby={on("email") ? "signup-error" : undefined}
            onChange={(e) => setEmail(e.target.value)} />
          {on("email") && <p id="signup-error" className="field-error" role="alert">{failure?.message}</p>}
        </div>
        <div className="field">
          <Label.Root htmlFor="signup-password">Password</Label.Root>
          <input id="signup-password" type="password" autoComplete="new-password" required value={password} maxLength={1024}
            aria-invalid={on("password") || undefined}
            aria-describedby={on("password") ? "signup-error signup-password-hint" : "signup-password-hint"}
            onChange={(e) => setPassword(e.target.value)} />
          <p id="signup-password-hint" className="field-hint">Use a long passphrase; short passwords are refused.</p>
          {on("password") && <p id="signup-error" className="field-error" role="alert">{failure?.message}</p>}
        </div>
        {failure && !failure.field && <p className="error" role="alert">{failure.message}</p>}
        <button type="submit" className="primary" disabled={signup.isPending}>
          {signup.isPending ? "Creating your account…" : "Create account"}
        </button>
      </form>
      <p className="auth-alt">Already have an account? <Link to="/">Sign in</Link></p>
    </AuthCard>
  );
}
