-- Embedding sync: durable jobs. Cancel is final and immediate, Replay resumes, seeding heartbeats.
--
--   * A backfill's rows belong to its job (embedding_items.job_id, set when seeding queues them).
--     Cancelling the job parks them (status 'parked'): no claim takes them, from any runner, and a
--     later backfill request resumes them. A user's insert or edit after the cancel is new work: the
--     trigger queues the row with no job, and the sweep embeds it as usual.
--   * A job can be cancelled before anything created it: the cancellation is recorded, and the job is
--     born cancelled when its coordinator gets to create it.
--   * Every (re)start of a job's workers has an epoch, carried in each worker event id: a job revived
--     by a Replay fans out under a new epoch, so Inngest's 24 h event-id dedup cannot swallow it,
--     while a duplicate request for a running job fans out nothing.
--   * A job is revived only by a run that did not create it (a Replay or Rerun, recorded in
--     embedding_job_runs): a job failed while its own coordinator runs is never revived silently.

ALTER TABLE public.embedding_jobs ADD COLUMN IF NOT EXISTS epoch integer NOT NULL DEFAULT 0;
ALTER TABLE public.embedding_jobs ADD COLUMN IF NOT EXISTS event_id text;
ALTER TABLE public.embedding_jobs ADD COLUMN IF NOT EXISTS seeded boolean NOT NULL DEFAULT false;
ALTER TABLE public.embedding_jobs ADD COLUMN IF NOT EXISTS restarts integer NOT NULL DEFAULT 0;
ALTER TABLE public.embedding_jobs ADD COLUMN IF NOT EXISTS lanes integer;

ALTER TABLE public.embedding_items ADD COLUMN IF NOT EXISTS job_id uuid;
ALTER TABLE public.embedding_items DROP CONSTRAINT IF EXISTS embedding_items_status_check;
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_status_check
  CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'dead_letter', 'parked'));
-- Parking a cancelled job's rows reads them by job.
CREATE INDEX IF NOT EXISTS embedding_items_job_idx ON public.embedding_items (job_id)
  WHERE job_id IS NOT NULL AND status IN ('pending', 'failed');

CREATE TABLE IF NOT EXISTS public.embedding_job_cancellations (
  job_id uuid PRIMARY KEY,
  reason text,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.embedding_job_cancellations ENABLE ROW LEVEL SECURITY;

-- Which runs took part in a job, by role (the coordinator's or a worker's event id): a second run for
-- the same role is a Replay or Rerun of the first.
CREATE TABLE IF NOT EXISTS public.embedding_job_runs (
  job_id uuid NOT NULL REFERENCES public.embedding_jobs (id) ON DELETE CASCADE,
  role text NOT NULL,
  run_id text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, role, run_id)
);
ALTER TABLE public.embedding_job_runs ENABLE ROW LEVEL SECURITY;

CREATE OR REPLACE FUNCTION public.embedding_job_json(j public.embedding_jobs)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('id', j.id, 'target', (SELECT name FROM public.embedding_targets WHERE id = j.target_id),
    'kind', j.kind, 'status', j.status, 'options', j.options, 'itemsTotal', j.items_total,
    'itemsProcessed', j.items_processed, 'itemsFailed', j.items_failed, 'itemsSkipped', j.items_skipped,
    'tokens', j.tokens, 'requests', j.requests, 'createdAt', j.created_at, 'startedAt', j.started_at,
    'finishedAt', j.finished_at, 'heartbeatAt', j.heartbeat_at, 'lastError', j.last_error,
    'epoch', j.epoch, 'eventId', j.event_id, 'seeded', j.seeded, 'restarts', j.restarts, 'lanes', j.lanes)
$$;

-- Queues one source row: due now, attempts reset. A lease in flight is dropped, so a write of the
-- content as it was before this change finds no lease and is discarded. The row is new work: it no
-- longer belongs to the job that seeded it (and is no longer parked by that job's cancel).
CREATE OR REPLACE FUNCTION public.embedding_queue_row(p_target integer, p_row_id text, p_max_attempts integer)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts)
  VALUES (p_target, p_row_id, 'pending', coalesce(p_max_attempts, 3))
  ON CONFLICT (target_id, row_id) DO UPDATE
    SET status = 'pending', attempts = 0, next_retry_at = now(), locked_until = NULL, worker_id = NULL,
        last_error = NULL, error_kind = NULL, enqueued_at = now(), updated_at = now(), job_id = NULL
