/*
 * Open sessions per (listener, tenant), process-wide, for
 * max_connections_per_tenant: one noisy tenant cannot take every backend
 * connection (SPEC §6, invariant 5).
 *
 * A mutex-guarded hash table; it is touched when a session authenticates and
 * when it closes, never per message. Entries disappear when their count drops
 * to zero, so the table holds only tenants with open sessions.
 */
#ifndef TG_PROXY_TENANT_COUNT_H
#define TG_PROXY_TENANT_COUNT_H

#include <stdint.h>

/*
 * Takes a slot for tenant on listener when fewer than max are taken (max 0 =
 * unlimited). Returns 0, TG_ELIMIT when the tenant is at its limit, or TG_ENOMEM.
 */
__attribute__((warn_unused_result)) int tg_tenant_count_acquire(const char *listener,
                                                                const char *tenant, uint32_t max);

/* Gives back a slot taken with tg_tenant_count_acquire. */
void tg_tenant_count_release(const char *listener, const char *tenant);

#endif
