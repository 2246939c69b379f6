import { createColumnHelper } from "@tanstack/react-table";
import { Label } from "radix-ui";
import { type FormEvent, useMemo, useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { type Evaluator, useCreateEvaluator, useEvaluators } from "../../api/evaluators";
import { CodeEditor } from "../../components/CodeEditor";
import { DataTable } from "../../components/DataTable";
import { useProjectContext } from "../ProjectLayout";
import "./evaluators.css";
import {
  JUDGE_TEMPLATE, onlineState, parseParams, PYTHON_TEMPLATE, RETURN_TYPES, type ReturnType, TYPE_LABELS,
} from "./logic";

const column = createColumnHelper<Evaluator>();

/** The project's evaluators (Python metrics, LLM judges, human rubrics): whether each
 * runs online, at what sampling, which version is live; and a form to define one. */
export function EvaluatorsPage() {
  const { projectId } = useProjectContext();
  const evaluators = useEvaluators(projectId);
  const [creating, setCreating] = useState(false);

  const columns = useMemo(() => [
    column.accessor("name", { header: "Name", cell: (c) => <Link to={`/projects/${projectId}/evaluators/${c.row.original.id}`}>{c.getValue()}</Link> }),
    column.accessor("type", { header: "Type", cell: (c) => <span className="badge">{TYPE_LABELS[c.getValue()] ?? c.getValue()}</span> }),
    column.display({
      id: "online", header: "Online",
      cell: (c) => {
        const s = onlineState(c.row.original);
        return s.online ? <span className="online on">On · {s.samplingPct} % sampled</span>
          : <span className="online off" title={s.reason ?? undefined}>Off{s.reason ? ` · ${s.reason}` : ""}</span>;
      },
    }),
    column.accessor("deployed_version", { header: "Live version", cell: (c) => (c.getValue() == null ? <span className="muted">none</span> : `v${c.getValue()}`) }),
    column.display({ id: "versions", header: "Versions", cell: (c) => c.row.original.versions.length }),
    column.accessor("updated_at", { header: "Updated", cell: (c) => (c.getValue() ? new Date(c.getValue()!).toLocaleString() : "—") }),
  ], [projectId]);

  const list = evaluators.data ?? [];
  return (
    <div className="page">
      <div className="page-head">
        <h1>Evaluators</h1>
        <button type="button" className={creating ? undefined : "primary"} aria-expanded={creating} onClick={() => setCreating((v) => !v)}>
          {creating ? "Cancel" : "New evaluator"}
        </button>
      </div>
      <p className="ev-lead">Python metrics run in the data plane's sandbox; LLM judges ask a model with their prompt. An evaluator enabled online scores a sample of new events with its live version.</p>
      {creating && <CreateEvaluator projectId={projectId} />}
      {evaluators.error && <p className="ev-error" role="alert">Could not load the evaluators: {evaluators.error.message}</p>}
      {!evaluators.isPending && !evaluators.error && list.length === 0 && !creating ? (
        <div className="ev-empty">
          <h2>No evaluators yet</h2>
          <p>Define one — a Python metric or an LLM judge — and test it on an event before enabling it online.</p>
          <button type="button" className="primary" onClick={() => setCreating(true)}>Create an evaluator</button>
        </div>
      ) : (
        <DataTable label="Evaluators" data={list} columns={columns} rowId={(e) => e.id} loading={evaluators.isPending} empty="No evaluators yet." />
      )}
    </div>
  );
}

function CreateEvaluator({ projectId }: { projectId: string }) {
  const navigate = useNavigate();
  const create = useCreateEvaluator(projectId);
  const [name, setName] = useState("");
  const [type, setType] = useState<"python" | "llm">("python");
  const [returnType, setReturnType] = useState<ReturnType>("float");
  const [code, setCode] = useState(PYTHON_TEMPLATE);
  const [criteria, setCriteria] = useState(JUDGE_TEMPLATE);
  const [model, setModel] = useState("");
  const [description, setDescription] = useState("");
  const [problem, setProblem] = useState<string | null>(null);

  function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    if (!name.trim()) return setProblem("Give the evaluator a name.");
    const params = parseParams(model.trim() ? JSON.stringify({ model: model.trim() }) : "");
    if ("error" in params) return setProblem(params.error);
    create.mutate({
      name: name.trim(), type, description, return_type: returnType, sampling_pct: 100, filters: {},
      ...(type === "python" ? { code } : { criteria, model_params: params.value }),
      message: "created in the web UI",
    }, { onSuccess: (e) => navigate(`/projects/${projectId}/evaluators/${e.id}`) });
  }

  return (
    <form className="ev-card" onSubmit={submit} aria-labelledby="new-evaluator">
      <h2 id="new-evaluator">New evaluator</h2>
      <div className="ev-row">
        <div className="field">
          <Label.Root htmlFor="ev-name">Name</Label.Root>
          <input id="ev-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="answer_length" required />
        </div>
        <div className="field">
          <Label.Root htmlFor="ev-type">Type</Label.Root>
          <select id="ev-type" value={type} onChange={(e) => setType(e.target.value as "python" | "llm")}>
            <option value="python">Python metric</option>
            <option value="llm">LLM judge</option>
          </select>
        </div>
        <div className="field">
          <Label.Root htmlFor="ev-return">Returns</Label.Root>
          <select id="ev-return" value={returnType} onChange={(e) => setReturnType(e.target.value as ReturnType)}>
            {RETURN_TYPES.map((r) => <option key={r} value={r}>{r}</option>)}
          </select>
        </div>
        {type === "llm" && (
          <div className="field">
            <Label.Root htmlFor="ev-model">Judge model</Label.Root>
            <input id="ev-model" value={model} onChange={(e) => setModel(e.target.value)} placeholder="default model" />
          </div>
        )}
      </div>
      <div className="field">
        <Label.Root htmlFor="ev-description">Description</Label.Root>
        <input id="ev-description" className="wide" value={description} onChange={(e) => setDescription(e.target.value)} />
      </div>
      {type === "python"
        ? <CodeEditor language="python" label="Metric code" showLabel value={code} onChange={setCode} />
        : <CodeEditor language="text" label="Judge prompt" showLabel value={criteria} onChange={setCriteria} />}
      {(problem || create.error) && <p className="ev-error" role="alert">{problem ?? create.error?.message}</p>}
      <div className="ev-actions">
        <button type="submit" className="primary" disabled={create.isPending}>{create.isPending ? "Creating…" : "Create evaluator"}</button>
      </div>
    </form>
  );
}
