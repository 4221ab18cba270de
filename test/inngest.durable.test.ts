import { describe, expect, it } from "vitest";
import { laneEventId } from "../src/functions/client.js";
import { backfillRequested } from "../src/functions/events.js";
import { RateLimitedError, TransientError } from "../src/lib/errors.js";
import { cancelJob } from "../src/lib/ops/actions.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import { createTestApp, type TestApp } from "./support/app.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import type { RunResult } from "./support/inngest-harness.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * Durable for real: cancel, Replay, rate limits, timeouts and the crons behave as an operator
 * expects. The real served app, driven over Inngest's protocol by the executor (which models event-id
 * dedup for 24 h, Replay, cancelOn, concurrency keys, singleton, timeouts and checkpointing), against
 * a real PostgreSQL database. Each test names the problem it proves fixed.
 */

const db = useTestDatabase("durable");
const HOUR = 3_600_000;

/** Counts every input the provider is asked to embed (the preflight probe apart), and can misbehave. */
function instrumented(
  real: EmbeddingProvider,
  behave: {
    down?: () => boolean;
    rateLimit?: () => number | null;
    onCall?: (n: number) => Promise<void>;
  } = {},
) {
  const inputs: string[] = [];
  let calls = 0;
  const provider: EmbeddingProvider = {
    name: real.name,
    model: real.model,
    dimensions: real.dimensions,
    async embed(texts, options) {
      if (texts.length === 1 && texts[0] === "preflight probe") return real.embed(texts, options);
      calls++;
      await behave.onCall?.(calls);
      const limited = behave.rateLimit?.();
      if (limited !== null && limited !== undefined) throw new RateLimitedError("429: slow down", limited);
      if (behave.down?.()) throw new TransientError("provider returned 503 Service Unavailable");
      inputs.push(...texts);
      return real.embed(texts, options);
    },
  };
  return {
    provider,
    inputs,
    get calls() {
      return calls;
    },
  };
}

async function table(
  name: string,
  rows: number,
  setup: Parameters<typeof createTestApp>[1] = {},
): Promise<TestApp> {
  await createDocuments(db, { table: name, rows });
  const app = createTestApp(db, setup);
  await registerDocuments(app.store, { name, table: name });
  return app;
}

const embedded = (name: string) =>
  scalar<number>(db, `SELECT count(*)::int FROM ${name} WHERE embedding IS NOT NULL`);
const stateCount = (name: string, status: string) =>
  scalar<number>(
    db,
    `SELECT count(*)::int FROM embedding_items WHERE target_id = (SELECT id FROM embedding_targets WHERE name = '${name}') AND status = '${status}'`,
  );
const byFn = (runs: RunResult[], fnId: string) => runs.filter((r) => r.fnId === fnId);

