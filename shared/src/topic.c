/* topic.c - building and parsing the topic tree (see sync/topic.h). */
#include "sync/topic.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sync/err.h"
#include "sync/record.h"

int sync_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > SYNC_MAX_ID)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '.';
        if (!ok)
            return 0;
    }
    return 1;
}

static int fmt(char *buf, size_t n, const char *f, ...) __attribute__((format(printf, 3, 4)));
static int fmt(char *buf, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int w = vsnprintf(buf, n, f, ap);
    va_end(ap);
    return (w < 0 || (size_t)w >= n) ? SYNC_ERR_NOSPACE : SYNC_OK;
}

int sync_topic_dev(char *buf, size_t n, const char *tenant, const char *device, const char *leaf)
{
    return fmt(buf, n, "sync/%s/dev/%s/%s", tenant, device, leaf);
}

int sync_topic_delta(char *buf, size_t n, const char *tenant, const char *table)
{
    return fmt(buf, n, "sync/%s/delta/%s", tenant, table);
}

int sync_topic_event(char *buf, size_t n, const char *tenant, const char *kind)
{
    return fmt(buf, n, "sync/%s/events/%s", tenant, kind);
}

/* Appends v as one topic level at buf[at] (see sync/topic.h). */
static int topic_level(char *buf, size_t n, size_t at, const sync_value *v)
{
    static const char hex[] = "0123456789ABCDEF";
    if (at >= n)
        return SYNC_ERR_NOSPACE;
    if (v->type == SYNC_INT)
        return fmt(buf + at, n - at, "%lld", (long long)v->u.i);
    if (v->type != SYNC_TEXT && v->type != SYNC_BLOB)
        return SYNC_ERR_INVAL;
    const uint8_t *p = v->u.b.p;
    size_t len = v->u.b.n;
    if (v->type == SYNC_BLOB) {
        if (at + 1 + 2 * len + 1 > n)
            return SYNC_ERR_NOSPACE;
        buf[at++] = 'x';
        for (size_t i = 0; i < len; i++) {
            buf[at++] = hex[p[i] >> 4];
            buf[at++] = hex[p[i] & 15];
        }
        buf[at] = '\0';
        return SYNC_OK;
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '~' || c == '-';
        if (at + (plain ? 1 : 3) + 1 > n)
            return SYNC_ERR_NOSPACE;
        if (plain) {
            buf[at++] = (char)c;
        } else {
            buf[at++] = '%';
            buf[at++] = hex[c >> 4];
            buf[at++] = hex[c & 15];
        }
    }
    /* An empty text key would make an empty topic level; "%" alone marks it unambiguously
     * because a real percent is always followed by two hex digits. */
    if (len == 0) {
        if (at + 2 > n)
            return SYNC_ERR_NOSPACE;
        buf[at++] = '%';
    }
    buf[at] = '\0';
    return SYNC_OK;
}

/* Never hand out half a topic. */
static int whole(char *buf, size_t n, int rc)
{
    if (rc != SYNC_OK && n > 0)
        buf[0] = '\0';
    return rc;
}

int sync_topic_level(char *buf, size_t n, const sync_value *v)
{
    return whole(buf, n, topic_level(buf, n, 0, v));
}

int sync_topic_stream(char *buf, size_t n, const char *tenant, const char *kind,
                      const char *table, const sync_value *part)
{
    int rc = fmt(buf, n, part ? "sync/%s/%s/%s/" : "sync/%s/%s/%s", tenant, kind, table);
    if (rc == SYNC_OK && part)
        rc = topic_level(buf, n, strlen(buf), part);
    return whole(buf, n, rc);
}

int sync_topic_row_part(char *buf, size_t n, const char *tenant, const char *table,
                        const sync_value *part, const sync_value *key)
{
    int rc = fmt(buf, n, "sync/%s/rows/%s/", tenant, table);
    if (rc == SYNC_OK && part) {
        rc = topic_level(buf, n, strlen(buf), part);
        if (rc == SYNC_OK)
            rc = fmt(buf + strlen(buf), n - strlen(buf), "/");
    }
    if (rc == SYNC_OK)
        rc = topic_level(buf, n, strlen(buf), key);
    return whole(buf, n, rc);
}

int sync_topic_row(char *buf, size_t n, const char *tenant, const char *table,
                   const sync_value *key)
{
    return sync_topic_row_part(buf, n, tenant, table, NULL, key);
}

/* Copies the level starting at *p into out (max bytes + NUL) and advances past the '/'. */
static int take_level(const char **p, char *out, size_t max)
{
    const char *s = *p;
    const char *slash = strchr(s, '/');
    size_t len = slash ? (size_t)(slash - s) : strlen(s);
    if (!sync_id_valid(s, len) || len > max)
        return -1;
    memcpy(out, s, len);
    out[len] = '\0';
    *p = slash ? slash + 1 : s + len;
    return slash ? 0 : 1;
}

int sync_topic_parse_dev(const char *topic, char *tenant, char *device, const char **leaf)
{
    const char *p = topic;
    if (strncmp(p, "sync/", 5) != 0)
        return SYNC_ERR_TOPIC;
    p += 5;
    if (take_level(&p, tenant, SYNC_MAX_ID) != 0)
        return SYNC_ERR_TOPIC;
    if (strncmp(p, "dev/", 4) != 0)
        return SYNC_ERR_TOPIC;
    p += 4;
    if (take_level(&p, device, SYNC_MAX_ID) != 0)
        return SYNC_ERR_TOPIC;
    if (*p == '\0' || strchr(p, '/'))
        return SYNC_ERR_TOPIC;
    *leaf = p;
    return SYNC_OK;
}

const char *sync_topic_after_tenant(const char *topic, const char *tenant)
{
    size_t tl = strlen(tenant);
    if (strncmp(topic, "sync/", 5) != 0 || strncmp(topic + 5, tenant, tl) != 0 ||
        topic[5 + tl] != '/')
        return NULL;
    return topic + 5 + tl + 1;
}
