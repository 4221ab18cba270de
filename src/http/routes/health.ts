import type { Hono } from "hono";
import { preflight } from "../../lib/ops/preflight.js";
import { isAdmin } from "../auth.js";
import type { RouteContext } from "./context.js";

/**
 * GET /health: the preflight summary, for load balancers and people. Without the admin token it says
 * only whether the service is healthy and how many checks are at each level: no target, schema,
 * table or column names. With it, the whole report (names, levels, fixes; never a secret or row
 * content), and `?probe=1` adds the live provider call per target, a paid request: token only.
 */
export function registerHealthRoute(app: Hono, r: RouteContext): void {
  app.get("/health", async (c) => {
    const admin = isAdmin(r.deps.config.EMBEDDINGS_ADMIN_TOKEN, c.req.header("authorization"));
    const probe = c.req.query("probe") === "1";
    if (probe && !admin) {
      c.header("WWW-Authenticate", 'Bearer realm="embeddings-sync"');
      return c.json(
        {
          error:
            "the live provider probe needs the admin token: Authorization: Bearer <EMBEDDINGS_ADMIN_TOKEN>",
        },
        401,
      );
    }
    const ctx = await r.deps.context();
    const report = await preflight(
      { store: ctx.store, config: r.deps.config, providerFor: r.deps.providerFor },
      { probe },
    );
    const status = report.status === "ok" ? 200 : 503;
    if (admin) return c.json(report, status);
    const levels = { ok: 0, config: 0, transient: 0 };
    for (const check of report.checks) levels[check.level]++;
    return c.json({ status: report.status, checks: levels }, status);
  });
}
