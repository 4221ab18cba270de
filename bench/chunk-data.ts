import type pg from "pg";
import { DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_TOKENS } from "../src/lib/chunking/chunker.js";
import type { EmbeddingStore } from "../src/lib/db/store.js";
import { transcript } from "../test/support/transcripts.js";
import { MODEL } from "./data.js";

/**
 * The long-document corpus of the chunk scenarios: meeting transcripts (test/support/transcripts.ts:
 * speaker turns of 2-7 sentences, ~75 cl100k tokens a turn), of mixed lengths, in a table shaped like
 * the field reports' recordings (NOT NULL columns besides the content). Chunked with the product's
 * defaults (512 tokens, 64 of overlap) at 1536 dimensions, what most users run
 * (text-embedding-3-small). No pgvector on the bench server, so the chunk table that registration
 * creates has a real[] embedding column.
 */

export const CHUNK_SOURCE = "bench_transcripts";
export const CHUNK_TABLE = "bench_transcript_chunks";
export const CHUNK_TARGET = "bench_transcripts";
export const CHUNK_DIMENSIONS = 1536;
export const MIN_PARAGRAPHS = 150;
export const MAX_PARAGRAPHS = 600;

/** Paragraphs of document `i` (0-based): spread over MIN..MAX, deterministic, neighbours unlike. */
export function paragraphsOf(i: number): number {
  return MIN_PARAGRAPHS + ((i * 197) % (MAX_PARAGRAPHS - MIN_PARAGRAPHS + 1));
}

/** Creates and fills the source table with `docs` transcripts; `paragraphs` overrides their length. */
export async function createTranscriptTable(
  client: pg.Client,
  docs: number,
  paragraphs: (i: number) => number = paragraphsOf,
): Promise<void> {
  await client.query(`
    CREATE TABLE public.${CHUNK_SOURCE} (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      title text NOT NULL,
      body text NOT NULL,
      duration_seconds integer NOT NULL DEFAULT 0
    )`);
  const titles: string[] = [];
  const bodies: string[] = [];
  for (let i = 0; i < docs; i++) {
    titles.push(`Recording ${i + 1}`);
    bodies.push(transcript(1000 + i, paragraphs(i)).join("\n\n"));
  }
  await client.query(
    `INSERT INTO public.${CHUNK_SOURCE} (title, body, duration_seconds)
     SELECT t, b, length(b) / 20 FROM unnest($1::text[], $2::text[]) AS x(t, b)`,
    [titles, bodies],
  );
  await client.query(`VACUUM ANALYZE public.${CHUNK_SOURCE}`);
}

/** The chunked target, as `embeddings targets add --chunks public.bench_transcript_chunks` registers it. */
export function registerChunkTarget(store: EmbeddingStore) {
  return store.registerTarget({
    name: CHUNK_TARGET,
    table: `public.${CHUNK_SOURCE}`,
    idColumn: "id",
    contentColumns: ["body"],
    embeddingColumn: "embedding",
    provider: "openai",
    model: MODEL,
    dimensions: CHUNK_DIMENSIONS,
    maxAttempts: 3,
    chunkTable: `public.${CHUNK_TABLE}`,
    chunkTokens: DEFAULT_CHUNK_TOKENS,
    chunkOverlap: DEFAULT_CHUNK_OVERLAP,
  });
}
