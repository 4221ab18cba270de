import type { Command } from "commander";
import { readStatus } from "../../lib/ops/status.js";
import type { Cli } from "../io.js";
import { series, sparkline } from "../sparkline.js";
import { formatSnapshot } from "../status-format.js";

/** The watch's sparkline: the last hour in 2-minute steps (30 blocks). */
const SPARK_STEP_MINUTES = 2;
const SPARK_SLOTS = 30;

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
            const lastHour: Record<string, string> = {};
            if (o.watch && !o.json) {
              const now = new Date();
              const since = new Date(now.getTime() - SPARK_SLOTS * SPARK_STEP_MINUTES * 60_000);
              await Promise.all(
                s.targets.map(async (t) => {
                  // A target whose history cannot be read just has no sparkline; status says why.
                  const h = await ctx.store.history(t.target, since, SPARK_STEP_MINUTES).catch(() => null);
                  if (!h) return;
                  const values = series(h.buckets, now, SPARK_SLOTS, SPARK_STEP_MINUTES);
                  const peak = Math.max(...values) / SPARK_STEP_MINUTES;
                  lastHour[t.target] = `${sparkline(values)}  peak ${Math.round(peak)} rows/min`;
                }),
              );
              cli.io.stdout("\x1b[2J\x1b[H");
            }
            cli.print(o.json, s, () => formatSnapshot(s, { lastHour }));
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
