/**
 * The fake's Files and Batch API, driven by the real `openai` SDK over loopback HTTP: if a shape,
 * status or error class here drifts from what the SDK expects, product tests built on the fake would
 * prove nothing, so each behaviour the product relies on is pinned once, here.
 */
import OpenAI, {
  APIError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  RateLimitError,
  toFile,
} from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { countTokens } from "../src/lib/providers/tokenizer.js";
import {
  type FakeOpenAI,
  type FakeOpenAIBehavior,
  fakeVector,
  startFakeOpenAI,
} from "./support/fake-openai.js";

const MODEL = "text-embedding-3-small";
const KEY = "sk-test-batch-0123456789";
const DIMS = 8;

interface OutputLine {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

const fakes: FakeOpenAI[] = [];
let fake: FakeOpenAI;
let client: OpenAI;

async function start(behavior: Partial<FakeOpenAIBehavior> = {}): Promise<void> {
  fake = await startFakeOpenAI({ apiKey: KEY, ...behavior });
  fakes.push(fake);
  client = new OpenAI({ apiKey: KEY, baseURL: fake.url, maxRetries: 0 });
}

afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

const rowId = (i: number) => `row-${i}`;

function jsonl(texts: Array<string | string[]>, idOf: (i: number) => string = rowId, model = MODEL): string {
  const lines = texts.map((input, i) =>
    JSON.stringify({
      custom_id: idOf(i),
      method: "POST",
      url: "/v1/embeddings",
      body: { model, input, dimensions: DIMS },
    }),
  );
  return `${lines.join("\n")}\n`;
}

async function upload(content: string, filename = "input.jsonl") {
  return client.files.create({ file: await toFile(Buffer.from(content), filename), purpose: "batch" });
}

async function submit(content: string, metadata?: Record<string, string>) {
  const file = await upload(content);
  const batch = await client.batches.create({
    input_file_id: file.id,
    endpoint: "/v1/embeddings",
    completion_window: "24h",
    metadata,
  });
  return { file, batch };
}

async function download(fileId: string | null | undefined): Promise<OutputLine[]> {
  if (!fileId) throw new Error("no file id");
  const text = await (await client.files.content(fileId)).text();
  expect(text.endsWith("\n")).toBe(true);
  return text
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as OutputLine);
}

const ids = (lines: OutputLine[]) => lines.map((line) => line.custom_id).sort();
const texts = (n: number, prefix = "text") => Array.from({ length: n }, (_, i) => `${prefix} ${i}`);

