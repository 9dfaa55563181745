/* outbox.c - batches out, acks in (see outbox.h). */
#include "outbox.h"

#include "pull.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"
#include "sync/sqlutil.h"

/* What the ack needs to know about each record of the batch in flight. */
typedef struct sent_rec {
    uint64_t seq;
    const sync_table *t;
    sync_value key; /* text/blob bytes live in keybuf */
    size_t key_off; /* offset of the key bytes in keybuf */
    int stale;      /* the ack found the row behind a newer version: leave its version alone */
    sync_op op;
    uint64_t mask; /* columns the change sets (all bits for an insert or delete) */
} sent_rec;

struct edge_outbox {
    edge_db *db;
    edge_replica *rep;
    const edge_config *cfg;
    sqlite3_stmt *select, *delete_range, *to_dead, *save_hlc;
    sync_cbuf recs; /* records of the batch being built */
    sync_cbuf out;  /* header + records: the payload in flight */
    sync_hlc hlc;
    int inflight;
    uint64_t base_seq, last_seq;
    sent_rec *sent; /* nsent entries, in seq order */
    size_t nsent, sent_cap;
    uint8_t *keybuf; /* text/blob keys of the records in flight */
    size_t keylen, keycap;
    sync_limits lim;
    edge_outbox_stats stats;
    const sync_table *ack_table; /* scratch for the ack callbacks */
    int ack_failed;
    int ack_done;
    struct refused {
        uint64_t seq;
        char reason[200];
    } * rejected; /* changes of the acked batch the cloud refused one by one */
    size_t nrejected, rejected_cap;
    uint64_t cursor_at_send[EDGE_MAX_TABLES]; /* tables' cursors when the batch was built */
    sync_record rec;                          /* scratch, large: kept off the stack */
};

static int edge_slot(const edge_outbox *o, const sync_table *t)
{
    for (int i = 0; i < o->db->ntables; i++)
        if (o->db->tables[i] == t)
            return i;
    return 0;
}

