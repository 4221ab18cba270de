import { hostname } from "node:os";
import pRetry from "p-retry";
import type { EmbeddingStore } from "../db/store.js";
import { errorMessage, isRetryable, RateLimitedError } from "../errors.js";
import type { BatchApi } from "../providers/openai-batch.js";
import type { EnqueueResult, Job, RemoteBatchRecord, Target } from "../types.js";
import { type BatchResult, type PipelineDeps, processBatch } from "./batch.js";
import { assertBatchable, type GroupLimits, runRemote } from "./remote-batch.js";

/**
 * In-process driver used by `embeddings run`, the demo and benchmarks: seed the target, then run
 * batches with N concurrent workers until nothing is left. The Inngest functions do the same with
 * durable steps instead of this loop.
 */

export const DEFAULT_SEED_PAGE = 5000;

/** Seeds per-row state page by page (bounded statements) until the whole table is covered. */
export async function seedTarget(
  store: EmbeddingStore,
  target: string,
  options: { reembed?: boolean; pageSize?: number; signal?: AbortSignal; jobId?: string } = {},
): Promise<{ scanned: number; queued: number; alreadyEmbedded: number; pages: number }> {
  let after: string | null = null;
  const totals = { scanned: 0, queued: 0, alreadyEmbedded: 0, pages: 0 };
  for (;;) {
    options.signal?.throwIfAborted();
    const cursor: string | null = after;
    const page: EnqueueResult = await withRetries(
      () =>
        store.enqueue(
          target,
          cursor,
          options.pageSize ?? DEFAULT_SEED_PAGE,
          options.reembed ?? false,
          options.jobId,
        ),
      { signal: options.signal },
    );
    totals.scanned += page.scanned;
    totals.queued += page.queued;
    totals.alreadyEmbedded += page.alreadyEmbedded;
    totals.pages++;
    if (page.done || page.last === null) return totals;
    after = page.last;
  }
}

export interface RunProgress {
  job: Job;
  batch: BatchResult;
  elapsedMs: number;
}

export interface RunOptions {
  target: string;
  batchSize: number;
  parallelism: number;
  reembed?: boolean;
  idempotencyKey?: string;
  kind?: "run" | "backfill";
  leaseSeconds?: number;
  /** Retries of a batch-wide transient failure (provider or database) before the run fails. */
  retries?: number;
  /** Longest wait for rows in retry backoff before returning with them still scheduled. */
  maxWaitMs?: number;
  signal?: AbortSignal;
  onProgress?: (progress: RunProgress) => void;
  onSeeded?: (seed: { scanned: number; queued: number; alreadyEmbedded: number }, job: Job) => void;
  /** `batch`: the rows go through the provider's Batch API first (./remote-batch.ts). */
  via?: "sync" | "batch";
  /** The Batch API (required with `via: "batch"`) and how it is polled. */
  remote?: {
    api: BatchApi;
    pollMs?: number;
    maxPollMs?: number;
    limits?: GroupLimits;
    onPoll?: (records: RemoteBatchRecord[]) => void;
  };
}

export interface RunSummary {
  job: Job;
  seeded: { scanned: number; queued: number; alreadyEmbedded: number };
  elapsedMs: number;
  cancelled: boolean;
  /** Rows still waiting for a retry backoff when the run returned. */
  waiting: boolean;
  /** The Batch API route's remote batches of this job. */
  remoteBatches?: RemoteBatchRecord[];
  /** Interrupted with remote batches still running: the same command resumes them. */
  resumable?: boolean;
  /** Rows whose content was embedded once for several rows: no provider call of their own. */
  reused?: number;
}

export function workerId(jobId: string, n: number): string {
  return `${jobId}:${hostname()}:${process.pid}:${n}`;
}

/** Resolves after `ms`, or at once when `signal` aborts; leaves no listener on the signal behind. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Ctrl-C: the job ends cancelled, its leases go back and its queued rows are parked; running the
 * target again resumes them (its seeding takes back a cancelled job's rows).
 */
