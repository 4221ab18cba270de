import type { EmbeddingStore } from "../db/store.js";
import { errorMessage, TargetConfigError } from "../errors.js";
import type { Logger } from "../logger.js";
import {
  BATCH_MAX_FILE_BYTES,
  BATCH_MAX_INPUTS,
  type BatchApi,
  FINAL_STATUSES,
} from "../providers/openai-batch.js";
import { decodeEmbedding } from "../providers/openai-wire.js";
import { truncateToTokens } from "../providers/tokenizer.js";
import type { RemoteBatchRecord, Target, WriteItem } from "../types.js";
import { batchSizeFor, splitOnTooLarge } from "./adaptive.js";
import { writeAll } from "./batch.js";

/**
 * The Batch API route: a job's rows go to the provider as remote batches of up to 50,000 inputs,
 * at half the price, in the provider's separate batch quota. Each function below is one durable
 * step (Inngest runs them as steps, the CLI in a loop), and each can be run again after a crash:
 *
 *   open    claims rows (leased to `batch:<id>` for longer than the 24 h window), writes the JSONL
 *           and uploads it as `embeddings-<id>.jsonl`; a file of that name already uploaded (a
 *           crash before its id was stored) is found through the Files list and used, never
 *           uploaded again.
 *   submit  creates the batch with metadata naming the job and the group; one already created
 *           (a crash before its id was stored) is found through the Batches list.
 *   poll    retrieves the batch and stores its status and counts.
 *   collect streams the output file into the same write path as every batch (lease, content hash,
 *           dimension, stale rows requeued), matched by custom_id (output order is not input order);
 *           the error file's lines become their rows' failures; rows in neither (an expired or
 *           failed batch) go back to the normal path. Written rows are no longer leased, so a
 *           second collect writes nothing twice.
 */

export interface RemoteDeps {
  store: EmbeddingStore;
  api: BatchApi;
  logger?: Logger;
}

export interface GroupLimits {
  maxInputs: number;
  maxBytes: number;
}

export const DEFAULT_GROUP_LIMITS: GroupLimits = {
  maxInputs: BATCH_MAX_INPUTS,
  // Headroom under the 200 MB limit for what the server counts differently.
  maxBytes: Math.floor(BATCH_MAX_FILE_BYTES * 0.95),
};

/** Longer than the 24 h completion window plus finalizing: the sweep never takes these rows. */
export const REMOTE_LEASE_SECONDS = 26 * 3600;
const CLAIM_PAGE = 2000;
const WRITE_PIECE = 500;
const MAX_INPUT_TOKENS = 8191;

export const remoteWorker = (id: string) => `batch:${id}`;
export const remoteFileName = (id: string) => `embeddings-${id}.jsonl`;

/** custom_id: the content hash (32 hex characters), a colon, the row id (any text). */
function customId(hash: string, id: string): string {
  return `${hash}:${id}`;
}
function parseCustomId(value: unknown): { hash: string; id: string } | null {
  if (typeof value !== "string" || value.length < 34 || value[32] !== ":") return null;
  return { hash: value.slice(0, 32), id: value.slice(33) };
}

export function isFinal(rec: Pick<RemoteBatchRecord, "state" | "remoteStatus">): boolean {
  return rec.state === "done" || rec.state === "cancelled" || FINAL_STATUSES.has(rec.remoteStatus ?? "");
}

export function assertBatchable(target: Target): void {
  if (target.chunks) {
    throw new TargetConfigError(
      `target "${target.name}" is a chunk target: the Batch API route embeds row targets only`,
      "run it without --via batch (chunks are embedded and swapped per document on the normal path)",
    );
  }
  if (target.provider !== "openai") {
    throw new TargetConfigError(
      `target "${target.name}" uses the ${target.provider} provider, which has no Batch API`,
      "use --via batch with an openai target (any OpenAI-compatible base URL with /v1/files and /v1/batches)",
    );
  }
}

