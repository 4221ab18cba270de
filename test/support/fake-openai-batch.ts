/**
 * The Files and Batch API half of the fake OpenAI server (fake-openai.ts routes `/v1/files*` and
 * `/v1/batches*` here), so big-backfill code meets the real `openai` SDK's multipart upload, cursor
 * pages, binary downloads and error classes. Shapes follow the API reference and the SDK's types
 * (`openai/resources/batches`, `openai/resources/files`); behaviour follows the Batch guide: output
 * order is not input order, failed requests go to the error file, an expired batch keeps what
 * finished and lists the rest as `batch_expired`.
 *
 * Time is virtual: a batch takes one lifecycle step per `batchPollsPerTransition` retrieves, or when
 * the test calls the control API, so tests never sleep and every state is reachable on purpose.
 * Rate limits, latency, `failNext`, `hang` and `malformed` stay embeddings-only: batches have their
 * own limit pool, and the batch path should not inherit chaos meant for the sync path.
 */
import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Batch, BatchError } from "openai/resources/batches";
import type { FileObject } from "openai/resources/files";
import { countTokens } from "../../src/lib/providers/tokenizer.js";
import type { FakeOpenAIBehavior, FakeOpenAIStats, judgeEmbeddings } from "./fake-openai.js";

export interface FakeBatchBehavior {
  /** Retrieves of one batch per lifecycle step; null leaves all stepping to the control API. */
  batchPollsPerTransition: number | null;
  /** Seeds the output shuffle: same seed and custom_ids, same order, run after run. */
  batchShuffleSeed: string;
  /** OpenAI: at most 50,000 requests per batch. */
  batchMaxRequests: number;
  /** OpenAI: an /v1/embeddings batch holds at most 50,000 inputs across all its requests. */
  batchMaxEmbeddingInputs: number;
  /** OpenAI: batch input files up to "200 MB", read strictly as 200,000,000 bytes. */
  batchMaxFileBytes: number;
}

export interface FakeBatchStats {
  /** Successful `files.create` calls, so a test can assert an input was never uploaded twice. */
  filesUploaded: number;
  fileBytesUploaded: number;
  fileDownloads: number;
  batchesCreated: number;
  /** `batches.cancel` calls that moved a batch to `cancelling`. */
  batchesCancelled: number;
  /** `batches.retrieve` calls. */
  batchPolls: number;
}

export const BATCH_DEFAULTS: FakeBatchBehavior = {
  batchPollsPerTransition: 1,
  batchShuffleSeed: "fake-openai",
  batchMaxRequests: 50_000,
  batchMaxEmbeddingInputs: 50_000,
  batchMaxFileBytes: 200_000_000,
};

export function emptyBatchStats(): FakeBatchStats {
  return {
    filesUploaded: 0,
    fileBytesUploaded: 0,
    fileDownloads: 0,
    batchesCreated: 0,
    batchesCancelled: 0,
    batchPolls: 0,
  };
}

/** Wire objects as the API prints them: every field present, optional ones `null` when unset. */
type Wire<T> = {
  [K in keyof T]-?: Partial<Pick<T, K>> extends Pick<T, K> ? Exclude<T[K], undefined> | null : T[K];
};
export type FakeBatch = Wire<Batch>;
export type FakeFile = Wire<FileObject>;

/** Virtual time, from the test. Each method acts at once and returns the batch as a poll would see it. */
export interface FakeBatchControl {
  /** Every unfinished batch takes `steps` steps: validating → in_progress → finalizing → completed. */
  advance(steps?: number): void;
  /** Runs one batch to its end: completed; cancelled if cancelling; failed if its input was invalid. */
  complete(id: string): FakeBatch;
  /** Executes the next `count` requests of an in_progress batch, in output order. */
  progress(id: string, count: number): FakeBatch;
  /** The 24 h window ran out: finished requests keep their lines, the rest become `batch_expired`. */
  expire(id: string): FakeBatch;
  /** Fails the batch as a failed validation does: `errors` set, no output files. */
  fail(id: string, errors?: BatchError[]): FakeBatch;
  /** The batch as `batches.retrieve` would show it, without counting a poll. */
  get(id: string): FakeBatch;
  /** Every stored file, uploads and outputs, oldest first, with its content. */
  files(): Array<FakeFile & { content: string }>;
}

