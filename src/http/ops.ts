import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import type { Context, Hono, MiddlewareHandler } from "hono";
import { z } from "zod";
import type { InngestClient } from "../functions/client.js";
import type { FunctionDeps } from "../functions/deps.js";
import { backfillCancelled } from "../functions/events.js";
import { inngestDev } from "../lib/config.js";
import { processBatch } from "../lib/core/batch.js";
import { errorMessage, InputError, isRetryable, RateLimitedError, TargetConfigError } from "../lib/errors.js";
import { createLogger, forWork, type Logger } from "../lib/logger.js";
import { cancelJob, retryRows } from "../lib/ops/actions.js";
import type { ThresholdOverrides } from "../lib/ops/health.js";
import { createMetrics, type Metrics } from "../lib/ops/metrics.js";
import { readStatus } from "../lib/ops/status.js";
import { DASHBOARD_HEADERS, DASHBOARD_HTML } from "./dashboard.js";

/**
 * Operations routes on the served app: the dashboard (GET /), and behind the admin token
 * GET /status, GET /dead-letters, GET /metrics, POST /batch, POST /retry, POST /cancel.
 *
 * Auth: `Authorization: Bearer <EMBEDDINGS_ADMIN_TOKEN>`. Both sides are hashed before
 * timingSafeEqual, so neither the content nor the length of the token leaks through timing. With
 * no token configured the routes answer 503 and say what to set: never open by default.
 */

export interface OpsRouteOptions {
  inngest: InngestClient;
  logger?: Logger;
  /** A registry of this app's own (default: a fresh one). */
  metrics?: Metrics;
  thresholds?: ThresholdOverrides;
  /** Rate window for /status and /metrics, in minutes (default 15). */
  windowMinutes?: number;
}

export const OPS_PATHS = ["/status", "/dead-letters", "/metrics", "/batch", "/retry", "/cancel"] as const;

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

