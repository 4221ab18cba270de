import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { describePostgresUrl, openDatabase } from "../src/lib/db/index.js";
import { loadMigrations } from "../src/lib/db/migrate.js";
import type { PGliteApi } from "../src/lib/db/pglite.js";
import { createPostgresApi, SqlApiError } from "../src/lib/db/postgres.js";
import { createSupabaseApi } from "../src/lib/db/supabase.js";
import type { SqlApi } from "../src/lib/db/types.js";
import { isRetryable } from "../src/lib/errors.js";
import { useTestDatabase } from "./support/pg-server.js";
import { createTestPGlite } from "./support/pglite.js";
import { type PostgrestGateway, startPostgrestGateway } from "./support/postgrest-gateway.js";

/** Test-only functions, created in both databases; the real API lives in supabase/migrations. */
const FIXTURES = `
CREATE FUNCTION public.transport_echo(p_ids text[], p_n integer, p_obj jsonb,
                                      p_nums real[] DEFAULT NULL, p_flag boolean DEFAULT NULL,
                                      p_label text DEFAULT 'default label')
RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('ids', to_jsonb(p_ids), 'count', cardinality(p_ids),
    'nulls', (SELECT count(*) FROM unnest(p_ids) AS x WHERE x IS NULL),
    'lengths', (SELECT jsonb_agg(length(x) ORDER BY o) FROM unnest(p_ids) WITH ORDINALITY AS u(x, o)),
    'n', p_n, 'obj', p_obj, 'obj_type', jsonb_typeof(p_obj), 'nums', to_jsonb(p_nums),
    'flag', p_flag, 'label', p_label)
$$;
CREATE FUNCTION public.transport_keywords("limit" integer, "order" text)
RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('limit', "limit", 'order', "order") $$;
CREATE FUNCTION public.transport_null() RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION public.transport_fail(p_code text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'failing with %', p_code USING ERRCODE = p_code, DETAIL = 'some detail', HINT = 'some hint';
END $$;
`;

/** Everything an array literal or a JSON encoder could get wrong. */
const NASTY = [
  "plain",
  "a,b",
  'q"uote',
  "{brace}",
  "}{",
  "back\\slash",
  '\\"',
  "NULL",
  "null",
  "",
  " padded ",
  "new\nline\ttab",
  "ünïcødé ✓ 🚀",
  "O'Reilly",
  "$1",
  "); DROP TABLE x; --",
];

const KEY = `sb-service-role-${randomBytes(16).toString("hex")}`;

const server = useTestDatabase("db_transports");
let lite: PGliteApi;
let gateway: PostgrestGateway;
let supabase: SqlApi;
let transports: [string, SqlApi][];

beforeAll(async () => {
  lite = await createTestPGlite();
  await Promise.all([server.api.exec(FIXTURES), lite.exec(FIXTURES)]);
  gateway = await startPostgrestGateway({ db: server.api, serviceRoleKey: KEY });
  supabase = createSupabaseApi({ url: gateway.url, serviceRoleKey: KEY });
  transports = [
    ["postgres", server.api],
    ["supabase", supabase],
    ["pglite", lite],
  ];
});

afterAll(async () => {
  await supabase?.close();
  await gateway?.close();
  await lite?.close();
});

async function onEach<T>(fn: (api: SqlApi) => Promise<T>): Promise<Record<string, T>> {
  const results: Record<string, T> = {};
  for (const [name, api] of transports) results[name] = await fn(api);
  return results;
}

async function failure(promise: Promise<unknown>): Promise<SqlApiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SqlApiError);
  return err as SqlApiError;
}

describe("the same SQL API call", () => {
  it("returns identical results over postgres, supabase-js and pglite", async () => {
    const args = {
      p_ids: [...NASTY, null, "last"],
      p_n: 42,
      p_obj: { text: NASTY, nested: { ok: true, n: 1.5, none: null }, list: [1, "two", null] },
      p_nums: [0.25, -1, 3e-7, 1024],
      p_flag: false,
    };
    const results = await onEach((api) => api.call("transport_echo", args));

    expect(results.postgres).toEqual({
      ids: [...NASTY, null, "last"],
      count: NASTY.length + 2,
      nulls: 1,
      lengths: [...NASTY.map((s) => [...s].length), null, 4],
      n: 42,
      obj: args.p_obj,
      obj_type: "object",
      nums: [0.25, -1, 3e-7, 1024],
      flag: false,
      label: "default label",
    });
    expect(results.supabase).toEqual(results.postgres);
    expect(results.pglite).toEqual(results.postgres);
  });

  it("passes empty arrays, SQL NULLs and omitted (undefined) arguments the same way", async () => {
    const results = await onEach((api) =>
      api.call("transport_echo", { p_ids: [], p_n: null, p_obj: {}, p_flag: true, p_label: undefined }),
    );
    expect(results.postgres).toMatchObject({
      ids: [],
      count: 0,
      n: null,
      obj: {},
      nums: null,
      label: "default label",
    });
    expect(results.supabase).toEqual(results.postgres);
    expect(results.pglite).toEqual(results.postgres);
  });

  it("accepts argument names that are SQL keywords", async () => {
    const results = await onEach((api) => api.call("transport_keywords", { limit: 5, order: "desc" }));
    expect(results).toEqual({
      postgres: { limit: 5, order: "desc" },
      supabase: { limit: 5, order: "desc" },
      pglite: { limit: 5, order: "desc" },
    });
  });

  it("resolves a NULL jsonb result to null", async () => {
    expect(await onEach((api) => api.call("transport_null", {}))).toEqual({
      postgres: null,
      supabase: null,
      pglite: null,
    });
  });

  it("reaches the migrated API in the server template and in the PGlite template", async () => {
    const latest = (await loadMigrations()).at(-1)?.version ?? null;
    const versions = await onEach(
      async (api) => (await api.call<{ version: string }>("embedding_schema_version", {})).version,
    );
    expect(versions).toEqual({ postgres: latest, supabase: latest, pglite: latest });
  });
});

