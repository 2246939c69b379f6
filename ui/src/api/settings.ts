// The settings pages' API calls: API keys, members, invitations, roles, SSO (control plane)
// and the LLM proxy's provider credentials (the project's data plane).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { apiError, cp, type ProjectDataPlane, unwrap } from "./client";
import type { components as ControlComponents } from "./control";
import type { components as DataComponents } from "./data";

type C = ControlComponents["schemas"];
export type KeyOut = C["KeyOut"];
export type KeyIssuedOut = C["KeyIssuedOut"];
export type MembershipOut = C["MembershipOut"];
export type InvitationOut = C["InvitationOut"];
export type InvitationIssuedOut = C["InvitationIssuedOut"];
export type RoleOut = C["RoleOut"];
export type OidcProviderOut = C["OidcProviderOut"];
export type OidcProviderCreate = C["OidcProviderCreate"];
export type DomainOut = C["DomainOut"];
export type CredentialOut = DataComponents["schemas"]["CredentialOut"];
export type CredentialCreate = DataComponents["schemas"]["CredentialCreate"];

/** An answer without a body (204) is fine when it is 2xx; else its ApiError. */
export function ensureOk(result: { error?: unknown; response: Response }): void {
  if (!result.response.ok) throw apiError(result.response.status, result.error);
}

/** Where keys live: a project's or a workspace's. */
export type KeyOwner = { kind: "project"; id: string } | { kind: "workspace"; id: string };

export function useKeys(owner: KeyOwner | null) {
  return useQuery({
    queryKey: ["settings", "keys", owner?.kind, owner?.id],
    enabled: owner !== null,
    queryFn: async () => {
      if (owner!.kind === "project") {
        return unwrap(await cp.GET("/v1/projects/{project_id}/keys", { params: { path: { project_id: owner!.id } } }));
      }
      return unwrap(await cp.GET("/v1/workspaces/{workspace_id}/keys", { params: { path: { workspace_id: owner!.id } } }));
    },
  });
}

export async function createKey(owner: KeyOwner, name: string, permissions: string[]): Promise<KeyIssuedOut> {
  const body = { name, permissions };
  if (owner.kind === "project") {
    return unwrap(await cp.POST("/v1/projects/{project_id}/keys", { params: { path: { project_id: owner.id } }, body }));
  }
  return unwrap(await cp.POST("/v1/workspaces/{workspace_id}/keys", { params: { path: { workspace_id: owner.id } }, body }));
}

export async function revokeKey(owner: KeyOwner, keyId: string): Promise<KeyOut> {
  if (owner.kind === "project") {
    return unwrap(await cp.DELETE("/v1/projects/{project_id}/keys/{key_id}", { params: { path: { project_id: owner.id, key_id: keyId } } }));
  }
  return unwrap(await cp.DELETE("/v1/workspaces/{workspace_id}/keys/{key_id}", { params: { path: { workspace_id: owner.id, key_id: keyId } } }));
}

const org = (orgId: string) => ({ params: { path: { org_id: orgId } } });

export function useMemberships(orgId: string | undefined) {
  return useQuery({
    queryKey: ["settings", "memberships", orgId],
    enabled: orgId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/orgs/{org_id}/memberships", org(orgId!))),
  });
}

export function useInvitations(orgId: string | undefined) {
  return useQuery({
    queryKey: ["settings", "invitations", orgId],
    enabled: orgId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/orgs/{org_id}/invitations", org(orgId!))),
  });
}

export function useRoles(orgId: string | undefined) {
  return useQuery({
    queryKey: ["settings", "roles", orgId],
    enabled: orgId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/orgs/{org_id}/roles", org(orgId!))),
  });
}

export function useOidcProviders(orgId: string | undefined) {
  return useQuery({
    queryKey: ["settings", "oidc", orgId],
    enabled: orgId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/orgs/{org_id}/sso/oidc", org(orgId!))),
  });
}

export function useDomains(orgId: string | undefined) {
  return useQuery({
    queryKey: ["settings", "domains", orgId],
    enabled: orgId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/orgs/{org_id}/domains", org(orgId!))),
  });
}

export function useSsoSettings(orgId: string | undefined) {
  return useQuery({
    queryKey: ["settings", "sso-settings", orgId],
    enabled: orgId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/orgs/{org_id}/sso/settings", org(orgId!))),
  });
}

export function useProviderCredentials(dp: ProjectDataPlane) {
  return useQuery({
    queryKey: ["settings", "credentials", dp.plane.id, dp.projectId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/proxy/credentials")).credentials,
  });
}

/** A mutation that refreshes the settings' queries named by ``keys`` when it succeeds. */
export function useSettingsMutation<TArgs, TResult>(
  fn: (args: TArgs) => Promise<TResult>, keys: string[],
) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: fn,
    onSuccess: async () => {
      await Promise.all(keys.map((k) => queryClient.invalidateQueries({ queryKey: ["settings", k] })));
    },
  });
}
