import type { Config } from "../config.js";
import { TargetConfigError } from "../errors.js";
import type { Target } from "../types.js";
import { createLocalProvider, LOCAL_MODEL } from "./local.js";
import { createOpenAIProvider } from "./openai.js";
import { type BatchApi, createBatchApi } from "./openai-batch.js";
import type { EmbeddingProvider } from "./provider.js";
import { createRateGovernor, type RateGovernor } from "./rate-governor.js";

export const PROVIDERS = ["local", "openai"] as const;
export type ProviderName = (typeof PROVIDERS)[number];

/** Placeholder keys copied from examples: present but never valid. */
const PLACEHOLDER_KEY = /^(sk-)?(x+|\.\.\.|your[-_ ]?(api[-_ ]?)?key.*|changeme|placeholder|<.*>|test)$/i;

export function openAIKeyProblem(key: string | undefined): string | null {
  if (!key) return "OPENAI_API_KEY is not set";
  if (PLACEHOLDER_KEY.test(key.trim())) return "OPENAI_API_KEY looks like a placeholder, not a real key";
  return null;
}

/**
 * One process-wide governor per provider configuration, so every concurrent batch in this process
 * shares the account's request and token budget.
 */
let sharedGovernor: { key: string; governor: RateGovernor } | null = null;
function governorFor(config: Config): RateGovernor {
  const key = `${config.EMBEDDINGS_RPM ?? ""}/${config.EMBEDDINGS_TPM ?? ""}/${config.EMBEDDINGS_BURST_MS}`;
  if (!sharedGovernor || sharedGovernor.key !== key) {
    sharedGovernor = {
      key,
      governor: createRateGovernor({
        requestsPerMinute: config.EMBEDDINGS_RPM,
        tokensPerMinute: config.EMBEDDINGS_TPM,
        burstMs: config.EMBEDDINGS_BURST_MS,
        // The OpenAI provider observes every answer with its permit, which the hold relies on.
        holdUntilFirstAnswer: true,
      }),
    };
  }
  return sharedGovernor.governor;
}

/** The key an openai target needs, or a TargetConfigError naming the fix. */
function requireOpenAIKey(target: Pick<Target, "name">, config: Config): string {
  const problem = openAIKeyProblem(config.OPENAI_API_KEY);
  if (problem) {
    throw new TargetConfigError(
      `target "${target.name}" uses the openai provider but ${problem}`,
      "set OPENAI_API_KEY in the worker's environment (for Supabase: supabase secrets set OPENAI_API_KEY=...)",
    );
  }
  return config.OPENAI_API_KEY!;
}

/**
 * The provider a target was registered with, configured from the environment. Never falls back to
 * another provider: a missing key is a TargetConfigError naming the fix.
 */
export function providerForTarget(
  target: Pick<Target, "name" | "provider" | "model" | "dimensions">,
  config: Config,
): EmbeddingProvider {
  switch (target.provider) {
    case "local":
      return createLocalProvider({ dimensions: target.dimensions, model: target.model });
    case "openai": {
      return createOpenAIProvider({
        apiKey: requireOpenAIKey(target, config),
        baseURL: config.OPENAI_BASE_URL,
        organization: config.OPENAI_ORG_ID,
        project: config.OPENAI_PROJECT_ID,
        model: target.model,
        // text-embedding-3-* shorten to any size; other models must match the column natively.
        dimensions: /^text-embedding-3-/.test(target.model) ? target.dimensions : undefined,
        expectedDimensions: target.dimensions,
        maxRetries: config.OPENAI_MAX_RETRIES,
        timeoutMs: config.OPENAI_TIMEOUT_MS,
        governor: governorFor(config),
      });
    }
    default:
      throw new TargetConfigError(
        `target "${target.name}" uses provider "${target.provider}", which this worker does not have`,
        `use one of: ${PROVIDERS.join(", ")}`,
      );
  }
}

/** The Batch API for an openai target, configured like its provider (key, base URL, organisation). */
export function batchApiForTarget(
  target: Pick<Target, "name" | "provider" | "model">,
  config: Config,
): BatchApi {
  if (target.provider !== "openai") {
    throw new TargetConfigError(
      `target "${target.name}" uses the ${target.provider} provider, which has no Batch API`,
      "use --via batch with an openai target (any OpenAI-compatible base URL with /v1/files and /v1/batches)",
    );
  }
  return createBatchApi({
    apiKey: requireOpenAIKey(target, config),
    baseURL: config.OPENAI_BASE_URL,
    organization: config.OPENAI_ORG_ID,
    project: config.OPENAI_PROJECT_ID,
    model: target.model,
    timeoutMs: Math.max(config.OPENAI_TIMEOUT_MS, 120_000),
  });
}

export function defaultModel(provider: string): string | undefined {
  if (provider === "local") return LOCAL_MODEL;
  if (provider === "openai") return "text-embedding-3-small";
  return undefined;
}
