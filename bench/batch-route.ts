/**
 * Issue 14's "done when", measured: a `--via batch` backfill of 120,000 rows (1536 dimensions)
 * through the fake OpenAI server's Files and Batches endpoints, with the worker killed after its
 * second upload answered and before the id was stored, then resumed by running the same command
 * again. Prints rows embedded, uploads, batches, tokens, the job's cost at list and batch price and
 * the time. Run: `npx tsx bench/batch-route.ts [rows] [inputs per batch]`.
 */
import pg from "pg";
import { runTarget } from "../src/lib/core/runner.js";
import { createPostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { readStatus } from "../src/lib/ops/status.js";
import { createOpenAIProvider } from "../src/lib/providers/openai.js";
import { type BatchApi, createBatchApi } from "../src/lib/providers/openai-batch.js";
import { startFakeOpenAI } from "../test/support/fake-openai.js";
import { createBenchTable, MODEL, TABLE } from "./data.js";
import { startBenchPg } from "./pg.js";

const ROWS = Number(process.argv[2] ?? 120_000);
/** Inputs per remote batch (OpenAI's limit is 50,000: 120,000 rows make three batches). */
const MAX_INPUTS = Number(process.argv[3] ?? 50_000);
const DIMS = 1536;
const KEY = "sk-bench-batch-route-0123456789";
const LIST_PRICE = 0.02; // USD per 1M tokens, text-embedding-3-small

async function main() {
  const server = await startBenchPg();
  const fake = await startFakeOpenAI({ apiKey: KEY });
  try {
    const url = await server.createDatabase("batch_route");
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await createBenchTable(client, ROWS);
    await client.end();
    const api = createPostgresApi({ connectionString: url, poolSize: 4 });
    const store = new EmbeddingStore(api);
    await store.registerTarget({
      name: TABLE,
      table: `public.${TABLE}`,
      idColumn: "id",
      contentColumns: ["title", "body"],
      embeddingColumn: "embedding",
      provider: "openai",
      model: MODEL,
      dimensions: DIMS,
    });
    const real = createBatchApi({ apiKey: KEY, baseURL: fake.url, model: MODEL });
    let uploads = 0;
    const killing: BatchApi = {
      ...real,
      upload: async (name, content) => {
        const id = await real.upload(name, content);
        if (++uploads === 2) throw new Error("worker killed after its second upload answered");
        return id;
      },
    };
    const provider = createOpenAIProvider({ apiKey: KEY, baseURL: fake.url, model: MODEL, dimensions: DIMS });
    const options = (remote: BatchApi) => ({
      target: TABLE,
      batchSize: 500,
      parallelism: 2,
      via: "batch" as const,
      remote: {
        api: remote,
        pollMs: 5,
        maxPollMs: 50,
        limits: { maxInputs: MAX_INPUTS, maxBytes: 190_000_000 },
      },
    });
    const started = Date.now();
    const killed = await runTarget({ store, provider }, options(killing)).catch((err: Error) => err);
    if (!(killed instanceof Error)) throw new Error("the first run was not killed: fewer than two groups?");
    console.log(`first run: ${killed.message}`);
    const s = await runTarget({ store, provider }, options(real));
    const seconds = (Date.now() - started) / 1000;
    const status = await readStatus({ store, prices: { [MODEL]: LIST_PRICE } }, { target: TABLE });
    const job = status.targets[0]!.jobs.find((j) => j.id === s.job.id)!;
    const embedded = (
      await api.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM public.${TABLE} WHERE embedding IS NOT NULL`,
      )
    )[0]!.n;
    const list = (s.job.tokens / 1e6) * LIST_PRICE;
    console.log(
      JSON.stringify(
        {
          rows: ROWS,
          dimensions: DIMS,
          embedded,
          job: {
            id: s.job.id,
            status: s.job.status,
            itemsProcessed: s.job.itemsProcessed,
            tokens: s.job.tokens,
          },
          remoteBatches: (s.remoteBatches ?? []).map((b) => ({
            items: b.items,
            written: b.written,
            status: b.remoteStatus,
          })),
          fake: {
            filesUploaded: fake.stats.filesUploaded,
            batchesCreated: fake.stats.batchesCreated,
            syncRequests: fake.stats.requests,
          },
          costUsd: {
            listPrice: Number(list.toFixed(6)),
            accounted: job.estimatedCostUsd,
            ratio: job.estimatedCostUsd / list,
          },
          seconds: Number(seconds.toFixed(1)),
        },
        null,
        2,
      ),
    );
    await api.close();
  } finally {
    await fake.close();
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
