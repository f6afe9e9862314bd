/*
 * The admin server's HTTP/1.x request-head parser (see http.h).
 *
 *   buf --window (first TG_HTTP_HEAD_MAX bytes)--> request line --> header lines --> empty line
 *        each line: scan_line (CRLF, control bytes, length) then its grammar
 *
 * Every call re-parses from the start of the buffer: heads are at most 8 KiB
 * and admin requests are rare, so keeping no state between calls is cheaper
 * than getting resumable state right. Byte-level faults (control bytes, bare
 * LF, CR without LF, overlong lines) are reported as soon as they arrive; the
 * grammar of a line is checked once its CRLF is in. So for any input, a prefix
 * gives TG_NEED_MORE or the same error as the whole, and every prefix of a
 * valid head gives TG_NEED_MORE.
 */
#include "proxy/http.h"

#include <string.h>

#include "proxy/error.h"

#define SCAN_LINE 1 /* scan_line found a complete line */

/* RFC 9110 tchar: the characters of a method or a header name. */
static bool is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/*
 * Scans the line starting at buf[start] within window bytes. Returns
 * SCAN_LINE with *cr at the index of its CR, TG_NEED_MORE when the window
 * ends first, TG_EPROTO on a control byte (HTAB excepted), a bare LF or a CR
 * not followed by LF, TG_ETOOBIG when the line would exceed TG_HTTP_LINE_MAX.
 */
static int scan_line(const uint8_t *buf, size_t window, size_t start, size_t *cr)
{
    for (size_t i = start; i < window; i++) {
        uint8_t c = buf[i];
        if (c == '\r') {
            if (i + 1 >= window)
                return TG_NEED_MORE;
            if (buf[i + 1] != '\n')
                return TG_EPROTO;
            *cr = i;
            return SCAN_LINE;
        }
        if (c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f)
            return TG_EPROTO;
        if (i - start + 1 + 2 > TG_HTTP_LINE_MAX) /* this byte, then CRLF */
            return TG_ETOOBIG;
    }
    return TG_NEED_MORE;
}

/* Parses "METHOD SP origin-form SP HTTP/1.x" in buf[start, end). */
static int parse_request_line(const uint8_t *buf, size_t start, size_t end, tg_http_request *r)
{
    size_t p = start;
    while (p < end && is_tchar(buf[p]))
        p++;
    if (p == start || p >= end || buf[p] != ' ')
        return TG_EPROTO;
    r->method = (tg_slice){buf + start, p - start};
    p++;

    size_t t = p;
    if (t >= end || buf[t] != '/')
        return TG_EPROTO; /* only origin-form: no "*", no absolute-form */
    size_t q = 0;         /* index of the first '?', 0 when none */
    while (p < end && buf[p] != ' ') {
        uint8_t c = buf[p];
        if (c <= 0x20 || c >= 0x7f || c == '#')
            return TG_EPROTO;
        if (c == '?' && q == 0)
            q = p;
        p++;
    }
    r->target = (tg_slice){buf + t, p - t};
    if (q) {
        r->path = (tg_slice){buf + t, q - t};
        r->query = (tg_slice){buf + q + 1, p - q - 1};
    } else {
        r->path = r->target;
        r->query = (tg_slice){NULL, 0};
    }
    if (p >= end)
        return TG_EPROTO;
    p++; /* the SP */

    static const char version[] = "HTTP/1.";
    size_t vlen = sizeof(version) - 1;
    if (end - p != vlen + 1 || memcmp(buf + p, version, vlen) != 0)
        return TG_EPROTO;
    uint8_t minor = buf[p + vlen];
    if (minor < '0' || minor > '9')
        return TG_EPROTO;
    r->version_minor = minor - '0';
    return 0;
}

/* True when the slice equals lower-case ASCII s, ignoring the case of the slice. */
static bool name_is(const uint8_t *name, size_t len, const char *s)
{
    if (strlen(s) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        if (c != (uint8_t)s[i])
            return false;
    }
    return true;
}

/* Parses 1*DIGIT with overflow checks. */
static int parse_u64(const uint8_t *s, size_t len, uint64_t *out)
{
    if (len == 0)
        return TG_EPROTO;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return TG_EPROTO;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return TG_EPROTO;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Parses "name:" OWS value OWS in buf[start, end) and records the headers we act on. */
static int parse_header(const uint8_t *buf, size_t start, size_t end, tg_http_request *r)
{
    size_t p = start;
    while (p < end && is_tchar(buf[p]))
        p++;
    /* An empty name covers obsolete line folding (a line starting with SP/HTAB). */
    if (p == start || p >= end || buf[p] != ':')
        return TG_EPROTO;
    const uint8_t *name = buf + start;
    size_t name_len = p - start;
    size_t v = p + 1, ve = end;
    while (v < ve && (buf[v] == ' ' || buf[v] == '\t'))
        v++;
    while (ve > v && (buf[ve - 1] == ' ' || buf[ve - 1] == '\t'))
        ve--;
    /* scan_line has already refused control bytes; the rest is VCHAR, SP, HTAB or obs-text. */

    if (name_is(name, name_len, "content-length")) {
        if (r->has_content_length)
            return TG_EPROTO; /* duplicates, even equal ones, are a smuggling smell */
        int rc = parse_u64(buf + v, ve - v, &r->content_length);
        if (rc < 0)
            return rc;
        r->has_content_length = true;
    } else if (name_is(name, name_len, "transfer-encoding")) {
        r->has_transfer_encoding = true;
    }
    if (r->has_content_length && r->has_transfer_encoding)
        return TG_EPROTO;
    r->header_count++;
    return 0;
}

ssize_t tg_http_parse_request(const uint8_t *buf, size_t len, tg_http_request *out)
{
    tg_http_request r;
    memset(&r, 0, sizeof(r));
    size_t window = len < TG_HTTP_HEAD_MAX ? len : TG_HTTP_HEAD_MAX;
    /* Running out of window is NEED_MORE, unless the window is already the whole budget. */
    int incomplete = window == TG_HTTP_HEAD_MAX ? TG_ETOOBIG : TG_NEED_MORE;
    size_t cr = 0;

    int rc = scan_line(buf, window, 0, &cr);
    if (rc != SCAN_LINE)
        return rc == TG_NEED_MORE ? incomplete : rc;
    if (cr == 0)
        return TG_EPROTO; /* no leading empty lines */
    rc = parse_request_line(buf, 0, cr, &r);
    if (rc < 0)
        return rc;

    size_t pos = cr + 2;
    size_t headers_start = pos;
    for (;;) {
        rc = scan_line(buf, window, pos, &cr);
        if (rc != SCAN_LINE)
            return rc == TG_NEED_MORE ? incomplete : rc;
        if (cr == pos)
            break; /* the empty line ends the head */
        rc = parse_header(buf, pos, cr, &r);
        if (rc < 0)
            return rc;
        pos = cr + 2;
    }
    r.headers = (tg_slice){buf + headers_start, pos - headers_start};
    *out = r;
    return (ssize_t)(pos + 2);
}
