/**
 * What the harness keeps per run: the memoised step state the SDK is sent on every call, the step
 * records tests read, timing and flow-control bookkeeping, and the snapshot handed out as a RunResult.
 */
import type { Slot } from "./flow-control.js";
import {
  jsonBytes,
  STATE_LIMIT_BYTES,
  STEP_OUTPUT_LIMIT_BYTES,
  stateOverflowError,
  stepOutputTooLargeError,
} from "./limits.js";
import type {
  CallRecord,
  CancelReason,
  FunctionConfig,
  HarnessStats,
  MemoEntry,
  RunEvent,
  RunResult,
  RunStatus,
  SdkOp,
  SerializedError,
  StepRecord,
} from "./protocol.js";

/** One open request to the SDK, which checkpoint posts must name (`qi_id`, `generation_id`). */
export interface OpenRequest {
  qiId: string;
  requestId: string;
  generation: number;
  /** Virtual time the request started. */
  at: number;
  /** `performance.now()` when it started: virtual time passes with real time while it is open. */
  started: number;
  checkpoints: number;
}

export interface RunState {
  runId: string;
  fnId: string;
  slug: string;
  config: FunctionConfig;
  event: RunEvent;
  status: RunStatus;
  output: unknown;
  error: SerializedError | null;
  memo: Record<string, MemoEntry>;
  /** JSON bytes of each memo entry, for the state limit. */
  memoBytes: Map<string, number>;
  /** The trigger event plus every memoised step, in JSON bytes. */
  stateBytes: number;
  stack: string[];
  steps: Map<string, StepRecord>;
  calls: CallRecord[];
  retryAfter: string[];
  maxAttempts: number;
  disableImmediate: boolean;
  version: number;
  /** Queued calls, sleeps, waits and invokes: a discovery call is due when this reaches 0. */
  outstanding: number;
  waits: Map<string, { event: string; if?: string }>;
  parent?: { runId: string; hashedId: string };
  cancelledBy?: string;
  cancelReason?: CancelReason;
  skippedBy?: string;
  queuedAt: number;
  startedAt?: number;
  endedAt?: number;
  /** When each `cancel` listener of the config expires (its `timeout`), in virtual ms. */
  cancelUntil: number[];
  slots: Slot[];
  singletonKey?: string;
  open: Map<string, OpenRequest>;
  /** Dispatches so far, sent as `x-inngest-generation-id` (the queue item's generation on the server). */
  generation: number;
}

export const isActive = (run: RunState): boolean => run.status === "queued" || run.status === "running";

const newRecord = (hashedId: string, op: SdkOp | undefined): StepRecord => {
  const base = op?.userland?.id ?? op?.displayName ?? hashedId;
  const index = op?.userland?.index;
  return {
    id: index === undefined ? base : `${base}:${index}`,
    hashedId,
    op: op?.op ?? "unknown",
    name: op?.name,
    attempts: 0,
    retryAfter: [],
  };
};

/** The record of the step an op belongs to, created on first sight and named by the op's userland id. */
export function recordOp(run: RunState, op: SdkOp): StepRecord {
  const record = run.steps.get(op.id) ?? newRecord(op.id, op);
  if (record.id === op.id && op.userland?.id) record.id = newRecord(op.id, op).id;
  record.op = op.op;
  if (op.name !== undefined) record.name = op.name;
  run.steps.set(op.id, record);
  return record;
}

/** A memo entry about to be stored; `stepOutput` marks StepRun data, which has its own 4 MiB limit. */
export interface PendingMemo {
  hashedId: string;
  entry: MemoEntry;
  stepOutput?: boolean;
}

const entryBytes = (entry: MemoEntry): number => jsonBytes(entry.type === "data" ? entry.data : entry.error);

/**
 * The error storing these entries would fail the run with: a step output over 4 MiB, or run state over
 * 32 MiB once all are added (the server checks a checkpoint batch as a whole, checkpoint.go:533-551).
 */
export function limitError(run: RunState, pending: readonly PendingMemo[]): SerializedError | undefined {
  let state = run.stateBytes;
  for (const { hashedId, entry, stepOutput } of pending) {
    const bytes = entryBytes(entry);
    if (stepOutput && bytes > STEP_OUTPUT_LIMIT_BYTES) return stepOutputTooLargeError(hashedId, bytes);
    state += bytes - (run.memoBytes.get(hashedId) ?? 0);
  }
  return state > STATE_LIMIT_BYTES ? stateOverflowError() : undefined;
}

/** Stores a memo entry (limits already checked): sent to the SDK on every later call. */
export function storeMemo(run: RunState, hashedId: string, entry: MemoEntry): void {
  if (!(hashedId in run.memo)) run.stack.push(hashedId);
  run.memo[hashedId] = entry;
  const bytes = entryBytes(entry);
  run.stateBytes += bytes - (run.memoBytes.get(hashedId) ?? 0);
  run.memoBytes.set(hashedId, bytes);
  const record = run.steps.get(hashedId) ?? newRecord(hashedId, undefined);
  record.type = entry.type;
  if (entry.type === "data") record.data = entry.data;
  else record.error = entry.error;
  run.steps.set(hashedId, record);
}

export const toError = (body: unknown, fallback: string): SerializedError => {
  if (body && typeof body === "object") {
    const e = body as Record<string, unknown>;
    const message = typeof e.message === "string" ? e.message : typeof e.error === "string" ? e.error : "";
    if (message) {
      return {
        ...e,
        name: typeof e.name === "string" ? e.name : "Error",
        message,
        stack: typeof e.stack === "string" ? e.stack : undefined,
      };
    }
  }
  return { name: "Error", message: fallback };
};

export const harnessError = (message: string): SerializedError => ({ name: "HarnessError", message });

export const snapshot = (run: RunState): RunResult => ({
  runId: run.runId,
  fnId: run.fnId,
  slug: run.slug,
  event: run.event,
  status: run.status,
  output: run.output,
  error: run.error,
  calls: [...run.calls],
  steps: [...run.steps.values()].map((s) => ({ ...s, retryAfter: [...s.retryAfter] })),
  retryAfter: [...run.retryAfter],
  queuedAt: run.queuedAt,
  ...(run.startedAt === undefined ? {} : { startedAt: run.startedAt }),
  ...(run.endedAt === undefined ? {} : { endedAt: run.endedAt }),
  ...(run.parent ? { parentRunId: run.parent.runId } : {}),
  ...(run.cancelledBy ? { cancelledBy: run.cancelledBy } : {}),
  ...(run.cancelReason ? { cancelReason: run.cancelReason } : {}),
  ...(run.skippedBy ? { skippedBy: run.skippedBy } : {}),
});

/** Call counts and times per function, over every run the harness knows. */
export function statsOf(runs: Iterable<RunState>, checkpoints: number): HarnessStats {
  const byFn: HarnessStats["byFn"] = {};
  let calls = 0;
  let totalMs = 0;
  let runCount = 0;
  let memoisedSteps = 0;
  for (const run of runs) {
    const entry = byFn[run.fnId] ?? { calls: 0, totalMs: 0, runs: 0 };
    byFn[run.fnId] = entry;
    entry.runs++;
    runCount++;
    for (const c of run.calls) {
      entry.calls++;
      entry.totalMs += c.ms;
      calls++;
      totalMs += c.ms;
    }
    memoisedSteps += run.stack.length;
  }
  return {
    calls,
    totalMs,
    meanMs: calls ? totalMs / calls : 0,
    runs: runCount,
    memoisedSteps,
    checkpoints,
    byFn,
  };
}
