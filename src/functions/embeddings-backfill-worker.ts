import { processBatch } from "../lib/core/batch.js";
import { forWork } from "../lib/logger.js";
import type { InngestClient } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { backfillCancelled, backfillWorker } from "./events.js";

/**
 * One worker lane of a backfill: process-batch-N steps (each a full claim -> embed -> write ->
 * progress through the core pipeline, returning counts only) until nothing is left, then complete
 * the job. After maxBatches it hands over to a fresh run of itself (deterministic event id), so no
 * run grows past Inngest's 1,000-step limit or replays a long history.
 */
export function embeddingsBackfillWorker(inngest: InngestClient, deps: FunctionDeps) {
  const limits = limitsOf(deps);
  return inngest.createFunction(
    {
      id: "embeddings-backfill-worker",
      name: "Embeddings: backfill worker lane",
      triggers: [backfillWorker],
      retries: 5,
      concurrency: { limit: limits.workerConcurrency, key: "event.data.target" },
      cancelOn: [{ event: backfillCancelled, match: "data.jobId" }],
      timeouts: { finish: "2h" },
      onFailure: async ({ event, error, step }) => {
        const { jobId, target } = event.data.event.data;
        await step.run("mark-job-failed", async () => {
          const ctx = await deps.context();
          await ctx.store.releasePrefix(target, `${jobId}:`).catch(() => undefined);
          const job = await ctx.store.finishJob(jobId, "failed", error.message);
          return { status: job.status };
        });
      },
    },
    async ({ event, step, attempt }) => {
      const { jobId, target, batchSize, lane, generation, maxBatches } = event.data;
      const workerId = `${jobId}:lane-${lane}`;
      let processed = 0;
      let failed = 0;

      for (let n = 0; n < maxBatches; n++) {
        const r = await step.run(`process-batch-${n}`, () =>
          mapped(attempt, async () => {
            const ctx = await deps.context();
            // Cooperative cancellation: a job cancelled or failed elsewhere stops here, before any
            // provider call.
            const job = await ctx.store.getJob(jobId);
            if (job.status !== "running")
              return {
                stop: job.status,
                processed: 0,
                failed: 0,
                claimed: 0,
                touched: 0,
                complete: false,
                waitMs: 0,
              };
            const t = await ctx.store.getTarget(target);
            const b = await processBatch(
              { store: ctx.store, provider: deps.providerFor(t) },
              { target: t, workerId, batchSize, jobId, leaseSeconds: deps.config.EMBEDDINGS_LEASE_SECONDS },
            );
            if (deps.logger) {
              forWork(deps.logger, { jobId, target, batch: n, step: `process-batch-${n}` }).info(
                {
                  lane,
                  generation,
                  claimed: b.claimed,
                  processed: b.processed,
                  failed: b.failed,
                  skipped: b.skipped,
                  tokens: b.tokens,
                },
                "batch done",
              );
            }
            const waitMs = b.nextRetryAt
              ? Math.min(Math.max(Date.parse(b.nextRetryAt) - Date.now(), 1000), 300_000)
              : 5000;
            return {
              stop: null,
              processed: b.processed,
              failed: b.failed,
              claimed: b.claimed,
              touched: b.touched,
              complete: b.complete,
              waitMs,
            };
          }),
        );
        if (r.stop) return { jobId, lane, generation, processed, failed, stopped: r.stop };
        processed += r.processed;
        failed += r.failed;
        if (r.complete) {
          const done = await step.run("complete-job", () =>
            mapped(attempt, async () => {
              const ctx = await deps.context();
              const j = await ctx.store.finishJob(jobId, "completed");
              return { status: j.status };
            }),
          );
          return { jobId, lane, generation, processed, failed, job: done.status };
        }
        // Nothing claimable right now: other lanes hold the rest, or rows wait for a retry backoff.
        if (r.touched === 0) await step.sleep(`wait-${n}`, r.waitMs);
      }

      await step.sendEvent(
        "hand-over",
        backfillWorker.create(
          { jobId, target, batchSize, lane, generation: generation + 1, maxBatches },
          { id: `${jobId}-lane-${lane}-gen-${generation + 1}` },
        ),
      );
      return { jobId, lane, generation, processed, failed, handedOver: true };
    },
  );
}
