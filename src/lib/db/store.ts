import type {
  CancelledJob,
  ClaimResult,
  DeadLetter,
  EnqueueResult,
  EstimateSample,
  Job,
  JobKind,
  LaneStart,
  PendingSummary,
  PriorityInput,
  ProgressCounts,
  QueueCounts,
  RegisteredTarget,
  RegisterTargetInput,
  StartedJob,
  Target,
  TargetActivity,
  TargetCheck,
  TargetHistory,
  TargetRate,
  TargetStatus,
  WriteItem,
  WriteResult,
} from "../types.js";
import { ChunkStore } from "./chunk-store.js";
import { RemoteBatchStore } from "./remote-store.js";
import type { SqlApi } from "./types.js";
import { VectorList } from "./vector.js";

/**
 * Ids with a NUL byte can never be a row's key (PostgreSQL text cannot hold one, and sending one
 * fails the whole call): they are invalid before anything is sent.
 */
function splitNul(ids: readonly string[]): { valid: string[]; nul: string[] } {
  const valid: string[] = [];
  const nul: string[] = [];
  for (const id of ids) (id.includes("\u0000") ? nul : valid).push(id);
  return { valid, nul };
}

/**
 * Typed calls of the SQL API (supabase/migrations): one method per SQL function, called by name. No
 * SQL here, so the same code runs over direct Postgres, supabase-js and PGlite.
 */

export class EmbeddingStore {
  /** The chunked targets' calls (claim, plan, write, swap). */
  readonly chunks: ChunkStore;
  /** The Batch API route's remote batches. */
  readonly remote: RemoteBatchStore;

  /** `historyDays`: how long per-minute history is kept (EMBEDDINGS_HISTORY_DAYS; the SQL default is 7). */
  constructor(
    readonly api: SqlApi,
    readonly options: { historyDays?: number } = {},
  ) {
    this.chunks = new ChunkStore(api);
    this.remote = new RemoteBatchStore(api);
  }

  /**
   * Registers a target, or re-registers it with the same definition. Another table, id, content,
   * embedding column, provider, model or dimension is refused unless `replace`, which clears the
   * old state (`reset` rows) so every row is embedded again.
   */
  async registerTarget(input: RegisterTargetInput): Promise<RegisteredTarget> {
    const registered = await this.api.call<RegisteredTarget>("embedding_register_target", {
      p_name: input.name,
      p_table: input.table,
      p_id_column: input.idColumn,
      p_embedding_column: input.embeddingColumn,
      p_provider: input.provider,
      p_model: input.model,
      p_content_columns: input.contentColumns ?? null,
      p_content_expression: input.contentExpression ?? null,
      p_dimensions: input.dimensions ?? null,
      p_max_attempts: input.maxAttempts ?? 3,
      p_replace: input.replace ?? false,
      p_chunk_table: input.chunkTable ?? null,
      p_chunk_tokens: input.chunkTable ? (input.chunkTokens ?? null) : null,
      p_chunk_overlap: input.chunkTable ? (input.chunkOverlap ?? null) : null,
    });
    // The order is set by its own call (it is no part of the definition a replace protects); a
    // registration without one and a target without one cost no second call.
    if (!input.priority && !registered.priority) return registered;
    const ordered = await this.setPriority(input.name, input.priority ?? null);
    return { ...registered, ...ordered };
  }

  /**
   * Sets, changes (no `replace` needed, nothing embedded again) or clears (`null`) a target's claim
   * order. Rows queued from now on are ranked by it; the next backfill re-ranks the backlog.
   */
  setPriority(
    target: string,
    priority: PriorityInput | null,
  ): Promise<Target & { priorityChanged: boolean }> {
    return this.api.call("embedding_set_priority", {
      p_target: target,
      p_column: priority && "column" in priority ? priority.column : null,
      p_expression: priority && "expression" in priority ? priority.expression : null,
      p_order: priority?.order ?? "desc",
    });
  }

  /** A batch of `size` went through while the target is capped: the cap grows back after five. */
  batchLimitSuccess(
    target: string,
    size: number,
    requested: number,
  ): Promise<{ batchLimit: number | null; changed: boolean }> {
    return this.api.call("embedding_batch_limit_success", {
      p_target: target,
      p_size: size,
      p_requested: requested,
    });
  }

  /** The adaptive batch size a target learned (null: none); only called when it changes. */
  setBatchLimit(
    target: string,
    limit: number | null,
    reason?: string,
  ): Promise<{ batchLimit: number | null; reason: string | null }> {
    return this.api.call("embedding_set_batch_limit", {
      p_target: target,
      p_limit: limit,
      p_reason: reason ?? null,
    });
  }

