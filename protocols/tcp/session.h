/*
 * protocol: tcp -- a plain byte relay with no isolation at all.
 *
 * It exists so that the runtime (accept, connect, backpressure, half-close,
 * TLS, timeouts) can be tested and benchmarked on its own. The config
 * refuses it unless the listener says `unsafe_passthrough: true`.
 */
#ifndef TG_PROTOCOLS_TCP_SESSION_H
#define TG_PROTOCOLS_TCP_SESSION_H

#include "proxy/protocol.h"

extern const tg_protocol_ops tg_tcp_protocol;

#endif
