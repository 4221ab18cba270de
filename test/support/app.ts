import { createInngestClient } from "../../src/functions/client.js";
import type { FunctionDeps, Limits } from "../../src/functions/deps.js";
import { buildApp } from "../../src/http/app.js";
import { type Config, loadConfig } from "../../src/lib/config.js";
import type { AppContext } from "../../src/lib/context.js";
import { EmbeddingStore } from "../../src/lib/db/store.js";
import { providerForTarget } from "../../src/lib/providers/index.js";
import type { BatchApi } from "../../src/lib/providers/openai-batch.js";
import type { EmbeddingProvider } from "../../src/lib/providers/provider.js";
import type { Target } from "../../src/lib/types.js";
import type { TestDb } from "./fixtures.js";
import { createHarness, type Harness } from "./inngest-harness.js";

/**
 * The real served app (Hono + inngest/hono) over a real database, driven by the in-process
 * executor harness. `providerFor` may wrap the real provider to inject failures.
 */
export interface TestApp {
  config: Config;
  context: AppContext;
  store: EmbeddingStore;
  harness: Harness;
  app: ReturnType<typeof buildApp>["app"];
}

export function testConfig(env: Record<string, string | undefined> = {}): Config {
  return loadConfig({ INNGEST_DEV: "1", LOG_LEVEL: "silent", ...env });
}

export function testContext(db: TestDb, config: Config): AppContext {
  return {
    config,
    api: db,
    admin: db,
    store: new EmbeddingStore(db),
    describe: "test database",
    close: async () => undefined,
  };
}

export function createTestApp(
  db: TestDb,
  options: {
    env?: Record<string, string | undefined>;
    providerFor?: (target: Target, real: () => EmbeddingProvider) => EmbeddingProvider;
    /** The Batch API of a target (`via: "batch"`); by default configured from env like the real one. */
    batchApiFor?: (target: Target) => BatchApi;
    limits?: Partial<Limits>;
    signingKey?: string;
    /** Executor options: checkpointing (the SDK's production path), virtual time scale. */
    harness?: { checkpointing?: boolean; timeScale?: number };
  } = {},
): TestApp {
  const config = testConfig(options.env);
  const context = testContext(db, config);
  const deps: FunctionDeps = {
    config,
    context: async () => context,
    providerFor: (t) =>
      options.providerFor
        ? options.providerFor(t, () => providerForTarget(t, config))
        : providerForTarget(t, config),
    limits: options.limits,
    batchApiFor: options.batchApiFor,
  };
  let built: ReturnType<typeof buildApp> | undefined;
  const harness = createHarness({
    app: () => built!.app,
    client: () => built!.inngest,
    functions: () => built!.functions,
    signingKey: options.signingKey,
    ...options.harness,
  });
  // Failures are the point of many tests: keep the SDK's own error logging off the console.
  const quiet = { info() {}, warn() {}, error() {}, debug() {} };
  built = buildApp(deps, { inngest: createInngestClient(config, { fetch: harness.fetch, logger: quiet }) });
  return { config, context, store: context.store, harness, app: built.app };
}
