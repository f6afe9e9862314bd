/*
 * Per-tenant Redis ACL users: see acl.h for the picture.
 *
 * A provisioning request, on the worker's loop:
 *
 *   provision --numeric host--> connect --> AUTH svc + ACL SETUSER queued (hiredis)
 *       |                          ^            |
 *       '--uv_getaddrinfo-----------'            v
 *                                     on_auth (error: fail) / on_setuser (+OK: known, cb(0))
 *   timer (connect_ms) ---------------------> fail: cb(TG_ETIMEOUT)
 *   cancel (session closing) ---------------> released, no callback
 *
 * Releasing closes the control connection (redisAsyncFree; inside a hiredis
 * callback hiredis defers it until the callback returns) and the timer. hiredis
 * may still call our reply callbacks while it frees the context (with a NULL
 * reply): they see `done` and return. So the request's memory is freed only
 * in the timer's close callback -- a later loop phase, when hiredis has
 * finished with it -- and once the resolver, if any, has called back.
 * A NULL reply while not done means hiredis is freeing the context itself
 * (connect refused, I/O error, EOF): the request then forgets it.
 *
 * Which tenants were provisioned is remembered per listener (and config
 * generation), shared by the workers under a mutex. Provisioning costs a
 * control connection and an ACL change on the server, so doing it once per
 * process rather than once per worker is worth a lock that is taken only when
 * a session authenticates as a tenant its backend connection does not use yet
 * (a hash lookup, never held across I/O, never on the data path). A reload
 * builds a new listener state, so a changed acl_key_file, template or
 * key_prefix is provisioned again. Two workers may provision the same tenant
 * at once: ACL SETUSER with the same rules is idempotent and atomic in Redis
 * 7, and re-provisioning a user does not disconnect its clients.
 */
#include "protocols/redis/acl.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"
#include "proxy/jwt.h"
#include "proxy/log.h"

#define ACL_BUCKETS 1024
#define ACL_KNOWN_MAX 65536 /* remembered tenants; the set starts over beyond this */
#define ACL_PREFIX_MAX 1024 /* expanded key_prefix */
#define ACL_WHY_MAX 200

/* ---- pure helpers ------------------------------------------------------------------------ */

/* tpl with "{tenant}" replaced by tenant; returns the length or TG_EINVAL when out of room. */
static int expand(const char *tpl, const char *tenant, char *out, size_t cap)
{
    size_t n = 0, tl = strlen(tenant);
    for (const char *p = tpl; *p;) {
        const char *piece = p;
        size_t len = 1;
        if (strncmp(p, "{tenant}", 8) == 0) {
            piece = tenant;
            len = tl;
            p += 8;
        } else {
            p++;
        }
        if (cap == 0 || len > cap - 1 - n)
            return TG_EINVAL;
        memcpy(out + n, piece, len);
        n += len;
    }
    if (cap == 0)
        return TG_EINVAL;
    out[n] = '\0';
    return (int)n;
}

int tg_redis_acl_user_name(const char *tpl, const char *tenant, char *out, size_t cap)
{
    return expand(tpl, tenant, out, cap);
}

void tg_redis_acl_secret(const uint8_t *key, size_t keylen, const char *tenant,
                         char out[TG_REDIS_ACL_SECRET_LEN + 1])
{
    static const char label[] = "tenantgate redis acl user"; /* sizeof includes the NUL */
    uint8_t msg[sizeof(label) + TG_TENANT_MAX];
    size_t tl = strnlen(tenant, TG_TENANT_MAX);
    memcpy(msg, label, sizeof(label));
    memcpy(msg + sizeof(label), tenant, tl);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, msg, sizeof(label) + tl, mac, &maclen) ||
        maclen != TG_REDIS_ACL_SECRET_LEN / 2) {
        /* cannot happen with SHA-256; never fall back to a guessable value */
        abort();
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < maclen; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[TG_REDIS_ACL_SECRET_LEN] = '\0';
    OPENSSL_cleanse(mac, sizeof(mac));
}

static const char *const setuser_head[] = {"ACL", "SETUSER"};

