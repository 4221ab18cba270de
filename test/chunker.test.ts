import { describe, expect, it, vi } from "vitest";
import {
  type ChunkOptions,
  type ChunkTokenizer,
  CL100K,
  chunkText,
  DEFAULT_CHUNK_OVERLAP,
  DEFAULT_CHUNK_TOKENS,
  type PlannedChunk,
  planChunks,
  validateChunkOptions,
} from "../src/lib/chunking/chunker.js";
import { countTokens, splitByTokens } from "../src/lib/providers/tokenizer.js";

/**
 * Chunk mode: long documents become many chunk rows. The properties that matter to the pipeline:
 * every chunk fits the model (real cl100k counts), the same text always gives the same chunks, and an
 * edit re-embeds only the chunks around it, which a greedy packer (the negative control) cannot do.
 */

const DEFAULTS: ChunkOptions = {
  chunkTokens: DEFAULT_CHUNK_TOKENS,
  overlapTokens: DEFAULT_CHUNK_OVERLAP,
  maxInputTokens: 8191,
};
const SMALL: ChunkOptions = { chunkTokens: 128, overlapTokens: 16, maxInputTokens: 8191 };

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VOCAB = (
  "so I think the main thing we need to look at is how the pipeline handles retries when the provider " +
  "is slow and whether we can batch more rows per request yeah right exactly that makes sense but " +
  "honestly I'm not sure it's worth it um okay let's move on index vector embedding latency cost " +
  "budget quarter customer feedback decision action item follow-up Tuesday deployment rollback"
).split(" ");
const SPEAKERS = ["Alice", "Bob", "Carol", "Dmitri", "Eun-ji"];

/** A speaker turn of a transcript: one paragraph, kept as sentences so tests can edit it. */
interface Turn {
  header: string;
  sentences: string[];
}

function sentence(rnd: () => number): string {
  const words = Array.from(
    { length: 3 + Math.floor(rnd() ** 2 * 40) },
    () => VOCAB[Math.floor(rnd() * VOCAB.length)],
  );
  const s = words.join(" ");
  return `${s[0]!.toUpperCase()}${s.slice(1)}${rnd() < 0.2 ? "?" : "."}`;
}

/** Deterministic transcript: timestamped speaker turns, mostly short, now and then a long monologue. */
function transcript(seed: number, turns: number): Turn[] {
  const rnd = mulberry32(seed);
  let seconds = 0;
  return Array.from({ length: turns }, () => {
    seconds += 2 + Math.floor(rnd() * 40);
    const stamp = [seconds / 3600, (seconds / 60) % 60, seconds % 60]
      .map((n) => String(Math.floor(n)).padStart(2, "0"))
      .join(":");
    const header = `[${stamp}] ${SPEAKERS[Math.floor(rnd() * SPEAKERS.length)]}:`;
    return {
      header,
      sentences: Array.from({ length: 1 + Math.floor(rnd() ** 3 * 25) }, () => sentence(rnd)),
    };
  });
}

const render = (turns: Turn[]): string =>
  turns.map((t) => `${t.header} ${t.sentences.join(" ")}`).join("\n\n");

/** Every invariant the pipeline relies on, with counts re-done here by the real tokenizer. */
function expectWellFormed(text: string, chunks: PlannedChunk[], o: ChunkOptions): void {
  let bodyEnd = 0;
  chunks.forEach((c, i) => {
    expect(c.index).toBe(i);
    expect(c.content).toBe(text.slice(c.start, c.end));
    expect(c.content).toBe(c.content.trim());
    expect(c.tokens).toBe(countTokens(c.content));
    expect(c.tokens).toBeLessThanOrEqual(Math.min(o.chunkTokens + o.overlapTokens, o.maxInputTokens));
    const body = text.slice(c.bodyStart, c.end);
    expect(c.bodyTokens).toBe(countTokens(body));
    expect(c.bodyTokens).toBeLessThanOrEqual(o.chunkTokens);
    // Bodies tile the text: only whitespace between one body and the next, and overlap comes from
    // the previous body alone.
    expect(text.slice(bodyEnd, c.bodyStart).trim()).toBe("");
    expect(c.start).toBeGreaterThanOrEqual(i === 0 ? c.bodyStart : chunks[i - 1]!.bodyStart);
    expect(countTokens(text.slice(c.start, c.bodyStart).trim())).toBeLessThanOrEqual(o.overlapTokens);
    bodyEnd = c.end;
  });
  expect(text.slice(bodyEnd).trim()).toBe("");
}

