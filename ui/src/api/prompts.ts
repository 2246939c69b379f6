// The prompt pages' API calls: templates on the control plane (/v1/projects/{id}/prompts:
// immutable versions, environments dev/staging/prod pointing at versions).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { cp, unwrap } from "./client";
import type { components } from "./control";

type Schemas = components["schemas"];
export type PromptTemplate = Schemas["PromptTemplateOut"];
export type PromptVersion = Schemas["PromptVersionOut"];
export type PromptCreate = Schemas["PromptCreate"];
export type PromptVersionCreate = Schemas["PromptVersionCreate"];

export const ENVIRONMENTS = ["dev", "staging", "prod"] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

export function usePrompts(projectId: string) {
  return useQuery({
    queryKey: ["prompts", projectId],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}/prompts", { params: { path: { project_id: projectId } } })),
  });
}

export function usePrompt(projectId: string, templateId: string) {
  return useQuery({
    queryKey: ["prompts", projectId, templateId],
    queryFn: async () => unwrap(await cp.GET("/v1/projects/{project_id}/prompts/{template_id}", {
      params: { path: { project_id: projectId, template_id: templateId } },
    })),
    retry: false,
  });
}

export function useCreatePrompt(projectId: string) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: async (body: PromptCreate) => unwrap(await cp.POST("/v1/projects/{project_id}/prompts", {
      params: { path: { project_id: projectId } }, body,
    })),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ["prompts", projectId] }),
  });
}

export function usePromptChanges(projectId: string, templateId: string) {
  const queryClient = useQueryClient();
  const path = { project_id: projectId, template_id: templateId };
  const refresh = () => queryClient.invalidateQueries({ queryKey: ["prompts", projectId] });
  const addVersion = useMutation({
    mutationFn: async (body: PromptVersionCreate) => unwrap(await cp.POST("/v1/projects/{project_id}/prompts/{template_id}/versions", { params: { path }, body })),
    onSuccess: refresh,
  });
  const promote = useMutation({
    mutationFn: async ({ environment, version }: { environment: Environment; version: number }) => unwrap(await cp.PUT(
      "/v1/projects/{project_id}/prompts/{template_id}/environments/{environment}",
      { params: { path: { ...path, environment } }, body: { version } },
    )),
    onSuccess: refresh,
  });
  return { addVersion, promote };
}
