import { TIMEOUTS_MS } from "./chunk-timeout.js";
import { fmt, type Measured, markdownTable } from "./table.js";

/**
 * The chunk scenarios' tables: chunk mode end to end (per document and per chunk), and one swap
 * statement's time by its number of chunk rows, with the smallest that a statement_timeout cuts.
 */

const perCall = (m: Measured, fn: string) => {
  const t = m.result.db[fn];
  return t && t.calls > 0 ? t.ms / t.calls : null;
};

function pipelineTable(measured: readonly Measured[]): string {
  const header = [
    "what",
    "documents",
    "chunks",
    "batch",
    "par",
    "seconds",
    "chunks/s",
    "docs/s",
    "HTTP req",
    "failed",
    "peak RSS MB",
    "CPU µs/chunk worker/pg/fake",
    "notes",
  ];
  const body = measured.map((m) => {
    const { scenario, result, check } = m;
    const chunks = check.stored ?? 0;
    const seconds = result.elapsedMs / 1000;
    const swap = ["embedding_chunk_swap_begin", "embedding_chunk_swap_part", "embedding_chunk_swap_end"]
      .map((fn) => result.db[fn]?.ms ?? 0)
      .reduce((a, b) => a + b, 0);
    const embed = result.provider.calls > 0 ? result.provider.ms / result.provider.calls : null;
    return [
      "chunk mode, 0 ms provider, 1536 dims",
      String(scenario.rows),
      String(chunks),
      String(scenario.batchSize),
      String(scenario.parallelism),
      fmt(seconds, 1),
      fmt(chunks / seconds),
      fmt(scenario.rows / seconds, 1),
      String(m.provider.requests),
      String(scenario.rows - check.embedded + check.badDims + check.failedItems),
      fmt(result.peakRssMb),
      [m.cpu.worker, m.cpu.postgres, m.cpu.provider]
        .map((c) => fmt((c * 1e6) / Math.max(chunks, 1)))
        .join(" / "),
      `claim ${fmt(perCall(m, "embedding_chunk_claim"), 1)} / plan ${fmt(perCall(m, "embedding_chunk_plan"), 1)} / ` +
        `embed ${fmt(embed, 1)} / write ${fmt(perCall(m, "embedding_chunk_write"), 1)} ms per call; ` +
        `swap ${fmt(swap / Math.max(scenario.rows, 1), 1)} ms per document`,
    ];
  });
  return markdownTable(header, body);
}

function timeoutTable(m: Measured): string {
  const t = m.result.timeout;
  if (!t) return "";
  const header = [
    "chunk rows in one INSERT",
    "dims",
    "ms",
    "µs per row",
    "whole swap ms",
    ...TIMEOUTS_MS.map((ms) => `> ${ms / 1000} s`),
  ];
  const body = t.pieces.map((p) => [
    String(p.chunks),
    String(t.dimensions),
    fmt(p.ms),
    fmt((p.ms * 1000) / p.chunks),
    fmt(p.swapMs),
    ...TIMEOUTS_MS.map((ms) => (p.ms > ms ? "yes" : "")),
  ]);
  const verdict = TIMEOUTS_MS.map((ms) => {
    const n = t.firstOver[String(ms)];
    return `${ms / 1000} s: ${n === null ? `not reached up to ${t.largestTried}` : `from ${n} chunk rows`}`;
  }).join("; ");
  const lines = [
    markdownTable(header, body),
    "",
    `Statement timeout (embedding_chunk_swap_part, ~${fmt(t.meanContentChars)}-character chunks): ${verdict}.`,
  ];
  const a = t.adaptive;
  if (a) {
    const cuts = Object.entries(a.cancelled)
      .map(([k, n]) => `${k} ×${n}`)
      .join(", ");
    lines.push(
      "",
      `Adaptive: batch ${a.batchSize}, statement_timeout ${a.statementTimeoutMs} ms: ` +
        `job ${a.status}${a.error ? ` (${a.error})` : ""} in ${fmt(a.seconds, 1)} s, ` +
        `${a.storedChunks} chunks of the long document stored; cancelled calls: ${cuts || "none"}; ` +
        `batch_limit ${a.batchLimit ?? "null"}${a.batchLimitReason ? ` ("${a.batchLimitReason}")` : ""}.`,
    );
  }
  return lines.join("\n");
}

export function printChunkTables(measured: readonly Measured[]): string {
  const pipeline = measured.filter((m) => m.scenario.group === "chunks");
  const timeouts = measured.filter((m) => m.scenario.group === "chunk-timeout");
  return [pipeline.length > 0 ? pipelineTable(pipeline) : "", ...timeouts.map(timeoutTable)]
    .filter((s) => s.length > 0)
    .join("\n\n");
}
