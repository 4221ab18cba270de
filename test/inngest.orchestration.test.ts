import { InngestTestEngine } from "@inngest/test";
import { describe, expect, it } from "vitest";
import { createInngestClient, laneEventId } from "../src/functions/client.js";
import type { FunctionDeps } from "../src/functions/deps.js";
import { embeddingsBackfill } from "../src/functions/embeddings-backfill.js";
import { embeddingsBackfillWorker } from "../src/functions/embeddings-backfill-worker.js";
import { testConfig } from "./support/app.js";

/**
 * Orchestration branches with @inngest/test: every step mocked, so only the function's control
 * flow runs. The same functions run for real against a database in inngest.backfill.test.ts.
 */

const config = testConfig();
const deps: FunctionDeps = {
  config,
  context: () => {
    throw new Error("orchestration tests mock every step: nothing may touch the database");
  },
  providerFor: () => {
    throw new Error("no provider in orchestration tests");
  },
};
const inngest = createInngestClient(config, { logger: { info() {}, warn() {}, error() {}, debug() {} } });
const jobId = "3b0c1a5e-8d9f-4c1e-9a7b-2f4e6d8c0a1b";
const backfillEvent = {
  name: "embeddings/backfill.requested" as const,
  data: { target: "docs", batchSize: 10, parallelism: 3, jobId },
};

describe("embeddings-backfill orchestration", () => {
  it("stops right after create-job when the job already finished (a replay of a completed run)", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfill(inngest, deps),
      events: [backfillEvent],
      steps: [
        {
          id: "create-job",
          handler: () => ({ jobId, status: "completed", created: false, seeded: true }),
        },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(result).toMatchObject({ jobId, status: "completed" });
    expect(ctx.step.run).toHaveBeenCalledTimes(1);
    expect(ctx.step.sendEvent).not.toHaveBeenCalled();
  });

  it("seeds page by page until done, then fans out one deterministic event per lane", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfill(inngest, deps),
      events: [backfillEvent],
      steps: [
        {
          id: "create-job",
          handler: () => ({ jobId, status: "pending", created: true, seeded: false }),
        },
        { id: "preflight", handler: () => ({ status: "ok" }) },
        { id: "estimate", handler: () => ({ rows: 7000, tokens: 70000 }) },
        { id: "seed-0", handler: () => ({ last: "5000", done: false, queued: 5000, stopped: null }) },
        { id: "seed-1", handler: () => ({ last: "7000", done: true, queued: 2000, stopped: null }) },
        {
          id: "start-job",
          handler: () => ({
            itemsTotal: 7000,
            status: "running",
            epoch: 0,
            fanOut: true,
            revived: false,
            lanes: 3,
          }),
        },
        { id: "fan-out", handler: () => ({ ids: [] }) },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(result).toEqual({
      jobId,
      preflight: "ok",
      seeded: 7000,
      itemsTotal: 7000,
      lanes: 3,
      epoch: 0,
      revived: false,
    });
    expect(ctx.step.sendEvent).toHaveBeenCalledWith(
      "fan-out",
      [0, 1, 2].map((lane) =>
        expect.objectContaining({
          name: "embeddings/backfill.worker",
          id: laneEventId(jobId, 0, lane, 0),
          data: expect.objectContaining({ jobId, lane, generation: 0, epoch: 0, batchSize: 10 }),
        }),
      ),
    );
  });

  it("a Replay of a seeded job does not seed again, and its lanes carry the new epoch", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfill(inngest, deps),
      events: [backfillEvent],
      steps: [
        { id: "create-job", handler: () => ({ jobId, status: "failed", created: false, seeded: true }) },
        { id: "preflight", handler: () => ({ status: "ok" }) },
        {
          id: "start-job",
          handler: () => ({
            itemsTotal: 70,
            status: "running",
            epoch: 2,
            fanOut: true,
            revived: true,
            lanes: 2,
          }),
        },
        { id: "fan-out", handler: () => ({ ids: [] }) },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(result).toMatchObject({ seeded: 0, lanes: 2, epoch: 2, revived: true });
    expect(ctx.step.sendEvent).toHaveBeenCalledWith(
      "fan-out",
      [0, 1].map((lane) => expect.objectContaining({ id: laneEventId(jobId, 2, lane, 0) })),
    );
  });

  it("a duplicate of a job that is running and alive fans out nothing", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfill(inngest, deps),
      events: [backfillEvent],
      steps: [
        { id: "create-job", handler: () => ({ jobId, status: "running", created: false, seeded: true }) },
        { id: "preflight", handler: () => ({ status: "ok" }) },
        {
          id: "start-job",
          handler: () => ({
            itemsTotal: 70,
            status: "running",
            epoch: 0,
            fanOut: false,
            revived: false,
            lanes: 2,
          }),
        },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(result).toMatchObject({ jobId, status: "running" });
    expect(ctx.step.sendEvent).not.toHaveBeenCalled();
  });

  it("a cancel that arrived before preflight stops the run before seeding", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfill(inngest, deps),
      events: [backfillEvent],
      steps: [
        { id: "create-job", handler: () => ({ jobId, status: "pending", created: true, seeded: false }) },
        { id: "preflight", handler: () => ({ status: "cancelled" }) },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(result).toMatchObject({ jobId, status: "cancelled" });
    expect(ctx.step.run).toHaveBeenCalledTimes(2);
    expect(ctx.step.sendEvent).not.toHaveBeenCalled();
  });
});

