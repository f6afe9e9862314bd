/*
 * Unit tests for proxy/jwt.c and proxy/jwt_keys.c.
 *
 * The group setup generates fresh keys with OpenSSL (RSA-2048 twice, EC P-256,
 * EC P-384, RSA-1024 for the policy check), writes their public halves as PEM
 * files and one JWKS document into a mkdtemp directory, and reads them back
 * into tg_secret structs filled by hand (the config parser is not involved).
 * Tokens are signed with libjwt using the private keys (PS256 with OpenSSL),
 * or assembled by hand for the malformed and forged cases.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "proxy/error.h"
#include "proxy/jwt.h"

#define NOW 1700000000LL
#define HS_SECRET "0123456789abcdef0123456789abcdef-test-secret"

typedef struct keypair {
    EVP_PKEY *pkey;
    char *priv_pem; /* PKCS#8 PEM, for libjwt signing */
    char *pub_pem;  /* SPKI PEM, as written to the key file */
} keypair;

static struct {
    char dir[64];
    keypair rsa, rsa2, ec256, ec384, rsa1024;
    char *jwks;
} g;

/* ---- helpers ------------------------------------------------------------------------------- */

static char *bio_string(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

static void keypair_make(keypair *kp, EVP_PKEY *pkey)
{
    assert_non_null(pkey);
    kp->pkey = pkey;
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL), 1);
    kp->priv_pem = bio_string(b);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b, pkey), 1);
    kp->pub_pem = bio_string(b);
    BIO_free(b);
}

static void keypair_free(keypair *kp)
{
    EVP_PKEY_free(kp->pkey);
    free(kp->priv_pem);
    free(kp->pub_pem);
}

static char *b64url(const unsigned char *in, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len * 4 / 3 + 4);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = tbl[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = tbl[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

static char *bn_b64(const BIGNUM *bn, int pad)
{
    int n = pad ? pad : BN_num_bytes(bn);
    unsigned char *buf = malloc((size_t)n);
    assert_int_equal(BN_bn2binpad(bn, buf, n), n);
    char *s = b64url(buf, (size_t)n);
    free(buf);
    return s;
}

static char *jwk_rsa(const keypair *kp, const char *kid, const char *extra)
{
    BIGNUM *n = NULL, *e = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(kp->pkey, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(kp->pkey, OSSL_PKEY_PARAM_RSA_E, &e), 1);
    char *ns = bn_b64(n, 0), *es = bn_b64(e, 0);
    char *out = NULL;
    assert_true(asprintf(&out, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"%s}", kid,
                         ns, es, extra) > 0);
    free(ns);
    free(es);
    BN_free(n);
    BN_free(e);
    return out;
}

static char *jwk_ec(const keypair *kp, const char *kid, const char *crv, int coord)
{
    BIGNUM *x = NULL, *y = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(kp->pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(kp->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
    char *xs = bn_b64(x, coord), *ys = bn_b64(y, coord);
    char *out = NULL;
    assert_true(
        asprintf(&out,
                 "{\"kty\":\"EC\",\"use\":\"sig\",\"kid\":\"%s\",\"crv\":\"%s\",\"x\":\"%s\","
                 "\"y\":\"%s\"}",
                 kid, crv, xs, ys) > 0);
    free(xs);
    free(ys);
    BN_free(x);
    BN_free(y);
    return out;
}

static void write_file(const char *name, const char *data)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", g.dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, strlen(data), f), strlen(data));
    fclose(f);
}

/* Reads a file of the temp dir into a tg_secret, as the config loader would. */
static tg_secret read_secret(const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", g.dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = malloc(1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    if (n > 0 && buf[n - 1] == '\n') /* one trailing newline is dropped, as the config does */
        n--;
    buf[n] = '\0';
    return (tg_secret){strdup(path), buf, n};
}

static tg_secret literal_secret(const char *s)
{
    return (tg_secret){strdup("<literal>"), strdup(s), strlen(s)};
}

static void secret_free(tg_secret *s)
{
    free(s->path);
    free(s->data);
}

/* A config holding the named key files (NULL: not configured), defaults otherwise. */
typedef struct test_cfg {
    tg_jwt_config jwt;
    tg_sni_config sni;
} test_cfg;

static void cfg_init(test_cfg *c, const char *hs_file, const char *pem_file, const char *jwks_file)
{
    memset(c, 0, sizeof(*c));
    c->jwt.algorithms = TG_JWT_ALG_RS256 | TG_JWT_ALG_ES256 | TG_JWT_ALG_HS256 | TG_JWT_ALG_ES384 |
                        TG_JWT_ALG_PS256;
    c->jwt.leeway_s = 30;
    c->jwt.cache_size = 64;
    c->jwt.max_token_bytes = 8192;
    c->jwt.tenant_claim = "tenant_id";
    if (hs_file)
        c->jwt.hs256_secret = read_secret(hs_file);
    if (pem_file)
        c->jwt.public_key = read_secret(pem_file);
    if (jwks_file)
        c->jwt.jwks = read_secret(jwks_file);
}

static void cfg_free(test_cfg *c)
{
    secret_free(&c->jwt.hs256_secret);
    secret_free(&c->jwt.public_key);
    secret_free(&c->jwt.jwks);
}

static tg_jwt_verifier *verifier(test_cfg *c)
{
    tg_jwt_verifier *v = NULL;
    char err[256];
    int rc = tg_jwt_verifier_new(&c->jwt, &c->sni, &v, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "verifier_new: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(v);
    return v;
}

static int verifier_fails(test_cfg *c)
{
    tg_jwt_verifier *v = NULL;
    char err[256] = "";
    int rc = tg_jwt_verifier_new(&c->jwt, &c->sni, &v, err, sizeof(err));
    assert_null(v);
    assert_true(strlen(err) > 0);
    return rc;
}

/* Signs claims (JSON) with libjwt; kid NULL for none. Returns a malloc'd token. */
static char *sign(jwt_alg_t alg, const char *key, size_t keylen, const char *kid,
                  const char *claims)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    if (kid)
        assert_int_equal(jwt_add_header(jwt, "kid", kid), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)keylen), 0);
    char *tok = jwt_encode_str(jwt);
    assert_non_null(tok);
    jwt_free(jwt);
    return tok;
}

static char *sign_kp(jwt_alg_t alg, const keypair *kp, const char *kid, const char *claims)
{
    return sign(alg, kp->priv_pem, strlen(kp->priv_pem), kid, claims);
}

static char *sign_hs(const char *claims)
{
    return sign(JWT_ALG_HS256, HS_SECRET, strlen(HS_SECRET), NULL, claims);
}

/* Standard claims: tenant acme, exp NOW+3600, plus `more` (",\"k\":v" or ""). */
static char *claims(const char *more)
{
    char *s = NULL;
    assert_true(asprintf(&s, "{\"tenant_id\":\"acme\",\"exp\":%lld%s}", NOW + 3600, more) > 0);
    return s;
}

/* "b64(header).b64(payload).sig" by hand. */
static char *assemble(const char *header, const char *payload, const char *sig)
{
    char *h = b64url_str(header), *p = b64url_str(payload), *t = NULL;
    assert_true(asprintf(&t, "%s.%s.%s", h, p, sig) > 0);
    free(h);
    free(p);
    return t;
}

/* An HS256 token whose MAC key is `key` (used for the HS/RS confusion attack). */
static char *forge_hs256(const char *header, const char *payload, const unsigned char *key,
                         size_t keylen)
{
    char *h = b64url_str(header), *p = b64url_str(payload), *input = NULL, *t = NULL;
    assert_true(asprintf(&input, "%s.%s", h, p) > 0);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)input,
                         strlen(input), mac, &maclen));
    char *s = b64url(mac, maclen);
    assert_true(asprintf(&t, "%s.%s", input, s) > 0);
    free(h);
    free(p);
    free(input);
    free(s);
    return t;
}

