import { chunkText } from "../chunking/chunker.js";
import { errorMessage, TargetConfigError } from "../errors.js";
import type {
  ChunkPlanPage,
  ChunkWriteItem,
  ClaimedChunk,
  ClaimedDocument,
  SwapResult,
  Target,
} from "../types.js";
import { batchSizeFor, isTooLarge, learnSuccess, learnTooLarge, splitOnTooLarge } from "./adaptive.js";
import {
  assertDimensions,
  assertProviderMatches,
  type BatchOptions,
  type BatchResult,
  claimAdaptive,
  DEFAULT_LEASE_SECONDS,
  finishBatch,
  NOTHING,
  type PipelineDeps,
} from "./batch-result.js";

/**
 * One batch of a chunked target: a batch of chunks, possibly of several documents.
 *
 *   claim -> (documents due: cut them, record their chunk sets; unchanged chunks keep their vectors)
 *   -> embed the batch's chunks -> write their vectors -> swap in every document now complete
 *   -> record progress.
 *
 * A long document is cut once and its chunks are then spread over as many batches as it takes; the
 * document's chunk rows change only in its swap, one transaction for the whole set. Every write is
 * bounded by the batch size (chunk sets are recorded in pages of PLAN_PAGE_CHUNKS, swaps write pieces
 * of at most the batch size), and a statement timeout splits the piece instead of failing again.
 */

/** Chunks per page of a document's chunk set (text only; one bounded statement per page). */
export const PLAN_PAGE_CHUNKS = 500;

/** The model's longest input when the provider does not say (text-embedding-3-*: 8,191 tokens). */
const DEFAULT_MAX_INPUT_TOKENS = 8191;

/** Cuts documents into pages for embedding_chunk_plan, in document order. */
export function planPages(
  target: Target,
  docs: readonly ClaimedDocument[],
  maxInputTokens: number,
): ChunkPlanPage[] {
  const settings = target.chunks;
  if (!settings)
    throw new TargetConfigError(`target "${target.name}" is not chunked`, "register it with --chunks");
  const pages: ChunkPlanPage[] = [];
  for (const doc of docs) {
    const chunks = chunkText(doc.content, {
      chunkTokens: settings.tokens,
      overlapTokens: settings.overlap,
      maxInputTokens,
    }).map((c) => ({ content: c.content, tokens: c.tokens }));
    if (chunks.length === 0) {
      pages.push({ id: doc.id, hash: doc.hash, from: 0, chunks: [], last: true });
      continue;
    }
    for (let from = 0; from < chunks.length; from += PLAN_PAGE_CHUNKS) {
      const page = chunks.slice(from, from + PLAN_PAGE_CHUNKS);
      pages.push({
        id: doc.id,
        hash: doc.hash,
        from,
        chunks: page,
        last: from + page.length >= chunks.length,
      });
    }
  }
  return pages;
}

