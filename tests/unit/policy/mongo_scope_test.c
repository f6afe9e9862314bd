/*
 * Unit tests for policy/mongo_scope.c.
 *
 *   command as a driver sends it (JSON, ' for ") ──bson_new_from_json──> body (+ kind 1 docs)
 *        ──> tg_mongo_scope_command (field mode tenant_id, field mode meta.tenant,
 *            database mode {db}_{tenant}) ──> FORWARD | REWRITE | DENY
 *        ──> rewritten body compared, as canonical extended JSON, with the exact
 *            expected document; denials compared by reason
 *
 * Suites: field-mode rewrites of every command and stage that carries a filter,
 * documents or a pipeline; the attacker suite (operators, stages, commands,
 * writes of the tenant field, duplicates, $db tricks, nesting); database
 * mode (namespaces, reserved and ambiguous databases, replies); sessions
 * (lsid HMAC, endSessions, transactions); cursor facts; replies; config.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/mongo_scope.h"
#include "proxy/error.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* The tenant clause of filters: $eq for upserts and indexes, an anchored regex for exactness. */
#define TQ_(t)                                                                                     \
    "{'$eq': '" t "', '$regex': {'$regularExpression': {'pattern': '^" t "\\\\z', 'options': "     \
    "''}}}"
#define TQ TQ_("acme")
#define TQR "{'$regularExpression': {'pattern': '^acme\\\\z', 'options': ''}}"

static const uint8_t KEY[32] = "0123456789abcdef0123456789abcdef";

static tg_mongo_scope *field_scope, *dotted_scope, *db_scope, *db_drop_scope, *cs_scope;
static tg_mongo_tenant *F, *FB, *D, *DB, *DD, *M, *CS, *DCS;

static tg_mongo_scope *make_scope(tg_mongo_scope_isolation iso, const char *field, const char *tmpl,
                                  bool drop, bool cs)
{
    tg_mongo_scope_config cfg = {iso, field, tmpl, drop, cs};
    tg_mongo_scope *s = NULL;
    char err[256];
    if (tg_mongo_scope_new(&cfg, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "scope: %s\n", err);
        abort();
    }
    return s;
}

static int setup(void **state)
{
    (void)state;
    field_scope = make_scope(TG_MONGO_SCOPE_FIELD, "tenant_id", NULL, false, false);
    dotted_scope = make_scope(TG_MONGO_SCOPE_FIELD, "meta.tenant", NULL, false, false);
    db_scope = make_scope(TG_MONGO_SCOPE_DATABASE, "tenant_id", "{db}_{tenant}", false, false);
    db_drop_scope = make_scope(TG_MONGO_SCOPE_DATABASE, "tenant_id", "{db}_{tenant}", true, true);
    cs_scope = make_scope(TG_MONGO_SCOPE_FIELD, "tenant_id", NULL, false, true);
    F = tg_mongo_tenant_new(field_scope, "acme", KEY, sizeof(KEY));
    FB = tg_mongo_tenant_new(field_scope, "beta", KEY, sizeof(KEY));
    M = tg_mongo_tenant_new(dotted_scope, "acme", KEY, sizeof(KEY));
    D = tg_mongo_tenant_new(db_scope, "acme", KEY, sizeof(KEY));
    DB = tg_mongo_tenant_new(db_scope, "beta", KEY, sizeof(KEY));
    DD = tg_mongo_tenant_new(db_drop_scope, "acme", KEY, sizeof(KEY));
    CS = tg_mongo_tenant_new(cs_scope, "acme", KEY, sizeof(KEY));
    DCS = DD;
    return F && FB && M && D && DB && DD && CS ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tg_mongo_tenant *ts[] = {F, FB, M, D, DB, DD, CS};
    for (size_t i = 0; i < COUNT(ts); i++)
        tg_mongo_tenant_free(ts[i]);
    tg_mongo_scope_free(field_scope);
    tg_mongo_scope_free(dotted_scope);
    tg_mongo_scope_free(db_scope);
    tg_mongo_scope_free(db_drop_scope);
    tg_mongo_scope_free(cs_scope);
    return 0;
}

/* ---- helpers ----------------------------------------------------------------------------- */

/* A document from JSON where ' stands for " (tests read better). */
static bson_t *J(const char *json)
{
    char *s = strdup(json);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    bson_error_t err;
    bson_t *b = bson_new_from_json((const uint8_t *)s, -1, &err);
    if (!b) {
        fprintf(stderr, "bad test JSON: %s\n%s\n", err.message, s);
        abort();
    }
    free(s);
    return b;
}

static char *canon(const bson_t *b)
{
    return bson_as_canonical_extended_json(b, NULL);
}

static void assert_doc_eq(const uint8_t *data, size_t len, const char *expected_json)
{
    bson_t got;
    assert_true(bson_init_static(&got, data, len));
    assert_true(bson_validate(&got, BSON_VALIDATE_NONE, NULL));
    bson_t *want = J(expected_json);
    char *g = canon(&got), *w = canon(want);
    if (strcmp(g, w) != 0) {
        char *rg = bson_as_relaxed_extended_json(&got, NULL);
        fprintf(stderr, "got:  %s\nwant: %s\n", rg, w);
        bson_free(rg);
    }
    assert_string_equal(g, w);
    bson_free(g);
    bson_free(w);
    bson_destroy(want);
}

/* Scopes a JSON command with optional kind 1 sequences. */
typedef struct seqdef {
    const char *id;
    const char *docs_json; /* a JSON array of the documents */
} seqdef;

typedef struct scoped {
    tg_mongo_scoped r;
    uint8_t *seqbuf[TG_MONGO_SCOPE_MAX_SEQ + 1];
} scoped;

static tg_mongo_verdict run_seq(tg_mongo_tenant *t, const char *json, const seqdef *sd,
                                uint32_t nseq, scoped *out)
{
    bson_t *body = J(json);
    tg_mongo_scope_seq seqs[TG_MONGO_SCOPE_MAX_SEQ + 1];
    memset(out->seqbuf, 0, sizeof(out->seqbuf));
    for (uint32_t i = 0; i < nseq; i++) {
        bson_t *arr = J(sd[i].docs_json);
        bson_iter_t it;
        size_t len = 0;
        uint8_t *buf = malloc(arr->len + 16);
        assert_true(bson_iter_init(&it, arr));
        while (bson_iter_next(&it)) {
            uint32_t dl;
            const uint8_t *dd;
            bson_iter_document(&it, &dl, &dd);
            memcpy(buf + len, dd, dl);
            len += dl;
        }
        out->seqbuf[i] = buf;
        seqs[i].id = tg_slice_str(sd[i].id);
        seqs[i].docs = (tg_slice){buf, len};
        bson_destroy(arr);
    }
    tg_mongo_scoped_init(&out->r);
    tg_mongo_verdict v = tg_mongo_scope_command(t, body, seqs, nseq, &out->r);
    bson_destroy(body);
    return v;
}

static void done(scoped *s)
{
    tg_mongo_scoped_clear(&s->r);
    for (size_t i = 0; i < COUNT(s->seqbuf); i++)
        free(s->seqbuf[i]);
}

/* The command is rewritten to exactly `want`. */
static void rewrites(tg_mongo_tenant *t, const char *in, const char *want)
{
    scoped s;
    tg_mongo_verdict v = run_seq(t, in, NULL, 0, &s);
    if (v != TG_MONGO_REWRITE)
        fprintf(stderr, "not rewritten (%d: %s %s): %s\n", v, s.r.reason ? s.r.reason : "",
                s.r.what, in);
    assert_int_equal(v, TG_MONGO_REWRITE);
    assert_doc_eq(s.r.body, s.r.body_len, want);
    done(&s);
}

/* The command is forwarded unchanged. */
static void forwards(tg_mongo_tenant *t, const char *in)
{
    scoped s;
    tg_mongo_verdict v = run_seq(t, in, NULL, 0, &s);
    if (v != TG_MONGO_FORWARD)
        fprintf(stderr, "not forwarded (%d: %s %s): %s\n", v, s.r.reason ? s.r.reason : "",
                s.r.what, in);
    assert_int_equal(v, TG_MONGO_FORWARD);
    assert_null(s.r.body);
    done(&s);
}

/* The command is denied with a reason starting with `reason`. */
static void denies(tg_mongo_tenant *t, const char *in, const char *reason)
{
    scoped s;
    tg_mongo_verdict v = run_seq(t, in, NULL, 0, &s);
    if (v != TG_MONGO_DENY || strncmp(s.r.reason, reason, strlen(reason)) != 0)
        fprintf(stderr, "expected denial '%s', got %d (%s): %s\n", reason, v,
                s.r.reason ? s.r.reason : "", in);
    assert_int_equal(v, TG_MONGO_DENY);
    assert_non_null(s.r.reason);
    assert_true(strncmp(s.r.reason, reason, strlen(reason)) == 0);
    assert_null(s.r.body);
    done(&s);
}

/* ---- field mode: filters ------------------------------------------------------------------ */

static void test_find(void **state)
{
    (void)state;
    rewrites(F, "{'find': 'orders', 'filter': {'status': 'A'}, 'limit': 10, '$db': 'app'}",
             "{'find': 'orders', 'filter': {'$and': [{'tenant_id': " TQ "}, {'status': 'A'}]},"
             " 'limit': 10, '$db': 'app'}");
    /* no filter: the tenant's own clause is added */
    rewrites(F, "{'find': 'orders', '$db': 'app'}",
             "{'find': 'orders', '$db': 'app', 'filter': {'tenant_id': " TQ "}}");
    rewrites(F, "{'find': 'orders', 'filter': {}, '$db': 'app'}",
             "{'find': 'orders', 'filter': {'tenant_id': " TQ "}, '$db': 'app'}");
    /* sort, projection, hint, let pass once checked */
    rewrites(F,
             "{'find': 'o', 'filter': {'a': {'$gt': 1}}, 'sort': {'a': -1}, 'projection': {'a': 1,"
             " 'b': {'$toUpper': '$b'}, 'c': {'$elemMatch': {'x': 1}}, 'd': {'$slice': 2}},"
             " 'hint': 'a_1', 'let': {'x': 1}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'a': {'$gt': 1}}]},"
             " 'sort': {'a': -1}, 'projection': {'a': 1, 'b': {'$toUpper': '$b'}, 'c':"
             " {'$elemMatch': {'x': 1}}, 'd': {'$slice': 2}}, 'hint': 'a_1', 'let': {'x': 1},"
             " '$db': 'app'}");
    /* other tenants get their own clause */
    rewrites(FB, "{'find': 'orders', 'filter': {'a': 1}, '$db': 'app'}",
             "{'find': 'orders', 'filter': {'$and': [{'tenant_id': " TQ_("beta") "}, {'a': 1}]},"
                                                                                 " '$db': 'app'}");
}

static void test_count_distinct_fam(void **state)
{
    (void)state;
    rewrites(F, "{'count': 'o', 'query': {'a': 1}, '$db': 'app'}",
             "{'count': 'o', 'query': {'$and': [{'tenant_id': " TQ "}, {'a': 1}]}, '$db': 'app'}");
    rewrites(F, "{'count': 'o', '$db': 'app'}",
             "{'count': 'o', '$db': 'app', 'query': {'tenant_id': " TQ "}}");
    rewrites(F, "{'distinct': 'o', 'key': 'a', '$db': 'app'}",
             "{'distinct': 'o', 'key': 'a', '$db': 'app', 'query': {'tenant_id': " TQ "}}");
    rewrites(F, "{'distinct': 'o', 'key': 'a', 'query': {'b': 2}, '$db': 'app'}",
             "{'distinct': 'o', 'key': 'a', 'query': {'$and': [{'tenant_id': " TQ "}, {'b': 2}]},"
             " '$db': 'app'}");
    rewrites(F,
             "{'findAndModify': 'o', 'query': {'a': 1}, 'update': {'$inc': {'n': 1}}, 'new': true,"
             " 'upsert': true, '$db': 'app'}",
             "{'findAndModify': 'o', 'query': {'$and': [{'tenant_id': " TQ "}, {'a': 1}]},"
             " 'update': {'$inc': {'n': 1}}, 'new': true, 'upsert': true, '$db': 'app'}");
    rewrites(F, "{'findandmodify': 'o', 'remove': true, '$db': 'app'}",
             "{'findandmodify': 'o', 'remove': true, '$db': 'app', 'query': {'tenant_id': " TQ
             "}}");
    /* findAndModify replacement: stamped */
    rewrites(F, "{'findAndModify': 'o', 'query': {'a': 1}, 'update': {'a': 2}, '$db': 'app'}",
             "{'findAndModify': 'o', 'query': {'$and': [{'tenant_id': " TQ "}, {'a': 1}]},"
             " 'update': {'a': 2, 'tenant_id': 'acme'}, '$db': 'app'}");
}

