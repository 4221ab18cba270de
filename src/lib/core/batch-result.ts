import type { EmbeddingStore } from "../db/store.js";
import { TargetConfigError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { EmbeddingProvider } from "../providers/provider.js";
import type { Job, JobStatus, PendingSummary, Target } from "../types.js";
import { isTooLarge, learnTooLarge } from "./adaptive.js";

/** What one batch needs, whichever runner drives it (Inngest, the CLI, the HTTP batch endpoint). */
export interface PipelineDeps {
  store: EmbeddingStore;
  provider: EmbeddingProvider;
  /** Batch-size changes are logged here (counts and ids only). */
  logger?: Logger;
  /** Milliseconds for provider latency (default performance.now). */
  clock?: () => number;
}

export interface BatchOptions {
  target: Target;
  workerId: string;
  batchSize: number;
  jobId?: string;
  leaseSeconds?: number;
  /** Only these rows (the dead-letter recovery processes exactly the rows it queued again). */
  ids?: readonly string[];
  signal?: AbortSignal;
  /**
   * Provider 429s the runner met since its last batch that got this far: a rate-limited batch ends
   * before its progress call, so the next one records them in the history.
   */
  rateLimited?: number;
}

export interface BatchResult {
  /** Rows (for a chunked target: documents) embedded and written. */
  processed: number;
  /** Rows that failed on their own (dead-lettered or scheduled for retry). */
  failed: number;
  /** Rows completed without a provider call (content unchanged) or with nothing to do. */
  skipped: number;
  /** Rows edited while in flight: queued again, not overwritten. */
  requeued: number;
  /** Inputs sent to the provider (rows, or chunks). */
  claimed: number;
  /** Rows this call took off the queue in any way (embedded, skipped, deleted, empty): 0 = nothing was due. */
  touched: number;
  tokens: number;
  requests: number;
  truncated: number;
  /** From the job's counters when there is a job; otherwise -1 (unknown, nothing was counted). */
  total: number;
  remaining: number;
  /** Nothing due, nothing in flight, nothing waiting for a retry. */
  complete: boolean;
  /** When rows are waiting for a backoff to pass: the earliest time one becomes due. */
  nextRetryAt: string | null;
  /** The job after this batch's counters were added (when there is a job). */
  job?: Job;
  /** The job is no longer running (cancelled, failed, completed elsewhere): nothing was claimed. */
  stopped?: JobStatus;
  /** The batch size used (the target's adaptive cap may have made it smaller than asked). */
  size: number;
  /** Chunked targets: chunks cut, chunks that kept a vector they had, chunks embedded now. */
  chunks?: { planned: number; reused: number; embedded: number };
  /**
   * Rows whose content was embedded once for several: copied from another row of the target that
   * already had it (in SQL, at the claim), or a repeat of another row's text in this batch.
   */
  reused?: number;
  /** 429s recorded with this batch (the ones met before it: BatchOptions.rateLimited). */
  rateLimited?: number;
  /** How long the provider's embed call took (absent when no call was made). */
  latencyMs?: number;
}

export const NOTHING: BatchResult = {
  processed: 0,
  failed: 0,
  skipped: 0,
  requeued: 0,
  claimed: 0,
  touched: 0,
  tokens: 0,
  requests: 0,
  truncated: 0,
  total: -1,
  remaining: -1,
  complete: false,
  nextRetryAt: null,
  size: 0,
};

export const DEFAULT_LEASE_SECONDS = 300;

/** A target never silently falls back to another provider, model or dimension. */
export function assertProviderMatches(target: Target, provider: EmbeddingProvider): void {
  if (provider.name !== target.provider || provider.model !== target.model) {
    throw new TargetConfigError(
      `target "${target.name}" is registered for ${target.provider}/${target.model} but the worker was given ${provider.name}/${provider.model}`,
      `configure the ${target.provider} provider, or re-register the target with --provider ${provider.name} --model ${provider.model}`,
    );
  }
  if (provider.dimensions !== target.dimensions) {
    throw new TargetConfigError(
      `target "${target.name}" expects ${target.dimensions} dimensions but the provider is set to ${provider.dimensions}`,
      `set the provider's dimensions to ${target.dimensions}, or alter the column and re-register`,
    );
  }
}

/** The vector has the target's dimension, or the whole batch stops with both numbers. */
export function assertDimensions(target: Target, got: number): void {
  if (got !== target.dimensions) {
    throw new TargetConfigError(
      `expected ${target.dimensions} dimensions, got ${got}`,
      `set the target's provider dimensions to ${target.dimensions} (text-embedding-3-* accept a dimensions parameter), or alter the column to vector(${got}) and re-register`,
    );
  }
}

/**
 * A claim, halved until the database answers in time: a claim cancelled by a statement timeout
 * leased nothing (its transaction rolled back), so a smaller one can simply follow.
 */
export async function claimAdaptive<T>(
  deps: PipelineDeps,
  target: Target,
  size: number,
  claim: (n: number) => Promise<T>,
): Promise<{ claim: T; size: number }> {
  for (let n = size; ; ) {
    try {
      return { claim: await claim(n), size: n };
    } catch (err) {
      if (!isTooLarge(err) || n <= 1) throw err;
      await learnTooLarge(deps.store, target, n, err, deps.logger);
      n = Math.max(1, Math.floor(n / 2));
    }
  }
}

export interface BatchProgress {
  processed: number;
  failed: number;
  skipped: number;
  deadLettered: number;
  retried: number;
  chunksPlanned?: number;
  chunksEmbedded?: number;
}

/** What a batch's write already recorded with itself (store.writeCounted): its counts and answer. */
export interface RecordedProgress {
  counts: BatchProgress;
  response: (Job | { target: string }) & { pending?: PendingSummary };
}

/** The counts the batch's one progress call sends (with `short`, it also asks what is left). */
export function progressCounts(
  options: BatchOptions,
  result: Pick<BatchResult, "tokens" | "requests" | "latencyMs">,
  progress: BatchProgress,
  short: boolean,
) {
  return {
    failed: progress.failed,
    skipped: progress.skipped,
    tokens: result.tokens,
    requests: result.requests,
    deadLettered: progress.deadLettered,
    retried: progress.retried,
    rateLimited: options.rateLimited,
    latencyMs: result.latencyMs,
    latencyCount: result.latencyMs === undefined ? 0 : 1,
    chunksPlanned: progress.chunksPlanned,
    chunksEmbedded: progress.chunksEmbedded,
    pendingSummary: short,
  };
}

/**
 * The end of every batch: the job's counters and the target's history bucket (one atomic call),
 * and whether anything is left. A full claim means more work is likely due: the summary is not
 * asked and the next claim finds out. A short claim asks for it inside the same call. A batch
 * without a job records its history the same way (job_id NULL); one that did nothing records none.
 * The one call this adds: a full batch without a job (a sweep, rows.changed or recovery working
 * through a backlog, POST /batch without a jobId) had no end-of-batch call, and now has this one.
 */
export async function finishBatch(
  deps: PipelineDeps,
  options: BatchOptions,
  result: Omit<BatchResult, "total" | "remaining" | "complete" | "nextRetryAt" | "job">,
  progress: BatchProgress,
  recorded?: RecordedProgress,
): Promise<BatchResult> {
  let total = -1;
  let remaining = -1;
  let job: Job | undefined;
  const short = result.touched < result.size;
  let processed = progress.processed;
  let counts = progressCounts(options, result, progress, short);
  let response: RecordedProgress["response"] | undefined;
  if (recorded) {
    // The write recorded the batch; only what happened after it (rows written on a retry of rows
    // another transaction held, rows that failed alone) is still to count.
    const r = recorded.counts;
    processed -= r.processed;
    counts = {
      ...progressCounts(
        options,
        { tokens: 0, requests: 0 },
        {
          processed: 0,
          failed: progress.failed - r.failed,
          skipped: progress.skipped - r.skipped,
          deadLettered: progress.deadLettered - r.deadLettered,
          retried: progress.retried - r.retried,
        },
        short,
      ),
      rateLimited: undefined,
    };
    if (processed === 0 && counts.failed === 0 && counts.skipped === 0) response = recorded.response;
  }
  let pending: PendingSummary | undefined;
  if (response) {
    pending = response.pending;
    if (options.jobId) job = stripPending(response) as Job;
  } else if (options.jobId) {
    const { pending: p, ...j } = await deps.store.incrementProgress(options.jobId, processed, counts);
    job = j;
    pending = p;
  } else if (
    processed + counts.failed + counts.tokens + counts.requests + (counts.rateLimited ?? 0) > 0 ||
    counts.latencyMs !== undefined
  ) {
    pending = (await deps.store.recordHistory(options.target.name, processed, counts)).pending;
  }
  if (job) {
    total = job.itemsTotal;
    remaining = Math.max(job.itemsTotal - job.itemsProcessed - job.itemsFailed - job.itemsSkipped, 0);
  }
  const summary = !short
    ? { dueNow: true, inFlight: true, nextRetryAt: null }
    : (pending ?? (await deps.store.pendingSummary(options.target.name)));
  const waiting = summary.nextRetryAt !== null;
  const complete = !summary.dueNow && !summary.inFlight && !waiting;
  if (complete) remaining = 0;
  return {
    ...result,
    total,
    remaining,
    complete,
    nextRetryAt: summary.nextRetryAt,
    job,
    ...(options.rateLimited ? { rateLimited: options.rateLimited } : {}),
  };
}

function stripPending<T extends { pending?: unknown }>(value: T): Omit<T, "pending"> {
  const { pending: _pending, ...rest } = value;
  return rest;
}
