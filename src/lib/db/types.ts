/**
 * Data access goes through the SQL API only: functions defined in supabase/migrations, called by
 * name with named arguments. Every API function returns one jsonb value, so the same call works
 * over a direct Postgres connection (`SELECT fn(a => $1, ...)`) and over supabase-js
 * (`supabase.rpc(fn, args)`, PostgREST), and in embedded PGlite.
 */
export type TransportKind = "postgres" | "supabase" | "pglite";

import type { VectorList } from "./vector.js";

/**
 * Argument values: scalars, arrays of scalars (sent as SQL arrays), plain objects (sent as jsonb), or
 * the vectors of a write (each transport encodes those its own way, see VectorList).
 */
export type ApiArg =
  | VectorList
  | string
  | number
  | boolean
  | null
  | readonly (string | number | null)[]
  | Record<string, unknown>;

export interface SqlApi {
  readonly kind: TransportKind;
  /** Call one SQL API function by name; resolves to its jsonb result (already parsed). */
  call<T = unknown>(fn: string, args: Record<string, ApiArg | undefined>): Promise<T>;
  /**
   * Several calls in one transaction, each its own statement (so a statement timeout bounds each
   * call, not the whole). Direct transports only: over PostgREST every call is its own transaction.
   */
  transaction?<T>(work: (tx: SqlApi) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Raw SQL for setting up (migrations, demo tables). Only direct transports have it: a Supabase
 * project is migrated with `supabase db push`, not by this service.
 */
export interface SqlAdmin {
  exec(sql: string): Promise<void>;
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
}
