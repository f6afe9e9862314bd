/*
 * protocol: bolt -- Bolt 4.4 / 5.0-5.6 with every Cypher statement scoped to
 * the tenant by the Cypher rewriter (property, label or database isolation),
 * ROUTE answered by tenantgate itself, and `db` / `imp_user` held to the
 * tenant. See session.c.
 */
#ifndef TG_PROTOCOLS_BOLT_SESSION_H
#define TG_PROTOCOLS_BOLT_SESSION_H

#include "proxy/protocol.h"

extern const tg_protocol_ops tg_bolt_protocol;

#endif