static char *sign_ps256(const keypair *kp, const char *payload)
{
    char *h = b64url_str("{\"alg\":\"PS256\",\"typ\":\"JWT\"}"), *p = b64url_str(payload);
    char *input = NULL, *t = NULL;
    assert_true(asprintf(&input, "%s.%s", h, p) > 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    assert_int_equal(EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, kp->pkey), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
    unsigned char sig[512];
    size_t sl = sizeof(sig);
    assert_int_equal(EVP_DigestSign(md, sig, &sl, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    char *s = b64url(sig, sl);
    assert_true(asprintf(&t, "%s.%s", input, s) > 0);
    free(h);
    free(p);
    free(input);
    free(s);
    return t;
}

static tg_jwt_result check(const tg_jwt_verifier *v, const char *tok, int64_t now, tg_identity *id)
{
    tg_identity local;
    return tg_jwt_verify(v, NULL, tok, strlen(tok), now, NULL, id ? id : &local);
}

/* Verifies with a fresh all-keys-PEM config of one file and frees everything. */
static tg_jwt_result check_with(const char *hs, const char *pem, const char *jwks, char *tok)
{
    test_cfg c;
    cfg_init(&c, hs, pem, jwks);
    tg_jwt_verifier *v = verifier(&c);
    tg_identity id;
    tg_jwt_result r = check(v, tok, NOW, &id);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
    free(tok);
    return r;
}

/* ---- setup --------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    strcpy(g.dir, "/tmp/tg-jwt-test-XXXXXX");
    if (!mkdtemp(g.dir))
        return -1;
    keypair_make(&g.rsa, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048));
    keypair_make(&g.rsa2, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048));
    keypair_make(&g.rsa1024, EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024));
    keypair_make(&g.ec256, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
    keypair_make(&g.ec384, EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384"));
    write_file("hs.secret", HS_SECRET "\n");
    write_file("rsa.pem", g.rsa.pub_pem);
    write_file("rsa1024.pem", g.rsa1024.pub_pem);
    write_file("ec256.pem", g.ec256.pub_pem);
    write_file("ec384.pem", g.ec384.pub_pem);

    char *k1 = jwk_rsa(&g.rsa, "rsa1", ",\"use\":\"sig\",\"alg\":\"RS256\"");
    char *k2 = jwk_rsa(&g.rsa2, "rsa2", "");
    char *k3 = jwk_ec(&g.ec256, "ec256", "P-256", 32);
    char *k4 = jwk_ec(&g.ec384, "ec384", "P-384", 48);
    char *k5 = jwk_rsa(&g.rsa2, "rsa2-enc", ",\"use\":\"enc\"");
    char *k6 = jwk_rsa(&g.rsa2, "rsa2-rs384", ",\"alg\":\"RS384\"");
    char *k7 = jwk_rsa(&g.rsa1024, "weak", "");
    assert_true(asprintf(&g.jwks,
                         "{\"keys\":[%s,%s,%s,%s,%s,%s,%s,"
                         "{\"kty\":\"oct\",\"kid\":\"hmac\",\"k\":\"c2VjcmV0\"}]}",
                         k1, k2, k3, k4, k5, k6, k7) > 0);
    write_file("jwks.json", g.jwks);
    char *single = NULL;
    assert_true(asprintf(&single, "{\"keys\":[%s,%s]}", k2, k3) > 0);
    write_file("jwks-single.json", single);
    free(single);
    free(k1);
    free(k2);
    free(k3);
    free(k4);
    free(k5);
    free(k6);
    free(k7);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    const char *files[] = {"hs.secret", "rsa.pem",   "rsa1024.pem",      "ec256.pem",
                           "ec384.pem", "jwks.json", "jwks-single.json", "bad.pem",
                           "bad.json",  "empty.json"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/%s", g.dir, files[i]);
        unlink(path);
    }
    rmdir(g.dir);
    keypair_free(&g.rsa);
    keypair_free(&g.rsa2);
    keypair_free(&g.rsa1024);
    keypair_free(&g.ec256);
    keypair_free(&g.ec384);
    free(g.jwks);
    return 0;
}

/* ---- valid tokens -------------------------------------------------------------------------- */

static void test_valid_hs256(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, "hs.secret", NULL, NULL);
    tg_jwt_verifier *v = verifier(&c);
    char *cl = claims(",\"jti\":\"abc-123\",\"tenant_slug\":\"acme\"");
    char *tok = sign_hs(cl);
    tg_identity id;
    assert_int_equal(check(v, tok, NOW, &id), TG_JWT_OK);
    assert_string_equal(id.tenant, "acme");
    assert_string_equal(id.slug, "acme");
    assert_string_equal(id.jti, "abc-123");
    assert_int_equal(id.exp, NOW + 3600);
    free(tok);
    free(cl);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
}

static void test_valid_asymmetric(void **state)
{
    (void)state;
    char *cl = claims("");
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl)),
                     TG_JWT_OK);
    assert_int_equal(
        check_with(NULL, "ec256.pem", NULL, sign_kp(JWT_ALG_ES256, &g.ec256, NULL, cl)), TG_JWT_OK);
    assert_int_equal(
        check_with(NULL, "ec384.pem", NULL, sign_kp(JWT_ALG_ES384, &g.ec384, NULL, cl)), TG_JWT_OK);
    /* A kid in the token does not matter when there is no JWKS. */
    assert_int_equal(
        check_with(NULL, "rsa.pem", NULL, sign_kp(JWT_ALG_RS256, &g.rsa, "whatever", cl)),
        TG_JWT_OK);
    /* PS256 (verified with OpenSSL directly: libjwt 1.10 has no PSS). */
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, sign_ps256(&g.rsa, cl)), TG_JWT_OK);
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, sign_ps256(&g.rsa2, cl)),
                     TG_JWT_BAD_SIGNATURE);
    free(cl);
}

/* ---- time claims --------------------------------------------------------------------------- */