describe("Replay resumes a failed backfill (problem 1)", () => {
  it("within the 24 h dedup window: the coordinator's Replay revives the job under a new epoch, no row twice", async () => {
    let down = false;
    let counter!: ReturnType<typeof instrumented>;
    const app = await table("replay_win", 300, {
      providerFor: (_t, real) => {
        counter ??= instrumented(real(), { down: () => down });
        return counter.provider;
      },
    });
    // Two batches go through, then the provider is down long enough to exhaust a lane's retries.
    let batches = 0;
    down = false;
    counter = instrumented(
      (await import("../src/lib/providers/index.js")).providerForTarget(
        await app.store.getTarget("replay_win"),
        app.config,
      ),
      { down: () => ++batches > 2 && down },
    );
    down = true;
    await app.harness.send(
      backfillRequested.create({ target: "replay_win", batchSize: 50, parallelism: 2 }, { id: "req-win" }),
    );
    const first = await app.harness.runUntilIdle();
    const coordinator = byFn(first, "embeddings-backfill")[0]!;
    const jobId = (coordinator.output as { jobId: string }).jobId;
    expect(await app.store.getJob(jobId)).toMatchObject({ status: "failed", epoch: 0 });
    expect(await embedded("replay_win")).toBe(100);

    // The provider is back; the operator replays the coordinator's (completed) run within the window.
    down = false;
    app.harness.advance(HOUR);
    const replay = app.harness.replay(coordinator.runId);
    await app.harness.runUntilIdle();
    expect(app.harness.run(replay)).toMatchObject({
      status: "completed",
      output: { jobId, revived: true, epoch: 1 },
    });
    expect(await app.store.getJob(jobId)).toMatchObject({ status: "completed", epoch: 1, restarts: 1 });
    expect(await embedded("replay_win")).toBe(300);
    // Every row was embedded exactly once.
    expect(counter.inputs).toHaveLength(300);
    expect(new Set(counter.inputs).size).toBe(300);
    // The new lanes are new events for Inngest: epoch 1 in their ids.
    const lanes = app.harness.runs("embeddings-backfill-worker").filter((r) => r.event.id.includes("-e1-"));
    expect(lanes.map((r) => r.event.id).sort()).toEqual([
      laneEventId(jobId, 1, 0, 0),
      laneEventId(jobId, 1, 1, 0),
    ]);
    // The same request again within the window: Inngest drops it by its event id, nothing runs.
    const runsBefore = app.harness.runs().length;
    await app.harness.send(
      backfillRequested.create({ target: "replay_win", batchSize: 50, parallelism: 2 }, { id: "req-win" }),
    );
    await app.harness.runUntilIdle();
    expect(app.harness.runs()).toHaveLength(runsBefore);
    expect(counter.inputs).toHaveLength(300);
  });

  it("a Replay of only the failed worker run revives the job and starts the other lanes again", async () => {
    let down = true;
    let n = 0;
    const app = await table("replay_lane", 200, {
      providerFor: (_t, real) => instrumented(real(), { down: () => ++n > 1 && down }).provider,
    });
    await app.harness.send(
      backfillRequested.create({ target: "replay_lane", batchSize: 40, parallelism: 2 }),
    );
    const runs = await app.harness.runUntilIdle();
    const failed = byFn(runs, "embeddings-backfill-worker").find((r) => r.status === "failed")!;
    const jobId = (failed.event.data as { jobId: string }).jobId;
    expect((await app.store.getJob(jobId)).status).toBe("failed");
    down = false;
    app.harness.replay(failed.runId);
    await app.harness.runUntilIdle();
    expect(await app.store.getJob(jobId)).toMatchObject({ status: "completed", epoch: 1 });
    expect(await embedded("replay_lane")).toBe(200);
  });

  it("after the 24 h window too; and a Replay of a completed job's runs, or a duplicate request, does nothing", async () => {
    let down = true;
    let n = 0;
    const app = await table("replay_late", 120, {
      providerFor: (_t, real) => instrumented(real(), { down: () => ++n > 1 && down }).provider,
    });
    await app.harness.send(
      backfillRequested.create({ target: "replay_late", batchSize: 40, parallelism: 1 }, { id: "req-late" }),
    );
    const runs = await app.harness.runUntilIdle();
    const coordinator = byFn(runs, "embeddings-backfill")[0]!;
    const jobId = (coordinator.output as { jobId: string }).jobId;
    down = false;
    app.harness.advance(25 * HOUR);
    app.harness.replay(coordinator.runId);
    await app.harness.runUntilIdle();
    const done = await app.store.getJob(jobId);
    expect(done).toMatchObject({ status: "completed", epoch: 1 });

    // Completed: a Replay of any of its runs, and the same request again (past the dedup window, so
    // Inngest runs it: its job id, derived from the event id, is the completed job), change nothing.
    const before = app.harness.runs().length;
    const callsBefore = n;
    for (const r of app.harness.runs("embeddings-backfill-worker").slice(0, 1)) app.harness.replay(r.runId);
    app.harness.replay(coordinator.runId);
    await app.harness.send(
      backfillRequested.create({ target: "replay_late", batchSize: 40, parallelism: 1 }, { id: "req-late" }),
    );
    await app.harness.runUntilIdle();
    const again = app.harness.runs().slice(before);
    expect(again.map((r) => r.fnId).sort()).toEqual([
      "embeddings-backfill",
      "embeddings-backfill",
      "embeddings-backfill-worker",
    ]);
    expect(again.every((r) => r.status === "completed")).toBe(true);
    expect(n).toBe(callsBefore);
    expect(await app.store.getJob(jobId)).toMatchObject({
      status: "completed",
      epoch: 1,
      itemsProcessed: done.itemsProcessed,
      tokens: done.tokens,
    });
  });
});

