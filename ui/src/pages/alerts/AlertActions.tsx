import { useState } from "react";
import { useNavigate } from "react-router-dom";
import { type Alert, type AlertAction, useAlertChanges } from "../../api/alerts";
import { ConfirmButton } from "../settings/parts";
import { stateBadge } from "./logic";

/** The state badge ("Triggered · critical"). */
export function StateBadge({ alert }: { alert: Alert }) {
  const badge = stateBadge(alert);
  return <span className={`badge alert-state alert-${badge.tone}`}>{badge.label}</span>;
}

const LABELS: Record<AlertAction, string> = { pause: "Pause", resume: "Resume", mute: "Mute", unmute: "Unmute", resolve: "Resolve" };

/** Pause/resume, mute/unmute, resolve and delete of one alert; the control plane's 409
 * (the alert changed meanwhile: already paused, not triggered, ...) is shown as it says. */
export function AlertActions({ projectId, alert, afterDelete }: { projectId: string; alert: Alert; afterDelete?: string }) {
  const { act, remove } = useAlertChanges(projectId);
  const navigate = useNavigate();
  const [message, setMessage] = useState<string | null>(null);
  const actions: AlertAction[] = [alert.paused ? "resume" : "pause", alert.muted ? "unmute" : "mute"];
  if (alert.evaluation_state === "triggered") actions.push("resolve");

  function run(action: AlertAction) {
    setMessage(null);
    act.mutate({ alertId: alert.id, action }, { onError: (e) => setMessage(`Could not ${action} “${alert.name}”: ${e.message}`) });
  }

  return (
    <div className="alert-actions">
      {actions.map((a) => (
        <button key={a} type="button" disabled={act.isPending} aria-label={`${LABELS[a]} ${alert.name}`} onClick={() => run(a)}>{LABELS[a]}</button>
      ))}
      <ConfirmButton label="Delete" title={`Delete the alert ${alert.name}?`}
        description="Its rule stops being evaluated and its activity is no longer shown. This cannot be undone."
        confirm="Delete alert" disabled={remove.isPending}
        onConfirm={() => {
          // Chained on the promise, not passed to mutate(): those callbacks are dropped
          // when this component unmounts first (its page re-rendering meanwhile).
          remove.mutateAsync(alert.id).then(
            () => { if (afterDelete) navigate(afterDelete); },
            (e: Error) => setMessage(`Could not delete “${alert.name}”: ${e.message}`),
          );
        }} />
      {message && <p className="error alert-action-error" role="alert">{message}</p>}
    </div>
  );
}
