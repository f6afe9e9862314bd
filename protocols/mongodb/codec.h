/*
 * MongoDB wire protocol codec: frames in, views out, messages built into
 * buffers. No sockets, no allocation beyond the tg_buf a builder is given,
 * no state kept between calls.
 *
 *   bytes --tg_mongo_decode_header--> header (refuse an opcode before its body is in)
 *   bytes --tg_mongo_decode--> frame {header, bytes, body}
 *            --tg_mongo_parse_msg-->   OP_MSG view   (flags, body, kind 1 sequences)
 *            --tg_mongo_parse_query--> OP_QUERY view (legacy hello/isMaster handshake only)
 *            --tg_mongo_parse_reply--> OP_REPLY view (tests, and backends that answer OP_QUERY)
 *   bson_t + sequences --tg_mongo_build_msg--> tg_buf     (optionally with a CRC-32C)
 *   bson_t --tg_mongo_build_reply--> tg_buf               (OP_REPLY, one document)
 *   code + reason --tg_mongo_build_error_msg / _reply--> tg_buf ({ok: 0, errmsg, code, codeName})
 *
 * Message layouts (every integer little-endian):
 *
 *   header    int32 messageLength (header included) | int32 requestID | int32 responseTo
 *             | int32 opCode                                             (16 bytes)
 *   OP_MSG    header | uint32 flagBits | section+ | [uint32 CRC-32C, when flagBits bit 0]
 *               section kind 0: byte 0 | document                        (exactly one)
 *               section kind 1: byte 1 | int32 size (itself included) | cstring identifier
 *                               | document*                              (until size is used)
 *   OP_QUERY  header | int32 flags | cstring fullCollectionName | int32 numberToSkip
 *             | int32 numberToReturn | document query | [document returnFieldsSelector]
 *   OP_REPLY  header | int32 responseFlags | int64 cursorID | int32 startingFrom
 *             | int32 numberReturned | document*                         (numberReturned of them)
 *   document  int32 size (itself included) | element* | 0x00             (BSON)
 *
 * Ownership: every view (tg_mongo_frame, tg_mongo_msg, tg_mongo_query,
 * tg_mongo_reply, tg_mongo_seq, each tg_slice in them) borrows the input
 * buffer handed to tg_mongo_decode: it is valid while that buffer is, and
 * nothing in it is freed. tg_mongo_doc() opens a borrowed document as a
 * static bson_t that points into the same bytes (bson_destroy on it is not
 * needed; it must not outlive the buffer). Builders append to a tg_buf the
 * caller owns and read their inputs only during the call.
 *
 * Decoders follow the three-way contract of proxy/error.h: bytes consumed
 * (> 0), TG_NEED_MORE, or a negative TG_E*. messageLength is judged the
 * moment its four bytes are in -- below 16 or negative is TG_EPROTO, above
 * the caller's maximum TG_ETOOBIG -- never after buffering what it announces.
 * The parse_* views accept a message only when every byte is accounted for:
 * every document is framed exactly (its int32 size matches the bytes it
 * takes), nested no deeper than TG_MONGO_MAX_DEPTH, its text checked, and
 * validated by libbson (bson_validate with the caller's flags) before anyone
 * looks inside.
 */
#ifndef TG_PROTOCOLS_MONGODB_CODEC_H
#define TG_PROTOCOLS_MONGODB_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <bson/bson.h>

#include "proxy/buffer.h"
#include "proxy/slice.h"

/* X(name, value): every opcode MongoDB has defined (the names of its wire protocol docs). */
#define TG_MONGO_OPCODE_MAP(X)                                                                     \
    X(OP_REPLY, 1)                                                                                 \
    X(OP_UPDATE, 2001)                                                                             \
    X(OP_INSERT, 2002)                                                                             \
    X(OP_RESERVED, 2003)                                                                           \
    X(OP_QUERY, 2004)                                                                              \
    X(OP_GET_MORE, 2005)                                                                           \
    X(OP_DELETE, 2006)                                                                             \
    X(OP_KILL_CURSORS, 2007)                                                                       \
    X(OP_COMPRESSED, 2012)                                                                         \
    X(OP_MSG, 2013)

