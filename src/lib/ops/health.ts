/**
 * Health levels from a target's figures. Pure: no clock, no database, so every threshold is tested
 * exactly. Defaults are the thresholds a production embedding pipeline's operators settled on:
 *
 *   | signal                                  | healthy | warning  | critical |
 *   | dead letters                            | 0       | 1-20     | > 20     |
 *   | no row embedded while work is due       | < 1 h   | 1 h-6 h  | >= 6 h   |
 *   | retry queue (rows waiting for backoff)  | < 100   | 100-500  | > 500    |
 *
 * plus the silent failure where queue state disagrees with coverage (rows marked completed whose
 * embedding is NULL), a warning
 * from the first row. Each threshold is "at or above": overriding `deadLetters.critical` to 50
 * means 50 dead letters are critical.
 */

export type HealthLevel = "healthy" | "warning" | "critical";

export interface HealthReason {
  /** Stable for scripts and alert routing. */
  code: "dead_letters" | "stalled" | "retry_queue" | "completed_but_null" | "broken";
  level: Exclude<HealthLevel, "healthy">;
  message: string;
  target?: string;
}

export interface Health {
  level: HealthLevel;
  reasons: HealthReason[];
}

export interface Threshold {
  warning: number;
  critical: number;
}

export interface HealthThresholds {
  deadLetters: Threshold;
  /** Minutes due work waits without any row being embedded. */
  stalledMinutes: Threshold;
  retryQueue: Threshold;
  /** Only a warning level: the rows are repairable with `embeddings retry <target> --completed`. */
  completedButNull: { warning: number };
}

export const DEFAULT_THRESHOLDS: HealthThresholds = {
  deadLetters: { warning: 1, critical: 21 },
  stalledMinutes: { warning: 60, critical: 360 },
  retryQueue: { warning: 100, critical: 501 },
  completedButNull: { warning: 1 },
};

export type ThresholdOverrides = {
  [K in keyof HealthThresholds]?: Partial<HealthThresholds[K]>;
};

export function resolveThresholds(overrides: ThresholdOverrides = {}): HealthThresholds {
  return {
    deadLetters: { ...DEFAULT_THRESHOLDS.deadLetters, ...overrides.deadLetters },
    stalledMinutes: { ...DEFAULT_THRESHOLDS.stalledMinutes, ...overrides.stalledMinutes },
    retryQueue: { ...DEFAULT_THRESHOLDS.retryQueue, ...overrides.retryQueue },
    completedButNull: { ...DEFAULT_THRESHOLDS.completedButNull, ...overrides.completedButNull },
  };
}

export interface HealthInput {
  target?: string;
  deadLetter: number;
  /** Rows in status failed: waiting for their retry backoff. */
  retryQueue: number;
  /** From embedding_activity: seconds due work has waited with no row embedded. */
  idleSeconds: number;
  completedButNull: number;
  /** The target cannot be read (its table is gone, a privilege was revoked): critical, with why. */
  error?: string;
}

const RANK: Record<HealthLevel, number> = { healthy: 0, warning: 1, critical: 2 };

export function worst(levels: Iterable<HealthLevel>): HealthLevel {
  let out: HealthLevel = "healthy";
  for (const l of levels) if (RANK[l] > RANK[out]) out = l;
  return out;
}

export function levelRank(level: HealthLevel): number {
  return RANK[level];
}

function grade(value: number, t: Threshold): HealthLevel {
  if (value >= t.critical) return "critical";
  if (value >= t.warning) return "warning";
  return "healthy";
}

function duration(minutes: number): string {
  if (minutes < 120) return `${minutes} min`;
  return `${(minutes / 60).toFixed(1)} h`;
}

export function assessHealth(input: HealthInput, thresholds: HealthThresholds = DEFAULT_THRESHOLDS): Health {
  const reasons: HealthReason[] = [];
  const prefix = input.target ? `${input.target}: ` : "";
  const name = input.target ?? "<target>";
  const add = (code: HealthReason["code"], level: HealthLevel, message: string) => {
    if (level !== "healthy")
      reasons.push({ code, level, message: `${prefix}${message}`, target: input.target });
  };

  if (input.error) {
    add(
      "broken",
      "critical",
      `cannot be read: ${input.error}; restore the table or privilege, or remove the target (embeddings targets remove ${name})`,
    );
  }

  const dl = thresholds.deadLetters;
  add(
    "dead_letters",
    grade(input.deadLetter, dl),
    `${input.deadLetter} dead-lettered row${input.deadLetter === 1 ? "" : "s"} (warning from ${dl.warning}, critical from ${dl.critical}); see the errors, fix the cause, then retry them`,
  );

  const idleMinutes = Math.floor(Math.max(input.idleSeconds, 0) / 60);
  const st = thresholds.stalledMinutes;
  add(
    "stalled",
    grade(idleMinutes, st),
    `no row embedded for ${duration(idleMinutes)} while work is due (warning from ${duration(st.warning)}, critical from ${duration(st.critical)}); is a worker running? start one with: embeddings backfill ${name}`,
  );

  const rq = thresholds.retryQueue;
  add(
    "retry_queue",
    grade(input.retryQueue, rq),
    `${input.retryQueue} rows waiting to be retried (warning from ${rq.warning}, critical from ${rq.critical}); the provider or database keeps failing`,
  );

  if (input.completedButNull >= thresholds.completedButNull.warning) {
    add(
      "completed_but_null",
      "warning",
      `${input.completedButNull} rows are marked completed but their embedding is NULL; repair: embeddings retry ${name} --completed`,
    );
  }

  return { level: worst(reasons.map((r) => r.level)), reasons };
}

/** The service's level: the worst target's, with every target's reasons. */
export function combineHealth(parts: readonly Health[]): Health {
  return { level: worst(parts.map((p) => p.level)), reasons: parts.flatMap((p) => p.reasons) };
}
