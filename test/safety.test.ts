import { getEventListeners } from "node:events";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rowsChanged } from "../src/functions/events.js";
import { buildApp } from "../src/http/app.js";
import { runTarget, sleep } from "../src/lib/core/runner.js";
import { createPostgresApi, type PostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { createSupabaseApi } from "../src/lib/db/supabase.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import { createTestApp, testConfig, testContext } from "./support/app.js";
import { runCliInProcess } from "./support/cli.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { type PostgrestGateway, startPostgrestGateway } from "./support/postgrest-gateway.js";

/**
 * The service lives inside the user's database: it never makes the user's own statements fail, one
 * bad row or target never stalls the rest, and it never gives a caller more rights than it has.
 * Real PostgreSQL with Supabase's roles (anon, authenticated, service_role) and default privileges.
 */

const db = useTestDatabase("safety");
const TOKEN = "safety-admin-token-0123456789";
let asService: PostgresApi;
let serviceStore: EmbeddingStore;

beforeAll(async () => {
  // What a server holding the service-role key can do: every call runs as service_role.
  asService = createPostgresApi({ connectionString: db.url, options: "-c role=service_role" });
  serviceStore = new EmbeddingStore(asService);
});
afterAll(async () => {
  await asService?.close();
});

const targetId = (name: string) => `(SELECT id FROM embedding_targets WHERE name = '${name}')`;

async function triggersOn(table: string): Promise<string[]> {
  const rows = await db.query<{ tgname: string }>(
    `SELECT tgname FROM pg_trigger WHERE tgrelid = '${table}'::regclass AND NOT tgisinternal ORDER BY 1`,
  );
  return rows.map((r) => r.tgname);
}

describe("the user's writes never fail because of the service", () => {
  it("a renamed table keeps no trigger after targets remove, and the user's inserts succeed", async () => {
    await createDocuments(db, { table: "ren_docs", rows: 3 });
    await registerDocuments(db.store, { name: "ren_docs", table: "ren_docs" });
    await db.exec("ALTER TABLE ren_docs RENAME TO ren_docs_renamed");
    await db.store.removeTarget("ren_docs");
    expect(await triggersOn("ren_docs_renamed")).toEqual([]);
    await db.exec("INSERT INTO ren_docs_renamed (title, body, author) VALUES ('t', 'b', 'a')");

    await db.exec("CREATE SCHEMA IF NOT EXISTS moved");
    await createDocuments(db, { table: "move_docs", rows: 3 });
    await registerDocuments(db.store, { name: "move_docs", table: "move_docs" });
    await db.exec("ALTER TABLE move_docs SET SCHEMA moved");
    await db.store.removeTarget("move_docs");
    expect(await triggersOn("moved.move_docs")).toEqual([]);
    await db.exec("INSERT INTO moved.move_docs (title, body, author) VALUES ('t', 'b', 'a')");
  });

  it("a target that is gone leaves its table writable", async () => {
    await createDocuments(db, { table: "gone_docs", rows: 3 });
    await registerDocuments(db.store, { name: "gone_docs", table: "gone_docs" });
    // As if the internal row vanished (a restore of only some tables, a manual cleanup).
    await db.exec("ALTER TABLE embedding_items DISABLE TRIGGER ALL");
    await db.exec(`DELETE FROM embedding_items WHERE target_id = ${targetId("gone_docs")}`);
    await db.exec("ALTER TABLE embedding_items ENABLE TRIGGER ALL");
    await db.exec("DELETE FROM embedding_targets WHERE name = 'gone_docs'");
    await db.exec("INSERT INTO gone_docs (title, body, author) VALUES ('t', 'b', 'a')");
    await db.exec("UPDATE gone_docs SET body = 'changed' WHERE id = 1");
    await db.exec("DELETE FROM gone_docs WHERE id = 2");
  });

  it("a content expression that errors on one row leaves the user's UPDATE successful and the others embedded", async () => {
    await createDocuments(db, { table: "expr_docs", rows: 10 });
    await db.exec("UPDATE expr_docs SET body = id::text");
    await db.store.registerTarget({
      name: "expr_docs",
      table: "public.expr_docs",
      idColumn: "id",
      contentExpression: "'n=' || (body::int + 1)::text",
      embeddingColumn: "embedding",
      provider: "local",
      model: "local-ngram-v1",
      dimensions: 8,
    });
    await db.exec("UPDATE expr_docs SET body = 'abc' WHERE id = 5");
    await db.exec("INSERT INTO expr_docs (title, body, author) VALUES ('t', 'not a number', 'a')");
    await db.exec("UPDATE expr_docs SET body = '70' WHERE id = 7");
    const { provider } = countingProvider(8);
    const summary = await runTarget(
      { store: db.store, provider },
      { target: "expr_docs", batchSize: 4, parallelism: 1 },
    );
    expect(summary.job.status).toBe("completed");
    expect(await scalar(db, "SELECT count(*)::int FROM expr_docs WHERE embedding IS NOT NULL")).toBe(9);
    const bad = await db.query<{ row_id: string; status: string; last_error: string }>(
      `SELECT row_id, status, last_error FROM embedding_items WHERE target_id = ${targetId("expr_docs")}
        AND status <> 'completed' ORDER BY row_id`,
    );
    expect(bad.map((b) => [b.row_id, b.status])).toEqual([
      ["11", "dead_letter"],
      ["5", "dead_letter"],
    ]);
    expect(bad[1]!.last_error).toMatch(/content expression failed.*invalid input syntax for type integer/);
    // Editing the row so the expression works again queues it again.
    await db.exec("UPDATE expr_docs SET body = '5' WHERE id = 5");
    expect(
      await scalar(
        db,
        `SELECT status FROM embedding_items WHERE target_id = ${targetId("expr_docs")} AND row_id = '5'`,
      ),
    ).toBe("pending");
  });
});

describe("one bad input never stalls a target", () => {
  it("rows.changed with a wrong-type id is reported, never stored, and the target stays healthy", async () => {
    await createDocuments(db, { table: "ids_docs", rows: 5 });
    const { harness, store } = createTestApp(db);
    await registerDocuments(store, { name: "ids_docs", table: "ids_docs" });
    await harness.send(
      rowsChanged.create({ target: "ids_docs", ids: ["abc", 3, "4", "12345678901234567890"] }),
    );
    const runs = await harness.runUntilIdle();
    expect(runs.map((r) => r.status)).toEqual(["completed"]);
    expect(runs[0]!.output).toMatchObject({ marked: 2, invalid: ["abc", "12345678901234567890"] });
    expect(
      await scalar(
        db,
        `SELECT count(*)::int FROM embedding_items WHERE target_id = ${targetId("ids_docs")} AND row_id !~ '^[0-9]+$'`,
      ),
    ).toBe(0);
    const sweep = await harness.invokeCron("embeddings-sweep");
    await harness.runUntilIdle();
    expect(harness.run(sweep)).toMatchObject({ status: "completed" });
    expect(
      await scalar(db, "SELECT array_agg(id ORDER BY id)::text FROM ids_docs WHERE embedding IS NOT NULL"),
    ).toBe("{3,4}");
  });

  it("a NUL byte or a wrong-type id in the SQL API is refused, not retried forever", async () => {
    await createDocuments(db, { table: "nul_docs", rows: 2 });
    await registerDocuments(db.store, { name: "nul_docs", table: "nul_docs" });
    await db.store.enqueue("nul_docs", null, 100);
    expect(await db.store.markPending("nul_docs", ["1", "a\u0000b", "x"])).toMatchObject({
      marked: 1,
      invalid: ["a\u0000b", "x"],
    });
    // A bad id that slipped into the state before this release is dead-lettered, not a stalled claim.
    await db.exec(
      `INSERT INTO embedding_items (target_id, row_id) VALUES (${targetId("nul_docs")}, 'legacy-bad')`,
    );
    const claim = await db.store.claim("nul_docs", "w", 10, 60);
    expect(claim.items.map((i) => i.id).sort()).toEqual(["1", "2"]);
    expect(
      await scalar(
        db,
        `SELECT status FROM embedding_items WHERE target_id = ${targetId("nul_docs")} AND row_id = 'legacy-bad'`,
      ),
    ).toBe("dead_letter");
  });

  it("the claim judges every spelling of a bigint id as the full check does (its fast path only for plain digits)", async () => {
    await createDocuments(db, { table: "spell_docs", rows: 3 });
    await registerDocuments(db.store, { name: "spell_docs", table: "spell_docs" });
    const spellings = {
      " 2": "valid", // blanks and a sign take the full check
      "+3": "valid",
      "0001": "valid",
      "-5": "valid",
      "999999999999999999": "valid", // 18 digits: the fast path
      "9223372036854775807": "valid", // 19 digits: the full check, in range
      "9223372036854775808": "invalid",
      "12e3": "invalid",
      "": "invalid",
    } as const;
    const id = targetId("spell_docs");
    for (const spelling of Object.keys(spellings)) {
      await db.query(`INSERT INTO embedding_items (target_id, row_id) VALUES (${id}, $1)`, [spelling]);
    }
    await db.store.claim("spell_docs", "w", 50, 60);
    const states = await db.query<{ row_id: string; status: string }>(
      `SELECT row_id, status FROM embedding_items WHERE target_id = ${id} AND row_id = ANY ($1)`,
      [Object.keys(spellings)],
    );
    const seen = Object.fromEntries(states.map((s) => [s.row_id, s.status]));
    // A valid id is leased (no source row has that exact text, so it is then ended as gone); an
    // invalid one is dead-lettered and stays.
    for (const [spelling, verdict] of Object.entries(spellings)) {
      expect([spelling, seen[spelling] ?? "gone"]).toEqual([
        spelling,
        verdict === "valid" ? "gone" : "dead_letter",
      ]);
    }
  });

  it("with one target's table dropped, status and metrics still report every other target", async () => {
    await createDocuments(db, { table: "ok_docs", rows: 4 });
    await createDocuments(db, { table: "drop_docs", rows: 4 });
    await registerDocuments(db.store, { name: "ok_docs", table: "ok_docs" });
    await registerDocuments(db.store, { name: "drop_docs", table: "drop_docs" });
    await db.exec("DROP TABLE drop_docs");
    const config = testConfig({ EMBEDDINGS_ADMIN_TOKEN: TOKEN });
    const context = testContext(db, config);
    const { app } = buildApp({
      config,
      context: async () => context,
      providerFor: (t) => providerForTarget(t, config),
    });
    const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
    const res = await app.request("/status", auth);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { targets: { target: string; total: number; error?: string }[] };
    expect(body.targets.find((t) => t.target === "ok_docs")).toMatchObject({ total: 4 });
    expect(body.targets.find((t) => t.target === "drop_docs")).toMatchObject({
      error: expect.stringMatching(/drop_docs/),
    });
    const metrics = await (await app.request("/metrics", auth)).text();
    expect(metrics).toMatch(/embeddings_target_rows\{target="ok_docs"\} 4/);
    expect(metrics).toMatch(/embeddings_target_health_level\{target="drop_docs"\} 2/);
    const cli = await runCliInProcess(["status", "--json"], { context: (c) => testContext(db, c) });
    expect(cli.code).toBe(0);
    expect(cli.json()).toMatchObject({
      targets: expect.arrayContaining([expect.objectContaining({ target: "ok_docs" })]),
    });
  });
});

describe("never more rights than the caller has", () => {
  beforeAll(async () => {
    await db.exec(`
      CREATE SCHEMA IF NOT EXISTS private;
      CREATE TABLE private.secrets (id bigint PRIMARY KEY, body text NOT NULL, embedding real[]);
      INSERT INTO private.secrets VALUES (1, 'the launch code is 0000', NULL);
      REVOKE ALL ON SCHEMA private FROM PUBLIC, anon, authenticated, service_role;
      REVOKE ALL ON private.secrets FROM PUBLIC, anon, authenticated, service_role;
    `);
  });

  it("the service role cannot register a table it cannot read", async () => {
    const err = await serviceStore
      .registerTarget({
        name: "secret_docs",
        table: "private.secrets",
        idColumn: "id",
        contentColumns: ["body"],
        embeddingColumn: "embedding",
        provider: "local",
        model: "local-ngram-v1",
        dimensions: 8,
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "42501",
      message: expect.stringMatching(/service_role.*private\.secrets/),
    });
  });

  it("the service role cannot read through a target what it cannot SELECT itself", async () => {
    await db.store.registerTarget({
      name: "owner_secrets",
      table: "private.secrets",
      idColumn: "id",
      contentColumns: ["body"],
      embeddingColumn: "embedding",
      provider: "local",
      model: "local-ngram-v1",
      dimensions: 8,
    });
    await db.store.enqueue("owner_secrets", null, 100);
    const err = await serviceStore.claim("owner_secrets", "w", 5, 60).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "42501" });
    expect(JSON.stringify(err)).not.toContain("launch code");
  });

  it.each([
    ["a file read", "pg_read_file('/etc/hostname')"],
    ["a query of another table", "(SELECT body FROM private.secrets LIMIT 1)"],
    ["a setting change", "set_config('role', 'postgres', true)"],
    ["a sleep", "title || pg_sleep(1)::text"],
  ])("a content expression with %s is refused at registration", async (_, expression) => {
    await createDocuments(db, { table: "pure_docs", rows: 1 }).catch(() => undefined);
    const err = await db.store
      .registerTarget({
        name: "pure_docs",
        table: "public.pure_docs",
        idColumn: "id",
        contentExpression: expression,
        embeddingColumn: "embedding",
        provider: "local",
        model: "local-ngram-v1",
        dimensions: 8,
      })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "42501",
      message: expect.stringMatching(/pure expression over the row/),
    });
  });

  it("a pure content expression over the row is accepted", async () => {
    await createDocuments(db, { table: "fine_docs", rows: 2 });
    const t = await db.store.registerTarget({
      name: "fine_docs",
      table: "public.fine_docs",
      idColumn: "id",
      contentExpression: "upper(title) || ': ' || coalesce(body, '') || ' (' || length(author)::text || ')'",
      embeddingColumn: "embedding",
      provider: "local",
      model: "local-ngram-v1",
      dimensions: 8,
    });
    expect(t.contentExpression).toMatch(/upper/);
  });

  it("the service role cannot write the internal tables directly", async () => {
    for (const sql of [
      "UPDATE embedding_targets SET content_sql = 'x'",
      "DELETE FROM embedding_items",
      "INSERT INTO embedding_jobs (target_id) VALUES (1)",
      "UPDATE embedding_schema_migrations SET checksum = NULL",
    ]) {
      const err = await asService.query(sql).catch((e: unknown) => e);
      expect(err, sql).toMatchObject({ code: "42501" });
    }
  });

  it("anon and authenticated can call nothing and touch nothing, sequences included", async () => {
    const rows = await db.query<{ role: string; object: string }>(`
      SELECT r.rolname AS role, c.relname AS object FROM pg_class c CROSS JOIN pg_roles r
       WHERE c.relnamespace = 'public'::regnamespace AND c.relname LIKE 'embedding\\_%'
         AND r.rolname IN ('anon', 'authenticated')
         AND (has_table_privilege(r.rolname, c.oid, 'SELECT') OR has_table_privilege(r.rolname, c.oid, 'INSERT')
              OR (c.relkind = 'S' AND has_sequence_privilege(r.rolname, c.oid, 'USAGE')))
      UNION ALL
      SELECT r.rolname, p.proname FROM pg_proc p CROSS JOIN pg_roles r
       WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE '%embedding%'
         AND r.rolname IN ('anon', 'authenticated') AND has_function_privilege(r.rolname, p.oid, 'EXECUTE')`);
    expect(rows).toEqual([]);
  });

  it("no SECURITY DEFINER function searches public", async () => {
    const rows = await db.query<{ proname: string }>(`
      SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
         AND (p.proconfig IS NULL OR NOT EXISTS (
               SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%' AND c NOT LIKE '%public%'))`);
    expect(rows.map((r) => r.proname)).toEqual([]);
  });
});

