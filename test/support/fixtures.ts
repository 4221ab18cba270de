import type { EmbeddingStore } from "../../src/lib/db/store.js";
import type { SqlAdmin, SqlApi } from "../../src/lib/db/types.js";
import { createLocalProvider, LOCAL_MODEL } from "../../src/lib/providers/local.js";
import type { EmbedBatchResult, EmbeddingProvider } from "../../src/lib/providers/provider.js";
import type { Target } from "../../src/lib/types.js";

export type TestDb = SqlApi & SqlAdmin;

/**
 * A user table like the ones in the field reports: NOT NULL columns besides the content, so an
 * INSERT or UPSERT from the service would fail (the 001 bug) while UPDATE works.
 */
export async function createDocuments(
  db: SqlAdmin,
  options: { table?: string; rows: number; embeddingType?: string; idType?: "bigint" | "text" | "uuid" } = {
    rows: 0,
  },
): Promise<void> {
  const table = options.table ?? "documents";
  const idType = options.idType ?? "bigint";
  const idDef =
    idType === "bigint"
      ? "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
      : idType === "uuid"
        ? "id uuid PRIMARY KEY DEFAULT gen_random_uuid()"
        : "id text PRIMARY KEY";
  await db.exec(`
    CREATE TABLE public.${table} (
      ${idDef},
      title text NOT NULL,
      body text NOT NULL,
      author text NOT NULL,
      views integer NOT NULL DEFAULT 0,
      embedding ${options.embeddingType ?? "real[]"}
    )`);
  if (options.rows > 0) {
    await db.exec(
      `INSERT INTO public.${table} (${idType === "text" ? "id, " : ""}title, body, author)
       SELECT ${idType === "text" ? "'doc-' || g, " : ""}'Title ' || g, 'Body text number ' || g || ' about topic ' || (g % 17), 'author' || (g % 5)
         FROM generate_series(1, ${options.rows}) AS g`,
    );
  }
}

export async function registerDocuments(
  store: EmbeddingStore,
  options: {
    name?: string;
    table?: string;
    dimensions?: number;
    provider?: string;
    model?: string;
    maxAttempts?: number;
  } = {},
): Promise<Target> {
  return store.registerTarget({
    name: options.name ?? "docs",
    table: `public.${options.table ?? "documents"}`,
    idColumn: "id",
    contentColumns: ["title", "body"],
    embeddingColumn: "embedding",
    provider: options.provider ?? "local",
    model: options.model ?? LOCAL_MODEL,
    dimensions: options.dimensions ?? 8,
    maxAttempts: options.maxAttempts,
  });
}

/** The local provider, counting calls and optionally rejecting inputs that contain a marker. */
export function countingProvider(dimensions: number, options: { poison?: string } = {}) {
  const inner = createLocalProvider({ dimensions });
  const seen: string[] = [];
  const provider: EmbeddingProvider = {
    name: inner.name,
    model: inner.model,
    dimensions,
    async embed(texts): Promise<EmbedBatchResult> {
      seen.push(...texts);
      const r = await inner.embed(texts);
      return {
        ...r,
        outcomes: r.outcomes.map((o, i) =>
          options.poison && texts[i]!.includes(options.poison)
            ? { ok: false as const, error: "input rejected: contains a poisoned marker" }
            : o,
        ),
      };
    },
  };
  return { provider, seen };
}

export async function scalar<T = string>(db: SqlAdmin, sql: string, params: unknown[] = []): Promise<T> {
  const rows = await db.query<Record<string, T>>(sql, params);
  const first = rows[0];
  if (!first) throw new Error(`no rows from: ${sql}`);
  return Object.values(first)[0] as T;
}
