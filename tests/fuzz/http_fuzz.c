/*
 * libFuzzer target for tg_http_parse_request (proxy/http.c).
 *
 *   data --exact-size heap copy--> parse --> invariants
 *
 * Invariants: the result is > 0, TG_NEED_MORE, TG_EPROTO or TG_ETOOBIG; a
 * consumed count is <= len and <= TG_HTTP_HEAD_MAX and ends with CRLF CRLF;
 * every slice lies inside the consumed head; path + '?' + query rebuild the
 * target; every proper prefix of a parsed head gives TG_NEED_MORE, and the
 * head alone parses to the same result; a prefix of an erroneous input gives
 * TG_NEED_MORE or the same error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/error.h"
#include "proxy/http.h"

#include "fuzz_support.h"

static ssize_t parse_copy(const uint8_t *data, size_t len, tg_http_request *r)
{
    uint8_t *copy = dup_exact(data, len);
    ssize_t n = tg_http_parse_request(copy, len, r);
    free(copy);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = dup_exact(data, size);
    tg_http_request r;
    ssize_t n = tg_http_parse_request(buf, size, &r);

    if (n > 0) {
        size_t consumed = (size_t)n;
        if (consumed > size || consumed > TG_HTTP_HEAD_MAX || consumed < 4 ||
            memcmp(buf + consumed - 4, "\r\n\r\n", 4) != 0)
            abort();
        check_slice(r.method, buf, consumed);
        check_slice(r.target, buf, consumed);
        check_slice(r.path, buf, consumed);
        check_slice(r.query, buf, consumed);
        check_slice(r.headers, buf, consumed);
        if (r.method.len == 0 || r.path.len == 0 || r.path.base[0] != '/' ||
            r.path.base != r.target.base)
            abort();
        if (r.query.base && (r.query.base != r.path.base + r.path.len + 1 ||
                             r.path.len + 1 + r.query.len != r.target.len))
            abort();
        if (!r.query.base && r.path.len != r.target.len)
            abort();
        if (r.version_minor < 0 || r.version_minor > 9)
            abort();
        if (r.has_content_length && r.has_transfer_encoding)
            abort();

        /* The head alone gives the same result; each proper prefix (sampled) needs more. */
        tg_http_request again;
        if (parse_copy(buf, consumed, &again) != n)
            abort();
        size_t step = consumed > 512 ? consumed / 256 : 1;
        for (size_t i = 0; i < consumed; i += step) {
            if (parse_copy(buf, i, &again) != TG_NEED_MORE)
                abort();
        }
    } else if (n == TG_NEED_MORE) {
        if (size >= TG_HTTP_HEAD_MAX)
            abort(); /* a full budget without a head must be TG_ETOOBIG */
    } else if (n == TG_EPROTO || n == TG_ETOOBIG) {
        size_t step = size > 512 ? size / 256 : 1;
        for (size_t i = 0; i < size; i += step) {
            ssize_t p = parse_copy(buf, i, &r);
            if (p != TG_NEED_MORE && p != n)
                abort();
        }
    } else {
        abort();
    }
    free(buf);
    return 0;
}
