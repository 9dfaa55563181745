/* replica.c - applying downstream changes to local tables (see replica.h). */
#include "replica.h"

#include "pull.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"
#include "sync/log.h"
#include "sync/sqlutil.h"

typedef struct table_stmts {
    sqlite3_stmt *update; /* all columns + a mask parameter choosing which ones to set */
    sqlite3_stmt *insert; /* all columns (those not set are NULL) */
    sqlite3_stmt *del;
} table_stmts;

struct edge_replica {
    edge_db *db;
    table_stmts st[EDGE_MAX_TABLES]; /* by position in db->tables */
    sync_limits lim;
    unsigned long applied, skipped;
    uint64_t max_hlc;
    const sync_table *cur; /* table of the delta being decoded (NULL: not synced here) */
    const char *stream;    /* its stream from the topic: "table" or "table/part" (NULL: table) */
    int cur_stream;        /* its stream in the pull tracker (-1: none) */
    int cur_part;          /* 1: the stream is one partition of the table (leaves allowed) */
    uint64_t prev, last;   /* its prev_cseq and the largest cseq in it */
    uint64_t cseq_now;     /* cseq of the change being applied (0: not from a delta) */
    uint64_t missing;      /* smallest cseq of a change whose row is missing here (0: none) */
    struct edge_pull *pull;
    const sync_table *quiet; /* table with nothing pending or dirty in this transaction (hint) */
    int failed; /* a database error happened inside a decode callback */
    char errbuf[256];
};

static int table_slot(const edge_replica *r, const sync_table *t)
{
    for (int i = 0; i < r->db->ntables; i++)
        if (r->db->tables[i] == t)
            return i;
    return -1;
}

int edge_replica_new(edge_db *db, edge_replica **out, char *err, size_t errlen)
{
    *out = NULL;
    edge_replica *r = calloc(1, sizeof *r);
    if (!r)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    r->db = db;
    sync_limits_default(&r->lim);
    int rc = SYNC_OK;
    for (int i = 0; i < db->ntables && rc == SYNC_OK; i++) {
        const sync_table *t = db->tables[i];
        char sql[16384];
        /* UPDATE first (it checks constraints only on the row as it ends up, so a change of some
         * columns never trips a NOT NULL of another); INSERT when no row has the key. */
        size_t at = (size_t)snprintf(sql, sizeof sql, "UPDATE \"%s\" SET ", t->name);
        for (int c = 0; c < t->ncols; c++)
            at += (size_t)snprintf(sql + at, sizeof sql - at,
                                   "%s\"%s\" = CASE WHEN (?%d >> %d) & 1 THEN ?%d ELSE \"%s\" END",
                                   c ? ", " : "", t->cols[c].name, t->ncols + 1, c, c + 1,
                                   t->cols[c].name);
        at += (size_t)snprintf(sql + at, sizeof sql - at, " WHERE \"%s\" = ?%d",
                               t->cols[t->key].name, t->key + 1);
        if (at >= sizeof sql)
            rc = sync_seterr(err, errlen, SYNC_ERR_INVAL, "table '%s': SQL too long", t->name);
        if (rc == SYNC_OK)
            rc = sync_sql_prepare(db->db, sql, &r->st[i].update, err, errlen);
        at = (size_t)snprintf(sql, sizeof sql, "INSERT INTO \"%s\"(", t->name);
        for (int c = 0; c < t->ncols; c++)
            at += (size_t)snprintf(sql + at, sizeof sql - at, "%s\"%s\"", c ? "," : "",
                                   t->cols[c].name);
        at += (size_t)snprintf(sql + at, sizeof sql - at, ") VALUES (");
        for (int c = 0; c < t->ncols; c++)
            at += (size_t)snprintf(sql + at, sizeof sql - at, "%s?%d", c ? "," : "", c + 1);
        snprintf(sql + at, sizeof sql - at, ")");
        if (rc == SYNC_OK)
            rc = sync_sql_prepare(db->db, sql, &r->st[i].insert, err, errlen);
        if (rc == SYNC_OK) {
            snprintf(sql, sizeof sql, "DELETE FROM \"%s\" WHERE \"%s\" = ?", t->name,
                     t->cols[t->key].name);
            rc = sync_sql_prepare(db->db, sql, &r->st[i].del, err, errlen);
        }
    }
    if (rc != SYNC_OK) {
        edge_replica_free(r);
        return rc;
    }
    *out = r;
    return SYNC_OK;
}

