/*
 * Unit tests for protocols/redis/acl.c (per-tenant ACL users, allow_scripts).
 *
 *   user template + tenant --> ACL user name (bounded)
 *   key + tenant ---------------> secret == HMAC-SHA256(key, label NUL tenant), recomputed here
 *   prefix with glob characters --> ACL SETUSER arguments: ~ and & patterns escaped, then
 *                                   exactly the commands tg_redis_acl_grants() names
 *   provisioning on a real libuv loop against small fake servers on 127.0.0.1:
 *       +OK +OK ------------------> cb(0), the tenant is known; what the server read is
 *                                   AUTH svc pw + the ACL SETUSER request
 *       SETUSER refused ----------> cb(< 0), the reason without the secret, not known
 *       nothing listening --------> cb(< 0); a listener that never answers: timeout
 *       cancel -------------------> no callback, every handle closed (the loop ends)
 *       a host name --------------> resolved with uv_getaddrinfo, then as above
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/redis/acl.h"
#include "proxy/error.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static tg_redis_table *builtin;

static int setup(void **state)
{
    (void)state;
    builtin = tg_redis_table_builtin();
    return builtin ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tg_redis_table_free(builtin);
    return 0;
}

static void test_user_name(void **state)
{
    (void)state;
    char out[TG_REDIS_ACL_USER_MAX + 1];
    assert_int_equal(tg_redis_acl_user_name("tenantgate:{tenant}", "acme", out, sizeof out), 15);
    assert_string_equal(out, "tenantgate:acme");
    assert_int_equal(tg_redis_acl_user_name("{tenant}", "a-b_c", out, sizeof out), 5);
    assert_string_equal(out, "a-b_c");
    assert_int_equal(tg_redis_acl_user_name("u:{tenant}:x", "T", out, 7), 5);
    assert_string_equal(out, "u:T:x");
    /* exactly full, one byte short */
    assert_int_equal(tg_redis_acl_user_name("u:{tenant}:x", "T", out, 6), 5);
    assert_int_equal(tg_redis_acl_user_name("u:{tenant}:x", "T", out, 5), TG_EINVAL);
    assert_int_equal(tg_redis_acl_user_name("{tenant}", "abc", out, 0), TG_EINVAL);
}

static void test_secret(void **state)
{
    (void)state;
    const uint8_t key[32] = "0123456789abcdef0123456789abcdef";
    char s1[TG_REDIS_ACL_SECRET_LEN + 1], s2[TG_REDIS_ACL_SECRET_LEN + 1];
    tg_redis_acl_secret(key, sizeof key, "acme", s1);
    /* recomputed independently: HMAC-SHA256(key, "tenantgate redis acl user" NUL "acme") */
    static const uint8_t msg[] = "tenantgate redis acl user\0acme";
    uint8_t mac[32];
    unsigned int len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, sizeof key, msg, sizeof msg - 1, mac, &len));
    assert_int_equal(len, 32);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    assert_string_equal(s1, hex);
    assert_int_equal(strlen(s1), TG_REDIS_ACL_SECRET_LEN);
    /* deterministic; another tenant or another key gives another secret */
    tg_redis_acl_secret(key, sizeof key, "acme", s2);
    assert_string_equal(s1, s2);
    tg_redis_acl_secret(key, sizeof key, "acmf", s2);
    assert_string_not_equal(s1, s2);
    uint8_t key2[32];
    memcpy(key2, key, 32);
    key2[31] ^= 1;
    tg_redis_acl_secret(key2, sizeof key2, "acme", s2);
    assert_string_not_equal(s1, s2);
    /* not the bare HMAC(key, tenant) that PostgreSQL's signed context uses */
    assert_non_null(HMAC(EVP_sha256(), key, sizeof key, (const uint8_t *)"acme", 4, mac, &len));
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    assert_string_not_equal(s1, hex);
}

