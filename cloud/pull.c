/* pull.c - catch-up pages for replicas (see pull.h). */
#include "pull.h"

#include "access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"
#include "sync/log.h"
#include "sync/record.h"
#include "sync/topic.h"

struct cloud_puller {
    cloud_store *st;
    const sync_schema *schema;
    const cloud_config *cfg;
    sync_cbuf body; /* the page's changes */
    sync_cbuf hdr;  /* the page's header */
    size_t n;       /* changes in body */
    uint64_t last;  /* cseq of the last change in body */
    const sync_table *t;
    sync_change chg; /* scratch, large */
    unsigned long pages, rows, full_resyncs;
};

int cloud_puller_new(cloud_store *st, const sync_schema *s, const cloud_config *c,
                     cloud_puller **out, char *err, size_t errlen)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    (*out)->st = st;
    (*out)->schema = s;
    (*out)->cfg = c;
    sync_cbuf_init(&(*out)->body, 0);
    sync_cbuf_init(&(*out)->hdr, 0);
    return SYNC_OK;
}

void cloud_puller_free(cloud_puller *p)
{
    if (!p)
        return;
    sync_cbuf_free(&p->body);
    sync_cbuf_free(&p->hdr);
    free(p);
}

void cloud_puller_stats(const cloud_puller *p, unsigned long *pages, unsigned long *rows,
                        unsigned long *full)
{
    *pages = p->pages;
    *rows = p->rows;
    *full = p->full_resyncs;
}

static int add_row(void *ctx, const sync_value *key, const cloud_row *row)
{
    cloud_puller *p = ctx;
    const sync_table *t = p->t;
    sync_change *c = &p->chg;
    cloud_row_change(t, key, row, c);
    size_t before = p->body.len;
    if (sync_change_encode(&p->body, c) != SYNC_OK)
        return p->body.err == SYNC_ERR_NOMEM ? SYNC_ERR_NOMEM : SYNC_ERR_INVAL;
    if (p->body.len > (size_t)p->cfg->pull_bytes && p->n > 0) {
        p->body.len = before; /* the page is full; this row starts the next one */
        return 1;
    }
    p->n++;
    p->last = row->cseq;
    return 0;
}

/* The compaction horizon below which the pull is answered from the start: for a partition
 * pull the partition's own, read from the store (tombstones and leaves compacted away from
 * other partitions do not concern its replica), else the table's (as of the last refresh). */
static int pull__horizon(cloud_puller *p, const sync_pull *req, uint64_t *horizon)
{
    if (req->has_part)
        return cloud_store_part_compacted(p->st, p->t, &req->part, horizon);
    *horizon = cloud_store_compacted(p->st, p->t);
    return SYNC_OK;
}

/* Queues the page in p->body (p->n rows) with its header, as the answer to msg. */
static int pull__answer(cloud_puller *p, const sync_mqtt_msg *msg, const char *resp,
                        uint64_t after, uint64_t next, uint64_t remaining, cloud_outq *q)
{
    sync_page_hdr h = {
        .table = p->t->name,
        .table_len = strlen(p->t->name),
        .after = after,
        .next = next,
        .done = p->n >= remaining,
        .remaining = remaining - p->n,
        .nchanges = p->n,
    };
    sync_cbuf_reset(&p->hdr);
    if (sync_page_encode_hdr(&p->hdr, &h) != SYNC_OK ||
        cloud_outq_add_response(q, resp, p->hdr.data, p->hdr.len, p->body.data, p->body.len,
                                msg->corr, msg->corr_len) != SYNC_OK)
        return SYNC_ERR_NOMEM;
    p->pages++;
    p->rows += p->n;
    return SYNC_OK;
}

/* A snapshot page (docs/protocol.md, "Catch-up"): the rows after the request's key, in key
 * order, so a new replica writes its table in order. `next` is the snapshot's cseq: the
 * table's newest when the first page is read, then echoed from the request; the replica takes
 * it as its cursor after the last page, and changes made meanwhile come with the catch-up from
 * there (a row may come twice, never too old). */
