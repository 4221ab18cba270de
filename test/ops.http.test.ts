import { createServer, type Server } from "node:http";
import { Writable } from "node:stream";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FunctionDeps } from "../src/functions/deps.js";
import { buildApp } from "../src/http/app.js";
import { OPS_PATHS } from "../src/http/auth.js";
import type { EmbeddingStore } from "../src/lib/db/store.js";
import { createLogger } from "../src/lib/logger.js";
import { readStatus, type StatusSnapshot } from "../src/lib/ops/status.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import { LOCAL_MODEL } from "../src/lib/providers/local.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import type { Target } from "../src/lib/types.js";
import { testConfig, testContext } from "./support/app.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * The operations endpoints of the real app (buildApp), through app.request(), against a real
 * PostgreSQL database. Row states are set with SQL where a test needs a precise count or age.
 */

const TOKEN = "test-admin-token-0123456789abcdef";
const AUTH = { authorization: `Bearer ${TOKEN}` };

const db = useTestDatabase("ops_http");
let receiver: Server;
let receiverUrl: string;
const events: { url: string; body: unknown }[] = [];

beforeAll(async () => {
  // Stands in for the Inngest event API: records what the app sends.
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      events.push({ url: req.url ?? "", body: JSON.parse(body || "null") });
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ids: [`evt-${events.length}`], status: 200 }));
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const addr = receiver.address();
  receiverUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
});
afterAll(async () => {
  await new Promise((r) => receiver?.close(r));
});

function opsDeps(
  env: Record<string, string | undefined> = {},
  providerFor?: (t: Target) => EmbeddingProvider,
): FunctionDeps {
  const config = testConfig({ EMBEDDINGS_ADMIN_TOKEN: TOKEN, INNGEST_BASE_URL: receiverUrl, ...env });
  const context = testContext(db, config);
  return {
    config,
    context: async () => context,
    providerFor: providerFor ?? ((t) => providerForTarget(t, config)),
  };
}

function opsApp(
  env: Record<string, string | undefined> = {},
  providerFor?: (t: Target) => EmbeddingProvider,
) {
  const deps = opsDeps(env, providerFor);
  const { app } = buildApp(deps);
  return { app, store: testContext(db, deps.config).store, deps };
}

async function table(name: string, rows: number, options: { maxAttempts?: number } = {}) {
  await createDocuments(db, { table: name, rows });
  const { store } = opsApp();
  await registerDocuments(store, { name, table: name, maxAttempts: options.maxAttempts });
  await store.enqueue(name, null, 100_000);
  return store;
}

const post = (body: unknown, headers: Record<string, string> = AUTH) =>
  ({
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  }) as const;

async function status(app: Hono, target: string): Promise<StatusSnapshot["targets"][number]> {
  const res = await app.request(`/status?target=${target}`, { headers: AUTH });
  expect(res.status).toBe(200);
  const body = (await res.json()) as StatusSnapshot;
  return body.targets[0]!;
}

/** Sets `n` rows of a target to a state with SQL (ids 1..n in order). */
async function setState(target: string, from: number, to: number, set: string) {
  if (to < from) return;
  await db.query(
    `UPDATE embedding_items SET ${set}
      WHERE target_id = (SELECT id FROM embedding_targets WHERE name = $1) AND row_id::int BETWEEN $2 AND $3`,
    [target, from, to],
  );
}

