/* rowcheck.c - re-reading rows whose retained message another consumer may have overtaken (see
 * rowcheck.h). */
#include "rowcheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"
#include "sync/log.h"
#include "sync/record.h"
#include "sync/topic.h"

typedef struct rc_entry {
    const sync_table *t;
    sync_value key;       /* text and blob bytes in `bytes` */
    uint8_t *bytes;       /* owned */
    uint64_t cseq;        /* the change the message carried */
    unsigned long target; /* checked once the delivered count reaches this */
    double deadline;      /* or at this time */
} rc_entry;

struct cloud_rowcheck {
    cloud_store *st;
    const sync_schema *schema;
    cloud_applier *ap;
    char prefix[SYNC_TOPIC_MAX]; /* "sync/TENANT/rows/" */
    size_t prefix_len;
    rc_entry *v;
    size_t n, cap;
    uint64_t republished;
    sync_change chg; /* a decoded message (large: kept off the stack) */
};

int cloud_rowcheck_new(cloud_store *st, const sync_schema *s, const char *tenant,
                       cloud_applier *ap, cloud_rowcheck **out, char *err, size_t errlen)
{
    *out = NULL;
    cloud_rowcheck *rc = calloc(1, sizeof *rc);
    if (!rc)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    rc->st = st;
    rc->schema = s;
    rc->ap = ap;
    snprintf(rc->prefix, sizeof rc->prefix, "sync/%s/rows/", tenant);
    rc->prefix_len = strlen(rc->prefix);
    *out = rc;
    return SYNC_OK;
}

static void entry_free(rc_entry *e)
{
    free(e->bytes);
}

void cloud_rowcheck_free(cloud_rowcheck *rc)
{
    if (!rc)
        return;
    for (size_t i = 0; i < rc->n; i++)
        entry_free(&rc->v[i]);
    free(rc->v);
    free(rc);
}

int cloud_rowcheck_note(cloud_rowcheck *rc, const cloud_msg *msg, unsigned long delivered_target,
                        double deadline)
{
    if (!msg->retain || strncmp(msg->topic, rc->prefix, rc->prefix_len) != 0)
        return SYNC_OK;
    const char *table;
    size_t table_len;
    char why[128];
    if (sync_row_decode(msg->payload, msg->len, NULL, &rc->chg, &table, &table_len, why,
                        sizeof why) != SYNC_OK) {
        sync_warn("rowcheck: cannot read back our own message on %s: %s", msg->topic, why);
        return SYNC_OK;
    }
    const sync_table *t = sync_schema_find(rc->schema, table, table_len);
    if (!t)
        return SYNC_OK;
    if (rc->n == rc->cap) {
        size_t cap = rc->cap ? 2 * rc->cap : 64;
        rc_entry *v = realloc(rc->v, cap * sizeof *v);
        if (!v)
            goto nomem;
        rc->v = v;
        rc->cap = cap;
    }
    rc_entry *e = &rc->v[rc->n];
    memset(e, 0, sizeof *e);
    e->t = t;
    e->key = rc->chg.key;
    if (e->key.type == SYNC_TEXT || e->key.type == SYNC_BLOB) {
        /* One byte more, so an empty key still gets an allocation of its own. */
        if (!(e->bytes = malloc(e->key.u.b.n + 1)))
            goto nomem;
        if (e->key.u.b.n)
            memcpy(e->bytes, e->key.u.b.p, e->key.u.b.n);
        e->key.u.b.p = e->bytes;
    }
    e->cseq = rc->chg.cseq;
    e->target = delivered_target;
    e->deadline = deadline;
    rc->n++;
    return SYNC_OK;
nomem:
    sync_error("rowcheck: out of memory; the retained message on %s is not checked", msg->topic);
    return SYNC_ERR_NOMEM;
}

int cloud_rowcheck_run(cloud_rowcheck *rc, unsigned long delivered, double now, cloud_outq *q)
{
    int queued = 0;
    size_t i = 0;
    while (i < rc->n) {
        rc_entry *e = &rc->v[i];
        /* The counter wraps only after 2^32 or 2^64 messages; compare as a difference. */
        if ((long)(delivered - e->target) < 0 && now < e->deadline) {
            i++;
            continue;
        }
        cloud_row row;
        if (cloud_store_row_get(rc->st, e->t, &e->key, &row) != SYNC_OK) {
            sync_error("rowcheck: reading a row of '%s': %s", e->t->name,
                       cloud_store_errmsg(rc->st));
            return SYNC_ERR_DB;
        }
        if (row.exists && row.cseq > e->cseq) {
            /* Changed since: its own consumer published it too, but maybe before ours landed. */
            int r = cloud_applier_row_message(rc->ap, e->t, &e->key, &row, q);
            if (r == SYNC_ERR_NOMEM)
                return r;
            if (r == SYNC_OK) {
                queued++;
                rc->republished++;
            }
        }
        entry_free(e);
        rc->v[i] = rc->v[--rc->n];
    }
    return queued;
}

size_t cloud_rowcheck_waiting(const cloud_rowcheck *rc)
{
    return rc->n;
}

uint64_t cloud_rowcheck_republished(const cloud_rowcheck *rc)
{
    return rc->republished;
}
