// npm run migrations:release: records new migration files in supabase/migrations.sha256 (run it when
// a migration is final, in the same commit that adds it). Never rewrites a line already there.
import { RELEASED_LIST, releaseNew } from "../test/support/released-migrations.js";

const added = await releaseNew();
process.stdout.write(
  added.length ? `added to ${RELEASED_LIST}:\n  ${added.join("\n  ")}\n` : "nothing new to release\n",
);
