import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../src/functions/deps.js";
import { backfillCancelled, backfillRequested } from "../src/functions/events.js";
import { INNGEST_MAX_EVENTS_PER_SEND, INNGEST_MAX_STEPS, planBackfill } from "../src/functions/plan.js";
import { TransientError } from "../src/lib/errors.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import { createTestApp } from "./support/app.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * The Inngest functions, served by the real Hono app, driven over the SDK's HTTP protocol by the
 * executor harness, against a real PostgreSQL server.
 */

const db = useTestDatabase("inngest");

async function table(name: string, rows: number) {
  await createDocuments(db, { table: name, rows });
  const app = createTestApp(db);
  await registerDocuments(app.store, { name, table: name });
  return app;
}

/** Wraps the real provider: fails the first `failures` calls (or all, while `down()` says so). */
function flaky(
  real: EmbeddingProvider,
  state: { failures: number; calls: number; down?: () => boolean },
): EmbeddingProvider {
  return {
    name: real.name,
    model: real.model,
    dimensions: real.dimensions,
    async embed(texts, options) {
      // The preflight probe goes through untouched: the failures are meant for batches.
      if (texts.length === 1 && texts[0] === "preflight probe") return real.embed(texts, options);
      state.calls++;
      if (state.down?.() || state.failures > 0) {
        state.failures--;
        throw new TransientError("provider returned 503 Service Unavailable");
      }
      return real.embed(texts, options);
    },
  };
}

