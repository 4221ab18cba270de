-- embedding_enqueue's pick statements (cancelled-job and priority re-ranking), planned once as a
-- generic plan, became nested loops over every pending row as a target grew: one 5,000-row page took
-- 116 s at 35,000 rows in a 1,000,000-row bench attempt. Plans made for each call's own values keep a
-- page near 400 ms.
--
-- Not here, and still open (issue 15 note): the content-reuse lookup of embedding_reuse_claimed can
-- be planned on embedding_items_status_idx when the statistics predate the completed rows. Replacing
-- both state indexes by one (target_id, status, content_hash) index bounded it, but made 8 concurrent
-- claims of 500 meet lock timeouts while locking updated row versions (test/claim-contention.test.ts),
-- so it was withdrawn before release.

ALTER FUNCTION public.embedding_enqueue(text, text, integer, boolean, uuid) SET plan_cache_mode = force_custom_plan;

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201170200', 'plans_at_scale')
ON CONFLICT (version) DO NOTHING;
