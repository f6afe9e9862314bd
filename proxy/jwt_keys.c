/*
 * Loading and selecting JWT verification keys (see jwt_keys.h).
 *
 *   tg_jwt_config --+-- hs256_secret  --copy-------------------------------+
 *                   +-- public_key    --PEM PUBKEY (or X509) --classify----+--> tg_jwt_keyset
 *                   +-- jwks (JSON)   --per entry: filter use/alg/kty,     |
 *                                       n/e or crv/x/y --fromdata--check---+
 *
 *   token header {alg, kid} --tg_jwt_keys_select--> one key of the type the alg needs
 *
 * The rules that keep algorithm confusion out live here: an HS* algorithm is
 * only ever given the configured HS secret (JWKS "oct" keys are never
 * loaded), RS* and PS* only RSA keys, ES256 only P-256 keys and ES384 only
 * P-384 keys. A JWKS entry whose "alg" names an algorithm of another family,
 * or whose "use" is not "sig", is skipped at load time. Keys that policy
 * refuses (RSA under 2048 bits, unsupported curves or key types) are skipped;
 * keys whose data is malformed make the whole load fail, as a misconfiguration.
 */
#include "proxy/jwt_keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "proxy/error.h"

#define JWKS_MAX_KID 256
#define JWKS_MAX_KEYS 1024

/* ---- algorithm names
   ---------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t bit;
} alg_names[] = {
    {"HS256", TG_JWT_ALG_HS256}, {"HS384", TG_JWT_ALG_HS384}, {"HS512", TG_JWT_ALG_HS512},
    {"RS256", TG_JWT_ALG_RS256}, {"RS384", TG_JWT_ALG_RS384}, {"RS512", TG_JWT_ALG_RS512},
    {"ES256", TG_JWT_ALG_ES256}, {"ES384", TG_JWT_ALG_ES384}, {"PS256", TG_JWT_ALG_PS256},
};

uint32_t tg_jwt_alg_bit(const char *name)
{
    for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++) {
        if (strcmp(name, alg_names[i].name) == 0)
            return alg_names[i].bit;
    }
    return 0;
}

tg_jwt_key_type tg_jwt_keys_type_for_alg(uint32_t alg_bit)
{
    if (alg_bit & TG_JWT_ALGS_HMAC)
        return TG_JWT_KEY_HMAC;
    if (alg_bit & TG_JWT_ALG_ES256)
        return TG_JWT_KEY_EC256;
    if (alg_bit & TG_JWT_ALG_ES384)
        return TG_JWT_KEY_EC384;
    return TG_JWT_KEY_RSA;
}

static uint32_t algs_for_type(tg_jwt_key_type t)
{
    switch (t) {
    case TG_JWT_KEY_HMAC:
        return TG_JWT_ALGS_HMAC;
    case TG_JWT_KEY_RSA:
        return TG_JWT_ALGS_RSA;
    case TG_JWT_KEY_EC256:
        return TG_JWT_ALG_ES256;
    case TG_JWT_KEY_EC384:
        return TG_JWT_ALG_ES384;
    }
    return 0;
}

/* ---- base64url ---------------------------------------------------------------------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

long tg_jwt_b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-canonical: the unused trailing bits must be zero */
        return -1;
    return (long)o;
}

/* ---- helpers ------------------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static void seterr(char *err, size_t errlen, const char *fmt,
                                                         ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    ERR_clear_error();
}

static void key_clear(tg_jwt_key *k)
{
    if (!k)
        return;
    if (k->material) {
        OPENSSL_cleanse(k->material, k->material_len);
        free(k->material);
    }
    free(k->kid);
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

/* Re-serialises pkey as SPKI PEM into k->material. Returns 0 or TG_ENOMEM. */
__attribute__((warn_unused_result)) static int key_set_pem(tg_jwt_key *k, EVP_PKEY *pkey)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *data = NULL;
    if (!mem || PEM_write_bio_PUBKEY(mem, pkey) != 1)
        goto fail;
    long n = BIO_get_mem_data(mem, &data);
    if (n <= 0)
        goto fail;
    k->material = malloc((size_t)n + 1);
    if (!k->material)
        goto fail;
    memcpy(k->material, data, (size_t)n);
    k->material[n] = '\0';
    k->material_len = (size_t)n;
    BIO_free(mem);
    return 0;
