import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { runTarget, seedTarget } from "../src/lib/core/runner.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { createLocalProvider } from "../src/lib/providers/local.js";
import type { Job } from "../src/lib/types.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { createRecordings, registerRecordings, transcript } from "./support/transcripts.js";

/**
 * The SQL API waits at most 50 ms for a lock (lock_timeout), so it never queues behind a user's
 * transaction. The service's own workers must never trip that on each other: `embeddings run` with
 * --parallelism 4 --batch-size 500 on a loaded machine failed with "embedding_claim: canceling
 * statement due to lock timeout", because every claim with a job began with the job row's heartbeat
 * UPDATE and so held that row for the whole claim: concurrent claims (and progress updates) of the
 * same job queued on it one after the other.
 *
 * A second connection holds each lock a concurrent worker holds, inside an open transaction, for as
 * long as it likes: the claim must go on without it. No timing is asserted: with a lock held
 * indefinitely, a claim that waited would fail every time, whatever the machine's speed.
 */

const db = useTestDatabase("claim_contention");
const open: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const commit of open.splice(0)) await commit();
});

/**
 * Runs `work` through the real SQL API inside a transaction that stays open until `commit`: what
 * another worker's claim, write or progress call looks like while it is still running.
 */
async function midway<T>(
  work: (store: EmbeddingStore) => Promise<T>,
): Promise<{ result: T; commit: () => Promise<void> }> {
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let started!: (value: T) => void;
  let failed!: (err: unknown) => void;
  const result = new Promise<T>((resolve, reject) => {
    started = resolve;
    failed = reject;
  });
  const tx = db.api.transaction(async (t) => {
    try {
      started(await work(new EmbeddingStore(t)));
    } catch (err) {
      failed(err);
      throw err;
    }
    await finished;
  });
  tx.catch(() => undefined);
  const commit = async () => {
    finish();
    await tx;
  };
  open.push(commit);
  return { result: await result, commit };
}

async function runningJob(target: string, rows: number): Promise<Job> {
  await createDocuments(db, { table: target, rows });
  await registerDocuments(db.store, { name: target, table: target });
  const job = await db.store.createJob(target, "run", null);
  await seedTarget(db.store, target, { jobId: job.id });
  return db.store.startJob(job.id);
}

const processing = (target: string) =>
  scalar<number>(
    db,
    `SELECT count(*)::int FROM embedding_items
      WHERE target_id = (SELECT id FROM embedding_targets WHERE name = '${target}') AND status = 'processing'`,
  );

