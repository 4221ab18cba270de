/**
 * The arithmetic of one rate-governor bucket (rate-governor.ts): the governor's own level, paced
 * below the limit, and its model of the server's bucket, both debited when a request is granted.
 */

import { type HeaderSource, headerNumber, headerValue, parseResetDuration } from "./rate-headers.js";

export const MINUTE_MS = 60_000;

/** The server's level as this process's own traffic would leave it, right after a request's debit. */
export interface Expected {
  level: number;
  /** The bucket's `corrected` total at that moment. */
  corrected: number;
}

interface Level {
  capacity: number;
  ratePerMs: number;
  level: number;
}

export interface Bucket {
  /** Per minute; 0 = unknown: only pauses apply. */
  limit: number;
  configured: boolean;
  /** What this process may spend: (1 - headroom) of the rate, (1 - burstHeadroom) of the window. */
  pace: Level;
  /** The server's bucket as this process's own traffic leaves it: the whole limit and window. */
  server: Level;
  updatedAt: number;
  pausedUntil: number;
  /** Total taken off both levels because the server reported less than the model. */
  corrected: number;
  /** What the last granted request took. */
  lastNeed: number;
}

/** Floating-point slack so that sleeping exactly the computed wait is always enough. */
const EPSILON = 1e-6;

/** How the governor's own bucket is sized against the server's. */
export interface Shape {
  /** Share of the rate paced at: 1 - headroom. */
  rate: number;
  /** Share of the burst window held: 1 - burstHeadroom. */
  window: number;
  burstMs: number;
}

function sized(limit: number, rate: number, window: number, burstMs: number): Level {
  const capacity = (limit * window * burstMs) / MINUTE_MS;
  return { capacity, ratePerMs: (limit * rate) / MINUTE_MS, level: capacity };
}

function setLimit(bucket: Bucket, limit: number, shape: Shape): void {
  const known = bucket.limit > 0;
  const pace = sized(limit, shape.rate, shape.window, shape.burstMs);
  const server = sized(limit, 1, 1, shape.burstMs);
  // A bucket learned late starts full; a changed limit keeps what is left, within the new window.
  if (known) {
    pace.level = Math.min(pace.capacity, bucket.pace.level);
    server.level = Math.min(server.capacity, bucket.server.level);
  }
  Object.assign(bucket, { limit, pace, server });
}

export function newBucket(perMinute: number | undefined, shape: Shape, now: number): Bucket {
  const bucket: Bucket = {
    limit: 0,
    configured: false,
    pace: { capacity: 0, ratePerMs: 0, level: 0 },
    server: { capacity: 0, ratePerMs: 0, level: 0 },
    updatedAt: now,
    pausedUntil: 0,
    corrected: 0,
    lastNeed: 0,
  };
  if (perMinute !== undefined && perMinute > 0) {
    setLimit(bucket, perMinute, shape);
    bucket.configured = true;
  }
  return bucket;
}

/** Adds `ms` of refill to both levels. */
export function add(bucket: Bucket, ms: number): void {
  if (bucket.limit === 0 || !(ms > 0)) return;
  for (const l of [bucket.pace, bucket.server]) l.level = Math.min(l.capacity, l.level + ms * l.ratePerMs);
}

/**
 * Adds refill the server is known to have had (the governor's give-back after its start). A request
 * larger than the window empties a server that charges at most the window, whatever it had banked,
 * so no more is added than keeps the next grant a whole window, plus the burst headroom, after it.
 */
export function credit(bucket: Bucket, ms: number): void {
  const { pace, server } = bucket;
  if (bucket.limit === 0) return;
  let most = ms;
  if (bucket.lastNeed > pace.capacity) {
    const spacing = Math.min(bucket.lastNeed, pace.ratePerMs * MINUTE_MS) / pace.ratePerMs;
    const window = (2 * server.capacity - pace.capacity) / server.ratePerMs;
    most = Math.min(most, spacing - window);
  }
  add(bucket, most);
}

/** Refills up to `now`; no refill counts before `from` (the governor's hold at the start). */
export function refill(bucket: Bucket, now: number, from = Number.NEGATIVE_INFINITY): void {
  add(bucket, now - Math.max(bucket.updatedAt, from));
  bucket.updatedAt = Math.max(bucket.updatedAt, now);
}

export function waitMs(bucket: Bucket, need: number, now: number, refillFrom: number): number {
  let wait = Math.max(0, bucket.pausedUntil - now);
  if (bucket.limit > 0) {
    const { pace } = bucket;
    // A request bigger than the whole window could never pass; it goes when the bucket is full.
    const n = Math.min(need, pace.capacity);
    if (pace.level + EPSILON < n) {
      const held = Math.max(0, refillFrom - now);
      wait = Math.max(wait, held + Math.ceil((n - pace.level) / pace.ratePerMs - EPSILON));
    }
  }
  return wait;
}

/**
 * Takes the whole request, so a request bigger than the window leaves the bucket in debt and the
 * average stays at the limit (clamping it to the window would send a 300k-token request per second
 * against a 1M TPM limit). No request costs more than a minute of the limit: the server refuses those.
 */
export function debit(bucket: Bucket, need: number): Expected | undefined {
  bucket.lastNeed = need;
  if (bucket.limit === 0) return undefined;
  for (const l of [bucket.pace, bucket.server]) l.level -= Math.min(need, l.ratePerMs * MINUTE_MS);
  return { level: bucket.server.level, corrected: bucket.corrected };
}

function correct(bucket: Bucket, remaining: number, expected: Expected | undefined): void {
  const { pace, server } = bucket;
  if (!expected) {
    // Sent before the limit was known: nothing to compare with, so take the report as it stands.
    pace.level = Math.min(pace.level, remaining);
    server.level = Math.min(server.level, remaining);
    return;
  }
  // Jitter in when the server counted this request moves its report by up to the burst headroom
  // either way: that is not someone else's traffic. (`remaining` is rounded down, which
  // only ever errs towards taking off a fraction too much.)
  const tolerance = server.capacity - pace.capacity;
  const takenSince = bucket.corrected - expected.corrected;
  const excess = expected.level - remaining - takenSince - tolerance;
  if (excess <= 0) return;
  pace.level -= excess;
  server.level -= excess;
  bucket.corrected += excess;
}

export function learn(
  bucket: Bucket,
  headers: HeaderSource,
  kind: "requests" | "tokens",
  expected: Expected | undefined,
  shape: Shape,
  now: number,
): void {
  const limit = headerNumber(headers, `x-ratelimit-limit-${kind}`);
  if (!bucket.configured && limit !== undefined && limit > 0 && limit !== bucket.limit) {
    setLimit(bucket, limit, shape);
  }
  const remaining = headerNumber(headers, `x-ratelimit-remaining-${kind}`);
  if (remaining === undefined) return;
  if (bucket.limit > 0) {
    // `remaining` only ever lowers the levels: the server also sees traffic from other processes.
    correct(bucket, Math.max(0, remaining), expected);
    return;
  }
  if (remaining <= 0) {
    const raw = headerValue(headers, `x-ratelimit-reset-${kind}`);
    const reset = raw === undefined ? undefined : parseResetDuration(raw);
    if (reset !== undefined) bucket.pausedUntil = Math.max(bucket.pausedUntil, now + reset);
  }
}
