/*
 * `tenantgate check` for a Redis listener with allow_scripts: can tenantgate
 * provision the per-tenant ACL users on this backend?
 *
 * It logs in the way the control connection does (backend.address,
 * backend.user, the password file) with hiredis, reads the server version
 * (HELLO) and probes ACL SETUSER with a rule Redis refuses -- a permission
 * error and a syntax error tell apart whether the service user may run it,
 * and Redis 7 applies a refused ACL SETUSER not at all, so nothing is created.
 * Blocking; runs only from the CLI and never touches the runtime or a loop.
 */
#ifndef TG_PROTOCOLS_REDIS_PREFLIGHT_H
#define TG_PROTOCOLS_REDIS_PREFLIGHT_H

#include <stdio.h>

#include "proxy/config.h"

/* tg_redis_preflight's results, as tg_pg_preflight's. */
enum { TG_REDIS_PREFLIGHT_OK = 0, TG_REDIS_PREFLIGHT_UNSAFE = 1, TG_REDIS_PREFLIGHT_NOCONNECT = 2 };

/*
 * Checks the redis listener l (borrowed; allow_scripts set): the service user
 * logs in, the server is Redis 7.0 or later, and the service user may run ACL
 * SETUSER. Writes one line per finding to report, "listener L: " followed by
 * "ok ...", "problem: ...; fix: ..." or "cannot connect: ...". Returns
 * TG_REDIS_PREFLIGHT_OK, _UNSAFE or _NOCONNECT.
 */
__attribute__((warn_unused_result)) int tg_redis_preflight(const tg_listener_config *l,
                                                           FILE *report);

#endif
