import type { HistoryBucket } from "../lib/types.js";

/** A row of Unicode blocks for a series, scaled to its own peak; an all-zero series is a flat line. */

const BLOCKS = "▁▂▃▄▅▆▇█";

export function sparkline(values: readonly number[]): string {
  const peak = Math.max(0, ...values);
  return values
    .map((v) => {
      if (peak === 0 || v <= 0) return BLOCKS[0];
      // Any activity shows above the baseline, so one row in a quiet hour is not drawn as none.
      return BLOCKS[Math.max(1, Math.round((v / peak) * (BLOCKS.length - 1)))];
    })
    .join("");
}

/**
 * `slots` values of `field` per `stepMinutes`, the last slot holding `end`, zero where the history
 * has no bucket. Buckets start on step boundaries counted from the Unix epoch (the SQL bins from
 * 2000-01-01 UTC, which falls on every step boundary that divides a day).
 */
export function series(
  buckets: readonly HistoryBucket[],
  end: Date,
  slots: number,
  stepMinutes: number,
  field: "embedded" | "failed" | "tokens" | "requests" = "embedded",
): number[] {
  const step = stepMinutes * 60_000;
  const last = Math.floor(end.getTime() / step);
  const out = new Array<number>(slots).fill(0);
  for (const b of buckets) {
    const i = slots - 1 - (last - Math.floor(Date.parse(b.start) / step));
    if (i >= 0 && i < slots) out[i]! += b[field];
  }
  return out;
}
