import { describe, expect, it } from "vitest";
import { rowsChanged } from "../src/functions/events.js";
import { runTarget } from "../src/lib/core/runner.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import { createTestApp, testContext } from "./support/app.js";
import { runCliInProcess } from "./support/cli.js";
import { countingProvider, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { createRecordings, recording, registerRecordings, transcript } from "./support/transcripts.js";

/**
 * Chunk mode on a real PostgreSQL: long documents split into embedded chunks, re-chunked
 * incrementally, swapped in atomically, and status per document and per chunk.
 */

const db = useTestDatabase("chunks");

const run = (provider: EmbeddingProvider, target: string, batchSize = 20, parallelism = 2) =>
  runTarget({ store: db.store, provider }, { target, batchSize, parallelism });

const chunkRows = (table: string, id: number | string) =>
  db.query<{ chunk_index: number; content: string }>(
    `SELECT chunk_index, content FROM public.${table} WHERE document_id = $1 ORDER BY chunk_index`,
    [id],
  );

describe("chunked targets", () => {
  it("registration creates the chunk table (real[] without pgvector, saying so) with a cascading key", async () => {
    await createRecordings(db, "rec_reg", [transcript(1, 3)]);
    const t = await registerRecordings(db.store, { name: "rec_reg", table: "rec_reg", dimensions: 8 });
    expect(t).toMatchObject({
      chunkTableCreated: true,
      chunks: { table: "public.rec_reg_chunks", tokens: 64, overlap: 8 },
      embeddingColumn: "embedding",
      embeddingKind: "real[]",
      notes: [expect.stringContaining("pgvector is not installed")],
    });
    const cols = await db.query<{ column_name: string; data_type: string; udt_name: string }>(
      `SELECT column_name, data_type, udt_name FROM information_schema.columns
        WHERE table_name = 'rec_reg_chunks' ORDER BY ordinal_position`,
    );
    expect(cols.map((c) => [c.column_name, c.udt_name])).toEqual([
      ["document_id", "int8"],
      ["chunk_index", "int4"],
      ["content", "text"],
      ["embedding", "_float4"],
    ]);
    expect(
      await scalar(
        db,
        "SELECT confdeltype::text || confupdtype::text FROM pg_constraint WHERE conrelid = 'public.rec_reg_chunks'::regclass AND contype = 'f'",
      ),
    ).toBe("cc");
  });

  it("an existing chunk table that cannot work is refused with every problem and its fix, and nothing is registered", async () => {
    await createRecordings(db, "rec_bad", [transcript(2, 2)]);
    await db.exec(`CREATE TABLE public.rec_bad_chunks (document_id text, pos integer, body text,
        embedding real[], tenant text NOT NULL)`);
    const err = await registerRecordings(db.store, { name: "rec_bad", table: "rec_bad" }).catch(
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(Error);
    const message = (err as Error).message;
    expect(message).toContain("document_id is text but the source key is bigint");
    expect(message).toContain("column chunk_index is missing");
    expect(message).toContain("column content is missing");
    expect(message).toContain("no primary key (document_id, chunk_index)");
    expect(message).toContain("column tenant is NOT NULL without a default");
    expect(await scalar(db, "SELECT count(*)::int FROM embedding_targets WHERE name = 'rec_bad'")).toBe(0);
  });

  it("embeds every chunk of documents of 1 to hundreds of chunks, and completes every document", async () => {
    const docs = [transcript(10, 1), transcript(11, 12), transcript(12, 150), transcript(13, 40)];
    await createRecordings(db, "rec_all", docs);
    await registerRecordings(db.store, { name: "rec_all", table: "rec_all" });
    const { provider, inputs } = recording(8);
    const summary = await run(provider, "rec_all");
    expect(summary.job).toMatchObject({ status: "completed", itemsTotal: 4, itemsProcessed: 4 });
    const stored = await scalar<number>(db, "SELECT count(*)::int FROM public.rec_all_chunks");
    expect(stored).toBeGreaterThan(100);
    expect(summary.job.chunksTotal).toBe(stored);
    expect(summary.job.chunksEmbedded).toBe(stored);
    expect(inputs).toHaveLength(stored);
    expect(await scalar(db, "SELECT count(*)::int FROM public.rec_all_chunks WHERE embedding IS NULL")).toBe(
      0,
    );
    // Chunk indexes are dense per document, and the chunks cover the document in order.
    for (const [i, paragraphs] of docs.entries()) {
      const rows = await chunkRows("rec_all_chunks", i + 1);
      expect(rows.map((r) => r.chunk_index)).toEqual(rows.map((_, k) => k));
      expect(rows[0]!.content.startsWith(paragraphs[0]!.slice(0, 20))).toBe(true);
    }
    const [s] = await db.store.status("rec_all");
    expect(s).toMatchObject({ total: 4, embedded: 4, completed: 4, coverage: 100 });
    expect(s!.chunks).toMatchObject({
      stored,
      pending: 0,
      processing: 0,
      deadLetter: 0,
      documents: { total: 4, embedded: 4, inProgress: 0, failed: 0 },
    });
  });
});

describe("incremental re-chunking", () => {
  it("an edit of one paragraph of a long document re-embeds only the chunks around it, and unchanged chunks keep their vectors", async () => {
    const paragraphs = transcript(20, 200);
    await createRecordings(db, "rec_edit", [paragraphs]);
    await registerRecordings(db.store, { name: "rec_edit", table: "rec_edit" });
    const first = recording(8);
    await run(first.provider, "rec_edit");
    const before = await chunkRows("rec_edit_chunks", 1);
    expect(before.length).toBeGreaterThan(150);
    const vectorsBefore = new Map(
      (
        await db.query<{ content: string; v: string }>(
          "SELECT content, embedding::text AS v FROM public.rec_edit_chunks WHERE document_id = 1",
        )
      ).map((r) => [r.content, r.v]),
    );

    const edits: [string, (p: string[]) => string[]][] = [
      ["a word changed", (p) => p.map((x, i) => (i === 100 ? x.replace(/\bthe\b/u, "THE") : x))],
      [
        "a sentence added",
        (p) => p.map((x, i) => (i === 60 ? `${x} And one more sentence was said here.` : x)),
      ],
      [
        "a sentence removed",
        (p) => p.map((x, i) => (i === 140 ? x.replace(/^(Speaker \d: [^.]*\.) [^.]*\./u, "$1") : x)),
      ],
      ["a paragraph inserted", (p) => [...p.slice(0, 30), "Speaker 9: A new turn appears.", ...p.slice(30)]],
      ["a paragraph deleted", (p) => [...p.slice(0, 170), ...p.slice(171)]],
    ];
    let current = paragraphs;
    for (const [what, edit] of edits) {
      current = edit(current);
      await db.query("UPDATE public.rec_edit SET body = $1 WHERE id = 1", [current.join("\n\n")]);
      const again = recording(8);
      const s = await run(again.provider, "rec_edit");
      expect(s.job.status, what).toBe("completed");
      const after = await chunkRows("rec_edit_chunks", 1);
      const changed = after.filter((r) => !before.some((b) => b.content === r.content)).length;
      // Only the chunks around the edit are new, and only new chunks reach the provider.
      expect(again.inputs.length, what).toBeLessThanOrEqual(4);
      expect(again.inputs.length, what).toBeGreaterThanOrEqual(1);
      expect(changed, what).toBeLessThanOrEqual(again.inputs.length * 2);
      before.splice(0, before.length, ...after);
    }
    // A chunk that did not change kept its vector, bit for bit.
    const after = await db.query<{ content: string; v: string }>(
      "SELECT content, embedding::text AS v FROM public.rec_edit_chunks WHERE document_id = 1 ORDER BY chunk_index LIMIT 20",
    );
    for (const r of after) expect(r.v).toBe(vectorsBefore.get(r.content));
  });

  it("deleting a document removes its chunks; a document emptied has none; a re-keyed one moves", async () => {
    await createRecordings(db, "rec_del", [transcript(30, 20), transcript(31, 20), transcript(32, 20)]);
    await registerRecordings(db.store, { name: "rec_del", table: "rec_del" });
    await run(recording(8).provider, "rec_del");
    expect(await scalar(db, "SELECT count(DISTINCT document_id)::int FROM public.rec_del_chunks")).toBe(3);
    await db.exec(
      "DELETE FROM public.rec_del WHERE id = 1; UPDATE public.rec_del SET body = '   ' WHERE id = 2",
    );
    await db.exec("UPDATE public.rec_del SET id = 30 WHERE id = 3");
    const again = recording(8);
    await run(again.provider, "rec_del");
    expect(again.inputs).toHaveLength(0);
    expect(await scalar(db, "SELECT array_agg(DISTINCT document_id)::text FROM public.rec_del_chunks")).toBe(
      "{30}",
    );
    const [s] = await db.store.status("rec_del");
    expect(s).toMatchObject({ total: 2, embedded: 2, tracked: 2 });
  });

  it("a reader querying during a re-chunk sees the old set or the new one, never a mix or a part", async () => {
    const v1 = transcript(40, 60, " first");
    await createRecordings(db, "rec_swap", [v1]);
    await registerRecordings(db.store, { name: "rec_swap", table: "rec_swap" });
    await run(recording(8).provider, "rec_swap");
    const n1 = (await chunkRows("rec_swap_chunks", 1)).length;
    await db.query("UPDATE public.rec_swap SET body = $1 WHERE id = 1", [
      transcript(41, 90, " second").join("\n\n"),
    ]);

    const seen = new Set<string>();
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const [r] = await db.query<{ n: number; first: number; second: number }>(
          `SELECT count(*)::int AS n, count(*) FILTER (WHERE content LIKE '%first.%')::int AS first,
                  count(*) FILTER (WHERE content LIKE '%second.%')::int AS second
             FROM public.rec_swap_chunks WHERE document_id = 1`,
        );
        seen.add(`${r!.n}:${r!.first === r!.n ? "v1" : r!.second === r!.n ? "v2" : "mixed"}`);
      }
    })();
    await run(recording(8, { delayMs: 5 }).provider, "rec_swap", 5, 2);
    reading = false;
    await reader;
    const n2 = (await chunkRows("rec_swap_chunks", 1)).length;
    expect([...seen].sort()).toEqual([`${n1}:v1`, `${n2}:v2`].filter((x) => seen.has(x)).sort());
    expect(seen.has(`${n1}:v1`)).toBe(true);
    expect(seen.has(`${n2}:v2`)).toBe(true);
  });

  it("a document of 5,000 chunks is spread over many batches and written in bounded pieces", async () => {
    await createRecordings(db, "rec_huge", [transcript(50, 2400)]);
    await registerRecordings(db.store, {
      name: "rec_huge",
      table: "rec_huge",
      chunkTokens: 16,
      chunkOverlap: 0,
    });
    // Every statement that writes chunk rows records how many it wrote.
    await db.exec(`
      CREATE TABLE public.rec_huge_statements (table_name text, n integer);
      CREATE FUNCTION public.rec_huge_count() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO public.rec_huge_statements SELECT TG_TABLE_NAME, count(*) FROM new_rows;
        RETURN NULL;
      END $$;
      CREATE TRIGGER count_chunks AFTER INSERT ON public.rec_huge_chunks REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION public.rec_huge_count();`);
    const { provider, inputs } = recording(8);
    const s = await run(provider, "rec_huge", 100, 2);
    expect(s.job.status).toBe("completed");
    const stored = await scalar<number>(db, "SELECT count(*)::int FROM public.rec_huge_chunks");
    expect(stored).toBeGreaterThanOrEqual(5000);
    expect(inputs).toHaveLength(stored);
    expect(s.job.chunksEmbedded).toBe(stored);
    // The whole set went in within one swap, in statements of at most a batch (100 rows).
    expect(await scalar(db, "SELECT max(n)::int FROM public.rec_huge_statements")).toBe(100);
    expect(await scalar(db, "SELECT sum(n)::int FROM public.rec_huge_statements")).toBe(stored);
  });
});

