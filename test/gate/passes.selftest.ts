import { expect, it } from "vitest";

/** The gate's passing fixture: with a global setup or teardown that fails, the run must still fail. */
it("the gate self-test: a passing test", () => {
  expect(1).toBe(1);
});