void edge_replica_free(edge_replica *r)
{
    if (!r)
        return;
    for (int i = 0; i < EDGE_MAX_TABLES; i++) {
        sqlite3_finalize(r->st[i].update);
        sqlite3_finalize(r->st[i].insert);
        sqlite3_finalize(r->st[i].del);
    }
    free(r);
}

int edge_replica_put(edge_replica *r, const sync_table *t, const sync_value *key, sync_op op,
                     const sync_colval *cols, size_t ncols, uint64_t version, int force,
                     uint64_t reread_from, uint64_t also_pending)
{
    int slot = table_slot(r, t);
    if (slot < 0)
        return SYNC_ERR_SCHEMA;
    uint64_t held;
    int left; /* held is the version at which the row left a partition received here */
    if (edge_db_version_left(r->db, t, key, &held, &left) != SYNC_OK)
        return SYNC_ERR_DB;
    int quiet = r->quiet == t;
    if (sync_log_enabled(SYNC_LOG_DEBUG)) {
        uint64_t pend = 0;
        edge_db_pending(r->db, t, key, &pend);
        char k[72];
        if (key->type == SYNC_INT)
            snprintf(k, sizeof k, "%lld", (long long)key->u.i);
        else
            snprintf(k, sizeof k, "'%.*s'", (int)(key->u.b.n > 64 ? 64 : key->u.b.n),
                     (const char *)key->u.b.p);
        sync_debug("replica %s: %s key %s op %d version %llu (held %llu, pending %llx%s)",
                   r->db->device, t->name, k, (int)op, (unsigned long long)version,
                   (unsigned long long)held, (unsigned long long)pend, force ? ", forced" : "");
    }
    /* After a leave at V, the move into another partition received here comes with V too. */
    if (version < held || (version == held && !force && !left)) {
        r->skipped++;
        return SYNC_OK;
    }
    if (op == SYNC_OP_UPDATE && !force && (left || version != held + 1)) {
        /* A partial change on top of a version we do not hold: columns changed by the versions
         * in between would be missing. Take the whole row from a pull instead; the version is
         * not recorded, so the pulled row is not taken for old news. */
        if (r->cseq_now && (r->missing == 0 || r->cseq_now < r->missing))
            r->missing = r->cseq_now;
        r->skipped++;
        return SYNC_OK;
    }
    uint64_t pending = 0;
    if (!quiet && edge_db_pending(r->db, t, key, &pending) != SYNC_OK)
        return SYNC_ERR_DB;
    pending |= also_pending;
    int rc = SQLITE_DONE;
    /* Columns of this change that local pending changes keep from being applied: the row will
     * then lag the version recorded below, and is re-read once nothing is pending. */
    uint64_t setcols = 0;
    for (size_t i = 0; i < ncols; i++) {
        int c = sync_table_col(t, cols[i].name, cols[i].name_len);
        if (c >= 0 && c != t->key)
            setcols |= 1ull << c;
    }
    int gone = SYNC_OP_NOCOLS(op); /* a delete or a leave: the row goes */
    int partial = pending != 0 && (gone || pending == ~0ull || (pending & setcols));
    if (partial && edge_db_mark_dirty(r->db, t, key, reread_from) != SYNC_OK)
        return SYNC_ERR_DB;
    if (!partial && op != SYNC_OP_UPDATE && !quiet && edge_db_clear_dirty(r->db, t, key) != SYNC_OK)
        return SYNC_ERR_DB;
    if (gone) {
        /* A local change still on its way wins locally until the cloud has decided on it. */
        if (pending == 0) {
            sync_sql_bind(r->st[slot].del, 1, key);
            rc = sqlite3_step(r->st[slot].del);
            sqlite3_reset(r->st[slot].del);
        }
    } else if (pending != ~0ull) {
        sqlite3_stmt *up = r->st[slot].update, *ins = r->st[slot].insert;
        uint64_t mask = 0;
        sqlite3_clear_bindings(up);
        sqlite3_clear_bindings(ins);
        for (size_t i = 0; i < ncols; i++) {
            int c = sync_table_col(t, cols[i].name, cols[i].name_len);
            if (c < 0 || c == t->key || (pending & (1ull << c)))
                continue;
            sync_value v = cols[i].v;
            if (sync_column_check(t, c, &v, NULL, 0) != SYNC_OK)
                continue;
            sync_sql_bind(up, c + 1, &v);
            sync_sql_bind(ins, c + 1, &v);
            mask |= 1ull << c;
        }
        sync_sql_bind(up, t->key + 1, key);
        sync_sql_bind(ins, t->key + 1, key);
        sqlite3_bind_int64(up, t->ncols + 1, (sqlite3_int64)mask);
        /* A whole row this replica has no version of is most likely new here (a bootstrap is
         * all such rows): try the insert first, and update only if the row exists after all. */
        int inserted = 0;
        if (held == 0 && pending == 0 && op == SYNC_OP_INSERT) {
            rc = sqlite3_step(ins);
            sqlite3_reset(ins);
            inserted = rc == SQLITE_DONE;
        }
        if (!inserted) {
            rc = sqlite3_step(up);
            sqlite3_reset(up);
        }
        if (!inserted && rc == SQLITE_DONE && sqlite3_changes(r->db->db) == 0 && pending == 0) {
            rc = sqlite3_step(ins);
            sqlite3_reset(ins);
            if (rc == SQLITE_CONSTRAINT) {
                /* A change to a row this replica does not hold (it missed the insert): it needs
                 * the full row, which a pull brings. The version is not recorded, so the pulled
                 * row is not taken for old news. */
                sync_debug("replica: version %llu of a '%s' row changes columns of a row missing "
                           "here; pulling the table",
                           (unsigned long long)version, t->name);
                if (r->cseq_now && (r->missing == 0 || r->cseq_now < r->missing))
                    r->missing = r->cseq_now;
                r->skipped++;
                return SYNC_OK;
            }
        }
    }
    if (rc != SQLITE_DONE) {
        sync_error("replica: applying to '%s' failed: %s", t->name, sqlite3_errmsg(r->db->db));
        return SYNC_ERR_DB;
    }
    if ((op == SYNC_OP_LEAVE ? edge_db_set_left(r->db, t, key, version)
                             : edge_db_set_version(r->db, t, key, version)) != SYNC_OK)
        return SYNC_ERR_DB;
    r->applied++;
    return SYNC_OK;
}

