/*
 * `tenantgate tenant`: the tenant registry's control commands, for operators
 * and scripts (a control plane may run the same Redis commands itself).
 *
 *   tenantgate tenant -c tenantgate.yaml suspend TENANT
 *       HSET <prefix>tenant:TENANT status suspended; PUBLISH <prefix>events "tenant TENANT"
 *   tenantgate tenant -c tenantgate.yaml activate TENANT
 *       HSET <prefix>tenant:TENANT status active;    PUBLISH <prefix>events "tenant TENANT"
 *   tenantgate tenant -c tenantgate.yaml revoke-jti JTI [--exp UNIX_SECONDS]
 *       ZADD <prefix>revoked EXP JTI; ZREMRANGEBYSCORE <prefix>revoked -inf (NOW;
 *       PUBLISH <prefix>events "jti JTI"
 *   tenantgate tenant -c tenantgate.yaml show TENANT
 *       HGETALL <prefix>tenant:TENANT (tenantgate's fields and its verdict)
 *
 * The registry's address, credentials and key prefix come from the config's
 * tenants.registry. Every tenantgate subscribed to <prefix>events closes the
 * tenant's (or the token's) open sessions within a second. A blocking client
 * (hiredis, with the registry's timeout) is fine here: this is a command, not
 * the proxy. --exp should be the token's own exp, so the entry is trimmed only
 * once the token is dead anyway; without it, 30 days from now.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "proxy/cli.h"
#include "proxy/config.h"
#include "proxy/jwt.h"
#include "proxy/tenant_record.h"

#define TENANT_DEFAULT_REVOKE_S (30 * 86400)

static void usage(FILE *f)
{
    fputs("usage: tenantgate tenant -c tenantgate.yaml suspend TENANT\n"
          "       tenantgate tenant -c tenantgate.yaml activate TENANT\n"
          "       tenantgate tenant -c tenantgate.yaml revoke-jti JTI [--exp UNIX_SECONDS]\n"
          "       tenantgate tenant -c tenantgate.yaml show TENANT\n"
          "\n"
          "Writes the tenant registry (tenants.registry in the config) and tells every\n"
          "tenantgate: suspending a tenant or revoking a token closes its open sessions.\n",
          f);
}

static int fail(const char *what, const char *arg)
{
    fprintf(stderr, "tenantgate tenant: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    return 1;
}

/* Runs one command; prints Redis's error. Returns the reply (caller frees) or NULL. */
static redisReply *run(redisContext *rc, int argc, const char **argv)
{
    size_t len[8];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(rc, argc, argv, len);
    if (!r) {
        fail("registry", rc->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fail(argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Runs a command whose reply is not needed. Returns 0 or 1. */
static int run0(redisContext *rc, int argc, const char **argv)
{
    redisReply *r = run(rc, argc, argv);
    if (!r)
        return 1;
    freeReplyObject(r);
    return 0;
}

static redisContext *connect_registry(const tg_registry_config *reg)
{
    char host[256];
    uint16_t port;
    if (tg_config_split_address(reg->address, host, sizeof(host), &port) < 0) {
        fail("bad tenants.registry.address", reg->address);
        return NULL;
    }
    struct timeval tv = {reg->timeout_ms / 1000, (reg->timeout_ms % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (!rc || rc->err) {
        fail("cannot connect to the registry", rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    if (reg->password.data) {
        const char *argv[3];
        size_t len[3];
        int n = 0;
        argv[n] = "AUTH";
        len[n++] = 4;
        if (reg->user) {
            argv[n] = reg->user;
            len[n++] = strlen(reg->user);
        }
        argv[n] = reg->password.data;
        len[n++] = reg->password.len;
        redisReply *r = redisCommandArgv(rc, n, argv, len);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fail("registry AUTH refused", r ? r->str : rc->errstr);
            if (r)
                freeReplyObject(r);
            redisFree(rc);
            return NULL;
        }
        freeReplyObject(r);
    }
    return rc;
}

static int set_status(redisContext *rc, const char *prefix, const char *tenant, const char *status)
{
    char key[256], event[128];
    snprintf(key, sizeof(key), "%stenant:%s", prefix, tenant);
    snprintf(event, sizeof(event), "tenant %s", tenant);
    char channel[128];
    snprintf(channel, sizeof(channel), "%sevents", prefix);
    const char *hset[] = {"HSET", key, "status", status};
    const char *pub[] = {"PUBLISH", channel, event};
    if (run0(rc, 4, hset) != 0)
        return 1;
    redisReply *r = run(rc, 3, pub);
    if (!r)
        return 1;
    printf("tenant %s: %s (%lld tenantgate subscriptions told)\n", tenant, status,
           r->type == REDIS_REPLY_INTEGER ? r->integer : 0LL);
    freeReplyObject(r);
    return 0;
}

static int revoke(redisContext *rc, const char *prefix, const char *jti, long long exp)
{
    char key[128], channel[128], event[160], score[32], trim[32];
    snprintf(key, sizeof(key), "%srevoked", prefix);
    snprintf(channel, sizeof(channel), "%sevents", prefix);
    snprintf(event, sizeof(event), "jti %s", jti);
    snprintf(score, sizeof(score), "%lld", exp);
    snprintf(trim, sizeof(trim), "(%lld", (long long)time(NULL));
    const char *zadd[] = {"ZADD", key, score, jti};
    const char *ztrim[] = {"ZREMRANGEBYSCORE", key, "-inf", trim};
    const char *pub[] = {"PUBLISH", channel, event};
    if (run0(rc, 4, zadd) != 0 || run0(rc, 4, ztrim) != 0)
        return 1;
    redisReply *r = run(rc, 3, pub);
    if (!r)
        return 1;
    printf("jti %s: revoked until %lld (%lld tenantgate subscriptions told)\n", jti, exp,
           r->type == REDIS_REPLY_INTEGER ? r->integer : 0LL);
    freeReplyObject(r);
    return 0;
}

static int show(redisContext *rc, const char *prefix, const char *tenant, bool require)
{
    char key[256];
    snprintf(key, sizeof(key), "%stenant:%s", prefix, tenant);
    const char *hget[] = {"HGETALL", key};
    redisReply *r = run(rc, 2, hget);
    if (!r)
        return 1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0 || r->elements > 512) {
        freeReplyObject(r);
        return fail("unexpected reply to HGETALL", key);
    }
    tg_slice f[256], v[256];
    size_t n = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            r->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        f[n] = (tg_slice){(const uint8_t *)r->element[i]->str, r->element[i]->len};
        v[n] = (tg_slice){(const uint8_t *)r->element[i + 1]->str, r->element[i + 1]->len};
        printf("%.*s: %.*s\n", (int)f[n].len, (const char *)f[n].base, (int)v[n].len,
               (const char *)v[n].base);
        n++;
    }
    tg_tenant_record rec;
    tg_tenant_record_parse(f, v, n, &rec);
    printf("verdict: %s\n", tg_tenant_record_verdict_str(tg_tenant_record_verdict(&rec, require)));
    freeReplyObject(r);
    return 0;
}

int tg_cli_tenant(int argc, char **argv)
{
    const char *config = NULL, *action = NULL, *name = NULL;
    long long exp = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--exp") == 0 && i + 1 < argc) {
            char *end;
            exp = strtoll(argv[++i], &end, 10);
            if (*end || exp <= 0)
                return fail("--exp wants unix seconds", argv[i]);
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (!action) {
            action = argv[i];
        } else if (!name) {
            name = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!config || !action || !name) {
        usage(stderr);
        return 2;
    }
    bool is_jti = strcmp(action, "revoke-jti") == 0;
    if (!is_jti && strcmp(action, "suspend") != 0 && strcmp(action, "activate") != 0 &&
        strcmp(action, "show") != 0) {
        usage(stderr);
        return 2;
    }
    if (is_jti) {
        size_t n = strlen(name);
        bool printable = n > 0 && n <= 128;
        for (size_t i = 0; i < n && printable; i++)
            printable = name[i] > 0x20 && name[i] < 0x7f;
        if (!printable)
            return fail("a jti is 1-128 printable characters without spaces", name);
        if (!exp)
            exp = (long long)time(NULL) + TENANT_DEFAULT_REVOKE_S;
    } else if (!tg_tenant_valid(name, strlen(name))) {
        return fail("not a tenant id", name);
    }
    char err[512];
    tg_config *cfg;
    if (tg_config_load(config, &cfg, err, sizeof(err)) < 0)
        return fail("config", err);
    const tg_tenants_config *t = &cfg->tenants;
    if (!t->registry.address) {
        tg_config_free(cfg);
        return fail("the config has no tenants.registry", config);
    }
    redisContext *rc = connect_registry(&t->registry);
    int status = 1;
    if (rc) {
        const char *prefix = t->registry.key_prefix;
        if (is_jti)
            status = revoke(rc, prefix, name, exp);
        else if (strcmp(action, "show") == 0)
            status = show(rc, prefix, name, t->require_registered);
        else
            status = set_status(rc, prefix, name,
                                strcmp(action, "suspend") == 0 ? "suspended" : "active");
        redisFree(rc);
    }
    tg_config_free(cfg);
    return status;
}
