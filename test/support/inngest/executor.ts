/**
 * An in-process stand-in for the Inngest executor, driving our real served endpoint with Hono's
 * `app.request()` over the SDK's HTTP protocol (inngest 4.24, docs/SDK_SPEC.md in inngest/inngest).
 *
 * Modelled:
 * - Triggers: exact event names, `prefix/*` wildcards, simple `if` expressions (./expressions.ts);
 *   explicit cron runs (`invokeCron`); `invoke`; `replay` (new run, same event, no dedup).
 * - Steps: memoisation, per-step retries (StepError -> same step again with attempt + 1, StepFailed ->
 *   memoised error), StepPlanned and parallel steps (`disable_immediate_execution` once a response has
 *   more than one op, reset when nothing is pending, as force_step_plan.go does), function-level retries
 *   (5xx / `x-inngest-no-retry: false`), RetryAfterError (counts as an attempt), Sleep / sleepUntil,
 *   WaitForEvent (matched against events sent while waiting, else null at its timeout), InvokeFunction,
 *   onFailure via `inngest/function.failed`.
 * - Virtual time (./time.ts): every queued call and timer has a due time. When nothing is due and no
 *   call is in flight, the clock jumps to the next due item, so sleeps, retry backoff (the server's
 *   table without jitter: 15 s, 30 s, 1 m, 2 m, 5 m ... 2 h) and `retry-after` (clipped to 1 s..24 h) cost
 *   no real time. A call moves the clock to its virtual start plus its real duration × `timeScale`; a
 *   timer that falls due meanwhile fires when the call returns or posts a checkpoint. Event `ts`
 *   defaults to the virtual clock. Request signatures use real time, as the SDK checks them against it.
 * - Events: `step.sendEvent` / `inngest.send` through `harness.fetch`; ids deduplicated for 24 h of
 *   virtual time (a duplicate starts nothing and cancels nothing).
 * - Cancellation (`cancel(runId)`, `cancelOn` with `if`/`match` and `timeout`, `timeouts.start` /
 *   `timeouts.finish`, singleton cancel) emits `inngest/function.cancelled` (id = run id), never
 *   `inngest/function.failed`, so onFailure does not run. A call in flight when its run is cancelled has
 *   its result dropped.
 * - Flow control (./flow-control.ts): function `concurrency` (number, object or array; key and scope)
 *   limits calls in flight per evaluated key (sleeps and waits hold no slot); `singleton` skip (status
 *   "skipped", never called) or cancel. A skipped invoked run gives its parent an error (a harness
 *   choice: the docs do not say).
 * - Limits (./limits.ts): 1,000 steps (a run that has them fails before its next call, a plan of more
 *   fails at once), 4 MiB per step output, 32 MiB of run state; all fail the run like any failure.
 * - Checkpointing (`checkpointing: true`, ./checkpoint.ts): requests carry `ctx.fn_id` / `ctx.qi_id`
 *   (every request carries `x-run-id`, `x-request-id`, `x-inngest-generation-id`); `harness.fetch` answers
 *   `POST /v1/checkpoint/{runId}/async` (409 for a stale dispatch, 413 over a limit) and the 206
 *   `RunComplete` ends the run. As on the server, checkpointed steps are not counted against the step
 *   limit until the next call.
 * - HMAC request signing, and the hashed signing key on checkpoint posts.
 *
 * Not modelled: throttle, rateLimit, debounce, priority, batchEvents (one event is one run), idempotency
 * keys, cron schedules (only explicit `invokeCron` runs), invoke `timeout`, step.ai / step.fetch /
 * waitForSignal ops (the run fails with a harness error naming the op), defer ops (ignored),
 * `inngest/function.finished`, failure events for failing onFailure handlers, the retry jitter, and the
 * SDK's sync/durable-endpoint checkpoint APIs (`/v1/checkpoint`, `/v1/checkpoint/{id}/steps`).
 *
 * The app needs no special options: serve as usual. Function configs come from an in-band sync (PUT with
 * `x-inngest-sync-kind: in_band`) unless `functions` is given; pass `functions` if the app sets
 * INNGEST_ALLOW_IN_BAND_SYNC=0 (./endpoint.ts). Calls run one at a time by default, so per-call times
 * are comparable. Per-run state and the snapshots tests read live in ./run-state.ts.
 */
