import type { FakeOpenAIStats } from "../test/support/fake-openai.js";
import type { Scenario } from "./scenarios.js";
import type { WorkerResult } from "./worker.js";

/** One scenario as measured, and the one table the benchmark prints. */

export interface Measured {
  scenario: Scenario;
  result: WorkerResult;
  /** What the fake provider saw during the scenario. */
  provider: FakeOpenAIStats;
  /** For chunk mode: documents embedded, stored chunks of the wrong size, and the chunk table's rows. */
  check: { embedded: number; badDims: number; failedItems: number; stored?: number };
  loadMs: number;
  /**
   * CPU seconds during the run: the worker process, the PostgreSQL server (all its processes) and
   * the fake provider. Includes whatever setup the worker does before its clock starts (connecting,
   * registering the target), which is small.
   */
  cpu: { worker: number; postgres: number; provider: number };
  /** 1-minute load average when the scenario started: other work on this machine skews results. */
  loadBefore: number;
  /** pg_stat_activity samples of the scenario's sessions by state / wait event (bench/run.ts sampleWaits). */
  waits: Record<string, number>;
}

export interface Summary {
  id: string;
  rowsPerSec: number;
  /** Of the raw-database ceiling measured at the same row count and dimensions in this run. */
  pctOfCeiling: number | null;
  /** Rows the provider limit allows per second (limited scenarios). */
  allowedRowsPerSec: number | null;
  pctOfLimit: number | null;
  httpRequests: number;
  status429: number;
  pct429: number;
  /** Rows not embedded: not written, dead-lettered, or left in any state but completed. */
  failedRows: number;
  peakRssMb: number;
  msPerBatch: Record<string, number>;
  inngest: {
    /** Requests to the served app plus the SDK's checkpoint posts, per 1,000 rows. */
    httpCallsPer1000Rows: number;
    requestsPer1000Rows: number;
    checkpointsPer1000Rows: number;
    /** Wall ms per 1,000 rows with no database or provider call in flight (BusyClock). */
    overheadMsPer1000Rows: number;
    /** The same for the in-process row: the runner's own time, which the Inngest path has too. */
    inProcessOutsideMsPer1000Rows: number | null;
    /**
     * (Σ request ms − database ms − provider ms) per 1,000 rows: the same figure when requests run one
     * at a time; with several at once it counts a request's waits for the others' work too.
     */
    summedOverheadMsPer1000Rows: number;
    /** The same per request. */
    overheadMsPerRequest: number;
    meanMsPerCall: number;
    /** The in-process pipeline row of the same rows, dims, batch and parallelism in this run. */
    inProcessId: string | null;
    /** This row's time ÷ that row's time (2 = the Inngest path takes twice as long). */
    timeVsInProcess: number | null;
  } | null;
}

/** Rows per second of the whole run. */
const rate = (m: Measured) => (m.scenario.rows / m.result.elapsedMs) * 1000;

export function summarise(m: Measured, all: readonly Measured[]): Summary {
  const { scenario, result, provider } = m;
  const rowsPerSec = rate(m);
  const ceiling = all.find(
    (o) =>
      o.scenario.group === "ceiling" &&
      o.scenario.rows === scenario.rows &&
      o.scenario.dims === scenario.dims &&
      o.scenario.storage === scenario.storage,
  );
  const ceilingRate = ceiling ? rate(ceiling) : null;
  let allowedRowsPerSec: number | null = null;
  let pctOfLimit: number | null = null;
  if (scenario.rpm && scenario.tpm) {
    const ok = provider.byStatus[200] ?? 0;
    const rowsPerRequest = ok > 0 ? provider.inputs / ok : scenario.batchSize;
    const tokensPerRow = provider.inputs > 0 ? provider.tokens / provider.inputs : 1;
    allowedRowsPerSec = Math.min((scenario.rpm / 60) * rowsPerRequest, scenario.tpm / 60 / tokensPerRow);
    // The server also lets one burst window through at the start: count it as allowed too.
    const seconds = result.elapsedMs / 1000 + (scenario.burstMs ?? 0) / 1000;
    pctOfLimit = (100 * scenario.rows) / (allowedRowsPerSec * seconds);
  }
  const msPerBatch: Record<string, number> = {};
  for (const [fn, t] of Object.entries(result.db))
    msPerBatch[fn.replace(/^embedding_/, "")] = t.ms / Math.max(t.calls, 1);
  if (result.provider.calls > 0) msPerBatch.provider = result.provider.ms / result.provider.calls;
  let inngest: Summary["inngest"] = null;
  if (result.inngest) {
    const i = result.inngest;
    const inProcess = all.find(
      (o) =>
        o.scenario.group === "e2e" &&
        o.scenario.rows === scenario.rows &&
        o.scenario.dims === scenario.dims &&
        o.scenario.batchSize === scenario.batchSize &&
        o.scenario.parallelism === scenario.parallelism,
    );
    const per1k = (n: number) => (1000 * n) / scenario.rows;
    inngest = {
      httpCallsPer1000Rows: per1k(i.calls + i.checkpoints),
      requestsPer1000Rows: per1k(i.calls),
      checkpointsPer1000Rows: per1k(i.checkpoints),
      overheadMsPer1000Rows: per1k(result.outsideCallsMs ?? 0),
      inProcessOutsideMsPer1000Rows:
        inProcess?.result.outsideCallsMs === undefined ? null : per1k(inProcess.result.outsideCallsMs),
      summedOverheadMsPer1000Rows: per1k(i.overheadMsPerCall * i.calls),
      overheadMsPerRequest: i.overheadMsPerCall,
      meanMsPerCall: i.totalMs / Math.max(i.calls, 1),
      inProcessId: inProcess?.scenario.id ?? null,
      timeVsInProcess: inProcess ? result.elapsedMs / inProcess.result.elapsedMs : null,
    };
  }
  return {
    id: scenario.id,
    rowsPerSec,
    pctOfCeiling: ceilingRate && scenario.group !== "ceiling" ? (100 * rowsPerSec) / ceilingRate : null,
    allowedRowsPerSec,
    pctOfLimit,
    httpRequests: provider.requests,
    status429: provider.status429,
    pct429: provider.requests > 0 ? (100 * provider.status429) / provider.requests : 0,
    failedRows: scenario.rows - m.check.embedded + m.check.badDims + m.check.failedItems,
    peakRssMb: result.peakRssMb,
    msPerBatch,
    inngest,
  };
}

