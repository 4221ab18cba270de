import type { Command } from "commander";
import { InputError } from "../../lib/errors.js";
import { retryRows } from "../../lib/ops/actions.js";
import { collectIds, positiveInt } from "../args.js";
import { EXIT } from "../exit.js";
import type { Cli } from "../io.js";

const chunkIndex = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new InputError(`--chunk must be a chunk index (0, 1, 2, ...), not "${value}"`);
  return n;
};

/** `retry <target>`: dead letters (default), given rows, or completed rows whose embedding is NULL. */
export function registerRetry(program: Command, cli: Cli): void {
  program
    .command("retry")
    .description(
      "force a retry: every dead letter (default), given rows, or rows marked completed whose embedding is NULL",
    )
    .argument("<target>", "a registered target")
    .option(
      "--row <id>",
      "retry this row whatever its state (repeat, or comma-separate)",
      collectIds,
      [] as string[],
    )
    .option(
      "--chunk <index>",
      "a chunked target: retry this chunk of the one --row document (repeat, or comma-separate)",
      collectIds,
      [] as string[],
    )
    .option("--dead-letter", "only dead-lettered rows (the default without --row)")
    .option("--completed", "re-queue rows marked completed whose embedding is NULL (the status WARNING)")
    .option("--limit <n>", "at most this many rows", positiveInt("--limit", 100_000))
    .option("--json", "machine-readable output")
    .addHelpText(
      "after",
      `
Re-queued rows start again with zero attempts; the next sweep (EMBEDDINGS_SWEEP_CRON, every 5 minutes
by default) embeds them, or now: embeddings backfill <target> --local. Requeued 0 is not an error.`,
    )
    .action(async (target: string, o) => {
      try {
        const r = await cli.withContext((ctx) =>
          retryRows(ctx.store, {
            target,
            ids: o.row.length > 0 ? o.row : undefined,
            deadLetter: Boolean(o.deadLetter),
            completed: Boolean(o.completed),
            chunks: o.chunk.length > 0 ? o.chunk.map(chunkIndex) : undefined,
            limit: o.limit,
          }),
        );
        cli.print(o.json, r, () => {
          const what = {
            "dead-letters": "dead-lettered rows",
            rows: "of the given rows",
            "completed-but-null": "completed-but-NULL rows",
            chunks: `chunks of document ${o.row[0]}`,
          }[r.scope];
          const invalid =
            r.invalid.length > 0
              ? `\nskipped ${r.invalid.length} id${r.invalid.length === 1 ? "" : "s"} that cannot be keys of this table: ${r.invalid.slice(0, 10).join(", ")}`
              : "";
          return r.requeued === 0
            ? `nothing to retry: no ${what} of ${target} in a retryable state${invalid}`
            : `re-queued ${r.requeued} ${what} of ${target}; the next sweep embeds them, or now: embeddings backfill ${target} --local${invalid}`;
        });
      } catch (err) {
        cli.fail(err);
      }
      cli.io.exit(EXIT.ok);
    });
}
