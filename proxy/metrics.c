/*
 * The metrics registry and its Prometheus text rendering (see metrics.h).
 *
 *   tg_metrics_listener("pg", "postgres", w) --mutex--> entry "pg" --> shards[w] (64-byte aligned)
 *   worker w: TG_STAT_ADD(shard->...)             (no lock, single writer)
 *   tg_metrics_render --mutex--> for each family, for each entry: sum shards[0..workers)
 *                              + process metrics --> one malloc'd text buffer
 *
 * Each entry owns one aligned_alloc'd block of `workers` shards whose stride
 * is sizeof(tg_listener_stats) rounded up to 64 bytes, so two workers never
 * write the same cache line. The mutex guards the entry list only (creation
 * and rendering); shards are never moved or freed before tg_metrics_free.
 *
 * Output follows the text exposition format 0.0.4: one # HELP and # TYPE per
 * family, label values escaped (\\, \", \n). Every rejection reason and every
 * auth failure reason is emitted for every listener, zeros included, so the
 * set of series is stable from the first scrape on.
 */
#include "proxy/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "proxy/error.h"

#ifndef TG_VERSION
#define TG_VERSION "dev"
#endif

#define TG_CACHE_LINE 64

/* Shards of one listener, `workers` of them, `stride` bytes apart. */
typedef struct entry {
    char *name;
    char *protocol;
    unsigned char *shards; /* aligned_alloc(64, workers * stride) */
} entry;

struct tg_metrics {
    pthread_mutex_t mu; /* guards entries/n/cap */
    uint32_t workers;
    size_t stride;
    entry *entries;
    size_t n, cap;
    double start;                /* process start, unix seconds */
    tg_registry_stats *registry; /* one per worker, 64-byte aligned */
    size_t registry_stride;
};

static const char *const reject_labels[] = {
#define TG_REJECT_LABEL(name) #name,
    TG_REJECT_MAP(TG_REJECT_LABEL)
#undef TG_REJECT_LABEL
};

/* Upper-case enum names of jwt results; lower-cased when rendered ("BAD_SIGNATURE" ->
 * "bad_signature"). */
static const char *const jwt_names[] = {
#define TG_JWT_NAME(name, desc) #name,
    TG_JWT_RESULT_MAP(TG_JWT_NAME)
#undef TG_JWT_NAME
};

_Static_assert(sizeof(reject_labels) / sizeof(reject_labels[0]) == TG_REJECT_COUNT,
               "one label per reject reason");
_Static_assert(sizeof(jwt_names) / sizeof(jwt_names[0]) == TG_JWT_RESULT_COUNT,
               "one label per jwt result");

static const uint64_t hist_bounds_us[TG_HIST_BUCKETS] = TG_HIST_BOUNDS_US;

/*
 * The process's start time in unix seconds: boot time (/proc/stat btime) plus
 * the start offset in clock ticks (/proc/self/stat field 22). Falls back to
 * now, which is close since the registry is made at startup.
 */
static double process_start_time(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double fallback = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    char buf[1024];
    unsigned long long btime = 0, ticks = 0;
    long hz = sysconf(_SC_CLK_TCK);

    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return fallback;
    while (fgets(buf, sizeof(buf), f)) {
        if (sscanf(buf, "btime %llu", &btime) == 1)
            break;
    }
    fclose(f);
    f = fopen("/proc/self/stat", "re");
    if (!f)
        return fallback;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p || btime == 0 || hz <= 0)
        return fallback;
    /* After ')': field 3 (state) ... field 22 (starttime); skip 19 fields. */
    p++;
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p, " %llu", &ticks) != 1)
        return fallback;
    return (double)btime + (double)ticks / (double)hz;
}

