/// <reference lib="dom" />
import type { Reason } from "./types.js";

/** DOM builders. Values always go in as textContent or attributes, never as HTML. */

export type Child = Node | string | null | undefined;

export function el(tag: string, attrs?: Record<string, string> | null, children?: Child[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children ?? []) {
    if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return node;
}

export function bar(percent: number, cls?: string): HTMLElement {
  const inner = el("div");
  inner.style.width = `${Math.max(0, Math.min(100, percent))}%`;
  return el(
    "div",
    {
      class: `bar${cls ? ` ${cls}` : ""}`,
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(percent),
    },
    [inner],
  );
}

export const figure = (label: string, value: string, name: string) =>
  el("div", { "data-figure": name }, [el("dt", { text: label }), el("dd", { text: value })]);

export const reasonsList = (reasons: Reason[]) =>
  el(
    "ul",
    { class: "reasons" },
    reasons.map((r) => el("li", { class: r.level, text: r.message })),
  );
