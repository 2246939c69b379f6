import { useMemo, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { type RunObject, type RunResult, useRunResults, useRuns } from "../../api/experiments";
import { useProjectContext } from "../ProjectLayout";
import { formatNumber, metricAggregates, orderRuns } from "./logic";
import { formatCreated, QueryError, RunStatus, runName } from "./parts";

const PAGE_SIZE = 20;

/** The project's experiment runs, newest first: dataset, status, datapoints, metric
 * averages; select two and compare them. */
export function ExperimentsPage() {
  const { projectId, dp } = useProjectContext();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const page = Math.max(1, Number(params.get("page")) || 1);
  const runs = useRuns(dp, page, PAGE_SIZE);
  const list = useMemo(() => runs.data?.evaluations ?? [], [runs.data]);
  const results = useRunResults(dp, list.map((r) => r.id));
  const [selected, setSelected] = useState<string[]>([]);
  const byId = new Map(list.map((r) => [r.id, r]));
  const chosen = selected.map((id) => byId.get(id)).filter((r): r is RunObject => r !== undefined);

  function toggle(id: string, on: boolean) {
    // At most two: choosing a third lets go of the first chosen.
    setSelected((prev) => (on ? [...prev.filter((s) => s !== id), id].slice(-2) : prev.filter((s) => s !== id)));
  }

  function compare() {
    const [a, b] = chosen;
    if (!a || !b) return;
    const { base, next } = orderRuns(a, b);
    navigate(`/projects/${projectId}/experiments/compare?base=${encodeURIComponent(base.id)}&new=${encodeURIComponent(next.id)}`);
  }

  const total = runs.data?.pagination.total ?? 0;
  const pages = Math.max(1, runs.data?.pagination.total_pages ?? 1);

  return (
    <div className="page">
      <div className="page-head">
        <h1>Experiments</h1>
      </div>
      <p className="xp-lead">Runs of an application over a dataset, scored by evaluators. Results are computed from each run's traced events.</p>
      {runs.error && <QueryError error={runs.error} what="the runs" />}
      {runs.isPending && <p role="status">Loading runs…</p>}
      {runs.data && total === 0 && (
        <div className="xp-empty">
          <h2>No experiment runs yet</h2>
          <p>Run <code>evaluate()</code> from the HoneyHive SDK with an API key of this project: each run appears here with its results.</p>
        </div>
      )}
      {list.length > 0 && (
        <>
          <div className="xp-toolbar" role="group" aria-label="Compare runs">
            <span className="hint" aria-live="polite">
              {chosen.length === 2 ? `Compare “${runName(chosen[0]!)}” and “${runName(chosen[1]!)}”`
                : chosen.length === 1 ? "Select one more run to compare" : "Select two runs to compare them"}
            </span>
            <button type="button" className="primary" disabled={chosen.length !== 2} onClick={compare}>Compare</button>
            {chosen.length > 0 && <button type="button" onClick={() => setSelected([])}>Clear selection</button>}
          </div>
          <table className="grid" aria-label="Experiment runs" aria-busy={runs.isFetching}>
            <thead>
              <tr>
                <th scope="col"><span className="xp-sr">Select</span></th>
                <th scope="col">Name</th>
                <th scope="col">Dataset</th>
                <th scope="col">Status</th>
                <th scope="col" className="num">Datapoints</th>
                <th scope="col">Metric averages</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {list.map((run, i) => {
                const result = results[i];
                const isSelected = selected.includes(run.id);
                return (
                  <tr key={run.id} className={isSelected ? "selected-row" : undefined}>
                    <td>
                      <input type="checkbox" checked={isSelected} aria-label={`Select run ${runName(run)}`}
                        onChange={(e) => toggle(run.id, e.target.checked)} />
                    </td>
                    <td><Link to={`/projects/${projectId}/experiments/${encodeURIComponent(run.id)}`}>{runName(run)}</Link></td>
                    <td>{run.dataset_name ?? (run.dataset_id ? <code className="id">{run.dataset_id}</code> : <span className="muted">—</span>)}</td>
                    <td><RunStatus status={run.status} /></td>
                    <td className="num">{result?.data ? result.data.datapoints.length : result?.error ? (run.event_ids.length || "—") : "…"}</td>
                    <td><Averages result={result?.data} loading={result?.isPending ?? false} failed={Boolean(result?.error)} /></td>
                    <td>{formatCreated(run.created_at)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <nav className="pager" aria-label="Pages">
            <button type="button" disabled={page <= 1} onClick={() => setParams({ page: String(page - 1) })}>Previous</button>
            <span>Page {page} of {pages} · {total} run{total === 1 ? "" : "s"}</span>
            <button type="button" disabled={page >= pages} onClick={() => setParams({ page: String(page + 1) })}>Next</button>
          </nav>
        </>
      )}
    </div>
  );
}

function Averages({ result, loading, failed }: { result: RunResult | undefined; loading: boolean; failed: boolean }) {
  if (failed) return <span className="error">unavailable</span>;
  if (loading || !result) return <span className="muted">…</span>;
  const numeric = metricAggregates(result).filter((m) => m.aggregate !== null);
  if (numeric.length === 0) return <span className="muted">no metrics</span>;
  return (
    <ul className="metric-avgs">
      {numeric.map((m) => (
        <li key={m.key}><span className="m-name">{m.name}</span> <span className="m-val">{formatNumber(m.aggregate)}</span></li>
      ))}
    </ul>
  );
}