describe("fake OpenAI Batch API through the real SDK", () => {
  it("uploads, creates, polls validating → in_progress → finalizing → completed, and downloads every custom_id", async () => {
    await start();
    const inputs = ["alpha", "beta gamma", "delta", "epsilon zeta eta", "theta"];
    const content = jsonl(inputs);
    const { file, batch } = await submit(content, { job: "job-1", table: "docs" });
    expect(file).toMatchObject({
      object: "file",
      purpose: "batch",
      filename: "input.jsonl",
      bytes: Buffer.byteLength(content),
      status: "processed",
    });
    expect(file.expires_at).toBe(file.created_at + 30 * 86_400);
    expect(batch).toMatchObject({
      object: "batch",
      status: "validating",
      endpoint: "/v1/embeddings",
      completion_window: "24h",
      input_file_id: file.id,
      metadata: { job: "job-1", table: "docs" },
      output_file_id: null,
      error_file_id: null,
      errors: null,
      request_counts: { total: 0, completed: 0, failed: 0 },
    });
    expect(batch.id).toMatch(/^batch_/);
    expect(batch.expires_at).toBe(batch.created_at + 86_400);

    const seen: string[] = [];
    let current = batch;
    while (current.status !== "completed" && seen.length < 10) {
      current = await client.batches.retrieve(batch.id);
      seen.push(current.status);
    }
    expect(seen).toEqual(["in_progress", "finalizing", "completed"]);
    expect(current.request_counts).toEqual({ total: 5, completed: 5, failed: 0 });
    for (const at of [current.in_progress_at, current.finalizing_at, current.completed_at]) {
      expect(at).toBeGreaterThanOrEqual(batch.created_at);
    }
    expect(current.error_file_id).toBeNull();
    expect(current.model).toBe(MODEL);
    const tokens = inputs.reduce((sum, text) => sum + countTokens(text), 0);
    expect(current.usage).toMatchObject({ input_tokens: tokens, total_tokens: tokens });

    const output = await download(current.output_file_id);
    expect(ids(output)).toEqual(inputs.map((_, i) => rowId(i)).sort());
    for (const line of output) {
      const text = inputs[Number(line.custom_id.slice(4))]!;
      expect(line.id).toMatch(/^batch_req_/);
      expect(line.error).toBeNull();
      expect(line.response).toMatchObject({ status_code: 200, request_id: expect.stringMatching(/^req_/) });
      expect(line.response!.body).toMatchObject({
        object: "list",
        model: MODEL,
        usage: { prompt_tokens: countTokens(text), total_tokens: countTokens(text) },
        data: [{ object: "embedding", index: 0, embedding: Array.from(fakeVector(MODEL, text, DIMS)) }],
      });
    }

    const outputs = await client.files.list({ purpose: "batch_output" });
    expect(outputs.data.map((f) => f.id)).toEqual([current.output_file_id]);
    expect(outputs.data[0]).toMatchObject({ purpose: "batch_output", filename: `${batch.id}_output.jsonl` });
    expect(fake.stats).toMatchObject({
      filesUploaded: 1,
      fileBytesUploaded: Buffer.byteLength(content),
      batchesCreated: 1,
      batchPolls: 3,
      fileDownloads: 1,
      requests: 0, // a batch never goes through the sync endpoint or its limits
    });
  });

  it("writes output lines in a seeded order that is not input order, the same on every run", async () => {
    const inputs = texts(40);
    const orderOf = async () => {
      const { batch } = await submit(jsonl(inputs));
      return (await download(fake.batch.complete(batch.id).output_file_id)).map((line) => line.custom_id);
    };
    await start();
    const first = await orderOf();
    await start();
    const second = await orderOf();
    await start({ batchShuffleSeed: "another seed" });
    const reseeded = await orderOf();

    expect(first).not.toEqual(inputs.map((_, i) => rowId(i)));
    expect([...first].sort()).toEqual(inputs.map((_, i) => rowId(i)).sort());
    expect(second).toEqual(first);
    expect(reseeded).not.toEqual(first);
  });

  it("fails inputs with the poison marker one by one into the error file, with the endpoint's own 400 body", async () => {
    await start();
    const inputs = ["fine 0", "has POISON 1", "fine 2", "POISON again 3", "fine 4"];
    const { batch } = await submit(jsonl(inputs));
    const done = fake.batch.complete(batch.id);
    expect(done).toMatchObject({
      status: "completed",
      request_counts: { total: 5, completed: 3, failed: 2 },
    });

    expect(ids(await download(done.output_file_id))).toEqual(["row-0", "row-2", "row-4"]);
    const errors = await download(done.error_file_id);
    expect(ids(errors)).toEqual(["row-1", "row-3"]);
    for (const line of errors) {
      expect(line.error).toBeNull();
      expect(line.response?.status_code).toBe(400);
      expect(line.response?.body).toEqual({
        error: {
          message: "Your input was rejected by the content policy.",
          type: "invalid_request_error",
          param: "input",
          code: "invalid_input",
        },
      });
    }
    // The same text fails the same way on the sync path.
    await expect(client.embeddings.create({ model: MODEL, input: inputs[1]! })).rejects.toMatchObject({
      status: 400,
      code: "invalid_input",
    });

    // When nothing succeeds there is no output file at all, only the error file.
    const { batch: doomed } = await submit(jsonl(["a", "b"], rowId, "no-such-model"));
    const allFailed = fake.batch.complete(doomed.id);
    expect(allFailed).toMatchObject({ status: "completed", output_file_id: null });
    const lines = await download(allFailed.error_file_id);
    expect(lines.map((line) => line.response?.status_code)).toEqual([404, 404]);
  });

  it("expires with the finished requests in the output and the rest as batch_expired in the error file", async () => {
    await start({ batchPollsPerTransition: null });
    const { batch } = await submit(jsonl(texts(10)));
    fake.batch.advance();
    expect((await client.batches.retrieve(batch.id)).status).toBe("in_progress");
    expect((await client.batches.retrieve(batch.id)).status).toBe("in_progress"); // polls alone do not step
    expect(fake.batch.progress(batch.id, 3).request_counts).toEqual({ total: 10, completed: 3, failed: 0 });

    fake.batch.expire(batch.id);
    const expired = await client.batches.retrieve(batch.id);
    expect(expired).toMatchObject({ status: "expired", completed_at: null });
    expect(expired.expired_at).toBeGreaterThanOrEqual(batch.created_at);
    expect(expired.request_counts).toEqual({ total: 10, completed: 3, failed: 7 });

    const done = await download(expired.output_file_id);
    const lost = await download(expired.error_file_id);
    expect(done).toHaveLength(3);
    expect(lost).toHaveLength(7);
    expect([...ids(done), ...ids(lost)].sort()).toEqual(
      texts(10)
        .map((_, i) => rowId(i))
        .sort(),
    );
    for (const line of lost) {
      expect(line.response).toBeNull();
      expect(line.error).toEqual({
        code: "batch_expired",
        message: "This request could not be executed before the completion window expired.",
      });
    }
    expect(() => fake.batch.expire(batch.id)).toThrow(/already ended/);
  });

  it("cancels through the API: cancelling, then cancelled with the partial output", async () => {
    await start({ batchPollsPerTransition: null });
    const { batch } = await submit(jsonl(texts(10)));
    fake.batch.advance();
    fake.batch.progress(batch.id, 4);

    const cancelling = await client.batches.cancel(batch.id);
    expect(cancelling).toMatchObject({ status: "cancelling", request_counts: { completed: 4 } });
    expect(cancelling.cancelling_at).toBeGreaterThanOrEqual(batch.created_at);
    expect((await client.batches.cancel(batch.id)).status).toBe("cancelling"); // repeating is harmless
    expect(fake.stats.batchesCancelled).toBe(1);

    fake.setBehavior({ batchPollsPerTransition: 1 });
    const cancelled = await client.batches.retrieve(batch.id);
    expect(cancelled).toMatchObject({ status: "cancelled", error_file_id: null });
    expect(cancelled.cancelled_at).toBeGreaterThanOrEqual(cancelling.cancelling_at!);
    expect(await download(cancelled.output_file_id)).toHaveLength(4);

    const { batch: finished } = await submit(jsonl(["x"]));
    fake.batch.complete(finished.id);
    await expect(client.batches.cancel(finished.id)).rejects.toBeInstanceOf(ConflictError);
  });

  it("lists batches newest first in cursor pages with their metadata, and files by purpose", async () => {
    await start();
    const created: string[] = [];
    for (let i = 0; i < 5; i++) created.push((await submit(jsonl([`t${i}`]), { job: `job-${i}` })).batch.id);
    const newestFirst = [...created].reverse();

    const first = await client.batches.list({ limit: 2 });
    expect(first.data.map((b) => b.id)).toEqual(newestFirst.slice(0, 2));
    expect(first.data.map((b) => b.metadata)).toEqual([{ job: "job-4" }, { job: "job-3" }]);
    expect(first.has_more).toBe(true);
    const second = await first.getNextPage();
    expect(second.data.map((b) => b.id)).toEqual(newestFirst.slice(2, 4));
    const all: string[] = [];
    for await (const b of client.batches.list({ limit: 2 })) all.push(b.id);
    expect(all).toEqual(newestFirst);
    expect((await client.batches.list()).data).toHaveLength(5); // default limit 20

    fake.batch.complete(created[0]!);
    const uploads: string[] = [];
    for await (const f of client.files.list({ purpose: "batch", limit: 2 })) uploads.push(f.purpose);
    expect(uploads).toEqual(Array(5).fill("batch"));
    expect((await client.files.list({ purpose: "batch_output" })).data).toHaveLength(1);
    const oldest = await client.files.list({ order: "asc", limit: 1 });
    expect(oldest.data[0]!.id).toBe(fake.batch.files()[0]!.id);
    await expect(client.batches.list({ limit: 101 })).rejects.toBeInstanceOf(BadRequestError);
  });

  it("answers an oversize embeddings request 413, a plain APIError that the SDK does not retry", async () => {
    await start({ maxRequestBytes: 1000 });
    const retrying = new OpenAI({ apiKey: KEY, baseURL: fake.url }); // the SDK's default: 2 retries
    const err = await retrying.embeddings.create({ model: MODEL, input: "x ".repeat(1000) }).catch((e) => e);

    expect(err).toBeInstanceOf(APIError);
    // The SDK maps 400/401/403/404/409/422/429/5xx to subclasses; 413 falls through to APIError itself.
    expect(err.constructor).toBe(APIError);
    for (const cls of [BadRequestError, NotFoundError, ConflictError, RateLimitError, InternalServerError]) {
      expect(err).not.toBeInstanceOf(cls);
    }
    expect(err.status).toBe(413);
    expect(err.code).toBe("request_too_large");
    expect(err.message).toMatch(/of \d+ bytes exceeds the limit of 1000 bytes/);
    expect(fake.stats.requests).toBe(1); // shouldRetry: only 408, 409, 429 and 5xx are retried
    expect(fake.stats.byStatus[413]).toBe(1);

    const small = await retrying.embeddings.create({ model: MODEL, input: "short", dimensions: DIMS });
    expect(small.data[0]!.embedding).toHaveLength(DIMS);
  });

  it("fails validation on a duplicate custom_id, naming the line, with no output files", async () => {
    await start();
    const { batch } = await submit(jsonl(["a", "b", "c"], (i) => rowId(i % 2)));
    const failed = await client.batches.retrieve(batch.id);
    expect(failed).toMatchObject({
      status: "failed",
      in_progress_at: null,
      output_file_id: null,
      error_file_id: null,
    });
    expect(failed.failed_at).toBeGreaterThanOrEqual(batch.created_at);
    expect(failed.errors).toEqual({
      object: "list",
      data: [expect.objectContaining({ code: "duplicate_custom_id", line: 3, param: "custom_id" })],
    });
    expect((await client.batches.retrieve(batch.id)).status).toBe("failed");
  });

  it("takes 50,000 requests, and fails 50,001 requests or 50,001 inputs as too many", async () => {
    await start();
    const full = await submit(jsonl(texts(50_000, "t")));
    expect(await client.batches.retrieve(full.batch.id)).toMatchObject({
      status: "in_progress",
      request_counts: { total: 50_000 },
    });

    const over = await submit(jsonl(texts(50_001, "t")));
    const failed = await client.batches.retrieve(over.batch.id);
    expect(failed.status).toBe("failed");
    expect(failed.errors?.data).toEqual([
      expect.objectContaining({ code: "too_many_tasks", message: expect.stringMatching(/50001.*50000/) }),
    ]);

    const wide = await submit(jsonl(Array.from({ length: 26 }, (_, i) => texts(2000, `w${i}`))));
    const tooWide = await client.batches.retrieve(wide.batch.id);
    expect(tooWide.errors?.data?.[0]?.message).toMatch(/52000 embedding inputs/);
  });

  it("checks the key like the embeddings endpoint, and answers unknown ids 404 with OpenAI-style bodies", async () => {
    await start();
    const wrong = new OpenAI({ apiKey: "sk-wrong", baseURL: fake.url, maxRetries: 0 });
    await expect(wrong.files.list()).rejects.toBeInstanceOf(AuthenticationError);
    await expect(
      wrong.files.create({ file: await toFile(Buffer.from(jsonl(["a"])), "a.jsonl"), purpose: "batch" }),
    ).rejects.toMatchObject({ status: 401, code: "invalid_api_key" });
    await expect(wrong.batches.retrieve("batch_abc")).rejects.toBeInstanceOf(AuthenticationError);
    expect(fake.stats.filesUploaded).toBe(0);

    await expect(client.batches.retrieve("batch_nope")).rejects.toMatchObject({
      status: 404,
      error: expect.objectContaining({
        type: "invalid_request_error",
        message: expect.stringContaining("batch_nope"),
      }),
    });
    await expect(client.batches.cancel("batch_nope")).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.files.retrieve("file-nope")).rejects.toBeInstanceOf(NotFoundError);
    await expect(client.files.content("file-nope")).rejects.toBeInstanceOf(NotFoundError);
    await expect(
      client.batches.create({
        input_file_id: "file-nope",
        endpoint: "/v1/embeddings",
        completion_window: "24h",
      }),
    ).rejects.toMatchObject({
      status: 404,
      message: expect.stringContaining("No such File object: file-nope"),
    });
  });

  it("rejects bad uploads and bad batch parameters synchronously, and fail(id) fails a batch", async () => {
    await start({ batchMaxFileBytes: 300 });
    await expect(upload(jsonl(["a"]), "input.txt")).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining("Must be .jsonl"),
    });
    await expect(upload(jsonl(texts(10)))).rejects.toMatchObject({
      status: 400,
      message: "400 File is too large.",
    });
    expect(fake.stats.filesUploaded).toBe(0);

    const file = await upload(jsonl(["a"]));
    const params = { input_file_id: file.id, endpoint: "/v1/embeddings", completion_window: "24h" } as const;
    const tooMuchMetadata = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    for (const bad of [
      { endpoint: "/v1/chat/completions" },
      { completion_window: "1h" },
      { metadata: tooMuchMetadata },
      { metadata: { ["k".repeat(65)]: "v" } },
    ]) {
      await expect(client.batches.create({ ...params, ...bad } as typeof params)).rejects.toBeInstanceOf(
        BadRequestError,
      );
    }
    expect(fake.stats.batchesCreated).toBe(0);

    const batch = await client.batches.create(params);
    const failed = fake.batch.fail(batch.id, [
      { code: "token_limit_exceeded", message: "Enqueued token limit reached." },
    ]);
    expect(failed).toMatchObject({
      status: "failed",
      errors: { object: "list", data: [{ code: "token_limit_exceeded" }] },
    });
    expect((await client.batches.retrieve(batch.id)).status).toBe("failed");
    expect(() => fake.batch.fail(batch.id)).toThrow(/already ended/);
  });
});