/* The rule arguments after the user name; NULL entries are filled per call. */
enum { A_RESET, A_ON, A_PASS, A_RESETKEYS, A_KEYS, A_RESETCHANNELS, A_CHANNELS, A_NOCMDS, A_N };

int tg_redis_acl_setuser_argv(const tg_redis_table *t, const char *user, const char *secret,
                              tg_slice prefix, tg_redis_acl_argv *a)
{
    memset(a, 0, sizeof(*a));
    uint32_t ncmds = tg_redis_table_count(t);
    if (ncmds == 0 || !tg_redis_table_at(t, 0))
        return TG_EINVAL;
    size_t glob = tg_redis_escape_glob(prefix, NULL, 0);
    static const char *const fixed[A_N] = {"reset",         "on", NULL,   "resetkeys", NULL,
                                           "resetchannels", NULL, "-@all"};
    /* pass 1: count and size */
    uint32_t argc = 3 + A_N;
    size_t bytes = strlen(user) + 1 + 1 + strlen(secret) + 1 + 2 * (1 + glob + 1 + 1);
    for (size_t i = 0; i < 2; i++)
        bytes += strlen(setuser_head[i]) + 1;
    for (size_t i = 0; i < A_N; i++)
        bytes += fixed[i] ? strlen(fixed[i]) + 1 : 0;
    for (uint32_t i = 0; i < ncmds; i++) {
        const tg_redis_command *c = tg_redis_table_at(t, i);
        if (tg_redis_acl_grants(c)) {
            argc++;
            bytes += 1 + c->name_len + 1;
        }
    }
    size_t head = argc * (sizeof(char *) + sizeof(size_t));
    uint8_t *block = malloc(head + bytes);
    if (!block)
        return TG_ENOMEM;
    a->argv = (const char **)(void *)block;
    a->len = (size_t *)(void *)(block + argc * sizeof(char *));
    a->bytes = head + bytes;
    char *p = (char *)block + head;
    uint32_t k = 0;
/* appends the concatenation of up to three pieces as one argument */
#define PUT3(s1, l1, s2, l2, s3, l3)                                                               \
    do {                                                                                           \
        a->argv[k] = p;                                                                            \
        memcpy(p, (s1), (l1));                                                                     \
        memcpy(p + (l1), (s2), (l2));                                                              \
        memcpy(p + (l1) + (l2), (s3), (l3));                                                       \
        a->len[k] = (l1) + (l2) + (l3);                                                            \
        p += a->len[k];                                                                            \
        *p++ = '\0';                                                                               \
        k++;                                                                                       \
    } while (0)
#define PUT(s) PUT3((s), strlen(s), "", 0, "", 0)
    PUT(setuser_head[0]);
    PUT(setuser_head[1]);
    PUT(user);
    for (size_t i = 0; i < A_N; i++) {
        if (i == A_PASS) {
            PUT3(">", 1, secret, strlen(secret), "", 0);
        } else if (i == A_KEYS || i == A_CHANNELS) {
            a->argv[k] = p;
            *p = i == A_KEYS ? '~' : '&';
            tg_redis_escape_glob(prefix, (uint8_t *)p + 1, glob);
            p[1 + glob] = '*';
            p[2 + glob] = '\0';
            a->len[k++] = 2 + glob;
            p += 3 + glob;
        } else {
            PUT(fixed[i]);
        }
    }
    for (uint32_t i = 0; i < ncmds; i++) {
        const tg_redis_command *c = tg_redis_table_at(t, i);
        if (tg_redis_acl_grants(c))
            PUT3("+", 1, c->name, c->name_len, "", 0);
    }
#undef PUT
#undef PUT3
    a->argc = k;
    return 0;
}

void tg_redis_acl_argv_free(tg_redis_acl_argv *a)
{
    if (a->argv) {
        OPENSSL_cleanse(a->argv, a->bytes);
        free(a->argv);
    }
    memset(a, 0, sizeof(*a));
}

/* ---- the listener's ACL users ------------------------------------------------------------ */

