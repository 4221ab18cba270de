/**
 * Chunk mode: one long document (a three-hour transcript) becomes many embedded chunk rows.
 *
 * Why content-defined: chunk rows are re-embedded when their content changes. A greedy packer that
 * fills chunks from the start of the document moves every later boundary when one early paragraph
 * grows by a word, so a one-line fix re-embeds the whole transcript. Here a boundary is decided by the
 * units next to it, never by the distance from the start, so an edit changes only the chunks around it.
 *
 * Algorithm:
 * 1. Split the text into atomic units of at most `chunkTokens` tokens each (segments.ts): paragraphs,
 *    split into lines, sentences, words and finally token slices only while a piece alone is too big.
 *    Each unit is counted once.
 * 2. Walk the units, summing their counts. After a unit, cut when its hash (of its own normalised text)
 *    falls below 1 - exp(-tokens / (chunkTokens / 3)): a cut rate per token, so the expected size does
 *    not depend on whether units are paragraphs or words. No cut before chunkTokens / 4 has accumulated
 *    (no crumbs); a forced cut before a unit that would take the chunk past chunkTokens (hard maximum).
 *    Chunk sizes come out between a quarter and all of chunkTokens, about 0.55 x chunkTokens on average.
 * 3. After an edit the walk re-synchronises at the first content-defined cut that both versions take,
 *    typically within a chunk or two, and from there on the chunks are identical.
 * 4. Each body is verified with one real count (unit counts miss the tokens that BPE spends on the
 *    whitespace between units); a body over the limit is split in two at its middle unit. Rare, local.
 * 5. Overlap: each chunk after the first is prefixed with the tail of the previous body, up to
 *    `overlapTokens`: whole units if any fit, else whole sentences of its last unit, else whole words.
 *    It depends only on the neighbour, so it does not spread an edit further than one chunk. If the
 *    joined text counts over chunkTokens + overlapTokens (or maxInputTokens) the overlap is dropped.
 *
 * Invariants: content is a trimmed slice of the original text (internal newlines kept); `tokens` is its
 * real count; no content exceeds min(chunkTokens + overlapTokens, maxInputTokens) and no body exceeds
 * chunkTokens; bodies tile the text in order. Deterministic: no randomness, clocks or Map order, and a
 * fixed segmentation locale. Cost: about three tokenizer passes over the text, linear in its length.
 */
import { InputError } from "../errors.js";
import { countTokens, splitByTokens, tokensWithin } from "../providers/tokenizer.js";
import {
  type ChunkTokenizer,
  fits,
  JOIN,
  overlapStart,
  splitUnits,
  type Unit,
  unitHash,
} from "./segments.js";

export type { ChunkTokenizer } from "./segments.js";

export interface ChunkOptions {
  /** Hard maximum for a chunk's own text (its body), in tokens. */
  chunkTokens: number;
  /** Tokens of the previous chunk's tail repeated at the start of each chunk. */
  overlapTokens: number;
  /** The embedding model's per-input limit; no chunk content ever exceeds it. */
  maxInputTokens: number;
}

export interface Chunk {
  index: number;
  content: string;
  tokens: number;
}

/** A chunk with where it came from: `content === text.slice(start, end)`, the body starts at bodyStart. */
export interface PlannedChunk extends Chunk {
  start: number;
  bodyStart: number;
  end: number;
  bodyTokens: number;
}

/**
 * Defaults. text-embedding-3 models accept 8,191 tokens per input, but one vector for 8k tokens blurs
 * many topics into one point; retrieval works best on passages of a few hundred tokens, so 512 is the
 * ceiling and content-defined cuts average about 280. 64 tokens (12.5%) of overlap is a sentence or
 * two: a sentence cut at a boundary is still findable, whole, from both sides.
 */
export const DEFAULT_CHUNK_TOKENS = 512;
export const DEFAULT_CHUNK_OVERLAP = 64;
/** Below this a chunk holds a few words: too little context for a useful vector. */
export const MIN_CHUNK_TOKENS = 16;

/** cl100k_base, the encoding of text-embedding-3-* and ada-002. */
export const CL100K: ChunkTokenizer = { count: countTokens, within: tokensWithin, slice: splitByTokens };

/** Human-readable problems with `o`, each with its fix; empty when the options are usable. */
export function validateChunkOptions(o: ChunkOptions): string[] {
  const problems: string[] = [];
  const { chunkTokens: c, overlapTokens: ov, maxInputTokens: max } = o;
  if (!Number.isInteger(c))
    problems.push(
      `chunkTokens must be a whole number of tokens (got ${c}); use e.g. ${DEFAULT_CHUNK_TOKENS}`,
    );
  else if (c < MIN_CHUNK_TOKENS)
    problems.push(
      `chunkTokens must be at least ${MIN_CHUNK_TOKENS} (got ${c}); use ${MIN_CHUNK_TOKENS} or more, e.g. ${DEFAULT_CHUNK_TOKENS}`,
    );
  if (!Number.isInteger(ov) || ov < 0)
    problems.push(
      `overlapTokens must be a whole number >= 0 (got ${ov}); use 0 for no overlap, or e.g. ${DEFAULT_CHUNK_OVERLAP}`,
    );
  else if (Number.isInteger(c) && ov >= c / 2)
    problems.push(
      `overlapTokens (${ov}) must be less than half of chunkTokens (${c}); use at most ${Math.ceil(c / 2) - 1}`,
    );
  if (!Number.isInteger(max) || max < 1)
    problems.push(
      `maxInputTokens must be a positive whole number (got ${max}); use the model's per-input limit, e.g. 8191`,
    );
  else if (Number.isInteger(c) && Number.isInteger(ov) && c + ov > max)
    problems.push(
      `chunkTokens + overlapTokens (${c} + ${ov} = ${c + ov}) must not exceed maxInputTokens (${max}); ` +
        `lower chunkTokens to at most ${max - Math.max(ov, 0)} or lower overlapTokens`,
    );
  return problems;
}

