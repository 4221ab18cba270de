import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { serve } from "inngest/hono";
import { createInngestClient, type InngestClient } from "../functions/client.js";
import type { FunctionDeps } from "../functions/deps.js";
import { createFunctions } from "../functions/index.js";
import { inngestDev } from "../lib/config.js";
import { createLogger } from "../lib/logger.js";
import { createMetrics, type Metrics } from "../lib/ops/metrics.js";
import { adminAuth, OPS_PATHS } from "./auth.js";
import { DASHBOARD_HEADERS, DASHBOARD_HTML } from "./dashboard/page.js";
import { errorToResponse } from "./errors.js";
import { registerActionRoutes } from "./routes/actions.js";
import { registerBatchRoute } from "./routes/batch.js";
import { routeContext } from "./routes/context.js";
import { registerHealthRoute } from "./routes/health.js";
import { registerHistoryRoute } from "./routes/history.js";
import { registerStatusRoutes } from "./routes/status.js";

/**
 * The served app: /api/inngest (the functions), /health, the dashboard at /, and behind the admin
 * token /status, /dead-letters, /metrics, /batch, /retry, /cancel. Built from injected dependencies
 * so tests drive the real routes with app.request(). Handlers throw; one onError answers.
 */
export interface BuiltApp {
  app: Hono;
  inngest: InngestClient;
  functions: ReturnType<typeof createFunctions>;
}

// Inngest posts the whole run state (events + step outputs, up to 32 MiB) on every call.
const INNGEST_BODY_LIMIT = 64 * 1024 * 1024;

export function buildApp(
  deps: FunctionDeps,
  options: { fetch?: typeof fetch; inngest?: InngestClient; metrics?: Metrics } = {},
): BuiltApp {
  const inngest = options.inngest ?? createInngestClient(deps.config, { fetch: options.fetch });
  const functions = createFunctions(inngest, deps);
  const logger = deps.logger ?? createLogger(deps.config, { base: { component: "http" } });
  const routes = routeContext(deps, { inngest, logger, metrics: options.metrics ?? createMetrics() });
  const app = new Hono();

  app.use(
    "/api/inngest",
    bodyLimit({
      maxSize: INNGEST_BODY_LIMIT,
      onError: (c) => c.json({ error: "request body over 64 MiB" }, 413),
    }),
  );
  app.on(
    ["GET", "PUT", "POST"],
    "/api/inngest",
    serve({
      client: inngest,
      functions,
      // The URL Inngest is told to call: pinned when configured, so a sync request's Host header
      // cannot point it elsewhere. In cloud mode without a pinned URL, only signed (in-band) syncs.
      serveOrigin: deps.config.INNGEST_SERVE_ORIGIN,
      servePath: deps.config.INNGEST_SERVE_PATH,
      ...(inngestDev(deps.config) || deps.config.INNGEST_SERVE_ORIGIN ? {} : { enableUnauthedSync: false }),
    }),
  );

  app.get("/", (c) => c.body(DASHBOARD_HTML, 200, DASHBOARD_HEADERS));
  registerHealthRoute(app, routes);
  const auth = adminAuth(deps.config.EMBEDDINGS_ADMIN_TOKEN);
  for (const path of OPS_PATHS) app.use(path, auth);
  registerStatusRoutes(app, routes);
  registerHistoryRoute(app, routes);
  registerBatchRoute(app, routes);
  registerActionRoutes(app, routes);

  app.onError((err, c) => errorToResponse(err, c, logger));
  return { app, inngest, functions };
}
