/**
 * Token counting for OpenAI embedding models. text-embedding-3-* and ada-002 use cl100k_base; counting
 * with the real BPE (not chars/4) is what lets requests be packed to the 300k-token limit without a 400
 * and lets the rate governor spend the tokens the server will actually bill.
 */
import cl100k, {
  countTokens as bpeCount,
  decode,
  encode,
  isWithinTokenLimit,
} from "gpt-tokenizer/encoding/cl100k_base";

/**
 * gpt-tokenizer caches the tokens of up to 100,000 multi-token pieces, keyed by the piece as its
 * regex matched it. A piece of 13 characters or more is then a V8 slice of the whole text, so every
 * cached rare word kept its row alive: rows of 3 KB with two rare words each held 170 MB after
 * 60,000 rows; with the key copied, 27 MB (the cache's own 100,000 entries). Copying keeps the
 * cache's speed: clearing it now and then instead was 10-30 % slower on README prose. This reaches
 * into gpt-tokenizer 3.4.0's internals; test/tokenizer.test.ts fails if they change.
 */
class OwnKeyCache extends Map<string, number[]> {
  override set(key: string, value: number[]): this {
    // Called on every hit too (the LRU moves the key to the end). Shorter pieces are copies already;
    // JSON's round trip builds a new string from the text of a longer one, sharing nothing with the row.
    return super.set(
      key.length < SLICE_MIN_LENGTH ? key : (JSON.parse(JSON.stringify(key)) as string),
      value,
    );
  }
}
/** V8 copies substrings shorter than this (SlicedString::kMinLength); longer ones point into their text. */
const SLICE_MIN_LENGTH = 13;
const core = (cl100k as unknown as { bytePairEncodingCoreProcessor?: { mergeCache?: unknown } })
  .bytePairEncodingCoreProcessor;
if (core?.mergeCache instanceof Map) core.mergeCache = new OwnKeyCache(core.mergeCache);

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
  // Every row of every batch passes here: a row within the limit is counted, not encoded (see tokensWithin).
  const within = tokensWithin(text, maxTokens);
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

// --- Helpers for the chunker (src/lib/chunking) ---------------------------------------------------

/**
 * The token count of `text` when it has at most `limit` tokens, else `false`. Stops encoding at the
 * limit, so asking "does this paragraph fit?" of a whole document costs about `limit` tokens, not the
 * document.
 */
export function tokensWithin(text: string, limit: number): number | false {
  // The early-exit path encodes through a generator, about twice as slow per token as a plain count
  // and allocating an array and an iterator result per token (~12 KB of garbage per 50-token row,
  // measured with the sampling heap profiler); it only pays off when the text is several times
  // longer than the limit could hold.
  if (text.length > limit * 6) return isWithinTokenLimit(text, limit, PLAIN_TEXT);
  const tokens = countTokens(text);
  return tokens <= limit ? tokens : false;
}

/**
 * Cuts `text` into consecutive pieces of at most `maxTokens` (>= 4) tokens each, never inside a
 * character. Invariant: the pieces concatenate back to `text` exactly, so callers keep offsets into
 * the original. The last resort for a "word" longer than a chunk (a hex blob, a huge URL).
 *
 * Counts only, never decodes: gpt-tokenizer's decode() shares one streaming TextDecoder, so decoding
 * token ids that end inside a character leaves those bytes behind to be prepended to the next decode
 * anywhere in the process (truncateToTokens above returns different text for the same input after
 * such a call). Each cut is guessed from the characters per token seen so far and checked with one
 * count, so a piece usually costs one or two counts of about `maxTokens` tokens.
 */
export function splitByTokens(text: string, maxTokens: number): string[] {
  const pieces: string[] = [];
  let charsPerToken = 4;
  let from = 0;
  while (from < text.length) {
    const { end, tokens } = fittingEnd(text, from, maxTokens, maxTokens * charsPerToken);
    if (tokens > 0) charsPerToken = (end - from) / tokens;
    pieces.push(text.slice(from, end));
    from = end;
  }
  return pieces;
}

/** A prefix of `text` from `from` with at most maxTokens tokens, 90-100% full when it can be. */
function fittingEnd(
  text: string,
  from: number,
  maxTokens: number,
  guessChars: number,
): { end: number; tokens: number } {
  // One code point is at most 4 bytes, so at most 4 tokens: always fits, guarantees progress.
  const one = from + (text.codePointAt(from)! > 0xffff ? 2 : 1);
  let fit = { end: one, tokens: countTokens(text.slice(from, one)) };
  let end = snapToCodePoint(text, from + Math.max(1, Math.round(guessChars)));
  for (let round = 0; round < 8 && end > fit.end; round++) {
    const tokens = countTokens(text.slice(from, end));
    if (tokens <= maxTokens) {
      fit = { end, tokens };
      if (end === text.length || tokens >= maxTokens * 0.9) break;
    }
    // Re-aim at 95% by the ratio just seen; growing at most 4x a round keeps one count bounded.
    const aim = Math.floor(((end - from) * maxTokens * 0.95) / Math.max(tokens, 1));
    end = snapToCodePoint(text, from + Math.min(aim, (end - from) * 4));
  }
  return fit;
}

/** `at` clamped to the text, moved back one if it would split a surrogate pair. */
function snapToCodePoint(text: string, at: number): number {
  if (at >= text.length) return text.length;
  const code = text.charCodeAt(at - 1);
  return code >= 0xd800 && code <= 0xdbff ? at - 1 : at;
}
