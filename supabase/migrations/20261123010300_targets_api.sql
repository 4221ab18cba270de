-- Embedding sync: targets API (register, get, list, remove, check).


-- Registers (or re-registers) a target. Validates the table and every column, reads the embedding
-- column's type and dimension and refuses a mismatch, then installs the change triggers.
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
  p_max_attempts integer DEFAULT 3
) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
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
END $$;

CREATE OR REPLACE FUNCTION public.embedding_target_json(t public.embedding_targets)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT jsonb_build_object(
    'name', t.name, 'table', format('%I.%I', t.schema_name, t.table_name), 'idColumn', t.id_column,
    'idType', t.id_type, 'contentColumns', to_jsonb(t.content_columns), 'contentExpression', t.content_expression,
    'embeddingColumn', t.embedding_column, 'embeddingKind', t.embedding_kind, 'provider', t.provider,
    'model', t.model, 'dimensions', t.dimensions, 'maxAttempts', t.max_attempts,
    'backoffSeconds', to_jsonb(t.backoff_seconds), 'createdAt', t.created_at, 'updatedAt', t.updated_at)
$$;

CREATE OR REPLACE FUNCTION public.embedding_get_target(p_name text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  RETURN public.embedding_target_json(public.embedding_target_row(p_name));
END $$;

CREATE OR REPLACE FUNCTION public.embedding_list_targets()
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT coalesce(jsonb_agg(public.embedding_target_json(t) ORDER BY t.name), '[]'::jsonb) FROM public.embedding_targets t
$$;

-- Removes a target, its triggers and its per-row state. The user's table and its embeddings stay.
CREATE OR REPLACE FUNCTION public.embedding_remove_target(p_name text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE t public.embedding_targets;
BEGIN
  t := public.embedding_target_row(p_name);
  PERFORM public.embedding_drop_triggers(t);
  DELETE FROM public.embedding_targets WHERE id = t.id;
  RETURN jsonb_build_object('removed', t.name);
END $$;

-- Checks that a registered target still matches its table: columns present, dimension unchanged.
-- Used by preflight; returns a list of problems (empty when healthy).
CREATE OR REPLACE FUNCTION public.embedding_check_target(p_name text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
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
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261123010300', 'targets_api')
ON CONFLICT (version) DO NOTHING;
