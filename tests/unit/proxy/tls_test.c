/*
 * Tests for proxy/tls.c: a client tg_tls and a server tg_tls (or a raw
 * OpenSSL endpoint, for protocol versions tenantgate refuses to speak) are
 * wired back to back in memory:
 *
 *   client --take_out--> feed--> server
 *          <--feed-- <--take_out--
 *
 * pump() moves ciphertext both ways (all at once or one byte at a time) and
 * advances both handshakes until nothing moves any more. The certificates
 * are made at test time in a mkdtemp directory: a CA, a server certificate
 * for db.example.com and 127.0.0.1 signed by it (chain file: leaf + CA), and
 * a self-signed certificate of its own that no CA vouches for.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proxy/error.h"
#include "proxy/tls.h"

/* ---- fixtures: certificates in a temporary directory ---- */

static char g_dir[] = "/tmp/tg-tls-test-XXXXXX";
static char g_ca[128], g_chain[128], g_server_key[128], g_other[128], g_other_key[128],
    g_garbage[128], g_enc_key[128], g_missing[128];

static tg_tls_ctx *g_server_ctx; /* server chain signed by the CA */
static tg_tls_ctx *g_other_ctx;  /* self-signed */
static tg_tls_ctx *g_full_ctx;   /* client: verify-full against the CA */

