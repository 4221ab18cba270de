#!/usr/bin/env node
import { SingleBar } from "cli-progress";
import { Command, InvalidArgumentError, Option } from "commander";
import { type Config, loadConfig } from "../lib/config.js";
import { type AppContext, openContext } from "../lib/context.js";
import { type RunProgress, type RunSummary, runTarget } from "../lib/core/runner.js";
import { InputError } from "../lib/errors.js";
import { readStatus } from "../lib/ops/status.js";
import { defaultModel, PROVIDERS, providerForTarget } from "../lib/providers/index.js";
import { LOCAL_MODEL } from "../lib/providers/local.js";
import { nearestNeighbours, setUpDemoTable } from "./demo.js";
import { classifyExit, EXIT } from "./exit.js";
import { registerOpsCommands } from "./ops-commands.js";
import { formatSnapshot } from "./ops-format.js";

/**
 * The `embeddings` CLI. Every verb opens the configured database (DATABASE_URL, SUPABASE_URL or the
 * embedded PGlite under EMBEDDINGS_DATA_DIR), does one thing, and exits with a documented code.
 */

const positiveInt =
  (name: string, max = 1_000_000) =>
  (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from 1 to ${max}`);
    }
    return n;
  };

const columnList = (value: string) => {
  const cols = value
    .split(",")
    .map((c) => c.trim())
    .filter(Boolean);
  if (cols.length === 0)
    throw new InvalidArgumentError("give at least one column, e.g. --content title,body");
  return cols;
};

export async function withContext<T>(
  fn: (ctx: AppContext) => Promise<T>,
  env?: Record<string, string | undefined>,
): Promise<T> {
  const config: Config = loadConfig(env);
  const ctx = await openContext(config);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

export function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : text()}\n`);
}