static void test_update_delete(void **state)
{
    (void)state;
    /* upsert: q carries the tenant, so the inserted document does too */
    rewrites(F,
             "{'update': 'o', 'updates': [{'q': {'sku': 'x'}, 'u': {'$set': {'qty': 1}},"
             " 'upsert': true}, {'q': {}, 'u': {'$inc': {'n': 1}}, 'multi': true}],"
             " 'ordered': true, '$db': 'app'}",
             "{'update': 'o', 'updates': [{'q': {'$and': [{'tenant_id': " TQ "}, {'sku': 'x'}]},"
             " 'u': {'$set': {'qty': 1}}, 'upsert': true}, {'q': {'tenant_id': " TQ "}, 'u':"
             " {'$inc': {'n': 1}}, 'multi': true}], 'ordered': true, '$db': 'app'}");
    rewrites(F, "{'delete': 'o', 'deletes': [{'q': {'a': 1}, 'limit': 1}], '$db': 'app'}",
             "{'delete': 'o', 'deletes': [{'q': {'$and': [{'tenant_id': " TQ "}, {'a': 1}]},"
             " 'limit': 1}], '$db': 'app'}");
    /* replacement documents are stamped */
    rewrites(F,
             "{'update': 'o', 'updates': [{'q': {'_id': 1}, 'u': {'a': 1}, 'upsert': true}],"
             " '$db': 'app'}",
             "{'update': 'o', 'updates': [{'q': {'$and': [{'tenant_id': " TQ "}, {'_id': 1}]},"
             " 'u': {'a': 1, 'tenant_id': 'acme'}, 'upsert': true}], '$db': 'app'}");
    /* pipeline updates end with the tenant's $set */
    rewrites(F,
             "{'update': 'o', 'updates': [{'q': {'_id': 1}, 'u': [{'$set': {'a': '$b'}},"
             " {'$replaceWith': {'x': 1}}]}], '$db': 'app'}",
             "{'update': 'o', 'updates': [{'q': {'$and': [{'tenant_id': " TQ "}, {'_id': 1}]},"
             " 'u': [{'$set': {'a': '$b'}}, {'$replaceWith': {'x': 1}}, {'$set': {'tenant_id':"
             " 'acme'}}]}], '$db': 'app'}");
    /* setting the tenant's own value is a harmless no-op */
    rewrites(F,
             "{'update': 'o', 'updates': [{'q': {}, 'u': {'$setOnInsert': {'tenant_id': 'acme'}},"
             " 'upsert': true}], '$db': 'app'}",
             "{'update': 'o', 'updates': [{'q': {'tenant_id': " TQ "}, 'u': {'$setOnInsert':"
             " {'tenant_id': 'acme'}}, 'upsert': true}], '$db': 'app'}");
    /* arrayFilters are filters; positional paths elsewhere are fine */
    rewrites(F,
             "{'update': 'o', 'updates': [{'q': {}, 'u': {'$set': {'items.$[i].n': 1}},"
             " 'arrayFilters': [{'i.k': {'$gt': 2}}]}], '$db': 'app'}",
             "{'update': 'o', 'updates': [{'q': {'tenant_id': " TQ "}, 'u': {'$set':"
             " {'items.$[i].n': 1}}, 'arrayFilters': [{'i.k': {'$gt': 2}}]}], '$db': 'app'}");
}

static void test_insert(void **state)
{
    (void)state;
    rewrites(F,
             "{'insert': 'o', 'documents': [{'_id': 1, 'a': 1}, {'_id': 2,"
             " 'tenant_id': 'acme'}], '$db': 'app'}",
             "{'insert': 'o', 'documents': [{'_id': 1, 'a': 1, 'tenant_id': 'acme'}, {'_id': 2,"
             " 'tenant_id': 'acme'}], '$db': 'app'}");
    denies(F, "{'insert': 'o', 'documents': [{'_id': 1, 'tenant_id': 'beta'}], '$db': 'app'}",
           "document carries another tenant's value");
    denies(F, "{'insert': 'o', 'documents': [{'_id': 1, 'tenant_id': 'acmeX'}], '$db': 'app'}",
           "document carries another tenant's value");
    denies(F, "{'insert': 'o', 'documents': [{'tenant_id': ['acme', 'beta']}], '$db': 'app'}",
           "the tenant field must be a string");
    denies(F, "{'insert': 'o', 'documents': [{'tenant_id': {'$ne': 'x'}}], '$db': 'app'}",
           "the tenant field must be a string");
    denies(F, "{'insert': 'o', 'documents': [{'tenant_id': null}], '$db': 'app'}",
           "the tenant field must be a string");
    denies(F,
           "{'insert': 'o', 'documents': [{'tenant_id': 'acme', 'tenant_id': 'beta'}],"
           " '$db': 'app'}",
           "duplicate tenant field");
    denies(F, "{'insert': 'o', 'documents': [1], '$db': 'app'}", "must be an array of objects");
    denies(F, "{'insert': 'o', 'documents': {'a': 1}, '$db': 'app'}",
           "must be an array of objects");
    /* a NUL inside the value is not the tenant */
    {
        bson_t *b = BCON_NEW("insert", "o", "documents", "[", "{", "tenant_id", BCON_UTF8("acme"),
                             "}", "]", "$db", "app");
        bson_t docs, d;
        bson_t *b2 = bson_new();
        BSON_APPEND_UTF8(b2, "insert", "o");
        BSON_APPEND_ARRAY_BEGIN(b2, "documents", &docs);
        BSON_APPEND_DOCUMENT_BEGIN(&docs, "0", &d);
        bson_append_utf8(&d, "tenant_id", -1, "acme\0x", 6);
        bson_append_document_end(&docs, &d);
        bson_append_array_end(b2, &docs);
        BSON_APPEND_UTF8(b2, "$db", "app");
        tg_mongo_scoped r;
        tg_mongo_scoped_init(&r);
        assert_int_equal(tg_mongo_scope_command(F, b, NULL, 0, &r), TG_MONGO_FORWARD);
        assert_int_equal(tg_mongo_scope_command(F, b2, NULL, 0, &r), TG_MONGO_DENY);
        tg_mongo_scoped_clear(&r);
        bson_destroy(b);
        bson_destroy(b2);
    }
}

static void test_insert_sequence(void **state)
{
    (void)state;
    scoped s;
    seqdef sd = {"documents", "[{'_id': 1}, {'_id': 2, 'tenant_id': 'acme'}, {'_id': 3, 'x':"
                              " {'tenant_id': 'beta'}}]"};
    assert_int_equal(run_seq(F, "{'insert': 'o', 'ordered': false, '$db': 'app'}", &sd, 1, &s),
                     TG_MONGO_REWRITE);
    assert_doc_eq(s.r.body, s.r.body_len, "{'insert': 'o', 'ordered': false, '$db': 'app'}");
    assert_int_equal(s.r.nseq, 1);
    assert_string_equal(s.r.seq[0].id, "documents");
    assert_int_equal(s.r.seq[0].count, 3);
    const char *want[] = {"{'_id': 1, 'tenant_id': 'acme'}", "{'_id': 2, 'tenant_id': 'acme'}",
                          "{'_id': 3, 'x': {'tenant_id': 'beta'}, 'tenant_id': 'acme'}"};
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        uint32_t dl;
        memcpy(&dl, s.r.seq[0].docs + off, 4);
        assert_true(off + dl <= s.r.seq[0].len);
        assert_doc_eq(s.r.seq[0].docs + off, dl, want[i]);
        off += dl;
    }
    assert_int_equal(off, s.r.seq[0].len);
    done(&s);

    seqdef bad = {"documents", "[{'_id': 1}, {'_id': 2, 'tenant_id': 'beta'}]"};
    assert_int_equal(run_seq(F, "{'insert': 'o', '$db': 'app'}", &bad, 1, &s), TG_MONGO_DENY);
    assert_string_equal(s.r.reason, "document carries another tenant's value");
    done(&s);

    /* updates and deletes as sequences */
    seqdef up = {"updates", "[{'q': {'a': 1}, 'u': {'$set': {'b': 1}}}]"};
    assert_int_equal(run_seq(F, "{'update': 'o', '$db': 'app'}", &up, 1, &s), TG_MONGO_REWRITE);
    assert_doc_eq(s.r.seq[0].docs, s.r.seq[0].len,
                  "{'q': {'$and': [{'tenant_id': " TQ "}, {'a': 1}]}, 'u': {'$set': {'b': 1}}}");
    done(&s);
    seqdef del = {"deletes", "[{'q': {'$where': 'sleep(100)'}, 'limit': 0}]"};
    assert_int_equal(run_seq(F, "{'delete': 'o', '$db': 'app'}", &del, 1, &s), TG_MONGO_DENY);
    assert_string_equal(s.r.reason, "$where is not allowed");
    done(&s);

    /* the same field in the body and as a sequence, twice as a sequence, unknown ids */
    seqdef two[2] = {{"documents", "[{'a': 1}]"}, {"documents", "[{'a': 2}]"}};
    assert_int_equal(
        run_seq(F, "{'insert': 'o', 'documents': [{'a': 3}], '$db': 'app'}", two, 1, &s),
        TG_MONGO_DENY);
    assert_string_equal(s.r.reason, "duplicate field");
    done(&s);
    assert_int_equal(run_seq(F, "{'insert': 'o', '$db': 'app'}", two, 2, &s), TG_MONGO_DENY);
    assert_string_equal(s.r.reason, "duplicate field");
    done(&s);
    seqdef odd = {"updates", "[{'a': 1}]"};
    assert_int_equal(run_seq(F, "{'insert': 'o', '$db': 'app'}", &odd, 1, &s), TG_MONGO_DENY);
    assert_string_equal(s.r.reason, "unknown document sequence");
    done(&s);

    /* database mode: sequences are checked and left as they are */
    seqdef dbdocs = {"documents", "[{'_id': 1, 'tenant_id': 'whatever'}]"};
    assert_int_equal(run_seq(D, "{'insert': 'o', '$db': 'app'}", &dbdocs, 1, &s), TG_MONGO_REWRITE);
    assert_doc_eq(s.r.body, s.r.body_len, "{'insert': 'o', '$db': 'app_acme'}");
    assert_int_equal(s.r.nseq, 1);
    assert_null(s.r.seq[0].docs);
    done(&s);
}

/* ---- field mode: pipelines ---------------------------------------------------------------- */

static void test_aggregate(void **state)
{
    (void)state;
    /* a leading $match takes the tenant clause (so $text stays first) */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$match': {'$text': {'$search': 'x'}}}, {'$group':"
             " {'_id': '$k', 'n': {'$sum': 1}}}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'$and': [{'tenant_id': " TQ "},"
             " {'$text': {'$search': 'x'}}]}}, {'$group': {'_id': '$k', 'n': {'$sum': 1}}}],"
             " 'cursor': {}, '$db': 'app'}");
    /* otherwise a $match of its own */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$sort': {'a': 1}}, {'$limit': 5}], 'cursor': {},"
             " '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$sort': {'a':"
             " 1}}, {'$limit': 5}], 'cursor': {}, '$db': 'app'}");
    rewrites(F, "{'aggregate': 'o', 'pipeline': [], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}}], 'cursor': {},"
             " '$db': 'app'}");
    /* $geoNear must stay first: its query is scoped */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$geoNear': {'near': [0, 0], 'distanceField':"
             " 'd'}}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$geoNear': {'near': [0, 0], 'distanceField': 'd',"
             " 'query': {'tenant_id': " TQ "}}}], 'cursor': {}, '$db': 'app'}");
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$geoNear': {'near': [0, 0], 'distanceField': 'd',"
             " 'query': {'a': 1}}}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$geoNear': {'near': [0, 0], 'distanceField': 'd',"
             " 'query': {'$and': [{'tenant_id': " TQ "}, {'a': 1}]}}}], 'cursor': {}, '$db':"
             " 'app'}");
    /* a typical 5-stage pipeline */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$match': {'status': 'A'}}, {'$project': {'k': 1,"
             " 'v': {'$multiply': ['$p', '$q']}}}, {'$group': {'_id': '$k', 't': {'$sum': '$v'}}},"
             " {'$sort': {'t': -1}}, {'$limit': 10}], 'cursor': {'batchSize': 100}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'$and': [{'tenant_id': " TQ "},"
             " {'status': 'A'}]}}, {'$project': {'k': 1, 'v': {'$multiply': ['$p', '$q']}}},"
             " {'$group': {'_id': '$k', 't': {'$sum': '$v'}}}, {'$sort': {'t': -1}}, {'$limit':"
             " 10}], 'cursor': {'batchSize': 100}, '$db': 'app'}");
    /* $setWindowFields, $bucket, $unwind, $sortByCount, $redact with system variables */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$setWindowFields': {'partitionBy': '$s',"
             " 'sortBy': {'d': 1}, 'output': {'c': {'$sum': '$q', 'window': {'documents':"
             " ['unbounded', 'current']}}, 'r': {'$rank': {}}}}}, {'$bucket': {'groupBy': '$p',"
             " 'boundaries': [0, 10], 'default': 'o', 'output': {'n': {'$sum': 1}}}}, {'$redact':"
             " {'$cond': [{'$eq': ['$l', 1]}, '$$DESCEND', '$$PRUNE']}}], 'cursor': {}, '$db':"
             " 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}},"
             " {'$setWindowFields': {'partitionBy': '$s', 'sortBy': {'d': 1}, 'output': {'c':"
             " {'$sum': '$q', 'window': {'documents': ['unbounded', 'current']}}, 'r': {'$rank':"
             " {}}}}}, {'$bucket': {'groupBy': '$p', 'boundaries': [0, 10], 'default': 'o',"
             " 'output': {'n': {'$sum': 1}}}}, {'$redact': {'$cond': [{'$eq': ['$l', 1]},"
             " '$$DESCEND', '$$PRUNE']}}], 'cursor': {}, '$db': 'app'}");
}

