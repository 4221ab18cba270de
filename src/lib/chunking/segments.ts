/**
 * Atomic units for the chunker: the text cut on the coarsest boundary that makes every piece fit in a
 * chunk. Paragraphs (blank lines), then lines, then sentences, then words, and token slices only for a
 * single "word" longer than a chunk (a base64 blob, a huge URL). A piece is split further only when it
 * alone is too big, so a paragraph that fits stays one unit and its sentences are never separated.
 *
 * Invariants: units are in text order, do not overlap, start and end on non-whitespace (a unit is its
 * trimmed span), and together cover every non-whitespace character. Each unit's `tokens` is the real
 * count of its own text and is at most the limit. Every cut is decided from the piece's own text, never
 * from its offset, which is what keeps the chunker's boundaries stable when other paragraphs change.
 */

/** The tokenizer the chunker counts with; injected so tests can make BPE merges misbehave on purpose. */
export interface ChunkTokenizer {
  /** Exact token count. */
  count(text: string): number;
  /** The count when `text` has at most `limit` tokens, else false; may stop encoding at the limit. */
  within(text: string, limit: number): number | false;
  /** Consecutive pieces that concatenate to `text`, each at most `maxTokens` tokens. */
  slice(text: string, maxTokens: number): string[];
}

/** A trimmed span of the original text: `text.slice(start, end)`. */
export interface Unit {
  start: number;
  end: number;
  tokens: number;
}

// A fixed locale: segmentation rules must not change with the machine's LANG, or the same document
// would chunk differently on two workers. The root rules handle CJK and emoji the same in any locale.
const SENTENCES = new Intl.Segmenter("en", { granularity: "sentence" });
const WORDS = new Intl.Segmenter("en", { granularity: "word" });

/** Cut offsets strictly inside `piece`; none when this level cannot split it. */
type Splitter = (piece: string) => number[];

function cutsAfter(pattern: RegExp): Splitter {
  return (piece) => {
    const cuts: number[] = [];
    for (const m of piece.matchAll(pattern)) {
      const at = m.index + m[0].length;
      if (at > 0 && at < piece.length) cuts.push(at);
    }
    return cuts;
  };
}

// V8's Intl.Segmenter is quadratic in the length of the string it iterates (160k characters of
// English take 1.7 s by sentence and 20 s by word), and a transcript with no line breaks is one
// 200k-character "paragraph". So segment in bounded windows, each restarting at a boundary found well
// inside the previous one: boundaries near a window's end may be artefacts of the cut, so they are
// found again, with their real right-hand context, by the next window.
const WINDOW = 2000;
const MARGIN = 200;

function starts(segmenter: Intl.Segmenter, piece: string, wordsOnly: boolean): number[] {
  const cuts: number[] = [];
  let from = 0;
  while (from < piece.length) {
    const to = Math.min(piece.length, from + WINDOW);
    const found: number[] = [];
    for (const s of segmenter.segment(piece.slice(from, to))) {
      if (s.index > 0 && (!wordsOnly || s.isWordLike)) found.push(from + s.index);
    }
    if (to === piece.length) return cuts.concat(found);
    const safe = found.filter((at) => at <= to - MARGIN);
    // Only late boundaries: trust the first and restart there. None at all: an unbreakable run.
    const kept = safe.length > 0 ? safe : found.slice(0, 1);
    cuts.push(...kept);
    from = kept.length > 0 ? kept[kept.length - 1]! : to;
  }
  return cuts;
}

/** Offsets where a sentence starts (after the first). */
export function sentenceStarts(piece: string): number[] {
  return starts(SENTENCES, piece, false);
}

/** Offsets where a word starts (after the first); punctuation and spaces stay with the word before. */
export function wordStarts(piece: string): number[] {
  return starts(WORDS, piece, true);
}

const LEVELS: Splitter[] = [
  cutsAfter(/\n[^\S\n]*\n\s*/g), // paragraphs: one or more blank lines
  cutsAfter(/\n\s*/g), // lines (a transcript's speaker turns)
  sentenceStarts,
  cutsAfter(/\s+/g), // whitespace-separated words
  wordStarts, // scripts without spaces (CJK), and words glued by punctuation
];

const SPACE = /\s/;

// Real text averages 3 to 5 characters per cl100k token. A piece with more than 8 per token of the
// limit is treated as too big without counting it: counting costs time quadratic in the length of a
// single pre-token, and a 100k-character CJK run with no punctuation is one pre-token (100 s to count).
// Wrong only for text made of long whitespace or symbol runs, which is then merely split finer.
const MAX_CHARS_PER_TOKEN = 8;

/** The count of `piece` if it has at most `limit` tokens, else false. */
export function fits(piece: string, limit: number, tokenizer: ChunkTokenizer): number | false {
  return piece.length > limit * MAX_CHARS_PER_TOKEN ? false : tokenizer.within(piece, limit);
}

