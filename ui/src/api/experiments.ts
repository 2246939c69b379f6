// The experiments pages' API calls (the data plane's /v1/runs), as TanStack Query hooks.
import { keepPreviousData, useQueries, useQuery } from "@tanstack/react-query";
import { type ProjectDataPlane, unwrap } from "./client";
import type { components } from "./data";

type Schemas = components["schemas"];
export type RunObject = Schemas["RunObject"];
export type RunResult = Schemas["RunResult"];
export type RunComparison = Schemas["RunComparison"];
export type MetricComparison = Schemas["MetricComparison"];
export type MetricDetail = Schemas["MetricDetail"];
export type DatapointResult = Schemas["DatapointResult"];
export type DatapointMetric = Schemas["DatapointMetric"];
export type ComparedEvents = Schemas["ComparedEvents"];

/** One page of the project's runs, newest first. */
export function useRuns(dp: ProjectDataPlane, page: number, limit: number) {
  return useQuery({
    queryKey: ["runs", dp.projectId, page, limit],
    queryFn: async () => unwrap(await dp.client.GET("/v1/runs", {
      params: { query: { page, limit, sort_by: "created_at", sort_order: "desc" } },
    })),
    placeholderData: keepPreviousData,
    refetchInterval: 10_000,
  });
}

function resultQuery(dp: ProjectDataPlane, runId: string) {
  return {
    queryKey: ["run-result", dp.projectId, runId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/runs/{run_id}/result", {
      params: { path: { run_id: runId }, query: { aggregate_function: "average" } },
    })),
    retry: false,
  };
}

/** A run's results, computed by the data plane from its events (404 for another
 * project's run). */
export function useRunResult(dp: ProjectDataPlane, runId: string) {
  return useQuery(resultQuery(dp, runId));
}

/** The results of every listed run (the runs list's metric averages and datapoints). */
export function useRunResults(dp: ProjectDataPlane, runIds: string[]) {
  return useQueries({ queries: runIds.map((id) => ({ ...resultQuery(dp, id), staleTime: 10_000 })) });
}

/** Each datapoint's first event of the run (its session event: sessions come first), for
 * the inputs and outputs: the run's events paired with themselves. */
export function useRunEvents(dp: ProjectDataPlane, runId: string) {
  return useQuery({
    queryKey: ["run-events", dp.projectId, runId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/runs/compare/events", {
      params: { query: { run_id_1: runId, run_id_2: runId, limit: 1000 } },
    })),
    retry: false,
  });
}

/** Aggregate and per-datapoint deltas of ``newId`` against ``baseId``. */
export function useComparison(dp: ProjectDataPlane, newId: string, baseId: string) {
  return useQuery({
    queryKey: ["run-compare", dp.projectId, newId, baseId],
    enabled: Boolean(newId && baseId),
    queryFn: async () => unwrap(await dp.client.GET("/v1/runs/{new_run_id}/compare/{old_run_id}", {
      params: { path: { new_run_id: newId, old_run_id: baseId }, query: { aggregate_function: "average" } },
    })),
    retry: false,
  });
}

/** Both runs' events per common datapoint (``event_1`` from the new run). */
export function useComparedEvents(dp: ProjectDataPlane, newId: string, baseId: string) {
  return useQuery({
    queryKey: ["run-compare-events", dp.projectId, newId, baseId],
    enabled: Boolean(newId && baseId),
    queryFn: async () => unwrap(await dp.client.GET("/v1/runs/{new_run_id}/compare/{old_run_id}/events", {
      params: { path: { new_run_id: newId, old_run_id: baseId }, query: { limit: 1000 } },
    })),
    retry: false,
  });
}