fail:
    BIO_free(mem);
    ERR_clear_error();
    return TG_ENOMEM;
}

/*
 * Classifies an asymmetric public key. Returns 0 and the type, 1 when policy
 * refuses it (what in *why), or -1 when it is not a public key we know.
 */
static int classify(EVP_PKEY *pkey, tg_jwt_key_type *type, const char **why)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (EVP_PKEY_get_bits(pkey) < TG_JWT_RSA_MIN_BITS) {
            *why = "RSA key shorter than 2048 bits";
            return 1;
        }
        *type = TG_JWT_KEY_RSA;
        return 0;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1) {
            *why = "EC key without a named curve";
            return 1;
        }
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) {
            *type = TG_JWT_KEY_EC256;
            return 0;
        }
        if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) {
            *type = TG_JWT_KEY_EC384;
            return 0;
        }
        *why = "EC curve is not P-256 or P-384";
        return 1;
    }
    *why = "key is neither RSA nor EC";
    return -1;
}

/* ---- the PEM public key -------------------------------------------------------------------- */

__attribute__((warn_unused_result)) static int load_pem(const tg_secret *s, tg_jwt_key **out,
                                                        char *err, size_t errlen)
{
    const char *path = s->path ? s->path : "public_key_file";
    if (s->len > (size_t)INT32_MAX) {
        seterr(err, errlen, "%s: key file too large", path);
        return TG_ECONFIG;
    }
    BIO *bio = BIO_new_mem_buf(s->data, (int)s->len);
    EVP_PKEY *pkey = NULL;
    tg_jwt_key *k = NULL;
    if (!bio)
        goto nomem;
    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (!pkey) {
        /* A certificate is accepted too: its public key is used. */
        ERR_clear_error();
        BIO_free(bio);
        bio = BIO_new_mem_buf(s->data, (int)s->len);
        if (!bio)
            goto nomem;
        X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert) {
            pkey = X509_get_pubkey(cert);
            X509_free(cert);
        }
    }
    BIO_free(bio);
    bio = NULL;
    if (!pkey) {
        seterr(err, errlen, "%s: not a PEM public key or certificate", path);
        return TG_ECONFIG;
    }
    tg_jwt_key_type type = TG_JWT_KEY_RSA;
    const char *why = NULL;
    if (classify(pkey, &type, &why) != 0) {
        EVP_PKEY_free(pkey);
        seterr(err, errlen, "%s: %s", path, why);
        return TG_ECONFIG;
    }
    k = calloc(1, sizeof(*k));
    if (!k)
        goto nomem;
    k->type = type;
    k->algs = algs_for_type(type);
    k->pkey = pkey;
    pkey = NULL;
    if (key_set_pem(k, k->pkey) != 0)
        goto nomem;
    *out = k;
    return 0;
nomem:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    key_clear(k);
    free(k);
    seterr(err, errlen, "%s: out of memory", path);
    return TG_ENOMEM;
}

/* ---- JWKS ---------------------------------------------------------------------------------- */

/* Decodes a base64url JSON string member into a new buffer. Returns its length or -1. */
static long jwk_b64(json_t *jwk, const char *name, unsigned char **out)
{
    json_t *v = json_object_get(jwk, name);
    *out = NULL;
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > 16384)
        return -1;
    unsigned char *buf = malloc(n * 3 / 4 + 1);
    if (!buf)
        return -1;
    long got = tg_jwt_b64url_decode(s, n, buf);
    if (got <= 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return got;
}

