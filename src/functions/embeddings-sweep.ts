import { cron } from "inngest";
import type { InngestClient } from "./client.js";
import type { FunctionDeps } from "./deps.js";
import { mapped } from "./errors.js";
import { targetSweep } from "./events.js";

/**
 * Every 5 minutes by default: jobs with a stale heartbeat are marked failed with a reason (no job
 * stays "running" forever), then every target gets a sweep run of its own
 * (embeddings-sweep-target): one event per target, so the steps of a run stay bounded however many
 * targets there are, every target is served every time (none waits behind another), and one broken
 * target fails only its own run.
 */
export function embeddingsSweep(inngest: InngestClient, deps: FunctionDeps) {
  return inngest.createFunction(
    {
      id: "embeddings-sweep",
      name: "Embeddings: scheduled sweep",
      triggers: [cron(deps.config.EMBEDDINGS_SWEEP_CRON)],
      retries: 2,
      singleton: { mode: "skip" },
      timeouts: { finish: "10m" },
    },
    async ({ step, runId, attempt }) => {
      const expired = await step.run("expire-stale-jobs", () =>
        mapped(attempt, async () => {
          const ctx = await deps.context();
          return (await ctx.store.expireJobs(deps.config.EMBEDDINGS_JOB_STALE_SECONDS)).expired;
        }),
      );
      const targets = await step.run("list-targets", () =>
        mapped(attempt, async () => (await (await deps.context()).store.listTargets()).map((t) => t.name)),
      );
      // At most 5,000 events per send: a page of targets per step.
      for (let page = 0; page * 5000 < targets.length; page++) {
        await step.sendEvent(
          `fan-out-${page}`,
          targets
            .slice(page * 5000, (page + 1) * 5000)
            .map((target) => targetSweep.create({ target }, { id: `sweep-${runId}-${target}` })),
        );
      }
      return { expiredJobs: expired.length, targets: targets.length };
    },
  );
}
