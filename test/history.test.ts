import { describe, expect, it } from "vitest";
import { series, sparkline } from "../src/cli/sparkline.js";
import { formatSnapshot } from "../src/cli/status-format.js";
import { backfillRequested, rowsChanged } from "../src/functions/events.js";
import { processBatch } from "../src/lib/core/batch.js";
import { runTarget } from "../src/lib/core/runner.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import type { ApiArg, SqlApi } from "../src/lib/db/types.js";
import { RateLimitedError } from "../src/lib/errors.js";
import { sinceTime, stepMinutes } from "../src/lib/ops/history.js";
import type { StatusSnapshot } from "../src/lib/ops/status.js";
import { createLocalProvider } from "../src/lib/providers/local.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import type { HistoryBucket } from "../src/lib/types.js";
import { createTestApp, testContext } from "./support/app.js";
import { runCliInProcess } from "./support/cli.js";
import { countingProvider, createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * Per-target, per-minute history: written by the progress call every batch already makes (no
 * round trip more), summed per step, pruned after the window, readable over HTTP and the CLI.
 */

const db = useTestDatabase("history");
const TOKEN = "history-admin-token";
const AUTH = { authorization: `Bearer ${TOKEN}` };

interface Sums {
  embedded: number;
  failed: number;
  dead_lettered: number;
  retried: number;
  tokens: number;
  requests: number;
  rate_limited: number;
  latency_count: number;
}

async function sums(target: string): Promise<Sums> {
  const [row] = await db.query<Record<keyof Sums, string>>(
    `SELECT coalesce(sum(embedded), 0) AS embedded, coalesce(sum(failed), 0) AS failed,
            coalesce(sum(dead_lettered), 0) AS dead_lettered, coalesce(sum(retried), 0) AS retried,
            coalesce(sum(tokens), 0) AS tokens, coalesce(sum(requests), 0) AS requests,
            coalesce(sum(rate_limited), 0) AS rate_limited, coalesce(sum(latency_count), 0) AS latency_count
       FROM embedding_history h JOIN embedding_targets t ON t.id = h.target_id WHERE t.name = $1`,
    [target],
  );
  return Object.fromEntries(Object.entries(row!).map(([k, v]) => [k, Number(v)])) as unknown as Sums;
}

async function embeddedRows(table: string): Promise<number> {
  return Number(await scalar(db, `SELECT count(*) FROM public.${table} WHERE embedding IS NOT NULL`));
}

async function target(name: string, rows: number) {
  await createDocuments(db, { table: name, rows });
  const t = await registerDocuments(db.store, { name, table: name });
  const id = Number(await scalar(db, "SELECT id FROM embedding_targets WHERE name = $1", [name]));
  return Object.assign(t, { id });
}

/** Rows inserted after registration: the triggers queue them (no job, as the sweep finds them). */
async function insertRows(table: string, rows: number): Promise<void> {
  await db.exec(`INSERT INTO public.${table} (title, body, author)
                 SELECT 'Late ' || g, 'Queued by the trigger ' || g, 'a' FROM generate_series(1, ${rows}) g`);
}

/** A SqlApi that records the name of every SQL API function called through it. */
function recording(api: SqlApi): { api: SqlApi; calls: string[] } {
  const calls: string[] = [];
  const wrapped = Object.create(api) as SqlApi;
  wrapped.call = <T>(fn: string, args: Record<string, ApiArg | undefined>) => {
    calls.push(fn);
    return api.call<T>(fn, args);
  };
  return { api: wrapped, calls };
}

describe("history written by the batches", () => {
  it("an in-process run's buckets add up to the job's counters and the rows in the table", async () => {
    const t = await target("hist_run", 130);
    const provider = createLocalProvider({ dimensions: 8 });
    const run = await runTarget(
      { store: db.store, provider },
      { target: t.name, batchSize: 25, parallelism: 2 },
    );
    expect(run.job.status).toBe("completed");
    const s = await sums(t.name);
    expect(s.embedded).toBe(run.job.itemsProcessed);
    expect(s.embedded).toBe(130);
    expect(s.embedded).toBe(await embeddedRows("hist_run"));
    expect(s.tokens).toBe(run.job.tokens);
    expect(s.requests).toBe(run.job.requests);
    expect(s).toMatchObject({ failed: 0, dead_lettered: 0, retried: 0, rate_limited: 0 });
    // One latency sample per provider call: 130 rows in batches of 25 is 6 calls.
    expect(s.latency_count).toBe(6);

    const read = await db.store.history(t.name, new Date(Date.now() - 3_600_000), 1440);
    expect(read.target).toBe(t.name);
    expect(read.buckets.reduce((n, b) => n + b.embedded, 0)).toBe(130);
    expect(read.buckets.reduce((n, b) => n + b.tokens, 0)).toBe(run.job.tokens);
    expect(read.buckets[0]!.latencyMsAvg).not.toBeNull();
  });

  it("rows the provider rejects are counted failed and dead-lettered, as the job counts them", async () => {
    await createDocuments(db, { table: "hist_bad", rows: 0 });
    await db.exec(`INSERT INTO public.hist_bad (title, body, author)
                   SELECT 'T' || g, CASE WHEN g % 10 = 0 THEN 'POISON ' ELSE 'fine ' END || g, 'a'
                     FROM generate_series(1, 60) g`);
    const t = await registerDocuments(db.store, { name: "hist_bad", table: "hist_bad" });
    const { provider } = countingProvider(8, { poison: "POISON" });
    const run = await runTarget(
      { store: db.store, provider },
      { target: t.name, batchSize: 20, parallelism: 1 },
    );
    expect(run.job.itemsFailed).toBe(6);
    const s = await sums(t.name);
    expect(s).toMatchObject({ embedded: 54, failed: 6, dead_lettered: 6, retried: 0 });
    expect(s.embedded).toBe(await embeddedRows("hist_bad"));
    expect(
      Number(
        await scalar(
          db,
          "SELECT count(*) FROM embedding_items i JOIN embedding_targets t ON t.id = i.target_id WHERE t.name = 'hist_bad' AND i.status = 'dead_letter'",
        ),
      ),
    ).toBe(6);
  });

  it("a 429 is recorded with the next batch that gets through", async () => {
    const t = await target("hist_429", 30);
    const local = createLocalProvider({ dimensions: 8 });
    let limited = 2;
    const provider: EmbeddingProvider = {
      ...local,
      embed(texts, options) {
        if (limited-- > 0) return Promise.reject(new RateLimitedError("429 Too Many Requests", 1));
        return local.embed(texts, options);
      },
    };
    const run = await runTarget(
      { store: db.store, provider },
      { target: t.name, batchSize: 10, parallelism: 1 },
    );
    expect(run.job.itemsProcessed).toBe(30);
    expect(await sums(t.name)).toMatchObject({ embedded: 30, rate_limited: 2, latency_count: 3 });
  });

  it("an Inngest backfill's buckets add up to its job; rows.changed (no job) is recorded too", async () => {
    const t = await target("hist_bf", 240);
    const { harness, store } = createTestApp(db);
    await harness.send(backfillRequested.create({ target: t.name, batchSize: 30, parallelism: 3 }));
    const runs = await harness.runUntilIdle({ maxCalls: 2000 });
    expect(runs.filter((r) => r.status !== "completed")).toEqual([]);
    const jobId = (runs.find((r) => r.fnId === "embeddings-backfill")!.output as { jobId: string }).jobId;
    const job = await store.getJob(jobId);
    expect(job.itemsProcessed).toBe(240);
    let s = await sums(t.name);
    expect(s.embedded).toBe(job.itemsProcessed);
    expect(s.tokens).toBe(job.tokens);
    expect(s.requests).toBe(job.requests);
    expect(s.embedded).toBe(await embeddedRows("hist_bf"));

    await db.exec("UPDATE public.hist_bf SET body = body || ' edited' WHERE id <= 7");
    await harness.send(rowsChanged.create({ target: t.name }));
    await harness.runUntilIdle();
    s = await sums(t.name);
    expect(s.embedded).toBe(247);
    expect(s.tokens).toBeGreaterThan(job.tokens);
  });

  it("POST /batch without a job records its batches", async () => {
    const t = await target("hist_http", 0);
    await insertRows("hist_http", 45);
    const { app } = createTestApp(db, { env: { EMBEDDINGS_ADMIN_TOKEN: TOKEN } });
    let processed = 0;
    for (let i = 0; i < 3; i++) {
      const res = await app.request("/batch", {
        method: "POST",
        headers: { ...AUTH, "content-type": "application/json" },
        body: JSON.stringify({ target: t.name, batchSize: 20 }),
      });
      expect(res.status).toBe(200);
      processed += ((await res.json()) as { processed: number }).processed;
    }
    expect(processed).toBe(45);
    const s = await sums(t.name);
    expect(s.embedded).toBe(45);
    expect(s.embedded).toBe(await embeddedRows("hist_http"));
    expect(s.latency_count).toBe(3);
  });
});

describe("round trips per batch", () => {
  it("are two in the steady state: the claim, and the write that records progress, history and what is left", async () => {
    const t = await target("hist_rt", 30);
    const provider = createLocalProvider({ dimensions: 8 });
    const { api, calls } = recording(db);
    const store = new EmbeddingStore(api);
    const job = await db.store.createJob(t.name, "run", null);
    await db.store.enqueue(t.name, null, 1000, false, job.id);
    await db.store.startJob(job.id);

    // With a job, a full claim: the claim, then the write that counts itself.
    await processBatch({ store, provider }, { target: t, workerId: "w", batchSize: 20, jobId: job.id });
    expect(calls.splice(0)).toEqual(["embedding_claim", "embedding_write_counted"]);
    // A short claim: the same call also answers whether anything is left.
    const last = await processBatch(
      { store, provider },
      { target: t, workerId: "w", batchSize: 20, jobId: job.id },
    );
    expect(calls.splice(0)).toEqual(["embedding_claim", "embedding_write_counted"]);
    expect(last.complete).toBe(true);

    // Without a job, a short batch: the write records the target's history and answers what is left.
    await db.exec("UPDATE public.hist_rt SET body = body || ' again' WHERE id <= 3");
    const jobless = await processBatch({ store, provider }, { target: t, workerId: "w", batchSize: 20 });
    expect(jobless).toMatchObject({ processed: 3, complete: true });
    expect(calls.splice(0)).toEqual(["embedding_claim", "embedding_write_counted"]);
    // Without a job, a full batch: the same two.
    await db.exec("UPDATE public.hist_rt SET body = body || ' and again' WHERE id <= 5");
    await processBatch({ store, provider }, { target: t, workerId: "w", batchSize: 5 });
    expect(calls.splice(0)).toEqual(["embedding_claim", "embedding_write_counted"]);
    // Nothing due: nothing to record, the summary is asked as before.
    await processBatch({ store, provider }, { target: t, workerId: "w", batchSize: 20 });
    expect(calls.splice(0)).toEqual(["embedding_claim", "embedding_pending_summary"]);
    expect((await sums(t.name)).embedded).toBe(38);
    // A row the provider rejects is failed on its own first; then the write, and progress apart.
    await db.exec("UPDATE public.hist_rt SET body = 'POISON ' || body WHERE id = 1");
    await db.exec("UPDATE public.hist_rt SET body = body || ' once more' WHERE id = 2");
    const poisoned = countingProvider(8, { poison: "POISON" });
    const mixed = await processBatch(
      { store, provider: poisoned.provider },
      { target: t, workerId: "w", batchSize: 20, jobId: job.id },
    );
    expect(mixed).toMatchObject({ processed: 1, failed: 1, complete: true });
    expect(calls.splice(0)).toEqual([
      "embedding_claim",
      "embedding_write",
      "embedding_fail",
      "increment_embedding_job_progress",
    ]);
    const after = await db.store.getJob(job.id);
    expect(after.itemsProcessed).toBe(31);
  });
});

describe("reading and pruning", () => {
  it("sums per hour and per day over buckets written at known minutes", async () => {
    const t = await target("hist_steps", 0);
    await db.query(
      `INSERT INTO embedding_history (target_id, minute, embedded, tokens, requests, latency_ms_sum, latency_count)
       SELECT $1, date_trunc('day', now(), 'UTC') - interval '1 day' + m * interval '1 minute', e, e * 10, 1, 100, 1
         FROM (VALUES (5, 3), (59, 4), (60, 5), (61, 6), (1439, 7), (1440, 8), (1441, 9)) AS v(m, e)`,
      [t.id],
    );
    const dayStart =
      Number(
        await scalar(db, "SELECT extract(epoch FROM date_trunc('day', now(), 'UTC') - interval '1 day')"),
      ) * 1000;
    const since = new Date(dayStart);
    const hourly = await db.store.history(t.name, since, 60);
    const h = (offsetMinutes: number) => new Date(dayStart + offsetMinutes * 60_000).getTime();
    expect(hourly.buckets.map((b) => [Date.parse(b.start), b.embedded])).toEqual([
      [h(0), 7],
      [h(60), 11],
      [h(1380), 7],
      [h(1440), 17],
    ]);
    const daily = await db.store.history(t.name, since, 1440);
    expect(daily.buckets.map((b) => [Date.parse(b.start), b.embedded, b.tokens, b.requests])).toEqual([
      [h(0), 25, 250, 5],
      [h(1440), 17, 170, 2],
    ]);
    expect(daily.buckets[0]!.latencyMsAvg).toBe(100);
    const minutes = await db.store.history(t.name, new Date(h(61)), 1);
    expect(minutes.buckets.map((b) => b.embedded)).toEqual([6, 7, 8, 9]);
    await expect(db.store.history(t.name, since, 0)).rejects.toMatchObject({ code: "22023" });
  });

  it("the first batch of a minute prunes buckets older than the window and keeps newer ones", async () => {
    const t = await target("hist_prune", 0);
    await insertRows("hist_prune", 5);
    const other = await target("hist_prune_other", 0);
    const old = (days: number) => `date_trunc('minute', now()) - interval '${days} days'`;
    await db.query(
      `INSERT INTO embedding_history (target_id, minute, embedded) VALUES
         ($1, ${old(10)}, 1), ($1, ${old(8)}, 1), ($1, ${old(7)} - interval '1 minute', 1), ($1, ${old(6)}, 1),
         ($2, ${old(10)}, 1)`,
      [t.id, other.id],
    );
    const provider = createLocalProvider({ dimensions: 8 });
    await processBatch({ store: db.store, provider }, { target: t, workerId: "w", batchSize: 10 });
    const left = await db.query<{ days: string }>(
      `SELECT round(extract(epoch FROM date_trunc('minute', now()) - minute) / 86400)::int AS days
         FROM embedding_history WHERE target_id = $1 ORDER BY minute`,
      [t.id],
    );
    expect(left.map((r) => Number(r.days))).toEqual([6, 0]);
    // Another target's buckets wait for its own batches.
    expect(
      Number(await scalar(db, "SELECT count(*) FROM embedding_history WHERE target_id = $1", [other.id])),
    ).toBe(1);

    // EMBEDDINGS_HISTORY_DAYS reaches the SQL through the store.
    const short = await target("hist_prune_short", 0);
    await insertRows("hist_prune_short", 5);
    await db.query(
      `INSERT INTO embedding_history (target_id, minute, embedded) VALUES ($1, ${old(3)}, 1), ($1, ${old(1)}, 1)`,
      [short.id],
    );
    const store = new EmbeddingStore(db, { historyDays: 2 });
    await processBatch({ store, provider }, { target: short, workerId: "w", batchSize: 10 });
    expect(
      Number(await scalar(db, "SELECT count(*) FROM embedding_history WHERE target_id = $1", [short.id])),
    ).toBe(2);
  });
});

describe("GET /history", () => {
  it("answers JSON per step, 400 naming a bad step or since, 401 without the token", async () => {
    const t = await target("hist_get", 25);
    await runTarget(
      { store: db.store, provider: createLocalProvider({ dimensions: 8 }) },
      {
        target: t.name,
        batchSize: 10,
        parallelism: 1,
      },
    );
    const { app } = createTestApp(db, { env: { EMBEDDINGS_ADMIN_TOKEN: TOKEN } });
    const ok = await app.request(`/history?target=${t.name}&since=1h&step=1m`, { headers: AUTH });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { target: string; stepMinutes: number; buckets: HistoryBucket[] };
    expect(body).toMatchObject({ target: t.name, stepMinutes: 1 });
    expect(body.buckets.reduce((n, b) => n + b.embedded, 0)).toBe(25);

    const iso = await app.request(
      `/history?target=${t.name}&since=${new Date(Date.now() - 7_200_000).toISOString()}&step=1d`,
      {
        headers: AUTH,
      },
    );
    expect(((await iso.json()) as { stepMinutes: number }).stepMinutes).toBe(1440);

    const badStep = await app.request(`/history?target=${t.name}&step=fortnightly`, { headers: AUTH });
    expect(badStep.status).toBe(400);
    expect(((await badStep.json()) as { error: string }).error).toMatch(
      /step: "fortnightly" is not a step: use 1m, 5m, 1h, 1d/,
    );
    const badSince = await app.request(`/history?target=${t.name}&since=yesterday`, { headers: AUTH });
    expect(badSince.status).toBe(400);
    expect(((await badSince.json()) as { error: string }).error).toMatch(
      /since: "yesterday" is not a time: use an ISO time/,
    );
    const noTarget = await app.request("/history", { headers: AUTH });
    expect(noTarget.status).toBe(400);
    expect(((await noTarget.json()) as { error: string }).error).toMatch(/target is required/);
    const unknown = await app.request("/history?target=no_such_target", { headers: AUTH });
    expect(unknown.status).toBe(404);
    expect((await app.request(`/history?target=${t.name}`)).status).toBe(401);
  });
});

describe("embeddings history", () => {
  it("prints a table per step with totals, JSON with --json, and exit 2 for a bad --step", async () => {
    const t = await target("hist_cli", 12);
    await runTarget(
      { store: db.store, provider: createLocalProvider({ dimensions: 8 }) },
      {
        target: t.name,
        batchSize: 5,
        parallelism: 1,
      },
    );
    const context = (config: Parameters<typeof testContext>[1]) => testContext(db, config);
    const text = await runCliInProcess(["history", t.name, "--since", "2h", "--step", "1d"], { context });
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^hist_cli: since .*, per 1440 min/);
    expect(text.out).toMatch(
      /start\s+embedded\s+failed\s+dead\s+retried\s+tokens\s+requests\s+429s\s+latency ms/,
    );
    expect(text.out).toMatch(/\ntotal\s+12\s+0\s+0\s+0\s+\d+\s+0\s+0/);
    const json = await runCliInProcess(["history", t.name, "--step", "5m", "--json"], { context });
    expect(json.json()).toMatchObject({ target: t.name, stepMinutes: 5 });
    const bad = await runCliInProcess(["history", t.name, "--step", "often"], { context });
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--step: "often" is not a step/);
  });
});

