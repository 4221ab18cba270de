import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runTarget } from "../src/lib/core/runner.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { createSupabaseApi } from "../src/lib/db/supabase.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { type PostgrestGateway, startPostgrestGateway } from "./support/postgrest-gateway.js";

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
