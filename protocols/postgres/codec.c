/*
 * PostgreSQL v3 frontend/backend codec: framing, body views and builders.
 *
 *   first packet:  int32 length | int32 code | ...            tg_pg_decode_startup
 *   afterwards:    byte type | int32 length | body            tg_pg_decode
 *                                              |
 *                                              +--> tg_pg_parse_* (a reader walks the
 *                                                   body once; every byte accounted for)
 *   outgoing:      tg_pg_begin -> tg_pg_put_* -> tg_pg_end    (length patched last)
 *
 * Lengths are checked the moment their four bytes are in: below the format's
 * minimum or above INT32_MAX is TG_EPROTO, above the caller's maximum is
 * TG_ETOOBIG, so a hostile peer never makes us buffer what it announces.
 * Nothing here allocates except the tg_buf a builder is handed; views are
 * slices into the caller's input. A failed build truncates the buffer back to
 * where the message started, so a buffer never holds half a message.
 */
#include "protocols/postgres/codec.h"

#include <limits.h>
#include <string.h>

#include "proxy/byteorder.h"
#include "proxy/error.h"

/* ---- framing ---- */

ssize_t tg_pg_decode(const uint8_t *buf, size_t len, uint32_t max_len, tg_pg_msg *out)
{
    if (len < 5)
        return TG_NEED_MORE;
    uint32_t length = tg_load_be32(buf + 1);
    if (length > INT32_MAX || length < 4)
        return TG_EPROTO;
    if (length > max_len || (uint64_t)length + 1 > (uint64_t)SSIZE_MAX)
        return TG_ETOOBIG;
    size_t size = (size_t)length + 1;
    if (len < size)
        return TG_NEED_MORE;
    out->type = buf[0];
    out->body = (tg_slice){buf + 5, length - 4};
    out->size = size;
    return (ssize_t)size;
}

/* Checks the pairs of a 3.x StartupMessage once; the final NUL is already excluded. */
static int validate_params(tg_slice params)
{
    tg_slice cursor = params, name, value;
    int rc;
    while ((rc = tg_pg_startup_next(&cursor, &name, &value)) == 1)
        ;
    return rc;
}

ssize_t tg_pg_decode_startup(const uint8_t *buf, size_t len, uint32_t max_len, tg_pg_startup *out)
{
    if (max_len > TG_PG_MAX_STARTUP)
        max_len = TG_PG_MAX_STARTUP;
    if (len < 4)
        return TG_NEED_MORE;
    uint32_t length = tg_load_be32(buf);
    if (length > INT32_MAX || length < 8)
        return TG_EPROTO;
    if (length > max_len)
        return TG_ETOOBIG;
    if (len < 8)
        return TG_NEED_MORE;
    uint32_t code = tg_load_be32(buf + 4);
    /* Fixed-size requests are refused as soon as the code is in, not after the body. */
    if ((code == TG_PG_SSL_REQUEST_CODE || code == TG_PG_GSSENC_REQUEST_CODE) && length != 8)
        return TG_EPROTO;
    if (code == TG_PG_CANCEL_REQUEST_CODE && length != 16)
        return TG_EPROTO;
    if (code >> 16 == 3 && length < 9)
        return TG_EPROTO; /* a 3.x StartupMessage has at least its final NUL */
    if (len < length)
        return TG_NEED_MORE;

    tg_pg_startup s = {.code = code, .size = length};
    if (code == TG_PG_CANCEL_REQUEST_CODE) {
        s.cancel_pid = tg_load_be32(buf + 8);
        s.cancel_key = tg_load_be32(buf + 12);
    } else if (code >> 16 == 3) {
        if (buf[length - 1] != 0)
            return TG_EPROTO;
        s.params = (tg_slice){buf + 8, length - 9};
        if (validate_params(s.params) < 0)
            return TG_EPROTO;
    } else if (code != TG_PG_SSL_REQUEST_CODE && code != TG_PG_GSSENC_REQUEST_CODE) {
        /* Another protocol version: the session answers with a FATAL; params unread. */
        s.params = (tg_slice){buf + 8, length - 8};
    }
    *out = s;
    return (ssize_t)length;
}

/* The NUL-terminated string at the start of *rest; advances past its NUL. */
static int take_cstr(tg_slice *rest, tg_slice *str)
{
    const uint8_t *nul = rest->len ? memchr(rest->base, 0, rest->len) : NULL;
    if (!nul)
        return TG_EPROTO;
    size_t n = (size_t)(nul - rest->base);
    *str = (tg_slice){rest->base, n};
    rest->base += n + 1;
    rest->len -= n + 1;
    return 0;
}

