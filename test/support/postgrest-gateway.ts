import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { buildCall, type PostgresApi, toSqlApiError } from "../../src/lib/db/postgres.js";
import type { ApiArg, SqlAdmin } from "../../src/lib/db/types.js";

/**
 * Just enough PostgREST for supabase-js `rpc()` against a real database: POST /rest/v1/rpc/:fn
 * runs the real SQL function the way PostgREST does, as the role the key maps to: in a transaction,
 * after `SET LOCAL ROLE service_role` (the service-role key's role), so every call has exactly the
 * rights a Supabase project gives that key. It answers as PostgREST does: 200 with the jsonb result,
 * or `{code, message, details, hint}` with the SQLSTATE as code and PostgREST's status for it. The
 * API gateway's key check is included (apikey + Bearer header). Only the `public` schema exists, as
 * in our deployments.
 */

export interface PostgrestGatewayOptions {
  /** The database; its pool runs the calls, its admin queries mimic PostgREST's schema-cache lookup. */
  db: PostgresApi;
  /** The role the service-role key maps to. */
  role?: string;
  serviceRoleKey: string;
}

export interface PostgrestGateway {
  /** Give this to createSupabaseApi({ url }). */
  url: string;
  /** Stops the HTTP server; the database transport stays open (the caller owns it). */
  close(): Promise<void>;
}

interface PgrstError {
  code: string;
  message: string;
  details: string | null;
  hint: string | null;
}

