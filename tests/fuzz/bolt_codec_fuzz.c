/*
 * libFuzzer target for the Bolt codec (protocols/bolt/codec.c, packstream.c).
 *
 *   data[0] = mode: bits 0-2 version (4.4, 5.0 .. 5.6), bit 3 sender (0 client,
 *             1 server), bit 4 the 4.4 utc patch, bit 5 small limits, bit 6 a
 *             client handshake first, bit 7 then a manifest choice
 *   data[1..] --exact-size heap copy--> [handshake --> negotiate] [manifest choice]
 *             --> loop of tg_bolt_decode_frame (resumed with a scan after a cut,
 *                 compared with a fresh walk)
 *                   --> message bytes (slice == copy) --> tg_ps_decode
 *                       --> re-encoded --> decoded again: equal, never longer
 *                       --> tg_bolt_check --> rebuilt as a chunked message
 *                           --> framed, decoded, checked again: equal
 *                           --> RUN / HELLO / LOGON / one-dictionary rewrites
 *                               decode and check too
 *             \--> the same bytes straight into tg_ps_decode (no framing)
 *
 * Invariants: decoders return > 0, TG_NEED_MORE or their documented errors;
 * a consumed count is <= the bytes given; every proper prefix of a frame
 * needs more, and a prefix of a refused frame needs more or gives the same
 * error; a frame's message bytes are within max_msg; every slice of a
 * decoded document lies inside the decoded bytes and every subtree's raw
 * span is where its values are; what decodes under the small limits decodes
 * under the default ones to the same document; decode(encode(x)) == x and
 * a message that passed tg_bolt_check passes again after a rebuild.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bolt/codec.h"
#include "protocols/bolt/packstream.h"
#include "proxy/error.h"
#include "proxy/utf8.h"

#include "fuzz_support.h"

static const uint16_t versions[8] = {TG_BOLT_V(4, 4), TG_BOLT_V(5, 0), TG_BOLT_V(5, 1),
                                     TG_BOLT_V(5, 2), TG_BOLT_V(5, 3), TG_BOLT_V(5, 4),
                                     TG_BOLT_V(5, 5), TG_BOLT_V(5, 6)};
static const uint16_t supported[] = TG_BOLT_SUPPORTED;
static const tg_ps_limits small = {.max_depth = 6, .max_values = 64};
#define SMALL_MAX_MSG 512

typedef struct mode {
    uint16_t version;
    tg_bolt_dir dir;
    unsigned flags;
    const tg_ps_limits *lim;
    size_t max_msg;
} mode;

/* ---- documents ---- */

/* Structural invariants of a decoded document over bytes[0..len). */
static void check_doc(const tg_ps_doc *d, const uint8_t *bytes, size_t len)
{
    check(d->n > 0 && d->v[0].next == d->n && d->v[0].off == 0);
    check(tg_ps_raw(d, 0).base == bytes && tg_ps_raw(d, 0).len == len);
    for (uint32_t i = 0; i < d->n; i++) {
        const tg_ps_value *v = &d->v[i];
        check(v->next > i && v->next <= d->n && v->off < len);
        if (i > 0)
            check(v->off > d->v[i - 1].off);
        tg_slice raw = tg_ps_raw(d, i);
        check(raw.base >= bytes && raw.len >= 1 && raw.len <= len - (size_t)(raw.base - bytes));
        switch (v->type) {
        case TG_PS_T_STRING:
        case TG_PS_T_BYTES:
            check(v->u.s.base >= raw.base && v->u.s.base + v->u.s.len == raw.base + raw.len);
            if (v->type == TG_PS_T_STRING)
                check(tg_utf8_valid(v->u.s.base, v->u.s.len));
            /* fall through */
        case TG_PS_T_NULL:
        case TG_PS_T_BOOL:
        case TG_PS_T_INT:
        case TG_PS_T_FLOAT:
            check(v->next == i + 1 && v->count == 0);
            break;
        case TG_PS_T_MAP: {
            /* Keys are strings, found by lookup. */
            uint32_t j = i + 1;
            for (uint32_t k = 0; k < v->count; k++) {
                check(d->v[j].type == TG_PS_T_STRING);
                check(tg_ps_map_get(d, i, d->v[j].u.s) == j + 1);
                j = d->v[j + 1].next;
            }
            check(j == v->next);
            break;
        }
        case TG_PS_T_LIST:
        case TG_PS_T_STRUCT: {
            uint32_t j = i + 1;
            for (uint32_t k = 0; k < v->count; k++) {
                check(tg_ps_child(d, i, k) == j);
                j = d->v[j].next;
            }
            check(j == v->next);
            check(v->type == TG_PS_T_LIST || (v->count <= 15 && v->tag <= 0x7F));
            break;
        }
        default:
            check(0);
        }
    }
}

