import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { DEFAULT_THRESHOLDS, type HealthReason, levelRank } from "../src/lib/ops/health.js";
import type { StatusSnapshot } from "../src/lib/ops/status.js";
import { createLocalProvider } from "../src/lib/providers/local.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import { createTestApp } from "./support/app.js";
import { createDocuments, registerDocuments } from "./support/fixtures.js";
import {
  dashboardQueries,
  type Exposition,
  notExported,
  parseExposition,
  promqlMetricNames,
} from "./support/operator-files.js";
import { useTestDatabase } from "./support/pg-server.js";
import { createRecordings, registerRecordings, transcript } from "./support/transcripts.js";

/**
 * The operator files in ops/ against the real app: every metric the Grafana dashboard and the
 * Prometheus alert rules query is a series the served GET /metrics exports, and the health alerts
 * fire where the health module grades (its DEFAULT_THRESHOLDS, on real targets in real Postgres).
 */

const db = useTestDatabase("operator_files");
const TOKEN = "test-admin-token-0123456789abcdef";
const AUTH = { authorization: `Bearer ${TOKEN}` };

const read = (path: string) => readFileSync(new URL(`../ops/${path}`, import.meta.url), "utf8");
const dashboard: unknown = JSON.parse(read("grafana/embeddings-dashboard.json"));
const rulesText = read("prometheus/embeddings-alerts.yml");

/** A Grafana variable reference, ${name} (spelt in pieces: it is not a template literal). */
const grafanaVar = (name: string) => ["$", "{", name, "}"].join("");

interface Rule {
  group: string;
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

function rules(): Rule[] {
  const doc = parseYaml(rulesText) as { groups: { name: string; rules: object[] }[] };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ group: g.name, ...(r as object) }) as Rule));
}

/** Which gauge each health signal is graded from (see metrics.ts and status.ts), and its unit. */
const SIGNALS = {
  dead_letters: {
    threshold: DEFAULT_THRESHOLDS.deadLetters,
    metric: 'embeddings_target_items{state="dead_letter"}',
    scale: 1,
  },
  stalled: {
    threshold: DEFAULT_THRESHOLDS.stalledMinutes,
    metric: "embeddings_target_idle_seconds",
    scale: 60,
  },
  retry_queue: {
    threshold: DEFAULT_THRESHOLDS.retryQueue,
    metric: 'embeddings_target_items{state="failed"}',
    scale: 1,
  },
  completed_but_null: {
    threshold: DEFAULT_THRESHOLDS.completedButNull,
    metric: "embeddings_target_completed_but_null_rows",
    scale: 1,
  },
} satisfies Partial<Record<HealthReason["code"], unknown>>;

/** A health rule is `<selector> >= <number>`, the health module's "at or above". */
function healthRule(r: Rule): { metric: string; matchers: Record<string, string>; at: number } {
  const m = /^([a-z_:][\w:]*)(\{[^}]*\})? >= (\d+)$/.exec(r.expr);
  if (!m)
    throw new Error(`${r.alert} (${r.labels.severity}): expected "<selector> >= <number>", got ${r.expr}`);
  const matchers: Record<string, string> = {};
  for (const l of (m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)) matchers[l[1]!] = l[2]!;
  return { metric: m[1]!, matchers, at: Number(m[3]) };
}

/** The targets a health rule fires for on one scrape (the `for:` aside). */
function firing(r: Rule, x: Exposition): string[] {
  const { metric, matchers, at } = healthRule(r);
  return x.samples
    .filter((s) => s.name === metric && Object.entries(matchers).every(([k, v]) => s.labels[k] === v))
    .filter((s) => s.value >= at)
    .map((s) => s.labels.target!)
    .sort();
}

let exposition: Exposition;
let snapshot: StatusSnapshot;

