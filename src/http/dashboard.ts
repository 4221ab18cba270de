import { createHash } from "node:crypto";

/**
 * The dashboard: one static page, no build step. Its inline script fetches the authenticated JSON
 * endpoints (status, dead-letters, retry) with the admin token, which the page asks for once and
 * keeps in sessionStorage (or takes from ?token= and removes from the address bar at once, so it
 * does not stay in history or get shared with a copied link).
 *
 * The page itself holds no data, so serving it needs no token. Every value from the API is put in
 * the page with textContent, never as HTML: an error message quoting a row cannot inject markup.
 * The Content-Security-Policy allows only this page's own script and style (by hash) and requests
 * to this origin.
 */

const STYLE = `
:root { --ok: #1a7f37; --warn: #9a6700; --crit: #cf222e; --muted: #57606a; --line: #d0d7de; font-family: system-ui, sans-serif; }
body { margin: 0; color: #1f2328; background: #f6f8fa; }
header { display: flex; gap: 1rem; align-items: center; padding: .75rem 1.5rem; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.2rem; margin: 0; }
#updated { color: var(--muted); font-size: .85rem; margin-left: auto; }
main, #login { padding: 1rem 1.5rem; max-width: 1200px; }
.badge { display: inline-block; padding: .1rem .55rem; border-radius: 1rem; font-size: .8rem; font-weight: 600; color: #fff; background: var(--muted); text-transform: uppercase; }
.badge.healthy { background: var(--ok); } .badge.warning { background: var(--warn); } .badge.critical { background: var(--crit); }
.target { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.25rem; margin-bottom: 1rem; }
.target h2 { font-size: 1.1rem; margin: 0 0 .5rem; display: flex; gap: .6rem; align-items: center; }
.target h2 small { color: var(--muted); font-weight: 400; font-size: .85rem; }
.bar { height: 14px; background: #eaeef2; border-radius: 7px; overflow: hidden; }
.bar > div { height: 100%; background: var(--ok); width: 0; transition: width .4s; }
.bar.job > div { background: #0969da; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .4rem 1rem; margin: .75rem 0; }
.figures div { font-size: .85rem; } .figures dt { color: var(--muted); } .figures dd { margin: 0; font-weight: 600; }
ul.reasons { margin: .5rem 0; padding-left: 1.2rem; } ul.reasons li.critical { color: var(--crit); } ul.reasons li.warning { color: var(--warn); }
table { border-collapse: collapse; width: 100%; font-size: .85rem; margin: .25rem 0 .75rem; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.error { font-family: ui-monospace, monospace; white-space: pre-wrap; word-break: break-word; max-width: 600px; }
td.progress { min-width: 160px; }
h3 { font-size: .95rem; margin: .75rem 0 .25rem; }
button { cursor: pointer; border: 1px solid var(--line); background: #f6f8fa; border-radius: 6px; padding: .25rem .7rem; }
button:disabled { cursor: wait; opacity: .6; }
.muted { color: var(--muted); }
#error, #login-error, .notice { color: var(--crit); }
`;

