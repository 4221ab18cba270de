import { APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import {
  errorMessage,
  MalformedResponseError,
  RateLimitedError,
  TargetConfigError,
  TransientError,
} from "../errors.js";
import type { RateGovernor, RatePermit } from "./rate-governor.js";
import { retryAfterMsFromHeaders } from "./rate-headers.js";

/** OpenAI SDK failures classified, and the redaction every message passes through first. */

// Used to pause the governor after a 429 that carried no retry hint at all.
const FALLBACK_RATE_LIMIT_PAUSE_MS = 1000;

export type Classified = { kind: "input"; message: string } | { kind: "throw"; error: Error };

export interface ClassifyContext {
  signal?: AbortSignal;
  timeoutMs: number;
  model: string;
  /** The base URL without credentials, safe to show. */
  shownURL: string;
  redact: (text: string) => string;
  governor?: RateGovernor;
  /** The governor's grant for the failed request, handed back with its headers. */
  permit?: RatePermit;
  /** What to change when the server rejects the request's dimensions or model for every input. */
  dimensionFix: () => string;
}

/**
 * The one place an OpenAI SDK failure becomes a typed error (../errors.ts), or, for a 400 caused by
 * one input, that input's own failure ("input": the batch is split to find it).
 */
export function classifyOpenAIError(err: unknown, ctx: ClassifyContext): Classified {
  const { signal, timeoutMs, model, shownURL, redact, governor, permit, dimensionFix } = ctx;
  // A caller's abort (cancel, shutdown) is not a provider failure and must not be retried as one.
  if (err instanceof APIUserAbortError || signal?.aborted) {
    return { kind: "throw", error: asError(signal?.reason ?? err) };
  }
  if (err instanceof APIConnectionTimeoutError) {
    return { kind: "throw", error: new TransientError(`OpenAI request timed out after ${timeoutMs} ms`) };
  }
  if (!(err instanceof APIError)) {
    // The SDK only throws non-API errors while parsing a 2xx body (e.g. invalid JSON).
    return {
      kind: "throw",
      error: new MalformedResponseError(`unreadable OpenAI response: ${redact(errorMessage(err))}`),
    };
  }
  if (err.headers) governor?.observe(err.headers, permit);
  const status = err.status;
  const detail = redact(providerMessage(err));
  const retryAfterMs = err.headers ? retryAfterMsFromHeaders(err.headers) : undefined;

  if (status === undefined) {
    const cause = rootCause(err.cause);
    const reason = cause === undefined ? "" : `: ${redact(cause)}`;
    return {
      kind: "throw",
      error: new TransientError(`could not reach ${shownURL}${reason}`, undefined, { cause: err }),
    };
  }
  if (status === 429) {
    if (err.code === "insufficient_quota") {
      return {
        kind: "throw",
        error: new TargetConfigError(
          `OpenAI account is out of quota (${detail})`,
          "add credits or raise the project's budget on the OpenAI billing page",
        ),
      };
    }
    governor?.penalize(retryAfterMs ?? FALLBACK_RATE_LIMIT_PAUSE_MS);
    return { kind: "throw", error: new RateLimitedError(`OpenAI rate limit: ${detail}`, retryAfterMs) };
  }
  if (status === 401) {
    return {
      kind: "throw",
      error: new TargetConfigError(
        `OpenAI rejected the API key (401 ${err.code ?? "unauthorized"})`,
        "set a valid OPENAI_API_KEY for this target (and the matching organization/project if the key is scoped)",
      ),
    };
  }
  if (status === 403) {
    return {
      kind: "throw",
      error: new TargetConfigError(
        `OpenAI refused access to model "${model}" (403: ${detail})`,
        "use a key whose project is allowed to call this model, or change the target's model",
      ),
    };
  }
  if (status === 404 || err.code === "model_not_found") {
    return {
      kind: "throw",
      error: new TargetConfigError(
        `model "${model}" was not found at ${shownURL} (${detail})`,
        "set the target's model to an embedding model this account can use, or fix OPENAI_BASE_URL",
      ),
    };
  }
  if (status === 400 || status === 413 || status === 422) {
    if (isRequestWide(err, detail)) {
      return {
        kind: "throw",
        error: new TargetConfigError(
          `OpenAI rejected the request for model "${model}": ${detail}`,
          dimensionFix(),
        ),
      };
    }
    return { kind: "input", message: detail };
  }
  // No `cause`: the SDK error carries the raw body, and anything attached here ends up in logs.
  const requestId = err.requestID ? ` (request ${err.requestID})` : "";
  return {
    kind: "throw",
    error: new TransientError(`OpenAI answered ${status}: ${detail}${requestId}`, retryAfterMs),
  };
}

function providerMessage(err: APIError): string {
  const message = (err.error as { message?: unknown } | undefined)?.message;
  return typeof message === "string" && message !== "" ? message : err.message;
}

/** A 400 about a request parameter (not an input) would fail identically for every half of a split. */
function isRequestWide(err: APIError, detail: string): boolean {
  const param = typeof err.param === "string" ? err.param : "";
  return ["model", "dimensions", "encoding_format"].includes(param) || /\bdimensions\b/iu.test(detail);
}

export function redactor(apiKey: string): (text: string) => string {
  return (text) => {
    let out = apiKey.length >= 4 ? text.split(apiKey).join("[redacted]") : text;
    // Servers echo keys back in 401 bodies, sometimes partially masked; neither form may reach a log.
    out = out.replace(/\bsk-[A-Za-z0-9_*.-]{3,}/gu, "sk-[redacted]");
    return out;
  };
}

/** undici wraps the useful part ("connect ECONNREFUSED", "other side closed") a level or two down. */
function rootCause(error: unknown): string | undefined {
  let current = error;
  for (let depth = 0; depth < 5; depth++) {
    const next = (current as { cause?: unknown } | null)?.cause;
    if (next === undefined || next === null) break;
    current = next;
  }
  if (current === undefined) return undefined;
  const code = (current as { code?: unknown } | null)?.code;
  const message = errorMessage(current);
  return typeof code === "string" && !message.includes(code) ? `${code} ${message}` : message;
}

export function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = "";
    parsed.password = "";
    return parsed.toString().replace(/\/$/u, "");
  } catch {
    return "the configured base URL";
  }
}

export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(errorMessage(value));
}
