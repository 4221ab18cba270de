import { randomUUID } from "node:crypto";
import { type Command, InvalidArgumentError } from "commander";
import { createInngestClient, type InngestClient } from "../functions/client.js";
import { backfillRequested } from "../functions/events.js";
import { inngestConfigured, sendCancelled } from "../http/ops.js";
import { type Config, inngestDev } from "../lib/config.js";
import type { AppContext } from "../lib/context.js";
import type { RunSummary } from "../lib/core/runner.js";
import { ConfigError, errorMessage, InputError, TransientError } from "../lib/errors.js";
import { cancelJob, retryRows } from "../lib/ops/actions.js";
import { formatReport, type PreflightReport, preflight } from "../lib/ops/preflight.js";
import { providerForTarget } from "../lib/providers/index.js";
import type { EmbeddingProvider } from "../lib/providers/provider.js";
import type { Target } from "../lib/types.js";
import { EXIT } from "./exit.js";

/**
 * Operations verbs: backfill, retry, cancel, doctor. Each prints text or, with --json, one JSON
 * document whose fields only ever get added to (scripts may rely on them), and exits with a code
 * from EXIT. Usage errors (a bad flag, a missing argument) exit 2, like every other bad input.
 */

export interface OpsHelpers {
  withContext<T>(fn: (ctx: AppContext) => Promise<T>): Promise<T>;
  print(json: boolean, value: unknown, text: () => string): void;
  fail(err: unknown): never;
  runWithSignals(
    ctx: AppContext,
    options: { target: string; batchSize: number; parallelism: number; reembed: boolean; json: boolean },
  ): Promise<RunSummary>;
  summaryLine(s: RunSummary): string;
  /** Defaults to process.exit; tests pass one that throws. */
  exit?: (code: number) => never;
  /** Defaults to createInngestClient(config). */
  inngest?: (config: Config) => Pick<InngestClient, "send">;
  /** Provider for doctor's live probe; defaults to providerForTarget. */
  providerFor?: (target: Target, config: Config) => EmbeddingProvider;
}

const EXIT_CODES = `Exit codes: 0 ok, 1 failed, 2 bad input (unknown target or job, bad flag), 3 configuration
problem, 4 transient outage (database or Inngest unreachable), 130 interrupted.`;

const positiveInt = (name: string, max: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new InvalidArgumentError(`${name} must be a whole number from 1 to ${max}`);
  return n;
};

