import { loadConfig } from "../src/lib/config.js";
import type { PostgresApi } from "../src/lib/db/postgres.js";
import type { ApiArg, SqlApi } from "../src/lib/db/types.js";
import type { EmbeddingProvider } from "../src/lib/providers/provider.js";
import type { TimedCalls, WorkerTask } from "./worker.js";

/** What the worker modes share: the stopwatches on the SQL API and the provider, memory and CPU sampling, config. */

export const API_KEY = "sk-bench-not-a-real-key";

function rssMb(): number {
  return process.memoryUsage().rss / (1024 * 1024);
}

/** Samples rss every 50 ms: a cheap call (reads /proc), so it does not disturb the run. */
export function memorySampler(rows: number) {
  const start = rssMb();
  const cpuStart = process.cpuUsage();
  let peak = start;
  let done = 0;
  const byProgress: [number, number][] = [];
  let nextMark = 0.1;
  const timer = setInterval(() => {
    const now = rssMb();
    if (now > peak) peak = now;
  }, 50);
  timer.unref();
  return {
    start,
    progress(n: number) {
      done += n;
      while (rows > 0 && done / rows >= nextMark - 1e-9 && nextMark <= 1.0001) {
        byProgress.push([Number(nextMark.toFixed(1)), Math.round(rssMb())]);
        nextMark += 0.1;
      }
    },
    stop() {
      clearInterval(timer);
      peak = Math.max(peak, rssMb());
      const cpu = process.cpuUsage(cpuStart);
      return { peak, byProgress, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
    },
  };
}

/**
 * Wall time during which at least one database or provider call was in flight: with calls from
 * several lanes overlapping, the rest of the run's wall time is what neither the database nor the
 * provider accounts for (the Inngest path's SDK, Hono and executor work that no call hides).
 */
export class BusyClock {
  private inFlight = 0;
  private since = 0;
  ms = 0;

  enter(): void {
    if (this.inFlight++ === 0) this.since = performance.now();
  }

  leave(): void {
    if (--this.inFlight === 0) this.ms += performance.now() - this.since;
  }

  reset(): void {
    this.ms = 0;
    if (this.inFlight > 0) this.since = performance.now();
  }
}

function stopwatch(
  call: SqlApi["call"],
  into: Record<string, TimedCalls>,
  errors?: Record<string, number>,
  busy?: BusyClock,
): <T = unknown>(fn: string, args: Record<string, ApiArg | undefined>) => Promise<T> {
  return async <T = unknown>(fn: string, args: Record<string, ApiArg | undefined>): Promise<T> => {
    const t0 = performance.now();
    busy?.enter();
    try {
      return await call<T>(fn, args);
    } catch (err) {
      if (errors) {
        const key = `${fn} ${(err as { code?: string }).code ?? "error"}`;
        errors[key] = (errors[key] ?? 0) + 1;
      }
      throw err;
    } finally {
      busy?.leave();
      into[fn] ??= { calls: 0, ms: 0 };
      const entry = into[fn];
      entry.calls++;
      entry.ms += performance.now() - t0;
    }
  };
}

/**
 * The SQL API with a stopwatch per function: where the database time goes. Calls inside a
 * transaction (a chunk swap's begin / part / end) are timed one by one too. With `errors`, failed
 * calls are counted by function and SQLSTATE ("embedding_chunk_write 57014"); with `busy`, each call
 * also holds that clock.
 */
export function timedApi(
  api: PostgresApi,
  into: Record<string, TimedCalls>,
  errors?: Record<string, number>,
  busy?: BusyClock,
): PostgresApi {
  return {
    ...api,
    kind: api.kind,
    pool: api.pool,
    call: stopwatch((fn, args) => api.call(fn, args), into, errors, busy),
    transaction: (work) =>
      api.transaction((tx) =>
        work({ ...tx, call: stopwatch((fn, args) => tx.call(fn, args), into, errors, busy) } as SqlApi),
      ),
    exec: (sql) => api.exec(sql),
    query: (sql, params) => api.query(sql, params),
    close: () => api.close(),
  };
}

export function timedProvider(
  inner: EmbeddingProvider,
  into: TimedCalls,
  busy?: BusyClock,
): EmbeddingProvider {
  return {
    name: inner.name,
    model: inner.model,
    dimensions: inner.dimensions,
    maxInputTokens: inner.maxInputTokens,
    async embed(texts, options) {
      const t0 = performance.now();
      busy?.enter();
      try {
        return await inner.embed(texts, options);
      } finally {
        busy?.leave();
        into.calls++;
        into.ms += performance.now() - t0;
      }
    },
  };
}

export function benchConfig(task: WorkerTask) {
  return loadConfig({
    OPENAI_API_KEY: API_KEY,
    OPENAI_BASE_URL: task.fakeUrl,
    EMBEDDINGS_RPM: task.rpm === undefined ? undefined : String(task.rpm),
    EMBEDDINGS_TPM: task.tpm === undefined ? undefined : String(task.tpm),
    DATABASE_URL: task.dbUrl,
    DATABASE_POOL_SIZE: String(task.parallelism + 2),
    INNGEST_DEV: "1",
    LOG_LEVEL: "silent",
  });
}
