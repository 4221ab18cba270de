import { createHash } from "node:crypto";
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
  /** sha256 of the file: recorded when applied, so an edit after release is noticed. */
  checksum: string;
}

/** Migrations in `supabase migration new` naming: `<14-digit timestamp>_<name>.sql`, applied in order. */
export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{14}_[a-z0-9_]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (f) => {
      const sql = await readFile(join(dir, f), "utf8");
      return {
        version: f.slice(0, 14),
        name: f.slice(15, -4),
        sql,
        checksum: createHash("sha256").update(sql).digest("hex"),
      };
    }),
  );
}

const BOOTSTRAP = `
CREATE TABLE IF NOT EXISTS public.embedding_schema_migrations (version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE public.embedding_schema_migrations ADD COLUMN IF NOT EXISTS checksum text;`;

/**
 * Applies the migrations not yet recorded in embedding_schema_migrations, each in its own
 * transaction, and records its checksum. Each migration is idempotent on its own (CREATE ... IF NOT
 * EXISTS, CREATE OR REPLACE), so a database migrated by `psql -f` or `supabase db push` first is
 * simply recorded here, never broken.
 */
export async function applyMigrations(db: SqlAdmin, dir = MIGRATIONS_DIR): Promise<string[]> {
  await db.exec(BOOTSTRAP);
  const done = new Set(
    (await db.query<{ version: string }>("SELECT version FROM public.embedding_schema_migrations")).map(
      (r) => r.version,
    ),
  );
  const applied: string[] = [];
  for (const m of await loadMigrations(dir)) {
    if (done.has(m.version)) continue;
    await db.exec(
      `BEGIN;\n${m.sql}\n;INSERT INTO public.embedding_schema_migrations (version, name, checksum) VALUES ('${m.version}', '${m.name}', '${m.checksum}') ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum;\nCOMMIT;`,
    );
    applied.push(`${m.version}_${m.name}`);
  }
  return applied;
}

/**
 * Migrations a database recorded with a checksum that differs from the file today: a released
 * migration was edited after this database applied it, so the edit never reached it. (Versions
 * without a checksum, applied by `psql -f` or before checksums were kept, say nothing.)
 */
export function editedMigrations(files: readonly Migration[], recorded: Record<string, string>): string[] {
  return files
    .filter((m) => recorded[m.version] !== undefined && recorded[m.version] !== m.checksum)
    .map((m) => `${m.version}_${m.name}`);
}
