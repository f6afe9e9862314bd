/*
 * libFuzzer target for the MongoDB codec (protocols/mongodb/codec.c).
 *
 *   data --exact-size heap copy--> loop of tg_mongo_decode (two maxima), each frame:
 *            --> tg_mongo_decode_header agrees
 *            --> parse_msg / parse_query / parse_reply (opcode forced to each, both flag sets)
 *                  --> accepted views re-encoded by the builders, decoded, parsed: the same
 *        \--> tg_mongo_check_doc at the first byte (both flag sets)
 *        \--> the input as a rejection reason: a valid error reply comes out
 *        \--> CRC-32C: table and SSE4.2 paths agree, and chain
 *
 * Invariants: decoders return > 0, TG_NEED_MORE, TG_EPROTO or TG_ETOOBIG,
 * errors only once the 4 length bytes are in; a consumed count is <= the
 * bytes given and <= the maximum; every proper prefix of a decoded frame
 * needs more, and a prefix of a refused input needs more or gives the same
 * error; every slice of a view lies inside its frame; what the request flags
 * accept the reply flags accept the same way; every accepted document passes
 * bson_validate; sequences iterate exactly `count` documents; a checksum
 * accepted is the CRC-32C of the message; decode(encode(view)) == view, and
 * byte for byte the input when the body section came first.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/mongodb/codec.h"
#include "proxy/byteorder.h"
#include "proxy/error.h"

#include "fuzz_support.h"

static int slice_eq(tg_slice a, tg_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

/* A document a view handed out: framed as one, and valid for libbson under `flags`. */
static void check_doc_view(tg_slice d, bson_validate_flags_t flags)
{
    bson_t b;
    check(tg_mongo_doc(d, &b));
    check(bson_validate(&b, flags, NULL));
    const char *why = NULL;
    check(tg_mongo_check_doc(d.base, d.len, flags, &why) == (ssize_t)d.len);
}

static void check_seq_docs(const tg_mongo_seq *s, bson_validate_flags_t flags)
{
    tg_slice cur = s->docs, doc;
    uint32_t n = 0;
    int rc;
    while ((rc = tg_mongo_seq_next(&cur, &doc)) == 1) {
        check_slice(doc, s->docs.base, s->docs.len);
        check_doc_view(doc, flags);
        n++;
    }
    check(rc == 0 && n == s->count);
}

static int msg_eq(const tg_mongo_msg *a, const tg_mongo_msg *b)
{
    if (a->flags != b->flags || !slice_eq(a->body, b->body) || a->n_seqs != b->n_seqs)
        return 0;
    for (uint32_t i = 0; i < a->n_seqs; i++)
        if (!slice_eq(a->seqs[i].identifier, b->seqs[i].identifier) ||
            !slice_eq(a->seqs[i].docs, b->seqs[i].docs) || a->seqs[i].count != b->seqs[i].count)
            return 0;
    return 1;
}

/* ---- OP_MSG ---- */

