import type {
  ChunkClaimResult,
  ChunkPlanPage,
  ChunkPlanResult,
  ChunkWriteItem,
  SwapResult,
} from "../types.js";
import type { SqlApi } from "./types.js";
import { VectorList } from "./vector.js";

interface SwapBegin {
  state: "ready" | "busy" | "not-ready" | "gone" | "stale";
  count?: number;
  changed?: number;
  hash?: string;
}

const EMPTY_SWAP = (): SwapResult => ({
  completed: [],
  stale: [],
  gone: [],
  busy: [],
  notReady: [],
  chunks: 0,
  written: 0,
});

/**
 * Typed calls of the chunked targets' SQL API (supabase/migrations/20261201120*): claim, plan,
 * write, fail, release, retry and the swap. Like EmbeddingStore, no SQL here.
 */
export class ChunkStore {
  constructor(readonly api: SqlApi) {}

  claim(
    target: string,
    worker: string,
    limit: number,
    leaseSeconds: number,
    options: { ids?: readonly string[]; jobId?: string } = {},
  ): Promise<ChunkClaimResult> {
    return this.api.call<ChunkClaimResult>("embedding_chunk_claim", {
      p_target: target,
      p_worker: worker,
      p_limit: limit,
      p_lease_seconds: leaseSeconds,
      p_ids: options.ids,
      p_job: options.jobId,
    });
  }

  /** Records pages of documents' chunk sets; leases up to `take` of the new due chunks. */
  plan(
    target: string,
    worker: string,
    pages: readonly ChunkPlanPage[],
    take: number,
    leaseSeconds: number,
  ): Promise<ChunkPlanResult> {
    return this.api.call<ChunkPlanResult>("embedding_chunk_plan", {
      p_target: target,
      p_worker: worker,
      p_docs: { pages } as Record<string, unknown>,
      p_take: take,
      p_lease_seconds: leaseSeconds,
    });
  }

  write(
    target: string,
    worker: string,
    items: readonly ChunkWriteItem[],
  ): Promise<{ written: number; stale: number; ready: string[] }> {
    return this.api.call("embedding_chunk_write", {
      p_target: target,
      p_worker: worker,
      p_ids: items.map((i) => i.id),
      p_indexes: items.map((i) => i.index),
      p_hashes: items.map((i) => i.hash),
      p_vectors: new VectorList(items.map((i) => i.vector)),
      p_tokens: items.map((i) => i.tokens ?? null),
    });
  }

  fail(
    target: string,
    worker: string,
    failures: readonly { id: string; index: number; error: string }[],
    permanent: boolean,
  ): Promise<{ failed: number; deadLettered: number }> {
    return this.api.call("embedding_chunk_fail", {
      p_target: target,
      p_worker: worker,
      p_ids: failures.map((f) => f.id),
      p_indexes: failures.map((f) => f.index),
      p_errors: failures.map((f) => f.error),
      p_permanent: permanent,
    });
  }

  release(target: string, worker: string): Promise<{ released: number }> {
    return this.api.call("embedding_chunk_release", { p_target: target, p_worker: worker });
  }

  /** Queues again given chunks of one document (all its failed ones when `indexes` is omitted). */
  retry(
    target: string,
    id: string,
    indexes?: readonly number[],
  ): Promise<{ requeued: number; indexes: number[] }> {
    return this.api.call("embedding_chunk_retry", { p_target: target, p_id: id, p_indexes: indexes ?? null });
  }

  /**
   * Swaps each document's new chunk set in. On a direct connection: one transaction per document,
   * its chunk rows written in statements of at most `piece` rows (a statement timeout bounds a piece,
   * and the caller retries with smaller pieces). Over PostgREST (no multi-statement transactions): one
   * call that swaps them all.
   */
  async swap(target: string, ids: readonly string[], piece: number): Promise<SwapResult> {
    const out = EMPTY_SWAP();
    if (ids.length === 0) return out;
    const transaction = this.api.transaction?.bind(this.api);
    if (!transaction) {
      const r = await this.api.call<SwapResult>("embedding_chunk_finalize", {
        p_target: target,
        p_ids: [...ids],
      });
      return { ...out, ...r };
    }
    for (const id of ids) {
      const state = await transaction(async (tx) => {
        const begin = await tx.call<SwapBegin>("embedding_chunk_swap_begin", { p_target: target, p_id: id });
        if (begin.state !== "ready") return begin.state;
        const count = begin.count ?? 0;
        for (let from = 0; from < count; from += piece) {
          const part = await tx.call<{ written: number }>("embedding_chunk_swap_part", {
            p_target: target,
            p_id: id,
            p_hash: begin.hash ?? "",
            p_from: from,
            p_to: Math.min(from + piece, count) - 1,
          });
          out.written += part.written;
        }
        const end = await tx.call<{ state: string; chunks: number }>("embedding_chunk_swap_end", {
          p_target: target,
          p_id: id,
          p_hash: begin.hash ?? "",
        });
        if (end.state === "completed") out.chunks += end.chunks;
        return end.state === "completed" ? "completed" : "stale";
      });
      const key = state === "not-ready" ? "notReady" : state;
      (out[key as "completed" | "stale" | "gone" | "busy" | "notReady"] as string[]).push(id);
    }
    return out;
  }
}
