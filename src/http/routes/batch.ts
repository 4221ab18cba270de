import { randomUUID } from "node:crypto";
import type { Hono } from "hono";
import { processBatch } from "../../lib/core/batch.js";
import { isRetryable } from "../../lib/errors.js";
import { forWork } from "../../lib/logger.js";
import { batchBody, jsonBody } from "../request.js";
import type { RouteContext } from "./context.js";

/**
 * POST /batch: one batch, synchronously, for callers that drive batches themselves. With a jobId,
 * total and remaining come from that job's counters (O(1)); without one, from the target's row
 * states (an index-only count, never a scan of the source table).
 */
export function registerBatchRoute(app: Hono, r: RouteContext): void {
  app.post("/batch", async (c) => {
    const body = await jsonBody(c, batchBody);
    const { store } = await r.deps.context();
    const target = await store.getTarget(body.target);
    // An unknown job is refused before anything is claimed or embedded.
    if (body.jobId) await store.getJob(body.jobId);
    const workerId = `http:${randomUUID()}`;
    const log = forWork(r.logger, {
      jobId: body.jobId,
      target: target.name,
      batch: workerId,
      step: "http-batch",
    });
    const started = performance.now();
    let b: Awaited<ReturnType<typeof processBatch>>;
    try {
      b = await processBatch(
        { store, provider: r.deps.providerFor(target) },
        {
          target,
          workerId,
          batchSize: body.batchSize ?? r.deps.config.EMBEDDINGS_BATCH_SIZE,
          jobId: body.jobId,
          leaseSeconds: r.deps.config.EMBEDDINGS_LEASE_SECONDS,
        },
      );
    } catch (err) {
      // Series only for registered targets: a typo must not create a label value forever.
      r.metrics.batches.inc({ target: target.name, outcome: isRetryable(err) ? "transient" : "error" });
      log.warn({ err }, "batch failed");
      throw err;
    }
    let total = b.total;
    let remaining = b.remaining;
    if (!body.jobId) {
      const q = await store.queueCounts(target.name);
      total = q.tracked;
      remaining = b.complete ? 0 : q.remaining;
    }
    r.metrics.batches.inc({ target: target.name, outcome: "ok" });
    r.metrics.batchRows.inc({ target: target.name, result: "processed" }, b.processed);
    r.metrics.batchRows.inc({ target: target.name, result: "failed" }, b.failed);
    r.metrics.batchRows.inc({ target: target.name, result: "skipped" }, b.skipped);
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
  });
}