/* Builds a public EVP_PKEY of `keytype` ("RSA"/"EC") from params. NULL on failure. */
static EVP_PKEY *pkey_fromdata(const char *keytype, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, keytype, NULL);
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *pkey = NULL;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto fail;
    /* fromdata does not validate: check the point is on the curve / the modulus is sane. */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1)
        goto fail;
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
fail:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return NULL;
}

static EVP_PKEY *jwk_rsa(json_t *jwk)
{
    unsigned char *nb = NULL, *eb = NULL;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    long nl = jwk_b64(jwk, "n", &nb);
    long el = jwk_b64(jwk, "e", &eb);
    if (nl <= 0 || nl > 2048 || el <= 0 || el > 8) /* modulus up to 16384 bits */
        goto done;
    n = BN_bin2bn(nb, (int)nl, NULL);
    e = BN_bin2bn(eb, (int)el, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (!n || !e || !bld || !BN_is_odd(e) || BN_is_one(e) || !BN_is_odd(n))
        goto done;
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        goto done;
    pkey = pkey_fromdata("RSA", bld);
done:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(nb);
    free(eb);
    ERR_clear_error();
    return pkey;
}

static EVP_PKEY *jwk_ec(json_t *jwk, size_t coord)
{
    unsigned char *xb = NULL, *yb = NULL;
    unsigned char point[1 + 2 * 48];
    OSSL_PARAM_BLD *bld = NULL;
    EVP_PKEY *pkey = NULL;
    long xl = jwk_b64(jwk, "x", &xb);
    long yl = jwk_b64(jwk, "y", &yb);
    if (xl != (long)coord || yl != (long)coord)
        goto done;
    point[0] = 0x04; /* uncompressed point: 04 || x || y */
    memcpy(point + 1, xb, coord);
    memcpy(point + 1 + coord, yb, coord);
    bld = OSSL_PARAM_BLD_new();
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                         coord == 32 ? "P-256" : "P-384", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * coord))
        goto done;
    pkey = pkey_fromdata("EC", bld);
done:
    OSSL_PARAM_BLD_free(bld);
    free(xb);
    free(yb);
    ERR_clear_error();
    return pkey;
}

/* Does an optional JWKS string-array member ("key_ops") allow "verify"? */
static int jwk_ops_ok(json_t *jwk)
{
    json_t *ops = json_object_get(jwk, "key_ops");
    if (!ops)
        return 1;
    if (!json_is_array(ops))
        return 0;
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op)
    {
        if (json_is_string(op) && strcmp(json_string_value(op), "verify") == 0)
            return 1;
    }
    return 0;
}

/*
 * Converts one JWKS entry. Returns 0 with a filled *k, 1 when the entry is
 * skipped (not usable for signature verification by our policy), or
 * TG_ECONFIG / TG_ENOMEM with err set.
 */
