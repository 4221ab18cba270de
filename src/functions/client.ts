import { createHash } from "node:crypto";
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
export async function sendCancelled(
  inngest: Pick<InngestClient, "send">,
  jobId: string,
  eventId?: string | null,
): Promise<void> {
  await inngest.send(
    backfillCancelled.create(eventId ? { jobId, eventId } : { jobId }, { id: `cancel-${jobId}` }),
  );
}

/**
 * The job of a backfill request: the id the sender chose (the CLI prints it before the event is
 * sent), else one derived from the event id (RFC 4122 name-based, SHA-1), so a dashboard "Send
 * event" without a job id, its duplicates and its Replays all name the same job.
 */
export function jobIdForEvent(data: { jobId?: string }, eventId: string): string {
  if (data.jobId) return data.jobId;
  const hash = createHash("sha1").update(JOB_NAMESPACE).update(eventId, "utf8").digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The UUID namespace of job ids derived from event ids (a fixed, random UUID, as bytes). */
const JOB_NAMESPACE = Buffer.from("3b0f6f1e8c2a4d5e9a7b1c2d3e4f5a6b", "hex");

/** A worker lane's event id: the restart epoch makes a revived job's lanes new events for Inngest. */
export function laneEventId(jobId: string, epoch: number, lane: number, generation: number): string {
  return `${jobId}-e${epoch}-lane-${lane}-gen-${generation}`;
}
