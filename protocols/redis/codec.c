/*
 * Redis RESP2/RESP3 codec: request framing, reply measuring, element walking
 * and writers.
 *
 *   request:  '*' --> count line --> N x ('$' len line, payload, CRLF)    multibulk
 *             else --> one line up to "\n" --> words (no unescaping)     inline
 *
 *   reply:    parse_elem reads one header or scalar at a time; reply_size
 *             drives it with an explicit stack of pending counts:
 *
 *                 header *3 --push {left 3}--> elements --each: left-- --> 0: pop, the
 *                 parent's slot is filled ... depth 0: done
 *                 |N (attribute) --push {left 2N, attr}--> pop: the slot stays open
 *                 *? %? ~? >? --push {streamed}--> '.' pops     $? --> ';' chunks to ';0'
 *
 * Every number is read digit by digit with an overflow check and judged the
 * moment its CRLF is in; every line whose end is searched for is bounded by
 * max_inline; nesting is bounded by max_depth on a fixed stack (no
 * recursion). Nothing here allocates except what a writer appends to its
 * tg_buf; views are slices of the caller's bytes.
 */
#include "protocols/redis/codec.h"

#include <limits.h>
#include <string.h>

#include "proxy/error.h"

const char *tg_resp_type_name(tg_resp_type type)
{
    switch (type) {
#define TG_RESP_TYPE_NAME(name, byte, desc)                                                        \
    case TG_RESP_##name:                                                                           \
        return desc;
        TG_RESP_TYPE_MAP(TG_RESP_TYPE_NAME)
#undef TG_RESP_TYPE_NAME
    }
    return "unknown";
}

/* ---- numbers and lines ---- */

/*
 * Reads an unsigned decimal at buf[*p] ended by CRLF: at least one digit, no
 * sign, no leading zero, at most INT64_MAX. Returns 1 (*p past the CRLF),
 * TG_NEED_MORE, or TG_EPROTO as soon as a byte seen so far is wrong.
 */
static int read_len(const uint8_t *buf, size_t len, size_t *p, uint64_t *out)
{
    size_t i = *p;
    uint64_t v = 0;
    size_t digits = 0;
    for (;; i++) {
        if (i >= len)
            return TG_NEED_MORE;
        uint8_t c = buf[i];
        if (c >= '0' && c <= '9') {
            if (digits == 1 && v == 0)
                return TG_EPROTO; /* leading zero */
            unsigned d = (unsigned)(c - '0');
            /* 18 digits always fit in int64; only longer numbers need the (dividing) check. */
            if (digits >= 18 && v > ((uint64_t)INT64_MAX - d) / 10)
                return TG_EPROTO;
            v = v * 10 + d;
            digits++;
            continue;
        }
        if (c != '\r' || digits == 0)
            return TG_EPROTO;
        if (i + 1 >= len)
            return TG_NEED_MORE;
        if (buf[i + 1] != '\n')
            return TG_EPROTO;
        *p = i + 2;
        *out = v;
        return 1;
    }
}