int tg_pg_startup_next(tg_slice *cursor, tg_slice *name, tg_slice *value)
{
    if (cursor->len == 0)
        return 0;
    tg_slice rest = *cursor, n, v;
    if (take_cstr(&rest, &n) < 0 || n.len == 0 || take_cstr(&rest, &v) < 0)
        return TG_EPROTO;
    *name = n;
    *value = v;
    *cursor = rest;
    return 1;
}

bool tg_pg_frontend_type_known(uint8_t type)
{
    switch (type) {
    case PqMsg_Bind:
    case PqMsg_Close:
    case PqMsg_Describe:
    case PqMsg_Execute:
    case PqMsg_FunctionCall:
    case PqMsg_Flush:
    case PqMsg_Parse:
    case PqMsg_Query:
    case PqMsg_Sync:
    case PqMsg_Terminate:
    case PqMsg_CopyFail:
    case PqMsg_PasswordMessage:
    case PqMsg_CopyData:
    case PqMsg_CopyDone:
        return true;
    default:
        return false;
    }
}

bool tg_pg_backend_type_known(uint8_t type)
{
    switch (type) {
    case PqMsg_ParseComplete:
    case PqMsg_BindComplete:
    case PqMsg_CloseComplete:
    case PqMsg_NotificationResponse:
    case PqMsg_CommandComplete:
    case PqMsg_DataRow:
    case PqMsg_ErrorResponse:
    case PqMsg_CopyInResponse:
    case PqMsg_CopyOutResponse:
    case PqMsg_EmptyQueryResponse:
    case PqMsg_BackendKeyData:
    case PqMsg_NoticeResponse:
    case PqMsg_AuthenticationRequest:
    case PqMsg_ParameterStatus:
    case PqMsg_RowDescription:
    case PqMsg_FunctionCallResponse:
    case PqMsg_CopyBothResponse:
    case PqMsg_ReadyForQuery:
    case PqMsg_NoData:
    case PqMsg_PortalSuspended:
    case PqMsg_ParameterDescription:
    case PqMsg_NegotiateProtocolVersion:
    case PqMsg_CopyData:
    case PqMsg_CopyDone:
        return true;
    default:
        return false;
    }
}

/* ---- reader ---- */

