import pg from "pg";
import { limitHeapGrowth } from "../src/cli/heap.js";
import { runTarget } from "../src/lib/core/runner.js";
import { createPostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import type { TimeoutResult } from "./chunk-timeout.js";
import type { ChunkResult } from "./chunk-worker.js";
import type { CliStats } from "./cli-run.js";
import { MODEL, registerBenchTarget, TABLE, TARGET } from "./data.js";
import { API_KEY, BusyClock, benchConfig, memorySampler, timedApi, timedProvider } from "./instruments.js";

/**
 * Child-process entry: runs ONE scenario in a fresh process, so the resident memory it reports is the
 * worker's alone (the fake provider and PostgreSQL run in processes of their own), and sends a
 * WorkerResult back over IPC. Each mode imports what only it needs when it runs, so a pipeline
 * worker carries the modules `embeddings run` carries and no other scenario's.
 */

export type WorkerMode = "pipeline" | "seeds" | "ceiling" | "inngest" | "chunks" | "chunk-timeout";

export interface WorkerTask {
  mode: WorkerMode;
  dbUrl: string;
  fakeUrl: string;
  rows: number;
  /** Floats per embedding (the target's dimensions; the ceiling's vectors). */
  dims: number;
  batchSize: number;
  parallelism: number;
  rpm?: number;
  tpm?: number;
  /** inngest: HTTP calls the harness makes at once (1 = sequential, comparable per-call times). */
  harnessConcurrency?: number;
  /** ceiling: rows per COPY + UPDATE transaction. */
  ceilingChunk?: number;
  /** pipeline: write with the pre-issue-6 formatting (the SQL is swapped by bench/run.ts). */
  legacy?: boolean;
  /** chunk-timeout: chunk rows per swap statement to time, in order (bench/chunk-timeout.ts). */
  pieceSizes?: number[];
  /** chunk-timeout: stop growing the piece once one statement took longer than this. */
  stopAfterMs?: number;
  /** chunk-timeout: then the pipeline at batch 2,048 as a role with a 1 s statement_timeout. */
  adaptive?: boolean;
}

export interface TimedCalls {
  calls: number;
  ms: number;
}

export interface WorkerResult {
  /** Wall time of the whole run (seeding included for pipeline and inngest). */
  elapsedMs: number;
  seedMs: number;
  processed: number;
  failed: number;
  tokens: number;
  requests: number;
  peakRssMb: number;
  startRssMb: number;
  /** CPU seconds (user + system) this worker process used during the measured run. */
  cpuSeconds: number;
  /** [fraction of rows done, rss MB] samples, for the flat-memory check. */
  rssByProgress: [number, number][];
  db: Record<string, TimedCalls>;
  provider: TimedCalls;
  /**
   * pipeline, inngest: wall ms of the run with no database or provider call in flight (BusyClock):
   * the worker's own time that no database or provider wait hid, whatever the parallelism. On the
   * Inngest path that adds the SDK, Hono and the executor.
   */
  outsideCallsMs?: number;
  inngest?: InngestStats;
  cli?: CliStats;
  ceiling?: { copyMs: number; updateMs: number; chunks: number };
  chunks?: ChunkResult;
  timeout?: TimeoutResult;
}

export interface InngestStats {
  /** Requests the executor made to the served app (`POST /api/inngest`). */
  calls: number;
  /** Checkpoint posts the SDK made to the executor's API while those requests were open. */
  checkpoints: number;
  /** Wall ms of the requests, summed. */
  totalMs: number;
  steps: number;
  runs: number;
  /** (Σ request ms − database ms − provider ms) ÷ requests: exact when requests run one at a time. */
  overheadMsPerCall: number;
}

async function runPipeline(task: WorkerTask): Promise<WorkerResult> {
  const config = benchConfig(task);
  const db: Record<string, TimedCalls> = {};
  const provider: TimedCalls = { calls: 0, ms: 0 };
  const busy = new BusyClock();
  // One connection per worker plus one spare: a worker never waits for a connection.
  const api = timedApi(
    createPostgresApi({ connectionString: task.dbUrl, poolSize: task.parallelism + 1 }),
    db,
    undefined,
    busy,
  );
  const store = task.legacy ? new (await import("./legacy.js")).LegacyStore(api) : new EmbeddingStore(api);
  try {
    const target = await registerBenchTarget(store, task.dims);
    const embedder = timedProvider(providerForTarget(target, config), provider, busy);
    for (const key of Object.keys(db)) delete db[key];
    busy.reset();
    const mem = memorySampler(task.rows);
    const started = performance.now();
    let seedMs = 0;
    const summary = await runTarget(
      { store, provider: embedder },
      {
        target: TARGET,
        batchSize: task.batchSize,
        parallelism: task.parallelism,
        retries: 10,
        onSeeded: () => {
          seedMs = performance.now() - started;
        },
        onProgress: ({ batch }) => mem.progress(batch.processed + batch.failed + batch.skipped),
      },
    );
    const elapsedMs = performance.now() - started;
    const outsideCallsMs = elapsedMs - busy.ms;
    const { peak, byProgress, cpuSeconds } = mem.stop();
    return {
      elapsedMs,
      outsideCallsMs,
      seedMs,
      processed: summary.job.itemsProcessed,
      failed: summary.job.itemsFailed,
      tokens: summary.job.tokens,
      requests: summary.job.requests,
      peakRssMb: peak,
      startRssMb: mem.start,
      cpuSeconds,
      rssByProgress: byProgress,
      db,
      provider,
    };
  } finally {
    await api.close();
  }
}

/**
 * The seeds' way (field reports 001/004): read 50 rows, one provider call for the 50, then one UPDATE
 * per row, awaited one after the other, the vector sent as a JSON array (what supabase-js sends).
 * Rows are paged by id (keyset), which is kinder than the reports' `WHERE embedding IS NULL` rescans.
 */
async function runSeeds(task: WorkerTask): Promise<WorkerResult> {
  const config = benchConfig(task);
  const providerTime: TimedCalls = { calls: 0, ms: 0 };
  const db: Record<string, TimedCalls> = { select: { calls: 0, ms: 0 }, update: { calls: 0, ms: 0 } };
  const embedder = timedProvider(
    providerForTarget({ name: TARGET, provider: "openai", model: MODEL, dimensions: task.dims }, config),
    providerTime,
  );
  const client = new pg.Client({ connectionString: task.dbUrl });
  await client.connect();
  const timed = async <R extends pg.QueryResultRow>(kind: string, sql: string, params: unknown[]) => {
    const t0 = performance.now();
    const r = await client.query<R>(sql, params);
    db[kind]!.calls++;
    db[kind]!.ms += performance.now() - t0;
    return r;
  };
  try {
    const mem = memorySampler(task.rows);
    const started = performance.now();
    let last = 0;
    let processed = 0;
    let tokens = 0;
    let requests = 0;
    for (;;) {
      const { rows } = await timed<{ id: string; content: string }>(
        "select",
        `SELECT id, concat_ws(E'\\n\\n', title::text, body::text) AS content FROM public.${TABLE}
          WHERE id > $1 AND embedding IS NULL ORDER BY id LIMIT 50`,
        [last],
      );
      if (rows.length === 0) break;
      const result = await embedder.embed(rows.map((r) => r.content));
      tokens += result.tokens;
      requests += result.requests;
      for (const [i, row] of rows.entries()) {
        const outcome = result.outcomes[i]!;
        if (!outcome.ok) continue;
        await timed(
          "update",
          `UPDATE public.${TABLE} SET embedding = translate($1, '[]', '{}')::real[] WHERE id = $2`,
          [JSON.stringify(Array.from(outcome.vector)), row.id],
        );
        processed++;
      }
      mem.progress(rows.length);
      last = Number(rows.at(-1)!.id);
    }
    const elapsedMs = performance.now() - started;
    const { peak, byProgress, cpuSeconds } = mem.stop();
    return {
      elapsedMs,
      seedMs: 0,
      processed,
      failed: task.rows - processed,
      tokens,
      requests,
      peakRssMb: peak,
      startRssMb: mem.start,
      cpuSeconds,
      rssByProgress: byProgress,
      db,
      provider: providerTime,
    };
  } finally {
    await client.end();
  }
}

/**
 * The raw database ceiling: vectors computed beforehand (off the clock), then per chunk one
 * transaction of binary COPY into a temporary table and one UPDATE ... FROM join. Only the database
 * work is timed: no provider, no per-row state, no progress.
 */
async function runCeiling(task: WorkerTask): Promise<WorkerResult> {
  const { fakeVector } = await import("../test/support/fake-openai.js");
  const { copyIn, encodeIdVectorRows } = await import("./copy.js");
  const chunk = task.ceilingChunk ?? 10_000;
  const client = new pg.Client({ connectionString: task.dbUrl });
  await client.connect();
  const db: Record<string, TimedCalls> = { copy: { calls: 0, ms: 0 }, update: { calls: 0, ms: 0 } };
  try {
    const mem = memorySampler(task.rows);
    let elapsedMs = 0;
    let chunks = 0;
    let processed = 0;
    for (let from = 1; from <= task.rows; from += chunk) {
      const ids = Array.from({ length: Math.min(chunk, task.rows - from + 1) }, (_, i) => from + i);
      const data = encodeIdVectorRows(ids, (i) => fakeVector(MODEL, String(ids[i]), task.dims));
      const t0 = performance.now();
      await client.query("BEGIN");
      // The temporary table has no statistics: left alone, the planner hashes the whole target table
      // for every chunk (~0.65 s per 10k rows at 1M rows, growing with the table). Index probes per
      // row are the fastest plan at every size (~0.14 s per 10k rows at 1M).
      await client.query("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off");
      await client.query("CREATE TEMP TABLE bench_vectors (id bigint, embedding real[]) ON COMMIT DROP");
      await copyIn(client, "COPY bench_vectors (id, embedding) FROM STDIN (FORMAT binary)", data);
      const t1 = performance.now();
      const r = await client.query(
        `UPDATE public.${TABLE} AS d SET embedding = v.embedding FROM bench_vectors AS v WHERE d.id = v.id`,
      );
      await client.query("COMMIT");
      const t2 = performance.now();
      db.copy!.calls++;
      db.copy!.ms += t1 - t0;
      db.update!.calls++;
      db.update!.ms += t2 - t1;
      elapsedMs += t2 - t0;
      processed += r.rowCount ?? 0;
      chunks++;
      mem.progress(ids.length);
    }
    const { peak, byProgress, cpuSeconds } = mem.stop();
    return {
      elapsedMs,
      seedMs: 0,
      processed,
      failed: task.rows - processed,
      tokens: 0,
      requests: 0,
      peakRssMb: peak,
      startRssMb: mem.start,
      cpuSeconds,
      rssByProgress: byProgress,
      db,
      provider: { calls: 0, ms: 0 },
      ceiling: { copyMs: db.copy!.ms, updateMs: db.update!.ms, chunks },
    };
  } finally {
    await client.end();
  }
}

/**
 * The Inngest path: the real served app (Hono + inngest/hono) driven over the SDK's HTTP protocol by
 * the executor harness (test/support/inngest-harness.ts), one backfill event fanned out to
 * `parallelism` worker lanes, `harnessConcurrency` requests at once. Checkpointing is on, as against
 * Inngest in production: the SDK runs steps back to back inside one request and posts each result to
 * the executor's checkpoint API. With harnessConcurrency 1 the requests are sequential, so the time of
 * a request not spent in the database or the provider is the SDK's per-request overhead.
 */
async function runInngest(task: WorkerTask): Promise<WorkerResult> {
  // Imported here only: Inngest, Hono and the harness add ~30 MB that the other modes should not carry.
  const { createTestApp } = await import("../test/support/app.js");
  const { backfillRequested } = await import("../src/functions/events.js");
  const db: Record<string, TimedCalls> = {};
  const provider: TimedCalls = { calls: 0, ms: 0 };
  const busy = new BusyClock();
  const api = timedApi(
    createPostgresApi({ connectionString: task.dbUrl, poolSize: task.parallelism + 2 }),
    db,
    undefined,
    busy,
  );
  const env = {
    OPENAI_API_KEY: API_KEY,
    OPENAI_BASE_URL: task.fakeUrl,
    DATABASE_URL: task.dbUrl,
  };
  const app = createTestApp(api, {
    env,
    providerFor: (_t, real) => timedProvider(real(), provider, busy),
    harness: { checkpointing: true },
  });
  try {
    await registerBenchTarget(app.store, task.dims);
    for (const key of Object.keys(db)) delete db[key];
    busy.reset();
    const mem = memorySampler(task.rows);
    const started = performance.now();
    await app.harness.send(
      backfillRequested.create({ target: TARGET, batchSize: task.batchSize, parallelism: task.parallelism }),
    );
    const runs = await app.harness.runUntilIdle({
      maxCalls: 1_000_000,
      concurrency: task.harnessConcurrency ?? 1,
    });
    const elapsedMs = performance.now() - started;
    const outsideCallsMs = elapsedMs - busy.ms;
    const { peak, byProgress, cpuSeconds } = mem.stop();
    const failedRuns = runs.filter((r) => r.status !== "completed");
    if (failedRuns.length > 0)
      throw new Error(`inngest runs did not complete: ${JSON.stringify(failedRuns[0]?.error)}`);
    const coordinator = runs.find((r) => r.fnId === "embeddings-backfill")!;
    const jobId = (coordinator.output as { jobId: string }).jobId;
    const job = await app.store.getJob(jobId);
    const stats = app.harness.stats();
    const dbMs = Object.values(db).reduce((s, e) => s + e.ms, 0);
    const steps = runs.reduce((s, r) => s + r.steps.length, 0);
    return {
      elapsedMs,
      seedMs: 0,
      processed: job.itemsProcessed,
      failed: job.itemsFailed,
      tokens: job.tokens,
      requests: job.requests,
      peakRssMb: peak,
      startRssMb: mem.start,
      cpuSeconds,
      rssByProgress: byProgress,
      db,
      provider,
      outsideCallsMs,
      inngest: {
        calls: stats.calls,
        checkpoints: stats.checkpoints,
        totalMs: stats.totalMs,
        steps,
        runs: stats.runs,
        overheadMsPerCall: (stats.totalMs - dbMs - provider.ms) / Math.max(stats.calls, 1),
      },
    };
  } finally {
    await api.close();
  }
}

const RUNNERS: Record<WorkerMode, (task: WorkerTask) => Promise<WorkerResult>> = {
  pipeline: runPipeline,
  seeds: runSeeds,
  ceiling: runCeiling,
  inngest: runInngest,
  chunks: async (task) => (await import("./chunk-worker.js")).runChunks(task),
  "chunk-timeout": async (task) => (await import("./chunk-timeout.js")).runChunkTimeout(task),
};

const task = JSON.parse(process.argv[2] ?? "{}") as WorkerTask;
// The modes that drive runTarget as `embeddings run` does get the heap policy its binary sets
// (src/cli/main.ts).
if (task.mode === "pipeline" || task.mode === "chunks") limitHeapGrowth(process.execArgv);
RUNNERS[task.mode](task).then(
  (result) => process.send?.({ ok: true, result }, () => process.exit(0)),
  (err: unknown) => {
    const message = err instanceof Error ? `${err.message}\n${err.stack ?? ""}` : String(err);
    process.send?.({ ok: false, error: message }, () => process.exit(1));
  },
);
