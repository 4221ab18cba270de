/**
 * The OpenAI Files and Batch APIs, as the batch route needs them: upload a JSONL file, find it again
 * by name, submit a batch, find it again by metadata, poll, cancel, and read an output file line by
 * line without holding it in memory. Works with any OpenAI-compatible base URL implementing
 * `/v1/files` and `/v1/batches`. Failures become the typed errors of ../errors.ts, as on the sync path.
 */
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { APIError, toFile } from "openai";
import type { Batch } from "openai/resources/batches";
import { TargetConfigError } from "../errors.js";
import { openAIClient } from "./openai.js";
import { classifyOpenAIError, redactor, withoutCredentials } from "./openai-errors.js";

/** OpenAI's limits for one `/v1/embeddings` batch. */
export const BATCH_MAX_INPUTS = 50_000;
export const BATCH_MAX_FILE_BYTES = 200_000_000;
/** Batch API price relative to the list price (OpenAI: half). */
export const BATCH_PRICE_FACTOR = 0.5;

export type RemoteBatch = Pick<
  Batch,
  "id" | "status" | "output_file_id" | "error_file_id" | "request_counts" | "metadata" | "errors"
>;

export interface BatchApi {
  /** The id of an uploaded batch input file with this name, or null. */
  findFile(filename: string): Promise<string | null>;
  upload(filename: string, content: Buffer): Promise<string>;
  /** The batch whose metadata says `embeddings_remote` = remoteId, or null. */
  findBatch(remoteId: string): Promise<RemoteBatch | null>;
  create(inputFileId: string, metadata: Record<string, string>): Promise<RemoteBatch>;
  retrieve(batchId: string): Promise<RemoteBatch>;
  cancel(batchId: string): Promise<RemoteBatch>;
  /** The lines of a file (an output or error file), streamed. */
  lines(fileId: string): AsyncIterable<string>;
}

export interface BatchApiOptions {
  apiKey: string;
  baseURL?: string;
  organization?: string;
  project?: string;
  model: string;
  timeoutMs?: number;
}

/** Terminal statuses: nothing more will change. */
export const FINAL_STATUSES = new Set(["completed", "failed", "expired", "cancelled"]);

export function createBatchApi(options: BatchApiOptions): BatchApi {
  const baseURL = options.baseURL ?? "https://api.openai.com/v1";
  const timeoutMs = options.timeoutMs ?? 120_000;
  // No SDK retries: a durable step retries, and a retried create is reconciled through the lists.
  const client = openAIClient({ ...options, baseURL, timeoutMs, maxRetries: 0 });
  const redact = redactor(options.apiKey);
  const shownURL = withoutCredentials(baseURL);

  async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof APIError && (err.status === 404 || err.status === 405) && what !== "retrieve") {
        throw new TargetConfigError(
          `${shownURL} does not implement the Batch API (${what} answered ${err.status})`,
          "use --via sync, or point OPENAI_BASE_URL at a server with /v1/files and /v1/batches",
        );
      }
      const c = classifyOpenAIError(err, {
        timeoutMs,
        model: options.model,
        shownURL,
        redact,
        dimensionFix: () => "check the target's model and dimensions",
      });
      if (c.kind === "input") {
        throw new TargetConfigError(
          `the Batch API refused ${what}: ${c.message}`,
          "check the target's model, and that OPENAI_BASE_URL implements the Batch API",
        );
      }
      throw c.error;
    }
  }

  return {
    findFile: (filename) =>
      call("files.list", async () => {
        for await (const f of client.files.list({ purpose: "batch" })) {
          if (f.filename === filename) return f.id;
        }
        return null;
      }),
    upload: (filename, content) =>
      call("files.create", async () => {
        const f = await client.files.create({
          file: await toFile(content, filename, { type: "application/jsonl" }),
          purpose: "batch",
        });
        return f.id;
      }),
    findBatch: (remoteId) =>
      call("batches.list", async () => {
        for await (const b of client.batches.list({ limit: 100 })) {
          if (b.metadata?.embeddings_remote === remoteId) return b;
        }
        return null;
      }),
    create: (inputFileId, metadata) =>
      call("batches.create", () =>
        client.batches.create({
          input_file_id: inputFileId,
          endpoint: "/v1/embeddings",
          completion_window: "24h",
          metadata,
        }),
      ),
    retrieve: (batchId) => call("retrieve", () => client.batches.retrieve(batchId)),
    cancel: (batchId) => call("batches.cancel", () => client.batches.cancel(batchId)),
    lines: (fileId) => ({
      async *[Symbol.asyncIterator]() {
        const response = await call("files.content", () => client.files.content(fileId));
        if (!response.body) return;
        const stream = Readable.fromWeb(response.body as Parameters<typeof Readable.fromWeb>[0]);
        const reader = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
        for await (const line of reader) {
          if (line.trim() !== "") yield line;
        }
      },
    }),
  };
}
