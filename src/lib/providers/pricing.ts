import {
  BATCH_PRICE_FACTOR,
  DEFAULT_BATCH_PRICES_PER_MILLION,
  DEFAULT_PRICES_PER_MILLION,
} from "./provider.js";

/**
 * Estimated cost in USD of `tokens` tokens of `model`, from the default price table overlaid with
 * EMBEDDINGS_PRICES. Unknown models (local, self-hosted) cost 0.
 */
export function estimateCostUsd(model: string, tokens: number, overrides: Record<string, number>): number {
  const price = overrides[model] ?? DEFAULT_PRICES_PER_MILLION[model] ?? 0;
  return (tokens / 1_000_000) * price;
}

export interface ModelPrice {
  /** USD per 1M tokens at the list price; null when the model's price is not known. */
  perMillion: number | null;
  /** USD per 1M tokens through the Batch API; null when the model has no batch price. */
  batchPerMillion: number | null;
  /** local: offline, free; built-in: the table above; EMBEDDINGS_PRICES: the operator's; unknown. */
  source: "local" | "built-in" | "EMBEDDINGS_PRICES" | "unknown";
}

/**
 * The list and batch price of a target's model. An EMBEDDINGS_PRICES entry for a model with a
 * built-in batch price keeps the Batch API's discount; a model the table does not know has no
 * batch price, and an unknown model's price is unknown rather than 0.
 */
export function modelPrice(provider: string, model: string, overrides: Record<string, number>): ModelPrice {
  if (provider === "local") return { perMillion: 0, batchPerMillion: 0, source: "local" };
  const override = overrides[model];
  const hasBatch = DEFAULT_BATCH_PRICES_PER_MILLION[model] !== undefined;
  if (override !== undefined) {
    return {
      perMillion: override,
      batchPerMillion: hasBatch ? override * BATCH_PRICE_FACTOR : null,
      source: "EMBEDDINGS_PRICES",
    };
  }
  const listed = DEFAULT_PRICES_PER_MILLION[model];
  if (listed === undefined) return { perMillion: null, batchPerMillion: null, source: "unknown" };
  return {
    perMillion: listed,
    batchPerMillion: DEFAULT_BATCH_PRICES_PER_MILLION[model] ?? null,
    source: "built-in",
  };
}
