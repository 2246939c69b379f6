// The account pages' API calls (sign-up, email verification, SSO, TOTP, password), as
// TanStack Query mutations over the typed control-plane client. Each resolves to the
// answer's data or throws an ApiError (status, errorCode, message) that the form shows;
// `failure` keeps the raw body for field-level messages.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { ApiError, apiError, cp, unwrap } from "./client";
import { forgetDataPlanes } from "./queries";
import type { components } from "./control";

export type SignupRequest = components["schemas"]["SignupRequest"];
export type SsoDiscoverOut = components["schemas"]["SsoDiscoverOut"];

/** An ApiError that also carries the answer's body (``details.field``). */
export class FormError extends ApiError {
  constructor(status: number, readonly body: unknown) {
    const base = apiError(status, body);
    super(status, base.errorCode, base.message);
  }
}

function orFormError<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.response.ok && result.data !== undefined) return result.data;
  throw new FormError(result.response.status, result.error);
}

/** A new session replaces whatever the app knew (the user, data-plane tokens). */
export function useSignedIn() {
  const queryClient = useQueryClient();
  return async () => {
    forgetDataPlanes();
    await queryClient.invalidateQueries();
  };
}

export function useSignup() {
  const signedIn = useSignedIn();
  return useMutation({
    mutationFn: async (body: SignupRequest) => orFormError(await cp.POST("/v1/auth/signup", { body })),
    onSuccess: signedIn,
  });
}

export function useResendVerification() {
  return useMutation({
    mutationFn: async () => unwrap(await cp.POST("/v1/me/email/verification")),
  });
}

export function useVerifyEmail() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async (token: string) => orFormError(await cp.POST("/v1/auth/email/verify", { body: { token } })),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["me"] }),
  });
}

export function useSsoDiscover() {
  return useMutation({
    mutationFn: async (email: string) => orFormError(await cp.POST("/v1/auth/sso/discover", { body: { email } })),
  });
}

/** The SSO sign-in's second factor; the caller leaves the page's `?mfa=required` first,
 * then calls useSignedIn()'s function (which re-renders the app signed in). */
export function useSsoMfa() {
  return useMutation({
    mutationFn: async (body: { totp_code?: string; recovery_code?: string }) =>
      orFormError(await cp.POST("/v1/auth/sso/mfa", { body })),
  });
}

export function useTotpEnrol() {
  return useMutation({ mutationFn: async () => unwrap(await cp.POST("/v1/me/totp")) });
}

export function useTotpConfirm() {
  return useMutation({
    mutationFn: async (code: string) => unwrap(await cp.POST("/v1/me/totp/verify", { body: { code } })),
  });
}

export function useTotpDisable() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async (code: string) => {
      const result = await cp.POST("/v1/me/totp/disable", { body: { code } });
      if (!result.response.ok) throw apiError(result.response.status, result.error);
    },
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["me"] }),
  });
}

export function useChangePassword() {
  return useMutation({
    mutationFn: async (body: { current_password: string; new_password: string }) =>
      orFormError(await cp.POST("/v1/me/password", { body })),
  });
}

/** The status and body of a failed call, for the account pages' messages. */
export function answerOf(error: Error): [number, unknown] {
  if (error instanceof FormError) return [error.status, error.body];
  if (error instanceof ApiError) return [error.status, { message: error.message, errorCode: error.errorCode }];
  return [0, { message: error.message }];
}
