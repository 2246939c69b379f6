import { describe, expect, it } from "vitest";
import {
  discoverFailure, groupSecret, normalizeCode, parseOtpauth, recoveryCodesText, signupFailure,
  ssoReturnPath, ssoStartUrl, verifyFailure,
} from "./accountLogic";

describe("ssoReturnPath", () => {
  it("keeps the page under the mount point, without the sign-in page's own parameters", () => {
    expect(ssoReturnPath("/cp", "/projects/p1/traces", "?sso=1&range=24h")).toBe("/cp/projects/p1/traces?range=24h");
    expect(ssoReturnPath("/cp/", "/", "?mfa=required&sso_error=x")).toBe("/cp/");
  });
  it("works at the origin's root", () => {
    expect(ssoReturnPath("/", "/", "")).toBe("/");
    expect(ssoReturnPath("/", "/projects/p1/sessions/s1", "?event=e1&sso=1")).toBe("/projects/p1/sessions/s1?event=e1");
  });
  it("is always a same-site path", () => {
    expect(ssoReturnPath("", "projects/p1", "")).toBe("/projects/p1");
  });
});

describe("ssoStartUrl", () => {
  it("names the provider's start route with the return path encoded", () => {
    expect(ssoStartUrl("http://h:1/cp", "p 1", "/cp/?a=b&c=d"))
      .toBe("http://h:1/cp/v1/sso/oidc/p%201/start?return_to=%2Fcp%2F%3Fa%3Db%26c%3Dd");
  });
});

describe("parseOtpauth", () => {
  it("reads what pyotp's provisioning URI says", () => {
    expect(parseOtpauth("otpauth://totp/Apiary:ada%40corp.example?secret=JBSWY3DPEHPK3PXP&issuer=Apiary")).toEqual({
      secret: "JBSWY3DPEHPK3PXP", issuer: "Apiary", account: "ada@corp.example", digits: 6, period: 30,
    });
  });
  it("takes the issuer from the label, and digits and period when given", () => {
    expect(parseOtpauth("otpauth://totp/Corp:bob?secret=ABC&digits=8&period=60")).toEqual({
      secret: "ABC", issuer: "Corp", account: "bob", digits: 8, period: 60,
    });
  });
  it("refuses what is not a TOTP URI", () => {
    expect(parseOtpauth("https://example.com/?secret=ABC")).toBeNull();
    expect(parseOtpauth("otpauth://hotp/x?secret=ABC")).toBeNull();
    expect(parseOtpauth("otpauth://totp/x")).toBeNull();
    expect(parseOtpauth("not a url")).toBeNull();
  });
  it("falls back to the defaults for nonsense digits", () => {
    expect(parseOtpauth("otpauth://totp/x?secret=A&digits=-1&period=abc")?.digits).toBe(6);
  });
});

describe("groupSecret and normalizeCode", () => {
  it("groups a secret by four, without padding", () => {
    expect(groupSecret("JBSWY3DPEHPK3PXP")).toBe("JBSW Y3DP EHPK 3PXP");
    expect(groupSecret("ABCDEF==")).toBe("ABCD EF");
    expect(groupSecret("")).toBe("");
  });
  it("strips spaces and dashes from a TOTP code, only trims a recovery code", () => {
    expect(normalizeCode(" 123 456 ", false)).toBe("123456");
    expect(normalizeCode("123-456", false)).toBe("123456");
    expect(normalizeCode("  abcd-efgh ", true)).toBe("abcd-efgh");
  });
});

describe("failures", () => {
  it("puts a weak password on its field", () => {
    expect(signupFailure(400, { message: "the password must have at least 12 characters", errorCode: "invalid_request", details: { field: "password" } }))
      .toEqual({ field: "password", message: "The password must have at least 12 characters" });
  });
  it("says an address is taken on the email field", () => {
    const failure = signupFailure(409, { message: "an account with this email already exists", errorCode: "conflict", details: { field: "email" } });
    expect(failure.field).toBe("email");
    expect(failure.message).toMatch(/already exists/);
  });
  it("keeps other answers whole", () => {
    expect(signupFailure(403, { message: "sign-up is disabled on this installation", errorCode: "forbidden" }))
      .toEqual({ field: null, message: "Sign-up is disabled on this installation" });
    expect(signupFailure(429, { message: "wait", errorCode: "too_many_attempts" }).message).toMatch(/^Too many attempts/);
    expect(signupFailure(500, "oops").message).toBe("Request failed (500)");
  });
  it("explains used, expired and forged links", () => {
    expect(verifyFailure(410, { message: "this verification link was already used", errorCode: "gone" }))
      .toMatch(/^This verification link was already used\. Sign in/);
    expect(verifyFailure(400, { message: "x", errorCode: "invalid_request" })).toMatch(/not valid/);
  });
  it("passes the discovery's 404 on", () => {
    expect(discoverFailure(404, { message: "no single sign-on provider serves x.example", errorCode: "not_found" }))
      .toBe("No single sign-on provider serves x.example");
  });
  it("writes the recovery codes one per line", () => {
    expect(recoveryCodesText(["a", "b"], "ada@x")).toMatch(/for ada@x\n.*\n\na\nb\n$/);
  });
});
