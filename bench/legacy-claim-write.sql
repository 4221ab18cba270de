-- The core migration's embedding_claim and embedding_write as they were before the issue 6 work,
-- kept only so `npm run bench` can measure before and after on the same rows in the same run
-- (bench/legacy.ts installs them into one scenario database). Not a migration.

CREATE OR REPLACE FUNCTION public.embedding_claim(
  p_target text,
  p_worker text,
  p_limit integer DEFAULT 20,
  p_lease_seconds integer DEFAULT 300
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_ids text[];
  v_expired integer;
  v_rows jsonb;
  v_deleted integer;
  v_skipped integer;
  v_empty integer;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'claim size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use a batch size of 1..10000';
  END IF;
  IF p_worker IS NULL OR length(p_worker) = 0 THEN
    RAISE EXCEPTION 'worker id is required' USING ERRCODE = '22023';
  END IF;

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

  WITH due AS (
    SELECT row_id FROM public.embedding_items
     WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()
     ORDER BY priority DESC, next_retry_at
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = 'processing', locked_until = now() + make_interval(secs => p_lease_seconds),
           worker_id = p_worker, updated_at = now()
      FROM due d
     WHERE i.target_id = t.id AND i.row_id = d.row_id
    RETURNING i.row_id
  )
  SELECT coalesce(array_agg(row_id), '{}') INTO v_ids FROM upd;

  IF cardinality(v_ids) = 0 THEN
    RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', v_expired, 'deleted', 0, 'skipped', 0, 'empty', 0);
  END IF;

  EXECUTE format($q$
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', s.%1$I::text, 'content', c.content, 'hash', md5(c.content),
             'unchanged', i.content_hash IS NOT DISTINCT FROM md5(c.content) AND i.model IS NOT DISTINCT FROM $3
                          AND s.%2$I IS NOT NULL)), '[]'::jsonb)
      FROM %3$I.%4$I AS s
      CROSS JOIN LATERAL (SELECT (%5$s)::text AS content) c
      JOIN public.embedding_items i ON i.target_id = $2 AND i.row_id = s.%1$I::text
     WHERE s.%1$I = ANY ($1::%6$s[])
  $q$, t.id_column, t.embedding_column, t.schema_name, t.table_name, t.content_sql, t.id_type)
  INTO v_rows USING v_ids, t.id, t.model;

  -- Rows gone from the source: end their state.
  WITH gone AS (
    DELETE FROM public.embedding_items i
     WHERE i.target_id = t.id AND i.row_id = ANY (v_ids)
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v_rows) r WHERE r ->> 'id' = i.row_id)
    RETURNING 1
  ) SELECT count(*) INTO v_deleted FROM gone;

  WITH done AS (
    UPDATE public.embedding_items i
       SET status = 'completed', attempts = 0, locked_until = NULL, worker_id = NULL, last_error = NULL,
           error_kind = NULL, updated_at = now()
      FROM jsonb_array_elements(v_rows) r
     WHERE i.target_id = t.id AND i.row_id = r ->> 'id' AND (r ->> 'unchanged')::boolean
    RETURNING 1
  ) SELECT count(*) INTO v_skipped FROM done;

  WITH e AS (
    UPDATE public.embedding_items i
       SET status = 'dead_letter', locked_until = NULL, worker_id = NULL, error_kind = 'permanent',
           last_error = 'content is empty (NULL or blank): nothing to embed; the row is queued again when its content changes',
           content_hash = NULL, updated_at = now()
      FROM jsonb_array_elements(v_rows) r
     WHERE i.target_id = t.id AND i.row_id = r ->> 'id' AND NOT (r ->> 'unchanged')::boolean
       AND coalesce(r ->> 'content', '') !~ '\S'
    RETURNING 1
  ) SELECT count(*) INTO v_empty FROM e;

  RETURN jsonb_build_object(
    'items', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', r ->> 'id', 'content', r ->> 'content', 'hash', r ->> 'hash')), '[]'::jsonb)
                FROM jsonb_array_elements(v_rows) r
               WHERE NOT (r ->> 'unchanged')::boolean AND coalesce(r ->> 'content', '') ~ '\S'),
    'expired', v_expired, 'deleted', v_deleted, 'skipped', v_skipped, 'empty', v_empty);
END $$;

