-- Embedding sync: queue API (enqueue for backfill seeding, claim, write, fail, release, retry).
--
-- Invariants:
--   * The user's table is only ever UPDATEd (never INSERT/UPSERT), one statement per batch, and only
--     where the row's content still hashes to what was embedded.
--   * An item is processed only under a lease (status 'processing', worker_id, locked_until); every
--     write and failure checks the lease, so a worker whose lease expired cannot clobber a newer one.
--
-- Claim and write reach embedding_items through the primary key with `row_id = ANY (...)`, only among
-- rows this worker leased, so per-batch cost does not grow with the table (measured with
-- `npm run bench`; see bench/README.md for the numbers behind each formulation below).


-- Seeds per-row state for one keyset page of the source table (bounded work per call, so a
-- million-row table never needs one long statement that a statement timeout cancels).
-- Rows that already have an embedding are recorded as completed with the current content hash unless
-- p_reembed; rows already tracked keep their state unless p_reembed.
CREATE OR REPLACE FUNCTION public.embedding_enqueue(
  p_target text,
  p_after text DEFAULT NULL,
  p_limit integer DEFAULT 5000,
  p_reembed boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_result jsonb;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100000 THEN
    RAISE EXCEPTION 'enqueue page size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use 1..100000';
  END IF;
  EXECUTE format($q$
    WITH page AS (
      SELECT s.%1$I AS pk, s.%1$I::text AS row_id, s.%2$I IS NOT NULL AS has_embedding,
             md5((%3$s)::text) AS hash
        FROM %4$I.%5$I AS s
       WHERE $1::text IS NULL OR s.%1$I > $1::%6$s
       ORDER BY s.%1$I
       LIMIT $2
    ), ins AS (
      INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, content_hash, model, embedded_at)
      SELECT $3, p.row_id,
             CASE WHEN p.has_embedding AND NOT $4 THEN 'completed' ELSE 'pending' END,
             $5,
             CASE WHEN p.has_embedding AND NOT $4 THEN p.hash END,
             CASE WHEN p.has_embedding AND NOT $4 THEN $6 END,
             CASE WHEN p.has_embedding AND NOT $4 THEN now() END
        FROM page p
      ON CONFLICT (target_id, row_id) DO UPDATE
        SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL,
            updated_at = now()
        WHERE $4 AND i.status <> 'processing'
      RETURNING i.status
    )
    SELECT jsonb_build_object(
      'scanned', (SELECT count(*) FROM page),
      'queued', (SELECT count(*) FROM ins WHERE status = 'pending'),
      'alreadyEmbedded', (SELECT count(*) FROM ins WHERE status = 'completed'),
      'last', (SELECT row_id FROM page ORDER BY pk DESC LIMIT 1))
  $q$, t.id_column, t.embedding_column, t.content_sql, t.schema_name, t.table_name, t.id_type)
  INTO v_result
  USING p_after, p_limit, t.id, p_reembed, t.max_attempts, t.model;
  RETURN v_result || jsonb_build_object('done', (v_result ->> 'scanned')::integer < p_limit);
END $$;

-- Claims up to p_limit due items under a lease and returns their current content.
--   1. Leases that expired (a crashed worker) count as an attempt and become due again, or dead-letter.
--   2. Due items are taken with FOR UPDATE SKIP LOCKED: two workers never hold the same item.
--   3. The source rows are read in one statement. Items whose row is gone are deleted (never
--      retried); items whose content still hashes to what was embedded with the same model, and whose
--      embedding is present, are completed without a provider call; empty content dead-letters.
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
  v_old_hashes text[];
  v_old_models text[];
  v_expired integer;
  v_gone text[];
  v_unchanged text[];
  v_blank text[];
  v_items jsonb;
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

  -- The lease UPDATE hands back what the unchanged-content check needs: no second look at the items.
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
    RETURNING i.row_id, i.content_hash, i.model
  )
  SELECT coalesce(array_agg(row_id), '{}'), array_agg(content_hash), array_agg(model)
    INTO v_ids, v_old_hashes, v_old_models FROM upd;

  IF cardinality(v_ids) = 0 THEN
    RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', v_expired, 'deleted', 0, 'skipped', 0, 'empty', 0);
  END IF;

  -- One read of the source rows, by primary key, classifying every claimed id at once.
  EXECUTE format($q$
    WITH c AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS c(row_id, old_hash, old_model)
    ), s AS (
      SELECT s.%1$I::text AS row_id, (%5$s)::text AS content, s.%2$I IS NOT NULL AS has_embedding
        FROM %3$I.%4$I AS s
       WHERE s.%1$I = ANY ($1::%6$s[])
    ), j AS (
      SELECT c.row_id, s.content, md5(s.content) AS hash, s.row_id IS NULL AS gone,
             s.row_id IS NOT NULL AND c.old_hash IS NOT DISTINCT FROM md5(s.content)
               AND c.old_model IS NOT DISTINCT FROM $4 AND s.has_embedding AS unchanged
        FROM c LEFT JOIN s ON s.row_id = c.row_id
    )
    SELECT coalesce(array_agg(row_id) FILTER (WHERE gone), '{}'),
           coalesce(array_agg(row_id) FILTER (WHERE unchanged), '{}'),
           coalesce(array_agg(row_id) FILTER (WHERE NOT gone AND NOT unchanged AND coalesce(content, '') !~ '\S'), '{}'),
           coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'content', content, 'hash', hash))
                      FILTER (WHERE NOT gone AND NOT unchanged AND coalesce(content, '') ~ '\S'), '[]'::jsonb)
      FROM j
  $q$, t.id_column, t.embedding_column, t.schema_name, t.table_name, t.content_sql, t.id_type)
  INTO v_gone, v_unchanged, v_blank, v_items USING v_ids, v_old_hashes, v_old_models, t.model;

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

  RETURN jsonb_build_object('items', v_items, 'expired', v_expired, 'deleted', cardinality(v_gone),
    'skipped', cardinality(v_unchanged), 'empty', cardinality(v_blank));
