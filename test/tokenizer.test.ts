import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { countTokens, truncateToTokens } from "../src/lib/providers/tokenizer.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe("token counting", () => {
  it("keeps no text alive once it is counted, even one whose rare word stays in the tokenizer's cache", () => {
    const before = heapAfterGc();
    const tokens = (() => {
      // 8 MB ending in a word of 16 letters: not one token, so its tokens are cached, and long
      // enough for V8 to make the matched word a slice pointing into the whole text.
      const text = `${"1234567 ".repeat(1_000_000)} qzxjvkwplmrtbnq`;
      return truncateToTokens(text, 10_000_000).tokens;
    })();
    // V8 keeps the last subject of a regular expression alive until the next match replaces it.
    countTokens("x");
    expect(tokens).toBeGreaterThan(1_000_000);
    expect(heapAfterGc() - before).toBeLessThan(2 * 1024 * 1024);
  });
});
