/*
 * Tenant records from the registry: see tenant_record.h.
 */
#include "proxy/tenant_record.h"

#include <string.h>

/* A decimal uint32 without sign or leading zero (the registry's numbers). Returns 0 or -1. */
static int parse_u32(tg_slice v, uint32_t *out)
{
    if (v.len == 0 || v.len > 10 || (v.len > 1 && v.base[0] == '0'))
        return -1;
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(v.base[i] - '0'); /* at most 10 digits: < 2^64 */
    }
    if (n > UINT32_MAX)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

static const struct {
    const char *name;
    uint32_t bit;
    size_t offset;
} limit_fields[] = {
    {"max_connections", TG_LIMIT_MAX_CONNECTIONS, offsetof(tg_tenant_limits, max_connections)},
    {"messages_per_second", TG_LIMIT_MESSAGES_PER_SECOND,
     offsetof(tg_tenant_limits, messages_per_second)},
    {"burst", TG_LIMIT_BURST, offsetof(tg_tenant_limits, burst)},
    {"global_messages_per_second", TG_LIMIT_GLOBAL_MESSAGES_PER_SECOND,
     offsetof(tg_tenant_limits, global_messages_per_second)},
    {"max_inflight_bytes", TG_LIMIT_MAX_INFLIGHT_BYTES,
     offsetof(tg_tenant_limits, max_inflight_bytes)},
};

void tg_tenant_record_parse(const tg_slice *fields, const tg_slice *values, size_t n,
                            tg_tenant_record *out)
{
    memset(out, 0, sizeof(*out));
    if (n == 0) {
        out->status = TG_TENANT_UNKNOWN;
        return;
    }
    bool has_status = false, bad = false;
    for (size_t i = 0; i < n && !bad; i++) {
        tg_slice f = fields[i], v = values[i];
        if (tg_slice_eq_str(f, "status")) {
            has_status = true;
            if (tg_slice_eq_str(v, "active"))
                out->status = TG_TENANT_ACTIVE;
            else if (tg_slice_eq_str(v, "suspended"))
                out->status = TG_TENANT_SUSPENDED;
            else
                bad = true;
        } else if (tg_slice_eq_str(f, "slug")) {
            if (v.len == 0 || !tg_tenant_valid((const char *)v.base, v.len))
                bad = true;
            else {
                memcpy(out->slug, v.base, v.len);
                out->slug[v.len] = '\0';
            }
        } else {
            for (size_t k = 0; k < sizeof(limit_fields) / sizeof(limit_fields[0]); k++) {
                if (!tg_slice_eq_str(f, limit_fields[k].name))
                    continue;
                uint32_t val;
                if (parse_u32(v, &val) < 0) {
                    bad = true;
                    break;
                }
                memcpy((uint8_t *)&out->limits + limit_fields[k].offset, &val, sizeof(val));
                out->overrides |= limit_fields[k].bit;
            }
        }
    }
    if (bad || !has_status) {
        memset(out, 0, sizeof(*out));
        out->status = TG_TENANT_INVALID;
    }
}

tg_tenant_limits tg_tenant_record_limits(const tg_tenant_record *r,
                                         const tg_tenant_limits *defaults,
                                         uint32_t listener_max_connections)
{
    tg_tenant_limits l = *defaults;
    if (listener_max_connections)
        l.max_connections = listener_max_connections;
    if (!r)
        return l;
    uint32_t o = r->overrides;
    if (o & TG_LIMIT_MAX_CONNECTIONS)
        l.max_connections = r->limits.max_connections;
    if (o & TG_LIMIT_MESSAGES_PER_SECOND) {
        l.messages_per_second = r->limits.messages_per_second;
        if (!(o & TG_LIMIT_BURST))
            l.burst = 0; /* the default burst was sized for the default rate */
    }
    if (o & TG_LIMIT_BURST)
        l.burst = r->limits.burst;
    if (o & TG_LIMIT_GLOBAL_MESSAGES_PER_SECOND)
        l.global_messages_per_second = r->limits.global_messages_per_second;
    if (o & TG_LIMIT_MAX_INFLIGHT_BYTES)
        l.max_inflight_bytes = r->limits.max_inflight_bytes;
    return l;
}

tg_tenant_verdict tg_tenant_record_verdict(const tg_tenant_record *r, bool require_registered)
{
    switch (r->status) {
    case TG_TENANT_ACTIVE:
        return TG_ADMIT_OK;
    case TG_TENANT_SUSPENDED:
        return TG_ADMIT_SUSPENDED;
    case TG_TENANT_UNKNOWN:
        return require_registered ? TG_ADMIT_UNREGISTERED : TG_ADMIT_OK;
    case TG_TENANT_INVALID:
        break;
    }
    return TG_ADMIT_INVALID;
}

const char *tg_tenant_record_verdict_str(tg_tenant_verdict v)
{
    static const char *const names[] = {
#define TG_TENANT_VERDICT_STR(name, desc) desc,
        TG_TENANT_VERDICT_MAP(TG_TENANT_VERDICT_STR)
#undef TG_TENANT_VERDICT_STR
    };
    return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "unknown";
}
