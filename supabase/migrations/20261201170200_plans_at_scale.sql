-- Two plans that went wrong as a target grew (issue 15, found by the 1,000,000-row bench):
--
-- 1. embedding_claim's content-reuse lookup (embedding_reuse_claimed: a completed row of the target
--    with the same content hash) was planned on embedding_items_status_idx (target_id, status) when
--    the statistics dated from before rows completed: every probe then walked every completed row of
--    the target, 6.3 s per claim of 500 at 100,000 rows. One index (target_id, status, content_hash)
--    now serves the status counts and the lookup alike, so whichever of them the planner picks, a
--    probe reads only the rows with that hash; it replaces both embedding_items_status_idx and
--    embedding_items_content_idx, which is also one index fewer for every state change to update.
--    (Forcing per-call plans on embedding_reuse_claimed as well made 8 concurrent claims of 500 hit
--    the 50 ms lock_timeout, test/claim-contention.test.ts: the index alone bounds the lookup.)
-- 2. embedding_enqueue's pick statements (cancelled-job and priority re-ranking), planned once as a
--    generic plan, became nested loops over every pending row: one 5,000-row page took 116 s at
--    35,000 rows. Plans made for each call's own values keep a page near 400 ms.
--
-- CREATE INDEX (not CONCURRENTLY: migrations run in a transaction) makes writers to embedding_items,
-- the triggers of the user's tables among them, wait while it builds: on a very large state table,
-- apply this migration at a quiet time (README, Limits).

CREATE INDEX IF NOT EXISTS embedding_items_status_hash_idx
  ON public.embedding_items (target_id, status, content_hash);
DROP INDEX IF EXISTS public.embedding_items_status_idx;
DROP INDEX IF EXISTS public.embedding_items_content_idx;

ALTER FUNCTION public.embedding_enqueue(text, text, integer, boolean, uuid) SET plan_cache_mode = force_custom_plan;

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201170200', 'plans_at_scale')
ON CONFLICT (version) DO NOTHING;
