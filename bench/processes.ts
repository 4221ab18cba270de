import { type ChildProcess, fork } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FakeOpenAIBehavior, FakeOpenAIStats } from "../test/support/fake-openai.js";
import type { WorkerResult, WorkerTask } from "./worker.js";

/**
 * Child processes of the benchmark: the fake provider (one per run), one worker per scenario, and the
 * `embeddings` CLI of the cli scenarios (bench/cli-run.ts).
 */

const HERE = dirname(fileURLToPath(import.meta.url));
// The children are TypeScript too: run them through tsx, as `npm run bench` runs this file.
const EXEC_ARGV = ["--import", "tsx"];

const children = new Set<ChildProcess>();

/** Counts `child` among the processes killChildren ends, until it exits. */
export function track(child: ChildProcess): void {
  children.add(child);
  child.once("exit", () => children.delete(child));
}

/** Kills every child still alive (by its own pid): used on the way out, normal or not. */
export function killChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

export interface FakeServer {
  url: string;
  configure(behavior: Partial<FakeOpenAIBehavior>): Promise<void>;
  /** What the server saw since the last configure, and the CPU seconds it used for it. */
  stats(): Promise<{ stats: FakeOpenAIStats; cpuSeconds: number }>;
  close(): Promise<void>;
}

export async function startFakeServer(): Promise<FakeServer> {
  const child = fork(join(HERE, "fake-server.ts"), [], {
    execArgv: EXEC_ARGV,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  track(child);
  const url = await new Promise<string>((resolve, reject) => {
    child.once("message", (m: { ready?: boolean; url?: string }) =>
      m.ready && m.url ? resolve(m.url) : reject(new Error("fake server did not start")),
    );
    child.once("exit", (code) => reject(new Error(`fake server exited with ${code}`)));
  });
  let next = 0;
  const ask = <T>(message: Record<string, unknown>): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = ++next;
      const onMessage = (m: { id?: number } & T) => {
        if (m.id !== id) return;
        child.off("message", onMessage);
        resolve(m);
      };
      child.on("message", onMessage);
      child.send({ ...message, id }, (err) => err && reject(err));
    });
  return {
    url,
    async configure(behavior) {
      await ask({ cmd: "configure", behavior });
    },
    async stats() {
      const { stats, cpuSeconds } = await ask<{ stats: FakeOpenAIStats; cpuSeconds: number }>({
        cmd: "stats",
      });
      return { stats, cpuSeconds };
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      // The child answers and exits; if it is already dying, its exit is the answer.
      const timeout = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref());
      await Promise.race([ask({ cmd: "close" }).then(() => exited), exited, timeout]).catch(() => undefined);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

/**
 * Runs one scenario in a fresh worker process; resolves once the worker has sent its result AND
 * exited (so its CPU time is reaped before the next scenario starts); rejects on failure or after
 * `timeoutMs`.
 */
export function runWorker(task: WorkerTask, timeoutMs: number): Promise<WorkerResult> {
  const child = fork(join(HERE, "worker.ts"), [JSON.stringify(task)], {
    execArgv: EXEC_ARGV,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  track(child);
  return new Promise<WorkerResult>((resolve, reject) => {
    let settled = false;
    let answer: { ok: boolean; result?: WorkerResult; error?: string } | undefined;
    const timer = setTimeout(() => {
      settled = true;
      child.kill("SIGKILL");
      reject(new Error(`worker timed out after ${Math.round(timeoutMs / 1000)} s`));
    }, timeoutMs);
    child.on("message", (m: { ok: boolean; result?: WorkerResult; error?: string }) => {
      answer ??= m;
    });
    child.on("exit", (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (answer?.ok && answer.result) resolve(answer.result);
      else reject(new Error(answer?.error ?? `worker exited (${code ?? signal}) without a result`));
    });
  });
}
