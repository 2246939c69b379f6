import { createColumnHelper } from "@tanstack/react-table";
import { useMemo, useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { type Alert, useAlertChanges, useAlerts } from "../../api/alerts";
import { DataTable } from "../../components/DataTable";
import { useProjectContext } from "../ProjectLayout";
import "../evaluators/evaluators.css";
import { ago, formatWhen } from "../settings/format";
import "../settings/settings.css";
import { AlertActions, StateBadge } from "./AlertActions";
import { AlertFormView } from "./AlertForm";
import "./alerts.css";
import { describeField, describeThresholds, emptyForm } from "./logic";

const column = createColumnHelper<Alert>();

/** The project's alert rules: what each measures, its state (with the stage while
 * triggered) and when that last changed; a form to define one; the state actions. */
export function AlertsPage() {
  const { projectId } = useProjectContext();
  const alerts = useAlerts(projectId);
  const [creating, setCreating] = useState(false);

  const columns = useMemo(() => [
    column.accessor("name", { header: "Name", cell: (c) => <Link to={`/projects/${projectId}/alerts/${c.row.original.id}`}>{c.getValue()}</Link> }),
    column.display({ id: "field", header: "Measures", cell: (c) => describeField(c.row.original.condition) }),
    column.display({ id: "thresholds", header: "Thresholds", cell: (c) => <span className="nowrap">{describeThresholds(c.row.original.condition)}</span> }),
    column.display({ id: "state", header: "State", cell: (c) => <StateBadge alert={c.row.original} /> }),
    column.accessor("state_changed_at", {
      header: "Last change",
      cell: (c) => (c.getValue() ? <span title={formatWhen(c.getValue())}>{ago(c.getValue())}</span> : <span className="muted">—</span>),
    }),
    column.display({ id: "actions", header: () => <span className="sr-only">Actions</span>, cell: (c) => <AlertActions projectId={projectId} alert={c.row.original} /> }),
  ], [projectId]);

  const list = alerts.data ?? [];
  return (
    <div className="page alerts-page">
      <div className="page-head">
        <h1>Alerts</h1>
        <button type="button" className={creating ? undefined : "primary"} aria-expanded={creating} onClick={() => setCreating((v) => !v)}>
          {creating ? "Cancel" : "New alert"}
        </button>
      </div>
      <p className="ev-lead">An alert measures the project's events over a window — error rate, latency, cost, tokens, an evaluator's metric or feedback — and fires a warning, then critical, when a threshold is crossed; a resolution when it is back inside. The data plane evaluates it every minute; notification channels are in Settings.</p>
      {creating && <CreateAlert projectId={projectId} />}
      {alerts.error && <p className="ev-error" role="alert">Could not load the alerts: {alerts.error.message}</p>}
      {!alerts.isPending && !alerts.error && list.length === 0 && !creating ? (
        <div className="ev-empty">
          <h2>No alerts yet</h2>
          <p>Hear about an error spike or a quality drop before your users do.</p>
          <button type="button" className="primary" onClick={() => setCreating(true)}>Create an alert</button>
        </div>
      ) : (
        <DataTable label="Alerts" data={list} columns={columns} rowId={(a) => a.id} loading={alerts.isPending} empty="No alerts yet." />
      )}
    </div>
  );
}

function CreateAlert({ projectId }: { projectId: string }) {
  const navigate = useNavigate();
  const { create } = useAlertChanges(projectId);
  return (
    <AlertFormView initial={emptyForm()} title="New alert" submitLabel="Create alert" pending={create.isPending} serverError={create.error}
      onSubmit={(value) => create.mutate({ ...value, channels: [] }, { onSuccess: (a) => navigate(`/projects/${projectId}/alerts/${a.id}`) })} />
  );
}
