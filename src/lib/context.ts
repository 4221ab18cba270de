import { join } from "node:path";
import type { Config } from "./config.js";
import { openDatabase } from "./db/index.js";
import { applyMigrations } from "./db/migrate.js";
import { EmbeddingStore } from "./db/store.js";
import type { SqlAdmin, SqlApi } from "./db/types.js";

/** Everything a runner needs, opened from configuration once. */
export interface AppContext {
  config: Config;
  api: SqlApi;
  admin?: SqlAdmin;
  store: EmbeddingStore;
  /** Where the data lives, with any password masked: safe to print. */
  describe: string;
  close(): Promise<void>;
}

export async function openContext(config: Config, options: { migrate?: boolean } = {}): Promise<AppContext> {
  const db = await openDatabase({
    databaseUrl: config.DATABASE_URL,
    supabaseUrl: config.SUPABASE_URL,
    supabaseServiceRoleKey: config.SUPABASE_SERVICE_ROLE_KEY,
    dataDir: join(config.EMBEDDINGS_DATA_DIR, "pglite"),
    poolSize: config.DATABASE_POOL_SIZE,
  });
  // Direct connections migrate themselves (idempotent); a Supabase project is migrated with
  // `supabase db push`, and preflight reports when it was not.
  if (options.migrate !== false && db.admin) await applyMigrations(db.admin);
  return {
    config,
    api: db.api,
    admin: db.admin,
    store: new EmbeddingStore(db.api, { historyDays: config.EMBEDDINGS_HISTORY_DAYS }),
    describe: db.describe,
    close: () => db.api.close(),
  };
}
