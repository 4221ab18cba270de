import { collectGroup, isFinal, openGroup, pollGroup, submitGroup } from "../lib/core/remote-batch.js";
import { forWork } from "../lib/logger.js";
import { batchApiForTarget } from "../lib/providers/index.js";
import type { Target } from "../lib/types.js";
import { type InngestClient, laneEventId } from "./client.js";
import { type FunctionDeps, limitsOf } from "./deps.js";
import { mapped } from "./errors.js";
import { backfillCancelled, backfillRemote, backfillWorker } from "./events.js";

/** Groups per job: 100 × 50,000 inputs is five million rows; more is a second backfill. */
const MAX_GROUPS = 100;
/** Polls per run: at the longest interval (10 min) that is over 24 h, the batches' own window. */
const MAX_POLLS = 250;

/**
 * A `via: "batch"` backfill's remote half (lib/core/remote-batch.ts): `open-N` claims a group of rows
 * and uploads its file, `submit-N` creates its batch, then `poll-K` steps with sleeping steps between
 * them (no run held open while the provider works, the interval doubling from
 * `remotePollMs` to `remoteMaxPollMs`), `collect-N` writes each finished batch back, and `fan-out`
 * hands whatever is left (rows of an expired or failed batch, lines that failed transiently) to the
 * normal worker lanes, whose last one completes the job. Every step can run again after a crash or a
 * Replay without a second upload or submit: each finds what it made through the stored ids or, for
 * the window before an id was stored, the provider's own lists.
 */
export function embeddingsBackfillRemote(inngest: InngestClient, deps: FunctionDeps) {
  const limits = limitsOf(deps);
  const apiFor = (t: Target) => (deps.batchApiFor ? deps.batchApiFor(t) : batchApiForTarget(t, deps.config));
  return inngest.createFunction(
    {
      id: "embeddings-backfill-remote",
      name: "Embeddings: backfill through the Batch API",
      triggers: [backfillRemote],
      retries: 5,
      concurrency: { limit: 1, key: "event.data.jobId" },
      cancelOn: [{ event: backfillCancelled, if: "async.data.jobId == event.data.jobId" }],
      // The provider's window is 24 h; collecting and handing over take minutes.
      timeouts: { finish: "30h" },
      onFailure: async ({ event, error, step }) => {
        const { jobId, target } = event.data.event.data;
        await step.run("mark-job-failed", async () => {
          const ctx = await deps.context();
          const job = await ctx.store.finishJob(jobId, "failed", `batch route: ${error.message}`);
          return { status: job.status, target };
        });
      },
    },
    async ({ event, step, attempt }) => {
      const { jobId, target: name, batchSize, lanes, epoch } = event.data;
      const open = async () => {
        const ctx = await deps.context();
        const target = await ctx.store.getTarget(name);
        return { target, remote: { store: ctx.store, api: apiFor(target), logger: deps.logger } };
      };
      const log = () =>
        deps.logger ? forWork(deps.logger, { jobId, target: name, step: "remote" }) : undefined;
      const groupLimits = { maxInputs: limits.remoteMaxInputs, maxBytes: 190_000_000 };

      let groups = 0;
      for (let seq = 0; seq < MAX_GROUPS; seq++) {
        const o = await step.run(`open-${seq}`, () =>
          mapped(attempt, async () => {
            const { target, remote } = await open();
            const r = await openGroup(remote, target, jobId, seq, groupLimits);
            return { id: r.record.id, items: r.record.items, empty: r.empty, stopped: r.stopped };
          }),
        );
        if (o.stopped) return { jobId, status: o.stopped, note: "the job stopped: nothing submitted" };
        if (o.empty) break;
        await step.run(`submit-${seq}`, () =>
          mapped(attempt, async () => {
            const { target, remote } = await open();
            const { record } = await openGroup(remote, target, jobId, seq, groupLimits);
            const r = await submitGroup(remote, target, record);
            return { batchId: r.batchId, status: r.remoteStatus };
          }),
        );
        groups++;
      }

      let wait = limits.remotePollMs;
      for (let round = 0; groups > 0; round++) {
        const p = await step.run(`poll-${round}`, () =>
          mapped(attempt, async () => {
            const { remote } = await open();
            const records = (await remote.store.remote.list({ jobId, limit: MAX_GROUPS })).filter(
              (r) => r.items > 0,
            );
            const polled = await Promise.all(records.map((r) => pollGroup(remote, r)));
            return {
              final: polled.every(isFinal),
              statuses: polled.map((r) => `${r.seq}:${r.remoteStatus ?? r.state}`),
            };
          }),
        );
        if (p.final) break;
        if (round >= MAX_POLLS)
          throw new Error(`remote batches still unfinished after ${round} polls: ${p.statuses}`);
        await step.sleep(`wait-${round}`, wait);
        wait = Math.min(wait * 2, limits.remoteMaxPollMs);
      }

      let written = 0;
      let returned = 0;
      for (let seq = 0; seq < groups; seq++) {
        const c = await step.run(`collect-${seq}`, () =>
          mapped(attempt, async () => {
            const { target, remote } = await open();
            const { record } = await openGroup(remote, target, jobId, seq, groupLimits);
            const r = await collectGroup(remote, target, record);
            return { written: r.written, errored: r.errored, returned: r.returned, status: r.remoteStatus };
          }),
        );
        written += c.written;
        returned += c.returned;
      }
      log()?.info({ groups, written, returned }, "remote batches collected");

      // What is left goes the normal way; the last lane to find nothing left completes the job.
      await step.sendEvent(
        "fan-out",
        Array.from({ length: lanes }, (_, lane) =>
          backfillWorker.create(
            {
              jobId,
              target: name,
              batchSize,
              lane,
              generation: 0,
              epoch,
              maxBatches: limits.maxBatchesPerRun,
            },
            { id: laneEventId(jobId, epoch, lane, 0) },
          ),
        ),
      );
      return { jobId, groups, written, returned, lanes };
    },
  );
}
