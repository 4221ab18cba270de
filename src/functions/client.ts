import { Inngest } from "inngest";
import { type Config, inngestDev } from "../lib/config.js";
import { backfillCancelled } from "./events.js";

export const APP_ID = "embeddings-sync";

/**
 * The Inngest client. Dev mode (no signatures) only when INNGEST_DEV is set; otherwise the signing
 * key is required and every request to /api/inngest is verified. `fetch` is injectable so tests
 * can route step.sendEvent to an in-process executor.
 */
export function createInngestClient(config: Config, options: { fetch?: typeof fetch; logger?: Logger } = {}) {
  return new Inngest({
    id: APP_ID,
    isDev: inngestDev(config),
    signingKey: config.INNGEST_SIGNING_KEY,
    signingKeyFallback: config.INNGEST_SIGNING_KEY_FALLBACK,
    eventKey: config.INNGEST_EVENT_KEY,
    baseUrl: config.INNGEST_BASE_URL,
    fetch: options.fetch,
    logger: options.logger,
  });
}

type Logger = ConstructorParameters<typeof Inngest>[0]["logger"];
export type InngestClient = ReturnType<typeof createInngestClient>;

/** Inngest takes events when running against a dev server, or in the cloud with an event key. */
export function inngestConfigured(config: Config): boolean {
  return inngestDev(config) || Boolean(config.INNGEST_EVENT_KEY);
}

/** Deterministic event id: a repeated cancel is one event for Inngest, not several. */
export async function sendCancelled(inngest: Pick<InngestClient, "send">, jobId: string): Promise<void> {
  await inngest.send(backfillCancelled.create({ jobId }, { id: `cancel-${jobId}` }));
}
