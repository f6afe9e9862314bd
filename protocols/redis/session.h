/*
 * protocol: redis -- RESP2/RESP3 with every key of the tenant prefixed by
 * key_prefix, prefixes stripped from replies and server-wide commands
 * refused. See session.c.
 */
#ifndef TG_PROTOCOLS_REDIS_SESSION_H
#define TG_PROTOCOLS_REDIS_SESSION_H

#include "proxy/protocol.h"

extern const tg_protocol_ops tg_redis_protocol;

#endif
