/*
 * Bolt wire codec: handshake, chunked framing, message shapes and message
 * builders. Frames in, frames out: no sockets, no state between calls, no
 * allocation beyond the tg_buf and tg_ps_doc the caller hands in.
 *
 *   client --60 60 B0 17 + 4 proposals--> tg_bolt_decode_handshake --> tg_bolt_negotiate
 *          <--00 00 minor major (or 00 00 00 00)-- tg_bolt_version_reply
 *          [manifest v1: <--tg_bolt_write_manifest-- , --tg_bolt_decode_manifest_choice-->]
 *
 *   bytes --tg_bolt_decode_frame--> one message: chunks (2-byte size + data) up to 00 00
 *         --tg_bolt_frame_slice / tg_bolt_frame_copy--> contiguous message bytes
 *         --tg_bolt_decode_msg--> tg_ps_doc + tg_bolt_msg (tag, field indices),
 *                                 shape checked for the negotiated version and direction
 *
 *   tg_bolt_begin --tg_ps_put_*--> tg_bolt_end --> chunked message in a tg_buf
 *   tg_bolt_build_* --> RUN / HELLO / LOGON rewrites, SUCCESS / FAILURE / IGNORED /
 *                       a ROUTE SUCCESS routing table
 *
 * Decoders follow the three-way contract of proxy/error.h: bytes consumed
 * (> 0), TG_NEED_MORE, or a negative TG_E*. A frame's size is judged chunk
 * header by chunk header: the message bytes announced so far above the
 * caller's maximum is TG_ETOOBIG at once, before the chunk is buffered.
 * Message checks are fail-closed: an unknown message, a field of the wrong
 * type, a dictionary key this codec does not know in a request, or a value
 * structure not defined for the version is TG_EPROTO.
 */
#ifndef TG_PROTOCOLS_BOLT_CODEC_H
#define TG_PROTOCOLS_BOLT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocols/bolt/packstream.h"
#include "proxy/buffer.h"
#include "proxy/slice.h"

/* ---- versions and handshake ---- */

/* A Bolt version as one number: major in the high byte (TG_BOLT_V(5, 4) == 0x0504). */
#define TG_BOLT_V(major, minor) ((uint16_t)(((unsigned)(major) << 8) | (unsigned)(minor)))
#define TG_BOLT_MAJOR(v) ((uint8_t)((v) >> 8))
#define TG_BOLT_MINOR(v) ((uint8_t)((v)&0xFF))

/* The identification preamble and the handshake size (preamble + four proposals). */
#define TG_BOLT_MAGIC 0x6060B017u
#define TG_BOLT_HANDSHAKE_SIZE 20

/* The manifest v1 proposal 00 00 01 FF, read as a version: "major 255, minor 1". */
#define TG_BOLT_MANIFEST_V1 TG_BOLT_V(255, 1)

/*
 * The versions tenantgate speaks, most preferred first: 5.6, 5.4..5.0 and
 * 4.4. Bolt 5.5 has message shapes here (tg_bolt_check knows it) but is not
 * offered: Neo4j never negotiates 5.5, so a session could not open its
 * backend with the version it agreed with the client.
 */
#define TG_BOLT_SUPPORTED                                                                          \
    {                                                                                              \
        TG_BOLT_V(5, 6), TG_BOLT_V(5, 4), TG_BOLT_V(5, 3), TG_BOLT_V(5, 2), TG_BOLT_V(5, 1),       \
            TG_BOLT_V(5, 0), TG_BOLT_V(4, 4)                                                       \
    }
#define TG_BOLT_N_SUPPORTED 7

/* The client's handshake: its four proposals as sent (reserved, range, minor, major). */
typedef struct tg_bolt_handshake {
    uint32_t proposals[4];
} tg_bolt_handshake;

/*
 * Decodes the 20-byte client handshake. Returns 20, TG_NEED_MORE, or
 * TG_EPROTO as soon as a preamble byte is wrong (an HTTP request, TLS
 * ClientHello or another protocol is refused after at most four bytes).
 */
