import { useDataPlaneStatus } from "../../api/alerts";
import { ago, formatWhen } from "./format";
import { EmptyRow, ErrorNote, Section } from "./parts";
import { healthFigures, planeStatus } from "./planes";

/** The data planes registered for the caller's organizations: status (connected,
 * draining, revoked) and the last health report (read-only; refreshed every 15 s). */
export function DataPlanesTab({ current }: { current: string }) {
  const planes = useDataPlaneStatus();
  const rows = planes.data ?? [];
  return (
    <Section title="Data planes"
      description="Where trace data is ingested, stored and queried. The browser calls the data plane directly with a short-lived token; trace data never passes through the control plane. A federated data plane reports its health every few seconds.">
      <ErrorNote error={planes.error} what="list the data planes" />
      {!planes.error && (
        <table className="grid" aria-label="Data planes" aria-busy={planes.isPending}>
          <thead>
            <tr>
              <th scope="col">Name</th><th scope="col">Status</th><th scope="col">URL</th>
              <th scope="col" className="num">Ingest rate</th><th scope="col" className="num">Writer lag</th>
              <th scope="col" className="num">Dead letters</th><th scope="col" className="num">Evaluator backlog</th>
              <th scope="col">Last seen</th><th scope="col">This project</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((p) => {
              const status = planeStatus(p);
              const health = healthFigures(p.last_health);
              return (
                <tr key={p.id}>
                  <td><strong>{p.name}</strong><br /><code className="id">{p.id}</code></td>
                  <td>
                    <span className={`badge plane-${status.tone}`}>{status.label}</span>
                    {health.problem && <div className="muted plane-problem">{health.problem}</div>}
                  </td>
                  <td><code className="wrap">{p.url}</code></td>
                  <td className="num">{health.ingestRate}</td>
                  <td className="num">{health.writerLag}</td>
                  <td className="num">{health.deadLetters}</td>
                  <td className="num">{health.evaluatorBacklog}</td>
                  <td title={formatWhen(p.last_seen_at)}>{p.last_seen_at ? ago(p.last_seen_at) : <span className="muted">Never</span>}</td>
                  <td>{p.id === current ? <span className="badge status-ok-badge">In use</span> : <span className="muted">—</span>}</td>
                </tr>
              );
            })}
            {rows.length === 0 && <EmptyRow colSpan={9} loading={planes.isPending}>No data planes are registered.</EmptyRow>}
          </tbody>
        </table>
      )}
    </Section>
  );
}
