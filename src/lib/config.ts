import { z } from "zod";
import { ConfigError } from "./errors.js";

/**
 * All configuration, parsed once from the environment by zod. No other module reads process.env.
 * A bad value fails fast with every problem listed, each naming the variable; secret values are
 * never echoed back.
 */

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const optionalString = z
  .string()
  .transform((v) => v.trim())
  .transform((v) => (v === "" ? undefined : v))
  .optional();

export const configSchema = z.object({
  DATABASE_URL: optionalString,
  SUPABASE_URL: optionalString.pipe(
    z.url({ message: "must be a URL like https://<project>.supabase.co" }).optional(),
  ),
  SUPABASE_SERVICE_ROLE_KEY: optionalString,
  EMBEDDINGS_DATA_DIR: z.string().default("./.data"),
  DATABASE_POOL_SIZE: int(1, 200).default(10),

  OPENAI_API_KEY: optionalString,
  OPENAI_BASE_URL: optionalString.pipe(
    z.url({ message: "must be a URL like https://api.openai.com/v1" }).optional(),
  ),
  OPENAI_ORG_ID: optionalString,
  OPENAI_PROJECT_ID: optionalString,
  OPENAI_TIMEOUT_MS: int(1000, 600_000).default(60_000),
  OPENAI_MAX_RETRIES: int(0, 10).default(0),
  EMBEDDINGS_RPM: int(1, 1_000_000).optional(),
  EMBEDDINGS_TPM: int(1, 1_000_000_000).optional(),
  // How much of each limit the rate governor spends at once; OpenAI enforces over short windows.
  EMBEDDINGS_BURST_MS: int(1, 60_000).default(1000),
  EMBEDDINGS_PRICES: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (!v) return {} as Record<string, number>;
      try {
        return z.record(z.string(), z.number().nonnegative()).parse(JSON.parse(v));
      } catch {
        ctx.addIssue({
          code: "custom",
          message: 'must be JSON like {"text-embedding-3-small":0.02} (USD per 1M tokens)',
        });
        return z.NEVER;
      }
    }),

  EMBEDDINGS_BATCH_SIZE: int(1, 2048).default(20),
  EMBEDDINGS_PARALLELISM: int(1, 64).default(2),
  EMBEDDINGS_LEASE_SECONDS: int(10, 7200).default(300),
  EMBEDDINGS_JOB_STALE_SECONDS: int(60, 86_400).default(900),
  EMBEDDINGS_SWEEP_CRON: z.string().default("*/5 * * * *"),
  EMBEDDINGS_RECOVERY_CRON: z.string().default("0 */6 * * *"),
  EMBEDDINGS_ADMIN_TOKEN: optionalString,
  EMBEDDINGS_ALERT_WEBHOOK_URL: optionalString.pipe(z.url().optional()),
  EMBEDDINGS_ALERT_DEBOUNCE_SECONDS: int(0, 86_400).default(900),
  EMBEDDINGS_ALERT_INTERVAL_SECONDS: int(10, 3600).default(60),
  EMBEDDINGS_RATE_WINDOW_MINUTES: int(1, 10_080).default(15),
  // Per-minute history buckets older than this are pruned (a week of minutes is ~10k rows a target).
  EMBEDDINGS_HISTORY_DAYS: int(1, 366).default(7),
  // The Batch API route: first wait between polls (doubling to 10 minutes).
  EMBEDDINGS_BATCH_POLL_SECONDS: z.coerce.number().min(0.001).max(3600).default(30),
  EMBEDDINGS_HEALTH_THRESHOLDS: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (!v) return {};
      const threshold = z
        .object({ warning: z.number().nonnegative(), critical: z.number().nonnegative() })
        .partial()
        .strict();
      try {
        return z
          .object({
            deadLetters: threshold,
            stalledMinutes: threshold,
            retryQueue: threshold,
            completedButNull: threshold.pick({ warning: true }),
          })
          .partial()
          .strict()
          .parse(JSON.parse(v));
      } catch {
        ctx.addIssue({
          code: "custom",
          message:
            'must be JSON like {"deadLetters":{"warning":1,"critical":21},"stalledMinutes":{"warning":60,"critical":360},"retryQueue":{"warning":100,"critical":501}}',
        });
        return z.NEVER;
      }
    }),

  INNGEST_DEV: optionalString,
  INNGEST_SIGNING_KEY: optionalString,
  INNGEST_SIGNING_KEY_FALLBACK: optionalString,
  INNGEST_EVENT_KEY: optionalString,
  INNGEST_BASE_URL: optionalString,
  INNGEST_SERVE_ORIGIN: optionalString.pipe(
    z
      .string()
      .refine((v) => /^https?:\/\/[^/?#\s]+\/?$/.test(v) && URL.canParse(v), {
        message:
          "must be the origin Inngest reaches this server at (scheme and host, no path), like https://embeddings.example.com",
      })
      .optional(),
  ),
  INNGEST_SERVE_PATH: optionalString,
  PORT: int(1, 65535).default(3000),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
});

export type Config = z.infer<typeof configSchema>;

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".") || "(environment)"}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const c = parsed.data;
  const problems: string[] = [];
  if (c.SUPABASE_URL && !c.SUPABASE_SERVICE_ROLE_KEY && !c.DATABASE_URL) {
    problems.push(
      "  SUPABASE_SERVICE_ROLE_KEY: required when SUPABASE_URL is set (Project settings > API > service_role)",
    );
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration:\n${problems.join("\n")}`);
  return c;
}

/**
 * Why the served app cannot take Inngest's requests, or null. Without dev mode every request must be
 * signed, so a server without a signing key would answer 500 to all of them.
 */
export function serveProblem(config: Config): string | null {
  if (inngestDev(config) || config.INNGEST_SIGNING_KEY) return null;
  return "INNGEST_SIGNING_KEY is not set: Inngest Cloud signs every request and this server could verify none. Set INNGEST_SIGNING_KEY (Inngest Cloud: Manage > Signing key), or INNGEST_DEV=1 for a local dev server";
}

/** Inngest runs in dev mode (no signing) only when explicitly asked. */
export function inngestDev(config: Config): boolean {
  const v = config.INNGEST_DEV;
  return v !== undefined && !["0", "false", "no", "off"].includes(v.toLowerCase());
}
