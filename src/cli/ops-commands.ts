import type { Command } from "commander";

/** Operations verbs (backfill, retry, cancel, doctor): filled in by the ops work. */
export function registerOpsCommands(_program: Command, _helpers: unknown): void {}
