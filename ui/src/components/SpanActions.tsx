// A span's actions in its detail: feedback (thumbs and a comment), add to a dataset (an
// existing one or a new one), add to an annotation queue.
import { useQueryClient } from "@tanstack/react-query";
import { Label } from "radix-ui";
import { type FormEvent, useId, useState } from "react";
import { Link } from "react-router-dom";
import type { EventOut, ProjectDataPlane } from "../api/client";
import { addEventsToDataset, addEventToQueue, createDataset, saveFeedback, useDatasets, useDatasetsChanged, useQueues } from "../api/datasets";

interface ActionProps {
  projectId: string;
  dp: ProjectDataPlane;
  event: EventOut;
}

type Outcome = { ok: true; text: string; link?: { to: string; label: string } } | { ok: false; text: string };

function OutcomeLine({ outcome }: { outcome: Outcome | null }) {
  if (!outcome) return null;
  if (!outcome.ok) return <p className="error" role="alert">{outcome.text}</p>;
  return (
    <p className="ds-success" role="status">
      {outcome.text}{outcome.link && <> <Link to={outcome.link.to}>{outcome.link.label}</Link></>}
    </p>
  );
}

const NEW = "__new__";

/** Thumbs up/down (feedback.rating 1 or 0) and a comment, merged into the event's feedback
 * (``PUT /v1/events/{id}``); the stored event shows it once the writer has it. */
export function FeedbackForm({ projectId, dp, event }: ActionProps) {
  const id = useId();
  const queryClient = useQueryClient();
  const stored = event.feedback ?? {};
  const [rating, setRating] = useState<number | null>(typeof stored["rating"] === "number" ? stored["rating"] : null);
  const [comment, setComment] = useState(typeof stored["comment"] === "string" ? stored["comment"] : "");
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setOutcome(null);
    try {
      await saveFeedback(dp, event.event_id, { ...(rating !== null ? { rating } : {}), ...(comment.trim() ? { comment: comment.trim() } : {}) });
      setOutcome({ ok: true, text: "Feedback saved." });
      void queryClient.invalidateQueries({ queryKey: ["session-events", projectId] });
    } catch (err) {
      setOutcome({ ok: false, text: (err as Error).message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="span-actions" aria-label="Add feedback" onSubmit={(e) => void submit(e)}>
      <div className="span-action-row">
        <span id={`${id}-rating`}>Rating</span>
        <div className="thumbs" role="group" aria-labelledby={`${id}-rating`}>
          <button type="button" aria-pressed={rating === 1} onClick={() => setRating(rating === 1 ? null : 1)}>
            <span aria-hidden="true">✓</span> Good
          </button>
          <button type="button" aria-pressed={rating === 0} onClick={() => setRating(rating === 0 ? null : 0)}>
            <span aria-hidden="true">✗</span> Bad
          </button>
        </div>
      </div>
      <div className="field">
        <Label.Root htmlFor={`${id}-comment`}>Comment</Label.Root>
        <textarea id={`${id}-comment`} maxLength={10_000} value={comment} onChange={(e) => setComment(e.target.value)} />
      </div>
      <div className="span-action-row">
        <button type="submit" className="primary" disabled={busy || (rating === null && !comment.trim())}>Save feedback</button>
      </div>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}

/** Events (a span, or a selection of them) as datapoints (inputs ← inputs, ground truth ←
 * outputs, linked to their event) of a chosen dataset, or of a new one named here. */
export function AddToDataset({ projectId, dp, eventIds }: { projectId: string; dp: ProjectDataPlane; eventIds: string[] }) {
  const id = useId();
  const datasets = useDatasets(dp);
  const changed = useDatasetsChanged(dp);
  const [choice, setChoice] = useState("");
  const [name, setName] = useState("");
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const list = datasets.data ?? [];
  const selected = choice || (list[0]?.id ?? NEW);
  const creating = selected === NEW;

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setOutcome(null);
    try {
      const datasetId = creating ? await createDataset(dp, name.trim(), "") : selected;
      const label = creating ? name.trim() : list.find((d) => d.id === selected)?.name ?? "the dataset";
      const added = await addEventsToDataset(dp, eventIds, datasetId);
      await changed();
      setChoice(datasetId);
      setName("");
      const what = eventIds.length === 1 ? "" : `${added.length} datapoint${added.length === 1 ? "" : "s"} `;
      setOutcome({ ok: true, text: `Added ${what}to ${label}.`, link: { to: `/projects/${projectId}/datasets/${datasetId}`, label: "Open the dataset" } });
    } catch (err) {
      setOutcome({ ok: false, text: (err as Error).message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form aria-label="Add to dataset" onSubmit={(e) => void submit(e)}>
      <div className="span-action-row">
        <Label.Root htmlFor={`${id}-dataset`}>Dataset</Label.Root>
        <select id={`${id}-dataset`} value={selected} onChange={(e) => setChoice(e.target.value)} disabled={datasets.isPending}>
          {list.map((d) => <option key={d.id} value={d.id}>{d.name}</option>)}
          <option value={NEW}>New dataset…</option>
        </select>
        {creating && (
          <>
            <Label.Root htmlFor={`${id}-name`}>New dataset name</Label.Root>
            <input id={`${id}-name`} maxLength={200} value={name} onChange={(e) => setName(e.target.value)} />
          </>
        )}
        <button type="submit" disabled={busy || eventIds.length === 0 || (creating && !name.trim())}>Add to dataset</button>
      </div>
      {datasets.error && <p className="error" role="alert">{datasets.error.message}</p>}
      <OutcomeLine outcome={outcome} />
    </form>
  );
}

/** The event as an open item of a chosen annotation queue. */
export function AddToQueue({ projectId, dp, event }: ActionProps) {
  const id = useId();
  const queues = useQueues(dp);
  const queryClient = useQueryClient();
  const [choice, setChoice] = useState("");
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const list = queues.data ?? [];
  const selected = choice || (list[0]?.id ?? "");

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setOutcome(null);
    try {
      const added = await addEventToQueue(dp, event.event_id, selected);
      const label = list.find((q) => q.id === selected)?.name ?? "the queue";
      void queryClient.invalidateQueries({ queryKey: ["queues", projectId] });
      setOutcome({ ok: true, text: added ? `Added to ${label}.` : `Already in ${label}.`, link: { to: `/projects/${projectId}/review/${selected}`, label: "Open the queue" } });
    } catch (err) {
      setOutcome({ ok: false, text: (err as Error).message });
    } finally {
      setBusy(false);
    }
  }

  if (queues.error) return <p className="error" role="alert">{queues.error.message}</p>;
  if (queues.data && list.length === 0) {
    return <p className="muted">No annotation queues yet — <Link to={`/projects/${projectId}/review`}>create one in Review</Link>.</p>;
  }
  return (
    <form aria-label="Add to annotation queue" onSubmit={(e) => void submit(e)}>
      <div className="span-action-row">
        <Label.Root htmlFor={`${id}-queue`}>Annotation queue</Label.Root>
        <select id={`${id}-queue`} value={selected} onChange={(e) => setChoice(e.target.value)} disabled={queues.isPending}>
          {list.map((q) => <option key={q.id} value={q.id}>{q.name}</option>)}
        </select>
        <button type="submit" disabled={busy || !selected}>Add to queue</button>
      </div>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}
