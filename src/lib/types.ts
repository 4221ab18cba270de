/**
 * The domain's types: what the SQL API returns and takes (targets, per-row state, jobs, status),
 * shared by every layer without importing the data layer itself.
 */

export type EmbeddingKind = "vector" | "halfvec" | "real[]" | "double precision[]";

export interface Target {
  name: string;
  table: string;
  idColumn: string;
  idType: string;
  contentColumns: string[] | null;
  contentExpression: string | null;
  embeddingColumn: string;
  embeddingKind: EmbeddingKind;
  provider: string;
  model: string;
  dimensions: number;
  maxAttempts: number;
  backoffSeconds: number[];
  createdAt: string;
  updatedAt: string;
  /** Set for a chunked target: the chunk table the documents' chunks are written to, and the sizes. */
  chunks?: ChunkSettings | null;
  /** The batch size a statement timeout or a too-large request taught this target (null: no cap). */
  batchLimit?: number | null;
  batchLimitReason?: string | null;
  /** The claim order: higher first, newest first for `{ expression: "created_at", order: "desc" }`. */
  priority?: TargetPriority | null;
}

export type PriorityOrder = "asc" | "desc";

/** A target's order as registered: a column name or an SQL expression, and its direction. */
export interface TargetPriority {
  expression: string;
  order: PriorityOrder;
}

/** `--priority <column>` or `--priority-sql <expression>`, with `--priority-order` (default desc). */
export type PriorityInput = ({ column: string } | { expression: string }) & { order?: PriorityOrder };

export interface ChunkSettings {
  table: string;
  /** Largest chunk body, in tokens. */
  tokens: number;
  /** Tokens of the previous chunk repeated at the start of the next. */
  overlap: number;
}

export interface RegisterTargetInput {
  name: string;
  table: string;
  idColumn: string;
  embeddingColumn: string;
  provider: string;
  model: string;
  contentColumns?: string[];
  contentExpression?: string;
  dimensions?: number;
  maxAttempts?: number;
  /** Re-register with another definition, clearing the old state so every row is embedded again. */
  replace?: boolean;
  /** Embed each row as chunks in this table (created when it does not exist). */
  chunkTable?: string;
  chunkTokens?: number;
  chunkOverlap?: number;
  /**
   * Claim order. Not part of the definition: changing it needs no `replace` and embeds nothing
   * again. Omitted on re-registration, a priority the target had is cleared.
   */
  priority?: PriorityInput;
}

export interface RegisteredTarget extends Target {
  /** The definition changed (table, id, content, embedding column, provider/model, dimensions). */
  replaced: boolean;
  /** Rows of state cleared by a replace: all of them are embedded again by the next run or backfill. */
  reset: number;
  changed: string[];
  /** Registration created the chunk table. */
  chunkTableCreated?: boolean;
  /** Things worth saying (for example: pgvector missing, so the chunk table's column is real[]). */
  notes?: string[];
  /** The claim order changed with this registration (never a reason to embed again). */
  priorityChanged?: boolean;
}

export interface ClaimedItem {
  id: string;
  content: string;
  hash: string;
}

export interface ClaimResult {
  items: ClaimedItem[];
  /** Leases of crashed workers taken back during this claim. */
  expired: number;
  /** Rows gone from the source: state ended. */
  deleted: number;
  /** Unchanged content already embedded with the same model: completed without a provider call. */
  skipped: number;
  /** Of `skipped`: content another row of the target has, its vector copied (no provider call). */
  reused?: number;
  /** Empty content: dead-lettered, nothing to embed. */
  empty: number;
  /** With a job: its status. Nothing is claimed unless it is running. */
  jobStatus?: JobStatus | null;
}

/** A chunk claimed for embedding: its document, its index in the document's chunk set, its text. */
export interface ClaimedChunk {
  id: string;
  index: number;
  content: string;
  hash: string;
}

/** A document claimed to be cut into chunks. */
export interface ClaimedDocument {
  id: string;
  content: string;
  hash: string;
}

export interface ChunkClaimResult {
  chunks: ClaimedChunk[];
  docs: ClaimedDocument[];
  /** Documents whose chunks are all embedded but not yet swapped in. */
  ready: string[];
  expired: number;
  deleted: number;
  skipped: number;
  empty: number;
  invalid: number;
  jobStatus?: JobStatus | null;
}