/** Step: opens group `seq` of the job, claiming and uploading its rows. `empty`: nothing was left. */
export async function openGroup(
  deps: RemoteDeps,
  target: Target,
  jobId: string,
  seq: number,
  limits: GroupLimits = DEFAULT_GROUP_LIMITS,
): Promise<{ record: RemoteBatchRecord; empty: boolean; stopped: string | null }> {
  const { store, api } = deps;
  let rec = await store.remote.open(jobId, seq);
  if (rec.state !== "claimed" || rec.inputFileId) {
    // A group found empty before stays the marker that nothing was left.
    return { record: rec, empty: rec.state === "done" && rec.items === 0, stopped: null };
  }
  const name = remoteFileName(rec.id);
  const worker = remoteWorker(rec.id);
  const found = await api.findFile(name);
  if (found) {
    rec = await store.remote.update(rec.id, { state: "uploaded", inputFileId: found });
    return { record: rec, empty: false, stopped: null };
  }
  // Whatever a crashed attempt claimed was never uploaded: give it back and claim afresh.
  await store.release(target.name, worker);
  const sendDimensions = /^text-embedding-3-/.test(target.model);
  const lines: string[] = [];
  let bytes = 0;
  let skipped = 0;
  let empty = 0;
  for (;;) {
    const want = Math.min(CLAIM_PAGE, limits.maxInputs - lines.length);
    if (want <= 0) break;
    const claim = await store.claim(target.name, worker, want, REMOTE_LEASE_SECONDS, { jobId });
    if (claim.jobStatus && claim.jobStatus !== "running") {
      await store.release(target.name, worker);
      return { record: rec, empty: true, stopped: claim.jobStatus };
    }
    skipped += claim.skipped + claim.deleted;
    empty += claim.empty;
    const over: string[] = [];
    for (const item of claim.items) {
      const line = `${JSON.stringify({
        custom_id: customId(item.hash, item.id),
        method: "POST",
        url: "/v1/embeddings",
        body: {
          model: target.model,
          input: truncateToTokens(item.content, MAX_INPUT_TOKENS).text,
          encoding_format: "base64",
          ...(sendDimensions ? { dimensions: target.dimensions } : {}),
        },
      })}\n`;
      const size = Buffer.byteLength(line);
      if (over.length > 0 || bytes + size > limits.maxBytes) {
        over.push(item.id);
        continue;
      }
      lines.push(line);
      bytes += size;
    }
    if (over.length > 0) {
      await store.release(target.name, worker, over);
      break;
    }
    if (claim.items.length + claim.skipped + claim.deleted + claim.empty < want) break;
  }
  if (skipped + empty > 0) {
    await store.incrementProgress(jobId, 0, { skipped, failed: empty, deadLettered: empty });
  }
  if (lines.length === 0) {
    rec = await store.remote.update(rec.id, { state: "done", items: 0 });
    return { record: rec, empty: true, stopped: null };
  }
  await store.remote.update(rec.id, { items: lines.length, bytes });
  const fileId = await api.upload(name, Buffer.from(lines.join("")));
  rec = await store.remote.update(rec.id, { state: "uploaded", inputFileId: fileId });
  deps.logger?.info(
    { jobId, target: target.name, remote: rec.id, items: lines.length, bytes },
    "batch file uploaded",
  );
  return { record: rec, empty: false, stopped: null };
}

/** Step: submits an uploaded group (or finds the batch a crashed attempt created). */
export async function submitGroup(
  deps: RemoteDeps,
  target: Target,
  rec: RemoteBatchRecord,
): Promise<RemoteBatchRecord> {
  if (rec.state !== "uploaded" || rec.batchId || !rec.inputFileId) return rec;
  const existing = await deps.api.findBatch(rec.id);
  const batch =
    existing ??
    (await deps.api.create(rec.inputFileId, {
      embeddings_job: rec.jobId,
      embeddings_remote: rec.id,
      embeddings_target: target.name.slice(0, 500),
    }));
  const out = await deps.store.remote.update(rec.id, {
    state: "submitted",
    batchId: batch.id,
    remoteStatus: batch.status,
  });
  deps.logger?.info(
    { jobId: rec.jobId, target: target.name, remote: rec.id, batch: batch.id },
    "batch submitted",
  );
  return out;
}

