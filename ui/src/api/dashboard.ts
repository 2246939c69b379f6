// The dashboard's API calls: chart data (POST /v1/charts/query) and the fields the
// project's events carry (GET /v1/events/schema, for the metric names), on the data plane.
import { useQuery } from "@tanstack/react-query";
import { type ProjectDataPlane, unwrap } from "./client";
import type { components } from "./data";

type ChartQuery = components["schemas"]["ChartQuery"];

/** Dashboards refresh on their own, more slowly than the traces table. */
export const DASHBOARD_POLL_MS = 30_000;

export function useChart(dp: ProjectDataPlane, query: ChartQuery, enabled = true) {
  return useQuery({
    queryKey: ["chart", dp.projectId, query],
    enabled,
    queryFn: async () => unwrap(await dp.client.POST("/v1/charts/query", { body: query })).data,
    refetchInterval: DASHBOARD_POLL_MS, // paused while the tab is hidden
    retry: (failures, error) => failures < 2 && !("status" in error && Number(error.status) < 500),
  });
}

export function useEventSchema(dp: ProjectDataPlane, range: string) {
  return useQuery({
    queryKey: ["event-schema", dp.projectId, range],
    queryFn: async () => unwrap(await dp.client.GET("/v1/events/schema", { params: { query: { dateRange: range } } })),
    refetchInterval: DASHBOARD_POLL_MS,
  });
}
