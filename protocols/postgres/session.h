/*
 * protocol: postgres -- PostgreSQL v3 with the tenant set for row-level
 * security and every statement judged by the SQL guard. See session.c.
 */
#ifndef TG_PROTOCOLS_POSTGRES_SESSION_H
#define TG_PROTOCOLS_POSTGRES_SESSION_H

#include "proxy/protocol.h"

extern const tg_protocol_ops tg_pg_protocol;

#endif
