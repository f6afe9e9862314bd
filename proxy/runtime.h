/*
 * One generation of the running configuration.
 *
 *   tg_config --tg_runtime_new--> tg_runtime { verifier, per-listener TLS contexts, resolved
 *                                              backend address, protocol ops } --ref--> workers,
 * conns
 *
 * A runtime is immutable and shared by every worker thread; each worker and
 * each connection holds a reference. SIGHUP builds a new runtime; connections
 * keep the one they were accepted under until they close, so a reload never
 * drops an established session.
 */
#ifndef TG_PROXY_RUNTIME_H
#define TG_PROXY_RUNTIME_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy/config.h"
#include "proxy/jwt.h"
#include "proxy/protocol.h"
#include "proxy/tls.h"

typedef struct tg_listener_rt {
    const tg_listener_config *cfg; /* points into the runtime's config */
    const tg_protocol_ops *ops;
    tg_tls_ctx *client_tls;  /* NULL when tls.mode is disable */
    tg_tls_ctx *backend_tls; /* NULL when backend.tls is disable */
    void *proto_state;       /* ops->listener_init's result (e.g. the SQL guard) */
    char backend_host[256];
    char backend_port[8];
    bool backend_numeric; /* backend_addr holds the address; else resolve per connect */
    struct sockaddr_storage backend_addr;
    char backend_server_name[256]; /* TLS SNI / verified name toward the backend */
    _Atomic int64_t *active;       /* open connections of this listener name, all workers and
                                      generations (process lifetime) */
} tg_listener_rt;

typedef struct tg_runtime {
    _Atomic uint32_t refs;
    uint64_t generation;
    tg_config *cfg;       /* owned */
    tg_jwt_verifier *jwt; /* NULL when no key source is configured */
    tg_listener_rt *listeners;
    size_t n_listeners;
} tg_runtime;

/*
 * Builds a runtime from cfg, taking ownership of cfg (freed on failure too):
 * loads keys and TLS material, resolves numeric backend addresses, picks each
 * listener's protocol. Returns 0 with one reference in *out, or TG_ECONFIG
 * with a message in err.
 */
__attribute__((warn_unused_result)) int tg_runtime_new(tg_config *cfg, tg_runtime **out, char *err,
                                                       size_t errlen);

/* Adds a reference (any thread). */
void tg_runtime_ref(tg_runtime *rt);

/* Drops a reference (any thread); the last one frees the runtime. */
void tg_runtime_unref(tg_runtime *rt);

/* The listener named `name`, or NULL. */
const tg_listener_rt *tg_runtime_listener(const tg_runtime *rt, const char *name);

/* The protocol table for p, or NULL when p is not implemented yet. */
const tg_protocol_ops *tg_runtime_protocol_ops(tg_protocol p);

#endif