/* Re-encodes the document: never longer, decodes to an equal document. */
static void reencode(const tg_ps_doc *d, const tg_ps_limits *lim, tg_buf *out)
{
    out->len = 0;
    tg_ps_builder b;
    tg_ps_begin(&b, out);
    tg_ps_put_value(&b, d, 0);
    check(tg_ps_end(&b) == 0);
    check(out->len <= d->bytes.len);
    uint8_t *copy = dup_exact(out->data, out->len);
    tg_ps_doc again;
    tg_ps_doc_init(&again);
    check(tg_ps_decode(&again, copy, out->len, lim) == 0);
    check(tg_ps_equal(d, 0, &again, 0));
    check(again.n == d->n);
    tg_ps_doc_free(&again);
    free(copy);
    /* A raw copy is the input itself. */
    out->len = 0;
    tg_ps_begin(&b, out);
    tg_ps_put_raw(&b, d, 0);
    check(tg_ps_end(&b) == 0);
    check(out->len == d->bytes.len && memcmp(out->data, d->bytes.base, out->len) == 0);
}

/* Decodes msg[0..len) as a document; on success checks it (and the larger limits agree). */
static int fuzz_doc(tg_ps_doc *d, const uint8_t *msg, size_t len, const mode *m, tg_buf *out)
{
    int rc = tg_ps_decode(d, msg, len, m->lim);
    check(rc == 0 || rc == TG_EPROTO || rc == TG_ETOOBIG);
    if (rc != 0) {
        check(d->n == 0);
        if (m->lim == &small && rc == TG_EPROTO) {
            /* Malformed is malformed whatever the limits. */
            tg_ps_limits def = TG_PS_LIMITS_DEFAULT;
            tg_ps_doc other;
            tg_ps_doc_init(&other);
            check(tg_ps_decode(&other, msg, len, &def) == TG_EPROTO);
            tg_ps_doc_free(&other);
        }
        return rc;
    }
    check_doc(d, msg, len);
    if (m->lim == &small) {
        tg_ps_limits def = TG_PS_LIMITS_DEFAULT;
        tg_ps_doc other;
        tg_ps_doc_init(&other);
        check(tg_ps_decode(&other, msg, len, &def) == 0);
        check(tg_ps_equal(d, 0, &other, 0));
        tg_ps_doc_free(&other);
    }
    reencode(d, m->lim, out);
    return 0;
}

/* ---- messages ---- */

/* Frames, decodes and checks the single message at the end of out; returns its doc in *d. */
static void recheck(const tg_buf *out, size_t start, const mode *m, tg_ps_doc *d, uint8_t **keep,
                    tg_bolt_msg *msg)
{
    tg_bolt_frame f;
    const uint8_t *p = out->data + start;
    size_t n = out->len - start;
    check(tg_bolt_decode_frame(p, n, TG_BOLT_MAX_MSG_DEFAULT, NULL, &f) == (ssize_t)n);
    *keep = malloc(f.len ? f.len : 1);
    check(*keep != NULL);
    tg_bolt_frame_copy(p, &f, *keep);
    tg_ps_limits def = TG_PS_LIMITS_DEFAULT;
    check(tg_bolt_decode_msg(d, *keep, f.len, &def, m->version, m->flags, m->dir, msg, NULL) == 0);
}