static void path(char *out, const char *name)
{
    snprintf(out, 128, "%s/%s", g_dir, name);
}

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* A certificate for key named cn; signed by issuer/issuer_key, or self-signed when NULL. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
                       const char *san, long serial)
{
    X509 *x = X509_new();
    if (x == NULL)
        return NULL;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);

    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    int rc = 0;
    rc |= add_ext(x, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    rc |= add_ext(x, &v3, NID_key_usage,
                  ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    rc |= add_ext(x, &v3, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        rc |= add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
    if (!ca)
        rc |= add_ext(x, &v3, NID_ext_key_usage, "serverAuth");
    if (san != NULL)
        rc |= add_ext(x, &v3, NID_subject_alt_name, san);
    if (rc != 0 || X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) == 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int write_certs(const char *file, X509 *a, X509 *b)
{
    FILE *f = fopen(file, "w");
    if (f == NULL)
        return -1;
    int ok = PEM_write_X509(f, a) == 1 && (b == NULL || PEM_write_X509(f, b) == 1);
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int write_key(const char *file, EVP_PKEY *key, const char *passphrase)
{
    FILE *f = fopen(file, "w");
    if (f == NULL)
        return -1;
    int ok;
    if (passphrase != NULL)
        ok = PEM_write_PrivateKey(f, key, EVP_aes_128_cbc(), (const unsigned char *)passphrase,
                                  (int)strlen(passphrase), NULL, NULL);
    else
        ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok == 1 ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(g_dir) == NULL)
        return -1;
    path(g_ca, "ca.pem");
    path(g_chain, "server-chain.pem");
    path(g_server_key, "server.key");
    path(g_other, "other.pem");
    path(g_other_key, "other.key");
    path(g_garbage, "garbage.pem");
    path(g_enc_key, "encrypted.key");
    path(g_missing, "missing.pem");

    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *srv_key = EVP_EC_gen("P-256");
    EVP_PKEY *oth_key = EVP_EC_gen("P-256");
    X509 *ca = NULL, *srv = NULL, *oth = NULL;
    int rc = -1;
    if (ca_key == NULL || srv_key == NULL || oth_key == NULL)
        goto out;
    ca = make_cert(ca_key, "tenantgate test CA", NULL, NULL, true, NULL, 1);
    if (ca == NULL)
        goto out;
    srv = make_cert(srv_key, "db.example.com", ca, ca_key, false, "DNS:db.example.com,IP:127.0.0.1",
                    2);
    oth = make_cert(oth_key, "db.example.com", NULL, NULL, false, "DNS:db.example.com,IP:127.0.0.1",
                    3);
    if (srv == NULL || oth == NULL)
        goto out;
    if (write_certs(g_ca, ca, NULL) || write_certs(g_chain, srv, ca) ||
        write_key(g_server_key, srv_key, NULL) || write_certs(g_other, oth, NULL) ||
        write_key(g_other_key, oth_key, NULL) || write_key(g_enc_key, srv_key, "secret"))
        goto out;
    FILE *f = fopen(g_garbage, "w");
    if (f == NULL)
        goto out;
    fputs("this is not PEM\n", f);
    fclose(f);

    char err[512];
    if (tg_tls_ctx_new_server(g_chain, g_server_key, &g_server_ctx, err, sizeof(err)) != 0 ||
        tg_tls_ctx_new_server(g_other, g_other_key, &g_other_ctx, err, sizeof(err)) != 0 ||
        tg_tls_ctx_new_client(TG_BACKEND_TLS_VERIFY_FULL, g_ca, &g_full_ctx, err, sizeof(err)) !=
            0) {
        fprintf(stderr, "setup: %s\n", err);
        goto out;
    }
    rc = 0;
out:
    X509_free(ca);
    X509_free(srv);
    X509_free(oth);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(oth_key);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    tg_tls_ctx_free(g_server_ctx);
    tg_tls_ctx_free(g_other_ctx);
    tg_tls_ctx_free(g_full_ctx);
    const char *files[] = {g_ca, g_chain, g_server_key, g_other, g_other_key, g_garbage, g_enc_key};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(g_dir);
    return 0;
}

/* ---- endpoints and the pump ---- */

/* One side of a connection: a tg_tls, or a raw SSL with memory BIOs. */
typedef struct end {
    tg_tls *t;
    SSL *raw;
    BIO *rin, *rout; /* raw only; owned by raw */
    int rc;          /* last handshake result: TG_NEED_MORE, 1 or < 0 */
} end;

static end tg_end(tg_tls *t)
{
    assert_non_null(t);
    return (end){.t = t, .rc = TG_NEED_MORE};
}

static end raw_end(SSL_CTX *c, bool server)
{
    end e = {.raw = SSL_new(c), .rc = TG_NEED_MORE};
    assert_non_null(e.raw);
    e.rin = BIO_new(BIO_s_mem());
    e.rout = BIO_new(BIO_s_mem());
    assert_non_null(e.rin);
    assert_non_null(e.rout);
    BIO_set_mem_eof_return(e.rin, -1);
    SSL_set_bio(e.raw, e.rin, e.rout);
    if (server)
        SSL_set_accept_state(e.raw);
    else
        SSL_set_connect_state(e.raw);
    return e;
}

static void end_free(end *e)
{
    tg_tls_free(e->t);
    SSL_free(e->raw);
}

static void end_step(end *e)
{
    if (e->rc != TG_NEED_MORE)
        return;
    if (e->t != NULL) {
        e->rc = tg_tls_handshake(e->t);
        return;
    }
    int r = SSL_do_handshake(e->raw);
    if (r == 1)
        e->rc = 1;
    else if (SSL_get_error(e->raw, r) != SSL_ERROR_WANT_READ)
        e->rc = TG_ETLS;
    ERR_clear_error();
}

static size_t end_take(end *e, uint8_t *buf, size_t cap)
{
    if (e->t != NULL)
        return tg_tls_take_out(e->t, buf, cap);
    int n = BIO_read(e->rout, buf, (int)cap);
    return n > 0 ? (size_t)n : 0;
}

static void end_feed(end *e, const uint8_t *buf, size_t n)
{
    if (e->t != NULL)
        assert_int_equal(tg_tls_feed(e->t, buf, n), 0);
    else
        assert_int_equal(BIO_write(e->rin, buf, (int)n), (int)n);
}

/* Moves ciphertext from -> to: everything (step 0) or at most step bytes. Returns the count. */
static size_t move(end *from, end *to, size_t step)
{
    uint8_t buf[16384];
    size_t total = 0, n;
    while ((n = end_take(from, buf, step != 0 ? step : sizeof(buf))) > 0) {
        end_feed(to, buf, n);
        total += n;
        if (step != 0)
            break;
    }
    return total;
}

/* Runs both handshakes until neither side has anything more to say. */
static void pump(end *c, end *s, size_t step)
{
    for (int i = 0; i < 1000000; i++) {
        end_step(c);
        end_step(s);
        if (move(c, s, step) + move(s, c, step) == 0)
            return;
    }
    fail_msg("handshake did not settle");
}

/* Handshakes a fresh client (from client_ctx, server_name) with a fresh server; both must pass. */
static void connect_ok(tg_tls_ctx *client_ctx, const char *server_name, tg_tls_ctx *server_ctx,
                       end *c, end *s)
{
    *c = tg_end(tg_tls_new(client_ctx, server_name));
    *s = tg_end(tg_tls_new(server_ctx, NULL));
    pump(c, s, 0);
    if (c->rc != 1 || s->rc != 1)
        fail_msg("handshake failed: client %d (%s), server %d (%s)", c->rc, tg_tls_last_error(c->t),
                 s->rc, tg_tls_last_error(s->t));
    assert_true(tg_tls_handshake_done(c->t));
    assert_true(tg_tls_handshake_done(s->t));
}

/* Same, expecting the client to reject the server; returns the client's reason. */
static void connect_fails(tg_tls_ctx *client_ctx, const char *server_name, tg_tls_ctx *server_ctx,
                          const char *reason_part)
{
    end c = tg_end(tg_tls_new(client_ctx, server_name));
    end s = tg_end(tg_tls_new(server_ctx, NULL));
    pump(&c, &s, 0);
    assert_int_equal(c.rc, TG_ETLS);
    assert_int_not_equal(s.rc, 1); /* the client's alert ends the server's handshake too */
    assert_false(tg_tls_handshake_done(c.t));
    if (strstr(tg_tls_last_error(c.t), reason_part) == NULL)
        fail_msg("client error \"%s\" lacks \"%s\"", tg_tls_last_error(c.t), reason_part);
    assert_int_equal(ERR_peek_error(), 0); /* nothing left on this thread's queue */
    assert_int_equal(tg_tls_read(c.t, (uint8_t[8]){0}, 8), TG_ETLS); /* sticky */
    assert_int_equal(tg_tls_write(c.t, (const uint8_t *)"x", 1), TG_ETLS);
    end_free(&c);
    end_free(&s);
}

/* Sends len bytes from -> to (moved step bytes at a time, 0 = all) and checks they arrive. */
static void transfer(end *from, end *to, const uint8_t *data, size_t len, size_t step)
{
    uint8_t *got = malloc(len + 1);
    assert_non_null(got);
    assert_int_equal(tg_tls_write(from->t, data, len), 0);
    size_t have = 0;
    for (;;) {
        size_t moved = move(from, to, step);
        for (;;) {
            ssize_t n = tg_tls_read(to->t, got + have, len + 1 - have);
            if (n == TG_NEED_MORE)
                break;
            if (n < 0)
                fail_msg("read: %zd (%s)", n, tg_tls_last_error(to->t));
            have += (size_t)n;
            assert_true(have <= len);
        }
        if (moved == 0)
            break;
    }
    assert_int_equal(have, len);
    assert_memory_equal(got, data, len);
    free(got);
}

/* ---- tests ---- */

static void test_handshake_and_data(void **state)
{
    (void)state;
    end c, s;
    connect_ok(g_full_ctx, "db.example.com", g_server_ctx, &c, &s);
    assert_string_equal(tg_tls_sni(s.t), "db.example.com");
    assert_null(tg_tls_sni(c.t)); /* client side has no captured SNI */
    assert_int_equal(tg_tls_pending_out(c.t), 0);
    assert_int_equal(tg_tls_pending_out(s.t), 0);

    transfer(&c, &s, (const uint8_t *)"SELECT 1", 8, 0);
    transfer(&s, &c, (const uint8_t *)"one row", 7, 0);
    assert_int_equal(tg_tls_read(s.t, (uint8_t[8]){0}, 8), TG_NEED_MORE);
    assert_int_equal(tg_tls_handshake(s.t), 1);
    end_free(&c);
    end_free(&s);
}

static void test_large_payload(void **state)
{
    (void)state;
    size_t len = 1u << 20;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    assert_int_equal(RAND_bytes(data, (int)len), 1);
    end c, s;
    connect_ok(g_full_ctx, "db.example.com", g_server_ctx, &c, &s);
    transfer(&c, &s, data, len, 0);
    transfer(&s, &c, data, len, 0);
    /* and again, moved in odd-sized pieces */
    transfer(&c, &s, data, len, 1000);
    transfer(&s, &c, data, len, 4097);
    free(data);
    end_free(&c);
    end_free(&s);
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    end c = tg_end(tg_tls_new(g_full_ctx, "db.example.com"));
    end s = tg_end(tg_tls_new(g_server_ctx, NULL));
    pump(&c, &s, 1);
    assert_int_equal(c.rc, 1);
    assert_int_equal(s.rc, 1);
    assert_string_equal(tg_tls_sni(s.t), "db.example.com");

    uint8_t data[20000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    transfer(&c, &s, data, sizeof(data), 1);
    transfer(&s, &c, data, sizeof(data), 1);
    end_free(&c);
    end_free(&s);
}

/* The client may write before its handshake is done; the bytes wait and then go out in order. */
static void test_early_write(void **state)
{
    (void)state;
    end c = tg_end(tg_tls_new(g_full_ctx, "db.example.com"));
    end s = tg_end(tg_tls_new(g_server_ctx, NULL));
    assert_int_equal(tg_tls_write(c.t, (const uint8_t *)"early ", 6), 0);
    assert_true(tg_tls_pending_out(c.t) > 0); /* the ClientHello went out */
    assert_int_equal(tg_tls_write(c.t, (const uint8_t *)"bird", 4), 0);
    assert_int_equal(tg_tls_write(s.t, (const uint8_t *)"hi", 2), 0);
    pump(&c, &s, 0);
    assert_int_equal(c.rc, 1);
    assert_int_equal(s.rc, 1);

    uint8_t buf[64];
    ssize_t n = tg_tls_read(s.t, buf, sizeof(buf));
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "early bird", 10);
    n = tg_tls_read(c.t, buf, sizeof(buf));
    assert_int_equal(n, 2);
    assert_memory_equal(buf, "hi", 2);
    end_free(&c);
    end_free(&s);
}

static void test_verify_full_ip(void **state)
{
    (void)state;
    end c, s;
    connect_ok(g_full_ctx, "127.0.0.1", g_server_ctx, &c, &s);
    assert_null(tg_tls_sni(s.t)); /* no SNI for an IP literal */
    end_free(&c);
    end_free(&s);
    connect_fails(g_full_ctx, "127.0.0.2", g_server_ctx, "IP address mismatch");
}

static void test_verify_full_wrong_name(void **state)
{
    (void)state;
    connect_fails(g_full_ctx, "other.example.com", g_server_ctx, "hostname mismatch");
    connect_fails(g_full_ctx, "example.com", g_server_ctx, "hostname mismatch");
}

static void test_verify_full_wrong_ca(void **state)
{
    (void)state;
    /* trusted: only the self-signed certificate; presented: the CA-signed chain */
    tg_tls_ctx *cctx = NULL;
    char err[512];
    assert_int_equal(
        tg_tls_ctx_new_client(TG_BACKEND_TLS_VERIFY_FULL, g_other, &cctx, err, sizeof(err)), 0);
    connect_fails(cctx, "db.example.com", g_server_ctx, "certificate verify failed");
    tg_tls_ctx_free(cctx);
    /* trusted: the CA; presented: a self-signed certificate with the right name */
    connect_fails(g_full_ctx, "db.example.com", g_other_ctx, "certificate verify failed");
}

static void test_verify_full_needs_name(void **state)
{
    (void)state;
    tg_tls *t = tg_tls_new(g_full_ctx, NULL);
    assert_non_null(t);
    assert_int_equal(tg_tls_handshake(t), TG_ETLS);
    assert_non_null(strstr(tg_tls_last_error(t), "server name"));
    tg_tls_free(t);
}

static void test_require_self_signed(void **state)
{
    (void)state;
    tg_tls_ctx *cctx = NULL;
    char err[512];
    assert_int_equal(tg_tls_ctx_new_client(TG_BACKEND_TLS_REQUIRE, NULL, &cctx, err, sizeof(err)),
                     0);
    end c, s;
    connect_ok(cctx, "whatever.invalid", g_other_ctx, &c, &s);
    assert_string_equal(tg_tls_sni(s.t), "whatever.invalid");
    transfer(&c, &s, (const uint8_t *)"ping", 4, 0);
    transfer(&s, &c, (const uint8_t *)"pong", 4, 0);
    end_free(&c);
    end_free(&s);
    tg_tls_ctx_free(cctx);
}

/* require with a ca_file checks the chain but not the name (libpq's verify-ca). */
static void test_require_with_ca(void **state)
{
    (void)state;
    tg_tls_ctx *cctx = NULL;
    char err[512];
    assert_int_equal(tg_tls_ctx_new_client(TG_BACKEND_TLS_REQUIRE, g_ca, &cctx, err, sizeof(err)),
                     0);
    end c, s;
    connect_ok(cctx, "not-the-name.example.org", g_server_ctx, &c, &s);
    end_free(&c);
    end_free(&s);
    connect_fails(cctx, "db.example.com", g_other_ctx, "certificate verify failed");
    tg_tls_ctx_free(cctx);
}

/* A raw OpenSSL context that speaks at most TLS 1.1 (security level 0 lets it at all). */
static SSL_CTX *tls11_ctx(bool server)
{
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    assert_non_null(c);
    SSL_CTX_set_security_level(c, 0);
    assert_int_equal(SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0"), 1);
    assert_int_equal(SSL_CTX_set_min_proto_version(c, TLS1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(c, TLS1_1_VERSION), 1);
    if (server) {
        assert_int_equal(SSL_CTX_use_certificate_file(c, g_other, SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(c, g_other_key, SSL_FILETYPE_PEM), 1);
    }
    return c;
}

static void test_server_refuses_tls11(void **state)
{
    (void)state;
    SSL_CTX *raw = tls11_ctx(false);
    end c = raw_end(raw, false);
    end s = tg_end(tg_tls_new(g_server_ctx, NULL));
    pump(&c, &s, 0);
    assert_int_equal(s.rc, TG_ETLS);
    assert_int_not_equal(c.rc, 1);
    assert_non_null(strstr(tg_tls_last_error(s.t), "unsupported protocol"));
    end_free(&c);
    end_free(&s);
    SSL_CTX_free(raw);
    ERR_clear_error();
}

static void test_client_refuses_tls11(void **state)
{
    (void)state;
    tg_tls_ctx *cctx = NULL;
    char err[512];
    assert_int_equal(tg_tls_ctx_new_client(TG_BACKEND_TLS_REQUIRE, NULL, &cctx, err, sizeof(err)),
                     0);
    SSL_CTX *raw = tls11_ctx(true);
    end c = tg_end(tg_tls_new(cctx, "db.example.com"));
    end s = raw_end(raw, true);
    pump(&c, &s, 0);
    assert_int_equal(c.rc, TG_ETLS);
    assert_int_not_equal(s.rc, 1);
    end_free(&c);
    end_free(&s);
    SSL_CTX_free(raw);
    tg_tls_ctx_free(cctx);
    ERR_clear_error();
}

static void test_close_notify(void **state)
{
    (void)state;
    end c, s;
    connect_ok(g_full_ctx, "db.example.com", g_server_ctx, &c, &s);
    transfer(&c, &s, (const uint8_t *)"bye", 3, 0);
    tg_tls_shutdown(c.t);
    assert_true(move(&c, &s, 0) > 0);
    uint8_t buf[16];
    assert_int_equal(tg_tls_read(s.t, buf, sizeof(buf)), TG_ECLOSED);
    assert_int_equal(tg_tls_read(s.t, buf, sizeof(buf)), TG_ECLOSED);
    /* the server answers with its own close_notify */
    tg_tls_shutdown(s.t);
    assert_true(move(&s, &c, 0) > 0);
    assert_int_equal(tg_tls_read(c.t, buf, sizeof(buf)), TG_ECLOSED);
    end_free(&c);
    end_free(&s);
}

static void test_garbage_after_handshake(void **state)
{
    (void)state;
    end c, s;
    connect_ok(g_full_ctx, "db.example.com", g_server_ctx, &c, &s);
    /* an application-data record header with a body that fails authentication */
    uint8_t junk[5 + 64] = {0x17, 0x03, 0x03, 0x00, 64};
    for (size_t i = 5; i < sizeof(junk); i++)
        junk[i] = (uint8_t)i;
    assert_int_equal(tg_tls_feed(s.t, junk, sizeof(junk)), 0);
    uint8_t buf[64];
    assert_int_equal(tg_tls_read(s.t, buf, sizeof(buf)), TG_ETLS);
    assert_string_not_equal(tg_tls_last_error(s.t), "no error");
    assert_int_equal(ERR_peek_error(), 0);
    assert_int_equal(tg_tls_read(s.t, buf, sizeof(buf)), TG_ETLS); /* sticky */
    tg_tls_shutdown(s.t);                                          /* harmless after failure */
    end_free(&c);
    end_free(&s);

    /* the next connection on this thread is unaffected */
    connect_ok(g_full_ctx, "db.example.com", g_server_ctx, &c, &s);
    transfer(&c, &s, (const uint8_t *)"still fine", 10, 0);
    end_free(&c);
    end_free(&s);
}

static void test_garbage_before_handshake(void **state)
{
    (void)state;
    tg_tls *s = tg_tls_new(g_server_ctx, NULL);
    assert_non_null(s);
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(tg_tls_feed(s, (const uint8_t *)http, sizeof(http) - 1), 0);
    assert_int_equal(tg_tls_handshake(s), TG_ETLS);
    assert_string_not_equal(tg_tls_last_error(s), "no error");
    assert_int_equal(ERR_peek_error(), 0);
    assert_null(tg_tls_sni(s));
    tg_tls_free(s);

    /* the client side rejects a non-TLS answer as well */
    tg_tls *c = tg_tls_new(g_full_ctx, "db.example.com");
    assert_non_null(c);
    assert_int_equal(tg_tls_handshake(c), TG_NEED_MORE);
    assert_int_equal(tg_tls_feed(c, (const uint8_t *)http, sizeof(http) - 1), 0);
    assert_int_equal(tg_tls_read(c, (uint8_t[8]){0}, 8), TG_ETLS);
    tg_tls_free(c);
}

static void expect_server_error(const char *cert, const char *key, const char *part1,
                                const char *part2)
{
    tg_tls_ctx *ctx = NULL;
    char err[512] = "";
    assert_int_equal(tg_tls_ctx_new_server(cert, key, &ctx, err, sizeof(err)), TG_ETLS);
    assert_null(ctx);
    if (strstr(err, part1) == NULL || (part2 != NULL && strstr(err, part2) == NULL))
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err, part1, part2 ? part2 : "");
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_server_ctx_errors(void **state)
{
    (void)state;
    expect_server_error(g_missing, g_server_key, g_missing, "No such file");
    expect_server_error(g_chain, g_missing, g_missing, "No such file");
    expect_server_error(g_garbage, g_server_key, g_garbage, NULL);
    expect_server_error(g_chain, g_garbage, g_garbage, NULL);
    expect_server_error(g_chain, g_other_key, "does not match", g_other_key);
    /* an encrypted key fails to load instead of prompting on the terminal */
    expect_server_error(g_chain, g_enc_key, g_enc_key, NULL);
    expect_server_error(NULL, g_server_key, "cert_file", NULL);
}

static void test_client_ctx_errors(void **state)
{
    (void)state;
    tg_tls_ctx *ctx = NULL;
    char err[512] = "";
    assert_int_equal(
        tg_tls_ctx_new_client(TG_BACKEND_TLS_VERIFY_FULL, g_missing, &ctx, err, sizeof(err)),
        TG_ETLS);
    assert_non_null(strstr(err, g_missing));
    assert_null(ctx);
    assert_int_equal(
        tg_tls_ctx_new_client(TG_BACKEND_TLS_VERIFY_FULL, g_garbage, &ctx, err, sizeof(err)),
        TG_ETLS);
    assert_non_null(strstr(err, g_garbage));
    assert_int_equal(
        tg_tls_ctx_new_client(TG_BACKEND_TLS_VERIFY_FULL, NULL, &ctx, err, sizeof(err)), TG_ETLS);
    assert_non_null(strstr(err, "ca_file"));
    assert_int_equal(tg_tls_ctx_new_client(TG_BACKEND_TLS_DISABLE, NULL, &ctx, err, sizeof(err)),
                     TG_ETLS);
    assert_null(ctx);
    assert_int_equal(ERR_peek_error(), 0);
}

/* Connections keep their context alive after tg_tls_ctx_free. */
static void test_ctx_outlives_free(void **state)
{
    (void)state;
    tg_tls_ctx *sctx = NULL, *cctx = NULL;
    char err[512];
    assert_int_equal(tg_tls_ctx_new_server(g_chain, g_server_key, &sctx, err, sizeof(err)), 0);
    assert_int_equal(
        tg_tls_ctx_new_client(TG_BACKEND_TLS_VERIFY_FULL, g_ca, &cctx, err, sizeof(err)), 0);
    end c = tg_end(tg_tls_new(cctx, "db.example.com"));
    end s = tg_end(tg_tls_new(sctx, NULL));
    tg_tls_ctx_free(sctx);
    tg_tls_ctx_free(cctx);
    tg_tls_ctx_free(NULL);
    pump(&c, &s, 0);
    assert_int_equal(c.rc, 1);
    assert_int_equal(s.rc, 1);
    transfer(&c, &s, (const uint8_t *)"ok", 2, 0);
    end_free(&c);
    end_free(&s);
    tg_tls_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_large_payload),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_early_write),
        cmocka_unit_test(test_verify_full_ip),
        cmocka_unit_test(test_verify_full_wrong_name),
        cmocka_unit_test(test_verify_full_wrong_ca),
        cmocka_unit_test(test_verify_full_needs_name),
        cmocka_unit_test(test_require_self_signed),
        cmocka_unit_test(test_require_with_ca),
        cmocka_unit_test(test_server_refuses_tls11),
        cmocka_unit_test(test_client_refuses_tls11),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_garbage_after_handshake),
        cmocka_unit_test(test_garbage_before_handshake),
        cmocka_unit_test(test_server_ctx_errors),
        cmocka_unit_test(test_client_ctx_errors),
        cmocka_unit_test(test_ctx_outlives_free),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
