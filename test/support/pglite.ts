import { createHash } from "node:crypto";
import { readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { applyMigrations, loadMigrations, MIGRATIONS_DIR } from "../../src/lib/db/migrate.js";
import { createPGliteApi, type PGliteApi } from "../../src/lib/db/pglite.js";

/**
 * A fresh in-memory PGlite per call, already migrated and with pgvector. Booting PGlite runs initdb
 * (~2-3 s) and then the migrations; loading a dumped data dir takes ~1 s. So the migrated template
 * is dumped once and kept in os.tmpdir(), keyed by the migrations' content and the PGlite and
 * pgvector versions: later test files and later runs only load it.
 */

const CACHE_PREFIX = "embeddings-pglite-template-";
const templates = new Map<string, Promise<Blob>>();

export async function createTestPGlite(migrationsDir = MIGRATIONS_DIR): Promise<PGliteApi> {
  let template = templates.get(migrationsDir);
  if (!template) {
    template = loadTemplate(migrationsDir);
    templates.set(migrationsDir, template);
  }
  return createPGliteApi({ loadDataDir: await template });
}

async function loadTemplate(migrationsDir: string): Promise<Blob> {
  const file = join(tmpdir(), `${CACHE_PREFIX}${await templateKey(migrationsDir)}.tar`);
  const cached = await readFile(file).catch(() => undefined);
  if (cached) return new Blob([cached]);

  const db = await createPGliteApi();
  try {
    await applyMigrations(db, migrationsDir);
    const dump = await db.pglite.dumpDataDir("none");
    const bytes = new Uint8Array(await dump.arrayBuffer());
    // Workers may race to build it: each writes its own file and renames, so readers never see
    // half a tarball. Older templates (other migrations) are removed.
    const partial = `${file}.${process.pid}.tmp`;
    await writeFile(partial, bytes);
    await rename(partial, file);
    await removeOtherTemplates(file);
    return new Blob([bytes]);
  } finally {
    await db.close();
  }
}

async function templateKey(migrationsDir: string): Promise<string> {
  const hash = createHash("sha256");
  for (const pkg of ["@electric-sql/pglite", "@electric-sql/pglite-pgvector"])
    hash.update(`${await packageVersion(pkg)}\n`);
  for (const m of await loadMigrations(migrationsDir)) hash.update(`${m.version}_${m.name}\n${m.sql}\n`);
  return hash.digest("hex").slice(0, 16);
}

/** Neither package exports its package.json, so find it above the resolved entry point. */
async function packageVersion(name: string): Promise<string> {
  let dir = dirname(createRequire(import.meta.url).resolve(name));
  for (;;) {
    const pkg = await readFile(join(dir, "package.json"), "utf8").then(
      (text) => JSON.parse(text) as { name?: string; version?: string },
      () => undefined,
    );
    if (pkg?.name === name && pkg.version) return pkg.version;
    const parent = dirname(dir);
    if (parent === dir) return "unknown";
    dir = parent;
  }
}

async function removeOtherTemplates(keep: string): Promise<void> {
  for (const entry of await readdir(tmpdir())) {
    const path = join(tmpdir(), entry);
    if (entry.startsWith(CACHE_PREFIX) && entry.endsWith(".tar") && path !== keep)
      await rm(path, { force: true });
  }
}
