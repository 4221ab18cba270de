import { NonRetriableError } from "inngest";
import { forWork } from "../lib/logger.js";
import { preflight } from "../lib/ops/preflight.js";
import type { InngestClient } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { backfillCancelled, backfillRequested, backfillWorker } from "./events.js";
import { planBackfill } from "./plan.js";

/**
 * Coordinator: create-job -> preflight -> seed-N (bounded pages) -> start-job -> fan-out. The job
 * exists before preflight runs, so every problem preflight finds is recorded on it.
 * It hands the rows to `parallelism` worker lanes (embeddings-backfill-worker) with one sendEvent;
 * the lanes process batches and the last one to find nothing left completes the job. The
 * coordinator itself stays at a few hundred steps even for a million rows (see plan.ts).
 */
export function embeddingsBackfill(inngest: InngestClient, deps: FunctionDeps) {
  const limits = limitsOf(deps);
  return inngest.createFunction(
    {
      id: "embeddings-backfill",
      name: "Embeddings: backfill",
      triggers: [backfillRequested],
      retries: 4,
      // One coordinator per target at a time; a second request for the same target queues.
      concurrency: { limit: 1, key: "event.data.target" },
      throttle: { limit: 10, period: "1m", key: "event.data.target" },
      cancelOn: [{ event: backfillCancelled, if: "async.data.jobId == event.data.jobId" }],
      timeouts: { finish: "2h" },
      onFailure: async ({ event, error, step }) => {
        const original = event.data.event.data;
        await step.run("mark-job-failed", async () => {
          const ctx = await deps.context();
          const key = original.jobId ? null : `event:${event.data.event.id ?? event.data.run_id}`;
          const job = await ctx.store
            .createJob(original.target, "backfill", key, {}, original.jobId)
            .catch(() => null);
          if (!job) return { jobId: null };
          await ctx.store.releasePrefix(original.target, `${job.id}:`).catch(() => undefined);
          const done = await ctx.store.finishJob(job.id, "failed", error.message);
          return { jobId: done.id, status: done.status };
        });
      },
    },
    async ({ event, step, attempt }) => {
      const data = event.data;
      const batchSize = data.batchSize ?? deps.config.EMBEDDINGS_BATCH_SIZE;
      const parallelism = data.parallelism ?? deps.config.EMBEDDINGS_PARALLELISM;
      // A duplicate event or a dashboard replay carries the same event id: same job, no second one.
      const idempotencyKey = data.jobId ? null : `event:${event.id}`;

      const job = await step.run("create-job", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          const j = await ctx.store.createJob(
            data.target,
            "backfill",
            idempotencyKey,
            { batchSize, parallelism, reembed: data.reembed ?? false },
            data.jobId,
          );
          return { jobId: j.id, status: j.status, created: j.created ?? false };
        }),
      );
      if (job.status === "completed" || job.status === "cancelled") {
        return { jobId: job.jobId, status: job.status, note: "already finished: nothing to do" };
      }

      const check = await step.run("preflight", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          const report = await preflight(
            { store: ctx.store, config: deps.config, providerFor: deps.providerFor },
            { targets: [data.target] },
          );
          const problems = report.checks
            .filter((c) => c.level !== "ok")
            .map((c) => `${c.name}: ${c.message}${c.fix ? ` (fix: ${c.fix})` : ""}`);
          if (problems.length > 0 && deps.logger) {
            forWork(deps.logger, { jobId: job.jobId, target: data.target, step: "preflight" }).warn(
              { problems },
              "preflight problems",
            );
          }
          if (report.status === "config") {
            await ctx.store.finishJob(job.jobId, "failed", `preflight failed:\n${problems.join("\n")}`);
            throw new NonRetriableError(`preflight failed: ${problems.join("; ")}`);
          }
          if (report.status === "transient") throw new Error(`preflight: ${problems.join("; ")}`);
          return { status: report.status };
        }),
      );

      let after: string | null = null;
      let seeded = 0;
      for (let n = 0; ; n++) {
        const page: { last: string | null; done: boolean; queued: number } = await step.run(`seed-${n}`, () =>
          mapped(attempt, async () => {
            const ctx = await deps.context();
            const deadline = Date.now() + limits.seedStepMs;
            let cursor = after;
            let queued = 0;
            for (;;) {
              const r = await ctx.store.enqueue(data.target, cursor, limits.seedPage, data.reembed ?? false);
              queued += r.queued;
              if (r.done || r.last === null) return { last: r.last ?? cursor, done: true, queued };
              cursor = r.last;
              if (Date.now() > deadline) return { last: cursor, done: false, queued };
            }
          }),
        );
        seeded += page.queued;
        after = page.last;
        if (page.done) break;
      }

      const started = await step.run("start-job", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          const j = await ctx.store.startJob(job.jobId);
          if (deps.logger) {
            forWork(deps.logger, { jobId: job.jobId, target: data.target, step: "start-job" }).info(
              { itemsTotal: j.itemsTotal },
              "backfill started",
            );
          }
          return { itemsTotal: j.itemsTotal, status: j.status };
        }),
      );

      const plan = planBackfill({ items: Math.max(started.itemsTotal, 1), batchSize, parallelism }, limits);
      await step.sendEvent(
        "fan-out",
        Array.from({ length: plan.lanes }, (_, lane) =>
          backfillWorker.create(
            {
              jobId: job.jobId,
              target: data.target,
              batchSize,
              lane,
              generation: 0,
              maxBatches: limits.maxBatchesPerRun,
            },
            // Deterministic ids: a retried or replayed fan-out never starts a lane twice.
            { id: `${job.jobId}-lane-${lane}-gen-0` },
          ),
        ),
      );

      return {
        jobId: job.jobId,
        preflight: check.status,
        seeded,
        itemsTotal: started.itemsTotal,
        lanes: plan.lanes,
      };
    },
  );
}
