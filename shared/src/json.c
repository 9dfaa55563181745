/* json.c - tiny JSON writer (see sync/json.h). */
#include "sync/json.h"

#include "sync/cbor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sync_json_init(sync_json *j, char *buf, size_t cap)
{
    j->buf = buf;
    j->cap = cap;
    j->len = 0;
    j->overflow = 0;
    j->need_comma = 0;
    if (cap)
        buf[0] = '\0';
}

static void put(sync_json *j, const char *s, size_t n)
{
    if (j->overflow || j->len + n + 1 > j->cap) {
        j->overflow = 1;
        return;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

static void puts_(sync_json *j, const char *s)
{
    put(j, s, strlen(s));
}

void sync_json_begin(sync_json *j)
{
    puts_(j, "{");
    j->need_comma = 0;
}

void sync_json_end(sync_json *j)
{
    puts_(j, "}");
    j->need_comma = 1;
}

void sync_json_key(sync_json *j, const char *key)
{
    if (j->need_comma)
        puts_(j, ",");
    sync_json_cstr(j, key);
    puts_(j, ":");
    j->need_comma = 1;
}

void sync_json_str(sync_json *j, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    puts_(j, "\"");
    size_t valid_to = sync_utf8_check(s, n);
    for (size_t i = 0; i < n; i++) {
        if (i == valid_to) {
            /* JSON must be UTF-8: a broken byte becomes U+FFFD and the rest is checked again. */
            puts_(j, "\xEF\xBF\xBD");
            valid_to = i + 1 + sync_utf8_check(s + i + 1, n - i - 1);
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(j, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(j, e, 6);
        } else {
            put(j, (const char *)&s[i], 1);
        }
    }
    puts_(j, "\"");
}

void sync_json_cstr(sync_json *j, const char *s)
{
    sync_json_str(j, s, strlen(s));
}

void sync_json_u64(sync_json *j, uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    puts_(j, b);
}

void sync_json_i64(sync_json *j, int64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%lld", (long long)v);
    puts_(j, b);
}

void sync_json_bool(sync_json *j, int v)
{
    puts_(j, v ? "true" : "false");
}

void sync_json_raw(sync_json *j, const char *s)
{
    puts_(j, s);
}

void sync_json_value(sync_json *j, const sync_value *v)
{
    static const char hex[] = "0123456789ABCDEF";
    switch (v->type) {
    case SYNC_INT:
        sync_json_i64(j, v->u.i);
        break;
    case SYNC_REAL:
        if (isfinite(v->u.f)) {
            /* The shortest of 15..17 significant digits that reads back as the same double. */
            char b[40];
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(b, sizeof b, "%.*g", prec, v->u.f);
                if (strtod(b, NULL) == v->u.f)
                    break;
            }
            /* Keep it a JSON number that reads back as a real. */
            if (!strpbrk(b, ".eE"))
                strcat(b, ".0");
            puts_(j, b);
        } else {
            puts_(j, "null");
        }
        break;
    case SYNC_TEXT:
        sync_json_str(j, (const char *)v->u.b.p, v->u.b.n);
        break;
    case SYNC_BLOB:
        puts_(j, "\"x'");
        for (size_t i = 0; i < v->u.b.n; i++) {
            char h[2] = {hex[v->u.b.p[i] >> 4], hex[v->u.b.p[i] & 15]};
            put(j, h, 2);
        }
        puts_(j, "'\"");
        break;
    default:
        puts_(j, "null");
        break;
    }
}

int sync_json_ok(const sync_json *j)
{
    return !j->overflow;
}