describe("auth", () => {
  it("refuses every operations endpoint with 503 and the fix when no admin token is configured", async () => {
    const { app } = opsApp({ EMBEDDINGS_ADMIN_TOKEN: undefined });
    for (const path of OPS_PATHS) {
      const res = await app.request(path, {
        method: ["/batch", "/retry", "/cancel"].includes(path) ? "POST" : "GET",
        headers: AUTH,
      });
      expect(res.status, path).toBe(503);
      expect(((await res.json()) as { error: string }).error).toMatch(/set EMBEDDINGS_ADMIN_TOKEN/);
    }
  });

  it("answers 401 to a missing, malformed or wrong token, whatever its length", async () => {
    const { app } = opsApp();
    const cases: Record<string, string>[] = [
      {},
      { authorization: TOKEN },
      { authorization: "Basic dXNlcjpwYXNz" },
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: "Bearer short" },
      { authorization: `Bearer ${TOKEN.toUpperCase()}` },
    ];
    for (const headers of cases) {
      for (const path of OPS_PATHS) {
        const post = ["/batch", "/retry", "/cancel"].includes(path);
        const res = await app.request(path, {
          method: post ? "POST" : "GET",
          headers: { ...headers, "content-type": "application/json" },
          body: post ? JSON.stringify({ target: "x", jobId: crypto.randomUUID() }) : undefined,
        });
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      }
    }
    expect((await app.request("/status", { headers: AUTH })).status).toBe(200);
    expect((await app.request("/status", { headers: { authorization: `bearer  ${TOKEN}` } })).status).toBe(
      200,
    );
  });

  it("leaves /health and the dashboard page open, and neither reveals a secret or row content", async () => {
    await table("auth_docs", 5);
    const { app } = opsApp({ OPENAI_API_KEY: "sk-live-secret-value-123456" });
    const health = await app.request("/health");
    const text = await health.text();
    expect([200, 503]).toContain(health.status);
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain("sk-live-secret-value-123456");
    expect(text).not.toContain("Body text number");
    const page = await app.request("/");
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    expect(page.headers.get("content-security-policy")).toMatch(/default-src 'none'.*script-src 'sha256-/);
    const html = await page.text();
    expect(html).toContain("<title>Embeddings sync</title>");
    expect(html).not.toContain(TOKEN);
    expect(html).not.toContain("auth_docs");
  });
});

describe("GET /status", () => {
  it("answers how far, how fast, what failed, when done and what it cost, per target and per job", async () => {
    const store = await table("st_docs", 100);
    const { app } = opsApp({ EMBEDDINGS_PRICES: JSON.stringify({ [LOCAL_MODEL]: 1000 }) });
    const job = await store.createJob("st_docs", "backfill", null, { batchSize: 10 });
    await store.startJob(job.id);
    for (let i = 0; i < 3; i++) {
      const r = await app.request("/batch", post({ target: "st_docs", batchSize: 10, jobId: job.id }));
      expect(r.status).toBe(200);
    }
    await setState(
      "st_docs",
      95,
      97,
      "status = 'dead_letter', last_error = 'input rejected', error_kind = 'permanent'",
    );
    // The 001 silent failure: state says completed, the column is NULL.
    await db.exec(
      "UPDATE st_docs SET embedding = NULL WHERE id = (SELECT min(id) FROM st_docs WHERE embedding IS NOT NULL)",
    );

    const res = await app.request("/status", { headers: AUTH });
    const body = (await res.json()) as StatusSnapshot;
    const t = body.targets.find((x) => x.target === "st_docs")!;
    expect(t).toMatchObject({
      total: 100,
      embedded: 29,
      coverage: 29,
      completed: 30,
      deadLetter: 3,
      pending: 67,
      processing: 0,
      failed: 0,
      remaining: 67,
      completedButNull: 1,
    });
    expect(t.rate.perMinute).toBeGreaterThan(0);
    expect(t.rate.embedded).toBe(30);
    expect(t.etaSeconds).toBeGreaterThan(0);
    expect(Date.parse(t.etaAt!)).toBeGreaterThan(Date.parse(body.generatedAt));
    expect(t.tokens).toBeGreaterThan(0);
    expect(t.estimatedCostUsd).toBeCloseTo((t.tokens / 1_000_000) * 1000, 5);
    expect(t.estimatedRemainingCostUsd).toBeGreaterThan(0);
    expect(t.health.level).toBe("warning");
    expect(t.health.reasons.map((r) => r.code).sort()).toEqual(["completed_but_null", "dead_letters"]);
    expect(body.health.level).toBe("warning");

    const j = t.jobs.find((x) => x.id === job.id)!;
    expect(j).toMatchObject({
      status: "running",
      itemsTotal: 100,
      itemsProcessed: 30,
      done: 30,
      remaining: 70,
      percent: 30,
    });
    expect(j.etaSeconds).toBeGreaterThan(0);
    expect(j.tokens).toBe(t.rate.tokens);
    expect(j.estimatedCostUsd).toBeGreaterThan(0);
  });

  it("answers 404 for an unknown target and 400 for a bad window", async () => {
    const { app } = opsApp();
    const missing = await app.request("/status?target=nope", { headers: AUTH });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toMatch(/unknown target "nope"/);
    expect((await app.request("/status?window=0", { headers: AUTH })).status).toBe(400);
  });
});

