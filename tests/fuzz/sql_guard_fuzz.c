/*
 * libFuzzer target for the SQL guard (policy/sql_guard.c).
 *
 *   arbitrary bytes --as statement text--> tg_sql_guard_check
 *        (guard with allow_ddl off, guard with allow_ddl on; each with no cache, and
 *         through one long-lived cache shared by both, warmed first with a
 *         literal-varied twin of the input so that the normalized key is hit)
 *        --REWRITE--> tg_sql_guard_rewrite --> the text that would leave, checked again
 *
 * Invariants: never crash or over-read (ASan/UBSan; the input is copied to an
 * exact-size buffer); the verdict kind is valid and equals the return value;
 * the reason is NUL-terminated, empty unless DENY, non-empty for DENY; the
 * fingerprint is the same with and without the cache and on a cache hit; a
 * verdict through the warm shared cache (by exact text or by normalized key)
 * equals, kind and reason, the verdict with no cache, for every input; the
 * normalizer's form is never longer than the input and holds one marker per
 * literal it reports; a rewrite succeeds only on REWRITE
 * or ALLOW texts, yields NUL-terminated text of the reported length, and that
 * text is never denied by the guard (but for a channel name that cannot take
 * a second prefix).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/sql_guard.h"
#include "policy/sql_normalize.h"
#include "proxy/error.h"

static tg_sql_guard *strict, *ddl;
static tg_sql_cache *cache; /* one for the whole run, both guards */

static void report(void)
{
    tg_sql_cache_counters s;
    tg_sql_cache_stats(cache, &s);
    fprintf(stderr,
            "sql_guard_fuzz cache: %" PRIu64 " hits (%" PRIu64 " by normalized key), %" PRIu64
            " parses, %" PRIu64 " refused by the normalizer, %" PRIu64 " evictions\n",
            s.hits, s.norm_hits, s.misses, s.norm_refused, s.evictions);
}

static void setup(void)
{
    const char *const reserved[] = {"app.user_id", "myapp.*", NULL};
    const char *const funcs[] = {"my_fn", NULL};
    const char *const rels[] = {"secret_*", NULL};
    tg_sql_guard_config a = {"app.tenant_id", false, NULL, NULL, NULL};
    tg_sql_guard_config b = {"app.tenant_id", true, reserved, funcs, rels};
    strict = tg_sql_guard_new(&a);
    ddl = tg_sql_guard_new(&b);
    cache = tg_sql_cache_new(4096);
    if (!strict || !ddl || !cache)
        abort();
    atexit(report);
}

/*
 * A twin of sql (same length) with other literal values: digits rotated
 * everywhere, letters rotated between single quotes. Rough on purpose: where
 * it keeps the shape, the check of sql that follows is served by shape.
 */
static void make_twin(const char *sql, size_t len, char *out)
{
    bool in_quote = false;
    for (size_t i = 0; i < len; i++) {
        char c = sql[i];
        if (c == '\'')
            in_quote = !in_quote;
        else if (c >= '0' && c <= '9')
            c = (char)('0' + (c - '0' + 3) % 10);
        else if (in_quote && c >= 'a' && c <= 'z')
            c = (char)('a' + (c - 'a' + 7) % 26);
        out[i] = c;
    }
}

static void same_verdict(const tg_sql_verdict *a, const tg_sql_verdict *b)
{
    if (a->kind != b->kind || strcmp(a->reason, b->reason) != 0 || a->fingerprint != b->fingerprint)
        abort();
}

/* The normalizer's own invariants. */
static void check_normalize(const char *sql, size_t size)
{
    char *out = malloc(size ? size : 1);
    if (!out)
        return;
    size_t n = 0;
    int rc = tg_sql_normalize(sql, size, out, size, &n);
    if (rc >= 0) {
        size_t markers = 0;
        if (n > size)
            abort();
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)out[i];
            if (c == TG_SQL_NORM_ICONST || c == TG_SQL_NORM_FCONST || c == TG_SQL_NORM_SCONST)
                markers++;
            else if (c < 0x09 || c >= 0x7f || c == '\\')
                abort(); /* a byte the normalizer promised to refuse */
        }
        if (markers != (size_t)rc)
            abort();
    } else if (rc != TG_EINVAL) {
        abort();
    }
    free(out);
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

    check_normalize(sql, size);
    char *twin = malloc(size ? size : 1);
    if (!twin) {
        free(sql);
        return 0;
    }
    make_twin(sql, size, twin);

    tg_sql_verdict v0, v1, v2, v3, vs, vt;
    tg_sql_verdict_kind k1 = tg_sql_guard_check(strict, NULL, sql, size, &v1);
    check_verdict(&v1, k1);
    tg_sql_guard_check(strict, cache, twin, size, &vt); /* warms the shape */
    check_verdict(&vt, vt.kind);
    tg_sql_verdict_kind ks = tg_sql_guard_check(strict, cache, sql, size, &vs);
    check_verdict(&vs, ks);
    same_verdict(&v1, &vs); /* warm cache == no cache */

    tg_sql_verdict_kind k0 = tg_sql_guard_check(ddl, NULL, sql, size, &v0);
    check_verdict(&v0, k0);
    tg_sql_guard_check(ddl, cache, twin, size, &vt);
    check_verdict(&vt, vt.kind);
    tg_sql_verdict_kind k2 = tg_sql_guard_check(ddl, cache, sql, size, &v2);
    check_verdict(&v2, k2);
    same_verdict(&v0, &v2);
    tg_sql_verdict_kind k3 = tg_sql_guard_check(ddl, cache, sql, size, &v3); /* a hit */
    check_verdict(&v3, k3);
    same_verdict(&v2, &v3);
    /* audit fingerprints: only denials carry one, and it does not depend on the guard */
    if (k1 == TG_SQL_DENY && k2 == TG_SQL_DENY && v1.fingerprint != v2.fingerprint)
        abort();
    if ((k1 != TG_SQL_DENY && v1.fingerprint != 0) || (k2 != TG_SQL_DENY && v2.fingerprint != 0))
        abort();
    free(twin);
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
