import { describe, expect, it } from "vitest";
import { axisOf, barOf, formatMs, layoutWaterfall, ticks } from "./waterfall";

describe("waterfall layout", () => {
  it("places bars on the axis from the first start to the last end", () => {
    const { axis, bars } = layoutWaterfall([
      { start_time: 1000, end_time: 2000 },
      { start_time: 1250, end_time: 1500 },
      { start_time: 1500, duration: 500 },
    ]);
    expect(axis).toEqual({ start: 1000, end: 2000, span: 1000 });
    expect(bars[0]).toEqual({ leftPct: 0, widthPct: 100, startMs: 0, durationMs: 1000 });
    expect(bars[1]).toEqual({ leftPct: 25, widthPct: 25, startMs: 250, durationMs: 250 });
    expect(bars[2]).toEqual({ leftPct: 50, widthPct: 50, startMs: 500, durationMs: 500 });
  });

  it("gives instant spans a minimum width that still ends inside the axis", () => {
    const axis = axisOf([{ start_time: 0, end_time: 1000 }, { start_time: 1000 }])!;
    const bar = barOf({ start_time: 1000 }, axis, 1)!;
    expect(bar.widthPct).toBe(1);
    expect(bar.leftPct + bar.widthPct).toBeLessThanOrEqual(100);
    expect(bar.leftPct).toBe(99);
  });

  it("does not place a span without a start, and ignores an end before the start", () => {
    const { axis, bars } = layoutWaterfall([{ start_time: null }, { start_time: 10, end_time: 5 }]);
    expect(bars[0]).toBeNull();
    expect(axis).toEqual({ start: 10, end: 10, span: 1 });
    expect(bars[1]!.durationMs).toBe(0);
  });

  it("has no axis without timed spans", () => {
    expect(layoutWaterfall([{}]).axis).toBeNull();
  });

  it("keeps every bar within 0..100 percent", () => {
    const events = Array.from({ length: 500 }, (_, i) => ({ start_time: (i * 7919) % 1000, duration: (i * 104729) % 300 }));
    for (const bar of layoutWaterfall(events).bars) {
      expect(bar!.leftPct).toBeGreaterThanOrEqual(0);
      expect(bar!.leftPct + bar!.widthPct).toBeLessThanOrEqual(100 + 1e-9);
    }
  });

  it("ticks at round steps and formats durations", () => {
    expect(ticks({ start: 0, end: 1000, span: 1000 })).toEqual([0, 200, 400, 600, 800, 1000]);
    expect(formatMs(0)).toBe("0 ms");
    expect(formatMs(12.4)).toBe("12 ms");
    expect(formatMs(1500)).toBe("1.50 s");
  });
});
