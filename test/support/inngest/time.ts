/**
 * Virtual time for the harness: Inngest's duration strings, wake-up and retry times, and the
 * timeline of due work that the executor drains. Nothing here reads the wall clock.
 */

export const SECOND_MS = 1000;
export const MINUTE_MS = 60 * SECOND_MS;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

/** Inngest drops an event whose id it accepted within the last 24 hours. */
export const EVENT_DEDUP_WINDOW_MS = DAY_MS;

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: SECOND_MS,
  m: MINUTE_MS,
  h: HOUR_MS,
  d: DAY_MS,
  w: 7 * DAY_MS,
};

/**
 * A Go-style duration as the server parses it (str2duration: "1w2d", "1h30m", "1.5h", "250ms"). The SDK
 * sends sleeps and waitForEvent timeouts in this form (helpers/strings.js:64-84 `timeStr`); config
 * values such as `timeouts.finish` arrive verbatim from the function options.
 */
export function parseDuration(input: string): number {
  const text = input.trim();
  if (text === "0") return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)/y;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new Error(`harness: cannot parse duration ${JSON.stringify(input)}`);
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    pos = re.lastIndex;
  }
  if (pos === 0) throw new Error(`harness: cannot parse duration ${JSON.stringify(input)}`);
  return total;
}

/**
 * The moment a sleep, timeout or cancel listener falls due: a date (sleepUntil sends ISO strings) or a
 * duration from `from`. Like the server (state/opcode.go SleepDuration), only strings of 10 or more
 * characters are tried as dates, and a date in the past is due at once.
 */
export function resolveAt(spec: string | number, from: number): number {
  if (typeof spec === "number") return from + spec;
  if (spec.length >= 10) {
    const date = Date.parse(spec);
    if (!Number.isNaN(date)) return Math.max(date, from);
  }
  return from + parseDuration(spec);
}

/**
 * The server's default retry schedule (pkg/backoff/backoff.go `TableBackoff`, indexed by the attempt
 * that failed), without its 0-30 s random jitter so runs stay deterministic.
 */
export const RETRY_BACKOFF_MS = [
  15 * SECOND_MS,
  30 * SECOND_MS,
  MINUTE_MS,
  2 * MINUTE_MS,
  5 * MINUTE_MS,
  10 * MINUTE_MS,
  20 * MINUTE_MS,
  40 * MINUTE_MS,
  HOUR_MS,
  2 * HOUR_MS,
];

const MIN_RETRY_MS = SECOND_MS;
const MAX_RETRY_MS = DAY_MS;

/**
 * When attempt `failedAttempt` + 1 is due. A `retry-after` header (seconds, or a date) replaces the
 * backoff, clipped to 1 s..24 h as httpdriver/parse.go `ParseRetry` does; an unreadable one is ignored.
 */
export function retryAt(now: number, failedAttempt: number, retryAfter: string | undefined): number {
  const after = retryAfter === undefined ? undefined : parseRetryAfter(retryAfter, now);
  if (after !== undefined) return now + Math.min(Math.max(after - now, MIN_RETRY_MS), MAX_RETRY_MS);
  const index = Math.min(Math.max(failedAttempt, 0), RETRY_BACKOFF_MS.length - 1);
  return now + (RETRY_BACKOFF_MS[index] as number);
}

function parseRetryAfter(value: string, now: number): number | undefined {
  // No date fits in 7 characters, so a short value is whole seconds (parse.go parseRetry).
  if (value.length <= 7) {
    const seconds = Number.parseInt(value, 10);
    if (seconds > 0) return now + seconds * SECOND_MS;
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : date;
}

interface Entry<T> {
  due: number;
  seq: number;
  item: T;
}

/**
 * The virtual clock and everything scheduled on it, ordered by due time and then by scheduling order,
 * so work due at the same moment runs first-in first-out.
 */
export class Timeline<T> {
  #now: number;
  #seq = 0;
  #entries: Entry<T>[] = [];

  constructor(start: number) {
    this.#now = start;
  }

  get now(): number {
    return this.#now;
  }

  /** Moves the clock forward to `t`; the clock never runs backwards. */
  advanceTo(t: number): void {
    if (t > this.#now) this.#now = t;
  }

  schedule(due: number, item: T): void {
    const entry = { due, seq: this.#seq++, item };
    // Binary search for the first entry due later: equal due times keep their scheduling order.
    let lo = 0;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.#entries[mid] as Entry<T>).due <= due) lo = mid + 1;
      else hi = mid;
    }
    this.#entries.splice(lo, 0, entry);
  }

  /** Removes and returns the earliest due item `accept` takes, discarding on the way those `drop` marks. */
  take(accept: (item: T) => boolean, drop: (item: T) => boolean = () => false): T | undefined {
    for (let i = 0; i < this.#entries.length; i++) {
      const entry = this.#entries[i] as Entry<T>;
      if (entry.due > this.#now) return undefined;
      if (drop(entry.item)) {
        this.#entries.splice(i--, 1);
        continue;
      }
      if (accept(entry.item)) {
        this.#entries.splice(i, 1);
        return entry.item;
      }
    }
    return undefined;
  }

  /** Due time of the earliest item, after discarding every item `drop` marks. */
  nextDue(drop: (item: T) => boolean = () => false): number | undefined {
    this.#entries = this.#entries.filter((e) => !drop(e.item));
    return this.#entries[0]?.due;
  }
}