describe("PostgREST runs every call as the key's role", () => {
  let gateway: PostgrestGateway;
  beforeAll(async () => {
    gateway = await startPostgrestGateway({ db: db.api, serviceRoleKey: "gateway-key-0123456789abcdef" });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it("so a supabase-js caller is refused what the service role may not read", async () => {
    const store = new EmbeddingStore(
      createSupabaseApi({ url: gateway.url, serviceRoleKey: "gateway-key-0123456789abcdef" }),
    );
    const err = await store.claim("owner_secrets", "w", 5, 60).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "42501" });
  });
});

describe("registration and re-embedding say what they do", () => {
  it("re-registering with another content or model is refused without --replace, and with it every row is embedded again", async () => {
    await createDocuments(db, { table: "rereg_docs", rows: 30 });
    await registerDocuments(db.store, { name: "rereg_docs", table: "rereg_docs" });
    const { provider } = countingProvider(8);
    await runTarget({ store: db.store, provider }, { target: "rereg_docs", batchSize: 10, parallelism: 1 });
    const changed = {
      name: "rereg_docs",
      table: "public.rereg_docs",
      idColumn: "id",
      contentColumns: ["title"],
      embeddingColumn: "embedding",
      provider: "local",
      model: "local-ngram-v1",
      dimensions: 8,
    };
    const refused = await db.store.registerTarget(changed).catch((e: unknown) => e);
    expect(refused).toMatchObject({
      code: "22023",
      message: expect.stringMatching(/already registered.*content/),
      hint: expect.stringMatching(/--replace/),
    });
    const replaced = await db.store.registerTarget({ ...changed, replace: true });
    expect(replaced).toMatchObject({ reset: 30 });
    const again = countingProvider(8);
    const summary = await runTarget(
      { store: db.store, provider: again.provider },
      { target: "rereg_docs", batchSize: 10, parallelism: 1 },
    );
    expect(summary.job.itemsProcessed).toBe(30);
    expect(again.seen).toHaveLength(30);
    // Registering again with the same definition changes nothing and needs no flag.
    await db.store.registerTarget(changed);
  });

  it("--reembed embeds every row again regardless of content hashes, and says how many it queued", async () => {
    await createDocuments(db, { table: "reemb_docs", rows: 25 });
    await registerDocuments(db.store, { name: "reemb_docs", table: "reemb_docs" });
    await runTarget(
      { store: db.store, provider: countingProvider(8).provider },
      { target: "reemb_docs", batchSize: 10, parallelism: 1 },
    );
    const again = countingProvider(8);
    const summary = await runTarget(
      { store: db.store, provider: again.provider },
      { target: "reemb_docs", batchSize: 10, parallelism: 2, reembed: true },
    );
    expect(summary.seeded.queued).toBe(25);
    expect(summary.job.itemsProcessed).toBe(25);
    expect(again.seen).toHaveLength(25);
  });
});

