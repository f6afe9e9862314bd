/*
 * PostgreSQL v3 frontend/backend protocol codec: frames in, views out,
 * messages built into buffers. No sockets, no allocation beyond the tg_buf
 * a builder is given.
 *
 *   bytes --tg_pg_decode_startup--> StartupMessage / SSLRequest / GSSENCRequest / CancelRequest
 *   bytes --tg_pg_decode--> {type, body} --tg_pg_parse_*--> views (slices into the input)
 *   views --tg_pg_build_*--> tg_buf (appended, length patched)
 *
 * Decoders follow the three-way contract of proxy/error.h: bytes consumed
 * (> 0), TG_NEED_MORE, or a negative TG_E*. A length field is checked as soon
 * as its bytes are in (below 4: TG_EPROTO; above the caller's maximum:
 * TG_ETOOBIG), never after buffering what it announces.
 */
#ifndef TG_PROTOCOLS_POSTGRES_CODEC_H
#define TG_PROTOCOLS_POSTGRES_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/buffer.h"
#include "proxy/slice.h"

/* Frontend message types (PostgreSQL's protocol.h names). */
#define PqMsg_Bind 'B'
#define PqMsg_Close 'C'
#define PqMsg_Describe 'D'
#define PqMsg_Execute 'E'
#define PqMsg_FunctionCall 'F'
#define PqMsg_Flush 'H'
#define PqMsg_Parse 'P'
#define PqMsg_Query 'Q'
#define PqMsg_Sync 'S'
#define PqMsg_Terminate 'X'
#define PqMsg_CopyFail 'f'
#define PqMsg_PasswordMessage 'p' /* also GSSResponse, SASLInitialResponse, SASLResponse */

/* Both directions. */
#define PqMsg_CopyData 'd'
#define PqMsg_CopyDone 'c'

/* Backend message types. */
#define PqMsg_ParseComplete '1'
#define PqMsg_BindComplete '2'
#define PqMsg_CloseComplete '3'
#define PqMsg_NotificationResponse 'A'
#define PqMsg_CommandComplete 'C'
#define PqMsg_DataRow 'D'
#define PqMsg_ErrorResponse 'E'
#define PqMsg_CopyInResponse 'G'
#define PqMsg_CopyOutResponse 'H'
#define PqMsg_EmptyQueryResponse 'I'
#define PqMsg_BackendKeyData 'K'
#define PqMsg_NoticeResponse 'N'
#define PqMsg_AuthenticationRequest 'R'
#define PqMsg_ParameterStatus 'S'
#define PqMsg_RowDescription 'T'
#define PqMsg_FunctionCallResponse 'V'
#define PqMsg_CopyBothResponse 'W'
#define PqMsg_ReadyForQuery 'Z'
#define PqMsg_NoData 'n'
#define PqMsg_PortalSuspended 's'
#define PqMsg_ParameterDescription 't'
#define PqMsg_NegotiateProtocolVersion 'v'

/* AuthenticationRequest codes. */
#define TG_PG_AUTH_OK 0
#define TG_PG_AUTH_CLEARTEXT 3
#define TG_PG_AUTH_MD5 5
#define TG_PG_AUTH_SASL 10
#define TG_PG_AUTH_SASL_CONTINUE 11
#define TG_PG_AUTH_SASL_FINAL 12

/* Untyped first packets: their int32 code after the length. */
#define TG_PG_PROTOCOL(major, minor) (((major) << 16) | (minor))
#define TG_PG_CANCEL_REQUEST_CODE 80877102
#define TG_PG_SSL_REQUEST_CODE 80877103
#define TG_PG_GSSENC_REQUEST_CODE 80877104

/* PostgreSQL's own bound on a startup packet (MAX_STARTUP_PACKET_LENGTH). */
#define TG_PG_MAX_STARTUP 10000

/* A typed message: type byte, then int32 length (counting itself), then the body. */
typedef struct tg_pg_msg {
    uint8_t type;
    tg_slice body; /* after the length field */
    size_t size;   /* whole frame: 1 + length */
} tg_pg_msg;

/* An untyped first packet. */
typedef struct tg_pg_startup {
    uint32_t code;   /* protocol version (major << 16 | minor) or a request code */
    tg_slice params; /* StartupMessage: the name/value pairs, up to and excluding the final NUL */
    uint32_t cancel_pid; /* CancelRequest */
    uint32_t cancel_key;
    size_t size; /* whole packet */
} tg_pg_startup;