enum {
#define TG_MONGO_OPCODE_ENUM(name, value) name = (value),
    TG_MONGO_OPCODE_MAP(TG_MONGO_OPCODE_ENUM)
#undef TG_MONGO_OPCODE_ENUM
};

/* Returns "OP_MSG" etc., or "unknown" for a value not in the map. */
const char *tg_mongo_opcode_name(int32_t op_code);

#define TG_MONGO_HEADER_LEN 16

/* MongoDB's maxMessageSizeBytes default; the session uses the backend's hello value. */
#define TG_MONGO_MAX_MESSAGE_DEFAULT 48000000u
/*
 * Before authentication (SPEC §5): hello with client metadata (drivers cap
 * it at 512 bytes) and a speculative saslStart holding a JWT (8 KiB by
 * default) fit many times over; nothing else is answered then.
 */
#define TG_MONGO_MAX_MESSAGE_PREAUTH (64u * 1024)
/* Nesting of documents and arrays below a top-level one (MongoDB's maxBSONDepth default). */
#define TG_MONGO_MAX_DEPTH 200
/* Kind 1 sections in one OP_MSG (drivers send at most two: bulkWrite's ops and nsInfo). */
#define TG_MONGO_MAX_SEQUENCES 8

/* OP_MSG flagBits. Bits 0-15 are "required": a receiver must refuse ones it does not know. */
#define TG_MONGO_MSG_CHECKSUM_PRESENT (1u << 0)
#define TG_MONGO_MSG_MORE_TO_COME (1u << 1)
#define TG_MONGO_MSG_EXHAUST_ALLOWED (1u << 16)
#define TG_MONGO_MSG_REQUIRED_BITS 0xffffu
#define TG_MONGO_MSG_KNOWN_FLAGS                                                                   \
    (TG_MONGO_MSG_CHECKSUM_PRESENT | TG_MONGO_MSG_MORE_TO_COME | TG_MONGO_MSG_EXHAUST_ALLOWED)

/* OP_QUERY flags bits 1-7 (TailableCursor .. Partial); bit 0 and bits 8-31 are reserved. */
#define TG_MONGO_QUERY_KNOWN_FLAGS 0xfeu

/*
 * bson_validate flags. Requests: keys and text must be valid UTF-8 and
 * strings may not hold a NUL (a policy comparing C strings cannot be fooled
 * by "tenant\0other"); `$` and `.` keys are legal in commands. Replies: the
 * structure only -- stored data may predate tenantgate and is not parsed as
 * commands. The UTF-8 flags are enforced by tg_mongo_check_doc's own walk
 * too, since libbson 1.23's validator only finds NULs in string values.
 */
#define TG_MONGO_VALIDATE_REQUEST BSON_VALIDATE_UTF8
#define TG_MONGO_VALIDATE_REPLY BSON_VALIDATE_NONE

/* ---- framing ---- */

typedef struct tg_mongo_header {
    int32_t message_length; /* whole message, header included (16 .. max) */
    int32_t request_id;
    int32_t response_to;
    int32_t op_code;
} tg_mongo_header;

/* One whole message; both slices borrow the decoded buffer. */
typedef struct tg_mongo_frame {
    tg_mongo_header header;
    tg_slice bytes; /* the whole message: header.message_length bytes */
    tg_slice body;  /* what follows the 16-byte header */
} tg_mongo_frame;

/*
 * Reads the header at buf without consuming anything, so that a session can
 * refuse an opcode before buffering the body. Returns TG_MONGO_HEADER_LEN
 * once 16 bytes are in, TG_NEED_MORE before, TG_EPROTO (messageLength < 16
 * or negative) or TG_ETOOBIG (> max_len), both decided once 4 bytes are in.
 * *out is written only on success.
 */
