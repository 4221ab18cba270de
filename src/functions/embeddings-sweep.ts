import { cron, StepError } from "inngest";
import type { InngestClient } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { runDueBatches } from "./run-batches.js";

/**
 * Every 5 minutes by default: jobs with a stale heartbeat are marked failed with a reason (no job
 * stays "running" forever), then each target's due work (new and edited rows, retries whose
 * backoff passed, leases of crashed workers) is processed in bounded batches. One target failing
 * does not stop the others.
 */
export function embeddingsSweep(inngest: InngestClient, deps: FunctionDeps) {
  const limits = limitsOf(deps);
  return inngest.createFunction(
    {
      id: "embeddings-sweep",
      name: "Embeddings: scheduled sweep",
      triggers: [cron(deps.config.EMBEDDINGS_SWEEP_CRON)],
      retries: 2,
      singleton: { mode: "skip" },
      timeouts: { finish: "30m" },
    },
    async ({ step, runId, attempt }) => {
      const expired = await step.run("expire-stale-jobs", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          return (await ctx.store.expireJobs(deps.config.EMBEDDINGS_JOB_STALE_SECONDS)).expired;
        }),
      );
      const targets = await step.run("list-targets", () =>
        mapped(attempt, async () => (await (await deps.context()).store.listTargets()).map((t) => t.name)),
      );
      const results: Record<string, { processed: number; failed: number } | { error: string }> = {};
      for (const target of targets) {
        try {
          results[target] = await runDueBatches(step, deps, {
            target,
            prefix: `sweep-${target}`,
            workerId: `sweep:${runId}`,
            batchSize: deps.config.EMBEDDINGS_BATCH_SIZE,
            maxBatches: limits.sweepBatches,
            attempt,
          });
        } catch (err) {
          if (!(err instanceof StepError)) throw err;
          results[target] = { error: err.message };
        }
      }
      return { expiredJobs: expired.length, targets: results };
    },
  );
}
