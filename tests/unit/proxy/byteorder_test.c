/*
 * Unit tests for proxy/byteorder.h.
 *
 *   known byte strings --> the values the protocols' specifications give them
 *   values --> store --> load: the same value, exactly the bytes named, nothing around them
 *   wire integers at the edges --> two's complement values
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "proxy/byteorder.h"

static void test_known_bytes(void **state)
{
    (void)state;
    /* a PostgreSQL StartupMessage's protocol code, 3.0 */
    static const uint8_t v30[4] = {0x00, 0x03, 0x00, 0x00};
    assert_int_equal(tg_load_be32(v30), 196608);
    /* the Bolt magic preamble */
    static const uint8_t magic[4] = {0x60, 0x60, 0xB0, 0x17};
    assert_int_equal(tg_load_be32(magic), 0x6060B017u);
    assert_int_equal(tg_load_be16(magic + 2), 0xB017);
    /* a MongoDB OP_MSG opcode (2013) and a BSON size */
    static const uint8_t op_msg[4] = {0xDD, 0x07, 0x00, 0x00};
    assert_int_equal(tg_load_le32(op_msg), 2013);
    static const uint8_t le64[8] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x88};
    assert_true(tg_load_le64(le64) == UINT64_C(0x8807060504030201));
}

static void test_store_load(void **state)
{
    (void)state;
    static const uint32_t values[] = {0,          1,          0x7F,       0x80,
                                      0xFF,       0x100,      0xFFFF,     0x10000,
                                      0x12345678, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        uint32_t v = values[i];
        uint8_t b[8];

        memset(b, 0xEE, sizeof(b));
        tg_store_be32(b + 2, v);
        assert_int_equal(b[1], 0xEE);
        assert_int_equal(b[6], 0xEE);
        assert_int_equal(b[2], v >> 24);
        assert_int_equal(b[5], v & 0xFF);
        assert_int_equal(tg_load_be32(b + 2), v);

        memset(b, 0xEE, sizeof(b));
        tg_store_le32(b + 1, v);
        assert_int_equal(b[0], 0xEE);
        assert_int_equal(b[5], 0xEE);
        assert_int_equal(b[1], v & 0xFF);
        assert_int_equal(b[4], v >> 24);
        assert_int_equal(tg_load_le32(b + 1), v);

        memset(b, 0xEE, sizeof(b));
        tg_store_be16(b + 3, (uint16_t)v);
        assert_int_equal(b[2], 0xEE);
        assert_int_equal(b[5], 0xEE);
        assert_int_equal(b[3], (v >> 8) & 0xFF);
        assert_int_equal(tg_load_be16(b + 3), v & 0xFFFF);
    }
}

static void test_signed(void **state)
{
    (void)state;
    assert_int_equal(tg_i16(0), 0);
    assert_int_equal(tg_i16(0x7FFF), INT16_MAX);
    assert_int_equal(tg_i16(0x8000), INT16_MIN);
    assert_int_equal(tg_i16(0xFFFF), -1);
    assert_int_equal(tg_i32(0x7FFFFFFFu), INT32_MAX);
    assert_int_equal(tg_i32(0x80000000u), INT32_MIN);
    assert_int_equal(tg_i32(0xFFFFFFFEu), -2);
    assert_true(tg_i64(UINT64_C(0x7FFFFFFFFFFFFFFF)) == INT64_MAX);
    assert_true(tg_i64(UINT64_C(0x8000000000000000)) == INT64_MIN);
    assert_true(tg_i64(UINT64_MAX) == -1);
    /* a PostgreSQL Bind's -1 (NULL) parameter length */
    static const uint8_t minus_one[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    assert_int_equal(tg_i32(tg_load_be32(minus_one)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_bytes),
        cmocka_unit_test(test_store_load),
        cmocka_unit_test(test_signed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
