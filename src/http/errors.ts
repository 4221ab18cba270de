import type { Context } from "hono";
import { z } from "zod";
import { classifyFailure } from "../lib/errors.js";
import type { Logger } from "../lib/logger.js";

/**
 * The app's one error handler (app.onError): handlers throw, and this maps lib's failure classes to
 * HTTP, nothing more: bad input 400 (unknown target or job 404), configuration 422 with the fix,
 * rate limited 429 and transient 503 with Retry-After, anything unexpected 500 (and logged).
 */
export function errorToResponse(err: unknown, c: Context, logger?: Logger): Response {
  if (err instanceof z.ZodError) {
    return c.json(
      { error: err.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ") },
      400,
    );
  }
  const failure = classifyFailure(err);
  switch (failure.kind) {
    case "bad-input":
      return c.json(
        { error: failure.message, ...(failure.fix ? { fix: failure.fix } : {}) },
        failure.notFound ? 404 : 400,
      );
    case "configuration":
      return c.json({ error: failure.message, ...(failure.fix ? { fix: failure.fix } : {}) }, 422);
    case "rate-limited":
    case "transient": {
      const ms = failure.retryAfterMs ?? 5000;
      c.header("Retry-After", String(Math.max(Math.ceil(ms / 1000), 1)));
      return c.json({ error: failure.message, retryable: true }, failure.kind === "rate-limited" ? 429 : 503);
    }
    default:
      logger?.error({ err }, "request failed");
      return c.json({ error: failure.message }, 500);
  }
}
