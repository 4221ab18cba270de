-- Embedding sync: chunk mode, part 3: the atomic swap, and jobs, status and cancel for chunks.
--
-- The swap replaces a document's chunk rows with its new set in one transaction:
-- embedding_chunk_swap_begin (checks, and removes chunks past the new count), then
-- embedding_chunk_swap_part for ranges of chunk indexes (each a statement of at most a batch's rows,
-- so a statement timeout bounds a piece, not the document), then embedding_chunk_swap_end. A direct
-- connection runs them in one transaction of several statements; over PostgREST, where a call is one
-- statement, embedding_chunk_finalize runs all three in one call. Concurrent swaps of one document
-- exclude each other with a transaction-scoped advisory lock, so a user's edit of the document never
-- waits for a swap: the edit queues the document again, and the swap still installs one whole
-- version (the next one replaces it).

CREATE OR REPLACE FUNCTION public.embedding_chunk_swap_begin(p_target text, p_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_rel regclass := public.embedding_require_relation(t);
  v_crel regclass := public.embedding_require_chunk_relation(t);
  i public.embedding_items;
  v_found boolean;
  v_hash text;
  v_changed integer;
BEGIN
  PERFORM public.embedding_chunk_assert(t, v_crel, true);
  IF NOT pg_try_advisory_xact_lock(hashtext('embedding_chunk_swap'), hashtext(t.id || ':' || p_id)) THEN
    RETURN jsonb_build_object('state', 'busy');
  END IF;
  SELECT * INTO i FROM public.embedding_items WHERE target_id = t.id AND row_id = p_id;
  IF NOT FOUND OR i.status <> 'chunked' THEN
    RETURN jsonb_build_object('state', 'not-ready', 'status', i.status);
  END IF;
  IF EXISTS (SELECT 1 FROM public.embedding_chunks k
              WHERE k.target_id = t.id AND k.row_id = p_id AND k.doc_hash = i.chunk_hash AND k.status <> 'completed') THEN
    RETURN jsonb_build_object('state', 'not-ready', 'status', i.status);
  END IF;
  -- The document as it is now: gone, or with content other than what was cut (written with its
  -- triggers off): then nothing is swapped in.
  BEGIN
    EXECUTE format('SELECT true, md5((%s)::text) FROM %s AS s WHERE s.%I = $1::%s', t.content_sql, v_rel, t.id_column, t.id_type)
      INTO v_found, v_hash USING p_id;
  EXCEPTION WHEN data_exception THEN
    v_found := true;
    v_hash := NULL;
  END;
  IF v_found IS NULL THEN
    PERFORM public.embedding_chunk_delete_docs(t, v_crel, ARRAY[p_id]);
    DELETE FROM public.embedding_items WHERE target_id = t.id AND row_id = p_id;
    RETURN jsonb_build_object('state', 'gone');
  END IF;
  IF v_hash IS DISTINCT FROM i.chunk_hash THEN
    PERFORM public.embedding_queue_row(t.id, p_id, t.max_attempts);
    RETURN jsonb_build_object('state', 'stale');
  END IF;
  EXECUTE format('DELETE FROM %s WHERE document_id = $1::%s AND chunk_index >= $2', v_crel, t.id_type)
    USING p_id, i.chunk_count;
  SELECT count(*) INTO v_changed FROM public.embedding_chunks
   WHERE target_id = t.id AND row_id = p_id AND doc_hash = i.chunk_hash AND NOT in_place;
  RETURN jsonb_build_object('state', 'ready', 'count', i.chunk_count, 'changed', v_changed, 'hash', i.chunk_hash);
END $$;

-- Writes the chunks of one index range of the document's new set (only those not already in place).
CREATE OR REPLACE FUNCTION public.embedding_chunk_swap_part(p_target text, p_id text, p_hash text, p_from integer, p_to integer)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_crel regclass := public.embedding_require_chunk_relation(t);
  v_n integer;
BEGIN
  PERFORM public.embedding_chunk_assert(t, v_crel, true);
  EXECUTE format($q$
    INSERT INTO %1$s AS c (document_id, chunk_index, content, %2$I)
    SELECT $1::%3$s, k.chunk_index, k.content, k.vector::%4$s
      FROM public.embedding_chunks k
     WHERE k.target_id = $2 AND k.row_id = $1 AND k.doc_hash = $3 AND k.chunk_index BETWEEN $4 AND $5
       AND NOT k.in_place AND k.status = 'completed'
     ORDER BY k.chunk_index
    ON CONFLICT (document_id, chunk_index) DO UPDATE SET content = EXCLUDED.content, %2$I = EXCLUDED.%2$I
  $q$, v_crel, t.chunk_embedding_column, t.id_type, t.embedding_type_sql)
  USING p_id, t.id, p_hash, p_from, p_to;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN jsonb_build_object('written', v_n);
END $$;

-- Ends a swap: the document is complete with this version; its working chunks go.
CREATE OR REPLACE FUNCTION public.embedding_chunk_swap_end(p_target text, p_id text, p_hash text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_tokens bigint;
  v_count integer;
  v_done boolean;
BEGIN
  SELECT coalesce(sum(tokens), 0), count(*) INTO v_tokens, v_count FROM public.embedding_chunks
   WHERE target_id = t.id AND row_id = p_id AND doc_hash = p_hash;
  UPDATE public.embedding_items
     SET status = 'completed', content_hash = p_hash, model = t.model, tokens = v_tokens, attempts = 0,
         locked_until = NULL, worker_id = NULL, last_error = NULL, error_kind = NULL, embedded_at = now(), updated_at = now()
   WHERE target_id = t.id AND row_id = p_id AND status = 'chunked' AND chunk_hash = p_hash
  RETURNING true INTO v_done;
  -- An edit that came during the swap has queued the document again: its next chunk set reuses
  -- these vectors from the chunk table, so this version's working rows can go either way.
  DELETE FROM public.embedding_chunks WHERE target_id = t.id AND row_id = p_id AND doc_hash = p_hash;
  RETURN jsonb_build_object('state', CASE WHEN v_done THEN 'completed' ELSE 'stale' END, 'chunks', v_count, 'tokens', v_tokens);
END $$;

-- The whole swap of each given document in this one call (the PostgREST path; a direct connection
-- uses begin / part / end in one transaction instead, with bounded statements).
CREATE OR REPLACE FUNCTION public.embedding_chunk_finalize(p_target text, p_ids text[])
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  v_id text;
  v_begin jsonb;
  v_end jsonb;
  v_out jsonb := jsonb_build_object('completed', '[]'::jsonb, 'stale', '[]'::jsonb, 'gone', '[]'::jsonb,
    'busy', '[]'::jsonb, 'notReady', '[]'::jsonb, 'chunks', 0, 'written', 0);
  v_key text;
BEGIN
  FOREACH v_id IN ARRAY coalesce(p_ids, '{}') LOOP
    BEGIN
      v_begin := public.embedding_chunk_swap_begin(p_target, v_id);
      IF v_begin ->> 'state' = 'ready' THEN
        v_out := jsonb_set(v_out, '{written}', to_jsonb((v_out ->> 'written')::bigint + (public.embedding_chunk_swap_part(
          p_target, v_id, v_begin ->> 'hash', 0, (v_begin ->> 'count')::integer - 1) ->> 'written')::bigint));
        v_end := public.embedding_chunk_swap_end(p_target, v_id, v_begin ->> 'hash');
        v_key := CASE WHEN v_end ->> 'state' = 'completed' THEN 'completed' ELSE 'stale' END;
        v_out := jsonb_set(v_out, '{chunks}', to_jsonb((v_out ->> 'chunks')::bigint + (v_end ->> 'chunks')::bigint));
      ELSE
        v_key := CASE v_begin ->> 'state' WHEN 'not-ready' THEN 'notReady' ELSE v_begin ->> 'state' END;
      END IF;
    EXCEPTION WHEN lock_not_available THEN
      v_key := 'busy';
    END;
    v_out := jsonb_set(v_out, ARRAY[v_key], (v_out -> v_key) || to_jsonb(v_id));
  END LOOP;
  RETURN v_out;
END $$;

-- Releases every lease on a target whose holder matches a prefix (a cancelled or failed job's
-- workers): rows, documents being cut, and chunks.
CREATE OR REPLACE FUNCTION public.embedding_release_prefix(p_target text, p_worker_prefix text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
  v_c integer := 0;
BEGIN
  IF coalesce(length(p_worker_prefix), 0) < 8 THEN
    RAISE EXCEPTION 'worker prefix too short' USING ERRCODE = '22023';
  END IF;
  WITH held AS (
    SELECT row_id FROM public.embedding_items
     WHERE target_id = t.id AND status = 'processing' AND starts_with(worker_id, p_worker_prefix)
     ORDER BY row_id
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN i.job_id IS NOT NULL AND EXISTS (
                           SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled') THEN 'parked'
                         WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM held h WHERE i.target_id = t.id AND i.row_id = h.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  IF t.chunk_table IS NOT NULL THEN
    WITH held AS (
      SELECT row_id, doc_hash, chunk_index FROM public.embedding_chunks
       WHERE target_id = t.id AND status = 'processing' AND starts_with(worker_id, p_worker_prefix)
       ORDER BY row_id, chunk_index
         FOR UPDATE SKIP LOCKED
    ), upd AS (
      UPDATE public.embedding_chunks k
         SET status = CASE WHEN k.attempts > 0 THEN 'failed' ELSE 'pending' END, locked_until = NULL, worker_id = NULL,
             updated_at = now()
        FROM held h WHERE k.target_id = t.id AND k.row_id = h.row_id AND k.doc_hash = h.doc_hash AND k.chunk_index = h.chunk_index
      RETURNING 1
    ) SELECT count(*) INTO v_c FROM upd;
  END IF;
  RETURN jsonb_build_object('released', v_n + v_c);
END $$;

-- Parks a cancelled job's queued work, documents being chunked included (their chunks are then
-- never claimed; a later backfill resumes them, keeping every chunk already embedded).
CREATE OR REPLACE FUNCTION public.embedding_job_park(p_job uuid, p_limit integer DEFAULT 10000)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE v_n integer;
BEGIN
  WITH pick AS (
    SELECT target_id, row_id FROM public.embedding_items
     WHERE job_id = p_job AND status IN ('pending', 'failed', 'chunked')
     LIMIT least(greatest(coalesce(p_limit, 10000), 1), 100000)
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i SET status = 'parked', updated_at = now()
      FROM pick p WHERE i.target_id = p.target_id AND i.row_id = p.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('parked', v_n);
END $$;
DROP INDEX IF EXISTS public.embedding_items_job_idx;
CREATE INDEX IF NOT EXISTS embedding_items_job_idx ON public.embedding_items (job_id)
  WHERE job_id IS NOT NULL AND status IN ('pending', 'failed', 'chunked');

-- Whether anything is left: for a chunked target, due chunks and documents being chunked count too.
CREATE OR REPLACE FUNCTION public.embedding_pending_summary(p_target text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rows jsonb;
  v_due boolean;
  v_next timestamptz;
BEGIN
  v_rows := jsonb_build_object(
    'dueNow', EXISTS (SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()),
    -- The first row in claim order, not min(): a walk of the due index that stops at one row.
    -- With mixed priorities it is a wake-up hint, not the exact earliest time.
    'nextRetryAt', (SELECT next_retry_at FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'failed')
                     ORDER BY priority DESC, next_retry_at LIMIT 1),
    'inFlight', EXISTS (SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND status IN ('processing', 'chunked')),
    'leaseExpiresAt', (SELECT max(locked_until) FROM public.embedding_items WHERE target_id = t.id AND status = 'processing'));
  IF t.chunk_table IS NULL THEN RETURN v_rows; END IF;
  -- Chunks count only while their document's chunk set is current (the claim takes no others).
  v_due := EXISTS (SELECT 1 FROM public.embedding_chunks k JOIN public.embedding_items i
                      ON i.target_id = k.target_id AND i.row_id = k.row_id
                    WHERE k.target_id = t.id AND k.status IN ('pending', 'failed') AND k.next_retry_at <= now()
                      AND i.status IN ('chunked', 'dead_letter') AND i.chunk_hash = k.doc_hash);
  v_next := (SELECT k.next_retry_at FROM public.embedding_chunks k JOIN public.embedding_items i
                ON i.target_id = k.target_id AND i.row_id = k.row_id
              WHERE k.target_id = t.id AND k.status IN ('pending', 'failed')
                AND i.status IN ('chunked', 'dead_letter') AND i.chunk_hash = k.doc_hash
              ORDER BY k.priority DESC, k.next_retry_at LIMIT 1);
  RETURN v_rows || jsonb_build_object(
    'dueNow', (v_rows ->> 'dueNow')::boolean OR v_due,
    'nextRetryAt', least((v_rows ->> 'nextRetryAt')::timestamptz, v_next),
    'leaseExpiresAt', greatest((v_rows ->> 'leaseExpiresAt')::timestamptz,
      (SELECT max(locked_until) FROM public.embedding_chunks WHERE target_id = t.id AND status = 'processing')));
END $$;

-- Progress, in documents (rows) and, for chunked targets, in chunks.
DROP FUNCTION IF EXISTS public.increment_embedding_job_progress(uuid, integer, integer, integer, bigint, integer);
CREATE OR REPLACE FUNCTION public.increment_embedding_job_progress(
  job_id uuid,
  increment_count integer,
  failed_count integer DEFAULT 0,
  skipped_count integer DEFAULT 0,
  token_count bigint DEFAULT 0,
  request_count integer DEFAULT 0,
  chunks_planned integer DEFAULT 0,
  chunks_embedded integer DEFAULT 0
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE j public.embedding_jobs;
BEGIN
  UPDATE public.embedding_jobs AS x
     SET items_processed = x.items_processed + coalesce(increment_count, 0),
         items_failed = x.items_failed + coalesce(failed_count, 0),
         items_skipped = x.items_skipped + coalesce(skipped_count, 0),
         tokens = x.tokens + coalesce(token_count, 0), requests = x.requests + coalesce(request_count, 0),
         chunks_total = x.chunks_total + coalesce(increment_embedding_job_progress.chunks_planned, 0),
         chunks_embedded = x.chunks_embedded + coalesce(increment_embedding_job_progress.chunks_embedded, 0),
         heartbeat_at = now()
   WHERE x.id = increment_embedding_job_progress.job_id RETURNING * INTO j;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown job %', increment_embedding_job_progress.job_id USING ERRCODE = 'P0002';
  END IF;
  RETURN public.embedding_job_json(j);
END $$;

CREATE OR REPLACE FUNCTION public.embedding_job_json(j public.embedding_jobs)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('id', j.id, 'target', (SELECT name FROM public.embedding_targets WHERE id = j.target_id),
    'kind', j.kind, 'status', j.status, 'options', j.options, 'itemsTotal', j.items_total,
    'itemsProcessed', j.items_processed, 'itemsFailed', j.items_failed, 'itemsSkipped', j.items_skipped,
    'tokens', j.tokens, 'requests', j.requests, 'createdAt', j.created_at, 'startedAt', j.started_at,
    'finishedAt', j.finished_at, 'heartbeatAt', j.heartbeat_at, 'lastError', j.last_error,
    'epoch', j.epoch, 'eventId', j.event_id, 'seeded', j.seeded, 'restarts', j.restarts, 'lanes', j.lanes,
    'chunksTotal', j.chunks_total, 'chunksEmbedded', j.chunks_embedded)
$$;

-- Dead letters; for a chunked target each document lists its dead chunks.
CREATE OR REPLACE FUNCTION public.embedding_dead_letters(p_target text, p_limit integer DEFAULT 100)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'error', last_error, 'errorKind', error_kind,
            'attempts', attempts, 'updatedAt', updated_at)
            || CASE WHEN t.chunk_table IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('chunks',
                 (SELECT coalesce(jsonb_agg(k.chunk_index ORDER BY k.chunk_index), '[]') FROM public.embedding_chunks k
                   WHERE k.target_id = t.id AND k.row_id = d.row_id AND k.doc_hash = d.chunk_hash AND k.status = 'dead_letter'))
               END
            ORDER BY updated_at DESC), '[]'::jsonb)
            FROM (SELECT * FROM public.embedding_items WHERE target_id = t.id AND status = 'dead_letter'
                   ORDER BY updated_at DESC LIMIT least(greatest(p_limit, 1), 1000)) d);
END $$;

CREATE OR REPLACE FUNCTION public.embedding_queue_counts(p_target text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v jsonb;
BEGIN
  SELECT jsonb_build_object(
      'target', t.name,
      'tracked', count(*),
      'pending', count(*) FILTER (WHERE status = 'pending'),
      'processing', count(*) FILTER (WHERE status IN ('processing', 'chunked')),
      'failed', count(*) FILTER (WHERE status = 'failed'),
      'deadLetter', count(*) FILTER (WHERE status = 'dead_letter'),
      'completed', count(*) FILTER (WHERE status = 'completed'),
      'remaining', count(*) FILTER (WHERE status IN ('pending', 'processing', 'chunked', 'failed')))
    INTO v FROM public.embedding_items WHERE target_id = t.id;
  RETURN v;
END $$;

CREATE OR REPLACE FUNCTION public.embedding_check_target(p_name text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets;
  v_rel regclass;
  v_crel regclass;
  v_problems jsonb := '[]'::jsonb;
  v_col text;
  v_typmod integer;
  v_typname text;
  v_name text;
  v_emb_rel regclass;
  v_emb_col text;
BEGIN
  SELECT * INTO t FROM public.embedding_targets WHERE name = p_name;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('ok', false, 'problems', jsonb_build_array(format('target "%s" is not registered', p_name)));
  END IF;
  v_rel := public.embedding_relation(t);
  IF v_rel IS NULL THEN
    RETURN jsonb_build_object('ok', false, 'problems', jsonb_build_array(format('table %I.%I no longer exists', t.schema_name, t.table_name)));
  END IF;
  v_name := public.embedding_relation_name(v_rel);
  FOREACH v_col IN ARRAY coalesce(t.content_refs, t.content_columns, '{}') || ARRAY[t.id_column, t.embedding_column] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped) THEN
      v_problems := v_problems || to_jsonb(format('column %I is missing from %s', v_col, v_name));
    END IF;
  END LOOP;
  v_emb_rel := v_rel;
  v_emb_col := t.embedding_column;
  IF t.chunk_table IS NOT NULL THEN
    v_crel := public.embedding_chunk_relation(t);
    IF v_crel IS NULL THEN
      v_problems := v_problems || to_jsonb(format('chunk table %I.%I no longer exists', t.chunk_schema, t.chunk_table));
    ELSE
      v_emb_rel := v_crel;
      v_emb_col := t.chunk_embedding_column;
      FOREACH v_col IN ARRAY ARRAY['document_id', 'chunk_index', 'content', t.chunk_embedding_column] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_crel AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped) THEN
          v_problems := v_problems || to_jsonb(format('column %I is missing from chunk table %s', v_col, public.embedding_relation_name(v_crel)));
        END IF;
      END LOOP;
    END IF;
  END IF;
  IF v_emb_rel IS NOT NULL THEN
    SELECT a.atttypmod, ty.typname INTO v_typmod, v_typname FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
     WHERE a.attrelid = v_emb_rel AND a.attname = v_emb_col AND NOT a.attisdropped;
    IF v_typname IN ('vector', 'halfvec') AND v_typmod > 0 AND v_typmod <> t.dimensions THEN
      v_problems := v_problems || to_jsonb(format('column %I is %s(%s) but the target expects %s dimensions', v_emb_col, v_typname, v_typmod, t.dimensions));
    END IF;
  END IF;
  IF jsonb_array_length(v_problems) = 0 THEN
    BEGIN
      PERFORM public.embedding_assert_access(t, v_rel, t.chunk_table IS NULL);
      IF v_crel IS NOT NULL THEN
        PERFORM public.embedding_chunk_assert(t, v_crel, true);
      END IF;
    EXCEPTION WHEN insufficient_privilege THEN
      v_problems := v_problems || to_jsonb(SQLERRM);
    END;
  END IF;
  RETURN jsonb_build_object('ok', jsonb_array_length(v_problems) = 0, 'problems', v_problems,
    'dimensions', t.dimensions, 'provider', t.provider, 'model', t.model);
END $$;

-- Status per target. A chunked target reports documents (rows of the source) and chunks: stored in
-- the chunk table, and those being embedded (pending, processing, embedded waiting for their
-- document's swap, dead letters).
CREATE OR REPLACE FUNCTION public.embedding_status(p_target text DEFAULT NULL, p_jobs integer DEFAULT 5)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets;
  v_out jsonb := '[]'::jsonb;
  v_counts jsonb;
  v_src jsonb;
  v_rel regclass;
  v_crel regclass;
  v_error text;
  v_chunks jsonb;
  v_stored bigint;
BEGIN
  FOR t IN SELECT * FROM public.embedding_targets WHERE p_target IS NULL OR name = p_target ORDER BY name LOOP
    SELECT jsonb_build_object(
        'tracked', count(*),
        'pending', count(*) FILTER (WHERE status = 'pending'),
        'processing', count(*) FILTER (WHERE status IN ('processing', 'chunked')),
        'completed', count(*) FILTER (WHERE status = 'completed'),
        'failed', count(*) FILTER (WHERE status = 'failed'),
        'deadLetter', count(*) FILTER (WHERE status = 'dead_letter'),
        'parked', count(*) FILTER (WHERE status = 'parked'))
      INTO v_counts FROM public.embedding_items WHERE target_id = t.id;
    v_src := NULL;
    v_error := NULL;
    v_chunks := NULL;
    v_rel := public.embedding_relation(t);
    BEGIN
      IF v_rel IS NULL THEN
        RAISE EXCEPTION 'the table of target "%" (%.%) no longer exists', t.name, t.schema_name, t.table_name
          USING ERRCODE = '42P01';
      END IF;
      PERFORM public.embedding_assert_access(t, v_rel, false);
      IF t.chunk_table IS NULL THEN
        EXECUTE format($q$
          SELECT jsonb_build_object(
            'total', count(*),
            'embedded', count(*) FILTER (WHERE s.%1$I IS NOT NULL),
            'completedButNull', count(*) FILTER (WHERE s.%1$I IS NULL AND EXISTS (
                SELECT 1 FROM public.embedding_items i WHERE i.target_id = $1 AND i.row_id = s.%2$I::text AND i.status = 'completed')))
            FROM %3$s AS s
        $q$, t.embedding_column, t.id_column, v_rel)
        INTO v_src USING t.id;
      ELSE
        -- A document is embedded when its current content's chunk set is in the chunk table.
        EXECUTE format($q$
          SELECT jsonb_build_object('total', count(*), 'embedded', count(*) FILTER (WHERE EXISTS (
              SELECT 1 FROM public.embedding_items i WHERE i.target_id = $1 AND i.row_id = s.%1$I::text AND i.status = 'completed')),
            'completedButNull', 0)
            FROM %2$s AS s
        $q$, t.id_column, v_rel)
        INTO v_src USING t.id;
        v_crel := public.embedding_require_chunk_relation(t);
        PERFORM public.embedding_chunk_assert(t, v_crel, false);
        EXECUTE format('SELECT count(*) FROM %s', v_crel) INTO v_stored;
        SELECT jsonb_build_object(
            'stored', v_stored,
            'pending', count(*) FILTER (WHERE k.status IN ('pending', 'failed')),
            'processing', count(*) FILTER (WHERE k.status = 'processing'),
            'embedded', count(*) FILTER (WHERE k.status = 'completed'),
            'deadLetter', count(*) FILTER (WHERE k.status = 'dead_letter'),
            'inProgress', count(*))
          INTO v_chunks
          FROM public.embedding_chunks k JOIN public.embedding_items i ON i.target_id = k.target_id AND i.row_id = k.row_id
         WHERE k.target_id = t.id AND k.doc_hash = i.chunk_hash;
        v_chunks := v_chunks || jsonb_build_object('table', public.embedding_relation_name(v_crel),
          'tokens', t.chunk_tokens, 'overlap', t.chunk_overlap,
          'documents', jsonb_build_object(
            'total', (v_src ->> 'total')::bigint,
            'embedded', (v_src ->> 'embedded')::bigint,
            'inProgress', (SELECT count(*) FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'processing', 'chunked')),
            'failed', (SELECT count(*) FROM public.embedding_items WHERE target_id = t.id AND status IN ('failed', 'dead_letter'))));
      END IF;
    EXCEPTION WHEN others THEN
      v_error := SQLERRM;
    END;
    v_out := v_out || jsonb_build_array(jsonb_build_object(
      'target', t.name,
      'table', coalesce(public.embedding_relation_name(v_rel), format('%I.%I', t.schema_name, t.table_name)),
      'provider', t.provider, 'model', t.model, 'dimensions', t.dimensions,
      'total', coalesce((v_src ->> 'total')::bigint, 0), 'embedded', coalesce((v_src ->> 'embedded')::bigint, 0),
      'coverage', CASE WHEN v_src IS NULL OR (v_src ->> 'total')::bigint = 0 THEN CASE WHEN v_src IS NULL THEN 0 ELSE 100 END
                       ELSE round(100.0 * (v_src ->> 'embedded')::bigint / (v_src ->> 'total')::bigint, 2) END,
      'untracked', greatest(coalesce((v_src ->> 'total')::bigint, 0) - (v_counts ->> 'tracked')::bigint, 0),
      'completedButNull', coalesce((v_src ->> 'completedButNull')::bigint, 0),
      'nextRetryAt', (SELECT min(next_retry_at) FROM public.embedding_items WHERE target_id = t.id AND status = 'failed'),
      'batchLimit', t.batch_limit, 'batchLimitReason', t.batch_limit_reason,
      'chunks', v_chunks,
      'jobs', (SELECT coalesce(jsonb_agg(public.embedding_job_json(j) ORDER BY j.created_at DESC), '[]'::jsonb)
                 FROM (SELECT * FROM public.embedding_jobs WHERE target_id = t.id ORDER BY created_at DESC LIMIT p_jobs) j)
    ) || v_counts || CASE WHEN v_error IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('error', v_error) END);
  END LOOP;
  IF p_target IS NOT NULL AND jsonb_array_length(v_out) = 0 THEN
    PERFORM public.embedding_target_row(p_target);
  END IF;
  RETURN v_out;
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201120200', 'chunk_swap_and_status')
ON CONFLICT (version) DO NOTHING;
