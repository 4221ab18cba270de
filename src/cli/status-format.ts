import type { StatusSnapshot } from "../lib/ops/status.js";

export function bar(percent: number, width = 30): string {
  const filled = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

/** Text for a status snapshot: what /status answers, for a terminal (`status`, `status --watch`). */

export function formatDuration(seconds: number | null): string {
  if (seconds === null) return "unknown (nothing embedded recently)";
  if (seconds <= 0) return "done";
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const m = Math.round(seconds / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.round(h / 24)} days`;
}

const usd = (n: number | null) => (n === null ? "-" : `$${n < 0.01 && n > 0 ? n.toFixed(6) : n.toFixed(2)}`);

/** `lastHour`: per target, the watch's throughput sparkline (rows embedded per step, last hour). */
export function formatSnapshot(s: StatusSnapshot, extra: { lastHour?: Record<string, string> } = {}): string {
  if (s.targets.length === 0) {
    return "No targets registered. Add one with: embeddings targets add <name> --table ... (see --help)";
  }
  const lines = [`health    ${s.health.level.toUpperCase()}`];
  for (const r of s.health.reasons)
    lines.push(`  ${r.level === "critical" ? "CRIT" : "WARN"}    ${r.message}`);
  for (const t of s.targets) {
    lines.push("");
    lines.push(
      `${t.target}  ${t.table}  ${t.provider}/${t.model} (${t.dimensions} dims)  [${t.health.level}]`,
    );
    if (t.error) lines.push(`  ERROR     cannot be read: ${t.error}`);
    lines.push(`  coverage  ${bar(t.coverage)} ${t.coverage}%  (${t.embedded} of ${t.total} rows embedded)`);
    const unit = t.chunks ? "documents" : "rows";
    lines.push(
      `  ${unit.padEnd(9)} pending ${t.pending}  processing ${t.processing}  waiting to retry ${t.failed}  dead_letter ${t.deadLetter}  untracked ${t.untracked}${t.parked ? `  parked ${t.parked} (a cancelled job's; a backfill resumes them)` : ""}`,
    );
    if (t.chunks) {
      const c = t.chunks;
      lines.push(
        `  chunks    ${c.stored} stored in ${c.table}  being embedded ${c.inProgress}: pending ${c.pending}  processing ${c.processing}  embedded ${c.embedded}  dead_letter ${c.deadLetter}  (up to ${c.tokens} tokens, overlap ${c.overlap})`,
      );
    }
    if (t.batchLimit) {
      lines.push(
        `  batch     capped at ${t.batchLimit} rows a batch${t.batchLimitReason ? ` (${t.batchLimitReason})` : ""}; it grows back after batches without a timeout`,
      );
    }
    lines.push(
      `  speed     ${t.rate.perMinute} rows/min over ${t.rate.windowMinutes} min  ETA ${t.remaining === 0 ? "done" : formatDuration(t.etaSeconds)}  remaining ${t.remaining}`,
    );
    const spark = extra.lastHour?.[t.target];
    if (spark !== undefined) lines.push(`  last hour ${spark}`);
    lines.push(
      `  cost      ${t.tokens} tokens  ~${usd(t.estimatedCostUsd)}  to finish ~${usd(t.estimatedRemainingCostUsd)}`,
    );
    if (t.completedButNull > 0) {
      lines.push(
        `  WARNING   ${t.completedButNull} rows are marked completed but their embedding is NULL (run: embeddings retry ${t.target} --completed)`,
      );
    }
    for (const b of t.remoteBatches ?? []) {
      lines.push(
        `  remote    batch ${b.batchId ?? `#${b.seq} (not submitted)`}  ${(b.remoteStatus ?? b.state).padEnd(11)} ${b.completed}/${b.items} done at the provider, failed ${b.failed}, written ${b.written}, returned ${b.returned}  age ${formatDuration(b.ageSeconds)}`,
      );
    }
    for (const j of t.jobs.slice(0, 3)) {
      const eta = j.status === "running" ? `  ETA ${formatDuration(j.etaSeconds)}` : "";
      lines.push(
        `  job ${j.id.slice(0, 8)}  ${j.kind.padEnd(8)} ${j.status.padEnd(9)} ${j.done}/${j.itemsTotal} (${j.percent}%)${j.chunksTotal ? `  chunks ${j.chunksEmbedded ?? 0}/${j.chunksTotal}` : ""}  failed ${j.itemsFailed}  tokens ${j.tokens}${eta}${j.lastError ? `  error: ${j.lastError}` : ""}`,
      );
      const e = j.estimate;
      if (e) {
        lines.push(
          `      estimate ${e.rows} rows, ${e.tokens}${e.exact ? "" : ` ± ${e.tokensErrorBound}`} tokens ~${usd(e.listUsd)}  actual ${j.itemsProcessed} rows, ${j.tokens} tokens ~${usd(j.estimatedCostUsd)}`,
        );
      }
    }
  }
  return lines.join("\n");
}
