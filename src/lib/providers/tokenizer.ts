/**
 * Token counting for OpenAI embedding models. text-embedding-3-* and ada-002 use cl100k_base; counting
 * with the real BPE (not chars/4) is what lets requests be packed to the 300k-token limit without a 400
 * and lets the rate governor spend the tokens the server will actually bill.
 */
import {
  countTokens as bpeCount,
  decode,
  encode,
  isWithinTokenLimit,
} from "gpt-tokenizer/encoding/cl100k_base";

// The API treats "<|endoftext|>" and friends inside user text as plain text; gpt-tokenizer throws on
// them by default, which would turn a harmless row into a crash.
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

export function countTokens(text: string): number {
  return bpeCount(text, PLAIN_TEXT);
}

export interface TruncatedText {
  text: string;
  /** Token count of `text` (after truncation). */
  tokens: number;
  truncated: boolean;
}

/** Cuts `text` to at most `maxTokens` tokens, on a token boundary. */
export function truncateToTokens(text: string, maxTokens: number): TruncatedText {
  // isWithinTokenLimit stops encoding at the limit, so the common short row never pays for a full encode.
  const within = isWithinTokenLimit(text, maxTokens, PLAIN_TEXT);
  if (within !== false) return { text, tokens: within, truncated: false };

  const ids = encode(text, PLAIN_TEXT);
  let cut = maxTokens;
  // Decoding a prefix can split a multi-byte character (dropped or left as U+FFFD), and re-encoding the
  // decoded prefix can merge differently; loop until the text we send really fits.
  for (;;) {
    const prefix = decode(ids.slice(0, cut)).replace(/\uFFFD+$/u, "");
    const tokens = countTokens(prefix);
    if (tokens <= maxTokens) return { text: prefix, tokens, truncated: true };
    cut -= Math.max(1, tokens - maxTokens);
  }
}
