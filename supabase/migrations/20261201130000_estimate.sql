-- Estimate before spending (issue 14): how many rows a backfill would embed, a sample of their
-- content to count tokens on (the worker's real tokenizer lives in TypeScript, so tokens are
-- counted there, never guessed in SQL), and the estimate recorded on the job it was made for, so
-- status can put estimate and actual side by side.
--
--   * Which rows: exactly what seeding (embedding_enqueue) and the claim (embedding_read_claimed)
--     would send to the provider. Without reembed: rows with no state, unless seeding would trust
--     the embedding they already have; queued rows (pending, failed, parked) unless their content
--     still hashes to what was embedded with this model. Completed, dead-lettered, chunked and
--     in-flight rows are not embedded by a backfill. With reembed: every row not in flight. Blank
--     content (NULL or whitespace) is never embedded.
--   * How it samples: one counting scan (exact), then, when more rows qualify than the sample
--     size, TABLESAMPLE BERNOULLI at 100 x (1.25 x sample + 20) / rows percent (each row in on its own, so
--     the kept rows are a uniform random sample of the qualifying ones; the content expression is
--     evaluated only on rows the sampler kept), cut to the sample size with ORDER BY random().
--     Relations TABLESAMPLE does not apply to fall back to ORDER BY random() LIMIT over one scan,
--     a top-N heap: memory bounded by the sample, not the table.

ALTER TABLE public.embedding_jobs ADD COLUMN IF NOT EXISTS estimate jsonb;

CREATE OR REPLACE FUNCTION public.embedding_estimate(
  p_target text,
  p_reembed boolean DEFAULT false,
  p_sample integer DEFAULT 1000
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass := public.embedding_require_relation(t);
  v_reembed boolean := coalesce(p_reembed, false);
  v_inner text := $q$
    SELECT (%1$s)::text AS content, s.%2$I IS NOT NULL AS has, i.status, i.content_hash, i.model
      FROM %4$s
      LEFT JOIN public.embedding_items i ON i.target_id = $1 AND i.row_id = s.%3$I::text
  $q$;
  v_plain text;
  v_pred text;
  v_total bigint;
  v_rows bigint;
  v_pct numeric;
  v_method text;
  v_sample text[];
BEGIN
  IF p_sample IS NULL OR p_sample < 1 OR p_sample > 100000 THEN
    RAISE EXCEPTION 'sample size % is out of range', p_sample USING ERRCODE = '22023', HINT = 'use --sample 1..100000';
  END IF;
  PERFORM public.embedding_assert_access(t, v_rel, false);

  -- v_inner's %4$s is the FROM item, plain or sampled (the content expression only ever goes in
  -- as an argument of format, never into a format string). Parameters: $1 target id, $2 reembed,
  -- $3 trust the embeddings rows already have, $4 model, $5 sample size.
  v_plain := format(v_inner, t.content_sql, t.embedding_column, t.id_column, format('%s AS s', v_rel));
  v_pred := $p$
    coalesce(c.content, '') ~ '\S' AND CASE
      WHEN c.status = 'processing' THEN false
      WHEN $2 THEN true
      WHEN c.status IS NULL THEN NOT ($3 AND c.has)
      WHEN c.status IN ('pending', 'failed', 'parked') THEN NOT (c.has AND c.model IS NOT DISTINCT FROM $4
        AND c.content_hash IS NOT DISTINCT FROM md5(c.content))
      ELSE false
    END
  $p$;

  BEGIN
    EXECUTE format('SELECT count(*), count(*) FILTER (WHERE %s) FROM (%s) AS c', v_pred,
        v_plain)
      INTO v_total, v_rows USING t.id, v_reembed, t.trust_existing AND NOT v_reembed, t.model;

    IF v_rows <= p_sample THEN
      v_method := 'all';
      EXECUTE format('SELECT coalesce(array_agg(c.content), ''{}'') FROM (%s) AS c WHERE %s',
          v_plain, v_pred)
        INTO v_sample USING t.id, v_reembed, t.trust_existing AND NOT v_reembed, t.model;
    ELSE
      v_pct := least(100, round(100.0 * (1.25 * p_sample + 20) / v_rows, 6));
      BEGIN
        v_method := 'bernoulli';
        EXECUTE format('SELECT coalesce(array_agg(x.content), ''{}'') FROM (SELECT c.content FROM (%s) AS c WHERE %s ORDER BY random() LIMIT $5) AS x',
            format(v_inner, t.content_sql, t.embedding_column, t.id_column,
              format('%s AS s TABLESAMPLE BERNOULLI (%s)', v_rel, v_pct)), v_pred)
          INTO v_sample USING t.id, v_reembed, t.trust_existing AND NOT v_reembed, t.model, p_sample;
      EXCEPTION WHEN feature_not_supported OR wrong_object_type THEN
        v_method := 'random';
        v_pct := NULL;
        EXECUTE format('SELECT coalesce(array_agg(x.content), ''{}'') FROM (SELECT c.content FROM (%s) AS c WHERE %s ORDER BY random() LIMIT $5) AS x',
            v_plain, v_pred)
          INTO v_sample USING t.id, v_reembed, t.trust_existing AND NOT v_reembed, t.model, p_sample;
      END;
    END IF;
  EXCEPTION WHEN data_exception THEN
    RAISE EXCEPTION 'the content expression of target "%" fails on a row of %: %', t.name,
        public.embedding_relation_name(v_rel), SQLERRM
      USING ERRCODE = SQLSTATE,
            HINT = 'a backfill dead-letters such rows with the reason; fix those rows or the expression (embeddings targets add ... --replace), then estimate again';
  END;

  RETURN jsonb_build_object(
    'target', t.name, 'table', public.embedding_relation_name(v_rel), 'provider', t.provider, 'model', t.model,
    'chunked', t.chunk_table IS NOT NULL, 'reembed', v_reembed,
    'tableRows', v_total, 'rows', v_rows, 'method', v_method,
    'samplePercent', CASE WHEN v_method = 'bernoulli' THEN v_pct END,
    'sample', to_jsonb(v_sample));
