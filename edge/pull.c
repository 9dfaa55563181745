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
    /* A snapshot: a whole-table stream this replica never had comes in key order (so its
     * B-trees are written in order), then the changes made meanwhile (docs/protocol.md,
     * "Catch-up"). Kept in memory only: a restart begins it again. */
    int snap;            /* under way: the cursor stays 0 until its last page */
    uint64_t snap_high;  /* its cseq, from the first page (0: before it) */
    uint64_t snap_floor; /* lowest cseq a rewind asked for meanwhile (UINT64_MAX: none) */
    int snap_has_key;    /* snap_key holds the last key taken (bytes in the stream's keybuf) */
    sync_value snap_key;
} tstate;

/* One stream: a whole table, or one partition of it (pull.h). */
typedef struct pull_stream {
    const sync_table *t;
    int slot;          /* t's position in db->tables */
    int part;          /* 1: the partition whose value is val; 0: the whole table */
    sync_value val;    /* text bytes owned */
    char *name;        /* the cursor's name (owned): "table" or "table/level" */
    const char *level; /* the partition as a topic level (points into name), NULL if whole */
    int active;        /* the policy has the device receive it */
    tstate s;
    uint8_t *keybuf; /* owned bytes of s.snap_key (text or blob) */
    size_t keycap;
} pull_stream;

