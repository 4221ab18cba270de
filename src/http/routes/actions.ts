import type { Hono } from "hono";
import { inngestConfigured, sendCancelled } from "../../functions/client.js";
import { forWork } from "../../lib/logger.js";
import { cancelJob, retryRows } from "../../lib/ops/actions.js";
import { batchApiForTarget } from "../../lib/providers/index.js";
import { cancelBody, jsonBody, retryBody } from "../request.js";
import type { RouteContext } from "./context.js";

/** The operator's actions: POST /retry and POST /cancel (the same code the CLI verbs run). */
export function registerActionRoutes(app: Hono, r: RouteContext): void {
  // Forces a retry (see retryRows): dead letters by default, given rows, or completed-but-NULL rows.
  app.post("/retry", async (c) => {
    const body = await jsonBody(c, retryBody);
    const { store } = await r.deps.context();
    const result = await retryRows(store, body);
    forWork(r.logger, { target: body.target, step: "http-retry" }).info(
      { scope: result.scope, requeued: result.requeued, ids: body.ids?.length ?? 0 },
      "retry requested",
    );
    return c.json(result);
  });

  // Cancels a job (see cancelJob) and tells Inngest, whose cancelOn stops the coordinator and lanes.
  app.post("/cancel", async (c) => {
    const body = await jsonBody(c, cancelBody);
    const { store } = await r.deps.context();
    const configured = inngestConfigured(r.deps.config);
    const result = await cancelJob(store, body.jobId, {
      reason: "cancelled by the operator (POST /cancel)",
      notify: configured ? (job) => sendCancelled(r.inngest, job.id, job.eventId) : undefined,
      batchApiFor: async (name) => {
        const t = await store.getTarget(name);
        return r.deps.batchApiFor ? r.deps.batchApiFor(t) : batchApiForTarget(t, r.deps.config);
      },
    });
    if (!result.cancelled) {
      return c.json(
        { error: `job ${result.jobId} already ${result.status}: nothing to cancel`, ...result },
        409,
      );
    }
    forWork(r.logger, { jobId: result.jobId, target: result.target ?? undefined, step: "http-cancel" }).info(
      {
        released: result.released,
        parked: result.parked,
        eventSent: result.eventSent,
        eventError: result.eventError,
      },
      "job cancelled",
    );
    const answer = configured
      ? result
      : { ...result, eventError: "Inngest is not configured (no INNGEST_EVENT_KEY)" };
    // A job that does not exist yet is cancelled ahead: accepted, it takes effect if the job starts.
    return c.json(answer, result.known ? 200 : 202);
  });
}