describe("embeddings-backfill-worker orchestration", () => {
  const workerEvent = {
    name: "embeddings/backfill.worker" as const,
    id: laneEventId(jobId, 0, 1, 2),
    data: { jobId, target: "docs", batchSize: 10, lane: 1, generation: 2, epoch: 0, maxBatches: 3 },
  };
  const laneStart = (over: object = {}) => ({
    id: "lane-start",
    handler: () => ({ status: "running", epoch: 0, revived: false, lanes: 3, at: 0, ...over }),
  });
  const batch = (over: object) => ({
    stopped: null,
    processed: 10,
    failed: 0,
    claimed: 10,
    touched: 10,
    complete: false,
    waitMs: 0,
    rateLimitedMs: null,
    at: 0,
    ...over,
  });

  it("completes the job when a batch finds nothing left", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [
        laneStart(),
        { id: "process-batch-0", handler: () => batch({}) },
        {
          id: "process-batch-1",
          handler: () => batch({ processed: 4, claimed: 4, touched: 4, complete: true }),
        },
        { id: "complete-job", handler: () => ({ status: "completed" }) },
      ],
    });
    const { result } = await t.execute();
    expect(result).toEqual({ jobId, lane: 1, generation: 2, processed: 14, failed: 0, job: "completed" });
  });

  it("a lane of a job that is not running stops at lane-start, before any batch", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [laneStart({ status: "cancelled" })],
    });
    const { result, ctx } = await t.execute();
    expect(result).toEqual({ jobId, lane: 1, generation: 2, stopped: "cancelled" });
    expect(ctx.step.run).toHaveBeenCalledTimes(1);
  });

  it("stops before any provider call when the job was cancelled elsewhere", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [
        laneStart(),
        {
          id: "process-batch-0",
          handler: () => batch({ stopped: "cancelled", processed: 0, claimed: 0, touched: 0 }),
        },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(result).toMatchObject({ stopped: "cancelled", processed: 0 });
    expect(ctx.step.sendEvent).not.toHaveBeenCalled();
  });

  it("a revived lane (Replay of a failed run) starts the other lanes under the new epoch", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [
        laneStart({ revived: true, epoch: 1 }),
        { id: "restart-lanes", handler: () => ({ ids: [] }) },
        { id: "process-batch-0", handler: () => batch({ complete: true }) },
        { id: "complete-job", handler: () => ({ status: "completed" }) },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(ctx.step.sendEvent).toHaveBeenCalledWith(
      "restart-lanes",
      [0, 2].map((lane) =>
        expect.objectContaining({
          id: laneEventId(jobId, 1, lane, 0),
          data: expect.objectContaining({ lane, generation: 0, epoch: 1 }),
        }),
      ),
    );
    expect(result).toMatchObject({ job: "completed" });
  });

  it("sleeps out a rate limit in a step of its own, counting nothing", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [
        laneStart(),
        {
          id: "process-batch-0",
          handler: () => batch({ processed: 0, claimed: 0, touched: 0, rateLimitedMs: 20_000 }),
        },
        { id: "rate-limit-0", handler: () => undefined },
        { id: "process-batch-1", handler: () => batch({ complete: true }) },
        { id: "complete-job", handler: () => ({ status: "completed" }) },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(ctx.step.sleep).toHaveBeenCalledWith("rate-limit-0", 20_000);
    expect(result).toMatchObject({ processed: 10, job: "completed" });
  });

  it("waits when other lanes hold the remaining rows, and hands over after its batch budget", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [
        laneStart(),
        { id: "process-batch-0", handler: () => batch({}) },
        {
          id: "process-batch-1",
          handler: () => batch({ processed: 0, claimed: 0, touched: 0, waitMs: 5000 }),
        },
        { id: "wait-1", handler: () => undefined },
        { id: "process-batch-2", handler: () => batch({}) },
        { id: "hand-over", handler: () => ({ ids: [] }) },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(ctx.step.sleep).toHaveBeenCalledWith("wait-1", 5000);
    expect(ctx.step.sendEvent).toHaveBeenCalledWith(
      "hand-over",
      expect.objectContaining({
        id: laneEventId(jobId, 0, 1, 3),
        data: expect.objectContaining({ generation: 3, epoch: 0 }),
      }),
    );
    expect(result).toMatchObject({ processed: 20, handedOver: true });
  });
});
