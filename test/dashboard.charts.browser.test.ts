import { join } from "node:path";
import type { Locator, Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { processBatch } from "../src/lib/core/batch.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import type { TargetHistory } from "../src/lib/types.js";
import { testConfig, testContext } from "./support/app.js";
import { hasChromium, OUT, SKIPPED, useDashboardBrowser } from "./support/dashboard-browser.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * The dashboard's charts, job history and dead-letter classes in real headless Chromium, served by
 * the real app on a real socket over a real database. What each chart plots is read back from its
 * `data-points` and held against GET /history and the tables it summarises. Leaves screenshots in
 * test-output/: dashboard-empty, -mid-backfill, -dead-letters, -narrow and -dark.
 */

const TOKEN = "dashboard-charts-token-91be3d";

const db = useTestDatabase("dashboard_charts");
const dash = useDashboardBrowser(db, TOKEN);

/** A page logged in with the token, collecting console errors (a CSP violation is one) and page errors. */
async function open(viewport = { width: 1280, height: 900 }) {
  const page = await dash.browser().newPage({ viewport });
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(`${dash.base()}/?token=${TOKEN}`);
  await page.locator("#main").waitFor({ state: "visible" });
  return { page, problems };
}

async function api<T>(path: string): Promise<T> {
  const res = await fetch(`${dash.base()}/${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

/** The API's timestamps (Postgres' "+00:00") in the client's ISO form. */
const iso = (t: string) => new Date(t).toISOString();
type Plotted = { start: string; value: number }[];
const plotted = async (card: Locator, chart: string, series: string): Promise<Plotted> =>
  JSON.parse(
    (await card
      .locator(`svg[data-chart="${chart}"] g[data-series="${series}"]`)
      .getAttribute("data-points")) ?? "[]",
  ) as Plotted;

const shoot = (page: Page, name: string) =>
  page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true });

/** 60 of 200 rows embedded by a running job in three batches of 20. */
async function midBackfill(name: string) {
  const { store } = testContext(db, testConfig());
  await createDocuments(db, { table: name, rows: 200 });
  const target = await registerDocuments(store, { name, table: name });
  await store.enqueue(name, null, 1000);
  const job = await store.createJob(name, "backfill", null, { batchSize: 20 });
  await store.startJob(job.id);
  const provider = providerForTarget(target, testConfig());
  for (let i = 0; i < 3; i++) {
    await processBatch(
      { store, provider },
      { target, workerId: `${job.id}:lane-0`, batchSize: 20, jobId: job.id },
    );
  }
  return { job, store };
}

describe("dashboard charts", () => {
  it.skipIf(!hasChromium)(`says there is no target on an empty database${SKIPPED}`, async () => {
    const { page, problems } = await open();
    await expect.poll(() => page.textContent("#targets")).toMatch(/No targets registered/);
    await shoot(page, "dashboard-empty");
    expect(problems).toEqual([]);
    await page.close();
  });

  it.skipIf(!hasChromium)(
    `plots a running backfill's throughput and rows left as GET /history has them, and lists its job${SKIPPED}`,
    async () => {
      const { job } = await midBackfill("chart_docs");
      const { page, problems } = await open();
      const card = page.locator('article[data-target="chart_docs"]');
      await card.locator('svg[data-chart="throughput"]').waitFor();

      const history = await api<TargetHistory>("history?target=chart_docs&since=1h&step=1m");
      const embedded = await scalar<number>(
        db,
        "SELECT count(*)::int FROM public.chart_docs WHERE embedding IS NOT NULL",
      );
      expect(embedded).toBe(60);
      const throughput = await plotted(card, "throughput", "embedded");
      // One point per minute of the hour; the minutes with work are exactly the history's buckets.
      expect(throughput.length).toBeGreaterThanOrEqual(60);
      expect(throughput.filter((p) => p.value > 0)).toEqual(
        history.buckets
          .filter((b) => b.embedded > 0)
          .map((b) => ({ start: iso(b.start), value: b.embedded })),
      );
      expect(throughput.reduce((n, p) => n + p.value, 0)).toBe(embedded);

      // Rows left ends at the status' figure and starts that plus every row embedded since.
      const remaining = await scalar<number>(
        db,
        `SELECT count(*)::int FROM embedding_items i JOIN embedding_targets t ON t.id = i.target_id
          WHERE t.name = 'chart_docs' AND i.status IN ('pending', 'processing', 'failed')`,
      );
      const rowsLeft = await plotted(card, "backlog", "backlog");
      expect(rowsLeft.at(-1)!.value).toBe(remaining);
      expect(rowsLeft[0]!.value).toBe(remaining + embedded);
      expect(await card.locator('figure[data-chart="backlog"] .note').textContent()).toMatch(
        /ignores rows queued meanwhile/,
      );
      // No row failed and the local provider never answers 429: both rates are 0 where there was work.
      const failure = await plotted(card, "rates", "failure");
      expect(failure.map((p) => p.start)).toEqual(history.buckets.map((b) => iso(b.start)));
      expect(new Set(failure.map((p) => p.value))).toEqual(new Set([0]));

      // The running job, drawn against its start, and its line in the job history as embedding_jobs has it.
      const running = card.locator(`tr[data-job="${job.id}"]`);
      expect(await running.textContent()).toContain("60 / 200");
      expect(await running.locator(".started").textContent()).toMatch(/ago\)$/);
      const [row] = await db.query<{ items_processed: string; tokens: string }>(
        "SELECT items_processed, tokens FROM embedding_jobs WHERE id = $1",
        [job.id],
      );
      const startedAt = await scalar<Date>(db, "SELECT started_at FROM embedding_jobs WHERE id = $1", [
        job.id,
      ]);
      const marker = card.locator('svg[data-chart="throughput"] g.marker');
      expect(iso((await marker.getAttribute("data-at"))!)).toBe(new Date(startedAt).toISOString());
      expect(await marker.getAttribute("data-marker")).toBe("backfill started");
      const line = card.locator(`tr[data-job-history="${job.id}"]`);
      expect(await line.locator(".kind").textContent()).toBe("backfill");
      expect(await line.locator(".rows").textContent()).toBe(
        Number(row!.items_processed).toLocaleString("en-US"),
      );
      expect(await line.locator(".tokens").textContent()).toBe(Number(row!.tokens).toLocaleString("en-US"));
      expect(await line.locator(".result").textContent()).toBe("running");
      await shoot(page, "dashboard-mid-backfill");

      // The day at 15-minute steps holds the same rows.
      await card.locator('button[data-range="24h"]').click();
      await expect
        .poll(async () => card.locator('button[data-range="24h"]').getAttribute("aria-pressed"))
        .toBe("true");
      await expect
        .poll(async () => (await plotted(card, "throughput", "embedded")).length)
        .toBeGreaterThanOrEqual(96);
      const day = await plotted(card, "throughput", "embedded");
      const dayHistory = await api<TargetHistory>("history?target=chart_docs&since=24h&step=15m");
      expect(day.filter((p) => p.value > 0)).toEqual(
        dayHistory.buckets.map((b) => ({ start: iso(b.start), value: b.embedded })),
      );
      expect(day.reduce((n, p) => n + p.value, 0)).toBe(embedded);
      expect(problems).toEqual([]);
      await page.close();
    },
  );

  it.skipIf(!hasChromium)(
    `plots cost per day as the day's tokens times the model's price from /status${SKIPPED}`,
    async () => {
      const { store } = testContext(db, testConfig());
      await createDocuments(db, { table: "chart_paid", rows: 5 });
      await registerDocuments(store, {
        name: "chart_paid",
        table: "chart_paid",
        provider: "openai",
        model: "text-embedding-3-small",
        dimensions: 1536,
      });
      // Tokens of two days, as the progress call writes them (no OpenAI here to spend them on).
      await db.exec(`INSERT INTO embedding_history (target_id, minute, embedded, tokens, requests)
        SELECT id, date_trunc('minute', now()), 4, 1500000, 2 FROM embedding_targets WHERE name = 'chart_paid'
        UNION ALL
        SELECT id, date_trunc('minute', now() - interval '2 days'), 9, 4000000, 5 FROM embedding_targets WHERE name = 'chart_paid'`);
      const status = await api<{ targets: { target: string; pricePerMillion: number | null }[] }>(
        "status?target=chart_paid",
      );
      const price = status.targets[0]!.pricePerMillion!;
      expect(price).toBeGreaterThan(0);
      const days = await api<TargetHistory>("history?target=chart_paid&since=7d&step=1d");
      const { page, problems } = await open();
      const card = page.locator('article[data-target="chart_paid"]');
      await card.locator('svg[data-chart="cost"]').waitFor();
      const cost = await plotted(card, "cost", "cost");
      expect(cost.filter((p) => p.value > 0)).toEqual(
        days.buckets.map((b) => ({ start: iso(b.start), value: Math.round(b.tokens * price) / 1e6 })),
      );
      expect(cost.reduce((n, p) => n + p.value, 0)).toBeCloseTo((5_500_000 / 1e6) * price, 9);
      expect(problems).toEqual([]);
      await page.close();
    },
  );

  it.skipIf(!hasChromium)(
    `filters dead letters by error class and re-queues exactly the class shown${SKIPPED}`,
    async () => {
      await db.exec(`UPDATE embedding_items i SET status = 'dead_letter', attempts = 3,
          error_kind = CASE WHEN i.row_id IN ('150', '151', '152') THEN 'permanent' ELSE 'transient' END,
          last_error = CASE WHEN i.row_id IN ('150', '151', '152') THEN 'input rejected: row ' || i.row_id
                            WHEN i.row_id = '170' THEN 'HTTP 500 from the provider'
                            ELSE 'canceling statement due to statement timeout' END
        FROM embedding_targets t
        WHERE t.id = i.target_id AND t.name = 'chart_docs' AND i.row_id IN ('150', '151', '152', '160', '161', '170')`);
      const { page, problems } = await open();
      const card = page.locator('article[data-target="chart_docs"]');
      await expect.poll(() => card.locator("tr[data-row]").count()).toBe(6);
      const options = await card.locator("select.class-filter option").allTextContents();
      expect([...options].sort()).toEqual(
        [
          "All classes (6)",
          "permanent · input rejected (3)",
          "transient · canceling statement due (2)",
          "transient · HTTP 500 (1)",
        ].sort(),
      );
      await card.locator("select.class-filter").selectOption("permanent · input rejected");
      await expect.poll(() => card.locator("tr[data-row]").count()).toBe(3);
      expect(await card.locator("tr[data-row] td:first-child").allTextContents()).toEqual(
        expect.arrayContaining(["150", "151", "152"]),
      );
      await shoot(page, "dashboard-dead-letters");

      await card.locator("button.retry-class").click();
      await expect.poll(() => page.textContent("#notice")).toBe("Re-queued 3 rows of chart_docs.");
      const states = await db.query<{ row_id: string; status: string }>(
        `SELECT i.row_id, i.status FROM embedding_items i JOIN embedding_targets t ON t.id = i.target_id
          WHERE t.name = 'chart_docs' AND i.row_id IN ('150', '151', '152', '160', '161', '170') ORDER BY i.row_id`,
      );
      expect(Object.fromEntries(states.map((s) => [s.row_id, s.status]))).toEqual({
        "150": "pending",
        "151": "pending",
        "152": "pending",
        "160": "dead_letter",
        "161": "dead_letter",
        "170": "dead_letter",
      });
      // The class is gone, so the filter falls back to every class left.
      await expect
        .poll(async () => (await card.locator("tr[data-row] td:first-child").allTextContents()).sort())
        .toEqual(["160", "161", "170"]);
      expect(await card.locator("select.class-filter").inputValue()).toBe("");
      expect(problems).toEqual([]);
      await page.close();
    },
  );

  it.skipIf(!hasChromium)(
    `fits a phone's width (390 px) with nothing wider than the viewport${SKIPPED}`,
    async () => {
      const { page, problems } = await open({ width: 390, height: 844 });
      await page.locator('article[data-target="chart_docs"] svg[data-chart="throughput"]').waitFor();
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      // Wide tables scroll inside their card instead.
      const table = page.locator('article[data-target="chart_docs"] table.job-history');
      const box = await table.evaluate((t) => ({
        table: t.scrollWidth,
        frame: t.parentElement!.clientWidth,
      }));
      expect(box.frame).toBeLessThan(390);
      expect(box.table).toBeGreaterThan(box.frame);
      await shoot(page, "dashboard-narrow");
      expect(problems).toEqual([]);
      await page.close();
    },
  );

  it.skipIf(!hasChromium)(`follows the system's dark mode${SKIPPED}`, async () => {
    const { page, problems } = await open();
    await page.emulateMedia({ colorScheme: "dark" });
    await page.locator('article[data-target="chart_docs"] svg[data-chart="throughput"]').waitFor();
    const colours = await page.evaluate(() => ({
      body: getComputedStyle(document.body).backgroundColor,
      card: getComputedStyle(document.querySelector("article.target")!).backgroundColor,
      text: getComputedStyle(document.body).color,
    }));
    expect(colours).toEqual({ body: "rgb(13, 17, 23)", card: "rgb(22, 27, 34)", text: "rgb(230, 237, 243)" });
    await shoot(page, "dashboard-dark");
    expect(problems).toEqual([]);
    await page.close();
  });
});