describe("errors", () => {
  it("carry the SQLSTATE, detail and hint through each transport", async () => {
    for (const code of ["40001", "23505", "P0001", "22023"]) {
      const errors = await onEach((api) => failure(api.call("transport_fail", { p_code: code })));
      for (const [name, err] of Object.entries(errors)) {
        expect({ name, code: err.code, fn: err.fn, details: err.details, hint: err.hint }).toEqual({
          name,
          code,
          fn: "transport_fail",
          details: "some detail",
          hint: "some hint",
        });
        expect(err.message).toBe(`transport_fail: failing with ${code}`);
        expect(isRetryable(err)).toBe(code === "40001");
      }
    }
  });

  it("report a division by zero inside the function as 22012 everywhere", async () => {
    await server.api.exec(
      "CREATE FUNCTION public.transport_div(p_n integer) RETURNS jsonb LANGUAGE sql AS $$ SELECT to_jsonb(1 / p_n) $$",
    );
    await lite.exec(
      "CREATE FUNCTION public.transport_div(p_n integer) RETURNS jsonb LANGUAGE sql AS $$ SELECT to_jsonb(1 / p_n) $$",
    );
    const codes = await onEach(async (api) => (await failure(api.call("transport_div", { p_n: 0 }))).code);
    expect(codes).toEqual({ postgres: "22012", supabase: "22012", pglite: "22012" });
  });

  it("report an unreachable database as a retryable 08006", async () => {
    const down = createPostgresApi({
      connectionString: "postgres://nobody:pw@127.0.0.1:9/none",
      poolSize: 1,
    });
    const viaHttp = createSupabaseApi({ url: "http://127.0.0.1:9", serviceRoleKey: KEY });
    try {
      for (const api of [down, viaHttp]) {
        const err = await failure(api.call("transport_null", {}));
        expect(err.code).toBe("08006");
        expect(isRetryable(err)).toBe(true);
        expect(inspect(err)).not.toContain(KEY);
      }
    } finally {
      await down.close();
    }
  });
});

