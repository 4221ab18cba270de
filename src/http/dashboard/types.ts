/** The shapes the dashboard reads from GET /status, GET /dead-letters and GET /history. */

export interface Reason {
  level: "warning" | "critical";
  message: string;
}
export interface JobView {
  id: string;
  kind: string;
  status: string;
  percent: number;
  done: number;
  itemsTotal: number;
  itemsFailed: number;
  chunksTotal?: number;
  chunksEmbedded?: number;
  averagePerMinute: number | null;
  etaSeconds: number | null;
  itemsProcessed: number;
  itemsSkipped: number;
  tokens: number;
  estimatedCostUsd: number;
  finishedAt: string | null;
  createdAt: string;
  startedAt: string | null;
  elapsedSeconds: number | null;
  etaAt: string | null;
  lastError: string | null;
  eventId: string | null;
  options: Record<string, unknown>;
}
export interface TargetView {
  target: string;
  table: string;
  provider: string;
  model: string;
  dimensions: number;
  health: { level: string; reasons: Reason[] };
  coverage: number;
  embedded: number;
  total: number;
  pending: number;
  processing: number;
  failed: number;
  deadLetter: number;
  untracked: number;
  parked?: number;
  completedButNull: number;
  batchLimit?: number | null;
  chunks?: {
    table: string;
    stored: number;
    pending: number;
    processing: number;
    embedded: number;
    deadLetter: number;
    documents: { total: number; embedded: number; inProgress: number; failed: number };
  } | null;
  remaining: number;
  rate: { windowMinutes: number; perMinute: number };
  etaSeconds: number | null;
  lastEmbeddedAt: string | null;
  tokens: number;
  estimatedCostUsd: number;
  pricePerMillion?: number | null;
  estimatedRemainingCostUsd: number | null;
  jobs: JobView[];
  remoteBatches?: RemoteBatchView[];
}
/** A remote batch of the Batch API route. */
export interface RemoteBatchView {
  id: string;
  seq: number;
  state: string;
  remoteStatus: string | null;
  batchId: string | null;
  items: number;
  completed: number;
  failed: number;
  written: number;
  returned: number;
  ageSeconds: number;
}
export interface Status {
  generatedAt: string;
  health: { level: string };
  targets: TargetView[];
}
export interface DeadLetter {
  id: string;
  error: string | null;
  errorKind: string | null;
  attempts: number;
  updatedAt: string;
}
export interface DeadLetters {
  targets: { target: string; items: DeadLetter[] }[];
}
/** One step of GET /history (only steps with activity are returned). */
export interface HistoryBucket {
  start: string;
  embedded: number;
  failed: number;
  deadLettered: number;
  retried: number;
  tokens: number;
  requests: number;
  rateLimited: number;
  latencyMsAvg: number | null;
}
export interface TargetHistory {
  target: string;
  since: string;
  stepMinutes: number;
  buckets: HistoryBucket[];
}
