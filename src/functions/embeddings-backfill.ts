import { NonRetriableError } from "inngest";
import { assertBatchable } from "../lib/core/remote-batch.js";
import { forWork } from "../lib/logger.js";
import { estimateTarget, jobEstimate } from "../lib/ops/estimate.js";
import { preflight } from "../lib/ops/preflight.js";
import { type InngestClient, jobIdForEvent, laneEventId } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { backfillCancelled, backfillRemote, backfillRequested, backfillWorker } from "./events.js";
import { planBackfill } from "./plan.js";

/**
 * Coordinator: create-job -> preflight -> seed-N (bounded pages) -> start-job -> fan-out. The job
 * exists before preflight runs, so every problem preflight finds is recorded on it.
 *
 * The job id is known before the first step (the request's, or one derived from the event id), so a
 * cancel can name the job before this run has created it, and a duplicate, a Replay or a Rerun of
 * this run finds the same job:
 *   * a completed or cancelled job: nothing to do;
 *   * a job this run did not create (a Replay or Rerun), failed or running with nobody working:
 *     revived under the next epoch, without seeding again, and its lanes fan out under new event ids;
 *   * a job running and alive (a duplicate request): nothing fans out twice.
 * It hands the rows to `parallelism` worker lanes (embeddings-backfill-worker) with one sendEvent;
 * the lanes process batches and the last one to find nothing left completes the job. The
 * coordinator stays at a few hundred steps even for a million rows (see plan.ts).
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
      // By job id (the CLI's requests carry it) and by the requesting event's id (a dashboard "Send
      // event" without one: the service puts the event id in the cancel it sends).
      cancelOn: [
        { event: backfillCancelled, if: "async.data.jobId == event.data.jobId" },
        { event: backfillCancelled, if: "async.data.eventId == event.id" },
      ],
      timeouts: { finish: "2h" },
      onFailure: async ({ event, error, step }) => {
        const original = event.data.event;
        await step.run("mark-job-failed", async () => {
          const ctx = await deps.context();
          const jobId = jobIdForEvent(original.data, String(original.id ?? event.data.run_id));
          const job = await ctx.store
            .createJob(original.data.target, "backfill", null, {}, jobId, original.id)
            .catch(() => null);
          if (!job) return { jobId: null };
          await ctx.store.releasePrefix(original.data.target, `${job.id}:`).catch(() => undefined);
          const done = await ctx.store.finishJob(job.id, "failed", error.message);
          return { jobId: done.id, status: done.status };
        });
      },
    },
    async ({ event, step, attempt }) => {
      const data = event.data;
      const batchSize = data.batchSize ?? deps.config.EMBEDDINGS_BATCH_SIZE;
      const parallelism = data.parallelism ?? deps.config.EMBEDDINGS_PARALLELISM;
      const jobId = jobIdForEvent(data, event.id ?? jobIdFallback(event));
      const log = () =>
        deps.logger ? forWork(deps.logger, { jobId, target: data.target, step: "coordinator" }) : undefined;

      const job = await step.run("create-job", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          const j = await ctx.store.createJob(
            data.target,
            "backfill",
            null,
            {
              batchSize,
              parallelism,
              reembed: data.reembed ?? false,
              ...(data.via === "batch" ? { via: "batch" } : {}),
            },
            jobId,
            event.id,
          );
          return { jobId: j.id, status: j.status, created: j.created ?? false, seeded: j.seeded };
        }),
      );
      if (job.status === "completed" || job.status === "cancelled") {
        return { jobId, status: job.status, note: "already finished: nothing to do" };
      }

      const check = await step.run("preflight", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          // A cancel that arrived since create-job stops this run before the provider probe.
          const current = await ctx.store.getJob(jobId);
          if (current.status === "cancelled") return { status: "cancelled" as const };
          if (data.via === "batch") {
            try {
              assertBatchable(await ctx.store.getTarget(data.target));
            } catch (err) {
              const message = err instanceof Error ? err.message : String(err);
              await ctx.store.finishJob(jobId, "failed", `preflight failed: ${message}`);
              throw new NonRetriableError(`preflight failed: ${message}`);
            }
          }
          const report = await preflight(
            { store: ctx.store, config: deps.config, providerFor: deps.providerFor },
            { targets: [data.target], needsEvents: true },
          );
          const problems = report.checks
            .filter((c) => c.level !== "ok")
            .map((c) => `${c.name}: ${c.message}${c.fix ? ` (fix: ${c.fix})` : ""}`);
          if (problems.length > 0) log()?.warn({ problems }, "preflight problems");
          if (report.status === "config") {
            await ctx.store.finishJob(jobId, "failed", `preflight failed:\n${problems.join("\n")}`);
            throw new NonRetriableError(`preflight failed: ${problems.join("; ")}`);
          }
          if (report.status === "transient") throw new Error(`preflight: ${problems.join("; ")}`);
          return { status: report.status };
        }),
      );
      if (check.status === "cancelled")
        return { jobId, status: "cancelled", note: "cancelled before seeding" };

      // What the job is expected to embed and cost, kept on it so status shows estimate against
      // actual. Seeding does not change which rows qualify. Never a reason to fail the backfill.
      if (job.created) {
        await step.run("estimate", async () => {
          const ctx = await deps.context();
          try {
            const e = await estimateTarget(ctx.store, {
              target: data.target,
              reembed: data.reembed ?? false,
              batchSize,
              prices: deps.config.EMBEDDINGS_PRICES,
              requestsPerMinute: deps.config.EMBEDDINGS_RPM,
              tokensPerMinute: deps.config.EMBEDDINGS_TPM,
            });
            await ctx.store.setJobEstimate(jobId, jobEstimate(e));
            return { rows: e.rows, tokens: e.tokens };
          } catch (err) {
            log()?.warn(
              { err: err instanceof Error ? err.message : String(err) },
              "no estimate for this backfill",
            );
            return { rows: null, tokens: null };
          }
        });
      }

      let seeded = 0;
      if (!job.seeded) {
        let after: string | null = null;
        for (let n = 0; ; n++) {
          const page: { last: string | null; done: boolean; queued: number; stopped: string | null } =
            await step.run(`seed-${n}`, () =>
              mapped(attempt, async () => {
                const ctx = await deps.context();
                const deadline = Date.now() + limits.seedStepMs;
                let cursor = after;
                let queued = 0;
                for (;;) {
                  // Each page beats the job's heartbeat: a long seed is alive, never stale.
                  const r = await ctx.store.enqueue(
                    data.target,
                    cursor,
                    limits.seedPage,
                    data.reembed ?? false,
                    jobId,
                  );
                  if (r.stopped) return { last: cursor, done: true, queued, stopped: r.stopped };
                  queued += r.queued;
                  if (r.done || r.last === null)
                    return { last: r.last ?? cursor, done: true, queued, stopped: null };
                  cursor = r.last;
                  if (Date.now() > deadline) return { last: cursor, done: false, queued, stopped: null };
                }
              }),
            );
          if (page.stopped) return { jobId, status: page.stopped, seeded, note: "stopped while seeding" };
          seeded += page.queued;
          after = page.last;
          if (page.done) break;
        }
      }

      const started = await step.run("start-job", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          const j = await ctx.store.startJob(jobId, {
            revive: !job.created,
            staleSeconds: deps.config.EMBEDDINGS_JOB_STALE_SECONDS,
          });
          if (j.revived) log()?.warn({ epoch: j.epoch, restarts: j.restarts }, "job revived by a replay");
          else if (j.fanOut) log()?.info({ itemsTotal: j.itemsTotal }, "backfill started");
          const lanes = planBackfill(
            { items: Math.max(j.itemsTotal, 1), batchSize, parallelism },
            limits,
          ).lanes;
          if (j.fanOut) await ctx.store.setLanes(jobId, lanes);
          return {
            itemsTotal: j.itemsTotal,
            status: j.status,
            epoch: j.epoch,
            fanOut: j.fanOut,
            revived: j.revived,
            lanes,
          };
        }),
      );
      if (!started.fanOut) {
        return {
          jobId,
          status: started.status,
          note:
            started.status === "running"
              ? "already running: its lanes are at work, nothing started twice"
              : "not started: the job is final, or failed while this run created it",
        };
      }

      if (data.via === "batch") {
        // The Batch API first; its run hands what is left to the lanes afterwards.
        await step.sendEvent(
          "hand-to-batch-api",
          backfillRemote.create(
            { jobId, target: data.target, batchSize, lanes: started.lanes, epoch: started.epoch },
            { id: `${jobId}-e${started.epoch}-remote` },
          ),
        );
        return { jobId, preflight: check.status, seeded, itemsTotal: started.itemsTotal, via: "batch" };
      }

      await step.sendEvent(
        "fan-out",
        Array.from({ length: started.lanes }, (_, lane) =>
          backfillWorker.create(
            {
              jobId,
              target: data.target,
              batchSize,
              lane,
              generation: 0,
              epoch: started.epoch,
              maxBatches: limits.maxBatchesPerRun,
            },
            // Deterministic ids: a retried fan-out never starts a lane twice; a revived job's epoch
            // makes its lanes new events for Inngest's 24 h dedup.
            { id: laneEventId(jobId, started.epoch, lane, 0) },
          ),
        ),
      );

      return {
        jobId,
        preflight: check.status,
        seeded,
        itemsTotal: started.itemsTotal,
        lanes: started.lanes,
        epoch: started.epoch,
        revived: started.revived,
      };
    },
  );
}

/** Inngest always gives an event an id; a test calling the handler without one still gets a job. */
function jobIdFallback(event: { ts?: number; data: { target: string } }): string {
  return `${event.data.target}-${event.ts ?? 0}`;
}