struct edge_pull {
    edge_db *db;
    edge_replica *rep;
    const edge_config *cfg;
    /* db->ntables whole-table streams (stream i is table slot i), then the partition streams
     * of the policy, in the order of its values */
    pull_stream *st;
    int nst;
    sqlite3_stmt *put_cursor; /* raises a cursor */
    sqlite3_stmt *set_cursor; /* sets it, also lower */
    sqlite3_stmt *seen_put, *seen_clear, *resync_put, *resync_del; /* full resyncs */
    sqlite3_stmt *get_cursor, *get_resync;                          /* load_stream() */
    sqlite3_stmt *forget_versions; /* edge_pull_resync_all */
    sync_mqtt *mqtt; /* where the next page is asked for while a page is applied (may be NULL) */
    char req_topic[SYNC_TOPIC_MAX], resp_topic[SYNC_TOPIC_MAX];
    /* the request in flight */
    int inflight; /* stream, or -1 */
    uint64_t after;
    uint64_t corr; /* correlation number */
    double sent_at;
    sync_cbuf buf;
    uint8_t corrbuf[8];
    sync_limits lim;
    const sync_table *page_table;
    int page_stream;    /* the stream of the page being applied */
    int prefetched;     /* the next page was asked for before this one was applied */
    unsigned long rebuilds; /* whole-table resyncs finished */
    sync_page_hdr page; /* header of the page being applied */
    sync_value page_last; /* a snapshot page's last key (points into the message) */
    int page_has_last;
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

int edge_stream_name(char *buf, size_t n, const sync_table *t, const sync_value *part)
{
    int w = snprintf(buf, n, part ? "%s/" : "%s", t->name);
    if (w < 0 || (size_t)w >= n)
        return SYNC_ERR_NOSPACE;
    return part ? sync_topic_level(buf + w, n - (size_t)w, part) : SYNC_OK;
}

static void stream_free(pull_stream *s)
{
    if (s->val.type == SYNC_TEXT)
        free((void *)s->val.u.b.p);
    free(s->keybuf);
    free(s->name);
    memset(s, 0, sizeof *s);
}

/* Sets s up as stream of table slot (part NULL: the whole table), with a clear state. */
static int stream_init(pull_stream *s, const edge_db *db, int slot, const sync_value *part)
{
    char name[SYNC_TOPIC_MAX];
    memset(s, 0, sizeof *s);
    s->t = db->tables[slot];
    s->slot = slot;
    if (edge_stream_name(name, sizeof name, s->t, part) != SYNC_OK)
        return SYNC_ERR_NOSPACE;
    s->name = strdup(name);
    if (!s->name)
        return SYNC_ERR_NOMEM;
    if (part) {
        s->part = 1;
        s->level = s->name + strlen(s->t->name) + 1;
        s->val = *part;
        if (part->type == SYNC_TEXT) {
            uint8_t *b = malloc(part->u.b.n + 1);
            if (!b) {
                stream_free(s);
                return SYNC_ERR_NOMEM;
            }
            if (part->u.b.n)
                memcpy(b, part->u.b.p, part->u.b.n);
            s->val.u.b.p = b;
        }
    }
    return SYNC_OK;
}

/* (Re)reads the cursor and resync flag of stream st from the database. A stream never pulled,
 * and a resync a stop interrupted, are marked as needing a pull. */
static int load_stream(edge_pull *p, pull_stream *st)
{
    tstate *s = &st->s;
    s->cursor = 0;
    s->full = 0;
    s->snap = 0; /* (a snapshot under way begins again: its pages were not all kept) */
    sqlite3_bind_text(p->get_cursor, 1, st->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(p->get_cursor);
    if (rc == SQLITE_ROW)
        s->cursor = (uint64_t)sqlite3_column_int64(p->get_cursor, 0);
    sqlite3_reset(p->get_cursor);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return SYNC_ERR_DB;
    if (s->head < s->cursor)
        s->head = s->cursor;
    /* A stream never pulled starts from nothing: fetch it whole. */
    if (s->cursor == 0)
        s->need = 1;
    /* A full resync interrupted by a stop goes on from its last page. */
    sqlite3_bind_text(p->get_resync, 1, st->name, -1, SQLITE_STATIC);
    rc = sqlite3_step(p->get_resync);
    if (rc == SQLITE_ROW) {
        s->full = 1;
        s->need = 1;
    }
    sqlite3_reset(p->get_resync);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return SYNC_ERR_DB;
    return SYNC_OK;
}

static int load_state(edge_pull *p)
{
    for (int i = 0; i < p->nst; i++)
        if (load_stream(p, &p->st[i]) != SYNC_OK)
            return SYNC_ERR_DB;
    return SYNC_OK;
}

/* Takes the streams of the policy in p->db: whole-table streams stay (active or not), partition
 * streams that go on keep their state, new ones read their cursor and are pulled, the others
 * go. A whole-table stream that starts is pulled from its stored cursor, one that stops loses
 * its state. The request in flight is forgotten if its stream stopped. On error p is as it
 * was. */
static int take_streams(edge_pull *p)
{
    const edge_db *db = p->db;
    int n = db->ntables;
    for (int i = 0; i < db->ntables; i++)
        if (edge_db_recv_mode(db, i) == EDGE_RECV_PARTS)
            n += db->parts[i].nrecv;
    pull_stream *ns = calloc((size_t)n + 1, sizeof *ns);
    int *from = calloc((size_t)n + 1, sizeof *from); /* where a partition stream came from */
    if (!ns || !from) {
        free(ns);
        free(from);
        return SYNC_ERR_NOMEM;
    }
    int fresh = p->st == NULL;
    int inflight = -1, k = db->ntables, rc = SYNC_OK;
    for (int i = 0; i < db->ntables && rc == SYNC_OK; i++) {
        if (fresh)
            rc = stream_init(&ns[i], db, i, NULL);
        else
            ns[i] = p->st[i]; /* a copy: p->st stays whole until the end */
        int active = edge_db_recv_mode(db, i) == EDGE_RECV_WHOLE;
        if (rc == SYNC_OK && !fresh && active != ns[i].active) {
            memset(&ns[i].s, 0, sizeof ns[i].s);
            /* Starts: from its stored cursor (0 since it stopped, policy.c). */
            if (active) {
                rc = load_stream(p, &ns[i]);
                ns[i].s.need = 1;
            }
        }
        ns[i].active = active;
        if (i == p->inflight)
            inflight = i;
    }
    for (int i = 0; i < db->ntables && rc == SYNC_OK; i++) {
        if (edge_db_recv_mode(db, i) != EDGE_RECV_PARTS)
            continue;
        const edge_parts *pp = &db->parts[i];
        for (int v = 0; v < pp->nrecv && rc == SYNC_OK; v++) {
            int old = -1;
            for (int j = db->ntables; !fresh && j < p->nst && old < 0; j++)
                if (p->st[j].name && p->st[j].slot == i &&
                    sync_value_equal(&p->st[j].val, &pp->recv[v]))
                    old = j;
            from[k] = old;
            if (old >= 0) {
                ns[k] = p->st[old];
                p->st[old].name = NULL; /* moved */
                if (old == p->inflight)
                    inflight = k;
            } else {
                /* New: from its stored cursor, 0 for a partition the policy just added
                 * (policy.c), which makes it pulled. */
                rc = stream_init(&ns[k], db, i, &pp->recv[v]);
                if (rc == SYNC_OK)
                    rc = load_stream(p, &ns[k]);
            }
            ns[k++].active = 1;
        }
    }
    if (rc != SYNC_OK) {
        for (int j = db->ntables; j < k; j++) {
            if (from[j] >= 0)
                p->st[from[j]] = ns[j]; /* back where it was */
            else
                stream_free(&ns[j]);
        }
        for (int j = 0; fresh && j < db->ntables; j++)
            stream_free(&ns[j]);
        free(ns);
        free(from);
        return rc;
    }
    for (int j = db->ntables; j < p->nst; j++)
        if (p->st[j].name)
            stream_free(&p->st[j]);
    free(p->st);
    free(from);
    p->st = ns;
    p->nst = k;
    if (p->inflight >= 0 && (inflight < 0 || !p->st[inflight].active)) {
        p->corr++; /* its answer is ignored */
        p->inflight = -1;
    } else {
        p->inflight = inflight;
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
    if (rc == SYNC_OK && (take_streams(p) != SYNC_OK || load_state(p) != SYNC_OK))
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
    for (int i = 0; i < p->nst; i++)
        stream_free(&p->st[i]);
    free(p->st);
    sync_cbuf_free(&p->buf);
    free(p);
}

/* Sets the stored cursor named `name` to cseq, also lower than it is (a rewind, a resync). */
static int store_cursor(edge_pull *p, const char *name, uint64_t cseq)
{
    sqlite3_bind_text(p->set_cursor, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(p->set_cursor, 2, (sqlite3_int64)cseq);
    int rc = sqlite3_step(p->set_cursor);
    sqlite3_reset(p->set_cursor);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

static int save_cursor(edge_pull *p, int i)
{
    sqlite3_bind_text(p->put_cursor, 1, p->st[i].name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(p->put_cursor, 2, (sqlite3_int64)p->st[i].s.cursor);
    int rc = sqlite3_step(p->put_cursor);
    sqlite3_reset(p->put_cursor);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

int edge_pull_find(const edge_pull *p, const sync_table *t, const char *level)
{
    int slot = slot_of(p, t);
    if (slot < 0)
        return -1;
    if (!level)
        return p->st[slot].active ? slot : -1;
    for (int i = p->db->ntables; i < p->nst; i++)
        if (p->st[i].slot == slot && strcmp(p->st[i].level, level) == 0)
            return i;
    return -1;
}

int edge_pull_on_delta(edge_pull *p, int i, uint64_t prev, uint64_t last)
{
    if (i < 0 || i >= p->nst)
        return SYNC_OK;
    tstate *s = &p->st[i].s;
    if (last > s->head)
        s->head = last;
    if (s->snap)
        return SYNC_OK; /* its changes are applied; the cursor waits for the snapshot's end */
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
            sync_notice("replica: '%s' is empty here; pulling it whole", p->st[i].name);
        else
            sync_notice("replica: changes %llu..%llu of '%s' never arrived; pulling them",
                        (unsigned long long)s->cursor + 1, (unsigned long long)prev,
                        p->st[i].name);
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
    /* Received by partitions: the partitions' heads count, not the table's. */
    if (i >= 0 && p->st[i].active && e->cseq > p->st[i].s.head)
        p->st[i].s.head = e->cseq;
    return 0;
}

int edge_pull_on_head(edge_pull *p, const void *payload, size_t len, char *err, size_t errlen)
{
    uint64_t top;
    return sync_head_decode(payload, len, &top, on_head_table, p, err, errlen);
}

typedef struct part_head {
    const sync_table *t;
    uint64_t cseq;
} part_head;

static int on_part_head(void *ctx, const sync_head_entry *e)
{
    part_head *h = ctx;
    if (strlen(h->t->name) == e->table_len && memcmp(h->t->name, e->table, e->table_len) == 0 &&
        e->cseq > h->cseq)
        h->cseq = e->cseq;
    return 0;
}

int edge_pull_on_part_head(edge_pull *p, const char *stream, const void *payload, size_t len,
                           char *err, size_t errlen)
{
    const char *slash = strchr(stream, '/');
    const sync_table *t = slash ? edge_db_table(p->db, stream, (size_t)(slash - stream)) : NULL;
    int i = t ? edge_pull_find(p, t, slash + 1) : -1;
    if (i < 0) {
        sync_debug("replica: ignoring the head of '%s' (not received here)", stream);
        return SYNC_OK;
    }
    part_head h = {t, 0};
    uint64_t top;
    int rc = sync_head_decode(payload, len, &top, on_part_head, &h, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    if (h.cseq > p->st[i].s.head)
        p->st[i].s.head = h.cseq;
    return SYNC_OK;
}

uint64_t edge_pull_cursor(const edge_pull *p, const sync_table *t)
{
    int slot = slot_of(p, t);
    if (slot < 0)
        return 0;
    if (edge_db_recv_mode(p->db, slot) != EDGE_RECV_PARTS)
        return p->st[slot].s.cursor;
    uint64_t c = 0;
    int first = 1;
    for (int i = p->db->ntables; i < p->nst; i++)
        if (p->st[i].slot == slot && (first || p->st[i].s.cursor < c)) {
            c = p->st[i].s.cursor;
            first = 0;
        }
    return c;
}

int edge_pull_rewind_stream(edge_pull *p, int i, uint64_t cseq)
{
    if (i < 0 || i >= p->nst)
        return SYNC_OK;
    tstate *s = &p->st[i].s;
    s->need = 1;
    if (s->snap) { /* the snapshot's end sets the cursor no higher than this */
        if (cseq < s->snap_floor)
            s->snap_floor = cseq;
        return SYNC_OK;
    }
    if (cseq >= s->cursor)
        return SYNC_OK;
    sync_debug("replica: '%s' lacks rows changed after %llu; pulling from there", p->st[i].name,
               (unsigned long long)cseq);
    s->cursor = cseq;
    return store_cursor(p, p->st[i].name, cseq);
}

int edge_pull_rewind(edge_pull *p, const sync_table *t, uint64_t cseq)
{
    int slot = slot_of(p, t);
    if (slot < 0)
        return SYNC_OK;
    if (edge_db_recv_mode(p->db, slot) != EDGE_RECV_PARTS)
        return edge_pull_rewind_stream(p, slot, cseq);
    for (int i = p->db->ntables; i < p->nst; i++)
        if (p->st[i].slot == slot && edge_pull_rewind_stream(p, i, cseq) != SYNC_OK)
            return SYNC_ERR_DB;
    return SYNC_OK;
}

void edge_pull_all(edge_pull *p, const char *why)
{
    sync_info("replica: %s; checking every table with the cloud", why);
    for (int i = 0; i < p->nst; i++)
        p->st[i].s.need = 1;
}

/* Encodes the request for stream i into p->buf and p->corrbuf and marks it in flight. A whole
 * table never had here (cursor 0, not a full resync) starts or goes on with a snapshot. */
static void make_request(edge_pull *p, int i)
{
    pull_stream *st = &p->st[i];
    tstate *s = &st->s;
    if (!s->snap && p->cfg->pull_snapshot && !st->part && !s->full && s->cursor == 0) {
        s->snap = 1;
        s->snap_high = 0;
        s->snap_floor = UINT64_MAX;
        s->snap_has_key = 0;
    }
    sync_pull req = {
        .table = st->t->name,
        .table_len = strlen(st->t->name),
        .after = st->s.cursor,
        .limit = (uint64_t)p->cfg->pull_rows,
        .full = st->s.full,
        .has_part = st->part,
        .part = st->val,
        .snap = s->snap,
        .snap_high = s->snap_high,
        .has_snap_key = s->snap && s->snap_has_key,
        .snap_key = s->snap_key,
    };
    sync_cbuf_reset(&p->buf);
    sync_pull_encode(&p->buf, &req);
    for (int k = 0; k < 8; k++)
        p->corrbuf[k] = (uint8_t)(p->corr >> (56 - 8 * k));
    p->inflight = i;
    p->after = req.after;
    p->sent_at = now_s();
    p->st[i].s.need = 0;
}

int edge_pull_next(edge_pull *p, edge_pull_req *req)
{
    double now = now_s();
    for (int i = 0; i < p->nst; i++) {
        tstate *s = &p->st[i].s;
        if (!p->st[i].active) /* not received here (policy.h) */
            continue;
        if (s->head > s->cursor) {
            if (s->behind_since == 0)
                s->behind_since = now;
            else if (now - s->behind_since > HEAD_GRACE && p->inflight != i && !s->need) {
                sync_info("replica: '%s' is at %llu, the cloud at %llu; pulling", p->st[i].name,
                          (unsigned long long)s->cursor, (unsigned long long)s->head);
                s->need = 1;
                s->behind_since = now;
            }
        } else {
            s->behind_since = 0;
        }
    }
    int i = -1;
    if (p->inflight >= 0) {
        if (now - p->sent_at <= PULL_TIMEOUT)
            return 0;
        /* Same correlation data: a late answer to the first request is still welcome. */
        sync_warn("replica: no answer to the pull of '%s' after %.0f s; asking again",
                  p->st[p->inflight].name, now - p->sent_at);
        i = p->inflight;
    } else {
        for (int k = 0; k < p->nst && i < 0; k++)
            if (p->st[k].s.need && p->st[k].active)
                i = k;
        if (i < 0)
            return 0;
        p->corr++;
    }
    make_request(p, i);
    if (p->buf.err != SYNC_OK) {
        p->inflight = -1;
        p->st[i].s.need = 1;
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
        p->st[p->inflight].s.need = 1;
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

/* Asks for the page after the one being applied (p->st[i].s.cursor is its `next`). */
static int prefetch(edge_pull *p, int i)
{
    if (!p->mqtt || !sync_mqtt_connected(p->mqtt))
        return SYNC_ERR_IO;
    p->corr++;
    make_request(p, i);
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

static int step_name(sqlite3_stmt *st, const char *name)
{
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

int edge_pull_resync_all(edge_pull *p, const char *why)
{
    sync_notice("replica: %s; rebuilding every table from the cloud", why);
    p->corr++; /* an answer to a request in flight is ignored */
    p->inflight = -1;
    /* Every whole-table stream (as before partitions, also of tables not received now), and
     * the partition streams received. */
    for (int i = 0; i < p->nst; i++) {
        if (i >= p->db->ntables && !p->st[i].active)
            continue;
        tstate *s = &p->st[i].s;
        const char *name = p->st[i].name;
        if (step_name(p->resync_put, name) != SYNC_OK || step_name(p->seen_clear, name) != SYNC_OK)
            return SYNC_ERR_DB;
        if (store_cursor(p, name, 0) != SYNC_OK)
            return SYNC_ERR_DB;
        /* Asked for because the replica may have drifted (restored, edited behind syncedge's
         * back): forget the versions held, so every row the cloud sends is written again, not
         * skipped as already known. Rows with local changes waiting keep theirs. Once per
         * table: with its whole-table stream. */
        if (i < p->db->ntables && step_name(p->forget_versions, p->st[i].t->name) != SYNC_OK)
            return SYNC_ERR_DB;
        s->cursor = 0;
        s->full = 1;
        s->snap = 0;
        s->need = 1;
        s->started = 0;
        s->done_rows = s->total_rows = 0;
    }
    return SYNC_OK;
}

int edge_pull_policy_changed(edge_pull *p)
{
    return take_streams(p);
}

int edge_pull_nstreams(const edge_pull *p)
{
    return p->nst;
}

int edge_pull_stream_at(const edge_pull *p, int i, const char **name, uint64_t *cursor,
                        uint64_t *head)
{
    if (i < 0 || i >= p->nst)
        return 0;
    const pull_stream *s = &p->st[i];
    if (!s->part && edge_db_recv_mode(p->db, s->slot) == EDGE_RECV_PARTS)
        return 0;
    *name = s->name;
    *cursor = s->s.cursor;
    *head = s->s.head;
    return 1;
}

int edge_pull_part_at(const edge_pull *p, int i, const sync_table **t, const sync_value **part)
{
    if (i < 0 || i >= p->nst || !p->st[i].part || !p->st[i].active)
        return 0;
    *t = p->st[i].t;
    *part = &p->st[i].val;
    return 1;
}

uint64_t edge_pull_lag(const edge_pull *p, const sync_table *t)
{
    int slot = slot_of(p, t);
    if (slot < 0)
        return 0;
    if (edge_db_recv_mode(p->db, slot) != EDGE_RECV_PARTS) {
        const tstate *s = &p->st[slot].s;
        return s->head > s->cursor ? s->head - s->cursor : 0;
    }
    uint64_t lag = 0;
    for (int i = p->db->ntables; i < p->nst; i++)
        if (p->st[i].slot == slot && p->st[i].s.head > p->st[i].s.cursor)
            lag += p->st[i].s.head - p->st[i].s.cursor;
    return lag;
}

unsigned long edge_pull_rebuilds(const edge_pull *p)
{
    return p->rebuilds;
}

int edge_pull_progress(const edge_pull *p, const char **table, uint64_t *done, uint64_t *total,
                       double *rows_per_s)
{
    for (int i = 0; i < p->nst; i++) {
        const tstate *s = &p->st[i].s;
        if (s->started > 0 && s->total_rows > 0) {
            double secs = now_s() - s->started;
            *table = p->st[i].name;
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
    if (take_streams(p) != SYNC_OK)
        return SYNC_ERR_DB;
    for (int i = 0; i < p->nst; i++) {
        p->st[i].s.need = 1;
        p->st[i].s.started = 0;
        p->st[i].s.done_rows = p->st[i].s.total_rows = 0;
    }
    return load_state(p);
}

int edge_pull_busy(const edge_pull *p)
{
    if (p->inflight >= 0)
        return 1;
    for (int i = 0; i < p->nst; i++)
        if (p->st[i].active && (p->st[i].s.need || p->st[i].s.head > p->st[i].s.cursor))
            return 1;
    return 0;
}

/* Keeps a copy of key as the stream's snapshot position. */
static int keep_key(pull_stream *st, const sync_value *key)
{
    tstate *s = &st->s;
    s->snap_key = *key;
    if (key->type == SYNC_TEXT || key->type == SYNC_BLOB) {
        size_t n = key->u.b.n;
        if (n + 1 > st->keycap) {
            uint8_t *nb = realloc(st->keybuf, n + 1);
            if (!nb)
                return SYNC_ERR_NOMEM;
            st->keybuf = nb;
            st->keycap = n + 1;
        }
        if (n)
            memcpy(st->keybuf, key->u.b.p, n);
        s->snap_key.u.b.p = st->keybuf;
    }
    s->snap_has_key = 1;
    return SYNC_OK;
}

static int last_key(void *ctx, const sync_change *c)
{
    edge_pull *p = ctx;
    p->page_last = c->key;
    p->page_has_last = 1;
    return 0;
}

static int on_page_hdr(void *ctx, const sync_page_hdr *h)
{
    edge_pull *p = ctx;
    int i = p->inflight;
    if (i < 0 || !p->st[i].active)
        return 1;
    const sync_table *t = p->st[i].t;
    if (strlen(t->name) != h->table_len || memcmp(t->name, h->table, h->table_len) != 0)
        return 1; /* not the page we asked for */
    const char *name = p->st[i].name;
    /* The cloud answers a request from cursor A > 0 with a page from 0 when it compacted
     * tombstones after A: deletes since may be unknown here, so the stream is rebuilt from a
     * whole snapshot, and rows it does not hold are removed at the end (sweep()). */
    tstate *s = &p->st[i].s;
    int redirected = h->after == 0 && p->after > 0 && !s->full;
    if (h->after != p->after && !redirected)
        return 1;
    if (redirected) {
        sync_notice("replica: '%s' was away longer than the cloud keeps deletes; taking the "
                    "whole %s again",
                    name, p->st[i].part ? "partition" : "table");
        if (step_name(p->resync_put, name) != SYNC_OK ||
            step_name(p->seen_clear, name) != SYNC_OK) {
            p->page_failed = 1;
            return SYNC_ERR_DB;
        }
    }
    p->page_full = redirected || s->full;
    p->page_table = t;
    p->page_stream = i;
    p->page = *h;
    p->inflight = -1;
    if (p->page_full && !s->full) { /* the first page of a full resync */
        s->full = 1;
        s->cursor = 0;
        s->started = 0;
        s->done_rows = 0;
        if (store_cursor(p, name, 0) != SYNC_OK) {
            p->page_failed = 1;
            return SYNC_ERR_DB;
        }
    }
    if (s->snap) {
        /* The cursor stays 0 until the last page; the next page starts after this one's last
         * key (found by a first pass over the page, edge_pull_on_page). */
        s->snap_high = h->next;
        if (p->page_has_last && keep_key(&p->st[i], &p->page_last) != SYNC_OK) {
            p->page_failed = 1;
            return SYNC_ERR_NOMEM;
        }
    } else if (h->next > s->cursor) {
        s->cursor = h->next;
    }
    /* Ask for the next page now, so the cloud reads and sends it while this one is applied.
     * The cursor is saved with this page's rows; if their transaction fails, edge_pull_reload
     * forgets the request (its answer is ignored) and pulls again from the saved cursor. */
    p->prefetched = !h->done && h->nchanges > 0 && prefetch(p, i) == SYNC_OK;
    if (h->nchanges > 1 && edge_replica_hint(p->rep, t) != SYNC_OK) {
        p->page_failed = 1;
        return SYNC_ERR_DB;
    }
    return 0;
}

static int on_page_row(void *ctx, const sync_change *c)
{
    edge_pull *p = ctx;
    const pull_stream *st = &p->st[p->page_stream];
    int rc = SYNC_OK;
    /* A leave belongs to a partition's stream; a whole table has none. */
    if (c->op != SYNC_OP_LEAVE || st->part)
        rc = edge_replica_put(p->rep, p->page_table, &c->key, c->op, c->cols, c->ncols,
                              c->version, 0, c->cseq ? c->cseq - 1 : 0, 0);
    if (rc == SYNC_OK && p->page_full) {
        sqlite3_bind_text(p->seen_put, 1, st->name, -1, SQLITE_STATIC);
        sync_sql_bind(p->seen_put, 2, &c->key);
        int src = sqlite3_step(p->seen_put);
        sqlite3_reset(p->seen_put);
        rc = src == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
    }
    if (rc != SYNC_OK)
        p->page_failed = 1;
    return rc;
}

/* Runs sql with ?1 = the table, ?2 = the stream's name, ?3 = its partition value. */
static int sweep_step(edge_pull *p, const pull_stream *s, const char *sql)
{
    sqlite3_stmt *st;
    if (!sql || sync_sql_prepare(p->db->db, sql, &st, NULL, 0) != SYNC_OK)
        return SYNC_ERR_DB;
    sqlite3_bind_text(st, 1, s->t->name, -1, SQLITE_STATIC);
    if (s->part) {
        sqlite3_bind_text(st, 2, s->name, -1, SQLITE_STATIC);
        sync_sql_bind(st, 3, &s->val);
    }
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

/* The end of a full resync of stream i: removes the rows (and their versions) that the
 * snapshot did not hold, except rows with local changes still on their way to the cloud; for a
 * partition stream, only rows whose partition column holds its value (rows of other
 * partitions come with their own streams). Runs inside the page's transaction, as replica
 * writes, so nothing removed here is captured. */
static int sweep(edge_pull *p, int i, long long *removed)
{
    const pull_stream *s = &p->st[i];
    const sync_table *t = s->t;
    const char *k = t->cols[t->key].name;
    char *rows = NULL, *versions = NULL;
    if (!s->part) {
        rows = sqlite3_mprintf("DELETE FROM \"%w\" WHERE \"%w\" NOT IN (SELECT pk FROM _sync_seen "
                               "WHERE tbl = ?1) AND \"%w\" NOT IN (SELECT pk FROM _sync_outbox "
                               "WHERE tbl = ?1)",
                               t->name, k, k);
        versions = sqlite3_mprintf("DELETE FROM _sync_rows WHERE tbl = ?1 AND pk NOT IN (SELECT "
                                   "pk FROM _sync_seen WHERE tbl = ?1) AND pk NOT IN (SELECT pk "
                                   "FROM _sync_outbox WHERE tbl = ?1)");
    } else {
        const char *col = t->cols[p->db->parts[s->slot].col].name;
        char *which = sqlite3_mprintf("\"%w\" = ?3 AND \"%w\" NOT IN (SELECT pk FROM _sync_seen "
                                      "WHERE tbl = ?2) AND \"%w\" NOT IN (SELECT pk FROM "
                                      "_sync_outbox WHERE tbl = ?1)",
                                      col, k, k);
        rows = which ? sqlite3_mprintf("DELETE FROM \"%w\" WHERE %s", t->name, which) : NULL;
        versions = which ? sqlite3_mprintf("DELETE FROM _sync_rows WHERE tbl = ?1 AND pk IN "
                                           "(SELECT \"%w\" FROM \"%w\" WHERE %s)",
                                           k, t->name, which)
                         : NULL;
        sqlite3_free(which);
    }
    /* Versions first: they are found through the rows that go. */
    int rc = s->part ? sweep_step(p, s, versions) : SYNC_OK;
    if (rc == SYNC_OK)
        rc = sweep_step(p, s, rows);
    *removed = sqlite3_changes(p->db->db);
    if (rc == SYNC_OK && !s->part)
        rc = sweep_step(p, s, versions);
    sqlite3_free(rows);
    sqlite3_free(versions);
    if (rc == SYNC_OK)
        rc = step_name(p->seen_clear, s->name);
    if (rc == SYNC_OK)
        rc = step_name(p->resync_del, s->name);
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
    p->page_has_last = 0;
    /* A snapshot page: its last key is where the next one starts, wanted before the rows are
     * applied so the next page can be asked for first. (A malformed page fails below.) */
    if (p->inflight >= 0 && p->st[p->inflight].s.snap)
        sync_page_decode(msg->payload, msg->len, &p->lim, NULL, last_key, p, NULL, 0);
    int rc =
        sync_page_decode(msg->payload, msg->len, &p->lim, on_page_hdr, on_page_row, p, err, errlen);
    edge_replica_hint(p->rep, NULL);
    if (rc == 1)
        return SYNC_OK;
    if (rc != SYNC_OK && p->page_table && !p->page_failed) {
        /* Malformed after its header was taken: the cursor moved in memory only, and the next
         * page may be asked for already. Go back to the stored cursor and ask again from there
         * when the request times out, as for a page that never came. */
        int i = p->page_stream;
        if (load_state(p) != SYNC_OK)
            return sync_seterr(err, errlen, SYNC_ERR_DB, "reading the cursor of '%s': %s",
                               p->st[i].name, sqlite3_errmsg(p->db->db));
        p->inflight = i;
        p->after = p->st[i].s.cursor;
        p->sent_at = now_s();
        p->st[i].s.need = 0;
    }
    if (rc != SYNC_OK)
        return p->page_failed ? SYNC_ERR_DB : rc;
    int i = p->page_stream;
    tstate *s = &p->st[i].s;
    const char *name = p->st[i].name;
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
    if ((rc = save_cursor(p, i)) != SYNC_OK)
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
        if (s->snap) {
            /* Every row of the snapshot is here: the stream is at its cseq (or lower, where a
             * rewind asked for it), and what changed since comes with a catch-up. */
            s->snap = 0;
            s->cursor = s->snap_floor < s->snap_high ? s->snap_floor : s->snap_high;
            if ((rc = store_cursor(p, name, s->cursor)) != SYNC_OK)
                return sync_seterr(err, errlen, rc, "saving the cursor of '%s'", name);
            if (s->head > s->cursor)
                s->need = 1;
        }
        if (s->full) {
            long long removed = 0;
            if ((rc = sweep(p, i, &removed)) != SYNC_OK)
                return sync_seterr(err, errlen, rc,
                                   "removing rows of '%s' the cloud no longer holds: %s", name,
                                   sqlite3_errmsg(p->db->db));
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
        for (int k = 0; k < p->nst; k++)
            running |= p->st[k].s.started > 0;
        if (!running)
            edge_db_cache(p->db, 0);
    }
    return SYNC_OK;
}
