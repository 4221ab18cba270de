import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { levelRank } from "./health.js";
import type { StatusSnapshot } from "./status.js";

/**
 * Prometheus metrics (prom-client), in a registry of their own per app: never the global one, so
 * two apps in one process (tests, a CLI next to a server) never share or double-register series.
 *
 * Row figures are gauges set from the status snapshot at scrape time (they are read from the
 * database, which is the source of truth; a process restart must not reset them). Counters count
 * what this process did itself (batches served by POST /batch, failed status reads).
 *
 * Series per job are limited to running jobs: finished jobs would grow label cardinality forever.
 */

export interface Metrics {
  registry: Registry;
  /** Sets every gauge from one snapshot, dropping series of targets and jobs that are gone. */
  update(snapshot: StatusSnapshot): void;
  /** Marks the status read as failed: row gauges are cleared rather than left stale. */
  statusFailed(): void;
  /** Rows handled by POST /batch in this process. */
  batchRows: Counter<"target" | "result">;
  batches: Counter<"target" | "outcome">;
  /** Serialises render: a second scrape waits for the first instead of interleaving resets. */
  render(read: () => Promise<StatusSnapshot>): Promise<{ contentType: string; body: string }>;
}

const ROW_STATES = [
  "pending",
  "processing",
  "completed",
  "failed",
  "dead_letter",
  "parked",
  "untracked",
] as const;

export function createMetrics(options: { processMetrics?: boolean; prefix?: string } = {}): Metrics {
  const registry = new Registry();
  const p = options.prefix ?? "embeddings_";
  const registers = [registry];
  const g = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Gauge<L>({ name: `${p}${name}`, help, labelNames, registers });

  const up = g("status_up", "1 when the last status read from the database succeeded", []);
  const scrapeSeconds = g("status_read_seconds", "Time taken to read the status from the database", []);
  const statusErrors = new Counter({
    name: `${p}status_read_errors_total`,
    help: "Status reads that failed",
    registers,
  });
  const health = g("health_level", "Service health: 0 healthy, 1 warning, 2 critical", []);

  const rows = g("target_rows", "Rows in the source table", ["target"]);
  const embedded = g("target_rows_embedded", "Source rows whose embedding column is set", ["target"]);
  const coverage = g("target_coverage_ratio", "Embedded rows / rows (0..1)", ["target"]);
  const items = g("target_items", "Tracked rows by state (untracked: rows no backfill has seen yet)", [
    "target",
    "state",
  ]);
  const mismatch = g(
    "target_completed_but_null_rows",
    "Rows marked completed whose embedding column is NULL",
    ["target"],
  );
  const rate = g("target_rate_rows_per_minute", "Rows embedded per minute over the rate window", ["target"]);
  const eta = g("target_eta_seconds", "Estimated seconds until no work is left (absent when unknown)", [
    "target",
  ]);
  const idle = g("target_idle_seconds", "Seconds due work has waited with no row embedded", ["target"]);
  const tokens = g("target_tokens", "Tokens of the embeddings currently stored", ["target"]);
  const cost = g("target_estimated_cost_usd", "Estimated cost of the stored embeddings in USD", ["target"]);
  const targetHealth = g("target_health_level", "Target health: 0 healthy, 1 warning, 2 critical", [
    "target",
  ]);

  const chunks = g(
    "target_chunks",
    "Chunked targets: chunks by state (stored: in the chunk table; the others: being embedded)",
    ["target", "state"],
  );
  const batchLimit = g(
    "target_batch_limit",
    "The batch size a statement timeout or a too-large request taught the target (absent: no cap)",
    ["target"],
  );

  const jobLabels = ["target", "job_id", "kind"] as const;
  const jobTotal = g("job_items_total", "Rows a running job has to handle", jobLabels);
  const jobDone = g(
    "job_items_done",
    "Rows a running job has handled (embedded, failed or unchanged)",
    jobLabels,
  );
  const jobFailed = g("job_items_failed", "Rows a running job could not embed", jobLabels);
  const jobTokens = g("job_tokens", "Tokens a running job has used", jobLabels);
  const jobEta = g("job_eta_seconds", "Estimated seconds until a running job finishes", jobLabels);

  const batchRows = new Counter({
    name: `${p}http_batch_rows_total`,
    help: "Rows handled by POST /batch in this process",
    labelNames: ["target", "result"] as const,
    registers,
  });
  const batches = new Counter({
    name: `${p}http_batches_total`,
    help: "Batches run by POST /batch in this process",
    labelNames: ["target", "outcome"] as const,
    registers,
  });

  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: p });

  const snapshotGauges = [
    health,
    rows,
    embedded,
    coverage,
    items,
    mismatch,
    rate,
    eta,
    idle,
    tokens,
    cost,
    targetHealth,
    chunks,
    batchLimit,
    jobTotal,
    jobDone,
    jobFailed,
    jobTokens,
    jobEta,
  ];

  function update(s: StatusSnapshot): void {
    for (const m of snapshotGauges) m.reset();
    up.set(1);
    health.set(levelRank(s.health.level));
    for (const t of s.targets) {
      const l = { target: t.target };
      rows.set(l, t.total);
      embedded.set(l, t.embedded);
      coverage.set(l, t.coverage / 100);
      for (const state of ROW_STATES) {
        const v = {
          pending: t.pending,
          processing: t.processing,
          completed: t.completed,
          failed: t.failed,
          dead_letter: t.deadLetter,
          parked: t.parked ?? 0,
          untracked: t.untracked,
        }[state];
        items.set({ target: t.target, state }, v);
      }
      mismatch.set(l, t.completedButNull);
      rate.set(l, t.rate.perMinute);
      if (t.etaSeconds !== null) eta.set(l, t.etaSeconds);
      idle.set(l, t.idleSeconds);
      tokens.set(l, t.tokens);
      cost.set(l, t.estimatedCostUsd);
      targetHealth.set(l, levelRank(t.health.level));
      if (t.chunks) {
        const c = t.chunks;
        for (const [state, v] of [
          ["stored", c.stored],
          ["pending", c.pending],
          ["processing", c.processing],
          ["embedded", c.embedded],
          ["dead_letter", c.deadLetter],
        ] as const)
          chunks.set({ target: t.target, state }, v);
      }
      if (t.batchLimit) batchLimit.set(l, t.batchLimit);
      for (const j of t.jobs) {
        if (j.status !== "running") continue;
        const jl = { target: t.target, job_id: j.id, kind: j.kind };
        jobTotal.set(jl, j.itemsTotal);
        jobDone.set(jl, j.done);
        jobFailed.set(jl, j.itemsFailed);
        jobTokens.set(jl, j.tokens);
        if (j.etaSeconds !== null) jobEta.set(jl, j.etaSeconds);
      }
    }
  }

  function statusFailed(): void {
    for (const m of snapshotGauges) m.reset();
    up.set(0);
    statusErrors.inc();
  }

  let chain: Promise<unknown> = Promise.resolve();
  function render(read: () => Promise<StatusSnapshot>) {
    const run = async () => {
      const started = performance.now();
      try {
        update(await read());
      } catch {
        statusFailed();
      }
      scrapeSeconds.set((performance.now() - started) / 1000);
      return { contentType: registry.contentType, body: await registry.metrics() };
    };
    const result = chain.then(run, run);
    chain = result.catch(() => undefined);
    return result;
  }

  return { registry, update, statusFailed, batchRows, batches, render };
}
