-- The claim's cost per row (issue 15): its lease UPDATE called embedding_valid_id once per column it
-- set. Five calls of a SQL function that cannot be inlined (it pins search_path) cost ~20 µs each on
-- the bench machine: about 100 µs of PostgreSQL's CPU per claimed row, as much as writing the row's
-- vector. Now each claimed row is checked once, and
-- an id in its usual spelling (digits that always fit the type, a lower-case uuid) by a regular
-- expression alone; anything else still gets the full check, so what is valid is unchanged
-- (test/safety.test.ts covers invalid ids). The chunk claim leases documents a few at a time and
-- keeps its own.

CREATE OR REPLACE FUNCTION public.embedding_claim(
  p_target text,
  p_worker text,
  p_limit integer DEFAULT 20,
  p_lease_seconds integer DEFAULT 300,
  p_ids text[] DEFAULT NULL,
  p_job uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  v_plain_id text;
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass;
  v_ids text[];
  v_old_hashes text[];
  v_old_models text[];
  v_expired integer;
  v_invalid integer;
  v_read jsonb;
  v_gone text[];
  v_unchanged text[];
  v_blank text[];
  v_failed jsonb;
  v_job_status text;
  v_reuse jsonb;
BEGIN
  -- Spellings that always fit the type; embedding_valid_id decides the rest (signs, blanks, 19 digits).
  v_plain_id := CASE t.id_type WHEN 'bigint' THEN '^-?[0-9]{1,18}$' WHEN 'integer' THEN '^-?[0-9]{1,9}$'
                               WHEN 'smallint' THEN '^-?[0-9]{1,4}$'
                               WHEN 'uuid' THEN '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                               ELSE '' END;
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'claim size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use a batch size of 1..10000';
  END IF;
  IF p_worker IS NULL OR length(p_worker) = 0 THEN
    RAISE EXCEPTION 'worker id is required' USING ERRCODE = '22023';
  END IF;
  IF p_job IS NOT NULL THEN
    -- The job's status, read without a lock: every worker of the job claims at once, and the job
    -- row is only beaten at the end (embedding_job_beat), so no claim waits for another's.
    SELECT status INTO v_job_status FROM public.embedding_jobs WHERE id = p_job;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
    END IF;
    IF v_job_status <> 'running' THEN
      RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', 0, 'deleted', 0, 'skipped', 0, 'empty', 0,
        'jobStatus', v_job_status);
    END IF;
  END IF;
  v_rel := public.embedding_require_relation(t);
  PERFORM public.embedding_assert_access(t, v_rel, false);

  WITH expired AS (
    SELECT row_id FROM public.embedding_items
     WHERE target_id = t.id AND status = 'processing' AND locked_until < now()
     ORDER BY locked_until
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET attempts = i.attempts + 1,
           status = CASE WHEN i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'pending' END,
           last_error = 'lease expired: the worker holding this row stopped before finishing (crash, deploy or timeout)',
           error_kind = 'transient', locked_until = NULL, worker_id = NULL, next_retry_at = now(), updated_at = now()
      FROM expired e
     WHERE i.target_id = t.id AND i.row_id = e.row_id
    RETURNING 1
  )
  SELECT count(*) INTO v_expired FROM upd;

  -- The lease UPDATE hands back what the unchanged-content check needs: no second look at the items.
  WITH due AS (
    -- Whether the id can be one of the source's, once per row: a regular expression for the usual
    -- spelling, the full check (embedding_valid_id) only for anything else.
    SELECT row_id, CASE WHEN i.row_id ~ v_plain_id THEN true
                        ELSE public.embedding_valid_id(t.id_type, i.row_id) END AS valid
      FROM public.embedding_items i
     WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()
       AND (p_ids IS NULL OR row_id = ANY (p_ids))
       AND (i.job_id IS NULL OR NOT EXISTS (
             SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled'))
     ORDER BY priority DESC, next_retry_at
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN d.valid THEN 'processing' ELSE 'dead_letter' END,
           locked_until = CASE WHEN d.valid THEN now() + make_interval(secs => p_lease_seconds) END,
           worker_id = CASE WHEN d.valid THEN p_worker END,
           error_kind = CASE WHEN d.valid THEN i.error_kind ELSE 'permanent' END,
           last_error = CASE WHEN d.valid THEN i.last_error
                        ELSE format('id "%s" is not a valid %s: no source row can have it', i.row_id, t.id_type) END,
           updated_at = now()
      FROM due d
     WHERE i.target_id = t.id AND i.row_id = d.row_id
    RETURNING i.row_id, i.status, i.content_hash, i.model
  )
  SELECT coalesce(array_agg(row_id) FILTER (WHERE status = 'processing'), '{}'),
         array_agg(content_hash) FILTER (WHERE status = 'processing'),
         array_agg(model) FILTER (WHERE status = 'processing'),
         count(*) FILTER (WHERE status = 'dead_letter')
    INTO v_ids, v_old_hashes, v_old_models, v_invalid FROM upd;

  IF cardinality(v_ids) = 0 THEN
    PERFORM public.embedding_job_beat(p_job);
    RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', v_expired, 'deleted', 0, 'skipped', 0, 'empty', v_invalid,
      'jobStatus', v_job_status);
  END IF;

  v_read := public.embedding_read_claimed(t, v_rel, v_ids, v_old_hashes, v_old_models);
  SELECT coalesce(array_agg(x), '{}') INTO v_gone FROM jsonb_array_elements_text(v_read -> 'gone') AS x;
  SELECT coalesce(array_agg(x), '{}') INTO v_unchanged FROM jsonb_array_elements_text(v_read -> 'unchanged') AS x;
  SELECT coalesce(array_agg(x), '{}') INTO v_blank FROM jsonb_array_elements_text(v_read -> 'blank') AS x;
  v_failed := v_read -> 'failed';

  IF cardinality(v_gone) > 0 THEN
    DELETE FROM public.embedding_items i WHERE i.target_id = t.id AND i.row_id = ANY (v_gone)
       AND i.status = 'processing' AND i.worker_id = p_worker;
  END IF;

  IF cardinality(v_unchanged) > 0 THEN
    UPDATE public.embedding_items i
       SET status = 'completed', attempts = 0, locked_until = NULL, worker_id = NULL, last_error = NULL,
           error_kind = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.row_id = ANY (v_unchanged)
       AND i.status = 'processing' AND i.worker_id = p_worker;
  END IF;

  IF cardinality(v_blank) > 0 THEN
    UPDATE public.embedding_items i
       SET status = 'dead_letter', locked_until = NULL, worker_id = NULL, error_kind = 'permanent',
           last_error = 'content is empty (NULL or blank): nothing to embed; the row is queued again when its content changes',
           content_hash = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.row_id = ANY (v_blank)
       AND i.status = 'processing' AND i.worker_id = p_worker;
  END IF;

  IF jsonb_array_length(v_failed) > 0 THEN
    UPDATE public.embedding_items i
       SET status = 'dead_letter', locked_until = NULL, worker_id = NULL, error_kind = 'permanent',
           last_error = left(f ->> 'error', 2000) || '; the row is queued again when its content changes',
           content_hash = NULL, updated_at = now()
      FROM jsonb_array_elements(v_failed) AS f
     WHERE i.target_id = t.id AND i.row_id = f ->> 'id' AND i.status = 'processing' AND i.worker_id = p_worker;
  END IF;

  -- Content another row of the target already has, embedded by the same model: its vector is
  -- copied, no provider call.
  v_reuse := public.embedding_reuse_claimed(t, v_rel, p_worker, v_read -> 'items');

  PERFORM public.embedding_job_beat(p_job);
  RETURN jsonb_build_object('items', v_reuse -> 'items', 'expired', v_expired, 'deleted', cardinality(v_gone),
    'skipped', cardinality(v_unchanged) + (v_reuse ->> 'reused')::integer,
    'reused', (v_reuse ->> 'reused')::integer,
    'empty', cardinality(v_blank) + jsonb_array_length(v_failed) + v_invalid,
    'jobStatus', v_job_status);
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201170100', 'claim_cost')
ON CONFLICT (version) DO NOTHING;