/* Expects the bytes of lit at buf[*p]; returns 1 (*p past them), TG_NEED_MORE or TG_EPROTO. */
static int expect(const uint8_t *buf, size_t len, size_t *p, const char *lit)
{
    size_t i = *p;
    for (; *lit; lit++, i++) {
        if (i >= len)
            return TG_NEED_MORE;
        if (buf[i] != (uint8_t)*lit)
            return TG_EPROTO;
    }
    *p = i;
    return 1;
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* [+-]?digits within int64 (':'). */
static bool parse_integer(const uint8_t *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (i == n)
        return false;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (size_t digits = 0; i < n; i++, digits++) {
        if (!is_digit(s[i]))
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (digits >= 18 && v > (limit - d) / 10) /* 18 digits always fit */
            return false;
        v = v * 10 + d;
    }
    if (!neg)
        *out = (int64_t)v;
    else if (v == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        *out = -(int64_t)v;
    return true;
}

/* [+-]?digits of any length ('('). */
static bool valid_bignum(const uint8_t *s, size_t n)
{
    size_t i = (n > 0 && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
    if (i == n)
        return false;
    for (; i < n; i++)
        if (!is_digit(s[i]))
            return false;
    return true;
}

static size_t skip_digits(const uint8_t *s, size_t n, size_t i)
{
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/* [+-]?(inf|nan|digits[.digits][(e|E)[+-]digits]) (','), as the RESP3 specification. */
static bool valid_double(const uint8_t *s, size_t n)
{
    size_t i = (n > 0 && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
    if (n - i == 3 && (memcmp(s + i, "inf", 3) == 0 || memcmp(s + i, "nan", 3) == 0))
        return true;
    size_t j = skip_digits(s, n, i);
    if (j == i)
        return false;
    if (j < n && s[j] == '.') {
        size_t k = skip_digits(s, n, j + 1);
        if (k == j + 1)
            return false;
        j = k;
    }
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        size_t k = skip_digits(s, n, j);
        if (k == j)
            return false;
        j = k;
    }
    return j == n;
}

/* ---- one element ---- */

static bool is_aggregate(uint8_t t)
{
    return t == '*' || t == '%' || t == '~' || t == '|' || t == '>';
}

/*
 * A line-typed element at buf[0] (the type byte): finds its CRLF within
 * max_line content bytes and checks the content against the type's grammar.
 */
static ssize_t parse_line(const uint8_t *buf, size_t len, uint64_t max_line, tg_resp_elem *e)
{
    /* More than max_line bytes in and no CR among the first max_line + 1: too long. */
    size_t scan = len - 1;
    bool capped = (uint64_t)scan > max_line;
    if (capped)
        scan = (size_t)max_line + 1;
    const uint8_t *cr = scan ? memchr(buf + 1, '\r', scan) : NULL;
    if (!cr)
        return capped ? TG_ETOOBIG : TG_NEED_MORE;
    size_t n = (size_t)(cr - (buf + 1));
    if (n + 2 >= len)
        return TG_NEED_MORE;
    if (cr[1] != '\n')
        return TG_EPROTO;
    const uint8_t *s = buf + 1;
    tg_resp_elem r = {.type = (tg_resp_type)buf[0], .data = {s, n}, .size = n + 3};
    switch (buf[0]) {
    case '+':
    case '-':
        if (n && memchr(s, '\n', n))
            return TG_EPROTO;
        break;
    case ':':
        if (!parse_integer(s, n, &r.integer))
            return TG_EPROTO;
        break;
    case '(':
        if (!valid_bignum(s, n))
            return TG_EPROTO;
        break;
    case ',':
        if (!valid_double(s, n))
            return TG_EPROTO;
        break;
    case '#':
        if (n != 1 || (s[0] != 't' && s[0] != 'f'))
            return TG_EPROTO;
        r.integer = s[0] == 't';
        break;
    case '_':
        if (n != 0)
            return TG_EPROTO;
        r.is_null = true;
        break;
    default:
        return TG_EPROTO;
    }
    *e = r;
    return (ssize_t)r.size;
}

/*
 * Parses one header or scalar at buf[0]. lim may be NULL (no limits beyond
 * overflow); with limits, a bulk or chunk over max_bulk, a line over
 * max_inline and an aggregate declaring more than max_reply_elems elements
 * are TG_ETOOBIG.
 */

/*
 * The CRLF that must follow a payload ending at `end`: checked byte by byte as
 * soon as each is in, so a bad terminator fails without waiting. Returns 1 when
 * both are there, TG_NEED_MORE, or TG_EPROTO.
 */
static int payload_crlf(const uint8_t *buf, size_t len, size_t end)
{
    if (len > end && buf[end] != '\r')
        return TG_EPROTO;
    if (len > end + 1 && buf[end + 1] != '\n')
        return TG_EPROTO;
    return len < end + 2 ? TG_NEED_MORE : 1;
}

static ssize_t parse_elem(const uint8_t *buf, size_t len, const tg_resp_limits *lim,
                          tg_resp_elem *e)
{
    if (len == 0)
        return TG_NEED_MORE;
    uint8_t t = buf[0];
    size_t p = 1;
    int rc;
    tg_resp_elem r = {.type = (tg_resp_type)t};
    switch (t) {
    case '+':
    case '-':
    case ':':
    case ',':
    case '(':
    case '#':
    case '_':
        return parse_line(buf, len, lim ? lim->max_inline : UINT64_MAX, e);

    case '.':
        if ((rc = expect(buf, len, &p, "\r\n")) <= 0)
            return rc;
        break;

    case '*':
    case '%':
    case '~':
    case '|':
    case '>':
        if (p >= len)
            return TG_NEED_MORE;
        if (buf[p] == '?' && t != '|') {
            p++;
            if ((rc = expect(buf, len, &p, "\r\n")) <= 0)
                return rc;
            r.streamed = true;
            break;
        }
        if (buf[p] == '-' && t == '*') { /* RESP2 null array */
            if ((rc = expect(buf, len, &p, "-1\r\n")) <= 0)
                return rc;
            r.is_null = true;
            break;
        }
        if ((rc = read_len(buf, len, &p, &r.count)) <= 0)
            return rc;
        if (lim) {
            uint64_t elems = (t == '%' || t == '|') ? r.count * 2 : r.count;
            if (elems > lim->max_reply_elems)
                return TG_ETOOBIG;
        }
        break;

    case '$':
    case '!':
    case '=':
    case ';': {
        if (p >= len)
            return TG_NEED_MORE;
        if (t == '$' && buf[p] == '?') {
            p++;
            if ((rc = expect(buf, len, &p, "\r\n")) <= 0)
                return rc;
            r.streamed = true;
            break;
        }
        if (t == '$' && buf[p] == '-') { /* RESP2 null bulk string */
            if ((rc = expect(buf, len, &p, "-1\r\n")) <= 0)
                return rc;
            r.is_null = true;
            break;
        }
        uint64_t n;
        if ((rc = read_len(buf, len, &p, &n)) <= 0)
            return rc;
        if (lim && n > lim->max_bulk)
            return TG_ETOOBIG;
        if (t == '=' && n < 4)
            return TG_EPROTO; /* "txt:" at least */
        if (t == ';' && n == 0) {
            r.data = (tg_slice){buf + p, 0};
            break; /* ";0\r\n" ends a streamed string, no payload */
        }
        if (n > (uint64_t)(SSIZE_MAX - 2) - p)
            return TG_ETOOBIG;
        size_t end = p + (size_t)n;
        if ((rc = payload_crlf(buf, len, end)) <= 0)
            return rc;
        if (t == '=' && buf[p + 3] != ':')
            return TG_EPROTO;
        r.data = (tg_slice){buf + p, (size_t)n};
        p = end + 2;
        break;
    }

    default:
        return TG_EPROTO;
    }
    r.size = p;
    *e = r;
    return (ssize_t)p;
}

ssize_t tg_resp_next(const uint8_t *buf, size_t len, tg_resp_elem *e)
{
    return parse_elem(buf, len, NULL, e);
}

/* ---- whole replies ---- */

typedef struct frame {
    uint64_t left; /* elements still expected (not streamed) */
    bool streamed;
    bool attr;
    bool map;
    bool odd; /* streamed map: a key without its value yet */
} frame;

ssize_t tg_resp_reply_size(const uint8_t *buf, size_t len, const tg_resp_limits *lim,
                           tg_resp_type *type)
{
    frame stack[TG_RESP_DEPTH_CAP];
    uint32_t max_depth = lim->max_depth < TG_RESP_DEPTH_CAP ? lim->max_depth : TG_RESP_DEPTH_CAP;
    uint32_t depth = 0;
    uint64_t total = 0;
    size_t p = 0;
    bool attr_pending = false; /* an attribute was read; its value must follow */
    tg_resp_type top = TG_RESP_NULL;

    for (;;) {
        tg_resp_elem e;
        ssize_t n = parse_elem(buf + p, len - p, lim, &e);
        if (n <= 0)
            return n;
        p += (size_t)n;
        uint8_t t = (uint8_t)e.type;

        if (t == '.') {
            if (depth == 0 || !stack[depth - 1].streamed || stack[depth - 1].odd || attr_pending)
                return TG_EPROTO;
            depth--; /* the streamed aggregate is now a complete value */
        } else if (t == ';') {
            return TG_EPROTO; /* a chunk outside a streamed string */
        } else {
            if (depth == 0 && t != '|')
                top = e.type;
            attr_pending = false;
            if (t == '$' && e.streamed) {
                /* Each chunk is judged against what is left of max_bulk, at its header. */
                tg_resp_limits left = *lim;
                for (;;) {
                    tg_resp_elem c;
                    n = parse_elem(buf + p, len - p, &left, &c);
                    if (n <= 0)
                        return n;
                    if (c.type != TG_RESP_CHUNK)
                        return TG_EPROTO;
                    p += (size_t)n;
                    if (c.data.len == 0)
                        break;
                    left.max_bulk -= c.data.len;
                }
            } else if (is_aggregate(t) && !e.is_null) {
                bool pairs = t == '%' || t == '|';
                uint64_t elems = pairs ? e.count * 2 : e.count;
                if (elems > lim->max_reply_elems - total)
                    return TG_ETOOBIG;
                total += elems;
                if (elems == 0 && !e.streamed) {
                    if (t == '|') {
                        attr_pending = true;
                        continue; /* an empty attribute: the value follows */
                    }
                } else {
                    if (depth >= max_depth)
                        return TG_ETOOBIG;
                    stack[depth++] = (frame){
                        .left = elems, .streamed = e.streamed, .attr = t == '|', .map = pairs};
                    continue;
                }
            }
        }

        /* A value is complete: fill its parent's slot, closing every parent it completes. */
        for (;;) {
            if (depth == 0) {
                if (type)
                    *type = top;
                return (ssize_t)p;
            }
            frame *f = &stack[depth - 1];
            if (f->streamed) {
                if (total >= lim->max_reply_elems)
                    return TG_ETOOBIG;
                total++;
                if (f->map)
                    f->odd = !f->odd;
                break;
            }
            if (--f->left > 0)
                break;
            bool was_attr = f->attr;
            depth--;
            if (was_attr) {
                attr_pending = true; /* the attribute's slot still waits for its value */
                break;
            }
        }
    }
}

/* ---- requests ---- */

static ssize_t decode_multibulk(const uint8_t *buf, size_t len, const tg_resp_limits *lim,
                                tg_slice *argv, uint32_t argv_cap, uint32_t *argc)
{
    size_t p = 1;
    uint64_t count;
    int rc = read_len(buf, len, &p, &count);
    if (rc <= 0)
        return rc;
    if (count > lim->max_args)
        return TG_ETOOBIG;
    for (uint64_t i = 0; i < count; i++) {
        if (p >= len)
            return TG_NEED_MORE;
        if (buf[p] != '$')
            return TG_EPROTO;
        p++;
        uint64_t n;
        if ((rc = read_len(buf, len, &p, &n)) <= 0)
            return rc;
        if (n > lim->max_bulk || n > (uint64_t)(SSIZE_MAX - 2) - p)
            return TG_ETOOBIG;
        size_t end = p + (size_t)n;
        if ((rc = payload_crlf(buf, len, end)) <= 0)
            return rc;
        if (i < argv_cap)
            argv[i] = (tg_slice){buf + p, (size_t)n};
        p = end + 2;
    }
    *argc = (uint32_t)count;
    return count > argv_cap ? TG_ELIMIT : (ssize_t)p;
}

static bool is_blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* Bytes refused anywhere in an inline line (see the header), and outside quotes. */
static bool bad_inline(uint8_t c)
{
    return c == 0 || c == '\r';
}

static bool bad_unquoted(uint8_t c)
{
    return bad_inline(c) || c == '\v' || c == '\f' || c == '"' || c == '\'';
}

static ssize_t decode_inline(const uint8_t *buf, size_t len, const tg_resp_limits *lim,
                             tg_slice *argv, uint32_t argv_cap, uint32_t *argc)
{
    /* The line may be max_inline bytes plus "\r\n": look no further for its "\n". */
    uint64_t window = (uint64_t)lim->max_inline + 2;
    size_t scan = (uint64_t)len < window ? len : (size_t)window;
    const uint8_t *lf = memchr(buf, '\n', scan);
    if (!lf)
        return (uint64_t)len >= window ? TG_ETOOBIG : TG_NEED_MORE;
    size_t end = (size_t)(lf - buf), consumed = end + 1;
    if (end > 0 && buf[end - 1] == '\r')
        end--;
    if (end > lim->max_inline)
        return TG_ETOOBIG;

    uint32_t count = 0;
    size_t i = 0;
    for (;;) {
        while (i < end && is_blank(buf[i]))
            i++;
        if (i == end)
            break;
        size_t start, stop;
        uint8_t q = buf[i];
        if (q == '"' || q == '\'') {
            start = ++i;
            while (i < end && buf[i] != q) {
                if (buf[i] == '\\' || bad_inline(buf[i]))
                    return TG_EPROTO;
                i++;
            }
            if (i == end)
                return TG_EPROTO; /* unbalanced quote */
            stop = i++;
            if (i < end && !is_blank(buf[i]))
                return TG_EPROTO;
        } else {
            start = i;
            while (i < end && !is_blank(buf[i])) {
                if (bad_unquoted(buf[i]))
                    return TG_EPROTO;
                i++;
            }
            stop = i;
        }
        if (count >= lim->max_args)
            return TG_ETOOBIG;
        if (count < argv_cap)
            argv[count] = (tg_slice){buf + start, stop - start};
        count++;
    }
    *argc = count;
    return count > argv_cap ? TG_ELIMIT : (ssize_t)consumed;
}

ssize_t tg_resp_decode_request(const uint8_t *buf, size_t len, const tg_resp_limits *lim,
                               tg_slice *argv, uint32_t argv_cap, uint32_t *argc)
{
    if (len == 0)
        return TG_NEED_MORE;
    if (buf[0] == '*')
        return decode_multibulk(buf, len, lim, argv, argv_cap, argc);
    return decode_inline(buf, len, lim, argv, argv_cap, argc);
}

/* ---- writers ---- */

/* Decimal digits of v into dst (at least 20 bytes); returns their count. */
static size_t fmt_u64(char *dst, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    return n;
}

/* `<type><v>\r\n` into dst (at least 24 bytes); returns its length. */
static size_t fmt_header(char *dst, char type, uint64_t v)
{
    dst[0] = type;
    size_t n = 1 + fmt_u64(dst + 1, v);
    dst[n++] = '\r';
    dst[n++] = '\n';
    return n;
}

size_t tg_resp_bulk_header(char out[32], size_t payload_len)
{
    return fmt_header(out, '$', payload_len);
}

static int write_header(tg_buf *out, char type, uint64_t n)
{
    char h[32];
    return tg_buf_append(out, h, fmt_header(h, type, n));
}

int tg_resp_write_array(tg_buf *out, uint64_t n)
{
    return write_header(out, '*', n);
}

int tg_resp_write_map(tg_buf *out, uint64_t pairs)
{
    return write_header(out, '%', pairs);
}

int tg_resp_write_set(tg_buf *out, uint64_t n)
{
    return write_header(out, '~', n);
}

int tg_resp_write_push(tg_buf *out, uint64_t n)
{
    return write_header(out, '>', n);
}

int tg_resp_write_bulk2(tg_buf *out, tg_slice prefix, tg_slice s)
{
    if (prefix.len > SIZE_MAX - s.len)
        return TG_EINVAL;
    size_t n = prefix.len + s.len;
    char h[32];
    size_t hl = tg_resp_bulk_header(h, n);
    if (n > SIZE_MAX - hl - 2)
        return TG_EINVAL;
    uint8_t *dst = tg_buf_reserve(out, hl + n + 2);
    if (!dst)
        return TG_ENOMEM;
    memcpy(dst, h, hl);
    dst += hl;
    if (prefix.len)
        memcpy(dst, prefix.base, prefix.len);
    dst += prefix.len;
    if (s.len)
        memcpy(dst, s.base, s.len);
    dst += s.len;
    dst[0] = '\r';
    dst[1] = '\n';
    out->len += hl + n + 2;
    return 0;
}

int tg_resp_write_bulk(tg_buf *out, tg_slice s)
{
    return tg_resp_write_bulk2(out, (tg_slice){NULL, 0}, s);
}

int tg_resp_write_simple(tg_buf *out, const char *s)
{
    size_t n = strlen(s);
    if (strpbrk(s, "\r\n"))
        return TG_EINVAL;
    uint8_t *dst = tg_buf_reserve(out, n + 3);
    if (!dst)
        return TG_ENOMEM;
    dst[0] = '+';
    memcpy(dst + 1, s, n);
    dst[n + 1] = '\r';
    dst[n + 2] = '\n';
    out->len += n + 3;
    return 0;
}

/* `-CODE <lead><msg>\r\n` with CR/LF in msg written as spaces. */
static int write_error(tg_buf *out, const char *code, const char *lead, const char *msg)
{
    size_t cl = strlen(code), ll = strlen(lead), ml = strlen(msg);
    if (cl == 0 || cl > 32)
        return TG_EINVAL;
    for (size_t i = 0; i < cl; i++) {
        char c = code[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return TG_EINVAL;
    }
    size_t body = ll + ml;
    if (body > SIZE_MAX - cl - 4)
        return TG_EINVAL;
    size_t total = 1 + cl + (body ? 1 + body : 0) + 2;
    uint8_t *dst = tg_buf_reserve(out, total);
    if (!dst)
        return TG_ENOMEM;
    uint8_t *w = dst;
    *w++ = '-';
    memcpy(w, code, cl);
    w += cl;
    if (body) {
        *w++ = ' ';
        memcpy(w, lead, ll);
        w += ll;
        for (size_t i = 0; i < ml; i++)
            *w++ = (msg[i] == '\r' || msg[i] == '\n') ? ' ' : (uint8_t)msg[i];
    }
    *w++ = '\r';
    *w++ = '\n';
    out->len += total;
    return 0;
}

int tg_resp_write_error(tg_buf *out, const char *code, const char *msg)
{
    return write_error(out, code, "", msg);
}

int tg_resp_write_reject(tg_buf *out, const char *code, const char *reason)
{
    return write_error(out, code, "tenantgate: ", reason);
}

int tg_resp_write_integer(tg_buf *out, int64_t v)
{
    char h[32];
    size_t n = 0;
    h[n++] = ':';
    uint64_t mag = (uint64_t)v;
    if (v < 0) {
        h[n++] = '-';
        mag = 0 - mag; /* well defined for INT64_MIN too */
    }
    n += fmt_u64(h + n, mag);
    h[n++] = '\r';
    h[n++] = '\n';
    return tg_buf_append(out, h, n);
}

int tg_resp_write_null(tg_buf *out, int protover)
{
    if (protover == 2)
        return tg_buf_append(out, "$-1\r\n", 5);
    if (protover == 3)
        return tg_buf_append(out, "_\r\n", 3);
    return TG_EINVAL;
}

int tg_resp_write_null_array(tg_buf *out, int protover)
{
    if (protover == 2)
        return tg_buf_append(out, "*-1\r\n", 5);
    if (protover == 3)
        return tg_buf_append(out, "_\r\n", 3);
    return TG_EINVAL;
}

int tg_resp_write_request(tg_buf *out, const tg_slice *argv, uint32_t argc)
{
    size_t start = out->len;
    int rc = tg_resp_write_array(out, argc);
    for (uint32_t i = 0; rc == 0 && i < argc; i++)
        rc = tg_resp_write_bulk(out, argv[i]);
    if (rc != 0)
        out->len = start;
    return rc;
}
