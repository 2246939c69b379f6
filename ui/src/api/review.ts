// The annotation queues API of the data plane (/v1/queues...), as TanStack Query hooks for
// the Review pages.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type ProjectDataPlane, unwrap } from "./client";
import type { components } from "./data";

export type Queue = components["schemas"]["QueueOut"];
export type QueueCreate = components["schemas"]["QueueCreate"];
export type Criterion = components["schemas"]["Criterion"];
export type Item = components["schemas"]["ItemOut"];

export function useQueues(dp: ProjectDataPlane) {
  return useQuery({
    queryKey: ["queues", dp.projectId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/queues")).queues,
    refetchInterval: 5000,
  });
}

export function useQueue(dp: ProjectDataPlane, queueId: string) {
  return useQuery({
    queryKey: ["queue", dp.projectId, queueId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/queues/{queue_id}", { params: { path: { queue_id: queueId } } })),
    refetchInterval: 5000,
  });
}

export function useCreateQueue(dp: ProjectDataPlane) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async (body: QueueCreate) => unwrap(await dp.client.POST("/v1/queues", { body })).queue,
    onSuccess: () => client.invalidateQueries({ queryKey: ["queues", dp.projectId] }),
  });
}

export function useFillQueue(dp: ProjectDataPlane) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async (queueId: string) =>
      unwrap(await dp.client.POST("/v1/queues/{queue_id}/fill", { params: { path: { queue_id: queueId } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ["queues", dp.projectId] }),
  });
}

/** The caller's items of one status (the page resumes an item it claimed earlier). */
export async function itemsOf(dp: ProjectDataPlane, queueId: string, query: { status?: string; assignee?: string }): Promise<Item[]> {
  return unwrap(await dp.client.GET("/v1/queues/{queue_id}/items", {
    params: { path: { queue_id: queueId }, query: { ...query, limit: 100 } },
  })).items;
}

/** Claim the next item for the caller: null when none is waiting. */
export async function claimNext(dp: ProjectDataPlane, queueId: string): Promise<Item | null> {
  return unwrap(await dp.client.POST("/v1/queues/{queue_id}/items/next", { params: { path: { queue_id: queueId } } })).item;
}

export async function recordScore(dp: ProjectDataPlane, queueId: string, eventId: string, feedback: Record<string, unknown>): Promise<Item> {
  return unwrap(await dp.client.POST("/v1/queues/{queue_id}/items/{event_id}/scores", {
    params: { path: { queue_id: queueId, event_id: eventId } }, body: { feedback },
  })).item;
}

export async function skipItem(dp: ProjectDataPlane, queueId: string, eventId: string): Promise<Item> {
  return unwrap(await dp.client.PUT("/v1/queues/{queue_id}/items/{event_id}", {
    params: { path: { queue_id: queueId, event_id: eventId } }, body: { status: "skipped" },
  }));
}

export function useEvent(dp: ProjectDataPlane, eventId: string | null) {
  return useQuery({
    queryKey: ["event", dp.projectId, eventId],
    enabled: eventId !== null,
    queryFn: async () => unwrap(await dp.client.GET("/v1/events/{event_id}", { params: { path: { event_id: eventId! } } })).event,
    // A claimed item's event may not be stored yet: retry until it is.
    retry: (count, error) => count < 20 && (error as { status?: number }).status === 404,
    retryDelay: 1000,
  });
}
