/**
 * Function-level flow control the harness models: `concurrency` (limits on executing steps, that is
 * HTTP calls in flight, per evaluated key) and the `singleton` key. Throttle, rateLimit, debounce,
 * priority and batching are not modelled.
 */
import { evaluateValue, MISSING } from "./expressions.js";
import type { ConcurrencyConfig, FunctionConfig, RunEvent } from "./protocol.js";

/** One concurrency bucket a run's calls occupy while in flight. */
export interface Slot {
  bucket: string;
  limit: number;
}

/**
 * The value of a key expression as a bucket name. JSON never contains a raw NUL, so a key whose field
 * is missing gets a bucket of its own that no real value can share.
 */
export function keyOf(expr: string | undefined, event: RunEvent): string {
  if (expr === undefined) return "";
  const value = evaluateValue(expr, { event });
  return value === MISSING ? "\u0000missing" : JSON.stringify(value);
}

/**
 * The buckets of a run, evaluated once from its trigger event. `fn` scope (the default) counts per
 * function; `env` and `account` share a bucket across functions whose keys evaluate alike (the harness
 * has one environment in one account; without a key they share one bucket). A limit of 0 or less means
 * the plan's maximum: no limit here.
 */
export function concurrencySlots(config: FunctionConfig, event: RunEvent): Slot[] {
  const raw = config.concurrency;
  if (raw === undefined) return [];
  const list: ConcurrencyConfig[] =
    typeof raw === "number" ? [{ limit: raw }] : Array.isArray(raw) ? raw : [raw];
  return list
    .filter((c) => c.limit > 0)
    .map((c) => {
      const scope = c.scope ?? "fn";
      const owner = scope === "fn" ? `fn:${config.id}` : scope;
      return { bucket: `${owner}\u0000${keyOf(c.key, event)}`, limit: c.limit };
    });
}

/** Calls in flight per bucket: a call may start only while every one of its buckets is below its limit. */
export class SlotCounter {
  #inUse = new Map<string, number>();

  free(slots: readonly Slot[]): boolean {
    return slots.every((s) => (this.#inUse.get(s.bucket) ?? 0) < s.limit);
  }

  take(slots: readonly Slot[]): void {
    for (const s of slots) this.#inUse.set(s.bucket, (this.#inUse.get(s.bucket) ?? 0) + 1);
  }

  give(slots: readonly Slot[]): void {
    for (const s of slots) this.#inUse.set(s.bucket, (this.#inUse.get(s.bucket) ?? 1) - 1);
  }
}

/** The singleton bucket of a run, or undefined when its function sets no `singleton`. */
export function singletonKey(config: FunctionConfig, event: RunEvent): string | undefined {
  if (!config.singleton) return undefined;
  return `${config.id}\u0000${keyOf(config.singleton.key, event)}`;
}