async function cancelRun(store: EmbeddingStore, target: string, jobId: string, reason: string): Promise<Job> {
  await store.cancelJob(jobId, reason);
  await store.releasePrefix(target, `${jobId}:`).catch(() => undefined);
  for (let parked = 1; parked > 0; ) parked = (await store.parkJob(jobId)).parked;
  return store.getJob(jobId);
}

/**
 * Waits out a provider's rate limit for as long as it lasts, without spending a retry: a 429 storm
 * slows a run, it never fails it. Other errors go to the caller.
 */
async function throughRateLimits<T>(
  fn: () => Promise<T>,
  signal?: AbortSignal,
  onRateLimited?: () => void,
): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof RateLimitedError) || signal?.aborted) throw err;
      onRateLimited?.();
      await sleep(Math.min(Math.max(err.retryAfterMs ?? 1000, 250), 60_000), signal);
    }
  }
}

/** Retries a call that failed for a transient reason (deadlock, lock timeout, lost connection). */
function withRetries<T>(
  fn: () => Promise<T>,
  options: { retries?: number; signal?: AbortSignal; onRateLimited?: () => void },
): Promise<T> {
  return pRetry(() => throughRateLimits(fn, options.signal, options.onRateLimited), {
    retries: options.retries ?? 6,
    minTimeout: 500,
    maxTimeout: 30_000,
    // Jitter (x1..x2): workers that failed together on one cause (a lock, a restart) must not retry
    // in step. Without it, workers that failed together retried within 10 ms of each other at every
    // backoff and met the same contention each time.
    randomize: true,
    signal: options.signal,
    // A malformed response is retried once, then it is a configuration problem.
    shouldRetry: ({ error, attemptNumber }) => isRetryable(error, { attempt: attemptNumber - 1 }),
    onFailedAttempt: async ({ error }) => {
      // Honour the server's own delay (a 5xx with retry-after) on top of the exponential backoff.
      const after = (error as { retryAfterMs?: number }).retryAfterMs;
      if (after && after > 0) await sleep(Math.min(after, 60_000), options.signal);
    },
  });
}

export async function runTarget(deps: PipelineDeps, options: RunOptions): Promise<RunSummary> {
  const { store } = deps;
  const started = Date.now();
  const target: Target = await store.getTarget(options.target);
  const viaBatch = options.via === "batch";
  if (viaBatch) {
    assertBatchable(target);
    if (!options.remote) throw new Error("runTarget: via batch needs options.remote.api");
  }
  // The Batch API route resumes its unfinished job (a run interrupted while batches were remote).
  const resume = viaBatch ? await resumableJob(store, target.name) : null;
  if (resume)
    return runJob(deps, options, target, resume, started, { scanned: 0, queued: 0, alreadyEmbedded: 0 });
  let job = await store.createJob(target.name, options.kind ?? "run", options.idempotencyKey ?? null, {
    batchSize: options.batchSize,
    parallelism: options.parallelism,
    reembed: options.reembed ?? false,
    ...(viaBatch ? { via: "batch" } : {}),
  });
  let seeded: Awaited<ReturnType<typeof seedTarget>>;
  try {
    seeded = await seedTarget(store, target.name, {
      reembed: options.reembed,
      signal: options.signal,
      jobId: job.id,
    });
  } catch (err) {
    // A job is never left pending without a word: it ends failed (or cancelled on Ctrl-C) with why.
    const cancelled = options.signal?.aborted === true;
    if (cancelled)
      job = await cancelRun(store, target.name, job.id, "cancelled by the operator (Ctrl-C) while seeding");
    else job = await store.finishJob(job.id, "failed", `seeding failed: ${errorMessage(err)}`);
    if (cancelled) {
      return {
        job,
        seeded: { scanned: 0, queued: 0, alreadyEmbedded: 0 },
        elapsedMs: Date.now() - started,
        cancelled: true,
        waiting: false,
      };
    }
    throw Object.assign(err as object, { job });
  }
  job = await store.startJob(job.id);
  options.onSeeded?.(seeded, job);
  return runJob(deps, options, target, job, started, seeded);
}