static void fuzz_msg(const tg_mongo_frame *f, tg_buf *out)
{
    tg_mongo_frame t = *f;
    t.header.op_code = OP_MSG;
    tg_mongo_msg req, rep;
    const char *why = NULL;
    int rc_req = tg_mongo_parse_msg(&t, TG_MONGO_VALIDATE_REQUEST, &req, &why);
    int rc_rep = tg_mongo_parse_msg(&t, TG_MONGO_VALIDATE_REPLY, &rep, &why);
    check(rc_req == 0 || rc_req == TG_EPROTO);
    check(rc_rep == 0 || rc_rep == TG_EPROTO);
    if (rc_req == 0) {
        /* The request flags are stricter: what they accept, the reply flags accept the same. */
        check(rc_rep == 0 && msg_eq(&req, &rep));
    }
    if (rc_rep != 0)
        return;
    bson_validate_flags_t flags = rc_req == 0 ? TG_MONGO_VALIDATE_REQUEST : TG_MONGO_VALIDATE_REPLY;
    const tg_mongo_msg *m = &rep;
    const uint8_t *b = f->bytes.base;
    size_t n = f->bytes.len;

    check((m->flags & TG_MONGO_MSG_REQUIRED_BITS & ~TG_MONGO_MSG_KNOWN_FLAGS) == 0);
    check(m->flags == tg_load_le32(b + 16));
    if (m->flags & TG_MONGO_MSG_CHECKSUM_PRESENT)
        check(m->checksum == tg_load_le32(b + n - 4) &&
              m->checksum == tg_mongo_crc32c_portable(0, b, n - 4));
    check_slice(m->body, b + 21, n - 21);
    check_doc_view(m->body, flags);
    check(m->n_seqs <= TG_MONGO_MAX_SEQUENCES);
    for (uint32_t i = 0; i < m->n_seqs; i++) {
        const tg_mongo_seq *s = &m->seqs[i];
        check_slice(s->identifier, b + 21, n - 21);
        check_slice(s->docs, b + 21, n - 21);
        check(s->identifier.len > 0 && !memchr(s->identifier.base, 0, s->identifier.len));
        check(s->identifier.base + s->identifier.len + 1 == s->docs.base);
        check_seq_docs(s, flags);
        for (uint32_t j = 0; j < i; j++)
            check(!slice_eq(s->identifier, m->seqs[j].identifier));
    }
    tg_slice name;
    check((tg_mongo_msg_command(m, &name) == 0) == (m->body.len > 5));

    /* decode(encode(x)) == x; the very bytes when the body came first. */
    bson_t body;
    check(tg_mongo_doc(m->body, &body));
    out->len = 0;
    check(tg_mongo_build_msg(out, f->header.request_id, f->header.response_to, m->flags, &body,
                             m->seqs, m->n_seqs) == 0);
    tg_mongo_frame g;
    check(tg_mongo_decode(out->data, out->len, UINT32_MAX, &g) == (ssize_t)out->len);
    check(g.header.op_code == OP_MSG && g.header.request_id == f->header.request_id &&
          g.header.response_to == f->header.response_to);
    tg_mongo_msg again;
    check(tg_mongo_parse_msg(&g, flags, &again, &why) == 0);
    check(msg_eq(m, &again));
    if (m->body.base == b + 21) {
        check(out->len == n);
        check(memcmp(out->data + 16, b + 16, n - 16) == 0);
        check(memcmp(out->data, b, 12) == 0);
    }
    /* The rewrite a session makes: checksum dropped, exhaustAllowed cleared. */
    out->len = 0;
    uint32_t nf = m->flags & ~(TG_MONGO_MSG_CHECKSUM_PRESENT | TG_MONGO_MSG_EXHAUST_ALLOWED);
    check(tg_mongo_build_msg(out, 1, 2, nf, &body, m->seqs, m->n_seqs) == 0);
    check(tg_mongo_decode(out->data, out->len, UINT32_MAX, &g) == (ssize_t)out->len);
    check(tg_mongo_parse_msg(&g, flags, &again, &why) == 0);
    check(again.flags == nf && again.n_seqs == m->n_seqs && slice_eq(again.body, m->body));
}

/* ---- OP_QUERY and OP_REPLY ---- */

static void fuzz_query(const tg_mongo_frame *f)
{
    tg_mongo_frame t = *f;
    t.header.op_code = OP_QUERY;
    tg_mongo_query q, q2;
    const char *why = NULL;
    int rc = tg_mongo_parse_query(&t, TG_MONGO_VALIDATE_REQUEST, &q, &why);
    check(rc == 0 || rc == TG_EPROTO);
    if (rc != 0)
        return;
    const uint8_t *b = f->bytes.base;
    size_t n = f->bytes.len;
    check(((uint32_t)q.flags & ~TG_MONGO_QUERY_KNOWN_FLAGS) == 0);
    check(q.full_collection_name.base == b + 20 && q.full_collection_name.len > 0);
    check(!memchr(q.full_collection_name.base, 0, q.full_collection_name.len));
    check_slice(q.query, b + 20, n - 20);
    check_doc_view(q.query, TG_MONGO_VALIDATE_REQUEST);
    if (q.return_fields_selector.base) {
        check_slice(q.return_fields_selector, b + 20, n - 20);
        check_doc_view(q.return_fields_selector, TG_MONGO_VALIDATE_REQUEST);
        check(q.return_fields_selector.base == q.query.base + q.query.len);
        check(q.return_fields_selector.base + q.return_fields_selector.len == b + n);
    } else {
        check(q.query.base + q.query.len == b + n);
    }
    check(tg_mongo_parse_query(&t, TG_MONGO_VALIDATE_REPLY, &q2, &why) == 0);
    check(slice_eq(q.query, q2.query));
}

