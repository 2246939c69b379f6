import { Label } from "radix-ui";
import { type FormEvent, useEffect, useId, useState } from "react";
import { Link, useParams } from "react-router-dom";
import type { ProjectDataPlane } from "../../api/client";
import {
  type DraftResult, type Evaluator, type EvaluatorVersion, useDraftRun, useEvaluator, useEvaluatorChanges, useRecentEvents,
} from "../../api/evaluators";
import { CodeEditor } from "../../components/CodeEditor";
import { FilterBuilder } from "../../components/FilterBuilder";
import { type Condition, fromFilters, toFilters } from "../../lib/filters";
import { formatTime } from "../TracesPage";
import { useProjectContext } from "../ProjectLayout";
import "./evaluators.css";
import {
  deployedVersion, filterArrayOf, formatScore, latestVersion, onlineState, parseBound, parseParams, parseSampling,
  RETURN_TYPES, type ReturnType, TYPE_LABELS,
} from "./logic";

/** One evaluator: its definition in the code editor (Python) or its judge prompt and
 * model (LLM), a test run on one event in the sandbox, online settings (enabled, sampling,
 * filters), and its versions (create, deploy, see which is live). */
export function EvaluatorPage() {
  const { projectId, dp } = useProjectContext();
  const { evaluatorId = "" } = useParams();
  const evaluator = useEvaluator(projectId, evaluatorId);
  const [base, setBase] = useState<number | null>(null);
  const [saved, setSaved] = useState<number | null>(null);

  const back = <p className="crumbs"><Link to={`/projects/${projectId}/evaluators`}>← Evaluators</Link></p>;
  if (evaluator.isPending) return <div className="page">{back}<p role="status">Loading the evaluator…</p></div>;
  if (evaluator.error) {
    return (
      <div className="page">{back}<h1>Evaluator</h1>
        <p className="ev-error" role="alert">Could not open this evaluator: {evaluator.error.message}</p>
      </div>
    );
  }
  const e = evaluator.data;
  const state = onlineState(e);
  const shown = e.versions.find((v) => v.version === base) ?? deployedVersion(e) ?? latestVersion(e);
  return (
    <div className="page">
      {back}
      <div className="page-head">
        <h1>{e.name}</h1>
        <span className="badge">{TYPE_LABELS[e.type] ?? e.type}</span>
        {state.online ? <span className="online on">Online · v{state.version} · {state.samplingPct} % sampled</span>
          : <span className="online off">Not online · {state.reason}</span>}
      </div>
      {e.description && <p className="ev-lead">{e.description}</p>}
      <div className="ev-grid">
        <div className="ev-col">
          {shown && e.type !== "human"
            ? <Workbench key={`${e.id}:${shown.version}`} evaluator={e} version={shown} dp={dp} projectId={projectId}
              saved={saved} onSaved={(v) => { setBase(v); setSaved(v); }} />
            : <section className="ev-card"><h2>Rubric</h2><pre>{shown?.criteria ?? "—"}</pre></section>}
        </div>
        <div className="ev-col">
          {e.type !== "human" && <OnlinePanel key={`${e.id}:${e.deployed_version ?? 0}:${e.enabled}`} evaluator={e} projectId={projectId} />}
          <Versions evaluator={e} projectId={projectId} editing={shown?.version ?? null} onEdit={(v) => { setBase(v); setSaved(null); }} />
        </div>
      </div>
    </div>
  );
}