tg_metrics *tg_metrics_new(uint32_t workers)
{
    tg_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->workers = workers ? workers : 1;
    m->stride = (sizeof(tg_listener_stats) + TG_CACHE_LINE - 1) & ~(size_t)(TG_CACHE_LINE - 1);
    m->start = process_start_time();
    m->registry_stride =
        (sizeof(tg_registry_stats) + TG_CACHE_LINE - 1) & ~(size_t)(TG_CACHE_LINE - 1);
    m->registry = aligned_alloc(TG_CACHE_LINE, m->workers * m->registry_stride);
    if (!m->registry) {
        pthread_mutex_destroy(&m->mu);
        free(m);
        return NULL;
    }
    memset(m->registry, 0, m->workers * m->registry_stride);
    return m;
}

void tg_metrics_free(tg_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->entries[i].name);
        free(m->entries[i].protocol);
        free(m->entries[i].shards);
    }
    free(m->entries);
    free(m->registry);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static tg_listener_stats *shard_at(const tg_metrics *m, const entry *e, uint32_t worker)
{
    return (tg_listener_stats *)(void *)(e->shards + (size_t)worker * m->stride);
}

/* Appends a new entry; returns NULL on OOM. Called with m->mu held. */
static entry *entry_add(tg_metrics *m, const char *name, const char *protocol)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        entry *grown = realloc(m->entries, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        m->entries = grown;
        m->cap = cap;
    }
    size_t bytes = (size_t)m->workers * m->stride; /* a multiple of 64, as aligned_alloc wants */
    entry e = {strdup(name), strdup(protocol ? protocol : ""), aligned_alloc(TG_CACHE_LINE, bytes)};
    if (!e.name || !e.protocol || !e.shards) {
        free(e.name);
        free(e.protocol);
        free(e.shards);
        return NULL;
    }
    /* Zeroing the block is a valid initial state for every _Atomic uint64_t on our targets. */
    memset(e.shards, 0, bytes);
    m->entries[m->n] = e;
    return &m->entries[m->n++];
}

tg_listener_stats *tg_metrics_listener(tg_metrics *m, const char *name, const char *protocol,
                                       uint32_t worker)
{
    if (!m || !name || worker >= m->workers)
        return NULL;
    pthread_mutex_lock(&m->mu);
    entry *e = NULL;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->entries[i].name, name) == 0) {
            e = &m->entries[i]; /* the first protocol label sticks for the process's life */
            break;
        }
    }
    if (!e)
        e = entry_add(m, name, protocol);
    tg_listener_stats *s = e ? shard_at(m, e, worker) : NULL;
    pthread_mutex_unlock(&m->mu);
    return s;
}

tg_registry_stats *tg_metrics_registry(tg_metrics *m, uint32_t worker)
{
    if (!m || worker >= m->workers)
        return NULL;
    return (tg_registry_stats *)(void *)((unsigned char *)m->registry +
                                         (size_t)worker * m->registry_stride);
}

/* Orders command-table loads across workers: the highest stamp is the latest. */
static _Atomic uint64_t g_table_stamp;

void tg_metrics_set_command_table(tg_listener_stats *s, uint64_t commands, bool from_backend)
{
    uint64_t stamp = atomic_fetch_add_explicit(&g_table_stamp, 1, memory_order_relaxed) + 1;
    atomic_store_explicit(&s->table_commands, commands, memory_order_relaxed);
    atomic_store_explicit(&s->table_from_backend, from_backend ? 1 : 0, memory_order_relaxed);
    atomic_store_explicit(&s->table_stamp, stamp, memory_order_release);
}

void tg_histogram_observe(tg_histogram *h, uint64_t usec)
{
    size_t i = 0;
    while (i < TG_HIST_BUCKETS && usec > hist_bounds_us[i])
        i++; /* i == TG_HIST_BUCKETS is +Inf */
    TG_STAT_ADD(h->buckets[i], 1);
    TG_STAT_ADD(h->count, 1);
    TG_STAT_ADD(h->sum_us, usec);
}

/* ---- rendering ---- */

/* A growing output buffer with a sticky failure flag checked once at the end. */
typedef struct out {
    char *buf;
    size_t len, cap;
    bool failed;
} out;

