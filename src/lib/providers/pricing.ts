import { DEFAULT_PRICES_PER_MILLION } from "./provider.js";

/**
 * Estimated cost in USD of `tokens` tokens of `model`, from the default price table overlaid with
 * EMBEDDINGS_PRICES. Unknown models (local, self-hosted) cost 0.
 */
export function estimateCostUsd(model: string, tokens: number, overrides: Record<string, number>): number {
  const price = overrides[model] ?? DEFAULT_PRICES_PER_MILLION[model] ?? 0;
  return (tokens / 1_000_000) * price;
}