export interface BatchDeps {
  behavior: FakeOpenAIBehavior;
  stats: FakeOpenAIStats;
  send(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void;
  judge: typeof judgeEmbeddings;
}

interface BatchRecord {
  wire: FakeBatch;
  requests: Array<{ customId: string; body: Json }>;
  validationErrors: BatchError[];
  /** Execution order, which is also output order: a seeded permutation of `requests`. */
  order: number[];
  executed: number;
  outputLines: string[];
  errorLines: string[];
  polls: number;
}

type Json = Record<string, unknown>;
const DAY_S = 86_400;
const PURPOSES = ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"];
const TERMINAL = new Set(["failed", "completed", "expired", "cancelled"]);
const EXPIRED = "This request could not be executed before the completion window expired.";
const nowS = () => Math.floor(Date.now() / 1000);
const hex = (bytes: number) => randomBytes(bytes).toString("hex");
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** An OpenAI-style error answer, thrown from anywhere in a handler. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

function readRaw(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Fisher–Yates driven by xorshift32 seeded from sha256: deterministic, and nowhere near input order. */
function permutation(n: number, seed: string): number[] {
  let s = createHash("sha256").update(seed).digest().readUInt32LE(0) || 1;
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const j = s % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

/** A cursor page; `after` is an object id, and the SDK sends the last id it saw. */
function page<T extends { id: string }>(
  items: T[],
  query: URLSearchParams,
  defaultLimit: number,
  max: number,
) {
  const limit = Number(query.get("limit") ?? defaultLimit);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new HttpError(400, `Invalid 'limit': must be an integer between 1 and ${max}.`, "limit");
  }
  const after = query.get("after");
  const start = after === null ? 0 : items.findIndex((item) => item.id === after) + 1 || items.length;
  const data = items.slice(start, start + limit);
  const has_more = start + limit < items.length;
  return { object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more };
}

/** Reads the input file as `validating` would; the problems surface only when that step ends. */
function parseInput(content: string, endpoint: string, behavior: FakeOpenAIBehavior) {
  const errors: BatchError[] = [];
  const requests: BatchRecord["requests"] = [];
  const problem = (code: string, message: string, line: number | null, param: string | null = null) => {
    if (errors.length < 1000) errors.push({ code, message, line, param });
  };
  const lines = content.split("\n").map((l) => l.replace(/\r$/, ""));
  if (lines.at(-1) === "") lines.pop();
  if (lines.length === 0) problem("empty_file", "The batch input file is empty.", null);
  if (lines.length > behavior.batchMaxRequests) {
    const message = `The input file has ${lines.length} requests; a batch may have at most ${behavior.batchMaxRequests}.`;
    problem("too_many_tasks", message, null);
  }
  const seen = new Set<string>();
  let model: unknown;
  let inputs = 0;
  for (const [i, text] of lines.entries()) {
    const line = i + 1;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {}
    if (!isObject(obj)) {
      problem("invalid_json_line", "This line is not parseable as valid JSON.", line);
      continue;
    }
    const { custom_id: customId, method, url, body } = obj;
    if (typeof customId !== "string" || customId === "") {
      problem("missing_required_parameter", "Missing required parameter: 'custom_id'.", line, "custom_id");
      continue;
    }
    if (seen.has(customId)) {
      const message = `The custom_id '${customId}' is a duplicate of another request. The custom_id parameter must be unique for each request in a batch.`;
      problem("duplicate_custom_id", message, line, "custom_id");
    }
    seen.add(customId);
    if (method !== "POST") problem("invalid_request", "The method must be 'POST'.", line, "method");
    if (url !== endpoint) {
      problem(
        "url_mismatch",
        `The url '${url}' does not match the batch endpoint '${endpoint}'.`,
        line,
        "url",
      );
    }
    if (!isObject(body)) {
      problem("invalid_request", "The body must be a JSON object.", line, "body");
      continue;
    }
    if (requests.length === 0) model = body.model;
    else if (body.model !== model) {
      problem(
        "model_mismatch",
        `A batch uses one model; this line asks for '${body.model}'.`,
        line,
        "body.model",
      );
    }
    inputs += Array.isArray(body.input) ? body.input.length : 1;
    requests.push({ customId, body });
  }
  if (inputs > behavior.batchMaxEmbeddingInputs && lines.length <= behavior.batchMaxRequests) {
    const message = `The batch has ${inputs} embedding inputs; an embeddings batch may have at most ${behavior.batchMaxEmbeddingInputs}.`;
    problem("too_many_tasks", message, null);
  }
  return { requests, errors, model: typeof model === "string" ? model : null };
}

export function createBatchApi(deps: BatchDeps) {
  const { behavior, stats, send } = deps;
  const files = new Map<string, { wire: FakeFile; content: Buffer }>();
  const batches = new Map<string, BatchRecord>();

  function storeFile(filename: string, purpose: FakeFile["purpose"], content: Buffer, ttlS: number | null) {
    const id = `file-${randomBytes(24).toString("base64url").replace(/[-_]/g, "").slice(0, 22)}`;
    const created = nowS();
    const wire: FakeFile = {
      id,
      object: "file",
      bytes: content.length,
      created_at: created,
      filename,
      purpose,
      status: "processed",
      expires_at: ttlS === null ? null : created + ttlS,
      status_details: null,
    };
    files.set(id, { wire, content });
    return wire;
  }

  function fileOf(id: string) {
    const file = files.get(id);
    if (!file) throw new HttpError(404, `No such File object: ${id}`, "id");
    return file;
  }

  function batchOf(id: string): BatchRecord {
    const record = batches.get(id);
    if (!record) throw new HttpError(404, `No batch found with id '${id}'.`, "batch_id");
    return record;
  }

  /** One sub-request: the endpoint's model and input checks, then the endpoint's own judge. */
  function embed(body: Json): { status: number; body: unknown; tokens: number } {
    const model = typeof body.model === "string" ? body.model : "";
    const rejected = (status: number, message: string, param: string | null, code: string | null) => {
      return { status, body: { error: { message, type: "invalid_request_error", param, code } }, tokens: 0 };
    };
    if (!behavior.models.includes(model)) {
      const message = `The model \`${model}\` does not exist or you do not have access to it.`;
      return rejected(404, message, null, "model_not_found");
    }
    const inputs = typeof body.input === "string" ? [body.input] : body.input;
    if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((x) => typeof x === "string")) {
      return rejected(400, "'$.input' is invalid.", "input", null);
    }
    const counts = inputs.map((text) => countTokens(text));
    const verdict = deps.judge(behavior, model, inputs, counts, body);
    if (!verdict.ok) return { status: verdict.status, body: verdict.body, tokens: 0 };
    const tokens = counts.reduce((sum, n) => sum + n, 0);
    const usage = { prompt_tokens: tokens, total_tokens: tokens };
    return { status: 200, body: { object: "list", data: verdict.data, model, usage }, tokens };
  }

  function execute(record: BatchRecord, count: number): void {
    const { wire } = record;
    const end = Math.min(record.requests.length, record.executed + count);
    for (; record.executed < end; record.executed++) {
      const request = record.requests[record.order[record.executed]!]!;
      const result = embed(request.body);
      const response = { status_code: result.status, request_id: `req_${hex(16)}`, body: result.body };
      const line = JSON.stringify({
        id: `batch_req_${hex(12)}`,
        custom_id: request.customId,
        response,
        error: null,
      });
      // The guide: the output file holds successful requests; failed ones go to the error file.
      (result.status === 200 ? record.outputLines : record.errorLines).push(line);
      wire.request_counts![result.status === 200 ? "completed" : "failed"] += 1;
      wire.usage!.input_tokens += result.tokens;
      wire.usage!.total_tokens += result.tokens;
    }
  }

  /** Output and error files appear when a batch ends, only if they have lines, and live 30 days. */
  function writeFiles(record: BatchRecord): void {
    for (const [lines, key, suffix] of [
      [record.outputLines, "output_file_id", "output"],
      [record.errorLines, "error_file_id", "error"],
    ] as const) {
      if (lines.length === 0) continue;
      const content = Buffer.from(`${lines.join("\n")}\n`);
      record.wire[key] = storeFile(
        `${record.wire.id}_${suffix}.jsonl`,
        "batch_output",
        content,
        30 * DAY_S,
      ).id;
    }
  }

  function step(record: BatchRecord): void {
    const { wire } = record;
    const t = nowS();
    if (wire.status === "validating" && record.validationErrors.length > 0) {
      Object.assign(wire, { status: "failed", failed_at: t });
      wire.errors = { object: "list", data: record.validationErrors };
    } else if (wire.status === "validating") {
      Object.assign(wire, { status: "in_progress", in_progress_at: t });
      wire.request_counts!.total = record.requests.length;
    } else if (wire.status === "in_progress") {
      execute(record, record.requests.length);
      Object.assign(wire, { status: "finalizing", finalizing_at: t });
    } else if (wire.status === "finalizing" || wire.status === "cancelling") {
      writeFiles(record);
      const done = wire.status === "finalizing" ? "completed" : "cancelled";
      Object.assign(wire, { status: done, [`${done}_at`]: t });
    }
  }

  const snapshot = (record: BatchRecord): FakeBatch => structuredClone(record.wire);

  async function createFile(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const type = req.headers["content-type"] ?? "";
    if (!type.startsWith("multipart/form-data"))
      throw new HttpError(400, "Expected a multipart/form-data body.");
    const raw = new Uint8Array(await readRaw(req));
    // undici's multipart parser: the same library family that encoded the SDK's FormData body.
    const form = await new Request("http://fake/", {
      method: "POST",
      headers: { "content-type": type },
      body: raw,
    })
      .formData()
      .catch(() => {
        throw new HttpError(400, "The multipart body could not be parsed.");
      });
    const purpose = form.get("purpose");
    const file = form.get("file");
    if (typeof purpose !== "string")
      throw new HttpError(400, "Missing required parameter: 'purpose'.", "purpose");
    if (!file || typeof file === "string")
      throw new HttpError(400, "Missing required parameter: 'file'.", "file");
    if (!PURPOSES.includes(purpose))
      throw new HttpError(400, `Invalid value for 'purpose': '${purpose}'.`, "purpose");
    const content = Buffer.from(await file.arrayBuffer());
    if (purpose === "batch" && !file.name.endsWith(".jsonl")) {
      throw new HttpError(400, "Invalid file format for Batch API. Must be .jsonl");
    }
    if (purpose === "batch" && content.length > behavior.batchMaxFileBytes) {
      throw new HttpError(400, "File is too large.");
    }
    // files.create documents the default: purpose=batch files expire after 30 days.
    const wire = storeFile(
      file.name,
      purpose as FakeFile["purpose"],
      content,
      purpose === "batch" ? 30 * DAY_S : null,
    );
    stats.filesUploaded += 1;
    stats.fileBytesUploaded += content.length;
    send(res, 200, wire);
  }

  async function createBatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let body: unknown;
    try {
      body = JSON.parse((await readRaw(req)).toString("utf8"));
    } catch {}
    if (!isObject(body)) throw new HttpError(400, "We could not parse the JSON body of your request.");
    const { input_file_id: inputId, endpoint, completion_window: window, metadata } = body;
    for (const [name, value] of Object.entries({
      input_file_id: inputId,
      endpoint,
      completion_window: window,
    })) {
      if (typeof value !== "string") throw new HttpError(400, `Missing required parameter: '${name}'.`, name);
    }
    if (endpoint !== "/v1/embeddings") {
      throw new HttpError(400, `This fake runs /v1/embeddings batches only, not '${endpoint}'.`, "endpoint");
    }
    if (window !== "24h") {
      throw new HttpError(400, "Invalid 'completion_window': only '24h' is supported.", "completion_window");
    }
    const pairs = isObject(metadata) ? Object.entries(metadata) : [];
    const longOrNotString = ([k, v]: [string, unknown]) =>
      k.length > 64 || typeof v !== "string" || v.length > 512;
    if ((metadata != null && !isObject(metadata)) || pairs.length > 16 || pairs.some(longOrNotString)) {
      const message =
        "Invalid 'metadata': up to 16 pairs, keys up to 64 characters, string values up to 512.";
      throw new HttpError(400, message, "metadata");
    }
    const input = fileOf(inputId as string);
    if (input.wire.purpose !== "batch") {
      throw new HttpError(
        400,
        `File '${inputId}' has purpose '${input.wire.purpose}', not 'batch'.`,
        "input_file_id",
      );
    }
    const parsed = parseInput(input.content.toString("utf8"), endpoint, behavior);
    const created = nowS();
    // The reference's example object, field for field: unset fields are null, not absent.
    const wire: FakeBatch = {
      id: `batch_${hex(16)}`,
      object: "batch",
      endpoint,
      model: parsed.model,
      errors: null,
      input_file_id: input.wire.id,
      completion_window: "24h",
      status: "validating",
      output_file_id: null,
      error_file_id: null,
      created_at: created,
      in_progress_at: null,
      expires_at: created + DAY_S,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      expired_at: null,
      cancelling_at: null,
      cancelled_at: null,
      request_counts: { total: 0, completed: 0, failed: 0 },
      metadata: isObject(metadata) ? (metadata as Record<string, string>) : null,
      usage: {
        input_tokens: 0,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens: 0,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: 0,
      },
    };
    const seed = [behavior.batchShuffleSeed, ...parsed.requests.map((r) => r.customId)].join("\0");
    const order = permutation(parsed.requests.length, seed);
    const record: BatchRecord = {
      wire,
      requests: parsed.requests,
      validationErrors: parsed.errors,
      order,
      executed: 0,
      outputLines: [],
      errorLines: [],
      polls: 0,
    };
    batches.set(wire.id, record);
    stats.batchesCreated += 1;
    send(res, 200, snapshot(record));
  }

