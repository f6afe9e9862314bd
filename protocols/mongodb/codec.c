/*
 * MongoDB wire codec: framing, OP_MSG / OP_QUERY / OP_REPLY views, builders,
 * error replies and CRC-32C.
 *
 *   bytes --decode_header / decode--> frame (messageLength judged at 4 bytes)
 *     frame --parse_msg--> flagBits --> [checksum verified] --> sections, left to right:
 *                            kind 0: check_doc --> body     (exactly one)
 *                            kind 1: size, identifier, check_doc* --> seqs[]
 *                          --> no identifier repeated or also a body field
 *     frame --parse_query / parse_reply--> fixed fields, then check_doc per document
 *   check_doc: int32 size framed exactly --> iterative walk (framing, depth, UTF-8)
 *              --> bson_validate
 *   builders: header placeholder --> fields and sections --> [CRC-32C] --> length patched
 *
 * Nothing here allocates except the tg_buf a builder is handed; views are
 * slices into the caller's input. A failed build truncates the buffer back
 * to where the message started, so a buffer never holds half a message. The
 * error replies are written as BSON by hand rather than through a bson_t,
 * so that a rejection costs no allocation libbson would abort on.
 */
#include "protocols/mongodb/codec.h"

#include <limits.h>
#include <string.h>

#include "proxy/byteorder.h"
#include "proxy/error.h"
#include "proxy/utf8.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TG_CRC32C_SSE42 1
#include <nmmintrin.h>
#endif

/* Sets *reason (when asked for) and returns TG_EPROTO. */
static int refuse(const char **reason, const char *why)
{
    if (reason)
        *reason = why;
    return TG_EPROTO;
}

/* ---- UTF-8 ---- */

/* True when p[0..n) is well-formed UTF-8 (proxy/utf8.h), with NULs only when allow_nul. */
static bool utf8_valid(const uint8_t *p, size_t n, bool allow_nul)
{
    return tg_utf8_valid(p, n) && (allow_nul || n == 0 || !memchr(p, 0, n));
}

/* ---- names ---- */

const char *tg_mongo_opcode_name(int32_t op_code)
{
    switch (op_code) {
#define TG_MONGO_OPCODE_CASE(name, value)                                                          \
    case value:                                                                                    \
        return #name;
        TG_MONGO_OPCODE_MAP(TG_MONGO_OPCODE_CASE)
#undef TG_MONGO_OPCODE_CASE
    default:
        return "unknown";
    }
}

const char *tg_mongo_error_name(int32_t code)
{
    switch (code) {
#define TG_MONGO_ERROR_CASE(name, value, code_name)                                                \
    case value:                                                                                    \
        return code_name;
        TG_MONGO_ERROR_MAP(TG_MONGO_ERROR_CASE)
#undef TG_MONGO_ERROR_CASE
    default:
        return NULL;
    }
}

/* ---- framing ---- */

ssize_t tg_mongo_decode_header(const uint8_t *buf, size_t len, uint32_t max_len,
                               tg_mongo_header *out)
{
    if (len < 4)
        return TG_NEED_MORE;
    uint32_t length = tg_load_le32(buf);
    if (length > INT32_MAX || length < TG_MONGO_HEADER_LEN)
        return TG_EPROTO;
    if (length > max_len)
        return TG_ETOOBIG;
    if (len < TG_MONGO_HEADER_LEN)
        return TG_NEED_MORE;
    out->message_length = (int32_t)length;
    out->request_id = tg_i32(tg_load_le32(buf + 4));
    out->response_to = tg_i32(tg_load_le32(buf + 8));
    out->op_code = tg_i32(tg_load_le32(buf + 12));
    return TG_MONGO_HEADER_LEN;
}

ssize_t tg_mongo_decode(const uint8_t *buf, size_t len, uint32_t max_len, tg_mongo_frame *out)
{
    tg_mongo_header h;
    ssize_t rc = tg_mongo_decode_header(buf, len, max_len, &h);
    if (rc <= 0)
        return rc;
    size_t size = (size_t)h.message_length;
    if (len < size)
        return TG_NEED_MORE;
    out->header = h;
    out->bytes = (tg_slice){buf, size};
    out->body = (tg_slice){buf + TG_MONGO_HEADER_LEN, size - TG_MONGO_HEADER_LEN};
    return (ssize_t)size;
}

