import { Label } from "radix-ui";
import { type ChangeEvent, type FormEvent, useState } from "react";
import { Link, useParams } from "react-router-dom";
import {
  addDatapoint, createVersion, type Datapoint, type DatapointFields, exportFile, type FileFormat,
  formatOfFile, importFile, type ImportResult, removeDatapoint, saveBlob, updateDatapoint,
  useDatapoints, useDataset, useDatasetsChanged, useVersions,
} from "../../api/datasets";
import type { ProjectDataPlane } from "../../api/client";
import { formatTime } from "../TracesPage";
import { useProjectContext } from "../ProjectLayout";
import { ConfirmDelete } from "./DatasetsPage";
import { cellText, editorText, importErrorText, pageOf, parseMessages, parseObject } from "./editing";
import "./datasets.css";

const PAGE_SIZE = 25;

/** A dataset: its datapoints (paged), an editor, import/export of JSONL and CSV, versions. */
export function DatasetPage() {
  const { projectId, dp } = useProjectContext();
  const { datasetId = "" } = useParams();
  const dataset = useDataset(dp, datasetId);
  const points = useDatapoints(dp, datasetId);
  const changed = useDatasetsChanged(dp);
  const [page, setPage] = useState(1);
  const [editing, setEditing] = useState<Datapoint | "new" | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [imported, setImported] = useState<ImportResult | null>(null);
  const [busy, setBusy] = useState(false);

  if (dataset.error) {
    return (
      <div className="page">
        <p className="crumbs"><Link to={`/projects/${projectId}/datasets`}>Datasets</Link></p>
        <h1>Dataset</h1>
        <p className="error" role="alert">{dataset.error.message}</p>
      </div>
    );
  }
  const name = dataset.data?.name ?? "";
  const all = points.data ?? [];
  const shown = pageOf(all, page, PAGE_SIZE);

  async function download(format: FileFormat) {
    setError(null);
    try {
      saveBlob(await exportFile(dp, datasetId, format), `${name || datasetId}.${format}`);
    } catch (err) {
      setError((err as Error).message);
    }
  }

  async function upload(e: ChangeEvent<HTMLInputElement>) {
    const file = e.target.files?.[0];
    e.target.value = "";
    if (!file) return;
    setBusy(true);
    setError(null);
    setNotice(null);
    setImported(null);
    try {
      const result = await importFile(dp, datasetId, await file.text(), formatOfFile(file.name));
      setImported(result);
      await changed();
    } catch (err) {
      setError(`Import of ${file.name} failed: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  }

  async function remove(point: Datapoint) {
    setError(null);
    try {
      await removeDatapoint(dp, datasetId, point.id);
      setNotice("Removed the datapoint from the dataset.");
      await changed();
    } catch (err) {
      setError((err as Error).message);
    }
  }

  return (
    <div className="page">
      <div className="page-head">
        <p className="crumbs"><Link to={`/projects/${projectId}/datasets`}>Datasets</Link> <span aria-hidden="true">/</span></p>
        <h1>{dataset.data ? name : "Dataset"}</h1>
        {dataset.data && <span className="muted">{dataset.data.num_points} datapoint{dataset.data.num_points === 1 ? "" : "s"}</span>}
      </div>
      {dataset.isPending && <p role="status">Loading the dataset…</p>}
      {dataset.data?.description && <p className="ds-desc">{dataset.data.description}</p>}
      <div className="ds-toolbar" role="group" aria-label="Dataset actions">
        <button type="button" className="primary" onClick={() => { setEditing("new"); setNotice(null); }}>Add datapoint</button>
        <label className="button-like">
          {busy ? "Importing…" : "Import JSONL or CSV"}
          <input type="file" className="ds-hidden-input" accept=".jsonl,.ndjson,.json,.csv,text/csv,application/x-ndjson"
            aria-label="Import a JSONL or CSV file" disabled={busy} onChange={(e) => void upload(e)} />
        </label>
        <button type="button" onClick={() => void download("jsonl")}>Export JSONL</button>
        <button type="button" onClick={() => void download("csv")}>Export CSV</button>
      </div>
      {error && <p className="error" role="alert">{error}</p>}
      {notice && <p className="ds-success" role="status">{notice}</p>}
      {imported && <ImportReport result={imported} />}
      {editing && (
        <DatapointEditor key={editing === "new" ? "new" : editing.id} dp={dp} datasetId={datasetId} point={editing === "new" ? null : editing}
          onDone={(message) => { setEditing(null); setNotice(message); void changed(); }} onCancel={() => setEditing(null)} />
      )}
      {points.error && <p className="error" role="alert">{points.error.message}</p>}
      {points.isPending && <p role="status">Loading datapoints…</p>}
      {points.data && all.length === 0 && (
        <div className="ds-empty">
          <p><strong>No datapoints yet.</strong></p>
          <p>Add one, import a JSONL or CSV file, or add spans from a session (“Add to dataset”).</p>
        </div>
      )}
      {all.length > 0 && (
        <>
          <table className="grid" aria-label="Datapoints">
            <thead>
              <tr>
                <th scope="col">Inputs</th>
                <th scope="col">Ground truth</th>
                <th scope="col">Metadata</th>
                <th scope="col">Source event</th>
                <th scope="col" className="ds-actions-col"><span className="ds-hidden-input">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {shown.rows.map((p, i) => {
                const n = (shown.page - 1) * PAGE_SIZE + i + 1;
                return (
                  <tr key={p.id}>
                    <td className="ds-cell" title={JSON.stringify(p.inputs)}>{cellText(p.inputs)}</td>
                    <td className="ds-cell" title={p.ground_truth ? JSON.stringify(p.ground_truth) : undefined}>{cellText(p.ground_truth)}</td>
                    <td className="ds-cell" title={p.metadata ? JSON.stringify(p.metadata) : undefined}>{cellText(p.metadata)}</td>
                    <td><EventLink projectId={projectId} point={p} /></td>
                    <td className="ds-actions-col">
                      <div className="ds-actions">
                        <button type="button" aria-label={`Edit datapoint ${n}`} onClick={() => { setEditing(p); setNotice(null); }}>Edit</button>
                        <ConfirmDelete what={`datapoint ${n} from this dataset`} label={`Remove datapoint ${n}`} text="Remove"
                          detail="The datapoint leaves this dataset; versions saved before keep it." onConfirm={() => remove(p)} />
                      </div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <nav className="pager" aria-label="Datapoint pages">
            <button type="button" disabled={shown.page <= 1} onClick={() => setPage(shown.page - 1)}>Previous</button>
            <span>Page {shown.page} of {shown.pages} · {all.length} datapoint{all.length === 1 ? "" : "s"}</span>
            <button type="button" disabled={shown.page >= shown.pages} onClick={() => setPage(shown.page + 1)}>Next</button>
          </nav>
        </>
      )}
      <Versions dp={dp} datasetId={datasetId} name={name || datasetId} />
    </div>
  );
}

function EventLink({ projectId, point }: { projectId: string; point: Datapoint }) {
  if (!point.linked_event) return <span className="muted">—</span>;
  const session = point.metadata?.["session_id"];
  const label = <code className="id">{point.linked_event.slice(0, 12)}</code>;
  if (typeof session !== "string") return <span title={point.linked_event}>{label}</span>;
  return (
    <Link to={`/projects/${projectId}/sessions/${encodeURIComponent(session)}?event=${encodeURIComponent(point.linked_event)}`}
      title={`Open the event ${point.linked_event} in its session`}>{label}</Link>
  );
}

function ImportReport({ result }: { result: ImportResult }) {
  const errors = result.errors ?? [];
  const n = result.datapoint_ids.length;
  return (
    <>
      <p className="ds-success" role="status">Imported {n} datapoint{n === 1 ? "" : "s"}{errors.length ? `; ${errors.length} line${errors.length === 1 ? "" : "s"} not imported` : ""}.</p>
      {errors.length > 0 && (
        <div className="ds-errors" role="alert" aria-labelledby="import-errors-title">
          <strong id="import-errors-title">Lines not imported</strong>
          <ul aria-label="Lines not imported">
            {errors.slice(0, 50).map((e) => <li key={e.line}>{importErrorText(e)}</li>)}
          </ul>
          {errors.length > 50 && <p>…and {errors.length - 50} more.</p>}
        </div>
      )}
    </>
  );
}

function JsonField({ id, label, hint, value, onChange, error }: {
  id: string; label: string; hint: string; value: string; onChange: (v: string) => void; error: string | null;
}) {
  return (
    <div className="field">
      <Label.Root htmlFor={id}>{label}</Label.Root>
      <p id={`${id}-hint`}>{hint}</p>
      <textarea id={id} className="ds-json" spellCheck={false} value={value} onChange={(e) => onChange(e.target.value)}
        aria-invalid={error ? true : undefined} aria-describedby={error ? `${id}-hint ${id}-error` : `${id}-hint`} />
      {error && <p id={`${id}-error`} className="field-error">{label}: {error}</p>}
    </div>
  );
}

/** Add or edit a datapoint: JSON fields checked here first; invalid JSON never reaches the API. */
function DatapointEditor({ dp, datasetId, point, onDone, onCancel }: {
  dp: ProjectDataPlane; datasetId: string; point: Datapoint | null;
  onDone: (message: string) => void; onCancel: () => void;
}) {
  const [inputs, setInputs] = useState(editorText(point?.inputs));
  const [truth, setTruth] = useState(editorText(point?.ground_truth));
  const [metadata, setMetadata] = useState(editorText(point?.metadata));
  const [history, setHistory] = useState(editorText(point?.history));
  const [checked, setChecked] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const parsed = {
    inputs: parseObject(inputs, false), truth: parseObject(truth, true),
    metadata: parseObject(metadata, true), history: parseMessages(history),
  };
  const err = (p: { ok: boolean; error?: string }) => (checked && !p.ok ? p.error ?? null : null);

  async function save(e: FormEvent) {
    e.preventDefault();
    setChecked(true);
    setError(null);
    const { inputs: i, truth: t, metadata: m, history: h } = parsed;
    if (!i.ok || !t.ok || !m.ok || !h.ok) return;
    const fields: DatapointFields = { inputs: i.value ?? {}, ground_truth: t.value, metadata: m.value, history: h.value };
    setBusy(true);
    try {
      if (point) await updateDatapoint(dp, point.id, fields);
      else await addDatapoint(dp, datasetId, fields);
      onDone(point ? "Saved the datapoint." : "Added a datapoint.");
    } catch (err2) {
      setError((err2 as Error).message);
    } finally {
      setBusy(false);
    }
  }

  const title = point ? "Edit datapoint" : "New datapoint";
  return (
    <form className="ds-panel" aria-labelledby="editor-title" onSubmit={(e) => void save(e)} noValidate>
      <h2 id="editor-title">{title}</h2>
      <div className="ds-editor-grid">
        <JsonField id="dp-inputs" label="Inputs" hint="A JSON object (the inputs of a run)." value={inputs} onChange={setInputs} error={err(parsed.inputs)} />
        <JsonField id="dp-truth" label="Ground truth" hint="A JSON object, or empty." value={truth} onChange={setTruth} error={err(parsed.truth)} />
        <JsonField id="dp-metadata" label="Metadata" hint="A JSON object, or empty." value={metadata} onChange={setMetadata} error={err(parsed.metadata)} />
        <JsonField id="dp-history" label="History" hint="A JSON list of chat messages, or empty." value={history} onChange={setHistory} error={err(parsed.history)} />
      </div>
      {error && <p className="error" role="alert">{error}</p>}
      <div className="ds-actions">
        <button type="submit" className="primary" disabled={busy}>{point ? "Save datapoint" : "Create datapoint"}</button>
        <button type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}

function Versions({ dp, datasetId, name }: { dp: ProjectDataPlane; datasetId: string; name: string }) {
  const versions = useVersions(dp, datasetId);
  const changed = useDatasetsChanged(dp);
  const [message, setMessage] = useState("");
  const [result, setResult] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function save(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      const made = await createVersion(dp, datasetId, message.trim());
      setResult(made.created ? `Saved version ${made.version.version}.` : `Nothing changed since version ${made.version.version}.`);
      setMessage("");
      await changed();
    } catch (err) {
      setError((err as Error).message);
    }
  }

  async function download(version: number, format: FileFormat) {
    setError(null);
    try {
      saveBlob(await exportFile(dp, datasetId, format, version), `${name}-v${version}.${format}`);
    } catch (err) {
      setError((err as Error).message);
    }
  }

  const list = versions.data ?? [];
  return (
    <section className="ds-panel" aria-labelledby="versions-title">
      <h2 id="versions-title">Versions</h2>
      <p className="muted ds-desc">A version freezes the datapoints as they are, for experiments to be repeatable.</p>
      {versions.error && <p className="error" role="alert">{versions.error.message}</p>}
      {versions.data && list.length === 0 && <p className="muted">No versions yet.</p>}
      {list.length > 0 && (
        <ol className="ds-versions" aria-label="Versions">
          {[...list].reverse().map((v) => (
            <li key={v.id}>
              <strong>v{v.version}</strong>
              <span>{v.datapoint_count} datapoint{v.datapoint_count === 1 ? "" : "s"}</span>
              <span className="muted">{formatTime(Date.parse(v.created_at))}</span>
              {v.message && <span>{v.message}</span>}
              <button type="button" className="link" aria-label={`Export version ${v.version} as JSONL`} onClick={() => void download(v.version, "jsonl")}>JSONL</button>
              <button type="button" className="link" aria-label={`Export version ${v.version} as CSV`} onClick={() => void download(v.version, "csv")}>CSV</button>
            </li>
          ))}
        </ol>
      )}
      <form className="ds-form-row" onSubmit={(e) => void save(e)}>
        <div className="field ds-version-field">
          <Label.Root htmlFor="version-message">Version message</Label.Root>
          <input id="version-message" maxLength={1000} value={message} onChange={(e) => setMessage(e.target.value)} placeholder="What changed (optional)" />
        </div>
        <button type="submit">Save version</button>
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {result && <p className="ds-success" role="status">{result}</p>}
    </section>
  );
}
