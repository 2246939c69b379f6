import { Label } from "radix-ui";
import { type ReactNode, useState } from "react";
import { FilterBuilder } from "../../components/FilterBuilder";
import {
  type AlertForm, type ConditionJson, type Duration, type FieldErrors, type Op, type ThresholdForm, type Unit,
  BASIC_FIELDS, errorField, errorSlot, FORM_SLOTS, OPS, thresholdProblem, toCondition, typedThresholds, UNITS,
} from "./logic";

/** What a saved form sends: the rule's name, description and condition. */
export interface AlertSubmit {
  name: string;
  description: string;
  condition: ConditionJson;
}

const slotId = (slot: string) => `alert-${slot.replace(/\./g, "-")}`;

function FieldError({ slot, errors }: { slot: string; errors: FieldErrors }) {
  const message = errors[slot];
  if (!message) return null;
  return <p id={`${slotId(slot)}-error`} className="error field-error" role="alert">{message}</p>;
}

function invalid(slot: string, errors: FieldErrors) {
  return errors[slot] ? { "aria-invalid": true, "aria-describedby": `${slotId(slot)}-error` } : {};
}

function Row({ children, top }: { children: ReactNode; top?: boolean }) {
  return <div className={top ? "ev-row top" : "ev-row"}>{children}</div>;
}

function DurationInput({ id, label, value, onChange, slot, errors, placeholder }: {
  id: string; label: string; value: Duration; onChange: (d: Duration) => void; slot: string; errors: FieldErrors; placeholder?: string;
}) {
  return (
    <div className="field">
      <Label.Root htmlFor={id}>{label}</Label.Root>
      <span className="duration">
        <input id={id} className="narrow" inputMode="decimal" value={value.amount} placeholder={placeholder}
          onChange={(e) => onChange({ ...value, amount: e.target.value })} {...invalid(slot, errors)} />
        <select aria-label={`${label} unit`} value={value.unit} onChange={(e) => onChange({ ...value, unit: e.target.value as Unit })}>
          {UNITS.map(([u, name]) => <option key={u} value={u}>{name}</option>)}
        </select>
      </span>
      <FieldError slot={slot} errors={errors} />
    </div>
  );
}

function ThresholdInput({ stage, value, onChange, errors, advice }: {
  stage: "warning" | "critical"; value: ThresholdForm; onChange: (t: ThresholdForm) => void; errors: FieldErrors; advice: string | null;
}) {
  const slot = `condition.${stage}`;
  const label = stage === "warning" ? "Warning" : "Critical";
  return (
    <fieldset className={`threshold threshold-${stage}`}>
      <legend>
        <label className="check">
          <input type="checkbox" checked={value.enabled} onChange={(e) => onChange({ ...value, enabled: e.target.checked })} />
          {label} threshold
        </label>
      </legend>
      <span className="duration">
        <select aria-label={`${label} operator`} value={value.op} disabled={!value.enabled} onChange={(e) => onChange({ ...value, op: e.target.value as Op })}>
          {OPS.map((o) => <option key={o} value={o}>{o}</option>)}
        </select>
        <input aria-label={`${label} value`} className="narrow" inputMode="decimal" value={value.value} disabled={!value.enabled}
          onChange={(e) => onChange({ ...value, value: e.target.value })} {...invalid(slot, errors)} />
      </span>
      <FieldError slot={slot} errors={errors} />
      {advice && !errors[slot] && <p className="field-advice" role="status">{advice}</p>}
    </fieldset>
  );
}

/** The alert rule's form (create and edit): checked here as the control plane checks it,
 * and the server's 400 shown next to the field it names (``details.field``). The filters
 * are the FilterBuilder's, whose own form cannot nest in a form: so this is a region with
 * a save button, not a <form>. */