describe("a user's long transaction and a backfill", () => {
  it("both commit: the user's transaction never fails, the backfill completes with current content", async () => {
    await createDocuments(db, { table: "long_docs", rows: 4000 });
    await registerDocuments(db.store, { name: "long_docs", table: "long_docs" });
    const user = new pg.Client({ connectionString: db.url });
    await user.connect();
    try {
      await user.query("BEGIN");
      const backfill = runTarget(
        { store: db.store, provider: countingProvider(8).provider },
        { target: "long_docs", batchSize: 50, parallelism: 4, maxWaitMs: 60_000 },
      );
      // 3,000 rows in a random order, in one transaction, while the backfill writes the same rows.
      const ids = Array.from({ length: 4000 }, (_, i) => i + 1)
        .sort(() => Math.random() - 0.5)
        .slice(0, 3000);
      for (let i = 0; i < ids.length; i += 100) {
        await user.query("UPDATE long_docs SET body = body || ' (edited)' WHERE id = ANY ($1::bigint[])", [
          ids.slice(i, i + 100),
        ]);
        // Keep the transaction open across many of the backfill's batches.
        await new Promise((r) => setTimeout(r, 40));
      }
      await user.query("COMMIT");
      const first = await backfill;
      expect(first.job.status).toBe("completed");
      // The edits committed after some rows were embedded: those rows are due again; a second pass
      // (what the sweep does) leaves every embedding matching the committed content.
      await runTarget(
        { store: db.store, provider: countingProvider(8).provider },
        { target: "long_docs", batchSize: 200, parallelism: 2 },
      );
      expect(await scalar(db, "SELECT count(*)::int FROM long_docs WHERE body LIKE '% (edited)'")).toBe(3000);
      expect(
        await scalar(
          db,
          `SELECT count(*)::int FROM embedding_items WHERE target_id = ${targetId("long_docs")} AND status = 'completed'`,
        ),
      ).toBe(4000);
    } finally {
      await user.end();
    }
  });
});

