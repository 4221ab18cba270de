import type { EmbeddingStore } from "../db/store.js";
import { errorMessage, InputError } from "../errors.js";
import type { Job, JobStatus } from "../types.js";

/**
 * The operator's actions, shared by the HTTP routes and the CLI so both behave the same.
 * Engine-agnostic: telling Inngest about a cancellation is a callback the caller passes in.
 */

export type RetryScope = "dead-letters" | "rows" | "completed-but-null";

export interface RetryRequest {
  target: string;
  ids?: string[];
  /** With ids: only those that are dead-lettered. Without ids, dead letters are the default scope. */
  deadLetter?: boolean;
  /** Rows marked completed whose embedding is NULL (queue state that disagrees with coverage). */
  completed?: boolean;
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
  target: string;
  /** False when the job had already finished as completed or failed: nothing was changed. */
  cancelled: boolean;
  status: JobStatus;
  previousStatus: JobStatus;
  released: number;
  eventSent: boolean;
  eventError?: string;
}

/**
 * Marks a job cancelled (final: a late failure handler cannot turn it back into failed), gives its
 * leases back so other workers can take the rows at once instead of waiting for the lease to
 * expire, then notifies the engine. The notification is best effort: worker lanes also stop on their
 * own at the next batch, because they read the job's status first.
 */
export async function cancelJob(
  store: EmbeddingStore,
  jobId: string,
  options: { reason: string; notify?: (job: Job) => Promise<void> },
): Promise<CancelResult> {
  const before = await store.getJob(jobId);
  if (before.status === "completed" || before.status === "failed") {
    return {
      jobId,
      target: before.target,
      cancelled: false,
      status: before.status,
      previousStatus: before.status,
      released: 0,
      eventSent: false,
    };
  }
  const job = await store.finishJob(jobId, "cancelled", options.reason);
  const { released } = await store.releasePrefix(job.target, `${job.id}:`);
  let eventSent = false;
  let eventError: string | undefined;
  if (options.notify) {
    try {
      await options.notify(job);
      eventSent = true;
    } catch (err) {
      eventError = errorMessage(err);
    }
  }
  return {
    jobId,
    target: job.target,
    cancelled: job.status === "cancelled",
    status: job.status,
    previousStatus: before.status,
    released,
    eventSent,
    ...(eventError ? { eventError } : {}),
  };
}
