import type { Config } from "../lib/config.js";
import type { AppContext } from "../lib/context.js";
import type { Logger } from "../lib/logger.js";
import type { BatchApi } from "../lib/providers/openai-batch.js";
import type { EmbeddingProvider } from "../lib/providers/provider.js";
import type { Target } from "../lib/types.js";

/** What the functions need from the outside, injected once when the app is built. */
export interface FunctionDeps {
  config: Config;
  /** Opened once per process and shared; every call returns the same context. */
  context: () => Promise<AppContext>;
  providerFor: (target: Target) => EmbeddingProvider;
  /** The Batch API of an openai target (`via: "batch"`); by default configured like its provider. */
  batchApiFor?: (target: Target) => BatchApi;
  limits?: Partial<Limits>;
  /** Structured logs (pino); counts and ids only, never row content. */
  logger?: Logger;
}

export interface Limits {
  /** Batches one worker run does before handing over to a fresh run (steps per run stay < 1,000). */
  maxBatchesPerRun: number;
  /**
   * Wall time one worker run works before handing over: well under the run's `timeouts.finish`
   * (2 h), so a run slowed by rate limits hands over instead of being cancelled by the timeout.
   */
  laneWallBudgetMs: number;
  /** Wall-clock budget of one seeding step. */
  seedStepMs: number;
  /** Rows per seeding page (one bounded statement each). */
  seedPage: number;
  /** Batches per target per sweep run (each target has a run of its own). */
  sweepBatches: number;
  /** Dead letters retried per target per recovery run, one row per batch. */
  recoveryRows: number;
  /** Concurrent worker runs per target (Inngest concurrency key). */
  workerConcurrency: number;
  /** Longest single sleep for a provider's rate limit; a longer delay is slept in several steps. */
  rateLimitSleepMaxMs: number;
  /** The Batch API route: inputs per remote batch (OpenAI: 50,000), first and longest poll interval. */
  remoteMaxInputs: number;
  remotePollMs: number;
  remoteMaxPollMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxBatchesPerRun: 300,
  laneWallBudgetMs: 50 * 60_000,
  seedStepMs: 20_000,
  seedPage: 5000,
  sweepBatches: 50,
  recoveryRows: 100,
  workerConcurrency: 8,
  rateLimitSleepMaxMs: 60_000,
  remoteMaxInputs: 50_000,
  remotePollMs: 60_000,
  remoteMaxPollMs: 10 * 60_000,
};

export function limitsOf(deps: FunctionDeps): Limits {
  return { ...DEFAULT_LIMITS, ...deps.limits };
}