const SCRIPT = `
"use strict";
var KEY = "embeddings-admin-token";
var REFRESH_MS = 5000;
var timer = null;
var $ = function (id) { return document.getElementById(id); };

(function takeTokenFromUrl() {
  var params = new URLSearchParams(location.search);
  if (!params.has("token")) return;
  sessionStorage.setItem(KEY, params.get("token") || "");
  params.delete("token");
  var rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
})();

function token() { return sessionStorage.getItem(KEY) || ""; }

function el(tag, attrs, children) {
  var node = document.createElement(tag);
  if (attrs) for (var k in attrs) {
    if (k === "text") node.textContent = attrs[k];
    else if (k === "class") node.className = attrs[k];
    else node.setAttribute(k, attrs[k]);
  }
  (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
  return node;
}

function Refused(message) { this.message = message; }

function api(path, init) {
  init = init || {};
  var headers = { authorization: "Bearer " + token() };
  if (init.body) headers["content-type"] = "application/json";
  return fetch(path, { method: init.method || "GET", headers: headers, body: init.body, cache: "no-store" }).then(function (res) {
    return res.json().catch(function () { return {}; }).then(function (body) {
      if (res.status === 401) { sessionStorage.removeItem(KEY); throw new Refused("The token was refused. Enter the admin token (EMBEDDINGS_ADMIN_TOKEN)."); }
      if (res.status === 503 && String(body.error || "").indexOf("EMBEDDINGS_ADMIN_TOKEN") >= 0) throw new Refused(body.error);
      if (!res.ok) throw new Error(body.error || ("HTTP " + res.status));
      return body;
    });
  });
}

function num(n) { return n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"); }
function usd(n) { return n === null || n === undefined ? "-" : "$" + (n < 0.01 && n > 0 ? n.toFixed(6) : n.toFixed(2)); }
function duration(s) {
  if (s === null || s === undefined) return "unknown";
  if (s <= 0) return "done";
  if (s < 60) return Math.ceil(s) + " s";
  var m = Math.round(s / 60);
  if (m < 60) return m + " min";
  var h = Math.floor(m / 60);
  if (h < 48) return h + " h " + (m % 60) + " min";
  return Math.round(h / 24) + " days";
}
function when(iso) { return iso ? new Date(iso).toLocaleString() : "-"; }

function bar(percent, cls) {
  var inner = el("div");
  inner.style.width = Math.max(0, Math.min(100, percent)) + "%";
  return el("div", { class: "bar" + (cls ? " " + cls : ""), role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(percent) }, [inner]);
}

function figure(label, value, name) { return el("div", { "data-figure": name }, [el("dt", { text: label }), el("dd", { text: value })]); }

function reasonsList(reasons) {
  return el("ul", { class: "reasons" }, reasons.map(function (r) { return el("li", { class: r.level, text: r.message }); }));
}

function retry(target, ids, button) {
  button.disabled = true;
  var body = ids ? { target: target, ids: ids, deadLetter: true } : { target: target };
  return api("retry", { method: "POST", body: JSON.stringify(body) }).then(function (r) {
    $("notice").textContent = "Re-queued " + r.requeued + " row" + (r.requeued === 1 ? "" : "s") + " of " + target + ".";
    return refresh();
  }).catch(show).finally(function () { button.disabled = false; });
}

function jobsTable(t) {
  var running = t.jobs.filter(function (j) { return j.status === "running" || j.status === "pending"; });
  if (running.length === 0) return el("p", { class: "muted", text: "No job running. Latest: " + (t.jobs[0] ? t.jobs[0].kind + " " + t.jobs[0].status + " " + when(t.jobs[0].finishedAt || t.jobs[0].createdAt) : "none") });
  return el("table", { class: "jobs" }, [
    el("tr", null, ["Job", "Kind", "Status", "Progress", "Rows", "Failed", "Rate", "ETA", "Tokens", "Est. cost"].map(function (h) { return el("th", { text: h }); })),
  ].concat(running.map(function (j) {
    return el("tr", { "data-job": j.id }, [
      el("td", { text: j.id.slice(0, 8), title: j.id }),
      el("td", { text: j.kind }),
      el("td", { text: j.status }),
      el("td", { class: "progress" }, [bar(j.percent, "job"), el("span", { text: j.percent + "%" })]),
      el("td", { text: num(j.done) + " / " + num(j.itemsTotal) }),
      el("td", { text: num(j.itemsFailed) }),
      el("td", { text: j.averagePerMinute === null ? "-" : num(Math.round(j.averagePerMinute)) + " rows/min" }),
      el("td", { class: "eta", text: duration(j.etaSeconds) }),
      el("td", { text: num(j.tokens) }),
      el("td", { text: usd(j.estimatedCostUsd) }),
    ]);
  })));
}

function deadLetterSection(t, dead) {
  var items = dead ? dead.items : [];
  var head = el("h3", { text: "Dead letters (" + num(t.deadLetter) + ")" });
  if (t.deadLetter === 0) return el("div", null, [head, el("p", { class: "muted", text: "None." })]);
  var all = el("button", { class: "retry-all", type: "button", text: "Retry all dead letters" });
  all.addEventListener("click", function () { retry(t.target, null, all); });
  var rows = items.map(function (d) {
    var b = el("button", { class: "retry", type: "button", "data-id": d.id, text: "Retry" });
    b.addEventListener("click", function () { retry(t.target, [d.id], b); });
    return el("tr", { "data-row": d.id }, [
      el("td", { text: d.id }),
      el("td", { class: "error", text: d.error || "(no message)" }),
      el("td", { text: d.errorKind || "-" }),
      el("td", { text: String(d.attempts) }),
      el("td", { text: when(d.updatedAt) }),
      el("td", null, [b]),
    ]);
  });
  return el("div", { class: "dead-letters" }, [head, all, el("table", null, [
    el("tr", null, ["Row id", "Error", "Kind", "Attempts", "Failed at", ""].map(function (h) { return el("th", { text: h }); })),
  ].concat(rows))].concat(items.length < t.deadLetter ? [el("p", { class: "muted", text: "Showing the latest " + items.length + "." })] : []));
}

function targetCard(t, dead) {
  var eta = t.remaining === 0 ? "done" : duration(t.etaSeconds);
  return el("article", { class: "target", "data-target": t.target }, [
    el("h2", null, [t.target, el("small", { text: t.table + " · " + t.provider + "/" + t.model + " · " + t.dimensions + " dims" }), el("span", { class: "badge " + t.health.level, text: t.health.level })]),
    bar(t.coverage),
    el("p", { class: "coverage", text: t.coverage + "% embedded (" + num(t.embedded) + " of " + num(t.total) + " rows)" }),
    el("dl", { class: "figures" }, [
      figure("Pending", num(t.pending), "pending"),
      figure("Processing", num(t.processing), "processing"),
      figure("Waiting to retry", num(t.failed), "failed"),
      figure("Dead letters", num(t.deadLetter), "dead-letter"),
      figure("Not yet seen", num(t.untracked), "untracked"),
      figure("Completed but NULL", num(t.completedButNull), "completed-but-null"),
      figure("Rate (" + t.rate.windowMinutes + " min)", num(Math.round(t.rate.perMinute)) + " rows/min", "rate"),
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

function render(status, dead) {
  var overall = $("overall");
  overall.className = "badge " + status.health.level;
  overall.textContent = status.health.level;
  $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + " · refreshes every " + REFRESH_MS / 1000 + " s";
  var byTarget = {};
  dead.targets.forEach(function (d) { byTarget[d.target] = d; });
  var targets = $("targets");
  targets.replaceChildren.apply(targets, status.targets.length
    ? status.targets.map(function (t) { return targetCard(t, byTarget[t.target]); })
    : [el("p", { text: "No targets registered. Add one with: embeddings targets add <name> --table ..." })]);
}

function showLogin(message) {
  clearTimeout(timer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

function show(err) {
  if (err instanceof Refused) return showLogin(err.message);
  $("error").textContent = "Could not refresh: " + (err && err.message ? err.message : String(err));
}

function refresh() {
  clearTimeout(timer);
  return Promise.all([api("status"), api("dead-letters")]).then(function (r) {
    $("login").hidden = true;
    $("main").hidden = false;
    $("error").textContent = "";
    render(r[0], r[1]);
    timer = setTimeout(refresh, REFRESH_MS);
  }).catch(function (err) {
    show(err);
    if (!(err instanceof Refused)) timer = setTimeout(refresh, REFRESH_MS);
  });
}

$("login-form").addEventListener("submit", function (e) {
  e.preventDefault();
  sessionStorage.setItem(KEY, $("token").value.trim());
  $("token").value = "";
  refresh();
});
$("forget").addEventListener("click", function () { sessionStorage.removeItem(KEY); showLogin(""); });

if (token()) refresh(); else showLogin("");
`;

const BODY = `<header>
  <h1>Embeddings sync</h1>
  <span id="overall" class="badge">…</span>
  <span id="updated"></span>
  <button id="forget" type="button">Forget token</button>
</header>
<section id="login" hidden>
  <form id="login-form">
    <label>Admin token (EMBEDDINGS_ADMIN_TOKEN) <input id="token" type="password" autocomplete="off" required></label>
    <button type="submit">Open dashboard</button>
  </form>
  <p id="login-error" role="alert"></p>
</section>
<main id="main" hidden>
  <p id="notice" class="notice" role="status"></p>
  <p id="error" role="alert"></p>
  <div id="targets"></div>
</main>`;

const sha256 = (s: string) => `'sha256-${createHash("sha256").update(s).digest("base64")}'`;

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Embeddings sync</title>
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>`;

export const DASHBOARD_HEADERS: Record<string, string> = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "content-security-policy": [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
};
