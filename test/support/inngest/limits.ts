/**
 * Inngest's per-run limits (server pkg/consts/consts.go) and the errors a run fails with when it hits
 * one. The SDK enforces none of them; the executor does.
 */
import type { SerializedError } from "./protocol.js";

/** consts.go:23 DefaultMaxStepLimit. */
export const STEP_LIMIT = 1_000;
/** consts.go:34 MaxStepOutputSize. */
export const STEP_OUTPUT_LIMIT_BYTES = 4 * 1024 * 1024;
/** consts.go:48 DefaultMaxStateSizeLimit: the trigger event plus every memoised step. */
export const STATE_LIMIT_BYTES = 32 * 1024 * 1024;

export const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value ?? null));

/** executor/validate.go `checkStepLimit` and executor.go:3758-3767 (a plan of too many steps). */
export const stepLimitError = (): SerializedError => ({
  name: "InngestErrFunctionOverflowed",
  message: `The function run exceeded the step limit of ${STEP_LIMIT} steps.`,
  error: "function has too many steps",
});

/**
 * state/opcode.go:64-71: the server rejects the op. It has no `InngestErr…` name for this, so the
 * harness names it after the Go error, `ErrStepOutputTooLarge`.
 */
export const stepOutputTooLargeError = (stepId: string, bytes: number): SerializedError => ({
  name: "InngestErrStepOutputTooLarge",
  message: "step output size is greater than the limit",
  error: `error validating generator opcode ${stepId}: step output size is greater than the limit`,
  bytes,
  limit: STEP_OUTPUT_LIMIT_BYTES,
});

/** executor.go `validateStateSize`. */
export const stateOverflowError = (): SerializedError => ({
  name: "InngestErrStateOverflowed",
  message: `The function run exceeded the state size limit of ${STATE_LIMIT_BYTES} bytes.`,
  error: "state too large",
});
