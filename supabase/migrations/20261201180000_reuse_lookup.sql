-- The content-reuse lookup (embedding_reuse_claimed) asks for a completed row of the target with a
-- given content hash. With statistics taken before any row of the target completed, which is how a
-- backfill starts, the planner put it on embedding_items_status_idx (target_id, status) and filtered
-- the hash: every probe read every completed row of the target. 500 probes over 60,000 completed rows
-- took 13 s, once per claim (test/plans.test.ts has the case).
--
-- The status index now leaves the completed rows out, so it cannot serve that lookup at all and the
-- only index left for it is embedding_items_content_idx (target_id, content_hash) WHERE completed,
-- whatever the statistics say. It is also an index entry fewer for every row that completes. The
-- status counts (embedding_queue_counts, embedding_status) read every row of the target either way;
-- with one target that is a sequential scan, as before (52 ms at 200,000 rows, EXPLAIN ANALYZE).
--
-- The new index is built before the old one goes, so the state table is never without one. While it
-- builds (a plain CREATE INDEX: migrations may run inside a transaction), writes to embedding_items
-- wait, the triggers on the user's tables among them; reads go on.

CREATE INDEX IF NOT EXISTS embedding_items_open_idx
  ON public.embedding_items (target_id, status) WHERE status <> 'completed';
DROP INDEX IF EXISTS public.embedding_items_status_idx;

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201180000', 'reuse_lookup')
ON CONFLICT (version) DO NOTHING;