  getTarget(name: string): Promise<Target> {
    return this.api.call<Target>("embedding_get_target", { p_name: name });
  }

  listTargets(): Promise<Target[]> {
    return this.api.call<Target[]>("embedding_list_targets", {});
  }

  removeTarget(name: string): Promise<{ removed: string }> {
    return this.api.call("embedding_remove_target", { p_name: name });
  }

  checkTarget(name: string): Promise<TargetCheck> {
    return this.api.call<TargetCheck>("embedding_check_target", { p_name: name });
  }

  /** One seeding page; with a job, the rows it queues belong to the job and the job's heartbeat beats. */
  enqueue(
    target: string,
    after: string | null,
    limit: number,
    reembed = false,
    jobId?: string,
  ): Promise<EnqueueResult> {
    return this.api.call<EnqueueResult>("embedding_enqueue", {
      p_target: target,
      p_after: after,
      p_limit: limit,
      p_reembed: reembed,
      p_job: jobId,
    });
  }

  /**
   * Claims due rows. With `jobId` the job's status comes back and nothing is claimed unless it is
   * running; with `ids`, only those rows.
   */
  claim(
    target: string,
    worker: string,
    limit: number,
    leaseSeconds: number,
    options: { ids?: readonly string[]; jobId?: string } = {},
  ): Promise<ClaimResult> {
    return this.api.call<ClaimResult>("embedding_claim", {
      p_target: target,
      p_worker: worker,
      p_limit: limit,
      p_lease_seconds: leaseSeconds,
      p_ids: options.ids,
      p_job: options.jobId,
    });
  }

  write(target: string, worker: string, items: readonly WriteItem[]): Promise<WriteResult> {
    return this.api.call<WriteResult>("embedding_write", this.writeArgs(target, worker, items));
  }

  private writeArgs(target: string, worker: string, items: readonly WriteItem[]) {
    return {
      p_target: target,
      p_worker: worker,
      p_ids: items.map((i) => i.id),
      p_hashes: items.map((i) => i.hash),
      p_vectors: new VectorList(items.map((i) => i.vector)),
      p_tokens: items.map((i) => i.tokens ?? null),
      p_truncated: items.map((i) => (i.truncated ? "true" : "false")),
    };
  }

  fail(
    target: string,
    worker: string,
    failures: readonly { id: string; error: string }[],
    permanent: boolean,
  ): Promise<{ failed: number; deadLettered: number }> {
    return this.api.call("embedding_fail", {
      p_target: target,
      p_worker: worker,
      p_ids: failures.map((f) => f.id),
      p_errors: failures.map((f) => f.error),
      p_permanent: permanent,
    });
  }

  release(target: string, worker: string, ids?: readonly string[]): Promise<{ released: number }> {
    return this.api.call("embedding_release", { p_target: target, p_worker: worker, p_ids: ids ?? null });
  }

  releasePrefix(target: string, workerPrefix: string): Promise<{ released: number }> {
    return this.api.call("embedding_release_prefix", { p_target: target, p_worker_prefix: workerPrefix });
  }

  async retry(
    target: string,
    options: { ids?: string[]; deadLetterOnly?: boolean; transientOnly?: boolean; limit?: number } = {},
  ): Promise<{ requeued: number; ids: string[]; invalid: string[] }> {
    const ids = options.ids ? splitNul(options.ids) : undefined;
    const r = await this.api.call<{ requeued: number; ids?: string[]; invalid?: string[] }>(
      "embedding_retry",
      {
        p_target: target,
        p_ids: ids ? ids.valid : null,
        p_dead_letter_only: options.deadLetterOnly ?? true,
        p_transient_only: options.transientOnly ?? false,
        p_limit: options.limit ?? 1000,
      },
    );
    return { requeued: r.requeued, ids: r.ids ?? [], invalid: [...(ids?.nul ?? []), ...(r.invalid ?? [])] };
  }

  pendingSummary(target: string): Promise<PendingSummary> {
    return this.api.call<PendingSummary>("embedding_pending_summary", { p_target: target });
  }

  deadLetters(target: string, limit = 100): Promise<DeadLetter[]> {
    return this.api.call<DeadLetter[]>("embedding_dead_letters", { p_target: target, p_limit: limit });
  }

