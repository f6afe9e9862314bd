/*
 * libFuzzer target for tg_jwt_verify.
 *
 *   arbitrary bytes --as a token--> verifier {HS256 secret, EC P-256 PEM, aud/iss unset,
 *                                   SNI suffix} + a small per-process cache
 *
 * Invariants: never crash (ASan/UBSan), the result is a valid enum value, the
 * identity is all zeroes unless the result is OK, and nothing verifies except
 * the two known-good seed tokens (signed offline with the secret below and
 * with the private half of the EC key, which is not kept anywhere).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/jwt.h"

#define FUZZ_NOW 1700000000

static const char hs_secret[] = "tenantgate-fuzz-secret-0123456789abcdef";
static const char ec_pem[] = "-----BEGIN PUBLIC KEY-----\n"
                             "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEpjF9JU0zZ13jpYr8SfMjxJXLM8lY\n"
                             "eFZOUPmt7wZmWOYL9R17UU+ocTMAz66+SdnY9O+ll/hbLawheOov+eI3eQ==\n"
                             "-----END PUBLIC KEY-----\n";

/* The only inputs that may verify (tests/fuzz/corpus/jwt_fuzz/{hs256,es256}_ok). */
static const char *const good[] = {
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0ZW5hbnRfaWQiOiJhY21lIiwiZXhwIjo0MTAyNDQ0ODAwLCJ0ZW5h"
    "bnRfc2x1ZyI6ImFjbWUiLCJqdGkiOiJmMSJ9.A9Vw2zygr0pOpec13PSEjg1qJ0p_0beLy4SiG0u2eRo",
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJ0ZW5hbnRfaWQiOiJiZXRhIiwiZXhwIjo0MTAy"
    "NDQ0ODAwLCJuYmYiOjE2MDAwMDAwMDAsImF1ZCI6WyJ4IiwidGciXX0.9rVYUhtvnF6TOfBlTNptiAzfmo4hA9x23umHl"
    "oJ696O1JNhIcpooHeg1ijDMPh_wnbF7gCTj2JRPLJfLNK78Yg",
};

static tg_jwt_verifier *verifier;
static tg_jwt_cache *cache;

static void setup(void)
{
    tg_jwt_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.algorithms = TG_JWT_ALG_HS256 | TG_JWT_ALG_HS384 | TG_JWT_ALG_RS256 | TG_JWT_ALG_ES256 |
                     TG_JWT_ALG_ES384 | TG_JWT_ALG_PS256;
    cfg.hs256_secret = (tg_secret){NULL, (char *)hs_secret, sizeof(hs_secret) - 1};
    cfg.public_key = (tg_secret){NULL, (char *)ec_pem, sizeof(ec_pem) - 1};
    cfg.tenant_claim = "tenant_id";
    cfg.leeway_s = 30;
    cfg.max_token_bytes = 8192;
    tg_sni_config sni = {".tenants.example.com", NULL};
    char err[256];
    if (tg_jwt_verifier_new(&cfg, &sni, &verifier, err, sizeof(err)) != 0)
        abort();
    cache = tg_jwt_cache_new(64);
    if (!cache)
        abort();
}

static int is_good(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (strlen(good[i]) == size && memcmp(good[i], data, size) == 0)
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!verifier)
        setup();
    /* Copy so that reads past `size` are caught even though the API takes a length. */
    char *tok = malloc(size ? size : 1);
    if (!tok)
        return 0;
    memcpy(tok, data, size);
    const char *host = (size & 1) ? "acme.tenants.example.com" : NULL;
    for (int pass = 0; pass < 2; pass++) { /* the second pass may be a cache hit */
        tg_identity id;
        memset(&id, 0xa5, sizeof(id));
        tg_jwt_cache *c = pass ? cache : NULL;
        tg_jwt_result r = tg_jwt_verify(verifier, c, tok, size, FUZZ_NOW, host, &id);
        if ((unsigned)r >= TG_JWT_RESULT_COUNT)
            abort();
        if (!tg_jwt_result_label(r) || !tg_jwt_result_str(r))
            abort();
        if (r == TG_JWT_OK) {
            if (!is_good(data, size) || !tg_tenant_valid(id.tenant, strlen(id.tenant)))
                abort();
        } else {
            static const tg_identity zero;
            if (memcmp(&id, &zero, sizeof(id)) != 0)
                abort();
        }
    }
    free(tok);
    return 0;
}
