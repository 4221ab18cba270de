import type { InngestClient } from "./client.js";
import { APP_ID, laneEventId } from "./client.js";
import type { FunctionDeps } from "./deps.js";
import { mapped } from "./errors.js";
import { backfillWorker, backfillWorkerData } from "./events.js";

const WORKER = `${APP_ID}-embeddings-backfill-worker`;
const COORDINATOR = `${APP_ID}-embeddings-backfill`;

/**
 * Inngest cancels a run that reaches its `timeouts.finish` (inngest/function.cancelled), and then
 * runs neither onFailure nor the rest of the run: without this, its job would stay `running` with
 * nobody working. A cancelled worker lane of a job that is still running is resumed by its next
 * generation (the id a hand-over would have used: if the lane had handed over already, Inngest's
 * dedup drops this one). A cancelled coordinator leaves its job failed with the reason, for a Replay
 * to resume. A cancellation the operator asked for finds the job cancelled and does nothing.
 */
export function embeddingsRunCancelled(inngest: InngestClient, deps: FunctionDeps) {
  return inngest.createFunction(
    {
      id: "embeddings-run-cancelled",
      name: "Embeddings: resume or fail a cancelled run",
      triggers: [
        {
          event: "inngest/function.cancelled",
          if: `event.data.function_id == '${WORKER}' || event.data.function_id == '${COORDINATOR}'`,
        },
      ],
      retries: 4,
    },
    async ({ event, step, attempt }) => {
      const data = event.data as {
        function_id: string;
        run_id: string;
        event?: { name?: string; data?: Record<string, unknown> };
      };
      const original = (data.event?.data ?? {}) as { jobId?: unknown };
      if (typeof original.jobId !== "string") return { note: "no job in the cancelled run's event" };
      const jobId = original.jobId;
      const job = await step.run("read-job", () =>
        mapped(attempt, async () => {
          const j = await (await deps.context()).store.getJob(jobId).catch(() => null);
          return j ? { status: j.status } : { status: "unknown" };
        }),
      );
      if (data.function_id === WORKER && job.status === "running") {
        const parsed = backfillWorkerData.safeParse(original);
        if (!parsed.success) return { jobId, note: "worker event unreadable: not resumed" };
        const w = parsed.data;
        const epoch = w.epoch ?? 0;
        await step.sendEvent(
          "resume-lane",
          backfillWorker.create(
            { ...w, generation: w.generation + 1, epoch },
            { id: laneEventId(jobId, epoch, w.lane, w.generation + 1) },
          ),
        );
        return { jobId, resumed: { lane: w.lane, generation: w.generation + 1 } };
      }
      if (data.function_id === COORDINATOR && (job.status === "pending" || job.status === "running")) {
        await step.run("fail-job", () =>
          mapped(attempt, async () => {
            const ctx = await deps.context();
            const j = await ctx.store.finishJob(
              jobId,
              "failed",
              `the coordinator run ${data.run_id} was cancelled by Inngest (timeout) before it finished; Replay it to resume`,
            );
            return { status: j.status };
          }),
        );
        return { jobId, failed: true };
      }
      return { jobId, status: job.status, note: "nothing to do" };
    },
  );
}
