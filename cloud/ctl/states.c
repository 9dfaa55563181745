/* states.c - device states and consumer statistics read from their JSON (see states.h). */
#include "states.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "sync/err.h"
#include "sync/jsonread.h"

static uint64_t get_uint(const sync_jval *o, const char *key)
{
    uint64_t v;
    return sync_jval_uint(sync_jval_get(o, key), &v) ? v : CTL_NONE;
}

static int get_bool(const sync_jval *o, const char *key)
{
    int v;
    return sync_jval_bool(sync_jval_get(o, key), &v) ? v : -1;
}

static double get_double(const sync_jval *o, const char *key)
{
    double v;
    return sync_jval_double(sync_jval_get(o, key), &v) && isfinite(v) ? v : NAN;
}

/* Copies text (cut to the buffer, never past an embedded NUL), or leaves "" for no text. */
static void copy_text(char *dst, size_t n, const char *src, size_t len)
{
    if (!src) {
        src = "";
        len = 0;
    }
    if (len > n - 1)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void get_text(const sync_jval *o, const char *key, char *dst, size_t n)
{
    size_t len = 0;
    const char *s = sync_jval_str(sync_jval_get(o, key), &len);
    copy_text(dst, n, s, len);
}

/* Reads a map of table => count; entries whose count is no unsigned integer are skipped. */
static size_t get_counts(const sync_jval *map, ctl_table_count *out, size_t max)
{
    size_t n = 0;
    for (const sync_jval *m = sync_jval_first(map); m && n < max; m = sync_jval_next(m)) {
        uint64_t v;
        size_t klen;
        const char *k = sync_jval_key(m, &klen);
        if (!k || !sync_jval_uint(m, &v))
            continue;
        copy_text(out[n].name, sizeof out[n].name, k, klen);
        out[n].n = v;
        n++;
    }
    return n;
}

static int parse_object(const char *json, size_t len, sync_jdoc **doc, char *err, size_t errlen)
{
    int rc = sync_jdoc_parse(json, len, doc, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    if (sync_jval_type(sync_jdoc_root(*doc)) != SYNC_JOBJECT) {
        sync_jdoc_free(*doc);
        *doc = NULL;
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "JSON: not an object");
    }
    return SYNC_OK;
}

int ctl_devstate_read(const char *json, size_t len, ctl_devstate *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->online = s->clean = -1;
    s->pending = s->ts = s->last_sync = s->lag_total = s->rebuilds = CTL_NONE;
    s->pull_done = s->pull_total = CTL_NONE;
    s->pull_rate = NAN;
    sync_jdoc *doc;
    int rc = parse_object(json, len, &doc, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    const sync_jval *r = sync_jdoc_root(doc);
    s->online = get_bool(r, "online");
    s->clean = get_bool(r, "clean");
    s->pending = get_uint(r, "pending");
    s->ts = get_uint(r, "ts");
    get_text(r, "version", s->version, sizeof s->version);
    s->last_sync = get_uint(r, "last_sync");
    s->rebuilds = get_uint(r, "rebuilds");
    const sync_jval *cursor = sync_jval_get(r, "cursor");
    if (sync_jval_type(cursor) == SYNC_JOBJECT) {
        s->has_cursor = 1;
        s->ncursor = get_counts(cursor, s->cursor, CTL_STATE_MAX_TABLES);
    }
    const sync_jval *lag = sync_jval_get(r, "lag");
    if (sync_jval_type(lag) == SYNC_JOBJECT) {
        s->has_lag = 1;
        s->nlag = get_counts(lag, s->lag, CTL_STATE_MAX_TABLES);
        s->lag_total = 0;
        for (size_t i = 0; i < s->nlag; i++)
            s->lag_total = s->lag[i].n > CTL_NONE - 1 - s->lag_total ? CTL_NONE - 1
                                                                     : s->lag_total + s->lag[i].n;
    }
    const sync_jval *pull = sync_jval_get(r, "pull");
    if (sync_jval_type(pull) == SYNC_JOBJECT) {
        s->has_pull = 1;
        get_text(pull, "table", s->pull_table, sizeof s->pull_table);
        s->pull_done = get_uint(pull, "done");
        s->pull_total = get_uint(pull, "total");
        s->pull_rate = get_double(pull, "rows_per_s");
    }
    sync_jdoc_free(doc);
    return SYNC_OK;
}

int ctl_stats_read(const char *json, size_t len, ctl_stats *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->online = -1;
    static const struct {
        const char *key;
        size_t off;
    } uints[] = {
        {"ts", offsetof(ctl_stats, ts)},
        {"started", offsetof(ctl_stats, started)},
        {"interval_s", offsetof(ctl_stats, interval_s)},
        {"devices_active", offsetof(ctl_stats, devices_active)},
        {"devices_known", offsetof(ctl_stats, devices_known)},
        {"conflicts_pending", offsetof(ctl_stats, conflicts_pending)},
        {"batches_applied", offsetof(ctl_stats, batches_applied)},
        {"changes_received", offsetof(ctl_stats, changes_received)},
        {"changes_applied", offsetof(ctl_stats, changes_applied)},
        {"duplicates", offsetof(ctl_stats, duplicates)},
        {"conflicts", offsetof(ctl_stats, conflicts)},
        {"rejections", offsetof(ctl_stats, rejections)},
    };
    for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++)
        *(uint64_t *)((char *)s + uints[i].off) = CTL_NONE;
    s->changes_per_s = s->apply_p50 = s->apply_p99 = s->apply_max = NAN;
    sync_jdoc *doc;
    int rc = parse_object(json, len, &doc, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    const sync_jval *r = sync_jdoc_root(doc);
    get_text(r, "consumer", s->consumer, sizeof s->consumer);
    s->online = get_bool(r, "online");
    for (size_t i = 0; i < sizeof uints / sizeof uints[0]; i++)
        *(uint64_t *)((char *)s + uints[i].off) = get_uint(r, uints[i].key);
    s->changes_per_s = get_double(r, "changes_per_s");
    const sync_jval *ms = sync_jval_get(r, "apply_ms");
    s->apply_p50 = get_double(ms, "p50");
    s->apply_p99 = get_double(ms, "p99");
    s->apply_max = get_double(ms, "max");
    sync_jdoc_free(doc);
    return SYNC_OK;
}
