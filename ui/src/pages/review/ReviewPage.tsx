import { createColumnHelper } from "@tanstack/react-table";
import { type FormEvent, useId, useMemo, useState } from "react";
import { Link } from "react-router-dom";
import { type Criterion, type Queue, useCreateQueue, useFillQueue, useQueues } from "../../api/review";
import { DataTable } from "../../components/DataTable";
import { FilterBuilder } from "../../components/FilterBuilder";
import { type Condition, describe, fromFilters, toFilters } from "../../lib/filters";
import { useProjectContext } from "../ProjectLayout";
import { ProgressBar } from "./ProgressBar";
import { criteriaFromDrafts, criteriaOf, type CriterionDraft, describeCriteria, progressOf } from "./scoring";
import "./review.css";

const column = createColumnHelper<Queue>();

/** The project's annotation queues: criteria, rules, progress; create one; fill one from
 * its rules now. */
export function ReviewPage() {
  const { projectId, dp } = useProjectContext();
  const queues = useQueues(dp);
  const fill = useFillQueue(dp);
  const [creating, setCreating] = useState(false);
  const [message, setMessage] = useState<string | null>(null);

  const columns = useMemo(() => [
    column.accessor("name", {
      header: "Queue",
      cell: (c) => (
        <div>
          <Link to={`/projects/${projectId}/review/${c.row.original.id}`}>{c.getValue()}</Link>
          {c.row.original.description && <div className="muted small">{c.row.original.description}</div>}
        </div>
      ),
    }),
    column.accessor("criteria", {
      header: "Scoring criteria",
      cell: (c) => c.getValue().length > 0 ? describeCriteria(c.getValue())
        : <span className="muted">{describeCriteria(criteriaOf([]))} (default)</span>,
    }),
    column.display({
      id: "rules",
      header: "Fills from",
      cell: (c) => {
        const rules = fromFilters((c.row.original.filters.filterArray ?? []) as Parameters<typeof fromFilters>[0]);
        if (rules.length === 0) return <span className="muted">Events added by hand</span>;
        return <span title={rules.map(describe).join(" and ")}>{rules.map(describe).join(" and ")}{c.row.original.enabled ? "" : " (paused)"}</span>;
      },
    }),
    column.display({
      id: "progress",
      header: "Progress",
      cell: (c) => {
        const p = progressOf(c.row.original.item_counts);
        return <ProgressBar done={p.done} total={p.total} label={`Progress of ${c.row.original.name}`} />;
      },
    }),
    column.display({
      id: "actions",
      header: "Actions",
      cell: (c) => {
        const q = c.row.original;
        const hasRules = ((q.filters.filterArray ?? []) as unknown[]).length > 0;
        return (
          <div className="row-actions">
            <Link className="button-link" to={`/projects/${projectId}/review/${q.id}`} aria-label={`Review ${q.name}`}>Review</Link>
            {hasRules && (
              <button type="button" disabled={fill.isPending} aria-label={`Fill now: ${q.name}`}
                onClick={() => fill.mutate(q.id, {
                  onSuccess: (r) => setMessage(`${q.name}: ${r.added} event${r.added === 1 ? "" : "s"} added from its rules.`),
                  onError: (e) => setMessage(`${q.name}: ${e.message}`),
                })}>Fill now</button>
            )}
          </div>
        );
      },
    }),
  ], [projectId, fill]);

  return (
    <div className="page review-page">
      <div className="page-head">
        <h1>Review</h1>
        <span className="muted">Annotation queues: people score events, the scores become the events' feedback.</span>
        <span className="spacer" />
        {!creating && <button type="button" className="primary" onClick={() => setCreating(true)}>New queue</button>}
      </div>
      {message && <p role="status" className="notice">{message}</p>}
      {creating && <CreateQueue onDone={(name) => { setCreating(false); if (name) setMessage(`Queue ${name} created.`); }} />}
      {queues.error && <p className="error" role="alert">{queues.error.message}</p>}
      <DataTable label="Annotation queues" data={queues.data ?? []} columns={columns} rowId={(q) => q.id}
        loading={queues.isPending} empty="No annotation queues yet — create one with New queue." />
    </div>
  );
}