__attribute__((warn_unused_result)) ssize_t
tg_mongo_decode_header(const uint8_t *buf, size_t len, uint32_t max_len, tg_mongo_header *out);

/*
 * Decodes one message of at most max_len bytes at buf: returns its size
 * (messageLength), TG_NEED_MORE, TG_EPROTO or TG_ETOOBIG (as
 * tg_mongo_decode_header). *out is written only on success and borrows buf.
 * The opcode is not judged here: the parse_* functions refuse other opcodes.
 */
__attribute__((warn_unused_result)) ssize_t tg_mongo_decode(const uint8_t *buf, size_t len,
                                                            uint32_t max_len, tg_mongo_frame *out);

/* Writes a header in wire order into out (for vectored writes of rewritten messages). */
void tg_mongo_write_header(uint8_t out[TG_MONGO_HEADER_LEN], const tg_mongo_header *h);

/* ---- documents ---- */

/*
 * Opens a borrowed document as a static bson_t pointing into its bytes.
 * Returns false when raw is not framed as one document (only possible for
 * slices that did not come from a parse_* view).
 */
static inline bool tg_mongo_doc(tg_slice raw, bson_t *out)
{
    return raw.base != NULL && bson_init_static(out, raw.base, raw.len);
}

/*
 * Checks one document at buf: framed exactly by its int32 size (5 .. len),
 * every element framed inside it, nested no deeper than TG_MONGO_MAX_DEPTH,
 * text valid UTF-8 when flags has BSON_VALIDATE_UTF8 (NULs in strings only
 * with BSON_VALIDATE_UTF8_ALLOW_NULL), then bson_validate(flags).
 * Returns its size, or TG_EPROTO with *reason (may be NULL) set to a static
 * description. libbson's validator recurses once per nesting level, so the
 * depth is bounded first with an iterative walk.
 */
__attribute__((warn_unused_result)) ssize_t tg_mongo_check_doc(const uint8_t *buf, size_t len,
                                                               bson_validate_flags_t flags,
                                                               const char **reason);

/* ---- OP_MSG ---- */

/* A kind 1 section: its identifier and its documents back to back (each borrowed). */
typedef struct tg_mongo_seq {
    tg_slice identifier; /* without its NUL; non-empty, valid UTF-8 */
    tg_slice docs;       /* count documents, each checked, no bytes around them */
    uint32_t count;
} tg_mongo_seq;

/*
 * Iterates the documents of a sequence: *cursor starts as seq.docs. Returns
 * 1 with the next document in *doc, 0 at the end, TG_EPROTO when the bytes
 * are not framed as documents (never for a sequence a parse accepted).
 */
int tg_mongo_seq_next(tg_slice *cursor, tg_slice *doc);

/* A parsed OP_MSG; every slice borrows the frame. */
typedef struct tg_mongo_msg {
    uint32_t flags;    /* flagBits as sent: no unknown required bit; optional ones kept */
    tg_slice body;     /* the kind 0 document */
    uint32_t n_seqs;   /* kind 1 sections, in wire order */
    uint32_t checksum; /* when flags has CHECKSUM_PRESENT: the CRC-32C, already verified */
    tg_mongo_seq seqs[TG_MONGO_MAX_SEQUENCES];
} tg_mongo_msg;

/*
 * Parses an OP_MSG frame. Refused with TG_EPROTO (and *reason, may be NULL,
 * a static description): missing flagBits, an unknown required flag bit
 * (2-15, as MongoDB's IllegalOpMsgFlag), a checksum that is missing or
 * wrong, zero or several kind 0 sections, an unknown section kind, a kind 1
 * size outside the message or below 5, an identifier that is empty, not
 * NUL-terminated inside its section or not UTF-8, two sequences with one
 * identifier or an identifier that is also a body field (MongoDB 40431,
 * 40433), more than TG_MONGO_MAX_SEQUENCES sequences, any document refused
 * by tg_mongo_check_doc(validate), and bytes left over. TG_EINVAL when the
 * frame is not an OP_MSG. *out is written only on success.
 */