/* Claims n bytes, or fails (sticky) and returns NULL. */
static const uint8_t *take(tg_pg_reader *r, size_t n)
{
    if (r->failed || (size_t)(r->end - r->p) < n) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

uint8_t tg_pg_get_u8(tg_pg_reader *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

int16_t tg_pg_get_i16(tg_pg_reader *r)
{
    const uint8_t *p = take(r, 2);
    return p ? tg_i16(tg_load_be16(p)) : 0;
}

int32_t tg_pg_get_i32(tg_pg_reader *r)
{
    const uint8_t *p = take(r, 4);
    return p ? tg_i32(tg_load_be32(p)) : 0;
}

tg_slice tg_pg_get_cstr(tg_pg_reader *r)
{
    if (r->failed || r->p == r->end) {
        r->failed = true;
        return (tg_slice){NULL, 0};
    }
    const uint8_t *nul = memchr(r->p, 0, (size_t)(r->end - r->p));
    if (!nul) {
        r->failed = true;
        return (tg_slice){NULL, 0};
    }
    tg_slice s = {r->p, (size_t)(nul - r->p)};
    r->p = nul + 1;
    return s;
}

tg_slice tg_pg_get_bytes(tg_pg_reader *r, int64_t n)
{
    if (n < 0 || (uint64_t)n > SIZE_MAX) {
        r->failed = true;
        return (tg_slice){NULL, 0};
    }
    const uint8_t *p = take(r, (size_t)n);
    return p ? (tg_slice){p, (size_t)n} : (tg_slice){NULL, 0};
}

/* ---- parsed views ---- */

int tg_pg_parse_parse(const tg_pg_msg *m, tg_pg_parse *out)
{
    if (m->type != PqMsg_Parse)
        return TG_EINVAL;
    tg_pg_reader r = tg_pg_reader_init(m->body);
    tg_pg_parse p;
    p.name = tg_pg_get_cstr(&r);
    p.query = tg_pg_get_cstr(&r);
    const uint8_t *types = r.p;
    int16_t n = tg_pg_get_i16(&r);
    if (r.failed || n < 0)
        return TG_EPROTO;
    tg_pg_get_bytes(&r, (int64_t)n * 4);
    if (!tg_pg_reader_done(&r))
        return TG_EPROTO;
    p.param_types = (tg_slice){types, (size_t)(r.p - types)};
    *out = p;
    return 0;
}

int tg_pg_parse_query(const tg_pg_msg *m, tg_slice *sql)
{
    if (m->type != PqMsg_Query)
        return TG_EINVAL;
    tg_pg_reader r = tg_pg_reader_init(m->body);
    tg_slice s = tg_pg_get_cstr(&r);
    if (!tg_pg_reader_done(&r))
        return TG_EPROTO; /* no NUL, or bytes after the first NUL */
    *sql = s;
    return 0;
}

int tg_pg_parse_error(const tg_pg_msg *m, tg_pg_error_fields *out)
{
    if (m->type != PqMsg_ErrorResponse && m->type != PqMsg_NoticeResponse)
        return TG_EINVAL;
    tg_pg_reader r = tg_pg_reader_init(m->body);
    tg_pg_error_fields f = {{NULL, 0}, {NULL, 0}, {NULL, 0}, {NULL, 0}};
    for (;;) {
        uint8_t code = tg_pg_get_u8(&r);
        if (r.failed)
            return TG_EPROTO; /* no terminator */
        if (code == 0)
            break;
        tg_slice v = tg_pg_get_cstr(&r);
        if (r.failed)
            return TG_EPROTO;
        switch (code) {
        case 'S':
            f.severity = v;
            break;
        case 'V':
            f.severity_plain = v;
            break;
        case 'C':
            f.sqlstate = v;
            break;
        case 'M':
            f.message = v;
            break;
        default:
            break; /* other fields (detail, hint, position...) are skipped */
        }
    }
    if (!tg_pg_reader_done(&r))
        return TG_EPROTO;
    *out = f;
    return 0;
}

int tg_pg_parse_notification(const tg_pg_msg *m, tg_pg_notification *out)
{
    if (m->type != PqMsg_NotificationResponse)
        return TG_EINVAL;
    tg_pg_reader r = tg_pg_reader_init(m->body);
    tg_pg_notification n;
    n.pid = tg_pg_get_i32(&r);
    n.channel = tg_pg_get_cstr(&r);
    n.payload = tg_pg_get_cstr(&r);
    if (!tg_pg_reader_done(&r))
        return TG_EPROTO;
    *out = n;
    return 0;
}

/* AuthenticationSASL: one or more non-empty mechanism names, then an empty one, then nothing. */
static bool sasl_list_valid(tg_slice data)
{
    tg_pg_reader r = tg_pg_reader_init(data);
    size_t n = 0;
    for (;;) {
        tg_slice mech = tg_pg_get_cstr(&r);
        if (r.failed)
            return false;
        if (mech.len == 0)
            break;
        n++;
    }
    return n > 0 && tg_pg_reader_done(&r);
}

int tg_pg_parse_auth(const tg_pg_msg *m, int32_t *code, tg_slice *data)
{
    if (m->type != PqMsg_AuthenticationRequest)
        return TG_EINVAL;
    tg_pg_reader r = tg_pg_reader_init(m->body);
    int32_t c = tg_pg_get_i32(&r);
    if (r.failed)
        return TG_EPROTO;
    tg_slice d = tg_pg_get_bytes(&r, r.end - r.p);
    /* Where the format fixes the data, hold the backend to it. */
    switch (c) {
    case TG_PG_AUTH_OK:
    case TG_PG_AUTH_CLEARTEXT:
        if (d.len != 0)
            return TG_EPROTO;
        break;
    case TG_PG_AUTH_MD5:
        if (d.len != 4)
            return TG_EPROTO;
        break;
    case TG_PG_AUTH_SASL:
        if (!sasl_list_valid(d))
            return TG_EPROTO;
        break;
    default:
        break;
    }
    *code = c;
    *data = d;
    return 0;
}

int tg_pg_parse_ready(const tg_pg_msg *m, char *status)
{
    if (m->type != PqMsg_ReadyForQuery)
        return TG_EINVAL;
    if (m->body.len != 1)
        return TG_EPROTO;
    uint8_t s = m->body.base[0];
    if (s != 'I' && s != 'T' && s != 'E')
        return TG_EPROTO;
    *status = (char)s;
    return 0;
}

int tg_pg_parse_backend_key(const tg_pg_msg *m, int32_t *pid, int32_t *key)
{
    if (m->type != PqMsg_BackendKeyData)
        return TG_EINVAL;
    if (m->body.len != 8)
        return TG_EPROTO;
    *pid = tg_i32(tg_load_be32(m->body.base));
    *key = tg_i32(tg_load_be32(m->body.base + 4));
    return 0;
}

int tg_pg_parse_parameter_status(const tg_pg_msg *m, tg_slice *name, tg_slice *value)
{
    if (m->type != PqMsg_ParameterStatus)
        return TG_EINVAL;
    tg_pg_reader r = tg_pg_reader_init(m->body);
    tg_slice n = tg_pg_get_cstr(&r);
    tg_slice v = tg_pg_get_cstr(&r);
    if (!tg_pg_reader_done(&r))
        return TG_EPROTO;
    *name = n;
    *value = v;
    return 0;
}

int tg_pg_parse_password(const tg_pg_msg *m, tg_slice *password)
{
    if (m->type != PqMsg_PasswordMessage)
        return TG_EINVAL;
    tg_pg_reader r = tg_pg_reader_init(m->body);
    tg_slice p = tg_pg_get_cstr(&r);
    if (!tg_pg_reader_done(&r))
        return TG_EPROTO;
    *password = p;
    return 0;
}

/* ---- builders ---- */

static void fail(tg_pg_builder *b, int err)
{
    if (!b->failed) {
        b->failed = true;
        b->err = err;
    }
}

static void put(tg_pg_builder *b, const void *p, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (tg_buf_append(b->out, p, n) < 0)
        fail(b, TG_ENOMEM);
}

/* Starts a packet: `typed` adds the type byte before the length placeholder. */
static void begin(tg_pg_builder *b, tg_buf *out, bool typed, uint8_t type)
{
    static const uint8_t placeholder[4] = {0};
    b->out = out;
    b->start = out->len;
    b->failed = false;
    b->err = 0;
    if (typed)
        put(b, &type, 1);
    put(b, placeholder, sizeof(placeholder));
}

/* Patches the length (which excludes the type byte of a typed message), or undoes the message. */
static int finish(tg_pg_builder *b, size_t header, size_t max)
{
    if (!b->failed) {
        size_t length = b->out->len - b->start - header;
        if (length > max)
            fail(b, TG_EINVAL);
        else
            tg_store_be32(b->out->data + b->start + header, (uint32_t)length);
    }
    if (b->failed) {
        b->out->len = b->start;
        return b->err;
    }
    return 0;
}

void tg_pg_begin(tg_pg_builder *b, tg_buf *out, uint8_t type)
{
    begin(b, out, true, type);
}

void tg_pg_put_u8(tg_pg_builder *b, uint8_t v)
{
    put(b, &v, 1);
}

void tg_pg_put_i16(tg_pg_builder *b, int16_t v)
{
    uint16_t u = (uint16_t)v;
    uint8_t p[2] = {(uint8_t)(u >> 8), (uint8_t)u};
    put(b, p, 2);
}

void tg_pg_put_i32(tg_pg_builder *b, int32_t v)
{
    uint8_t p[4];
    tg_store_be32(p, (uint32_t)v);
    put(b, p, 4);
}

void tg_pg_put_bytes(tg_pg_builder *b, const void *p, size_t n)
{
    put(b, p, n);
}

void tg_pg_put_cstr(tg_pg_builder *b, const char *s, size_t n)
{
    if (n > 0 && memchr(s, 0, n)) {
        fail(b, TG_EINVAL);
        return;
    }
    static const uint8_t nul = 0;
    put(b, s, n);
    put(b, &nul, 1);
}

int tg_pg_end(tg_pg_builder *b)
{
    return finish(b, 1, INT32_MAX);
}

static void put_slice_cstr(tg_pg_builder *b, tg_slice s)
{
    tg_pg_put_cstr(b, (const char *)s.base, s.len);
}

static void put_str(tg_pg_builder *b, const char *s)
{
    if (!s) {
        fail(b, TG_EINVAL);
        return;
    }
    tg_pg_put_cstr(b, s, strlen(s));
}

int tg_pg_build_error(tg_buf *out, uint8_t type, const char *severity, const char *sqlstate,
                      const char *message)
{
    if (type != PqMsg_ErrorResponse && type != PqMsg_NoticeResponse)
        return TG_EINVAL;
    tg_pg_builder b;
    tg_pg_begin(&b, out, type);
    tg_pg_put_u8(&b, 'S');
    put_str(&b, severity);
    tg_pg_put_u8(&b, 'V');
    put_str(&b, severity);
    tg_pg_put_u8(&b, 'C');
    put_str(&b, sqlstate);
    tg_pg_put_u8(&b, 'M');
    put_str(&b, message);
    tg_pg_put_u8(&b, 0);
    return tg_pg_end(&b);
}

int tg_pg_build_auth(tg_buf *out, int32_t code, const void *data, size_t len)
{
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_AuthenticationRequest);
    tg_pg_put_i32(&b, code);
    tg_pg_put_bytes(&b, data, len);
    return tg_pg_end(&b);
}

int tg_pg_build_ready(tg_buf *out, char status)
{
    if (status != 'I' && status != 'T' && status != 'E')
        return TG_EINVAL;
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_ReadyForQuery);
    tg_pg_put_u8(&b, (uint8_t)status);
    return tg_pg_end(&b);
}

