-- Embedding sync: chunk mode, part 2: the queue API of chunked targets.
--
-- One batch of a chunked target: embedding_chunk_claim (due chunks, documents to cut when chunks do
-- not fill the batch, documents ready to swap) -> the worker cuts documents and
-- embedding_chunk_plan records their chunks, reusing every vector it already has -> the provider ->
-- embedding_chunk_write (vectors kept in embedding_chunks) -> embedding_chunk_swap_* for each
-- document whose chunks are all embedded. Leases, attempts, backoff and dead letters work per chunk
-- as they do per row; a chunk that dead-letters marks its document dead_letter with the reason.

-- The caller's rights on the chunk table: reading it always, writing it when p_write.
CREATE OR REPLACE FUNCTION public.embedding_chunk_assert(t public.embedding_targets, p_rel regclass, p_write boolean)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE v_caller text := public.embedding_caller();
BEGIN
  IF NOT has_table_privilege(v_caller, p_rel, 'SELECT')
     OR (p_write AND NOT (has_table_privilege(v_caller, p_rel, 'INSERT') AND has_table_privilege(v_caller, p_rel, 'UPDATE')
                          AND has_table_privilege(v_caller, p_rel, 'DELETE'))) THEN
    RAISE EXCEPTION 'role % may not % the chunk table %', v_caller, CASE WHEN p_write THEN 'write' ELSE 'read' END,
      public.embedding_relation_name(p_rel)
      USING ERRCODE = '42501', HINT = format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', public.embedding_relation_name(p_rel), v_caller);
  END IF;
END $$;

CREATE OR REPLACE FUNCTION public.embedding_chunk_target(p_target text)
RETURNS public.embedding_targets
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  IF t.chunk_table IS NULL THEN
    RAISE EXCEPTION 'target "%" is not chunked', t.name USING ERRCODE = '22023',
      HINT = 'register it with --chunks schema.chunk_table to embed its rows as chunks';
  END IF;
  RETURN t;
END $$;

-- Removes the chunks of documents that are gone or empty.
CREATE OR REPLACE FUNCTION public.embedding_chunk_delete_docs(t public.embedding_targets, p_rel regclass, p_ids text[])
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF coalesce(cardinality(p_ids), 0) = 0 THEN RETURN; END IF;
  EXECUTE format('DELETE FROM %s WHERE document_id = ANY ($1::%s[])', p_rel, t.id_type) USING p_ids;
END $$;

