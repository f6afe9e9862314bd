/*
 * Tests for proxy/scram.c. The client nonce is random, so RFC 7677's example
 * exchange cannot be replayed; instead a small SCRAM-SHA-256 server written here
 * with OpenSSL (PBKDF2-HMAC-SHA256, HMAC, SHA-256) plays the other side:
 *
 *   tg_scram ----client-first----> test_server_first   (checks gs2 "n,,", picks salt/nonce)
 *            <---server-first-----
 *            ----client-final----> test_server_final   (checks c=, r=, the client proof)
 *            <---server-final----- "v=<ServerSignature>" (or a forged / "e=" one)
 *
 * tg_scram_step must return 0, 0 and then 1 only after a genuine server-final.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "proxy/error.h"
#include "proxy/scram.h"

/* ---- a tiny SCRAM-SHA-256 server ---- */

#define SHA256_LEN 32

typedef struct test_server {
    const char *password; /* what the server believes the password is */
    unsigned char salt[16];
    int iterations;
    char client_first_bare[512];
    char server_first[512];
    char nonce[256]; /* client nonce + server nonce */
} test_server;

static size_t b64_encode(const unsigned char *in, size_t len, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* Decodes base64 into out; returns the decoded length or -1. */
static int b64_decode(const char *in, size_t len, unsigned char *out)
{
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    while (len > 0 && in[len - 1] == '=') { /* EVP_DecodeBlock counts padding as zeros */
        n--;
        len--;
    }
    return n;
}

static void hmac(const unsigned char *key, size_t key_len, const void *msg, size_t msg_len,
                 unsigned char out[SHA256_LEN])
{
    unsigned int len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &len));
    assert_int_equal(len, SHA256_LEN);
}

static void salted_password(const test_server *srv, unsigned char out[SHA256_LEN])
{
    assert_int_equal(PKCS5_PBKDF2_HMAC(srv->password, (int)strlen(srv->password), srv->salt,
                                       sizeof(srv->salt), srv->iterations, EVP_sha256(), SHA256_LEN,
                                       out),
                     1);
}

/* Returns a pointer to the value of attribute `name` ("r" etc.) in a SCRAM message. */
static const char *attr(const char *msg, char name, size_t *len)
{
    const char *p = msg;
    while (p != NULL && *p != '\0') {
        if (p[0] == name && p[1] == '=') {
            const char *end = strchr(p, ',');
            *len = end != NULL ? (size_t)(end - p - 2) : strlen(p + 2);
            return p + 2;
        }
        p = strchr(p, ',');
        if (p != NULL)
            p++;
    }
    return NULL;
}

static void server_init(test_server *srv, const char *password)
{
    memset(srv, 0, sizeof(*srv));
    srv->password = password;
    srv->iterations = 4096;
    assert_int_equal(RAND_bytes(srv->salt, sizeof(srv->salt)), 1);
}

/* Consumes client-first, returns server-first (NUL-terminated, static in srv). */
static const char *server_first(test_server *srv, const uint8_t *msg, size_t len)
{
    char buf[512];
    assert_true(len < sizeof(buf));
    memcpy(buf, msg, len);
    buf[len] = '\0';
    /* No channel binding toward PostgreSQL's SCRAM-SHA-256: the header is "n,,". */
    assert_memory_equal(buf, "n,,", 3);
    snprintf(srv->client_first_bare, sizeof(srv->client_first_bare), "%s", buf + 3);

    size_t nlen = 0;
    const char *cnonce = attr(srv->client_first_bare, 'r', &nlen);
    assert_non_null(cnonce);
    assert_true(nlen >= 16);

    unsigned char rnd[18];
    char snonce[32];
    assert_int_equal(RAND_bytes(rnd, sizeof(rnd)), 1);
    b64_encode(rnd, sizeof(rnd), snonce);
    snprintf(srv->nonce, sizeof(srv->nonce), "%.*s%s", (int)nlen, cnonce, snonce);

    char salt_b64[32];
    b64_encode(srv->salt, sizeof(srv->salt), salt_b64);
    snprintf(srv->server_first, sizeof(srv->server_first), "r=%s,s=%s,i=%d", srv->nonce, salt_b64,
             srv->iterations);
    return srv->server_first;
}

