import { Hono } from "hono";
import { Inngest, type InngestFunction, NonRetriableError, RetryAfterError } from "inngest";
import { serve } from "inngest/hono";
import { describe, expect, it } from "vitest";
import { createHarness, evaluate, hashStepId, type RunResult } from "./support/inngest-harness.js";

const APP_ID = "harness-test";
const SIGNING_KEY = `signkey-test-${"ab12".repeat(16)}`;
// Most tests fail steps on purpose; the SDK would log each one.
const logger = { info() {}, warn() {}, error() {}, debug() {} };

/** A toy app served the way src/server.ts serves ours; functions come from `build` so they share the client. */
function toyApp(
  build: (client: Inngest) => InngestFunction.Like[],
  opts: { signed?: boolean; fromFunctions?: boolean } = {},
) {
  let app: Hono | undefined;
  let functions: InngestFunction.Like[] = [];
  const harness = createHarness({
    app: () => app!,
    appId: APP_ID,
    ...(opts.signed ? { signingKey: SIGNING_KEY } : {}),
    // Default discovery is an in-band sync (PUT) against the endpoint; this reads getConfig instead.
    ...(opts.fromFunctions ? { functions: () => functions } : {}),
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

  it("records RetryAfterError's delay without waiting for it", async () => {
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
    // Discovery plans three steps; each is called by id; "after" is only planned now (immediate
    // execution is off after parallelism), then run by id; a last discovery returns the output.
    expect(run.calls[0]!.ops).toEqual(["StepPlanned", "StepPlanned", "StepPlanned"]);
    expect(run.calls).toHaveLength(7);
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

  it("skips sleeps, resolves waitForEvent, and runs invoke and cron functions", async () => {
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

  it("evaluates the CEL subset it supports and rejects the rest loudly", async () => {
    const scope = { event: { data: { jobId: "a", n: 3 } }, async: { data: { jobId: "a", n: 5 } } };
    expect(evaluate("async.data.jobId == event.data.jobId", scope)).toBe(true);
    expect(evaluate("event.data.n < async.data.n && !(event.data.jobId != 'a')", scope)).toBe(true);
    expect(evaluate("event.data.missing == null || async.data.n >= 6", scope)).toBe(false);
    expect(() => evaluate("size(event.data) > 0", scope)).toThrow(/unsupported expression/);

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
