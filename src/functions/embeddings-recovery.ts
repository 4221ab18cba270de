import { cron, StepError } from "inngest";
import type { InngestClient } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { runDueBatches } from "./run-batches.js";

/**
 * Every 6 hours by default, the durable backup worker: dead-lettered rows
 * whose failure was transient (timeouts, 5xx, crashed leases) get their attempts back and are
 * processed one row per batch, so one huge row cannot time out a whole write. Permanent failures
 * (the provider rejected the input) stay until a person forces a retry.
 */
export function embeddingsRecovery(inngest: InngestClient, deps: FunctionDeps) {
  const limits = limitsOf(deps);
  return inngest.createFunction(
    {
      id: "embeddings-recovery",
      name: "Embeddings: dead-letter recovery",
      triggers: [cron(deps.config.EMBEDDINGS_RECOVERY_CRON)],
      retries: 2,
      singleton: { mode: "skip" },
      timeouts: { finish: "1h" },
    },
    async ({ step, runId, attempt }) => {
      const targets = await step.run("list-targets", () =>
        mapped(attempt, async () => (await (await deps.context()).store.listTargets()).map((t) => t.name)),
      );
      const results: Record<
        string,
        { requeued: number; processed: number; failed: number } | { error: string }
      > = {};
      for (const target of targets) {
        try {
          const { requeued } = await step.run(`requeue-${target}`, () =>
            mapped(attempt, async () =>
              (await deps.context()).store.retry(target, {
                deadLetterOnly: true,
                transientOnly: true,
                limit: limits.recoveryRows,
              }),
            ),
          );
          if (requeued === 0) {
            results[target] = { requeued, processed: 0, failed: 0 };
            continue;
          }
          const r = await runDueBatches(step, deps, {
            target,
            prefix: `recover-${target}`,
            workerId: `recovery:${runId}`,
            batchSize: 1,
            maxBatches: requeued,
            attempt,
          });
          results[target] = { requeued, processed: r.processed, failed: r.failed };
        } catch (err) {
          if (!(err instanceof StepError)) throw err;
          results[target] = { error: err.message };
        }
      }
      return { targets: results };
    },
  );
}