-- Claims work for one batch of a chunked target, in this order:
--   1. Expired leases of chunks and of documents being cut count as an attempt.
--   2. Due chunks of the current version of their document, up to p_limit, under a lease.
--   3. When those do not fill the batch: documents due to be cut (their content comes back; the
--      worker cuts them and calls embedding_chunk_plan). Gone documents lose their chunks, empty ones
--      end with none, unchanged ones complete without any work.
--   4. When the batch is not full either: documents whose chunks are all embedded but that no swap
--      finished (a crash between the write and the swap), for the worker to swap.
CREATE OR REPLACE FUNCTION public.embedding_chunk_claim(
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
    UPDATE public.embedding_jobs SET heartbeat_at = now() WHERE id = p_job AND status = 'running'
    RETURNING status INTO v_job_status;
    IF v_job_status IS NULL THEN
      SELECT status INTO v_job_status FROM public.embedding_jobs WHERE id = p_job;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
      END IF;
      RETURN jsonb_build_object('chunks', '[]'::jsonb, 'docs', '[]'::jsonb, 'ready', '[]'::jsonb, 'expired', 0,
        'deleted', 0, 'skipped', 0, 'empty', 0, 'jobStatus', v_job_status);
    END IF;
  END IF;
  v_rel := public.embedding_require_relation(t);
  v_crel := public.embedding_require_chunk_relation(t);
  PERFORM public.embedding_assert_access(t, v_rel, false);
  PERFORM public.embedding_chunk_assert(t, v_crel, true);

  -- 1. Expired leases.
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
  v_expired := v_expired + v_n;
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
  v_expired := v_expired + v_n;

  -- 2. Due chunks of documents whose chunk set is current (status 'chunked', same version). A
  --    document with a dead chunk keeps its other chunks going, so retrying that one chunk is all a
  --    person has to do.
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

  -- 3. Documents to cut.
  IF v_taken < p_limit THEN
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

  RETURN jsonb_build_object('chunks', v_chunks, 'docs', v_docs, 'ready', v_ready, 'expired', v_expired,
    'deleted', cardinality(v_gone), 'skipped', cardinality(v_unchanged),
    'empty', cardinality(v_blank), 'invalid', v_invalid + jsonb_array_length(v_failed), 'jobStatus', v_job_status);
END $$;

-- Records the chunks the worker cut from documents it holds, in pages (p_docs: [{id, hash, from,
-- chunks: [{content, tokens}], last}] under "pages"; a long document comes in several pages, each a bounded
-- statement). A chunk keeps a vector it already has, with no provider call: the chunk table holds
-- the same content at the same index (nothing to write at the swap), or at another index, or an
-- earlier version's embedded chunk had that content. With a document's last page its chunk set
-- becomes current (status 'chunked') and older versions' chunks go. Then up to p_take of the new
-- due chunks are leased to the worker for the same batch.
CREATE OR REPLACE FUNCTION public.embedding_chunk_plan(
  p_target text,
  p_worker text,
  p_docs jsonb,
  p_take integer DEFAULT 0,
  p_lease_seconds integer DEFAULT 300
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_crel regclass := public.embedding_require_chunk_relation(t);
  d record;
  v_job uuid;
  v_max integer;
  v_prio integer;
  v_planned integer := 0;
  v_reused integer := 0;
  v_n integer;
  v_r integer;
  v_current text[] := '{}';
  v_ready text[] := '{}';
  v_stale text[] := '{}';
  v_chunks jsonb := '[]';
BEGIN
  PERFORM public.embedding_chunk_assert(t, v_crel, true);
  FOR d IN SELECT * FROM jsonb_to_recordset(p_docs -> 'pages') AS x(id text, hash text, "from" integer, chunks jsonb, last boolean) LOOP
    UPDATE public.embedding_items i SET locked_until = now() + make_interval(secs => p_lease_seconds), updated_at = now()
     WHERE i.target_id = t.id AND i.row_id = d.id AND i.status = 'processing' AND i.worker_id = p_worker
    RETURNING i.job_id, i.max_attempts, i.priority INTO v_job, v_max, v_prio;
    IF NOT FOUND THEN
      v_stale := v_stale || d.id;
      CONTINUE;
    END IF;
    EXECUTE format($q$
      WITH new AS (
        SELECT $5 + (x.o - 1)::integer AS idx, x.c ->> 'content' AS content, md5(x.c ->> 'content') AS h,
               (x.c ->> 'tokens')::integer AS tokens
          FROM jsonb_array_elements($1) WITH ORDINALITY AS x(c, o)
      ), cur AS (
        SELECT c.chunk_index AS idx, md5(c.content) AS h FROM %1$s AS c WHERE c.document_id = $2::%2$s
      ), prev AS (
        SELECT DISTINCT ON (content_hash) content_hash AS h, vector FROM public.embedding_chunks
         WHERE target_id = $3 AND row_id = $2 AND doc_hash <> $4 AND status = 'completed' AND vector IS NOT NULL
         ORDER BY content_hash
      ), ins AS (
        INSERT INTO public.embedding_chunks AS k (target_id, row_id, doc_hash, chunk_index, content, content_hash, tokens,
            status, in_place, vector, max_attempts, job_id, priority)
        SELECT $3, $2, $4, n.idx, n.content, n.h, n.tokens,
               CASE WHEN same.idx IS NOT NULL OR moved.v IS NOT NULL OR prev.vector IS NOT NULL THEN 'completed' ELSE 'pending' END,
               same.idx IS NOT NULL,
               CASE WHEN same.idx IS NULL THEN coalesce(moved.v, prev.vector) END,
               $6, $7, $8
          FROM new n
          LEFT JOIN cur AS same ON same.idx = n.idx AND same.h = n.h
          LEFT JOIN LATERAL (
            SELECT c.%3$I::real[] AS v FROM %1$s AS c
             WHERE same.idx IS NULL AND c.document_id = $2::%2$s
               AND c.chunk_index = (SELECT o.idx FROM cur AS o WHERE o.h = n.h ORDER BY o.idx LIMIT 1)
          ) AS moved ON true
          LEFT JOIN prev ON prev.h = n.h AND same.idx IS NULL AND moved.v IS NULL
        ON CONFLICT (target_id, row_id, doc_hash, chunk_index) DO UPDATE
          SET status = CASE WHEN k.status IN ('completed', 'processing') THEN k.status ELSE 'pending' END,
              attempts = CASE WHEN k.status = 'completed' THEN k.attempts ELSE 0 END,
              next_retry_at = now(), last_error = NULL, error_kind = NULL, job_id = EXCLUDED.job_id, updated_at = now()
        RETURNING k.status
      ) SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM ins
    $q$, v_crel, t.id_type, t.chunk_embedding_column)
    INTO v_n, v_r USING d.chunks, d.id, t.id, d.hash, coalesce(d."from", 0), v_max, v_job, v_prio;
    v_planned := v_planned + v_n;
    v_reused := v_reused + v_r;
    IF coalesce(d.last, true) THEN
      DELETE FROM public.embedding_chunks WHERE target_id = t.id AND row_id = d.id AND doc_hash <> d.hash;
      UPDATE public.embedding_items i
         SET status = 'chunked', chunk_hash = d.hash,
             chunk_count = coalesce(d."from", 0) + jsonb_array_length(d.chunks),
             locked_until = NULL, worker_id = NULL, updated_at = now()
       WHERE i.target_id = t.id AND i.row_id = d.id;
      v_current := v_current || d.id;
      IF NOT EXISTS (SELECT 1 FROM public.embedding_chunks k
                      WHERE k.target_id = t.id AND k.row_id = d.id AND k.doc_hash = d.hash AND k.status <> 'completed') THEN
        v_ready := v_ready || d.id;
      END IF;
    END IF;
  END LOOP;

  IF coalesce(p_take, 0) > 0 AND cardinality(v_current) > 0 THEN
    WITH due AS (
      SELECT k.row_id, k.doc_hash, k.chunk_index FROM public.embedding_chunks k
        JOIN public.embedding_items i ON i.target_id = k.target_id AND i.row_id = k.row_id
       WHERE k.target_id = t.id AND k.row_id = ANY (v_current) AND k.status = 'pending'
         AND i.status = 'chunked' AND i.chunk_hash = k.doc_hash
       ORDER BY k.row_id, k.chunk_index
       LIMIT p_take
         FOR UPDATE OF k SKIP LOCKED
    ), upd AS (
      UPDATE public.embedding_chunks k
         SET status = 'processing', locked_until = now() + make_interval(secs => p_lease_seconds), worker_id = p_worker,
             updated_at = now()
        FROM due AS u
       WHERE k.target_id = t.id AND k.row_id = u.row_id AND k.doc_hash = u.doc_hash AND k.chunk_index = u.chunk_index
      RETURNING k.row_id, k.chunk_index, k.content, k.content_hash
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'index', chunk_index, 'content', content, 'hash', content_hash)
             ORDER BY row_id, chunk_index), '[]')
      INTO v_chunks FROM upd;
  END IF;
  RETURN jsonb_build_object('planned', v_planned, 'reused', v_reused, 'chunks', v_chunks, 'ready', to_jsonb(v_ready),
    'stale', to_jsonb(v_stale));