static void test_lookup(void **state)
{
    (void)state;
    /* localField/foreignField: the foreign side gets the tenant's pipeline (MongoDB >= 5.0) */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': 'c', 'localField': 'cid',"
             " 'foreignField': '_id', 'as': 'cust'}}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$lookup':"
             " {'from': 'c', 'localField': 'cid', 'foreignField': '_id', 'as': 'cust', 'pipeline':"
             " [{'$match': {'tenant_id': " TQ "}}]}}], 'cursor': {}, '$db': 'app'}");
    /* pipeline form: the sub-pipeline's own leading $match takes the clause */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': 'c', 'let': {'x': '$cid'},"
             " 'pipeline': [{'$match': {'$expr': {'$eq': ['$_id', '$$x']}}}], 'as': 'cust'}}],"
             " 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$lookup':"
             " {'from': 'c', 'let': {'x': '$cid'}, 'pipeline': [{'$match': {'$and': [{'tenant_id':"
             " " TQ "}, {'$expr': {'$eq': ['$_id', '$$x']}}]}}], 'as': 'cust'}}], 'cursor': {},"
             " '$db': 'app'}");
    /* nested lookups are scoped at every level */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': 'c', 'pipeline': [{'$lookup':"
             " {'from': 'd', 'pipeline': [], 'as': 'y'}}], 'as': 'x'}}], 'cursor': {}, '$db':"
             " 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$lookup':"
             " {'from': 'c', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$lookup': {'from':"
             " 'd', 'pipeline': [{'$match': {'tenant_id': " TQ "}}], 'as': 'y'}}], 'as': 'x'}}],"
             " 'cursor': {}, '$db': 'app'}");
    /* $lookup of literal $documents: no collection, nothing to scope */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$lookup': {'pipeline': [{'$documents': [{'a':"
             " 1}]}], 'as': 'x'}}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$lookup':"
             " {'pipeline': [{'$documents': [{'a': 1}]}], 'as': 'x'}}], 'cursor': {}, '$db':"
             " 'app'}");
    /* the tenant field dropped or replaced before a $lookup changes nothing: constant clause */
    rewrites(F,
             "{'aggregate': 'o', 'pipeline': [{'$replaceRoot': {'newRoot': {'tenant_id': 'beta'}}},"
             " {'$lookup': {'from': 'c', 'localField': 'tenant_id', 'foreignField': 'tenant_id',"
             " 'as': 'x'}}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$replaceRoot':"
             " {'newRoot': {'tenant_id': 'beta'}}}, {'$lookup': {'from': 'c', 'localField':"
             " 'tenant_id', 'foreignField': 'tenant_id', 'as': 'x', 'pipeline': [{'$match':"
             " {'tenant_id': " TQ "}}]}}], 'cursor': {}, '$db': 'app'}");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': {'db': 'other', 'coll': 'c'},"
           " 'localField': 'a', 'foreignField': 'b', 'as': 'x'}}], 'cursor': {}, '$db': 'app'}",
           "$lookup from another database is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': 'c', 'as': 'x', 'pipeline': [],"
           " 'pipeline': [{'$match': {}}]}}], 'cursor': {}, '$db': 'app'}",
           "duplicate field");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': 'c', 'as': 'x', 'pipeline':"
           " [{'$sort': {'a': 1}}]}}], 'cursor': {}, '$db': 'app', 'x': 1}",
           "unknown field");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': 'system.profile', 'as': 'x',"
           " 'pipeline': []}}], 'cursor': {}, '$db': 'app'}",
           "system collections are not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$lookup': {'as': 'x', 'pipeline': [{'$match':"
           " {}}]}}], 'cursor': {}, '$db': 'app'}",
           "a pipeline without a collection must start with $documents");
}

static void test_graph_union_facet(void **state)
{
    (void)state;
    rewrites(F,
             "{'aggregate': 'e', 'pipeline': [{'$graphLookup': {'from': 'e', 'startWith': '$boss',"
             " 'connectFromField': 'boss', 'connectToField': 'name', 'as': 'chain'}}], 'cursor':"
             " {}, '$db': 'app'}",
             "{'aggregate': 'e', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$graphLookup':"
             " {'from': 'e', 'startWith': '$boss', 'connectFromField': 'boss', 'connectToField':"
             " 'name', 'as': 'chain', 'restrictSearchWithMatch': {'tenant_id': " TQ "}}}],"
             " 'cursor': {}, '$db': 'app'}");
    rewrites(F,
             "{'aggregate': 'e', 'pipeline': [{'$graphLookup': {'from': 'e', 'startWith': '$boss',"
             " 'connectFromField': 'boss', 'connectToField': 'name', 'as': 'chain',"
             " 'restrictSearchWithMatch': {'tenant_id': {'$ne': 'acme'}}}}], 'cursor': {}, '$db':"
             " 'app'}",
             "{'aggregate': 'e', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$graphLookup':"
             " {'from': 'e', 'startWith': '$boss', 'connectFromField': 'boss', 'connectToField':"
             " 'name', 'as': 'chain', 'restrictSearchWithMatch': {'$and': [{'tenant_id': " TQ "},"
             " {'tenant_id': {'$ne': 'acme'}}]}}}], 'cursor': {}, '$db': 'app'}");
    rewrites(F, "{'aggregate': 'a', 'pipeline': [{'$unionWith': 'b'}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'a', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$unionWith':"
             " {'coll': 'b', 'pipeline': [{'$match': {'tenant_id': " TQ "}}]}}], 'cursor': {},"
             " '$db': 'app'}");
    rewrites(
        F,
        "{'aggregate': 'a', 'pipeline': [{'$unionWith': {'coll': 'b', 'pipeline': [{'$project':"
        " {'x': 1}}]}}], 'cursor': {}, '$db': 'app'}",
        "{'aggregate': 'a', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$unionWith':"
        " {'coll': 'b', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$project': {'x':"
        " 1}}]}}], 'cursor': {}, '$db': 'app'}");
    rewrites(F,
             "{'aggregate': 'a', 'pipeline': [{'$facet': {'n': [{'$count': 'n'}], 'j': [{'$lookup':"
             " {'from': 'b', 'localField': 'x', 'foreignField': 'y', 'as': 'z'}}]}}], 'cursor': {},"
             " '$db': 'app'}",
             "{'aggregate': 'a', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$facet': {'n':"
             " [{'$count': 'n'}], 'j': [{'$lookup': {'from': 'b', 'localField': 'x',"
             " 'foreignField': 'y', 'as': 'z', 'pipeline': [{'$match': {'tenant_id': " TQ
             "}}]}}]}}],"
             " 'cursor': {}, '$db': 'app'}");
    denies(F,
           "{'aggregate': 'a', 'pipeline': [{'$facet': {'n': [{'$out': 'x'}]}}], 'cursor': {},"
           " '$db': 'app'}",
           "aggregation stage is not allowed in field isolation");
    denies(F,
           "{'aggregate': 'a', 'pipeline': [{'$facet': {'n': [{'$geoNear': {}}]}}],"
           " 'cursor': {}, '$db': 'app'}",
           "stage is not allowed here");
}

static void test_out_merge_documents(void **state)
{
    (void)state;
    denies(F, "{'aggregate': 'a', 'pipeline': [{'$out': 'b'}], 'cursor': {}, '$db': 'app'}",
           "aggregation stage is not allowed in field isolation");
    denies(F, "{'aggregate': 'a', 'pipeline': [{'$merge': 'b'}], 'cursor': {}, '$db': 'app'}",
           "$merge must match on the tenant field");
    denies(F,
           "{'aggregate': 'a', 'pipeline': [{'$merge': {'into': 'b', 'on': '_id'}}], 'cursor': {},"
           " '$db': 'app'}",
           "$merge must match on the tenant field");
    denies(F,
           "{'aggregate': 'a', 'pipeline': [{'$merge': {'into': {'db': 'other', 'coll': 'b'},"
           " 'on': ['_id', 'tenant_id']}}], 'cursor': {}, '$db': 'app'}",
           "writing into another database is not allowed");
    denies(F,
           "{'aggregate': 'a', 'pipeline': [{'$merge': {'into': 'b', 'on': ['_id', 'tenant_id']}},"
           " {'$match': {}}], 'cursor': {}, '$db': 'app'}",
           "stage must be the last of the top-level pipeline");
    /* every document written carries the tenant; matching only reaches the tenant's */
    rewrites(F,
             "{'aggregate': 'a', 'pipeline': [{'$set': {'tenant_id': 'beta'}}, {'$merge': {'into':"
             " {'db': 'app', 'coll': 'b'}, 'on': ['_id', 'tenant_id'], 'whenMatched': [{'$set':"
             " {'n': {'$add': ['$n', '$$new.n']}}}]}}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'a', 'pipeline': [{'$match': {'tenant_id': " TQ "}}, {'$set':"
             " {'tenant_id': 'beta'}}, {'$set': {'tenant_id': 'acme'}}, {'$merge': {'into': {'db':"
             " 'app', 'coll': 'b'}, 'on': ['_id', 'tenant_id'], 'whenMatched': [{'$set': {'n':"
             " {'$add': ['$n', '$$new.n']}}}, {'$set': {'tenant_id': 'acme'}}]}}], 'cursor': {},"
             " '$db': 'app'}");
    denies(F,
           "{'aggregate': 'a', 'pipeline': [{'$merge': {'into': 'b', 'on': 'tenant_id',"
           " 'whenMatched': [{'$unset': 'tenant_id'}]}}], 'cursor': {}, '$db': 'app'}",
           "the tenant field cannot be changed");
    /* $documents: literal documents, nothing read; a $merge after it is stamped */
    rewrites(F,
             "{'aggregate': 1, 'pipeline': [{'$documents': [{'_id': 1, 'tenant_id': 'beta'}]},"
             " {'$merge': {'into': 'b', 'on': 'tenant_id'}}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 1, 'pipeline': [{'$documents': [{'_id': 1, 'tenant_id': 'beta'}]},"
             " {'$set': {'tenant_id': 'acme'}}, {'$merge': {'into': 'b', 'on': 'tenant_id'}}],"
             " 'cursor': {}, '$db': 'app'}");
    denies(F, "{'aggregate': 1, 'pipeline': [{'$match': {}}], 'cursor': {}, '$db': 'app'}",
           "a pipeline without a collection must start with $documents");
    denies(F, "{'aggregate': 1, 'pipeline': [], 'cursor': {}, '$db': 'app'}",
           "a pipeline without a collection must start with $documents");
    denies(F,
           "{'aggregate': 'a', 'pipeline': [{'$documents': [{'a': 1}]}], 'cursor': {}, '$db':"
           " 'app'}",
           "$documents needs a pipeline without a collection");
    denies(F, "{'aggregate': 2, 'pipeline': [], 'cursor': {}, '$db': 'app'}",
           "aggregate needs a collection name or 1");
    denies(F, "{'aggregate': 'a', 'cursor': {}, '$db': 'app'}", "aggregate needs a pipeline");
}

static void test_change_streams(void **state)
{
    (void)state;
    denies(F, "{'aggregate': 'a', 'pipeline': [{'$changeStream': {}}], 'cursor': {}, '$db': 'app'}",
           "change streams are not allowed");
    scoped s;
    assert_int_equal(run_seq(CS,
                             "{'aggregate': 'a', 'pipeline': [{'$changeStream': {'fullDocument':"
                             " 'updateLookup'}}, {'$project': {'x': 0}}], 'cursor': {}, '$db':"
                             " 'app'}",
                             NULL, 0, &s),
                     TG_MONGO_REWRITE);
    assert_doc_eq(s.r.body, s.r.body_len,
                  "{'aggregate': 'a', 'pipeline': [{'$changeStream': {'fullDocument':"
                  " 'updateLookup'}}, {'$match': {'$or': [{'fullDocument.tenant_id': " TQ "},"
                  " {'fullDocumentBeforeChange.tenant_id': " TQ "}]}}, {'$project': {'x': 0}}],"
                  " 'cursor': {}, '$db': 'app'}");
    assert_int_equal(s.r.reply.kind, TG_MONGO_REPLY_CHANGE_STREAM);
    done(&s);
    denies(CS,
           "{'aggregate': 1, 'pipeline': [{'$changeStream': {'allChangesForCluster': true}}],"
           " 'cursor': {}, '$db': 'admin'}",
           "database is reserved");
    denies(CS,
           "{'aggregate': 1, 'pipeline': [{'$changeStream': {'allChangesForCluster': true}}],"
           " 'cursor': {}, '$db': 'app'}",
           "change stream option is not allowed");
    denies(CS,
           "{'aggregate': 'a', 'pipeline': [{'$match': {}}, {'$changeStream': {}}], 'cursor': {},"
           " '$db': 'app'}",
           "stage must be the first of its pipeline");
}

static void test_explain(void **state)
{
    (void)state;
    rewrites(F,
             "{'explain': {'find': 'o', 'filter': {'a': 1}}, 'verbosity': 'queryPlanner', '$db':"
             " 'app'}",
             "{'explain': {'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'a': 1}]}},"
             " 'verbosity': 'queryPlanner', '$db': 'app'}");
    rewrites(F,
             "{'explain': {'aggregate': 'o', 'pipeline': [], 'cursor': {}}, 'verbosity':"
             " 'queryPlanner', '$db': 'app'}",
             "{'explain': {'aggregate': 'o', 'pipeline': [{'$match': {'tenant_id': " TQ "}}],"
             " 'cursor': {}}, 'verbosity': 'queryPlanner', '$db': 'app'}");
    /* execution statistics count every tenant's documents */
    denies(F, "{'explain': {'find': 'o'}, '$db': 'app'}",
           "explain in field isolation needs verbosity queryPlanner");
    denies(F, "{'explain': {'find': 'o'}, 'verbosity': 'executionStats', '$db': 'app'}",
           "explain in field isolation needs verbosity queryPlanner");
    denies(F,
           "{'explain': {'find': 'o', '$db': 'admin'}, 'verbosity': 'queryPlanner', '$db': 'app'}",
           "field is not allowed in an explained command");
    denies(F, "{'explain': {'explain': {'find': 'o'}}, 'verbosity': 'queryPlanner', '$db': 'app'}",
           "command cannot be explained");
    denies(F, "{'explain': {'insert': 'o'}, 'verbosity': 'queryPlanner', '$db': 'app'}",
           "command cannot be explained");
    denies(F, "{'explain': {'find': {'$where': 1}}, 'verbosity': 'queryPlanner', '$db': 'app'}",
           "invalid collection name");
    /* database mode: any verbosity, inner namespaces mapped through the outer $db */
    rewrites(D, "{'explain': {'count': 'o'}, '$db': 'app'}",
             "{'explain': {'count': 'o'}, '$db': 'app_acme'}");
}

