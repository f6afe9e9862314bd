/*
 * Unit tests for policy/sql_guard.c.
 *
 *   attack corpus ──> guard (allow_ddl off, then on) ──> DENY, reason as expected,
 *                                                        no literal value in the reason
 *   allowed corpus ──> guard ──> ALLOW
 *   LISTEN/NOTIFY/pg_notify ──> REWRITE ──> tg_sql_guard_rewrite ──> prefixed text
 *   cache: hits, LRU eviction, capacity, guards never sharing verdicts
 *   normalized key: refusals and forms of the normalizer; same-shape texts share
 *     a verdict, literal-sensitive ones never do; every corpus judged cold and
 *     after priming the cache with literal-varied twins; random literals in
 *     templates judged by shape == judged by a fresh guard
 *
 * Every attack string carries the literal SECRETVAL where it has a value, and
 * every reason is checked not to contain it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "policy/sql_guard.h"
#include "policy/sql_normalize.h"
#include "proxy/error.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* An attack: denied with and without allow_ddl unless ddl_only. */
typedef struct attack {
    const char *sql;
    const char *reason; /* expected prefix of the reason with allow_ddl off, or NULL */
    bool ddl_only;      /* denied only because it is DDL */
} attack;

#define R_TENANT "SET of reserved setting app.tenant_id is not allowed"
#define R_RESET "RESET of reserved setting app.tenant_id is not allowed"
#define R_ROLE "SET of reserved setting role is not allowed"
#define R_SESSAUTH "SET of reserved setting session_authorization is not allowed"
#define R_SC "set_config of reserved setting app.tenant_id is not allowed"
#define R_SC_NC "function set_config with a non-constant setting name is not allowed"
#define R_DDL "DDL is not allowed (allow_ddl is off)"
#define R_COPY "COPY to or from a file or program is not allowed"
#define R_PARSE "statement could not be parsed"
#define R_PGSET "writes to pg_settings are not allowed"
#define R_EXPLAIN "EXPLAIN is not allowed (its estimates count rows of every tenant)"
#define F(name) "function " name " is not allowed"
#define REL(name) "relation " name " is not allowed"
#define T(name) "statement type " name " is not allowed"

