import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { type CliIO, processIO } from "../../src/cli/io.js";
import { buildProgram } from "../../src/cli/program.js";
import type { Config } from "../../src/lib/config.js";
import type { AppContext } from "../../src/lib/context.js";
import { providerForTarget } from "../../src/lib/providers/index.js";
import type { EmbeddingProvider } from "../../src/lib/providers/provider.js";
import type { Target } from "../../src/lib/types.js";

/**
 * The one way tests run the `embeddings` binary: `node bin/embeddings.js` (tsx over the sources, as a
 * user's `npx embeddings` does on a checkout), with a clean environment plus what the test passes.
 *
 * A child is bounded only against hangs: the bound is generous (a 2-core machine running a second
 * suite is slow, not broken), and when it is hit the test fails saying the process was killed,
 * never with a made-up exit code.
 */

export const CLI_BIN = join(import.meta.dirname, "..", "..", "bin", "embeddings.js");
export const CLI_TIMEOUT_MS = 300_000;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  /** Output so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves with the exit code (signals as 128 + n), rejects when the hang guard killed it. */
  exited: Promise<CliResult>;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

function baseEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_LEVEL: "silent" };
}

export function spawnCli(
  args: string[],
  env: Record<string, string> = {},
  options: { timeoutMs?: number } = {},
): CliProcess {
  const child = spawn(process.execPath, [CLI_BIN, ...args], {
    env: { ...baseEnv(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d;
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d;
  });
  const timeoutMs = options.timeoutMs ?? CLI_TIMEOUT_MS;
  const exited = new Promise<CliResult>((resolve, reject) => {
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (killed) {
        reject(
          new Error(
            `embeddings ${args.join(" ")} was still running after ${timeoutMs / 1000} s and was killed by the test's hang guard\nstdout: ${stdout.slice(-2000)}\nstderr: ${stderr.slice(-2000)}`,
          ),
        );
        return;
      }
      resolve({ code: code ?? 128 + (SIGNALS[signal ?? ""] ?? 0), stdout, stderr });
    });
  });
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
  };
}

export function runCli(
  args: string[],
  env: Record<string, string> = {},
  options: { timeoutMs?: number } = {},
): Promise<CliResult> {
  return spawnCli(args, env, options).exited;
}

export interface InProcessResult {
  code: number;
  out: string;
  err: string;
  json: () => Record<string, unknown>;
}

class CliExit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/**
 * Runs one verb in this process through the same program the binary builds, with output captured
 * and the exit turned into a code. `context` is the database every verb opens (a test database).
 */
export async function runCliInProcess(
  args: string[],
  options: {
    context: (config: Config) => AppContext;
    env?: Record<string, string | undefined>;
    providerFor?: (target: Target, config: Config) => EmbeddingProvider;
    /** Ctrl-C for the verb (`status --watch` waits for one); by default it never comes. */
    onInterrupt?: CliIO["onInterrupt"];
  },
): Promise<InProcessResult> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIO = {
    ...processIO(),
    env: { INNGEST_DEV: "1", LOG_LEVEL: "silent", ...options.env },
    stdout: (text) => out.push(text),
    stderr: (text) => err.push(text),
    exit: (code) => {
      throw new CliExit(code);
    },
    interactive: false,
    openContext: async (config) => options.context(config),
    providerFor: options.providerFor ?? providerForTarget,
    onInterrupt: options.onInterrupt ?? (() => () => undefined),
  };
  // A verb that returns without exiting ends the process with 0, as the binary does.
  let code = 0;
  try {
    await buildProgram(io).parseAsync(args, { from: "user" });
  } catch (e) {
    if (!(e instanceof CliExit)) throw e;
    code = e.code;
  }
  const text = out.join("").replace(/\n$/, "");
  return { code, out: text, err: err.join("").replace(/\n$/, ""), json: () => JSON.parse(text) };
}
