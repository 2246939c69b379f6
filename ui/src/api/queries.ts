// Every API call the pages make, as TanStack Query hooks over the typed clients.
import { useQuery } from "@tanstack/react-query";
import { useMemo } from "react";
import { pickDataPlane } from "../lib/dataPlane";
import { ApiError, cp, ProjectDataPlane, unwrap } from "./client";

export function useMe() {
  return useQuery({
    queryKey: ["me"],
    queryFn: async () => unwrap(await cp.GET("/v1/me")),
    retry: false,
  });
}

export function useOrgs() {
  return useQuery({ queryKey: ["orgs"], queryFn: async () => unwrap(await cp.GET("/v1/orgs")) });
}

export function useWorkspaces(orgId: string | undefined) {
  return useQuery({
    queryKey: ["workspaces", orgId],
    enabled: orgId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/orgs/{org_id}/workspaces", { params: { path: { org_id: orgId! } } })),
  });
}

export function useProjects(workspaceId: string | undefined) {
  return useQuery({
    queryKey: ["projects", workspaceId],
    enabled: workspaceId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/workspaces/{workspace_id}/projects", { params: { path: { workspace_id: workspaceId! } } })),
  });
}

export function useProject(projectId: string) {
  return useQuery({
    queryKey: ["project", projectId],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}", { params: { path: { project_id: projectId } } })),
  });
}

export function useDataPlanes() {
  return useQuery({
    queryKey: ["data-planes"],
    queryFn: async () => unwrap(await cp.GET("/v1/data-planes")),
    staleTime: 5 * 60_000,
  });
}

/** The first project the user can open (orgs, then their workspaces, then projects). */
export async function firstProject(orgId?: string, workspaceId?: string): Promise<string | null> {
  const orgs = orgId ? [{ id: orgId }] : unwrap(await cp.GET("/v1/orgs"));
  for (const org of orgs) {
    const workspaces = workspaceId ? [{ id: workspaceId }]
      : unwrap(await cp.GET("/v1/orgs/{org_id}/workspaces", { params: { path: { org_id: org.id } } }));
    for (const ws of workspaces) {
      const projects = unwrap(await cp.GET("/v1/workspaces/{workspace_id}/projects", { params: { path: { workspace_id: ws.id } } }));
      if (projects[0]) return projects[0].id;
    }
  }
  return null;
}

const planes = new Map<string, ProjectDataPlane>();

/** Drop every data-plane client and its token (sign-in, sign-out: another user's tokens
 * must never serve the next one). */
export function forgetDataPlanes(): void {
  planes.clear();
}

/** The data plane serving ``projectId``, with its token source (one per project): the one
 * the project is assigned to (``data_plane_id``); an unassigned project's is a legacy data
 * plane (no federation identity), else the first one listed (``pickDataPlane``). */
export function useDataPlane(projectId: string): { dp: ProjectDataPlane | null; error: Error | null } {
  const list = useDataPlanes();
  const project = useProject(projectId);
  return useMemo(() => {
    if (list.error) return { dp: null, error: list.error };
    if (project.error) return { dp: null, error: project.error };
    if (!list.data || !project.data) return { dp: null, error: null };
    const assigned = project.data.data_plane_id;
    const plane = pickDataPlane(list.data, assigned);
    if (!plane) {
      return {
        dp: null,
        error: assigned
          ? new ApiError(404, "no_data_plane", `the data plane serving this project (${assigned}) is not visible to you`)
          : new ApiError(404, "no_data_plane", "no data plane is registered for this organization"),
      };
    }
    const key = `${plane.id} ${projectId}`;
    let dp = planes.get(key);
    if (!dp) {
      dp = new ProjectDataPlane(plane, projectId);
      planes.set(key, dp);
      // The token is fetched now, while the page renders, not on its first data read;
      // a failure is reported by that read (it asks again).
      dp.token().catch(() => undefined);
    }
    return { dp, error: null };
  }, [list.data, list.error, project.data, project.error, projectId]);
}
