import type { EmbeddingStore } from "../db/store.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Target } from "../types.js";

/**
 * Adaptive batch size. A write or claim that the database cancels for its statement timeout
 * (57014), or a request refused as too large (a gateway's 413, reported as 54000), is not retried at
 * the same size forever: the work is split in halves and each half tried again, down to one row. A
 * row that still fails alone fails on its own (its reason recorded), so the dead-letter recovery
 * retries it later, one row per batch. The size that worked becomes the target's cap (stored on the
 * target, so every worker and every step sees it: status and logs show it), and the cap grows back by
 * half after five full batches at it without a timeout.
 */

/** A failure that a smaller batch may not hit. */
export function isTooLarge(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === "57014" || code === "54000";
}

/** The batch size to use: the size asked for, capped by what the target learned. */
export function batchSizeFor(target: Target, requested: number): number {
  return Math.max(1, Math.min(requested, target.batchLimit ?? requested));
}

export interface SplitOutcome {
  /** The smallest part size that still failed as too large (null: nothing had to be split). */
  failedAt: number | null;
  /** Parts of one item that failed as too large even alone. */
  alone: number;
}

/**
 * Runs `run` over `items`; a too-large failure splits the part in halves, recursively, down to one
 * item, which then goes to `alone` with the error. Other failures are thrown as they are.
 */
export async function splitOnTooLarge<T>(
  items: readonly T[],
  run: (part: readonly T[]) => Promise<void>,
  alone: (item: T, err: unknown) => Promise<void>,
): Promise<SplitOutcome> {
  const outcome: SplitOutcome = { failedAt: null, alone: 0 };
  const go = async (part: readonly T[]): Promise<void> => {
    if (part.length === 0) return;
    try {
      await run(part);
    } catch (err) {
      if (!isTooLarge(err)) throw err;
      outcome.failedAt = Math.min(outcome.failedAt ?? part.length, part.length);
      if (part.length === 1) {
        outcome.alone++;
        await alone(part[0] as T, err);
        return;
      }
      const mid = Math.ceil(part.length / 2);
      await go(part.slice(0, mid));
      await go(part.slice(mid));
    }
  };
  await go(items);
  return outcome;
}

/** Caps the target's batch size after a too-large failure at `failedAt` items. */
export async function learnTooLarge(
  store: EmbeddingStore,
  target: Target,
  failedAt: number,
  err: unknown,
  logger?: Logger,
): Promise<void> {
  const limit = Math.max(1, Math.floor(failedAt / 2));
  if (target.batchLimit !== undefined && target.batchLimit !== null && target.batchLimit <= limit) return;
  const reason = `a batch of ${failedAt} failed: ${errorMessage(err).slice(0, 200)}`;
  target.batchLimit = limit;
  target.batchLimitReason = reason;
  await store.setBatchLimit(target.name, limit, reason);
  logger?.warn(
    { target: target.name, batchLimit: limit, failedAt },
    "batch size reduced after a too-large failure",
  );
}

/** A batch of `size` went through: while the target is capped, counts towards growing the cap back. */
export async function learnSuccess(
  store: EmbeddingStore,
  target: Target,
  size: number,
  requested: number,
  logger?: Logger,
): Promise<void> {
  if (target.batchLimit === undefined || target.batchLimit === null || size < target.batchLimit) return;
  const r = await store.batchLimitSuccess(target.name, size, requested);
  if (r.changed) {
    target.batchLimit = r.batchLimit;
    logger?.info({ target: target.name, batchLimit: r.batchLimit }, "batch size growing back");
  }
}
