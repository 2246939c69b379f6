// Which data plane serves a project, from what the control plane lists.

/** The fields of a listed data plane (``GET /cp/v1/data-planes``) the choice reads. */
export interface ListedDataPlane {
  id: string;
  federated: boolean;
  status: string;
}

/** The data plane serving a project: the one it is assigned to (``data_plane_id``), or
 * ``undefined`` when that one is not listed (not visible to the caller); for an unassigned
 * project (``null``), a legacy data plane (no federation identity) that is not revoked,
 * else the first one listed that is not revoked (else the first). */
export function pickDataPlane<P extends ListedDataPlane>(planes: readonly P[], assigned: string | null | undefined): P | undefined {
  if (assigned) return planes.find((p) => p.id === assigned);
  const live = planes.filter((p) => p.status !== "revoked");
  return live.find((p) => !p.federated) ?? live[0] ?? planes[0];
}
