import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { processBatch } from "../src/lib/core/batch.js";
import { loadMigrations, MIGRATIONS_DIR } from "../src/lib/db/migrate.js";
import { createPostgresApi, type PostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { withAdmin } from "./support/pg-admin.js";
import { type Cluster, startCluster } from "./support/pg-cluster.js";
import { SUPABASE_DEFAULTS_SQL, SUPABASE_ROLES_SQL } from "./support/supabase-roles.js";

/**
 * The SQL contract on the oldest supported server: Debian's PostgreSQL 15, migrated the way a user
 * without this tool would do it: plain `psql -f`, file by file, in order.
 */

const BIN = "/usr/lib/postgresql/15/bin";
const available = existsSync(join(BIN, "postgres")) && existsSync("/usr/bin/psql");
const exec = promisify(execFile);

let cluster: Cluster | undefined;
let api: PostgresApi | undefined;

beforeAll(async () => {
  if (!available) return;
  cluster = await startCluster({ binDir: BIN, prefix: "embeddings-pg15-" });
  const url = new URL(cluster.adminUrl);
  // A Supabase project's roles and default privileges exist before any migration of ours runs.
  await withAdmin(cluster.adminUrl, async (c) => {
    await c.query(SUPABASE_ROLES_SQL);
    await c.query(SUPABASE_DEFAULTS_SQL);
  });
  for (const m of await loadMigrations()) {
    await exec(
      "psql",
      ["-h", "127.0.0.1", "-p", String(cluster.port), "-U", "postgres", "-d", "postgres"].concat([
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-f",
        join(MIGRATIONS_DIR, `${m.version}_${m.name}.sql`),
      ]),
      { env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) } },
    );
  }
  api = createPostgresApi(cluster.adminUrl);
});

afterAll(async () => {
  await api?.close();
  await cluster?.stop();
});

describe.skipIf(!available)("PostgreSQL 15 (Debian), migrated with plain psql", () => {
  it("records every migration and serves the whole batch contract", async () => {
    const store = new EmbeddingStore(api!);
    const version = await store.schemaVersion();
    expect(version.server).toMatch(/^15\./);
    expect(version.version).toBe((await loadMigrations()).at(-1)!.version);

    await createDocuments(api!, { table: "pg15_docs", rows: 50, embeddingType: "double precision[]" });
    const target = await registerDocuments(store, { name: "pg15_docs", table: "pg15_docs", dimensions: 8 });
    expect(target.embeddingKind).toBe("double precision[]");
    await store.enqueue("pg15_docs", null, 1000);
    const { provider } = countingProvider(8);
    const r = await processBatch({ store, provider }, { target, workerId: "w", batchSize: 100 });
    expect(r).toMatchObject({ processed: 50, complete: true });
    expect(
      await scalar(api!, "SELECT count(*)::int FROM pg15_docs WHERE array_length(embedding, 1) = 8"),
    ).toBe(50);
  });

  it("keeps the user's table writable and the service role inside its rights", async () => {
    const store = new EmbeddingStore(api!);
    const asService = createPostgresApi({
      connectionString: cluster!.adminUrl,
      options: "-c role=service_role",
    });
    try {
      await api!.exec(`
        CREATE SCHEMA private;
        CREATE TABLE private.secrets (id bigint PRIMARY KEY, body text NOT NULL, embedding real[]);
        REVOKE ALL ON SCHEMA private FROM PUBLIC, service_role;`);
      const refused = await new EmbeddingStore(asService)
        .registerTarget({
          name: "pg15_secret",
          table: "private.secrets",
          idColumn: "id",
          contentColumns: ["body"],
          embeddingColumn: "embedding",
          provider: "local",
          model: "local-ngram-v1",
          dimensions: 8,
        })
        .catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: "42501" });
      const impure = await store
        .registerTarget({
          name: "pg15_impure",
          table: "public.pg15_docs",
          idColumn: "id",
          contentExpression: "title || pg_read_file('/etc/hostname')",
          embeddingColumn: "embedding",
          provider: "local",
          model: "local-ngram-v1",
          dimensions: 8,
        })
        .catch((e: unknown) => e);
      expect(impure).toMatchObject({ code: "42501", message: expect.stringMatching(/pg_read_file/) });
      expect(
        (await asService.query("DELETE FROM embedding_items").catch((e: unknown) => e)) as object,
      ).toMatchObject({
        code: "42501",
      });

      await api!.exec("ALTER TABLE pg15_docs RENAME TO pg15_docs_renamed");
      await store.removeTarget("pg15_docs");
      await api!.exec("INSERT INTO pg15_docs_renamed (title, body, author) VALUES ('t', 'b', 'a')");
      expect(
        await scalar(
          api!,
          "SELECT count(*)::int FROM pg_trigger WHERE tgrelid = 'pg15_docs_renamed'::regclass AND NOT tgisinternal",
        ),
      ).toBe(0);
    } finally {
      await asService.close();
    }
  });
});
