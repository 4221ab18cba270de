import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../src/cli/exit.js";
import type { EstimatedRunSummary } from "../src/cli/run-target.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { createSupabaseApi } from "../src/lib/db/supabase.js";
import type { Estimate } from "../src/lib/ops/estimate.js";
import type { StatusSnapshot } from "../src/lib/ops/status.js";
import { DEFAULT_HEADROOM } from "../src/lib/providers/rate-governor.js";
import { testConfig, testContext } from "./support/app.js";
import { runCliInProcess } from "./support/cli.js";
import { type FakeOpenAI, startFakeOpenAI } from "./support/fake-openai.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { startPostgrestGateway } from "./support/postgrest-gateway.js";
import { createRecordings, registerRecordings, transcript } from "./support/transcripts.js";

/**
 * `embeddings estimate` and `backfill --dry-run` against a real database, checked against what a
 * real run then spends: tokens billed by the fake OpenAI server (the real tokenizer over the
 * request) and recorded on the job.
 */

const db = useTestDatabase("estimate");
const KEY = "sk-test-0123456789abcdef0123456789abcdef";
let fake: FakeOpenAI;
let receiver: Server;
let receiverUrl: string;
const events: unknown[] = [];

/** Real text of varied length: sentences of words, a hash (tokenises unevenly), unique per row. */
async function createVaried(table: string, rows: number, spread: number): Promise<void> {
  await createDocuments(db, { table, rows: 0 });
  await db.exec(
    `INSERT INTO public.${table} (title, body, author)
     SELECT 'Report ' || g || ' on ' || (ARRAY['rivers', 'tariffs', 'proteins', 'élections', 'kernels'])[1 + g % 5],
            repeat('The committee reviewed item ' || (g % 97) || '. ', 1 + (g * 7) % ${spread}) || left(md5(g::text), 10),
            'author' || (g % 5)
       FROM generate_series(1, ${rows}) AS g`,
  );
}

async function registerOpenAI(name: string): Promise<void> {
  await testContext(db, testConfig()).store.registerTarget({
    name,
    table: `public.${name}`,
    idColumn: "id",
    contentColumns: ["title", "body"],
    embeddingColumn: "embedding",
    provider: "openai",
    model: "text-embedding-3-small",
    dimensions: 8,
  });
}

function cli(args: string[], env: Record<string, string | undefined> = {}) {
  return runCliInProcess(args, {
    env: { OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.url, INNGEST_BASE_URL: receiverUrl, ...env },
    context: (config) => testContext(db, config),
  });
}

/** A verb's --json answer, typed as the module that produced it. */
const parsed = <T>(r: { json: () => Record<string, unknown> }) => r.json() as unknown as T;

beforeAll(async () => {
  fake = await startFakeOpenAI({ apiKey: KEY, models: ["text-embedding-3-small"] });
  receiver = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      events.push(req.url);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ids: ["evt"], status: 200 }));
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const addr = receiver.address();
  receiverUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  await createVaried("est_small", 300, 23);
  await registerOpenAI("est_small");
});

afterAll(async () => {
  await fake?.close();
  await new Promise((r) => receiver?.close(r));
});

