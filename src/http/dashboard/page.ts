import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";

/**
 * The dashboard: one static page, no front-end build step for users. Its script (client.ts, a
 * checked TypeScript module) is bundled by esbuild once, when this module loads, and inlined with
 * the stylesheet; the Content-Security-Policy allows exactly that script and style (by hash) and
 * requests to this origin. The page itself holds no data, so serving it needs no token.
 */

const here = (name: string) => fileURLToPath(new URL(name, import.meta.url));

function bundleClient(): string {
  // Sources in a checkout; tsc's output of the same module in dist/.
  const entry = existsSync(here("client.ts")) ? here("client.ts") : here("client.js");
  const result = buildSync({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: "iife",
    target: "es2020",
    charset: "utf8",
    legalComments: "none",
  });
  return result.outputFiles[0]!.text;
}

const SCRIPT = bundleClient();
const STYLE = readFileSync(here("style.css"), "utf8");

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
