import { InputError } from "../errors.js";
import { createPGliteApi } from "./pglite.js";
import { createPostgresApi } from "./postgres.js";
import { createSupabaseApi } from "./supabase.js";
import type { SqlAdmin, SqlApi } from "./types.js";

export { SqlApiError } from "./postgres.js";
export type { ApiArg, SqlAdmin, SqlApi, TransportKind } from "./types.js";

export const DEFAULT_PGLITE_DIR = "./.data/pglite";

export interface DatabaseConfig {
  databaseUrl?: string;
  supabaseUrl?: string;
  supabaseServiceRoleKey?: string;
  /** PGlite data directory when neither a database URL nor Supabase is configured. */
  dataDir?: string;
  poolSize?: number;
}

export interface Database {
  api: SqlApi;
  /** Raw SQL for migrations and demo tables; absent for Supabase (migrated with `supabase db push`). */
  admin?: SqlAdmin;
  /** Where the data lives, safe to log: no password, no key. */
  describe: string;
}

/** DATABASE_URL wins, then Supabase (URL and service-role key together), else embedded PGlite. */
export async function openDatabase(config: DatabaseConfig): Promise<Database> {
  if (config.databaseUrl) {
    const api = createPostgresApi({ connectionString: config.databaseUrl, poolSize: config.poolSize });
    return { api, admin: api, describe: describePostgresUrl(config.databaseUrl) };
  }
  if (config.supabaseUrl || config.supabaseServiceRoleKey) {
    if (!config.supabaseUrl || !config.supabaseServiceRoleKey) {
      // Falling back to a local PGlite here would silently write somewhere nobody is looking.
      throw new InputError("Supabase needs both SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY");
    }
    const api = createSupabaseApi({ url: config.supabaseUrl, serviceRoleKey: config.supabaseServiceRoleKey });
    return { api, describe: `supabase ${safeOrigin(config.supabaseUrl)}` };
  }
  const dataDir = config.dataDir ?? DEFAULT_PGLITE_DIR;
  const api = await createPGliteApi({ dataDir });
  return { api, admin: api, describe: `pglite ${dataDir}` };
}

/** postgres://user:***@host:port/db; query parameters are dropped since they may carry a password. */
export function describePostgresUrl(databaseUrl: string): string {
  try {
    const u = new URL(databaseUrl);
    const user = u.username ? `${decodeURIComponent(u.username)}${u.password ? ":***" : ""}@` : "";
    return `${u.protocol}//${user}${u.host}${u.pathname}`;
  } catch {
    return "postgres (unparsable connection string)";
  }
}

function safeOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(invalid url)";
  }
}
