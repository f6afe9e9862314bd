/*
 * Tenant authentication: JWT verification per SPEC §4.
 *
 *   token --size/shape checks--> header (alg, kid) --key lookup + alg/key-type match-->
 *   libjwt signature check --> exp/nbf/iss/aud (with leeway) --> tenant claim --> identity
 *
 * A tg_jwt_verifier is built once from the config (keys loaded from files)
 * and is immutable afterwards, so every worker thread may use it at the same
 * time; SIGHUP builds a new one. The algorithm allow-list is checked against
 * the key's type *before* libjwt sees the token: libjwt 1.10 would otherwise
 * accept an RS256 public key used as an HS256 secret. "none" is never accepted.
 *
 * A tg_jwt_cache belongs to one worker (no locks): it remembers tokens that
 * verified, keyed by XXH3-128 of the token text, so a reconnect storm does
 * not redo RSA verification. Hits still re-check exp/nbf against `now`.
 */
#ifndef TG_PROXY_JWT_H
#define TG_PROXY_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/config.h"

/* X(name, description): why a token was refused. Used in FATAL messages, logs and metrics labels.
 */
#define TG_JWT_RESULT_MAP(X)                                                                       \
    X(OK, "ok")                                                                                    \
    X(MALFORMED, "malformed token")                                                                \
    X(TOO_LARGE, "token too large")                                                                \
    X(BAD_ALGORITHM, "algorithm not allowed")                                                      \
    X(UNKNOWN_KEY, "no key for token")                                                             \
    X(BAD_SIGNATURE, "bad signature")                                                              \
    X(EXPIRED, "token expired")                                                                    \
    X(MISSING_EXP, "token has no exp")                                                             \
    X(NOT_YET_VALID, "token not yet valid")                                                        \
    X(BAD_ISSUER, "wrong issuer")                                                                  \
    X(BAD_AUDIENCE, "wrong audience")                                                              \
    X(BAD_TENANT, "missing or invalid tenant claim")                                               \
    X(SLUG_MISMATCH, "tenant slug does not match server name")                                     \
    X(INTERNAL, "internal error")                                                                  \
    /* The tenant registry's verdicts (proxy/auth.c; the token itself verified): */                \
    X(SUSPENDED, "tenant suspended")                                                               \
    X(UNREGISTERED, "tenant not registered")                                                       \
    X(TENANT_INVALID, "tenant record is invalid")                                                  \
    X(REVOKED, "token revoked")                                                                    \
    X(REGISTRY_UNAVAILABLE, "tenant registry unavailable")                                         \
    /* Not a failure: the registry is being asked; see tg_auth_tenant. */                          \
    X(PENDING, "registry lookup pending")

typedef enum {
#define TG_JWT_RESULT_ENUM(name, desc) TG_JWT_##name,
    TG_JWT_RESULT_MAP(TG_JWT_RESULT_ENUM)
#undef TG_JWT_RESULT_ENUM
        TG_JWT_RESULT_COUNT
} tg_jwt_result;

#define TG_TENANT_MAX 64

/* What a verified token says. */
typedef struct tg_identity {
    char tenant[TG_TENANT_MAX + 1]; /* matches ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ */
    char slug[TG_TENANT_MAX + 1];   /* the slug claim, "" when absent */
    char jti[129];                  /* "" when absent or longer than 128 */
    int64_t exp;                    /* unix seconds */
} tg_identity;

typedef struct tg_jwt_verifier tg_jwt_verifier;
typedef struct tg_jwt_cache tg_jwt_cache;

/*
 * Builds a verifier from the auth config: loads and checks every configured
 * key (HS256 secret, PEM public key, JWKS with RSA and EC keys). Returns 0 and
 * a new verifier in *out, or TG_ECONFIG with a message in err.
 * The verifier copies what it needs; cfg may be freed afterwards.
 */
__attribute__((warn_unused_result)) int tg_jwt_verifier_new(const tg_jwt_config *cfg,
                                                            const tg_sni_config *sni,
                                                            tg_jwt_verifier **out, char *err,
                                                            size_t errlen);
void tg_jwt_verifier_free(tg_jwt_verifier *v);

/*
 * Verifies token (len bytes, not NUL-terminated) at unix time `now`.
 * cache may be NULL. sni_host is the TLS server name the client sent, or
 * NULL; when the config has an SNI suffix and sni_host ends with it, the
 * token's slug claim must equal the host minus the suffix.
 * Fills *id on TG_JWT_OK; on any other result *id is left zeroed.
 */
tg_jwt_result tg_jwt_verify(const tg_jwt_verifier *v, tg_jwt_cache *cache, const char *token,
                            size_t len, int64_t now, const char *sni_host, tg_identity *id);

/* A static description of a result ("token expired"). */
const char *tg_jwt_result_str(tg_jwt_result r);
/* A static metric-label-safe name of a result ("expired"). */
const char *tg_jwt_result_label(tg_jwt_result r);

/* A cache of `capacity` verified tokens (0 -> NULL: no cache). Owned by one thread. */
tg_jwt_cache *tg_jwt_cache_new(uint32_t capacity);
void tg_jwt_cache_free(tg_jwt_cache *c);

/* The verifier's process-unique generation id (cache entries of other generations never hit). */
uint64_t tg_jwt_verifier_generation(const tg_jwt_verifier *v);

/* Hit and miss counts of a cache since it was created (both 0 for a NULL cache). */
void tg_jwt_cache_stats(const tg_jwt_cache *c, uint64_t *hits, uint64_t *misses);

/* True when tenant matches ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$. */
int tg_tenant_valid(const char *tenant, size_t len);

/*
 * Mints an HS256 development token: claims tenant_claim=tenant, iat, exp=now+ttl_s,
 * plus extra "k=v" string claims. Returns 0 and a malloc'd token in *out, or a TG_E* code.
 */
__attribute__((warn_unused_result)) int tg_jwt_mint_hs256(const char *secret, size_t secret_len,
                                                          const char *tenant_claim,
                                                          const char *tenant, int64_t now,
                                                          int64_t ttl_s, const char *const *extra,
                                                          size_t n_extra, char **out);

#endif
