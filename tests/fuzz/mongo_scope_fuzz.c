/*
 * libFuzzer target for the MongoDB command scoper (policy/mongo_scope.c).
 *
 *   byte 0: scoper (% 5): field tenant_id | field meta.tenant | field with change
 *           streams | database {db}_{tenant} | database with allow_drop + change streams
 *   byte 1: kind 1 sequences: bits 0-1 the identifier of the first (none, documents,
 *           updates, deletes), bit 2 a second one (the same identifier), bit 3 an
 *           identifier from the input instead (the first document's first key);
 *           bit 4: the rest is JSON lines instead of BSON
 *   rest:   BSON documents back to back, each validated (bson_validate): the body,
 *           then the documents of the sequences (split in two halves for two)
 *        --> tg_mongo_scope_command --> REWRITE output scoped again (field mode)
 *        --> tg_mongo_scope_reply with every reply kind, the body taken as a reply
 *
 * Invariants: never crash, over-read or leak (ASan/UBSan/LSan: the input is
 * copied to an exact-size buffer); tg_mongo_bson_valid agrees with a walk by
 * libbson's own iterator on the raw bytes and on every document; the verdict
 * is valid; DENY has a static,
 * non-empty reason and no output; FORWARD has no output; REWRITE has a valid
 * BSON body and valid sequences with their counts; scoping is deterministic
 * (same bytes twice). Field mode: a find's output always has exactly one
 * filter, which is the tenant clause ({tf: {$eq: T, $regex: /^T\z/}}) or
 * {$and: [{tf: clause}, X]}; an aggregate on a collection always starts with
 * the tenant clause (a $match, a $geoNear query, or the $match right after a
 * $changeStream), an aggregate: 1 with $documents or $changeStream; every
 * $lookup / $unionWith with a collection, at any depth, has a pipeline that
 * starts with the tenant clause and every $graphLookup a restrictSearchWithMatch
 * that is one; every inserted document carries the tenant; a find, count,
 * distinct or findAndModify is never forwarded unchanged; and a rewritten
 * command scoped again is never denied (but for the depth limit, which the
 * clause's two levels can pass). Replies: 1 comes with a valid body,
 * anything else with none.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/mongo_scope.h"
#include "proxy/error.h"

#define NSCOPES 5
static tg_mongo_scope *scopes[NSCOPES];
static tg_mongo_tenant *tenants[NSCOPES];
static const char *const fields[NSCOPES] = {"tenant_id", "meta.tenant", "tenant_id", "tenant_id",
                                            "tenant_id"};
static const char TENANT[] = "acme";

static void setup(void)
{
    static const uint8_t key[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz!";
    const tg_mongo_scope_config cfg[NSCOPES] = {
        {TG_MONGO_SCOPE_FIELD, "tenant_id", NULL, false, false},
        {TG_MONGO_SCOPE_FIELD, "meta.tenant", NULL, false, false},
        {TG_MONGO_SCOPE_FIELD, "tenant_id", NULL, false, true},
        {TG_MONGO_SCOPE_DATABASE, "tenant_id", "{db}_{tenant}", false, false},
        {TG_MONGO_SCOPE_DATABASE, "tenant_id", "{db}_{tenant}", true, true},
    };
    char err[256];
    for (int i = 0; i < NSCOPES; i++) {
        if (tg_mongo_scope_new(&cfg[i], &scopes[i], err, sizeof(err)) != 0)
            abort();
        tenants[i] = tg_mongo_tenant_new(scopes[i], TENANT, key, sizeof(key));
        if (!tenants[i])
            abort();
    }
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #x, __LINE__);                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- invariant helpers -------------------------------------------------------------------- */

static bool key_is(const bson_iter_t *it, const char *k)
{
    return !strcmp(bson_iter_key(it), k);
}

/* The value /^acme\z/ */
static bool is_guard(const bson_iter_t *it)
{
    const char *opts = NULL;
    const char *re = bson_iter_type(it) == BSON_TYPE_REGEX ? bson_iter_regex(it, &opts) : NULL;
    return re && !strcmp(re, "^acme\\z") && opts && !opts[0];
}

/* {$eq: "acme", $regex: /^acme\z/} or /^acme\z/ */
static bool is_clause_value(const bson_iter_t *it)
{
    if (is_guard(it))
        return true;
    bson_iter_t ch;
    uint32_t n;
    if (bson_iter_type(it) != BSON_TYPE_DOCUMENT || !bson_iter_recurse(it, &ch) ||
        !bson_iter_next(&ch) || !key_is(&ch, "$eq") || bson_iter_type(&ch) != BSON_TYPE_UTF8)
        return false;
    const char *v = bson_iter_utf8(&ch, &n);
    if (n != 4 || memcmp(v, TENANT, 4) != 0 || !bson_iter_next(&ch) || !key_is(&ch, "$regex") ||
        !is_guard(&ch))
        return false;
    return !bson_iter_next(&ch);
}

