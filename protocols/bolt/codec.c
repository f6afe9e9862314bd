/*
 * Bolt wire codec: handshake, chunked framing, message shapes, builders.
 *
 *   handshake:  60 60 B0 17 | 4 x (reserved, range, minor, major)
 *               --> first proposal (client order) holding a supported version
 *               --> highest supported version in it --> 00 00 minor major
 *
 *   framing:    [size:u16 | data]... 00 00          one message
 *               00 00 (at a message boundary)        NOOP
 *
 *               chunk header --size 0, first--> NOOP
 *                            --size 0--------> end of message
 *                            --size n--------> message bytes so far + n > max? TOOBIG
 *                                              else wait for n bytes, next header
 *
 *   messages:   PackStream structure: signature = tag, fields = the message's
 *               fields. tg_bolt_check holds a decoded message to the tables
 *               below, one row per message, dictionary key and value
 *               structure, each with the Bolt versions it exists in:
 *               adding a key or a version is one row.
 *
 *   building:   tg_bolt_begin leaves room for one chunk header, the fields
 *               are put with the PackStream builder, tg_bolt_end splits the
 *               message into 65,535-byte chunks in place (moving them apart
 *               from the last one back) and adds the end marker.
 */
#include "protocols/bolt/codec.h"

#include <string.h>

#include "proxy/byteorder.h"
#include "proxy/error.h"

static const uint8_t magic[4] = {0x60, 0x60, 0xB0, 0x17};

/* ---- handshake ---- */

ssize_t tg_bolt_decode_handshake(const uint8_t *buf, size_t len, tg_bolt_handshake *out)
{
    for (size_t i = 0; i < len && i < 4; i++)
        if (buf[i] != magic[i])
            return TG_EPROTO;
    if (len < TG_BOLT_HANDSHAKE_SIZE)
        return TG_NEED_MORE;
    for (int k = 0; k < 4; k++)
        out->proposals[k] = tg_load_be32(buf + 4 + 4 * k);
    return TG_BOLT_HANDSHAKE_SIZE;
}

uint16_t tg_bolt_negotiate(const tg_bolt_handshake *hs, const uint16_t *supported, size_t n,
                           unsigned flags)
{
    for (int k = 0; k < 4; k++) {
        uint32_t p = hs->proposals[k];
        uint8_t reserved = (uint8_t)(p >> 24), range = (uint8_t)(p >> 16);
        uint8_t minor = (uint8_t)(p >> 8), major = (uint8_t)p;
        if (p == 0)
            continue;
        if (major == 0xFF) {
            if (p == 0x000001FFu && (flags & TG_BOLT_NEGOTIATE_MANIFEST))
                return TG_BOLT_MANIFEST_V1;
            continue; /* a manifest we do not speak, or were told not to */
        }
        if (reserved != 0)
            continue;
        uint8_t lo = range > minor ? 0 : (uint8_t)(minor - range);
        uint16_t best = 0;
        for (size_t i = 0; i < n; i++) {
            uint16_t v = supported[i];
            if (TG_BOLT_MAJOR(v) == major && TG_BOLT_MINOR(v) >= lo && TG_BOLT_MINOR(v) <= minor &&
                v > best)
                best = v;
        }
        if (best)
            return best;
    }
    return 0;
}

void tg_bolt_version_reply(uint16_t version, uint8_t out[4])
{
    out[0] = 0;
    out[1] = 0;
    out[2] = TG_BOLT_MINOR(version);
    out[3] = TG_BOLT_MAJOR(version);
}

uint32_t tg_bolt_proposal(uint16_t version, uint8_t range)
{
    return ((uint32_t)range << 16) | ((uint32_t)TG_BOLT_MINOR(version) << 8) |
           TG_BOLT_MAJOR(version);
}

int tg_bolt_write_handshake(tg_buf *out, const uint32_t proposals[4])
{
    uint8_t hs[TG_BOLT_HANDSHAKE_SIZE];
    memcpy(hs, magic, 4);
    for (int k = 0; k < 4; k++)
        tg_store_be32(hs + 4 + 4 * k, proposals[k]);
    return tg_buf_append(out, hs, sizeof(hs));
}

ssize_t tg_bolt_decode_version_reply(const uint8_t *buf, size_t len, uint16_t *version)
{
    for (size_t i = 0; i < len && i < 2; i++)
        if (buf[i] != 0)
            return TG_EPROTO;
    if (len < 4)
        return TG_NEED_MORE;
    uint8_t minor = buf[2], major = buf[3];
    if (major == 0xFF || (major == 0 && minor != 0))
        return TG_EPROTO;
    *version = TG_BOLT_V(major, minor);
    return 4;
}

/* Appends v as an unsigned LEB128 varint; returns the bytes written (at most 10). */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