__attribute__((warn_unused_result)) int tg_mongo_parse_msg(const tg_mongo_frame *f,
                                                           bson_validate_flags_t validate,
                                                           tg_mongo_msg *out, const char **reason);

/* The command name: the body's first key (borrowed). TG_EPROTO when the body is empty. */
__attribute__((warn_unused_result)) int tg_mongo_msg_command(const tg_mongo_msg *m, tg_slice *name);

/* ---- OP_QUERY (the legacy handshake only) and OP_REPLY ---- */

typedef struct tg_mongo_query {
    int32_t flags;
    tg_slice full_collection_name; /* without its NUL, e.g. "admin.$cmd" */
    int32_t number_to_skip;
    int32_t number_to_return;
    tg_slice query;                  /* the query document */
    tg_slice return_fields_selector; /* {NULL, 0} when absent */
} tg_mongo_query;

/*
 * Parses an OP_QUERY frame (TG_EINVAL for another opcode). TG_EPROTO with
 * *reason for reserved flag bits, a collection name that is empty, not
 * NUL-terminated or not UTF-8, missing integers, a query document missing
 * or refused by tg_mongo_check_doc(validate), or anything after the
 * optional selector. Whether it is a hello is the session's question.
 */
__attribute__((warn_unused_result)) int tg_mongo_parse_query(const tg_mongo_frame *f,
                                                             bson_validate_flags_t validate,
                                                             tg_mongo_query *out,
                                                             const char **reason);

typedef struct tg_mongo_reply {
    int32_t response_flags;
    int64_t cursor_id;
    int32_t starting_from;
    int32_t number_returned;
    tg_slice docs; /* number_returned documents back to back (iterate with tg_mongo_seq_next) */
} tg_mongo_reply;

/*
 * Parses an OP_REPLY frame (TG_EINVAL for another opcode): TG_EPROTO with
 * *reason for missing fields, a negative numberReturned or one that does not
 * match the documents, or a document refused by tg_mongo_check_doc(validate).
 */
__attribute__((warn_unused_result)) int tg_mongo_parse_reply(const tg_mongo_frame *f,
                                                             bson_validate_flags_t validate,
                                                             tg_mongo_reply *out,
                                                             const char **reason);

/*
 * ---- building messages: each appends one message to out and returns 0,
 * TG_ENOMEM or TG_EINVAL; a failed build leaves out->len as it was ----
 */

/*
 * OP_MSG with flagBits `flags`, the body as its kind 0 section, then one
 * kind 1 section per seqs[i] (identifier and docs; count is not read). With
 * TG_MONGO_MSG_CHECKSUM_PRESENT in flags the CRC-32C of the message is
 * appended; without it none is. TG_EINVAL for an unknown required flag bit,
 * more than TG_MONGO_MAX_SEQUENCES sequences, an identifier that is empty,
 * holds a NUL, repeats another or is a body field, docs not framed as
 * documents, or a message above INT32_MAX bytes. What it builds,
 * tg_mongo_parse_msg accepts (for documents within its depth and flags).
 */
__attribute__((warn_unused_result)) int tg_mongo_build_msg(tg_buf *out, int32_t request_id,
                                                           int32_t response_to, uint32_t flags,
                                                           const bson_t *body,
                                                           const tg_mongo_seq *seqs, size_t n_seqs);

/* OP_REPLY holding one document: cursorID 0, startingFrom 0, numberReturned 1. */
__attribute__((warn_unused_result)) int tg_mongo_build_reply(tg_buf *out, int32_t request_id,
                                                             int32_t response_to,
                                                             int32_t response_flags,
                                                             const bson_t *doc);

/* ---- error replies (SPEC §5) ---- */