/* {path: clause} alone */
static bool is_clause_doc(const bson_iter_t *it, const char *path)
{
    bson_iter_t ch;
    return bson_iter_type(it) == BSON_TYPE_DOCUMENT && bson_iter_recurse(it, &ch) &&
           bson_iter_next(&ch) && key_is(&ch, path) && is_clause_value(&ch) && !bson_iter_next(&ch);
}

/* {tf: clause} or {$and: [{tf: clause}, X]} */
static bool is_scoped_filter(const bson_iter_t *it, const char *tf)
{
    if (is_clause_doc(it, tf))
        return true;
    bson_iter_t ch, el;
    if (bson_iter_type(it) != BSON_TYPE_DOCUMENT || !bson_iter_recurse(it, &ch) ||
        !bson_iter_next(&ch) || !key_is(&ch, "$and") || bson_iter_type(&ch) != BSON_TYPE_ARRAY ||
        !bson_iter_recurse(&ch, &el) || !bson_iter_next(&el) || !is_clause_doc(&el, tf) ||
        !bson_iter_next(&el) || bson_iter_next(&el))
        return false;
    return !bson_iter_next(&ch);
}

static bool pipeline_ok(const bson_iter_t *arr, const char *tf, bool scoped_start, int depth);

/* Every $lookup/$unionWith/$graphLookup/$facet in a stage, recursively. */
static bool stage_ok(const bson_iter_t *stage, const char *tf, int depth)
{
    bson_iter_t st, f;
    if (!bson_iter_recurse(stage, &st) || !bson_iter_next(&st))
        return false;
    const char *name = bson_iter_key(&st);
    if (!strcmp(name, "$lookup") || !strcmp(name, "$unionWith")) {
        const char *coll_key = name[1] == 'l' ? "from" : "coll";
        bool has_coll = false, ok = true;
        bson_iter_t pipe;
        bool has_pipe = false;
        if (bson_iter_type(&st) != BSON_TYPE_DOCUMENT || !bson_iter_recurse(&st, &f))
            return false;
        while (bson_iter_next(&f)) {
            if (key_is(&f, coll_key))
                has_coll = true;
            if (key_is(&f, "pipeline")) {
                CHECK(!has_pipe);
                has_pipe = true;
                pipe = f;
            }
        }
        if (has_coll && !has_pipe)
            return false;
        if (has_pipe)
            ok = pipeline_ok(&pipe, tf, has_coll, depth + 1);
        return ok;
    }
    if (!strcmp(name, "$graphLookup")) {
        int n = 0;
        if (!bson_iter_recurse(&st, &f))
            return false;
        while (bson_iter_next(&f))
            if (key_is(&f, "restrictSearchWithMatch")) {
                n++;
                if (!is_scoped_filter(&f, tf))
                    return false;
            }
        return n == 1;
    }
    if (!strcmp(name, "$facet")) {
        if (!bson_iter_recurse(&st, &f))
            return false;
        while (bson_iter_next(&f))
            if (!pipeline_ok(&f, tf, false, depth + 1))
                return false;
    }
    return true;
}

/* scoped_start: the pipeline reads a collection, so its first stage holds the clause. */
static bool pipeline_ok(const bson_iter_t *arr, const char *tf, bool scoped_start, int depth)
{
    bson_iter_t el, st, f;
    if (depth > 200 || bson_iter_type(arr) != BSON_TYPE_ARRAY || !bson_iter_recurse(arr, &el))
        return false;
    int i = 0;
    bool change = false;
    while (bson_iter_next(&el)) {
        if (bson_iter_type(&el) != BSON_TYPE_DOCUMENT || !bson_iter_recurse(&el, &st) ||
            !bson_iter_next(&st))
            return false;
        const char *name = bson_iter_key(&st);
        if (scoped_start && i == 0) {
            if (!strcmp(name, "$match")) {
                if (!is_scoped_filter(&st, tf))
                    return false;
            } else if (!strcmp(name, "$geoNear")) {
                int n = 0;
                if (!bson_iter_recurse(&st, &f))
                    return false;
                while (bson_iter_next(&f))
                    if (key_is(&f, "query")) {
                        n++;
                        if (!is_scoped_filter(&f, tf))
                            return false;
                    }
                if (n != 1)
                    return false;
            } else if (!strcmp(name, "$changeStream")) {
                change = true;
            } else {
                return false;
            }
        }
        if (change && i == 1) {
            /* {$match: {$or: [{"fullDocument.tf": clause}, {"fullDocumentBeforeChange.tf": ...}]}}
             */
            char p1[300], p2[300];
            bson_iter_t or, a;
            snprintf(p1, sizeof(p1), "fullDocument.%s", tf);
            snprintf(p2, sizeof(p2), "fullDocumentBeforeChange.%s", tf);
            if (strcmp(name, "$match") != 0 || !bson_iter_recurse(&st, & or) ||
                !bson_iter_next(& or) || !key_is(& or, "$or") || !bson_iter_recurse(& or, &a) ||
                !bson_iter_next(&a) || !is_clause_doc(&a, p1) || !bson_iter_next(&a) ||
                !is_clause_doc(&a, p2) || bson_iter_next(&a) || bson_iter_next(& or))
                return false;
        }
        if (!stage_ok(&el, tf, depth))
            return false;
        i++;
    }
    if (change && i < 2)
        return false;
    return !scoped_start || i > 0;
}

