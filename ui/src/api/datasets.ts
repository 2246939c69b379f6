// Datasets, datapoints, and the span actions (feedback, add to a dataset or a queue): the
// TanStack Query hooks and calls over the data plane's typed client.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import type { components } from "./data";
import { apiError, type ProjectDataPlane, unwrap } from "./client";

export type Dataset = components["schemas"]["DatasetOut"];
export type Datapoint = components["schemas"]["DatapointOut"];
export type DatasetVersion = components["schemas"]["DatasetVersionOut"];
export type ImportResult = components["schemas"]["ImportResult"];
export type Queue = components["schemas"]["QueueOut"];
export type FileFormat = "jsonl" | "csv";

export function useDatasets(dp: ProjectDataPlane) {
  return useQuery({
    queryKey: ["datasets", dp.projectId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/datasets")).datasets,
  });
}

export function useDataset(dp: ProjectDataPlane, datasetId: string) {
  return useQuery({
    queryKey: ["datasets", dp.projectId, datasetId],
    queryFn: async () => {
      const found = unwrap(await dp.client.GET("/v1/datasets", { params: { query: { dataset_id: datasetId } } })).datasets[0];
      if (!found) throw apiError(404, { message: "this dataset does not exist (or is in another project)", errorCode: "not_found" });
      return found;
    },
    retry: false,
  });
}

export function useDatapoints(dp: ProjectDataPlane, datasetId: string) {
  return useQuery({
    queryKey: ["datapoints", dp.projectId, datasetId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/datapoints", { params: { query: { dataset_id: datasetId } } })).datapoints,
  });
}

export function useVersions(dp: ProjectDataPlane, datasetId: string) {
  return useQuery({
    queryKey: ["dataset-versions", dp.projectId, datasetId],
    queryFn: async () => unwrap(await dp.client.GET("/v1/datasets/{dataset_id}/versions", { params: { path: { dataset_id: datasetId } } })).versions,
  });
}

export function useQueues(dp: ProjectDataPlane, enabled = true) {
  return useQuery({
    queryKey: ["queues", dp.projectId],
    enabled,
    queryFn: async () => unwrap(await dp.client.GET("/v1/queues")).queues,
  });
}

/** Invalidate everything a dataset change can touch (lists, the dataset, its datapoints). */
export function useDatasetsChanged(dp: ProjectDataPlane) {
  const queryClient = useQueryClient();
  return () => Promise.all([
    queryClient.invalidateQueries({ queryKey: ["datasets", dp.projectId] }),
    queryClient.invalidateQueries({ queryKey: ["datapoints", dp.projectId] }),
    queryClient.invalidateQueries({ queryKey: ["dataset-versions", dp.projectId] }),
  ]);
}

export async function createDataset(dp: ProjectDataPlane, name: string, description: string): Promise<string> {
  const created = unwrap(await dp.client.POST("/v1/datasets", {
    body: { name, ...(description ? { description } : {}) },
  }));
  return created.result.insertedId;
}

export async function deleteDataset(dp: ProjectDataPlane, datasetId: string): Promise<void> {
  unwrap(await dp.client.DELETE("/v1/datasets/{dataset_id}", { params: { path: { dataset_id: datasetId } } }));
}

export interface DatapointFields {
  inputs: Record<string, unknown>;
  ground_truth: Record<string, unknown> | null;
  metadata: Record<string, unknown> | null;
  history: Record<string, unknown>[];
}

export async function addDatapoint(dp: ProjectDataPlane, datasetId: string, fields: DatapointFields): Promise<void> {
  unwrap(await dp.client.POST("/v1/datapoints", { body: { ...fields, linked_datasets: [datasetId] } }));
}

export async function updateDatapoint(dp: ProjectDataPlane, datapointId: string, fields: DatapointFields): Promise<void> {
  unwrap(await dp.client.PUT("/v1/datapoints/{datapoint_id}", { params: { path: { datapoint_id: datapointId } }, body: fields }));
}

export async function removeDatapoint(dp: ProjectDataPlane, datasetId: string, datapointId: string): Promise<void> {
  unwrap(await dp.client.DELETE("/v1/datasets/{dataset_id}/datapoints/{datapoint_id}", {
    params: { path: { dataset_id: datasetId, datapoint_id: datapointId } },
  }));
}

export async function createVersion(dp: ProjectDataPlane, datasetId: string, message: string) {
  return unwrap(await dp.client.POST("/v1/datasets/{dataset_id}/versions", {
    params: { path: { dataset_id: datasetId } }, body: { force: false, ...(message ? { message } : {}) },
  }));
}

/** The format of a file to import, from its name (CSV for .csv, else JSONL). */
export function formatOfFile(name: string): FileFormat {
  return name.toLowerCase().endsWith(".csv") ? "csv" : "jsonl";
}

/** Import a file's text: the good lines are stored, each bad one comes back in ``errors``. */
export async function importFile(dp: ProjectDataPlane, datasetId: string, text: string, format: FileFormat): Promise<ImportResult> {
  const contentType = format === "csv" ? "text/csv" : "application/x-ndjson";
  return unwrap(await dp.client.POST("/v1/datasets/{dataset_id}/import", {
    params: { path: { dataset_id: datasetId }, query: { format, on_error: "skip" } },
    body: text,
    bodySerializer: (body: string) => body,
    headers: { "Content-Type": contentType },
  }));
}

/** The dataset's file as a Blob (fetched with the data-plane token in the Authorization
 * header: a token never goes into a URL); ``version``: one of its versions as it was. */
export async function exportFile(dp: ProjectDataPlane, datasetId: string, format: FileFormat, version?: number): Promise<Blob> {
  const result = await dp.client.GET("/v1/datasets/{dataset_id}/export", {
    params: { path: { dataset_id: datasetId }, query: { format, ...(version !== undefined ? { version: String(version) } : {}) } },
    parseAs: "blob",
  });
  if (!result.response.ok || !(result.data instanceof Blob)) throw apiError(result.response.status, result.error);
  return result.data;
}

/** Save a Blob as a download named ``filename``. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Events as new datapoints of the dataset (inputs ← their inputs, ground truth ← their
 * outputs, each linked back to its event); the new datapoints' ids. */
export async function addEventsToDataset(dp: ProjectDataPlane, eventIds: string[], datasetId: string): Promise<string[]> {
  const made = unwrap(await dp.client.POST("/v1/datapoints/batch", { body: { events: eventIds, dataset_id: datasetId } }));
  if (made.events_matched === 0) throw apiError(404, { message: "the events are not stored yet; try again in a moment" });
  return made.insertedIds;
}

export async function addEventToQueue(dp: ProjectDataPlane, eventId: string, queueId: string): Promise<boolean> {
  const added = unwrap(await dp.client.POST("/v1/queues/{queue_id}/items", {
    params: { path: { queue_id: queueId } }, body: { event_ids: [eventId] },
  }));
  return added.added.length > 0;
}

export async function saveFeedback(dp: ProjectDataPlane, eventId: string, feedback: Record<string, unknown>): Promise<void> {
  unwrap(await dp.client.PUT("/v1/events/{event_id}", { params: { path: { event_id: eventId } }, body: { feedback } }));
}
