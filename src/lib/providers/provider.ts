/**
 * The embedding provider contract. Every provider (offline `local`, `openai`, later Batch API)
 * implements it; the pipeline knows nothing else about providers.
 *
 * Batch-wide failures are thrown as the typed errors in ./errors.ts (TransientError,
 * RateLimitedError, MalformedResponseError, TargetConfigError). A failure caused by one input
 * (the provider rejects that text) is NOT thrown: it is returned as that input's outcome, so the
 * other inputs of the batch still succeed.
 */
export interface EmbeddingProvider {
  /** "local" | "openai" | ... : stored on the target; a target never falls back to another provider. */
  readonly name: string;
  readonly model: string;
  readonly dimensions: number;
  /** The longest input the model takes, in tokens (chunks are cut to fit); 8,191 when not said. */
  readonly maxInputTokens?: number;
  embed(texts: readonly string[], options?: EmbedOptions): Promise<EmbedBatchResult>;
}

export interface EmbedOptions {
  signal?: AbortSignal;
}

export type EmbedOutcome =
  | { ok: true; vector: Float32Array | number[]; tokens: number; truncated: boolean }
  | { ok: false; error: string };

export interface EmbedBatchResult {
  /** Same length and order as the input texts. */
  outcomes: EmbedOutcome[];
  /** Tokens billed for the whole call (sum over requests actually sent). */
  tokens: number;
  /** HTTP requests made (0 for offline providers). */
  requests: number;
  /** A request was refused as too large (HTTP 413) and had to be split: the batch should shrink. */
  oversized?: boolean;
}

/** Price per 1M tokens in USD, per model; used for estimated cost. Configurable. */
export const DEFAULT_PRICES_PER_MILLION: Record<string, number> = {
  "text-embedding-3-small": 0.02,
  "text-embedding-3-large": 0.13,
  "text-embedding-ada-002": 0.1,
};

/**
 * Price per 1M tokens through the OpenAI Batch API (requests answered within 24 h): half the list
 * price for every embedding model on OpenAI's pricing page.
 */
export const BATCH_PRICE_FACTOR = 0.5;
export const DEFAULT_BATCH_PRICES_PER_MILLION: Record<string, number> = Object.fromEntries(
  Object.entries(DEFAULT_PRICES_PER_MILLION).map(([model, price]) => [model, price * BATCH_PRICE_FACTOR]),
);
