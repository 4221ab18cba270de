import type { Command } from "commander";
import { InputError } from "../../lib/errors.js";
import { historyQuery } from "../../lib/ops/history.js";
import type { TargetHistory } from "../../lib/types.js";
import type { Cli } from "../io.js";

/** `history <target>`: what GET /history answers, as a table per step. */
export function registerHistory(program: Command, cli: Cli): void {
  program
    .command("history")
    .description(
      "per-step history of a target: rows embedded, failed, dead-lettered, tokens, requests, 429s, latency",
    )
    .argument("<target>")
    .option("--since <when>", "an ISO time or a duration back from now (30m, 24h, 7d)", "24h")
    .option("--step <step>", "1m, 5m, 1h, 1d or minutes", "1h")
    .option("--json", "machine-readable output")
    .action(async (target: string, o: { since: string; step: string; json?: boolean }) => {
      try {
        const q = historyQuery(new Date()).safeParse({ target, since: o.since, step: o.step });
        if (!q.success) {
          throw new InputError(
            q.error.issues.map((i) => `--${String(i.path[0] ?? "target")}: ${i.message}`).join("; "),
          );
        }
        const h = await cli.withContext((ctx) => ctx.store.history(q.data.target, q.data.since, q.data.step));
        cli.print(o.json === true, h, () => formatHistory(h));
      } catch (err) {
        cli.fail(err);
      }
    });
}

const COLUMNS = [
  "start",
  "embedded",
  "failed",
  "dead",
  "retried",
  "tokens",
  "requests",
  "429s",
  "latency ms",
];

export function formatHistory(h: TargetHistory): string {
  const head = `${h.target}: since ${new Date(h.since).toISOString()}, per ${h.stepMinutes} min`;
  if (h.buckets.length === 0) return `${head}\nno batches recorded in this window`;
  const rows = h.buckets.map((b) => [
    new Date(b.start).toISOString().slice(0, 16).replace("T", " "),
    ...[b.embedded, b.failed, b.deadLettered, b.retried, b.tokens, b.requests, b.rateLimited].map(String),
    b.latencyMsAvg === null ? "-" : String(Math.round(b.latencyMsAvg)),
  ]);
  const sum = (
    k: "embedded" | "failed" | "deadLettered" | "retried" | "tokens" | "requests" | "rateLimited",
  ) => String(h.buckets.reduce((s, b) => s + b[k], 0));
  rows.push([
    "total",
    sum("embedded"),
    sum("failed"),
    sum("deadLettered"),
    sum("retried"),
    sum("tokens"),
    sum("requests"),
    sum("rateLimited"),
    "",
  ]);
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [head, line(COLUMNS), ...rows.map(line)].join("\n");
}
