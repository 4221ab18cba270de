import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createPostgresApi } from "../src/lib/db/postgres.js";
import { EmbeddingStore } from "../src/lib/db/store.js";
import type { Job } from "../src/lib/types.js";
import { registerBenchTarget, TARGET } from "./data.js";
import { API_KEY } from "./instruments.js";
import { procTimes } from "./pg.js";
import { track } from "./processes.js";
import type { WorkerResult, WorkerTask } from "./worker.js";

/**
 * The cli scenarios: `embeddings run <target> --batch-size B --parallelism P --json` exactly as an
 * operator runs it (src/cli/main.ts through tsx, a process of its own, configured only by its
 * environment), against the bench database and the fake provider. Started from bench/run.ts itself,
 * not from a worker, so that killChildren() reaches it and so that its CPU time lands in this
 * process's reaped-children counters when it exits (nothing else exits meanwhile: runWorker waits
 * for each worker's exit).
 *
 * Timed from the job row: created → finished (what the pipeline rows time in-process: job creation,
 * seeding, batches, finish). Process start to exit, which adds Node + tsx start-up, connecting and
 * the run's estimate, is kept as `cli.wallMs`.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const MAIN = join(ROOT, "src", "cli", "main.ts");
const CLOCK_TICKS = 100;

export interface CliStats {
  /** Process start to exit. */
  wallMs: number;
  /** The job row: createdAt → finishedAt. */
  jobMs: number;
  jobId: string;
  status: string;
}

/** VmHWM (peak resident set) and VmRSS of a live process, in MB; null once it is gone. */
async function memoryOf(pid: number): Promise<{ hwm: number; rss: number } | null> {
  const text = await readFile(`/proc/${pid}/status`, "utf8").catch(() => null);
  if (!text) return null;
  const kb = (field: string) => Number(text.match(new RegExp(`^${field}:\\s+(\\d+)`, "m"))?.[1] ?? 0);
  return { hwm: kb("VmHWM") / 1024, rss: kb("VmRSS") / 1024 };
}

async function reapedCpuSeconds(): Promise<number> {
  const t = await procTimes(process.pid);
  return t ? t.reaped / CLOCK_TICKS : 0;
}

export async function runCli(task: Omit<WorkerTask, "mode">, timeoutMs: number): Promise<WorkerResult> {
  const api = createPostgresApi({ connectionString: task.dbUrl, poolSize: 1 });
  try {
    await registerBenchTarget(new EmbeddingStore(api), task.dims);
  } finally {
    await api.close();
  }
  const cpuBefore = await reapedCpuSeconds();
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      MAIN,
      "run",
      TARGET,
      "--batch-size",
      String(task.batchSize),
      "--parallelism",
      String(task.parallelism),
      "--json",
    ],
    {
      cwd: ROOT,
      // What an operator sets, nothing else: the pool, batch and parallelism defaults are the CLI's own.
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        DATABASE_URL: task.dbUrl,
        OPENAI_API_KEY: API_KEY,
        OPENAI_BASE_URL: task.fakeUrl,
        LOG_LEVEL: "silent",
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  track(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d;
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d;
  });
  let startRssMb = 0;
  let peakRssMb = 0;
  const sampler = setInterval(() => {
    void memoryOf(child.pid ?? 0).then((m) => {
      if (!m) return;
      if (startRssMb === 0) startRssMb = m.rss;
      peakRssMb = Math.max(peakRssMb, m.hwm);
    });
  }, 50);
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`embeddings run was still running after ${Math.round(timeoutMs / 1000)} s`));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  }).finally(() => clearInterval(sampler));
  const wallMs = performance.now() - started;
  const cpuSeconds = (await reapedCpuSeconds()) - cpuBefore;
  if (code !== 0) throw new Error(`embeddings run exited with ${code}\n${stderr.slice(-2000)}`);
  let summary: { job: Job };
  try {
    summary = JSON.parse(stdout) as { job: Job };
  } catch {
    throw new Error(`embeddings run printed no JSON summary\nstdout: ${stdout.slice(-2000)}`);
  }
  const { job } = summary;
  if (!job.finishedAt) throw new Error(`job ${job.id} has not finished (${job.status})`);
  const jobMs = Date.parse(job.finishedAt) - Date.parse(job.createdAt);
  return {
    elapsedMs: jobMs,
    seedMs: 0,
    processed: job.itemsProcessed,
    failed: job.itemsFailed,
    tokens: job.tokens,
    requests: job.requests,
    peakRssMb,
    startRssMb,
    cpuSeconds,
    rssByProgress: [],
    db: {},
    provider: { calls: 0, ms: 0 },
    cli: { wallMs, jobMs, jobId: job.id, status: job.status },
  };
}