/** Chunk rows to embed after an edit, and rows gone stale: the set differences of the contents. */
function churn(before: string[], after: string[]): { added: number; removed: number } {
  const [old, now] = [new Set(before), new Set(after)];
  return {
    added: after.filter((c) => !old.has(c)).length,
    removed: before.filter((c) => !now.has(c)).length,
  };
}

/**
 * The negative control: the classic naive packer, words filled into each chunk from the start until
 * the next would not fit. (Packing whole sentences greedily re-synchronises by chance more often,
 * but not reliably; words make the shift visible every time.)
 */
const WORD_TOKENS = new Map<string, number>();
function greedyChunks(turns: Turn[], chunkTokens: number): string[] {
  const chunks: string[] = [];
  let current: string[] = [];
  let tokens = 0;
  for (const word of render(turns).split(/\s+/)) {
    const n = WORD_TOKENS.get(word) ?? WORD_TOKENS.set(word, countTokens(` ${word}`)).get(word)!;
    if (tokens + n > chunkTokens && current.length > 0) {
      chunks.push(current.join(" "));
      current = [];
      tokens = 0;
    }
    current.push(word);
    tokens += n;
  }
  if (current.length > 0) chunks.push(current.join(" "));
  return chunks;
}

const contents = (text: string, o: ChunkOptions) => chunkText(text, o).map((c) => c.content);

