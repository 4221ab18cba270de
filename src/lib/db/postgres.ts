import pg from "pg";
import type { ApiArg, SqlAdmin, SqlApi } from "./types.js";
import { encodeFloat4Array, VectorList } from "./vector.js";

/*
 * Shared by every transport (postgres, pglite, supabase): name checks, argument encoding and one
 * error shape, so a call behaves the same whichever way it reaches the database.
 */

/** Unquoted lower-case Postgres identifiers only: the one thing ever interpolated into SQL. */
const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/**
 * Every failure of a call, whatever the transport. `code` is the SQLSTATE (or PostgREST's PGRST code),
 * so `isRetryable` in src/lib/errors.ts classifies all transports alike; connection failures are
 * reported as 08006 even when the driver only knew an errno. The original error is the `cause`.
 */
export class SqlApiError extends Error {
  override name = "SqlApiError";
  readonly code: string;
  readonly details?: string;
  readonly hint?: string;
  /** The SQL API function being called, when the error came from `call`. */
  readonly fn?: string;

  constructor(
    message: string,
    fields: { code: string; details?: string | null; hint?: string | null; fn?: string; cause?: unknown },
  ) {
    super(fields.fn ? `${fields.fn}: ${message}` : message, { cause: fields.cause });
    this.code = fields.code;
    if (fields.details) this.details = fields.details;
    if (fields.hint) this.hint = fields.hint;
    if (fields.fn) this.fn = fields.fn;
  }
}

/** invalid_name: refused before anything is sent, and never retryable. */
export function assertIdentifier(kind: "function" | "argument", name: string): void {
  if (typeof name !== "string" || name.length > 63 || !IDENTIFIER.test(name)) {
    throw new SqlApiError(`invalid SQL API ${kind} name ${JSON.stringify(name)}`, { code: "42602" });
  }
}

/**
 * `SELECT public."fn"("a" => $1, "b" => $2) AS result` plus the encoded values. Arguments set to
 * `undefined` are left out so the function's SQL default applies (as JSON.stringify does for rpc).
 *
 * With `binaryVectors` (node-postgres, which sends a Buffer parameter in binary format), a VectorList
 * argument `p_x` becomes `p_x_f4` (every vector in one binary real[]) and `p_x_dims` (each vector's
 * length) instead of text literals: the SQL API functions that take vectors accept either form.
 */
export function buildCall(
  fn: string,
  args: Record<string, ApiArg | undefined>,
  options: { binaryVectors?: boolean } = {},
): { sql: string; values: unknown[] } {
  assertIdentifier("function", fn);
  const named: string[] = [];
  const values: unknown[] = [];
  for (const [name, value] of Object.entries(args)) {
    if (value === undefined) continue;
    assertIdentifier("argument", name);
    if (options.binaryVectors && value instanceof VectorList) {
      const { data, lengths } = encodeFloat4Array(value.vectors);
      values.push(data);
      named.push(`"${name}_f4" => $${values.length}`);
      values.push(arrayLiteral(lengths));
      named.push(`"${name}_dims" => $${values.length}`);
      continue;
    }
    values.push(encodeParam(value));
    // Quoted so names that are SQL keywords (limit, order) still parse; the check above rules out
    // quotes, so quoting cannot change which name is meant.
    named.push(`"${name}" => $${values.length}`);
  }
  return { sql: `SELECT public."${fn}"(${named.join(", ")}) AS result`, values };
}

/**
 * Encodes one parameter as Postgres text input, leaving the type to the server (inferred from the
 * function signature). pg and PGlite would each serialise JS arrays and objects their own way; one
 * encoding here makes text[] and jsonb arguments byte-identical on both.
 */
export function encodeParam(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "string":
      return value;
    case "number":
    case "bigint":
    case "boolean":
      return String(value);
  }
  if (Array.isArray(value)) return arrayLiteral(value);
  if (value instanceof VectorList) return arrayLiteral(value.toText());
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return value;
  return JSON.stringify(value);
}

/** `{"a,b","q\"uote",NULL}`: every element quoted, so commas, braces, blanks and the word NULL stay text. */
function arrayLiteral(values: readonly unknown[]): string {
  return `{${values.map(arrayElement).join(",")}}`;
}

function arrayElement(value: unknown): string {
  if (value === null || value === undefined) return "NULL";
  if (Array.isArray(value)) return arrayLiteral(value);
  const text = encodeParam(value);
  return `"${String(text).replace(/[\\"]/g, "\\$&")}"`;
}

const CONNECTION_ERRNOS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "EHOSTUNREACH",
]);
const CONNECTION_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|not queryable/i;

/**
 * Database errors keep their SQLSTATE; a lost or refused connection becomes 08006
 * (connection_failure) so it is retried like any other connection exception. Anything else
 * (a bug, a closed pool) is returned unchanged.
 */
