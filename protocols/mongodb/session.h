/*
 * protocol: mongodb -- OP_MSG with every command scoped to the client's
 * tenant (policy/mongo_scope), tenantgate presented to drivers as a
 * standalone server, JWT authentication with SASL PLAIN or MONGODB-OIDC.
 * See session.c.
 */
#ifndef TG_PROTOCOLS_MONGODB_SESSION_H
#define TG_PROTOCOLS_MONGODB_SESSION_H

#include "proxy/protocol.h"

extern const tg_protocol_ops tg_mongo_protocol;

#endif