static void test_passthrough_commands(void **state)
{
    (void)state;
    forwards(F, "{'ping': 1, '$db': 'admin'}");
    forwards(F, "{'ping': 1, '$db': 'app'}");
    forwards(F, "{'buildInfo': 1, '$db': 'admin'}");
    forwards(F, "{'hello': 1, 'helloOk': true, 'client': {'driver': {'name': 'x'}}, '$db':"
                " 'admin'}");
    forwards(F, "{'isMaster': 1, '$db': 'admin'}");
    /* authentication belongs to the session, never to the backend connection */
    denies(F,
           "{'hello': 1, 'speculativeAuthenticate': {'saslStart': 1, 'mechanism': 'PLAIN'},"
           " '$db': 'admin'}",
           "field is not allowed");
    denies(F, "{'isMaster': 1, 'saslSupportedMechs': 'admin.svc', '$db': 'admin'}",
           "field is not allowed");
    forwards(D, "{'ping': 1, '$db': 'app'}");
    forwards(F, "{'listCollections': 1, 'filter': {'name': 'o'}, 'nameOnly': true, '$db': 'app'}");
    forwards(F, "{'listIndexes': 'o', '$db': 'app'}");
    forwards(F, "{'createIndexes': 'o', 'indexes': [{'key': {'tenant_id': 1, 'email': 1}, 'name':"
                " 'e', 'unique': true}, {'key': {'a': 1}, 'name': 'a', 'partialFilterExpression':"
                " {'a': {'$gt': 1}}}], '$db': 'app'}");
    forwards(F, "{'create': 'newcoll', 'validator': {'$jsonSchema': {'required': ['tenant_id']}},"
                " '$db': 'app'}");
    denies(F, "{'listCollections': 1, 'filter': {'$where': 'true'}, '$db': 'app'}",
           "$where is not allowed");
    denies(F,
           "{'createIndexes': 'o', 'indexes': [{'key': {'email': 1}, 'name': 'e', 'unique':"
           " true}], '$db': 'app'}",
           "a unique index must include the tenant field");
    denies(F,
           "{'createIndexes': 'o', 'indexes': [{'key': {'at': 1}, 'name': 't',"
           " 'expireAfterSeconds': 0}], '$db': 'app'}",
           "TTL indexes are not allowed in field isolation");
    denies(F,
           "{'createIndexes': 'o', 'indexes': [{'key': {'a': 1}, 'name': 'a',"
           " 'partialFilterExpression': {'$where': '1'}}], '$db': 'app'}",
           "$where is not allowed");
    denies(F,
           "{'createIndexes': 'o', 'indexes': [{'key': {'a': 1}, 'name': 'a', 'ns': 'x.y'}],"
           " '$db': 'app'}",
           "index option is not allowed");
    denies(F,
           "{'createIndexes': 'o', 'indexes': [{'key': {'tenant_id': 1, 'e': 1}, 'name': 'e',"
           " 'unique': true, 'collation': {'locale': 'en', 'strength': 2}}], '$db': 'app'}",
           "a unique index needs the simple collation in field isolation");
    forwards(F,
             "{'createIndexes': 'o', 'indexes': [{'key': {'tenant_id': 1, 'e': 1}, 'name': 'e',"
             " 'unique': true, 'collation': {'locale': 'simple'}}, {'key': {'n': 1}, 'name': 'n',"
             " 'collation': {'locale': 'en', 'strength': 2}}], '$db': 'app'}");
    denies(F, "{'create': 'c', 'collation': {'locale': 'en', 'strength': 1}, '$db': 'app'}",
           "field is not allowed in field isolation");
    denies(F, "{'create': 'v', 'viewOn': 'o', 'pipeline': [], '$db': 'app'}",
           "field is not allowed in field isolation");
    denies(F, "{'create': 'c', 'capped': true, 'size': 1000, '$db': 'app'}",
           "field is not allowed in field isolation");
}

/* ---- the attacker suite ------------------------------------------------------------------- */

static void test_attack_filters(void **state)
{
    (void)state;
    /* the AND still applies whatever the client writes about the tenant field */
    rewrites(F,
             "{'find': 'o', 'filter': {'$or': [{'tenant_id': 'beta'}, {'tenant_id': {'$exists':"
             " true}}]}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'$or': [{'tenant_id':"
             " 'beta'}, {'tenant_id': {'$exists': true}}]}]}, '$db': 'app'}");
    /* a collation cannot widen the clause: the regex is compared byte for byte */
    rewrites(F,
             "{'find': 'o', 'filter': {'a': 1}, 'collation': {'locale': 'en', 'strength': 1,"
             " 'alternate': 'shifted', 'numericOrdering': true}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'a': 1}]}, 'collation':"
             " {'locale': 'en', 'strength': 1, 'alternate': 'shifted', 'numericOrdering': true},"
             " '$db': 'app'}");
    /* the client's own equality on the tenant is kept; only the regex is added */
    rewrites(F, "{'find': 'o', 'filter': {'tenant_id': 'acme', 'a': 1}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQR "}, {'tenant_id': 'acme', 'a':"
             " 1}]}, '$db': 'app'}");
    rewrites(F, "{'find': 'o', 'filter': {'tenant_id': 'ACME'}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'tenant_id': 'ACME'}]},"
             " '$db': 'app'}");
    rewrites(F, "{'find': 'o', 'filter': {'tenant_id': {'$ne': 'acme'}}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'tenant_id': {'$ne':"
             " 'acme'}}]}, '$db': 'app'}");
    rewrites(F, "{'find': 'o', 'filter': {'$expr': {'$ne': ['$tenant_id', 'acme']}}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'$expr': {'$ne':"
             " ['$tenant_id', 'acme']}}]}, '$db': 'app'}");
    rewrites(F, "{'find': 'o', 'filter': {'$nor': [{'tenant_id': 'acme'}]}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'$nor': [{'tenant_id':"
             " 'acme'}]}]}, '$db': 'app'}");
    /* server-side code, everywhere it can hide */
    denies(F, "{'find': 'o', 'filter': {'$where': 'this.a == 1'}, '$db': 'app'}",
           "$where is not allowed");
    denies(F, "{'find': 'o', 'filter': {'$and': [{'a': 1}, {'$where': 'true'}]}, '$db': 'app'}",
           "$where is not allowed");
    denies(F, "{'find': 'o', 'filter': {'a': {'$elemMatch': {'$where': 'true'}}}, '$db': 'app'}",
           "$where is not allowed");
    denies(F,
           "{'find': 'o', 'filter': {'a': {'$elemMatch': {'b': 1, '$where': 'x'}}}, '$db':"
           " 'app'}",
           "$where is not allowed");
    denies(F, "{'find': 'o', 'filter': {'a': {'$not': {'$where': 'x'}}}, '$db': 'app'}",
           "$where is not allowed");
    denies(F,
           "{'find': 'o', 'filter': {'a': {'$all': [{'$elemMatch': {'$where': 'x'}}]}}, '$db':"
           " 'app'}",
           "$where is not allowed");
    denies(F,
           "{'find': 'o', 'filter': {'$expr': {'$function': {'body': 'function(){return true}',"
           " 'args': [], 'lang': 'js'}}}, '$db': 'app'}",
           "expression operator is not allowed");
    denies(F,
           "{'find': 'o', 'filter': {'$expr': {'$and': [true, {'$function': {}}]}}, '$db':"
           " 'app'}",
           "expression operator is not allowed");
    denies(F, "{'find': 'o', 'projection': {'x': {'$function': {}}}, '$db': 'app'}",
           "expression operator is not allowed");
    denies(F, "{'find': 'o', 'sort': {'x': {'$function': {}}}, '$db': 'app'}",
           "expression operator is not allowed");
    denies(F, "{'find': 'o', 'let': {'x': {'$function': {}}}, '$db': 'app'}",
           "expression operator is not allowed");
    denies(F, "{'find': 'o', 'let': {'ROOT': 1}, '$db': 'app'}",
           "let variable names must start with a lowercase letter");
    denies(F,
           "{'find': 'o', 'filter': {'$expr': {'$in': ['admin', '$$USER_ROLES.role']}}, '$db':"
           " 'app'}",
           "system variable is not allowed");
    /* $literal is data, never evaluated */
    rewrites(F,
             "{'find': 'o', 'filter': {'$expr': {'$eq': ['$a', {'$literal': {'$function':"
             " 1}}]}}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'$expr': {'$eq': ['$a',"
             " {'$literal': {'$function': 1}}]}}]}, '$db': 'app'}");
    /* equality with embedded documents and DBRefs is data */
    rewrites(F,
             "{'find': 'o', 'filter': {'a': {'b': 1, '$where': 'x'}, 'r': {'$ref': 'c', '$id':"
             " 1}}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'tenant_id': " TQ "}, {'a': {'b': 1, '$where':"
             " 'x'}, 'r': {'$ref': 'c', '$id': 1}}]}, '$db': 'app'}");
    /* unknown operators, malformed filters */
    denies(F, "{'find': 'o', 'filter': {'$alwaysTrue': 1}, '$db': 'app'}",
           "query operator is not allowed");
    denies(F, "{'find': 'o', 'filter': {'a': {'$eq': 1, 'b': 2}}, '$db': 'app'}",
           "query operator is not allowed");
    denies(F, "{'find': 'o', 'filter': {'a': {'$foo': 1}}, '$db': 'app'}",
           "query operator is not allowed");
    denies(F, "{'find': 'o', 'filter': 'tenant_id', '$db': 'app'}", "a filter must be an object");
    denies(F, "{'find': 'o', 'filter': [{'a': 1}], '$db': 'app'}", "a filter must be an object");
    denies(F, "{'find': 'o', 'filter': {'$or': []}, '$db': 'app'}",
           "a logical operator needs an array of filters");
    denies(F, "{'find': 'o', 'filter': {'$or': {'a': 1}}, '$db': 'app'}",
           "a logical operator needs an array of filters");
    denies(F, "{'find': 'o', 'filter': {'$text': {'$search': 'x', '$where': 'y'}}, '$db': 'app'}",
           "unknown $text option");
    denies(F, "{'find': 'o', 'filter': {'$expr': {'$eq': [1, 1], '$gt': [1, 0]}}, '$db': 'app'}",
           "an expression operator must be alone in its object");
    denies(F, "{'count': 'o', 'query': {'$where': 'x'}, '$db': 'app'}", "$where is not allowed");
    denies(F, "{'distinct': 'o', 'key': 'a', 'query': {'$where': 'x'}, '$db': 'app'}",
           "$where is not allowed");
}

static void test_attack_stages(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "$currentOp",
        "$collStats",
        "$indexStats",
        "$planCacheStats",
        "$listSessions",
        "$listLocalSessions",
        "$search",
        "$searchMeta",
        "$out",
        "$listSearchIndexes",
        "$queryStats",
        "$changeStreamSplitLargeEvent",
        "$shardedDataDistribution",
        "$vectorSearch",
        "$internalInhibitOptimization",
    };
    for (size_t i = 0; i < COUNT(refused); i++) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "{'aggregate': 'o', 'pipeline': [{'%s': {}}], 'cursor': {}, '$db': 'app'}",
                 refused[i]);
        denies(F, cmd, "aggregation stage is not allowed");
    }
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$group': {'_id': 1, 'x': {'$accumulator': {'init':"
           " 'function(){}'}}}}], 'cursor': {}, '$db': 'app'}",
           "accumulator is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$addFields': {'x': {'$function': {'body': 'f'}}}}],"
           " 'cursor': {}, '$db': 'app'}",
           "expression operator is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$match': {'$where': 'true'}}], 'cursor': {}, '$db':"
           " 'app'}",
           "$where is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$project': {'a': 1}}, {'$match': {'$where': 'x'}}],"
           " 'cursor': {}, '$db': 'app'}",
           "$where is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$bucketAuto': {'groupBy': '$a', 'buckets': 2,"
           " 'output': {'f': {'$accumulator': {}}}}}], 'cursor': {}, '$db': 'app'}",
           "accumulator is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$setWindowFields': {'output': {'f': {'$function':"
           " {}}}}}], 'cursor': {}, '$db': 'app'}",
           "accumulator is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$match': {}, '$unionWith': 'b'}], 'cursor': {},"
           " '$db': 'app'}",
           "a pipeline stage must be an object with one field");
    denies(F, "{'aggregate': 'o', 'pipeline': [{}], 'cursor': {}, '$db': 'app'}",
           "a pipeline stage must be an object with one field");
    denies(F, "{'aggregate': 'o', 'pipeline': {'$match': {}}, 'cursor': {}, '$db': 'app'}",
           "a pipeline must be an array");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$geoNear': {}}, {'$geoNear': {}}], 'cursor': {},"
           " '$db': 'app'}",
           "stage must be the first of its pipeline");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$unwind': '$$SEARCH_META'}], 'cursor': {},"
           " '$db': 'app'}",
           "system variable is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$unionWith': {'coll': 'b', 'pipeline':"
           " [{'$merge': {'into': 'c', 'on': 'tenant_id'}}]}}], 'cursor': {}, '$db': 'app'}",
           "stage must be the last of the top-level pipeline");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$unionWith': {'coll': 'b', 'coll': 'c'}}],"
           " 'cursor': {}, '$db': 'app'}",
           "duplicate field");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$graphLookup': {'from': {'db': 'x', 'coll':"
           " 'y'}}}], 'cursor': {}, '$db': 'app'}",
           "$graphLookup from another database is not allowed");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$graphLookup': {'from': 'e',"
           " 'restrictSearchWithMatch': {}, 'restrictSearchWithMatch': {}}}], 'cursor': {},"
           " '$db': 'app'}",
           "duplicate field");
    denies(F,
           "{'aggregate': 'o', 'pipeline': [{'$graphLookup': {'from': 'e',"
           " 'restrictSearchWithMatch': {'$where': 'x'}}}], 'cursor': {}, '$db': 'app'}",
           "$where is not allowed");
}

