/**
 * The served endpoint as the executor sees it: the Hono app reached with `app.request()`, requests
 * signed as Inngest Cloud signs them, the function configs it syncs, and raw calls for tests that
 * speak the protocol by hand. No run state here.
 */
import { randomUUID } from "node:crypto";
import {
  type FunctionConfig,
  type HarnessOptions,
  type RawCallOptions,
  type RawCallResult,
  type RunEvent,
  signBody,
} from "./protocol.js";

const HOST = "http://harness.local";

const resolve = <T>(value: T | (() => T)): T => (typeof value === "function" ? (value as () => T)() : value);

export const parseJson = (text: string): unknown => {
  try {
    return text === "" ? null : JSON.parse(text);
  } catch {
    return text;
  }
};

export class Endpoint {
  readonly #options: HarnessOptions;
  readonly #path: string;
  #appId: string | undefined;
  #configs: FunctionConfig[] | undefined;
  #syncing: Promise<FunctionConfig[]> | undefined;

  constructor(options: HarnessOptions) {
    this.#options = options;
    this.#path = options.path ?? "/api/inngest";
    this.#appId = options.appId;
  }

  /** Undefined until the first sync. */
  get configs(): readonly FunctionConfig[] | undefined {
    return this.#configs;
  }

  async ensureSynced(): Promise<void> {
    if (this.#configs) return;
    this.#syncing ??= this.#sync();
    await this.#syncing;
  }

  /** Forgets the configs and syncs again (a redeploy). */
  async resync(): Promise<FunctionConfig[]> {
    this.#configs = undefined;
    this.#syncing = undefined;
    await this.ensureSynced();
    return this.#configs ?? [];
  }

  async #sync(): Promise<FunctionConfig[]> {
    const options = this.#options;
    if (!this.#appId && options.client) this.#appId = resolve(options.client).id;
    if (options.functions) {
      const appPrefix = this.#appId;
      if (!appPrefix) throw new Error("harness: pass appId or client together with functions");
      this.#configs = resolve(options.functions).flatMap((fn) => {
        const getConfig = (fn as { getConfig?: (o: object) => FunctionConfig[] }).getConfig;
        if (typeof getConfig !== "function") throw new Error("harness: functions must be Inngest functions");
        return getConfig.call(fn, { baseUrl: new URL(`${HOST}${this.#path}`), appPrefix });
      });
      return this.#configs;
    }
    // In-band sync: the endpoint answers a PUT with its function configs, as it does for Inngest Cloud.
    const res = await this.request("PUT", "", JSON.stringify({ url: `${HOST}${this.#path}` }), {
      signingKey: options.signingKey,
      headers: { "x-inngest-sync-kind": "in_band" },
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`harness: in-band sync failed with ${res.status}: ${text}`);
    const body = JSON.parse(text) as { app_id?: string; functions?: FunctionConfig[] };
    if (!body.functions) throw new Error(`harness: in-band sync returned no functions: ${text}`);
    if (this.#appId && body.app_id && body.app_id !== this.#appId) {
      throw new Error(`harness: endpoint serves app "${body.app_id}", expected "${this.#appId}"`);
    }
    this.#appId = this.#appId ?? body.app_id;
    this.#configs = body.functions;
    return this.#configs;
  }

  /** The function id without the `<appId>-` prefix the configs carry. */
  shortId(slug: string): string {
    const appId = this.#appId;
    return appId && slug.startsWith(`${appId}-`) ? slug.slice(appId.length + 1) : slug;
  }

  /** The config of a function by short id (or full slug). */
  find(fnId: string): FunctionConfig {
    const configs = this.#configs ?? [];
    const found =
      configs.find((c) => c.id === `${this.#appId}-${fnId}`) ?? configs.find((c) => c.id === fnId);
    if (!found) {
      const known = configs.map((c) => this.shortId(c.id)).join(", ");
      throw new Error(`harness: no function "${fnId}" served (known: ${known})`);
    }
    return found;
  }

  request(
    method: "GET" | "POST" | "PUT",
    query: string,
    bodyText: string,
    { signingKey, headers: extra = {} }: { signingKey?: string; headers?: Record<string, string> } = {},
  ): Promise<Response> | Response {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "x-inngest-server-kind": signingKey ? "cloud" : "dev",
      ...extra,
    };
    // Signatures carry real time: the SDK checks them against its own clock.
    if (signingKey) headers["x-inngest-signature"] = signBody(bodyText, signingKey);
    const init: RequestInit = { method, headers };
    if (method !== "GET") init.body = bodyText;
    return resolve(this.#options.app).request(`${HOST}${this.#path}${query}`, init);
  }

  /** One request built from `call` (or its verbatim `body`), outside any run. */
  async rawCall(call: RawCallOptions, event: RunEvent, maxAttempts: number): Promise<RawCallResult> {
    const signingKey = this.#options.signingKey;
    const slug = this.#configs?.some((c) => c.id === `${this.#appId}-${call.fnId}`)
      ? `${this.#appId}-${call.fnId}`
      : call.fnId;
    const method = call.method ?? "POST";
    const bodyText =
      method === "GET"
        ? ""
        : JSON.stringify(
            call.body ?? {
              version: -1,
              event,
              events: [event],
              steps: call.steps ?? {},
              ctx: {
                run_id: `raw-${randomUUID()}`,
                attempt: call.attempt ?? 0,
                max_attempts: maxAttempts,
                disable_immediate_execution: false,
                use_api: false,
                stack: { stack: Object.keys(call.steps ?? {}), current: 0 },
              },
            },
          );
    const sign = call.sign ?? Boolean(signingKey);
    if (sign && !signingKey) throw new Error("harness: rawCall sign requested without signingKey");
    const query =
      method === "POST"
        ? `?fnId=${encodeURIComponent(slug)}&stepId=${encodeURIComponent(call.stepId ?? "step")}`
        : "";
    const started = performance.now();
    const res = await this.request(method, query, bodyText, {
      ...(sign ? { signingKey } : {}),
      ...(call.headers ? { headers: call.headers } : {}),
    });
    const text = await res.text();
    return {
      status: res.status,
      headers: Object.fromEntries(res.headers.entries()),
      text,
      body: parseJson(text),
      ms: performance.now() - started,
    };
  }
}
