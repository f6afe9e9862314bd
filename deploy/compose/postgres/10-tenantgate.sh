#!/bin/bash
# PostgreSQL service, first start only (/docker-entrypoint-initdb.d, as the superuser on the
# image's temporary server): database `demo` with the RLS kit of deploy/sql/ applied as a
# team would -- the app role tenantgate logs in as (tg_app, password from its secret), the
# signed tenant context with tenantgate's key, and one protected table.
#
# The test suites (run-suites.sh) create and drop their own role `app` and database `app`;
# nothing here may use those names.
set -euo pipefail
psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER")

"${psql[@]}" --dbname postgres -c 'CREATE DATABASE demo'
"${psql[@]}" --dbname demo -v app_role=tg_app -f /tenantgate-sql/tenantgate.sql
"${psql[@]}" --dbname demo -v pw="$(cat /run/secrets/pg-app-password)" <<'SQL'
ALTER ROLE tg_app PASSWORD :'pw';
SQL
"${psql[@]}" --dbname demo -v app_role=tg_app \
    -v context_key="$(cat /run/secrets/pg-context-key)" -f /tenantgate-sql/signed_context.sql
"${psql[@]}" --dbname demo <<'SQL'
CREATE TABLE public.notes (id serial PRIMARY KEY, body text NOT NULL);
SELECT tenantgate.protect_table('public.notes', signed_context => true);
SQL