static void test_times(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, "hs.secret", NULL, NULL);
    tg_jwt_verifier *v = verifier(&c);
    char *tok = sign_hs("{\"tenant_id\":\"acme\",\"exp\":1700000000}");
    assert_int_equal(check(v, tok, NOW - 1, NULL), TG_JWT_OK);
    assert_int_equal(check(v, tok, NOW + 29, NULL), TG_JWT_OK); /* within leeway */
    assert_int_equal(check(v, tok, NOW + 30, NULL), TG_JWT_EXPIRED);
    assert_int_equal(check(v, tok, NOW + 100000, NULL), TG_JWT_EXPIRED);
    free(tok);

    tok = sign_hs("{\"tenant_id\":\"acme\",\"exp\":1700000000.5}");
    assert_int_equal(check(v, tok, NOW - 1, NULL), TG_JWT_OK);
    free(tok);
    tok = sign_hs("{\"tenant_id\":\"acme\"}");
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_MISSING_EXP);
    free(tok);
    tok = sign_hs("{\"tenant_id\":\"acme\",\"exp\":\"1800000000\"}");
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_MISSING_EXP);
    free(tok);
    tok = sign_hs("{\"tenant_id\":\"acme\",\"exp\":true}");
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_MISSING_EXP);
    free(tok);
    tok = sign_hs("{\"tenant_id\":\"acme\",\"exp\":9223372036854775807}");
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_OK);
    free(tok);

    char *cl = claims(",\"nbf\":1700000100");
    tok = sign_hs(cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_NOT_YET_VALID);
    assert_int_equal(check(v, tok, NOW + 70, NULL), TG_JWT_OK); /* within leeway */
    free(tok);
    free(cl);
    cl = claims(",\"nbf\":\"1600000000\"");
    tok = sign_hs(cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_NOT_YET_VALID);
    free(tok);
    free(cl);
    cl = claims(",\"nbf\":1690000000");
    tok = sign_hs(cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_OK);
    free(tok);
    free(cl);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
}

/* ---- signatures and algorithms ------------------------------------------------------------- */

static void flip(char *tok, size_t pos)
{
    tok[pos] = tok[pos] == 'A' ? 'B' : 'A';
}

static void test_bad_signature(void **state)
{
    (void)state;
    char *cl = claims("");
    char *tok = sign_hs(cl);
    flip(tok, strrchr(tok, '.') - tok + 3);
    assert_int_equal(check_with("hs.secret", NULL, NULL, tok), TG_JWT_BAD_SIGNATURE);

    tok = sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl);
    flip(tok, strrchr(tok, '.') - tok + 10);
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, tok), TG_JWT_BAD_SIGNATURE);

    tok = sign_kp(JWT_ALG_ES256, &g.ec256, NULL, cl);
    flip(tok, strrchr(tok, '.') - tok + 10);
    assert_int_equal(check_with(NULL, "ec256.pem", NULL, tok), TG_JWT_BAD_SIGNATURE);

    /* A payload changed after signing. */
    tok = sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl);
    flip(tok, strchr(tok, '.') - tok + 4);
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, tok), TG_JWT_BAD_SIGNATURE);

    /* Signed by another RSA key. */
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, sign_kp(JWT_ALG_RS256, &g.rsa2, NULL, cl)),
                     TG_JWT_BAD_SIGNATURE);
    /* Signed with another HS secret. */
    tok = sign(JWT_ALG_HS256, "another-secret-another-secret-another", 37, NULL, cl);
    assert_int_equal(check_with("hs.secret", NULL, NULL, tok), TG_JWT_BAD_SIGNATURE);
    free(cl);
}

static void test_alg_none(void **state)
{
    (void)state;
    char *cl = claims("");
    const char *headers[] = {"{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"None\"}",
                             "{\"alg\":\"NONE\"}", "{\"alg\":\"nOnE\"}"};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        /* With an empty signature segment (the classic form) and with some bytes. */
        assert_int_equal(check_with("hs.secret", "rsa.pem", NULL, assemble(headers[i], cl, "")),
                         TG_JWT_MALFORMED);
        assert_int_equal(check_with("hs.secret", "rsa.pem", NULL, assemble(headers[i], cl, "c2ln")),
                         TG_JWT_BAD_ALGORITHM);
        assert_int_equal(check_with(NULL, NULL, "jwks.json", assemble(headers[i], cl, "c2ln")),
                         TG_JWT_BAD_ALGORITHM);
    }
    /* libjwt's own "none" tokens. */
    assert_int_equal(check_with("hs.secret", NULL, NULL, sign(JWT_ALG_NONE, NULL, 0, NULL, cl)),
                     TG_JWT_MALFORMED);
    free(cl);
}

/* The HS/RS confusion attack: the RSA public key PEM used as an HMAC secret. */
static void test_rs256_key_as_hs256_secret(void **state)
{
    (void)state;
    char *cl = claims("");
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    const char *hdr_kid = "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}";
    const unsigned char *pem = (const unsigned char *)g.rsa.pub_pem;
    size_t pemlen = strlen(g.rsa.pub_pem);
    /* With and without the PEM's trailing newline, with and without a NUL byte. */
    for (size_t extra = 0; extra < 3; extra++) {
        size_t kl = extra == 0 ? pemlen : extra == 1 ? pemlen - 1 : pemlen + 1;
        /* Only the RSA key: HS256 has no key of its type. */
        tg_jwt_result r = check_with(NULL, "rsa.pem", NULL, forge_hs256(hdr, cl, pem, kl));
        assert_int_equal(r, TG_JWT_BAD_ALGORITHM);
        r = check_with(NULL, NULL, "jwks.json", forge_hs256(hdr_kid, cl, pem, kl));
        assert_int_equal(r, TG_JWT_BAD_ALGORITHM);
        /* An HS secret is configured too: the MAC is checked against it alone. */
        r = check_with("hs.secret", "rsa.pem", "jwks.json", forge_hs256(hdr, cl, pem, kl));
        assert_int_equal(r, TG_JWT_BAD_SIGNATURE);
        r = check_with("hs.secret", "rsa.pem", "jwks.json", forge_hs256(hdr_kid, cl, pem, kl));
        assert_int_equal(r, TG_JWT_BAD_SIGNATURE);
    }
    /* The same forgery made by libjwt itself. */
    char *tok = sign(JWT_ALG_HS256, g.rsa.pub_pem, pemlen, NULL, cl);
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, tok), TG_JWT_BAD_ALGORITHM);
    tok = sign(JWT_ALG_HS256, g.ec256.pub_pem, strlen(g.ec256.pub_pem), NULL, cl);
    assert_int_equal(check_with("hs.secret", "ec256.pem", NULL, tok), TG_JWT_BAD_SIGNATURE);
    /* And with the allow-list permitting every HS algorithm. */
    test_cfg c;
    cfg_init(&c, NULL, "rsa.pem", "jwks.json");
    c.jwt.algorithms = 0x1ff;
    tg_jwt_verifier *v = verifier(&c);
    jwt_alg_t hs[] = {JWT_ALG_HS256, JWT_ALG_HS384, JWT_ALG_HS512};
    for (size_t i = 0; i < 3; i++) {
        tok = sign(hs[i], g.rsa.pub_pem, pemlen, NULL, cl);
        assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_BAD_ALGORITHM);
        free(tok);
    }
    tg_jwt_verifier_free(v);
    cfg_free(&c);
    free(cl);
}