/*
 * Consumes client-final. Returns true when the proof verifies, and the genuine
 * server-final "v=..." in out; false (and "e=invalid-proof") otherwise.
 */
static bool server_final(test_server *srv, const uint8_t *msg, size_t len, char *out,
                         size_t out_size)
{
    char buf[512];
    assert_true(len < sizeof(buf));
    memcpy(buf, msg, len);
    buf[len] = '\0';

    size_t vlen = 0;
    const char *c = attr(buf, 'c', &vlen);
    assert_non_null(c);
    assert_int_equal(vlen, 4);
    assert_memory_equal(c, "biws", 4); /* base64("n,,") */
    const char *r = attr(buf, 'r', &vlen);
    assert_non_null(r);
    assert_int_equal(vlen, strlen(srv->nonce));
    assert_memory_equal(r, srv->nonce, vlen);
    const char *p = strstr(buf, ",p=");
    assert_non_null(p);

    char auth_message[1536];
    int am_len = snprintf(auth_message, sizeof(auth_message), "%s,%s,%.*s", srv->client_first_bare,
                          srv->server_first, (int)(p - buf), buf);
    assert_true(am_len > 0 && (size_t)am_len < sizeof(auth_message));

    unsigned char proof[64];
    assert_int_equal(b64_decode(p + 3, strlen(p + 3), proof), SHA256_LEN);

    unsigned char sp[SHA256_LEN], client_key[SHA256_LEN], stored_key[SHA256_LEN];
    unsigned char client_sig[SHA256_LEN], server_key[SHA256_LEN], server_sig[SHA256_LEN];
    salted_password(srv, sp);
    hmac(sp, SHA256_LEN, "Client Key", 10, client_key);
    SHA256(client_key, SHA256_LEN, stored_key);
    hmac(stored_key, SHA256_LEN, auth_message, (size_t)am_len, client_sig);

    /* ClientKey' = proof XOR ClientSignature; it must hash to StoredKey. */
    unsigned char recovered[SHA256_LEN], recovered_stored[SHA256_LEN];
    for (size_t i = 0; i < SHA256_LEN; i++)
        recovered[i] = proof[i] ^ client_sig[i];
    SHA256(recovered, SHA256_LEN, recovered_stored);
    if (CRYPTO_memcmp(recovered_stored, stored_key, SHA256_LEN) != 0) {
        snprintf(out, out_size, "e=invalid-proof");
        return false;
    }

    hmac(sp, SHA256_LEN, "Server Key", 10, server_key);
    hmac(server_key, SHA256_LEN, auth_message, (size_t)am_len, server_sig);
    char sig_b64[64];
    b64_encode(server_sig, SHA256_LEN, sig_b64);
    snprintf(out, out_size, "v=%s", sig_b64);
    return true;
}

/* ---- exchanges ---- */

typedef enum { FINAL_GENUINE, FINAL_FORGED } final_kind;

/*
 * Runs one exchange of `client_password` against a server that knows
 * `server_password` and asks for `iterations`. Returns the result of the last
 * tg_scram_step and whether the server accepted the proof.
 */
