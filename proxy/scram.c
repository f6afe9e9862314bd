/*
 * SCRAM-SHA-256 client over GNU SASL, and PostgreSQL's MD5 password response.
 *
 *   tg_scram_client_new(user, password)
 *        |  gsasl_client_start("SCRAM-SHA-256"), AUTHID set; the password stays here
 *        v
 *   step 0: in = ""            --gsasl_step--> client-first  "n,,n=user,r=cnonce"
 *   step 1: in = server-first  --gsasl_step--> client-final  "c=biws,r=...,p=proof"
 *                                   `--callback: SCRAM_SALTED_PASSWORD = PBKDF2(password, s, i)
 *   step 2: in = server-final  --gsasl_step--> GSASL_OK only when v= is the server signature
 *        |
 *        v
 *   1 (done, server verified) -- any other outcome is TG_EAUTH and the object is spent
 *
 * One Gsasl handle serves the whole process. It is created once (pthread_once,
 * normally from the main thread through tg_scram_global_init) and is only read
 * afterwards: gsasl_client_start looks up the mechanism table and the session
 * keeps a pointer to the handle for callbacks. The GNU SASL manual ("Features":
 * "It's thread-safe -- no global variables are used and multiple library handles
 * and session handles may be used in parallel") allows sessions of one handle to
 * run in parallel on different threads, so no per-thread handle is needed; a
 * tg_scram object itself belongs to one session and is not shared.
 *
 * No channel binding: PostgreSQL's "SCRAM-SHA-256" (not -PLUS) expects the gs2
 * header "n,,". GNU SASL sends "y,," when it can obtain a channel-binding value
 * (GSASL_CB_TLS_UNIQUE / GSASL_CB_TLS_EXPORTER), so the callback installed here
 * answers every query except one with GSASL_NO_CALLBACK: authzid and channel
 * binding stay absent.
 *
 * The one answered query is GSASL_SCRAM_SALTED_PASSWORD, asked after the
 * server-first message (salt and iteration count are then session properties).
 * The password is deliberately NOT a gsasl property, so gsasl cannot derive the
 * key itself; the callback does, with OpenSSL's PBKDF2, because:
 *   - the iteration count comes from the backend, which is untrusted input: it
 *     must lie in [TG_SCRAM_MIN_ITERATIONS, TG_SCRAM_MAX_ITERATIONS] (a weak count
 *     hands a rogue server a cheaply crackable proof, a huge one burns a worker);
 *     outside it no key is supplied, gsasl fails with GSASL_NO_PASSWORD and the
 *     step returns TG_EAUTH;
 *   - password preparation follows PostgreSQL (src/common/saslprep.c, and libpq):
 *     pure ASCII is used as-is, otherwise SASLprep without unassigned code points,
 *     and the raw bytes when SASLprep refuses the string. gsasl alone would fail
 *     on, e.g., an ASCII control character that PostgreSQL accepts.
 * That step runs PBKDF2 on the calling thread: about a millisecond at 4096 rounds.
 */
#include "proxy/scram.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "proxy/error.h"

/* RFC 7677 asks for at least 4096; PostgreSQL's default is 4096, MongoDB's 15000. */
#define TG_SCRAM_MIN_ITERATIONS 4096
#define TG_SCRAM_MAX_ITERATIONS 1000000
#define TG_SCRAM_KEY_LEN 32 /* SHA-256 */

enum tg_scram_state { TG_SCRAM_RUNNING, TG_SCRAM_DONE, TG_SCRAM_FAILED };

struct tg_scram {
    Gsasl_session *session;
    char *password; /* owned; wiped on free */
    enum tg_scram_state state;
};

static Gsasl *g_gsasl; /* written once under g_once, read-only afterwards */
static int g_init_rc = TG_EIO;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* Parses a decimal iteration count; returns 0 when it is not one or out of range. */
static unsigned long parse_iterations(const char *p)
{
    unsigned long n = 0;
    if (p == NULL || *p == '\0')
        return 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        n = n * 10 + (unsigned long)(*p - '0');
        if (n > TG_SCRAM_MAX_ITERATIONS)
            return 0;
    }
    return n < TG_SCRAM_MIN_ITERATIONS ? 0 : n;
}

