/*
 * JWT verification for tenant authentication (SPEC §4), see jwt.h.
 *
 *   token (len bytes)
 *     | size <= max_token_bytes, exactly "h.p.s", base64url charset
 *     v
 *   cache lookup (XXH3-128 of generation + token) --hit--> exp/nbf again --> SNI --> identity
 *     | miss
 *     v
 *   header decoded here (jansson, duplicates refused): "alg" in the allow-list, "kid"
 *     | tg_jwt_keys_select: the alg's family picks the key type (HS secret / RSA / P-256 / P-384)
 *     v
 *   signature: libjwt jwt_decode(token, that key) and jwt_get_alg() == the alg we expected
 *              (PS256, which libjwt 1.10 lacks: OpenSSL RSA-PSS directly)
 *     v
 *   claims (grants JSON -> jansson, typed): exp, nbf, iss, aud, tenant claim, slug, jti
 *     v
 *   cache insert --> SNI slug check (every call, never cached) --> identity
 *
 * libjwt never chooses a key: it is handed exactly one key whose type fits the
 * algorithm the header names, so an RSA public key can never become an HMAC
 * secret. Nothing here logs; token bytes never leave this file.
 *
 * The cache is an open-addressing table of a power-of-two number of slots;
 * a token may live in any of the CACHE_WAYS slots after its home slot, and an
 * insert into a full window evicts the least recently used of them.
 */
#include "proxy/jwt.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "proxy/error.h"
#include "proxy/jwt_keys.h"

#define TG_JWT_DEFAULT_MAX_TOKEN 8192
#define TG_JWT_DEFAULT_TENANT_CLAIM "tenant_id"
#define TG_JWT_DEFAULT_SLUG_CLAIM "tenant_slug"
#define TG_JWT_MAX_KID 256
#define TG_JWT_TIME_LIMIT ((int64_t)1 << 62) /* times are clamped so sums cannot overflow */
#define CACHE_WAYS 8
#define CACHE_MAX_SLOTS (1u << 24)

struct tg_jwt_verifier {
    uint64_t generation; /* unique per verifier: cache entries of an old one never match */
    uint32_t algorithms;
    uint32_t leeway_s;
    uint32_t max_token_bytes;
    tg_jwt_keyset keys;
    char *issuer;   /* NULL: not checked */
    char *audience; /* NULL: not checked */
    char *tenant_claim;
    char *sni_suffix; /* without its leading dot; NULL: no SNI check */
    char *slug_claim;
};

typedef struct cache_entry {
    XXH128_hash_t key;
    uint64_t generation;
    uint64_t used; /* last use tick; 0 = empty slot */
    int64_t nbf;
    int has_nbf;
    tg_identity id;
} cache_entry;

struct tg_jwt_cache {
    cache_entry *slots;
    uint32_t mask;
    uint64_t tick;
    uint64_t hits;
    uint64_t misses;
};

static _Atomic uint64_t g_next_generation = 1;

/* ---- names --------------------------------------------------------------------------------- */

const char *tg_jwt_result_str(tg_jwt_result r)
{
    switch (r) {
#define TG_JWT_RESULT_DESC(name, desc)                                                             \
    case TG_JWT_##name:                                                                            \
        return desc;
        TG_JWT_RESULT_MAP(TG_JWT_RESULT_DESC)
#undef TG_JWT_RESULT_DESC
    default:
        return "unknown result";
    }
}

const char *tg_jwt_result_label(tg_jwt_result r)
{
    /* Lower-case copies of the X-macro names, built once at compile time. */
    static const char *const labels[] = {
        "ok",
        "malformed",
        "too_large",
        "bad_algorithm",
        "unknown_key",
        "bad_signature",
        "expired",
        "missing_exp",
        "not_yet_valid",
        "bad_issuer",
        "bad_audience",
        "bad_tenant",
        "slug_mismatch",
        "internal",
        "suspended",
        "unregistered",
        "tenant_invalid",
        "revoked",
        "registry_unavailable",
        "pending",
    };
    _Static_assert(sizeof(labels) / sizeof(labels[0]) == TG_JWT_RESULT_COUNT,
                   "one label per TG_JWT_RESULT_MAP entry");
    if ((unsigned)r >= TG_JWT_RESULT_COUNT)
        return "unknown";
    return labels[r];
}

int tg_tenant_valid(const char *tenant, size_t len)
{
    if (!tenant || len == 0 || len > TG_TENANT_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)tenant[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '-')))
            return 0;
    }
    return 1;
}

