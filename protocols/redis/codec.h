/*
 * Redis RESP2/RESP3 codec: requests and replies in, views out, replies and
 * requests written into buffers. No sockets, no allocation beyond the tg_buf
 * a writer is given, no state kept between calls.
 *
 *   client bytes --tg_resp_decode_request--> argv (slices into the input)
 *   backend bytes --tg_resp_reply_size--> size of one whole reply (attributes included)
 *                 --tg_resp_next--> one header or scalar at a time (for rewriting)
 *   values --tg_resp_write_*--> tg_buf        (tg_resp_bulk_header for vectored writes)
 *
 * Decoders follow the three-way contract of proxy/error.h: bytes consumed
 * (> 0), TG_NEED_MORE, or a negative TG_E*. Every length and count is checked
 * against the caller's tg_resp_limits the moment its line is complete (over
 * the limit: TG_ETOOBIG), never after buffering what it announces; malformed
 * numbers (sign where none belongs, leading '+' or zeros, empty, overflow)
 * and missing CRLFs are TG_EPROTO. Decoding is deterministic from left to
 * right, so a prefix of an input gives TG_NEED_MORE or the error the whole
 * input gives.
 */
#ifndef TG_PROTOCOLS_REDIS_CODEC_H
#define TG_PROTOCOLS_REDIS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/buffer.h"
#include "proxy/slice.h"

/* X(name, type byte, description): every RESP2/RESP3 type byte this codec knows. */
#define TG_RESP_TYPE_MAP(X)                                                                        \
    X(SIMPLE, '+', "simple string")                                                                \
    X(ERROR, '-', "simple error")                                                                  \
    X(INTEGER, ':', "integer")                                                                     \
    X(BULK, '$', "bulk string")                                                                    \
    X(ARRAY, '*', "array")                                                                         \
    X(NULL, '_', "null")                                                                           \
    X(BOOL, '#', "boolean")                                                                        \
    X(DOUBLE, ',', "double")                                                                       \
    X(BIGNUM, '(', "big number")                                                                   \
    X(BLOB_ERROR, '!', "bulk error")                                                               \
    X(VERBATIM, '=', "verbatim string")                                                            \
    X(MAP, '%', "map")                                                                             \
    X(SET, '~', "set")                                                                             \
    X(ATTR, '|', "attribute")                                                                      \
    X(PUSH, '>', "push")                                                                           \
    X(CHUNK, ';', "streamed string chunk")                                                         \
    X(END, '.', "end of streamed aggregate")

/* A RESP type: the value is the type byte on the wire (TG_RESP_BULK == '$'). */
typedef enum tg_resp_type {
#define TG_RESP_TYPE_ENUM(name, byte, desc) TG_RESP_##name = (byte),
    TG_RESP_TYPE_MAP(TG_RESP_TYPE_ENUM)
#undef TG_RESP_TYPE_ENUM
} tg_resp_type;

/* Returns a static description of a type ("unknown" for other values). */
const char *tg_resp_type_name(tg_resp_type type);

/* Redis's own bounds: PROTO_INLINE_MAX_SIZE and the proto-max-bulk-len default. */
#define TG_RESP_INLINE_MAX (64 * 1024)
#define TG_RESP_BULK_MAX (512ull * 1024 * 1024)
/* Hard ceiling on reply nesting (tg_resp_reply_size keeps one small frame per level). */
#define TG_RESP_DEPTH_CAP 128

/*
 * Size limits, passed by the caller (one set per direction and auth state).
 * max_inline also bounds every reply line whose end has to be searched for
 * (simple strings, errors, numbers); max_reply_elems counts every element
 * declared in one top-level reply, at all levels (a map or attribute pair
 * counts twice). max_depth is clamped to TG_RESP_DEPTH_CAP.
 */
typedef struct tg_resp_limits {
    uint32_t max_args;        /* arguments of one request (multibulk count or inline words) */
    uint64_t max_bulk;        /* bytes of one bulk string (a streamed string: all its chunks) */
    uint32_t max_inline;      /* bytes of one inline command line or reply line, CRLF excluded */
    uint32_t max_depth;       /* reply aggregate nesting (attributes included) */
    uint64_t max_reply_elems; /* elements in one top-level reply */
} tg_resp_limits;

