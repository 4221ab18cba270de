/**
 * Failure classes, decided once at the boundary where they happen (provider, database) and
 * mapped to engine behaviour in exactly one place per engine (src/functions/errors.ts for Inngest,
 * the CLI's runner for in-process runs). Nothing in lib imports Inngest.
 */

/** Retry the whole batch later; nothing was written. `retryAfterMs` comes from the server when known. */
export class TransientError extends Error {
  override name = "TransientError";
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** 429 from the provider: retry after the delay the server asked for. */
export class RateLimitedError extends TransientError {
  override name = "RateLimitedError";
}

/**
 * The response was malformed (missing data, wrong count, NaN). Retry once, then treat as permanent:
 * callers check `attempt >= 1` and escalate to a TargetConfigError-like stop. Nothing is written.
 */
export class MalformedResponseError extends TransientError {
  override name = "MalformedResponseError";
}

/**
 * Permanent for the whole target (bad key, unknown model, vector dimension differs from the column).
 * Stop the target; retrying cannot help. `fix` tells a person what to change.
 */
export class TargetConfigError extends Error {
  override name = "TargetConfigError";
  constructor(
    message: string,
    readonly fix: string,
    options?: { cause?: unknown },
  ) {
    super(`${message}. Fix: ${fix}`, options);
  }
}

/** Bad input from a person (CLI flag, event field, registration argument). Never retried. */
export class InputError extends Error {
  override name = "InputError";
}

/** SQLSTATEs worth retrying: the database will likely answer the same call correctly later. */
export const RETRYABLE_SQLSTATES = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "57P01", // admin_shutdown (a restart or failover)
  "57P03", // cannot_connect_now
  "57014", // query_canceled (statement timeout)
  "53300", // too_many_connections
  "08000",
  "08003",
  "08006", // connection failures
]);

export function isRetryable(err: unknown): boolean {
  if (err instanceof TransientError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && RETRYABLE_SQLSTATES.has(code);
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
