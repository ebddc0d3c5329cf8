/* log: structured key=value log lines on stderr.
 * Every line is "ts=... level=... fn=... event=NAME k=v ...". Callers pass only values they
 * produced (names, counts, codes, addresses); there is deliberately no function that logs
 * message bytes, so PHI cannot reach a log through this module.
 * Values containing spaces, quotes or '=' are quoted and escaped by hdx_log_str().
 * Thread-safe: one write(2) per line. */
#ifndef HDX_LOG_H
#define HDX_LOG_H

#include <stddef.h>

enum hdx_log_level { HDX_LOG_DEBUG, HDX_LOG_INFO, HDX_LOG_WARN, HDX_LOG_ERROR };

void hdx_log_set_level(enum hdx_log_level level);
int hdx_log_level_parse(const char *s, enum hdx_log_level *out);

/* fmt holds the key=value pairs after event=; use %s only with hdx_log_str() output
 * or with strings hdx itself chose. */
void hdx_log_at(enum hdx_log_level level, const char *fn, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Quotes a value for a log line into buf (always NUL-terminated, truncated to cap). */
const char *hdx_log_str(char *buf, size_t cap, const char *value);

#define hdx_debug(ev, ...) hdx_log_at(HDX_LOG_DEBUG, __func__, ev, __VA_ARGS__)
#define hdx_info(ev, ...) hdx_log_at(HDX_LOG_INFO, __func__, ev, __VA_ARGS__)
#define hdx_warn(ev, ...) hdx_log_at(HDX_LOG_WARN, __func__, ev, __VA_ARGS__)
#define hdx_error(ev, ...) hdx_log_at(HDX_LOG_ERROR, __func__, ev, __VA_ARGS__)

#endif
