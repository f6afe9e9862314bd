/*
 * Tenant authentication as every protocol session does it, the tenant
 * registry's say on it, and the tenant's limits.
 *
 *   session (password / AUTH / SASL / LOGON) --token--> tg_auth_tenant
 *       --> verifier + worker cache (SPEC §4)                         --> refused, or
 *       --> registry (tenants.registry): cache, or ask and say PENDING --> the session
 *           waits; the client side is redispatched when the answer is in and the
 *           same call then returns the outcome (suspended, not registered, revoked,
 *           slug vs SNI, registry unavailable, or OK)
 *       metrics (auth_total / auth_failures_total{reason}); audit line
 *   session, on OK --tg_auth_admit--> the tenant's slot on this listener (connection
 *       limit, rate limits, in-flight bytes: proxy/tenant_count.h) with the registry's
 *       overrides; the identity is remembered so that the registry can end the session
 *   registry events (worker) --tg_auth_kick_*--> ops->on_kick of the matching sessions
 *
 * One call so that no protocol can forget the registry, the metric or the
 * audit line, and so that every protocol checks tokens the same way. The
 * token's text never reaches a log.
 */
#ifndef TG_PROXY_AUTH_H
#define TG_PROXY_AUTH_H

#include <stddef.h>

#include "proxy/conn.h"
#include "proxy/jwt.h"
#include "proxy/tenant_count.h"
#include "proxy/tenant_record.h"

/*
 * Verifies token (len bytes) for connection c with the runtime's verifier,
 * the worker's cache and the client's TLS SNI, at the current time, then asks
 * the tenant registry when one is configured. Counts the outcome in the
 * listener's metrics and writes an audit line (listener, client address,
 * tenant or reason). Fills *id on TG_JWT_OK.
 *
 * TG_JWT_PENDING: the registry is being asked. The session must consume
 * nothing (return 0 from on_data, leaving the message that carries the token
 * unread); once the answer is in, on_data runs again over the same bytes and
 * the same call returns the outcome. Nothing is counted or logged for it.
 */
tg_jwt_result tg_auth_tenant(tg_conn *c, const char *token, size_t len, tg_identity *id);

/*
 * After TG_JWT_OK for id: takes the tenant's slot on this listener with the
 * limits that apply to it (the registry's overrides, the listener's own
 * per-tenant connection limit, tenants.limits) and remembers the identity so
 * that registry events (suspension, revocation) end this session. The slot
 * of a tenant admitted before on c is given back (a re-authentication as the
 * same tenant keeps it). Returns 0 with the slot in *slot (valid until the
 * connection closes or the next admit), TG_ELIMIT when the tenant is at its
 * connection limit (nothing changed), or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int tg_auth_admit(tg_conn *c, const tg_identity *id,
                                                      tg_tenant_slot **slot);

/* The connection closes: cancels a registry lookup, gives back the slot (called by conn.c). */
void tg_auth_conn_closed(tg_conn *c);

/* Registry events, on the worker's loop (the worker's registry hooks). */

/* The tenant's record was read again: ends its sessions on w unless they may still run
 * (and applies new limits). */
void tg_auth_tenant_changed(tg_worker *w, const char *tenant, const tg_tenant_record *rec);

/* The jti was revoked: ends the sessions on w authenticated with it. */
void tg_auth_jti_revoked(tg_worker *w, const char *jti);

/* The registry's caches were cleared: asks it again about every session on w. */
void tg_auth_resync(tg_worker *w);

#endif
