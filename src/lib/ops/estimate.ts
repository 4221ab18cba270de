import { chunkText } from "../chunking/chunker.js";
import type { EmbeddingStore } from "../db/store.js";
import { lexicalTokens } from "../providers/local.js";
import { type ModelPrice, modelPrice } from "../providers/pricing.js";
import { DEFAULT_HEADROOM } from "../providers/rate-governor.js";
import { countTokens } from "../providers/tokenizer.js";
import type { EstimateSample, Target } from "../types.js";

/**
 * Estimate before spending: rows a backfill would embed (exact, from SQL), their tokens counted by
 * the worker's own tokenizer over their real content (every row when they fit in the sample, else
 * a uniform random sample extrapolated with a 95 % error bound), the cost at the list and the Batch
 * API price, and the time at the configured rate limit. Reads only; sends nothing.
 */

export const DEFAULT_ESTIMATE_SAMPLE = 1000;
/** Chunked targets' documents are long (transcripts): a smaller sample keeps the answer a few MB. */
export const DEFAULT_CHUNKED_ESTIMATE_SAMPLE = 200;
/** Two-sided 95 % quantile of the normal distribution. */
const Z95 = 1.96;
/** What the OpenAI provider sends at most: longer inputs are truncated, so they bill this many. */
const MAX_INPUT_TOKENS = 8191;
const MAX_REQUEST_TOKENS = 300_000;
const MAX_REQUEST_INPUTS = 2048;

export interface EstimateOptions {
  target: string;
  reembed: boolean;
  /** Rows to read at most (default 1,000; 200 for chunked targets). */
  sample?: number;
  batchSize: number;
  /** EMBEDDINGS_PRICES. */
  prices: Record<string, number>;
  requestsPerMinute?: number;
  tokensPerMinute?: number;
}

/** A total over the rows to embed: exact (errorBound 0) or extrapolated with its 95 % bound. */
export interface Figure {
  estimate: number;
  /** Half-width of the 95 % interval: 1.96 x standard error of the mean x rows (with the finite-population correction). */
  errorBound: number;
  low: number;
  high: number;
  perRow: number;
}

export interface Estimate {
  target: string;
  table: string;
  provider: string;
  model: string;
  chunked: boolean;
  reembed: boolean;
  /** Rows of the source table. */
  tableRows: number;
  /** Rows (documents, for a chunked target) that would be embedded. */
  rows: number;
  sample: {
    rows: number;
    exact: boolean;
    method: EstimateSample["method"];
    percent: number | null;
    confidence: 0.95;
  };
  tokens: Figure;
  /** Chunked targets: chunks the chunker cuts, and the tokens its overlap repeats. */
  chunks: (Figure & { overlapTokens: number }) | null;
  /** Inputs sent to the provider (rows, or chunks) and the requests they take. */
  inputs: number;
  requests: number;
  batchSize: number;
  cost: {
    currency: "USD";
    priceSource: ModelPrice["source"];
    perMillion: number | null;
    batchPerMillion: number | null;
    /** At the list price; null when the model's price is unknown (set EMBEDDINGS_PRICES). */
    listUsd: number | null;
    /** Through the Batch API; null when the model has none. */
    batchUsd: number | null;
  };
  time: {
    seconds: number | null;
    limitedBy: "requests" | "tokens" | null;
    requestsPerMinute: number | null;
    tokensPerMinute: number | null;
    note: string | null;
  };
}