int edge_outbox_new(edge_db *db, edge_replica *rep, const edge_config *c, edge_outbox **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    edge_outbox *o = calloc(1, sizeof *o);
    if (!o)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    o->db = db;
    o->rep = rep;
    o->cfg = c;
    sync_cbuf_init(&o->recs, 0);
    sync_cbuf_init(&o->out, 0);
    sync_limits_default(&o->lim);
    char sql[4096];
    size_t at = (size_t)snprintf(sql, sizeof sql, "SELECT seq, tbl, op, pk, base, ts, mask");
    for (int i = 0; i < db->nv; i++)
        at += (size_t)snprintf(sql + at, sizeof sql - at, ", v%d", i);
    snprintf(sql + at, sizeof sql - at, " FROM _sync_outbox ORDER BY seq LIMIT ?");
    char dead[4096];
    at = (size_t)snprintf(dead, sizeof dead,
                          "INSERT OR REPLACE INTO _sync_dead(seq, tbl, op, pk, base, ts, mask, "
                          "reason, at");
    for (int i = 0; i < db->nv; i++)
        at += (size_t)snprintf(dead + at, sizeof dead - at, ", v%d", i);
    at += (size_t)snprintf(dead + at, sizeof dead - at,
                           ") SELECT seq, tbl, op, pk, base, ts, mask, ?3, "
                           "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)");
    for (int i = 0; i < db->nv; i++)
        at += (size_t)snprintf(dead + at, sizeof dead - at, ", v%d", i);
    snprintf(dead + at, sizeof dead - at, " FROM _sync_outbox WHERE seq BETWEEN ?1 AND ?2");
    int rc = sync_sql_prepare(db->db, sql, &o->select, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(db->db, "DELETE FROM _sync_outbox WHERE seq BETWEEN ?1 AND ?2",
                              &o->delete_range, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(db->db, dead, &o->to_dead, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(db->db, "UPDATE _sync_ctl SET hlc = max(hlc, ?) WHERE id = 1",
                              &o->save_hlc, err, errlen);
    if (rc == SYNC_OK) {
        sqlite3_stmt *st;
        rc = sync_sql_prepare(db->db, "SELECT hlc FROM _sync_ctl WHERE id = 1", &st, err, errlen);
        if (rc == SYNC_OK && sqlite3_step(st) == SQLITE_ROW)
            o->hlc.last = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    if (rc != SYNC_OK) {
        edge_outbox_free(o);
        return rc;
    }
    *out = o;
    return SYNC_OK;
}

void edge_outbox_free(edge_outbox *o)
{
    if (!o)
        return;
    sqlite3_finalize(o->select);
    sqlite3_finalize(o->delete_range);
    sqlite3_finalize(o->to_dead);
    sqlite3_finalize(o->save_hlc);
    sync_cbuf_free(&o->recs);
    sync_cbuf_free(&o->out);
    free(o->sent);
    free(o->keybuf);
    free(o->rejected);
    free(o);
}

/* Moves outbox rows [from, to] to _sync_dead with a reason, in its own transaction. */
static int bury(edge_outbox *o, uint64_t from, uint64_t to, const char *reason, size_t reason_len)
{
    int own = sqlite3_get_autocommit(o->db->db);
    if (own && edge_db_begin(o->db, 0) != SYNC_OK)
        return SYNC_ERR_DB;
    sqlite3_bind_int64(o->to_dead, 1, (sqlite3_int64)from);
    sqlite3_bind_int64(o->to_dead, 2, (sqlite3_int64)to);
    sqlite3_bind_text(o->to_dead, 3, reason, (int)reason_len, SQLITE_TRANSIENT);
    int rc = sqlite3_step(o->to_dead);
    sqlite3_reset(o->to_dead);
    int n = 0;
    if (rc == SQLITE_DONE) {
        n = sqlite3_changes(o->db->db);
        sqlite3_bind_int64(o->delete_range, 1, (sqlite3_int64)from);
        sqlite3_bind_int64(o->delete_range, 2, (sqlite3_int64)to);
        rc = sqlite3_step(o->delete_range);
        sqlite3_reset(o->delete_range);
    }
    if (rc != SQLITE_DONE) {
        sync_error("outbox: cannot move rejected changes aside: %s", sqlite3_errmsg(o->db->db));
        if (own)
            edge_db_rollback(o->db);
        return SYNC_ERR_DB;
    }
    if (own && edge_db_commit(o->db) != SYNC_OK)
        return SYNC_ERR_DB;
    o->stats.dead += (unsigned long)n;
    return SYNC_OK;
}

static int remember(edge_outbox *o, uint64_t seq, sync_op op, uint64_t mask, const sync_table *t,
                    const sync_value *key)
{
    if (o->nsent == o->sent_cap) {
        size_t cap = o->sent_cap ? o->sent_cap * 2 : 256;
        sent_rec *ns = realloc(o->sent, cap * sizeof *ns);
        if (!ns)
            return SYNC_ERR_NOMEM;
        o->sent = ns;
        o->sent_cap = cap;
    }
    sent_rec *s = &o->sent[o->nsent++];
    s->seq = seq;
    s->stale = 0;
    s->op = op;
    s->mask = op == SYNC_OP_UPDATE ? mask : ~0ull;
    s->t = t;
    s->key = *key;
    if (key->type == SYNC_TEXT || key->type == SYNC_BLOB) {
        if (o->keylen + key->u.b.n > o->keycap) {
            size_t cap = o->keycap ? o->keycap : 4096;
            while (cap < o->keylen + key->u.b.n)
                cap *= 2;
            uint8_t *nb = realloc(o->keybuf, cap);
            if (!nb)
                return SYNC_ERR_NOMEM;
            o->keybuf = nb;
            o->keycap = cap;
        }
        if (key->u.b.n)
            memcpy(o->keybuf + o->keylen, key->u.b.p, key->u.b.n);
        s->key_off = o->keylen;
        o->keylen += key->u.b.n;
    }
    return SYNC_OK;
}

/* Fixes up key pointers once keybuf has stopped moving. */
static void settle_keys(edge_outbox *o)
{
    for (size_t i = 0; i < o->nsent; i++) {
        sent_rec *s = &o->sent[i];
        if (s->key.type == SYNC_TEXT || s->key.type == SYNC_BLOB)
            s->key.u.b.p = o->keybuf + s->key_off;
    }
}

/* Reads one outbox row into o->rec. Returns SYNC_OK, or SYNC_ERR_SCHEMA with a reason when the
 * row cannot be sent. */
static int read_row(edge_outbox *o, sqlite3_stmt *st, const sync_table **tp, char *why,
                    size_t whylen)
{
    sync_record *r = &o->rec;
    const char *tbl = (const char *)sqlite3_column_text(st, 1);
    size_t tlen = (size_t)sqlite3_column_bytes(st, 1);
    const sync_table *t = edge_db_table(o->db, tbl ? tbl : "", tbl ? tlen : 0);
    *tp = t;
    if (!t)
        return sync_seterr(why, whylen, SYNC_ERR_SCHEMA, "table '%.*s' is no longer synced",
                           (int)tlen, tbl ? tbl : "");
    r->table = t->name;
    r->table_len = strlen(t->name);
    r->seq = (uint64_t)sqlite3_column_int64(st, 0);
    int op = sqlite3_column_int(st, 2);
    r->op = op == 0 ? SYNC_OP_INSERT : op == 1 ? SYNC_OP_UPDATE : SYNC_OP_DELETE;
    sync_sql_column(st, 3, &r->key);
    int rc = sync_column_check(t, t->key, &r->key, why, whylen);
    if (rc != SYNC_OK)
        return rc;
    r->base_version = (uint64_t)sqlite3_column_int64(st, 4);
    r->hlc = sync_hlc_tick(&o->hlc, (uint64_t)sqlite3_column_int64(st, 5));
    uint64_t mask = (uint64_t)sqlite3_column_int64(st, 6);
    r->ncols = 0;
    if (r->op != SYNC_OP_DELETE) {
        for (int i = 0; i < t->ncols; i++) {
            if (!(mask & (1ull << i)))
                continue;
            sync_colval *cv = &r->cols[r->ncols++];
            cv->name = t->cols[i].name;
            cv->name_len = strlen(t->cols[i].name);
            sync_sql_column(st, 7 + i, &cv->v);
            if ((rc = sync_column_check(t, i, &cv->v, why, whylen)) != SYNC_OK)
                return rc;
            if ((cv->v.type == SYNC_TEXT || cv->v.type == SYNC_BLOB) &&
                cv->v.u.b.n > (size_t)o->cfg->max_value)
                return sync_seterr(why, whylen, SYNC_ERR_TOOBIG,
                                   "table '%s' column '%s': value of %zu bytes exceeds max_value "
                                   "(%ld)",
                                   t->name, t->cols[i].name, cv->v.u.b.n, o->cfg->max_value);
        }
        if (r->ncols == 0)
            return sync_seterr(why, whylen, SYNC_ERR_SCHEMA, "change sets no column");
    }
    return SYNC_OK;
}

int edge_outbox_prepare(edge_outbox *o, const uint8_t **payload, size_t *len)
{
    if (o->inflight) {
        *payload = o->out.data;
        *len = o->out.len;
        return 1;
    }
    sync_cbuf_reset(&o->recs);
    o->nsent = 0;
    o->keylen = 0;
    /* Edits made after seeing others' changes must carry later clocks than those changes, even
     * when this device's wall clock is behind: take in every clock seen downstream. */
    if (o->rep)
        sync_hlc_observe(&o->hlc, edge_replica_max_hlc(o->rep));
    struct edge_pull *pull = o->rep ? edge_replica_pull(o->rep) : NULL;
    for (int i = 0; i < o->db->ntables; i++)
        o->cursor_at_send[i] = pull ? edge_pull_cursor(pull, o->db->tables[i]) : 0;
    uint64_t base = 0, last = 0;
    uint64_t bad_seq[64];
    char bad_why[64][160];
    int nbad = 0;
    sqlite3_bind_int64(o->select, 1, o->cfg->batch_max);
    int rc;
    while ((rc = sqlite3_step(o->select)) == SQLITE_ROW) {
        const sync_table *t;
        char why[160];
        uint64_t seq = (uint64_t)sqlite3_column_int64(o->select, 0);
        if (read_row(o, o->select, &t, why, sizeof why) != SYNC_OK) {
            if (nbad < 64) {
                bad_seq[nbad] = seq;
                snprintf(bad_why[nbad], sizeof bad_why[nbad], "%s", why);
                nbad++;
                continue;
            }
            break; /* handle these first, the rest next round */
        }
        if (o->nsent == 0)
            base = seq;
        size_t before = o->recs.len;
        int erc = sync_record_encode(&o->recs, &o->rec, base);
        if (erc == SYNC_ERR_INVAL && nbad < 64) {
            /* Something read_row did not catch; set this change aside, keep the rest. */
            o->recs.len = before;
            o->recs.err = SYNC_OK;
            bad_seq[nbad] = seq;
            snprintf(bad_why[nbad], sizeof bad_why[nbad], "cannot be encoded (%s)",
                     sync_strerror(erc));
            nbad++;
            continue;
        }
        if (erc != SYNC_OK) {
            sqlite3_reset(o->select);
            sync_error("outbox: encoding a batch failed: %s", sync_strerror(erc));
            return erc;
        }
        if (o->recs.len > (size_t)o->cfg->batch_bytes && o->nsent > 0) {
            o->recs.len = before; /* this record starts the next batch */
            break;
        }
        if (remember(o, seq, o->rec.op, (uint64_t)sqlite3_column_int64(o->select, 6), t,
                     &o->rec.key) != SYNC_OK) {
            sqlite3_reset(o->select);
            return SYNC_ERR_NOMEM;
        }
        last = seq;
    }
    sqlite3_reset(o->select);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        sync_error("outbox: reading the outbox: %s", sqlite3_errmsg(o->db->db));
    for (int i = 0; i < nbad; i++) {
        sync_error("outbox: change #%llu cannot be sent and was moved to _sync_dead: %s",
                   (unsigned long long)bad_seq[i], bad_why[i]);
        bury(o, bad_seq[i], bad_seq[i], bad_why[i], strlen(bad_why[i]));
    }
    if (o->nsent == 0)
        return 0;
    settle_keys(o);
    sync_batch_hdr h = {
        .schema_version = sync_schema_version(o->db->schema),
        .device = o->cfg->device,
        .device_len = strlen(o->cfg->device),
        .base_seq = base,
        .nrecords = o->nsent,
    };
    sync_cbuf_reset(&o->out);
    sync_batch_encode_hdr(&o->out, &h);
    if (o->out.err == SYNC_OK) {
        /* The records were encoded before their count was known; append them after the header. */
        size_t need = o->out.len + o->recs.len;
        if (need > o->out.cap) {
            uint8_t *nd = realloc(o->out.data, need);
            if (!nd)
                return SYNC_ERR_NOMEM;
            o->out.data = nd;
            o->out.cap = need;
        }
        memcpy(o->out.data + o->out.len, o->recs.data, o->recs.len);
        o->out.len = need;
    }
    if (o->out.err != SYNC_OK)
        return SYNC_ERR_NOMEM;
    o->inflight = 1;
    o->base_seq = base;
    o->last_seq = last;
    o->stats.batches_sent++;
    sqlite3_bind_int64(o->save_hlc, 1, (sqlite3_int64)o->hlc.last);
    sqlite3_step(o->save_hlc);
    sqlite3_reset(o->save_hlc);
    *payload = o->out.data;
    *len = o->out.len;
    return 1;
}

int edge_outbox_inflight(edge_outbox *o, const uint8_t **payload, size_t *len, uint64_t *base_seq,
                         size_t *nrecords)
{
    if (!o->inflight)
        return 0;
    *payload = o->out.data;
    *len = o->out.len;
    *base_seq = o->base_seq;
    *nrecords = o->nsent;
    return 1;
}

static const sent_rec *find_sent(const edge_outbox *o, uint64_t seq)
{
    size_t lo = 0, hi = o->nsent;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (o->sent[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < o->nsent && o->sent[lo].seq == seq ? &o->sent[lo] : NULL;
}

static int on_ack_hdr(void *ctx, const sync_ack_hdr *h)
{
    edge_outbox *o = ctx;
    if (!o->inflight || h->base_seq != o->base_seq) {
        sync_debug("outbox: ignoring ack for batch %llu (in flight: %llu)",
                   (unsigned long long)h->base_seq,
                   (unsigned long long)(o->inflight ? o->base_seq : 0));
        return 1; /* stop decoding; not an error */
    }
    if (h->status == SYNC_ACK_REJECTED) {
        sync_error("outbox: the cloud rejected batch %llu..%llu (%zu changes): %.*s; they were "
                   "moved to _sync_dead",
                   (unsigned long long)o->base_seq, (unsigned long long)o->last_seq, o->nsent,
                   (int)h->reason_len, h->reason);
        o->stats.rejected += o->nsent;
        if (bury(o, o->base_seq, o->last_seq, h->reason, h->reason_len) != SYNC_OK) {
            o->ack_failed = 1;
            return SYNC_ERR_DB;
        }
        o->ack_done = 1;
        return 0;
    }
    /* Drop the batch's rows first, so "pending" below means later local changes only. */
    sqlite3_bind_int64(o->delete_range, 1, (sqlite3_int64)o->base_seq);
    sqlite3_bind_int64(o->delete_range, 2, (sqlite3_int64)o->last_seq);
    int rc = sqlite3_step(o->delete_range);
    sqlite3_reset(o->delete_range);
    if (rc != SQLITE_DONE) {
        o->ack_failed = 1;
        return SYNC_ERR_DB;
    }
    o->stats.records_acked += o->nsent;
    o->ack_done = 1;
    return 0;
}

static int on_ack_result(void *ctx, const sync_ack_result *r)
{
    edge_outbox *o = ctx;
    sent_rec *s = (sent_rec *)find_sent(o, r->seq);
    if (!s) {
        sync_warn("outbox: ack names change #%llu that was not in the batch",
                  (unsigned long long)r->seq);
        return 0;
    }
    int rc = SYNC_OK;
    switch (r->result) {
    case SYNC_R_APPLIED:
    case SYNC_R_WON: {
        if (s->stale)
            break;
        uint64_t held;
        rc = edge_db_version(o->db, s->t, &s->key, &held);
        /* Our values are the row's only if nothing came between: no later version seen while
         * the change was pending, and for an update (which keeps the other columns) exactly
         * the version below it held here. */
        int behind = held > r->version || (s->op == SYNC_OP_UPDATE && held + 1 != r->version);
        if (rc == SYNC_OK && behind) {
            rc = edge_replica_stale(o->rep, s->t, &s->key, o->cursor_at_send[edge_slot(o, s->t)]);
            for (size_t i = 0; i < o->nsent; i++)
                if (o->sent[i].t == s->t && sync_value_equal(&o->sent[i].key, &s->key))
                    o->sent[i].stale = 1;
        } else if (rc == SYNC_OK) {
            rc = edge_db_set_version(o->db, s->t, &s->key, r->version);
        }
        break;
    }
    case SYNC_R_LOST:
    case SYNC_R_MERGED:
    case SYNC_R_PENDING:
    case SYNC_R_DUPLICATE:
        /* The row may not be what we wrote (the server's value won, a merge of both, the
         * server's value kept until a person decides, or an outcome whose first ack was lost):
         * take the cloud's row so this replica converges. */
        if (r->result == SYNC_R_LOST)
            o->stats.lost++;
        {
            /* Later changes of this batch to the same row are ours and newer than this state. */
            uint64_t later = 0;
            for (const sent_rec *x = s + 1; x < o->sent + o->nsent; x++)
                if (x->t == s->t && sync_value_equal(&x->key, &s->key))
                    later |= x->mask;
            rc = edge_replica_put(o->rep, s->t, &s->key,
                                  r->deleted ? SYNC_OP_DELETE : SYNC_OP_INSERT, r->cols, r->ncols,
                                  r->version, 1, o->cursor_at_send[edge_slot(o, s->t)], later);
        }
        break;
    case SYNC_R_REJECTED:
        /* Set aside before the batch's rows were dropped (see edge_outbox_on_ack); the table is
         * pulled again so the refused local change gives way to the cloud's state. */
        rc = edge_replica_refused(o->rep, s->t, &s->key);
        break;
    }
    if (rc != SYNC_OK) {
        o->ack_failed = 1;
        return rc;
    }
    return 0;
}

/* Pass 1 helpers: skip acks of other batches, collect per-record refusals. */
static int on_ack_stale(void *ctx, const sync_ack_hdr *h)
{
    edge_outbox *o = ctx;
    return !o->inflight || h->base_seq != o->base_seq || h->status != SYNC_ACK_OK;
}

static int on_ack_rejected(void *ctx, const sync_ack_result *r)
{
    edge_outbox *o = ctx;
    if (r->result != SYNC_R_REJECTED || !find_sent(o, r->seq))
        return 0;
    if (o->nrejected == o->rejected_cap) {
        size_t cap = o->rejected_cap ? o->rejected_cap * 2 : 16;
        struct refused *nr = realloc(o->rejected, cap * sizeof *nr);
        if (!nr) {
            o->ack_failed = 1;
            return SYNC_ERR_NOMEM;
        }
        o->rejected = nr;
        o->rejected_cap = cap;
    }
    struct refused *x = &o->rejected[o->nrejected++];
    x->seq = r->seq;
    snprintf(x->reason, sizeof x->reason, "%.*s", (int)r->reason_len, r->reason);
    return 0;
}

int edge_outbox_on_ack(edge_outbox *o, const void *payload, size_t len, int *done, char *err,
                       size_t errlen)
{
    *done = 0;
    o->ack_failed = 0;
    o->ack_done = 0;
    /* Pass 1: changes refused one by one go to _sync_dead with their reason, while their rows
     * are still in the outbox. */
    o->nrejected = 0;
    int rc = sync_ack_decode(payload, len, &o->lim, on_ack_stale, on_ack_rejected, o, NULL, 0);
    if (rc == SYNC_OK && o->nrejected > 0 && o->ack_failed == 0) {
        for (size_t i = 0; i < o->nrejected; i++) {
            sync_error("outbox: the cloud refused change #%llu: %s; moved to _sync_dead",
                       (unsigned long long)o->rejected[i].seq, o->rejected[i].reason);
            if (bury(o, o->rejected[i].seq, o->rejected[i].seq, o->rejected[i].reason,
                     strlen(o->rejected[i].reason)) != SYNC_OK)
                return sync_seterr(err, errlen, SYNC_ERR_DB, "setting refused changes aside: %s",
                                   sqlite3_errmsg(o->db->db));
            o->stats.rejected++;
        }
    }
    /* Pass 2: drop the batch's rows and take in the results. */
    rc = sync_ack_decode(payload, len, &o->lim, on_ack_hdr, on_ack_result, o, err, errlen);
    if (o->ack_failed)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "applying an ack: %s",
                           sqlite3_errmsg(o->db->db));
    if (rc == 1)
        return SYNC_OK; /* not ours */
    if (rc != SYNC_OK)
        return rc;
    if (o->ack_done) {
        o->inflight = 0;
        *done = 1;
        /* Rows that had to lag while these changes were pending can now be re-read. */
        if (o->rep && edge_replica_settle(o->rep) != SYNC_OK)
            return sync_seterr(err, errlen, SYNC_ERR_DB, "re-reading rows: %s",
                               sqlite3_errmsg(o->db->db));
    }
    return SYNC_OK;
}

void edge_outbox_stats_get(const edge_outbox *o, edge_outbox_stats *s)
{
    *s = o->stats;
}
