import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createAlerter, startAlertMonitor } from "../src/lib/ops/alerts.js";
import type { Health, HealthLevel } from "../src/lib/ops/health.js";
import { readStatus } from "../src/lib/ops/status.js";
import { testConfig, testContext } from "./support/app.js";
import { createDocuments, registerDocuments } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * The alert webhook against a real local receiver (node:http), with the clock stepped by hand to
 * walk through the debounce window; and once end to end from real row states in PostgreSQL.
 */

let receiver: Server;
let url: string;
let received: { text: string }[] = [];
let answer = 200;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      if (answer === 200) received.push(JSON.parse(body));
      res.statusCode = answer;
      res.end(answer === 200 ? "ok" : "no");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const addr = receiver.address();
  url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/services/T000/B000/secret`;
});
afterAll(async () => {
  await new Promise((r) => receiver?.close(r));
});
beforeEach(() => {
  received = [];
  answer = 200;
});

const health = (level: HealthLevel, message = "docs: 3 dead-lettered rows"): Health => ({
  level,
  reasons: level === "healthy" ? [] : [{ code: "dead_letters", level, message, target: "docs" }],
});

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("alerter", () => {
  it("sends one Slack-compatible message per transition: to warning, and back to healthy", async () => {
    const c = clock();
    const alerter = createAlerter({
      webhookUrl: url,
      now: c.now,
      debounceMs: 60_000,
      title: "prod embeddings",
    });
    expect(await alerter.observe(health("healthy"))).toEqual({ unchanged: "healthy" });
    expect(received).toHaveLength(0);

    expect(await alerter.observe(health("warning"))).toMatchObject({
      sent: { level: "warning", previous: "healthy" },
    });
    expect(await alerter.observe(health("warning"))).toEqual({ unchanged: "warning" });
    expect(received).toHaveLength(1);
    expect(Object.keys(received[0]!)).toEqual(["text"]);
    expect(received[0]!.text).toMatch(/prod embeddings is WARNING \(was healthy\)/);
    expect(received[0]!.text).toContain("docs: 3 dead-lettered rows");

    c.advance(61_000);
    expect(await alerter.observe(health("healthy"))).toMatchObject({
      sent: { level: "healthy", previous: "warning" },
    });
    expect(received).toHaveLength(2);
    expect(received[1]!.text).toMatch(/healthy again \(was warning\)/);
    expect(alerter.announced).toBe("healthy");
  });

  it("sends one message for a state flapping inside the debounce window, then the level that holds", async () => {
    const c = clock();
    const alerter = createAlerter({ webhookUrl: url, now: c.now, debounceMs: 10 * 60_000 });
    const flaps: HealthLevel[] = ["warning", "healthy", "warning", "healthy", "warning", "healthy"];
    for (const level of flaps) {
      await alerter.observe(health(level));
      c.advance(60_000);
    }
    expect(received).toHaveLength(1);
    expect(received[0]!.text).toMatch(/WARNING/);
    // The window is over and the state settled on healthy: one recovery message.
    c.advance(5 * 60_000);
    await alerter.observe(health("healthy"));
    await alerter.observe(health("healthy"));
    expect(received).toHaveLength(2);
    expect(received[1]!.text).toMatch(/healthy again/);
  });

  it("never holds back an escalation to critical", async () => {
    const c = clock();
    const alerter = createAlerter({ webhookUrl: url, now: c.now, debounceMs: 10 * 60_000 });
    await alerter.observe(health("warning"));
    c.advance(1000);
    expect(await alerter.observe(health("critical", "docs: 40 dead-lettered rows"))).toMatchObject({
      sent: { level: "critical", previous: "warning" },
    });
    // Back down to warning inside the window: held.
    expect(await alerter.observe(health("warning"))).toMatchObject({ held: "warning" });
    expect(received.map((r) => r.text.split("\n")[0])).toEqual([
      ":warning: embeddings-sync is WARNING (was healthy)",
      ":rotating_light: embeddings-sync is CRITICAL (was warning)",
    ]);
  });

  it("retries a failed delivery at the next observation instead of forgetting it", async () => {
    const alerter = createAlerter({ webhookUrl: url, debounceMs: 60_000 });
    answer = 500;
    expect(await alerter.observe(health("warning"))).toMatchObject({
      failed: { level: "warning" },
      error: /500/,
    });
    expect(alerter.announced).toBe("healthy");
    answer = 200;
    expect(await alerter.observe(health("warning"))).toMatchObject({ sent: { level: "warning" } });
    expect(received).toHaveLength(1);
  });

  it("serialises concurrent observations: two checks at once send one message", async () => {
    const alerter = createAlerter({ webhookUrl: url });
    await Promise.all([alerter.observe(health("warning")), alerter.observe(health("warning"))]);
    expect(received).toHaveLength(1);
  });
});

describe("alert monitor over real row states", () => {
  const db = useTestDatabase("alerts");

  it("fires once when dead letters appear and once when they are retried", async () => {
    await createDocuments(db, { table: "alert_docs", rows: 30 });
    const ctx = testContext(db, testConfig());
    await registerDocuments(ctx.store, { name: "alert_docs", table: "alert_docs" });
    await ctx.store.enqueue("alert_docs", null, 1000);
    await db.exec("UPDATE embedding_items SET next_retry_at = now() + interval '1 hour'");
    const deps = { store: ctx.store, prices: {} };
    const monitor = startAlertMonitor({
      alerter: createAlerter({ webhookUrl: url, debounceMs: 0 }),
      check: async () => (await readStatus(deps)).health,
      intervalMs: 3_600_000,
    });
    try {
      await monitor.tick();
      expect(received).toHaveLength(0);
      await db.exec(
        "UPDATE embedding_items SET status = 'dead_letter', last_error = 'input rejected' WHERE row_id::int <= 25",
      );
      await monitor.tick();
      await monitor.tick();
      expect(received).toHaveLength(1);
      expect(received[0]!.text).toMatch(/CRITICAL/);
      expect(received[0]!.text).toContain("alert_docs: 25 dead-lettered rows");
      await ctx.store.retry("alert_docs", { deadLetterOnly: true });
      await db.exec("UPDATE embedding_items SET next_retry_at = now() + interval '1 hour'");
      await monitor.tick();
      await monitor.tick();
      expect(received).toHaveLength(2);
      expect(received[1]!.text).toMatch(/healthy again \(was critical\)/);
    } finally {
      monitor.stop();
    }
  });
});
