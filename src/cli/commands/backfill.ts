import { randomUUID } from "node:crypto";
import { type Command, Option } from "commander";
import { type Config, inngestDev } from "../../lib/config.js";
import { ConfigError, errorMessage, TransientError } from "../../lib/errors.js";
import { positiveInt } from "../args.js";
import { EXIT } from "../exit.js";
import type { Cli } from "../io.js";
import { runRequest, runWithSignals, summaryLine } from "../run-target.js";
import { estimateFor, formatEstimate } from "./estimate.js";

async function assertInngestConfigured(config: Config): Promise<void> {
  const { inngestConfigured } = await import("../../functions/client.js");
  if (inngestConfigured(config)) return;
  throw new ConfigError(
    "sending to Inngest needs INNGEST_EVENT_KEY (Inngest Cloud: Manage > Event keys), or INNGEST_DEV=1 for a local dev server; or run the backfill in this process with --local",
  );
}

/** A refused key is a configuration problem; anything else (unreachable, 5xx) is worth retrying. */
function sendFailure(err: unknown, config: Config): Error {
  const message = errorMessage(err);
  if (/\b(401|403)\b|unauthori[sz]ed|forbidden|event key/i.test(message)) {
    return new ConfigError(`Inngest refused the event: ${message}. Check INNGEST_EVENT_KEY`);
  }
  const where = config.INNGEST_BASE_URL ?? (inngestDev(config) ? "the Inngest dev server" : "Inngest Cloud");
  return new TransientError(`could not send the event to ${where}: ${message}`, undefined, { cause: err });
}

/** `backfill <target>`: durably through Inngest (the event), or in this process with --local. */
export function registerBackfill(program: Command, cli: Cli): void {
  program
    .command("backfill")
    .description(
      "embed every row of a target: durably through Inngest (default), or in this process with --local",
    )
    .argument("<target>", "a registered target (embeddings targets list)")
    .option("--local", "run here instead of sending the event (Ctrl-C stops cleanly; rerun resumes)")
    .option(
      "--batch-size <n>",
      "rows per batch (default EMBEDDINGS_BATCH_SIZE)",
      positiveInt("--batch-size", 2048),
    )
    .option(
      "--parallelism <n>",
      "concurrent batches / worker lanes (default EMBEDDINGS_PARALLELISM)",
      positiveInt("--parallelism", 64),
    )
    .option("--reembed", "embed every row again, even unchanged ones")
    .addOption(
      new Option(
        "--via <route>",
        "batch: through the provider's Batch API (half price, results within 24 h), then the normal path for what is left",
      )
        .choices(["sync", "batch"])
        .default("sync"),
    )
    .option(
      "--dry-run",
      "print what it would embed, cost and take (as embeddings estimate) and send nothing, run nothing",
    )
    .option("--json", "machine-readable output")
    .addHelpText(
      "after",
      `
Without --local this sends embeddings/backfill.requested to Inngest (INNGEST_EVENT_KEY, or INNGEST_DEV=1
with INNGEST_BASE_URL for a dev server) and returns at once with the job id; the served app does the
work. Watch it with: embeddings status <target> --watch, GET /status, or the dashboard at /.`,
    )
    .action(async (target: string, o) => {
      let code: number = EXIT.ok;
      try {
        if (o.dryRun) {
          const estimate = await cli.withContext((ctx) => estimateFor(ctx, target, o));
          cli.print(
            o.json,
            { mode: "dry-run", sent: false, ...estimate },
            () => `${formatEstimate(estimate)}\ndry run: nothing was sent, no job was created`,
          );
        } else if (o.local) {
          const summary = await cli.withContext((ctx) =>
            runWithSignals(cli.io, ctx, runRequest(target, o, ctx)),
          );
          cli.print(o.json, { mode: "local", ...summary }, () => summaryLine(summary));
          code = summary.cancelled ? EXIT.interrupted : EXIT.ok;
        } else {
          const sent = await cli.withContext(async (ctx) => {
            // Unknown target: a readable error now, not a failed run in the Inngest dashboard later.
            await ctx.store.getTarget(target);
            await assertInngestConfigured(ctx.config);
            // Imported here, as in io.ts: only this route needs the Inngest SDK.
            const { backfillRequested } = await import("../../functions/events.js");
            // The job id is chosen here, so it can be printed (and cancelled) before any run starts.
            const jobId = randomUUID();
            const data = {
              target,
              jobId,
              ...(o.batchSize ? { batchSize: o.batchSize } : {}),
              ...(o.parallelism ? { parallelism: o.parallelism } : {}),
              ...(o.reembed ? { reembed: true } : {}),
              ...(o.via === "batch" ? { via: "batch" as const } : {}),
            };
            try {
              const r = await cli.io
                .inngest(ctx.config)
                .send(backfillRequested.create(data, { id: `backfill-${jobId}` }));
              return {
                mode: "inngest" as const,
                target,
                jobId,
                event: "embeddings/backfill.requested",
                eventIds: r.ids,
              };
            } catch (err) {
              throw sendFailure(err, ctx.config);
            }
          });
          cli.print(o.json, sent, () =>
            [
              `sent ${sent.event} for ${target} (event ${sent.eventIds.join(", ") || "accepted"})`,
              `job     ${sent.jobId}`,
              `watch   embeddings status ${target} --watch   (or GET /status, or the dashboard at /)`,
              `cancel  embeddings cancel ${sent.jobId}`,
            ].join("\n"),
          );
        }
      } catch (err) {
        cli.fail(err);
      }
      cli.io.exit(code);
    });
}
