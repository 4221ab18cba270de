import type { Hono } from "hono";
import { historyQuery } from "../../lib/ops/history.js";
import type { RouteContext } from "./context.js";

/**
 * GET /history?target=&since=&step= (behind the admin token): a target's per-minute history summed
 * per step, oldest first, only steps with activity. `since` defaults to 24h, `step` to 1h.
 */
export function registerHistoryRoute(app: Hono, r: RouteContext): void {
  app.get("/history", async (c) => {
    const q = historyQuery(new Date()).parse({
      target: c.req.query("target"),
      since: c.req.query("since"),
      step: c.req.query("step"),
    });
    const { store } = await r.deps.context();
    return c.json(await store.history(q.target, q.since, q.step));
  });
}
