import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backfillRequested } from "../src/functions/events.js";
import { loadConfig } from "../src/lib/config.js";
import {
  collectGroup,
  openGroup,
  pollGroup,
  remoteWorker,
  submitGroup,
} from "../src/lib/core/remote-batch.js";
import { runTarget } from "../src/lib/core/runner.js";
import { cancelJob } from "../src/lib/ops/actions.js";
import { readStatus } from "../src/lib/ops/status.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import { type BatchApi, createBatchApi } from "../src/lib/providers/openai-batch.js";
import { decodeEmbedding } from "../src/lib/providers/openai-wire.js";
import type { Target } from "../src/lib/types.js";
import { createTestApp, testContext } from "./support/app.js";
import { runCliInProcess } from "./support/cli.js";
import { type FakeOpenAI, startFakeOpenAI } from "./support/fake-openai.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * The Batch API route against the fake OpenAI server's Files and Batches endpoints (real HTTP, the
 * real `openai` SDK) and a real PostgreSQL: groups of rows uploaded, submitted, polled and written
 * back by custom_id; crashes between each create call and storing its id; partial failures, expiry,
 * cancel, and a Ctrl-C that the same command resumes.
 */

const db = useTestDatabase("batch_api");
const KEY = "sk-test-batch-route-0123456789";
const MODEL = "text-embedding-3-small";
let fake: FakeOpenAI;

beforeAll(async () => {
  fake = await startFakeOpenAI({ apiKey: KEY });
});
afterAll(async () => {
  await fake.close();
});

const config = () => loadConfig({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.url, LOG_LEVEL: "silent" });
const api = () => createBatchApi({ apiKey: KEY, baseURL: fake.url, model: MODEL });

async function table(name: string, rows: number): Promise<Target> {
  await createDocuments(db, { table: name, rows });
  return registerDocuments(db.store, { name, table: name, provider: "openai", model: MODEL, dimensions: 8 });
}

function run(target: Target, options: { maxInputs?: number; signal?: AbortSignal; remote?: BatchApi } = {}) {
  return runTarget(
    { store: db.store, provider: providerForTarget(target, config()) },
    {
      target: target.name,
      batchSize: 50,
      parallelism: 2,
      via: "batch",
      signal: options.signal,
      remote: {
        api: options.remote ?? api(),
        pollMs: 1,
        maxPollMs: 5,
        limits: { maxInputs: options.maxInputs ?? 50_000, maxBytes: 190_000_000 },
      },
    },
  );
}

const embedded = (t: string) =>
  scalar<number>(db, `SELECT count(*)::int FROM public.${t} WHERE embedding IS NOT NULL`);

