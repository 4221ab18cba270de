import type { InngestClient } from "../functions/client.js";
import { type Config, loadConfig } from "../lib/config.js";
import { type AppContext, openContext } from "../lib/context.js";
import { providerForTarget } from "../lib/providers/index.js";
import type { EmbeddingProvider } from "../lib/providers/provider.js";
import type { Target } from "../lib/types.js";
import { classifyExit } from "./exit.js";

/**
 * Everything a command touches outside itself: the environment, the two output streams, the exit,
 * the database, Inngest and the provider. The binary uses the process's (processIO); tests pass their
 * own to run any command in-process and read what it printed and the code it exited with.
 */
export interface CliIO {
  env: Record<string, string | undefined>;
  stdout(text: string): void;
  stderr(text: string): void;
  /** Ends the command: process.exit in the binary; tests throw. */
  exit(code: number): never;
  /** A terminal: progress bar and screen refresh. */
  interactive: boolean;
  openContext(config: Config): Promise<AppContext>;
  inngest(config: Config): Pick<InngestClient, "send">;
  providerFor(target: Target, config: Config): EmbeddingProvider;
  /** Registers a handler for Ctrl-C / SIGTERM; returns its removal. */
  onInterrupt(handler: () => void): () => void;
}

export function processIO(): CliIO {
  return {
    env: process.env,
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    exit: (code) => process.exit(code),
    interactive: Boolean(process.stderr.isTTY),
    openContext: (config) => openContext(config),
    // The Inngest SDK (4-7 MB of heap, 5-13 MB resident) is loaded when a verb sends an event, so
    // `run` and the other verbs never carry it.
    inngest: (config) => ({
      send: async (payload) =>
        (await import("../functions/client.js")).createInngestClient(config).send(payload),
    }),
    providerFor: (target, config) => providerForTarget(target, config),
    onInterrupt(handler) {
      process.on("SIGINT", handler);
      process.on("SIGTERM", handler);
      return () => {
        process.off("SIGINT", handler);
        process.off("SIGTERM", handler);
      };
    },
  };
}

/** The helpers every command uses, bound to one CliIO. */
export interface Cli {
  io: CliIO;
  config(): Config;
  withContext<T>(fn: (ctx: AppContext) => Promise<T>): Promise<T>;
  /** One JSON document with --json (fields only ever get added), else the text. */
  print(json: boolean, value: unknown, text: () => string): void;
  /** Prints the failure and exits with its documented code. */
  fail(err: unknown): never;
}

export function bindCli(io: CliIO): Cli {
  const config = () => loadConfig(io.env);
  return {
    io,
    config,
    async withContext(fn) {
      const ctx = await io.openContext(config());
      try {
        return await fn(ctx);
      } finally {
        await ctx.close();
      }
    },
    print(json, value, text) {
      io.stdout(`${json ? JSON.stringify(value, null, 2) : text()}\n`);
    },
    fail(err) {
      const { code, message } = classifyExit(err);
      io.stderr(`error: ${message}\n`);
      return io.exit(code);
    },
  };
}