beforeAll(async () => {
  // The first provider call on ops_live reports a request split as too large (a 413), so the target
  // learns a batch limit.
  let oversized = false;
  const { app, store } = createTestApp(db, {
    env: { EMBEDDINGS_ADMIN_TOKEN: TOKEN },
    providerFor: (t, real): EmbeddingProvider => {
      if (t.name !== "ops_live") return real();
      const inner = createLocalProvider({ dimensions: t.dimensions });
      return {
        ...inner,
        async embed(texts, o) {
          const r = await inner.embed(texts, o);
          if (oversized) return r;
          oversized = true;
          return { ...r, oversized: true };
        },
      };
    },
  });
  const batch = async (target: string, jobId?: string) => {
    const res = await app.request("/batch", {
      method: "POST",
      headers: { ...AUTH, "content-type": "application/json" },
      body: JSON.stringify({ target, batchSize: 10, jobId }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
  };

  // A healthy target with a running job, some rows embedded (rate, ETA) and a learnt batch limit.
  await createDocuments(db, { table: "ops_live", rows: 40 });
  await registerDocuments(store, { name: "ops_live", table: "ops_live" });
  await store.enqueue("ops_live", null, 100_000);
  const job = await store.createJob("ops_live", "backfill", null, { batchSize: 10 });
  await store.startJob(job.id);
  await batch("ops_live", job.id);
  await batch("ops_live", job.id);

  // A chunked target, one batch of chunks in: chunk series exist only for chunked targets.
  await createRecordings(db, "ops_recs", [transcript(1, 12), transcript(2, 3)]);
  await registerRecordings(store, { name: "ops_recs", table: "ops_recs" });
  await store.enqueue("ops_recs", null, 100_000);
  await batch("ops_recs");

  // Two targets whose row states sit on the health thresholds' edges: the warning target at the
  // last value before critical (or the first warning one), the critical target at the first critical.
  const dl = DEFAULT_THRESHOLDS.deadLetters;
  const rq = DEFAULT_THRESHOLDS.retryQueue;
  const st = DEFAULT_THRESHOLDS.stalledMinutes;
  const edges = [
    { name: "ops_warn", deadLetters: dl.critical - 1, retryQueue: rq.warning, dueMinutes: st.warning + 10 },
    { name: "ops_crit", deadLetters: dl.critical, retryQueue: rq.critical, dueMinutes: st.critical + 10 },
  ];
  for (const e of edges) {
    const due = 5;
    await createDocuments(db, { table: e.name, rows: e.retryQueue + e.deadLetters + due + 1 });
    await registerDocuments(store, { name: e.name, table: e.name });
    await store.enqueue(e.name, null, 100_000);
    const set = (from: number, to: number, sql: string) =>
      db.query(
        `UPDATE embedding_items SET ${sql}
          WHERE target_id = (SELECT id FROM embedding_targets WHERE name = $1) AND row_id::int BETWEEN $2 AND $3`,
        [e.name, from, to],
      );
    const states: [count: number, set: string][] = [
      [e.retryQueue, "status = 'failed', attempts = 1, next_retry_at = now() + interval '1 hour'"],
      [e.deadLetters, "status = 'dead_letter', attempts = 3, last_error = 'input rejected'"],
      // Due work nobody took: the oldest due row has waited `dueMinutes`, and no row was ever embedded.
      [due, `next_retry_at = now() - interval '${e.dueMinutes} minutes'`],
      // The silent failure: the queue says completed, the embedding column is NULL.
      [1, "status = 'completed', attempts = 1"],
    ];
    let from = 1;
    for (const [count, sql] of states) {
      await set(from, from + count - 1, sql);
      from += count;
    }
  }

  const res = await app.request("/metrics", { headers: AUTH });
  expect(res.status).toBe(200);
  exposition = parseExposition(await res.text());
  snapshot = (await (await app.request("/status", { headers: AUTH })).json()) as StatusSnapshot;
});

describe("the Grafana dashboard", () => {
  it("imports with a DS_PROMETHEUS input, a datasource variable every query uses, and a target variable", () => {
    const d = dashboard as {
      __inputs: { name: string; type: string; pluginId: string }[];
      templating: { list: { name: string; type: string; current?: { value?: string } }[] };
      panels: { type: string; datasource?: { uid: string } }[];
      schemaVersion: number;
      uid: string;
    };
    expect(d.__inputs).toContainEqual(
      expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" }),
    );
    expect(d.templating.list).toContainEqual(
      expect.objectContaining({
        name: "datasource",
        type: "datasource",
        current: expect.objectContaining({ value: grafanaVar("DS_PROMETHEUS") }),
      }),
    );
    expect(d.templating.list).toContainEqual(expect.objectContaining({ name: "target", type: "query" }));
    for (const p of d.panels.filter((p) => p.type !== "row"))
      expect(p.datasource?.uid).toBe(grafanaVar("datasource"));
    expect(d.schemaVersion).toBeGreaterThanOrEqual(36); // Grafana 9.x+ (10 writes 38 and up)
    expect(d.uid).toMatch(/^[\w-]{1,40}$/);
  });

  it("queries only metrics the served /metrics exports, each with series", () => {
    const queries = dashboardQueries(dashboard);
    expect(queries.length).toBeGreaterThan(20);
    expect(queries.some((q) => q.where === "variable $target")).toBe(true);
    const problems = queries.flatMap((q) =>
      promqlMetricNames(q.expr).flatMap((name) => {
        const why = notExported(name, exposition);
        return why ? [`${q.where}: ${why}`] : [];
      }),
    );
    expect(problems).toEqual([]);
  });

  it("shows every metric the service exports", () => {
    const shown = new Set(dashboardQueries(dashboard).flatMap((q) => promqlMetricNames(q.expr)));
    expect([...exposition.types.keys()].filter((name) => !shown.has(name))).toEqual([]);
  });
});

describe("the Prometheus alert rules", () => {
  it("are read whole: every expr line of the file is a rule's expr", () => {
    const exprLines = rulesText.split("\n").filter((l) => /^\s*expr:/.test(l));
    expect(exprLines.map((l) => l.replace(/^\s*expr:\s*/, ""))).toEqual(rules().map((r) => r.expr));
  });

  it("query only metrics the served /metrics exports, each with series", () => {
    const problems = rules().flatMap((r) =>
      promqlMetricNames(r.expr).flatMap((name) => {
        const why = notExported(name, exposition);
        return why ? [`${r.alert} (${r.labels.severity}): ${why}`] : [];
      }),
    );
    expect(problems).toEqual([]);
  });

  it("have a for: duration, a severity, and annotations naming the target and the fix", () => {
    for (const r of rules()) {
      expect(r.for, r.alert).toMatch(/^\d+[smh]$/);
      expect(["warning", "critical"]).toContain(r.labels.severity);
      expect(r.annotations.summary, r.alert).toBeTruthy();
      expect(r.annotations.description, r.alert).toMatch(/embeddings |GET \//);
      if (r.group === "embeddings-health") {
        expect(r.annotations.summary).toContain("{{ $labels.target }}");
        expect(r.annotations.description).toMatch(/embeddings \w+ \{\{ \$labels\.target \}\}/);
      }
    }
  });

  it("grade each health signal at the health module's default thresholds, warning and critical", () => {
    const health = rules().filter((r) => r.group === "embeddings-health");
    const found = health.map((r) => `${r.labels.reason}/${r.labels.severity}`).sort();
    const expected = Object.entries(SIGNALS)
      .flatMap(([code, s]) => Object.keys(s.threshold).map((level) => `${code}/${level}`))
      .sort();
    expect(found).toEqual(expected);
    for (const r of health) {
      const signal = SIGNALS[r.labels.reason as keyof typeof SIGNALS];
      const level = r.labels.severity as keyof typeof signal.threshold;
      const { metric, matchers, at } = healthRule(r);
      const selector = `${metric}${
        Object.keys(matchers).length
          ? `{${Object.entries(matchers)
              .map(([k, v]) => `${k}="${v}"`)
              .join(",")}}`
          : ""
      }`;
      expect(selector, `${r.alert} ${level}`).toBe(signal.metric);
      expect(at, `${r.alert} ${level}`).toBe(signal.threshold[level] * signal.scale);
    }
  });

  it("on real targets, fire exactly where /status reports the reason at that level or worse", () => {
    const health = rules().filter((r) => r.group === "embeddings-health");
    for (const r of health) {
      const expected = snapshot.targets
        .filter((t) =>
          t.health.reasons.some(
            (x) =>
              x.code === r.labels.reason && levelRank(x.level) >= levelRank(r.labels.severity as "warning"),
          ),
        )
        .map((t) => t.target)
        .sort();
      expect(firing(r, exposition), `${r.alert} ${r.labels.severity}`).toEqual(expected);
    }
    // The edge targets really are on the edges: warning-only, and critical.
    const levels = Object.fromEntries(snapshot.targets.map((t) => [t.target, t.health.level]));
    expect(levels).toMatchObject({ ops_live: "healthy", ops_warn: "warning", ops_crit: "critical" });
    const warn = snapshot.targets.find((t) => t.target === "ops_warn")!;
    expect(warn.health.reasons.map((x) => x.code).sort()).toEqual(Object.keys(SIGNALS).sort());
  });
});

describe("the metric checker", () => {
  it("reports a metric that is not exported, a registered one without series, and a gauge taken for a histogram", () => {
    expect(
      promqlMetricNames('sum by (target) (rate(embeddings_nope_total{target=~"$target"}[5m])) * 60'),
    ).toEqual(["embeddings_nope_total"]);
    expect(notExported("embeddings_nope_total", exposition)).toMatch(/not exported/);
    expect(notExported("embeddings_target_rows_count", exposition)).toMatch(/not exported/);
    const empty = parseExposition("# HELP x_total h\n# TYPE x_total counter\n");
    expect(notExported("x_total", empty)).toMatch(/no series/);
    const h = parseExposition('# TYPE lat histogram\nlat_bucket{le="+Inf"} 1\nlat_sum 0.2\nlat_count 1\n');
    expect(notExported("lat_bucket", h)).toBeNull();
    expect(notExported("lat_count", h)).toBeNull();
    expect(notExported("lat", h)).toMatch(/histogram/);
  });
});
