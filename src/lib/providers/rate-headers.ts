/**
 * The rate-limit headers OpenAI (and compatible servers) send: `x-ratelimit-{limit,remaining,reset}-
 * {requests,tokens}` and, on a 429, `retry-after` / `retry-after-ms`. Parsed here for the governor
 * and for the provider's error classification.
 */

export type HeaderSource = Headers | Readonly<Record<string, string | string[] | number | null | undefined>>;

const UNIT_MS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
  us: 0.001,
  µs: 0.001,
  ns: 0.000001,
};
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/gu;
const DURATION_WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s))+$/u;

/**
 * Parses OpenAI's Go-style reset durations ("6m0s", "1s", "20ms", "1.5s", "1h2m3s") into milliseconds.
 * A bare number is read as seconds, as `retry-after` is. Returns undefined when unparseable.
 */
export function parseResetDuration(value: string): number | undefined {
  const text = value.trim();
  if (text === "") return undefined;
  if (/^\d+(?:\.\d+)?$/u.test(text)) return Number(text) * 1000;
  if (!DURATION_WHOLE.test(text)) return undefined;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(DURATION_PART)) {
    total += Number(amount) * (UNIT_MS[unit ?? ""] ?? 0);
  }
  return total;
}

export function headerValue(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
  const record = headers as Record<string, unknown>;
  const raw = record[name] ?? record[name.toLowerCase()];
  if (Array.isArray(raw)) return raw[0] === undefined ? undefined : String(raw[0]);
  return raw === undefined || raw === null ? undefined : String(raw);
}

export function headerNumber(headers: HeaderSource, name: string): number | undefined {
  const raw = headerValue(headers, name);
  if (raw === undefined || raw.trim() === "") return undefined;
  const n = Number(raw);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * How long the server asked us to wait, in ms: `retry-after-ms`, then `retry-after` (seconds or HTTP
 * date), then the reset of whichever budget is exhausted (`x-ratelimit-reset-requests/tokens`).
 */
export function retryAfterMsFromHeaders(
  headers: HeaderSource,
  nowMs: number = Date.now(),
): number | undefined {
  const ms = headerNumber(headers, "retry-after-ms");
  if (ms !== undefined && ms >= 0) return ms;

  const retryAfter = headerValue(headers, "retry-after")?.trim();
  if (retryAfter) {
    const seconds = Number(retryAfter);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
    const date = Date.parse(retryAfter);
    if (Number.isFinite(date)) return Math.max(0, date - nowMs);
  }

  const resets: number[] = [];
  const exhausted: number[] = [];
  for (const kind of ["requests", "tokens"] as const) {
    const raw = headerValue(headers, `x-ratelimit-reset-${kind}`);
    const reset = raw === undefined ? undefined : parseResetDuration(raw);
    if (reset === undefined) continue;
    resets.push(reset);
    if (headerNumber(headers, `x-ratelimit-remaining-${kind}`) === 0) exhausted.push(reset);
  }
  const relevant = exhausted.length > 0 ? exhausted : resets;
  return relevant.length > 0 ? Math.max(...relevant) : undefined;
}
