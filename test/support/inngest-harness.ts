/**
 * The in-process stand-in for the Inngest executor (see ./inngest/executor.ts for what it models):
 * the protocol (./inngest/protocol.ts), expression evaluation (./inngest/expressions.ts), virtual time
 * (./inngest/time.ts), limits (./inngest/limits.ts) and the executor itself, re-exported for tests.
 */

export { createHarness } from "./inngest/executor.js";
export { evaluate, evaluateValue, MISSING } from "./inngest/expressions.js";
export { STATE_LIMIT_BYTES, STEP_LIMIT, STEP_OUTPUT_LIMIT_BYTES } from "./inngest/limits.js";
export * from "./inngest/protocol.js";