static void test_alg_allow_list(void **state)
{
    (void)state;
    char *cl = claims("");
    /* RS384 / HS512 are not in the default list. */
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, sign_kp(JWT_ALG_RS384, &g.rsa, NULL, cl)),
                     TG_JWT_BAD_ALGORITHM);
    assert_int_equal(
        check_with("hs.secret", NULL, NULL, sign(JWT_ALG_HS512, HS_SECRET, 45, NULL, cl)),
        TG_JWT_BAD_ALGORITHM);
    /* Allowed once listed. */
    test_cfg c;
    cfg_init(&c, NULL, "rsa.pem", NULL);
    c.jwt.algorithms = TG_JWT_ALG_RS384;
    tg_jwt_verifier *v = verifier(&c);
    char *tok = sign_kp(JWT_ALG_RS384, &g.rsa, NULL, cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_OK);
    free(tok);
    tok = sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_BAD_ALGORITHM);
    free(tok);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
    /* Unknown and oddly spelled algorithm names. */
    assert_int_equal(
        check_with("hs.secret", NULL, NULL, assemble("{\"alg\":\"hs256\"}", cl, "c2ln")),
        TG_JWT_BAD_ALGORITHM);
    assert_int_equal(
        check_with("hs.secret", NULL, NULL, assemble("{\"alg\":\"HS256 \"}", cl, "c2ln")),
        TG_JWT_BAD_ALGORITHM);
    assert_int_equal(
        check_with("hs.secret", NULL, NULL, assemble("{\"alg\":\"ES512\"}", cl, "c2ln")),
        TG_JWT_BAD_ALGORITHM);
    free(cl);
}

static void test_alg_key_type_mismatch(void **state)
{
    (void)state;
    char *cl = claims("");
    /* ES256 token against an RSA key (and the reverse), ES384 against P-256. */
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, sign_kp(JWT_ALG_ES256, &g.ec256, NULL, cl)),
                     TG_JWT_BAD_ALGORITHM);
    assert_int_equal(check_with(NULL, "ec256.pem", NULL, sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl)),
                     TG_JWT_BAD_ALGORITHM);
    assert_int_equal(
        check_with(NULL, "ec256.pem", NULL, sign_kp(JWT_ALG_ES384, &g.ec384, NULL, cl)),
        TG_JWT_BAD_ALGORITHM);
    assert_int_equal(
        check_with(NULL, "ec384.pem", NULL, sign_kp(JWT_ALG_ES256, &g.ec256, NULL, cl)),
        TG_JWT_BAD_ALGORITHM);
    /* HS256 token, no HS secret configured. */
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, sign_hs(cl)), TG_JWT_BAD_ALGORITHM);
    /* A header that claims ES256 over an RS256 signature. */
    char *tok = sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl);
    char *hdr = b64url_str("{\"alg\":\"ES256\",\"typ\":\"JWT\"}");
    char *swapped = NULL;
    assert_true(asprintf(&swapped, "%s%s", hdr, strchr(tok, '.')) > 0);
    assert_int_equal(check_with(NULL, "rsa.pem", NULL, swapped), TG_JWT_BAD_ALGORITHM);
    free(hdr);
    free(tok);
    free(cl);
}

/* ---- iss / aud / tenant -------------------------------------------------------------------- */

static void test_iss_aud(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, "hs.secret", NULL, NULL);
    c.jwt.issuer = "https://issuer.example";
    c.jwt.audience = "tenantgate";
    tg_jwt_verifier *v = verifier(&c);
    struct {
        const char *more;
        tg_jwt_result want;
    } cases[] = {
        {",\"iss\":\"https://issuer.example\",\"aud\":\"tenantgate\"", TG_JWT_OK},
        {",\"iss\":\"https://issuer.example\",\"aud\":[\"x\",\"tenantgate\"]", TG_JWT_OK},
        {",\"iss\":\"https://evil.example\",\"aud\":\"tenantgate\"", TG_JWT_BAD_ISSUER},
        {",\"aud\":\"tenantgate\"", TG_JWT_BAD_ISSUER},
        {",\"iss\":[\"https://issuer.example\"],\"aud\":\"tenantgate\"", TG_JWT_BAD_ISSUER},
        {",\"iss\":\"https://issuer.example\",\"aud\":\"other\"", TG_JWT_BAD_AUDIENCE},
        {",\"iss\":\"https://issuer.example\",\"aud\":[\"x\",\"y\"]", TG_JWT_BAD_AUDIENCE},
        {",\"iss\":\"https://issuer.example\",\"aud\":[]", TG_JWT_BAD_AUDIENCE},
        {",\"iss\":\"https://issuer.example\",\"aud\":[[\"tenantgate\"]]", TG_JWT_BAD_AUDIENCE},
        {",\"iss\":\"https://issuer.example\"", TG_JWT_BAD_AUDIENCE},
        {",\"iss\":\"https://issuer.example\",\"aud\":\"tenantgatex\"", TG_JWT_BAD_AUDIENCE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *cl = claims(cases[i].more);
        char *tok = sign_hs(cl);
        assert_int_equal(check(v, tok, NOW, NULL), cases[i].want);
        free(tok);
        free(cl);
    }
    tg_jwt_verifier_free(v);
    cfg_free(&c);
}