describe("health levels through /status, at each threshold", () => {
  it("grades dead letters 0 / 1-20 / over 20", async () => {
    await table("h_dead", 30);
    const { app } = opsApp();
    const expected: [number, string][] = [
      [0, "healthy"],
      [1, "warning"],
      [20, "warning"],
      [21, "critical"],
    ];
    for (const [n, level] of expected) {
      // Baseline: queued for later (not due, so not stalled; not completed, so no NULL mismatch).
      await setState("h_dead", 1, 30, "status = 'pending', next_retry_at = now() + interval '1 hour'");
      await setState("h_dead", 1, n, "status = 'dead_letter', last_error = 'boom'");
      const t = await status(app, "h_dead");
      expect([t.deadLetter, t.health.level], `${n} dead letters`).toEqual([n, level]);
      if (level !== "healthy")
        expect(t.health.reasons[0]).toMatchObject({ code: "dead_letters", level, target: "h_dead" });
    }
  });

  it("grades the retry queue under 100 / 100-500 / over 500", async () => {
    await table("h_retry", 501);
    const { app } = opsApp();
    const expected: [number, string][] = [
      [99, "healthy"],
      [100, "warning"],
      [500, "warning"],
      [501, "critical"],
    ];
    for (const [n, level] of expected) {
      await setState("h_retry", 1, 501, "status = 'pending', next_retry_at = now() + interval '1 hour'");
      // In backoff (due in an hour): waiting to be retried, not stalled.
      await setState(
        "h_retry",
        1,
        n,
        "status = 'failed', attempts = 1, next_retry_at = now() + interval '1 hour'",
      );
      const t = await status(app, "h_retry");
      expect([t.failed, t.health.level], `${n} rows waiting to retry`).toEqual([n, level]);
      expect(t.health.reasons.map((r) => r.code)).toEqual(level === "healthy" ? [] : ["retry_queue"]);
    }
  });

  it("grades no progress while work is due: under 1 h / 1-6 h / 6 h and more", async () => {
    await table("h_stall", 10);
    const { app } = opsApp();
    const expected: [number, string][] = [
      [59, "healthy"],
      [60, "warning"],
      [359, "warning"],
      [360, "critical"],
    ];
    for (const [minutes, level] of expected) {
      await setState(
        "h_stall",
        1,
        10,
        `status = 'pending', next_retry_at = now() - interval '${minutes} minutes'`,
      );
      const t = await status(app, "h_stall");
      expect(Math.floor(t.idleSeconds / 60), `${minutes} min`).toBe(minutes);
      expect(t.health.level, `${minutes} min idle`).toBe(level);
    }
    // A row embedded recently is progress: the clock restarts from it.
    await setState(
      "h_stall",
      1,
      1,
      "status = 'completed', tokens = 5, embedded_at = now() - interval '10 minutes'",
    );
    await db.exec("UPDATE h_stall SET embedding = '{1,1,1,1,1,1,1,1}' WHERE id = 1");
    expect((await status(app, "h_stall")).health).toEqual({ level: "healthy", reasons: [] });
    // Rows waiting in backoff are not stalled work.
    await setState(
      "h_stall",
      1,
      10,
      "status = 'failed', next_retry_at = now() + interval '5 minutes', embedded_at = NULL, tokens = NULL",
    );
    const t = await status(app, "h_stall");
    expect([t.idleSeconds, t.health.level]).toEqual([0, "healthy"]);
  });

  it("takes threshold overrides", async () => {
    await table("h_override", 5);
    await setState("h_override", 1, 2, "status = 'dead_letter'");
    const ctx = testContext(db, testConfig());
    const deps = { store: ctx.store, prices: {} };
    expect((await readStatus(deps, { target: "h_override" })).health.level).toBe("warning");
    const lenient = await readStatus(deps, {
      target: "h_override",
      thresholds: { deadLetters: { warning: 5, critical: 10 } },
    });
    expect(lenient.health.level).toBe("healthy");
    const strict = await readStatus(deps, {
      target: "h_override",
      thresholds: { deadLetters: { critical: 2 } },
    });
    expect(strict.health).toMatchObject({
      level: "critical",
      reasons: [{ code: "dead_letters", level: "critical" }],
    });
  });
});

