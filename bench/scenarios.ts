import type { WorkerMode } from "./worker.js";

/**
 * What one `npm run bench` measures. The full cross product (3 batch sizes × 4 parallelisms × 2 sizes
 * × 2 providers) would take far longer than the 10-minute budget on 2 cores, so:
 *   - 10,000 rows, 0 ms provider: the full 3 × 4 matrix;
 *   - 100,000 rows, 0 ms provider: the token-packed batch at parallelism 2, 4 and 8, and batch 100
 *     at 4 (parallelism 1 and batch 20 are slow enough at 10k to show the trend);
 *   - 300 ms provider limited to 3,000 RPM / 1,000,000 TPM: 20,000 rows per batch size, each with
 *     enough parallelism to cover the 300 ms latency (the limit, not the table, sets the pace);
 *   - baselines on the same rows: the raw database ceiling at every size, the seeds' way at 10k
 *     (100k with --large: ~2 minutes on its own), and "before": this pipeline as it was before
 *     issue 6, for before/after numbers from one run;
 *   - the Inngest path at 10,000 rows;
 *   - chunk mode: 200 transcripts of 150-600 turns at 1536 dimensions (default chunking), and the
 *     size of one swap statement (chunk rows) at which a statement timeout starts.
 * --large adds 1,000,000 rows (ceiling and the pipeline at its best setting) and the 100k baselines;
 * --quick runs a small subset for a ~1 minute smoke test.
 */

export type Group =
  | "ceiling"
  | "seeds"
  | "before"
  | "e2e"
  | "limited"
  | "inngest"
  | "chunks"
  | "chunk-timeout";

export interface Scenario {
  id: string;
  group: Group;
  mode: WorkerMode;
  rows: number;
  batchSize: number;
  parallelism: number;
  latencyMs: number;
  rpm?: number;
  tpm?: number;
  /** Fake server burst window (ms of budget it holds), see FakeOpenAIBehavior.burstMs. */
  burstMs?: number;
  harnessConcurrency?: number;
  ceilingChunk?: number;
  /** Run the pre-issue-6 claim/write SQL and vector formatting (bench/legacy.ts). */
  legacy?: boolean;
  /** chunk-timeout: chunk rows per swap statement, in order (bench/chunk-timeout.ts). */
  pieceSizes?: number[];
  /** chunk-timeout: the largest statement_timeout of interest; sizes stop once one exceeds it. */
  stopAfterMs?: number;
  /** chunk-timeout: then the pipeline at batch 2,048 under a 1 s statement_timeout. */
  adaptive?: boolean;
}

/** Token-packed: one request carries the whole batch, up to OpenAI's 2,048 inputs / 300k tokens. */
export const PACKED = 500;
export const LIMIT_RPM = 3000;
export const LIMIT_TPM = 1_000_000;
/**
 * The fake server holds at most one second of budget (OpenAI enforces per-minute limits over short
 * windows too); with the default full-minute bucket a 10k-row run would finish inside the burst and
 * measure nothing about the limit.
 */
export const LIMIT_BURST_MS = 1000;

