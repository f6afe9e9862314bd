/*
 * Unit tests for proxy/log.c: stderr is redirected (dup2) to a temporary file
 * around each tg_log call, and the captured line is checked for shape (JSON
 * object or text tokens), escaping of quotes, backslashes, newlines and
 * control bytes, the level threshold, and truncation of overlong lines.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/error.h"
#include "proxy/log.h"

/* Captures what the calls between capture_start and capture_end write to stderr. */
typedef struct capture {
    FILE *tmp;
    int saved;
} capture;

static void capture_start(capture *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_int_equal(dup2(fileno(c->tmp), STDERR_FILENO), STDERR_FILENO);
}

/* Restores stderr and returns what was written, NUL-terminated (caller frees). */
static char *capture_end(capture *c)
{
    assert_int_equal(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    close(c->saved);
    fseek(c->tmp, 0, SEEK_END); /* the fd's offset moved under the FILE: sync it */
    long n = ftell(c->tmp);
    rewind(c->tmp);
    char *buf = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, c->tmp), (size_t)n);
    fclose(c->tmp);
    return buf;
}

/* Skips the variable timestamp: returns the JSON line from the first field after "ts". */
static const char *after_ts(const char *line)
{
    assert_true(strncmp(line, "{\"ts\":\"", 7) == 0);
    /* 2026-11-26T10:00:00.123Z */
    const char *ts = line + 7;
    assert_int_equal(strlen(ts) > 24, 1);
    assert_int_equal(ts[4], '-');
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
    assert_int_equal(ts[24], '"');
    return ts + 25;
}

static void json_shape(void **state)
{
    (void)state;
    tg_log_configure(TG_LOG_INFO, TG_LOG_FORMAT_JSON);
    capture c;
    capture_start(&c);
    tg_log(TG_LOG_INFO, "listener started", TG_FS("listener", "pg"), TG_FI("port", 6432),
           TG_FI("neg", -5), TG_FB("tls", true), TG_FB("auth", false), TG_FS("tenant", NULL),
           TG_FEND);
    char *out = capture_end(&c);
    assert_string_equal(after_ts(out),
                        ",\"level\":\"info\",\"msg\":\"listener started\",\"listener\":\"pg\","
                        "\"port\":6432,\"neg\":-5,\"tls\":true,\"auth\":false,\"tenant\":null}\n");
    free(out);
}

static void json_escaping(void **state)
{
    (void)state;
    tg_log_configure(TG_LOG_DEBUG, TG_LOG_FORMAT_JSON);
    capture c;
    capture_start(&c);
    tg_log(TG_LOG_WARN, "say \"hi\"\\now\n", TG_FS("k\"ey", "a\nb\rc\td\x01\x1f\x7f\xc3\xa9"),
           TG_FEND);
    char *out = capture_end(&c);
    assert_string_equal(
        after_ts(out), ",\"level\":\"warn\",\"msg\":\"say \\\"hi\\\"\\\\now\\u000a\","
                       "\"k\\\"ey\":\"a\\u000ab\\u000dc\\u0009d\\u0001\\u001f\\u007f\xc3\xa9\"}\n");
    /* Exactly one line: no raw newline before the terminating one. */
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
    free(out);
}

static void text_format(void **state)
{
    (void)state;
    tg_log_configure(TG_LOG_INFO, TG_LOG_FORMAT_TEXT);
    capture c;
    capture_start(&c);
    tg_log(TG_LOG_ERROR, "backend down\n", TG_FS("listener", "pg"), TG_FI("port", 5432),
           TG_FB("retry", true), TG_FS("tenant", NULL), TG_FS("evil", "x\ny"), TG_FEND);
    char *out = capture_end(&c);
    /* 2026-11-26T10:00:00.123Z ERROR ... */
    assert_int_equal(out[23], 'Z');
    assert_int_equal(out[24], ' ');
    assert_string_equal(out + 25,
                        "ERROR backend down? listener=pg port=5432 retry=true tenant=- evil=x?y\n");
    free(out);
    tg_log_configure(TG_LOG_INFO, TG_LOG_FORMAT_JSON);
}