describe("GET /metrics", () => {
  it("serves the same figures in Prometheus text format, from a registry per app", async () => {
    await table("m_docs", 20);
    const { app } = opsApp();
    const second = opsApp();
    await app.request("/batch", post({ target: "m_docs", batchSize: 5 }));
    await setState("m_docs", 19, 20, "status = 'dead_letter'");
    const res = await app.request("/metrics", { headers: AUTH });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const t = await status(app, "m_docs");
    expect(text).toContain(`embeddings_target_rows{target="m_docs"} 20`);
    expect(text).toContain(`embeddings_target_rows_embedded{target="m_docs"} ${t.embedded}`);
    expect(text).toContain(`embeddings_target_coverage_ratio{target="m_docs"} ${t.coverage / 100}`);
    expect(text).toContain(`embeddings_target_items{target="m_docs",state="dead_letter"} 2`);
    expect(text).toContain(`embeddings_target_items{target="m_docs",state="pending"} ${t.pending}`);
    expect(text).toContain(`embeddings_target_health_level{target="m_docs"} 1`);
    expect(text).toContain(`embeddings_target_tokens{target="m_docs"} ${t.tokens}`);
    expect(text).toMatch(/embeddings_target_rate_rows_per_minute\{target="m_docs"\} [1-9]/);
    expect(text).toContain(`embeddings_http_batch_rows_total{target="m_docs",result="processed"} 5`);
    expect(text).toContain("embeddings_status_up 1");
    // The other app's registry saw no batch.
    const other = await (await second.app.request("/metrics", { headers: AUTH })).text();
    expect(other).not.toContain(`embeddings_http_batch_rows_total{target="m_docs"`);
  });
});

describe("a database outage", () => {
  it("answers /status 503 with Retry-After, and /metrics 200 with embeddings_status_up 0", async () => {
    const deps = opsDeps();
    const down = Object.assign(new Error("connection refused"), { code: "08006" });
    const { app } = buildApp({ ...deps, context: async () => Promise.reject(down) });
    const res = await app.request("/status", { headers: AUTH });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBeTruthy();
    expect(await res.json()).toEqual({ error: "connection refused", retryable: true });
    const metrics = await (await app.request("/metrics", { headers: AUTH })).text();
    expect(metrics).toContain("embeddings_status_up 0");
    expect(metrics).toContain("embeddings_status_read_errors_total 1");
    expect(metrics).not.toContain("embeddings_target_rows{");
  });
});