/* ---- verifier ------------------------------------------------------------------------------ */

static char *dup_or_null(const char *s, int *failed)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = 1;
    return d;
}

int tg_jwt_verifier_new(const tg_jwt_config *cfg, const tg_sni_config *sni, tg_jwt_verifier **out,
                        char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cfg || !out)
        return TG_EINVAL;
    tg_jwt_verifier *v = calloc(1, sizeof(*v));
    if (!v)
        goto nomem;
    int rc = tg_jwt_keys_load(cfg, &v->keys, err, errlen);
    if (rc != 0) {
        free(v);
        return rc;
    }
    int failed = 0;
    v->algorithms = cfg->algorithms;
    v->leeway_s = cfg->leeway_s;
    v->max_token_bytes = cfg->max_token_bytes ? cfg->max_token_bytes : TG_JWT_DEFAULT_MAX_TOKEN;
    v->issuer = dup_or_null(cfg->issuer, &failed);
    v->audience = dup_or_null(cfg->audience, &failed);
    v->tenant_claim = dup_or_null(
        cfg->tenant_claim && cfg->tenant_claim[0] ? cfg->tenant_claim : TG_JWT_DEFAULT_TENANT_CLAIM,
        &failed);
    if (sni && sni->suffix) {
        const char *suffix = sni->suffix[0] == '.' ? sni->suffix + 1 : sni->suffix;
        if (suffix[0])
            v->sni_suffix = dup_or_null(suffix, &failed);
    }
    v->slug_claim = dup_or_null(
        sni && sni->slug_claim && sni->slug_claim[0] ? sni->slug_claim : TG_JWT_DEFAULT_SLUG_CLAIM,
        &failed);
    if (failed) {
        tg_jwt_verifier_free(v);
        goto nomem;
    }
    v->generation = atomic_fetch_add(&g_next_generation, 1);
    *out = v;
    return 0;
nomem:
    if (err && errlen)
        snprintf(err, errlen, "jwt: out of memory");
    return TG_ENOMEM;
}

void tg_jwt_verifier_free(tg_jwt_verifier *v)
{
    if (!v)
        return;
    tg_jwt_keys_free(&v->keys);
    free(v->issuer);
    free(v->audience);
    free(v->tenant_claim);
    free(v->sni_suffix);
    free(v->slug_claim);
    free(v);
}

uint64_t tg_jwt_verifier_generation(const tg_jwt_verifier *v)
{
    return v ? v->generation : 0;
}

/* ---- cache --------------------------------------------------------------------------------- */

tg_jwt_cache *tg_jwt_cache_new(uint32_t capacity)
{
    if (capacity == 0)
        return NULL;
    uint32_t n = 1;
    while (n < capacity && n < CACHE_MAX_SLOTS)
        n <<= 1;
    tg_jwt_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->slots = calloc(n, sizeof(*c->slots));
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    return c;
}

void tg_jwt_cache_free(tg_jwt_cache *c)
{
    if (!c)
        return;
    OPENSSL_cleanse(c->slots, ((size_t)c->mask + 1) * sizeof(*c->slots));
    free(c->slots);
    free(c);
}

void tg_jwt_cache_stats(const tg_jwt_cache *c, uint64_t *hits, uint64_t *misses)
{
    *hits = c ? c->hits : 0;
    *misses = c ? c->misses : 0;
}

static uint32_t cache_ways(const tg_jwt_cache *c)
{
    return c->mask + 1 < CACHE_WAYS ? c->mask + 1 : CACHE_WAYS;
}

static cache_entry *cache_find(tg_jwt_cache *c, XXH128_hash_t key, uint64_t generation)
{
    uint32_t home = (uint32_t)key.low64 & c->mask;
    for (uint32_t i = 0; i < cache_ways(c); i++) {
        cache_entry *e = &c->slots[(home + i) & c->mask];
        if (e->used && e->generation == generation && XXH128_isEqual(e->key, key))
            return e;
    }
    return NULL;
}

static void cache_put(tg_jwt_cache *c, XXH128_hash_t key, uint64_t generation,
                      const tg_identity *id, int has_nbf, int64_t nbf)
{
    uint32_t home = (uint32_t)key.low64 & c->mask;
    cache_entry *victim = NULL;
    for (uint32_t i = 0; i < cache_ways(c); i++) {
        cache_entry *e = &c->slots[(home + i) & c->mask];
        if (!e->used) {
            victim = e;
            break;
        }
        if (!victim || e->used < victim->used)
            victim = e;
    }
    victim->key = key;
    victim->generation = generation;
    victim->used = ++c->tick;
    victim->has_nbf = has_nbf;
    victim->nbf = nbf;
    victim->id = *id;
}

