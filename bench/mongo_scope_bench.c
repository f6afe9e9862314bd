/*
 * Micro-benchmark of the MongoDB command scoper (policy/mongo_scope.c): the
 * cost of one tg_mongo_scope_command() (checks + rewritten body + release)
 * per command, single-threaded, for commands shaped as drivers send them
 * (lsid, $clusterTime, $db), and of one tg_mongo_scope_reply().
 *
 *   for each case: calibrate a loop to ~seconds (bench/microbench.h), then
 *     tg_mongo_scope_command(tenant, body, seqs)  x N  -> us/command
 *
 * "lsid miss" cycles through 16 session ids, more than the tenant's lsid
 * cache holds, so every command pays the HMAC; the other cases reuse one
 * session id, as a driver's implicit session pool does. Times are the
 * thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so a busy machine does not
 * inflate them, and each figure is the best of 5 runs. Prints a Markdown table. A benchmark, not a
 * test: nothing is asserted.
 *
 *   build/mongo_scope_bench [seconds per measurement, default 0.3]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/microbench.h"
#include "policy/mongo_scope.h"

#define NBODIES 16

typedef struct bench_case {
    const char *name;
    bool db_mode;
    const char *json; /* the body; LSID is replaced by a session id */
    const char *seq_id;
    int seq_docs; /* kind 1 documents: {_id: i, sku: "...", qty: i, tags: [..]} */
    bool lsid_miss;
} bench_case;

#define CLUSTER_TIME                                                                               \
    "\"$clusterTime\": {\"clusterTime\": {\"$timestamp\": {\"t\": 1700000000, \"i\": 1}},"         \
    " \"signature\": {\"hash\": {\"$binary\": {\"base64\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAA=\","      \
    " \"subType\": \"00\"}}, \"keyId\": {\"$numberLong\": \"0\"}}}"
#define LSID "\"lsid\": {\"id\": LSIDVALUE}"

static const bench_case cases[] = {
    {"find by _id (field)", false,
     "{\"find\": \"orders\", \"filter\": {\"_id\": {\"$oid\": \"65a1b2c3d4e5f60718293a4b\"}},"
     " \"limit\": 1, \"singleBatch\": true, " LSID ", " CLUSTER_TIME ", \"$db\": \"app\"}",
     NULL, 0, false},
    {"find by _id (field, lsid miss)", false,
     "{\"find\": \"orders\", \"filter\": {\"_id\": {\"$oid\": \"65a1b2c3d4e5f60718293a4b\"}},"
     " \"limit\": 1, \"singleBatch\": true, " LSID ", " CLUSTER_TIME ", \"$db\": \"app\"}",
     NULL, 0, true},
    {"find by _id (database)", true,
     "{\"find\": \"orders\", \"filter\": {\"_id\": {\"$oid\": \"65a1b2c3d4e5f60718293a4b\"}},"
     " \"limit\": 1, \"singleBatch\": true, " LSID ", " CLUSTER_TIME ", \"$db\": \"app\"}",
     NULL, 0, false},
    {"find, 3 predicates + sort + projection (field)", false,
     "{\"find\": \"orders\", \"filter\": {\"status\": {\"$in\": [\"A\", \"B\"]}, \"qty\": "
     "{\"$gte\":"
     " 10}, \"$or\": [{\"sku\": {\"$regex\": \"^ab\"}}, {\"tags\": \"x\"}]}, \"sort\": {\"qty\":"
     " -1}, \"projection\": {\"sku\": 1, \"qty\": 1}, \"limit\": 20, " LSID ", " CLUSTER_TIME
     ", \"$db\": \"app\"}",
     NULL, 0, false},
    {"aggregate, 5 stages (field)", false,
     "{\"aggregate\": \"orders\", \"pipeline\": [{\"$match\": {\"status\": \"A\"}}, {\"$project\":"
     " {\"sku\": 1, \"total\": {\"$multiply\": [\"$price\", \"$qty\"]}}}, {\"$group\": {\"_id\":"
     " \"$sku\", \"sum\": {\"$sum\": \"$total\"}, \"n\": {\"$sum\": 1}}}, {\"$sort\": {\"sum\":"
     " -1}}, {\"$limit\": 10}], \"cursor\": {}, " LSID ", " CLUSTER_TIME ", \"$db\": \"app\"}",
     NULL, 0, false},
    {"aggregate, 5 stages (database)", true,
     "{\"aggregate\": \"orders\", \"pipeline\": [{\"$match\": {\"status\": \"A\"}}, {\"$project\":"
     " {\"sku\": 1, \"total\": {\"$multiply\": [\"$price\", \"$qty\"]}}}, {\"$group\": {\"_id\":"
     " \"$sku\", \"sum\": {\"$sum\": \"$total\"}, \"n\": {\"$sum\": 1}}}, {\"$sort\": {\"sum\":"
     " -1}}, {\"$limit\": 10}], \"cursor\": {}, " LSID ", " CLUSTER_TIME ", \"$db\": \"app\"}",
     NULL, 0, false},
    {"aggregate, $lookup + $unwind + $match (field)", false,
     "{\"aggregate\": \"orders\", \"pipeline\": [{\"$match\": {\"status\": \"A\"}}, {\"$lookup\":"
     " {\"from\": \"customers\", \"localField\": \"cid\", \"foreignField\": \"_id\", \"as\":"
     " \"c\"}}, {\"$unwind\": \"$c\"}, {\"$match\": {\"c.vip\": true}}, {\"$count\": \"n\"}],"
     " \"cursor\": {}, " LSID ", " CLUSTER_TIME ", \"$db\": \"app\"}",
     NULL, 0, false},
    {"update one $set upsert (field)", false,
     "{\"update\": \"orders\", \"ordered\": true, " LSID ", \"txnNumber\": {\"$numberLong\":"
     " \"1\"}, " CLUSTER_TIME ", \"$db\": \"app\"}",
     "updates", 1, false},
    {"insert 1 document, kind 1 (field)", false,
     "{\"insert\": \"orders\", \"ordered\": true, " LSID ", \"txnNumber\": {\"$numberLong\":"
     " \"1\"}, " CLUSTER_TIME ", \"$db\": \"app\"}",
     "documents", 1, false},
    {"insert 100 documents, kind 1 (field)", false,
     "{\"insert\": \"orders\", \"ordered\": true, " LSID ", \"txnNumber\": {\"$numberLong\":"
     " \"1\"}, " CLUSTER_TIME ", \"$db\": \"app\"}",
     "documents", 100, false},
    {"insert 100 documents, kind 1 (database)", true,
     "{\"insert\": \"orders\", \"ordered\": true, " LSID ", \"txnNumber\": {\"$numberLong\":"
     " \"1\"}, " CLUSTER_TIME ", \"$db\": \"app\"}",
     "documents", 100, false},
    {"find with $where (denied)", false,
     "{\"find\": \"orders\", \"filter\": {\"$where\": \"this.a > 1\"}, " LSID ", \"$db\": \"app\"}",
     NULL, 0, false},
};

