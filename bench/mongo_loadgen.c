/*
 * The MongoDB load generator of bench/ (kind mongodb): C client threads on
 * libmongoc, each with its own connection, each doing N operations of one
 * kind back to back, timing every one.
 *
 *   mongo_loadgen --uri URI --db DB --coll COLL --op find|insert|aggregate
 *                 [--clients C] [--ops N] [--seed K] [--warmup W]
 *                 [--self-scope FIELD=TENANT]
 *                 [--baseline-uri URI [--baseline-self-scope FIELD=TENANT]]
 *
 *   The URIs (they carry credentials) may come from the environment instead:
 *   MONGO_LOADGEN_URI, MONGO_LOADGEN_BASELINE_URI.
 *
 *   start: C threads connect (authentication included), thread 0 seeds K
 *          documents {_id: i, g: i % 10, v: i, name}, every thread runs W
 *          untimed operations
 *     --> "ready" on stdout; waits for a line on stdin (the harness reads
 *         the proxy's CPU counters in between, so connecting and
 *         authenticating are not charged to the operations)
 *     --> the C threads run N operations each, timing every one
 *     --> "result op=.. clients=.. ops=.. errors=.. seconds=.. ops_per_s=..
 *          mean_us=.. p50_us=.. p99_us=.. max_us=.." on stdout
 *         ("baseline ..." likewise, with --baseline-uri); exit 0
 *         (3 when an operation failed: "error ..." on stderr)
 *
 * With --baseline-uri every thread has a second connection, to the baseline
 * (the server directly), and alternates: operation i on the target and on
 * the baseline, in turn first. Both paths then see the same machine at the
 * same moments -- on a machine shared with other work, the only way the
 * difference of two latencies means something. ops_per_s of a paired run is
 * C / mean latency (what C closed-loop clients of that path alone would do).
 * The baseline's operations never touch the proxy, so the proxy's CPU
 * during the run is the target's.
 *
 * Operations: find {_id: i mod K} (limit 1, singleBatch; exactly one
 * document expected), insert_one {k, g, v, name} (the driver adds _id),
 * aggregate [{$match: {g}}, {$group: {_id: "$g", n: {$sum: 1}, total:
 * {$sum: "$v"}}}] (one group of the K/10 seeded documents expected).
 *
 * --self-scope FIELD=TENANT sends, straight to the server, the commands
 * tenantgate's field isolation would forward (policy/mongo_scope.c): filters
 * and a leading $match become {$and: [{FIELD: {$eq: T, $regex: /^T\z/}},
 * <filter>]}, documents carry FIELD: T as their last field. Paths without
 * tenantgate use it so that the server does the same work on every path, and
 * documents seeded through tenantgate are the baseline's too.
 *
 * A benchmark client, not a test: it checks result counts only so that a
 * path that returns nothing cannot look fast.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

enum { OP_FIND, OP_INSERT, OP_AGGREGATE };
static const char *const op_names[] = {"find", "insert", "aggregate"};

/* A way to the server: the target, or the baseline. */
typedef struct path {
    const char *uri;
    const char *field, *tenant; /* --self-scope, or NULL */
    char scope[200];
} path;

typedef struct options {
    const char *db, *coll;
    int op, clients, ops, seed, warmup;
    path paths[2];
    int npaths;
} options;

typedef struct conn {
    const path *p;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    double *lat_us; /* ops entries */
    int errors;
    char first_error[sizeof(((bson_error_t *)0)->message) + 96];
} conn;

typedef struct worker {
    const options *o;
    int index;
    pthread_t thread;
    conn c[2];
    pthread_barrier_t *ready, *go;
    int setup_failed;
    int64_t inserted; /* insert_one calls so far, both paths */
} worker;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* {FIELD: {$eq: T, $regex: /^T\z/}}: tenantgate's tenant clause, appended to dst. */
static void append_clause(const path *p, bson_t *dst, const char *key)
{
    bson_t cl, op;
    char guard[160];
    snprintf(guard, sizeof(guard), "^%s\\z", p->tenant);
    bson_append_document_begin(dst, key, -1, &cl);
    bson_append_document_begin(&cl, p->field, -1, &op);
    bson_append_utf8(&op, "$eq", 3, p->tenant, -1);
    bson_append_regex(&op, "$regex", 6, guard, "");
    bson_append_document_end(&cl, &op);
    bson_append_document_end(dst, &cl);
}

/* filter, or {$and: [clause, filter]} with --self-scope. Takes ownership of filter. */
static bson_t *scoped(const path *p, bson_t *filter)
{
    if (!p->field)
        return filter;
    bson_t *f = bson_new(), and;
    bson_append_array_begin(f, "$and", 4, &and);
    append_clause(p, &and, "0");
    bson_append_document(&and, "1", 1, filter);
    bson_append_array_end(f, &and);
    bson_destroy(filter);
    return f;
}

