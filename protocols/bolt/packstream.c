/*
 * PackStream v1: decoder, accessors and builder.
 *
 *   decode:  one marker at a time, left to right, with an explicit stack of
 *            open containers (no recursion):
 *
 *              marker --scalar--> v[n++] --complete--> parent.left-- --> 0: pop,
 *                                                      the parent completes in turn
 *              marker --list/map/struct, count > 0--> v[n++], push {left = count (map: 2 x)}
 *
 *            `pending` counts the slots still to fill at every level; each
 *            needs at least one byte, so a count that cannot fit in the bytes
 *            left is refused when its header is read, and so is a count that
 *            would take the document past max_values. A dictionary is checked
 *            for duplicate keys when it completes (sorted copy of its keys in
 *            the document's scratch array).
 *
 *   build:   the same stack in reverse: a header pushes the number of values
 *            it announced, every value fills one slot, tg_ps_end insists on
 *            one complete top-level value.
 *
 * Values live in one flat array in encoding order, so a subtree is a
 * contiguous range v[i..v[i].next) whose bytes are contiguous too:
 * re-encoding is a loop, raw copying one memcpy.
 */
#include "protocols/bolt/packstream.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"
#include "proxy/utf8.h"

const char *tg_ps_type_name(tg_ps_type type)
{
    switch (type) {
#define TG_PS_TYPE_NAME(name, desc)                                                                \
    case TG_PS_T_##name:                                                                           \
        return desc;
        TG_PS_TYPE_MAP(TG_PS_TYPE_NAME)
#undef TG_PS_TYPE_NAME
    }
    return "unknown";
}