static const attack attacks[] = {
    /* ---- SET / RESET of the tenant setting, every spelling ---- */
    {"SET app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"SET app.tenant_id TO 'SECRETVAL'", R_TENANT, false},
    {"set app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"SeT aPp.TeNaNt_Id = 'SECRETVAL'", R_TENANT, false},
    {"SET APP.TENANT_ID = 'SECRETVAL'", R_TENANT, false},
    {"SET SESSION app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"SET LOCAL app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"set local APP.tenant_ID to 'SECRETVAL'", R_TENANT, false},
    {"SET \"app\".\"tenant_id\" = 'SECRETVAL'", R_TENANT, false},
    {"SET \"app.tenant_id\" = 'SECRETVAL'", R_TENANT, false},
    {"SET \"APP\".\"TENANT_ID\" = 'SECRETVAL'", R_TENANT, false},
    {"SET app . tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"SET app.tenant_id = DEFAULT", R_TENANT, false},
    {"SET app.tenant_id TO DEFAULT", R_TENANT, false},
    {"SET app.tenant_id FROM CURRENT", R_TENANT, false},
    {"SET app.tenant_id = 42", R_TENANT, false},
    {"SET app.tenant_id = $$SECRETVAL$$", R_TENANT, false},
    {"SET app.tenant_id = $x$SECRETVAL$x$", R_TENANT, false},
    {"SET app.tenant_id = E'SECRETVAL\\''", R_TENANT, false},
    {"/* hello */ SET app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"-- comment\nSET app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"SET/**/app.tenant_id='SECRETVAL'", R_TENANT, false},
    {"SET app.tenant_id /* x */ = /* y */ 'SECRETVAL' -- z", R_TENANT, false},
    {"RESET app.tenant_id", R_RESET, false},
    {"reset \"app\".\"tenant_id\"", R_RESET, false},
    {"BEGIN; SET LOCAL app.tenant_id = 'SECRETVAL'; COMMIT", R_TENANT, false},
    {"SELECT 1; SET app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"SELECT 1;SELECT 2;SET app.tenant_id='SECRETVAL'", R_TENANT, false},
    {"SELECT ';'; SET app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"SELECT $$;$$; SET app.tenant_id = 'SECRETVAL'", R_TENANT, false},
    {"select 1;\n-- ;\nreset app.tenant_id", R_RESET, false},
    /* ---- roles and session authorization ---- */
    {"SET ROLE postgres", R_ROLE, false},
    {"SET ROLE NONE", R_ROLE, false},
    {"SET LOCAL ROLE admin", R_ROLE, false},
    {"SET SESSION ROLE admin", R_ROLE, false},
    {"SET role = 'admin'", R_ROLE, false},
    {"RESET ROLE", "RESET of reserved setting role is not allowed", false},
    {"SET SESSION AUTHORIZATION postgres", R_SESSAUTH, false},
    {"SET SESSION AUTHORIZATION 'SECRETVAL'", R_SESSAUTH, false},
    {"SET SESSION AUTHORIZATION DEFAULT", R_SESSAUTH, false},
    {"RESET SESSION AUTHORIZATION", "RESET of reserved setting session_authorization", false},
    {"SET tenantgate.tenant_sig = 'SECRETVAL'",
     "SET of reserved setting tenantgate.* is not allowed", false},
    {"SET TENANTGATE.Anything = 1", "SET of reserved setting tenantgate.*", false},
    {"ALTER ROLE CURRENT_USER SET app.tenant_id = 'SECRETVAL'", T("ALTER ROLE SET"), false},
    {"ALTER ROLE app SET app.tenant_id TO 'SECRETVAL'", T("ALTER ROLE SET"), false},
    {"ALTER USER CURRENT_USER SET app.tenant_id = 'SECRETVAL'", T("ALTER ROLE SET"), false},
    {"ALTER ROLE ALL SET app.tenant_id = 'SECRETVAL'", T("ALTER ROLE SET"), false},
    {"ALTER ROLE app IN DATABASE app SET app.tenant_id = 'SECRETVAL'", T("ALTER ROLE SET"), false},
    {"ALTER DATABASE app SET app.tenant_id = 'SECRETVAL'", T("ALTER DATABASE SET"), false},
    {"ALTER SYSTEM SET app.tenant_id = 'SECRETVAL'", T("ALTER SYSTEM"), false},
    {"ALTER SYSTEM RESET ALL", T("ALTER SYSTEM"), false},
    /* ---- settings that change how the server splits text ---- */
    {"SET client_encoding = 'SJIS'", "SET client_encoding to an encoding that is not ASCII-safe",
     false},
    {"SET NAMES 'sjis'", "SET client_encoding", false},
    {"SET client_encoding TO 'Shift_JIS'", "SET client_encoding", false},
    {"SET client_encoding = 'GBK'", "SET client_encoding", false},
    {"SET client_encoding = 'big5'", "SET client_encoding", false},
    {"SET client_encoding = 'JOHAB'", "SET client_encoding", false},
    {"SET client_encoding = 'mule_internal'", "SET client_encoding", false},
    {"SET client_encoding = 'UTF8 and more'", "SET client_encoding", false},
    {"SET standard_conforming_strings = off", "SET standard_conforming_strings off", false},
    {"SET standard_conforming_strings TO 0", "SET standard_conforming_strings off", false},
    {"SET standard_conforming_strings = 'no'", "SET standard_conforming_strings off", false},
    /* ---- pg_settings is writable: its rules call set_config() ---- */
    {"UPDATE pg_settings SET setting = 'SECRETVAL' WHERE name = 'app.tenant_id'", R_PGSET, false},
    {"UPDATE pg_catalog.pg_settings SET setting = 'SECRETVAL'", R_PGSET, false},
    {"update PG_SETTINGS set setting = 'SECRETVAL'", R_PGSET, false},
    {"WITH u AS (UPDATE pg_settings SET setting = 'SECRETVAL' WHERE name = 'app.tenant_id' "
     "RETURNING 1) SELECT * FROM u",
     R_PGSET, false},
    {"INSERT INTO pg_settings (name, setting) VALUES ('app.tenant_id', 'SECRETVAL')", R_PGSET,
     false},
    {"DELETE FROM pg_settings", R_PGSET, false},
    {"COPY pg_settings FROM STDIN", R_PGSET, false},
    {"PREPARE p AS UPDATE pg_settings SET setting = 'SECRETVAL'", R_PGSET, false},
    /* ---- set_config: names, quoting, case, schema ---- */
    {"SELECT set_config('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"select SET_CONFIG('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"SELECT \"set_config\"('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"SELECT pg_catalog.set_config('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"SELECT PG_CATALOG.SET_CONFIG('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"SELECT \"pg_catalog\".\"set_config\"('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"SELECT \"SET_CONFIG\"('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"SELECT set_config('APP.TENANT_ID', 'SECRETVAL', false)", R_SC, false},
    {"SELECT set_config(E'app.tenant\\x5fid', 'SECRETVAL', false)", R_SC, false},
    {"SELECT set_config(U&'app.tenant\\005fid', 'SECRETVAL', false)", R_SC, false},
    {"SELECT set_config($$app.tenant_id$$, 'SECRETVAL', false)", R_SC, false},
    {"SELECT set_config($t$app.tenant_id$t$, $t$SECRETVAL$t$, false)", R_SC, false},
    {"SELECT set_config('app.'\n'tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"SELECT set_config('app.tenant_id', 'SECRETVAL', true)", R_SC, false},
    {"SELECT set_config('role', 'postgres', false)", "set_config of reserved setting role", false},
    {"SELECT set_config('session_authorization', 'postgres', false)",
     "set_config of reserved setting session_authorization", false},
    {"SELECT set_config('tenantgate.tenant_sig', 'SECRETVAL', false)",
     "set_config of reserved setting tenantgate.*", false},
    {"SELECT set_config('client_encoding', 'SJIS', false)", "set_config of client_encoding", false},
    {"SELECT set_config('standard_conforming_strings', 'off', false)",
     "set_config of standard_conforming_strings", false},
    /* non-constant setting names */
    {"SELECT set_config('app.' || 'tenant_id', 'SECRETVAL', false)", R_SC_NC, false},
    {"SELECT set_config(lower('APP.TENANT_ID'), 'SECRETVAL', false)", R_SC_NC, false},
    {"SELECT set_config('app.tenant_id'::text, 'SECRETVAL', false)", R_SC_NC, false},
    {"SELECT set_config(CAST('app.tenant_id' AS text), 'SECRETVAL', false)", R_SC_NC, false},
    {"SELECT set_config(setting_name => 'app.tenant_id', new_value => 'SECRETVAL', "
     "is_local => false)",
     R_SC_NC, false},
    {"SELECT set_config(new_value => 'SECRETVAL', setting_name => 'app.tenant_id', "
     "is_local => false)",
     R_SC_NC, false},
    {"SELECT set_config(VARIADIC ARRAY['app.tenant_id', 'SECRETVAL'])", R_SC_NC, false},
    {"SELECT set_config(n, 'SECRETVAL', false) FROM (VALUES ('app.tenant_id')) v(n)", R_SC_NC,
     false},
    {"SELECT set_config($1, $2, false)", R_SC_NC, false},
    {"SELECT set_config()", R_SC_NC, false},
    {"SELECT set_config(NULL, 'SECRETVAL', false)", R_SC_NC, false},
    /* ---- set_config wherever an expression can sit ---- */
    {"SELECT 1 WHERE set_config('app.tenant_id', 'SECRETVAL', false) IS NOT NULL", R_SC, false},
    {"SELECT * FROM t WHERE id = 1 AND set_config('app.tenant_id','SECRETVAL',true) = 'x'", R_SC,
     false},
    {"WITH x AS (SELECT set_config('app.tenant_id', 'SECRETVAL', false)) SELECT * FROM x", R_SC,
     false},
    {"WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT 1 FROM r WHERE "
     "set_config('app.tenant_id','SECRETVAL',false) IS NULL) SELECT 1",
     R_SC, false},
    {"WITH x AS MATERIALIZED (SELECT 1) SELECT set_config('app.tenant_id','SECRETVAL',false) "
     "FROM x",
     R_SC, false},
    {"SELECT * FROM (SELECT set_config('app.tenant_id', 'SECRETVAL', false)) s", R_SC, false},
    {"SELECT (SELECT set_config('app.tenant_id', 'SECRETVAL', false))", R_SC, false},
    {"SELECT 1 WHERE EXISTS (SELECT set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"SELECT 1 WHERE 1 IN (SELECT length(set_config('app.tenant_id','SECRETVAL',false)))", R_SC,
     false},
    {"SELECT 1 WHERE 'x' = ANY (SELECT set_config('app.tenant_id','SECRETVAL',false))", R_SC,
     false},
    {"VALUES (set_config('app.tenant_id', 'SECRETVAL', false))", R_SC, false},
    {"VALUES (1), (2), (set_config('app.tenant_id', 'SECRETVAL', false))", R_SC, false},
    {"INSERT INTO t (a) VALUES (set_config('app.tenant_id', 'SECRETVAL', false))", R_SC, false},
    {"INSERT INTO t SELECT set_config('app.tenant_id','SECRETVAL',false)", R_SC, false},
    {"INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = "
     "set_config('app.tenant_id','SECRETVAL',false)",
     R_SC, false},
    {"INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2 WHERE "
     "set_config('app.tenant_id','SECRETVAL',false) IS NULL",
     R_SC, false},
    {"INSERT INTO t (a) VALUES (1) RETURNING set_config('app.tenant_id','SECRETVAL',false)", R_SC,
     false},
    {"UPDATE t SET a = set_config('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"UPDATE t SET (a, b) = (SELECT set_config('app.tenant_id','SECRETVAL',false), 1)", R_SC,
     false},
    {"UPDATE t SET a = 1 FROM (SELECT set_config('app.tenant_id','SECRETVAL',false)) s", R_SC,
     false},
    {"DELETE FROM t WHERE a = set_config('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"DELETE FROM t USING (SELECT set_config('app.tenant_id','SECRETVAL',false) AS x) s "
     "WHERE t.a = s.x",
     R_SC, false},
    {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = "
     "set_config('app.tenant_id','SECRETVAL',false)",
     R_SC, false},
    {"MERGE INTO t USING (SELECT set_config('app.tenant_id','SECRETVAL',false) AS id) s "
     "ON t.id = s.id WHEN MATCHED THEN DELETE",
     R_SC, false},
    {"SELECT upper(set_config('app.tenant_id', 'SECRETVAL', false))", R_SC, false},
    {"SELECT coalesce(NULL, set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"SELECT format('%s', set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"SELECT CASE WHEN true THEN set_config('app.tenant_id','SECRETVAL',false) END", R_SC, false},
    {"SELECT CASE set_config('app.tenant_id','SECRETVAL',false) WHEN 'x' THEN 1 END", R_SC, false},
    {"SELECT ARRAY[set_config('app.tenant_id','SECRETVAL',false)]", R_SC, false},
    {"SELECT ROW(set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"SELECT (set_config('app.tenant_id','SECRETVAL',false)).x", R_SC, false},
    {"SELECT count(*) FILTER (WHERE set_config('app.tenant_id','SECRETVAL',false) IS NULL) "
     "FROM t",
     R_SC, false},
    {"SELECT sum(a) OVER (PARTITION BY set_config('app.tenant_id','SECRETVAL',false)) FROM t", R_SC,
     false},
    {"SELECT string_agg(a, ',' ORDER BY set_config('app.tenant_id','SECRETVAL',false)) FROM t",
     R_SC, false},
    {"SELECT a FROM t ORDER BY set_config('app.tenant_id','SECRETVAL',false)", R_SC, false},
    {"SELECT a FROM t GROUP BY a HAVING set_config('app.tenant_id','SECRETVAL',false) IS NULL",
     R_SC, false},
    {"SELECT a FROM t LIMIT length(set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"SELECT DISTINCT ON (set_config('app.tenant_id','SECRETVAL',false)) a FROM t", R_SC, false},
    {"SELECT * FROM set_config('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"SELECT * FROM ROWS FROM (set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"SELECT * FROM t, LATERAL (SELECT set_config('app.tenant_id','SECRETVAL',false)) l", R_SC,
     false},
    {"SELECT * FROM t JOIN u ON set_config('app.tenant_id','SECRETVAL',false) = u.x", R_SC, false},
    {"SELECT * FROM t TABLESAMPLE bernoulli (length(set_config('app.tenant_id','SECRETVAL',"
     "false)))",
     R_SC, false},
    {"SELECT xmlelement(name x, set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"SELECT set_config('app.tenant_id','SECRETVAL',false)::int", R_SC, false},
    {"SELECT 1 UNION SELECT length(set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"SELECT 1 INTERSECT (SELECT 1 EXCEPT SELECT length(set_config('app.tenant_id',"
     "'SECRETVAL',false)))",
     R_SC, false},
    {"SELECT 1 FROM t FOR UPDATE; SELECT set_config('app.tenant_id','SECRETVAL',false)", R_SC,
     false},
    {"SELECT/**/set_config('app.tenant_id','SECRETVAL',false)", R_SC, false},
    {"SELECT set_config/* c */('app.tenant_id','SECRETVAL',false)", R_SC, false},
    {"SELECT set_config --c\n('app.tenant_id','SECRETVAL',false)", R_SC, false},
    {"SELECT set_config(/*x*/'app.tenant_id'/*y*/,'SECRETVAL',false)", R_SC, false},
    {"SELECT set_config('app.tenant_id','SECRETVAL',false) /* trailing */", R_SC, false},
    {"SELECT 'a'; SELECT set_config('app.tenant_id','SECRETVAL',false)", R_SC, false},
    {"EXPLAIN SELECT set_config('app.tenant_id','SECRETVAL',false)", NULL, false},
    {"EXPLAIN VERBOSE SELECT set_config('app.tenant_id','SECRETVAL',false)", NULL, false},
    {"EXPLAIN ANALYZE SELECT set_config('app.tenant_id','SECRETVAL',false)", NULL, false},
    {"EXPLAIN (ANALYZE, BUFFERS) SELECT set_config('app.tenant_id','SECRETVAL',false)", NULL,
     false},
    {"PREPARE p AS SELECT set_config('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"PREPARE p(text) AS SELECT set_config('app.tenant_id', $1, false)", R_SC, false},
    {"PREPARE p(text) AS SELECT set_config($1, 'SECRETVAL', false)", R_SC_NC, false},
    {"PREPARE p AS UPDATE t SET a = set_config('app.tenant_id','SECRETVAL',false)", R_SC, false},
    {"DECLARE c CURSOR FOR SELECT set_config('app.tenant_id', 'SECRETVAL', false)", R_SC, false},
    {"DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT set_config('app.tenant_id','SECRETVAL',"
     "false)",
     R_SC, false},
    {"COPY (SELECT set_config('app.tenant_id', 'SECRETVAL', false)) TO STDOUT", R_SC, false},
    {"COPY t FROM STDIN WHERE set_config('app.tenant_id','SECRETVAL',false) IS NULL", R_SC, false},
    {"CALL my_proc(set_config('app.tenant_id', 'SECRETVAL', false))", R_SC, false},
    {"CALL set_config('app.tenant_id','SECRETVAL',false)", R_SC, false},
    {"EXECUTE p(set_config('app.tenant_id','SECRETVAL',false))", R_SC, false},
    {"CREATE TABLE x (a text DEFAULT set_config('app.tenant_id','SECRETVAL',false))", R_DDL, false},
    {"CREATE TABLE x AS SELECT set_config('app.tenant_id','SECRETVAL',false)", R_DDL, false},
    {"CREATE VIEW v AS SELECT set_config('app.tenant_id','SECRETVAL',false)", R_DDL, false},
    {"ALTER TABLE t ALTER COLUMN a SET DEFAULT set_config('app.tenant_id','SECRETVAL',false)",
     R_DDL, false},
    {"CREATE INDEX ON t ((set_config('app.tenant_id','SECRETVAL',false)))", R_DDL, false},
    {"CREATE TABLE x (a int CHECK (set_config('app.tenant_id','SECRETVAL',false) IS NULL))", R_DDL,
     false},
    /* DDL that names a function without calling it */
    {"CREATE AGGREGATE evil(text, bool) (SFUNC = set_config, STYPE = text, "
     "INITCOND = 'app.tenant_id')",
     R_DDL, false},
    {"CREATE OPERATOR !!! (RIGHTARG = int, FUNCTION = pg_terminate_backend)", R_DDL, false},
    {"CREATE OPERATOR !!! (RIGHTARG = int, PROCEDURE = pg_catalog.pg_cancel_backend)", R_DDL,
     false},
    {"CREATE CAST (int AS bool) WITH FUNCTION pg_terminate_backend(int)", R_DDL, false},
    {"CREATE VIEW v AS SELECT * FROM pg_stat_activity", R_DDL, false},
    {"CREATE SCHEMA s CREATE VIEW v AS SELECT * FROM pg_locks", R_DDL, false},
    {"CREATE SCHEMA s CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
     R_DDL, false},
    /* ---- sessions: signal, cancel, inspect (invariant 5) ---- */
    {"SELECT pg_terminate_backend(1234)", F("pg_terminate_backend"), false},
    {"SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_stat_activity", NULL, false},
    {"SELECT PG_TERMINATE_BACKEND(1)", F("pg_terminate_backend"), false},
    {"SELECT \"PG_TERMINATE_BACKEND\"(1)", F("PG_TERMINATE_BACKEND"), false},
    {"SELECT \"pg_terminate_backend\"(1)", F("pg_terminate_backend"), false},
    {"SELECT pg_terminate_backend(1, 1000)", F("pg_terminate_backend"), false},
    {"SELECT * FROM t WHERE pg_terminate_backend(1)", F("pg_terminate_backend"), false},
    {"SELECT pg_cancel_backend(1)", F("pg_cancel_backend"), false},
    {"WITH x AS (SELECT pg_cancel_backend(1)) SELECT 1", F("pg_cancel_backend"), false},
    {"SELECT pg_signal_backend(1, 15)", F("pg_signal_backend"), false},
    {"SELECT (1234).pg_terminate_backend", F("pg_terminate_backend"), false},
    {"SELECT (1 + 1).pg_cancel_backend", F("pg_cancel_backend"), false},
    {"SELECT p.pg_terminate_backend FROM generate_series(1, 1) AS p", F("pg_terminate_backend"),
     false},
    {"SELECT pg_log_backend_memory_contexts(1)", F("pg_log_backend_memory_contexts"), false},
    {"SELECT pg_reload_conf()", F("pg_reload_conf"), false},
    {"SELECT pg_rotate_logfile()", F("pg_rotate_logfile"), false},
    {"SELECT pg_read_file('/etc/passwd')", F("pg_read_file"), false},
    {"SELECT pg_read_binary_file('/etc/passwd')", F("pg_read_binary_file"), false},
    {"SELECT * FROM pg_ls_dir('.')", F("pg_ls_dir"), false},
    {"SELECT pg_ls_logdir()", F("pg_ls_logdir"), false},
    {"SELECT * FROM pg_ls_waldir()", F("pg_ls_waldir"), false},
    {"SELECT * FROM pg_ls_tmpdir()", F("pg_ls_tmpdir"), false},
    {"SELECT * FROM pg_ls_archive_statusdir()", F("pg_ls_archive_statusdir"), false},
    {"SELECT pg_stat_file('postgresql.conf')", F("pg_stat_file"), false},
    {"SELECT * FROM pg_stat_get_activity(NULL)", F("pg_stat_get_activity"), false},
    {"SELECT pg_stat_get_backend_pid(1)", F("pg_stat_get_backend_pid"), false},
    {"SELECT pg_stat_get_backend_activity(1)", F("pg_stat_get_backend_activity"), false},
    {"SELECT pg_stat_get_backend_userid(1)", F("pg_stat_get_backend_userid"), false},
    {"SELECT pg_stat_get_live_tuples('t'::regclass)", F("pg_stat_get_live_tuples"), false},
    {"SELECT pg_blocking_pids(1)", F("pg_blocking_pids"), false},
    {"SELECT pg_safe_snapshot_blocking_pids(1)", F("pg_safe_snapshot_blocking_pids"), false},
    {"SELECT * FROM pg_stat_statements(true)", F("pg_stat_statements"), false},
    {"SELECT pg_stat_statements_reset()", F("pg_stat_statements_reset"), false},
    {"SELECT pg_stat_reset()", F("pg_stat_reset"), false},
    {"SELECT pg_stat_reset_shared('bgwriter')", F("pg_stat_reset_shared"), false},
    {"SELECT * FROM pg_lock_status()", F("pg_lock_status"), false},
    {"SELECT * FROM pg_prepared_xact()", F("pg_prepared_xact"), false},
    {"SELECT * FROM pg_show_all_file_settings()", F("pg_show_all_file_settings"), false},
    {"SELECT pg_advisory_lock(1)", F("pg_advisory_lock"), false},
    {"SELECT pg_advisory_xact_lock(1)", F("pg_advisory_xact_lock"), false},
    {"SELECT pg_advisory_lock_shared(1, 2)", F("pg_advisory_lock_shared"), false},
    {"SELECT pg_try_advisory_lock(1)", F("pg_try_advisory_lock"), false},
    {"SELECT pg_try_advisory_xact_lock(1)", F("pg_try_advisory_xact_lock"), false},
    {"SELECT pg_advisory_unlock_all()", F("pg_advisory_unlock_all"), false},
    /* ---- large objects, files, other databases ---- */
    {"SELECT lo_import('/etc/passwd')", F("lo_import"), false},
    {"SELECT lo_export(1, '/tmp/SECRETVAL')", F("lo_export"), false},
    {"SELECT lo_get(1)", F("lo_get"), false},
    {"SELECT lo_create(0)", F("lo_create"), false},
    {"SELECT lo_unlink(1)", F("lo_unlink"), false},
    {"SELECT loread(lo_open(1, 262144), 10)", F("loread"), false},
    {"SELECT lowrite(0, 'SECRETVAL')", F("lowrite"), false},
    {"SELECT pg_catalog.lo_from_bytea(0, 'SECRETVAL')", F("lo_from_bytea"), false},
    {"SELECT dblink_connect('host=other dbname=SECRETVAL')", F("dblink_connect"), false},
    {"SELECT * FROM dblink('host=x', 'select 1') AS t(a int)", F("dblink"), false},
    {"SELECT dblink_exec('select 1')", F("dblink_exec"), false},
    {"SELECT public.dblink_connect_u('x')", F("dblink_connect_u"), false},
    {"SELECT pg_file_write('x', 'SECRETVAL', false)", F("pg_file_write"), false},
    {"SELECT pg_file_unlink('x')", F("pg_file_unlink"), false},
    {"SELECT * FROM pg_logdir_ls()", F("pg_logdir_ls"), false},
    {"SELECT query_to_xml('select set_config(''app.tenant_id'',''SECRETVAL'',false)', true, "
     "true, '')",
     F("query_to_xml"), false},
    {"SELECT query_to_xml_and_xmlschema('select 1', true, true, '')",
     F("query_to_xml_and_xmlschema"), false},
    {"SELECT * FROM ts_stat('select to_tsvector(''SECRETVAL'')')", F("ts_stat"), false},
    {"SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)", F("pg_logical_slot_get_changes"),
     false},
    {"SELECT pg_create_logical_replication_slot('s', 'test_decoding')",
     F("pg_create_logical_replication_slot"), false},
    /* ---- relations that show other sessions or secrets ---- */
    {"SELECT * FROM pg_stat_activity", REL("pg_stat_activity"), false},
    {"SELECT * FROM pg_catalog.pg_stat_activity", REL("pg_stat_activity"), false},
    {"SELECT * FROM \"pg_stat_activity\"", REL("pg_stat_activity"), false},
    {"SELECT * FROM PG_STAT_ACTIVITY", REL("pg_stat_activity"), false},
    {"SELECT * FROM \"PG_STAT_ACTIVITY\"", REL("PG_STAT_ACTIVITY"), false},
    {"SELECT * FROM \"pg_catalog\".\"pg_stat_activity\" a", REL("pg_stat_activity"), false},
    {"SELECT * FROM other_db.pg_catalog.pg_stat_activity", REL("pg_stat_activity"), false},
    {"SELECT t.* FROM t JOIN pg_stat_activity a ON a.pid = t.id", REL("pg_stat_activity"), false},
    {"SELECT * FROM t LEFT JOIN LATERAL (SELECT * FROM pg_stat_activity) a ON true",
     REL("pg_stat_activity"), false},
    {"SELECT * FROM t WHERE id IN (SELECT pid FROM pg_stat_activity)", REL("pg_stat_activity"),
     false},
    {"SELECT (SELECT count(*) FROM pg_stat_activity)", REL("pg_stat_activity"), false},
    {"WITH a AS (SELECT * FROM pg_stat_activity) SELECT * FROM a", REL("pg_stat_activity"), false},
    {"TABLE pg_stat_activity", REL("pg_stat_activity"), false},
    {"SELECT 1 UNION ALL SELECT count(*) FROM pg_stat_activity", REL("pg_stat_activity"), false},
    {"COPY pg_stat_activity TO STDOUT", REL("pg_stat_activity"), false},
    {"COPY (SELECT * FROM pg_stat_activity) TO STDOUT", REL("pg_stat_activity"), false},
    {"EXPLAIN SELECT * FROM pg_stat_activity", NULL, false},
    {"PREPARE q AS SELECT * FROM pg_stat_activity", REL("pg_stat_activity"), false},
    {"DECLARE c CURSOR FOR SELECT * FROM pg_stat_activity", REL("pg_stat_activity"), false},
    {"SELECT * FROM pg_locks", REL("pg_locks"), false},
    {"SELECT * FROM pg_stat_statements", REL("pg_stat_statements"), false},
    {"SELECT * FROM pg_stat_statements_info", REL("pg_stat_statements_info"), false},
    {"SELECT * FROM pg_prepared_xacts", REL("pg_prepared_xacts"), false},
    {"SELECT * FROM pg_largeobject", REL("pg_largeobject"), false},
    {"SELECT * FROM pg_largeobject_metadata", REL("pg_largeobject_metadata"), false},
    {"SELECT * FROM pg_stat_ssl", REL("pg_stat_ssl"), false},
    {"SELECT * FROM pg_stat_gssapi", REL("pg_stat_gssapi"), false},
    {"SELECT * FROM pg_stat_replication", REL("pg_stat_replication"), false},
    {"SELECT * FROM pg_stat_wal_receiver", REL("pg_stat_wal_receiver"), false},
    {"SELECT * FROM pg_stat_subscription", REL("pg_stat_subscription"), false},
    {"SELECT * FROM pg_stat_progress_vacuum", REL("pg_stat_progress_vacuum"), false},
    {"SELECT n_live_tup FROM pg_stat_user_tables", REL("pg_stat_user_tables"), false},
    {"SELECT * FROM pg_statio_user_tables", REL("pg_statio_user_tables"), false},
    {"SELECT * FROM pg_authid", REL("pg_authid"), false},
    {"SELECT * FROM pg_shadow", REL("pg_shadow"), false},
    {"SELECT * FROM pg_user_mappings", REL("pg_user_mappings"), false},
    {"SELECT * FROM pg_file_settings", REL("pg_file_settings"), false},
    {"SELECT * FROM pg_hba_file_rules", REL("pg_hba_file_rules"), false},
    {"SELECT * FROM pg_ident_file_mappings", REL("pg_ident_file_mappings"), false},
    {"SELECT * FROM pg_replication_slots", REL("pg_replication_slots"), false},
    /* ---- statement types ---- */
    {"DO $$ BEGIN PERFORM set_config('app.tenant_id', 'SECRETVAL', false); END $$", T("DO"), false},
    {"DO LANGUAGE plpgsql $$ BEGIN NULL; END $$", T("DO"), false},
    {"do 'begin null; end'", T("DO"), false},
    {"SELECT 1; DO $$ BEGIN NULL; END $$", T("DO"), false},
    {"LOCK TABLE t", T("LOCK"), false},
    {"LOCK t IN ACCESS EXCLUSIVE MODE", T("LOCK"), false},
    {"lock table t in share mode nowait", T("LOCK"), false},
    {"LOCK TABLE ONLY public.t, u IN ROW EXCLUSIVE MODE", T("LOCK"), false},
    {"BEGIN; LOCK TABLE t; COMMIT", T("LOCK"), false},
    {"TRUNCATE t", T("TRUNCATE"), false},
    {"TRUNCATE TABLE t, u RESTART IDENTITY CASCADE", T("TRUNCATE"), false},
    {"truncate only t", T("TRUNCATE"), false},
    {"COPY t FROM PROGRAM 'cat /etc/SECRETVAL'", R_COPY, false},
    {"COPY t TO PROGRAM 'curl http://SECRETVAL'", R_COPY, false},
    {"COPY t TO '/tmp/SECRETVAL'", R_COPY, false},
    {"COPY t FROM '/etc/passwd'", R_COPY, false},
    {"COPY t (a, b) FROM '/etc/passwd' WITH (FORMAT csv)", R_COPY, false},
    {"COPY (SELECT 1) TO '/tmp/SECRETVAL'", R_COPY, false},
    {"COPY t FROM STDIN; COPY t TO '/tmp/SECRETVAL'", R_COPY, false},
    {"PREPARE TRANSACTION 'SECRETVAL'", T("PREPARE TRANSACTION"), false},
    {"COMMIT PREPARED 'SECRETVAL'", T("COMMIT PREPARED"), false},
    {"ROLLBACK PREPARED 'SECRETVAL'", T("ROLLBACK PREPARED"), false},
    {"CHECKPOINT", T("CHECKPOINT"), false},
    {"LOAD 'auto_explain'", T("LOAD"), false},
    {"CREATE POLICY p ON t USING (true)", T("CREATE POLICY"), false},
    {"CREATE POLICY p ON t AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)",
     T("CREATE POLICY"), false},
    {"ALTER POLICY p ON t USING (true)", T("ALTER POLICY"), false},
    {"DROP POLICY p ON t", T("DROP POLICY"), false},
    {"DROP POLICY IF EXISTS p ON t CASCADE", T("DROP POLICY"), false},
    {"ALTER POLICY p ON t RENAME TO q", T("RENAME POLICY"), false},
    {"ALTER TABLE t DISABLE ROW LEVEL SECURITY",
     "ALTER TABLE DISABLE ROW LEVEL SECURITY is not allowed", false},
    {"ALTER TABLE t NO FORCE ROW LEVEL SECURITY",
     "ALTER TABLE NO FORCE ROW LEVEL SECURITY is not allowed", false},
    {"alter table if exists only public.t add column x int, disable row level security",
     "ALTER TABLE DISABLE ROW LEVEL SECURITY", false},
    {"ALTER TABLE t FORCE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY",
     "ALTER TABLE NO FORCE ROW LEVEL SECURITY", false},
    {"CREATE ROLE evil SUPERUSER", T("CREATE ROLE"), false},
    {"CREATE USER evil PASSWORD 'SECRETVAL'", T("CREATE ROLE"), false},
    {"ALTER ROLE app BYPASSRLS", T("ALTER ROLE"), false},
    {"ALTER USER app WITH SUPERUSER", T("ALTER ROLE"), false},
    {"ALTER ROLE app RENAME TO evil", T("RENAME ROLE"), false},
    {"DROP ROLE app", T("DROP ROLE"), false},
    {"DROP USER IF EXISTS app", T("DROP ROLE"), false},
    {"GRANT ALL ON t TO PUBLIC", T("GRANT"), false},
    {"REVOKE ALL ON t FROM app", T("GRANT"), false},
    {"GRANT admin TO app", T("GRANT ROLE"), false},
    {"GRANT pg_read_server_files TO CURRENT_USER", T("GRANT ROLE"), false},
    {"ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC", T("ALTER DEFAULT PRIVILEGES"),
     false},
    {"REASSIGN OWNED BY app TO postgres", T("REASSIGN OWNED"), false},
    {"DROP OWNED BY app", T("DROP OWNED"), false},
    {"CREATE EXTENSION dblink", T("CREATE EXTENSION"), false},
    {"CREATE EXTENSION IF NOT EXISTS adminpack SCHEMA public", T("CREATE EXTENSION"), false},
    {"ALTER EXTENSION dblink UPDATE", T("ALTER EXTENSION"), false},
    {"DROP EXTENSION pgcrypto", T("DROP EXTENSION"), false},
    {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", T("CREATE FUNCTION"), false},
    {"CREATE OR REPLACE FUNCTION f() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ select "
     "set_config('app.tenant_id','SECRETVAL',false) $$",
     T("CREATE FUNCTION"), false},
    {"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
     T("CREATE FUNCTION"), false},
    {"CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS $$ select 1 $$", T("CREATE FUNCTION"), false},
    {"ALTER FUNCTION f() SECURITY DEFINER", T("ALTER FUNCTION"), false},
    {"ALTER PROCEDURE p() SET app.tenant_id = 'SECRETVAL'", T("ALTER FUNCTION"), false},
    {"DROP FUNCTION f()", T("DROP FUNCTION"), false},
    {"CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", T("CREATE TRIGGER"),
     false},
    {"CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", T("CREATE EVENT TRIGGER"),
     false},
    {"CREATE RULE r AS ON INSERT TO t DO ALSO SELECT set_config('app.tenant_id','SECRETVAL',"
     "false)",
     T("CREATE RULE"), false},
    {"CREATE LANGUAGE plperlu", NULL, false}, /* the parser makes it CREATE EXTENSION */
    {"CREATE LANGUAGE p HANDLER h", T("CREATE LANGUAGE"), false},
    {"CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", T("CREATE SERVER"), false},
    {"CREATE FOREIGN DATA WRAPPER w", T("CREATE FOREIGN DATA WRAPPER"), false},
    {"CREATE USER MAPPING FOR app SERVER s OPTIONS (password 'SECRETVAL')",
     T("CREATE USER MAPPING"), false},
    {"IMPORT FOREIGN SCHEMA public FROM SERVER s INTO x", T("IMPORT FOREIGN SCHEMA"), false},
    {"CREATE PUBLICATION p FOR ALL TABLES", T("CREATE PUBLICATION"), false},
    {"CREATE SUBSCRIPTION s CONNECTION 'host=SECRETVAL' PUBLICATION p", T("CREATE SUBSCRIPTION"),
     false},
    {"CREATE DATABASE x", T("CREATE DATABASE"), false},
    {"DROP DATABASE app", T("DROP DATABASE"), false},
    {"ALTER DATABASE app CONNECTION LIMIT 1", T("ALTER DATABASE"), false},
    {"CREATE TABLESPACE x LOCATION '/tmp'", T("CREATE TABLESPACE"), false},
    {"CREATE ACCESS METHOD h TYPE TABLE HANDLER heap_tableam_handler", T("CREATE ACCESS METHOD"),
     false},
    {"EXPLAIN ANALYZE SELECT * FROM t", R_EXPLAIN, false},
    {"EXPLAIN (ANALYZE) SELECT * FROM t", R_EXPLAIN, false},
    {"explain (analyze true, costs off) select 1", R_EXPLAIN, false},
    {"EXPLAIN (ANALYZE on) SELECT 1", R_EXPLAIN, false},
    {"EXPLAIN (ANALYZE 1) SELECT 1", R_EXPLAIN, false},
    {"EXPLAIN (ANALYZE false, ANALYZE) SELECT 1", R_EXPLAIN, false},
    {"EXPLAIN SELECT * FROM t", R_EXPLAIN, false},
    {"EXPLAIN (COSTS OFF) SELECT 1", R_EXPLAIN, false},
    {"EXPLAIN VERBOSE UPDATE t SET a = 1", R_EXPLAIN, false},
    {"EXPLAIN (ANALYZE false) SELECT 1", R_EXPLAIN, false},
    {"EXPLAIN (ANALYZE off, VERBOSE) SELECT 1", R_EXPLAIN, false},
    {"EXPLAIN (ANALYZE 0) SELECT 1", R_EXPLAIN, false},
    {"SELECT pg_backend_pid()", F("pg_backend_pid"), false},
    {"SELECT pg_relation_size('documents')", F("pg_relation_size"), false},
    {"SELECT pg_catalog.pg_total_relation_size(oid) FROM pg_class", F("pg_total_relation_size"),
     false},
    {"SELECT pg_database_size(current_database())", F("pg_database_size"), false},
    {"SELECT * FROM pg_stats WHERE tablename = 'documents'", REL("pg_stats"), false},
    {"SELECT most_common_vals FROM pg_catalog.pg_stats_ext", REL("pg_stats_ext"), false},
    {"EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", NULL, false},
    /* ---- DDL (allowed only with allow_ddl) ---- */
    {"CREATE TABLE x (a int)", R_DDL, true},
    {"CREATE TEMP TABLE x (a int)", R_DDL, true},
    {"CREATE TABLE IF NOT EXISTS x (a int PRIMARY KEY, b text NOT NULL DEFAULT 'y')", R_DDL, true},
    {"CREATE TABLE x AS SELECT * FROM t", R_DDL, true},
    {"SELECT * INTO x FROM t", R_DDL, true},
    {"SELECT 1 INTO TEMP x", R_DDL, true},
    {"CREATE INDEX ON t (a)", R_DDL, true},
    {"CREATE UNIQUE INDEX CONCURRENTLY i ON t (lower(a))", R_DDL, true},
    {"DROP TABLE t", R_DDL, true},
    {"DROP TABLE IF EXISTS t, u CASCADE", R_DDL, true},
    {"ALTER TABLE t ADD COLUMN b int", R_DDL, true},
    {"ALTER TABLE t ENABLE ROW LEVEL SECURITY", R_DDL, true},
    {"ALTER TABLE t OWNER TO app", R_DDL, true},
    {"ALTER TABLE t RENAME TO u", R_DDL, true},
    {"ALTER TABLE t RENAME COLUMN a TO b", R_DDL, true},
    {"CREATE VIEW v AS SELECT 1", R_DDL, true},
    {"CREATE MATERIALIZED VIEW mv AS SELECT 1", R_DDL, true},
    {"REFRESH MATERIALIZED VIEW mv", R_DDL, true},
    {"CREATE SEQUENCE s", R_DDL, true},
    {"ALTER SEQUENCE s RESTART", R_DDL, true},
    {"CREATE SCHEMA s", R_DDL, true},
    {"COMMENT ON TABLE t IS 'SECRETVAL'", R_DDL, true},
    {"VACUUM t", R_DDL, true},
    {"VACUUM FULL", R_DDL, true},
    {"ANALYZE t", R_DDL, true},
    {"CLUSTER t USING i", R_DDL, true},
    {"REINDEX TABLE t", R_DDL, true},
    {"CREATE TYPE ty AS (a int)", R_DDL, true},
    {"CREATE TYPE e AS ENUM ('a', 'b')", R_DDL, true},
    {"CREATE DOMAIN d AS int CHECK (VALUE > 0)", R_DDL, true},
    {"EXPLAIN CREATE TABLE x AS SELECT 1", R_EXPLAIN, false},
    {"CREATE TABLE x (a int); SELECT 1", R_DDL, true},
    {"SELECT 1; DROP TABLE t", R_DDL, true},
    /* ---- anything the parser refuses ---- */
    {"SELEC 1", R_PARSE, false},
    {"SELECT (", R_PARSE, false},
    {"SELECT 'unterminated", R_PARSE, false},
    {"SELECT $$unterminated", R_PARSE, false},
    {"SELECT /* unterminated", R_PARSE, false},
    {"SET app.tenant_id =", R_PARSE, false},
    {"DO", R_PARSE, false},
    {"'", R_PARSE, false},
    {"SELECT 1; SELEC 2; SET app.tenant_id = 'SECRETVAL'", R_PARSE, false},
    {"\xff\xfe\xfd", R_PARSE, false},
    {"SELECT 1 FROM", R_PARSE, false},
    {"SELECT * FROM t WHERE", R_PARSE, false},
    {"CREATE", R_PARSE, false},
};

/* Statements a tenant must be able to run (with allow_ddl off). */
static const char *const allowed[] = {
    "SELECT 1",
    "select * from accounts where id = 42",
    "SELECT a.id, b.name FROM accounts a JOIN users b ON a.user_id = b.id LEFT JOIN orders o ON "
    "o.user_id = b.id WHERE a.balance > 0 ORDER BY a.id LIMIT 10 OFFSET 5",
    "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') "
    "SELECT count(*) FROM recent",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
    "SELECT id, rank() OVER (PARTITION BY user_id ORDER BY amount DESC) FROM orders",
    "SELECT id, sum(amount) OVER w FROM orders WINDOW w AS (ORDER BY id ROWS 3 PRECEDING)",
    "SELECT user_id, count(*) FROM orders GROUP BY ROLLUP (user_id) HAVING count(*) > 1",
    "SELECT current_setting('app.tenant_id')",
    "SELECT current_setting('app.tenant_id', true)",
    "SELECT * FROM t WHERE tenant_id = current_setting('app.tenant_id')::uuid",
    "SELECT set_config('application_name', 'x', false)",
    "SELECT set_config('search_path', 'public', true)",
    "SELECT pg_catalog.set_config('statement_timeout', '5s', false)",
    "SELECT set_config($$work_mem$$, '64MB', true)",
    "SET search_path TO public, pg_catalog",
    "SET search_path = \"$user\", public",
    "SET TIME ZONE 'UTC'",
    "SET TIME ZONE LOCAL",
    "SET timezone = 'Europe/Paris'",
    "SET statement_timeout = 5000",
    "SET LOCAL statement_timeout = '5s'",
    "SET SESSION application_name = 'x'",
    "SET application_name TO DEFAULT",
    "SET client_encoding = 'UTF8'",
    "SET NAMES 'utf8'",
    "SET client_encoding TO DEFAULT",
    "SET client_encoding = 'LATIN1'",
    "SET client_encoding = 'ISO_8859_5'",
    "SET client_encoding = 'euc_jis_2004'",
    "SET standard_conforming_strings = on",
    "SET standard_conforming_strings TO true",
    "SET datestyle = 'ISO, MDY'",
    "SET extra_float_digits = 3",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SET CONSTRAINTS ALL DEFERRED",
    "RESET statement_timeout",
    "RESET ALL",
    "BEGIN",
    "BEGIN ISOLATION LEVEL SERIALIZABLE",
    "BEGIN READ ONLY",
    "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE",
    "COMMIT",
    "COMMIT AND CHAIN",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT s1",
    "RELEASE SAVEPOINT s1",
    "ROLLBACK TO SAVEPOINT s1",
    "PREPARE q(int) AS SELECT * FROM t WHERE id = $1",
    "EXECUTE q(1)",
    "DEALLOCATE q",
    "DEALLOCATE ALL",
    /* pgbench's TPC-B-like script and -S */
    "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 5678;",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 5678;",
    "UPDATE pgbench_tellers SET tbalance = tbalance + -1234 WHERE tid = 7;",
    "UPDATE pgbench_branches SET bbalance = bbalance + -1234 WHERE bid = 1;",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 5678, -1234, "
    "CURRENT_TIMESTAMP);",
    "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y') ON CONFLICT (a) DO UPDATE SET b = "
    "excluded.b RETURNING *",
    "UPDATE t SET a = a + 1 WHERE id = 1 RETURNING a",
    "DELETE FROM t WHERE id IN (SELECT id FROM u WHERE flag)",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a WHEN NOT MATCHED "
    "THEN INSERT (id, a) VALUES (s.id, s.a)",
    "COPY t FROM STDIN",
    "COPY t (a, b) FROM STDIN WITH (FORMAT csv, HEADER true)",
    "COPY t TO STDOUT",
    "COPY (SELECT * FROM t WHERE a > 1) TO STDOUT WITH CSV",
    "DISCARD ALL",
    "DISCARD PLANS",
    "SHOW search_path",
    "SHOW app.tenant_id",
    "SHOW ALL",
    "DECLARE c CURSOR FOR SELECT * FROM t",
    "DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT 1",
    "FETCH 10 FROM c",
    "MOVE NEXT IN c",
    "CLOSE c",
    "CLOSE ALL",
    "CALL my_proc(1, 'x')",
    "SELECT 'pg_terminate_backend(1)'",
    "SELECT 'SET app.tenant_id = 1'",
    "SELECT $$ set_config('app.tenant_id','x',false) $$",
    "SELECT 1 -- set_config('app.tenant_id','x',false)",
    "SELECT /* pg_stat_activity */ 1",
    "SELECT * FROM pg_settings WHERE name = 'search_path'",
    "SELECT * FROM pg_prepared_statements",
    "SELECT * FROM pg_cursors",
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
    "SELECT now(), current_user, session_user, current_database()",
    "SELECT lower(name), t.loc FROM users t",
    "SELECT 1; SELECT 2; SELECT 3",
    "",
    "   ",
    ";",
    "VALUES (1), (2)",
    "TABLE t",
    "SELECT * FROM t FOR UPDATE SKIP LOCKED",
    "SELECT * FROM generate_series(1, 10) g",
    "SELECT jsonb_build_object('a', 1) -> 'a'",
    "SELECT a || b || c FROM t",
    "SELECT * FROM t WHERE a BETWEEN 1 AND 10 AND b LIKE 'x%' ESCAPE '!'",
    "SELECT CASE WHEN a > 1 THEN 'x' WHEN a > 0 THEN 'y' ELSE 'z' END FROM t",
    "SELECT x FROM t, LATERAL unnest(t.arr) AS x",
    "SELECT pg_notification_queue_usage()",
    "SELECT E'\\x41', U&'\\0041', B'101', X'1F'",
    "SELECT $tag$ ; SET app.tenant_id = 1 ; $tag$",
};

/* Statements allowed only when allow_ddl is on (plus the ddl_only attacks). */
static const char *const ddl_allowed[] = {
    "CREATE TABLE x (a int)",
    "ALTER TABLE t ADD COLUMN b int",
    "CREATE INDEX ON t (a)",
    "DROP TABLE t",
    "CREATE VIEW v AS SELECT a FROM t",
    "SELECT * INTO x FROM t",
    "VACUUM ANALYZE t",
    "CREATE TABLE x (a text DEFAULT current_setting('app.tenant_id'))",
};

static tg_sql_guard *guard_new(bool allow_ddl)
{
    tg_sql_guard_config cfg = {"app.tenant_id", allow_ddl, NULL, NULL, NULL};
    tg_sql_guard *g = tg_sql_guard_new(&cfg);
    assert_non_null(g);
    return g;
}

/* Checks a NUL-free text through an exact-size heap copy, so ASan sees any over-read. */
static tg_sql_verdict_kind check(const tg_sql_guard *g, tg_sql_cache *c, const char *sql,
                                 tg_sql_verdict *v)
{
    size_t len = strlen(sql);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, sql, len);
    tg_sql_verdict_kind k = tg_sql_guard_check(g, c, copy, len, v);
    free(copy);
    assert_int_equal(k, v->kind);
    assert_non_null(memchr(v->reason, '\0', sizeof(v->reason)));
    return k;
}

static void assert_reason_clean(const char *sql, const tg_sql_verdict *v)
{
    if (strstr(v->reason, "SECRETVAL") || strchr(v->reason, '\'')) {
        fail_msg("reason leaks a literal for [%s]: %s", sql, v->reason);
    }
}

static void run_attacks(bool allow_ddl, bool with_cache)
{
    tg_sql_guard *g = guard_new(allow_ddl);
    tg_sql_cache *c = with_cache ? tg_sql_cache_new(64) : NULL;
    int failures = 0;
    for (size_t i = 0; i < COUNT(attacks); i++) {
        const attack *a = &attacks[i];
        if (allow_ddl && a->ddl_only)
            continue;
        tg_sql_verdict v;
        for (int pass = 0; pass < (with_cache ? 2 : 1); pass++) {
            if (check(g, c, a->sql, &v) != TG_SQL_DENY) {
                print_error("NOT DENIED (allow_ddl=%d): %s\n", allow_ddl, a->sql);
                failures++;
                continue;
            }
            assert_true(v.reason[0] != '\0');
            assert_reason_clean(a->sql, &v);
            if (!allow_ddl && a->reason && strncmp(v.reason, a->reason, strlen(a->reason)) != 0) {
                print_error("wrong reason for [%s]: got [%s], want [%s]\n", a->sql, v.reason,
                            a->reason);
                failures++;
            }
        }
    }
    tg_sql_cache_free(c);
    tg_sql_guard_free(g);
    assert_int_equal(failures, 0);
}

static void test_attacks(void **state)
{
    (void)state;
    run_attacks(false, false);
}

static void test_attacks_with_ddl(void **state)
{
    (void)state;
    run_attacks(true, false);
}

static void test_attacks_cached(void **state)
{
    (void)state;
    run_attacks(false, true);
}

static void test_allowed(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_guard *gd = guard_new(true);
    int failures = 0;
    for (size_t i = 0; i < COUNT(allowed); i++) {
        tg_sql_verdict v;
        for (int ddl = 0; ddl < 2; ddl++) {
            if (check(ddl ? gd : g, NULL, allowed[i], &v) != TG_SQL_ALLOW || v.reason[0]) {
                print_error("NOT ALLOWED (allow_ddl=%d): %s -> %s\n", ddl, allowed[i], v.reason);
                failures++;
            }
        }
    }
    tg_sql_guard_free(g);
    tg_sql_guard_free(gd);
    assert_int_equal(failures, 0);
}

static void test_ddl_switch(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_guard *gd = guard_new(true);
    tg_sql_verdict v;
    for (size_t i = 0; i < COUNT(ddl_allowed); i++) {
        assert_int_equal(check(g, NULL, ddl_allowed[i], &v), TG_SQL_DENY);
        assert_string_equal(v.reason, R_DDL);
        if (check(gd, NULL, ddl_allowed[i], &v) != TG_SQL_ALLOW)
            fail_msg("DDL not allowed with allow_ddl: %s -> %s", ddl_allowed[i], v.reason);
    }
    for (size_t i = 0; i < COUNT(attacks); i++) {
        if (!attacks[i].ddl_only)
            continue;
        if (check(gd, NULL, attacks[i].sql, &v) != TG_SQL_ALLOW)
            fail_msg("DDL not allowed with allow_ddl: %s -> %s", attacks[i].sql, v.reason);
    }
    /* With allow_ddl, the statement inside is judged: its own reason comes out. */
    assert_int_equal(check(gd, NULL,
                           "CREATE TABLE x (a text DEFAULT "
                           "set_config('app.tenant_id','SECRETVAL',false))",
                           &v),
                     TG_SQL_DENY);
    assert_string_equal(v.reason, R_SC);
    assert_int_equal(check(gd, NULL,
                           "CREATE AGGREGATE evil(text, bool) (SFUNC = set_config, "
                           "STYPE = text)",
                           &v),
                     TG_SQL_DENY);
    assert_string_equal(v.reason, "function set_config is not allowed in DDL");
    assert_int_equal(check(gd, NULL,
                           "CREATE OPERATOR !!! (RIGHTARG = int, FUNCTION = pg_terminate_backend)",
                           &v),
                     TG_SQL_DENY);
    assert_string_equal(v.reason, F("pg_terminate_backend"));
    assert_int_equal(check(gd, NULL, "CREATE VIEW v AS SELECT * FROM pg_stat_activity", &v),
                     TG_SQL_DENY);
    assert_string_equal(v.reason, REL("pg_stat_activity"));
    assert_int_equal(check(gd, NULL, "ALTER TABLE t DISABLE ROW LEVEL SECURITY", &v), TG_SQL_DENY);
    assert_int_equal(check(gd, NULL, "LOCK TABLE t", &v), TG_SQL_DENY);
    assert_int_equal(check(gd, NULL, "DO $$ BEGIN END $$", &v), TG_SQL_DENY);
    assert_int_equal(check(gd, NULL, "CREATE POLICY p ON t USING (true)", &v), TG_SQL_DENY);
    assert_int_equal(check(gd, NULL, "DROP POLICY p ON t", &v), TG_SQL_DENY);
    assert_int_equal(check(gd, NULL, "ALTER ROLE app BYPASSRLS", &v), TG_SQL_DENY);
    assert_int_equal(check(gd, NULL, "TRUNCATE t", &v), TG_SQL_DENY);
    tg_sql_guard_free(g);
    tg_sql_guard_free(gd);
}

static void test_multi_statement(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_verdict v;
    /* the first DENY's reason wins */
    assert_int_equal(check(g, NULL, "SELECT 1; TRUNCATE t; SET app.tenant_id = 'x'", &v),
                     TG_SQL_DENY);
    assert_string_equal(v.reason, T("TRUNCATE"));
    /* DENY beats REWRITE, wherever it is */
    assert_int_equal(check(g, NULL, "LISTEN foo; SELECT pg_terminate_backend(1)", &v), TG_SQL_DENY);
    assert_int_equal(check(g, NULL, "SELECT pg_cancel_backend(1); NOTIFY foo", &v), TG_SQL_DENY);
    /* REWRITE beats ALLOW */
    assert_int_equal(check(g, NULL, "SELECT 1; LISTEN foo; SELECT 2", &v), TG_SQL_REWRITE);
    assert_string_equal(v.reason, "");
    assert_int_equal(check(g, NULL, "SELECT 1; SELECT 2", &v), TG_SQL_ALLOW);
    tg_sql_guard_free(g);
}

static void test_config_extras(void **state)
{
    (void)state;
    const char *const reserved[] = {"app.user_id", "myapp.*", NULL};
    const char *const funcs[] = {"my_dangerous_fn", "audit_*", NULL};
    const char *const rels[] = {"secret_table", "internal_*", NULL};
    tg_sql_guard_config cfg = {"app.org", false, reserved, funcs, rels};
    tg_sql_guard *g = tg_sql_guard_new(&cfg);
    assert_non_null(g);
    tg_sql_verdict v;
    assert_int_equal(check(g, NULL, "SET app.org = 'x'", &v), TG_SQL_DENY);
    assert_string_equal(v.reason, "SET of reserved setting app.org is not allowed");
    /* the configured tenant setting replaces the default one */
    assert_int_equal(check(g, NULL, "SET app.tenant_id = 'x'", &v), TG_SQL_ALLOW);
    assert_int_equal(check(g, NULL, "SET APP.USER_ID = 1", &v), TG_SQL_DENY);
    assert_string_equal(v.reason, "SET of reserved setting app.user_id is not allowed");
    assert_int_equal(check(g, NULL, "SELECT set_config('myapp.anything', 'x', false)", &v),
                     TG_SQL_DENY);
    assert_string_equal(v.reason, "set_config of reserved setting myapp.* is not allowed");
    assert_int_equal(check(g, NULL, "SET myapp.x = 1", &v), TG_SQL_DENY);
    assert_int_equal(check(g, NULL, "SET role = x", &v), TG_SQL_DENY); /* defaults stay */
    assert_int_equal(check(g, NULL, "SELECT my_dangerous_fn()", &v), TG_SQL_DENY);
    assert_string_equal(v.reason, F("my_dangerous_fn"));
    assert_int_equal(check(g, NULL, "SELECT s.audit_log_read(1)", &v), TG_SQL_DENY);
    assert_int_equal(check(g, NULL, "SELECT pg_terminate_backend(1)", &v), TG_SQL_DENY);
    assert_int_equal(check(g, NULL, "SELECT * FROM public.secret_table", &v), TG_SQL_DENY);
    assert_string_equal(v.reason, REL("secret_table"));
    assert_int_equal(check(g, NULL, "SELECT * FROM internal_stuff", &v), TG_SQL_DENY);
    assert_int_equal(check(g, NULL, "SELECT * FROM pg_locks", &v), TG_SQL_DENY);
    assert_int_equal(check(g, NULL, "SELECT * FROM secret_table_2", &v), TG_SQL_ALLOW);
    tg_sql_guard_free(g);

    /* NULL config: defaults, tenant setting app.tenant_id */
    g = tg_sql_guard_new(NULL);
    assert_non_null(g);
    assert_int_equal(check(g, NULL, "SET app.tenant_id = 'x'", &v), TG_SQL_DENY);
    assert_int_equal(check(g, NULL, "CREATE TABLE x (a int)", &v), TG_SQL_DENY);
    tg_sql_guard_free(g);
}

static void test_nul_and_edges(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_verdict v;
    static const char with_nul[] = "SELECT 1\0; SET app.tenant_id = 'x'";
    assert_int_equal(tg_sql_guard_check(g, NULL, with_nul, sizeof(with_nul) - 1, &v), TG_SQL_DENY);
    assert_string_equal(v.reason, "statement contains a NUL byte");
    /* only len bytes are read: the rest of the buffer is not part of the statement */
    static const char longer[] = "SELECT 1; SET app.tenant_id = 'x'";
    assert_int_equal(tg_sql_guard_check(g, NULL, longer, 8, &v), TG_SQL_ALLOW);
    assert_int_equal(tg_sql_guard_check(g, NULL, NULL, 0, &v), TG_SQL_ALLOW);
    assert_int_equal(tg_sql_guard_check(NULL, NULL, "SELECT 1", 8, &v), TG_SQL_DENY);
    tg_sql_guard_free(g);
}

/* Builds prefix + n * unit + suffix. */
static char *repeat(const char *prefix, const char *unit, size_t n, const char *suffix)
{
    size_t pl = strlen(prefix), ul = strlen(unit), sl = strlen(suffix);
    char *s = malloc(pl + ul * n + sl + 1);
    assert_non_null(s);
    memcpy(s, prefix, pl);
    for (size_t i = 0; i < n; i++)
        memcpy(s + pl + i * ul, unit, ul);
    memcpy(s + pl + n * ul, suffix, sl + 1);
    return s;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_verdict v;
    /* Each of these crashes libpg_query (stack overflow) if parsed unchecked. */
    static const struct {
        const char *prefix, *unit, *suffix;
        size_t n;
    } deep[] = {
        {"SELECT 1", "-1", "", 1000000},
        {"SELECT 1", "+1", "", 200000},
        {"SELECT 'a'", "||'a'", "", 200000},
        {"SELECT 1", "::int", "", 200000},
        {"SELECT 1,1", " UNION SELECT 1,1", "", 100000},
        {"SELECT 1", " UNION ALL SELECT 1", "", 100000},
        {"SELECT x", " ISNULL", "", 200000},
        {"SELECT ", "NOT ", "true", 200000},
        {"SELECT ", "-", "1", 200000},
        {"SELECT ", "(", "1", 200000},
        {"SELECT ", "f(", "1", 100000},
        {"SELECT ", "CASE WHEN true THEN ", "1", 100000},
        {"SELECT ", "ARRAY[", "1", 100000},
        {"SELECT * FROM t", " JOIN t ON true", "", 100000},
        {"SELECT x", " COLLATE \"C\"", "", 100000},
        {"SELECT x", " IS NOT NULL", "", 100000},
        {"SELECT x", "[1]", "", 100000},
        {"SELECT 1 WHERE a = 1", " AND b = 1 OR c", "", 100000},
    };
    for (size_t i = 0; i < COUNT(deep); i++) {
        char *s = repeat(deep[i].prefix, deep[i].unit, deep[i].n, deep[i].suffix);
        tg_sql_verdict_kind k = check(g, NULL, s, &v);
        /* Flat shapes (a[1][1].., AND/OR lists) may pass; nothing may crash. */
        if (k != TG_SQL_ALLOW)
            assert_int_equal(k, TG_SQL_DENY);
        free(s);
    }
    /* deep ones are DENY, with the depth reason (or a parse error for bison's own limit) */
    char *s = repeat("SELECT 1", "-1", 1000000, "");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_DENY);
    assert_string_equal(v.reason, "statement is nested too deeply");
    free(s);
    s = repeat("SELECT 1,1", " UNION SELECT 1,1", 100000, "");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_DENY);
    assert_string_equal(v.reason, "statement is nested too deeply");
    free(s);
    /* short but deeper than the walker's bound */
    s = repeat("SELECT 1", "-1", 600, "");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_DENY);
    assert_string_equal(v.reason, "statement is nested too deeply");
    free(s);
    /* moderately nested statements still pass */
    s = repeat("SELECT 1", "-1", 100, "");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_ALLOW);
    free(s);
    s = repeat("SELECT 1", " UNION ALL SELECT 1", 200, "");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_ALLOW);
    free(s);
    /* wide statements pass: long IN lists, many ORs, many rows */
    s = repeat("SELECT * FROM t WHERE a IN (0", ",12345", 50000, ")");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_ALLOW);
    free(s);
    s = repeat("SELECT * FROM t WHERE a = 0", " OR (a = 1 AND b = 'x')", 5000, "");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_ALLOW);
    free(s);
    s = repeat("INSERT INTO t VALUES (0, 'x')", ", (now() - interval '1 day', -1.5)", 20000, "");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_ALLOW);
    free(s);
    s = repeat("SELECT CASE a", " WHEN 1 THEN 'x'", 5000, " END FROM t");
    assert_int_equal(check(g, NULL, s, &v), TG_SQL_ALLOW);
    free(s);
    tg_sql_guard_free(g);
}

/* ---- rewrite ---- */

static char *rewrite_ok(const tg_sql_guard *g, const char *sql, const char *prefix)
{
    char *out = NULL;
    size_t out_len = 0;
    tg_sql_verdict why;
    int rc = tg_sql_guard_rewrite(g, sql, strlen(sql), prefix, &out, &out_len, &why);
    if (rc != 0)
        fail_msg("rewrite failed for [%s]: %d %s", sql, rc, why.reason);
    assert_non_null(out);
    assert_int_equal(out_len, strlen(out));
    return out;
}

/* Copies fmt into out with every "%s" replaced by prefix. */
static void expand(char *out, size_t cap, const char *fmt, const char *prefix)
{
    size_t n = 0, pl = strlen(prefix);
    for (const char *p = fmt; *p; p++) {
        if (p[0] == '%' && p[1] == 's') {
            assert_true(n + pl < cap);
            memcpy(out + n, prefix, pl);
            n += pl;
            p++;
        } else {
            assert_true(n + 1 < cap);
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

static void test_rewrite(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    char prefix[TG_SQL_CHANNEL_PREFIX_LEN + 1];
    tg_sql_channel_prefix("acme", prefix);
    char want[512];
    tg_sql_verdict v;

    static const struct {
        const char *in;
        const char *fmt; /* %s = the prefix */
    } cases[] = {
        {"LISTEN foo", "LISTEN %sfoo"},
        {"listen \"Foo Bar\"", "LISTEN \"%sFoo Bar\""},
        {"NOTIFY foo", "NOTIFY %sfoo"},
        {"NOTIFY foo, 'x'", "NOTIFY %sfoo, 'x'"},
        {"UNLISTEN foo", "UNLISTEN %sfoo"},
        {"UNLISTEN *", "UNLISTEN *"},
        {"SELECT pg_notify('foo', 'x')", "SELECT pg_notify('%sfoo', 'x')"},
        {"SELECT pg_catalog.pg_notify('foo', payload) FROM t",
         "SELECT pg_catalog.pg_notify('%sfoo', payload) FROM t"},
        {"SELECT 1; LISTEN foo", "SELECT 1; LISTEN %sfoo"},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        assert_int_equal(check(g, NULL, cases[i].in, &v), TG_SQL_REWRITE);
        char *out = rewrite_ok(g, cases[i].in, prefix);
        expand(want, sizeof(want), cases[i].fmt, prefix);
        assert_string_equal(out, want);
        free(out);
    }
    /* two channels in one string, both prefixed */
    char *out = rewrite_ok(g, "LISTEN a; NOTIFY b, 'p'; SELECT pg_notify('c', 'q')", prefix);
    snprintf(want, sizeof(want), "LISTEN %sa; NOTIFY %sb, 'p'; SELECT pg_notify('%sc', 'q')",
             prefix, prefix, prefix);
    assert_string_equal(out, want);
    free(out);

    /* 45 bytes + the 18-byte prefix = 63: fits; 46 does not */
    char name[80], sql[128];
    memset(name, 'c', 45);
    name[45] = '\0';
    snprintf(sql, sizeof(sql), "LISTEN %s", name);
    assert_int_equal(check(g, NULL, sql, &v), TG_SQL_REWRITE);
    out = rewrite_ok(g, sql, prefix);
    free(out);
    strcat(name, "c");
    snprintf(sql, sizeof(sql), "LISTEN %s", name);
    assert_int_equal(check(g, NULL, sql, &v), TG_SQL_DENY);
    assert_string_equal(v.reason, "channel name too long");
    snprintf(sql, sizeof(sql), "SELECT pg_notify('%s', 'x')", name);
    assert_int_equal(check(g, NULL, sql, &v), TG_SQL_DENY);
    assert_string_equal(v.reason, "channel name too long");

    char *res = NULL;
    size_t res_len = 99;
    tg_sql_verdict why;
    assert_int_equal(tg_sql_guard_rewrite(g, sql, strlen(sql), prefix, &res, &res_len, &why),
                     TG_EINVAL);
    assert_null(res);
    assert_int_equal(res_len, 0);
    assert_string_equal(why.reason, "channel name too long");

    /* a channel that is not a constant */
    static const char *const nonconst[] = {
        "SELECT pg_notify(name, 'x') FROM t",
        "SELECT pg_notify('a' || 'b', 'x')",
        "SELECT pg_notify($1, $2)",
        "SELECT pg_notify('foo'::text, 'x')",
        "SELECT pg_notify()",
        "SELECT pg_notify(NULL, 'x')",
    };
    for (size_t i = 0; i < COUNT(nonconst); i++) {
        assert_int_equal(check(g, NULL, nonconst[i], &v), TG_SQL_DENY);
        assert_string_equal(v.reason, "pg_notify channel must be a constant");
        assert_int_equal(
            tg_sql_guard_rewrite(g, nonconst[i], strlen(nonconst[i]), prefix, &res, &res_len, &why),
            TG_EINVAL);
        assert_string_equal(why.reason, "pg_notify channel must be a constant");
        assert_null(res);
    }
    assert_int_equal(check(g, NULL, "SELECT pg_notify('', 'x')", &v), TG_SQL_DENY);

    /* the rewrite re-judges: a denied statement is never rewritten */
    static const char bad[] = "LISTEN foo; SET app.tenant_id = 'SECRETVAL'";
    assert_int_equal(tg_sql_guard_rewrite(g, bad, sizeof(bad) - 1, prefix, &res, &res_len, &why),
                     TG_EINVAL);
    assert_string_equal(why.reason, R_TENANT);
    assert_null(res);
    /* bad arguments */
    assert_int_equal(tg_sql_guard_rewrite(g, "LISTEN a", 8, "", &res, &res_len, &why), TG_EINVAL);
    assert_int_equal(tg_sql_guard_rewrite(NULL, "LISTEN a", 8, prefix, &res, &res_len, &why),
                     TG_EINVAL);
    assert_int_equal(tg_sql_guard_rewrite(g, "LISTEN a", 8, prefix, NULL, &res_len, NULL),
                     TG_EINVAL);
    tg_sql_guard_free(g);
}

static void test_channel_prefix(void **state)
{
    (void)state;
    char a[TG_SQL_CHANNEL_PREFIX_LEN + 1], b[TG_SQL_CHANNEL_PREFIX_LEN + 1];
    tg_sql_channel_prefix("acme", a);
    tg_sql_channel_prefix("acme", b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), TG_SQL_CHANNEL_PREFIX_LEN);
    assert_int_equal(a[0], 't');
    assert_int_equal(a[17], '_');
    for (int i = 1; i < 17; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    char want[TG_SQL_CHANNEL_PREFIX_LEN + 1];
    snprintf(want, sizeof(want), "t%016llx_", (unsigned long long)XXH3_64bits("acme", 4));
    assert_string_equal(a, want);
    tg_sql_channel_prefix("beta", b);
    assert_string_not_equal(a, b);
    tg_sql_channel_prefix("", b);
    assert_int_equal(strlen(b), TG_SQL_CHANNEL_PREFIX_LEN);
}

/* ---- cache ---- */

/*
 * Audit lines carry a fingerprint that ignores literal values: statements that
 * differ only in a literal share it, so a short secret literal cannot be
 * guessed back from a log by hashing candidates.
 */
static void test_audit_fingerprint_ignores_literals(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_verdict a, b, c, d;
    const char *sa = "SELECT set_config('app.tenant_id', 'acme', false)";
    const char *sb = "SELECT set_config('app.tenant_id', 'globex', false)";
    assert_int_equal(check(g, NULL, sa, &a), TG_SQL_DENY);
    assert_int_equal(check(g, NULL, sb, &b), TG_SQL_DENY);
    assert_true(a.fingerprint != 0);
    assert_true(a.fingerprint == b.fingerprint);
    assert_true(a.fingerprint != XXH3_64bits(sa, strlen(sa)));
    /* another statement shape has another fingerprint */
    assert_int_equal(check(g, NULL, "TRUNCATE documents", &c), TG_SQL_DENY);
    assert_true(c.fingerprint != a.fingerprint);
    /* unparsable text: a keyed hash, not the plain one */
    const char *bad = "SELEC 'acme'";
    assert_int_equal(check(g, NULL, bad, &d), TG_SQL_DENY);
    assert_true(d.fingerprint != 0 && d.fingerprint != XXH3_64bits(bad, strlen(bad)));
    tg_sql_guard_free(g);
}

static void test_cache_hit(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_cache *c = tg_sql_cache_new(16);
    assert_non_null(c);
    tg_sql_cache_counters s;
    tg_sql_verdict v1, v2;
    static const char *const texts[] = {"SELECT 1", "TRUNCATE t", "LISTEN x"};
    static const tg_sql_verdict_kind kinds[] = {TG_SQL_ALLOW, TG_SQL_DENY, TG_SQL_REWRITE};
    for (size_t i = 0; i < COUNT(texts); i++) {
        assert_int_equal(check(g, c, texts[i], &v1), kinds[i]);
        assert_int_equal(check(g, c, texts[i], &v2), kinds[i]);
        assert_string_equal(v1.reason, v2.reason);
        assert_true(v1.fingerprint == v2.fingerprint);
        /* only denials carry an audit fingerprint, and never a plain hash of the text */
        assert_true((v1.fingerprint != 0) == (kinds[i] == TG_SQL_DENY));
        assert_true(v1.fingerprint != XXH3_64bits(texts[i], strlen(texts[i])));
    }
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.hits, 3);
    assert_int_equal(s.misses, 3);
    /* "SELECT 1" by text and by shape; TRUNCATE t has no literal; REWRITE by text only */
    assert_int_equal(s.entries, 4);
    assert_int_equal(s.norm_hits, 0);
    assert_int_equal(s.capacity, 16);
    /* a prefix of a cached text is a different statement */
    assert_int_equal(tg_sql_guard_check(g, c, "TRUNCATE t", 8, &v1), TG_SQL_DENY);
    assert_string_equal(v1.reason, R_PARSE);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.hits, 3);
    tg_sql_cache_stats(NULL, &s);
    assert_int_equal(s.capacity, 0);
    assert_null(tg_sql_cache_new(0));
    tg_sql_cache_free(NULL);
    tg_sql_guard_free(NULL);
    tg_sql_cache_free(c);
    tg_sql_guard_free(g);
}

static void test_cache_eviction(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_cache *c = tg_sql_cache_new(2);
    tg_sql_cache_counters s;
    tg_sql_verdict v;
    /* literal-free texts: one entry each (by exact text) */
    check(g, c, "SELECT a", &v); /* miss: [A] */
    check(g, c, "SELECT b", &v); /* miss: [B A] */
    check(g, c, "SELECT a", &v); /* hit:  [A B] */
    check(g, c, "SELECT c", &v); /* miss, evicts B: [C A] */
    check(g, c, "SELECT a", &v); /* hit */
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.misses, 3);
    assert_int_equal(s.evictions, 1);
    check(g, c, "SELECT b", &v); /* miss: B was evicted */
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.misses, 4);
    assert_int_equal(s.entries, 2);
    tg_sql_cache_free(c);

    /* capacity bound under many distinct statements */
    c = tg_sql_cache_new(5);
    char sql[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(sql, sizeof(sql), "SELECT c%d", i);
        assert_int_equal(check(g, c, sql, &v), TG_SQL_ALLOW);
        snprintf(sql, sizeof(sql), "SELECT f%d(); TRUNCATE t", i);
        assert_int_equal(check(g, c, sql, &v), TG_SQL_DENY);
        assert_string_equal(v.reason, T("TRUNCATE"));
    }
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.entries, 5);
    assert_int_equal(s.misses, 2000);
    assert_int_equal(s.evictions, 1995);
    /* the most recent entries are still there, with their verdicts */
    assert_int_equal(check(g, c, "SELECT f999(); TRUNCATE t", &v), TG_SQL_DENY);
    assert_string_equal(v.reason, T("TRUNCATE"));
    assert_int_equal(check(g, c, "SELECT c999", &v), TG_SQL_ALLOW);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.hits, 2);
    tg_sql_cache_free(c);

    /* texts with literals take two entries (text and shape); the bound holds all the same */
    c = tg_sql_cache_new(5);
    for (int i = 0; i < 1000; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d FROM t%d", i, i);
        assert_int_equal(check(g, c, sql, &v), TG_SQL_ALLOW);
    }
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.entries, 5);
    assert_int_equal(s.misses, 1000);
    assert_int_equal(s.evictions, 1995);
    assert_int_equal(check(g, c, "SELECT 1 FROM t999", &v), TG_SQL_ALLOW); /* by shape */
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.norm_hits, 1);
    tg_sql_cache_free(c);
    tg_sql_guard_free(g);
}

static void test_cache_guard_identity(void **state)
{
    (void)state;
    tg_sql_guard *strict = guard_new(false);
    tg_sql_guard *ddl = guard_new(true);
    tg_sql_guard *strict2 = guard_new(false);
    tg_sql_cache *c = tg_sql_cache_new(8);
    tg_sql_cache_counters s;
    tg_sql_verdict v;
    assert_int_equal(check(strict, c, "CREATE TABLE x (a int)", &v), TG_SQL_DENY);
    assert_int_equal(check(ddl, c, "CREATE TABLE x (a int)", &v), TG_SQL_ALLOW);
    assert_int_equal(check(strict, c, "CREATE TABLE x (a int)", &v), TG_SQL_DENY);
    /* a guard configured identically may reuse the verdict */
    assert_int_equal(check(strict2, c, "CREATE TABLE x (a int)", &v), TG_SQL_DENY);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.misses, 2);
    assert_int_equal(s.hits, 2);
    /* and a differently reserved setting is another identity */
    const char *const extra[] = {"app.other", NULL};
    tg_sql_guard_config cfg = {"app.tenant_id", false, extra, NULL, NULL};
    tg_sql_guard *other = tg_sql_guard_new(&cfg);
    assert_int_equal(check(strict, c, "SET app.other = 1", &v), TG_SQL_ALLOW);
    assert_int_equal(check(other, c, "SET app.other = 1", &v), TG_SQL_DENY);
    tg_sql_cache_free(c);
    tg_sql_guard_free(strict);
    tg_sql_guard_free(strict2);
    tg_sql_guard_free(ddl);
    tg_sql_guard_free(other);
}

/* ---- the normalized key (policy/sql_normalize.c) ---- */

/* Normalizes a NUL-free text through an exact-size heap copy (ASan sees over-reads). */
static int normalize(const char *sql, size_t len, char *out, size_t cap, size_t *out_len)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, sql, len);
    int rc = tg_sql_normalize(copy, len, out, cap, out_len);
    free(copy);
    return rc;
}

static void test_normalize_refusals(void **state)
{
    (void)state;
    /* Each is a form whose lexing the normalizer does not reproduce exactly. */
    static const char *const refused[] = {
        /* comments */
        "SELECT 1 -- c",
        "SELECT /* c */ 1",
        "SELECT 1 +/* c */ 2",
        "SELECT 1 <-- 2",
        "SELECT 1--\n",
        /* dollar signs other than $n */
        "SELECT $$x$$",
        "SELECT $t$x$t$",
        "SELECT $",
        "SELECT $ 1",
        "SELECT a$b FROM t",
        "SELECT a$1 FROM t",
        "SELECT $1abc",
        "SELECT $1$",
        "SELECT $1_",
        /* prefixed strings and identifiers */
        "SELECT E'x'",
        "SELECT e'\\n'",
        "SELECT B'101'",
        "SELECT b'1'",
        "SELECT X'1F'",
        "SELECT x'1f'",
        "SELECT N'x'",
        "SELECT n'x'",
        "SELECT U&'\\0041'",
        "SELECT u&'x'",
        "SELECT U&\"x\"",
        "SELECT 1 &'x'",
        "SELECT foo'x'",
        "SELECT 5'x'",
        "SELECT _'x'",
        "SELECT x\"y\"",
        /* quotes inside literals, backslashes */
        "SELECT 'it''s'",
        "SELECT ''''",
        "SELECT '''",
        "SELECT 'a\\b'",
        "SELECT 'a\\'",
        "SELECT 1 \\ 2",
        "SELECT \"a\"\"b\" FROM t",
        "SELECT \"\"\"\" FROM t",
        /* unterminated */
        "SELECT 'abc",
        "SELECT \"abc",
        "SELECT '",
        /* bytes */
        "SELECT '\xc3\xa9'",
        "SELECT \"\xc3\xa9\"",
        "SELECT 1\x0b",
        "SELECT '\x01'",
        "SELECT 1\x7f",
        "SELECT\x1b 1",
        /* numeric forms */
        "SELECT 1e5",
        "SELECT 1E+5",
        "SELECT 1e-5",
        "SELECT 1.5e3",
        "SELECT 0x1F",
        "SELECT 0X1f",
        "SELECT 0o17",
        "SELECT 0b101",
        "SELECT 1_000",
        "SELECT 12abc",
        "SELECT 1.",
        "SELECT 1.a",
        "SELECT 1..2",
        "SELECT .5",
        "SELECT t.1",
        "SELECT 1.5.2",
        "SELECT $1.5",
        "SELECT 1$",
        /* a grammar rule that reads an Iconst's value */
        "SELECT 1::float(10)",
        "SELECT CAST(1 AS FLOAT (53))",
        "CREATE TABLE x (a Float\n(24))",
    };
    char out[256];
    size_t n;
    int failures = 0;
    for (size_t i = 0; i < COUNT(refused); i++) {
        int rc = normalize(refused[i], strlen(refused[i]), out, sizeof(out), &n);
        if (rc != TG_EINVAL) {
            print_error("NOT REFUSED: [%s] -> %d\n", refused[i], rc);
            failures++;
        }
    }
    /* a NUL inside */
    assert_int_equal(normalize("SELECT 1\0", 9, out, sizeof(out), &n), TG_EINVAL);
    assert_int_equal(normalize("SELECT '\0'", 10, out, sizeof(out), &n), TG_EINVAL);
    /* an output buffer too small */
    assert_int_equal(normalize("SELECT 1", 8, out, 7, &n), TG_EINVAL);
    assert_int_equal(normalize("SELECT 'x'", 10, out, 7, &n), TG_EINVAL);
    assert_int_equal(failures, 0);
}

static void test_normalize_accepts(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        int literals;
    } cases[] = {
        {"SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
         "SELECT abalance FROM pgbench_accounts WHERE aid = \x01;", 1},
        {"SELECT 2147483647, 2147483648, 0002147483647, 99999999999, 1.5, 0.0",
         "SELECT \x01, \x02, \x01, \x02, \x02, \x02", 6},
        {"SELECT 'x', '', 'a--b', '/*', '$$', '\"', 'tab\there'",
         "SELECT \x03, \x03, \x03, \x03, \x03, \x03, \x03", 7},
        {"SELECT * FROM t WHERE a = $1 AND b::text = 'y' AND c = $12",
         "SELECT * FROM t WHERE a = $1 AND b::text = \x03 AND c = $12", 1},
        {"SELECT \"we'ird--/*$\" FROM t", "SELECT \"we'ird--/*$\" FROM t", 0},
        {"SELECT 'a'\n'b'", "SELECT \x03\n\x03", 2},
        {"SELECT -5, +5, 5-3, 2*3, 1<>2, 1!=2",
         "SELECT -\x01, +\x01, \x01-\x01, \x01*\x01, "
         "\x01<>\x01, \x01!=\x01",
         10},
        {"SELECT t1.c2 FROM t1 WHERE c3 = 4", "SELECT t1.c2 FROM t1 WHERE c3 = \x01", 1},
        {"SELECT float8 '1.5', 1::float, floats(2)",
         "SELECT float8 \x03, \x01::float, floats(\x01)", 3},
        {"SELECT ($1).f, $1.f, a[1:2]", "SELECT ($1).f, $1.f, a[\x01:\x01]", 2},
        {"SELECT 'x'\"y\", (1)\"z\"", "SELECT \x03\"y\", (\x01)\"z\"", 2},
        {"INSERT INTO t VALUES (1,'a');\r\n\fCOMMIT",
         "INSERT INTO t VALUES (\x01,\x03);\r\n\fCOMMIT", 2},
        {"SELECT a FROM t", "SELECT a FROM t", 0},
        {"", "", 0},
        {"  ", "  ", 0},
    };
    char out[256];
    size_t n;
    for (size_t i = 0; i < COUNT(cases); i++) {
        int rc = normalize(cases[i].in, strlen(cases[i].in), out, sizeof(out), &n);
        if (rc != cases[i].literals || n != strlen(cases[i].out) || memcmp(out, cases[i].out, n))
            fail_msg("normalize [%s]: rc %d, want %d; got [%.*s]", cases[i].in, rc,
                     cases[i].literals, (int)n, out);
    }
    /* an exact-size buffer is enough */
    const char *t = "SELECT 1, 'x'";
    assert_int_equal(normalize(t, strlen(t), out, strlen(t), &n), 2);
}

/* Checks probe on g through cache c, and asserts the verdict equals a cold check's. */
static tg_sql_verdict_kind check_like_cold(const tg_sql_guard *g, tg_sql_cache *c,
                                           const char *probe, tg_sql_verdict *v)
{
    tg_sql_verdict cold;
    check(g, NULL, probe, &cold);
    check(g, c, probe, v);
    if (v->kind != cold.kind || strcmp(v->reason, cold.reason) != 0)
        fail_msg("cached verdict differs for [%s]: %d [%s], cold %d [%s]", probe, v->kind,
                 v->reason, cold.kind, cold.reason);
    return v->kind;
}

static void test_normalized_hits(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_cache *c = tg_sql_cache_new(64);
    tg_sql_cache_counters s;
    tg_sql_verdict v;
    char sql[128];
    for (int i = 0; i < 100; i++) {
        snprintf(sql, sizeof(sql), "SELECT abalance FROM pgbench_accounts WHERE aid = %d;",
                 i * 7919 + 1);
        assert_int_equal(check(g, c, sql, &v), TG_SQL_ALLOW);
    }
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.misses, 1);
    assert_int_equal(s.hits, 99);
    assert_int_equal(s.norm_hits, 99);
    assert_int_equal(s.entries, 2); /* the first text, and the shape */
    /* a bigger value is another token kind (FCONST): another shape */
    assert_int_equal(
        check(g, c, "SELECT abalance FROM pgbench_accounts WHERE aid = 2147483648;", &v),
        TG_SQL_ALLOW);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.misses, 2);
    /* denied shapes are shared too, with their reason */
    assert_int_equal(check(g, c, "SELECT * FROM pg_stat_activity WHERE pid = 1", &v), TG_SQL_DENY);
    assert_int_equal(check(g, c, "SELECT * FROM pg_stat_activity WHERE pid = 2", &v), TG_SQL_DENY);
    assert_string_equal(v.reason, REL("pg_stat_activity"));
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.norm_hits, 100);
    /* refused texts are counted, and judged by a parse */
    assert_int_equal(check(g, c, "SELECT 1 -- c", &v), TG_SQL_ALLOW);
    assert_int_equal(check(g, c, "SELECT 2 -- c", &v), TG_SQL_ALLOW);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.norm_refused, 2);
    assert_int_equal(s.misses, 5);
    /* REWRITE verdicts are never shared by shape */
    assert_int_equal(check(g, c, "SELECT pg_notify('a', 'x')", &v), TG_SQL_REWRITE);
    assert_int_equal(check(g, c, "SELECT pg_notify('b', 'x')", &v), TG_SQL_REWRITE);
    assert_int_equal(check(g, c, "LISTEN a; SELECT 1", &v), TG_SQL_REWRITE);
    assert_int_equal(check(g, c, "LISTEN a; SELECT 2", &v), TG_SQL_REWRITE);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.norm_hits, 100);
    assert_int_equal(s.misses, 9);
    /* the same shape under another guard is another key */
    tg_sql_guard *gd = guard_new(true);
    assert_int_equal(check(gd, c, "SELECT abalance FROM pgbench_accounts WHERE aid = 5;", &v),
                     TG_SQL_ALLOW);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.misses, 10);
    /* long texts (depth pre-check) and short ones of one shape are two keys */
    char *long1 = repeat("SELECT '", "x", 2000, "' FROM t");
    char *long2 = repeat("SELECT '", "y", 2000, "' FROM t");
    assert_int_equal(check(g, c, "SELECT 'x' FROM t", &v), TG_SQL_ALLOW);
    assert_int_equal(check(g, c, long1, &v), TG_SQL_ALLOW);
    assert_int_equal(check(g, c, long2, &v), TG_SQL_ALLOW);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.misses, 12);
    assert_int_equal(s.norm_hits, 101);
    free(long1);
    free(long2);
    tg_sql_cache_free(c);
    tg_sql_guard_free(g);
    tg_sql_guard_free(gd);
}

