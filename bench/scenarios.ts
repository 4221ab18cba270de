import type { WorkerMode } from "./worker.js";

/**
 * What one `npm run bench` measures. The full cross product (3 batch sizes × 4 parallelisms × 2 sizes
 * × 2 providers × 2 dimensions) would take far longer than the 15-minute budget on 2 cores, so:
 *   - 10,000 rows × 384, 0 ms provider: batch 20, 100 and 500 at parallelism 1, 2 and 4, and batch
 *     500 at 8 (par 8 was never faster than 4 on two cores: the one cell shows it);
 *   - 50,000 rows × 384 (issue 15's reference table): the CLI's defaults (batch 20 × par 2) and
 *     batch 500 × par 4;
 *   - 100,000 rows × 384: the token-packed batch at parallelism 2 and 4, and batch 100 at 4;
 *   - 20,000 rows × 1536 (text-embedding-3-small's default size; issue 15's reference table): the
 *     CLI's defaults, batch 100 × par 4, 500 × par 2 and 500 × par 4;
 *   - 300 ms provider limited to 3,000 RPM / 1,000,000 TPM: 20,000 rows per batch size, each with
 *     enough parallelism to cover the 300 ms latency (the limit, not the table, sets the pace);
 *   - baselines on the same rows: the raw database ceiling at every size and dimension, the seeds'
 *     way at 10k (100k with --large: ~2 minutes on its own), and "before": this pipeline as it was
 *     before issue 6, for before/after numbers from one run;
 *   - the Inngest path at 10,000 rows with checkpointing on (as in production): batch 20 × 2 lanes
 *     and batch 100 × 4 lanes, beside the in-process rows of the same batch and parallelism;
 *   - chunk mode: 200 transcripts of 150-600 turns at 1536 dimensions (default chunking), and the
 *     size of one swap statement (chunk rows) at which a statement timeout starts.
 * --large adds 1,000,000 rows (ceiling and the pipeline at its best setting) and the 100k baselines;
 * --quick runs a small subset for a ~1 minute smoke test. Opt-in groups (`cli`: the real
 * `embeddings run` as a child process) run only when `--only` names them.
 */

export type Group =
  | "ceiling"
  | "seeds"
  | "before"
  | "e2e"
  | "limited"
  | "inngest"
  | "cli"
  | "chunks"
  | "chunk-timeout";

