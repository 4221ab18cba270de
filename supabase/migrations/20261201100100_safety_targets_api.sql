-- Embedding sync: least privilege and safety, part 2: the targets API.
--
-- Registration checks the caller's own rights on the source table (it may read the id and content
-- columns, update the embedding column and create triggers), validates a content expression as a
-- pure expression over the row, and refuses to silently keep state made for another definition:
-- re-registering a name with another table, id, content, embedding column, provider, model or
-- dimension needs p_replace, which clears the old state and has every row embedded again.

UPDATE public.embedding_targets
   SET table_oid = to_regclass(format('%I.%I', schema_name, table_name))
 WHERE table_oid IS NULL;

-- Lexical guard on a content expression, before the parser sees it: one balanced parenthesised
-- expression, so it cannot close the parenthesis it is wrapped in wherever the API uses it, and no
-- statement separator, comment or dollar quote.
CREATE OR REPLACE FUNCTION public.embedding_expression_shape_problem(p_expr text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

DROP FUNCTION IF EXISTS public.embedding_register_target(text, text, text, text, text, text, text[], text, integer, integer);

-- Registers (or re-registers) a target. Validates the table and every column and the caller's
-- rights on them, reads the embedding column's type and dimension and refuses a mismatch, then
-- installs the change triggers.
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
  p_replace boolean DEFAULT false
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
  v_emb_type oid;
  v_emb_typmod integer;
  v_emb_typname text;
  v_emb_nsp text;
  v_kind text;
  v_type_sql text;
  v_dims integer;
  v_content_sql text;
  v_cols text;
  v_refs text[];
  v_problem text;
  v_caller text := public.embedding_caller();
  v_changed text[] := '{}';
  v_reset bigint := 0;
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
  -- The service reads every row of the table; with row level security that is more than the caller may.
  IF (SELECT relrowsecurity FROM pg_class WHERE oid = v_rel)
     AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = v_caller)
     AND NOT pg_has_role(v_caller, (SELECT relowner FROM pg_class WHERE oid = v_rel), 'USAGE') THEN
    RAISE EXCEPTION 'role % is subject to row level security on %.%, and the service would read every row', v_caller, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42501', HINT = 'register the target as a role that bypasses row level security (on Supabase: the service role)';
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

  -- Embedding column: type and dimension.
  SELECT a.atttypid, a.atttypmod, t2.typname, n2.nspname
    INTO v_emb_type, v_emb_typmod, v_emb_typname, v_emb_nsp
    FROM pg_attribute a JOIN pg_type t2 ON t2.oid = a.atttypid JOIN pg_namespace n2 ON n2.oid = t2.typnamespace
   WHERE a.attrelid = v_rel AND a.attname = p_embedding_column AND a.attnum > 0 AND NOT a.attisdropped;
  IF v_emb_type IS NULL THEN
    RAISE EXCEPTION 'embedding column "%" does not exist on %.%', p_embedding_column, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42703', HINT = format('add it: ALTER TABLE %I.%I ADD COLUMN %I vector(%s)', v_schema, v_table, p_embedding_column, coalesce(p_dimensions::text, 'N'));
  END IF;
  IF NOT has_column_privilege(v_caller, v_rel, p_embedding_column, 'UPDATE')
     OR NOT has_column_privilege(v_caller, v_rel, p_embedding_column, 'SELECT') THEN
    RAISE EXCEPTION 'role % may not read and update column % of %.%', v_caller, p_embedding_column, quote_ident(v_schema), quote_ident(v_table)
      USING ERRCODE = '42501', HINT = format('GRANT SELECT, UPDATE (%I) ON %I.%I TO %I', p_embedding_column, v_schema, v_table, v_caller);
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

  SELECT * INTO v_existing FROM public.embedding_targets WHERE name = p_name FOR UPDATE;
  IF FOUND THEN
    v_old_rel := public.embedding_relation(v_existing);
    IF v_old_rel IS DISTINCT FROM v_rel::regclass THEN v_changed := v_changed || 'table'::text; END IF;
    IF v_existing.id_column IS DISTINCT FROM p_id_column THEN v_changed := v_changed || 'id column'::text; END IF;
    IF v_existing.content_columns IS DISTINCT FROM p_content_columns
       OR v_existing.content_expression IS DISTINCT FROM p_content_expression THEN
      v_changed := v_changed || 'content'::text;
    END IF;
    IF v_existing.embedding_column IS DISTINCT FROM p_embedding_column THEN v_changed := v_changed || 'embedding column'::text; END IF;
    IF v_existing.provider IS DISTINCT FROM p_provider OR v_existing.model IS DISTINCT FROM p_model THEN
      v_changed := v_changed || 'provider/model'::text;
    END IF;
    IF v_existing.dimensions IS DISTINCT FROM v_dims THEN v_changed := v_changed || 'dimensions'::text; END IF;
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
      dimensions, max_attempts, registered_by)
  VALUES (p_name, v_schema, v_table, v_rel, p_id_column, v_id_type, p_content_columns, p_content_expression, v_content_sql,
      v_refs, p_embedding_column, v_kind, v_type_sql, p_provider, p_model, v_dims, coalesce(p_max_attempts, 3), v_caller)
  ON CONFLICT (name) DO UPDATE SET schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name,
      table_oid = EXCLUDED.table_oid, id_column = EXCLUDED.id_column, id_type = EXCLUDED.id_type,
      content_columns = EXCLUDED.content_columns, content_expression = EXCLUDED.content_expression,
      content_sql = EXCLUDED.content_sql, content_refs = EXCLUDED.content_refs,
      embedding_column = EXCLUDED.embedding_column, embedding_kind = EXCLUDED.embedding_kind,
      embedding_type_sql = EXCLUDED.embedding_type_sql, provider = EXCLUDED.provider, model = EXCLUDED.model,
      dimensions = EXCLUDED.dimensions, max_attempts = EXCLUDED.max_attempts, registered_by = EXCLUDED.registered_by,
      -- Vectors already in the column were made for the old definition: seeding must not trust them.
      trust_existing = x.trust_existing AND cardinality(v_changed) = 0,
      updated_at = now()
  RETURNING * INTO t;

  PERFORM public.embedding_install_triggers(t, v_rel::regclass);

  RETURN public.embedding_target_json(t) || jsonb_build_object('replaced', cardinality(v_changed) > 0, 'reset', v_reset,
    'changed', to_jsonb(v_changed));