static void test_attack_writes(void **state)
{
    (void)state;
    static const char *const tenant_writes[] = {
        "{'$set': {'tenant_id': 'beta'}}",
        "{'$set': {'tenant_id.x': 1}}",
        "{'$set': {'tenant_id.': 1}}",
        "{'$setOnInsert': {'tenant_id': 'beta'}}",
        "{'$unset': {'tenant_id': ''}}",
        "{'$rename': {'tenant_id': 'x'}}",
        "{'$rename': {'x': 'tenant_id'}}",
        "{'$rename': {'x': 'tenant_id.y'}}",
        "{'$inc': {'tenant_id': 1}}",
        "{'$push': {'tenant_id': 'x'}}",
        "{'$addToSet': {'tenant_id': 'x'}}",
        "{'$currentDate': {'tenant_id': true}}",
        "{'$min': {'tenant_id': 'a'}}",
        "{'$max': {'tenant_id': 'z'}}",
        "{'$mul': {'tenant_id': 1}}",
        "{'$bit': {'tenant_id': {'and': 1}}}",
        "{'$pop': {'tenant_id': 1}}",
        "{'$pullAll': {'tenant_id': ['a']}}",
        "{'$pull': {'tenant_id': 'a'}}",
        "{'$set': {'a': 1, 'tenant_id': 'acme', 'tenant_id': 'beta'}}",
    };
    for (size_t i = 0; i < COUNT(tenant_writes); i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "{'update': 'o', 'updates': [{'q': {}, 'u': %s, 'upsert': true}], '$db': 'app'}",
                 tenant_writes[i]);
        denies(F, cmd, "the tenant field cannot be changed");
        snprintf(cmd, sizeof(cmd), "{'findAndModify': 'o', 'update': %s, '$db': 'app'}",
                 tenant_writes[i]);
        denies(F, cmd, "the tenant field cannot be changed");
    }
    /* replacements carrying another value, pipeline stages touching the field */
    denies(F,
           "{'update': 'o', 'updates': [{'q': {}, 'u': {'a': 1, 'tenant_id': 'beta'},"
           " 'upsert': true}], '$db': 'app'}",
           "document carries another tenant's value");
    denies(F,
           "{'findAndModify': 'o', 'update': {'tenant_id': 'beta'}, 'upsert': true, '$db':"
           " 'app'}",
           "document carries another tenant's value");
    static const char *const pipeline_writes[] = {
        "[{'$set': {'tenant_id': 'beta'}}]",
        "[{'$addFields': {'tenant_id': '$other'}}]",
        "[{'$set': {'tenant_id': {'$literal': 'acme'}}}]",
        "[{'$unset': 'tenant_id'}]",
        "[{'$unset': ['a', 'tenant_id']}]",
        "[{'$project': {'tenant_id': 0}}]",
        "[{'$project': {'tenant_id': 'beta'}}]",
    };
    for (size_t i = 0; i < COUNT(pipeline_writes); i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "{'update': 'o', 'updates': [{'q': {}, 'u': %s}], '$db': 'app'}",
                 pipeline_writes[i]);
        denies(F, cmd, "the tenant field cannot be changed");
    }
    denies(F,
           "{'update': 'o', 'updates': [{'q': {}, 'u': [{'$lookup': {'from': 'x', 'as': 'y',"
           " 'pipeline': []}}]}], '$db': 'app'}",
           "stage is not allowed in an update pipeline");
    denies(F,
           "{'update': 'o', 'updates': [{'q': {}, 'u': {'$set': {'a': 1}, 'b': 2}}], '$db':"
           " 'app'}",
           "an update mixes operators and fields");
    denies(F,
           "{'update': 'o', 'updates': [{'q': {}, 'u': {'b': 2, '$set': {'a': 1}}}], '$db':"
           " 'app'}",
           "an update mixes operators and fields");
    denies(F, "{'update': 'o', 'updates': [{'q': {}, 'u': {'$where': {'a': 1}}}], '$db': 'app'}",
           "update operator is not allowed");
    denies(F, "{'update': 'o', 'updates': [{'q': {}, 'u': 'x'}], '$db': 'app'}",
           "an update must be an object or a pipeline");
    denies(F,
           "{'update': 'o', 'updates': [{'q': {}, 'u': {'$pull': {'a': {'$where': 'x'}}}}],"
           " '$db': 'app'}",
           "$where is not allowed");
    denies(F,
           "{'update': 'o', 'updates': [{'q': {}, 'u': [{'$set': {'a': '$$x'}}], 'c': {'x':"
           " {'$function': {}}}}], '$db': 'app'}",
           "expression operator is not allowed");
    rewrites(F,
             "{'update': 'o', 'updates': [{'q': {}, 'u': [{'$set': {'a': '$$x'}}], 'c': {'x':"
             " 1}}], '$db': 'app'}",
             "{'update': 'o', 'updates': [{'q': {'tenant_id': " TQ "}, 'u': [{'$set': {'a':"
             " '$$x'}}, {'$set': {'tenant_id': 'acme'}}], 'c': {'x': 1}}], '$db': 'app'}");
    denies(F,
           "{'update': 'o', 'updates': [{'q': {}, 'u': {'$set': {'a': 1}}, 'arrayFilters':"
           " [{'$where': 'x'}]}], '$db': 'app'}",
           "$where is not allowed");
    /* duplicates inside statements */
    denies(F,
           "{'update': 'o', 'updates': [{'q': {'a': 1}, 'q': {}, 'u': {'$set': {'a': 1}}}],"
           " '$db': 'app'}",
           "duplicate field");
    denies(F, "{'delete': 'o', 'deletes': [{'q': {}, 'q': {'a': 1}, 'limit': 0}], '$db': 'app'}",
           "duplicate field");
    denies(F, "{'update': 'o', 'updates': [{'u': {'$set': {'a': 1}}}], '$db': 'app'}",
           "an update statement needs q and u");
    denies(F, "{'delete': 'o', 'deletes': [{'limit': 0}], '$db': 'app'}",
           "a delete statement needs q");
    denies(F,
           "{'update': 'o', 'updates': [{'q': {}, 'u': {}, 'upsertSupplied': true}], '$db':"
           " 'app'}",
           "unknown field");
    denies(F, "{'insert': 'o', 'documents': [{}], 'bypassDocumentValidation': true, '$db': 'app'}",
           "field is only allowed as false");
}

static void test_attack_commands(void **state)
{
    (void)state;
    static const char *const field_refused[] = {
        "{'mapReduce': 'o', 'map': 'function(){}', 'reduce': 'function(){}', 'out': {'inline':"
        " 1}, '$db': 'app'}",
        "{'listDatabases': 1, '$db': 'admin'}",
        "{'dbStats': 1, '$db': 'app'}",
        "{'collStats': 'o', '$db': 'app'}",
        "{'drop': 'o', '$db': 'app'}",
        "{'dropDatabase': 1, '$db': 'app'}",
        "{'dropIndexes': 'o', 'index': '*', '$db': 'app'}",
        "{'renameCollection': 'app.a', 'to': 'app.b', '$db': 'admin'}",
    };
    for (size_t i = 0; i < COUNT(field_refused); i++)
        denies(F, field_refused[i], "command is not allowed");
    static const char *const unknown[] = {
        "{'serverStatus': 1, '$db': 'admin'}",
        "{'currentOp': 1, '$db': 'admin'}",
        "{'killOp': 1, 'op': 12, '$db': 'admin'}",
        "{'getLog': 'global', '$db': 'admin'}",
        "{'eval': 'db.o.find()', '$db': 'app'}",
        "{'saslStart': 1, '$db': '$external'}",
        "{'connectionStatus': 1, '$db': 'admin'}",
        "{'killAllSessions': [], '$db': 'admin'}",
        "{'refreshSessions': [], '$db': 'admin'}",
        "{'shutdown': 1, '$db': 'admin'}",
        "{'setParameter': 1, '$db': 'admin'}",
        "{'FIND': 'o', '$db': 'app'}",
        "{'$db': 'app', 'find': 'o'}",
        "{'applyOps': [], '$db': 'admin'}",
        "{'getMore': 1, 'collection': 'o', '$db': 'app', 'term': 1}",
    };
    for (size_t i = 0; i < COUNT(unknown); i++) {
        scoped s;
        assert_int_equal(run_seq(F, unknown[i], NULL, 0, &s), TG_MONGO_DENY);
        assert_true(!strcmp(s.r.reason, "command is not allowed") ||
                    !strcmp(s.r.reason, "unknown field"));
        done(&s);
    }
    scoped s;
    assert_int_equal(run_seq(F, "{'serverStatus': 1, '$db': 'admin'}", NULL, 0, &s), TG_MONGO_DENY);
    assert_string_equal(s.r.what, "serverStatus");
    assert_int_equal(s.r.cmd, TG_MONGO_CMD_UNKNOWN);
    done(&s);
    /* an empty body */
    bson_t empty = BSON_INITIALIZER;
    tg_mongo_scoped r;
    tg_mongo_scoped_init(&r);
    assert_int_equal(tg_mongo_scope_command(F, &empty, NULL, 0, &r), TG_MONGO_DENY);
    tg_mongo_scoped_clear(&r);
}

static void test_attack_duplicates(void **state)
{
    (void)state;
    denies(F, "{'find': 'o', 'filter': {'a': 1}, 'filter': {}, '$db': 'app'}", "duplicate field");
    denies(F, "{'find': 'o', 'filter': {}, '$db': 'app', '$db': 'admin'}", "duplicate field");
    denies(F, "{'find': 'o', 'find': 'p', '$db': 'app'}", "duplicate field");
    denies(F, "{'aggregate': 'o', 'pipeline': [], 'pipeline': [], 'cursor': {}, '$db': 'app'}",
           "duplicate field");
    denies(F, "{'count': 'o', 'query': {}, 'query': {'a': 1}, '$db': 'app'}", "duplicate field");
    denies(F,
           "{'find': 'o', 'lsid': {'id': {'$binary': {'base64': 'AAAAAAAAAAAAAAAAAAAAAA==',"
           " 'subType': '04'}}}, 'lsid': {'id': {'$binary': {'base64':"
           " 'AAAAAAAAAAAAAAAAAAAAAQ==', 'subType': '04'}}}, '$db': 'app'}",
           "duplicate field");
    denies(F,
           "{'findAndModify': 'o', 'query': {}, 'update': {'$set': {'a': 1}}, 'update': {'a':"
           " 1}, '$db': 'app'}",
           "duplicate field");
    denies(F, "{'find': 'o', 'unknownOption': 1, '$db': 'app'}", "unknown field");
    denies(F, "{'find': 'o', '$audit': {}, '$db': 'app'}", "unknown field");
}

/* Bytes libbson's bson_validate accepts but that are not BSON: refused. */
static void test_malformed_bson(void **state)
{
    (void)state;
    /* {find: "o", filter: [array of 1 element whose final byte is 'x'], $db: "app"} */
    bson_t *b = BCON_NEW("find", "o", "filter", "[", BCON_INT32(1), "]", "$db", "app");
    uint8_t *raw = malloc(b->len);
    memcpy(raw, bson_get_data(b), b->len);
    size_t arr = 4 + 1 + 5 + 4 + 2 + 1 + 7; /* the array value: after "find" and "filter" keys */
    uint32_t alen;
    memcpy(&alen, raw + arr, 4);
    raw[arr + alen - 1] = 'x';
    bson_t bad;
    assert_true(bson_init_static(&bad, raw, b->len));
    assert_true(bson_validate(&bad, BSON_VALIDATE_NONE, NULL)); /* libbson's gap */
    assert_false(tg_mongo_bson_valid(raw, b->len));
    tg_mongo_scoped r;
    tg_mongo_scoped_init(&r);
    assert_int_equal(tg_mongo_scope_command(F, &bad, NULL, 0, &r), TG_MONGO_DENY);
    assert_string_equal(r.reason, "malformed BSON");
    /* the same inside a kind 1 document, and as a reply */
    bson_t *ins = BCON_NEW("insert", "o", "$db", "app");
    tg_mongo_scope_seq seq = {tg_slice_str("documents"), {raw, b->len}};
    assert_int_equal(tg_mongo_scope_command(F, ins, &seq, 1, &r), TG_MONGO_DENY);
    assert_string_equal(r.reason, "malformed document sequence");
    seq.docs.len = b->len - 1; /* a truncated sequence */
    memcpy(raw, bson_get_data(b), b->len);
    assert_int_equal(tg_mongo_scope_command(F, ins, &seq, 1, &r), TG_MONGO_DENY);
    assert_string_equal(r.reason, "malformed document sequence");
    raw[arr + alen - 1] = 'x';
    tg_mongo_reply_map m = {TG_MONGO_REPLY_CURSOR, "app", "app_acme"};
    uint8_t *out = NULL;
    uint32_t len = 0;
    assert_int_equal(tg_mongo_scope_reply(D, &m, &bad, &out, &len), TG_EPROTO);
    assert_null(out);
    tg_mongo_scoped_clear(&r);
    bson_destroy(ins);
    bson_destroy(b);
    free(raw);
    assert_false(tg_mongo_bson_valid(NULL, 0));
    uint8_t tiny[5] = {5, 0, 0, 0, 0};
    assert_true(tg_mongo_bson_valid(tiny, 5));
    tiny[4] = 1;
    assert_false(tg_mongo_bson_valid(tiny, 5));
}

