import type { HistoryBucket, TargetHistory } from "./types.js";

/**
 * GET /history buckets -> the values the charts plot. Pure functions of the history, the status
 * snapshot's figures and its database time (`end`), so what a chart draws can be recomputed from the
 * database by a test.
 */

export interface Range {
  key: string;
  label: string;
  since: string;
  step: string;
  stepMinutes: number;
}

/** 60, 96 and 28 points: dense enough to see a slowdown, few enough to draw a circle per point. */
export const RANGES: Range[] = [
  { key: "1h", label: "Last hour", since: "1h", step: "1m", stepMinutes: 1 },
  { key: "24h", label: "Last day", since: "24h", step: "15m", stepMinutes: 15 },
  { key: "7d", label: "Last week", since: "7d", step: "6h", stepMinutes: 360 },
];
export const COST_RANGE: Range = {
  key: "cost",
  label: "Last week",
  since: "7d",
  step: "1d",
  stepMinutes: 1440,
};

export interface Point {
  start: string;
  value: number | null;
}

/**
 * Every step from `since` to `end`, with its bucket or null. The SQL bins minutes with
 * date_bin(step, minute, 2000-01-01 UTC); that origin is a whole number of days after the Unix
 * epoch, so flooring epoch milliseconds to the step gives the same starts.
 */
export function slots(h: TargetHistory, end: string): { start: string; bucket: HistoryBucket | null }[] {
  const step = h.stepMinutes * 60_000;
  const byStart = new Map(h.buckets.map((b) => [Date.parse(b.start), b]));
  const first = Math.floor(Date.parse(h.since) / step) * step;
  const last = Math.max(Math.floor(Date.parse(end) / step) * step, first);
  const out: { start: string; bucket: HistoryBucket | null }[] = [];
  for (let t = first; t <= last; t += step) {
    out.push({ start: new Date(t).toISOString(), bucket: byStart.get(t) ?? null });
  }
  // A bucket outside the span (a clock ahead of the database's) is still drawn, never dropped.
  for (const [t, b] of byStart) {
    if (t < first || t > last) out.push({ start: new Date(t).toISOString(), bucket: b });
  }
  return out.sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
}

/** Rows embedded per step. */
export const throughput = (h: TargetHistory, end: string): Point[] =>
  slots(h, end).map((s) => ({ start: s.start, value: s.bucket?.embedded ?? 0 }));

/**
 * Rows left at the end of each step, reconstructed backwards from the rows left now (pending +
 * processing + waiting to retry): at the end of a step, the rows left now plus every row embedded or
 * dead-lettered in the steps after it. Rows queued meanwhile (inserts, updates, retries an operator
 * asked for) are not in the history, so the line is what the backlog would have been without them;
 * the chart says so.
 */
export function backlog(h: TargetHistory, end: string, remainingNow: number): Point[] {
  const s = slots(h, end);
  const out: Point[] = new Array(s.length);
  let later = 0;
  for (let i = s.length - 1; i >= 0; i--) {
    out[i] = { start: s[i]!.start, value: remainingNow + later };
    later += (s[i]!.bucket?.embedded ?? 0) + (s[i]!.bucket?.deadLettered ?? 0);
  }
  return out;
}

const pct = (part: number, whole: number) => (whole > 0 ? Math.round((10_000 * part) / whole) / 100 : null);

/** Failed rows as a share of rows attempted (embedded + failed), in percent; null with no attempt. */
export const failureRate = (h: TargetHistory, end: string): Point[] =>
  slots(h, end).map((s) => ({
    start: s.start,
    value: s.bucket ? pct(s.bucket.failed, s.bucket.embedded + s.bucket.failed) : null,
  }));

/** Provider calls answered 429 as a share of calls (answered + 429), in percent; null with no call. */
export const rateLimitRate = (h: TargetHistory, end: string): Point[] =>
  slots(h, end).map((s) => ({
    start: s.start,
    value: s.bucket ? pct(s.bucket.rateLimited, s.bucket.requests + s.bucket.rateLimited) : null,
  }));

/** USD per day: the day's tokens at the target's list price; null values when the price is unknown. */
export const costPerDay = (h: TargetHistory, end: string, pricePerMillion: number | null): Point[] =>
  slots(h, end).map((s) => ({
    start: s.start,
    value:
      pricePerMillion === null
        ? null
        : Math.round(((s.bucket?.tokens ?? 0) / 1_000_000) * pricePerMillion * 1e6) / 1e6,
  }));