__attribute__((warn_unused_result)) ssize_t tg_bolt_decode_handshake(const uint8_t *buf, size_t len,
                                                                     tg_bolt_handshake *out);

/* tg_bolt_negotiate flag: answer a manifest v1 proposal with the manifest exchange. */
#define TG_BOLT_NEGOTIATE_MANIFEST 1u

/*
 * Picks the version to answer, walking the proposals in the client's order
 * (its preference): for the first proposal that any of supported[0..n)
 * falls in (same major, minor within [minor - range, minor]), the highest
 * such version. A manifest v1 proposal yields TG_BOLT_MANIFEST_V1 when flags
 * has TG_BOLT_NEGOTIATE_MANIFEST and is skipped otherwise; zero proposals,
 * a non-zero reserved byte and other manifest versions are skipped. Returns
 * 0 when nothing matches (answer 00 00 00 00 and close).
 */
uint16_t tg_bolt_negotiate(const tg_bolt_handshake *hs, const uint16_t *supported, size_t n,
                           unsigned flags);

/* The 4-byte answer for a version: 00 00 minor major (0: 00 00 00 00; manifest: 00 00 01 FF). */
void tg_bolt_version_reply(uint16_t version, uint8_t out[4]);

/* A proposal word for the backend handshake: version and the range of minors below it. */
uint32_t tg_bolt_proposal(uint16_t version, uint8_t range);

/* Appends the 20-byte client handshake with these proposals (0 fills unused ones). */
__attribute__((warn_unused_result)) int tg_bolt_write_handshake(tg_buf *out,
                                                                const uint32_t proposals[4]);

/*
 * Decodes a server's 4-byte answer to our handshake: *version gets the
 * version (0 when refused). Returns 4, TG_NEED_MORE, or TG_EPROTO when the
 * reserved or range bytes are set (an HTTP server answers "HTTP") or the
 * server answers with the manifest (tenantgate never offers it upstream).
 */
__attribute__((warn_unused_result)) ssize_t
tg_bolt_decode_version_reply(const uint8_t *buf, size_t len, uint16_t *version);

/*
 * Manifest v1, server side: appends 00 00 01 FF, a varint count, the
 * supported versions as 4.3-style ranges (consecutive minors of one major
 * folded into one entry) and the capabilities varint.
 */
__attribute__((warn_unused_result)) int
tg_bolt_write_manifest(tg_buf *out, const uint16_t *supported, size_t n, uint64_t capabilities);

/*
 * Manifest v1: decodes the client's choice, a 4-byte version without range
 * then a capabilities varint. Returns its size (5 to 14 bytes),
 * TG_NEED_MORE, or TG_EPROTO when the version is not in supported[0..n),
 * carries a range or reserved bits, the varint is longer than 10 bytes,
 * overflows or is not minimal, or chooses capabilities outside `offered`.
 */
__attribute__((warn_unused_result)) ssize_t
tg_bolt_decode_manifest_choice(const uint8_t *buf, size_t len, const uint16_t *supported, size_t n,
                               uint64_t offered, uint16_t *version, uint64_t *capabilities);

/* ---- chunked framing ---- */

#define TG_BOLT_MAX_CHUNK 65535
/* Message bytes before authentication: HELLO + LOGON with an 8 KiB JWT fit many times. */
#define TG_BOLT_MAX_MSG_PREAUTH (32u * 1024)
/* After authentication (a RUN with large parameters, a RECORD with a large list). */
#define TG_BOLT_MAX_MSG_DEFAULT (64u * 1024 * 1024)

/* One framed message: its chunks and the 00 00 end marker, or a NOOP (a lone 00 00). */
typedef struct tg_bolt_frame {
    size_t size;     /* framed bytes: chunk headers, chunk data, end marker */
    size_t len;      /* message bytes (sum of the chunk sizes); 0 for a NOOP */
    uint32_t chunks; /* non-empty chunks; 0 for a NOOP */
} tg_bolt_frame;

