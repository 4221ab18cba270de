/**
 * An in-process stand-in for the Inngest executor, driving our real served endpoint with Hono's
 * `app.request()` over the SDK's HTTP protocol (inngest 4.24, docs/SDK_SPEC.md in inngest/inngest).
 *
 * Modelled: event triggers (exact names, `prefix/*` wildcards, simple `if` expressions), memoised steps,
 * per-step retries (StepError -> same step again with attempt + 1, StepFailed -> memoised error),
 * StepPlanned and parallel steps (`disable_immediate_execution` once a discovery returns more than one op),
 * function-level retries (5xx / `x-inngest-no-retry: false`), `retry-after` (recorded, never waited for),
 * Sleep (time skipped), WaitForEvent (matched against events sent while waiting, else times out with
 * null once nothing else can run), InvokeFunction, onFailure via `inngest/function.failed`,
 * `step.sendEvent` / `inngest.send` through `harness.fetch` (fan-out, dedupe by event id), `cancel(runId)`,
 * `cancelOn` with `match` or simple `if`, explicit cron runs, HMAC request signing.
 *
 * Not modelled: flow control (concurrency, throttle, rateLimit, debounce, priority, singleton,
 * batchEvents: one event is one run), idempotency keys, `timeouts`, cancelOn `timeout`, cron scheduling,
 * wall-clock delays (sleep, retry backoff and retry-after are all skipped), the 24 h dedupe window
 * (dedupe lasts the harness's lifetime), checkpointing (`ctx.fn_id` is never sent, so the SDK answers with
 * one op per request; the real executor with checkpointing makes fewer calls), step.ai / step.fetch /
 * waitForSignal ops (the run fails with a harness error naming the op), defer ops (ignored), the
 * `inngest/function.finished` / `.cancelled` events, and failure events for failing onFailure handlers.
 *
 * The app needs no special options: serve as usual. Function configs come from an in-band sync (PUT with
 * `x-inngest-sync-kind: in_band`) unless `functions` is given; pass `functions` if the app sets
 * INNGEST_ALLOW_IN_BAND_SYNC=0. Calls run one at a time by default, so per-call times are comparable.
 */
import { randomUUID } from "node:crypto";
import { evaluate, nameMatches } from "./expressions.js";
import {
  type CallRecord,
  type FunctionConfig,
  type Harness,
  type HarnessEvent,
  type HarnessOptions,
  type HarnessStats,
  type MemoEntry,
  type RunEvent,
  type RunResult,
  type RunStatus,
  type RunUntilIdleOptions,
  type SdkOp,
  type SerializedError,
  type StepRecord,
  signBody,
  verifyResponseSignature,
} from "./protocol.js";

type Task =
  | { runId: string; kind: "discovery"; attempt: number }
  | {
      runId: string;
      kind: "step";
      hashedId: string;
      attempt: number;
    };

interface RunState {
  runId: string;
  fnId: string;
  slug: string;
  config: FunctionConfig;
  event: RunEvent;
  status: RunStatus;
  output: unknown;
  error: SerializedError | null;
  memo: Record<string, MemoEntry>;
  stack: string[];
  steps: Map<string, StepRecord>;
  calls: CallRecord[];
  retryAfter: string[];
  maxAttempts: number;
  disableImmediate: boolean;
  version: number;
  /** Queued tasks, pending waits and pending invokes: a discovery call is due when this reaches 0. */
  outstanding: number;
  waits: Map<string, { event: string; if?: string }>;
  parent?: { runId: string; hashedId: string };
  cancelledBy?: string;
}

const FAILED_EVENT = "inngest/function.failed";
const INVOKED_EVENT = "inngest/function.invoked";
const CRON_EVENT = "inngest/scheduled.timer";
const IGNORED_OPS = new Set(["DeferAdd", "DeferAbort"]);
const HOST = "http://harness.local";

class InvalidEventError extends Error {}

