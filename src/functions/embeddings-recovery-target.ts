import type { InngestClient } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { targetRecover } from "./events.js";
import { runDueBatches } from "./run-batches.js";

/**
 * One target's dead-letter recovery: up to `recoveryRows` dead letters whose failure was transient
 * (timeouts, 5xx, crashed leases) get their attempts back, and exactly those rows are processed one
 * row per batch (the claim names them, so a backlog of other rows cannot take their place), so one
 * huge row cannot time out a whole write. Permanent failures (the provider rejected the input) stay
 * until a person forces a retry.
 */
export function embeddingsRecoveryTarget(inngest: InngestClient, deps: FunctionDeps) {
  const limits = limitsOf(deps);
  return inngest.createFunction(
    {
      id: "embeddings-recovery-target",
      name: "Embeddings: recover one target's dead letters",
      triggers: [targetRecover],
      retries: 2,
      singleton: { mode: "skip", key: "event.data.target" },
      timeouts: { finish: "1h" },
    },
    async ({ event, step, runId, attempt }) => {
      const { target } = event.data;
      const { ids } = await step.run("requeue", () =>
        mapped(attempt, async () =>
          (await deps.context()).store.retry(target, {
            deadLetterOnly: true,
            transientOnly: true,
            limit: limits.recoveryRows,
          }),
        ),
      );
      if (ids.length === 0) return { target, requeued: 0, processed: 0, failed: 0 };
      const r = await runDueBatches(step, deps, {
        target,
        prefix: "recover",
        workerId: `recovery:${runId}`,
        batchSize: 1,
        maxBatches: ids.length + Math.ceil(ids.length / 4),
        attempt,
        ids,
      });
      return { target, requeued: ids.length, ...r };
    },
  );
}