/* A verdict that depends on a literal's value is never served by shape. */
typedef struct sensitive_pair {
    bool ddl;          /* judged by a guard with allow_ddl on */
    const char *prime; /* checked first, through the cache */
    const char *probe; /* same shape; must get its own (cold) verdict */
    tg_sql_verdict_kind want;
} sensitive_pair;

static const sensitive_pair sensitive_pairs[] = {
    /* set_config's setting name */
    {false, "SELECT set_config('application_name', 'x', false)",
     "SELECT set_config('app.tenant_id', 'x', false)", TG_SQL_DENY},
    {false, "SELECT set_config('search_path', 'x', false)",
     "SELECT set_config('APP.TENANT_ID', 'x', false)", TG_SQL_DENY},
    {false, "SELECT set_config('search_path', 'x', false)",
     "SELECT set_config('client_encoding', 'x', false)", TG_SQL_DENY},
    {false, "SELECT set_config('search_path', 'x', false)",
     "SELECT set_config('standard_conforming_strings', 'x', false)", TG_SQL_DENY},
    {false, "SELECT set_config('search_path', 'x', false)", "SELECT set_config('role', 'x', false)",
     TG_SQL_DENY},
    {false, "SELECT set_config('search_path', 'x', false)",
     "SELECT set_config('tenantgate.sig', 'x', false)", TG_SQL_DENY},
    {false, "SELECT 1 WHERE set_config('work_mem', '1MB', true) IS NOT NULL",
     "SELECT 1 WHERE set_config('app.tenant_id', '1MB', true) IS NOT NULL", TG_SQL_DENY},
    {false, "SELECT set_config('app.tenant_id', 'x', false)",
     "SELECT set_config('application_name', 'x', false)", TG_SQL_ALLOW},
    /* SET client_encoding's value */
    {false, "SET client_encoding TO 'UTF8'", "SET client_encoding TO 'SJIS'", TG_SQL_DENY},
    {false, "SET client_encoding = 'LATIN1'", "SET client_encoding = 'big5'", TG_SQL_DENY},
    {false, "SET NAMES 'utf8'", "SET NAMES 'sjis'", TG_SQL_DENY},
    {false, "SET client_encoding TO 'SJIS'", "SET client_encoding TO 'UTF8'", TG_SQL_ALLOW},
    /* standard_conforming_strings' value */
    {false, "SET standard_conforming_strings = 'on'", "SET standard_conforming_strings = 'off'",
     TG_SQL_DENY},
    {false, "SET standard_conforming_strings = 1", "SET standard_conforming_strings = 0",
     TG_SQL_DENY},
    {false, "SET standard_conforming_strings = 'yes'", "SET standard_conforming_strings = 'no'",
     TG_SQL_DENY},
    /* pg_notify's channel: emptiness, length */
    {false, "SELECT pg_notify('a', 'x')", "SELECT pg_notify('', 'x')", TG_SQL_DENY},
    {false, "SELECT pg_notify('a', 'x')",
     "SELECT pg_notify('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'x')", TG_SQL_DENY},
    {false, "SELECT pg_notify('', 'x')", "SELECT pg_notify('a', 'x')", TG_SQL_REWRITE},
    /* COPY's file name: '' looks like STDIN in the tree */
    {false, "COPY t FROM ''", "COPY t FROM '/etc/passwd'", TG_SQL_DENY},
    {false, "COPY t TO ''", "COPY t TO '/tmp/x'", TG_SQL_DENY},
    /* Strings in DDL may name functions */
    {true, "CREATE AGGREGATE a(text) (SFUNC = 'textcat', STYPE = text)",
     "CREATE AGGREGATE a(text) (SFUNC = 'set_config', STYPE = text)", TG_SQL_DENY},
    {true, "CREATE AGGREGATE a(text) (SFUNC = 'textcat', STYPE = text)",
     "CREATE AGGREGATE a(text) (SFUNC = 'pg_terminate_backend', STYPE = text)", TG_SQL_DENY},
    /* values the grammar checks */
    {true, "ALTER INDEX i ALTER COLUMN 1 SET STATISTICS 100",
     "ALTER INDEX i ALTER COLUMN 0 SET STATISTICS 100", TG_SQL_DENY},
    {true, "ALTER INDEX i ALTER COLUMN 0 SET STATISTICS 100",
     "ALTER INDEX i ALTER COLUMN 1 SET STATISTICS 100", TG_SQL_ALLOW},
    {false, "SELECT 1::float(10)", "SELECT 1::float(0)", TG_SQL_DENY},
    {false, "SELECT 1::float(0)", "SELECT 1::float(10)", TG_SQL_ALLOW},
    {false, "FETCH 5 FROM c", "FETCH 5000000000 FROM c", TG_SQL_DENY},
    {false, "FETCH 5000000000 FROM c", "FETCH 5 FROM c", TG_SQL_ALLOW},
    /* several statements: the sensitive one decides */
    {false, "SELECT 1; SELECT set_config('application_name', 'x', false)",
     "SELECT 2; SELECT set_config('app.tenant_id', 'x', false)", TG_SQL_DENY},
};