export async function startPostgrestGateway(options: PostgrestGatewayOptions): Promise<PostgrestGateway> {
  const { db } = options;
  const role = options.role ?? "service_role";
  const expectedKey = Buffer.from(options.serviceRoleKey);
  const keyMatches = (value: string | undefined) => {
    const given = Buffer.from(value ?? "");
    return given.length === expectedKey.length && timingSafeEqual(given, expectedKey);
  };
  // Signatures known to exist. Only hits are cached: a test may create the function afterwards.
  const known = new Set<string>();

  async function rpc(fn: string, args: Record<string, unknown>): Promise<[number, unknown]> {
    const names = Object.keys(args).sort();
    const signature = `${fn}(${names.join(",")})`;
    if (!known.has(signature)) {
      if (!(await functionExists(db, fn, names))) {
        return [
          404,
          pgrstError(
            "PGRST202",
            `Could not find the function public.${signature.replace(/,/g, ", ")} in the schema cache`,
            `Searched for the function public.${fn} with parameters ${names.join(", ") || "(none)"}, but no matches were found in the schema cache.`,
          ),
        ];
      }
      known.add(signature);
    }
    try {
      return [200, await callAs(db, role, fn, args as Record<string, ApiArg>)];
    } catch (err) {
      // The transport wraps database errors; PostgREST reports Postgres's own fields.
      const pgErr = ((err as { cause?: unknown }).cause ?? err) as {
        code?: string;
        message?: string;
        detail?: string;
        hint?: string;
      };
      if (typeof pgErr.code !== "string") throw err;
      const body: PgrstError = {
        code: pgErr.code,
        message: pgErr.message ?? "",
        details: pgErr.detail ?? null,
        hint: pgErr.hint ?? null,
      };
      return [statusFor(pgErr.code), body];
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The API gateway checks the key before PostgREST sees the request.
    const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (!keyMatches(header(req, "apikey")) || !keyMatches(bearer)) {
      return send(
        res,
        401,
        pgrstError("PGRST301", "Invalid API key", null, "Double check your service_role key."),
      );
    }
    const url = new URL(req.url ?? "/", "http://gateway");
    const match = /^\/rest\/v1\/rpc\/([^/]+)$/.exec(url.pathname);
    if (!match) return send(res, 404, pgrstError("PGRST125", "Invalid path specified in request URL"));
    if (req.method !== "POST")
      return send(res, 405, pgrstError("PGRST117", `Unsupported HTTP method: ${req.method}`));
    const profile = header(req, "content-profile");
    if (profile !== undefined && profile !== "public") {
      return send(res, 406, pgrstError("PGRST106", "The schema must be one of the following: public"));
    }
    const fn = decodeURIComponent(match[1]!);
    let args: unknown;
    try {
      const raw = await readBody(req);
      args = raw === "" ? {} : JSON.parse(raw);
    } catch {
      return send(res, 400, pgrstError("PGRST102", "Empty or invalid json"));
    }
    if (args === null || typeof args !== "object" || Array.isArray(args)) {
      return send(res, 400, pgrstError("PGRST102", "Empty or invalid json"));
    }
    const [status, body] = await rpc(fn, args as Record<string, unknown>);
    send(res, status, body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      send(res, 500, pgrstError("PGRST000", `gateway error: ${String(err)}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/** One call in its own transaction, as `role`, as PostgREST runs every request. */
async function callAs(
  db: PostgresApi,
  role: string,
  fn: string,
  args: Record<string, ApiArg>,
): Promise<unknown> {
  const { sql, values } = buildCall(fn, args);
  const client = await db.pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT set_config('role', $1, true)", [role]);
    const res = await client.query<{ result: unknown }>(sql, values);
    await client.query("COMMIT");
    client.release();
    return res.rows[0]?.result ?? null;
  } catch (err) {
    await client.query("ROLLBACK").then(
      () => client.release(),
      () => client.release(true),
    );
    throw toSqlApiError(err, fn);
  }
}

/**
 * PostgREST's schema-cache check: some public function of that name whose input arguments include
 * every given name and have defaults for the rest. Unsafe names never reach SQL (they are bound).
 */
async function functionExists(db: SqlAdmin, fn: string, names: string[]): Promise<boolean> {
  const rows = await db.query<{ ok: boolean }>(
    `SELECT EXISTS (
       SELECT 1
         FROM pg_proc p
         CROSS JOIN LATERAL (
           SELECT coalesce(array_agg(a.name) FILTER (WHERE a.mode IN ('i', 'b', 'v')), '{}') AS inputs,
                  coalesce(array_agg(a.name) FILTER (WHERE a.mode IN ('i', 'b', 'v')
                                                       AND a.ord <= p.pronargs - p.pronargdefaults), '{}') AS required
             FROM unnest(p.proargnames, coalesce(p.proargmodes::text[], array_fill('i'::text, ARRAY[coalesce(cardinality(p.proargnames), 0)])))
                  WITH ORDINALITY AS a(name, mode, ord)
         ) sig
        WHERE p.pronamespace = 'public'::regnamespace
          AND p.proname = $1
          AND sig.inputs @> $2::text[]
          AND $2::text[] @> sig.required
     ) AS ok`,
    [fn, names],
  );
  return rows[0]?.ok === true;
}

/** https://docs.postgrest.org/en/latest/references/errors.html#http-status-codes */
export function statusFor(code: string): number {
  if (/^PT\d{3}$/.test(code)) return Number(code.slice(2));
  const exact: Record<string, number> = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "53400": 500,
    P0001: 400,
    "42883": 404,
    "42P01": 404,
    "42P17": 500,
    "42501": 403,
  };
  if (exact[code]) return exact[code];
  const byClass: Record<string, number> = {
    "08": 503,
    "09": 500,
    "0L": 403,
    "0P": 403,
    "25": 500,
    "28": 403,
    "2D": 500,
    "38": 500,
    "39": 500,
    "3B": 500,
    "40": 500,
    "53": 503,
    "54": 500,
    "55": 500,
    "57": 500,
    "58": 500,
    F0: 500,
    HV: 500,
    P0: 500,
    XX: 500,
  };
  return byClass[code.slice(0, 2)] ?? 400;
}

function pgrstError(
  code: string,
  message: string,
  details: string | null = null,
  hint: string | null = null,
): PgrstError {
  return { code, message, details, hint };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body ?? null);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}