/** Splits `text` into units of at most `limit` tokens each. */
export function splitUnits(text: string, limit: number, tokenizer: ChunkTokenizer): Unit[] {
  const units: Unit[] = [];
  const trimmed = (from: number, to: number): [number, number] => {
    let start = from;
    let end = to;
    while (start < end && SPACE.test(text[start]!)) start++;
    while (end > start && SPACE.test(text[end - 1]!)) end--;
    return [start, end];
  };
  const visit = (from: number, to: number, level: number): void => {
    const [start, end] = trimmed(from, to);
    if (start === end) return;
    const piece = text.slice(start, end);
    const tokens = fits(piece, limit, tokenizer);
    if (tokens !== false) {
      units.push({ start, end, tokens });
      return;
    }
    for (let l = level; l < LEVELS.length; l++) {
      const cuts = LEVELS[l]!(piece);
      if (cuts.length === 0) continue;
      let prev = 0;
      for (const cut of [...cuts, piece.length]) {
        visit(start + prev, start + cut, l + 1);
        prev = cut;
      }
      return;
    }
    // Pushed directly rather than visited again: a slice is at most `limit` tokens by contract, and
    // re-visiting could loop forever if an injected tokenizer broke that contract.
    let at = start;
    for (const slice of tokenizer.slice(piece, limit)) {
      const [s, e] = trimmed(at, at + slice.length);
      if (s < e) units.push({ start: s, end: e, tokens: tokenizer.count(text.slice(s, e)) });
      at += slice.length;
    }
  };
  visit(0, text.length, 0);
  return units;
}

/** The whitespace between two units may cost a token of its own ("\n\n" before a word); budget one. */
export const JOIN = 1;

/**
 * Where the overlap taken from the end of `body` (the previous chunk's units) starts, or undefined when nothing fits. Candidates
 * are estimated from piece counts, then the chosen tail is counted for real (joins can merge or split
 * tokens), moving to a shorter tail until one fits.
 */
export function overlapStart(
  text: string,
  body: Unit[],
  budget: number,
  tokenizer: ChunkTokenizer,
): number | undefined {
  const last = body[body.length - 1]!;
  let sum = 0;
  let first = body.length;
  while (first > 0) {
    sum += body[first - 1]!.tokens + (first < body.length ? JOIN : 0);
    if (sum > budget) break;
    first--;
  }
  const byUnits = verifiedTail(
    body.slice(first).map((u) => u.start),
    0,
    last.end,
    text,
    budget,
    tokenizer,
  );
  if (byUnits !== undefined) return byUnits;
  // Segmented only when no whole unit fits: this runs once per chunk, on one unit.
  // A sentence after a line break starts with the next line's indentation; content starts on a character.
  const sentences = [0, ...sentenceStarts(text.slice(last.start, last.end))].map((at) => {
    let start = last.start + at;
    while (SPACE.test(text[start]!)) start++;
    return start;
  });
  const bySentences = verifiedTail(
    sentences,
    estimateTail(sentences, last.end, text, budget, tokenizer),
    last.end,
    text,
    budget,
    tokenizer,
  );
  if (bySentences !== undefined) return bySentences;
  const lastSentence = sentences[sentences.length - 1]!;
  const words = [0, ...wordStarts(text.slice(lastSentence, last.end))].map((at) => lastSentence + at);
  return verifiedTail(
    words,
    estimateTail(words, last.end, text, budget, tokenizer),
    last.end,
    text,
    budget,
    tokenizer,
  );
}

/** Index of the earliest of `starts` whose pieces up to `end`, counted one by one, fit in `budget`. */
function estimateTail(
  starts: number[],
  end: number,
  text: string,
  budget: number,
  tokenizer: ChunkTokenizer,
): number {
  let sum = 0;
  let k = starts.length;
  while (k > 0 && sum < budget) {
    const tokens = tokenizer.within(text.slice(starts[k - 1]!, starts[k] ?? end).trimEnd(), budget - sum);
    if (tokens === false) break;
    sum += tokens;
    k--;
  }
  return k;
}

/** The first of `starts[from..]` whose real tail count fits in `budget`. */
function verifiedTail(
  starts: number[],
  from: number,
  end: number,
  text: string,
  budget: number,
  tokenizer: ChunkTokenizer,
): number | undefined {
  for (let k = from; k < starts.length; k++) {
    if (tokenizer.within(text.slice(starts[k]!, end), budget) !== false) return starts[k];
  }
  return undefined;
}

/**
 * 32-bit FNV-1a of the unit's text with runs of whitespace collapsed (re-wrapping a paragraph does not
 * move a cut), finished with murmur3's fmix32: FNV-1a alone leaves the high bits of short strings
 * poorly mixed, and the cut test compares the whole value against a threshold.
 */
export function unitHash(text: string): number {
  let h = 0x811c9dc5;
  let space = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13) {
      space = true;
      continue;
    }
    if (space) {
      h = Math.imul(h ^ 32, 0x01000193);
      space = false;
    }
    h = Math.imul(h ^ c, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
