import { describe, expect, it } from "vitest";
import { runTarget } from "../src/lib/core/runner.js";
import { LOCAL_MODEL } from "../src/lib/providers/local.js";
import { countingProvider, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * One vector per content, not per row: rows whose content another row of the target already has
 * get its vector copied in SQL, with no provider call, and the saving is counted.
 */

const db = useTestDatabase("reuse");

async function templated(table: string, rows: number, distinct: number) {
  await db.exec(`CREATE TABLE public.${table} (id bigint PRIMARY KEY, body text NOT NULL, embedding real[])`);
  await db.exec(`INSERT INTO public.${table} (id, body)
    SELECT g, 'Template answer number ' || (g % ${distinct}) || ': restart the worker and check the logs.'
      FROM generate_series(1, ${rows}) g`);
  return db.store.registerTarget({
    name: table,
    table: `public.${table}`,
    idColumn: "id",
    contentColumns: ["body"],
    embeddingColumn: "embedding",
    provider: "local",
    model: LOCAL_MODEL,
    dimensions: 8,
  });
}

describe("identical content embedded once per target", () => {
  it("copies the vector of a row with the same content and model, and counts the rows reused", async () => {
    await templated("reuse_docs", 200, 10);
    const counting = countingProvider(8);
    const s = await runTarget(
      { store: db.store, provider: counting.provider },
      { target: "reuse_docs", batchSize: 10, parallelism: 1 },
    );
    expect(s.job.status).toBe("completed");
    expect(new Set(counting.seen).size).toBe(10);
    // Each content reaches the provider once: repeats in a batch are sent once, later batches find
    // a donor for every row.
    expect(counting.seen.length).toBe(10);
    expect(s.job.itemsProcessed + s.job.itemsSkipped).toBe(200);
    expect(s.job.tokens).toBeGreaterThan(0);
    expect(s.job.itemsSkipped).toBe(200 - counting.seen.length);
    expect(s.reused).toBe(190);
    expect(
      await scalar<number>(db, "SELECT count(*)::int FROM public.reuse_docs WHERE embedding IS NOT NULL"),
    ).toBe(200);
    // Same content, same vector: one vector per distinct body.
    expect(
      await scalar<number>(
        db,
        `SELECT count(*)::int FROM (SELECT body FROM public.reuse_docs GROUP BY body
          HAVING count(DISTINCT embedding::text) <> 1) AS x`,
      ),
    ).toBe(0);
    expect(
      await scalar<number>(
        db,
        `SELECT count(*)::int FROM embedding_items i JOIN embedding_targets t ON t.id = i.target_id
          WHERE t.name = 'reuse_docs' AND i.status = 'completed' AND i.content_hash IS NOT NULL`,
      ),
    ).toBe(200);
  });

  it("never copies from a donor whose content changed since, nor onto a row edited meanwhile", async () => {
    await templated("reuse_edit", 4, 2);
    const first = countingProvider(8);
    await runTarget(
      { store: db.store, provider: first.provider },
      { target: "reuse_edit", batchSize: 10, parallelism: 1 },
    );
    // Row 2 and row 4 share content. Change row 2 behind the triggers' back (its state still says
    // completed with the old hash), then queue row 4 again: the donor no longer holds that content.
    await db.exec("ALTER TABLE public.reuse_edit DISABLE TRIGGER USER");
    await db.exec(
      "UPDATE public.reuse_edit SET body = 'something else entirely', embedding = '{0,0,0,0,0,0,0,1}' WHERE id = 2",
    );
    await db.exec("ALTER TABLE public.reuse_edit ENABLE TRIGGER USER");
    await db.exec("UPDATE public.reuse_edit SET embedding = NULL WHERE id = 4");
    await db.store.markPending("reuse_edit", ["4"]);
    const again = countingProvider(8);
    await runTarget(
      { store: db.store, provider: again.provider },
      { target: "reuse_edit", batchSize: 10, parallelism: 1 },
    );
    // Row 4's content had only one other holder, row 2, which changed: it went to the provider.
    expect(again.seen).toEqual([expect.stringContaining("Template answer number 0")]);
    const [r4] = await db.query<{ embedding: number[] }>(
      "SELECT embedding FROM public.reuse_edit WHERE id = 4",
    );
    expect(r4!.embedding.slice(-1)[0]).not.toBe(1);
  });
});
