/*
 * The key set of a JWT verifier (private to the tg_jwt module).
 *
 *   hs256_secret_file --copy------------------------------> key {HMAC, raw secret}
 *   public_key_file   --PEM_read PUBKEY/X509 --> EVP_PKEY --> key {RSA|EC256|EC384, SPKI PEM}
 *   jwks_file --jansson--> each {"kty","n","e"|"crv","x","y"} --EVP_PKEY_fromdata--> same
 *
 * Every asymmetric key is re-serialised as a SubjectPublicKeyInfo PEM, which
 * is what libjwt 1.10 wants as its "key" argument. A key carries its type and
 * the set of TG_JWT_ALG_* bits it may verify, so selection can never hand an
 * RSA public key to an HMAC algorithm (the HS/RS confusion).
 */
#ifndef TG_PROXY_JWT_KEYS_H
#define TG_PROXY_JWT_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "proxy/config.h"
#include "proxy/jwt.h"

/* Key types; an algorithm family only ever meets its own type. */
typedef enum {
    TG_JWT_KEY_HMAC,  /* HS256/HS384/HS512 */
    TG_JWT_KEY_RSA,   /* RS256/RS384/RS512/PS256 */
    TG_JWT_KEY_EC256, /* ES256 (P-256) */
    TG_JWT_KEY_EC384, /* ES384 (P-384) */
} tg_jwt_key_type;

#define TG_JWT_ALGS_HMAC (TG_JWT_ALG_HS256 | TG_JWT_ALG_HS384 | TG_JWT_ALG_HS512)
#define TG_JWT_ALGS_RSA (TG_JWT_ALG_RS256 | TG_JWT_ALG_RS384 | TG_JWT_ALG_RS512 | TG_JWT_ALG_PS256)

/* Minimum sizes: RFC 7518 §3.2 (HMAC key >= hash size) and RSA >= 2048 bits. */
#define TG_JWT_HS_MIN_SECRET 32
#define TG_JWT_RSA_MIN_BITS 2048

/* One verification key. Owned by its tg_jwt_keyset. */
typedef struct tg_jwt_key {
    tg_jwt_key_type type;
    uint32_t algs;           /* TG_JWT_ALG_* bits this key may verify */
    char *kid;               /* JWKS "kid", NULL when absent (always NULL outside a JWKS) */
    unsigned char *material; /* HMAC: the raw secret; others: SPKI PEM text (NUL-terminated) */
    size_t material_len;
    EVP_PKEY *pkey; /* asymmetric keys only (used for PS256, which libjwt 1.10 lacks) */
} tg_jwt_key;

typedef struct tg_jwt_keyset {
    tg_jwt_key *hs;   /* the HS secret, or NULL */
    tg_jwt_key *pem;  /* the public_key_file key, or NULL */
    tg_jwt_key *jwks; /* usable JWKS keys (array), NULL when none */
    size_t n_jwks;
    int has_jwks; /* a JWKS file was configured (even if none of its keys is usable) */
} tg_jwt_keyset;

/*
 * Loads every key that cfg configures into *ks (zeroed first). Returns 0, or
 * TG_ECONFIG with a message in err; on failure *ks holds nothing.
 */
__attribute__((warn_unused_result)) int
tg_jwt_keys_load(const tg_jwt_config *cfg, tg_jwt_keyset *ks, char *err, size_t errlen);

/* Frees every key of ks (secrets are zeroed first) and zeroes *ks. */
void tg_jwt_keys_free(tg_jwt_keyset *ks);

/*
 * Picks the key for a token whose header says alg_bit (one TG_JWT_ALG_* bit)
 * and kid (NULL when absent). Returns the key (borrowed from ks) or NULL with
 * *why = TG_JWT_BAD_ALGORITHM (no key of the algorithm's type is configured,
 * or the kid names a key of another type) or TG_JWT_UNKNOWN_KEY.
 */
const tg_jwt_key *tg_jwt_keys_select(const tg_jwt_keyset *ks, uint32_t alg_bit, const char *kid,
                                     tg_jwt_result *why);

/* The key type an algorithm needs. */
tg_jwt_key_type tg_jwt_keys_type_for_alg(uint32_t alg_bit);

/* Maps a JOSE "alg" name ("RS256") to its TG_JWT_ALG_* bit, or 0 (unknown, "none"). Exact case. */
uint32_t tg_jwt_alg_bit(const char *name);

/*
 * Strict base64url (RFC 4648 §5, no padding, zero trailing bits): decodes
 * in[0..len) into out (room for len*3/4 bytes). Returns the decoded length, or
 * -1 on a bad character, a bad length or non-zero trailing bits.
 */
__attribute__((warn_unused_result)) long tg_jwt_b64url_decode(const char *in, size_t len,
                                                              unsigned char *out);

#endif
