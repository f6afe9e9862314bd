/*
 * libFuzzer target for the registry's tenant records (proxy/tenant_record.c).
 *
 *   input: NUL-separated strings taken as HGETALL's field, value, field, value, ...
 *          (seeds: valid hashes, suspended ones, bad statuses, slugs and numbers)
 *        --> tg_tenant_record_parse --> tg_tenant_record_limits, tg_tenant_record_verdict
 *
 * Invariants: never crash or over-read (ASan/UBSan; every string is copied to an
 * exact-size buffer); the status is one of the four; an INVALID or UNKNOWN record
 * carries no slug and no override; a slug is a valid tenant id; overrides use
 * known bits only and each overridden limit is what the limits merge returns;
 * a record without a status field is never admitted; parsing twice gives the
 * same record.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/tenant_record.h"

#define MAX_PAIRS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copies[2 * MAX_PAIRS];
    tg_slice f[MAX_PAIRS], v[MAX_PAIRS];
    size_t n = 0, k = 0, start = 0;
    bool has_status = false;
    for (size_t i = 0; i <= size && k < 2 * MAX_PAIRS; i++) {
        if (i < size && data[i] != 0)
            continue;
        size_t len = i - start;
        uint8_t *c = malloc(len ? len : 1);
        if (!c)
            abort();
        memcpy(c, data + start, len);
        copies[k] = c;
        tg_slice s = {c, len};
        if (k % 2 == 0) {
            f[k / 2] = s;
            has_status |= tg_slice_eq_str(s, "status");
        } else {
            v[k / 2] = s;
        }
        k++;
        start = i + 1;
    }
    n = k / 2;
    tg_tenant_record r, again;
    tg_tenant_record_parse(f, v, n, &r);
    tg_tenant_record_parse(f, v, n, &again);
    if (memcmp(&r, &again, sizeof(r)) != 0)
        abort();
    if (r.status != TG_TENANT_ACTIVE && r.status != TG_TENANT_SUSPENDED &&
        r.status != TG_TENANT_UNKNOWN && r.status != TG_TENANT_INVALID)
        abort();
    if ((r.status == TG_TENANT_INVALID || r.status == TG_TENANT_UNKNOWN) &&
        (r.overrides || r.slug[0]))
        abort();
    if (r.status == TG_TENANT_UNKNOWN && n != 0)
        abort();
    if (r.slug[0] && !tg_tenant_valid(r.slug, strlen(r.slug)))
        abort();
    const uint32_t known = TG_LIMIT_MAX_CONNECTIONS | TG_LIMIT_MESSAGES_PER_SECOND |
                           TG_LIMIT_BURST | TG_LIMIT_GLOBAL_MESSAGES_PER_SECOND |
                           TG_LIMIT_MAX_INFLIGHT_BYTES;
    if (r.overrides & ~known)
        abort();
    if (!has_status && n > 0 && tg_tenant_record_verdict(&r, false) == TG_ADMIT_OK)
        abort();
    tg_tenant_limits defaults = {1, 2, 3, 4, 5};
    tg_tenant_limits l = tg_tenant_record_limits(&r, &defaults, 7);
    if ((r.overrides & TG_LIMIT_MAX_CONNECTIONS) ? l.max_connections != r.limits.max_connections
                                                 : l.max_connections != 7)
        abort();
    if ((r.overrides & TG_LIMIT_MAX_INFLIGHT_BYTES) &&
        l.max_inflight_bytes != r.limits.max_inflight_bytes)
        abort();
    for (size_t i = 0; i < k; i++)
        free(copies[i]);
    return 0;
}
