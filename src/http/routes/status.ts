import type { Hono } from "hono";
import { intQuery } from "../request.js";
import type { RouteContext } from "./context.js";

/** Read-only operations: GET /status, GET /dead-letters, GET /metrics (behind the admin token). */
export function registerStatusRoutes(app: Hono, r: RouteContext): void {
  // Per target and per job: counts, coverage, rate, ETA, tokens, cost, mismatch, health + reasons.
  app.get("/status", async (c) =>
    c.json(
      await r.snapshot({
        target: c.req.query("target") || undefined,
        windowMinutes: intQuery(c, "window", 1, 10_080),
        jobs: intQuery(c, "jobs", 0, 100),
      }),
    ),
  );

  // Dead-lettered rows with their errors, newest first: every target, or ?target=.
  app.get("/dead-letters", async (c) => {
    const { store } = await r.deps.context();
    const limit = intQuery(c, "limit", 1, 1000) ?? 50;
    const only = c.req.query("target") || undefined;
    const names = only ? [only] : (await store.listTargets()).map((t) => t.name);
    const targets = await Promise.all(
      names.map(async (target) => ({ target, items: await store.deadLetters(target, limit) })),
    );
    return c.json({ targets: targets.filter((t) => only || t.items.length > 0) });
  });

  // Prometheus scrape config: authorization: { credentials: <EMBEDDINGS_ADMIN_TOKEN> }. A failed
  // database read still answers 200 (embeddings_status_up 0) so the outage itself is a metric.
  app.get("/metrics", async (c) => {
    const { contentType, body } = await r.metrics.render(() => r.snapshot());
    return c.body(body, 200, { "content-type": contentType, "cache-control": "no-store" });
  });
}
