/*
 * Error codes shared by every layer of tenantgate.
 *
 * Library-like functions return 0 (or a positive count) on success and a
 * negative TG_E* value on failure; errno is never used as a side channel.
 * Incremental decoders follow a three-way contract: bytes consumed (> 0),
 * TG_NEED_MORE (0: the input holds no complete frame yet) or a negative
 * TG_E* error -- "incomplete" and "invalid" never share a value.
 */
#ifndef TG_PROXY_ERROR_H
#define TG_PROXY_ERROR_H

/* X(name, value, description): the one list of error codes. */
#define TG_ERRNO_MAP(X)                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(PROTO, -3, "protocol violation")                                                             \
    X(TOOBIG, -4, "message too large")                                                             \
    X(IO, -5, "I/O error")                                                                         \
    X(TLS, -6, "TLS error")                                                                        \
    X(AUTH, -7, "authentication failed")                                                           \
    X(TIMEOUT, -8, "timed out")                                                                    \
    X(CONFIG, -9, "invalid configuration")                                                         \
    X(CLOSED, -10, "connection closed")                                                            \
    X(LIMIT, -11, "limit reached")                                                                 \
    X(NOTFOUND, -12, "not found")

enum {
#define TG_ERRNO_ENUM(name, value, desc) TG_E##name = (value),
    TG_ERRNO_MAP(TG_ERRNO_ENUM)
#undef TG_ERRNO_ENUM
};

/* Returned by incremental decoders when the input holds no complete frame yet. */
#define TG_NEED_MORE 0

/* Returns a static description of a TG_E* code ("unknown error" otherwise). */
const char *tg_strerror(int err);

#endif
