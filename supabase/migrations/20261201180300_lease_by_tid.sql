-- The claim's lease statements joined the rows they had just locked back to the state table by
-- (target_id, row_id). Planned on statistics taken before the target's rows existed, which is how
-- every backfill starts until autovacuum's analyze runs, that join read every state row of the target
-- to find the batch: 16,780 rows filtered to lease 20 in a profile at 840 rows (`npm run
-- bench:statements -- --batch 20 --plan "WITH due"`), 60,000 rows read per claim of 20 at 20,000
-- (test/plans.test.ts).
--
-- The rows a claim locks are now updated by their ctid: a TID scan reads exactly those rows whatever
-- the statistics say. A locked row's ctid is that of the version the lock is on (FOR UPDATE follows a
-- concurrent update to the newest version), and no other transaction can update or move the row
-- while this one holds the lock. The invalid-id rows are dead-lettered by a second UPDATE, only when
-- there are any. The due rows are picked by embedding_pick_due (below).

-- The due rows of a target, in the order the queue serves them, locked: walked along
-- embedding_items_due_idx, which is in that order already. Planned on statistics from before the
-- target had rows, the same SELECT inside embedding_claim read the target's whole primary key and
-- sorted it (20,000 rows read per claim of 20, test/plans.test.ts): with no row expected, the sort
-- looked free. A sort is never needed here, so this one statement is planned without one
-- (enable_sort off, for this function only). Not SECURITY DEFINER: only embedding_claim, which runs
-- as the owner, can lock these rows.
CREATE OR REPLACE FUNCTION public.embedding_pick_due(p_target integer, p_limit integer, p_ids text[],
  p_plain_id text, p_id_type text)
 RETURNS TABLE (tid tid, valid boolean)
 LANGUAGE sql
 VOLATILE
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET enable_sort TO off
AS $function$
  -- Whether the id can be one of the source's, once per row: a regular expression for the usual
  -- spelling, the full check (embedding_valid_id) only for anything else.
  SELECT i.ctid, CASE WHEN i.row_id ~ p_plain_id THEN true ELSE public.embedding_valid_id(p_id_type, i.row_id) END
    FROM public.embedding_items i
   WHERE i.target_id = p_target AND i.status IN ('pending', 'failed') AND i.next_retry_at <= now()
     AND (p_ids IS NULL OR i.row_id = ANY (p_ids))
     AND (i.job_id IS NULL OR NOT EXISTS (
           SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled'))
   ORDER BY i.priority DESC, i.next_retry_at
   LIMIT p_limit
     FOR UPDATE OF i SKIP LOCKED
$function$;

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
  v_tids tid[];
  v_bad_tids tid[];
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
      -- Locked rows are updated by their ctid (the locked version's, which no one else can move):
      -- joined back by row_id, a plan made on stale statistics read every state row of the target.
      SELECT coalesce(array_agg(e.tid), '{}') INTO v_tids FROM (
        SELECT i.ctid AS tid FROM public.embedding_items i
         WHERE i.target_id = t.id AND i.status = 'processing' AND i.locked_until < now()
         ORDER BY i.locked_until
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED) AS e;
      v_expired := 0;
      IF cardinality(v_tids) > 0 THEN
        UPDATE public.embedding_items i
           SET attempts = i.attempts + 1,
               status = CASE WHEN i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'pending' END,
               last_error = 'lease expired: the worker holding this row stopped before finishing (crash, deploy or timeout)',
               error_kind = 'transient', locked_until = NULL, worker_id = NULL, next_retry_at = now(), updated_at = now()
         WHERE i.ctid = ANY (v_tids);
        GET DIAGNOSTICS v_expired = ROW_COUNT;
      END IF;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;

  -- The lease UPDATE hands back what the unchanged-content check needs: no second look at the items.
  FOR v_try IN 1..3 LOOP
    BEGIN
      SELECT coalesce(array_agg(d.tid) FILTER (WHERE d.valid), '{}'),
             coalesce(array_agg(d.tid) FILTER (WHERE NOT d.valid), '{}')
        INTO v_tids, v_bad_tids
        FROM public.embedding_pick_due(t.id, p_limit, p_ids, v_plain_id, t.id_type) AS d;
      -- By ctid, as above; the lease UPDATE hands back what the unchanged-content check needs.
      WITH upd AS (
        UPDATE public.embedding_items i
           SET status = 'processing', locked_until = now() + make_interval(secs => p_lease_seconds),
               worker_id = p_worker, updated_at = now()
         WHERE i.ctid = ANY (v_tids)
        RETURNING i.row_id, i.content_hash, i.model
      )
      SELECT coalesce(array_agg(row_id), '{}'), array_agg(content_hash), array_agg(model)
        INTO v_ids, v_old_hashes, v_old_models FROM upd;
      v_invalid := 0;
      IF cardinality(v_bad_tids) > 0 THEN
        UPDATE public.embedding_items i
           SET status = 'dead_letter', locked_until = NULL, worker_id = NULL, error_kind = 'permanent',
               last_error = format('id "%s" is not a valid %s: no source row can have it', i.row_id, t.id_type),
               updated_at = now()
         WHERE i.ctid = ANY (v_bad_tids);
        GET DIAGNOSTICS v_invalid = ROW_COUNT;
      END IF;
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

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201180300', 'lease_by_tid')
ON CONFLICT (version) DO NOTHING;
