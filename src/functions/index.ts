import type { InngestClient } from "./client.js";
import type { FunctionDeps } from "./deps.js";
import { embeddingsBackfill } from "./embeddings-backfill.js";
import { embeddingsBackfillWorker } from "./embeddings-backfill-worker.js";
import { embeddingsRecovery } from "./embeddings-recovery.js";
import { embeddingsRowsChanged } from "./embeddings-rows-changed.js";
import { embeddingsSweep } from "./embeddings-sweep.js";

/** Every function the app serves, registered in this one list. */
export function createFunctions(inngest: InngestClient, deps: FunctionDeps) {
  return [
    embeddingsBackfill(inngest, deps),
    embeddingsBackfillWorker(inngest, deps),
    embeddingsSweep(inngest, deps),
    embeddingsRecovery(inngest, deps),
    embeddingsRowsChanged(inngest, deps),
  ];
}
