/// <reference lib="dom" />
/**
 * The dashboard's browser script. Bundled by esbuild when the server starts (page.ts) and inlined
 * into the page, whose Content-Security-Policy allows exactly this script by hash. It fetches the
 * authenticated JSON endpoints with the admin token, which it asks for once and keeps in
 * sessionStorage (or takes from ?token= and removes from the address bar at once, so it does not
 * stay in history or get shared with a copied link). Every value from the API goes into the page
 * with textContent, never as HTML: an error message quoting a row cannot inject markup.
 */
import { el } from "./dom.js";
import type { TargetHistories } from "./history-view.js";
import { COST_RANGE, RANGES, type Range } from "./series.js";
import type { DeadLetters, Status, TargetHistory } from "./types.js";
import { targetCard } from "./views.js";

const KEY = "embeddings-admin-token";
const REFRESH_MS = 5000;
/** Jobs per target in the job history table (GET /status?jobs=). */
const JOBS = 20;
/** Dead letters fetched per target: a class's retry re-queues the ones shown. */
const DEAD_LETTERS = 500;
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

/** What the operator chose per target (chart range, error class); kept across refreshes. */
const ranges = new Map<string, Range>();
const classes = new Map<string, string | null>();
let last:
  | { status: Status; dead: DeadLetters; histories: Map<string, TargetHistories | undefined> }
  | undefined;

const rangeOf = (target: string) => ranges.get(target) ?? RANGES[0]!;

async function histories(status: Status): Promise<Map<string, TargetHistories | undefined>> {
  const read = (target: string, r: Range) =>
    api<TargetHistory>(`history?${new URLSearchParams({ target, since: r.since, step: r.step }).toString()}`);
  const pairs = await Promise.all(
    status.targets.map(async (t) => {
      // A target whose history cannot be read (its table dropped) shows no charts, not a dead page.
      const both = await Promise.all([read(t.target, rangeOf(t.target)), read(t.target, COST_RANGE)]).catch(
        (err: unknown) => {
          if (err instanceof Refused) throw err;
          return null;
        },
      );
      return [t.target, both ? { range: both[0], cost: both[1] } : undefined] as const;
    }),
  );
  return new Map(pairs);
}

function render(status: Status, dead: DeadLetters, hist: Map<string, TargetHistories | undefined>): void {
  last = { status, dead, histories: hist };
  const overall = $("overall");
  overall.className = `badge ${status.health.level}`;
  overall.textContent = status.health.level;
  $("updated").textContent =
    `Updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`;
  const byTarget = new Map(dead.targets.map((d) => [d.target, d]));
  $("targets").replaceChildren(
    ...(status.targets.length
      ? status.targets.map((t) =>
          targetCard(t, {
            dead: byTarget.get(t.target),
            history: hist.get(t.target),
            end: status.generatedAt,
            range: rangeOf(t.target),
            errorClass: classes.get(t.target) ?? null,
            retry: (target, ids, button) => void retry(target, ids, button),
            chooseRange: (target, key) => {
              ranges.set(target, RANGES.find((r) => r.key === key) ?? RANGES[0]!);
              void refresh();
            },
            chooseClass: (target, errorClass) => {
              classes.set(target, errorClass);
              if (last) render(last.status, last.dead, last.histories);
            },
          }),
        )
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
    const [status, dead] = await Promise.all([
      api<Status>(`status?jobs=${JOBS}`),
      api<DeadLetters>(`dead-letters?limit=${DEAD_LETTERS}`),
    ]);
    const hist = await histories(status);
    $("login").hidden = true;
    $("main").hidden = false;
    $("error").textContent = "";
    render(status, dead, hist);
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
