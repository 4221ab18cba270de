import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  MalformedResponseError,
  RateLimitedError,
  TargetConfigError,
  TransientError,
} from "../src/lib/errors.js";
import { createOpenAIProvider, type OpenAIProviderOptions } from "../src/lib/providers/openai.js";
import type { EmbedBatchResult, EmbeddingProvider } from "../src/lib/providers/provider.js";
import { createRateGovernor } from "../src/lib/providers/rate-governor.js";
import { countTokens } from "../src/lib/providers/tokenizer.js";
import {
  type FakeOpenAI,
  type FakeOpenAIBehavior,
  fakeVector,
  startFakeOpenAI,
} from "./support/fake-openai.js";

const MODEL = "text-embedding-3-small";
const KEY = "sk-test-0123456789abcdef";

let fake: FakeOpenAI;

async function start(behavior: Partial<FakeOpenAIBehavior> = {}) {
  fake = await startFakeOpenAI(behavior);
}

function provider(options: Partial<OpenAIProviderOptions> = {}): EmbeddingProvider {
  return createOpenAIProvider({ apiKey: KEY, baseURL: fake.url, model: MODEL, dimensions: 384, ...options });
}

function vectorsOf(result: EmbedBatchResult): Array<Float32Array | number[]> {
  return result.outcomes.map((outcome) => {
    if (!outcome.ok) throw new Error(`unexpected failure: ${outcome.error}`);
    return outcome.vector;
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What the engine does, reduced to a loop: retry the whole call after the delay the server asked for. */
async function embedWithRetry(p: EmbeddingProvider, texts: string[]): Promise<EmbedBatchResult> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await p.embed(texts);
    } catch (err) {
      if (!(err instanceof RateLimitedError) || attempt >= 50) throw err;
      await sleep(err.retryAfterMs ?? 50);
    }
  }
}

beforeEach(async () => {
  await start();
});

afterEach(async () => {
  await fake.close();
});