describe("Cancel is final and immediate (problems 2, 3, 4)", () => {
  it("mid-run: no provider call after it, not even from the sweep; rows parked; new edits embedded; a later backfill resumes", async () => {
    let cancelAt = Number.POSITIVE_INFINITY;
    let jobId = "";
    let app!: TestApp;
    let callsAtCancel = 0;
    const counter: { calls: number } = { calls: 0 };
    app = await table("cancel_mid", 400, {
      providerFor: (_t, real) =>
        instrumented(real(), {
          onCall: async () => {
            counter.calls++;
            if (counter.calls === cancelAt) {
              callsAtCancel = counter.calls;
              const r = await cancelJob(app.store, jobId, {
                reason: "cancelled by the operator",
                notify: async (job) => {
                  await app.harness.send({ name: "embeddings/backfill.cancelled", data: { jobId: job.id } });
                },
              });
              expect(r).toMatchObject({ cancelled: true, known: true });
            }
          },
        }).provider,
    });
    jobId = crypto.randomUUID();
    cancelAt = 3;
    await app.harness.send(
      backfillRequested.create({ target: "cancel_mid", batchSize: 20, parallelism: 2, jobId }),
    );
    await app.harness.runUntilIdle({ concurrency: 3 });
    // Batches in flight when the cancel came finish; none starts after it.
    expect(counter.calls).toBeLessThanOrEqual(callsAtCancel + 2);
    const afterCancel = counter.calls;
    expect(await app.store.getJob(jobId)).toMatchObject({ status: "cancelled" });
    const parked = await stateCount("cancel_mid", "parked");
    expect(parked).toBeGreaterThan(300);
    // The sweep runs: still no provider call for the cancelled job's rows.
    await app.harness.invokeCron("embeddings-sweep");
    await app.harness.runUntilIdle();
    expect(counter.calls).toBe(afterCancel);
    const [status] = await app.store.status("cancel_mid");
    expect(status!.parked).toBe(parked);

    // A row the user edits after the cancel is new work: the sweep embeds it.
    const parkedRow = await scalar<string>(
      db,
      "SELECT row_id FROM embedding_items WHERE status = 'parked' AND target_id = (SELECT id FROM embedding_targets WHERE name = 'cancel_mid') LIMIT 1",
    );
    await db.exec(`UPDATE cancel_mid SET body = 'edited after the cancel' WHERE id = ${parkedRow}`);
    await app.harness.invokeCron("embeddings-sweep");
    await app.harness.runUntilIdle();
    expect(counter.calls).toBe(afterCancel + 1);
    expect(await stateCount("cancel_mid", "parked")).toBe(parked - 1);

    // A later backfill request resumes the parked rows and finishes the table.
    await app.harness.send(backfillRequested.create({ target: "cancel_mid", batchSize: 50, parallelism: 2 }));
    await app.harness.runUntilIdle();
    expect(await embedded("cancel_mid")).toBe(400);
    expect(await stateCount("cancel_mid", "parked")).toBe(0);
  });

  it("a re-embed cancelled mid-run does not move to the sweep", async () => {
    let jobId = "";
    let app!: TestApp;
    let calls = 0;
    app = await table("cancel_reembed", 200, {
      providerFor: (_t, real) =>
        instrumented(real(), {
          onCall: async () => {
            calls++;
            if (jobId && calls === 2) await cancelJob(app.store, jobId, { reason: "stop the re-embed" });
          },
        }).provider,
    });
    await app.harness.send(
      backfillRequested.create({ target: "cancel_reembed", batchSize: 50, parallelism: 1 }),
    );
    await app.harness.runUntilIdle();
    const before = calls;
    jobId = crypto.randomUUID();
    calls = 0;
    await app.harness.send(
      backfillRequested.create({
        target: "cancel_reembed",
        batchSize: 20,
        parallelism: 1,
        reembed: true,
        jobId,
      }),
    );
    await app.harness.runUntilIdle();
    expect(before).toBeGreaterThan(0);
    const afterCancel = calls;
    expect(afterCancel).toBeLessThanOrEqual(3);
    expect(await app.store.getJob(jobId)).toMatchObject({
      status: "cancelled",
      lastError: "stop the re-embed",
    });
    expect(await stateCount("cancel_reembed", "parked")).toBeGreaterThanOrEqual(200 - afterCancel * 20);
    await app.harness.invokeCron("embeddings-sweep");
    await app.harness.runUntilIdle();
    expect(calls).toBe(afterCancel);
    expect(await stateCount("cancel_reembed", "parked")).toBeGreaterThanOrEqual(200 - afterCancel * 20);
  });

  it("before the coordinator ran: the job is born cancelled, no probe, no lane", async () => {
    const counter = { probes: 0, calls: 0 };
    const app = await table("cancel_early", 50, {
      providerFor: (_t, real) => {
        const inner = real();
        return {
          ...inner,
          name: inner.name,
          model: inner.model,
          dimensions: inner.dimensions,
          async embed(texts, options) {
            if (texts[0] === "preflight probe") counter.probes++;
            else counter.calls++;
            return inner.embed(texts, options);
          },
        };
      },
    });
    const jobId = crypto.randomUUID();
    // What `embeddings cancel <jobId>` does right after `embeddings backfill` printed the id.
    expect(await cancelJob(app.store, jobId, { reason: "changed my mind" })).toMatchObject({
      known: false,
      cancelled: true,
    });
    await app.harness.send(backfillRequested.create({ target: "cancel_early", jobId }));
    const runs = await app.harness.runUntilIdle();
    expect(byFn(runs, "embeddings-backfill")[0]!.output).toMatchObject({ jobId, status: "cancelled" });
    expect(byFn(runs, "embeddings-backfill-worker")).toEqual([]);
    expect(counter).toEqual({ probes: 0, calls: 0 });
    expect(await app.store.getJob(jobId)).toMatchObject({
      status: "cancelled",
      lastError: "changed my mind",
    });
  });

  it("a request without a job id (dashboard Send event) is cancelled by its event id through cancelOn", async () => {
    let app!: TestApp;
    let coordinatorJob = "";
    app = await table("cancel_event", 80, {
      providerFor: (t, real) => {
        const inner = real();
        return {
          ...inner,
          name: inner.name,
          model: inner.model,
          dimensions: inner.dimensions,
          async embed(texts, options) {
            // The preflight probe: the coordinator has created its job; now the operator cancels.
            if (texts[0] === "preflight probe" && !coordinatorJob) {
              const [s] = await app.store.status(t.name);
              coordinatorJob = s!.jobs[0]!.id;
              await cancelJob(app.store, coordinatorJob, {
                reason: "cancelled from the dashboard",
                notify: async (job) => {
                  await app.harness.send({
                    name: "embeddings/backfill.cancelled",
                    data: { jobId: job.id, eventId: job.eventId },
                  });
                },
              });
            }
            return inner.embed(texts, options);
          },
        };
      },
    });
    await app.harness.send({
      name: "embeddings/backfill.requested",
      data: { target: "cancel_event" },
      id: "dashboard-1",
    });
    const runs = await app.harness.runUntilIdle();
    const coordinator = byFn(runs, "embeddings-backfill")[0]!;
    expect(coordinator.status).toBe("cancelled");
    expect(byFn(runs, "embeddings-backfill-worker")).toEqual([]);
    expect(await app.store.getJob(coordinatorJob)).toMatchObject({
      status: "cancelled",
      eventId: "dashboard-1",
    });
  });
});