describe("the workers of one job never wait for each other's locks", () => {
  it("a claim goes on while another worker's claim of the same job is still in its transaction", async () => {
    const job = await runningJob("cc_claims", 40);
    const first = await midway((s) => s.claim("cc_claims", "worker-a", 10, 300, { jobId: job.id }));
    expect(first.result.items).toHaveLength(10);

    const second = await db.store.claim("cc_claims", "worker-b", 10, 300, { jobId: job.id });
    expect(second.jobStatus).toBe("running");
    expect(second.items).toHaveLength(10);
    // No row is claimed twice.
    const a = new Set(first.result.items.map((i) => i.id));
    expect(second.items.filter((i) => a.has(i.id))).toEqual([]);
    await first.commit();
    expect(await processing("cc_claims")).toBe(20);
  });

  it("a claim goes on while another worker's progress update of the job is uncommitted", async () => {
    const job = await runningJob("cc_progress", 20);
    const progress = await midway((s) => s.incrementProgress(job.id, 5, { requests: 1 }));

    const claim = await db.store.claim("cc_progress", "worker-b", 10, 300, { jobId: job.id });
    expect(claim.items).toHaveLength(10);
    await progress.commit();
    expect((await db.store.getJob(job.id)).itemsProcessed).toBe(5);
  });

  it("a claim goes on while another worker writes and counts its batch", async () => {
    const job = await runningJob("cc_write", 20);
    const mine = await db.store.claim("cc_write", "worker-a", 5, 300, { jobId: job.id });
    const provider = createLocalProvider({ dimensions: 8 });
    const embedded = await provider.embed(mine.items.map((i) => i.content));
    const write = await midway(async (s) => {
      const w = await s.write(
        "cc_write",
        "worker-a",
        mine.items.map((item, n) => {
          const outcome = embedded.outcomes[n]!;
          if (!outcome.ok) throw new Error(outcome.error);
          return { id: item.id, hash: item.hash, vector: outcome.vector };
        }),
      );
      await s.incrementProgress(job.id, w.written);
      return w;
    });
    expect(write.result.written).toBe(5);

    const claim = await db.store.claim("cc_write", "worker-b", 20, 300, { jobId: job.id });
    expect(claim.items).toHaveLength(15);
    await write.commit();
    expect((await db.store.getJob(job.id)).itemsProcessed).toBe(5);
  });

  it("a chunked target's claim goes on while another worker's chunk claim is still in its transaction", async () => {
    await createRecordings(
      db,
      "cc_chunks",
      Array.from({ length: 6 }, (_, i) => transcript(i, 2)),
    );
    await registerRecordings(db.store, { name: "cc_chunks", table: "cc_chunks" });
    const job = await db.store.createJob("cc_chunks", "run", null);
    await seedTarget(db.store, "cc_chunks", { jobId: job.id });
    await db.store.startJob(job.id);
    const first = await midway((s) => s.chunks.claim("cc_chunks", "worker-a", 3, 300, { jobId: job.id }));
    expect(first.result.docs).toHaveLength(3);

    const second = await db.store.chunks.claim("cc_chunks", "worker-b", 3, 300, { jobId: job.id });
    expect(second.jobStatus).toBe("running");
    expect(second.docs).toHaveLength(3);
    const a = new Set(first.result.docs.map((d) => d.id));
    expect(second.docs.filter((d) => a.has(d.id))).toEqual([]);
  });

  it("a cancelled job still claims nothing, and an unknown job is still refused", async () => {
    const job = await runningJob("cc_cancel", 10);
    await db.store.cancelJob(job.id, "test");
    const claim = await db.store.claim("cc_cancel", "worker-b", 10, 300, { jobId: job.id });
    expect(claim).toMatchObject({ items: [], jobStatus: "cancelled" });
    expect(await processing("cc_cancel")).toBe(0);
    const unknown = await db.store
      .claim("cc_cancel", "worker-b", 10, 300, { jobId: "00000000-0000-4000-8000-000000000000" })
      .catch((e: unknown) => e);
    expect(unknown).toMatchObject({ code: "P0002" });
  });

  it("a claim still beats the job's heartbeat", async () => {
    const job = await runningJob("cc_beat", 10);
    await db.exec(
      `UPDATE embedding_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = '${job.id}'`,
    );
    await db.store.claim("cc_beat", "worker-b", 5, 300, { jobId: job.id });
    expect(
      await scalar<boolean>(
        db,
        `SELECT heartbeat_at > now() - interval '10 minutes' FROM embedding_jobs WHERE id = '${job.id}'`,
      ),
    ).toBe(true);
  });
});

describe("the colleague's run", () => {
  it("20,000 rows with --parallelism 8 --batch-size 500 complete with no retry to spare", async () => {
    // 8 dimensions (the report used 384; the lock is the job row's, whatever the vector size).
    await createDocuments(db, { table: "cc_run", rows: 20_000 });
    await registerDocuments(db.store, { name: "cc_run", table: "cc_run" });
    const summary = await runTarget(
      { store: db.store, provider: createLocalProvider({ dimensions: 8 }) },
      // retries: 0: a single lock timeout between the workers fails the run.
      { target: "cc_run", batchSize: 500, parallelism: 8, retries: 0 },
    );
    expect(summary.job).toMatchObject({ status: "completed", itemsProcessed: 20_000, itemsFailed: 0 });
    expect(await scalar<number>(db, "SELECT count(*)::int FROM cc_run WHERE embedding IS NULL")).toBe(0);
  });
});