/*
 * Where tg_bolt_decode_frame stopped in an incomplete frame, so a call after
 * more bytes arrived resumes there instead of walking every chunk header
 * again. Zero it before the first call for each frame (when the previous
 * frame was consumed); buf must then start at the same frame, its bytes
 * unchanged and possibly more of them.
 */
typedef struct tg_bolt_scan {
    size_t pos;      /* offset of the next chunk header */
    size_t len;      /* message bytes in the chunks before it */
    uint32_t chunks; /* chunks before it */
} tg_bolt_scan;

/*
 * Decodes the frame at buf: returns its size, TG_NEED_MORE, or TG_ETOOBIG
 * when the chunks announced so far hold more than max_msg message bytes
 * (judged at each chunk header, before its data is in). A zero chunk at the
 * start of buf is a NOOP: size 2, len 0. *out is written only on success;
 * scan may be NULL (the walk then starts over each call). A frame of
 * 1-byte chunks is at most 3 * max_msg + 2 bytes: what a reader buffers for
 * one message is bounded by that.
 */
__attribute__((warn_unused_result)) ssize_t tg_bolt_decode_frame(const uint8_t *buf, size_t len,
                                                                 size_t max_msg, tg_bolt_scan *scan,
                                                                 tg_bolt_frame *out);

/*
 * The message bytes of a frame held in one chunk, as a slice of buf (no
 * copy). Returns false for a NOOP or a message in several chunks.
 */
bool tg_bolt_frame_slice(const uint8_t *buf, const tg_bolt_frame *f, tg_slice *out);

/* Copies the message bytes of a decoded frame at buf into dst (f->len bytes). */
void tg_bolt_frame_copy(const uint8_t *buf, const tg_bolt_frame *f, uint8_t *dst);

/*
 * Appends msg[0..len) as chunks of at most max_chunk bytes (0 or above
 * 65,535: 65,535) and the end marker. len 0 is TG_EINVAL (that is a NOOP,
 * see tg_bolt_write_noop).
 */
__attribute__((warn_unused_result)) int tg_bolt_write_chunked(tg_buf *out, const void *msg,
                                                              size_t len, size_t max_chunk);

/* Appends a NOOP (00 00). */
__attribute__((warn_unused_result)) int tg_bolt_write_noop(tg_buf *out);

/* ---- messages ---- */

/* X(name, signature, sender): the messages of Bolt 4.4 and 5.0-5.6 this codec knows. */
#define TG_BOLT_MSG_MAP(X)                                                                         \
    X(HELLO, 0x01, CLIENT)                                                                         \
    X(GOODBYE, 0x02, CLIENT)                                                                       \
    X(RESET, 0x0F, CLIENT)                                                                         \
    X(RUN, 0x10, CLIENT)                                                                           \
    X(BEGIN, 0x11, CLIENT)                                                                         \
    X(COMMIT, 0x12, CLIENT)                                                                        \
    X(ROLLBACK, 0x13, CLIENT)                                                                      \
    X(DISCARD, 0x2F, CLIENT)                                                                       \
    X(PULL, 0x3F, CLIENT)                                                                          \
    X(TELEMETRY, 0x54, CLIENT)                                                                     \
    X(ROUTE, 0x66, CLIENT)                                                                         \
    X(LOGON, 0x6A, CLIENT)                                                                         \
    X(LOGOFF, 0x6B, CLIENT)                                                                        \
    X(SUCCESS, 0x70, SERVER)                                                                       \
    X(RECORD, 0x71, SERVER)                                                                        \
    X(IGNORED, 0x7E, SERVER)                                                                       \
    X(FAILURE, 0x7F, SERVER)

/* Message signatures: TG_BOLT_RUN == 0x10. */
enum {
#define TG_BOLT_MSG_ENUM(name, sig, from) TG_BOLT_##name = (sig),
    TG_BOLT_MSG_MAP(TG_BOLT_MSG_ENUM)
#undef TG_BOLT_MSG_ENUM
};