describe("POST /batch", () => {
  it("processes one batch synchronously and answers { processed, remaining, total, errors, complete }", async () => {
    await table("b_docs", 25);
    await db.exec("UPDATE b_docs SET body = 'POISON ' || body WHERE id = 7");
    const { provider } = countingProvider(8, { poison: "POISON" });
    const { app } = opsApp({}, () => provider);
    type Answer = { processed: number; remaining: number; total: number; errors: number; complete: boolean };
    const answers: Answer[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await app.request("/batch", post({ target: "b_docs", batchSize: 10 }));
      expect(res.status).toBe(200);
      answers.push((await res.json()) as Answer);
      if (answers.at(-1)!.complete) break;
    }
    expect(answers[0]).toMatchObject({ remaining: 15, total: 25, complete: false });
    expect(answers[0]!.processed + answers[0]!.errors).toBe(10);
    expect(answers.at(-1)).toMatchObject({ complete: true, remaining: 0, total: 25 });
    // The poisoned row fails alone; every other row is written.
    expect(answers.reduce((n, a) => n + a.errors, 0)).toBe(1);
    expect(answers.reduce((n, a) => n + a.processed, 0)).toBe(24);
    expect(await scalar(db, "SELECT count(*)::int FROM b_docs WHERE embedding IS NOT NULL")).toBe(24);
  });

  it("answers 400 for a bad body, 404 for an unknown target, 422 for a provider mismatch", async () => {
    await table("b_bad", 3);
    const { app } = opsApp();
    expect((await app.request("/batch", post({ target: "b_bad", batchSize: 0 }))).status).toBe(400);
    expect((await app.request("/batch", { method: "POST", headers: AUTH, body: "not json" })).status).toBe(
      400,
    );
    expect((await app.request("/batch", post({ target: "no_such" }))).status).toBe(404);
    const wrong = opsApp({}, () => countingProvider(16).provider);
    const res = await wrong.app.request("/batch", post({ target: "b_bad" }));
    expect(res.status).toBe(422);
    expect(((await res.json()) as { fix: string }).fix).toBeTruthy();
  });
});

describe("POST /retry", () => {
  it("re-queues dead letters, given rows, and completed-but-NULL rows", async () => {
    const store = await table("r_docs", 10);
    const { app } = opsApp();
    await setState(
      "r_docs",
      1,
      3,
      "status = 'dead_letter', attempts = 3, last_error = 'boom', error_kind = 'permanent'",
    );
    await setState(
      "r_docs",
      4,
      4,
      "status = 'failed', attempts = 1, next_retry_at = now() + interval '1 hour'",
    );

    const one = await app.request("/retry", post({ target: "r_docs", ids: [1], deadLetter: true }));
    expect(await one.json()).toEqual({ target: "r_docs", scope: "rows", requeued: 1, invalid: [] });
    const notDead = await app.request("/retry", post({ target: "r_docs", ids: ["4"], deadLetter: true }));
    expect(((await notDead.json()) as { requeued: number }).requeued).toBe(0);
    const forced = await app.request("/retry", post({ target: "r_docs", ids: ["4"] }));
    expect(((await forced.json()) as { requeued: number }).requeued).toBe(1);
    const all = await app.request("/retry", post({ target: "r_docs" }));
    expect(await all.json()).toEqual({ target: "r_docs", scope: "dead-letters", requeued: 2, invalid: [] });
    const [s] = await store.status("r_docs");
    expect(s).toMatchObject({ deadLetter: 0, failed: 0, pending: 10 });

    await app.request("/batch", post({ target: "r_docs", batchSize: 10 }));
    await db.exec("UPDATE r_docs SET embedding = NULL WHERE id IN (2, 5)");
    expect((await status(app, "r_docs")).completedButNull).toBe(2);
    const repaired = await app.request("/retry", post({ target: "r_docs", completed: true }));
    expect(await repaired.json()).toEqual({
      target: "r_docs",
      scope: "completed-but-null",
      requeued: 2,
      invalid: [],
    });
    await app.request("/batch", post({ target: "r_docs", batchSize: 10 }));
    expect(await scalar(db, "SELECT count(*)::int FROM r_docs WHERE embedding IS NULL")).toBe(0);
  });

  it("refuses what it cannot do, with the reason", async () => {
    await table("r_bad", 2);
    const { app } = opsApp();
    expect((await app.request("/retry", post({ target: "r_bad", ids: [1], completed: true }))).status).toBe(
      400,
    );
    expect((await app.request("/retry", post({ target: "nope" }))).status).toBe(404);
    expect((await app.request("/retry", post({ target: "Bad Name" }))).status).toBe(400);
  });
});

