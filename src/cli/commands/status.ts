import type { Command } from "commander";
import { readStatus } from "../../lib/ops/status.js";
import type { Cli } from "../io.js";
import { formatSnapshot } from "../status-format.js";

/** `status [target]`: what /status answers, for a terminal or a script. */
export function registerStatus(program: Command, cli: Cli): void {
  program
    .command("status")
    .description("coverage, row states, rate, ETA, cost, health and recent jobs per target")
    .argument("[target]")
    .option("--json", "machine-readable output")
    .option("--watch [seconds]", "refresh until Ctrl-C")
    .action(async (target: string | undefined, o) => {
      try {
        await cli.withContext(async (ctx) => {
          const once = async () => {
            const s = await readStatus(
              { store: ctx.store, prices: ctx.config.EMBEDDINGS_PRICES },
              {
                target,
                thresholds: ctx.config.EMBEDDINGS_HEALTH_THRESHOLDS,
                windowMinutes: ctx.config.EMBEDDINGS_RATE_WINDOW_MINUTES,
              },
            );
            if (o.watch && !o.json) cli.io.stdout("\x1b[2J\x1b[H");
            cli.print(o.json, s, () => formatSnapshot(s));
          };
          await once();
          if (!o.watch) return;
          const every = (typeof o.watch === "string" ? Number(o.watch) : 2) * 1000;
          await new Promise<void>((resolve) => {
            const timer = setInterval(() => void once().catch((err) => cli.fail(err)), Math.max(every, 500));
            const remove = cli.io.onInterrupt(() => {
              clearInterval(timer);
              remove();
              resolve();
            });
          });
        });
      } catch (err) {
        cli.fail(err);
      }
    });
}
