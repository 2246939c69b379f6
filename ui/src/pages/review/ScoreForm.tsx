import { type FormEvent, useId } from "react";
import type { Criterion } from "../../api/review";
import { type Answer, type Answers, labelOf } from "./scoring";

function Choices({ name, legend, options, value, onChange, hint }: {
  name: string;
  legend: string;
  options: ReadonlyArray<readonly [value: Answer, label: string]>;
  value: Answer | undefined;
  onChange: (v: Answer) => void;
  hint?: string;
}) {
  return (
    <fieldset className="criterion">
      <legend>{legend}{hint && <span className="muted"> {hint}</span>}</legend>
      <div className="choices">
        {options.map(([v, label]) => (
          <label key={String(v)} className={value === v ? "choice chosen" : "choice"}>
            <input type="radio" name={name} value={String(v)} checked={value === v} onChange={() => onChange(v)} />
            <span>{label}</span>
          </label>
        ))}
      </div>
    </fieldset>
  );
}

const RATINGS = [1, 2, 3, 4, 5].map((n) => [n, String(n)] as const);
const THUMBS = [[true, "👍 Up"], [false, "👎 Down"]] as const;

/** The scoring form: one control per criterion; keys 1–5 and u/d fill the first rating
 * and thumbs (the page handles them). */
export function ScoreForm({ criteria, answers, onChange, onSubmit, onSkip, busy, canSkip, submitLabel }: {
  criteria: readonly Criterion[];
  answers: Answers;
  onChange: (key: string, value: Answer) => void;
  onSubmit: () => void;
  onSkip: () => void;
  busy: boolean;
  canSkip: boolean;
  submitLabel: string;
}) {
  const id = useId();
  const firstRating = criteria.find((c) => c.kind === "rating")?.key;
  const firstThumbs = criteria.find((c) => c.kind === "thumbs")?.key;
  function submit(e: FormEvent) {
    e.preventDefault();
    onSubmit();
  }
  const answered = criteria.some((c) => {
    const v = answers[c.key];
    return v !== undefined && !(typeof v === "string" && v.trim() === "");
  });
  return (
    <form className="score-form" aria-labelledby={`${id}-title`} onSubmit={submit}>
      <h2 id={`${id}-title`}>Score</h2>
      {criteria.map((c) => {
        const name = `${id}-${c.key}`;
        switch (c.kind) {
          case "rating":
            return <Choices key={c.key} name={name} legend={labelOf(c)} options={RATINGS} value={answers[c.key]}
              onChange={(v) => onChange(c.key, v)} hint={c.key === firstRating ? "(keys 1–5)" : undefined} />;
          case "thumbs":
            return <Choices key={c.key} name={name} legend={labelOf(c)} options={THUMBS} value={answers[c.key]}
              onChange={(v) => onChange(c.key, v)} hint={c.key === firstThumbs ? "(keys u / d)" : undefined} />;
          case "category":
            return <Choices key={c.key} name={name} legend={labelOf(c)} options={(c.options ?? []).map((o) => [o, o] as const)}
              value={answers[c.key]} onChange={(v) => onChange(c.key, v)} />;
          case "text":
            return (
              <div key={c.key} className="field criterion">
                <label htmlFor={name}>{labelOf(c)}</label>
                <textarea id={name} rows={3} value={typeof answers[c.key] === "string" ? answers[c.key] as string : ""}
                  onChange={(e) => onChange(c.key, e.target.value)} />
              </div>
            );
          default:
            return null;
        }
      })}
      <div className="score-actions">
        <button type="submit" className="primary" disabled={busy || !answered}>{submitLabel} <kbd aria-hidden="true">Enter</kbd></button>
        <button type="button" onClick={onSkip} disabled={busy || !canSkip}>Skip <kbd aria-hidden="true">s</kbd></button>
      </div>
    </form>
  );
}
