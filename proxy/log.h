/*
 * Structured log lines on stderr.
 *
 *   tg_log(TG_LOG_INFO, "listener started", TG_FS("listener", name), TG_FI("port", port), TG_FEND);
 *
 * json:  {"ts":"2026-11-26T10:00:00.123Z","level":"info","msg":"listener
 * started","listener":"pg","port":6432} text:  2026-11-26T10:00:00.123Z INFO listener started
 * listener=pg port=6432
 *
 * Each line is built in a bounded stack buffer and written with one write(2)
 * so lines from several worker threads never interleave. Callers must never
 * pass payload bytes (tenant data) as fields: statement fingerprints, types
 * and lengths only.
 */
#ifndef TG_PROXY_LOG_H
#define TG_PROXY_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "proxy/config.h"

typedef enum { TG_LF_END, TG_LF_STR, TG_LF_INT, TG_LF_BOOL } tg_log_field_type;

/* One key/value field of a log line; build with TG_FS / TG_FI / TG_FB, end with TG_FEND. */
typedef struct tg_log_field {
    tg_log_field_type type;
    const char *key;
    const char *s;
    int64_t i;
} tg_log_field;

#define TG_FS(k, v) ((tg_log_field){TG_LF_STR, (k), (v), 0})
#define TG_FI(k, v) ((tg_log_field){TG_LF_INT, (k), NULL, (int64_t)(v)})
#define TG_FB(k, v) ((tg_log_field){TG_LF_BOOL, (k), NULL, (v) ? 1 : 0})
#define TG_FEND ((tg_log_field){TG_LF_END, NULL, NULL, 0})

/* Sets the threshold and format; safe to call again on reload. */
void tg_log_configure(tg_log_level level, tg_log_format format);

/* True when lines at this level are written (to skip building costly fields). */
bool tg_log_enabled(tg_log_level level);

/* Writes one line: msg, then the fields given as varargs up to TG_FEND. */
void tg_log(tg_log_level level, const char *msg, ...);

/* Parses "debug|info|warn|error"; returns 0 or TG_EINVAL. */
int tg_log_level_parse(const char *s, tg_log_level *out);

#endif
