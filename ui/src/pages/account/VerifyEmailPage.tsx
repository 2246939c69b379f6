import { useQueryClient } from "@tanstack/react-query";
import type { MouseEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { answerOf, useVerifyEmail } from "../../api/account";
import { cp, readCookie } from "../../api/client";
import { forgetDataPlanes } from "../../api/queries";
import { AuthCard } from "./AuthCard";
import { verifyFailure } from "./accountLogic";

/** The mailed link (`/verify-email?token=...`). Opening it changes nothing (mail scanners
 * prefetch links): the button uses the link, once (`POST /v1/auth/email/verify`). */
export function VerifyEmailPage() {
  const [params] = useSearchParams();
  const token = params.get("token")?.trim() ?? "";
  const verify = useVerifyEmail();
  const queryClient = useQueryClient();
  const navigate = useNavigate();

  /** Sign in as the verified account: a session this browser still holds (the sign-up's,
   * from before the address was proven, or another account's) ends first. */
  async function signIn(event: MouseEvent) {
    event.preventDefault();
    if (readCookie("apiary_csrf")) await cp.POST("/v1/auth/logout").catch(() => undefined);
    forgetDataPlanes();
    queryClient.clear();
    navigate("/");
  }

  if (verify.isSuccess) {
    return (
      <AuthCard>
        <h1>Email verified</h1>
        <div className="notice ok" role="status">
          <p><strong>{verify.data.email}</strong> is verified. Your account is ready.</p>
        </div>
        <p className="auth-alt"><Link to="/" className="button" onClick={(e) => void signIn(e)}>Sign in</Link></p>
      </AuthCard>
    );
  }

  const failure = verify.error
    ? verifyFailure(...answerOf(verify.error))
    : null;

  return (
    <AuthCard>
      <h1>Verify your email</h1>
      {!token ? (
        <>
          <div className="notice bad" role="alert">
            <p>This link has no verification token. Open the link from the email exactly as it is.</p>
          </div>
          <p className="auth-back"><Link to="/">Sign in</Link> · <Link to="/signup">Create an account</Link></p>
        </>
      ) : (
        <>
          <p className="auth-sub">Confirm that this email address is yours to finish setting up your Apiary account.</p>
          <form onSubmit={(e) => { e.preventDefault(); verify.mutate(token); }}>
            {failure && <div className="notice bad" role="alert"><p>{failure}</p></div>}
            <button type="submit" className="primary" disabled={verify.isPending}>
              {verify.isPending ? "Confirming…" : "Confirm my email address"}
            </button>
          </form>
          <p className="auth-back"><Link to="/">Sign in</Link> · <Link to="/signup">Create an account</Link></p>
        </>
      )}
    </AuthCard>
  );
}