/* Values libbson would copy cut short at a NUL (policy/mongo_scope.c, NUL_FREE_ON_COPY). */
static void test_nul_in_copied_text(void **state)
{
    (void)state;
    /* {cursor: {nt: DBPointer("a\0b", oid)}}: the shape the fuzzer found in a reply */
    static const uint8_t dbp[] = {42, 0, 0,    0,   3,   'c', 'u', 'r', 's', 'o', 'r', 0,  29,  0,
                                  0,  0, 0x0c, 'n', 't', 0,   4,   0,   0,   0,   'a', 0,  'b', 0,
                                  1,  2, 3,    4,   5,   6,   7,   8,   9,   10,  11,  12, 0,   0};
    uint8_t raw[sizeof(dbp)];
    memcpy(raw, dbp, sizeof(raw));
    assert_false(tg_mongo_bson_valid(raw, sizeof(raw)));
    raw[25] = 'x'; /* "axb": copied whole */
    assert_true(tg_mongo_bson_valid(raw, sizeof(raw)));
    memcpy(raw, dbp, sizeof(raw));
    bson_t reply;
    assert_true(bson_init_static(&reply, raw, sizeof(raw)));
    tg_mongo_reply_map m = {TG_MONGO_REPLY_CURSOR, "app", "app_acme"};
    uint8_t *out = NULL;
    uint32_t len = 0;
    assert_int_equal(tg_mongo_scope_reply(D, &m, &reply, &out, &len), TG_EPROTO);
    assert_null(out);

    /* {find: "o", filter: {$where: Code("1\0")}, $db: "app"}: code and code with scope */
    bson_t *b = bson_new();
    bson_t f;
    bson_append_utf8(b, "find", -1, "o", -1);
    bson_append_document_begin(b, "filter", -1, &f);
    bson_append_code(&f, "$where", -1, "1x");
    bson_append_document_end(b, &f);
    bson_append_utf8(b, "$db", -1, "app", -1);
    uint8_t *cmd = malloc(b->len);
    memcpy(cmd, bson_get_data(b), b->len);
    uint8_t *x = memchr(cmd, 'x', b->len);
    assert_non_null(x);
    *x = 0;
    assert_false(tg_mongo_bson_valid(cmd, b->len));
    bson_t bad;
    assert_true(bson_init_static(&bad, cmd, b->len));
    tg_mongo_scoped r;
    tg_mongo_scoped_init(&r);
    assert_int_equal(tg_mongo_scope_command(F, &bad, NULL, 0, &r), TG_MONGO_DENY);
    assert_string_equal(r.reason, "malformed BSON");
    tg_mongo_scoped_clear(&r);
    free(cmd);
    bson_destroy(b);

    bson_t *scope = BCON_NEW("a", BCON_INT32(1));
    b = bson_new();
    bson_append_code_with_scope(b, "c", -1, "1x", scope);
    cmd = malloc(b->len);
    memcpy(cmd, bson_get_data(b), b->len);
    assert_true(tg_mongo_bson_valid(cmd, b->len));
    x = memchr(cmd, 'x', b->len);
    *x = 0;
    assert_false(tg_mongo_bson_valid(cmd, b->len));
    free(cmd);
    bson_destroy(b);
    bson_destroy(scope);
}

/*
 * A kind 1 sequence whose second document starts at every offset from 42 to
 * 142 of the output: each document comes back whole and stamped. (libbson
 * 1.23's bson_writer wrote a byte past its buffer for a document starting 5
 * bytes before the buffer's end, 59 or 123 here: emit_doc_seq no longer uses
 * it. Valgrind sees that write; ASan cannot, libbson is not instrumented.)
 */
static void test_insert_sequence_every_offset(void **state)
{
    (void)state;
    static const char xs[] = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    for (int first = 0; first <= 100; first++) {
        char json[512];
        /* stamped, {_id: int32, s: string of n, tenant_id: "acme"} is 42 + n bytes */
        snprintf(json, sizeof(json),
                 "[{'_id': 0, 's': '%.*s'}, {'_id': 1, 's': ''}, "
                 "{'_id': 2, 's': 'xyz'}]",
                 first, xs);
        seqdef sd = {"documents", json};
        scoped s;
        assert_int_equal(run_seq(F, "{'insert': 'o', '$db': 'app'}", &sd, 1, &s), TG_MONGO_REWRITE);
        assert_int_equal(s.r.seq[0].count, 3);
        size_t off = 0;
        for (int i = 0; i < 3; i++) {
            uint32_t dl, sl;
            bson_t d;
            bson_iter_t it;
            assert_true(off + 4 <= s.r.seq[0].len);
            memcpy(&dl, s.r.seq[0].docs + off, 4);
            assert_int_equal(dl, 42 + (i == 0 ? first : i == 1 ? 0 : 3));
            assert_true(off + dl <= s.r.seq[0].len);
            assert_true(bson_init_static(&d, s.r.seq[0].docs + off, dl));
            assert_true(bson_validate(&d, BSON_VALIDATE_NONE, NULL));
            assert_true(bson_iter_init_find(&it, &d, "_id") && bson_iter_int32(&it) == i);
            assert_true(bson_iter_init_find(&it, &d, "s"));
            bson_iter_utf8(&it, &sl);
            assert_int_equal(sl, i == 0 ? first : i == 1 ? 0 : 3);
            assert_true(bson_iter_init_find(&it, &d, "tenant_id"));
            assert_string_equal(bson_iter_utf8(&it, NULL), "acme");
            off += dl;
        }
        assert_int_equal(off, s.r.seq[0].len);
        done(&s);
    }
}

static void test_attack_db(void **state)
{
    (void)state;
    static const char *const reserved[] = {"admin", "config", "local", "Admin", "CONFIG"};
    for (size_t i = 0; i < COUNT(reserved); i++) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "{'find': 'o', '$db': '%s'}", reserved[i]);
        denies(F, cmd, "database is reserved");
        denies(D, cmd, "database is reserved");
        snprintf(cmd, sizeof(cmd), "{'insert': 'o', 'documents': [], '$db': '%s'}", reserved[i]);
        denies(F, cmd, "database is reserved");
    }
    static const char *const illegal[] = {"app.x",  "a$b", "$external", "a b", "a/b", "a\\\\b", "",
                                          "a\\\"b", "a*b", "a:b",       "a|b", "a?b", "a<b"};
    for (size_t i = 0; i < COUNT(illegal); i++) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "{'find': 'o', '$db': '%s'}", illegal[i]);
        denies(F, cmd, "illegal database name");
        denies(D, cmd, "illegal database name");
    }
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "{'find': 'o', '$db': '%064d'}", 0);
    denies(F, cmd, "illegal database name");
    denies(F, "{'find': 'o', '$db': 1}", "illegal database name");
    denies(F, "{'find': 'o'}", "$db is missing");
    /* NUL inside $db */
    bson_t *b = bson_new();
    BSON_APPEND_UTF8(b, "find", "o");
    bson_append_utf8(b, "$db", 3, "app\0admin", 9);
    tg_mongo_scoped r;
    tg_mongo_scoped_init(&r);
    assert_int_equal(tg_mongo_scope_command(F, b, NULL, 0, &r), TG_MONGO_DENY);
    assert_string_equal(r.reason, "illegal database name");
    tg_mongo_scoped_clear(&r);
    bson_destroy(b);
    /* collections */
    denies(F, "{'find': 'system.profile', '$db': 'app'}", "system collections are not allowed");
    denies(F, "{'find': 'system.js', '$db': 'app'}", "system collections are not allowed");
    denies(F, "{'find': 'a$b', '$db': 'app'}", "invalid collection name");
    denies(F, "{'find': '', '$db': 'app'}", "invalid collection name");
    denies(F,
           "{'find': {'$binary': {'base64': 'AAAAAAAAAAAAAAAAAAAAAA==', 'subType': '04'}},"
           " '$db': 'app'}",
           "invalid collection name");
    /* handshake and transaction commands may name admin */
    forwards(F, "{'ping': 1, '$db': 'admin'}");
    denies(F, "{'ping': 1, '$db': 'ad.min'}", "illegal database name");
}

/* {key: [inner]} (array) or {key: inner}, wrapped n times around inner. */
static bson_t *wrap(bson_t *inner, const char *key, bool array, const char *outer_key, int n)
{
    for (int i = 0; i < n; i++) {
        bson_t *w = bson_new(), a, d;
        if (array) {
            bson_append_array_begin(w, key, -1, &a);
            if (outer_key) {
                bson_append_document_begin(&a, "0", 1, &d);
                bson_append_document(&d, outer_key, -1, inner);
                bson_append_document_end(&a, &d);
            } else {
                bson_append_document(&a, "0", 1, inner);
            }
            bson_append_array_end(w, &a);
        } else {
            bson_append_document(w, key, -1, inner);
        }
        bson_destroy(inner);
        inner = w;
    }
    return inner;
}

static tg_mongo_verdict run_built(tg_mongo_tenant *t, const char *cmd, const char *field,
                                  const bson_t *value, bool value_is_array, const char **reason)
{
    bson_t *b = bson_new();
    BSON_APPEND_UTF8(b, cmd, "o");
    if (value_is_array)
        bson_append_array(b, field, -1, value);
    else
        bson_append_document(b, field, -1, value);
    if (!strcmp(cmd, "aggregate")) {
        bson_t cur = BSON_INITIALIZER;
        bson_append_document(b, "cursor", -1, &cur);
    }
    BSON_APPEND_UTF8(b, "$db", "app");
    static tg_mongo_scoped r;
    tg_mongo_scoped_clear(&r);
    tg_mongo_verdict v = tg_mongo_scope_command(t, b, NULL, 0, &r);
    *reason = r.reason ? r.reason : "";
    bson_destroy(b);
    return v;
}

static void test_attack_depth(void **state)
{
    (void)state;
    const char *reason;
    /* 90 nested $and (beyond what the JSON parser even reads): denied, bounded recursion */
    bson_t *f = wrap(J("{'a': 1}"), "$and", true, NULL, 90);
    assert_int_equal(run_built(F, "find", "filter", f, false, &reason), TG_MONGO_DENY);
    assert_string_equal(reason, "nested too deeply");
    bson_destroy(f);
    /* 75 nested $not inside $expr */
    bson_t *e = J("{'$eq': [1, 1]}");
    e = wrap(e, "$not", true, NULL, 75);
    bson_t *x = bson_new();
    bson_append_document(x, "$expr", -1, e);
    assert_int_equal(run_built(F, "find", "filter", x, false, &reason), TG_MONGO_DENY);
    assert_string_equal(reason, "nested too deeply");
    bson_destroy(x);
    bson_destroy(e);
    /* nested $facet pipelines, nested $lookup pipelines, nested $elemMatch */
    bson_t *p = bson_new(); /* [] */
    for (int i = 0; i < 66; i++) {
        bson_t *stage = bson_new(), facet, *arr = bson_new();
        bson_append_document_begin(stage, "$facet", -1, &facet);
        bson_append_array(&facet, "f", -1, p);
        bson_append_document_end(stage, &facet);
        bson_append_document(arr, "0", 1, stage);
        bson_destroy(stage);
        bson_destroy(p);
        p = arr;
    }
    assert_int_equal(run_built(F, "aggregate", "pipeline", p, true, &reason), TG_MONGO_DENY);
    assert_string_equal(reason, "nested too deeply");
    bson_destroy(p);
    bson_t *em = wrap(J("{'x': 1}"), "$elemMatch", false, NULL, 1);
    for (int i = 0; i < 30; i++) {
        bson_t *w = bson_new();
        bson_append_document(w, "a", -1, em);
        bson_destroy(em);
        em = wrap(w, "$elemMatch", false, NULL, 1);
    }
    bson_t *ef = bson_new();
    bson_append_document(ef, "a", -1, em);
    assert_int_equal(run_built(F, "find", "filter", ef, false, &reason), TG_MONGO_DENY);
    assert_string_equal(reason, "nested too deeply");
    bson_destroy(ef);
    bson_destroy(em);
    /* beyond MongoDB's own BSON depth: malformed, whatever the field */
    bson_t *deep = wrap(J("{'a': 1}"), "x", false, NULL, TG_MONGO_BSON_MAX_DEPTH + 1);
    assert_int_equal(run_built(F, "find", "comment", deep, false, &reason), TG_MONGO_DENY);
    assert_string_equal(reason, "malformed BSON");
    bson_destroy(deep);
    /* moderate nesting is fine */
    f = wrap(J("{'a': 1}"), "$or", true, NULL, 10);
    assert_int_equal(run_built(F, "find", "filter", f, false, &reason), TG_MONGO_REWRITE);
    bson_destroy(f);
    /* deep literal data is not interpreted, so not limited here (the server's limit applies) */
    bson_t *lit = wrap(J("{'a': 1}"), "a", false, NULL, 150);
    bson_t *docs = bson_new();
    bson_append_document(docs, "0", 1, lit);
    assert_int_equal(run_built(F, "insert", "documents", docs, true, &reason), TG_MONGO_REWRITE);
    bson_destroy(docs);
    bson_destroy(lit);
}

/* ---- dotted tenant field ------------------------------------------------------------------ */

