/// <reference lib="dom" />
import { el } from "./dom.js";
import type { Point } from "./series.js";

/**
 * Inline SVG charts, drawn in the browser from GET /history: no charting library, nothing the
 * Content-Security-Policy forbids (colours come from style.css classes, never a style attribute).
 * Every series carries its plotted values as `data-points` (JSON) and every point is a circle with
 * `data-start` and `data-value`, so a test reads exactly what is drawn.
 */

const NS = "http://www.w3.org/2000/svg";
const W = 320;
const H = 150;
const PAD = { left: 44, right: 8, top: 8, bottom: 22 };

function svg(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export interface Series {
  name: string;
  label: string;
  points: Point[];
}

export interface ChartSpec {
  name: string;
  title: string;
  /** The y axis' unit, under the title. */
  unit: string;
  series: Series[];
  kind: "line" | "bar";
  stepMinutes: number;
  format: (n: number) => string;
  /** A sentence under the chart: how the values were made, when that is not obvious. */
  note?: string;
  /** Vertical lines at moments (a running job's start), drawn when inside the chart's span. */
  markers?: { at: string; label: string }[];
}

/** 1, 2 or 5 times a power of ten, at least `max` (and at least 1). */
function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

function timeLabel(ms: number, stepMinutes: number): string {
  const d = new Date(ms);
  return stepMinutes >= 360
    ? d.toLocaleDateString("en-US", { month: "short", day: "numeric" })
    : d.toLocaleTimeString("en-US", { hour: "2-digit", minute: "2-digit", hour12: false });
}

export function chart(spec: ChartSpec): HTMLElement {
  const all = spec.series.flatMap((s) => s.points);
  const times = all.map((p) => Date.parse(p.start));
  const step = spec.stepMinutes * 60_000;
  const from = times.length ? Math.min(...times) : 0;
  // Bars span their step; lines put each point at its step's start.
  const to = times.length ? Math.max(...times) + (spec.kind === "bar" ? step : 0) : 1;
  const top = niceMax(Math.max(0, ...all.map((p) => p.value ?? 0)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t: number) => PAD.left + (to > from ? ((t - from) / (to - from)) * plotW : plotW / 2);
  const y = (v: number) => PAD.top + plotH - (v / top) * plotH;
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: `chart ${spec.kind}-chart`,
    role: "img",
    "aria-label": `${spec.title} (${spec.unit})`,
    "data-chart": spec.name,
  });
  for (const v of [0, top / 2, top]) {
    root.appendChild(svg("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    root.appendChild(
      svg("text", { class: "tick", x: PAD.left - 4, y: y(v) + 3, "text-anchor": "end" }, spec.format(v)),
    );
  }
  root.appendChild(
    svg("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }),
  );
  root.appendChild(
    svg("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }),
  );
  if (times.length) {
    root.appendChild(
      svg(
        "text",
        { class: "tick", x: PAD.left, y: H - 6, "text-anchor": "start" },
        timeLabel(from, spec.stepMinutes),
      ),
    );
    root.appendChild(
      svg(
        "text",
        { class: "tick", x: W - PAD.right, y: H - 6, "text-anchor": "end" },
        timeLabel(to, spec.stepMinutes),
      ),
    );
  }
  for (const m of spec.markers ?? []) {
    const t = Date.parse(m.at);
    if (!(t >= from && t <= to)) continue;
    const g = svg("g", { class: "marker", "data-marker": m.label, "data-at": m.at });
    g.appendChild(svg("line", { x1: x(t), x2: x(t), y1: PAD.top, y2: H - PAD.bottom }));
    g.appendChild(svg("text", { class: "tick", x: x(t) - 2, y: PAD.top + 8, "text-anchor": "end" }, m.label));
    root.appendChild(g);
  }
  spec.series.forEach((s, i) => {
    const drawn = s.points.filter((p): p is { start: string; value: number } => p.value !== null);
    const g = svg("g", {
      class: `series s${i}`,
      "data-series": s.name,
      "data-points": JSON.stringify(drawn),
    });
    if (spec.kind === "bar") {
      const width = Math.max(1, (step / Math.max(to - from, 1)) * plotW - 2);
      for (const p of drawn) {
        const t = Date.parse(p.start);
        g.appendChild(
          svg("rect", { x: x(t) + 1, y: y(p.value), width, height: Math.max(0, y(0) - y(p.value)) }),
        );
      }
    } else {
      // A step without a value (no attempt, no call) breaks the line instead of drawing a zero.
      let d = "";
      let pen = false;
      for (const p of s.points) {
        if (p.value === null) {
          pen = false;
          continue;
        }
        d += `${pen ? "L" : "M"}${x(Date.parse(p.start)).toFixed(1)} ${y(p.value).toFixed(1)}`;
        pen = true;
      }
      if (d) g.appendChild(svg("path", { d }));
    }
    for (const p of drawn) {
      const t = Date.parse(p.start);
      const cx = spec.kind === "bar" ? x(t) + (step / Math.max(to - from, 1)) * plotW * 0.5 : x(t);
      const dot = svg("circle", {
        cx: cx.toFixed(1),
        cy: y(p.value).toFixed(1),
        r: spec.kind === "bar" ? 0 : 1.6,
        "data-start": p.start,
        "data-value": p.value,
      });
      dot.appendChild(svg("title", {}, `${timeLabel(t, 1)} ${s.label}: ${spec.format(p.value)}`));
      g.appendChild(dot);
    }
    root.appendChild(g);
  });
  const legend =
    spec.series.length > 1
      ? el(
          "ul",
          { class: "legend" },
          spec.series.map((s, i) => el("li", { class: `s${i}`, text: s.label })),
        )
      : null;
  return el("figure", { class: "chart", "data-chart": spec.name }, [
    el("figcaption", null, [spec.title, el("small", { text: spec.unit })]),
    root as unknown as HTMLElement,
    legend,
    spec.note ? el("p", { class: "note muted", text: spec.note }) : null,
  ]);
}
