import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PGliteApi } from "../src/lib/db/pglite.js";
import { buildCall, createPostgresApi, type PostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { encodeFloat4Array, formatVector, parseVector, VectorList } from "../src/lib/db/vector.js";
import { createDocuments, registerDocuments } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { createTestPGlite } from "./support/pglite.js";

/**
 * Issue 15: on the direct transport vectors reach PostgreSQL as one binary float4 array per write
 * (no decimal text to format or parse), and every check of the SQL API still holds. PGlite and
 * supabase-js keep sending text literals. pgvector columns are exercised on PGlite served over the
 * PostgreSQL wire protocol (pglite-socket), so node-postgres sends the same binary parameter to a
 * server that has pgvector; the PG15/18 test servers have no pgvector package.
 */

/** Random float32 bit patterns: every exponent, subnormals, both zeros; NaN and infinities skipped. */
function randomVector(dims: number, seed: number): Float32Array {
  const out = new Float32Array(dims);
  const bits = new DataView(new ArrayBuffer(4));
  let x = seed | 1;
  for (let i = 0; i < dims; ) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bits.setUint32(0, x >>> 0);
    const f = bits.getFloat32(0);
    if (Number.isFinite(f)) out[i++] = f;
  }
  return out;
}

/** Unit-length-ish components like a provider's (pgvector's halfvec cannot hold huge values). */
function embeddingLike(dims: number, seed: number): Float32Array {
  return Float32Array.from({ length: dims }, (_, j) => Math.sin(seed * 131 + j * 7.3) / 20);
}

const sameBits = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length === b.length &&
  Array.from(a).every((v, i) => Object.is(Math.fround(b[i]!), v) || (v === 0 && b[i] === 0));

async function claimAll(store: EmbeddingStore, target: string, worker: string, n: number) {
  await store.enqueue(target, null, n + 10);
  return (await store.claim(target, worker, n, 300)).items;
}

describe("the direct transport's binary vectors", () => {
  it("are one binary real[] parameter and a list of lengths, not text literals", () => {
    const vectors = new VectorList([Float32Array.of(0.5, -1.25), Float32Array.of(3)]);
    const binary = buildCall(
      "embedding_write",
      { p_target: "t", p_vectors: vectors },
      { binaryVectors: true },
    );
    expect(binary.sql).toBe(
      `SELECT public."embedding_write"("p_target" => $1, "p_vectors_f4" => $2, "p_vectors_dims" => $3) AS result`,
    );
    const data = binary.values[1] as Buffer;
    expect(Buffer.isBuffer(data)).toBe(true);
    // ndim 1, no nulls, float4 (oid 700), 3 elements from 1, then (length 4, big-endian float) each.
    expect([0, 4, 8, 12, 16].map((o) => data.readInt32BE(o))).toEqual([1, 0, 700, 3, 1]);
    expect([0, 1, 2].map((i) => data.readFloatBE(24 + i * 8))).toEqual([0.5, -1.25, 3]);
    expect(binary.values[2]).toBe(`{"2","1"}`);
    // PGlite (and PostgREST, through toJSON) get the text literals.
    const text = buildCall("embedding_write", { p_target: "t", p_vectors: vectors });
    expect(text.sql).toContain(`"p_vectors" => $2`);
    expect(text.values[1]).toBe(`{"[0.5,-1.25]","[3]"}`);
    expect(JSON.stringify({ v: vectors })).toBe(`{"v":["[0.5,-1.25]","[3]"]}`);
  });

  it("refuse a NaN or an infinity before anything is sent", () => {
    expect(() => encodeFloat4Array([Float32Array.of(1, Number.NaN)])).toThrow(
      /component 1 is not a finite number/,
    );
    expect(() => encodeFloat4Array([[Number.POSITIVE_INFINITY]])).toThrow(RangeError);
  });
});

