/**
 * The in-process stand-in for the Inngest executor (see ./inngest/executor.ts for what it models):
 * the protocol (./inngest/protocol.ts), expression evaluation (./inngest/expressions.ts) and the
 * executor itself, re-exported for tests.
 */

export { createHarness } from "./inngest/executor.js";
export { evaluate } from "./inngest/expressions.js";
export * from "./inngest/protocol.js";
