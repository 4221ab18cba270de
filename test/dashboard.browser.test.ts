import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { processBatch } from "../src/lib/core/batch.js";
import { runTarget } from "../src/lib/core/runner.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import { testConfig, testContext } from "./support/app.js";
import { hasChromium, OUT, SKIPPED, useDashboardBrowser } from "./support/dashboard-browser.js";
import { createDocuments, registerDocuments, scalar } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";
import { createRecordings, registerRecordings, transcript } from "./support/transcripts.js";

/**
 * The dashboard in real headless Chromium (Debian's package, driven by playwright-core), served by
 * the real app on a real socket over a real database: a running backfill with its progress, and a
 * retry button that re-queues a dead letter in the database. Leaves test-output/dashboard.png.
 */

const TOKEN = "dashboard-test-token-5f2c9a";

const db = useTestDatabase("dashboard");
const dash = useDashboardBrowser(db, TOKEN);

/** A backfill in progress: 40 of 200 rows done by a running job, two rows dead-lettered. */
async function runningBackfill() {
  const { store } = testContext(db, testConfig());
  await createDocuments(db, { table: "dash_docs", rows: 200 });
  const target = await registerDocuments(store, { name: "dash_docs", table: "dash_docs" });
  await store.enqueue("dash_docs", null, 1000);
  const job = await store.createJob("dash_docs", "backfill", null, { batchSize: 20 });
  await store.startJob(job.id);
  const provider = providerForTarget(target, testConfig());
  for (let i = 0; i < 2; i++) {
    await processBatch(
      { store, provider },
      { target, workerId: `${job.id}:lane-0`, batchSize: 20, jobId: job.id },
    );
  }
  await db.exec(`UPDATE embedding_items SET status = 'dead_letter', attempts = 3, error_kind = 'permanent',
      last_error = CASE row_id WHEN '150' THEN 'input rejected: <b>boom</b>' ELSE 'canceling statement due to statement timeout' END
    WHERE row_id IN ('150', '151')`);
  return { job, store };
}

describe("dashboard", () => {
  it.skipIf(!hasChromium)(
    `shows a running backfill and re-queues a dead letter from its retry button${SKIPPED}`,
    async () => {
      const { job } = await runningBackfill();
      const page = await dash.browser().newPage({ viewport: { width: 1280, height: 900 } });
      const problems: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(m.text());
      });
      page.on("pageerror", (e) => problems.push(e.message));

      // First visit without a token: the page asks for it, and says when it is wrong.
      await page.goto(`${dash.base()}/`);
      await page.locator("#login").waitFor({ state: "visible" });
      await page.fill("#token", "not-the-token");
      await page.click("#login-form button");
      await expect.poll(() => page.textContent("#login-error")).toMatch(/token was refused/);

      await page.goto(`${dash.base()}/?token=${TOKEN}`);
      const card = page.locator('article[data-target="dash_docs"]');
      await card.waitFor();
      // The token left the address bar (history, shared links) for sessionStorage.
      expect(page.url()).toBe(`${dash.base()}/`);

      expect(await page.textContent("#overall")).toBe("warning");
      expect(await card.locator(".coverage").textContent()).toBe("20% embedded (40 of 200 rows)");
      const jobRow = card.locator(`tr[data-job="${job.id}"]`);
      expect(await jobRow.textContent()).toContain("40 / 200");
      expect(await jobRow.textContent()).toContain("20%");
      expect(await jobRow.locator(".eta").textContent()).not.toBe("unknown");
      expect(await card.locator("ul.reasons").textContent()).toMatch(/2 dead-lettered rows/);
      // Errors are shown as text: markup from a row never becomes HTML.
      expect(await card.locator('tr[data-row="150"] td.error').textContent()).toBe(
        "input rejected: <b>boom</b>",
      );
      expect(await card.locator("td.error b").count()).toBe(0);
      await page.screenshot({ path: join(OUT, "dashboard.png"), fullPage: true });

      await card.locator('button.retry[data-id="151"]').click();
      await expect.poll(() => page.textContent("#notice")).toBe("Re-queued 1 row of dash_docs.");
      const state = await scalar(db, "SELECT status FROM embedding_items WHERE row_id = '151'");
      expect(state).toBe("pending");
      expect(await scalar(db, "SELECT status FROM embedding_items WHERE row_id = '150'")).toBe("dead_letter");
      await expect.poll(() => card.locator('tr[data-row="151"]').count()).toBe(0);
      expect(await card.locator('[data-figure="dead-letter"] dd').textContent()).toBe("1");

      // Scripts and styles ran under the page's Content-Security-Policy without a violation.
      expect(problems.filter((p) => !/401/.test(p))).toEqual([]);
      await page.close();
    },
  );

  it.skipIf(!hasChromium)("shows a chunked target's documents and chunks, and its batch cap", async () => {
    const { store } = testContext(db, testConfig());
    await createRecordings(db, "dash_rec", [transcript(7, 40), transcript(8, 10)]);
    const target = await registerRecordings(store, { name: "dash_rec", table: "dash_rec" });
    await runTarget(
      { store, provider: providerForTarget(target, testConfig()) },
      { target: "dash_rec", batchSize: 20, parallelism: 1 },
    );
    await store.setBatchLimit("dash_rec", 7, "statement timeout");
    const stored = await scalar<number>(db, "SELECT count(*)::int FROM public.dash_rec_chunks");
    expect(stored).toBeGreaterThan(10);
    const page = await dash.browser().newPage({ viewport: { width: 390, height: 844 } });
    await page.goto(`${dash.base()}/?token=${TOKEN}`);
    const card = page.locator('article[data-target="dash_rec"]');
    await card.waitFor();
    expect(await card.locator('[data-figure="documents-embedded"] dd').textContent()).toBe("2 of 2");
    expect(await card.locator('[data-figure="chunks-stored"] dd').textContent()).toBe(String(stored));
    expect(await card.locator('[data-figure="chunks-dead-letter"] dd').textContent()).toBe("0");
    expect(await card.locator('[data-figure="batch-limit"] dd').textContent()).toBe("7");
    await page.screenshot({
      path: join(OUT, "dashboard-chunks.png"),
      fullPage: true,
    });
    await page.close();
  });

  it.skipIf(!hasChromium)(
    "shows a Batch API backfill's remote batches with their state, counts and age",
    async () => {
      const { store } = testContext(db, testConfig());
      await createDocuments(db, { table: "dash_remote", rows: 30 });
      await registerDocuments(store, { name: "dash_remote", table: "dash_remote" });
      const job = await store.createJob("dash_remote", "backfill", null, { via: "batch" });
      await store.startJob(job.id);
      const rec = await store.remote.open(job.id, 0);
      await store.remote.update(rec.id, { items: 30, state: "uploaded", inputFileId: "file-abc" });
      await store.remote.update(rec.id, {
        state: "submitted",
        batchId: "batch_dash1",
        remoteStatus: "in_progress",
      });
      await store.remote.update(rec.id, { completed: 12, failed: 1 });
      const page = await dash.browser().newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${dash.base()}/?token=${TOKEN}`);
      const row = page.locator(`article[data-target="dash_remote"] tr[data-remote="${rec.id}"]`);
      await row.waitFor();
      const cells = await row.locator("td").allTextContents();
      expect(cells.slice(0, 5)).toEqual(["batch_dash1", "in_progress", "30", "12", "1"]);
      await page.close();
    },
  );
});