/** The definition being edited (from one version) and its test on an event. */
function Workbench({ evaluator, version, dp, projectId, saved, onSaved }: {
  evaluator: Evaluator; version: EvaluatorVersion; dp: ProjectDataPlane; projectId: string;
  /** The version this editor just saved (it then edits from it), to say so. */
  saved: number | null; onSaved: (version: number) => void;
}) {
  const { addVersion } = useEvaluatorChanges(projectId, evaluator.id);
  const isPython = evaluator.type === "python";
  const [code, setCode] = useState(version.code ?? "");
  const [criteria, setCriteria] = useState(version.criteria ?? "");
  const [params, setParams] = useState(Object.keys(version.model_params).length ? JSON.stringify(version.model_params, null, 2) : "");
  const [returnType, setReturnType] = useState<ReturnType>((RETURN_TYPES as readonly string[]).includes(version.return_type) ? version.return_type as ReturnType : "float");
  const [passMin, setPassMin] = useState(version.pass_min == null ? "" : String(version.pass_min));
  const [passMax, setPassMax] = useState(version.pass_max == null ? "" : String(version.pass_max));
  const [message, setMessage] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const ids = useId();

  function save(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    const parsed = parseParams(params);
    if ("error" in parsed) return setProblem(parsed.error);
    const min = parseBound(passMin);
    const max = parseBound(passMax);
    if (min === undefined || max === undefined) return setProblem("Pass bounds are numbers (or empty).");
    const live = deployedVersion(evaluator) ?? version;
    addVersion.mutate({
      ...(isPython ? { code } : { criteria }), model_params: parsed.value, return_type: returnType, pass_min: min, pass_max: max,
      // The online settings stay those of the live version until changed there.
      sampling_pct: live.sampling_pct, filters: live.filters, message: message.trim() || null,
    }, { onSuccess: (v) => onSaved(v.version) });
  }

  const parsedParams = parseParams(params);
  return (
    <>
      <form className="ev-card" onSubmit={save} aria-labelledby={`${ids}-def`}>
        <h2 id={`${ids}-def`}>Definition <span className="muted">· editing from v{version.version}</span></h2>
        {isPython ? (
          <>
            <p className="hint" id={`${ids}-code-hint`}>A function that receives the event (inputs, outputs, metadata, feedback…) and returns a score, or {"{"}"score", "explanation"{"}"}.</p>
            <CodeEditor language="python" label="Metric code" value={code} onChange={setCode} describedBy={`${ids}-code-hint`} minHeight="220px" />
          </>
        ) : (
          <>
            <p className="hint" id={`${ids}-prompt-hint`}>The judge's prompt: {"{{inputs}}"}, {"{{outputs}}"}, {"{{metadata}}"} are replaced by the event's.</p>
            <CodeEditor language="text" label="Judge prompt" value={criteria} onChange={setCriteria} describedBy={`${ids}-prompt-hint`} minHeight="180px" />
            <CodeEditor language="json" label="Model and parameters (JSON)" showLabel value={params} onChange={setParams} minHeight="60px" />
          </>
        )}
        <div className="ev-row">
          <div className="field">
            <Label.Root htmlFor={`${ids}-ret`}>Returns</Label.Root>
            <select id={`${ids}-ret`} value={returnType} onChange={(e) => setReturnType(e.target.value as ReturnType)}>
              {RETURN_TYPES.map((r) => <option key={r} value={r}>{r}</option>)}
            </select>
          </div>
          <div className="field">
            <Label.Root htmlFor={`${ids}-min`}>Pass from</Label.Root>
            <input id={`${ids}-min`} className="narrow" inputMode="decimal" value={passMin} onChange={(e) => setPassMin(e.target.value)} />
          </div>
          <div className="field">
            <Label.Root htmlFor={`${ids}-max`}>Pass up to</Label.Root>
            <input id={`${ids}-max`} className="narrow" inputMode="decimal" value={passMax} onChange={(e) => setPassMax(e.target.value)} />
          </div>
          <div className="field" style={{ flex: 1 }}>
            <Label.Root htmlFor={`${ids}-msg`}>Version note</Label.Root>
            <input id={`${ids}-msg`} value={message} onChange={(e) => setMessage(e.target.value)} placeholder="what changed" />
          </div>
        </div>
        {(problem || addVersion.error) && <p className="ev-error" role="alert">{problem ?? addVersion.error?.message}</p>}
        {saved === version.version && version.version !== evaluator.deployed_version && (
          <p className="ev-ok" role="status">Saved as v{saved}. Deploy it from Versions to make it live.</p>
        )}
        <div className="ev-actions">
          <button type="submit" className="primary" disabled={addVersion.isPending}>{addVersion.isPending ? "Saving…" : "Save as new version"}</button>
        </div>
      </form>
      <TestPanel dp={dp} draft={{
        type: isPython ? "python" : "llm", name: evaluator.name, return_type: returnType,
        ...(isPython ? { code } : { criteria, model_params: "value" in parsedParams ? parsedParams.value : {} }),
      }} />
    </>
  );
}

type Draft = { type: "python" | "llm"; name: string; return_type: ReturnType; code?: string; criteria?: string; model_params?: Record<string, unknown> };

