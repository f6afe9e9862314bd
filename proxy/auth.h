/*
 * Tenant authentication as every protocol session does it.
 *
 *   session (password / AUTH / SASL / LOGON) --token--> tg_auth_tenant --> verifier + worker cache
 *        --> identity or reason; metrics (auth_total / auth_failures_total{reason}); audit line
 *
 * One call so that no protocol can forget the metric or the audit line, and
 * so that every protocol checks tokens the same way (SPEC §4). The token's
 * text never reaches a log.
 */
#ifndef TG_PROXY_AUTH_H
#define TG_PROXY_AUTH_H

#include <stddef.h>

#include "proxy/conn.h"
#include "proxy/jwt.h"

/*
 * Verifies token (len bytes) for connection c with the runtime's verifier,
 * the worker's cache and the client's TLS SNI, at the current time. Counts the
 * outcome in the listener's metrics and writes an audit line (listener,
 * client address, tenant or reason). Fills *id on TG_JWT_OK.
 */
tg_jwt_result tg_auth_tenant(tg_conn *c, const char *token, size_t len, tg_identity *id);

#endif