const collectIds = (value: string, previous: string[]) => [
  ...previous,
  ...value
    .split(",")
    .map((v) => v.trim())
    .filter(Boolean),
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Inngest takes events when running against a dev server, or in the cloud with an event key. */
function assertInngestConfigured(config: Config): void {
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

export function registerOpsCommands(program: Command, helpers: OpsHelpers): void {
  const h = helpers;
  const exit = h.exit ?? ((code: number) => process.exit(code));
  const clientFor = h.inngest ?? ((config: Config) => createInngestClient(config));
  // Commander exits 1 on a usage error by default; our documented code for bad input is 2.
  const usageExit = (cmd: Command) =>
    cmd
      .exitOverride((err) => exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage))
      .addHelpText("after", `\n${EXIT_CODES}`);

  usageExit(
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
      .option("--json", "machine-readable output")
      .addHelpText(
        "after",
        `
Without --local this sends embeddings/backfill.requested to Inngest (INNGEST_EVENT_KEY, or INNGEST_DEV=1
with INNGEST_BASE_URL for a dev server) and returns at once with the job id; the served app does the
work. Watch it with: embeddings status <target> --watch, GET /status, or the dashboard at /.`,
      ),
  ).action(async (target: string, o) => {
    let code: number = EXIT.ok;
    try {
      if (o.local) {
        const summary = await h.withContext((ctx) =>
          h.runWithSignals(ctx, {
            target,
            batchSize: o.batchSize ?? ctx.config.EMBEDDINGS_BATCH_SIZE,
            parallelism: o.parallelism ?? ctx.config.EMBEDDINGS_PARALLELISM,
            reembed: Boolean(o.reembed),
            json: Boolean(o.json),
          }),
        );
        h.print(o.json, { mode: "local", ...summary }, () => h.summaryLine(summary));
        code = summary.cancelled ? EXIT.interrupted : EXIT.ok;
      } else {
        const sent = await h.withContext(async (ctx) => {
          // Unknown target: a readable error now, not a failed run in the Inngest dashboard later.
          await ctx.store.getTarget(target);
          assertInngestConfigured(ctx.config);
          // The job id is chosen here, so it can be printed (and cancelled) before any run starts.
          const jobId = randomUUID();
          const data = {
            target,
            jobId,
            ...(o.batchSize ? { batchSize: o.batchSize } : {}),
            ...(o.parallelism ? { parallelism: o.parallelism } : {}),
            ...(o.reembed ? { reembed: true } : {}),
          };
          try {
            const r = await clientFor(ctx.config).send(
              backfillRequested.create(data, { id: `backfill-${jobId}` }),
            );
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
        h.print(o.json, sent, () =>
          [
            `sent ${sent.event} for ${target} (event ${sent.eventIds.join(", ") || "accepted"})`,
            `job     ${sent.jobId}`,
            `watch   embeddings status ${target} --watch   (or GET /status, or the dashboard at /)`,
            `cancel  embeddings cancel ${sent.jobId}`,
          ].join("\n"),
        );
      }
    } catch (err) {
      h.fail(err);
    }
    exit(code);
  });

  usageExit(
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
      .option("--dead-letter", "only dead-lettered rows (the default without --row)")
      .option("--completed", "re-queue rows marked completed whose embedding is NULL (the status WARNING)")
      .option("--limit <n>", "at most this many rows", positiveInt("--limit", 100_000))
      .option("--json", "machine-readable output")
      .addHelpText(
        "after",
        `
Re-queued rows start again with zero attempts; the next sweep (EMBEDDINGS_SWEEP_CRON, every 5 minutes
by default) embeds them, or now: embeddings backfill <target> --local. Requeued 0 is not an error.`,
      ),
  ).action(async (target: string, o) => {
    try {
      const r = await h.withContext((ctx) =>
        retryRows(ctx.store, {
          target,
          ids: o.row.length > 0 ? o.row : undefined,
          deadLetter: Boolean(o.deadLetter),
          completed: Boolean(o.completed),
          limit: o.limit,
        }),
      );
      h.print(o.json, r, () => {
        const what = {
          "dead-letters": "dead-lettered rows",
          rows: "of the given rows",
          "completed-but-null": "completed-but-NULL rows",
        }[r.scope];
        return r.requeued === 0
          ? `nothing to retry: no ${what} of ${target} in a retryable state`
          : `re-queued ${r.requeued} ${what} of ${target}; the next sweep embeds them, or now: embeddings backfill ${target} --local`;
      });
    } catch (err) {
      h.fail(err);
    }
    exit(EXIT.ok);
  });

  usageExit(
    program
      .command("cancel")
      .description("cancel a backfill job: mark it cancelled, give its leases back, and tell Inngest")
      .argument("<jobId>", "the job id (embeddings status shows them)")
      .option("--json", "machine-readable output")
      .addHelpText(
        "after",
        "\nA job that already completed or failed is left as it is (exit 1); cancelling twice is fine (exit 0).",
      ),
  ).action(async (jobId: string, o) => {
    let code: number = EXIT.ok;
    try {
      if (!UUID.test(jobId))
        throw new InputError(`"${jobId}" is not a job id (a UUID); embeddings status lists jobs`);
      const r = await h.withContext((ctx) => {
        return cancelJob(ctx.store, jobId, {
          reason: "cancelled by the operator (embeddings cancel)",
          notify: inngestConfigured(ctx.config)
            ? (job) => sendCancelled(clientFor(ctx.config), job.id)
            : undefined,
        });
      });
      if (!r.cancelled) code = EXIT.failed;
      h.print(o.json, r, () => {
        if (!r.cancelled) return `job ${r.jobId} already ${r.status}: nothing to cancel`;
        const event = r.eventSent
          ? "Inngest was told (embeddings/backfill.cancelled)"
          : `Inngest was not told (${r.eventError ?? "not configured"}); its lanes stop at their next batch anyway`;
        return `cancelled job ${r.jobId} of ${r.target} (was ${r.previousStatus}); released ${r.released} leased rows\n${event}`;
      });
    } catch (err) {
      h.fail(err);
    }
    exit(code);
  });

  usageExit(
    program
      .command("doctor")
      .description(
        "check configuration, database, schema, targets and (unless --no-probe) the provider, with a fix for each problem",
      )
      .argument("[target]", "check only this target")
      .option("--no-probe", "skip the live provider call (one short input per target)")
      .option("--json", "machine-readable output"),
  ).action(async (target: string | undefined, o) => {
    let report: PreflightReport;
    try {
      report = await h.withContext((ctx) =>
        preflight(
          {
            store: ctx.store,
            config: ctx.config,
            providerFor: (t) => (h.providerFor ?? providerForTarget)(t, ctx.config),
          },
          { targets: target ? [target] : undefined, probe: o.probe },
        ),
      );
    } catch (err) {
      // Configuration that does not parse is reported as is; a database that cannot be opened is
      // one more failed check, in the same report shape as every other problem.
      if (err instanceof ConfigError) h.fail(err);
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
    h.print(o.json, report, () => formatReport(report));
    exit({ ok: EXIT.ok, config: EXIT.config, transient: EXIT.transient }[report.status]);
  });
}
