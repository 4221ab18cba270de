import { type DestinationStream, type Logger, type LoggerOptions as PinoOptions, pino } from "pino";
import type { Config } from "./config.js";

/**
 * Structured JSON logs (pino), one line per event, with stable field names for the work they
 * describe: `jobId`, `target`, `batch`, `step`. Two guarantees, enforced here rather than at each
 * call site:
 *  - no secret: keys that name one (authorization, apiKey, token, OPENAI_API_KEY, ...) are censored
 *    at any depth, and the configured secret values themselves are masked wherever they appear in a
 *    string (an error message quoting a URL with a password, a provider echoing the key);
 *  - no row content: keys that carry it (content, text, texts, input, vector, embedding, ...) are
 *    censored at any depth. Log ids and counts, never rows.
 */

export type { Logger };

export const REDACTED = "[redacted]";

const SECRET_KEYS = [
  "authorization",
  "cookie",
  "password",
  "secret",
  "token",
  "apikey",
  "api_key",
  "signingkey",
  "eventkey",
  "webhookurl",
  "openai_api_key",
  "supabase_service_role_key",
  "embeddings_admin_token",
  "embeddings_alert_webhook_url",
  "inngest_signing_key",
  "inngest_signing_key_fallback",
  "inngest_event_key",
  "database_url",
];

const CONTENT_KEYS = [
  "content",
  "contents",
  "text",
  "texts",
  "input",
  "inputs",
  "vector",
  "vectors",
  "embedding",
  "embeddings",
  "body",
  "row",
  "rows",
];

const SECRET = new Set(SECRET_KEYS);
const CONTENT = new Set(CONTENT_KEYS);

function censored(key: string, value: unknown): boolean {
  if (value === undefined || value === null) return false;
  const k = key.toLowerCase();
  if (SECRET.has(k)) return true;
  // A count or a flag under a content-ish name (`rows: 20`) cannot carry content: keep it.
  return CONTENT.has(k) && typeof value !== "number" && typeof value !== "boolean";
}

/** The configured secret values worth masking (short values would mask ordinary words). */
export function secretValues(config: Partial<Config>): string[] {
  const out: string[] = [];
  const add = (v: string | undefined) => {
    if (v && v.length >= 8) out.push(v);
  };
  add(config.OPENAI_API_KEY);
  add(config.SUPABASE_SERVICE_ROLE_KEY);
  add(config.EMBEDDINGS_ADMIN_TOKEN);
  add(config.EMBEDDINGS_ALERT_WEBHOOK_URL);
  add(config.INNGEST_SIGNING_KEY);
  add(config.INNGEST_SIGNING_KEY_FALLBACK);
  add(config.INNGEST_EVENT_KEY);
  if (config.DATABASE_URL) {
    add(config.DATABASE_URL);
    try {
      add(decodeURIComponent(new URL(config.DATABASE_URL).password));
    } catch {
      // Not a URL: the whole value is already masked above.
    }
  }
  // Longest first, so a URL is masked whole before the password inside it.
  return out.sort((a, b) => b.length - a.length);
}

function maskString(s: string, secrets: readonly string[]): string {
  let out = s;
  for (const v of secrets) if (out.includes(v)) out = out.split(v).join(REDACTED);
  return out;
}

/** A copy with censored keys replaced and secret values masked, at any depth. */
export function scrub(value: unknown, secrets: readonly string[], depth = 0): unknown {
  if (typeof value === "string") return maskString(value, secrets);
  if (value === null || typeof value !== "object" || depth > 8) return value;
  if (value instanceof Error) return errorFields(value, secrets, depth);
  if (Array.isArray(value)) return value.map((v) => scrub(v, secrets, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = censored(k, v) ? REDACTED : scrub(v, secrets, depth + 1);
  }
  return out;
}

/** pino's err shape (type, message, stack, code), masked; the cause chain is kept. */
function errorFields(err: Error, secrets: readonly string[], depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {
    type: err.name,
    message: maskString(err.message, secrets),
    stack: err.stack ? maskString(err.stack, secrets) : undefined,
  };
  for (const [k, v] of Object.entries(err)) out[k] = censored(k, v) ? REDACTED : scrub(v, secrets, depth + 1);
  if (err.cause !== undefined) out.cause = scrub(err.cause, secrets, depth + 1);
  return out;
}

export interface LoggerOptions {
  /** Where lines go (default: stdout). Tests pass a stream to read them back. */
  destination?: DestinationStream;
  /** Fields on every line, e.g. { component: "cli" }. */
  base?: Record<string, unknown>;
}

export function createLogger(
  config: Pick<Config, "LOG_LEVEL"> & Partial<Config>,
  options: LoggerOptions = {},
): Logger {
  const secrets = secretValues(config);
  const settings: PinoOptions = {
    level: config.LOG_LEVEL,
    base: { service: "embeddings-sync", ...options.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    messageKey: "msg",
    formatters: {
      level: (label) => ({ level: label }),
      bindings: (b) => scrub(b, secrets) as Record<string, unknown>,
      log: (o) => scrub(o, secrets) as Record<string, unknown>,
    },
    hooks: {
      // The message string and any printf arguments are masked too (formatters only see objects).
      logMethod(args, method) {
        // logger.error(err, "msg"): keep pino's { err } convention for a bare Error.
        const masked = args.map((a, i) =>
          i === 0 && a instanceof Error ? { err: scrub(a, secrets) } : scrub(a, secrets),
        ) as Parameters<typeof method>;
        return method.apply(this, masked);
      },
    },
  };
  return options.destination ? pino(settings, options.destination) : pino(settings);
}

/** The fields that tie a line to the work: pass whichever are known. */
export interface WorkFields {
  jobId?: string | null;
  target?: string;
  batch?: number | string;
  step?: string;
}

/** A child logger whose every line carries the job id, target, batch and step. */
export function forWork(logger: Logger, fields: WorkFields): Logger {
  const bound: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) bound[k] = v;
  return logger.child(bound);
}
