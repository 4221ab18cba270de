/// <reference lib="dom" />
import { bar, el } from "./dom.js";
import { clock, duration, elapsed, num, usd, when } from "./format.js";
import type { JobView, TargetView } from "./types.js";

/** The running jobs (progress against their start, ETA) and the latest jobs' history. */

const table = (cls: string, head: string[], rows: HTMLElement[]) =>
  el("div", { class: "scroll" }, [
    el("table", { class: cls }, [
      el(
        "tr",
        null,
        head.map((h) => el("th", { text: h })),
      ),
      ...rows,
    ]),
  ]);

export function jobsTable(t: TargetView): HTMLElement {
  const running = t.jobs.filter((j) => j.status === "running" || j.status === "pending");
  if (running.length === 0) {
    const latest = t.jobs[0];
    return el("p", {
      class: "muted",
      text: `No job running. Latest: ${latest ? `${latest.kind} ${latest.status} ${when(latest.finishedAt || latest.createdAt)}` : "none"}`,
    });
  }
  const head = [
    "Job",
    "Kind",
    "Status",
    "Progress",
    "Rows",
    "Failed",
    "Rate",
    "Started",
    "ETA",
    "Tokens",
    "Est. cost",
  ];
  return table(
    "jobs",
    head,
    running.map((j) =>
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
        // The bar runs from the job's start: how long it has taken so far, next to how long is left.
        el("td", {
          class: "started",
          text: j.startedAt ? `${clock(j.startedAt)} (${elapsed(j.elapsedSeconds)} ago)` : "not yet",
        }),
        el("td", { class: "eta-cell" }, [
          el("span", { class: "eta", text: duration(j.etaSeconds) }),
          j.etaAt ? el("small", { class: "eta-at", text: ` at ${clock(j.etaAt)}` }) : null,
        ]),
        el("td", { text: num(j.tokens) }),
        el("td", { text: usd(j.estimatedCostUsd) }),
      ]),
    ),
  );
}

/** What requested a job: the Inngest event behind it, else a run started without one. */
function trigger(j: JobView): string {
  const via = j.options?.via === "batch" ? " · Batch API" : "";
  return `${j.eventId ? `event ${j.eventId}` : j.kind === "run" ? "embeddings run (no event)" : "no event"}${via}`;
}

export function jobHistoryTable(t: TargetView): HTMLElement {
  if (t.jobs.length === 0) return el("p", { class: "muted", text: "No jobs yet." });
  const head = [
    "Job",
    "Kind",
    "Trigger",
    "Started",
    "Duration",
    "Rows",
    "Failed",
    "Tokens",
    "Cost",
    "Result",
    "Error",
  ];
  return table(
    "job-history",
    head,
    t.jobs.map((j) =>
      el("tr", { "data-job-history": j.id }, [
        el("td", { text: j.id.slice(0, 8), title: j.id }),
        el("td", { class: "kind", text: j.kind }),
        el("td", { class: "trigger", text: trigger(j) }),
        el("td", { text: when(j.startedAt || j.createdAt) }),
        el("td", { class: "duration", text: elapsed(j.elapsedSeconds) }),
        el("td", { class: "rows", text: num(j.itemsProcessed) }),
        el("td", { class: "failed", text: num(j.itemsFailed) }),
        el("td", { class: "tokens", text: num(j.tokens) }),
        el("td", { class: "cost", text: usd(j.estimatedCostUsd) }),
        el("td", { class: `result ${j.status}`, text: j.status }),
        el("td", { class: "error", text: j.lastError || "" }),
      ]),
    ),
  );
}