/*
 * Decodes one typed message of at most max_len bytes (length field + body).
 * Returns the frame size, TG_NEED_MORE, TG_EPROTO (length < 4 or > INT32_MAX)
 * or TG_ETOOBIG, deciding as soon as the 5 header bytes are in; *out is
 * written only on success (body borrows buf).
 */
ssize_t tg_pg_decode(const uint8_t *buf, size_t len, uint32_t max_len, tg_pg_msg *out);

/*
 * Decodes the untyped first packet of a connection (max_len at most
 * TG_PG_MAX_STARTUP). SSLRequest and GSSENCRequest must be exactly 8 bytes,
 * CancelRequest exactly 16 (refused once the code is in); a 3.x
 * StartupMessage must hold well-formed pairs and end with an empty name.
 * Other versions are returned with their code and raw params (everything
 * after the code) for the session to refuse. Returns the packet size,
 * TG_NEED_MORE, TG_EPROTO or TG_ETOOBIG; *out is written only on success.
 */
ssize_t tg_pg_decode_startup(const uint8_t *buf, size_t len, uint32_t max_len, tg_pg_startup *out);

/*
 * Iterates StartupMessage parameters: *cursor starts as startup.params.
 * Returns 1 with the next name and value, 0 at the end, TG_EPROTO when a
 * string is not NUL-terminated or a name is empty.
 */
int tg_pg_startup_next(tg_slice *cursor, tg_slice *name, tg_slice *value);

/* True for message types a frontend may send after startup / a backend may send. */
bool tg_pg_frontend_type_known(uint8_t type);
bool tg_pg_backend_type_known(uint8_t type);

/* ---- reading message bodies ---- */

/* A bounded reader; any read past the end sets `failed` and returns zeroes / empty slices. */
typedef struct tg_pg_reader {
    const uint8_t *p;
    const uint8_t *end;
    bool failed;
} tg_pg_reader;

static inline tg_pg_reader tg_pg_reader_init(tg_slice body)
{
    return (tg_pg_reader){body.base, body.base + body.len, false};
}
uint8_t tg_pg_get_u8(tg_pg_reader *r);
int16_t tg_pg_get_i16(tg_pg_reader *r);
int32_t tg_pg_get_i32(tg_pg_reader *r);
/* A NUL-terminated string (the slice excludes the NUL). */
tg_slice tg_pg_get_cstr(tg_pg_reader *r);
/* n raw bytes (n < 0 or past the end fails). */
tg_slice tg_pg_get_bytes(tg_pg_reader *r, int64_t n);
/* True when every byte was read and nothing failed. */
static inline bool tg_pg_reader_done(const tg_pg_reader *r)
{
    return !r->failed && r->p == r->end;
}

/*
 * Parsed views: each checks the whole body against the message's format and
 * returns 0 or TG_EPROTO (TG_EINVAL when m->type is not the view's type). The
 * out values are slices into m->body, written only on success.
 */

/* Parse: statement name, query text, parameter type OIDs (raw: int16 count + count int32). */
typedef struct tg_pg_parse {
    tg_slice name;
    tg_slice query;
    tg_slice param_types;
} tg_pg_parse;
int tg_pg_parse_parse(const tg_pg_msg *m, tg_pg_parse *out);

/* Query: the SQL text (one NUL terminator, nothing after it). */
int tg_pg_parse_query(const tg_pg_msg *m, tg_slice *sql);

/* ErrorResponse / NoticeResponse fields ('S', 'V', 'C', 'M', ...); absent fields are empty. */
typedef struct tg_pg_error_fields {
    tg_slice severity;       /* 'S' (localized) */
    tg_slice severity_plain; /* 'V' */
    tg_slice sqlstate;       /* 'C' */
    tg_slice message;        /* 'M' */
} tg_pg_error_fields;
int tg_pg_parse_error(const tg_pg_msg *m, tg_pg_error_fields *out);

/* NotificationResponse. */
typedef struct tg_pg_notification {
    int32_t pid;
    tg_slice channel;
    tg_slice payload;
} tg_pg_notification;
int tg_pg_parse_notification(const tg_pg_msg *m, tg_pg_notification *out);

/* AuthenticationRequest: code and the data after it (salt, SASL mechanisms, SASL data). */
int tg_pg_parse_auth(const tg_pg_msg *m, int32_t *code, tg_slice *data);

