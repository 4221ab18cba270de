-- The OpenAI Batch API route: a job's rows go to the provider as remote batches (a JSONL file
-- uploaded, a batch submitted, polled, its output written back through embedding_write). Every
-- remote id is stored here before the next step, so a crash, a retry or a Replay finds what was
-- already uploaded or submitted instead of paying twice. The rows of one remote batch are leased to
-- the worker 'batch:<id>' for longer than the batch's 24 h window.

CREATE TABLE IF NOT EXISTS public.embedding_remote_batches (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  job_id uuid NOT NULL REFERENCES public.embedding_jobs (id) ON DELETE CASCADE,
  target_id integer NOT NULL REFERENCES public.embedding_targets (id) ON DELETE CASCADE,
  -- The job's n-th group: (job, seq) is what a retried step asks for again.
  seq integer NOT NULL CHECK (seq >= 0),
  -- claimed: rows leased, file not yet uploaded (or its id not yet stored); uploaded; submitted;
  -- done: output written back and the rest returned to the normal path; cancelled.
  state text NOT NULL DEFAULT 'claimed' CHECK (state IN ('claimed', 'uploaded', 'submitted', 'done', 'cancelled')),
  -- The provider's own status: validating, in_progress, finalizing, completed, expired, failed, ...
  remote_status text,
  input_file_id text,
  batch_id text,
  output_file_id text,
  error_file_id text,
  items integer NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  -- The provider's request counts, as last polled.
  completed integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  -- Written back: rows embedded, rows failed by their line's error, rows returned to the normal path.
  written integer NOT NULL DEFAULT 0,
  errored integer NOT NULL DEFAULT 0,
  returned integer NOT NULL DEFAULT 0,
  tokens bigint NOT NULL DEFAULT 0,
  last_error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  submitted_at timestamptz,
  finished_at timestamptz,
  UNIQUE (job_id, seq)
);

CREATE INDEX IF NOT EXISTS embedding_remote_batches_target_idx
  ON public.embedding_remote_batches (target_id, created_at DESC);

CREATE OR REPLACE FUNCTION public.embedding_remote_json(b public.embedding_remote_batches)
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('id', b.id, 'jobId', b.job_id,
    'target', (SELECT name FROM public.embedding_targets WHERE id = b.target_id),
    'seq', b.seq, 'state', b.state, 'remoteStatus', b.remote_status, 'inputFileId', b.input_file_id,
    'batchId', b.batch_id, 'outputFileId', b.output_file_id, 'errorFileId', b.error_file_id,
    'items', b.items, 'bytes', b.bytes, 'completed', b.completed, 'failed', b.failed,
    'written', b.written, 'errored', b.errored, 'returned', b.returned, 'tokens', b.tokens,
    'lastError', b.last_error, 'createdAt', b.created_at, 'updatedAt', b.updated_at,
    'submittedAt', b.submitted_at, 'finishedAt', b.finished_at,
    'ageSeconds', round(extract(epoch FROM (coalesce(b.finished_at, now()) - b.created_at)))::bigint)
$$;

-- The target of a job, with the caller's rights on its table checked (as every claim checks them).
CREATE OR REPLACE FUNCTION public.embedding_remote_target(p_job uuid)
RETURNS public.embedding_targets
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets;
BEGIN
  SELECT tt.* INTO t FROM public.embedding_jobs j JOIN public.embedding_targets tt ON tt.id = j.target_id
   WHERE j.id = p_job;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no embedding job %', p_job USING ERRCODE = 'P0002',
      HINT = 'list jobs with: embeddings status --json';
  END IF;
  PERFORM public.embedding_assert_access(t, public.embedding_require_relation(t), true);
  RETURN t;
END $$;

-- Opens the job's group `seq`, or returns it as stored: a retried step gets the same row back.
CREATE OR REPLACE FUNCTION public.embedding_remote_open(p_job uuid, p_seq integer)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_remote_target(p_job);
  b public.embedding_remote_batches;
