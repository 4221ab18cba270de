import type { InngestClient } from "../../functions/client.js";
import type { FunctionDeps } from "../../functions/deps.js";
import type { Logger } from "../../lib/logger.js";
import type { Metrics } from "../../lib/ops/metrics.js";
import { readStatus, type StatusSnapshot } from "../../lib/ops/status.js";

/** What every route needs: the app's dependencies, its Inngest client, logger and metrics. */
export interface RouteContext {
  deps: FunctionDeps;
  inngest: InngestClient;
  logger: Logger;
  metrics: Metrics;
  /** The status snapshot every read route shares (GET /status, /metrics). */
  snapshot(options?: { target?: string; windowMinutes?: number; jobs?: number }): Promise<StatusSnapshot>;
}

export function routeContext(
  deps: FunctionDeps,
  parts: { inngest: InngestClient; logger: Logger; metrics: Metrics },
): RouteContext {
  return {
    deps,
    ...parts,
    async snapshot(options = {}) {
      const ctx = await deps.context();
      return readStatus(
        { store: ctx.store, prices: deps.config.EMBEDDINGS_PRICES },
        {
          target: options.target,
          windowMinutes: options.windowMinutes ?? deps.config.EMBEDDINGS_RATE_WINDOW_MINUTES,
          jobs: options.jobs,
          thresholds: deps.config.EMBEDDINGS_HEALTH_THRESHOLDS,
        },
      );
    },
  };
}