describe("chunkText: shape and limits", () => {
  it("returns no chunks for empty or whitespace-only text", () => {
    expect(chunkText("", DEFAULTS)).toEqual([]);
    expect(chunkText(" \n\n\t  \n", DEFAULTS)).toEqual([]);
  });

  it("returns one trimmed chunk, with its real token count, for one short sentence", () => {
    expect(chunkText("\n  Hello there, how are you?  \n", DEFAULTS)).toEqual([
      { index: 0, content: "Hello there, how are you?", tokens: countTokens("Hello there, how are you?") },
    ]);
  });

  it("keeps a document that fits in one chunk whole, internal newlines included", () => {
    // As many turns as fit: several paragraphs that content-defined cuts would otherwise separate.
    const turns = transcript(1, 40);
    let n = 1;
    while (countTokens(render(turns.slice(0, n + 1))) <= DEFAULT_CHUNK_TOKENS) n++;
    const text = render(turns.slice(0, n));
    expect(n).toBeGreaterThan(2);
    expect(countTokens(text)).toBeGreaterThan(DEFAULT_CHUNK_TOKENS / 2);
    expect(chunkText(text, DEFAULTS).map((c) => c.content)).toEqual([text]);
  });

  it("gives the same chunks for the same text and options, every time", () => {
    const text = render(transcript(2, 300));
    const first = chunkText(text, DEFAULTS);
    expect(chunkText(text, DEFAULTS)).toEqual(first);
    expect(chunkText(render(transcript(2, 300)), DEFAULTS)).toEqual(first);
  });

  it.each([
    ["defaults", DEFAULTS, 3, 800],
    ["small chunks", SMALL, 4, 400],
    ["a tight model limit", { chunkTokens: 200, overlapTokens: 56, maxInputTokens: 256 }, 5, 300],
  ])("keeps every chunk within its limits on long transcripts (%s)", (_name, o, seed, turns) => {
    const text = render(transcript(seed, turns));
    const chunks = planChunks(text, o);
    expect(chunks.length).toBeGreaterThan(50);
    expectWellFormed(text, chunks, o);
  });

  it.each([
    ["a paragraph", DEFAULTS, (t: Turn) => [render([t])]],
    ["a sentence", SMALL, (t: Turn) => t.sentences],
  ] as const)("never separates %s that fits in a chunk", (_unit, o, units) => {
    const turns = transcript(13, 300);
    const text = render(turns);
    const bodies = planChunks(text, o).map((c) => text.slice(c.bodyStart, c.end));
    const fitting = turns.flatMap(units).filter((u) => countTokens(u) <= o.chunkTokens);
    expect(fitting.length).toBeGreaterThan(200);
    for (const u of fitting) expect(bodies.some((b) => b.includes(u))).toBe(true);
  });

  it("scales to about 5,000 chunks, all well formed", () => {
    const o = { chunkTokens: 32, overlapTokens: 4, maxInputTokens: 8191 };
    const text = render(transcript(6, 500));
    const chunks = planChunks(text, o);
    expect(chunks.length).toBeGreaterThan(4000);
    expect(chunks.length).toBeLessThan(6500);
    expectWellFormed(text, chunks, o);
  });

  it("prefixes each chunk after the first with the previous chunk's tail, up to overlapTokens", () => {
    const text = render(transcript(7, 400));
    const chunks = planChunks(text, DEFAULTS);
    for (const [i, c] of chunks.entries()) {
      if (i === 0) continue;
      const overlap = text.slice(c.start, c.bodyStart).trim();
      expect(overlap.length).toBeGreaterThan(0);
      expect(chunks[i - 1]!.content.endsWith(overlap)).toBe(true);
      expect(countTokens(overlap)).toBeLessThanOrEqual(DEFAULT_CHUNK_OVERLAP);
    }
    expectWellFormed(text, chunks, DEFAULTS);
  });

  it("slices a single word longer than a chunk (an alphanumeric blob, a huge URL) on token boundaries", () => {
    const rnd = mulberry32(8);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const blob = Array.from({ length: 40_000 }, () => alphabet[Math.floor(rnd() * 62)]).join("");
    const url = `https://example.com/${"segment-".repeat(600)}end?q=1`;
    const text = `Before the blob. ${blob} After the blob, a link: ${url} and the end.`;
    const slice = vi.fn(CL100K.slice);
    const chunks = planChunks(text, DEFAULTS, { ...CL100K, slice });
    expect(slice).toHaveBeenCalledWith(blob, DEFAULT_CHUNK_TOKENS);
    expect(chunks.length).toBeGreaterThan(20);
    expectWellFormed(text, chunks, DEFAULTS);
    const bodies = chunks.map((c) => text.slice(c.bodyStart, c.end)).join("");
    expect(bodies.replace(/\s/g, "")).toBe(text.replace(/\s/g, ""));
  });

  it("splits CJK, emoji and accented text on sentence and word boundaries (Intl.Segmenter)", () => {
    const rnd = mulberry32(9);
    const pieces =
      "東京の会議は午後三時に始まります。|我们明天再讨论这个问题。|데이터베이스 색인을 다시 만듭니다. |Café crème, naïve façade! |👩‍👩‍👧‍👦🇯🇵✨ |今日はとても良い天気ですね。".split(
        "|",
      );
    const text = Array.from({ length: 3000 }, () => pieces[Math.floor(rnd() * pieces.length)]).join("");
    const o = { chunkTokens: 48, overlapTokens: 8, maxInputTokens: 8191 };
    const chunks = planChunks(text, o);
    expectWellFormed(text, chunks, o);
    // Segmented around each cut, not over the whole text: V8's segmenter is quadratic in length.
    const words = new Intl.Segmenter("en", { granularity: "word" });
    const wordBoundary = (at: number) => {
      const from = Math.max(0, at - 60);
      const near = words.segment(text.slice(from, at + 60));
      return [...near].some((s) => s.index === at - from);
    };
    for (const c of chunks) {
      expect(wordBoundary(c.bodyStart)).toBe(true);
      expect(wordBoundary(c.start)).toBe(true);
      expect(c.content).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    }
  });

  it("re-splits a body whose real count exceeds the unit sums (BPE merges across joins)", () => {
    // A tokenizer for which every paragraph break costs 40 tokens: the unit sums are far too low and
    // only the per-body verification keeps the limit.
    const penalty = (t: string) => countTokens(t) + 40 * (t.split("\n\n").length - 1);
    const costly: ChunkTokenizer = {
      count: penalty,
      within: (t, limit) => (penalty(t) <= limit ? penalty(t) : false),
      slice: splitByTokens,
    };
    const text = render(transcript(10, 200));
    const chunks = planChunks(text, DEFAULTS, costly);
    for (const c of chunks) {
      expect(c.bodyTokens).toBe(penalty(text.slice(c.bodyStart, c.end)));
      expect(c.bodyTokens).toBeLessThanOrEqual(DEFAULT_CHUNK_TOKENS);
      expect(c.tokens).toBe(penalty(c.content));
    }
    expect(chunks.length).toBeGreaterThan(planChunks(text, DEFAULTS).length);
  });
});

type Edit = (doc: Turn[], at: number, rnd: () => number) => Turn[];
const inTurn =
  (f: (s: string[], mid: number) => string[]): Edit =>
  (doc, at) => [
    ...doc.slice(0, at),
    { ...doc[at]!, sentences: f(doc[at]!.sentences, Math.floor(doc[at]!.sentences.length / 2)) },
    ...doc.slice(at + 1),
  ];
