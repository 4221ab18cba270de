import { type Config, inngestDev } from "../config.js";
import { editedMigrations, loadMigrations, type Migration } from "../db/migrate.js";
import type { EmbeddingStore } from "../db/store.js";
import { errorMessage, isRetryable, TargetConfigError } from "../errors.js";
import { openAIKeyProblem } from "../providers/index.js";
import type { EmbeddingProvider } from "../providers/provider.js";
import type { Target } from "../types.js";

/**
 * One preflight, used by `embeddings doctor`, GET /health and the backfill's `preflight` step. It
 * reports every problem at once, each with its fix, and never prints a secret. A missing key, or a
 * model answering 1536 dimensions for a 384-dimension column, fails here in seconds, before any row
 * is claimed.
 */

export type CheckLevel = "ok" | "config" | "transient";

export interface Check {
  name: string;
  level: CheckLevel;
  message: string;
  fix?: string;
}

export interface PreflightReport {
  /** "config": a person must change something; "transient": an outage, retrying may fix it. */
  status: CheckLevel;
  checks: Check[];
}

export interface PreflightDeps {
  store: EmbeddingStore;
  config: Config;
  providerFor: (target: Target) => EmbeddingProvider;
}

const UNDEFINED_FUNCTION = "42883";

/** Migrations this worker ships that the database has not recorded. */
function missingMigrations(
  files: readonly Migration[],
  recorded: { version: string | null; versions?: string[] },
): string[] {
  // A database from before `versions` existed reports only its newest version.
  const have = new Set(recorded.versions ?? []);
  return files
    .filter((m) =>
      recorded.versions ? !have.has(m.version) : recorded.version === null || m.version > recorded.version,
    )
    .map((m) => `${m.version}_${m.name}`);
}

