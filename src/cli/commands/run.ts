import type { Command } from "commander";
import { positiveInt } from "../args.js";
import { EXIT } from "../exit.js";
import type { Cli } from "../io.js";
import { runRequest, runWithSignals, summaryLine } from "../run-target.js";

/** `run <target>`: embed every row in this process until done. */
export function registerRun(program: Command, cli: Cli): void {
  program
    .command("run")
    .description(
      "embed every row of a target in this process until done (Ctrl-C stops cleanly; rerun resumes)",
    )
    .argument("<target>")
    .option("--batch-size <n>", "rows per batch", positiveInt("--batch-size", 2048))
    .option("--parallelism <n>", "concurrent batches", positiveInt("--parallelism", 64))
    .option("--reembed", "embed every row again, even unchanged ones")
    .option("--json", "machine-readable output")
    .action(async (target: string, o) => {
      let code: number = EXIT.ok;
      try {
        const summary = await cli.withContext((ctx) =>
          runWithSignals(cli.io, ctx, runRequest(target, o, ctx)),
        );
        cli.print(o.json, summary, () => summaryLine(summary));
        code = summary.cancelled ? EXIT.interrupted : EXIT.ok;
      } catch (err) {
        cli.fail(err);
      }
      // Outside the try: an exit that throws (tests run verbs in-process) is not a failure.
      cli.io.exit(code);
    });
}