export function adminAuth(token: string | undefined): MiddlewareHandler {
  const expected = token ? digest(token) : null;
  return async (c, next) => {
    if (!expected) {
      return c.json(
        {
          error:
            "operations endpoints are disabled: set EMBEDDINGS_ADMIN_TOKEN to a long random value (e.g. openssl rand -hex 32) and send it as Authorization: Bearer <token>",
        },
        503,
      );
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(c.req.header("authorization") ?? "");
    const given = digest(match?.[1] ?? "");
    // Compare even when the header is missing: the answer takes the same time either way.
    const ok = timingSafeEqual(given, expected) && match !== null;
    if (!ok) {
      c.header("WWW-Authenticate", 'Bearer realm="embeddings-sync"');
      return c.json(
        {
          error: match
            ? "invalid admin token"
            : "missing admin token: send Authorization: Bearer <EMBEDDINGS_ADMIN_TOKEN>",
        },
        401,
      );
    }
    await next();
  };
}

const targetName = z.string().regex(/^[a-z][a-z0-9_]{0,47}$/, "target must be a registered target name");
const rowId = z.union([z.string().min(1), z.number()]).transform(String);

const batchBody = z.object({
  target: targetName,
  batchSize: z.number().int().min(1).max(2048).optional(),
  jobId: z.uuid("jobId must be a UUID").optional(),
});

const retryBody = z.object({
  target: targetName,
  ids: z.array(rowId).min(1).max(10_000).optional(),
  deadLetter: z.boolean().optional(),
  completed: z.boolean().optional(),
  limit: z.number().int().min(1).max(100_000).optional(),
});

const cancelBody = z.object({ jobId: z.uuid("jobId must be a UUID") });

const INPUT_SQLSTATES = new Set(["22023", "22P02", "42P01", "42703", "22000"]);

/** One mapping of failures to HTTP: bad input 400, unknown target/job 404, config 422, outage 503. */
export function errorResponse(c: Context, err: unknown, logger?: Logger) {
  if (err instanceof z.ZodError) {
    return c.json(
      { error: err.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ") },
      400,
    );
  }
  if (err instanceof InputError) return c.json({ error: err.message }, 400);
  if (err instanceof TargetConfigError) return c.json({ error: err.message, fix: err.fix }, 422);
  const code = (err as { code?: unknown } | null)?.code;
  const hint = (err as { hint?: unknown } | null)?.hint;
  if (code === "P0002")
    return c.json({ error: errorMessage(err), ...(typeof hint === "string" ? { fix: hint } : {}) }, 404);
  if (typeof code === "string" && INPUT_SQLSTATES.has(code)) return c.json({ error: errorMessage(err) }, 400);
  if (err instanceof RateLimitedError || isRetryable(err)) {
    const after = Math.max(Math.ceil(((err as { retryAfterMs?: number }).retryAfterMs ?? 5000) / 1000), 1);
    c.header("Retry-After", String(after));
    return c.json({ error: errorMessage(err), retryable: true }, err instanceof RateLimitedError ? 429 : 503);
  }
  logger?.error({ err }, "operations request failed");
  return c.json({ error: errorMessage(err) }, 500);
}

async function jsonBody(c: Context): Promise<unknown> {
  try {
    return await c.req.json();
  } catch {
    throw new InputError("send a JSON body with content-type: application/json");
  }
}

function intQuery(c: Context, name: string, min: number, max: number): number | undefined {
  const raw = c.req.query(name);
  if (raw === undefined || raw === "") return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InputError(`${name} must be a whole number from ${min} to ${max}`);
  return n;
}

export function registerOpsRoutes(app: Hono, deps: FunctionDeps, options: OpsRouteOptions): void {
  const logger = options.logger ?? createLogger(deps.config, { base: { component: "http" } });
  const metrics = options.metrics ?? createMetrics();
  const prices = deps.config.EMBEDDINGS_PRICES;
  const stores = async () => {
    const ctx = await deps.context();
    return { ctx, store: ctx.store };
  };
  const snapshot = async (target?: string, windowMinutes?: number, jobs?: number) => {
    const { store } = await stores();
    return readStatus(
      { store, prices },
      { target, windowMinutes: windowMinutes ?? options.windowMinutes, jobs, thresholds: options.thresholds },
    );
  };

  app.get("/", (c) => c.body(DASHBOARD_HTML, 200, DASHBOARD_HEADERS));

  const auth = adminAuth(deps.config.EMBEDDINGS_ADMIN_TOKEN);
  for (const path of OPS_PATHS) app.use(path, auth);

  // Per target and per job: counts, coverage, rate, ETA, tokens, cost, mismatch, health + reasons.
  app.get("/status", async (c) => {
    try {
      const target = c.req.query("target") || undefined;
      return c.json(await snapshot(target, intQuery(c, "window", 1, 10_080), intQuery(c, "jobs", 0, 100)));
    } catch (err) {
      return errorResponse(c, err, logger);
    }
  });

  // Dead-lettered rows with their errors, newest first: every target, or ?target=.
  app.get("/dead-letters", async (c) => {
    try {
      const { store } = await stores();
      const limit = intQuery(c, "limit", 1, 1000) ?? 50;
      const only = c.req.query("target") || undefined;
      const names = only ? [only] : (await store.listTargets()).map((t) => t.name);
      const targets = await Promise.all(
        names.map(async (target) => ({ target, items: await store.deadLetters(target, limit) })),
      );
      return c.json({ targets: targets.filter((t) => only || t.items.length > 0) });
    } catch (err) {
      return errorResponse(c, err, logger);
    }
  });

  // Prometheus scrape config: authorization: { credentials: <EMBEDDINGS_ADMIN_TOKEN> }. A failed
  // database read still answers 200 (embeddings_status_up 0) so the outage itself is a metric.
  app.get("/metrics", async (c) => {
    const { contentType, body } = await metrics.render(() => snapshot());
    return c.body(body, 200, { "content-type": contentType, "cache-control": "no-store" });
  });

  // The 000 report's contract for callers that drive batches themselves: one batch, synchronously.
  // With a jobId, total and remaining come from that job's counters (O(1)); without one, from the
  // target's row states (an index-only count, never a scan of the source table).
  app.post("/batch", async (c) => {
    let log = logger;
    let resolved: string | undefined;
    try {
      const body = batchBody.parse(await jsonBody(c));
      const { store } = await stores();
      const target = await store.getTarget(body.target);
      resolved = target.name;
      const workerId = `http:${randomUUID()}`;
      log = forWork(logger, { jobId: body.jobId, target: target.name, batch: workerId, step: "http-batch" });
      const started = performance.now();
      const b = await processBatch(
        { store, provider: deps.providerFor(target) },
        {
          target,
          workerId,
          batchSize: body.batchSize ?? deps.config.EMBEDDINGS_BATCH_SIZE,
          jobId: body.jobId,
          leaseSeconds: deps.config.EMBEDDINGS_LEASE_SECONDS,
        },
      );
      let total = b.total;
      let remaining = b.remaining;
      if (!body.jobId) {
        const q = await store.queueCounts(target.name);
        total = q.tracked;
        remaining = b.complete ? 0 : q.remaining;
      }
      metrics.batches.inc({ target: target.name, outcome: "ok" });
      metrics.batchRows.inc({ target: target.name, result: "processed" }, b.processed);
      metrics.batchRows.inc({ target: target.name, result: "failed" }, b.failed);
      metrics.batchRows.inc({ target: target.name, result: "skipped" }, b.skipped);
      log.info(
        {
          claimed: b.claimed,
          processed: b.processed,
          failed: b.failed,
          skipped: b.skipped,
          tokens: b.tokens,
          ms: Math.round(performance.now() - started),
        },
        "batch done",
      );
      return c.json({
        processed: b.processed,
        remaining,
        total,
        errors: b.failed,
        complete: b.complete,
        skipped: b.skipped,
        requeued: b.requeued,
        claimed: b.claimed,
        tokens: b.tokens,
        nextRetryAt: b.nextRetryAt,
        ...(body.jobId ? { jobId: body.jobId } : {}),
      });
    } catch (err) {
      // Series only for registered targets: a typo must not create a label value forever.
      if (resolved) {
        metrics.batches.inc({ target: resolved, outcome: isRetryable(err) ? "transient" : "error" });
        log.warn({ err }, "batch failed");
      }
      return errorResponse(c, err, logger);
    }
  });

  // Forces a retry (see retryRows): dead letters by default, given rows, or completed-but-NULL rows.
  app.post("/retry", async (c) => {
    try {
      const body = retryBody.parse(await jsonBody(c));
      const { store } = await stores();
      const result = await retryRows(store, body);
      forWork(logger, { target: body.target, step: "http-retry" }).info(
        { scope: result.scope, requeued: result.requeued, ids: body.ids?.length ?? 0 },
        "retry requested",
      );
      return c.json(result);
    } catch (err) {
      return errorResponse(c, err, logger);
    }
  });

  // Cancels a job (see cancelJob) and tells Inngest, whose cancelOn stops the coordinator and lanes.
  app.post("/cancel", async (c) => {
    try {
      const body = cancelBody.parse(await jsonBody(c));
      const { store } = await stores();
      const configured = inngestConfigured(deps.config);
      const result = await cancelJob(store, body.jobId, {
        reason: "cancelled by the operator (POST /cancel)",
        notify: configured ? (job) => sendCancelled(options.inngest, job.id) : undefined,
      });
      if (!result.cancelled) {
        return c.json(
          { error: `job ${result.jobId} already ${result.status}: nothing to cancel`, ...result },
          409,
        );
      }
      forWork(logger, { jobId: result.jobId, target: result.target, step: "http-cancel" }).info(
        { released: result.released, eventSent: result.eventSent, eventError: result.eventError },
        "job cancelled",
      );
      return c.json(
        configured ? result : { ...result, eventError: "Inngest is not configured (no INNGEST_EVENT_KEY)" },
      );
    } catch (err) {
      return errorResponse(c, err, logger);
    }
  });
}

/** Inngest is reachable for events when running against a dev server or with an event key. */
export function inngestConfigured(config: FunctionDeps["config"]): boolean {
  return inngestDev(config) || Boolean(config.INNGEST_EVENT_KEY);
}

/** Deterministic event id: a repeated cancel is one event for Inngest, not several. */
export async function sendCancelled(inngest: Pick<InngestClient, "send">, jobId: string): Promise<void> {
  await inngest.send(backfillCancelled.create({ jobId }, { id: `cancel-${jobId}` }));
}