/** "Test on this event": the draft as edited, run on one event in the sandbox. */
function TestPanel({ dp, draft }: { dp: ProjectDataPlane; draft: Draft }) {
  const recent = useRecentEvents(dp);
  const run = useDraftRun(dp);
  const [picked, setPicked] = useState("");
  const [pasted, setPasted] = useState("");
  const ids = useId();
  const events = recent.data?.events ?? [];
  useEffect(() => {
    if (!picked && events[0]) setPicked(events[0].event_id);
  }, [picked, events]);
  const eventId = pasted.trim() || picked;

  function test(event: FormEvent) {
    event.preventDefault();
    if (eventId) run.mutate({ ...draft, event_id: eventId });
  }

  return (
    <form className="ev-card" onSubmit={test} aria-labelledby={`${ids}-t`}>
      <h2 id={`${ids}-t`}>Test on this event</h2>
      <p className="hint">Runs the definition above, as edited, on one stored event — in the sandbox, with its limits. Nothing is saved.</p>
      <div className="ev-row">
        <div className="field" style={{ flex: 2 }}>
          <Label.Root htmlFor={`${ids}-recent`}>Recent event</Label.Root>
          <select id={`${ids}-recent`} value={picked} onChange={(e) => setPicked(e.target.value)} disabled={events.length === 0}>
            {events.length === 0 && <option value="">{recent.isPending ? "Loading…" : "No recent events"}</option>}
            {events.map((e) => (
              <option key={e.event_id} value={e.event_id}>
                {`${e.event_name || "(unnamed)"} · ${e.event_type ?? "event"} · ${formatTime(e.start_time)} · ${e.event_id.slice(0, 8)}`}
              </option>
            ))}
          </select>
        </div>
        <div className="field" style={{ flex: 1 }}>
          <Label.Root htmlFor={`${ids}-id`}>Or paste an event id</Label.Root>
          <input id={`${ids}-id`} value={pasted} onChange={(e) => setPasted(e.target.value)} placeholder="event id" />
        </div>
      </div>
      {recent.error && <p className="ev-error" role="alert">Could not list recent events: {recent.error.message}</p>}
      <div className="ev-actions">
        <button type="submit" className="primary" disabled={!eventId || run.isPending}>{run.isPending ? "Running…" : "Run test"}</button>
        {run.isPending && <span role="status" className="muted">Running in the sandbox…</span>}
      </div>
      {run.error && <p className="ev-error" role="alert">The test could not run: {run.error.message}</p>}
      {run.data && <TestResult result={run.data} />}
    </form>
  );
}

function TestResult({ result }: { result: DraftResult }) {
  if (!result.ok) {
    return (
      <section className="result failed" aria-label="Test result" role="status">
        <strong>The evaluator failed on this event</strong>
        <span><code>{result.error?.code}</code> — {result.error?.message}</span>
        {result.error?.details && Object.keys(result.error.details).length > 0 && (
          <dl>{Object.entries(result.error.details).map(([k, v]) => <div key={k} style={{ display: "contents" }}><dt>{k}</dt><dd>{String(v)}</dd></div>)}</dl>
        )}
      </section>
    );
  }
  const extras = Object.entries(result.extras ?? {});
  return (
    <section className="result" aria-label="Test result" role="status">
      <span className="muted">Score</span>
      <span className="score" data-testid="test-score">{formatScore(result.score)}</span>
      <dl>
        {result.explanation && <><dt>Explanation</dt><dd>{result.explanation}</dd></>}
        {extras.map(([k, v]) => <div key={k} style={{ display: "contents" }}><dt>{k}</dt><dd>{String(v)}</dd></div>)}
        <dt>Time</dt><dd>{result.duration_ms.toFixed(1)} ms</dd>
        <dt>Event</dt><dd><code>{result.event_id}</code></dd>
      </dl>
      {result.logs && <><span className="muted">Printed</span><pre>{result.logs}</pre></>}
    </section>
  );
}

/** Enable online with a sampling rate and event filters: saved as a version (if they
 * changed) that is deployed, and the evaluator enabled. */
