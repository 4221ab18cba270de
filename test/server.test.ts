import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/http/app.js";
import { loadConfig } from "../src/lib/config.js";

/**
 * The server fails fast on an Inngest configuration it could not serve, and an unsigned sync
 * (`PUT /api/inngest`) can never point Inngest at another URL. The real `src/server.ts` process, and
 * the real served app with the SDK's sync against a loopback stand-in for Inngest's register API.
 */

const ROOT = join(import.meta.dirname, "..");
const SIGNING_KEY = `signkey-prod-${"cd".repeat(32)}`;

function runServer(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "src", "server.ts")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_LEVEL: "silent", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    // Hang guard only: a server that started would never exit by itself.
    const guard = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(guard);
      resolve({ code, stderr });
    });
  });
}

describe("server start-up", () => {
  it("refuses to start with neither a signing key nor INNGEST_DEV, naming both fixes", async () => {
    const r = await runServer({ DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("INNGEST_SIGNING_KEY is not set");
    expect(r.stderr).toContain("INNGEST_DEV=1");
  });

  it("refuses a serve origin that is not a URL, saying what it must be", async () => {
    const r = await runServer({
      INNGEST_DEV: "1",
      INNGEST_SERVE_ORIGIN: "embeddings.example.com:3000",
      DATABASE_URL: "postgres://nobody@127.0.0.1:1/none",
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("INNGEST_SERVE_ORIGIN");
    expect(r.stderr).toContain("https://embeddings.example.com");
  });
  it("a database it cannot reach stops it with the reason and exit 4, never the password", async () => {
    const r = await runServer({
      INNGEST_DEV: "1",
      DATABASE_URL: "postgres://app:s3cret-pw@127.0.0.1:1/none",
    });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^cannot open the database: database connection failed: .*ECONNREFUSED/);
    expect(r.stderr).not.toContain("s3cret-pw");
  });
});

describe("syncing the app with Inngest", () => {
  let registry: Server;
  let registered: { url: string; functions: { steps: Record<string, { runtime: { url: string } }> }[] }[];
  let baseUrl = "";

  beforeAll(async () => {
    registered = [];
    registry = createServer(async (req: IncomingMessage, res) => {
      let body = "";
      for await (const chunk of req) body += chunk;
      if (req.method === "POST" && req.url?.startsWith("/fn/register")) {
        registered.push(JSON.parse(body));
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ ok: true, modified: true }));
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => registry.listen(0, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${(registry.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => registry.close(() => r())));

  const appWith = (env: Record<string, string>) =>
    buildApp({
      config: loadConfig({ LOG_LEVEL: "silent", INNGEST_BASE_URL: baseUrl, ...env }),
      context: () => Promise.reject(new Error("a sync needs no database")),
      providerFor: () => {
        throw new Error("a sync needs no provider");
      },
    }).app;

  it("in cloud mode without a pinned origin, an unsigned sync is refused and registers nothing", async () => {
    registered.length = 0;
    const app = appWith({ INNGEST_SIGNING_KEY: SIGNING_KEY });
    const res = await app.fetch(new Request("http://attacker.example:3000/api/inngest", { method: "PUT" }));
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(registered).toHaveLength(0);
  });

  it("with INNGEST_SERVE_ORIGIN, a sync registers the pinned URL whatever the Host header says", async () => {
    registered.length = 0;
    const app = appWith({
      INNGEST_SIGNING_KEY: SIGNING_KEY,
      INNGEST_SERVE_ORIGIN: "https://embeddings.example.com",
    });
    const res = await app.fetch(
      new Request("http://attacker.example:3000/api/inngest", {
        method: "PUT",
        headers: { host: "attacker.example:3000" },
      }),
    );
    expect(res.status).toBe(200);
    expect(registered).toHaveLength(1);
    expect(registered[0]!.url).toBe("https://embeddings.example.com/api/inngest");
    const urls = registered[0]!.functions.flatMap((f) => Object.values(f.steps).map((s) => s.runtime.url));
    expect(urls.length).toBeGreaterThan(0);
    expect(urls.every((u) => u.startsWith("https://embeddings.example.com/api/inngest?"))).toBe(true);
  });

  it("without a pinned origin in dev mode, a sync uses the request's own URL (the dev server's case)", async () => {
    registered.length = 0;
    const app = appWith({ INNGEST_DEV: baseUrl });
    const res = await app.fetch(new Request("http://localhost:3000/api/inngest", { method: "PUT" }));
    expect(res.status).toBe(200);
    expect(registered[0]?.url).toBe("http://localhost:3000/api/inngest");
  });
});
