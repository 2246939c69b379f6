// The evaluator pages' API calls: definitions on the control plane
// (/v1/projects/{id}/evaluators: versions, deploy, enable), and the data plane's draft run
// (POST /v1/evaluations/draft: a draft evaluator on one event, in the sandbox).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { cp, type ProjectDataPlane, unwrap } from "./client";
import type { components } from "./control";
import type { components as DataComponents } from "./data";

type Schemas = components["schemas"];
export type Evaluator = Schemas["EvaluatorOut"];
export type EvaluatorVersion = Schemas["EvaluatorVersionOut"];
export type EvaluatorCreate = Schemas["EvaluatorCreate"];
export type EvaluatorVersionCreate = Schemas["EvaluatorVersionCreate"];
export type EvaluatorUpdate = Schemas["EvaluatorUpdate"];
export type DraftEvaluation = DataComponents["schemas"]["DraftEvaluation"];
export type DraftResult = DataComponents["schemas"]["DraftResult"];

export function useEvaluators(projectId: string) {
  return useQuery({
    queryKey: ["evaluators", projectId],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}/evaluators", { params: { path: { project_id: projectId } } })),
  });
}

export function useEvaluator(projectId: string, evaluatorId: string) {
  return useQuery({
    queryKey: ["evaluators", projectId, evaluatorId],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}/evaluators/{evaluator_id}", {
      params: { path: { project_id: projectId, evaluator_id: evaluatorId } },
    })),
    retry: false,
  });
}

export function useCreateEvaluator(projectId: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async (body: EvaluatorCreate) => unwrap(await cp.POST("/v1/projects/{project_id}/evaluators", {
      params: { path: { project_id: projectId } }, body,
    })),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["evaluators", projectId] }),
  });
}

/** Changes of one evaluator: a new version, deploying one, enabling, all refreshing it. */
export function useEvaluatorChanges(projectId: string, evaluatorId: string) {
  const queryClient = useQueryClient();
  const path = { project_id: projectId, evaluator_id: evaluatorId };
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["evaluators", projectId] });
  const addVersion = useMutation({
    mutationFn: async (body: EvaluatorVersionCreate) => unwrap(await cp.POST("/v1/projects/{project_id}/evaluators/{evaluator_id}/versions", { params: { path }, body })),
    onSuccess: refresh,
  });
  const deploy = useMutation({
    mutationFn: async (version: number) => unwrap(await cp.POST("/v1/projects/{project_id}/evaluators/{evaluator_id}/deploy", { params: { path }, body: { version } })),
    onSuccess: refresh,
  });
  const update = useMutation({
    mutationFn: async (body: EvaluatorUpdate) => unwrap(await cp.PATCH("/v1/projects/{project_id}/evaluators/{evaluator_id}", { params: { path }, body })),
    onSuccess: refresh,
  });
  return { addVersion, deploy, update };
}

/** Run a draft evaluator on one event of the project (nothing is stored). */
export function useDraftRun(dp: ProjectDataPlane) {
  return useMutation({
    mutationFn: async (body: DraftEvaluation) => unwrap(await dp.client.POST("/v1/evaluations/draft", { body })),
  });
}

/** The project's most recent events, to pick one to test an evaluator on. */
export function useRecentEvents(dp: ProjectDataPlane) {
  return useQuery({
    queryKey: ["recent-events", dp.projectId],
    queryFn: async () => unwrap(await dp.client.POST("/v1/events/export", {
      body: { filters: [], limit: 25, sort_by: "start_time", sort_order: "desc", dateRange: { $gte: Date.now() - 30 * 86_400_000 } },
    })),
  });
}
