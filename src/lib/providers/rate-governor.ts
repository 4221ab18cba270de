/**
 * In-process rate governor: one instance per process, shared by every concurrent batch that calls the
 * same provider account, so that a backfill runs at the account's limit instead of discovering it
 * through a storm of 429s.
 *
 * Model: two token buckets (requests, tokens). A bucket with a known limit refills continuously at
 * limit/minute, which is how OpenAI enforces RPM/TPM. Limits come from options or are learned from the
 * `x-ratelimit-limit-*` headers; `x-ratelimit-remaining-*` only ever lowers the local level, because the
 * server also sees traffic from other processes on the same key. Waiters are served strictly in arrival
 * order, so a large request is never starved by a stream of small ones.
 */

import { type HeaderSource, headerNumber, headerValue, parseResetDuration } from "./rate-headers.js";

export {
  type HeaderSource,
  headerValue,
  parseResetDuration,
  retryAfterMsFromHeaders,
} from "./rate-headers.js";

export interface RateGovernorOptions {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
  /**
   * Fraction of every limit left unused (default 0.05). Pacing at exactly the limit leaves the server's
   * bucket empty, so ordinary network jitter bunching two requests turns into a 429; a few percent of
   * slack absorbs it.
   */
  headroom?: number;
  /** Milliseconds clock; injectable for tests. */
  now?: () => number;
  /** Resolves after `ms`, or early when `signal` aborts; injectable for tests. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface RateGovernorSnapshot {
  waiting: number;
  pausedForMs: number;
  /** null when the limit is unknown (not configured and not yet seen in headers). */
  requestsAvailable: number | null;
  tokensAvailable: number | null;
}

export interface RateGovernor {
  /** Resolves when one request carrying `tokens` tokens may be sent; FIFO across all callers. */
  acquire(tokens: number, signal?: AbortSignal): Promise<void>;
  /** Feed the response headers of every request (successful or not). */
  observe(headers: HeaderSource): void;
  /** After a 429: nobody sends for `ms`, and the buckets restart empty. */
  penalize(ms: number): void;
  snapshot(): RateGovernorSnapshot;
}

const MINUTE_MS = 60_000;

/** The share of every limit the governor leaves unused unless told otherwise (see `headroom`). */
export const DEFAULT_HEADROOM = 0.05;

interface Bucket {
  /** 0 = limit unknown: only pauses apply. */
  ratePerMs: number;
  capacity: number;
  level: number;
  updatedAt: number;
  pausedUntil: number;
  configured: boolean;
}

function newBucket(perMinute: number | undefined, usable: number, now: number): Bucket {
  const known = perMinute !== undefined && perMinute > 0;
  return {
    ratePerMs: known ? (perMinute * usable) / MINUTE_MS : 0,
    capacity: known ? perMinute * usable : Number.POSITIVE_INFINITY,
    level: known ? perMinute * usable : Number.POSITIVE_INFINITY,
    updatedAt: now,
    pausedUntil: 0,
    configured: known,
  };
}

function refill(bucket: Bucket, now: number): void {
  if (bucket.ratePerMs > 0 && now > bucket.updatedAt) {
    bucket.level = Math.min(bucket.capacity, bucket.level + (now - bucket.updatedAt) * bucket.ratePerMs);
  }
  bucket.updatedAt = Math.max(bucket.updatedAt, now);
}

/** Floating-point slack so that sleeping exactly the computed wait is always enough. */
const EPSILON = 1e-6;

function waitMs(bucket: Bucket, need: number, now: number): number {
  let wait = Math.max(0, bucket.pausedUntil - now);
  if (bucket.ratePerMs > 0) {
    // A request bigger than the whole bucket could never pass; let it through when the bucket is full.
    const n = Math.min(need, bucket.capacity);
    if (bucket.level + EPSILON < n) wait = Math.max(wait, Math.ceil((n - bucket.level) / bucket.ratePerMs));
  }
  return wait;
}

function debit(bucket: Bucket, need: number): void {
  if (bucket.ratePerMs > 0) bucket.level -= Math.min(need, bucket.capacity);
}