int tg_bolt_write_manifest(tg_buf *out, const uint16_t *supported, size_t n, uint64_t capabilities)
{
    uint16_t v[64];
    if (n == 0 || n > 64)
        return TG_EINVAL;
    /* Highest first, duplicates dropped. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = m;
        while (j > 0 && v[j - 1] < supported[i]) {
            v[j] = v[j - 1];
            j--;
        }
        if (j > 0 && v[j - 1] == supported[i]) {
            memmove(v + j, v + j + 1, (m - j) * sizeof(uint16_t));
            continue;
        }
        v[j] = supported[i];
        m++;
    }
    uint8_t entries[64 * 4];
    size_t count = 0;
    for (size_t i = 0; i < m;) {
        size_t j = i;
        while (j + 1 < m && TG_BOLT_MAJOR(v[j + 1]) == TG_BOLT_MAJOR(v[i]) &&
               TG_BOLT_MINOR(v[j + 1]) + 1 == TG_BOLT_MINOR(v[j]))
            j++;
        tg_store_be32(entries + 4 * count,
                      tg_bolt_proposal(v[i], (uint8_t)(TG_BOLT_MINOR(v[i]) - TG_BOLT_MINOR(v[j]))));
        count++;
        i = j + 1;
    }
    uint8_t msg[4 + 10 + sizeof(entries) + 10] = {0, 0, 1, 0xFF};
    size_t len = 4;
    len += put_varint(msg + len, count);
    memcpy(msg + len, entries, 4 * count);
    len += 4 * count;
    len += put_varint(msg + len, capabilities);
    return tg_buf_append(out, msg, len);
}

ssize_t tg_bolt_decode_manifest_choice(const uint8_t *buf, size_t len, const uint16_t *supported,
                                       size_t n, uint64_t offered, uint16_t *version,
                                       uint64_t *capabilities)
{
    for (size_t i = 0; i < len && i < 2; i++)
        if (buf[i] != 0)
            return TG_EPROTO; /* reserved, then a range: the choice is one version */
    if (len < 4)
        return TG_NEED_MORE;
    uint16_t v = TG_BOLT_V(buf[3], buf[2]);
    bool known = false;
    for (size_t i = 0; i < n; i++)
        known |= supported[i] == v;
    if (!known || v == 0)
        return TG_EPROTO;
    uint64_t caps = 0;
    for (size_t i = 0;; i++) {
        if (i == 10)
            return TG_EPROTO;
        if (4 + i >= len)
            return TG_NEED_MORE;
        uint8_t b = buf[4 + i];
        if (i == 9 && b > 1)
            return TG_EPROTO; /* beyond 64 bits */
        caps |= (uint64_t)(b & 0x7F) << (7 * i);
        if (b & 0x80)
            continue;
        if (b == 0 && i > 0)
            return TG_EPROTO; /* not minimal */
        if (caps & ~offered)
            return TG_EPROTO;
        *version = v;
        *capabilities = caps;
        return (ssize_t)(4 + i + 1);
    }
}

/* ---- framing ---- */

ssize_t tg_bolt_decode_frame(const uint8_t *buf, size_t len, size_t max_msg, tg_bolt_scan *scan,
                             tg_bolt_frame *out)
{
    tg_bolt_scan s = {0, 0, 0};
    if (scan && scan->pos <= len && scan->len <= max_msg)
        s = *scan;
    for (;;) {
        if (len - s.pos < 2) {
            if (scan)
                *scan = s;
            return TG_NEED_MORE;
        }
        size_t n = tg_load_be16(buf + s.pos);
        if (n == 0) {
            out->size = s.pos + 2;
            out->len = s.len;
            out->chunks = s.chunks;
            if (scan)
                *scan = (tg_bolt_scan){0, 0, 0};
            return (ssize_t)out->size;
        }
        if (n > max_msg - s.len)
            return TG_ETOOBIG;
        if (len - s.pos - 2 < n) {
            if (scan)
                *scan = s;
            return TG_NEED_MORE;
        }
        s.len += n;
        s.chunks++;
        s.pos += 2 + n;
    }
}

bool tg_bolt_frame_slice(const uint8_t *buf, const tg_bolt_frame *f, tg_slice *out)
{
    if (f->chunks != 1)
        return false;
    *out = (tg_slice){buf + 2, f->len};
    return true;
}

void tg_bolt_frame_copy(const uint8_t *buf, const tg_bolt_frame *f, uint8_t *dst)
{
    size_t pos = 0, copied = 0;
    while (copied < f->len) {
        size_t n = tg_load_be16(buf + pos);
        memcpy(dst + copied, buf + pos + 2, n);
        copied += n;
        pos += 2 + n;
    }
}

int tg_bolt_write_chunked(tg_buf *out, const void *msg, size_t len, size_t max_chunk)
{
    if (len == 0)
        return TG_EINVAL;
    if (max_chunk == 0 || max_chunk > TG_BOLT_MAX_CHUNK)
        max_chunk = TG_BOLT_MAX_CHUNK;
    size_t chunks = (len + max_chunk - 1) / max_chunk;
    if (chunks > (SIZE_MAX - len - 2) / 2)
        return TG_ENOMEM;
    size_t total = len + 2 * chunks + 2;
    uint8_t *p = tg_buf_reserve(out, total);
    if (!p)
        return TG_ENOMEM;
    const uint8_t *src = msg;
    for (size_t off = 0; off < len; off += max_chunk) {
        size_t n = len - off < max_chunk ? len - off : max_chunk;
        tg_store_be16(p, (uint16_t)n);
        memcpy(p + 2, src + off, n);
        p += 2 + n;
    }
    p[0] = p[1] = 0;
    out->len += total;
    return 0;
}