END $$;

-- Stores a batch of embeddings in one UPDATE of the source table. A row is written only if
--   * this worker still holds its lease, and
--   * the row's content, re-read inside the UPDATE (so a concurrent edit is seen), still hashes to
--     what was embedded.
-- Rows edited mid-flight are re-queued instead of being overwritten with a stale vector; rows gone
-- from the source end their state. Vectors arrive as pgvector text literals '[x,y,...]'.
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
  v_leased text[];
  v_written text[];
  v_bad_id text;
  v_bad_dims integer;
  v_stale integer := 0;
  v_gone integer := 0;
  v_parse_sql text;
  v_dims_sql text;
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

  -- Lease first (items rows locked in a fixed order), then the source UPDATE: a concurrent content
  -- edit either committed before (its trigger re-queued the item, so the lease check drops it) or
  -- waits for us and re-queues the row afterwards. Two statements, each planned for its arrays
  -- (EXECUTE): in one statement the planner, misled by stale statistics on the leased rows, joined
  -- them to the batch in a nested loop that re-read every parsed vector once per row.
  EXECUTE $q$
    SELECT coalesce(array_agg(row_id), '{}') FROM (
      SELECT i.row_id FROM public.embedding_items i
       WHERE i.target_id = $1 AND i.row_id = ANY ($2::text[]) AND i.status = 'processing' AND i.worker_id = $3
       ORDER BY i.row_id
         FOR UPDATE) AS l
  $q$ INTO v_leased USING t.id, p_ids, p_worker;

  BEGIN
    EXECUTE format($q$
      WITH sized AS MATERIALIZED (
        -- OFFSET 0 keeps the parse in its own subquery: inlined, it would run once per reference.
        SELECT x.k, x.id AS "__embedding_sync_id", x.hash AS "__embedding_sync_hash",
               b."__embedding_sync_vec", %8$s AS "__embedding_sync_dims"
          FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(id, hash, vec, k)
         CROSS JOIN LATERAL (SELECT %4$s AS "__embedding_sync_vec" OFFSET 0) AS b
      ), w AS (
        UPDATE %1$I.%2$I AS s SET %3$I = u."__embedding_sync_vec"
          FROM sized AS u
         WHERE s.%5$I = u."__embedding_sync_id"::%6$s
           AND u."__embedding_sync_id" = ANY ($4::text[])
           AND u."__embedding_sync_dims" = $5
           AND md5((%7$s)::text) = u."__embedding_sync_hash"
        RETURNING s.%5$I::text AS row_id
      ), bad AS (
        SELECT "__embedding_sync_id" AS id, "__embedding_sync_dims" AS dims FROM sized
         WHERE "__embedding_sync_dims" <> $5 ORDER BY k LIMIT 1
      )
      SELECT (SELECT coalesce(array_agg(row_id), '{}') FROM w), (SELECT id FROM bad), (SELECT dims FROM bad)
    $q$, t.schema_name, t.table_name, t.embedding_column, v_parse_sql, t.id_column, t.id_type, t.content_sql, v_dims_sql)
    INTO v_written, v_bad_id, v_bad_dims USING p_ids, p_hashes, p_vectors, v_leased, t.dimensions;
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
  -- unnest() and, from the sixth batch on, joined the batch with itself in a nested loop (250,000
  -- comparisons for 500 rows, measured as the slowest statement of the write). Only rows this worker
  -- holds (all written rows are), so whatever index is picked, on statistics that may be stale right
  -- after a bulk seed, it reads the leased rows, not the whole target.
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

  -- Leased but not written: the row is gone (end its state) or its content changed (queue it again).
  -- When every row was written there is nothing of either.
  IF cardinality(v_written) < v_n THEN
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
  END IF;

  RETURN jsonb_build_object('written', cardinality(v_written), 'stale', v_stale, 'gone', v_gone,
    'notLeased', v_n - cardinality(v_written) - v_stale - v_gone);
END $$;