int edge_replica_hint(edge_replica *r, const sync_table *t)
{
    r->quiet = NULL;
    int quiet = 0;
    if (t && edge_db_table_quiet(r->db, t, &quiet) != SYNC_OK)
        return SYNC_ERR_DB;
    if (quiet)
        r->quiet = t;
    return SYNC_OK;
}

/* The stream of the delta: its topic names the table (which must be the payload's) and, for a
 * partition's delta, the partition. Sets r->cur to NULL for a stream not received here. */
static void delta_stream(edge_replica *r, const sync_delta_hdr *h)
{
    r->cur_stream = -1;
    r->cur_part = 0;
    r->cur = edge_db_table(r->db, h->table, h->table_len);
    if (!r->cur)
        return;
    const char *part = NULL;
    if (r->stream) {
        size_t n = strlen(r->cur->name);
        if (strncmp(r->stream, r->cur->name, n) != 0 || (r->stream[n] && r->stream[n] != '/')) {
            sync_warn("replica: ignoring a delta of table '%s' on the stream '%s'", r->cur->name,
                      r->stream);
            r->cur = NULL;
            return;
        }
        part = r->stream[n] ? r->stream + n + 1 : NULL;
    }
    int mode = edge_db_recv_mode(r->db, edge_db_slot(r->db, r->cur));
    /* Not received here (policy.h: the broker's ACL should not have sent it), or received the
     * other way (a table received by partitions ignores its whole-table deltas, and the other
     * way round). */
    if (mode != (part ? EDGE_RECV_PARTS : EDGE_RECV_WHOLE)) {
        r->cur = NULL;
        return;
    }
    if (r->pull) {
        r->cur_stream = edge_pull_find(r->pull, r->cur, part);
        if (r->cur_stream < 0)
            r->cur = NULL; /* a partition not received */
    } else if (part) {
        r->cur = NULL; /* partitions need the pull tracker's streams */
    }
    r->cur_part = part != NULL;
}

