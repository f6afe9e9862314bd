/*
 * A bounded HTTP/1.x request-head parser for the admin server: bytes in,
 * slices and a consumed count out. No I/O, no allocation, no globals.
 *
 *   "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
 *    ^method ^path   ^query  ^minor  ^headers  ^-- consumed ends here
 *
 * Strict on purpose (it only ever serves /metrics, /healthz and /readyz):
 * lines end in CRLF (a bare LF is TG_EPROTO), only origin-form targets
 * ("/..."), no obsolete line folding, no whitespace before a header colon, no
 * control bytes except HTAB inside header values, no leading empty lines.
 */
#ifndef TG_PROXY_HTTP_H
#define TG_PROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/slice.h"

/* Largest accepted request head (request line + headers + the empty line), in bytes. */
#define TG_HTTP_HEAD_MAX 8192
/* Largest accepted single line (request line or header line, CRLF included). */
#define TG_HTTP_LINE_MAX 4096

/* A parsed request head; every slice borrows from the parsed buffer. */
typedef struct tg_http_request {
    tg_slice method;            /* "GET" (case-sensitive token) */
    tg_slice target;            /* the whole request-target: "/metrics?x=1" */
    tg_slice path;              /* target up to '?': "/metrics" */
    tg_slice query;             /* after '?' (may be empty): "x=1"; base NULL when no '?' */
    int version_minor;          /* the x of HTTP/1.x, 0-9 */
    size_t header_count;        /* header lines seen */
    bool has_content_length;    /* a Content-Length header was present */
    uint64_t content_length;    /* its value when present */
    bool has_transfer_encoding; /* a Transfer-Encoding header was present */
    tg_slice headers;           /* every header line with its CRLF, without the final empty line */
} tg_http_request;

/*
 * Parses the request head at the start of buf (len bytes). Returns the bytes
 * consumed by the head (> 0, the final CRLF CRLF included) and fills *out;
 * TG_NEED_MORE (0) when buf holds a valid but incomplete head; TG_EPROTO when
 * it is malformed (errors are reported as soon as the bytes show them); or
 * TG_ETOOBIG when the head or one of its lines exceeds its maximum. *out is
 * meaningful only when the return is > 0. Calls are stateless: pass the whole
 * buffer again after appending more bytes.
 */
__attribute__((warn_unused_result)) ssize_t tg_http_parse_request(const uint8_t *buf, size_t len,
                                                                  tg_http_request *out);

#endif
