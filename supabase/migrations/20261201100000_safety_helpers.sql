-- Embedding sync: the service never breaks the user's table, never stalls on one bad input, and never
-- gives a caller more rights than it has. Part 1: identity, privileges and validation helpers, and
-- triggers that cannot raise into the user's statement.
--
-- Who is calling: API functions are SECURITY DEFINER (callers hold no right on the internal tables),
-- so `current_user` inside them is the owner. The caller is the role the session acts as: what
-- SET ROLE (PostgREST's `SET LOCAL ROLE service_role`) put in the `role` setting, else the login
-- role. Only a member of a role can SET ROLE to it, so this cannot claim more than the session has.
-- Every read of a source table checks that the caller may SELECT those columns, every write that it
-- may UPDATE the embedding column.

ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS table_oid oid;
-- Columns a content expression reads (from its parse tree at registration): privilege checks and
-- the update trigger's column list use them.
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS content_refs text[];
-- false after a re-registration that changed what is embedded: vectors already in the column were
-- made from other content or by another model, so seeding does not take them as current.
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS trust_existing boolean NOT NULL DEFAULT true;
ALTER TABLE public.embedding_targets ADD COLUMN IF NOT EXISTS registered_by text;

CREATE OR REPLACE FUNCTION public.embedding_caller()
RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END $$;

-- The target's table, found by its identity rather than its name: the table that carries the
-- target's insert trigger. A rename or a schema move keeps working; after a dump and restore (new
-- OIDs) the trigger still names the target. Without a trigger, the stored name; NULL when gone.
CREATE OR REPLACE FUNCTION public.embedding_relation(t public.embedding_targets)
RETURNS regclass
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

-- The table as a name, for messages and status: its current schema and name.
CREATE OR REPLACE FUNCTION public.embedding_relation_name(p_rel regclass)
RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = p_rel
$$;

CREATE OR REPLACE FUNCTION public.embedding_require_relation(t public.embedding_targets)
RETURNS regclass
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE v_rel regclass := public.embedding_relation(t);
BEGIN
  IF v_rel IS NULL THEN
    RAISE EXCEPTION 'the table of target "%" (%.%) no longer exists', t.name, t.schema_name, t.table_name
      USING ERRCODE = '42P01', HINT = format('restore the table, or remove the target: embeddings targets remove %s', t.name);
  END IF;
  RETURN v_rel;
END $$;

-- The caller may read the columns the target reads (id, content, embedding) and, for `write`, UPDATE
-- the embedding column. Refused with the role, the table, the missing privilege and the GRANT.
CREATE OR REPLACE FUNCTION public.embedding_assert_access(t public.embedding_targets, p_rel regclass, p_write boolean)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

-- Whether text is a valid value of the target's id type, without raising (PostgreSQL 15 has no
-- pg_input_is_valid). A NUL byte can never be stored; text ids take anything else.
CREATE OR REPLACE FUNCTION public.embedding_valid_id(p_type text, p_id text)
RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
  SELECT p_id IS NOT NULL AND CASE
    WHEN p_type = 'smallint' THEN p_id ~ '^\s*[+-]?[0-9]{1,5}\s*$' AND btrim(p_id)::numeric BETWEEN -32768 AND 32767
    WHEN p_type = 'integer' THEN p_id ~ '^\s*[+-]?[0-9]{1,10}\s*$' AND btrim(p_id)::numeric BETWEEN -2147483648 AND 2147483647
    WHEN p_type = 'bigint' THEN p_id ~ '^\s*[+-]?[0-9]{1,19}\s*$' AND btrim(p_id)::numeric BETWEEN -9223372036854775808 AND 9223372036854775807
    WHEN p_type = 'uuid' THEN p_id ~* '^\s*\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?\s*$'
    ELSE true
  END
$$;

-- A content expression must be a pure expression over the row: it may read only the source
-- table's own columns and call only built-in functions that have no side effects and read nothing
-- else (IMMUTABLE ones, and a few STABLE text builders). Checked on the expression's parse tree:
-- a view over it is created and its rewrite rule's function, operator and relation ids are read
-- (a dependency list would not do: built-in functions are pinned and never recorded there).
-- Returns the columns it reads.
CREATE OR REPLACE FUNCTION public.embedding_validate_expression(p_rel regclass, p_content_sql text)
RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

