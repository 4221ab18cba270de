import { createClient } from "@supabase/supabase-js";
import { assertIdentifier, SqlApiError } from "./postgres.js";
import type { ApiArg, SqlApi } from "./types.js";

export interface SupabaseApiOptions {
  /** Project URL, e.g. https://xyz.supabase.co */
  url: string;
  serviceRoleKey: string;
  fetch?: typeof fetch;
}

/**
 * Answers that mean "the database cannot be reached right now": no response at all (status 0),
 * rate limiting and gateway errors without a body code, and PostgREST's own connection, pool and
 * schema-cache codes. Reported as 08006 so they are retried like a dropped direct connection.
 */
const UNAVAILABLE_STATUS = new Set([0, 429, 502, 503, 504]);
const UNAVAILABLE_PGRST = new Set(["PGRST000", "PGRST001", "PGRST002", "PGRST003"]);

/** PostgREST forwards the SQLSTATE as `code`; only answers without one need a code chosen here. */
function errorCode(status: number, code: string): string {
  if (UNAVAILABLE_PGRST.has(code)) return "08006";
  if (code) return code;
  if (UNAVAILABLE_STATUS.has(status)) return "08006";
  // The gateway refused the request body as too large: program_limit_exceeded, so the pipeline
  // splits the batch (src/lib/core/adaptive.ts) instead of retrying it at the same size.
  if (status === 413) return "54000";
  // The API gateway's "Invalid API key" has no code: invalid_authorization_specification.
  if (status === 401 || status === 403) return "28000";
  return "XX000";
}

/** SQL API over supabase-js: `rpc(fn, args)`, i.e. POST /rest/v1/rpc/fn with the named args as JSON. */
export function createSupabaseApi(options: SupabaseApiOptions): SqlApi {
  const { serviceRoleKey } = options;
  if (!serviceRoleKey) throw new Error("createSupabaseApi: serviceRoleKey is required");
  const client = createClient(options.url, serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: options.fetch ? { fetch: options.fetch } : {},
  });
  // Nothing we build includes the key, but a proxy or fetch error might echo a header back.
  const redact = (text: string | null | undefined): string | undefined =>
    text ? text.split(serviceRoleKey).join("[redacted]") : undefined;

  return {
    kind: "supabase",

    async call<T = unknown>(fn: string, args: Record<string, ApiArg | undefined>): Promise<T> {
      assertIdentifier("function", fn);
      const body: Record<string, ApiArg> = {};
      for (const [name, value] of Object.entries(args)) {
        if (value === undefined) continue;
        assertIdentifier("argument", name);
        body[name] = value;
      }
      const { data, error, status } = await client.rpc(fn, body);
      if (!error) return (data ?? null) as T;
      const code = errorCode(status, typeof error.code === "string" ? error.code : "");
      throw new SqlApiError(redact(error.message) ?? `HTTP ${status}`, {
        code,
        details: redact(error.details),
        hint: redact(error.hint),
        fn,
      });
    },

    async close(): Promise<void> {
      await client.removeAllChannels();
    },
  };
}
