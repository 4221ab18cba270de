import type { SqlApi } from "./db/types.js";

/**
 * Typed access to the operations SQL API (supabase/migrations/20261123020000_ops.sql). No SQL here,
 * only calls by name, so /status works the same over Postgres, supabase-js and PGlite.
 */

export interface TargetRate {
  target: string;
  minutes: number;
  /** Rows embedded by a worker inside the window. */
  embedded: number;
  tokens: number;
  /** The span the rate was measured over: the window, or less when work started inside it. */
  windowSeconds: number;
  perMinute: number;
  lastEmbeddedAt: string | null;
}

export interface TargetActivity {
  target: string;
  /** Rows whose current embedding was written by a worker (seeded "already embedded" rows excluded). */
  embeddedRows: number;
  tokens: number;
  lastEmbeddedAt: string | null;
  /** Since when the longest-waiting due row has waited (null: nothing is due). */
  oldestDueAt: string | null;
  /** Seconds due work has waited without any row being embedded; 0 when nothing is due. */
  idleSeconds: number;
  /** The database clock, the one every duration here is measured on. */
  now: string;
}

export interface QueueCounts {
  target: string;
  tracked: number;
  pending: number;
  processing: number;
  failed: number;
  deadLetter: number;
  completed: number;
  /** pending + processing + failed. */
  remaining: number;
}

export class OpsStore {
  constructor(readonly api: SqlApi) {}

  rate(target: string, minutes: number): Promise<TargetRate> {
    return this.api.call<TargetRate>("embedding_rate", { p_target: target, p_minutes: minutes });
  }

  activity(target: string): Promise<TargetActivity> {
    return this.api.call<TargetActivity>("embedding_activity", { p_target: target });
  }

  queueCounts(target: string): Promise<QueueCounts> {
    return this.api.call<QueueCounts>("embedding_queue_counts", { p_target: target });
  }

  /** Queues again the rows marked completed whose embedding column is NULL (the 001 mismatch). */
  retryCompletedButNull(target: string, limit = 1000): Promise<{ requeued: number }> {
    return this.api.call("embedding_retry_completed_null", { p_target: target, p_limit: limit });
  }
}
