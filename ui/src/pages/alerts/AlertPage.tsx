import { Label } from "radix-ui";
import { useState } from "react";
import { Link, useParams, useSearchParams } from "react-router-dom";
import { CartesianGrid, Line, LineChart, ReferenceLine, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { type Alert, type AlertPreview, useAlert, useAlertActivity, useAlertChanges, useAlertPreview } from "../../api/alerts";
import { useProjectContext } from "../ProjectLayout";
import "../evaluators/evaluators.css";
import { ago, formatWhen } from "../settings/format";
import "../settings/settings.css";
import { AlertActions, StateBadge } from "./AlertActions";
import { AlertFormView } from "./AlertForm";
import "./alerts.css";
import {
  chartDomain, describeActivity, describeField, describeThresholds, formatTick, formatValue, fromAlert, niceTicks, PREVIEW_RANGES,
  previewRange, rangeBounds,
} from "./logic";

/** One alert: its state and actions, the chart of its measured value against the
 * thresholds over 1 h / 24 h / 7 d (the data plane computes it: ``.../preview``), its
 * recent activity (firings and deliveries), and the form to edit it. */
export function AlertPage() {
  const { projectId } = useProjectContext();
  const { alertId = "" } = useParams();
  const alert = useAlert(projectId, alertId);
  const [editing, setEditing] = useState(false);
  const list = `/projects/${projectId}/alerts`;

  if (alert.error) {
    return (
      <div className="page">
        <p className="crumbs"><Link to={list}>Alerts</Link></p>
        <p className="ev-error" role="alert">Could not load the alert: {alert.error.message}</p>
      </div>
    );
  }
  if (!alert.data) return <div className="page"><p role="status" className="muted">Loading the alert…</p></div>;
  const a = alert.data;
  return (
    <div className="page alert-page">
      <p className="crumbs"><Link to={list}>Alerts</Link> / {a.name}</p>
      <div className="page-head">
        <h1>{a.name}</h1>
        <StateBadge alert={a} />
        <span className="muted">
          {a.state_changed_at ? <>changed <span title={formatWhen(a.state_changed_at)}>{ago(a.state_changed_at)}</span></> : "not reported by the data plane yet"}
        </span>
        <span className="spacer" />
        <button type="button" aria-expanded={editing} onClick={() => setEditing((v) => !v)}>{editing ? "Close the editor" : "Edit"}</button>
      </div>
      {a.description && <p className="ev-lead">{a.description}</p>}
      <p className="alert-summary"><strong>{describeField(a.condition)}</strong> · {describeThresholds(a.condition)}</p>
      <AlertActions projectId={projectId} alert={a} afterDelete={list} />
      {editing && <EditAlert projectId={projectId} alert={a} onDone={() => setEditing(false)} />}
      <PreviewCard projectId={projectId} alert={a} />
      <ActivityCard projectId={projectId} alertId={a.id} />
    </div>
  );
}

function EditAlert({ projectId, alert, onDone }: { projectId: string; alert: Alert; onDone: () => void }) {
  const { update } = useAlertChanges(projectId);
  return (
    <AlertFormView initial={fromAlert(alert)} title={`Edit ${alert.name}`} submitLabel="Save alert" pending={update.isPending}
      serverError={update.error} onCancel={onDone}
      onSubmit={(value) => update.mutate({ alertId: alert.id, body: value }, { onSuccess: onDone })} />
  );
}

function PreviewCard({ projectId, alert }: { projectId: string; alert: Alert }) {
  const [params, setParams] = useSearchParams();
  const range = previewRange(params.get("range"));
  const [bounds] = useState(() => new Map<string, { from: number; to: number }>());
  // One query per range while the page is open (not a new one each render).
  if (!bounds.has(range.key)) bounds.set(range.key, rangeBounds(range.seconds));
  const { from, to } = bounds.get(range.key)!;
  const preview = useAlertPreview(projectId, alert.id, from, to);
  return (
    <section className="ev-card" aria-labelledby="alert-preview-title">
      <div className="page-head">
        <h2 id="alert-preview-title">Preview</h2>
        <div className="range">
          <Label.Root htmlFor="alert-range">Time range</Label.Root>
          <select id="alert-range" value={range.key}
            onChange={(e) => setParams((p) => { const next = new URLSearchParams(p); next.set("range", e.target.value); return next; })}>
            {PREVIEW_RANGES.map((r) => <option key={r.key} value={r.key}>{r.label}</option>)}
          </select>
        </div>
      </div>
      {preview.error ? <p className="alert-empty" role="status">Preview unavailable: {preview.error.message}</p>
        : !preview.data ? <p className="muted" role="status">Loading the preview…</p>
          : <PreviewChart preview={preview.data} rangeSeconds={range.seconds} />}
    </section>
  );
}

const STAGE_COLORS = { warning: "#8a5a00", critical: "#b3261e" };

function PreviewChart({ preview, rangeSeconds }: { preview: AlertPreview; rangeSeconds: number }) {
  const series = preview.series ?? [];
  if (!series.some((p) => p.value !== null)) {
    return <p className="alert-empty" role="status">No data in this range: no events matched the rule's filters.</p>;
  }
  const [lo, hi] = chartDomain(series, [preview.warning, preview.critical]);
  const y = niceTicks(lo, hi);
  return (
    <figure className="alert-chart" aria-label={`The measured value and the thresholds, ${series.length} points`}>
      <ResponsiveContainer width="100%" height={240}>
        <LineChart data={series} accessibilityLayer={false} margin={{ top: 8, right: 16, bottom: 0, left: 0 }}>
          <CartesianGrid stroke="#eceef1" vertical={false} />
          <XAxis dataKey="t" type="number" domain={[preview.from, preview.to]} tickFormatter={(t: number) => formatTick(t, rangeSeconds)} fontSize={12} />
          <YAxis domain={y.domain} ticks={y.ticks} tickFormatter={(v: number) => formatValue(v)} fontSize={12} width={64} />
          <Tooltip labelFormatter={(t) => new Date(Number(t) * 1000).toLocaleString()} formatter={(v) => [formatValue(Number(v)), "value"]} />
          <Line type="monotone" dataKey="value" stroke="#0b57a4" dot={false} isAnimationActive={false} connectNulls={false} />
          {preview.warning && <ReferenceLine y={preview.warning.value} stroke={STAGE_COLORS.warning} strokeDasharray="6 4"
            label={{ value: `warning ${preview.warning.op} ${preview.warning.value}`, position: "insideTopRight", fill: STAGE_COLORS.warning, fontSize: 12 }} />}
          {preview.critical && <ReferenceLine y={preview.critical.value} stroke={STAGE_COLORS.critical} strokeDasharray="6 4"
            label={{ value: `critical ${preview.critical.op} ${preview.critical.value}`, position: "insideTopRight", fill: STAGE_COLORS.critical, fontSize: 12 }} />}
        </LineChart>
      </ResponsiveContainer>
      <figcaption className="muted">Each point is the rule's value over the {Math.round(preview.window_s / 60)}-minute window ending then.</figcaption>
    </figure>
  );
}

function ActivityCard({ projectId, alertId }: { projectId: string; alertId: string }) {
  const activity = useAlertActivity(projectId, alertId);
  const rows = activity.data ?? [];
  return (
    <section className="ev-card" aria-labelledby="alert-activity-title">
      <h2 id="alert-activity-title">Recent activity</h2>
      {activity.error ? <p className="alert-empty" role="status">Activity unavailable: {activity.error.message}</p>
        : (
          <table className="grid" aria-label="Alert activity" aria-busy={activity.isPending}>
            <thead><tr><th scope="col">When</th><th scope="col">What</th></tr></thead>
            <tbody>
              {rows.map((a) => (
                <tr key={a.id} className={a.kind === "delivery" && a.outcome === "dead_lettered" ? "row-error" : undefined}>
                  <td className="nowrap" title={formatWhen(a.at)}>{ago(a.at)}</td>
                  <td>{describeActivity(a)}</td>
                </tr>
              ))}
              {rows.length === 0 && (
                <tr><td colSpan={2} className="muted empty-cell">{activity.isPending ? "Loading…" : "Nothing yet: firings and deliveries show here."}</td></tr>
              )}
            </tbody>
          </table>
        )}
    </section>
  );
}
