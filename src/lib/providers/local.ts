import type { EmbedBatchResult, EmbeddingProvider } from "./provider.js";

/**
 * Offline provider: a deterministic LEXICAL embedding (feature hashing of words, word bigrams and
 * character trigrams, L2-normalised). Texts that share words land near each other; synonyms do not.
 * It exists so the whole pipeline runs on a machine with no network and no API key, and so tests
 * and demos have stable vectors. It is not a semantic model: use `openai` (or any OpenAI-compatible
 * server) for real retrieval quality.
 *
 * "Tokens" here are word tokens, counted so jobs report usage the same way for every provider.
 */
export const LOCAL_MODEL = "local-ngram-v1";

const WORD = /[\p{L}\p{N}]+/gu;

/** FNV-1a, 32-bit: fast, stable across platforms and Node versions. */
function fnv1a(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The local provider's "tokens" of a text: its words, as embedLexical counts them. */
export function lexicalTokens(text: string): number {
  return text.toLowerCase().match(WORD)?.length ?? 0;
}

export function embedLexical(text: string, dimensions: number): { vector: Float32Array; tokens: number } {
  const v = new Float32Array(dimensions);
  const words = text.toLowerCase().match(WORD) ?? [];
  const add = (feature: string, weight: number) => {
    const h = fnv1a(feature, 0);
    // The sign from a second hash keeps colliding features from only ever adding up.
    const sign = fnv1a(feature, 0x9e3779b9) & 1 ? 1 : -1;
    v[h % dimensions]! += sign * weight;
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    add(`w:${w}`, 1);
    if (i > 0) add(`b:${words[i - 1]} ${w}`, 0.5);
    const padded = ` ${w} `;
    for (let j = 0; j + 3 <= padded.length; j++) add(`c:${padded.slice(j, j + 3)}`, 0.25);
  }
  let norm = 0;
  for (let i = 0; i < dimensions; i++) norm += v[i]! * v[i]!;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let i = 0; i < dimensions; i++) v[i]! /= norm;
  return { vector: v, tokens: words.length };
}

export function createLocalProvider(options: { dimensions: number; model?: string }): EmbeddingProvider {
  const model = options.model ?? LOCAL_MODEL;
  if (model !== LOCAL_MODEL) {
    throw new Error(`the local provider only has model "${LOCAL_MODEL}", not "${model}"`);
  }
  if (!Number.isInteger(options.dimensions) || options.dimensions < 1 || options.dimensions > 16000) {
    throw new Error(
      `local provider dimensions must be an integer from 1 to 16000, got ${options.dimensions}`,
    );
  }
  return {
    name: "local",
    model,
    dimensions: options.dimensions,
    async embed(texts): Promise<EmbedBatchResult> {
      let tokens = 0;
      const outcomes = texts.map((text) => {
        const e = embedLexical(text, options.dimensions);
        tokens += e.tokens;
        return { ok: true as const, vector: e.vector, tokens: e.tokens, truncated: false };
      });
      return { outcomes, tokens, requests: 0 };
    },
  };
}
