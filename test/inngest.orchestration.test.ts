import { InngestTestEngine } from "@inngest/test";
import { describe, expect, it } from "vitest";
import { createInngestClient } from "../src/functions/client.js";
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
  data: { target: "docs", batchSize: 10, parallelism: 3 },
};

describe("embeddings-backfill orchestration", () => {
  it("stops right after create-job when the job already finished (a replay of a completed run)", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfill(inngest, deps),
      events: [backfillEvent],
      steps: [{ id: "create-job", handler: () => ({ jobId, status: "completed", created: false }) }],
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
        { id: "create-job", handler: () => ({ jobId, status: "pending", created: true }) },
        { id: "preflight", handler: () => ({ status: "ok" }) },
        { id: "seed-0", handler: () => ({ last: "5000", done: false, queued: 5000 }) },
        { id: "seed-1", handler: () => ({ last: "7000", done: true, queued: 2000 }) },
        { id: "start-job", handler: () => ({ itemsTotal: 7000, status: "running" }) },
        { id: "fan-out", handler: () => ({ ids: [] }) },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(result).toEqual({ jobId, preflight: "ok", seeded: 7000, itemsTotal: 7000, lanes: 3 });
    expect(ctx.step.sendEvent).toHaveBeenCalledWith(
      "fan-out",
      [0, 1, 2].map((lane) =>
        expect.objectContaining({
          name: "embeddings/backfill.worker",
          id: `${jobId}-lane-${lane}-gen-0`,
          data: expect.objectContaining({ jobId, lane, generation: 0, batchSize: 10 }),
        }),
      ),
    );
  });

  it("never fans out more lanes than there are batches", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfill(inngest, deps),
      events: [{ ...backfillEvent, data: { target: "docs", batchSize: 10, parallelism: 8 } }],
      steps: [
        { id: "create-job", handler: () => ({ jobId, status: "pending", created: true }) },
        { id: "preflight", handler: () => ({ status: "ok" }) },
        { id: "seed-0", handler: () => ({ last: "15", done: true, queued: 15 }) },
        { id: "start-job", handler: () => ({ itemsTotal: 15, status: "running" }) },
        { id: "fan-out", handler: () => ({ ids: [] }) },
      ],
    });
    const { result } = await t.execute();
    expect(result).toMatchObject({ lanes: 2 });
  });
});

describe("embeddings-backfill-worker orchestration", () => {
  const workerEvent = {
    name: "embeddings/backfill.worker" as const,
    data: { jobId, target: "docs", batchSize: 10, lane: 1, generation: 2, maxBatches: 3 },
  };
  const batch = (over: object) => ({
    stop: null,
    processed: 10,
    failed: 0,
    claimed: 10,
    complete: false,
    waitMs: 0,
    ...over,
  });

  it("completes the job when a batch finds nothing left", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [
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

  it("stops before any provider call when the job was cancelled elsewhere", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [
        {
          id: "process-batch-0",
          handler: () => batch({ stop: "cancelled", processed: 0, claimed: 0, touched: 0 }),
        },
      ],
    });
    const { result, ctx } = await t.execute();
    expect(result).toMatchObject({ stopped: "cancelled", processed: 0 });
    expect(ctx.step.sendEvent).not.toHaveBeenCalled();
  });

  it("waits when other lanes hold the remaining rows, and hands over after its batch budget", async () => {
    const t = new InngestTestEngine({
      function: embeddingsBackfillWorker(inngest, deps),
      events: [workerEvent],
      steps: [
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
        id: `${jobId}-lane-1-gen-3`,
        data: expect.objectContaining({ generation: 3 }),
      }),
    );
    expect(result).toMatchObject({ processed: 20, handedOver: true });
  });
});