BEGIN
  INSERT INTO public.embedding_remote_batches (job_id, target_id, seq) VALUES (p_job, t.id, p_seq)
  ON CONFLICT (job_id, seq) DO NOTHING;
  SELECT * INTO b FROM public.embedding_remote_batches WHERE job_id = p_job AND seq = p_seq;
  RETURN public.embedding_remote_json(b);
END $$;

-- Records what happened to a group. Ids, once stored, are never replaced by another id (a second
-- upload or submit is a bug the caller must not paper over); counts only grow; a final state stays.
CREATE OR REPLACE FUNCTION public.embedding_remote_update(p_id uuid, p_patch jsonb)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  b public.embedding_remote_batches;
  v_state text := p_patch ->> 'state';
BEGIN
  SELECT * INTO b FROM public.embedding_remote_batches WHERE id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no remote batch %', p_id USING ERRCODE = 'P0002';
  END IF;
  PERFORM public.embedding_remote_target(b.job_id);
  FOREACH v_state IN ARRAY ARRAY['inputFileId', 'batchId', 'outputFileId', 'errorFileId'] LOOP
    IF p_patch ? v_state AND p_patch ->> v_state IS NOT NULL
       AND coalesce(CASE v_state WHEN 'inputFileId' THEN b.input_file_id WHEN 'batchId' THEN b.batch_id
                                 WHEN 'outputFileId' THEN b.output_file_id ELSE b.error_file_id END,
                    p_patch ->> v_state) <> p_patch ->> v_state THEN
      RAISE EXCEPTION 'remote batch % already has % %', p_id, v_state,
        CASE v_state WHEN 'inputFileId' THEN b.input_file_id WHEN 'batchId' THEN b.batch_id
                     WHEN 'outputFileId' THEN b.output_file_id ELSE b.error_file_id END
        USING ERRCODE = '55000';
    END IF;
  END LOOP;
  v_state := p_patch ->> 'state';
  IF b.state IN ('done', 'cancelled') THEN
    v_state := b.state;
  END IF;
  UPDATE public.embedding_remote_batches SET
    state = coalesce(v_state, state),
    remote_status = coalesce(p_patch ->> 'remoteStatus', remote_status),
    input_file_id = coalesce(p_patch ->> 'inputFileId', input_file_id),
    batch_id = coalesce(p_patch ->> 'batchId', batch_id),
    output_file_id = coalesce(p_patch ->> 'outputFileId', output_file_id),
    error_file_id = coalesce(p_patch ->> 'errorFileId', error_file_id),
    items = coalesce((p_patch ->> 'items')::integer, items),
    bytes = coalesce((p_patch ->> 'bytes')::bigint, bytes),
    completed = greatest(completed, coalesce((p_patch ->> 'completed')::integer, 0)),
    failed = greatest(failed, coalesce((p_patch ->> 'failed')::integer, 0)),
    written = written + coalesce((p_patch ->> 'addWritten')::integer, 0),
    errored = errored + coalesce((p_patch ->> 'addErrored')::integer, 0),
    returned = returned + coalesce((p_patch ->> 'addReturned')::integer, 0),
    tokens = tokens + coalesce((p_patch ->> 'addTokens')::bigint, 0),
    last_error = coalesce(p_patch ->> 'lastError', last_error),
    submitted_at = CASE WHEN p_patch ? 'batchId' THEN coalesce(submitted_at, now()) ELSE submitted_at END,
    finished_at = CASE WHEN coalesce(v_state, state) IN ('done', 'cancelled') THEN coalesce(finished_at, now()) ELSE finished_at END,
    updated_at = now()
   WHERE id = p_id
  RETURNING * INTO b;
  -- Work on the job's behalf keeps it alive: a remote batch that takes hours is not a stale job.
  UPDATE public.embedding_jobs SET heartbeat_at = now() WHERE id = b.job_id AND status = 'running';
  RETURN public.embedding_remote_json(b);
END $$;

