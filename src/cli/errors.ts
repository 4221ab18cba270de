import { ConfigError } from "../lib/config.js";
import { errorMessage, InputError, isRetryable, TargetConfigError } from "../lib/errors.js";

/** Documented exit codes (README, `embeddings --help`). */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  config: 3,
  transient: 4,
  interrupted: 130,
} as const;

/** SQLSTATEs our SQL API raises for bad input (unknown target, bad name, missing column...). */
const INPUT_SQLSTATES = new Set(["22023", "42P01", "42703", "P0002", "22000"]);

export function classifyExit(err: unknown): { code: number; message: string } {
  const hint = (err as { hint?: string } | null)?.hint;
  const message = errorMessage(err) + (hint ? `\n  fix: ${hint}` : "");
  if (err instanceof InputError) return { code: EXIT.usage, message };
  if (err instanceof ConfigError || err instanceof TargetConfigError) return { code: EXIT.config, message };
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && INPUT_SQLSTATES.has(code)) return { code: EXIT.usage, message };
  if (isRetryable(err) || code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "ETIMEDOUT") {
    return { code: EXIT.transient, message };
  }
  return { code: EXIT.failed, message };
}
