import { serve } from "@hono/node-server";
import { classifyExit } from "./cli/exit.js";
import { createInngestClient } from "./functions/client.js";
import { buildApp } from "./http/app.js";
import { loadConfig, serveProblem } from "./lib/config.js";
import { type AppContext, openContext } from "./lib/context.js";
import { createLogger } from "./lib/logger.js";
import { createAlerter, startAlertMonitor } from "./lib/ops/alerts.js";
import { readStatus } from "./lib/ops/status.js";
import { providerForTarget } from "./lib/providers/index.js";

/**
 * `npm start`: the Hono app on PORT (default 3000). The database opens once and is shared by every
 * request; configuration problems stop the process at once with every problem listed (exit 3), and
 * a database it cannot open stops it with the reason (exit 3, or 4 when a retry may succeed).
 */
const config = (() => {
  try {
    return loadConfig();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(3);
  }
})();
const problem = serveProblem(config);
if (problem) {
  process.stderr.write(`cannot serve Inngest: ${problem}\n`);
  process.exit(3);
}
const logger = createLogger(config, { base: { component: "server" } });

let context: Promise<AppContext> | null = null;
const getContext = () => {
  context ??= openContext(config);
  return context;
};

const { app } = buildApp(
  { config, context: getContext, providerFor: (t) => providerForTarget(t, config), logger },
  { inngest: createInngestClient(config, { logger }) },
);
const ctx = await getContext().catch((err: unknown) => {
  // One line with the reason and the fix (exit 3 for configuration, 4 when it may pass on a retry).
  const { code, message } = classifyExit(err);
  process.stderr.write(`cannot open the database: ${message}\n`);
  process.exit(code);
});
logger.info({ database: ctx.describe }, "database ready");

const monitor = config.EMBEDDINGS_ALERT_WEBHOOK_URL
  ? startAlertMonitor({
      alerter: createAlerter({
        webhookUrl: config.EMBEDDINGS_ALERT_WEBHOOK_URL,
        logger,
        debounceMs: config.EMBEDDINGS_ALERT_DEBOUNCE_SECONDS * 1000,
      }),
      check: async () => {
        const c = await getContext();
        const snapshot = await readStatus(
          { store: c.store, prices: config.EMBEDDINGS_PRICES },
          {
            thresholds: config.EMBEDDINGS_HEALTH_THRESHOLDS,
            windowMinutes: config.EMBEDDINGS_RATE_WINDOW_MINUTES,
          },
        );
        return snapshot.health;
      },
      intervalMs: config.EMBEDDINGS_ALERT_INTERVAL_SECONDS * 1000,
      logger,
    })
  : null;

const server = serve({ fetch: app.fetch, port: config.PORT }, (info) => {
  logger.info(
    { port: info.port },
    `listening on http://localhost:${info.port} (Inngest endpoint /api/inngest, dashboard /)`,
  );
});

const shutdown = () => {
  monitor?.stop();
  server.close();
  void getContext()
    .then((c) => c.close())
    .finally(() => process.exit(0));
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
