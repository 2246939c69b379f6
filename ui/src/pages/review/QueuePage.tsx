import { useQueryClient } from "@tanstack/react-query";
import { Dialog } from "radix-ui";
import { useCallback, useEffect, useRef, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { useMe } from "../../api/queries";
import { claimNext, type Item, itemsOf, recordScore, skipItem, useEvent, useQueue } from "../../api/review";
import { useProjectContext } from "../ProjectLayout";
import { EventView } from "./EventView";
import { ProgressBar } from "./ProgressBar";
import { ScoreForm } from "./ScoreForm";
import { type Answer, type Answers, answersFrom, criteriaOf, feedbackOf, firstOf, progressOf } from "./scoring";
import { actionForKey, SHORTCUTS } from "./shortcuts";
import "./review.css";

type Phase = "starting" | "reviewing" | "finished";

/** One annotation queue: the item under review (its event and the scoring form), submit →
 * the next item, skip, back and forth over this visit's items, keyboard shortcuts, the
 * queue's progress, and a finished state. */
export function QueuePage() {
  const { projectId, dp } = useProjectContext();
  const { queueId = "" } = useParams();
  const me = useMe();
  const queryClient = useQueryClient();
  const queue = useQueue(dp, queueId);
  const subject = me.data ? `user:${me.data.user.id}` : null;

  // The items of this visit, in the order they were opened; `pos` is the one shown
  // (history.length: the finished panel).
  const [history, setHistory] = useState<Item[]>([]);
  const [pos, setPos] = useState(0);
  const [phase, setPhase] = useState<Phase>("starting");
  const [answers, setAnswers] = useState<Record<string, Answers>>({});
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState("");
  const [help, setHelp] = useState(false);

  const criteria = criteriaOf(queue.data?.criteria);
  const item = pos < history.length ? history[pos] ?? null : null;
  const event = useEvent(dp, item?.event_id ?? null);
  const progress = progressOf(queue.data?.item_counts);

  const refreshQueue = useCallback(
    () => queryClient.invalidateQueries({ queryKey: ["queue", projectId, queueId] }), [queryClient, projectId, queueId]);

  /** Open the caller's next item: one claimed before (a reload) first, then a new claim. */
  const openNext = useCallback(async (known: readonly Item[]) => {
    setBusy(true);
    setError(null);
    try {
      let next: Item | null = null;
      if (subject) {
        const seen = new Set(known.map((i) => i.event_id));
        const mine = await itemsOf(dp, queueId, { status: "in_progress", assignee: subject });
        next = mine.find((i) => !seen.has(i.event_id)) ?? null;
      }
      next ??= await claimNext(dp, queueId);
      if (next) {
        const claimed = next;
        setHistory([...known, claimed]);
        setPos(known.length);
        setPhase("reviewing");
        setNotice(`Opened the next item`);
      } else {
        setPos(known.length);
        setPhase("finished");
        setNotice("No more items are waiting for you");
      }
      void refreshQueue();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }, [dp, queueId, subject, refreshQueue]);

  const started = useRef(false);
  useEffect(() => {
    if (started.current || !subject) return;
    started.current = true;
    void openNext([]);
  }, [subject, openNext]);

  function replace(updated: Item) {
    setHistory((h) => h.map((i) => (i.event_id === updated.event_id ? updated : i)));
  }

  function answer(key: string, value: Answer) {
    if (!item) return;
    const id = item.event_id;
    setAnswers((a) => ({ ...a, [id]: { ...current(), [key]: value } }));
  }

  /** The answers shown for the item: the reviewer's edits, else what was recorded. */
  function current(): Answers {
    if (!item) return {};
    return answers[item.event_id] ?? answersFrom(criteria, item.feedback);
  }

  async function forward(updatedHistory: readonly Item[]) {
    if (pos + 1 < updatedHistory.length) {
      setPos(pos + 1);
    } else {
      await openNext(updatedHistory);
    }
  }

  async function submit() {
    if (!item || busy) return;
    const feedback = feedbackOf(criteria, current());
    if (Object.keys(feedback).length === 0) {
      setNotice("Give a score first");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const updated = await recordScore(dp, queueId, item.event_id, feedback);
      replace(updated);
      void queryClient.invalidateQueries({ queryKey: ["event", projectId, item.event_id] });
      setNotice("Score recorded");
      setBusy(false);
      await forward(history.map((i) => (i.event_id === updated.event_id ? updated : i)));
    } catch (e) {
      setError((e as Error).message);
      setBusy(false);
    }
  }

  async function skip() {
    if (!item || busy || item.status !== "in_progress") return;
    setBusy(true);
    setError(null);
    try {
      const updated = await skipItem(dp, queueId, item.event_id);
      replace(updated);
      setNotice("Item skipped");
      setBusy(false);
      await forward(history.map((i) => (i.event_id === updated.event_id ? updated : i)));
    } catch (e) {
      setError((e as Error).message);
      setBusy(false);
    }
  }

  function next() {
    if (busy) return;
    if (pos + 1 < history.length) setPos(pos + 1);
    else if (item && item.status === "in_progress") setNotice("Score or skip this item to go on");
    else if (pos < history.length) void openNext(history);
  }

  function previous() {
    if (busy) return;
    if (pos > 0) setPos(pos - 1);
    else setNotice("This is the first item of this visit");
  }

  // The keyboard shortcuts, on the whole page (never while typing in a field).
  const handlers = useRef({ submit, skip, next, previous, answer, help });
  handlers.current = { submit, skip, next, previous, answer, help };
  useEffect(() => {
    function onKey(e: KeyboardEvent) {
      const action = actionForKey({ key: e.key, ctrlKey: e.ctrlKey, metaKey: e.metaKey, altKey: e.altKey, target: e.target as HTMLElement | null });
      if (!action) return;
      const h = handlers.current;
      if (action.type === "help") {
        e.preventDefault();
        setHelp((open) => !open);
        return;
      }
      if (h.help) return; // the dialog handles its own keys (Escape closes it)
      switch (action.type) {
        case "rate": {
          const c = firstOf(criteria, "rating");
          if (c) { e.preventDefault(); h.answer(c.key, action.value); }
          return;
        }
        case "thumbs": {
          const c = firstOf(criteria, "thumbs");
          if (c) { e.preventDefault(); h.answer(c.key, action.value); }
          return;
        }
        case "submit": e.preventDefault(); void h.submit(); return;
        case "skip": e.preventDefault(); void h.skip(); return;
        case "next": e.preventDefault(); h.next(); return;
        case "previous": e.preventDefault(); h.previous(); return;
        case "close": return;
      }
    }
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [criteria]);

  if (queue.error) {
    return (
      <div className="page review-queue">
        <p className="crumbs"><Link to={`/projects/${projectId}/review`}>Review</Link></p>
        <h1>Annotation queue</h1>
        <div className="error-box" role="alert">
          <p>This queue cannot be opened: {queue.error.message}.</p>
        </div>
        <p><Link to={`/projects/${projectId}/review`}>See the project's queues</Link></p>
      </div>
    );
  }

  const statusLabel = item?.status === "completed" ? "Scored" : item?.status === "skipped" ? "Skipped" : "To review";
  return (
    <div className="page review-queue">
      <p className="crumbs"><Link to={`/projects/${projectId}/review`}>Review</Link> <span aria-hidden="true">›</span> {queue.data?.name ?? "…"}</p>
      <div className="page-head">
        <h1>{queue.data?.name ?? "Annotation queue"}</h1>
        <ProgressBar done={progress.done} total={progress.total} label="Queue progress" />
        <span className="spacer" />
        <button type="button" onClick={() => setHelp(true)} aria-keyshortcuts="?">Keyboard shortcuts <kbd aria-hidden="true">?</kbd></button>
      </div>
      {queue.data?.description && <p className="muted review-description">{queue.data.description}</p>}
      <p className="visually-hidden" role="status" aria-live="polite">{notice}</p>
      {error && <p className="error" role="alert">{error}</p>}

      {phase === "starting" && <p role="status">Finding your next item…</p>}

      {item && (
        <>
          <nav className="item-nav" aria-label="Items">
            <button type="button" onClick={previous} disabled={busy || pos === 0} aria-keyshortcuts="k ArrowLeft">← Previous</button>
            <span>Item {pos + 1} of this visit · <span className={`item-status s-${item.status}`}>{statusLabel}</span></span>
            <button type="button" onClick={next} disabled={busy || (pos + 1 >= history.length && item.status === "in_progress")}
              aria-keyshortcuts="j ArrowRight">Next →</button>
          </nav>
          <div className="review-split">
            <div className="review-event-pane">
              {event.data ? <EventView event={event.data} projectId={projectId} />
                : event.error ? <p className="error" role="alert">{event.error.message}</p>
                  : <p role="status">Loading the event…</p>}
            </div>
            <div className="review-form-pane">
              <ScoreForm criteria={criteria} answers={current()} onChange={answer} busy={busy}
                onSubmit={() => void submit()} onSkip={() => void skip()} canSkip={item.status === "in_progress"}
                submitLabel={item.status === "completed" ? "Update score" : "Submit score"} />
            </div>
          </div>
        </>
      )}

      {phase === "finished" && !item && (
        <section className="review-done" aria-labelledby="done-title">
          <h2 id="done-title">{progress.total > 0 && progress.done >= progress.total ? "All done" : "Nothing waiting for you"}</h2>
          <p>
            {progress.total === 0 ? "This queue has no items yet. Add events to it from a session, or give it rules on the Review page."
              : progress.done >= progress.total ? `Every item in this queue is reviewed (${progress.done} of ${progress.total}).`
                : `${progress.total - progress.done} item${progress.total - progress.done === 1 ? " is" : "s are"} still open, with other reviewers.`}
          </p>
          <div className="score-actions">
            <button type="button" onClick={() => void openNext(history)} disabled={busy}>Check again</button>
            {history.length > 0 && <button type="button" onClick={previous}>← Back to the last item</button>}
            <Link to={`/projects/${projectId}/review`}>All queues</Link>
          </div>
        </section>
      )}

      <Dialog.Root open={help} onOpenChange={setHelp}>
        <Dialog.Portal>
          <Dialog.Overlay className="dialog-overlay" />
          <Dialog.Content className="dialog" aria-describedby={undefined}>
            <Dialog.Title>Keyboard shortcuts</Dialog.Title>
            <table className="kv shortcuts" aria-label="Keyboard shortcuts">
              <tbody>
                {SHORTCUTS.map(([keys, what]) => <tr key={keys}><th scope="row"><kbd>{keys}</kbd></th><td>{what}</td></tr>)}
              </tbody>
            </table>
            <p className="muted">Shortcuts never fire while you type in a text field.</p>
            <Dialog.Close asChild><button type="button">Close</button></Dialog.Close>
          </Dialog.Content>
        </Dialog.Portal>
      </Dialog.Root>
    </div>
  );
}