static void test_tenant_claim(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, "hs.secret", NULL, NULL);
    c.jwt.tenant_claim = "org";
    tg_jwt_verifier *v = verifier(&c);
    char t64[65], t65[66];
    memset(t64, 'a', 64);
    t64[64] = '\0';
    memset(t65, 'a', 65);
    t65[65] = '\0';
    struct {
        const char *value; /* JSON text of the claim; NULL: absent */
        tg_jwt_result want;
    } cases[] = {
        {"\"acme\"", TG_JWT_OK},          {"\"6f1c2b9e-8a44-4c1e-9a53-0f2b7d9a1e55\"", TG_JWT_OK},
        {"\"A_b-9\"", TG_JWT_OK},         {NULL, TG_JWT_BAD_TENANT},
        {"42", TG_JWT_BAD_TENANT},        {"[\"acme\"]", TG_JWT_BAD_TENANT},
        {"null", TG_JWT_BAD_TENANT},      {"\"\"", TG_JWT_BAD_TENANT},
        {"\"-acme\"", TG_JWT_BAD_TENANT}, {"\"_acme\"", TG_JWT_BAD_TENANT},
        {"\"ac me\"", TG_JWT_BAD_TENANT}, {"\"acme;drop\"", TG_JWT_BAD_TENANT},
        {"\"acme'\"", TG_JWT_BAD_TENANT}, {"\"acm\\u00e9\"", TG_JWT_BAD_TENANT},
        {"\"a.b\"", TG_JWT_BAD_TENANT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) + 2; i++) {
        char *cl = NULL;
        const char *value = i < sizeof(cases) / sizeof(cases[0]) ? cases[i].value : NULL;
        char quoted[80];
        tg_jwt_result want = i < sizeof(cases) / sizeof(cases[0]) ? cases[i].want : 0;
        if (i == sizeof(cases) / sizeof(cases[0])) {
            snprintf(quoted, sizeof(quoted), "\"%s\"", t64);
            value = quoted;
            want = TG_JWT_OK;
        } else if (i == sizeof(cases) / sizeof(cases[0]) + 1) {
            snprintf(quoted, sizeof(quoted), "\"%s\"", t65);
            value = quoted;
            want = TG_JWT_BAD_TENANT;
        }
        if (value)
            assert_true(asprintf(&cl, "{\"org\":%s,\"tenant_id\":\"x\",\"exp\":%lld}", value,
                                 NOW + 60) > 0);
        else
            assert_true(asprintf(&cl, "{\"tenant_id\":\"x\",\"exp\":%lld}", NOW + 60) > 0);
        char *tok = sign_hs(cl);
        tg_identity id;
        tg_jwt_result r = check(v, tok, NOW, &id);
        if (r != want)
            fprintf(stderr, "case %zu: %s\n", i, tg_jwt_result_label(r));
        assert_int_equal(r, want);
        if (r != TG_JWT_OK)
            assert_string_equal(id.tenant, ""); /* zeroed on failure */
        free(tok);
        free(cl);
    }
    /* A NUL inside the claim: libjwt's parser refuses the payload, so it never verifies. */
    char *tok = forge_hs256("{\"alg\":\"HS256\"}", "{\"org\":\"acme\\u0000b\",\"exp\":1800000000}",
                            (const unsigned char *)HS_SECRET, strlen(HS_SECRET));
    assert_int_not_equal(check(v, tok, NOW, NULL), TG_JWT_OK);
    free(tok);
    tg_jwt_verifier_free(v);
    cfg_free(&c);

    assert_true(tg_tenant_valid("a", 1));
    assert_true(tg_tenant_valid(t64, 64));
    assert_false(tg_tenant_valid(t65, 65));
    assert_false(tg_tenant_valid("", 0));
    assert_false(tg_tenant_valid("ab\0c", 4));
    assert_false(tg_tenant_valid("-a", 2));
    assert_true(tg_tenant_valid("a-", 2));
}

/* ---- shapes -------------------------------------------------------------------------------- */

static void test_oversized(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, "hs.secret", NULL, NULL);
    tg_jwt_verifier *v = verifier(&c);
    char *big = malloc(8200);
    memset(big, 'A', 8193);
    big[100] = '.';
    big[200] = '.';
    tg_identity id;
    assert_int_equal(tg_jwt_verify(v, NULL, big, 8193, NOW, NULL, &id), TG_JWT_TOO_LARGE);
    assert_int_equal(tg_jwt_verify(v, NULL, big, SIZE_MAX, NOW, NULL, &id), TG_JWT_TOO_LARGE);
    free(big);
    /* A valid token above a lower limit. */
    char *cl = claims(",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"");
    char *tok = sign_hs(cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_OK);
    tg_jwt_verifier_free(v);
    c.jwt.max_token_bytes = (uint32_t)strlen(tok) - 1;
    v = verifier(&c);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_TOO_LARGE);
    c.jwt.max_token_bytes = (uint32_t)strlen(tok);
    tg_jwt_verifier_free(v);
    v = verifier(&c);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_OK);
    free(tok);
    free(cl);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
}

static void test_malformed(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, "hs.secret", "rsa.pem", NULL);
    tg_jwt_verifier *v = verifier(&c);
    char *cl = claims("");
    char *good = sign_hs(cl);
    char *p1 = strchr(good, '.'), *p2 = strrchr(good, '.');
    char *s = NULL;
    const char *fixed[] = {"",
                           ".",
                           "..",
                           "...",
                           "a.b",
                           "a.b.c.d",
                           ".b.c",
                           "a..c",
                           "a.b.",
                           "abc",
                           "eyJhbGciOiJIUzI1NiJ9.e30"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        assert_int_equal(check(v, fixed[i], NOW, NULL), TG_JWT_MALFORMED);

    /* 4 segments, 2 segments of a good token. */
    assert_true(asprintf(&s, "%s.%s", good, p2 + 1) > 0);
    assert_int_equal(check(v, s, NOW, NULL), TG_JWT_MALFORMED);
    free(s);
    s = strndup(good, (size_t)(p2 - good));
    assert_int_equal(check(v, s, NOW, NULL), TG_JWT_MALFORMED);
    free(s);
    /* Bad base64: standard alphabet, padding, space, a length of 4k+1, a NUL inside. */
    const char bad[] = {'+', '/', '=', ' ', '\n', '%'};
    for (size_t i = 0; i < sizeof(bad); i++) {
        for (int seg = 0; seg < 3; seg++) {
            s = strdup(good);
            char *at = seg == 0 ? s + 2 : seg == 1 ? s + (p1 - good) + 2 : s + (p2 - good) + 2;
            *at = bad[i];
            assert_int_equal(check(v, s, NOW, NULL), TG_JWT_MALFORMED);
            free(s);
        }
    }
    assert_true(asprintf(&s, "%sA", good) > 0); /* signature segment length changes */
    assert_int_not_equal(check(v, s, NOW, NULL), TG_JWT_OK);
    free(s);
    tg_identity id;
    assert_int_equal(tg_jwt_verify(v, NULL, good, strlen(good) + 1, NOW, NULL, &id),
                     TG_JWT_MALFORMED); /* the NUL terminator counted in */
    assert_int_equal(tg_jwt_verify(v, NULL, NULL, 0, NOW, NULL, &id), TG_JWT_MALFORMED);

    /* Headers that are not JSON objects, or lack a usable alg. */
    const char *headers[] = {"not json",
                             "[\"alg\",\"HS256\"]",
                             "\"HS256\"",
                             "{}",
                             "{\"alg\":1}",
                             "{\"alg\":null}",
                             "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
                             "{\"alg\":\"HS256\",\"kid\":5}",
                             "{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}",
                             "{\"alg\":\"HS256\"",
                             "{\"alg\":\"HS\\u0000256\"}",
                             ""};
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        char *h = b64url_str(headers[i]);
        assert_true(asprintf(&s, "%s%s", h, p1) > 0);
        tg_jwt_result r = check(v, s, NOW, NULL);
        if (r != TG_JWT_MALFORMED)
            fprintf(stderr, "header %zu: %s\n", i, tg_jwt_result_label(r));
        assert_int_equal(r, TG_JWT_MALFORMED);
        free(h);
        free(s);
    }
    /* Payload not a JSON object, correctly signed: refused before claims are read. */
    char *tok = forge_hs256("{\"alg\":\"HS256\"}", "[1,2]", (const unsigned char *)HS_SECRET,
                            strlen(HS_SECRET));
    assert_int_not_equal(check(v, tok, NOW, NULL), TG_JWT_OK);
    free(tok);
    tok = forge_hs256("{\"alg\":\"HS256\"}",
                      "{\"tenant_id\":\"other\",\"tenant_id\":\"acme\",\"exp\":1800000000}",
                      (const unsigned char *)HS_SECRET, strlen(HS_SECRET));
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_MALFORMED); /* duplicate claim names */
    free(tok);
    tok = forge_hs256("{\"alg\":\"HS256\"}", "{\"tenant_id\":\"acme\",\"exp\":1800000000}",
                      (const unsigned char *)HS_SECRET, strlen(HS_SECRET));
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_OK); /* the hand-made path itself works */
    free(tok);
    free(good);
    free(cl);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
}