export function chunkText(text: string, options: ChunkOptions, tokenizer: ChunkTokenizer = CL100K): Chunk[] {
  return planChunks(text, options, tokenizer).map(({ index, content, tokens }) => ({
    index,
    content,
    tokens,
  }));
}

export function planChunks(
  text: string,
  options: ChunkOptions,
  tokenizer: ChunkTokenizer = CL100K,
): PlannedChunk[] {
  const problems = validateChunkOptions(options);
  if (problems.length > 0) throw new InputError(`Invalid chunk options: ${problems.join("; ")}`);
  const { chunkTokens, overlapTokens, maxInputTokens } = options;

  const trimmed = text.trim();
  if (trimmed.length === 0) return [];
  // A document that fits is one chunk, even if it has cut-worthy paragraphs: nothing to localise.
  const whole = fits(trimmed, chunkTokens, tokenizer);
  if (whole !== false) {
    const start = text.length - text.trimStart().length;
    const end = start + trimmed.length;
    return [{ index: 0, content: trimmed, tokens: whole, start, bodyStart: start, end, bodyTokens: whole }];
  }

  const units = splitUnits(text, chunkTokens, tokenizer);
  const bodies = packUnits(units, text, chunkTokens).flatMap((g) =>
    verifyBody(g, units, text, chunkTokens, tokenizer),
  );
  const contentLimit = Math.min(chunkTokens + overlapTokens, maxInputTokens);
  const chunks: PlannedChunk[] = [];
  let prev: Body | undefined;
  for (const body of bodies) {
    const bodyStart = units[body.from]!.start;
    const end = units[body.to - 1]!.end;
    let start = bodyStart;
    let tokens = body.tokens;
    if (prev && overlapTokens > 0) {
      const tail = overlapStart(text, units.slice(prev.from, prev.to), overlapTokens, tokenizer);
      const joined = tail === undefined ? false : tokenizer.within(text.slice(tail, end), contentLimit);
      if (tail !== undefined && joined !== false) {
        start = tail;
        tokens = joined;
      }
    }
    chunks.push({
      index: chunks.length,
      content: text.slice(start, end),
      tokens,
      start,
      bodyStart,
      end,
      bodyTokens: body.tokens,
    });
    prev = body;
  }
  return chunks;
}

/** Units [from, to) form one chunk body. */
interface Body {
  from: number;
  to: number;
  tokens: number;
}

const MIN_FRACTION = 1 / 4;
const MEAN_DIVISOR = 3;

/** Step 2: content-defined cuts between a minimum and a hard maximum. */
function packUnits(units: Unit[], text: string, limit: number): Omit<Body, "tokens">[] {
  const minimum = limit * MIN_FRACTION;
  const scale = limit / MEAN_DIVISOR;
  const groups: Omit<Body, "tokens">[] = [];
  let from = 0;
  let sum = 0;
  for (let i = 0; i < units.length; i++) {
    const u = units[i]!;
    if (i > from && sum + JOIN + u.tokens > limit) {
      groups.push({ from, to: i });
      from = i;
      sum = 0;
    }
    sum += (i > from ? JOIN : 0) + u.tokens;
    const cutBelow = (1 - Math.exp(-u.tokens / scale)) * 2 ** 32;
    if (sum >= minimum && unitHash(text.slice(u.start, u.end)) < cutBelow) {
      groups.push({ from, to: i + 1 });
      from = i + 1;
      sum = 0;
    }
  }
  if (from < units.length) groups.push({ from, to: units.length });
  return groups;
}

/** Step 4: one real count per body; halve the rare body whose joins cost more than budgeted. */
function verifyBody(
  group: Omit<Body, "tokens">,
  units: Unit[],
  text: string,
  limit: number,
  tokenizer: ChunkTokenizer,
): Body[] {
  const { from, to } = group;
  const tokens = tokenizer.within(text.slice(units[from]!.start, units[to - 1]!.end), limit);
  if (tokens !== false) return [{ from, to, tokens }];
  // A single unit was counted on exactly this text when it was made, so with a consistent tokenizer
  // only groups get here; the guard keeps an inconsistent injected one from recursing forever.
  if (to - from === 1)
    return [{ from, to, tokens: tokenizer.count(text.slice(units[from]!.start, units[from]!.end)) }];
  let half = 0;
  for (let i = from; i < to; i++) half += units[i]!.tokens / 2;
  let mid = from + 1;
  for (let sum = units[from]!.tokens; mid < to - 1 && sum + units[mid]!.tokens <= half; mid++)
    sum += units[mid]!.tokens;
  return [
    ...verifyBody({ from, to: mid }, units, text, limit, tokenizer),
    ...verifyBody({ from: mid, to }, units, text, limit, tokenizer),
  ];
}
