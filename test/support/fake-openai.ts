/**
 * A fake OpenAI embeddings server on real loopback HTTP, so the real `openai` SDK, its error parsing
 * and its timeouts are exercised exactly as in production. Also used by benchmarks, so the hot path
 * avoids per-value work beyond what a response needs.
 */
import { createHash, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { countTokens } from "../../src/lib/providers/tokenizer.js";
import {
  BATCH_DEFAULTS,
  createBatchApi,
  emptyBatchStats,
  type FakeBatchBehavior,
  type FakeBatchControl,
  type FakeBatchStats,
} from "./fake-openai-batch.js";

export type MalformedMode = "missing-data" | "wrong-count" | "nan" | "bad-json";

/** Batch API options (`batch*`) live with their implementation in fake-openai-batch.ts. */
export interface FakeOpenAIBehavior extends FakeBatchBehavior {
  /** Added before every answer. */
  latencyMs: number;
  /** The next N embedding requests answer 500. */
  failNext: number;
  /** Never answer embedding requests (until close), to trip the client timeout. */
  hang: boolean;
  /** Always return vectors of this many dimensions, whatever was asked. */
  wrongDimensions: number | null;
  /** When set, requests whose Bearer key differs get 401. */
  apiKey: string | null;
  /** Models that exist; any other answers 404 model_not_found. */
  models: string[];
  /** Any request containing an input with this substring answers 400. */
  poisonMarker: string | null;
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
  /**
   * Burst window: the server holds at most limit × burstMs / 60 s of budget, like OpenAI's quantised
   * enforcement ("60k RPM may be enforced as 1k per second"). Small values give fast 429 tests.
   */
  burstMs: number;
  malformed: MalformedMode | null;
  maxInputTokens: number;
  maxRequestTokens: number;
  maxRequestInputs: number;
  /** Embedding request bodies larger than this many bytes answer 413, as a proxy in front of OpenAI would. */
  maxRequestBytes: number | null;
}

export interface FakeOpenAIStats extends FakeBatchStats {
  /** Embedding requests received, whatever their answer. */
  requests: number;
  /** Inputs embedded in successful (200) answers. */
  inputs: number;
  /** Inputs received in all requests. */
  inputsReceived: number;
  /** Tokens billed in successful answers. */
  tokens: number;
  status429: number;
  byStatus: Record<number, number>;
}

export interface FakeOpenAI {
  /** Base URL ending in /v1, for the SDK's `baseURL`. */
  url: string;
  stats: FakeOpenAIStats;
  /** Virtual time for the Batch API: step, progress, expire or fail batches from the test. */
  batch: FakeBatchControl;
  setBehavior(partial: Partial<FakeOpenAIBehavior>): void;
  resetStats(): void;
  close(): Promise<void>;
}

const DEFAULTS: FakeOpenAIBehavior = {
  latencyMs: 0,
  failNext: 0,
  hang: false,
  wrongDimensions: null,
  apiKey: null,
  models: ["text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"],
  poisonMarker: "POISON",
  requestsPerMinute: null,
  tokensPerMinute: null,
  burstMs: 60_000,
  malformed: null,
  maxInputTokens: 8191,
  maxRequestTokens: 300_000,
  maxRequestInputs: 2048,
  maxRequestBytes: null,
  ...BATCH_DEFAULTS,
};

const NATIVE_DIMENSIONS: Record<string, number> = { "text-embedding-3-large": 3072 };
const MINUTE_MS = 60_000;

interface Bucket {
  limit: number;
  capacity: number;
  ratePerMs: number;
  level: number;
  updatedAt: number;
}

function bucketFor(limit: number | null, burstMs: number, previous?: Bucket): Bucket | null {
  if (limit === null || limit <= 0) return null;
  const capacity = Math.max(1, (limit * burstMs) / MINUTE_MS);
  if (previous && previous.limit === limit && previous.capacity === capacity) return previous;
  return { limit, capacity, ratePerMs: limit / MINUTE_MS, level: capacity, updatedAt: Date.now() };
}

function refill(bucket: Bucket, now: number): void {
  bucket.level = Math.min(bucket.capacity, bucket.level + (now - bucket.updatedAt) * bucket.ratePerMs);
  bucket.updatedAt = now;
}

/** Go-style duration as OpenAI prints it: "20ms", "1.5s", "6m0s", "1h2m3s". */
export function formatResetDuration(ms: number): string {
  if (ms < 1000) return `${Math.ceil(ms)}ms`;
  const totalSeconds = ms / 1000;
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = Number((totalSeconds % 60).toFixed(3));
  if (hours > 0) return `${hours}h${minutes}m${seconds}s`;
  if (minutes > 0) return `${minutes}m${seconds}s`;
  return `${seconds}s`;
}

/** Deterministic unit vector: same (model, text, dims) → same vector, seeded from sha256. */
export function fakeVector(model: string, text: string, dims: number): Float32Array {
  const seed = createHash("sha256").update(model).update("\0").update(text).digest();
  // xorshift128 seeded from the hash: cheap enough for thousands of 1536-d vectors per second.
  let a = seed.readUInt32LE(0) || 1;
  let b = seed.readUInt32LE(4) || 2;
  let c = seed.readUInt32LE(8) || 3;
  let d = seed.readUInt32LE(12) || 4;
  const out = new Float32Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    const t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = (d ^ (d >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    const value = d / 2147483648 - 1;
    out[i] = value;
    norm += value * value;
  }
  const scale = 1 / Math.sqrt(norm || 1);
  for (let i = 0; i < dims; i++) out[i] = out[i]! * scale;
  return out;
}

function errorBody(message: string, type: string, code: string | null, param: string | null = null) {
  return { error: { message, type, param, code } };
}

export interface EmbeddingRequestBody {
  model?: unknown;
  input?: unknown;
  encoding_format?: unknown;
  dimensions?: unknown;
}

export type EmbeddingVerdict =
  | { ok: false; status: number; body: ReturnType<typeof errorBody> }
  | { ok: true; data: Array<{ object: string; index: number; embedding: string | Array<number | null> }> };

/**
 * What follows admission (auth, model, chaos, rate limits): per-request limits, per-input checks and
 * the vectors. Batch API sub-requests (fake-openai-batch.ts) are judged by this same function, so a
 * text that fails or embeds one way on the sync path does the same inside a batch.
 */
export function judgeEmbeddings(
  behavior: FakeOpenAIBehavior,
  model: string,
  inputs: string[],
  tokenCounts: number[],
  body: EmbeddingRequestBody,
  nan = false,
): EmbeddingVerdict {
  const reject = (message: string, type: string, code: string | null, param: string | null) => ({
    ok: false as const,
    status: 400,
    body: errorBody(message, type, code, param),
  });
  const requestTokens = tokenCounts.reduce((sum, n) => sum + n, 0);
  if (inputs.length > behavior.maxRequestInputs) {
    const message = `'$.input' must have at most ${behavior.maxRequestInputs} items.`;
    return reject(message, "invalid_request_error", null, "input");
  }
  if (requestTokens > behavior.maxRequestTokens) {
    const message = `Requested ${requestTokens} tokens, max ${behavior.maxRequestTokens} tokens per request`;
    return reject(message, "max_tokens_per_request", "max_tokens_per_request", null);
  }
  for (const [i, text] of inputs.entries()) {
    if (text === "") return reject(`'$.input[${i}]' is invalid.`, "invalid_request_error", null, "input");
    if (tokenCounts[i]! > behavior.maxInputTokens) {
      const message = `This model's maximum context length is ${behavior.maxInputTokens + 1} tokens, however you requested ${tokenCounts[i]} tokens. Please reduce your prompt.`;
      return reject(message, "invalid_request_error", null, "input");
    }
    if (behavior.poisonMarker !== null && text.includes(behavior.poisonMarker)) {
      const message = "Your input was rejected by the content policy.";
      return reject(message, "invalid_request_error", "invalid_input", "input");
    }
  }
  const asked = typeof body.dimensions === "number" ? body.dimensions : undefined;
  if (asked !== undefined && model === "text-embedding-ada-002") {
    const message = "This model does not support specifying dimensions.";
    return reject(message, "invalid_request_error", null, "dimensions");
  }

  const dims = behavior.wrongDimensions ?? asked ?? NATIVE_DIMENSIONS[model] ?? 1536;
  const base64 = body.encoding_format === "base64";
  const data = inputs.map((text, index) => {
    const vector = fakeVector(model, text, dims);
    if (nan) vector[0] = Number.NaN;
    const embedding = base64
      ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString("base64")
      : Array.from(vector, (v) => (Number.isFinite(v) ? v : null));
    return { object: "embedding", index, embedding };
  });
  return { ok: true, data };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function startFakeOpenAI(options: Partial<FakeOpenAIBehavior> = {}): Promise<FakeOpenAI> {
  const behavior: FakeOpenAIBehavior = { ...DEFAULTS, ...options };
  let requestBucket = bucketFor(behavior.requestsPerMinute, behavior.burstMs);
  let tokenBucket = bucketFor(behavior.tokensPerMinute, behavior.burstMs);
  const stats: FakeOpenAIStats = {
    requests: 0,
    inputs: 0,
    inputsReceived: 0,
    tokens: 0,
    status429: 0,
    byStatus: {},
    ...emptyBatchStats(),
  };
  const sockets = new Set<Socket>();

  function rateHeaders(now: number): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const [kind, bucket] of [
      ["requests", requestBucket],
      ["tokens", tokenBucket],
    ] as const) {
      if (!bucket) continue;
      refill(bucket, now);
      headers[`x-ratelimit-limit-${kind}`] = String(bucket.limit);
      headers[`x-ratelimit-remaining-${kind}`] = String(Math.max(0, Math.floor(bucket.level)));
      headers[`x-ratelimit-reset-${kind}`] = formatResetDuration(
        (bucket.capacity - bucket.level) / bucket.ratePerMs,
      );
    }
    return headers;
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
    stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
    if (status === 429) stats.status429 += 1;
    const payload = typeof body === "string" ? body : JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json",
      "x-request-id": `req_${randomUUID()}`,
      ...headers,
    });
    res.end(payload);
  }

  async function handleEmbeddings(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests += 1;
    const raw = await readBody(req);
    if (behavior.latencyMs > 0) await sleep(behavior.latencyMs);
    const now = Date.now();

    const bytes = Buffer.byteLength(raw);
    if (behavior.maxRequestBytes !== null && bytes > behavior.maxRequestBytes) {
      // The whole body was read first: answering mid-upload resets the socket, which the SDK retries.
      return send(
        res,
        413,
        errorBody(
          `Request body of ${bytes} bytes exceeds the limit of ${behavior.maxRequestBytes} bytes.`,
          "invalid_request_error",
          "request_too_large",
        ),
      );
    }

    if (behavior.apiKey !== null) {
      const auth = req.headers.authorization ?? "";
      const key = auth.startsWith("Bearer ") ? auth.slice(7) : "";
      if (key !== behavior.apiKey) {
        // Echoes the whole key (OpenAI masks most of it) so tests prove the provider never repeats it.
        return send(
          res,
          401,
          errorBody(`Incorrect API key provided: ${key}.`, "invalid_request_error", "invalid_api_key"),
        );
      }
    }

    let body: EmbeddingRequestBody;
    try {
      body = JSON.parse(raw);
    } catch {
      return send(
        res,
        400,
        errorBody("We could not parse the JSON body of your request.", "invalid_request_error", null),
      );
    }
    const model = typeof body.model === "string" ? body.model : "";
    if (!behavior.models.includes(model)) {
      return send(
        res,
        404,
        errorBody(
          `The model \`${model}\` does not exist or you do not have access to it.`,
          "invalid_request_error",
          "model_not_found",
        ),
      );
    }
    if (behavior.failNext > 0) {
      behavior.failNext -= 1;
      return send(
        res,
        500,
        errorBody("The server had an error while processing your request.", "server_error", null),
      );
    }
    if (behavior.hang) {
      // Leave the response open; close() destroys the socket.
      return;
    }

    const inputs = typeof body.input === "string" ? [body.input] : body.input;
    if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((x) => typeof x === "string")) {
      return send(res, 400, errorBody("'$.input' is invalid.", "invalid_request_error", null, "input"));
    }
    stats.inputsReceived += inputs.length;
    const tokenCounts = inputs.map((text) => countTokens(text));
    const requestTokens = tokenCounts.reduce((sum, n) => sum + n, 0);

    if (requestBucket || tokenBucket) {
      if (requestBucket) refill(requestBucket, now);
      if (tokenBucket) refill(tokenBucket, now);
      const needTokens = tokenBucket ? Math.min(requestTokens, tokenBucket.capacity) : 0;
      const waitRequests =
        requestBucket && requestBucket.level < 1 ? (1 - requestBucket.level) / requestBucket.ratePerMs : 0;
      const waitTokens =
        tokenBucket && tokenBucket.level < needTokens
          ? (needTokens - tokenBucket.level) / tokenBucket.ratePerMs
          : 0;
      const wait = Math.max(waitRequests, waitTokens);
      if (wait > 0) {
        const which = waitRequests >= waitTokens ? "requests" : "tokens";
        return send(
          res,
          429,
          errorBody(
            `Rate limit reached for ${model} on ${which} per min. Please try again in ${formatResetDuration(wait)}.`,
            which,
            "rate_limit_exceeded",
          ),
          {
            ...rateHeaders(now),
            "retry-after-ms": String(Math.ceil(wait)),
            "retry-after": String(Math.ceil(wait / 1000)),
          },
        );
      }
      if (requestBucket) requestBucket.level -= 1;
      if (tokenBucket) tokenBucket.level -= needTokens;
    }

    const verdict = judgeEmbeddings(behavior, model, inputs, tokenCounts, body, behavior.malformed === "nan");
    if (!verdict.ok) return send(res, verdict.status, verdict.body);
    const { data } = verdict;
    const headers = rateHeaders(now);
    switch (behavior.malformed) {
      case "missing-data":
        return send(
          res,
          200,
          { object: "list", model, usage: { prompt_tokens: 0, total_tokens: 0 } },
          headers,
        );
      case "wrong-count":
        data.pop();
        break;
      case "bad-json":
        return send(res, 200, '{"object":"list","data":[', headers);
      default:
        break;
    }
    stats.inputs += inputs.length;
    stats.tokens += requestTokens;
    send(
      res,
      200,
      { object: "list", data, model, usage: { prompt_tokens: requestTokens, total_tokens: requestTokens } },
      headers,
    );
  }

  const batchApi = createBatchApi({ behavior, stats, send, judge: judgeEmbeddings });

  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    if (/^\/v1\/(files|batches)(\/|$)/.test(path)) {
      batchApi.handle(req, res, new URL(req.url ?? "", "http://fake")).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, errorBody(String(err), "server_error", null));
      });
      return;
    }
    if (req.method === "POST" && path === "/v1/embeddings") {
      handleEmbeddings(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, errorBody(String(err), "server_error", null));
      });
      return;
    }
    send(
      res,
      404,
      errorBody(`Unknown request URL: ${req.method} ${path}.`, "invalid_request_error", "unknown_url"),
    );
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    stats,
    batch: batchApi.control,
    setBehavior(partial) {
      Object.assign(behavior, partial);
      requestBucket = bucketFor(behavior.requestsPerMinute, behavior.burstMs, requestBucket ?? undefined);
      tokenBucket = bucketFor(behavior.tokensPerMinute, behavior.burstMs, tokenBucket ?? undefined);
    },
    resetStats() {
      Object.assign(stats, {
        requests: 0,
        inputs: 0,
        inputsReceived: 0,
        tokens: 0,
        status429: 0,
        byStatus: {},
        ...emptyBatchStats(),
      });
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
