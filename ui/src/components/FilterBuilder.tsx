import { Label } from "radix-ui";
import { type FormEvent, useId, useState } from "react";
import {
  type Condition, describe, EVENT_TYPES, type Operator, OPERATORS, VALUELESS, validPath,
} from "../lib/filters";

type Kind = "metadata" | "event_type" | "event_name" | "error" | "root";

const KINDS: { kind: Kind; label: string }[] = [
  { kind: "metadata", label: "Metadata" },
  { kind: "event_name", label: "Name" },
  { kind: "event_type", label: "Event type" },
  { kind: "error", label: "Errors" },
];

/** The conditions as removable chips, and a form that adds one (the export filter language). */
export function FilterBuilder({ conditions, onChange }: { conditions: Condition[]; onChange: (next: Condition[]) => void }) {
  const id = useId();
  const [kind, setKind] = useState<Kind>("metadata");
  const [path, setPath] = useState("");
  const [operator, setOperator] = useState<Operator>("is");
  const [value, setValue] = useState("");
  const [eventType, setEventType] = useState<string>(EVENT_TYPES[0]);
  const [errors, setErrors] = useState<"with" | "without">("with");
  const [problem, setProblem] = useState<string | null>(null);

  function add(event: FormEvent) {
    event.preventDefault();
    let c: Condition;
    switch (kind) {
      case "metadata":
        if (!validPath(path)) {
          setProblem("A metadata path is one or more keys separated by dots, e.g. user_id or app.tenant.");
          return;
        }
        c = { kind, path, operator, value };
        break;
      case "event_name":
        c = { kind, operator, value };
        break;
      case "event_type":
        c = { kind, value: eventType };
        break;
      case "error":
        c = { kind, present: errors === "with" };
        break;
      case "root":
        c = { kind };
        break;
    }
    if (!VALUELESS.has(operator) && (kind === "metadata" || kind === "event_name") && value === "") {
      setProblem("Enter a value (or choose exists / not exists).");
      return;
    }
    setProblem(null);
    onChange([...conditions, c]);
    setValue("");
  }

  const needsOperator = kind === "metadata" || kind === "event_name";
  return (
    <section className="filters" aria-label="Filters">
      <ul className="chips" aria-label="Active filters">
        {conditions.length === 0 && <li className="muted">No filters: every session in the time range. Add one to list matching events.</li>}
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
        <select id={`${id}-kind`} value={kind} onChange={(e) => setKind(e.target.value as Kind)}>
          {KINDS.map((k) => <option key={k.kind} value={k.kind}>{k.label}</option>)}
        </select>
        {kind === "metadata" && (
          <>
            <Label.Root htmlFor={`${id}-path`}>Metadata path</Label.Root>
            <input id={`${id}-path`} placeholder="user_id" value={path} onChange={(e) => setPath(e.target.value)} />
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
        {kind === "error" && (
          <>
            <Label.Root htmlFor={`${id}-errors`}>Events</Label.Root>
            <select id={`${id}-errors`} value={errors} onChange={(e) => setErrors(e.target.value as "with" | "without")}>
              <option value="with">with an error</option>
              <option value="without">without an error</option>
            </select>
          </>
        )}
        <button type="submit">Add filter</button>
        {problem && <p className="error" role="alert">{problem}</p>}
      </form>
    </section>
  );
}