/** Step: polls a submitted group and stores what the provider says. */
export async function pollGroup(deps: RemoteDeps, rec: RemoteBatchRecord): Promise<RemoteBatchRecord> {
  if (!rec.batchId || rec.state !== "submitted" || FINAL_STATUSES.has(rec.remoteStatus ?? "")) return rec;
  const b = await deps.api.retrieve(rec.batchId);
  return deps.store.remote.update(rec.id, {
    remoteStatus: b.status,
    completed: b.request_counts?.completed ?? 0,
    failed: b.request_counts?.failed ?? 0,
    outputFileId: b.output_file_id ?? null,
    errorFileId: b.error_file_id ?? null,
    ...(b.errors?.data?.[0]?.message ? { lastError: b.errors.data[0].message } : {}),
  });
}

interface LineError {
  id: string;
  error: string;
}

/** Step: writes a finished group's output back and returns its other rows to the normal path. */
export async function collectGroup(
  deps: RemoteDeps,
  target: Target,
  rec: RemoteBatchRecord,
  options: { pieceSize?: number } = {},
): Promise<RemoteBatchRecord> {
  if (rec.state !== "submitted" || !FINAL_STATUSES.has(rec.remoteStatus ?? "")) return rec;
  const { store, api } = deps;
  const worker = remoteWorker(rec.id);
  const pieceSize = batchSizeFor(target, options.pieceSize ?? WRITE_PIECE);
  let piece: WriteItem[] = [];
  let written = 0;
  let tokensWritten = 0;

  const flush = async () => {
    if (piece.length === 0) return;
    const part = piece;
    piece = [];
    const alone: LineError[] = [];
    let w = 0;
    let t = 0;
    await splitOnTooLarge(
      part,
      async (items) => {
        const r = await writeAll(store, target.name, worker, items);
        w += r.written;
        // Tokens of the rows this call wrote (all of them, or a share when some were not ours).
        const sum = items.reduce((s, i) => s + (i.tokens ?? 0), 0);
        t += items.length > 0 ? Math.round((sum * r.written) / items.length) : 0;
      },
      async (item, err) => {
        alone.push({ id: item.id, error: `writing this row alone still failed: ${errorMessage(err)}` });
      },
    );
    const f = alone.length > 0 ? await store.fail(target.name, worker, alone, false) : null;
    written += w;
    tokensWritten += t;
    await store.incrementProgress(rec.jobId, w, {
      tokens: t,
      requests: part.length,
      failed: alone.length,
      deadLettered: f?.deadLettered,
      retried: f?.failed,
    });
    await store.remote.update(rec.id, { addWritten: w, addTokens: t, addErrored: alone.length });
  };

  if (rec.outputFileId) {
    for await (const line of api.lines(rec.outputFileId)) {
      const parsed = parseLine(line);
      if (!parsed) continue;
      const body = parsed.response?.body as
        | { data?: { embedding?: unknown }[]; usage?: { prompt_tokens?: number } }
        | undefined;
      const vector = decodeEmbedding(body?.data?.[0]?.embedding);
      if (parsed.response?.status_code !== 200 || !vector) continue;
      if (vector.length !== target.dimensions) {
        throw new TargetConfigError(
          `target "${target.name}": expected ${target.dimensions} dimensions, the batch returned ${vector.length} (row ${parsed.id})`,
          `configure the target for ${vector.length} dimensions, or a model that returns ${target.dimensions}`,
        );
      }
      piece.push({ id: parsed.id, hash: parsed.hash, vector, tokens: body?.usage?.prompt_tokens });
      if (piece.length >= pieceSize) await flush();
    }
    await flush();
  }

  const permanent: LineError[] = [];
  const transient: LineError[] = [];
  if (rec.errorFileId) {
    for await (const line of api.lines(rec.errorFileId)) {
      const parsed = parseLine(line);
      if (!parsed) continue;
      const code = parsed.error?.code ?? null;
      // Expired or cancelled before it ran: not a failure of the row, it goes back to the normal path.
      if (code === "batch_expired" || code === "batch_cancelled") continue;
      const status = parsed.response?.status_code ?? 0;
      const bodyError = (parsed.response?.body as { error?: { message?: string } } | undefined)?.error;
      const message = `batch ${rec.batchId}: ${bodyError?.message ?? parsed.error?.message ?? `status ${status}`}`;
      (status >= 400 && status < 500 && status !== 429 && status !== 408 ? permanent : transient).push({
        id: parsed.id,
        error: message,
      });
    }
  }
  let errored = 0;
  for (const [list, isPermanent] of [
    [permanent, true],
    [transient, false],
  ] as const) {
    for (let i = 0; i < list.length; i += 1000) {
      const f = await store.fail(target.name, worker, list.slice(i, i + 1000), isPermanent);
      errored += f.failed + f.deadLettered;
      if (f.deadLettered > 0)
        await store.incrementProgress(rec.jobId, 0, { failed: f.deadLettered, deadLettered: f.deadLettered });
    }
  }
  // Rows that neither line names (an expired, failed or cancelled batch): back to the normal path.
  const { released } = await store.release(target.name, worker);
  const out = await store.remote.update(rec.id, {
    state: "done",
    addErrored: errored,
    addReturned: released,
  });
  deps.logger?.info(
    {
      jobId: rec.jobId,
      target: target.name,
      remote: rec.id,
      written,
      tokens: tokensWritten,
      errored,
      returned: released,
    },
    "batch collected",
  );
  return out;
}

