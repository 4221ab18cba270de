-- Embedding sync: least privilege and safety, part 3: the queue API.
--
-- The user's own transactions never fail because of the service:
--   * Its statements never wait on rows a user transaction holds. Per-row state and source rows are
--     locked with SKIP LOCKED, and a row a user is editing right now is left for that edit (its
--     trigger queues the row again when it commits). What cannot skip (an insert that meets a row a
--     user is inserting) runs under a 50 ms lock_timeout: the service's statement gives up (55P03,
--     retried) long before PostgreSQL's deadlock check (deadlock_timeout, 1 s) would pick a victim,
--     so the victim is never the user.
--   * One bad row stalls nothing: an id that is not a valid value of the key's type is refused where
--     it enters and dead-lettered if it is already stored; a content expression that fails on one row
--     dead-letters that row with the reason, and the others go on.
-- Every read of the source checks the caller's SELECT rights, every write its UPDATE right.

-- Locks this worker's leased state rows among p_ids and returns the ids it holds. A row another
-- transaction holds is skipped, then tried again three times 20 ms apart: the service's own claims
-- can hold a row for a moment (a FOR UPDATE that rechecks a row updated under it keeps the lock
-- until its statement ends). What is still held after that belongs to a longer transaction, a user
-- editing that row, whose trigger queues the row again when it commits: it is left out.
CREATE OR REPLACE FUNCTION public.embedding_lock_leased(p_target integer, p_worker text, p_ids text[])
RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
    SELECT coalesce(array_agg(i.row_id), '{}') INTO v_rest FROM public.embedding_items i
     WHERE i.target_id = p_target AND i.row_id = ANY (v_rest) AND NOT (i.row_id = ANY (v_locked))
       AND i.status = 'processing' AND (p_worker IS NULL OR i.worker_id = p_worker);
    EXIT WHEN cardinality(v_rest) = 0 OR attempt = 4;
    PERFORM pg_sleep(0.02);
  END LOOP;
  RETURN v_locked;
END $$;

DROP FUNCTION IF EXISTS public.embedding_enqueue(text, text, integer, boolean);