/* ---- checks -------------------------------------------------------------------------------- */

static int64_t clamp_time(int64_t t)
{
    if (t > TG_JWT_TIME_LIMIT)
        return TG_JWT_TIME_LIMIT;
    if (t < -TG_JWT_TIME_LIMIT)
        return -TG_JWT_TIME_LIMIT;
    return t;
}

static tg_jwt_result check_times(const tg_jwt_verifier *v, int64_t exp, int has_nbf, int64_t nbf,
                                 int64_t now)
{
    now = clamp_time(now);
    if (!(now < exp + (int64_t)v->leeway_s))
        return TG_JWT_EXPIRED;
    if (has_nbf && !(now + (int64_t)v->leeway_s >= nbf))
        return TG_JWT_NOT_YET_VALID;
    return TG_JWT_OK;
}

/* A JSON number as clamped unix seconds; 0 when the value is not a number ("123" is not). */
static int json_time(json_t *j, int64_t *out)
{
    if (json_is_integer(j)) {
        *out = clamp_time((int64_t)json_integer_value(j));
        return 1;
    }
    if (json_is_real(j)) {
        double d = json_real_value(j);
        if (d != d) /* NaN (jansson never produces one, but be sure) */
            return 0;
        if (d >= (double)TG_JWT_TIME_LIMIT)
            *out = TG_JWT_TIME_LIMIT;
        else if (d <= -(double)TG_JWT_TIME_LIMIT)
            *out = -TG_JWT_TIME_LIMIT;
        else {
            int64_t t = (int64_t)d; /* truncates toward zero: floor by hand, no libm */
            *out = (double)t > d ? t - 1 : t;
        }
        return 1;
    }
    return 0;
}

/* The JSON string value when j is a string without NUL bytes, else NULL. */
static const char *json_cstr(json_t *j, size_t *len)
{
    if (!json_is_string(j))
        return NULL;
    const char *s = json_string_value(j);
    size_t n = json_string_length(j);
    if (strlen(s) != n)
        return NULL;
    if (len)
        *len = n;
    return s;
}

static int aud_matches(json_t *aud, const char *want)
{
    const char *s = json_cstr(aud, NULL);
    if (s)
        return strcmp(s, want) == 0;
    if (json_is_array(aud)) {
        size_t i;
        json_t *a;
        json_array_foreach(aud, i, a)
        {
            s = json_cstr(a, NULL);
            if (s && strcmp(s, want) == 0)
                return 1;
        }
    }
    return 0;
}

/* Checks the verified claims and fills *id. */
static tg_jwt_result check_claims(const tg_jwt_verifier *v, json_t *claims, int64_t now,
                                  tg_identity *id, int *has_nbf, int64_t *nbf)
{
    if (!json_is_object(claims))
        return TG_JWT_MALFORMED;
    int64_t exp = 0;
    json_t *j = json_object_get(claims, "exp");
    if (!j || !json_time(j, &exp))
        return TG_JWT_MISSING_EXP;
    j = json_object_get(claims, "nbf");
    *has_nbf = j != NULL;
    if (j && !json_time(j, nbf))
        return TG_JWT_NOT_YET_VALID; /* an nbf we cannot read is never in the past */
    tg_jwt_result r = check_times(v, exp, *has_nbf, *nbf, now);
    if (r != TG_JWT_OK)
        return r;
    if (v->issuer) {
        const char *iss = json_cstr(json_object_get(claims, "iss"), NULL);
        if (!iss || strcmp(iss, v->issuer) != 0)
            return TG_JWT_BAD_ISSUER;
    }
    if (v->audience && !aud_matches(json_object_get(claims, "aud"), v->audience))
        return TG_JWT_BAD_AUDIENCE;

    size_t n = 0;
    const char *tenant = json_cstr(json_object_get(claims, v->tenant_claim), &n);
    if (!tenant || !tg_tenant_valid(tenant, n))
        return TG_JWT_BAD_TENANT;
    memcpy(id->tenant, tenant, n);
    id->tenant[n] = '\0';

    const char *slug = json_cstr(json_object_get(claims, v->slug_claim), &n);
    if (slug && tg_tenant_valid(slug, n)) {
        memcpy(id->slug, slug, n);
        id->slug[n] = '\0';
    }
    const char *jti = json_cstr(json_object_get(claims, "jti"), &n);
    if (jti && n < sizeof(id->jti)) {
        int printable = 1;
        for (size_t i = 0; i < n; i++)
            printable &= jti[i] > 0x20 && jti[i] < 0x7f;
        if (printable) {
            memcpy(id->jti, jti, n);
            id->jti[n] = '\0';
        }
    }
    id->exp = exp;
    return TG_JWT_OK;
}

