import type { Limits } from "./deps.js";

/**
 * The shape of a backfill in Inngest terms, computed from the numbers alone. Used by the coordinator
 * and by tests that prove a million-row table stays inside Inngest's limits (1,000 steps per run,
 * 5,000 events per send, small step outputs).
 */
export interface BackfillPlan {
  items: number;
  batches: number;
  lanes: number;
  batchesPerLane: number;
  /** Worker runs per lane: a lane hands over to a fresh run after maxBatchesPerRun batches. */
  runsPerLane: number;
  workerRuns: number;
  /** Worst case: every batch followed by a wait step, plus finish and hand-over. */
  maxStepsPerWorkerRun: number;
  /** Worst case: one seeding page per step. */
  maxCoordinatorSteps: number;
  eventsPerSend: number;
}

export const INNGEST_MAX_STEPS = 1000;
export const INNGEST_MAX_EVENTS_PER_SEND = 5000;

export function planBackfill(
  input: { items: number; batchSize: number; parallelism: number },
  limits: Pick<Limits, "maxBatchesPerRun" | "seedPage">,
): BackfillPlan {
  const batches = Math.ceil(input.items / input.batchSize);
  const lanes = Math.max(1, Math.min(input.parallelism, Math.max(batches, 1)));
  const batchesPerLane = Math.ceil(batches / lanes);
  const runsPerLane = Math.max(1, Math.ceil(batchesPerLane / limits.maxBatchesPerRun));
  return {
    items: input.items,
    batches,
    lanes,
    batchesPerLane,
    runsPerLane,
    workerRuns: lanes * runsPerLane,
    maxStepsPerWorkerRun: 2 * limits.maxBatchesPerRun + 2,
    // preflight, create-job, seed pages, start-job, fan-out
    maxCoordinatorSteps: 4 + Math.ceil(input.items / limits.seedPage),
    eventsPerSend: lanes,
  };
}