describe("the Batch API route", () => {
  it("embeds every row through remote batches of at most maxInputs, matched by custom_id, at half the list price", async () => {
    const target = await table("ba_docs", 1000);
    fake.resetStats();
    const s = await run(target, { maxInputs: 400 });
    expect(s.job.status).toBe("completed");
    expect(s.remoteBatches).toHaveLength(3);
    expect(s.remoteBatches!.map((b) => b.items)).toEqual([400, 400, 200]);
    expect(s.remoteBatches!.every((b) => b.state === "done" && b.remoteStatus === "completed")).toBe(true);
    expect(await embedded("ba_docs")).toBe(1000);
    expect(fake.stats).toMatchObject({ filesUploaded: 3, batchesCreated: 3, requests: 0 });
    expect(s.job).toMatchObject({ itemsProcessed: 1000, itemsFailed: 0, remoteTokens: s.job.tokens });
    expect(s.job.tokens).toBeGreaterThan(0);

    // Output order is not input order: every stored vector is the one its custom_id names.
    const outputs = fake.batch.files().filter((f) => f.purpose === "batch_output");
    expect(outputs).toHaveLength(3);
    const lines = outputs.flatMap((f) =>
      f.content
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l)),
    );
    const ids = lines.map((l) => String(l.custom_id).slice(33));
    expect(ids.slice(0, 20)).not.toEqual([...ids.slice(0, 20)].sort((a, b) => Number(a) - Number(b)));
    for (const line of lines.slice(0, 50)) {
      const id = String(line.custom_id).slice(33);
      const [row] = await db.query<{ embedding: number[] }>(
        "SELECT embedding FROM public.ba_docs WHERE id = $1",
        [id],
      );
      const expected = Array.from(decodeEmbedding(line.response.body.data[0].embedding)!);
      expect(row!.embedding.map((x) => Number(x.toFixed(5)))).toEqual(
        expected.map((x) => Number(x.toFixed(5))),
      );
    }

    // Its own accounting: tokens at the batch price, half the list price.
    const status = await readStatus(
      { store: db.store, prices: { [MODEL]: 1_000_000 } },
      { target: "ba_docs" },
    );
    const job = status.targets[0]!.jobs.find((j) => j.id === s.job.id)!;
    expect(job.estimatedCostUsd).toBeCloseTo(s.job.tokens * 0.5, 6);
    expect(status.targets[0]!.remoteBatches).toHaveLength(3);
    expect(status.targets[0]!.remoteBatches[0]).toMatchObject({ state: "done", remoteStatus: "completed" });

    // Nothing changed: a second run uploads nothing.
    fake.resetStats();
    const again = await run(target, { maxInputs: 400 });
    expect(again.job).toMatchObject({ status: "completed", itemsProcessed: 0 });
    expect(fake.stats.filesUploaded).toBe(0);
  });

  it("a crash after an upload, after a submit, or in the middle of writing back neither uploads, pays nor counts twice", async () => {
    const target = await table("ba_crash", 300);
    const job = await db.store.createJob("ba_crash", "run", null, { via: "batch" });
    await db.store.enqueue("ba_crash", null, 1000, false, job.id);
    await db.store.startJob(job.id);
    fake.resetStats();
    const real = api();
    const crash = (what: string) => {
      throw new Error(`worker killed after ${what}`);
    };
    const deps = (remote: BatchApi) => ({ store: db.store, api: remote });

    // Killed after the upload answered, before its id was stored.
    await expect(
      openGroup(
        deps({ ...real, upload: async (n, c) => crash(`uploading ${await real.upload(n, c)}`) }),
        target,
        job.id,
        0,
      ),
    ).rejects.toThrow(/killed after uploading/);
    const opened = await openGroup(deps(real), target, job.id, 0);
    expect(opened.record).toMatchObject({ state: "uploaded", items: 300 });
    expect(fake.stats.filesUploaded).toBe(1);

    // Killed after the batch was created, before its id was stored.
    await expect(
      submitGroup(
        deps({ ...real, create: async (f, m) => crash(`submitting ${(await real.create(f, m)).id}`) }),
        target,
        opened.record,
      ),
    ).rejects.toThrow(/killed after submitting/);
    let rec = await submitGroup(deps(real), target, opened.record);
    expect(rec.state).toBe("submitted");
    expect(fake.stats.batchesCreated).toBe(1);
    // The sweep cannot take the rows while the batch is remote.
    const claim = await db.store.claim("ba_crash", "sweep", 1000, 60);
    expect(claim.items).toHaveLength(0);

    fake.batch.complete(rec.batchId!);
    rec = await pollGroup(deps(real), rec);
    expect(rec.remoteStatus).toBe("completed");
    // Killed after writing back about a third of the output.
    const partial: BatchApi = {
      ...real,
      lines: (id) => ({
        async *[Symbol.asyncIterator]() {
          let n = 0;
          for await (const line of real.lines(id)) {
            if (n++ === 120) throw new Error("worker killed while writing back");
            yield line;
          }
        },
      }),
    };
    await expect(collectGroup(deps(partial), target, rec, { pieceSize: 50 })).rejects.toThrow(
      /killed while writing back/,
    );
    expect(await embedded("ba_crash")).toBe(100);
    rec = await collectGroup(deps(real), target, rec, { pieceSize: 50 });
    expect(rec).toMatchObject({ state: "done", written: 300, returned: 0 });
    expect(await embedded("ba_crash")).toBe(300);
    expect((await db.store.getJob(job.id)).itemsProcessed).toBe(300);
    expect(fake.stats).toMatchObject({ filesUploaded: 1, batchesCreated: 1 });
  });

  it("failed lines fail their rows with the reason; an expired batch gives the rest back to the normal path", async () => {
    await createDocuments(db, { table: "ba_fail", rows: 0 });
    await db.exec(`INSERT INTO public.ba_fail (title, body, author)
      SELECT 'Title ' || g, CASE WHEN g IN (7, 8) THEN 'POISON body ' || g ELSE 'Body ' || g END, 'a'
        FROM generate_series(1, 200) g`);
    const target = await registerDocuments(db.store, {
      name: "ba_fail",
      table: "ba_fail",
      provider: "openai",
      model: MODEL,
      dimensions: 8,
      maxAttempts: 1,
    });
    // The provider works through 150 of the 200 requests, then the 24 h window runs out.
    fake.setBehavior({ batchPollsPerTransition: null });
    const remote = api();
    const stepper: BatchApi = {
      ...remote,
      retrieve: async (id) => {
        const b = fake.batch.get(id);
        if (b.status === "validating") fake.batch.advance(1);
        else if (b.status === "in_progress") {
          fake.batch.progress(id, 150);
          fake.batch.expire(id);
        }
        return remote.retrieve(id);
      },
    };
    fake.resetStats();
    try {
      const s = await run(target, { remote: stepper });
      expect(s.remoteBatches![0]).toMatchObject({ remoteStatus: "expired", state: "done" });
      expect(s.remoteBatches![0]!.written + s.remoteBatches![0]!.errored).toBeLessThanOrEqual(150);
      expect(s.remoteBatches![0]!.returned).toBe(50);
      // The returned rows were embedded on the normal path, in the same job.
      expect(fake.stats.inputs).toBeGreaterThanOrEqual(48);
      expect(s.job.status).toBe("completed");
      expect(await embedded("ba_fail")).toBe(198);
      const dead = await db.store.deadLetters("ba_fail");
      expect(dead.map((d) => d.id).sort()).toEqual(["7", "8"]);
      expect(dead[0]!.error).toMatch(/POISON|rejected|invalid/i);
    } finally {
      fake.setBehavior({ batchPollsPerTransition: 1 });
    }
  });

  it("cancel cancels the remote batch and parks its rows; a Ctrl-C leaves it running and the same command resumes it", async () => {
    const target = await table("ba_cancel", 120);
    const job = await db.store.createJob("ba_cancel", "run", null, { via: "batch" });
    await db.store.enqueue("ba_cancel", null, 1000, false, job.id);
    await db.store.startJob(job.id);
    const deps = { store: db.store, api: api() };
    const rec = await submitGroup(deps, target, (await openGroup(deps, target, job.id, 0)).record);
    fake.resetStats();
    const r = await cancelJob(db.store, job.id, { reason: "operator", batchApiFor: async () => deps.api });
    expect(r).toMatchObject({ cancelled: true, remote: { cancelled: 1, released: 120, errors: [] } });
    expect(fake.stats.batchesCancelled).toBe(1);
    expect(["cancelling", "cancelled"]).toContain(fake.batch.get(rec.batchId!).status);
    expect(
      await scalar<number>(
        db,
        `SELECT count(*)::int FROM embedding_items i JOIN embedding_targets t ON t.id = i.target_id
          WHERE t.name = 'ba_cancel' AND i.status = 'parked'`,
      ),
    ).toBe(120);

    // Ctrl-C while the provider works: the job stays running with its batch remote.
    fake.setBehavior({ batchPollsPerTransition: null });
    const controller = new AbortController();
    fake.resetStats();
    const first = await runTarget(
      { store: db.store, provider: providerForTarget(target, config()) },
      {
        target: "ba_cancel",
        batchSize: 50,
        parallelism: 1,
        via: "batch",
        signal: controller.signal,
        remote: { api: api(), pollMs: 1, maxPollMs: 2, onPoll: () => controller.abort() },
      },
    );
    expect(first).toMatchObject({ cancelled: true, resumable: true, job: { status: "running" } });
    expect(fake.stats).toMatchObject({ filesUploaded: 1, batchesCreated: 1 });
    fake.setBehavior({ batchPollsPerTransition: 1 });
    const resumed = await run(target);
    expect(resumed.job).toMatchObject({ id: first.job.id, status: "completed", itemsProcessed: 120 });
    expect(fake.stats).toMatchObject({ filesUploaded: 1, batchesCreated: 1 });
    expect(await embedded("ba_cancel")).toBe(120);
  });

  it("refuses the local provider and chunk targets with the reason and the fix", async () => {
    await createDocuments(db, { table: "ba_local", rows: 3 });
    const local = await registerDocuments(db.store, { name: "ba_local", table: "ba_local" });
    await expect(run(local)).rejects.toMatchObject({
      message: expect.stringContaining("has no Batch API"),
      fix: expect.stringContaining("openai target"),
    });
    expect(remoteWorker("x")).toBe("batch:x");
  });

  it("through Inngest: a backfill via batch is three remote batches, survives a worker killed after its upload, and the lanes finish it", async () => {
    const target = await table("ba_inngest", 400);
    fake.resetStats();
    let kills = 0;
    const app = createTestApp(db, {
      env: { OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.url },
      limits: { remoteMaxInputs: 150, remotePollMs: 30_000, remoteMaxPollMs: 120_000 },
      batchApiFor: () => {
        const real = api();
        return {
          ...real,
          // The first upload lands at the provider, then the worker dies before storing its id.
          upload: async (name, content) => {
            const id = await real.upload(name, content);
            if (kills++ === 0) throw new Error("worker killed after the upload answered");
            return id;
          },
        };
      },
    });
    expect(target.provider).toBe("openai");
    await app.harness.send(
      backfillRequested.create({ target: "ba_inngest", via: "batch", batchSize: 50, parallelism: 2 }),
    );
    const runs = await app.harness.runUntilIdle({ maxCalls: 5000 });
    expect(runs.filter((r) => r.status !== "completed")).toEqual([]);
    const remoteRun = runs.find((r) => r.fnId === "embeddings-backfill-remote")!;
    expect(remoteRun.output).toMatchObject({ groups: 3, written: 400, returned: 0, lanes: 2 });
    const steps = remoteRun.steps.map((st) => st.id);
    expect(steps).toEqual(
      expect.arrayContaining(["open-0", "submit-0", "poll-0", "wait-0", "collect-2", "fan-out"]),
    );
    // One upload and one batch per group, the killed upload included; the one sync request is the
    // preflight's live probe of the dimension.
    expect(fake.stats).toMatchObject({ filesUploaded: 3, batchesCreated: 3, requests: 1, inputs: 1 });
    const jobId = (runs.find((r) => r.fnId === "embeddings-backfill")!.output as { jobId: string }).jobId;
    expect(await app.store.getJob(jobId)).toMatchObject({
      status: "completed",
      itemsProcessed: 400,
      options: { via: "batch" },
    });
    expect(await embedded("ba_inngest")).toBe(400);
    // The coordinator recorded what it expected: status shows estimate against actual.
    const [est] = await db.query<{ rows: number }>(
      "SELECT (estimate ->> 'rows')::int AS rows FROM embedding_jobs WHERE id = $1",
      [jobId],
    );
    expect(est!.rows).toBe(400);
  });

  it("from the CLI: run --via batch, status shows each remote batch, and a local target is refused (exit 3)", async () => {
    await table("ba_cli", 90);
    const env = { OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.url, EMBEDDINGS_BATCH_POLL_SECONDS: "0.005" };
    const cli = (args: string[]) => runCliInProcess(args, { env, context: (c) => testContext(db, c) });
    const r = await cli(["run", "ba_cli", "--via", "batch"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/remote batch #0 batch_\w+ completed: 90 rows, written 90, failed 0, returned 0/);
    expect(r.err).toMatch(/remote batches: #0 /);
    const status = await cli(["status", "ba_cli"]);
    expect(status.out).toMatch(/remote {4}batch batch_\w+ {2}completed +90\/90 done at the provider/);
    const json = (await cli(["status", "ba_cli", "--json"])).json() as {
      targets: { remoteBatches: { state: string; items: number; written: number }[] }[];
    };
    expect(json.targets[0]!.remoteBatches[0]).toMatchObject({ state: "done", items: 90, written: 90 });
    expect(await embedded("ba_cli")).toBe(90);

    await createDocuments(db, { table: "ba_cli_local", rows: 2 });
    await registerDocuments(db.store, { name: "ba_cli_local", table: "ba_cli_local" });
    const refused = await cli(["run", "ba_cli_local", "--via", "batch"]);
    expect(refused.code).toBe(3);
    expect(refused.err).toMatch(/local provider, which has no Batch API/);
  });
});
