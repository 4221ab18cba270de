/// <reference lib="dom" />
/**
 * The dashboard's browser script. Bundled by esbuild when the server starts (page.ts) and inlined
 * into the page, whose Content-Security-Policy allows exactly this script by hash. It fetches the
 * authenticated JSON endpoints with the admin token, which it asks for once and keeps in
 * sessionStorage (or takes from ?token= and removes from the address bar at once, so it does not
 * stay in history or get shared with a copied link). Every value from the API goes into the page
 * with textContent, never as HTML: an error message quoting a row cannot inject markup.
 */
export {};

interface Reason {
  level: "warning" | "critical";
  message: string;
}
interface JobView {
  id: string;
  kind: string;
  status: string;
  percent: number;
  done: number;
  itemsTotal: number;
  itemsFailed: number;
  averagePerMinute: number | null;
  etaSeconds: number | null;
  tokens: number;
  estimatedCostUsd: number;
  finishedAt: string | null;
  createdAt: string;
}
interface TargetView {
  target: string;
  table: string;
  provider: string;
  model: string;
  dimensions: number;
  health: { level: string; reasons: Reason[] };
  coverage: number;
  embedded: number;
  total: number;
  pending: number;
  processing: number;
  failed: number;
  deadLetter: number;
  untracked: number;
  completedButNull: number;
  remaining: number;
  rate: { windowMinutes: number; perMinute: number };
  etaSeconds: number | null;
  lastEmbeddedAt: string | null;
  tokens: number;
  estimatedCostUsd: number;
  estimatedRemainingCostUsd: number | null;
  jobs: JobView[];
}
interface Status {
  health: { level: string };
  targets: TargetView[];
}
interface DeadLetter {
  id: string;
  error: string | null;
  errorKind: string | null;
  attempts: number;
  updatedAt: string;
}
interface DeadLetters {
  targets: { target: string; items: DeadLetter[] }[];
}

const KEY = "embeddings-admin-token";
const REFRESH_MS = 5000;
let timer: ReturnType<typeof setTimeout> | undefined;
const $ = (id: string): HTMLElement => document.getElementById(id)!;

(function takeTokenFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has("token")) return;
  sessionStorage.setItem(KEY, params.get("token") || "");
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
})();

const token = () => sessionStorage.getItem(KEY) || "";

type Child = Node | string | null | undefined;

function el(tag: string, attrs?: Record<string, string> | null, children?: Child[]): HTMLElement {
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

/** The server refused the token (or has none configured): show the login form. */
class Refused extends Error {}

async function api<T>(path: string, init: { method?: string; body?: string } = {}): Promise<T> {
  const headers: Record<string, string> = { authorization: `Bearer ${token()}` };
  if (init.body) headers["content-type"] = "application/json";
  const res = await fetch(path, {
    method: init.method || "GET",
    headers,
    body: init.body,
    cache: "no-store",
  });
  const body = (await res.json().catch(() => ({}))) as { error?: string };
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    throw new Refused("The token was refused. Enter the admin token (EMBEDDINGS_ADMIN_TOKEN).");
  }
  if (res.status === 503 && String(body.error || "").includes("EMBEDDINGS_ADMIN_TOKEN")) {
    throw new Refused(body.error);
  }
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body as T;
}

const num = (n: number | null | undefined) =>
  n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US");
const usd = (n: number | null | undefined) =>
  n === null || n === undefined ? "-" : `$${n < 0.01 && n > 0 ? n.toFixed(6) : n.toFixed(2)}`;

function duration(s: number | null | undefined): string {
  if (s === null || s === undefined) return "unknown";
  if (s <= 0) return "done";
  if (s < 60) return `${Math.ceil(s)} s`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.round(h / 24)} days`;
}
const when = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString() : "-");

function bar(percent: number, cls?: string): HTMLElement {
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

const figure = (label: string, value: string, name: string) =>
  el("div", { "data-figure": name }, [el("dt", { text: label }), el("dd", { text: value })]);

const reasonsList = (reasons: Reason[]) =>
  el(
    "ul",
    { class: "reasons" },
    reasons.map((r) => el("li", { class: r.level, text: r.message })),
  );

async function retry(target: string, ids: string[] | null, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  const body = ids ? { target, ids, deadLetter: true } : { target };
  try {
    const r = await api<{ requeued: number }>("retry", { method: "POST", body: JSON.stringify(body) });
    $("notice").textContent = `Re-queued ${r.requeued} row${r.requeued === 1 ? "" : "s"} of ${target}.`;
    await refresh();
  } catch (err) {
    show(err);
  } finally {
    button.disabled = false;
  }
}

function jobsTable(t: TargetView): HTMLElement {
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

function deadLetterSection(t: TargetView, dead: { items: DeadLetter[] } | undefined): HTMLElement {
  const items = dead ? dead.items : [];
  const head = el("h3", { text: `Dead letters (${num(t.deadLetter)})` });
  if (t.deadLetter === 0) return el("div", null, [head, el("p", { class: "muted", text: "None." })]);
  const all = el("button", {
    class: "retry-all",
    type: "button",
    text: "Retry all dead letters",
  }) as HTMLButtonElement;
  all.addEventListener("click", () => void retry(t.target, null, all));
  const rows = items.map((d) => {
    const b = el("button", {
      class: "retry",
      type: "button",
      "data-id": d.id,
      text: "Retry",
    }) as HTMLButtonElement;
    b.addEventListener("click", () => void retry(t.target, [d.id], b));
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

function targetCard(t: TargetView, dead: { items: DeadLetter[] } | undefined): HTMLElement {
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
      text: `${t.coverage}% embedded (${num(t.embedded)} of ${num(t.total)} rows)`,
    }),
    el("dl", { class: "figures" }, [
      figure("Pending", num(t.pending), "pending"),
      figure("Processing", num(t.processing), "processing"),
      figure("Waiting to retry", num(t.failed), "failed"),
      figure("Dead letters", num(t.deadLetter), "dead-letter"),
      figure("Not yet seen", num(t.untracked), "untracked"),
      figure("Completed but NULL", num(t.completedButNull), "completed-but-null"),
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
    deadLetterSection(t, dead),
  ]);
}

function render(status: Status, dead: DeadLetters): void {
  const overall = $("overall");
  overall.className = `badge ${status.health.level}`;
  overall.textContent = status.health.level;
  $("updated").textContent =
    `Updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`;
  const byTarget = new Map(dead.targets.map((d) => [d.target, d]));
  $("targets").replaceChildren(
    ...(status.targets.length
      ? status.targets.map((t) => targetCard(t, byTarget.get(t.target)))
      : [
          el("p", { text: "No targets registered. Add one with: embeddings targets add <name> --table ..." }),
        ]),
  );
}

function showLogin(message: string): void {
  clearTimeout(timer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function show(err: unknown): void {
  if (err instanceof Refused) {
    showLogin(err.message);
    return;
  }
  $("error").textContent = `Could not refresh: ${err instanceof Error ? err.message : String(err)}`;
}

async function refresh(): Promise<void> {
  clearTimeout(timer);
  try {
    const [status, dead] = await Promise.all([api<Status>("status"), api<DeadLetters>("dead-letters")]);
    $("login").hidden = true;
    $("main").hidden = false;
    $("error").textContent = "";
    render(status, dead);
    timer = setTimeout(refresh, REFRESH_MS);
  } catch (err) {
    show(err);
    if (!(err instanceof Refused)) timer = setTimeout(refresh, REFRESH_MS);
  }
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = $("token") as HTMLInputElement;
  sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  void refresh();
});
$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showLogin("");
});

if (token()) void refresh();
else showLogin("");
