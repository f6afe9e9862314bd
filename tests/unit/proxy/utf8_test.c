/*
 * Unit tests for proxy/utf8.c.
 *
 *   named cases (overlong, surrogates, > U+10FFFF, truncated, stray continuation) --> refused
 *   every 1-, 2- and 3-byte input and every 4-byte lead with every second byte
 *       --> tg_utf8_next agrees with a reference that decodes the code point
 *   strings with one bad byte at every offset (across the 8-byte ASCII path) --> refused
 *
 * Every input is an exact-size heap copy, so a read past the bytes handed in
 * shows up under AddressSanitizer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "proxy/utf8.h"

#include "tests/unit/support/codec_input.h"

/* A string literal and its length (NULs inside count). */
#define W(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static bool valid_copy(const uint8_t *p, size_t n)
{
    uint8_t *d = dup_exact(p, n);
    bool ok = tg_utf8_valid(d, n);
    free(d);
    return ok;
}

static size_t next_copy(const uint8_t *p, size_t n)
{
    uint8_t *d = dup_exact(p, n);
    size_t k = tg_utf8_next(d, n);
    free(d);
    return k;
}

/*
 * The reference: decode the code point the lead byte announces, then refuse
 * it when it is overlong, a surrogate or above U+10FFFF.
 */
static size_t ref_next(const uint8_t *p, size_t n)
{
    if (p[0] < 0x80)
        return 1;
    size_t need;
    uint32_t cp, min;
    if ((p[0] & 0xE0) == 0xC0) {
        need = 2, cp = p[0] & 0x1Fu, min = 0x80;
    } else if ((p[0] & 0xF0) == 0xE0) {
        need = 3, cp = p[0] & 0x0Fu, min = 0x800;
    } else if ((p[0] & 0xF8) == 0xF0) {
        need = 4, cp = p[0] & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return need;
}

static void test_named_cases(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        bool valid;
        const char *what;
    } cases[] = {
        {"", 0, true, "empty"},
        {"plain ascii", 11, true, "ASCII"},
        {"a\0b", 3, true, "NUL is a character"},
        {"\xC2\x80", 2, true, "U+0080"},
        {"\xDF\xBF", 2, true, "U+07FF"},
        {"\xE0\xA0\x80", 3, true, "U+0800"},
        {"\xED\x9F\xBF", 3, true, "U+D7FF"},
        {"\xEE\x80\x80", 3, true, "U+E000"},
        {"\xEF\xBF\xBF", 3, true, "U+FFFF"},
        {"\xF0\x90\x80\x80", 4, true, "U+10000"},
        {"\xF4\x8F\xBF\xBF", 4, true, "U+10FFFF"},
        {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14, true, "mixed"},
        {"\x80", 1, false, "stray continuation"},
        {"\xBF", 1, false, "stray continuation"},
        {"\xC0\x80", 2, false, "overlong NUL"},
        {"\xC1\xBF", 2, false, "overlong 2-byte"},
        {"\xE0\x80\x80", 3, false, "overlong 3-byte"},
        {"\xE0\x9F\xBF", 3, false, "overlong U+07FF"},
        {"\xF0\x80\x80\x80", 4, false, "overlong 4-byte"},
        {"\xF0\x8F\xBF\xBF", 4, false, "overlong U+FFFF"},
        {"\xED\xA0\x80", 3, false, "surrogate U+D800"},
        {"\xED\xBF\xBF", 3, false, "surrogate U+DFFF"},
        {"\xED\xA0\xBD\xED\xB8\x80", 6, false, "CESU-8 pair"},
        {"\xF4\x90\x80\x80", 4, false, "U+110000"},
        {"\xF5\x80\x80\x80", 4, false, "F5 lead"},
        {"\xFF", 1, false, "FF"},
        {"\xFE\xFF", 2, false, "FE FF"},
        {"\xC3", 1, false, "truncated 2-byte"},
        {"\xE2\x82", 2, false, "truncated 3-byte"},
        {"\xF0\x9F\x98", 3, false, "truncated 4-byte"},
        {"\xC3\x28", 2, false, "bad continuation"},
        {"\xE2\x28\xA1", 3, false, "bad second of 3"},
        {"\xE2\x82\x28", 3, false, "bad third of 3"},
        {"\xF0\x9F\x28\x80", 4, false, "bad third of 4"},
        {"\xF0\x9F\x98\x28", 4, false, "bad fourth of 4"},
        {"abcdefgh\xC3", 9, false, "truncated after an ASCII word"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got = valid_copy((const uint8_t *)cases[i].bytes, cases[i].len);
        if (got != cases[i].valid)
            fail_msg("%s: %d, want %d", cases[i].what, got, cases[i].valid);
    }
}

static void test_next_lengths(void **state)
{
    (void)state;
    assert_int_equal(next_copy(W("a")), 1);
    assert_int_equal(next_copy(W("\0")), 1);
    assert_int_equal(next_copy(W("\xC3\xA9xyz")), 2);
    assert_int_equal(next_copy(W("\xE2\x82\xAC")), 3);
    assert_int_equal(next_copy(W("\xF0\x9F\x98\x80!")), 4);
    assert_int_equal(next_copy(W("\xF0\x9F\x98")), 0);
    assert_int_equal(next_copy(W("\x80")), 0);
}

static void test_next_matches_reference(void **state)
{
    (void)state;
    uint8_t b[4];
    /* every input of one, two and three bytes */
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        assert_int_equal(tg_utf8_next(b, 1), ref_next(b, 1));
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            assert_int_equal(tg_utf8_next(b, 2), ref_next(b, 2));
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                size_t got = tg_utf8_next(b, 3), want = ref_next(b, 3);
                if (got != want)
                    fail_msg("%02x %02x %02x: %zu, want %zu", x, y, z, got, want);
            }
        }
    }
    /* four bytes: every lead and second byte, the last two at their edges and beyond */
    static const uint8_t tails[] = {0x00, 0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    for (unsigned x = 0xF0; x < 256; x++) {
        for (unsigned y = 0; y < 256; y++) {
            for (size_t i = 0; i < sizeof(tails); i++) {
                for (size_t j = 0; j < sizeof(tails); j++) {
                    b[0] = (uint8_t)x, b[1] = (uint8_t)y, b[2] = tails[i], b[3] = tails[j];
                    size_t got = tg_utf8_next(b, 4), want = ref_next(b, 4);
                    if (got != want)
                        fail_msg("%02x %02x %02x %02x: %zu, want %zu", b[0], b[1], b[2], b[3], got,
                                 want);
                }
            }
        }
    }
}

