/// <reference lib="dom" />
import { bar, el, figure, reasonsList } from "./dom.js";
import { duration, num, usd, when } from "./format.js";
import type { DeadLetter, RemoteBatchView, TargetView } from "./types.js";

/** One card per target: coverage, figures, health reasons, running jobs and dead letters. */

export type RetryAction = (target: string, ids: string[] | null, button: HTMLButtonElement) => void;

export function jobsTable(t: TargetView): HTMLElement {
  const running = t.jobs.filter((j) => j.status === "running" || j.status === "pending");
  if (running.length === 0) {
    const latest = t.jobs[0];
    return el("p", {
      class: "muted",
      text: `No job running. Latest: ${latest ? `${latest.kind} ${latest.status} ${when(latest.finishedAt || latest.createdAt)}` : "none"}`,
    });
  }
  const head = ["Job", "Kind", "Status", "Progress", "Rows", "Failed", "Rate", "ETA", "Tokens", "Est. cost"];
  return el("table", { class: "jobs" }, [
    el(
      "tr",
      null,
      head.map((h) => el("th", { text: h })),
    ),
    ...running.map((j) =>
      el("tr", { "data-job": j.id }, [
        el("td", { text: j.id.slice(0, 8), title: j.id }),
        el("td", { text: j.kind }),
        el("td", { text: j.status }),
        el("td", { class: "progress" }, [bar(j.percent, "job"), el("span", { text: `${j.percent}%` })]),
        el("td", { text: `${num(j.done)} / ${num(j.itemsTotal)}` }),
        el("td", { text: num(j.itemsFailed) }),
        el("td", {
          text: j.averagePerMinute === null ? "-" : `${num(Math.round(j.averagePerMinute))} rows/min`,
        }),
        el("td", { class: "eta", text: duration(j.etaSeconds) }),
        el("td", { text: num(j.tokens) }),
        el("td", { text: usd(j.estimatedCostUsd) }),
      ]),
    ),
  ]);
}

/** The Batch API route's remote batches: state, counts, age. */
export function remoteBatchesTable(batches: RemoteBatchView[]): HTMLElement | null {
  if (batches.length === 0) return null;
  const head = ["Batch", "State", "Rows", "Done at provider", "Failed", "Written", "Returned", "Age"];
  return el("div", null, [
    el("h3", { text: "Remote batches (Batch API)" }),
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

export function deadLetterSection(
  t: TargetView,
  dead: { items: DeadLetter[] } | undefined,
  retry: RetryAction,
): HTMLElement {
  const items = dead ? dead.items : [];
  const head = el("h3", { text: `Dead letters (${num(t.deadLetter)})` });
  if (t.deadLetter === 0) return el("div", null, [head, el("p", { class: "muted", text: "None." })]);
  const all = el("button", {
    class: "retry-all",
    type: "button",
    text: "Retry all dead letters",
  }) as HTMLButtonElement;
  all.addEventListener("click", () => retry(t.target, null, all));
  const rows = items.map((d) => {
    const b = el("button", {
      class: "retry",
      type: "button",
      "data-id": d.id,
      text: "Retry",
    }) as HTMLButtonElement;
    b.addEventListener("click", () => retry(t.target, [d.id], b));
    return el("tr", { "data-row": d.id }, [
      el("td", { text: d.id }),
      el("td", { class: "error", text: d.error || "(no message)" }),
      el("td", { text: d.errorKind || "-" }),
      el("td", { text: String(d.attempts) }),
      el("td", { text: when(d.updatedAt) }),
      el("td", null, [b]),
    ]);
  });
  const header = ["Row id", "Error", "Kind", "Attempts", "Failed at", ""].map((h) => el("th", { text: h }));
  return el("div", { class: "dead-letters" }, [
    head,
    all,
    el("table", null, [el("tr", null, header), ...rows]),
    items.length < t.deadLetter
      ? el("p", { class: "muted", text: `Showing the latest ${items.length}.` })
      : null,
  ]);
}

export function targetCard(
  t: TargetView,
  dead: { items: DeadLetter[] } | undefined,
  retry: RetryAction,
): HTMLElement {
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
    el("h3", { text: "Running jobs" }),
    jobsTable(t),
    remoteBatchesTable(t.remoteBatches ?? []),
    deadLetterSection(t, dead, retry),
  ]);
}