/* X(name, code, codeName): the MongoDB error codes tenantgate answers with. */
#define TG_MONGO_ERROR_MAP(X)                                                                      \
    X(BAD_VALUE, 2, "BadValue")                                                                    \
    X(UNAUTHORIZED, 13, "Unauthorized")                                                            \
    X(AUTHENTICATION_FAILED, 18, "AuthenticationFailed")                                           \
    X(INVALID_BSON, 22, "InvalidBSON")                                                             \
    X(COMMAND_NOT_FOUND, 59, "CommandNotFound")                                                    \
    X(ILLEGAL_OP_MSG_FLAG, 223, "IllegalOpMsgFlag")                                                \
    X(UNSUPPORTED_OP_QUERY_COMMAND, 352, "UnsupportedOpQueryCommand")                              \
    X(REAUTHENTICATION_REQUIRED, 391, "ReauthenticationRequired")                                  \
    X(INGRESS_REQUEST_RATE_LIMIT_EXCEEDED, 462, "IngressRequestRateLimitExceeded")

enum {
#define TG_MONGO_ERROR_ENUM(name, code, code_name) TG_MONGO_ERR_##name = (code),
    TG_MONGO_ERROR_MAP(TG_MONGO_ERROR_ENUM)
#undef TG_MONGO_ERROR_ENUM
};

/* Returns the codeName of a code in TG_MONGO_ERROR_MAP, or NULL. */
const char *tg_mongo_error_name(int32_t code);

/* Longest reason written into errmsg (bytes after "tenantgate: "); longer ones are cut. */
#define TG_MONGO_REASON_MAX 1024

/*
 * Appends the BSON document {ok: 0.0, errmsg: "tenantgate: <reason>", code,
 * codeName} to out, as MongoDB shapes its errors. The reason is written as
 * valid UTF-8 without NULs: invalid bytes and NULs become '?', and it is cut
 * (at a character boundary) after TG_MONGO_REASON_MAX bytes. TG_EINVAL for a
 * code not in TG_MONGO_ERROR_MAP or a NULL reason.
 */
__attribute__((warn_unused_result)) int tg_mongo_build_error_doc(tg_buf *out, int32_t code,
                                                                 const char *reason);

/* An OP_MSG (flagBits 0) whose body is tg_mongo_build_error_doc(code, reason). */
__attribute__((warn_unused_result)) int tg_mongo_build_error_msg(tg_buf *out, int32_t request_id,
                                                                 int32_t response_to, int32_t code,
                                                                 const char *reason);

/* An OP_REPLY (responseFlags 0, one document) for a refused OP_QUERY, same document. */
__attribute__((warn_unused_result)) int tg_mongo_build_error_reply(tg_buf *out, int32_t request_id,
                                                                   int32_t response_to,
                                                                   int32_t code,
                                                                   const char *reason);

/* A rejection: OP_MSG {ok: 0, errmsg: "tenantgate: <reason>", code: 13, codeName: "Unauthorized"}.
 */
__attribute__((warn_unused_result)) int
tg_mongo_build_reject(tg_buf *out, int32_t request_id, int32_t response_to, const char *reason);

/* A failed authentication: as tg_mongo_build_reject with code 18 AuthenticationFailed. */
__attribute__((warn_unused_result)) int tg_mongo_build_auth_failed(tg_buf *out, int32_t request_id,
                                                                   int32_t response_to,
                                                                   const char *reason);

/* ---- CRC-32C (Castagnoli, as OP_MSG checksums and iSCSI use it) ---- */

/*
 * Returns the CRC-32C of data after `crc`, the CRC of what came before (0 to
 * start): tg_mongo_crc32c(tg_mongo_crc32c(0, a, n), b, m) is the CRC of a
 * then b. Uses SSE4.2's crc32 instruction when the CPU has it, the table
 * otherwise; both give the same values.
 */
uint32_t tg_mongo_crc32c(uint32_t crc, const void *data, size_t len);

/* The portable table-driven implementation (exposed so tests can compare the two). */
uint32_t tg_mongo_crc32c_portable(uint32_t crc, const void *data, size_t len);

#endif