-- A target's or a job's remote batches, newest first; `p_active` only those not yet done.
CREATE OR REPLACE FUNCTION public.embedding_remote_list(
  p_target text DEFAULT NULL,
  p_job uuid DEFAULT NULL,
  p_active boolean DEFAULT false,
  p_limit integer DEFAULT 20
) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets;
  v_out jsonb;
BEGIN
  -- Reads only the service's own rows (the service role may SELECT them anyway): no check on the
  -- source table, so a target whose table is gone still shows its batches.
  IF p_target IS NOT NULL THEN
    t := public.embedding_target_row(p_target);
  END IF;
  IF p_job IS NOT NULL THEN
    SELECT tt.* INTO t FROM public.embedding_jobs j JOIN public.embedding_targets tt ON tt.id = j.target_id
     WHERE j.id = p_job;
  END IF;
  IF t.id IS NULL THEN
    RAISE EXCEPTION 'name a target or an existing job' USING ERRCODE = '22023';
  END IF;
  SELECT coalesce(jsonb_agg(public.embedding_remote_json(b) ORDER BY b.created_at DESC, b.seq DESC), '[]'::jsonb)
    INTO v_out
    FROM (SELECT * FROM public.embedding_remote_batches r
           WHERE r.target_id = t.id AND (p_job IS NULL OR r.job_id = p_job)
             AND (NOT p_active OR r.state NOT IN ('done', 'cancelled'))
             -- A group opened when nothing was left is only a marker.
             AND NOT (r.state = 'done' AND r.items = 0)
           ORDER BY r.created_at DESC, r.seq DESC LIMIT greatest(p_limit, 1)) b;
  RETURN v_out;
END $$;

-- A cancelled job's remote batches end here: their rows go back (parked by the cancel), the caller
-- cancels the provider's batches it gets back.
CREATE OR REPLACE FUNCTION public.embedding_remote_cancel(p_job uuid)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_remote_target(p_job);
  v_out jsonb;
  v_released integer;
BEGIN
  WITH c AS (
    UPDATE public.embedding_remote_batches SET state = 'cancelled', finished_at = coalesce(finished_at, now()), updated_at = now()
     WHERE job_id = p_job AND state NOT IN ('done', 'cancelled')
    RETURNING *
  ) SELECT coalesce(jsonb_agg(public.embedding_remote_json(c)), '[]'::jsonb) INTO v_out FROM c;
  WITH r AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN j.status = 'cancelled' THEN 'parked' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, next_retry_at = now(), updated_at = now()
      FROM public.embedding_jobs j
     WHERE j.id = p_job AND i.target_id = t.id AND i.status = 'processing'
       AND i.worker_id IN (SELECT 'batch:' || id FROM public.embedding_remote_batches WHERE job_id = p_job)
    RETURNING 1
  ) SELECT count(*) INTO v_released FROM r;
  RETURN jsonb_build_object('cancelled', v_out, 'released', v_released);
END $$;

-- A job's tokens embedded through remote batches (billed at the batch price) beside all its tokens.
CREATE OR REPLACE FUNCTION public.embedding_job_json(j public.embedding_jobs)
RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object('id', j.id, 'target', (SELECT name FROM public.embedding_targets WHERE id = j.target_id),
    'kind', j.kind, 'status', j.status, 'options', j.options, 'itemsTotal', j.items_total,
    'itemsProcessed', j.items_processed, 'itemsFailed', j.items_failed, 'itemsSkipped', j.items_skipped,
    'tokens', j.tokens, 'requests', j.requests, 'createdAt', j.created_at, 'startedAt', j.started_at,
    'finishedAt', j.finished_at, 'heartbeatAt', j.heartbeat_at, 'lastError', j.last_error,
    'epoch', j.epoch, 'eventId', j.event_id, 'seeded', j.seeded, 'restarts', j.restarts, 'lanes', j.lanes,
    'chunksTotal', j.chunks_total, 'chunksEmbedded', j.chunks_embedded,
    'remoteTokens', (SELECT coalesce(sum(b.tokens), 0) FROM public.embedding_remote_batches b WHERE b.job_id = j.id))
$$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201131000', 'remote_batches')
ON CONFLICT (version) DO NOTHING;
