-- The current schema of embeddings-sync, generated from a database migrated with
-- supabase/migrations (npm run schema:dump). Do not edit: change the schema with a new migration.

CREATE TABLE public.embedding_items (
  target_id integer NOT NULL,
  row_id text NOT NULL,
  status text NOT NULL DEFAULT 'pending'::text,
  priority integer NOT NULL DEFAULT 0,
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
  embedded_at timestamp with time zone
);
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_error_kind_check CHECK (error_kind = ANY (ARRAY['transient'::text, 'permanent'::text]));
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_pkey PRIMARY KEY (target_id, row_id);
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_status_check CHECK (status = ANY (ARRAY['pending'::text, 'processing'::text, 'completed'::text, 'failed'::text, 'dead_letter'::text]));
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_target_id_fkey FOREIGN KEY (target_id) REFERENCES embedding_targets(id) ON DELETE CASCADE;
CREATE INDEX embedding_items_due_idx ON public.embedding_items USING btree (target_id, priority DESC, next_retry_at) WHERE (status = ANY (ARRAY['pending'::text, 'failed'::text]));
CREATE INDEX embedding_items_embedded_idx ON public.embedding_items USING btree (target_id, embedded_at) INCLUDE (tokens) WHERE (tokens IS NOT NULL);
CREATE INDEX embedding_items_leased_idx ON public.embedding_items USING btree (target_id, locked_until) WHERE (status = 'processing'::text);
CREATE INDEX embedding_items_status_idx ON public.embedding_items USING btree (target_id, status);
ALTER TABLE public.embedding_items ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=arwdDxtm/postgres

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
  last_error text
);
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_idempotency_key_key UNIQUE (idempotency_key);
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_kind_check CHECK (kind = ANY (ARRAY['backfill'::text, 'run'::text, 'sweep'::text, 'recovery'::text]));
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_pkey PRIMARY KEY (id);
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_status_check CHECK (status = ANY (ARRAY['pending'::text, 'running'::text, 'completed'::text, 'failed'::text, 'cancelled'::text]));
ALTER TABLE public.embedding_jobs ADD CONSTRAINT embedding_jobs_target_id_fkey FOREIGN KEY (target_id) REFERENCES embedding_targets(id) ON DELETE CASCADE;
CREATE INDEX embedding_jobs_running_idx ON public.embedding_jobs USING btree (heartbeat_at) WHERE (status = 'running'::text);
CREATE INDEX embedding_jobs_target_idx ON public.embedding_jobs USING btree (target_id, created_at DESC);
ALTER TABLE public.embedding_jobs ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=arwdDxtm/postgres

CREATE TABLE public.embedding_schema_migrations (
  version text NOT NULL,
  name text NOT NULL,
  applied_at timestamp with time zone NOT NULL DEFAULT now(),
  checksum text
);
ALTER TABLE public.embedding_schema_migrations ADD CONSTRAINT embedding_schema_migrations_pkey PRIMARY KEY (version);
ALTER TABLE public.embedding_schema_migrations ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=arwdDxtm/postgres

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
  updated_at timestamp with time zone NOT NULL DEFAULT now()
);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_dimensions_check CHECK (dimensions >= 1 AND dimensions <= 16000);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_embedding_kind_check CHECK (embedding_kind = ANY (ARRAY['vector'::text, 'halfvec'::text, 'real[]'::text, 'double precision[]'::text]));
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_max_attempts_check CHECK (max_attempts >= 1 AND max_attempts <= 100);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_model_check CHECK (length(model) >= 1 AND length(model) <= 200);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_name_check CHECK (name ~ '^[a-z][a-z0-9_]{0,47}$'::text);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_name_key UNIQUE (name);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_pkey PRIMARY KEY (id);
ALTER TABLE public.embedding_targets ADD CONSTRAINT embedding_targets_provider_check CHECK (provider ~ '^[a-z][a-z0-9_-]{0,31}$'::text);
ALTER TABLE public.embedding_targets ENABLE ROW LEVEL SECURITY;
-- grants: postgres=arwdDxtm/postgres service_role=arwdDxtm/postgres

-- sequence public.embedding_targets_id_seq grants: anon=rwU/postgres authenticated=rwU/postgres postgres=rwU/postgres service_role=rwU/postgres