/* ---- JWKS ---------------------------------------------------------------------------------- */

static void test_jwks(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, NULL, NULL, "jwks.json");
    c.jwt.algorithms |= TG_JWT_ALG_RS384;
    tg_jwt_verifier *v = verifier(&c);
    char *cl = claims("");
    struct {
        jwt_alg_t alg;
        const keypair *kp;
        const char *kid;
        tg_jwt_result want;
    } cases[] = {
        {JWT_ALG_RS256, &g.rsa, "rsa1", TG_JWT_OK},
        {JWT_ALG_RS256, &g.rsa2, "rsa2", TG_JWT_OK},
        {JWT_ALG_ES256, &g.ec256, "ec256", TG_JWT_OK},
        {JWT_ALG_ES384, &g.ec384, "ec384", TG_JWT_OK},
        {JWT_ALG_RS256, &g.rsa2, "rsa1", TG_JWT_BAD_SIGNATURE},       /* wrong key for kid */
        {JWT_ALG_RS256, &g.rsa, "nope", TG_JWT_UNKNOWN_KEY},          /* unknown kid */
        {JWT_ALG_RS256, &g.rsa, NULL, TG_JWT_UNKNOWN_KEY},            /* several RSA keys */
        {JWT_ALG_ES256, &g.ec256, NULL, TG_JWT_OK},                   /* the one P-256 key */
        {JWT_ALG_ES384, &g.ec384, NULL, TG_JWT_OK},                   /* the one P-384 key */
        {JWT_ALG_RS384, &g.rsa, "rsa1", TG_JWT_BAD_ALGORITHM},        /* rsa1 is pinned to RS256 */
        {JWT_ALG_RS256, &g.rsa2, "rsa2-enc", TG_JWT_UNKNOWN_KEY},     /* use: enc -> skipped */
        {JWT_ALG_RS256, &g.rsa2, "rsa2-rs384", TG_JWT_BAD_ALGORITHM}, /* alg: RS384 */
        {JWT_ALG_RS384, &g.rsa2, "rsa2-rs384", TG_JWT_OK},
        {JWT_ALG_RS256, &g.rsa1024, "weak", TG_JWT_UNKNOWN_KEY}, /* too short -> skipped */
        {JWT_ALG_ES256, &g.ec256, "rsa1", TG_JWT_BAD_ALGORITHM}, /* kid of another type */
        {JWT_ALG_ES384, &g.ec384, "ec256", TG_JWT_BAD_ALGORITHM},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = sign_kp(cases[i].alg, cases[i].kp, cases[i].kid, cl);
        tg_jwt_result r = check(v, tok, NOW, NULL);
        if (r != cases[i].want)
            fprintf(stderr, "jwks case %zu: %s\n", i, tg_jwt_result_label(r));
        assert_int_equal(r, cases[i].want);
        free(tok);
    }
    /* The "oct" entry of the JWKS is never an HMAC key. */
    char *tok = sign(JWT_ALG_HS256, "secret", 6, "hmac", cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_BAD_ALGORITHM);
    free(tok);
    tg_jwt_verifier_free(v);
    cfg_free(&c);

    /* A JWKS of one RSA key and one EC key: kid-less tokens use the key of their type. */
    assert_int_equal(
        check_with(NULL, NULL, "jwks-single.json", sign_kp(JWT_ALG_RS256, &g.rsa2, NULL, cl)),
        TG_JWT_OK);
    assert_int_equal(
        check_with(NULL, NULL, "jwks-single.json", sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl)),
        TG_JWT_BAD_SIGNATURE);
    assert_int_equal(
        check_with(NULL, NULL, "jwks-single.json", sign_kp(JWT_ALG_ES384, &g.ec384, NULL, cl)),
        TG_JWT_BAD_ALGORITHM);
    /* PEM + JWKS: an unknown kid falls back to the PEM key. */
    assert_int_equal(
        check_with(NULL, "ec384.pem", "jwks.json", sign_kp(JWT_ALG_ES384, &g.ec384, "zz", cl)),
        TG_JWT_OK);
    assert_int_equal(
        check_with(NULL, "rsa.pem", "jwks.json", sign_kp(JWT_ALG_RS256, &g.rsa2, "zz", cl)),
        TG_JWT_BAD_SIGNATURE);
    free(cl);
}

static void test_bad_key_config(void **state)
{
    (void)state;
    test_cfg c;
    write_file("bad.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    write_file("bad.json", "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAA\","
                           "\"y\":\"AAAA\"}]}");
    write_file("empty.json", "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}");
    const char *pems[] = {"bad.pem", "rsa1024.pem", "jwks.json"};
    for (size_t i = 0; i < 3; i++) {
        cfg_init(&c, NULL, pems[i], NULL);
        assert_int_equal(verifier_fails(&c), TG_ECONFIG);
        cfg_free(&c);
    }
    const char *jwks[] = {"bad.json", "empty.json", "rsa.pem"};
    for (size_t i = 0; i < 3; i++) {
        cfg_init(&c, NULL, NULL, jwks[i]);
        assert_int_equal(verifier_fails(&c), TG_ECONFIG);
        cfg_free(&c);
    }
    /* An EC point not on the curve. */
    char *x = b64url((const unsigned char *)"0123456789abcdef0123456789abcdef", 32);
    char *doc = NULL;
    assert_true(
        asprintf(&doc, "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
                 x, x) > 0);
    cfg_init(&c, NULL, NULL, NULL);
    c.jwt.jwks = literal_secret(doc);
    assert_int_equal(verifier_fails(&c), TG_ECONFIG);
    cfg_free(&c);
    free(doc);
    free(x);
    /* A short HS secret. */
    cfg_init(&c, NULL, NULL, NULL);
    c.jwt.hs256_secret = literal_secret("short");
    assert_int_equal(verifier_fails(&c), TG_ECONFIG);
    cfg_free(&c);
    /* No keys at all: a verifier that refuses everything. */
    cfg_init(&c, NULL, NULL, NULL);
    tg_jwt_verifier *v = verifier(&c);
    char *cl = claims("");
    char *tok = sign_hs(cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_BAD_ALGORITHM);
    free(tok);
    tok = sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl);
    assert_int_equal(check(v, tok, NOW, NULL), TG_JWT_BAD_ALGORITHM);
    free(tok);
    free(cl);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
    tg_jwt_verifier_free(NULL);
}