describe("Rate limits and timeouts never leave a job failed or orphaned (problem 8)", () => {
  it("a 429 storm twice as long as the step retries allow slows the job and never fails it", async () => {
    let limited = 12;
    const app = await table("storm_docs", 60, {
      providerFor: (_t, real) =>
        instrumented(real(), { rateLimit: () => (limited-- > 0 ? 2000 : null) }).provider,
    });
    await app.harness.send(backfillRequested.create({ target: "storm_docs", batchSize: 20, parallelism: 1 }));
    const runs = await app.harness.runUntilIdle();
    expect(runs.filter((r) => r.status !== "completed")).toEqual([]);
    expect(await embedded("storm_docs")).toBe(60);
    const lane = byFn(runs, "embeddings-backfill-worker")[0]!;
    expect(lane.steps.filter((s) => s.id.startsWith("rate-limit-"))).toHaveLength(12);
    // No step spent a retry on the 429s.
    expect(lane.steps.filter((s) => s.id.startsWith("process-batch-") && s.attempts > 1)).toEqual([]);
  });

  it("a lane cancelled by its 2 h timeout is resumed, and the job completes", async () => {
    // Every call is rate limited for 10 min at first: about 2.3 h of virtual time in one lane run.
    let limited = 14;
    const app = await table("timeout_docs", 40, {
      providerFor: (_t, real) =>
        instrumented(real(), { rateLimit: () => (limited-- > 0 ? 600_000 : null) }).provider,
      limits: { maxBatchesPerRun: 400, rateLimitSleepMaxMs: 600_000 },
    });
    await app.harness.send(
      backfillRequested.create({ target: "timeout_docs", batchSize: 20, parallelism: 1 }),
    );
    const runs = await app.harness.runUntilIdle({ maxCalls: 20_000 });
    const lanes = byFn(runs, "embeddings-backfill-worker");
    expect(lanes[0]!.status).toBe("cancelled");
    expect(byFn(runs, "embeddings-run-cancelled").map((r) => r.status)).toContain("completed");
    const jobId = (lanes[0]!.event.data as { jobId: string }).jobId;
    expect(await app.store.getJob(jobId)).toMatchObject({ status: "completed" });
    expect(await embedded("timeout_docs")).toBe(40);
  });
});