/*
 * After authentication: Redis's own limits (1M arguments as Redis <= 6.2,
 * 512 MiB bulks, 64 KiB inline lines), nesting far beyond any real reply, and
 * no practical element bound (the session's byte limits bound replies).
 */
#define TG_RESP_LIMITS_DEFAULT                                                                     \
    ((tg_resp_limits){.max_args = 1024 * 1024,                                                     \
                      .max_bulk = TG_RESP_BULK_MAX,                                                \
                      .max_inline = TG_RESP_INLINE_MAX,                                            \
                      .max_depth = TG_RESP_DEPTH_CAP,                                              \
                      .max_reply_elems = INT32_MAX})

/*
 * Before authentication: Redis limits unauthenticated clients to 10
 * arguments of 16 KiB (CVE-2021-32675). We allow 16 arguments (HELLO 3 AUTH
 * user token SETNAME name is 7) of 16 KiB each (a JWT beyond 8 KiB would not
 * pass most HTTP stacks either), so at most 256 KiB is buffered per
 * unauthenticated connection; inline lines get the same 16 KiB.
 */
#define TG_RESP_LIMITS_PREAUTH                                                                     \
    ((tg_resp_limits){.max_args = 16,                                                              \
                      .max_bulk = 16 * 1024,                                                       \
                      .max_inline = 16 * 1024,                                                     \
                      .max_depth = 8,                                                              \
                      .max_reply_elems = 1024})

/* ---- requests ---- */

/*
 * Decodes one request at buf: multibulk (`*N\r\n` then N `$len\r\n<bytes>\r\n`)
 * or, when buf does not start with '*', an inline command line ended by "\n"
 * or "\r\n". On success argv[0..*argc) are slices into buf (borrowed) and the
 * request size is returned; `*0\r\n` and an empty or blank inline line are
 * consumed with *argc == 0 (Redis ignores them).
 *
 * Errors: TG_ETOOBIG when a count exceeds max_args, a bulk length max_bulk
 * (decided once its header line is in, before the body), or an inline line
 * max_inline (decided once max_inline + 2 bytes hold no "\n"); TG_EPROTO for
 * a malformed number (`*-1` included: a negative count is not a request), a
 * missing '$' or CRLF, or an inline line this codec refuses (below);
 * TG_ELIMIT when the whole request is in but has more than argv_cap
 * arguments: *argc is then set to the count so the caller can grow argv and
 * call again (argv is filled up to argv_cap). *argc is written only on
 * success and TG_ELIMIT.
 *
 * Inline lines are split on spaces and tabs. Quoted words ("..." or '...')
 * are accepted when they need no unescaping, so they can stay slices of buf:
 * a backslash inside quotes, a quote inside an unquoted word, a closing
 * quote not followed by a space, tab or the end, or an unbalanced quote is
 * TG_EPROTO. NUL, CR (other than the final one), VT and FF are TG_EPROTO
 * too: Redis's sdssplitargs treats them inconsistently (a NUL ends the line),
 * and real clients send multibulk anyway.
 */
__attribute__((warn_unused_result)) ssize_t
tg_resp_decode_request(const uint8_t *buf, size_t len, const tg_resp_limits *lim, tg_slice *argv,
                       uint32_t argv_cap, uint32_t *argc);

/* ---- replies ---- */

/*
 * One header or scalar as tg_resp_next returns it. `size` is the bytes of
 * this element's own encoding: the whole thing (header, payload, CRLF) for
 * scalars, the header line only for aggregates and `$?`.
 */
typedef struct tg_resp_elem {
    tg_resp_type type;
    bool is_null;  /* `_`, or the RESP2 nulls `$-1` and `*-1` */
    bool streamed; /* `$?` (chunks follow) or `*?` `%?` `~?` `>?` (ended by `.`) */
    /*
     * Aggregates: the count on the wire (map and attribute: pairs, as given);
     * 0 when streamed or null.
     */
    uint64_t count;
    int64_t integer; /* ':' its value; '#' 1 or 0 */
    /*
     * '$' '!' '=' ';': the payload (verbatim: with its "txt:" format prefix);
     * '+' '-' ':' ',' '(' '#': the line between the type byte and CRLF.
     * Borrows the input; empty otherwise.
     */
    tg_slice data;
    size_t size;
} tg_resp_elem;

