/* pull.c - catch-up pulls for a replica (see pull.h). */
#include "pull.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/err.h"
#include "sync/log.h"
#include "sync/record.h"
#include "sync/sqlutil.h"
#include "sync/topic.h"

#define PULL_TIMEOUT 10.0 /* seconds before a request without answer is sent again */
#define HEAD_GRACE 2.0    /* seconds a head may lead the cursor before we pull */
#define CATCHUP_BIG_ROWS 5000 /* a catch-up this large gets catchup_cache_kb of page cache */

typedef struct tstate {
    uint64_t cursor;     /* everything up to here is applied */
    uint64_t head;       /* newest cseq the cloud told us of */
    double behind_since; /* when head first led cursor (0: it does not) */
    int need;            /* a pull is wanted */
    int full;            /* rebuilding from a whole-table snapshot (see on_page_hdr) */
    int gap_logged;
    /* progress of the current catch-up */
    uint64_t done_rows, total_rows;
    double started, logged;
} tstate;

struct edge_pull {
    edge_db *db;
    edge_replica *rep;
    const edge_config *cfg;
    tstate ts[EDGE_MAX_TABLES];
    sqlite3_stmt *put_cursor; /* raises a cursor */
    sqlite3_stmt *set_cursor; /* sets it, also lower */
    sqlite3_stmt *seen_put, *seen_clear, *resync_put, *resync_del; /* full resyncs */
    sqlite3_stmt *get_cursor, *get_resync;                          /* load_state() */
    sqlite3_stmt *forget_versions; /* edge_pull_resync_all */
    sync_mqtt *mqtt; /* where the next page is asked for while a page is applied (may be NULL) */
    char req_topic[SYNC_TOPIC_MAX], resp_topic[SYNC_TOPIC_MAX];
    /* the request in flight */
    int inflight; /* table slot, or -1 */
    uint64_t after;
    uint64_t corr; /* correlation number */
    double sent_at;
    sync_cbuf buf;
    uint8_t corrbuf[8];
    sync_limits lim;
    const sync_table *page_table;
    int page_slot;      /* its table's slot */
    int prefetched;     /* the next page was asked for before this one was applied */
    unsigned long rebuilds; /* whole-table resyncs finished */
    sync_page_hdr page; /* header of the page being applied */
    int page_failed;
    int page_full; /* the page belongs to a full resync: its keys are recorded as seen */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int slot_of(const edge_pull *p, const sync_table *t)
{
    for (int i = 0; i < p->db->ntables; i++)
        if (p->db->tables[i] == t)
            return i;
    return -1;
}

/* (Re)reads every table's cursor and resync flag from the database. Tables never pulled, and
 * resyncs a stop interrupted, are marked as needing a pull. */
static int load_state(edge_pull *p)
{
    for (int i = 0; i < p->db->ntables; i++) {
        tstate *s = &p->ts[i];
        const char *name = p->db->tables[i]->name;
        s->cursor = 0;
        s->full = 0;
        sqlite3_bind_text(p->get_cursor, 1, name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(p->get_cursor);
        if (rc == SQLITE_ROW)
            s->cursor = (uint64_t)sqlite3_column_int64(p->get_cursor, 0);
        sqlite3_reset(p->get_cursor);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return SYNC_ERR_DB;
        if (s->head < s->cursor)
            s->head = s->cursor;
        /* A table never pulled starts from nothing: fetch it whole. */
        if (s->cursor == 0)
            s->need = 1;
        /* A full resync interrupted by a stop goes on from its last page. */
        sqlite3_bind_text(p->get_resync, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(p->get_resync);
        if (rc == SQLITE_ROW) {
            s->full = 1;
            s->need = 1;
        }
        sqlite3_reset(p->get_resync);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return SYNC_ERR_DB;
    }
    return SYNC_OK;
}

int edge_pull_new(edge_db *db, edge_replica *rep, const edge_config *c, edge_pull **out, char *err,
                  size_t errlen)
{
    *out = NULL;
    edge_pull *p = calloc(1, sizeof *p);
    if (!p)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    p->db = db;
    p->rep = rep;
    p->cfg = c;
    p->inflight = -1;
    p->corr = (uint64_t)time(NULL) << 20;
    sync_cbuf_init(&p->buf, 0);
    sync_limits_default(&p->lim);
    sync_topic_dev(p->req_topic, sizeof p->req_topic, c->tenant, c->device, "pull");
    sync_topic_dev(p->resp_topic, sizeof p->resp_topic, c->tenant, c->device, "resp");
    int rc = sync_sql_prepare(db->db,
                              "INSERT INTO _sync_cursor(tbl, cseq) VALUES (?1, ?2) ON "
                              "CONFLICT(tbl) DO UPDATE SET cseq = max(cseq, excluded.cseq)",
                              &p->put_cursor, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(db->db,
                              "INSERT INTO _sync_cursor(tbl, cseq) VALUES (?1, ?2) ON "
                              "CONFLICT(tbl) DO UPDATE SET cseq = excluded.cseq",
                              &p->set_cursor, err, errlen);
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } more[] = {
        {&p->seen_put, "INSERT OR IGNORE INTO _sync_seen(tbl, pk) VALUES (?1, ?2)"},
        {&p->seen_clear, "DELETE FROM _sync_seen WHERE tbl = ?1"},
        {&p->resync_put, "INSERT OR IGNORE INTO _sync_resync(tbl) VALUES (?1)"},
        {&p->resync_del, "DELETE FROM _sync_resync WHERE tbl = ?1"},
        {&p->forget_versions, "DELETE FROM _sync_rows WHERE tbl = ?1 AND pk NOT IN (SELECT pk "
                              "FROM _sync_outbox WHERE tbl = ?1)"},
    };
    for (size_t i = 0; rc == SYNC_OK && i < sizeof more / sizeof more[0]; i++)
        rc = sync_sql_prepare(db->db, more[i].sql, more[i].st, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(db->db, "SELECT cseq FROM _sync_cursor WHERE tbl = ?", &p->get_cursor,
                              err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(db->db, "SELECT 1 FROM _sync_resync WHERE tbl = ?", &p->get_resync,
                              err, errlen);
    if (rc == SYNC_OK && load_state(p) != SYNC_OK)
        rc = sync_seterr(err, errlen, SYNC_ERR_DB, "reading the replica's cursors: %s",
                         sqlite3_errmsg(db->db));
    if (rc != SYNC_OK) {
        edge_pull_free(p);
        return rc;
    }
    *out = p;
    return SYNC_OK;
}

void edge_pull_free(edge_pull *p)
{
    if (!p)
        return;
    sqlite3_finalize(p->put_cursor);
    sqlite3_finalize(p->set_cursor);
    sqlite3_finalize(p->seen_put);
    sqlite3_finalize(p->seen_clear);
    sqlite3_finalize(p->resync_put);
    sqlite3_finalize(p->resync_del);
    sqlite3_finalize(p->get_cursor);
    sqlite3_finalize(p->forget_versions);
    sqlite3_finalize(p->get_resync);
    sync_cbuf_free(&p->buf);
    free(p);
}

/* Sets the stored cursor of table `name` to cseq, also lower than it is (a rewind, a resync). */
static int store_cursor(edge_pull *p, const char *name, uint64_t cseq)
{
    sqlite3_bind_text(p->set_cursor, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(p->set_cursor, 2, (sqlite3_int64)cseq);
    int rc = sqlite3_step(p->set_cursor);
    sqlite3_reset(p->set_cursor);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

static int save_cursor(edge_pull *p, int slot)
{
    sqlite3_bind_text(p->put_cursor, 1, p->db->tables[slot]->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(p->put_cursor, 2, (sqlite3_int64)p->ts[slot].cursor);
    int rc = sqlite3_step(p->put_cursor);
    sqlite3_reset(p->put_cursor);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

int edge_pull_on_delta(edge_pull *p, const sync_table *t, uint64_t prev, uint64_t last)
{
    int i = slot_of(p, t);
    if (i < 0)
        return SYNC_OK;
    tstate *s = &p->ts[i];
    if (last > s->head)
        s->head = last;
    if (prev <= s->cursor) {
        if (last > s->cursor) {
            s->cursor = last;
            s->gap_logged = 0;
            return save_cursor(p, i);
        }
        return SYNC_OK;
    }
    if (!s->gap_logged) {
        if (s->cursor == 0)
            sync_notice("replica: '%s' is empty here; pulling it whole", t->name);
        else
            sync_notice("replica: changes %llu..%llu of '%s' never arrived; pulling them",
                        (unsigned long long)s->cursor + 1, (unsigned long long)prev, t->name);
        s->gap_logged = 1;
    }
    s->need = 1;
    return SYNC_OK;
}

static int on_head_table(void *ctx, const sync_head_entry *e)
{
    edge_pull *p = ctx;
    const sync_table *t = edge_db_table(p->db, e->table, e->table_len);
    int i = t ? slot_of(p, t) : -1;
    if (i >= 0 && p->db->recv[i] && e->cseq > p->ts[i].head)
        p->ts[i].head = e->cseq;
    return 0;
}

int edge_pull_on_head(edge_pull *p, const void *payload, size_t len, char *err, size_t errlen)
{
    uint64_t top;
    return sync_head_decode(payload, len, &top, on_head_table, p, err, errlen);
}

uint64_t edge_pull_cursor(const edge_pull *p, const sync_table *t)
{
    int i = slot_of(p, t);
    return i < 0 ? 0 : p->ts[i].cursor;
}

int edge_pull_rewind(edge_pull *p, const sync_table *t, uint64_t cseq)
{
    int i = slot_of(p, t);
    if (i < 0)
        return SYNC_OK;
    p->ts[i].need = 1;
    if (cseq >= p->ts[i].cursor)
        return SYNC_OK;
    sync_debug("replica: '%s' lacks rows changed after %llu; pulling from there", t->name,
               (unsigned long long)cseq);
    p->ts[i].cursor = cseq;
    return store_cursor(p, t->name, cseq);
}

void edge_pull_all(edge_pull *p, const char *why)
{
    sync_info("replica: %s; checking every table with the cloud", why);
    for (int i = 0; i < p->db->ntables; i++)
        p->ts[i].need = 1;
}

/* Encodes the request for table slot into p->buf and p->corrbuf and marks it in flight. */
static void make_request(edge_pull *p, int slot)
{
    const sync_table *t = p->db->tables[slot];
    sync_pull req = {
        .table = t->name,
        .table_len = strlen(t->name),
        .after = p->ts[slot].cursor,
        .limit = (uint64_t)p->cfg->pull_rows,
        .full = p->ts[slot].full,
    };
    sync_cbuf_reset(&p->buf);
    sync_pull_encode(&p->buf, &req);
    for (int k = 0; k < 8; k++)
        p->corrbuf[k] = (uint8_t)(p->corr >> (56 - 8 * k));
    p->inflight = slot;
    p->after = req.after;
    p->sent_at = now_s();
    p->ts[slot].need = 0;
}

int edge_pull_next(edge_pull *p, edge_pull_req *req)
{
    double now = now_s();
    for (int i = 0; i < p->db->ntables; i++) {
        tstate *s = &p->ts[i];
        if (!p->db->recv[i]) /* not received here (policy.h) */
            continue;
        if (s->head > s->cursor) {
            if (s->behind_since == 0)
                s->behind_since = now;
            else if (now - s->behind_since > HEAD_GRACE && p->inflight != i && !s->need) {
                sync_info("replica: '%s' is at %llu, the cloud at %llu; pulling",
                          p->db->tables[i]->name, (unsigned long long)s->cursor,
                          (unsigned long long)s->head);
                s->need = 1;
                s->behind_since = now;
            }
        } else {
            s->behind_since = 0;
        }
    }
    int slot = -1;
    if (p->inflight >= 0) {
        if (now - p->sent_at <= PULL_TIMEOUT)
            return 0;
        /* Same correlation data: a late answer to the first request is still welcome. */
        sync_warn("replica: no answer to the pull of '%s' after %.0f s; asking again",
                  p->db->tables[p->inflight]->name, now - p->sent_at);
        slot = p->inflight;
    } else {
        for (int i = 0; i < p->db->ntables && slot < 0; i++)
            if (p->ts[i].need && p->db->recv[i])
                slot = i;
        if (slot < 0)
            return 0;
        p->corr++;
    }
    make_request(p, slot);
    if (p->buf.err != SYNC_OK) {
        p->inflight = -1;
        p->ts[slot].need = 1;
        return SYNC_ERR_NOMEM;
    }
    req->topic = p->req_topic;
    req->response_topic = p->resp_topic;
    req->payload = p->buf.data;
    req->len = p->buf.len;
    req->corr = p->corrbuf;
    req->corr_len = sizeof p->corrbuf;
    return 1;
}

void edge_pull_unsent(edge_pull *p)
{
    if (p->inflight >= 0) {
        p->ts[p->inflight].need = 1;
        p->inflight = -1;
    }
}

static int publish_request(edge_pull *p, sync_mqtt *m)
{
    int rc = sync_mqtt_publish_rr(m, p->req_topic, p->buf.data, p->buf.len, 1, p->resp_topic,
                                  p->corrbuf, sizeof p->corrbuf);
    if (rc != SYNC_OK)
        edge_pull_unsent(p); /* try again on the next round */
    return rc;
}

void edge_pull_drive(edge_pull *p, sync_mqtt *m)
{
    if (!sync_mqtt_connected(m))
        return;
    edge_pull_req req;
    if (edge_pull_next(p, &req) == 1)
        publish_request(p, m);
}

/* Asks for the page after the one being applied (p->ts[slot].cursor is its `next`). */
static int prefetch(edge_pull *p, int slot)
{
    if (!p->mqtt || !sync_mqtt_connected(p->mqtt))
        return SYNC_ERR_IO;
    p->corr++;
    make_request(p, slot);
    if (p->buf.err != SYNC_OK) {
        p->inflight = -1;
        return SYNC_ERR_NOMEM;
    }
    return publish_request(p, p->mqtt);
}

void edge_pull_set_mqtt(edge_pull *p, sync_mqtt *m)
{
    p->mqtt = m;
}

static int step_name(sqlite3_stmt *st, const char *name);

int edge_pull_resync_all(edge_pull *p, const char *why)
{
    sync_notice("replica: %s; rebuilding every table from the cloud", why);
    p->corr++; /* an answer to a request in flight is ignored */
    p->inflight = -1;
    for (int i = 0; i < p->db->ntables; i++) {
        tstate *s = &p->ts[i];
        const char *name = p->db->tables[i]->name;
        if (step_name(p->resync_put, name) != SYNC_OK || step_name(p->seen_clear, name) != SYNC_OK)
            return SYNC_ERR_DB;
        if (store_cursor(p, name, 0) != SYNC_OK)
            return SYNC_ERR_DB;
        /* Asked for because the replica may have drifted (restored, edited behind syncedge's
         * back): forget the versions held, so every row the cloud sends is written again, not
         * skipped as already known. Rows with local changes waiting keep theirs. */
        if (step_name(p->forget_versions, name) != SYNC_OK)
            return SYNC_ERR_DB;
        s->cursor = 0;
        s->full = 1;
        s->need = 1;
        s->started = 0;
        s->done_rows = s->total_rows = 0;
    }
    return SYNC_OK;
}

int edge_pull_table_received(edge_pull *p, const sync_table *t, int received)
{
    int i = slot_of(p, t);
    if (i < 0)
        return SYNC_OK;
    tstate *s = &p->ts[i];
    if (received) {
        s->need = 1;
        return SYNC_OK;
    }
    if (p->inflight == i) { /* its answer is ignored */
        p->inflight = -1;
        p->corr++;
    }
    memset(s, 0, sizeof *s);
    return store_cursor(p, t->name, 0);
}

unsigned long edge_pull_rebuilds(const edge_pull *p)
{
    return p->rebuilds;
}

uint64_t edge_pull_head(const edge_pull *p, const sync_table *t)
{
    int i = slot_of(p, t);
    return i < 0 ? 0 : p->ts[i].head;
}

int edge_pull_progress(const edge_pull *p, const char **table, uint64_t *done, uint64_t *total,
                       double *rows_per_s)
{
    for (int i = 0; i < p->db->ntables; i++) {
        const tstate *s = &p->ts[i];
        if (s->started > 0 && s->total_rows > 0) {
            double secs = now_s() - s->started;
            *table = p->db->tables[i]->name;
            *done = s->done_rows;
            *total = s->total_rows;
            *rows_per_s = secs > 0 ? (double)s->done_rows / secs : 0;
            return 1;
        }
    }
    return 0;
}

int edge_pull_reload(edge_pull *p)
{
    edge_db_cache(p->db, 0);
    /* A new correlation number: the answer to a request in flight is ignored. */
    p->corr++;
    p->inflight = -1;
    for (int i = 0; i < p->db->ntables; i++) {
        p->ts[i].need = 1;
        p->ts[i].started = 0;
        p->ts[i].done_rows = p->ts[i].total_rows = 0;
    }
    return load_state(p);
}

int edge_pull_busy(const edge_pull *p)
{
    if (p->inflight >= 0)
        return 1;
    for (int i = 0; i < p->db->ntables; i++)
        if (p->db->recv[i] && (p->ts[i].need || p->ts[i].head > p->ts[i].cursor))
            return 1;
    return 0;
}

static int step_name(sqlite3_stmt *st, const char *name)
{
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

static int prefetch(edge_pull *p, int slot);

static int on_page_hdr(void *ctx, const sync_page_hdr *h)
{
    edge_pull *p = ctx;
    const sync_table *t = edge_db_table(p->db, h->table, h->table_len);
    int slot = t ? slot_of(p, t) : -1;
    if (slot < 0 || slot != p->inflight || !p->db->recv[slot])
        return 1; /* not the page we asked for */
    /* The cloud answers a request from cursor A > 0 with a page from 0 when it compacted
     * tombstones after A: deletes since may be unknown here, so the table is rebuilt from a
     * whole snapshot, and rows it does not hold are removed at the end (sweep()). */
    tstate *s = &p->ts[slot];
    int redirected = h->after == 0 && p->after > 0 && !s->full;
    if (h->after != p->after && !redirected)
        return 1;
    if (redirected) {
        sync_notice("replica: '%s' was away longer than the cloud keeps deletes; taking the "
                    "whole table again",
                    t->name);
        if (step_name(p->resync_put, t->name) != SYNC_OK ||
            step_name(p->seen_clear, t->name) != SYNC_OK) {
            p->page_failed = 1;
            return SYNC_ERR_DB;
        }
    }
    p->page_full = redirected || s->full;
    p->page_table = t;
    p->page_slot = slot;
    p->page = *h;
    p->inflight = -1;
    if (p->page_full && !s->full) { /* the first page of a full resync */
        s->full = 1;
        s->cursor = 0;
        s->started = 0;
        s->done_rows = 0;
        if (store_cursor(p, t->name, 0) != SYNC_OK) {
            p->page_failed = 1;
            return SYNC_ERR_DB;
        }
    }
    if (h->next > s->cursor)
        s->cursor = h->next;
    /* Ask for the next page now, so the cloud reads and sends it while this one is applied.
     * The cursor is saved with this page's rows; if their transaction fails, edge_pull_reload
     * forgets the request (its answer is ignored) and pulls again from the saved cursor. */
    p->prefetched = !h->done && h->nchanges > 0 && prefetch(p, slot) == SYNC_OK;
    if (h->nchanges > 1 && edge_replica_hint(p->rep, t) != SYNC_OK) {
        p->page_failed = 1;
        return SYNC_ERR_DB;
    }
    return 0;
}

static int on_page_row(void *ctx, const sync_change *c)
{
    edge_pull *p = ctx;
    int rc = edge_replica_put(p->rep, p->page_table, &c->key, c->op, c->cols, c->ncols, c->version,
                              0, c->cseq ? c->cseq - 1 : 0, 0);
    if (rc == SYNC_OK && p->page_full) {
        sqlite3_bind_text(p->seen_put, 1, p->page_table->name, -1, SQLITE_STATIC);
        sync_sql_bind(p->seen_put, 2, &c->key);
        int src = sqlite3_step(p->seen_put);
        sqlite3_reset(p->seen_put);
        rc = src == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
    }
    if (rc != SYNC_OK)
        p->page_failed = 1;
    return rc;
}

/* The end of a full resync of t: removes the rows (and their versions) that the snapshot did
 * not hold, except rows with local changes still on their way to the cloud. Runs inside the
 * page's transaction, as replica writes, so nothing removed here is captured. */
static int sweep(edge_pull *p, const sync_table *t, long long *removed)
{
    char sql[1024];
    const char *k = t->cols[t->key].name;
    snprintf(sql, sizeof sql,
             "DELETE FROM \"%s\" WHERE \"%s\" NOT IN (SELECT pk FROM _sync_seen WHERE tbl = ?1)"
             " AND \"%s\" NOT IN (SELECT pk FROM _sync_outbox WHERE tbl = ?1)",
             t->name, k, k);
    sqlite3_stmt *st;
    if (sync_sql_prepare(p->db->db, sql, &st, NULL, 0) != SYNC_OK)
        return SYNC_ERR_DB;
    int rc = step_name(st, t->name);
    *removed = sqlite3_changes(p->db->db);
    sqlite3_finalize(st);
    if (rc != SYNC_OK)
        return rc;
    if (sync_sql_prepare(p->db->db,
                         "DELETE FROM _sync_rows WHERE tbl = ?1 AND pk NOT IN (SELECT pk FROM "
                         "_sync_seen WHERE tbl = ?1) AND pk NOT IN (SELECT pk FROM _sync_outbox "
                         "WHERE tbl = ?1)",
                         &st, NULL, 0) != SYNC_OK)
        return SYNC_ERR_DB;
    rc = step_name(st, t->name);
    sqlite3_finalize(st);
    if (rc == SYNC_OK)
        rc = step_name(p->seen_clear, t->name);
    if (rc == SYNC_OK)
        rc = step_name(p->resync_del, t->name);
    return rc;
}

int edge_pull_on_page(edge_pull *p, const sync_mqtt_msg *msg, char *err, size_t errlen)
{
    if (p->inflight < 0 || msg->corr_len != 8)
        return SYNC_OK;
    uint64_t corr = 0;
    for (int k = 0; k < 8; k++)
        corr = corr << 8 | msg->corr[k];
    if (corr != p->corr)
        return SYNC_OK; /* an answer to an earlier, repeated request */
    p->page_table = NULL;
    p->page_failed = 0;
    p->page_full = 0;
    p->prefetched = 0;
    int rc =
        sync_page_decode(msg->payload, msg->len, &p->lim, on_page_hdr, on_page_row, p, err, errlen);
    edge_replica_hint(p->rep, NULL);
    if (rc == 1)
        return SYNC_OK;
    if (rc != SYNC_OK && p->page_table && !p->page_failed) {
        /* Malformed after its header was taken: the cursor moved in memory only, and the next
         * page may be asked for already. Go back to the stored cursor and ask again from there
         * when the request times out, as for a page that never came. */
        int slot = p->page_slot;
        if (load_state(p) != SYNC_OK)
            return sync_seterr(err, errlen, SYNC_ERR_DB, "reading the cursor of '%s': %s",
                               p->page_table->name, sqlite3_errmsg(p->db->db));
        p->inflight = slot;
        p->after = p->ts[slot].cursor;
        p->sent_at = now_s();
        p->ts[slot].need = 0;
    }
    if (rc != SYNC_OK)
        return p->page_failed ? SYNC_ERR_DB : rc;
    int slot = p->page_slot;
    tstate *s = &p->ts[slot];
    const char *name = p->page_table->name;
    double now = now_s();
    if (s->started == 0) { /* the first page of this catch-up */
        s->started = now;
        s->logged = now;
        s->total_rows = p->page.nchanges + p->page.remaining;
        /* Rows come in change order, so a big catch-up writes all over the tables: with the
         * steady-state cache every row rereads pages (3.3 s instead of 0.7 s for 100,000 rows
         * whose change order was scattered). A larger cache for as long as it runs. */
        if (s->total_rows >= CATCHUP_BIG_ROWS && p->cfg->catchup_cache_kb > 0)
            edge_db_cache(p->db, p->cfg->catchup_cache_kb);
    }
    s->done_rows += p->page.nchanges;
    if ((rc = save_cursor(p, slot)) != SYNC_OK)
        return sync_seterr(err, errlen, rc, "saving the cursor of '%s'", name);
    if (s->cursor > s->head)
        s->head = s->cursor;
    double secs = now - s->started;
    if (!p->page.done) {
        if (!p->prefetched)
            s->need = 1;
        if (now - s->logged >= 1.0) {
            sync_notice("replica: pulling '%s': %llu/%llu rows (%.0f rows/s)", name,
                        (unsigned long long)s->done_rows, (unsigned long long)s->total_rows,
                        secs > 0 ? (double)s->done_rows / secs : 0.0);
            s->logged = now;
        }
    } else {
        if (s->full) {
            long long removed = 0;
            if ((rc = sweep(p, p->page_table, &removed)) != SYNC_OK)
                return sync_seterr(err, errlen, rc, "removing rows of '%s' the cloud no longer "
                                   "holds: %s", name, sqlite3_errmsg(p->db->db));
            s->full = 0;
            p->rebuilds++;
            sync_notice("replica: '%s' rebuilt from the cloud: %llu rows taken, %lld rows the "
                        "cloud no longer holds removed",
                        name, (unsigned long long)s->done_rows, removed);
        }
        if (s->done_rows >= 1000 && secs >= 0.01)
            sync_notice("replica: '%s' caught up: %llu rows in %.2f s (%.0f rows/s), at %llu", name,
                        (unsigned long long)s->done_rows, secs, (double)s->done_rows / secs,
                        (unsigned long long)s->cursor);
        else if (s->done_rows > 0)
            sync_notice("replica: '%s' caught up: %llu rows, at %llu", name,
                        (unsigned long long)s->done_rows, (unsigned long long)s->cursor);
        s->done_rows = s->total_rows = 0;
        s->started = 0;
        s->gap_logged = 0;
        int running = 0;
        for (int i = 0; i < p->db->ntables; i++)
            running |= p->ts[i].started > 0;
        if (!running)
            edge_db_cache(p->db, 0);
    }
    return SYNC_OK;
}
