/*
 * `tenantgate token`: mints an HS256 development token (SPEC §2).
 *
 *   argv --parse options--> secret file (one trailing newline dropped, as config does)
 *        --tg_jwt_mint_hs256(tenant claim, iat, exp = now + ttl, --claim k=v...)--> stdout
 *
 * Options take their value as the next argument or after '=' ("--ttl=30m").
 * Every error prints a message and the usage on stderr and exits 2. The
 * secret is wiped from memory once the token is built; the token itself only
 * goes to stdout.
 */
#include "proxy/cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "proxy/error.h"
#include "proxy/jwt.h"

#define TOKEN_MAX_SECRET (64 * 1024)
#define TOKEN_MAX_TTL ((int64_t)10 * 366 * 24 * 3600) /* ten years */
#define TOKEN_DEFAULT_TTL 3600

static void usage(FILE *f)
{
    fputs("usage: tenantgate token --hs256-secret-file FILE --tenant TENANT\n"
          "                        [--ttl 1h|30m|90s|3600] [--claim key=value]...\n"
          "                        [--tenant-claim NAME]\n"
          "\n"
          "Prints an HS256 token carrying NAME=TENANT (default tenant_id), iat and exp\n"
          "(default ttl 1h), plus each --claim as a string claim.\n",
          f);
}

static int fail(const char *what, const char *arg)
{
    fprintf(stderr, "tenantgate token: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    usage(stderr);
    return 2;
}

/* Parses "3600", "90s", "30m", "1h", "2d" into seconds. Returns 0 or TG_EINVAL. */
__attribute__((warn_unused_result)) static int parse_ttl(const char *s, int64_t *out)
{
    int64_t n = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return TG_EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (TOKEN_MAX_TTL - (*p - '0')) / 10)
            return TG_EINVAL;
        n = n * 10 + (*p - '0');
    }
    int64_t unit = 1;
    if (*p) {
        switch (*p) {
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        default:
            return TG_EINVAL;
        }
        if (p[1] != '\0')
            return TG_EINVAL;
    }
    if (n == 0 || n > TOKEN_MAX_TTL / unit)
        return TG_EINVAL;
    *out = n * unit;
    return 0;
}

/* Reads the secret file; drops one trailing newline. Returns 0 or a TG_E* code. */
__attribute__((warn_unused_result)) static int read_secret(const char *path, char **out,
                                                           size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return TG_EIO;
    char *buf = malloc(TOKEN_MAX_SECRET + 1);
    if (!buf) {
        fclose(f);
        return TG_ENOMEM;
    }
    size_t n = fread(buf, 1, TOKEN_MAX_SECRET + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > TOKEN_MAX_SECRET) {
        OPENSSL_cleanse(buf, TOKEN_MAX_SECRET + 1);
        free(buf);
        return bad ? TG_EIO : TG_ETOOBIG;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* "--name value" or "--name=value": returns the value and advances *i, or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

int tg_cli_token(int argc, char **argv)
{
    const char *secret_file = NULL, *tenant = NULL, *tenant_claim = NULL;
    int64_t ttl = TOKEN_DEFAULT_TTL;
    const char **claims = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*claims));
    size_t n_claims = 0;
    int rc = 2;
    if (!claims) {
        fputs("tenantgate token: out of memory\n", stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int missing = 0;
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            free(claims);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--hs256-secret-file", &missing))) {
            secret_file = v;
        } else if ((v = opt_value(argc, argv, &i, "--tenant-claim", &missing))) {
            tenant_claim = v;
        } else if ((v = opt_value(argc, argv, &i, "--tenant", &missing))) {
            tenant = v;
        } else if ((v = opt_value(argc, argv, &i, "--ttl", &missing))) {
            if (parse_ttl(v, &ttl) != 0) {
                rc = fail("invalid --ttl (use e.g. 3600, 90s, 30m, 1h, 2d)", v);
                goto done;
            }
        } else if ((v = opt_value(argc, argv, &i, "--claim", &missing))) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                rc = fail("invalid --claim (expected key=value)", v);
                goto done;
            }
            claims[n_claims++] = v;
        } else {
            rc = fail(missing ? "missing value for" : "unknown argument", argv[i]);
            goto done;
        }
    }
    if (!secret_file) {
        rc = fail("--hs256-secret-file is required", NULL);
        goto done;
    }
    if (!tenant) {
        rc = fail("--tenant is required", NULL);
        goto done;
    }
    if (!tg_tenant_valid(tenant, strlen(tenant))) {
        rc = fail("invalid --tenant (must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$)", tenant);
        goto done;
    }
    if (tenant_claim && !tenant_claim[0]) {
        rc = fail("--tenant-claim must not be empty", NULL);
        goto done;
    }

    char *secret = NULL;
    size_t secret_len = 0;
    int r = read_secret(secret_file, &secret, &secret_len);
    if (r != 0) {
        fprintf(stderr, "tenantgate token: %s: %s\n", secret_file,
                r == TG_EIO ? strerror(errno) : tg_strerror(r));
        goto done;
    }
    char *token = NULL;
    r = tg_jwt_mint_hs256(secret, secret_len, tenant_claim, tenant, (int64_t)time(NULL), ttl,
                          claims, n_claims, &token);
    OPENSSL_cleanse(secret, secret_len);
    free(secret);
    if (r != 0) {
        if (secret_len < 32)
            rc = fail("the HS256 secret must be at least 32 bytes", secret_file);
        else
            rc = fail("cannot build the token (duplicate or reserved claim?)", NULL);
        goto done;
    }
    printf("%s\n", token);
    free(token);
    rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
done:
    free(claims);
    return rc;
}