describe("Crons within their step budget, and fair (problems 5, 6)", () => {
  it("20 targets with 100 dead letters each: every target recovered, no run near 1,000 steps", async () => {
    // Checkpointing (the SDK's production path) keeps the 4,000 steps to few requests.
    const app = createTestApp(db, { harness: { checkpointing: true } });
    for (let i = 0; i < 20; i++) {
      const name = `budget_${i}`;
      await createDocuments(db, { table: name, rows: 100 });
      await registerDocuments(app.store, { name, table: name });
      await app.store.enqueue(name, null, 1000);
      await db.exec(`UPDATE embedding_items SET status = 'dead_letter', error_kind = 'transient', attempts = 3,
          last_error = 'canceling statement due to statement timeout'
        WHERE target_id = (SELECT id FROM embedding_targets WHERE name = '${name}')`);
    }
    await app.harness.invokeCron("embeddings-recovery");
    const recovery = await app.harness.runUntilIdle({ maxCalls: 50_000 });
    // (Targets of this file's other tests get their runs too; these 20 are the ones under test.)
    const ours = (r: RunResult) => (r.event.data as { target: string }).target.startsWith("budget_");
    const perTarget = byFn(recovery, "embeddings-recovery-target").filter(ours);
    expect(perTarget).toHaveLength(20);
    expect(perTarget.every((r) => r.status === "completed")).toBe(true);
    expect(perTarget.map((r) => (r.output as { target: string }).target).sort()).toEqual(
      Array.from({ length: 20 }, (_, i) => `budget_${i}`).sort(),
    );
    expect(Math.max(...recovery.map((r) => r.steps.length))).toBeLessThan(300);
    for (let i = 0; i < 20; i++) expect(await embedded(`budget_${i}`)).toBe(100);

    // Every target has edits: one sweep serves all of them, each run within its budget.
    for (let i = 0; i < 20; i++) await db.exec(`UPDATE budget_${i} SET body = body || '!' WHERE id <= 30`);
    await app.harness.invokeCron("embeddings-sweep");
    const sweep = await app.harness.runUntilIdle({ maxCalls: 50_000 });
    const swept = byFn(sweep, "embeddings-sweep-target").filter(ours);
    expect(swept).toHaveLength(20);
    expect(swept.every((r) => r.status === "completed")).toBe(true);
    expect(Math.max(...sweep.map((r) => r.steps.length))).toBeLessThan(300);
    for (let i = 0; i < 20; i++) {
      expect(await stateCount(`budget_${i}`, "completed")).toBe(100);
    }
  });

  it("recovery's one-row batches take exactly the dead letters it queued again, not an older backlog", async () => {
    const app = createTestApp(db);
    await createDocuments(db, { table: "recover_exact", rows: 30 });
    await registerDocuments(app.store, { name: "recover_exact", table: "recover_exact" });
    await app.store.enqueue("recover_exact", null, 100);
    // 25 rows wait in the backlog (due an hour ago, ahead of anything due now); 5 are transient dead letters.
    await db.exec(`
      UPDATE embedding_items SET next_retry_at = now() - interval '1 hour'
       WHERE target_id = (SELECT id FROM embedding_targets WHERE name = 'recover_exact') AND row_id::int > 5;
      UPDATE embedding_items SET status = 'dead_letter', error_kind = 'transient', attempts = 3, last_error = 'timeout'
       WHERE target_id = (SELECT id FROM embedding_targets WHERE name = 'recover_exact') AND row_id::int <= 5;`);
    await app.harness.send({ name: "embeddings/target.recover", data: { target: "recover_exact" } });
    const [run] = await app.harness.runUntilIdle();
    expect(run!.output).toMatchObject({ requeued: 5, processed: 5 });
    expect(
      await scalar(
        db,
        "SELECT array_agg(id ORDER BY id)::text FROM recover_exact WHERE embedding IS NOT NULL",
      ),
    ).toBe("{1,2,3,4,5}");
  });
});

