import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../src/cli/exit.js";
import { formatSnapshot } from "../src/cli/status-format.js";
import { TransientError } from "../src/lib/errors.js";
import { readStatus } from "../src/lib/ops/status.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import { testConfig, testContext } from "./support/app.js";
import { runCli, runCliInProcess } from "./support/cli.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * The operations verbs. In process (the verbs registered on a fresh program, with helpers that
 * capture output and exit codes) against a real database and a real local HTTP receiver standing
 * in for the Inngest event API; and a few runs of the real binary (tsx src/cli/main.ts).
 */

const db = useTestDatabase("ops_cli");
let receiver: Server;
let receiverUrl: string;
const events: { url: string; body: { name: string; data: Record<string, unknown>; id?: string }[] }[] = [];

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      events.push({ url: req.url ?? "", body: JSON.parse(body || "[]") });
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ids: [`evt-${events.length}`], status: 200 }));
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const addr = receiver.address();
  receiverUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  await createDocuments(db, { table: "cli_docs", rows: 40 });
  await registerDocuments(testContext(db, testConfig()).store, { name: "cli_docs", table: "cli_docs" });
});
afterAll(async () => {
  await new Promise((r) => receiver?.close(r));
});

async function cli(
  args: string[],
  options: { env?: Record<string, string | undefined>; providerFor?: () => EmbeddingProvider } = {},
) {
  return runCliInProcess(args, {
    env: { INNGEST_BASE_URL: receiverUrl, ...options.env },
    context: (config) => testContext(db, config),
    providerFor: options.providerFor ? () => options.providerFor!() : undefined,
  });
}