export async function processChunkBatch(deps: PipelineDeps, options: BatchOptions): Promise<BatchResult> {
  const { store, provider } = deps;
  const { target, workerId } = options;
  const lease = options.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
  assertProviderMatches(target, provider);

  const { claim, size } = await claimAdaptive(deps, target, batchSizeFor(target, options.batchSize), (n) =>
    store.chunks.claim(target.name, workerId, n, lease, { jobId: options.jobId, ids: options.ids }),
  );
  if (claim.jobStatus && claim.jobStatus !== "running") return { ...NOTHING, stopped: claim.jobStatus };

  const chunks: ClaimedChunk[] = [...claim.chunks];
  const ready = new Set<string>(claim.ready);
  let planned = 0;
  let reused = 0;
  let embedded = 0;
  let tokens = 0;
  let requests = 0;
  let truncated = 0;
  let requeued = 0;
  let failedDocs = 0;
  let latencyMs: number | undefined;
  let split = false;
  const clock = deps.clock ?? (() => performance.now());

  try {
    if (claim.docs.length > 0) {
      // Pages go in pairs of calls at most PLAN_PAGE_CHUNKS * 2 chunks each; the new chunks of
      // documents whose set is complete fill what the batch has left.
      const pages = planPages(target, claim.docs, provider.maxInputTokens ?? DEFAULT_MAX_INPUT_TOKENS);
      for (let i = 0; i < pages.length; ) {
        const group: ChunkPlanPage[] = [];
        let rows = 0;
        while (
          i < pages.length &&
          (group.length === 0 || rows + pages[i]!.chunks.length <= PLAN_PAGE_CHUNKS * 2)
        ) {
          rows += pages[i]!.chunks.length;
          group.push(pages[i]!);
          i++;
        }
        const p = await store.chunks.plan(
          target.name,
          workerId,
          group,
          Math.max(size - chunks.length, 0),
          lease,
        );
        planned += p.planned;
        reused += p.reused;
        chunks.push(...p.chunks);
        for (const id of p.ready) ready.add(id);
        requeued += p.stale.length;
      }
    }

    if (chunks.length > 0) {
      options.signal?.throwIfAborted();
      const began = clock();
      const result = await provider.embed(
        chunks.map((c) => c.content),
        { signal: options.signal },
      );
      latencyMs = clock() - began;
      tokens = result.tokens;
      requests = result.requests;
      if (result.outcomes.length !== chunks.length) {
        throw new TargetConfigError(
          `provider ${provider.name} returned ${result.outcomes.length} results for ${chunks.length} inputs`,
          "this is a provider bug; check the provider's base URL points at an OpenAI-compatible embeddings API",
        );
      }
      if (result.oversized) {
        split = true;
        await learnTooLarge(
          store,
          target,
          chunks.length,
          new Error("the provider answered 413"),
          deps.logger,
        );
      }
      const writes: ChunkWriteItem[] = [];
      const rejected: { id: string; index: number; error: string }[] = [];
      chunks.forEach((chunk, i) => {
        const outcome = result.outcomes[i]!;
        if (!outcome.ok) {
          rejected.push({ id: chunk.id, index: chunk.index, error: outcome.error });
          return;
        }
        assertDimensions(target, outcome.vector.length);
        if (outcome.truncated) truncated++;
        writes.push({
          id: chunk.id,
          index: chunk.index,
          hash: chunk.hash,
          vector: outcome.vector,
          tokens: outcome.tokens,
        });
      });
      const alone: { id: string; index: number; error: string }[] = [];
      const outcome = await splitOnTooLarge(
        writes,
        async (part) => {
          const w = await store.chunks.write(target.name, workerId, part);
          embedded += w.written;
          requeued += w.stale;
          for (const id of w.ready) ready.add(id);
        },
        async (item, err) => {
          alone.push({
            id: item.id,
            index: item.index,
            error: `writing this chunk alone still failed: ${errorMessage(err)}`,
          });
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
      if (alone.length > 0) await store.chunks.fail(target.name, workerId, alone, false);
      if (rejected.length > 0) {
        const f = await store.chunks.fail(target.name, workerId, rejected, true);
        if (f.deadLettered > 0) failedDocs += new Set(rejected.map((r) => r.id)).size;
      }
    }
  } catch (err) {
    await store.chunks.release(target.name, workerId).catch(() => undefined);
    throw err;
  }

  const swap = await swapAdaptive(deps, target, [...ready], size);
  if (swap.failedAt !== null) split = true;
  const touched =
    chunks.length +
    claim.docs.length +
    claim.ready.length +
    claim.skipped +
    claim.deleted +
    claim.empty +
    claim.invalid;
  if (!split && touched >= size) await learnSuccess(store, target, size, options.batchSize, deps.logger);
  const skipped = claim.skipped + claim.empty;
  return finishBatch(
    deps,
    options,
    {
      processed: swap.result.completed.length,
      failed: failedDocs + claim.invalid,
      skipped,
      requeued: requeued + swap.result.stale.length,
      claimed: chunks.length,
      touched,
      tokens,
      requests,
      truncated,
      size,
      chunks: { planned, reused, embedded },
      ...(latencyMs === undefined ? {} : { latencyMs }),
    },
    {
      processed: swap.result.completed.length,
      failed: failedDocs + claim.invalid,
      skipped: skipped + claim.deleted,
      // Documents fail only by dead-lettering (a chunk rejected, content that cannot be cut).
      deadLettered: failedDocs + claim.invalid,
      retried: 0,
      chunksPlanned: planned,
      chunksEmbedded: embedded + reused,
    },
  );
}

/**
 * Swaps documents in, in pieces of the batch size; a statement timeout rolls the document's
 * transaction back and it is tried again with pieces half as large, down to one chunk a statement.
 */
async function swapAdaptive(
  deps: PipelineDeps,
  target: Target,
  ids: string[],
  size: number,
): Promise<{ result: SwapResult; failedAt: number | null }> {
  let failedAt: number | null = null;
  const result: SwapResult = {
    completed: [],
    stale: [],
    gone: [],
    busy: [],
    notReady: [],
    chunks: 0,
    written: 0,
  };
  for (const id of ids) {
    for (let piece = size; ; ) {
      try {
        const r = await deps.store.chunks.swap(target.name, [id], piece);
        for (const key of ["completed", "stale", "gone", "busy", "notReady"] as const)
          result[key].push(...r[key]);
        result.chunks += r.chunks;
        result.written += r.written;
        break;
      } catch (err) {
        if (!isTooLarge(err) || piece <= 1 || !deps.store.api.transaction) throw err;
        failedAt = Math.min(failedAt ?? piece, piece);
        await learnTooLarge(deps.store, target, piece, err, deps.logger);
        piece = Math.max(1, Math.floor(piece / 2));
      }
    }
  }
  return { result, failedAt };
}
