import { mkdir } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { vector } from "@electric-sql/pglite-pgvector";
import { buildCall, encodeParam, toSqlApiError } from "./postgres.js";
import type { ApiArg, SqlAdmin, SqlApi } from "./types.js";

export interface PGliteApiOptions {
  /** Directory for the database files; undefined = in memory. The app passes ./.data/pglite. */
  dataDir?: string;
  /** Start from a `dumpDataDir()` tarball instead of running initdb (tests clone a migrated template). */
  loadDataDir?: Blob;
}

export interface PGliteApi extends SqlApi, SqlAdmin {
  readonly kind: "pglite";
  /** The embedded database, e.g. for `dumpDataDir()`. */
  readonly pglite: PGlite;
}

/** Embedded Postgres (WASM) with pgvector loaded, for local runs and tests without a server. */
export async function createPGliteApi(options: PGliteApiOptions = {}): Promise<PGliteApi> {
  let dataDir = options.dataDir;
  // "memory://" and "idb://" are PGlite's own schemes; anything else is a directory on disk.
  if (dataDir !== undefined && !dataDir.includes("://")) {
    dataDir = resolve(dataDir);
    await mkdir(dirname(dataDir), { recursive: true });
  }
  const db = await PGlite.create({
    dataDir,
    loadDataDir: options.loadDataDir,
    extensions: { vector },
  });
  const api = wrap(db);
  try {
    await api.exec("CREATE EXTENSION IF NOT EXISTS vector");
  } catch (err) {
    await db.close();
    throw err;
  }
  return api;
}

function wrap(db: PGlite): PGliteApi {
  // PGlite is one session and queues its own queries; this queue exists so that exec's recovery
  // (ROLLBACK after a failed script) runs before any other caller's statement can land in the
  // aborted transaction.
  let tail: Promise<unknown> = Promise.resolve();
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const run = tail.then(task, task);
    tail = run.catch(() => undefined);
    return run;
  };
  let closing: Promise<void> | undefined;

  return {
    kind: "pglite",
    pglite: db,

    async call<T = unknown>(fn: string, args: Record<string, ApiArg | undefined>): Promise<T> {
      const { sql, values } = buildCall(fn, args);
      return serial(async () => {
        try {
          const res = await db.query<{ result: T }>(sql, values);
          return (res.rows[0]?.result ?? null) as T;
        } catch (err) {
          throw toSqlApiError(err, fn);
        }
      });
    },

    transaction<T>(work: (tx: SqlApi) => Promise<T>): Promise<T> {
      return serial(() =>
        db.transaction(async (t) => {
          const tx: SqlApi = {
            kind: "pglite",
            async call<R = unknown>(fn: string, args: Record<string, ApiArg | undefined>): Promise<R> {
              const { sql, values } = buildCall(fn, args);
              try {
                const res = await t.query<{ result: R }>(sql, values);
                return (res.rows[0]?.result ?? null) as R;
              } catch (err) {
                throw toSqlApiError(err, fn);
              }
            },
            transaction: (inner) => inner(tx),
            close: async () => undefined,
          };
          return work(tx);
        }),
      );
    },

    exec(sql: string): Promise<void> {
      return serial(async () => {
        try {
          await db.exec(sql);
        } catch (err) {
          if (db.isInTransaction()) await db.exec("ROLLBACK");
          throw toSqlApiError(err);
        }
      });
    },

    query<R = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<R[]> {
      return serial(async () => {
        try {
          const res = await db.query<R>(sql, params.map(encodeParam));
          return res.rows;
        } catch (err) {
          throw toSqlApiError(err);
        }
      });
    },

    close(): Promise<void> {
      closing ??= serial(() => (db.closed ? Promise.resolve() : db.close()));
      return closing;
    },
  };
}