describe("the watch's sparkline", () => {
  it("status --watch shows the last hour per target; a target with no history a flat line", async () => {
    const t = await target("hist_watch", 15);
    await runTarget(
      { store: db.store, provider: createLocalProvider({ dimensions: 8 }) },
      { target: t.name, batchSize: 5, parallelism: 1 },
    );
    await target("hist_watch_idle", 0);
    const r = await runCliInProcess(["status", "--watch", "60"], {
      context: (config) => testContext(db, config),
      // Ctrl-C right after the first screen.
      onInterrupt: (handler) => {
        setImmediate(handler);
        return () => undefined;
      },
    });
    expect(r.code).toBe(0);
    const block = (name: string) => r.out.slice(r.out.indexOf(`\n${name}  `)).split("\n\n")[0]!;
    // 15 rows in the current 2-minute step (or split over the last two): the newest blocks are up.
    expect(block("hist_watch")).toMatch(/\n {2}last hour ▁{28}[▁-█]{2} {2}peak \d+ rows\/min/);
    expect(block("hist_watch")).not.toMatch(/last hour ▁{30}/);
    expect(block("hist_watch_idle")).toMatch(/\n {2}last hour ▁{30} {2}peak 0 rows\/min/);
  });

  it("draws blocks scaled to the peak, a flat line with no history, and zero-fills missing steps", () => {
    expect(sparkline([0, 0, 0, 0])).toBe("▁▁▁▁");
    expect(sparkline([])).toBe("");
    expect(sparkline([0, 1, 4, 8, 2])).toBe("▁▂▅█▃");
    const end = new Date("2026-12-01T12:09:30Z");
    const bucket = (start: string, embedded: number) =>
      ({ start, embedded, failed: 0, tokens: 0, requests: 0 }) as HistoryBucket;
    expect(
      series(
        [
          bucket("2026-12-01T12:02:00Z", 4),
          bucket("2026-12-01T12:08:00Z", 8),
          bucket("2026-12-01T11:00:00Z", 9),
        ],
        end,
        5,
        2,
      ),
    ).toEqual([0, 4, 0, 0, 8]);
    const snapshot = {
      health: { level: "healthy", reasons: [] },
      targets: [
        {
          target: "docs",
          table: "public.documents",
          provider: "local",
          model: "m",
          dimensions: 8,
          health: { level: "healthy" },
          coverage: 0,
          embedded: 0,
          total: 0,
          pending: 0,
          processing: 0,
          failed: 0,
          deadLetter: 0,
          untracked: 0,
          rate: { perMinute: 0, windowMinutes: 15 },
          remaining: 0,
          etaSeconds: null,
          tokens: 0,
          estimatedCostUsd: 0,
          estimatedRemainingCostUsd: 0,
          completedButNull: 0,
          jobs: [],
        },
      ],
    } as unknown as StatusSnapshot;
    expect(formatSnapshot(snapshot, { lastHour: { docs: `${sparkline([0, 0])}  peak 0 rows/min` } })).toMatch(
      /\n {2}last hour ▁▁ {2}peak 0 rows\/min\n/,
    );
    expect(formatSnapshot(snapshot)).not.toMatch(/last hour/);
  });

  it("parses steps and times the way GET /history and the CLI take them", () => {
    expect(["1m", "5m", "1h", "1d", "90", "2h"].map(stepMinutes)).toEqual([1, 5, 60, 1440, 90, 120]);
    expect(["0", "1w", "x", "31d", ""].map(stepMinutes)).toEqual([null, null, null, null, null]);
    const now = new Date("2026-12-01T12:00:00Z");
    expect(sinceTime("24h", now)?.toISOString()).toBe("2026-11-30T12:00:00.000Z");
    expect(sinceTime("7d", now)?.toISOString()).toBe("2026-11-24T12:00:00.000Z");
    expect(sinceTime("2026-11-30T08:00:00Z", now)?.toISOString()).toBe("2026-11-30T08:00:00.000Z");
    expect(sinceTime("June", now)).toBeNull();
  });
});
