-- Two round trips per batch in the steady state: the claim, then one call that writes the batch
-- (embedding_write: lease, content hash, dimension; never an INSERT into the user's table) and
-- records its progress and history in the same transaction (increment_embedding_job_progress),
-- answering what is left when asked. `p_progress` holds that function's own argument names; the
-- rows written are added to its increment_count.
CREATE OR REPLACE FUNCTION public.embedding_write_counted(
  p_target text,
  p_worker text,
  p_ids text[],
  p_hashes text[],
  p_vectors text[],
  p_tokens integer[],
  p_truncated boolean[],
  p_progress jsonb
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  v_w jsonb := public.embedding_write(p_target, p_worker, p_ids, p_hashes, p_vectors, p_tokens, p_truncated);
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

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201160000', 'write_counted')
ON CONFLICT (version) DO NOTHING;