describe("backfill", () => {
  it("sends embeddings/backfill.requested with a job id chosen up front, and says how to watch it", async () => {
    const before = events.length;
    const r = await cli(["backfill", "cli_docs", "--batch-size", "50", "--parallelism", "3", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const out = r.json() as { jobId: string; eventIds: string[]; mode: string; target: string };
    expect(out).toMatchObject({
      mode: "inngest",
      target: "cli_docs",
      event: "embeddings/backfill.requested",
    });
    expect(out.eventIds).toEqual([`evt-${before + 1}`]);
    const sent = events.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.body[0]).toMatchObject({
      name: "embeddings/backfill.requested",
      id: `backfill-${out.jobId}`,
      data: { target: "cli_docs", jobId: out.jobId, batchSize: 50, parallelism: 3 },
    });
    const text = await cli(["backfill", "cli_docs"]);
    expect(text.out).toMatch(/^sent embeddings\/backfill.requested for cli_docs/);
    expect(text.out).toMatch(/watch {3}embeddings status cli_docs --watch/);
    expect(text.out).toMatch(/cancel {2}embeddings cancel [0-9a-f-]{36}/);
  });

  it("--via batch asks for the Batch API route in the event; an unknown route is a usage error", async () => {
    const before = events.length;
    const r = await cli(["backfill", "cli_docs", "--via", "batch", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    expect(events.slice(before)[0]!.body[0]).toMatchObject({
      name: "embeddings/backfill.requested",
      data: { target: "cli_docs", via: "batch" },
    });
    const bad = await cli(["backfill", "cli_docs", "--via", "carrier-pigeon"]);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.err).toMatch(/--via.*carrier-pigeon/);
    expect(events.length).toBe(before + 1);
  });

  it("refuses an unknown target before sending anything (exit 2)", async () => {
    const before = events.length;
    const r = await cli(["backfill", "nope"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/unknown target "nope"/);
    expect(r.err).toMatch(/fix: register it first/);
    expect(events.length).toBe(before);
  });

  it("exits 3 when Inngest is not configured, naming the variable and --local", async () => {
    const r = await cli(["backfill", "cli_docs"], { env: { INNGEST_DEV: undefined } });
    expect(r.code).toBe(EXIT.config);
    expect(r.err).toMatch(/INNGEST_EVENT_KEY/);
    expect(r.err).toMatch(/--local/);
  });

  it("exits 4 when Inngest cannot be reached", async () => {
    const r = await cli(["backfill", "cli_docs"], { env: { INNGEST_BASE_URL: "http://127.0.0.1:1" } });
    expect(r.code).toBe(EXIT.transient);
    expect(r.err).toMatch(/could not send the event to http:\/\/127\.0\.0\.1:1/);
  });

  it("runs in this process with --local", async () => {
    await createDocuments(db, { table: "cli_local", rows: 30 });
    await registerDocuments(testContext(db, testConfig()).store, { name: "cli_local", table: "cli_local" });
    const r = await cli(["backfill", "cli_local", "--local", "--batch-size", "10", "--json"]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.json()).toMatchObject({ mode: "local", job: { status: "completed", itemsProcessed: 30 } });
    expect(await scalar(db, "SELECT count(*)::int FROM cli_local WHERE embedding IS NOT NULL")).toBe(30);
  });

  it("exits 2 on a bad flag value", async () => {
    const r = await cli(["backfill", "cli_docs", "--batch-size", "0"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/--batch-size must be a whole number from 1 to 2048/);
  });
});

describe("retry", () => {
  it("re-queues dead letters by default, given rows with --row, and NULL-but-completed rows with --completed", async () => {
    const set = (sql: string, rows = "true") =>
      db.exec(
        `UPDATE embedding_items SET ${sql} WHERE target_id = (SELECT id FROM embedding_targets WHERE name = 'cli_docs') AND ${rows}`,
      );
    const ctx = testContext(db, testConfig());
    await ctx.store.enqueue("cli_docs", null, 1000);
    await set("status = 'dead_letter', attempts = 3, last_error = 'boom'");
    await set(
      "status = 'failed', attempts = 1, next_retry_at = now() + interval '1 hour'",
      "row_id IN ('5', '6')",
    );

    const rows = await cli(["retry", "cli_docs", "--row", "1", "--row", "2,3", "--dead-letter", "--json"]);
    expect([rows.code, rows.json()]).toEqual([
      EXIT.ok,
      { target: "cli_docs", scope: "rows", requeued: 3, invalid: [] },
    ]);
    const forced = await cli(["retry", "cli_docs", "--row", "5", "--json"]);
    expect(forced.json()).toMatchObject({ scope: "rows", requeued: 1 });
    const all = await cli(["retry", "cli_docs"]);
    expect(all.code).toBe(EXIT.ok);
    expect(all.out).toMatch(/^re-queued 35 dead-lettered rows of cli_docs/);
    const none = await cli(["retry", "cli_docs"]);
    expect(none.out).toMatch(/^nothing to retry/);

    await cli(["backfill", "cli_docs", "--local", "--json"]);
    await db.exec("UPDATE cli_docs SET embedding = NULL WHERE id <= 4");
    const repaired = await cli(["retry", "cli_docs", "--completed", "--json"]);
    expect(repaired.json()).toEqual({
      target: "cli_docs",
      scope: "completed-but-null",
      requeued: 4,
      invalid: [],
    });
    const clash = await cli(["retry", "cli_docs", "--completed", "--row", "1"]);
    expect(clash.code).toBe(EXIT.usage);
  });
});

describe("cancel", () => {
  it("marks the job cancelled, releases its leases and sends embeddings/backfill.cancelled", async () => {
    const ctx = testContext(db, testConfig());
    await ctx.store.retry("cli_docs", {
      ids: Array.from({ length: 40 }, (_, i) => String(i + 1)),
      deadLetterOnly: false,
    });
    const job = await ctx.store.createJob("cli_docs", "backfill", null);
    await ctx.store.startJob(job.id);
    await ctx.store.claim("cli_docs", `${job.id}:lane-1`, 7, 300);
    const before = events.length;

    const r = await cli(["cancel", job.id, "--json"]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.json()).toMatchObject({
      jobId: job.id,
      cancelled: true,
      status: "cancelled",
      released: 7,
      eventSent: true,
    });
    expect(events.slice(before).map((e) => e.body[0]!.name)).toEqual(["embeddings/backfill.cancelled"]);
    expect((await ctx.store.getJob(job.id)).status).toBe("cancelled");

    const text = await cli(["cancel", job.id]);
    expect(text.out).toMatch(/^cancelled job .* \(was cancelled\); released 0 leased rows/);
    const done = await ctx.store.createJob("cli_docs", "run", null);
    await ctx.store.finishJob(done.id, "completed");
    const finished = await cli(["cancel", done.id]);
    expect([finished.code, finished.out]).toEqual([
      EXIT.failed,
      `job ${done.id} already completed: nothing to cancel`,
    ]);
  });

  it("exits 2 for a malformed job id, and cancels a job that does not exist yet ahead", async () => {
    expect((await cli(["cancel", "123"])).code).toBe(EXIT.usage);
    const ahead = crypto.randomUUID();
    const unknown = await cli(["cancel", ahead]);
    expect(unknown.code).toBe(EXIT.ok);
    expect(unknown.out).toMatch(/no job .* exists yet: its cancellation is recorded/);
    // The job is born cancelled when its coordinator gets to create it.
    const ctx = testContext(db, testConfig());
    expect(await ctx.store.createJob("cli_docs", "backfill", null, {}, ahead)).toMatchObject({
      id: ahead,
      status: "cancelled",
    });
  });
});

describe("doctor", () => {
  it("exits 0 when healthy, 3 on a configuration problem, 4 on an outage", async () => {
    const ok = await cli(["doctor", "cli_docs", "--json"]);
    expect(ok.code).toBe(EXIT.ok);
    expect(ok.json()).toMatchObject({ status: "ok" });
    const text = await cli(["doctor", "--no-probe"]);
    expect(text.out).toMatch(/healthy$/);
    expect(text.out).not.toMatch(/probe cli_docs/);

    const missing = await cli(["doctor", "nope"]);
    expect(missing.code).toBe(EXIT.config);
    expect(missing.out).toMatch(/FIX {2}target nope: target "nope" is not registered/);

    const down: EmbeddingProvider = {
      name: "local",
      model: "local-ngram-v1",
      dimensions: 8,
      embed: async () => {
        throw new TransientError("provider returned 503");
      },
    };
    const outage = await cli(["doctor", "cli_docs", "--json"], { providerFor: () => down });
    expect(outage.code).toBe(EXIT.transient);
    expect(outage.json()).toMatchObject({ status: "transient" });
  });
});

describe("status text", () => {
  it("answers how far, how fast and when, for a terminal", async () => {
    const ctx = testContext(db, testConfig());
    const snapshot = await readStatus({ store: ctx.store, prices: {} }, { target: "cli_docs" });
    const text = formatSnapshot(snapshot);
    expect(text).toMatch(/^health {4}(HEALTHY|WARNING|CRITICAL)/);
    expect(text).toMatch(/cli_docs {2}public\.cli_docs {2}local\/local-ngram-v1 \(8 dims\)/);
    expect(text).toMatch(/ {2}coverage {2}\[#*-*\] [\d.]+% {2}\(\d+ of 40 rows embedded\)/);
    expect(text).toMatch(/ {2}speed {5}[\d.]+ rows\/min over 15 min {2}ETA /);
    expect(text).toMatch(/ {2}cost {6}\d+ tokens/);
  });
});

describe("the real binary", () => {
  const run = runCli;

  it("documents exit codes in every verb's help, and exits with them", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "ops-cli-"));
    try {
      const env = { DATABASE_URL: db.url, EMBEDDINGS_DATA_DIR: dataDir };
      const [help, doctor, unknown, usage, unreachable] = await Promise.all([
        run(["retry", "--help"], env),
        run(["doctor", "cli_docs", "--no-probe", "--json"], env),
        run(["retry", "nope"], env),
        run(["cancel"], env),
        run(["doctor", "--json"], {
          DATABASE_URL: "postgres://u:secret-pw@127.0.0.1:1/db",
          EMBEDDINGS_DATA_DIR: dataDir,
        }),
      ]);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/Exit codes: 0 ok, 1 failed, 2 bad input/);
      expect(help.stdout).toMatch(/--completed/);
      expect(doctor.code).toBe(0);
      expect(JSON.parse(doctor.stdout)).toMatchObject({ status: "ok" });
      expect([unknown.code, unknown.stderr]).toEqual([
        2,
        expect.stringMatching(/^error: .*unknown target "nope"/),
      ]);
      expect(usage.code).toBe(2);
      expect(usage.stderr).toMatch(/missing required argument 'jobId'/);
      expect(unreachable.code).toBe(4);
      expect(JSON.parse(unreachable.stdout)).toMatchObject({
        status: "transient",
        checks: [{ name: "database" }],
      });
      expect(unreachable.stdout + unreachable.stderr).not.toContain("secret-pw");
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
