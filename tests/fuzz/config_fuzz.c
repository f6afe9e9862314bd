/*
 * libFuzzer target for proxy/config.c: the input is a tenantgate.yaml.
 *
 *   input --tg_config_parse("fuzz/tenantgate.yaml")--> ok: walk + tg_config_free
 *                                                  \-> error: err is a NUL-terminated,
 *                                                      non-empty "name:line: ..." message
 *
 * Invariants: never crashes or leaks (ASan/LSan); on error *out is untouched and
 * err is NUL-terminated inside its buffer and starts with the name; on success every
 * listener has a name, a listen and a backend address that split, and free works.
 * Relative *_file paths resolve against "fuzz/" (normally absent: read errors).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/config.h"
#include "proxy/error.h"

#define NAME "fuzz/tenantgate.yaml"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "config_fuzz: invariant violated: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size heap copy, so ASan sees any read past len (input is not NUL-terminated) */
    char *yaml = malloc(size ? size : 1);
    if (!yaml) {
        return 0;
    }
    memcpy(yaml, data, size);

    enum { ERRLEN = 256 };
    char *err = malloc(ERRLEN);
    if (!err) {
        free(yaml);
        return 0;
    }
    memset(err, 'X', ERRLEN);

    tg_config *sentinel = (tg_config *)(uintptr_t)0x5a5a;
    tg_config *cfg = sentinel;
    int rc = tg_config_parse(yaml, size, NAME, &cfg, err, ERRLEN);
    if (rc != 0) {
        check(rc == TG_ECONFIG, "error code is TG_ECONFIG");
        check(cfg == sentinel, "*out untouched on error");
        check(memchr(err, '\0', ERRLEN) != NULL, "err NUL-terminated");
        check(err[0] != '\0', "err non-empty");
        check(strncmp(err, NAME ":", strlen(NAME ":")) == 0, "err starts with the name");
    } else {
        check(cfg != NULL && cfg != sentinel, "config returned");
        check(cfg->n_listeners > 0, "at least one listener");
        check(cfg->workers >= 1 && cfg->workers <= 256, "workers in range");
        for (size_t i = 0; i < cfg->n_listeners; i++) {
            const tg_listener_config *l = &cfg->listeners[i];
            char host[256];
            uint16_t port;
            check(l->name != NULL && l->listen != NULL && l->backend.address != NULL,
                  "listener has name, listen and backend address");
            check(tg_config_split_address(l->listen, host, sizeof host, &port) == 0,
                  "listen splits");
            check(tg_config_split_address(l->backend.address, host, sizeof host, &port) == 0,
                  "backend address splits");
            check(tg_config_find_listener(cfg, l->name) == l, "names are unique");
            check(l->protocol != TG_PROTO_TCP || l->unsafe_passthrough, "tcp needs passthrough");
        }
        tg_config_free(cfg);
    }
    free(err);
    free(yaml);
    return 0;
}