export async function preflight(
  deps: PreflightDeps,
  options: { targets?: string[]; probe?: boolean; needsEvents?: boolean } = {},
): Promise<PreflightReport> {
  const checks: Check[] = [];
  const { store, config } = deps;

  // A backfill fans out by sending events: in cloud mode that needs the event key, and finding out
  // after seeding a whole table is too late.
  if (options.needsEvents && !inngestDev(config) && !config.INNGEST_EVENT_KEY) {
    checks.push({
      name: "inngest event key",
      level: "config",
      message: "INNGEST_EVENT_KEY is not set: the backfill cannot send its worker events to Inngest Cloud",
      fix: "set INNGEST_EVENT_KEY (Inngest Cloud: Manage > Event keys), or INNGEST_DEV=1 with a dev server",
    });
  }

  // Secrets and credentials: presence and plausibility only.
  if (config.DATABASE_URL) {
    try {
      const u = new URL(config.DATABASE_URL);
      if (!/^postgres(ql)?:$/.test(u.protocol)) throw new Error("scheme");
      checks.push({ name: "database credentials", level: "ok", message: "DATABASE_URL is set" });
    } catch {
      checks.push({
        name: "database credentials",
        level: "config",
        message: "DATABASE_URL is not a postgres:// URL",
        fix: "set DATABASE_URL=postgres://user:password@host:5432/db (for Supabase: the pooler connection string)",
      });
    }
  } else if (config.SUPABASE_URL) {
    checks.push({
      name: "database credentials",
      level: config.SUPABASE_SERVICE_ROLE_KEY ? "ok" : "config",
      message: config.SUPABASE_SERVICE_ROLE_KEY
        ? "SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set"
        : "SUPABASE_SERVICE_ROLE_KEY is not set",
      fix: config.SUPABASE_SERVICE_ROLE_KEY
        ? undefined
        : "copy the service_role key from Project settings > API",
    });
  } else {
    checks.push({
      name: "database credentials",
      level: "ok",
      message: "using the embedded database (no credentials needed)",
    });
  }

  // Database reachable, migrations applied.
  let reachable = false;
  try {
    const v = await store.schemaVersion();
    reachable = true;
    const files = await loadMigrations();
    const missing = missingMigrations(files, v);
    const edited = editedMigrations(files, v.checksums ?? {});
    if (edited.length > 0) {
      checks.push({
        name: "migrations",
        level: "config",
        message: `migrations changed after this database applied them: ${edited.join(", ")}`,
        fix: "a released migration must never be edited: restore it, and ship the change as a new migration",
      });
    }
    checks.push(
      missing.length === 0
        ? {
            name: "schema",
            level: "ok",
            message: `migrations applied (version ${v.version}, PostgreSQL ${v.server})`,
          }
        : {
            name: "schema",
            level: "config",
            message: `database schema is at ${v.version ?? "nothing"}; not applied: ${missing.join(", ")}`,
            fix: "apply supabase/migrations: supabase db push, or psql -f each file in order",
          },
    );
  } catch (err) {
    const code = (err as { code?: string }).code;
    checks.push(
      code === UNDEFINED_FUNCTION
        ? {
            name: "schema",
            level: "config",
            message: "the embedding SQL API is not installed in this database",
            fix: "apply supabase/migrations: supabase db push, or psql -f each file in order",
          }
        : {
            name: "database",
            level: isRetryable(err) || !code ? "transient" : "config",
            message: `database unreachable: ${errorMessage(err)}`,
            fix: "check DATABASE_URL / SUPABASE_URL and that the database is up",
          },
    );
  }

  let targets: Target[] = [];
  if (reachable) {
    try {
      const all = await store.listTargets();
      const wanted = options.targets;
      for (const name of wanted ?? []) {
        if (!all.some((t) => t.name === name)) {
          checks.push({
            name: `target ${name}`,
            level: "config",
            message: `target "${name}" is not registered`,
            fix: "register it: embeddings targets add <name> --table ... (embeddings targets list shows what exists)",
          });
        }
      }
      targets = wanted ? all.filter((t) => wanted.includes(t.name)) : all;
    } catch (err) {
      checks.push({
        name: "targets",
        level: "transient",
        message: `could not list targets: ${errorMessage(err)}`,
      });
    }
  }

  if (targets.some((t) => t.provider === "openai")) {
    const problem = openAIKeyProblem(config.OPENAI_API_KEY);
    checks.push(
      problem
        ? {
            name: "openai key",
            level: "config",
            message: problem,
            fix: "set OPENAI_API_KEY for this worker (Supabase: supabase secrets set OPENAI_API_KEY=...; Inngest Cloud: your host's environment)",
          }
        : { name: "openai key", level: "ok", message: "OPENAI_API_KEY is set" },
    );
  }

  for (const t of targets) {
    const c = await store
      .checkTarget(t.name)
      .catch((err: unknown) => ({ ok: false, problems: [errorMessage(err)] }));
    if (!c.ok) {
      for (const p of c.problems) {
        checks.push({
          name: `target ${t.name}`,
          level: "config",
          message: p,
          fix: "restore the column, or re-register the target with embeddings targets add",
        });
      }
      continue;
    }
    checks.push({
      name: `target ${t.name}`,
      level: "ok",
      message: `${t.table}.${t.embeddingColumn} ${t.embeddingKind}(${t.dimensions})`,
    });
    if (options.probe === false) continue;
    // Live probe: one input, and its dimension must equal the column's.
    try {
      const provider = deps.providerFor(t);
      const r = await provider.embed(["preflight probe"]);
      const o = r.outcomes[0];
      if (!o?.ok) {
        checks.push({
          name: `probe ${t.name}`,
          level: "config",
          message: `the provider rejected a probe input: ${o && !o.ok ? o.error : "no result"}`,
        });
      } else if (o.vector.length !== t.dimensions) {
        checks.push({
          name: `probe ${t.name}`,
          level: "config",
          message: `expected ${t.dimensions} dimensions, got ${o.vector.length} from ${t.provider}/${t.model}`,
          fix: `request ${t.dimensions} dimensions (text-embedding-3-* accept dimensions), or alter the column to ${t.embeddingKind}(${o.vector.length}) and re-register`,
        });
      } else {
        checks.push({
          name: `probe ${t.name}`,
          level: "ok",
          message: `${t.provider}/${t.model} answered with ${o.vector.length} dimensions`,
        });
      }
    } catch (err) {
      checks.push(
        err instanceof TargetConfigError
          ? { name: `probe ${t.name}`, level: "config", message: err.message }
          : {
              name: `probe ${t.name}`,
              level: "transient",
              message: `provider unavailable: ${errorMessage(err)}`,
              fix: "retry later; check the provider's status page",
            },
      );
    }
  }

  const status: CheckLevel = checks.some((c) => c.level === "config")
    ? "config"
    : checks.some((c) => c.level === "transient")
      ? "transient"
      : "ok";
  return { status, checks };
}

export function formatReport(report: PreflightReport): string {
  const mark = { ok: "ok  ", config: "FIX ", transient: "WAIT" } as const;
  const lines = report.checks.map(
    (c) =>
      `${mark[c.level]} ${c.name}: ${c.message}${c.fix && c.level !== "ok" ? `\n       fix: ${c.fix}` : ""}`,
  );
  const verdict = {
    ok: "healthy",
    config: "configuration problems: fix the lines marked FIX, then run embeddings doctor again",
    transient: "a dependency is unavailable: nothing to change, retry later",
  }[report.status];
  return `${lines.join("\n")}\n\n${verdict}`;
}