static int on_delta_hdr(void *ctx, const sync_delta_hdr *h)
{
    edge_replica *r = ctx;
    delta_stream(r, h);
    if (r->cur && h->nchanges > 1 && edge_replica_hint(r, r->cur) != SYNC_OK) {
        r->failed = 1;
        return SYNC_ERR_DB;
    }
    r->prev = h->prev_cseq;
    r->last = 0;
    r->missing = 0;
    if (!r->cur)
        sync_debug("replica: ignoring delta for table '%.*s'%s%s (not received here)",
                   (int)h->table_len, h->table, r->stream ? " on " : "",
                   r->stream ? r->stream : "");
    return 0;
}

static int on_change(void *ctx, const sync_change *c)
{
    edge_replica *r = ctx;
    if (c->hlc > r->max_hlc)
        r->max_hlc = c->hlc;
    if (c->cseq > r->last)
        r->last = c->cseq;
    if (!r->cur)
        return 0;
    if (c->op == SYNC_OP_LEAVE && !r->cur_part) {
        r->skipped++; /* a leave belongs to a partition's stream */
        return 0;
    }
    r->cseq_now = c->cseq;
    int rc = edge_replica_put(r, r->cur, &c->key, c->op, c->cols, c->ncols, c->version, 0,
                              c->cseq ? c->cseq - 1 : 0, 0);
    r->cseq_now = 0;
    if (rc != SYNC_OK) {
        r->failed = 1;
        return rc;
    }
    return 0;
}

int edge_replica_apply_stream(edge_replica *r, const char *stream, const void *payload, size_t len,
                              char *err, size_t errlen)
{
    r->cur = NULL;
    r->failed = 0;
    r->stream = stream;
    int rc = sync_delta_decode(payload, len, &r->lim, on_delta_hdr, on_change, r, err, errlen);
    r->quiet = NULL;
    r->stream = NULL;
    if (rc != SYNC_OK && r->failed)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "applying a delta: %s",
                           sqlite3_errmsg(r->db->db));
    if (rc == SYNC_OK && r->cur && r->pull &&
        (edge_pull_on_delta(r->pull, r->cur_stream, r->prev, r->last) != SYNC_OK ||
         (r->missing &&
          edge_pull_rewind_stream(r->pull, r->cur_stream, r->missing - 1) != SYNC_OK)))
        return sync_seterr(err, errlen, SYNC_ERR_DB, "saving the cursor: %s",
                           sqlite3_errmsg(r->db->db));
    return rc;
}

