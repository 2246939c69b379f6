// The waterfall timeline: where each span's bar sits on a shared time axis.
// Guarantees: the axis runs from the earliest start to the latest end of the spans given
// (a span without an end ends at its start + duration, or at its start); every bar lies
// inside [0, 100] percent; a bar is at least minWidthPct wide, moved left if needed so that
// it still ends by 100; a span without a start is not placed (null).

export interface TimedEvent {
  start_time?: number | null;
  end_time?: number | null;
  duration?: number | null;
}

export interface Bar {
  leftPct: number;
  widthPct: number;
  startMs: number; // from the axis' start
  durationMs: number;
}

export interface Axis {
  start: number;
  end: number;
  span: number; // end - start, at least 1 ms
}

function endOf(e: TimedEvent): number | null {
  if (e.start_time == null) return null;
  if (e.end_time != null && e.end_time >= e.start_time) return e.end_time;
  if (e.duration != null && e.duration >= 0) return e.start_time + e.duration;
  return e.start_time;
}

export function axisOf(events: readonly TimedEvent[]): Axis | null {
  let start = Number.POSITIVE_INFINITY;
  let end = Number.NEGATIVE_INFINITY;
  for (const e of events) {
    if (e.start_time == null) continue;
    start = Math.min(start, e.start_time);
    end = Math.max(end, endOf(e)!);
  }
  if (!Number.isFinite(start)) return null;
  return { start, end, span: Math.max(1, end - start) };
}

export function barOf(e: TimedEvent, axis: Axis, minWidthPct = 0.5): Bar | null {
  if (e.start_time == null) return null;
  const end = endOf(e)!;
  let left = ((e.start_time - axis.start) / axis.span) * 100;
  let width = ((end - e.start_time) / axis.span) * 100;
  left = Math.min(100, Math.max(0, left));
  width = Math.max(minWidthPct, Math.min(100, width));
  if (left + width > 100) left = Math.max(0, 100 - width);
  return { leftPct: left, widthPct: width, startMs: e.start_time - axis.start, durationMs: end - e.start_time };
}

export function layoutWaterfall<E extends TimedEvent>(events: readonly E[], minWidthPct = 0.5): { axis: Axis | null; bars: (Bar | null)[] } {
  const axis = axisOf(events);
  return { axis, bars: events.map((e) => (axis ? barOf(e, axis, minWidthPct) : null)) };
}

/** Tick marks for the axis: about ``count`` round values in ms from its start. */
export function ticks(axis: Axis, count = 5): number[] {
  const raw = axis.span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = 0; t <= axis.span + 1e-9; t += step) out.push(t);
  return out;
}

export function formatMs(ms: number): string {
  if (ms === 0) return "0 ms";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}