function learn(
  bucket: Bucket,
  headers: HeaderSource,
  kind: "requests" | "tokens",
  usable: number,
  now: number,
): void {
  refill(bucket, now);
  const limit = headerNumber(headers, `x-ratelimit-limit-${kind}`);
  if (!bucket.configured && limit !== undefined && limit > 0) {
    const capacity = limit * usable;
    if (bucket.ratePerMs === 0) bucket.level = capacity;
    bucket.capacity = capacity;
    bucket.level = Math.min(bucket.level, capacity);
    bucket.ratePerMs = capacity / MINUTE_MS;
  }
  const remaining = headerNumber(headers, `x-ratelimit-remaining-${kind}`);
  if (remaining === undefined) return;
  if (bucket.ratePerMs > 0) {
    // With a known rate, an empty bucket waits only for the refill the next request needs; pausing
    // until the full reset (time to refill the whole minute) would roughly halve throughput.
    bucket.level = Math.min(bucket.level, Math.max(0, remaining));
    return;
  }
  if (remaining <= 0) {
    const raw = headerValue(headers, `x-ratelimit-reset-${kind}`);
    const reset = raw === undefined ? undefined : parseResetDuration(raw);
    if (reset !== undefined) bucket.pausedUntil = Math.max(bucket.pausedUntil, now + reset);
  }
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

interface Waiter {
  tokens: number;
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export function createRateGovernor(options: RateGovernorOptions = {}): RateGovernor {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const usable = 1 - Math.min(0.5, Math.max(0, options.headroom ?? DEFAULT_HEADROOM));
  const requests = newBucket(options.requestsPerMinute, usable, now());
  const tokens = newBucket(options.tokensPerMinute, usable, now());
  const queue: Waiter[] = [];
  let pumping = false;
  let interruptSleep: (() => void) | undefined;

  function release(waiter: Waiter): void {
    if (waiter.onAbort) waiter.signal?.removeEventListener("abort", waiter.onAbort);
  }

  // One loop serves the queue head at a time; this is what makes the governor FIFO and keeps the
  // number of timers at one regardless of how many batches are waiting.
  async function pump(): Promise<void> {
    pumping = true;
    try {
      while (queue.length > 0) {
        const head = queue[0]!;
        const t = now();
        refill(requests, t);
        refill(tokens, t);
        const wait = Math.max(waitMs(requests, 1, t), waitMs(tokens, head.tokens, t));
        if (wait <= 0) {
          debit(requests, 1);
          debit(tokens, head.tokens);
          queue.shift();
          release(head);
          head.resolve();
          continue;
        }
        const interrupt = new AbortController();
        interruptSleep = () => interrupt.abort();
        await sleep(wait, interrupt.signal);
        interruptSleep = undefined;
      }
    } catch (err) {
      for (const waiter of queue.splice(0)) {
        release(waiter);
        waiter.reject(err);
      }
    } finally {
      pumping = false;
    }
  }

  return {
    acquire(count, signal) {
      if (signal?.aborted) return Promise.reject(signal.reason);
      const need = Number.isFinite(count) && count > 0 ? count : 0;
      return new Promise<void>((resolve, reject) => {
        const waiter: Waiter = { tokens: need, resolve, reject, signal };
        if (signal) {
          waiter.onAbort = () => {
            const index = queue.indexOf(waiter);
            if (index < 0) return;
            queue.splice(index, 1);
            reject(signal.reason);
            // The head may have changed; let the loop recompute instead of sleeping for a gone waiter.
            if (index === 0) interruptSleep?.();
          };
          signal.addEventListener("abort", waiter.onAbort, { once: true });
        }
        queue.push(waiter);
        if (!pumping) void pump();
      });
    },

    observe(headers) {
      const t = now();
      learn(requests, headers, "requests", usable, t);
      learn(tokens, headers, "tokens", usable, t);
    },

    penalize(ms) {
      if (!(ms > 0)) return;
      const t = now();
      for (const bucket of [requests, tokens]) {
        refill(bucket, t);
        bucket.pausedUntil = Math.max(bucket.pausedUntil, t + ms);
        // A 429 proves the local picture was optimistic; restarting empty stops every waiter from
        // bursting the moment the pause ends.
        if (bucket.ratePerMs > 0) bucket.level = Math.min(bucket.level, 0);
      }
    },

    snapshot() {
      const t = now();
      refill(requests, t);
      refill(tokens, t);
      return {
        waiting: queue.length,
        pausedForMs: Math.max(0, requests.pausedUntil - t, tokens.pausedUntil - t),
        requestsAvailable: requests.ratePerMs > 0 ? Math.floor(requests.level) : null,
        tokensAvailable: tokens.ratePerMs > 0 ? Math.floor(tokens.level) : null,
      };
    },
  };
}
