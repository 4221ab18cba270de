import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { serve } from "inngest/hono";
import { createInngestClient, type InngestClient } from "../functions/client.js";
import type { FunctionDeps } from "../functions/deps.js";
import { createFunctions } from "../functions/index.js";
import { preflight } from "../lib/ops/preflight.js";
import { registerOpsRoutes } from "./ops.js";

/**
 * The served app: /api/inngest (the functions), /health (the preflight summary). Built from
 * injected dependencies so tests drive the real routes with app.request().
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
  options: { fetch?: typeof fetch; inngest?: InngestClient } = {},
): BuiltApp {
  const inngest = options.inngest ?? createInngestClient(deps.config, { fetch: options.fetch });
  const functions = createFunctions(inngest, deps);
  const app = new Hono();

  app.use(
    "/api/inngest",
    bodyLimit({
      maxSize: INNGEST_BODY_LIMIT,
      onError: (c) => c.json({ error: "request body over 64 MiB" }, 413),
    }),
  );
  app.on(["GET", "PUT", "POST"], "/api/inngest", serve({ client: inngest, functions }));

  // Reveals no secrets and no row content: check names, levels and fixes only.
  app.get("/health", async (c) => {
    const ctx = await deps.context();
    const report = await preflight(
      { store: ctx.store, config: deps.config, providerFor: deps.providerFor },
      { probe: c.req.query("probe") === "1" },
    );
    return c.json(report, report.status === "ok" ? 200 : 503);
  });

  registerOpsRoutes(app, deps, {
    inngest,
    thresholds: deps.config.EMBEDDINGS_HEALTH_THRESHOLDS,
    windowMinutes: deps.config.EMBEDDINGS_RATE_WINDOW_MINUTES,
    logger: deps.logger,
  });

  app.onError((err, c) => {
    const status = (err as { status?: number }).status;
    return c.json({ error: err.message }, status && status >= 400 && status < 600 ? (status as 400) : 500);
  });

  return { app, inngest, functions };
}