static int exchange_ex(const char *client_password, const char *server_password, int iterations,
                       final_kind kind, bool *server_accepted)
{
    tg_scram *s = NULL;
    test_server srv;
    uint8_t *out = NULL;
    size_t out_len = 0;

    server_init(&srv, server_password);
    srv.iterations = iterations;
    assert_int_equal(tg_scram_client_new("tenantgate", client_password, &s), 0);

    /* step 0: no input, client-first out */
    assert_int_equal(tg_scram_step(s, NULL, 0, &out, &out_len), 0);
    assert_non_null(out);
    const char *sf = server_first(&srv, out, out_len);
    free(out);

    /* step 1: server-first in, client-final out (or a refusal of the parameters) */
    int rc = tg_scram_step(s, (const uint8_t *)sf, strlen(sf), &out, &out_len);
    if (rc != 0) {
        assert_int_equal(rc, TG_EAUTH);
        assert_null(out);
        *server_accepted = false;
        tg_scram_free(s);
        return rc;
    }
    assert_non_null(out);
    char final[128];
    *server_accepted = server_final(&srv, out, out_len, final, sizeof(final));
    free(out);

    if (kind == FINAL_FORGED && *server_accepted) {
        /* Flip one bit of the signature and re-encode it: same shape, wrong value. */
        unsigned char sig[64];
        assert_int_equal(b64_decode(final + 2, strlen(final + 2), sig), SHA256_LEN);
        sig[7] ^= 0x20;
        b64_encode(sig, SHA256_LEN, final + 2);
    }

    /* step 2: server-final in; 1 only when the server proved it knows the password */
    rc = tg_scram_step(s, (const uint8_t *) final, strlen(final), &out, &out_len);
    assert_null(out);
    assert_int_equal(out_len, 0);
    if (rc == 1 || rc == TG_EAUTH) {
        /* Whatever happened, the exchange is over: nothing more is accepted. */
        assert_int_equal(tg_scram_step(s, (const uint8_t *) final, strlen(final), &out, &out_len),
                         TG_EAUTH);
        assert_null(out);
    }
    tg_scram_free(s);
    return rc;
}

static int run_exchange(const char *client_password, const char *server_password, final_kind kind,
                        bool *server_accepted)
{
    return exchange_ex(client_password, server_password, 4096, kind, server_accepted);
}

static void right_password_succeeds(void **state)
{
    (void)state;
    bool accepted = false;
    assert_int_equal(run_exchange("s3cr=t,pa$$", "s3cr=t,pa$$", FINAL_GENUINE, &accepted), 1);
    assert_true(accepted);
}

static void wrong_password_fails_at_server(void **state)
{
    (void)state;
    bool accepted = true;
    /* The server answers "e=invalid-proof"; the client reports TG_EAUTH. */
    assert_int_equal(run_exchange("wrong", "right", FINAL_GENUINE, &accepted), TG_EAUTH);
    assert_false(accepted);
}

static void forged_server_final_is_refused(void **state)
{
    (void)state;
    bool accepted = false;
    assert_int_equal(run_exchange("pw", "pw", FINAL_FORGED, &accepted), TG_EAUTH);
    assert_true(accepted);
}

/*
 * Password preparation follows PostgreSQL: ASCII as-is (even control characters,
 * which SASLprep prohibits), SASLprep otherwise (U+00A0 NO-BREAK SPACE maps to
 * U+0020), raw bytes when SASLprep refuses (U+0007 next to non-ASCII text).
 * The test server hashes exactly the bytes given to it.
 */
static void password_preparation_matches_postgres(void **state)
{
    (void)state;
    bool accepted = false;
    assert_int_equal(exchange_ex("abc\adef", "abc\adef", 4096, FINAL_GENUINE, &accepted), 1);
    assert_true(accepted);
    assert_int_equal(exchange_ex("p\xc3\xa4ss w\xc3\xb6rd", "p\xc3\xa4ss w\xc3\xb6rd", 4096,
                                 FINAL_GENUINE, &accepted),
                     1);
    assert_int_equal(exchange_ex("pa\xc2\xa0ss", "pa ss", 4096, FINAL_GENUINE, &accepted), 1);
    assert_int_equal(exchange_ex("pa\xc2\xa0ss", "pa\xc2\xa0ss", 4096, FINAL_GENUINE, &accepted),
                     TG_EAUTH);
    assert_false(accepted);
    assert_int_equal(exchange_ex("\xc3\xa4\a", "\xc3\xa4\a", 4096, FINAL_GENUINE, &accepted), 1);
    assert_int_equal(exchange_ex("\xff\xfe", "\xff\xfe", 4096, FINAL_GENUINE, &accepted), 1);
}

