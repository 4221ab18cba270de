import pg from "pg";
import { describe, expect, it } from "vitest";
import { createDocuments, registerDocuments } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * A bound the claim must keep as a target grows: with the state table's statistics taken while no
 * row had completed, as early in a backfill, and then 20,000 completed rows, the content-reuse lookup
 * reads a few index entries per claimed row. Before 20261201180000_reuse_lookup it was planned on
 * embedding_items_status_idx and read every completed row of the target per probe (a 100,000-row
 * bench run spent 6.3 s per claim there).
 *
 * What a claim read is taken from PostgreSQL's own counters (heap rows fetched by index scans plus
 * rows read by sequential scans), flushed after each claim. No timing is asserted.
 */

const db = useTestDatabase("plans");

describe("the claim on a target with many completed rows and stale statistics", () => {
  it("reads a bounded number of state rows, whatever the statistics say", async () => {
    await createDocuments(db, { rows: 50 });
    const target = await registerDocuments(db.store);
    const id = (
      await db.query<{ id: string }>("SELECT id::text AS id FROM embedding_targets WHERE name = 'docs'")
    )[0]!.id;
    // 20,000 rows of the target that are not in the table (the lookup only needs their state), pending.
    await db.query(
      `INSERT INTO embedding_items (target_id, row_id, status) SELECT $1, 'old-' || g, 'pending' FROM generate_series(1, 20000) g`,
      [id],
    );
    // Statistics of a table where nothing has completed yet, kept that way for the test.
    await db.exec("ANALYZE embedding_items");
    await db.exec("ALTER TABLE embedding_items SET (autovacuum_enabled = false)");
    await db.query(
      `UPDATE embedding_items SET status = 'completed', content_hash = md5('old ' || row_id), model = $2,
              embedded_at = now() WHERE target_id = $1 AND row_id LIKE 'old-%'`,
      [id, target.model],
    );
    await db.store.enqueue("docs", null, 100);

    // One connection, as a long-running worker's: from the sixth claim on, plpgsql may run its
    // statements on a generic plan.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query("SET stats_fetch_consistency = none");
      // The backend's counters reach the shared statistics when it goes idle after a statement
      // that forced the flush.
      const read = async () => {
        await client.query("SELECT pg_stat_force_next_flush()");
        const r = await client.query<{ n: string }>(
          `SELECT (coalesce(idx_tup_fetch, 0) + seq_tup_read)::text AS n
             FROM pg_stat_user_tables WHERE relid = 'public.embedding_items'::regclass`,
        );
        return Number(r.rows[0]!.n);
      };
      const perClaim: number[] = [];
      let before = await read();
      for (let i = 0; i < 10; i++) {
        const claim = await client.query<{ r: { items: unknown[] } }>(
          "SELECT public.embedding_claim(p_target => 'docs', p_worker => 'w', p_limit => 5, p_lease_seconds => 60) AS r",
        );
        expect(claim.rows[0]!.r.items).toHaveLength(5);
        const after = await read();
        perClaim.push(after - before);
        before = after;
      }
      // The counters move: a claim reads its own rows at least.
      expect(Math.min(...perClaim)).toBeGreaterThan(0);
      // 5 claimed rows: their lease, reads and lookups touch tens of state rows. Walking every
      // completed row per lookup would be 5 × 20,000.
      expect(Math.max(...perClaim)).toBeLessThan(2_000);
    } finally {
      await client.end();
    }
  });
});