/* ---- cache --------------------------------------------------------------------------------- */

static void test_cache(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, NULL, "rsa.pem", NULL);
    tg_jwt_verifier *v = verifier(&c);
    tg_jwt_cache *cache = tg_jwt_cache_new(4);
    assert_non_null(cache);
    assert_null(tg_jwt_cache_new(0));
    char *cl = claims(",\"jti\":\"j1\",\"nbf\":1699999000");
    char *tok = sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl);
    tg_identity a, b;
    uint64_t hits, misses;
    assert_int_equal(tg_jwt_verify(v, cache, tok, strlen(tok), NOW, NULL, &a), TG_JWT_OK);
    assert_int_equal(tg_jwt_verify(v, cache, tok, strlen(tok), NOW + 1, NULL, &b), TG_JWT_OK);
    tg_jwt_cache_stats(cache, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 1);
    assert_memory_equal(&a, &b, sizeof(a));
    /* A cached token before its nbf (minus leeway) and past its exp (plus leeway). */
    assert_int_equal(tg_jwt_verify(v, cache, tok, strlen(tok), 1699998000, NULL, &b),
                     TG_JWT_NOT_YET_VALID);
    assert_int_equal(tg_jwt_verify(v, cache, tok, strlen(tok), NOW + 3629, NULL, &b), TG_JWT_OK);
    assert_int_equal(tg_jwt_verify(v, cache, tok, strlen(tok), NOW + 3630, NULL, &b),
                     TG_JWT_EXPIRED);
    assert_string_equal(b.tenant, "");
    tg_jwt_cache_stats(cache, &hits, &misses);
    assert_int_equal(hits, 4);
    /* Failures are not cached; a tampered token misses. */
    char *bad = strdup(tok);
    flip(bad, strrchr(bad, '.') - bad + 10);
    assert_int_equal(tg_jwt_verify(v, cache, bad, strlen(bad), NOW, NULL, &b),
                     TG_JWT_BAD_SIGNATURE);
    assert_int_equal(tg_jwt_verify(v, cache, bad, strlen(bad), NOW, NULL, &b),
                     TG_JWT_BAD_SIGNATURE);
    tg_jwt_cache_stats(cache, &hits, &misses);
    assert_int_equal(hits, 4);
    /* Many distinct tokens: the cache stays bounded and keeps answering correctly. */
    for (int i = 0; i < 40; i++) {
        char *cli = NULL;
        assert_true(asprintf(&cli, "{\"tenant_id\":\"t%d\",\"exp\":%lld}", i, NOW + 60) > 0);
        char *t = sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cli);
        assert_int_equal(tg_jwt_verify(v, cache, t, strlen(t), NOW, NULL, &b), TG_JWT_OK);
        char want[8];
        snprintf(want, sizeof(want), "t%d", i);
        assert_string_equal(b.tenant, want);
        assert_int_equal(tg_jwt_verify(v, cache, t, strlen(t), NOW, NULL, &b), TG_JWT_OK);
        assert_string_equal(b.tenant, want);
        free(t);
        free(cli);
    }
    free(bad);
    free(tok);
    free(cl);
    tg_jwt_cache_free(cache);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
}

static void test_generation(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, NULL, "rsa.pem", NULL);
    tg_jwt_verifier *v1 = verifier(&c);
    tg_jwt_verifier *v2 = verifier(&c);
    assert_int_not_equal(tg_jwt_verifier_generation(v1), tg_jwt_verifier_generation(v2));
    tg_jwt_cache *cache = tg_jwt_cache_new(16);
    char *cl = claims("");
    char *tok = sign_kp(JWT_ALG_RS256, &g.rsa, NULL, cl);
    tg_identity id;
    uint64_t hits, misses;
    assert_int_equal(tg_jwt_verify(v1, cache, tok, strlen(tok), NOW, NULL, &id), TG_JWT_OK);
    assert_int_equal(tg_jwt_verify(v2, cache, tok, strlen(tok), NOW, NULL, &id), TG_JWT_OK);
    tg_jwt_cache_stats(cache, &hits, &misses);
    assert_int_equal(hits, 0);
    assert_int_equal(misses, 2);
    /* A reload to another key: the token cached under v1 does not verify with v3. */
    cfg_free(&c);
    cfg_init(&c, NULL, "ec256.pem", NULL);
    tg_jwt_verifier *v3 = verifier(&c);
    assert_int_equal(tg_jwt_verify(v3, cache, tok, strlen(tok), NOW, NULL, &id),
                     TG_JWT_BAD_ALGORITHM);
    assert_int_equal(tg_jwt_verify(v1, cache, tok, strlen(tok), NOW, NULL, &id), TG_JWT_OK);
    tg_jwt_cache_stats(cache, &hits, &misses);
    assert_int_equal(hits, 1);
    free(tok);
    free(cl);
    tg_jwt_cache_free(cache);
    tg_jwt_verifier_free(v1);
    tg_jwt_verifier_free(v2);
    tg_jwt_verifier_free(v3);
    cfg_free(&c);
}

/* ---- SNI ----------------------------------------------------------------------------------- */

