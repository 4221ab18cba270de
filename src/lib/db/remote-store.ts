import type { RemoteBatchPatch, RemoteBatchRecord } from "../types.js";
import type { SqlApi } from "./types.js";

/**
 * Typed calls of the Batch API route's SQL (supabase/migrations/20261201131000_remote_batches.sql):
 * one row per remote batch of a job, holding every remote id before the next step. No SQL here.
 */
export class RemoteBatchStore {
  constructor(readonly api: SqlApi) {}

  /** The job's group `seq`, created on first call, the stored one on every later call. */
  open(jobId: string, seq: number): Promise<RemoteBatchRecord> {
    return this.api.call<RemoteBatchRecord>("embedding_remote_open", { p_job: jobId, p_seq: seq });
  }

  update(id: string, patch: RemoteBatchPatch): Promise<RemoteBatchRecord> {
    return this.api.call<RemoteBatchRecord>("embedding_remote_update", { p_id: id, p_patch: { ...patch } });
  }

  list(options: {
    target?: string;
    jobId?: string;
    active?: boolean;
    limit?: number;
  }): Promise<RemoteBatchRecord[]> {
    return this.api.call<RemoteBatchRecord[]>("embedding_remote_list", {
      p_target: options.target ?? null,
      p_job: options.jobId ?? null,
      p_active: options.active ?? false,
      p_limit: options.limit ?? 20,
    });
  }

  /** Ends a job's unfinished remote batches and gives their rows back; returns the ones it ended. */
  cancel(jobId: string): Promise<{ cancelled: RemoteBatchRecord[]; released: number }> {
    return this.api.call("embedding_remote_cancel", { p_job: jobId });
  }
}
