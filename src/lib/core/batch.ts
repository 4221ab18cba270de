import type { EmbeddingStore } from "../db/store.js";
import { errorMessage, TargetConfigError } from "../errors.js";
import type { WriteItem, WriteResult } from "../types.js";
import { batchSizeFor, learnSuccess, learnTooLarge, splitOnTooLarge } from "./adaptive.js";
import {
  assertDimensions,
  assertProviderMatches,
  type BatchOptions,
  type BatchProgress,
  type BatchResult,
  claimAdaptive,
  DEFAULT_LEASE_SECONDS,
  finishBatch,
  NOTHING,
  type PipelineDeps,
  progressCounts,
  type RecordedProgress,
} from "./batch-result.js";
import { processChunkBatch } from "./chunk-batch.js";

export {
  assertProviderMatches,
  type BatchOptions,
  type BatchResult,
  DEFAULT_LEASE_SECONDS,
  type PipelineDeps,
} from "./batch-result.js";

/**
 * One batch: claim -> build inputs -> embed -> write -> record progress. Engine-agnostic: the
 * Inngest functions, the CLI and the HTTP batch endpoint all call this same function. A chunked
 * target's batch is a batch of chunks (./chunk-batch.ts).
 *
 * Invariants:
 *  - One bad row never fails its batch: rows the provider rejects are dead-lettered alone; the
 *    others are written.
 *  - A batch-wide failure (provider down, rate limited, bad key, database error) releases every
 *    claimed lease without counting an attempt, then rethrows for the caller's retry policy.
 *  - A statement timeout or a too-large request splits the work instead of failing it again at the
 *    same size (./adaptive.ts); the target remembers the size that worked.
 *  - Work per batch is independent of table size: claim and write touch the batch's rows only;
 *    totals come from the job row, never from counting the table.
 */
