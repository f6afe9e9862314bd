/*
 * Tests for proxy/reply_queue.c: local replies come out in request order
 * behind the backend replies that were due before them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/error.h"
#include "proxy/reply_queue.h"

typedef struct out {
    char text[256];
    size_t len;
} out;

static int collect(void *ud, const uint8_t *p, size_t len)
{
    out *o = ud;
    assert_true(o->len + len < sizeof(o->text));
    memcpy(o->text + o->len, p, len);
    o->len += len;
    o->text[o->len] = 0;
    return 0;
}

static void local_without_pending_goes_now(void **state)
{
    (void)state;
    tg_reply_queue q;
    tg_reply_queue_init(&q);
    assert_int_equal(tg_reply_queue_push_local(&q, "A", 1), 1);
    assert_int_equal(q.outstanding, 0);
    tg_reply_queue_free(&q);
}

static void local_waits_for_backend(void **state)
{
    (void)state;
    tg_reply_queue q;
    out o = {0};
    tg_reply_queue_init(&q);
    assert_int_equal(tg_reply_queue_expect_backend(&q, 1), 0);
    assert_int_equal(tg_reply_queue_push_local(&q, "L1", 2), 0);
    assert_int_equal(tg_reply_queue_expect_backend(&q, 2), 0);
    assert_int_equal(tg_reply_queue_push_local(&q, "L2", 2), 0);
    assert_int_equal(tg_reply_queue_push_local(&q, "L3", 2), 0);
    assert_int_equal(tg_reply_queue_backend_done(&q, collect, &o), 0);
    assert_string_equal(o.text, "L1");
    assert_int_equal(tg_reply_queue_backend_done(&q, collect, &o), 0);
    assert_string_equal(o.text, "L1");
    assert_int_equal(tg_reply_queue_backend_done(&q, collect, &o), 0);
    assert_string_equal(o.text, "L1L2L3");
    assert_int_equal(q.outstanding, 0);
    assert_null(q.head);
    /* Nothing is due now: the next local reply goes at once. */
    assert_int_equal(tg_reply_queue_push_local(&q, "L4", 2), 1);
    tg_reply_queue_free(&q);
}

static void extra_backend_reply_is_an_error(void **state)
{
    (void)state;
    tg_reply_queue q;
    out o = {0};
    tg_reply_queue_init(&q);
    assert_int_equal(tg_reply_queue_backend_done(&q, collect, &o), TG_EPROTO);
    tg_reply_queue_free(&q);
}

static void free_with_queued_replies(void **state)
{
    (void)state;
    tg_reply_queue q;
    tg_reply_queue_init(&q);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(tg_reply_queue_expect_backend(&q, 1), 0);
        assert_int_equal(tg_reply_queue_push_local(&q, "xyz", 3), 0);
    }
    assert_int_equal(q.outstanding, 100);
    tg_reply_queue_free(&q); /* ASan checks nothing leaks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(local_without_pending_goes_now),
        cmocka_unit_test(local_waits_for_backend),
        cmocka_unit_test(extra_backend_reply_is_an_error),
        cmocka_unit_test(free_with_queued_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