/* A document of the collection: {_id: id | k: id, g, v, name[, FIELD: T]}. */
static bson_t *make_doc(const path *p, int64_t id, bool with_id)
{
    bson_t *d = bson_new();
    char name[32];
    snprintf(name, sizeof(name), "item-%lld", (long long)id);
    if (with_id)
        BSON_APPEND_INT64(d, "_id", id);
    else
        BSON_APPEND_INT64(d, "k", id);
    BSON_APPEND_INT32(d, "g", (int32_t)(id % 10));
    BSON_APPEND_INT64(d, "v", id);
    BSON_APPEND_UTF8(d, "name", name);
    if (p->field)
        BSON_APPEND_UTF8(d, p->field, p->tenant);
    return d;
}

static void note_error(conn *c, const char *what, const bson_error_t *e)
{
    if (c->errors++ == 0)
        snprintf(c->first_error, sizeof(c->first_error), "%s: %u %s", what, e ? e->code : 0,
                 e ? e->message : "unexpected result");
}

/* One operation number i on connection c; false (with the error noted) when it failed. */
static bool one_op(worker *w, conn *c, int i)
{
    const options *o = w->o;
    bson_error_t err;
    switch (o->op) {
    case OP_FIND: {
        bson_t *filter = scoped(c->p, BCON_NEW("_id", BCON_INT64((int64_t)(i % o->seed))));
        bson_t *opts = BCON_NEW("limit", BCON_INT64(1), "singleBatch", BCON_BOOL(true));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c->coll, filter, opts, NULL);
        const bson_t *doc;
        int n = 0;
        while (mongoc_cursor_next(cur, &doc))
            n++;
        bool ok = !mongoc_cursor_error(cur, &err);
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(filter);
        if (!ok)
            note_error(c, "find", &err);
        else if (n != 1)
            note_error(c, "find returned other than 1 document", NULL);
        return ok && n == 1;
    }
    case OP_INSERT: {
        bson_t *d = make_doc(c->p, (int64_t)w->index * 100000000 + w->inserted++, false);
        bool ok = mongoc_collection_insert_one(c->coll, d, NULL, NULL, &err);
        bson_destroy(d);
        if (!ok)
            note_error(c, "insert", &err);
        return ok;
    }
    case OP_AGGREGATE: {
        bson_t pipeline = BSON_INITIALIZER, stages, st;
        bson_t *match = scoped(c->p, BCON_NEW("g", BCON_INT32(i % 10)));
        bson_append_array_begin(&pipeline, "pipeline", -1, &stages);
        bson_append_document_begin(&stages, "0", 1, &st);
        bson_append_document(&st, "$match", 6, match);
        bson_append_document_end(&stages, &st);
        bson_destroy(match);
        bson_t *group =
            BCON_NEW("$group", "{", "_id", BCON_UTF8("$g"), "n", "{", "$sum", BCON_INT32(1), "}",
                     "total", "{", "$sum", BCON_UTF8("$v"), "}", "}");
        bson_append_document(&stages, "1", 1, group);
        bson_destroy(group);
        bson_append_array_end(&pipeline, &stages);
        mongoc_cursor_t *cur =
            mongoc_collection_aggregate(c->coll, MONGOC_QUERY_NONE, &pipeline, NULL, NULL);
        const bson_t *doc;
        int n = 0;
        int64_t count = -1;
        while (mongoc_cursor_next(cur, &doc)) {
            bson_iter_t it;
            if (bson_iter_init_find(&it, doc, "n"))
                count = bson_iter_as_int64(&it);
            n++;
        }
        bool ok = !mongoc_cursor_error(cur, &err);
        mongoc_cursor_destroy(cur);
        bson_destroy(&pipeline);
        int64_t want = o->seed / 10 + (i % 10 < o->seed % 10 ? 1 : 0);
        if (!ok)
            note_error(c, "aggregate", &err);
        else if (n != 1 || count != want)
            note_error(c, "aggregate returned another count", NULL);
        return ok && n == 1 && count == want;
    }
    }
    return false;
}

