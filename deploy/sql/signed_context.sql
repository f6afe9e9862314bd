-- tenantgate row-level security kit, part 2 (optional): the signed tenant context.
--
-- Defense in depth. tenantgate's SQL guard stops a client from changing app.tenant_id; should
-- the guard ever miss a trick, policies written with tenantgate.current_tenant() still hold:
-- it returns the tenant only when tenantgate.tenant_sig carries a valid HMAC of it, made with
-- a key that only tenantgate and the table owner know.
--
--   tenantgate, at session start:   app.tenant_id         = T
--                                   tenantgate.tenant_sig = hex(HMAC-SHA256(key, T))
--   policies:                       tenant_id = (SELECT tenantgate.current_tenant())
--   tenantgate.current_tenant():    T if encode(hmac(T, key, 'sha256'), 'hex') = tenant_sig,
--                                   else NULL (no row matches: fail closed)
--
-- Run once per database, after tenantgate.sql, as the table owner (pgcrypto is a trusted
-- extension: the database owner may create it; otherwise create it as a superuser first):
--
--   openssl rand -hex 32 > context-key          # the file postgres.context_key_file names
--   psql -v app_role=app -v context_key="$(cat context-key)" -d appdb \
--        -f deploy/sql/signed_context.sql
--   psql -d appdb -c "SELECT tenantgate.protect_table('public.orders', signed_context => true)"
--
-- psql variables:
--   context_key     required: the key, printable ASCII, at least 32 bytes (as in the file,
--                   without its trailing newline)
--   app_role        default app
--   tenant_setting  default app.tenant_id
--
-- Running it again replaces the key (rotate tenantgate's key file at the same time: sessions
-- signed with the old key see no rows). Needs PostgreSQL 14 or later (SQL-standard function
-- body, bound when created, so no name in it is looked up at call time).

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
\if :{?context_key}
\else
\set context_key ''
\endif

BEGIN;

SELECT pg_catalog.octet_length(:'context_key') >= 32 AND :'context_key' ~ '^[!-~]+$'
       AS tenantgate_key_ok \gset
\if :tenantgate_key_ok
\else
DO $$ BEGIN RAISE EXCEPTION 'signed_context.sql: pass the key with -v context_key="$(cat KEYFILE)" (printable ASCII, at least 32 bytes)'; END $$;
\endif

CREATE EXTENSION IF NOT EXISTS pgcrypto;
SELECT n.nspname AS tenantgate_pgcrypto_schema
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pgcrypto' \gset

CREATE SCHEMA IF NOT EXISTS tenantgate;
REVOKE ALL ON SCHEMA tenantgate FROM PUBLIC;

-- One row: the HMAC key. Readable by its owner only; current_tenant() reads it as its owner.
CREATE TABLE IF NOT EXISTS tenantgate.context_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key bytea NOT NULL CHECK (pg_catalog.octet_length(key) >= 32)
);
REVOKE ALL ON tenantgate.context_key FROM PUBLIC;
REVOKE ALL ON tenantgate.context_key FROM :"app_role";
INSERT INTO tenantgate.context_key (key)
VALUES (pg_catalog.convert_to(:'context_key', 'UTF8'))
ON CONFLICT (only_row) DO UPDATE SET key = EXCLUDED.key;

-- The tenant of this session when its signature verifies, else NULL.
CREATE OR REPLACE FUNCTION tenantgate.current_tenant()
RETURNS text
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
RETURN (
    SELECT s.tenant
      FROM (SELECT pg_catalog.current_setting(:'tenant_setting', true) AS tenant,
                   pg_catalog.current_setting('tenantgate.tenant_sig', true) AS sig) s,
           tenantgate.context_key k
     WHERE s.tenant <> '' AND s.sig <> ''
       AND pg_catalog.encode(:"tenantgate_pgcrypto_schema".hmac(
               pg_catalog.convert_to(s.tenant, 'UTF8'), k.key, 'sha256'), 'hex') = s.sig
);

REVOKE ALL ON FUNCTION tenantgate.current_tenant() FROM PUBLIC;
GRANT USAGE ON SCHEMA tenantgate TO :"app_role";
GRANT EXECUTE ON FUNCTION tenantgate.current_tenant() TO :"app_role";

COMMIT;
