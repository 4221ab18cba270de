/**
 * The Inngest SDK's HTTP protocol as the harness speaks it (inngest 4.24, docs/SDK_SPEC.md in
 * inngest/inngest): the shapes of events, memoised steps, ops and function configs, request signing
 * step-id hashing and the checkpoint API's key. No executor state here.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import canonicalizeModule from "canonicalize";

/** The slice of a Hono app the harness needs. */
export interface RequestHandlerLike {
  request(input: string, init?: RequestInit): Response | Promise<Response>;
}

export interface HarnessEvent {
  name: string;
  data?: Record<string, unknown>;
  id?: string;
  ts?: number;
  [key: string]: unknown;
}

/** An event as the harness stores and delivers it: id, ts and data always present. */
export interface RunEvent extends HarnessEvent {
  id: string;
  ts: number;
  data: Record<string, unknown>;
}

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  [key: string]: unknown;
}

export type MemoEntry = { type: "data"; data: unknown } | { type: "error"; error: SerializedError };

/** "skipped": a `singleton: { mode: "skip" }` run that found another run of its key active; never called. */
export type RunStatus = "queued" | "running" | "completed" | "failed" | "cancelled" | "skipped";

/** Why a run was cancelled. */
export type CancelReason = "cancelOn" | "api" | "singleton" | "timeouts.start" | "timeouts.finish";

export interface StepRecord {
  /** Userland id including the `:n` suffix the SDK gives repeated ids. */
  id: string;
  /** sha1 of `id`: the key in the `steps` map sent to the SDK. */
  hashedId: string;
  /** Last op seen for this step: StepRun, StepFailed, Sleep, WaitForEvent, InvokeFunction... */
  op: string;
  /** Op `name`: the sleep duration, the awaited event name, the step name. */
  name?: string;
  /** Times the step's code ran (StepRun + StepError + StepFailed ops, checkpointed StepRuns included). */
  attempts: number;
  /** Undefined while the step is not memoised yet. */
  type?: "data" | "error";
  data?: unknown;
  error?: SerializedError;
  retryAfter: string[];
}

export interface CallRecord {
  runId: string;
  fnId: string;
  /** "step" for a discovery call, else the hashed step id requested. */
  stepId: string;
  attempt: number;
  status: number;
  /** Virtual time (ms) when the call started. */
  at: number;
  /** Wall time of `app.request()` including reading the body. */
  ms: number;
  ops: string[];
  /** Checkpoint posts accepted while this call was open (checkpointing mode). */
  checkpoints: number;
  noRetry?: boolean;
  retryAfter?: string;
  /** Signed mode only: whether the SDK's response signature verified. */
  signatureValid?: boolean;
}

export interface RunResult {
  runId: string;
  /** Function id without the app prefix; onFailure handlers are `<fnId>-failure`. */
  fnId: string;
  /** `<appId>-<fnId>`, the `fnId` query parameter. */
  slug: string;
  event: RunEvent;
  status: RunStatus;
  output: unknown;
  error: SerializedError | null;
  calls: CallRecord[];
  steps: StepRecord[];
  /** Every `retry-after` the SDK sent for this run, step- or function-level. */
  retryAfter: string[];
  parentRunId?: string;
  /** The cancelOn event's id, or for a singleton cancel the id of the run that replaced this one. */
  cancelledBy?: string;
  cancelReason?: CancelReason;
  /** For a skipped singleton run: the active run it found. */
  skippedBy?: string;
  /** Virtual times (ms): scheduled, first call made, and ended (completed, failed, cancelled, skipped). */
  queuedAt: number;
  startedAt?: number;
  endedAt?: number;
}

export interface HarnessStats {
  calls: number;
  totalMs: number;
  meanMs: number;
  runs: number;
  memoisedSteps: number;
  /** `POST /v1/checkpoint/{runId}/async` requests received, accepted or not. */
  checkpoints: number;
  byFn: Record<string, { calls: number; totalMs: number; runs: number }>;
}

export interface RawCallOptions {
  fnId: string;
  stepId?: string;
  event?: HarnessEvent;
  steps?: Record<string, MemoEntry>;
  /** Replaces the generated body entirely. */
  body?: unknown;
  /** Defaults to true when the harness has a signing key. */
  sign?: boolean;
  method?: "GET" | "POST" | "PUT";
  headers?: Record<string, string>;
  attempt?: number;
}

export interface RawCallResult {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: unknown;
  ms: number;
}

export interface HarnessOptions {
  /** The Hono app, or a thunk when the app is built after the client that needs `harness.fetch`. */
  app: RequestHandlerLike | (() => RequestHandlerLike);
  path?: string;
  /** Defaults to the client's id, else to the `app_id` the endpoint reports on sync. */
  appId?: string;
  client?: { id: string } | (() => { id: string });
  /** Read configs from these functions instead of an in-band sync (PUT) against the endpoint. */
  functions?: readonly unknown[] | (() => readonly unknown[]);
  /** Sign every request as Inngest Cloud does (`signkey-<env>-<hex>`). */
  signingKey?: string;
  /** Attempts for a function that sets no `retries` (Inngest's default: 3 retries). */
  maxAttemptsDefault?: number;
  /**
   * Virtual milliseconds each real millisecond of an HTTP call costs (default 1). 0 makes calls
   * instantaneous, so virtual times are exact; a large value makes slow steps count against timeouts.
   */
  timeScale?: number;
  /**
   * Send `ctx.fn_id` and `ctx.qi_id` as the real server does, so the SDK checkpoints: it runs steps back
   * to back inside one request and posts each result to `/v1/checkpoint/{runId}/async` (answered by
   * `harness.fetch`). Off by default: one step per request, so call counts are easy to reason about.
   */
  checkpointing?: boolean;
}

