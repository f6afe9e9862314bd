/*
 * libFuzzer target for the Cypher lexer, parser, printer and rewriter
 * (policy/cypher_*.c).
 *
 *   arbitrary bytes --as statement text--> tg_cypher_parse --> tg_cypher_print
 *        --> parse the printed text again --> print again
 *   the same text --> tg_cypher_rewrite in property, label and database mode
 *        (no cache, then through one long-lived cache)
 *        --> the output parsed, printed and verified
 *
 * Invariants: never crash or over-read (ASan/UBSan; the input is copied to
 * an exact-size buffer); a statement that parses prints to text that parses
 * and prints identically (a fixpoint); a rewrite is FORWARD only when its
 * text equals the input; an accepted rewrite's output parses, prints to
 * itself and passes tg_cypher_rewrite_verify (property mode: every node
 * pattern carries tenant_id: $__tenantgate_tenant, or is a bare reference
 * to a safe variable in CREATE/MERGE; label mode: the tenant's label); the
 * cache gives the same verdict, reason and text as no cache; a refusal has a
 * non-empty, NUL-terminated reason of printable ASCII.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/cypher_rewrite.h"

static tg_cypher_rewriter *rewriters[3];
static tg_cypher_cache *cache;
static const char *const tenant = "acme-1";

static void setup(void)
{
    const char *const procs[] = {"custom.*", NULL};
    const char *const funcs[] = {"my.fn", NULL};
    for (int m = 0; m < 3; m++) {
        tg_cypher_rewrite_config cfg = {0};
        cfg.isolation = (tg_cypher_isolation)m;
        cfg.allow_procedures = procs;
        cfg.allow_functions = funcs;
        rewriters[m] = tg_cypher_rewrite_new(&cfg);
        if (!rewriters[m])
            abort();
    }
    cache = tg_cypher_cache_new(4096, 0);
    if (!cache)
        abort();
}

/* Parses text and prints it into out; false when it does not parse. */
static bool parse_print(const char *text, size_t len, const tg_cypher_limits *lim,
                        tg_cypher_buf *out, tg_cypher_rewriter *verify_with, bool *verified)
{
    tg_arena a;
    tg_arena_init(&a, NULL, 0, 0);
    tg_cypher_node *q;
    tg_cypher_error err;
    int rc = tg_cypher_parse(&a, text, len, lim, &q, &err);
    if (rc == 0) {
        if (!memchr(err.reason, '\0', sizeof(err.reason)))
            abort();
        tg_cypher_buf_reset(out);
        if (tg_cypher_print(q, out) != 0)
            abort();
        if (verify_with) {
            char label[128];
            size_t ll = tg_cypher_tenant_label(verify_with, tenant, label, sizeof(label));
            *verified = tg_cypher_rewrite_verify(verify_with, q, label, ll);
        }
    }
    tg_arena_release(&a);
    return rc == 0;
}

static void check_reason(const char *r)
{
    size_t n = strnlen(r, TG_CYPHER_REASON_SIZE);
    if (n == 0 || n == TG_CYPHER_REASON_SIZE)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)r[i] < 0x20 || (unsigned char)r[i] > 0x7e)
            abort();
}

/* The output of an accepted rewrite parses, prints to itself and is scoped. */
static void check_output(tg_cypher_rewriter *rw, const tg_cypher_result *r)
{
    tg_cypher_limits lim = {.max_bytes = (uint32_t)r->text.len + 1,
                            .max_tokens = UINT32_MAX / 2,
                            .max_depth = 80,
                            .max_nodes = UINT32_MAX / 2,
                            .max_memory = (size_t)1 << 30};
    tg_cypher_buf again = {0};
    bool verified = false;
    if (!parse_print(r->text.s, r->text.len, &lim, &again, rw, &verified))
        abort();
    if (again.len != r->text.len || memcmp(again.s, r->text.s, again.len) != 0)
        abort();
    if (!verified)
        abort();
    tg_cypher_buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cache)
        setup();
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);

    /* parse -> print -> parse -> print is a fixpoint */
    tg_cypher_buf p1 = {0}, p2 = {0};
    if (parse_print(text, size, NULL, &p1, NULL, NULL)) {
        tg_cypher_limits lim = {.max_bytes = (uint32_t)p1.len + 1, .max_depth = 80};
        if (!parse_print(p1.s, p1.len, &lim, &p2, NULL, NULL))
            abort();
        if (p1.len != p2.len || memcmp(p1.s, p2.s, p1.len) != 0)
            abort();
    }
    tg_cypher_buf_free(&p1);
    tg_cypher_buf_free(&p2);

    for (int m = 0; m < 3; m++) {
        tg_cypher_result r, rc;
        tg_cypher_result_init(&r);
        tg_cypher_result_init(&rc);
        tg_cypher_verdict v = tg_cypher_rewrite(rewriters[m], NULL, tenant, text, size, &r);
        tg_cypher_verdict vc = tg_cypher_rewrite(rewriters[m], cache, tenant, text, size, &rc);
        if (v != r.kind || vc != rc.kind || v != vc || r.fingerprint != rc.fingerprint)
            abort();
        if (v == TG_CYPHER_DENY) {
            check_reason(r.reason);
            if (strcmp(r.reason, rc.reason) != 0)
                abort();
        } else {
            if (r.text.len != rc.text.len || memcmp(r.text.s, rc.text.s, r.text.len) != 0)
                abort();
            if ((v == TG_CYPHER_FORWARD) !=
                (r.text.len == size && memcmp(r.text.s, text, size) == 0))
                abort();
            check_output(rewriters[m], &r);
        }
        tg_cypher_result_free(&r);
        tg_cypher_result_free(&rc);
    }
    free(text);
    return 0;
}