END $$;

CREATE OR REPLACE FUNCTION public.embedding_target_json(t public.embedding_targets)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT jsonb_build_object(
    'name', t.name,
    'table', coalesce(public.embedding_relation_name(public.embedding_relation(t)), format('%I.%I', t.schema_name, t.table_name)),
    'idColumn', t.id_column,
    'idType', t.id_type, 'contentColumns', to_jsonb(t.content_columns), 'contentExpression', t.content_expression,
    'embeddingColumn', t.embedding_column, 'embeddingKind', t.embedding_kind, 'provider', t.provider,
    'model', t.model, 'dimensions', t.dimensions, 'maxAttempts', t.max_attempts,
    'backoffSeconds', to_jsonb(t.backoff_seconds), 'createdAt', t.created_at, 'updatedAt', t.updated_at)
$$;

-- Removes a target, its triggers (wherever its table is now) and its per-row state. The user's
-- table and its embeddings stay.
CREATE OR REPLACE FUNCTION public.embedding_remove_target(p_name text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE t public.embedding_targets;
BEGIN
  t := public.embedding_target_row(p_name);
  PERFORM public.embedding_drop_triggers(t);
  DELETE FROM public.embedding_targets WHERE id = t.id;
  RETURN jsonb_build_object('removed', t.name);
END $$;

-- Checks that a registered target still matches its table: columns present, dimension unchanged,
-- the caller's rights. Used by preflight; returns a list of problems (empty when healthy).
CREATE OR REPLACE FUNCTION public.embedding_check_target(p_name text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t public.embedding_targets;
  v_rel regclass;
  v_problems jsonb := '[]'::jsonb;
  v_col text;
  v_typmod integer;
  v_typname text;
  v_name text;
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
  SELECT a.atttypmod, ty.typname INTO v_typmod, v_typname FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
   WHERE a.attrelid = v_rel AND a.attname = t.embedding_column AND NOT a.attisdropped;
  IF v_typname IN ('vector', 'halfvec') AND v_typmod > 0 AND v_typmod <> t.dimensions THEN
    v_problems := v_problems || to_jsonb(format('column %I is %s(%s) but the target expects %s dimensions', t.embedding_column, v_typname, v_typmod, t.dimensions));
  END IF;
  IF jsonb_array_length(v_problems) = 0 THEN
    BEGIN
      PERFORM public.embedding_assert_access(t, v_rel, true);
    EXCEPTION WHEN insufficient_privilege THEN
      v_problems := v_problems || to_jsonb(SQLERRM);
    END;
  END IF;
  RETURN jsonb_build_object('ok', jsonb_array_length(v_problems) = 0, 'problems', v_problems,
    'dimensions', t.dimensions, 'provider', t.provider, 'model', t.model);
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201100100', 'safety_targets_api')
ON CONFLICT (version) DO NOTHING;
