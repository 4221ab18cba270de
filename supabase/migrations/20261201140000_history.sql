-- History: per target and per minute, what the batches did (rows embedded, failed, dead-lettered,
-- scheduled for a retry; tokens, provider requests, 429s, provider latency). It costs nothing on the
-- hot path: the bucket is upserted inside increment_embedding_job_progress, the call every batch
-- already makes at its end, so no batch makes a round trip more for it. Old buckets are pruned in
-- the same call, at most once per minute per target (when that minute's bucket is created), by a
-- bounded DELETE on the primary key's range.

CREATE TABLE IF NOT EXISTS public.embedding_history (
  target_id integer NOT NULL REFERENCES public.embedding_targets (id) ON DELETE CASCADE,
  -- date_trunc('minute', now()) of the batches counted here.
  minute timestamptz NOT NULL,
  embedded bigint NOT NULL DEFAULT 0,
  -- Every row that failed in a batch; dead_lettered and retried split it (empty content is
  -- dead-lettered at claim time and counted in both failed and dead_lettered).
  failed bigint NOT NULL DEFAULT 0,
  dead_lettered bigint NOT NULL DEFAULT 0,
  retried bigint NOT NULL DEFAULT 0,
  tokens bigint NOT NULL DEFAULT 0,
  requests bigint NOT NULL DEFAULT 0,
  rate_limited bigint NOT NULL DEFAULT 0,
  -- Provider latency as a sum and a count of embed calls: averages over any step stay exact.
  latency_ms_sum bigint NOT NULL DEFAULT 0,
  latency_count bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (target_id, minute)
);
ALTER TABLE public.embedding_history ENABLE ROW LEVEL SECURITY;

-- Progress, in documents (rows) and, for chunked targets, in chunks; and the minute's history bucket.
-- The first eight parameters are the released contract (20261201120200), unchanged; the rest are
-- optional, so an older caller keeps working. Without a job (sweep, rows.changed, recovery, POST
-- /batch without a jobId), `job_id` is NULL and `history_target` names the target: only the
-- history is recorded. `pending_summary` folds embedding_pending_summary into the answer ('pending'),
-- so a short batch asks whether anything is left in the same round trip.
DROP FUNCTION IF EXISTS public.increment_embedding_job_progress(uuid, integer, integer, integer, bigint, integer, integer, integer);
CREATE OR REPLACE FUNCTION public.increment_embedding_job_progress(
  job_id uuid,
  increment_count integer,
  failed_count integer DEFAULT 0,
  skipped_count integer DEFAULT 0,
  token_count bigint DEFAULT 0,
  request_count integer DEFAULT 0,
  chunks_planned integer DEFAULT 0,
  chunks_embedded integer DEFAULT 0,
  dead_lettered_count integer DEFAULT NULL,
  retried_count integer DEFAULT NULL,
  rate_limited_count integer DEFAULT NULL,
  latency_ms bigint DEFAULT NULL,
  latency_count integer DEFAULT NULL,
  history_target text DEFAULT NULL,
  history_days integer DEFAULT NULL,
  pending_summary boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  j public.embedding_jobs;
  t public.embedding_targets;
  v_out jsonb := '{}'::jsonb;
  v_target_id integer;
  v_minute timestamptz := date_trunc('minute', now());
  v_new boolean;
BEGIN
  IF increment_embedding_job_progress.job_id IS NOT NULL THEN
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
    v_target_id := j.target_id;
    v_out := public.embedding_job_json(j);
  ELSIF history_target IS NOT NULL THEN
    t := public.embedding_target_row(history_target);
    v_target_id := t.id;
    v_out := jsonb_build_object('target', t.name);
  ELSE
    RAISE EXCEPTION 'a job id or a target is required' USING ERRCODE = '22023',
      HINT = 'pass job_id, or history_target for a batch without a job';
  END IF;

  IF coalesce(increment_count, 0) <> 0 OR coalesce(failed_count, 0) <> 0 OR coalesce(token_count, 0) <> 0
     OR coalesce(request_count, 0) <> 0 OR coalesce(rate_limited_count, 0) <> 0
     OR coalesce(increment_embedding_job_progress.latency_count, 0) <> 0 THEN
    INSERT INTO public.embedding_history AS h (target_id, minute, embedded, failed, dead_lettered, retried,
        tokens, requests, rate_limited, latency_ms_sum, latency_count)
    VALUES (v_target_id, v_minute, greatest(coalesce(increment_count, 0), 0), coalesce(failed_count, 0),
        coalesce(dead_lettered_count, 0), coalesce(retried_count, 0), coalesce(token_count, 0),
        coalesce(request_count, 0), coalesce(rate_limited_count, 0), coalesce(latency_ms, 0),
        coalesce(increment_embedding_job_progress.latency_count, 0))
    ON CONFLICT (target_id, minute) DO UPDATE
       SET embedded = h.embedded + EXCLUDED.embedded, failed = h.failed + EXCLUDED.failed,
           dead_lettered = h.dead_lettered + EXCLUDED.dead_lettered, retried = h.retried + EXCLUDED.retried,
           tokens = h.tokens + EXCLUDED.tokens, requests = h.requests + EXCLUDED.requests,
           rate_limited = h.rate_limited + EXCLUDED.rate_limited,
           latency_ms_sum = h.latency_ms_sum + EXCLUDED.latency_ms_sum,
           latency_count = h.latency_count + EXCLUDED.latency_count
    RETURNING (h.xmax = 0) INTO v_new;
    -- A new bucket means the first batch of this minute: prune once, on the key's range, bounded
    -- (1,000 a minute outpaces the one bucket a minute a target can add).
    IF v_new THEN
      DELETE FROM public.embedding_history d
       WHERE d.ctid = ANY (ARRAY(
         SELECT o.ctid FROM public.embedding_history o
          WHERE o.target_id = v_target_id
            AND o.minute < v_minute - make_interval(days => greatest(coalesce(history_days, 7), 1))
          LIMIT 1000));
    END IF;
  END IF;

  IF pending_summary THEN
    v_out := v_out || jsonb_build_object('pending', public.embedding_pending_summary(
      (SELECT name FROM public.embedding_targets WHERE id = v_target_id)));
  END IF;
  RETURN v_out;
END $$;

-- A target's history from p_since, summed per p_step_minutes (1 = per minute, 60 = per hour,
-- 1440 = per day). Buckets are aligned to UTC step boundaries (date_bin from 2000-01-01), so the
-- first one may be partial; only buckets with activity are returned (no zero-fill: the reader
-- fills the gaps it wants). Reading needs what reading the target's status needs.
CREATE OR REPLACE FUNCTION public.embedding_history(
  p_target text,
  p_since timestamptz DEFAULT NULL,
  p_step_minutes integer DEFAULT 1
) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass := public.embedding_relation(t);
  v_since timestamptz := coalesce(p_since, now() - interval '24 hours');
  v_step interval;
BEGIN
  IF p_step_minutes IS NULL OR p_step_minutes < 1 OR p_step_minutes > 43200 THEN
    RAISE EXCEPTION 'step must be between 1 and 43200 minutes, got %', p_step_minutes USING ERRCODE = '22023',
      HINT = 'use 1 (per minute), 60 (per hour) or 1440 (per day)';
  END IF;
  IF v_rel IS NULL THEN
    RAISE EXCEPTION 'the table of target "%" (%.%) no longer exists', t.name, t.schema_name, t.table_name
      USING ERRCODE = '42P01';
  END IF;
  PERFORM public.embedding_assert_access(t, v_rel, false);
  v_step := make_interval(mins => p_step_minutes);
  RETURN jsonb_build_object('target', t.name, 'since', v_since, 'stepMinutes', p_step_minutes,
    'buckets', coalesce((
      SELECT jsonb_agg(jsonb_build_object('start', b.start, 'embedded', b.embedded, 'failed', b.failed,
               'deadLettered', b.dead_lettered, 'retried', b.retried, 'tokens', b.tokens,
               'requests', b.requests, 'rateLimited', b.rate_limited, 'latencyMsSum', b.latency_ms_sum,
               'latencyCount', b.latency_count,
               'latencyMsAvg', CASE WHEN b.latency_count > 0 THEN round(b.latency_ms_sum::numeric / b.latency_count, 1) END)
             ORDER BY b.start)
        FROM (SELECT date_bin(v_step, h.minute, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS start,
                     sum(h.embedded) AS embedded, sum(h.failed) AS failed, sum(h.dead_lettered) AS dead_lettered,
                     sum(h.retried) AS retried, sum(h.tokens) AS tokens, sum(h.requests) AS requests,
                     sum(h.rate_limited) AS rate_limited, sum(h.latency_ms_sum) AS latency_ms_sum,
                     sum(h.latency_count) AS latency_count
                FROM public.embedding_history h
               WHERE h.target_id = t.id AND h.minute >= v_since
               GROUP BY 1) b), '[]'::jsonb));
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201140000', 'history')
ON CONFLICT (version) DO NOTHING;
