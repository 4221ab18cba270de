-- Embedding sync: least privilege and safety, part 4: status per target (one broken target is
-- reported as broken, with its error, and every other target's figures still come back), the
-- completed-but-NULL repair through the target's identity, and privileges:
--   * anon and authenticated: nothing (functions, tables, sequences);
--   * service_role: may call the API and read the internal tables, never write them directly (so it
--     cannot edit a target's SQL or another target's state behind the API's checks);
--   * every SECURITY DEFINER function searches only pg_catalog and pg_temp: no object a caller could
--     create in public is ever picked up by name.

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
        'deadLetter', count(*) FILTER (WHERE status = 'dead_letter'))
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

-- Rows whose state says completed while the source's embedding column is NULL are queued again with
-- their content hash cleared, so the claim cannot skip them as unchanged. Bounded per call and SKIP
-- LOCKED like every other retry.
CREATE OR REPLACE FUNCTION public.embedding_retry_completed_null(p_target text, p_limit integer DEFAULT 1000)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass := public.embedding_require_relation(t);
  v_n integer;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100000 THEN
    RAISE EXCEPTION 'retry limit % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use 1..100000';
  END IF;
  PERFORM public.embedding_assert_access(t, v_rel, false);
  EXECUTE format($q$
    WITH pick AS (
      SELECT i.row_id FROM public.embedding_items i
        JOIN %1$s AS s ON s.%2$I = i.row_id::%3$s
       WHERE i.target_id = $1 AND i.status = 'completed' AND s.%4$I IS NULL
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
  $q$, v_rel, t.id_column, t.id_type, t.embedding_column)
  INTO v_n USING t.id, p_limit;
  RETURN jsonb_build_object('requeued', v_n);
END $$;

CREATE OR REPLACE FUNCTION public.embedding_apply_privileges()
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  f record;
  r text;
  v_objects text;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure AS sig, p.prosecdef AS definer FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'public' AND (p.proname LIKE 'embedding\_%' OR p.proname = 'increment_embedding_job_progress')
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
    IF f.definer THEN
      EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f.sig);
    END IF;
  END LOOP;
  SELECT string_agg(format('public.%I', c.relname), ', ' ORDER BY c.relname) INTO v_objects
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname LIKE 'embedding\_%';
  IF v_objects IS NOT NULL THEN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('REVOKE ALL ON %s FROM %I', v_objects, r);
      END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
      EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s FROM service_role', v_objects);
      EXECUTE format('GRANT SELECT ON %s TO service_role', v_objects);
    END IF;
  END IF;
  SELECT string_agg(format('public.%I', c.relname), ', ' ORDER BY c.relname) INTO v_objects
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind = 'S' AND c.relname LIKE 'embedding\_%';
  IF v_objects IS NOT NULL THEN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %I', v_objects, r);
      END IF;
    END LOOP;
  END IF;
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201100300', 'safety_status_and_privileges')
ON CONFLICT (version) DO NOTHING;