int tg_bolt_write_noop(tg_buf *out)
{
    static const uint8_t noop[2] = {0, 0};
    return tg_buf_append(out, noop, 2);
}

/* ---- message tables ---- */

const char *tg_bolt_msg_name(uint8_t signature)
{
    switch (signature) {
#define TG_BOLT_MSG_NAME(name, sig, from)                                                          \
    case sig:                                                                                      \
        return #name;
        TG_BOLT_MSG_MAP(TG_BOLT_MSG_NAME)
#undef TG_BOLT_MSG_NAME
    }
    return "unknown";
}

#define V44 TG_BOLT_V(4, 4)
#define V50 TG_BOLT_V(5, 0)
#define V51 TG_BOLT_V(5, 1)
#define V52 TG_BOLT_V(5, 2)
#define V53 TG_BOLT_V(5, 3)
#define V54 TG_BOLT_V(5, 4)
#define V55 TG_BOLT_V(5, 5)
#define V56 TG_BOLT_V(5, 6)

/* What a value must be. K_NULL may be or-ed in: null is accepted too. */
enum {
    K_ANY,
    K_STR,
    K_INT,
    K_BOOL,
    K_FLOAT,
    K_MAP,
    K_LIST,
    K_LIST_STR,     /* List<String> */
    K_LIST_INT,     /* List<Integer> */
    K_MAP_STR,      /* Dictionary of strings */
    K_LIST_NODE,    /* List<Node> */
    K_LIST_UNBOUND, /* List<UnboundRelationship> */
    K_NULL = 0x80,
};

enum { CLIENT = TG_BOLT_FROM_CLIENT, SERVER = TG_BOLT_FROM_SERVER };

/* One message: sender, fields and their kinds, first version; `strict`: dictionary
 * fields (bit k for field k) whose keys must all be in key_rules. */
static const struct msg_rule {
    uint8_t sig;
    uint8_t from;
    uint8_t n_fields;
    uint8_t kinds[TG_BOLT_MAX_MSG_FIELDS];
    uint16_t since;
    uint8_t strict;
} msg_rules[] = {
    {TG_BOLT_HELLO, CLIENT, 1, {K_MAP}, V44, 1},
    {TG_BOLT_GOODBYE, CLIENT, 0, {0}, V44, 0},
    {TG_BOLT_RESET, CLIENT, 0, {0}, V44, 0},
    {TG_BOLT_RUN, CLIENT, 3, {K_STR, K_MAP, K_MAP}, V44, 1 << 2},
    {TG_BOLT_BEGIN, CLIENT, 1, {K_MAP}, V44, 1},
    {TG_BOLT_COMMIT, CLIENT, 0, {0}, V44, 0},
    {TG_BOLT_ROLLBACK, CLIENT, 0, {0}, V44, 0},
    {TG_BOLT_DISCARD, CLIENT, 1, {K_MAP}, V44, 1},
    {TG_BOLT_PULL, CLIENT, 1, {K_MAP}, V44, 1},
    {TG_BOLT_TELEMETRY, CLIENT, 1, {K_INT}, V54, 0},
    {TG_BOLT_ROUTE, CLIENT, 3, {K_MAP, K_LIST_STR, K_MAP}, V44, 1 << 2},
    {TG_BOLT_LOGON, CLIENT, 1, {K_MAP}, V51, 1},
    {TG_BOLT_LOGOFF, CLIENT, 0, {0}, V51, 0},
    {TG_BOLT_SUCCESS, SERVER, 1, {K_MAP}, V44, 0},
    {TG_BOLT_RECORD, SERVER, 1, {K_LIST}, V44, 0},
    {TG_BOLT_IGNORED, SERVER, 0, {0}, V44, 0},
    {TG_BOLT_FAILURE, SERVER, 1, {K_MAP}, V44, 0},
};

/* Key rule flag: the key must be present. */
#define REQUIRED 1

