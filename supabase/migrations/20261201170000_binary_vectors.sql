-- Binary vectors on the direct transport (issue 15). The three functions that take vectors
-- (embedding_write, embedding_write_counted, embedding_chunk_write) also accept them as one real[]
-- holding every vector of the batch (`p_vectors_f4`, sent by node-postgres as a binary parameter:
-- floats copied, not parsed from decimal text) with each vector's length (`p_vectors_dims`). Text
-- vectors (`p_vectors`) still work, for PGlite and supabase-js (PostgREST's JSON) and for workers
-- of the previous release during a deploy: every argument after p_worker keeps its name and gains a
-- default, so their named calls resolve to the new signatures.
-- Every check is where it was: lease, content hash, dimension (now also: the lengths add up to the
-- floats sent), never an INSERT into the user's table; pgvector's real[] -> vector/halfvec cast
-- refuses NaN and infinities as its text input does.

-- New signatures replace the old ones (an overload beside them would make named calls ambiguous).
DROP FUNCTION IF EXISTS public.embedding_write_counted(text, text, text[], text[], text[], integer[], boolean[], jsonb);
DROP FUNCTION IF EXISTS public.embedding_write(text, text, text[], text[], text[], integer[], boolean[]);
DROP FUNCTION IF EXISTS public.embedding_chunk_write(text, text, text[], integer[], text[], text[], integer[]);

CREATE OR REPLACE FUNCTION public.embedding_write(
  p_target text,
  p_worker text,
  p_ids text[],
  p_hashes text[],
  p_vectors text[] DEFAULT NULL,
  p_tokens integer[] DEFAULT NULL,
  p_truncated boolean[] DEFAULT NULL,
  p_vectors_f4 real[] DEFAULT NULL,
  p_vectors_dims integer[] DEFAULT NULL
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
  v_binary boolean := p_vectors_f4 IS NOT NULL OR p_vectors_dims IS NOT NULL;
  v_offsets integer[];
  v_rows_sql text;
BEGIN
  IF v_n = 0 THEN
    RETURN jsonb_build_object('written', 0, 'stale', 0, 'gone', 0, 'notLeased', 0, 'busy', '[]'::jsonb);
  END IF;
  IF v_binary AND p_vectors IS NOT NULL THEN
    RAISE EXCEPTION 'write batch has vectors as text and as binary: send one (p_vectors, or p_vectors_f4 with p_vectors_dims)'
      USING ERRCODE = '22023';
  END IF;
  IF cardinality(p_hashes) <> v_n
     OR (CASE WHEN v_binary THEN coalesce(cardinality(p_vectors_dims), 0) ELSE coalesce(cardinality(p_vectors), 0) END) <> v_n
     OR (p_tokens IS NOT NULL AND cardinality(p_tokens) <> v_n)
     OR (p_truncated IS NOT NULL AND cardinality(p_truncated) <> v_n) THEN
    RAISE EXCEPTION 'write batch arrays differ in length (ids %, hashes %, vectors %)', v_n, cardinality(p_hashes),
      CASE WHEN v_binary THEN cardinality(p_vectors_dims) ELSE cardinality(p_vectors) END
      USING ERRCODE = '22023';
  END IF;
  IF v_binary THEN
    -- Binary: every vector of the batch in one real[] (p_vectors_f4), row k being the p_vectors_dims[k]
    -- floats after the lengths of the rows before it. The lengths must add up to the floats sent, so
    -- no slice reads past its own row.
    SELECT array_agg(s.total - s.len ORDER BY s.k) INTO v_offsets FROM (
      SELECT u.len, u.k, sum(u.len) OVER (ORDER BY u.k) AS total
        FROM unnest(p_vectors_dims) WITH ORDINALITY AS u(len, k)) AS s;
    IF EXISTS (SELECT 1 FROM unnest(p_vectors_dims) AS u(len) WHERE u.len IS NULL OR u.len < 0)
       OR (SELECT sum(u.len) FROM unnest(p_vectors_dims) AS u(len)) <> coalesce(cardinality(p_vectors_f4), 0) THEN
      RAISE EXCEPTION 'write batch vector lengths add up to %, but % floats were sent',
        (SELECT sum(u.len) FROM unnest(p_vectors_dims) AS u(len)), coalesce(cardinality(p_vectors_f4), 0)
        USING ERRCODE = '22023';
    END IF;
  END IF;
  v_rel := public.embedding_require_relation(t);
  PERFORM public.embedding_assert_access(t, v_rel, true);
  -- Each vector is parsed once, in the UPDATE statement, and its dimension taken from the parsed
  -- value: rows of the wrong size are never written, and the first of them is reported below, which
  -- rolls the whole call back: nothing of a batch with a wrong-size vector is kept, and no separate
  -- text pass counts commas in every vector.
  -- '[x,y]' -> '{x,y}' for array columns: two replace() calls, a tenth of the cost of translate().
  -- Binary: a slice of the float4 array (a copy, no parsing), cast to the column's type (pgvector's
  -- real[] -> vector / halfvec cast copies the floats and checks them); its length was sent with it.
  IF v_binary THEN
    v_rows_sql := 'unnest($1::text[], $2::text[], $6::integer[], $7::integer[]) WITH ORDINALITY AS x(id, hash, len, off, k)';
    v_parse_sql := format('($8::real[])[x.off + 1 : x.off + x.len]::%s', t.embedding_type_sql);
    v_dims_sql := 'x.len';
  ELSE
    v_rows_sql := 'unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(id, hash, vec, k)';
    v_parse_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                        THEN format('x.vec::%s', t.embedding_type_sql)
                        ELSE format('replace(replace(x.vec, ''['', ''{''), '']'', ''}'')::%s', t.embedding_type_sql) END;
    -- pgvector casts vector and halfvec to real[] (no parsing); arrays count themselves.
    v_dims_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                       THEN 'coalesce(cardinality(b."__embedding_sync_vec"::real[]), 0)'
                       ELSE 'coalesce(cardinality(b."__embedding_sync_vec"), 0)' END;
  END IF;

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
          FROM %8$s
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
    $q$, v_rel, t.embedding_column, v_parse_sql, t.id_column, t.id_type, t.content_sql, v_dims_sql, v_rows_sql)
    INTO v_written, v_bad_id, v_bad_dims
    USING p_ids, p_hashes, p_vectors, v_lockable, t.dimensions, p_vectors_dims, v_offsets, p_vectors_f4;
  EXCEPTION WHEN data_exception THEN
    IF v_binary THEN
      -- Binary vectors always parse; a wrong length is reported as such, anything else (a NaN or an
      -- infinity pgvector refuses) as it was raised.
      SELECT p_ids[array_lower(p_ids, 1) + u.k - 1], u.len INTO v_bad_id, v_bad_dims
        FROM unnest(p_vectors_dims) WITH ORDINALITY AS u(len, k)
       WHERE u.len <> t.dimensions ORDER BY u.k LIMIT 1;
      IF v_bad_dims IS NULL THEN
        RAISE;
      END IF;
    ELSE
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

