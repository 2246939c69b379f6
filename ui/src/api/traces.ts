// The traces page's API calls (TanStack Query over the data plane's typed client): the
// session list, the matching events, and the project's field schema (for metric columns
// and filter suggestions). Polling every 3 s (paused while the tab is hidden).
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import type { EventFilter } from "../lib/filters";
import { schemaPaths, type Sort, type TimeWindow } from "../pages/traces/traceState";
import { type ProjectDataPlane, unwrap } from "./client";

export const PAGE_SIZE = 50;
const POLL_MS = 3000;

/** The event fields the events table reads: the light columns, the scores, and the
 * derived model, cost and token columns (the wide inputs/outputs stay on the server). */
export const EVENT_PROJECTIONS = [
  "event_id", "session_id", "parent_id", "event_type", "event_name", "start_time", "end_time",
  "duration", "error", "metrics", "feedback", "model", "cost", "total_tokens",
];

export function useSessionList(dp: ProjectDataPlane, when: TimeWindow, sort: Sort, page: number, enabled: boolean) {
  return useQuery({
    queryKey: ["sessions", dp.projectId, when, sort, page],
    enabled,
    queryFn: async () => unwrap(await dp.client.GET("/v1/sessions", {
      params: {
        query: {
          limit: PAGE_SIZE, page, sort_by: sort.by, sort_order: sort.order,
          ...(when.gte !== undefined ? { start: String(Math.floor(when.gte)) } : {}),
          ...(when.lte !== undefined ? { end: String(Math.floor(when.lte)) } : {}),
        },
      },
    })),
    placeholderData: keepPreviousData,
    refetchInterval: POLL_MS,
  });
}

export function useEventList(dp: ProjectDataPlane, filters: EventFilter[], search: string, when: TimeWindow,
  sort: Sort, page: number, enabled: boolean) {
  return useQuery({
    queryKey: ["events", dp.projectId, filters, search, when, sort, page],
    enabled,
    queryFn: async () => unwrap(await dp.client.POST("/v1/events/export", {
      body: {
        filters, limit: PAGE_SIZE, page, projections: EVENT_PROJECTIONS,
        sort_by: sort.by, sort_order: sort.order,
        ...(search ? { search } : {}),
        ...(when.gte !== undefined || when.lte !== undefined
          ? { dateRange: { ...(when.gte !== undefined ? { $gte: when.gte } : {}), ...(when.lte !== undefined ? { $lte: when.lte } : {}) } }
          : {}),
      },
    })),
    placeholderData: keepPreviousData,
    refetchInterval: POLL_MS,
  });
}

/** The project's metric and feedback paths (numbers first), from GET /v1/events/schema. */
export function useScoreFields(dp: ProjectDataPlane) {
  return useQuery({
    queryKey: ["event-schema", dp.projectId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/events/schema")),
    staleTime: 30_000,
    refetchInterval: 30_000,
    select: (schema) => schemaPaths(schema.details),
  });
}
