import { Label } from "radix-ui";
import { type FormEvent, useId, useState } from "react";
import {
  type Condition, describe, EVENT_TYPES, isNested, type NestedColumn, NUMBER_OPERATORS, type NumberField,
  type NumberOperator, type Operator, OPERATORS, VALUELESS, validPath,
} from "../lib/filters";

type Kind = NestedColumn | "event_type" | "event_name" | "number" | "error" | "error_text";

const KINDS: { kind: Kind; label: string }[] = [
  { kind: "metadata", label: "Metadata" },
  { kind: "metrics", label: "Metric" },
  { kind: "feedback", label: "Feedback" },
  { kind: "user_properties", label: "User property" },
  { kind: "event_name", label: "Name" },
  { kind: "event_type", label: "Event type" },
  { kind: "number", label: "Latency, cost or tokens" },
  { kind: "error", label: "Errors" },
  { kind: "error_text", label: "Error message" },
];

/** What the path input is called for each nested column (its label, and an example). */
const PATH_LABELS: Record<NestedColumn, [string, string]> = {
  metadata: ["Metadata path", "user_id"],
  metrics: ["Metric name", "accuracy"],
  feedback: ["Feedback key", "rating"],
  user_properties: ["User property", "plan"],
};

const NUMBER_FIELD_LABELS: { field: NumberField; label: string }[] = [
  { field: "duration", label: "Latency (ms)" },
  { field: "cost", label: "Cost ($)" },
  { field: "total_tokens", label: "Total tokens" },
  { field: "prompt_tokens", label: "Prompt tokens" },
  { field: "completion_tokens", label: "Completion tokens" },
];

/** The conditions as removable chips, and a form that adds one (the export filter language):
 * metadata, metrics, feedback and user properties by path (``suggestions``: paths the
 * project's events carry, per column), name, event type, latency/cost/tokens compared as
 * numbers, and errors (present, absent, or containing a text). */
