import { forWork } from "../lib/logger.js";
import { type InngestClient, laneEventId } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { backfillCancelled, backfillWorker } from "./events.js";
import { batchStep } from "./run-batches.js";

/**
 * One worker lane of a backfill: process-batch-N steps (each a full claim -> embed -> write ->
 * progress through the core pipeline, returning counts only) until nothing is left, then complete
 * the job.
 *
 *   * `lane-start` records this run under its event id. A second run for the same event is a Replay
 *     or Rerun: a failed job is then revived under the next epoch and the other lanes are started
 *     again (new event ids, so Inngest's 24 h dedup cannot drop them). A first run never revives.
 *   * Each claim reads the job's status: a cancelled or failed job stops the lane before any
 *     provider call.
 *   * A provider rate limit is slept out in a step of its own (no attempt spent).
 *   * After maxBatches, or laneWallBudgetMs of work, the lane hands over to a fresh run of itself
 *     (deterministic event id), so no run grows past Inngest's 1,000 steps or its 2 h timeout.
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
      cancelOn: [{ event: backfillCancelled, if: "async.data.jobId == event.data.jobId" }],
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
    async ({ event, step, attempt, runId }) => {
      const { jobId, target, batchSize, lane, generation, maxBatches } = event.data;
      const workerId = `${jobId}:lane-${lane}`;
      const log = (fields: Parameters<typeof forWork>[1]) =>
        deps.logger ? forWork(deps.logger, fields) : undefined;

      const start = await step.run("lane-start", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          const j = await ctx.store.laneStart(
            jobId,
            event.id ?? laneEventId(jobId, event.data.epoch ?? 0, lane, generation),
            runId,
            deps.config.EMBEDDINGS_JOB_STALE_SECONDS,
          );
          if (j.revived)
            log({ jobId, target, step: "lane-start" })?.warn(
              { lane, epoch: j.epoch },
              "job revived by a replay",
            );
          return {
            status: j.status,
            epoch: j.epoch,
            revived: j.revived,
            lanes: j.lanes ?? 1,
            at: Date.now(),
          };
        }),
      );
      if (start.status !== "running") return { jobId, lane, generation, stopped: start.status };
      const epoch = start.epoch;
      if (start.revived && start.lanes > 1) {
        await step.sendEvent(
          "restart-lanes",
          Array.from({ length: start.lanes }, (_, other) => other)
            .filter((other) => other !== lane)
            .map((other) =>
              backfillWorker.create(
                { jobId, target, batchSize, lane: other, generation: 0, epoch, maxBatches },
                { id: laneEventId(jobId, epoch, other, 0) },
              ),
            ),
        );
      }

      let processed = 0;
      let failed = 0;
      let unrecorded = 0;
      for (let n = 0; n < maxBatches; n++) {
        const r = await batchStep(step, deps, `process-batch-${n}`, {
          target,
          workerId,
          batchSize,
          jobId,
          attempt,
          rateLimited: unrecorded,
        });
        if (r.stopped) return { jobId, lane, generation, processed, failed, stopped: r.stopped };
        if (r.claimed > 0) {
          log({ jobId, target, batch: n, step: `process-batch-${n}` })?.info(
            { lane, generation, epoch, claimed: r.claimed, processed: r.processed, failed: r.failed },
            "batch done",
          );
        }
        if (r.rateLimitedMs !== null) {
          unrecorded++;
          await step.sleep(`rate-limit-${n}`, r.rateLimitedMs);
          continue;
        }
        unrecorded = 0;
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
        if (r.at - start.at > limits.laneWallBudgetMs) break;
      }

      await step.sendEvent(
        "hand-over",
        backfillWorker.create(
          { jobId, target, batchSize, lane, generation: generation + 1, epoch, maxBatches },
          { id: laneEventId(jobId, epoch, lane, generation + 1) },
        ),
      );
      return { jobId, lane, generation, epoch, processed, failed, handedOver: true };
    },
  );
}
