import type { Logger } from "../logger.js";
import type { Health, HealthLevel } from "./health.js";
import { levelRank } from "./health.js";

/**
 * Alerts: a Slack-compatible incoming-webhook message ({ text }) when the service's health level
 * changes to warning or critical, and when it is back to healthy.
 *
 * Debounce (leading edge, then a quiet period): the first change is sent at once; for `debounceMs`
 * after a message, further changes are held back, and the level that holds when the quiet period
 * ends is sent (if it differs from the last one sent). A state flapping between healthy and warning
 * every scrape therefore sends one message, not one per flap. Escalation to critical is the one
 * exception: it is never held back, because a person must act on it now.
 *
 * A failed delivery is logged and retried on the next observation; the announced level only moves
 * when the webhook accepted the message.
 */

export interface AlerterOptions {
  webhookUrl: string;
  /** Injectable for tests; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Milliseconds since the epoch; injectable so tests step through the quiet period. */
  now?: () => number;
  debounceMs?: number;
  timeoutMs?: number;
  logger?: Logger;
  /** Prefix of every message, e.g. the deployment's name. */
  title?: string;
  /** Link to the dashboard, appended to messages. */
  dashboardUrl?: string;
}

export const DEFAULT_ALERT_DEBOUNCE_MS = 15 * 60_000;

export interface AlertMessage {
  level: HealthLevel;
  previous: HealthLevel;
  text: string;
}

export type ObserveResult =
  | { sent: AlertMessage }
  | { held: HealthLevel; until: number }
  | { failed: AlertMessage; error: string }
  | { unchanged: HealthLevel };

export interface Alerter {
  /** Feed the current health; sends at most one message. Calls are serialised. */
  observe(health: Health): Promise<ObserveResult>;
  /** The level the last accepted message announced ("healthy" at start). */
  readonly announced: HealthLevel;
}

const ICON: Record<HealthLevel, string> = {
  healthy: ":white_check_mark:",
  warning: ":warning:",
  critical: ":rotating_light:",
};

export function formatAlert(
  health: Health,
  previous: HealthLevel,
  options: Pick<AlerterOptions, "title" | "dashboardUrl"> = {},
): string {
  const title = options.title ?? "embeddings-sync";
  const head =
    health.level === "healthy"
      ? `${ICON.healthy} ${title} is healthy again (was ${previous})`
      : `${ICON[health.level]} ${title} is ${health.level.toUpperCase()} (was ${previous})`;
  const reasons = health.reasons.slice(0, 10).map((r) => `• [${r.level}] ${r.message}`);
  if (health.reasons.length > 10) reasons.push(`• ... and ${health.reasons.length - 10} more`);
  const link = options.dashboardUrl ? [`Dashboard: ${options.dashboardUrl}`] : [];
  return [head, ...reasons, ...link].join("\n");
}

export function createAlerter(options: AlerterOptions): Alerter {
  const fetchFn = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const debounceMs = options.debounceMs ?? DEFAULT_ALERT_DEBOUNCE_MS;
  let announced: HealthLevel = "healthy";
  let lastSentAt = Number.NEGATIVE_INFINITY;
  let chain: Promise<unknown> = Promise.resolve();

  async function deliver(health: Health): Promise<ObserveResult> {
    const message: AlertMessage = {
      level: health.level,
      previous: announced,
      text: formatAlert(health, announced, options),
    };
    try {
      const res = await fetchFn(options.webhookUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text: message.text }),
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      });
      if (!res.ok) throw new Error(`webhook answered ${res.status} ${res.statusText}`.trim());
      await res.body?.cancel();
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      options.logger?.warn(
        { step: "alert", level: message.level, previous: message.previous, error },
        "alert webhook delivery failed; retrying on the next check",
      );
      return { failed: message, error };
    }
    options.logger?.info({ step: "alert", level: message.level, previous: message.previous }, "alert sent");
    announced = health.level;
    lastSentAt = now();
    return { sent: message };
  }

  async function decide(health: Health): Promise<ObserveResult> {
    if (health.level === announced) return { unchanged: announced };
    const escalation = health.level === "critical" && levelRank(health.level) > levelRank(announced);
    const quietUntil = lastSentAt + debounceMs;
    if (!escalation && now() < quietUntil) return { held: health.level, until: quietUntil };
    return deliver(health);
  }

  return {
    observe(health) {
      const result = chain.then(() => decide(health));
      chain = result.catch(() => undefined);
      return result;
    },
    get announced() {
      return announced;
    },
  };
}

export interface AlertMonitor {
  /** One check now (also what the interval runs). */
  tick(): Promise<ObserveResult | { error: string }>;
  stop(): void;
}

/**
 * Checks health every `intervalMs` and feeds the alerter. The timer is unref'd: it never keeps a
 * process alive on its own. A failed check (database down) is logged, not alerted: /health and
 * the Inngest failure handlers already report outages, and a monitor that cannot read the status
 * cannot tell anything about row health.
 */
export function startAlertMonitor(options: {
  alerter: Alerter;
  check: () => Promise<Health>;
  intervalMs: number;
  logger?: Logger;
}): AlertMonitor {
  const tick = async (): Promise<ObserveResult | { error: string }> => {
    try {
      return await options.alerter.observe(await options.check());
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      options.logger?.warn({ step: "health-check", error }, "health check failed");
      return { error };
    }
  };
  const timer = setInterval(() => void tick(), options.intervalMs);
  timer.unref();
  return { tick, stop: () => clearInterval(timer) };
}