void tg_mongo_write_header(uint8_t out[TG_MONGO_HEADER_LEN], const tg_mongo_header *h)
{
    tg_store_le32(out, (uint32_t)h->message_length);
    tg_store_le32(out + 4, (uint32_t)h->request_id);
    tg_store_le32(out + 8, (uint32_t)h->response_to);
    tg_store_le32(out + 12, (uint32_t)h->op_code);
}

/* ---- documents ---- */

/* BSON element types (bsonspec.org). */
enum {
    BT_DOUBLE = 0x01,
    BT_STRING = 0x02,
    BT_DOCUMENT = 0x03,
    BT_ARRAY = 0x04,
    BT_BINARY = 0x05,
    BT_UNDEFINED = 0x06,
    BT_OID = 0x07,
    BT_BOOL = 0x08,
    BT_DATE_TIME = 0x09,
    BT_NULL = 0x0a,
    BT_REGEX = 0x0b,
    BT_DBPOINTER = 0x0c,
    BT_CODE = 0x0d,
    BT_SYMBOL = 0x0e,
    BT_CODE_W_SCOPE = 0x0f,
    BT_INT32 = 0x10,
    BT_TIMESTAMP = 0x11,
    BT_INT64 = 0x12,
    BT_DECIMAL128 = 0x13,
    BT_MAXKEY = 0x7f,
    BT_MINKEY = 0xff,
};

/* A BSON string (int32 size incl. NUL, bytes, NUL) at p within room bytes: its size, or 0. */
static size_t string_size(const uint8_t *p, size_t room)
{
    if (room < 5)
        return 0;
    uint32_t n = tg_load_le32(p);
    if (n < 1 || n > room - 4 || p[4 + n - 1] != 0)
        return 0;
    return 4 + (size_t)n;
}

/* Text checks of the walk: what BSON_VALIDATE_UTF8 (and _ALLOW_NULL) ask for. */
typedef struct text_rules {
    bool utf8;
    bool allow_nul;
} text_rules;

/* The text of a BSON string of size `size` (string_size) at p. */
static bool string_ok(const uint8_t *p, size_t size, text_rules t)
{
    return !t.utf8 || utf8_valid(p + 4, size - 5, t.allow_nul);
}

/* A cstring of size `size` (with its NUL) at p. */
static bool cstring_ok(const uint8_t *p, size_t size, text_rules t)
{
    return !t.utf8 || utf8_valid(p, size - 1, false);
}

/* A cstring at p within room bytes: its size with the NUL, or 0. */
static size_t cstring_size(const uint8_t *p, size_t room)
{
    const uint8_t *nul = room ? memchr(p, 0, room) : NULL;
    return nul ? (size_t)(nul - p) + 1 : 0;
}

/*
 * Walks the elements of the document p[0..len) (its size is already checked)
 * without recursion, keeping where each open document ends. It checks the
 * framing of every element and the nesting depth, so that the recursive
 * bson_validate that follows stays within TG_MONGO_MAX_DEPTH levels of stack
 * whatever the input. It also checks the text itself: libbson 1.23's
 * bson_validate(BSON_VALIDATE_UTF8) lets invalid UTF-8 such as "\xff" through
 * in string values (it only finds NULs), so keys, strings, code, symbols,
 * regular expressions and DBPointer namespaces are checked here, strictly
 * (no overlong forms, surrogates or code points above U+10FFFF).
 */
