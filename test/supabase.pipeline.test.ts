import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runTarget } from "../src/lib/core/runner.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { createSupabaseApi } from "../src/lib/db/supabase.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { type PostgrestGateway, startPostgrestGateway } from "./support/postgrest-gateway.js";
import { createRecordings, registerRecordings, transcript } from "./support/transcripts.js";

/**
 * The whole job over the supabase-js transport: every SQL API call goes through `supabase.rpc`
 * to a PostgREST-style gateway that runs the real SQL functions on a real PostgreSQL server.
 */

const KEY = "service-role-key-for-tests-0123456789";
const db = useTestDatabase("supabase");
let gateway: PostgrestGateway;

beforeAll(async () => {
  gateway = await startPostgrestGateway({ db: db.api, serviceRoleKey: KEY });
});
afterAll(async () => {
  await gateway?.close();
});

describe("supabase-js transport", () => {
  it("registers, backfills with parallel workers, and reports status exactly like the direct transport", async () => {
    await createDocuments(db.api, { table: "sb_docs", rows: 300 });
    const store = new EmbeddingStore(createSupabaseApi({ url: gateway.url, serviceRoleKey: KEY }));
    await registerDocuments(store, { name: "sb_docs", table: "sb_docs" });
    const { provider } = countingProvider(8);
    const summary = await runTarget(
      { store, provider },
      { target: "sb_docs", batchSize: 25, parallelism: 3 },
    );
    expect(summary.job).toMatchObject({ status: "completed", itemsTotal: 300, itemsProcessed: 300 });
    expect(
      await scalar(db.api, "SELECT count(*)::int FROM sb_docs WHERE array_length(embedding, 1) = 8"),
    ).toBe(300);
    const viaRpc = await store.status("sb_docs");
    const direct = await new EmbeddingStore(db.api).status("sb_docs");
    expect(viaRpc).toEqual(direct);
  });

  it("runs a chunked target: documents cut, chunks embedded, each document swapped in one call", async () => {
    await createRecordings(db.api, "sb_rec", [transcript(1, 80), transcript(2, 5), transcript(3, 30)]);
    const store = new EmbeddingStore(createSupabaseApi({ url: gateway.url, serviceRoleKey: KEY }));
    expect(store.api.transaction).toBeUndefined();
    // The service role may not create tables in public: it is told how to get one.
    await expect(registerRecordings(store, { name: "sb_rec", table: "sb_rec" })).rejects.toMatchObject({
      code: "42501",
      message: expect.stringContaining("may not create the chunk table public.sb_rec_chunks"),
      hint: expect.stringContaining(
        "create the table yourself (document_id, chunk_index, content, embedding)",
      ),
    });
    // As a Supabase project does it: the table comes from a migration, the service role may write it.
    await db.api.exec(`CREATE TABLE public.sb_rec_chunks (
        document_id bigint NOT NULL REFERENCES public.sb_rec (id) ON DELETE CASCADE,
        chunk_index integer NOT NULL, content text NOT NULL, embedding real[] NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (document_id, chunk_index));
      GRANT SELECT, INSERT, UPDATE, DELETE ON public.sb_rec_chunks TO service_role;`);
    expect(await registerRecordings(store, { name: "sb_rec", table: "sb_rec" })).toMatchObject({
      chunkTableCreated: false,
    });
    const { provider, seen } = countingProvider(8);
    const summary = await runTarget({ store, provider }, { target: "sb_rec", batchSize: 20, parallelism: 2 });
    expect(summary.job).toMatchObject({ status: "completed", itemsTotal: 3, itemsProcessed: 3 });
    const stored = await scalar<number>(db.api, "SELECT count(*)::int FROM sb_rec_chunks");
    expect(stored).toBeGreaterThan(40);
    expect(seen).toHaveLength(stored);
    expect(await store.status("sb_rec")).toEqual(await new EmbeddingStore(db.api).status("sb_rec"));
  });

  it("surfaces SQL errors with their SQLSTATE and hint, and a wrong key as an auth error without the key", async () => {
    const store = new EmbeddingStore(createSupabaseApi({ url: gateway.url, serviceRoleKey: KEY }));
    await expect(store.getTarget("nope")).rejects.toMatchObject({
      code: "P0002",
      message: expect.stringContaining('unknown target "nope"'),
    });
    const wrong = new EmbeddingStore(
      createSupabaseApi({ url: gateway.url, serviceRoleKey: "wrong-key-abcdef" }),
    );
    const err = await wrong.listTargets().catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect(JSON.stringify({ m: (err as Error).message, s: (err as Error).stack })).not.toContain(
      "wrong-key-abcdef",
    );
  });
});