const EDITS: [string, Edit][] = [
  ["one word changes", inTurn((s, m) => s.map((x, i) => (i === m ? x.replace(/ \w+/, " banana") : x)))],
  [
    "whole sentences are inserted",
    (doc, at, rnd) =>
      inTurn((s, m) => [...s.slice(0, m), sentence(rnd), sentence(rnd), ...s.slice(m)])(doc, at, rnd),
  ],
  ["whole sentences are removed", inTurn((s, m) => [...s.slice(0, m), ...s.slice(m + 2)])],
  [
    "a paragraph is inserted",
    (doc, at, rnd) => [
      ...doc.slice(0, at),
      { header: "[99:00:00] Zed:", sentences: [sentence(rnd)] },
      ...doc.slice(at),
    ],
  ],
  ["a paragraph is deleted", (doc, at) => [...doc.slice(0, at), ...doc.slice(at + 1)]],
];

describe.each([
  ["default options", DEFAULTS, 11, 740],
  ["small chunks", SMALL, 12, 165],
])("chunkText: an edit changes only the chunks around it (%s)", (_name, o, seed, turns) => {
  const doc = transcript(seed, turns);
  const before = contents(render(doc), o);
  const docTokens = countTokens(render(doc));
  // Six turns spread over the middle half, each a few sentences that fit in one chunk (deleting a
  // five-chunk monologue must remove five chunks; that is not churn). Several places, because a
  // packer without content-defined cuts can still re-synchronise by luck at any one of them.
  const fits = (t: Turn) => t.sentences.length >= 4 && countTokens(render([t])) < 120;
  const middle = doc.flatMap((t, i) => (i > turns / 4 && i < (3 * turns) / 4 && fits(t) ? [i] : []));
  const targets = [0, 1, 2, 3, 4, 5].map((k) => middle[Math.floor((k * middle.length) / 6)]!);

  it("has a document of about 300 chunks and six places to edit", () => {
    expect(before.length).toBeGreaterThan(250);
    expect(before.length).toBeLessThan(400);
    expect(targets).toHaveLength(6);
  });

  // At most 4, plus one per chunkTokens of text the edit adds: new text needs chunks of its own. (With
  // small chunks, two sentences can push a paragraph past chunkTokens, so it is split into sentences.)
  it.each(EDITS)("changes at most 4 chunk contents, plus what added text needs, when %s", (_edit, edit) => {
    for (const at of targets) {
      const edited = render(edit(doc, at, mulberry32(at)));
      const grown = Math.max(0, countTokens(edited) - docTokens);
      const { added, removed } = churn(before, contents(edited, o));
      expect(added + removed).toBeGreaterThan(0);
      expect(added).toBeLessThanOrEqual(4 + Math.ceil(grown / o.chunkTokens));
      expect(removed).toBeLessThanOrEqual(4);
    }
  });

  // Not the one-word edit: a substitution with the same token count shifts nothing, even greedily.
  // The same measure fails the bound above at every place, and by an order of magnitude on average.
  it.each(EDITS.slice(1))("negative control: a greedy packer changes far more when %s", (_edit, edit) => {
    const greedy = greedyChunks(doc, o.chunkTokens);
    const added = targets.map(
      (at) => churn(greedy, greedyChunks(edit(doc, at, mulberry32(at)), o.chunkTokens)).added,
    );
    expect(Math.min(...added)).toBeGreaterThan(4);
    expect(added.reduce((a, b) => a + b) / added.length).toBeGreaterThan(40);
  });
});

describe("validateChunkOptions", () => {
  it("accepts the defaults", () => {
    expect(validateChunkOptions(DEFAULTS)).toEqual([]);
  });

  it.each([
    [8, 0, 8191, /chunkTokens must be at least 16 \(got 8\); use 16 or more/],
    [100.5, 0, 8191, /chunkTokens must be a whole number/],
    [512, -1, 8191, /overlapTokens must be a whole number >= 0 \(got -1\); use 0/],
    [512, 256, 8191, /less than half of chunkTokens \(512\); use at most 255/],
    [8000, 200, 8191, /must not exceed maxInputTokens \(8191\); lower chunkTokens to at most 7991/],
    [512, 64, 0, /maxInputTokens must be a positive whole number/],
  ] as const)(
    "explains the problem and the fix (chunk %s, overlap %s, max %s)",
    (chunkTokens, overlapTokens, maxInputTokens, message) => {
      const o = { chunkTokens, overlapTokens, maxInputTokens };
      const problems = validateChunkOptions(o);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(message);
      expect(() => chunkText("some text", o)).toThrow(message);
    },
  );
});