static int walk_doc(const uint8_t *p, size_t len, bson_validate_flags_t flags, const char **reason)
{
    text_rules t = {(flags & BSON_VALIDATE_UTF8) != 0,
                    (flags & BSON_VALIDATE_UTF8_ALLOW_NULL) != 0};
    size_t ends[TG_MONGO_MAX_DEPTH + 1]; /* offset of each open document's final NUL */
    unsigned depth = 0;
    size_t off = 4;
    ends[0] = len - 1;
    for (;;) {
        size_t end = ends[depth];
        if (off == end) {
            if (p[off] != 0)
                return refuse(reason, "document not NUL-terminated");
            off++;
            if (depth == 0)
                return 0;
            depth--;
            continue;
        }
        uint8_t type = p[off++];
        if (type == 0)
            return refuse(reason, "document ends before its size");
        size_t key = cstring_size(p + off, end - off);
        if (key == 0)
            return refuse(reason, "element name not NUL-terminated");
        if (!cstring_ok(p + off, key, t))
            return refuse(reason, "element name not UTF-8");
        off += key;
        size_t room = end - off; /* value bytes before the document's final NUL */
        size_t v;
        switch (type) {
        case BT_UNDEFINED:
        case BT_NULL:
        case BT_MAXKEY:
        case BT_MINKEY:
            v = 0;
            break;
        case BT_BOOL:
            if (room < 1 || p[off] > 1)
                return refuse(reason, "invalid boolean");
            v = 1;
            break;
        case BT_INT32:
            v = 4;
            break;
        case BT_DOUBLE:
        case BT_DATE_TIME:
        case BT_TIMESTAMP:
        case BT_INT64:
            v = 8;
            break;
        case BT_OID:
            v = 12;
            break;
        case BT_DECIMAL128:
            v = 16;
            break;
        case BT_STRING:
        case BT_CODE:
        case BT_SYMBOL:
            v = string_size(p + off, room);
            if (v == 0)
                return refuse(reason, "invalid string size");
            if (!string_ok(p + off, v, t))
                return refuse(reason, "string not UTF-8 or holding a NUL");
            break;
        case BT_DBPOINTER:
            v = string_size(p + off, room);
            if (v == 0 || room - v < 12)
                return refuse(reason, "invalid DBPointer");
            if (!string_ok(p + off, v, t))
                return refuse(reason, "string not UTF-8 or holding a NUL");
            v += 12;
            break;
        case BT_REGEX: {
            size_t a = cstring_size(p + off, room);
            size_t b = a ? cstring_size(p + off + a, room - a) : 0;
            if (b == 0)
                return refuse(reason, "invalid regular expression");
            if (!cstring_ok(p + off, a, t) || !cstring_ok(p + off + a, b, t))
                return refuse(reason, "regular expression not UTF-8");
            v = a + b;
            break;
        }
        case BT_BINARY: {
            if (room < 5 || tg_load_le32(p + off) > room - 5)
                return refuse(reason, "invalid binary size");
            uint32_t n = tg_load_le32(p + off);
            v = 5 + (size_t)n;
            break;
        }
        case BT_DOCUMENT:
        case BT_ARRAY: {
            uint32_t n = room >= 5 ? tg_load_le32(p + off) : 0;
            if (n < 5 || n > room)
                return refuse(reason, "embedded document size outside its container");
            if (depth == TG_MONGO_MAX_DEPTH)
                return refuse(reason, "documents nested too deep");
            ends[++depth] = off + n - 1;
            off += 4;
            continue;
        }
        case BT_CODE_W_SCOPE: {
            /* int32 total | string code | document scope, the scope ending with the total. */
            uint32_t total = room >= 14 ? tg_load_le32(p + off) : 0;
            if (total < 14 || total > room)
                return refuse(reason, "invalid code with scope");
            size_t code = string_size(p + off + 4, total - 4);
            if (code == 0 || total - 4 - code < 5 ||
                tg_load_le32(p + off + 4 + code) != total - 4 - code)
                return refuse(reason, "invalid code with scope");
            if (!string_ok(p + off + 4, code, t))
                return refuse(reason, "string not UTF-8 or holding a NUL");
            if (depth == TG_MONGO_MAX_DEPTH)
                return refuse(reason, "documents nested too deep");
            ends[++depth] = off + total - 1;
            off += 4 + code + 4;
            continue;
        }
        default:
            return refuse(reason, "unknown BSON element type");
        }
        if (v > room)
            return refuse(reason, "element runs past its document");
        off += v;
    }
}

ssize_t tg_mongo_check_doc(const uint8_t *buf, size_t len, bson_validate_flags_t flags,
                           const char **reason)
{
    if (len < 4)
        return refuse(reason, "document size missing");
    uint32_t n = tg_load_le32(buf);
    if (n > INT32_MAX)
        return refuse(reason, "negative document size");
    if (n < 5)
        return refuse(reason, "document size below 5");
    if (n > len)
        return refuse(reason, "document size beyond its container");
    if (walk_doc(buf, n, flags, reason) < 0)
        return TG_EPROTO;
    bson_t doc;
    size_t err_off = 0;
    if (!bson_init_static(&doc, buf, n))
        return refuse(reason, "document refused by libbson");
    if (!bson_validate(&doc, flags, &err_off))
        return refuse(reason, "document refused by bson_validate");
    return (ssize_t)n;
}

int tg_mongo_seq_next(tg_slice *cursor, tg_slice *doc)
{
    if (cursor->len == 0)
        return 0;
    if (cursor->len < 5)
        return TG_EPROTO;
    uint32_t n = tg_load_le32(cursor->base);
    if (n < 5 || n > cursor->len || cursor->base[n - 1] != 0)
        return TG_EPROTO;
    *doc = (tg_slice){cursor->base, n};
    cursor->base += n;
    cursor->len -= n;
    return 1;
}

