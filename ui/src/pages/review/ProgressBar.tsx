/** A queue's progress: a bar with an accessible name and value, and "n of N reviewed". */
export function ProgressBar({ done, total, label }: { done: number; total: number; label: string }) {
  const pct = total > 0 ? Math.round((done / total) * 100) : 0;
  const text = `${done} of ${total} reviewed`;
  return (
    <div className="progress">
      <div className="progress-track" role="progressbar" aria-label={label} aria-valuemin={0}
        aria-valuemax={total} aria-valuenow={done} aria-valuetext={text}>
        <div className="progress-fill" style={{ width: `${pct}%` }} />
      </div>
      <span className="progress-text">{text}</span>
    </div>
  );
}
