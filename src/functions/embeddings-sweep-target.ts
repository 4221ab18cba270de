import type { InngestClient } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { targetSweep } from "./events.js";
import { runDueBatches } from "./run-batches.js";

/**
 * One target's share of a sweep: its due work (new and edited rows, retries whose backoff passed,
 * leases of crashed workers) in up to `sweepBatches` batches, at most two steps each. A target whose
 * previous sweep is still at work skips this one (singleton per target) instead of piling up.
 */
export function embeddingsSweepTarget(inngest: InngestClient, deps: FunctionDeps) {
  const limits = limitsOf(deps);
  return inngest.createFunction(
    {
      id: "embeddings-sweep-target",
      name: "Embeddings: sweep one target",
      triggers: [targetSweep],
      retries: 2,
      singleton: { mode: "skip", key: "event.data.target" },
      timeouts: { finish: "30m" },
    },
    async ({ event, step, runId, attempt }) => {
      const { target } = event.data;
      const r = await runDueBatches(step, deps, {
        target,
        prefix: "sweep",
        workerId: `sweep:${runId}`,
        batchSize: deps.config.EMBEDDINGS_BATCH_SIZE,
        maxBatches: limits.sweepBatches,
        attempt,
      });
      return { target, ...r };
    },
  );
}