/* ReadyForQuery: transaction status 'I', 'T' or 'E'. */
int tg_pg_parse_ready(const tg_pg_msg *m, char *status);

/* BackendKeyData (protocol 3.0: two int32). */
int tg_pg_parse_backend_key(const tg_pg_msg *m, int32_t *pid, int32_t *key);

/* ParameterStatus. */
int tg_pg_parse_parameter_status(const tg_pg_msg *m, tg_slice *name, tg_slice *value);

/* PasswordMessage as a cleartext password (one NUL-terminated string, nothing after). */
int tg_pg_parse_password(const tg_pg_msg *m, tg_slice *password);

/*
 * ---- building messages (each appends one message to out; 0 or TG_ENOMEM/TG_EINVAL) ----
 * A failed build removes what it appended: out->len is as before the call.
 */

/* A typed-message builder with a sticky failure flag; end() patches the length. */
typedef struct tg_pg_builder {
    tg_buf *out;
    size_t start;
    bool failed;
    int err; /* the first failure: TG_ENOMEM or TG_EINVAL (0 while !failed) */
} tg_pg_builder;

void tg_pg_begin(tg_pg_builder *b, tg_buf *out, uint8_t type);
void tg_pg_put_u8(tg_pg_builder *b, uint8_t v);
void tg_pg_put_i16(tg_pg_builder *b, int16_t v);
void tg_pg_put_i32(tg_pg_builder *b, int32_t v);
void tg_pg_put_bytes(tg_pg_builder *b, const void *p, size_t n);
/* A string and its NUL; fails when s holds a NUL. */
void tg_pg_put_cstr(tg_pg_builder *b, const char *s, size_t n);
__attribute__((warn_unused_result)) int tg_pg_end(tg_pg_builder *b);

/* ErrorResponse (or NoticeResponse when type is 'N') with S, V, C and M fields. */
__attribute__((warn_unused_result)) int tg_pg_build_error(tg_buf *out, uint8_t type,
                                                          const char *severity,
                                                          const char *sqlstate,
                                                          const char *message);
__attribute__((warn_unused_result)) int tg_pg_build_auth(tg_buf *out, int32_t code,
                                                         const void *data, size_t len);
__attribute__((warn_unused_result)) int tg_pg_build_ready(tg_buf *out, char status);
__attribute__((warn_unused_result)) int tg_pg_build_backend_key(tg_buf *out, int32_t pid,
                                                                int32_t key);
__attribute__((warn_unused_result)) int tg_pg_build_parameter_status(tg_buf *out, const char *name,
                                                                     const char *value);
/* NegotiateProtocolVersion: the newest version supported (PostgreSQL sends the whole code,
 * e.g. TG_PG_PROTOCOL(3, 0)) and the unrecognized options. */
__attribute__((warn_unused_result)) int
tg_pg_build_negotiate(tg_buf *out, int32_t newest_minor, const tg_slice *options, size_t n_options);
__attribute__((warn_unused_result)) int tg_pg_build_query(tg_buf *out, const char *sql, size_t len);
/* Parse with the given statement name and parameter types (raw, as in tg_pg_parse). */
__attribute__((warn_unused_result)) int
tg_pg_build_parse(tg_buf *out, tg_slice name, const char *sql, size_t len, tg_slice param_types);
/* StartupMessage for `version` with n name/value pairs (names[i], values[i]). */
__attribute__((warn_unused_result)) int tg_pg_build_startup(tg_buf *out, uint32_t version,
                                                            const char *const *names,
                                                            const char *const *values, size_t n);
/* PasswordMessage / SASLResponse: raw bytes (a cleartext or MD5 password includes its NUL). */
__attribute__((warn_unused_result)) int tg_pg_build_password(tg_buf *out, const void *data,
                                                             size_t len);
/* SASLInitialResponse: mechanism name and initial client response. */
__attribute__((warn_unused_result)) int tg_pg_build_sasl_initial(tg_buf *out, const char *mech,
                                                                 const void *data, size_t len);
/* CancelRequest (untyped, 16 bytes). */
__attribute__((warn_unused_result)) int tg_pg_build_cancel(tg_buf *out, int32_t pid, int32_t key);
/* NotificationResponse. */
__attribute__((warn_unused_result)) int
tg_pg_build_notification(tg_buf *out, int32_t pid, tg_slice channel, tg_slice payload);

#endif