import { randomUUID } from "node:crypto";
import { accept, checkpointRunId, readCheckpoint, reject } from "./checkpoint.js";
import { Endpoint, parseJson } from "./endpoint.js";
import { evaluate, nameMatches } from "./expressions.js";
import { concurrencySlots, SlotCounter, singletonKey } from "./flow-control.js";
import { jsonBytes, STEP_LIMIT, stepLimitError } from "./limits.js";
import {
  type CallRecord,
  type CancelReason,
  type FunctionConfig,
  type Harness,
  type HarnessEvent,
  type HarnessOptions,
  type MemoEntry,
  type RunEvent,
  type RunUntilIdleOptions,
  type SdkOp,
  type SerializedError,
  verifyResponseSignature,
} from "./protocol.js";
import {
  harnessError,
  isActive,
  limitError,
  type OpenRequest,
  type RunState,
  recordOp,
  snapshot,
  statsOf,
  storeMemo,
  toError,
} from "./run-state.js";
import { EVENT_DEDUP_WINDOW_MS, resolveAt, retryAt, Timeline } from "./time.js";

/** An HTTP call to the SDK: a discovery (`stepId=step`) or one planned step. */
interface Call {
  type: "call";
  runId: string;
  kind: "discovery" | "step";
  hashedId?: string;
  attempt: number;
}
/** Work done by the executor itself when its time comes: a sleep ends, a wait or timeout expires. */
interface Timer {
  type: "timer";
  runId: string;
  fire: () => void;
}
type Scheduled = Call | Timer;

const FAILED_EVENT = "inngest/function.failed";
const CANCELLED_EVENT = "inngest/function.cancelled";
const INVOKED_EVENT = "inngest/function.invoked";
const CRON_EVENT = "inngest/scheduled.timer";
/** enums/opcode.go `OpcodeIsLazy`: carried along with other ops, never a step of their own. */
const LAZY_OPS = new Set(["DeferAdd", "DeferAbort"]);
class InvalidEventError extends Error {}

