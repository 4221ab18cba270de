-- Embedding sync: status API (per-target counts, coverage and the completed-but-NULL mismatch).


-- Per target: state counts from the (target_id, status) index, rows embedded in the source, and the
-- silent-failure mismatch: rows whose state says completed while the source's
-- embedding column is NULL. Plus the latest jobs.
CREATE OR REPLACE FUNCTION public.embedding_status(p_target text DEFAULT NULL, p_jobs integer DEFAULT 5)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  t public.embedding_targets;
  v_out jsonb := '[]'::jsonb;
  v_counts jsonb;
  v_src jsonb;
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
    EXECUTE format($q$
      SELECT jsonb_build_object(
        'total', count(*),
        'embedded', count(*) FILTER (WHERE s.%1$I IS NOT NULL),
        'completedButNull', count(*) FILTER (WHERE s.%1$I IS NULL AND EXISTS (
            SELECT 1 FROM public.embedding_items i WHERE i.target_id = $1 AND i.row_id = s.%2$I::text AND i.status = 'completed')))
        FROM %3$I.%4$I AS s
    $q$, t.embedding_column, t.id_column, t.schema_name, t.table_name)
    INTO v_src USING t.id;
    v_out := v_out || jsonb_build_array(jsonb_build_object(
      'target', t.name, 'table', format('%I.%I', t.schema_name, t.table_name), 'provider', t.provider,
      'model', t.model, 'dimensions', t.dimensions,
      'total', (v_src ->> 'total')::bigint, 'embedded', (v_src ->> 'embedded')::bigint,
      'coverage', CASE WHEN (v_src ->> 'total')::bigint = 0 THEN 100
                       ELSE round(100.0 * (v_src ->> 'embedded')::bigint / (v_src ->> 'total')::bigint, 2) END,
      'untracked', greatest((v_src ->> 'total')::bigint - (v_counts ->> 'tracked')::bigint, 0),
      'completedButNull', (v_src ->> 'completedButNull')::bigint,
      'nextRetryAt', (SELECT min(next_retry_at) FROM public.embedding_items WHERE target_id = t.id AND status = 'failed'),
      'jobs', (SELECT coalesce(jsonb_agg(public.embedding_job_json(j) ORDER BY j.created_at DESC), '[]'::jsonb)
                 FROM (SELECT * FROM public.embedding_jobs WHERE target_id = t.id ORDER BY created_at DESC LIMIT p_jobs) j)
    ) || v_counts);
  END LOOP;
  IF p_target IS NOT NULL AND jsonb_array_length(v_out) = 0 THEN
    PERFORM public.embedding_target_row(p_target);
  END IF;
  RETURN v_out;
END $$;

-- The migration runner records each file's sha256 here, so a released migration edited afterwards is
-- reported (embeddings doctor) instead of silently never reaching this database.
ALTER TABLE public.embedding_schema_migrations ADD COLUMN IF NOT EXISTS checksum text;

CREATE OR REPLACE FUNCTION public.embedding_schema_version()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT jsonb_build_object('version', (SELECT max(version) FROM public.embedding_schema_migrations),
    'versions', (SELECT coalesce(jsonb_agg(version ORDER BY version), '[]'::jsonb) FROM public.embedding_schema_migrations),
    'checksums', (SELECT coalesce(jsonb_object_agg(version, checksum), '{}'::jsonb) FROM public.embedding_schema_migrations
                   WHERE checksum IS NOT NULL),
    'vector', EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector'),
    'server', current_setting('server_version'))
$$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261123010600', 'status_api')
ON CONFLICT (version) DO NOTHING;