static void test_setuser_argv(void **state)
{
    (void)state;
    tg_redis_acl_argv a;
    /* a prefix holding every glob character Redis knows */
    const char prefix[] = "t:{a?c}*[x]\\:";
    assert_int_equal(
        tg_redis_acl_setuser_argv(builtin, "tenantgate:a", "s3cr3t", tg_slice_str(prefix), &a), 0);
    static const char *const head[] = {"ACL",
                                       "SETUSER",
                                       "tenantgate:a",
                                       "reset",
                                       "on",
                                       ">s3cr3t",
                                       "resetkeys",
                                       "~t:{a\\?c}\\*\\[x\\]\\\\:*",
                                       "resetchannels",
                                       "&t:{a\\?c}\\*\\[x\\]\\\\:*",
                                       "-@all"};
    assert_true(a.argc > COUNT(head) + 150);
    for (size_t i = 0; i < COUNT(head); i++) {
        assert_string_equal(a.argv[i], head[i]);
        assert_int_equal(a.len[i], strlen(head[i]));
    }
    /* then "+name" for exactly the granted commands, in table order */
    uint32_t k = COUNT(head);
    for (uint32_t i = 0; i < tg_redis_table_count(builtin); i++) {
        const tg_redis_command *c = tg_redis_table_at(builtin, i);
        if (!tg_redis_acl_grants(c))
            continue;
        assert_true(k < a.argc);
        assert_int_equal(a.argv[k][0], '+');
        assert_string_equal(a.argv[k] + 1, c->name);
        assert_int_equal(a.len[k], c->name_len + 1);
        k++;
    }
    assert_int_equal(k, a.argc);
    bool get = false, eval = false;
    for (uint32_t i = COUNT(head); i < a.argc; i++) {
        static const char *const never[] = {"+keys",  "+scan",   "+randomkey", "+dbsize",
                                            "+info",  "+config", "+flushall",  "+psubscribe",
                                            "+sort",  "+acl",    "+georadius", "+script|flush",
                                            "+@all",  "+client", "+debug",     "+function|load",
                                            "+select"};
        for (size_t j = 0; j < COUNT(never); j++)
            if (strcmp(a.argv[i], never[j]) == 0)
                fail_msg("%s granted", never[j]);
        get |= strcmp(a.argv[i], "+get") == 0;
        eval |= strcmp(a.argv[i], "+eval") == 0;
    }
    assert_true(get && eval);
    tg_redis_acl_argv_free(&a);
    assert_null(a.argv);
    assert_int_equal(a.argc, 0);

    /* an empty prefix: the patterns are "~*" and "&*" (only reachable from a test) */
    assert_int_equal(tg_redis_acl_setuser_argv(builtin, "u", "p", tg_slice_str(""), &a), 0);
    assert_string_equal(a.argv[7], "~*");
    assert_string_equal(a.argv[9], "&*");
    tg_redis_acl_argv_free(&a);
    /* an unsealed table */
    tg_redis_table *t = tg_redis_table_new();
    assert_int_equal(tg_redis_acl_setuser_argv(t, "u", "p", tg_slice_str("x"), &a), TG_EINVAL);
    tg_redis_table_free(t);
}

/* ---- the listener state and provisioning ----------------------------------------------- */

static char key_bytes[] = "0123456789abcdef0123456789abcdef";
static char password[] = "svc-password";

static void listener(tg_listener_config *cfg, const char *address)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->name = "rd";
    cfg->protocol = TG_PROTO_REDIS;
    cfg->backend.address = (char *)address;
    cfg->backend.user = "svc";
    cfg->backend.password.data = password;
    cfg->backend.password.len = strlen(password);
    cfg->timeouts.connect_ms = 300;
    cfg->redis.key_prefix = "t:{tenant}:";
    cfg->redis.allow_scripts = true;
    cfg->redis.acl_key.data = key_bytes;
    cfg->redis.acl_key.len = 32;
    cfg->redis.acl_user_template = "tenantgate:{tenant}";
}

