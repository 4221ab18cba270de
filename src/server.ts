import { serve } from "@hono/node-server";
import { buildApp } from "./http/app.js";
import { loadConfig } from "./lib/config.js";
import { type AppContext, openContext } from "./lib/context.js";
import { providerForTarget } from "./lib/providers/index.js";

/**
 * `npm start`: the Hono app on PORT (default 3000). The database opens once and is shared by every
 * request; configuration problems stop the process at once with every problem listed.
 */
const config = (() => {
  try {
    return loadConfig();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(3);
  }
})();

let context: Promise<AppContext> | null = null;
const getContext = () => {
  context ??= openContext(config);
  return context;
};

const { app } = buildApp({ config, context: getContext, providerFor: (t) => providerForTarget(t, config) });
await getContext();

const server = serve({ fetch: app.fetch, port: config.PORT }, (info) => {
  process.stdout.write(
    `embeddings-sync listening on http://localhost:${info.port} (Inngest endpoint /api/inngest)\n`,
  );
});

const shutdown = () => {
  server.close();
  void getContext()
    .then((c) => c.close())
    .finally(() => process.exit(0));
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
