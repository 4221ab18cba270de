/**
 * OpenAI (or OpenAI-compatible) embedding provider. This file is the one boundary where HTTP failures
 * become the typed errors of ../errors.ts; the pipeline never sees an SDK error.
 *
 * Invariants:
 * - The SDK never retries on its own (maxRetries 0 by default): the durable engine retries whole
 *   batches, and two retry layers would multiply into a 429 storm.
 * - Every request waits for the shared rate governor and reports the response headers back to it.
 * - A batch either returns one outcome per input or throws; nothing partial is returned on a batch-wide
 *   failure (rate limit, outage, bad key, wrong dimension, malformed response).
 */
import OpenAI, { APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import {
  errorMessage,
  MalformedResponseError,
  RateLimitedError,
  TargetConfigError,
  TransientError,
} from "../errors.js";
import type { EmbedBatchResult, EmbeddingProvider, EmbedOptions, EmbedOutcome } from "./provider.js";
import { type RateGovernor, retryAfterMsFromHeaders } from "./rate-governor.js";
import { truncateToTokens } from "./tokenizer.js";

export interface OpenAIProviderOptions {
  apiKey: string;
  baseURL?: string;
  organization?: string;
  project?: string;
  model: string;
  /** Sent to the API (text-embedding-3-* only) to shorten vectors. */
  dimensions?: number;
  /** The target column's dimension; checked against every returned vector even when `dimensions` is not sent. */
  expectedDimensions?: number;
  /** SDK-level retries; 0 because the engine retries whole batches. */
  maxRetries?: number;
  timeoutMs?: number;
  governor?: RateGovernor;
  /** OpenAI's per-input, per-request token and per-request input limits. */
  maxInputTokens?: number;
  maxRequestTokens?: number;
  maxRequestInputs?: number;
}

const DEFAULT_BASE_URL = "https://api.openai.com/v1";
// An embeddings request of 300k tokens completes in seconds; a minute without an answer is a stuck connection.
const DEFAULT_TIMEOUT_MS = 60_000;
// Used to pause the governor after a 429 that carried no retry hint at all.
const FALLBACK_RATE_LIMIT_PAUSE_MS = 1000;

const NATIVE_DIMENSIONS: Record<string, number> = {
  "text-embedding-3-small": 1536,
  "text-embedding-3-large": 3072,
  "text-embedding-ada-002": 1536,
};

interface Item {
  unique: number;
  text: string;
  tokens: number;
  truncated: boolean;
}

type ItemResult = { ok: true; vector: Float32Array } | { ok: false; error: string };

interface Tally {
  requests: number;
  tokens: number;
}

export function createOpenAIProvider(options: OpenAIProviderOptions): EmbeddingProvider {
  const model = options.model;
  const baseURL = options.baseURL ?? DEFAULT_BASE_URL;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxInputTokens = options.maxInputTokens ?? 8191;
  const maxRequestTokens = options.maxRequestTokens ?? 300_000;
  const maxRequestInputs = options.maxRequestInputs ?? 2048;
  const governor = options.governor;
  const expected = resolveDimensions(options);
  const redact = redactor(options.apiKey);
  const shownURL = withoutCredentials(baseURL);

  // Every option is passed explicitly: the SDK would otherwise fall back to process.env, and config
  // is read in exactly one module.
  const client = new OpenAI({
    apiKey: options.apiKey,
    baseURL,
    organization: options.organization ?? null,
    project: options.project ?? null,
    webhookSecret: null,
    maxRetries: options.maxRetries ?? 0,
    timeout: timeoutMs,
    logLevel: "warn",
  });

  async function request(items: Item[], tally: Tally, results: ItemResult[], signal?: AbortSignal) {
    const requestTokens = items.reduce((sum, item) => sum + item.tokens, 0);
    await governor?.acquire(requestTokens, signal);
    tally.requests += 1;
    let body: unknown;
    try {
      const { data, response } = await client.embeddings
        .create(
          {
            model,
            input: items.map((item) => item.text),
            // Explicit base64 makes the SDK hand back the raw strings; decoding them here is what lets
            // a malformed payload be detected instead of silently becoming zeros.
            encoding_format: "base64",
            ...(options.dimensions !== undefined ? { dimensions: options.dimensions } : {}),
          },
          { signal },
        )
        .withResponse();
      governor?.observe(response.headers);
      body = data;
    } catch (err) {
      const failure = classify(err, signal);
      if (failure.kind === "throw") throw failure.error;
      if (items.length === 1) {
        results[items[0]!.unique] = { ok: false, error: failure.message };
        return;
      }
      // A 400 names no index, so bisect: k bad inputs among n cost about 2k·log2(n) extra requests,
      // and every good input still gets its vector.
      const mid = Math.ceil(items.length / 2);
      await request(items.slice(0, mid), tally, results, signal);
      await request(items.slice(mid), tally, results, signal);
      return;
    }
    const { vectors, billed } = parseResponse(body, items.length);
    tally.tokens += billed ?? requestTokens;
    for (const [i, item] of items.entries()) results[item.unique] = { ok: true, vector: vectors[i]! };
  }

  type Classified = { kind: "input"; message: string } | { kind: "throw"; error: Error };

  function classify(err: unknown, signal?: AbortSignal): Classified {
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
    if (err.headers) governor?.observe(err.headers);
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

  function dimensionFix(): string {
    return options.dimensions === undefined
      ? `set dimensions: ${expected} on the target (text-embedding-3-* only) or alter the column to the model's native size and re-embed`
      : `remove dimensions from the target (model "${model}" may not support it) and alter the column to the model's native size`;
  }

  function parseResponse(body: unknown, count: number): { vectors: Float32Array[]; billed?: number } {
    const data = (body as { data?: unknown } | null)?.data;
    if (!Array.isArray(data)) throw new MalformedResponseError("OpenAI response has no data array");
    if (data.length !== count) {
      throw new MalformedResponseError(`sent ${count} inputs to OpenAI, got ${data.length} embeddings back`);
    }
    const vectors: Float32Array[] = new Array(count);
    for (const [position, entry] of data.entries()) {
      const rawIndex = (entry as { index?: unknown } | null)?.index;
      const index = rawIndex === undefined ? position : rawIndex;
      if (
        typeof index !== "number" ||
        !Number.isInteger(index) ||
        index < 0 ||
        index >= count ||
        vectors[index]
      ) {
        throw new MalformedResponseError(
          `OpenAI response has a missing, duplicate or out-of-range index at ${position}`,
        );
      }
      const vector = decodeEmbedding((entry as { embedding?: unknown } | null)?.embedding);
      if (!vector || vector.length === 0) {
        throw new MalformedResponseError(`embedding ${index} is neither base64 float32 nor a number array`);
      }
      vectors[index] = vector;
    }
    const length = vectors[0]?.length ?? 0;
    if (vectors.some((v) => v.length !== length)) {
      throw new MalformedResponseError("OpenAI returned vectors of different lengths in one response");
    }
    if (length !== expected) {
      throw new TargetConfigError(
        `expected ${expected} dimensions, got ${length} from model "${model}"`,
        options.dimensions === undefined
          ? `set dimensions: ${expected} on the target (text-embedding-3-* only) or alter the column to vector(${length}) and re-embed`
          : `the server ignored dimensions=${options.dimensions}; use a model that supports it or alter the column to vector(${length}) and re-embed`,
      );
    }
    for (const [index, vector] of vectors.entries()) {
      for (const value of vector) {
        if (!Number.isFinite(value))
          throw new MalformedResponseError(`embedding ${index} contains NaN or Infinity`);
      }
    }
    const total = (body as { usage?: { total_tokens?: unknown } }).usage?.total_tokens;
    const billed = typeof total === "number" && Number.isFinite(total) && total >= 0 ? total : undefined;
    return { vectors, billed };
  }

  async function embed(texts: readonly string[], embedOptions: EmbedOptions = {}): Promise<EmbedBatchResult> {
    const signal = embedOptions.signal;
    // Identical texts (template rows, re-queued duplicates) are billed once and fanned back out.
    const uniqueOf = new Map<string, number>();
    const positions: number[] = [];
    const items: Item[] = [];
    const results: ItemResult[] = [];
    for (const text of texts) {
      let unique = uniqueOf.get(text);
      if (unique === undefined) {
        unique = uniqueOf.size;
        uniqueOf.set(text, unique);
        if (text.length === 0) {
          results[unique] = { ok: false, error: "input is empty; the embeddings API rejects empty strings" };
        } else {
          const cut = truncateToTokens(text, maxInputTokens);
          items.push({ unique, text: cut.text, tokens: cut.tokens, truncated: cut.truncated });
        }
      }
      positions.push(unique);
    }

    const tally: Tally = { requests: 0, tokens: 0 };
    for (const group of pack(items, maxRequestInputs, maxRequestTokens)) {
      await request(group, tally, results, signal);
    }

    const itemOf = new Map(items.map((item) => [item.unique, item]));
    const handedOut = new Set<number>();
    const outcomes = positions.map((unique): EmbedOutcome => {
      const result = results[unique];
      if (!result) throw new MalformedResponseError("internal: an input got no result");
      if (!result.ok) return result;
      const item = itemOf.get(unique)!;
      // Duplicates get their own copy so a caller normalising in place cannot corrupt a sibling row.
      const vector = handedOut.has(unique) ? result.vector.slice() : result.vector;
      handedOut.add(unique);
      return { ok: true, vector, tokens: item.tokens, truncated: item.truncated };
    });
    return { outcomes, tokens: tally.tokens, requests: tally.requests };
  }

  return { name: "openai", model, dimensions: expected, embed };
}

function resolveDimensions(options: OpenAIProviderOptions): number {
  const { dimensions, expectedDimensions, model } = options;
  if (dimensions !== undefined && expectedDimensions !== undefined && dimensions !== expectedDimensions) {
    throw new TargetConfigError(
      `the target column has ${expectedDimensions} dimensions but the provider asks for ${dimensions}`,
      `set dimensions: ${expectedDimensions} on the target, or alter the column to vector(${dimensions})`,
    );
  }
  const resolved = dimensions ?? expectedDimensions ?? NATIVE_DIMENSIONS[model];
  if (resolved === undefined) {
    throw new TargetConfigError(
      `cannot tell how many dimensions model "${model}" returns`,
      "set dimensions on the target (or pass the column's dimension as expectedDimensions)",
    );
  }
  return resolved;
}

/** Greedy packing in input order, by real token counts, within both per-request limits. */
function pack(items: Item[], maxInputs: number, maxTokens: number): Item[][] {
  const groups: Item[][] = [];
  let current: Item[] = [];
  let tokens = 0;
  for (const item of items) {
    if (current.length > 0 && (current.length >= maxInputs || tokens + item.tokens > maxTokens)) {
      groups.push(current);
      current = [];
      tokens = 0;
    }
    current.push(item);
    tokens += item.tokens;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

// Typed arrays use the platform's byte order; the API sends little-endian float32.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function decodeEmbedding(raw: unknown): Float32Array | undefined {
  if (typeof raw === "string") {
    const bytes = Buffer.from(raw, "base64");
    if (bytes.byteLength % 4 !== 0) return undefined;
    const out = new Float32Array(bytes.byteLength / 4);
    if (LITTLE_ENDIAN) {
      new Uint8Array(out.buffer).set(bytes);
    } else {
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
    }
    return out;
  }
  // OpenAI-compatible servers sometimes ignore encoding_format and send floats.
  if (Array.isArray(raw)) {
    const out = new Float32Array(raw.length);
    for (const [i, value] of raw.entries()) {
      if (typeof value !== "number") return undefined;
      out[i] = value;
    }
    return out;
  }
  return undefined;
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

function redactor(apiKey: string): (text: string) => string {
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

function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = "";
    parsed.password = "";
    return parsed.toString().replace(/\/$/u, "");
  } catch {
    return "the configured base URL";
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(errorMessage(value));
}