/* The backend's iteration count is untrusted: too weak or too costly is refused. */
static void iteration_count_is_bounded(void **state)
{
    (void)state;
    bool accepted = true;
    assert_int_equal(exchange_ex("pw", "pw", 4095, FINAL_GENUINE, &accepted), TG_EAUTH);
    assert_false(accepted);
    assert_int_equal(exchange_ex("pw", "pw", 1, FINAL_GENUINE, &accepted), TG_EAUTH);
    /* Refused before any hashing: this does not run 2^31 PBKDF2 rounds. */
    assert_int_equal(exchange_ex("pw", "pw", 2147483647, FINAL_GENUINE, &accepted), TG_EAUTH);
    assert_int_equal(exchange_ex("pw", "pw", 1000001, FINAL_GENUINE, &accepted), TG_EAUTH);
    assert_int_equal(exchange_ex("pw", "pw", 15000, FINAL_GENUINE, &accepted), 1);
    assert_true(accepted);
}

/* A server-first whose salt is not base64 is refused. */
static void bad_salt_is_refused(void **state)
{
    (void)state;
    tg_scram *s = NULL;
    uint8_t *out = NULL;
    size_t out_len = 0;

    assert_int_equal(tg_scram_client_new("u", "pw", &s), 0);
    assert_int_equal(tg_scram_step(s, NULL, 0, &out, &out_len), 0);
    char cf[256], sf[256];
    assert_true(out_len < sizeof(cf));
    memcpy(cf, out, out_len); /* gsasl output is not NUL-terminated by contract */
    cf[out_len] = '\0';
    size_t nlen = 0;
    const char *cnonce = attr(cf + 3, 'r', &nlen);
    assert_non_null(cnonce);
    snprintf(sf, sizeof(sf), "r=%.*sSRV,s=!!notbase64!!,i=4096", (int)nlen, cnonce);
    free(out);
    assert_int_equal(tg_scram_step(s, (const uint8_t *)sf, strlen(sf), &out, &out_len), TG_EAUTH);
    assert_null(out);
    tg_scram_free(s);
}

/* An impostor that does not know the password accepts any proof and guesses a signature. */
static void impostor_server_is_refused(void **state)
{
    (void)state;
    tg_scram *s = NULL;
    test_server srv;
    uint8_t *out = NULL;
    size_t out_len = 0;

    server_init(&srv, "guess");
    assert_int_equal(tg_scram_client_new("u", "real", &s), 0);
    assert_int_equal(tg_scram_step(s, NULL, 0, &out, &out_len), 0);
    const char *sf = server_first(&srv, out, out_len);
    free(out);
    assert_int_equal(tg_scram_step(s, (const uint8_t *)sf, strlen(sf), &out, &out_len), 0);
    char final[128];
    assert_false(server_final(&srv, out, out_len, final, sizeof(final)));
    free(out);
    /* It cannot compute ServerSignature without the password, so it guesses. */
    unsigned char sig[SHA256_LEN];
    assert_int_equal(RAND_bytes(sig, sizeof(sig)), 1);
    char forged[64] = "v=";
    b64_encode(sig, sizeof(sig), forged + 2);
    assert_int_equal(tg_scram_step(s, (const uint8_t *)forged, strlen(forged), &out, &out_len),
                     TG_EAUTH);
    tg_scram_free(s);
}

/* A server-first whose nonce does not extend the client's nonce is refused. */
static void foreign_nonce_is_refused(void **state)
{
    (void)state;
    tg_scram *s = NULL;
    uint8_t *out = NULL;
    size_t out_len = 0;

    assert_int_equal(tg_scram_client_new("u", "pw", &s), 0);
    assert_int_equal(tg_scram_step(s, NULL, 0, &out, &out_len), 0);
    free(out);
    const char *sf = "r=AAAAAAAAAAAAAAAAAAAAAAAAserver,s=c2FsdHNhbHQ=,i=4096";
    assert_int_equal(tg_scram_step(s, (const uint8_t *)sf, strlen(sf), &out, &out_len), TG_EAUTH);
    assert_null(out);
    tg_scram_free(s);
}

/* Garbage instead of a server-first is refused. */
static void garbage_server_first_is_refused(void **state)
{
    (void)state;
    tg_scram *s = NULL;
    uint8_t *out = NULL;
    size_t out_len = 0;

    assert_int_equal(tg_scram_client_new("u", "pw", &s), 0);
    assert_int_equal(tg_scram_step(s, NULL, 0, &out, &out_len), 0);
    free(out);
    static const uint8_t junk[] = {'x', 0, 0xff, ',', '='};
    assert_int_equal(tg_scram_step(s, junk, sizeof(junk), &out, &out_len), TG_EAUTH);
    assert_null(out);
    tg_scram_free(s);
}

