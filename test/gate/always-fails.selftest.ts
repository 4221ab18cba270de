import { expect, it } from "vitest";

/**
 * The gate's own fixture: `.ci/run` runs it with EMBEDDINGS_GATE_SELFTEST=fail and requires
 * `npm test` to exit non-zero. If this ever "passes", the gate cannot fail and nothing may land.
 */
it("the gate self-test: this assertion is false on purpose", () => {
  expect(1).toBe(2);
});