  createJob(
    target: string,
    kind: JobKind,
    idempotencyKey: string | null,
    options: Record<string, unknown> = {},
    jobId?: string,
    eventId?: string,
  ): Promise<Job> {
    return this.api.call<Job>("embedding_job_create", {
      p_target: target,
      p_kind: kind,
      p_idempotency_key: idempotencyKey,
      p_options: options,
      p_job_id: jobId ?? null,
      p_event_id: eventId,
    });
  }

  /** Marks rows due; ids that are not valid values of the key's type come back in `invalid`. */
  /** Marks rows due now; with `priority`, they take that claim priority (higher first). */
  async markPending(
    target: string,
    ids: readonly string[],
    priority?: number,
  ): Promise<{ marked: number; invalid: string[] }> {
    const { valid, nul } = splitNul(ids);
    const r = await this.api.call<{ marked: number; invalid: string[] }>("embedding_mark_pending", {
      p_target: target,
      p_ids: valid,
      p_priority: priority ?? null,
    });
    return { marked: r.marked, invalid: [...nul, ...(r.invalid ?? [])] };
  }

  /**
   * Starts a job. `revive` (the caller did not create the job: a Replay or Rerun) lets a failed job,
   * or a running one nobody works on, run again under the next epoch. `fanOut`: start workers.
   */
  startJob(jobId: string, options: { revive?: boolean; staleSeconds?: number } = {}): Promise<StartedJob> {
    return this.api.call<StartedJob>("embedding_job_start", {
      p_job: jobId,
      p_revive: options.revive,
      p_stale_seconds: options.staleSeconds,
    });
  }

  /** A worker run starts under `role` (its event id); a second run for a role is a Replay. */
  laneStart(jobId: string, role: string, runId: string, staleSeconds?: number): Promise<LaneStart> {
    return this.api.call<LaneStart>("embedding_job_lane_start", {
      p_job: jobId,
      p_role: role,
      p_run_id: runId,
      p_stale_seconds: staleSeconds,
    });
  }

  setLanes(jobId: string, lanes: number): Promise<Job> {
    return this.api.call<Job>("embedding_job_set_lanes", { p_job: jobId, p_lanes: lanes });
  }

  /** Cancels a job, final; a job that does not exist yet is cancelled ahead (born cancelled). */
  cancelJob(jobId: string, reason: string): Promise<CancelledJob> {
    return this.api.call<CancelledJob>("embedding_job_cancel", { p_job: jobId, p_reason: reason });
  }

  /** Parks up to `limit` of a cancelled job's queued rows; call until it parks nothing. */
  parkJob(jobId: string, limit = 10_000): Promise<{ parked: number }> {
    return this.api.call("embedding_job_park", { p_job: jobId, p_limit: limit });
  }

  getJob(jobId: string): Promise<Job> {
    return this.api.call<Job>("embedding_job_get", { p_job: jobId });
  }

  /**
   * Records a batch's progress atomically: rows processed (the function's original two-argument
   * contract), and optionally failed, skipped, tokens and requests. The same call adds the batch to
   * the target's per-minute history (dead-lettered, retried, 429s, provider latency: ./history), and
   * with `pendingSummary` answers whether anything is left (`pending`), saving a round trip.
   * Returns the job after the update.
   */
  async incrementProgress(
    jobId: string,
    processed: number,
    more: ProgressCounts & { chunksPlanned?: number; chunksEmbedded?: number; pendingSummary?: boolean } = {},
  ): Promise<Job & { pending?: PendingSummary }> {
    return this.api.call<Job & { pending?: PendingSummary }>(
      "increment_embedding_job_progress",
      this.progressArgs(jobId, null, processed, more),
    );
  }

  /**
   * A batch without a job (sweep, rows.changed, recovery, POST /batch without a jobId): only its
   * history, through the same progress function (job_id NULL), with the pending summary folded in.
   */
  recordHistory(
    target: string,
    processed: number,
    more: ProgressCounts & { pendingSummary?: boolean } = {},
  ): Promise<{ target: string; pending?: PendingSummary }> {
    return this.api.call(
      "increment_embedding_job_progress",
      this.progressArgs(null, target, processed, more),
    );
  }

  /**
   * Writes a batch and records its progress (the job's counters, or the target's history without a
   * job) in one call: the steady state's second and last round trip. `processed` counts rows done
   * before the write; the rows it writes are added in SQL.
   */
  writeCounted(
    target: string,
    worker: string,
    items: readonly WriteItem[],
    jobId: string | null,
    more: ProgressCounts & { pendingSummary?: boolean } = {},
  ): Promise<WriteResult & { progress: (Job | { target: string }) & { pending?: PendingSummary } }> {
    return this.api.call("embedding_write_counted", {
      ...this.writeArgs(target, worker, items),
      p_progress: this.progressArgs(jobId, target, 0, more),
    });
  }