const KINDS: ReadonlyArray<readonly [Criterion["kind"], string]> = [
  ["rating", "Rating 1–5"],
  ["thumbs", "Thumbs up / down"],
  ["category", "Label from a list"],
  ["text", "Free text"],
];

function CreateQueue({ onDone }: { onDone: (created: string | null) => void }) {
  const { dp } = useProjectContext();
  const create = useCreateQueue(dp);
  const id = useId();
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [drafts, setDrafts] = useState<CriterionDraft[]>([{ label: "Rating", kind: "rating", options: "" }]);
  const [rules, setRules] = useState<Condition[]>([]);
  const [problem, setProblem] = useState<string | null>(null);

  function change(i: number, patch: Partial<CriterionDraft>) {
    setDrafts((ds) => ds.map((d, j) => (j === i ? { ...d, ...patch } : d)));
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    if (!name.trim()) { setProblem("Give the queue a name."); return; }
    const criteria = criteriaFromDrafts(drafts);
    if (typeof criteria === "string") { setProblem(criteria); return; }
    setProblem(null);
    create.mutate({
      name: name.trim(),
      ...(description.trim() ? { description: description.trim() } : {}),
      criteria,
      ...(rules.length > 0 ? { filters: { filterArray: toFilters(rules) } } : {}),
    }, { onSuccess: (q) => onDone(q.name) });
  }

  return (
    <section className="panel" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>New annotation queue</h2>
      <form id={`${id}-form`} onSubmit={submit} className="queue-form">
        <div className="field">
          <label htmlFor={`${id}-name`}>Name</label>
          <input id={`${id}-name`} value={name} onChange={(e) => setName(e.target.value)} maxLength={200} />
        </div>
        <div className="field">
          <label htmlFor={`${id}-description`}>Description (optional)</label>
          <input id={`${id}-description`} value={description} onChange={(e) => setDescription(e.target.value)} />
        </div>
        <fieldset className="criteria-editor">
          <legend>Scoring criteria</legend>
          <ul aria-label="Criteria">
            {drafts.map((d, i) => (
              <li key={i} className="criterion-row">
                <label htmlFor={`${id}-c${i}-label`}>Criterion {i + 1} name</label>
                <input id={`${id}-c${i}-label`} value={d.label} onChange={(e) => change(i, { label: e.target.value })} />
                <label htmlFor={`${id}-c${i}-kind`}>Criterion {i + 1} kind</label>
                <select id={`${id}-c${i}-kind`} value={d.kind} onChange={(e) => change(i, { kind: e.target.value as Criterion["kind"] })}>
                  {KINDS.map(([k, label]) => <option key={k} value={k}>{label}</option>)}
                </select>
                {d.kind === "category" && (
                  <>
                    <label htmlFor={`${id}-c${i}-options`}>Criterion {i + 1} labels</label>
                    <input id={`${id}-c${i}-options`} placeholder="good, bad, unsure" value={d.options}
                      onChange={(e) => change(i, { options: e.target.value })} />
                  </>
                )}
                <button type="button" onClick={() => setDrafts((ds) => ds.filter((_, j) => j !== i))}
                  disabled={drafts.length === 1} aria-label={`Remove criterion ${i + 1}`}>Remove</button>
              </li>
            ))}
          </ul>
          <button type="button" onClick={() => setDrafts((ds) => [...ds, { label: "", kind: "text", options: "" }])}
            disabled={drafts.length >= 20}>Add criterion</button>
        </fieldset>
      </form>
      <div className="rules">
        <h3>Fill automatically (optional)</h3>
        <p className="muted">New events matching every rule are added as they arrive; Fill now adds the recent ones.</p>
        <FilterBuilder conditions={rules} onChange={setRules}
          emptyText="No rules: the queue holds the events you add to it." />
      </div>
      {(problem || create.error) && <p className="error" role="alert">{problem ?? create.error?.message}</p>}
      <div className="score-actions">
        <button type="submit" form={`${id}-form`} className="primary" disabled={create.isPending}>Create queue</button>
        <button type="button" onClick={() => onDone(null)}>Cancel</button>
      </div>
    </section>
  );
}
