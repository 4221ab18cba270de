/**
 * Readers for the operator files (ops/): the Grafana dashboard's queries, the Prometheus rules file,
 * the metric names a PromQL expression reads, and the Prometheus text exposition.
 * The rules file is read with the `yaml` package (YAML 1.2, as Prometheus reads it).
 */

export function dashboardQueries(dashboard: unknown): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  type Panel = { title?: string; targets?: { expr?: string }[]; panels?: Panel[] };
  const walk = (panels: Panel[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}"`, expr: t.expr });
      walk(p.panels);
    }
  };
  const d = dashboard as {
    panels?: Panel[];
    templating?: { list?: { name: string; type: string; query?: unknown; definition?: string }[] };
  };
  walk(d.panels);
  for (const v of d.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : (v.query as { query?: string } | undefined)?.query;
    for (const expr of new Set([q, v.definition])) if (expr) out.push({ where: `variable $${v.name}`, expr });
  }
  return out;
}

const NOT_METRICS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);
const KEYWORDS = new Set(["bool", "offset", "and", "or", "unless", "inf", "nan", "atan2"]);

/**
 * The metric names a PromQL expression (or a Grafana label_values()/query_result() query) reads:
 * strings, label matchers, ranges, Grafana variables and grouping label lists removed, then every
 * identifier that is not a function call or a keyword.
 */
export function promqlMetricNames(expr: string): string[] {
  let e = expr.replace(/\$\{[^}]*\}|\$\w+/g, " ");
  const grafana = /^\s*(label_values|query_result|label_names|metrics)\s*\(([\s\S]*)\)\s*$/.exec(e);
  if (grafana) {
    const [, fn, args] = grafana as unknown as [string, string, string];
    if (fn === "label_names" || fn === "metrics") throw new Error(`unsupported Grafana query ${fn}()`);
    // label_values(selector, label): the label is not a metric; label_values(label) reads none.
    e = fn === "label_values" ? (args.includes(",") ? args.slice(0, args.lastIndexOf(",")) : "") : args;
  }
  e = e
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  for (const m of e.matchAll(/[A-Za-z_:][\w:]*/g)) {
    const word = m[0];
    const rest = e.slice(m.index + word.length);
    if (/^\s*\(/.test(rest)) continue; // a function or an aggregation
    if (NOT_METRICS.has(word) || KEYWORDS.has(word.toLowerCase())) continue;
    if (m.index > 0 && /[\d.]/.test(e[m.index - 1]!)) continue; // a duration's or number's unit: 5m, 1e3
    names.add(word);
  }
  return [...names];
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  /** Metric family name -> type from `# TYPE`. */
  types: Map<string, string>;
  samples: Sample[];
}

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = JSON.parse(`"${l[2]}"`);
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { types, samples };
}

const SUFFIXES: Record<string, readonly string[]> = {
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["_sum", "_count"],
};

/**
 * Why `name` is not a series of the exposition, or null when it is: a family of that exact name
 * (not a histogram: its series are only the suffixed ones), or a histogram's or summary's suffixed
 * series. A gauge whose own name ends in _count is never stripped.
 */
export function notExported(name: string, x: Exposition): string | null {
  const hasSamples = x.samples.some((s) => s.name === name);
  const type = x.types.get(name);
  if (type && type !== "histogram") return hasSamples ? null : `${name} is registered but has no series`;
  for (const [familyType, suffixes] of Object.entries(SUFFIXES)) {
    for (const suffix of suffixes) {
      if (!name.endsWith(suffix)) continue;
      const base = name.slice(0, -suffix.length);
      if (x.types.get(base) === familyType)
        return hasSamples ? null : `${name} (of ${familyType} ${base}) has no series`;
    }
  }
  if (type === "histogram") return `${name} is a histogram: query ${name}_bucket, _sum or _count`;
  return `${name} is not exported`;
}
