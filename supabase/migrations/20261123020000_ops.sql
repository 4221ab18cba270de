-- Embedding sync: operations (issue 5): rate, activity and queue counts for /status, /metrics,
-- health and alerts, and the repair of rows whose state says completed while the embedding is NULL.
--
-- Every figure comes from embedding_items indexes, never from the source table: /status and /metrics
-- are scraped every few seconds and must not cost a scan of a million-row table each time (only
-- embedding_status, in the core migration, reads the source for coverage).

-- Rows embedded by a worker carry their token count; rows seeded as "already embedded" do not
-- (embedding_enqueue sets embedded_at but no tokens). Partial on tokens IS NOT NULL, so seeding a
-- table that was embedded elsewhere never shows up as a burst of throughput, and INCLUDE (tokens)
-- lets the token total be an index-only scan.
CREATE INDEX IF NOT EXISTS embedding_items_embedded_idx
  ON public.embedding_items (target_id, embedded_at) INCLUDE (tokens)
  WHERE tokens IS NOT NULL;

-- Throughput over the last p_minutes. The divisor is the span actually covered (from the first row
-- embedded in the window to now, at least 10 s), not the whole window: a job that started two
-- minutes ago would otherwise report a seventh of its real rate against a 15-minute window.
CREATE OR REPLACE FUNCTION public.embedding_rate(p_target text, p_minutes integer DEFAULT 15)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n bigint;
  v_tokens bigint;
  v_first timestamptz;
  v_span numeric;
BEGIN
  IF p_minutes IS NULL OR p_minutes < 1 OR p_minutes > 10080 THEN
    RAISE EXCEPTION 'rate window % is out of range', p_minutes USING ERRCODE = '22023', HINT = 'use 1..10080 minutes';
  END IF;
  SELECT count(*), coalesce(sum(tokens), 0), min(embedded_at)
    INTO v_n, v_tokens, v_first
    FROM public.embedding_items
   WHERE target_id = t.id AND tokens IS NOT NULL AND embedded_at >= now() - make_interval(mins => p_minutes);
  v_span := CASE WHEN v_n = 0 THEN p_minutes * 60
                 ELSE greatest(extract(epoch FROM now() - v_first), 10) END;
  RETURN jsonb_build_object(
    'target', t.name, 'minutes', p_minutes, 'embedded', v_n, 'tokens', v_tokens,
    'windowSeconds', round(v_span, 1), 'perMinute', round(v_n * 60 / v_span, 2),
    'lastEmbeddedAt', (SELECT max(embedded_at) FROM public.embedding_items WHERE target_id = t.id AND tokens IS NOT NULL));
END $$;

-- What health needs: tokens spent on the rows embedded now, when a row was last embedded, and how
-- long due work has waited without any row being embedded (idleSeconds). Due work is a pending or
-- failed row whose retry time passed, or a lease that expired; rows in backoff or under a live
-- lease are not waiting on anyone yet. Durations are computed here, on the database clock, so a
-- skewed app server clock cannot raise a false "stalled" alarm.
CREATE OR REPLACE FUNCTION public.embedding_activity(p_target text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rows bigint;
  v_tokens bigint;
  v_last timestamptz;
  v_due timestamptz;
BEGIN
  SELECT count(*), coalesce(sum(tokens), 0), max(embedded_at)
    INTO v_rows, v_tokens, v_last
    FROM public.embedding_items WHERE target_id = t.id AND tokens IS NOT NULL;
  -- The row the next claim would take (claim order on the due index, one row read), not min()
  -- over every due row: if that row has waited an hour, the workers have stalled.
  v_due := least(
    (SELECT next_retry_at FROM public.embedding_items
      WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()
      ORDER BY priority DESC, next_retry_at LIMIT 1),
    (SELECT min(locked_until) FROM public.embedding_items
      WHERE target_id = t.id AND status = 'processing' AND locked_until < now()));
  RETURN jsonb_build_object(
    'target', t.name, 'embeddedRows', v_rows, 'tokens', v_tokens, 'lastEmbeddedAt', v_last,
    'oldestDueAt', v_due,
    'idleSeconds', CASE WHEN v_due IS NULL THEN 0
                        ELSE floor(extract(epoch FROM now() - greatest(v_due, coalesce(v_last, v_due)))) END,
    'now', now());
END $$;

-- Row state counts for callers that drive batches without a job (POST /batch): an index-only scan
-- of (target_id, status), proportional to the target's tracked rows, never to the source table.
CREATE OR REPLACE FUNCTION public.embedding_queue_counts(p_target text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v jsonb;
BEGIN
  SELECT jsonb_build_object(
      'target', t.name,
      'tracked', count(*),
      'pending', count(*) FILTER (WHERE status = 'pending'),
      'processing', count(*) FILTER (WHERE status = 'processing'),
      'failed', count(*) FILTER (WHERE status = 'failed'),
      'deadLetter', count(*) FILTER (WHERE status = 'dead_letter'),
      'completed', count(*) FILTER (WHERE status = 'completed'),
      'remaining', count(*) FILTER (WHERE status IN ('pending', 'processing', 'failed')))
    INTO v FROM public.embedding_items WHERE target_id = t.id;
  RETURN v;
END $$;

-- The 001 report's silent failure, repaired: rows whose state says completed while the source's
-- embedding column is NULL are queued again with their content hash cleared, so the claim cannot
-- skip them as unchanged. Bounded per call (p_limit) and SKIP LOCKED like every other retry.
CREATE OR REPLACE FUNCTION public.embedding_retry_completed_null(p_target text, p_limit integer DEFAULT 1000)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100000 THEN
    RAISE EXCEPTION 'retry limit % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use 1..100000';
  END IF;
  EXECUTE format($q$
    WITH pick AS (
      SELECT i.row_id FROM public.embedding_items i
        JOIN %1$I.%2$I AS s ON s.%3$I = i.row_id::%4$s
       WHERE i.target_id = $1 AND i.status = 'completed' AND s.%5$I IS NULL
       ORDER BY i.row_id
       LIMIT $2
         FOR UPDATE OF i SKIP LOCKED
    ), upd AS (
      UPDATE public.embedding_items i
         SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL,
             content_hash = NULL, updated_at = now()
        FROM pick WHERE i.target_id = $1 AND i.row_id = pick.row_id
      RETURNING 1
    ) SELECT count(*) FROM upd
  $q$, t.schema_name, t.table_name, t.id_column, t.id_type, t.embedding_column)
  INTO v_n USING t.id, p_limit;
  RETURN jsonb_build_object('requeued', v_n);
END $$;

-- Privileges, as in the core migration: nothing for PUBLIC, anon or authenticated; the service role
-- may call the API.
DO $$
DECLARE
  f record;
  r text;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'public'
       AND p.proname IN ('embedding_rate', 'embedding_activity', 'embedding_queue_counts', 'embedding_retry_completed_null')
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.sig);
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %I', f.sig, r);
      END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
      EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', f.sig);
    END IF;
  END LOOP;
END $$;

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261123020000', 'ops')
ON CONFLICT (version) DO NOTHING;
