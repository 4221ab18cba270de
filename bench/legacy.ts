import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import { EmbeddingStore } from "../src/lib/db/store.js";
import type { WriteItem, WriteResult } from "../src/lib/types.js";

/**
 * The pipeline as it was before issue 6, for before/after numbers measured in the same run on the
 * same rows: the claim and write functions as they were before (bench/legacy-claim-write.sql) and
 * the toPrecision vector formatting that src/lib/vector.ts replaced.
 */

const LEGACY_SQL = join(dirname(fileURLToPath(import.meta.url)), "legacy-claim-write.sql");

/** The function's CREATE statement, cut from the legacy SQL file. */
function extractFunction(sql: string, name: string): string {
  const start = sql.indexOf(`CREATE OR REPLACE FUNCTION public.${name}(`);
  const end = start < 0 ? -1 : sql.indexOf("END $$;", start);
  if (start < 0 || end < 0) throw new Error(`bench/legacy: ${name} not found in ${LEGACY_SQL}`);
  return sql.slice(start, end + "END $$;".length);
}

/** Puts the old embedding_claim and embedding_write back into one scenario database. */
export async function installLegacySql(client: pg.Client): Promise<void> {
  const core = await readFile(LEGACY_SQL, "utf8");
  // Today's embedding_write takes every argument after p_worker with a default (binary vectors,
  // 20261201170000): beside the legacy one, a named call would match both.
  await client.query(
    "DROP FUNCTION public.embedding_write(text, text, text[], text[], text[], integer[], boolean[], real[], integer[])",
  );
  for (const fn of ["embedding_claim", "embedding_write"]) await client.query(extractFunction(core, fn));
}

/** src/lib/vector.ts formatVector before issue 6. */
export function legacyFormatVector(vector: ArrayLike<number>): string {
  let out = "[";
  for (let i = 0; i < vector.length; i++) {
    const v = vector[i]!;
    if (!Number.isFinite(v)) throw new RangeError(`vector component ${i} is not a finite number (${v})`);
    if (i > 0) out += ",";
    out += v === 0 ? "0" : Number(v.toPrecision(9)).toString();
  }
  return `${out}]`;
}

/**
 * The store with its write() as before issue 6 (same call, old formatting). The old function has no
 * `busy` list (rows a user's open transaction holds, retried by the pipeline since): none, then.
 */
export class LegacyStore extends EmbeddingStore {
  override async write(target: string, worker: string, items: readonly WriteItem[]): Promise<WriteResult> {
    const r = await this.api.call<Omit<WriteResult, "busy"> & { busy?: string[] }>("embedding_write", {
      p_target: target,
      p_worker: worker,
      p_ids: items.map((i) => i.id),
      p_hashes: items.map((i) => i.hash),
      p_vectors: items.map((i) => legacyFormatVector(i.vector)),
      p_tokens: items.map((i) => i.tokens ?? null),
      p_truncated: items.map((i) => (i.truncated ? "true" : "false")),
    });
    return { ...r, busy: r.busy ?? [] };
  }

  /**
   * The pipeline's steady-state call writes and records progress in one SQL function, which calls
   * the (here: old) embedding_write and expects its `busy` list. Before issue 6 these were separate
   * calls: the old write, then the progress (today's progress function, the pending summary folded in).
   */
  override async writeCounted(
    target: string,
    worker: string,
    items: readonly WriteItem[],
    jobId: string | null,
    more: Parameters<EmbeddingStore["writeCounted"]>[4] = {},
  ): ReturnType<EmbeddingStore["writeCounted"]> {
    const w = await this.write(target, worker, items);
    const progress = jobId
      ? await this.incrementProgress(jobId, w.written, more)
      : await this.recordHistory(target, w.written, more);
    return { ...w, progress };
  }
}
