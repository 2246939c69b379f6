import { Label } from "radix-ui";
import { type FormEvent, useId, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { type Environment, ENVIRONMENTS, type PromptTemplate, type PromptVersion, usePrompt, usePromptChanges } from "../../api/prompts";
import { CodeEditor } from "../../components/CodeEditor";
import { parseParams } from "../evaluators/logic";
import "../evaluators/evaluators.css";
import { useProjectContext } from "../ProjectLayout";
import { diffStats, lineDiff, stableJson } from "./diff";

/** One prompt template: which version each environment serves (and promoting one), its
 * versions, a diff between two of them, and a new version written in the editor. */
export function PromptPage() {
  const { projectId } = useProjectContext();
  const { templateId = "" } = useParams();
  const prompt = usePrompt(projectId, templateId);
  const [pair, setPair] = useState<[number, number] | null>(null);

  const back = <p className="crumbs"><Link to={`/projects/${projectId}/prompts`}>← Prompts</Link></p>;
  if (prompt.isPending) return <div className="page">{back}<p role="status">Loading the prompt…</p></div>;
  if (prompt.error) {
    return (
      <div className="page">{back}<h1>Prompt</h1>
        <p className="ev-error" role="alert">Could not open this prompt: {prompt.error.message}</p>
      </div>
    );
  }
  const t = prompt.data;
  const versions = [...t.versions].sort((a, b) => a.version - b.version);
  const latest = versions[versions.length - 1];
  const previous = versions[versions.length - 2] ?? latest;
  const [from, to] = pair ?? [previous?.version ?? 1, latest?.version ?? 1];
  return (
    <div className="page">
      {back}
      <div className="page-head">
        <h1>{t.name}</h1>
        {t.tags.map((tag) => <span key={tag} className="badge">{tag}</span>)}
        <span className="muted">{versions.length} version{versions.length === 1 ? "" : "s"}</span>
      </div>
      <div className="ev-grid">
        <div className="ev-col">
          <DiffCard versions={versions} from={from} to={to} onChange={setPair} />
          {latest && <NewVersion key={latest.version} template={t} latest={latest} projectId={projectId}
            onSaved={(v) => setPair([latest.version, v])} />}
        </div>
        <div className="ev-col">
          <Environments template={t} versions={versions} projectId={projectId} />
          <VersionList template={t} versions={versions} />
        </div>
      </div>
    </div>
  );
}

function Environments({ template, versions, projectId }: { template: PromptTemplate; versions: PromptVersion[]; projectId: string }) {
  const { promote } = usePromptChanges(projectId, template.id);
  const ids = useId();
  const [version, setVersion] = useState(String(versions[versions.length - 1]?.version ?? 1));
  const [environment, setEnvironment] = useState<Environment>("prod");
  const [done, setDone] = useState<string | null>(null);

  function submit(event: FormEvent) {
    event.preventDefault();
    setDone(null);
    const v = Number(version);
    promote.mutate({ environment, version: v }, { onSuccess: () => setDone(`v${v} is now served in ${environment}.`) });
  }

  return (
    <form className="ev-card" onSubmit={submit} aria-labelledby={`${ids}-e`}>
      <h2 id={`${ids}-e`}>Environments</h2>
      <ul className="env-cards" aria-label="Environments">
        {ENVIRONMENTS.map((env) => (
          <li key={env} aria-label={`${env}: ${template.environments[env] !== undefined ? `v${template.environments[env]}` : "no version"}`}>
            <span className="env-name">{env}</span>
            <span className="env-version">{template.environments[env] !== undefined ? `v${template.environments[env]}` : <span className="muted">—</span>}</span>
          </li>
        ))}
      </ul>
      <div className="ev-row">
        <div className="field">
          <Label.Root htmlFor={`${ids}-v`}>Version to promote</Label.Root>
          <select id={`${ids}-v`} value={version} onChange={(e) => setVersion(e.target.value)}>
            {[...versions].reverse().map((v) => <option key={v.version} value={v.version}>v{v.version}</option>)}
          </select>
        </div>
        <div className="field">
          <Label.Root htmlFor={`${ids}-env`}>Environment</Label.Root>
          <select id={`${ids}-env`} value={environment} onChange={(e) => setEnvironment(e.target.value as Environment)}>
            {ENVIRONMENTS.map((env) => <option key={env} value={env}>{env}</option>)}
          </select>
        </div>
        <button type="submit" className="primary" disabled={promote.isPending}>Promote</button>
      </div>
      {promote.error && <p className="ev-error" role="alert">{promote.error.message}</p>}
      {done && <p className="ev-ok" role="status">{done}</p>}
    </form>
  );
}

function VersionList({ template, versions }: { template: PromptTemplate; versions: PromptVersion[] }) {
  const served = (v: number) => ENVIRONMENTS.filter((e) => template.environments[e] === v);
  return (
    <section className="ev-card" aria-labelledby="prompt-versions">
      <h2 id="prompt-versions">Versions</h2>
      <table className="grid" aria-label="Versions">
        <thead><tr><th scope="col">Version</th><th scope="col">Note</th><th scope="col">Served in</th><th scope="col">Created</th></tr></thead>
        <tbody>
          {[...versions].reverse().map((v) => (
            <tr key={v.version}>
              <td>v{v.version}</td>
              <td>{v.message ?? <span className="muted">—</span>}</td>
              <td>{served(v.version).map((e) => <span key={e} className="env-badge">{e}</span>)}</td>
              <td>{new Date(v.created_at).toLocaleString()}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function DiffCard({ versions, from, to, onChange }: { versions: PromptVersion[]; from: number; to: number; onChange: (pair: [number, number]) => void }) {
  const ids = useId();
  const a = versions.find((v) => v.version === from);
  const b = versions.find((v) => v.version === to);
  const body = a && b ? lineDiff(a.body, b.body) : [];
  const params = a && b ? lineDiff(stableJson(a.model_params), stableJson(b.model_params)) : [];
  const stats = diffStats(body);
  const paramStats = diffStats(params);
  const options = [...versions].reverse().map((v) => <option key={v.version} value={v.version}>v{v.version}</option>);
  return (
    <section className="ev-card" aria-labelledby={`${ids}-d`}>
      <h2 id={`${ids}-d`}>Compare versions</h2>
      <div className="ev-row">
        <div className="field">
          <Label.Root htmlFor={`${ids}-from`}>From</Label.Root>
          <select id={`${ids}-from`} value={from} onChange={(e) => onChange([Number(e.target.value), to])}>{options}</select>
        </div>
        <div className="field">
          <Label.Root htmlFor={`${ids}-to`}>To</Label.Root>
          <select id={`${ids}-to`} value={to} onChange={(e) => onChange([from, Number(e.target.value)])}>{options}</select>
        </div>
        <span className="muted" aria-live="polite">
          {from === to ? "The same version." : `${stats.added} line${stats.added === 1 ? "" : "s"} added, ${stats.removed} removed`}
        </span>
      </div>
      <DiffTable label={`Prompt changes from v${from} to v${to}`} rows={body} />
      {paramStats.added + paramStats.removed > 0 && (
        <>
          <h3>Model parameters</h3>
          <DiffTable label={`Model parameter changes from v${from} to v${to}`} rows={params} />
        </>
      )}
    </section>
  );
}

function DiffTable({ label, rows }: { label: string; rows: ReturnType<typeof lineDiff> }) {
  const mark = { same: " ", added: "+", removed: "−" } as const;
  const spoken = { same: "", added: "Added: ", removed: "Removed: " } as const;
  return (
    <table className="diff" aria-label={label}>
      <thead className="visually-hidden"><tr><th scope="col">Old line</th><th scope="col">New line</th><th scope="col">Change</th><th scope="col">Text</th></tr></thead>
      <tbody>
        {rows.map((r, i) => (
          <tr key={i} className={`diff-${r.kind}`} data-change={r.kind}>
            <td className="ln">{r.oldNo ?? ""}</td>
            <td className="ln">{r.newNo ?? ""}</td>
            <td className="sign" aria-hidden="true">{mark[r.kind]}</td>
            <td><span className="visually-hidden">{spoken[r.kind]}</span>{r.text || " "}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function NewVersion({ template, latest, projectId, onSaved }: { template: PromptTemplate; latest: PromptVersion; projectId: string; onSaved: (version: number) => void }) {
  const { addVersion } = usePromptChanges(projectId, template.id);
  const ids = useId();
  const [body, setBody] = useState(latest.body);
  const [params, setParams] = useState(JSON.stringify(latest.model_params, null, 2));
  const [message, setMessage] = useState("");
  const [problem, setProblem] = useState<string | null>(null);

  function submit(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    if (!body.trim()) return setProblem("The prompt needs a body.");
    const parsed = parseParams(params);
    if ("error" in parsed) return setProblem(parsed.error);
    addVersion.mutate({ body, model_params: parsed.value, message: message.trim() || null }, { onSuccess: (v) => onSaved(v.version) });
  }

  return (
    <form className="ev-card" onSubmit={submit} aria-labelledby={`${ids}-n`}>
      <h2 id={`${ids}-n`}>New version <span className="muted">· from v{latest.version}</span></h2>
      <CodeEditor language="text" label="New version body" showLabel value={body} onChange={setBody} minHeight="160px" />
      <CodeEditor language="json" label="New version model parameters (JSON)" showLabel value={params} onChange={setParams} minHeight="60px" />
      <div className="field">
        <Label.Root htmlFor={`${ids}-m`}>Version note</Label.Root>
        <input id={`${ids}-m`} value={message} onChange={(e) => setMessage(e.target.value)} placeholder="what changed" />
      </div>
      {(problem || addVersion.error) && <p className="ev-error" role="alert">{problem ?? addVersion.error?.message}</p>}
      <div className="ev-actions">
        <button type="submit" className="primary" disabled={addVersion.isPending}>{addVersion.isPending ? "Saving…" : `Save as v${latest.version + 1}`}</button>
      </div>
    </form>
  );
}