static void test_literal_sensitive(void **state)
{
    (void)state;
    tg_sql_guard *g = guard_new(false);
    tg_sql_guard *gd = guard_new(true);
    tg_sql_verdict v;
    for (size_t i = 0; i < COUNT(sensitive_pairs); i++) {
        const sensitive_pair *p = &sensitive_pairs[i];
        const tg_sql_guard *gg = p->ddl ? gd : g;
        tg_sql_cache *c = tg_sql_cache_new(16);
        assert_non_null(c);
        for (int pass = 0; pass < 2; pass++) { /* cold, then warm */
            check(gg, c, p->prime, &v);
            if (check_like_cold(gg, c, p->probe, &v) != p->want)
                fail_msg("[%s] after [%s]: %d (%s), want %d", p->probe, p->prime, v.kind, v.reason,
                         p->want);
        }
        tg_sql_cache_counters s;
        tg_sql_cache_stats(c, &s);
        if (s.norm_hits != 0)
            fail_msg("[%s] after [%s]: served by shape", p->probe, p->prime);
        tg_sql_cache_free(c);
    }
    /* and an insensitive SET is shared */
    tg_sql_cache *c = tg_sql_cache_new(16);
    tg_sql_cache_counters s;
    assert_int_equal(check(g, c, "SET search_path = 'a'", &v), TG_SQL_ALLOW);
    assert_int_equal(check(g, c, "SET search_path = 'b'", &v), TG_SQL_ALLOW);
    assert_int_equal(check(g, c, "SET app.tenant_id = 'a'", &v), TG_SQL_DENY);
    assert_int_equal(check(g, c, "SET app.tenant_id = 'b'", &v), TG_SQL_DENY);
    assert_string_equal(v.reason, R_TENANT);
    tg_sql_cache_stats(c, &s);
    assert_int_equal(s.norm_hits, 2);
    tg_sql_cache_free(c);
    tg_sql_guard_free(g);
    tg_sql_guard_free(gd);
}

