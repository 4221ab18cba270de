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
import { type Cluster, startCluster } from "./support/pg-cluster.js";

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
});
