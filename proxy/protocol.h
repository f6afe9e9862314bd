/*
 * How a protocol plugs into the connection pair.
 *
 *   client socket --plaintext--> ops->on_data(from=CLIENT) --tg_conn_forward/send--> backend
 *   backend socket --plaintext--> ops->on_data(from=BACKEND) --tg_conn_forward/send--> client
 *
 * A protocol is a table of callbacks plus the size of its per-connection
 * session state, which the pair allocates with the connection. Callbacks run
 * on the connection's worker thread; whatever they send is written once the
 * callback returns (one vectored write per side). A callback returning a
 * negative TG_E* code aborts the connection.
 */
#ifndef TG_PROXY_PROTOCOL_H
#define TG_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct tg_conn tg_conn;
struct tg_listener_config;

typedef enum { TG_SIDE_CLIENT = 0, TG_SIDE_BACKEND = 1 } tg_side_id;

/* X(name, label, description): why the control plane ends an open session (proxy/auth.c). */
#define TG_KICK_MAP(X)                                                                             \
    X(SUSPENDED, "suspended", "tenant suspended")                                                  \
    X(UNREGISTERED, "unregistered", "tenant not registered")                                       \
    X(INVALID, "invalid", "tenant record is invalid")                                              \
    X(REVOKED, "revoked", "token revoked")

typedef enum {
#define TG_KICK_ENUM(name, label, desc) TG_KICK_##name,
    TG_KICK_MAP(TG_KICK_ENUM)
#undef TG_KICK_ENUM
        TG_KICK_COUNT
} tg_kick_reason;

/* A static description of a kick reason ("tenant suspended"), for the protocol's error. */
static inline const char *tg_kick_reason_str(tg_kick_reason r)
{
    static const char *const desc[] = {
#define TG_KICK_DESC(name, label, desc) desc,
        TG_KICK_MAP(TG_KICK_DESC)
#undef TG_KICK_DESC
    };
    return (unsigned)r < TG_KICK_COUNT ? desc[r] : "session ended";
}

/* The other side of a pair. */
static inline tg_side_id tg_side_other(tg_side_id s)
{
    return s == TG_SIDE_CLIENT ? TG_SIDE_BACKEND : TG_SIDE_CLIENT;
}

typedef struct tg_protocol_ops {
    const char *name;
    size_t session_size; /* bytes of zeroed session state allocated with each connection */
    /* True when the protocol negotiates client TLS itself (PostgreSQL's SSLRequest, via
     * tg_conn_start_client_tls); otherwise the pair does a direct TLS handshake per tls.mode. */
    bool own_tls_upgrade;

    /* Builds what all connections of a listener share (immutable, any thread: e.g. the SQL
     * guard) into *state, at config load. Returns 0 or TG_ECONFIG with err. May be NULL. */
    int (*listener_init)(const struct tg_listener_config *cfg, void **state, char *err,
                         size_t errlen);
    void (*listener_free)(void *state);

    /* A client was accepted (and, with direct TLS, its handshake is not done yet). */
    int (*on_open)(tg_conn *c, void *session);
    /* The backend connection asked for with tg_conn_connect_backend is up (TLS included). */
    int (*on_backend_ready)(tg_conn *c, void *session);
    /*
     * Plaintext from side `from`. data is valid during the call and may be
     * forwarded without copying with tg_conn_forward. Returns the bytes
     * consumed (0..len; unconsumed bytes come again, followed by new ones)
     * or a negative TG_E* code to abort. Called again while it consumes.
     */
    ssize_t (*on_data)(tg_conn *c, void *session, tg_side_id from, const uint8_t *data, size_t len);
    /* Side `from` ended its stream. Returns 0 to go on, or < 0 to abort.
     * NULL: the pair finishes the connection (flush, then close). */
    int (*on_eof)(tg_conn *c, void *session, tg_side_id from);
    /* The deadline set with tg_conn_set_expiry has passed (token expired, session timeout):
     * send the protocol's error and call tg_conn_finish. May be NULL (then: abort). */
    void (*on_expire)(tg_conn *c, void *session);
    /*
     * The tenant registry ends this authenticated session (tenant suspended, token
     * revoked, ...; tg_kick_reason_str(reason) says it in words): send the
     * protocol's error where the stream allows it, then tg_conn_finish (or
     * tg_conn_abort). NULL: the pair aborts the connection. Runs on the worker's
     * loop, outside any on_data call; what it sends is flushed afterwards.
     */
    void (*on_kick)(tg_conn *c, void *session, tg_kick_reason reason);
    /* The connection is closing; release what the session owns. May be NULL. */
    void (*on_close)(tg_conn *c, void *session);
} tg_protocol_ops;

#endif
