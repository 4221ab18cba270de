import { classifyFailure, errorMessage } from "../lib/errors.js";

/** Documented exit codes (README, `embeddings --help`). */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  config: 3,
  transient: 4,
  interrupted: 130,
} as const;

/** lib's failure classes as exit codes, with the fix on its own line when lib knows it. */
export function classifyExit(err: unknown): { code: number; message: string } {
  const failure = classifyFailure(err);
  const fix =
    "fix" in failure && failure.fix && !failure.message.includes(failure.fix) ? failure.fix : undefined;
  const message = errorMessage(err) + (fix ? `\n  fix: ${fix}` : "");
  switch (failure.kind) {
    case "bad-input":
      return { code: EXIT.usage, message };
    case "configuration":
      return { code: EXIT.config, message };
    case "transient":
    case "rate-limited":
      return { code: EXIT.transient, message };
    default:
      return { code: EXIT.failed, message };
  }
}
