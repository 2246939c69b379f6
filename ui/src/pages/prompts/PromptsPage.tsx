import { createColumnHelper } from "@tanstack/react-table";
import { Label } from "radix-ui";
import { type FormEvent, useMemo, useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { ENVIRONMENTS, type PromptTemplate, useCreatePrompt, usePrompts } from "../../api/prompts";
import { CodeEditor } from "../../components/CodeEditor";
import { DataTable } from "../../components/DataTable";
import { parseParams } from "../evaluators/logic";
import "../evaluators/evaluators.css";
import { useProjectContext } from "../ProjectLayout";

const column = createColumnHelper<PromptTemplate>();

export const PROMPT_TEMPLATE = `You are a helpful assistant for {{product}}.
Answer the user's question briefly.

Question: {{question}}
`;

/** The project's prompt templates: versions, which version each environment serves, and
 * a form to create one. */
export function PromptsPage() {
  const { projectId } = useProjectContext();
  const prompts = usePrompts(projectId);
  const [creating, setCreating] = useState(false);

  const columns = useMemo(() => [
    column.accessor("name", { header: "Name", cell: (c) => <Link to={`/projects/${projectId}/prompts/${c.row.original.id}`}>{c.getValue()}</Link> }),
    column.display({ id: "latest", header: "Latest", cell: (c) => `v${Math.max(0, ...c.row.original.versions.map((v) => v.version))}` }),
    column.display({
      id: "envs", header: "Environments",
      cell: (c) => {
        const envs = ENVIRONMENTS.filter((e) => c.row.original.environments[e] !== undefined);
        return envs.length === 0 ? <span className="muted">none</span>
          : envs.map((e) => <span key={e} className="env-badge">{e} v{c.row.original.environments[e]}</span>);
      },
    }),
    column.accessor("tags", { header: "Tags", cell: (c) => c.getValue().join(", ") || <span className="muted">—</span> }),
    column.accessor("updated_at", { header: "Updated", cell: (c) => new Date(c.getValue()).toLocaleString() }),
  ], [projectId]);

  const list = prompts.data ?? [];
  return (
    <div className="page">
      <div className="page-head">
        <h1>Prompts</h1>
        <button type="button" className={creating ? undefined : "primary"} aria-expanded={creating} onClick={() => setCreating((v) => !v)}>
          {creating ? "Cancel" : "New prompt"}
        </button>
      </div>
      <p className="ev-lead">Prompt templates with immutable versions. Each environment — dev, staging, prod — serves one version; promote a version to move it.</p>
      {creating && <CreatePrompt projectId={projectId} />}
      {prompts.error && <p className="ev-error" role="alert">Could not load the prompts: {prompts.error.message}</p>}
      {!prompts.isPending && !prompts.error && list.length === 0 && !creating ? (
        <div className="ev-empty">
          <h2>No prompts yet</h2>
          <p>Create a prompt template, then add versions and promote them to dev, staging and prod.</p>
          <button type="button" className="primary" onClick={() => setCreating(true)}>Create a prompt</button>
        </div>
      ) : (
        <DataTable label="Prompts" data={list} columns={columns} rowId={(p) => p.id} loading={prompts.isPending} empty="No prompts yet." />
      )}
    </div>
  );
}

function CreatePrompt({ projectId }: { projectId: string }) {
  const navigate = useNavigate();
  const create = useCreatePrompt(projectId);
  const [name, setName] = useState("");
  const [body, setBody] = useState(PROMPT_TEMPLATE);
  const [params, setParams] = useState('{\n  "model": "gpt-4o-mini",\n  "temperature": 0.2\n}');
  const [tags, setTags] = useState("");
  const [problem, setProblem] = useState<string | null>(null);

  function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    if (!name.trim()) return setProblem("Give the prompt a name.");
    if (!body.trim()) return setProblem("The prompt needs a body.");
    const parsed = parseParams(params);
    if ("error" in parsed) return setProblem(parsed.error);
    create.mutate({
      name: name.trim(), body, model_params: parsed.value, message: "created in the web UI",
      tags: tags.split(",").map((t) => t.trim()).filter(Boolean),
    }, { onSuccess: (p) => navigate(`/projects/${projectId}/prompts/${p.id}`) });
  }

  return (
    <form className="ev-card" onSubmit={submit} aria-labelledby="new-prompt">
      <h2 id="new-prompt">New prompt</h2>
      <div className="ev-row">
        <div className="field">
          <Label.Root htmlFor="prompt-name">Name</Label.Root>
          <input id="prompt-name" value={name} onChange={(e) => setName(e.target.value)} placeholder="support-answer" required />
        </div>
        <div className="field" style={{ flex: 1 }}>
          <Label.Root htmlFor="prompt-tags">Tags (comma separated)</Label.Root>
          <input id="prompt-tags" value={tags} onChange={(e) => setTags(e.target.value)} />
        </div>
      </div>
      <CodeEditor language="text" label="Prompt body" showLabel value={body} onChange={setBody} minHeight="160px" />
      <CodeEditor language="json" label="Model parameters (JSON)" showLabel value={params} onChange={setParams} minHeight="70px" />
      {(problem || create.error) && <p className="ev-error" role="alert">{problem ?? create.error?.message}</p>}
      <div className="ev-actions">
        <button type="submit" className="primary" disabled={create.isPending}>{create.isPending ? "Creating…" : "Create prompt"}</button>
      </div>
    </form>
  );
}