static void test_known_and_credentials(void **state)
{
    (void)state;
    tg_listener_config cfg;
    listener(&cfg, "127.0.0.1:6379");
    char err[256];
    tg_redis_acl *a = tg_redis_acl_new(&cfg, builtin, err, sizeof err);
    assert_non_null(a);
    char user[TG_REDIS_ACL_USER_MAX + 1], secret[TG_REDIS_ACL_SECRET_LEN + 1],
        want[TG_REDIS_ACL_SECRET_LEN + 1];
    assert_int_equal(tg_redis_acl_credentials(a, "acme", user, secret), 0);
    assert_string_equal(user, "tenantgate:acme");
    tg_redis_acl_secret((const uint8_t *)key_bytes, 32, "acme", want);
    assert_string_equal(secret, want);
    assert_false(tg_redis_acl_known(a, "acme"));
    tg_redis_acl_forget(a, "acme"); /* unknown: nothing happens */
    tg_redis_acl_free(a);
    tg_redis_acl_free(NULL);

    cfg.backend.address = "not an address";
    assert_null(tg_redis_acl_new(&cfg, builtin, err, sizeof err));
    assert_non_null(strstr(err, "backend.address"));
}

/* A fake Redis on the test's loop: reads whatever comes, answers `reply` once per connection. */
#define FAKE_CONNS 4

typedef struct fake fake;
typedef struct fake_conn {
    uv_tcp_t tcp;
    fake *f;
    bool open, answered;
    uv_write_t wr;
} fake_conn;

struct fake {
    uv_tcp_t server;
    const char *reply; /* NULL: never answers */
    char last[80];     /* the SETUSER request's last argument, as sent: answered after it */
    char got[16384];   /* what every connection sent, one after the other */
    size_t got_len;
    fake_conn conns[FAKE_CONNS];
    int nconns;
};

static void fake_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    fake *f = ((fake_conn *)h->data)->f;
    (void)n;
    *b = uv_buf_init(f->got + f->got_len, (unsigned)(sizeof f->got - f->got_len - 1));
}

static void fake_closed(uv_handle_t *h)
{
    (void)h;
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fake_conn *fc = s->data;
    fake *f = fc->f;
    (void)b;
    if (n < 0) {
        if (fc->open)
            uv_close((uv_handle_t *)&fc->tcp, fake_closed);
        fc->open = false;
        return;
    }
    f->got_len += (size_t)n;
    f->got[f->got_len] = '\0';
    /* answer once both requests are in (the SETUSER ends with the last granted command) */
    size_t ll = strlen(f->last);
    if (f->reply && !fc->answered && f->got_len >= ll &&
        memcmp(f->got + f->got_len - ll, f->last, ll) == 0) {
        fc->answered = true;
        uv_buf_t out = uv_buf_init((char *)f->reply, (unsigned)strlen(f->reply));
        uv_write(&fc->wr, (uv_stream_t *)&fc->tcp, &out, 1, NULL);
    }
}

static void fake_accept(uv_stream_t *server, int status)
{
    fake *f = server->data;
    assert_int_equal(status, 0);
    assert_true(f->nconns < FAKE_CONNS);
    fake_conn *fc = &f->conns[f->nconns++];
    uv_tcp_init(server->loop, &fc->tcp);
    fc->tcp.data = fc;
    fc->f = f;
    fc->open = true;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&fc->tcp), 0);
    uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc, fake_read);
}

/* Starts listening on 127.0.0.1 (a free port); returns the port. */
static int fake_start(uv_loop_t *loop, fake *f, const char *reply)
{
    memset(f, 0, sizeof(*f));
    f->reply = reply;
    tg_redis_acl_argv a;
    assert_int_equal(tg_redis_acl_setuser_argv(builtin, "u", "p", tg_slice_str("t:"), &a), 0);
    snprintf(f->last, sizeof f->last, "%s\r\n", a.argv[a.argc - 1]);
    tg_redis_acl_argv_free(&a);
    uv_tcp_init(loop, &f->server);
    f->server.data = f;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&f->server, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->server, 8, fake_accept), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&f->server, (struct sockaddr *)&ss, &len);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void fake_stop(fake *f)
{
    uv_close((uv_handle_t *)&f->server, fake_closed);
    for (int i = 0; i < f->nconns; i++) {
        if (f->conns[i].open)
            uv_close((uv_handle_t *)&f->conns[i].tcp, fake_closed);
        f->conns[i].open = false;
    }
}