describe("Seeding is alive, and the stale sweep never fails it (problem 7)", () => {
  it("every seeding page beats the job's heartbeat; a cancelled job stops the seed", async () => {
    await createDocuments(db, { table: "seed_docs", rows: 30 });
    const app = createTestApp(db);
    await registerDocuments(app.store, { name: "seed_docs", table: "seed_docs" });
    const job = await app.store.createJob("seed_docs", "backfill", null);
    await db.exec(`UPDATE embedding_jobs SET created_at = now() - interval '2 hours' WHERE id = '${job.id}'`);
    await app.store.enqueue("seed_docs", null, 10, false, job.id);
    expect((await app.store.expireJobs(60)).expired).toEqual([]);
    expect((await app.store.getJob(job.id)).status).toBe("pending");
    await app.store.cancelJob(job.id, "stop");
    expect(await app.store.enqueue("seed_docs", "10", 10, false, job.id)).toMatchObject({
      stopped: "cancelled",
    });
    // Cancelled is final: no start, no revival.
    expect(await app.store.startJob(job.id, { revive: true })).toMatchObject({
      status: "cancelled",
      fanOut: false,
    });
  });
});

describe("Configuration fails fast (problem 8)", () => {
  it("in cloud mode without an event key, preflight fails the backfill before seeding a row", async () => {
    const app = await table("no_event_key", 20, {
      env: { INNGEST_DEV: undefined, INNGEST_SIGNING_KEY: "signkey-test-0123456789abcdef0123456789abcdef" },
      signingKey: "signkey-test-0123456789abcdef0123456789abcdef",
    });
    await app.harness.send(backfillRequested.create({ target: "no_event_key" }));
    const runs = await app.harness.runUntilIdle();
    expect(byFn(runs, "embeddings-backfill")[0]).toMatchObject({ status: "failed" });
    expect(JSON.stringify(byFn(runs, "embeddings-backfill")[0]!.error)).toMatch(/INNGEST_EVENT_KEY/);
    expect(await stateCount("no_event_key", "pending")).toBe(0);
  });
});

describe("Checkpointing, the SDK's production path", () => {
  it("drives a whole backfill: steps run back to back and are posted to the checkpoint API", async () => {
    const app = await table("checkpoint_docs", 500, { harness: { checkpointing: true } });
    await app.harness.send(
      backfillRequested.create({ target: "checkpoint_docs", batchSize: 50, parallelism: 2 }),
    );
    const runs = await app.harness.runUntilIdle();
    expect(runs.filter((r) => r.status !== "completed")).toEqual([]);
    expect(await embedded("checkpoint_docs")).toBe(500);
    expect(app.harness.stats().checkpoints).toBeGreaterThan(10);
    // Far fewer requests than steps: that is what checkpointing is for.
    const lane = byFn(runs, "embeddings-backfill-worker")[0]!;
    expect(lane.calls.length).toBeLessThan(lane.steps.length);
  });
});
