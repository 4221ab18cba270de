import type { EmbeddingStore } from "../db/store.js";
import { errorMessage, InputError } from "../errors.js";
import type { BatchApi } from "../providers/openai-batch.js";
import type { JobStatus } from "../types.js";

/**
 * The operator's actions, shared by the HTTP routes and the CLI so both behave the same.
 * Engine-agnostic: telling Inngest about a cancellation is a callback the caller passes in.
 */

export type RetryScope = "dead-letters" | "rows" | "completed-but-null" | "chunks";

export interface RetryRequest {
  target: string;
  ids?: string[];
  /** With ids: only those that are dead-lettered. Without ids, dead letters are the default scope. */
  deadLetter?: boolean;
  /** Rows marked completed whose embedding is NULL (queue state that disagrees with coverage). */
  completed?: boolean;
  /** A chunked target: these chunks (by index) of the one document in `ids`. */
  chunks?: number[];
  limit?: number;
}

/**
 * Without ids: every dead letter (up to `limit`). With ids: those rows whatever their state
 * (failed, dead_letter, completed) unless `deadLetter`. Never "every row": re-embedding a whole
 * table is `backfill --reembed`, a deliberate, visible job.
 */
export async function retryRows(
  store: EmbeddingStore,
  request: RetryRequest,
): Promise<{ target: string; scope: RetryScope; requeued: number; invalid: string[] }> {
  if (request.completed) {
    if (request.ids?.length)
      throw new InputError("--completed re-queues every completed-but-NULL row: give it without row ids");
    const r = await store.retryCompletedButNull(request.target, request.limit);
    return { target: request.target, scope: "completed-but-null", requeued: r.requeued, invalid: [] };
  }
  if (request.chunks?.length) {
    if (request.ids?.length !== 1)
      throw new InputError(
        "chunks are retried per document: give exactly one document id with the chunk indexes",
      );
    const r = await store.chunks.retry(request.target, request.ids[0]!, request.chunks);
    return { target: request.target, scope: "chunks", requeued: r.requeued, invalid: [] };
  }
  const ids = request.ids?.length ? request.ids : undefined;
  const r = await store.retry(request.target, {
    ids,
    deadLetterOnly: ids ? (request.deadLetter ?? false) : true,
    limit: request.limit,
  });
  return {
    target: request.target,
    scope: ids ? "rows" : "dead-letters",
    requeued: r.requeued,
    invalid: r.invalid,
  };
}

export interface CancelResult {
  jobId: string;
  /** null when the job does not exist yet. */
  target: string | null;
  /** The job existed. False: the cancellation is recorded, and a job with this id is born cancelled. */
  known: boolean;
  /** False when the job had already completed: nothing was changed. */
  cancelled: boolean;
  status: JobStatus;
  previousStatus: JobStatus | null;
  /** Leases of the job's workers given back. */
  released: number;
  /** Queued rows of the job parked: no runner takes them until a later backfill resumes them. */
  parked: number;
  eventSent: boolean;
  eventError?: string;
  /** The Batch API route: remote batches ended (cancelled at the provider) and their rows given back. */
  remote?: { cancelled: number; released: number; errors: string[] };
}

/**
 * Cancels a job, final and immediate: the job ends cancelled (a late failure handler cannot turn it
 * into failed, a Replay cannot revive it), its workers' leases go back, and its queued rows are
 * parked page by page, so no lane, coordinator or sweep makes a provider call for them after this
 * returns (a batch already in flight finishes). A job that does not exist yet (its coordinator has
 * not run) is cancelled ahead. Then the engine is told; that is best effort: every claim reads the
 * job's status anyway.
 */
export async function cancelJob(
  store: EmbeddingStore,
  jobId: string,
  options: {
    reason: string;
    notify?: (job: { id: string; eventId: string | null }) => Promise<void>;
    /** The Batch API of the job's target, to cancel its remote batches (the provider bills them otherwise). */
    batchApiFor?: (target: string) => Promise<BatchApi>;
  },
): Promise<CancelResult> {
  const c = await store.cancelJob(jobId, options.reason);
  if (c.known && !c.cancelled) {
    return {
      jobId,
      target: c.target,
      known: true,
      cancelled: false,
      status: c.status,
      previousStatus: c.previousStatus,
      released: 0,
      parked: 0,
      eventSent: false,
    };
  }
  let released = 0;
  let parked = 0;
  let remote: CancelResult["remote"];
  if (c.known && c.target) {
    remote = await cancelRemoteBatches(store, jobId, c.target, options.batchApiFor);
    released = (await store.releasePrefix(c.target, `${jobId}:`)).released;
    for (;;) {
      const page = await store.parkJob(jobId);
      parked += page.parked;
      if (page.parked === 0) break;
    }
  }
  let eventSent = false;
  let eventError: string | undefined;
  if (options.notify) {
    try {
      await options.notify({ id: jobId, eventId: c.eventId ?? null });
      eventSent = true;
    } catch (err) {
      eventError = errorMessage(err);
    }
  }
  return {
    jobId,
    target: c.target,
    known: c.known,
    cancelled: true,
    status: "cancelled",
    previousStatus: c.previousStatus,
    released,
    parked,
    eventSent,
    ...(eventError ? { eventError } : {}),
    ...(remote && remote.cancelled > 0 ? { remote } : {}),
  };
}

/**
 * Ends a cancelled job's remote batches: in the database first (their rows are parked with the
 * job's), then at the provider, best effort (an unreachable provider is reported, not retried here).
 */
export async function cancelRemoteBatches(
  store: EmbeddingStore,
  jobId: string,
  target: string,
  batchApiFor?: (target: string) => Promise<BatchApi>,
): Promise<{ cancelled: number; released: number; errors: string[] }> {
  const r = await store.remote.cancel(jobId);
  const errors: string[] = [];
  const remote = r.cancelled.filter((b) => b.batchId);
  if (remote.length > 0) {
    let api: BatchApi | undefined;
    try {
      api = batchApiFor ? await batchApiFor(target) : undefined;
      if (!api)
        errors.push("no Batch API configured here: cancel the remote batches on the provider's dashboard");
    } catch (err) {
      errors.push(errorMessage(err));
    }
    for (const b of api ? remote : []) {
      await api!
        .cancel(b.batchId!)
        .catch((err: unknown) => errors.push(`${b.batchId}: ${errorMessage(err)}`));
    }
  }
  return { cancelled: r.cancelled.length, released: r.released, errors };
}
