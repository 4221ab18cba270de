import type { TargetStatus } from "../lib/store.js";

export function bar(percent: number, width = 30): string {
  const filled = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}]`;
}

export function formatStatus(statuses: TargetStatus[]): string {
  if (statuses.length === 0)
    return "No targets registered. Add one with: embeddings targets add <name> --table ... (see --help)";
  const lines: string[] = [];
  for (const s of statuses) {
    lines.push(`${s.target}  ${s.table}  ${s.provider}/${s.model} (${s.dimensions} dims)`);
    lines.push(`  coverage  ${bar(s.coverage)} ${s.coverage}%  (${s.embedded} of ${s.total} rows embedded)`);
    lines.push(
      `  rows      pending ${s.pending}  processing ${s.processing}  completed ${s.completed}  failed ${s.failed}  dead_letter ${s.deadLetter}  untracked ${s.untracked}`,
    );
    if (s.completedButNull > 0) {
      lines.push(
        `  WARNING   ${s.completedButNull} rows are marked completed but their embedding is NULL (run: embeddings retry ${s.target} --completed)`,
      );
    }
    for (const j of s.jobs.slice(0, 3)) {
      const done = j.itemsProcessed + j.itemsFailed + j.itemsSkipped;
      lines.push(
        `  job ${j.id.slice(0, 8)}  ${j.kind.padEnd(8)} ${j.status.padEnd(9)} ${done}/${j.itemsTotal}  failed ${j.itemsFailed}  tokens ${j.tokens}${j.lastError ? `  error: ${j.lastError}` : ""}`,
      );
    }
  }
  return lines.join("\n");
}
