import { eventType } from "inngest";
import { z } from "zod";

/**
 * Every event, typed once (zod), shared by the functions, the HTTP routes and the CLI.
 * No transforms or defaults in the schemas (Inngest requires input = output types): defaults are
 * applied where the data is used. A malformed event fails its run at once, naming the field.
 */

const targetName = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,47}$/, "target must be a registered target name (lowercase letters, digits, _)");

export const backfillRequested = eventType("embeddings/backfill.requested", {
  schema: z.object({
    target: targetName,
    jobId: z.uuid("jobId must be a UUID").optional(),
    batchSize: z.number().int().min(1).max(2048).optional(),
    parallelism: z.number().int().min(1).max(64).optional(),
    reembed: z.boolean().optional(),
    /** `batch`: through the provider's Batch API (half price, results within 24 h), then the lanes. */
    via: z.enum(["sync", "batch"]).optional(),
  }),
});

/** Sent by the coordinator of a `via: "batch"` backfill: one run drives the job's remote batches. */
export const backfillRemote = eventType("embeddings/backfill.remote", {
  schema: z.object({
    jobId: z.uuid(),
    target: targetName,
    batchSize: z.number().int().min(1).max(2048),
    lanes: z.number().int().min(1).max(64),
    epoch: z.number().int().min(0),
  }),
});

/**
 * Cancels a backfill: by its job id, and (sent by the service when it knows it) by the id of the event
 * that requested it, so a coordinator whose request carried no job id is cancelled too.
 */
export const backfillCancelled = eventType("embeddings/backfill.cancelled", {
  schema: z.object({
    jobId: z.uuid("jobId must be a UUID"),
    eventId: z.string().min(1).optional(),
    reason: z.string().max(1000).optional(),
  }),
});

/** Sent by the coordinator: one per worker lane, and again by a lane that used up its step budget. */
export const backfillWorkerData = z.object({
  jobId: z.uuid(),
  target: targetName,
  batchSize: z.number().int().min(1).max(2048),
  lane: z.number().int().min(0).max(63),
  generation: z.number().int().min(0),
  /** The job's restart epoch (absent in events sent before epochs existed: 0). */
  epoch: z.number().int().min(0).optional(),
  maxBatches: z.number().int().min(1).max(450),
});
export const backfillWorker = eventType("embeddings/backfill.worker", { schema: backfillWorkerData });

/** Sent by the sweep: one per target, so every target gets a run of its own each time. */
export const targetSweep = eventType("embeddings/target.sweep", {
  schema: z.object({ target: targetName }),
});

/** Sent by the dead-letter recovery: one per target. */
export const targetRecover = eventType("embeddings/target.recover", {
  schema: z.object({ target: targetName }),
});

export const rowsChanged = eventType("embeddings/rows.changed", {
  schema: z.object({
    target: targetName,
    ids: z
      .array(z.union([z.string(), z.number()]))
      .max(5000, "send at most 5000 ids per event")
      .optional(),
    /**
     * Claim priority for these ids (higher first). Backlog rows rank by the target's priority value
     * within ±1e15 and edits of embedded rows 4e15 above theirs; without it, rows keep their rank.
     */
    priority: z.number().optional(),
  }),
});

export type BackfillRequested = z.infer<(typeof backfillRequested)["schema"]>;
export type BackfillWorker = z.infer<(typeof backfillWorker)["schema"]>;
