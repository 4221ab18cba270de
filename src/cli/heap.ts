import { setFlagsFromString } from "node:v8";

/**
 * How far V8 lets the heap grow past what survived the last full collection before it collects
 * again. V8's own factor goes up to 4× when the program allocates fast, and a batch's garbage (its
 * texts, the provider's JSON, the vectors) lives across a few awaits, so it is promoted and waits
 * for a full collection: at batch 500 × parallelism 2 the worker's heap swung between ~36 MB live
 * and ~120 MB. At 50 % (`npm run bench -- --only e2e-10k-b500-p2`, and the 100k and 1M rows) peak
 * RSS went from 232–239 to 194–204 MB at 10k rows and to ~200 MB at 100k and 1M, for +5–10 % of
 * the worker's CPU per row (about the run-to-run noise); at 30 %, 182 MB for +30 % CPU.
 */
export const HEAP_GROWING_PERCENT = 50;

/**
 * Applied by the `embeddings` binary as it starts, unless the operator chose a value in the
 * process's own Node options. V8 reads the flag at every full collection, so setting it at runtime
 * takes effect from the next one.
 */
export function limitHeapGrowth(nodeOptions: readonly string[]): void {
  if (nodeOptions.some((o) => o.includes("heap-growing-percent") || o.includes("heap_growing_percent")))
    return;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