-- Seeds per-row state for one keyset page of the source table (bounded work per call, so a
-- million-row table never needs one long statement that a statement timeout cancels).
-- Rows that already have an embedding are recorded as completed with the current content hash,
-- unless p_reembed or the target was re-registered for another definition (trust_existing). Rows
-- already tracked keep their state unless p_reembed, which queues them again with the content hash
-- cleared, so the claim embeds them instead of finding them unchanged.
CREATE OR REPLACE FUNCTION public.embedding_enqueue(
  p_target text,
  p_after text DEFAULT NULL,
  p_limit integer DEFAULT 5000,
  p_reembed boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass := public.embedding_require_relation(t);
  v_trust boolean := t.trust_existing AND NOT coalesce(p_reembed, false);
  v_ids text[];
  v_has boolean[];
  v_hashes text[];
  v_hash text;
  v_queued integer := 0;
  v_already integer := 0;
  v_requeued integer := 0;
  v_page text;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100000 THEN
    RAISE EXCEPTION 'enqueue page size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use 1..100000';
  END IF;
  IF p_after IS NOT NULL AND NOT public.embedding_valid_id(t.id_type, p_after) THEN
    RAISE EXCEPTION 'cursor "%" is not a valid % id', p_after, t.id_type USING ERRCODE = '22P02';
  END IF;
  PERFORM public.embedding_assert_access(t, v_rel, false);
  v_page := format($q$
      SELECT coalesce(array_agg(p.row_id ORDER BY p.pk), '{}'), coalesce(array_agg(p.has ORDER BY p.pk), '{}'),
             coalesce(array_agg(p.hash ORDER BY p.pk), '{}')
        FROM (SELECT s.%1$I AS pk, s.%1$I::text AS row_id, s.%2$I IS NOT NULL AS has,
                     CASE WHEN $3 AND s.%2$I IS NOT NULL THEN %%s END AS hash
                FROM %4$s AS s
               WHERE $1::text IS NULL OR s.%1$I > $1::%5$s
               ORDER BY s.%1$I
               LIMIT $2) AS p
    $q$, t.id_column, t.embedding_column, t.content_sql, v_rel, t.id_type);
  BEGIN
    EXECUTE format(v_page, format('md5((%s)::text)', t.content_sql)) INTO v_ids, v_has, v_hashes
      USING p_after, p_limit, v_trust;
  EXCEPTION WHEN data_exception THEN
    -- The content expression fails on some row of this page: hash row by row, and leave a row it
    -- fails on untrusted (pending), so the claim dead-letters it with the reason.
    EXECUTE format(v_page, 'NULL::text') INTO v_ids, v_has, v_hashes USING p_after, p_limit, false;
    FOR i IN 1 .. cardinality(v_ids) LOOP
      IF v_trust AND v_has[i] THEN
        BEGIN
          EXECUTE format('SELECT md5((%s)::text) FROM %s AS s WHERE s.%I = $1::%s', t.content_sql, v_rel, t.id_column, t.id_type)
            INTO v_hash USING v_ids[i];
          v_hashes[i] := v_hash;
        EXCEPTION WHEN data_exception THEN
          v_has[i] := false;
        END;
      END IF;
    END LOOP;
  END;

  WITH page AS (
    SELECT * FROM unnest(v_ids, v_has, v_hashes) AS p(row_id, has, hash)
  ), ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, content_hash, model, embedded_at)
    SELECT t.id, p.row_id,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN 'completed' ELSE 'pending' END,
           t.max_attempts,
           CASE WHEN v_trust AND p.has THEN p.hash END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN t.model END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN now() END
      FROM page p
    ON CONFLICT (target_id, row_id) DO NOTHING
    RETURNING i.status
  )
  SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'completed')
    INTO v_queued, v_already FROM ins;

  IF coalesce(p_reembed, false) THEN
    -- A row another transaction holds is tried again briefly (see embedding_lock_leased); one a
    -- user is editing right now is left: the edit queues it anyway.
    FOR attempt IN 1 .. 4 LOOP
      WITH pick AS (
        SELECT row_id FROM public.embedding_items
         WHERE target_id = t.id AND row_id = ANY (v_ids) AND status <> 'processing'
           AND NOT (status = 'pending' AND content_hash IS NULL AND attempts = 0)
         ORDER BY row_id
           FOR UPDATE SKIP LOCKED
      ), upd AS (
        UPDATE public.embedding_items i
           SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL,
               content_hash = NULL, updated_at = now()
          FROM pick WHERE i.target_id = t.id AND i.row_id = pick.row_id
        RETURNING 1
      ) SELECT v_requeued + count(*) INTO v_requeued FROM upd;
      EXIT WHEN attempt = 4 OR NOT EXISTS (
        SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND row_id = ANY (v_ids) AND status <> 'processing'
           AND NOT (status = 'pending' AND content_hash IS NULL AND attempts = 0));
      PERFORM pg_sleep(0.02);
    END LOOP;
  END IF;

  RETURN jsonb_build_object('scanned', cardinality(v_ids), 'queued', v_queued + v_requeued,
    'alreadyEmbedded', v_already, 'last', v_ids[cardinality(v_ids)], 'done', cardinality(v_ids) < p_limit);
END $$;