describe("embeddings estimate", () => {
  it("counts every row of a small table exactly, and the run then bills exactly those tokens", async () => {
    const e = await cli(["estimate", "est_small", "--json"]);
    expect([e.code, e.err]).toEqual([EXIT.ok, ""]);
    const est = parsed<Estimate>(e);
    expect(est).toMatchObject({
      target: "est_small",
      rows: 300,
      tableRows: 300,
      sample: { rows: 300, exact: true, method: "all" },
      tokens: { errorBound: 0 },
    });
    expect(est.tokens.estimate).toBeGreaterThan(300 * 10);

    fake.resetStats();
    const run = await cli(["run", "est_small", "--batch-size", "50", "--json"]);
    expect([run.code, run.err]).toEqual([EXIT.ok, ""]);
    const job = parsed<EstimatedRunSummary>(run).job;
    expect(job).toMatchObject({ status: "completed", itemsProcessed: 300 });
    expect(fake.stats.tokens).toBe(job.tokens);
    expect(est.tokens.estimate).toBe(job.tokens);
    // The run recorded the estimate it made before it started on its job.
    expect(parsed<EstimatedRunSummary>(run).estimate).toMatchObject({
      rows: 300,
      tokens: job.tokens,
      exact: true,
    });
    const recorded = await scalar<Record<string, unknown>>(
      db,
      "SELECT estimate FROM embedding_jobs WHERE id = $1",
      [job.id],
    );
    expect(recorded).toMatchObject({ rows: 300, tokens: job.tokens, exact: true });

    // status holds the estimate against the actual, per job.
    const status = await cli(["status", "est_small", "--json"]);
    const view = parsed<StatusSnapshot>(status).targets[0]!.jobs[0]!;
    expect(view).toMatchObject({
      id: job.id,
      tokens: job.tokens,
      estimate: { rows: 300, tokens: job.tokens },
    });
    const text = await cli(["status", "est_small"]);
    expect(text.out).toContain(
      `estimate 300 rows, ${job.tokens} tokens ~$${view.estimate!.listUsd!.toFixed(6)}  actual 300 rows, ${job.tokens} tokens`,
    );
  });

  it("estimates 0 rows for a fully embedded table, only the edited rows after edits, and every row with --reembed", async () => {
    const zero = parsed<Estimate>(await cli(["estimate", "est_small", "--json"]));
    expect(zero).toMatchObject({ rows: 0, tokens: { estimate: 0 }, requests: 0, cost: { listUsd: 0 } });

    await db.exec("UPDATE est_small SET body = body || ' Amended.' WHERE id <= 10");
    // Blank content is never sent: a row with nothing to embed is not counted.
    await db.exec("INSERT INTO est_small (title, body, author) VALUES ('', '   ', 'x')");
    const edited = parsed<Estimate>(await cli(["estimate", "est_small", "--json"]));
    expect(edited).toMatchObject({ rows: 10, tableRows: 301, sample: { exact: true } });

    const all = parsed<Estimate>(await cli(["estimate", "est_small", "--reembed", "--json"]));
    expect(all).toMatchObject({ rows: 300, reembed: true, sample: { exact: true } });
    const run = parsed<EstimatedRunSummary>(
      await cli(["run", "est_small", "--reembed", "--batch-size", "100", "--json"]),
    );
    expect(run.job.tokens).toBe(all.tokens.estimate);
  });

  it("samples a table larger than the sample, states the 95 % bound, and lands within 5 % of the run", async () => {
    await createVaried("est_big", 10_000, 15);
    await registerOpenAI("est_big");
    const r = await cli(["estimate", "est_big", "--sample", "1000", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const est = parsed<Estimate>(r);
    expect(est).toMatchObject({
      rows: 10_000,
      sample: { rows: 1000, exact: false, method: "bernoulli", confidence: 0.95 },
    });
    expect(est.tokens.errorBound).toBeGreaterThan(0);
    expect(est.tokens.errorBound / est.tokens.estimate).toBeLessThan(0.05);
    expect(est.tokens.low).toBe(est.tokens.estimate - est.tokens.errorBound);

    const text = await cli(["estimate", "est_big", "--sample", "1000"]);
    expect(text.out).toMatch(/rows +10,000 would be embedded/);
    expect(text.out).toMatch(/± [\d,]+ +\(95 % bound from a uniform random sample of 1,000 rows/);

    const run = await cli(["run", "est_big", "--batch-size", "1000", "--parallelism", "1", "--json"]);
    expect([run.code, run.err]).toEqual([EXIT.ok, ""]);
    const job = parsed<EstimatedRunSummary>(run).job;
    expect(job.itemsProcessed).toBe(10_000);
    expect(Math.abs(est.tokens.estimate - job.tokens) / job.tokens).toBeLessThan(0.05);
  }, 120_000);

  it("prices at the list and the Batch API price, and times at the configured rate limit", async () => {
    const noLimit = parsed<Estimate>(await cli(["estimate", "est_small", "--reembed", "--json"]));
    const tokens = noLimit.tokens.estimate;
    expect(noLimit.cost).toMatchObject({ currency: "USD", perMillion: 0.02, batchPerMillion: 0.01 });
    expect(noLimit.cost.listUsd).toBeCloseTo((tokens / 1e6) * 0.02, 6);
    expect(noLimit.cost.batchUsd).toBeCloseTo((tokens / 1e6) * 0.01, 6);
    expect(noLimit.time).toMatchObject({ seconds: null, note: expect.stringMatching(/EMBEDDINGS_RPM/) });

    const env = { EMBEDDINGS_RPM: "10", EMBEDDINGS_TPM: "1000000" };
    const limited = parsed<Estimate>(
      await cli(["estimate", "est_small", "--reembed", "--batch-size", "20", "--json"], env),
    );
    expect(limited.requests).toBe(Math.ceil(limited.inputs / 20));
    // 15 requests at 10 RPM paced at 99.5 %: the request limit binds, not the tokens.
    expect(limited.time).toMatchObject({
      limitedBy: "requests",
      seconds: Math.ceil((limited.requests / (10 * (1 - DEFAULT_HEADROOM))) * 60),
      requestsPerMinute: 10,
      tokensPerMinute: 1_000_000,
    });
    const text = await cli(["estimate", "est_small", "--reembed", "--batch-size", "20"], env);
    expect(text.out).toMatch(
      /cost +\$[\d.]+ at list price \(\$0\.02 \/ 1M tokens\); \$[\d.]+ with the Batch API/,
    );
    expect(text.out).toMatch(/time +~2 min at 10 RPM \/ 1,000,000 TPM/);
  });

  it("costs nothing on the local provider", async () => {
    await createDocuments(db, { table: "est_local", rows: 40 });
    await registerDocuments(testContext(db, testConfig()).store, { name: "est_local", table: "est_local" });
    const est = parsed<Estimate>(await cli(["estimate", "est_local", "--json"]));
    expect(est).toMatchObject({ rows: 40, provider: "local", requests: 0 });
    expect(est.cost).toMatchObject({ listUsd: 0, batchUsd: 0, priceSource: "local" });
    const run = parsed<EstimatedRunSummary>(await cli(["run", "est_local", "--json"]));
    expect(run.job.tokens).toBe(est.tokens.estimate);
  });

  it("cuts a chunked target's documents with the product's chunker: chunks, overlap and tokens as the run then embeds them", async () => {
    await createRecordings(
      db,
      "est_rec",
      Array.from({ length: 12 }, (_, i) => transcript(100 + i, 10 + i * 3)),
    );
    await registerRecordings(db.store, {
      name: "est_rec",
      table: "est_rec",
      chunkTokens: 64,
      chunkOverlap: 8,
    });
    const est = parsed<Estimate>(await cli(["estimate", "est_rec", "--json"]));
    expect(est).toMatchObject({ chunked: true, rows: 12, sample: { exact: true } });
    expect(est.chunks!.estimate).toBeGreaterThan(12);
    expect(est.chunks!.overlapTokens).toBeGreaterThan(0);
    expect(est.inputs).toBe(est.chunks!.estimate);
    const run = parsed<EstimatedRunSummary>(await cli(["run", "est_rec", "--batch-size", "50", "--json"]));
    expect(run.job).toMatchObject({ status: "completed", chunksTotal: est.chunks!.estimate });
    expect(run.job.tokens).toBe(est.tokens.estimate);
  });

  it("answers --json with stable keys", async () => {
    const est = parsed<Estimate>(await cli(["estimate", "est_small", "--json"]));
    expect(Object.keys(est).sort()).toEqual(
      [
        "batchSize",
        "chunked",
        "chunks",
        "cost",
        "inputs",
        "model",
        "provider",
        "reembed",
        "requests",
        "rows",
        "sample",
        "table",
        "tableRows",
        "target",
        "time",
        "tokens",
      ].sort(),
    );
    expect(Object.keys(est.tokens).sort()).toEqual(["errorBound", "estimate", "high", "low", "perRow"]);
    expect(Object.keys(est.sample).sort()).toEqual(["confidence", "exact", "method", "percent", "rows"]);
    expect(Object.keys(est.cost).sort()).toEqual(
      ["batchPerMillion", "batchUsd", "currency", "listUsd", "perMillion", "priceSource"].sort(),
    );
    expect(Object.keys(est.time).sort()).toEqual(
      ["limitedBy", "note", "requestsPerMinute", "seconds", "tokensPerMinute"].sort(),
    );
  });

  it("answers the same over supabase-js (PostgREST, as the service role), and records and reads job estimates there", async () => {
    const key = "service-role-key-for-tests-0123456789";
    const gateway = await startPostgrestGateway({ db: db.api, serviceRoleKey: key });
    try {
      const viaRpc = new EmbeddingStore(createSupabaseApi({ url: gateway.url, serviceRoleKey: key }));
      const sample = await viaRpc.estimateSample("est_small", true, 5000);
      const direct = await db.store.estimateSample("est_small", true, 5000);
      expect({ ...sample, sample: [...sample.sample].sort() }).toEqual({
        ...direct,
        sample: [...direct.sample].sort(),
      });
      const jobId = await scalar<string>(
        db,
        "SELECT id::text FROM embedding_jobs WHERE estimate IS NOT NULL ORDER BY created_at LIMIT 1",
      );
      const recorded = await viaRpc.setJobEstimate(jobId, { rows: 1, tokens: 2 });
      expect(recorded.estimate).toEqual({ rows: 1, tokens: 2 });
      expect(await viaRpc.jobEstimates([jobId])).toEqual({ [jobId]: { rows: 1, tokens: 2 } });
      await expect(viaRpc.setJobEstimate(jobId, { sample: "x".repeat(20_000) })).rejects.toMatchObject({
        code: "22023",
      });

      // Never more than the caller may: a table the service role cannot read is not estimated for it.
      await db.exec(`
        CREATE SCHEMA est_private;
        CREATE TABLE est_private.secrets (id bigint PRIMARY KEY, body text NOT NULL, embedding real[]);
        INSERT INTO est_private.secrets VALUES (1, 'the launch code is 0000', NULL);
        REVOKE ALL ON SCHEMA est_private FROM PUBLIC, anon, authenticated, service_role;
        REVOKE ALL ON est_private.secrets FROM PUBLIC, anon, authenticated, service_role;`);
      await db.store.registerTarget({
        name: "est_secrets",
        table: "est_private.secrets",
        idColumn: "id",
        contentColumns: ["body"],
        embeddingColumn: "embedding",
        provider: "local",
        model: "local-ngram-v1",
        dimensions: 8,
      });
      expect((await db.store.estimateSample("est_secrets", false, 10)).rows).toBe(1);
      const err = await viaRpc.estimateSample("est_secrets", false, 10).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "42501" });
      expect(JSON.stringify(err)).not.toContain("launch code");
    } finally {
      await gateway.close();
    }
  });

  it("refuses an unknown target with exit 2, naming the fix", async () => {
    const r = await cli(["estimate", "nope"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/unknown target "nope"/);
    expect(r.err).toMatch(/fix: register it first: embeddings targets add/);
  });
});

describe("backfill --dry-run", () => {
  it("prints the estimate and sends nothing: no event, no job, no row state", async () => {
    await createVaried("est_dry", 50, 5);
    await registerOpenAI("est_dry");
    const jobs = () => scalar<number>(db, "SELECT count(*)::int FROM embedding_jobs");
    const items = () => scalar<number>(db, "SELECT count(*)::int FROM embedding_items");
    const [jobsBefore, itemsBefore, eventsBefore] = [await jobs(), await items(), events.length];
    fake.resetStats();

    const text = await cli(["backfill", "est_dry", "--dry-run"]);
    expect([text.code, text.err]).toEqual([EXIT.ok, ""]);
    expect(text.out).toMatch(/rows +50 would be embedded/);
    expect(text.out).toMatch(/dry run: nothing was sent, no job was created/);
    const json = await cli(["backfill", "est_dry", "--dry-run", "--json"]);
    expect(json.json()).toMatchObject({ mode: "dry-run", sent: false, rows: 50, sample: { exact: true } });
    const local = await cli(["backfill", "est_dry", "--dry-run", "--local", "--json"]);
    expect(local.json()).toMatchObject({ mode: "dry-run", rows: 50 });

    expect(events.length).toBe(eventsBefore);
    expect(await jobs()).toBe(jobsBefore);
    expect(await items()).toBe(itemsBefore);
    expect(fake.stats.requests).toBe(0);
    expect(await scalar(db, "SELECT count(*)::int FROM est_dry WHERE embedding IS NOT NULL")).toBe(0);
  });
});
