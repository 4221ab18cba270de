-- Embedding sync: the SQL contract, part 1 of 7: the tables and their row level security.
--
-- The contract is split by concern, in order: tables (this file), privileges, helpers and triggers,
-- targets API, queue API, jobs API, status API. Every API file ends by calling
-- embedding_apply_privileges(). A released migration is never edited (test/migrations.test.ts checks
-- supabase/migrations.sha256); changes ship as new migrations, and supabase/schema.sql shows the
-- current definition of everything.
--
-- Everything that needs atomicity lives here, as functions called by name (supabase.rpc or
-- `SELECT fn(...)`). Every API function returns jsonb so both transports parse results the same way.
-- Runs on PostgreSQL 15-18 and PGlite; needs no extension: pgvector types are only referenced by
-- name in dynamic SQL, so servers without pgvector can still sync real[] / double precision[] columns.
--
-- Invariants:
--   * The user's table is only ever UPDATEd (never INSERT/UPSERT), one statement per batch, and only
--     where the row's content still hashes to what was embedded.
--   * An item is processed only under a lease (status 'processing', worker_id, locked_until); every
--     write and failure checks the lease, so a worker whose lease expired cannot clobber a newer one.
--   * Identifiers are stored raw and quoted with format('%I') at every use; nothing typed by a user is
--     concatenated into SQL except a content expression, which registration type-checks and which
--     only the service role can register.

CREATE TABLE IF NOT EXISTS public.embedding_schema_migrations (
  version text PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.embedding_targets (
  id serial PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,47}$'),
  schema_name text NOT NULL,
  table_name text NOT NULL,
  id_column text NOT NULL,
  id_type text NOT NULL,
  content_columns text[],
  content_expression text,
  content_sql text NOT NULL,
  embedding_column text NOT NULL,
  embedding_kind text NOT NULL CHECK (embedding_kind IN ('vector', 'halfvec', 'real[]', 'double precision[]')),
  embedding_type_sql text NOT NULL,
  provider text NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_-]{0,31}$'),
  model text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
  dimensions integer NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
  max_attempts integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
  backoff_seconds integer[] NOT NULL DEFAULT '{30,90,270}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.embedding_items (
  target_id integer NOT NULL REFERENCES public.embedding_targets (id) ON DELETE CASCADE,
  row_id text NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'dead_letter')),
  -- Room for "recent rows first": claims order by priority, then due time.
  priority integer NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 3,
  next_retry_at timestamptz NOT NULL DEFAULT now(),
  locked_until timestamptz,
  worker_id text,
  last_error text,
  -- 'transient' (timeouts, 5xx: the recovery sweep retries them) or 'permanent' (needs a person).
  error_kind text CHECK (error_kind IN ('transient', 'permanent')),
  -- md5 of the content that was embedded, and the model that embedded it: unchanged content with the
  -- same model is never embedded twice.
  content_hash text,
  model text,
  tokens integer,
  truncated boolean NOT NULL DEFAULT false,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  embedded_at timestamptz,
  PRIMARY KEY (target_id, row_id)
);

-- Claims read due work in due order; partial, so completed rows (the bulk of a synced table) cost
-- nothing to skip.
CREATE INDEX IF NOT EXISTS embedding_items_due_idx
  ON public.embedding_items (target_id, priority DESC, next_retry_at)
  WHERE status IN ('pending', 'failed');
CREATE INDEX IF NOT EXISTS embedding_items_leased_idx
  ON public.embedding_items (target_id, locked_until)
  WHERE status = 'processing';
-- Status counts per target: an index-only scan instead of a heap scan.
CREATE INDEX IF NOT EXISTS embedding_items_status_idx
  ON public.embedding_items (target_id, status);

CREATE TABLE IF NOT EXISTS public.embedding_jobs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  target_id integer NOT NULL REFERENCES public.embedding_targets (id) ON DELETE CASCADE,
  kind text NOT NULL DEFAULT 'backfill' CHECK (kind IN ('backfill', 'run', 'sweep', 'recovery')),
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  -- Set from the triggering event id (or CLI run id): a duplicate event or a dashboard replay finds
  -- the same job instead of starting a second one.
  idempotency_key text UNIQUE,
  options jsonb NOT NULL DEFAULT '{}',
  items_total bigint NOT NULL DEFAULT 0,
  items_processed bigint NOT NULL DEFAULT 0,
  items_failed bigint NOT NULL DEFAULT 0,
  items_skipped bigint NOT NULL DEFAULT 0,
  tokens bigint NOT NULL DEFAULT 0,
  requests bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz,
  heartbeat_at timestamptz,
  last_error text
);
CREATE INDEX IF NOT EXISTS embedding_jobs_target_idx ON public.embedding_jobs (target_id, created_at DESC);
CREATE INDEX IF NOT EXISTS embedding_jobs_running_idx ON public.embedding_jobs (heartbeat_at) WHERE status = 'running';

-- Internal tables: row level security on, no policies, so anon/authenticated see nothing even if a
-- grant slips in. The service role (and the table owner) bypass RLS.
ALTER TABLE public.embedding_schema_migrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.embedding_targets ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.embedding_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.embedding_jobs ENABLE ROW LEVEL SECURITY;

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261123010000', 'embedding_core')
ON CONFLICT (version) DO NOTHING;