typedef struct outcome {
    int calls, status;
    char why[512];
    fake *stop; /* closed when the callback runs, so that the loop can end */
} outcome;

static void on_done(void *ud, int status, const char *why)
{
    outcome *o = ud;
    o->calls++;
    o->status = status;
    snprintf(o->why, sizeof o->why, "%s", why ? why : "");
    if (o->stop)
        fake_stop(o->stop);
}

/* Provisions "acme" against address with the fake f (NULL: none) and runs the loop to its end. */
static void provision(const char *address, fake *f, outcome *o, tg_redis_acl **out)
{
    static tg_listener_config cfg;
    listener(&cfg, address);
    char err[256];
    tg_redis_acl *a = tg_redis_acl_new(&cfg, builtin, err, sizeof err);
    assert_non_null(a);
    memset(o, 0, sizeof(*o));
    o->stop = f;
    int e = 0;
    tg_redis_acl_req *q = tg_redis_acl_provision(a, uv_default_loop(), "acme", on_done, o, &e);
    assert_non_null(q);
    assert_int_equal(o->calls, 0); /* never inside the call */
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    assert_int_equal(o->calls, 1);
    *out = a;
}

static void test_provision_ok(void **state)
{
    (void)state;
    fake f;
    int port = fake_start(uv_default_loop(), &f, "+OK\r\n+OK\r\n");
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", port);
    outcome o;
    tg_redis_acl *a;
    provision(address, &f, &o, &a);
    assert_int_equal(o.status, 0);
    assert_true(tg_redis_acl_known(a, "acme"));
    assert_false(tg_redis_acl_known(a, "acmf"));
    /* what the server read: the service login, then the SETUSER with the derived secret */
    char secret[TG_REDIS_ACL_SECRET_LEN + 1], want[256];
    tg_redis_acl_secret((const uint8_t *)key_bytes, 32, "acme", secret);
    static const char login[] = "*3\r\n$4\r\nAUTH\r\n$3\r\nsvc\r\n$12\r\nsvc-password\r\n";
    assert_memory_equal(f.got, login, sizeof login - 1);
    snprintf(want, sizeof want,
             "$3\r\nACL\r\n$7\r\nSETUSER\r\n$15\r\ntenantgate:acme\r\n$5\r\nreset\r\n$2\r\non\r\n"
             "$65\r\n>%s\r\n$9\r\nresetkeys\r\n$9\r\n~t:acme:*\r\n",
             secret);
    assert_non_null(strstr(f.got, want));
    assert_non_null(strstr(f.got, "$9\r\n&t:acme:*\r\n$5\r\n-@all\r\n"));
    tg_redis_acl_forget(a, "acme");
    assert_false(tg_redis_acl_known(a, "acme"));
    tg_redis_acl_free(a);
}

static void test_provision_refused(void **state)
{
    (void)state;
    char secret[TG_REDIS_ACL_SECRET_LEN + 1], reply[512];
    tg_redis_acl_secret((const uint8_t *)key_bytes, 32, "acme", secret);
    /* ACL SETUSER quotes a rule it refuses: the secret must not reach the reason (or a log) */
    snprintf(reply, sizeof reply,
             "+OK\r\n-ERR Error in ACL SETUSER modifier '>%s': Syntax error\r\n", secret);
    fake f;
    int port = fake_start(uv_default_loop(), &f, reply);
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", port);
    outcome o;
    tg_redis_acl *a;
    provision(address, &f, &o, &a);
    assert_true(o.status < 0);
    assert_non_null(strstr(o.why, "ACL SETUSER refused: ERR Error in ACL SETUSER modifier '>***"));
    assert_null(strstr(o.why, secret));
    assert_false(tg_redis_acl_known(a, "acme"));
    tg_redis_acl_free(a);

    /* the service login refused */
    port = fake_start(uv_default_loop(), &f,
                      "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
                      "-NOAUTH Authentication required.\r\n");
    snprintf(address, sizeof address, "127.0.0.1:%d", port);
    provision(address, &f, &o, &a);
    assert_int_equal(o.status, TG_EAUTH);
    assert_non_null(strstr(o.why, "service user AUTH refused: WRONGPASS"));
    assert_null(strstr(o.why, password));
    assert_false(tg_redis_acl_known(a, "acme"));
    tg_redis_acl_free(a);
}