/** One page of a document's chunk set, for embedding_chunk_plan. */
export interface ChunkPlanPage {
  id: string;
  hash: string;
  from: number;
  chunks: { content: string; tokens: number }[];
  last: boolean;
}

export interface ChunkPlanResult {
  planned: number;
  /** Chunks that kept a vector they already had: no provider call. */
  reused: number;
  chunks: ClaimedChunk[];
  ready: string[];
  stale: string[];
}

export interface ChunkWriteItem {
  id: string;
  index: number;
  hash: string;
  vector: ArrayLike<number>;
  tokens?: number;
}

export interface SwapResult {
  completed: string[];
  stale: string[];
  gone: string[];
  busy: string[];
  notReady: string[];
  /** Chunks in the documents now complete. */
  chunks: number;
  /** Chunk rows written to the chunk table. */
  written: number;
}

export interface WriteItem {
  id: string;
  hash: string;
  vector: ArrayLike<number>;
  tokens?: number;
  truncated?: boolean;
}

export interface WriteResult {
  written: number;
  /** Content changed mid-flight: queued again, not overwritten. */
  stale: number;
  gone: number;
  /** The lease was lost (expired and taken by another worker): nothing written. */
  notLeased: number;
  /** Rows another transaction holds right now: not written; still leased to this worker. */
  busy: string[];
}

export type JobStatus = "pending" | "running" | "completed" | "failed" | "cancelled";
export type JobKind = "backfill" | "run" | "sweep" | "recovery";

/** embedding_estimate: what a backfill would embed, and a sample of that content. */
export interface EstimateSample {
  target: string;
  table: string;
  provider: string;
  model: string;
  chunked: boolean;
  reembed: boolean;
  /** Rows of the source table. */
  tableRows: number;
  /** Rows (documents, for a chunked target) a backfill would embed: exact. */
  rows: number;
  /** all: every such row was read; bernoulli: TABLESAMPLE BERNOULLI then a random cut; random: ORDER BY random(). */
  method: "all" | "bernoulli" | "random";
  samplePercent: number | null;
  /** The content texts, built with the target's own content expression. */
  sample: string[];
}

export interface Job {
  id: string;
  target: string;
  kind: JobKind;
  status: JobStatus;
  options: Record<string, unknown>;
  itemsTotal: number;
  itemsProcessed: number;
  itemsFailed: number;
  itemsSkipped: number;
  tokens: number;
  requests: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  heartbeatAt: string | null;
  lastError: string | null;
  /** Restart generation of the job's workers: a Replay that revives the job fans out under the next. */
  epoch: number;
  /** The event that requested the job (a backfill), when there was one. */
  eventId: string | null;
  /** Seeding covered the whole table: a revived job does not seed again. */
  seeded: boolean;
  /** How many times a Replay or Rerun revived the job. */
  restarts: number;
  /** Worker lanes the job fanned out to. */
  lanes: number | null;
  /** Chunked targets: chunks cut so far, and chunks embedded (or reused). */
  chunksTotal?: number;
  chunksEmbedded?: number;
  /** Tokens embedded through the Batch API (billed at its price). */
  remoteTokens?: number;
  created?: boolean;
}

/** What starting a job decided: whether workers should be started, and whether it was a revival. */
export interface StartedJob extends Job {
  fanOut: boolean;
  revived: boolean;
}

/** A worker run's start: a Replay or Rerun of a worker run revives its failed job. */
export interface LaneStart extends StartedJob {
  replay: boolean;
}

export interface CancelledJob {
  id: string;
  /** The job existed; false: it was cancelled ahead, and is born cancelled if it ever starts. */
  known: boolean;
  cancelled: boolean;
  status: JobStatus;
  previousStatus: JobStatus | null;
  target: string | null;
  eventId?: string | null;
}

export interface EnqueueResult {
  scanned: number;
  queued: number;
  alreadyEmbedded: number;
  last: string | null;
  done: boolean;
  /** With a job that is no longer pending or running: its status; nothing was seeded. */
  stopped?: JobStatus | "unknown";
}