-- Queues one source row: due now, attempts reset. A lease in flight is dropped, so a write of the
-- content as it was before this change finds no lease and is discarded. The row is new work: it no
-- longer belongs to the job that seeded it.
CREATE OR REPLACE FUNCTION public.embedding_queue_row(p_target integer, p_row_id text, p_max_attempts integer)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts)
  VALUES (p_target, p_row_id, 'pending', coalesce(p_max_attempts, 3))
  ON CONFLICT (target_id, row_id) DO UPDATE
    SET status = 'pending', attempts = 0, next_retry_at = now(), locked_until = NULL, worker_id = NULL,
        last_error = NULL, error_kind = NULL, enqueued_at = now(), updated_at = now()
$$;

-- Trigger: a new row, or a row whose content columns changed, becomes due. The WHEN clause on the
-- update trigger (built at registration) means an update of unrelated columns or a no-op update
-- never even calls this. A trigger whose target is gone does nothing: the user's write goes on.
-- TG_ARGV: target id, primary key column.
CREATE OR REPLACE FUNCTION public.embedding_on_row_change()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE v_max integer;
BEGIN
  SELECT max_attempts INTO v_max FROM public.embedding_targets WHERE id = TG_ARGV[0]::integer;
  IF FOUND THEN
    PERFORM public.embedding_queue_row(TG_ARGV[0]::integer, to_jsonb(NEW) ->> TG_ARGV[1], v_max);
  END IF;
  RETURN NULL;
END $$;

-- Trigger of targets registered before expressions were checked: new registrations watch the
-- expression's columns with embedding_on_row_change instead. The expression is evaluated for OLD and
-- NEW; if it fails on this row, the row is dead-lettered with the reason and the user's statement
-- goes on.
CREATE OR REPLACE FUNCTION public.embedding_on_row_update_expr()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

-- Trigger: a deleted row (or the old id of a re-keyed row) ends its state; it is never retried.
CREATE OR REPLACE FUNCTION public.embedding_on_row_delete()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM public.embedding_items WHERE target_id = TG_ARGV[0]::integer AND row_id = to_jsonb(OLD) ->> TG_ARGV[1];
  RETURN NULL;
END $$;

-- Drops the target's triggers wherever they are: found by their name and the target id they carry,
-- not by the table's stored name, so a rename, a schema move or a restore leaves nothing behind.
CREATE OR REPLACE FUNCTION public.embedding_drop_triggers(t public.embedding_targets)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
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
END $$;

-- Installs the target's four triggers on its table: insert, delete, re-key, and update of the
-- columns the content is made of (for an expression, the columns it reads).
CREATE OR REPLACE FUNCTION public.embedding_install_triggers(t public.embedding_targets, p_rel regclass)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_cols text[] := coalesce(t.content_refs, t.content_columns, '{}');
  v_when text;
BEGIN
  SELECT string_agg(format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', c), ' OR ') INTO v_when
    FROM unnest(v_cols || t.id_column) AS c;
  EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.embedding_on_row_change(%L, %L)',
    'embedding_' || t.name || '_ins', p_rel, t.id, t.id_column);
  EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s FOR EACH ROW EXECUTE FUNCTION public.embedding_on_row_delete(%L, %L)',
    'embedding_' || t.name || '_del', p_rel, t.id, t.id_column);
  EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %s FOR EACH ROW WHEN (%s) EXECUTE FUNCTION public.embedding_on_row_change(%L, %L)',
    'embedding_' || t.name || '_upd',
    (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_cols || t.id_column) AS c),
    p_rel, v_when, t.id, t.id_column);
  EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %I ON %s FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) EXECUTE FUNCTION public.embedding_on_row_delete(%L, %L)',
    'embedding_' || t.name || '_rekey', t.id_column, p_rel, t.id_column, t.id_column, t.id, t.id_column);
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261201100000', 'safety_helpers')
ON CONFLICT (version) DO NOTHING;
