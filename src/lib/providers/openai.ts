/**
 * OpenAI (or OpenAI-compatible) embedding provider. Its failures become the typed errors of
 * ../errors.ts in openai-errors.ts; the pipeline never sees an SDK error.
 *
 * Invariants:
 * - The SDK never retries on its own (maxRetries 0 by default): the durable engine retries whole
 *   batches, and two retry layers would multiply into a 429 storm.
 * - Every request waits for the shared rate governor and reports the response headers back to it.
 * - A batch either returns one outcome per input or throws; nothing partial is returned on a batch-wide
 *   failure (rate limit, outage, bad key, wrong dimension, malformed response).
 */
import OpenAI from "openai";
import { MalformedResponseError, TargetConfigError } from "../errors.js";
import { classifyOpenAIError, redactor, withoutCredentials } from "./openai-errors.js";
import { type Item, NATIVE_DIMENSIONS, pack, parseResponse } from "./openai-wire.js";
import type { EmbedBatchResult, EmbeddingProvider, EmbedOptions, EmbedOutcome } from "./provider.js";
import type { RateGovernor } from "./rate-governor.js";
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

type ItemResult = { ok: true; vector: Float32Array } | { ok: false; error: string };

interface Tally {
  requests: number;
  tokens: number;
  /** A request was refused as too large (413) and split. */
  oversized?: boolean;
}

/**
 * The SDK client both the embeddings path and the Batch API use. Every option is passed explicitly:
 * the SDK would otherwise fall back to process.env, and config is read in exactly one module.
 */
export function openAIClient(options: {
  apiKey: string;
  baseURL: string;
  organization?: string;
  project?: string;
  maxRetries?: number;
  timeoutMs: number;
}): OpenAI {
  return new OpenAI({
    apiKey: options.apiKey,
    baseURL: options.baseURL,
    organization: options.organization ?? null,
    project: options.project ?? null,
    webhookSecret: null,
    maxRetries: options.maxRetries ?? 0,
    timeout: options.timeoutMs,
    logLevel: "warn",
  });
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

  const client = openAIClient({ ...options, baseURL, timeoutMs });

  async function request(items: Item[], tally: Tally, results: ItemResult[], signal?: AbortSignal) {
    const requestTokens = items.reduce((sum, item) => sum + item.tokens, 0);
    const permit = await governor?.acquire(requestTokens, signal);
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
      governor?.observe(response.headers, permit);
      body = data;
    } catch (err) {
      const failure = classifyOpenAIError(err, {
        signal,
        timeoutMs,
        model,
        shownURL,
        redact,
        governor,
        permit,
        dimensionFix,
      });
      if (failure.kind === "throw") throw failure.error;
      if ((err as { status?: unknown }).status === 413) tally.oversized = true;
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
    const { vectors, billed } = parseResponse(body, items.length, {
      expected,
      model,
      dimensions: options.dimensions,
    });
    tally.tokens += billed ?? requestTokens;
    for (const [i, item] of items.entries()) results[item.unique] = { ok: true, vector: vectors[i]! };
  }

  function dimensionFix(): string {
    return options.dimensions === undefined
      ? `set dimensions: ${expected} on the target (text-embedding-3-* only) or alter the column to the model's native size and re-embed`
      : `remove dimensions from the target (model "${model}" may not support it) and alter the column to the model's native size`;
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
    return { outcomes, tokens: tally.tokens, requests: tally.requests, oversized: tally.oversized };
  }

  return { name: "openai", model, dimensions: expected, maxInputTokens, embed };
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
