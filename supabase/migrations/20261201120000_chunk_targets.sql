-- Embedding sync: chunk mode, part 1: tables and registration.
--
-- A chunked target embeds a long document (a transcript) as many chunk rows in a chunk table the
-- project writes: (document_id, chunk_index, content, embedding), primary key
-- (document_id, chunk_index). The source table is still only ever read.
--
--   * embedding_items keeps one row per document (status 'chunked': its chunks are cut and being
--     embedded), embedding_chunks one row per chunk of the version being embedded (its vector kept
--     as real[] until the whole set is done).
--   * Chunks are cut by the worker (token-aware, content-anchored boundaries: src/lib/chunking) and
--     planned in bounded pages; a chunk whose content is already in the chunk table, or was embedded
--     for an earlier version, keeps its vector: no provider call.
--   * A document's new chunk set replaces the old one in one transaction once every chunk of it is
--     embedded (embedding_chunk_swap_*): readers never see a document with missing, duplicated or
--     mixed-version chunks, and the old chunks stay searchable meanwhile.
--   * Batches are chunks: a document of 5,000 chunks is spread over many batches, and a batch may
--     take chunks of several documents.

ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS chunk_schema text;
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS chunk_table text;
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS chunk_oid oid;
-- For a chunked target, embedding_column holds the source's key column: the source-side functions'
-- "row has an embedding" test is then always true and reads no vector, and (with trust_existing
-- off) seeding queues every document. The chunk table's vector column is chunk_embedding_column.
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS chunk_embedding_column text;
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS chunk_tokens integer
  CHECK (chunk_tokens IS NULL OR chunk_tokens BETWEEN 16 AND 8191);
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS chunk_overlap integer
  CHECK (chunk_overlap IS NULL OR chunk_overlap BETWEEN 0 AND 4095);
-- The batch size a statement timeout or a request-too-large taught this target (NULL: no cap).
-- Workers claim at most this many; it grows back after successes (src/lib/core/adaptive.ts).
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS batch_limit integer
  CHECK (batch_limit IS NULL OR batch_limit BETWEEN 1 AND 10000);
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS batch_limit_reason text;
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS batch_limit_at timestamptz;
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS batch_limit_successes integer NOT NULL DEFAULT 0;

ALTER TABLE public.embedding_items DROP CONSTRAINT IF EXISTS embedding_items_status_check;
ALTER TABLE public.embedding_items ADD CONSTRAINT embedding_items_status_check
  CHECK (status IN ('pending', 'processing', 'chunked', 'completed', 'failed', 'dead_letter', 'parked'));
-- For a chunked document: md5 of the content its current chunk set (being embedded) was cut from,
-- and how many chunks that set has.
ALTER TABLE public.embedding_items ADD COLUMN IF NOT EXISTS chunk_hash text;
ALTER TABLE public.embedding_items ADD COLUMN IF NOT EXISTS chunk_count integer;

ALTER TABLE public.embedding_jobs ADD COLUMN IF NOT EXISTS chunks_total bigint NOT NULL DEFAULT 0;
ALTER TABLE public.embedding_jobs ADD COLUMN IF NOT EXISTS chunks_embedded bigint NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS public.embedding_chunks (
  target_id integer NOT NULL,
  row_id text NOT NULL,
  -- md5 of the document content this chunk was cut from: a version of the document.
  doc_hash text NOT NULL,
  chunk_index integer NOT NULL CHECK (chunk_index >= 0),
  content text NOT NULL,
  content_hash text NOT NULL,
  tokens integer,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'dead_letter')),
  -- The chunk table already holds this content at this index: nothing to write at the swap.
  in_place boolean NOT NULL DEFAULT false,
  vector real[],
  priority integer NOT NULL DEFAULT 0,
  attempts integer NOT NULL DEFAULT 0,
  max_attempts integer NOT NULL DEFAULT 3,
  next_retry_at timestamptz NOT NULL DEFAULT now(),
  locked_until timestamptz,
  worker_id text,
  last_error text,
  error_kind text CHECK (error_kind IN ('transient', 'permanent')),
  job_id uuid,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (target_id, row_id, doc_hash, chunk_index),
  FOREIGN KEY (target_id, row_id) REFERENCES public.embedding_items (target_id, row_id) ON DELETE CASCADE
);
-- Claims walk due chunks in order; partial, so embedded chunks waiting for their swap cost nothing.
CREATE INDEX IF NOT EXISTS embedding_chunks_due_idx
  ON public.embedding_chunks (target_id, priority DESC, next_retry_at)
  WHERE status IN ('pending', 'failed');
CREATE INDEX IF NOT EXISTS embedding_chunks_leased_idx
  ON public.embedding_chunks (target_id, locked_until)
  WHERE status = 'processing';
CREATE INDEX IF NOT EXISTS embedding_chunks_status_idx ON public.embedding_chunks (target_id, status);
ALTER TABLE public.embedding_chunks ENABLE ROW LEVEL SECURITY;

