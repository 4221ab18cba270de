/**
 * In-process rate governor: one instance per process, shared by every concurrent batch that calls the
 * same provider account, so that a backfill runs at the account's limit instead of discovering it
 * through a storm of 429s.
 *
 * Model: two token buckets (requests, tokens). OpenAI enforces per-minute limits over short windows
 * too ("60,000 RPM may be enforced as 1,000 per second"), so a bucket with a known limit holds at most
 * `burstMs` of it (one second by default) and refills continuously at limit/minute. Limits come from
 * options or are learned from the `x-ratelimit-limit-*` headers. Waiters are served strictly in arrival
 * order, so a large request is never starved by a stream of small ones.
 *
 * `x-ratelimit-remaining-*` describes the server's bucket when it admitted the request, which is up to
 * a whole latency before the answer arrives. Each bucket therefore also models the server's bucket as
 * this process's own traffic leaves it; `acquire` hands out that model's level right after the
 * request's debit, and `observe` takes off both levels only what the server reports beyond it: budget
 * spent by other processes on the same key, or a server window shorter than `burstMs`. Setting the
 * level to `remaining` instead would forget the refill during every request's latency (measured at a
 * 300 ms provider, one 24k-token request per cycle: 1.84 s per request instead of 1.54 s).
 *
 * The start (`holdUntilFirstAnswer`): the server's bucket does not refill before it counts this
 * process's first request, and that request is the slowest of all to get there (connections, lazy
 * loading, a cold JIT: round trips of 710-930 ms against 320 ms later, at a 300 ms provider on a
 * loaded machine). Refill counted from the first grant lets requests granted meanwhile reach a server
 * that does not have it (a 429 at batch 100 × 6 in the bench). So refill counts from the first answer
 * instead, and what later, faster answers show was start-up time of the first request is given back
 * (bounded after a request larger than the window, see `credit` in rate-bucket.ts: giving back a whole
 * 362 ms round trip after 20,000-token requests against a 16,667-token second met a 429).
 */

import {
  credit,
  debit,
  type Expected,
  learn,
  MINUTE_MS,
  newBucket,
  refill,
  type Shape,
  waitMs,
} from "./rate-bucket.js";
import { type HeaderSource, headerValue } from "./rate-headers.js";

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
   * Milliseconds of each limit the governor may spend at once (default 1000): what the server holds
   * when it enforces per-minute limits over short windows. 60,000 is a plain per-minute bucket.
   */
  burstMs?: number;
  /**
   * Fraction of every limit's rate left unused (default 0.005). The server's bucket gains that share
   * on the governor's for every second paced at the limit: slack for a token count slightly off the
   * server's. It costs its share of the whole run (0.3 s of a one-minute run).
   */
  headroom?: number;
  /**
   * Fraction of the burst window never spent (default 0.15): requests bunched by network or
   * event-loop jitter by up to burstHeadroom × burstMs (150 ms by default) are still admitted, from
   * the first request on. It costs that much budget once (0.15 s), not a share of the run: the
   * server's bucket just stays that much fuller than the governor's.
   */
  burstHeadroom?: number;
  /**
   * Count no refill between the first grant and the first answer (at most 5 s), then give back what
   * faster answers show was the first request's start-up (see the module comment). Only for callers
   * that `observe` every answer with its permit, as the OpenAI provider does; off by default.
   */
  holdUntilFirstAnswer?: boolean;
  /** Milliseconds clock; injectable for tests. */
  now?: () => number;
  /** Resolves after `ms`, or early when `signal` aborts; injectable for tests. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface RateGovernorSnapshot {
  waiting: number;
  pausedForMs: number;
  /**
   * null when the limit is unknown (not configured and not yet seen in headers); negative while a
   * request larger than the burst window is being paid back.
   */
  requestsAvailable: number | null;
  tokensAvailable: number | null;
}

/** What `acquire` grants: pass it back to `observe` with that request's response headers. */
export interface RatePermit {
  readonly grantedAt: number;
  readonly requests?: Expected;
  readonly tokens?: Expected;
}

export interface RateGovernor {
  /** Resolves when one request carrying `tokens` tokens may be sent; FIFO across all callers. */
  acquire(tokens: number, signal?: AbortSignal): Promise<RatePermit>;
  /**
   * Feed the response headers of every request (successful or not), with its permit when there is
   * one; without it, `remaining` is taken as the level now, which is safe but slower.
   */
  observe(headers: HeaderSource, permit?: RatePermit): void;
  /** After a 429: nobody sends for `ms`, and the buckets restart empty. */
  penalize(ms: number): void;
  snapshot(): RateGovernorSnapshot;
}

/** The share of every limit the governor leaves unused unless told otherwise (see `headroom`). */
export const DEFAULT_HEADROOM = 0.005;
/** The share of the burst window the governor never spends unless told otherwise (see `burstHeadroom`). */
export const DEFAULT_BURST_HEADROOM = 0.15;
/** How much of each limit the governor holds unless told otherwise (see `burstMs`). */
export const DEFAULT_BURST_MS = 1000;

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