describe("a function or argument name with injection text", () => {
  const badNames = [
    "transport_null(); DROP TABLE x; --",
    "Transport_Null",
    "public.transport_null",
    "x y",
    "",
  ];

  it("is refused before any SQL or HTTP request is sent", async () => {
    const fetchSpy = vi.fn(fetch);
    const spiedSupabase = createSupabaseApi({ url: gateway.url, serviceRoleKey: KEY, fetch: fetchSpy });
    const poolQuery = vi.spyOn(server.api.pool, "query");
    const liteQuery = vi.spyOn(lite.pglite, "query");
    try {
      for (const api of [server.api, spiedSupabase, lite]) {
        for (const name of badNames) {
          const err = await failure(api.call(name, {}));
          expect(err.code).toBe("42602");
          expect(isRetryable(err)).toBe(false);
        }
        const err = await failure(api.call("transport_echo", { "p_ids => NULL, p_n": [] }));
        expect(err.code).toBe("42602");
      }
      expect(poolQuery).not.toHaveBeenCalled();
      expect(liteQuery).not.toHaveBeenCalled();
      expect(fetchSpy).not.toHaveBeenCalled();
    } finally {
      poolQuery.mockRestore();
      liteQuery.mockRestore();
    }
  });

  it("sent straight to the gateway is answered 404 like PostgREST, not run", async () => {
    const res = await fetch(`${gateway.url}/rest/v1/rpc/${encodeURIComponent(badNames[0]!)}`, {
      method: "POST",
      headers: { apikey: KEY, authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: "PGRST202" });
  });
});

describe("the service role key", () => {
  it("is required by the gateway (401 otherwise)", async () => {
    const attempts: Record<string, string>[] = [
      {},
      { apikey: KEY },
      { apikey: "wrong", authorization: "Bearer wrong" },
    ];
    for (const headers of attempts) {
      const res = await fetch(`${gateway.url}/rest/v1/rpc/transport_null`, {
        method: "POST",
        headers,
        body: "{}",
      });
      expect(res.status).toBe(401);
    }
  });

  it("never appears in an error, whatever failed", async () => {
    const wrongKey = `${KEY}-but-wrong`;
    const wrong = createSupabaseApi({ url: gateway.url, serviceRoleKey: wrongKey });
    const denied = await failure(wrong.call("transport_null", {}));
    expect(denied.code).toBe("PGRST301");
    const sqlError = await failure(supabase.call("transport_fail", { p_code: "40001" }));
    const missing = await failure(supabase.call("transport_missing", { p_x: 1 }));
    expect(missing.code).toBe("PGRST202");
    for (const err of [denied, sqlError, missing]) {
      const everything = `${String(err)} ${err.stack} ${JSON.stringify(err)} ${inspect(err, { depth: 5 })}`;
      expect(everything).not.toContain(KEY);
      expect(everything).not.toContain(wrongKey);
    }
  });
});

describe("admin access", () => {
  it("rolls back a failed script so the next statement on that connection works", async () => {
    const single = createPostgresApi({ connectionString: server.url, poolSize: 1 });
    try {
      for (const db of [single, lite]) {
        const err = await failure(db.exec("BEGIN; CREATE TABLE half_done (id int); SELECT 1/0; COMMIT;"));
        expect(err.code).toBe("22012");
        expect(await db.query("SELECT to_regclass('public.half_done') AS t")).toEqual([{ t: null }]);
      }
    } finally {
      await single.close();
    }
  });

  it("returns int8 as a number when it fits and numeric as text, on postgres and pglite alike", async () => {
    const sql =
      "SELECT 7::int8 AS small, 9007199254740993::int8 AS big, ARRAY[1, 2]::int8[] AS arr, 1.50::numeric AS num, $1::text[] AS echoed";
    const rows = await Promise.all([server.api.query(sql, [NASTY]), lite.query(sql, [NASTY])]);
    expect(rows[0]).toEqual([{ small: 7, big: 9007199254740993n, arr: [1, 2], num: "1.50", echoed: NASTY }]);
    expect(rows[1]).toEqual(rows[0]);
  });
});

describe("pglite", () => {
  it("has pgvector: a vector column can be created and ranked by cosine distance", async () => {
    await lite.exec(`
      CREATE TABLE vec_docs (id int PRIMARY KEY, v vector(3));
      INSERT INTO vec_docs VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[1,1,0]');`);
    const rows = await lite.query<{ id: number; d: number }>(
      "SELECT id, v <=> $1::real[]::vector AS d FROM vec_docs ORDER BY v <=> $1::real[]::vector",
      [[1, 0.1, 0]],
    );
    expect(rows.map((r) => r.id)).toEqual([1, 3, 2]);
    expect(rows[0]!.d).toBeCloseTo(1 - 1 / Math.sqrt(1.01), 6);
  });
});

describe("openDatabase", () => {
  it("picks postgres, then supabase, then pglite, describing each without secrets", async () => {
    const pgDb = await openDatabase({
      databaseUrl: server.url,
      supabaseUrl: gateway.url,
      supabaseServiceRoleKey: KEY,
    });
    expect(pgDb.api.kind).toBe("postgres");
    expect(pgDb.admin).toBe(pgDb.api);
    expect(pgDb.describe).toMatch(/^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/t_db_transports_/);
    await pgDb.api.close();

    const sb = await openDatabase({ supabaseUrl: gateway.url, supabaseServiceRoleKey: KEY });
    expect(sb.api.kind).toBe("supabase");
    expect(sb.admin).toBeUndefined();
    expect(sb.describe).toBe(`supabase ${gateway.url}`);
    expect(await sb.api.call("transport_null", {})).toBeNull();
    await sb.api.close();

    await expect(openDatabase({ supabaseUrl: gateway.url })).rejects.toThrow(/SUPABASE_SERVICE_ROLE_KEY/);

    const dir = await mkdtemp(join(tmpdir(), "embeddings-open-"));
    try {
      const local = await openDatabase({ dataDir: join(dir, "nested", "pglite") });
      expect(local.api.kind).toBe("pglite");
      expect(local.describe).toBe(`pglite ${join(dir, "nested", "pglite")}`);
      expect(await local.admin?.query("SELECT extname FROM pg_extension WHERE extname = 'vector'")).toEqual([
        { extname: "vector" },
      ]);
      await local.api.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("masks the password and drops query parameters when describing a URL", () => {
    expect(
      describePostgresUrl("postgresql://app:s3cret@db.example.com:6543/prod?password=x&sslmode=require"),
    ).toBe("postgresql://app:***@db.example.com:6543/prod");
    expect(describePostgresUrl("not a url s3cret")).not.toContain("s3cret");
  });
});
