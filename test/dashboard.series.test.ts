import { describe, expect, it } from "vitest";
import { messageClass } from "../src/http/dashboard/dead-letters.js";
import { backlog, failureRate, rateLimitRate, slots, throughput } from "../src/http/dashboard/series.js";
import type { HistoryBucket, TargetHistory } from "../src/http/dashboard/types.js";

/** What the dashboard's charts plot, from a history as GET /history returns it. */

const bucket = (start: string, more: Partial<HistoryBucket>): HistoryBucket => ({
  start,
  embedded: 0,
  failed: 0,
  deadLettered: 0,
  retried: 0,
  tokens: 0,
  requests: 0,
  rateLimited: 0,
  latencyMsAvg: null,
  ...more,
});

const history: TargetHistory = {
  target: "docs",
  since: "2026-12-01T10:07:30+00:00",
  stepMinutes: 15,
  buckets: [
    bucket("2026-12-01T10:15:00+00:00", {
      embedded: 30,
      failed: 10,
      deadLettered: 2,
      requests: 3,
      rateLimited: 1,
    }),
    bucket("2026-12-01T10:45:00+00:00", { embedded: 50, requests: 5 }),
  ],
};
const END = "2026-12-01T11:01:00Z";

describe("dashboard series", () => {
  it("draws every step from since to now on the SQL's date_bin grid, zero where nothing happened", () => {
    expect(slots(history, END).map((s) => s.start)).toEqual([
      "2026-12-01T10:00:00.000Z",
      "2026-12-01T10:15:00.000Z",
      "2026-12-01T10:30:00.000Z",
      "2026-12-01T10:45:00.000Z",
      "2026-12-01T11:00:00.000Z",
    ]);
    expect(throughput(history, END).map((p) => p.value)).toEqual([0, 30, 0, 50, 0]);
  });

  it("reconstructs rows left backwards from now with the rows embedded or dead-lettered after each step", () => {
    expect(backlog(history, END, 100).map((p) => p.value)).toEqual([182, 150, 150, 100, 100]);
  });

  it("has no failure or 429 rate for a step without an attempt or a call", () => {
    expect(failureRate(history, END).map((p) => p.value)).toEqual([null, 25, null, 0, null]);
    expect(rateLimitRate(history, END).map((p) => p.value)).toEqual([null, 25, null, 0, null]);
  });

  it("classes dead letters by SQLSTATE, HTTP status, or the words before the colon, digits masked", () => {
    expect(messageClass("could not serialize access (SQLSTATE 40001)")).toBe("SQLSTATE 40001");
    expect(messageClass("provider answered HTTP 503: overloaded")).toBe("HTTP 503");
    expect(messageClass("input rejected: <b>boom</b>")).toBe("input rejected");
    expect(messageClass("timeout after 30000 ms")).toBe(messageClass("timeout after 31000 ms"));
    expect(messageClass(null)).toBe("(no message)");
  });
});