static void fuzz_rewrites(const tg_ps_doc *d, const tg_bolt_msg *msg, const mode *m, tg_buf *out)
{
    tg_ps_doc r;
    tg_ps_doc_init(&r);
    tg_bolt_msg rm;
    uint8_t *keep = NULL;
    out->len = 0;
    if (msg->signature == TG_BOLT_RUN) {
        tg_ps_edit pe[] = {
            {tg_slice_str("__tg_tenant"), TG_PS_EDIT_SET_STR, tg_slice_str("t1"), 0}};
        tg_ps_edit ee[] = {{tg_slice_str("db"), TG_PS_EDIT_SET_STR, tg_slice_str("t-1"), 0},
                           {tg_slice_str("imp_user"), TG_PS_EDIT_DROP, {NULL, 0}, 0}};
        check(tg_bolt_build_run(out, d, msg, tg_slice_str("RETURN 1"), pe, 1, ee, 2) == 0);
        recheck(out, 0, m, &r, &keep, &rm);
        check(rm.signature == TG_BOLT_RUN);
        check(tg_ps_is_str(&r, tg_ps_map_get(&r, rm.field[1], tg_slice_str("__tg_tenant")), "t1"));
        check(tg_ps_is_str(&r, tg_ps_map_get(&r, rm.field[2], tg_slice_str("db")), "t-1"));
        check(tg_ps_map_get(&r, rm.field[2], tg_slice_str("imp_user")) == 0);
    } else if (msg->signature == TG_BOLT_LOGON ||
               (msg->signature == TG_BOLT_HELLO && m->version <= TG_BOLT_V(5, 0))) {
        check(tg_bolt_build_auth(out, d, msg, "svc", "pw") == 0);
        recheck(out, 0, m, &r, &keep, &rm);
        check(tg_ps_is_str(&r, tg_ps_map_get(&r, rm.field[0], tg_slice_str("scheme")), "basic"));
        check(tg_ps_is_str(&r, tg_ps_map_get(&r, rm.field[0], tg_slice_str("credentials")), "pw"));
    } else if (msg->signature == TG_BOLT_BEGIN) {
        tg_ps_edit e[] = {{tg_slice_str("db"), TG_PS_EDIT_SET_NULL, {NULL, 0}, 0}};
        check(tg_bolt_build_edited(out, d, msg, e, 1) == 0);
        recheck(out, 0, m, &r, &keep, &rm);
        check(r.v[tg_ps_map_get(&r, rm.field[0], tg_slice_str("db"))].type == TG_PS_T_NULL);
    }
    free(keep);
    tg_ps_doc_free(&r);
}

static void fuzz_message(const uint8_t *msg, size_t len, const mode *m, tg_buf *out)
{
    tg_ps_doc d;
    tg_ps_doc_init(&d);
    if (fuzz_doc(&d, msg, len, m, out) == 0) {
        tg_bolt_msg bm;
        const char *why = NULL;
        int rc = tg_bolt_check(&d, m->version, m->flags, m->dir, &bm, &why);
        check(rc == 0 || rc == TG_EPROTO);
        check(why != NULL || rc == 0);
        if (rc == 0) {
            check(bm.signature == d.v[0].tag && bm.n_fields == d.v[0].count);
            check(bm.n_fields <= TG_BOLT_MAX_MSG_FIELDS);
            /* Rebuilt field by field: framed, decoded and checked again, equal. */
            out->len = 0;
            tg_bolt_builder b;
            tg_bolt_begin(&b, out, bm.signature, bm.n_fields);
            for (uint32_t k = 0; k < bm.n_fields; k++) {
                check(bm.field[k] == tg_ps_child(&d, 0, k));
                tg_ps_put_value(&b.ps, &d, bm.field[k]);
            }
            check(tg_bolt_end(&b) == 0);
            tg_ps_doc r;
            tg_ps_doc_init(&r);
            uint8_t *keep;
            tg_bolt_msg rm;
            recheck(out, 0, m, &r, &keep, &rm);
            check(rm.signature == bm.signature && tg_ps_equal(&d, 0, &r, 0));
            free(keep);
            tg_ps_doc_free(&r);
            fuzz_rewrites(&d, &bm, m, out);
        }
    }
    tg_ps_doc_free(&d);
}

/* ---- framing ---- */

static ssize_t decode_frame(const uint8_t *p, size_t n, void *max_msg)
{
    tg_bolt_frame f;
    return tg_bolt_decode_frame(p, n, *(const size_t *)max_msg, NULL, &f);
}