__attribute__((warn_unused_result)) static int jwk_load(json_t *jwk, size_t idx, const char *path,
                                                        tg_jwt_key *k, char *err, size_t errlen)
{
    char where[64];
    snprintf(where, sizeof(where), "keys[%zu]", idx);
    if (!json_is_object(jwk)) {
        seterr(err, errlen, "%s: %s is not an object", path, where);
        return TG_ECONFIG;
    }
    json_t *kty = json_object_get(jwk, "kty");
    json_t *use = json_object_get(jwk, "use");
    json_t *alg = json_object_get(jwk, "alg");
    json_t *kid = json_object_get(jwk, "kid");
    if (!json_is_string(kty)) {
        seterr(err, errlen, "%s: %s has no \"kty\"", path, where);
        return TG_ECONFIG;
    }
    if (kid && (!json_is_string(kid) || json_string_length(kid) > JWKS_MAX_KID ||
                strlen(json_string_value(kid)) != json_string_length(kid))) {
        seterr(err, errlen, "%s: %s has an invalid \"kid\"", path, where);
        return TG_ECONFIG;
    }
    if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
        return 1;
    if (!jwk_ops_ok(jwk))
        return 1;

    tg_jwt_key_type type;
    EVP_PKEY *pkey = NULL;
    const char *t = json_string_value(kty);
    if (strcmp(t, "RSA") == 0) {
        type = TG_JWT_KEY_RSA;
        pkey = jwk_rsa(jwk);
    } else if (strcmp(t, "EC") == 0) {
        json_t *crv = json_object_get(jwk, "crv");
        const char *c = json_is_string(crv) ? json_string_value(crv) : "";
        if (strcmp(c, "P-256") == 0) {
            type = TG_JWT_KEY_EC256;
            pkey = jwk_ec(jwk, 32);
        } else if (strcmp(c, "P-384") == 0) {
            type = TG_JWT_KEY_EC384;
            pkey = jwk_ec(jwk, 48);
        } else {
            return 1; /* P-521, secp256k1, ...: not supported */
        }
    } else {
        return 1; /* "oct" (never: HMAC keys only come from hs256_secret_file), "OKP", ... */
    }

    uint32_t algs = algs_for_type(type);
    if (alg) {
        uint32_t bit = json_is_string(alg) ? tg_jwt_alg_bit(json_string_value(alg)) : 0;
        if (!(bit & algs)) {
            EVP_PKEY_free(pkey);
            return 1; /* "alg" of another family (or unknown): never used for this key */
        }
        algs = bit;
    }
    if (!pkey) {
        seterr(err, errlen, "%s: %s: invalid key data", path, where);
        return TG_ECONFIG;
    }
    tg_jwt_key_type got = type;
    const char *why = NULL;
    int c = classify(pkey, &got, &why);
    if (c != 0 || got != type) {
        EVP_PKEY_free(pkey);
        return 1; /* e.g. an RSA key under 2048 bits */
    }
    memset(k, 0, sizeof(*k));
    k->type = type;
    k->algs = algs;
    k->pkey = pkey;
    if (kid && !(k->kid = strdup(json_string_value(kid))))
        goto nomem;
    if (key_set_pem(k, pkey) != 0)
        goto nomem;
    return 0;
nomem:
    key_clear(k);
    seterr(err, errlen, "%s: %s: out of memory", path, where);
    return TG_ENOMEM;
}

