import type { SqlAdmin } from "../lib/db/types.js";
import { formatVector, parseVector } from "../lib/db/vector.js";
import { embedLexical } from "../lib/providers/local.js";

/**
 * The demo's user table: an ordinary application table with NOT NULL columns besides its content
 * (an UPSERT that INSERTs fails on exactly those), filled with generated but readable articles.
 * This is the user's SQL, not the service's: the service itself only calls its SQL API.
 */

/** category | subject | fact, one article topic a line. */
export const TOPICS = `
Postgres | vacuum | autovacuum keeps table bloat in check and prevents transaction id wraparound
Postgres | indexes | a partial index covers only the rows a query needs and stays small
Postgres | replication | logical replication streams row changes to a subscriber database
pgvector | HNSW | an HNSW index answers approximate nearest neighbour queries over embeddings quickly
pgvector | distance | cosine distance compares the direction of two embedding vectors
Supabase | edge functions | edge functions have a wall-clock limit, so long loops must be split into batches
Supabase | row level security | row level security policies decide which rows each role may read
Inngest | steps | durable steps are retried on their own and memoised once they succeed
Inngest | fan-out | a coordinator can fan out thousands of child runs with one sendEvent call
OpenAI | rate limits | a 429 response carries retry-after and x-ratelimit-reset headers
OpenAI | embeddings | text-embedding-3-small returns 1536 dimensions unless a smaller size is requested
Cooking | bread | a sourdough starter needs flour, water and a warm kitchen to rise
Cooking | pasta | fresh pasta dough rests for half an hour before it is rolled thin
Gardening | tomatoes | tomato plants want full sun, deep watering and a stake to climb
Gardening | compost | a compost heap turns kitchen scraps and leaves into dark soil
Cycling | maintenance | a clean chain and the right tyre pressure make a bicycle ride smoothly
Astronomy | planets | Jupiter and Saturn are gas giants with dozens of moons each
Astronomy | telescopes | a reflecting telescope gathers starlight with a curved mirror
Music | guitar | tuning a guitar by ear starts from the low E string
Music | piano | practising scales slowly builds finger independence on the piano
`
  .trim()
  .split("\n")
  .map((line) => line.split(" | ") as [string, string, string]);

const ANGLES = [
  "A beginner's guide",
  "Common mistakes",
  "Field notes",
  "Questions and answers",
  "A checklist",
  "Lessons from production",
  "What the docs leave out",
  "A worked example",
];

export interface DemoRow {
  title: string;
  body: string;
  author: string;
  category: string;
}

export function demoRows(count: number): DemoRow[] {
  const rows: DemoRow[] = [];
  for (let i = 0; i < count; i++) {
    const [category, subject, fact] = TOPICS[i % TOPICS.length]!;
    const angle = ANGLES[Math.floor(i / TOPICS.length) % ANGLES.length]!;
    const part = Math.floor(i / (TOPICS.length * ANGLES.length)) + 1;
    const other = TOPICS[(i * 7 + 3) % TOPICS.length]!;
    rows.push({
      title: `${angle}: ${subject} (${category}, part ${part})`,
      body:
        `${angle} about ${subject}. In short, ${fact}. ` +
        `Part ${part} of the series looks at how this plays out in practice, ` +
        `and how it compares with ${other[1]}, where ${other[2]}.`,
      author: ["ana", "bo", "chen", "dara", "eli"][i % 5]!,
      category,
    });
  }
  return rows;
}

export async function setUpDemoTable(
  admin: SqlAdmin,
  options: { rows: number; dimensions: number },
): Promise<{ inserted: number; vectorType: "vector" | "real[]" }> {
  const hasVector =
    (
      await admin.query<{ ok: boolean }>(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS ok",
      )
    )[0]?.ok === true;
  if (hasVector) await admin.exec("CREATE EXTENSION IF NOT EXISTS vector");
  const vectorType = hasVector ? "vector" : "real[]";
  await admin.exec(`
    CREATE TABLE IF NOT EXISTS public.documents (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      title text NOT NULL,
      body text NOT NULL,
      author text NOT NULL,
      category text NOT NULL,
      published_at timestamptz NOT NULL DEFAULT now(),
      embedding ${hasVector ? `vector(${options.dimensions})` : "real[]"}
    )`);
  const existing = Number(
    (await admin.query<{ n: string }>("SELECT count(*) AS n FROM public.documents"))[0]?.n ?? 0,
  );
  if (existing > 0) return { inserted: 0, vectorType };
  const rows = demoRows(options.rows);
  // One statement for the whole set: unnest of four parallel arrays.
  await admin.query(
    `INSERT INTO public.documents (title, body, author, category)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])`,
    [
      rows.map((r) => r.title),
      rows.map((r) => r.body),
      rows.map((r) => r.author),
      rows.map((r) => r.category),
    ],
  );
  return { inserted: rows.length, vectorType };
}

export interface Neighbour {
  id: string;
  title: string;
  distance: number;
}

/** Cosine nearest neighbours of a query text, embedded with the same offline model. */
export async function nearestNeighbours(
  admin: SqlAdmin,
  query: string,
  options: { dimensions: number; vectorType: "vector" | "real[]"; limit?: number },
): Promise<Neighbour[]> {
  const q = embedLexical(query, options.dimensions).vector;
  const limit = options.limit ?? 5;
  if (options.vectorType === "vector") {
    const rows = await admin.query<{ id: string; title: string; distance: number }>(
      `SELECT id::text AS id, title, (embedding <=> $1::vector)::float8 AS distance
         FROM public.documents WHERE embedding IS NOT NULL ORDER BY embedding <=> $1::vector LIMIT ${limit}`,
      [formatVector(q)],
    );
    return rows.map((r) => ({ ...r, distance: Number(r.distance) }));
  }
  // Without pgvector the ranking happens here; the vectors are unit length, so cosine = dot.
  const rows = await admin.query<{ id: string; title: string; embedding: string }>(
    "SELECT id::text AS id, title, embedding::text AS embedding FROM public.documents WHERE embedding IS NOT NULL",
  );
  return rows
    .map((r) => {
      const v = parseVector(r.embedding);
      let dot = 0;
      for (let i = 0; i < v.length; i++) dot += v[i]! * q[i]!;
      return { id: r.id, title: r.title, distance: 1 - dot };
    })
    .sort((a, b) => a.distance - b.distance)
    .slice(0, limit);
}