int tg_pg_build_backend_key(tg_buf *out, int32_t pid, int32_t key)
{
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_BackendKeyData);
    tg_pg_put_i32(&b, pid);
    tg_pg_put_i32(&b, key);
    return tg_pg_end(&b);
}

int tg_pg_build_parameter_status(tg_buf *out, const char *name, const char *value)
{
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_ParameterStatus);
    put_str(&b, name);
    put_str(&b, value);
    return tg_pg_end(&b);
}

int tg_pg_build_negotiate(tg_buf *out, int32_t newest_minor, const tg_slice *options,
                          size_t n_options)
{
    if (n_options > INT32_MAX || (n_options > 0 && !options))
        return TG_EINVAL;
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_NegotiateProtocolVersion);
    tg_pg_put_i32(&b, newest_minor);
    tg_pg_put_i32(&b, (int32_t)n_options);
    for (size_t i = 0; i < n_options; i++)
        put_slice_cstr(&b, options[i]);
    return tg_pg_end(&b);
}

int tg_pg_build_query(tg_buf *out, const char *sql, size_t len)
{
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_Query);
    tg_pg_put_cstr(&b, sql, len);
    return tg_pg_end(&b);
}

int tg_pg_build_parse(tg_buf *out, tg_slice name, const char *sql, size_t len, tg_slice param_types)
{
    /* param_types is raw (int16 count, count int32 OIDs) and must say so exactly;
     * an empty slice means no parameter types. */
    if (param_types.len > 0) {
        if (param_types.len < 2)
            return TG_EINVAL;
        int16_t n = tg_i16(tg_load_be16(param_types.base));
        if (n < 0 || param_types.len != 2 + (size_t)n * 4)
            return TG_EINVAL;
    }
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_Parse);
    put_slice_cstr(&b, name);
    tg_pg_put_cstr(&b, sql, len);
    if (param_types.len > 0)
        tg_pg_put_bytes(&b, param_types.base, param_types.len);
    else
        tg_pg_put_i16(&b, 0);
    return tg_pg_end(&b);
}

