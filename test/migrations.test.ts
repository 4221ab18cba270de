import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { applyMigrations, loadMigrations, MIGRATIONS_DIR } from "../src/lib/db/migrate.js";
import { preflight } from "../src/lib/ops/preflight.js";
import { testConfig } from "./support/app.js";
import { createTestDatabase, useTestDatabase } from "./support/pg-server.js";
import { checkReleased, RELEASED_LIST } from "./support/released-migrations.js";
import { dumpSchema } from "./support/schema-dump.js";

/**
 * The migrations as a release artefact: released files never change (supabase/migrations.sha256),
 * supabase/schema.sql is exactly what they produce, and every migration applies on top of the ones
 * before it, so a database migrated by any earlier release upgrades to the same schema.
 */

const SCHEMA_FILE = join(MIGRATIONS_DIR, "..", "schema.sql");
const migrated = useTestDatabase("migrations");

describe("released migrations", () => {
  it("are listed in supabase/migrations.sha256 and none was edited since", async () => {
    expect(await checkReleased()).toEqual([]);
  });

  it("an edit of a released migration is reported, naming the file and the fix", async () => {
    const dir = await mkdtemp(join(tmpdir(), "embeddings-migrations-"));
    try {
      await cp(MIGRATIONS_DIR, dir, { recursive: true });
      const first = (await loadMigrations(dir))[0]!;
      const file = join(dir, `${first.version}_${first.name}.sql`);
      await writeFile(file, `${await readFile(file, "utf8")}\n-- an innocent-looking edit\n`);
      expect(await checkReleased(dir, RELEASED_LIST)).toEqual([
        `${first.version}_${first.name}.sql was released and has been edited: restore it and ship the change as a new migration`,
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a database whose recorded checksum differs from the file is flagged by preflight", async () => {
    const db = await createTestDatabase("edited");
    try {
      await db.api.exec(
        "UPDATE embedding_schema_migrations SET checksum = repeat('0', 64) WHERE version = '20261123010300'",
      );
      const report = await preflight(
        { store: db.store, config: testConfig(), providerFor: () => undefined as never },
        { probe: false },
      );
      expect(report.status).toBe("config");
      expect(report.checks.find((c) => c.name === "migrations")).toMatchObject({
        level: "config",
        message: expect.stringContaining("20261123010300_targets_api"),
      });
    } finally {
      await db.drop();
    }
  });
});

describe("supabase/schema.sql", () => {
  it("is what the migrations produce (regenerate with npm run schema:dump)", async () => {
    expect(await dumpSchema(migrated.api)).toBe(await readFile(SCHEMA_FILE, "utf8"));
  });
});

describe("upgrades", () => {
  it("every prefix of the migrations, applied as psql would, upgrades to the same schema", async () => {
    const files = await loadMigrations();
    const expected = await readFile(SCHEMA_FILE, "utf8");
    for (let k = 1; k < files.length; k++) {
      const db = await createTestDatabase(`prefix_${k}`, { empty: true });
      try {
        for (const m of files.slice(0, k)) await db.api.exec(m.sql);
        expect(await applyMigrations(db.api)).toEqual(files.slice(k).map((m) => `${m.version}_${m.name}`));
        expect(await dumpSchema(db.api), `after the first ${k} migrations`).toBe(expected);
      } finally {
        await db.drop();
      }
    }
  });

  it("running every file again (a second psql pass) changes nothing", async () => {
    for (const m of await loadMigrations()) await migrated.api.exec(m.sql);
    expect(await dumpSchema(migrated.api)).toBe(await readFile(SCHEMA_FILE, "utf8"));
  });
});