describe("POST /cancel", () => {
  it("cancels a running job, releases its leases and tells Inngest once per job", async () => {
    const store = await table("c_docs", 30);
    const { app } = opsApp();
    const job = await store.createJob("c_docs", "backfill", null);
    await store.startJob(job.id);
    await store.claim("c_docs", `${job.id}:lane-0`, 10, 300);
    await store.claim("c_docs", "someone-else:lane-0", 5, 300);
    const before = events.length;

    const res = await app.request("/cancel", post({ jobId: job.id }));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      jobId: job.id,
      target: "c_docs",
      cancelled: true,
      status: "cancelled",
      previousStatus: "running",
      released: 10,
      eventSent: true,
    });
    expect((await store.getJob(job.id)).status).toBe("cancelled");
    const [s] = await store.status("c_docs");
    expect(s!.processing).toBe(5);
    const sent = events.slice(before);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.body).toEqual([
      expect.objectContaining({
        name: "embeddings/backfill.cancelled",
        data: { jobId: job.id },
        id: `cancel-${job.id}`,
      }),
    ]);

    // Twice is fine; a finished job is left alone.
    expect((await app.request("/cancel", post({ jobId: job.id }))).status).toBe(200);
    const done = await store.createJob("c_docs", "run", null);
    await store.finishJob(done.id, "completed");
    const conflict = await app.request("/cancel", post({ jobId: done.id }));
    expect(conflict.status).toBe(409);
    expect((await store.getJob(done.id)).status).toBe("completed");
  });

  it("still cancels when Inngest is not configured, and says so", async () => {
    const store = await table("c_noinngest", 3);
    const { app } = opsApp({ INNGEST_DEV: "0" });
    const job = await store.createJob("c_noinngest", "backfill", null);
    const res = await app.request("/cancel", post({ jobId: job.id }));
    expect(await res.json()).toMatchObject({
      cancelled: true,
      eventSent: false,
      eventError: expect.stringMatching(/not configured/),
    });
  });

  it("answers 400 for a malformed job id and 202 for one that does not exist yet (cancelled ahead)", async () => {
    const { app } = opsApp();
    expect((await app.request("/cancel", post({ jobId: "42" }))).status).toBe(400);
    const res = await app.request("/cancel", post({ jobId: crypto.randomUUID() }));
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ known: false, cancelled: true, status: "cancelled" });
  });
});

describe("logs", () => {
  it("carry job id, target, batch and step, and never the token or row content", async () => {
    const store: EmbeddingStore = await table("log_docs", 12);
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    const deps = opsDeps({ LOG_LEVEL: "info", OPENAI_API_KEY: "sk-proj-abcdefghijklmnop" });
    const logger = createLogger(deps.config, { destination: sink });
    const { app } = buildApp({ ...deps, logger });
    const job = await store.createJob("log_docs", "backfill", null);
    await store.startJob(job.id);
    await app.request("/batch", post({ target: "log_docs", batchSize: 12, jobId: job.id }));
    await app.request("/retry", post({ target: "log_docs", ids: [1] }));
    logger.error(
      { err: new Error(`provider said: bad key sk-proj-abcdefghijklmnop`), content: "Body text number 3" },
      "oops",
    );

    const batch = lines.find((l) => l.msg === "batch done")!;
    expect(batch).toMatchObject({
      level: "info",
      jobId: job.id,
      target: "log_docs",
      step: "http-batch",
      processed: 12,
    });
    expect(batch.batch).toMatch(/^http:/);
    expect(lines.find((l) => l.msg === "retry requested")).toMatchObject({
      target: "log_docs",
      step: "http-retry",
    });
    const all = JSON.stringify(lines);
    expect(all).not.toContain("sk-proj-abcdefghijklmnop");
    expect(all).not.toContain(TOKEN);
    expect(all).not.toContain("Body text number");
    expect(lines.at(-1)).toMatchObject({
      content: "[redacted]",
      err: { message: "provider said: bad key [redacted]" },
    });
  });
});
