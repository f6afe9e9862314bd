-- tenantgate row-level security kit, part 1: the app role and tenantgate.protect_table().
--
-- Run once per database, as the role that owns the application's tables (it needs CREATEROLE
-- to create the app role; changing an existing role's SUPERUSER/BYPASSRLS needs a superuser):
--
--   psql -v app_role=app -d appdb -f deploy/sql/tenantgate.sql
--   psql -d appdb -c "SELECT tenantgate.protect_table('public.orders')"
--
-- psql variables (all optional):
--   app_role        the role tenantgate logs in as (backend.user); default app
--   tenant_setting  the setting tenantgate sets per session (postgres.tenant_setting);
--                   default app.tenant_id
--
-- What it does:
--   * creates the app role (LOGIN, NOSUPERUSER, NOBYPASSRLS, NOCREATEDB, NOCREATEROLE,
--     NOREPLICATION) or removes those attributes from an existing one; its password is set
--     separately (\password app), never in a script;
--   * creates schema tenantgate (owned by you, no access for PUBLIC) and
--     tenantgate.protect_table(tbl, tenant_column, setting, signed_context, app_role), which
--     for one table:
--       - adds the tenant column when it is missing: text NOT NULL DEFAULT
--         current_setting(setting), so an INSERT without the column takes the session's
--         tenant, and an INSERT in a session without a tenant fails;
--       - enables AND forces row-level security (FORCE: the owner is filtered too);
--       - (re)creates policy tenant_isolation, FOR ALL, TO PUBLIC:
--           USING (tenant_column = current_setting(setting, true))
--           WITH CHECK (tenant_column = current_setting(setting, true))
--         or, with signed_context => true (after signed_context.sql):
--           tenant_column = (SELECT tenantgate.current_tenant());
--       - does the same for every partition of a partitioned table;
--       - grants SELECT, INSERT, UPDATE, DELETE on the table (USAGE on its schema and its
--         serial sequences) to the app role. Never TRUNCATE: RLS does not apply to it.
--
-- The script is idempotent: run it again after changing a variable.

\set ON_ERROR_STOP on
SET client_min_messages = warning;
\if :{?app_role}
\else
\set app_role app
\endif
\if :{?tenant_setting}
\else
\set tenant_setting app.tenant_id
\endif

BEGIN;

-- The kit must be run by the owner, never by the role tenantgate uses: a table owner can turn
-- RLS off for its own tables.
SELECT pg_catalog.set_config('tenantgate.kit_app_role', :'app_role', true) AS tg_kit_role,
       pg_catalog.set_config('tenantgate.kit_tenant_setting', :'tenant_setting', true)
       AS tg_kit_setting \gset
DO $check$
BEGIN
    IF current_setting('tenantgate.kit_app_role') = current_user THEN
        RAISE EXCEPTION 'tenantgate.sql: run this as the table owner, not as the app role %',
            current_user;
    END IF;
    IF current_setting('tenantgate.kit_tenant_setting')
        !~ '^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$' THEN
        RAISE EXCEPTION 'tenantgate.sql: tenant_setting % is not a dotted setting name',
            current_setting('tenantgate.kit_tenant_setting');
    END IF;
END
$check$;

-- The app role: created when missing, stripped of what lets a role escape RLS when present.
SELECT pg_catalog.format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE '
                         'NOREPLICATION', :'app_role')
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'app_role') \gexec
SELECT pg_catalog.format('ALTER ROLE %I NOSUPERUSER', rolname)
  FROM pg_catalog.pg_roles WHERE rolname = :'app_role' AND rolsuper \gexec
SELECT pg_catalog.format('ALTER ROLE %I NOBYPASSRLS', rolname)
  FROM pg_catalog.pg_roles WHERE rolname = :'app_role' AND rolbypassrls \gexec
SELECT pg_catalog.format('ALTER ROLE %I LOGIN NOCREATEDB NOCREATEROLE', rolname)
  FROM pg_catalog.pg_roles
 WHERE rolname = :'app_role' AND (rolcreatedb OR rolcreaterole OR NOT rolcanlogin) \gexec

CREATE SCHEMA IF NOT EXISTS tenantgate;
REVOKE ALL ON SCHEMA tenantgate FROM PUBLIC;

-- Applies the RLS setup described above to one table (and its partitions). Runs with the
-- caller's rights: only the table's owner can call it successfully.
CREATE OR REPLACE FUNCTION tenantgate.protect_table(
    tbl regclass,
    tenant_column name DEFAULT 'tenant_id',
    setting text DEFAULT :'tenant_setting',
    signed_context boolean DEFAULT false,
    app_role name DEFAULT :'app_role')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    col_type text;
    tenant_expr text;
    part regclass;
    seq regclass;
    nsp name;
BEGIN
    IF setting !~ '^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$' THEN
        RAISE EXCEPTION 'tenantgate.protect_table: % is not a dotted setting name', setting;
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = tbl) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'tenantgate.protect_table: % is not a table', tbl;
    END IF;
    IF signed_context AND to_regprocedure('tenantgate.current_tenant()') IS NULL THEN
        RAISE EXCEPTION 'tenantgate.protect_table: tenantgate.current_tenant() does not exist '
                        '(run deploy/sql/signed_context.sql first)';
    END IF;

    SELECT format_type(a.atttypid, a.atttypmod) INTO col_type
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = tenant_column AND a.attnum > 0
       AND NOT a.attisdropped;
    IF col_type IS NULL THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I text', tbl, tenant_column);
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT current_setting(%L)',
                       tbl, tenant_column, setting);
        BEGIN
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, tenant_column);
        EXCEPTION WHEN not_null_violation THEN
            RAISE EXCEPTION 'tenantgate.protect_table: % already has rows: add column % '
                            'yourself, fill in each row''s tenant, then call protect_table '
                            'again', tbl, tenant_column;
        END;
        col_type := 'text';
    END IF;

    IF signed_context THEN
        tenant_expr := '(SELECT tenantgate.current_tenant())';
    ELSE
        tenant_expr := format('current_setting(%L, true)', setting);
    END IF;
    IF col_type <> 'text' THEN
        tenant_expr := format('(%s)::%s', tenant_expr, col_type);
    END IF;

    -- the table itself and every partition below it (a partition read directly is checked
    -- against its own policies, not its parent's)
    FOR part IN SELECT tbl
                UNION
                SELECT t.relid FROM pg_partition_tree(tbl) t
                  JOIN pg_class c ON c.oid = t.relid
                 WHERE c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', part);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %s', part);
        EXECUTE format('CREATE POLICY tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC '
                       'USING (%I = %s) WITH CHECK (%I = %s)',
                       part, tenant_column, tenant_expr, tenant_column, tenant_expr);
    END LOOP;

    IF app_role IS NOT NULL THEN
        SELECT n.nspname INTO nsp
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = tbl;
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', nsp, app_role);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', tbl, app_role);
        FOR seq IN SELECT d.objid::regclass
                     FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                      AND d.refobjid = tbl AND d.deptype IN ('a', 'i')
        LOOP
            EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', seq, app_role);
        END LOOP;
    END IF;
END
$fn$;

REVOKE ALL ON FUNCTION tenantgate.protect_table(regclass, name, text, boolean, name) FROM PUBLIC;

COMMIT;
