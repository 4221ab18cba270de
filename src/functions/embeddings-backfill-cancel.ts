import { cancelRemoteBatches } from "../lib/ops/actions.js";
import { batchApiForTarget } from "../lib/providers/index.js";
import type { InngestClient } from "./client.js";
import type { FunctionDeps } from "./deps.js";
import { mapped } from "./errors.js";
import { backfillCancelled } from "./events.js";

/**
 * embeddings/backfill.cancelled, from whoever sent it (the CLI and POST /cancel have already done
 * this much; a dashboard "Send event" or another service has not): the job ends cancelled, final,
 * its workers' leases go back and its queued rows are parked page by page, so nothing embeds them
 * until a later backfill resumes them. The same event's cancelOn stops the coordinator and lanes.
 * Idempotent: a second delivery finds everything done.
 */
export function embeddingsBackfillCancel(inngest: InngestClient, deps: FunctionDeps) {
  return inngest.createFunction(
    {
      id: "embeddings-backfill-cancel",
      name: "Embeddings: cancel a backfill",
      triggers: [backfillCancelled],
      retries: 4,
      timeouts: { finish: "30m" },
    },
    async ({ event, step, attempt }) => {
      const { jobId, reason } = event.data;
      const cancelled = await step.run("cancel-job", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          const c = await ctx.store.cancelJob(jobId, reason ?? "cancelled by embeddings/backfill.cancelled");
          const released =
            c.known && c.cancelled && c.target
              ? (await ctx.store.releasePrefix(c.target, `${jobId}:`)).released
              : 0;
          return { known: c.known, cancelled: c.cancelled, status: c.status, released, target: c.target };
        }),
      );
      if (!cancelled.known || !cancelled.cancelled) return { jobId, ...cancelled, parked: 0 };
      // A `via: "batch"` job: its remote batches are cancelled at the provider, which bills them otherwise.
      const remote = await step.run("cancel-remote-batches", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          if (!cancelled.target) return { cancelled: 0, released: 0, errors: [] as string[] };
          return cancelRemoteBatches(ctx.store, jobId, cancelled.target, async (name) => {
            const t = await ctx.store.getTarget(name);
            return deps.batchApiFor ? deps.batchApiFor(t) : batchApiForTarget(t, deps.config);
          });
        }),
      );
      let parked = 0;
      // One bounded statement per step; a million-row job takes about a hundred of them.
      for (let n = 0; n < 500; n++) {
        const page = await step.run(`park-${n}`, () =>
          mapped(attempt, async () => (await deps.context()).store.parkJob(jobId)),
        );
        parked += page.parked;
        if (page.parked === 0) break;
      }
      return { jobId, ...cancelled, parked, remote };
    },
  );
}
