import { describe, expect, it } from "vitest";
import { rowsChanged } from "../src/functions/events.js";
import { createTestApp } from "./support/app.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import type { RunResult } from "./support/inngest-harness.js";
import { useTestDatabase } from "./support/pg-server.js";

/** Scheduled sweep, dead-letter recovery and rows.changed, through the real endpoint and harness. */

const db = useTestDatabase("scheduled");

const targetId = (name: string) => `(SELECT id FROM embedding_targets WHERE name = '${name}')`;

/** The run a fan-out gave one target (the crons fan out one event per target). */
const runFor = (runs: RunResult[], fnId: string, target: string) => {
  const found = runs.filter(
    (r) => r.fnId === fnId && (r.event.data as { target?: string }).target === target,
  );
  expect(found).toHaveLength(1);
  return found[0]!;
};

describe("embeddings-sweep", () => {
  it("fails jobs with a stale heartbeat, takes back crashed leases, and embeds new and edited rows", async () => {
    await createDocuments(db, { table: "sweep_docs", rows: 30 });
    const { harness, store } = createTestApp(db, { env: { EMBEDDINGS_JOB_STALE_SECONDS: "60" } });
    await registerDocuments(store, { name: "sweep_docs", table: "sweep_docs" });
    await store.enqueue("sweep_docs", null, 1000);
    // A job whose worker died an hour ago, still "running" (the 000 and 003 reports).
    const stuck = await store.createJob("sweep_docs", "backfill", null);
    await store.startJob(stuck.id);
    await db.exec(
      `UPDATE embedding_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = '${stuck.id}'`,
    );
    // Five rows leased by a crashed worker.
    await store.claim("sweep_docs", "crashed-worker", 5, 300);
    await db.exec(
      `UPDATE embedding_items SET locked_until = now() - interval '1 minute' WHERE worker_id = 'crashed-worker'`,
    );

    const runId = await harness.invokeCron("embeddings-sweep");
    await harness.runUntilIdle();
    expect(harness.run(runId)).toMatchObject({ status: "completed" });
    expect(await store.getJob(stuck.id)).toMatchObject({
      status: "failed",
      lastError: expect.stringContaining("no heartbeat"),
    });
    expect(await scalar(db, "SELECT count(*)::int FROM sweep_docs WHERE embedding IS NOT NULL")).toBe(30);

    await db.exec(
      "UPDATE sweep_docs SET body = 'edited' WHERE id IN (1, 2); INSERT INTO sweep_docs (title, body, author) VALUES ('new', 'row', 'x')",
    );
    const seen = harness.runs().length;
    await harness.invokeCron("embeddings-sweep");
    const again = (await harness.runUntilIdle()).slice(seen);
    expect(runFor(again, "embeddings-sweep-target", "sweep_docs").output).toMatchObject({
      target: "sweep_docs",
      processed: 3,
    });
  });

  it("keeps sweeping the other targets when one target's provider is misconfigured", async () => {
    await createDocuments(db, { table: "sweep_ok", rows: 5 });
    await createDocuments(db, { table: "sweep_bad", rows: 5 });
    const { harness, store } = createTestApp(db, { env: { OPENAI_API_KEY: undefined } });
    await registerDocuments(store, { name: "sweep_ok", table: "sweep_ok" });
    await store.registerTarget({
      name: "sweep_bad",
      table: "public.sweep_bad",
      idColumn: "id",
      contentColumns: ["title"],
      embeddingColumn: "embedding",
      provider: "openai",
      model: "text-embedding-3-small",
      dimensions: 8,
    });
    await store.enqueue("sweep_ok", null, 100);
    await store.enqueue("sweep_bad", null, 100);
    await harness.invokeCron("embeddings-sweep");
    const runs = await harness.runUntilIdle();
    // One run per target: the broken one fails alone, with the reason, and the other is served.
    expect(runFor(runs, "embeddings-sweep-target", "sweep_ok")).toMatchObject({
      status: "completed",
      output: { processed: 5 },
    });
    expect(runFor(runs, "embeddings-sweep-target", "sweep_bad")).toMatchObject({
      status: "failed",
      error: { message: expect.stringContaining("OPENAI_API_KEY") },
    });
    const [bad] = await store.status("sweep_bad");
    expect(bad).toMatchObject({ processing: 0, pending: 5, deadLetter: 0 });
  });
});

describe("embeddings-recovery", () => {
  it("retries transient dead letters one row at a time and leaves permanent ones for a person", async () => {
    await createDocuments(db, { table: "recover_docs", rows: 4 });
    const { harness, store } = createTestApp(db);
    await registerDocuments(store, { name: "recover_docs", table: "recover_docs" });
    await store.enqueue("recover_docs", null, 100);
    await db.exec(`
      UPDATE embedding_items SET status = 'dead_letter', error_kind = 'transient', attempts = 3,
             last_error = 'canceling statement due to statement timeout'
       WHERE target_id = ${targetId("recover_docs")} AND row_id IN ('1', '2');
      UPDATE embedding_items SET status = 'dead_letter', error_kind = 'permanent', attempts = 1,
             last_error = 'input rejected by the provider'
       WHERE target_id = ${targetId("recover_docs")} AND row_id = '3';
      UPDATE embedding_items SET status = 'completed' WHERE target_id = ${targetId("recover_docs")} AND row_id = '4';`);
    await harness.invokeCron("embeddings-recovery");
    const runs = await harness.runUntilIdle();
    const run = runFor(runs, "embeddings-recovery-target", "recover_docs");
    expect(run.output).toMatchObject({ requeued: 2, processed: 2 });
    // One row per batch: the 002 report's small-batch backup worker.
    expect(run.steps.filter((s) => /^recover-\d+$/.test(s.id))).toHaveLength(2);
    const dead = await store.deadLetters("recover_docs");
    expect(dead).toEqual([expect.objectContaining({ id: "3", errorKind: "permanent" })]);
  });
});

describe("embeddings-rows-changed", () => {
  it("embeds the given rows now, including rows written with triggers off, without re-embedding unchanged ones", async () => {
    await createDocuments(db, { table: "changed_docs", rows: 3 });
    const counting = countingProvider(8);
    const { harness, store } = createTestApp(db, { providerFor: () => counting.provider });
    await registerDocuments(store, { name: "changed_docs", table: "changed_docs" });
    await store.enqueue("changed_docs", null, 100);
    await harness.send(rowsChanged.create({ target: "changed_docs" }));
    await harness.runUntilIdle();
    expect(counting.seen).toHaveLength(3);
    // A bulk load with triggers disabled: the application tells us instead.
    await db.exec(
      "ALTER TABLE changed_docs DISABLE TRIGGER USER; INSERT INTO changed_docs (title, body, author) VALUES ('bulk', 'loaded', 'etl'); ALTER TABLE changed_docs ENABLE TRIGGER USER",
    );
    await harness.send(rowsChanged.create({ target: "changed_docs", ids: [4, 1] }));
    const runs = await harness.runUntilIdle();
    expect(runs.at(-1)!.output).toMatchObject({ marked: 2, processed: 1 });
    expect(counting.seen).toHaveLength(4);
    expect(await scalar(db, "SELECT count(*)::int FROM changed_docs WHERE embedding IS NOT NULL")).toBe(4);
  });
});