/* One bad byte at every offset of a long string: refused wherever the fast path stands. */
static void test_bad_byte_everywhere(void **state)
{
    (void)state;
    static const char good[] = "The quick brown fox \xE2\x80\x94 jumps over the lazy dog, "
                               "twice: caf\xC3\xA9, \xF0\x9F\xA6\x8A, and 0123456789.";
    size_t n = sizeof(good) - 1;
    assert_true(valid_copy((const uint8_t *)good, n));
    uint8_t *s = dup_exact((const uint8_t *)good, n);
    for (size_t at = 0; at < n; at++) {
        uint8_t saved = s[at];
        s[at] = 0xFF;
        if (valid_copy(s, n))
            fail_msg("0xFF at %zu accepted", at);
        s[at] = saved;
    }
    /* every prefix: valid exactly when it does not cut a character */
    for (size_t len = 0; len <= n; len++) {
        bool cut = len < n && (good[len] & 0xC0) == 0x80;
        if (valid_copy((const uint8_t *)good, len) == cut)
            fail_msg("prefix of %zu bytes: %s", len, cut ? "accepted" : "refused");
    }
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_named_cases),
        cmocka_unit_test(test_next_lengths),
        cmocka_unit_test(test_next_matches_reference),
        cmocka_unit_test(test_bad_byte_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