export function FilterBuilder({ conditions, onChange, suggestions, emptyText }: {
  conditions: Condition[];
  onChange: (next: Condition[]) => void;
  suggestions?: Readonly<Record<string, readonly string[]>>;
  emptyText?: string;
}) {
  const id = useId();
  const [kind, setKind] = useState<Kind>("metadata");
  const [path, setPath] = useState("");
  const [operator, setOperator] = useState<Operator>("is");
  const [value, setValue] = useState("");
  const [eventType, setEventType] = useState<string>(EVENT_TYPES[0]);
  const [errors, setErrors] = useState<"with" | "without">("with");
  const [numberField, setNumberField] = useState<NumberField>("duration");
  const [numberOperator, setNumberOperator] = useState<NumberOperator>("greater than");
  const [errorOperator, setErrorOperator] = useState<"contains" | "not contains">("contains");
  const [problem, setProblem] = useState<string | null>(null);

  function add(event: FormEvent) {
    event.preventDefault();
    let c: Condition;
    if (isNested(kind)) {
      if (!validPath(path)) {
        setProblem(`A ${PATH_LABELS[kind][0].toLowerCase()} is one or more keys separated by dots, e.g. ${PATH_LABELS[kind][1]} or app.tenant.`);
        return;
      }
      if (!VALUELESS.has(operator) && value === "") {
        setProblem("Enter a value (or choose exists / not exists).");
        return;
      }
      c = { kind, path, operator, value };
    } else {
      switch (kind) {
        case "event_name":
          if (!VALUELESS.has(operator) && value === "") {
            setProblem("Enter a value (or choose exists / not exists).");
            return;
          }
          c = { kind, operator, value };
          break;
        case "event_type":
          c = { kind, value: eventType };
          break;
        case "number": {
          const n = Number(value);
          if (value.trim() === "" || !Number.isFinite(n)) {
            setProblem("Enter a number.");
            return;
          }
          c = { kind, field: numberField, operator: numberOperator, value: n };
          break;
        }
        case "error":
          c = { kind, present: errors === "with" };
          break;
        case "error_text":
          if (value === "") {
            setProblem("Enter the text to look for in error messages.");
            return;
          }
          c = { kind, operator: errorOperator, value };
          break;
      }
    }
    setProblem(null);
    onChange([...conditions, c]);
    setValue("");
  }

  const listId = `${id}-paths`;
  const known = isNested(kind) ? suggestions?.[kind] ?? [] : [];
  const needsOperator = isNested(kind) || kind === "event_name";
  return (
    <section className="filters" aria-label="Filters">
      <ul className="chips" aria-label="Active filters">
        {conditions.length === 0 && <li className="muted">{emptyText ?? "No filters."}</li>}
        {conditions.map((c, i) => (
          <li key={`${i}-${describe(c)}`} className="chip">
            <span>{describe(c)}</span>
            <button type="button" aria-label={`Remove filter: ${describe(c)}`}
              onClick={() => onChange(conditions.filter((_, j) => j !== i))}>×</button>
          </li>
        ))}
      </ul>
      <form className="filter-form" onSubmit={add}>
        <Label.Root htmlFor={`${id}-kind`}>Filter on</Label.Root>
        <select id={`${id}-kind`} value={kind} onChange={(e) => { setKind(e.target.value as Kind); setProblem(null); }}>
          {KINDS.map((k) => <option key={k.kind} value={k.kind}>{k.label}</option>)}
        </select>
        {isNested(kind) && (
          <>
            <Label.Root htmlFor={`${id}-path`}>{PATH_LABELS[kind][0]}</Label.Root>
            <input id={`${id}-path`} placeholder={PATH_LABELS[kind][1]} value={path} list={known.length > 0 ? listId : undefined}
              onChange={(e) => setPath(e.target.value)} />
            {known.length > 0 && (
              <datalist id={listId}>{known.map((p) => <option key={p} value={p} />)}</datalist>
            )}
          </>
        )}
        {needsOperator && (
          <>
            <Label.Root htmlFor={`${id}-op`}>Operator</Label.Root>
            <select id={`${id}-op`} value={operator} onChange={(e) => setOperator(e.target.value as Operator)}>
              {OPERATORS.map((o) => <option key={o} value={o}>{o}</option>)}
            </select>
            {!VALUELESS.has(operator) && (
              <>
                <Label.Root htmlFor={`${id}-value`}>Value</Label.Root>
                <input id={`${id}-value`} value={value} onChange={(e) => setValue(e.target.value)} />
              </>
            )}
          </>
        )}
        {kind === "event_type" && (
          <>
            <Label.Root htmlFor={`${id}-type`}>Type</Label.Root>
            <select id={`${id}-type`} value={eventType} onChange={(e) => setEventType(e.target.value)}>
              {EVENT_TYPES.map((t) => <option key={t} value={t}>{t}</option>)}
            </select>
          </>
        )}
        {kind === "number" && (
          <>
            <Label.Root htmlFor={`${id}-field`}>Field</Label.Root>
            <select id={`${id}-field`} value={numberField} onChange={(e) => setNumberField(e.target.value as NumberField)}>
              {NUMBER_FIELD_LABELS.map((f) => <option key={f.field} value={f.field}>{f.label}</option>)}
            </select>
            <Label.Root htmlFor={`${id}-nop`}>Operator</Label.Root>
            <select id={`${id}-nop`} value={numberOperator} onChange={(e) => setNumberOperator(e.target.value as NumberOperator)}>
              {NUMBER_OPERATORS.map((o) => <option key={o} value={o}>{o}</option>)}
            </select>
            <Label.Root htmlFor={`${id}-number`}>Value</Label.Root>
            <input id={`${id}-number`} type="number" step="any" inputMode="decimal" value={value}
              onChange={(e) => setValue(e.target.value)} className="number-input" />
          </>
        )}
        {kind === "error" && (
          <>
            <Label.Root htmlFor={`${id}-errors`}>Events</Label.Root>
            <select id={`${id}-errors`} value={errors} onChange={(e) => setErrors(e.target.value as "with" | "without")}>
              <option value="with">with an error</option>
              <option value="without">without an error</option>
            </select>
          </>
        )}
        {kind === "error_text" && (
          <>
            <Label.Root htmlFor={`${id}-eop`}>Operator</Label.Root>
            <select id={`${id}-eop`} value={errorOperator} onChange={(e) => setErrorOperator(e.target.value as "contains" | "not contains")}>
              <option value="contains">contains</option>
              <option value="not contains">does not contain</option>
            </select>
            <Label.Root htmlFor={`${id}-etext`}>Value</Label.Root>
            <input id={`${id}-etext`} value={value} onChange={(e) => setValue(e.target.value)} />
          </>
        )}
        <button type="submit">Add filter</button>
        {problem && <p className="error" role="alert">{problem}</p>}
      </form>
    </section>
  );
}