/* A document carries "acme" at the tenant path (dotted paths through sub-documents). */
static bool doc_stamped(const uint8_t *data, size_t len, const char *tf)
{
    bson_t d;
    bson_iter_t it;
    if (!bson_init_static(&d, data, len) || !bson_iter_init(&it, &d))
        return false;
    if (!bson_iter_find_descendant(&it, tf, &it) || bson_iter_type(&it) != BSON_TYPE_UTF8)
        return false;
    uint32_t n;
    const char *v = bson_iter_utf8(&it, &n);
    return n == 4 && !memcmp(v, TENANT, 4);
}

static void check_field_output(const tg_mongo_scoped *r, const char *tf)
{
    bson_t b;
    bson_iter_t it;
    CHECK(bson_init_static(&b, r->body, r->body_len));
    CHECK(bson_iter_init(&it, &b) && bson_iter_next(&it));
    const char *cmd = bson_iter_key(&it);
    bool nocoll = BSON_ITER_HOLDS_NUMBER(&it);
    if (r->cmd == TG_MONGO_CMD_FIND) {
        int n = 0;
        while (bson_iter_next(&it))
            if (key_is(&it, "filter")) {
                n++;
                CHECK(is_scoped_filter(&it, tf));
            }
        CHECK(n == 1);
    } else if (r->cmd == TG_MONGO_CMD_AGGREGATE) {
        (void)cmd;
        int n = 0;
        while (bson_iter_next(&it))
            if (key_is(&it, "pipeline")) {
                n++;
                CHECK(pipeline_ok(&it, tf, !nocoll, 0));
                if (nocoll) {
                    bson_iter_t el, st;
                    CHECK(bson_iter_recurse(&it, &el) && bson_iter_next(&el) &&
                          bson_iter_recurse(&el, &st) && bson_iter_next(&st));
                    CHECK(key_is(&st, "$documents") || key_is(&st, "$changeStream"));
                }
            }
        CHECK(n == 1);
    } else if (r->cmd == TG_MONGO_CMD_INSERT) {
        bson_iter_t el;
        while (bson_iter_next(&it))
            if (key_is(&it, "documents") && bson_iter_recurse(&it, &el))
                while (bson_iter_next(&el)) {
                    uint32_t dl;
                    const uint8_t *dd;
                    bson_iter_document(&el, &dl, &dd);
                    CHECK(doc_stamped(dd, dl, tf));
                }
        for (uint32_t s = 0; s < r->nseq; s++) {
            CHECK(r->seq[s].docs); /* field mode stamps every sequence */
            size_t off = 0;
            while (off < r->seq[s].len) {
                int32_t dl;
                memcpy(&dl, r->seq[s].docs + off, 4);
                CHECK(doc_stamped(r->seq[s].docs + off, (size_t)dl, tf));
                off += (size_t)dl;
            }
        }
    }
}