describe("smaller things", () => {
  it("a run whose seeding fails ends its job failed with the error", async () => {
    await createDocuments(db, { table: "seedfail_docs", rows: 3 });
    await registerDocuments(db.store, { name: "seedfail_docs", table: "seedfail_docs" });
    await db.exec("ALTER TABLE seedfail_docs RENAME COLUMN title TO heading");
    const err = (await runTarget(
      { store: db.store, provider: countingProvider(8).provider },
      { target: "seedfail_docs", batchSize: 10, parallelism: 1 },
    ).catch((e: unknown) => e)) as { job?: { status: string; lastError: string } };
    expect(err.job).toMatchObject({ status: "failed", lastError: expect.stringMatching(/title/) });
  });

  it("POST /batch with an unknown jobId answers 404 before embedding anything", async () => {
    await createDocuments(db, { table: "batchjob_docs", rows: 3 });
    await registerDocuments(db.store, { name: "batchjob_docs", table: "batchjob_docs" });
    await db.store.enqueue("batchjob_docs", null, 100);
    const config = testConfig({ EMBEDDINGS_ADMIN_TOKEN: TOKEN });
    const context = testContext(db, config);
    const counting = countingProvider(8);
    const { app } = buildApp({ config, context: async () => context, providerFor: () => counting.provider });
    const res = await app.request("/batch", {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ target: "batchjob_docs", jobId: crypto.randomUUID() }),
    });
    expect(res.status).toBe(404);
    expect(counting.seen).toEqual([]);
    expect(await scalar(db, "SELECT count(*)::int FROM batchjob_docs WHERE embedding IS NOT NULL")).toBe(0);
  });

  it("/health needs the admin token for the live probe and shows no schema details without it", async () => {
    await createDocuments(db, { table: "health_docs", rows: 1 });
    await registerDocuments(db.store, { name: "health_docs", table: "health_docs" });
    const config = testConfig({ EMBEDDINGS_ADMIN_TOKEN: TOKEN });
    const context = testContext(db, config);
    const counting = countingProvider(8);
    const { app } = buildApp({ config, context: async () => context, providerFor: () => counting.provider });
    expect((await app.request("/health?probe=1")).status).toBe(401);
    expect(counting.seen).toEqual([]);
    const open = await (await app.request("/health")).text();
    expect(open).not.toMatch(/health_docs|public\.|embedding/);
    const full = await app.request("/health?probe=1", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await full.text()).toMatch(/health_docs/);
    expect(counting.seen.length).toBeGreaterThan(0);
  });

  it("the runner's sleep leaves no abort listener behind", async () => {
    const controller = new AbortController();
    for (let i = 0; i < 20; i++) await sleep(1, controller.signal);
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });
});