/*
 * Measures one complete top-level reply at buf: any attributes before it and
 * the value with everything nested in it (streamed strings and aggregates
 * included). Returns its size, TG_NEED_MORE, TG_ETOOBIG (a limit of *lim;
 * nesting beyond max_depth fails at the first header too deep, without
 * recursion) or TG_EPROTO. *type (may be NULL) gets the value's type, the
 * attribute skipped, only on success. One pass, linear in the bytes looked at.
 */
__attribute__((warn_unused_result)) ssize_t
tg_resp_reply_size(const uint8_t *buf, size_t len, const tg_resp_limits *lim, tg_resp_type *type);

/*
 * Decodes exactly one header or scalar at buf into *e (written only on
 * success): returns e->size, TG_NEED_MORE or TG_EPROTO. Also returns the
 * pieces only valid in context (';' chunks, '.' ends); no limits are applied
 * beyond overflow checks, so walk only a reply tg_resp_reply_size accepted.
 */
__attribute__((warn_unused_result)) ssize_t tg_resp_next(const uint8_t *buf, size_t len,
                                                         tg_resp_elem *e);

/*
 * ---- writers: each appends one encoding to out and returns 0, TG_ENOMEM or
 * TG_EINVAL; a failed write leaves out->len as it was ----
 */

/* `$N\r\n` for a payload of payload_len bytes into out; returns its length (at most 23). */
size_t tg_resp_bulk_header(char out[32], size_t payload_len);

/* Aggregate headers: `*n`, `%n` (n pairs), `~n`, `>n`. */
__attribute__((warn_unused_result)) int tg_resp_write_array(tg_buf *out, uint64_t n);
__attribute__((warn_unused_result)) int tg_resp_write_map(tg_buf *out, uint64_t pairs);
__attribute__((warn_unused_result)) int tg_resp_write_set(tg_buf *out, uint64_t n);
__attribute__((warn_unused_result)) int tg_resp_write_push(tg_buf *out, uint64_t n);

/* A bulk string holding s. */
__attribute__((warn_unused_result)) int tg_resp_write_bulk(tg_buf *out, tg_slice s);

/* A bulk string holding prefix then s, copied straight into out (no temporary). */
__attribute__((warn_unused_result)) int tg_resp_write_bulk2(tg_buf *out, tg_slice prefix,
                                                            tg_slice s);

/* `+s\r\n`; TG_EINVAL when s holds CR or LF. */
__attribute__((warn_unused_result)) int tg_resp_write_simple(tg_buf *out, const char *s);

/*
 * `-CODE msg\r\n` (`-CODE\r\n` when msg is empty). CODE must be 1..32 of
 * [A-Z0-9_] (TG_EINVAL otherwise); CR and LF in msg are written as spaces.
 */
__attribute__((warn_unused_result)) int tg_resp_write_error(tg_buf *out, const char *code,
                                                            const char *msg);

/* A tenantgate rejection: `-CODE tenantgate: reason\r\n` (as tg_resp_write_error). */
__attribute__((warn_unused_result)) int tg_resp_write_reject(tg_buf *out, const char *code,
                                                             const char *reason);

/* `:v\r\n`. */
__attribute__((warn_unused_result)) int tg_resp_write_integer(tg_buf *out, int64_t v);

/* A null string for protocol version protover: 2 `$-1\r\n`, 3 `_\r\n` (else TG_EINVAL). */
__attribute__((warn_unused_result)) int tg_resp_write_null(tg_buf *out, int protover);

/* A null array (BLPOP timing out): 2 `*-1\r\n`, 3 `_\r\n` (else TG_EINVAL). */
__attribute__((warn_unused_result)) int tg_resp_write_null_array(tg_buf *out, int protover);

/* A multibulk request of argc arguments (what tg_resp_decode_request reads back). */
__attribute__((warn_unused_result)) int tg_resp_write_request(tg_buf *out, const tg_slice *argv,
                                                              uint32_t argc);

#endif
