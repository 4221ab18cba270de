import { describe, expect, it } from "vitest";
import {
  assessHealth,
  combineHealth,
  DEFAULT_THRESHOLDS,
  type HealthInput,
  resolveThresholds,
} from "../src/lib/ops/health.js";

/** Health levels as pure functions of the figures: every threshold on both sides. */

const base: HealthInput = {
  target: "docs",
  deadLetter: 0,
  retryQueue: 0,
  idleSeconds: 0,
  completedButNull: 0,
};
const level = (over: Partial<HealthInput>, thresholds = DEFAULT_THRESHOLDS) =>
  assessHealth({ ...base, ...over }, thresholds).level;

describe("health", () => {
  it("is healthy with nothing wrong", () => {
    expect(assessHealth(base)).toEqual({ level: "healthy", reasons: [] });
  });

  it.each([
    [0, "healthy"],
    [1, "warning"],
    [20, "warning"],
    [21, "critical"],
  ])("grades %i dead letters as %s", (deadLetter, expected) => {
    expect(level({ deadLetter })).toBe(expected);
  });

  it.each([
    [99, "healthy"],
    [100, "warning"],
    [500, "warning"],
    [501, "critical"],
  ])("grades a retry queue of %i as %s", (retryQueue, expected) => {
    expect(level({ retryQueue })).toBe(expected);
  });

  it.each([
    [59 * 60 + 59, "healthy"],
    [60 * 60, "warning"],
    [6 * 3600 - 1, "warning"],
    [6 * 3600, "critical"],
  ])("grades %i idle seconds with work due as %s", (idleSeconds, expected) => {
    expect(level({ idleSeconds })).toBe(expected);
  });

  it("warns from the first completed-but-NULL row and names the repair", () => {
    const h = assessHealth({ ...base, completedButNull: 1 });
    expect(h).toMatchObject({ level: "warning", reasons: [{ code: "completed_but_null", target: "docs" }] });
    expect(h.reasons[0]!.message).toContain("embeddings retry docs --completed");
  });

  it("lists every reason and takes the worst level", () => {
    const h = assessHealth({ ...base, deadLetter: 3, retryQueue: 600, idleSeconds: 7200 });
    expect(h.level).toBe("critical");
    expect(h.reasons.map((r) => [r.code, r.level])).toEqual([
      ["dead_letters", "warning"],
      ["stalled", "warning"],
      ["retry_queue", "critical"],
    ]);
    expect(h.reasons[1]!.message).toMatch(/^docs: no row embedded for 2.0 h while work is due/);
  });

  it("takes overrides for any threshold, keeping the others", () => {
    const t = resolveThresholds({ retryQueue: { warning: 10 }, stalledMinutes: { critical: 90 } });
    expect(t.retryQueue).toEqual({ warning: 10, critical: 501 });
    expect(level({ retryQueue: 10 }, t)).toBe("warning");
    expect(level({ idleSeconds: 90 * 60 }, t)).toBe("critical");
    expect(level({ deadLetter: 21 }, t)).toBe("critical");
  });

  it("combines targets into the service level", () => {
    const a = assessHealth({ ...base, target: "a" });
    const b = assessHealth({ ...base, target: "b", deadLetter: 2 });
    expect(combineHealth([a, b])).toMatchObject({ level: "warning", reasons: [{ target: "b" }] });
    expect(combineHealth([])).toEqual({ level: "healthy", reasons: [] });
  });
});
