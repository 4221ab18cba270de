import { describe, expect, it } from "vitest";
import {
  createRateGovernor,
  parseResetDuration,
  retryAfterMsFromHeaders,
} from "../src/lib/providers/rate-governor.js";

/** A clock that only moves when the governor sleeps, so every wait is exact and instant. */
function fakeClock() {
  const clock = { t: 0 };
  return {
    clock,
    now: () => clock.t,
    sleep: async (ms: number) => {
      // Let every grant already made observe the current time before the clock jumps.
      await new Promise((resolve) => setImmediate(resolve));
      clock.t += ms;
    },
  };
}

async function grantTimes(
  governor: ReturnType<typeof createRateGovernor>,
  clock: { t: number },
  tokens: number[],
): Promise<number[]> {
  const times: number[] = [];
  await Promise.all(tokens.map((n) => governor.acquire(n).then(() => times.push(clock.t))));
  return times;
}

describe("parseResetDuration", () => {
  it.each([
    ["1s", 1000],
    ["6m0s", 360_000],
    ["20ms", 20],
    ["1.5s", 1500],
    ["1h2m3s", 3_723_000],
    ["0s", 0],
    ["2", 2000],
  ])("reads %s as %i ms", (text, ms) => {
    expect(parseResetDuration(text)).toBe(ms);
  });

  it.each(["", "soon", "1x", "s1"])("rejects %j", (text) => {
    expect(parseResetDuration(text)).toBeUndefined();
  });
});

describe("retryAfterMsFromHeaders", () => {
  it("prefers retry-after-ms, then retry-after, then the exhausted budget's reset", () => {
    expect(retryAfterMsFromHeaders({ "retry-after-ms": "250", "retry-after": "9" })).toBe(250);
    expect(retryAfterMsFromHeaders({ "retry-after": "2" })).toBe(2000);
    expect(retryAfterMsFromHeaders({ "retry-after": new Date(10_000).toUTCString() }, 4000)).toBe(6000);
    expect(
      retryAfterMsFromHeaders({
        "x-ratelimit-remaining-requests": "10",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "20ms",
      }),
    ).toBe(20);
    expect(retryAfterMsFromHeaders(new Headers({ "x-ratelimit-reset-requests": "1s" }))).toBe(1000);
    expect(retryAfterMsFromHeaders({})).toBeUndefined();
  });
});

describe("rate governor", () => {
  it("lets a minute's request budget through, then paces at the refill rate", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ requestsPerMinute: 60, now, sleep, headroom: 0 });

    const times = await grantTimes(governor, clock, Array(62).fill(1));

    expect(times.slice(0, 60)).toEqual(Array(60).fill(0));
    expect(times.slice(60)).toEqual([1000, 2000]);
  });

  it("waits until the token budget covers the whole request", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 1000, now, sleep, headroom: 0 });

    // 600 + 600 needs 200 more tokens at 1000/min: 12 s.
    expect(await grantTimes(governor, clock, [600, 600])).toEqual([0, 12_000]);
  });

  it("lets a request larger than the whole budget through once the bucket is full", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 1000, now, sleep, headroom: 0 });
    expect(await grantTimes(governor, clock, [5000, 5000])).toEqual([0, 60_000]);
  });

  it("serves waiters in arrival order, so a big request is not starved by small ones", async () => {
    const { now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 1000, now, sleep, headroom: 0 });
    const order: string[] = [];

    await Promise.all([
      governor.acquire(900).then(() => order.push("a")),
      governor.acquire(900).then(() => order.push("big")),
      governor.acquire(10).then(() => order.push("small")),
    ]);

    expect(order).toEqual(["a", "big", "small"]);
  });

  it("pauses everyone after a 429 and restarts from an empty bucket", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ requestsPerMinute: 600, now, sleep, headroom: 0 });

    governor.penalize(500);

    // Paused for 500 ms (refilling 5 requests meanwhile), then 100 ms per request.
    expect(await grantTimes(governor, clock, Array(7).fill(1))).toEqual([500, 500, 500, 500, 500, 600, 700]);
  });

  it("pauses until reset when the server reports an exhausted budget of unknown size", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ now, sleep, headroom: 0 });

    expect(await grantTimes(governor, clock, [1, 1])).toEqual([0, 0]);
    governor.observe({ "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s" });

    expect(await grantTimes(governor, clock, [1])).toEqual([2000]);
  });

  it("learns the limit from headers and waits only for the refill the next request needs", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ now, sleep, headroom: 0 });

    governor.observe(
      new Headers({
        "x-ratelimit-limit-requests": "600",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "60000",
        "x-ratelimit-remaining-tokens": "59000",
        "x-ratelimit-reset-tokens": "1s",
      }),
    );

    expect(await grantTimes(governor, clock, [1, 1])).toEqual([100, 200]);
    expect(governor.snapshot()).toMatchObject({ waiting: 0, requestsAvailable: 0 });
  });

  it("only lowers a configured budget from headers, since other processes share the key", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ requestsPerMinute: 60, now, sleep, headroom: 0 });

    governor.observe({ "x-ratelimit-limit-requests": "6000", "x-ratelimit-remaining-requests": "1" });

    expect(await grantTimes(governor, clock, [1, 1])).toEqual([0, 1000]);
  });

  it("keeps 5% of the limit unused by default, so jitter does not turn pacing into 429s", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 1000, now, sleep });

    // 950 usable tokens per minute: the second request waits for 95 tokens, 6 s.
    expect(await grantTimes(governor, clock, [950, 95])).toEqual([0, 6000]);
  });

  it("drops an aborted waiter without blocking the ones behind it", async () => {
    const governor = createRateGovernor({ requestsPerMinute: 600 });
    governor.penalize(60_000);
    const controller = new AbortController();
    const aborted = governor.acquire(1, controller.signal);
    controller.abort(new Error("cancelled"));

    await expect(aborted).rejects.toThrow("cancelled");
    expect(governor.snapshot().waiting).toBe(0);
  });
});
