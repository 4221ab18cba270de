/// <reference lib="dom" />
import { chart } from "./charts.js";
import { el } from "./dom.js";
import { num, usd } from "./format.js";
import { backlog, costPerDay, failureRate, RANGES, type Range, rateLimitRate, throughput } from "./series.js";
import type { TargetHistory, TargetView } from "./types.js";

/** A target's charts: throughput, rows left, failure and 429 rates over a chosen range; cost per day. */

export interface TargetHistories {
  range: TargetHistory;
  cost: TargetHistory;
}
export type RangeAction = (target: string, range: string) => void;

const stepLabel = (r: Range) => (r.stepMinutes === 1 ? "minute" : r.step === "6h" ? "6 hours" : r.step);
const percent = (n: number) => `${Math.round(n * 10) / 10}%`;

export function chartsSection(
  t: TargetView,
  h: TargetHistories | undefined,
  end: string,
  range: Range,
  choose: RangeAction,
): HTMLElement {
  const switcher = el(
    "div",
    { class: "ranges", role: "group", "aria-label": "Chart range" },
    RANGES.map((r) => {
      const b = el("button", {
        type: "button",
        class: r.key === range.key ? "range active" : "range",
        "data-range": r.key,
        "aria-pressed": String(r.key === range.key),
        text: r.label,
      });
      b.addEventListener("click", () => choose(t.target, r.key));
      return b;
    }),
  );
  if (!h)
    return el("div", { class: "history" }, [
      el("h3", { text: "History" }),
      switcher,
      el("p", {
        class: "muted",
        text: "History unavailable (GET /history failed); retried at the next refresh.",
      }),
    ]);
  const per = stepLabel(range);
  const charts = [
    chart({
      name: "throughput",
      title: "Throughput",
      unit: `rows embedded per ${per}`,
      kind: "bar",
      stepMinutes: range.stepMinutes,
      series: [{ name: "embedded", label: "rows embedded", points: throughput(h.range, end) }],
      format: num,
      // The running job's rows against its start: how long it has been going, at what pace.
      markers: t.jobs
        .filter((j) => j.status === "running" && j.startedAt)
        .map((j) => ({ at: j.startedAt!, label: `${j.kind} started` })),
    }),
    chart({
      name: "backlog",
      title: "Rows left",
      unit: "pending + processing + waiting to retry",
      kind: "line",
      stepMinutes: range.stepMinutes,
      series: [{ name: "backlog", label: "rows left", points: backlog(h.range, end, t.remaining) }],
      format: num,
      note: "Reconstructed from throughput: the rows left now plus the rows embedded or dead-lettered since; ignores rows queued meanwhile.",
    }),
    chart({
      name: "rates",
      title: "Failure and 429 rate",
      unit: `% per ${per}`,
      kind: "line",
      stepMinutes: range.stepMinutes,
      series: [
        { name: "failure", label: "failed rows / rows attempted", points: failureRate(h.range, end) },
        { name: "rate-limited", label: "429s / provider calls", points: rateLimitRate(h.range, end) },
      ],
      format: percent,
    }),
    chart({
      name: "cost",
      title: "Cost per day",
      unit:
        t.pricePerMillion === null || t.pricePerMillion === undefined
          ? "price of this model unknown (EMBEDDINGS_PRICES)"
          : `USD, tokens × $${t.pricePerMillion} per 1M (list price)`,
      kind: "bar",
      stepMinutes: 1440,
      series: [{ name: "cost", label: "USD", points: costPerDay(h.cost, end, t.pricePerMillion ?? null) }],
      format: usd,
    }),
  ];
  return el("div", { class: "history" }, [
    el("h3", { text: "History" }),
    switcher,
    el("div", { class: "charts" }, charts),
  ]);
}