static void check_result(const tg_mongo_scoped *r, tg_mongo_verdict v)
{
    CHECK(v == r->kind);
    CHECK(v == TG_MONGO_FORWARD || v == TG_MONGO_REWRITE || v == TG_MONGO_DENY);
    CHECK(memchr(r->what, '\0', sizeof(r->what)));
    if (v == TG_MONGO_DENY) {
        CHECK(r->reason && r->reason[0]);
        CHECK(!r->body && r->nseq == 0);
        return;
    }
    CHECK(!r->reason);
    if (v == TG_MONGO_FORWARD) {
        CHECK(!r->body && r->nseq == 0);
        return;
    }
    bson_t b;
    CHECK(r->body && bson_init_static(&b, r->body, r->body_len));
    CHECK(bson_validate(&b, BSON_VALIDATE_NONE, NULL));
    for (uint32_t s = 0; s < r->nseq; s++) {
        CHECK(r->seq[s].id);
        if (!r->seq[s].docs)
            continue;
        size_t off = 0;
        uint32_t count = 0;
        while (off < r->seq[s].len) {
            int32_t dl;
            CHECK(r->seq[s].len - off >= 5);
            memcpy(&dl, r->seq[s].docs + off, 4);
            CHECK(dl >= 5 && (size_t)dl <= r->seq[s].len - off);
            bson_t d;
            CHECK(bson_init_static(&d, r->seq[s].docs + off, (size_t)dl));
            CHECK(bson_validate(&d, BSON_VALIDATE_NONE, NULL));
            off += (size_t)dl;
            count++;
        }
        CHECK(count == r->seq[s].count);
    }
}

/* The reference for tg_mongo_bson_valid: libbson's own iterator walks every element
 * of every embedded document, array and scope to its end without an error. */
static bool ref_valid(const uint8_t *data, size_t len, int depth)
{
    bson_t b;
    bson_iter_t it;
    if (depth > TG_MONGO_BSON_MAX_DEPTH || !bson_init_static(&b, data, len) ||
        !bson_iter_init(&it, &b))
        return false;
    while (bson_iter_next(&it)) {
        uint32_t l = 0, sl = 0;
        const uint8_t *p = NULL;
        const char *text = NULL;
        if (BSON_ITER_HOLDS_CODE(&it))
            text = bson_iter_code(&it, &l);
        else if (BSON_ITER_HOLDS_DBPOINTER(&it))
            bson_iter_dbpointer(&it, &l, &text, NULL);
        if (text && strlen(text) != l)
            return false; /* libbson would copy it cut short (NUL_FREE_ON_COPY) */
        if (BSON_ITER_HOLDS_DOCUMENT(&it))
            bson_iter_document(&it, &l, &p);
        else if (BSON_ITER_HOLDS_ARRAY(&it))
            bson_iter_array(&it, &l, &p);
        else if (BSON_ITER_HOLDS_CODEWSCOPE(&it)) {
            text = bson_iter_codewscope(&it, &sl, &l, &p);
            if (!text || strlen(text) != sl)
                return false;
        } else
            continue;
        if (!p || !ref_valid(p, l, depth + 1))
            return false;
    }
    return it.err_off == 0;
}

static void check_validator(const uint8_t *p, size_t len)
{
    bool fast = tg_mongo_bson_valid(p, len), ref = ref_valid(p, len, 0);
    if (fast != ref) {
        fprintf(stderr, "tg_mongo_bson_valid %d, libbson %d\n", fast, ref);
        abort();
    }
}

