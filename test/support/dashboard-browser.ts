import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll } from "vitest";
import { buildApp } from "../../src/http/app.js";
import { providerForTarget } from "../../src/lib/providers/index.js";
import { testConfig, testContext } from "./app.js";
import type { TestDb } from "./fixtures.js";

/** Debian's chromium, driven by playwright-core (nothing is downloaded). Tests skip without it. */
export const CHROMIUM = "/usr/bin/chromium";
export const hasChromium = existsSync(CHROMIUM);
export const SKIPPED = hasChromium
  ? ""
  : ` (skipped: ${CHROMIUM} is not installed; apt-get install -y chromium)`;
/** Where the screenshots go. */
export const OUT = join(process.cwd(), "test-output");

/**
 * The real app on a real socket over `db`, with `token` as its admin token, and headless Chromium:
 * started before the file's tests, closed after them.
 */
export function useDashboardBrowser(
  db: TestDb,
  token: string,
): { base: () => string; browser: () => Browser } {
  let server: ServerType | undefined;
  let base = "";
  let browser: Browser | undefined;
  beforeAll(async () => {
    if (!hasChromium) return;
    await mkdir(OUT, { recursive: true });
    const config = testConfig({ EMBEDDINGS_ADMIN_TOKEN: token });
    const context = testContext(db, config);
    const { app } = buildApp({
      config,
      context: async () => context,
      providerFor: (t) => providerForTarget(t, config),
    });
    const port = await new Promise<number>((resolve) => {
      server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
        resolve(info.port),
      );
    });
    base = `http://127.0.0.1:${port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
  });
  return { base: () => base, browser: () => browser! };
}
