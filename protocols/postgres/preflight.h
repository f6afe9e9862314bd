/*
 * `tenantgate check` for a PostgreSQL listener: is the backend set up so that
 * row-level security actually isolates tenants?
 *
 * It logs in the way the proxy does (backend.address, backend.user, the
 * password file, backend TLS) with libpq, once per database the listener
 * serves, and reads the catalogs. It is blocking, runs only from the CLI and
 * never touches the runtime or a loop.
 */
#ifndef TG_PROTOCOLS_POSTGRES_PREFLIGHT_H
#define TG_PROTOCOLS_POSTGRES_PREFLIGHT_H

#include <stdio.h>

#include "proxy/config.h"

/* tg_pg_preflight's results: every database checked and safe, a problem found, or at least one
 * database could not be checked (login refused, catalog query failed). */
enum { TG_PG_PREFLIGHT_OK = 0, TG_PG_PREFLIGHT_UNSAFE = 1, TG_PG_PREFLIGHT_NOCONNECT = 2 };

/*
 * Checks the postgres listener l (borrowed) against each database in l->postgres.databases (or,
 * when unset, the one named after backend.user): the role is neither superuser nor BYPASSRLS;
 * every ordinary or partitioned table with the column l->postgres.tenant_column has RLS enabled
 * and forced and at least one policy; with signed_context, tenantgate.current_tenant() exists,
 * is executable and accepts tenantgate's signature made with the configured key.
 * Writes one line per finding to report, "listener L: database D: " followed by "ok ...",
 * "problem: ...; fix: ...", "warning: ...", "info: ..." or "cannot connect: ...".
 * Returns TG_PG_PREFLIGHT_OK, _UNSAFE or _NOCONNECT (the worst over all databases).
 */
__attribute__((warn_unused_result)) int tg_pg_preflight(const tg_listener_config *l, FILE *report);

#endif