-- Reads the claimed rows' content from the source in one statement and classifies them: gone from
-- the source, unchanged (same content hash and model, embedding present), blank, or to embed. If the
-- content expression fails on a row, the rows are read one by one and that row is reported as
-- `failed` with the reason, so the others still go on.
CREATE OR REPLACE FUNCTION public.embedding_read_claimed(
  t public.embedding_targets,
  p_rel regclass,
  p_ids text[],
  p_old_hashes text[],
  p_old_models text[]
) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_sql text := format($q$
    WITH c AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS c(row_id, old_hash, old_model)
    ), s AS (
      SELECT s.%1$I::text AS row_id, (%3$s)::text AS content, s.%2$I IS NOT NULL AS has_embedding
        FROM %4$s AS s
       WHERE s.%1$I = ANY ($1::%5$s[])
    ), j AS (
      SELECT c.row_id, s.content, md5(s.content) AS hash, s.row_id IS NULL AS gone,
             s.row_id IS NOT NULL AND c.old_hash IS NOT DISTINCT FROM md5(s.content)
               AND c.old_model IS NOT DISTINCT FROM $4 AND s.has_embedding AS unchanged
        FROM c LEFT JOIN s ON s.row_id = c.row_id
    )
    SELECT jsonb_build_object(
      'gone', coalesce(jsonb_agg(row_id) FILTER (WHERE gone), '[]'),
      'unchanged', coalesce(jsonb_agg(row_id) FILTER (WHERE unchanged), '[]'),
      'blank', coalesce(jsonb_agg(row_id) FILTER (WHERE NOT gone AND NOT unchanged AND coalesce(content, '') !~ '\S'), '[]'),
      'items', coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'content', content, 'hash', hash))
                 FILTER (WHERE NOT gone AND NOT unchanged AND coalesce(content, '') ~ '\S'), '[]'),
      'failed', '[]'::jsonb)
      FROM j
  $q$, t.id_column, t.embedding_column, t.content_sql, p_rel, t.id_type);
  v_out jsonb;
  v_one jsonb;
  v_failed jsonb := '[]';
  v_parts jsonb[] := '{}';
BEGIN
  BEGIN
    EXECUTE v_sql INTO v_out USING p_ids, p_old_hashes, p_old_models, t.model;
    RETURN v_out;
  EXCEPTION WHEN data_exception THEN
    NULL;
  END;
  FOR i IN 1 .. cardinality(p_ids) LOOP
    BEGIN
      EXECUTE v_sql INTO v_one USING ARRAY[p_ids[i]], ARRAY[p_old_hashes[i]], ARRAY[p_old_models[i]], t.model;
      v_parts := v_parts || v_one;
    EXCEPTION WHEN data_exception THEN
      v_failed := v_failed || jsonb_build_object('id', p_ids[i], 'error', 'content expression failed: ' || SQLERRM);
    END;
  END LOOP;
  SELECT jsonb_build_object(
      'gone', coalesce(jsonb_agg(e) FILTER (WHERE k = 'gone'), '[]'),
      'unchanged', coalesce(jsonb_agg(e) FILTER (WHERE k = 'unchanged'), '[]'),
      'blank', coalesce(jsonb_agg(e) FILTER (WHERE k = 'blank'), '[]'),
      'items', coalesce(jsonb_agg(e) FILTER (WHERE k = 'items'), '[]'),
      'failed', v_failed)
    INTO v_out
    FROM unnest(v_parts) AS p(part), LATERAL jsonb_each(p.part) AS kv(k, arr), LATERAL jsonb_array_elements(kv.arr) AS x(e)
   WHERE k <> 'failed';
  RETURN coalesce(v_out, jsonb_build_object('gone', '[]'::jsonb, 'unchanged', '[]'::jsonb, 'blank', '[]'::jsonb,
    'items', '[]'::jsonb, 'failed', v_failed)) || jsonb_build_object('failed', v_failed);
END $$;