/* One dictionary key of one message field, with the versions it exists in. */
static const struct key_rule {
    uint8_t sig;
    uint8_t field;
    uint8_t kind;
    uint8_t flags;
    uint16_t since, until;
    const char *key;
} key_rules[] = {
    /* HELLO extra; authentication moved to LOGON in 5.1. */
    {TG_BOLT_HELLO, 0, K_STR, 0, V44, V56, "user_agent"},
    {TG_BOLT_HELLO, 0, K_MAP | K_NULL, 0, V44, V56, "routing"},
    {TG_BOLT_HELLO, 0, K_LIST_STR, 0, V44, V44, "patch_bolt"},
    {TG_BOLT_HELLO, 0, K_STR, 0, V44, V50, "scheme"},
    {TG_BOLT_HELLO, 0, K_STR, 0, V44, V50, "principal"},
    {TG_BOLT_HELLO, 0, K_STR, 0, V44, V50, "credentials"},
    {TG_BOLT_HELLO, 0, K_STR, 0, V44, V50, "realm"},
    {TG_BOLT_HELLO, 0, K_MAP, 0, V44, V50, "parameters"},
    {TG_BOLT_HELLO, 0, K_STR, 0, V52, V56, "notifications_minimum_severity"},
    {TG_BOLT_HELLO, 0, K_LIST_STR, 0, V52, V54, "notifications_disabled_categories"},
    {TG_BOLT_HELLO, 0, K_LIST_STR, 0, V55, V56, "notifications_disabled_classifications"},
    {TG_BOLT_HELLO, 0, K_MAP_STR, 0, V53, V56, "bolt_agent"},
    /* LOGON auth. */
    {TG_BOLT_LOGON, 0, K_STR, 0, V51, V56, "scheme"},
    {TG_BOLT_LOGON, 0, K_STR, 0, V51, V56, "principal"},
    {TG_BOLT_LOGON, 0, K_STR, 0, V51, V56, "credentials"},
    {TG_BOLT_LOGON, 0, K_STR, 0, V51, V56, "realm"},
    {TG_BOLT_LOGON, 0, K_MAP, 0, V51, V56, "parameters"},
    /* RUN extra. */
    {TG_BOLT_RUN, 2, K_LIST_STR, 0, V44, V56, "bookmarks"},
    {TG_BOLT_RUN, 2, K_INT, 0, V44, V56, "tx_timeout"},
    {TG_BOLT_RUN, 2, K_MAP | K_NULL, 0, V44, V56, "tx_metadata"},
    {TG_BOLT_RUN, 2, K_STR, 0, V44, V56, "mode"},
    {TG_BOLT_RUN, 2, K_STR | K_NULL, 0, V44, V56, "db"},
    {TG_BOLT_RUN, 2, K_STR | K_NULL, 0, V44, V56, "imp_user"},
    {TG_BOLT_RUN, 2, K_STR, 0, V52, V56, "notifications_minimum_severity"},
    {TG_BOLT_RUN, 2, K_LIST_STR, 0, V52, V54, "notifications_disabled_categories"},
    {TG_BOLT_RUN, 2, K_LIST_STR, 0, V55, V56, "notifications_disabled_classifications"},
    /* BEGIN extra. */
    {TG_BOLT_BEGIN, 0, K_LIST_STR, 0, V44, V56, "bookmarks"},
    {TG_BOLT_BEGIN, 0, K_INT, 0, V44, V56, "tx_timeout"},
    {TG_BOLT_BEGIN, 0, K_MAP | K_NULL, 0, V44, V56, "tx_metadata"},
    {TG_BOLT_BEGIN, 0, K_STR, 0, V44, V56, "mode"},
    {TG_BOLT_BEGIN, 0, K_STR | K_NULL, 0, V44, V56, "db"},
    {TG_BOLT_BEGIN, 0, K_STR | K_NULL, 0, V44, V56, "imp_user"},
    {TG_BOLT_BEGIN, 0, K_STR, 0, V52, V56, "notifications_minimum_severity"},
    {TG_BOLT_BEGIN, 0, K_LIST_STR, 0, V52, V54, "notifications_disabled_categories"},
    {TG_BOLT_BEGIN, 0, K_LIST_STR, 0, V55, V56, "notifications_disabled_classifications"},
    /* PULL / DISCARD. */
    {TG_BOLT_PULL, 0, K_INT, REQUIRED, V44, V56, "n"},
    {TG_BOLT_PULL, 0, K_INT, 0, V44, V56, "qid"},
    {TG_BOLT_DISCARD, 0, K_INT, REQUIRED, V44, V56, "n"},
    {TG_BOLT_DISCARD, 0, K_INT, 0, V44, V56, "qid"},
    /* ROUTE extra (4.4+: a dictionary, not 4.3's database string). */
    {TG_BOLT_ROUTE, 2, K_STR | K_NULL, 0, V44, V56, "db"},
    {TG_BOLT_ROUTE, 2, K_STR | K_NULL, 0, V44, V56, "imp_user"},
    /* SUCCESS metadata the session reads (other keys pass). */
    {TG_BOLT_SUCCESS, 0, K_STR, 0, V44, V56, "server"},
    {TG_BOLT_SUCCESS, 0, K_STR, 0, V44, V56, "connection_id"},
    {TG_BOLT_SUCCESS, 0, K_MAP, 0, V44, V56, "hints"},
    {TG_BOLT_SUCCESS, 0, K_LIST_STR, 0, V44, V44, "patch_bolt"},
    {TG_BOLT_SUCCESS, 0, K_LIST_STR, 0, V44, V56, "fields"},
    {TG_BOLT_SUCCESS, 0, K_INT, 0, V44, V56, "t_first"},
    {TG_BOLT_SUCCESS, 0, K_INT, 0, V44, V56, "t_last"},
    {TG_BOLT_SUCCESS, 0, K_INT, 0, V44, V56, "qid"},
    {TG_BOLT_SUCCESS, 0, K_BOOL, 0, V44, V56, "has_more"},
    {TG_BOLT_SUCCESS, 0, K_STR, 0, V44, V56, "bookmark"},
    {TG_BOLT_SUCCESS, 0, K_STR, 0, V44, V56, "db"},
    {TG_BOLT_SUCCESS, 0, K_STR, 0, V44, V56, "type"},
    {TG_BOLT_SUCCESS, 0, K_MAP, 0, V44, V56, "rt"},
    /* FAILURE metadata. */
    {TG_BOLT_FAILURE, 0, K_STR, REQUIRED, V44, V56, "code"},
    {TG_BOLT_FAILURE, 0, K_STR, REQUIRED, V44, V56, "message"},
};