describe("chunk failures", () => {
  it("a chunk the provider rejects dead-letters its document with the reason; a retry of the chunk embeds only it", async () => {
    const paragraphs = transcript(70, 30);
    paragraphs[12] = "Speaker 2: This part says POISON and the provider refuses it.";
    await createRecordings(db, "rec_fail", [paragraphs, transcript(71, 10)]);
    await registerRecordings(db.store, { name: "rec_fail", table: "rec_fail" });
    const poisoned = countingProvider(8, { poison: "POISON" });
    const s = await run(poisoned.provider, "rec_fail");
    expect(s.job).toMatchObject({ status: "completed", itemsProcessed: 1, itemsFailed: 1 });
    const [dead] = await db.store.deadLetters("rec_fail");
    expect(dead).toMatchObject({
      id: "1",
      errorKind: "permanent",
      error: expect.stringMatching(/^chunk \d+: input rejected/u),
    });
    expect(dead!.chunks).toHaveLength(1);
    // The old chunks of the failed document are not touched: it has none yet, so none are stored.
    expect(await scalar(db, "SELECT count(*)::int FROM public.rec_fail_chunks WHERE document_id = 1")).toBe(
      0,
    );
    const [status] = await db.store.status("rec_fail");
    expect(status!.chunks).toMatchObject({ deadLetter: 1, documents: { total: 2, embedded: 1, failed: 1 } });

    // The provider accepts it now: retrying that one chunk embeds one input and completes the document.
    const fixed = recording(8);
    expect(await db.store.chunks.retry("rec_fail", "1", dead!.chunks)).toMatchObject({ requeued: 1 });
    const again = await run(fixed.provider, "rec_fail");
    expect(again.job.status).toBe("completed");
    expect(fixed.inputs).toHaveLength(1);
    expect(fixed.inputs[0]).toContain("POISON");
    expect(await db.store.deadLetters("rec_fail")).toEqual([]);
    expect((await chunkRows("rec_fail_chunks", 1)).length).toBeGreaterThan(5);
  });

  it("a retry of the whole document keeps every chunk already embedded", async () => {
    const paragraphs = transcript(72, 30);
    paragraphs[20] = "Speaker 1: Another POISON sentence.";
    await createRecordings(db, "rec_fail2", [paragraphs]);
    await registerRecordings(db.store, { name: "rec_fail2", table: "rec_fail2" });
    await run(countingProvider(8, { poison: "POISON" }).provider, "rec_fail2");
    // The overlap may repeat the poisoned sentence in the next chunk: every chunk holding it is dead.
    const dead = await scalar<number>(
      db,
      "SELECT count(*)::int FROM public.embedding_chunks c JOIN public.embedding_targets t ON t.id = c.target_id WHERE t.name = 'rec_fail2' AND c.status = 'dead_letter'",
    );
    const total = await scalar<number>(
      db,
      "SELECT count(*)::int FROM public.embedding_chunks c JOIN public.embedding_targets t ON t.id = c.target_id WHERE t.name = 'rec_fail2'",
    );
    expect(dead).toBeGreaterThanOrEqual(1);
    expect(dead).toBeLessThan(total);
    expect(await db.store.retry("rec_fail2", { ids: ["1"] })).toMatchObject({ requeued: 1 });
    const fixed = recording(8);
    await run(fixed.provider, "rec_fail2");
    // Only the dead chunks go to the provider again; the embedded ones are kept.
    expect(fixed.inputs).toHaveLength(dead);
    for (const input of fixed.inputs) expect(input).toContain("POISON");
    const [status] = await db.store.status("rec_fail2");
    expect(status).toMatchObject({ completed: 1, deadLetter: 0 });
  });
});