export function toSqlApiError(err: unknown, fn?: string): unknown {
  if (err instanceof SqlApiError || !(err instanceof Error)) return err;
  const e = err as Error & { code?: unknown; detail?: string; hint?: string };
  if (typeof e.code === "string" && /^[0-9A-Z]{5}$/.test(e.code)) {
    return new SqlApiError(e.message, { code: e.code, details: e.detail, hint: e.hint, fn, cause: err });
  }
  if ((typeof e.code === "string" && CONNECTION_ERRNOS.has(e.code)) || CONNECTION_MESSAGES.test(e.message)) {
    return new SqlApiError(`database connection failed: ${e.message}`, { code: "08006", fn, cause: err });
  }
  return err;
}

/** int8 as a JS number when it fits (counts, ids), else a bigint: the same rule PGlite applies. */
function parseInt8(text: string): number | bigint {
  const n = BigInt(text);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

const INT8 = 20;
const INT8_ARRAY = 1016;
type TextParser = (text: string) => unknown;
const defaultParser = pg.types.getTypeParser as (oid: number, format?: "text" | "binary") => TextParser;
const parseInt8Array = defaultParser(INT8_ARRAY) as (text: string) => (string | null)[];

/** Per-pool parsers (pg.types is global and other code may rely on its defaults). */
const typeParsers = {
  getTypeParser: (oid: number, format?: "text" | "binary"): TextParser => {
    if (format !== "binary") {
      if (oid === INT8) return parseInt8;
      if (oid === INT8_ARRAY)
        return (text) => parseInt8Array(text).map((v) => (v === null ? null : parseInt8(v)));
    }
    return defaultParser(oid, format);
  },
} as pg.CustomTypesConfig;

export type PostgresApiOptions = pg.PoolConfig & {
  /** Pool size; default 10. Overrides `max`. */
  poolSize?: number;
};

export interface PostgresApi extends SqlApi, SqlAdmin {
  readonly kind: "postgres";
  /** The underlying pool, for callers that need a dedicated connection (LISTEN, COPY). */
  readonly pool: pg.Pool;
  transaction<T>(work: (tx: SqlApi) => Promise<T>): Promise<T>;
}

/** node-postgres sends Buffer parameters in binary format: vectors go as float4, not decimal text. */
const BINARY = { binaryVectors: true } as const;

/** SQL API over a direct connection (DATABASE_URL): one pg.Pool, unnamed statements, no introspection. */
export function createPostgresApi(config: string | PostgresApiOptions): PostgresApi {
  const options: PostgresApiOptions = typeof config === "string" ? { connectionString: config } : config;
  const { poolSize, ...poolConfig } = options;
  const pool = new pg.Pool({
    application_name: "embeddings-sync",
    types: typeParsers,
    ...poolConfig,
    max: poolSize ?? poolConfig.max ?? 10,
  });
  // An idle client that loses its connection emits 'error' on the pool; unhandled, that would
  // crash the process. The next checkout reconnects, and a failing query reports 08006 itself.
  pool.on("error", () => {});
  let closing: Promise<void> | undefined;

  return {
    kind: "postgres",
    pool,

    async call<T = unknown>(fn: string, args: Record<string, ApiArg | undefined>): Promise<T> {
      const { sql, values } = buildCall(fn, args, BINARY);
      try {
        const res = await pool.query<{ result: T }>(sql, values);
        return (res.rows[0]?.result ?? null) as T;
      } catch (err) {
        throw toSqlApiError(err, fn);
      }
    },

    async transaction<T>(work: (tx: SqlApi) => Promise<T>): Promise<T> {
      const client = await pool.connect().catch((err: unknown) => {
        throw toSqlApiError(err);
      });
      const tx: SqlApi = {
        kind: "postgres",
        async call<R = unknown>(fn: string, args: Record<string, ApiArg | undefined>): Promise<R> {
          const { sql, values } = buildCall(fn, args, BINARY);
          try {
            const res = await client.query<{ result: R }>(sql, values);
            return (res.rows[0]?.result ?? null) as R;
          } catch (err) {
            throw toSqlApiError(err, fn);
          }
        },
        transaction: (inner) => inner(tx),
        close: async () => undefined,
      };
      try {
        await client.query("BEGIN");
        const result = await work(tx);
        await client.query("COMMIT");
        client.release();
        return result;
      } catch (err) {
        await client.query("ROLLBACK").then(
          () => client.release(),
          (rollbackErr: unknown) => client.release(rollbackErr instanceof Error ? rollbackErr : true),
        );
        throw toSqlApiError(err);
      }
    },

    async exec(sql: string): Promise<void> {
      const client = await pool.connect().catch((err: unknown) => {
        throw toSqlApiError(err);
      });
      try {
        // No parameters: pg uses the simple query protocol, which accepts several statements.
        await client.query(sql);
        client.release();
      } catch (err) {
        // A script that failed after its own BEGIN leaves the session in an aborted transaction;
        // end it before the connection goes back to the pool (a no-op warning otherwise).
        await client.query("ROLLBACK").then(
          () => client.release(),
          (rollbackErr: unknown) => client.release(rollbackErr instanceof Error ? rollbackErr : true),
        );
        throw toSqlApiError(err);
      }
    },

    async query<R = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> {
      try {
        const res = await pool.query(sql, params.map(encodeParam));
        return res.rows as R[];
      } catch (err) {
        throw toSqlApiError(err);
      }
    },

    close(): Promise<void> {
      closing ??= pool.end();
      return closing;
    },
  };
}