static bool is_ascii(const char *p)
{
    for (; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            return false;
    return true;
}

/*
 * SaltedPassword := PBKDF2-HMAC-SHA-256(prepared password, salt, i), set as the
 * hex GSASL_SCRAM_SALTED_PASSWORD property. Returns GSASL_OK, or an error and no
 * property (the mechanism then fails for want of a password).
 */
static int derive_salted_password(tg_scram *s, Gsasl_session *sctx)
{
    unsigned long iterations = parse_iterations(gsasl_property_fast(sctx, GSASL_SCRAM_ITER));
    const char *salt_b64 = gsasl_property_fast(sctx, GSASL_SCRAM_SALT);
    char *salt = NULL, *prepped = NULL;
    size_t salt_len = 0;
    unsigned char key[TG_SCRAM_KEY_LEN];
    char hex[2 * TG_SCRAM_KEY_LEN + 1];
    int rc = GSASL_AUTHENTICATION_ERROR;

    if (iterations == 0 || salt_b64 == NULL)
        return rc;
    if (gsasl_base64_from(salt_b64, strlen(salt_b64), &salt, &salt_len) != GSASL_OK ||
        salt_len == 0)
        goto out;

    const char *password = s->password;
    if (!is_ascii(password) && gsasl_saslprep(password, 0, &prepped, NULL) == GSASL_OK)
        password = prepped;
    size_t password_len = strlen(password);
    if (password_len > INT32_MAX || salt_len > INT32_MAX ||
        PKCS5_PBKDF2_HMAC(password, (int)password_len, (const unsigned char *)salt, (int)salt_len,
                          (int)iterations, EVP_sha256(), sizeof(key), key) != 1)
        goto out;
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(key); i++) {
        hex[2 * i] = digits[key[i] >> 4];
        hex[2 * i + 1] = digits[key[i] & 0x0f];
    }
    hex[sizeof(hex) - 1] = '\0';
    rc = gsasl_property_set(sctx, GSASL_SCRAM_SALTED_PASSWORD, hex);

out:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(hex, sizeof(hex));
    if (prepped != NULL)
        OPENSSL_cleanse(prepped, strlen(prepped));
    gsasl_free(prepped);
    gsasl_free(salt);
    return rc;
}

/*
 * Every property query from the mechanism lands here (the answer is whatever
 * property got set; the return value is advisory). Only the salted password is
 * supplied; an answer for GSASL_CB_TLS_* would turn the gs2 header into "y,,".
 */
static int scram_callback(Gsasl *ctx, Gsasl_session *sctx, Gsasl_property prop)
{
    (void)ctx;
    tg_scram *s = gsasl_session_hook_get(sctx);
    if (prop == GSASL_SCRAM_SALTED_PASSWORD && s != NULL)
        return derive_salted_password(s, sctx);
    return GSASL_NO_CALLBACK;
}

static void scram_init_once(void)
{
    Gsasl *ctx = NULL;
    if (gsasl_init(&ctx) != GSASL_OK)
        return;
    if (!gsasl_client_support_p(ctx, "SCRAM-SHA-256")) {
        gsasl_done(ctx);
        return;
    }
    gsasl_callback_set(ctx, scram_callback);
    g_gsasl = ctx;
    g_init_rc = 0;
}

/* Idempotent and thread-safe; a failed initialisation is final for the process. */
int tg_scram_global_init(void)
{
    pthread_once(&g_once, scram_init_once);
    return g_init_rc;
}