/* The body of a case with session id number i. */
static bson_t *make_body(const char *json, int i)
{
    char lsid[128];
    snprintf(lsid, sizeof(lsid),
             "{\"$binary\": {\"base64\": \"AAAAAAAAAAAAAAAAAAAA%cA==\", \"subType\": \"04\"}}",
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"[i % 32]);
    const char *at = strstr(json, "LSIDVALUE");
    size_t n = strlen(json) + strlen(lsid) + 1;
    char *s = malloc(n);
    if (at)
        snprintf(s, n, "%.*s%s%s", (int)(at - json), json, lsid, at + 9);
    else
        snprintf(s, n, "%s", json);
    bson_error_t err;
    bson_t *b = bson_new_from_json((const uint8_t *)s, -1, &err);
    if (!b) {
        fprintf(stderr, "mongo_scope_bench: %s\n%s\n", err.message, s);
        exit(1);
    }
    free(s);
    return b;
}

/* n kind 1 documents back to back (update statements for "updates"). */
static uint8_t *make_docs(const char *id, int n, size_t *len)
{
    uint8_t *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (int i = 0; i < n; i++) {
        bson_t *d;
        if (!strcmp(id, "updates"))
            d = BCON_NEW("q", "{", "sku", BCON_UTF8("abc-123"), "}", "u", "{", "$set", "{", "qty",
                         BCON_INT32(i), "}", "}", "upsert", BCON_BOOL(true));
        else
            d = BCON_NEW("_id", BCON_INT32(i), "sku", BCON_UTF8("abc-123"), "qty", BCON_INT32(i),
                         "price", BCON_DOUBLE(9.5), "tags", "[", BCON_UTF8("x"), BCON_UTF8("y"),
                         "]");
        if (*len + d->len > cap) {
            cap = (*len + d->len) * 2;
            buf = realloc(buf, cap);
        }
        memcpy(buf + *len, bson_get_data(d), d->len);
        *len += d->len;
        bson_destroy(d);
    }
    return buf;
}

static volatile uint32_t sink;

/* One measurement: commands of a case, its bodies in rotation. */
typedef struct command_run {
    tg_mongo_tenant *t;
    bson_t **bodies;
    int nbodies;
    const tg_mongo_scope_seq *seq;
    uint32_t nseq;
} command_run;

static void run_commands(void *ctx, long iters)
{
    const command_run *c = ctx;
    tg_mongo_scoped r;
    tg_mongo_scoped_init(&r);
    for (long i = 0; i < iters; i++) {
        sink +=
            (uint32_t)tg_mongo_scope_command(c->t, c->bodies[i % c->nbodies], c->seq, c->nseq, &r) +
            r.body_len;
        tg_mongo_scoped_clear(&r);
    }
}

/* One measurement: a reply mapped back. */
typedef struct reply_run {
    tg_mongo_tenant *t;
    const tg_mongo_reply_map *m;
    const bson_t *reply;
} reply_run;

static void run_replies(void *ctx, long iters)
{
    const reply_run *c = ctx;
    for (long i = 0; i < iters; i++) {
        uint8_t *out;
        uint32_t len;
        sink += (uint32_t)tg_mongo_scope_reply(c->t, c->m, c->reply, &out, &len) + len;
        bson_free(out);
    }
}

int main(int argc, char **argv)
{
    double seconds = tg_mb_seconds_arg(argc, argv);
    /* this thread's CPU time, best of 5: the scoper's own cost, whatever else the machine runs */
    const tg_mb mb = {CLOCK_THREAD_CPUTIME_ID, 5};
    static const uint8_t key[32] = "bench-key-bench-key-bench-key-00";
    tg_mongo_scope_config fc = {TG_MONGO_SCOPE_FIELD, "tenant_id", NULL, false, false};
    tg_mongo_scope_config dc = {TG_MONGO_SCOPE_DATABASE, "tenant_id", "{db}_{tenant}", false,
                                false};
    tg_mongo_scope *fs = NULL, *ds = NULL;
    char err[256];
    if (tg_mongo_scope_new(&fc, &fs, err, sizeof(err)) ||
        tg_mongo_scope_new(&dc, &ds, err, sizeof(err))) {
        fprintf(stderr, "mongo_scope_bench: %s\n", err);
        return 1;
    }
    const char *tenant = "3f2b8c1e-5d4a-4e7b-9c0d-1a2b3c4d5e6f";
    tg_mongo_tenant *ft = tg_mongo_tenant_new(fs, tenant, key, sizeof(key));
    tg_mongo_tenant *dt = tg_mongo_tenant_new(ds, tenant, key, sizeof(key));
    if (!ft || !dt)
        return 1;
    printf("tenant %s, tenant_field tenant_id / database_template {db}_{tenant}\n\n", tenant);
    printf("| command | verdict | bytes in | bytes out | us/command (CPU) |\n");
    printf("|---|---|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const bench_case *c = &cases[i];
        bson_t *bodies[NBODIES];
        int nb = c->lsid_miss ? NBODIES : 1;
        for (int b = 0; b < nb; b++)
            bodies[b] = make_body(c->json, b);
        tg_mongo_scope_seq seq;
        uint8_t *docs = NULL;
        size_t docs_len = 0;
        uint32_t nseq = 0;
        if (c->seq_id) {
            docs = make_docs(c->seq_id, c->seq_docs, &docs_len);
            seq.id = tg_slice_str(c->seq_id);
            seq.docs = (tg_slice){docs, docs_len};
            nseq = 1;
        }
        tg_mongo_tenant *t = c->db_mode ? dt : ft;
        command_run run = {t, bodies, nb, &seq, nseq};
        if (i == 0)
            (void)tg_mb_measure(&mb, run_commands, &run, seconds); /* warm up caches and clocks */
        tg_mongo_scoped r;
        tg_mongo_scoped_init(&r);
        tg_mongo_verdict v = tg_mongo_scope_command(t, bodies[0], &seq, nseq, &r);
        size_t out = r.body_len + (r.nseq && r.seq[0].docs ? r.seq[0].len : docs_len);
        const char *vn = v == TG_MONGO_REWRITE   ? "rewrite"
                         : v == TG_MONGO_FORWARD ? "forward"
                                                 : "deny";
        tg_mongo_scoped_clear(&r);
        double ns = tg_mb_measure(&mb, run_commands, &run, seconds);
        printf("| %s | %s | %zu | %zu | %.2f |\n", c->name, vn, (size_t)bodies[0]->len + docs_len,
               v == TG_MONGO_DENY ? (size_t)0 : out, ns / 1e3);
        for (int b = 0; b < nb; b++)
            bson_destroy(bodies[b]);
        free(docs);
    }
    /* replies: cursor.ns mapped back (database mode), 10 small documents */
    bson_t *reply = bson_new(), cur, batch, d;
    bson_append_document_begin(reply, "cursor", -1, &cur);
    bson_append_array_begin(&cur, "firstBatch", -1, &batch);
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof(k), "%d", i);
        bson_append_document_begin(&batch, k, -1, &d);
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_UTF8(&d, "sku", "abc-123");
        bson_append_document_end(&batch, &d);
    }
    bson_append_array_end(&cur, &batch);
    BSON_APPEND_INT64(&cur, "id", 0);
    char ns[128];
    snprintf(ns, sizeof(ns), "app_%s.orders", tenant);
    BSON_APPEND_UTF8(&cur, "ns", ns);
    bson_append_document_end(reply, &cur);
    BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    tg_mongo_reply_map m = {TG_MONGO_REPLY_CURSOR, "app", ""};
    snprintf(m.backend_db, sizeof(m.backend_db), "app_%s", tenant);
    printf(
        "| reply: cursor.ns of 10 documents mapped back (database) | rewrite | %u | %u | %.2f |\n",
        reply->len, reply->len - (unsigned)strlen(tenant) - 1,
        tg_mb_measure(&mb, run_replies, &(reply_run){dt, &m, reply}, seconds) / 1e3);
    bson_destroy(reply);
    tg_mongo_tenant_free(ft);
    tg_mongo_tenant_free(dt);
    tg_mongo_scope_free(fs);
    tg_mongo_scope_free(ds);
    return 0;
}
