// The account pages' client logic, kept pure so that it is unit-tested
// (accountLogic.test.ts): where SSO starts and lands, what the otpauth URI says, how a
// secret is shown, and which API answer means what to the person at the form.

/** The in-app path (under the mount point, e.g. "/cp/projects/p1/traces") the browser
 * returns to after an SSO sign-in: the page the visitor was on, minus the sign-in page's
 * own parameters (`sso`, `mfa`, `sso_error`). The control plane accepts a same-site path
 * only. */
export function ssoReturnPath(basename: string, pathname: string, search: string): string {
  const params = new URLSearchParams(search);
  for (const key of ["sso", "mfa", "sso_error"]) params.delete(key);
  const query = params.toString();
  const base = basename === "/" ? "" : basename.replace(/\/$/, "");
  const path = `${base}${pathname.startsWith("/") ? pathname : `/${pathname}`}` || "/";
  return query ? `${path}?${query}` : path;
}

/** Where the browser goes to sign in with `providerId`: the control plane's start route
 * (same origin as the app), which redirects to the identity provider. */
export function ssoStartUrl(controlPlaneBase: string, providerId: string, returnTo: string): string {
  return `${controlPlaneBase}/v1/sso/oidc/${encodeURIComponent(providerId)}/start?return_to=${encodeURIComponent(returnTo)}`;
}

export interface OtpAuth {
  secret: string;
  issuer: string | null;
  account: string | null;
  digits: number;
  period: number;
}

/** The parts of an `otpauth://totp/Issuer:account?secret=...` URI (null if it is not one). */
export function parseOtpauth(uri: string): OtpAuth | null {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return null;
  }
  if (url.protocol !== "otpauth:") return null;
  // "otpauth://totp/Label": the host is the type in WHATWG URL parsing.
  if (url.host.toLowerCase() !== "totp") return null;
  const secret = url.searchParams.get("secret");
  if (!secret) return null;
  const label = decodeURIComponent(url.pathname.replace(/^\//, ""));
  const colon = label.indexOf(":");
  const labelIssuer = colon >= 0 ? label.slice(0, colon).trim() : null;
  const account = (colon >= 0 ? label.slice(colon + 1) : label).trim() || null;
  const positive = (value: string | null, fallback: number) => {
    const n = Number(value);
    return Number.isInteger(n) && n > 0 ? n : fallback;
  };
  return {
    secret,
    issuer: url.searchParams.get("issuer") ?? labelIssuer,
    account,
    digits: positive(url.searchParams.get("digits"), 6),
    period: positive(url.searchParams.get("period"), 30),
  };
}

/** A base32 secret in groups of four, easier to type into an app by hand. */
export function groupSecret(secret: string): string {
  return secret.replace(/\s+/g, "").replace(/=+$/, "").match(/.{1,4}/g)?.join(" ") ?? "";
}

/** What a code field holds, as the API wants it: digits without spaces for a TOTP code;
 * a recovery code as typed, trimmed. */
export function normalizeCode(value: string, recovery: boolean): string {
  return recovery ? value.trim() : value.replace(/[\s-]/g, "");
}

/** An API failure as a sentence for a person, with the form field it concerns. */
export interface FormFailure {
  field: string | null;
  message: string;
}

function fieldOf(body: unknown): string | null {
  if (typeof body !== "object" || body === null) return null;
  const details = (body as { details?: unknown }).details;
  if (typeof details !== "object" || details === null) return null;
  const field = (details as { field?: unknown }).field;
  return typeof field === "string" ? field : null;
}

function capitalize(text: string): string {
  return text ? text[0]!.toUpperCase() + text.slice(1) : text;
}

/** Sign-up's answers: a weak password or a bad address on their field, an address taken
 * (the API says so: a verified account keeps its address), sign-up disabled, throttled. */
export function signupFailure(status: number, body: unknown): FormFailure {
  const error = apiError(status, body);
  const field = fieldOf(body);
  if (status === 409) {
    return { field: "email", message: "An account with this email already exists. Sign in instead, or use another address." };
  }
  if (status === 429) return { field: null, message: `Too many attempts from this address: ${error.message}` };
  if (status === 403) return { field: null, message: capitalize(error.message) };
  if (status === 400 || status === 422) {
    return { field: field === "password" || field === "email" ? field : null, message: capitalize(error.message) };
  }
  return { field: null, message: capitalize(error.message) };
}

/** The verification link's answers: used or expired (410), not a link we sent (400),
 * the address taken meanwhile (409). */
export function verifyFailure(status: number, body: unknown): string {
  const error = apiError(status, body);
  if (status === 410) {
    return `${capitalize(error.message)}. Sign in and ask for a new link from your account, or sign up again.`;
  }
  if (status === 400) return "This verification link is not valid. Open the link from the most recent email exactly as it is.";
  if (status === 429) return `Too many attempts: ${error.message}`;
  return capitalize(error.message);
}

/** "Sign in with SSO"'s lookup: no provider for the domain (404, domain-level only). */
export function discoverFailure(status: number, body: unknown): string {
  const error = apiError(status, body);
  if (status === 404) return capitalize(error.message);
  if (status === 429) return `Too many attempts: ${error.message}`;
  return capitalize(error.message);
}

/** The {message, errorCode} of an API answer's body (client.ts's apiError needs a
 * document; this module stays pure). */
function apiError(status: number, body: unknown): { message: string; errorCode: string } {
  const b = (typeof body === "object" && body !== null ? body : {}) as { message?: unknown; errorCode?: unknown };
  return {
    errorCode: typeof b.errorCode === "string" ? b.errorCode : "http_error",
    message: typeof b.message === "string" ? b.message : `request failed (${status})`,
  };
}

/** The recovery codes as a text file's content (one per line), for "Download". */
export function recoveryCodesText(codes: readonly string[], account: string | null): string {
  const head = `Apiary recovery codes${account ? ` for ${account}` : ""}\nEach code works once, instead of an authenticator code.\n\n`;
  return head + codes.join("\n") + "\n";
}