function OnlinePanel({ evaluator, projectId }: { evaluator: Evaluator; projectId: string }) {
  const { addVersion, deploy, update } = useEvaluatorChanges(projectId, evaluator.id);
  const live = deployedVersion(evaluator) ?? latestVersion(evaluator);
  const [enabled, setEnabled] = useState(onlineState(evaluator).online || (evaluator.enabled && evaluator.deployed_version != null));
  const [sampling, setSampling] = useState(String(live?.sampling_pct ?? 100));
  const [conditions, setConditions] = useState<Condition[]>(fromFilters(filterArrayOf(live?.filters)));
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  const ids = useId();

  async function save(event: FormEvent) {
    event.preventDefault();
    setProblem(null);
    setDone(null);
    if (!live) return setProblem("This evaluator has no version.");
    const pct = parseSampling(sampling);
    if ("error" in pct) return setProblem(pct.error);
    const filters = toFilters(conditions);
    const sameFilters = JSON.stringify(filters) === JSON.stringify(filterArrayOf(live.filters));
    setBusy(true);
    try {
      let target = live.version;
      if (enabled && (pct.value !== live.sampling_pct || !sameFilters)) {
        const made = await addVersion.mutateAsync({
          code: live.code, criteria: live.criteria, return_type: live.return_type as ReturnType, pass_min: live.pass_min,
          pass_max: live.pass_max, model_params: live.model_params, sampling_pct: pct.value, filters: { filterArray: filters },
          message: `online: ${pct.value} % sampled${filters.length ? `, ${filters.length} filter${filters.length === 1 ? "" : "s"}` : ""}`,
        });
        target = made.version;
      }
      if (enabled && evaluator.deployed_version !== target) await deploy.mutateAsync(target);
      if (enabled !== evaluator.enabled) await update.mutateAsync({ enabled });
      setDone(enabled ? `Online with v${target}, ${pct.value} % of new events sampled.` : "Online evaluation is off.");
    } catch (error) {
      setProblem((error as Error).message);
    } finally {
      setBusy(false);
    }
  }

  // The filter builder is a form of its own: this panel's fields are another form, which
  // its Save button (after the filters) submits.
  return (
    <section className="ev-card" aria-labelledby={`${ids}-o`}>
      <h2 id={`${ids}-o`}>Online evaluation</h2>
      <p className="hint">Score a sample of new events with the live version, as they arrive. A data plane applies
        these settings when it next refreshes its online evaluators (<code>POST /v1/evaluations/online/refresh</code> with an API key).</p>
      <form id={`${ids}-form`} onSubmit={save} className="ev-col" style={{ gap: 8 }}>
        <label className="check" htmlFor={`${ids}-on`}>
          <input id={`${ids}-on`} type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} />
          Run online on new events
        </label>
        <div className="field">
          <Label.Root htmlFor={`${ids}-pct`}>Sampling rate (% of events)</Label.Root>
          <input id={`${ids}-pct`} className="narrow" inputMode="decimal" value={sampling} onChange={(e) => setSampling(e.target.value)} disabled={!enabled} />
        </div>
      </form>
      <div className="field">
        <span className="muted">Only events matching every filter</span>
        <FilterBuilder conditions={conditions} onChange={setConditions} emptyText="Every event (no filters)." />
      </div>
      {problem && <p className="ev-error" role="alert">{problem}</p>}
      {done && <p className="ev-ok" role="status">{done}</p>}
      <div className="ev-actions">
        <button type="submit" form={`${ids}-form`} className="primary" disabled={busy}>{busy ? "Saving…" : "Save online settings"}</button>
      </div>
    </section>
  );
}

function Versions({ evaluator, projectId, editing, onEdit }: { evaluator: Evaluator; projectId: string; editing: number | null; onEdit: (v: number) => void }) {
  const { deploy } = useEvaluatorChanges(projectId, evaluator.id);
  const versions = [...evaluator.versions].sort((a, b) => b.version - a.version);
  return (
    <section className="ev-card" aria-labelledby="versions-title">
      <h2 id="versions-title">Versions</h2>
      {deploy.error && <p className="ev-error" role="alert">{deploy.error.message}</p>}
      <table className="grid" aria-label="Versions">
        <thead><tr><th scope="col">Version</th><th scope="col">Note</th><th scope="col" className="num">Sampled</th><th scope="col">Created</th><th scope="col"><span className="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
          {versions.map((v) => (
            <tr key={v.version} className={v.version === editing ? "selected-row" : undefined}>
              <td>v{v.version} {v.version === evaluator.deployed_version && <span className="live-badge">Live</span>}</td>
              <td>{v.message ?? <span className="muted">—</span>}</td>
              <td className="num">{v.sampling_pct} %</td>
              <td>{new Date(v.created_at).toLocaleString()}</td>
              <td>
                <div className="ev-actions">
                  <button type="button" onClick={() => onEdit(v.version)} aria-label={`Edit from v${v.version}`} disabled={v.version === editing}>Edit</button>
                  {v.version !== evaluator.deployed_version && (
                    <button type="button" onClick={() => deploy.mutate(v.version)} disabled={deploy.isPending} aria-label={`Deploy v${v.version}`}>Deploy</button>
                  )}
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
