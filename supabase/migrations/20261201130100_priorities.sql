-- Embedding sync: priorities (issue 14). A target may declare an order, a column or an expression
-- over the row, and backfills, sweeps and rows.changed claim higher priority first: "newest rows
-- first" is `--priority created_at`.
--
-- A row's claim order is embedding_items.priority (higher first, then due time), read from the due
-- index (target_id, priority DESC, next_retry_at) WHERE status IN ('pending', 'failed'), so a claim
-- walks the index and stops after a batch at any table size. The value is computed when a row is
-- queued (seeding, the triggers, rows.changed), never at claim time:
--   backlog  the target's priority value: a number as it is, a date or timestamp as epoch seconds,
--            negated for asc; clamped to [-1e15, 1e15]; 0 without a priority, or where the
--            expression fails on the row (a trigger never raises into the user's statement).
--   edits    a row that already has an embedding and is queued again by a content edit ranks at its
--            value + 4e15: every edit goes ahead of every backlog row, in the target's order.
--   events   rows.changed with a priority: that number (clamped to [-9e15, 9e15]) as given.
-- Chunks carry their document's priority, so a chunk claim takes them in the same order.

-- Epoch seconds pass integer in 2038, and a score may be fractional: double precision holds both
-- exactly enough (integers to 2^53, so value + 4e15 keeps a resolution under a second). Rewrites
-- both tables once, and their indexes with them.
ALTER TABLE public.embedding_items ALTER COLUMN priority TYPE double precision;
ALTER TABLE public.embedding_chunks ALTER COLUMN priority TYPE double precision;

ALTER TABLE public.embedding_targets
  ADD COLUMN IF NOT EXISTS priority_expression text,
  ADD COLUMN IF NOT EXISTS priority_order text,
  ADD COLUMN IF NOT EXISTS priority_sql text;
ALTER TABLE public.embedding_targets DROP CONSTRAINT IF EXISTS embedding_targets_priority_order_check;
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_priority_order_check
  CHECK (priority_order IS NULL OR priority_order IN ('asc', 'desc'));

-- A backlog rank: the priority value kept inside [-1e15, 1e15], so it stays below every edit.
CREATE OR REPLACE FUNCTION public.embedding_priority_rank(p_value double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT CASE WHEN p_value IS NULL OR p_value = 'NaN'::double precision THEN 0
              ELSE greatest(-1e15::double precision, least(1e15::double precision, p_value)) END
$$;

-- What an edit of an embedded row adds to its rank: more than the backlog's whole range.
CREATE OR REPLACE FUNCTION public.embedding_priority_edit()
RETURNS double precision LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT 4e15::double precision $$;

-- embedding_expression_type, embedding_page_ranks and the ranked embedding_queue_row are internal
-- helpers that run with their caller's rights (SECURITY INVOKER): called by the API functions and
-- triggers they act as those functions' owner; called directly they can do no more than the caller.

-- The type of an expression over the table's row, from a temporary view: parsed and analysed, never
-- run, so nothing in it executes before it is checked.
CREATE OR REPLACE FUNCTION public.embedding_expression_type(p_rel regclass, p_expr text)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_view text := 'embedding_prio_check_' || pg_backend_pid();
  v_type text;
BEGIN
  BEGIN
    EXECUTE format('CREATE TEMP VIEW %I AS SELECT (%s) AS p FROM %s AS s', v_view, p_expr, p_rel);
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'priority is not valid on %: %', public.embedding_relation_name(p_rel), SQLERRM
      USING ERRCODE = '22023', HINT = 'give a column, or one SQL expression over the row''s columns that yields a number or a timestamp';
  END;
  SELECT format_type(a.atttypid, NULL) INTO v_type FROM pg_attribute a
   WHERE a.attrelid = format('pg_temp.%I', v_view)::regclass AND a.attnum = 1;
  EXECUTE format('DROP VIEW pg_temp.%I', v_view);
  RETURN v_type;
END $$;

-- Sets, changes or clears (no column, no expression) a target's order. It changes no embedding, so
-- unlike the definition it needs no --replace: rows queued from now on are ranked by it, and the
-- next backfill re-ranks the backlog page by page as it seeds. The expression is checked as
-- --content-sql is: one expression (no ";", comments or dollar quotes), pure on its parse tree
-- (only the table's own columns, built-in functions without side effects), with the caller's
-- SELECT right on every column it reads and the TRIGGER right registration asks for.
CREATE OR REPLACE FUNCTION public.embedding_set_priority(
  p_target text,
  p_column text DEFAULT NULL,
  p_expression text DEFAULT NULL,
  p_order text DEFAULT 'desc'
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass := public.embedding_require_relation(t);
  v_caller text := public.embedding_caller();
  v_order text := lower(coalesce(p_order, 'desc'));
  v_expr text;
  v_type text;
  v_sql text;
  v_refs text[];
  v_col text;
  v_problem text;
  v_changed boolean;
BEGIN
  IF p_column IS NOT NULL AND p_expression IS NOT NULL THEN
    RAISE EXCEPTION 'target "%": give a priority column or a priority expression, not both', t.name
      USING ERRCODE = '22023', HINT = 'for example --priority created_at, or --priority-sql "coalesce(published_at, created_at)"';
  END IF;
  IF v_order NOT IN ('asc', 'desc') THEN
    RAISE EXCEPTION 'priority order "%" is neither asc nor desc', p_order USING ERRCODE = '22023', HINT = 'use --priority-order asc or desc';
  END IF;
  IF NOT has_table_privilege(v_caller, v_rel, 'TRIGGER') THEN
    RAISE EXCEPTION 'role % may not change how target "%" is ordered', v_caller, t.name
      USING ERRCODE = '42501', HINT = format('registration needs TRIGGER on the table: GRANT TRIGGER ON %s TO %I', public.embedding_relation_name(v_rel), v_caller);
  END IF;

  IF p_column IS NOT NULL THEN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped) THEN
      RAISE EXCEPTION 'priority column "%" does not exist on %', p_column, public.embedding_relation_name(v_rel)
        USING ERRCODE = '42703', HINT = 'give a number, date or timestamp column with --priority, e.g. --priority created_at';
    END IF;
    v_expr := quote_ident(p_column);
  ELSIF p_expression IS NOT NULL THEN
    v_problem := public.embedding_expression_shape_problem(p_expression);
    IF v_problem IS NOT NULL THEN
      RAISE EXCEPTION 'priority expression must be a single SQL expression: %', v_problem
        USING ERRCODE = '22023', HINT = 'write one expression over the row''s columns, e.g. coalesce(published_at, created_at)';
    END IF;
    v_expr := '(' || p_expression || ')';
  END IF;

  IF v_expr IS NOT NULL THEN
    v_type := public.embedding_expression_type(v_rel, v_expr);
    v_sql := CASE
      WHEN v_type IN ('timestamp with time zone', 'timestamp without time zone', 'date')
        THEN format('extract(epoch FROM %s)::double precision', v_expr)
      WHEN v_type IN ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision')
        THEN format('(%s)::double precision', v_expr)
    END;
    IF v_sql IS NULL THEN
      RAISE EXCEPTION 'priority % is of type %: it must be a number, a date or a timestamp', coalesce(p_column, p_expression), v_type
        USING ERRCODE = '22023', HINT = 'for example --priority created_at, or --priority-sql "length(body)"';
    END IF;
    IF v_order = 'asc' THEN v_sql := '-(' || v_sql || ')'; END IF;
    BEGIN
      v_refs := public.embedding_validate_expression(v_rel, v_sql);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION '%', replace(SQLERRM, 'content expression', 'priority expression')
        USING ERRCODE = '42501',
              HINT = 'use only the table''s own columns, operators and built-in functions without side effects (coalesce, greatest, extract, ...)';
    END;
    FOREACH v_col IN ARRAY v_refs LOOP
      IF NOT has_column_privilege(v_caller, v_rel, v_col, 'SELECT') THEN
        RAISE EXCEPTION 'role % may not read column % of %', v_caller, v_col, public.embedding_relation_name(v_rel)
          USING ERRCODE = '42501', HINT = format('GRANT SELECT ON %s TO %I', public.embedding_relation_name(v_rel), v_caller);
      END IF;
    END LOOP;
  END IF;

  v_changed := t.priority_sql IS DISTINCT FROM v_sql
    OR t.priority_expression IS DISTINCT FROM coalesce(p_column, p_expression);
  IF v_changed THEN
    UPDATE public.embedding_targets
       SET priority_expression = coalesce(p_column, p_expression),
           priority_order = CASE WHEN v_sql IS NOT NULL THEN v_order END,
           priority_sql = v_sql, updated_at = now()
     WHERE id = t.id
    RETURNING * INTO t;
  END IF;
  RETURN public.embedding_target_json(t) || jsonb_build_object('priorityChanged', v_changed);
END $$;

-- The ranks of one page of source rows, in the order of p_ids (0 for a row that is gone). A
-- priority expression that fails on some row of the page is evaluated row by row, and the row it
-- fails on ranks 0: a bad value never stops seeding.
CREATE OR REPLACE FUNCTION public.embedding_page_ranks(t public.embedding_targets, p_rel regclass, p_ids text[])
RETURNS double precision[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_ranks double precision[] := '{}';
  v_rank double precision;
BEGIN
  IF t.priority_sql IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN coalesce(array_fill(0::double precision, ARRAY[cardinality(p_ids)]), '{}');
  END IF;
  BEGIN
    EXECUTE format($q$
      SELECT coalesce(array_agg(public.embedding_priority_rank(
               (SELECT %1$s FROM %2$s AS s WHERE s.%3$I = u.id::%4$s)) ORDER BY u.k), '{}')
        FROM unnest($1::text[]) WITH ORDINALITY AS u(id, k)
    $q$, t.priority_sql, p_rel, t.id_column, t.id_type) INTO v_ranks USING p_ids;
  EXCEPTION WHEN others THEN
    v_ranks := '{}';
    FOR i IN 1 .. cardinality(p_ids) LOOP
      BEGIN
        EXECUTE format('SELECT %s FROM %s AS s WHERE s.%I = $1::%s', t.priority_sql, p_rel, t.id_column, t.id_type)
          INTO v_rank USING p_ids[i];
      EXCEPTION WHEN others THEN
        v_rank := 0;
      END;
      v_ranks := v_ranks || public.embedding_priority_rank(v_rank);
    END LOOP;
  END;
  RETURN v_ranks;
END $$;

-- Queues one source row with its rank: due now, attempts reset. A lease in flight is dropped, so a
-- write of the content as it was before this change finds no lease and is discarded. The row is new
-- work: it no longer belongs to the job that seeded it (and is no longer parked by that job's
-- cancel). A row that was embedded before is an edit, and goes ahead of the backlog.
CREATE OR REPLACE FUNCTION public.embedding_queue_row(p_target integer, p_row_id text, p_max_attempts integer,
  p_rank double precision)
RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, priority)
  VALUES (p_target, p_row_id, 'pending', coalesce(p_max_attempts, 3), public.embedding_priority_rank(p_rank))
  ON CONFLICT (target_id, row_id) DO UPDATE
    SET status = 'pending', attempts = 0, next_retry_at = now(), locked_until = NULL, worker_id = NULL,
        last_error = NULL, error_kind = NULL, enqueued_at = now(), updated_at = now(), job_id = NULL,
        priority = public.embedding_priority_rank(p_rank)
                   + CASE WHEN i.embedded_at IS NOT NULL THEN public.embedding_priority_edit() ELSE 0 END
$$;

-- Trigger: a new row, or a row whose content columns changed, becomes due, ranked by the target's
-- priority. The WHEN clause on the update trigger (built at registration) means an update of
-- unrelated columns or a no-op update never even calls this. A trigger whose target is gone does
-- nothing, and a priority expression that fails on this row ranks it 0: the user's write goes on.
-- TG_ARGV: target id, primary key column.
CREATE OR REPLACE FUNCTION public.embedding_on_row_change()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_max integer;
  v_sql text;
  v_rank double precision := 0;
BEGIN
  SELECT max_attempts, priority_sql INTO v_max, v_sql FROM public.embedding_targets WHERE id = TG_ARGV[0]::integer;
  IF FOUND THEN
    IF v_sql IS NOT NULL THEN
      BEGIN
        EXECUTE format('SELECT %s FROM (SELECT ($1).*) AS s', v_sql) INTO v_rank USING NEW;
      EXCEPTION WHEN others THEN
        v_rank := 0;
      END;
    END IF;
    PERFORM public.embedding_queue_row(TG_ARGV[0]::integer, to_jsonb(NEW) ->> TG_ARGV[1], v_max, v_rank);
  END IF;
  RETURN NULL;
END $$;

DROP FUNCTION IF EXISTS public.embedding_mark_pending(text, text[]);

-- Marks given rows due now (the embeddings/rows.changed event): rows not yet tracked start being
-- tracked; tracked rows keep their content hash, so a row whose content did not really change is
-- completed at claim time without a provider call. With p_priority the rows take that claim
-- priority (clamped to [-9e15, 9e15]); without it they keep theirs. Ids that are not valid values
-- of the key's type are reported back and never stored.
CREATE OR REPLACE FUNCTION public.embedding_mark_pending(p_target text, p_ids text[], p_priority double precision DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
  v_invalid jsonb;
  v_priority double precision := CASE WHEN p_priority IS NOT NULL AND p_priority <> 'NaN'::double precision
                                      THEN greatest(-9e15::double precision, least(9e15::double precision, p_priority)) END;
BEGIN
  IF cardinality(p_ids) > 10000 THEN
    RAISE EXCEPTION 'too many ids (%) in one call', cardinality(p_ids) USING ERRCODE = '22023', HINT = 'send at most 10000 ids per event';
  END IF;
  SELECT coalesce(jsonb_agg(id ORDER BY k), '[]') INTO v_invalid FROM unnest(p_ids) WITH ORDINALITY AS x(id, k)
   WHERE NOT public.embedding_valid_id(t.id_type, id);
  WITH ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, priority)
    SELECT DISTINCT t.id, id, 'pending', t.max_attempts, coalesce(v_priority, 0) FROM unnest(p_ids) AS id
     WHERE public.embedding_valid_id(t.id_type, id)
    ON CONFLICT (target_id, row_id) DO UPDATE
      SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL, updated_at = now(),
          priority = coalesce(v_priority, i.priority)
      WHERE i.status <> 'processing'
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM ins;
  RETURN jsonb_build_object('marked', v_n, 'invalid', v_invalid);
END $$;

CREATE OR REPLACE FUNCTION public.embedding_target_json(t public.embedding_targets)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object(
    'name', t.name,
    'table', coalesce(public.embedding_relation_name(public.embedding_relation(t)), format('%I.%I', t.schema_name, t.table_name)),
    'idColumn', t.id_column,
    'idType', t.id_type, 'contentColumns', to_jsonb(t.content_columns), 'contentExpression', t.content_expression,
    'embeddingColumn', coalesce(t.chunk_embedding_column, t.embedding_column), 'embeddingKind', t.embedding_kind,
    'provider', t.provider,
    'model', t.model, 'dimensions', t.dimensions, 'maxAttempts', t.max_attempts,
    'backoffSeconds', to_jsonb(t.backoff_seconds), 'createdAt', t.created_at, 'updatedAt', t.updated_at,
    'chunks', CASE WHEN t.chunk_table IS NULL THEN NULL ELSE jsonb_build_object(
      'table', coalesce(public.embedding_relation_name(public.embedding_chunk_relation(t)), format('%I.%I', t.chunk_schema, t.chunk_table)),
      'tokens', t.chunk_tokens, 'overlap', t.chunk_overlap) END,
    'batchLimit', t.batch_limit, 'batchLimitReason', t.batch_limit_reason, 'batchLimitAt', t.batch_limit_at,
    'priority', CASE WHEN t.priority_sql IS NULL THEN NULL ELSE jsonb_build_object(
      'expression', t.priority_expression, 'order', t.priority_order) END)
$$;

-- Seeding, as before, and every row it queues is ranked by the target's priority (see the top).
CREATE OR REPLACE FUNCTION public.embedding_enqueue(
  p_target text,
  p_after text DEFAULT NULL,
  p_limit integer DEFAULT 5000,
  p_reembed boolean DEFAULT false,
  p_job uuid DEFAULT NULL
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
  v_ranks double precision[];
  v_hash text;
  v_queued integer := 0;
  v_already integer := 0;
  v_requeued integer := 0;
  v_resumed integer := 0;
  v_page text;
  v_job_status text;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100000 THEN
    RAISE EXCEPTION 'enqueue page size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use 1..100000';
  END IF;
  IF p_after IS NOT NULL AND NOT public.embedding_valid_id(t.id_type, p_after) THEN
    RAISE EXCEPTION 'cursor "%" is not a valid % id', p_after, t.id_type USING ERRCODE = '22P02';
  END IF;
  IF p_job IS NOT NULL THEN
    UPDATE public.embedding_jobs SET heartbeat_at = now() WHERE id = p_job AND status IN ('pending', 'running')
    RETURNING status INTO v_job_status;
    IF v_job_status IS NULL THEN
      SELECT status INTO v_job_status FROM public.embedding_jobs WHERE id = p_job;
      RETURN jsonb_build_object('scanned', 0, 'queued', 0, 'alreadyEmbedded', 0, 'last', p_after, 'done', true,
        'stopped', coalesce(v_job_status, 'unknown'));
    END IF;
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

  v_ranks := public.embedding_page_ranks(t, v_rel, v_ids);

  WITH page AS (
    SELECT * FROM unnest(v_ids, v_has, v_hashes, v_ranks) AS p(row_id, has, hash, rank)
  ), ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, content_hash, model, embedded_at, job_id,
        priority)
    SELECT t.id, p.row_id,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN 'completed' ELSE 'pending' END,
           t.max_attempts,
           CASE WHEN v_trust AND p.has THEN p.hash END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN t.model END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN now() END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN NULL ELSE p_job END,
           p.rank
      FROM page p
    ON CONFLICT (target_id, row_id) DO NOTHING
    RETURNING i.status
  )
  SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'completed')
    INTO v_queued, v_already FROM ins;

  -- Rows of a cancelled job (parked, or still queued if the park has not reached them): this
  -- request resumes them.
  WITH pick AS (
    SELECT row_id FROM public.embedding_items i
     WHERE target_id = t.id AND row_id = ANY (v_ids)
       AND (status = 'parked' OR (status IN ('pending', 'failed') AND job_id IS NOT NULL AND job_id IS DISTINCT FROM p_job
            AND EXISTS (SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled')))
     ORDER BY row_id
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = 'pending', next_retry_at = now(), job_id = p_job, updated_at = now()
      FROM pick WHERE i.target_id = t.id AND i.row_id = pick.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_resumed FROM upd;

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
               content_hash = NULL, job_id = coalesce(p_job, i.job_id), updated_at = now(), priority = r.rank
          FROM pick JOIN unnest(v_ids, v_ranks) AS r(row_id, rank) ON r.row_id = pick.row_id
         WHERE i.target_id = t.id AND i.row_id = pick.row_id
        RETURNING 1
      ) SELECT v_requeued + count(*) INTO v_requeued FROM upd;
      EXIT WHEN attempt = 4 OR NOT EXISTS (
        SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND row_id = ANY (v_ids) AND status <> 'processing'
           AND NOT (status = 'pending' AND content_hash IS NULL AND attempts = 0));
      PERFORM pg_sleep(0.02);
    END LOOP;
  END IF;

  -- Queued rows of this page take the target's order as it is now (a priority set or changed after
  -- they were queued), except edits and rows.changed priorities outside the backlog's range, which
  -- keep their place ahead of it. Rows a worker holds are skipped: they are being embedded anyway.
  WITH pick AS (
    SELECT i.row_id, r.rank FROM public.embedding_items i
      JOIN unnest(v_ids, v_ranks) AS r(row_id, rank) ON r.row_id = i.row_id
     WHERE i.target_id = t.id AND i.status IN ('pending', 'failed', 'parked') AND i.priority <> r.rank
       AND i.priority BETWEEN -1e15 AND 1e15
     ORDER BY i.row_id
       FOR UPDATE OF i SKIP LOCKED
  )
  UPDATE public.embedding_items i SET priority = pick.rank
    FROM pick WHERE i.target_id = t.id AND i.row_id = pick.row_id;

  IF p_job IS NOT NULL AND cardinality(v_ids) < p_limit THEN
    UPDATE public.embedding_jobs SET seeded = true WHERE id = p_job;
  END IF;
  RETURN jsonb_build_object('scanned', cardinality(v_ids), 'queued', v_queued + v_requeued + v_resumed,
    'alreadyEmbedded', v_already, 'last', v_ids[cardinality(v_ids)], 'done', cardinality(v_ids) < p_limit);
END $$;

-- Chunk planning, as before; a document's chunks take its priority, also when a new version's
-- chunk replaces a queued one.
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
  v_prio double precision;
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
              next_retry_at = now(), last_error = NULL, error_kind = NULL, job_id = EXCLUDED.job_id, updated_at = now(),
              priority = EXCLUDED.priority
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

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201130100', 'priorities')
ON CONFLICT (version) DO NOTHING;
