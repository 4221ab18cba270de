import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../src/lib/config.js";
import { ConfigError } from "../src/lib/errors.js";
import { providerForTarget } from "../src/lib/providers/index.js";
import { createOpenAIProvider } from "../src/lib/providers/openai.js";
import { createRateGovernor, type RateGovernor } from "../src/lib/providers/rate-governor.js";
import { countTokens } from "../src/lib/providers/tokenizer.js";
import { type FakeOpenAI, fakeVector, startFakeOpenAI } from "./support/fake-openai.js";

/**
 * The rate governor against the fake server's per-second enforcement, through the real provider and
 * SDK over loopback HTTP. No assertion depends on how fast the machine is: each bound below holds
 * however late timers fire.
 */

const MODEL = "text-embedding-3-small";
let fake: FakeOpenAI;

beforeEach(async () => {
  fake = await startFakeOpenAI();
});
afterEach(async () => {
  await fake.close();
});

function provider(governor: RateGovernor) {
  return createOpenAIProvider({
    apiKey: "sk-test",
    baseURL: fake.url,
    model: MODEL,
    dimensions: 384,
    governor,
  });
}

/** `inputs` distinct texts of about 100 tokens each. */
function texts(batch: number, inputs: number): string[] {
  return Array.from(
    { length: inputs },
    (_, i) => `batch ${batch} row ${i}: ${"lorem ipsum dolor sit amet ".repeat(20)}`,
  );
}

const tokensOf = (batch: string[]) => batch.reduce((sum, text) => sum + countTokens(text), 0);

describe("rate governor against a server enforcing per second", () => {
  it("holds one second of budget, so parallel token-packed requests meet no 429", async () => {
    // 10,000 tokens per second, held for one second; five requests of ~4,000 tokens sent at once.
    // A governor holding a whole minute of budget would send all five together.
    fake.setBehavior({ tokensPerMinute: 600_000, burstMs: 1000 });
    // The test runner's scheduling jitter, not the pacing, is what a large headroom absorbs here. The
    // process's first request is much slower than the ones after it (set-up), which the hold covers.
    const governor = createRateGovernor({
      tokensPerMinute: 600_000,
      headroom: 0.2,
      burstHeadroom: 0.2,
      holdUntilFirstAnswer: true,
    });
    const p = provider(governor);
    const batches = Array.from({ length: 5 }, (_, b) => texts(b, 40));
    const tokens = tokensOf(batches[0]!);
    expect(tokens).toBeGreaterThan(3000);
    expect(tokens).toBeLessThan(5000);

    const results = await Promise.all(batches.map((batch) => p.embed(batch)));

    expect(fake.stats.status429).toBe(0);
    expect(fake.stats.byStatus[200]).toBe(5);
    for (const [b, result] of results.entries()) {
      const outcome = result.outcomes[7]!;
      expect(outcome.ok && Array.from(outcome.vector)).toEqual(
        Array.from(fakeVector(MODEL, batches[b]![7]!, 384)),
      );
    }
  });

  it("keeps the refill of a request's latency when the answer shows only its own traffic", async () => {
    // 1,000 tokens per second, held for one second; the server counts a request 300 ms after it arrives.
    fake.setBehavior({ tokensPerMinute: 60_000, burstMs: 1000, latencyMs: 300 });
    const governor = createRateGovernor({ tokensPerMinute: 60_000, headroom: 0, burstHeadroom: 0 });
    const batch = texts(0, 8);

    await provider(governor).embed(batch);

    // Sent with 1,000 − ~800 left, answered ≥ 300 ms later with `remaining` ~200: the governor keeps
    // the ≥ 300 tokens it refilled meanwhile instead of falling back to the server's ~200.
    const sent = tokensOf(batch);
    expect(sent).toBeGreaterThan(600);
    expect(fake.stats.status429).toBe(0);
    expect(governor.snapshot().tokensAvailable).toBeGreaterThanOrEqual(1000 - sent + 290);
  });

  it("takes off what another process spent on the same key", async () => {
    // 60 requests per minute, held for the whole minute, so the clock hardly moves the figures.
    fake.setBehavior({ requestsPerMinute: 60, burstMs: 60_000 });
    const governor = createRateGovernor({
      requestsPerMinute: 60,
      burstMs: 60_000,
      headroom: 0,
      burstHeadroom: 0,
    });
    const other = createOpenAIProvider({
      apiKey: "sk-test",
      baseURL: fake.url,
      model: MODEL,
      dimensions: 384,
    });
    for (let i = 0; i < 20; i++) await other.embed([`other ${i}`]);

    await provider(governor).embed(["ours"]);

    // 59 by its own count; the server said 39 plus whatever refilled while the other process ran.
    const available = governor.snapshot().requestsAvailable!;
    expect(available).toBeLessThan(50);
    expect(available).toBeGreaterThanOrEqual(39);
  });
});

describe("EMBEDDINGS_BURST_MS", () => {
  const target = { name: "docs", provider: "openai", model: MODEL, dimensions: 384 } as const;
  const env = { OPENAI_API_KEY: "sk-test-0123456789abcdef", EMBEDDINGS_TPM: "600000" };

  it("sizes the burst of the shared governor: a whole minute sends everything at once", async () => {
    // The server holds one second (10,000 tokens); ten requests of ~4,300 tokens are sent together.
    fake.setBehavior({ tokensPerMinute: 600_000, burstMs: 1000 });
    const config = loadConfig({ ...env, OPENAI_BASE_URL: fake.url, EMBEDDINGS_BURST_MS: "60000" });
    const p = providerForTarget(target, config);

    await Promise.allSettled(Array.from({ length: 10 }, (_, b) => p.embed(texts(b, 40))));

    expect(fake.stats.status429).toBeGreaterThan(0);
  });

  it("defaults to one second and refuses a window outside 1 ms to one minute", () => {
    expect(loadConfig(env).EMBEDDINGS_BURST_MS).toBe(1000);
    expect(() => loadConfig({ ...env, EMBEDDINGS_BURST_MS: "0" })).toThrow(ConfigError);
    expect(() => loadConfig({ ...env, EMBEDDINGS_BURST_MS: "60001" })).toThrow(/EMBEDDINGS_BURST_MS/);
  });
});