/* ---- the target --------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    if (size < 2 + 5)
        return 0;
    int which = data[0] % NSCOPES;
    uint8_t sq = data[1];
    size_t len = size - 2;
    uint8_t *buf = malloc(len);
    memcpy(buf, data + 2, len);
    if (sq & 16) {
        /* JSON lines (relaxed extended JSON) converted to BSON back to back: mutations
         * of text keep documents well-formed far more often than mutations of BSON */
        uint8_t *bin = NULL;
        size_t blen = 0, start = 0;
        for (size_t i = 0; i <= len; i++) {
            if (i < len && buf[i] != '\n')
                continue;
            bson_error_t err;
            bson_t *d =
                i > start ? bson_new_from_json(buf + start, (ssize_t)(i - start), &err) : NULL;
            start = i + 1;
            if (!d)
                continue;
            bin = realloc(bin, blen + d->len);
            memcpy(bin + blen, bson_get_data(d), d->len);
            blen += d->len;
            bson_destroy(d);
        }
        free(buf);
        if (!bin)
            return 0;
        buf = bin;
        len = blen;
    }

    /* the validator against libbson: the bytes as they are, then each document */
    check_validator(buf, len);

    /* the documents: validated, back to back */
    size_t off = 0, ndocs = 0, offs[65], lens[65];
    while (off + 5 <= len && ndocs < 64) {
        int32_t dl;
        memcpy(&dl, buf + off, 4);
        if (dl >= 5 && (size_t)dl <= len - off)
            check_validator(buf + off, (size_t)dl);
        bson_t d;
        if (dl < 5 || (size_t)dl > len - off || !bson_init_static(&d, buf + off, (size_t)dl) ||
            !bson_validate(&d, BSON_VALIDATE_NONE, NULL))
            break;
        offs[ndocs] = off;
        lens[ndocs] = (size_t)dl;
        ndocs++;
        off += (size_t)dl;
    }
    if (ndocs == 0) {
        free(buf);
        return 0;
    }
    bson_t body;
    CHECK(bson_init_static(&body, buf + offs[0], lens[0]));
    static const char *const ids[] = {NULL, "documents", "updates", "deletes"};
    tg_mongo_scope_seq seqs[2];
    uint32_t nseq = 0;
    char idbuf[64];
    const char *id = ids[sq & 3];
    if (sq & 8) {
        bson_iter_t it;
        if (bson_iter_init(&it, &body) && bson_iter_next(&it)) {
            snprintf(idbuf, sizeof(idbuf), "%s", bson_iter_key(&it));
            id = idbuf;
        }
    }
    if (id && ndocs > 1) {
        size_t first = offs[1], end = offs[ndocs - 1] + lens[ndocs - 1];
        size_t mid = ndocs > 2 ? offs[1 + (ndocs - 1) / 2] : end;
        seqs[0] = (tg_mongo_scope_seq){tg_slice_str(id),
                                       {buf + first, (sq & 4) ? mid - first : end - first}};
        nseq = 1;
        if (sq & 4) {
            seqs[1] = (tg_mongo_scope_seq){tg_slice_str(id), {buf + mid, end - mid}};
            nseq = 2;
        }
    }

    tg_mongo_tenant *t = tenants[which];
    bool field = which < 3;
    tg_mongo_scoped r, r2;
    tg_mongo_scoped_init(&r);
    tg_mongo_scoped_init(&r2);
    tg_mongo_verdict v = tg_mongo_scope_command(t, &body, seqs, nseq, &r);
    check_result(&r, v);
    if (field && v == TG_MONGO_FORWARD) /* these always gain a filter */
        CHECK(r.cmd != TG_MONGO_CMD_FIND && r.cmd != TG_MONGO_CMD_COUNT &&
              r.cmd != TG_MONGO_CMD_DISTINCT && r.cmd != TG_MONGO_CMD_FIND_AND_MODIFY);
    if (field && v == TG_MONGO_REWRITE)
        check_field_output(&r, fields[which]);

    /* deterministic */
    tg_mongo_verdict v2 = tg_mongo_scope_command(t, &body, seqs, nseq, &r2);
    CHECK(v2 == v);
    CHECK(r2.body_len == r.body_len && (!r.body || !memcmp(r.body, r2.body, r.body_len)));
    CHECK(r2.reason == r.reason);

    /* a rewritten command scoped again (field mode) is never refused */
    if (field && v == TG_MONGO_REWRITE) {
        bson_t again;
        tg_mongo_scope_seq s2[2];
        for (uint32_t i = 0; i < r.nseq; i++)
            s2[i] = (tg_mongo_scope_seq){tg_slice_str(r.seq[i].id),
                                         r.seq[i].docs ? (tg_slice){r.seq[i].docs, r.seq[i].len}
                                                       : seqs[i].docs};
        CHECK(bson_init_static(&again, r.body, r.body_len));
        tg_mongo_verdict v3 = tg_mongo_scope_command(t, &again, s2, r.nseq, &r2);
        /* (the clause adds two levels: a filter at the depth limit may pass it) */
        if (v3 == TG_MONGO_DENY && strcmp(r2.reason, "nested too deeply") != 0) {
            fprintf(stderr, "re-scoping denied: %s %s\n", r2.reason, r2.what);
            abort();
        }
    }
    tg_mongo_scoped_clear(&r2);

    /* the body as a reply of every kind */
    for (int k = 0; k <= TG_MONGO_REPLY_LIST_DATABASES; k++) {
        tg_mongo_reply_map m = r.reply;
        m.kind = (tg_mongo_reply_kind)k;
        if (!m.client_db[0]) {
            strcpy(m.client_db, "app");
            strcpy(m.backend_db, field ? "app" : "app_acme");
        }
        uint8_t *out = NULL;
        uint32_t olen = 0;
        int rc = tg_mongo_scope_reply(t, &m, &body, &out, &olen);
        CHECK(rc == 1 || rc == 0 || rc == TG_EPROTO || rc == TG_ENOMEM);
        if (rc == 1) {
            bson_t o;
            CHECK(out && bson_init_static(&o, out, olen));
            CHECK(bson_validate(&o, BSON_VALIDATE_NONE, NULL));
        } else {
            CHECK(!out);
        }
        bson_free(out);
    }
    tg_mongo_scoped_clear(&r);
    free(buf);
    return 0;
}