-- Claims up to p_limit due items under a lease and returns their current content.
--   1. Leases that expired (a crashed worker) count as an attempt and become due again, or dead-letter.
--   2. Due items are taken with FOR UPDATE SKIP LOCKED: two workers never hold the same item. One
--      whose id is not a valid value of the key's type is dead-lettered instead of leased.
--   3. The source rows are read in one statement (embedding_read_claimed). Items whose row is gone
--      are deleted (never retried); unchanged ones are completed without a provider call; blank
--      content and content the expression fails on dead-letter.
CREATE OR REPLACE FUNCTION public.embedding_claim(
  p_target text,
  p_worker text,
  p_limit integer DEFAULT 20,
  p_lease_seconds integer DEFAULT 300
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
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
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'claim size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use a batch size of 1..10000';
  END IF;
  IF p_worker IS NULL OR length(p_worker) = 0 THEN
    RAISE EXCEPTION 'worker id is required' USING ERRCODE = '22023';
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
    SELECT row_id FROM public.embedding_items
     WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()
     ORDER BY priority DESC, next_retry_at
     LIMIT p_limit
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
    RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', v_expired, 'deleted', 0, 'skipped', 0, 'empty', v_invalid);
  END IF;

  v_read := public.embedding_read_claimed(t, v_rel, v_ids, v_old_hashes, v_old_models);
  SELECT coalesce(array_agg(x), '{}') INTO v_gone FROM jsonb_array_elements_text(v_read -> 'gone') AS x;
  SELECT coalesce(array_agg(x), '{}') INTO v_unchanged FROM jsonb_array_elements_text(v_read -> 'unchanged') AS x;
  SELECT coalesce(array_agg(x), '{}') INTO v_blank FROM jsonb_array_elements_text(v_read -> 'blank') AS x;
  v_failed := v_read -> 'failed';

  -- Rows gone from the source: end their state.
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

  RETURN jsonb_build_object('items', v_read -> 'items', 'expired', v_expired, 'deleted', cardinality(v_gone),
    'skipped', cardinality(v_unchanged), 'empty', cardinality(v_blank) + jsonb_array_length(v_failed) + v_invalid);
END $$;

-- Stores a batch of embeddings in one UPDATE of the source table. A row is written only if
--   * this worker still holds its lease, and
--   * no other transaction holds the source row (a user editing it right now: their trigger queues
--     it again at commit) or its state, and
--   * the row's content, re-read inside the UPDATE, still hashes to what was embedded.
-- Rows edited mid-flight are queued again instead of being overwritten with a stale vector; rows
-- gone from the source end their state. Vectors arrive as pgvector text literals '[x,y,...]'.
CREATE OR REPLACE FUNCTION public.embedding_write(
  p_target text,
  p_worker text,
  p_ids text[],
  p_hashes text[],
  p_vectors text[],
  p_tokens integer[] DEFAULT NULL,
  p_truncated boolean[] DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass;
  v_n integer := coalesce(cardinality(p_ids), 0);
  v_leased text[];
  v_lockable text[];
  v_written text[];
  v_bad_id text;
  v_bad_dims integer;
  v_stale integer := 0;
  v_gone integer := 0;
  v_busy text[] := '{}';
  v_parse_sql text;
  v_dims_sql text;
BEGIN
  IF v_n = 0 THEN
    RETURN jsonb_build_object('written', 0, 'stale', 0, 'gone', 0, 'notLeased', 0, 'busy', '[]'::jsonb);
  END IF;
  IF cardinality(p_hashes) <> v_n OR cardinality(p_vectors) <> v_n
     OR (p_tokens IS NOT NULL AND cardinality(p_tokens) <> v_n)
     OR (p_truncated IS NOT NULL AND cardinality(p_truncated) <> v_n) THEN
    RAISE EXCEPTION 'write batch arrays differ in length (ids %, hashes %, vectors %)', v_n, cardinality(p_hashes), cardinality(p_vectors)
      USING ERRCODE = '22023';
  END IF;
  v_rel := public.embedding_require_relation(t);
  PERFORM public.embedding_assert_access(t, v_rel, true);
  -- Each vector is parsed once, in the UPDATE statement, and its dimension taken from the parsed
  -- value: rows of the wrong size are never written, and the first of them is reported below, which
  -- rolls the whole call back: nothing of a batch with a wrong-size vector is kept, and no separate
  -- text pass counts commas in every vector.
  -- '[x,y]' -> '{x,y}' for array columns: two replace() calls, a tenth of the cost of translate().
  v_parse_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                      THEN format('x.vec::%s', t.embedding_type_sql)
                      ELSE format('replace(replace(x.vec, ''['', ''{''), '']'', ''}'')::%s', t.embedding_type_sql) END;
  -- pgvector casts vector and halfvec to real[] (no parsing); arrays count themselves.
  v_dims_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                     THEN 'coalesce(cardinality(b."__embedding_sync_vec"::real[]), 0)'
                     ELSE 'coalesce(cardinality(b."__embedding_sync_vec"), 0)' END;

  -- Lease first (state rows locked in a fixed order, skipping any another transaction holds), then
  -- the source rows (skipping any a user transaction holds), then the source UPDATE of exactly
  -- those: nothing here waits on a user. Each statement is planned for its arrays (EXECUTE): in one
  -- statement the planner, misled by stale statistics on the leased rows, joined them to the batch in
  -- a nested loop that re-read every parsed vector once per row.
  v_leased := public.embedding_lock_leased(t.id, p_worker, p_ids);

  EXECUTE format($q$
    SELECT coalesce(array_agg(s.%1$I::text), '{}') FROM (
      SELECT s.%1$I FROM %2$s AS s WHERE s.%1$I = ANY ($1::%3$s[]) ORDER BY s.%1$I FOR UPDATE OF s SKIP LOCKED) AS s
  $q$, t.id_column, v_rel, t.id_type) INTO v_lockable USING v_leased;

  BEGIN
    EXECUTE format($q$
      WITH sized AS MATERIALIZED (
        -- OFFSET 0 keeps the parse in its own subquery: inlined, it would run once per reference.
        SELECT x.k, x.id AS "__embedding_sync_id", x.hash AS "__embedding_sync_hash",
               b."__embedding_sync_vec", %7$s AS "__embedding_sync_dims"
          FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(id, hash, vec, k)
         CROSS JOIN LATERAL (SELECT %3$s AS "__embedding_sync_vec" OFFSET 0) AS b
      ), w AS (
        UPDATE %1$s AS s SET %2$I = u."__embedding_sync_vec"
          FROM sized AS u
         WHERE s.%4$I = u."__embedding_sync_id"::%5$s
           AND u."__embedding_sync_id" = ANY ($4::text[])
           AND u."__embedding_sync_dims" = $5
           AND md5((%6$s)::text) = u."__embedding_sync_hash"
        RETURNING s.%4$I::text AS row_id
      ), bad AS (
        SELECT "__embedding_sync_id" AS id, "__embedding_sync_dims" AS dims FROM sized
         WHERE "__embedding_sync_dims" <> $5 ORDER BY k LIMIT 1
      )
      SELECT (SELECT coalesce(array_agg(row_id), '{}') FROM w), (SELECT id FROM bad), (SELECT dims FROM bad)
    $q$, v_rel, t.embedding_column, v_parse_sql, t.id_column, t.id_type, t.content_sql, v_dims_sql)
    INTO v_written, v_bad_id, v_bad_dims USING p_ids, p_hashes, p_vectors, v_lockable, t.dimensions;
  EXCEPTION WHEN data_exception THEN
    -- A vector that does not parse (or another bad value). A wrong size is still reported as such,
    -- as a size check ahead of parsing would: counted in the text, an empty literal has 0 dimensions.
    SELECT p_ids[array_lower(p_ids, 1) + u.k - 1],
           CASE WHEN btrim(u.v, '[] ') = '' THEN 0 ELSE octet_length(u.v) - octet_length(replace(u.v, ',', '')) + 1 END
      INTO v_bad_id, v_bad_dims
      FROM unnest(p_vectors) WITH ORDINALITY AS u(v, k)
     WHERE octet_length(u.v) - octet_length(replace(u.v, ',', '')) + 1 <> t.dimensions
        OR (t.dimensions = 1 AND btrim(u.v, '[] ') = '')
     ORDER BY u.k
     LIMIT 1;
    IF v_bad_dims IS NULL THEN
      RAISE;
    END IF;
  END;
  -- Dimension check with both numbers in the message (384 vs 1536 is the classic); raising here undoes
  -- the UPDATE.
  IF v_bad_dims IS NOT NULL THEN
    RAISE EXCEPTION 'target "%": expected % dimensions, got % (row %)', t.name, t.dimensions, v_bad_dims, v_bad_id
      USING ERRCODE = '22000', HINT = format('configure the provider for %s dimensions, or alter the column to the model''s dimension', t.dimensions);
  END IF;

  -- EXECUTE, so the plan is made for these arrays: a cached generic plan guesses 10 rows per
  -- unnest() and joined the batch with itself in a nested loop. Only rows this worker holds (all
  -- written rows are), so whatever index is picked, it reads the leased rows, not the whole target.
  EXECUTE $q$
    UPDATE public.embedding_items i
       SET status = 'completed', content_hash = u.hash, model = $3, tokens = u.tokens,
           truncated = coalesce(u.truncated, false), attempts = 0, locked_until = NULL, worker_id = NULL,
           last_error = NULL, error_kind = NULL, embedded_at = now(), updated_at = now()
      FROM unnest($4::text[], $5::text[], $6::integer[], $7::boolean[]) AS u(id, hash, tokens, truncated)
     WHERE i.target_id = $1 AND i.row_id = u.id AND i.row_id = ANY ($8::text[])
       AND i.status = 'processing' AND i.worker_id = $2
  $q$ USING t.id, p_worker, t.model, p_ids, p_hashes,
      coalesce(p_tokens, array_fill(NULL::integer, ARRAY[v_n])),
      coalesce(p_truncated, array_fill(false, ARRAY[v_n])), v_written;

  -- Leased but not written: the row is gone (end its state), its content changed, or a user holds it
  -- right now (queue it again either way; a user's edit queues it at commit anyway). Rows whose state
  -- another transaction holds are left alone (`busy`): whoever holds them decides.
  IF cardinality(v_written) < v_n THEN
    EXECUTE format($q$
      WITH gone AS (
        DELETE FROM public.embedding_items i
         WHERE i.target_id = $1 AND i.row_id = ANY ($2) AND NOT (i.row_id = ANY ($3)) AND NOT (i.row_id = ANY ($5))
           AND i.status = 'processing' AND i.worker_id = $4
           AND NOT EXISTS (SELECT 1 FROM %1$s s WHERE s.%2$I = i.row_id::%3$s)
        RETURNING 1
      ) SELECT count(*) FROM gone
    $q$, v_rel, t.id_column, t.id_type)
    INTO v_gone USING t.id, v_leased, v_written, p_worker, v_lockable;

    WITH stale AS (
      UPDATE public.embedding_items i
         SET status = 'pending', next_retry_at = now(), locked_until = NULL, worker_id = NULL, updated_at = now()
       WHERE i.target_id = t.id AND i.row_id = ANY (v_leased) AND NOT (i.row_id = ANY (v_written))
         AND i.status = 'processing' AND i.worker_id = p_worker
      RETURNING 1
    ) SELECT count(*) INTO v_stale FROM stale;
  END IF;

  -- Rows still leased to this worker that another transaction holds right now: left for the caller
  -- to write again in a moment (the holder is usually another worker's claim, done in milliseconds)
  -- or to leave to a user's edit, which queues them again when it commits.
  SELECT coalesce(array_agg(i.row_id), '{}') INTO v_busy FROM public.embedding_items i
   WHERE i.target_id = t.id AND i.row_id = ANY (p_ids) AND NOT (i.row_id = ANY (v_leased))
     AND i.status = 'processing' AND i.worker_id = p_worker;
  RETURN jsonb_build_object('written', cardinality(v_written), 'stale', v_stale, 'gone', v_gone,
    'busy', to_jsonb(v_busy), 'notLeased', v_n - cardinality(v_leased) - cardinality(v_busy));
END $$;

-- Records per-row failures. Permanent ones (the provider rejects the input) dead-letter at once;
-- transient ones back off per the target's schedule (30 s, 90 s, 270 s by default) and dead-letter
-- after max_attempts with the last error kept. A row a user's transaction holds is left to it
-- (embedding_lock_leased).
CREATE OR REPLACE FUNCTION public.embedding_fail(
  p_target text,
  p_worker text,
  p_ids text[],
  p_errors text[],
  p_permanent boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_failed integer;
  v_dead integer;
BEGIN
  WITH u AS (
    SELECT * FROM unnest(p_ids, p_errors) AS x(id, err)
  ), held AS (
    SELECT unnest(public.embedding_lock_leased(t.id, p_worker, p_ids)) AS row_id
  ), upd AS (
    UPDATE public.embedding_items i
       SET attempts = i.attempts + 1,
           status = CASE WHEN p_permanent OR i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'failed' END,
           error_kind = CASE WHEN p_permanent THEN 'permanent' ELSE 'transient' END,
           last_error = left(coalesce(u.err, 'unknown error'), 2000),
           next_retry_at = now() + make_interval(secs => t.backoff_seconds[least(i.attempts + 1, cardinality(t.backoff_seconds))]),
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM u JOIN held h ON h.row_id = u.id
     WHERE i.target_id = t.id AND i.row_id = u.id
    RETURNING i.status
  )
  SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'dead_letter')
    INTO v_failed, v_dead FROM upd;
  RETURN jsonb_build_object('failed', v_failed, 'deadLettered', v_dead);
END $$;

-- Gives leased items back without counting an attempt: a transient batch-wide failure (the provider
-- is down), a cancellation, or Ctrl-C. p_ids NULL releases everything this worker holds. A row a
-- user's transaction holds is left to it (embedding_lock_leased).
CREATE OR REPLACE FUNCTION public.embedding_release(
  p_target text,
  p_worker text,
  p_ids text[] DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  WITH held AS (
    SELECT unnest(public.embedding_lock_leased(t.id, p_worker, coalesce(p_ids,
      (SELECT array_agg(row_id) FROM public.embedding_items
        WHERE target_id = t.id AND status = 'processing' AND worker_id = p_worker)))) AS row_id
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM held h WHERE i.target_id = t.id AND i.row_id = h.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('released', v_n);
END $$;

-- Releases every lease on a target whose holder matches a prefix (a cancelled job's workers).
CREATE OR REPLACE FUNCTION public.embedding_release_prefix(p_target text, p_worker_prefix text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
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
       SET status = CASE WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM held h WHERE i.target_id = t.id AND i.row_id = h.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('released', v_n);
END $$;

-- Forces a retry: of given rows, of every dead letter, or only of dead letters whose failure was
-- transient (the recovery sweep). Attempts start again from zero. Ids that are not valid values of
-- the key's type are reported, not matched.
CREATE OR REPLACE FUNCTION public.embedding_retry(
  p_target text,
  p_ids text[] DEFAULT NULL,
  p_dead_letter_only boolean DEFAULT true,
  p_transient_only boolean DEFAULT false,
  p_limit integer DEFAULT 1000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
  v_invalid jsonb;
BEGIN
  SELECT coalesce(jsonb_agg(id), '[]') INTO v_invalid FROM unnest(p_ids) AS id
   WHERE NOT public.embedding_valid_id(t.id_type, id);
  WITH pick AS (
    SELECT row_id FROM public.embedding_items
     WHERE target_id = t.id
       AND (p_ids IS NULL OR row_id = ANY (p_ids))
       AND (CASE WHEN p_dead_letter_only THEN status = 'dead_letter' ELSE status IN ('failed', 'dead_letter', 'completed') END)
       AND (NOT p_transient_only OR error_kind = 'transient')
     ORDER BY row_id
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL,
           content_hash = CASE WHEN i.status = 'completed' THEN NULL ELSE i.content_hash END, updated_at = now()
      FROM pick WHERE i.target_id = t.id AND i.row_id = pick.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('requeued', v_n, 'invalid', v_invalid);
END $$;

-- Marks given rows due now (the embeddings/rows.changed event): rows not yet tracked start being
-- tracked; tracked rows keep their content hash, so a row whose content did not really change is
-- completed at claim time without a provider call. Ids that are not valid values of the key's type
-- are reported back and never stored.
CREATE OR REPLACE FUNCTION public.embedding_mark_pending(p_target text, p_ids text[])
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
  v_invalid jsonb;
BEGIN
  IF cardinality(p_ids) > 10000 THEN
    RAISE EXCEPTION 'too many ids (%) in one call', cardinality(p_ids) USING ERRCODE = '22023', HINT = 'send at most 10000 ids per event';
  END IF;
  SELECT coalesce(jsonb_agg(id ORDER BY k), '[]') INTO v_invalid FROM unnest(p_ids) WITH ORDINALITY AS x(id, k)
   WHERE NOT public.embedding_valid_id(t.id_type, id);
  WITH ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts)
    SELECT DISTINCT t.id, id, 'pending', t.max_attempts FROM unnest(p_ids) AS id
     WHERE public.embedding_valid_id(t.id_type, id)
    ON CONFLICT (target_id, row_id) DO UPDATE
      SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL, updated_at = now()
      WHERE i.status <> 'processing'
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM ins;
  RETURN jsonb_build_object('marked', v_n, 'invalid', v_invalid);
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201100200', 'safety_queue_api')
ON CONFLICT (version) DO NOTHING;