/* ---- big-endian helpers and two's complement without implementation-defined casts ---- */

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static void put_be(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

/* The signed value of the low `bits` bits of v. */
static int64_t sign_extend(uint64_t v, unsigned bits)
{
    if (bits < 64) {
        uint64_t m = 1ull << (bits - 1);
        v &= (1ull << bits) - 1;
        v = (v ^ m) - m; /* wraps modulo 2^64: the 64-bit two's complement of the value */
    }
    return v <= (uint64_t)INT64_MAX ? (int64_t)v : -(int64_t)(~v) - 1;
}

/* ---- documents ---- */

void tg_ps_doc_init(tg_ps_doc *d)
{
    memset(d, 0, sizeof(*d));
}

void tg_ps_doc_free(tg_ps_doc *d)
{
    free(d->v);
    free(d->keys);
    memset(d, 0, sizeof(*d));
}

void tg_ps_doc_trim(tg_ps_doc *d, uint32_t keep)
{
    if (d->cap > keep || d->keys_cap > keep)
        tg_ps_doc_free(d);
}

/* Room for `need` values: doubles, starting at 64. */
static int reserve_values(tg_ps_doc *d, uint64_t need)
{
    if (need <= d->cap)
        return 0;
    uint64_t cap = d->cap ? d->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    if (cap < need || cap > SIZE_MAX / sizeof(tg_ps_value))
        return TG_ENOMEM;
    tg_ps_value *v = realloc(d->v, (size_t)cap * sizeof(tg_ps_value));
    if (!v)
        return TG_ENOMEM;
    d->v = v;
    d->cap = (uint32_t)cap;
    return 0;
}

static int slice_cmp(const void *a, const void *b)
{
    const tg_slice *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->len ? memcmp(x->base, y->base, x->len) : 0;
}

static bool slice_eq(tg_slice a, tg_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

/* Refuses a dictionary whose keys repeat. */
static int check_unique_keys(tg_ps_doc *d, uint32_t map)
{
    uint32_t count = d->v[map].count;
    if (count < 2)
        return 0;
    if (count <= 8) {
        /* Pairwise for the small dictionaries every message is made of. */
        tg_slice k[8];
        uint32_t j = map + 1;
        for (uint32_t e = 0; e < count; e++) {
            k[e] = d->v[j].u.s;
            for (uint32_t f = 0; f < e; f++)
                if (slice_eq(k[f], k[e]))
                    return TG_EPROTO;
            j = d->v[j + 1].next;
        }
        return 0;
    }
    if (count > d->keys_cap) {
        tg_slice *keys = realloc(d->keys, (size_t)count * sizeof(tg_slice));
        if (!keys)
            return TG_ENOMEM;
        d->keys = keys;
        d->keys_cap = count;
    }
    uint32_t j = map + 1;
    for (uint32_t e = 0; e < count; e++) {
        d->keys[e] = d->v[j].u.s;
        j = d->v[j + 1].next;
    }
    qsort(d->keys, count, sizeof(tg_slice), slice_cmp);
    for (uint32_t e = 1; e < count; e++)
        if (slice_eq(d->keys[e - 1], d->keys[e]))
            return TG_EPROTO;
    return 0;
}

/*
 * Reads the marker at buf[*pos] and what follows it for scalars (the header
 * only for containers) into *val; *slots gets the number of values a
 * container announces (dictionary: twice its entries). Returns 0 with *pos
 * past what was read, or TG_EPROTO.
 */
static int read_one(const uint8_t *buf, size_t len, size_t *pos, tg_ps_value *val, uint64_t *slots)
{
    size_t p = *pos;
    uint8_t m = buf[p++];
    size_t left = len - p;
    uint64_t size = 0;
    size_t width = 0;
    *slots = 0;
    val->type = TG_PS_T_NULL;

    if (m <= 0x7F || m >= 0xF0) {
        val->type = TG_PS_T_INT;
        val->u.i = sign_extend(m, 8);
        *pos = p;
        return 0;
    }
    switch (m >> 4) {
    case 0x8:
        val->type = TG_PS_T_STRING;
        size = m & 0x0F;
        goto sized;
    case 0x9:
        val->type = TG_PS_T_LIST;
        size = m & 0x0F;
        goto container;
    case 0xA:
        val->type = TG_PS_T_MAP;
        size = m & 0x0F;
        goto container;
    case 0xB:
        val->type = TG_PS_T_STRUCT;
        size = m & 0x0F;
        if (left < 1)
            return TG_EPROTO;
        val->tag = buf[p++];
        left--;
        if (val->tag > TG_PS_MAX_TAG)
            return TG_EPROTO;
        goto container;
    default:
        break;
    }
    switch (m) {
    case TG_PS_NULL:
        break;
    case TG_PS_TRUE:
    case TG_PS_FALSE:
        val->type = TG_PS_T_BOOL;
        val->u.b = m == TG_PS_TRUE;
        break;
    case TG_PS_FLOAT_64: {
        if (left < 8)
            return TG_EPROTO;
        uint64_t bits = be(buf + p, 8);
        val->type = TG_PS_T_FLOAT;
        memcpy(&val->u.f, &bits, 8);
        p += 8;
        break;
    }
    case TG_PS_INT_8:
    case TG_PS_INT_16:
    case TG_PS_INT_32:
    case TG_PS_INT_64:
        width = (size_t)1 << (m - TG_PS_INT_8);
        if (left < width)
            return TG_EPROTO;
        val->type = TG_PS_T_INT;
        val->u.i = sign_extend(be(buf + p, width), (unsigned)(8 * width));
        p += width;
        break;
    case TG_PS_BYTES_8:
    case TG_PS_BYTES_16:
    case TG_PS_BYTES_32:
        val->type = TG_PS_T_BYTES;
        width = (size_t)1 << (m - TG_PS_BYTES_8);
        goto sized_header;
    case TG_PS_STRING_8:
    case TG_PS_STRING_16:
    case TG_PS_STRING_32:
        val->type = TG_PS_T_STRING;
        width = (size_t)1 << (m - TG_PS_STRING_8);
        goto sized_header;
    case TG_PS_LIST_8:
    case TG_PS_LIST_16:
    case TG_PS_LIST_32:
        val->type = TG_PS_T_LIST;
        width = (size_t)1 << (m - TG_PS_LIST_8);
        goto container_header;
    case TG_PS_MAP_8:
    case TG_PS_MAP_16:
    case TG_PS_MAP_32:
        val->type = TG_PS_T_MAP;
        width = (size_t)1 << (m - TG_PS_MAP_8);
        goto container_header;
    default:
        return TG_EPROTO; /* reserved: C4-C7, CF, D3, D7, DB-DF, E0-EF */
    }
    *pos = p;
    return 0;

sized_header:
    if (left < width)
        return TG_EPROTO;
    size = be(buf + p, width);
    p += width;
    left -= width;
sized:
    if (size > TG_PS_MAX_SIZE || size > left)
        return TG_EPROTO;
    val->u.s = (tg_slice){buf + p, (size_t)size};
    if (val->type == TG_PS_T_STRING && !tg_utf8_valid(buf + p, (size_t)size))
        return TG_EPROTO;
    p += (size_t)size;
    *pos = p;
    return 0;

container_header:
    if (left < width)
        return TG_EPROTO;
    size = be(buf + p, width);
    p += width;
container:
    if (size > TG_PS_MAX_SIZE)
        return TG_EPROTO;
    val->count = (uint32_t)size;
    *slots = val->type == TG_PS_T_MAP ? 2 * size : size;
    *pos = p;
    return 0;
}

int tg_ps_decode(tg_ps_doc *d, const uint8_t *buf, size_t len, const tg_ps_limits *lim)
{
    d->n = 0;
    d->bytes = (tg_slice){buf, len};
    if (len == 0)
        return TG_EPROTO;
    if (len > UINT32_MAX)
        return TG_ETOOBIG; /* offsets are 32-bit */
    uint32_t max_depth = lim->max_depth < TG_PS_DEPTH_CAP ? lim->max_depth : TG_PS_DEPTH_CAP;
    uint64_t max_values = lim->max_values;
    struct {
        uint32_t idx;
        uint64_t left;
    } stack[TG_PS_DEPTH_CAP];
    uint32_t depth = 0;
    uint64_t pending = 1; /* slots still to fill, this value's included */
    size_t pos = 0;
    int rc;

    for (;;) {
        bool key = depth > 0 && d->v[stack[depth - 1].idx].type == TG_PS_T_MAP &&
                   stack[depth - 1].left % 2 == 0;
        tg_ps_value val = {.off = (uint32_t)pos};
        uint64_t slots;
        if (pos >= len)
            return d->n = 0, TG_EPROTO;
        if ((rc = read_one(buf, len, &pos, &val, &slots)) < 0)
            return d->n = 0, rc;
        if (key && val.type != TG_PS_T_STRING)
            return d->n = 0, TG_EPROTO;
        pending = pending - 1 + slots;
        if (pending > len - pos)
            return d->n = 0, TG_EPROTO; /* announces more values than bytes are left */
        if ((uint64_t)d->n + 1 + pending > max_values)
            return d->n = 0, TG_ETOOBIG;
        if (slots > 0 && depth >= max_depth)
            return d->n = 0, TG_ETOOBIG;
        if ((rc = reserve_values(d, (uint64_t)d->n + 1)) < 0)
            return d->n = 0, rc;
        uint32_t idx = d->n++;
        val.next = idx + 1;
        d->v[idx] = val;
        if (slots > 0) {
            stack[depth].idx = idx;
            stack[depth].left = slots;
            depth++;
            continue;
        }
        /* A complete value: it fills its parent's slot, which may complete the parent. */
        while (depth > 0) {
            if (--stack[depth - 1].left > 0)
                break;
            uint32_t c = stack[--depth].idx;
            d->v[c].next = d->n;
            if (d->v[c].type == TG_PS_T_MAP && (rc = check_unique_keys(d, c)) < 0)
                return d->n = 0, rc;
        }
        if (depth == 0)
            break;
    }
    if (pos != len)
        return d->n = 0, TG_EPROTO; /* bytes after the value */
    return 0;
}

/* ---- accessors ---- */

static uint32_t child_slots(const tg_ps_value *v)
{
    switch (v->type) {
    case TG_PS_T_LIST:
    case TG_PS_T_STRUCT:
        return v->count;
    case TG_PS_T_MAP:
        return 2 * v->count;
    default:
        return 0;
    }
}

uint32_t tg_ps_child(const tg_ps_doc *d, uint32_t i, uint32_t k)
{
    if (i >= d->n || k >= child_slots(&d->v[i]))
        return 0;
    uint32_t j = i + 1;
    while (k-- > 0)
        j = d->v[j].next;
    return j;
}

uint32_t tg_ps_map_get(const tg_ps_doc *d, uint32_t i, tg_slice key)
{
    if (i >= d->n || d->v[i].type != TG_PS_T_MAP)
        return 0;
    uint32_t j = i + 1;
    for (uint32_t e = 0; e < d->v[i].count; e++) {
        if (slice_eq(d->v[j].u.s, key))
            return j + 1;
        j = d->v[j + 1].next;
    }
    return 0;
}

tg_slice tg_ps_raw(const tg_ps_doc *d, uint32_t i)
{
    if (i >= d->n)
        return (tg_slice){NULL, 0};
    size_t start = d->v[i].off;
    size_t end = d->v[i].next < d->n ? d->v[d->v[i].next].off : d->bytes.len;
    return (tg_slice){d->bytes.base + start, end - start};
}

bool tg_ps_is_str(const tg_ps_doc *d, uint32_t i, const char *s)
{
    return i < d->n && d->v[i].type == TG_PS_T_STRING && tg_slice_eq_str(d->v[i].u.s, s);
}

bool tg_ps_equal(const tg_ps_doc *a, uint32_t i, const tg_ps_doc *b, uint32_t j)
{
    if (i >= a->n || j >= b->n)
        return false;
    uint32_t n = a->v[i].next - i;
    if (b->v[j].next - j != n)
        return false;
    for (uint32_t k = 0; k < n; k++) {
        const tg_ps_value *x = &a->v[i + k], *y = &b->v[j + k];
        if (x->type != y->type || x->tag != y->tag || x->count != y->count ||
            x->next - (i + k) != y->next - (j + k))
            return false;
        switch (x->type) {
        case TG_PS_T_BOOL:
            if (x->u.b != y->u.b)
                return false;
            break;
        case TG_PS_T_INT:
            if (x->u.i != y->u.i)
                return false;
            break;
        case TG_PS_T_FLOAT:
            if (memcmp(&x->u.f, &y->u.f, sizeof(double)) != 0)
                return false;
            break;
        case TG_PS_T_STRING:
        case TG_PS_T_BYTES:
            if (!slice_eq(x->u.s, y->u.s))
                return false;
            break;
        default:
            break;
        }
    }
    return true;
}

/* ---- builder ---- */

static void fail(tg_ps_builder *b, int err)
{
    if (!b->failed) {
        b->failed = true;
        b->err = err;
    }
}

static void put(tg_ps_builder *b, const void *p, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (tg_buf_append(b->out, p, n) < 0)
        fail(b, TG_ENOMEM);
}

/* May a value of this type come next? (one root; keys are strings) */
static bool slot_ok(tg_ps_builder *b, tg_ps_type type)
{
    if (b->failed)
        return false;
    if (b->depth == 0) {
        if (b->roots > 0) {
            fail(b, TG_EINVAL);
            return false;
        }
        return true;
    }
    if (b->stack[b->depth - 1].map && b->stack[b->depth - 1].left % 2 == 0 &&
        type != TG_PS_T_STRING) {
        fail(b, TG_EINVAL);
        return false;
    }
    return true;
}

/* A value is complete: it fills its parent's slot, which may complete the parent. */
static void complete(tg_ps_builder *b)
{
    for (;;) {
        if (b->depth == 0) {
            b->roots++;
            return;
        }
        if (--b->stack[b->depth - 1].left > 0)
            return;
        b->depth--;
    }
}

void tg_ps_begin(tg_ps_builder *b, tg_buf *out)
{
    b->out = out;
    b->start = out->len;
    b->failed = false;
    b->err = 0;
    b->depth = 0;
    b->roots = 0;
}

void tg_ps_put_null(tg_ps_builder *b)
{
    if (!slot_ok(b, TG_PS_T_NULL))
        return;
    uint8_t m = TG_PS_NULL;
    put(b, &m, 1);
    complete(b);
}

void tg_ps_put_bool(tg_ps_builder *b, bool v)
{
    if (!slot_ok(b, TG_PS_T_BOOL))
        return;
    uint8_t m = v ? TG_PS_TRUE : TG_PS_FALSE;
    put(b, &m, 1);
    complete(b);
}

void tg_ps_put_int(tg_ps_builder *b, int64_t v)
{
    if (!slot_ok(b, TG_PS_T_INT))
        return;
    uint8_t p[9];
    size_t n;
    uint64_t u = (uint64_t)v;
    if (v >= -16 && v <= 127) {
        p[0] = (uint8_t)u;
        n = 1;
    } else if (v >= INT8_MIN && v <= INT8_MAX) {
        p[0] = TG_PS_INT_8;
        n = 2;
    } else if (v >= INT16_MIN && v <= INT16_MAX) {
        p[0] = TG_PS_INT_16;
        n = 3;
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        p[0] = TG_PS_INT_32;
        n = 5;
    } else {
        p[0] = TG_PS_INT_64;
        n = 9;
    }
    if (n > 1)
        put_be(p + 1, u, n - 1);
    put(b, p, n);
    complete(b);
}

/* A float from its bit pattern, so a decoded NaN payload is written back unchanged. */
static void put_float_bits(tg_ps_builder *b, uint64_t bits)
{
    if (!slot_ok(b, TG_PS_T_FLOAT))
        return;
    uint8_t p[9] = {TG_PS_FLOAT_64};
    put_be(p + 1, bits, 8);
    put(b, p, 9);
    complete(b);
}

void tg_ps_put_float(tg_ps_builder *b, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_float_bits(b, bits);
}

/*
 * A size or count header: the tiny form (tiny | n) when tiny is set and
 * n < 16, else the 8/16/32-bit form starting at marker8.
 */
static void put_header(tg_ps_builder *b, uint8_t tiny, uint8_t marker8, uint64_t n)
{
    uint8_t p[5];
    size_t w;
    if (n > TG_PS_MAX_SIZE) {
        fail(b, TG_EINVAL);
        return;
    }
    if (tiny && n < 16) {
        p[0] = (uint8_t)(tiny | n);
        put(b, p, 1);
        return;
    }
    if (n <= 0xFF) {
        p[0] = marker8;
        w = 1;
    } else if (n <= 0xFFFF) {
        p[0] = (uint8_t)(marker8 + 1);
        w = 2;
    } else {
        p[0] = (uint8_t)(marker8 + 2);
        w = 4;
    }
    put_be(p + 1, n, w);
    put(b, p, 1 + w);
}

void tg_ps_put_bytes(tg_ps_builder *b, const void *p, size_t n)
{
    if (!slot_ok(b, TG_PS_T_BYTES))
        return;
    put_header(b, 0, TG_PS_BYTES_8, n);
    put(b, p, n);
    complete(b);
}

void tg_ps_put_string(tg_ps_builder *b, const void *s, size_t n)
{
    if (!slot_ok(b, TG_PS_T_STRING))
        return;
    if (n > 0 && (!s || !tg_utf8_valid(s, n))) {
        fail(b, TG_EINVAL);
        return;
    }
    put_header(b, TG_PS_TINY_STRING, TG_PS_STRING_8, n);
    put(b, s, n);
    complete(b);
}

void tg_ps_put_str(tg_ps_builder *b, const char *s)
{
    if (!s) {
        fail(b, TG_EINVAL);
        return;
    }
    tg_ps_put_string(b, s, strlen(s));
}

/* Opens a container of `slots` values (or completes an empty one). */
static void open_container(tg_ps_builder *b, uint64_t slots, bool map)
{
    if (b->failed)
        return;
    if (slots == 0) {
        complete(b);
        return;
    }
    if (b->depth >= TG_PS_DEPTH_CAP) {
        fail(b, TG_EINVAL);
        return;
    }
    b->stack[b->depth].left = (uint32_t)slots;
    b->stack[b->depth].map = map;
    b->depth++;
}

void tg_ps_put_list(tg_ps_builder *b, uint32_t n)
{
    if (!slot_ok(b, TG_PS_T_LIST))
        return;
    put_header(b, TG_PS_TINY_LIST, TG_PS_LIST_8, n);
    open_container(b, n, false);
}

void tg_ps_put_map(tg_ps_builder *b, uint32_t n)
{
    if (!slot_ok(b, TG_PS_T_MAP))
        return;
    put_header(b, TG_PS_TINY_MAP, TG_PS_MAP_8, n);
    open_container(b, 2ull * n, true);
}

void tg_ps_put_struct(tg_ps_builder *b, uint8_t tag, uint32_t n)
{
    if (!slot_ok(b, TG_PS_T_STRUCT))
        return;
    if (tag > TG_PS_MAX_TAG || n > TG_PS_MAX_FIELDS) {
        fail(b, TG_EINVAL);
        return;
    }
    uint8_t p[2] = {(uint8_t)(TG_PS_TINY_STRUCT | n), tag};
    put(b, p, 2);
    open_container(b, n, false);
}

void tg_ps_put_value(tg_ps_builder *b, const tg_ps_doc *d, uint32_t i)
{
    if (i >= d->n) {
        fail(b, TG_EINVAL);
        return;
    }
    uint32_t end = d->v[i].next;
    for (uint32_t j = i; j < end && !b->failed; j++) {
        const tg_ps_value *v = &d->v[j];
        switch ((tg_ps_type)v->type) {
        case TG_PS_T_NULL:
            tg_ps_put_null(b);
            break;
        case TG_PS_T_BOOL:
            tg_ps_put_bool(b, v->u.b);
            break;
        case TG_PS_T_INT:
            tg_ps_put_int(b, v->u.i);
            break;
        case TG_PS_T_FLOAT: {
            uint64_t bits;
            memcpy(&bits, &v->u.f, 8);
            put_float_bits(b, bits);
            break;
        }
        case TG_PS_T_BYTES:
            tg_ps_put_bytes(b, v->u.s.base, v->u.s.len);
            break;
        case TG_PS_T_STRING:
            tg_ps_put_string(b, v->u.s.base, v->u.s.len);
            break;
        case TG_PS_T_LIST:
            tg_ps_put_list(b, v->count);
            break;
        case TG_PS_T_MAP:
            tg_ps_put_map(b, v->count);
            break;
        case TG_PS_T_STRUCT:
            tg_ps_put_struct(b, v->tag, v->count);
            break;
        default:
            fail(b, TG_EINVAL);
            break;
        }
    }
}

void tg_ps_put_raw(tg_ps_builder *b, const tg_ps_doc *d, uint32_t i)
{
    if (i >= d->n) {
        fail(b, TG_EINVAL);
        return;
    }
    if (!slot_ok(b, (tg_ps_type)d->v[i].type))
        return;
    tg_slice raw = tg_ps_raw(d, i);
    put(b, raw.base, raw.len);
    complete(b);
}

static void put_edit_value(tg_ps_builder *b, const tg_ps_edit *e)
{
    switch (e->op) {
    case TG_PS_EDIT_SET_STR:
        tg_ps_put_string(b, e->str.base, e->str.len);
        break;
    case TG_PS_EDIT_SET_INT:
        tg_ps_put_int(b, e->i);
        break;
    case TG_PS_EDIT_SET_NULL:
        tg_ps_put_null(b);
        break;
    default:
        fail(b, TG_EINVAL);
        break;
    }
}

/* The edit for key, or NULL. */
static const tg_ps_edit *find_edit(const tg_ps_edit *edits, size_t n, tg_slice key)
{
    for (size_t e = 0; e < n; e++)
        if (slice_eq(edits[e].key, key))
            return &edits[e];
    return NULL;
}

void tg_ps_put_map_edit(tg_ps_builder *b, const tg_ps_doc *d, uint32_t i, const tg_ps_edit *edits,
                        size_t n_edits)
{
    if (b->failed)
        return;
    if (d && (i >= d->n || d->v[i].type != TG_PS_T_MAP)) {
        fail(b, TG_EINVAL);
        return;
    }
    for (size_t e = 0; e < n_edits; e++) {
        if (edits[e].op > TG_PS_EDIT_SET_NULL || find_edit(edits, e, edits[e].key)) {
            fail(b, TG_EINVAL);
            return;
        }
    }
    /* Count what stays, what is replaced, what is new. */
    uint64_t count = 0;
    uint32_t entries = d ? d->v[i].count : 0;
    uint32_t j = i + 1;
    for (uint32_t k = 0; k < entries; k++) {
        const tg_ps_edit *e = find_edit(edits, n_edits, d->v[j].u.s);
        if (!e || e->op != TG_PS_EDIT_DROP)
            count++;
        j = d->v[j + 1].next;
    }
    for (size_t e = 0; e < n_edits; e++)
        if (edits[e].op != TG_PS_EDIT_DROP && (!d || tg_ps_map_get(d, i, edits[e].key) == 0))
            count++;
    if (count > TG_PS_MAX_SIZE) {
        fail(b, TG_EINVAL);
        return;
    }
    tg_ps_put_map(b, (uint32_t)count);
    j = i + 1;
    for (uint32_t k = 0; k < entries && !b->failed; k++) {
        const tg_ps_edit *e = find_edit(edits, n_edits, d->v[j].u.s);
        if (!e) {
            tg_ps_put_raw(b, d, j);
            tg_ps_put_raw(b, d, j + 1);
        } else if (e->op != TG_PS_EDIT_DROP) {
            tg_ps_put_raw(b, d, j);
            put_edit_value(b, e);
        }
        j = d->v[j + 1].next;
    }
    for (size_t e = 0; e < n_edits && !b->failed; e++) {
        if (edits[e].op == TG_PS_EDIT_DROP || (d && tg_ps_map_get(d, i, edits[e].key) != 0))
            continue;
        tg_ps_put_string(b, edits[e].key.base, edits[e].key.len);
        put_edit_value(b, &edits[e]);
    }
}

int tg_ps_end(tg_ps_builder *b)
{
    if (!b->failed && (b->depth != 0 || b->roots != 1))
        fail(b, TG_EINVAL);
    if (b->failed) {
        b->out->len = b->start;
        return b->err;
    }
    return 0;
}
