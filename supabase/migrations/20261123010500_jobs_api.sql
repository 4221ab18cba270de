-- Embedding sync: jobs API (create, start, progress, get, finish, expire).

CREATE OR REPLACE FUNCTION public.embedding_job_json(j public.embedding_jobs)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT jsonb_build_object('id', j.id, 'target', (SELECT name FROM public.embedding_targets WHERE id = j.target_id),
    'kind', j.kind, 'status', j.status, 'options', j.options, 'itemsTotal', j.items_total,
    'itemsProcessed', j.items_processed, 'itemsFailed', j.items_failed, 'itemsSkipped', j.items_skipped,
    'tokens', j.tokens, 'requests', j.requests, 'createdAt', j.created_at, 'startedAt', j.started_at,
    'finishedAt', j.finished_at, 'heartbeatAt', j.heartbeat_at, 'lastError', j.last_error)
$$;

-- Creates a job, or returns the existing one for the same idempotency key (a duplicate event or a
-- replay never starts a second job for one request).
CREATE OR REPLACE FUNCTION public.embedding_job_create(
  p_target text,
  p_kind text DEFAULT 'backfill',
  p_idempotency_key text DEFAULT NULL,
  p_options jsonb DEFAULT '{}'::jsonb,
  p_job_id uuid DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  j public.embedding_jobs;
  v_created boolean := false;
BEGIN
  IF p_job_id IS NOT NULL THEN
    SELECT * INTO j FROM public.embedding_jobs WHERE id = p_job_id;
    IF FOUND AND j.target_id <> t.id THEN
      RAISE EXCEPTION 'job % belongs to another target', p_job_id USING ERRCODE = '22023', HINT = 'use a new job id';
    END IF;
  END IF;
  IF j.id IS NULL AND p_idempotency_key IS NOT NULL THEN
    SELECT * INTO j FROM public.embedding_jobs WHERE idempotency_key = p_idempotency_key;
  END IF;
  IF j.id IS NULL THEN
    INSERT INTO public.embedding_jobs (id, target_id, kind, idempotency_key, options)
    VALUES (coalesce(p_job_id, gen_random_uuid()), t.id, p_kind, p_idempotency_key, coalesce(p_options, '{}'))
    ON CONFLICT DO NOTHING
    RETURNING * INTO j;
    v_created := j.id IS NOT NULL;
    IF NOT v_created THEN
      SELECT * INTO j FROM public.embedding_jobs WHERE idempotency_key = p_idempotency_key OR id = p_job_id LIMIT 1;
    END IF;
  END IF;
  RETURN public.embedding_job_json(j) || jsonb_build_object('created', v_created);
END $$;

-- Marks a job running and fixes items_total: the rows of the target that still need work now.
-- Counts once per job, never per batch. A failed job starts again (a replay from the dashboard
-- resumes it); completed and cancelled jobs stay final.
CREATE OR REPLACE FUNCTION public.embedding_job_start(p_job uuid)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE j public.embedding_jobs;
BEGIN
  UPDATE public.embedding_jobs SET
      status = CASE WHEN status IN ('pending', 'running', 'failed') THEN 'running' ELSE status END,
      finished_at = CASE WHEN status = 'failed' THEN NULL ELSE finished_at END,
      started_at = coalesce(started_at, now()), heartbeat_at = now(),
      items_total = CASE WHEN status = 'pending' OR items_total = 0 THEN
        (SELECT count(*) FROM public.embedding_items i WHERE i.target_id = embedding_jobs.target_id
            AND i.status IN ('pending', 'failed', 'processing')) + items_processed + items_failed + items_skipped
        ELSE items_total END
   WHERE id = p_job RETURNING * INTO j;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
  END IF;
  RETURN public.embedding_job_json(j);
END $$;

-- The one function that records a batch's progress: atomic and exact under any number of concurrent
-- callers (one UPDATE with relative increments; the row lock serialises them), with the heartbeat.
-- `increment_embedding_job_progress(job_id, increment_count)` keeps its original meaning (rows
-- processed); the other counters are optional. Returns the job, so a caller knows total and remaining
-- without counting anything.
DROP FUNCTION IF EXISTS public.embedding_job_record_batch(uuid, integer, integer, integer, bigint, integer);
DROP FUNCTION IF EXISTS public.increment_embedding_job_progress(uuid, integer);
CREATE OR REPLACE FUNCTION public.increment_embedding_job_progress(
  job_id uuid,
  increment_count integer,
  failed_count integer DEFAULT 0,
  skipped_count integer DEFAULT 0,
  token_count bigint DEFAULT 0,
  request_count integer DEFAULT 0
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE j public.embedding_jobs;
BEGIN
  UPDATE public.embedding_jobs AS x
     SET items_processed = x.items_processed + coalesce(increment_count, 0),
         items_failed = x.items_failed + coalesce(failed_count, 0),
         items_skipped = x.items_skipped + coalesce(skipped_count, 0),
         tokens = x.tokens + coalesce(token_count, 0), requests = x.requests + coalesce(request_count, 0),
         heartbeat_at = now()
   WHERE x.id = increment_embedding_job_progress.job_id RETURNING * INTO j;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown job %', increment_embedding_job_progress.job_id USING ERRCODE = 'P0002';
  END IF;
  RETURN public.embedding_job_json(j);
END $$;

CREATE OR REPLACE FUNCTION public.embedding_job_get(p_job uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE j public.embedding_jobs;
BEGIN
  SELECT * INTO j FROM public.embedding_jobs WHERE id = p_job;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002', HINT = 'embeddings status lists jobs';
  END IF;
  RETURN public.embedding_job_json(j);
END $$;

-- Finishes a job. A job already in a final state keeps it (a late failure handler cannot turn a
-- cancelled job into failed), except that p_force lets cancel win over running.
CREATE OR REPLACE FUNCTION public.embedding_job_finish(
  p_job uuid,
  p_status text,
  p_error text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE j public.embedding_jobs;
BEGIN
  IF p_status NOT IN ('completed', 'failed', 'cancelled') THEN
    RAISE EXCEPTION 'invalid final job status "%"', p_status USING ERRCODE = '22023', HINT = 'completed, failed or cancelled';
  END IF;
  UPDATE public.embedding_jobs
     SET status = p_status, finished_at = now(), heartbeat_at = now(),
         last_error = coalesce(left(p_error, 4000), last_error)
   WHERE id = p_job AND status IN ('pending', 'running')
  RETURNING * INTO j;
  IF NOT FOUND THEN
    SELECT * INTO j FROM public.embedding_jobs WHERE id = p_job;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
    END IF;
  END IF;
  RETURN public.embedding_job_json(j);
END $$;

-- Jobs whose heartbeat is older than the threshold are marked failed with a reason: no job is ever
-- left "running" forever after its worker was killed by a platform timeout, a crash or a deploy.
CREATE OR REPLACE FUNCTION public.embedding_jobs_expire(p_stale_seconds integer DEFAULT 900)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE v_ids jsonb;
BEGIN
  WITH upd AS (
    UPDATE public.embedding_jobs
       SET status = 'failed', finished_at = now(),
           last_error = format('no heartbeat for %s seconds: the worker stopped (crash, deploy or timeout); run the backfill again to resume', p_stale_seconds)
     WHERE status IN ('running', 'pending') AND coalesce(heartbeat_at, created_at) < now() - make_interval(secs => p_stale_seconds)
    RETURNING id
  ) SELECT coalesce(jsonb_agg(id), '[]'::jsonb) INTO v_ids FROM upd;
  RETURN jsonb_build_object('expired', v_ids);
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261123010500', 'jobs_api')
ON CONFLICT (version) DO NOTHING;