describe("chunked targets in every runner", () => {
  const TOKEN = "chunk-runner-admin-token-0123456789";

  it("the sweep, rows.changed, POST /batch and the recovery each bring documents to complete", async () => {
    const docs = [transcript(100, 40), transcript(101, 20), transcript(102, 30)];
    docs[2]![5] = "Speaker 2: The FLAKY sentence that timed out.";
    await createRecordings(db, "rec_runners", []);
    const poisoned = countingProvider(8, { poison: "FLAKY" });
    let provider = poisoned.provider;
    const app = createTestApp(db, {
      env: { EMBEDDINGS_ADMIN_TOKEN: TOKEN },
      // Other tests' targets share this database: the crons fan out to them too, with their own provider.
      providerFor: (t, real) => (t.name === "rec_runners" ? provider : real()),
    });
    const mine = <R extends { fnId: string; event: { data: unknown } }>(runs: R[]) =>
      runs.filter(
        (r) =>
          !["embeddings-sweep-target", "embeddings-recovery-target"].includes(r.fnId) ||
          (r.event.data as { target?: string }).target === "rec_runners",
      );
    await registerRecordings(app.store, { name: "rec_runners", table: "rec_runners" });
    // Written after registration: the triggers queue them for the sweep.
    for (const [i, paragraphs] of docs.entries()) {
      await db.query("INSERT INTO public.rec_runners (id, title, body) VALUES ($1, 'Recording', $2)", [
        i + 1,
        paragraphs.join("\n\n"),
      ]);
    }
    const docState = async () =>
      Object.fromEntries(
        (
          await db.query<{ row_id: string; status: string }>(
            `SELECT i.row_id, i.status FROM public.embedding_items i
               JOIN public.embedding_targets t ON t.id = i.target_id
              WHERE t.name = 'rec_runners' ORDER BY i.row_id`,
          )
        ).map((r) => [r.row_id, r.status]),
      );

    // The sweep embeds what the triggers queued; the poisoned document dead-letters.
    await app.harness.invokeCron("embeddings-sweep");
    expect(
      (await app.harness.runUntilIdle({ maxCalls: 5000 })).filter((r) => r.status !== "completed"),
    ).toEqual([]);
    expect(await docState()).toEqual({ "1": "completed", "2": "completed", "3": "dead_letter" });

    // rows.changed: an edited document is re-embedded now, only around the edit.
    const edited = recording(8);
    provider = edited.provider;
    docs[0]![10] = "Speaker 1: An edited paragraph about lighthouses and tides.";
    await db.query("UPDATE public.rec_runners SET body = $1 WHERE id = 1", [docs[0]!.join("\n\n")]);
    await app.harness.send(rowsChanged.create({ target: "rec_runners", ids: [1] }));
    expect(
      (await app.harness.runUntilIdle({ maxCalls: 5000 })).filter((r) => r.status !== "completed"),
    ).toEqual([]);
    expect(edited.inputs.length).toBeGreaterThan(0);
    expect(edited.inputs.length).toBeLessThanOrEqual(4);
    expect((await chunkRows("rec_runners_chunks", 1)).map((c) => c.content).join(" ")).toContain(
      "lighthouses",
    );

    // POST /batch: a new document, driven batch by batch by the caller.
    await db.query("INSERT INTO public.rec_runners (id, title, body) VALUES (4, 'Recording 4', $1)", [
      transcript(103, 25).join("\n\n"),
    ]);
    let answer: { complete?: boolean } = {};
    for (let i = 0; i < 100 && !answer.complete; i++) {
      const res = await app.app.request("/batch", {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ target: "rec_runners", batchSize: 10 }),
      });
      expect(res.status).toBe(200);
      answer = await res.json();
    }
    expect(answer.complete).toBe(true);
    expect((await docState())["4"]).toBe("completed");

    // The recovery: a dead letter whose failure was transient (here: a timeout) is retried, and
    // only its dead chunks reach the provider again.
    await db.exec(`UPDATE public.embedding_items SET error_kind = 'transient'
                    WHERE row_id = '3' AND target_id = (SELECT id FROM public.embedding_targets WHERE name = 'rec_runners');
                   UPDATE public.embedding_chunks SET error_kind = 'transient'
                    WHERE row_id = '3' AND status = 'dead_letter'
                      AND target_id = (SELECT id FROM public.embedding_targets WHERE name = 'rec_runners')`);
    const healed = recording(8);
    provider = healed.provider;
    await app.harness.invokeCron("embeddings-recovery");
    const runs = mine(await app.harness.runUntilIdle({ maxCalls: 5000 }));
    expect(runs.filter((r) => r.status !== "completed")).toEqual([]);
    expect(runs.find((r) => r.fnId === "embeddings-recovery-target")?.output).toMatchObject({ requeued: 1 });
    expect(healed.inputs.length).toBeGreaterThan(0);
    for (const input of healed.inputs) expect(input).toContain("FLAKY");
    expect(await docState()).toEqual({
      "1": "completed",
      "2": "completed",
      "3": "completed",
      "4": "completed",
    });
    const [status] = await app.store.status("rec_runners");
    expect(status).toMatchObject({ deadLetter: 0 });
  });
});

