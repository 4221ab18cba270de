-- embedding_lock_leased locks the state rows a write is for, then looked again for the ones it could
-- not lock yet. When it locked every one it was asked for, as nearly every write does, that second
-- look read the batch's state rows once more for nothing: 5.4 ms of a 500-row write's 85 ms in the
-- database (auto_explain, one session, 384 dimensions). It is now skipped then. The rows locked are
-- distinct ids among those asked for, so as many rows as ids means every id was distinct and is
-- locked; a repeated or NULL id makes the counts differ, and the second look runs as before.

CREATE OR REPLACE FUNCTION public.embedding_lock_leased(p_target integer, p_worker text, p_ids text[])
 RETURNS text[]
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_locked text[] := '{}';
  v_more text[];
  v_rest text[] := p_ids;
BEGIN
  FOR attempt IN 1 .. 4 LOOP
    SELECT coalesce(array_agg(row_id), '{}') INTO v_more FROM (
      SELECT i.row_id FROM public.embedding_items i
       WHERE i.target_id = p_target AND i.row_id = ANY (v_rest) AND i.status = 'processing'
         AND (p_worker IS NULL OR i.worker_id = p_worker)
       ORDER BY i.row_id
         FOR UPDATE SKIP LOCKED) AS l;
    v_locked := v_locked || v_more;
    -- Every id asked for is locked (the usual case): nothing is left to look for.
    IF cardinality(v_more) = cardinality(v_rest) THEN
      v_rest := '{}';
      EXIT;
    END IF;
    SELECT coalesce(array_agg(i.row_id), '{}') INTO v_rest FROM public.embedding_items i
     WHERE i.target_id = p_target AND i.row_id = ANY (v_rest) AND NOT (i.row_id = ANY (v_locked))
       AND i.status = 'processing' AND (p_worker IS NULL OR i.worker_id = p_worker);
    EXIT WHEN cardinality(v_rest) = 0 OR attempt = 4;
    PERFORM pg_sleep(0.02);
  END LOOP;
  RETURN v_locked;
END $function$;

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201180200', 'lock_leased_fast')
ON CONFLICT (version) DO NOTHING;
