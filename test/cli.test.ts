import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runCli as cli, spawnCli } from "./support/cli.js";
import { createDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/** The `embeddings` CLI as a user runs it: a real child process, real databases, exit codes. */

const db = useTestDatabase("cli");

beforeAll(async () => {
  await createDocuments(db, { table: "cli_docs", rows: 250 });
});

describe("embeddings CLI", () => {
  it("registers a target, runs it to completion, and reports status as stable JSON", async () => {
    const env = { DATABASE_URL: db.url };
    const add = await cli(
      [
        "targets",
        "add",
        "cli_docs",
        "--table",
        "public.cli_docs",
        "--id",
        "id",
        "--content",
        "title,body",
        "--embedding",
        "embedding",
        "--provider",
        "local",
        "--dimensions",
        "16",
      ],
      env,
    );
    expect(add.stderr).toBe("");
    expect(add).toMatchObject({ code: 0, stdout: expect.stringContaining("registered cli_docs") });

    const r = await cli(["run", "cli_docs", "--batch-size", "50", "--json"], env);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).job).toMatchObject({ status: "completed", itemsProcessed: 250 });
    expect(await scalar(db, "SELECT count(*)::int FROM cli_docs WHERE array_length(embedding, 1) = 16")).toBe(
      250,
    );

    const again = await cli(["run", "cli_docs", "--json"], env);
    expect(JSON.parse(again.stdout).job).toMatchObject({ status: "completed", itemsProcessed: 0, tokens: 0 });

    const status = await cli(["status", "--json"], env);
    const parsed = JSON.parse(status.stdout);
    expect(parsed.targets).toEqual([
      expect.objectContaining({ target: "cli_docs", total: 250, embedded: 250, coverage: 100 }),
    ]);
    expect(parsed.health.level).toBe("healthy");

    const list = await cli(["targets", "list"], env);
    expect(list.stdout).toContain("cli_docs");
  });

  it("Ctrl-C finishes the batch in flight, releases every lease, and a rerun resumes where it stopped", async () => {
    await createDocuments(db, { table: "sigint_docs", rows: 12_000 });
    const env = { DATABASE_URL: db.url };
    await cli(
      [
        "targets",
        "add",
        "sigint_docs",
        "--table",
        "public.sigint_docs",
        "--id",
        "id",
        "--content",
        "title,body",
        "--embedding",
        "embedding",
        "--dimensions",
        "256",
      ],
      env,
    );
    const run = spawnCli(["run", "sigint_docs", "--batch-size", "20", "--parallelism", "1", "--json"], env);
    // Interrupt once rows are being written, however long the process takes to get there.
    while (
      (await scalar<number>(db, "SELECT count(*)::int FROM sigint_docs WHERE embedding IS NOT NULL")) === 0
    ) {
      if (run.child.exitCode !== null) throw new Error(`run exited before writing a row: ${run.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    run.child.kill("SIGINT");
    const { code, stdout } = await run.exited;
    expect(code).toBe(130);
    expect(JSON.parse(stdout).job).toMatchObject({ status: "cancelled" });
    const [s] = (await db.call("embedding_status", { p_target: "sigint_docs" })) as {
      processing: number;
      embedded: number;
    }[];
    expect(s!.processing).toBe(0);
    expect(s!.embedded).toBeGreaterThan(0);
    expect(s!.embedded).toBeLessThan(12_000);
    const rerun = await cli(
      ["run", "sigint_docs", "--batch-size", "500", "--parallelism", "2", "--json"],
      env,
    );
    expect(JSON.parse(rerun.stdout).job).toMatchObject({
      status: "completed",
      itemsProcessed: 12_000 - s!.embedded,
    });
    expect(await scalar(db, "SELECT count(*)::int FROM sigint_docs WHERE embedding IS NOT NULL")).toBe(
      12_000,
    );
  });

  it("answers bad input with exit code 2 and a message naming the problem and the fix", async () => {
    const env = { DATABASE_URL: db.url };
    const missing = await cli(
      [
        "targets",
        "add",
        "x",
        "--table",
        "public.nope",
        "--id",
        "id",
        "--content",
        "t",
        "--embedding",
        "e",
        "--dimensions",
        "8",
      ],
      env,
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/table public.nope does not exist[\s\S]*fix:/);
    const unknown = await cli(["run", "no_such_target"], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown target "no_such_target"/);
    const flags = await cli(["run", "cli_docs", "--batch-size", "0"], env);
    expect(flags.code).not.toBe(0);
    expect(flags.stderr).toMatch(/--batch-size must be a whole number/);
  });

  it("fails fast with exit code 3 on bad configuration, listing every problem without echoing secrets", async () => {
    const r = await cli(["status"], {
      SUPABASE_URL: "not a url",
      OPENAI_BASE_URL: "also bad",
      EMBEDDINGS_BATCH_SIZE: "0",
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/SUPABASE_URL/);
    expect(r.stderr).toMatch(/OPENAI_BASE_URL/);
    expect(r.stderr).toMatch(/EMBEDDINGS_BATCH_SIZE/);
  });

  it("the demo runs on the embedded default, and a second run embeds nothing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "embeddings-demo-"));
    try {
      const first = await cli(["demo", "--rows", "400", "--json"], { EMBEDDINGS_DATA_DIR: dir });
      expect(first.code).toBe(0);
      const a = JSON.parse(first.stdout);
      expect(a).toMatchObject({
        rowsCreated: 400,
        embedded: 400,
        coverage: 100,
        database: expect.stringContaining("pglite"),
      });
      expect(a.neighbours).toHaveLength(5);
      expect(a.neighbours[0].title).toMatch(/edge functions/);
      const second = await cli(["demo", "--rows", "400", "--json"], { EMBEDDINGS_DATA_DIR: dir });
      expect(JSON.parse(second.stdout)).toMatchObject({
        rowsCreated: 0,
        embedded: 0,
        tokens: 0,
        coverage: 100,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