describe("embeddings-backfill", () => {
  it("backfills a few thousand rows through fanned-out lanes with exact progress", async () => {
    const { harness, store } = await table("bf_docs", 3000);
    await harness.send(
      backfillRequested.create({ target: "bf_docs", batchSize: 50, parallelism: 3 }, { id: "req-1" }),
    );
    const runs = await harness.runUntilIdle({ maxCalls: 5000 });
    expect(runs.filter((r) => r.status !== "completed")).toEqual([]);
    const coordinator = runs.find((r) => r.fnId === "embeddings-backfill")!;
    const jobId = (coordinator.output as { jobId: string }).jobId;
    const job = await store.getJob(jobId);
    expect(job).toMatchObject({
      status: "completed",
      itemsTotal: 3000,
      itemsProcessed: 3000,
      itemsFailed: 0,
    });
    expect(await scalar(db, "SELECT count(*)::int FROM bf_docs WHERE embedding IS NOT NULL")).toBe(3000);
    expect(runs.filter((r) => r.fnId === "embeddings-backfill-worker")).toHaveLength(3);
    // Steps return counts, never rows or vectors.
    const biggest = Math.max(
      ...runs.flatMap((r) => r.steps.map((s) => JSON.stringify(s.data ?? null).length)),
    );
    expect(biggest).toBeLessThan(1000);
  });

  it("a replay of a completed run does no duplicate work", async () => {
    const { harness, store } = await table("replay_docs", 200);
    await harness.send(
      backfillRequested.create({ target: "replay_docs", batchSize: 50 }, { id: "req-replay" }),
    );
    const [first] = await harness.runUntilIdle();
    const jobId = (first!.output as { jobId: string }).jobId;
    const before = await store.getJob(jobId);
    // A duplicate event (same id) starts nothing; a dashboard replay finds the same, finished job.
    await harness.send(
      backfillRequested.create({ target: "replay_docs", batchSize: 50 }, { id: "req-replay" }),
    );
    const replayId = harness.replay(first!.runId);
    await harness.runUntilIdle();
    expect(harness.run(replayId)).toMatchObject({
      status: "completed",
      output: { jobId, status: "completed" },
    });
    expect(harness.runs("embeddings-backfill")).toHaveLength(2);
    expect(await store.getJob(jobId)).toMatchObject({
      itemsProcessed: before.itemsProcessed,
      tokens: before.tokens,
    });
  });

  it("walks through batches of unchanged rows without provider calls and without waiting", async () => {
    await createDocuments(db, { table: "unchanged_bf", rows: 100 });
    const state = { failures: 0, calls: 0 };
    const { harness, store } = createTestApp(db, { providerFor: (_t, real) => flaky(real(), state) });
    await registerDocuments(store, { name: "unchanged_bf", table: "unchanged_bf" });
    await harness.send(backfillRequested.create({ target: "unchanged_bf", batchSize: 20, parallelism: 1 }));
    await harness.runUntilIdle();
    const embedCalls = state.calls;
    // Everything due again, nothing changed (a webhook that fires too often).
    await store.markPending(
      "unchanged_bf",
      Array.from({ length: 100 }, (_, i) => String(i + 1)),
    );
    await harness.send(backfillRequested.create({ target: "unchanged_bf", batchSize: 20, parallelism: 1 }));
    const runs = await harness.runUntilIdle();
    const lane = runs.filter((r) => r.fnId === "embeddings-backfill-worker").at(-1)!;
    expect(lane.status).toBe("completed");
    expect(lane.steps.filter((s) => s.id.startsWith("wait-"))).toEqual([]);
    expect(state.calls).toBe(embedCalls);
  });

  it("rides out a step failing twice, then succeeding", async () => {
    await createDocuments(db, { table: "retry_docs", rows: 40 });
    const state = { failures: 2, calls: 0 };
    const { harness, store } = createTestApp(db, { providerFor: (_t, real) => flaky(real(), state) });
    await registerDocuments(store, { name: "retry_docs", table: "retry_docs" });
    await harness.send(backfillRequested.create({ target: "retry_docs", batchSize: 40, parallelism: 1 }));
    const runs = await harness.runUntilIdle();
    expect(runs.every((r) => r.status === "completed")).toBe(true);
    const worker = runs.find((r) => r.fnId === "embeddings-backfill-worker")!;
    expect(worker.steps.find((s) => s.id === "process-batch-0")?.attempts).toBe(3);
    expect(await scalar(db, "SELECT count(*)::int FROM retry_docs WHERE embedding IS NOT NULL")).toBe(40);
  });

  it("a provider outage that exhausts retries fails the job, loses no row, and the next backfill resumes", async () => {
    await createDocuments(db, { table: "outage_docs", rows: 120 });
    let down = false;
    const state = { failures: 0, calls: 0, down: () => down };
    const { harness, store } = createTestApp(db, { providerFor: (_t, real) => flaky(real(), state) });
    await registerDocuments(store, { name: "outage_docs", table: "outage_docs" });
    // First 2 batches succeed, then the provider goes down for good.
    let batches = 0;
    state.down = () => ++batches > 2;
    await harness.send(
      backfillRequested.create({ target: "outage_docs", batchSize: 20, parallelism: 1 }, { id: "outage-1" }),
    );
    const runs = await harness.runUntilIdle();
    const worker = runs.find((r) => r.fnId === "embeddings-backfill-worker")!;
    expect(worker.status).toBe("failed");
    const jobId = (runs.find((r) => r.fnId === "embeddings-backfill")!.output as { jobId: string }).jobId;
    const failed = await store.getJob(jobId);
    expect(failed).toMatchObject({ status: "failed", itemsProcessed: 40 });
    expect(failed.lastError).toMatch(/503/);
    const [s] = await store.status("outage_docs");
    expect(s).toMatchObject({ embedded: 40, processing: 0, deadLetter: 0, pending: 80 });

    down = false;
    state.down = () => false;
    await harness.send(
      backfillRequested.create({ target: "outage_docs", batchSize: 20, parallelism: 1 }, { id: "outage-2" }),
    );
    const again = await harness.runUntilIdle();
    const second = (
      again.find((r) => r.fnId === "embeddings-backfill" && r.event.id === "outage-2")!.output as {
        jobId: string;
      }
    ).jobId;
    expect(await store.getJob(second)).toMatchObject({
      status: "completed",
      itemsTotal: 80,
      itemsProcessed: 80,
    });
    expect(await scalar(db, "SELECT count(*)::int FROM outage_docs WHERE embedding IS NOT NULL")).toBe(120);
  });

  it("cancellation mid-run stops the lanes, releases leases and makes no further provider calls", async () => {
    await createDocuments(db, { table: "cancel_docs", rows: 400 });
    const state = { failures: 0, calls: 0 };
    const { harness, store } = createTestApp(db, { providerFor: (_t, real) => flaky(real(), state) });
    await registerDocuments(store, { name: "cancel_docs", table: "cancel_docs" });
    const jobId = "7d1f7c5e-4a7f-4d7e-9a51-1f0d6f1f2c3b";
    await harness.send(
      backfillRequested.create({ target: "cancel_docs", jobId, batchSize: 20, parallelism: 2 }),
    );
    await expect(harness.runUntilIdle({ maxCalls: 20 })).rejects.toThrow(/maxCalls/);
    const callsBefore = state.calls;
    expect(callsBefore).toBeGreaterThan(0);
    // What `embeddings cancel` does: mark the job cancelled, then send the event.
    await store.finishJob(jobId, "cancelled", "cancelled by test");
    await harness.send(backfillCancelled.create({ jobId }));
    const runs = await harness.runUntilIdle();
    expect(
      runs.filter((r) => r.fnId === "embeddings-backfill-worker").every((r) => r.status === "cancelled"),
    ).toBe(true);
    expect(state.calls).toBe(callsBefore);
    expect(await store.getJob(jobId)).toMatchObject({ status: "cancelled" });
    const [s] = await store.status("cancel_docs");
    expect(s!.processing).toBe(0);
    expect(s!.embedded).toBeLessThan(400);
  });

  it("a malformed event fails at once naming the bad field, writing nothing", async () => {
    const { harness, store } = await table("malformed_docs", 5);
    await harness.send({
      name: "embeddings/backfill.requested",
      data: { target: "Bad Name!", batchSize: 0 },
    });
    const runs = await harness.runUntilIdle();
    const run = runs.find((r) => r.fnId === "embeddings-backfill")!;
    expect(run.status).toBe("failed");
    expect(run.error?.message).toMatch(/target/);
    expect(run.calls).toHaveLength(1);
    expect((await store.status("malformed_docs"))[0]!.jobs).toEqual([]);
  });

  it("preflight catches a missing OpenAI key before any row is claimed, recording every problem on the job", async () => {
    await createDocuments(db, { table: "preflight_docs", rows: 5 });
    const { harness, store } = createTestApp(db, { env: { OPENAI_API_KEY: undefined } });
    await store.registerTarget({
      name: "preflight_docs",
      table: "public.preflight_docs",
      idColumn: "id",
      contentColumns: ["title", "body"],
      embeddingColumn: "embedding",
      provider: "openai",
      model: "text-embedding-3-small",
      dimensions: 384,
    });
    await harness.send(backfillRequested.create({ target: "preflight_docs" }));
    const [run] = await harness.runUntilIdle();
    expect(run!.status).toBe("failed");
    expect(run!.steps.find((s) => s.id === "preflight")?.attempts).toBe(1);
    const [s] = await store.status("preflight_docs");
    expect(s!.jobs[0]).toMatchObject({
      status: "failed",
      lastError: expect.stringContaining("OPENAI_API_KEY is not set"),
    });
    expect(s!.processing + s!.completed).toBe(0);
  });

  it("refuses an unsigned request in production mode", async () => {
    const signingKey = `signkey-prod-${"ab".repeat(32)}`;
    const { harness } = createTestApp(db, {
      env: { INNGEST_DEV: undefined, INNGEST_SIGNING_KEY: signingKey },
      signingKey,
    });
    const signed = await harness.rawCall({
      fnId: "embeddings-sweep",
      sign: true,
      event: { name: "inngest/scheduled.timer", data: {} },
    });
    expect(signed.status).not.toBe(401);
    const unsigned = await harness.rawCall({
      fnId: "embeddings-sweep",
      sign: false,
      event: { name: "inngest/scheduled.timer", data: {} },
    });
    expect(unsigned.status).toBe(401);
  });
});