async function resumableJob(store: EmbeddingStore, target: string): Promise<Job | null> {
  const [active] = await store.remote.list({ target, active: true, limit: 1 });
  if (!active) return null;
  const job = await store.getJob(active.jobId);
  return job.status === "running" ? job : null;
}

/** The started job's work: its remote batches first (via batch), then batches until nothing is left. */
async function runJob(
  deps: PipelineDeps,
  options: RunOptions,
  target: Target,
  startedJob: Job,
  started: number,
  seeded: { scanned: number; queued: number; alreadyEmbedded: number },
): Promise<RunSummary> {
  const { store } = deps;
  let job = startedJob;
  let remoteBatches: RemoteBatchRecord[] | undefined;
  if (options.via === "batch" && options.remote) {
    const r = await runRemote({ store, api: options.remote.api, logger: deps.logger }, target, job.id, {
      limits: options.remote.limits,
      pollMs: options.remote.pollMs,
      maxPollMs: options.remote.maxPollMs,
      signal: options.signal,
      sleep,
      onPoll: options.remote.onPoll,
    });
    remoteBatches = r.records;
    job = await store.getJob(job.id);
    if (r.interrupted) {
      // Ctrl-C while the provider works: the job stays running and its batches stay remote.
      return {
        job,
        seeded,
        elapsedMs: Date.now() - started,
        cancelled: true,
        waiting: false,
        remoteBatches,
        resumable: true,
      };
    }
    if (r.stopped) {
      return {
        job,
        seeded,
        elapsedMs: Date.now() - started,
        cancelled: r.stopped === "cancelled",
        waiting: false,
        remoteBatches,
      };
    }
  }

  let failure: unknown = null;
  let waiting = false;
  // Rows whose content was embedded once for several (copied in SQL, or repeated in a batch).
  let reused = 0;
  const worker = async (n: number) => {
    const id = workerId(job.id, n);
    // 429s since this worker's last recorded batch: the next batch adds them to the history.
    let unrecorded = 0;
    for (;;) {
      if (options.signal?.aborted || failure) return;
      let batch: BatchResult;
      try {
        batch = await withRetries(
          () =>
            processBatch(deps, {
              target,
              workerId: id,
              batchSize: options.batchSize,
              jobId: job.id,
              leaseSeconds: options.leaseSeconds,
              signal: options.signal,
              rateLimited: unrecorded,
            }),
          {
            retries: options.retries,
            signal: options.signal,
            onRateLimited: () => {
              unrecorded++;
            },
          },
        );
        unrecorded = 0;
      } catch (err) {
        if (options.signal?.aborted) return;
        failure ??= err;
        return;
      }
      if (batch.job) job = batch.job;
      reused += batch.reused ?? 0;
      options.onProgress?.({ job, batch, elapsedMs: Date.now() - started });
      if (batch.touched > 0) continue;
      if (batch.complete) return;
      if (batch.nextRetryAt) {
        const wait = Date.parse(batch.nextRetryAt) - Date.now();
        if (wait > (options.maxWaitMs ?? 10 * 60_000)) {
          waiting = true;
          return;
        }
        await sleep(Math.max(wait, 200), options.signal);
        continue;
      }
      // Others hold leases: wait a little for them rather than spinning.
      await sleep(250, options.signal);
    }
  };

  await Promise.all(Array.from({ length: Math.max(1, options.parallelism) }, (_, n) => worker(n)));

  if (options.signal?.aborted) {
    job = await cancelRun(store, target.name, job.id, "cancelled by the operator (Ctrl-C)");
    return { job, seeded, elapsedMs: Date.now() - started, cancelled: true, waiting, remoteBatches };
  }
  if (failure) {
    await store.releasePrefix(target.name, `${job.id}:`).catch(() => undefined);
    job = await store.finishJob(job.id, "failed", errorMessage(failure));
    throw Object.assign(failure as object, { job });
  }
  job = await store.finishJob(job.id, "completed");
  return { job, seeded, elapsedMs: Date.now() - started, cancelled: false, waiting, remoteBatches, reused };
}
