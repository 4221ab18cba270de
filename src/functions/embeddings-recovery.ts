import { cron } from "inngest";
import type { InngestClient } from "./client.js";
import type { FunctionDeps } from "./deps.js";
import { mapped } from "./errors.js";
import { targetRecover } from "./events.js";

/**
 * Every 6 hours by default, the durable backup worker: every target gets a recovery run of its own
 * (embeddings-recovery-target), so the steps of a run stay bounded however many targets and dead
 * letters there are, and every target is served each time.
 */
export function embeddingsRecovery(inngest: InngestClient, deps: FunctionDeps) {
  return inngest.createFunction(
    {
      id: "embeddings-recovery",
      name: "Embeddings: dead-letter recovery",
      triggers: [cron(deps.config.EMBEDDINGS_RECOVERY_CRON)],
      retries: 2,
      singleton: { mode: "skip" },
      timeouts: { finish: "10m" },
    },
    async ({ step, runId, attempt }) => {
      const targets = await step.run("list-targets", () =>
        mapped(attempt, async () => (await (await deps.context()).store.listTargets()).map((t) => t.name)),
      );
      for (let page = 0; page * 5000 < targets.length; page++) {
        await step.sendEvent(
          `fan-out-${page}`,
          targets
            .slice(page * 5000, (page + 1) * 5000)
            .map((target) => targetRecover.create({ target }, { id: `recover-${runId}-${target}` })),
        );
      }
      return { targets: targets.length };
    },
  );
}