describe("a leasing statement that meets the lock timeout runs again", () => {
  /**
   * PostgreSQL's SKIP LOCKED waits in one case: a row version that was updated while it was being
   * locked is followed along its update chain, and whoever holds the newer version is waited for
   * (20261201180100_claim_lock_retry). That race cannot be set up on demand, so this makes the same
   * statement meet the same error deterministically: a trigger on the state table waits for an
   * advisory lock another session holds, on the first `tries` leases of the target's rows, and a
   * sequence (not rolled back with the statement) counts the tries.
   */
  async function blockLeases(
    target: string,
    tries: number,
  ): Promise<{ count: () => Promise<number>; release: () => Promise<void> }> {
    const seq = `${target}_tries`;
    await db.exec(`
      CREATE SEQUENCE public.${seq};
      CREATE FUNCTION public.${target}_blocker() RETURNS trigger LANGUAGE plpgsql
        SET search_path = pg_catalog AS $$
      BEGIN
        IF NEW.status = 'processing' AND OLD.status IN ('pending', 'failed')
           AND NEW.target_id = (SELECT id FROM public.embedding_targets WHERE name = '${target}')
           AND nextval('public.${seq}') <= ${tries} THEN
          PERFORM pg_advisory_xact_lock(4242);
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER ${target}_blocker BEFORE UPDATE ON public.embedding_items
        FOR EACH ROW EXECUTE FUNCTION public.${target}_blocker();`);
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    await holder.query("SELECT pg_advisory_lock(4242)");
    return {
      count: async () =>
        Number((await db.query<{ n: string }>(`SELECT last_value::text AS n FROM public.${seq}`))[0]!.n),
      release: async () => {
        await holder.end();
        await db.exec(`DROP TRIGGER ${target}_blocker ON public.embedding_items;
          DROP FUNCTION public.${target}_blocker(); DROP SEQUENCE public.${seq};`);
      },
    };
  }

  it("once: the claim takes its rows on the second try", async () => {
    const job = await runningJob("cc_retry_once", 10);
    const blocked = await blockLeases("cc_retry_once", 1);
    try {
      const claim = await db.store.claim("cc_retry_once", "worker-a", 5, 300, { jobId: job.id });
      expect(claim.items).toHaveLength(5);
      // The first try waited and was undone; the second leased all five rows.
      expect(await blocked.count()).toBe(6);
      expect(await processing("cc_retry_once")).toBe(5);
    } finally {
      await blocked.release();
    }
  });

  it("every time: the claim fails after three tries, and leases nothing", async () => {
    const job = await runningJob("cc_retry_never", 10);
    const blocked = await blockLeases("cc_retry_never", 1_000_000);
    try {
      const err = await db.store
        .claim("cc_retry_never", "worker-a", 5, 300, { jobId: job.id })
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "55P03" });
      expect(await blocked.count()).toBe(3);
      expect(await processing("cc_retry_never")).toBe(0);
    } finally {
      await blocked.release();
    }
  });

  it("a chunked target's document lease is tried again too", async () => {
    await createRecordings(
      db,
      "cc_retry_chunks",
      Array.from({ length: 4 }, (_, i) => transcript(i, 2)),
    );
    await registerRecordings(db.store, { name: "cc_retry_chunks", table: "cc_retry_chunks" });
    const job = await db.store.createJob("cc_retry_chunks", "run", null);
    await seedTarget(db.store, "cc_retry_chunks", { jobId: job.id });
    await db.store.startJob(job.id);
    const blocked = await blockLeases("cc_retry_chunks", 1);
    try {
      const claim = await db.store.chunks.claim("cc_retry_chunks", "worker-a", 3, 300, { jobId: job.id });
      expect(claim.docs).toHaveLength(3);
      expect(await blocked.count()).toBe(4);
    } finally {
      await blocked.release();
    }
  });
});