static void fuzz_frames(const uint8_t *buf, size_t size, const mode *m, tg_buf *out)
{
    size_t off = 0;
    for (int k = 0; off < size && k < 64; k++) {
        const uint8_t *b = buf + off;
        size_t left = size - off;
        tg_bolt_frame f;
        ssize_t rc = tg_bolt_decode_frame(b, left, m->max_msg, NULL, &f);
        check(rc > 0 || rc == TG_NEED_MORE || rc == TG_ETOOBIG);
        if (k < 4)
            check_prefixes(decode_frame, (void *)&m->max_msg, b, rc > 0 ? (size_t)rc : left, rc,
                           64);
        /* Resuming after a cut gives the same answer. */
        {
            tg_bolt_scan scan = {0, 0, 0};
            tg_bolt_frame g;
            size_t cut = left / 2;
            ssize_t first = tg_bolt_decode_frame(b, cut, m->max_msg, &scan, &g);
            check(first == TG_NEED_MORE || first == rc);
            if (first == TG_NEED_MORE) {
                check(scan.pos <= cut && scan.len <= m->max_msg);
                ssize_t second = tg_bolt_decode_frame(b, left, m->max_msg, &scan, &g);
                check(second == rc);
                if (rc > 0)
                    check(g.size == f.size && g.len == f.len && g.chunks == f.chunks);
            }
        }
        if (rc <= 0)
            break;
        check((size_t)rc == f.size && f.size <= left && f.len <= m->max_msg);
        check(f.size == f.len + 2 * (size_t)f.chunks + 2);
        if (f.len == 0) {
            check(f.size == 2 && f.chunks == 0);
        } else {
            uint8_t *msg = malloc(f.len);
            check(msg != NULL);
            tg_bolt_frame_copy(b, &f, msg);
            tg_slice s;
            if (tg_bolt_frame_slice(b, &f, &s)) {
                check(f.chunks == 1 && s.base == b + 2 && s.len == f.len);
                check(memcmp(s.base, msg, f.len) == 0);
            }
            /* Chunked again (any chunk size), it frames back to the same bytes. */
            out->len = 0;
            check(tg_bolt_write_chunked(out, msg, f.len, (size_t)(b[0] % 16) + 1) == 0);
            tg_bolt_frame g;
            check(tg_bolt_decode_frame(out->data, out->len, f.len, NULL, &g) == (ssize_t)out->len);
            check(g.len == f.len);
            fuzz_message(msg, f.len, m, out);
            free(msg);
        }
        off += (size_t)rc;
    }
}

/* ---- handshake ---- */

static size_t fuzz_handshake(const uint8_t *buf, size_t size, uint8_t bits)
{
    size_t off = 0;
    tg_bolt_handshake hs;
    ssize_t rc = tg_bolt_decode_handshake(buf, size, &hs);
    check(rc == TG_BOLT_HANDSHAKE_SIZE || rc == TG_NEED_MORE || rc == TG_EPROTO);
    if (rc > 0) {
        off = (size_t)rc;
        uint16_t v = tg_bolt_negotiate(&hs, supported, TG_BOLT_N_SUPPORTED, 0);
        bool ok = v == 0;
        for (size_t i = 0; i < TG_BOLT_N_SUPPORTED; i++)
            ok |= supported[i] == v;
        check(ok);
        uint16_t vm =
            tg_bolt_negotiate(&hs, supported, TG_BOLT_N_SUPPORTED, TG_BOLT_NEGOTIATE_MANIFEST);
        check(vm == v || vm == TG_BOLT_MANIFEST_V1);
        uint8_t reply[4];
        tg_bolt_version_reply(v, reply);
        uint16_t back = 1;
        if (v != 0) {
            check(tg_bolt_decode_version_reply(reply, 4, &back) == 4);
            check(back == v);
        }
    }
    if (bits & 0x80) {
        uint16_t v;
        uint64_t caps;
        uint64_t offered = (bits & 1) ? UINT64_MAX : 0;
        rc = tg_bolt_decode_manifest_choice(buf + off, size - off, supported, TG_BOLT_N_SUPPORTED,
                                            offered, &v, &caps);
        check(rc == TG_NEED_MORE || rc == TG_EPROTO || (rc >= 5 && rc <= 14));
        if (rc > 0) {
            check((caps & ~offered) == 0);
            off += (size_t)rc;
        }
    }
    /* A version reply read from the same bytes never claims more than 4. */
    uint16_t v;
    rc = tg_bolt_decode_version_reply(buf, size, &v);
    check(rc == 4 || rc == TG_NEED_MORE || rc == TG_EPROTO);
    return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t bits = data[0];
    tg_ps_limits def = TG_PS_LIMITS_DEFAULT;
    mode m = {
        .version = versions[bits & 7],
        .dir = bits & 8 ? TG_BOLT_FROM_SERVER : TG_BOLT_FROM_CLIENT,
        .flags = bits & 16 ? TG_BOLT_PATCH_UTC : 0,
        .lim = bits & 32 ? &small : &def,
        .max_msg = bits & 32 ? SMALL_MAX_MSG : TG_BOLT_MAX_MSG_DEFAULT,
    };
    uint8_t *buf = dup_exact(data + 1, size - 1);
    size_t n = size - 1;
    tg_buf out = {0};

    size_t off = bits & 0x40 ? fuzz_handshake(buf, n, bits) : 0;
    fuzz_frames(buf + off, n - off, &m, &out);
    if (n > 0)
        fuzz_message(buf, n, &m, &out);

    tg_buf_free(&out);
    free(buf);
    return 0;
}
