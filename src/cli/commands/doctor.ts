import type { Command } from "commander";
import { ConfigError, errorMessage } from "../../lib/errors.js";
import { formatReport, type PreflightReport, preflight } from "../../lib/ops/preflight.js";
import { EXIT } from "../exit.js";
import type { Cli } from "../io.js";

/** `doctor [target]`: every problem at once, each with its fix. */
export function registerDoctor(program: Command, cli: Cli): void {
  program
    .command("doctor")
    .description(
      "check configuration, database, schema, targets and (unless --no-probe) the provider, with a fix for each problem",
    )
    .argument("[target]", "check only this target")
    .option("--no-probe", "skip the live provider call (one short input per target)")
    .option("--json", "machine-readable output")
    .action(async (target: string | undefined, o) => {
      let report: PreflightReport;
      try {
        report = await cli.withContext((ctx) =>
          preflight(
            { store: ctx.store, config: ctx.config, providerFor: (t) => cli.io.providerFor(t, ctx.config) },
            { targets: target ? [target] : undefined, probe: o.probe },
          ),
        );
      } catch (err) {
        // Configuration that does not parse is reported as is; a database that cannot be opened is
        // one more failed check, in the same report shape as every other problem.
        if (err instanceof ConfigError) cli.fail(err);
        const sqlstate = String((err as { code?: unknown } | null)?.code ?? "");
        // 28xxx: wrong password or role; 3D000: no such database. Retrying cannot fix those.
        const level = /^(28|3D)/.test(sqlstate) ? "config" : "transient";
        report = {
          status: level,
          checks: [
            {
              name: "database",
              level,
              message: `could not open the database: ${errorMessage(err)}`,
              fix: "check DATABASE_URL / SUPABASE_URL and that the database is up",
            },
          ],
        };
      }
      cli.print(o.json, report, () => formatReport(report));
      cli.io.exit({ ok: EXIT.ok, config: EXIT.config, transient: EXIT.transient }[report.status]);
    });
}