static void test_dotted_field(void **state)
{
    (void)state;
    rewrites(M, "{'find': 'o', 'filter': {'a': 1}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'$and': [{'meta.tenant': " TQ
             "}, {'a': 1}]}, '$db': 'app'}");
    rewrites(M,
             "{'insert': 'o', 'documents': [{'a': 1}, {'meta': {'x': 1}}, {'meta': {'tenant':"
             " 'acme', 'y': 2}}], '$db': 'app'}",
             "{'insert': 'o', 'documents': [{'a': 1, 'meta': {'tenant': 'acme'}}, {'meta': {'x': 1,"
             " 'tenant': 'acme'}}, {'meta': {'tenant': 'acme', 'y': 2}}], '$db': 'app'}");
    denies(M, "{'insert': 'o', 'documents': [{'meta': {'tenant': 'beta'}}], '$db': 'app'}",
           "document carries another tenant's value");
    denies(M, "{'insert': 'o', 'documents': [{'meta': [{'tenant': 'acme'}]}], '$db': 'app'}",
           "the tenant field's parent must be an object");
    denies(M, "{'insert': 'o', 'documents': [{'meta': 'x'}], '$db': 'app'}",
           "the tenant field's parent must be an object");
    denies(M, "{'insert': 'o', 'documents': [{'meta': {}, 'meta': {}}], '$db': 'app'}",
           "duplicate tenant field");
    static const char *const writes[] = {
        "{'$set': {'meta': {'tenant': 'beta'}}}", "{'$unset': {'meta': 1}}",
        "{'$set': {'meta.tenant': 'beta'}}",      "{'$rename': {'meta': 'm'}}",
        "{'$set': {'meta.$[].tenant': 'x'}}",     "{'$set': {'$[].tenant': 'x'}}",
        "{'$set': {'meta.tenant.x': 1}}",
    };
    for (size_t i = 0; i < COUNT(writes); i++) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "{'update': 'o', 'updates': [{'q': {}, 'u': %s}], '$db': 'app'}",
                 writes[i]);
        denies(M, cmd, "the tenant field cannot be changed");
    }
    rewrites(M,
             "{'update': 'o', 'updates': [{'q': {}, 'u': {'$set': {'meta.other': 1, 'metadata':"
             " 2}}}], '$db': 'app'}",
             "{'update': 'o', 'updates': [{'q': {'meta.tenant': " TQ "}, 'u': {'$set':"
             " {'meta.other': 1, 'metadata': 2}}}], '$db': 'app'}");
    rewrites(M, "{'update': 'o', 'updates': [{'q': {}, 'u': {'a': 1}}], '$db': 'app'}",
             "{'update': 'o', 'updates': [{'q': {'meta.tenant': " TQ "}, 'u': {'a': 1, 'meta':"
             " {'tenant': 'acme'}}}], '$db': 'app'}");
    denies(M,
           "{'update': 'o', 'updates': [{'q': {}, 'u': [{'$project': {'meta': 0}}]}], '$db':"
           " 'app'}",
           "the tenant field cannot be changed");
}

/* ---- database mode ------------------------------------------------------------------------ */

static void test_database_mode(void **state)
{
    (void)state;
    rewrites(D, "{'find': 'o', 'filter': {'tenant_id': 'beta'}, '$db': 'app'}",
             "{'find': 'o', 'filter': {'tenant_id': 'beta'}, '$db': 'app_acme'}");
    rewrites(DB, "{'find': 'o', '$db': 'app'}", "{'find': 'o', '$db': 'app_beta'}");
    rewrites(D,
             "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': 'c', 'localField': 'a',"
             " 'foreignField': 'b', 'as': 'x'}}, {'$out': {'db': 'reports', 'coll': 'r'}}],"
             " 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': 'c', 'localField': 'a',"
             " 'foreignField': 'b', 'as': 'x'}}, {'$out': {'db': 'reports_acme', 'coll': 'r'}}],"
             " 'cursor': {}, '$db': 'app_acme'}");
    rewrites(D, "{'aggregate': 'o', 'pipeline': [{'$out': 'r'}], 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$out': 'r'}], 'cursor': {}, '$db': 'app_acme'}");
    rewrites(D,
             "{'aggregate': 'o', 'pipeline': [{'$merge': {'into': {'db': 'x', 'coll': 'y'}}}],"
             " 'cursor': {}, '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$merge': {'into': {'db': 'x_acme', 'coll':"
             " 'y'}}}], 'cursor': {}, '$db': 'app_acme'}");
    rewrites(D, "{'create': 'v', 'viewOn': 'o', 'pipeline': [{'$match': {'a': 1}}], '$db': 'app'}",
             "{'create': 'v', 'viewOn': 'o', 'pipeline': [{'$match': {'a': 1}}], '$db':"
             " 'app_acme'}");
    rewrites(D, "{'collStats': 'o', '$db': 'app'}", "{'collStats': 'o', '$db': 'app_acme'}");
    rewrites(D,
             "{'aggregate': 'o', 'pipeline': [{'$collStats': {'count': {}}}], 'cursor': {},"
             " '$db': 'app'}",
             "{'aggregate': 'o', 'pipeline': [{'$collStats': {'count': {}}}], 'cursor': {},"
             " '$db': 'app_acme'}");
    /* code and unknown stages stay refused in database mode */
    denies(D, "{'find': 'o', 'filter': {'$where': 'x'}, '$db': 'app'}", "$where is not allowed");
    denies(D, "{'aggregate': 'o', 'pipeline': [{'$currentOp': {}}], 'cursor': {}, '$db': 'app'}",
           "aggregation stage is not allowed");
    denies(D, "{'aggregate': 1, 'pipeline': [{'$currentOp': {}}], 'cursor': {}, '$db': 'admin'}",
           "database is reserved");
    denies(D,
           "{'aggregate': 'o', 'pipeline': [{'$out': {'db': 'admin', 'coll': 'x'}}], 'cursor':"
           " {}, '$db': 'app'}",
           "database is reserved");
    denies(D,
           "{'aggregate': 'o', 'pipeline': [{'$lookup': {'from': {'db': 'app_beta', 'coll':"
           " 'x'}, 'as': 'y', 'pipeline': []}}], 'cursor': {}, '$db': 'app'}",
           "$lookup from another database is not allowed");
    /* drop and rename only with allow_drop */
    denies(D, "{'drop': 'o', '$db': 'app'}", "command is not allowed (allow_drop is off)");
    denies(D, "{'dropDatabase': 1, '$db': 'app'}", "command is not allowed (allow_drop is off)");
    rewrites(DD, "{'drop': 'o', '$db': 'app'}", "{'drop': 'o', '$db': 'app_acme'}");
    rewrites(DD,
             "{'renameCollection': 'app.a', 'to': 'other.b', 'dropTarget': true, '$db':"
             " 'admin'}",
             "{'renameCollection': 'app_acme.a', 'to': 'other_acme.b', 'dropTarget': true, '$db':"
             " 'admin'}");
    denies(DD, "{'renameCollection': 'app.a', 'to': 'admin.b', '$db': 'admin'}",
           "database is reserved");
    denies(DD, "{'renameCollection': 'app.a', 'to': 'app.system.x', '$db': 'admin'}",
           "invalid collection name");
    denies(DD, "{'renameCollection': 'app.a', 'to': 'app.b', '$db': 'app'}",
           "command must run on admin");
    /* listDatabases: on admin, without a filter (the reply is reduced) */
    scoped s;
    assert_int_equal(
        run_seq(D, "{'listDatabases': 1, 'nameOnly': true, '$db': 'admin'}", NULL, 0, &s),
        TG_MONGO_FORWARD);
    assert_int_equal(s.r.reply.kind, TG_MONGO_REPLY_LIST_DATABASES);
    done(&s);
    denies(D, "{'listDatabases': 1, 'filter': {'name': 'app'}, '$db': 'admin'}",
           "field is not allowed");
    denies(D, "{'listDatabases': 1, '$db': 'app'}", "command must run on admin");
    /* names that do not fit or could belong to another tenant */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "{'find': 'o', '$db': '%059d'}", 0);
    denies(D, cmd, "database name too long once mapped to the tenant");
    tg_mongo_tenant *u = tg_mongo_tenant_new(db_scope, "acme_eu", KEY, sizeof(KEY));
    tg_mongo_tenant *v = tg_mongo_tenant_new(db_scope, "eu", KEY, sizeof(KEY));
    /* acme_eu/app and eu/app_acme would both be app_acme_eu: both refused */
    denies(u, "{'find': 'o', '$db': 'app'}", "database name is ambiguous under database_template");
    denies(v, "{'find': 'o', '$db': 'app_acme'}",
           "database name is ambiguous under database_template");
    rewrites(v, "{'find': 'o', '$db': 'app'}", "{'find': 'o', '$db': 'app_eu'}");
    tg_mongo_tenant_free(u);
    tg_mongo_tenant_free(v);
    /* a separator tenants cannot hold keeps every name unambiguous */
    tg_mongo_scope *tilde =
        make_scope(TG_MONGO_SCOPE_DATABASE, NULL, "{db}~{tenant}", false, false);
    u = tg_mongo_tenant_new(tilde, "acme_eu", KEY, sizeof(KEY));
    rewrites(u, "{'find': 'o', '$db': 'my_app'}", "{'find': 'o', '$db': 'my_app~acme_eu'}");
    rewrites(u, "{'find': 'o', '$db': 'a~b'}", "{'find': 'o', '$db': 'a~b~acme_eu'}");
    char out[TG_MONGO_DB_MAX + 1];
    assert_true(tg_mongo_tenant_unmap_db(u, "a~b~acme_eu", 11, out));
    assert_string_equal(out, "a~b");
    assert_false(tg_mongo_tenant_unmap_db(u, "a~b~other", 9, out));
    tg_mongo_tenant_free(u);
    tg_mongo_scope_free(tilde);
}

/* ---- sessions and cursors ----------------------------------------------------------------- */

static void test_lsid(void **state)
{
    (void)state;
    const uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    uint8_t a[16], b[16], c2[16], back[16];
    assert_int_equal(tg_mongo_tenant_map_lsid(F, id, a), 0);
    assert_int_equal(tg_mongo_tenant_map_lsid(FB, id, b), 0);
    assert_int_equal(tg_mongo_tenant_map_lsid(F, id, c2), 0);
    assert_memory_not_equal(a, b, 16);
    assert_memory_equal(a, c2, 16);
    assert_memory_not_equal(a, id, 16);
    /* HMAC-SHA256(key, len || tenant || id), first 16 bytes, UUID v4 bits */
    uint8_t msg[1 + 4 + 16], mac[32];
    unsigned int maclen = 0;
    msg[0] = 4;
    memcpy(msg + 1, "acme", 4);
    memcpy(msg + 5, id, 16);
    HMAC(EVP_sha256(), KEY, sizeof(KEY), msg, sizeof(msg), mac, &maclen);
    mac[6] = (uint8_t)((mac[6] & 0x0f) | 0x40);
    mac[8] = (uint8_t)((mac[8] & 0x3f) | 0x80);
    assert_memory_equal(a, mac, 16);
    /* the mapping is per key too */
    uint8_t key2[32];
    memset(key2, 7, sizeof(key2));
    tg_mongo_tenant *other = tg_mongo_tenant_new(field_scope, "acme", key2, sizeof(key2));
    assert_int_equal(tg_mongo_tenant_map_lsid(other, id, b), 0);
    assert_memory_not_equal(a, b, 16);
    assert_true(tg_mongo_tenant_unmap_lsid(F, a, back));
    assert_memory_equal(back, id, 16);
    assert_false(tg_mongo_tenant_unmap_lsid(other, a, back));
    tg_mongo_tenant_free(other);

    /* in a command: replaced, with the facts */
    bson_t *cmd = BCON_NEW("find", "o", "lsid", "{", "id", BCON_BIN(BSON_SUBTYPE_UUID, id, 16), "}",
                           "txnNumber", BCON_INT64(3), "autocommit", BCON_BOOL(false),
                           "startTransaction", BCON_BOOL(true), "$db", "app");
    tg_mongo_scoped r;
    tg_mongo_scoped_init(&r);
    assert_int_equal(tg_mongo_scope_command(F, cmd, NULL, 0, &r), TG_MONGO_REWRITE);
    assert_true(r.has_lsid);
    assert_true(r.has_txn_number);
    assert_memory_equal(r.client_lsid, id, 16);
    assert_memory_equal(r.backend_lsid, a, 16);
    bson_t got;
    bson_iter_t it;
    assert_true(bson_init_static(&got, r.body, r.body_len));
    assert_true(bson_iter_init_find(&it, &got, "lsid"));
    bson_iter_t in;
    assert_true(bson_iter_recurse(&it, &in) && bson_iter_find(&in, "id"));
    bson_subtype_t sub;
    uint32_t n;
    const uint8_t *data;
    bson_iter_binary(&in, &sub, &n, &data);
    assert_int_equal(sub, BSON_SUBTYPE_UUID);
    assert_int_equal(n, 16);
    assert_memory_equal(data, a, 16);
    assert_true(bson_iter_init_find(&it, &got, "startTransaction"));
    bson_destroy(cmd);

    /* commit / abort on admin, endSessions mapped element by element */
    cmd = BCON_NEW("commitTransaction", BCON_INT32(1), "lsid", "{", "id",
                   BCON_BIN(BSON_SUBTYPE_UUID, id, 16), "}", "txnNumber", BCON_INT64(3),
                   "autocommit", BCON_BOOL(false), "$db", "admin");
    assert_int_equal(tg_mongo_scope_command(F, cmd, NULL, 0, &r), TG_MONGO_REWRITE);
    assert_memory_equal(r.backend_lsid, a, 16);
    bson_destroy(cmd);
    cmd = BCON_NEW("endSessions", "[", "{", "id", BCON_BIN(BSON_SUBTYPE_UUID, id, 16), "}", "]",
                   "$db", "admin");
    assert_int_equal(tg_mongo_scope_command(F, cmd, NULL, 0, &r), TG_MONGO_REWRITE);
    assert_true(bson_init_static(&got, r.body, r.body_len));
    assert_true(bson_iter_init_find(&it, &got, "endSessions"));
    bson_iter_t el, idit;
    assert_true(bson_iter_recurse(&it, &el) && bson_iter_next(&el));
    assert_true(bson_iter_recurse(&el, &idit) && bson_iter_find(&idit, "id"));
    bson_iter_binary(&idit, &sub, &n, &data);
    assert_memory_equal(data, a, 16);
    bson_destroy(cmd);
    tg_mongo_scoped_clear(&r);

    /* malformed lsids */
    denies(F,
           "{'find': 'o', 'lsid': {'id': {'$binary': {'base64': 'AAAAAAAAAAAAAAAAAAAAAA==',"
           " 'subType': '04'}}, 'uid': {'$binary': {'base64': 'AA==', 'subType': '00'}}},"
           " '$db': 'app'}",
           "lsid may only carry id");
    denies(F,
           "{'find': 'o', 'lsid': {'id': {'$binary': {'base64': 'AAAAAAAAAAAAAAAAAAAAAA==',"
           " 'subType': '00'}}}, '$db': 'app'}",
           "lsid id must be a UUID");
    denies(F,
           "{'find': 'o', 'lsid': {'id': {'$binary': {'base64': 'AAAA', 'subType': '04'}}},"
           " '$db': 'app'}",
           "lsid id must be a UUID");
    denies(F, "{'find': 'o', 'lsid': {}, '$db': 'app'}", "lsid needs id");
    denies(F, "{'find': 'o', 'lsid': 'x', '$db': 'app'}", "lsid must be an object");
    denies(F, "{'endSessions': [{'id': 1}], '$db': 'admin'}", "lsid id must be a UUID");
}

