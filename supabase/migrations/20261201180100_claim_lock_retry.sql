-- A claim leases rows with FOR UPDATE SKIP LOCKED, but PostgreSQL does not skip in one case: when
-- the row version the scan found was updated by a transaction that finished while the lock was being
-- taken, the lock follows the row's update chain (heap_lock_updated_tuple) and waits for whoever
-- holds its newer version, whatever SKIP LOCKED says. Under the 50 ms lock_timeout that wait failed a
-- claim now and then with "canceling statement due to lock timeout ... while locking updated version
-- of tuple", with 8 workers claiming 500 rows each (test/claim-contention.test.ts, about one run in
-- six on this 2-core machine, before and after the reuse_lookup migration alike).
--
-- Each leasing statement of embedding_claim and embedding_chunk_claim now runs in its own
-- subtransaction and is run again, on a fresh snapshot, when it meets a lock timeout: the second time
-- the row it stumbled on is committed and plainly not due. Only the third timeout in a row fails the
-- claim, as before. A lock the statement did not get is never waited for longer than lock_timeout.

CREATE OR REPLACE FUNCTION public.embedding_claim(p_target text, p_worker text, p_limit integer DEFAULT 20, p_lease_seconds integer DEFAULT 300, p_ids text[] DEFAULT NULL::text[], p_job uuid DEFAULT NULL::uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
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

  FOR v_try IN 1..3 LOOP
    BEGIN
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
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;

  -- The lease UPDATE hands back what the unchanged-content check needs: no second look at the items.
  FOR v_try IN 1..3 LOOP
    BEGIN
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
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;

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
END $function$;

CREATE OR REPLACE FUNCTION public.embedding_chunk_claim(p_target text, p_worker text, p_limit integer DEFAULT 20, p_lease_seconds integer DEFAULT 300, p_ids text[] DEFAULT NULL::text[], p_job uuid DEFAULT NULL::uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_rel regclass;
  v_crel regclass;
  v_job_status text;
  v_expired integer := 0;
  v_n integer;
  v_chunks jsonb := '[]';
  v_taken integer := 0;
  v_docs jsonb := '[]';
  v_ready jsonb := '[]';
  v_ids text[];
  v_old_hashes text[];
  v_old_models text[];
  v_invalid integer := 0;
  v_read jsonb;
  v_gone text[] := '{}';
  v_unchanged text[] := '{}';
  v_blank text[] := '{}';
  v_failed jsonb := '[]';
BEGIN
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
      RETURN jsonb_build_object('chunks', '[]'::jsonb, 'docs', '[]'::jsonb, 'ready', '[]'::jsonb, 'expired', 0,
        'deleted', 0, 'skipped', 0, 'empty', 0, 'jobStatus', v_job_status);
    END IF;
  END IF;
  v_rel := public.embedding_require_relation(t);
  v_crel := public.embedding_require_chunk_relation(t);
  PERFORM public.embedding_assert_access(t, v_rel, false);
  PERFORM public.embedding_chunk_assert(t, v_crel, true);

  -- 1. Expired leases.
  FOR v_try IN 1..3 LOOP
    BEGIN
      WITH expired AS (
        SELECT row_id, doc_hash, chunk_index FROM public.embedding_chunks
         WHERE target_id = t.id AND status = 'processing' AND locked_until < now()
         ORDER BY locked_until LIMIT p_limit
           FOR UPDATE SKIP LOCKED
      ), upd AS (
        UPDATE public.embedding_chunks k
           SET attempts = k.attempts + 1,
               status = CASE WHEN k.attempts + 1 >= k.max_attempts THEN 'dead_letter' ELSE 'pending' END,
               last_error = 'lease expired: the worker holding this chunk stopped before finishing (crash, deploy or timeout)',
               error_kind = 'transient', locked_until = NULL, worker_id = NULL, next_retry_at = now(), updated_at = now()
          FROM expired e
         WHERE k.target_id = t.id AND k.row_id = e.row_id AND k.doc_hash = e.doc_hash AND k.chunk_index = e.chunk_index
        RETURNING k.row_id, k.chunk_index, k.status, k.last_error
      ), dead AS (
        UPDATE public.embedding_items i
           SET status = 'dead_letter', error_kind = 'transient', updated_at = now(),
               last_error = format('chunk %s: %s', u.chunk_index, u.last_error)
          FROM upd u WHERE u.status = 'dead_letter' AND i.target_id = t.id AND i.row_id = u.row_id AND i.status = 'chunked'
        RETURNING 1
      ) SELECT count(*) INTO v_n FROM upd;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;
  v_expired := v_expired + v_n;
  FOR v_try IN 1..3 LOOP
    BEGIN
      WITH expired AS (
        SELECT row_id FROM public.embedding_items
         WHERE target_id = t.id AND status = 'processing' AND locked_until < now()
         ORDER BY locked_until LIMIT p_limit
           FOR UPDATE SKIP LOCKED
      ), upd AS (
        UPDATE public.embedding_items i
           SET attempts = i.attempts + 1,
               status = CASE WHEN i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'pending' END,
               last_error = 'lease expired: the worker cutting this document stopped before finishing (crash, deploy or timeout)',
               error_kind = 'transient', locked_until = NULL, worker_id = NULL, next_retry_at = now(), updated_at = now()
          FROM expired e WHERE i.target_id = t.id AND i.row_id = e.row_id
        RETURNING 1
      ) SELECT count(*) INTO v_n FROM upd;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;
  v_expired := v_expired + v_n;

  -- 2. Due chunks of documents whose chunk set is current (status 'chunked', same version). A
  --    document with a dead chunk keeps its other chunks going, so retrying that one chunk is all a
  --    person has to do.
  FOR v_try IN 1..3 LOOP
    BEGIN
      WITH due AS (
        SELECT k.row_id, k.doc_hash, k.chunk_index FROM public.embedding_chunks k
          JOIN public.embedding_items i ON i.target_id = k.target_id AND i.row_id = k.row_id
         WHERE k.target_id = t.id AND k.status IN ('pending', 'failed') AND k.next_retry_at <= now()
           AND i.status IN ('chunked', 'dead_letter') AND i.chunk_hash = k.doc_hash
           AND (p_ids IS NULL OR k.row_id = ANY (p_ids))
           AND (k.job_id IS NULL OR NOT EXISTS (
                 SELECT 1 FROM public.embedding_jobs j WHERE j.id = k.job_id AND j.status = 'cancelled'))
         ORDER BY k.priority DESC, k.next_retry_at, k.row_id, k.chunk_index
         LIMIT p_limit
           FOR UPDATE OF k SKIP LOCKED
      ), upd AS (
        UPDATE public.embedding_chunks k
           SET status = 'processing', locked_until = now() + make_interval(secs => p_lease_seconds), worker_id = p_worker,
               updated_at = now()
          FROM due d
         WHERE k.target_id = t.id AND k.row_id = d.row_id AND k.doc_hash = d.doc_hash AND k.chunk_index = d.chunk_index
        RETURNING k.row_id, k.chunk_index, k.content, k.content_hash
      )
      SELECT coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'index', chunk_index, 'content', content, 'hash', content_hash)
               ORDER BY row_id, chunk_index), '[]'), count(*)
        INTO v_chunks, v_taken FROM upd;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;

  -- 3. Documents to cut.
  IF v_taken < p_limit THEN
    FOR v_try IN 1..3 LOOP
      BEGIN
        WITH due AS (
          SELECT row_id FROM public.embedding_items i
           WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()
             AND (p_ids IS NULL OR row_id = ANY (p_ids))
             AND (i.job_id IS NULL OR NOT EXISTS (
                   SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled'))
           ORDER BY priority DESC, next_retry_at
           LIMIT p_limit - v_taken
             FOR UPDATE SKIP LOCKED
        ), upd AS (
          UPDATE public.embedding_items i
             SET status = CASE WHEN public.embedding_valid_id(t.id_type, i.row_id) THEN 'processing' ELSE 'dead_letter' END,
                 locked_until = CASE WHEN public.embedding_valid_id(t.id_type, i.row_id) THEN now() + make_interval(secs => p_lease_seconds) END,
                 worker_id = CASE WHEN public.embedding_valid_id(t.id_type, i.row_id) THEN p_worker END,
                 error_kind = CASE WHEN public.embedding_valid_id(t.id_type, i.row_id) THEN i.error_kind ELSE 'permanent' END,
                 last_error = CASE WHEN public.embedding_valid_id(t.id_type, i.row_id) THEN i.last_error
                              ELSE format('id "%s" is not a valid %s: no source row can have it', i.row_id, t.id_type) END,
                 updated_at = now()
            FROM due d WHERE i.target_id = t.id AND i.row_id = d.row_id
          RETURNING i.row_id, i.status, i.content_hash, i.model
        )
        SELECT coalesce(array_agg(row_id) FILTER (WHERE status = 'processing'), '{}'),
               array_agg(content_hash) FILTER (WHERE status = 'processing'),
               array_agg(model) FILTER (WHERE status = 'processing'),
               count(*) FILTER (WHERE status = 'dead_letter')
          INTO v_ids, v_old_hashes, v_old_models, v_invalid FROM upd;
        EXIT;
      EXCEPTION WHEN lock_not_available THEN
        -- Locking a row another claim has just updated: see the migration's header.
        IF v_try = 3 THEN RAISE; END IF;
      END;
    END LOOP;

    IF cardinality(v_ids) > 0 THEN
      v_read := public.embedding_read_claimed(t, v_rel, v_ids, v_old_hashes, v_old_models);
      SELECT coalesce(array_agg(x), '{}') INTO v_gone FROM jsonb_array_elements_text(v_read -> 'gone') AS x;
      SELECT coalesce(array_agg(x), '{}') INTO v_unchanged FROM jsonb_array_elements_text(v_read -> 'unchanged') AS x;
      SELECT coalesce(array_agg(x), '{}') INTO v_blank FROM jsonb_array_elements_text(v_read -> 'blank') AS x;
      v_failed := v_read -> 'failed';
      v_docs := v_read -> 'items';

      IF cardinality(v_gone) + cardinality(v_blank) > 0 THEN
        BEGIN
          PERFORM public.embedding_chunk_delete_docs(t, v_crel, v_gone || v_blank);
          DELETE FROM public.embedding_items i WHERE i.target_id = t.id AND i.row_id = ANY (v_gone)
             AND i.status = 'processing' AND i.worker_id = p_worker;
          -- An empty document has no chunks: that is its complete state.
          UPDATE public.embedding_items i
             SET status = 'completed', attempts = 0, locked_until = NULL, worker_id = NULL, last_error = NULL,
                 error_kind = NULL, content_hash = NULL, chunk_hash = NULL, chunk_count = 0, tokens = 0,
                 model = t.model, embedded_at = now(), updated_at = now()
           WHERE i.target_id = t.id AND i.row_id = ANY (v_blank) AND i.status = 'processing' AND i.worker_id = p_worker;
          DELETE FROM public.embedding_chunks k WHERE k.target_id = t.id AND k.row_id = ANY (v_blank);
        EXCEPTION WHEN lock_not_available THEN
          -- A swap of one of them holds its chunk rows right now: later.
          UPDATE public.embedding_items i
             SET status = 'pending', locked_until = NULL, worker_id = NULL, next_retry_at = now() + interval '5 seconds',
                 updated_at = now()
           WHERE i.target_id = t.id AND i.row_id = ANY (v_gone || v_blank) AND i.status = 'processing' AND i.worker_id = p_worker;
          v_gone := '{}';
          v_blank := '{}';
        END;
      END IF;
      IF cardinality(v_unchanged) > 0 THEN
        UPDATE public.embedding_items i
           SET status = 'completed', attempts = 0, locked_until = NULL, worker_id = NULL, last_error = NULL,
               error_kind = NULL, updated_at = now()
         WHERE i.target_id = t.id AND i.row_id = ANY (v_unchanged) AND i.status = 'processing' AND i.worker_id = p_worker;
      END IF;
      IF jsonb_array_length(v_failed) > 0 THEN
        UPDATE public.embedding_items i
           SET status = 'dead_letter', locked_until = NULL, worker_id = NULL, error_kind = 'permanent',
               last_error = left(f ->> 'error', 2000) || '; the row is queued again when its content changes',
               content_hash = NULL, updated_at = now()
          FROM jsonb_array_elements(v_failed) AS f
         WHERE i.target_id = t.id AND i.row_id = f ->> 'id' AND i.status = 'processing' AND i.worker_id = p_worker;
      END IF;
    END IF;

    -- 4. Documents embedded but not swapped.
    IF v_taken + jsonb_array_length(v_docs) < p_limit THEN
      SELECT coalesce(jsonb_agg(r.row_id), '[]') INTO v_ready FROM (
        SELECT i.row_id FROM public.embedding_items i
         WHERE i.target_id = t.id AND i.status = 'chunked'
           AND (p_ids IS NULL OR i.row_id = ANY (p_ids))
           AND NOT EXISTS (SELECT 1 FROM public.embedding_chunks k
                            WHERE k.target_id = i.target_id AND k.row_id = i.row_id AND k.doc_hash = i.chunk_hash
                              AND k.status <> 'completed')
         LIMIT 10) AS r;
    END IF;
  END IF;

  PERFORM public.embedding_job_beat(p_job);
  RETURN jsonb_build_object('chunks', v_chunks, 'docs', v_docs, 'ready', v_ready, 'expired', v_expired,
    'deleted', cardinality(v_gone), 'skipped', cardinality(v_unchanged),
    'empty', cardinality(v_blank), 'invalid', v_invalid + jsonb_array_length(v_failed), 'jobStatus', v_job_status);
END $function$;

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201180100', 'claim_lock_retry')
ON CONFLICT (version) DO NOTHING;