/* True when the (checked) document has a top-level key equal to name. */
static bool doc_has_key(tg_slice doc, tg_slice name)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, doc.base, doc.len))
        return false;
    while (bson_iter_next(&it)) {
        if (bson_iter_key_len(&it) == name.len &&
            memcmp(bson_iter_key(&it), name.base, name.len) == 0)
            return true;
    }
    return false;
}

static bool slice_eq(tg_slice a, tg_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

/* ---- OP_MSG ---- */

/* A kind 1 section at p[off..end) after its kind byte; fills *seq and returns its end. */
static int parse_sequence(const uint8_t *p, size_t off, size_t end, bson_validate_flags_t validate,
                          tg_mongo_seq *seq, size_t *seq_end, const char **reason)
{
    if (end - off < 4)
        return refuse(reason, "document sequence size missing");
    uint32_t size = tg_load_le32(p + off);
    if (size > INT32_MAX)
        return refuse(reason, "negative document sequence size");
    if (size < 5)
        return refuse(reason, "document sequence size below 5");
    if (size > end - off)
        return refuse(reason, "document sequence beyond the message");
    size_t stop = off + size;
    const uint8_t *id = p + off + 4;
    size_t id_size = cstring_size(id, stop - (off + 4));
    if (id_size == 0)
        return refuse(reason, "document sequence identifier not NUL-terminated");
    if (id_size == 1)
        return refuse(reason, "empty document sequence identifier");
    if (!utf8_valid(id, id_size - 1, false))
        return refuse(reason, "document sequence identifier not UTF-8");
    size_t d = off + 4 + id_size;
    uint32_t count = 0;
    while (d < stop) {
        ssize_t n = tg_mongo_check_doc(p + d, stop - d, validate, reason);
        if (n < 0)
            return TG_EPROTO;
        d += (size_t)n;
        count++;
    }
    seq->identifier = (tg_slice){id, id_size - 1};
    seq->docs = (tg_slice){id + id_size, stop - (off + 4 + id_size)};
    seq->count = count;
    *seq_end = stop;
    return 0;
}

int tg_mongo_parse_msg(const tg_mongo_frame *f, bson_validate_flags_t validate, tg_mongo_msg *out,
                       const char **reason)
{
    if (f->header.op_code != OP_MSG)
        return TG_EINVAL;
    const uint8_t *p = f->body.base;
    size_t end = f->body.len;
    if (end < 4)
        return refuse(reason, "OP_MSG without flagBits");
    tg_mongo_msg m;
    m.flags = tg_load_le32(p);
    m.body = (tg_slice){NULL, 0};
    m.n_seqs = 0;
    m.checksum = 0;
    if (m.flags & TG_MONGO_MSG_REQUIRED_BITS & ~TG_MONGO_MSG_KNOWN_FLAGS)
        return refuse(reason, "unknown required OP_MSG flag bit");
    if (m.flags & TG_MONGO_MSG_CHECKSUM_PRESENT) {
        if (end < 8)
            return refuse(reason, "OP_MSG checksum missing");
        end -= 4;
        m.checksum = tg_load_le32(p + end);
        if (tg_mongo_crc32c(0, f->bytes.base, f->bytes.len - 4) != m.checksum)
            return refuse(reason, "OP_MSG checksum mismatch");
    }
    bool have_body = false;
    size_t off = 4;
    while (off < end) {
        uint8_t kind = p[off++];
        if (kind == 0) {
            if (have_body)
                return refuse(reason, "more than one body section");
            ssize_t n = tg_mongo_check_doc(p + off, end - off, validate, reason);
            if (n < 0)
                return TG_EPROTO;
            m.body = (tg_slice){p + off, (size_t)n};
            off += (size_t)n;
            have_body = true;
        } else if (kind == 1) {
            if (m.n_seqs == TG_MONGO_MAX_SEQUENCES)
                return refuse(reason, "too many document sequences");
            tg_mongo_seq seq;
            if (parse_sequence(p, off, end, validate, &seq, &off, reason) < 0)
                return TG_EPROTO;
            for (uint32_t i = 0; i < m.n_seqs; i++)
                if (slice_eq(m.seqs[i].identifier, seq.identifier))
                    return refuse(reason, "duplicate document sequence");
            m.seqs[m.n_seqs++] = seq;
        } else {
            return refuse(reason, "unknown OP_MSG section kind");
        }
    }
    if (!have_body)
        return refuse(reason, "OP_MSG without a body section");
    for (uint32_t i = 0; i < m.n_seqs; i++)
        if (doc_has_key(m.body, m.seqs[i].identifier))
            return refuse(reason, "field both in the body and a document sequence");
    *out = m;
    return 0;
}

int tg_mongo_msg_command(const tg_mongo_msg *m, tg_slice *name)
{
    bson_iter_t it;
    if (!m->body.base || !bson_iter_init_from_data(&it, m->body.base, m->body.len) ||
        !bson_iter_next(&it))
        return TG_EPROTO;
    *name = (tg_slice){(const uint8_t *)bson_iter_key(&it), bson_iter_key_len(&it)};
    return 0;
}

/* ---- OP_QUERY and OP_REPLY ---- */

int tg_mongo_parse_query(const tg_mongo_frame *f, bson_validate_flags_t validate,
                         tg_mongo_query *out, const char **reason)
{
    if (f->header.op_code != OP_QUERY)
        return TG_EINVAL;
    const uint8_t *p = f->body.base;
    size_t end = f->body.len;
    if (end < 4)
        return refuse(reason, "OP_QUERY without flags");
    tg_mongo_query q;
    uint32_t flags = tg_load_le32(p);
    if (flags & ~TG_MONGO_QUERY_KNOWN_FLAGS)
        return refuse(reason, "reserved OP_QUERY flag bit");
    q.flags = (int32_t)flags;
    size_t off = 4;
    size_t name = cstring_size(p + off, end - off);
    if (name == 0)
        return refuse(reason, "collection name not NUL-terminated");
    if (name == 1)
        return refuse(reason, "empty collection name");
    if (!utf8_valid(p + off, name - 1, false))
        return refuse(reason, "collection name not UTF-8");
    q.full_collection_name = (tg_slice){p + off, name - 1};
    off += name;
    if (end - off < 8)
        return refuse(reason, "numberToSkip or numberToReturn missing");
    q.number_to_skip = tg_i32(tg_load_le32(p + off));
    q.number_to_return = tg_i32(tg_load_le32(p + off + 4));
    off += 8;
    ssize_t n = tg_mongo_check_doc(p + off, end - off, validate, reason);
    if (n < 0)
        return TG_EPROTO;
    q.query = (tg_slice){p + off, (size_t)n};
    off += (size_t)n;
    q.return_fields_selector = (tg_slice){NULL, 0};
    if (off < end) {
        n = tg_mongo_check_doc(p + off, end - off, validate, reason);
        if (n < 0)
            return TG_EPROTO;
        q.return_fields_selector = (tg_slice){p + off, (size_t)n};
        off += (size_t)n;
        if (off != end)
            return refuse(reason, "bytes after returnFieldsSelector");
    }
    *out = q;
    return 0;
}

int tg_mongo_parse_reply(const tg_mongo_frame *f, bson_validate_flags_t validate,
                         tg_mongo_reply *out, const char **reason)
{
    if (f->header.op_code != OP_REPLY)
        return TG_EINVAL;
    const uint8_t *p = f->body.base;
    size_t end = f->body.len;
    if (end < 20)
        return refuse(reason, "OP_REPLY fields missing");
    tg_mongo_reply r;
    r.response_flags = tg_i32(tg_load_le32(p));
    r.cursor_id = tg_i64(tg_load_le64(p + 4));
    r.starting_from = tg_i32(tg_load_le32(p + 12));
    r.number_returned = tg_i32(tg_load_le32(p + 16));
    if (r.number_returned < 0)
        return refuse(reason, "negative numberReturned");
    size_t off = 20;
    int64_t count = 0;
    while (off < end) {
        if (count == r.number_returned)
            return refuse(reason, "more documents than numberReturned");
        ssize_t n = tg_mongo_check_doc(p + off, end - off, validate, reason);
        if (n < 0)
            return TG_EPROTO;
        off += (size_t)n;
        count++;
    }
    if (count != r.number_returned)
        return refuse(reason, "fewer documents than numberReturned");
    r.docs = (tg_slice){p + 20, end - 20};
    *out = r;
    return 0;
}

/* ---- builders ---- */

/* Appends with a sticky failure flag, as the PostgreSQL codec's builder. */
typedef struct builder {
    tg_buf *out;
    size_t start;
    bool failed;
    int err;
} builder;

static void b_init(builder *b, tg_buf *out)
{
    b->out = out;
    b->start = out->len;
    b->failed = false;
    b->err = 0;
}

static void b_fail(builder *b, int err)
{
    if (!b->failed) {
        b->failed = true;
        b->err = err;
    }
}

static void b_put(builder *b, const void *p, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (tg_buf_append(b->out, p, n) < 0)
        b_fail(b, TG_ENOMEM);
}

static void b_u8(builder *b, uint8_t v)
{
    b_put(b, &v, 1);
}

static void b_u32(builder *b, uint32_t v)
{
    uint8_t p[4];
    tg_store_le32(p, v);
    b_put(b, p, 4);
}

static void b_u64(builder *b, uint64_t v)
{
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}

/* Where the next byte goes, relative to the buffer (for patching a size later). */
static size_t b_here(const builder *b)
{
    return b->out->len;
}

/* Patches the int32 at `at` with the bytes written since `at` (TG_EINVAL above INT32_MAX). */
static void b_patch_size(builder *b, size_t at)
{
    if (b->failed)
        return;
    size_t n = b->out->len - at;
    if (n > INT32_MAX) {
        b_fail(b, TG_EINVAL);
        return;
    }
    tg_store_le32(b->out->data + at, (uint32_t)n);
}

static int b_end(builder *b)
{
    if (b->failed) {
        b->out->len = b->start;
        return b->err;
    }
    return 0;
}

static void b_header(builder *b, int32_t request_id, int32_t response_to, int32_t op_code)
{
    b_u32(b, 0); /* messageLength, patched by b_end_message */
    b_u32(b, (uint32_t)request_id);
    b_u32(b, (uint32_t)response_to);
    b_u32(b, (uint32_t)op_code);
}

/* Patches messageLength, then appends the CRC-32C of the whole message when asked. */
static int b_end_message(builder *b, bool checksum)
{
    if (!b->failed) {
        size_t n = b->out->len - b->start + (checksum ? 4 : 0);
        if (n > INT32_MAX)
            b_fail(b, TG_EINVAL);
        else
            tg_store_le32(b->out->data + b->start, (uint32_t)n);
    }
    if (checksum && !b->failed)
        b_u32(b, tg_mongo_crc32c(0, b->out->data + b->start, b->out->len - b->start));
    return b_end(b);
}

/* A sequence the builder may write: identifier and framing as tg_mongo_parse_msg wants them. */
static bool seq_ok(const tg_mongo_seq *s, const bson_t *body)
{
    if (s->identifier.len == 0 || !s->identifier.base ||
        memchr(s->identifier.base, 0, s->identifier.len) ||
        !utf8_valid(s->identifier.base, s->identifier.len, false))
        return false;
    if (s->docs.len > 0 && !s->docs.base)
        return false;
    tg_slice cur = s->docs, doc;
    int rc;
    while ((rc = tg_mongo_seq_next(&cur, &doc)) == 1)
        ;
    if (rc < 0)
        return false;
    return !doc_has_key((tg_slice){bson_get_data(body), body->len}, s->identifier);
}

int tg_mongo_build_msg(tg_buf *out, int32_t request_id, int32_t response_to, uint32_t flags,
                       const bson_t *body, const tg_mongo_seq *seqs, size_t n_seqs)
{
    if (!body || (flags & TG_MONGO_MSG_REQUIRED_BITS & ~TG_MONGO_MSG_KNOWN_FLAGS) ||
        n_seqs > TG_MONGO_MAX_SEQUENCES || (n_seqs > 0 && !seqs))
        return TG_EINVAL;
    for (size_t i = 0; i < n_seqs; i++) {
        if (!seq_ok(&seqs[i], body))
            return TG_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (slice_eq(seqs[i].identifier, seqs[j].identifier))
                return TG_EINVAL;
    }
    builder b;
    b_init(&b, out);
    b_header(&b, request_id, response_to, OP_MSG);
    b_u32(&b, flags);
    b_u8(&b, 0);
    b_put(&b, bson_get_data(body), body->len);
    for (size_t i = 0; i < n_seqs; i++) {
        b_u8(&b, 1);
        size_t at = b_here(&b);
        b_u32(&b, 0);
        b_put(&b, seqs[i].identifier.base, seqs[i].identifier.len);
        b_u8(&b, 0);
        b_put(&b, seqs[i].docs.base, seqs[i].docs.len);
        b_patch_size(&b, at);
    }
    return b_end_message(&b, (flags & TG_MONGO_MSG_CHECKSUM_PRESENT) != 0);
}

static void b_reply(builder *b, int32_t request_id, int32_t response_to, int32_t response_flags)
{
    b_header(b, request_id, response_to, OP_REPLY);
    b_u32(b, (uint32_t)response_flags);
    b_u64(b, 0); /* cursorID */
    b_u32(b, 0); /* startingFrom */
    b_u32(b, 1); /* numberReturned */
}

int tg_mongo_build_reply(tg_buf *out, int32_t request_id, int32_t response_to,
                         int32_t response_flags, const bson_t *doc)
{
    if (!doc)
        return TG_EINVAL;
    builder b;
    b_init(&b, out);
    b_reply(&b, request_id, response_to, response_flags);
    b_put(&b, bson_get_data(doc), doc->len);
    return b_end_message(&b, false);
}

/* ---- error replies ---- */

/* The reason as valid UTF-8 without NULs, cut at a character boundary. */
static void b_reason(builder *b, const char *reason)
{
    const uint8_t *p = (const uint8_t *)reason;
    size_t n = strlen(reason), written = 0;
    while (n > 0 && !b->failed) {
        size_t c = tg_utf8_next(p, n);
        size_t w = c ? c : 1;
        if (written + w > TG_MONGO_REASON_MAX)
            break;
        if (c)
            b_put(b, p, c);
        else
            b_u8(b, '?');
        written += w;
        p += w;
        n -= w;
    }
}

/* A BSON string element: type, key, int32 size, bytes, NUL (the value written by `value`). */
static void b_string_elem(builder *b, const char *key, const char *prefix, const char *value,
                          bool sanitize)
{
    b_u8(b, BT_STRING);
    b_put(b, key, strlen(key) + 1);
    size_t at = b_here(b);
    b_u32(b, 0);
    b_put(b, prefix, strlen(prefix));
    if (sanitize)
        b_reason(b, value);
    else
        b_put(b, value, strlen(value));
    b_u8(b, 0);
    if (!b->failed)
        tg_store_le32(b->out->data + at, (uint32_t)(b->out->len - at - 4));
}

static void b_error_doc(builder *b, int32_t code, const char *code_name, const char *reason)
{
    static const uint8_t zero_double[8] = {0};
    size_t at = b_here(b);
    b_u32(b, 0);
    b_u8(b, BT_DOUBLE);
    b_put(b, "ok", 3);
    b_put(b, zero_double, sizeof(zero_double));
    b_string_elem(b, "errmsg", "tenantgate: ", reason, true);
    b_u8(b, BT_INT32);
    b_put(b, "code", 5);
    b_u32(b, (uint32_t)code);
    b_string_elem(b, "codeName", "", code_name, false);
    b_u8(b, 0);
    b_patch_size(b, at);
}

int tg_mongo_build_error_doc(tg_buf *out, int32_t code, const char *reason)
{
    const char *name = tg_mongo_error_name(code);
    if (!name || !reason)
        return TG_EINVAL;
    builder b;
    b_init(&b, out);
    b_error_doc(&b, code, name, reason);
    return b_end(&b);
}

int tg_mongo_build_error_msg(tg_buf *out, int32_t request_id, int32_t response_to, int32_t code,
                             const char *reason)
{
    const char *name = tg_mongo_error_name(code);
    if (!name || !reason)
        return TG_EINVAL;
    builder b;
    b_init(&b, out);
    b_header(&b, request_id, response_to, OP_MSG);
    b_u32(&b, 0); /* flagBits */
    b_u8(&b, 0);  /* kind 0 */
    b_error_doc(&b, code, name, reason);
    return b_end_message(&b, false);
}

int tg_mongo_build_error_reply(tg_buf *out, int32_t request_id, int32_t response_to, int32_t code,
                               const char *reason)
{
    const char *name = tg_mongo_error_name(code);
    if (!name || !reason)
        return TG_EINVAL;
    builder b;
    b_init(&b, out);
    b_reply(&b, request_id, response_to, 0);
    b_error_doc(&b, code, name, reason);
    return b_end_message(&b, false);
}

int tg_mongo_build_reject(tg_buf *out, int32_t request_id, int32_t response_to, const char *reason)
{
    return tg_mongo_build_error_msg(out, request_id, response_to, TG_MONGO_ERR_UNAUTHORIZED,
                                    reason);
}

int tg_mongo_build_auth_failed(tg_buf *out, int32_t request_id, int32_t response_to,
                               const char *reason)
{
    return tg_mongo_build_error_msg(out, request_id, response_to,
                                    TG_MONGO_ERR_AUTHENTICATION_FAILED, reason);
}

/* ---- CRC-32C ---- */

/*
 * The reflected Castagnoli table (polynomial 0x82F63B78): entry i is the CRC
 * of the byte i shifted through eight rounds of
 * c = c & 1 ? (c >> 1) ^ 0x82F63B78 : c >> 1. The unit test recomputes it.
 */
static const uint32_t crc32c_table[256] = {
    0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c, 0x26a1e7e8, 0xd4ca64eb,
    0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b, 0x4d43cfd0, 0xbf284cd3, 0xac78bf27, 0x5e133c24,
    0x105ec76f, 0xe235446c, 0xf165b798, 0x030e349b, 0xd7c45070, 0x25afd373, 0x36ff2087, 0xc494a384,
    0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54, 0x5d1d08bf, 0xaf768bbc, 0xbc267848, 0x4e4dfb4b,
    0x20bd8ede, 0xd2d60ddd, 0xc186fe29, 0x33ed7d2a, 0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35,
    0xaa64d611, 0x580f5512, 0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa,
    0x30e349b1, 0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad, 0x1642ae59, 0xe4292d5a,
    0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a, 0x7da08661, 0x8fcb0562, 0x9c9bf696, 0x6ef07595,
    0x417b1dbc, 0xb3109ebf, 0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0, 0x67dafa54, 0x95b17957,
    0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c, 0xfe53516f, 0xed03a29b, 0x1f682198,
    0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927, 0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38,
    0xdbfc821c, 0x2997011f, 0x3ac7f2eb, 0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7,
    0x61c69362, 0x93ad1061, 0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e, 0x4767748a, 0xb50cf789,
    0xeb1fcbad, 0x197448ae, 0x0a24bb5a, 0xf84f3859, 0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46,
    0x7198540d, 0x83f3d70e, 0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5, 0xa55230e6,
    0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de, 0xdde0eb2a, 0x2f8b6829,
    0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c, 0x456cac67, 0xb7072f64, 0xa457dc90, 0x563c5f93,
    0x082f63b7, 0xfa44e0b4, 0xe9141340, 0x1b7f9043, 0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c,
    0x92a8fc17, 0x60c37f14, 0x73938ce0, 0x81f80fe3, 0x55326b08, 0xa759e80b, 0xb4091bff, 0x466298fc,
    0x1871a4d8, 0xea1a27db, 0xf94ad42f, 0x0b21572c, 0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033,
    0xa24bb5a6, 0x502036a5, 0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
    0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975, 0x0e330a81, 0xfc588982,
    0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d, 0x758fe5d6, 0x87e466d5, 0x94b49521, 0x66df1622,
    0x38cc2a06, 0xcaa7a905, 0xd9f75af1, 0x2b9cd9f2, 0xff56bd19, 0x0d3d3e1a, 0x1e6dcdee, 0xec064eed,
    0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530, 0x0417b1db, 0xf67c32d8, 0xe52cc12c, 0x1747422f,
    0x49547e0b, 0xbb3ffd08, 0xa86f0efc, 0x5a048dff, 0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0,
    0xd3d3e1ab, 0x21b862a8, 0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540,
    0x590ab964, 0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78, 0x7fab5e8c, 0x8dc0dd8f,
    0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee, 0x24aa3f05, 0xd6c1bc06, 0xc5914ff2, 0x37faccf1,
    0x69e9f0d5, 0x9b8273d6, 0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9, 0x4f48173d, 0xbd23943e,
    0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a, 0xc69f7b69, 0xd5cf889d, 0x27a40b9e,
    0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e, 0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

uint32_t tg_mongo_crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (len--)
        c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#ifdef TG_CRC32C_SSE42
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
                                                               size_t len)
{
    uint64_t c = ~crc & 0xffffffffu;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t v;
        memcpy(&v, p, 8); /* unaligned, little-endian like the wire */
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    for (; len > 0; p++, len--)
        c32 = _mm_crc32_u8(c32, *p);
    return ~c32;
}
#endif

uint32_t tg_mongo_crc32c(uint32_t crc, const void *data, size_t len)
{
#ifdef TG_CRC32C_SSE42
    /* __builtin_cpu_supports reads what libgcc's constructor detected: no state of ours. */
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_sse42(crc, data, len);
#endif
    return tg_mongo_crc32c_portable(crc, data, len);
}