describe("limits", () => {
  it("a 1,000,000-row backfill stays under 1,000 steps per run and 5,000 events per send", () => {
    const plan = planBackfill({ items: 1_000_000, batchSize: 20, parallelism: 8 }, DEFAULT_LIMITS);
    expect(plan.batches).toBe(50_000);
    expect(plan.maxStepsPerWorkerRun).toBeLessThan(INNGEST_MAX_STEPS);
    expect(plan.maxCoordinatorSteps).toBeLessThan(INNGEST_MAX_STEPS);
    expect(plan.eventsPerSend).toBeLessThanOrEqual(INNGEST_MAX_EVENTS_PER_SEND);
    expect(plan.workerRuns).toBe(8 * Math.ceil(6250 / DEFAULT_LIMITS.maxBatchesPerRun));
  });

  it("a lane that uses up its step budget hands over to a fresh run, and the job still completes exactly", async () => {
    await createDocuments(db, { table: "handover_docs", rows: 300 });
    const { harness, store } = createTestApp(db, { limits: { maxBatchesPerRun: 4 } });
    await registerDocuments(store, { name: "handover_docs", table: "handover_docs" });
    await harness.send(backfillRequested.create({ target: "handover_docs", batchSize: 10, parallelism: 2 }));
    const runs = await harness.runUntilIdle({ maxCalls: 5000 });
    const workers = runs.filter((r) => r.fnId === "embeddings-backfill-worker");
    expect(workers.length).toBeGreaterThanOrEqual(8);
    expect(Math.max(...workers.map((w) => w.steps.length))).toBeLessThanOrEqual(2 * 4 + 2);
    const jobId = (runs.find((r) => r.fnId === "embeddings-backfill")!.output as { jobId: string }).jobId;
    expect(await store.getJob(jobId)).toMatchObject({ status: "completed", itemsProcessed: 300 });
  });
});