export async function processBatch(deps: PipelineDeps, options: BatchOptions): Promise<BatchResult> {
  if (options.target.chunks) return processChunkBatch(deps, options);
  const { store, provider } = deps;
  const { target, workerId } = options;
  assertProviderMatches(target, provider);

  const { claim, size } = await claimAdaptive(deps, target, batchSizeFor(target, options.batchSize), (n) =>
    store.claim(target.name, workerId, n, options.leaseSeconds ?? DEFAULT_LEASE_SECONDS, {
      jobId: options.jobId,
      ids: options.ids,
    }),
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
  let deadLettered = claim.empty;
  let retried = 0;
  let latencyMs: number | undefined;
  let split = false;
  let repeats = 0;
  let recorded: RecordedProgress | undefined;
  const clock = deps.clock ?? (() => performance.now());

  if (claim.items.length > 0) {
    try {
      options.signal?.throwIfAborted();
      // Identical texts in one batch go to the provider once; every row with that text gets its vector.
      const slot = new Map<string, number>();
      const texts: string[] = [];
      const slots = claim.items.map((item) => {
        let n = slot.get(item.hash);
        if (n === undefined) {
          n = texts.push(item.content) - 1;
          slot.set(item.hash, n);
        }
        return n;
      });
      repeats = claim.items.length - texts.length;
      const began = clock();
      const embedded = await provider.embed(texts, { signal: options.signal });
      latencyMs = clock() - began;
      tokens = embedded.tokens;
      requests = embedded.requests;
      if (embedded.outcomes.length !== texts.length) {
        throw new TargetConfigError(
          `provider ${provider.name} returned ${embedded.outcomes.length} results for ${texts.length} inputs`,
          "this is a provider bug; check the provider's base URL points at an OpenAI-compatible embeddings API",
        );
      }
      const result = { ...embedded, outcomes: slots.map((n) => embedded.outcomes[n]!) };
      if (result.oversized) {
        split = true;
        await learnTooLarge(
          store,
          target,
          claim.items.length,
          new Error("the provider answered 413"),
          deps.logger,
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
        assertDimensions(target, outcome.vector.length);
        if (outcome.truncated) truncated++;
        writes.push({
          id: item.id,
          hash: item.hash,
          vector: outcome.vector,
          tokens: outcome.tokens,
          truncated: outcome.truncated,
        });
      });
      const alone: { id: string; error: string }[] = [];
      // The steady state (every row embedded): the write records the batch's progress with itself,
      // so a batch is two round trips, the claim and this.
      const carry: BatchProgress | undefined =
        rejected.length === 0
          ? {
              processed: 0,
              failed: claim.empty,
              skipped: claim.skipped + claim.deleted,
              deadLettered: claim.empty,
              retried: 0,
            }
          : undefined;
      const outcome = await splitOnTooLarge(
        writes,
        async (part) => {
          const counted =
            carry && part === writes && !recorded
              ? {
                  jobId: options.jobId ?? null,
                  counts: progressCounts(
                    options,
                    { tokens, requests, latencyMs },
                    carry,
                    claim.items.length + claim.skipped + claim.deleted + claim.empty < size,
                  ),
                }
              : undefined;
          const w = await writeAll(store, target.name, workerId, part, options.signal, counted);
          processed += w.written;
          requeued += w.stale;
          if (w.recorded)
            recorded = { counts: { ...carry!, processed: w.firstWritten }, response: w.recorded };
        },
        async (item, err) => {
          alone.push({ id: item.id, error: `writing this row alone still failed: ${errorMessage(err)}` });
        },
      );
      if (outcome.failedAt !== null) {
        split = true;
        await learnTooLarge(
          store,
          target,
          outcome.failedAt,
          new Error("the write hit the statement timeout"),
          deps.logger,
        );
      }
      if (alone.length > 0) {
        const f = await store.fail(target.name, workerId, alone, false);
        failed += f.deadLettered + f.failed;
        deadLettered += f.deadLettered;
        retried += f.failed;
      }
      if (rejected.length > 0) {
        const f = await store.fail(target.name, workerId, rejected, true);
        failed += f.deadLettered + f.failed;
        deadLettered += f.deadLettered;
        retried += f.failed;
      }
    } catch (err) {
      // Give every lease we still hold back (rows already written are no longer ours, so this only
      // touches the rest), then let the caller decide: retry, back off, or stop the target.
      await store.release(target.name, workerId, ids).catch(() => undefined);
      throw err;
    }
  }

  const touched = claim.items.length + claim.skipped + claim.deleted + claim.empty;
  if (!split && touched >= size) await learnSuccess(store, target, size, options.batchSize, deps.logger);
  return finishBatch(
    deps,
    options,
    {
      processed,
      failed: failed + claim.empty,
      skipped: claim.skipped + claim.empty,
      requeued,
      claimed: claim.items.length,
      touched,
      tokens,
      requests,
      truncated,
      size,
      reused: (claim.reused ?? 0) + repeats,
      ...(latencyMs === undefined ? {} : { latencyMs }),
    },
    {
      processed,
      failed: failed + claim.empty,
      skipped: claim.skipped + claim.deleted,
      deadLettered,
      retried,
    },
    recorded,
  );
}

/** Pauses before writing again rows another transaction held: usually a claim, done in milliseconds. */
const BUSY_RETRY_MS = [50, 150, 400, 1000];

/**
 * Writes a batch, and writes again, after a short pause, the rows another transaction held at that
 * moment (another worker's claim can hold a row for a moment). Rows still held after the pauses
 * belong to a longer transaction, a user editing them, whose commit queues them again: they stay
 * leased to this worker until then (or until the lease expires).
 */
export async function writeAll(
  store: EmbeddingStore,
  target: string,
  workerId: string,
  writes: readonly WriteItem[],
  signal?: AbortSignal,
  counted?: { jobId: string | null; counts: Parameters<EmbeddingStore["writeCounted"]>[4] },
): Promise<{
  written: number;
  stale: number;
  firstWritten: number;
  recorded?: RecordedProgress["response"];
}> {
  let recorded: RecordedProgress["response"] | undefined;
  let w: WriteResult;
  if (counted) {
    const r = await store.writeCounted(target, workerId, writes, counted.jobId, counted.counts);
    recorded = r.progress;
    w = r;
  } else w = await store.write(target, workerId, writes);
  const firstWritten = w.written;
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
  return { written, stale, firstWritten, recorded };
}