-- embedding_activity(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_activity(p_target text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_check_target(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_check_target(p_name text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets;
  v_rel oid;
  v_problems jsonb := '[]'::jsonb;
  v_col text;
  v_typmod integer;
  v_typname text;
BEGIN
  SELECT * INTO t FROM public.embedding_targets WHERE name = p_name;
  IF NOT FOUND THEN
    RETURN jsonb_build_object('ok', false, 'problems', jsonb_build_array(format('target "%s" is not registered', p_name)));
  END IF;
  SELECT c.oid INTO v_rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = t.schema_name AND c.relname = t.table_name;
  IF v_rel IS NULL THEN
    RETURN jsonb_build_object('ok', false, 'problems', jsonb_build_array(format('table %I.%I no longer exists', t.schema_name, t.table_name)));
  END IF;
  FOREACH v_col IN ARRAY coalesce(t.content_columns, '{}') || ARRAY[t.id_column, t.embedding_column] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped) THEN
      v_problems := v_problems || to_jsonb(format('column %I is missing from %I.%I', v_col, t.schema_name, t.table_name));
    END IF;
  END LOOP;
  SELECT a.atttypmod, ty.typname INTO v_typmod, v_typname FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
   WHERE a.attrelid = v_rel AND a.attname = t.embedding_column AND NOT a.attisdropped;
  IF v_typname IN ('vector', 'halfvec') AND v_typmod > 0 AND v_typmod <> t.dimensions THEN
    v_problems := v_problems || to_jsonb(format('column %I is %s(%s) but the target expects %s dimensions', t.embedding_column, v_typname, v_typmod, t.dimensions));
  END IF;
  RETURN jsonb_build_object('ok', jsonb_array_length(v_problems) = 0, 'problems', v_problems,
    'dimensions', t.dimensions, 'provider', t.provider, 'model', t.model);
END $function$;

-- embedding_claim(text,text,integer,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_claim(p_target text, p_worker text, p_limit integer DEFAULT 20, p_lease_seconds integer DEFAULT 300)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_ids text[];
  v_old_hashes text[];
  v_old_models text[];
  v_expired integer;
  v_gone text[];
  v_unchanged text[];
  v_blank text[];
  v_items jsonb;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
    RAISE EXCEPTION 'claim size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use a batch size of 1..10000';
  END IF;
  IF p_worker IS NULL OR length(p_worker) = 0 THEN
    RAISE EXCEPTION 'worker id is required' USING ERRCODE = '22023';
  END IF;

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
    SELECT row_id FROM public.embedding_items
     WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()
     ORDER BY priority DESC, next_retry_at
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = 'processing', locked_until = now() + make_interval(secs => p_lease_seconds),
           worker_id = p_worker, updated_at = now()
      FROM due d
     WHERE i.target_id = t.id AND i.row_id = d.row_id
    RETURNING i.row_id, i.content_hash, i.model
  )
  SELECT coalesce(array_agg(row_id), '{}'), array_agg(content_hash), array_agg(model)
    INTO v_ids, v_old_hashes, v_old_models FROM upd;

  IF cardinality(v_ids) = 0 THEN
    RETURN jsonb_build_object('items', '[]'::jsonb, 'expired', v_expired, 'deleted', 0, 'skipped', 0, 'empty', 0);
  END IF;

  -- One read of the source rows, by primary key, classifying every claimed id at once.
  EXECUTE format($q$
    WITH c AS (
      SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS c(row_id, old_hash, old_model)
    ), s AS (
      SELECT s.%1$I::text AS row_id, (%5$s)::text AS content, s.%2$I IS NOT NULL AS has_embedding
        FROM %3$I.%4$I AS s
       WHERE s.%1$I = ANY ($1::%6$s[])
    ), j AS (
      SELECT c.row_id, s.content, md5(s.content) AS hash, s.row_id IS NULL AS gone,
             s.row_id IS NOT NULL AND c.old_hash IS NOT DISTINCT FROM md5(s.content)
               AND c.old_model IS NOT DISTINCT FROM $4 AND s.has_embedding AS unchanged
        FROM c LEFT JOIN s ON s.row_id = c.row_id
    )
    SELECT coalesce(array_agg(row_id) FILTER (WHERE gone), '{}'),
           coalesce(array_agg(row_id) FILTER (WHERE unchanged), '{}'),
           coalesce(array_agg(row_id) FILTER (WHERE NOT gone AND NOT unchanged AND coalesce(content, '') !~ '\S'), '{}'),
           coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'content', content, 'hash', hash))
                      FILTER (WHERE NOT gone AND NOT unchanged AND coalesce(content, '') ~ '\S'), '[]'::jsonb)
      FROM j
  $q$, t.id_column, t.embedding_column, t.schema_name, t.table_name, t.content_sql, t.id_type)
  INTO v_gone, v_unchanged, v_blank, v_items USING v_ids, v_old_hashes, v_old_models, t.model;

  -- Rows gone from the source: end their state.
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

  RETURN jsonb_build_object('items', v_items, 'expired', v_expired, 'deleted', cardinality(v_gone),
    'skipped', cardinality(v_unchanged), 'empty', cardinality(v_blank));
END $function$;

-- embedding_dead_letters(text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_dead_letters(p_target text, p_limit integer DEFAULT 100)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('id', row_id, 'error', last_error, 'errorKind', error_kind,
            'attempts', attempts, 'updatedAt', updated_at) ORDER BY updated_at DESC), '[]'::jsonb)
            FROM (SELECT * FROM public.embedding_items WHERE target_id = t.id AND status = 'dead_letter'
                   ORDER BY updated_at DESC LIMIT least(greatest(p_limit, 1), 1000)) d);