/** The longest the refill waits for the first answer (see `holdUntilFirstAnswer`). */
const HOLD_MAX_MS = 5000;
/** Answers to requests sent after the first answer that size the give-back: the first is still slow. */
const WARM_ANSWERS = 3;

/** Where the start of the governor's life is (see `holdUntilFirstAnswer`). */
type Start =
  | { phase: "before" }
  | { phase: "held"; firstGrant: number }
  | { phase: "released"; firstGrant: number; releasedAt: number; roundTrips: number[] }
  | { phase: "done" };

interface Waiter {
  tokens: number;
  resolve: (permit: RatePermit) => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export function createRateGovernor(options: RateGovernorOptions = {}): RateGovernor {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const share = (headroom: number | undefined, fallback: number) =>
    1 - Math.min(0.5, Math.max(0, headroom ?? fallback));
  const shape: Shape = {
    rate: share(options.headroom, DEFAULT_HEADROOM),
    window: share(options.burstHeadroom, DEFAULT_BURST_HEADROOM),
    burstMs: Math.min(MINUTE_MS, Math.max(1, options.burstMs ?? DEFAULT_BURST_MS)),
  };
  const requests = newBucket(options.requestsPerMinute, shape, now());
  const tokens = newBucket(options.tokensPerMinute, shape, now());
  const queue: Waiter[] = [];
  let pumping = false;
  let interruptSleep: (() => void) | undefined;
  let start: Start = { phase: options.holdUntilFirstAnswer ? "before" : "done" };
  /** No refill counts before this. */
  let refillFrom = Number.NEGATIVE_INFINITY;

  function refillBoth(t: number): void {
    refill(requests, t, refillFrom);
    refill(tokens, t, refillFrom);
  }

  /** Ends the hold at the first answer; once warm answers show the real round trip, gives it back. */
  function answered(t: number, permit: RatePermit | undefined, counted: boolean): void {
    if (start.phase === "held") {
      // After HOLD_MAX_MS the refill already counts, from earlier than any answer: nothing to give back.
      start =
        t < refillFrom
          ? { phase: "released", firstGrant: start.firstGrant, releasedAt: t, roundTrips: [] }
          : { phase: "done" };
      refillFrom = Math.min(t, refillFrom);
      interruptSleep?.();
      return;
    }
    if (start.phase !== "released" || !permit || !counted || permit.grantedAt < start.releasedAt) return;
    start.roundTrips.push(t - permit.grantedAt);
    if (start.roundTrips.length < WARM_ANSWERS) return;
    // The server began refilling when it counted the first request, about one warm round trip before
    // that request's answer; refill counted from there on is what it has.
    const ms = Math.min(Math.min(...start.roundTrips), start.releasedAt - start.firstGrant);
    credit(requests, ms);
    credit(tokens, ms);
    start = { phase: "done" };
    interruptSleep?.();
  }

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
        refillBoth(t);
        const wait = Math.max(waitMs(requests, 1, t, refillFrom), waitMs(tokens, head.tokens, t, refillFrom));
        if (wait <= 0) {
          if (start.phase === "before") {
            start = { phase: "held", firstGrant: t };
            refillFrom = t + HOLD_MAX_MS;
          }
          const permit: RatePermit = {
            grantedAt: t,
            requests: debit(requests, 1),
            tokens: debit(tokens, head.tokens),
          };
          queue.shift();
          release(head);
          head.resolve(permit);
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
      return new Promise<RatePermit>((resolve, reject) => {
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

    observe(headers, permit) {
      const t = now();
      refillBoth(t);
      const counted =
        headerValue(headers, "x-ratelimit-remaining-requests") !== undefined ||
        headerValue(headers, "x-ratelimit-remaining-tokens") !== undefined;
      answered(t, permit, counted);
      learn(requests, headers, "requests", permit?.requests, shape, t);
      learn(tokens, headers, "tokens", permit?.tokens, shape, t);
    },

    penalize(ms) {
      if (!(ms > 0)) return;
      const t = now();
      refillBoth(t);
      for (const bucket of [requests, tokens]) {
        bucket.pausedUntil = Math.max(bucket.pausedUntil, t + ms);
        // A 429 proves the local picture was optimistic; restarting empty stops every waiter from
        // bursting the moment the pause ends.
        for (const l of [bucket.pace, bucket.server]) l.level = Math.min(l.level, 0);
      }
    },

    snapshot() {
      const t = now();
      refillBoth(t);
      return {
        waiting: queue.length,
        pausedForMs: Math.max(0, requests.pausedUntil - t, tokens.pausedUntil - t),
        requestsAvailable: requests.limit > 0 ? Math.floor(requests.pace.level) : null,
        tokensAvailable: tokens.limit > 0 ? Math.floor(tokens.pace.level) : null,
      };
    },
  };
}