$$;

DROP FUNCTION IF EXISTS public.embedding_job_create(text, text, text, jsonb, uuid);

-- Creates a job, or returns the existing one for the same job id or idempotency key (a duplicate
-- event or a replay never starts a second job for one request). A job whose id was cancelled before
-- it existed is created cancelled.
CREATE OR REPLACE FUNCTION public.embedding_job_create(
  p_target text,
  p_kind text DEFAULT 'backfill',
  p_idempotency_key text DEFAULT NULL,
  p_options jsonb DEFAULT '{}'::jsonb,
  p_job_id uuid DEFAULT NULL,
  p_event_id text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  j public.embedding_jobs;
  v_created boolean := false;
  v_cancel public.embedding_job_cancellations;
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
    SELECT * INTO v_cancel FROM public.embedding_job_cancellations WHERE job_id = p_job_id;
    INSERT INTO public.embedding_jobs (id, target_id, kind, idempotency_key, options, event_id, status, finished_at, last_error)
    VALUES (coalesce(p_job_id, gen_random_uuid()), t.id, p_kind, p_idempotency_key, coalesce(p_options, '{}'), p_event_id,
            CASE WHEN v_cancel.job_id IS NULL THEN 'pending' ELSE 'cancelled' END,
            CASE WHEN v_cancel.job_id IS NULL THEN NULL ELSE now() END,
            CASE WHEN v_cancel.job_id IS NULL THEN NULL ELSE coalesce(v_cancel.reason, 'cancelled before it started') END)
    ON CONFLICT DO NOTHING
    RETURNING * INTO j;
    v_created := j.id IS NOT NULL;
    IF NOT v_created THEN
      SELECT * INTO j FROM public.embedding_jobs WHERE idempotency_key = p_idempotency_key OR id = p_job_id LIMIT 1;
    END IF;
  END IF;
  RETURN public.embedding_job_json(j) || jsonb_build_object('created', v_created);
END $$;

DROP FUNCTION IF EXISTS public.embedding_job_start(uuid);

-- Marks a job running and fixes items_total: the rows of the target that still need work now
-- (counted once per job, never per batch). `fanOut` says whether the caller should start workers:
--   * a pending job starts (epoch 0);
--   * with p_revive (the caller did not create the job: a Replay or Rerun), a failed job, or a
--     running job whose heartbeat is older than p_stale_seconds (nobody is working), runs again under
--     the next epoch;
--   * anything else (running and alive, completed, cancelled, failed without p_revive) fans out nothing.
CREATE OR REPLACE FUNCTION public.embedding_job_start(p_job uuid, p_revive boolean DEFAULT false, p_stale_seconds integer DEFAULT 900)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  j public.embedding_jobs;
  v_fan_out boolean := false;
  v_revived boolean := false;
BEGIN
  SELECT * INTO j FROM public.embedding_jobs WHERE id = p_job FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
  END IF;
  IF j.status = 'pending' THEN
    v_fan_out := true;
  ELSIF coalesce(p_revive, false) AND (j.status = 'failed'
        OR (j.status = 'running' AND coalesce(j.heartbeat_at, j.created_at) < now() - make_interval(secs => p_stale_seconds))) THEN
    v_fan_out := true;
    v_revived := true;
  END IF;
  IF v_fan_out THEN
    UPDATE public.embedding_jobs SET
        status = 'running', finished_at = NULL, started_at = coalesce(started_at, now()), heartbeat_at = now(),
        epoch = epoch + CASE WHEN v_revived THEN 1 ELSE 0 END,
        restarts = restarts + CASE WHEN v_revived THEN 1 ELSE 0 END,
        items_total = CASE WHEN status = 'pending' OR items_total = 0 THEN
          (SELECT count(*) FROM public.embedding_items i WHERE i.target_id = embedding_jobs.target_id
              AND i.status IN ('pending', 'failed', 'processing')) + items_processed + items_failed + items_skipped
          ELSE items_total END
     WHERE id = p_job RETURNING * INTO j;
  END IF;
  RETURN public.embedding_job_json(j) || jsonb_build_object('fanOut', v_fan_out, 'revived', v_revived);
END $$;

-- Records the number of worker lanes a job fans out to (a revived job fans out as many again).
CREATE OR REPLACE FUNCTION public.embedding_job_set_lanes(p_job uuid, p_lanes integer)
RETURNS jsonb
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
  UPDATE public.embedding_jobs SET lanes = p_lanes WHERE id = p_job
  RETURNING public.embedding_job_json(embedding_jobs)
$$;

-- A worker run starts: recorded under its role (its event id). When another run already took that
-- role, this one is a Replay or Rerun: a failed job (or one running with nobody working) is revived
-- under the next epoch, and the caller starts the other lanes again. A first run never revives.
CREATE OR REPLACE FUNCTION public.embedding_job_lane_start(p_job uuid, p_role text, p_run_id text, p_stale_seconds integer DEFAULT 900)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_replay boolean;
  v_started jsonb;
BEGIN
  PERFORM 1 FROM public.embedding_jobs WHERE id = p_job;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
  END IF;
  v_replay := EXISTS (SELECT 1 FROM public.embedding_job_runs WHERE job_id = p_job AND role = p_role AND run_id <> p_run_id);
  INSERT INTO public.embedding_job_runs (job_id, role, run_id) VALUES (p_job, p_role, p_run_id) ON CONFLICT DO NOTHING;
  v_started := public.embedding_job_start(p_job, v_replay, p_stale_seconds);
  RETURN v_started || jsonb_build_object('replay', v_replay);
END $$;

-- Parks up to p_limit of a cancelled job's queued rows: no claim takes them until a later backfill
-- resumes them. Called page by page until it parks nothing (bounded statements at any job size).
CREATE OR REPLACE FUNCTION public.embedding_job_park(p_job uuid, p_limit integer DEFAULT 10000)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE v_n integer;
BEGIN
  WITH pick AS (
    SELECT target_id, row_id FROM public.embedding_items
     WHERE job_id = p_job AND status IN ('pending', 'failed')
     LIMIT least(greatest(coalesce(p_limit, 10000), 1), 100000)
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i SET status = 'parked', updated_at = now()
      FROM pick p WHERE i.target_id = p.target_id AND i.row_id = p.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('parked', v_n);
END $$;

-- Cancels a job: final (a late failure handler cannot turn it back into failed, a Replay cannot
-- revive it). A job that does not exist yet is cancelled ahead: it is born cancelled. A completed
-- job is left as it is.
CREATE OR REPLACE FUNCTION public.embedding_job_cancel(p_job uuid, p_reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  j public.embedding_jobs;
  v_previous text;
BEGIN
  SELECT * INTO j FROM public.embedding_jobs WHERE id = p_job FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO public.embedding_job_cancellations (job_id, reason) VALUES (p_job, left(p_reason, 4000))
    ON CONFLICT (job_id) DO NOTHING;
    RETURN jsonb_build_object('id', p_job, 'known', false, 'status', 'cancelled', 'previousStatus', NULL,
      'cancelled', true, 'target', NULL);
  END IF;
  v_previous := j.status;
  IF j.status IN ('pending', 'running', 'failed') THEN
    UPDATE public.embedding_jobs
       SET status = 'cancelled', finished_at = now(), heartbeat_at = now(),
           last_error = coalesce(left(p_reason, 4000), last_error)
     WHERE id = p_job RETURNING * INTO j;
  END IF;
  RETURN public.embedding_job_json(j) || jsonb_build_object('known', true, 'previousStatus', v_previous,
    'cancelled', j.status = 'cancelled');
END $$;

-- Lease release. A row of a cancelled job is parked instead of queued again.
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
       SET status = CASE WHEN i.job_id IS NOT NULL AND EXISTS (
                           SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled') THEN 'parked'
                         WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
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
       SET status = CASE WHEN i.job_id IS NOT NULL AND EXISTS (
                           SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled') THEN 'parked'
                         WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM held h WHERE i.target_id = t.id AND i.row_id = h.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('released', v_n);
END $$;

DROP FUNCTION IF EXISTS public.embedding_enqueue(text, text, integer, boolean);

-- Seeds per-row state for one keyset page of the source table (bounded work per call, so a
-- million-row table never needs one long statement that a statement timeout cancels).
-- Rows that already have an embedding are recorded as completed with the current content hash,
-- unless p_reembed or the target was re-registered for another definition (trust_existing). Rows
-- already tracked keep their state unless p_reembed, which queues them again with the content hash
-- cleared, so the claim embeds them instead of finding them unchanged. With p_job, the rows it
-- queues belong to that job, rows a cancelled job parked are resumed, the job's heartbeat is beaten
-- (a long seed is alive, not stale), and a cancelled job stops the seed.
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

  WITH page AS (
    SELECT * FROM unnest(v_ids, v_has, v_hashes) AS p(row_id, has, hash)
  ), ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, content_hash, model, embedded_at, job_id)
    SELECT t.id, p.row_id,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN 'completed' ELSE 'pending' END,
           t.max_attempts,
           CASE WHEN v_trust AND p.has THEN p.hash END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN t.model END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN now() END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN NULL ELSE p_job END
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
               content_hash = NULL, job_id = coalesce(p_job, i.job_id), updated_at = now()
          FROM pick WHERE i.target_id = t.id AND i.row_id = pick.row_id
        RETURNING 1
      ) SELECT v_requeued + count(*) INTO v_requeued FROM upd;
      EXIT WHEN attempt = 4 OR NOT EXISTS (
        SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND row_id = ANY (v_ids) AND status <> 'processing'
           AND NOT (status = 'pending' AND content_hash IS NULL AND attempts = 0));
      PERFORM pg_sleep(0.02);
    END LOOP;
  END IF;

  IF p_job IS NOT NULL AND cardinality(v_ids) < p_limit THEN
    UPDATE public.embedding_jobs SET seeded = true WHERE id = p_job;
  END IF;
  RETURN jsonb_build_object('scanned', cardinality(v_ids), 'queued', v_queued + v_requeued + v_resumed,
    'alreadyEmbedded', v_already, 'last', v_ids[cardinality(v_ids)], 'done', cardinality(v_ids) < p_limit);
END $$;

DROP FUNCTION IF EXISTS public.embedding_claim(text, text, integer, integer);

-- Claims up to p_limit due items under a lease and returns their current content.
--   0. With p_job, the job's status comes back with the claim and nothing is claimed unless it is
--      running (the worker needs no separate read of its job); its heartbeat is beaten.
--   1. Leases that expired (a crashed worker) count as an attempt and become due again, or dead-letter.
--   2. Due items are taken with FOR UPDATE SKIP LOCKED: two workers never hold the same item. Items of
--      a cancelled job are never taken. With p_ids, only those items (the recovery's own dead letters).
--      One whose id is not a valid value of the key's type is dead-lettered instead of leased.
--   3. The source rows are read in one statement (embedding_read_claimed). Items whose row is gone
--      are deleted (never retried); unchanged ones are completed without a provider call; blank
--      content and content the expression fails on dead-letter.
CREATE OR REPLACE FUNCTION public.embedding_claim(
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
  v_job_status text;
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
      RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', 0, 'deleted', 0, 'skipped', 0, 'empty', 0,
        'jobStatus', v_job_status);
    END IF;
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
    SELECT row_id FROM public.embedding_items i
     WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()
       AND (p_ids IS NULL OR row_id = ANY (p_ids))
       AND (i.job_id IS NULL OR NOT EXISTS (
             SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled'))
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
    RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', v_expired, 'deleted', 0, 'skipped', 0, 'empty', v_invalid,
      'jobStatus', v_job_status);
  END IF;

  v_read := public.embedding_read_claimed(t, v_rel, v_ids, v_old_hashes, v_old_models);
  SELECT coalesce(array_agg(x), '{}') INTO v_gone FROM jsonb_array_elements_text(v_read -> 'gone') AS x;
  SELECT coalesce(array_agg(x), '{}') INTO v_unchanged FROM jsonb_array_elements_text(v_read -> 'unchanged') AS x;
  SELECT coalesce(array_agg(x), '{}') INTO v_blank FROM jsonb_array_elements_text(v_read -> 'blank') AS x;
  v_failed := v_read -> 'failed';

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
    'skipped', cardinality(v_unchanged), 'empty', cardinality(v_blank) + jsonb_array_length(v_failed) + v_invalid,
    'jobStatus', v_job_status);
END $$;

-- Forces a retry: of given rows, of every dead letter, or only of dead letters whose failure was
-- transient (the recovery). Attempts start again from zero. Returns the ids it queued (the recovery
-- processes exactly those), and the given ids that are not valid values of the key's type.
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
  v_ids jsonb;
  v_invalid jsonb;
BEGIN
  SELECT coalesce(jsonb_agg(id), '[]') INTO v_invalid FROM unnest(p_ids) AS id
   WHERE NOT public.embedding_valid_id(t.id_type, id);
  WITH pick AS (
    SELECT row_id FROM public.embedding_items
     WHERE target_id = t.id
       AND (p_ids IS NULL OR row_id = ANY (p_ids))
       AND (CASE WHEN p_dead_letter_only THEN status = 'dead_letter' ELSE status IN ('failed', 'dead_letter', 'completed', 'parked') END)
       AND (NOT p_transient_only OR error_kind = 'transient')
     ORDER BY row_id
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL,
           content_hash = CASE WHEN i.status = 'completed' THEN NULL ELSE i.content_hash END,
           job_id = NULL, updated_at = now()
      FROM pick WHERE i.target_id = t.id AND i.row_id = pick.row_id
    RETURNING i.row_id
  ) SELECT coalesce(jsonb_agg(row_id ORDER BY row_id), '[]') INTO v_ids FROM upd;
  RETURN jsonb_build_object('requeued', jsonb_array_length(v_ids), 'ids', v_ids, 'invalid', v_invalid);
END $$;

-- Status counts parked rows: a cancelled job's rows, waiting for a later backfill.
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
  v_error text;
BEGIN
  FOR t IN SELECT * FROM public.embedding_targets WHERE p_target IS NULL OR name = p_target ORDER BY name LOOP
    SELECT jsonb_build_object(
        'tracked', count(*),
        'pending', count(*) FILTER (WHERE status = 'pending'),
        'processing', count(*) FILTER (WHERE status = 'processing'),
        'completed', count(*) FILTER (WHERE status = 'completed'),
        'failed', count(*) FILTER (WHERE status = 'failed'),
        'deadLetter', count(*) FILTER (WHERE status = 'dead_letter'),
        'parked', count(*) FILTER (WHERE status = 'parked'))
      INTO v_counts FROM public.embedding_items WHERE target_id = t.id;
    v_src := NULL;
    v_error := NULL;
    v_rel := public.embedding_relation(t);
    BEGIN
      IF v_rel IS NULL THEN
        RAISE EXCEPTION 'the table of target "%" (%.%) no longer exists', t.name, t.schema_name, t.table_name
          USING ERRCODE = '42P01';
      END IF;
      PERFORM public.embedding_assert_access(t, v_rel, false);
      EXECUTE format($q$
        SELECT jsonb_build_object(
          'total', count(*),
          'embedded', count(*) FILTER (WHERE s.%1$I IS NOT NULL),
          'completedButNull', count(*) FILTER (WHERE s.%1$I IS NULL AND EXISTS (
              SELECT 1 FROM public.embedding_items i WHERE i.target_id = $1 AND i.row_id = s.%2$I::text AND i.status = 'completed')))
          FROM %3$s AS s
      $q$, t.embedding_column, t.id_column, v_rel)
      INTO v_src USING t.id;
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

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201110000', 'durable_jobs')
ON CONFLICT (version) DO NOTHING;
