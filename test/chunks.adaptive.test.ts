import { afterAll, describe, expect, it } from "vitest";
import { backfillRequested } from "../src/functions/events.js";
import { runTarget } from "../src/lib/core/runner.js";
import { createPostgresApi, type PostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { createLocalProvider } from "../src/lib/providers/local.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import { createTestApp } from "./support/app.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { createTestPGlite } from "./support/pglite.js";
import { createRecordings, recording, registerRecordings, transcript } from "./support/transcripts.js";

/**
 * Chunk mode under pressure and on the other runtimes: batches that shrink when a statement
 * times out (rows and chunks, at 1536 dimensions), PGlite with pgvector, and an Inngest backfill.
 * Split from chunks.test.ts so the two long files run side by side.
 */

const db = useTestDatabase("chunks_adaptive");

const _run = (provider: EmbeddingProvider, target: string, batchSize = 20, parallelism = 2) =>
  runTarget({ store: db.store, provider }, { target, batchSize, parallelism });

describe("adaptive batch size", () => {
  /**
   * A role with a small statement_timeout, as Supabase gives its API roles, and a table whose write
   * of more than 8 rows in one statement takes 5 s (standing in for a slow HNSW index): a batch of
   * 20 hits the timeout every time, a batch of 5 never does.
   */
  async function slowRole(role: string): Promise<PostgresApi> {
    await db.exec(`
      DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN
          CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD 'slow';
        END IF;
      END $$;
      ALTER ROLE ${role} SET statement_timeout = '1500ms';
      CREATE OR REPLACE FUNCTION public.slow_when_large() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF (SELECT count(*) FROM new_rows) > 8 THEN PERFORM pg_sleep(5); END IF;
        RETURN NULL;
      END $$;`);
    const url = new URL(db.url);
    url.username = role;
    url.password = "slow";
    const api = createPostgresApi(url.toString());
    apis.push(api);
    return api;
  }
  const apis: PostgresApi[] = [];
  afterAll(async () => {
    for (const api of apis) await api.close();
  });

  it("a chunk swap cancelled by the statement timeout shrinks to pieces that fit, at 1536 dimensions, and completes", async () => {
    await createRecordings(db, "rec_slow", [transcript(60, 40), transcript(61, 40)]);
    await registerRecordings(db.store, { name: "rec_slow", table: "rec_slow", dimensions: 1536 });
    const api = await slowRole("chunks_slow_worker");
    await db.exec(`CREATE TRIGGER slow AFTER INSERT ON public.rec_slow_chunks REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION public.slow_when_large()`);
    const store = new EmbeddingStore(api);
    const { provider } = recording(1536);
    const s = await runTarget({ store, provider }, { target: "rec_slow", batchSize: 20, parallelism: 1 });
    expect(s.job.status).toBe("completed");
    const stored = await scalar<number>(db, "SELECT count(*)::int FROM public.rec_slow_chunks");
    expect(stored).toBeGreaterThan(20);
    expect(
      await scalar(
        db,
        "SELECT count(*)::int FROM public.rec_slow_chunks WHERE cardinality(embedding) = 1536",
      ),
    ).toBe(stored);
    // The cap the target learned fits under the 8-row threshold (it may have grown back a step).
    const t = await db.store.getTarget("rec_slow");
    expect(t.batchLimit).toBeGreaterThanOrEqual(1);
    expect(t.batchLimit).toBeLessThanOrEqual(8);
    expect(t.batchLimitReason).toBeTruthy();
    const [status] = await db.store.status("rec_slow");
    expect(status).toMatchObject({ batchLimit: t.batchLimit, completed: 2, deadLetter: 0 });
  });

  it("a row write cancelled by the statement timeout is split down until it fits; the size grows back", async () => {
    await createDocuments(db, { table: "rows_slow", rows: 60 });
    await registerDocuments(db.store, { name: "rows_slow", table: "rows_slow", dimensions: 1536 });
    const api = await slowRole("rows_slow_worker");
    await db.exec(`CREATE TRIGGER slow AFTER UPDATE ON public.rows_slow REFERENCING NEW TABLE AS new_rows
      FOR EACH STATEMENT EXECUTE FUNCTION public.slow_when_large()`);
    const store = new EmbeddingStore(api);
    const s = await runTarget(
      { store, provider: createLocalProvider({ dimensions: 1536 }) },
      { target: "rows_slow", batchSize: 20, parallelism: 1 },
    );
    expect(s.job).toMatchObject({ status: "completed", itemsProcessed: 60, itemsFailed: 0 });
    expect(await scalar(db, "SELECT count(*)::int FROM public.rows_slow WHERE embedding IS NOT NULL")).toBe(
      60,
    );
    const capped = (await db.store.getTarget("rows_slow")).batchLimit!;
    expect(capped).toBeGreaterThanOrEqual(1);
    expect(capped).toBeLessThanOrEqual(8);

    // The trigger is gone (the index was fixed): five full batches at the cap, and it grows by half.
    await db.exec("DROP TRIGGER slow ON public.rows_slow; UPDATE public.rows_slow SET body = body || '!'");
    await runTarget(
      { store, provider: createLocalProvider({ dimensions: 1536 }) },
      { target: "rows_slow", batchSize: 20, parallelism: 1 },
    );
    const grown = await db.store.getTarget("rows_slow");
    expect(grown.batchLimit == null || grown.batchLimit > capped).toBe(true);
  });

  it("a row that times out even alone dead-letters with the reason; the others are written", async () => {
    await createDocuments(db, { table: "rows_stuck", rows: 6 });
    await registerDocuments(db.store, {
      name: "rows_stuck",
      table: "rows_stuck",
      dimensions: 8,
      maxAttempts: 1,
    });
    await db.exec(`
      CREATE FUNCTION public.stuck_row() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.id = 4 THEN PERFORM pg_sleep(5); END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER stuck BEFORE UPDATE OF embedding ON public.rows_stuck FOR EACH ROW EXECUTE FUNCTION public.stuck_row();`);
    const api = await slowRole("rows_stuck_worker");
    const store = new EmbeddingStore(api);
    const s = await runTarget(
      { store, provider: createLocalProvider({ dimensions: 8 }) },
      { target: "rows_stuck", batchSize: 6, parallelism: 1 },
    );
    expect(s.job).toMatchObject({ status: "completed", itemsProcessed: 5 });
    const dead = await db.store.deadLetters("rows_stuck");
    expect(dead).toEqual([
      expect.objectContaining({
        id: "4",
        errorKind: "transient",
        error: expect.stringContaining("alone still failed"),
      }),
    ]);
  });
});

describe("chunked targets on the embedded default and through Inngest", () => {
  it("PGlite with pgvector: the chunk table gets vector(N), and a nearest-chunk query finds the passage", async () => {
    const lite = await createTestPGlite();
    try {
      const docs = [transcript(80, 40), transcript(81, 40)];
      docs[1]![17] = "Speaker 3: A zebra played the xylophone for a quokka at the harbour festival.";
      await createRecordings(lite, "lite_rec", docs);
      const store = new EmbeddingStore(lite);
      const t = await registerRecordings(store, { name: "lite_rec", table: "lite_rec", dimensions: 384 });
      expect(t).toMatchObject({ embeddingKind: "vector", notes: [] });
      const s = await runTarget(
        { store, provider: createLocalProvider({ dimensions: 384 }) },
        { target: "lite_rec", batchSize: 20, parallelism: 2 },
      );
      expect(s.job.status).toBe("completed");
      const [query] = (
        await createLocalProvider({ dimensions: 384 }).embed([
          "a zebra played the xylophone for a quokka at the harbour festival",
        ])
      ).outcomes;
      const vector = `[${Array.from((query as { vector: Float32Array }).vector).join(",")}]`;
      const [hit] = await lite.query<{ document_id: number; content: string }>(
        "SELECT document_id, content FROM public.lite_rec_chunks ORDER BY embedding <=> $1::vector LIMIT 1",
        [vector],
      );
      expect(hit).toMatchObject({
        document_id: 2,
        content: expect.stringContaining("zebra played the xylophone"),
      });
    } finally {
      await lite.close();
    }
  });

  it("an Inngest backfill of a chunked target completes every document, counting documents and chunks", async () => {
    await createRecordings(db, "rec_inngest", [transcript(90, 60), transcript(91, 3), transcript(92, 25)]);
    const app = createTestApp(db);
    await registerRecordings(app.store, { name: "rec_inngest", table: "rec_inngest" });
    await app.harness.send(
      backfillRequested.create({ target: "rec_inngest", batchSize: 10, parallelism: 2 }),
    );
    const runs = await app.harness.runUntilIdle({ maxCalls: 5000 });
    expect(runs.filter((r) => r.status !== "completed")).toEqual([]);
    const jobId = (runs.find((r) => r.fnId === "embeddings-backfill")!.output as { jobId: string }).jobId;
    const stored = await scalar<number>(db, "SELECT count(*)::int FROM public.rec_inngest_chunks");
    expect(await app.store.getJob(jobId)).toMatchObject({
      status: "completed",
      itemsTotal: 3,
      itemsProcessed: 3,
      chunksTotal: stored,
      chunksEmbedded: stored,
    });
    // Batches are chunks: far more batch steps than documents.
    const batches = runs.flatMap((r) => r.steps).filter((st) => st.id.startsWith("process-batch-"));
    expect(batches.length).toBeGreaterThanOrEqual(Math.ceil(stored / 10));
  });
});