  async function route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const [, , kind, id, action, extra] = url.pathname.split("/");
    const call = `${req.method} ${kind}${id ? "/:id" : ""}${action ? `/${action}` : ""}`;
    if (extra !== undefined) throw new HttpError(404, `Unknown request URL: ${req.method} ${url.pathname}.`);
    switch (call) {
      case "POST files":
        return createFile(req, res);
      case "GET files": {
        const purpose = url.searchParams.get("purpose");
        const all = [...files.values()].map((f) => f.wire).filter((f) => !purpose || f.purpose === purpose);
        if (url.searchParams.get("order") !== "asc") all.reverse(); // the documented default is desc
        return send(res, 200, page(all, url.searchParams, 10_000, 10_000));
      }
      case "GET files/:id":
        return send(res, 200, fileOf(id!).wire);
      case "GET files/:id/content":
        stats.fileDownloads += 1;
        return send(res, 200, fileOf(id!).content.toString("utf8"), {
          "content-type": "application/octet-stream",
        });
      case "POST batches":
        return createBatch(req, res);
      case "GET batches":
        return send(
          res,
          200,
          page([...batches.values()].map((b) => b.wire).reverse(), url.searchParams, 20, 100),
        );
      case "GET batches/:id": {
        const record = batchOf(id!);
        stats.batchPolls += 1;
        record.polls += 1;
        const every = behavior.batchPollsPerTransition;
        if (every !== null && record.polls >= every) {
          record.polls = 0;
          step(record);
        }
        return send(res, 200, snapshot(record));
      }
      case "POST batches/:id/cancel": {
        const record = batchOf(id!);
        const { status } = record.wire;
        if (status === "completed" || status === "failed" || status === "expired") {
          throw new HttpError(409, `Cannot cancel a batch with status '${status}'.`);
        }
        if (status !== "cancelling" && status !== "cancelled") {
          Object.assign(record.wire, { status: "cancelling", cancelling_at: nowS() });
          stats.batchesCancelled += 1;
        }
        return send(res, 200, snapshot(record));
      }
      default:
        throw new HttpError(404, `Unknown request URL: ${req.method} ${url.pathname}.`, null, "unknown_url");
    }
  }

  const unfinished = (id: string) => {
    const record = batchOf(id);
    if (TERMINAL.has(record.wire.status)) throw new Error(`${id} already ended as ${record.wire.status}`);
    return record;
  };
  const control: FakeBatchControl = {
    advance(steps = 1) {
      for (let i = 0; i < steps; i++) for (const record of batches.values()) step(record);
    },
    complete(id) {
      const record = batchOf(id);
      for (let i = 0; i < 4; i++) step(record);
      return snapshot(record);
    },
    progress(id, count) {
      const record = batchOf(id);
      if (record.wire.status !== "in_progress")
        throw new Error(`${id} is ${record.wire.status}, not in_progress`);
      execute(record, count);
      return snapshot(record);
    },
    expire(id) {
      const record = unfinished(id);
      for (const index of record.order.slice(record.executed)) {
        const error = { code: "batch_expired", message: EXPIRED };
        const customId = record.requests[index]!.customId;
        record.errorLines.push(
          JSON.stringify({ id: `batch_req_${hex(12)}`, custom_id: customId, response: null, error }),
        );
        record.wire.request_counts!.failed += 1;
      }
      record.executed = record.requests.length;
      writeFiles(record);
      Object.assign(record.wire, { status: "expired", expired_at: nowS() });
      return snapshot(record);
    },
    fail(id, errors) {
      const record = unfinished(id);
      const data = errors ?? [
        { code: "batch_failed", message: "The batch failed.", param: null, line: null },
      ];
      Object.assign(record.wire, { status: "failed", failed_at: nowS(), errors: { object: "list", data } });
      return snapshot(record);
    },
    get: (id) => snapshot(batchOf(id)),
    files: () =>
      [...files.values()].map((f) => ({ ...structuredClone(f.wire), content: f.content.toString("utf8") })),
  };

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    try {
      if (behavior.apiKey !== null) {
        // The embeddings endpoint's check and message.
        const auth = req.headers.authorization ?? "";
        const key = auth.startsWith("Bearer ") ? auth.slice(7) : "";
        if (key !== behavior.apiKey)
          throw new HttpError(401, `Incorrect API key provided: ${key}.`, null, "invalid_api_key");
      }
      await route(req, res, url);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      req.resume(); // drain an unread upload, so the answer is not a reset the SDK would retry
      const { message, param, code } = err;
      send(res, err.status, { error: { message, type: "invalid_request_error", param, code } });
    }
  }

  return { handle, control };
}
