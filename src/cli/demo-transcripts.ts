import type { SqlAdmin } from "../lib/db/types.js";
import { formatVector, parseVector } from "../lib/db/vector.js";
import { embedLexical } from "../lib/providers/local.js";
import { TOPICS } from "./demo-table.js";

/**
 * The demo's chunked workload: a handful of long meeting transcripts (speaker turns about the demo's
 * topics), embedded as chunks in public.recording_chunks, then searched chunk by chunk. The user's
 * SQL, not the service's: the service only reads public.recordings and writes the chunk table.
 */

const SPEAKERS = ["Ana", "Bo", "Chen", "Dara", "Eli"];
const OPENERS = [
  "I looked into it this week:",
  "Quick update from my side:",
  "One thing we learned the hard way:",
  "From the customer call yesterday:",
  "To summarise the discussion so far:",
  "Before we move on, a note:",
];

/** `count` recordings of `turns` speaker turns each, deterministic. */
export function demoTranscripts(count: number, turns: number): { title: string; body: string }[] {
  const out: { title: string; body: string }[] = [];
  for (let r = 0; r < count; r++) {
    const lines: string[] = [];
    for (let t = 0; t < turns; t++) {
      const [category, subject, fact] = TOPICS[(r * 5 + t * 3) % TOPICS.length]!;
      const [, otherSubject, otherFact] = TOPICS[(r * 11 + t * 7 + 1) % TOPICS.length]!;
      const speaker = SPEAKERS[(r + t) % SPEAKERS.length]!;
      const opener = OPENERS[(r * 3 + t) % OPENERS.length]!;
      lines.push(
        `${speaker}: ${opener} on ${subject} (${category}), ${fact}. ` +
          `That matters for item ${t + 1} of today's agenda. Compare ${otherSubject}: ${otherFact}.`,
      );
    }
    out.push({ title: `Weekly sync #${r + 1}`, body: lines.join("\n\n") });
  }
  return out;
}

/** Creates and fills public.recordings (once). */
export async function setUpRecordings(
  admin: SqlAdmin,
  options: { count: number; turns: number },
): Promise<{ inserted: number }> {
  await admin.exec(`
    CREATE TABLE IF NOT EXISTS public.recordings (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      title text NOT NULL,
      transcript text NOT NULL,
      recorded_at timestamptz NOT NULL DEFAULT now()
    )`);
  const existing = Number(
    (await admin.query<{ n: string }>("SELECT count(*) AS n FROM public.recordings"))[0]?.n ?? 0,
  );
  if (existing > 0) return { inserted: 0 };
  const rows = demoTranscripts(options.count, options.turns);
  await admin.query(
    "INSERT INTO public.recordings (title, transcript) SELECT * FROM unnest($1::text[], $2::text[])",
    [rows.map((r) => r.title), rows.map((r) => r.body)],
  );
  return { inserted: rows.length };
}

export interface ChunkHit {
  recording: string;
  title: string;
  chunk: number;
  distance: number;
  excerpt: string;
}

/** The chunks nearest to a query, with their recording: "where in which meeting was this said". */
export async function nearestChunks(
  admin: SqlAdmin,
  query: string,
  options: { dimensions: number; vectorType: "vector" | "real[]"; limit?: number },
): Promise<ChunkHit[]> {
  const q = embedLexical(query, options.dimensions).vector;
  const limit = options.limit ?? 3;
  type Row = {
    recording: string;
    title: string;
    chunk: number;
    content: string;
    distance?: number;
    embedding?: string;
  };
  const rows =
    options.vectorType === "vector"
      ? await admin.query<Row>(
          `SELECT c.document_id::text AS recording, r.title, c.chunk_index AS chunk, c.content,
                  (c.embedding <=> $1::vector)::float8 AS distance
             FROM public.recording_chunks c JOIN public.recordings r ON r.id = c.document_id
            ORDER BY c.embedding <=> $1::vector LIMIT ${limit}`,
          [formatVector(q)],
        )
      : (
          await admin.query<Row>(
            `SELECT c.document_id::text AS recording, r.title, c.chunk_index AS chunk, c.content,
                    c.embedding::text AS embedding
               FROM public.recording_chunks c JOIN public.recordings r ON r.id = c.document_id`,
          )
        )
          .map((r) => {
            const v = parseVector(r.embedding ?? "[]");
            let dot = 0;
            for (let i = 0; i < v.length; i++) dot += v[i]! * q[i]!;
            return { ...r, distance: 1 - dot };
          })
          .sort((a, b) => (a.distance ?? 0) - (b.distance ?? 0))
          .slice(0, limit);
  return rows.map((r) => ({
    recording: r.recording,
    title: r.title,
    chunk: Number(r.chunk),
    distance: Number(r.distance),
    excerpt: r.content.replace(/\s+/gu, " ").slice(0, 110),
  }));
}
