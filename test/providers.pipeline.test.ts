import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/lib/config.js";
import { processBatch } from "../src/lib/core/batch.js";
import { runTarget } from "../src/lib/core/runner.js";
import type { PGliteApi } from "../src/lib/db/pglite.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { TargetConfigError } from "../src/lib/errors.js";
import { preflight } from "../src/lib/ops/preflight.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import { estimateCostUsd } from "../src/lib/providers/pricing.js";
import type { Target } from "../src/lib/types.js";
import { type FakeOpenAI, fakeVector, startFakeOpenAI } from "./support/fake-openai.js";
import { createDocuments, scalar } from "./support/fixtures.js";
import { createTestPGlite } from "./support/pglite.js";

/**
 * The OpenAI provider end to end: the real `openai` SDK over loopback HTTP to the fake server,
 * through the real pipeline, into real pgvector vector(384) columns in PGlite.
 */

const KEY = "sk-test-0123456789abcdef0123456789abcdef";
let fake: FakeOpenAI;
let db: PGliteApi;
let store: EmbeddingStore;

beforeAll(async () => {
  fake = await startFakeOpenAI({ apiKey: KEY, models: ["text-embedding-3-small"] });
  db = await createTestPGlite();
  store = new EmbeddingStore(db);
});
afterAll(async () => {
  await fake?.close();
  await db?.close();
});

function config(env: Record<string, string> = {}) {
  return loadConfig({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.url, OPENAI_TIMEOUT_MS: "2000", ...env });
}

async function target(
  name: string,
  rows: number,
  options: { dimensions?: number; column?: string } = {},
): Promise<Target> {
  await createDocuments(db, { table: name, rows, embeddingType: options.column ?? "vector(384)" });
  const t = await store.registerTarget({
    name,
    table: `public.${name}`,
    idColumn: "id",
    contentColumns: ["title", "body"],
    embeddingColumn: "embedding",
    provider: "openai",
    model: "text-embedding-3-small",
    dimensions: options.dimensions,
  });
  await store.enqueue(name, null, 10_000);
  return t;
}

