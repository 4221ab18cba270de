import { NonRetriableError, RetryAfterError } from "inngest";
import { classifyFailure } from "../lib/errors.js";

/**
 * lib's failure classes in Inngest's terms, nothing more (the classifying is lib's):
 *   rate-limited                          -> RetryAfterError with the server's delay
 *   configuration, bad input              -> NonRetriableError (the message says what to fix)
 *   transient, unexpected                 -> rethrown as is: Inngest retries the step
 * Never swallowed: the step fails and Inngest sees it.
 */
export function toInngestError(err: unknown, attempt: number): Error {
  const failure = classifyFailure(err, { attempt });
  switch (failure.kind) {
    case "rate-limited":
      return new RetryAfterError(failure.message, Math.max(failure.retryAfterMs, 1000), { cause: err });
    case "configuration":
    case "bad-input":
      return new NonRetriableError(
        failure.fix && !failure.message.includes(failure.fix)
          ? `${failure.message} (fix: ${failure.fix})`
          : failure.message,
        {
          cause: err,
        },
      );
    default:
      return err instanceof Error ? err : new Error(failure.message);
  }
}

/** Runs a step body and maps its failure once. */
export async function mapped<T>(attempt: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toInngestError(err, attempt);
  }
}