static int pull__snapshot(cloud_puller *p, const char *device, sync_pull *req, uint64_t limit,
                          const sync_mqtt_msg *msg, const char *resp, cloud_outq *q, char *err,
                          size_t errlen)
{
    char why[128];
    if (req->has_snap_key &&
        sync_column_check(p->t, p->t->key, &req->snap_key, why, sizeof why) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "snapshot pull from %s of '%s': %s; not answered", device, p->t->name,
                           why);
    uint64_t high = req->snap_high, remaining = 0;
    if (high == 0 && cloud_store_table_cseq(p->st, p->t, &high) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "snapshot of '%s' for %s: %s", p->t->name,
                           device, cloud_store_errmsg(p->st));
    sync_cbuf_reset(&p->body);
    p->n = 0;
    int rc = cloud_store_pull_keys(p->st, p->t, req->has_snap_key ? &req->snap_key : NULL, limit,
                                   add_row, p, &remaining);
    if (rc != SYNC_OK)
        return sync_seterr(err, errlen, rc, "snapshot of '%s' for %s: %s", p->t->name, device,
                           rc == SYNC_ERR_DB ? cloud_store_errmsg(p->st) : sync_strerror(rc));
    if (pull__answer(p, msg, resp, 0, high, remaining, q) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    sync_debug("pull: %s gets %zu rows of '%s' in key order (snapshot at %llu, %llu more)",
               device, p->n, p->t->name, (unsigned long long)high,
               (unsigned long long)(remaining - p->n));
    return SYNC_OK;
}

int cloud_puller_handle(cloud_puller *p, const char *device, const sync_mqtt_msg *msg,
                        cloud_outq *q, char *err, size_t errlen)
{
    char resp[SYNC_TOPIC_MAX];
    sync_topic_dev(resp, sizeof resp, p->cfg->tenant, device, "resp");
    /* Answers go only to the asking device's own topic: a request cannot aim them elsewhere. */
    if (msg->response_topic && strcmp(msg->response_topic, resp) != 0)
        return sync_seterr(err, errlen, SYNC_ERR_TOPIC,
                           "pull from %s names response topic '%s'; only '%s' is allowed", device,
                           msg->response_topic, resp);
    sync_pull req;
    char derr[256];
    int rc = sync_pull_decode(msg->payload, msg->len, &req, derr, sizeof derr);
    if (rc != SYNC_OK)
        return sync_seterr(err, errlen, rc, "malformed pull from %s: %s", device, derr);
    p->t = sync_schema_find(p->schema, req.table, req.table_len);
    if (!p->t)
        return sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "pull from %s: unknown table '%.*s'",
                           device, (int)req.table_len, req.table);
    /* Selective sync: only the tables and partitions the device receives (access.h). No
     * answer: the edge pulls only what its policy lists, so this is a stale policy or a probe. */
    cloud_reach reach;
    cloud_access_reach(p->cfg, p->t, device, 0, &reach);
    int pc = cloud_access_part_col(p->cfg, p->t);
    char pname[96] = "";
    if (req.has_part) {
        if (pc < 0)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "pull from %s names a partition of '%s', which has no partition "
                               "column; not answered",
                               device, p->t->name);
        char why[128];
        if (sync_column_check(p->t, pc, &req.part, why, sizeof why) != SYNC_OK)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "pull from %s of a partition of '%s': %s; not answered", device,
                               p->t->name, why);
        char v[80];
        cloud_part_text(v, sizeof v, &req.part);
        snprintf(pname, sizeof pname, " partition %s", v);
    }
    if (req.has_part ? !cloud_reach_has(&reach, &req.part) : !reach.whole)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "pull from %s of '%s'%s, which it does not receive%s; not answered",
                           device, p->t->name, pname[0] ? pname : " (the whole table)",
                           !req.has_part && reach.nparts > 0 ? " (only some partitions)" : "");
    uint64_t limit =
        req.limit < (uint64_t)p->cfg->pull_rows ? req.limit : (uint64_t)p->cfg->pull_rows;
    if (req.snap)
        return pull__snapshot(p, device, &req, limit, msg, resp, q, err, errlen);
    /* Another consumer sharing the database may have compacted: the horizon is read again. */
    if (cloud_store_refresh(p->st) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "pull of '%s' for %s: %s", p->t->name, device,
                           cloud_store_errmsg(p->st));
    uint64_t horizon, now;
    if (pull__horizon(p, &req, &horizon) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "pull of '%s'%s for %s: %s", p->t->name,
                           pname, device, cloud_store_errmsg(p->st));
again:
    if (!req.full && req.after > 0 && req.after < horizon) {
        /* Tombstones after the replica's cursor were compacted: it may hold rows deleted since,
         * which no change can tell it about now. It gets the whole table (a page whose `after`
         * is 0) and removes what the snapshot does not hold. */
        sync_notice("pull: %s is at %llu of '%s'%s, older than the tombstones kept (compacted "
                    "through %llu); sending it whole",
                    device, (unsigned long long)req.after, p->t->name, pname,
                    (unsigned long long)horizon);
        req.after = 0;
        p->full_resyncs++;
    }
    sync_cbuf_reset(&p->body);
    p->n = 0;
    p->last = req.after;
    uint64_t remaining = 0;
    rc = req.has_part ? cloud_store_pull_part(p->st, p->t, &req.part, req.after, limit, add_row, p,
                                              &remaining)
                      : cloud_store_pull(p->st, p->t, req.after, limit, add_row, p, &remaining);
    if (rc == SYNC_OK && !req.full && req.after > 0 &&
        (req.has_part || cloud_store_refresh(p->st) == SYNC_OK) &&
        pull__horizon(p, &req, &now) == SYNC_OK && now != horizon) {
        /* A compaction committed between our look at the horizon and the page's snapshot
         * could have removed tombstones (or leaves) the page should hold: decide again. */
        horizon = now;
        goto again;
    }
    if (rc != SYNC_OK)
        return sync_seterr(err, errlen, rc, "pull of '%s' for %s: %s", p->t->name, device,
                           rc == SYNC_ERR_DB ? cloud_store_errmsg(p->st) : sync_strerror(rc));
    if (pull__answer(p, msg, resp, req.after, p->last, remaining, q) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    sync_debug("pull: %s gets %zu rows of '%s'%s after %llu (%llu more)", device, p->n,
               p->t->name, pname, (unsigned long long)req.after,
               (unsigned long long)(remaining - p->n));
    return SYNC_OK;
}