END $$;

-- The estimate made before a job ran, kept on the job (bounded: figures, never row content).
CREATE OR REPLACE FUNCTION public.embedding_job_set_estimate(p_job uuid, p_estimate jsonb)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  j public.embedding_jobs;
  t public.embedding_targets;
BEGIN
  IF p_estimate IS NULL OR jsonb_typeof(p_estimate) <> 'object' THEN
    RAISE EXCEPTION 'a job estimate must be a JSON object' USING ERRCODE = '22023';
  END IF;
  IF octet_length(p_estimate::text) > 16384 THEN
    RAISE EXCEPTION 'a job estimate of % bytes is too large', octet_length(p_estimate::text)
      USING ERRCODE = '22023', HINT = 'record figures only (at most 16 kB), never the sampled content';
  END IF;
  SELECT * INTO j FROM public.embedding_jobs WHERE id = p_job;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
  END IF;
  SELECT * INTO t FROM public.embedding_targets WHERE id = j.target_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the target of job % no longer exists', p_job USING ERRCODE = 'P0002';
  END IF;
  PERFORM public.embedding_assert_access(t, public.embedding_require_relation(t), false);
  UPDATE public.embedding_jobs SET estimate = p_estimate WHERE id = p_job RETURNING * INTO j;
  RETURN public.embedding_job_json(j) || jsonb_build_object('estimate', j.estimate);
END $$;

-- Estimates of the given jobs, { jobId: estimate }: only jobs that have one, of targets whose
-- table the caller may read (like status, a target the caller may not read is left out, not an error).
CREATE OR REPLACE FUNCTION public.embedding_job_estimates(p_jobs uuid[])
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets;
  v_rel regclass;
  v_out jsonb := '{}'::jsonb;
  v_part jsonb;
BEGIN
  IF cardinality(p_jobs) > 1000 THEN
    RAISE EXCEPTION 'at most 1000 jobs at a time, not %', cardinality(p_jobs) USING ERRCODE = '22023';
  END IF;
  FOR t IN SELECT * FROM public.embedding_targets WHERE id IN (
      SELECT target_id FROM public.embedding_jobs WHERE id = ANY (p_jobs) AND estimate IS NOT NULL) LOOP
    BEGIN
      v_rel := public.embedding_require_relation(t);
      PERFORM public.embedding_assert_access(t, v_rel, false);
    EXCEPTION WHEN insufficient_privilege OR undefined_table THEN
      CONTINUE;
    END;
    SELECT coalesce(jsonb_object_agg(id::text, estimate), '{}'::jsonb) INTO v_part
      FROM public.embedding_jobs WHERE id = ANY (p_jobs) AND target_id = t.id AND estimate IS NOT NULL;
    v_out := v_out || v_part;
  END LOOP;
  RETURN v_out;
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201130000', 'estimate')
ON CONFLICT (version) DO NOTHING;