END $function$;

-- embedding_drop_triggers(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_drop_triggers(t embedding_targets)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE v_suffix text;
BEGIN
  FOREACH v_suffix IN ARRAY ARRAY['ins', 'upd', 'del', 'rekey'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', 'embedding_' || t.name || '_' || v_suffix, t.schema_name, t.table_name);
  END LOOP;
END $function$;

-- embedding_enqueue(text,text,integer,boolean); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_enqueue(p_target text, p_after text DEFAULT NULL::text, p_limit integer DEFAULT 5000, p_reembed boolean DEFAULT false)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_result jsonb;
BEGIN
  IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100000 THEN
    RAISE EXCEPTION 'enqueue page size % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use 1..100000';
  END IF;
  EXECUTE format($q$
    WITH page AS (
      SELECT s.%1$I AS pk, s.%1$I::text AS row_id, s.%2$I IS NOT NULL AS has_embedding,
             md5((%3$s)::text) AS hash
        FROM %4$I.%5$I AS s
       WHERE $1::text IS NULL OR s.%1$I > $1::%6$s
       ORDER BY s.%1$I
       LIMIT $2
    ), ins AS (
      INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts, content_hash, model, embedded_at)
      SELECT $3, p.row_id,
             CASE WHEN p.has_embedding AND NOT $4 THEN 'completed' ELSE 'pending' END,
             $5,
             CASE WHEN p.has_embedding AND NOT $4 THEN p.hash END,
             CASE WHEN p.has_embedding AND NOT $4 THEN $6 END,
             CASE WHEN p.has_embedding AND NOT $4 THEN now() END
        FROM page p
      ON CONFLICT (target_id, row_id) DO UPDATE
        SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL,
            updated_at = now()
        WHERE $4 AND i.status <> 'processing'
      RETURNING i.status
    )
    SELECT jsonb_build_object(
      'scanned', (SELECT count(*) FROM page),
      'queued', (SELECT count(*) FROM ins WHERE status = 'pending'),
      'alreadyEmbedded', (SELECT count(*) FROM ins WHERE status = 'completed'),
      'last', (SELECT row_id FROM page ORDER BY pk DESC LIMIT 1))
  $q$, t.id_column, t.embedding_column, t.content_sql, t.schema_name, t.table_name, t.id_type)
  INTO v_result
  USING p_after, p_limit, t.id, p_reembed, t.max_attempts, t.model;
  RETURN v_result || jsonb_build_object('done', (v_result ->> 'scanned')::integer < p_limit);
END $function$;

-- embedding_fail(text,text,text[],text[],boolean); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_fail(p_target text, p_worker text, p_ids text[], p_errors text[], p_permanent boolean DEFAULT false)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_failed integer;
  v_dead integer;
BEGIN
  WITH u AS (
    SELECT * FROM unnest(p_ids, p_errors) AS x(id, err)
  ), upd AS (
    UPDATE public.embedding_items i
       SET attempts = i.attempts + 1,
           status = CASE WHEN p_permanent OR i.attempts + 1 >= i.max_attempts THEN 'dead_letter' ELSE 'failed' END,
           error_kind = CASE WHEN p_permanent THEN 'permanent' ELSE 'transient' END,
           last_error = left(coalesce(u.err, 'unknown error'), 2000),
           next_retry_at = now() + make_interval(secs => t.backoff_seconds[least(i.attempts + 1, cardinality(t.backoff_seconds))]),
           locked_until = NULL, worker_id = NULL, updated_at = now()
      FROM u
     WHERE i.target_id = t.id AND i.row_id = u.id AND i.status = 'processing' AND i.worker_id = p_worker
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
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
  RETURN public.embedding_target_json(public.embedding_target_row(p_name));
END $function$;

-- embedding_job_create(text,text,text,jsonb,uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_create(p_target text, p_kind text DEFAULT 'backfill'::text, p_idempotency_key text DEFAULT NULL::text, p_options jsonb DEFAULT '{}'::jsonb, p_job_id uuid DEFAULT NULL::uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_job_finish(uuid,text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_finish(p_job uuid, p_status text, p_error text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
  SELECT jsonb_build_object('id', j.id, 'target', (SELECT name FROM public.embedding_targets WHERE id = j.target_id),
    'kind', j.kind, 'status', j.status, 'options', j.options, 'itemsTotal', j.items_total,
    'itemsProcessed', j.items_processed, 'itemsFailed', j.items_failed, 'itemsSkipped', j.items_skipped,
    'tokens', j.tokens, 'requests', j.requests, 'createdAt', j.created_at, 'startedAt', j.started_at,
    'finishedAt', j.finished_at, 'heartbeatAt', j.heartbeat_at, 'lastError', j.last_error)
$function$;

-- embedding_job_start(uuid); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_job_start(p_job uuid)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_jobs_expire(integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_jobs_expire(p_stale_seconds integer DEFAULT 900)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
  SELECT coalesce(jsonb_agg(public.embedding_target_json(t) ORDER BY t.name), '[]'::jsonb) FROM public.embedding_targets t
$function$;

-- embedding_mark_pending(text,text[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_mark_pending(p_target text, p_ids text[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  IF cardinality(p_ids) > 10000 THEN
    RAISE EXCEPTION 'too many ids (%) in one call', cardinality(p_ids) USING ERRCODE = '22023', HINT = 'send at most 10000 ids per event';
  END IF;
  WITH ins AS (
    INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts)
    SELECT t.id, id, 'pending', t.max_attempts FROM unnest(p_ids) AS id
    ON CONFLICT (target_id, row_id) DO UPDATE
      SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL, updated_at = now()
      WHERE i.status <> 'processing'
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM ins;
  RETURN jsonb_build_object('marked', v_n);
END $function$;

-- embedding_on_row_change(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_on_row_change()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
  PERFORM public.embedding_queue_row(TG_ARGV[0]::integer, to_jsonb(NEW) ->> TG_ARGV[1],
    (SELECT max_attempts FROM public.embedding_targets WHERE id = TG_ARGV[0]::integer));
  RETURN NULL;
END $function$;

-- embedding_on_row_delete(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_on_row_delete()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets;
  v_old text;
  v_new text;
BEGIN
  SELECT * INTO t FROM public.embedding_targets WHERE id = TG_ARGV[0]::integer;
  IF NOT FOUND THEN RETURN NULL; END IF;
  EXECUTE format('SELECT (%s)::text FROM (SELECT ($1).*) AS s', t.content_sql) INTO v_old USING OLD;
  EXECUTE format('SELECT (%s)::text FROM (SELECT ($1).*) AS s', t.content_sql) INTO v_new USING NEW;
  IF v_old IS DISTINCT FROM v_new OR (to_jsonb(OLD) ->> TG_ARGV[1]) IS DISTINCT FROM (to_jsonb(NEW) ->> TG_ARGV[1]) THEN
    IF (to_jsonb(OLD) ->> TG_ARGV[1]) IS DISTINCT FROM (to_jsonb(NEW) ->> TG_ARGV[1]) THEN
      DELETE FROM public.embedding_items WHERE target_id = t.id AND row_id = to_jsonb(OLD) ->> TG_ARGV[1];
    END IF;
    PERFORM public.embedding_queue_row(t.id, to_jsonb(NEW) ->> TG_ARGV[1], t.max_attempts);
  END IF;
  RETURN NULL;
END $function$;

-- embedding_pending_summary(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_pending_summary(p_target text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  RETURN jsonb_build_object(
    'dueNow', EXISTS (SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'failed') AND next_retry_at <= now()),
    -- The first row in claim order, not min(): a walk of the due index that stops at one row.
    -- With mixed priorities it is a wake-up hint, not the exact earliest time.
    'nextRetryAt', (SELECT next_retry_at FROM public.embedding_items WHERE target_id = t.id AND status IN ('pending', 'failed')
                     ORDER BY priority DESC, next_retry_at LIMIT 1),
    'inFlight', EXISTS (SELECT 1 FROM public.embedding_items WHERE target_id = t.id AND status = 'processing'),
    'leaseExpiresAt', (SELECT max(locked_until) FROM public.embedding_items WHERE target_id = t.id AND status = 'processing'));
END $function$;

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
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_queue_row(integer,text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_queue_row(p_target integer, p_row_id text, p_max_attempts integer)
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
  INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts)
  VALUES (p_target, p_row_id, 'pending', coalesce(p_max_attempts, 3))
  ON CONFLICT (target_id, row_id) DO UPDATE
    SET status = 'pending', attempts = 0, next_retry_at = now(), locked_until = NULL, worker_id = NULL,
        last_error = NULL, error_kind = NULL, enqueued_at = now(), updated_at = now()
$function$;

-- embedding_rate(text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_rate(p_target text, p_minutes integer DEFAULT 15)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

-- embedding_register_target(text,text,text,text,text,text,text[],text,integer,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_register_target(p_name text, p_table text, p_id_column text, p_embedding_column text, p_provider text, p_model text, p_content_columns text[] DEFAULT NULL::text[], p_content_expression text DEFAULT NULL::text, p_dimensions integer DEFAULT NULL::integer, p_max_attempts integer DEFAULT 3)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  v_parts text[];
  v_schema text;
  v_table text;
  v_rel oid;
  v_col text;
  v_id_type text;
  v_emb_type oid;
  v_emb_typmod integer;
  v_emb_typname text;
  v_emb_nsp text;
  v_kind text;
  v_type_sql text;
  v_dims integer;
  v_content_sql text;
  v_cols text;
  v_when text;
  t public.embedding_targets;
  v_existing public.embedding_targets;
BEGIN
  IF p_name IS NULL OR p_name !~ '^[a-z][a-z0-9_]{0,47}$' THEN
    RAISE EXCEPTION 'invalid target name "%"', p_name
      USING ERRCODE = '22023', HINT = 'use 1-48 characters: lowercase letters, digits and _, starting with a letter';
  END IF;
  IF (p_content_columns IS NULL OR cardinality(p_content_columns) = 0) = (p_content_expression IS NULL) THEN
    RAISE EXCEPTION 'target "%": give either content columns or a content expression, not both and not neither', p_name
      USING ERRCODE = '22023', HINT = 'for example --content title,body';
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

  -- Primary key: must exist, be unique on its own, and be a type whose jsonb and text forms agree
  -- (the triggers read it through to_jsonb).
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

  -- Content.
  IF p_content_expression IS NULL THEN
    v_cols := '';
    v_when := '';
    FOREACH v_col IN ARRAY p_content_columns LOOP
      IF NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = v_col AND a.attnum > 0 AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'content column "%" does not exist on %.%', v_col, quote_ident(v_schema), quote_ident(v_table)
          USING ERRCODE = '42703', HINT = 'list existing text columns with --content col1,col2';
      END IF;
      v_cols := v_cols || CASE WHEN v_cols = '' THEN '' ELSE ', ' END || format('%I::text', v_col);
      v_when := v_when || CASE WHEN v_when = '' THEN '' ELSE ' OR ' END || format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', v_col);
    END LOOP;
    v_content_sql := format('concat_ws(E''\n\n'', %s)', v_cols);
  ELSE
    IF p_content_expression ~ ';' THEN
      RAISE EXCEPTION 'content expression must be a single SQL expression (no ";")' USING ERRCODE = '22023';
    END IF;
    v_content_sql := '(' || p_content_expression || ')';
  END IF;
  BEGIN
    EXECUTE format('SELECT (%s)::text FROM %I.%I AS s LIMIT 0', v_content_sql, v_schema, v_table);
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'content expression is not valid on %.%: %', quote_ident(v_schema), quote_ident(v_table), SQLERRM
      USING ERRCODE = '22023', HINT = 'it must be one SQL expression over the row''s columns that yields text';
  END;

  -- Embedding column: type and dimension.
  SELECT a.atttypid, a.atttypmod, t2.typname, n2.nspname
    INTO v_emb_type, v_emb_typmod, v_emb_typname, v_emb_nsp
    FROM pg_attribute a JOIN pg_type t2 ON t2.oid = a.atttypid JOIN pg_namespace n2 ON n2.oid = t2.typnamespace
   WHERE a.attrelid = v_rel AND a.attname = p_embedding_column AND a.attnum > 0 AND NOT a.attisdropped;
  IF v_emb_type IS NULL THEN
    RAISE EXCEPTION 'embedding column "%" does not exist on %.%', p_embedding_column, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42703', HINT = format('add it: ALTER TABLE %I.%I ADD COLUMN %I vector(%s)', v_schema, v_table, p_embedding_column, coalesce(p_dimensions::text, 'N'));
  END IF;
  IF v_emb_typname IN ('vector', 'halfvec') THEN
    v_kind := v_emb_typname;
    v_type_sql := format('%I.%I', v_emb_nsp, v_emb_typname);
    v_dims := CASE WHEN v_emb_typmod > 0 THEN v_emb_typmod END;
  ELSIF v_emb_typname = '_float4' THEN
    v_kind := 'real[]'; v_type_sql := 'real[]';
  ELSIF v_emb_typname = '_float8' THEN
    v_kind := 'double precision[]'; v_type_sql := 'double precision[]';
  ELSE
    RAISE EXCEPTION 'embedding column "%" has type %, which cannot hold an embedding', p_embedding_column, format_type(v_emb_type, v_emb_typmod)
      USING ERRCODE = '22023', HINT = 'use vector(N) or halfvec(N) from pgvector, or real[] / double precision[] with --dimensions N';
  END IF;
  IF v_dims IS NOT NULL AND p_dimensions IS NOT NULL AND v_dims <> p_dimensions THEN
    RAISE EXCEPTION 'dimension mismatch: column %.%.% is %(%) but the target is configured for % dimensions',
      quote_ident(v_schema), quote_ident(v_table), quote_ident(p_embedding_column), v_kind, v_dims, p_dimensions
      USING ERRCODE = '22023',
            HINT = format('use --dimensions %s, or change the column: ALTER TABLE %I.%I ALTER COLUMN %I TYPE %s(%s)', v_dims, v_schema, v_table, p_embedding_column, v_kind, p_dimensions);
  END IF;
  v_dims := coalesce(v_dims, p_dimensions);
  IF v_dims IS NULL THEN
    RAISE EXCEPTION 'embedding column "%" (%) has no fixed dimension', p_embedding_column, format_type(v_emb_type, v_emb_typmod)
      USING ERRCODE = '22023', HINT = 'pass --dimensions N (for example 1536 for text-embedding-3-small)';
  END IF;

  SELECT * INTO v_existing FROM public.embedding_targets WHERE name = p_name;
  IF FOUND THEN
    PERFORM public.embedding_drop_triggers(v_existing);
  END IF;

  INSERT INTO public.embedding_targets AS x (name, schema_name, table_name, id_column, id_type, content_columns,
      content_expression, content_sql, embedding_column, embedding_kind, embedding_type_sql, provider, model,
      dimensions, max_attempts)
  VALUES (p_name, v_schema, v_table, p_id_column, v_id_type, p_content_columns, p_content_expression, v_content_sql,
      p_embedding_column, v_kind, v_type_sql, p_provider, p_model, v_dims, coalesce(p_max_attempts, 3))
  ON CONFLICT (name) DO UPDATE SET schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name,
      id_column = EXCLUDED.id_column, id_type = EXCLUDED.id_type, content_columns = EXCLUDED.content_columns,
      content_expression = EXCLUDED.content_expression, content_sql = EXCLUDED.content_sql,
      embedding_column = EXCLUDED.embedding_column, embedding_kind = EXCLUDED.embedding_kind,
      embedding_type_sql = EXCLUDED.embedding_type_sql, provider = EXCLUDED.provider, model = EXCLUDED.model,
      dimensions = EXCLUDED.dimensions, max_attempts = EXCLUDED.max_attempts, updated_at = now()
  RETURNING * INTO t;

  EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I.%I FOR EACH ROW EXECUTE FUNCTION public.embedding_on_row_change(%L, %L)',
    'embedding_' || t.name || '_ins', v_schema, v_table, t.id, p_id_column);
  EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I.%I FOR EACH ROW EXECUTE FUNCTION public.embedding_on_row_delete(%L, %L)',
    'embedding_' || t.name || '_del', v_schema, v_table, t.id, p_id_column);
  IF p_content_expression IS NULL THEN
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %I.%I FOR EACH ROW WHEN (%s) EXECUTE FUNCTION public.embedding_on_row_change(%L, %L)',
      'embedding_' || t.name || '_upd',
      (SELECT string_agg(format('%I', c), ', ') FROM unnest(p_content_columns || p_id_column) AS c),
      v_schema, v_table, v_when || format(' OR OLD.%1$I IS DISTINCT FROM NEW.%1$I', p_id_column), t.id, p_id_column);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %I ON %I.%I FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) EXECUTE FUNCTION public.embedding_on_row_delete(%L, %L)',
      'embedding_' || t.name || '_rekey', p_id_column, v_schema, v_table, p_id_column, p_id_column, t.id, p_id_column);
  ELSE
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I.%I FOR EACH ROW EXECUTE FUNCTION public.embedding_on_row_update_expr(%L, %L)',
      'embedding_' || t.name || '_upd', v_schema, v_table, t.id, p_id_column);
  END IF;

  RETURN public.embedding_target_json(t);
END $function$;

-- embedding_release(text,text,text[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_release(p_target text, p_worker text, p_ids text[] DEFAULT NULL::text[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  WITH upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.status = 'processing' AND i.worker_id = p_worker
       AND (p_ids IS NULL OR i.row_id = ANY (p_ids))
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('released', v_n);
END $function$;

-- embedding_release_prefix(text,text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_release_prefix(p_target text, p_worker_prefix text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  IF coalesce(length(p_worker_prefix), 0) < 8 THEN
    RAISE EXCEPTION 'worker prefix too short' USING ERRCODE = '22023';
  END IF;
  WITH upd AS (
    UPDATE public.embedding_items i
       SET status = CASE WHEN i.attempts > 0 THEN 'failed' ELSE 'pending' END,
           locked_until = NULL, worker_id = NULL, updated_at = now()
     WHERE i.target_id = t.id AND i.status = 'processing' AND starts_with(i.worker_id, p_worker_prefix)
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('released', v_n);
END $function$;

-- embedding_remove_target(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_remove_target(p_name text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE t public.embedding_targets;
BEGIN
  t := public.embedding_target_row(p_name);
  PERFORM public.embedding_drop_triggers(t);
  DELETE FROM public.embedding_targets WHERE id = t.id;
  RETURN jsonb_build_object('removed', t.name);
END $function$;

-- embedding_retry(text,text[],boolean,boolean,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_retry(p_target text, p_ids text[] DEFAULT NULL::text[], p_dead_letter_only boolean DEFAULT true, p_transient_only boolean DEFAULT false, p_limit integer DEFAULT 1000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer;
BEGIN
  WITH pick AS (
    SELECT row_id FROM public.embedding_items
     WHERE target_id = t.id
       AND (p_ids IS NULL OR row_id = ANY (p_ids))
       AND (CASE WHEN p_dead_letter_only THEN status = 'dead_letter' ELSE status IN ('failed', 'dead_letter', 'completed') END)
       AND (NOT p_transient_only OR error_kind = 'transient')
     ORDER BY row_id
     LIMIT p_limit
       FOR UPDATE SKIP LOCKED
  ), upd AS (
    UPDATE public.embedding_items i
       SET status = 'pending', attempts = 0, next_retry_at = now(), last_error = NULL, error_kind = NULL,
           content_hash = CASE WHEN i.status = 'completed' THEN NULL ELSE i.content_hash END, updated_at = now()
      FROM pick WHERE i.target_id = t.id AND i.row_id = pick.row_id
    RETURNING 1
  ) SELECT count(*) INTO v_n FROM upd;
  RETURN jsonb_build_object('requeued', v_n);
END $function$;

-- embedding_retry_completed_null(text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_retry_completed_null(p_target text, p_limit integer DEFAULT 1000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_schema_version(); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_schema_version()
 RETURNS jsonb
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
  SELECT jsonb_build_object('version', (SELECT max(version) FROM public.embedding_schema_migrations),
    'versions', (SELECT coalesce(jsonb_agg(version ORDER BY version), '[]'::jsonb) FROM public.embedding_schema_migrations),
    'checksums', (SELECT coalesce(jsonb_object_agg(version, checksum), '{}'::jsonb) FROM public.embedding_schema_migrations
                   WHERE checksum IS NOT NULL),
    'vector', EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector'),
    'server', current_setting('server_version'))
$function$;

-- embedding_status(text,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_status(p_target text DEFAULT NULL::text, p_jobs integer DEFAULT 5)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
END $function$;

-- embedding_target_json(embedding_targets); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_target_json(t embedding_targets)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
  SELECT jsonb_build_object(
    'name', t.name, 'table', format('%I.%I', t.schema_name, t.table_name), 'idColumn', t.id_column,
    'idType', t.id_type, 'contentColumns', to_jsonb(t.content_columns), 'contentExpression', t.content_expression,
    'embeddingColumn', t.embedding_column, 'embeddingKind', t.embedding_kind, 'provider', t.provider,
    'model', t.model, 'dimensions', t.dimensions, 'maxAttempts', t.max_attempts,
    'backoffSeconds', to_jsonb(t.backoff_seconds), 'createdAt', t.created_at, 'updatedAt', t.updated_at)
$function$;

-- embedding_target_row(text); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_target_row(p_target text)
 RETURNS embedding_targets
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
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

-- embedding_write(text,text,text[],text[],text[],integer[],boolean[]); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.embedding_write(p_target text, p_worker text, p_ids text[], p_hashes text[], p_vectors text[], p_tokens integer[] DEFAULT NULL::integer[], p_truncated boolean[] DEFAULT NULL::boolean[])
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
  t public.embedding_targets := public.embedding_target_row(p_target);
  v_n integer := coalesce(cardinality(p_ids), 0);
  v_leased text[];
  v_written text[];
  v_bad_id text;
  v_bad_dims integer;
  v_stale integer := 0;
  v_gone integer := 0;
  v_parse_sql text;
  v_dims_sql text;
BEGIN
  IF v_n = 0 THEN
    RETURN jsonb_build_object('written', 0, 'stale', 0, 'gone', 0, 'notLeased', 0);
  END IF;
  IF cardinality(p_hashes) <> v_n OR cardinality(p_vectors) <> v_n
     OR (p_tokens IS NOT NULL AND cardinality(p_tokens) <> v_n)
     OR (p_truncated IS NOT NULL AND cardinality(p_truncated) <> v_n) THEN
    RAISE EXCEPTION 'write batch arrays differ in length (ids %, hashes %, vectors %)', v_n, cardinality(p_hashes), cardinality(p_vectors)
      USING ERRCODE = '22023';
  END IF;
  -- Each vector is parsed once, in the UPDATE statement, and its dimension taken from the parsed
  -- value: rows of the wrong size are never written, and the first of them is reported below, which
  -- rolls the whole call back: nothing of a batch with a wrong-size vector is kept, and no separate
  -- text pass counts commas in every vector.
  -- '[x,y]' -> '{x,y}' for array columns: two replace() calls, a tenth of the cost of translate().
  v_parse_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                      THEN format('x.vec::%s', t.embedding_type_sql)
                      ELSE format('replace(replace(x.vec, ''['', ''{''), '']'', ''}'')::%s', t.embedding_type_sql) END;
  -- pgvector casts vector and halfvec to real[] (no parsing); arrays count themselves.
  v_dims_sql := CASE WHEN t.embedding_kind IN ('vector', 'halfvec')
                     THEN 'coalesce(cardinality(b."__embedding_sync_vec"::real[]), 0)'
                     ELSE 'coalesce(cardinality(b."__embedding_sync_vec"), 0)' END;

  -- Lease first (items rows locked in a fixed order), then the source UPDATE: a concurrent content
  -- edit either committed before (its trigger re-queued the item, so the lease check drops it) or
  -- waits for us and re-queues the row afterwards. Two statements, each planned for its arrays
  -- (EXECUTE): in one statement the planner, misled by stale statistics on the leased rows, joined
  -- them to the batch in a nested loop that re-read every parsed vector once per row.
  EXECUTE $q$
    SELECT coalesce(array_agg(row_id), '{}') FROM (
      SELECT i.row_id FROM public.embedding_items i
       WHERE i.target_id = $1 AND i.row_id = ANY ($2::text[]) AND i.status = 'processing' AND i.worker_id = $3
       ORDER BY i.row_id
         FOR UPDATE) AS l
  $q$ INTO v_leased USING t.id, p_ids, p_worker;

  BEGIN
    EXECUTE format($q$
      WITH sized AS MATERIALIZED (
        -- OFFSET 0 keeps the parse in its own subquery: inlined, it would run once per reference.
        SELECT x.k, x.id AS "__embedding_sync_id", x.hash AS "__embedding_sync_hash",
               b."__embedding_sync_vec", %8$s AS "__embedding_sync_dims"
          FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(id, hash, vec, k)
         CROSS JOIN LATERAL (SELECT %4$s AS "__embedding_sync_vec" OFFSET 0) AS b
      ), w AS (
        UPDATE %1$I.%2$I AS s SET %3$I = u."__embedding_sync_vec"
          FROM sized AS u
         WHERE s.%5$I = u."__embedding_sync_id"::%6$s
           AND u."__embedding_sync_id" = ANY ($4::text[])
           AND u."__embedding_sync_dims" = $5
           AND md5((%7$s)::text) = u."__embedding_sync_hash"
        RETURNING s.%5$I::text AS row_id
      ), bad AS (
        SELECT "__embedding_sync_id" AS id, "__embedding_sync_dims" AS dims FROM sized
         WHERE "__embedding_sync_dims" <> $5 ORDER BY k LIMIT 1
      )
      SELECT (SELECT coalesce(array_agg(row_id), '{}') FROM w), (SELECT id FROM bad), (SELECT dims FROM bad)
    $q$, t.schema_name, t.table_name, t.embedding_column, v_parse_sql, t.id_column, t.id_type, t.content_sql, v_dims_sql)
    INTO v_written, v_bad_id, v_bad_dims USING p_ids, p_hashes, p_vectors, v_leased, t.dimensions;
  EXCEPTION WHEN data_exception THEN
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
  END;
  -- Dimension check with both numbers in the message (384 vs 1536 is the classic); raising here undoes
  -- the UPDATE.
  IF v_bad_dims IS NOT NULL THEN
    RAISE EXCEPTION 'target "%": expected % dimensions, got % (row %)', t.name, t.dimensions, v_bad_dims, v_bad_id
      USING ERRCODE = '22000', HINT = format('configure the provider for %s dimensions, or alter the column to the model''s dimension', t.dimensions);
  END IF;

  -- EXECUTE, so the plan is made for these arrays: a cached generic plan guesses 10 rows per
  -- unnest() and, from the sixth batch on, joined the batch with itself in a nested loop (250,000
  -- comparisons for 500 rows, measured as the slowest statement of the write). Only rows this worker
  -- holds (all written rows are), so whatever index is picked, on statistics that may be stale right
  -- after a bulk seed, it reads the leased rows, not the whole target.
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

  -- Leased but not written: the row is gone (end its state) or its content changed (queue it again).
  -- When every row was written there is nothing of either.
  IF cardinality(v_written) < v_n THEN
    EXECUTE format($q$
      WITH gone AS (
        DELETE FROM public.embedding_items i
         WHERE i.target_id = $1 AND i.row_id = ANY ($2) AND NOT (i.row_id = ANY ($3))
           AND i.status = 'processing' AND i.worker_id = $4
           AND NOT EXISTS (SELECT 1 FROM %1$I.%2$I s WHERE s.%3$I = i.row_id::%4$s)
        RETURNING 1
      ) SELECT count(*) FROM gone
    $q$, t.schema_name, t.table_name, t.id_column, t.id_type)
    INTO v_gone USING t.id, p_ids, v_written, p_worker;

    WITH stale AS (
      UPDATE public.embedding_items i
         SET status = 'pending', next_retry_at = now(), locked_until = NULL, worker_id = NULL, updated_at = now()
       WHERE i.target_id = t.id AND i.row_id = ANY (p_ids) AND NOT (i.row_id = ANY (v_written))
         AND i.status = 'processing' AND i.worker_id = p_worker
      RETURNING 1
    ) SELECT count(*) INTO v_stale FROM stale;
  END IF;

  RETURN jsonb_build_object('written', cardinality(v_written), 'stale', v_stale, 'gone', v_gone,
    'notLeased', v_n - cardinality(v_written) - v_stale - v_gone);
END $function$;

-- increment_embedding_job_progress(uuid,integer,integer,integer,bigint,integer); grants: postgres=X/postgres service_role=X/postgres
CREATE OR REPLACE FUNCTION public.increment_embedding_job_progress(job_id uuid, increment_count integer, failed_count integer DEFAULT 0, skipped_count integer DEFAULT 0, token_count bigint DEFAULT 0, request_count integer DEFAULT 0)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
END $function$;