__attribute__((warn_unused_result)) static int load_jwks(const tg_secret *s, tg_jwt_keyset *ks,
                                                         char *err, size_t errlen)
{
    const char *path = s->path ? s->path : "jwks_file";
    json_error_t jerr;
    json_t *root = json_loadb(s->data, s->len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *keys = root ? json_object_get(root, "keys") : NULL;
    int rc = TG_ECONFIG;
    if (!root) {
        seterr(err, errlen, "%s: not valid JSON: %s", path, jerr.text);
        return TG_ECONFIG;
    }
    if (!json_is_array(keys) || json_array_size(keys) > JWKS_MAX_KEYS) {
        seterr(err, errlen, "%s: expected an object with a \"keys\" array", path);
        goto done;
    }
    size_t n = json_array_size(keys);
    ks->has_jwks = 1;
    if (n > 0) {
        ks->jwks = calloc(n, sizeof(*ks->jwks));
        if (!ks->jwks) {
            seterr(err, errlen, "%s: out of memory", path);
            rc = TG_ENOMEM;
            goto done;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int r = jwk_load(json_array_get(keys, i), i, path, &ks->jwks[ks->n_jwks], err, errlen);
        if (r < 0) {
            rc = r;
            goto done;
        }
        if (r == 0)
            ks->n_jwks++;
    }
    if (ks->n_jwks == 0) {
        seterr(err, errlen, "%s: no usable signing key (RSA >= 2048 bits, EC P-256/P-384)", path);
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- the key set --------------------------------------------------------------------------- */

int tg_jwt_keys_load(const tg_jwt_config *cfg, tg_jwt_keyset *ks, char *err, size_t errlen)
{
    memset(ks, 0, sizeof(*ks));
    int rc;
    if (cfg->hs256_secret.data) {
        if (cfg->hs256_secret.len < TG_JWT_HS_MIN_SECRET) {
            seterr(err, errlen, "%s: HS256 secret must be at least 32 bytes",
                   cfg->hs256_secret.path ? cfg->hs256_secret.path : "hs256_secret_file");
            return TG_ECONFIG;
        }
        ks->hs = calloc(1, sizeof(*ks->hs));
        if (!ks->hs || !(ks->hs->material = malloc(cfg->hs256_secret.len))) {
            rc = TG_ENOMEM;
            seterr(err, errlen, "hs256_secret_file: out of memory");
            goto fail;
        }
        memcpy(ks->hs->material, cfg->hs256_secret.data, cfg->hs256_secret.len);
        ks->hs->material_len = cfg->hs256_secret.len;
        ks->hs->type = TG_JWT_KEY_HMAC;
        ks->hs->algs = TG_JWT_ALGS_HMAC;
    }
    if (cfg->public_key.data && (rc = load_pem(&cfg->public_key, &ks->pem, err, errlen)) != 0)
        goto fail;
    if (cfg->jwks.data && (rc = load_jwks(&cfg->jwks, ks, err, errlen)) != 0)
        goto fail;
    return 0;
fail:
    tg_jwt_keys_free(ks);
    return rc;
}

void tg_jwt_keys_free(tg_jwt_keyset *ks)
{
    if (!ks)
        return;
    key_clear(ks->hs);
    free(ks->hs);
    key_clear(ks->pem);
    free(ks->pem);
    for (size_t i = 0; i < ks->n_jwks; i++)
        key_clear(&ks->jwks[i]);
    free(ks->jwks);
    memset(ks, 0, sizeof(*ks));
}

static int key_fits(const tg_jwt_key *k, tg_jwt_key_type type, uint32_t alg_bit)
{
    return k && k->type == type && (k->algs & alg_bit);
}

const tg_jwt_key *tg_jwt_keys_select(const tg_jwt_keyset *ks, uint32_t alg_bit, const char *kid,
                                     tg_jwt_result *why)
{
    tg_jwt_key_type type = tg_jwt_keys_type_for_alg(alg_bit);
    if (type == TG_JWT_KEY_HMAC) {
        /* The only HMAC key there is; a kid cannot point anywhere else. */
        if (key_fits(ks->hs, type, alg_bit))
            return ks->hs;
        *why = TG_JWT_BAD_ALGORITHM;
        return NULL;
    }
    int have_type = ks->pem && ks->pem->type == type;
    for (size_t i = 0; i < ks->n_jwks; i++)
        have_type |= ks->jwks[i].type == type;

    int kid_seen = 0; /* the kid names a key of another type, or pinned to another alg */
    if (kid && ks->n_jwks > 0) {
        for (size_t i = 0; i < ks->n_jwks; i++) {
            const tg_jwt_key *k = &ks->jwks[i];
            if (!k->kid || strcmp(k->kid, kid) != 0)
                continue;
            if (key_fits(k, type, alg_bit))
                return k;
            kid_seen = 1;
        }
        /* An unknown kid may still be the PEM key's (which has no kid). */
        if (!kid_seen && key_fits(ks->pem, type, alg_bit))
            return ks->pem;
    } else {
        if (key_fits(ks->pem, type, alg_bit))
            return ks->pem;
        if (!kid) {
            const tg_jwt_key *only = NULL;
            size_t n = 0;
            for (size_t i = 0; i < ks->n_jwks; i++) {
                if (key_fits(&ks->jwks[i], type, alg_bit)) {
                    only = &ks->jwks[i];
                    n++;
                }
            }
            if (n == 1)
                return only;
        }
    }
    *why = (!have_type || kid_seen) ? TG_JWT_BAD_ALGORITHM : TG_JWT_UNKNOWN_KEY;
    return NULL;
}