/*
 * A literal-varied twin of sql: every string literal's content replaced by
 * sv, every plain integer by nv. Rough on purpose (the twin need not parse).
 */
static char *twin(const char *sql, const char *sv, const char *nv)
{
    size_t len = strlen(sql), cap = len * (strlen(sv) + strlen(nv) + 2) + 1, o = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)sql[i];
        unsigned char prev = i ? (unsigned char)sql[i - 1] : ' ';
        bool prev_ident = isalnum(prev) || prev == '_' || prev == '$' || prev == '.';
        if (c == '\'' && !prev_ident) {
            size_t j = i + 1;
            while (j < len && sql[j] != '\'')
                j++;
            o += (size_t)sprintf(out + o, "'%s'", sv);
            i = j < len ? j + 1 : len;
        } else if (c == '"') {
            size_t j = i + 1;
            while (j < len && sql[j] != '"')
                j++;
            j = j < len ? j + 1 : len;
            memcpy(out + o, sql + i, j - i);
            o += j - i;
            i = j;
        } else if (isdigit(c) && !prev_ident) {
            size_t j = i;
            while (j < len && isdigit((unsigned char)sql[j]))
                j++;
            if (j < len && (isalnum((unsigned char)sql[j]) || sql[j] == '_' || sql[j] == '.')) {
                memcpy(out + o, sql + i, j - i);
                o += j - i;
            } else {
                o += (size_t)sprintf(out + o, "%s", nv);
            }
            i = j;
        } else {
            out[o++] = (char)c;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

static const char *const twin_strings[] = {
    "x",
    "",
    "app.tenant_id",
    "application_name",
    "SJIS",
    "UTF8",
    "off",
    "on",
    "0",
    "/etc/passwd",
    "role",
    "set_config",
    "search_path",
    "client_encoding",
    "standard_conforming_strings",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};
static const char *const twin_numbers[] = {"0", "1", "7", "42", "2147483647"};

/* Checks sql cold, then after priming c with every twin, then again: all verdicts equal. */
static int check_with_twins(const tg_sql_guard *g, tg_sql_cache *c, const char *sql)
{
    tg_sql_verdict cold, warm;
    check(g, NULL, sql, &cold);
    for (size_t i = 0; i < COUNT(twin_strings); i++) {
        char *t = twin(sql, twin_strings[i], twin_numbers[i % COUNT(twin_numbers)]);
        check(g, c, t, &warm);
        free(t);
    }
    for (int pass = 0; pass < 2; pass++) {
        check(g, c, sql, &warm);
        if (warm.kind != cold.kind || strcmp(warm.reason, cold.reason) != 0) {
            print_error("warm verdict differs for [%s]: %d [%s], cold %d [%s]\n", sql, warm.kind,
                        warm.reason, cold.kind, cold.reason);
            return 1;
        }
    }
    return 0;
}

static void test_corpora_cold_warm(void **state)
{
    (void)state;
    int failures = 0;
    for (int ddl = 0; ddl < 2; ddl++) {
        tg_sql_guard *g = guard_new(ddl);
        tg_sql_cache *c = tg_sql_cache_new(4096); /* long-lived: shapes of every corpus meet */
        for (size_t i = 0; i < COUNT(attacks); i++)
            failures += check_with_twins(g, c, attacks[i].sql);
        for (size_t i = 0; i < COUNT(allowed); i++)
            failures += check_with_twins(g, c, allowed[i]);
        for (size_t i = 0; i < COUNT(ddl_allowed); i++)
            failures += check_with_twins(g, c, ddl_allowed[i]);
        for (size_t i = 0; i < COUNT(sensitive_pairs); i++) {
            failures += check_with_twins(g, c, sensitive_pairs[i].prime);
            failures += check_with_twins(g, c, sensitive_pairs[i].probe);
        }
        tg_sql_cache_counters s;
        tg_sql_cache_stats(c, &s);
        print_message("corpora, allow_ddl=%d: %" PRIu64 " hits (%" PRIu64 " by shape), %" PRIu64
                      " parses, %" PRIu64 " refused by the normalizer\n",
                      ddl, s.hits, s.norm_hits, s.misses, s.norm_refused);
        assert_true(s.norm_hits > 0);
        tg_sql_cache_free(c);
        tg_sql_guard_free(g);
    }
    assert_int_equal(failures, 0);
}

/* ---- property: verdict by shape == verdict of a fresh guard, for random literals ---- */

static uint64_t rng_state = UINT64_C(0x853c49e6748fea9b);

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* %N: a number, %S: a string literal, %I: a plain integer. */
static const char *const templates[] = {
    "SELECT abalance FROM pgbench_accounts WHERE aid = %I;",
    "UPDATE pgbench_accounts SET abalance = abalance + %N WHERE aid = %I;",
    "INSERT INTO t (a, b) VALUES (%N, %S), (%N, %S)",
    "SELECT * FROM t WHERE a IN (%N, %N, %N) AND b LIKE %S LIMIT %I OFFSET %I",
    "SELECT %S::text, -%N, %N::int, %S::varchar(%I)",
    "SELECT set_config(%S, %S, false)",
    "SELECT set_config(%S, %S, %S::bool)",
    "SELECT 1 WHERE set_config(%S, %S, true) = %S",
    "SELECT current_setting(%S)",
    "SET client_encoding = %S",
    "SET NAMES %S",
    "SET standard_conforming_strings = %S",
    "SET standard_conforming_strings = %N",
    "SET search_path = %S",
    "SET statement_timeout = %N",
    "SET app.tenant_id = %S",
    "SELECT pg_notify(%S, %S)",
    "NOTIFY x, %S",
    "LISTEN x; SELECT %N",
    "EXPLAIN (ANALYZE %N) SELECT %N",
    "EXPLAIN (ANALYZE %S, COSTS %S) SELECT * FROM t WHERE a = %S",
    "COPY t FROM %S",
    "COPY t TO %S",
    "COPY (SELECT %N) TO STDOUT",
    "FETCH %N FROM c",
    "SELECT %N::float(%I)",
    "SELECT %S\n%S",
    "SELECT %S %S",
    "SELECT * FROM t WHERE a = %N; SET app.tenant_id = %S",
    "SELECT * FROM pg_stat_activity WHERE pid = %N",
    "ALTER INDEX i ALTER COLUMN %I SET STATISTICS %I",
    "CREATE AGGREGATE a(text) (SFUNC = %S, STYPE = text)",
    "CREATE TABLE x (a text DEFAULT %S, b numeric(%I, %I))",
    "SELECT * FROM t LIMIT %N",
    "PREPARE TRANSACTION %S",
    "SELECT interval %S, date %S, %S::regproc",
};

static const char *const prop_numbers[] = {
    "0",     "1",     "2",          "7",          "24",          "25",  "53",  "54",    "100",
    "32767", "32768", "2147483647", "2147483648", "99999999999", "1.5", "0.0", "10.25", "007",
};

static const char *const prop_strings[] = {
    "",
    "x",
    "app.tenant_id",
    "APP.TENANT_ID",
    "app.tenant_idx",
    "application_name",
    "search_path",
    "client_encoding",
    "standard_conforming_strings",
    "role",
    "session_authorization",
    "tenantgate.sig",
    "UTF8",
    "SJIS",
    "sjis",
    "Shift_JIS",
    "LATIN1",
    "on",
    "off",
    "true",
    "false",
    "1",
    "0",
    "yes",
    "no",
    "/etc/passwd",
    "set_config",
    "pg_notify",
    "textcat",
    "pg_terminate_backend",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "a--b",
    "/*",
    "$$",
    "1 day",
    "2024-01-01",
};

static void fill_template(const char *tpl, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = tpl; *p && o + 1 < cap; p++) {
        if (p[0] == '%' && (p[1] == 'N' || p[1] == 'S' || p[1] == 'I')) {
            char lit[128];
            if (p[1] == 'N')
                snprintf(lit, sizeof(lit), "%s", prop_numbers[rng() % COUNT(prop_numbers)]);
            else if (p[1] == 'I')
                snprintf(lit, sizeof(lit), "%s", prop_numbers[rng() % 13]);
            else
                snprintf(lit, sizeof(lit), "'%s'", prop_strings[rng() % COUNT(prop_strings)]);
            o += (size_t)snprintf(out + o, cap - o, "%s", lit);
            if (o >= cap)
                o = cap - 1;
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static void test_property_by_shape(void **state)
{
    (void)state;
    tg_sql_guard *g[2] = {guard_new(false), guard_new(true)};
    tg_sql_guard *fresh[2] = {guard_new(false), guard_new(true)};
    tg_sql_cache *c = tg_sql_cache_new(1024); /* one cache for everything, both guards */
    int failures = 0;
    char sql[512];
    for (int round = 0; round < 200; round++) {
        for (size_t t = 0; t < COUNT(templates); t++) {
            fill_template(templates[t], sql, sizeof(sql));
            for (int d = 0; d < 2; d++) {
                tg_sql_verdict a, b;
                check(g[d], c, sql, &a);
                check(fresh[d], NULL, sql, &b);
                if (a.kind != b.kind || strcmp(a.reason, b.reason) != 0) {
                    print_error("by shape [%s] (allow_ddl=%d): %d [%s], fresh %d [%s]\n", sql, d,
                                a.kind, a.reason, b.kind, b.reason);
                    failures++;
                }
            }
        }
    }
    tg_sql_cache_counters s;
    tg_sql_cache_stats(c, &s);
    print_message("property: %" PRIu64 " checks, %" PRIu64 " by shape, %" PRIu64 " parses\n",
                  s.hits + s.misses, s.norm_hits, s.misses);
    assert_true(s.norm_hits > 1000);
    tg_sql_cache_free(c);
    for (int d = 0; d < 2; d++) {
        tg_sql_guard_free(g[d]);
        tg_sql_guard_free(fresh[d]);
    }
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attacks),
        cmocka_unit_test(test_attacks_with_ddl),
        cmocka_unit_test(test_attacks_cached),
        cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_ddl_switch),
        cmocka_unit_test(test_multi_statement),
        cmocka_unit_test(test_config_extras),
        cmocka_unit_test(test_nul_and_edges),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_channel_prefix),
        cmocka_unit_test(test_audit_fingerprint_ignores_literals),
        cmocka_unit_test(test_cache_hit),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_cache_guard_identity),
        cmocka_unit_test(test_normalize_refusals),
        cmocka_unit_test(test_normalize_accepts),
        cmocka_unit_test(test_normalized_hits),
        cmocka_unit_test(test_literal_sensitive),
        cmocka_unit_test(test_corpora_cold_warm),
        cmocka_unit_test(test_property_by_shape),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("sql_guard_test: %zu attack strings, %zu allowed strings\n", COUNT(attacks),
           COUNT(allowed));
    return rc;
}