describe("binary writes on PostgreSQL (real[] columns)", () => {
  const db = useTestDatabase("binary_vectors");
  const DIMS = 1536;

  beforeAll(async () => {
    await createDocuments(db, { rows: 40 });
    await registerDocuments(db.store, { dimensions: DIMS });
  });

  it("store every float32 bit for bit at 1,536 dimensions, as the text path does", async () => {
    const items = await claimAll(db.store, "docs", "w-bits", 20);
    expect(items).toHaveLength(20);
    const vectors = items.map((_, i) => randomVector(DIMS, 1000 + i));
    const res = await db.store.write(
      "docs",
      "w-bits",
      items.map((it, i) => ({ id: it.id, hash: it.hash, vector: vectors[i]! })),
    );
    expect(res.written).toBe(20);
    // extra_float_digits 1 (the default since PostgreSQL 12): the shortest text that reads back exactly.
    const rows = await db.query<{ id: string; v: string }>(
      "SELECT id::text AS id, embedding::text AS v FROM public.documents WHERE id = ANY ($1::bigint[])",
      [items.map((i) => i.id)],
    );
    const byId = new Map(rows.map((r) => [r.id, parseVector(r.v)]));
    const mismatched = items.filter((it, i) => !sameBits(vectors[i]!, byId.get(it.id) ?? []));
    expect(mismatched).toEqual([]);
  });

  it("refuse a batch with a vector of the wrong size, naming both sizes and the row, and write none of it", async () => {
    const items = await claimAll(db.store, "docs", "w-dims", 5);
    const write = db.store.write(
      "docs",
      "w-dims",
      items.map((it, i) => ({ id: it.id, hash: it.hash, vector: embeddingLike(i === 3 ? 384 : DIMS, i) })),
    );
    await expect(write).rejects.toMatchObject({
      code: "22000",
      message: expect.stringContaining(`expected 1536 dimensions, got 384 (row ${items[3]!.id})`),
      hint: expect.stringContaining("1536"),
    });
    const stored = await db.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM public.documents WHERE id = ANY ($1::bigint[]) AND embedding IS NOT NULL",
      [items.map((i) => i.id)],
    );
    expect(stored[0]!.n).toBe("0");
  });

  it("refuse lengths that do not add up to the floats sent, and text and binary together", async () => {
    const items = await claimAll(db.store, "docs", "w-len", 2);
    const { data } = encodeFloat4Array(items.map((_, i) => embeddingLike(DIMS, i)));
    const call = (extra: string, params: unknown[]) =>
      db.api.pool.query(
        `SELECT public.embedding_write(p_target => 'docs', p_worker => 'w-len', p_ids => $1, p_hashes => $2${extra})`,
        [`{${items.map((i) => i.id).join(",")}}`, `{${items.map((i) => i.hash).join(",")}}`, ...params],
      );
    await expect(
      call(", p_vectors_f4 => $3, p_vectors_dims => $4", [data, `{${DIMS},${DIMS - 1}}`]),
    ).rejects.toMatchObject({
      code: "22023",
      message: `write batch vector lengths add up to ${2 * DIMS - 1}, but ${2 * DIMS} floats were sent`,
    });
    await expect(
      call(", p_vectors_f4 => $3, p_vectors_dims => $4, p_vectors => $5", [
        data,
        `{${DIMS},${DIMS}}`,
        "{[1],[2]}",
      ]),
    ).rejects.toMatchObject({ code: "22023", message: expect.stringContaining("as text and as binary") });
    await expect(
      call(", p_vectors_f4 => $3, p_vectors_dims => $4", [data, `{${DIMS}}`]),
    ).rejects.toMatchObject({
      code: "22023",
      message: expect.stringContaining("differ in length"),
    });
  });

  it("still accept text vectors by name, as a worker of the previous release sends them during a deploy", async () => {
    const items = await claimAll(db.store, "docs", "w-old", 3);
    const vectors = items.map((_, i) => embeddingLike(DIMS, 50 + i));
    const res = await db.api.call<{ written: number; progress: unknown }>("embedding_write_counted", {
      p_target: "docs",
      p_worker: "w-old",
      p_ids: items.map((i) => i.id),
      p_hashes: items.map((i) => i.hash),
      p_vectors: vectors.map((v) => formatVector(v)),
      p_tokens: items.map(() => 1),
      p_truncated: items.map(() => "false"),
      p_progress: { history_target: "docs" },
    });
    expect(res.written).toBe(3);
  });
});

describe("binary writes to pgvector columns (PGlite over the wire protocol)", () => {
  let pglite: PGliteApi;
  let server: PGLiteSocketServer;
  let api: PostgresApi;
  let store: EmbeddingStore;
  const DIMS = 1536;

  beforeAll(async () => {
    pglite = await createTestPGlite();
    await createDocuments(pglite, { table: "vec_docs", rows: 12, embeddingType: `vector(${DIMS})` });
    await createDocuments(pglite, { table: "half_docs", rows: 12, embeddingType: `halfvec(${DIMS})` });
    server = new PGLiteSocketServer({ db: pglite.pglite, port: 0, host: "127.0.0.1" });
    await server.start();
    // pglite-socket serves one connection at a time; one pooled connection is what it can take.
    api = createPostgresApi({
      connectionString: `postgres://postgres@${server.getServerConn()}/postgres`,
      poolSize: 1,
    });
    store = new EmbeddingStore(api);
    await registerDocuments(store, { name: "vec", table: "vec_docs", dimensions: DIMS });
    await registerDocuments(store, { name: "half", table: "half_docs", dimensions: DIMS });
  }, 60_000);

  afterAll(async () => {
    await api?.close();
    await server?.stop();
    await pglite?.close();
  });

  it("store vector(1536) exactly and halfvec(1536) as pgvector rounds it", async () => {
    for (const [target, table] of [
      ["vec", "vec_docs"],
      ["half", "half_docs"],
    ] as const) {
      const items = await claimAll(store, target, "w", 12);
      const vectors = items.map((_, i) => embeddingLike(DIMS, i));
      const res = await store.write(
        target,
        "w",
        items.map((it, i) => ({ id: it.id, hash: it.hash, vector: vectors[i]! })),
      );
      expect(res.written).toBe(12);
      // What the text literal of the same vector casts to: the binary path must store the same value.
      const rows = await api.query<{ id: string; same: boolean }>(
        `SELECT d.id::text AS id, d.embedding = v.lit::${target === "vec" ? "vector" : "halfvec"}(${DIMS}) AS same
           FROM public.${table} d JOIN unnest($1::bigint[], $2::text[]) AS v(id, lit) ON v.id = d.id`,
        [items.map((i) => i.id), vectors.map((v) => formatVector(v))],
      );
      expect(rows.filter((r) => !r.same)).toEqual([]);
      expect(rows).toHaveLength(12);
    }
    const exact = await api.query<{ v: string }>(
      "SELECT embedding::text AS v FROM public.vec_docs ORDER BY id LIMIT 1",
    );
    expect(sameBits(embeddingLike(DIMS, 0), parseVector(exact[0]!.v))).toBe(true);
  });

  it("refuse a wrong-size vector for a vector column with both sizes", async () => {
    await pglite.exec("UPDATE public.vec_docs SET title = title || ' (edited)' WHERE id = 1");
    const items = await claimAll(store, "vec", "w2", 1);
    expect(items).toHaveLength(1);
    await expect(
      store.write("vec", "w2", [{ id: items[0]!.id, hash: items[0]!.hash, vector: embeddingLike(384, 1) }]),
    ).rejects.toMatchObject({
      code: "22000",
      message: expect.stringContaining("expected 1536 dimensions, got 384"),
    });
  });
});