function parseLine(line: string): {
  id: string;
  hash: string;
  response?: { status_code?: number; body?: unknown } | null;
  error?: { code?: string; message?: string } | null;
} | null {
  let obj: { custom_id?: unknown; response?: unknown; error?: unknown };
  try {
    obj = JSON.parse(line);
  } catch {
    return null;
  }
  const key = parseCustomId(obj.custom_id);
  if (!key) return null;
  return {
    ...key,
    response: obj.response as { status_code?: number; body?: unknown } | null,
    error: obj.error as { code?: string; message?: string } | null,
  };
}

export interface RemoteRunOptions {
  limits?: GroupLimits;
  /** Between polls; grows to `maxPollMs`. */
  pollMs?: number;
  maxPollMs?: number;
  signal?: AbortSignal;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  onPoll?: (records: RemoteBatchRecord[]) => void;
}

/**
 * The whole route in one process (the CLI): resumes the job's groups where they are, opens new ones
 * until no row is left, polls until every batch is final, collects them. Returns `interrupted` when
 * the signal aborted: the remote batches keep running, and running it again resumes them.
 */
export async function runRemote(
  deps: RemoteDeps,
  target: Target,
  jobId: string,
  options: RemoteRunOptions,
): Promise<{ records: RemoteBatchRecord[]; interrupted: boolean; stopped: string | null }> {
  const existing = (await deps.store.remote.list({ jobId, limit: 1000 })).sort((a, b) => a.seq - b.seq);
  let records: RemoteBatchRecord[] = [];
  for (const rec of existing) {
    if (rec.state === "claimed") {
      const o = await openGroup(deps, target, jobId, rec.seq, options.limits);
      if (o.stopped) return { records, interrupted: false, stopped: o.stopped };
      records.push(o.empty ? o.record : await submitGroup(deps, target, o.record));
    } else records.push(await submitGroup(deps, target, rec));
  }
  for (let seq = existing.length === 0 ? 0 : existing.at(-1)!.seq + 1; ; seq++) {
    if (options.signal?.aborted) return { records, interrupted: true, stopped: null };
    const o = await openGroup(deps, target, jobId, seq, options.limits);
    if (o.stopped) return { records, interrupted: false, stopped: o.stopped };
    if (o.empty) break;
    records.push(await submitGroup(deps, target, o.record));
  }
  let wait = options.pollMs ?? 30_000;
  for (;;) {
    records = await Promise.all(records.map((r) => pollGroup(deps, r)));
    options.onPoll?.(records);
    if (records.every(isFinal)) break;
    await options.sleep(wait, options.signal);
    if (options.signal?.aborted) return { records, interrupted: true, stopped: null };
    wait = Math.min(wait * 2, options.maxPollMs ?? 10 * 60_000);
  }
  for (const [i, rec] of records.entries()) records[i] = await collectGroup(deps, target, rec);
  return { records, interrupted: false, stopped: null };
}
