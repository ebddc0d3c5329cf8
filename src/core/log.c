#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum hdx_log_level min_level = HDX_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void hdx_log_set_level(enum hdx_log_level level)
{
    min_level = level;
}

int hdx_log_level_parse(const char *s, enum hdx_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum hdx_log_level)i;
            return 0;
        }
    }
    return -1;
}

void hdx_log_at(enum hdx_log_level level, const char *fn, const char *event, const char *fmt, ...)
{
    if (level < min_level) return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s fn=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], fn, event);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    if (fmt && *fmt && len < sizeof(line) - 2) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        va_end(ap);
        if (m > 0) len += (size_t)m < sizeof(line) - len ? (size_t)m : sizeof(line) - len - 1;
    }
    if (len >= sizeof(line) - 1) len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

const char *hdx_log_str(char *buf, size_t cap, const char *value)
{
    size_t o = 0;
    int quote = 0;
    if (!value) value = "-"; /* library error strings can be NULL (e.g. OpenSSL system errors) */
    if (cap < 3) {
        if (cap) buf[0] = 0;
        return buf;
    }
    for (const char *p = value; *p; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20)
            quote = 1;
    if (quote) buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)value; *p && o + 4 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            buf[o++] = '?';
        } else {
            buf[o++] = (char)*p;
        }
    }
    if (quote) buf[o++] = '"';
    buf[o] = 0;
    return buf;
}
