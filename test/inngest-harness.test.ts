import { Hono } from "hono";
import { Inngest, type InngestFunction, NonRetriableError, RetryAfterError } from "inngest";
import { serve } from "inngest/hono";
import { describe, expect, it } from "vitest";
import {
  createHarness,
  evaluate,
  evaluateValue,
  type HarnessOptions,
  hashStepId,
  MISSING,
  type RunResult,
  STEP_OUTPUT_LIMIT_BYTES,
} from "./support/inngest-harness.js";

const APP_ID = "harness-test";
const SIGNING_KEY = `signkey-test-${"ab12".repeat(16)}`;
// Most tests fail steps on purpose; the SDK would log each one.
const logger = { info() {}, warn() {}, error() {}, debug() {} };
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A toy app served the way src/server.ts serves ours; functions come from `build` so they share the client. */
function toyApp(
  build: (client: Inngest) => InngestFunction.Like[],
  opts: { signed?: boolean; fromFunctions?: boolean; harness?: Partial<HarnessOptions> } = {},
) {
  let app: Hono | undefined;
  let functions: InngestFunction.Like[] = [];
  const harness = createHarness({
    app: () => app!,
    appId: APP_ID,
    ...(opts.signed ? { signingKey: SIGNING_KEY } : {}),
    // Default discovery is an in-band sync (PUT) against the endpoint; this reads getConfig instead.
    ...(opts.fromFunctions ? { functions: () => functions } : {}),
    ...opts.harness,
  });
  const client = opts.signed
    ? new Inngest({ id: APP_ID, isDev: false, signingKey: SIGNING_KEY, fetch: harness.fetch, logger })
    : new Inngest({ id: APP_ID, isDev: true, fetch: harness.fetch, logger });
  functions = build(client);
  app = new Hono();
  app.on(["GET", "PUT", "POST"], "/api/inngest", serve({ client, functions }));
  return { harness, client };
}

const only = (runs: RunResult[], fnId: string): RunResult => {
  const matching = runs.filter((r) => r.fnId === fnId);
  expect(matching).toHaveLength(1);
  return matching[0]!;
};
const step = (run: RunResult, id: string) => run.steps.find((s) => s.id === id);
/** Virtual start times of a run's calls, relative to `t0`. */
const callTimes = (run: RunResult, t0: number) => run.calls.map((c) => c.at - t0);

