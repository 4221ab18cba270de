/// <reference lib="dom" />
import { type ClassAction, deadLetterSection, type RetryAction } from "./dead-letters.js";
import { bar, el, figure, reasonsList } from "./dom.js";
import { duration, num, usd, when } from "./format.js";
import { chartsSection, type RangeAction, type TargetHistories } from "./history-view.js";
import { jobHistoryTable, jobsTable } from "./jobs.js";
import type { Range } from "./series.js";
import type { DeadLetter, RemoteBatchView, TargetView } from "./types.js";

/**
 * One card per target: coverage, figures, health reasons, charts, running jobs, job history and
 * dead letters.
 */

/** What a card shows besides the status: its history, the range and class chosen, the actions. */
export interface CardContext {
  dead: { items: DeadLetter[] } | undefined;
  history: TargetHistories | undefined;
  /** The status snapshot's database time: the charts' right edge. */
  end: string;
  range: Range;
  errorClass: string | null;
  retry: RetryAction;
  chooseRange: RangeAction;
  chooseClass: ClassAction;
}

/** The Batch API route's remote batches: state, counts, age. */
export function remoteBatchesTable(batches: RemoteBatchView[]): HTMLElement | null {
  if (batches.length === 0) return null;
  const head = ["Batch", "State", "Rows", "Done at provider", "Failed", "Written", "Returned", "Age"];
  return el("div", null, [
    el("h3", { text: "Remote batches (Batch API)" }),
    el("div", { class: "scroll" }, [
      el("table", { class: "remote" }, [
        el(
          "tr",
          null,
          head.map((h) => el("th", { text: h })),
        ),
        ...batches.map((b) =>
          el("tr", { "data-remote": b.id }, [
            el("td", { text: b.batchId ?? `#${b.seq}`, title: b.id }),
            el("td", { class: "state", text: b.remoteStatus ?? b.state }),
            el("td", { text: num(b.items) }),
            el("td", { text: num(b.completed) }),
            el("td", { text: num(b.failed) }),
            el("td", { text: num(b.written) }),
            el("td", { text: num(b.returned) }),
            el("td", { text: duration(b.ageSeconds) }),
          ]),
        ),
      ]),
    ]),
  ]);
}

/** Documents and chunks of a chunked target. */
function chunkFigures(c: NonNullable<TargetView["chunks"]>): HTMLElement {
  return el("dl", { class: "figures chunks" }, [
    figure(
      "Documents embedded",
      `${num(c.documents.embedded)} of ${num(c.documents.total)}`,
      "documents-embedded",
    ),
    figure("Documents in progress", num(c.documents.inProgress), "documents-in-progress"),
    figure("Documents failed", num(c.documents.failed), "documents-failed"),
    figure(`Chunks stored (${c.table})`, num(c.stored), "chunks-stored"),
    figure("Chunks pending", num(c.pending + c.processing), "chunks-pending"),
    figure("Chunks embedded, awaiting swap", num(c.embedded), "chunks-embedded"),
    figure("Chunk dead letters", num(c.deadLetter), "chunks-dead-letter"),
  ]);
}

export function targetCard(t: TargetView, c: CardContext): HTMLElement {
  const eta = t.remaining === 0 ? "done" : duration(t.etaSeconds);
  return el("article", { class: "target", "data-target": t.target }, [
    el("h2", null, [
      t.target,
      el("small", { text: `${t.table} · ${t.provider}/${t.model} · ${t.dimensions} dims` }),
      el("span", { class: `badge ${t.health.level}`, text: t.health.level }),
    ]),
    bar(t.coverage),
    el("p", {
      class: "coverage",
      text: `${t.coverage}% embedded (${num(t.embedded)} of ${num(t.total)} ${t.chunks ? "documents" : "rows"})`,
    }),
    t.chunks ? chunkFigures(t.chunks) : null,
    el("dl", { class: "figures" }, [
      figure("Pending", num(t.pending), "pending"),
      figure("Processing", num(t.processing), "processing"),
      figure("Waiting to retry", num(t.failed), "failed"),
      figure("Dead letters", num(t.deadLetter), "dead-letter"),
      figure("Not yet seen", num(t.untracked), "untracked"),
      figure("Parked (cancelled job)", num(t.parked ?? 0), "parked"),
      figure("Completed but NULL", num(t.completedButNull), "completed-but-null"),
      t.batchLimit ? figure("Batch size capped at", num(t.batchLimit), "batch-limit") : null,
      figure(`Rate (${t.rate.windowMinutes} min)`, `${num(Math.round(t.rate.perMinute))} rows/min`, "rate"),
      figure("ETA", eta, "eta"),
      figure("Last embedded", when(t.lastEmbeddedAt), "last-embedded"),
      figure("Tokens", num(t.tokens), "tokens"),
      figure("Est. cost", usd(t.estimatedCostUsd), "cost"),
      figure("Est. cost to finish", usd(t.estimatedRemainingCostUsd), "remaining-cost"),
    ]),
    t.health.reasons.length ? reasonsList(t.health.reasons) : null,
    chartsSection(t, c.history, c.end, c.range, c.chooseRange),
    el("h3", { text: "Running jobs" }),
    jobsTable(t),
    remoteBatchesTable(t.remoteBatches ?? []),
    el("h3", { text: "Job history" }),
    jobHistoryTable(t),
    deadLetterSection(t, c.dead, c.errorClass, c.retry, c.chooseClass),
  ]);
}
