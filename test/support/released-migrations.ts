import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadMigrations, MIGRATIONS_DIR } from "../../src/lib/db/migrate.js";

/**
 * supabase/migrations.sha256 lists every released migration with its sha256 (sha256sum format). A
 * released migration is never edited: databases that applied it skip it forever, so an edit would
 * never reach them. New migrations are added to the list by `npm run migrations:release`, which never
 * changes a line already there.
 */

export const RELEASED_LIST = join(MIGRATIONS_DIR, "..", "migrations.sha256");

export async function readReleased(list = RELEASED_LIST): Promise<Map<string, string>> {
  const text = await readFile(list, "utf8").catch(() => "");
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line.trim());
    if (m) out.set(m[2]!, m[1]!);
  }
  return out;
}

/** Every problem with the released list: edited, deleted or unlisted migrations, each with its fix. */
export async function checkReleased(dir = MIGRATIONS_DIR, list = RELEASED_LIST): Promise<string[]> {
  const released = await readReleased(list);
  const files = new Map((await loadMigrations(dir)).map((m) => [`${m.version}_${m.name}.sql`, m.checksum]));
  const problems: string[] = [];
  for (const [file, sum] of released) {
    const now = files.get(file);
    if (now === undefined) problems.push(`${file} was released and is gone: restore it`);
    else if (now !== sum)
      problems.push(
        `${file} was released and has been edited: restore it and ship the change as a new migration`,
      );
  }
  for (const file of files.keys()) {
    if (!released.has(file)) problems.push(`${file} is not in ${list}: run npm run migrations:release`);
  }
  return problems;
}

/** Appends the migrations not listed yet; lines already there are never rewritten. */
export async function releaseNew(dir = MIGRATIONS_DIR, list = RELEASED_LIST): Promise<string[]> {
  const released = await readReleased(list);
  const text = await readFile(list, "utf8").catch(() => "");
  const added: string[] = [];
  let out = text && !text.endsWith("\n") ? `${text}\n` : text;
  for (const m of await loadMigrations(dir)) {
    const file = `${m.version}_${m.name}.sql`;
    if (released.has(file)) continue;
    out += `${createHash("sha256").update(m.sql).digest("hex")}  ${file}\n`;
    added.push(file);
  }
  if (added.length > 0) await writeFile(list, out);
  return added;
}