static void test_cursors(void **state)
{
    (void)state;
    scoped s;
    assert_int_equal(run_seq(F,
                             "{'getMore': {'$numberLong': '1234567890123'}, 'collection': 'o',"
                             " 'batchSize': 10, '$db': 'app'}",
                             NULL, 0, &s),
                     TG_MONGO_FORWARD);
    assert_int_equal(s.r.cmd, TG_MONGO_CMD_GET_MORE);
    assert_int_equal(s.r.n_cursor_ids, 1);
    assert_true(s.r.cursor_ids[0] == 1234567890123LL);
    done(&s);
    assert_int_equal(run_seq(D,
                             "{'getMore': {'$numberLong': '7'}, 'collection': 'o', '$db': 'app'}",
                             NULL, 0, &s),
                     TG_MONGO_REWRITE);
    assert_doc_eq(s.r.body, s.r.body_len,
                  "{'getMore': {'$numberLong': '7'}, 'collection': 'o', '$db': 'app_acme'}");
    assert_int_equal(s.r.reply.kind, TG_MONGO_REPLY_CURSOR);
    assert_string_equal(s.r.reply.client_db, "app");
    assert_string_equal(s.r.reply.backend_db, "app_acme");
    done(&s);
    assert_int_equal(run_seq(F,
                             "{'killCursors': 'o', 'cursors': [{'$numberLong': '5'},"
                             " {'$numberLong': '6'}], '$db': 'app'}",
                             NULL, 0, &s),
                     TG_MONGO_FORWARD);
    assert_int_equal(s.r.n_cursor_ids, 2);
    assert_true(s.r.cursor_ids[0] == 5 && s.r.cursor_ids[1] == 6);
    done(&s);
    denies(F, "{'getMore': 'x', 'collection': 'o', '$db': 'app'}", "getMore needs a cursor id");
    denies(F, "{'killCursors': 'o', 'cursors': ['x'], '$db': 'app'}",
           "cursors must be an array of ids");
    denies(F, "{'getMore': 1, 'collection': 'system.x', '$db': 'app'}",
           "system collections are not allowed");
}

/* ---- replies ------------------------------------------------------------------------------ */

static void reply_maps(tg_mongo_tenant *t, const tg_mongo_reply_map *m, const char *in,
                       const char *want)
{
    bson_t *b = J(in);
    uint8_t *out = NULL;
    uint32_t len = 0;
    int rc = tg_mongo_scope_reply(t, m, b, &out, &len);
    if (!want) {
        assert_int_equal(rc, 0);
    } else {
        assert_int_equal(rc, 1);
        assert_doc_eq(out, len, want);
    }
    bson_free(out);
    bson_destroy(b);
}

static void test_replies(void **state)
{
    (void)state;
    tg_mongo_reply_map m = {TG_MONGO_REPLY_CURSOR, "app", "app_acme"};
    reply_maps(D, &m,
               "{'cursor': {'firstBatch': [{'_id': 1}], 'id': {'$numberLong': '0'}, 'ns':"
               " 'app_acme.o'}, 'ok': 1.0}",
               "{'cursor': {'firstBatch': [{'_id': 1}], 'id': {'$numberLong': '0'}, 'ns':"
               " 'app.o'}, 'ok': 1.0}");
    reply_maps(D, &m,
               "{'cursor': {'nextBatch': [], 'id': {'$numberLong': '0'}, 'ns':"
               " 'app_acme.$cmd.listCollections'}, 'ok': 1.0}",
               "{'cursor': {'nextBatch': [], 'id': {'$numberLong': '0'}, 'ns':"
               " 'app.$cmd.listCollections'}, 'ok': 1.0}");
    reply_maps(D, &m, "{'ok': 0.0, 'errmsg': 'x', 'code': 2}", NULL);
    /* a namespace outside the tenant's: refused, never forwarded */
    bson_t *b = J("{'cursor': {'firstBatch': [], 'id': 0, 'ns': 'app_beta.o'}, 'ok': 1}");
    uint8_t *out = NULL;
    uint32_t len;
    assert_int_equal(tg_mongo_scope_reply(D, &m, b, &out, &len), TG_EPROTO);
    assert_null(out);
    bson_destroy(b);
    b = J("{'cursor': {'firstBatch': [], 'id': 0, 'ns': 'app_acmeX.o'}, 'ok': 1}");
    assert_int_equal(tg_mongo_scope_reply(D, &m, b, &out, &len), TG_EPROTO);
    bson_destroy(b);
    /* field mode: namespaces are the client's own */
    tg_mongo_reply_map fm = {TG_MONGO_REPLY_CURSOR, "app", "app"};
    reply_maps(F, &fm, "{'cursor': {'firstBatch': [], 'id': 0, 'ns': 'app.o'}, 'ok': 1}", NULL);

    /* listDatabases: the tenant's only, unmapped, totals recomputed */
    tg_mongo_reply_map lm = {TG_MONGO_REPLY_LIST_DATABASES, "admin", "admin"};
    reply_maps(D, &lm,
               "{'databases': [{'name': 'admin', 'sizeOnDisk': {'$numberLong': '100'}, 'empty':"
               " false}, {'name': 'app_acme', 'sizeOnDisk': {'$numberLong': '2097152'}, 'empty':"
               " false}, {'name': 'app_beta', 'sizeOnDisk': {'$numberLong': '7'}, 'empty': false},"
               " {'name': 'x_acme', 'sizeOnDisk': {'$numberLong': '3'}, 'empty': true, 'shards':"
               " {'s0': 1}}, {'name': 'acme', 'sizeOnDisk': {'$numberLong': '9'}}], 'totalSize':"
               " {'$numberLong': '2097271'}, 'totalSizeMb': {'$numberLong': '2'}, 'ok': 1.0}",
               "{'databases': [{'name': 'app', 'sizeOnDisk': {'$numberLong': '2097152'}, 'empty':"
               " false}, {'name': 'x', 'sizeOnDisk': {'$numberLong': '3'}, 'empty': true}],"
               " 'totalSize': {'$numberLong': '2097155'}, 'totalSizeMb': {'$numberLong': '2'},"
               " 'ok': 1.0}");
    reply_maps(D, &lm, "{'databases': [{'name': 'app_beta'}, {'name': 'app_acme'}], 'ok': 1}",
               "{'databases': [{'name': 'app'}], 'ok': 1}");

    /* change events: namespaces and lsids mapped back, unknown lsids dropped */
    const uint8_t id[16] = {9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
    uint8_t backend[16];
    assert_int_equal(tg_mongo_tenant_map_lsid(DD, id, backend), 0);
    tg_mongo_reply_map cm = {TG_MONGO_REPLY_CHANGE_STREAM, "app", "app_acme"};
    bson_t *ev = BCON_NEW(
        "cursor", "{", "nextBatch", "[", "{", "operationType", "insert", "ns", "{", "db",
        "app_acme", "coll", "o", "}", "lsid", "{", "id", BCON_BIN(BSON_SUBTYPE_UUID, backend, 16),
        "uid", BCON_BIN(BSON_SUBTYPE_BINARY, id, 16), "}", "}", "{", "operationType", "rename",
        "ns", "{", "db", "app_acme", "coll", "o", "}", "to", "{", "db", "x_acme", "coll", "p", "}",
        "lsid", "{", "id", BCON_BIN(BSON_SUBTYPE_UUID, id, 16), "}", "}", "]", "id", BCON_INT64(5),
        "ns", "app_acme.o", "}", "ok", BCON_DOUBLE(1));
    assert_int_equal(tg_mongo_scope_reply(DD, &cm, ev, &out, &len), 1);
    bson_t *want = BCON_NEW(
        "cursor", "{", "nextBatch", "[", "{", "operationType", "insert", "ns", "{", "db", "app",
        "coll", "o", "}", "lsid", "{", "id", BCON_BIN(BSON_SUBTYPE_UUID, id, 16), "}", "}", "{",
        "operationType", "rename", "ns", "{", "db", "app", "coll", "o", "}", "to", "{", "db", "x",
        "coll", "p", "}", "}", "]", "id", BCON_INT64(5), "ns", "app.o", "}", "ok", BCON_DOUBLE(1));
    char *wj = bson_as_canonical_extended_json(want, NULL);
    assert_doc_eq(out, len, wj);
    bson_free(wj);
    bson_free(out);
    bson_destroy(want);
    bson_destroy(ev);
    ev =
        BCON_NEW("cursor", "{", "nextBatch", "[", "{", "ns", "{", "db", "app_beta", "coll", "o",
                 "}", "}", "]", "id", BCON_INT64(5), "ns", "app_acme.o", "}", "ok", BCON_DOUBLE(1));
    assert_int_equal(tg_mongo_scope_reply(DD, &cm, ev, &out, &len), TG_EPROTO);
    bson_destroy(ev);
}

/* ---- construction ------------------------------------------------------------------------- */

static void test_config(void **state)
{
    (void)state;
    static const struct {
        const char *field, *tmpl, *err;
    } bad[] = {
        {"$t", "{db}_{tenant}", "tenant_field must be"},
        {"a..b", "{db}_{tenant}", "tenant_field must be"},
        {"a.", "{db}_{tenant}", "tenant_field must be"},
        {"", "{db}_{tenant}", "tenant_field must be"},
        {"a.$b", "{db}_{tenant}", "tenant_field must be"},
        {"t", "{tenant}", "database_template must contain {db} and {tenant}"},
        {"t", "{db}_{tenant}_{db}", "database_template must contain {db} and {tenant}"},
        {"t", "{db}{tenant}", "database_template needs a separator"},
        {"t", "{db}.{tenant}", "database_template holds a character"},
        {"t", "x {db}_{tenant}", "database_template holds a character"},
        {"t", "{db}_{tenant}$", "database_template holds a character"},
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        tg_mongo_scope_config cfg = {TG_MONGO_SCOPE_DATABASE, bad[i].field, bad[i].tmpl, false,
                                     false};
        tg_mongo_scope *s = NULL;
        char err[256];
        assert_int_equal(tg_mongo_scope_new(&cfg, &s, err, sizeof(err)), TG_ECONFIG);
        assert_null(s);
        assert_true(strncmp(err, bad[i].err, strlen(bad[i].err)) == 0);
    }
    /* field mode ignores the template */
    tg_mongo_scope_config cfg = {TG_MONGO_SCOPE_FIELD, "tenant_id", "{tenant}", false, false};
    tg_mongo_scope *s = NULL;
    char err[256];
    assert_int_equal(tg_mongo_scope_new(&cfg, &s, err, sizeof(err)), 0);
    /* tenants and keys */
    assert_null(tg_mongo_tenant_new(s, "", KEY, sizeof(KEY)));
    assert_null(tg_mongo_tenant_new(s, "_acme", KEY, sizeof(KEY)));
    assert_null(tg_mongo_tenant_new(s, "ac me", KEY, sizeof(KEY)));
    assert_null(tg_mongo_tenant_new(s, "a.b", KEY, sizeof(KEY)));
    assert_null(tg_mongo_tenant_new(s, "acme", KEY, 8));
    char t64[66];
    memset(t64, 'a', 65);
    t64[65] = '\0';
    assert_null(tg_mongo_tenant_new(s, t64, KEY, sizeof(KEY)));
    t64[64] = '\0';
    tg_mongo_tenant *t = tg_mongo_tenant_new(s, t64, KEY, sizeof(KEY));
    assert_non_null(t);
    tg_mongo_tenant_free(t);
    t = tg_mongo_tenant_new(s, "550e8400-e29b-41d4-a716-446655440000", KEY, sizeof(KEY));
    assert_non_null(t);
    tg_mongo_tenant_free(t);
    tg_mongo_scope_free(s);
    assert_string_equal(tg_mongo_cmd_name(TG_MONGO_CMD_FIND_AND_MODIFY), "findAndModify");
    assert_string_equal(tg_mongo_cmd_name(TG_MONGO_CMD_UNKNOWN), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_count_distinct_fam),
        cmocka_unit_test(test_update_delete),
        cmocka_unit_test(test_insert),
        cmocka_unit_test(test_insert_sequence),
        cmocka_unit_test(test_insert_sequence_every_offset),
        cmocka_unit_test(test_nul_in_copied_text),
        cmocka_unit_test(test_aggregate),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_graph_union_facet),
        cmocka_unit_test(test_out_merge_documents),
        cmocka_unit_test(test_change_streams),
        cmocka_unit_test(test_explain),
        cmocka_unit_test(test_passthrough_commands),
        cmocka_unit_test(test_attack_filters),
        cmocka_unit_test(test_attack_stages),
        cmocka_unit_test(test_attack_writes),
        cmocka_unit_test(test_attack_commands),
        cmocka_unit_test(test_attack_duplicates),
        cmocka_unit_test(test_attack_db),
        cmocka_unit_test(test_malformed_bson),
        cmocka_unit_test(test_attack_depth),
        cmocka_unit_test(test_dotted_field),
        cmocka_unit_test(test_database_mode),
        cmocka_unit_test(test_lsid),
        cmocka_unit_test(test_cursors),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