  private progressArgs(
    jobId: string | null,
    target: string | null,
    processed: number,
    more: ProgressCounts & { chunksPlanned?: number; chunksEmbedded?: number; pendingSummary?: boolean },
  ): Record<string, string | number | boolean | null | undefined> {
    return {
      job_id: jobId,
      increment_count: processed,
      failed_count: more.failed,
      ...(jobId ? { skipped_count: more.skipped } : {}),
      token_count: more.tokens,
      request_count: more.requests,
      chunks_planned: more.chunksPlanned || undefined,
      chunks_embedded: more.chunksEmbedded || undefined,
      ...this.historyArgs(more),
      ...(jobId ? {} : { history_target: target }),
      pending_summary: more.pendingSummary || undefined,
    };
  }

  private historyArgs(more: ProgressCounts): Record<string, number | undefined> {
    return {
      dead_lettered_count: more.deadLettered || undefined,
      retried_count: more.retried || undefined,
      rate_limited_count: more.rateLimited || undefined,
      latency_ms: more.latencyCount ? Math.round(more.latencyMs ?? 0) : undefined,
      latency_count: more.latencyCount || undefined,
      history_days: this.options.historyDays,
    };
  }

  /** A target's per-minute history from `since`, summed per `stepMinutes` (only buckets with activity). */
  history(target: string, since: Date | string | null, stepMinutes: number): Promise<TargetHistory> {
    return this.api.call<TargetHistory>("embedding_history", {
      p_target: target,
      p_since: since === null ? null : typeof since === "string" ? since : since.toISOString(),
      p_step_minutes: stepMinutes,
    });
  }

  finishJob(jobId: string, status: "completed" | "failed" | "cancelled", error?: string): Promise<Job> {
    return this.api.call<Job>("embedding_job_finish", {
      p_job: jobId,
      p_status: status,
      p_error: error ?? null,
    });
  }

  expireJobs(staleSeconds: number): Promise<{ expired: string[] }> {
    return this.api.call("embedding_jobs_expire", { p_stale_seconds: staleSeconds });
  }

  /**
   * What a backfill of `target` would embed: the row count (exact) and the content of up to
   * `sample` of those rows (all of them when they fit), for counting tokens with the real tokenizer.
   */
  estimateSample(target: string, reembed: boolean, sample: number): Promise<EstimateSample> {
    return this.api.call<EstimateSample>("embedding_estimate", {
      p_target: target,
      p_reembed: reembed,
      p_sample: sample,
    });
  }

  /** Keeps the estimate made before a job ran on the job (figures only). */
  setJobEstimate(jobId: string, estimate: Record<string, unknown>): Promise<Job & { estimate: unknown }> {
    return this.api.call("embedding_job_set_estimate", { p_job: jobId, p_estimate: estimate });
  }

  /** The recorded estimates of these jobs, by job id (jobs without one are left out). */
  jobEstimates(jobIds: readonly string[]): Promise<Record<string, Record<string, unknown>>> {
    return this.api.call("embedding_job_estimates", { p_jobs: jobIds });
  }

  status(target?: string, jobs = 5): Promise<TargetStatus[]> {
    return this.api.call<TargetStatus[]>("embedding_status", { p_target: target ?? null, p_jobs: jobs });
  }

  /** The newest migration recorded, every version recorded (an older database has no `versions`). */
  schemaVersion(): Promise<{
    version: string | null;
    versions?: string[];
    /** sha256 per version, as the migration runner recorded it when it applied the file. */
    checksums?: Record<string, string>;
    vector: boolean;
    server: string;
  }> {
    return this.api.call("embedding_schema_version", {});
  }

  // Operations: rate, activity and queue counts read from the per-row state's indexes only.

  rate(target: string, minutes: number): Promise<TargetRate> {
    return this.api.call<TargetRate>("embedding_rate", { p_target: target, p_minutes: minutes });
  }

  activity(target: string): Promise<TargetActivity> {
    return this.api.call<TargetActivity>("embedding_activity", { p_target: target });
  }

  queueCounts(target: string): Promise<QueueCounts> {
    return this.api.call<QueueCounts>("embedding_queue_counts", { p_target: target });
  }

  /** Queues again the rows marked completed whose embedding column is NULL (queue state that disagrees with coverage). */
  retryCompletedButNull(target: string, limit = 1000): Promise<{ requeued: number }> {
    return this.api.call("embedding_retry_completed_null", { p_target: target, p_limit: limit });
  }
}