static void level_threshold(void **state)
{
    (void)state;
    tg_log_configure(TG_LOG_WARN, TG_LOG_FORMAT_JSON);
    assert_false(tg_log_enabled(TG_LOG_DEBUG));
    assert_false(tg_log_enabled(TG_LOG_INFO));
    assert_true(tg_log_enabled(TG_LOG_WARN));
    assert_true(tg_log_enabled(TG_LOG_ERROR));
    capture c;
    capture_start(&c);
    tg_log(TG_LOG_DEBUG, "d", TG_FEND);
    tg_log(TG_LOG_INFO, "i", TG_FEND);
    tg_log(TG_LOG_WARN, "w", TG_FEND);
    tg_log(TG_LOG_ERROR, "e", TG_FEND);
    char *out = capture_end(&c);
    assert_null(strstr(out, "\"msg\":\"d\""));
    assert_null(strstr(out, "\"msg\":\"i\""));
    const char *w = strstr(out, "\"level\":\"warn\",\"msg\":\"w\"}\n");
    const char *e = strstr(out, "\"level\":\"error\",\"msg\":\"e\"}\n");
    assert_non_null(w);
    assert_non_null(e);
    assert_true(w < e);
    free(out);

    /* A reload lowers the threshold in place. */
    tg_log_configure(TG_LOG_DEBUG, TG_LOG_FORMAT_JSON);
    capture_start(&c);
    tg_log(TG_LOG_DEBUG, "d", TG_FEND);
    out = capture_end(&c);
    assert_non_null(strstr(out, "\"level\":\"debug\",\"msg\":\"d\"}\n"));
    free(out);
    tg_log_configure(TG_LOG_INFO, TG_LOG_FORMAT_JSON);
}

static void long_line_truncated(void **state)
{
    (void)state;
    tg_log_configure(TG_LOG_INFO, TG_LOG_FORMAT_JSON);
    size_t n = 10000;
    char *big = malloc(n + 1);
    memset(big, '"', n); /* each escapes to two bytes */
    big[n] = '\0';
    capture c;
    capture_start(&c);
    tg_log(TG_LOG_INFO, "big", TG_FS("v", big), TG_FI("after", 1), TG_FEND);
    char *out = capture_end(&c);
    size_t len = strlen(out);
    assert_true(len <= 2048);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1); /* still one line */
    /* Still valid JSON: the field that did not fit is dropped whole, the object is closed. */
    assert_non_null(strstr(out, "\"msg\":\"big\"}\n"));
    assert_int_equal(out[0], '{');
    free(out);
    free(big);
}

static void level_parse(void **state)
{
    (void)state;
    tg_log_level l = TG_LOG_ERROR;
    assert_int_equal(tg_log_level_parse("debug", &l), 0);
    assert_int_equal(l, TG_LOG_DEBUG);
    assert_int_equal(tg_log_level_parse("info", &l), 0);
    assert_int_equal(l, TG_LOG_INFO);
    assert_int_equal(tg_log_level_parse("warn", &l), 0);
    assert_int_equal(l, TG_LOG_WARN);
    assert_int_equal(tg_log_level_parse("error", &l), 0);
    assert_int_equal(l, TG_LOG_ERROR);
    assert_int_equal(tg_log_level_parse("warning", &l), TG_EINVAL);
    assert_int_equal(tg_log_level_parse("INFO", &l), TG_EINVAL);
    assert_int_equal(tg_log_level_parse("", &l), TG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_shape),          cmocka_unit_test(json_escaping),
        cmocka_unit_test(text_format),         cmocka_unit_test(level_threshold),
        cmocka_unit_test(long_line_truncated), cmocka_unit_test(level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