/* Structure rule flags. */
#define GRAPH 1  /* a graph entity: replies only */
#define UTC 2    /* 5.x, or 4.4 with the utc patch */
#define LEGACY 4 /* 4.4 without the utc patch */
#define PATH 8   /* indices checked against the lists */

/* One value structure in the versions it has this shape. */
static const struct struct_rule {
    uint8_t tag;
    uint8_t n_fields;
    uint8_t flags;
    uint16_t since, until;
    uint8_t kinds[8];
} struct_rules[] = {
    {TG_BOLT_S_NODE, 3, GRAPH, V44, V44, {K_INT, K_LIST_STR, K_MAP}},
    {TG_BOLT_S_NODE, 4, GRAPH, V50, V56, {K_INT, K_LIST_STR, K_MAP, K_STR}},
    {TG_BOLT_S_RELATIONSHIP, 5, GRAPH, V44, V44, {K_INT, K_INT, K_INT, K_STR, K_MAP}},
    {TG_BOLT_S_RELATIONSHIP,
     8,
     GRAPH,
     V50,
     V56,
     {K_INT, K_INT, K_INT, K_STR, K_MAP, K_STR, K_STR, K_STR}},
    {TG_BOLT_S_UNBOUND_RELATIONSHIP, 3, GRAPH, V44, V44, {K_INT, K_STR, K_MAP}},
    {TG_BOLT_S_UNBOUND_RELATIONSHIP, 4, GRAPH, V50, V56, {K_INT, K_STR, K_MAP, K_STR}},
    {TG_BOLT_S_PATH, 3, GRAPH | PATH, V44, V56, {K_LIST_NODE, K_LIST_UNBOUND, K_LIST_INT}},
    {TG_BOLT_S_DATE, 1, 0, V44, V56, {K_INT}},
    {TG_BOLT_S_TIME, 2, 0, V44, V56, {K_INT, K_INT}},
    {TG_BOLT_S_LOCAL_TIME, 1, 0, V44, V56, {K_INT}},
    {TG_BOLT_S_DATE_TIME, 3, UTC, V44, V56, {K_INT, K_INT, K_INT}},
    {TG_BOLT_S_DATE_TIME_ZONE_ID, 3, UTC, V44, V56, {K_INT, K_INT, K_STR}},
    {TG_BOLT_S_LEGACY_DATE_TIME, 3, LEGACY, V44, V44, {K_INT, K_INT, K_INT}},
    {TG_BOLT_S_LEGACY_DATE_TIME_ZONE_ID, 3, LEGACY, V44, V44, {K_INT, K_INT, K_STR}},
    {TG_BOLT_S_LOCAL_DATE_TIME, 2, 0, V44, V56, {K_INT, K_INT}},
    {TG_BOLT_S_DURATION, 4, 0, V44, V56, {K_INT, K_INT, K_INT, K_INT}},
    {TG_BOLT_S_POINT_2D, 3, 0, V44, V56, {K_INT, K_FLOAT, K_FLOAT}},
    {TG_BOLT_S_POINT_3D, 4, 0, V44, V56, {K_INT, K_FLOAT, K_FLOAT, K_FLOAT}},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- checking ---- */

static bool all_children(const tg_ps_doc *d, uint32_t i, uint8_t type, int tag)
{
    uint32_t j = i + 1;
    for (uint32_t k = 0; k < d->v[i].count; k++) {
        if (d->v[j].type != type || (tag >= 0 && d->v[j].tag != tag))
            return false;
        j = d->v[j].next;
    }
    return true;
}

static bool kind_ok(const tg_ps_doc *d, uint32_t i, uint8_t kind)
{
    const tg_ps_value *v = &d->v[i];
    if ((kind & K_NULL) && v->type == TG_PS_T_NULL)
        return true;
    switch (kind & ~K_NULL) {
    case K_ANY:
        return true;
    case K_STR:
        return v->type == TG_PS_T_STRING;
    case K_INT:
        return v->type == TG_PS_T_INT;
    case K_BOOL:
        return v->type == TG_PS_T_BOOL;
    case K_FLOAT:
        return v->type == TG_PS_T_FLOAT;
    case K_MAP:
        return v->type == TG_PS_T_MAP;
    case K_LIST:
        return v->type == TG_PS_T_LIST;
    case K_LIST_STR:
        return v->type == TG_PS_T_LIST && all_children(d, i, TG_PS_T_STRING, -1);
    case K_LIST_INT:
        return v->type == TG_PS_T_LIST && all_children(d, i, TG_PS_T_INT, -1);
    case K_LIST_NODE:
        return v->type == TG_PS_T_LIST && all_children(d, i, TG_PS_T_STRUCT, TG_BOLT_S_NODE);
    case K_LIST_UNBOUND:
        return v->type == TG_PS_T_LIST &&
               all_children(d, i, TG_PS_T_STRUCT, TG_BOLT_S_UNBOUND_RELATIONSHIP);
    case K_MAP_STR: {
        if (v->type != TG_PS_T_MAP)
            return false;
        uint32_t j = i + 1;
        for (uint32_t k = 0; k < v->count; k++) {
            if (d->v[j + 1].type != TG_PS_T_STRING)
                return false;
            j = d->v[j + 1].next;
        }
        return true;
    }
    default:
        return false;
    }
}

static bool version_known(uint16_t v)
{
    return v == V44 || (v >= V50 && v <= V56);
}

static const struct msg_rule *find_msg(uint8_t sig)
{
    for (size_t r = 0; r < COUNT(msg_rules); r++)
        if (msg_rules[r].sig == sig)
            return &msg_rules[r];
    return NULL;
}

static const struct key_rule *find_key(uint8_t sig, uint32_t field, uint16_t version, tg_slice key)
{
    for (size_t r = 0; r < COUNT(key_rules); r++) {
        const struct key_rule *k = &key_rules[r];
        if (k->sig == sig && k->field == field && version >= k->since && version <= k->until &&
            tg_slice_eq_str(key, k->key))
            return k;
    }
    return NULL;
}

/* Checks the keys of dictionary field `field` (value index i) of message sig. */
static int check_keys(const tg_ps_doc *d, uint8_t sig, uint32_t field, uint32_t i, uint16_t version,
                      bool strict, const char **why)
{
    uint32_t j = i + 1;
    for (uint32_t e = 0; e < d->v[i].count; e++) {
        const struct key_rule *k = find_key(sig, field, version, d->v[j].u.s);
        if (!k && strict) {
            *why = "dictionary key not defined for this message and version";
            return TG_EPROTO;
        }
        if (k && !kind_ok(d, j + 1, k->kind)) {
            *why = "dictionary value of the wrong type";
            return TG_EPROTO;
        }
        j = d->v[j + 1].next;
    }
    for (size_t r = 0; r < COUNT(key_rules); r++) {
        const struct key_rule *k = &key_rules[r];
        if (k->sig == sig && k->field == field && (k->flags & REQUIRED) && version >= k->since &&
            version <= k->until && tg_ps_map_get(d, i, tg_slice_str(k->key)) == 0) {
            *why = "required dictionary key missing";
            return TG_EPROTO;
        }
    }
    return 0;
}

static const struct struct_rule *find_struct(uint8_t tag, uint16_t version, unsigned flags,
                                             bool *tag_known)
{
    bool utc = version >= V50 || (flags & TG_BOLT_PATCH_UTC);
    *tag_known = false;
    for (size_t r = 0; r < COUNT(struct_rules); r++) {
        const struct struct_rule *s = &struct_rules[r];
        if (s->tag != tag)
            continue;
        *tag_known = true;
        if (version < s->since || version > s->until)
            continue;
        if ((s->flags & UTC) && !utc)
            continue;
        if ((s->flags & LEGACY) && utc)
            continue;
        return s;
    }
    return NULL;
}

/* Path: indices pair up (relationship 1..n or -1..-n, node 0..m-1); the path starts at node 0. */
static bool path_ok(const tg_ps_doc *d, uint32_t p)
{
    uint32_t nodes = p + 1, rels = d->v[nodes].next, idx = d->v[rels].next;
    int64_t n_nodes = d->v[nodes].count, n_rels = d->v[rels].count;
    if (n_nodes < 1 || d->v[idx].count % 2 != 0)
        return false;
    uint32_t j = idx + 1;
    for (uint32_t k = 0; k < d->v[idx].count; k++) {
        int64_t x = d->v[j].u.i;
        if (k % 2 == 0 ? (x == 0 || x > n_rels || x < -n_rels) : (x < 0 || x >= n_nodes))
            return false;
        j = d->v[j].next;
    }
    return true;
}

/* Every structure below the message is a value structure of this version and sender. */
static int check_structs(const tg_ps_doc *d, uint16_t version, unsigned flags, tg_bolt_dir dir,
                         const char **why)
{
    for (uint32_t i = 1; i < d->n; i++) {
        const tg_ps_value *v = &d->v[i];
        if (v->type != TG_PS_T_STRUCT)
            continue;
        bool tag_known;
        const struct struct_rule *s = find_struct(v->tag, version, flags, &tag_known);
        if (!s) {
            *why = tag_known ? "value structure not defined in this version"
                             : "unknown value structure";
            return TG_EPROTO;
        }
        if ((s->flags & GRAPH) && dir == TG_BOLT_FROM_CLIENT) {
            *why = "graph entity in a request";
            return TG_EPROTO;
        }
        if (v->count != s->n_fields) {
            *why = "value structure with the wrong number of fields";
            return TG_EPROTO;
        }
        uint32_t j = i + 1;
        for (uint32_t k = 0; k < v->count; k++) {
            if (!kind_ok(d, j, s->kinds[k])) {
                *why = "value structure field of the wrong type";
                return TG_EPROTO;
            }
            j = d->v[j].next;
        }
        if ((s->flags & PATH) && !path_ok(d, i)) {
            *why = "path indices out of range";
            return TG_EPROTO;
        }
    }
    return 0;
}

int tg_bolt_check(const tg_ps_doc *d, uint16_t version, unsigned flags, tg_bolt_dir dir,
                  tg_bolt_msg *out, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    if (!version_known(version)) {
        *why = "unsupported Bolt version";
        return TG_EINVAL;
    }
    if (d->n == 0 || d->v[0].type != TG_PS_T_STRUCT) {
        *why = "message is not a structure";
        return TG_EPROTO;
    }
    const tg_ps_value *root = &d->v[0];
    const struct msg_rule *m = find_msg(root->tag);
    if (!m || m->from != dir || version < m->since) {
        *why = m ? "message not valid from this sender or in this version" : "unknown message";
        return TG_EPROTO;
    }
    if (root->count != m->n_fields) {
        *why = "message with the wrong number of fields";
        return TG_EPROTO;
    }
    tg_bolt_msg msg = {.signature = root->tag, .n_fields = root->count};
    uint32_t j = 1;
    for (uint32_t k = 0; k < m->n_fields; k++) {
        msg.field[k] = j;
        if (!kind_ok(d, j, m->kinds[k])) {
            *why = "message field of the wrong type";
            return TG_EPROTO;
        }
        if (d->v[j].type == TG_PS_T_MAP) {
            int rc = check_keys(d, m->sig, k, j, version, (m->strict >> k) & 1, why);
            if (rc < 0)
                return rc;
        }
        j = d->v[j].next;
    }
    int rc = check_structs(d, version, flags, dir, why);
    if (rc < 0)
        return rc;
    *out = msg;
    return 0;
}

int tg_bolt_decode_msg(tg_ps_doc *d, const uint8_t *msg, size_t len, const tg_ps_limits *lim,
                       uint16_t version, unsigned flags, tg_bolt_dir dir, tg_bolt_msg *out,
                       const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    int rc = tg_ps_decode(d, msg, len, lim);
    switch (rc) {
    case 0:
        return tg_bolt_check(d, version, flags, dir, out, why);
    case TG_ETOOBIG:
        *why = "PackStream nesting or value count over the limit";
        return rc;
    case TG_ENOMEM:
        *why = "out of memory";
        return rc;
    default:
        *why = "malformed PackStream";
        return rc;
    }
}

/* ---- building ---- */

void tg_bolt_begin(tg_bolt_builder *b, tg_buf *out, uint8_t signature, uint32_t n_fields)
{
    static const uint8_t placeholder[2] = {0, 0};
    b->start = out->len;
    int rc = tg_buf_append(out, placeholder, 2);
    tg_ps_begin(&b->ps, out);
    if (rc < 0) {
        b->ps.failed = true;
        b->ps.err = rc;
        return;
    }
    tg_ps_put_struct(&b->ps, signature, n_fields);
}

int tg_bolt_end(tg_bolt_builder *b)
{
    tg_buf *out = b->ps.out;
    int rc = tg_ps_end(&b->ps);
    if (rc < 0) {
        out->len = b->start;
        return rc;
    }
    size_t len = out->len - b->start - 2;
    size_t chunks = (len + TG_BOLT_MAX_CHUNK - 1) / TG_BOLT_MAX_CHUNK;
    size_t extra = 2 * (chunks - 1) + 2;
    if (!tg_buf_reserve(out, extra)) {
        out->len = b->start;
        return TG_ENOMEM;
    }
    uint8_t *base = out->data + b->start;
    /* Chunk k moves 2k bytes up; from the last down, no chunk overwrites one not yet moved. */
    for (size_t k = chunks - 1; k > 0; k--) {
        size_t src = 2 + k * TG_BOLT_MAX_CHUNK, dst = 2 + k * (TG_BOLT_MAX_CHUNK + 2);
        size_t n = len - k * TG_BOLT_MAX_CHUNK;
        if (n > TG_BOLT_MAX_CHUNK)
            n = TG_BOLT_MAX_CHUNK;
        memmove(base + dst, base + src, n);
        tg_store_be16(base + dst - 2, (uint16_t)n);
    }
    tg_store_be16(base, (uint16_t)(len < TG_BOLT_MAX_CHUNK ? len : TG_BOLT_MAX_CHUNK));
    base[2 + len + 2 * (chunks - 1)] = 0;
    base[2 + len + 2 * (chunks - 1) + 1] = 0;
    out->len += extra;
    return 0;
}

int tg_bolt_build_empty(tg_buf *out, uint8_t signature)
{
    tg_bolt_builder b;
    tg_bolt_begin(&b, out, signature, 0);
    return tg_bolt_end(&b);
}

int tg_bolt_build_success(tg_buf *out)
{
    tg_bolt_builder b;
    tg_bolt_begin(&b, out, TG_BOLT_SUCCESS, 1);
    tg_ps_put_map(&b.ps, 0);
    return tg_bolt_end(&b);
}

int tg_bolt_build_failure(tg_buf *out, const char *code, const char *message)
{
    tg_bolt_builder b;
    tg_bolt_begin(&b, out, TG_BOLT_FAILURE, 1);
    tg_ps_put_map(&b.ps, 2);
    tg_ps_put_str(&b.ps, "code");
    tg_ps_put_str(&b.ps, code);
    tg_ps_put_str(&b.ps, "message");
    tg_ps_put_str(&b.ps, message);
    return tg_bolt_end(&b);
}

int tg_bolt_build_route_success(tg_buf *out, int64_t ttl_s, const char *db, const char *address)
{
    static const char *const roles[] = {"WRITE", "READ", "ROUTE"};
    tg_bolt_builder b;
    tg_bolt_begin(&b, out, TG_BOLT_SUCCESS, 1);
    tg_ps_put_map(&b.ps, 1);
    tg_ps_put_str(&b.ps, "rt");
    tg_ps_put_map(&b.ps, db ? 3 : 2);
    tg_ps_put_str(&b.ps, "ttl");
    tg_ps_put_int(&b.ps, ttl_s);
    if (db) {
        tg_ps_put_str(&b.ps, "db");
        tg_ps_put_str(&b.ps, db);
    }
    tg_ps_put_str(&b.ps, "servers");
    tg_ps_put_list(&b.ps, 3);
    for (int r = 0; r < 3; r++) {
        tg_ps_put_map(&b.ps, 2);
        tg_ps_put_str(&b.ps, "addresses");
        tg_ps_put_list(&b.ps, 1);
        tg_ps_put_str(&b.ps, address);
        tg_ps_put_str(&b.ps, "role");
        tg_ps_put_str(&b.ps, roles[r]);
    }
    return tg_bolt_end(&b);
}

int tg_bolt_build_run(tg_buf *out, const tg_ps_doc *d, const tg_bolt_msg *m, tg_slice query,
                      const tg_ps_edit *param_edits, size_t n_param_edits,
                      const tg_ps_edit *extra_edits, size_t n_extra_edits)
{
    if (m->signature != TG_BOLT_RUN || m->n_fields != 3)
        return TG_EINVAL;
    tg_bolt_builder b;
    tg_bolt_begin(&b, out, TG_BOLT_RUN, 3);
    tg_ps_put_string(&b.ps, query.base, query.len);
    tg_ps_put_map_edit(&b.ps, d, m->field[1], param_edits, n_param_edits);
    tg_ps_put_map_edit(&b.ps, d, m->field[2], extra_edits, n_extra_edits);
    return tg_bolt_end(&b);
}

int tg_bolt_build_edited(tg_buf *out, const tg_ps_doc *d, const tg_bolt_msg *m,
                         const tg_ps_edit *edits, size_t n_edits)
{
    if (m->n_fields != 1)
        return TG_EINVAL;
    tg_bolt_builder b;
    tg_bolt_begin(&b, out, m->signature, 1);
    tg_ps_put_map_edit(&b.ps, d, m->field[0], edits, n_edits);
    return tg_bolt_end(&b);
}

int tg_bolt_build_auth(tg_buf *out, const tg_ps_doc *d, const tg_bolt_msg *m, const char *user,
                       const char *password)
{
    if ((m->signature != TG_BOLT_HELLO && m->signature != TG_BOLT_LOGON) || !user || !password)
        return TG_EINVAL;
    const tg_ps_edit edits[] = {
        {tg_slice_str("realm"), TG_PS_EDIT_DROP, {NULL, 0}, 0},
        {tg_slice_str("parameters"), TG_PS_EDIT_DROP, {NULL, 0}, 0},
        {tg_slice_str("scheme"), TG_PS_EDIT_SET_STR, tg_slice_str("basic"), 0},
        {tg_slice_str("principal"), TG_PS_EDIT_SET_STR, tg_slice_str(user), 0},
        {tg_slice_str("credentials"), TG_PS_EDIT_SET_STR, tg_slice_str(password), 0},
    };
    return tg_bolt_build_edited(out, d, m, edits, COUNT(edits));
}

int tg_bolt_build_logon(tg_buf *out, const char *user, const char *password)
{
    tg_bolt_builder b;
    tg_bolt_begin(&b, out, TG_BOLT_LOGON, 1);
    tg_ps_put_map(&b.ps, 3);
    tg_ps_put_str(&b.ps, "scheme");
    tg_ps_put_str(&b.ps, "basic");
    tg_ps_put_str(&b.ps, "principal");
    tg_ps_put_str(&b.ps, user);
    tg_ps_put_str(&b.ps, "credentials");
    tg_ps_put_str(&b.ps, password);
    return tg_bolt_end(&b);
}