static void test_provision_unreachable(void **state)
{
    (void)state;
    /* nothing listens: a port that was free a moment ago */
    fake f;
    int port = fake_start(uv_default_loop(), &f, NULL);
    fake_stop(&f);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", port);
    outcome o;
    tg_redis_acl *a;
    provision(address, NULL, &o, &a);
    assert_int_equal(o.status, TG_EIO);
    assert_non_null(strstr(o.why, "control connection"));
    tg_redis_acl_free(a);

    /* a listener that never answers: the request ends at connect_ms */
    port = fake_start(uv_default_loop(), &f, NULL);
    snprintf(address, sizeof address, "127.0.0.1:%d", port);
    uint64_t t0 = uv_now(uv_default_loop());
    provision(address, &f, &o, &a);
    assert_int_equal(o.status, TG_ETIMEOUT);
    assert_true(uv_now(uv_default_loop()) - t0 >= 250);
    tg_redis_acl_free(a);

    /* a host name goes through the resolver first */
    port = fake_start(uv_default_loop(), &f, "+OK\r\n+OK\r\n");
    snprintf(address, sizeof address, "localhost:%d", port);
    provision(address, &f, &o, &a);
    /* localhost may resolve to ::1 first, where nothing listens: either way one answer */
    assert_true(o.status == 0 || o.status == TG_EIO);
    assert_int_equal(tg_redis_acl_known(a, "acme"), o.status == 0);
    tg_redis_acl_free(a);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}

static void test_provision_cancel(void **state)
{
    (void)state;
    static tg_listener_config cfg;
    fake f;
    int port = fake_start(uv_default_loop(), &f, NULL);
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", port);
    listener(&cfg, address);
    char err[256];
    tg_redis_acl *a = tg_redis_acl_new(&cfg, builtin, err, sizeof err);
    outcome o = {0};
    int e = 0;
    /* cancelled at once, and cancelled once connected */
    tg_redis_acl_req *q = tg_redis_acl_provision(a, uv_default_loop(), "acme", on_done, &o, &e);
    assert_non_null(q);
    tg_redis_acl_cancel(q);
    q = tg_redis_acl_provision(a, uv_default_loop(), "acme", on_done, &o, &e);
    assert_non_null(q);
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    uv_run(uv_default_loop(), UV_RUN_NOWAIT);
    tg_redis_acl_cancel(q);
    fake_stop(&f);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* returns: no handle of the requests is left */
    assert_int_equal(o.calls, 0);
    assert_false(tg_redis_acl_known(a, "acme"));
    tg_redis_acl_free(a);
    /* a resolving request, cancelled */
    cfg.backend.address = "localhost:1";
    a = tg_redis_acl_new(&cfg, builtin, err, sizeof err);
    q = tg_redis_acl_provision(a, uv_default_loop(), "acme", on_done, &o, &e);
    assert_non_null(q);
    tg_redis_acl_cancel(q);
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    assert_int_equal(o.calls, 0);
    tg_redis_acl_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_name),
        cmocka_unit_test(test_secret),
        cmocka_unit_test(test_setuser_argv),
        cmocka_unit_test(test_known_and_credentials),
        cmocka_unit_test(test_provision_ok),
        cmocka_unit_test(test_provision_refused),
        cmocka_unit_test(test_provision_unreachable),
        cmocka_unit_test(test_provision_cancel),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    uv_loop_close(uv_default_loop());
    return rc;
}