/* K documents {_id: 0..K-1} through the target (scoped the target's way). */
static bool seed(worker *w)
{
    const options *o = w->o;
    conn *c = &w->c[0];
    bson_t **docs = calloc((size_t)o->seed, sizeof(*docs));
    if (!docs)
        return false;
    for (int i = 0; i < o->seed; i++)
        docs[i] = make_doc(c->p, i, true);
    bson_error_t err;
    bool ok = mongoc_collection_insert_many(c->coll, (const bson_t **)docs, (size_t)o->seed, NULL,
                                            NULL, &err);
    if (!ok)
        note_error(c, "seed insert_many", &err);
    for (int i = 0; i < o->seed; i++)
        bson_destroy(docs[i]);
    free(docs);
    return ok;
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    const options *o = w->o;
    bson_error_t err;
    bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
    for (int k = 0; k < o->npaths && !w->setup_failed; k++) {
        /* connects and authenticates */
        if (!mongoc_client_command_simple(w->c[k].client, o->db, ping, NULL, NULL, &err)) {
            note_error(&w->c[k], "ping", &err);
            w->setup_failed = 1;
        }
    }
    bson_destroy(ping);
    if (!w->setup_failed && w->index == 0 && o->op != OP_INSERT && !seed(w))
        w->setup_failed = 1;
    pthread_barrier_wait(w->ready); /* seeded before anyone reads */
    for (int i = 0; i < o->warmup && !w->setup_failed; i++)
        for (int k = 0; k < o->npaths; k++)
            if (!one_op(w, &w->c[k], i))
                w->setup_failed = 1;
    pthread_barrier_wait(w->ready);
    pthread_barrier_wait(w->go);
    if (w->setup_failed)
        return NULL;
    for (int k = 0; k < o->npaths; k++)
        w->c[k].errors = 0;
    for (int i = 0; i < o->ops; i++) {
        int n = w->index * 7919 + i;
        for (int j = 0; j < o->npaths; j++) {
            int k = (j + i) % o->npaths; /* the paths take turns going first */
            double t0 = now_us();
            one_op(w, &w->c[k], n);
            w->c[k].lat_us[i] = now_us() - t0;
        }
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prints one path's figures ("result" or "baseline"); returns its error count. */
static int report(const options *o, worker *ws, int k, const char *label, double seconds)
{
    size_t total = (size_t)o->clients * (size_t)o->ops;
    double *all = malloc(total * sizeof(double));
    if (!all)
        exit(1);
    double sum = 0;
    int errors = 0;
    for (int i = 0; i < o->clients; i++) {
        conn *c = &ws[i].c[k];
        memcpy(all + (size_t)i * (size_t)o->ops, c->lat_us, (size_t)o->ops * sizeof(double));
        if (c->errors && errors == 0)
            fprintf(stderr, "error %s client %d: %d operations failed, first: %s\n", label, i,
                    c->errors, c->first_error);
        errors += c->errors;
    }
    for (size_t i = 0; i < total; i++)
        sum += all[i];
    qsort(all, total, sizeof(double), cmp_double);
    double mean = sum / (double)total;
    /* paired: what C closed-loop clients of this path alone would do */
    double rate = o->npaths > 1 ? (double)o->clients * 1e6 / mean : (double)total / seconds;
    printf("%s op=%s clients=%d ops=%zu errors=%d seconds=%.6f ops_per_s=%.1f mean_us=%.1f "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f\n",
           label, op_names[o->op], o->clients, total, errors, seconds, rate, mean, all[total / 2],
           all[(size_t)((double)total * 0.99)], all[total - 1]);
    free(all);
    return errors;
}

static void usage(void)
{
    fprintf(stderr, "usage: mongo_loadgen --uri URI --db DB --coll COLL --op "
                    "find|insert|aggregate [--clients C] [--ops N] [--seed K] [--warmup W] "
                    "[--self-scope FIELD=TENANT] [--baseline-uri URI "
                    "[--baseline-self-scope FIELD=TENANT]]\n");
    exit(2);
}

static int int_arg(const char *s, int lo, int hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        usage();
    return (int)v;
}

static void scope_arg(path *p, const char *arg)
{
    snprintf(p->scope, sizeof(p->scope), "%s", arg);
    char *eq = strchr(p->scope, '=');
    if (!eq || eq == p->scope || eq[1] == '\0' || strlen(eq + 1) > 64)
        usage();
    *eq = '\0';
    p->field = p->scope;
    p->tenant = eq + 1;
}

int main(int argc, char **argv)
{
    static options o = {.op = -1, .clients = 1, .ops = 1000, .seed = 100, .warmup = 20};
    static const struct option longopts[] = {{"uri", required_argument, NULL, 'u'},
                                             {"db", required_argument, NULL, 'd'},
                                             {"coll", required_argument, NULL, 'c'},
                                             {"op", required_argument, NULL, 'o'},
                                             {"clients", required_argument, NULL, 'C'},
                                             {"ops", required_argument, NULL, 'n'},
                                             {"seed", required_argument, NULL, 's'},
                                             {"warmup", required_argument, NULL, 'w'},
                                             {"self-scope", required_argument, NULL, 'S'},
                                             {"baseline-uri", required_argument, NULL, 'B'},
                                             {"baseline-self-scope", required_argument, NULL, 'T'},
                                             {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u':
            o.paths[0].uri = optarg;
            break;
        case 'd':
            o.db = optarg;
            break;
        case 'c':
            o.coll = optarg;
            break;
        case 'o':
            for (int i = 0; i < 3; i++)
                if (!strcmp(optarg, op_names[i]))
                    o.op = i;
            break;
        case 'C':
            o.clients = int_arg(optarg, 1, 256);
            break;
        case 'n':
            o.ops = int_arg(optarg, 1, 10000000);
            break;
        case 's':
            o.seed = int_arg(optarg, 1, 100000);
            break;
        case 'w':
            o.warmup = int_arg(optarg, 0, 100000);
            break;
        case 'S':
            scope_arg(&o.paths[0], optarg);
            break;
        case 'B':
            o.paths[1].uri = optarg;
            break;
        case 'T':
            scope_arg(&o.paths[1], optarg);
            break;
        default:
            usage();
        }
    }
    if (!o.paths[0].uri)
        o.paths[0].uri = getenv("MONGO_LOADGEN_URI");
    if (!o.paths[1].uri && getenv("MONGO_LOADGEN_BASELINE_URI"))
        o.paths[1].uri = getenv("MONGO_LOADGEN_BASELINE_URI");
    if (!o.paths[0].uri || !o.db || !o.coll || o.op < 0 || optind != argc ||
        (o.paths[1].field && !o.paths[1].uri))
        usage();
    o.npaths = o.paths[1].uri ? 2 : 1;

    mongoc_init();
    mongoc_uri_t *uris[2] = {NULL, NULL};
    for (int k = 0; k < o.npaths; k++) {
        bson_error_t err;
        uris[k] = mongoc_uri_new_with_error(o.paths[k].uri, &err);
        if (!uris[k]) {
            fprintf(stderr, "mongo_loadgen: bad uri: %s\n", err.message);
            return 2;
        }
    }
    pthread_barrier_t ready, go;
    pthread_barrier_init(&ready, NULL, (unsigned)o.clients + 1);
    pthread_barrier_init(&go, NULL, (unsigned)o.clients + 1);
    worker *ws = calloc((size_t)o.clients, sizeof(*ws));
    if (!ws)
        return 1;
    for (int i = 0; i < o.clients; i++) {
        worker *w = &ws[i];
        w->o = &o;
        w->index = i;
        w->ready = &ready;
        w->go = &go;
        for (int k = 0; k < o.npaths; k++) {
            conn *c = &w->c[k];
            c->p = &o.paths[k];
            c->lat_us = calloc((size_t)o.ops, sizeof(double));
            c->client = mongoc_client_new_from_uri(uris[k]);
            if (!c->lat_us || !c->client)
                return 1;
            mongoc_client_set_error_api(c->client, MONGOC_ERROR_API_VERSION_2);
            c->coll = mongoc_client_get_collection(c->client, o.db, o.coll);
        }
        if (pthread_create(&w->thread, NULL, run_worker, w) != 0)
            return 1;
    }
    pthread_barrier_wait(&ready); /* connected, seeded */
    pthread_barrier_wait(&ready); /* warmed up */
    int rc = 0;
    for (int i = 0; i < o.clients; i++) {
        for (int k = 0; k < o.npaths; k++) {
            if (ws[i].setup_failed && ws[i].c[k].errors) {
                fprintf(stderr, "error setup (client %d, %s): %s\n", i, k ? "baseline" : "target",
                        ws[i].c[k].first_error);
                rc = 3;
            }
        }
    }
    printf("ready\n");
    fflush(stdout);
    char line[64];
    bool go_on = rc == 0 && fgets(line, sizeof(line), stdin) != NULL;
    if (!go_on) {
        for (int i = 0; i < o.clients; i++)
            ws[i].setup_failed = 1; /* nobody runs */
    }
    double t0 = now_us();
    pthread_barrier_wait(&go);
    for (int i = 0; i < o.clients; i++)
        pthread_join(ws[i].thread, NULL);
    double seconds = (now_us() - t0) / 1e6;

    if (go_on) {
        int errors = report(&o, ws, 0, "result", seconds);
        if (o.npaths > 1)
            errors += report(&o, ws, 1, "baseline", seconds);
        fflush(stdout);
        if (errors)
            rc = 3;
    } else if (rc == 0) {
        rc = 3; /* no go: stdin closed */
    }
    for (int i = 0; i < o.clients; i++) {
        for (int k = 0; k < o.npaths; k++) {
            mongoc_collection_destroy(ws[i].c[k].coll);
            mongoc_client_destroy(ws[i].c[k].client);
            free(ws[i].c[k].lat_us);
        }
    }
    free(ws);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&go);
    for (int k = 0; k < o.npaths; k++)
        mongoc_uri_destroy(uris[k]);
    mongoc_cleanup();
    return rc;
}