export interface RunUntilIdleOptions {
  /** Throws once this many HTTP calls were made in this drive (guards against loops). */
  maxCalls?: number;
  /** HTTP calls in flight at once; 1 (the default) gives strictly sequential, deterministic runs. */
  concurrency?: number;
}

export interface Harness {
  readonly fetch: typeof fetch;
  /** The virtual clock (ms since the epoch); starts at the real time when the harness is created. */
  now(): number;
  /** Moves the virtual clock forward, firing what falls due (timeouts; sleeps and retries become due). */
  advance(ms: number): void;
  send(events: HarnessEvent | readonly HarnessEvent[]): Promise<{ ids: string[]; runIds: string[] }>;
  invokeCron(fnId: string): Promise<string>;
  invoke(fnId: string, data?: Record<string, unknown>): Promise<string>;
  /** The dashboard's "Replay": a new run of the same function with the same event (same id, no dedup). */
  replay(runId: string): string;
  /** Runs what is due; when nothing is due or in flight, jumps the clock to the next due item. */
  runUntilIdle(options?: RunUntilIdleOptions): Promise<RunResult[]>;
  /** The REST API's cancel: emits `inngest/function.cancelled`. False when the run is not active. */
  cancel(runId: string): boolean;
  run(runId: string): RunResult | undefined;
  runs(fnId?: string): RunResult[];
  rawCall(options: RawCallOptions): Promise<RawCallResult>;
  sync(): Promise<FunctionConfig[]>;
  stats(): HarnessStats;
  readonly calls: readonly CallRecord[];
  /** Requests to `harness.fetch` that were not event-API posts (answered 404). */
  readonly unhandledRequests: readonly string[];
}

/** One concurrency constraint; `key` is an expression evaluated against the trigger event. */
export interface ConcurrencyConfig {
  limit: number;
  key?: string;
  scope?: "fn" | "env" | "account";
}

/**
 * The parts of the SDK's function config (`getConfig` / in-band sync) the harness reads. Flow-control
 * options are copied verbatim from the function options (InngestFunction.js:76,95-105).
 */
export interface FunctionConfig {
  id: string;
  triggers: { event?: string; expression?: string; cron?: string }[];
  steps: Record<string, { retries?: { attempts?: number } }>;
  cancel?: { event: string; if?: string; timeout?: string }[];
  concurrency?: number | ConcurrencyConfig | ConcurrencyConfig[];
  singleton?: { mode: "skip" | "cancel"; key?: string };
  timeouts?: { start?: string; finish?: string };
}

/** One op of a 206 response (StepRun, StepError, StepPlanned, Sleep, ...). */
export interface SdkOp {
  id: string;
  op: string;
  name?: string;
  displayName?: string;
  data?: unknown;
  error?: unknown;
  opts?: Record<string, unknown>;
  userland?: { id?: string; index?: number };
}

// canonicalize ships CommonJS with an `export default` typing that NodeNext reads as the module object.
const canonicalize: (input: unknown) => string | undefined =
  typeof canonicalizeModule === "function"
    ? canonicalizeModule
    : (canonicalizeModule as unknown as { default: (input: unknown) => string | undefined }).default;

export const hashStepId = (id: string): string => createHash("sha1").update(id).digest("hex");

/** HMAC-SHA256 over RFC 8785 JSON of the parsed body + t, keyed by the key without `signkey-<env>-`. */
export const signBody = (bodyText: string, signingKey: string, t = Math.floor(Date.now() / 1000)): string => {
  const message = bodyText === "" ? "" : (canonicalize(JSON.parse(bodyText)) ?? "");
  return `t=${t}&s=${hmacHex(signingKey, message + t)}`;
};

const hmacHex = (signingKey: string, message: string): string =>
  createHmac("sha256", signingKey.replace(/^signkey-\w+-/, ""))
    .update(message)
    .digest("hex");

/**
 * The bearer token the SDK sends to the Inngest API (checkpoints): the key's prefix kept, the rest
 * replaced by the hex SHA-256 of its hex-decoded bytes (helpers/strings.js:88-93 `hashSigningKey`).
 */
export const hashSigningKey = (signingKey: string): string => {
  const prefix = /^signkey-\w+-/.exec(signingKey)?.[0] ?? "";
  const key = signingKey.slice(prefix.length);
  return `${prefix}${createHash("sha256").update(Buffer.from(key, "hex")).digest("hex")}`;
};

/** The SDK signs response bodies verbatim (no canonicalisation). */
export const verifyResponseSignature = (header: string | null, text: string, signingKey: string): boolean => {
  if (!header) return false;
  const params = new URLSearchParams(header);
  const t = params.get("t");
  const s = params.get("s");
  if (!t || !s) return false;
  const expected = Buffer.from(hmacHex(signingKey, text + t));
  const given = Buffer.from(s);
  return expected.length === given.length && timingSafeEqual(expected, given);
};
