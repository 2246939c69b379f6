// The alert pages' and the notification settings' API calls (control plane): a project's
// alert rules (/v1/projects/{p}/alerts: CRUD, pause/resume/mute/unmute/resolve, the
// preview and the activity), an org's notification channels
// (/v1/orgs/{org}/notification-channels: CRUD and test) and the data planes' status.
// Every call is typed by the control plane's OpenAPI spec (control.d.ts).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { apiError, cp, unwrap } from "./client";
import type { components } from "./control";

type Schemas = components["schemas"];
export type Alert = Schemas["AlertOut"];
export type AlertCreate = Schemas["AlertCreate"];
export type AlertUpdate = Schemas["AlertUpdate"];
export type Channel = Schemas["ChannelOut"];
export type ChannelCreate = Schemas["ChannelCreate"];
export type ChannelUpdate = Schemas["ChannelUpdate"];
export type ChannelCreated = Schemas["ChannelCreated"];
export type ChannelTest = Schemas["ChannelTestOut"];
export type DataPlaneStatus = Schemas["DataPlaneStatusOut"];
export type AlertAction = "pause" | "resume" | "mute" | "unmute" | "resolve";

/** ``GET .../alerts/{id}/preview``: the series and thresholds for the chart. */
export type AlertPreview = Schemas["AlertPreviewOut"];
/** ``GET .../alerts/{id}/activity``: firings and deliveries, newest first. */
export type AlertEvent = Schemas["AlertEventOut"];

const alertPath = (projectId: string, alertId: string) => ({ params: { path: { project_id: projectId, alert_id: alertId } } });

export function useAlerts(projectId: string) {
  return useQuery({
    queryKey: ["alerts", projectId],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}/alerts", { params: { path: { project_id: projectId } } })),
    // The state is the data plane's report: keep the list current while it is open.
    refetchInterval: 30_000,
  });
}

export function useAlert(projectId: string, alertId: string) {
  return useQuery({
    queryKey: ["alerts", projectId, alertId],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}/alerts/{alert_id}", alertPath(projectId, alertId))),
    retry: false,
    refetchInterval: 30_000,
  });
}

/** Create, update, the state actions and delete; each refreshes the project's alerts. */
export function useAlertChanges(projectId: string) {
  const queryClient = useQueryClient();
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["alerts", projectId] });
  const create = useMutation({
    mutationFn: async (body: AlertCreate) => unwrap(await cp.POST("/v1/projects/{project_id}/alerts", {
      params: { path: { project_id: projectId } }, body,
    })),
    onSuccess: refresh,
  });
  const update = useMutation({
    mutationFn: async ({ alertId, body }: { alertId: string; body: AlertUpdate }) => unwrap(await cp.PATCH(
      "/v1/projects/{project_id}/alerts/{alert_id}", { ...alertPath(projectId, alertId), body })),
    onSuccess: refresh,
  });
  const act = useMutation({
    mutationFn: async ({ alertId, action }: { alertId: string; action: AlertAction }) => {
      const path = alertPath(projectId, alertId);
      switch (action) {
        case "pause": return unwrap(await cp.POST("/v1/projects/{project_id}/alerts/{alert_id}/pause", path));
        case "resume": return unwrap(await cp.POST("/v1/projects/{project_id}/alerts/{alert_id}/resume", path));
        case "mute": return unwrap(await cp.POST("/v1/projects/{project_id}/alerts/{alert_id}/mute", path));
        case "unmute": return unwrap(await cp.POST("/v1/projects/{project_id}/alerts/{alert_id}/unmute", path));
        case "resolve": return unwrap(await cp.POST("/v1/projects/{project_id}/alerts/{alert_id}/resolve", path));
      }
    },
    // A 409 means the alert changed meanwhile: show what it is now.
    onSettled: refresh,
  });
  const remove = useMutation({
    mutationFn: async (alertId: string) => {
      const result = await cp.DELETE("/v1/projects/{project_id}/alerts/{alert_id}", alertPath(projectId, alertId));
      if (!result.response.ok) throw apiError(result.response.status, result.error);
    },
    // The list only: the deleted alert's own page is left (not refetched into a 404).
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["alerts", projectId], exact: true }),
  });
  return { create, update, act, remove };
}

/** Computed by the data plane serving the project (asked on its federation stream): a
 * 409 (no data plane serves it) or 503 (not connected, no answer in 10 s) is the page's
 * "preview unavailable" state, not something to retry at once. */
export function useAlertPreview(projectId: string, alertId: string, from: number, to: number) {
  return useQuery({
    queryKey: ["alerts", projectId, alertId, "preview", from, to],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}/alerts/{alert_id}/preview", {
      params: { path: { project_id: projectId, alert_id: alertId }, query: { from, to } },
    })),
    retry: false,
  });
}

export function useAlertActivity(projectId: string, alertId: string) {
  return useQuery({
    queryKey: ["alerts", projectId, alertId, "activity"],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}/alerts/{alert_id}/activity", {
      params: { path: { project_id: projectId, alert_id: alertId }, query: { limit: 100 } },
    })),
    retry: false,
    refetchInterval: 30_000,
  });
}

// --- notification channels -------------------------------------------------------------

const channelsPath = (orgId: string) => ({ params: { path: { org_id: orgId } } });
const channelPath = (orgId: string, channelId: string) => ({ params: { path: { org_id: orgId, channel_id: channelId } } });

export function useChannels(orgId: string | undefined) {
  return useQuery({
    queryKey: ["settings", "channels", orgId],
    enabled: orgId !== undefined,
    queryFn: async () => unwrap(await cp.GET("/v1/orgs/{org_id}/notification-channels", channelsPath(orgId!))),
  });
}

export function useChannelChanges(orgId: string | undefined) {
  const queryClient = useQueryClient();
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["settings", "channels", orgId] });
  const create = useMutation({
    mutationFn: async (body: ChannelCreate) => unwrap(await cp.POST("/v1/orgs/{org_id}/notification-channels", { ...channelsPath(orgId!), body })),
    onSuccess: refresh,
  });
  const update = useMutation({
    mutationFn: async ({ channelId, body }: { channelId: string; body: ChannelUpdate }) => unwrap(await cp.PATCH(
      "/v1/orgs/{org_id}/notification-channels/{channel_id}", { ...channelPath(orgId!, channelId), body })),
    onSuccess: refresh,
  });
  const remove = useMutation({
    mutationFn: async (channelId: string) => {
      const result = await cp.DELETE("/v1/orgs/{org_id}/notification-channels/{channel_id}", channelPath(orgId!, channelId));
      if (!result.response.ok) throw apiError(result.response.status, result.error);
    },
    onSuccess: refresh,
  });
  const test = useMutation({
    mutationFn: async (channelId: string) => unwrap(await cp.POST(
      "/v1/orgs/{org_id}/notification-channels/{channel_id}/test", channelPath(orgId!, channelId))),
  });
  return { create, update, remove, test };
}

/** The data planes with their status and last health, refreshed while the tab is open. */
export function useDataPlaneStatus() {
  return useQuery({
    queryKey: ["settings", "data-plane-status"],
    queryFn: async () => unwrap(await cp.GET("/v1/data-planes")),
    refetchInterval: 15_000,
  });
}