typedef struct known {
    struct known *next;
    char tenant[TG_TENANT_MAX + 1];
} known;

struct tg_redis_acl {
    const tg_listener_config *cfg;
    const tg_redis_table *table;
    char host[256]; /* the backend's host, without brackets */
    int port;
    bool numeric; /* host is an IP address: no resolving */
    uv_mutex_t lock;
    known *buckets[ACL_BUCKETS]; /* guarded by lock */
    uint32_t count;              /* guarded by lock */
};

static uint32_t bucket_of(const char *tenant)
{
    uint32_t h = 2166136261u;
    for (const char *p = tenant; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h % ACL_BUCKETS;
}

static void known_clear(tg_redis_acl *a)
{
    for (size_t i = 0; i < ACL_BUCKETS; i++) {
        while (a->buckets[i]) {
            known *k = a->buckets[i];
            a->buckets[i] = k->next;
            free(k);
        }
    }
    a->count = 0;
}

tg_redis_acl *tg_redis_acl_new(const tg_listener_config *cfg, const tg_redis_table *t, char *err,
                               size_t errlen)
{
    tg_redis_acl *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    uint16_t port;
    if (tg_config_split_address(cfg->backend.address, a->host, sizeof(a->host), &port) < 0) {
        snprintf(err, errlen, "listener %s: backend.address: not a host:port address", cfg->name);
        free(a);
        return NULL;
    }
    if (uv_mutex_init(&a->lock) < 0) {
        snprintf(err, errlen, "out of memory");
        free(a);
        return NULL;
    }
    struct in6_addr any;
    a->numeric =
        uv_inet_pton(AF_INET, a->host, &any) == 0 || uv_inet_pton(AF_INET6, a->host, &any) == 0;
    a->port = port;
    a->cfg = cfg;
    a->table = t;
    return a;
}

void tg_redis_acl_free(tg_redis_acl *a)
{
    if (!a)
        return;
    known_clear(a);
    uv_mutex_destroy(&a->lock);
    free(a);
}

int tg_redis_acl_credentials(const tg_redis_acl *a, const char *tenant,
                             char user[TG_REDIS_ACL_USER_MAX + 1],
                             char secret[TG_REDIS_ACL_SECRET_LEN + 1])
{
    const tg_redis_config *r = &a->cfg->redis;
    if (tg_redis_acl_user_name(r->acl_user_template, tenant, user, TG_REDIS_ACL_USER_MAX + 1) < 0)
        return TG_EINVAL;
    tg_redis_acl_secret((const uint8_t *)r->acl_key.data, r->acl_key.len, tenant, secret);
    return 0;
}

bool tg_redis_acl_known(tg_redis_acl *a, const char *tenant)
{
    bool found = false;
    uint32_t b = bucket_of(tenant);
    uv_mutex_lock(&a->lock);
    for (known *k = a->buckets[b]; k && !found; k = k->next)
        found = strcmp(k->tenant, tenant) == 0;
    uv_mutex_unlock(&a->lock);
    return found;
}

static void known_add(tg_redis_acl *a, const char *tenant)
{
    uint32_t b = bucket_of(tenant);
    uv_mutex_lock(&a->lock);
    known *k = a->buckets[b];
    while (k && strcmp(k->tenant, tenant) != 0)
        k = k->next;
    if (!k) {
        if (a->count >= ACL_KNOWN_MAX)
            known_clear(a); /* bounded: the cost is one more provisioning per tenant */
        k = calloc(1, sizeof(*k));
        if (k) { /* out of memory: not remembered, provisioned again next time */
            snprintf(k->tenant, sizeof(k->tenant), "%s", tenant);
            k->next = a->buckets[b];
            a->buckets[b] = k;
            a->count++;
        }
    }
    uv_mutex_unlock(&a->lock);
}

void tg_redis_acl_forget(tg_redis_acl *a, const char *tenant)
{
    uint32_t b = bucket_of(tenant);
    uv_mutex_lock(&a->lock);
    for (known **link = &a->buckets[b]; *link; link = &(*link)->next) {
        if (strcmp((*link)->tenant, tenant) == 0) {
            known *k = *link;
            *link = k->next;
            free(k);
            a->count--;
            break;
        }
    }
    uv_mutex_unlock(&a->lock);
}

/* ---- provisioning ------------------------------------------------------------------------ */

struct tg_redis_acl_req {
    tg_redis_acl *acl;
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    redisAsyncContext *ac; /* NULL once released or freed by hiredis */
    tg_redis_acl_cb cb;    /* NULL once cancelled */
    void *ud;
    tg_redis_acl_argv setuser;
    char tenant[TG_TENANT_MAX + 1];
    char user[TG_REDIS_ACL_USER_MAX + 1];
    char secret[TG_REDIS_ACL_SECRET_LEN + 1];
    bool resolving;  /* the resolver has not called back */
    bool timer_open; /* the timer's close callback has not run */
    bool done;       /* finished or cancelled: hiredis callbacks are ignored */
};

static void maybe_free(tg_redis_acl_req *q)
{
    if (!q->timer_open && !q->resolving)
        free(q);
}

static void on_timer_closed(uv_handle_t *h)
{
    tg_redis_acl_req *q = h->data;
    q->timer_open = false;
    maybe_free(q);
}

/* Closes everything; the memory goes once the timer (and the resolver) called back. */
static void release(tg_redis_acl_req *q)
{
    q->done = true;
    uv_timer_stop(&q->timer);
    if (q->ac) {
        redisAsyncContext *ac = q->ac;
        q->ac = NULL;
        redisAsyncFree(ac); /* deferred by hiredis when inside one of its callbacks */
    }
    if (q->resolving)
        uv_cancel((uv_req_t *)&q->gai);
    tg_redis_acl_argv_free(&q->setuser);
    OPENSSL_cleanse(q->secret, sizeof(q->secret));
    if (!uv_is_closing((uv_handle_t *)&q->timer))
        uv_close((uv_handle_t *)&q->timer, on_timer_closed);
}

static void finish(tg_redis_acl_req *q, int status, const char *why)
{
    if (q->done)
        return;
    tg_redis_acl_cb cb = q->cb;
    void *ud = q->ud;
    const tg_listener_config *cfg = q->acl->cfg;
    if (status == 0)
        tg_log(TG_LOG_INFO, "redis ACL user provisioned", TG_FS("listener", cfg->name),
               TG_FS("tenant", q->tenant), TG_FS("user", q->user), TG_FEND);
    else
        tg_log(TG_LOG_ERROR, "redis ACL user provisioning failed", TG_FS("listener", cfg->name),
               TG_FS("tenant", q->tenant), TG_FS("user", q->user),
               TG_FS("backend", cfg->backend.address), TG_FS("error", why), TG_FEND);
    release(q);
    if (cb)
        cb(ud, status, why);
}

/* Blanks every occurrence of secret (len >= 4) in s. */
static void blank(char *s, const char *secret, size_t len)
{
    if (len < 4)
        return;
    for (char *p = s; (p = strstr(p, secret)) != NULL; p += len)
        memset(p, '*', len);
}

/* A Redis error text for logs: printable, bounded, with the secrets blanked. */
static void error_text(const tg_redis_acl_req *q, const char *what, const redisReply *r, char *out,
                       size_t cap)
{
    char text[ACL_WHY_MAX];
    size_t n = 0;
    for (size_t i = 0; r->str && i < r->len && n + 1 < sizeof(text); i++) {
        char ch = r->str[i];
        text[n++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    text[n] = '\0';
    blank(text, q->secret, strlen(q->secret));
    const tg_secret *pw = &q->acl->cfg->backend.password;
    if (pw->data && pw->len < sizeof(text)) {
        char pws[ACL_WHY_MAX];
        memcpy(pws, pw->data, pw->len);
        pws[pw->len] = '\0';
        blank(text, pws, pw->len);
        OPENSSL_cleanse(pws, sizeof(pws));
    }
    snprintf(out, cap, "%s: %s", what, text);
}

/* A NULL reply while not done: hiredis is freeing the context (refused, I/O error, EOF). */
static void lost(tg_redis_acl_req *q, const redisAsyncContext *ac)
{
    char why[ACL_WHY_MAX];
    snprintf(why, sizeof(why), "control connection: %s",
             ac->err ? ac->errstr : "closed by the server");
    q->ac = NULL;
    finish(q, TG_EIO, why);
}

/*
 * The reply r to one command of q: true when it succeeded and q goes on.
 * Otherwise q is finished here -- lost connection, or the server's error as
 * `what` with `status` -- unless it already was.
 */
static bool step_ok(tg_redis_acl_req *q, const redisAsyncContext *ac, const redisReply *r,
                    const char *what, int status)
{
    if (q->done)
        return false;
    if (!r) {
        lost(q, ac);
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char why[ACL_WHY_MAX + 64];
        error_text(q, what, r, why, sizeof(why));
        finish(q, status, why);
        return false;
    }
    return true;
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)step_ok(priv, ac, reply, "service user AUTH refused", TG_EAUTH);
}

static void on_setuser(redisAsyncContext *ac, void *reply, void *priv)
{
    tg_redis_acl_req *q = priv;
    if (!step_ok(q, ac, reply, "ACL SETUSER refused", TG_EIO))
        return;
    known_add(q->acl, q->tenant);
    finish(q, 0, NULL);
}

/*
 * hiredis 0.14's libuv adapter returns at once when libuv reports a poll error
 * (status < 0: what a refused connect or a reset gives, after which libuv stops
 * the handle), so hiredis would never learn and the request would only end at
 * its timeout. Every (re)start of the adapter's uv_poll goes through
 * poll_events instead, which -- as hiredis 1.x's adapter does -- hands an error
 * to hiredis as the events it waited for; hiredis then finds the socket error
 * itself. The adapter's bookkeeping (events, cleanup, attach) is kept as is.
 */
static void poll_events(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;
    int ev = status < 0 ? p->events : events;
    if (p->context && (ev & UV_READABLE))
        redisAsyncHandleRead(p->context);
    if (p->context && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->context);
}

static void poll_restart(void *privdata)
{
    redisLibuvEvents *p = privdata;
    if (p->events)
        uv_poll_start(&p->handle, p->events, poll_events);
}

static void poll_add_read(void *privdata)
{
    redisLibuvAddRead(privdata);
    poll_restart(privdata);
}

static void poll_del_read(void *privdata)
{
    redisLibuvDelRead(privdata);
    poll_restart(privdata);
}

static void poll_add_write(void *privdata)
{
    redisLibuvAddWrite(privdata);
    poll_restart(privdata);
}

static void poll_del_write(void *privdata)
{
    redisLibuvDelWrite(privdata);
    poll_restart(privdata);
}

/* Connects to the numeric address ip and queues AUTH + ACL SETUSER. Returns 0 or < 0 with why. */
static int start_connect(tg_redis_acl_req *q, const char *ip, char *why, size_t whylen)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, q->acl->port);
    if (!ac) {
        snprintf(why, whylen, "out of memory");
        return TG_ENOMEM;
    }
    if (ac->err) {
        snprintf(why, whylen, "control connection: %s", ac->errstr);
        redisAsyncFree(ac);
        return TG_EIO;
    }
    if (redisLibuvAttach(ac, q->loop) != REDIS_OK) {
        snprintf(why, whylen, "control connection: cannot watch its socket");
        redisAsyncFree(ac);
        return TG_EIO;
    }
    ac->ev.addRead = poll_add_read;
    ac->ev.delRead = poll_del_read;
    ac->ev.addWrite = poll_add_write;
    ac->ev.delWrite = poll_del_write;
    ac->data = q;
    q->ac = ac;
    const tg_backend_config *b = &q->acl->cfg->backend;
    int rc = REDIS_OK;
    if (b->password.data) { /* as the session's own service login: AUTH [user] password */
        const char *argv[3];
        size_t len[3];
        int n = 0;
        argv[n] = "AUTH";
        len[n++] = 4;
        if (b->user) {
            argv[n] = b->user;
            len[n++] = strlen(b->user);
        }
        argv[n] = b->password.data;
        len[n++] = b->password.len;
        rc = redisAsyncCommandArgv(ac, on_auth, q, n, argv, len);
    }
    if (rc == REDIS_OK)
        rc = redisAsyncCommandArgv(ac, on_setuser, q, (int)q->setuser.argc, q->setuser.argv,
                                   q->setuser.len);
    if (rc != REDIS_OK) {
        snprintf(why, whylen, "control connection: cannot queue commands");
        return TG_ENOMEM; /* the caller releases q, which frees ac */
    }
    return 0;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    tg_redis_acl_req *q = req->data;
    q->resolving = false;
    if (q->done) {
        uv_freeaddrinfo(res);
        maybe_free(q);
        return;
    }
    char why[ACL_WHY_MAX];
    char ip[64] = "";
    if (status < 0 || !res) {
        snprintf(why, sizeof(why), "cannot resolve %.100s: %s", q->acl->host,
                 status < 0 ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        finish(q, TG_EIO, why);
        return;
    }
    if (res->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)(void *)res->ai_addr, ip, sizeof(ip));
    else
        uv_ip4_name((const struct sockaddr_in *)(void *)res->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    int r = start_connect(q, ip, why, sizeof(why));
    if (r < 0)
        finish(q, r, why);
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, TG_ETIMEOUT, "timed out");
}

