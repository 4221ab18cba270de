// npm run schema:dump: writes supabase/schema.sql, the current definition of every table and function
// the migrations create, read from a fresh PostgreSQL 18 database set up as a Supabase project is
// (its roles and default privileges) and migrated with supabase/migrations.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { applyMigrations, MIGRATIONS_DIR } from "../src/lib/db/migrate.js";
import { createPostgresApi } from "../src/lib/db/postgres.js";
import { databaseUrl, withAdmin } from "../test/support/pg-admin.js";
import { startCluster } from "../test/support/pg-cluster.js";
import { dumpSchema } from "../test/support/schema-dump.js";
import { SUPABASE_DEFAULTS_SQL, SUPABASE_ROLES_SQL } from "../test/support/supabase-roles.js";

const cluster = await startCluster({ prefix: "embeddings-schema-dump-" });
try {
  await withAdmin(cluster.adminUrl, async (c) => {
    await c.query(SUPABASE_ROLES_SQL);
    await c.query("CREATE DATABASE schema_dump");
  });
  const url = databaseUrl(cluster.adminUrl, "schema_dump");
  await withAdmin(url, (c) => c.query(SUPABASE_DEFAULTS_SQL));
  const api = createPostgresApi({ connectionString: url, poolSize: 1 });
  try {
    await applyMigrations(api);
    const file = join(MIGRATIONS_DIR, "..", "schema.sql");
    await writeFile(file, await dumpSchema(api));
    process.stdout.write(`wrote ${file}\n`);
  } finally {
    await api.close();
  }
} finally {
  await cluster.stop();
}
