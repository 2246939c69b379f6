import { useMemo, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { type RunObject, useComparedEvents, useComparison } from "../../api/experiments";
import { useProjectContext } from "../ProjectLayout";
import {
  direction, formatDelta, formatNumber, formatPercent, metricSummaries, type PairedDatapoint, pairDatapoints,
  valueText, wordDiff,
} from "./logic";
import { DiffSide, DirectionBadge, formatCreated, QueryError, RunStatus, runName } from "./parts";

/** Two runs side by side (``?base=<old>&new=<new>``): per-metric aggregate deltas and,
 * per common datapoint, the metric changes and a word-level diff of the outputs; a filter
 * to the regressions only. Higher values count as improvements. */
export function ComparePage() {
  const { projectId, dp } = useProjectContext();
  const [params, setParams] = useSearchParams();
  const baseId = params.get("base") ?? "";
  const newId = params.get("new") ?? "";
  // Local state mirrors the URL (?only=regressions), which the router updates in a
  // transition: the checkbox must follow the click at once.
  const [onlyRegressions, setOnlyRegressions] = useState(params.get("only") === "regressions");
  const comparison = useComparison(dp, newId, baseId);
  const events = useComparedEvents(dp, newId, baseId);

  const summaries = useMemo(() => (comparison.data ? metricSummaries(comparison.data) : []), [comparison.data]);
  const paired = useMemo(
    () => (comparison.data ? pairDatapoints(comparison.data, events.data?.events ?? []) : []),
    [comparison.data, events.data],
  );
  const shown = onlyRegressions ? paired.filter((p) => p.regressed) : paired;
  const regressions = paired.filter((p) => p.regressed).length;

  function setOnly(on: boolean) {
    setOnlyRegressions(on);
    const p = new URLSearchParams(params);
    if (on) p.set("only", "regressions");
    else p.delete("only");
    setParams(p, { replace: true });
  }

  const crumbs = <p className="crumbs"><Link to={`/projects/${projectId}/experiments`}>Experiments</Link> / Compare</p>;
  if (!baseId || !newId) {
    return (
      <div className="page">
        {crumbs}
        <h1>Compare runs</h1>
        <div className="xp-empty">
          <h2>Choose two runs</h2>
          <p>Select two runs on the <Link to={`/projects/${projectId}/experiments`}>experiments page</Link> and press Compare.</p>
        </div>
      </div>
    );
  }
  if (comparison.error) {
    return <div className="page">{crumbs}<h1>Compare runs</h1><QueryError error={comparison.error} what="the comparison" projectId={projectId} /></div>;
  }
  if (!comparison.data) {
    return <div className="page">{crumbs}<h1>Compare runs</h1><p role="status">Comparing the runs…</p></div>;
  }
  const { old_run: base, new_run: next } = comparison.data;

  return (
    <div className="page">
      {crumbs}
      <h1>Compare runs</h1>
      <div className="runs-vs">
        <RunCard run={base} role="Base" projectId={projectId} />
        <span className="vs" aria-hidden="true">→</span>
        <RunCard run={next} role="New" projectId={projectId} />
      </div>

      <section className="xp-section" aria-labelledby="metrics-title">
        <h2 id="metrics-title">Metrics</h2>
        <p className="xp-lead">Averages over each run's datapoints; a higher value counts as an improvement.</p>
        {summaries.length === 0 ? <p className="muted">Neither run has metric values.</p> : (
          <table className="grid" aria-label="Metric deltas">
            <thead>
              <tr>
                <th scope="col">Metric</th>
                <th scope="col" className="num">Base</th>
                <th scope="col" className="num">New</th>
                <th scope="col" className="num">Delta</th>
                <th scope="col">Change</th>
                <th scope="col" className="num">Datapoints improved</th>
                <th scope="col" className="num">Regressed</th>
                <th scope="col" className="num">Unchanged</th>
              </tr>
            </thead>
            <tbody>
              {summaries.map(({ key, label, metric, direction: dir }) => (
                <tr key={key}>
                  <th scope="row">{label}</th>
                  <td className="num">{formatNumber(metric.old_aggregate)}</td>
                  <td className="num">{formatNumber(metric.new_aggregate)}</td>
                  <td className={`num delta-${dir}`}>
                    {formatDelta(metric.difference)}
                    {metric.percentage_change != null && <span className="muted"> ({formatPercent(metric.percentage_change)})</span>}
                  </td>
                  <td><DirectionBadge direction={dir} /></td>
                  <td className="num">{metric.improved_count}</td>
                  <td className="num">{metric.degraded_count}</td>
                  <td className="num">{metric.same_count}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section className="xp-section" aria-labelledby="datapoints-title">
        <h2 id="datapoints-title">Datapoints</h2>
        <div className="xp-toolbar">
          <label>
            <input type="checkbox" checked={onlyRegressions} onChange={(e) => setOnly(e.target.checked)} /> Regressions only
          </label>
          <span className="hint" role="status">
            {onlyRegressions ? `${shown.length} of ${paired.length} datapoints regressed` : `${paired.length} datapoints in both runs · ${regressions} regressed`}
          </span>
        </div>
        {events.error && <p className="error" role="alert">Outputs unavailable: {events.error.message}</p>}
        {paired.length === 0 ? <p className="muted">The runs have no datapoint in common.</p>
          : shown.length === 0 ? <p className="muted">No datapoint regressed.</p> : (
            <ul className="dp-list" aria-label="Datapoint comparisons">
              {shown.map((p) => <DatapointCard key={p.datapointId} pair={p} projectId={projectId} loading={events.isPending} />)}
            </ul>
          )}
      </section>
    </div>
  );
}

function RunCard({ run, role, projectId }: { run: RunObject; role: string; projectId: string }) {
  return (
    <div className={`run-card ${role === "New" ? "new" : ""}`}>
      <span className="role">{role}</span>
      <Link to={`/projects/${projectId}/experiments/${encodeURIComponent(run.id)}`}><strong>{runName(run)}</strong></Link>
      <span className="muted">Created {formatCreated(run.created_at)} · <RunStatus status={run.status} /></span>
      <span className="muted">Dataset: {run.dataset_name ?? run.dataset_id ?? "—"}</span>
    </div>
  );
}

function DatapointCard({ pair, projectId, loading }: { pair: PairedDatapoint; projectId: string; loading: boolean }) {
  const parts = useMemo(() => wordDiff(pair.baseOutput, pair.newOutput), [pair.baseOutput, pair.newOutput]);
  const inputs = valueText(pair.inputs);
  const headId = `dp-${pair.datapointId.replace(/\s/g, "_")}`;
  const verdict = pair.regressed ? direction(-1) : pair.improved ? direction(1) : direction(0);
  const session = (id: string | null, label: string) => id
    ? <Link to={`/projects/${projectId}/sessions/${encodeURIComponent(id)}`}>{label}</Link> : null;
  return (
    <li className={`dp-card ${pair.regressed ? "is-regressed" : pair.improved ? "is-improved" : ""}`} aria-labelledby={headId}>
      <div className="dp-head">
        <h3 id={headId}>Datapoint <code>{pair.datapointId}</code></h3>
        <DirectionBadge direction={verdict} />
        {!pair.outputChanged && !loading && <span className="muted">same output</span>}
        <span className="spacer" />
        {session(pair.baseSession, "Base session")}
        {session(pair.newSession, "New session")}
      </div>
      {inputs && <p className="inputs-line">Inputs: <code>{inputs}</code></p>}
      {pair.changes.length > 0 && (
        <table className="dp-changes" aria-label={`Metric changes of ${pair.datapointId}`}>
          <thead><tr><th scope="col">Metric</th><th scope="col">Base</th><th scope="col">New</th><th scope="col">Delta</th><th scope="col">Change</th></tr></thead>
          <tbody>
            {pair.changes.map((c) => (
              <tr key={c.key}>
                <th scope="row">{c.label}</th>
                <td>{formatNumber(c.before)}</td>
                <td>{formatNumber(c.after)}</td>
                <td className={`delta-${c.direction}`}>{formatDelta(c.delta)}</td>
                <td><DirectionBadge direction={c.direction} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {loading ? <p role="status" className="muted">Loading outputs…</p> : (
        <div className="diff-pair" role="group" aria-label={`Output diff of ${pair.datapointId}`}>
          <DiffSide parts={parts} side="base" label="Base output" />
          <DiffSide parts={parts} side="new" label="New output" />
        </div>
      )}
    </li>
  );
}
