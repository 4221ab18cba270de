/// <reference lib="dom" />
import { el } from "./dom.js";
import { num, when } from "./format.js";
import type { DeadLetter, TargetView } from "./types.js";

/**
 * Dead letters grouped by error class, filterable, with a retry per row, per class and for all.
 * A class is the error kind (transient / permanent) and the message's class: a SQLSTATE or HTTP
 * status when the message names one, else its words before the first colon (or its first three
 * words), digits masked, so "timeout after 30000 ms" and "timeout after 31000 ms" are one class.
 */

export type RetryAction = (target: string, ids: string[] | null, button: HTMLButtonElement) => void;
export type ClassAction = (target: string, errorClass: string | null) => void;

export function messageClass(message: string | null): string {
  if (!message) return "(no message)";
  const sqlstate = /\b(?:SQLSTATE|code)[\s:=]*([0-9A-Z]{5})\b/.exec(message);
  if (sqlstate) return `SQLSTATE ${sqlstate[1]}`;
  const http = /\b(?:HTTP|status)[\s:]*([1-5]\d\d)\b/i.exec(message);
  if (http) return `HTTP ${http[1]}`;
  const head = message.split(":")[0]!.trim();
  const words = (head.length > 0 && head.length <= 40 ? head : message).split(/\s+/).slice(0, 3).join(" ");
  return words.replace(/\d+/g, "#").toLowerCase();
}

export const errorClass = (d: DeadLetter) => `${d.errorKind || "unknown"} · ${messageClass(d.error)}`;

export function deadLetterSection(
  t: TargetView,
  dead: { items: DeadLetter[] } | undefined,
  selected: string | null,
  retry: RetryAction,
  choose: ClassAction,
): HTMLElement {
  const items = dead ? dead.items : [];
  const head = el("h3", { text: `Dead letters (${num(t.deadLetter)})` });
  if (t.deadLetter === 0) return el("div", null, [head, el("p", { class: "muted", text: "None." })]);
  const classes = new Map<string, string[]>();
  for (const d of items) {
    const c = errorClass(d);
    classes.set(c, [...(classes.get(c) ?? []), d.id]);
  }
  // A class that no longer has a row shown (all retried) falls back to every class.
  const active = selected !== null && classes.has(selected) ? selected : null;
  const select = el("select", { class: "class-filter", "aria-label": "Error class" }, [
    el("option", { value: "", text: `All classes (${items.length})` }),
    ...[...classes].map(([c, ids]) => {
      const o = el("option", { value: c, text: `${c} (${ids.length})` }) as HTMLOptionElement;
      o.selected = c === active;
      return o;
    }),
  ]) as HTMLSelectElement;
  select.addEventListener("change", () => choose(t.target, select.value || null));
  const all = el("button", {
    class: "retry-all",
    type: "button",
    text: "Retry all dead letters",
  }) as HTMLButtonElement;
  all.addEventListener("click", () => retry(t.target, null, all));
  let byClass: HTMLButtonElement | null = null;
  if (active !== null) {
    const ids = classes.get(active)!;
    const button = el("button", {
      class: "retry-class",
      type: "button",
      "data-class": active,
      text: `Retry this class (${ids.length})`,
    }) as HTMLButtonElement;
    button.addEventListener("click", () => retry(t.target, ids, button));
    byClass = button;
  }
  const shown = items.filter((d) => active === null || errorClass(d) === active);
  const rows = shown.map((d) => {
    const b = el("button", {
      class: "retry",
      type: "button",
      "data-id": d.id,
      text: "Retry",
    }) as HTMLButtonElement;
    b.addEventListener("click", () => retry(t.target, [d.id], b));
    return el("tr", { "data-row": d.id, "data-class": errorClass(d) }, [
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
    el("div", { class: "toolbar" }, [select, byClass, all]),
    el("div", { class: "scroll" }, [el("table", null, [el("tr", null, header), ...rows])]),
    items.length < t.deadLetter
      ? el("p", {
          class: "muted",
          text: `Showing the latest ${items.length}; a class's retry re-queues the rows shown in it.`,
        })
      : null,
  ]);
}