-- Records per-row failures. Permanent ones (the provider rejects the input) dead-letter at once;
-- transient ones back off per the target's schedule (30 s, 90 s, 270 s by default) and dead-letter
-- after max_attempts with the last error kept.
CREATE OR REPLACE FUNCTION public.embedding_fail(
  p_target text,
  p_worker text,
  p_ids text[],
  p_errors text[],
  p_permanent boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_failed integer;
  v_dead integer;
BEGIN
  WITH u AS (
    SELECT * FROM unnest(p_ids, p_errors) AS x(id, err)
  ), upd AS (
    UPDATE public.embedding_items i
       SET attempts = i.attempts + 1,
           status = CASE WHEN p_permanent OR i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'failed' END,
           error_kind = CASE WHEN p_permanent THEN 'permanent' ELSE 'transient' END,
           last_error = left(coalesce(u.err, 'unknown error'), 2000),
           next_retry_at = now() + make_interval(secs => t.backoff_seconds[least(i.attempts + 1, cardinality(t.backoff_seconds))]),
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM u
     WHERE i.target_id = t.id AND i.row_id = u.id AND i.status = 'processing' AND i.worker_id = p_worker
    RETURNING i.status
  )
  SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'dead_letter')
    INTO v_failed, v_dead FROM upd;
  RETURN jsonb_build_object('failed', v_failed, 'deadLettered', v_dead);
END $$;

-- Gives leased items back without counting an attempt: a transient batch-wide failure (the provider
-- is down), a cancellation, or Ctrl-C. p_ids NULL releases everything this worker holds.
CREATE OR REPLACE FUNCTION public.embedding_release(
  p_target text,
  p_worker text,
  p_ids text[] DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  WITH upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.status = 'processing' AND i.worker_id = p_worker
       AND (p_ids IS NULL OR i.row_id = ANY (p_ids))
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('released', v_n);
END $$;

-- Releases every lease on a target whose holder matches a prefix (a cancelled job's workers).
CREATE OR REPLACE FUNCTION public.embedding_release_prefix(p_target text, p_worker_prefix text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  IF coalesce(length(p_worker_prefix), 0) < 8 THEN
    RAISE EXCEPTION 'worker prefix too short' USING ERRCODE = '22023';
  END IF;
  WITH upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.status = 'processing' AND starts_with(i.worker_id, p_worker_prefix)
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('released', v_n);
END $$;

-- Forces a retry: of given rows, of every dead letter, or only of dead letters whose failure was
-- transient (the recovery sweep). Attempts start again from zero.
CREATE OR REPLACE FUNCTION public.embedding_retry(
  p_target text,
  p_ids text[] DEFAULT NULL,
  p_dead_letter_only boolean DEFAULT true,
  p_transient_only boolean DEFAULT false,
  p_limit integer DEFAULT 1000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
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
  RETURN jsonb_build_object('requeued', v_n);
END $$;

-- Marks given rows due now (the embeddings/rows.changed event): rows not yet tracked start being
-- tracked; tracked rows keep their content hash, so a row whose content did not really change is
-- completed at claim time without a provider call.
CREATE OR REPLACE FUNCTION public.embedding_mark_pending(p_target text, p_ids text[])
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  IF cardinality(p_ids) > 10000 THEN
    RAISE EXCEPTION 'too many ids (%) in one call', cardinality(p_ids) USING ERRCODE = '22023', HINT = 'send at most 10000 ids per event';
  END IF;
  WITH ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts)
    SELECT t.id, id, 'pending', t.max_attempts FROM unnest(p_ids) AS id
    ON CONFLICT (target_id, row_id) DO UPDATE
      SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL, updated_at = now()
      WHERE i.status <> 'processing'
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM ins;
  RETURN jsonb_build_object('marked', v_n);
END $$;

-- Whether anything is left to do for a target, from the partial indexes only: O(1) per call,
-- independent of table size (no COUNT(*) per batch).
CREATE OR REPLACE FUNCTION public.embedding_pending_summary(p_target text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  RETURN jsonb_build_object(
    'dueNow', EXISTS (SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()),
    -- The first row in claim order, not min(): a walk of the due index that stops at one row.
    -- With mixed priorities it is a wake-up hint, not the exact earliest time.
    'nextRetryAt', (SELECT next_retry_at FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'failed')
                     ORDER BY priority DESC, next_retry_at LIMIT 1),
    'inFlight', EXISTS (SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND status = 'processing'),
    'leaseExpiresAt', (SELECT max(locked_until) FROM public.embedding_items WHERE target_id = t.id AND status = 'processing'));
END $$;

-- Dead-lettered rows with their errors, newest first.
CREATE OR REPLACE FUNCTION public.embedding_dead_letters(p_target text, p_limit integer DEFAULT 100)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'error', last_error, 'errorKind', error_kind,
            'attempts', attempts, 'updatedAt', updated_at) ORDER BY updated_at DESC), '[]'::jsonb)
            FROM (SELECT * FROM public.embedding_items WHERE target_id = t.id AND status = 'dead_letter'
                   ORDER BY updated_at DESC LIMIT least(greatest(p_limit, 1), 1000)) d);
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261123010400', 'queue_api')
ON CONFLICT (version) DO NOTHING;