tg_redis_acl_req *tg_redis_acl_provision(tg_redis_acl *a, uv_loop_t *loop, const char *tenant,
                                         tg_redis_acl_cb cb, void *ud, int *err)
{
    tg_redis_acl_req *q = calloc(1, sizeof(*q));
    if (!q) {
        *err = TG_ENOMEM;
        return NULL;
    }
    q->acl = a;
    q->loop = loop;
    q->cb = cb;
    q->ud = ud;
    snprintf(q->tenant, sizeof(q->tenant), "%s", tenant);
    char prefix[ACL_PREFIX_MAX];
    int plen = expand(a->cfg->redis.key_prefix, tenant, prefix, sizeof(prefix));
    int r = plen < 0 ? plen : tg_redis_acl_credentials(a, tenant, q->user, q->secret);
    if (r == 0)
        r = tg_redis_acl_setuser_argv(a->table, q->user, q->secret,
                                      (tg_slice){(const uint8_t *)prefix, (size_t)plen},
                                      &q->setuser);
    if (r < 0 || uv_timer_init(loop, &q->timer) < 0) {
        tg_redis_acl_argv_free(&q->setuser);
        OPENSSL_cleanse(q->secret, sizeof(q->secret));
        free(q);
        *err = r < 0 ? r : TG_EIO;
        return NULL;
    }
    q->timer.data = q;
    q->timer_open = true;
    uint32_t ms = a->cfg->timeouts.connect_ms ? a->cfg->timeouts.connect_ms : 5000;
    uv_timer_start(&q->timer, on_timeout, ms, 0);
    char why[ACL_WHY_MAX];
    if (a->numeric) {
        r = start_connect(q, a->host, why, sizeof(why));
    } else {
        char port[8];
        snprintf(port, sizeof(port), "%d", a->port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        q->gai.data = q;
        r = uv_getaddrinfo(loop, &q->gai, on_resolved, a->host, port, &hints) < 0 ? TG_EIO : 0;
        q->resolving = r == 0;
        if (r < 0)
            snprintf(why, sizeof(why), "cannot start resolving %.100s", a->host);
    }
    if (r < 0) {
        tg_log(TG_LOG_ERROR, "redis ACL user provisioning failed", TG_FS("listener", a->cfg->name),
               TG_FS("tenant", tenant), TG_FS("error", why), TG_FEND);
        q->cb = NULL;
        release(q);
        *err = r;
        return NULL;
    }
    return q;
}

void tg_redis_acl_cancel(tg_redis_acl_req *q)
{
    if (!q || q->done)
        return;
    q->cb = NULL;
    release(q);
}