/* Returns the message's name ("HELLO") or "unknown". */
const char *tg_bolt_msg_name(uint8_t signature);

/* X(name, tag): value structures (Bolt structure semantics; F and f are 4.4's legacy forms). */
#define TG_BOLT_STRUCT_MAP(X)                                                                      \
    X(NODE, 'N')                                                                                   \
    X(RELATIONSHIP, 'R')                                                                           \
    X(UNBOUND_RELATIONSHIP, 'r')                                                                   \
    X(PATH, 'P')                                                                                   \
    X(DATE, 'D')                                                                                   \
    X(TIME, 'T')                                                                                   \
    X(LOCAL_TIME, 't')                                                                             \
    X(DATE_TIME, 'I')                                                                              \
    X(DATE_TIME_ZONE_ID, 'i')                                                                      \
    X(LEGACY_DATE_TIME, 'F')                                                                       \
    X(LEGACY_DATE_TIME_ZONE_ID, 'f')                                                               \
    X(LOCAL_DATE_TIME, 'd')                                                                        \
    X(DURATION, 'E')                                                                               \
    X(POINT_2D, 'X')                                                                               \
    X(POINT_3D, 'Y')

enum {
#define TG_BOLT_STRUCT_ENUM(name, tag) TG_BOLT_S_##name = (tag),
    TG_BOLT_STRUCT_MAP(TG_BOLT_STRUCT_ENUM)
#undef TG_BOLT_STRUCT_ENUM
};

/* Who sent a message. */
typedef enum tg_bolt_dir {
    TG_BOLT_FROM_CLIENT,
    TG_BOLT_FROM_SERVER,
} tg_bolt_dir;

/* tg_bolt_check flag: Bolt 4.4 with the "utc" patch acknowledged (DateTime I/i, not F/f). */
#define TG_BOLT_PATCH_UTC 1u

/* A checked message: its signature and where its fields are in the document. */
#define TG_BOLT_MAX_MSG_FIELDS 3
typedef struct tg_bolt_msg {
    uint8_t signature;
    uint32_t n_fields;
    uint32_t field[TG_BOLT_MAX_MSG_FIELDS]; /* value indices in the tg_ps_doc */
} tg_bolt_msg;

/*
 * Checks that the document d (a whole message) has the shape Bolt `version`
 * defines for a message from `dir`, and fills *out (written only on
 * success). Checked:
 *   - the root is a structure whose signature is a message of that sender
 *     and version (LOGON/LOGOFF from 5.1, TELEMETRY from 5.4), with its
 *     field count and field types (RUN: String, Dictionary, Dictionary ...);
 *   - request dictionaries (HELLO, LOGON, RUN/BEGIN extra, PULL/DISCARD,
 *     ROUTE extra) hold only the keys that version defines, each of its
 *     type (HELLO carries auth up to 5.0 only; patch_bolt in 4.4 only;
 *     PULL/DISCARD need n); SUCCESS metadata keys the session reads have
 *     their types, FAILURE has a string code and message;
 *   - every nested structure is a value structure of that version with its
 *     field count and types (Node 3 fields in 4.4, 4 in 5.x; DateTime I/i in
 *     5.x and patched 4.4, F/f in 4.4 otherwise; Path lists of Node,
 *     UnboundRelationship and in-range indices); requests may carry only
 *     temporal and spatial structures, never graph entities.
 * Returns 0 or TG_EPROTO with *why (may be NULL) set to a static reason
 * that names no payload.
 */
__attribute__((warn_unused_result)) int tg_bolt_check(const tg_ps_doc *d, uint16_t version,
                                                      unsigned flags, tg_bolt_dir dir,
                                                      tg_bolt_msg *out, const char **why);

