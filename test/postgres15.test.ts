import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadMigrations, MIGRATIONS_DIR } from "../src/lib/db/migrate.js";
import { createPostgresApi, type PostgresApi } from "../src/lib/db/postgres.js";
import { processBatch } from "../src/lib/pipeline.js";
import { EmbeddingStore } from "../src/lib/store.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";

/**
 * The SQL contract on the oldest supported server: Debian's PostgreSQL 15, migrated the way a user
 * without this tool would do it: plain `psql -f`, file by file, in order.
 */

const BIN = "/usr/lib/postgresql/15/bin";
const available = existsSync(join(BIN, "postgres")) && existsSync("/usr/bin/psql");
const exec = promisify(execFile);
const asPostgres = (cmd: string, args: string[]) => exec("runuser", ["-u", "postgres", "--", cmd, ...args]);

let dir = "";
let port = 0;
let api: PostgresApi | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

beforeAll(async () => {
  if (!available) return;
  dir = await mkdtemp(join(tmpdir(), "embeddings-pg15-"));
  await chmod(dir, 0o777);
  port = await freePort();
  await asPostgres(`${BIN}/initdb`, [
    "-D",
    `${dir}/data`,
    "-U",
    "postgres",
    "--auth=trust",
    "-E",
    "UTF8",
    "--no-sync",
  ]);
  await asPostgres(`${BIN}/pg_ctl`, [
    "-D",
    `${dir}/data`,
    "-l",
    `${dir}/log`,
    "-w",
    "-o",
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
    "start",
  ]);
  for (const m of await loadMigrations()) {
    await exec("psql", [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-U",
      "postgres",
      "-d",
      "postgres",
      "-v",
      "ON_ERROR_STOP=1",
      "-q",
      "-f",
      join(MIGRATIONS_DIR, `${m.version}_${m.name}.sql`),
    ]);
  }
  api = createPostgresApi(`postgres://postgres@127.0.0.1:${port}/postgres`);
}, 120_000);

afterAll(async () => {
  await api?.close();
  if (dir) {
    await asPostgres(`${BIN}/pg_ctl`, ["-D", `${dir}/data`, "-m", "immediate", "stop"]).catch(
      () => undefined,
    );
    await rm(dir, { recursive: true, force: true });
  }
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
