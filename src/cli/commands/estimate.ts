import type { Command } from "commander";
import type { AppContext } from "../../lib/context.js";
import { type Estimate, estimateTarget } from "../../lib/ops/estimate.js";
import { DEFAULT_HEADROOM } from "../../lib/providers/rate-governor.js";
import { positiveInt } from "../args.js";
import type { Cli } from "../io.js";
import { formatDuration } from "../status-format.js";

/** `estimate <target>`: what a backfill would embed, cost and take, without sending anything. */

export interface EstimateFlags {
  reembed?: boolean;
  sample?: number;
  batchSize?: number;
}

export function estimateFor(ctx: AppContext, target: string, flags: EstimateFlags): Promise<Estimate> {
  return estimateTarget(ctx.store, {
    target,
    reembed: Boolean(flags.reembed),
    sample: flags.sample,
    batchSize: flags.batchSize ?? ctx.config.EMBEDDINGS_BATCH_SIZE,
    prices: ctx.config.EMBEDDINGS_PRICES,
    requestsPerMinute: ctx.config.EMBEDDINGS_RPM,
    tokensPerMinute: ctx.config.EMBEDDINGS_TPM,
  });
}

const int = (n: number) => n.toLocaleString("en-US");
const usd = (n: number) => `$${n > 0 && n < 0.01 ? n.toFixed(6) : n.toFixed(2)}`;
const price = (n: number) => `$${n} / 1M tokens`;

export function formatEstimate(e: Estimate): string {
  const unit = e.chunked ? "documents" : "rows";
  const spread = (f: { errorBound: number }) => (e.sample.exact ? "" : ` ± ${int(f.errorBound)}`);
  const how = e.sample.exact
    ? `exact: every one of the ${int(e.rows)} ${unit} counted`
    : `95 % bound from a uniform random sample of ${int(e.sample.rows)} ${unit}${e.sample.method === "bernoulli" ? ` (TABLESAMPLE BERNOULLI ${e.sample.percent} %, cut at random)` : " (ORDER BY random())"}`;
  const lines = [
    `estimate  ${e.target}  ${e.table}  ${e.provider}/${e.model}${e.reembed ? "  --reembed" : ""}`,
    `  ${unit.padEnd(9)} ${int(e.rows)} would be embedded (of ${int(e.tableRows)} in the table)`,
    `  tokens    ${int(e.tokens.estimate)}${spread(e.tokens)}  (${how}; ${e.tokens.perRow} per ${unit === "rows" ? "row" : "document"})`,
  ];
  if (e.chunks) {
    lines.push(
      `  chunks    ${int(e.chunks.estimate)}${spread(e.chunks)}  (overlap repeats ~${int(e.chunks.overlapTokens)} tokens)`,
    );
  }
  const c = e.cost;
  const list =
    c.listUsd === null
      ? `unknown: no price for ${e.model} (set EMBEDDINGS_PRICES, USD per 1M tokens)`
      : `${usd(c.listUsd)} at list price${c.perMillion ? ` (${price(c.perMillion)})` : ""}`;
  const batch =
    c.batchUsd === null
      ? "no Batch API price for this model"
      : `${usd(c.batchUsd)} with the Batch API${c.batchPerMillion ? ` (${price(c.batchPerMillion)})` : ""}`;
  lines.push(`  cost      ${list}; ${batch}`);
  lines.push(`  requests  ${int(e.requests)}  (${int(e.inputs)} inputs, batch size ${e.batchSize})`);
  const t = e.time;
  const limits = [
    t.requestsPerMinute === null ? null : `${int(t.requestsPerMinute)} RPM`,
    t.tokensPerMinute === null ? null : `${int(t.tokensPerMinute)} TPM`,
  ]
    .filter(Boolean)
    .join(" / ");
  lines.push(
    t.seconds === null
      ? `  time      unknown: ${t.note}`
      : `  time      ~${formatDuration(t.seconds)} at ${limits} (EMBEDDINGS_RPM / EMBEDDINGS_TPM, paced at ${Number((100 * (1 - DEFAULT_HEADROOM)).toFixed(1))} %; bound by ${t.limitedBy})${t.note ? `; ${t.note}` : ""}`,
  );
  return lines.join("\n");
}

export function registerEstimate(program: Command, cli: Cli): void {
  program
    .command("estimate")
    .description(
      "rows a backfill would embed, their tokens (real tokenizer, real content), cost and time; sends nothing",
    )
    .argument("<target>", "a registered target (embeddings targets list)")
    .option("--reembed", "estimate embedding every row again, even unchanged ones")
    .option(
      "--sample <n>",
      "rows whose content is read and counted when more would be embedded (default 1000; 200 documents for chunked targets)",
      positiveInt("--sample", 100_000),
    )
    .option(
      "--batch-size <n>",
      "rows per batch, for the request count (default EMBEDDINGS_BATCH_SIZE)",
      positiveInt("--batch-size", 2048),
    )
    .option("--json", "machine-readable output")
    .addHelpText(
      "after",
      `
Rows are counted exactly. Tokens are counted with the provider's tokenizer over the real content: of
every row when they are at most --sample, else of a uniform random sample, extrapolated with a 95 %
error bound. Cost at the model's list price (EMBEDDINGS_PRICES overrides) and at the Batch API price;
time at EMBEDDINGS_RPM / EMBEDDINGS_TPM when set.`,
    )
    .action(async (target: string, o) => {
      try {
        const estimate = await cli.withContext((ctx) => estimateFor(ctx, target, o));
        cli.print(o.json, estimate, () => formatEstimate(estimate));
      } catch (err) {
        cli.fail(err);
      }
    });
}
