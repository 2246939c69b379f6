import { useDataPlanes } from "../../api/queries";
import { EmptyRow, ErrorNote, Section } from "./parts";

/** The data planes registered for the caller's organizations (read-only for now). */
export function DataPlanesTab({ current }: { current: string }) {
  const planes = useDataPlanes();
  const rows = planes.data ?? [];
  return (
    <Section title="Data planes"
      description="Where trace data is ingested, stored and queried. The browser calls the data plane directly with a short-lived token; trace data never passes through the control plane.">
      <ErrorNote error={planes.error} what="list the data planes" />
      {!planes.error && (
        <table className="grid" aria-label="Data planes" aria-busy={planes.isPending}>
          <thead><tr><th scope="col">Name</th><th scope="col">ID</th><th scope="col">URL</th><th scope="col">This project</th></tr></thead>
          <tbody>
            {rows.map((p) => (
              <tr key={p.id}>
                <td><strong>{p.name}</strong></td>
                <td><code className="id">{p.id}</code></td>
                <td><code className="wrap">{p.url}</code></td>
                <td>{p.id === current ? <span className="badge status-ok-badge">In use</span> : <span className="muted">—</span>}</td>
              </tr>
            ))}
            {rows.length === 0 && <EmptyRow colSpan={4} loading={planes.isPending}>No data planes are registered.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}
