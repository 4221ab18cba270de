-- Embedding sync: helpers (not API) and the triggers that keep per-row state current.

CREATE OR REPLACE FUNCTION public.embedding_target_row(p_target text)
RETURNS public.embedding_targets
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE t public.embedding_targets;
BEGIN
  SELECT * INTO t FROM public.embedding_targets WHERE name = p_target;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown target "%"', p_target
      USING ERRCODE = 'P0002', HINT = 'register it first: embeddings targets add <name> ... (embeddings targets list shows what exists)';
  END IF;
  RETURN t;
END $$;

CREATE OR REPLACE FUNCTION public.embedding_qualified_table(t public.embedding_targets)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, public, pg_temp
AS $$ SELECT format('%I.%I', t.schema_name, t.table_name) $$;

-- Queues one source row: due now, attempts reset. A lease in flight is dropped, so a write of the
-- content as it was before this change finds no lease and is discarded.
CREATE OR REPLACE FUNCTION public.embedding_queue_row(p_target integer, p_row_id text, p_max_attempts integer)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
  INSERT INTO public.embedding_items AS i (target_id, row_id, status, max_attempts)
  VALUES (p_target, p_row_id, 'pending', coalesce(p_max_attempts, 3))
  ON CONFLICT (target_id, row_id) DO UPDATE
    SET status = 'pending', attempts = 0, next_retry_at = now(), locked_until = NULL, worker_id = NULL,
        last_error = NULL, error_kind = NULL, enqueued_at = now(), updated_at = now()
$$;

-- Trigger: a new row, or a row whose content columns changed, becomes due. The WHEN clause on the
-- update trigger (built at registration) means an update of unrelated columns or a no-op update
-- never even calls this. TG_ARGV: target id, primary key column.
CREATE OR REPLACE FUNCTION public.embedding_on_row_change()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  PERFORM public.embedding_queue_row(TG_ARGV[0]::integer, to_jsonb(NEW) ->> TG_ARGV[1],
    (SELECT max_attempts FROM public.embedding_targets WHERE id = TG_ARGV[0]::integer));
  RETURN NULL;
END $$;

-- Trigger for targets whose content is a SQL expression: the expression is evaluated for OLD and NEW
-- and the row becomes due only when the result differs.
CREATE OR REPLACE FUNCTION public.embedding_on_row_update_expr()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
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
END $$;

-- Trigger: a deleted row (or the old id of a re-keyed row) ends its state; it is never retried.
CREATE OR REPLACE FUNCTION public.embedding_on_row_delete()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
  DELETE FROM public.embedding_items WHERE target_id = TG_ARGV[0]::integer AND row_id = to_jsonb(OLD) ->> TG_ARGV[1];
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION public.embedding_drop_triggers(t public.embedding_targets)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE v_suffix text;
BEGIN
  FOREACH v_suffix IN ARRAY ARRAY['ins', 'upd', 'del', 'rekey'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', 'embedding_' || t.name || '_' || v_suffix, t.schema_name, t.table_name);
  END LOOP;
END $$;

SELECT public.embedding_apply_privileges();

INSERT INTO public.embedding_schema_migrations (version, name) VALUES ('20261123010200', 'helpers_and_triggers')
ON CONFLICT (version) DO NOTHING;