static int ascii_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int ascii_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return 0;
    }
    return 1;
}

/*
 * When the host is "<slug>.<suffix>" (DNS names: ASCII case-insensitive, one
 * trailing dot ignored), the slug claim must equal <slug>. Other hosts, and
 * no host at all, are not checked.
 */
static tg_jwt_result check_sni(const tg_jwt_verifier *v, const char *host, const tg_identity *id)
{
    if (!v->sni_suffix || !host)
        return TG_JWT_OK;
    size_t hl = strlen(host);
    size_t sl = strlen(v->sni_suffix);
    if (hl > 0 && host[hl - 1] == '.')
        hl--;
    if (hl < sl + 2 || host[hl - sl - 1] != '.' || !ascii_caseeq(host + hl - sl, v->sni_suffix, sl))
        return TG_JWT_OK;
    size_t slug_len = hl - sl - 1;
    if (memchr(host, '.', slug_len) || strlen(id->slug) != slug_len ||
        !ascii_caseeq(host, id->slug, slug_len))
        return TG_JWT_SLUG_MISMATCH;
    return TG_JWT_OK;
}

/* ---- signature ----------------------------------------------------------------------------- */

/* RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 7518 §3.5). */
static int verify_ps256(EVP_PKEY *pkey, const char *input, size_t input_len,
                        const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = md && EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
             EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)input, input_len) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

static jwt_alg_t libjwt_alg(uint32_t bit)
{
    switch (bit) {
    case TG_JWT_ALG_HS256:
        return JWT_ALG_HS256;
    case TG_JWT_ALG_HS384:
        return JWT_ALG_HS384;
    case TG_JWT_ALG_HS512:
        return JWT_ALG_HS512;
    case TG_JWT_ALG_RS256:
        return JWT_ALG_RS256;
    case TG_JWT_ALG_RS384:
        return JWT_ALG_RS384;
    case TG_JWT_ALG_RS512:
        return JWT_ALG_RS512;
    case TG_JWT_ALG_ES256:
        return JWT_ALG_ES256;
    case TG_JWT_ALG_ES384:
        return JWT_ALG_ES384;
    default:
        return JWT_ALG_INVAL;
    }
}

/*
 * Verifies the signature with `key` and returns the claims (new reference) in
 * *claims. seg: the three segments; buf: scratch of at least len bytes.
 */
static tg_jwt_result verify_signature(const tg_jwt_key *key, uint32_t alg_bit, const char *token,
                                      size_t len, const size_t seg_off[3], const size_t seg_len[3],
                                      unsigned char *buf, json_t **claims)
{
    *claims = NULL;
    if (alg_bit == TG_JWT_ALG_PS256) {
        long sl = tg_jwt_b64url_decode(token + seg_off[2], seg_len[2], buf);
        if (sl <= 0)
            return TG_JWT_MALFORMED;
        if (!key->pkey ||
            !verify_ps256(key->pkey, token, seg_len[0] + 1 + seg_len[1], buf, (size_t)sl))
            return TG_JWT_BAD_SIGNATURE;
        long pl = tg_jwt_b64url_decode(token + seg_off[1], seg_len[1], buf);
        if (pl <= 0)
            return TG_JWT_MALFORMED;
        *claims = json_loadb((const char *)buf, (size_t)pl, JSON_REJECT_DUPLICATES, NULL);
        return *claims ? TG_JWT_OK : TG_JWT_MALFORMED;
    }

    jwt_alg_t want = libjwt_alg(alg_bit);
    if (want == JWT_ALG_INVAL || key->material_len > INT32_MAX)
        return TG_JWT_BAD_ALGORITHM;
    /* libjwt wants a C string; buf has room for len + 1 bytes. */
    char *copy = (char *)buf;
    memcpy(copy, token, len);
    copy[len] = '\0';
    jwt_t *jwt = NULL;
    int rc = jwt_decode(&jwt, copy, key->material, (int)key->material_len);
    ERR_clear_error();
    if (rc != 0 || !jwt) {
        jwt_free(jwt);
        return TG_JWT_BAD_SIGNATURE;
    }
    /* libjwt parsed the header on its own: it must have verified what we selected for. */
    if (jwt_get_alg(jwt) != want) {
        jwt_free(jwt);
        return TG_JWT_BAD_ALGORITHM;
    }
    char *grants = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    /* Duplicate claim names are a parser differential (which "tenant_id" wins?): refuse them. */
    long pl = tg_jwt_b64url_decode(token + seg_off[1], seg_len[1], buf);
    json_t *strict =
        pl > 0 ? json_loadb((const char *)buf, (size_t)pl, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!strict) {
        free(grants);
        return TG_JWT_MALFORMED;
    }
    json_decref(strict);
    if (!grants)
        return TG_JWT_MALFORMED;
    *claims = json_loads(grants, 0, NULL);
    free(grants);
    return *claims ? TG_JWT_OK : TG_JWT_MALFORMED;
}

