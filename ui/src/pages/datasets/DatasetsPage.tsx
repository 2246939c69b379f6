import { AlertDialog, Label } from "radix-ui";
import { type FormEvent, useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { createDataset, type Dataset, deleteDataset, useDatasets, useDatasetsChanged } from "../../api/datasets";
import { formatTime } from "../TracesPage";
import { useProjectContext } from "../ProjectLayout";
import "./datasets.css";

function updatedAt(d: Dataset): string {
  const when = d.updated_at ?? d.created_at;
  return when ? formatTime(Date.parse(when)) : "—";
}

/** The project's datasets: name, description, datapoint count, when updated; create one,
 * delete one (after a confirmation). */
export function DatasetsPage() {
  const { projectId, dp } = useProjectContext();
  const datasets = useDatasets(dp);
  const changed = useDatasetsChanged(dp);
  const navigate = useNavigate();
  const [creating, setCreating] = useState(false);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  async function create(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const id = await createDataset(dp, name.trim(), description.trim());
      await changed();
      navigate(`/projects/${projectId}/datasets/${id}`);
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  }

  async function remove(d: Dataset) {
    setError(null);
    try {
      await deleteDataset(dp, d.id);
      setNotice(`Deleted the dataset ${d.name}.`);
      await changed();
    } catch (err) {
      setError((err as Error).message);
    }
  }

  const list = datasets.data ?? [];
  return (
    <div className="page">
      <div className="page-head">
        <h1>Datasets</h1>
        <span className="muted">Inputs and ground truth to run experiments on</span>
        <span className="spacer" />
        {!creating && <button type="button" className="primary" onClick={() => setCreating(true)}>New dataset</button>}
      </div>
      {creating && (
        <form className="ds-panel" aria-labelledby="new-dataset-title" onSubmit={(e) => void create(e)}>
          <h2 id="new-dataset-title">New dataset</h2>
          <div className="ds-form-row">
            <div className="field">
              <Label.Root htmlFor="new-dataset-name">Name</Label.Root>
              <input id="new-dataset-name" required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} autoFocus />
            </div>
            <div className="field grow">
              <Label.Root htmlFor="new-dataset-description">Description</Label.Root>
              <input id="new-dataset-description" maxLength={10_000} value={description} onChange={(e) => setDescription(e.target.value)} />
            </div>
            <div className="ds-actions">
              <button type="submit" className="primary" disabled={busy || !name.trim()}>Create dataset</button>
              <button type="button" onClick={() => { setCreating(false); setError(null); }}>Cancel</button>
            </div>
          </div>
        </form>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      {notice && <p className="ds-success" role="status">{notice}</p>}
      {datasets.error && <p className="error" role="alert">{datasets.error.message}</p>}
      {datasets.isPending && <p role="status">Loading datasets…</p>}
      {datasets.data && list.length === 0 && (
        <div className="ds-empty">
          <p><strong>No datasets yet — create one.</strong></p>
          <p>Or add spans to a dataset from a session: open a span and choose “Add to dataset”.</p>
          {!creating && <p><button type="button" className="primary" onClick={() => setCreating(true)}>Create a dataset</button></p>}
        </div>
      )}
      {list.length > 0 && (
        <table className="grid" aria-label="Datasets">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Description</th>
              <th scope="col" className="ds-count">Datapoints</th>
              <th scope="col">Updated</th>
              <th scope="col" className="ds-actions-col"><span className="ds-hidden-input">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {list.map((d) => (
              <tr key={d.id}>
                <td><Link to={`/projects/${projectId}/datasets/${d.id}`}>{d.name}</Link></td>
                <td className="muted">{d.description || "—"}</td>
                <td className="ds-count">{d.num_points}</td>
                <td>{updatedAt(d)}</td>
                <td className="ds-actions-col"><ConfirmDelete what={`the dataset ${d.name}`} label={`Delete ${d.name}`}
                  detail="Its datapoints stay in the project; its versions go with it." onConfirm={() => remove(d)} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** A "Delete" button that asks first (an alert dialog: focus trapped, Escape cancels). */
export function ConfirmDelete({ what, label, detail, onConfirm, text = "Delete" }: {
  what: string; label: string; detail?: string; onConfirm: () => void | Promise<void>; text?: string;
}) {
  return (
    <AlertDialog.Root>
      <AlertDialog.Trigger asChild>
        <button type="button" className="danger" aria-label={label}>{text}</button>
      </AlertDialog.Trigger>
      <AlertDialog.Portal>
        <AlertDialog.Overlay className="dialog-overlay" />
        <AlertDialog.Content className="dialog">
          <AlertDialog.Title>{text} {what}?</AlertDialog.Title>
          <AlertDialog.Description>{detail ?? "This cannot be undone."}</AlertDialog.Description>
          <div className="ds-actions">
            <AlertDialog.Cancel asChild><button type="button">Cancel</button></AlertDialog.Cancel>
            <AlertDialog.Action asChild><button type="button" className="danger solid" onClick={() => void onConfirm()}>{text}</button></AlertDialog.Action>
          </div>
        </AlertDialog.Content>
      </AlertDialog.Portal>
    </AlertDialog.Root>
  );
}