int edge_replica_refused(edge_replica *r, const sync_table *t, const sync_value *key)
{
    int slot = table_slot(r, t);
    if (slot < 0)
        return SYNC_ERR_SCHEMA;
    sync_sql_bind(r->st[slot].del, 1, key);
    int rc = sqlite3_step(r->st[slot].del);
    sqlite3_reset(r->st[slot].del);
    if (rc != SQLITE_DONE || edge_db_forget(r->db, t, key) != SYNC_OK)
        return SYNC_ERR_DB;
    return r->pull ? edge_pull_rewind(r->pull, t, 0) : SYNC_OK;
}

int edge_replica_settle(edge_replica *r)
{
    /* Collect first: the rows are deleted below. There are few, and usually none. */
    struct dirty {
        const sync_table *t;
        sync_value key;
        uint8_t bytes[256];
        uint64_t after;
    } d[64];
    int n = 0, rc;
    sqlite3_stmt *q = r->db->dirty_all;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *tbl = (const char *)sqlite3_column_text(q, 0);
        const sync_table *t = tbl ? edge_db_table(r->db, tbl, strlen(tbl)) : NULL;
        if (!t)
            continue;
        if (n == 64)
            break; /* the rest is settled on the next call */
        sync_value k;
        sync_sql_column(q, 1, &k);
        if ((k.type == SYNC_TEXT || k.type == SYNC_BLOB) && k.u.b.n > sizeof d[n].bytes)
            continue; /* huge keys: handled by a whole-table pull below */
        d[n].t = t;
        d[n].key = k;
        if (k.type == SYNC_TEXT || k.type == SYNC_BLOB) {
            memcpy(d[n].bytes, k.u.b.p, k.u.b.n);
            d[n].key.u.b.p = d[n].bytes;
        }
        d[n].after = (uint64_t)sqlite3_column_int64(q, 2);
        n++;
    }
    sqlite3_reset(q);
    for (int i = 0; i < n; i++) {
        uint64_t pending;
        if (edge_db_pending(r->db, d[i].t, &d[i].key, &pending) != SYNC_OK)
            return SYNC_ERR_DB;
        if (pending)
            continue;
        sync_debug("replica %s: re-reading a '%s' row that lags its version, from %llu",
                   r->db->device, d[i].t->name, (unsigned long long)d[i].after);
        if (edge_db_forget(r->db, d[i].t, &d[i].key) != SYNC_OK ||
            edge_db_clear_dirty(r->db, d[i].t, &d[i].key) != SYNC_OK)
            return SYNC_ERR_DB;
        if (r->pull && edge_pull_rewind(r->pull, d[i].t, d[i].after) != SYNC_OK)
            return SYNC_ERR_DB;
    }
    return SYNC_OK;
}

struct edge_pull *edge_replica_pull(const edge_replica *r)
{
    return r->pull;
}

int edge_replica_stale(edge_replica *r, const sync_table *t, const sync_value *key, uint64_t cursor)
{
    uint64_t pending;
    if (edge_db_pending(r->db, t, key, &pending) != SYNC_OK)
        return SYNC_ERR_DB;
    if (pending)
        return SYNC_OK; /* the answer to the later change will settle the row */
    sync_debug("replica %s: %s row was left behind a newer version while our change was on its "
               "way; pulling from %llu",
               r->db->device, t->name, (unsigned long long)cursor);
    /* No version is held for the row until the pull brings its current state, so that state is
     * not mistaken for old news. */
    if (edge_db_forget(r->db, t, key) != SYNC_OK)
        return SYNC_ERR_DB;
    return r->pull ? edge_pull_rewind(r->pull, t, cursor) : SYNC_OK;
}

void edge_replica_set_pull(edge_replica *r, struct edge_pull *p)
{
    r->pull = p;
}

unsigned long edge_replica_applied(const edge_replica *r)
{
    return r->applied;
}

unsigned long edge_replica_skipped(const edge_replica *r)
{
    return r->skipped;
}

uint64_t edge_replica_max_hlc(const edge_replica *r)
{
    return r->max_hlc;
}