static void fuzz_reply(const tg_mongo_frame *f, tg_buf *out)
{
    tg_mongo_frame t = *f;
    t.header.op_code = OP_REPLY;
    tg_mongo_reply r;
    const char *why = NULL;
    int rc = tg_mongo_parse_reply(&t, TG_MONGO_VALIDATE_REPLY, &r, &why);
    check(rc == 0 || rc == TG_EPROTO);
    if (rc != 0)
        return;
    const uint8_t *b = f->bytes.base;
    size_t n = f->bytes.len;
    check(r.number_returned >= 0);
    check(r.docs.base == b + 36 && r.docs.len == n - 36);
    tg_slice cur = r.docs, doc;
    int64_t count = 0;
    int k;
    while ((k = tg_mongo_seq_next(&cur, &doc)) == 1) {
        check_doc_view(doc, TG_MONGO_VALIDATE_REPLY);
        count++;
    }
    check(k == 0 && count == r.number_returned);
    if (r.number_returned == 1 && r.cursor_id == 0 && r.starting_from == 0) {
        bson_t d;
        check(tg_mongo_doc(r.docs, &d));
        out->len = 0;
        check(tg_mongo_build_reply(out, f->header.request_id, f->header.response_to,
                                   r.response_flags, &d) == 0);
        check(out->len == n && memcmp(out->data, b, 12) == 0 &&
              memcmp(out->data + 16, b + 16, n - 16) == 0);
    }
}

/* ---- framing ---- */

static ssize_t decode_frame(const uint8_t *p, size_t n, void *max_len)
{
    tg_mongo_frame f;
    return tg_mongo_decode(p, n, *(const uint32_t *)max_len, &f);
}

static void fuzz_stream(const uint8_t *buf, size_t size, uint32_t max_len, tg_buf *out)
{
    size_t off = 0;
    int first = 1;
    while (off < size) {
        tg_mongo_frame f;
        ssize_t rc = tg_mongo_decode(buf + off, size - off, max_len, &f);
        check(rc > 0 || rc == TG_NEED_MORE || rc == TG_EPROTO || rc == TG_ETOOBIG);
        tg_mongo_header h;
        ssize_t hrc = tg_mongo_decode_header(buf + off, size - off, max_len, &h);
        if (rc < 0)
            check(hrc == rc && size - off >= 4);
        else if (rc == TG_NEED_MORE)
            check(hrc == TG_NEED_MORE || hrc == TG_MONGO_HEADER_LEN);
        else
            check(hrc == TG_MONGO_HEADER_LEN && h.message_length == f.header.message_length &&
                  h.request_id == f.header.request_id && h.op_code == f.header.op_code);
        if (first) {
            /* Prefixes of the first frame (exact copies): NEED_MORE or the same error. */
            check_prefixes(decode_frame, &max_len, buf + off, rc > 0 ? (size_t)rc : size - off, rc,
                           64);
            first = 0;
        }
        if (rc <= 0)
            return;
        size_t n = (size_t)rc;
        check(n <= size - off && n >= TG_MONGO_HEADER_LEN && n <= max_len);
        check(tg_load_le32(buf + off) == n && (size_t)f.header.message_length == n);
        check(f.bytes.base == buf + off && f.bytes.len == n);
        check(f.body.base == buf + off + 16 && f.body.len == n - 16);
        uint8_t w[TG_MONGO_HEADER_LEN];
        tg_mongo_write_header(w, &f.header);
        check(memcmp(w, buf + off, TG_MONGO_HEADER_LEN) == 0);
        fuzz_msg(&f, out);
        fuzz_query(&f);
        fuzz_reply(&f, out);
        off += n;
    }
}

