import type pg from "pg";
import type { EmbeddingStore } from "../src/lib/db/store.js";

/**
 * The benchmark table: shaped like the field reports' tables (NOT NULL columns besides the content,
 * so only UPDATE can write an embedding) with a real[] embedding column (no pgvector on this server),
 * unconstrained, so the same table takes 384 or 1536 floats: the target's dimensions decide.
 * Every scenario loads the same rows: the same ids and the same text, about 30-40 cl100k tokens per
 * row (title + body), every row distinct so the provider's de-duplication never saves a call.
 */

export const TABLE = "bench_docs";
export const TARGET = "bench_docs";
export const MODEL = "text-embedding-3-small";

const TOPICS = [
  "billing",
  "onboarding",
  "search relevance",
  "data retention",
  "single sign-on",
  "rate limits",
  "webhooks",
  "exports",
  "mobile sync",
  "audit logs",
  "pricing tiers",
  "backups",
  "notifications",
];

const SENTENCES = [
  "Customers asked how the change affects existing invoices and whether a refund is issued.",
  "The team shipped a fix behind a feature flag and will enable it for everyone next week.",
  "Latency went up after the migration, mostly on the largest accounts during peak hours.",
  "Support saw a spike in tickets after the release notes were published on Monday.",
  "We should document the limits clearly and link to the status page from the dashboard.",
  "The new flow cut the number of steps in half and improved completion by a third.",
  "Two regions still run the old version; the rollout resumes once the alerts are quiet.",
  "Engineering proposed a queue with retries and a dead letter table for failed items.",
  "Product wants a weekly report of usage per workspace, exported as a spreadsheet.",
  "Legal reviewed the wording and asked for a shorter summary at the top of the page.",
  "An outage on Thursday lasted forty minutes and affected roughly five percent of users.",
];

const sqlArray = (items: readonly string[]) =>
  `ARRAY[${items.map((s) => `'${s.replace(/'/g, "''")}'`).join(", ")}]`;

/** Creates and fills the table (no target registered yet, so no trigger fires per row). */
export async function createBenchTable(client: pg.Client | pg.Pool, rows: number): Promise<void> {
  await client.query(`
    CREATE TABLE public.${TABLE} (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      title text NOT NULL,
      body text NOT NULL,
      author text NOT NULL,
      views integer NOT NULL DEFAULT 0,
      embedding real[]
    )`);
  await client.query(`
    INSERT INTO public.${TABLE} (title, body, author)
    SELECT 'Document ' || g || ': ' || (${sqlArray(TOPICS)})[1 + g % ${TOPICS.length}],
           'Note ' || g || ' about topic ' || (g % 17) || '. ' || (${sqlArray(SENTENCES)})[1 + (g * 7) % ${SENTENCES.length}]
             || ' ' || (${sqlArray(SENTENCES)})[1 + (g * 3 + 5) % ${SENTENCES.length}],
           'author' || (g % 5)
      FROM generate_series(1, ${Math.floor(rows)}) AS g`);
  // A table in steady state: statistics known, visibility map set.
  await client.query(`VACUUM ANALYZE public.${TABLE}`);
}

/**
 * The target every row scenario embeds: text-embedding-3-small at `dims` (384, or its default 1536;
 * the fake server returns what `dimensions` asks for, else the model's default).
 */
export function registerBenchTarget(store: EmbeddingStore, dims: number) {
  return store.registerTarget({
    name: TARGET,
    table: `public.${TABLE}`,
    idColumn: "id",
    contentColumns: ["title", "body"],
    embeddingColumn: "embedding",
    provider: "openai",
    model: MODEL,
    dimensions: dims,
    maxAttempts: 3,
  });
}