int tg_scram_client_new(const char *user, const char *password, tg_scram **out)
{
    if (user == NULL || password == NULL || out == NULL)
        return TG_EINVAL;
    *out = NULL;
    /* Normally a no-op: tg_scram_global_init already ran on the main thread. */
    if (tg_scram_global_init() != 0)
        return TG_EIO;

    tg_scram *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TG_ENOMEM;
    s->password = strdup(password);
    if (s->password == NULL) {
        free(s);
        return TG_ENOMEM;
    }
    int rc = gsasl_client_start(g_gsasl, "SCRAM-SHA-256", &s->session);
    if (rc != GSASL_OK) {
        s->session = NULL;
        rc = rc == GSASL_MALLOC_ERROR ? TG_ENOMEM : TG_EIO;
        goto fail;
    }
    gsasl_session_hook_set(s->session, s);
    /* A copy is kept by gsasl; the password stays with us (see the top of the file). */
    if (gsasl_property_set(s->session, GSASL_AUTHID, user) != GSASL_OK) {
        rc = TG_ENOMEM;
        goto fail;
    }
    s->state = TG_SCRAM_RUNNING;
    *out = s;
    return 0;

fail:
    tg_scram_free(s);
    return rc;
}

void tg_scram_free(tg_scram *s)
{
    if (s == NULL)
        return;
    if (s->session != NULL)
        gsasl_finish(s->session);
    if (s->password != NULL) {
        OPENSSL_cleanse(s->password, strlen(s->password));
        free(s->password);
    }
    free(s);
}

int tg_scram_step(tg_scram *s, const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
    if (out != NULL)
        *out = NULL;
    if (out_len != NULL)
        *out_len = 0;
    if (s == NULL || out == NULL || out_len == NULL || (in == NULL && in_len > 0))
        return TG_EAUTH;
    /* A finished or failed exchange takes no more input: a second "final" is refused. */
    if (s->state != TG_SCRAM_RUNNING)
        return TG_EAUTH;

    char *data = NULL;
    size_t data_len = 0;
    int rc = gsasl_step(s->session, (const char *)in, in_len, &data, &data_len);
    if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE) {
        /* Wrong server signature, "e=" from the server, malformed or tampered data. */
        gsasl_free(data);
        s->state = TG_SCRAM_FAILED;
        return TG_EAUTH;
    }
    if (rc == GSASL_OK)
        s->state = TG_SCRAM_DONE;
    if (data_len == 0) {
        gsasl_free(data);
        return rc == GSASL_OK ? 1 : 0;
    }
    /* gsasl allocates with malloc (gsasl_free is free on POSIX): the caller frees. */
    *out = (uint8_t *)data;
    *out_len = data_len;
    return rc == GSASL_OK ? 1 : 0;
}

/* Lowercase hex of a 16-byte MD5 digest into 32 characters (no NUL). */
static void md5_hex(const unsigned char digest[16], char hex[32])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < 16; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 0x0f];
    }
}

/* MD5 over a then b, as one message. Returns true on success. */
static bool md5_two(const void *a, size_t a_len, const void *b, size_t b_len,
                    unsigned char digest[16])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_md5(), NULL) == 1 &&
              EVP_DigestUpdate(md, a, a_len) == 1 && EVP_DigestUpdate(md, b, b_len) == 1 &&
              EVP_DigestFinal_ex(md, digest, &len) == 1 && len == 16;
    EVP_MD_CTX_free(md);
    return ok;
}

/*
 * If MD5 is unavailable (OpenSSL in FIPS mode, OOM) `out` is the empty string:
 * the backend then refuses the login instead of receiving a made-up hash.
 */
void tg_pg_md5_password(const char *user, const char *password, const uint8_t salt[4], char out[36])
{
    unsigned char digest[16];
    char inner_hex[32];

    out[0] = '\0';
    if (!md5_two(password, strlen(password), user, strlen(user), digest))
        return;
    md5_hex(digest, inner_hex);
    if (!md5_two(inner_hex, sizeof(inner_hex), salt, 4, digest))
        return;
    memcpy(out, "md5", 3);
    md5_hex(digest, out + 3);
    out[35] = '\0';
}