export function createHarness(options: HarnessOptions): Harness {
  const path = options.path ?? "/api/inngest";
  const maxAttemptsDefault = options.maxAttemptsDefault ?? 4;
  const resolve = <T>(value: T | (() => T)): T =>
    typeof value === "function" ? (value as () => T)() : value;
  const app = () => resolve(options.app);

  let appId = options.appId;
  let configs: FunctionConfig[] | undefined;
  let syncing: Promise<FunctionConfig[]> | undefined;
  const runs = new Map<string, RunState>();
  const queue: Task[] = [];
  const seenEventIds = new Set<string>();
  const allCalls: CallRecord[] = [];
  const unhandledRequests: string[] = [];
  let runCounter = 0;
  let wake: (() => void)[] = [];
  let fatal: unknown;

  const notify = () => {
    const waiting = wake;
    wake = [];
    for (const w of waiting) w();
  };

  const isActive = (run: RunState) => run.status === "queued" || run.status === "running";

  const shortId = (slug: string) =>
    appId && slug.startsWith(`${appId}-`) ? slug.slice(appId.length + 1) : slug;

  const findConfig = (fnId: string): FunctionConfig => {
    const found = configs?.find((c) => c.id === `${appId}-${fnId}`) ?? configs?.find((c) => c.id === fnId);
    if (!found) {
      const known = (configs ?? []).map((c) => shortId(c.id)).join(", ");
      throw new Error(`harness: no function "${fnId}" served (known: ${known})`);
    }
    return found;
  };

  async function sync(): Promise<FunctionConfig[]> {
    if (!appId && options.client) appId = resolve(options.client).id;
    if (options.functions) {
      if (!appId) throw new Error("harness: pass appId or client together with functions");
      const prefix = appId;
      configs = resolve(options.functions).flatMap((fn) => {
        const getConfig = (fn as { getConfig?: (o: object) => FunctionConfig[] }).getConfig;
        if (typeof getConfig !== "function") throw new Error("harness: functions must be Inngest functions");
        return getConfig.call(fn, { baseUrl: new URL(`${HOST}${path}`), appPrefix: prefix });
      });
      return configs;
    }
    // In-band sync: the endpoint answers a PUT with its function configs, as it does for Inngest Cloud.
    const res = await request("PUT", "", JSON.stringify({ url: `${HOST}${path}` }), options.signingKey, {
      "x-inngest-sync-kind": "in_band",
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`harness: in-band sync failed with ${res.status}: ${text}`);
    const body = JSON.parse(text) as { app_id?: string; functions?: FunctionConfig[] };
    if (!body.functions) throw new Error(`harness: in-band sync returned no functions: ${text}`);
    if (appId && body.app_id && body.app_id !== appId) {
      throw new Error(`harness: endpoint serves app "${body.app_id}", expected "${appId}"`);
    }
    appId = appId ?? body.app_id;
    configs = body.functions;
    return configs;
  }

  const ensureSynced = async () => {
    if (configs) return;
    syncing ??= sync();
    await syncing;
  };

  async function request(
    method: "GET" | "POST" | "PUT",
    query: string,
    bodyText: string,
    signingKey: string | undefined,
    extraHeaders: Record<string, string> = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "x-inngest-server-kind": signingKey ? "cloud" : "dev",
      ...extraHeaders,
    };
    if (signingKey) headers["x-inngest-signature"] = signBody(bodyText, signingKey);
    const init: RequestInit = { method, headers };
    if (method !== "GET") init.body = bodyText;
    return app().request(`${HOST}${path}${query}`, init);
  }

  const normalise = (event: HarnessEvent): RunEvent => {
    if (!event || typeof event.name !== "string" || event.name === "") {
      throw new InvalidEventError(`harness: event without a name: ${JSON.stringify(event)}`);
    }
    return {
      ...event,
      id: typeof event.id === "string" && event.id !== "" ? event.id : randomUUID(),
      ts: typeof event.ts === "number" ? event.ts : Date.now(),
      data: event.data ?? {},
    };
  };

  const push = (task: Task) => {
    const run = runs.get(task.runId);
    if (run) run.outstanding++;
    queue.push(task);
    notify();
  };

  const startRun = (config: FunctionConfig, event: RunEvent, parent?: RunState["parent"]): RunState => {
    const attempts = config.steps.step?.retries?.attempts;
    const run: RunState = {
      runId: `run-${++runCounter}`,
      fnId: shortId(config.id),
      slug: config.id,
      config,
      event,
      status: "queued",
      output: null,
      error: null,
      memo: {},
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
    };
    runs.set(run.runId, run);
    push({ runId: run.runId, kind: "discovery", attempt: 0 });
    return run;
  };

  /** Cancellation, waits, then triggers: an event never cancels or resumes the runs it starts. */
  const deliver = (event: RunEvent): string[] => {
    for (const run of runs.values()) {
      if (!isActive(run)) continue;
      for (const cancel of run.config.cancel ?? []) {
        if (!nameMatches(cancel.event, event.name)) continue;
        if (cancel.if && !evaluate(cancel.if, { event: run.event, async: event })) continue;
        finish(run, "cancelled");
        run.cancelledBy = event.id;
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
    for (const config of configs ?? []) {
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

  const enqueue = async (raw: HarnessEvent | readonly HarnessEvent[]) => {
    await ensureSynced();
    const events = (Array.isArray(raw) ? raw : [raw]).map(normalise);
    const ids: string[] = [];
    const runIds: string[] = [];
    for (const event of events) {
      ids.push(event.id);
      // Inngest ignores a second event with the same id within 24 h: no run, no cancellation.
      if (seenEventIds.has(event.id)) continue;
      seenEventIds.add(event.id);
      runIds.push(...deliver(event));
    }
    return { ids, runIds };
  };

  const internalEvent = (name: string, data: Record<string, unknown>): RunEvent => normalise({ name, data });

  const memoise = (run: RunState, hashedId: string, entry: MemoEntry) => {
    if (!(hashedId in run.memo)) run.stack.push(hashedId);
    run.memo[hashedId] = entry;
    const record = run.steps.get(hashedId) ?? newRecord(hashedId, undefined);
    record.type = entry.type;
    if (entry.type === "data") record.data = entry.data;
    else record.error = entry.error;
    run.steps.set(hashedId, record);
  };

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

  const recordOp = (run: RunState, op: SdkOp): StepRecord => {
    const record = run.steps.get(op.id) ?? newRecord(op.id, op);
    if (record.id === op.id && op.userland?.id) record.id = newRecord(op.id, op).id;
    record.op = op.op;
    if (op.name !== undefined) record.name = op.name;
    run.steps.set(op.id, record);
    return record;
  };

  /** One outstanding item (task, wait or invoke) is done; plan a discovery call when none remain. */
  const release = (run: RunState) => {
    run.outstanding--;
    if (isActive(run) && run.outstanding === 0) push({ runId: run.runId, kind: "discovery", attempt: 0 });
  };

  const finish = (run: RunState, status: "completed" | "failed" | "cancelled", value?: unknown) => {
    if (!isActive(run)) return;
    run.status = status;
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
                error: run.error ?? { name: "Error", message: `invoked run ${run.runId} was cancelled` },
              },
        );
        release(parent);
      }
    }
    if (status === "failed" && run.event.name !== FAILED_EVENT) {
      deliver(
        internalEvent(FAILED_EVENT, {
          function_id: run.slug,
          run_id: run.runId,
          error: run.error,
          event: run.event,
        }),
      );
    }
  };

  const toError = (body: unknown, fallback: string): SerializedError => {
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

  const harnessError = (message: string): SerializedError => ({ name: "HarnessError", message });

  const buildBody = (run: RunState, attempt: number) =>
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
        stack: { stack: run.stack, current: Math.max(run.stack.length - 1, 0) },
      },
    });

  const parseJson = (text: string): unknown => {
    try {
      return text === "" ? null : JSON.parse(text);
    } catch {
      return text;
    }
  };

  async function execute(task: Task): Promise<void> {
    const run = runs.get(task.runId);
    if (!run || !isActive(run)) return;
    run.status = "running";
    const stepId = task.kind === "step" ? task.hashedId : "step";
    const query = `?fnId=${encodeURIComponent(run.slug)}&stepId=${encodeURIComponent(stepId)}`;
    const started = performance.now();
    const res = await request("POST", query, buildBody(run, task.attempt), options.signingKey);
    const text = await res.text();
    const ms = performance.now() - started;
    const body = parseJson(text);
    const noRetryHeader = res.headers.get("x-inngest-no-retry");
    const retryAfter = res.headers.get("retry-after") ?? undefined;
    const version = Number(res.headers.get("x-inngest-req-version"));
    if (Number.isInteger(version) && version > 0) run.version = version;
    const ops: SdkOp[] = res.status === 206 ? ((Array.isArray(body) ? body : [body]) as SdkOp[]) : [];
    const call: CallRecord = {
      runId: run.runId,
      fnId: run.fnId,
      stepId,
      attempt: task.attempt,
      status: res.status,
      ms,
      ops: ops.map((o) => o?.op),
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
    run.calls.push(call);
    allCalls.push(call);
    if (retryAfter !== undefined) run.retryAfter.push(retryAfter);
    if (!isActive(run)) return; // cancelled while the call was in flight: its result is dropped

    if (res.status === 200) finish(run, "completed", body);
    else if (res.status === 206) handleOps(run, task, ops, retryAfter);
    else {
      const retriable = noRetryHeader === "false" || (noRetryHeader === null && res.status >= 500);
      if (retriable && task.attempt + 1 < run.maxAttempts) push({ ...task, attempt: task.attempt + 1 });
      else finish(run, "failed", toError(body, `HTTP ${res.status}: ${text.slice(0, 500)}`));
    }
    if (isActive(run)) release(run);
  }

  function handleOps(run: RunState, task: Task, ops: SdkOp[], retryAfter: string | undefined) {
    const counted = ops.filter((o) => !IGNORED_OPS.has(o.op) && o.op !== "RunComplete");
    // More than one op means parallel steps: from now on the SDK must only plan, never run immediately.
    if (task.kind === "discovery" && counted.length > 1) run.disableImmediate = true;
    for (const op of ops) {
      if (!isActive(run)) return;
      if (!op || typeof op.op !== "string") {
        finish(run, "failed", harnessError(`malformed op in 206 response: ${JSON.stringify(op)}`));
        return;
      }
      if (IGNORED_OPS.has(op.op)) continue;
      if (op.op === "RunComplete") {
        finish(run, "completed", op.data);
        return;
      }
      const record = recordOp(run, op);
      switch (op.op) {
        case "StepRun":
          record.attempts++;
          memoise(run, op.id, { type: "data", data: op.data ?? null });
          break;
        case "StepError": {
          record.attempts++;
          if (retryAfter !== undefined) record.retryAfter.push(retryAfter);
          const error = toError(op.error, "step failed");
          if (task.attempt + 1 < run.maxAttempts) {
            record.error = error;
            push({ runId: run.runId, kind: "step", hashedId: op.id, attempt: task.attempt + 1 });
          } else memoise(run, op.id, { type: "error", error });
          break;
        }
        case "StepFailed":
          record.attempts++;
          memoise(run, op.id, { type: "error", error: toError(op.error, "step failed") });
          break;
        case "StepPlanned":
          if (!(op.id in run.memo)) push({ runId: run.runId, kind: "step", hashedId: op.id, attempt: 0 });
          break;
        case "Sleep":
          memoise(run, op.id, { type: "data", data: null });
          break;
        case "WaitForEvent": {
          const opts = op.opts ?? {};
          run.waits.set(op.id, {
            event: op.name ?? "",
            ...(typeof opts.if === "string" ? { if: opts.if } : {}),
          });
          run.outstanding++;
          break;
        }
        case "InvokeFunction": {
          const opts = op.opts as { function_id?: string; payload?: { data?: Record<string, unknown> } };
          const target = configs?.find((c) => c.id === opts.function_id);
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

  /** Time passes only when nothing else can run: every pending waitForEvent times out with null. */
  const timeOutWaits = (): boolean => {
    let any = false;
    for (const run of runs.values()) {
      if (!isActive(run) || run.waits.size === 0) continue;
      for (const hashedId of [...run.waits.keys()]) {
        run.waits.delete(hashedId);
        memoise(run, hashedId, { type: "data", data: null });
        any = true;
        release(run);
      }
    }
    return any;
  };

  const snapshot = (run: RunState): RunResult => ({
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
    ...(run.parent ? { parentRunId: run.parent.runId } : {}),
    ...(run.cancelledBy ? { cancelledBy: run.cancelledBy } : {}),
  });

  async function runUntilIdle({ maxCalls = 10_000, concurrency = 1 }: RunUntilIdleOptions = {}) {
    await ensureSynced();
    if (fatal) throw fatal;
    let made = 0;
    let inFlight = 0;
    let failure: unknown;
    const worker = async () => {
      for (;;) {
        if (failure) return;
        const task = queue.shift();
        if (!task) {
          if (inFlight > 0) {
            await new Promise<void>((r) => wake.push(r));
            continue;
          }
          if (timeOutWaits()) continue;
          notify();
          return;
        }
        const run = runs.get(task.runId);
        if (!run || !isActive(run)) continue;
        if (made >= maxCalls) {
          queue.unshift(task);
          failure = new Error(`harness: runUntilIdle exceeded maxCalls=${maxCalls}`);
          notify();
          return;
        }
        made++;
        inFlight++;
        try {
          await execute(task);
          if (fatal) failure = fatal;
        } catch (err) {
          failure = err;
        } finally {
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
    unhandledRequests.push(`${req.method} ${req.url}`);
    return Response.json({ error: "not handled by the inngest harness", status: 404 }, { status: 404 });
  };

  return {
    fetch: harnessFetch as typeof fetch,
    send: enqueue,
    async invokeCron(fnId) {
      await ensureSynced();
      const config = findConfig(fnId);
      const cron = config.triggers.find((t) => t.cron)?.cron;
      if (!cron) throw new Error(`harness: function "${fnId}" has no cron trigger`);
      return startRun(config, internalEvent(CRON_EVENT, { cron })).runId;
    },
    async invoke(fnId, data = {}) {
      await ensureSynced();
      return startRun(findConfig(fnId), internalEvent(INVOKED_EVENT, data)).runId;
    },
    replay(runId) {
      const run = runs.get(runId);
      if (!run) throw new Error(`harness: no run ${runId} to replay`);
      return startRun(run.config, run.event).runId;
    },
    runUntilIdle,
    cancel(runId) {
      const run = runs.get(runId);
      if (!run || !isActive(run)) return false;
      finish(run, "cancelled");
      return true;
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
      const slug = configs?.some((c) => c.id === `${appId}-${call.fnId}`)
        ? `${appId}-${call.fnId}`
        : call.fnId;
      const event = normalise(call.event ?? { name: "harness/raw.call" });
      const method = call.method ?? "POST";
      const bodyText =
        method === "GET"
          ? ""
          : JSON.stringify(
              call.body ?? {
                version: -1,
                event,
                events: [event],
                steps: call.steps ?? {},
                ctx: {
                  run_id: `raw-${randomUUID()}`,
                  attempt: call.attempt ?? 0,
                  max_attempts: maxAttemptsDefault,
                  disable_immediate_execution: false,
                  use_api: false,
                  stack: { stack: Object.keys(call.steps ?? {}), current: 0 },
                },
              },
            );
      const sign = call.sign ?? Boolean(options.signingKey);
      if (sign && !options.signingKey) throw new Error("harness: rawCall sign requested without signingKey");
      const query =
        method === "POST"
          ? `?fnId=${encodeURIComponent(slug)}&stepId=${encodeURIComponent(call.stepId ?? "step")}`
          : "";
      const started = performance.now();
      const res = await request(method, query, bodyText, sign ? options.signingKey : undefined, call.headers);
      const text = await res.text();
      return {
        status: res.status,
        headers: Object.fromEntries(res.headers.entries()),
        text,
        body: parseJson(text),
        ms: performance.now() - started,
      };
    },
    async sync() {
      configs = undefined;
      syncing = undefined;
      await ensureSynced();
      return configs ?? [];
    },
    stats() {
      const byFn: HarnessStats["byFn"] = {};
      let memoisedSteps = 0;
      for (const run of runs.values()) {
        const entry = byFn[run.fnId] ?? { calls: 0, totalMs: 0, runs: 0 };
        byFn[run.fnId] = entry;
        entry.runs++;
        for (const c of run.calls) {
          entry.calls++;
          entry.totalMs += c.ms;
        }
        memoisedSteps += run.stack.length;
      }
      const totalMs = allCalls.reduce((sum, c) => sum + c.ms, 0);
      return {
        calls: allCalls.length,
        totalMs,
        meanMs: allCalls.length ? totalMs / allCalls.length : 0,
        runs: runs.size,
        memoisedSteps,
        byFn,
      };
    },
    get calls() {
      return allCalls;
    },
    get unhandledRequests() {
      return unhandledRequests;
    },
  };
}
