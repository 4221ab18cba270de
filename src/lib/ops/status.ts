import type { EmbeddingStore } from "../db/store.js";
import { BATCH_PRICE_FACTOR } from "../providers/openai-batch.js";
import { estimateCostUsd, modelPrice } from "../providers/pricing.js";
import type { Job, RemoteBatchRecord, TargetActivity, TargetRate, TargetStatus } from "../types.js";
import {
  assessHealth,
  combineHealth,
  type Health,
  resolveThresholds,
  type ThresholdOverrides,
} from "./health.js";

/**
 * The one status snapshot behind GET /status, GET /metrics, the dashboard, the CLI and alerts:
 * "how far along, how fast, what failed and why, when will it finish, what does it cost", per
 * target and per job, without anyone writing SQL.
 *
 * Time: every duration is measured on the database clock (embedding_activity returns `now`), the
 * same clock that stamped the rows and jobs.
 */

export interface StatusDeps {
  store: EmbeddingStore;
  /** USD per 1M tokens overrides (config.EMBEDDINGS_PRICES). */
  prices: Record<string, number>;
}

export interface StatusOptions {
  target?: string;
  /** Rate window; 15 minutes smooths batch-to-batch noise yet follows a provider slowdown. */
  windowMinutes?: number;
  /** Latest jobs per target. */
  jobs?: number;
  thresholds?: ThresholdOverrides;
}

export const DEFAULT_RATE_WINDOW_MINUTES = 15;

export interface JobView extends Job {
  /** processed + failed + skipped. */
  done: number;
  remaining: number;
  percent: number;
  elapsedSeconds: number | null;
  /** The job's own average since it started (done rows per minute). */
  averagePerMinute: number | null;
  etaSeconds: number | null;
  etaAt: string | null;
  estimatedCostUsd: number;
  /**
   * The estimate made before the job ran (`embeddings run`, `backfill --local`), to hold against its
   * actual itemsProcessed, tokens and estimatedCostUsd; null when none was recorded.
   */
  estimate: JobEstimate | null;
}

/** What a job keeps of its estimate (src/lib/ops/estimate.ts jobEstimate). */
export interface JobEstimate {
  rows: number;
  tokens: number;
  tokensErrorBound: number;
  exact: boolean;
  listUsd: number | null;
  batchUsd: number | null;
  [key: string]: unknown;
}

export interface TargetView extends Omit<TargetStatus, "jobs"> {
  /** pending + processing + failed: rows still to embed (dead letters wait for a person). */
  remaining: number;
  rate: { windowMinutes: number; windowSeconds: number; embedded: number; tokens: number; perMinute: number };
  etaSeconds: number | null;
  etaAt: string | null;
  lastEmbeddedAt: string | null;
  idleSeconds: number;
  /** Tokens of the embeddings currently stored (rows a worker embedded). */
  tokens: number;
  estimatedCostUsd: number;
  /**
   * USD per 1M tokens at the list price (modelPrice: EMBEDDINGS_PRICES over the built-in table, 0
   * for the local provider), null when the model's price is unknown: the dashboard's cost per day.
   */
  pricePerMillion: number | null;
  /** Remaining rows at the average tokens per row seen so far. */
  estimatedRemainingCostUsd: number | null;
  health: Health;
  jobs: JobView[];
  /** The Batch API route's most recent remote batches (state, counts, age). */
  remoteBatches: RemoteBatchRecord[];
}

export interface StatusSnapshot {
  generatedAt: string;
  windowMinutes: number;
  health: Health;
  targets: TargetView[];
}

