import { describe, expect, it } from "vitest";
import {
  createRateGovernor,
  parseResetDuration,
  type RatePermit,
  retryAfterMsFromHeaders,
} from "../src/lib/providers/rate-governor.js";

const MINUTE = 60_000;
/** No headroom at all, so the arithmetic in a test's comments is exact. */
const EXACT = { headroom: 0, burstHeadroom: 0 };

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
    const governor = createRateGovernor({ requestsPerMinute: 60, burstMs: MINUTE, now, sleep, ...EXACT });

    const times = await grantTimes(governor, clock, Array(62).fill(1));

    expect(times.slice(0, 60)).toEqual(Array(60).fill(0));
    expect(times.slice(60)).toEqual([1000, 2000]);
  });

  it("waits until the token budget covers the whole request", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 1000, burstMs: MINUTE, now, sleep, ...EXACT });

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

  it("keeps 0.5% of the rate and 15% of the burst window unused by default, so jitter does not turn pacing into 429s", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 60_000, now, sleep });

    // 850 of the second's 1,000 tokens held, refilled at 0.995 per ms: 199 more tokens take 200 ms.
    expect(await grantTimes(governor, clock, [850, 199])).toEqual([0, 200]);
  });

  it("holds one second of each limit by default, then paces at the refill rate", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ requestsPerMinute: 600, now, sleep, ...EXACT });

    const times = await grantTimes(governor, clock, Array(12).fill(1));

    expect(times).toEqual([...Array(10).fill(0), 100, 200]);
  });

  it("sends a request larger than the burst window when the bucket is full, and pays back its excess before the next", async () => {
    const { clock, now, sleep } = fakeClock();
    // 1,000 tokens per second, one second held: 2,500 tokens leave it 1,500 in debt.
    const governor = createRateGovernor({ tokensPerMinute: 60_000, now, sleep, ...EXACT });

    expect(await grantTimes(governor, clock, [2500, 100])).toEqual([0, 1600]);
  });

  it("learns a limit from headers and holds one burst window of it", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ now, sleep, ...EXACT });

    governor.observe({ "x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "600" });

    expect(await grantTimes(governor, clock, Array(12).fill(1))).toEqual([...Array(10).fill(0), 100, 200]);
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

describe("rate governor reading the server's remaining budget", () => {
  const limits = { "x-ratelimit-limit-tokens": "60000" };

  it("does not wait out a request's latency again when the answer reports only this process's traffic", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 60_000, now, sleep, ...EXACT });

    // The whole one-second window, admitted by the server 300 ms later, when its bucket was still full.
    const permit = await governor.acquire(1000);
    clock.t = 300;
    governor.observe({ ...limits, "x-ratelimit-remaining-tokens": "0" }, permit);

    expect(governor.snapshot().tokensAvailable).toBe(300);
    expect(await grantTimes(governor, clock, [1000])).toEqual([1000]);
  });

  it("reads an answer without its permit as the level now: safe, but the latency is waited again", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 60_000, now, sleep, ...EXACT });

    await governor.acquire(1000);
    clock.t = 300;
    governor.observe({ ...limits, "x-ratelimit-remaining-tokens": "0" });

    expect(await grantTimes(governor, clock, [1000])).toEqual([1300]);
  });

  it("takes off what another process spent on the key once, however many requests were in flight", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ tokensPerMinute: 60_000, now, sleep, ...EXACT });

    const permits = await Promise.all([100, 100, 100, 100].map((n) => governor.acquire(n)));
    // Another process spent 300 tokens before the server counted ours: each answer shows 300 fewer.
    for (const [i, permit] of permits.entries()) {
      governor.observe({ ...limits, "x-ratelimit-remaining-tokens": String(600 - 100 * i) }, permit);
    }

    // 600 left of the 1,000 by our own count, minus the 300.
    expect(governor.snapshot().tokensAvailable).toBe(300);
    expect(await grantTimes(governor, clock, [400])).toEqual([100]);
  });

  it("counts a report short by less than the burst headroom as jitter", async () => {
    const { now, sleep } = fakeClock();
    // 2 % burst headroom: the governor holds 980 of the server's 1,000; reports may be 20 short.
    const governor = createRateGovernor({
      tokensPerMinute: 60_000,
      now,
      sleep,
      headroom: 0,
      burstHeadroom: 0.02,
    });

    const first = await governor.acquire(100);
    governor.observe({ ...limits, "x-ratelimit-remaining-tokens": "885" }, first);
    expect(governor.snapshot().tokensAvailable).toBe(880);

    const second = await governor.acquire(100);
    governor.observe({ ...limits, "x-ratelimit-remaining-tokens": "750" }, second);
    // Expected 800: 50 short, 20 of it tolerated.
    expect(governor.snapshot().tokensAvailable).toBe(750);
  });

  it("follows a server whose window is shorter than the governor's burst", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({ requestsPerMinute: 600, now, sleep, ...EXACT });

    // The server holds 100 ms (1 request), the governor assumes 1 s (10).
    const permit = await governor.acquire(1);
    governor.observe({ "x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "0" }, permit);

    expect(await grantTimes(governor, clock, [1, 1])).toEqual([100, 200]);
  });
});

