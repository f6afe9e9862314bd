/*
 * A small hiredis client for the Redis integration tests: a real C client library
 * talking to tenantgate.
 *
 *   hiredis_client <port> <jwt> [prefix]
 *
 * Connects to 127.0.0.1:<port>, sends AUTH <jwt>, then SET/GET/INCR/LPUSH/LRANGE and
 * a pipeline of 1000 commands (redisAppendCommand + redisGetReply), printing one
 * line per result ("name: value"). Exit status 0 only when every reply was as
 * expected; the first unexpected reply is printed as "FAIL: ..." and exits 1.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, const redisReply *r, const redisContext *c)
{
    if (r)
        printf("FAIL: %s: type %d str %.*s\n", what, r->type, r->str ? (int)r->len : 0,
               r->str ? r->str : "");
    else
        printf("FAIL: %s: %s\n", what, c->errstr);
    return 1;
}

/* Run a command, expect a status/string reply equal to want (or any when want is NULL). */
static int expect_str(redisContext *c, const char *name, const char *want, redisReply *r)
{
    if (!r || (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_STRING) ||
        (want && strcmp(r->str, want) != 0)) {
        int rc = fail(name, r, c);
        if (r)
            freeReplyObject(r);
        return rc;
    }
    printf("%s: %s\n", name, r->str);
    freeReplyObject(r);
    return 0;
}

static int expect_int(redisContext *c, const char *name, long long want, redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer != want) {
        int rc = fail(name, r, c);
        if (r)
            freeReplyObject(r);
        return rc;
    }
    printf("%s: %lld\n", name, r->integer);
    freeReplyObject(r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <port> <jwt> [prefix]\n", argv[0]);
        return 2;
    }
    const char *p = argc > 3 ? argv[3] : "hc";
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", atoi(argv[1]), tv);
    if (!c || c->err) {
        printf("FAIL: connect: %s\n", c ? c->errstr : "out of memory");
        redisFree(c);
        return 1;
    }
    redisSetTimeout(c, tv);
    int rc = 0;
    rc |= expect_str(c, "AUTH", "OK", redisCommand(c, "AUTH %s", argv[2]));
    if (rc) {
        redisFree(c);
        return 1;
    }
    rc |= expect_str(c, "SET", "OK", redisCommand(c, "SET %s:str %s", p, "hello hiredis"));
    rc |= expect_str(c, "GET", "hello hiredis", redisCommand(c, "GET %s:str", p));
    redisReply *r = redisCommand(c, "DEL %s:n %s:list", p, p);
    if (r)
        freeReplyObject(r);
    rc |= expect_int(c, "INCR", 1, redisCommand(c, "INCR %s:n", p));
    rc |= expect_int(c, "INCR", 2, redisCommand(c, "INCR %s:n", p));
    rc |= expect_int(c, "LPUSH", 3, redisCommand(c, "LPUSH %s:list a b c", p));
    r = redisCommand(c, "LRANGE %s:list 0 -1", p);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        rc |= fail("LRANGE", r, c);
    } else {
        printf("LRANGE:");
        for (size_t i = 0; i < r->elements; i++)
            printf(" %s", r->element[i]->str);
        printf("\n");
    }
    if (r)
        freeReplyObject(r);
    r = redisCommand(c, "KEYS %s:*", p);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        rc |= fail("KEYS", r, c);
    } else {
        printf("KEYS: %zu\n", r->elements);
        for (size_t i = 0; i < r->elements; i++)
            printf("KEY: %s\n", r->element[i]->str);
    }
    if (r)
        freeReplyObject(r);
    r = redisCommand(c, "FLUSHALL");
    if (r && r->type == REDIS_REPLY_ERROR)
        printf("FLUSHALL: %s\n", r->str);
    else
        rc |= fail("FLUSHALL not refused", r, c);
    if (r)
        freeReplyObject(r);

    /* 1000 pipelined commands: SET i / GET i / a denied DBSIZE every 100th. */
    enum { N = 1000 };
    for (int i = 0; i < N; i++) {
        if (i % 100 == 99)
            redisAppendCommand(c, "DBSIZE");
        else if (i % 2 == 0)
            redisAppendCommand(c, "SET %s:p%d v%d", p, i / 2, i);
        else
            redisAppendCommand(c, "GET %s:p%d", p, i / 2);
    }
    int ok = 0, denied = 0;
    for (int i = 0; i < N; i++) {
        void *v = NULL;
        if (redisGetReply(c, &v) != REDIS_OK) {
            printf("FAIL: pipeline reply %d: %s\n", i, c->errstr);
            redisFree(c);
            return 1;
        }
        r = v;
        char want[32];
        snprintf(want, sizeof want, "v%d", i - 1);
        if (i % 100 == 99) {
            if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM tenantgate:", 18) == 0)
                denied++;
            else
                rc |= fail("pipeline denial", r, c);
        } else if (i % 2 == 0) {
            if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
                ok++;
            else
                rc |= fail("pipeline SET", r, c);
        } else {
            if (r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0)
                ok++;
            else
                rc |= fail("pipeline GET", r, c);
        }
        freeReplyObject(r);
    }
    printf("PIPELINE: %d ok %d denied\n", ok, denied);
    redisFree(c);
    printf("%s\n", rc ? "FAILED" : "DONE");
    return rc;
}