const GROUP_TITLE: Record<Scenario["group"], string> = {
  ceiling: "raw DB ceiling (binary COPY + UPDATE join)",
  seeds: "seeds' way (UPDATE per row, 50/call)",
  before: "pipeline before issue 6, 0 ms",
  e2e: "pipeline, 0 ms provider",
  limited: "pipeline, 300 ms, 3k RPM / 1M TPM",
  inngest: "Inngest path (harness, checkpointing)",
  cli: "`embeddings run` (CLI process), 0 ms",
  chunks: "chunk mode, 0 ms provider",
  "chunk-timeout": "chunk swap, one INSERT of N rows",
};

function pad(cells: string[], widths: number[]): string {
  return `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
}

/** Mean ms of the batch's vector write, whatever the SQL API names it (embedding_write, embedding_write_counted). */
const writeMs = (s: Summary) => s.msPerBatch.write ?? s.msPerBatch.write_counted;

export const fmt = (n: number | null, digits = 0) =>
  n === null || !Number.isFinite(n) ? "" : n.toFixed(digits);
const rowsLabel = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`);

export function printTable(measured: readonly Measured[]): string {
  if (measured.length === 0) return "";
  const header = [
    "what",
    "rows",
    "dims",
    "batch",
    "par",
    "seconds",
    "rows/s",
    "% ceiling",
    "% of limit",
    "HTTP req",
    "429s",
    "failed",
    "peak RSS MB",
    "CPU µs/row worker/pg/fake",
    "notes",
  ];
  const body = measured.map((m) => {
    const s = summarise(m, measured);
    const { scenario } = m;
    let notes = "";
    if (s.inngest) {
      const i = s.inngest;
      notes =
        `${fmt(i.httpCallsPer1000Rows, 1)} HTTP calls/1k rows (${fmt(i.requestsPer1000Rows, 1)} requests + ${fmt(i.checkpointsPer1000Rows, 1)} checkpoints), ` +
        `overhead ${fmt(i.overheadMsPer1000Rows)} ms/1k rows` +
        (i.inProcessOutsideMsPer1000Rows === null
          ? ""
          : ` (in-process ${fmt(i.inProcessOutsideMsPer1000Rows)})`) +
        (i.timeVsInProcess === null ? "" : `, ${fmt(i.timeVsInProcess, 2)}× the time of ${i.inProcessId}`);
    } else if (m.result.cli) {
      notes = `job ${fmt(m.result.cli.jobMs / 1000, 1)} s of ${fmt(m.result.cli.wallMs / 1000, 1)} s process start to exit`;
    } else if (scenario.group === "ceiling") {
      notes = `COPY ${fmt(m.result.ceiling?.copyMs ?? 0)} ms + UPDATE ${fmt(m.result.ceiling?.updateMs ?? 0)} ms`;
    } else if (scenario.group === "limited") {
      notes = `limit allows ${fmt(s.allowedRowsPerSec)} rows/s`;
    } else if (writeMs(s) !== undefined) {
      notes = `claim ${fmt(s.msPerBatch.claim ?? 0, 1)} / embed ${fmt(s.msPerBatch.provider ?? 0, 1)} / write ${fmt(writeMs(s)!, 1)} ms per batch`;
    }
    return [
      GROUP_TITLE[scenario.group] + (scenario.storage === "external" ? ", column STORAGE EXTERNAL" : ""),
      rowsLabel(scenario.rows),
      String(scenario.dims),
      scenario.group === "ceiling" ? `${scenario.ceilingChunk}` : String(scenario.batchSize),
      String(scenario.parallelism),
      fmt(m.result.elapsedMs / 1000, 1),
      fmt(s.rowsPerSec),
      fmt(s.pctOfCeiling),
      fmt(s.pctOfLimit),
      scenario.group === "ceiling" ? "" : String(s.httpRequests),
      scenario.group === "ceiling" ? "" : `${s.status429} (${s.pct429.toFixed(1)}%)`,
      String(s.failedRows),
      fmt(s.peakRssMb),
      [m.cpu.worker, m.cpu.postgres, m.cpu.provider].map((c) => fmt((c * 1e6) / scenario.rows)).join(" / "),
      notes,
    ];
  });
  return markdownTable(header, body);
}

/** A markdown table, the first two columns left-aligned, the others right-aligned. */
export function markdownTable(header: string[], body: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const sep = `|${widths.map((w, i) => (i < 2 ? `:${"-".repeat(w + 1)}` : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [pad(header, widths), sep, ...body.map((r) => pad(r, widths))].join("\n");
}