export function fail(err: unknown): never {
  const { code, message } = classifyExit(err);
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

/** Progress on a TTY as a bar with rate and ETA; otherwise one line every few seconds (logs, CI). */
function progressReporter(json: boolean) {
  const tty = process.stderr.isTTY && !json;
  let barUi: SingleBar | null = null;
  let lastLine = 0;
  return {
    update(p: RunProgress) {
      const done = p.job.itemsProcessed + p.job.itemsFailed + p.job.itemsSkipped;
      const rate = p.elapsedMs > 0 ? (p.job.itemsProcessed / p.elapsedMs) * 1000 : 0;
      if (tty) {
        if (!barUi) {
          barUi = new SingleBar({
            format:
              " {bar} {percentage}% | {value}/{total} rows | {rate} rows/s | ETA {eta_formatted} | failed {failed}",
            stream: process.stderr,
            hideCursor: true,
          });
          barUi.start(Math.max(p.job.itemsTotal, 1), done, { rate: "0", failed: 0 });
        }
        barUi.setTotal(Math.max(p.job.itemsTotal, done, 1));
        barUi.update(done, { rate: rate.toFixed(0), failed: p.job.itemsFailed });
      } else if (!json && Date.now() - lastLine > 5000) {
        lastLine = Date.now();
        process.stderr.write(
          `progress ${done}/${p.job.itemsTotal} rows, ${rate.toFixed(0)} rows/s, failed ${p.job.itemsFailed}\n`,
        );
      }
    },
    stop() {
      (barUi as SingleBar | null)?.stop();
    },
  };
}

export async function runWithSignals(
  ctx: AppContext,
  options: { target: string; batchSize: number; parallelism: number; reembed: boolean; json: boolean },
): Promise<RunSummary> {
  const target = await ctx.store.getTarget(options.target);
  const provider = providerForTarget(target, ctx.config);
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(EXIT.interrupted);
    process.stderr.write(
      "\nstopping: finishing the current batch and releasing leases (Ctrl-C again to force)\n",
    );
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const progress = progressReporter(options.json);
  try {
    return await runTarget(
      { store: ctx.store, provider },
      {
        target: options.target,
        batchSize: options.batchSize,
        parallelism: options.parallelism,
        reembed: options.reembed,
        leaseSeconds: ctx.config.EMBEDDINGS_LEASE_SECONDS,
        signal: controller.signal,
        onProgress: (p) => progress.update(p),
      },
    );
  } finally {
    progress.stop();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

export function summaryLine(s: RunSummary): string {
  const secs = s.elapsedMs / 1000;
  const rate = secs > 0 ? s.job.itemsProcessed / secs : 0;
  return [
    `job ${s.job.id} ${s.job.status}`,
    `  embedded ${s.job.itemsProcessed} rows, failed ${s.job.itemsFailed}, unchanged ${s.job.itemsSkipped}, tokens ${s.job.tokens}`,
    `  ${secs.toFixed(1)} s, ${rate.toFixed(0)} rows/s${s.waiting ? "; some rows wait for a retry backoff (the sweep or the next run picks them up)" : ""}`,
  ].join("\n");
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name("embeddings")
    .description("Durable embedding backfill and sync for Postgres / Supabase (pgvector).")
    .addHelpText(
      "after",
      `
Database: DATABASE_URL, else SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY, else an embedded PGlite
database under EMBEDDINGS_DATA_DIR (default ./.data).

Exit codes: 0 ok, 1 the job failed, 2 bad input, 3 configuration problem (key, model, dimensions),
4 transient outage (database or provider unreachable, rate limited), 130 interrupted.`,
    );

  const targets = program.command("targets").description("register, list and remove targets");

  targets
    .command("add")
    .description("register a table whose rows need embeddings (re-running updates it)")
    .argument("<name>", "target name: lowercase letters, digits and _")
    .requiredOption("--table <schema.table>", "the source table, e.g. public.documents")
    .requiredOption("--id <column>", "its primary key column")
    .option("--content <columns>", "comma-separated text columns to embed, e.g. title,body", columnList)
    .option("--content-sql <expression>", "or one SQL expression over the row that yields the text")
    .requiredOption("--embedding <column>", "the vector(N) / halfvec(N) / real[] column to fill")
    .addOption(
      new Option("--provider <provider>", "embedding provider").choices([...PROVIDERS]).default("local"),
    )
    .option(
      "--model <model>",
      `model id (default: ${LOCAL_MODEL} for local, text-embedding-3-small for openai)`,
    )
    .option(
      "--dimensions <n>",
      "vector size; read from vector(N) columns, required for real[]",
      positiveInt("--dimensions", 16000),
    )
    .option(
      "--max-attempts <n>",
      "attempts per row before dead_letter",
      positiveInt("--max-attempts", 100),
      3,
    )
    .option("--json", "machine-readable output")
    .action(async (name: string, o) => {
      try {
        if (!o.content && !o.contentSql)
          throw new InputError(
            "give the content to embed: --content col1,col2 or --content-sql <expression>",
          );
        if (o.content && o.contentSql)
          throw new InputError("give either --content or --content-sql, not both");
        const target = await withContext((ctx) =>
          ctx.store.registerTarget({
            name,
            table: o.table,
            idColumn: o.id,
            embeddingColumn: o.embedding,
            provider: o.provider,
            model: o.model ?? defaultModel(o.provider)!,
            contentColumns: o.content,
            contentExpression: o.contentSql,
            dimensions: o.dimensions,
            maxAttempts: o.maxAttempts,
          }),
        );
        print(
          o.json,
          target,
          () =>
            `registered ${target.name}: ${target.table} -> ${target.embeddingColumn} (${target.embeddingKind}, ${target.dimensions} dims) with ${target.provider}/${target.model}\nnext: embeddings run ${target.name}`,
        );
      } catch (err) {
        fail(err);
      }
    });

  targets
    .command("list")
    .description("list registered targets")
    .option("--json", "machine-readable output")
    .action(async (o) => {
      try {
        const list = await withContext((ctx) => ctx.store.listTargets());
        print(o.json, list, () =>
          list.length === 0
            ? "no targets registered"
            : list
                .map(
                  (t) =>
                    `${t.name}\t${t.table}.${t.embeddingColumn}\t${t.provider}/${t.model}\t${t.dimensions} dims\tcontent: ${t.contentColumns?.join(",") ?? t.contentExpression}`,
                )
                .join("\n"),
        );
      } catch (err) {
        fail(err);
      }
    });

  targets
    .command("remove")
    .description("unregister a target: drops its triggers and row state; the table and its embeddings stay")
    .argument("<name>")
    .option("--json", "machine-readable output")
    .action(async (name: string, o) => {
      try {
        const r = await withContext((ctx) => ctx.store.removeTarget(name));
        print(o.json, r, () => `removed ${r.removed}`);
      } catch (err) {
        fail(err);
      }
    });

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
      try {
        const summary = await withContext((ctx) =>
          runWithSignals(ctx, {
            target,
            batchSize: o.batchSize ?? ctx.config.EMBEDDINGS_BATCH_SIZE,
            parallelism: o.parallelism ?? ctx.config.EMBEDDINGS_PARALLELISM,
            reembed: Boolean(o.reembed),
            json: Boolean(o.json),
          }),
        );
        print(o.json, summary, () => summaryLine(summary));
        process.exit(summary.cancelled ? EXIT.interrupted : EXIT.ok);
      } catch (err) {
        fail(err);
      }
    });

  program
    .command("status")
    .description("coverage, row states, rate, ETA, cost, health and recent jobs per target")
    .argument("[target]")
    .option("--json", "machine-readable output")
    .option("--watch [seconds]", "refresh until Ctrl-C")
    .action(async (target: string | undefined, o) => {
      try {
        await withContext(async (ctx) => {
          const once = async () => {
            const s = await readStatus(
              { store: ctx.store, prices: ctx.config.EMBEDDINGS_PRICES },
              {
                target,
                thresholds: ctx.config.EMBEDDINGS_HEALTH_THRESHOLDS,
                windowMinutes: ctx.config.EMBEDDINGS_RATE_WINDOW_MINUTES,
              },
            );
            if (o.watch && !o.json) process.stdout.write("\x1b[2J\x1b[H");
            print(o.json, s, () => formatSnapshot(s));
          };
          await once();
          if (!o.watch) return;
          const every = (typeof o.watch === "string" ? Number(o.watch) : 2) * 1000;
          await new Promise<void>((resolve) => {
            const timer = setInterval(() => void once().catch(fail), Math.max(every, 500));
            process.once("SIGINT", () => {
              clearInterval(timer);
              resolve();
            });
          });
        });
      } catch (err) {
        fail(err);
      }
    });

  program
    .command("demo")
    .description(
      "the whole job on the embedded default: create a documents table, register it, backfill it offline, query it",
    )
    .option("--rows <n>", "rows to create", positiveInt("--rows", 1_000_000), 2400)
    .option("--dimensions <n>", "vector size", positiveInt("--dimensions", 16000), 384)
    .option("--json", "machine-readable output")
    .action(async (o) => {
      try {
        await withContext(async (ctx) => {
          if (!ctx.admin) {
            throw new InputError(
              "the demo creates its own table, so it needs a direct database (DATABASE_URL or the embedded default), not SUPABASE_URL",
            );
          }
          const table = await setUpDemoTable(ctx.admin, { rows: o.rows, dimensions: o.dimensions });
          await ctx.store.registerTarget({
            name: "demo_documents",
            table: "public.documents",
            idColumn: "id",
            contentColumns: ["title", "body"],
            embeddingColumn: "embedding",
            provider: "local",
            model: LOCAL_MODEL,
            dimensions: o.dimensions,
          });
          const summary = await runWithSignals(ctx, {
            target: "demo_documents",
            batchSize: 100,
            parallelism: 2,
            reembed: false,
            json: Boolean(o.json),
          });
          const [status] = await ctx.store.status("demo_documents");
          const query = "how do I keep long backfills from timing out in edge functions";
          const neighbours = await nearestNeighbours(ctx.admin, query, {
            dimensions: o.dimensions,
            vectorType: table.vectorType,
          });
          const result = {
            database: ctx.describe,
            rowsCreated: table.inserted,
            embedded: summary.job.itemsProcessed,
            tokens: summary.job.tokens,
            seconds: Number((summary.elapsedMs / 1000).toFixed(2)),
            rowsPerSecond: Math.round(summary.job.itemsProcessed / Math.max(summary.elapsedMs / 1000, 0.001)),
            coverage: status?.coverage ?? 0,
            total: status?.total ?? 0,
            query,
            neighbours,
          };
          print(o.json, result, () =>
            [
              `database   ${result.database}`,
              `table      public.documents (${result.total} rows${result.rowsCreated ? `, ${result.rowsCreated} created now` : ", already there"})`,
              `embedded   ${result.embedded} rows, ${result.tokens} tokens in ${result.seconds} s (${result.rowsPerSecond} rows/s)`,
              `coverage   ${result.coverage}%`,
              "",
              `nearest neighbours of "${query}" (local lexical model, cosine distance):`,
              ...neighbours.map((n) => `  ${n.distance.toFixed(3)}  #${n.id} ${n.title}`),
              "",
              result.embedded === 0
                ? "nothing to embed: every row is current (unchanged content is never embedded twice)"
                : "run it again: it embeds nothing, because nothing changed",
            ].join("\n"),
          );
        });
      } catch (err) {
        fail(err);
      }
    });

  registerOpsCommands(program, { withContext, print, fail, runWithSignals, summaryLine });
  return program;
}

await buildProgram().parseAsync(process.argv);