export function AlertFormView({ initial, title, submitLabel, pending, serverError, onSubmit, onCancel }: {
  initial: AlertForm;
  title: string;
  submitLabel: string;
  pending: boolean;
  serverError: Error | null;
  onSubmit: (value: AlertSubmit) => void;
  onCancel?: () => void;
}) {
  const [form, setForm] = useState<AlertForm>(initial);
  const [errors, setErrors] = useState<FieldErrors>({});
  // The form as last submitted: the server's answer is about it, and is hidden once the
  // form changes.
  const [submitted, setSubmitted] = useState<AlertForm | null>(null);
  const set = <K extends keyof AlertForm>(key: K, value: AlertForm[K]) => setForm((f) => ({ ...f, [key]: value }));

  // The server's answer: next to the field it names, else above the buttons.
  const serverField = serverError ? errorField(serverError) : null;
  const serverSlot = serverField ? errorSlot(serverField) : null;
  const shown: FieldErrors = { ...errors };
  let general: string | null = null;
  if (serverError && submitted === form && Object.keys(errors).length === 0) {
    if (serverSlot && FORM_SLOTS.has(serverSlot)) shown[serverSlot] = serverError.message;
    else general = serverError.message;
  }

  function save() {
    const built = toCondition(form);
    if ("errors" in built) {
      setErrors(built.errors);
      return;
    }
    setErrors({});
    setSubmitted(form);
    onSubmit({ name: form.name.trim(), description: form.description, condition: built.condition });
  }

  // The control plane's rules across the thresholds, as advice while typing (it decides).
  const typed = typedThresholds(form);
  const problem = typed.warning || typed.critical || (!form.warning.enabled && !form.critical.enabled)
    ? thresholdProblem(form.type, typed.warning, typed.critical) : null;
  const advice = (stage: string) => (problem && problem[0] === `condition.${stage}` ? problem[1] : null);

  const scored = form.fieldKind === "metrics" || form.fieldKind === "feedback";
  return (
    <section className="ev-card alert-form" role="form" aria-label={title}
      onKeyDown={(e) => { if (e.key === "Enter" && e.target instanceof HTMLInputElement && e.target.closest(".filters") === null) { e.preventDefault(); save(); } }}>
      <h2>{title}</h2>
      <Row>
        <div className="field">
          <Label.Root htmlFor="alert-name">Name</Label.Root>
          <input id="alert-name" value={form.name} onChange={(e) => set("name", e.target.value)} placeholder="model errors" {...invalid("name", shown)} />
          <FieldError slot="name" errors={shown} />
        </div>
        <div className="field grow">
          <Label.Root htmlFor="alert-description">Description</Label.Root>
          <input id="alert-description" className="wide" value={form.description} onChange={(e) => set("description", e.target.value)} />
          <FieldError slot="description" errors={shown} />
        </div>
      </Row>
      <Row>
        <div className="field">
          <Label.Root htmlFor="alert-type">Alert type</Label.Root>
          <select id="alert-type" value={form.type} onChange={(e) => set("type", e.target.value as AlertForm["type"])} {...invalid("condition.type", shown)}>
            <option value="aggregate">Aggregate: the value over a window</option>
            <option value="drift">Drift: change against the period before</option>
          </select>
          <FieldError slot="condition.type" errors={shown} />
        </div>
        <div className="field">
          <Label.Root htmlFor="alert-field">Measure</Label.Root>
          <select id="alert-field" value={form.fieldKind} onChange={(e) => set("fieldKind", e.target.value)} {...invalid("condition.field", shown)}>
            {BASIC_FIELDS.map(([key, label]) => <option key={key} value={key}>{label}</option>)}
            <option value="metrics">An evaluator's metric (metrics.&lt;name&gt;)</option>
            <option value="feedback">Feedback (feedback.&lt;name&gt;)</option>
          </select>
          {!scored && <FieldError slot="condition.field" errors={shown} />}
        </div>
        {scored && (
          <>
            <div className="field">
              <Label.Root htmlFor="alert-score">{form.fieldKind === "metrics" ? "Metric name" : "Feedback key"}</Label.Root>
              <input id="alert-score" value={form.scoreName} placeholder={form.fieldKind === "metrics" ? "grounded" : "rating"}
                onChange={(e) => set("scoreName", e.target.value)} {...invalid("condition.field", shown)} />
              <FieldError slot="condition.field" errors={shown} />
            </div>
            <div className="field">
              <Label.Root htmlFor="alert-aggregation">Aggregation</Label.Root>
              <select id="alert-aggregation" value={form.aggregation} onChange={(e) => set("aggregation", e.target.value as AlertForm["aggregation"])}
                {...invalid("condition.aggregation", shown)}>
                <option value="mean">Mean</option>
                <option value="share_true">Share of true (booleans)</option>
              </select>
              <FieldError slot="condition.aggregation" errors={shown} />
            </div>
          </>
        )}
      </Row>
      <div className="field">
        <span className="label-like" id="alert-filters-label">Events measured</span>
        <div aria-labelledby="alert-filters-label" role="group">
          <FilterBuilder conditions={form.filters} onChange={(next) => set("filters", next)} emptyText="All events of the project." />
        </div>
        <FieldError slot="condition.filters" errors={shown} />
      </div>
      <Row>
        <DurationInput id="alert-window" label="Window" value={form.window} onChange={(d) => set("window", d)} slot="condition.window_s" errors={shown} />
        {form.type === "drift" && (
          <>
            <DurationInput id="alert-comparison" label="Compared with the previous" value={form.comparison} placeholder="same"
              onChange={(d) => set("comparison", d)} slot="condition.comparison_window_s" errors={shown} />
            <div className="field">
              <Label.Root htmlFor="alert-direction">Direction</Label.Root>
              <select id="alert-direction" value={form.direction} onChange={(e) => set("direction", e.target.value as AlertForm["direction"])}>
                <option value="either">Either way</option>
                <option value="up">Up</option>
                <option value="down">Down</option>
              </select>
              <FieldError slot="condition.direction" errors={shown} />
            </div>
          </>
        )}
        <DurationInput id="alert-min-duration" label="Minimum duration" value={form.minDuration}
          onChange={(d) => set("minDuration", d)} slot="condition.min_duration_s" errors={shown} />
      </Row>
      {form.type === "drift" && (
        <p className="hint">A drift threshold is a relative change in the chosen direction: 0.5 fires at a 50 % change.</p>
      )}
      <Row top>
        <ThresholdInput stage="warning" value={form.warning} onChange={(t) => set("warning", t)} errors={shown} advice={advice("warning")} />
        <ThresholdInput stage="critical" value={form.critical} onChange={(t) => set("critical", t)} errors={shown} advice={advice("critical")} />
      </Row>
      {general && <p className="ev-error" role="alert">{general}</p>}
      <div className="ev-actions">
        <button type="button" className="primary" disabled={pending} onClick={save}>{pending ? "Saving…" : submitLabel}</button>
        {onCancel && <button type="button" onClick={onCancel}>Cancel</button>}
      </div>
    </section>
  );
}
