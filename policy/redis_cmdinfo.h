/*
 * A Redis command table from a server's own `COMMAND` (or `COMMAND INFO`) reply.
 *
 *   reply bytes (RESP2 or RESP3, one whole reply) --tg_resp_reply_size (bounded)-->
 *   walk: [name, arity, flags, first, last, step, acl, tips, key specs, subcommands]
 *         per command --builder (redis_policy.h)--> table --seal_vetted(built-in)--> table
 *
 * Pure: bytes in, a new sealed table out; no I/O. The reply is untrusted input
 * (a backend's): every count and length is bounded before it is used, and
 * anything malformed fails the whole parse, so the caller keeps the built-in
 * table. What is well-formed but unknown to tenantgate (a flag, an ACL category,
 * a key-spec field or type it has never seen) costs only that command, which is
 * then refused (TG_REDIS_CMD_UNVETTED).
 */
#ifndef TG_POLICY_REDIS_CMDINFO_H
#define TG_POLICY_REDIS_CMDINFO_H

#include <stddef.h>
#include <stdint.h>

#include "policy/redis_policy.h"

/* Bounds on what a COMMAND reply may hold (Redis 7.0 has 240 commands, 366 with subcommands). */
#define TG_REDIS_CMDINFO_MAX_COMMANDS 4096 /* commands and subcommands */
#define TG_REDIS_CMDINFO_MAX_SPECS 32      /* key specs of one command (Redis 7.0: at most 4) */
#define TG_REDIS_CMDINFO_MAX_BYTES (8u << 20)

/* What a parse found, for the log line and /metrics. */
typedef struct tg_redis_cmdinfo_stats {
    uint32_t commands;  /* rows of the table, subcommands included */
    uint32_t keyspecs;  /* key specs read */
    uint32_t unvetted;  /* commands refused because tenantgate does not know them */
    uint32_t differing; /* commands whose key specs differ from the vetted table's */
} tg_redis_cmdinfo_stats;

/*
 * Builds a table from the complete reply reply[0..len) to `COMMAND` or `COMMAND
 * INFO` (borrowed during the call), sealed with tg_redis_table_seal_vetted
 * against `vetted` (the built-in table; may be NULL). Returns 0 with a new
 * table in *out (free with tg_redis_table_free) and counts in *stats (may be
 * NULL), or:
 *   TG_ENOTFOUND  the reply carries no key specs: an error reply (`-ERR unknown
 *                 command`, `-NOPERM`), an empty list, or entries of fewer than
 *                 10 elements (Redis < 7);
 *   TG_EPROTO     malformed (wrong types, a subcommand not named "container|sub",
 *                 duplicates, trailing bytes, an incomplete reply...);
 *   TG_ETOOBIG    over the bounds above or the RESP limits;
 *   TG_ENOMEM.
 * On error *out is NULL and why (whylen bytes, may be 0) gets a short reason
 * naming positions, never bytes of the reply.
 */
__attribute__((warn_unused_result)) int tg_redis_cmdinfo_parse(const uint8_t *reply, size_t len,
                                                               const tg_redis_table *vetted,
                                                               tg_redis_table **out,
                                                               tg_redis_cmdinfo_stats *stats,
                                                               char *why, size_t whylen);

#endif
