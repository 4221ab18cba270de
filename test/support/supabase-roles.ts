/**
 * Supabase's roles and default privileges, as a Supabase project has them before any migration of
 * ours runs (supabase/postgres initial schema): `anon` and `authenticated` for API users, and
 * `service_role` (BYPASSRLS) for servers. Every table, function and sequence the `postgres` role
 * creates in `public` is granted to all three by default, so the service's migrations must take
 * away what those roles must not have. Roles are per cluster, default privileges per database:
 * `SUPABASE_ROLES_SQL` once per cluster, `SUPABASE_DEFAULTS_SQL` in each database before migrating.
 */

export const SUPABASE_ROLES_SQL = `
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
END $$;
`;

export const SUPABASE_DEFAULTS_SQL = `
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
`;