/** Extrapolates per-row values to `rows` rows. */
export function extrapolate(values: readonly number[], rows: number): Figure {
  const n = values.length;
  const sum = values.reduce((a, b) => a + b, 0);
  const mean = n > 0 ? sum / n : 0;
  if (n >= rows) {
    return { estimate: sum, errorBound: 0, low: sum, high: sum, perRow: round(mean, 2) };
  }
  const variance = n > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1) : 0;
  const bound = Math.ceil(Z95 * rows * Math.sqrt(variance / n) * Math.sqrt(1 - n / rows));
  const estimate = Math.round(mean * rows);
  return {
    estimate,
    errorBound: bound,
    low: Math.max(0, estimate - bound),
    high: estimate + bound,
    perRow: round(mean, 2),
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** The tokens a provider bills for one input: its real tokenizer, and its truncation. */
function tokenCounter(provider: string): (text: string) => number {
  if (provider === "local") return lexicalTokens;
  return (text) => Math.min(countTokens(text), MAX_INPUT_TOKENS);
}

function rateTime(
  target: Target,
  requests: number,
  tokens: number,
  options: EstimateOptions,
): Estimate["time"] {
  const rpm = options.requestsPerMinute ?? null;
  const tpm = options.tokensPerMinute ?? null;
  if (target.provider === "local") {
    return {
      seconds: null,
      limitedBy: null,
      requestsPerMinute: null,
      tokensPerMinute: null,
      note: "the local provider has no rate limit: its time is this machine's CPU",
    };
  }
  if (rpm === null && tpm === null) {
    return {
      seconds: null,
      limitedBy: null,
      requestsPerMinute: null,
      tokensPerMinute: null,
      note: "no rate limit known: set EMBEDDINGS_RPM and EMBEDDINGS_TPM to the account's limits (a running worker learns them from x-ratelimit-* headers, in its memory only)",
    };
  }
  // The rate governor paces at (1 - headroom) of each limit.
  const usable = 1 - DEFAULT_HEADROOM;
  const byRequests = rpm === null ? 0 : requests / (rpm * usable);
  const byTokens = tpm === null ? 0 : tokens / (tpm * usable);
  const missing = rpm === null ? "EMBEDDINGS_RPM" : tpm === null ? "EMBEDDINGS_TPM" : null;
  return {
    seconds: Math.ceil(Math.max(byRequests, byTokens) * 60),
    limitedBy: byTokens > byRequests ? "tokens" : "requests",
    requestsPerMinute: rpm,
    tokensPerMinute: tpm,
    note: missing ? `${missing} is not set: that limit is not counted` : null,
  };
}

export async function estimateTarget(store: EmbeddingStore, options: EstimateOptions): Promise<Estimate> {
  const target = await store.getTarget(options.target);
  const chunking = target.chunks ?? null;
  const sampleSize = options.sample ?? (chunking ? DEFAULT_CHUNKED_ESTIMATE_SAMPLE : DEFAULT_ESTIMATE_SAMPLE);
  const s = await store.estimateSample(target.name, options.reembed, sampleSize);
  const count = tokenCounter(target.provider);

  let tokens: Figure;
  let chunks: Estimate["chunks"] = null;
  if (chunking) {
    const perDoc = s.sample.map((text) => {
      const cut = chunkText(text, {
        chunkTokens: chunking.tokens,
        overlapTokens: chunking.overlap,
        maxInputTokens: MAX_INPUT_TOKENS,
      });
      const chunkTokens = cut.reduce((a, c) => a + count(c.content), 0);
      return { chunks: cut.length, tokens: chunkTokens, overlap: Math.max(0, chunkTokens - count(text)) };
    });
    tokens = extrapolate(
      perDoc.map((d) => d.tokens),
      s.rows,
    );
    const overlap = extrapolate(
      perDoc.map((d) => d.overlap),
      s.rows,
    );
    chunks = {
      ...extrapolate(
        perDoc.map((d) => d.chunks),
        s.rows,
      ),
      overlapTokens: overlap.estimate,
    };
  } else {
    tokens = extrapolate(s.sample.map(count), s.rows);
  }

  const inputs = chunks ? chunks.estimate : s.rows;
  const batchSize = Math.max(1, Math.min(options.batchSize, target.batchLimit ?? options.batchSize));
  const requests =
    target.provider === "local" || inputs === 0
      ? 0
      : Math.max(
          Math.ceil(inputs / Math.min(batchSize, MAX_REQUEST_INPUTS)),
          Math.ceil(tokens.estimate / MAX_REQUEST_TOKENS),
        );
  const price = modelPrice(target.provider, target.model, options.prices);
  const usd = (perMillion: number | null) =>
    perMillion === null ? null : round((tokens.estimate / 1_000_000) * perMillion, 6);

  return {
    target: target.name,
    table: s.table,
    provider: target.provider,
    model: target.model,
    chunked: chunking !== null,
    reembed: s.reembed,
    tableRows: s.tableRows,
    rows: s.rows,
    sample: {
      rows: s.sample.length,
      exact: s.sample.length >= s.rows,
      method: s.method,
      percent: s.samplePercent,
      confidence: 0.95,
    },
    tokens,
    chunks,
    inputs,
    requests,
    batchSize,
    cost: {
      currency: "USD",
      priceSource: price.source,
      perMillion: price.perMillion,
      batchPerMillion: price.batchPerMillion,
      listUsd: usd(price.perMillion),
      batchUsd: usd(price.batchPerMillion),
    },
    time: rateTime(target, requests, tokens.estimate, options),
  };
}

/** What a job keeps of its estimate (figures only, for status: estimate against actual). */
export function jobEstimate(e: Estimate): Record<string, unknown> {
  return {
    rows: e.rows,
    tokens: e.tokens.estimate,
    tokensErrorBound: e.tokens.errorBound,
    exact: e.sample.exact,
    sampleRows: e.sample.rows,
    chunks: e.chunks?.estimate ?? null,
    requests: e.requests,
    listUsd: e.cost.listUsd,
    batchUsd: e.cost.batchUsd,
    seconds: e.time.seconds,
    reembed: e.reembed,
  };
}
