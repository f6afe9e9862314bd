/*
 * What the registry says about a tenant: its hash <prefix>tenant:<id>, parsed
 * and judged.
 *
 *   HGETALL field/value pairs --parse--> record {status, slug, limit overrides}
 *   record + tenants.limits + listener --limits()--> the tenant's effective limits
 *   record + require_registered --verdict()--> may a session of this tenant run?
 *
 * The hash's fields (everything else in it is ignored, so a control plane can
 * keep its own fields there):
 *
 *   status        active | suspended                      (required)
 *   slug          the tenant's SNI slug, as tenant ids     (optional)
 *   max_connections, messages_per_second, burst,
 *   global_messages_per_second, max_inflight_bytes         (optional, decimal)
 *
 * Fail-closed: a hash without a status, with another status, or with a field
 * of ours that does not parse is INVALID, and an INVALID tenant is refused
 * like a suspended one. No hash at all is UNKNOWN. Pure functions.
 */
#ifndef TG_PROXY_TENANT_RECORD_H
#define TG_PROXY_TENANT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"
#include "proxy/jwt.h"
#include "proxy/slice.h"

typedef enum {
    TG_TENANT_ACTIVE,
    TG_TENANT_SUSPENDED,
    TG_TENANT_UNKNOWN, /* no hash */
    TG_TENANT_INVALID, /* a hash tenantgate cannot read */
} tg_tenant_status;

/* Bits of tg_tenant_record.overrides: which limits the hash sets. */
enum {
    TG_LIMIT_MAX_CONNECTIONS = 1u << 0,
    TG_LIMIT_MESSAGES_PER_SECOND = 1u << 1,
    TG_LIMIT_BURST = 1u << 2,
    TG_LIMIT_GLOBAL_MESSAGES_PER_SECOND = 1u << 3,
    TG_LIMIT_MAX_INFLIGHT_BYTES = 1u << 4,
};

typedef struct tg_tenant_record {
    tg_tenant_status status;
    uint32_t overrides;           /* TG_LIMIT_* bits */
    tg_tenant_limits limits;      /* the hash's values where overrides has the bit */
    char slug[TG_TENANT_MAX + 1]; /* "" when absent */
} tg_tenant_record;

/*
 * Parses the n field/value pairs of an HGETALL reply into *out (zeroed first).
 * n == 0 gives UNKNOWN.
 */
void tg_tenant_record_parse(const tg_slice *fields, const tg_slice *values, size_t n,
                            tg_tenant_record *out);

/*
 * The limits one listener applies to the tenant: the hash's overrides; else,
 * for max_connections, the listener's own per-tenant limit when it has one
 * (listener_max_connections != 0); else the defaults (tenants.limits).
 */
tg_tenant_limits tg_tenant_record_limits(const tg_tenant_record *r,
                                         const tg_tenant_limits *defaults,
                                         uint32_t listener_max_connections);

/* X(name, description): whether a session of a tenant may run, per the registry. */
#define TG_TENANT_VERDICT_MAP(X)                                                                   \
    X(OK, "ok")                                                                                    \
    X(SUSPENDED, "tenant suspended")                                                               \
    X(UNREGISTERED, "tenant not registered")                                                       \
    X(INVALID, "tenant record is invalid")

typedef enum {
#define TG_TENANT_VERDICT_ENUM(name, desc) TG_ADMIT_##name,
    TG_TENANT_VERDICT_MAP(TG_TENANT_VERDICT_ENUM)
#undef TG_TENANT_VERDICT_ENUM
} tg_tenant_verdict;

/* The verdict for a record: UNKNOWN is fine unless require_registered. */
tg_tenant_verdict tg_tenant_record_verdict(const tg_tenant_record *r, bool require_registered);

/* A static description of a verdict ("tenant suspended"). */
const char *tg_tenant_record_verdict_str(tg_tenant_verdict v);

#endif
