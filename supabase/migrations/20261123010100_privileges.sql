-- Embedding sync: privileges, one function every migration calls last.
--
-- Nothing for PUBLIC, anon or authenticated; the service role (Supabase) may call the API. New
-- functions are executable by PUBLIC when created (a PostgreSQL default), so each migration calls
-- this after defining its functions. Internal tables: row level security is on with no policies, and
-- anon / authenticated hold no privilege on them.

CREATE OR REPLACE FUNCTION public.embedding_apply_privileges()
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  f record;
  r text;
  v_tables text;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
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
  END LOOP;
  SELECT string_agg(format('public.%I', c.relname), ', ' ORDER BY c.relname) INTO v_tables
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname LIKE 'embedding\_%';
  IF v_tables IS NOT NULL THEN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
      IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('REVOKE ALL ON %s FROM %I', v_tables, r);
      END IF;
    END LOOP;
  END IF;
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261123010100', 'privileges')
ON CONFLICT (version) DO NOTHING;
