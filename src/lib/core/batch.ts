import type { EmbeddingStore } from "../db/store.js";
import { TargetConfigError } from "../errors.js";
import type { EmbeddingProvider } from "../providers/provider.js";
import type { Job, JobStatus, Target, WriteItem } from "../types.js";

/**
 * One batch: claim -> build inputs -> embed -> write -> record progress. Engine-agnostic: the
 * Inngest functions, the CLI and the HTTP batch endpoint all call this same function.
 *
 * Invariants:
 *  - One bad row never fails its batch: rows the provider rejects are dead-lettered alone; the
 *    others are written.
 *  - A batch-wide failure (provider down, rate limited, bad key, database error) releases every
 *    claimed lease without counting an attempt, then rethrows for the caller's retry policy.
 *  - Work per batch is independent of table size: claim and write touch the batch's rows only;
 *    totals come from the job row, never from counting the table.
 */

export interface PipelineDeps {
  store: EmbeddingStore;
  provider: EmbeddingProvider;
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
}

export interface BatchResult {
  /** Rows embedded and written. */
  processed: number;
  /** Rows that failed on their own (dead-lettered or scheduled for retry). */
  failed: number;
  /** Rows completed without a provider call (content unchanged) or with nothing to do. */
  skipped: number;
  /** Rows edited while in flight: queued again, not overwritten. */
  requeued: number;
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
}

const NOTHING: BatchResult = {
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

/** Pauses before writing again rows another transaction held: usually a claim, done in milliseconds. */
const BUSY_RETRY_MS = [50, 150, 400, 1000];

/**
 * Writes a batch, and writes again, after a short pause, the rows another transaction held at that
 * moment (another worker's claim can hold a row for a moment). Rows still held after the pauses
 * belong to a longer transaction, a user editing them, whose commit queues them again: they stay
 * leased to this worker until then (or until the lease expires).
 */
async function writeAll(
  store: EmbeddingStore,
  target: string,
  workerId: string,
  writes: WriteItem[],
  signal?: AbortSignal,
): Promise<{ written: number; stale: number }> {
  let w = await store.write(target, workerId, writes);
  let written = w.written;
  let stale = w.stale;
  for (const pause of BUSY_RETRY_MS) {
    if (w.busy.length === 0 || signal?.aborted) break;
    await new Promise((resolve) => setTimeout(resolve, pause));
    const busy = new Set(w.busy);
    w = await store.write(
      target,
      workerId,
      writes.filter((item) => busy.has(item.id)),
    );
    written += w.written;
    stale += w.stale;
  }
  return { written, stale };
}

export async function processBatch(deps: PipelineDeps, options: BatchOptions): Promise<BatchResult> {
  const { store, provider } = deps;
  const { target, workerId } = options;
  assertProviderMatches(target, provider);

  const claim = await store.claim(
    target.name,
    workerId,
    options.batchSize,
    options.leaseSeconds ?? DEFAULT_LEASE_SECONDS,
    { jobId: options.jobId, ids: options.ids },
  );
  // The claim reports the job's status: a job cancelled or failed elsewhere stops here, before any
  // provider call, with no separate read of the job.
  if (claim.jobStatus && claim.jobStatus !== "running") {
    return { ...NOTHING, stopped: claim.jobStatus };
  }
  const ids = claim.items.map((i) => i.id);
  let processed = 0;
  let failed = 0;
  let requeued = 0;
  let tokens = 0;
  let requests = 0;
  let truncated = 0;

  if (claim.items.length > 0) {
    try {
      options.signal?.throwIfAborted();
      const result = await provider.embed(
        claim.items.map((i) => i.content),
        { signal: options.signal },
      );
      tokens = result.tokens;
      requests = result.requests;
      if (result.outcomes.length !== claim.items.length) {
        throw new TargetConfigError(
          `provider ${provider.name} returned ${result.outcomes.length} results for ${claim.items.length} inputs`,
          "this is a provider bug; check the provider's base URL points at an OpenAI-compatible embeddings API",
        );
      }
      const writes: WriteItem[] = [];
      const rejected: { id: string; error: string }[] = [];
      claim.items.forEach((item, i) => {
        const outcome = result.outcomes[i]!;
        if (!outcome.ok) {
          rejected.push({ id: item.id, error: outcome.error });
          return;
        }
        if (outcome.vector.length !== target.dimensions) {
          throw new TargetConfigError(
            `expected ${target.dimensions} dimensions, got ${outcome.vector.length}`,
            `set the target's provider dimensions to ${target.dimensions} (text-embedding-3-* accept a dimensions parameter), or alter the column to vector(${outcome.vector.length}) and re-register`,
          );
        }
        if (outcome.truncated) truncated++;
        writes.push({
          id: item.id,
          hash: item.hash,
          vector: outcome.vector,
          tokens: outcome.tokens,
          truncated: outcome.truncated,
        });
      });
      if (writes.length > 0) {
        const w = await writeAll(store, target.name, workerId, writes, options.signal);
        processed = w.written;
        requeued = w.stale;
      }
      if (rejected.length > 0) {
        const f = await store.fail(target.name, workerId, rejected, true);
        failed = f.deadLettered + f.failed;
      }
    } catch (err) {
      // Give every lease we still hold back (rows already written are no longer ours, so this only
      // touches the rest), then let the caller decide: retry, back off, or stop the target.
      await store.release(target.name, workerId, ids).catch(() => undefined);
      throw err;
    }
  }

  const skipped = claim.skipped + claim.empty;
  let total = -1;
  let remaining = -1;
  let job: Job | undefined;
  if (options.jobId) {
    job = await store.incrementProgress(options.jobId, processed, {
      failed: failed + claim.empty,
      skipped: claim.skipped + claim.deleted,
      tokens,
      requests,
    });
    total = job.itemsTotal;
    remaining = Math.max(job.itemsTotal - job.itemsProcessed - job.itemsFailed - job.itemsSkipped, 0);
  }
  // A full claim means more work is likely due: skip the summary round trip (one of four per batch)
  // and let the next claim find out. Only a short claim asks whether anything is left.
  const touched = claim.items.length + claim.skipped + claim.deleted + claim.empty;
  const fullClaim = touched >= options.batchSize;
  const summary = fullClaim
    ? { dueNow: true, inFlight: true, nextRetryAt: null }
    : await store.pendingSummary(target.name);
  const waiting = summary.nextRetryAt !== null;
  const complete = !summary.dueNow && !summary.inFlight && !waiting;
  if (complete) remaining = 0;
  return {
    processed,
    failed: failed + claim.empty,
    skipped,
    requeued,
    claimed: claim.items.length,
    touched,
    tokens,
    requests,
    truncated,
    total,
    remaining,
    complete,
    nextRetryAt: summary.nextRetryAt,
    job,
  };
}