/* ---- verify -------------------------------------------------------------------------------- */

/* Splits "h.p.s" into three non-empty segments. */
static int split_token(const char *token, size_t len, size_t off[3], size_t seglen[3])
{
    size_t n = 0;
    off[0] = 0;
    for (size_t i = 0; i < len; i++) {
        if (token[i] != '.')
            continue;
        if (n == 2)
            return 0;
        seglen[n] = i - off[n];
        off[++n] = i + 1;
    }
    if (n != 2)
        return 0;
    seglen[2] = len - off[2];
    return seglen[0] > 0 && seglen[1] > 0 && seglen[2] > 0;
}

/* Decodes and checks the header: returns the alg bit and kid (into kid, "" when absent). */
static tg_jwt_result read_header(const tg_jwt_verifier *v, const unsigned char *hdr, size_t n,
                                 uint32_t *alg_bit, char *kid, int *has_kid)
{
    json_t *h = json_loadb((const char *)hdr, n, JSON_REJECT_DUPLICATES, NULL);
    tg_jwt_result r = TG_JWT_MALFORMED;
    if (!json_is_object(h))
        goto done;
    /* No extension is understood, so a critical one can never be honoured (RFC 7515 §4.1.11). */
    if (json_object_get(h, "crit"))
        goto done;
    const char *alg = json_cstr(json_object_get(h, "alg"), NULL);
    if (!alg)
        goto done;
    *alg_bit = tg_jwt_alg_bit(alg); /* "none", "None", "HS256 " ...: 0 */
    if (!*alg_bit || !(*alg_bit & v->algorithms)) {
        r = TG_JWT_BAD_ALGORITHM;
        goto done;
    }
    json_t *kj = json_object_get(h, "kid");
    *has_kid = 0;
    if (kj) {
        size_t kl = 0;
        const char *k = json_cstr(kj, &kl);
        if (!k || kl > TG_JWT_MAX_KID)
            goto done;
        memcpy(kid, k, kl + 1);
        *has_kid = 1;
    }
    r = TG_JWT_OK;
done:
    json_decref(h);
    return r;
}

static tg_jwt_result verify_uncached(const tg_jwt_verifier *v, const char *token, size_t len,
                                     int64_t now, tg_identity *id, int *has_nbf, int64_t *nbf)
{
    size_t off[3], seglen[3];
    if (!split_token(token, len, off, seglen))
        return TG_JWT_MALFORMED;
    unsigned char *buf = malloc(len + 1);
    if (!buf)
        return TG_JWT_INTERNAL;
    tg_jwt_result r = TG_JWT_MALFORMED;
    json_t *claims = NULL;
    /* Every segment must be canonical base64url before anything else looks at it. */
    for (int i = 2; i >= 0; i--) {
        long n = tg_jwt_b64url_decode(token + off[i], seglen[i], buf);
        if (n <= 0)
            goto done;
    }
    long hl = tg_jwt_b64url_decode(token, seglen[0], buf);
    uint32_t alg_bit = 0;
    char kid[TG_JWT_MAX_KID + 1];
    int has_kid = 0;
    r = read_header(v, buf, (size_t)hl, &alg_bit, kid, &has_kid);
    if (r != TG_JWT_OK)
        goto done;
    const tg_jwt_key *key = tg_jwt_keys_select(&v->keys, alg_bit, has_kid ? kid : NULL, &r);
    if (!key)
        goto done;
    r = verify_signature(key, alg_bit, token, len, off, seglen, buf, &claims);
    if (r != TG_JWT_OK)
        goto done;
    r = check_claims(v, claims, now, id, has_nbf, nbf);
done:
    json_decref(claims);
    OPENSSL_cleanse(buf, len + 1);
    free(buf);
    return r;
}

