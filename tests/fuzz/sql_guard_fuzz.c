/*
 * libFuzzer target for the SQL guard (policy/sql_guard.c).
 *
 *   arbitrary bytes --as statement text--> tg_sql_guard_check
 *        (guard with allow_ddl off, no cache; guard with allow_ddl on, a small shared cache)
 *        --REWRITE--> tg_sql_guard_rewrite --> the text that would leave, checked again
 *
 * Invariants: never crash or over-read (ASan/UBSan; the input is copied to an
 * exact-size buffer); the verdict kind is valid and equals the return value;
 * the reason is NUL-terminated, empty unless DENY, non-empty for DENY; the
 * fingerprint is the same with and without the cache and on a cache hit; a
 * cached verdict equals the uncached one; a rewrite succeeds only on REWRITE
 * or ALLOW texts, yields NUL-terminated text of the reported length, and that
 * text is never denied by the guard (but for a channel name that cannot take
 * a second prefix).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/sql_guard.h"

static tg_sql_guard *strict, *ddl;
static tg_sql_cache *cache;

static void setup(void)
{
    const char *const reserved[] = {"app.user_id", "myapp.*", NULL};
    const char *const funcs[] = {"my_fn", NULL};
    const char *const rels[] = {"secret_*", NULL};
    tg_sql_guard_config a = {"app.tenant_id", false, NULL, NULL, NULL};
    tg_sql_guard_config b = {"app.tenant_id", true, reserved, funcs, rels};
    strict = tg_sql_guard_new(&a);
    ddl = tg_sql_guard_new(&b);
    cache = tg_sql_cache_new(128);
    if (!strict || !ddl || !cache)
        abort();
}

static void check_verdict(const tg_sql_verdict *v, tg_sql_verdict_kind k)
{
    if (k != v->kind)
        abort();
    if (k != TG_SQL_ALLOW && k != TG_SQL_REWRITE && k != TG_SQL_DENY)
        abort();
    if (!memchr(v->reason, '\0', sizeof(v->reason)))
        abort();
    if ((k == TG_SQL_DENY) != (v->reason[0] != '\0'))
        abort();
}

static void try_rewrite(const tg_sql_guard *g, const char *sql, size_t len)
{
    char prefix[TG_SQL_CHANNEL_PREFIX_LEN + 1];
    tg_sql_channel_prefix("fuzz-tenant", prefix);
    char *out = NULL;
    size_t out_len = 0;
    tg_sql_verdict why;
    int rc = tg_sql_guard_rewrite(g, sql, len, prefix, &out, &out_len, &why);
    if (!memchr(why.reason, '\0', sizeof(why.reason)))
        abort();
    if (rc != 0) {
        if (out || out_len || rc > 0)
            abort();
        return;
    }
    if (!out || strlen(out) != out_len)
        abort();
    /*
     * What leaves must pass on its own, except that an already prefixed
     * channel may now be too long to be prefixed once more.
     */
    tg_sql_verdict v;
    if (tg_sql_guard_check(g, NULL, out, out_len, &v) == TG_SQL_DENY &&
        strcmp(v.reason, "channel name too long") != 0)
        abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!strict)
        setup();
    char *sql = malloc(size ? size : 1);
    if (!sql)
        return 0;
    memcpy(sql, data, size);

    tg_sql_verdict v1, v2, v3;
    tg_sql_verdict_kind k1 = tg_sql_guard_check(strict, NULL, sql, size, &v1);
    check_verdict(&v1, k1);
    tg_sql_verdict_kind k2 = tg_sql_guard_check(ddl, cache, sql, size, &v2);
    check_verdict(&v2, k2);
    tg_sql_verdict_kind k3 = tg_sql_guard_check(ddl, cache, sql, size, &v3); /* a hit */
    check_verdict(&v3, k3);
    if (v1.fingerprint != v2.fingerprint || v2.fingerprint != v3.fingerprint)
        abort();
    if (k2 != k3 || strcmp(v2.reason, v3.reason) != 0)
        abort();
    /* allow_ddl and the extras only ever change DDL and the extra names */
    if (k1 == TG_SQL_REWRITE)
        try_rewrite(strict, sql, size);
    if (k2 == TG_SQL_REWRITE)
        try_rewrite(ddl, sql, size);
    if (k1 == TG_SQL_DENY && (size & 3) == 0)
        try_rewrite(strict, sql, size); /* must fail, never crash */
    free(sql);
    return 0;
}