static void client_first_has_no_channel_binding(void **state)
{
    (void)state;
    tg_scram *s = NULL;
    uint8_t *out = NULL;
    size_t out_len = 0;

    assert_int_equal(tg_scram_client_new("alice", "pw", &s), 0);
    assert_int_equal(tg_scram_step(s, NULL, 0, &out, &out_len), 0);
    assert_true(out_len > 13);
    assert_memory_equal(out, "n,,n=alice,r=", 13);
    free(out);
    tg_scram_free(s);
}

/* Exchanges on several threads at once share the process-wide Gsasl handle. */
static void *exchange_thread(void *arg)
{
    int *failures = arg;
    for (int i = 0; i < 8; i++) {
        bool accepted = false;
        tg_scram *s = NULL;
        test_server srv;
        uint8_t *out = NULL;
        size_t out_len = 0;
        char final[128];

        /*
         * tg_scram results are counted, not asserted (cmocka asserts belong to the
         * main thread); an assert failing inside the server helpers aborts the run.
         */
        server_init(&srv, "threaded");
        if (tg_scram_client_new("t", "threaded", &s) != 0 ||
            tg_scram_step(s, NULL, 0, &out, &out_len) != 0) {
            (*failures)++;
            tg_scram_free(s);
            continue;
        }
        const char *sf = server_first(&srv, out, out_len);
        free(out);
        if (tg_scram_step(s, (const uint8_t *)sf, strlen(sf), &out, &out_len) != 0) {
            (*failures)++;
            tg_scram_free(s);
            continue;
        }
        accepted = server_final(&srv, out, out_len, final, sizeof(final));
        free(out);
        if (!accepted ||
            tg_scram_step(s, (const uint8_t *) final, strlen(final), &out, &out_len) != 1)
            (*failures)++;
        tg_scram_free(s);
    }
    return NULL;
}

static void parallel_exchanges(void **state)
{
    (void)state;
    pthread_t threads[4];
    int failures[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, exchange_thread, &failures[i]), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(failures[i], 0);
    }
}

static void bad_arguments(void **state)
{
    (void)state;
    tg_scram *s = (tg_scram *)&s;
    assert_int_equal(tg_scram_client_new(NULL, "pw", &s), TG_EINVAL);
    assert_int_equal(tg_scram_client_new("u", NULL, &s), TG_EINVAL);
    tg_scram_free(NULL);
}

/* ---- MD5 ---- */

static void md5_password_known_value(void **state)
{
    (void)state;
    static const uint8_t salt[4] = {0x01, 0x02, 0x03, 0x04};
    char out[36];
    memset(out, 'X', sizeof(out));
    tg_pg_md5_password("postgres", "secret", salt, out);
    /*
     * Computed independently with:
     *   /usr/bin/python3 -c "import hashlib; inner = hashlib.md5(b'secret' +
     * b'postgres').hexdigest(); print('md5' + hashlib.md5(inner.encode() + bytes([1, 2, 3,
     * 4])).hexdigest())"
     */
    assert_string_equal(out, "md5bb41a296aab6baccb36ff243a562abff");
}

static int group_setup(void **state)
{
    (void)state;
    return tg_scram_global_init() == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(right_password_succeeds),
        cmocka_unit_test(wrong_password_fails_at_server),
        cmocka_unit_test(forged_server_final_is_refused),
        cmocka_unit_test(impostor_server_is_refused),
        cmocka_unit_test(password_preparation_matches_postgres),
        cmocka_unit_test(iteration_count_is_bounded),
        cmocka_unit_test(bad_salt_is_refused),
        cmocka_unit_test(foreign_nonce_is_refused),
        cmocka_unit_test(garbage_server_first_is_refused),
        cmocka_unit_test(client_first_has_no_channel_binding),
        cmocka_unit_test(parallel_exchanges),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(md5_password_known_value),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