export function createHarness(options: HarnessOptions): Harness {
  const maxAttemptsDefault = options.maxAttemptsDefault ?? 4;
  const timeScale = options.timeScale ?? 1;
  if (!(timeScale >= 0)) throw new Error(`harness: timeScale must be >= 0, got ${timeScale}`);

  const endpoint = new Endpoint(options);
  const ensureSynced = () => endpoint.ensureSynced();
  const runs = new Map<string, RunState>();
  const timeline = new Timeline<Scheduled>(Date.now());
  const slots = new SlotCounter();
  /** Event id -> virtual time it was accepted. */
  const seenEventIds = new Map<string, number>();
  /** The server's function UUIDs (`ctx.fn_id`), one per function slug. */
  const fnUuids = new Map<string, string>();
  const allCalls: CallRecord[] = [];
  const unhandledRequests: string[] = [];
  let runCounter = 0;
  let checkpointPosts = 0;
  let wake: (() => void)[] = [];
  let fatal: unknown;

  const notify = () => {
    const waiting = wake;
    wake = [];
    for (const w of waiting) w();
  };

  const fnUuid = (slug: string): string => {
    let id = fnUuids.get(slug);
    if (!id) {
      id = randomUUID();
      fnUuids.set(slug, id);
    }
    return id;
  };

  const normalise = (event: HarnessEvent): RunEvent => {
    if (!event || typeof event.name !== "string" || event.name === "") {
      throw new InvalidEventError(`harness: event without a name: ${JSON.stringify(event)}`);
    }
    return {
      ...event,
      id: typeof event.id === "string" && event.id !== "" ? event.id : randomUUID(),
      ts: typeof event.ts === "number" ? event.ts : timeline.now,
      data: event.data ?? {},
    };
  };

  const internalEvent = (name: string, data: Record<string, unknown>, id?: string): RunEvent =>
    normalise({ name, data, ...(id === undefined ? {} : { id }) });

  // --- Scheduling -------------------------------------------------------------------------------

  /** Work for a run that ended is dropped wherever it is found. */
  const dead = (item: Scheduled): boolean => {
    const run = runs.get(item.runId);
    return !run || !isActive(run);
  };

  const scheduleCall = (run: RunState, call: Omit<Call, "type" | "runId">, at = timeline.now) => {
    run.outstanding++;
    timeline.schedule(at, { type: "call", runId: run.runId, ...call });
    notify();
  };

  const scheduleTimer = (run: RunState, at: number, fire: () => void) => {
    timeline.schedule(at, { type: "timer", runId: run.runId, fire });
    notify();
  };

  const fireDueTimers = () => {
    for (;;) {
      const timer = timeline.take((item) => item.type === "timer", dead) as Timer | undefined;
      if (!timer) return;
      timer.fire();
    }
  };

  const advanceClock = (t: number) => {
    timeline.advanceTo(t);
    fireDueTimers();
  };

  /** Virtual time an open request has reached: its start plus its real duration so far, scaled. */
  const reached = (open: OpenRequest) => open.at + (performance.now() - open.started) * timeScale;

  // --- Runs ---------------------------------------------------------------------------------------

  const startRun = (config: FunctionConfig, event: RunEvent, parent?: RunState["parent"]): RunState => {
    const attempts = config.steps.step?.retries?.attempts;
    const now = timeline.now;
    const run: RunState = {
      runId: `run-${++runCounter}`,
      fnId: endpoint.shortId(config.id),
      slug: config.id,
      config,
      event,
      status: "queued",
      output: null,
      error: null,
      memo: {},
      memoBytes: new Map(),
      stateBytes: jsonBytes(event),
      stack: [],
      steps: new Map(),
      calls: [],
      retryAfter: [],
      maxAttempts: typeof attempts === "number" ? attempts + 1 : maxAttemptsDefault,
      disableImmediate: false,
      version: -1,
      outstanding: 0,
      waits: new Map(),
      parent,
      queuedAt: now,
      // executor.go createCancellationPauses: a listener lives from scheduling until its timeout.
      cancelUntil: (config.cancel ?? []).map((c) => (c.timeout ? resolveAt(c.timeout, now) : Infinity)),
      slots: concurrencySlots(config, event),
      open: new Map(),
      generation: 0,
    };
    runs.set(run.runId, run);

    const key = singletonKey(config, event);
    if (key !== undefined) {
      const holders = [...runs.values()].filter((r) => r !== run && isActive(r) && r.singletonKey === key);
      const [holder] = holders;
      if (holder && config.singleton?.mode === "skip") {
        run.skippedBy = holder.runId;
        finish(run, "skipped");
        return run;
      }
      for (const h of holders) cancelRun(h, "singleton", run.runId);
      run.singletonKey = key;
    }
    const start = config.timeouts?.start;
    if (start) {
      // service.go handleEagerCancelStartTimeout: only a run that has not made its first call yet.
      scheduleTimer(run, resolveAt(start, now), () => {
        if (run.startedAt === undefined) cancelRun(run, "timeouts.start");
      });
    }
    scheduleCall(run, { kind: "discovery", attempt: 0 });
    return run;
  };

  /**
   * Cancellation, waits, then triggers: an event never cancels or resumes the runs it starts, nor the
   * runs started while it is delivered (the function.cancelled events of the runs it cancels).
   */
  const deliver = (event: RunEvent): string[] => {
    for (const run of [...runs.values()]) {
      if (!isActive(run)) continue;
      const cancels = run.config.cancel ?? [];
      for (const [i, cancel] of cancels.entries()) {
        if (!nameMatches(cancel.event, event.name)) continue;
        if (timeline.now > (run.cancelUntil[i] ?? Infinity)) continue;
        if (cancel.if && !evaluate(cancel.if, { event: run.event, async: event })) continue;
        cancelRun(run, "cancelOn", event.id);
        break;
      }
      if (!isActive(run)) continue;
      for (const [hashedId, wait] of run.waits) {
        if (wait.event !== event.name) continue;
        if (wait.if && !evaluate(wait.if, { event: run.event, async: event })) continue;
        run.waits.delete(hashedId);
        memoise(run, hashedId, { type: "data", data: event });
        release(run);
      }
    }
    const runIds: string[] = [];
    for (const config of endpoint.configs ?? []) {
      const matched = config.triggers.some(
        (t) =>
          t.event !== undefined &&
          nameMatches(t.event, event.name) &&
          (!t.expression || evaluate(t.expression, { event })),
      );
      if (matched) runIds.push(startRun(config, event).runId);
    }
    return runIds;
  };

  /** Inngest ignores a second event with the same id within 24 h: no run, no cancellation, no resume. */
  const deliverOnce = (event: RunEvent): string[] => {
    const seenAt = seenEventIds.get(event.id);
    if (seenAt !== undefined && timeline.now - seenAt < EVENT_DEDUP_WINDOW_MS) return [];
    seenEventIds.set(event.id, timeline.now);
    return deliver(event);
  };

  const enqueue = async (raw: HarnessEvent | readonly HarnessEvent[]) => {
    await ensureSynced();
    const events = (Array.isArray(raw) ? raw : [raw]).map(normalise);
    const ids: string[] = [];
    const runIds: string[] = [];
    for (const event of events) {
      ids.push(event.id);
      runIds.push(...deliverOnce(event));
    }
    return { ids, runIds };
  };

  /** Stores a memo entry unless a limit refuses it, in which case the run fails. */
  const memoise = (run: RunState, hashedId: string, entry: MemoEntry, stepOutput = false) => {
    const error = limitError(run, [{ hashedId, entry, stepOutput }]);
    if (error) finish(run, "failed", error);
    else storeMemo(run, hashedId, entry);
  };

  /** One outstanding item (call, sleep, wait or invoke) is done; plan a discovery call when none remain. */
  const release = (run: RunState) => {
    run.outstanding--;
    if (!isActive(run) || run.outstanding > 0) return;
    // force_step_plan.go: with request version 2, a discovery after the parallel steps have all finished
    // lets the SDK run steps immediately again (and so checkpoint again).
    if (run.version >= 2) run.disableImmediate = false;
    scheduleCall(run, { kind: "discovery", attempt: 0 });
  };

  const finish = (
    run: RunState,
    status: "completed" | "failed" | "cancelled" | "skipped",
    value?: unknown,
  ) => {
    if (!isActive(run)) return;
    run.status = status;
    run.endedAt = timeline.now;
    if (status === "completed") run.output = value ?? null;
    if (status === "failed") run.error = value as SerializedError;
    run.waits.clear();
    if (run.parent) {
      const parent = runs.get(run.parent.runId);
      if (parent && isActive(parent)) {
        memoise(
          parent,
          run.parent.hashedId,
          status === "completed"
            ? { type: "data", data: run.output }
            : {
                type: "error",
                error: run.error ?? { name: "Error", message: `invoked run ${run.runId} was ${status}` },
              },
        );
        release(parent);
      }
    }
    if (status === "failed" && run.event.name !== FAILED_EVENT) {
      deliverOnce(
        internalEvent(FAILED_EVENT, {
          function_id: run.slug,
          run_id: run.runId,
          error: run.error,
          event: run.event,
        }),
      );
    }
  };

  /**
   * Ends an active run as cancelled and emits `inngest/function.cancelled` as the server does
   * (executor/finalize.go:555-612): id = run id, so a run yields at most one such event, and no
   * `inngest/function.failed`, so onFailure does not run. The data follows the system-event docs.
   */
  const cancelRun = (run: RunState, reason: CancelReason, by?: string): boolean => {
    if (!isActive(run)) return false;
    run.cancelReason = reason;
    if (by !== undefined) run.cancelledBy = by;
    finish(run, "cancelled");
    deliverOnce(
      internalEvent(
        CANCELLED_EVENT,
        {
          function_id: run.slug,
          run_id: run.runId,
          event: run.event,
          events: [run.event],
          error: { name: "Error", message: "function cancelled" },
        },
        run.runId,
      ),
    );
    return true;
  };

  // --- Calls --------------------------------------------------------------------------------------

  const buildBody = (run: RunState, attempt: number, open: OpenRequest) =>
    JSON.stringify({
      version: run.version,
      event: run.event,
      events: [run.event],
      steps: run.memo,
      ctx: {
        run_id: run.runId,
        attempt,
        max_attempts: run.maxAttempts,
        disable_immediate_execution: run.disableImmediate,
        use_api: false,
        // The server always sends these (driver/request.go:76-120); with them the SDK checkpoints
        // (InngestFunction.js:177-191 shouldAsyncCheckpoint), so they are opt-in here.
        ...(options.checkpointing ? { fn_id: fnUuid(run.slug), qi_id: open.qiId } : {}),
        stack: { stack: run.stack, current: Math.max(run.stack.length - 1, 0) },
      },
    });

  // The headers httpdriver.go:343-349 adds; the SDK echoes the last two in checkpoint posts
  // (InngestCommHandler.js:1157-1160).
  const callHeaders = (run: RunState, open: OpenRequest): Record<string, string> => ({
    "x-run-id": run.runId,
    "x-request-id": open.requestId,
    "x-inngest-generation-id": String(open.generation),
  });

  async function execute(call: Call, run: RunState): Promise<void> {
    // executor/validate.go runs before every call: a run that has used up its steps ends here.
    if (run.stack.length >= STEP_LIMIT) {
      finish(run, "failed", stepLimitError());
      return;
    }
    if (run.startedAt === undefined) {
      run.startedAt = timeline.now;
      const finishAfter = run.config.timeouts?.finish;
      // executor.go:2058-2066: the finish timeout counts from the first call.
      if (finishAfter) {
        scheduleTimer(run, resolveAt(finishAfter, run.startedAt), () => cancelRun(run, "timeouts.finish"));
      }
    }
    run.status = "running";
    const stepId = call.kind === "step" ? (call.hashedId as string) : "step";
    const query = `?fnId=${encodeURIComponent(run.slug)}&stepId=${encodeURIComponent(stepId)}`;
    const open: OpenRequest = {
      qiId: randomUUID(),
      requestId: randomUUID(),
      generation: ++run.generation,
      at: timeline.now,
      started: performance.now(),
      checkpoints: 0,
    };
    run.open.set(open.qiId, open);
    let res: Response;
    let text: string;
    try {
      res = await endpoint.request("POST", query, buildBody(run, call.attempt, open), {
        signingKey: options.signingKey,
        headers: callHeaders(run, open),
      });
      text = await res.text();
    } finally {
      run.open.delete(open.qiId);
    }
    const ms = performance.now() - open.started;
    advanceClock(open.at + ms * timeScale);
    const body = parseJson(text);
    const noRetryHeader = res.headers.get("x-inngest-no-retry");
    const retryAfter = res.headers.get("retry-after") ?? undefined;
    const version = Number(res.headers.get("x-inngest-req-version"));
    if (Number.isInteger(version) && version > 0) run.version = version;
    const ops: SdkOp[] = res.status === 206 ? ((Array.isArray(body) ? body : [body]) as SdkOp[]) : [];
    const record: CallRecord = {
      runId: run.runId,
      fnId: run.fnId,
      stepId,
      attempt: call.attempt,
      status: res.status,
      at: open.at,
      ms,
      ops: ops.map((o) => o?.op),
      checkpoints: open.checkpoints,
      ...(noRetryHeader === null ? {} : { noRetry: noRetryHeader === "true" }),
      ...(retryAfter === undefined ? {} : { retryAfter }),
      ...(options.signingKey
        ? {
            signatureValid: verifyResponseSignature(
              res.headers.get("x-inngest-signature"),
              text,
              options.signingKey,
            ),
          }
        : {}),
    };
    run.calls.push(record);
    allCalls.push(record);
    if (retryAfter !== undefined) run.retryAfter.push(retryAfter);
    if (!isActive(run)) return; // cancelled while the call was in flight: its result is dropped

    // A checkpoint resets the queue item's attempts (checkpoint/checkpoint.go:658-671).
    const attempt = open.checkpoints > 0 ? 0 : call.attempt;
    if (res.status === 200) finish(run, "completed", body);
    else if (res.status === 206) handleOps(run, attempt, ops, retryAfter);
    else {
      const retriable = noRetryHeader === "false" || (noRetryHeader === null && res.status >= 500);
      if (retriable && attempt + 1 < run.maxAttempts) {
        scheduleCall(run, { ...call, attempt: attempt + 1 }, retryAt(timeline.now, attempt, retryAfter));
      } else finish(run, "failed", toError(body, `HTTP ${res.status}: ${text.slice(0, 500)}`));
    }
    if (isActive(run)) release(run);
  }

  function handleOps(run: RunState, attempt: number, ops: SdkOp[], retryAfter?: string) {
    const nonLazy = ops.filter((o) => !LAZY_OPS.has(o?.op)).length;
    // executor.go:3758-3767: a response planning more steps than the limit fails the run at once.
    if (nonLazy > STEP_LIMIT) {
      finish(run, "failed", stepLimitError());
      return;
    }
    // executor.go HandleGeneratorResponse: more than one op means parallel steps, so from now on the SDK
    // must only plan, never run immediately.
    if (nonLazy > 1) run.disableImmediate = true;
    for (const op of ops) {
      if (!isActive(run)) return;
      if (!op || typeof op.op !== "string") {
        finish(run, "failed", harnessError(`malformed op in 206 response: ${JSON.stringify(op)}`));
        return;
      }
      if (LAZY_OPS.has(op.op)) continue;
      if (op.op === "RunComplete") {
        // Checkpointing mode ends with this instead of a 200 (engine.js:775-799).
        finish(run, "completed", op.data);
        return;
      }
      const record = recordOp(run, op);
      const now = timeline.now;
      switch (op.op) {
        case "StepRun":
          record.attempts++;
          memoise(run, op.id, { type: "data", data: op.data ?? null }, true);
          break;
        case "StepError": {
          record.attempts++;
          if (retryAfter !== undefined) record.retryAfter.push(retryAfter);
          const error = toError(op.error, "step failed");
          if (attempt + 1 < run.maxAttempts) {
            record.error = error;
            const retry = { kind: "step", hashedId: op.id, attempt: attempt + 1 } as const;
            scheduleCall(run, retry, retryAt(now, attempt, retryAfter));
          } else memoise(run, op.id, { type: "error", error });
          break;
        }
        case "StepFailed":
          record.attempts++;
          memoise(run, op.id, { type: "error", error: toError(op.error, "step failed") });
          break;
        case "StepPlanned":
          if (!(op.id in run.memo)) scheduleCall(run, { kind: "step", hashedId: op.id, attempt: 0 });
          break;
        case "Sleep": {
          // state/opcode.go SleepDuration: opts.duration, else the name (a duration or an ISO date).
          const duration = op.opts?.duration;
          const spec = typeof duration === "string" && duration !== "" ? duration : (op.name ?? "");
          const hashedId = op.id;
          run.outstanding++;
          scheduleTimer(run, spec === "" ? now : resolveAt(spec, now), () => {
            memoise(run, hashedId, { type: "data", data: null });
            release(run);
          });
          break;
        }
        case "WaitForEvent": {
          const opts = op.opts ?? {};
          const hashedId = op.id;
          run.waits.set(hashedId, {
            event: op.name ?? "",
            ...(typeof opts.if === "string" ? { if: opts.if } : {}),
          });
          run.outstanding++;
          if (typeof opts.timeout === "string") {
            scheduleTimer(run, resolveAt(opts.timeout, now), () => {
              if (!run.waits.delete(hashedId)) return;
              memoise(run, hashedId, { type: "data", data: null });
              release(run);
            });
          }
          break;
        }
        case "InvokeFunction": {
          const opts = op.opts as { function_id?: string; payload?: { data?: Record<string, unknown> } };
          const target = endpoint.configs?.find((c) => c.id === opts.function_id);
          if (!target) {
            memoise(run, op.id, {
              type: "error",
              error: harnessError(`invoked function "${opts.function_id}" is not served`),
            });
            break;
          }
          run.outstanding++;
          startRun(target, internalEvent(INVOKED_EVENT, opts.payload?.data ?? {}), {
            runId: run.runId,
            hashedId: op.id,
          });
          break;
        }
        default:
          finish(run, "failed", harnessError(`op "${op.op}" is not modelled by the harness`));
          return;
      }
    }
  }

  // --- Checkpoint API -----------------------------------------------------------------------------

  async function handleCheckpoint(req: Request, runId: string): Promise<Response> {
    checkpointPosts++;
    const post = await readCheckpoint(req, runId, options.signingKey);
    if (post instanceof Response) return post;
    const run = runs.get(runId);
    // A run that is unknown or over is a stale dispatch: the SDK stops without retrying.
    if (!run || !isActive(run)) return reject(409, `stale dispatch: run ${runId} is not running`, runId);
    const open = run.open.get(post.qiId);
    if (
      !open ||
      post.fnId !== fnUuid(run.slug) ||
      (post.generationId !== undefined && post.generationId !== open.generation)
    ) {
      return reject(409, "stale dispatch: fn_id, qi_id or generation_id matches no open request", runId);
    }
    // Time passes while the request is open: what fell due meanwhile (a finish timeout, say) fires first.
    advanceClock(reached(open));
    if (!isActive(run)) return reject(409, `stale dispatch: run ${runId} ended`, runId);
    // The server ignores a step it already holds (state.ErrDuplicateResponse).
    const fresh = post.stepRuns.filter((op) => !(op.id in run.memo));
    const pending = fresh.map((op) => ({
      hashedId: op.id,
      entry: { type: "data", data: op.data ?? null } as const,
      stepOutput: true,
    }));
    const tooLarge = limitError(run, pending);
    if (tooLarge) return reject(413, tooLarge.message, runId);
    for (const op of fresh) {
      recordOp(run, op).attempts++;
      storeMemo(run, op.id, { type: "data", data: op.data ?? null });
    }
    open.checkpoints++;
    return accept();
  }

  // --- Driving ------------------------------------------------------------------------------------

  async function runUntilIdle({ maxCalls = 10_000, concurrency = 1 }: RunUntilIdleOptions = {}) {
    await ensureSynced();
    if (fatal) throw fatal;
    let made = 0;
    let inFlight = 0;
    let failure: unknown;
    // A call may start once due and while its run's concurrency buckets have room.
    const runnable = (item: Scheduled) =>
      item.type === "call" && slots.free((runs.get(item.runId) as RunState).slots);
    const worker = async () => {
      for (;;) {
        if (failure) return;
        fireDueTimers();
        const call = timeline.take(runnable, dead) as Call | undefined;
        if (!call) {
          if (inFlight > 0) {
            await new Promise<void>((r) => wake.push(r));
            continue;
          }
          const next = timeline.nextDue(dead);
          if (next === undefined) {
            notify();
            return;
          }
          if (next <= timeline.now) {
            failure = new Error("harness: calls are due but none may start, and none is in flight");
            notify();
            return;
          }
          // Nothing can happen before the next due item: skip the time in between.
          timeline.advanceTo(next);
          continue;
        }
        if (made >= maxCalls) {
          timeline.schedule(timeline.now, call);
          failure = new Error(`harness: runUntilIdle exceeded maxCalls=${maxCalls}`);
          notify();
          return;
        }
        const run = runs.get(call.runId) as RunState;
        made++;
        inFlight++;
        slots.take(run.slots);
        try {
          await execute(call, run);
          if (fatal) failure = fatal;
        } catch (err) {
          failure = err;
        } finally {
          slots.give(run.slots);
          inFlight--;
          notify();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
    if (failure) throw failure;
    const stuck = [...runs.values()].filter(isActive);
    if (stuck.length > 0) {
      throw new Error(
        `harness: idle with active runs: ${stuck.map((r) => `${r.runId} (${r.fnId})`).join(", ")}`,
      );
    }
    return [...runs.values()].map(snapshot);
  }

  const harnessFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    if (req.method === "POST" && /^\/e\/[^/]+\/?$/.test(url.pathname)) {
      try {
        const { ids } = await enqueue((await req.json()) as HarnessEvent | HarnessEvent[]);
        return Response.json({ ids, status: 200 });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (err instanceof InvalidEventError) {
          return Response.json({ ids: [], status: 400, error: message }, { status: 400 });
        }
        // A harness limitation (say an unsupported expression) must fail the test, not a retried step.
        fatal ??= err;
        return Response.json({ ids: [], status: 500, error: message }, { status: 500 });
      }
    }
    const checkpointRun = checkpointRunId(req);
    if (checkpointRun !== undefined) return handleCheckpoint(req, checkpointRun);
    unhandledRequests.push(`${req.method} ${req.url}`);
    return Response.json({ error: "not handled by the inngest harness", status: 404 }, { status: 404 });
  };

  return {
    fetch: harnessFetch as typeof fetch,
    now: () => timeline.now,
    advance(ms) {
      if (!(ms >= 0)) throw new Error(`harness: advance needs a duration >= 0, got ${ms}`);
      advanceClock(timeline.now + ms);
    },
    send: enqueue,
    async invokeCron(fnId) {
      await ensureSynced();
      const config = endpoint.find(fnId);
      const cron = config.triggers.find((t) => t.cron)?.cron;
      if (!cron) throw new Error(`harness: function "${fnId}" has no cron trigger`);
      return startRun(config, internalEvent(CRON_EVENT, { cron })).runId;
    },
    async invoke(fnId, data = {}) {
      await ensureSynced();
      return startRun(endpoint.find(fnId), internalEvent(INVOKED_EVENT, data)).runId;
    },
    replay(runId) {
      const run = runs.get(runId);
      if (!run) throw new Error(`harness: no run ${runId} to replay`);
      return startRun(run.config, run.event).runId;
    },
    runUntilIdle,
    cancel(runId) {
      const run = runs.get(runId);
      return run ? cancelRun(run, "api") : false;
    },
    run(runId) {
      const run = runs.get(runId);
      return run ? snapshot(run) : undefined;
    },
    runs(fnId) {
      return [...runs.values()].filter((r) => fnId === undefined || r.fnId === fnId).map(snapshot);
    },
    async rawCall(call) {
      await ensureSynced();
      return endpoint.rawCall(
        call,
        normalise(call.event ?? { name: "harness/raw.call" }),
        maxAttemptsDefault,
      );
    },
    sync: () => endpoint.resync(),
    stats: () => statsOf(runs.values(), checkpointPosts),
    get calls() {
      return allCalls;
    },
    get unhandledRequests() {
      return unhandledRequests;
    },
  };
}
