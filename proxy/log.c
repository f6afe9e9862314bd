/*
 * Structured log lines: see log.h. The level and format are process-wide
 * atomics so worker threads read them without locks; a reload changes them
 * in place.
 */
#include "proxy/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy/error.h"

#define TG_LOG_LINE_MAX 2048

static _Atomic int g_level = TG_LOG_INFO;
static _Atomic int g_format = TG_LOG_FORMAT_JSON;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void tg_log_configure(tg_log_level level, tg_log_format format)
{
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
    atomic_store_explicit(&g_format, (int)format, memory_order_relaxed);
}

bool tg_log_enabled(tg_log_level level)
{
    return (int)level >= atomic_load_explicit(&g_level, memory_order_relaxed);
}

int tg_log_level_parse(const char *s, tg_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (tg_log_level)i;
            return 0;
        }
    }
    return TG_EINVAL;
}

/*
 * A bounded line under construction. Text that does not fit is dropped whole
 * (never half an escape), and room is kept for the closing "}\n", so a long
 * JSON line is cut but stays valid JSON.
 */
typedef struct line {
    char buf[TG_LOG_LINE_MAX];
    size_t len;
    size_t good; /* length after the last complete field */
    bool full;
} line;

#define TG_LOG_TAIL_ROOM 2 /* "}" and "\n" */

static void put(line *l, const char *s, size_t n)
{
    if (l->full || n > sizeof(l->buf) - TG_LOG_TAIL_ROOM - l->len) {
        l->full = true;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Appends s as the inside of a JSON string: quotes, backslashes and control bytes escaped. */
static void put_json_escaped(line *l, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            put(l, esc, 6);
        } else {
            put(l, (const char *)p, 1);
        }
    }
}

/* Appends s for the text format: control bytes and spaces are replaced so a field stays one token.
 */
static void put_text_safe(line *l, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char c = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
        put(l, &c, 1);
    }
}

static void put_timestamp(line *l)
{
    struct timespec ts;
    struct tm tm;
    char buf[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", ts.tv_nsec / 1000000);
    puts_(l, buf);
}

void tg_log(tg_log_level level, const char *msg, ...)
{
    if (!tg_log_enabled(level))
        return;
    bool json = atomic_load_explicit(&g_format, memory_order_relaxed) == TG_LOG_FORMAT_JSON;
    line l;
    l.len = 0;
    l.good = 0;
    l.full = false;
    char num[32];

    if (json) {
        puts_(&l, "{\"ts\":\"");
        put_timestamp(&l);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, level_names[level]);
        puts_(&l, "\"");
        l.good = l.len;
        puts_(&l, ",\"msg\":\"");
        put_json_escaped(&l, msg);
        puts_(&l, "\"");
        if (!l.full)
            l.good = l.len;
    } else {
        put_timestamp(&l);
        puts_(&l, " ");
        for (const char *p = level_names[level]; *p; p++) {
            char c = (char)(*p - 'a' + 'A');
            put(&l, &c, 1);
        }
        puts_(&l, " ");
        put_text_safe(&l, msg);
    }

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        tg_log_field f = va_arg(ap, tg_log_field);
        if (f.type == TG_LF_END)
            break;
        if (json) {
            puts_(&l, ",\"");
            put_json_escaped(&l, f.key);
            puts_(&l, "\":");
        } else {
            puts_(&l, " ");
            put_text_safe(&l, f.key);
            puts_(&l, "=");
        }
        switch (f.type) {
        case TG_LF_STR:
            if (json) {
                if (f.s) {
                    puts_(&l, "\"");
                    put_json_escaped(&l, f.s);
                    puts_(&l, "\"");
                } else {
                    puts_(&l, "null");
                }
            } else {
                put_text_safe(&l, f.s ? f.s : "-");
            }
            break;
        case TG_LF_INT:
            snprintf(num, sizeof(num), "%lld", (long long)f.i);
            puts_(&l, num);
            break;
        case TG_LF_BOOL:
            puts_(&l, f.i ? "true" : "false");
            break;
        case TG_LF_END:
            break;
        }
        if (!l.full)
            l.good = l.len;
    }
    va_end(ap);

    if (json) {
        /* A cut line may end inside a value: drop back to the last complete field. */
        if (l.full)
            l.len = l.good;
        l.buf[l.len++] = '}';
    }
    l.buf[l.len++] = '\n';
    ssize_t w = write(STDERR_FILENO, l.buf, l.len);
    (void)w; /* nowhere left to report a failing stderr */
}
