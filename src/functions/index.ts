import type { InngestClient } from "./client.js";
import type { FunctionDeps } from "./deps.js";
import { embeddingsBackfill } from "./embeddings-backfill.js";
import { embeddingsBackfillCancel } from "./embeddings-backfill-cancel.js";
import { embeddingsBackfillRemote } from "./embeddings-backfill-remote.js";
import { embeddingsBackfillWorker } from "./embeddings-backfill-worker.js";
import { embeddingsRecovery } from "./embeddings-recovery.js";
import { embeddingsRecoveryTarget } from "./embeddings-recovery-target.js";
import { embeddingsRowsChanged } from "./embeddings-rows-changed.js";
import { embeddingsRunCancelled } from "./embeddings-run-cancelled.js";
import { embeddingsSweep } from "./embeddings-sweep.js";
import { embeddingsSweepTarget } from "./embeddings-sweep-target.js";

/** Every function the app serves, registered in this one list. */
export function createFunctions(inngest: InngestClient, deps: FunctionDeps) {
  return [
    embeddingsBackfill(inngest, deps),
    embeddingsBackfillWorker(inngest, deps),
    embeddingsBackfillRemote(inngest, deps),
    embeddingsBackfillCancel(inngest, deps),
    embeddingsRunCancelled(inngest, deps),
    embeddingsSweep(inngest, deps),
    embeddingsSweepTarget(inngest, deps),
    embeddingsRecovery(inngest, deps),
    embeddingsRecoveryTarget(inngest, deps),
    embeddingsRowsChanged(inngest, deps),
  ];
}