static void test_sni(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, NULL, "ec256.pem", NULL);
    c.sni.suffix = ".tenants.example.com";
    tg_jwt_verifier *v = verifier(&c);
    tg_jwt_cache *cache = tg_jwt_cache_new(8);
    char *cl = claims(",\"tenant_slug\":\"acme\"");
    char *tok = sign_kp(JWT_ALG_ES256, &g.ec256, NULL, cl);
    char *cl2 = claims("");
    char *noslug = sign_kp(JWT_ALG_ES256, &g.ec256, NULL, cl2);
    struct {
        const char *host;
        const char *token;
        tg_jwt_result want;
    } cases[] = {
        {"acme.tenants.example.com", tok, TG_JWT_OK},
        {"ACME.Tenants.Example.COM", tok, TG_JWT_OK},
        {"acme.tenants.example.com.", tok, TG_JWT_OK},
        {NULL, tok, TG_JWT_OK},
        {"db.other.example", tok, TG_JWT_OK},    /* not under the suffix: no check */
        {"tenants.example.com", tok, TG_JWT_OK}, /* the bare suffix: no slug */
        {"evil.tenants.example.com", tok, TG_JWT_SLUG_MISMATCH},
        {"acme2.tenants.example.com", tok, TG_JWT_SLUG_MISMATCH},
        {"acm.tenants.example.com", tok, TG_JWT_SLUG_MISMATCH},
        {"x.acme.tenants.example.com", tok, TG_JWT_SLUG_MISMATCH},
        {".tenants.example.com", tok, TG_JWT_OK}, /* empty slug: host is not <slug>.<suffix> */
        {"acme.tenants.example.com", noslug, TG_JWT_SLUG_MISMATCH},
        {NULL, noslug, TG_JWT_OK},
    };
    /* Twice: the second round is served from the cache; SNI is checked on every call. */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            tg_identity id;
            tg_jwt_result r = tg_jwt_verify(v, cache, cases[i].token, strlen(cases[i].token), NOW,
                                            cases[i].host, &id);
            if (r != cases[i].want)
                fprintf(stderr, "sni case %zu: %s\n", i, tg_jwt_result_label(r));
            assert_int_equal(r, cases[i].want);
            if (r == TG_JWT_OK && cases[i].token == tok)
                assert_string_equal(id.slug, "acme");
            if (r != TG_JWT_OK)
                assert_string_equal(id.tenant, "");
        }
    }
    uint64_t hits, misses;
    tg_jwt_cache_stats(cache, &hits, &misses);
    assert_int_equal(misses, 2);
    tg_jwt_cache_free(cache);
    tg_jwt_verifier_free(v);
    /* Another slug claim name, and a suffix without its leading dot. */
    c.sni.suffix = "t.example";
    c.sni.slug_claim = "sub_domain";
    v = verifier(&c);
    free(cl);
    cl = claims(",\"sub_domain\":\"blue\",\"tenant_slug\":\"acme\"");
    free(tok);
    tok = sign_kp(JWT_ALG_ES256, &g.ec256, NULL, cl);
    tg_identity id;
    assert_int_equal(tg_jwt_verify(v, NULL, tok, strlen(tok), NOW, "blue.t.example", &id),
                     TG_JWT_OK);
    assert_string_equal(id.slug, "blue");
    assert_int_equal(tg_jwt_verify(v, NULL, tok, strlen(tok), NOW, "acme.t.example", &id),
                     TG_JWT_SLUG_MISMATCH);
    assert_int_equal(tg_jwt_verify(v, NULL, tok, strlen(tok), NOW, "blue.xt.example", &id),
                     TG_JWT_OK);
    tg_jwt_verifier_free(v);
    free(tok);
    free(noslug);
    free(cl);
    free(cl2);
    cfg_free(&c);
}

/* ---- mint, names --------------------------------------------------------------------------- */

static void test_mint(void **state)
{
    (void)state;
    test_cfg c;
    cfg_init(&c, "hs.secret", NULL, NULL);
    c.jwt.tenant_claim = "org";
    c.jwt.issuer = "dev";
    tg_jwt_verifier *v = verifier(&c);
    const char *extra[] = {"iss=dev", "jti=xyz", "note=a=b"};
    char *tok = NULL;
    assert_int_equal(
        tg_jwt_mint_hs256(HS_SECRET, strlen(HS_SECRET), "org", "acme", NOW, 600, extra, 3, &tok),
        0);
    tg_identity id;
    assert_int_equal(check(v, tok, NOW, &id), TG_JWT_OK);
    assert_string_equal(id.tenant, "acme");
    assert_string_equal(id.jti, "xyz");
    assert_int_equal(id.exp, NOW + 600);
    assert_int_equal(check(v, tok, NOW + 630, &id), TG_JWT_EXPIRED);
    free(tok);

    tok = NULL;
    assert_int_equal(tg_jwt_mint_hs256("short", 5, "org", "acme", NOW, 600, NULL, 0, &tok),
                     TG_EINVAL);
    assert_int_equal(
        tg_jwt_mint_hs256(HS_SECRET, strlen(HS_SECRET), "org", "ac me", NOW, 600, NULL, 0, &tok),
        TG_EINVAL);
    assert_int_equal(
        tg_jwt_mint_hs256(HS_SECRET, strlen(HS_SECRET), "org", "acme", NOW, 0, NULL, 0, &tok),
        TG_EINVAL);
    assert_int_equal(
        tg_jwt_mint_hs256(HS_SECRET, strlen(HS_SECRET), "exp", "acme", NOW, 60, NULL, 0, &tok),
        TG_EINVAL);
    const char *bad1[] = {"novalue"}, *bad2[] = {"=x"}, *bad3[] = {"exp=1"}, *bad4[] = {"org=x"};
    const char *const *bads[] = {bad1, bad2, bad3, bad4};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(tg_jwt_mint_hs256(HS_SECRET, strlen(HS_SECRET), "org", "acme", NOW, 60,
                                           bads[i], 1, &tok),
                         TG_EINVAL);
    assert_null(tok);
    /* Default claim name. */
    assert_int_equal(
        tg_jwt_mint_hs256(HS_SECRET, strlen(HS_SECRET), NULL, "acme", NOW, 60, NULL, 0, &tok), 0);
    tg_jwt_verifier_free(v);
    c.jwt.tenant_claim = NULL;
    c.jwt.issuer = NULL;
    v = verifier(&c);
    assert_int_equal(check(v, tok, NOW, &id), TG_JWT_OK);
    free(tok);
    tg_jwt_verifier_free(v);
    cfg_free(&c);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(tg_jwt_result_label(TG_JWT_BAD_SIGNATURE), "bad_signature");
    assert_string_equal(tg_jwt_result_label(TG_JWT_OK), "ok");
    assert_string_equal(tg_jwt_result_label(TG_JWT_SLUG_MISMATCH), "slug_mismatch");
    assert_string_equal(tg_jwt_result_str(TG_JWT_EXPIRED), "token expired");
    assert_string_equal(tg_jwt_result_str(TG_JWT_INTERNAL), "internal error");
    for (int r = 0; r < TG_JWT_RESULT_COUNT; r++) {
        const char *l = tg_jwt_result_label((tg_jwt_result)r);
        assert_non_null(l);
        for (const char *p = l; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
        assert_non_null(tg_jwt_result_str((tg_jwt_result)r));
    }
    assert_string_equal(tg_jwt_result_label(TG_JWT_RESULT_COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_hs256),
        cmocka_unit_test(test_valid_asymmetric),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_rs256_key_as_hs256_secret),
        cmocka_unit_test(test_alg_allow_list),
        cmocka_unit_test(test_alg_key_type_mismatch),
        cmocka_unit_test(test_iss_aud),
        cmocka_unit_test(test_tenant_claim),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_jwks),
        cmocka_unit_test(test_bad_key_config),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_generation),
        cmocka_unit_test(test_sni),
        cmocka_unit_test(test_mint),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