describe("OpenAI through the pipeline", () => {
  it("embeds into vector(384) exactly what the model returns for each row", async () => {
    const t = await target("oa_docs", 30);
    fake.resetStats();
    const r = await processBatch(
      { store, provider: providerForTarget(t, config()) },
      { target: t, workerId: "w", batchSize: 30 },
    );
    expect(r).toMatchObject({ processed: 30, failed: 0, requests: 1 });
    const row = (
      await db.query<{ title: string; body: string; e: string }>(
        "SELECT title, body, embedding::text AS e FROM oa_docs WHERE id = 7",
      )
    )[0]!;
    const expected = fakeVector("text-embedding-3-small", `${row.title}\n\n${row.body}`, 384);
    const stored = row.e.slice(1, -1).split(",").map(Number);
    expect(stored).toHaveLength(384);
    for (const [i, v] of stored.entries()) expect(v).toBeCloseTo(expected[i]!, 6);
  });

  it("rides out a 429 burst with no row lost and no row failed", async () => {
    await target("burst_docs", 200);
    fake.resetStats();
    fake.setBehavior({ requestsPerMinute: 600, burstMs: 100 });
    try {
      const summary = await runTarget(
        {
          store,
          provider: providerForTarget(
            await store.getTarget("burst_docs"),
            config({ OPENAI_MAX_RETRIES: "0" }),
          ),
        },
        { target: "burst_docs", batchSize: 10, parallelism: 4, retries: 20 },
      );
      expect(summary.job).toMatchObject({ status: "completed", itemsProcessed: 200, itemsFailed: 0 });
      expect(fake.stats.status429).toBeGreaterThan(0);
      expect(await scalar(db, "SELECT count(*)::int FROM burst_docs WHERE embedding IS NOT NULL")).toBe(200);
    } finally {
      fake.setBehavior({ requestsPerMinute: null, burstMs: 1000 });
    }
  });

  it("dead-letters a poisoned input alone with the provider's message", async () => {
    const t = await target("poison_oa", 12);
    await db.exec("UPDATE poison_oa SET body = 'contains POISON marker' WHERE id = 5");
    fake.setBehavior({ poisonMarker: "POISON" });
    const r = await processBatch(
      { store, provider: providerForTarget(t, config()) },
      { target: t, workerId: "w", batchSize: 12 },
    );
    expect(r).toMatchObject({ processed: 11, failed: 1 });
    const dead = await store.deadLetters("poison_oa");
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ id: "5", errorKind: "permanent" });
  });

  it("an auth failure stops the target with a clear message, writes nothing and keeps no lease", async () => {
    const t = await target("auth_docs", 5);
    const provider = providerForTarget(t, config({ OPENAI_API_KEY: "sk-wrong-key-0000000000000000000000" }));
    const err = await processBatch({ store, provider }, { target: t, workerId: "w", batchSize: 5 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TargetConfigError);
    expect(String((err as Error).message)).not.toContain("sk-wrong-key");
    expect((err as Error).message).toMatch(/OPENAI_API_KEY|key/i);
    const [s] = await store.status("auth_docs");
    expect(s).toMatchObject({ embedded: 0, processing: 0, pending: 5, failed: 0, deadLetter: 0 });
  });

  it("preflight catches a 384 vs 1536 dimension mismatch before any row is claimed", async () => {
    await target("dims_docs", 5);
    fake.setBehavior({ wrongDimensions: 1536 });
    try {
      const report = await preflight(
        { store, config: config(), providerFor: (t) => providerForTarget(t, config()) },
        { targets: ["dims_docs"] },
      );
      expect(report.status).toBe("config");
      const probe = report.checks.find((c) => c.name === "probe dims_docs");
      expect(probe?.message).toMatch(/expected 384 dimensions, got 1536/);
      const [s] = await store.status("dims_docs");
      expect(s).toMatchObject({ processing: 0, completed: 0, pending: 5 });
    } finally {
      fake.setBehavior({ wrongDimensions: null });
    }
  });

  it("preflight reports every problem at once, without printing secrets", async () => {
    const report = await preflight(
      {
        store,
        config: config({ OPENAI_API_KEY: "sk-xxxx" }),
        providerFor: (t) => providerForTarget(t, config({ OPENAI_API_KEY: "sk-xxxx" })),
      },
      { targets: ["oa_docs", "missing_target"] },
    );
    expect(report.status).toBe("config");
    const problems = report.checks.filter((c) => c.level !== "ok").map((c) => c.message);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining('"missing_target" is not registered'),
        expect.stringContaining("looks like a placeholder"),
      ]),
    );
    expect(JSON.stringify(report)).not.toContain(KEY);
  });

  it("records truncation, sends identical texts once, and counts tokens and cost that add up", async () => {
    const t = await target("tokens_docs", 0);
    const long = "lorem ipsum ".repeat(9000);
    await db.query(
      "INSERT INTO tokens_docs (title, body, author) SELECT 'same', 'same text', 'a' FROM generate_series(1, 4) UNION ALL SELECT 'long', $1, 'b'",
      [long],
    );
    const job = await store.createJob("tokens_docs", "run", null);
    await store.startJob(job.id);
    fake.resetStats();
    const r = await processBatch(
      { store, provider: providerForTarget(t, config()) },
      { target: t, workerId: "w", batchSize: 10, jobId: job.id },
    );
    expect(r).toMatchObject({ processed: 5, truncated: 1 });
    expect(fake.stats.inputs).toBe(2);
    expect(await scalar(db, "SELECT count(*)::int FROM embedding_items WHERE truncated")).toBe(1);
    const after = await store.getJob(job.id);
    expect(after.tokens).toBe(fake.stats.tokens);
    expect(after.tokens).toBeGreaterThan(8191);
    expect(estimateCostUsd("text-embedding-3-small", after.tokens, {})).toBeCloseTo(
      (after.tokens / 1_000_000) * 0.02,
      10,
    );
  });
});
