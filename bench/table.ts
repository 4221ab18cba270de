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
  /** Of the raw-database ceiling measured at the same row count in this run. */
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
  inngest: { callsPer1000Rows: number; overheadMsPerStep: number; meanMsPerCall: number } | null;
}

export function summarise(m: Measured, all: readonly Measured[]): Summary {
  const { scenario, result, provider } = m;
  const rowsPerSec = (scenario.rows / result.elapsedMs) * 1000;
  const ceiling = all.find((o) => o.scenario.group === "ceiling" && o.scenario.rows === scenario.rows);
  const ceilingRate = ceiling ? (ceiling.scenario.rows / ceiling.result.elapsedMs) * 1000 : null;
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
  const inngest = result.inngest
    ? {
        callsPer1000Rows: (1000 * result.inngest.calls) / scenario.rows,
        overheadMsPerStep: result.inngest.overheadMsPerCall,
        meanMsPerCall: result.inngest.totalMs / Math.max(result.inngest.calls, 1),
      }
    : null;
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
  inngest: "Inngest path (executor harness)",
  chunks: "chunk mode, 0 ms provider",
  "chunk-timeout": "chunk swap, one INSERT of N rows",
};

function pad(cells: string[], widths: number[]): string {
  return `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
}

export const fmt = (n: number | null, digits = 0) =>
  n === null || !Number.isFinite(n) ? "" : n.toFixed(digits);
const rowsLabel = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : `${n / 1000}k`);

export function printTable(measured: readonly Measured[]): string {
  if (measured.length === 0) return "";
  const header = [
    "what",
    "rows",
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
      notes = `${s.inngest.callsPer1000Rows.toFixed(1)} HTTP calls/1k rows, ${s.inngest.overheadMsPerStep.toFixed(1)} ms overhead/step`;
    } else if (scenario.group === "ceiling") {
      notes = `COPY ${fmt(m.result.ceiling?.copyMs ?? 0)} ms + UPDATE ${fmt(m.result.ceiling?.updateMs ?? 0)} ms`;
    } else if (scenario.group === "limited") {
      notes = `limit allows ${fmt(s.allowedRowsPerSec)} rows/s`;
    } else if (s.msPerBatch.write !== undefined) {
      notes = `claim ${fmt(s.msPerBatch.claim ?? 0, 1)} / embed ${fmt(s.msPerBatch.provider ?? 0, 1)} / write ${fmt(s.msPerBatch.write, 1)} ms per batch`;
    }
    return [
      GROUP_TITLE[scenario.group],
      rowsLabel(scenario.rows),
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
