import { runTarget } from "../src/lib/core/runner.js";
import { createPostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import { CHUNK_TARGET, registerChunkTarget } from "./chunk-data.js";
import { benchConfig, memorySampler, timedApi, timedProvider } from "./instruments.js";
import type { TimedCalls, WorkerResult, WorkerTask } from "./worker.js";

/** What a chunk-mode run did, from the job's own counters. */
export interface ChunkResult {
  documents: number;
  chunksPlanned: number;
  chunksEmbedded: number;
}

/**
 * Chunk mode end to end: `runTarget` on the chunked target, as `embeddings run` drives it. Each batch
 * claims documents, cuts them (src/lib/chunking/chunker.ts), records their chunk sets, embeds a batch
 * of chunks through the OpenAI provider over HTTP to the fake server, writes their vectors, and swaps
 * every complete document into the chunk table in one transaction. Timed from job creation to job
 * finish, seeding included; `rows` are documents.
 */
export async function runChunks(task: WorkerTask): Promise<WorkerResult> {
  const config = benchConfig(task);
  const db: Record<string, TimedCalls> = {};
  const provider: TimedCalls = { calls: 0, ms: 0 };
  const api = timedApi(
    createPostgresApi({ connectionString: task.dbUrl, poolSize: task.parallelism + 1 }),
    db,
  );
  const store = new EmbeddingStore(api);
  try {
    await registerChunkTarget(store);
    const target = await store.getTarget(CHUNK_TARGET);
    const embedder = timedProvider(providerForTarget(target, config), provider);
    for (const key of Object.keys(db)) delete db[key];
    const mem = memorySampler(task.rows);
    const started = performance.now();
    let seedMs = 0;
    const summary = await runTarget(
      { store, provider: embedder },
      {
        target: CHUNK_TARGET,
        batchSize: task.batchSize,
        parallelism: task.parallelism,
        retries: 10,
        onSeeded: () => {
          seedMs = performance.now() - started;
        },
        onProgress: ({ batch }) => mem.progress(batch.processed + batch.failed),
      },
    );
    const elapsedMs = performance.now() - started;
    const { peak, byProgress, cpuSeconds } = mem.stop();
    const { job } = summary;
    return {
      elapsedMs,
      seedMs,
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
      chunks: {
        documents: job.itemsProcessed,
        chunksPlanned: job.chunksTotal ?? 0,
        chunksEmbedded: job.chunksEmbedded ?? 0,
      },
    };
  } finally {
    await api.close();
  }
}
