import type { GetStepTools } from "inngest";
import { processBatch } from "../lib/core/batch.js";
import { RateLimitedError } from "../lib/errors.js";
import type { JobStatus } from "../lib/types.js";
import type { InngestClient } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";

type Step = GetStepTools<InngestClient>;

/** What one batch step returns: counts and timings only, never rows or vectors. */
export interface BatchStepResult {
  stopped: JobStatus | null;
  processed: number;
  failed: number;
  claimed: number;
  touched: number;
  complete: boolean;
  /** When nothing was claimable: how long to wait before the next batch. */
  waitMs: number;
  /** The provider asked to slow down: sleep this long, then carry on (costs no attempt). */
  rateLimitedMs: number | null;
  /** When the step ran (Date.now()), so a run can budget its wall time deterministically. */
  at: number;
}

/**
 * One `process-batch`-style step: claim -> embed -> write -> progress through the core pipeline.
 * A provider rate limit is not a failure: the step succeeds with `rateLimitedMs`, its leases already
 * given back, and the caller sleeps that long in a step of its own (a sleep costs no attempt, so a
 * 429 storm of any length slows a job and never fails it). Everything else is mapped once.
 */
export function batchStep(
  step: Step,
  deps: FunctionDeps,
  id: string,
  options: {
    target: string;
    workerId: string;
    batchSize: number;
    attempt: number;
    jobId?: string;
    ids?: readonly string[];
    /** 429s of the steps before this one since the last that recorded a batch (history only). */
    rateLimited?: number;
  },
): Promise<BatchStepResult> {
  return step.run(id, () =>
    mapped(options.attempt, async () => {
      const at = Date.now();
      const ctx = await deps.context();
      const t = await ctx.store.getTarget(options.target);
      try {
        const b = await processBatch(
          { store: ctx.store, provider: deps.providerFor(t) },
          {
            target: t,
            workerId: options.workerId,
            batchSize: options.batchSize,
            jobId: options.jobId,
            ids: options.ids,
            leaseSeconds: deps.config.EMBEDDINGS_LEASE_SECONDS,
            rateLimited: options.rateLimited,
          },
        );
        const waitMs = b.nextRetryAt
          ? Math.min(Math.max(Date.parse(b.nextRetryAt) - Date.now(), 1000), 300_000)
          : 5000;
        return {
          stopped: b.stopped ?? null,
          processed: b.processed,
          failed: b.failed,
          claimed: b.claimed,
          touched: b.touched,
          complete: b.complete,
          waitMs,
          rateLimitedMs: null,
          at,
        };
      } catch (err) {
        if (!(err instanceof RateLimitedError)) throw err;
        return {
          stopped: null,
          processed: 0,
          failed: 0,
          claimed: 0,
          touched: 0,
          complete: false,
          waitMs: 0,
          rateLimitedMs: Math.min(
            Math.max(err.retryAfterMs ?? 1000, 1000),
            limitsOf(deps).rateLimitSleepMaxMs,
          ),
          at,
        };
      }
    }),
  );
}

/**
 * Bounded incremental work for one target inside a scheduled or event-driven run: up to
 * `maxBatches` batch steps (plus a sleep after each rate-limited one), stopping as soon as nothing
 * is due. Shared by the per-target sweep, rows.changed and the recovery. At most 2 steps per batch.
 */
export async function runDueBatches(
  step: Step,
  deps: FunctionDeps,
  options: {
    target: string;
    prefix: string;
    workerId: string;
    batchSize: number;
    maxBatches: number;
    attempt: number;
    /** Only these rows, one batch each (the recovery's requeued dead letters). */
    ids?: readonly string[];
  },
): Promise<{ processed: number; failed: number; batches: number; rateLimited: number }> {
  let processed = 0;
  let failed = 0;
  let batches = 0;
  let rateLimited = 0;
  let unrecorded = 0;
  // Every attempt, rate-limited or not, spends budget: a 429 storm ends the run early (the rows stay
  // due for the next one) instead of growing it past Inngest's step limit.
  for (let n = 0, k = 0; n < options.maxBatches; n++) {
    const only = options.ids ? options.ids.slice(k, k + options.batchSize) : undefined;
    if (options.ids && only?.length === 0) break;
    const r = await batchStep(step, deps, `${options.prefix}-${n}`, {
      target: options.target,
      workerId: options.workerId,
      batchSize: options.batchSize,
      attempt: options.attempt,
      ids: only,
      rateLimited: unrecorded,
    });
    batches++;
    if (r.rateLimitedMs !== null) {
      rateLimited++;
      unrecorded++;
      await step.sleep(`${options.prefix}-rate-limit-${n}`, r.rateLimitedMs);
      continue;
    }
    unrecorded = 0;
    k += options.batchSize;
    processed += r.processed;
    failed += r.failed;
    if (!options.ids && r.touched === 0) break;
  }
  return { processed, failed, batches, rateLimited };
}