CREATE OR REPLACE FUNCTION public.embedding_write(
  p_target text,
  p_worker text,
  p_ids text[],
  p_hashes text[],
  p_vectors text[],
  p_tokens integer[] DEFAULT NULL,
  p_truncated boolean[] DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer := coalesce(cardinality(p_ids), 0);
  v_written text[];
  v_bad text;
  v_stale integer;
  v_gone integer;
  v_value_sql text;
BEGIN
  IF v_n = 0 THEN
    RETURN jsonb_build_object('written', 0, 'stale', 0, 'gone', 0, 'notLeased', 0);
  END IF;
  IF cardinality(p_hashes) <> v_n OR cardinality(p_vectors) <> v_n
     OR (p_tokens IS NOT NULL AND cardinality(p_tokens) <> v_n)
     OR (p_truncated IS NOT NULL AND cardinality(p_truncated) <> v_n) THEN
    RAISE EXCEPTION 'write batch arrays differ in length (ids %, hashes %, vectors %)', v_n, cardinality(p_hashes), cardinality(p_vectors)
      USING ERRCODE = '22023';
  END IF;
  -- Dimension check before anything is written, with both numbers in the message (the 003 outage).
  SELECT format('expected %s dimensions, got %s (row %s)', t.dimensions,
                coalesce(array_length(string_to_array(btrim(v, '[] '), ','), 1), 0), id)
    INTO v_bad
    FROM unnest(p_ids, p_vectors) AS u(id, v)
   WHERE coalesce(array_length(string_to_array(btrim(v, '[] '), ','), 1), 0) <> t.dimensions
   LIMIT 1;
  IF v_bad IS NOT NULL THEN
    RAISE EXCEPTION 'target "%": %', t.name, v_bad
      USING ERRCODE = '22000', HINT = format('configure the provider for %s dimensions, or alter the column to the model''s dimension', t.dimensions);
  END IF;

  v_value_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                      THEN format('u."__embedding_sync_vec"::%s', t.embedding_type_sql)
                      ELSE format('translate(u."__embedding_sync_vec", ''[]'', ''{}'')::%s', t.embedding_type_sql) END;

  -- Lease first (items rows locked in a fixed order), then the source UPDATE: a concurrent content
  -- edit either committed before (its trigger re-queued the item, so the lease check drops it) or
  -- waits for us and re-queues the row afterwards.
  EXECUTE format($q$
    WITH leased AS (
      SELECT i.row_id FROM public.embedding_items i
       WHERE i.target_id = $1 AND i.row_id = ANY ($2) AND i.status = 'processing' AND i.worker_id = $3
       ORDER BY i.row_id
         FOR UPDATE
    ), batch AS (
      SELECT x.id AS "__embedding_sync_id", x.hash AS "__embedding_sync_hash", x.vec AS "__embedding_sync_vec"
        FROM unnest($2, $4, $5) AS x(id, hash, vec)
        JOIN leased l ON l.row_id = x.id
    ), w AS (
      UPDATE %1$I.%2$I AS s SET %3$I = %4$s
        FROM batch AS u
       WHERE s.%5$I = u."__embedding_sync_id"::%6$s
         AND md5((%7$s)::text) = u."__embedding_sync_hash"
      RETURNING s.%5$I::text AS row_id
    )
    SELECT coalesce(array_agg(row_id), '{}') FROM w
  $q$, t.schema_name, t.table_name, t.embedding_column, v_value_sql, t.id_column, t.id_type, t.content_sql)
  INTO v_written USING t.id, p_ids, p_worker, p_hashes, p_vectors;

  UPDATE public.embedding_items i
     SET status = 'completed', content_hash = u.hash, model = t.model, tokens = u.tokens,
         truncated = coalesce(u.truncated, false), attempts = 0, locked_until = NULL, worker_id = NULL,
         last_error = NULL, error_kind = NULL, embedded_at = now(), updated_at = now()
    FROM unnest(p_ids, p_hashes, coalesce(p_tokens, array_fill(NULL::integer, ARRAY[v_n])),
                coalesce(p_truncated, array_fill(false, ARRAY[v_n]))) AS u(id, hash, tokens, truncated)
   WHERE i.target_id = t.id AND i.row_id = u.id AND u.id = ANY (v_written);

  -- Leased but not written: the row is gone (end its state) or its content changed (queue it again).
  EXECUTE format($q$
    WITH gone AS (
      DELETE FROM public.embedding_items i
       WHERE i.target_id = $1 AND i.row_id = ANY ($2) AND NOT (i.row_id = ANY ($3))
         AND i.status = 'processing' AND i.worker_id = $4
         AND NOT EXISTS (SELECT 1 FROM %1$I.%2$I s WHERE s.%3$I = i.row_id::%4$s)
      RETURNING 1
    ) SELECT count(*) FROM gone
  $q$, t.schema_name, t.table_name, t.id_column, t.id_type)
  INTO v_gone USING t.id, p_ids, v_written, p_worker;

  WITH stale AS (
    UPDATE public.embedding_items i
       SET status = 'pending', next_retry_at = now(), locked_until = NULL, worker_id = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.row_id = ANY (p_ids) AND NOT (i.row_id = ANY (v_written))
       AND i.status = 'processing' AND i.worker_id = p_worker
    RETURNING 1
  ) SELECT count(*) INTO v_stale FROM stale;

  RETURN jsonb_build_object('written', cardinality(v_written), 'stale', v_stale, 'gone', v_gone,
    'notLeased', v_n - cardinality(v_written) - v_stale - v_gone);
END $$;
