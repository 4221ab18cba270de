import type { SqlAdmin } from "../../src/lib/db/types.js";

/**
 * The current definition of everything the migrations create, read from a migrated database's
 * catalog: tables (columns, constraints, indexes, row level security, grants) and functions (their
 * full definition and grants). Deterministic (ordered by name), so supabase/schema.sql can be
 * checked in and compared: `npm run schema:dump` writes it, test/migrations.test.ts fails when the
 * migrations produce something else. Catalog queries rather than pg_dump: the embedded PostgreSQL 18
 * has no pg_dump, and Debian's pg_dump 15 cannot read a newer server.
 */

const OURS = `(c.relname LIKE 'embedding\\_%')`;

export async function dumpSchema(db: SqlAdmin): Promise<string> {
  const out: string[] = [
    "-- The current schema of embeddings-sync, generated from a database migrated with",
    "-- supabase/migrations (npm run schema:dump). Do not edit: change the schema with a new migration.",
    "",
  ];

  const tables = await db.query<{ oid: number; name: string; rls: boolean; acl: string | null }>(
    `SELECT c.oid::int AS oid, c.relname AS name, c.relrowsecurity AS rls, c.relacl::text AS acl
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND ${OURS} ORDER BY c.relname`,
  );
  for (const t of tables) {
    const cols = await db.query<{ name: string; type: string; notnull: boolean; def: string | null }>(
      `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
              pg_get_expr(d.adbin, d.adrelid) AS def
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [t.oid],
    );
    out.push(`CREATE TABLE public.${t.name} (`);
    out.push(
      cols
        .map((c) => `  ${c.name} ${c.type}${c.notnull ? " NOT NULL" : ""}${c.def ? ` DEFAULT ${c.def}` : ""}`)
        .join(",\n"),
    );
    out.push(");");
    const constraints = await db.query<{ name: string; def: string }>(
      `SELECT conname AS name, pg_get_constraintdef(oid, true) AS def FROM pg_constraint
        WHERE conrelid = $1 AND contype <> 'n' ORDER BY conname`,
      [t.oid],
    );
    for (const c of constraints) out.push(`ALTER TABLE public.${t.name} ADD CONSTRAINT ${c.name} ${c.def};`);
    const indexes = await db.query<{ def: string }>(
      `SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = $1 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        ORDER BY ic.relname`,
      [t.oid],
    );
    for (const i of indexes) out.push(`${i.def};`);
    const triggers = await db.query<{ def: string }>(
      `SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal ORDER BY tgname`,
      [t.oid],
    );
    for (const g of triggers) out.push(`${g.def};`);
    if (t.rls) out.push(`ALTER TABLE public.${t.name} ENABLE ROW LEVEL SECURITY;`);
    out.push(`-- grants: ${normaliseAcl(t.acl)}`);
    out.push("");
  }

  const sequences = await db.query<{ name: string; acl: string | null }>(
    `SELECT c.relname AS name, c.relacl::text AS acl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind = 'S' AND ${OURS} ORDER BY c.relname`,
  );
  for (const s of sequences) out.push(`-- sequence public.${s.name} grants: ${normaliseAcl(s.acl)}`);
  if (sequences.length > 0) out.push("");

  const functions = await db.query<{ sig: string; def: string; acl: string | null }>(
    `SELECT p.oid::regprocedure::text AS sig, pg_get_functiondef(p.oid) AS def, p.proacl::text AS acl
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public' AND (p.proname LIKE 'embedding\\_%' OR p.proname = 'increment_embedding_job_progress')
      ORDER BY p.proname, p.oid::regprocedure::text`,
  );
  for (const f of functions) {
    out.push(`-- ${f.sig}; grants: ${normaliseAcl(f.acl)}`);
    out.push(`${f.def.trimEnd()};`);
    out.push("");
  }
  return `${out.join("\n").trimEnd()}\n`;
}

/** `{postgres=arwdDxtm/postgres,service_role=X/postgres}` as a stable, sorted list. */
function normaliseAcl(acl: string | null): string {
  if (acl === null) return "(defaults)";
  const entries = acl
    .replace(/^\{|\}$/g, "")
    .split(",")
    .filter(Boolean)
    .map((e) => e.replace(/^"|"$/g, ""))
    .sort();
  return entries.join(" ");
}
