import { Label } from "radix-ui";
import { useMemo, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { type MetricDetail, useRunEvents, useRunResult, useRuns } from "../../api/experiments";
import { useProjectContext } from "../ProjectLayout";
import { formatMetricValue, formatNumber, metricKey, metricLabels, orderRuns, resultRows, valueText } from "./logic";
import { formatCreated, PassBadge, QueryError, RunStatus, runName } from "./parts";

function passRule(detail: MetricDetail): string {
  const range = detail.passing_range;
  if (range && (range.min != null || range.max != null)) {
    if (range.min != null && range.max != null) return `${formatNumber(range.min)} – ${formatNumber(range.max)}`;
    return range.min != null ? `≥ ${formatNumber(range.min)}` : `≤ ${formatNumber(range.max)}`;
  }
  if (detail.datapoints) return detail.metric_type === "boolean" ? "is true" : "a rule";
  return "none";
}

/** One run: its summary (per-metric aggregates, pass/fail counts) and a row per datapoint
 * (inputs, outputs, metric values, a link to its session). */
export function RunPage() {
  const { projectId, dp } = useProjectContext();
  const { runId = "" } = useParams();
  const result = useRunResult(dp, runId);
  const events = useRunEvents(dp, runId);

  const data = result.data;
  const metrics = useMemo(() => data?.metrics.details ?? [], [data]);
  const labels = useMemo(() => metricLabels(metrics.map((d) => ({ ...d, name: d.metric_name }))), [metrics]);
  const rows = useMemo(() => resultRows(data?.datapoints ?? [], events.data?.events ?? []), [data, events.data]);

  const crumbs = (
    <p className="crumbs"><Link to={`/projects/${projectId}/experiments`}>Experiments</Link> / {data ? runName(data.run_object) : runId}</p>
  );
  if (result.error) {
    return (
      <div className="page">
        {crumbs}
        <h1>Run</h1>
        <QueryError error={result.error} what="this run" projectId={projectId} />
      </div>
    );
  }
  if (!data) {
    return <div className="page">{crumbs}<h1>Run</h1><p role="status">Loading the run's results…</p></div>;
  }
  const run = data.run_object;
  const warnings = data.warnings ?? [];
  return (
    <div className="page">
      {crumbs}
      <div className="page-head">
        <h1>{runName(run)}</h1>
        <RunStatus status={run.status} />
        <span className="spacer" />
        <CompareWith runId={run.id} />
      </div>
      <p className="meta-line">
        <span>Dataset: {run.dataset_name ?? run.dataset_id ?? "—"}</span>
        <span>Created {formatCreated(run.created_at)}</span>
        <span>Run id <code>{run.id}</code></span>
      </p>
      {warnings.length > 0 && (
        <details className="xp-note">
          <summary>{warnings.length === 1 ? "1 note" : `${warnings.length} notes`} about these results</summary>
          <ul>{warnings.map((w) => <li key={w}>{w}</li>)}</ul>
        </details>
      )}

      <section className="xp-section" aria-labelledby="summary-title">
        <h2 id="summary-title">Summary</h2>
        <dl className="xp-cards">
          <div className="xp-card"><dt>Datapoints</dt><dd>{data.datapoints.length}</dd></div>
          <div className="xp-card"><dt>Passed</dt><dd className="pass">{data.passed.length}</dd></div>
          <div className="xp-card"><dt>Failed</dt><dd className="fail">{data.failed.length}</dd></div>
          <div className="xp-card"><dt>Metrics</dt><dd>{metrics.length}</dd></div>
        </dl>
        {metrics.length === 0 ? <p className="muted">No metric values in this run's events.</p> : (
          <table className="grid" aria-label="Metric summary">
            <thead>
              <tr>
                <th scope="col">Metric</th>
                <th scope="col">Scored on</th>
                <th scope="col">Type</th>
                <th scope="col" className="num">Average</th>
                <th scope="col">Pass rule</th>
                <th scope="col" className="num">Passed</th>
                <th scope="col" className="num">Failed</th>
              </tr>
            </thead>
            <tbody>
              {metrics.map((d) => (
                <tr key={metricKey({ ...d, name: d.metric_name })}>
                  <th scope="row">{labels.get(metricKey({ ...d, name: d.metric_name })) ?? d.metric_name}</th>
                  <td>{d.event_name ?? "—"} <span className="muted">{d.event_type ?? ""}</span></td>
                  <td>{d.metric_type ?? "—"}</td>
                  <td className="num">{formatNumber(d.aggregate)}</td>
                  <td>{passRule(d)}</td>
                  <td className="num">{d.datapoints ? d.datapoints.passed.length : "—"}</td>
                  <td className="num">{d.datapoints ? d.datapoints.failed.length : "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section className="xp-section" aria-labelledby="results-title">
        <h2 id="results-title">Results</h2>
        {events.error && <p className="error" role="alert">Inputs and outputs unavailable: {events.error.message}</p>}
        <table className="grid" aria-label="Results per datapoint">
          <thead>
            <tr>
              <th scope="col">Datapoint</th>
              <th scope="col">Result</th>
              <th scope="col">Inputs</th>
              <th scope="col">Outputs</th>
              {metrics.map((d) => {
                const key = metricKey({ ...d, name: d.metric_name });
                return <th key={key} scope="col" className="num">{labels.get(key) ?? d.metric_name}</th>;
              })}
              <th scope="col">Session</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.sessionId} className={row.passed ? undefined : "row-error"}>
                <th scope="row"><code>{row.id}</code></th>
                <td><PassBadge passed={row.passed} /></td>
                <td><IoText value={row.inputs} loading={events.isPending} /></td>
                <td><IoText value={row.outputs} loading={events.isPending} /></td>
                {metrics.map((d) => {
                  const key = metricKey({ ...d, name: d.metric_name });
                  const value = row.values.get(key);
                  return (
                    <td key={key} className={`num ${value?.passed === false ? "fail" : ""}`}>
                      {formatMetricValue(value)}{value?.passed === false && <span className="xp-sr"> (failed)</span>}
                    </td>
                  );
                })}
                <td><Link to={`/projects/${projectId}/sessions/${encodeURIComponent(row.sessionId)}`} aria-label={`Open session of ${row.id}`}>Open session</Link></td>
              </tr>
            ))}
            {rows.length === 0 && (
              <tr><td colSpan={5 + metrics.length} className="muted">No datapoints yet: this run's events have not arrived.</td></tr>
            )}
          </tbody>
        </table>
      </section>
    </div>
  );
}

function IoText({ value, loading }: { value: unknown; loading: boolean }) {
  const text = valueText(value);
  if (!text) return <span className="muted">{loading ? "…" : "—"}</span>;
  return <pre className="io">{text}</pre>;
}

/** Pick another run of the project and compare this one with it (the older is the base). */
function CompareWith({ runId }: { runId: string }) {
  const { projectId, dp } = useProjectContext();
  const navigate = useNavigate();
  const runs = useRuns(dp, 1, 100);
  const others = (runs.data?.evaluations ?? []).filter((r) => r.id !== runId);
  const [other, setOther] = useState("");
  const self = runs.data?.evaluations.find((r) => r.id === runId);
  if (others.length === 0 || !self) return null;
  function go() {
    const picked = others.find((r) => r.id === other);
    if (!picked || !self) return;
    const { base, next } = orderRuns(self, picked);
    navigate(`/projects/${projectId}/experiments/compare?base=${encodeURIComponent(base.id)}&new=${encodeURIComponent(next.id)}`);
  }
  return (
    <div className="range">
      <Label.Root htmlFor="compare-with">Compare with</Label.Root>
      <select id="compare-with" value={other} onChange={(e) => setOther(e.target.value)}>
        <option value="">Choose a run…</option>
        {others.map((r) => <option key={r.id} value={r.id}>{runName(r)}</option>)}
      </select>
      <button type="button" disabled={!other} onClick={go}>Compare</button>
    </div>
  );
}