describe("rate governor at the start of a process", () => {
  const limits = { "x-ratelimit-limit-tokens": "60000" };

  it("with holdUntilFirstAnswer, counts no refill before the first answer, then gives back a warm round trip", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({
      tokensPerMinute: 60_000,
      holdUntilFirstAnswer: true,
      now,
      sleep,
      ...EXACT,
    });
    const answer = (permit: RatePermit, remaining: number) =>
      governor.observe({ ...limits, "x-ratelimit-remaining-tokens": String(remaining) }, permit);

    // The first request takes 700 ms to its answer: the server does not refill before it counts it.
    const first = await governor.acquire(1000);
    clock.t = 700;
    expect(governor.snapshot().tokensAvailable).toBe(0);
    answer(first, 0);

    // Three requests sent after it, answered in 300 ms: the server counted the first one about 300 ms
    // before its answer, so refill from 400 ms on is what it has.
    clock.t = 710;
    const warm = await Promise.all([1, 1, 1].map((n) => governor.acquire(n)));
    clock.t = 1010;
    expect(governor.snapshot().tokensAvailable).toBe(307);
    for (const permit of warm) answer(permit, 1000);

    expect(governor.snapshot().tokensAvailable).toBe(607);
  });

  it("gives back no more than keeps a request larger than the window a whole window after the one before", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({
      tokensPerMinute: 60_000,
      holdUntilFirstAnswer: true,
      now,
      sleep,
      ...EXACT,
    });
    const answer = (permit: RatePermit) =>
      governor.observe({ ...limits, "x-ratelimit-remaining-tokens": "1000" }, permit);

    const first = await governor.acquire(1500);
    clock.t = 700;
    answer(first);
    clock.t = 1300;
    const small = await Promise.all([1, 1].map((n) => governor.acquire(n)));
    clock.t = 1900;
    for (const permit of small) answer(permit);
    // 1,500 tokens, a window and a half: granted at 2,202 ms, when the bucket is full again.
    const big = await governor.acquire(1500);
    expect(clock.t).toBe(2202);
    clock.t = 2802;
    answer(big);

    // Round trips of 600 ms, but a server that charges at most the window is emptied by the 1,500
    // tokens: 500 ms back keeps the next such request 1,000 ms after this one.
    expect(governor.snapshot().tokensAvailable).toBe(600);
  });

  it("with holdUntilFirstAnswer and no answer at all, counts refill again after 5 s", async () => {
    const { clock, now, sleep } = fakeClock();
    const governor = createRateGovernor({
      tokensPerMinute: 60_000,
      holdUntilFirstAnswer: true,
      now,
      sleep,
      ...EXACT,
    });

    expect(await grantTimes(governor, clock, [1000, 500])).toEqual([0, 5500]);
  });
});