static bool out_reserve(out *o, size_t more)
{
    if (o->failed)
        return false;
    if (o->len + more + 1 <= o->cap)
        return true;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more + 1)
        cap *= 2;
    char *grown = realloc(o->buf, cap);
    if (!grown) {
        o->failed = true;
        return false;
    }
    o->buf = grown;
    o->cap = cap;
    return true;
}

static void out_put(out *o, const char *s, size_t n)
{
    if (!out_reserve(o, n))
        return;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_puts(out *o, const char *s)
{
    out_put(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void out_printf(out *o, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        out_put(o, small, (size_t)n);
        return;
    }
    if (!out_reserve(o, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(o->buf + o->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

/* Appends a label value escaped per the exposition format: backslash, quote and newline. */
static void out_label_value(out *o, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            out_put(o, "\\\\", 2);
        else if (*p == '"')
            out_put(o, "\\\"", 2);
        else if (*p == '\n')
            out_put(o, "\\n", 2);
        else
            out_put(o, p, 1);
    }
}

/* Appends an integral number of microseconds as seconds without trailing zeros ("0.0001", "2.5",
 * "10"). */
static void out_seconds(out *o, uint64_t us)
{
    char frac[8];
    uint64_t whole = us / 1000000, part = us % 1000000;
    out_printf(o, "%llu", (unsigned long long)whole);
    if (part) {
        snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)part);
        size_t n = 6;
        while (n > 0 && frac[n - 1] == '0')
            n--;
        out_put(o, ".", 1);
        out_put(o, frac, n);
    }
}

static void out_family(out *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Starts a sample: name{listener="..."[,protocol="..."] (the caller closes the label set). */
static void out_series_start(out *o, const char *name, const entry *e, bool with_protocol)
{
    out_puts(o, name);
    out_puts(o, "{listener=\"");
    out_label_value(o, e->name);
    out_puts(o, "\"");
    if (with_protocol) {
        out_puts(o, ",protocol=\"");
        out_label_value(o, e->protocol);
        out_puts(o, "\"");
    }
}

static uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* Sums the counter at byte offset `off` of tg_listener_stats across every shard of e. */
static uint64_t sum_at(const tg_metrics *m, const entry *e, size_t off)
{
    uint64_t total = 0;
    for (uint32_t w = 0; w < m->workers; w++)
        total +=
            load((const _Atomic uint64_t *)(const void *)((const unsigned char *)shard_at(m, e, w) +
                                                          off));
    return total;
}

#define SUM(m, e, field) sum_at((m), (e), offsetof(tg_listener_stats, field))

/* A counter or gauge family with one sample per listener. */
static void render_simple(out *o, const tg_metrics *m, const char *name, const char *type,
                          const char *help, size_t off, bool with_protocol)
{
    out_family(o, name, type, help);
    for (size_t i = 0; i < m->n; i++) {
        const entry *e = &m->entries[i];
        out_series_start(o, name, e, with_protocol);
        out_printf(o, "} %llu\n", (unsigned long long)sum_at(m, e, off));
    }
}

static void render_bytes(out *o, const tg_metrics *m)
{
    static const struct {
        const char *dir;
        size_t off;
    } dirs[] = {
        {"client_in", offsetof(tg_listener_stats, bytes_client_in)},
        {"client_out", offsetof(tg_listener_stats, bytes_client_out)},
        {"backend_in", offsetof(tg_listener_stats, bytes_backend_in)},
        {"backend_out", offsetof(tg_listener_stats, bytes_backend_out)},
    };
    const char *name = "tenantgate_bytes_total";
    out_family(o, name, "counter", "Bytes relayed, by direction.");
    for (size_t i = 0; i < m->n; i++) {
        for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
            out_series_start(o, name, &m->entries[i], false);
            out_printf(o, ",direction=\"%s\"} %llu\n", dirs[d].dir,
                       (unsigned long long)sum_at(m, &m->entries[i], dirs[d].off));
        }
    }
}

static void render_rejected(out *o, const tg_metrics *m)
{
    const char *name = "tenantgate_messages_rejected_total";
    out_family(o, name, "counter", "Messages or connections refused, by reason.");
    for (size_t i = 0; i < m->n; i++) {
        for (int r = 0; r < TG_REJECT_COUNT; r++) {
            out_series_start(o, name, &m->entries[i], false);
            out_puts(o, ",reason=\"");
            out_label_value(o, reject_labels[r]);
            out_printf(o, "\"} %llu\n",
                       (unsigned long long)sum_at(m, &m->entries[i],
                                                  offsetof(tg_listener_stats, messages_rejected) +
                                                      (size_t)r * sizeof(_Atomic uint64_t)));
        }
    }
}

/* Appends the jwt result's label: its enum name in lower case ("bad_signature"). */
static void out_jwt_label(out *o, int r)
{
    char label[32];
    size_t n = 0;
    for (const char *p = jwt_names[r]; *p && n < sizeof(label) - 1; p++)
        label[n++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
    label[n] = '\0';
    out_label_value(o, label);
}

static void render_auth(out *o, const tg_metrics *m)
{
    const char *name = "tenantgate_auth_total";
    out_family(o, name, "counter", "Successful tenant authentications.");
    for (size_t i = 0; i < m->n; i++) {
        out_series_start(o, name, &m->entries[i], false);
        out_printf(o, ",result=\"ok\"} %llu\n",
                   (unsigned long long)SUM(m, &m->entries[i], auth_ok));
    }
    name = "tenantgate_auth_failures_total";
    out_family(o, name, "counter", "Failed tenant authentications, by reason.");
    for (size_t i = 0; i < m->n; i++) {
        for (int r = 0; r < TG_JWT_RESULT_COUNT; r++) {
            if (r == TG_JWT_OK || r == TG_JWT_PENDING)
                continue;
            out_series_start(o, name, &m->entries[i], false);
            out_puts(o, ",reason=\"");
            out_jwt_label(o, r);
            out_printf(o, "\"} %llu\n",
                       (unsigned long long)sum_at(m, &m->entries[i],
                                                  offsetof(tg_listener_stats, auth_failed) +
                                                      (size_t)r * sizeof(_Atomic uint64_t)));
        }
    }
}

/* A histogram family: cumulative le buckets (seconds), +Inf, _sum (seconds), _count. */
static void render_histogram(out *o, const tg_metrics *m, const char *name, const char *help,
                             size_t off)
{
    char sample[96];
    out_family(o, name, "histogram", help);
    for (size_t i = 0; i < m->n; i++) {
        const entry *e = &m->entries[i];
        uint64_t cumulative = 0;
        snprintf(sample, sizeof(sample), "%s_bucket", name);
        for (size_t b = 0; b <= TG_HIST_BUCKETS; b++) {
            cumulative +=
                sum_at(m, e, off + offsetof(tg_histogram, buckets) + b * sizeof(_Atomic uint64_t));
            out_series_start(o, sample, e, false);
            out_puts(o, ",le=\"");
            if (b < TG_HIST_BUCKETS)
                out_seconds(o, hist_bounds_us[b]);
            else
                out_puts(o, "+Inf");
            out_printf(o, "\"} %llu\n", (unsigned long long)cumulative);
        }
        snprintf(sample, sizeof(sample), "%s_sum", name);
        out_series_start(o, sample, e, false);
        out_puts(o, "} ");
        out_seconds(o, sum_at(m, e, off + offsetof(tg_histogram, sum_us)));
        out_puts(o, "\n");
        snprintf(sample, sizeof(sample), "%s_count", name);
        out_series_start(o, sample, e, false);
        /* Reading count separately may lag the buckets by an in-flight observation; harmless. */
        out_printf(o, "} %llu\n",
                   (unsigned long long)sum_at(m, e, off + offsetof(tg_histogram, count)));
    }
}

/* The command table of each listener that loaded one, from its latest shard. */
static void render_command_table(out *o, const tg_metrics *m)
{
    const char *name = "tenantgate_command_table_commands";
    out_family(
        o, name, "gauge",
        "Commands in the table new sessions use, by where it came from (backend or builtin).");
    for (size_t i = 0; i < m->n; i++) {
        const entry *e = &m->entries[i];
        const tg_listener_stats *latest = NULL;
        uint64_t best = 0;
        for (uint32_t w = 0; w < m->workers; w++) {
            const tg_listener_stats *s = shard_at(m, e, w);
            uint64_t stamp = atomic_load_explicit(&s->table_stamp, memory_order_acquire);
            if (stamp > best) {
                best = stamp;
                latest = s;
            }
        }
        if (!latest)
            continue;
        out_series_start(o, name, e, false);
        out_printf(o, ",source=\"%s\"} %llu\n",
                   load(&latest->table_from_backend) ? "backend" : "builtin",
                   (unsigned long long)load(&latest->table_commands));
    }
}

static const char *const registry_lookup_labels[] = {
#define TG_REGISTRY_LOOKUP_LABEL(name) #name,
    TG_REGISTRY_LOOKUP_MAP(TG_REGISTRY_LOOKUP_LABEL)
#undef TG_REGISTRY_LOOKUP_LABEL
};
static const char *const kick_labels[] = {
#define TG_KICK_LABEL(name, label, desc) label,
    TG_KICK_MAP(TG_KICK_LABEL)
#undef TG_KICK_LABEL
};

/* Sum of one registry counter over the workers' shards. */
static uint64_t registry_sum(tg_metrics *m, size_t off)
{
    uint64_t sum = 0;
    for (uint32_t w = 0; w < m->workers; w++)
        sum += load((const _Atomic uint64_t *)(const void *)((const unsigned char *)
                                                                 tg_metrics_registry(m, w) +
                                                             off));
    return sum;
}

/* The tenant registry: nothing when no worker has one configured. */
static void render_registry(out *o, tg_metrics *m)
{
    uint64_t up = 1, configured = 0;
    for (uint32_t w = 0; w < m->workers; w++) {
        const tg_registry_stats *r = tg_metrics_registry(m, w);
        if (load(&r->configured)) {
            configured = 1;
            up &= load(&r->up) ? 1 : 0;
        }
    }
    if (!configured)
        return;
    out_family(o, "tenantgate_registry_up", "gauge",
               "1 while every worker can ask the tenant registry and receives its invalidations.");
    out_printf(o, "tenantgate_registry_up %llu\n", (unsigned long long)up);
    const char *name = "tenantgate_registry_lookups_total";
    out_family(o, name, "counter", "Tenant registry answers at authentication, by result.");
    for (int r = 0; r < TG_REGISTRY_LOOKUP_COUNT; r++)
        out_printf(o, "%s{result=\"%s\"} %llu\n", name, registry_lookup_labels[r],
                   (unsigned long long)registry_sum(m, offsetof(tg_registry_stats, lookups) +
                                                           (size_t)r * sizeof(_Atomic uint64_t)));
    static const struct {
        const char *name, *help;
        size_t off;
    } simple[] = {
        {"tenantgate_registry_cache_hits_total", "Authentications answered from the cache.",
         offsetof(tg_registry_stats, cache_hits)},
        {"tenantgate_registry_cache_misses_total", "Authentications that asked the registry.",
         offsetof(tg_registry_stats, cache_misses)},
        {"tenantgate_registry_events_total", "Invalidations received from the registry.",
         offsetof(tg_registry_stats, events)},
        {"tenantgate_registry_reconnects_total", "Connections to the registry (re)established.",
         offsetof(tg_registry_stats, reconnects)},
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        out_family(o, simple[i].name, "counter", simple[i].help);
        out_printf(o, "%s %llu\n", simple[i].name,
                   (unsigned long long)registry_sum(m, simple[i].off));
    }
    name = "tenantgate_sessions_kicked_total";
    out_family(o, name, "counter", "Open sessions ended by the tenant registry, by reason.");
    for (int r = 0; r < TG_KICK_COUNT; r++)
        out_printf(o, "%s{reason=\"%s\"} %llu\n", name, kick_labels[r],
                   (unsigned long long)registry_sum(m, offsetof(tg_registry_stats, kicks) +
                                                           (size_t)r * sizeof(_Atomic uint64_t)));
}

/* Resident set size in bytes from /proc/self/statm (field 2, in pages); -1 when unavailable. */
static long long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return -1;
    unsigned long long size = 0, rss = 0;
    int got = fscanf(f, "%llu %llu", &size, &rss);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (got != 2 || page <= 0)
        return -1;
    return (long long)(rss * (unsigned long long)page);
}

/* Entries of /proc/self/fd, minus the one opendir itself holds; -1 when unavailable. */
static long long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long long n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

static void render_process(out *o, const tg_metrics *m)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        out_family(o, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.");
        out_printf(o, "process_cpu_seconds_total %.6f\n", cpu);
    }
    long long rss = resident_bytes();
    if (rss >= 0) {
        out_family(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        out_printf(o, "process_resident_memory_bytes %lld\n", rss);
    }
    long long fds = open_fds();
    if (fds >= 0) {
        out_family(o, "process_open_fds", "gauge", "Number of open file descriptors.");
        out_printf(o, "process_open_fds %lld\n", fds);
    }
    out_family(o, "process_start_time_seconds", "gauge",
               "Start time of the process since unix epoch in seconds.");
    out_printf(o, "process_start_time_seconds %.2f\n", m->start);
    out_family(o, "tenantgate_build_info", "gauge", "Build information; the value is always 1.");
    out_puts(o, "tenantgate_build_info{version=\"");
    out_label_value(o, TG_VERSION);
    out_puts(o, "\"} 1\n");
}

int tg_metrics_render(tg_metrics *m, char **outp, size_t *lenp)
{
    out o = {0};
    pthread_mutex_lock(&m->mu);
    render_simple(&o, m, "tenantgate_connections_open", "gauge", "Client connections open now.",
                  offsetof(tg_listener_stats, conns_open), true);
    render_simple(&o, m, "tenantgate_connections_total", "counter", "Client connections accepted.",
                  offsetof(tg_listener_stats, conns_total), true);
    render_bytes(&o, m);
    render_simple(&o, m, "tenantgate_messages_forwarded_total", "counter",
                  "Messages forwarded to the backend.",
                  offsetof(tg_listener_stats, messages_forwarded), false);
    render_simple(&o, m, "tenantgate_messages_rewritten_total", "counter",
                  "Messages rewritten for tenant scoping before forwarding.",
                  offsetof(tg_listener_stats, messages_rewritten), false);
    render_rejected(&o, m);
    render_auth(&o, m);
    render_simple(&o, m, "tenantgate_backend_connect_errors_total", "counter",
                  "Failed backend connection attempts.",
                  offsetof(tg_listener_stats, backend_connect_errors), false);
    render_command_table(&o, m);
    render_histogram(&o, m, "tenantgate_backend_connect_seconds", "Backend connect latency.",
                     offsetof(tg_listener_stats, backend_connect));
    render_histogram(&o, m, "tenantgate_backend_roundtrip_seconds",
                     "Time from a forwarded request to the first reply byte.",
                     offsetof(tg_listener_stats, backend_roundtrip));
    pthread_mutex_unlock(&m->mu);
    render_registry(&o, m);
    render_process(&o, m);
    if (o.failed || !o.buf) {
        free(o.buf);
        return TG_ENOMEM;
    }
    *outp = o.buf;
    *lenp = o.len;
    return 0;
}
