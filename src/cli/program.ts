import { Command } from "commander";
import { registerBackfill } from "./commands/backfill.js";
import { registerCancel } from "./commands/cancel.js";
import { registerDemo } from "./commands/demo.js";
import { registerDoctor } from "./commands/doctor.js";
import { registerEstimate } from "./commands/estimate.js";
import { registerHistory } from "./commands/history.js";
import { registerRetry } from "./commands/retry.js";
import { registerRun } from "./commands/run.js";
import { registerStatus } from "./commands/status.js";
import { registerTargets } from "./commands/targets.js";
import { EXIT } from "./exit.js";
import { bindCli, type CliIO } from "./io.js";

const EXIT_CODES = `Exit codes: 0 ok, 1 failed, 2 bad input (unknown target or job, bad flag), 3 configuration
problem (key, model, dimensions), 4 transient outage (database, provider or Inngest unreachable, rate
limited), 130 interrupted.`;

/**
 * The `embeddings` program: every verb, bound to one CliIO. Every verb opens the configured database
 * (DATABASE_URL, SUPABASE_URL or the embedded PGlite under EMBEDDINGS_DATA_DIR), does one thing, and
 * exits with a documented code. Usage errors (a bad flag, a missing argument) exit 2, like every
 * other bad input.
 */
export function buildProgram(io: CliIO): Command {
  const cli = bindCli(io);
  const program = new Command();
  program
    .name("embeddings")
    .description("Durable embedding backfill and sync for Postgres / Supabase (pgvector).")
    .configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) })
    // Commander exits 1 on a usage error by default; ours is 2. Inherited by every verb below.
    .exitOverride((err) => io.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage))
    .addHelpText(
      "after",
      `
Database: DATABASE_URL, else SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY, else an embedded PGlite
database under EMBEDDINGS_DATA_DIR (default ./.data).

${EXIT_CODES}`,
    );
  registerTargets(program, cli);
  registerRun(program, cli);
  registerStatus(program, cli);
  registerHistory(program, cli);
  registerDemo(program, cli);
  registerEstimate(program, cli);
  registerBackfill(program, cli);
  registerRetry(program, cli);
  registerCancel(program, cli);
  registerDoctor(program, cli);
  for (const verb of program.commands) {
    if (verb.name() !== "targets") verb.addHelpText("after", `\n${EXIT_CODES}`);
  }
  return program;
}