describe("OpenAI provider over real HTTP", () => {
  it("returns one deterministic unit vector per input, with per-input and billed token counts", async () => {
    const texts = ["the quick brown fox", "jumps over", "the lazy dog"];
    const result = await provider().embed(texts);

    expect(result.requests).toBe(1);
    expect(result.outcomes).toHaveLength(3);
    for (const [i, outcome] of result.outcomes.entries()) {
      expect(outcome).toMatchObject({ ok: true, tokens: countTokens(texts[i]!), truncated: false });
      if (!outcome.ok) continue;
      expect(outcome.vector).toHaveLength(384);
      expect(Array.from(outcome.vector)).toEqual(Array.from(fakeVector(MODEL, texts[i]!, 384)));
    }
    const expectedTokens = texts.reduce((sum, t) => sum + countTokens(t), 0);
    expect(result.tokens).toBe(expectedTokens);
    expect(fake.stats.tokens).toBe(expectedTokens);
  });

  it("sends identical texts once and fans the vector out to every position", async () => {
    const result = await provider().embed(["same", "other", "same", "same"]);

    expect(fake.stats.inputs).toBe(2);
    expect(result.tokens).toBe(countTokens("same") + countTokens("other"));
    const [a, , c, d] = vectorsOf(result);
    expect(Array.from(c!)).toEqual(Array.from(a!));
    expect(Array.from(d!)).toEqual(Array.from(a!));
    expect(c).not.toBe(a);
    expect(result.outcomes[3]).toMatchObject({ ok: true, tokens: countTokens("same") });
  });

  it("packs requests by input count and real token count, and the token counts add up", async () => {
    const texts = Array.from({ length: 7 }, (_, i) => `row ${i} ${"lorem ipsum ".repeat(i + 1)}`);
    const perText = texts.map(countTokens);
    const byInputs = await provider({ maxRequestInputs: 3 }).embed(texts);
    expect(byInputs.requests).toBe(3);

    fake.resetStats();
    const budget = perText[0]! + perText[1]!;
    const byTokens = await provider({ maxRequestTokens: budget }).embed(texts.slice(0, 2));
    expect(byTokens.requests).toBe(1);
    const split = await provider({ maxRequestTokens: budget - 1 }).embed(texts.slice(0, 2));
    expect(split.requests).toBe(2);

    const total = perText.reduce((sum, n) => sum + n, 0);
    expect(byInputs.tokens).toBe(total);
    expect(byInputs.outcomes.reduce((sum, o) => sum + (o.ok ? o.tokens : 0), 0)).toBe(total);
  });

  it("truncates an input over 8191 tokens and records it", async () => {
    const long = "embedding ".repeat(9000);
    expect(countTokens(long)).toBeGreaterThan(8191);

    const result = await provider().embed([long, "short"]);

    expect(result.outcomes[0]).toMatchObject({ ok: true, truncated: true });
    const first = result.outcomes[0]!;
    expect(first.ok && first.tokens).toBeLessThanOrEqual(8191);
    expect(first.ok && first.tokens).toBeGreaterThan(8180);
    expect(result.outcomes[1]).toMatchObject({ ok: true, truncated: false });
  });

  it("fails a poisoned input alone while the rest of the batch succeeds", async () => {
    const texts = Array.from({ length: 10 }, (_, i) => `clean row ${i}`);
    texts[3] = "a POISON row";
    texts[8] = "another POISON row";

    const result = await provider().embed(texts);

    for (const [i, outcome] of result.outcomes.entries()) {
      if (i === 3 || i === 8) {
        expect(outcome).toEqual({ ok: false, error: "Your input was rejected by the content policy." });
      } else {
        expect(outcome.ok).toBe(true);
      }
    }
    expect(fake.stats.inputs).toBe(8);
    expect(result.requests).toBe(fake.stats.requests);
    expect(result.tokens).toBe(fake.stats.tokens);
  });

  it("fails an empty input alone without sending it", async () => {
    const result = await provider().embed(["", "fine"]);
    expect(result.outcomes[0]).toMatchObject({ ok: false });
    expect(result.outcomes[1]).toMatchObject({ ok: true });
    expect(fake.stats.inputsReceived).toBe(1);
  });

  it("rides out a 429 burst with the shared governor and loses no input", async () => {
    // 1200 RPM enforced over 100 ms windows: a budget of 2 requests refilled at 20/s.
    fake.setBehavior({ requestsPerMinute: 1200, burstMs: 100 });
    const p = provider({ governor: createRateGovernor(), maxRequestInputs: 5 });
    const batches = Array.from({ length: 8 }, (_, b) =>
      Array.from({ length: 10 }, (_, i) => `batch ${b} row ${i}`),
    );

    const results = await Promise.all(batches.map((texts) => embedWithRetry(p, texts)));

    expect(fake.stats.status429).toBeGreaterThan(0);
    for (const [b, result] of results.entries()) {
      for (const [i, vector] of vectorsOf(result).entries()) {
        expect(Array.from(vector)).toEqual(Array.from(fakeVector(MODEL, batches[b]![i]!, 384)));
      }
    }
    // Only the opening burst (sent before any rate-limit header was seen) may hit the limit.
    expect(fake.stats.status429).toBeLessThan(fake.stats.byStatus[200]!);

    // Once the governor has read the headers, a steady backfill runs at the limit without 429s. The
    // server now tolerates 500 ms of bunching (still far less than 20 unpaced requests), so a loaded
    // test runner's scheduling jitter does not count as a governor failure.
    fake.setBehavior({ burstMs: 500 });
    fake.resetStats();
    let next = 0;
    const workers = Array.from({ length: 6 }, async () => {
      while (next < 20) {
        const b = next++;
        await embedWithRetry(
          p,
          Array.from({ length: 5 }, (_, i) => `steady ${b} row ${i}`),
        );
      }
    });
    await Promise.all(workers);
    expect(fake.stats.byStatus[200]).toBe(20);
    expect(fake.stats.status429).toBe(0);
  });

  it("maps 401 to TargetConfigError without ever printing the key", async () => {
    fake.setBehavior({ apiKey: "sk-the-right-key" });
    const err = await provider()
      .embed(["x"])
      .catch((e: unknown) => e);

    expect(err).toBeInstanceOf(TargetConfigError);
    expect((err as Error).message).not.toContain(KEY);
    expect((err as Error).message).not.toContain("0123456789");
    expect((err as TargetConfigError).fix).toMatch(/OPENAI_API_KEY/);
  });

  it("maps an unknown model to TargetConfigError naming the model", async () => {
    const err = await provider({ model: "text-embedding-9", dimensions: 384 })
      .embed(["x"])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetConfigError);
    expect((err as Error).message).toContain('model "text-embedding-9"');
  });

  it("rejects a vector whose dimension differs from the column, even when dimensions is not sent", async () => {
    const err = await provider({ dimensions: undefined, expectedDimensions: 384 })
      .embed(["x", "y"])
      .catch((e: unknown) => e);

    expect(err).toBeInstanceOf(TargetConfigError);
    expect((err as Error).message).toContain("expected 384 dimensions, got 1536");
    expect((err as TargetConfigError).fix).toMatch(/dimensions: 384|vector\(1536\)/);
  });

  it("rejects a server that ignores the requested dimensions", async () => {
    fake.setBehavior({ wrongDimensions: 1000 });
    const err = await provider()
      .embed(["x"])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetConfigError);
    expect((err as Error).message).toContain("expected 384 dimensions, got 1000");
  });

  it("treats a request-wide 400 as a config error instead of bisecting every input", async () => {
    const err = await provider({ model: "text-embedding-ada-002", dimensions: 384 })
      .embed(["a", "b", "c", "d"])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetConfigError);
    expect(fake.stats.requests).toBe(1);
  });

  it("maps a 500 to TransientError, with no hidden SDK retry", async () => {
    fake.setBehavior({ failNext: 1 });
    const err = await provider()
      .embed(["x"])
      .catch((e: unknown) => e);

    expect(err).toBeInstanceOf(TransientError);
    expect(err).not.toBeInstanceOf(RateLimitedError);
    expect(fake.stats.requests).toBe(1);
    await expect(provider().embed(["x"])).resolves.toMatchObject({ requests: 1 });
  });

  it("maps a refused connection to TransientError", async () => {
    const p = provider();
    await fake.close();
    const err = await p.embed(["x"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toMatch(/could not reach http:\/\/127\.0\.0\.1:\d+\/v1: .*ECONNREFUSED/);
    await start();
  });

  it("maps a hung request to TransientError through the client timeout", async () => {
    fake.setBehavior({ hang: true });
    // The fake never answers: only the client's own timeout can end this call.
    const err = await provider({ timeoutMs: 200 })
      .embed(["x"])
      .catch((e: unknown) => e);

    expect(err).toBeInstanceOf(TransientError);
    expect((err as Error).message).toMatch(/timed out/);
  });

  it("passes a caller's abort through untouched instead of calling it a provider failure", async () => {
    fake.setBehavior({ hang: true });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("target paused")), 50);
    const err = await provider({ timeoutMs: 5000 })
      .embed(["x"], { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(TransientError);
    expect((err as Error).message).toBe("target paused");
  });

  it.each(["missing-data", "wrong-count", "nan", "bad-json"] as const)(
    "maps a malformed response (%s) to MalformedResponseError",
    async (mode) => {
      fake.setBehavior({ malformed: mode });
      const err = await provider()
        .embed(["x", "y"])
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MalformedResponseError);
    },
  );

  it("refuses a provider whose dimensions contradict the target column", () => {
    expect(() => provider({ dimensions: 512, expectedDimensions: 384 })).toThrow(TargetConfigError);
  });
});