const k = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`);

function e2e(rows: number, batchSize: number, parallelism: number): Scenario {
  return {
    id: `e2e-${k(rows)}-b${batchSize}-p${parallelism}`,
    group: "e2e",
    mode: "pipeline",
    rows,
    batchSize,
    parallelism,
    latencyMs: 0,
  };
}

/** The pipeline as it was before issue 6 (core SQL claim/write, toPrecision formatting): before/after in one run. */
function before(rows: number, batchSize: number, parallelism: number): Scenario {
  return {
    id: `before-${k(rows)}-b${batchSize}-p${parallelism}`,
    group: "before",
    mode: "pipeline",
    legacy: true,
    rows,
    batchSize,
    parallelism,
    latencyMs: 0,
  };
}

function limited(rows: number, batchSize: number, parallelism: number): Scenario {
  return {
    id: `limited-${k(rows)}-b${batchSize}-p${parallelism}`,
    group: "limited",
    mode: "pipeline",
    rows,
    batchSize,
    parallelism,
    latencyMs: 300,
    rpm: LIMIT_RPM,
    tpm: LIMIT_TPM,
    burstMs: LIMIT_BURST_MS,
  };
}

function ceiling(rows: number): Scenario {
  return {
    id: `ceiling-${k(rows)}`,
    group: "ceiling",
    mode: "ceiling",
    rows,
    batchSize: 10_000,
    parallelism: 1,
    latencyMs: 0,
    ceilingChunk: 10_000,
  };
}

function seeds(rows: number): Scenario {
  return {
    id: `seeds-${k(rows)}`,
    group: "seeds",
    mode: "seeds",
    rows,
    batchSize: 50,
    parallelism: 1,
    latencyMs: 0,
  };
}

function inngest(rows: number, batchSize: number, parallelism: number, harnessConcurrency: number): Scenario {
  return {
    id: `inngest-${k(rows)}-b${batchSize}-p${parallelism}-c${harnessConcurrency}`,
    group: "inngest",
    mode: "inngest",
    rows,
    batchSize,
    parallelism,
    latencyMs: 0,
    harnessConcurrency,
  };
}

/** Chunk mode on `docs` transcripts of 150-600 turns (bench/chunk-data.ts); `rows` are documents. */
function chunks(docs: number, batchSize: number, parallelism: number): Scenario {
  return {
    id: `chunks-${docs}docs-b${batchSize}-p${parallelism}`,
    group: "chunks",
    mode: "chunks",
    rows: docs,
    batchSize,
    parallelism,
    latencyMs: 0,
  };
}

/**
 * One swap statement of N chunk rows, N doubling from 25 up to `largest` or past 8 s; then, with
 * `adaptive`, the pipeline at batch 2,048 under a 1 s statement_timeout.
 */
function chunkTimeout(largest: number, adaptive: boolean): Scenario {
  const pieceSizes: number[] = [];
  for (let n = 25; n <= largest; n *= 2) pieceSizes.push(n);
  return {
    id: `chunk-timeout-${k(largest)}`,
    group: "chunk-timeout",
    mode: "chunk-timeout",
    rows: pieceSizes.length,
    batchSize: largest,
    parallelism: 1,
    latencyMs: 0,
    pieceSizes,
    stopAfterMs: 8000,
    adaptive,
  };
}

export function scenarios(options: { large: boolean; quick: boolean }): Scenario[] {
  if (options.quick) {
    return [
      ceiling(10_000),
      seeds(5_000),
      before(10_000, 100, 4),
      e2e(10_000, 100, 4),
      e2e(10_000, PACKED, 2),
      limited(5_000, 100, 6),
      inngest(5_000, 100, 2, 1),
      chunks(20, 100, 4),
      chunkTimeout(1600, false),
    ];
  }
  const list: Scenario[] = [
    ceiling(10_000),
    seeds(10_000),
    before(10_000, 100, 4),
    before(10_000, PACKED, 2),
  ];
  for (const b of [20, 100, PACKED]) for (const p of [1, 2, 4, 8]) list.push(e2e(10_000, b, p));
  list.push(ceiling(100_000), e2e(100_000, 100, 4));
  for (const p of [2, 4, 8]) list.push(e2e(100_000, PACKED, p));
  // Enough batches in flight to keep the governor busy when a cycle (claim + 300 ms + write) takes
  // ~0.55 s at batch 20 and ~0.9 s at batch 100, as measured at load 6-7 on this machine: the limit
  // needs 17 requests/s of 20 rows (16 × 20 rows ÷ 0.55 s = 580 rows/s), 3.4 of 100 (6 × 100 ÷ 0.9 s
  // = 670), 0.7 of 500 (one ~24,400-token request per 1.5 s; 2 workers cycle in ~1 s each).
  list.push(limited(20_000, 20, 16), limited(20_000, 100, 6), limited(20_000, PACKED, 2));
  list.push(inngest(10_000, 100, 4, 1));
  // The CLI's defaults (batch 20, parallelism 2), then the settings that were fastest for rows.
  list.push(chunks(200, 20, 2), chunks(200, 100, 4), chunks(200, PACKED, 2));
  list.push(chunkTimeout(102_400, true));
  if (options.large) {
    list.push(seeds(100_000), before(100_000, PACKED, 2), ceiling(1_000_000), e2e(1_000_000, PACKED, 2));
  }
  return list;
}
