import pg from "pg";
import { describe, expect, it } from "vitest";
import { createDocuments, registerDocuments } from "./support/fixtures.js";
import { useTestDatabase } from "./support/pg-server.js";

/**
 * Bounds the claim must keep as a target grows, whatever the state table's statistics say. A
 * backfill starts with statistics taken before its rows existed or completed (autovacuum's analyze
 * comes later), and a plan made on them read every state row of the target per claim:
 * - the content-reuse lookup, planned on embedding_items_status_idx, read every completed row per
 *   probe (6.3 s per claim in a 100,000-row bench run; fixed by 20261201180000_reuse_lookup);
 * - the lease UPDATE joined the claimed rows to every state row of the target (a profile at batch
 *   20 found 16,780 rows filtered for 20 leased; fixed by 20261201180300_lease_by_tid).
 *
 * What a claim read is taken from PostgreSQL's own plans (auto_explain on every statement the claim
 * runs): rows returned and filtered by each scan of the state table. No timing is asserted.
 */

const db = useTestDatabase("plans");

async function targetId(name: string): Promise<string> {
  return (
    await db.query<{ id: string }>("SELECT id::text AS id FROM embedding_targets WHERE name = $1", [name])
  )[0]!.id;
}

/**
 * State rows a plan read: for every scan of embedding_items, the rows it returned and the rows its
 * filter removed, times its loops, from PostgreSQL's own EXPLAIN ANALYZE output (auto_explain).
 */
function stateRowsRead(plans: readonly string[]): number {
  let total = 0;
  for (const plan of plans) {
    let loops = 0;
    for (const line of plan.split("\n")) {
      const node =
        /(?:^|->)\s*[A-Za-z ]+?(?: using \S+)? on (\S+).*actual rows=([0-9.]+) loops=([0-9]+)/.exec(line);
      if (node) {
        loops = node[1] === "embedding_items" ? Number(node[3]) : 0;
        total += Number(node[2]) * loops;
        continue;
      }
      if (line.includes("->")) loops = 0;
      const removed = /Rows Removed by (?:Filter|Index Recheck): ([0-9.]+)/.exec(line);
      if (removed) total += Number(removed[1]) * loops;
    }
  }
  return total;
}

/**
 * Rows of `embedding_items` each of `claims` claims of `size` read, on one long-lived connection
 * (as a worker's: from the sixth claim on, plpgsql may run its statements on a generic plan), with
 * auto_explain reporting every statement the claim runs. Read from the plans, not from the
 * cumulative statistics: other sessions' counters reach those seconds later.
 */
async function rowsReadPerClaim(target: string, claims: number, size: number): Promise<number[]> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const plans: string[] = [];
  client.on("notice", (n) => {
    if (n.message?.includes("Query Text:")) plans.push(n.message);
  });
  try {
    await client.query(`LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;
      SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;
      SET auto_explain.log_timing = off; SET auto_explain.log_parameter_max_length = 0;
      SET auto_explain.log_level = notice`);
    const perClaim: number[] = [];
    for (let i = 0; i < claims; i++) {
      plans.length = 0;
      const claim = await client.query<{ r: { items: unknown[] } }>(
        "SELECT public.embedding_claim(p_target => $1, p_worker => 'w', p_limit => $2, p_lease_seconds => 60) AS r",
        [target, size],
      );
      expect(claim.rows[0]!.r.items).toHaveLength(size);
      expect(plans.length).toBeGreaterThan(3);
      perClaim.push(stateRowsRead(plans));
    }
    return perClaim;
  } finally {
    await client.end();
  }
}

describe("the claim on a large target with stale statistics", () => {
  it("looks up reusable content in a bounded number of state rows, with 20,000 completed rows", async () => {
    await createDocuments(db, { rows: 50 });
    const target = await registerDocuments(db.store);
    const id = await targetId("docs");
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

    const perClaim = await rowsReadPerClaim("docs", 10, 5);
    // The counters move: a claim reads its own rows at least.
    expect(Math.min(...perClaim)).toBeGreaterThan(0);
    // 5 claimed rows: their lease, reads and lookups touch tens of state rows. Walking every
    // completed row per lookup would be 5 × 20,000.
    expect(Math.max(...perClaim)).toBeLessThan(2_000);
  });

  it("leases a batch by reading that batch's state rows, with 20,000 rows queued after the last analyze", async () => {
    await createDocuments(db, { table: "queued", rows: 20_000 });
    await registerDocuments(db.store, { name: "queued", table: "queued" });
    // Statistics from before this target had a state row, kept that way for the test.
    await db.exec("ANALYZE embedding_items");
    await db.exec("ALTER TABLE embedding_items SET (autovacuum_enabled = false)");
    for (let after: string | null = null; ; ) {
      const page = await db.store.enqueue("queued", after, 5000);
      if (page.done) break;
      after = page.last;
    }

    const perClaim = await rowsReadPerClaim("queued", 10, 20);
    expect(Math.min(...perClaim)).toBeGreaterThan(0);
    // 20 leased rows: the due index, the lease and the content read touch about a hundred state rows.
    // Joining the batch to every state row of the target would be 20,000 per claim.
    expect(Math.max(...perClaim)).toBeLessThan(2_000);
  });
});