const round = (n: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

function addSeconds(iso: string, seconds: number): string {
  return new Date(Date.parse(iso) + seconds * 1000).toISOString();
}

export function jobView(
  job: Job,
  now: string,
  prices: Record<string, number>,
  model: string,
  targetPerMinute: number,
  estimate: JobEstimate | null = null,
): JobView {
  const done = job.itemsProcessed + job.itemsFailed + job.itemsSkipped;
  const remaining = Math.max(job.itemsTotal - done, 0);
  const percent =
    job.itemsTotal > 0
      ? round(Math.min((100 * done) / job.itemsTotal, 100), 2)
      : job.status === "completed"
        ? 100
        : 0;
  const end = job.finishedAt ?? now;
  const elapsedSeconds = job.startedAt
    ? Math.max((Date.parse(end) - Date.parse(job.startedAt)) / 1000, 0)
    : null;
  const averagePerMinute =
    elapsedSeconds && elapsedSeconds > 0 ? round((done * 60) / elapsedSeconds, 2) : null;
  let etaSeconds: number | null = null;
  if (job.status === "running") {
    // The target's recent rate follows a slowdown within minutes; the job's average is the fallback
    // for the first batches, before any row lands in the window.
    const perMinute = targetPerMinute > 0 ? targetPerMinute : (averagePerMinute ?? 0);
    etaSeconds = remaining === 0 ? 0 : perMinute > 0 ? Math.ceil((remaining / perMinute) * 60) : null;
  }
  return {
    ...job,
    done,
    remaining,
    percent,
    elapsedSeconds: elapsedSeconds === null ? null : round(elapsedSeconds, 1),
    averagePerMinute,
    etaSeconds,
    etaAt: etaSeconds === null ? null : addSeconds(now, etaSeconds),
    // Tokens embedded through the Batch API are billed at its price (half the list price).
    estimatedCostUsd: round(
      estimateCostUsd(model, job.tokens - (job.remoteTokens ?? 0), prices) +
        estimateCostUsd(model, job.remoteTokens ?? 0, prices) * BATCH_PRICE_FACTOR,
      6,
    ),
    estimate,
  };
}

export function targetView(
  s: TargetStatus,
  rate: TargetRate,
  activity: TargetActivity,
  prices: Record<string, number>,
  thresholds: ThresholdOverrides = {},
  estimates: Record<string, JobEstimate> = {},
): TargetView {
  const remaining = s.pending + s.processing + s.failed;
  const etaSeconds =
    remaining === 0 ? 0 : rate.perMinute > 0 ? Math.ceil((remaining / rate.perMinute) * 60) : null;
  const perRow = activity.embeddedRows > 0 ? activity.tokens / activity.embeddedRows : null;
  const { jobs, ...counts } = s;
  return {
    ...counts,
    remaining,
    rate: {
      windowMinutes: rate.minutes,
      windowSeconds: rate.windowSeconds,
      embedded: rate.embedded,
      tokens: rate.tokens,
      perMinute: rate.perMinute,
    },
    etaSeconds,
    etaAt: etaSeconds === null ? null : addSeconds(activity.now, etaSeconds),
    lastEmbeddedAt: activity.lastEmbeddedAt,
    idleSeconds: activity.idleSeconds,
    tokens: activity.tokens,
    estimatedCostUsd: round(estimateCostUsd(s.model, activity.tokens, prices), 6),
    pricePerMillion: modelPrice(s.provider, s.model, prices).perMillion,
    estimatedRemainingCostUsd:
      perRow === null ? null : round(estimateCostUsd(s.model, perRow * remaining, prices), 6),
    health: assessHealth(
      {
        target: s.target,
        deadLetter: s.deadLetter,
        retryQueue: s.failed,
        idleSeconds: activity.idleSeconds,
        completedButNull: s.completedButNull,
        error: s.error,
      },
      resolveThresholds(thresholds),
    ),
    jobs: jobs.map((j) => jobView(j, activity.now, prices, s.model, rate.perMinute, estimates[j.id] ?? null)),
    remoteBatches: [],
  };
}

export async function readStatus(deps: StatusDeps, options: StatusOptions = {}): Promise<StatusSnapshot> {
  const windowMinutes = options.windowMinutes ?? DEFAULT_RATE_WINDOW_MINUTES;
  const statuses = await deps.store.status(options.target, options.jobs ?? 5);
  const jobIds = statuses.flatMap((s) => s.jobs.map((j) => j.id));
  const estimates = (jobIds.length > 0 ? await deps.store.jobEstimates(jobIds) : {}) as Record<
    string,
    JobEstimate
  >;
  let dbNow: string | undefined;
  const targets = await Promise.all(
    statuses.map(async (s) => {
      const [rate, activity, remoteBatches] = await Promise.all([
        deps.store.rate(s.target, windowMinutes),
        deps.store.activity(s.target),
        deps.store.remote.list({ target: s.target, limit: 5 }),
      ]);
      dbNow ??= activity.now;
      return { ...targetView(s, rate, activity, deps.prices, options.thresholds, estimates), remoteBatches };
    }),
  );
  // With no target there is no database timestamp to borrow; the local clock is only a label then.
  const generatedAt = new Date(dbNow ?? Date.now()).toISOString();
  return { generatedAt, windowMinutes, health: combineHealth(targets.map((t) => t.health)), targets };
}
