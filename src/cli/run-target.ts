import { SingleBar } from "cli-progress";
import type { AppContext } from "../lib/context.js";
import { type RunProgress, type RunSummary, runTarget } from "../lib/core/runner.js";
import { errorMessage } from "../lib/errors.js";
import { estimateTarget, jobEstimate } from "../lib/ops/estimate.js";
import { batchApiForTarget } from "../lib/providers/index.js";
import { EXIT } from "./exit.js";
import type { CliIO } from "./io.js";

/**
 * `run`, `backfill --local` and `demo` embed a target in this process: the runner with the
 * target's provider, a progress display, and Ctrl-C that finishes the batch in flight, gives every
 * lease back and exits 130 (a second Ctrl-C exits at once).
 */

export interface RunRequest {
  target: string;
  batchSize: number;
  parallelism: number;
  reembed: boolean;
  json: boolean;
  /** `batch`: through the provider's Batch API first (Ctrl-C leaves it running; rerun resumes). */
  via?: "sync" | "batch";
}

/** The request the `run` flags describe, defaults from the configuration. */
export function runRequest(
  target: string,
  flags: { batchSize?: number; parallelism?: number; reembed?: boolean; json?: boolean; via?: string },
  ctx: AppContext,
): RunRequest {
  return {
    target,
    batchSize: flags.batchSize ?? ctx.config.EMBEDDINGS_BATCH_SIZE,
    parallelism: flags.parallelism ?? ctx.config.EMBEDDINGS_PARALLELISM,
    reembed: Boolean(flags.reembed),
    json: Boolean(flags.json),
    via: flags.via === "batch" ? "batch" : "sync",
  };
}

/** Progress on a TTY as a bar with rate and ETA; otherwise one line every few seconds (logs, CI). */
function progressReporter(io: CliIO, json: boolean) {
  const tty = io.interactive && !json;
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
        io.stderr(
          `progress ${done}/${p.job.itemsTotal} ${p.job.chunksTotal ? "documents" : "rows"}, ${rate.toFixed(0)} ${p.job.chunksTotal ? "documents" : "rows"}/s, failed ${p.job.itemsFailed}${p.job.chunksTotal ? `, chunks ${p.job.chunksEmbedded ?? 0}/${p.job.chunksTotal}` : ""}\n`,
        );
      }
    },
    stop() {
      (barUi as SingleBar | null)?.stop();
    },
  };
}

/** A run's summary with the estimate made before it (figures kept on its job): estimate against actual. */
export type EstimatedRunSummary = RunSummary & { estimate: Record<string, unknown> | null };

/**
 * The estimate of what the run will embed, made before it starts (seeding does not change which
 * rows qualify, so it may be recorded on the job afterwards). A run is never stopped by its estimate.
 */
async function estimateBefore(io: CliIO, ctx: AppContext, request: RunRequest) {
  try {
    const e = await estimateTarget(ctx.store, {
      target: request.target,
      reembed: request.reembed,
      batchSize: request.batchSize,
      prices: ctx.config.EMBEDDINGS_PRICES,
      requestsPerMinute: ctx.config.EMBEDDINGS_RPM,
      tokensPerMinute: ctx.config.EMBEDDINGS_TPM,
    });
    return jobEstimate(e);
  } catch (err) {
    io.stderr(`note: no estimate for this run: ${errorMessage(err)}\n`);
    return null;
  }
}

export async function runWithSignals(
  io: CliIO,
  ctx: AppContext,
  request: RunRequest,
): Promise<EstimatedRunSummary> {
  const target = await ctx.store.getTarget(request.target);
  const provider = io.providerFor(target, ctx.config);
  const estimate = await estimateBefore(io, ctx, request);
  const controller = new AbortController();
  const viaBatch = request.via === "batch";
  const remote = viaBatch
    ? {
        api: batchApiForTarget(target, ctx.config),
        pollMs: ctx.config.EMBEDDINGS_BATCH_POLL_SECONDS * 1000,
        maxPollMs: Math.max(ctx.config.EMBEDDINGS_BATCH_POLL_SECONDS * 1000, 10 * 60_000),
        onPoll: (records: NonNullable<RunSummary["remoteBatches"]>) => {
          if (request.json) return;
          io.stderr(
            `remote batches: ${records.map((r) => `#${r.seq} ${r.remoteStatus ?? r.state} ${r.completed}/${r.items}`).join(", ")}\n`,
          );
        },
      }
    : undefined;
  const removeHandler = io.onInterrupt(() => {
    if (controller.signal.aborted) io.exit(EXIT.interrupted);
    io.stderr(
      viaBatch
        ? "\nstopping: the remote batches keep running at the provider; run the same command again to resume them (Ctrl-C again to force)\n"
        : "\nstopping: finishing the current batch and releasing leases (Ctrl-C again to force)\n",
    );
    controller.abort();
  });
  const progress = progressReporter(io, request.json);
  try {
    const summary = await runTarget(
      { store: ctx.store, provider },
      {
        target: request.target,
        batchSize: request.batchSize,
        parallelism: request.parallelism,
        reembed: request.reembed,
        leaseSeconds: ctx.config.EMBEDDINGS_LEASE_SECONDS,
        signal: controller.signal,
        onProgress: (p) => progress.update(p),
        via: request.via,
        remote,
      },
    );
    if (estimate) await ctx.store.setJobEstimate(summary.job.id, estimate).catch(() => undefined);
    return { ...summary, estimate };
  } finally {
    progress.stop();
    removeHandler();
  }
}

export function summaryLine(s: RunSummary & { estimate?: Record<string, unknown> | null }): string {
  const secs = s.elapsedMs / 1000;
  const rate = secs > 0 ? s.job.itemsProcessed / secs : 0;
  const remote = (s.remoteBatches ?? []).filter((b) => b.items > 0);
  const e = s.estimate;
  const estimated = e
    ? [
        `  estimated ${e.rows} rows, ${e.tokens}${e.exact ? "" : ` ± ${e.tokensErrorBound}`} tokens; actual ${s.job.itemsProcessed} rows, ${s.job.tokens} tokens`,
      ]
    : [];
  return [
    ...(s.resumable
      ? [
          `job ${s.job.id} still running: ${remote.length} remote batches at the provider; run the same command again to resume`,
        ]
      : []),
    ...remote.map(
      (b) =>
        `  remote batch #${b.seq} ${b.batchId ?? "(not submitted)"} ${b.remoteStatus ?? b.state}: ${b.items} rows, written ${b.written}, failed ${b.errored}, returned ${b.returned}`,
    ),
    `job ${s.job.id} ${s.job.status}`,
    `  embedded ${s.job.itemsProcessed} rows, failed ${s.job.itemsFailed}, unchanged ${s.job.itemsSkipped}, tokens ${s.job.tokens}${s.reused ? `; ${s.reused} rows shared another row's content and its vector (no provider call of their own)` : ""}`,
    `  ${secs.toFixed(1)} s, ${rate.toFixed(0)} rows/s${s.waiting ? "; some rows wait for a retry backoff (the sweep or the next run picks them up)" : ""}`,
    ...estimated,
  ].join("\n");
}