END $$;

-- Stores embedded chunks' vectors (as real[], until their document's swap), only for chunks this
-- worker still holds whose content is what was embedded. A vector of the wrong size rolls the call
-- back with both numbers. Returns the documents whose chunks are now all embedded.
CREATE OR REPLACE FUNCTION public.embedding_chunk_write(
  p_target text,
  p_worker text,
  p_ids text[],
  p_indexes integer[],
  p_hashes text[],
  p_vectors text[],
  p_tokens integer[] DEFAULT NULL
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
BEGIN
  IF v_n = 0 THEN
    RETURN jsonb_build_object('written', 0, 'stale', 0, 'ready', '[]'::jsonb);
  END IF;
  IF cardinality(p_indexes) <> v_n OR cardinality(p_hashes) <> v_n OR cardinality(p_vectors) <> v_n
     OR (p_tokens IS NOT NULL AND cardinality(p_tokens) <> v_n) THEN
    RAISE EXCEPTION 'chunk write arrays differ in length (ids %, indexes %, hashes %, vectors %)', v_n,
      cardinality(p_indexes), cardinality(p_hashes), cardinality(p_vectors) USING ERRCODE = '22023';
  END IF;
  BEGIN
    WITH parsed AS MATERIALIZED (
      SELECT x.id, x.idx, x.h, x.tokens, x.k, b.v, coalesce(cardinality(b.v), 0) AS dims
        FROM unnest(p_ids, p_indexes, p_hashes, p_vectors, coalesce(p_tokens, array_fill(NULL::integer, ARRAY[v_n])))
             WITH ORDINALITY AS x(id, idx, h, vec, tokens, k)
       CROSS JOIN LATERAL (SELECT replace(replace(x.vec, '[', '{'), ']', '}')::real[] AS v OFFSET 0) AS b
    ), upd AS (
      UPDATE public.embedding_chunks k
         SET vector = p.v, status = 'completed', tokens = coalesce(p.tokens, k.tokens), attempts = 0,
             locked_until = NULL, worker_id = NULL, last_error = NULL, error_kind = NULL, updated_at = now()
        FROM parsed p
       WHERE k.target_id = t.id AND k.row_id = p.id AND k.chunk_index = p.idx AND k.content_hash = p.h
         AND k.status = 'processing' AND k.worker_id = p_worker AND p.dims = t.dimensions
      RETURNING k.row_id
    ), bad AS (
      SELECT id, idx, dims FROM parsed WHERE dims <> t.dimensions ORDER BY k LIMIT 1
    )
    SELECT (SELECT count(*) FROM upd), (SELECT array_agg(DISTINCT row_id) FROM upd),
           (SELECT id FROM bad), (SELECT idx FROM bad), (SELECT dims FROM bad)
      INTO v_written, v_docs, v_bad_id, v_bad_index, v_bad_dims;
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

-- A chunk the provider rejected (permanent) or that failed with the batch (transient): attempts and
-- backoff as for rows. A chunk that dead-letters marks its document dead_letter, naming the chunk.
CREATE OR REPLACE FUNCTION public.embedding_chunk_fail(
  p_target text,
  p_worker text,
  p_ids text[],
  p_indexes integer[],
  p_errors text[],
  p_permanent boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_failed integer;
  v_dead integer;
BEGIN
  WITH u AS (
    SELECT * FROM unnest(p_ids, p_indexes, p_errors) AS x(id, idx, err)
  ), upd AS (
    UPDATE public.embedding_chunks k
       SET attempts = k.attempts + 1,
           status = CASE WHEN p_permanent OR k.attempts + 1 >= k.max_attempts THEN 'dead_letter' ELSE 'failed' END,
           error_kind = CASE WHEN p_permanent THEN 'permanent' ELSE 'transient' END,
           last_error = left(coalesce(u.err, 'unknown error'), 2000),
           next_retry_at = now() + make_interval(secs => t.backoff_seconds[least(k.attempts + 1, cardinality(t.backoff_seconds))]),
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM u
     WHERE k.target_id = t.id AND k.row_id = u.id AND k.chunk_index = u.idx AND k.status = 'processing' AND k.worker_id = p_worker
    RETURNING k.row_id, k.chunk_index, k.status, k.error_kind, k.last_error
  ), dead AS (
    UPDATE public.embedding_items i
       SET status = 'dead_letter', error_kind = u.error_kind, updated_at = now(),
           last_error = left(format('chunk %s: %s', u.chunk_index, u.last_error), 2000)
      FROM (SELECT DISTINCT ON (row_id) * FROM upd WHERE status = 'dead_letter' ORDER BY row_id, chunk_index) AS u
     WHERE i.target_id = t.id AND i.row_id = u.row_id AND i.status = 'chunked'
    RETURNING 1
  )
  SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'dead_letter')
    INTO v_failed, v_dead FROM upd;
  RETURN jsonb_build_object('failed', v_failed, 'deadLettered', v_dead);
END $$;

-- Gives back every lease a worker holds on a chunked target (a batch-wide failure: nothing counted).
CREATE OR REPLACE FUNCTION public.embedding_chunk_release(p_target text, p_worker text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_chunks integer;
  v_docs integer;
BEGIN
  WITH upd AS (
    UPDATE public.embedding_chunks k
       SET status = CASE WHEN k.attempts > 0 THEN 'failed' ELSE 'pending' END, locked_until = NULL, worker_id = NULL,
           updated_at = now()
     WHERE k.target_id = t.id AND k.status = 'processing' AND k.worker_id = p_worker
    RETURNING 1
  ) SELECT count(*) INTO v_chunks FROM upd;
  WITH upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN i.job_id IS NOT NULL AND EXISTS (
                           SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled') THEN 'parked'
                         WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.status = 'processing' AND i.worker_id = p_worker
    RETURNING 1
  ) SELECT count(*) INTO v_docs FROM upd;
  RETURN jsonb_build_object('released', v_chunks + v_docs, 'chunks', v_chunks, 'documents', v_docs);
END $$;

-- Forces a retry of given chunks of one document (their attempts start again) and puts the
-- document back to work. Returns the chunks it queued.
CREATE OR REPLACE FUNCTION public.embedding_chunk_retry(p_target text, p_id text, p_indexes integer[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_hash text;
  v_n integer;
BEGIN
  SELECT chunk_hash INTO v_hash FROM public.embedding_items
   WHERE target_id = t.id AND row_id = p_id AND chunk_hash IS NOT NULL AND status IN ('chunked', 'failed', 'dead_letter')
     FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('requeued', 0, 'indexes', '[]'::jsonb);
  END IF;
  WITH upd AS (
    UPDATE public.embedding_chunks k
       SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL, updated_at = now()
     WHERE k.target_id = t.id AND k.row_id = p_id AND k.doc_hash = v_hash AND k.status IN ('failed', 'dead_letter')
       AND (p_indexes IS NULL OR k.chunk_index = ANY (p_indexes))
    RETURNING k.chunk_index
  ) SELECT count(*) INTO v_n FROM upd;
  IF v_n > 0 THEN
    UPDATE public.embedding_items SET status = 'chunked', attempts = 0, last_error = NULL, error_kind = NULL,
           next_retry_at = now(), updated_at = now()
     WHERE target_id = t.id AND row_id = p_id;
  END IF;
  RETURN jsonb_build_object('requeued', v_n,
    'indexes', (SELECT coalesce(jsonb_agg(chunk_index ORDER BY chunk_index), '[]') FROM public.embedding_chunks
                 WHERE target_id = t.id AND row_id = p_id AND doc_hash = v_hash AND status = 'pending'
                   AND (p_indexes IS NULL OR chunk_index = ANY (p_indexes))));
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201120100', 'chunk_queue_api')
ON CONFLICT (version) DO NOTHING;
