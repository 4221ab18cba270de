import { Hono } from "hono";
import { NonRetriableError, RetryAfterError } from "inngest";
import { describe, expect, it } from "vitest";
import { classifyExit, EXIT } from "../src/cli/exit.js";
import { toInngestError } from "../src/functions/errors.js";
import { errorToResponse } from "../src/http/errors.js";
import { SqlApiError } from "../src/lib/db/postgres.js";
import {
  ConfigError,
  classifyFailure,
  InputError,
  MalformedResponseError,
  RateLimitedError,
  TargetConfigError,
  TransientError,
} from "../src/lib/errors.js";

/**
 * One failure, one meaning: lib classifies it once and each engine only translates the answer.
 * For every kind of failure, Inngest (retry or not), HTTP (status) and the CLI (exit code) agree.
 */

async function httpStatus(err: unknown): Promise<number> {
  const app = new Hono();
  app.get("/", () => {
    throw err;
  });
  app.onError((e, c) => errorToResponse(e, c));
  return (await app.request("/")).status;
}

const sql = (code: string, message = `sqlstate ${code}`) => new SqlApiError(message, { code });

const CASES: [string, unknown, string, "retry" | "no-retry" | "retry-after", number, number][] = [
  ["a deadlock", sql("40P01"), "transient", "retry", 503, EXIT.transient],
  ["a statement timeout", sql("57014"), "transient", "retry", 503, EXIT.transient],
  ["a lost connection", sql("08006"), "transient", "retry", 503, EXIT.transient],
  ["a provider outage", new TransientError("OpenAI answered 502"), "transient", "retry", 503, EXIT.transient],
  ["a 429", new RateLimitedError("slow down", 7000), "rate-limited", "retry-after", 429, EXIT.transient],
  ["an invalid id (22P02)", sql("22P02"), "bad-input", "no-retry", 400, EXIT.usage],
  ["a NUL byte (22021)", sql("22021"), "bad-input", "no-retry", 400, EXIT.usage],
  ["an unknown target (P0002)", sql("P0002"), "bad-input", "no-retry", 404, EXIT.usage],
  [
    "a bad argument",
    new InputError("--batch-size must be a whole number"),
    "bad-input",
    "no-retry",
    400,
    EXIT.usage,
  ],
  ["a dimension mismatch (22000)", sql("22000"), "configuration", "no-retry", 422, EXIT.config],
  [
    "a bad key",
    new TargetConfigError("401", "set OPENAI_API_KEY"),
    "configuration",
    "no-retry",
    422,
    EXIT.config,
  ],
  [
    "bad configuration",
    new ConfigError("invalid configuration"),
    "configuration",
    "no-retry",
    422,
    EXIT.config,
  ],
  ["migrations not applied (42883)", sql("42883"), "configuration", "no-retry", 422, EXIT.config],
  ["a bug", new TypeError("x is undefined"), "unexpected", "retry", 500, EXIT.failed],
];

describe("one failure classifier", () => {
  it.each(CASES)("%s: %s everywhere", async (_, err, kind, inngest, status, exit) => {
    expect(classifyFailure(err).kind).toBe(kind);
    const mapped = toInngestError(err, 0);
    if (inngest === "no-retry") expect(mapped).toBeInstanceOf(NonRetriableError);
    else if (inngest === "retry-after") expect(mapped).toBeInstanceOf(RetryAfterError);
    else {
      expect(mapped).not.toBeInstanceOf(NonRetriableError);
      expect(mapped).not.toBeInstanceOf(RetryAfterError);
    }
    expect(await httpStatus(err)).toBe(status);
    expect(classifyExit(err).code).toBe(exit);
  });

  it("retries a malformed provider response once, then treats it as configuration", () => {
    const err = new MalformedResponseError("no data array");
    expect(classifyFailure(err, { attempt: 0 }).kind).toBe("transient");
    expect(classifyFailure(err, { attempt: 1 }).kind).toBe("configuration");
    expect(toInngestError(err, 1)).toBeInstanceOf(NonRetriableError);
  });
});