describe("inngest harness", () => {
  it("completes a three-step function with each step memoised once", async () => {
    const ran: string[] = [];
    const { harness } = toyApp((client) => [
      client.createFunction(
        { id: "three-steps", retries: 0, triggers: [{ event: "toy/three" }] },
        async ({ step, event }) => {
          const a = await step.run("first", () => {
            ran.push("first");
            return (event.data as { n: number }).n;
          });
          const b = await step.run("second", () => {
            ran.push("second");
            return a * 2;
          });
          const c = await step.run("third", () => {
            ran.push("third");
            return { total: a + b };
          });
          return c;
        },
      ),
    ]);

    await harness.send({ name: "toy/three", data: { n: 5 } });
    const run = only(await harness.runUntilIdle(), "three-steps");

    expect(run.status).toBe("completed");
    expect(run.output).toEqual({ total: 15 });
    expect(ran).toEqual(["first", "second", "third"]);
    expect(run.steps.map((s) => [s.id, s.data, s.hashedId])).toEqual([
      ["first", 5, hashStepId("first")],
      ["second", 10, hashStepId("second")],
      ["third", { total: 15 }, hashStepId("third")],
    ]);
    // Each step runs immediately inside a discovery call; one last call returns the output.
    expect(run.calls.map((c) => c.status)).toEqual([206, 206, 206, 200]);
    expect(harness.stats()).toMatchObject({ calls: 4, runs: 1, memoisedSteps: 3 });
  });

  it("retries a failing step until it succeeds, running it three times", async () => {
    let attempts = 0;
    const { harness } = toyApp((client) => [
      client.createFunction(
        { id: "flaky", retries: 2, triggers: [{ event: "toy/flaky" }] },
        async ({ step }) =>
          step.run("sometimes", () => {
            attempts++;
            if (attempts < 3) throw new Error(`boom ${attempts}`);
            return "ok";
          }),
      ),
    ]);

    await harness.send({ name: "toy/flaky" });
    const run = only(await harness.runUntilIdle(), "flaky");

    expect(run.status).toBe("completed");
    expect(run.output).toBe("ok");
    expect(attempts).toBe(3);
    expect(step(run, "sometimes")).toMatchObject({ attempts: 3, type: "data", data: "ok" });
    expect(run.calls.map((c) => [c.stepId === "step" ? "discovery" : "step", c.attempt, c.ops])).toEqual([
      ["discovery", 0, ["StepError"]],
      ["step", 1, ["StepError"]],
      ["step", 2, ["StepRun"]],
      ["discovery", 0, []],
    ]);
  });

  it("fails the run after the last attempt and runs onFailure with the error", async () => {
    let attempts = 0;
    const failures: { message: string; functionId: unknown; originalEvent: unknown }[] = [];
    const { harness } = toyApp((client) => [
      client.createFunction(
        {
          id: "doomed",
          retries: 2,
          triggers: [{ event: "toy/doomed" }],
          onFailure: async ({ error, event }) => {
            failures.push({
              message: error.message,
              functionId: event.data.function_id,
              originalEvent: event.data.event,
            });
          },
        },
        async ({ step }) => {
          await step.run("always-fails", () => {
            attempts++;
            throw new Error("provider unavailable");
          });
        },
      ),
    ]);

    await harness.send({ name: "toy/doomed", id: "doomed-1", data: { jobId: "j1" } });
    const runs = await harness.runUntilIdle();
    const run = only(runs, "doomed");

    expect(attempts).toBe(3);
    expect(run.status).toBe("failed");
    expect(run.error?.message).toContain("provider unavailable");
    expect(step(run, "always-fails")).toMatchObject({ attempts: 3, type: "error" });
    expect(only(runs, "doomed-failure")).toMatchObject({ status: "completed" });
    expect(failures).toHaveLength(1);
    expect(failures[0]!.message).toContain("provider unavailable");
    expect(failures[0]!.functionId).toBe(`${APP_ID}-doomed`);
    expect(failures[0]!.originalEvent).toMatchObject({ id: "doomed-1", data: { jobId: "j1" } });
  });

  it("fails at once on NonRetriableError, inside or outside a step", async () => {
    let stepRuns = 0;
    let handlerRuns = 0;
    const { harness } = toyApp((client) => [
      client.createFunction(
        { id: "bad-input", retries: 5, triggers: [{ event: "toy/bad" }] },
        async ({ step }) => {
          await step.run("validate", () => {
            stepRuns++;
            throw new NonRetriableError("row 7 has no text");
          });
        },
      ),
      client.createFunction({ id: "bad-config", retries: 5, triggers: [{ event: "toy/bad" }] }, async () => {
        handlerRuns++;
        throw new NonRetriableError("missing model name");
      }),
    ]);

    await harness.send({ name: "toy/bad" });
    const runs = await harness.runUntilIdle();

    const inStep = only(runs, "bad-input");
    expect(inStep.status).toBe("failed");
    expect(inStep.error?.message).toContain("row 7 has no text");
    expect(stepRuns).toBe(1);
    expect(step(inStep, "validate")).toMatchObject({ attempts: 1, op: "StepFailed", type: "error" });

    const outside = only(runs, "bad-config");
    expect(outside).toMatchObject({ status: "failed", error: { message: "missing model name" } });
    expect(handlerRuns).toBe(1);
    expect(outside.calls).toMatchObject([{ status: 400, noRetry: true }]);
  });

  it("records RetryAfterError's delay and waits it out in virtual time only", async () => {
    let stepCalls = 0;
    let handlerCalls = 0;
    const { harness } = toyApp((client) => [
      client.createFunction(
        { id: "rate-limited", retries: 3, triggers: [{ event: "toy/rl" }] },
        async ({ step }) => {
          const value = await step.run("call-provider", () => {
            stepCalls++;
            if (stepCalls === 1) throw new RetryAfterError("429 from provider", 30_000);
            return "embedded";
          });
          handlerCalls++;
          if (handlerCalls === 1) throw new RetryAfterError("db busy", "2m");
          return value;
        },
      ),
    ]);

    await harness.send({ name: "toy/rl" });
    const run = only(await harness.runUntilIdle(), "rate-limited");

    expect(run.status).toBe("completed");
    expect(run.output).toBe("embedded");
    expect(step(run, "call-provider")?.retryAfter).toEqual(["30"]);
    expect(run.retryAfter).toEqual(["30", "120"]);
    expect(run.calls.filter((c) => c.retryAfter).map((c) => [c.status, c.retryAfter])).toEqual([
      [206, "30"],
      [500, "120"],
    ]);
    // Each retry starts no earlier than its retry-after on the virtual clock; still one attempt each.
    const [first, stepRetry, outside, handlerRetry] = run.calls;
    expect(stepRetry!.at - first!.at).toBeGreaterThanOrEqual(30 * SECOND);
    expect(handlerRetry!.at - outside!.at).toBeGreaterThanOrEqual(120 * SECOND);
    expect(run.calls.map((c) => c.attempt)).toEqual([0, 1, 0, 1]);
  });

  it("memoises parallel steps, including repeated ids suffixed :1", async () => {
    const { harness } = toyApp((client) => [
      client.createFunction(
        { id: "parallel", retries: 0, triggers: [{ event: "toy/par" }] },
        async ({ step }) => {
          const [a, b, c] = await Promise.all([
            step.run("embed", () => "a"),
            step.run("embed", () => "b"),
            step.run("count", () => 3),
          ]);
          const after = await step.run("after", () => `${a}${b}${c}`);
          return after;
        },
      ),
    ]);

    await harness.send({ name: "toy/par" });
    const run = only(await harness.runUntilIdle(), "parallel");

    expect(run.status).toBe("completed");
    expect(run.output).toBe("ab3");
    expect(run.steps.map((s) => [s.id, s.hashedId, s.data])).toEqual([
      ["embed", hashStepId("embed"), "a"],
      ["embed:1", hashStepId("embed:1"), "b"],
      ["count", hashStepId("count"), 3],
      ["after", hashStepId("after"), "ab3"],
    ]);
    // Discovery plans three steps and each is called by id (immediate execution is off meanwhile).
    // Once none is pending the server lets the SDK run steps immediately again (force_step_plan.go),
    // so the next discovery runs "after" itself, and a last one returns the output.
    expect(run.calls[0]!.ops).toEqual(["StepPlanned", "StepPlanned", "StepPlanned"]);
    expect(run.calls.map((c) => (c.stepId === "step" ? c.ops.join() || c.status : "step"))).toEqual([
      "StepPlanned,StepPlanned,StepPlanned",
      "step",
      "step",
      "step",
      "StepRun",
      200,
    ]);
  });

  it("fans out step.sendEvent to child runs and dedupes a resend by event id", async () => {
    const childrenRan: number[] = [];
    const { harness } = toyApp((client) => [
      client.createFunction(
        { id: "coordinator", retries: 0, triggers: [{ event: "toy/backfill.requested" }] },
        async ({ step, event }) => {
          const chunks = await step.run("plan", () => [0, 1, 2]);
          const jobId = (event.data as { jobId: string }).jobId;
          return step.sendEvent(
            "fan-out",
            chunks.map((n) => ({ name: "toy/chunk.requested", id: `${jobId}-chunk-${n}`, data: { n } })),
          );
        },
      ),
      client.createFunction(
        { id: "chunk", retries: 0, triggers: [{ event: "toy/chunk.*" }] },
        async ({ step, event }) =>
          step.run("embed-chunk", () => {
            const n = (event.data as { n: number }).n;
            childrenRan.push(n);
            return n * 10;
          }),
      ),
    ]);

    await harness.send({ name: "toy/backfill.requested", id: "first", data: { jobId: "job-1" } });
    let runs = await harness.runUntilIdle();
    expect(only(runs, "coordinator").output).toEqual({
      ids: ["job-1-chunk-0", "job-1-chunk-1", "job-1-chunk-2"],
    });
    expect(
      runs
        .filter((r) => r.fnId === "chunk")
        .map((r) => [r.event.id, r.status, r.output])
        .sort(),
    ).toEqual([
      ["job-1-chunk-0", "completed", 0],
      ["job-1-chunk-1", "completed", 10],
      ["job-1-chunk-2", "completed", 20],
    ]);

    // A replayed coordinator (new trigger event, same job) resends the same deterministic ids.
    await harness.send({ name: "toy/backfill.requested", id: "second", data: { jobId: "job-1" } });
    await harness.send({ name: "toy/chunk.requested", id: "job-1-chunk-0", data: { n: 0 } });
    runs = await harness.runUntilIdle();
    expect(runs.filter((r) => r.fnId === "coordinator")).toHaveLength(2);
    expect(runs.filter((r) => r.fnId === "chunk")).toHaveLength(3);
    expect(childrenRan.sort()).toEqual([0, 1, 2]);
    expect(harness.unhandledRequests).toEqual([]);
  });

  it("cancels runs explicitly and through cancelOn match / if", async () => {
    const { harness } = toyApp((client) => [
      client.createFunction(
        {
          id: "by-match",
          retries: 0,
          triggers: [{ event: "toy/job.started" }],
          cancelOn: [{ event: "toy/job.cancelled", match: "data.jobId" }],
        },
        async ({ step }) => step.run("work", () => "done"),
      ),
      client.createFunction(
        {
          id: "by-if",
          retries: 0,
          triggers: [{ event: "toy/job.started" }],
          cancelOn: [{ event: "toy/job.cancelled", if: "async.data.jobId == event.data.jobId" }],
        },
        async ({ step }) => step.run("work", () => "done"),
      ),
      client.createFunction(
        {
          id: "self-cancelling",
          retries: 0,
          triggers: [{ event: "toy/self.started" }],
          cancelOn: [{ event: "toy/self.cancelled", match: "data.jobId" }],
        },
        async ({ step, event }) => {
          await step.sendEvent("cancel-me", { name: "toy/self.cancelled", data: event.data });
          await step.run("never", () => "unreachable");
        },
      ),
    ]);

    const { runIds } = await harness.send([
      { name: "toy/job.started", data: { jobId: "a" } },
      { name: "toy/job.started", data: { jobId: "b" } },
      { name: "toy/job.started", data: { jobId: "c" } },
    ]);
    expect(runIds).toHaveLength(6);
    await harness.send({ name: "toy/job.cancelled", id: "cancel-a", data: { jobId: "a" } });
    expect(harness.cancel(runIds[4]!)).toBe(true);
    await harness.send({ name: "toy/self.started", data: { jobId: "s" } });
    const runs = await harness.runUntilIdle();

    const summary = runs.map((r) => [r.fnId, (r.event.data as { jobId: string }).jobId, r.status]);
    expect(summary).toEqual([
      ["by-match", "a", "cancelled"],
      ["by-if", "a", "cancelled"],
      ["by-match", "b", "completed"],
      ["by-if", "b", "completed"],
      ["by-match", "c", "cancelled"],
      ["by-if", "c", "completed"],
      ["self-cancelling", "s", "cancelled"],
    ]);
    expect(runs[0]!.cancelledBy).toBe("cancel-a");
    expect(runs[0]!.calls).toHaveLength(0);
    expect(step(runs[6]!, "never")).toBeUndefined();
  });

  it("sleeps in virtual time, resolves waitForEvent, and runs invoke and cron functions", async () => {
    const { harness } = toyApp((client) => {
      const child = client.createFunction({ id: "child", retries: 0 }, async ({ event }) => ({
        doubled: (event.data as { n: number }).n * 2,
      }));
      return [
        child,
        client.createFunction(
          { id: "waiter", retries: 0, triggers: [{ event: "toy/wait" }] },
          async ({ step, event }) => {
            await step.sleep("nap", "1h");
            await step.sendEvent("ask", { name: "toy/approval.requested", data: event.data });
            // An event sent before the wait is registered is missed, in Inngest as here.
            const approved = await step.waitForEvent("approval", {
              event: "toy/approved",
              match: "data.jobId",
              timeout: "1d",
            });
            const never = await step.waitForEvent("never", { event: "toy/never", timeout: "1m" });
            const invoked = await step.invoke("double", { function: child, data: { n: 21 } });
            return { approved: approved?.data, never, invoked };
          },
        ),
        client.createFunction(
          { id: "nightly", retries: 0, triggers: [{ cron: "0 3 * * *" }] },
          async ({ event }) => event.name,
        ),
        client.createFunction(
          { id: "approver", retries: 0, triggers: [{ event: "toy/approval.requested" }] },
          async ({ step, event }) => {
            await step.sleep("think", "5m");
            await step.sendEvent("approve", {
              name: "toy/approved",
              data: { jobId: event.data.jobId, ok: true },
            });
          },
        ),
      ];
    });

    await harness.send({ name: "toy/wait", data: { jobId: "w1" } });
    const cronRunId = await harness.invokeCron("nightly");
    const runs = await harness.runUntilIdle();

    const waiter = only(runs, "waiter");
    expect(waiter.status).toBe("completed");
    expect(waiter.output).toEqual({
      approved: { jobId: "w1", ok: true },
      never: null,
      invoked: { doubled: 42 },
    });
    expect(step(waiter, "nap")).toMatchObject({ op: "Sleep", name: "1h" });
    // The 1 h nap, the approver's 5 m think and the 1 m timeout of "never" all passed on the clock.
    expect(waiter.endedAt! - waiter.startedAt!).toBeGreaterThanOrEqual(HOUR + 6 * MINUTE);
    expect(only(runs, "child")).toMatchObject({ status: "completed", parentRunId: waiter.runId });
    expect(harness.run(cronRunId)).toMatchObject({ status: "completed", output: "inngest/scheduled.timer" });
  });

  it("retries the handler after an error outside steps without re-running memoised steps", async () => {
    let loadRuns = 0;
    let handlerRuns = 0;
    const { harness } = toyApp(
      (client) => [
        client.createFunction(
          { id: "outside", retries: 1, triggers: [{ event: "toy/outside" }] },
          async ({ step }) => {
            const rows = await step.run("load", () => {
              loadRuns++;
              return 3;
            });
            handlerRuns++;
            if (handlerRuns === 1) throw new Error("transient outside a step");
            return rows;
          },
        ),
      ],
      { fromFunctions: true },
    );

    await harness.send({ name: "toy/outside" });
    const run = only(await harness.runUntilIdle(), "outside");

    expect(run).toMatchObject({ status: "completed", output: 3 });
    expect(loadRuns).toBe(1);
    expect(run.calls.map((c) => [c.status, c.attempt, c.noRetry])).toEqual([
      [206, 0, undefined],
      [500, 0, false],
      [200, 1, undefined],
    ]);
  });

  it("drives runs concurrently when asked and stops at maxCalls", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const { harness } = toyApp((client) => [
      client.createFunction({ id: "slow", retries: 0, triggers: [{ event: "toy/slow" }] }, async ({ step }) =>
        step.run("wait", async () => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await new Promise((r) => setTimeout(r, 20));
          inFlight--;
          return "done";
        }),
      ),
      client.createFunction(
        { id: "long", retries: 0, triggers: [{ event: "toy/long" }] },
        async ({ step }) => {
          for (let i = 0; i < 20; i++) await step.run(`page-${i}`, () => i);
        },
      ),
    ]);

    await harness.send(Array.from({ length: 6 }, (_, i) => ({ name: "toy/slow", data: { i } })));
    const runs = await harness.runUntilIdle({ concurrency: 3 });
    expect(runs.map((r) => r.status)).toEqual(Array(6).fill("completed"));
    expect(maxInFlight).toBe(3);

    await harness.send({ name: "toy/long" });
    await expect(harness.runUntilIdle({ maxCalls: 5 })).rejects.toThrow(/maxCalls=5/);
  });

  it("runs sleeps, sleepUntil, retry backoff and retry-after on the virtual clock", async () => {
    let attempts = 0;
    const { harness } = toyApp(
      (client) => [
        client.createFunction(
          { id: "sleeper", retries: 0, triggers: [{ event: "toy/sleep" }] },
          async ({ step, event }) => {
            // The SDK normalises "90m" to "1h30m" (timeStr); it cannot parse "1h30m" itself and would
            // send an empty duration, which the server treats as no sleep at all.
            await step.sleep("nap", "90m");
            await step.sleepUntil("until", new Date((event.data as { wakeAt: number }).wakeAt));
            return step.run("after", () => "awake");
          },
        ),
        client.createFunction(
          { id: "backoff", retries: 3, triggers: [{ event: "toy/backoff" }] },
          async ({ step }) =>
            step.run("flaky", () => {
              attempts++;
              if (attempts < 3) throw new Error(`boom ${attempts}`);
              if (attempts === 3) throw new RetryAfterError("slow down", "2m");
              return "ok";
            }),
        ),
      ],
      // Calls cost no virtual time, so every time below is exact.
      { harness: { timeScale: 0 } },
    );

    const t0 = harness.now();
    await harness.send([{ name: "toy/sleep", data: { wakeAt: t0 + 3 * HOUR } }, { name: "toy/backoff" }]);
    const runs = await harness.runUntilIdle();

    const sleeper = only(runs, "sleeper");
    expect(sleeper).toMatchObject({ status: "completed", output: "awake", queuedAt: t0, startedAt: t0 });
    expect(sleeper.event.ts).toBe(t0);
    // Woken at the end of each sleep with null memoised; "after" runs in the discovery after the last one.
    expect(callTimes(sleeper, t0)).toEqual([0, 90 * MINUTE, 3 * HOUR, 3 * HOUR]);
    expect(step(sleeper, "nap")).toMatchObject({ op: "Sleep", name: "1h30m", type: "data", data: null });
    expect(step(sleeper, "until")).toMatchObject({
      op: "Sleep",
      name: new Date(t0 + 3 * HOUR).toISOString(),
    });

    // The server's backoff table (15 s, 30 s, ...) unless retry-after says otherwise (2 m here).
    const backoff = only(runs, "backoff");
    expect(backoff).toMatchObject({ status: "completed", output: "ok" });
    expect(callTimes(backoff, t0)).toEqual([0, 15 * SECOND, 45 * SECOND, 165 * SECOND, 165 * SECOND]);
    expect(step(backoff, "flaky")).toMatchObject({ attempts: 4, retryAfter: ["120"] });
    expect(harness.now()).toBe(t0 + 3 * HOUR);

    // advance() moves the clock by hand; new events are stamped with it.
    harness.advance(10 * MINUTE);
    expect(harness.now()).toBe(t0 + 3 * HOUR + 10 * MINUTE);
    await harness.send({ name: "toy/backoff", id: "later" });
    expect(harness.runs("backoff")[1]!.event).toMatchObject({ id: "later", ts: t0 + 3 * HOUR + 10 * MINUTE });
  });

  it("dedupes event ids for 24 h of virtual time, while replay reuses the id at once", async () => {
    const { harness } = toyApp((client) => [
      client.createFunction(
        { id: "counted", retries: 0, triggers: [{ event: "toy/once" }] },
        async ({ event }) => event.id,
      ),
      client.createFunction(
        {
          id: "sleepy",
          retries: 0,
          triggers: [{ event: "toy/nap" }],
          cancelOn: [{ event: "toy/stop" }],
        },
        async ({ step }) => step.sleep("long", "3d"),
      ),
    ]);

    const first = await harness.send({ name: "toy/once", id: "same" });
    expect(first.runIds).toHaveLength(1);
    expect((await harness.send({ name: "toy/once", id: "same" })).runIds).toEqual([]);
    // Replay / Rerun from the dashboard: a new run with the same event, inside the window.
    const replayId = harness.replay(first.runIds[0]!);
    harness.advance(23 * HOUR);
    expect((await harness.send({ name: "toy/once", id: "same" })).runIds).toEqual([]);
    harness.advance(2 * HOUR);
    expect((await harness.send({ name: "toy/once", id: "same" })).runIds).toHaveLength(1);

    // A duplicate cancels nothing either: the first "stop-x" came before the run, its resend is ignored.
    await harness.send({ name: "toy/stop", id: "stop-x" });
    const { runIds: napIds } = await harness.send({ name: "toy/nap" });
    await harness.send({ name: "toy/stop", id: "stop-x" });
    expect(harness.run(napIds[0]!)?.status).toBe("queued");
    await harness.send({ name: "toy/stop", id: "stop-y" });

    const runs = await harness.runUntilIdle();
    expect(runs.filter((r) => r.fnId === "counted").map((r) => [r.runId === replayId, r.output])).toEqual([
      [false, "same"],
      [true, "same"],
      [false, "same"],
    ]);
    expect(only(runs, "sleepy")).toMatchObject({ status: "cancelled", cancelledBy: "stop-y" });
  });

  it("limits calls in flight per concurrency key, across functions for account scope", async () => {
    const inFlight = new Map<string, number>();
    const peak = new Map<string, number>();
    const keys = new Set<string>();
    const enter = async (key: string) => {
      inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
      const total = [...inFlight.values()].reduce((a, b) => a + b, 0);
      peak.set(key, Math.max(peak.get(key) ?? 0, inFlight.get(key)!));
      peak.set("*", Math.max(peak.get("*") ?? 0, total));
      // Hold the first call of each target until all three targets are in flight (or give up after a
      // second), so the overlap below does not depend on how fast the calls happen to start.
      keys.add(key);
      for (let waited = 0; key.startsWith("target:") && keys.size < 3 && waited < 1000; waited += 5) {
        await pause(5);
      }
      await pause(5);
      inFlight.set(key, inFlight.get(key)! - 1);
    };
    const { harness } = toyApp((client) => [
      client.createFunction(
        {
          id: "per-target",
          retries: 0,
          concurrency: { limit: 1, key: "event.data.target" },
          triggers: [{ event: "toy/embed" }],
        },
        async ({ step, event }) => {
          const key = `target:${String((event.data as { target?: string }).target)}`;
          await step.run("one", () => enter(key));
          await step.run("two", () => enter(key));
        },
      ),
      ...["alpha", "beta"].map((id) =>
        client.createFunction(
          {
            id,
            retries: 0,
            concurrency: [{ limit: 1, key: '"provider"', scope: "account" }],
            triggers: [{ event: "toy/shared" }],
          },
          async ({ step }) => step.run("call", () => enter("provider")),
        ),
      ),
    ]);

    await harness.send([
      { name: "toy/embed", data: { target: "a" } },
      { name: "toy/embed", data: { target: "a" } },
      { name: "toy/embed", data: { target: "b" } },
      { name: "toy/embed", data: { target: "b" } },
      // No target: a bucket of its own, shared by both runs.
      { name: "toy/embed", data: {} },
      { name: "toy/embed", data: {} },
    ]);
    let runs = await harness.runUntilIdle({ concurrency: 4 });
    expect(runs.map((r) => r.status)).toEqual(Array(6).fill("completed"));
    expect(peak.get("target:a")).toBe(1);
    expect(peak.get("target:b")).toBe(1);
    expect(peak.get("target:undefined")).toBe(1);
    // Different keys overlap: three buckets, three calls in flight at once.
    expect(peak.get("*")).toBe(3);

    peak.clear();
    await harness.send({ name: "toy/shared" });
    runs = await harness.runUntilIdle({ concurrency: 4 });
    expect(runs.filter((r) => r.fnId === "alpha" || r.fnId === "beta").map((r) => r.status)).toEqual([
      "completed",
      "completed",
    ]);
    expect(peak.get("provider")).toBe(1);
  });

  it("applies singleton skip and cancel, and cancel emits inngest/function.cancelled", async () => {
    const failures: unknown[] = [];
    const { harness } = toyApp((client) => [
      client.createFunction(
        {
          id: "sync-user",
          retries: 0,
          singleton: { mode: "skip", key: "event.data.user" },
          triggers: [{ event: "toy/sync" }],
        },
        async ({ step }) => {
          await step.sleep("settle", "1h");
          return step.run("sync", () => "synced");
        },
      ),
      client.createFunction(
        {
          id: "refresh",
          retries: 0,
          singleton: { mode: "cancel", key: "event.data.user" },
          triggers: [{ event: "toy/refresh" }],
          onFailure: async ({ error }) => {
            failures.push(error.message);
          },
        },
        async ({ step, event }) => {
          await step.sleep("settle", "1h");
          return step.run("refresh", () => (event.data as { n: number }).n);
        },
      ),
      client.createFunction(
        {
          id: "cleanup",
          retries: 0,
          triggers: [
            { event: "inngest/function.cancelled", if: `event.data.function_id == '${APP_ID}-refresh'` },
          ],
        },
        async ({ event }) => event.data,
      ),
    ]);

    const skip = await harness.send([
      { name: "toy/sync", data: { user: "u1" } },
      { name: "toy/sync", data: { user: "u1" } },
      { name: "toy/sync", data: { user: "u2" } },
    ]);
    const cancel = await harness.send([
      { name: "toy/refresh", id: "refresh-1", data: { user: "u1", n: 1 } },
      { name: "toy/refresh", id: "refresh-2", data: { user: "u1", n: 2 } },
    ]);
    const runs = await harness.runUntilIdle();

    const [kept, skipped, other] = skip.runIds.map((id) => harness.run(id)!);
    expect([kept!.status, skipped!.status, other!.status]).toEqual(["completed", "skipped", "completed"]);
    expect(skipped).toMatchObject({ skippedBy: kept!.runId, calls: [] });

    const [replaced, replacement] = cancel.runIds.map((id) => harness.run(id)!);
    expect(replaced).toMatchObject({
      status: "cancelled",
      cancelReason: "singleton",
      cancelledBy: replacement!.runId,
    });
    expect(replacement).toMatchObject({ status: "completed", output: 2 });
    // Delivered like any event, with the run id as its id; no function.failed, so no onFailure run.
    expect(only(runs, "cleanup").event).toMatchObject({
      name: "inngest/function.cancelled",
      id: replaced!.runId,
      data: {
        function_id: `${APP_ID}-refresh`,
        run_id: replaced!.runId,
        event: { id: "refresh-1" },
        events: [{ id: "refresh-1" }],
        error: { name: "Error", message: "function cancelled" },
      },
    });
    expect(runs.filter((r) => r.fnId === "refresh-failure")).toEqual([]);
    expect(failures).toEqual([]);

    // The key is free once the first run is over.
    await harness.send({ name: "toy/sync", data: { user: "u1" } });
    expect((await harness.runUntilIdle()).at(-1)).toMatchObject({ fnId: "sync-user", status: "completed" });
  });

  it("cancels on timeouts.start / finish, cancelOn (event.id, timeout) and cancel(), never onFailure", async () => {
    const failures: string[] = [];
    const { harness } = toyApp(
      (client) => [
        client.createFunction(
          {
            id: "finish-1h",
            retries: 0,
            timeouts: { finish: "1h" },
            triggers: [{ event: "toy/finish" }],
            onFailure: async ({ error }) => {
              failures.push(error.message);
            },
          },
          async ({ step }) => {
            await step.run("first", () => 1);
            await step.sleep("long", "2h");
            await step.run("never", () => 2);
          },
        ),
        client.createFunction(
          { id: "start-10m", retries: 0, timeouts: { start: "10m" }, triggers: [{ event: "toy/start" }] },
          async () => "started",
        ),
        client.createFunction(
          {
            id: "by-event-id",
            retries: 0,
            triggers: [{ event: "toy/job" }],
            cancelOn: [
              { event: "toy/abort", if: "async.data.eventId == event.id" },
              { event: "toy/abort-soon", timeout: "30m" },
            ],
          },
          async ({ step }) => step.sleep("wait", "1d"),
        ),
        client.createFunction(
          { id: "watch", retries: 0, triggers: [{ event: "inngest/function.cancelled" }] },
          async ({ event }) => event.data.run_id,
        ),
      ],
      { harness: { timeScale: 0 } },
    );

    const t0 = harness.now();
    const [finishId] = (await harness.send({ name: "toy/finish" })).runIds;
    const [lateId] = (await harness.send({ name: "toy/start", id: "late" })).runIds;
    // Nothing ran for 11 minutes: the start timeout cancels the run that never made a call.
    harness.advance(11 * MINUTE);
    expect(harness.run(lateId!)).toMatchObject({ status: "cancelled", cancelReason: "timeouts.start" });

    const { runIds: jobIds } = await harness.send([
      { name: "toy/job", id: "job-1" },
      { name: "toy/job", id: "job-2" },
      { name: "toy/job", id: "job-3" },
    ]);
    await harness.send({ name: "toy/abort", data: { eventId: "job-2" } });
    expect(harness.cancel(jobIds[0]!)).toBe(true);
    expect(harness.cancel(jobIds[0]!)).toBe(false);
    // The abort-soon listener expired 30 m after the run was scheduled.
    harness.advance(31 * MINUTE);
    await harness.send({ name: "toy/abort-soon" });
    // Queued now and called at once by runUntilIdle: well within its start timeout.
    const [promptId] = (await harness.send({ name: "toy/start" })).runIds;

    const runs = await harness.runUntilIdle();
    const finish = harness.run(finishId!)!;
    expect(finish).toMatchObject({ status: "cancelled", cancelReason: "timeouts.finish" });
    expect(finish.endedAt! - finish.startedAt!).toBe(HOUR);
    expect(step(finish, "never")).toBeUndefined();
    expect(harness.run(promptId!)).toMatchObject({ status: "completed", output: "started" });
    expect(jobIds.map((id) => harness.run(id)?.cancelReason ?? harness.run(id)?.status)).toEqual([
      "api",
      "cancelOn",
      "completed",
    ]);
    // One function.cancelled per cancelled run, whatever cancelled it.
    expect(
      runs
        .filter((r) => r.fnId === "watch")
        .map((r) => r.output)
        .sort(),
    ).toEqual([finishId, lateId, jobIds[0], jobIds[1]].sort());
    expect(failures).toEqual([]);
    expect(runs.some((r) => r.fnId === "finish-1h-failure")).toBe(false);
    expect(harness.now()).toBeGreaterThanOrEqual(t0 + 24 * HOUR);
  });

  it("lets slow calls pass virtual time with timeScale, so they count against timeouts", async () => {
    const { harness } = toyApp(
      (client) => [
        client.createFunction(
          { id: "slow-step", retries: 0, timeouts: { finish: "10s" }, triggers: [{ event: "toy/slow" }] },
          async ({ step }) =>
            step.run("work", async () => {
              await pause(20);
              return "done";
            }),
        ),
      ],
      // Each real millisecond is a virtual second: the 20 ms step takes at least 20 s.
      { harness: { timeScale: 1000 } },
    );

    await harness.send({ name: "toy/slow" });
    const run = only(await harness.runUntilIdle(), "slow-step");
    // The finish timeout fell due while the call was in flight, so its result was dropped.
    expect(run).toMatchObject({ status: "cancelled", cancelReason: "timeouts.finish" });
    expect(run.calls).toHaveLength(1);
    expect(step(run, "work")?.type).toBeUndefined();
  });

  it("fails runs over the step, step-output and state limits, with function.failed", async () => {
    const failed: string[] = [];
    const onFailure = async ({ error }: { error: Error }) => {
      failed.push(error.name);
    };
    const chunk = "x".repeat(3.9 * 1024 * 1024);
    const { harness } = toyApp((client) => [
      client.createFunction(
        { id: "wide", retries: 0, triggers: [{ event: "toy/limits" }], onFailure },
        async ({ step }) => Promise.all(Array.from({ length: 1001 }, (_, i) => step.run(`p${i}`, () => i))),
      ),
      client.createFunction(
        { id: "big-output", retries: 0, triggers: [{ event: "toy/limits" }], onFailure },
        async ({ step }) => step.run("big", () => "x".repeat(STEP_OUTPUT_LIMIT_BYTES)),
      ),
      client.createFunction(
        { id: "big-state", retries: 0, triggers: [{ event: "toy/limits" }], onFailure },
        async ({ step }) => {
          for (let i = 0; i < 9; i++) await step.run(`chunk-${i}`, () => chunk);
        },
      ),
    ]);

    await harness.send({ name: "toy/limits" });
    const runs = await harness.runUntilIdle();

    const wide = only(runs, "wide");
    expect(wide.error).toMatchObject({
      name: "InngestErrFunctionOverflowed",
      message: "The function run exceeded the step limit of 1000 steps.",
    });
    expect(wide.calls).toHaveLength(1);
    // The string's JSON quotes take it over 4 MiB.
    expect(only(runs, "big-output").error).toMatchObject({
      name: "InngestErrStepOutputTooLarge",
      message: "step output size is greater than the limit",
    });
    const state = only(runs, "big-state");
    expect(state.error).toMatchObject({ name: "InngestErrStateOverflowed" });
    expect(state.steps.filter((s) => s.type === "data")).toHaveLength(8);
    expect(failed.sort()).toEqual([
      "InngestErrFunctionOverflowed",
      "InngestErrStateOverflowed",
      "InngestErrStepOutputTooLarge",
    ]);
  });

  it("fails a run that has used up 1,000 steps before its next call, even when checkpointed", async () => {
    const { harness } = toyApp(
      (client) => [
        client.createFunction(
          { id: "long", retries: 0, triggers: [{ event: "toy/long" }] },
          async ({ step }) => {
            for (let i = 0; i < 999; i++) await step.run(`s${i}`, () => i);
            await step.sleep("rest", "1m");
            return step.run("after", () => "unreachable");
          },
        ),
      ],
      // Replaying 1,000 steps one call at a time is quadratic; checkpointing runs them in one request.
      { harness: { checkpointing: true, timeScale: 0 } },
    );

    await harness.send({ name: "toy/long" });
    const run = only(await harness.runUntilIdle(), "long");
    expect(run).toMatchObject({ status: "failed", error: { name: "InngestErrFunctionOverflowed" } });
    // 999 steps and the sleep are memoised; the call after the sleep is never made.
    expect(run.steps.filter((s) => s.type === "data")).toHaveLength(1000);
    expect(run.calls.at(-1)!.ops).toContain("Sleep");
    expect(step(run, "after")).toBeUndefined();
  }, 60_000);

  it("checkpoints: one discovery call runs three steps, posting each, with the same result", async () => {
    const build = (client: Inngest) => [
      client.createFunction(
        { id: "three-steps", retries: 0, triggers: [{ event: "toy/three" }] },
        async ({ step, event }) => {
          const a = await step.run("first", () => (event.data as { n: number }).n);
          const b = await step.run("second", () => a * 2);
          return step.run("third", () => ({ total: a + b }));
        },
      ),
    ];
    const plain = toyApp(build).harness;
    const checkpointed = toyApp(build, { harness: { checkpointing: true } }).harness;
    const signed = toyApp(build, { signed: true, harness: { checkpointing: true } }).harness;
    const results: RunResult[] = [];
    for (const harness of [plain, checkpointed, signed]) {
      await harness.send({ name: "toy/three", data: { n: 5 } });
      results.push(only(await harness.runUntilIdle(), "three-steps"));
    }
    const [before, after, inCloud] = results;

    expect(after!.output).toEqual(before!.output);
    expect(after!.steps.map((s) => [s.id, s.data, s.attempts])).toEqual(
      before!.steps.map((s) => [s.id, s.data, s.attempts]),
    );
    expect(before!.calls).toHaveLength(4);
    expect(after!.calls).toMatchObject([
      { stepId: "step", status: 206, ops: ["RunComplete"], checkpoints: 3 },
    ]);
    expect(checkpointed.stats()).toMatchObject({ calls: 1, checkpoints: 3, memoisedSteps: 3 });
    expect(checkpointed.unhandledRequests).toEqual([]);
    // Cloud mode: the posts carry the hashed signing key and the response is signed.
    expect(inCloud!).toMatchObject({ status: "completed", output: before!.output });
    expect(inCloud!.calls).toMatchObject([{ checkpoints: 3, signatureValid: true }]);
  });

  it("checkpoints: past maxRuntime the SDK plans the next step and the harness calls it", async () => {
    const { harness } = toyApp(
      (client) => [
        client.createFunction(
          {
            id: "slow-first",
            retries: 0,
            checkpointing: { maxRuntime: "10ms" },
            triggers: [{ event: "toy/slow" }],
          },
          async ({ step }) => {
            const a = await step.run("slow", async () => {
              await pause(50);
              return 1;
            });
            const b = await step.run("fast", () => a + 1);
            return step.run("last", () => [a, b]);
          },
        ),
      ],
      { harness: { checkpointing: true } },
    );

    await harness.send({ name: "toy/slow" });
    const run = only(await harness.runUntilIdle(), "slow-first");

    expect(run).toMatchObject({ status: "completed", output: [1, 2] });
    // "slow" is posted; the runtime is up, so "fast" comes back planned and is called by id.
    expect(run.calls[0]).toMatchObject({ stepId: "step", ops: ["StepPlanned"], checkpoints: 1 });
    expect(run.calls[1]).toMatchObject({ stepId: hashStepId("fast"), ops: ["StepRun"] });
    expect(run.calls.at(-1)!.ops.at(-1)).toBe("RunComplete");
    expect(run.steps.map((s) => [s.id, s.data, s.attempts])).toEqual([
      ["slow", 1, 1],
      ["fast", 2, 1],
      ["last", [1, 2], 1],
    ]);
  });

  it("checkpoints: stale posts get 409, and a run cancelled mid-request drops its result", async () => {
    const { harness } = toyApp(
      (client) => [
        client.createFunction(
          {
            id: "self-cancelling",
            retries: 0,
            triggers: [{ event: "toy/self.started" }],
            cancelOn: [{ event: "toy/self.cancelled", match: "data.jobId" }],
          },
          async ({ step, event }) => {
            await step.sendEvent("cancel-me", { name: "toy/self.cancelled", data: event.data });
            await step.run("never", () => "unreachable");
          },
        ),
      ],
      { harness: { checkpointing: true } },
    );

    await harness.send({ name: "toy/self.started", data: { jobId: "s" } });
    const run = only(await harness.runUntilIdle(), "self-cancelling");
    // The event cancelled the run while its request was open; the post of "cancel-me" then got 409,
    // which the SDK turns into 400 + no-retry (StaleDispatchError).
    expect(run).toMatchObject({
      status: "cancelled",
      calls: [{ status: 400, noRetry: true, checkpoints: 0 }],
    });
    expect(step(run, "never")).toBeUndefined();

    const post = (runId: string, body: object) =>
      harness.fetch(`http://localhost:8288/v1/checkpoint/${runId}/async`, {
        method: "POST",
        body: JSON.stringify({ run_id: runId, steps: [], ...body }),
      });
    expect((await post("run-404", { fn_id: "f", qi_id: "q" })).status).toBe(409);
    expect((await post(run.runId, { fn_id: "f", qi_id: "q" })).status).toBe(409);
    expect((await post(run.runId, {})).status).toBe(400);
    expect(harness.stats().checkpoints).toBe(4);
  });

  it("evaluates the CEL subset it supports and rejects the rest loudly", async () => {
    const scope = { event: { data: { jobId: "a", n: 3 } }, async: { data: { jobId: "a", n: 5 } } };
    expect(evaluate("async.data.jobId == event.data.jobId", scope)).toBe(true);
    expect(evaluate("event.data.n < async.data.n && !(event.data.jobId != 'a')", scope)).toBe(true);
    expect(evaluate("event.data.missing == null || async.data.n >= 6", scope)).toBe(false);
    expect(() => evaluate("size(event.data) > 0", scope)).toThrow(/unsupported expression/);
    // Values for concurrency and singleton keys, top-level event fields included.
    const keyed = { event: { id: "evt-1", ts: 7, data: { target: "docs", region: "eu" } } };
    expect(evaluateValue("event.data.target", keyed)).toBe("docs");
    expect(evaluateValue('event.data.target + "-" + event.data.region', keyed)).toBe("docs-eu");
    expect(evaluateValue('"global"', keyed)).toBe("global");
    expect(evaluateValue("event.data.missing", keyed)).toBe(MISSING);
    expect(evaluate("event.id == 'evt-1' && event.ts > 5", keyed)).toBe(true);

    const { harness } = toyApp((client) => [
      client.createFunction(
        {
          id: "exotic-cancel",
          retries: 0,
          triggers: [{ event: "toy/exotic" }],
          cancelOn: [{ event: "toy/exotic.stop", if: "event.data.tags.exists(t, t == 'x')" }],
        },
        async ({ step }) => {
          await step.sendEvent("stop", { name: "toy/exotic.stop", data: {} });
        },
      ),
    ]);
    await harness.send({ name: "toy/exotic", data: { tags: ["x"] } });
    await expect(harness.runUntilIdle()).rejects.toThrow(/unsupported expression|cannot parse/);
  });

  it("signs requests for a production-mode endpoint, which refuses unsigned calls", async () => {
    const { harness } = toyApp(
      (client) => [
        client.createFunction(
          { id: "secure", retries: 0, triggers: [{ event: "toy/secure" }] },
          async ({ step }) => step.run("only", () => "signed ok"),
        ),
      ],
      { signed: true },
    );

    await harness.send({ name: "toy/secure" });
    const run = only(await harness.runUntilIdle(), "secure");
    expect(run).toMatchObject({ status: "completed", output: "signed ok" });
    expect(run.calls.every((c) => c.signatureValid === true)).toBe(true);

    const signed = await harness.rawCall({ fnId: "secure", event: { name: "toy/secure" } });
    expect(signed.status).toBe(206);

    const unsigned = await harness.rawCall({ fnId: "secure", event: { name: "toy/secure" }, sign: false });
    expect(unsigned.status).toBe(401);

    const forged = await harness.rawCall({
      fnId: "secure",
      event: { name: "toy/secure" },
      sign: false,
      headers: { "x-inngest-signature": `t=${Math.floor(Date.now() / 1000)}&s=${"0".repeat(64)}` },
    });
    expect(forged.status).toBe(401);
  });
});
