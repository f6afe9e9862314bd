/*
 * `tenantgate check` for Redis listeners with allow_scripts: see preflight.h.
 *
 *   connect (5 s) --> AUTH [user] password --> HELLO (version >= 7.0)
 *     --> ACL SETUSER <probe> <rule Redis refuses>:
 *           "ERR Error in ACL SETUSER modifier ..."  the service user may provision users
 *           "NOPERM ..."                             it may not: problem, with the fix
 */
#include "protocols/redis/preflight.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define PREFLIGHT_TIMEOUT_S 5
#define PROBE_USER "tenantgate-preflight-probe"
#define PROBE_RULE "tenantgate-preflight-refused-rule"

/* The reply's text (errors, strings), printable and bounded, for the report. */
static void reply_text(const redisReply *r, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; r && r->str && i < r->len && n + 1 < cap && n < 160; i++) {
        char ch = r->str[i];
        out[n++] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    out[n] = '\0';
}

/* The "version" field of a RESP2 HELLO reply ("7.0.15"), or NULL. */
static const char *hello_version(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "version") == 0 &&
            v->type == REDIS_REPLY_STRING)
            return v->str;
    }
    return NULL;
}

int tg_redis_preflight(const tg_listener_config *l, FILE *report)
{
    char host[256], text[200];
    uint16_t port;
    const char *svc = l->backend.user ? l->backend.user : "default";
    if (tg_config_split_address(l->backend.address, host, sizeof(host), &port) < 0) {
        fprintf(report, "listener %s: cannot connect: not a host:port address\n", l->name);
        return TG_REDIS_PREFLIGHT_NOCONNECT;
    }
    struct timeval tv = {PREFLIGHT_TIMEOUT_S, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        fprintf(report, "listener %s: cannot connect: %s\n", l->name,
                c ? c->errstr : "out of memory");
        redisFree(c);
        return TG_REDIS_PREFLIGHT_NOCONNECT;
    }
    (void)redisSetTimeout(c, tv);
    int rc = TG_REDIS_PREFLIGHT_OK;
    redisReply *r = NULL;
    if (l->backend.password.data) {
        const char *argv[3] = {"AUTH", l->backend.user, l->backend.password.data};
        size_t len[3] = {4, l->backend.user ? strlen(l->backend.user) : 0, l->backend.password.len};
        if (!l->backend.user) {
            argv[1] = argv[2];
            len[1] = len[2];
        }
        r = redisCommandArgv(c, l->backend.user ? 3 : 2, argv, len);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            reply_text(r, text, sizeof(text));
            fprintf(report, "listener %s: cannot connect: the service user %s cannot log in: %s\n",
                    l->name, svc, r ? text : c->errstr);
            rc = TG_REDIS_PREFLIGHT_NOCONNECT;
            goto done;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "HELLO");
    const char *version = hello_version(r);
    if (!version || atoi(version) < 7) {
        fprintf(report,
                "listener %s: problem: allow_scripts needs Redis 7.0 or later (server: %s); fix: "
                "upgrade the server, or set allow_scripts: false\n",
                l->name, version ? version : "unknown");
        rc = TG_REDIS_PREFLIGHT_UNSAFE;
        goto done;
    }
    snprintf(text, sizeof(text), "%s", version);
    freeReplyObject(r);
    r = redisCommand(c, "ACL SETUSER %s %s", PROBE_USER, PROBE_RULE);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ERR Error in ACL SETUSER", 24) == 0) {
        fprintf(report,
                "listener %s: ok: redis %s; the service user %s may provision the per-tenant ACL "
                "users\n",
                l->name, text, svc);
    } else if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) == 0) {
        fprintf(report,
                "listener %s: problem: the service user %s may not run ACL SETUSER; fix: ACL "
                "SETUSER %s +acl|setuser (see README, \"Redis scripts\")\n",
                l->name, svc, svc);
        rc = TG_REDIS_PREFLIGHT_UNSAFE;
    } else {
        reply_text(r, text, sizeof(text));
        fprintf(report, "listener %s: problem: unexpected answer to an ACL SETUSER probe: %s\n",
                l->name, r ? text : c->errstr);
        rc = TG_REDIS_PREFLIGHT_UNSAFE;
    }
done:
    freeReplyObject(r);
    redisFree(c);
    return rc;
}