CREATE OR REPLACE FUNCTION public.embedding_write_counted(
  p_target text,
  p_worker text,
  p_ids text[],
  p_hashes text[],
  p_vectors text[] DEFAULT NULL,
  p_tokens integer[] DEFAULT NULL,
  p_truncated boolean[] DEFAULT NULL,
  p_progress jsonb DEFAULT NULL,
  p_vectors_f4 real[] DEFAULT NULL,
  p_vectors_dims integer[] DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  v_w jsonb := public.embedding_write(p_target, p_worker, p_ids, p_hashes, p_vectors, p_tokens, p_truncated,
                                       p_vectors_f4, p_vectors_dims);
  v_p jsonb;
  g jsonb := coalesce(p_progress, '{}'::jsonb);
BEGIN
  v_p := public.increment_embedding_job_progress(
    job_id => (g ->> 'job_id')::uuid,
    increment_count => coalesce((g ->> 'increment_count')::integer, 0) + (v_w ->> 'written')::integer,
    failed_count => coalesce((g ->> 'failed_count')::integer, 0),
    skipped_count => coalesce((g ->> 'skipped_count')::integer, 0),
    token_count => coalesce((g ->> 'token_count')::bigint, 0),
    request_count => coalesce((g ->> 'request_count')::integer, 0),
    dead_lettered_count => (g ->> 'dead_lettered_count')::integer,
    retried_count => (g ->> 'retried_count')::integer,
    rate_limited_count => (g ->> 'rate_limited_count')::integer,
    latency_ms => (g ->> 'latency_ms')::bigint,
    latency_count => (g ->> 'latency_count')::integer,
    history_target => CASE WHEN g ->> 'job_id' IS NULL THEN p_target END,
    history_days => (g ->> 'history_days')::integer,
    pending_summary => coalesce((g ->> 'pending_summary')::boolean, false));
  RETURN v_w || jsonb_build_object('progress', v_p);
END $$;

CREATE OR REPLACE FUNCTION public.embedding_chunk_write(
  p_target text,
  p_worker text,
  p_ids text[],
  p_indexes integer[],
  p_hashes text[],
  p_vectors text[] DEFAULT NULL,
  p_tokens integer[] DEFAULT NULL,
  p_vectors_f4 real[] DEFAULT NULL,
  p_vectors_dims integer[] DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_n integer := coalesce(cardinality(p_ids), 0);
  v_written integer;
  v_docs text[];
  v_bad_id text;
  v_bad_index integer;
  v_bad_dims integer;
  v_ready jsonb;
  v_binary boolean := p_vectors_f4 IS NOT NULL OR p_vectors_dims IS NOT NULL;
  v_offsets integer[];
BEGIN
  IF v_n = 0 THEN
    RETURN jsonb_build_object('written', 0, 'stale', 0, 'ready', '[]'::jsonb);
  END IF;
  IF v_binary AND p_vectors IS NOT NULL THEN
    RAISE EXCEPTION 'chunk write has vectors as text and as binary: send one (p_vectors, or p_vectors_f4 with p_vectors_dims)'
      USING ERRCODE = '22023';
  END IF;
  IF cardinality(p_indexes) <> v_n OR cardinality(p_hashes) <> v_n
     OR (CASE WHEN v_binary THEN coalesce(cardinality(p_vectors_dims), 0) ELSE coalesce(cardinality(p_vectors), 0) END) <> v_n
     OR (p_tokens IS NOT NULL AND cardinality(p_tokens) <> v_n) THEN
    RAISE EXCEPTION 'chunk write arrays differ in length (ids %, indexes %, hashes %, vectors %)', v_n,
      cardinality(p_indexes), cardinality(p_hashes),
      CASE WHEN v_binary THEN cardinality(p_vectors_dims) ELSE cardinality(p_vectors) END USING ERRCODE = '22023';
  END IF;
  IF v_binary THEN
    -- As in embedding_write: row k is the p_vectors_dims[k] floats after the rows before it.
    SELECT array_agg(s.total - s.len ORDER BY s.k) INTO v_offsets FROM (
      SELECT u.len, u.k, sum(u.len) OVER (ORDER BY u.k) AS total
        FROM unnest(p_vectors_dims) WITH ORDINALITY AS u(len, k)) AS s;
    IF EXISTS (SELECT 1 FROM unnest(p_vectors_dims) AS u(len) WHERE u.len IS NULL OR u.len < 0)
       OR (SELECT sum(u.len) FROM unnest(p_vectors_dims) AS u(len)) <> coalesce(cardinality(p_vectors_f4), 0) THEN
      RAISE EXCEPTION 'chunk write vector lengths add up to %, but % floats were sent',
        (SELECT sum(u.len) FROM unnest(p_vectors_dims) AS u(len)), coalesce(cardinality(p_vectors_f4), 0)
        USING ERRCODE = '22023';
    END IF;
  END IF;
  BEGIN
    -- EXECUTE, so the float4 array is one parameter of the statement; text vectors are parsed as
    -- before.
    EXECUTE format($q$
    WITH parsed AS MATERIALIZED (
      SELECT x.id, x.idx, x.h, x.tokens, x.k, b.v, coalesce(cardinality(b.v), 0) AS dims
        FROM %1$s
       CROSS JOIN LATERAL (SELECT %2$s AS v OFFSET 0) AS b
    ), upd AS (
      UPDATE public.embedding_chunks k
         SET vector = p.v, status = 'completed', tokens = coalesce(p.tokens, k.tokens), attempts = 0,
             locked_until = NULL, worker_id = NULL, last_error = NULL, error_kind = NULL, updated_at = now()
        FROM parsed p
       WHERE k.target_id = $1 AND k.row_id = p.id AND k.chunk_index = p.idx AND k.content_hash = p.h
         AND k.status = 'processing' AND k.worker_id = $2 AND p.dims = $3
      RETURNING k.row_id
    ), bad AS (
      SELECT id, idx, dims FROM parsed WHERE dims <> $3 ORDER BY k LIMIT 1
    )
    SELECT (SELECT count(*) FROM upd), (SELECT array_agg(DISTINCT row_id) FROM upd),
           (SELECT id FROM bad), (SELECT idx FROM bad), (SELECT dims FROM bad)
    $q$,
      CASE WHEN v_binary
           THEN 'unnest($4::text[], $5::integer[], $6::text[], $9::integer[], $10::integer[], $8::integer[]) WITH ORDINALITY AS x(id, idx, h, len, off, tokens, k)'
           ELSE 'unnest($4::text[], $5::integer[], $6::text[], $7::text[], $8::integer[]) WITH ORDINALITY AS x(id, idx, h, vec, tokens, k)' END,
      CASE WHEN v_binary THEN '($11::real[])[x.off + 1 : x.off + x.len]'
           ELSE 'replace(replace(x.vec, ''['', ''{''), '']'', ''}'')::real[]' END)
      INTO v_written, v_docs, v_bad_id, v_bad_index, v_bad_dims
      USING t.id, p_worker, t.dimensions, p_ids, p_indexes, p_hashes, p_vectors,
            coalesce(p_tokens, array_fill(NULL::integer, ARRAY[v_n])), p_vectors_dims, v_offsets, p_vectors_f4;
  EXCEPTION WHEN data_exception THEN
    RAISE EXCEPTION 'target "%": a chunk vector is not a list of numbers (%)', t.name, SQLERRM USING ERRCODE = '22000';
  END;
  IF v_bad_dims IS NOT NULL THEN
    RAISE EXCEPTION 'target "%": expected % dimensions, got % (document %, chunk %)', t.name, t.dimensions, v_bad_dims, v_bad_id, v_bad_index
      USING ERRCODE = '22000', HINT = format('configure the provider for %s dimensions, or alter the column to the model''s dimension', t.dimensions);
  END IF;
  SELECT coalesce(jsonb_agg(i.row_id), '[]') INTO v_ready FROM public.embedding_items i
   WHERE i.target_id = t.id AND i.row_id = ANY (coalesce(v_docs, '{}')) AND i.status = 'chunked'
     AND NOT EXISTS (SELECT 1 FROM public.embedding_chunks k
                      WHERE k.target_id = i.target_id AND k.row_id = i.row_id AND k.doc_hash = i.chunk_hash
                        AND k.status <> 'completed');
  RETURN jsonb_build_object('written', v_written, 'stale', v_n - v_written, 'ready', v_ready);
END $$;


SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201170000', 'binary_vectors')
ON CONFLICT (version) DO NOTHING;