/** What one batch adds to a job's counters and to its target's per-minute history. */
export interface ProgressCounts {
  failed?: number;
  skipped?: number;
  tokens?: number;
  requests?: number;
  /** Of the failed rows: dead-lettered (no attempt left, a permanent rejection, empty content). */
  deadLettered?: number;
  /** Of the failed rows: scheduled for another attempt after a backoff. */
  retried?: number;
  /** Provider 429s met since the runner's last recorded batch (a rate-limited batch records nothing itself). */
  rateLimited?: number;
  /** Provider latency: the sum of `latencyCount` embed calls' durations. */
  latencyMs?: number;
  latencyCount?: number;
}

/** One step of a target's history (embedding_history): sums over the minutes in [start, start + step). */
export interface HistoryBucket {
  start: string;
  embedded: number;
  failed: number;
  deadLettered: number;
  retried: number;
  tokens: number;
  requests: number;
  rateLimited: number;
  latencyMsSum: number;
  latencyCount: number;
  latencyMsAvg: number | null;
}

export interface TargetHistory {
  target: string;
  since: string;
  stepMinutes: number;
  /** Only steps with activity, oldest first. */
  buckets: HistoryBucket[];
}

export interface PendingSummary {
  dueNow: boolean;
  nextRetryAt: string | null;
  inFlight: boolean;
  leaseExpiresAt: string | null;
}

export interface TargetStatus {
  target: string;
  table: string;
  provider: string;
  model: string;
  dimensions: number;
  total: number;
  embedded: number;
  coverage: number;
  untracked: number;
  completedButNull: number;
  tracked: number;
  pending: number;
  processing: number;
  completed: number;
  failed: number;
  deadLetter: number;
  /** Rows of a cancelled job, waiting for a later backfill to resume them. */
  parked: number;
  nextRetryAt: string | null;
  jobs: Job[];
  batchLimit?: number | null;
  batchLimitReason?: string | null;
  /** For a chunked target: its documents and chunks. */
  chunks?: ChunkStatus | null;
  /** Set when the target cannot be read (its table was dropped, a privilege was revoked). */
  error?: string;
}

export interface ChunkStatus {
  table: string;
  tokens: number;
  overlap: number;
  /** Rows in the chunk table. */
  stored: number;
  /** Chunks of documents being embedded: due, leased, embedded and waiting for the swap, dead. */
  pending: number;
  processing: number;
  embedded: number;
  deadLetter: number;
  inProgress: number;
  documents: { total: number; embedded: number; inProgress: number; failed: number };
}

export interface DeadLetter {
  id: string;
  /** For a chunked target: the document's dead chunks. */
  chunks?: number[];
  error: string | null;
  errorKind: "transient" | "permanent" | null;
  attempts: number;
  updatedAt: string;
}

export interface TargetCheck {
  ok: boolean;
  problems: string[];
  dimensions?: number;
  provider?: string;
  model?: string;
}

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

/** One remote batch of the Batch API route (embedding_remote_batches). */
export interface RemoteBatchRecord {
  id: string;
  jobId: string;
  target: string;
  seq: number;
  state: "claimed" | "uploaded" | "submitted" | "done" | "cancelled";
  /** The provider's status: validating, in_progress, finalizing, completed, expired, failed, ... */
  remoteStatus: string | null;
  inputFileId: string | null;
  batchId: string | null;
  outputFileId: string | null;
  errorFileId: string | null;
  items: number;
  bytes: number;
  completed: number;
  failed: number;
  written: number;
  errored: number;
  returned: number;
  tokens: number;
  lastError: string | null;
  createdAt: string;
  updatedAt: string;
  submittedAt: string | null;
  finishedAt: string | null;
  ageSeconds: number;
}

export interface RemoteBatchPatch {
  state?: RemoteBatchRecord["state"];
  remoteStatus?: string;
  inputFileId?: string;
  batchId?: string;
  outputFileId?: string | null;
  errorFileId?: string | null;
  items?: number;
  bytes?: number;
  completed?: number;
  failed?: number;
  addWritten?: number;
  addErrored?: number;
  addReturned?: number;
  addTokens?: number;
  lastError?: string;
}
