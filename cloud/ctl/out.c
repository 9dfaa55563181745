/* out.c - safe cells, ages, rates and JSON documents (see out.h). */
#include "out.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "states.h"
#include "sync/value.h"

/* Decodes one UTF-8 character at s (n bytes left). Returns its length and sets *cp, or 0 when
 * the bytes are no valid UTF-8 (overlong forms, surrogates and values past U+10FFFF too). */
static size_t utf8_next(const unsigned char *s, size_t n, unsigned *cp)
{
    size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (s[0] >= 0xF5 || len == 0 || len > n)
        return 0;
    unsigned v = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
        (len == 4 && (v < 0x10000 || v > 0x10FFFF)))
        return 0;
    *cp = v;
    return len;
}

/* Characters a terminal may act on rather than show: C1 controls and the bidirectional
 * overrides and isolates (which reorder what follows on the line). */
static int invisible(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E || cp == 0x200F || cp == 0x061C;
}

char *ctl_safe(char *buf, size_t cap, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap;) {
        unsigned cp = 0;
        size_t len = u[i] < 0x80 ? 1 : utf8_next(u + i, n - i, &cp);
        if (len == 1 && u[i] >= 0x20 && u[i] < 0x7f) {
            buf[o++] = (char)u[i];
        } else if (len > 1 && !invisible(cp) && o + len < cap) {
            memcpy(buf + o, u + i, len);
            o += len;
        } else if (len > 1 && !invisible(cp)) {
            break; /* a character that does not fit whole */
        } else {
            buf[o++] = '?';
        }
        i += len ? len : 1;
    }
    buf[o] = '\0';
    return buf;
}

/* Characters (not bytes) of the valid UTF-8 text s. */
static int columns(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Bytes of s's first `chars` characters. */
static int prefix_bytes(const char *s, int chars)
{
    int i = 0, c = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == chars)
                break;
            c++;
        }
    }
    return i;
}

void ctl_cell(FILE *f, const char *s, int width)
{
    size_t len = strlen(s);
    char *safe = malloc(len + 1);
    if (!safe)
        return;
    ctl_safe(safe, len + 1, s, len);
    int n = columns(safe);
    if (width <= 0)
        fprintf(f, "%s\n", safe);
    else if (n > width)
        fprintf(f, "%.*s~ ", prefix_bytes(safe, width - 1), safe);
    else
        fprintf(f, "%s%*s ", safe, width - n, "");
    free(safe);
}

uint64_t ctl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

char *ctl_age(char *buf, size_t cap, uint64_t then_ms, uint64_t now_ms)
{
    uint64_t s = now_ms > then_ms ? (now_ms - then_ms) / 1000 : 0;
    if (s < 120)
        snprintf(buf, cap, "%llus ago", (unsigned long long)s);
    else if (s < 120 * 60)
        snprintf(buf, cap, "%llum ago", (unsigned long long)(s / 60));
    else if (s < 48 * 3600)
        snprintf(buf, cap, "%lluh ago", (unsigned long long)(s / 3600));
    else
        snprintf(buf, cap, "%llud ago", (unsigned long long)(s / 86400));
    return buf;
}

char *ctl_rate(char *buf, size_t cap, double v)
{
    if (!isfinite(v) || v < 0)
        snprintf(buf, cap, "?");
    else if (v < 1000)
        snprintf(buf, cap, "%.0f", v);
    else if (v < 10e3)
        snprintf(buf, cap, "%.1fk", v / 1e3);
    else if (v < 1e6)
        snprintf(buf, cap, "%.0fk", v / 1e3);
    else
        snprintf(buf, cap, "%.1fM", v / 1e6);
    return buf;
}

int ctl_emit_json(FILE *f, void (*write)(sync_json *j, void *arg), void *arg)
{
    for (size_t cap = 4096; cap <= (size_t)64 << 20; cap *= 2) {
        char *buf = malloc(cap);
        if (!buf)
            return -1;
        sync_json j;
        sync_json_init(&j, buf, cap);
        write(&j, arg);
        if (sync_json_ok(&j)) {
            fwrite(buf, 1, j.len, f);
            free(buf);
            return 0;
        }
        free(buf);
    }
    return -1;
}

void ctl_write_null(sync_json *j)
{
    sync_json_raw(j, "null");
}

void ctl_write_real(sync_json *j, double v)
{
    sync_value x = {.type = SYNC_REAL, .u.f = v};
    sync_json_value(j, &x); /* non-finite values come out as null */
}

void ctl_write_uint_or_null(sync_json *j, uint64_t v)
{
    if (v == CTL_NONE)
        ctl_write_null(j);
    else
        sync_json_u64(j, v);
}
