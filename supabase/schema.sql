-- The current schema of embeddings-sync, generated from a database migrated with
-- supabase/migrations (npm run schema:dump). Do not edit: change the schema with a new migration.

CREATE TABLE public.embedding_chunks (
  target_id integer NOT NULL,
  row_id text NOT NULL,
  doc_hash text NOT NULL,
  chunk_index integer NOT NULL,
  content text NOT NULL,
  content_hash text NOT NULL,
  tokens integer,
  status text NOT NULL DEFAULT 'pending'::text,
  in_place boolean NOT NULL DEFAULT false,
  vector real[],
  priority double precision NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 3,
  next_retry_at timestamp with time zone NOT NULL DEFAULT now(),
  locked_until timestamp with time zone,
  worker_id text,
  last_error text,
  error_kind text,
  job_id uuid,
  updated_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE public.embedding_chunks ADD CONSTRAINT embedding_chunks_chunk_index_check CHECK (chunk_index >= 0);
ALTER TABLE public.embedding_chunks ADD CONSTRAINT embedding_chunks_error_kind_check CHECK (error_kind = ANY (ARRAY['transient'::text, 'permanent'::text]));
ALTER TABLE public.embedding_chunks ADD CONSTRAINT embedding_chunks_pkey PRIMARY KEY (target_id, row_id, doc_hash, chunk_index);
ALTER TABLE public.embedding_chunks ADD CONSTRAINT embedding_chunks_status_check CHECK (status = ANY (ARRAY['pending'::text, 'processing'::text, 'completed'::text, 'failed'::text, 'dead_letter'::text]));
ALTER TABLE public.embedding_chunks ADD CONSTRAINT embedding_chunks_target_id_row_id_fkey FOREIGN KEY (target_id, row_id) REFERENCES embedding_items(target_id, row_id) ON DELETE CASCADE;
CREATE INDEX embedding_chunks_due_idx ON public.embedding_chunks USING btree (target_id, priority DESC, next_retry_at) WHERE (status = ANY (ARRAY['pending'::text, 'failed'::text]));
CREATE INDEX embedding_chunks_leased_idx ON public.embedding_chunks USING btree (target_id, locked_until) WHERE (status = 'processing'::text);
CREATE INDEX embedding_chunks_status_idx ON public.embedding_chunks USING btree (target_id, status);
ALTER TABLE public.embedding_chunks ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

CREATE TABLE public.embedding_history (
  target_id integer NOT NULL,
  minute timestamp with time zone NOT NULL,
  embedded bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  dead_lettered bigint NOT NULL DEFAULT 0,
  retried bigint NOT NULL DEFAULT 0,
  tokens bigint NOT NULL DEFAULT 0,
  requests bigint NOT NULL DEFAULT 0,
  rate_limited bigint NOT NULL DEFAULT 0,
  latency_ms_sum bigint NOT NULL DEFAULT 0,
  latency_count bigint NOT NULL DEFAULT 0
);
ALTER TABLE public.embedding_history ADD CONSTRAINT embedding_history_pkey PRIMARY KEY (target_id, minute);
ALTER TABLE public.embedding_history ADD CONSTRAINT embedding_history_target_id_fkey FOREIGN KEY (target_id) REFERENCES embedding_targets(id) ON DELETE CASCADE;
ALTER TABLE public.embedding_history ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

CREATE TABLE public.embedding_items (
  target_id integer NOT NULL,
  row_id text NOT NULL,
  status text NOT NULL DEFAULT 'pending'::text,
  priority double precision NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 3,
  next_retry_at timestamp with time zone NOT NULL DEFAULT now(),
  locked_until timestamp with time zone,
  worker_id text,
  last_error text,
  error_kind text,
  content_hash text,
  model text,
  tokens integer,
  truncated boolean NOT NULL DEFAULT false,
  enqueued_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone NOT NULL DEFAULT now(),
  embedded_at timestamp with time zone,
  job_id uuid,
  chunk_hash text,
  chunk_count integer
);
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_error_kind_check CHECK (error_kind = ANY (ARRAY['transient'::text, 'permanent'::text]));
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_pkey PRIMARY KEY (target_id, row_id);
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_status_check CHECK (status = ANY (ARRAY['pending'::text, 'processing'::text, 'chunked'::text, 'completed'::text, 'failed'::text, 'dead_letter'::text, 'parked'::text]));
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_target_id_fkey FOREIGN KEY (target_id) REFERENCES embedding_targets(id) ON DELETE CASCADE;
CREATE INDEX embedding_items_content_idx ON public.embedding_items USING btree (target_id, content_hash) WHERE (status = 'completed'::text);
CREATE INDEX embedding_items_due_idx ON public.embedding_items USING btree (target_id, priority DESC, next_retry_at) WHERE (status = ANY (ARRAY['pending'::text, 'failed'::text]));
CREATE INDEX embedding_items_embedded_idx ON public.embedding_items USING btree (target_id, embedded_at) INCLUDE (tokens) WHERE (tokens IS NOT NULL);
CREATE INDEX embedding_items_job_idx ON public.embedding_items USING btree (job_id) WHERE ((job_id IS NOT NULL) AND (status = ANY (ARRAY['pending'::text, 'failed'::text, 'chunked'::text])));
CREATE INDEX embedding_items_leased_idx ON public.embedding_items USING btree (target_id, locked_until) WHERE (status = 'processing'::text);
CREATE INDEX embedding_items_open_idx ON public.embedding_items USING btree (target_id, status) WHERE (status <> 'completed'::text);
ALTER TABLE public.embedding_items ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

CREATE TABLE public.embedding_job_cancellations (
  job_id uuid NOT NULL,
  reason text,
  created_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE public.embedding_job_cancellations ADD CONSTRAINT embedding_job_cancellations_pkey PRIMARY KEY (job_id);
ALTER TABLE public.embedding_job_cancellations ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

CREATE TABLE public.embedding_job_runs (
  job_id uuid NOT NULL,
  role text NOT NULL,
  run_id text NOT NULL,
  started_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE public.embedding_job_runs ADD CONSTRAINT embedding_job_runs_job_id_fkey FOREIGN KEY (job_id) REFERENCES embedding_jobs(id) ON DELETE CASCADE;
ALTER TABLE public.embedding_job_runs ADD CONSTRAINT embedding_job_runs_pkey PRIMARY KEY (job_id, role, run_id);
ALTER TABLE public.embedding_job_runs ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

CREATE TABLE public.embedding_jobs (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  target_id integer NOT NULL,
  kind text NOT NULL DEFAULT 'backfill'::text,
  status text NOT NULL DEFAULT 'pending'::text,
  idempotency_key text,
  options jsonb NOT NULL DEFAULT '{}'::jsonb,
  items_total bigint NOT NULL DEFAULT 0,
  items_processed bigint NOT NULL DEFAULT 0,
  items_failed bigint NOT NULL DEFAULT 0,
  items_skipped bigint NOT NULL DEFAULT 0,
  tokens bigint NOT NULL DEFAULT 0,
  requests bigint NOT NULL DEFAULT 0,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  started_at timestamp with time zone,
  finished_at timestamp with time zone,
  heartbeat_at timestamp with time zone,
  last_error text,
  epoch integer NOT NULL DEFAULT 0,
  event_id text,
  seeded boolean NOT NULL DEFAULT false,
  restarts integer NOT NULL DEFAULT 0,
  lanes integer,
  chunks_total bigint NOT NULL DEFAULT 0,
  chunks_embedded bigint NOT NULL DEFAULT 0,
  estimate jsonb
);
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_idempotency_key_key UNIQUE (idempotency_key);
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_kind_check CHECK (kind = ANY (ARRAY['backfill'::text, 'run'::text, 'sweep'::text, 'recovery'::text]));
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_pkey PRIMARY KEY (id);
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_status_check CHECK (status = ANY (ARRAY['pending'::text, 'running'::text, 'completed'::text, 'failed'::text, 'cancelled'::text]));
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_target_id_fkey FOREIGN KEY (target_id) REFERENCES embedding_targets(id) ON DELETE CASCADE;
CREATE INDEX embedding_jobs_running_idx ON public.embedding_jobs USING btree (heartbeat_at) WHERE (status = 'running'::text);
CREATE INDEX embedding_jobs_target_idx ON public.embedding_jobs USING btree (target_id, created_at DESC);
ALTER TABLE public.embedding_jobs ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

CREATE TABLE public.embedding_remote_batches (
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  job_id uuid NOT NULL,
  target_id integer NOT NULL,
  seq integer NOT NULL,
  state text NOT NULL DEFAULT 'claimed'::text,
  remote_status text,
  input_file_id text,
  batch_id text,
  output_file_id text,
  error_file_id text,
  items integer NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  completed integer NOT NULL DEFAULT 0,
  failed integer NOT NULL DEFAULT 0,
  written integer NOT NULL DEFAULT 0,
  errored integer NOT NULL DEFAULT 0,
  returned integer NOT NULL DEFAULT 0,
  tokens bigint NOT NULL DEFAULT 0,
  last_error text,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone NOT NULL DEFAULT now(),
  submitted_at timestamp with time zone,
  finished_at timestamp with time zone
);
ALTER TABLE public.embedding_remote_batches ADD CONSTRAINT embedding_remote_batches_job_id_fkey FOREIGN KEY (job_id) REFERENCES embedding_jobs(id) ON DELETE CASCADE;
ALTER TABLE public.embedding_remote_batches ADD CONSTRAINT embedding_remote_batches_job_id_seq_key UNIQUE (job_id, seq);
ALTER TABLE public.embedding_remote_batches ADD CONSTRAINT embedding_remote_batches_pkey PRIMARY KEY (id);
ALTER TABLE public.embedding_remote_batches ADD CONSTRAINT embedding_remote_batches_seq_check CHECK (seq >= 0);
ALTER TABLE public.embedding_remote_batches ADD CONSTRAINT embedding_remote_batches_state_check CHECK (state = ANY (ARRAY['claimed'::text, 'uploaded'::text, 'submitted'::text, 'done'::text, 'cancelled'::text]));
ALTER TABLE public.embedding_remote_batches ADD CONSTRAINT embedding_remote_batches_target_id_fkey FOREIGN KEY (target_id) REFERENCES embedding_targets(id) ON DELETE CASCADE;
CREATE INDEX embedding_remote_batches_target_idx ON public.embedding_remote_batches USING btree (target_id, created_at DESC);
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

CREATE TABLE public.embedding_schema_migrations (
  version text NOT NULL,
  name text NOT NULL,
  applied_at timestamp with time zone NOT NULL DEFAULT now(),
  checksum text
);
ALTER TABLE public.embedding_schema_migrations ADD CONSTRAINT embedding_schema_migrations_pkey PRIMARY KEY (version);
ALTER TABLE public.embedding_schema_migrations ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

CREATE TABLE public.embedding_targets (
  id integer NOT NULL DEFAULT nextval('embedding_targets_id_seq'::regclass),
  name text NOT NULL,
  schema_name text NOT NULL,
  table_name text NOT NULL,
  id_column text NOT NULL,
  id_type text NOT NULL,
  content_columns text[],
  content_expression text,
  content_sql text NOT NULL,
  embedding_column text NOT NULL,
  embedding_kind text NOT NULL,
  embedding_type_sql text NOT NULL,
  provider text NOT NULL,
  model text NOT NULL,
  dimensions integer NOT NULL,
  max_attempts integer NOT NULL DEFAULT 3,
  backoff_seconds integer[] NOT NULL DEFAULT '{30,90,270}'::integer[],
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone NOT NULL DEFAULT now(),
  table_oid oid,
  content_refs text[],
  trust_existing boolean NOT NULL DEFAULT true,
  registered_by text,
  chunk_schema text,
  chunk_table text,
  chunk_oid oid,
  chunk_embedding_column text,
  chunk_tokens integer,
  chunk_overlap integer,
  batch_limit integer,
  batch_limit_reason text,
  batch_limit_at timestamp with time zone,
  batch_limit_successes integer NOT NULL DEFAULT 0,
  priority_expression text,
  priority_order text,
  priority_sql text
);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_batch_limit_check CHECK (batch_limit IS NULL OR batch_limit >= 1 AND batch_limit <= 10000);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_chunk_overlap_check CHECK (chunk_overlap IS NULL OR chunk_overlap >= 0 AND chunk_overlap <= 4095);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_chunk_tokens_check CHECK (chunk_tokens IS NULL OR chunk_tokens >= 16 AND chunk_tokens <= 8191);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_dimensions_check CHECK (dimensions >= 1 AND dimensions <= 16000);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_embedding_kind_check CHECK (embedding_kind = ANY (ARRAY['vector'::text, 'halfvec'::text, 'real[]'::text, 'double precision[]'::text]));
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_max_attempts_check CHECK (max_attempts >= 1 AND max_attempts <= 100);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_model_check CHECK (length(model) >= 1 AND length(model) <= 200);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_name_check CHECK (name ~ '^[a-z][a-z0-9_]{0,47}$'::text);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_name_key UNIQUE (name);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_pkey PRIMARY KEY (id);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_priority_order_check CHECK (priority_order IS NULL OR (priority_order = ANY (ARRAY['asc'::text, 'desc'::text])));
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_provider_check CHECK (provider ~ '^[a-z][a-z0-9_-]{0,31}$'::text);
ALTER TABLE public.embedding_targets ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=rm/postgres

-- sequence public.embedding_targets_id_seq grants: postgres=rwU/postgres

-- embedding_activity(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_activity(p_target text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_apply_privileges(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_apply_privileges()
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_assert_access(embedding_targets,regclass,boolean); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_assert_access(t embedding_targets, p_rel regclass, p_write boolean)
 RETURNS void
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_caller text := public.embedding_caller();
  v_col text;
  v_name text := public.embedding_relation_name(p_rel);
BEGIN
  IF NOT has_schema_privilege(v_caller, (SELECT relnamespace FROM pg_class WHERE oid = p_rel), 'USAGE') THEN
    RAISE EXCEPTION 'role % may not use the schema of %', v_caller, v_name
      USING ERRCODE = '42501', HINT = format('GRANT USAGE ON SCHEMA %I TO %I', (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_rel), v_caller);
  END IF;
  FOREACH v_col IN ARRAY coalesce(t.content_refs, t.content_columns, '{}') || ARRAY[t.id_column, t.embedding_column] LOOP
    IF NOT has_column_privilege(v_caller, p_rel, v_col, 'SELECT') THEN
      RAISE EXCEPTION 'role % may not read column % of %', v_caller, v_col, v_name
        USING ERRCODE = '42501', HINT = format('GRANT SELECT ON %s TO %I', v_name, v_caller);
    END IF;
  END LOOP;
  IF p_write AND NOT has_column_privilege(v_caller, p_rel, t.embedding_column, 'UPDATE') THEN
    RAISE EXCEPTION 'role % may not update column % of %', v_caller, t.embedding_column, v_name
      USING ERRCODE = '42501', HINT = format('GRANT UPDATE (%I) ON %s TO %I', t.embedding_column, v_name, v_caller);
  END IF;
END $function$;

-- embedding_batch_limit_success(text,integer,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_batch_limit_success(p_target text, p_size integer, p_requested integer)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  IF t.batch_limit IS NULL OR p_size < t.batch_limit THEN
    RETURN jsonb_build_object('batchLimit', t.batch_limit, 'changed', false);
  END IF;
  IF t.batch_limit_successes + 1 < 5 THEN
    UPDATE public.embedding_targets SET batch_limit_successes = batch_limit_successes + 1 WHERE id = t.id;
    RETURN jsonb_build_object('batchLimit', t.batch_limit, 'changed', false);
  END IF;
  UPDATE public.embedding_targets
     SET batch_limit = CASE WHEN ceil(batch_limit * 1.5) >= p_requested THEN NULL ELSE ceil(batch_limit * 1.5)::integer END,
         batch_limit_reason = CASE WHEN ceil(batch_limit * 1.5) >= p_requested THEN NULL
                                   ELSE 'growing back after batches without a timeout' END,
         batch_limit_at = now(), batch_limit_successes = 0
   WHERE id = t.id RETURNING * INTO t;
  RETURN jsonb_build_object('batchLimit', t.batch_limit, 'changed', true);
END $function$;

-- embedding_caller(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_caller()
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$ SELECT CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END $function$;

-- embedding_check_target(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_check_target(p_name text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets;
  v_rel regclass;
  v_crel regclass;
  v_problems jsonb := '[]'::jsonb;
  v_col text;
  v_typmod integer;
  v_typname text;
  v_name text;
  v_emb_rel regclass;
  v_emb_col text;
BEGIN
  SELECT * INTO t FROM public.embedding_targets WHERE name = p_name;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('ok', false, 'problems', jsonb_build_array(format('target "%s" is not registered', p_name)));
  END IF;
  v_rel := public.embedding_relation(t);
  IF v_rel IS NULL THEN
    RETURN jsonb_build_object('ok', false, 'problems', jsonb_build_array(format('table %I.%I no longer exists', t.schema_name, t.table_name)));
  END IF;
  v_name := public.embedding_relation_name(v_rel);
  FOREACH v_col IN ARRAY coalesce(t.content_refs, t.content_columns, '{}') || ARRAY[t.id_column, t.embedding_column] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped) THEN
      v_problems := v_problems || to_jsonb(format('column %I is missing from %s', v_col, v_name));
    END IF;
  END LOOP;
  v_emb_rel := v_rel;
  v_emb_col := t.embedding_column;
  IF t.chunk_table IS NOT NULL THEN
    v_crel := public.embedding_chunk_relation(t);
    IF v_crel IS NULL THEN
      v_problems := v_problems || to_jsonb(format('chunk table %I.%I no longer exists', t.chunk_schema, t.chunk_table));
    ELSE
      v_emb_rel := v_crel;
      v_emb_col := t.chunk_embedding_column;
      FOREACH v_col IN ARRAY ARRAY['document_id', 'chunk_index', 'content', t.chunk_embedding_column] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_crel AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped) THEN
          v_problems := v_problems || to_jsonb(format('column %I is missing from chunk table %s', v_col, public.embedding_relation_name(v_crel)));
        END IF;
      END LOOP;
    END IF;
  END IF;
  IF v_emb_rel IS NOT NULL THEN
    SELECT a.atttypmod, ty.typname INTO v_typmod, v_typname FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
     WHERE a.attrelid = v_emb_rel AND a.attname = v_emb_col AND NOT a.attisdropped;
    IF v_typname IN ('vector', 'halfvec') AND v_typmod > 0 AND v_typmod <> t.dimensions THEN
      v_problems := v_problems || to_jsonb(format('column %I is %s(%s) but the target expects %s dimensions', v_emb_col, v_typname, v_typmod, t.dimensions));
    END IF;
  END IF;
  IF jsonb_array_length(v_problems) = 0 THEN
    BEGIN
      PERFORM public.embedding_assert_access(t, v_rel, t.chunk_table IS NULL);
      IF v_crel IS NOT NULL THEN
        PERFORM public.embedding_chunk_assert(t, v_crel, true);
      END IF;
    EXCEPTION WHEN insufficient_privilege THEN
      v_problems := v_problems || to_jsonb(SQLERRM);
    END;
  END IF;
  RETURN jsonb_build_object('ok', jsonb_array_length(v_problems) = 0, 'problems', v_problems,
    'dimensions', t.dimensions, 'provider', t.provider, 'model', t.model);
END $function$;

-- embedding_chunk_assert(embedding_targets,regclass,boolean); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_assert(t embedding_targets, p_rel regclass, p_write boolean)
 RETURNS void
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE v_caller text := public.embedding_caller();
BEGIN
  IF NOT has_table_privilege(v_caller, p_rel, 'SELECT')
     OR (p_write AND NOT (has_table_privilege(v_caller, p_rel, 'INSERT') AND has_table_privilege(v_caller, p_rel, 'UPDATE')
                          AND has_table_privilege(v_caller, p_rel, 'DELETE'))) THEN
    RAISE EXCEPTION 'role % may not % the chunk table %', v_caller, CASE WHEN p_write THEN 'write' ELSE 'read' END,
      public.embedding_relation_name(p_rel)
      USING ERRCODE = '42501', HINT = format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', public.embedding_relation_name(p_rel), v_caller);
  END IF;
END $function$;

-- embedding_chunk_claim(text,text,integer,integer,text[],uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_claim(p_target text, p_worker text, p_limit integer DEFAULT 20, p_lease_seconds integer DEFAULT 300, p_ids text[] DEFAULT NULL::text[], p_job uuid DEFAULT NULL::uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_rel regclass;
  v_crel regclass;
  v_job_status text;
  v_expired integer := 0;
  v_n integer;
  v_chunks jsonb := '[]';
  v_taken integer := 0;
  v_docs jsonb := '[]';
  v_ready jsonb := '[]';
  v_ids text[];
  v_old_hashes text[];
  v_old_models text[];
  v_invalid integer := 0;
  v_read jsonb;
  v_gone text[] := '{}';
  v_unchanged text[] := '{}';
  v_blank text[] := '{}';
  v_failed jsonb := '[]';
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'claim size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use a batch size of 1..10000';
  END IF;
  IF p_worker IS NULL OR length(p_worker) = 0 THEN
    RAISE EXCEPTION 'worker id is required' USING ERRCODE = '22023';
  END IF;
  IF p_job IS NOT NULL THEN
    -- The job's status, read without a lock: every worker of the job claims at once, and the job
    -- row is only beaten at the end (embedding_job_beat), so no claim waits for another's.
    SELECT status INTO v_job_status FROM public.embedding_jobs WHERE id = p_job;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
    END IF;
    IF v_job_status <> 'running' THEN
      RETURN jsonb_build_object('chunks', '[]'::jsonb, 'docs', '[]'::jsonb, 'ready', '[]'::jsonb, 'expired', 0,
        'deleted', 0, 'skipped', 0, 'empty', 0, 'jobStatus', v_job_status);
    END IF;
  END IF;
  v_rel := public.embedding_require_relation(t);
  v_crel := public.embedding_require_chunk_relation(t);
  PERFORM public.embedding_assert_access(t, v_rel, false);
  PERFORM public.embedding_chunk_assert(t, v_crel, true);

  -- 1. Expired leases.
  FOR v_try IN 1..3 LOOP
    BEGIN
      WITH expired AS (
        SELECT row_id, doc_hash, chunk_index FROM public.embedding_chunks
         WHERE target_id = t.id AND status = 'processing' AND locked_until < now()
         ORDER BY locked_until LIMIT p_limit
           FOR UPDATE SKIP LOCKED
      ), upd AS (
        UPDATE public.embedding_chunks k
           SET attempts = k.attempts + 1,
               status = CASE WHEN k.attempts + 1 >= k.max_attempts THEN 'dead_letter' ELSE 'pending' END,
               last_error = 'lease expired: the worker holding this chunk stopped before finishing (crash, deploy or timeout)',
               error_kind = 'transient', locked_until = NULL, worker_id = NULL, next_retry_at = now(), updated_at = now()
          FROM expired e
         WHERE k.target_id = t.id AND k.row_id = e.row_id AND k.doc_hash = e.doc_hash AND k.chunk_index = e.chunk_index
        RETURNING k.row_id, k.chunk_index, k.status, k.last_error
      ), dead AS (
        UPDATE public.embedding_items i
           SET status = 'dead_letter', error_kind = 'transient', updated_at = now(),
               last_error = format('chunk %s: %s', u.chunk_index, u.last_error)
          FROM upd u WHERE u.status = 'dead_letter' AND i.target_id = t.id AND i.row_id = u.row_id AND i.status = 'chunked'
        RETURNING 1
      ) SELECT count(*) INTO v_n FROM upd;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;
  v_expired := v_expired + v_n;
  FOR v_try IN 1..3 LOOP
    BEGIN
      WITH expired AS (
        SELECT row_id FROM public.embedding_items
         WHERE target_id = t.id AND status = 'processing' AND locked_until < now()
         ORDER BY locked_until LIMIT p_limit
           FOR UPDATE SKIP LOCKED
      ), upd AS (
        UPDATE public.embedding_items i
           SET attempts = i.attempts + 1,
               status = CASE WHEN i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'pending' END,
               last_error = 'lease expired: the worker cutting this document stopped before finishing (crash, deploy or timeout)',
               error_kind = 'transient', locked_until = NULL, worker_id = NULL, next_retry_at = now(), updated_at = now()
          FROM expired e WHERE i.target_id = t.id AND i.row_id = e.row_id
        RETURNING 1
      ) SELECT count(*) INTO v_n FROM upd;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;
  v_expired := v_expired + v_n;

  -- 2. Due chunks of documents whose chunk set is current (status 'chunked', same version). A
  --    document with a dead chunk keeps its other chunks going, so retrying that one chunk is all a
  --    person has to do.
  FOR v_try IN 1..3 LOOP
    BEGIN
      WITH due AS (
        SELECT k.row_id, k.doc_hash, k.chunk_index FROM public.embedding_chunks k
          JOIN public.embedding_items i ON i.target_id = k.target_id AND i.row_id = k.row_id
         WHERE k.target_id = t.id AND k.status IN ('pending', 'failed') AND k.next_retry_at <= now()
           AND i.status IN ('chunked', 'dead_letter') AND i.chunk_hash = k.doc_hash
           AND (p_ids IS NULL OR k.row_id = ANY (p_ids))
           AND (k.job_id IS NULL OR NOT EXISTS (
                 SELECT 1 FROM public.embedding_jobs j WHERE j.id = k.job_id AND j.status = 'cancelled'))
         ORDER BY k.priority DESC, k.next_retry_at, k.row_id, k.chunk_index
         LIMIT p_limit
           FOR UPDATE OF k SKIP LOCKED
      ), upd AS (
        UPDATE public.embedding_chunks k
           SET status = 'processing', locked_until = now() + make_interval(secs => p_lease_seconds), worker_id = p_worker,
               updated_at = now()
          FROM due d
         WHERE k.target_id = t.id AND k.row_id = d.row_id AND k.doc_hash = d.doc_hash AND k.chunk_index = d.chunk_index
        RETURNING k.row_id, k.chunk_index, k.content, k.content_hash
      )
      SELECT coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'index', chunk_index, 'content', content, 'hash', content_hash)
               ORDER BY row_id, chunk_index), '[]'), count(*)
        INTO v_chunks, v_taken FROM upd;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;

  -- 3. Documents to cut.
  IF v_taken < p_limit THEN
    FOR v_try IN 1..3 LOOP
      BEGIN
        WITH due AS (
          SELECT row_id FROM public.embedding_items i
           WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()
             AND (p_ids IS NULL OR row_id = ANY (p_ids))
             AND (i.job_id IS NULL OR NOT EXISTS (
                   SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled'))
           ORDER BY priority DESC, next_retry_at
           LIMIT p_limit - v_taken
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
            FROM due d WHERE i.target_id = t.id AND i.row_id = d.row_id
          RETURNING i.row_id, i.status, i.content_hash, i.model
        )
        SELECT coalesce(array_agg(row_id) FILTER (WHERE status = 'processing'), '{}'),
               array_agg(content_hash) FILTER (WHERE status = 'processing'),
               array_agg(model) FILTER (WHERE status = 'processing'),
               count(*) FILTER (WHERE status = 'dead_letter')
          INTO v_ids, v_old_hashes, v_old_models, v_invalid FROM upd;
        EXIT;
      EXCEPTION WHEN lock_not_available THEN
        -- Locking a row another claim has just updated: see the migration's header.
        IF v_try = 3 THEN RAISE; END IF;
      END;
    END LOOP;

    IF cardinality(v_ids) > 0 THEN
      v_read := public.embedding_read_claimed(t, v_rel, v_ids, v_old_hashes, v_old_models);
      SELECT coalesce(array_agg(x), '{}') INTO v_gone FROM jsonb_array_elements_text(v_read -> 'gone') AS x;
      SELECT coalesce(array_agg(x), '{}') INTO v_unchanged FROM jsonb_array_elements_text(v_read -> 'unchanged') AS x;
      SELECT coalesce(array_agg(x), '{}') INTO v_blank FROM jsonb_array_elements_text(v_read -> 'blank') AS x;
      v_failed := v_read -> 'failed';
      v_docs := v_read -> 'items';

      IF cardinality(v_gone) + cardinality(v_blank) > 0 THEN
        BEGIN
          PERFORM public.embedding_chunk_delete_docs(t, v_crel, v_gone || v_blank);
          DELETE FROM public.embedding_items i WHERE i.target_id = t.id AND i.row_id = ANY (v_gone)
             AND i.status = 'processing' AND i.worker_id = p_worker;
          -- An empty document has no chunks: that is its complete state.
          UPDATE public.embedding_items i
             SET status = 'completed', attempts = 0, locked_until = NULL, worker_id = NULL, last_error = NULL,
                 error_kind = NULL, content_hash = NULL, chunk_hash = NULL, chunk_count = 0, tokens = 0,
                 model = t.model, embedded_at = now(), updated_at = now()
           WHERE i.target_id = t.id AND i.row_id = ANY (v_blank) AND i.status = 'processing' AND i.worker_id = p_worker;
          DELETE FROM public.embedding_chunks k WHERE k.target_id = t.id AND k.row_id = ANY (v_blank);
        EXCEPTION WHEN lock_not_available THEN
          -- A swap of one of them holds its chunk rows right now: later.
          UPDATE public.embedding_items i
             SET status = 'pending', locked_until = NULL, worker_id = NULL, next_retry_at = now() + interval '5 seconds',
                 updated_at = now()
           WHERE i.target_id = t.id AND i.row_id = ANY (v_gone || v_blank) AND i.status = 'processing' AND i.worker_id = p_worker;
          v_gone := '{}';
          v_blank := '{}';
        END;
      END IF;
      IF cardinality(v_unchanged) > 0 THEN
        UPDATE public.embedding_items i
           SET status = 'completed', attempts = 0, locked_until = NULL, worker_id = NULL, last_error = NULL,
               error_kind = NULL, updated_at = now()
         WHERE i.target_id = t.id AND i.row_id = ANY (v_unchanged) AND i.status = 'processing' AND i.worker_id = p_worker;
      END IF;
      IF jsonb_array_length(v_failed) > 0 THEN
        UPDATE public.embedding_items i
           SET status = 'dead_letter', locked_until = NULL, worker_id = NULL, error_kind = 'permanent',
               last_error = left(f ->> 'error', 2000) || '; the row is queued again when its content changes',
               content_hash = NULL, updated_at = now()
          FROM jsonb_array_elements(v_failed) AS f
         WHERE i.target_id = t.id AND i.row_id = f ->> 'id' AND i.status = 'processing' AND i.worker_id = p_worker;
      END IF;
    END IF;

    -- 4. Documents embedded but not swapped.
    IF v_taken + jsonb_array_length(v_docs) < p_limit THEN
      SELECT coalesce(jsonb_agg(r.row_id), '[]') INTO v_ready FROM (
        SELECT i.row_id FROM public.embedding_items i
         WHERE i.target_id = t.id AND i.status = 'chunked'
           AND (p_ids IS NULL OR i.row_id = ANY (p_ids))
           AND NOT EXISTS (SELECT 1 FROM public.embedding_chunks k
                            WHERE k.target_id = i.target_id AND k.row_id = i.row_id AND k.doc_hash = i.chunk_hash
                              AND k.status <> 'completed')
         LIMIT 10) AS r;
    END IF;
  END IF;

  PERFORM public.embedding_job_beat(p_job);
  RETURN jsonb_build_object('chunks', v_chunks, 'docs', v_docs, 'ready', v_ready, 'expired', v_expired,
    'deleted', cardinality(v_gone), 'skipped', cardinality(v_unchanged),
    'empty', cardinality(v_blank), 'invalid', v_invalid + jsonb_array_length(v_failed), 'jobStatus', v_job_status);
END $function$;

-- embedding_chunk_delete_docs(embedding_targets,regclass,text[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_delete_docs(t embedding_targets, p_rel regclass, p_ids text[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
  IF coalesce(cardinality(p_ids), 0) = 0 THEN RETURN; END IF;
  EXECUTE format('DELETE FROM %s WHERE document_id = ANY ($1::%s[])', p_rel, t.id_type) USING p_ids;
END $function$;

-- embedding_chunk_fail(text,text,text[],integer[],text[],boolean); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_fail(p_target text, p_worker text, p_ids text[], p_indexes integer[], p_errors text[], p_permanent boolean DEFAULT false)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_failed integer;
  v_dead integer;
BEGIN
  WITH u AS (
    SELECT * FROM unnest(p_ids, p_indexes, p_errors) AS x(id, idx, err)
  ), upd AS (
    UPDATE public.embedding_chunks k
       SET attempts = k.attempts + 1,
           status = CASE WHEN p_permanent OR k.attempts + 1 >= k.max_attempts THEN 'dead_letter' ELSE 'failed' END,
           error_kind = CASE WHEN p_permanent THEN 'permanent' ELSE 'transient' END,
           last_error = left(coalesce(u.err, 'unknown error'), 2000),
           next_retry_at = now() + make_interval(secs => t.backoff_seconds[least(k.attempts + 1, cardinality(t.backoff_seconds))]),
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM u
     WHERE k.target_id = t.id AND k.row_id = u.id AND k.chunk_index = u.idx AND k.status = 'processing' AND k.worker_id = p_worker
    RETURNING k.row_id, k.chunk_index, k.status, k.error_kind, k.last_error
  ), dead AS (
    UPDATE public.embedding_items i
       SET status = 'dead_letter', error_kind = u.error_kind, updated_at = now(),
           last_error = left(format('chunk %s: %s', u.chunk_index, u.last_error), 2000)
      FROM (SELECT DISTINCT ON (row_id) * FROM upd WHERE status = 'dead_letter' ORDER BY row_id, chunk_index) AS u
     WHERE i.target_id = t.id AND i.row_id = u.row_id AND i.status = 'chunked'
    RETURNING 1
  )
  SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'dead_letter')
    INTO v_failed, v_dead FROM upd;
  RETURN jsonb_build_object('failed', v_failed, 'deadLettered', v_dead);
END $function$;

-- embedding_chunk_finalize(text,text[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_finalize(p_target text, p_ids text[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  v_id text;
  v_begin jsonb;
  v_end jsonb;
  v_out jsonb := jsonb_build_object('completed', '[]'::jsonb, 'stale', '[]'::jsonb, 'gone', '[]'::jsonb,
    'busy', '[]'::jsonb, 'notReady', '[]'::jsonb, 'chunks', 0, 'written', 0);
  v_key text;
BEGIN
  FOREACH v_id IN ARRAY coalesce(p_ids, '{}') LOOP
    BEGIN
      v_begin := public.embedding_chunk_swap_begin(p_target, v_id);
      IF v_begin ->> 'state' = 'ready' THEN
        v_out := jsonb_set(v_out, '{written}', to_jsonb((v_out ->> 'written')::bigint + (public.embedding_chunk_swap_part(
          p_target, v_id, v_begin ->> 'hash', 0, (v_begin ->> 'count')::integer - 1) ->> 'written')::bigint));
        v_end := public.embedding_chunk_swap_end(p_target, v_id, v_begin ->> 'hash');
        v_key := CASE WHEN v_end ->> 'state' = 'completed' THEN 'completed' ELSE 'stale' END;
        v_out := jsonb_set(v_out, '{chunks}', to_jsonb((v_out ->> 'chunks')::bigint + (v_end ->> 'chunks')::bigint));
      ELSE
        v_key := CASE v_begin ->> 'state' WHEN 'not-ready' THEN 'notReady' ELSE v_begin ->> 'state' END;
      END IF;
    EXCEPTION WHEN lock_not_available THEN
      v_key := 'busy';
    END;
    v_out := jsonb_set(v_out, ARRAY[v_key], (v_out -> v_key) || to_jsonb(v_id));
  END LOOP;
  RETURN v_out;
END $function$;

-- embedding_chunk_plan(text,text,jsonb,integer,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_plan(p_target text, p_worker text, p_docs jsonb, p_take integer DEFAULT 0, p_lease_seconds integer DEFAULT 300)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_crel regclass := public.embedding_require_chunk_relation(t);
  d record;
  v_job uuid;
  v_max integer;
  v_prio double precision;
  v_planned integer := 0;
  v_reused integer := 0;
  v_n integer;
  v_r integer;
  v_current text[] := '{}';
  v_ready text[] := '{}';
  v_stale text[] := '{}';
  v_chunks jsonb := '[]';
BEGIN
  PERFORM public.embedding_chunk_assert(t, v_crel, true);
  FOR d IN SELECT * FROM jsonb_to_recordset(p_docs -> 'pages') AS x(id text, hash text, "from" integer, chunks jsonb, last boolean) LOOP
    UPDATE public.embedding_items i SET locked_until = now() + make_interval(secs => p_lease_seconds), updated_at = now()
     WHERE i.target_id = t.id AND i.row_id = d.id AND i.status = 'processing' AND i.worker_id = p_worker
    RETURNING i.job_id, i.max_attempts, i.priority INTO v_job, v_max, v_prio;
    IF NOT FOUND THEN
      v_stale := v_stale || d.id;
      CONTINUE;
    END IF;
    EXECUTE format($q$
      WITH new AS (
        SELECT $5 + (x.o - 1)::integer AS idx, x.c ->> 'content' AS content, md5(x.c ->> 'content') AS h,
               (x.c ->> 'tokens')::integer AS tokens
          FROM jsonb_array_elements($1) WITH ORDINALITY AS x(c, o)
      ), cur AS (
        SELECT c.chunk_index AS idx, md5(c.content) AS h FROM %1$s AS c WHERE c.document_id = $2::%2$s
      ), prev AS (
        SELECT DISTINCT ON (content_hash) content_hash AS h, vector FROM public.embedding_chunks
         WHERE target_id = $3 AND row_id = $2 AND doc_hash <> $4 AND status = 'completed' AND vector IS NOT NULL
         ORDER BY content_hash
      ), ins AS (
        INSERT INTO public.embedding_chunks AS k (target_id, row_id, doc_hash, chunk_index, content, content_hash, tokens,
            status, in_place, vector, max_attempts, job_id, priority)
        SELECT $3, $2, $4, n.idx, n.content, n.h, n.tokens,
               CASE WHEN same.idx IS NOT NULL OR moved.v IS NOT NULL OR prev.vector IS NOT NULL THEN 'completed' ELSE 'pending' END,
               same.idx IS NOT NULL,
               CASE WHEN same.idx IS NULL THEN coalesce(moved.v, prev.vector) END,
               $6, $7, $8
          FROM new n
          LEFT JOIN cur AS same ON same.idx = n.idx AND same.h = n.h
          LEFT JOIN LATERAL (
            SELECT c.%3$I::real[] AS v FROM %1$s AS c
             WHERE same.idx IS NULL AND c.document_id = $2::%2$s
               AND c.chunk_index = (SELECT o.idx FROM cur AS o WHERE o.h = n.h ORDER BY o.idx LIMIT 1)
          ) AS moved ON true
          LEFT JOIN prev ON prev.h = n.h AND same.idx IS NULL AND moved.v IS NULL
        ON CONFLICT (target_id, row_id, doc_hash, chunk_index) DO UPDATE
          SET status = CASE WHEN k.status IN ('completed', 'processing') THEN k.status ELSE 'pending' END,
              attempts = CASE WHEN k.status = 'completed' THEN k.attempts ELSE 0 END,
              next_retry_at = now(), last_error = NULL, error_kind = NULL, job_id = EXCLUDED.job_id, updated_at = now(),
              priority = EXCLUDED.priority
        RETURNING k.status
      ) SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM ins
    $q$, v_crel, t.id_type, t.chunk_embedding_column)
    INTO v_n, v_r USING d.chunks, d.id, t.id, d.hash, coalesce(d."from", 0), v_max, v_job, v_prio;
    v_planned := v_planned + v_n;
    v_reused := v_reused + v_r;
    IF coalesce(d.last, true) THEN
      DELETE FROM public.embedding_chunks WHERE target_id = t.id AND row_id = d.id AND doc_hash <> d.hash;
      UPDATE public.embedding_items i
         SET status = 'chunked', chunk_hash = d.hash,
             chunk_count = coalesce(d."from", 0) + jsonb_array_length(d.chunks),
             locked_until = NULL, worker_id = NULL, updated_at = now()
       WHERE i.target_id = t.id AND i.row_id = d.id;
      v_current := v_current || d.id;
      IF NOT EXISTS (SELECT 1 FROM public.embedding_chunks k
                      WHERE k.target_id = t.id AND k.row_id = d.id AND k.doc_hash = d.hash AND k.status <> 'completed') THEN
        v_ready := v_ready || d.id;
      END IF;
    END IF;
  END LOOP;

  IF coalesce(p_take, 0) > 0 AND cardinality(v_current) > 0 THEN
    WITH due AS (
      SELECT k.row_id, k.doc_hash, k.chunk_index FROM public.embedding_chunks k
        JOIN public.embedding_items i ON i.target_id = k.target_id AND i.row_id = k.row_id
       WHERE k.target_id = t.id AND k.row_id = ANY (v_current) AND k.status = 'pending'
         AND i.status = 'chunked' AND i.chunk_hash = k.doc_hash
       ORDER BY k.row_id, k.chunk_index
       LIMIT p_take
         FOR UPDATE OF k SKIP LOCKED
    ), upd AS (
      UPDATE public.embedding_chunks k
         SET status = 'processing', locked_until = now() + make_interval(secs => p_lease_seconds), worker_id = p_worker,
             updated_at = now()
        FROM due AS u
       WHERE k.target_id = t.id AND k.row_id = u.row_id AND k.doc_hash = u.doc_hash AND k.chunk_index = u.chunk_index
      RETURNING k.row_id, k.chunk_index, k.content, k.content_hash
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'index', chunk_index, 'content', content, 'hash', content_hash)
             ORDER BY row_id, chunk_index), '[]')
      INTO v_chunks FROM upd;
  END IF;
  RETURN jsonb_build_object('planned', v_planned, 'reused', v_reused, 'chunks', v_chunks, 'ready', to_jsonb(v_ready),
    'stale', to_jsonb(v_stale));
END $function$;

-- embedding_chunk_relation(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_relation(t embedding_targets)
 RETURNS regclass
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE v_rel oid;
BEGIN
  IF t.chunk_table IS NULL THEN RETURN NULL; END IF;
  SELECT oid INTO v_rel FROM pg_class WHERE oid = t.chunk_oid AND relkind IN ('r', 'p');
  IF FOUND THEN RETURN v_rel::regclass; END IF;
  RETURN to_regclass(format('%I.%I', t.chunk_schema, t.chunk_table));
END $function$;

-- embedding_chunk_release(text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_release(p_target text, p_worker text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_chunks integer;
  v_docs integer;
BEGIN
  WITH upd AS (
    UPDATE public.embedding_chunks k
       SET status = CASE WHEN k.attempts > 0 THEN 'failed' ELSE 'pending' END, locked_until = NULL, worker_id = NULL,
           updated_at = now()
     WHERE k.target_id = t.id AND k.status = 'processing' AND k.worker_id = p_worker
    RETURNING 1
  ) SELECT count(*) INTO v_chunks FROM upd;
  WITH upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN i.job_id IS NOT NULL AND EXISTS (
                           SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled') THEN 'parked'
                         WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.status = 'processing' AND i.worker_id = p_worker
    RETURNING 1
  ) SELECT count(*) INTO v_docs FROM upd;
  RETURN jsonb_build_object('released', v_chunks + v_docs, 'chunks', v_chunks, 'documents', v_docs);
END $function$;

-- embedding_chunk_retry(text,text,integer[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_retry(p_target text, p_id text, p_indexes integer[] DEFAULT NULL::integer[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_hash text;
  v_n integer;
BEGIN
  SELECT chunk_hash INTO v_hash FROM public.embedding_items
   WHERE target_id = t.id AND row_id = p_id AND chunk_hash IS NOT NULL AND status IN ('chunked', 'failed', 'dead_letter')
     FOR UPDATE;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('requeued', 0, 'indexes', '[]'::jsonb);
  END IF;
  WITH upd AS (
    UPDATE public.embedding_chunks k
       SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL, updated_at = now()
     WHERE k.target_id = t.id AND k.row_id = p_id AND k.doc_hash = v_hash AND k.status IN ('failed', 'dead_letter')
       AND (p_indexes IS NULL OR k.chunk_index = ANY (p_indexes))
    RETURNING k.chunk_index
  ) SELECT count(*) INTO v_n FROM upd;
  IF v_n > 0 THEN
    UPDATE public.embedding_items SET status = 'chunked', attempts = 0, last_error = NULL, error_kind = NULL,
           next_retry_at = now(), updated_at = now()
     WHERE target_id = t.id AND row_id = p_id;
  END IF;
  RETURN jsonb_build_object('requeued', v_n,
    'indexes', (SELECT coalesce(jsonb_agg(chunk_index ORDER BY chunk_index), '[]') FROM public.embedding_chunks
                 WHERE target_id = t.id AND row_id = p_id AND doc_hash = v_hash AND status = 'pending'
                   AND (p_indexes IS NULL OR chunk_index = ANY (p_indexes))));
END $function$;

-- embedding_chunk_swap_begin(text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_swap_begin(p_target text, p_id text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_rel regclass := public.embedding_require_relation(t);
  v_crel regclass := public.embedding_require_chunk_relation(t);
  i public.embedding_items;
  v_found boolean;
  v_hash text;
  v_changed integer;
BEGIN
  PERFORM public.embedding_chunk_assert(t, v_crel, true);
  IF NOT pg_try_advisory_xact_lock(hashtext('embedding_chunk_swap'), hashtext(t.id || ':' || p_id)) THEN
    RETURN jsonb_build_object('state', 'busy');
  END IF;
  SELECT * INTO i FROM public.embedding_items WHERE target_id = t.id AND row_id = p_id;
  IF NOT FOUND OR i.status <> 'chunked' THEN
    RETURN jsonb_build_object('state', 'not-ready', 'status', i.status);
  END IF;
  IF EXISTS (SELECT 1 FROM public.embedding_chunks k
              WHERE k.target_id = t.id AND k.row_id = p_id AND k.doc_hash = i.chunk_hash AND k.status <> 'completed') THEN
    RETURN jsonb_build_object('state', 'not-ready', 'status', i.status);
  END IF;
  -- The document as it is now: gone, or with content other than what was cut (written with its
  -- triggers off): then nothing is swapped in.
  BEGIN
    EXECUTE format('SELECT true, md5((%s)::text) FROM %s AS s WHERE s.%I = $1::%s', t.content_sql, v_rel, t.id_column, t.id_type)
      INTO v_found, v_hash USING p_id;
  EXCEPTION WHEN data_exception THEN
    v_found := true;
    v_hash := NULL;
  END;
  IF v_found IS NULL THEN
    PERFORM public.embedding_chunk_delete_docs(t, v_crel, ARRAY[p_id]);
    DELETE FROM public.embedding_items WHERE target_id = t.id AND row_id = p_id;
    RETURN jsonb_build_object('state', 'gone');
  END IF;
  IF v_hash IS DISTINCT FROM i.chunk_hash THEN
    PERFORM public.embedding_queue_row(t.id, p_id, t.max_attempts);
    RETURN jsonb_build_object('state', 'stale');
  END IF;
  EXECUTE format('DELETE FROM %s WHERE document_id = $1::%s AND chunk_index >= $2', v_crel, t.id_type)
    USING p_id, i.chunk_count;
  SELECT count(*) INTO v_changed FROM public.embedding_chunks
   WHERE target_id = t.id AND row_id = p_id AND doc_hash = i.chunk_hash AND NOT in_place;
  RETURN jsonb_build_object('state', 'ready', 'count', i.chunk_count, 'changed', v_changed, 'hash', i.chunk_hash);
END $function$;

-- embedding_chunk_swap_end(text,text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_swap_end(p_target text, p_id text, p_hash text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_tokens bigint;
  v_count integer;
  v_done boolean;
BEGIN
  SELECT coalesce(sum(tokens), 0), count(*) INTO v_tokens, v_count FROM public.embedding_chunks
   WHERE target_id = t.id AND row_id = p_id AND doc_hash = p_hash;
  UPDATE public.embedding_items
     SET status = 'completed', content_hash = p_hash, model = t.model, tokens = v_tokens, attempts = 0,
         locked_until = NULL, worker_id = NULL, last_error = NULL, error_kind = NULL, embedded_at = now(), updated_at = now()
   WHERE target_id = t.id AND row_id = p_id AND status = 'chunked' AND chunk_hash = p_hash
  RETURNING true INTO v_done;
  -- An edit that came during the swap has queued the document again: its next chunk set reuses
  -- these vectors from the chunk table, so this version's working rows can go either way.
  DELETE FROM public.embedding_chunks WHERE target_id = t.id AND row_id = p_id AND doc_hash = p_hash;
  RETURN jsonb_build_object('state', CASE WHEN v_done THEN 'completed' ELSE 'stale' END, 'chunks', v_count, 'tokens', v_tokens);
END $function$;

-- embedding_chunk_swap_part(text,text,text,integer,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_swap_part(p_target text, p_id text, p_hash text, p_from integer, p_to integer)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_crel regclass := public.embedding_require_chunk_relation(t);
  v_n integer;
BEGIN
  PERFORM public.embedding_chunk_assert(t, v_crel, true);
  EXECUTE format($q$
    INSERT INTO %1$s AS c (document_id, chunk_index, content, %2$I)
    SELECT $1::%3$s, k.chunk_index, k.content, k.vector::%4$s
      FROM public.embedding_chunks k
     WHERE k.target_id = $2 AND k.row_id = $1 AND k.doc_hash = $3 AND k.chunk_index BETWEEN $4 AND $5
       AND NOT k.in_place AND k.status = 'completed'
     ORDER BY k.chunk_index
    ON CONFLICT (document_id, chunk_index) DO UPDATE SET content = EXCLUDED.content, %2$I = EXCLUDED.%2$I
  $q$, v_crel, t.chunk_embedding_column, t.id_type, t.embedding_type_sql)
  USING p_id, t.id, p_hash, p_from, p_to;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN jsonb_build_object('written', v_n);
END $function$;

-- embedding_chunk_target(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_target(p_target text)
 RETURNS embedding_targets
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  IF t.chunk_table IS NULL THEN
    RAISE EXCEPTION 'target "%" is not chunked', t.name USING ERRCODE = '22023',
      HINT = 'register it with --chunks schema.chunk_table to embed its rows as chunks';
  END IF;
  RETURN t;
END $function$;

-- embedding_chunk_write(text,text,text[],integer[],text[],text[],integer[],real[],integer[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_chunk_write(p_target text, p_worker text, p_ids text[], p_indexes integer[], p_hashes text[], p_vectors text[] DEFAULT NULL::text[], p_tokens integer[] DEFAULT NULL::integer[], p_vectors_f4 real[] DEFAULT NULL::real[], p_vectors_dims integer[] DEFAULT NULL::integer[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_chunk_target(p_target);
  v_n integer := coalesce(cardinality(p_ids), 0);
  v_written integer;
  v_docs text[];
  v_bad_id text;
  v_bad_index integer;
  v_bad_dims integer;
  v_ready jsonb;
  v_binary boolean := p_vectors_f4 IS NOT NULL OR p_vectors_dims IS NOT NULL;
  v_offsets integer[];
BEGIN
  IF v_n = 0 THEN
    RETURN jsonb_build_object('written', 0, 'stale', 0, 'ready', '[]'::jsonb);
  END IF;
  IF v_binary AND p_vectors IS NOT NULL THEN
    RAISE EXCEPTION 'chunk write has vectors as text and as binary: send one (p_vectors, or p_vectors_f4 with p_vectors_dims)'
      USING ERRCODE = '22023';
  END IF;
  IF cardinality(p_indexes) <> v_n OR cardinality(p_hashes) <> v_n
     OR (CASE WHEN v_binary THEN coalesce(cardinality(p_vectors_dims), 0) ELSE coalesce(cardinality(p_vectors), 0) END) <> v_n
     OR (p_tokens IS NOT NULL AND cardinality(p_tokens) <> v_n) THEN
    RAISE EXCEPTION 'chunk write arrays differ in length (ids %, indexes %, hashes %, vectors %)', v_n,
      cardinality(p_indexes), cardinality(p_hashes),
      CASE WHEN v_binary THEN cardinality(p_vectors_dims) ELSE cardinality(p_vectors) END USING ERRCODE = '22023';
  END IF;
  IF v_binary THEN
    -- As in embedding_write: row k is the p_vectors_dims[k] floats after the rows before it.
    SELECT array_agg(s.total - s.len ORDER BY s.k) INTO v_offsets FROM (
      SELECT u.len, u.k, sum(u.len) OVER (ORDER BY u.k) AS total
        FROM unnest(p_vectors_dims) WITH ORDINALITY AS u(len, k)) AS s;
    IF EXISTS (SELECT 1 FROM unnest(p_vectors_dims) AS u(len) WHERE u.len IS NULL OR u.len < 0)
       OR (SELECT sum(u.len) FROM unnest(p_vectors_dims) AS u(len)) <> coalesce(cardinality(p_vectors_f4), 0) THEN
      RAISE EXCEPTION 'chunk write vector lengths add up to %, but % floats were sent',
        (SELECT sum(u.len) FROM unnest(p_vectors_dims) AS u(len)), coalesce(cardinality(p_vectors_f4), 0)
        USING ERRCODE = '22023';
    END IF;
  END IF;
  BEGIN
    -- EXECUTE, so the float4 array is one parameter of the statement; text vectors are parsed as
    -- before.
    EXECUTE format($q$
    WITH parsed AS MATERIALIZED (
      SELECT x.id, x.idx, x.h, x.tokens, x.k, b.v, coalesce(cardinality(b.v), 0) AS dims
        FROM %1$s
       CROSS JOIN LATERAL (SELECT %2$s AS v OFFSET 0) AS b
    ), upd AS (
      UPDATE public.embedding_chunks k
         SET vector = p.v, status = 'completed', tokens = coalesce(p.tokens, k.tokens), attempts = 0,
             locked_until = NULL, worker_id = NULL, last_error = NULL, error_kind = NULL, updated_at = now()
        FROM parsed p
       WHERE k.target_id = $1 AND k.row_id = p.id AND k.chunk_index = p.idx AND k.content_hash = p.h
         AND k.status = 'processing' AND k.worker_id = $2 AND p.dims = $3
      RETURNING k.row_id
    ), bad AS (
      SELECT id, idx, dims FROM parsed WHERE dims <> $3 ORDER BY k LIMIT 1
    )
    SELECT (SELECT count(*) FROM upd), (SELECT array_agg(DISTINCT row_id) FROM upd),
           (SELECT id FROM bad), (SELECT idx FROM bad), (SELECT dims FROM bad)
    $q$,
      CASE WHEN v_binary
           THEN 'unnest($4::text[], $5::integer[], $6::text[], $9::integer[], $10::integer[], $8::integer[]) WITH ORDINALITY AS x(id, idx, h, len, off, tokens, k)'
           ELSE 'unnest($4::text[], $5::integer[], $6::text[], $7::text[], $8::integer[]) WITH ORDINALITY AS x(id, idx, h, vec, tokens, k)' END,
      CASE WHEN v_binary THEN '($11::real[])[x.off + 1 : x.off + x.len]'
           ELSE 'replace(replace(x.vec, ''['', ''{''), '']'', ''}'')::real[]' END)
      INTO v_written, v_docs, v_bad_id, v_bad_index, v_bad_dims
      USING t.id, p_worker, t.dimensions, p_ids, p_indexes, p_hashes, p_vectors,
            coalesce(p_tokens, array_fill(NULL::integer, ARRAY[v_n])), p_vectors_dims, v_offsets, p_vectors_f4;
  EXCEPTION WHEN data_exception THEN
    RAISE EXCEPTION 'target "%": a chunk vector is not a list of numbers (%)', t.name, SQLERRM USING ERRCODE = '22000';
  END;
  IF v_bad_dims IS NOT NULL THEN
    RAISE EXCEPTION 'target "%": expected % dimensions, got % (document %, chunk %)', t.name, t.dimensions, v_bad_dims, v_bad_id, v_bad_index
      USING ERRCODE = '22000', HINT = format('configure the provider for %s dimensions, or alter the column to the model''s dimension', t.dimensions);
  END IF;
  SELECT coalesce(jsonb_agg(i.row_id), '[]') INTO v_ready FROM public.embedding_items i
   WHERE i.target_id = t.id AND i.row_id = ANY (coalesce(v_docs, '{}')) AND i.status = 'chunked'
     AND NOT EXISTS (SELECT 1 FROM public.embedding_chunks k
                      WHERE k.target_id = i.target_id AND k.row_id = i.row_id AND k.doc_hash = i.chunk_hash
                        AND k.status <> 'completed');
  RETURN jsonb_build_object('written', v_written, 'stale', v_n - v_written, 'ready', v_ready);
END $function$;

-- embedding_claim(text,text,integer,integer,text[],uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_claim(p_target text, p_worker text, p_limit integer DEFAULT 20, p_lease_seconds integer DEFAULT 300, p_ids text[] DEFAULT NULL::text[], p_job uuid DEFAULT NULL::uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  v_plain_id text;
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
  v_reuse jsonb;
  v_tids tid[];
  v_bad_tids tid[];
BEGIN
  -- Spellings that always fit the type; embedding_valid_id decides the rest (signs, blanks, 19 digits).
  v_plain_id := CASE t.id_type WHEN 'bigint' THEN '^-?[0-9]{1,18}$' WHEN 'integer' THEN '^-?[0-9]{1,9}$'
                               WHEN 'smallint' THEN '^-?[0-9]{1,4}$'
                               WHEN 'uuid' THEN '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                               ELSE '' END;
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'claim size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use a batch size of 1..10000';
  END IF;
  IF p_worker IS NULL OR length(p_worker) = 0 THEN
    RAISE EXCEPTION 'worker id is required' USING ERRCODE = '22023';
  END IF;
  IF p_job IS NOT NULL THEN
    -- The job's status, read without a lock: every worker of the job claims at once, and the job
    -- row is only beaten at the end (embedding_job_beat), so no claim waits for another's.
    SELECT status INTO v_job_status FROM public.embedding_jobs WHERE id = p_job;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002';
    END IF;
    IF v_job_status <> 'running' THEN
      RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', 0, 'deleted', 0, 'skipped', 0, 'empty', 0,
        'jobStatus', v_job_status);
    END IF;
  END IF;
  v_rel := public.embedding_require_relation(t);
  PERFORM public.embedding_assert_access(t, v_rel, false);

  FOR v_try IN 1..3 LOOP
    BEGIN
      -- Locked rows are updated by their ctid (the locked version's, which no one else can move):
      -- joined back by row_id, a plan made on stale statistics read every state row of the target.
      SELECT coalesce(array_agg(e.tid), '{}') INTO v_tids FROM (
        SELECT i.ctid AS tid FROM public.embedding_items i
         WHERE i.target_id = t.id AND i.status = 'processing' AND i.locked_until < now()
         ORDER BY i.locked_until
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED) AS e;
      v_expired := 0;
      IF cardinality(v_tids) > 0 THEN
        UPDATE public.embedding_items i
           SET attempts = i.attempts + 1,
               status = CASE WHEN i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'pending' END,
               last_error = 'lease expired: the worker holding this row stopped before finishing (crash, deploy or timeout)',
               error_kind = 'transient', locked_until = NULL, worker_id = NULL, next_retry_at = now(), updated_at = now()
         WHERE i.ctid = ANY (v_tids);
        GET DIAGNOSTICS v_expired = ROW_COUNT;
      END IF;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;

  -- The lease UPDATE hands back what the unchanged-content check needs: no second look at the items.
  FOR v_try IN 1..3 LOOP
    BEGIN
      SELECT coalesce(array_agg(d.tid) FILTER (WHERE d.valid), '{}'),
             coalesce(array_agg(d.tid) FILTER (WHERE NOT d.valid), '{}')
        INTO v_tids, v_bad_tids
        FROM public.embedding_pick_due(t.id, p_limit, p_ids, v_plain_id, t.id_type) AS d;
      -- By ctid, as above; the lease UPDATE hands back what the unchanged-content check needs.
      WITH upd AS (
        UPDATE public.embedding_items i
           SET status = 'processing', locked_until = now() + make_interval(secs => p_lease_seconds),
               worker_id = p_worker, updated_at = now()
         WHERE i.ctid = ANY (v_tids)
        RETURNING i.row_id, i.content_hash, i.model
      )
      SELECT coalesce(array_agg(row_id), '{}'), array_agg(content_hash), array_agg(model)
        INTO v_ids, v_old_hashes, v_old_models FROM upd;
      v_invalid := 0;
      IF cardinality(v_bad_tids) > 0 THEN
        UPDATE public.embedding_items i
           SET status = 'dead_letter', locked_until = NULL, worker_id = NULL, error_kind = 'permanent',
               last_error = format('id "%s" is not a valid %s: no source row can have it', i.row_id, t.id_type),
               updated_at = now()
         WHERE i.ctid = ANY (v_bad_tids);
        GET DIAGNOSTICS v_invalid = ROW_COUNT;
      END IF;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      -- Locking a row another claim has just updated: see the migration's header.
      IF v_try = 3 THEN RAISE; END IF;
    END;
  END LOOP;

  IF cardinality(v_ids) = 0 THEN
    PERFORM public.embedding_job_beat(p_job);
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

  -- Content another row of the target already has, embedded by the same model: its vector is
  -- copied, no provider call.
  v_reuse := public.embedding_reuse_claimed(t, v_rel, p_worker, v_read -> 'items');

  PERFORM public.embedding_job_beat(p_job);
  RETURN jsonb_build_object('items', v_reuse -> 'items', 'expired', v_expired, 'deleted', cardinality(v_gone),
    'skipped', cardinality(v_unchanged) + (v_reuse ->> 'reused')::integer,
    'reused', (v_reuse ->> 'reused')::integer,
    'empty', cardinality(v_blank) + jsonb_array_length(v_failed) + v_invalid,
    'jobStatus', v_job_status);
END $function$;

-- embedding_column_type(regclass,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_column_type(p_rel regclass, p_column text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_type oid;
  v_typmod integer;
  v_typname text;
  v_nsp text;
BEGIN
  SELECT a.atttypid, a.atttypmod, ty.typname, n.nspname INTO v_type, v_typmod, v_typname, v_nsp
    FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid JOIN pg_namespace n ON n.oid = ty.typnamespace
   WHERE a.attrelid = p_rel AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped;
  IF v_type IS NULL THEN RETURN NULL; END IF;
  IF v_typname IN ('vector', 'halfvec') THEN
    RETURN jsonb_build_object('kind', v_typname, 'typeSql', format('%I.%I', v_nsp, v_typname),
      'dims', CASE WHEN v_typmod > 0 THEN v_typmod END);
  ELSIF v_typname = '_float4' THEN
    RETURN jsonb_build_object('kind', 'real[]', 'typeSql', 'real[]', 'dims', NULL);
  ELSIF v_typname = '_float8' THEN
    RETURN jsonb_build_object('kind', 'double precision[]', 'typeSql', 'double precision[]', 'dims', NULL);
  END IF;
  RAISE EXCEPTION 'embedding column "%" of % has type %, which cannot hold an embedding', p_column,
    public.embedding_relation_name(p_rel), format_type(v_type, v_typmod)
    USING ERRCODE = '22023', HINT = 'use vector(N) or halfvec(N) from pgvector, or real[] / double precision[] with --dimensions N';
END $function$;

-- embedding_dead_letters(text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_dead_letters(p_target text, p_limit integer DEFAULT 100)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'error', last_error, 'errorKind', error_kind,
            'attempts', attempts, 'updatedAt', updated_at)
            || CASE WHEN t.chunk_table IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('chunks',
                 (SELECT coalesce(jsonb_agg(k.chunk_index ORDER BY k.chunk_index), '[]') FROM public.embedding_chunks k
                   WHERE k.target_id = t.id AND k.row_id = d.row_id AND k.doc_hash = d.chunk_hash AND k.status = 'dead_letter'))
               END
            ORDER BY updated_at DESC), '[]'::jsonb)
            FROM (SELECT * FROM public.embedding_items WHERE target_id = t.id AND status = 'dead_letter'
                   ORDER BY updated_at DESC LIMIT least(greatest(p_limit, 1), 1000)) d);
END $function$;

-- embedding_drop_triggers(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_drop_triggers(t embedding_targets)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE g record;
BEGIN
  FOR g IN
    SELECT tgname, tgrelid::regclass AS rel FROM pg_trigger
     WHERE tgname IN ('embedding_' || t.name || '_ins', 'embedding_' || t.name || '_upd',
                      'embedding_' || t.name || '_del', 'embedding_' || t.name || '_rekey')
       AND split_part(encode(tgargs, 'escape'), '\000', 1) = t.id::text
  LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', g.tgname, g.rel);
  END LOOP;
END $function$;

-- embedding_enqueue(text,text,integer,boolean,uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_enqueue(p_target text, p_after text DEFAULT NULL::text, p_limit integer DEFAULT 5000, p_reembed boolean DEFAULT false, p_job uuid DEFAULT NULL::uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
 SET plan_cache_mode TO 'force_custom_plan'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass := public.embedding_require_relation(t);
  v_trust boolean := t.trust_existing AND NOT coalesce(p_reembed, false);
  v_ids text[];
  v_has boolean[];
  v_hashes text[];
  v_ranks double precision[];
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

  v_ranks := public.embedding_page_ranks(t, v_rel, v_ids);

  WITH page AS (
    SELECT * FROM unnest(v_ids, v_has, v_hashes, v_ranks) AS p(row_id, has, hash, rank)
  ), ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, content_hash, model, embedded_at, job_id,
        priority)
    SELECT t.id, p.row_id,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN 'completed' ELSE 'pending' END,
           t.max_attempts,
           CASE WHEN v_trust AND p.has THEN p.hash END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN t.model END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN now() END,
           CASE WHEN v_trust AND p.has AND p.hash IS NOT NULL THEN NULL ELSE p_job END,
           p.rank
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
               content_hash = NULL, job_id = coalesce(p_job, i.job_id), updated_at = now(), priority = r.rank
          FROM pick JOIN unnest(v_ids, v_ranks) AS r(row_id, rank) ON r.row_id = pick.row_id
         WHERE i.target_id = t.id AND i.row_id = pick.row_id
        RETURNING 1
      ) SELECT v_requeued + count(*) INTO v_requeued FROM upd;
      EXIT WHEN attempt = 4 OR NOT EXISTS (
        SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND row_id = ANY (v_ids) AND status <> 'processing'
           AND NOT (status = 'pending' AND content_hash IS NULL AND attempts = 0));
      PERFORM pg_sleep(0.02);
    END LOOP;
  END IF;

  -- Queued rows of this page take the target's order as it is now (a priority set or changed after
  -- they were queued), except edits and rows.changed priorities outside the backlog's range, which
  -- keep their place ahead of it. Rows a worker holds are skipped: they are being embedded anyway.
  WITH pick AS (
    SELECT i.row_id, r.rank FROM public.embedding_items i
      JOIN unnest(v_ids, v_ranks) AS r(row_id, rank) ON r.row_id = i.row_id
     WHERE i.target_id = t.id AND i.status IN ('pending', 'failed', 'parked') AND i.priority <> r.rank
       AND i.priority BETWEEN -1e15 AND 1e15
     ORDER BY i.row_id
       FOR UPDATE OF i SKIP LOCKED
  )
  UPDATE public.embedding_items i SET priority = pick.rank
    FROM pick WHERE i.target_id = t.id AND i.row_id = pick.row_id;

  IF p_job IS NOT NULL AND cardinality(v_ids) < p_limit THEN
    UPDATE public.embedding_jobs SET seeded = true WHERE id = p_job;
  END IF;
  RETURN jsonb_build_object('scanned', cardinality(v_ids), 'queued', v_queued + v_requeued + v_resumed,
    'alreadyEmbedded', v_already, 'last', v_ids[cardinality(v_ids)], 'done', cardinality(v_ids) < p_limit);
END $function$;

-- embedding_estimate(text,boolean,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_estimate(p_target text, p_reembed boolean DEFAULT false, p_sample integer DEFAULT 1000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_expression_shape_problem(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_expression_shape_problem(p_expr text)
 RETURNS text
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_i integer := 1;
  v_n integer := length(p_expr);
  v_c text;
  v_quote text;
  v_depth integer := 0;
BEGIN
  IF p_expr IS NULL OR btrim(p_expr) = '' THEN RETURN 'it is empty'; END IF;
  WHILE v_i <= v_n LOOP
    v_c := substr(p_expr, v_i, 1);
    IF v_quote IS NOT NULL THEN
      IF v_c = '\' THEN RETURN 'it contains a backslash'; END IF;
      IF v_c = v_quote THEN
        IF substr(p_expr, v_i + 1, 1) = v_quote THEN v_i := v_i + 1; ELSE v_quote := NULL; END IF;
      END IF;
    ELSIF v_c IN ('''', '"') THEN v_quote := v_c;
    ELSIF v_c = '(' THEN v_depth := v_depth + 1;
    ELSIF v_c = ')' THEN
      v_depth := v_depth - 1;
      IF v_depth < 0 THEN RETURN 'it closes a parenthesis it did not open'; END IF;
    ELSIF v_c = ';' THEN RETURN 'it contains ";"';
    ELSIF v_c IN ('\', '$') THEN RETURN format('it contains "%s"', v_c);
    ELSIF v_c = '-' AND substr(p_expr, v_i + 1, 1) = '-' THEN RETURN 'it contains a comment';
    ELSIF v_c = '/' AND substr(p_expr, v_i + 1, 1) = '*' THEN RETURN 'it contains a comment';
    END IF;
    v_i := v_i + 1;
  END LOOP;
  IF v_quote IS NOT NULL THEN RETURN 'a quoted string or name is not closed'; END IF;
  IF v_depth <> 0 THEN RETURN 'its parentheses do not balance'; END IF;
  RETURN NULL;
END $function$;

-- embedding_expression_type(regclass,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_expression_type(p_rel regclass, p_expr text)
 RETURNS text
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_view text := 'embedding_prio_check_' || pg_backend_pid();
  v_type text;
BEGIN
  BEGIN
    EXECUTE format('CREATE TEMP VIEW %I AS SELECT (%s) AS p FROM %s AS s', v_view, p_expr, p_rel);
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'priority is not valid on %: %', public.embedding_relation_name(p_rel), SQLERRM
      USING ERRCODE = '22023', HINT = 'give a column, or one SQL expression over the row''s columns that yields a number or a timestamp';
  END;
  SELECT format_type(a.atttypid, NULL) INTO v_type FROM pg_attribute a
   WHERE a.attrelid = format('pg_temp.%I', v_view)::regclass AND a.attnum = 1;
  EXECUTE format('DROP VIEW pg_temp.%I', v_view);
  RETURN v_type;
END $function$;

-- embedding_fail(text,text,text[],text[],boolean); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_fail(p_target text, p_worker text, p_ids text[], p_errors text[], p_permanent boolean DEFAULT false)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_failed integer;
  v_dead integer;
BEGIN
  WITH u AS (
    SELECT * FROM unnest(p_ids, p_errors) AS x(id, err)
  ), held AS (
    SELECT unnest(public.embedding_lock_leased(t.id, p_worker, p_ids)) AS row_id
  ), upd AS (
    UPDATE public.embedding_items i
       SET attempts = i.attempts + 1,
           status = CASE WHEN p_permanent OR i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'failed' END,
           error_kind = CASE WHEN p_permanent THEN 'permanent' ELSE 'transient' END,
           last_error = left(coalesce(u.err, 'unknown error'), 2000),
           next_retry_at = now() + make_interval(secs => t.backoff_seconds[least(i.attempts + 1, cardinality(t.backoff_seconds))]),
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM u JOIN held h ON h.row_id = u.id
     WHERE i.target_id = t.id AND i.row_id = u.id
    RETURNING i.status
  )
  SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'dead_letter')
    INTO v_failed, v_dead FROM upd;
  RETURN jsonb_build_object('failed', v_failed, 'deadLettered', v_dead);
END $function$;

-- embedding_get_target(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_get_target(p_name text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
  RETURN public.embedding_target_json(public.embedding_target_row(p_name));
END $function$;

-- embedding_history(text,timestamp with time zone,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_history(p_target text, p_since timestamp with time zone DEFAULT NULL::timestamp with time zone, p_step_minutes integer DEFAULT 1)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_install_triggers(embedding_targets,regclass); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_install_triggers(t embedding_targets, p_rel regclass)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_cols text[] := coalesce(t.content_refs, t.content_columns, '{}');
  v_when text;
  v_delete text := CASE WHEN t.chunk_table IS NULL THEN 'embedding_on_row_delete' ELSE 'embedding_on_doc_delete' END;
BEGIN
  SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', c), ' OR ') INTO v_when
    FROM unnest(v_cols || t.id_column) AS c;
  EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.embedding_on_row_change(%L, %L)',
    'embedding_' || t.name || '_ins', p_rel, t.id, t.id_column);
  EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION public.%I(%L, %L)',
    'embedding_' || t.name || '_del', p_rel, v_delete, t.id, t.id_column);
  EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION public.embedding_on_row_change(%L, %L)',
    'embedding_' || t.name || '_upd',
    (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_cols || t.id_column) AS c),
    p_rel, v_when, t.id, t.id_column);
  EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %I ON %s FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) EXECUTE FUNCTION public.%I(%L, %L)',
    'embedding_' || t.name || '_rekey', t.id_column, p_rel, t.id_column, t.id_column, v_delete, t.id, t.id_column);
END $function$;

-- embedding_job_beat(uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_beat(p_job uuid)
 RETURNS void
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  UPDATE public.embedding_jobs SET heartbeat_at = now()
   WHERE id = (SELECT id FROM public.embedding_jobs
                WHERE id = p_job AND status = 'running'
                  AND coalesce(heartbeat_at, '-infinity') < now() - interval '5 seconds'
                  FOR NO KEY UPDATE SKIP LOCKED)
$function$;

-- embedding_job_cancel(uuid,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_cancel(p_job uuid, p_reason text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_job_create(text,text,text,jsonb,uuid,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_create(p_target text, p_kind text DEFAULT 'backfill'::text, p_idempotency_key text DEFAULT NULL::text, p_options jsonb DEFAULT '{}'::jsonb, p_job_id uuid DEFAULT NULL::uuid, p_event_id text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_job_estimates(uuid[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_estimates(p_jobs uuid[])
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_job_finish(uuid,text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_finish(p_job uuid, p_status text, p_error text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_job_get(uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_get(p_job uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE j public.embedding_jobs;
BEGIN
  SELECT * INTO j FROM public.embedding_jobs WHERE id = p_job;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown job %', p_job USING ERRCODE = 'P0002', HINT = 'embeddings status lists jobs';
  END IF;
  RETURN public.embedding_job_json(j);
END $function$;

-- embedding_job_json(embedding_jobs); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_json(j embedding_jobs)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT jsonb_build_object('id', j.id, 'target', (SELECT name FROM public.embedding_targets WHERE id = j.target_id),
    'kind', j.kind, 'status', j.status, 'options', j.options, 'itemsTotal', j.items_total,
    'itemsProcessed', j.items_processed, 'itemsFailed', j.items_failed, 'itemsSkipped', j.items_skipped,
    'tokens', j.tokens, 'requests', j.requests, 'createdAt', j.created_at, 'startedAt', j.started_at,
    'finishedAt', j.finished_at, 'heartbeatAt', j.heartbeat_at, 'lastError', j.last_error,
    'epoch', j.epoch, 'eventId', j.event_id, 'seeded', j.seeded, 'restarts', j.restarts, 'lanes', j.lanes,
    'chunksTotal', j.chunks_total, 'chunksEmbedded', j.chunks_embedded,
    'remoteTokens', (SELECT coalesce(sum(b.tokens), 0) FROM public.embedding_remote_batches b WHERE b.job_id = j.id))
$function$;

-- embedding_job_lane_start(uuid,text,text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_lane_start(p_job uuid, p_role text, p_run_id text, p_stale_seconds integer DEFAULT 900)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_job_park(uuid,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_park(p_job uuid, p_limit integer DEFAULT 10000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE v_n integer;
BEGIN
  WITH pick AS (
    SELECT target_id, row_id FROM public.embedding_items
     WHERE job_id = p_job AND status IN ('pending', 'failed', 'chunked')
     LIMIT least(greatest(coalesce(p_limit, 10000), 1), 100000)
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i SET status = 'parked', updated_at = now()
      FROM pick p WHERE i.target_id = p.target_id AND i.row_id = p.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('parked', v_n);
END $function$;

-- embedding_job_set_estimate(uuid,jsonb); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_set_estimate(p_job uuid, p_estimate jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_job_set_lanes(uuid,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_set_lanes(p_job uuid, p_lanes integer)
 RETURNS jsonb
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  UPDATE public.embedding_jobs SET lanes = p_lanes WHERE id = p_job
  RETURNING public.embedding_job_json(embedding_jobs)
$function$;

-- embedding_job_start(uuid,boolean,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_start(p_job uuid, p_revive boolean DEFAULT false, p_stale_seconds integer DEFAULT 900)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_jobs_expire(integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_jobs_expire(p_stale_seconds integer DEFAULT 900)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_list_targets(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_list_targets()
 RETURNS jsonb
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT coalesce(jsonb_agg(public.embedding_target_json(t) ORDER BY t.name), '[]'::jsonb) FROM public.embedding_targets t
$function$;

-- embedding_lock_leased(integer,text,text[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_lock_leased(p_target integer, p_worker text, p_ids text[])
 RETURNS text[]
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_locked text[] := '{}';
  v_more text[];
  v_rest text[] := p_ids;
BEGIN
  FOR attempt IN 1 .. 4 LOOP
    SELECT coalesce(array_agg(row_id), '{}') INTO v_more FROM (
      SELECT i.row_id FROM public.embedding_items i
       WHERE i.target_id = p_target AND i.row_id = ANY (v_rest) AND i.status = 'processing'
         AND (p_worker IS NULL OR i.worker_id = p_worker)
       ORDER BY i.row_id
         FOR UPDATE SKIP LOCKED) AS l;
    v_locked := v_locked || v_more;
    -- Every id asked for is locked (the usual case): nothing is left to look for.
    IF cardinality(v_more) = cardinality(v_rest) THEN
      v_rest := '{}';
      EXIT;
    END IF;
    SELECT coalesce(array_agg(i.row_id), '{}') INTO v_rest FROM public.embedding_items i
     WHERE i.target_id = p_target AND i.row_id = ANY (v_rest) AND NOT (i.row_id = ANY (v_locked))
       AND i.status = 'processing' AND (p_worker IS NULL OR i.worker_id = p_worker);
    EXIT WHEN cardinality(v_rest) = 0 OR attempt = 4;
    PERFORM pg_sleep(0.02);
  END LOOP;
  RETURN v_locked;
END $function$;

-- embedding_mark_pending(text,text[],double precision); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_mark_pending(p_target text, p_ids text[], p_priority double precision DEFAULT NULL::double precision)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
  v_invalid jsonb;
  v_priority double precision := CASE WHEN p_priority IS NOT NULL AND p_priority <> 'NaN'::double precision
                                      THEN greatest(-9e15::double precision, least(9e15::double precision, p_priority)) END;
BEGIN
  IF cardinality(p_ids) > 10000 THEN
    RAISE EXCEPTION 'too many ids (%) in one call', cardinality(p_ids) USING ERRCODE = '22023', HINT = 'send at most 10000 ids per event';
  END IF;
  SELECT coalesce(jsonb_agg(id ORDER BY k), '[]') INTO v_invalid FROM unnest(p_ids) WITH ORDINALITY AS x(id, k)
   WHERE NOT public.embedding_valid_id(t.id_type, id);
  WITH ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, priority)
    SELECT DISTINCT t.id, id, 'pending', t.max_attempts, coalesce(v_priority, 0) FROM unnest(p_ids) AS id
     WHERE public.embedding_valid_id(t.id_type, id)
    ON CONFLICT (target_id, row_id) DO UPDATE
      SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL, updated_at = now(),
          priority = coalesce(v_priority, i.priority)
      WHERE i.status <> 'processing'
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM ins;
  RETURN jsonb_build_object('marked', v_n, 'invalid', v_invalid);
END $function$;

-- embedding_on_doc_delete(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_on_doc_delete()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE v_max integer;
BEGIN
  BEGIN
    SELECT max_attempts INTO v_max FROM public.embedding_targets WHERE id = TG_ARGV[0]::integer;
    IF FOUND THEN
      PERFORM public.embedding_queue_row(TG_ARGV[0]::integer, to_jsonb(OLD) ->> TG_ARGV[1], v_max);
    END IF;
  EXCEPTION WHEN others THEN
    RAISE WARNING 'embedding sync: could not queue deleted document % of target %: %', to_jsonb(OLD) ->> TG_ARGV[1], TG_ARGV[0], SQLERRM;
  END;
  RETURN NULL;
END $function$;

-- embedding_on_row_change(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_on_row_change()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_max integer;
  v_sql text;
  v_rank double precision := 0;
BEGIN
  SELECT max_attempts, priority_sql INTO v_max, v_sql FROM public.embedding_targets WHERE id = TG_ARGV[0]::integer;
  IF FOUND THEN
    IF v_sql IS NOT NULL THEN
      BEGIN
        EXECUTE format('SELECT %s FROM (SELECT ($1).*) AS s', v_sql) INTO v_rank USING NEW;
      EXCEPTION WHEN others THEN
        v_rank := 0;
      END;
    END IF;
    PERFORM public.embedding_queue_row(TG_ARGV[0]::integer, to_jsonb(NEW) ->> TG_ARGV[1], v_max, v_rank);
  END IF;
  RETURN NULL;
END $function$;

-- embedding_on_row_delete(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_on_row_delete()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
  DELETE FROM public.embedding_items WHERE target_id = TG_ARGV[0]::integer AND row_id = to_jsonb(OLD) ->> TG_ARGV[1];
  RETURN NULL;
END $function$;

-- embedding_on_row_update_expr(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_on_row_update_expr()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets;
  v_old text;
  v_new text;
  v_old_id text := to_jsonb(OLD) ->> TG_ARGV[1];
  v_new_id text := to_jsonb(NEW) ->> TG_ARGV[1];
BEGIN
  SELECT * INTO t FROM public.embedding_targets WHERE id = TG_ARGV[0]::integer;
  IF NOT FOUND THEN RETURN NULL; END IF;
  IF v_old_id IS DISTINCT FROM v_new_id THEN
    DELETE FROM public.embedding_items WHERE target_id = t.id AND row_id = v_old_id;
  END IF;
  BEGIN
    EXECUTE format('SELECT (%s)::text FROM (SELECT ($1).*) AS s', t.content_sql) INTO v_old USING OLD;
    EXECUTE format('SELECT (%s)::text FROM (SELECT ($1).*) AS s', t.content_sql) INTO v_new USING NEW;
  EXCEPTION WHEN others THEN
    PERFORM public.embedding_queue_row(t.id, v_new_id, t.max_attempts);
    UPDATE public.embedding_items SET status = 'dead_letter', error_kind = 'permanent',
           last_error = left('content expression failed: ' || SQLERRM, 2000), updated_at = now()
     WHERE target_id = t.id AND row_id = v_new_id;
    RETURN NULL;
  END;
  IF v_old IS DISTINCT FROM v_new OR v_old_id IS DISTINCT FROM v_new_id THEN
    PERFORM public.embedding_queue_row(t.id, v_new_id, t.max_attempts);
  END IF;
  RETURN NULL;
END $function$;

-- embedding_page_ranks(embedding_targets,regclass,text[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_page_ranks(t embedding_targets, p_rel regclass, p_ids text[])
 RETURNS double precision[]
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_ranks double precision[] := '{}';
  v_rank double precision;
BEGIN
  IF t.priority_sql IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN coalesce(array_fill(0::double precision, ARRAY[cardinality(p_ids)]), '{}');
  END IF;
  BEGIN
    EXECUTE format($q$
      SELECT coalesce(array_agg(public.embedding_priority_rank(
               (SELECT %1$s FROM %2$s AS s WHERE s.%3$I = u.id::%4$s)) ORDER BY u.k), '{}')
        FROM unnest($1::text[]) WITH ORDINALITY AS u(id, k)
    $q$, t.priority_sql, p_rel, t.id_column, t.id_type) INTO v_ranks USING p_ids;
  EXCEPTION WHEN others THEN
    v_ranks := '{}';
    FOR i IN 1 .. cardinality(p_ids) LOOP
      BEGIN
        EXECUTE format('SELECT %s FROM %s AS s WHERE s.%I = $1::%s', t.priority_sql, p_rel, t.id_column, t.id_type)
          INTO v_rank USING p_ids[i];
      EXCEPTION WHEN others THEN
        v_rank := 0;
      END;
      v_ranks := v_ranks || public.embedding_priority_rank(v_rank);
    END LOOP;
  END;
  RETURN v_ranks;
END $function$;

-- embedding_pending_summary(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_pending_summary(p_target text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rows jsonb;
  v_due boolean;
  v_next timestamptz;
BEGIN
  v_rows := jsonb_build_object(
    'dueNow', EXISTS (SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()),
    -- The first row in claim order, not min(): a walk of the due index that stops at one row.
    -- With mixed priorities it is a wake-up hint, not the exact earliest time.
    'nextRetryAt', (SELECT next_retry_at FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'failed')
                     ORDER BY priority DESC, next_retry_at LIMIT 1),
    'inFlight', EXISTS (SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND status IN ('processing', 'chunked')),
    'leaseExpiresAt', (SELECT max(locked_until) FROM public.embedding_items WHERE target_id = t.id AND status = 'processing'));
  IF t.chunk_table IS NULL THEN RETURN v_rows; END IF;
  -- Chunks count only while their document's chunk set is current (the claim takes no others).
  v_due := EXISTS (SELECT 1 FROM public.embedding_chunks k JOIN public.embedding_items i
                      ON i.target_id = k.target_id AND i.row_id = k.row_id
                    WHERE k.target_id = t.id AND k.status IN ('pending', 'failed') AND k.next_retry_at <= now()
                      AND i.status IN ('chunked', 'dead_letter') AND i.chunk_hash = k.doc_hash);
  v_next := (SELECT k.next_retry_at FROM public.embedding_chunks k JOIN public.embedding_items i
                ON i.target_id = k.target_id AND i.row_id = k.row_id
              WHERE k.target_id = t.id AND k.status IN ('pending', 'failed')
                AND i.status IN ('chunked', 'dead_letter') AND i.chunk_hash = k.doc_hash
              ORDER BY k.priority DESC, k.next_retry_at LIMIT 1);
  RETURN v_rows || jsonb_build_object(
    'dueNow', (v_rows ->> 'dueNow')::boolean OR v_due,
    'nextRetryAt', least((v_rows ->> 'nextRetryAt')::timestamptz, v_next),
    'leaseExpiresAt', greatest((v_rows ->> 'leaseExpiresAt')::timestamptz,
      (SELECT max(locked_until) FROM public.embedding_chunks WHERE target_id = t.id AND status = 'processing')));
END $function$;

-- embedding_pick_due(integer,integer,text[],text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_pick_due(p_target integer, p_limit integer, p_ids text[], p_plain_id text, p_id_type text)
 RETURNS TABLE(tid tid, valid boolean)
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET enable_sort TO 'off'
AS $function$
  -- Whether the id can be one of the source's, once per row: a regular expression for the usual
  -- spelling, the full check (embedding_valid_id) only for anything else.
  SELECT i.ctid, CASE WHEN i.row_id ~ p_plain_id THEN true ELSE public.embedding_valid_id(p_id_type, i.row_id) END
    FROM public.embedding_items i
   WHERE i.target_id = p_target AND i.status IN ('pending', 'failed') AND i.next_retry_at <= now()
     AND (p_ids IS NULL OR i.row_id = ANY (p_ids))
     AND (i.job_id IS NULL OR NOT EXISTS (
           SELECT 1 FROM public.embedding_jobs j WHERE j.id = i.job_id AND j.status = 'cancelled'))
   ORDER BY i.priority DESC, i.next_retry_at
   LIMIT p_limit
     FOR UPDATE OF i SKIP LOCKED
$function$;

-- embedding_prepare_chunk_table(text,regclass,text,text,text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_prepare_chunk_table(p_chunk_table text, p_source regclass, p_source_id text, p_id_type text, p_embedding_column text, p_dimensions integer)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_caller text := public.embedding_caller();
  v_parts text[];
  v_schema text;
  v_table text;
  v_rel regclass;
  v_problems text[] := '{}';
  v_type text;
  v_col record;
  v_emb jsonb;
  v_note text;
  v_nsp oid;
  v_vector_nsp text;
BEGIN
  BEGIN
    v_parts := parse_ident(p_chunk_table);
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'invalid chunk table name "%"', p_chunk_table USING ERRCODE = '22023', HINT = 'write it as schema.table, for example public.document_chunks';
  END;
  IF cardinality(v_parts) = 1 THEN v_schema := 'public'; v_table := v_parts[1];
  ELSIF cardinality(v_parts) = 2 THEN v_schema := v_parts[1]; v_table := v_parts[2];
  ELSE RAISE EXCEPTION 'invalid chunk table name "%"', p_chunk_table USING ERRCODE = '22023', HINT = 'write it as schema.table, for example public.document_chunks';
  END IF;
  v_rel := to_regclass(format('%I.%I', v_schema, v_table));
  IF v_rel = p_source THEN
    RAISE EXCEPTION 'the chunk table cannot be the source table itself' USING ERRCODE = '22023',
      HINT = 'name a separate table, for example public.document_chunks';
  END IF;

  IF v_rel IS NULL THEN
    SELECT oid INTO v_nsp FROM pg_namespace WHERE nspname = v_schema;
    IF v_nsp IS NULL THEN
      RAISE EXCEPTION 'schema % does not exist', quote_ident(v_schema) USING ERRCODE = '3F000',
        HINT = format('CREATE SCHEMA %I, or name the chunk table in an existing schema', v_schema);
    END IF;
    IF NOT has_schema_privilege(v_caller, v_nsp, 'CREATE') THEN
      RAISE EXCEPTION 'role % may not create the chunk table %.% (no CREATE on the schema)', v_caller, quote_ident(v_schema), quote_ident(v_table)
        USING ERRCODE = '42501', HINT = format('GRANT CREATE ON SCHEMA %I TO %I, or create the table yourself (document_id, chunk_index, content, %I)', v_schema, v_caller, p_embedding_column);
    END IF;
    IF p_dimensions IS NULL THEN
      RAISE EXCEPTION 'creating the chunk table needs the dimension' USING ERRCODE = '22023',
        HINT = 'pass --dimensions N (for example 1536 for text-embedding-3-small)';
    END IF;
    SELECT n.nspname INTO v_vector_nsp FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace
     WHERE ty.typname = 'vector' AND EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'vector' AND e.extnamespace = n.oid)
     LIMIT 1;
    IF v_vector_nsp IS NOT NULL THEN
      v_type := format('%I.vector(%s)', v_vector_nsp, p_dimensions);
    ELSE
      v_type := 'real[]';
      v_note := 'pgvector is not installed: the chunk table''s embedding column is real[]; CREATE EXTENSION vector and re-create it for vector search';
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (document_id %s NOT NULL REFERENCES %s (%I) ON DELETE CASCADE ON UPDATE CASCADE, '
                   'chunk_index integer NOT NULL CHECK (chunk_index >= 0), content text NOT NULL, %I %s NOT NULL, '
                   'PRIMARY KEY (document_id, chunk_index))',
      v_schema, v_table, p_id_type, p_source, p_source_id, p_embedding_column, v_type);
    v_rel := to_regclass(format('%I.%I', v_schema, v_table));
    -- The caller owns what it asked for, as if it had created the table itself.
    BEGIN
      EXECUTE format('ALTER TABLE %s OWNER TO %I', v_rel, v_caller);
    EXCEPTION WHEN others THEN
      EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', v_rel, v_caller);
    END;
    RETURN jsonb_build_object('rel', v_rel::oid, 'schema', v_schema, 'table', v_table, 'created', true, 'note', v_note);
  END IF;

  -- An existing table: the four columns, the key, and nothing else that an INSERT would miss.
  SELECT format_type(a.atttypid, a.atttypmod) INTO v_type FROM pg_attribute a
   WHERE a.attrelid = v_rel AND a.attname = 'document_id' AND a.attnum > 0 AND NOT a.attisdropped;
  IF v_type IS NULL THEN
    v_problems := v_problems || format('column document_id is missing (add: document_id %s NOT NULL)', p_id_type);
  ELSIF regexp_replace(v_type, '^character varying.*$', 'text') <> p_id_type THEN
    v_problems := v_problems || format('column document_id is %s but the source key is %s (ALTER TABLE %s ALTER COLUMN document_id TYPE %s)', v_type, p_id_type, public.embedding_relation_name(v_rel), p_id_type);
  END IF;
  SELECT format_type(a.atttypid, a.atttypmod) INTO v_type FROM pg_attribute a
   WHERE a.attrelid = v_rel AND a.attname = 'chunk_index' AND a.attnum > 0 AND NOT a.attisdropped;
  IF v_type IS NULL THEN
    v_problems := v_problems || 'column chunk_index is missing (add: chunk_index integer NOT NULL)'::text;
  ELSIF v_type <> 'integer' THEN
    v_problems := v_problems || format('column chunk_index is %s, not integer', v_type);
  END IF;
  SELECT format_type(a.atttypid, a.atttypmod) INTO v_type FROM pg_attribute a
   WHERE a.attrelid = v_rel AND a.attname = 'content' AND a.attnum > 0 AND NOT a.attisdropped;
  IF v_type IS NULL THEN
    v_problems := v_problems || 'column content is missing (add: content text NOT NULL)'::text;
  ELSIF v_type <> 'text' THEN
    v_problems := v_problems || format('column content is %s, not text', v_type);
  END IF;
  BEGIN
    v_emb := public.embedding_column_type(v_rel, p_embedding_column);
    IF v_emb IS NULL THEN
      v_problems := v_problems || format('embedding column %I is missing (add: %I vector(%s))', p_embedding_column, p_embedding_column, coalesce(p_dimensions::text, 'N'));
    ELSIF (v_emb ->> 'dims') IS NOT NULL AND p_dimensions IS NOT NULL AND (v_emb ->> 'dims')::int <> p_dimensions THEN
      v_problems := v_problems || format('embedding column %I is %s(%s) but the target is configured for %s dimensions', p_embedding_column, v_emb ->> 'kind', v_emb ->> 'dims', p_dimensions);
    END IF;
  EXCEPTION WHEN invalid_parameter_value THEN
    v_problems := v_problems || SQLERRM;
  END;
  IF NOT EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = v_rel AND i.indisunique AND i.indnkeyatts = 2 AND i.indpred IS NULL
       AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
             WHERE a.attrelid = v_rel AND a.attnum = ANY (i.indkey::int2[])) = ARRAY['chunk_index', 'document_id']
  ) THEN
    v_problems := v_problems || format('no primary key (document_id, chunk_index) (ALTER TABLE %s ADD PRIMARY KEY (document_id, chunk_index))', public.embedding_relation_name(v_rel));
  END IF;
  FOR v_col IN
    SELECT a.attname FROM pg_attribute a
     WHERE a.attrelid = v_rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull AND NOT a.atthasdef
       AND a.attidentity = '' AND a.attgenerated = ''
       AND a.attname NOT IN ('document_id', 'chunk_index', 'content', p_embedding_column)
  LOOP
    v_problems := v_problems || format('column %I is NOT NULL without a default: the service cannot fill it (give it a default, or allow NULL)', v_col.attname);
  END LOOP;
  IF NOT has_table_privilege(v_caller, v_rel, 'SELECT') OR NOT has_table_privilege(v_caller, v_rel, 'INSERT')
     OR NOT has_table_privilege(v_caller, v_rel, 'UPDATE') OR NOT has_table_privilege(v_caller, v_rel, 'DELETE') THEN
    v_problems := v_problems || format('role %s may not read and write it (GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I)', v_caller, public.embedding_relation_name(v_rel), v_caller);
  END IF;
  IF cardinality(v_problems) > 0 THEN
    RAISE EXCEPTION 'chunk table % cannot be used: %', public.embedding_relation_name(v_rel), array_to_string(v_problems, '; ')
      USING ERRCODE = '22023', HINT = 'fix what is listed, or name a table that does not exist yet and registration creates it';
  END IF;
  RETURN jsonb_build_object('rel', v_rel::oid, 'schema', v_schema, 'table', v_table, 'created', false, 'note', NULL);
END $function$;

-- embedding_priority_edit(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_priority_edit()
 RETURNS double precision
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$ SELECT 4e15::double precision $function$;

-- embedding_priority_rank(double precision); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_priority_rank(p_value double precision)
 RETURNS double precision
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT CASE WHEN p_value IS NULL OR p_value = 'NaN'::double precision THEN 0
              ELSE greatest(-1e15::double precision, least(1e15::double precision, p_value)) END
$function$;

-- embedding_qualified_table(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_qualified_table(t embedding_targets)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$ SELECT format('%I.%I', t.schema_name, t.table_name) $function$;

-- embedding_queue_counts(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_queue_counts(p_target text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v jsonb;
BEGIN
  SELECT jsonb_build_object(
      'target', t.name,
      'tracked', count(*),
      'pending', count(*) FILTER (WHERE status = 'pending'),
      'processing', count(*) FILTER (WHERE status IN ('processing', 'chunked')),
      'failed', count(*) FILTER (WHERE status = 'failed'),
      'deadLetter', count(*) FILTER (WHERE status = 'dead_letter'),
      'completed', count(*) FILTER (WHERE status = 'completed'),
      'remaining', count(*) FILTER (WHERE status IN ('pending', 'processing', 'chunked', 'failed')))
    INTO v FROM public.embedding_items WHERE target_id = t.id;
  RETURN v;
END $function$;

-- embedding_queue_row(integer,text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_queue_row(p_target integer, p_row_id text, p_max_attempts integer)
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts)
  VALUES (p_target, p_row_id, 'pending', coalesce(p_max_attempts, 3))
  ON CONFLICT (target_id, row_id) DO UPDATE
    SET status = 'pending', attempts = 0, next_retry_at = now(), locked_until = NULL, worker_id = NULL,
        last_error = NULL, error_kind = NULL, enqueued_at = now(), updated_at = now(), job_id = NULL
$function$;

-- embedding_queue_row(integer,text,integer,double precision); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_queue_row(p_target integer, p_row_id text, p_max_attempts integer, p_rank double precision)
 RETURNS void
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, priority)
  VALUES (p_target, p_row_id, 'pending', coalesce(p_max_attempts, 3), public.embedding_priority_rank(p_rank))
  ON CONFLICT (target_id, row_id) DO UPDATE
    SET status = 'pending', attempts = 0, next_retry_at = now(), locked_until = NULL, worker_id = NULL,
        last_error = NULL, error_kind = NULL, enqueued_at = now(), updated_at = now(), job_id = NULL,
        priority = public.embedding_priority_rank(p_rank)
                   + CASE WHEN i.embedded_at IS NOT NULL THEN public.embedding_priority_edit() ELSE 0 END
$function$;

-- embedding_rate(text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_rate(p_target text, p_minutes integer DEFAULT 15)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_read_claimed(embedding_targets,regclass,text[],text[],text[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_read_claimed(t embedding_targets, p_rel regclass, p_ids text[], p_old_hashes text[], p_old_models text[])
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_sql text := format($q$
    WITH c AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS c(row_id, old_hash, old_model)
    ), s AS (
      SELECT s.%1$I::text AS row_id, (%3$s)::text AS content, s.%2$I IS NOT NULL AS has_embedding
        FROM %4$s AS s
       WHERE s.%1$I = ANY ($1::%5$s[])
    ), j AS (
      SELECT c.row_id, s.content, md5(s.content) AS hash, s.row_id IS NULL AS gone,
             s.row_id IS NOT NULL AND c.old_hash IS NOT DISTINCT FROM md5(s.content)
               AND c.old_model IS NOT DISTINCT FROM $4 AND s.has_embedding AS unchanged
        FROM c LEFT JOIN s ON s.row_id = c.row_id
    )
    SELECT jsonb_build_object(
      'gone', coalesce(jsonb_agg(row_id) FILTER (WHERE gone), '[]'),
      'unchanged', coalesce(jsonb_agg(row_id) FILTER (WHERE unchanged), '[]'),
      'blank', coalesce(jsonb_agg(row_id) FILTER (WHERE NOT gone AND NOT unchanged AND coalesce(content, '') !~ '\S'), '[]'),
      'items', coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'content', content, 'hash', hash))
                 FILTER (WHERE NOT gone AND NOT unchanged AND coalesce(content, '') ~ '\S'), '[]'),
      'failed', '[]'::jsonb)
      FROM j
  $q$, t.id_column, t.embedding_column, t.content_sql, p_rel, t.id_type);
  v_out jsonb;
  v_one jsonb;
  v_failed jsonb := '[]';
  v_parts jsonb[] := '{}';
BEGIN
  BEGIN
    EXECUTE v_sql INTO v_out USING p_ids, p_old_hashes, p_old_models, t.model;
    RETURN v_out;
  EXCEPTION WHEN data_exception THEN
    NULL;
  END;
  FOR i IN 1 .. cardinality(p_ids) LOOP
    BEGIN
      EXECUTE v_sql INTO v_one USING ARRAY[p_ids[i]], ARRAY[p_old_hashes[i]], ARRAY[p_old_models[i]], t.model;
      v_parts := v_parts || v_one;
    EXCEPTION WHEN data_exception THEN
      v_failed := v_failed || jsonb_build_object('id', p_ids[i], 'error', 'content expression failed: ' || SQLERRM);
    END;
  END LOOP;
  SELECT jsonb_build_object(
      'gone', coalesce(jsonb_agg(e) FILTER (WHERE k = 'gone'), '[]'),
      'unchanged', coalesce(jsonb_agg(e) FILTER (WHERE k = 'unchanged'), '[]'),
      'blank', coalesce(jsonb_agg(e) FILTER (WHERE k = 'blank'), '[]'),
      'items', coalesce(jsonb_agg(e) FILTER (WHERE k = 'items'), '[]'),
      'failed', v_failed)
    INTO v_out
    FROM unnest(v_parts) AS p(part), LATERAL jsonb_each(p.part) AS kv(k, arr), LATERAL jsonb_array_elements(kv.arr) AS x(e)
   WHERE k <> 'failed';
  RETURN coalesce(v_out, jsonb_build_object('gone', '[]'::jsonb, 'unchanged', '[]'::jsonb, 'blank', '[]'::jsonb,
    'items', '[]'::jsonb, 'failed', v_failed)) || jsonb_build_object('failed', v_failed);
END $function$;

-- embedding_register_target(text,text,text,text,text,text,text[],text,integer,integer,boolean,text,integer,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_register_target(p_name text, p_table text, p_id_column text, p_embedding_column text, p_provider text, p_model text, p_content_columns text[] DEFAULT NULL::text[], p_content_expression text DEFAULT NULL::text, p_dimensions integer DEFAULT NULL::integer, p_max_attempts integer DEFAULT 3, p_replace boolean DEFAULT false, p_chunk_table text DEFAULT NULL::text, p_chunk_tokens integer DEFAULT NULL::integer, p_chunk_overlap integer DEFAULT NULL::integer)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_parts text[];
  v_schema text;
  v_table text;
  v_rel oid;
  v_col text;
  v_id_type text;
  v_emb jsonb;
  v_dims integer;
  v_content_sql text;
  v_cols text;
  v_refs text[];
  v_problem text;
  v_caller text := public.embedding_caller();
  v_changed text[] := '{}';
  v_reset bigint := 0;
  v_chunk jsonb;
  t public.embedding_targets;
  v_existing public.embedding_targets;
  v_old_rel regclass;
BEGIN
  IF p_name IS NULL OR p_name !~ '^[a-z][a-z0-9_]{0,47}$' THEN
    RAISE EXCEPTION 'invalid target name "%"', p_name
      USING ERRCODE = '22023', HINT = 'use 1-48 characters: lowercase letters, digits and _, starting with a letter';
  END IF;
  IF (p_content_columns IS NULL OR cardinality(p_content_columns) = 0) = (p_content_expression IS NULL) THEN
    RAISE EXCEPTION 'target "%": give either content columns or a content expression, not both and not neither', p_name
      USING ERRCODE = '22023', HINT = 'for example --content title,body';
  END IF;
  IF p_chunk_table IS NULL AND (p_chunk_tokens IS NOT NULL OR p_chunk_overlap IS NOT NULL) THEN
    RAISE EXCEPTION 'target "%": chunk sizes are given but no chunk table', p_name
      USING ERRCODE = '22023', HINT = 'add --chunks schema.chunk_table, or drop --chunk-tokens / --chunk-overlap';
  END IF;
  IF p_chunk_table IS NOT NULL AND (p_chunk_tokens IS NULL OR p_chunk_tokens NOT BETWEEN 16 AND 8191
       OR coalesce(p_chunk_overlap, 0) < 0 OR coalesce(p_chunk_overlap, 0) * 2 >= p_chunk_tokens) THEN
    RAISE EXCEPTION 'target "%": chunk size % with overlap % is out of range', p_name, p_chunk_tokens, p_chunk_overlap
      USING ERRCODE = '22023', HINT = 'use --chunk-tokens 16..8191 and an overlap under half of it';
  END IF;

  BEGIN
    v_parts := parse_ident(p_table);
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'invalid table name "%"', p_table USING ERRCODE = '22023', HINT = 'write it as schema.table, for example public.documents';
  END;
  IF cardinality(v_parts) = 1 THEN
    v_schema := 'public'; v_table := v_parts[1];
  ELSIF cardinality(v_parts) = 2 THEN
    v_schema := v_parts[1]; v_table := v_parts[2];
  ELSE
    RAISE EXCEPTION 'invalid table name "%"', p_table USING ERRCODE = '22023', HINT = 'write it as schema.table, for example public.documents';
  END IF;
  SELECT c.oid INTO v_rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = v_schema AND c.relname = v_table AND c.relkind IN ('r', 'p');
  IF v_rel IS NULL THEN
    RAISE EXCEPTION 'table %.% does not exist', quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42P01', HINT = 'check the name with \dt, and give it as schema.table';
  END IF;

  -- The caller's own rights: the service registers only what the caller could read and write itself.
  IF NOT has_schema_privilege(v_caller, (SELECT relnamespace FROM pg_class WHERE oid = v_rel), 'USAGE')
     OR NOT has_table_privilege(v_caller, v_rel, 'SELECT') THEN
    RAISE EXCEPTION 'role % may not read %.%', v_caller, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42501', HINT = format('GRANT USAGE ON SCHEMA %I TO %I; GRANT SELECT ON %I.%I TO %I', v_schema, v_caller, v_schema, v_table, v_caller);
  END IF;
  IF NOT has_table_privilege(v_caller, v_rel, 'TRIGGER') THEN
    RAISE EXCEPTION 'role % may not create triggers on %.%', v_caller, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42501', HINT = format('GRANT TRIGGER ON %I.%I TO %I', v_schema, v_table, v_caller);
  END IF;
  IF (SELECT relrowsecurity FROM pg_class WHERE oid = v_rel)
     AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = v_caller)
     AND NOT pg_has_role(v_caller, (SELECT relowner FROM pg_class WHERE oid = v_rel), 'USAGE') THEN
    RAISE EXCEPTION 'role % is subject to row level security on %.%, and the service would read every row', v_caller, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42501', HINT = 'register the target as a role that bypasses row level security (on Supabase: the service role)';
  END IF;

  SELECT format_type(a.atttypid, a.atttypmod) INTO v_id_type FROM pg_attribute a
   WHERE a.attrelid = v_rel AND a.attname = p_id_column AND a.attnum > 0 AND NOT a.attisdropped;
  IF v_id_type IS NULL THEN
    RAISE EXCEPTION 'column "%" does not exist on %.%', p_id_column, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42703', HINT = 'pass the primary key column with --id';
  END IF;
  IF v_id_type NOT IN ('integer', 'bigint', 'smallint', 'text', 'uuid') AND v_id_type !~ '^character varying' THEN
    RAISE EXCEPTION 'id column "%" has type %, which is not supported', p_id_column, v_id_type
      USING ERRCODE = '22023', HINT = 'use an integer, bigint, text, varchar or uuid key';
  END IF;
  IF NOT EXISTS (
    SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = v_rel AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = p_id_column
  ) THEN
    RAISE EXCEPTION 'column "%" of %.% is not unique', p_id_column, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '22023', HINT = 'use the primary key, or a column with a unique index of its own';
  END IF;
  IF v_id_type ~ '^character varying' THEN v_id_type := 'text'; END IF;

  IF p_content_expression IS NULL THEN
    v_cols := '';
    FOREACH v_col IN ARRAY p_content_columns LOOP
      IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'content column "%" does not exist on %.%', v_col, quote_ident(v_schema), quote_ident(v_table)
          USING ERRCODE = '42703', HINT = 'list existing text columns with --content col1,col2';
      END IF;
      v_cols := v_cols || CASE WHEN v_cols = '' THEN '' ELSE ', ' END || format('%I::text', v_col);
    END LOOP;
    v_content_sql := format('concat_ws(E''\n\n'', %s)', v_cols);
  ELSE
    v_problem := public.embedding_expression_shape_problem(p_content_expression);
    IF v_problem IS NOT NULL THEN
      RAISE EXCEPTION 'content expression must be a single SQL expression: %', v_problem
        USING ERRCODE = '22023', HINT = 'write one expression over the row''s columns, e.g. title || '': '' || body';
    END IF;
    v_content_sql := '(' || p_content_expression || ')';
  END IF;
  BEGIN
    EXECUTE format('SELECT (%s)::text FROM %I.%I AS s LIMIT 0', v_content_sql, v_schema, v_table);
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'content expression is not valid on %.%: %', quote_ident(v_schema), quote_ident(v_table), SQLERRM
      USING ERRCODE = '22023', HINT = 'it must be one SQL expression over the row''s columns that yields text';
  END;
  IF p_content_expression IS NOT NULL THEN
    v_refs := public.embedding_validate_expression(v_rel::regclass, v_content_sql);
  END IF;
  FOREACH v_col IN ARRAY coalesce(v_refs, p_content_columns) || ARRAY[p_id_column] LOOP
    IF NOT has_column_privilege(v_caller, v_rel, v_col, 'SELECT') THEN
      RAISE EXCEPTION 'role % may not read column % of %.%', v_caller, v_col, quote_ident(v_schema), quote_ident(v_table)
        USING ERRCODE = '42501', HINT = format('GRANT SELECT ON %I.%I TO %I', v_schema, v_table, v_caller);
    END IF;
  END LOOP;

  IF p_chunk_table IS NULL THEN
    -- A row target: the embedding column of the source itself.
    v_emb := public.embedding_column_type(v_rel::regclass, p_embedding_column);
    IF v_emb IS NULL THEN
      RAISE EXCEPTION 'embedding column "%" does not exist on %.%', p_embedding_column, quote_ident(v_schema), quote_ident(v_table)
        USING ERRCODE = '42703', HINT = format('add it: ALTER TABLE %I.%I ADD COLUMN %I vector(%s)', v_schema, v_table, p_embedding_column, coalesce(p_dimensions::text, 'N'));
    END IF;
    IF NOT has_column_privilege(v_caller, v_rel, p_embedding_column, 'UPDATE')
       OR NOT has_column_privilege(v_caller, v_rel, p_embedding_column, 'SELECT') THEN
      RAISE EXCEPTION 'role % may not read and update column % of %.%', v_caller, p_embedding_column, quote_ident(v_schema), quote_ident(v_table)
        USING ERRCODE = '42501', HINT = format('GRANT SELECT, UPDATE (%I) ON %I.%I TO %I', p_embedding_column, v_schema, v_table, v_caller);
    END IF;
  ELSE
    v_chunk := public.embedding_prepare_chunk_table(p_chunk_table, v_rel::regclass, p_id_column, v_id_type,
      p_embedding_column, p_dimensions);
    v_emb := public.embedding_column_type((v_chunk ->> 'rel')::oid::regclass, p_embedding_column);
  END IF;
  v_dims := (v_emb ->> 'dims')::integer;
  IF v_dims IS NOT NULL AND p_dimensions IS NOT NULL AND v_dims <> p_dimensions THEN
    RAISE EXCEPTION 'dimension mismatch: column %.%.% is %(%) but the target is configured for % dimensions',
      quote_ident(v_schema), quote_ident(v_table), quote_ident(p_embedding_column), v_emb ->> 'kind', v_dims, p_dimensions
      USING ERRCODE = '22023',
            HINT = format('use --dimensions %s, or change the column: ALTER TABLE %I.%I ALTER COLUMN %I TYPE %s(%s)', v_dims, v_schema, v_table, p_embedding_column, v_emb ->> 'kind', p_dimensions);
  END IF;
  v_dims := coalesce(v_dims, p_dimensions);
  IF v_dims IS NULL THEN
    RAISE EXCEPTION 'embedding column "%" (%) has no fixed dimension', p_embedding_column, v_emb ->> 'kind'
      USING ERRCODE = '22023', HINT = 'pass --dimensions N (for example 1536 for text-embedding-3-small)';
  END IF;

  SELECT * INTO v_existing FROM public.embedding_targets WHERE name = p_name FOR UPDATE;
  IF FOUND THEN
    v_old_rel := public.embedding_relation(v_existing);
    IF v_old_rel IS DISTINCT FROM v_rel::regclass THEN v_changed := v_changed || 'table'::text; END IF;
    IF v_existing.id_column IS DISTINCT FROM p_id_column THEN v_changed := v_changed || 'id column'::text; END IF;
    IF v_existing.content_columns IS DISTINCT FROM p_content_columns
       OR v_existing.content_expression IS DISTINCT FROM p_content_expression THEN
      v_changed := v_changed || 'content'::text;
    END IF;
    IF coalesce(v_existing.chunk_embedding_column, v_existing.embedding_column) IS DISTINCT FROM p_embedding_column THEN
      v_changed := v_changed || 'embedding column'::text;
    END IF;
    IF v_existing.provider IS DISTINCT FROM p_provider OR v_existing.model IS DISTINCT FROM p_model THEN
      v_changed := v_changed || 'provider/model'::text;
    END IF;
    IF v_existing.dimensions IS DISTINCT FROM v_dims THEN v_changed := v_changed || 'dimensions'::text; END IF;
    IF public.embedding_chunk_relation(v_existing) IS DISTINCT FROM (v_chunk ->> 'rel')::oid::regclass
       OR v_existing.chunk_tokens IS DISTINCT FROM p_chunk_tokens
       OR v_existing.chunk_overlap IS DISTINCT FROM p_chunk_overlap THEN
      v_changed := v_changed || 'chunking'::text;
    END IF;
    IF cardinality(v_changed) > 0 AND NOT coalesce(p_replace, false) THEN
      RAISE EXCEPTION 'target "%" is already registered with another %: its % rows of state were made for the old definition',
        p_name, array_to_string(v_changed, ', '),
        (SELECT count(*) FROM public.embedding_items WHERE target_id = v_existing.id)
        USING ERRCODE = '22023',
              HINT = format('re-register with --replace to clear that state and embed every row again, or register a new target name (for a model change without downtime: a second target on a new column)');
    END IF;
    PERFORM public.embedding_drop_triggers(v_existing);
    IF cardinality(v_changed) > 0 THEN
      WITH gone AS (DELETE FROM public.embedding_items WHERE target_id = v_existing.id RETURNING 1)
      SELECT count(*) INTO v_reset FROM gone;
    END IF;
  END IF;

  INSERT INTO public.embedding_targets AS x (name, schema_name, table_name, table_oid, id_column, id_type, content_columns,
      content_expression, content_sql, content_refs, embedding_column, embedding_kind, embedding_type_sql, provider, model,
      dimensions, max_attempts, registered_by, chunk_schema, chunk_table, chunk_oid, chunk_tokens, chunk_overlap,
      chunk_embedding_column, trust_existing)
  VALUES (p_name, v_schema, v_table, v_rel, p_id_column, v_id_type, p_content_columns, p_content_expression, v_content_sql,
      v_refs, CASE WHEN p_chunk_table IS NULL THEN p_embedding_column ELSE p_id_column END,
      v_emb ->> 'kind', v_emb ->> 'typeSql', p_provider, p_model, v_dims,
      coalesce(p_max_attempts, 3), v_caller, v_chunk ->> 'schema', v_chunk ->> 'table', (v_chunk ->> 'rel')::oid,
      p_chunk_tokens, CASE WHEN p_chunk_table IS NOT NULL THEN coalesce(p_chunk_overlap, 0) END,
      CASE WHEN p_chunk_table IS NOT NULL THEN p_embedding_column END, p_chunk_table IS NULL)
  ON CONFLICT (name) DO UPDATE SET schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name,
      table_oid = EXCLUDED.table_oid, id_column = EXCLUDED.id_column, id_type = EXCLUDED.id_type,
      content_columns = EXCLUDED.content_columns, content_expression = EXCLUDED.content_expression,
      content_sql = EXCLUDED.content_sql, content_refs = EXCLUDED.content_refs,
      embedding_column = EXCLUDED.embedding_column, embedding_kind = EXCLUDED.embedding_kind,
      embedding_type_sql = EXCLUDED.embedding_type_sql, provider = EXCLUDED.provider, model = EXCLUDED.model,
      dimensions = EXCLUDED.dimensions, max_attempts = EXCLUDED.max_attempts, registered_by = EXCLUDED.registered_by,
      chunk_schema = EXCLUDED.chunk_schema, chunk_table = EXCLUDED.chunk_table, chunk_oid = EXCLUDED.chunk_oid,
      chunk_tokens = EXCLUDED.chunk_tokens, chunk_overlap = EXCLUDED.chunk_overlap,
      chunk_embedding_column = EXCLUDED.chunk_embedding_column,
      trust_existing = x.trust_existing AND cardinality(v_changed) = 0 AND EXCLUDED.chunk_table IS NULL,
      updated_at = now()
  RETURNING * INTO t;

  PERFORM public.embedding_install_triggers(t, v_rel::regclass);

  RETURN public.embedding_target_json(t) || jsonb_build_object('replaced', cardinality(v_changed) > 0, 'reset', v_reset,
    'changed', to_jsonb(v_changed), 'chunkTableCreated', coalesce((v_chunk ->> 'created')::boolean, false),
    'notes', CASE WHEN v_chunk ->> 'note' IS NULL THEN '[]'::jsonb ELSE jsonb_build_array(v_chunk ->> 'note') END);
END $function$;

-- embedding_relation(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_relation(t embedding_targets)
 RETURNS regclass
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_trigger text := 'embedding_' || t.name || '_ins';
  v_rel oid;
BEGIN
  IF t.table_oid IS NOT NULL THEN
    SELECT tgrelid INTO v_rel FROM pg_trigger WHERE tgrelid = t.table_oid AND tgname = v_trigger;
    IF FOUND THEN RETURN v_rel::regclass; END IF;
  END IF;
  SELECT tgrelid INTO v_rel FROM pg_trigger
   WHERE tgname = v_trigger AND split_part(encode(tgargs, 'escape'), '\000', 1) = t.id::text
   LIMIT 1;
  IF FOUND THEN RETURN v_rel::regclass; END IF;
  RETURN to_regclass(format('%I.%I', t.schema_name, t.table_name));
END $function$;

-- embedding_relation_name(regclass); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_relation_name(p_rel regclass)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = p_rel
$function$;

-- embedding_release(text,text,text[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_release(p_target text, p_worker text, p_ids text[] DEFAULT NULL::text[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
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
END $function$;

-- embedding_release_prefix(text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_release_prefix(p_target text, p_worker_prefix text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
  v_c integer := 0;
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
  IF t.chunk_table IS NOT NULL THEN
    WITH held AS (
      SELECT row_id, doc_hash, chunk_index FROM public.embedding_chunks
       WHERE target_id = t.id AND status = 'processing' AND starts_with(worker_id, p_worker_prefix)
       ORDER BY row_id, chunk_index
         FOR UPDATE SKIP LOCKED
    ), upd AS (
      UPDATE public.embedding_chunks k
         SET status = CASE WHEN k.attempts > 0 THEN 'failed' ELSE 'pending' END, locked_until = NULL, worker_id = NULL,
             updated_at = now()
        FROM held h WHERE k.target_id = t.id AND k.row_id = h.row_id AND k.doc_hash = h.doc_hash AND k.chunk_index = h.chunk_index
      RETURNING 1
    ) SELECT count(*) INTO v_c FROM upd;
  END IF;
  RETURN jsonb_build_object('released', v_n + v_c);
END $function$;

-- embedding_remote_cancel(uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_remote_cancel(p_job uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_remote_json(embedding_remote_batches); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_remote_json(b embedding_remote_batches)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT jsonb_build_object('id', b.id, 'jobId', b.job_id,
    'target', (SELECT name FROM public.embedding_targets WHERE id = b.target_id),
    'seq', b.seq, 'state', b.state, 'remoteStatus', b.remote_status, 'inputFileId', b.input_file_id,
    'batchId', b.batch_id, 'outputFileId', b.output_file_id, 'errorFileId', b.error_file_id,
    'items', b.items, 'bytes', b.bytes, 'completed', b.completed, 'failed', b.failed,
    'written', b.written, 'errored', b.errored, 'returned', b.returned, 'tokens', b.tokens,
    'lastError', b.last_error, 'createdAt', b.created_at, 'updatedAt', b.updated_at,
    'submittedAt', b.submitted_at, 'finishedAt', b.finished_at,
    'ageSeconds', round(extract(epoch FROM (coalesce(b.finished_at, now()) - b.created_at)))::bigint)
$function$;

-- embedding_remote_list(text,uuid,boolean,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_remote_list(p_target text DEFAULT NULL::text, p_job uuid DEFAULT NULL::uuid, p_active boolean DEFAULT false, p_limit integer DEFAULT 20)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_remote_open(uuid,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_remote_open(p_job uuid, p_seq integer)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_remote_target(p_job);
  b public.embedding_remote_batches;
BEGIN
  INSERT INTO public.embedding_remote_batches (job_id, target_id, seq) VALUES (p_job, t.id, p_seq)
  ON CONFLICT (job_id, seq) DO NOTHING;
  SELECT * INTO b FROM public.embedding_remote_batches WHERE job_id = p_job AND seq = p_seq;
  RETURN public.embedding_remote_json(b);
END $function$;

-- embedding_remote_target(uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_remote_target(p_job uuid)
 RETURNS embedding_targets
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_remote_update(uuid,jsonb); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_remote_update(p_id uuid, p_patch jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_remove_target(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_remove_target(p_name text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE t public.embedding_targets;
BEGIN
  t := public.embedding_target_row(p_name);
  PERFORM public.embedding_drop_triggers(t);
  DELETE FROM public.embedding_targets WHERE id = t.id;
  RETURN jsonb_build_object('removed', t.name);
END $function$;

-- embedding_require_chunk_relation(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_require_chunk_relation(t embedding_targets)
 RETURNS regclass
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE v_rel regclass := public.embedding_chunk_relation(t);
BEGIN
  IF v_rel IS NULL THEN
    RAISE EXCEPTION 'the chunk table of target "%" (%.%) no longer exists', t.name, t.chunk_schema, t.chunk_table
      USING ERRCODE = '42P01',
            HINT = format('re-register the target with --chunks %I.%I to create it again, or remove the target', t.chunk_schema, t.chunk_table);
  END IF;
  RETURN v_rel;
END $function$;

-- embedding_require_relation(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_require_relation(t embedding_targets)
 RETURNS regclass
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE v_rel regclass := public.embedding_relation(t);
BEGIN
  IF v_rel IS NULL THEN
    RAISE EXCEPTION 'the table of target "%" (%.%) no longer exists', t.name, t.schema_name, t.table_name
      USING ERRCODE = '42P01', HINT = format('restore the table, or remove the target: embeddings targets remove %s', t.name);
  END IF;
  RETURN v_rel;
END $function$;

-- embedding_retry(text,text[],boolean,boolean,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_retry(p_target text, p_ids text[] DEFAULT NULL::text[], p_dead_letter_only boolean DEFAULT true, p_transient_only boolean DEFAULT false, p_limit integer DEFAULT 1000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
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
END $function$;

-- embedding_retry_completed_null(text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_retry_completed_null(p_target text, p_limit integer DEFAULT 1000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
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
END $function$;

-- embedding_reuse_claimed(embedding_targets,regclass,text,jsonb); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_reuse_claimed(t embedding_targets, p_rel regclass, p_worker text, p_items jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_ids text[];
  v_donors text[];
  v_hashes text[];
  v_done text[];
BEGIN
  IF t.chunk_table IS NOT NULL OR p_items IS NULL OR jsonb_array_length(p_items) = 0 THEN
    RETURN jsonb_build_object('items', coalesce(p_items, '[]'::jsonb), 'reused', 0);
  END IF;
  SELECT array_agg(x.id), array_agg(d.row_id), array_agg(x.hash)
    INTO v_ids, v_donors, v_hashes
    FROM jsonb_to_recordset(p_items) AS x(id text, hash text)
    CROSS JOIN LATERAL (
      SELECT i.row_id FROM public.embedding_items i
       WHERE i.target_id = t.id AND i.status = 'completed' AND i.content_hash = x.hash
         AND i.model = t.model AND i.row_id <> x.id
       LIMIT 1) AS d;
  IF v_ids IS NULL THEN
    RETURN jsonb_build_object('items', p_items, 'reused', 0);
  END IF;
  -- Names prefixed as in embedding_write: the user's table may have columns called id or hash.
  EXECUTE format($q$
    WITH c AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
        AS c("__embedding_sync_id", "__embedding_sync_donor", "__embedding_sync_hash")
    ), donor AS (
      SELECT c."__embedding_sync_id", c."__embedding_sync_hash", d."__embedding_sync_vec"
        FROM c JOIN (
          SELECT s.%1$I::text AS "__embedding_sync_key", md5((%3$s)::text) AS "__embedding_sync_now",
                 s.%2$I AS "__embedding_sync_vec"
            FROM %4$s AS s WHERE s.%1$I = ANY ($2::%5$s[]) AND s.%2$I IS NOT NULL
        ) AS d ON d."__embedding_sync_key" = c."__embedding_sync_donor"
               AND d."__embedding_sync_now" = c."__embedding_sync_hash"
    ), lockable AS (
      SELECT s.%1$I FROM %4$s AS s WHERE s.%1$I = ANY ($1::%5$s[]) ORDER BY s.%1$I FOR UPDATE OF s SKIP LOCKED
    ), w AS (
      UPDATE %4$s AS s SET %2$I = u."__embedding_sync_vec"
        FROM donor AS u
       WHERE s.%1$I = u."__embedding_sync_id"::%5$s
         AND s.%1$I IN (SELECT * FROM lockable)
         AND md5((%3$s)::text) = u."__embedding_sync_hash"
      RETURNING s.%1$I::text AS row_id
    )
    SELECT coalesce(array_agg(row_id), '{}') FROM w
  $q$, t.id_column, t.embedding_column, t.content_sql, p_rel, t.id_type)
  INTO v_done USING v_ids, v_donors, v_hashes;
  IF cardinality(v_done) = 0 THEN
    RETURN jsonb_build_object('items', p_items, 'reused', 0);
  END IF;
  UPDATE public.embedding_items i
     SET status = 'completed', content_hash = x.hash, model = t.model, tokens = 0, truncated = false,
         attempts = 0, locked_until = NULL, worker_id = NULL, last_error = NULL, error_kind = NULL,
         embedded_at = now(), updated_at = now()
    FROM jsonb_to_recordset(p_items) AS x(id text, hash text)
   WHERE i.target_id = t.id AND i.row_id = x.id AND x.id = ANY (v_done)
     AND i.status = 'processing' AND i.worker_id = p_worker;
  RETURN jsonb_build_object(
    'items', (SELECT coalesce(jsonb_agg(e), '[]'::jsonb) FROM jsonb_array_elements(p_items) AS e
               WHERE NOT (e ->> 'id') = ANY (v_done)),
    'reused', cardinality(v_done));
END $function$;

-- embedding_schema_version(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_schema_version()
 RETURNS jsonb
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT jsonb_build_object('version', (SELECT max(version) FROM public.embedding_schema_migrations),
    'versions', (SELECT coalesce(jsonb_agg(version ORDER BY version), '[]'::jsonb) FROM public.embedding_schema_migrations),
    'checksums', (SELECT coalesce(jsonb_object_agg(version, checksum), '{}'::jsonb) FROM public.embedding_schema_migrations
                   WHERE checksum IS NOT NULL),
    'vector', EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector'),
    'server', current_setting('server_version'))
$function$;

-- embedding_set_batch_limit(text,integer,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_set_batch_limit(p_target text, p_limit integer, p_reason text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  IF p_limit IS NOT NULL AND (p_limit < 1 OR p_limit > 10000) THEN
    RAISE EXCEPTION 'batch limit % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use 1..10000, or NULL for none';
  END IF;
  UPDATE public.embedding_targets SET batch_limit = p_limit, batch_limit_reason = left(p_reason, 500),
         batch_limit_at = now(), batch_limit_successes = 0
   WHERE id = t.id RETURNING * INTO t;
  RETURN jsonb_build_object('batchLimit', t.batch_limit, 'reason', t.batch_limit_reason, 'at', t.batch_limit_at);
END $function$;

-- embedding_set_priority(text,text,text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_set_priority(p_target text, p_column text DEFAULT NULL::text, p_expression text DEFAULT NULL::text, p_order text DEFAULT 'desc'::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass := public.embedding_require_relation(t);
  v_caller text := public.embedding_caller();
  v_order text := lower(coalesce(p_order, 'desc'));
  v_expr text;
  v_type text;
  v_sql text;
  v_refs text[];
  v_col text;
  v_problem text;
  v_changed boolean;
BEGIN
  IF p_column IS NOT NULL AND p_expression IS NOT NULL THEN
    RAISE EXCEPTION 'target "%": give a priority column or a priority expression, not both', t.name
      USING ERRCODE = '22023', HINT = 'for example --priority created_at, or --priority-sql "coalesce(published_at, created_at)"';
  END IF;
  IF v_order NOT IN ('asc', 'desc') THEN
    RAISE EXCEPTION 'priority order "%" is neither asc nor desc', p_order USING ERRCODE = '22023', HINT = 'use --priority-order asc or desc';
  END IF;
  IF NOT has_table_privilege(v_caller, v_rel, 'TRIGGER') THEN
    RAISE EXCEPTION 'role % may not change how target "%" is ordered', v_caller, t.name
      USING ERRCODE = '42501', HINT = format('registration needs TRIGGER on the table: GRANT TRIGGER ON %s TO %I', public.embedding_relation_name(v_rel), v_caller);
  END IF;

  IF p_column IS NOT NULL THEN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped) THEN
      RAISE EXCEPTION 'priority column "%" does not exist on %', p_column, public.embedding_relation_name(v_rel)
        USING ERRCODE = '42703', HINT = 'give a number, date or timestamp column with --priority, e.g. --priority created_at';
    END IF;
    v_expr := quote_ident(p_column);
  ELSIF p_expression IS NOT NULL THEN
    v_problem := public.embedding_expression_shape_problem(p_expression);
    IF v_problem IS NOT NULL THEN
      RAISE EXCEPTION 'priority expression must be a single SQL expression: %', v_problem
        USING ERRCODE = '22023', HINT = 'write one expression over the row''s columns, e.g. coalesce(published_at, created_at)';
    END IF;
    v_expr := '(' || p_expression || ')';
  END IF;

  IF v_expr IS NOT NULL THEN
    v_type := public.embedding_expression_type(v_rel, v_expr);
    v_sql := CASE
      WHEN v_type IN ('timestamp with time zone', 'timestamp without time zone', 'date')
        THEN format('extract(epoch FROM %s)::double precision', v_expr)
      WHEN v_type IN ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision')
        THEN format('(%s)::double precision', v_expr)
    END;
    IF v_sql IS NULL THEN
      RAISE EXCEPTION 'priority % is of type %: it must be a number, a date or a timestamp', coalesce(p_column, p_expression), v_type
        USING ERRCODE = '22023', HINT = 'for example --priority created_at, or --priority-sql "length(body)"';
    END IF;
    IF v_order = 'asc' THEN v_sql := '-(' || v_sql || ')'; END IF;
    BEGIN
      v_refs := public.embedding_validate_expression(v_rel, v_sql);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION '%', replace(SQLERRM, 'content expression', 'priority expression')
        USING ERRCODE = '42501',
              HINT = 'use only the table''s own columns, operators and built-in functions without side effects (coalesce, greatest, extract, ...)';
    END;
    FOREACH v_col IN ARRAY v_refs LOOP
      IF NOT has_column_privilege(v_caller, v_rel, v_col, 'SELECT') THEN
        RAISE EXCEPTION 'role % may not read column % of %', v_caller, v_col, public.embedding_relation_name(v_rel)
          USING ERRCODE = '42501', HINT = format('GRANT SELECT ON %s TO %I', public.embedding_relation_name(v_rel), v_caller);
      END IF;
    END LOOP;
  END IF;

  v_changed := t.priority_sql IS DISTINCT FROM v_sql
    OR t.priority_expression IS DISTINCT FROM coalesce(p_column, p_expression);
  IF v_changed THEN
    UPDATE public.embedding_targets
       SET priority_expression = coalesce(p_column, p_expression),
           priority_order = CASE WHEN v_sql IS NOT NULL THEN v_order END,
           priority_sql = v_sql, updated_at = now()
     WHERE id = t.id
    RETURNING * INTO t;
  END IF;
  RETURN public.embedding_target_json(t) || jsonb_build_object('priorityChanged', v_changed);
END $function$;

-- embedding_status(text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_status(p_target text DEFAULT NULL::text, p_jobs integer DEFAULT 5)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets;
  v_out jsonb := '[]'::jsonb;
  v_counts jsonb;
  v_src jsonb;
  v_rel regclass;
  v_crel regclass;
  v_error text;
  v_chunks jsonb;
  v_stored bigint;
BEGIN
  FOR t IN SELECT * FROM public.embedding_targets WHERE p_target IS NULL OR name = p_target ORDER BY name LOOP
    SELECT jsonb_build_object(
        'tracked', count(*),
        'pending', count(*) FILTER (WHERE status = 'pending'),
        'processing', count(*) FILTER (WHERE status IN ('processing', 'chunked')),
        'completed', count(*) FILTER (WHERE status = 'completed'),
        'failed', count(*) FILTER (WHERE status = 'failed'),
        'deadLetter', count(*) FILTER (WHERE status = 'dead_letter'),
        'parked', count(*) FILTER (WHERE status = 'parked'))
      INTO v_counts FROM public.embedding_items WHERE target_id = t.id;
    v_src := NULL;
    v_error := NULL;
    v_chunks := NULL;
    v_rel := public.embedding_relation(t);
    BEGIN
      IF v_rel IS NULL THEN
        RAISE EXCEPTION 'the table of target "%" (%.%) no longer exists', t.name, t.schema_name, t.table_name
          USING ERRCODE = '42P01';
      END IF;
      PERFORM public.embedding_assert_access(t, v_rel, false);
      IF t.chunk_table IS NULL THEN
        EXECUTE format($q$
          SELECT jsonb_build_object(
            'total', count(*),
            'embedded', count(*) FILTER (WHERE s.%1$I IS NOT NULL),
            'completedButNull', count(*) FILTER (WHERE s.%1$I IS NULL AND EXISTS (
                SELECT 1 FROM public.embedding_items i WHERE i.target_id = $1 AND i.row_id = s.%2$I::text AND i.status = 'completed')))
            FROM %3$s AS s
        $q$, t.embedding_column, t.id_column, v_rel)
        INTO v_src USING t.id;
      ELSE
        -- A document is embedded when its current content's chunk set is in the chunk table.
        EXECUTE format($q$
          SELECT jsonb_build_object('total', count(*), 'embedded', count(*) FILTER (WHERE EXISTS (
              SELECT 1 FROM public.embedding_items i WHERE i.target_id = $1 AND i.row_id = s.%1$I::text AND i.status = 'completed')),
            'completedButNull', 0)
            FROM %2$s AS s
        $q$, t.id_column, v_rel)
        INTO v_src USING t.id;
        v_crel := public.embedding_require_chunk_relation(t);
        PERFORM public.embedding_chunk_assert(t, v_crel, false);
        EXECUTE format('SELECT count(*) FROM %s', v_crel) INTO v_stored;
        SELECT jsonb_build_object(
            'stored', v_stored,
            'pending', count(*) FILTER (WHERE k.status IN ('pending', 'failed')),
            'processing', count(*) FILTER (WHERE k.status = 'processing'),
            'embedded', count(*) FILTER (WHERE k.status = 'completed'),
            'deadLetter', count(*) FILTER (WHERE k.status = 'dead_letter'),
            'inProgress', count(*))
          INTO v_chunks
          FROM public.embedding_chunks k JOIN public.embedding_items i ON i.target_id = k.target_id AND i.row_id = k.row_id
         WHERE k.target_id = t.id AND k.doc_hash = i.chunk_hash;
        v_chunks := v_chunks || jsonb_build_object('table', public.embedding_relation_name(v_crel),
          'tokens', t.chunk_tokens, 'overlap', t.chunk_overlap,
          'documents', jsonb_build_object(
            'total', (v_src ->> 'total')::bigint,
            'embedded', (v_src ->> 'embedded')::bigint,
            'inProgress', (SELECT count(*) FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'processing', 'chunked')),
            'failed', (SELECT count(*) FROM public.embedding_items WHERE target_id = t.id AND status IN ('failed', 'dead_letter'))));
      END IF;
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
      'batchLimit', t.batch_limit, 'batchLimitReason', t.batch_limit_reason,
      'chunks', v_chunks,
      'jobs', (SELECT coalesce(jsonb_agg(public.embedding_job_json(j) ORDER BY j.created_at DESC), '[]'::jsonb)
                 FROM (SELECT * FROM public.embedding_jobs WHERE target_id = t.id ORDER BY created_at DESC LIMIT p_jobs) j)
    ) || v_counts || CASE WHEN v_error IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('error', v_error) END);
  END LOOP;
  IF p_target IS NOT NULL AND jsonb_array_length(v_out) = 0 THEN
    PERFORM public.embedding_target_row(p_target);
  END IF;
  RETURN v_out;
END $function$;

-- embedding_target_json(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_target_json(t embedding_targets)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT jsonb_build_object(
    'name', t.name,
    'table', coalesce(public.embedding_relation_name(public.embedding_relation(t)), format('%I.%I', t.schema_name, t.table_name)),
    'idColumn', t.id_column,
    'idType', t.id_type, 'contentColumns', to_jsonb(t.content_columns), 'contentExpression', t.content_expression,
    'embeddingColumn', coalesce(t.chunk_embedding_column, t.embedding_column), 'embeddingKind', t.embedding_kind,
    'provider', t.provider,
    'model', t.model, 'dimensions', t.dimensions, 'maxAttempts', t.max_attempts,
    'backoffSeconds', to_jsonb(t.backoff_seconds), 'createdAt', t.created_at, 'updatedAt', t.updated_at,
    'chunks', CASE WHEN t.chunk_table IS NULL THEN NULL ELSE jsonb_build_object(
      'table', coalesce(public.embedding_relation_name(public.embedding_chunk_relation(t)), format('%I.%I', t.chunk_schema, t.chunk_table)),
      'tokens', t.chunk_tokens, 'overlap', t.chunk_overlap) END,
    'batchLimit', t.batch_limit, 'batchLimitReason', t.batch_limit_reason, 'batchLimitAt', t.batch_limit_at,
    'priority', CASE WHEN t.priority_sql IS NULL THEN NULL ELSE jsonb_build_object(
      'expression', t.priority_expression, 'order', t.priority_order) END)
$function$;

-- embedding_target_row(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_target_row(p_target text)
 RETURNS embedding_targets
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE t public.embedding_targets;
BEGIN
  SELECT * INTO t FROM public.embedding_targets WHERE name = p_target;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown target "%"', p_target
      USING ERRCODE = 'P0002', HINT = 'register it first: embeddings targets add <name> ... (embeddings targets list shows what exists)';
  END IF;
  RETURN t;
END $function$;

-- embedding_valid_id(text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_valid_id(p_type text, p_id text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
  SELECT p_id IS NOT NULL AND CASE
    WHEN p_type = 'smallint' THEN p_id ~ '^\s*[+-]?[0-9]{1,5}\s*$' AND btrim(p_id)::numeric BETWEEN -32768 AND 32767
    WHEN p_type = 'integer' THEN p_id ~ '^\s*[+-]?[0-9]{1,10}\s*$' AND btrim(p_id)::numeric BETWEEN -2147483648 AND 2147483647
    WHEN p_type = 'bigint' THEN p_id ~ '^\s*[+-]?[0-9]{1,19}\s*$' AND btrim(p_id)::numeric BETWEEN -9223372036854775808 AND 9223372036854775807
    WHEN p_type = 'uuid' THEN p_id ~* '^\s*\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?\s*$'
    ELSE true
  END
$function$;

-- embedding_validate_expression(regclass,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_validate_expression(p_rel regclass, p_content_sql text)
 RETURNS text[]
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
  v_view text := 'embedding_expr_check_' || pg_backend_pid();
  v_view_oid oid;
  v_tree text;
  v_bad text;
  v_cols text[];
  v_stable_ok text[] := ARRAY['concat', 'concat_ws', 'format', 'to_char', 'array_to_string', 'textanycat',
    'anytextcat', 'to_json', 'to_jsonb', 'json_build_object', 'jsonb_build_object', 'json_build_array',
    'jsonb_build_array', 'row_to_json', 'timestamptz_out', 'date_part', 'extract', 'date_trunc'];
BEGIN
  EXECUTE format('CREATE TEMP VIEW %I AS SELECT (%s)::text AS content FROM %s AS s', v_view, p_content_sql, p_rel);
  v_view_oid := format('pg_temp.%I', v_view)::regclass::oid;
  SELECT ev_action::text INTO v_tree FROM pg_rewrite WHERE ev_class = v_view_oid;
  SELECT coalesce(array_agg(DISTINCT a.attname::text ORDER BY a.attname::text), '{}') INTO v_cols
    FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
   WHERE d.classid = 'pg_rewrite'::regclass
     AND d.objid = (SELECT oid FROM pg_rewrite WHERE ev_class = format('pg_temp.%I', v_view)::regclass)
     AND d.refobjid = p_rel AND d.refobjsubid > 0;
  EXECUTE format('DROP VIEW pg_temp.%I', v_view);

  IF v_tree ~ '\{(SUBLINK|AGGREF|WINDOWFUNC|NEXTVALUEEXPR)' THEN
    v_bad := 'a subquery, an aggregate or a sequence';
  END IF;
  IF v_bad IS NULL THEN
    -- Up to PostgreSQL 15 a view's rule also lists the view itself (its OLD and NEW entries).
    SELECT string_agg(DISTINCT r::regclass::text, ', ') INTO v_bad
      FROM regexp_matches(v_tree, ':relid (\d+)', 'g') AS m(x), LATERAL (SELECT m.x[1]::oid AS r) o
     WHERE o.r NOT IN (p_rel::oid, v_view_oid);
    IF v_bad IS NOT NULL THEN v_bad := 'another table (' || v_bad || ')'; END IF;
  END IF;
  IF v_bad IS NULL THEN
    SELECT string_agg(DISTINCT p.oid::regprocedure::text, ', ') INTO v_bad
      FROM regexp_matches(v_tree, ':(?:funcid|opfuncid) (\d+)', 'g') AS m(x)
      JOIN pg_proc p ON p.oid = m.x[1]::oid
     WHERE p.pronamespace <> 'pg_catalog'::regnamespace
        OR NOT (p.provolatile = 'i' OR (p.provolatile = 's' AND p.proname = ANY (v_stable_ok)));
    IF v_bad IS NOT NULL THEN v_bad := 'the function ' || v_bad; END IF;
  END IF;
  IF v_bad IS NOT NULL THEN
    RAISE EXCEPTION 'content expression is not a pure expression over the row: it uses %', v_bad
      USING ERRCODE = '42501',
            HINT = 'use only the table''s own columns, operators and built-in text functions (upper, concat_ws, format, substr, coalesce, ...); or list columns with --content';
  END IF;
  RETURN v_cols;
END $function$;

-- embedding_write(text,text,text[],text[],text[],integer[],boolean[],real[],integer[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_write(p_target text, p_worker text, p_ids text[], p_hashes text[], p_vectors text[] DEFAULT NULL::text[], p_tokens integer[] DEFAULT NULL::integer[], p_truncated boolean[] DEFAULT NULL::boolean[], p_vectors_f4 real[] DEFAULT NULL::real[], p_vectors_dims integer[] DEFAULT NULL::integer[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_rel regclass;
  v_n integer := coalesce(cardinality(p_ids), 0);
  v_leased text[];
  v_lockable text[];
  v_written text[];
  v_bad_id text;
  v_bad_dims integer;
  v_stale integer := 0;
  v_gone integer := 0;
  v_busy text[] := '{}';
  v_parse_sql text;
  v_dims_sql text;
  v_binary boolean := p_vectors_f4 IS NOT NULL OR p_vectors_dims IS NOT NULL;
  v_offsets integer[];
  v_rows_sql text;
BEGIN
  IF v_n = 0 THEN
    RETURN jsonb_build_object('written', 0, 'stale', 0, 'gone', 0, 'notLeased', 0, 'busy', '[]'::jsonb);
  END IF;
  IF v_binary AND p_vectors IS NOT NULL THEN
    RAISE EXCEPTION 'write batch has vectors as text and as binary: send one (p_vectors, or p_vectors_f4 with p_vectors_dims)'
      USING ERRCODE = '22023';
  END IF;
  IF cardinality(p_hashes) <> v_n
     OR (CASE WHEN v_binary THEN coalesce(cardinality(p_vectors_dims), 0) ELSE coalesce(cardinality(p_vectors), 0) END) <> v_n
     OR (p_tokens IS NOT NULL AND cardinality(p_tokens) <> v_n)
     OR (p_truncated IS NOT NULL AND cardinality(p_truncated) <> v_n) THEN
    RAISE EXCEPTION 'write batch arrays differ in length (ids %, hashes %, vectors %)', v_n, cardinality(p_hashes),
      CASE WHEN v_binary THEN cardinality(p_vectors_dims) ELSE cardinality(p_vectors) END
      USING ERRCODE = '22023';
  END IF;
  IF v_binary THEN
    -- Binary: every vector of the batch in one real[] (p_vectors_f4), row k being the p_vectors_dims[k]
    -- floats after the lengths of the rows before it. The lengths must add up to the floats sent, so
    -- no slice reads past its own row.
    SELECT array_agg(s.total - s.len ORDER BY s.k) INTO v_offsets FROM (
      SELECT u.len, u.k, sum(u.len) OVER (ORDER BY u.k) AS total
        FROM unnest(p_vectors_dims) WITH ORDINALITY AS u(len, k)) AS s;
    IF EXISTS (SELECT 1 FROM unnest(p_vectors_dims) AS u(len) WHERE u.len IS NULL OR u.len < 0)
       OR (SELECT sum(u.len) FROM unnest(p_vectors_dims) AS u(len)) <> coalesce(cardinality(p_vectors_f4), 0) THEN
      RAISE EXCEPTION 'write batch vector lengths add up to %, but % floats were sent',
        (SELECT sum(u.len) FROM unnest(p_vectors_dims) AS u(len)), coalesce(cardinality(p_vectors_f4), 0)
        USING ERRCODE = '22023';
    END IF;
  END IF;
  v_rel := public.embedding_require_relation(t);
  PERFORM public.embedding_assert_access(t, v_rel, true);
  -- Each vector is parsed once, in the UPDATE statement, and its dimension taken from the parsed
  -- value: rows of the wrong size are never written, and the first of them is reported below, which
  -- rolls the whole call back: nothing of a batch with a wrong-size vector is kept, and no separate
  -- text pass counts commas in every vector.
  -- '[x,y]' -> '{x,y}' for array columns: two replace() calls, a tenth of the cost of translate().
  -- Binary: a slice of the float4 array (a copy, no parsing), cast to the column's type (pgvector's
  -- real[] -> vector / halfvec cast copies the floats and checks them); its length was sent with it.
  IF v_binary THEN
    v_rows_sql := 'unnest($1::text[], $2::text[], $6::integer[], $7::integer[]) WITH ORDINALITY AS x(id, hash, len, off, k)';
    v_parse_sql := format('($8::real[])[x.off + 1 : x.off + x.len]::%s', t.embedding_type_sql);
    v_dims_sql := 'x.len';
  ELSE
    v_rows_sql := 'unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(id, hash, vec, k)';
    v_parse_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                        THEN format('x.vec::%s', t.embedding_type_sql)
                        ELSE format('replace(replace(x.vec, ''['', ''{''), '']'', ''}'')::%s', t.embedding_type_sql) END;
    -- pgvector casts vector and halfvec to real[] (no parsing); arrays count themselves.
    v_dims_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                       THEN 'coalesce(cardinality(b."__embedding_sync_vec"::real[]), 0)'
                       ELSE 'coalesce(cardinality(b."__embedding_sync_vec"), 0)' END;
  END IF;

  -- Lease first (state rows locked in a fixed order, skipping any another transaction holds), then
  -- the source rows (skipping any a user transaction holds), then the source UPDATE of exactly
  -- those: nothing here waits on a user. Each statement is planned for its arrays (EXECUTE): in one
  -- statement the planner, misled by stale statistics on the leased rows, joined them to the batch in
  -- a nested loop that re-read every parsed vector once per row.
  v_leased := public.embedding_lock_leased(t.id, p_worker, p_ids);

  EXECUTE format($q$
    SELECT coalesce(array_agg(s.%1$I::text), '{}') FROM (
      SELECT s.%1$I FROM %2$s AS s WHERE s.%1$I = ANY ($1::%3$s[]) ORDER BY s.%1$I FOR UPDATE OF s SKIP LOCKED) AS s
  $q$, t.id_column, v_rel, t.id_type) INTO v_lockable USING v_leased;

  BEGIN
    EXECUTE format($q$
      WITH sized AS MATERIALIZED (
        -- OFFSET 0 keeps the parse in its own subquery: inlined, it would run once per reference.
        SELECT x.k, x.id AS "__embedding_sync_id", x.hash AS "__embedding_sync_hash",
               b."__embedding_sync_vec", %7$s AS "__embedding_sync_dims"
          FROM %8$s
         CROSS JOIN LATERAL (SELECT %3$s AS "__embedding_sync_vec" OFFSET 0) AS b
      ), w AS (
        UPDATE %1$s AS s SET %2$I = u."__embedding_sync_vec"
          FROM sized AS u
         WHERE s.%4$I = u."__embedding_sync_id"::%5$s
           AND u."__embedding_sync_id" = ANY ($4::text[])
           AND u."__embedding_sync_dims" = $5
           AND md5((%6$s)::text) = u."__embedding_sync_hash"
        RETURNING s.%4$I::text AS row_id
      ), bad AS (
        SELECT "__embedding_sync_id" AS id, "__embedding_sync_dims" AS dims FROM sized
         WHERE "__embedding_sync_dims" <> $5 ORDER BY k LIMIT 1
      )
      SELECT (SELECT coalesce(array_agg(row_id), '{}') FROM w), (SELECT id FROM bad), (SELECT dims FROM bad)
    $q$, v_rel, t.embedding_column, v_parse_sql, t.id_column, t.id_type, t.content_sql, v_dims_sql, v_rows_sql)
    INTO v_written, v_bad_id, v_bad_dims
    USING p_ids, p_hashes, p_vectors, v_lockable, t.dimensions, p_vectors_dims, v_offsets, p_vectors_f4;
  EXCEPTION WHEN data_exception THEN
    IF v_binary THEN
      -- Binary vectors always parse; a wrong length is reported as such, anything else (a NaN or an
      -- infinity pgvector refuses) as it was raised.
      SELECT p_ids[array_lower(p_ids, 1) + u.k - 1], u.len INTO v_bad_id, v_bad_dims
        FROM unnest(p_vectors_dims) WITH ORDINALITY AS u(len, k)
       WHERE u.len <> t.dimensions ORDER BY u.k LIMIT 1;
      IF v_bad_dims IS NULL THEN
        RAISE;
      END IF;
    ELSE
    -- A vector that does not parse (or another bad value). A wrong size is still reported as such,
    -- as a size check ahead of parsing would: counted in the text, an empty literal has 0 dimensions.
    SELECT p_ids[array_lower(p_ids, 1) + u.k - 1],
           CASE WHEN btrim(u.v, '[] ') = '' THEN 0 ELSE octet_length(u.v) - octet_length(replace(u.v, ',', '')) + 1 END
      INTO v_bad_id, v_bad_dims
      FROM unnest(p_vectors) WITH ORDINALITY AS u(v, k)
     WHERE octet_length(u.v) - octet_length(replace(u.v, ',', '')) + 1 <> t.dimensions
        OR (t.dimensions = 1 AND btrim(u.v, '[] ') = '')
     ORDER BY u.k
     LIMIT 1;
    IF v_bad_dims IS NULL THEN
      RAISE;
    END IF;
    END IF;
  END;
  -- Dimension check with both numbers in the message (384 vs 1536 is the classic); raising here undoes
  -- the UPDATE.
  IF v_bad_dims IS NOT NULL THEN
    RAISE EXCEPTION 'target "%": expected % dimensions, got % (row %)', t.name, t.dimensions, v_bad_dims, v_bad_id
      USING ERRCODE = '22000', HINT = format('configure the provider for %s dimensions, or alter the column to the model''s dimension', t.dimensions);
  END IF;

  -- EXECUTE, so the plan is made for these arrays: a cached generic plan guesses 10 rows per
  -- unnest() and joined the batch with itself in a nested loop. Only rows this worker holds (all
  -- written rows are), so whatever index is picked, it reads the leased rows, not the whole target.
  EXECUTE $q$
    UPDATE public.embedding_items i
       SET status = 'completed', content_hash = u.hash, model = $3, tokens = u.tokens,
           truncated = coalesce(u.truncated, false), attempts = 0, locked_until = NULL, worker_id = NULL,
           last_error = NULL, error_kind = NULL, embedded_at = now(), updated_at = now()
      FROM unnest($4::text[], $5::text[], $6::integer[], $7::boolean[]) AS u(id, hash, tokens, truncated)
     WHERE i.target_id = $1 AND i.row_id = u.id AND i.row_id = ANY ($8::text[])
       AND i.status = 'processing' AND i.worker_id = $2
  $q$ USING t.id, p_worker, t.model, p_ids, p_hashes,
      coalesce(p_tokens, array_fill(NULL::integer, ARRAY[v_n])),
      coalesce(p_truncated, array_fill(false, ARRAY[v_n])), v_written;

  -- Leased but not written: the row is gone (end its state), its content changed, or a user holds it
  -- right now (queue it again either way; a user's edit queues it at commit anyway). Rows whose state
  -- another transaction holds are left alone (`busy`): whoever holds them decides.
  IF cardinality(v_written) < v_n THEN
    EXECUTE format($q$
      WITH gone AS (
        DELETE FROM public.embedding_items i
         WHERE i.target_id = $1 AND i.row_id = ANY ($2) AND NOT (i.row_id = ANY ($3)) AND NOT (i.row_id = ANY ($5))
           AND i.status = 'processing' AND i.worker_id = $4
           AND NOT EXISTS (SELECT 1 FROM %1$s s WHERE s.%2$I = i.row_id::%3$s)
        RETURNING 1
      ) SELECT count(*) FROM gone
    $q$, v_rel, t.id_column, t.id_type)
    INTO v_gone USING t.id, v_leased, v_written, p_worker, v_lockable;

    WITH stale AS (
      UPDATE public.embedding_items i
         SET status = 'pending', next_retry_at = now(), locked_until = NULL, worker_id = NULL, updated_at = now()
       WHERE i.target_id = t.id AND i.row_id = ANY (v_leased) AND NOT (i.row_id = ANY (v_written))
         AND i.status = 'processing' AND i.worker_id = p_worker
      RETURNING 1
    ) SELECT count(*) INTO v_stale FROM stale;
  END IF;

  -- Rows still leased to this worker that another transaction holds right now: left for the caller
  -- to write again in a moment (the holder is usually another worker's claim, done in milliseconds)
  -- or to leave to a user's edit, which queues them again when it commits.
  SELECT coalesce(array_agg(i.row_id), '{}') INTO v_busy FROM public.embedding_items i
   WHERE i.target_id = t.id AND i.row_id = ANY (p_ids) AND NOT (i.row_id = ANY (v_leased))
     AND i.status = 'processing' AND i.worker_id = p_worker;
  RETURN jsonb_build_object('written', cardinality(v_written), 'stale', v_stale, 'gone', v_gone,
    'busy', to_jsonb(v_busy), 'notLeased', v_n - cardinality(v_leased) - cardinality(v_busy));
END $function$;

-- embedding_write_counted(text,text,text[],text[],text[],integer[],boolean[],jsonb,real[],integer[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_write_counted(p_target text, p_worker text, p_ids text[], p_hashes text[], p_vectors text[] DEFAULT NULL::text[], p_tokens integer[] DEFAULT NULL::integer[], p_truncated boolean[] DEFAULT NULL::boolean[], p_progress jsonb DEFAULT NULL::jsonb, p_vectors_f4 real[] DEFAULT NULL::real[], p_vectors_dims integer[] DEFAULT NULL::integer[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET lock_timeout TO '50ms'
AS $function$
DECLARE
  v_w jsonb := public.embedding_write(p_target, p_worker, p_ids, p_hashes, p_vectors, p_tokens, p_truncated,
                                       p_vectors_f4, p_vectors_dims);
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
END $function$;

-- increment_embedding_job_progress(uuid,integer,integer,integer,bigint,integer,integer,integer,integer,integer,integer,bigint,integer,text,integer,boolean); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.increment_embedding_job_progress(job_id uuid, increment_count integer, failed_count integer DEFAULT 0, skipped_count integer DEFAULT 0, token_count bigint DEFAULT 0, request_count integer DEFAULT 0, chunks_planned integer DEFAULT 0, chunks_embedded integer DEFAULT 0, dead_lettered_count integer DEFAULT NULL::integer, retried_count integer DEFAULT NULL::integer, rate_limited_count integer DEFAULT NULL::integer, latency_ms bigint DEFAULT NULL::bigint, latency_count integer DEFAULT NULL::integer, history_target text DEFAULT NULL::text, history_days integer DEFAULT NULL::integer, pending_summary boolean DEFAULT false)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
END $function$;