int tg_pg_build_startup(tg_buf *out, uint32_t version, const char *const *names,
                        const char *const *values, size_t n)
{
    if (n > 0 && (!names || !values))
        return TG_EINVAL;
    tg_pg_builder b;
    begin(&b, out, false, 0);
    tg_pg_put_i32(&b, tg_i32(version));
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || names[i][0] == '\0') {
            fail(&b, TG_EINVAL); /* an empty name would end the list early */
            break;
        }
        put_str(&b, names[i]);
        put_str(&b, values[i]);
    }
    tg_pg_put_u8(&b, 0);
    /* PostgreSQL refuses startup packets above MAX_STARTUP_PACKET_LENGTH. */
    return finish(&b, 0, TG_PG_MAX_STARTUP);
}

int tg_pg_build_password(tg_buf *out, const void *data, size_t len)
{
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_PasswordMessage);
    tg_pg_put_bytes(&b, data, len);
    return tg_pg_end(&b);
}

int tg_pg_build_sasl_initial(tg_buf *out, const char *mech, const void *data, size_t len)
{
    if (data && len > INT32_MAX)
        return TG_EINVAL;
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_PasswordMessage);
    put_str(&b, mech);
    if (data) {
        tg_pg_put_i32(&b, (int32_t)len);
        tg_pg_put_bytes(&b, data, len);
    } else {
        tg_pg_put_i32(&b, -1); /* no initial response */
    }
    return tg_pg_end(&b);
}

int tg_pg_build_cancel(tg_buf *out, int32_t pid, int32_t key)
{
    tg_pg_builder b;
    begin(&b, out, false, 0);
    tg_pg_put_i32(&b, TG_PG_CANCEL_REQUEST_CODE);
    tg_pg_put_i32(&b, pid);
    tg_pg_put_i32(&b, key);
    return finish(&b, 0, INT32_MAX);
}

int tg_pg_build_notification(tg_buf *out, int32_t pid, tg_slice channel, tg_slice payload)
{
    tg_pg_builder b;
    tg_pg_begin(&b, out, PqMsg_NotificationResponse);
    tg_pg_put_i32(&b, pid);
    put_slice_cstr(&b, channel);
    put_slice_cstr(&b, payload);
    return tg_pg_end(&b);
}