-- The chunk table, by identity first (a rename keeps working), else by its stored name.
CREATE OR REPLACE FUNCTION public.embedding_chunk_relation(t public.embedding_targets)
RETURNS regclass
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE v_rel oid;
BEGIN
  IF t.chunk_table IS NULL THEN RETURN NULL; END IF;
  SELECT oid INTO v_rel FROM pg_class WHERE oid = t.chunk_oid AND relkind IN ('r', 'p');
  IF FOUND THEN RETURN v_rel::regclass; END IF;
  RETURN to_regclass(format('%I.%I', t.chunk_schema, t.chunk_table));
END $$;

CREATE OR REPLACE FUNCTION public.embedding_require_chunk_relation(t public.embedding_targets)
RETURNS regclass
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE v_rel regclass := public.embedding_chunk_relation(t);
BEGIN
  IF v_rel IS NULL THEN
    RAISE EXCEPTION 'the chunk table of target "%" (%.%) no longer exists', t.name, t.chunk_schema, t.chunk_table
      USING ERRCODE = '42P01',
            HINT = format('re-register the target with --chunks %I.%I to create it again, or remove the target', t.chunk_schema, t.chunk_table);
  END IF;
  RETURN v_rel;
END $$;

-- The type of an embedding column: its kind, its SQL type and its fixed dimension (NULL for arrays).
-- NULL when the column does not exist; raises when its type cannot hold an embedding.
CREATE OR REPLACE FUNCTION public.embedding_column_type(p_rel regclass, p_column text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

-- Validates an existing chunk table, or creates it. Every problem of an existing table is listed in
-- one message with its fix. A created table gets pgvector's type when the extension is installed
-- (real[] otherwise, said in the result), and a foreign key to the source that cascades deletes and
-- key changes, so the user's own DELETE or key UPDATE of a document never fails on its chunks.
CREATE OR REPLACE FUNCTION public.embedding_prepare_chunk_table(
  p_chunk_table text,
  p_source regclass,
  p_source_id text,
  p_id_type text,
  p_embedding_column text,
  p_dimensions integer
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

DROP FUNCTION IF EXISTS public.embedding_register_target(text, text, text, text, text, text, text[], text, integer, integer, boolean);

-- Registers (or re-registers) a target. Validates the table and every column and the caller's
-- rights on them; for a row target reads the embedding column's type and dimension and refuses a
-- mismatch, for a chunked target validates or creates the chunk table; then installs the change
-- triggers. Another definition under the same name needs p_replace (the old state is cleared).
CREATE OR REPLACE FUNCTION public.embedding_register_target(
  p_name text,
  p_table text,
  p_id_column text,
  p_embedding_column text,
  p_provider text,
  p_model text,
  p_content_columns text[] DEFAULT NULL,
  p_content_expression text DEFAULT NULL,
  p_dimensions integer DEFAULT NULL,
  p_max_attempts integer DEFAULT 3,
  p_replace boolean DEFAULT false,
  p_chunk_table text DEFAULT NULL,
  p_chunk_tokens integer DEFAULT NULL,
  p_chunk_overlap integer DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

-- A document deleted (or re-keyed) from a chunked target's source: queued, so the next claim finds
-- it gone and removes its chunks (a chunk table without a cascading foreign key keeps none either).
-- Never raises into the user's statement.
CREATE OR REPLACE FUNCTION public.embedding_on_doc_delete()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

CREATE OR REPLACE FUNCTION public.embedding_install_triggers(t public.embedding_targets, p_rel regclass)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

CREATE OR REPLACE FUNCTION public.embedding_target_json(t public.embedding_targets)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
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
    'batchLimit', t.batch_limit, 'batchLimitReason', t.batch_limit_reason, 'batchLimitAt', t.batch_limit_at)
$$;

-- The adaptive batch size: set when a statement timeout or a too-large request split a batch, raised
-- again (or cleared with NULL) after successes. One small UPDATE, only when the size changes.
CREATE OR REPLACE FUNCTION public.embedding_set_batch_limit(p_target text, p_limit integer, p_reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
DECLARE t public.embedding_targets := public.embedding_target_row(p_target);
BEGIN
  IF p_limit IS NOT NULL AND (p_limit < 1 OR p_limit > 10000) THEN
    RAISE EXCEPTION 'batch limit % is out of range', p_limit USING ERRCODE = '22023', HINT = 'use 1..10000, or NULL for none';
  END IF;
  UPDATE public.embedding_targets SET batch_limit = p_limit, batch_limit_reason = left(p_reason, 500),
         batch_limit_at = now(), batch_limit_successes = 0
   WHERE id = t.id RETURNING * INTO t;
  RETURN jsonb_build_object('batchLimit', t.batch_limit, 'reason', t.batch_limit_reason, 'at', t.batch_limit_at);
END $$;

-- A batch of p_size went through while the target is capped: after 5 of them at the cap, the cap
-- grows by half (gone once it reaches p_requested, the size the worker asked for). Called only
-- while a cap is set, so an uncapped target pays nothing.
CREATE OR REPLACE FUNCTION public.embedding_batch_limit_success(p_target text, p_size integer, p_requested integer)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '50ms'
AS $$
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
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201120000', 'chunk_targets')
ON CONFLICT (version) DO NOTHING;
