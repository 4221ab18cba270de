import type { InngestClient } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { rowsChanged } from "./events.js";
import { runDueBatches } from "./run-batches.js";

/**
 * embeddings/rows.changed: an application or a database webhook wants changes embedded now rather
 * than at the next sweep. Given ids are marked due (content hashes kept, so an unchanged row still
 * costs no provider call), with the event's priority when it has one; then due work for the target
 * is processed in bounded batches, highest priority first.
 */
export function embeddingsRowsChanged(inngest: InngestClient, deps: FunctionDeps) {
  const limits = limitsOf(deps);
  return inngest.createFunction(
    {
      id: "embeddings-rows-changed",
      name: "Embeddings: rows changed",
      triggers: [rowsChanged],
      retries: 4,
      concurrency: { limit: 2, key: "event.data.target" },
      timeouts: { finish: "30m" },
    },
    async ({ event, step, runId, attempt }) => {
      const { target, ids, priority } = event.data;
      // Ids that are not valid keys of the table are reported in the run's output, never stored.
      const marked =
        ids && ids.length > 0
          ? await step.run("mark-pending", () =>
              mapped(attempt, async () =>
                (await deps.context()).store.markPending(target, ids.map(String), priority),
              ),
            )
          : { marked: 0, invalid: [] as string[] };
      if (marked.invalid.length > 0 && deps.logger) {
        deps.logger.warn(
          { target, invalid: marked.invalid.slice(0, 20), count: marked.invalid.length },
          "invalid ids skipped",
        );
      }
      const r = await runDueBatches(step, deps, {
        target,
        prefix: "process-batch",
        workerId: `changed:${runId}`,
        batchSize: deps.config.EMBEDDINGS_BATCH_SIZE,
        maxBatches: limits.sweepBatches,
        attempt,
      });
      return { target, marked: marked.marked, invalid: marked.invalid, ...r };
    },
  );
}
