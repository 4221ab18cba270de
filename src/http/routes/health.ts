import type { Hono } from "hono";
import { preflight } from "../../lib/ops/preflight.js";
import type { RouteContext } from "./context.js";

/** GET /health: the preflight summary; reveals no secrets and no row content (names, levels, fixes). */
export function registerHealthRoute(app: Hono, r: RouteContext): void {
  app.get("/health", async (c) => {
    const ctx = await r.deps.context();
    const report = await preflight(
      { store: ctx.store, config: r.deps.config, providerFor: r.deps.providerFor },
      { probe: c.req.query("probe") === "1" },
    );
    return c.json(report, report.status === "ok" ? 200 : 503);
  });
}