tg_jwt_result tg_jwt_verify(const tg_jwt_verifier *v, tg_jwt_cache *cache, const char *token,
                            size_t len, int64_t now, const char *sni_host, tg_identity *id)
{
    tg_identity tmp;
    memset(&tmp, 0, sizeof(tmp));
    if (id)
        memset(id, 0, sizeof(*id));
    if (!v || !id)
        return TG_JWT_INTERNAL;
    if (!token)
        return TG_JWT_MALFORMED;
    if (len > v->max_token_bytes)
        return TG_JWT_TOO_LARGE;

    tg_jwt_result r;
    XXH128_hash_t key = {0, 0};
    if (cache) {
        key = XXH3_128bits_withSeed(token, len, v->generation);
        cache_entry *e = cache_find(cache, key, v->generation);
        if (e) {
            cache->hits++;
            r = check_times(v, e->id.exp, e->has_nbf, e->nbf, now);
            if (r == TG_JWT_EXPIRED) {
                memset(e, 0, sizeof(*e));
                return r;
            }
            if (r != TG_JWT_OK)
                return r;
            e->used = ++cache->tick;
            tmp = e->id;
            goto sni;
        }
        cache->misses++;
    }

    int has_nbf = 0;
    int64_t nbf = 0;
    r = verify_uncached(v, token, len, now, &tmp, &has_nbf, &nbf);
    if (r != TG_JWT_OK)
        return r;
    if (cache)
        cache_put(cache, key, v->generation, &tmp, has_nbf, nbf);
sni:
    r = check_sni(v, sni_host, &tmp);
    if (r == TG_JWT_OK)
        *id = tmp;
    return r;
}

/* ---- mint ---------------------------------------------------------------------------------- */

int tg_jwt_mint_hs256(const char *secret, size_t secret_len, const char *tenant_claim,
                      const char *tenant, int64_t now, int64_t ttl_s, const char *const *extra,
                      size_t n_extra, char **out)
{
    if (!secret || secret_len < TG_JWT_HS_MIN_SECRET || secret_len > INT32_MAX || !tenant ||
        !tg_tenant_valid(tenant, strlen(tenant)) || ttl_s <= 0 || ttl_s > TG_JWT_TIME_LIMIT ||
        now > TG_JWT_TIME_LIMIT || now < 0 || !out || (n_extra && !extra))
        return TG_EINVAL;
    if (!tenant_claim || !tenant_claim[0])
        tenant_claim = TG_JWT_DEFAULT_TENANT_CLAIM;
    if (strcmp(tenant_claim, "exp") == 0 || strcmp(tenant_claim, "iat") == 0)
        return TG_EINVAL;
    jwt_t *jwt = NULL;
    char *name = NULL;
    int rc = TG_ENOMEM;
    if (jwt_new(&jwt) != 0)
        goto done;
    rc = TG_EINVAL;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)secret_len) != 0)
        goto done;
    /* libjwt refuses a grant that exists already: duplicates are usage errors. */
    if (jwt_add_grant(jwt, tenant_claim, tenant) != 0 ||
        jwt_add_grant_int(jwt, "iat", (long)now) != 0 ||
        jwt_add_grant_int(jwt, "exp", (long)(now + ttl_s)) != 0)
        goto done;
    for (size_t i = 0; i < n_extra; i++) {
        const char *eq = extra[i] ? strchr(extra[i], '=') : NULL;
        if (!eq || eq == extra[i])
            goto done;
        free(name);
        name = strndup(extra[i], (size_t)(eq - extra[i]));
        if (!name) {
            rc = TG_ENOMEM;
            goto done;
        }
        /* libjwt only refuses to replace a string grant: check every type here. */
        char *existing = jwt_get_grants_json(jwt, name);
        if (existing) {
            free(existing);
            goto done;
        }
        if (jwt_add_grant(jwt, name, eq + 1) != 0)
            goto done;
    }
    char *tok = jwt_encode_str(jwt);
    if (!tok) {
        rc = TG_ENOMEM;
        goto done;
    }
    *out = tok;
    rc = 0;
done:
    free(name);
    jwt_free(jwt);
    ERR_clear_error();
    return rc;
}
