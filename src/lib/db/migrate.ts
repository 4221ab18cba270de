import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { SqlAdmin } from "./types.js";

/** supabase/migrations, found relative to this file in src/ and in dist/ alike. */
export const MIGRATIONS_DIR = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
  "supabase",
  "migrations",
);

export interface Migration {
  version: string;
  name: string;
  sql: string;
}

/** Migrations in `supabase migration new` naming: `<14-digit timestamp>_<name>.sql`, applied in order. */
export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{14}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (f) => ({
      version: f.slice(0, 14),
      name: f.slice(15, -4),
      sql: await readFile(join(dir, f), "utf8"),
    })),
  );
}

/**
 * Applies the migrations not yet recorded in embedding_schema_migrations. Each migration is
 * idempotent on its own (CREATE ... IF NOT EXISTS, CREATE OR REPLACE), so a database migrated by
 * `psql -f` or `supabase db push` first is simply recorded here, never broken.
 */
export async function applyMigrations(db: SqlAdmin, dir = MIGRATIONS_DIR): Promise<string[]> {
  await db.exec(
    "CREATE TABLE IF NOT EXISTS public.embedding_schema_migrations (version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
  );
  const done = new Set(
    (await db.query<{ version: string }>("SELECT version FROM public.embedding_schema_migrations")).map(
      (r) => r.version,
    ),
  );
  const applied: string[] = [];
  for (const m of await loadMigrations(dir)) {
    if (done.has(m.version)) continue;
    await db.exec(
      `BEGIN;\n${m.sql}\n;INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('${m.version}', '${m.name}') ON CONFLICT DO NOTHING;\nCOMMIT;`,
    );
    applied.push(`${m.version}_${m.name}`);
  }
  return applied;
}