/* ---- documents, error replies, CRC ---- */

static void fuzz_doc(const uint8_t *buf, size_t size)
{
    const char *why = NULL;
    ssize_t req = tg_mongo_check_doc(buf, size, TG_MONGO_VALIDATE_REQUEST, &why);
    ssize_t rep = tg_mongo_check_doc(buf, size, TG_MONGO_VALIDATE_REPLY, &why);
    check(req == TG_EPROTO || (req >= 5 && (size_t)req <= size));
    check(rep == TG_EPROTO || (rep >= 5 && (size_t)rep <= size));
    if (req > 0)
        check(rep == req);
    if (rep > 0) {
        check(tg_load_le32(buf) == (uint32_t)rep);
        check_doc_view((tg_slice){buf, (size_t)rep}, TG_MONGO_VALIDATE_REPLY);
    }
}

static void fuzz_error(const uint8_t *buf, size_t size, tg_buf *out)
{
    size_t n = size < 3000 ? size : 3000;
    char *reason = malloc(n + 1);
    check(reason != NULL);
    if (n)
        memcpy(reason, buf, n);
    reason[n] = 0;
    out->len = 0;
    check(tg_mongo_build_reject(out, 1, 2, reason) == 0);
    tg_mongo_frame f;
    check(tg_mongo_decode(out->data, out->len, UINT32_MAX, &f) == (ssize_t)out->len);
    tg_mongo_msg m;
    const char *why = NULL;
    check(tg_mongo_parse_msg(&f, TG_MONGO_VALIDATE_REQUEST, &m, &why) == 0);
    bson_t d;
    bson_iter_t it;
    uint32_t len = 0;
    check(tg_mongo_doc(m.body, &d) && bson_iter_init_find(&it, &d, "errmsg"));
    const char *msg = bson_iter_utf8(&it, &len);
    check(len >= 12 && memcmp(msg, "tenantgate: ", 12) == 0);
    check(len - 12 <= TG_MONGO_REASON_MAX && len - 12 <= strlen(reason) * 1);
    check(bson_utf8_validate(msg, len, false));
    /* ASCII printable reasons come out unchanged (up to the cut). */
    size_t plain = 0;
    while (plain < n && reason[plain] >= 0x20 && reason[plain] < 0x7f)
        plain++;
    size_t keep = plain < TG_MONGO_REASON_MAX ? plain : TG_MONGO_REASON_MAX;
    check(len - 12 >= keep && memcmp(msg + 12, reason, keep) == 0);
    out->len = 0;
    check(tg_mongo_build_error_reply(out, 3, 4, TG_MONGO_ERR_AUTHENTICATION_FAILED, reason) == 0);
    check(tg_mongo_decode(out->data, out->len, UINT32_MAX, &f) == (ssize_t)out->len);
    tg_mongo_reply r;
    check(tg_mongo_parse_reply(&f, TG_MONGO_VALIDATE_REQUEST, &r, &why) == 0);
    check(r.number_returned == 1);
    free(reason);
}

static void fuzz_crc(const uint8_t *buf, size_t size)
{
    uint32_t a = tg_mongo_crc32c(0, buf, size);
    check(a == tg_mongo_crc32c_portable(0, buf, size));
    size_t half = size / 2;
    check(tg_mongo_crc32c(tg_mongo_crc32c_portable(0, buf, half), buf + half, size - half) == a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = dup_exact(data, size);
    tg_buf out = {0};

    fuzz_stream(buf, size, TG_MONGO_MAX_MESSAGE_DEFAULT, &out);
    fuzz_stream(buf, size, 64, &out);
    fuzz_doc(buf, size);
    if (size > 16)
        fuzz_doc(buf + 16, size - 16); /* the first frame's body, as a bare document */
    if (size > 21)
        fuzz_doc(buf + 21, size - 21); /* an OP_MSG's kind 0 document */
    fuzz_error(buf, size, &out);
    fuzz_crc(buf, size);

    tg_buf_free(&out);
    free(buf);
    return 0;
}