export interface Scenario {
  id: string;
  group: Group;
  /** `cli` runs in bench/cli-run.ts, the others in a worker process (bench/worker.ts). */
  mode: WorkerMode | "cli";
  rows: number;
  /** Floats per embedding: 384, or 1536 (text-embedding-3-small's default). */
  dims: number;
  /**
   * `external`: the embedding column's storage set to EXTERNAL (stored out of line uncompressed)
   * instead of the default EXTENDED, under which PostgreSQL tries to compress every 6 KB vector
   * before storing it out of line (floats do not compress). The README's tip for 1536 dimensions.
   */
  storage?: "external";
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
  /** Not in the default run: only when `--only` names the group or a prefix of the id. */
  optIn?: boolean;
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

export const DEFAULT_DIMENSIONS = 384;

const k = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`);
/** Row count and, when not the default 384, the dimensions: `20k-1536`, so `--only 1536` picks that group. */
const size = (rows: number, dims: number) => (dims === DEFAULT_DIMENSIONS ? k(rows) : `${k(rows)}-${dims}`);

export function e2e(
  rows: number,
  batchSize: number,
  parallelism: number,
  dims = DEFAULT_DIMENSIONS,
  storage?: "external",
): Scenario {
  return {
    id: `e2e-${size(rows, dims)}${storage ? "-ext" : ""}-b${batchSize}-p${parallelism}`,
    group: "e2e",
    mode: "pipeline",
    rows,
    dims,
    ...(storage ? { storage } : {}),
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
    dims: DEFAULT_DIMENSIONS,
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
    dims: DEFAULT_DIMENSIONS,
    batchSize,
    parallelism,
    latencyMs: 300,
    rpm: LIMIT_RPM,
    tpm: LIMIT_TPM,
    burstMs: LIMIT_BURST_MS,
  };
}

export function ceiling(rows: number, dims = DEFAULT_DIMENSIONS, storage?: "external"): Scenario {
  return {
    id: `ceiling-${size(rows, dims)}${storage ? "-ext" : ""}`,
    group: "ceiling",
    mode: "ceiling",
    rows,
    dims,
    ...(storage ? { storage } : {}),
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
    dims: DEFAULT_DIMENSIONS,
    batchSize: 50,
    parallelism: 1,
    latencyMs: 0,
  };
}

/**
 * The served app driven by the executor harness with checkpointing on (the SDK runs steps back to
 * back in one request and posts each result to the checkpoint API, as it does against Inngest);
 * `harnessConcurrency` HTTP calls at once.
 */
function inngest(rows: number, batchSize: number, parallelism: number, harnessConcurrency: number): Scenario {
  return {
    id: `inngest-${k(rows)}-b${batchSize}-p${parallelism}-c${harnessConcurrency}`,
    group: "inngest",
    mode: "inngest",
    rows,
    dims: DEFAULT_DIMENSIONS,
    batchSize,
    parallelism,
    latencyMs: 0,
    harnessConcurrency,
  };
}

/** `embeddings run <target> --batch-size B --parallelism P` as a child process (bench/cli-run.ts). */
function cli(rows: number, batchSize: number, parallelism: number, dims = DEFAULT_DIMENSIONS): Scenario {
  return {
    id: `cli-${size(rows, dims)}-b${batchSize}-p${parallelism}`,
    group: "cli",
    mode: "cli",
    rows,
    dims,
    batchSize,
    parallelism,
    latencyMs: 0,
    optIn: true,
  };
}

/** Chunk mode on `docs` transcripts of 150-600 turns (bench/chunk-data.ts); `rows` are documents. */
function chunks(docs: number, batchSize: number, parallelism: number): Scenario {
  return {
    id: `chunks-${docs}docs-b${batchSize}-p${parallelism}`,
    group: "chunks",
    mode: "chunks",
    rows: docs,
    dims: 1536,
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
    dims: 1536,
    batchSize: largest,
    parallelism: 1,
    latencyMs: 0,
    pieceSizes,
    stopAfterMs: 8000,
    adaptive,
  };
}

/** The CLI's defaults (EMBEDDINGS_BATCH_SIZE, EMBEDDINGS_PARALLELISM) and issue 15's "best" setting. */
const CLI_DEFAULT = [20, 2] as const;
const BEST = [PACKED, 4] as const;

export interface ScenarioOptions {
  large: boolean;
  quick: boolean;
  /** Multiplies every row count (chunk documents too, not the swap sizes): short validation runs. */
  rowsScale?: number;
}

export function scenarios(options: ScenarioOptions): Scenario[] {
  const scale = options.rowsScale ?? 1;
  // Whole hundreds, at least 100: ids stay readable (`e2e-2k-1536-...`) and a batch of 500 still fits.
  const n = (rows: number) => (scale === 1 ? rows : Math.max(100, Math.round((rows * scale) / 100) * 100));
  const d = (docs: number) => (scale === 1 ? docs : Math.max(2, Math.round(docs * scale)));
  // The reference table of issue 15 through the real CLI: 50k × 384 and 20k × 1536, defaults and best.
  const cliGroup = (rows384: number, rows1536: number) => [
    cli(n(rows384), ...CLI_DEFAULT),
    cli(n(rows384), ...BEST),
    cli(n(rows1536), ...CLI_DEFAULT, 1536),
    cli(n(rows1536), ...BEST, 1536),
  ];
  if (options.quick) {
    return [
      ceiling(n(10_000)),
      seeds(n(5_000)),
      before(n(10_000), 100, 4),
      e2e(n(10_000), 100, 4),
      e2e(n(10_000), PACKED, 2),
      e2e(n(5_000), ...CLI_DEFAULT),
      inngest(n(5_000), ...CLI_DEFAULT, 2),
      ceiling(n(5_000), 1536),
      e2e(n(5_000), 100, 4, 1536),
      limited(n(5_000), 100, 6),
      chunks(d(20), 100, 4),
      chunkTimeout(1600, false),
      ...cliGroup(5_000, 2_000),
    ];
  }
  const list: Scenario[] = [
    ceiling(n(10_000)),
    seeds(n(10_000)),
    before(n(10_000), 100, 4),
    before(n(10_000), PACKED, 2),
  ];
  for (const b of [20, 100, PACKED]) for (const p of [1, 2, 4]) list.push(e2e(n(10_000), b, p));
  list.push(e2e(n(10_000), PACKED, 8));
  list.push(ceiling(n(50_000)), e2e(n(50_000), ...CLI_DEFAULT), e2e(n(50_000), ...BEST));
  list.push(ceiling(n(100_000)), e2e(n(100_000), 100, 4));
  for (const p of [2, 4]) list.push(e2e(n(100_000), PACKED, p));
  list.push(ceiling(n(20_000), 1536));
  for (const [b, p] of [CLI_DEFAULT, [100, 4], [PACKED, 2], BEST] as const)
    list.push(e2e(n(20_000), b, p, 1536));
  // The same at the best setting with the column's storage EXTERNAL (README, Performance).
  list.push(ceiling(n(20_000), 1536, "external"), e2e(n(20_000), ...BEST, 1536, "external"));
  // Enough batches in flight to keep the governor busy when a cycle (claim + 300 ms + write) takes
  // ~0.55 s at batch 20 and ~0.9 s at batch 100, as measured at load 6-7 on this machine: the limit
  // needs 17 requests/s of 20 rows (16 × 20 rows ÷ 0.55 s = 580 rows/s), 3.4 of 100 (6 × 100 ÷ 0.9 s
  // = 670), 0.7 of 500 (one ~24,400-token request per 1.5 s; 2 workers cycle in ~1 s each).
  list.push(limited(n(20_000), 20, 16), limited(n(20_000), 100, 6), limited(n(20_000), PACKED, 2));
  // Beside e2e-10k-b20-p2 and e2e-10k-b100-p4: the same batch and parallelism in-process.
  list.push(inngest(n(10_000), ...CLI_DEFAULT, 2), inngest(n(10_000), 100, 4, 4));
  // The CLI's defaults (batch 20, parallelism 2), then the settings that were fastest for rows.
  list.push(chunks(d(200), 20, 2), chunks(d(200), 100, 4), chunks(d(200), PACKED, 2));
  list.push(chunkTimeout(102_400, true));
  if (options.large) {
    list.push(
      seeds(n(100_000)),
      before(n(100_000), PACKED, 2),
      ceiling(n(1_000_000)),
      e2e(n(1_000_000), PACKED, 2),
    );
  }
  list.push(...cliGroup(50_000, 20_000));
  return list;
}
