import { chunkText, DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_TOKENS } from "../src/lib/chunking/chunker.js";
import { PLAN_PAGE_CHUNKS } from "../src/lib/core/chunk-batch.js";
import { runTarget, seedTarget } from "../src/lib/core/runner.js";
import { createPostgresApi, type PostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import type { ChunkPlanPage } from "../src/lib/types.js";
import { fakeVector } from "../test/support/fake-openai.js";
import { transcript } from "../test/support/transcripts.js";
import {
  CHUNK_DIMENSIONS,
  CHUNK_SOURCE,
  CHUNK_TABLE,
  CHUNK_TARGET,
  registerChunkTarget,
} from "./chunk-data.js";
import { MODEL } from "./data.js";
import { benchConfig, memorySampler, timedApi } from "./instruments.js";
import type { TimedCalls, WorkerResult, WorkerTask } from "./worker.js";

/**
 * The write size at which a statement timeout starts: one document of N chunks (1536-dimension
 * vectors, ~512-token contents) swapped into the chunk table by the product's own swap path,
 * `ChunkStore.swap` with a piece of N, so one `embedding_chunk_swap_part` statement INSERTs the N rows
 * from embedding_chunks into the chunk table. That statement's wall time is what a statement_timeout
 * bounds. Each N is a fresh document, swapped into a chunk table that holds the earlier ones.
 */

/** Supabase's defaults: 3 s for anon, 8 s for authenticated; 1 s as a common stricter setting. */
export const TIMEOUTS_MS = [1000, 3000, 8000];

export interface PieceTiming {
  /** Chunk rows in the one INSERT. */
  chunks: number;
  /** Wall ms of the embedding_chunk_swap_part call. */
  ms: number;
  /** Wall ms of the whole swap: begin, the part, end and the commit. */
  swapMs: number;
  written: number;
}

export interface TimeoutResult {
  dimensions: number;
  meanContentChars: number;
  pieces: PieceTiming[];
  /** Per timeout (ms): the smallest N whose statement took longer, or null if none did. */
  firstOver: Record<string, number | null>;
  largestTried: number;
  adaptive?: AdaptiveResult;
}

/** The pipeline under a strict statement_timeout at the largest batch (bench/chunk-timeout.ts runAdaptive). */
export interface AdaptiveResult {
  statementTimeoutMs: number;
  batchSize: number;
  status: string;
  error: string | null;
  seconds: number;
  /** Calls the database cancelled, by function and SQLSTATE (57014: statement timeout). */
  cancelled: Record<string, number>;
  /** embedding_targets.batch_limit after the run, and why it was set. */
  batchLimit: number | null;
  batchLimitReason: string | null;
  storedChunks: number;
}

const WORKER = "bench-chunk-timeout";
/** Distinct vectors the chunk rows cycle through (every row is its own TOAST value either way). */
const POOL = 64;

/** Real chunk contents: a long transcript cut by the product's chunker at its defaults. */
function sampleContents(): { content: string; tokens: number }[] {
  return chunkText(transcript(7, 600).join("\n\n"), {
    chunkTokens: DEFAULT_CHUNK_TOKENS,
    overlapTokens: DEFAULT_CHUNK_OVERLAP,
    maxInputTokens: 8191,
  }).map((c) => ({ content: c.content, tokens: c.tokens }));
}

/**
 * Off the clock: document `id` claimed and its chunk set of `n` chunks recorded through the product
 * (claim, plan), then every chunk marked embedded with a 1536-float vector. The vectors are filled in
 * one SQL statement rather than through embedding_chunk_write, whose text parsing of n × 1536 floats
 * would take minutes at the largest n and is not what is measured here.
 */
async function prepareDocument(
  api: PostgresApi,
  store: EmbeddingStore,
  id: string,
  n: number,
  samples: readonly { content: string; tokens: number }[],
): Promise<void> {
  const claim = await store.chunks.claim(CHUNK_TARGET, WORKER, 1, 3600, { ids: [id] });
  const doc = claim.docs[0];
  if (!doc) throw new Error(`document ${id} was not claimed: ${JSON.stringify(claim)}`);
  const pages: ChunkPlanPage[] = [];
  for (let from = 0; from < n; from += PLAN_PAGE_CHUNKS) {
    const size = Math.min(PLAN_PAGE_CHUNKS, n - from);
    const chunks = Array.from({ length: size }, (_, k) => samples[(from + k) % samples.length]!);
    pages.push({ id, hash: doc.hash, from, chunks, last: from + size >= n });
  }
  for (let i = 0; i < pages.length; i += 2) {
    // The plan takes its locks with the SQL API's 50 ms lock_timeout; autovacuum on the chunk table
    // can hold one longer (55P03 once in a full run): set-up, so wait and try again, as a runner would.
    for (let attempt = 1; ; attempt++) {
      try {
        await store.chunks.plan(CHUNK_TARGET, WORKER, pages.slice(i, i + 2), 0, 3600);
        break;
      } catch (err) {
        if ((err as { code?: string }).code !== "55P03" || attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }
  await api.query(
    `UPDATE public.embedding_chunks k SET vector = p.v, status = 'completed', updated_at = now()
       FROM bench_vector_pool p
      WHERE k.target_id = (SELECT id FROM public.embedding_targets WHERE name = $1)
        AND k.row_id = $2 AND p.n = k.chunk_index % ${POOL}`,
    [CHUNK_TARGET, id],
  );
  // A steady state for every measurement: statistics known, dirty pages written out.
  await api.exec("VACUUM ANALYZE public.embedding_chunks");
  await api.exec("CHECKPOINT");
}

/** The largest batch the CLI and the config accept: swap pieces are at most this many rows. */
const ADAPTIVE_BATCH = 2048;
/** The strictest of the common statement timeouts. */
const ADAPTIVE_TIMEOUT_MS = 1000;
const ADAPTIVE_ROLE = "bench_timeout_worker";

/**
 * `runTarget` on one long transcript (about two batches of chunks) at the largest batch, as a role
 * whose statement_timeout is 1 s, as Supabase sets one per API role. What the database cancels (by
 * function), the batch limit the target learned, and whether every document still completed.
 *
 * Why not a timeout just below the measured time of one large swap piece: a piece is at most a
 * batch (2,048 rows; 1,600 rows took 151-707 ms over five runs), and a timeout below that cancelled
 * the claim of the long document itself, before any swap (the first full run: 120 ms, job failed).
 */
async function runAdaptive(task: WorkerTask): Promise<AdaptiveResult> {
  const timeoutMs = ADAPTIVE_TIMEOUT_MS;
  const admin = createPostgresApi({ connectionString: task.dbUrl, poolSize: 1 });
  const cancelled: Record<string, number> = {};
  const url = new URL(task.dbUrl);
  url.username = ADAPTIVE_ROLE;
  url.password = "bench";
  const api = timedApi(createPostgresApi({ connectionString: url.toString(), poolSize: 2 }), {}, cancelled);
  try {
    // Superuser like the test suite's slow role: the point is the timeout, not the privileges.
    await admin.exec(`DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${ADAPTIVE_ROLE}') THEN
          CREATE ROLE ${ADAPTIVE_ROLE} LOGIN SUPERUSER PASSWORD 'bench';
        END IF;
      END $$;
      ALTER ROLE ${ADAPTIVE_ROLE} SET statement_timeout = '${timeoutMs}ms'`);
    // ~75 tokens a turn, ~280 + 64 tokens a chunk: about two batches of chunks.
    const body = transcript(2000, Math.ceil(ADAPTIVE_BATCH * 2 * 3.8)).join("\n\n");
    const [row] = await admin.query<{ id: string }>(
      `INSERT INTO public.${CHUNK_SOURCE} (title, body) VALUES ('Long recording', $1) RETURNING id::text`,
      [body],
    );
    const store = new EmbeddingStore(api);
    const target = await store.getTarget(CHUNK_TARGET);
    const provider = providerForTarget(target, benchConfig(task));
    const started = performance.now();
    let status = "failed";
    let error: string | null = null;
    try {
      const s = await runTarget(
        { store, provider },
        { target: CHUNK_TARGET, batchSize: ADAPTIVE_BATCH, parallelism: 1, retries: 10 },
      );
      status = s.job.status;
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
    const seconds = (performance.now() - started) / 1000;
    const after = await admin.call<{ batchLimit?: number | null; batchLimitReason?: string | null }>(
      "embedding_get_target",
      { p_name: CHUNK_TARGET },
    );
    const [stored] = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM public.${CHUNK_TABLE} WHERE document_id = $1`,
      [row!.id],
    );
    return {
      statementTimeoutMs: timeoutMs,
      batchSize: ADAPTIVE_BATCH,
      status,
      error,
      seconds,
      cancelled,
      batchLimit: after.batchLimit ?? null,
      batchLimitReason: after.batchLimitReason ?? null,
      storedChunks: stored!.n,
    };
  } finally {
    await api.close();
    await admin.close();
  }
}

export async function runChunkTimeout(task: WorkerTask): Promise<WorkerResult> {
  const sizes = task.pieceSizes ?? [];
  const stopAfterMs = task.stopAfterMs ?? Math.max(...TIMEOUTS_MS);
  const db: Record<string, TimedCalls> = {};
  const raw = createPostgresApi({ connectionString: task.dbUrl, poolSize: 2 });
  const api = timedApi(raw, db);
  const store = new EmbeddingStore(api);
  try {
    await registerChunkTarget(store);
    await seedTarget(store, CHUNK_TARGET);
    await raw.exec(`CREATE TABLE bench_vector_pool (n integer PRIMARY KEY, v real[] NOT NULL)`);
    for (let n = 0; n < POOL; n++) {
      const v = fakeVector(MODEL, `pool ${n}`, CHUNK_DIMENSIONS);
      await raw.query("INSERT INTO bench_vector_pool VALUES ($1, $2::real[])", [
        n,
        `{${Array.from(v).join(",")}}`,
      ]);
    }
    const samples = sampleContents();
    const meanContentChars = samples.reduce((s, c) => s + c.content.length, 0) / samples.length;
    const mem = memorySampler(sizes.length);
    const pieces: PieceTiming[] = [];
    let elapsedMs = 0;
    for (const [i, n] of sizes.entries()) {
      const id = String(i + 1);
      await prepareDocument(raw, store, id, n, samples);
      for (const key of Object.keys(db)) delete db[key];
      const t0 = performance.now();
      const swap = await store.chunks.swap(CHUNK_TARGET, [id], n);
      const swapMs = performance.now() - t0;
      elapsedMs += swapMs;
      const part = db.embedding_chunk_swap_part;
      if (swap.completed[0] !== id || swap.written !== n || part?.calls !== 1)
        throw new Error(
          `swap of ${n} chunks did not complete in one piece: ${JSON.stringify({ swap, part })}`,
        );
      pieces.push({ chunks: n, ms: part.ms, swapMs, written: swap.written });
      mem.progress(1);
      process.stderr.write(`bench: chunk-timeout: ${n} chunk rows in ${part.ms.toFixed(0)} ms\n`);
      if (part.ms > stopAfterMs) break;
    }
    const adaptive = task.adaptive ? await runAdaptive(task) : undefined;
    const { peak, byProgress, cpuSeconds } = mem.stop();
    const firstOver: Record<string, number | null> = {};
    for (const t of TIMEOUTS_MS) firstOver[String(t)] = pieces.find((p) => p.ms > t)?.chunks ?? null;
    const written = pieces.reduce((s, p) => s + p.written, 0);
    return {
      elapsedMs,
      seedMs: 0,
      processed: pieces.length,
      failed: 0,
      tokens: 0,
      requests: 0,
      peakRssMb: peak,
      startRssMb: mem.start,
      cpuSeconds,
      rssByProgress: byProgress,
      db: { embedding_chunk_swap_part: { calls: pieces.length, ms: pieces.reduce((s, p) => s + p.ms, 0) } },
      provider: { calls: 0, ms: 0 },
      timeout: {
        dimensions: CHUNK_DIMENSIONS,
        meanContentChars,
        pieces,
        firstOver,
        largestTried: pieces.at(-1)?.chunks ?? 0,
        adaptive,
      },
      chunks: { documents: pieces.length, chunksPlanned: written, chunksEmbedded: written },
    };
  } finally {
    await api.close();
  }
}
