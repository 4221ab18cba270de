import type { GetStepTools } from "inngest";
import { processBatch } from "../lib/core/batch.js";
import type { InngestClient } from "./client.js";
import type { FunctionDeps } from "./deps.js";
import { mapped } from "./errors.js";

/**
 * Bounded incremental work for one target inside a scheduled or event-driven run: up to
 * `maxBatches` process-batch steps, stopping as soon as nothing is due. Shared by the sweep,
 * the dead-letter recovery and rows.changed.
 */
export async function runDueBatches(
  step: GetStepTools<InngestClient>,
  deps: FunctionDeps,
  options: {
    target: string;
    prefix: string;
    workerId: string;
    batchSize: number;
    maxBatches: number;
    attempt: number;
  },
): Promise<{ processed: number; failed: number; batches: number }> {
  let processed = 0;
  let failed = 0;
  let batches = 0;
  for (let n = 0; n < options.maxBatches; n++) {
    const r = await step.run(`${options.prefix}-${n}`, () =>
      mapped(options.attempt, async () => {
        const ctx = await deps.context();
        const t = await ctx.store.getTarget(options.target);
        const b = await processBatch(
          { store: ctx.store, provider: deps.providerFor(t) },
          {
            target: t,
            workerId: options.workerId,
            batchSize: options.batchSize,
            leaseSeconds: deps.config.EMBEDDINGS_LEASE_SECONDS,
          },
        );
        return { processed: b.processed, failed: b.failed, touched: b.touched };
      }),
    );
    batches++;
    processed += r.processed;
    failed += r.failed;
    if (r.touched === 0) break;
  }
  return { processed, failed, batches };
}