describe("chunk mode from the CLI", () => {
  const cli = (args: string[], providerFor?: () => EmbeddingProvider) =>
    runCliInProcess(args, {
      context: (c) => testContext(db, c),
      ...(providerFor ? { providerFor } : {}),
    });

  it("targets add --chunks, run, status with documents and chunks, retry --chunk", async () => {
    const docs = [transcript(110, 30), transcript(111, 12)];
    docs[1]![4] = "Speaker 2: A BROKEN passage the provider rejects.";
    await createRecordings(db, "rec_cli", docs);
    const add = await cli([
      "targets",
      "add",
      "rec_cli",
      "--table",
      "public.rec_cli",
      "--id",
      "id",
      "--content",
      "body",
      "--chunks",
      "public.rec_cli_chunks",
      "--chunk-tokens",
      "64",
      "--chunk-overlap",
      "0",
      "--provider",
      "local",
      "--dimensions",
      "8",
      "--json",
    ]);
    expect(add.code).toBe(0);
    expect(add.json()).toMatchObject({ chunks: { table: "public.rec_cli_chunks", tokens: 64, overlap: 0 } });
    expect(
      (
        await cli([
          "targets",
          "add",
          "rec_cli",
          "--table",
          "public.rec_cli",
          "--id",
          "id",
          "--content",
          "body",
          "--chunks",
          "public.rec_cli_chunks",
          "--chunk-tokens",
          "-1",
          "--provider",
          "local",
        ])
      ).code,
    ).toBe(2);

    const poisoned = countingProvider(8, { poison: "BROKEN" });
    const ran = await cli(["run", "rec_cli", "--batch-size", "10"], () => poisoned.provider);
    // The job completes; the document whose chunk was rejected is counted failed, with its reason.
    expect(ran.code).toBe(0);
    expect(ran.out).toMatch(/failed 1/);
    const status = await cli(["status", "rec_cli"]);
    expect(status.out).toMatch(/documents/);
    expect(status.out).toMatch(/chunks\s+\d+ stored in public\.rec_cli_chunks/);
    const json = (await cli(["status", "rec_cli", "--json"])).json() as {
      targets: { chunks: { deadLetter: number } }[];
    };
    expect(json.targets[0]!.chunks.deadLetter).toBe(1);
    const [dead] = await db.query<{ chunk_index: number }>(
      `SELECT c.chunk_index FROM public.embedding_chunks c JOIN public.embedding_targets t ON t.id = c.target_id
        WHERE t.name = 'rec_cli' AND c.status = 'dead_letter'`,
    );

    expect((await cli(["retry", "rec_cli", "--row", "2", "--chunk", "x"])).code).toBe(2);
    const retry = await cli([
      "retry",
      "rec_cli",
      "--row",
      "2",
      "--chunk",
      String(dead!.chunk_index),
      "--json",
    ]);
    expect(retry.code).toBe(0);
    expect(retry.json()).toMatchObject({ requeued: 1 });
    const fixed = recording(8);
    const rerun = await cli(["run", "rec_cli"], () => fixed.provider);
    expect(rerun.err).not.toMatch(/error/);
    expect(rerun.code).toBe(0);
    expect(fixed.inputs).toEqual([expect.stringContaining("BROKEN")]);
    const after = (await cli(["status", "rec_cli", "--json"])).json() as {
      targets: { completed: number; deadLetter: number; chunks: { deadLetter: number } }[];
    };
    expect(after.targets[0]).toMatchObject({ completed: 2, deadLetter: 0, chunks: { deadLetter: 0 } });
  });
});
