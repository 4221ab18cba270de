import { NonRetriableError, RetryAfterError } from "inngest";
import { ConfigError } from "../lib/config.js";
import {
  errorMessage,
  InputError,
  MalformedResponseError,
  RateLimitedError,
  TargetConfigError,
} from "../lib/errors.js";

/**
 * The one place lib failures become Inngest retry behaviour:
 *   rate limited          -> RetryAfterError with the server's delay
 *   config / input        -> NonRetriableError (retrying cannot help; the message says what to fix)
 *   malformed twice       -> NonRetriableError
 *   anything else         -> rethrown as is: Inngest retries the step with its own backoff
 * Never swallowed: the step fails and Inngest sees it (the 003 report's silent catch).
 */
export function toInngestError(err: unknown, attempt: number): Error {
  if (err instanceof RateLimitedError) {
    return new RetryAfterError(err.message, Math.max(err.retryAfterMs ?? 1000, 1000), { cause: err });
  }
  if (err instanceof TargetConfigError || err instanceof InputError || err instanceof ConfigError) {
    return new NonRetriableError(err.message, { cause: err });
  }
  if (err instanceof MalformedResponseError && attempt >= 1) {
    return new NonRetriableError(`${err.message} (twice in a row)`, { cause: err });
  }
  const code = (err as { code?: unknown } | null)?.code;
  // Bad input reported by the SQL API (unknown target, invalid name): permanent.
  if (typeof code === "string" && ["22023", "42P01", "42703", "P0002"].includes(code)) {
    return new NonRetriableError(errorMessage(err), { cause: err });
  }
  return err instanceof Error ? err : new Error(errorMessage(err));
}

/** Runs a step body and maps its failure once. */
export async function mapped<T>(attempt: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toInngestError(err, attempt);
  }
}