/*
 * tg_ps_decode then tg_bolt_check: the message bytes msg[0..len) (borrowed
 * by d) into d and *out. Returns 0, TG_EPROTO, TG_ETOOBIG or TG_ENOMEM; *why
 * is set for every failure.
 */
__attribute__((warn_unused_result)) int tg_bolt_decode_msg(tg_ps_doc *d, const uint8_t *msg,
                                                           size_t len, const tg_ps_limits *lim,
                                                           uint16_t version, unsigned flags,
                                                           tg_bolt_dir dir, tg_bolt_msg *out,
                                                           const char **why);

/*
 * ---- building messages: each appends one chunked message to out and
 * returns 0, TG_ENOMEM or TG_EINVAL; a failed build leaves out->len as it was ----
 */

/* A message builder: tg_bolt_begin, then the fields with tg_ps_put_* on &b->ps, then tg_bolt_end.
 */
typedef struct tg_bolt_builder {
    tg_ps_builder ps;
    size_t start;
} tg_bolt_builder;

/* Starts a message with this signature and field count (borrows out until tg_bolt_end). */
void tg_bolt_begin(tg_bolt_builder *b, tg_buf *out, uint8_t signature, uint32_t n_fields);

/* Checks the fields are complete, then chunks the message in place and adds the end marker. */
__attribute__((warn_unused_result)) int tg_bolt_end(tg_bolt_builder *b);

/* A message without fields: GOODBYE, RESET, COMMIT, ROLLBACK, LOGOFF, IGNORED. */
__attribute__((warn_unused_result)) int tg_bolt_build_empty(tg_buf *out, uint8_t signature);

/* SUCCESS {} */
__attribute__((warn_unused_result)) int tg_bolt_build_success(tg_buf *out);

/* FAILURE {code: code, message: message} (both UTF-8). */
__attribute__((warn_unused_result)) int tg_bolt_build_failure(tg_buf *out, const char *code,
                                                              const char *message);

/*
 * The answer to ROUTE (4.4+): SUCCESS {rt: {ttl, db, servers: [{addresses:
 * [address], role: "WRITE"}, {... "READ"}, {... "ROUTE"}]}}, every role
 * served by the one address (db omitted when NULL).
 */
__attribute__((warn_unused_result)) int
tg_bolt_build_route_success(tg_buf *out, int64_t ttl_s, const char *db, const char *address);

/*
 * RUN rebuilt from a checked RUN message m of d: the query replaced by
 * `query`, the parameters and extra dictionaries copied with edits applied
 * (tg_ps_put_map_edit; n_* may be 0).
 */
__attribute__((warn_unused_result)) int
tg_bolt_build_run(tg_buf *out, const tg_ps_doc *d, const tg_bolt_msg *m, tg_slice query,
                  const tg_ps_edit *param_edits, size_t n_param_edits,
                  const tg_ps_edit *extra_edits, size_t n_extra_edits);

/*
 * A one-dictionary request (BEGIN, PULL, DISCARD, HELLO, LOGON) rebuilt from
 * a checked message m of d with edits applied to its dictionary.
 */
__attribute__((warn_unused_result)) int tg_bolt_build_edited(tg_buf *out, const tg_ps_doc *d,
                                                             const tg_bolt_msg *m,
                                                             const tg_ps_edit *edits,
                                                             size_t n_edits);

/*
 * HELLO (4.4 and 5.0, where it carries the credentials) or LOGON rebuilt
 * from a checked message m of d with its credentials replaced: realm and
 * parameters dropped, scheme "basic", principal user, credentials password
 * set; the other keys (user_agent, routing, bolt_agent, ...) are kept.
 */
__attribute__((warn_unused_result)) int tg_bolt_build_auth(tg_buf *out, const tg_ps_doc *d,
                                                           const tg_bolt_msg *m, const char *user,
                                                           const char *password);

/* LOGON {scheme: "basic", principal: user, credentials: password} (5.1+). */
__attribute__((warn_unused_result)) int tg_bolt_build_logon(tg_buf *out, const char *user,
                                                            const char *password);

#endif
