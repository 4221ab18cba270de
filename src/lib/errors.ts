/**
 * Failures, classified once. Lib code throws the small typed errors below (or lets a database error
 * with its SQLSTATE through); `classifyFailure` decides what any failure means, and each engine only
 * maps that answer to its own terms: Inngest (src/functions/errors.ts) to a retry, NonRetriableError
 * or RetryAfterError; HTTP (src/http/errors.ts) to a status code; the CLI (src/cli/exit.ts) to an
 * exit code. Nothing in lib imports an engine.
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

/** The response was malformed (missing data, wrong count, NaN): retried once, then permanent. */
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

/** The environment is wrong (a variable missing or malformed): the process cannot do its work. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Bad input from a person (CLI flag, event field, request body, registration argument). Never retried. */
export class InputError extends Error {
  override name = "InputError";
  /** The request names something that does not exist (an unknown target or job). */
  readonly notFound: boolean;
  readonly fix?: string;
  constructor(message: string, options: { notFound?: boolean; fix?: string } = {}) {
    super(message);
    this.notFound = options.notFound ?? false;
    if (options.fix) this.fix = options.fix;
  }
}

/**
 * What a failure means, whatever raised it:
 *  - transient: an outage or a lost race; the same call later will likely succeed (retry, with
 *    `retryAfterMs` when the server said how long);
 *  - rate-limited: the provider asked us to slow down for `retryAfterMs`;
 *  - configuration: a person must change the setup (key, model, dimensions, migrations, privileges);
 *  - bad-input: the request itself is wrong (unknown target or job: `notFound`); retrying cannot help;
 *  - unexpected: anything else (a bug, an unknown error): retried by durable engines, reported loudly.
 * Per-row failures (the provider rejects one input) are not thrown at all: they are that row's outcome.
 */
export type Failure =
  | { kind: "transient"; message: string; retryAfterMs?: number }
  | { kind: "rate-limited"; message: string; retryAfterMs: number }
  | { kind: "configuration"; message: string; fix?: string }
  | { kind: "bad-input"; message: string; fix?: string; notFound: boolean }
  | { kind: "unexpected"; message: string };

/** SQLSTATEs worth retrying: the database will likely answer the same call correctly later. */
export const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set([
  "40001", // serialization_failure
  "40P01", // deadlock_detected
  "55P03", // lock_not_available (lock_timeout)
  "57P01", // admin_shutdown (a restart or failover)
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "57014", // query_canceled (statement timeout)
  "53300", // too_many_connections
  "53400", // configuration_limit_exceeded
  "08000", // connection_exception
  "08001", // sqlclient_unable_to_establish_sqlconnection
  "08003", // connection_does_not_exist
  "08004", // sqlserver_rejected_establishment_of_sqlconnection
  "08006", // connection_failure (the transports report every lost connection as this)
]);

const NETWORK_ERRNOS: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "EHOSTUNREACH",
]);

/** SQLSTATEs that mean the setup is wrong: schema not migrated, credentials, privileges. */
const CONFIGURATION_SQLSTATES: ReadonlySet<string> = new Set([
  "42883", // undefined_function: the SQL API is not installed (migrations not applied)
  "42501", // insufficient_privilege
  "3D000", // invalid_catalog_name: no such database
  "22000", // the SQL API's dimension check: the provider and the column disagree
]);

/** SQLSTATEs that mean the request is wrong: retrying the same call gives the same answer. */
function isBadInputState(code: string): boolean {
  return (
    code.startsWith("22") || // data exceptions: invalid text representation (22P02), NUL byte (22021), ...
    code === "P0002" || // no_data_found: unknown target or job
    code === "42P01" || // undefined_table
    code === "42703" || // undefined_column
    code === "42602" || // invalid_name (refused before anything is sent)
    code === "23505" // unique_violation
  );
}

function sqlstate(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A database error's hint, which the SQL API fills with the fix. */
function hintOf(err: unknown): string | undefined {
  const hint = (err as { hint?: unknown } | null)?.hint;
  return typeof hint === "string" && hint !== "" ? hint : undefined;
}

/**
 * The one classifier. `attempt` (0-based) lets a malformed provider response be retried once and
 * then treated as the configuration problem it most likely is (a base URL that is not an embeddings
 * API).
 */
export function classifyFailure(err: unknown, context: { attempt?: number } = {}): Failure {
  const message = errorMessage(err);
  if (err instanceof RateLimitedError) {
    return { kind: "rate-limited", message, retryAfterMs: Math.max(err.retryAfterMs ?? 1000, 1) };
  }
  if (err instanceof MalformedResponseError) {
    return (context.attempt ?? 0) >= 1
      ? {
          kind: "configuration",
          message: `${message} (twice in a row)`,
          fix: "check that the provider's base URL points at an OpenAI-compatible embeddings API",
        }
      : { kind: "transient", message };
  }
  if (err instanceof TransientError) return { kind: "transient", message, retryAfterMs: err.retryAfterMs };
  if (err instanceof TargetConfigError) return { kind: "configuration", message, fix: err.fix };
  if (err instanceof ConfigError) return { kind: "configuration", message };
  if (err instanceof InputError) {
    return { kind: "bad-input", message, fix: err.fix, notFound: err.notFound };
  }
  const raw = (err as { code?: unknown } | null)?.code;
  // A socket error that reached us without a transport's SQLSTATE (an HTTP client, a DNS lookup).
  if (typeof raw === "string" && NETWORK_ERRNOS.has(raw)) return { kind: "transient", message };
  // PostgREST's own codes: PGRST202 is "function not found in the schema cache" (not migrated).
  if (raw === "PGRST202") {
    return {
      kind: "configuration",
      message,
      fix: "apply supabase/migrations (supabase db push), then reload the schema cache",
    };
  }
  const code = sqlstate(err);
  if (code) {
    const fix = hintOf(err);
    if (RETRYABLE_SQLSTATES.has(code)) return { kind: "transient", message };
    // 28xxx: invalid authorization (wrong password, unknown role, a refused API key).
    if (CONFIGURATION_SQLSTATES.has(code) || code.startsWith("28"))
      return { kind: "configuration", message, fix };
    if (isBadInputState(code)) return { kind: "bad-input", message, fix, notFound: code === "P0002" };
  }
  return { kind: "unexpected", message };
}

/** True when the same call may succeed later (the in-process runner and the HTTP mapping use it). */
export function isRetryable(err: unknown, context: { attempt?: number } = {}): boolean {
  const kind = classifyFailure(err, context).kind;
  return kind === "transient" || kind === "rate-limited";
}
