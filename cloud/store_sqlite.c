/* store_sqlite.c - the embedded SQLite backend of the cloud store (see store.h; the ops table
 * and the constructors are at the end).
 *
 * Statements are prepared once per table at open (those of a partitioned table's partition
 * queries when it is declared partitioned). Values read by row_get are copied into a scratch
 * buffer so they stay valid while the same row is written back.
 *
 * Leaves of partitioned tables are kept in one table, _sync_moves(tbl, part, pk, ...), whose
 * part and pk columns have no type affinity: a value is stored and compared as it was bound,
 * so the integer 12 and the text '12' are different partitions. The compaction horizon of each
 * partition is kept the same way, in _sync_part_compacted(tbl, part, cseq).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"
#include "sync/checksum.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"
#include "sync/sqlutil.h"

typedef struct table_st {
    sqlite3_stmt *get, *put, *maxcseq, *pull, *count_after;
    /* Snapshot pages: from the first key or after one, and their counts. */
    sqlite3_stmt *keys_first, *keys_after, *count_all, *count_keys_after;
    sqlite3_stmt *tomb_scan, *tomb_del; /* compaction */
    uint64_t compacted;                 /* tombstones with cseq <= this may be gone */
    uint64_t floor;                     /* highest version of a compacted tombstone */
    int part_col;                       /* partition column (schema index), or -1 */
    sqlite3_stmt *part_max, *leave_put, *part_count, *part_pull, *moves_pull, *part_values,
        *moves_scan, *moves_del, *part_cmp_get, *tomb_parts,
        *moves_parts; /* partition queries (sq_partition prepares them) */
} table_st;

typedef struct sq_store {
    cloud_store base; /* first: the ops table (store_backend.h) */
    sqlite3 *db;
    char *desc; /* "SQLite PATH", for cloud_store_describe */
    const sync_schema *schema;
    table_st *tst; /* one per schema table */
    sqlite3_stmt *begin, *begin_read, *commit, *rollback, *savepoint, *release, *rollback_to,
        *dev_get, *dev_put, *conflict, *save_cseq, *compacted_put, *conflicts_sel, *devices_sel,
        *counts_sel,
        *conflict_done;
    uint64_t cseq;    /* last handed out */
    uint64_t cseq_tx; /* value at BEGIN, restored by a rollback */
    uint64_t cseq_sp; /* value at SAVEPOINT */
    uint8_t *scratch; /* copies of text/blob values from row_get */
    size_t scratch_cap;
    char err[512]; /* a message of this file's own (a partition call refused), or "" */
} sq_store;

static const char *sql_type(sync_vtype t)
{
    return t == SYNC_INT ? "INTEGER" : t == SYNC_REAL ? "REAL" : t == SYNC_TEXT ? "TEXT" : "BLOB";
}

static const cloud_store_ops sq_ops;

#define SQLCAT(buf, at, ...)                                                                       \
    do {                                                                                           \
        int w_ = snprintf((buf) + (at), sizeof(buf) - (at), __VA_ARGS__);                          \
        (at) = (w_ < 0 || (size_t)w_ >= sizeof(buf) - (at)) ? sizeof(buf) - 1 : (at) + (size_t)w_; \
    } while (0)

/* Creates a table, or adds the schema's columns it lacks (a schema that grew). */
static int ensure_table(sq_store *st, const sync_table *t, char *err, size_t errlen)
{
    char sql[16384];
    size_t at = 0;
    SQLCAT(sql, at, "CREATE TABLE IF NOT EXISTS \"%s\"(", t->name);
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\" %s%s, ", t->cols[i].name, sql_type(t->cols[i].type),
               i == t->key ? " PRIMARY KEY NOT NULL" : "");
    SQLCAT(sql, at,
           "_version INTEGER NOT NULL, _deleted INTEGER NOT NULL DEFAULT 0, _origin TEXT NOT NULL,"
           " _hlc INTEGER NOT NULL, _cseq INTEGER NOT NULL, _colver BLOB, _conflict INTEGER,"
           " _mtime INTEGER NOT NULL DEFAULT 0);"
           "CREATE INDEX IF NOT EXISTS \"_sync_%s_cseq\" ON \"%s\"(_cseq);",
           t->name, t->name);
    int rc = sync_sql_exec(st->db, sql, "creating a table", err, errlen);
    if (rc != SYNC_OK)
        return rc;
    /* Stores made before these bookkeeping columns existed get them. A tombstone without an
     * _mtime (0) counts as old enough to compact. */
    static const char *const added[] = {"_colver BLOB", "_conflict INTEGER",
                                        "_mtime INTEGER NOT NULL DEFAULT 0"};
    for (int i = 0; i < 3; i++) {
        char probe[256], col[32];
        sscanf(added[i], "%31s", col);
        snprintf(probe, sizeof probe, "SELECT %s FROM \"%s\" LIMIT 0", col, t->name);
        sqlite3_stmt *p = NULL;
        int exists = sqlite3_prepare_v2(st->db, probe, -1, &p, NULL) == SQLITE_OK;
        sqlite3_finalize(p);
        if (exists)
            continue;
        snprintf(sql, sizeof sql, "ALTER TABLE \"%s\" ADD COLUMN %s", t->name, added[i]);
        if ((rc = sync_sql_exec(st->db, sql, "adding a column", err, errlen)) != SYNC_OK)
            return rc;
    }
    /* Compaction finds old tombstones without scanning live rows. */
    snprintf(sql, sizeof sql,
             "CREATE INDEX IF NOT EXISTS \"_sync_%s_tomb\" ON \"%s\"(_mtime) WHERE _deleted = 1",
             t->name, t->name);
    if ((rc = sync_sql_exec(st->db, sql, "creating an index", err, errlen)) != SYNC_OK)
        return rc;
    for (int i = 0; i < t->ncols; i++) {
        /* Asked of the table's definition: a probe like SELECT "col" would succeed for a
         * missing column, which SQLite then reads as the string 'col'. */
        char probe[256];
        snprintf(probe, sizeof probe,
                 "SELECT count(*) FROM pragma_table_info('%s') WHERE name = '%s' COLLATE NOCASE",
                 t->name, t->cols[i].name);
        sqlite3_stmt *p = NULL;
        int exists = sqlite3_prepare_v2(st->db, probe, -1, &p, NULL) == SQLITE_OK &&
                     sqlite3_step(p) == SQLITE_ROW && sqlite3_column_int(p, 0) > 0;
        sqlite3_finalize(p);
        if (exists)
            continue;
        if (i == t->key)
            return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                               "table '%s' exists with another key column than '%s'", t->name,
                               t->cols[i].name);
        snprintf(sql, sizeof sql, "ALTER TABLE \"%s\" ADD COLUMN \"%s\" %s", t->name,
                 t->cols[i].name, sql_type(t->cols[i].type));
        sync_notice("store: adding column '%s' to table '%s'", t->cols[i].name, t->name);
        if ((rc = sync_sql_exec(st->db, sql, "adding a column", err, errlen)) != SYNC_OK)
            return rc;
    }
    return SYNC_OK;
}

static int prepare_table(sq_store *st, const sync_table *t, table_st *ts, char *err,
                         size_t errlen)
{
    char sql[16384];
    size_t at = 0;
    ts->part_col = -1;
    SQLCAT(sql, at, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
    SQLCAT(sql, at,
           "_version, _deleted, _origin, _hlc, _cseq, _colver, _conflict FROM \"%s\" WHERE "
           "\"%s\" = ?",
           t->name, t->cols[t->key].name);
    int rc = sync_sql_prepare(st->db, sql, &ts->get, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    at = 0;
    SQLCAT(sql, at, "INSERT INTO \"%s\"(", t->name);
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
    SQLCAT(sql, at, "_version, _deleted, _origin, _hlc, _cseq, _colver, _conflict, _mtime) VALUES (");
    for (int i = 0; i < t->ncols + 8; i++)
        SQLCAT(sql, at, "%s?%d", i ? ", " : "", i + 1);
    SQLCAT(sql, at, ") ON CONFLICT(\"%s\") DO UPDATE SET ", t->cols[t->key].name);
    for (int i = 0; i < t->ncols; i++)
        if (i != t->key)
            SQLCAT(sql, at, "\"%s\" = excluded.\"%s\", ", t->cols[i].name, t->cols[i].name);
    SQLCAT(sql, at,
           "_version = excluded._version, _deleted = excluded._deleted, _origin = "
           "excluded._origin, _hlc = excluded._hlc, _cseq = excluded._cseq, _colver = "
           "excluded._colver, _conflict = excluded._conflict, _mtime = excluded._mtime");
    if ((rc = sync_sql_prepare(st->db, sql, &ts->put, err, errlen)) != SYNC_OK)
        return rc;
    snprintf(sql, sizeof sql, "SELECT max(_cseq) FROM \"%s\"", t->name);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->maxcseq, err, errlen)) != SYNC_OK)
        return rc;
    at = 0;
    SQLCAT(sql, at, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
    SQLCAT(sql, at,
           "_version, _deleted, _origin, _hlc, _cseq FROM \"%s\" WHERE _cseq > ?1 ORDER BY _cseq "
           "LIMIT ?2",
           t->name);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->pull, err, errlen)) != SYNC_OK)
        return rc;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\" WHERE _cseq > ?", t->name);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->count_after, err, errlen)) != SYNC_OK)
        return rc;
    /* Snapshot pages walk the primary key (the rowid for an integer key, else its index, whose
     * BINARY collation compares text bytewise as the edge's tables do): a range, no sort. */
    const char *key = t->cols[t->key].name;
    at = 0;
    SQLCAT(sql, at, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
    SQLCAT(sql, at, "_version, _deleted, _origin, _hlc, _cseq FROM \"%s\" ", t->name);
    size_t head = at;
    SQLCAT(sql, at, "ORDER BY \"%s\" LIMIT ?1", key);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->keys_first, err, errlen)) != SYNC_OK)
        return rc;
    at = head;
    SQLCAT(sql, at, "WHERE \"%s\" > ?1 ORDER BY \"%s\" LIMIT ?2", key, key);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->keys_after, err, errlen)) != SYNC_OK)
        return rc;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", t->name);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->count_all, err, errlen)) != SYNC_OK)
        return rc;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\" WHERE \"%s\" > ?", t->name, key);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->count_keys_after, err, errlen)) != SYNC_OK)
        return rc;
    snprintf(sql, sizeof sql,
             "SELECT count(*), max(_cseq), max(_version) FROM \"%s\" WHERE _deleted = 1 AND "
             "_mtime < ?1 AND _conflict IS NULL",
             t->name);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->tomb_scan, err, errlen)) != SYNC_OK)
        return rc;
    snprintf(sql, sizeof sql,
             "DELETE FROM \"%s\" WHERE _deleted = 1 AND _mtime < ?1 AND _cseq <= ?2 AND "
             "_conflict IS NULL",
             t->name);
    if ((rc = sync_sql_prepare(st->db, sql, &ts->tomb_del, err, errlen)) != SYNC_OK)
        return rc;
    /* Where earlier compactions left off. */
    sqlite3_stmt *q;
    if ((rc = sync_sql_prepare(st->db, "SELECT cseq, version FROM _sync_compacted WHERE tbl = ?",
                               &q, err, errlen)) != SYNC_OK)
        return rc;
    sqlite3_bind_text(q, 1, t->name, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) {
        ts->compacted = (uint64_t)sqlite3_column_int64(q, 0);
        ts->floor = (uint64_t)sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    return SYNC_OK;
}

static int prepare_common(sq_store *st, char *err, size_t errlen)
{
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } list[] = {
        {&st->begin, "BEGIN IMMEDIATE"},
        {&st->begin_read, "BEGIN DEFERRED"},
        {&st->commit, "COMMIT"},
        {&st->rollback, "ROLLBACK"},
        {&st->savepoint, "SAVEPOINT batch"},
        {&st->release, "RELEASE batch"},
        {&st->rollback_to, "ROLLBACK TO batch"},
        {&st->dev_get, "SELECT last_seq FROM _sync_devices WHERE device = ?"},
        /* last_seq is a uint64 kept in SQLite's signed integer: max() would compare seqs above
         * 2^63 as negative. The applier only ever writes a higher seq, so plain assignment. */
        {&st->dev_put,
         "INSERT INTO _sync_devices(device, last_seq, applied, records, batches, first_seen, "
         "last_seen) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5) ON CONFLICT(device) DO UPDATE SET "
         "last_seq = excluded.last_seq, applied = applied + excluded.applied, "
         "records = records + excluded.records, batches = batches + 1, last_seen = "
         "excluded.last_seen"},
        {&st->conflict,
         "INSERT INTO _sync_conflicts(at, tbl, pk, device, seq, op, base_version, "
         "server_version, client_hlc, server_hlc, server_origin, client_values, server_values, "
         "policy, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
         "?15)"},
        {&st->save_cseq, "UPDATE _sync_state SET cseq = ? WHERE id = 1"},
        {&st->conflicts_sel,
         "SELECT id, at, tbl, pk, device, seq, op, base_version, server_version, client_hlc, "
         "server_hlc, server_origin, client_values, server_values, policy, outcome, resolved_at, "
         "resolution FROM _sync_conflicts WHERE (?1 = 0 OR id = ?1) AND (?2 = 0 OR (outcome = "
         "'pending' AND resolved_at IS NULL)) ORDER BY id DESC LIMIT ?3"},
        {&st->conflict_done,
         "UPDATE _sync_conflicts SET resolved_at = ?4, resolution = CASE WHEN id = ?3 THEN ?5 "
         "ELSE 'superseded by #' || ?3 END WHERE (id = ?3 OR (tbl = ?1 AND pk = ?2 AND outcome "
         "= 'pending')) AND resolved_at IS NULL"},
        {&st->devices_sel,
         "SELECT device, last_seq, batches, records, applied, first_seen, last_seen FROM "
         "_sync_devices ORDER BY device"},
        {&st->counts_sel,
         "SELECT (SELECT count(*) FROM _sync_devices), (SELECT count(*) FROM _sync_devices "
         "WHERE last_seen >= ?1), (SELECT count(*) FROM _sync_conflicts WHERE outcome = "
         "'pending' AND resolved_at IS NULL)"},
        {&st->compacted_put,
         "INSERT INTO _sync_compacted(tbl, cseq, version) VALUES (?1, ?2, ?3) ON CONFLICT(tbl) "
         "DO UPDATE SET cseq = max(cseq, excluded.cseq), version = max(version, "
         "excluded.version)"},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        int rc = sync_sql_prepare(st->db, list[i].sql, list[i].st, err, errlen);
        if (rc != SYNC_OK)
            return rc;
    }
    return SYNC_OK;
}

static void sq_close(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    if (!st)
        return;
    if (st->tst) {
        for (int i = 0; i < sync_schema_ntables(st->schema); i++) {
            sqlite3_finalize(st->tst[i].get);
            sqlite3_finalize(st->tst[i].put);
            sqlite3_finalize(st->tst[i].maxcseq);
            sqlite3_finalize(st->tst[i].pull);
            sqlite3_finalize(st->tst[i].count_after);
            sqlite3_finalize(st->tst[i].keys_first);
            sqlite3_finalize(st->tst[i].keys_after);
            sqlite3_finalize(st->tst[i].count_all);
            sqlite3_finalize(st->tst[i].count_keys_after);
            sqlite3_finalize(st->tst[i].tomb_scan);
            sqlite3_finalize(st->tst[i].tomb_del);
            sqlite3_finalize(st->tst[i].part_max);
            sqlite3_finalize(st->tst[i].leave_put);
            sqlite3_finalize(st->tst[i].part_count);
            sqlite3_finalize(st->tst[i].part_pull);
            sqlite3_finalize(st->tst[i].moves_pull);
            sqlite3_finalize(st->tst[i].part_values);
            sqlite3_finalize(st->tst[i].moves_scan);
            sqlite3_finalize(st->tst[i].moves_del);
            sqlite3_finalize(st->tst[i].part_cmp_get);
            sqlite3_finalize(st->tst[i].tomb_parts);
            sqlite3_finalize(st->tst[i].moves_parts);
        }
    }
    sqlite3_stmt *all[] = {st->begin,     st->begin_read, st->commit,      st->rollback,
                           st->savepoint, st->release,    st->rollback_to, st->dev_get,
                           st->dev_put,   st->conflict,   st->save_cseq, st->compacted_put,
                           st->conflicts_sel, st->conflict_done, st->devices_sel,
                           st->counts_sel};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    if (sqlite3_close(st->db) != SQLITE_OK)
        sync_error("store: closing the database failed: %s", sqlite3_errmsg(st->db));
    free(st->tst);
    free(st->scratch);
    free(st->desc);
    free(st);
}

static const char *sq_describe(cloud_store *cs)
{
    return ((sq_store *)cs)->desc;
}

static int run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SYNC_OK : SYNC_ERR_DB;
}

static const char *sq_errmsg(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    return st->err[0] ? st->err : sqlite3_errmsg(st->db);
}

static int sq_begin(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    st->cseq_tx = st->cseq;
    st->err[0] = '\0';
    return run(st->begin);
}

static int sq_commit(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    if (st->cseq != st->cseq_tx) {
        sqlite3_bind_int64(st->save_cseq, 1, (sqlite3_int64)st->cseq);
        if (run(st->save_cseq) != SYNC_OK)
            return SYNC_ERR_DB;
    }
    return run(st->commit);
}

static void sq_rollback(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    if (!sqlite3_get_autocommit(st->db))
        run(st->rollback);
    st->cseq = st->cseq_tx;
}

static int sq_savepoint(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    st->cseq_sp = st->cseq;
    return run(st->savepoint);
}

static int sq_release(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    return run(st->release);
}

static void sq_rollback_savepoint(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    run(st->rollback_to);
    run(st->release);
    st->cseq = st->cseq_sp;
}

static int sq_device_seq(cloud_store *cs, const char *device, uint64_t *last_seq)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_bind_text(st->dev_get, 1, device, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st->dev_get);
    *last_seq = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st->dev_get, 0) : 0;
    sqlite3_reset(st->dev_get);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

static int sq_device_done(cloud_store *cs, const char *device, uint64_t last_seq,
                            uint64_t applied, uint64_t records)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_bind_text(st->dev_put, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st->dev_put, 2, (sqlite3_int64)last_seq);
    sqlite3_bind_int64(st->dev_put, 3, (sqlite3_int64)applied);
    sqlite3_bind_int64(st->dev_put, 4, (sqlite3_int64)records);
    sqlite3_bind_int64(st->dev_put, 5, (sqlite3_int64)sync_wall_ms());
    return run(st->dev_put);
}

static int reserve_scratch(sq_store *st, size_t n)
{
    if (n <= st->scratch_cap)
        return SYNC_OK;
    size_t cap = st->scratch_cap ? st->scratch_cap : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *p = realloc(st->scratch, cap);
    if (!p)
        return SYNC_ERR_NOMEM;
    st->scratch = p;
    st->scratch_cap = cap;
    return SYNC_OK;
}

static int sq_row_get(cloud_store *cs, const sync_table *t, const sync_value *key, cloud_row *row)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_stmt *q = st->tst[t->index].get;
    sync_sql_bind(q, 1, key);
    int rc = sqlite3_step(q);
    row->exists = rc == SQLITE_ROW;
    row->left = 0;
    if (rc != SQLITE_ROW) {
        sqlite3_reset(q);
        row->deleted = 0;
        row->version = row->hlc = row->cseq = 0;
        row->conflict = 0;
        memset(row->colver, 0, sizeof row->colver);
        row->origin[0] = '\0';
        for (int i = 0; i < t->ncols; i++)
            row->vals[i].type = SYNC_NULL;
        return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
    }
    size_t need = 0;
    for (int i = 0; i < t->ncols; i++) {
        sync_sql_column(q, i, &row->vals[i]);
        if (row->vals[i].type == SYNC_TEXT || row->vals[i].type == SYNC_BLOB)
            need += row->vals[i].u.b.n;
    }
    if (reserve_scratch(st, need) != SYNC_OK) {
        sqlite3_reset(q);
        return SYNC_ERR_NOMEM;
    }
    size_t at = 0;
    for (int i = 0; i < t->ncols; i++) {
        sync_value *v = &row->vals[i];
        if ((v->type == SYNC_TEXT || v->type == SYNC_BLOB) && v->u.b.n) {
            memcpy(st->scratch + at, v->u.b.p, v->u.b.n);
            v->u.b.p = st->scratch + at;
            at += v->u.b.n;
        }
    }
    row->version = (uint64_t)sqlite3_column_int64(q, t->ncols);
    row->deleted = sqlite3_column_int(q, t->ncols + 1);
    const char *origin = (const char *)sqlite3_column_text(q, t->ncols + 2);
    snprintf(row->origin, sizeof row->origin, "%s", origin ? origin : "");
    row->hlc = (uint64_t)sqlite3_column_int64(q, t->ncols + 3);
    row->cseq = (uint64_t)sqlite3_column_int64(q, t->ncols + 4);
    const uint8_t *cv = sqlite3_column_blob(q, t->ncols + 5);
    int cvn = sqlite3_column_bytes(q, t->ncols + 5);
    for (int i = 0; i < t->ncols; i++) {
        /* Stored little-endian, 4 bytes a column; a missing entry (older row, wider schema)
         * counts as set by version 0. */
        row->colver[i] = 0;
        if (cv && (i + 1) * 4 <= cvn)
            row->colver[i] = (uint32_t)cv[4 * i] | (uint32_t)cv[4 * i + 1] << 8 |
                             (uint32_t)cv[4 * i + 2] << 16 | (uint32_t)cv[4 * i + 3] << 24;
    }
    row->conflict = sqlite3_column_int64(q, t->ncols + 6);
    sqlite3_reset(q);
    return SYNC_OK;
}

static int sq_row_put(cloud_store *cs, const sync_table *t, const sync_value *key,
                        const cloud_row *row)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_stmt *q = st->tst[t->index].put;
    for (int i = 0; i < t->ncols; i++)
        sync_sql_bind(q, i + 1, i == t->key ? key : &row->vals[i]);
    sqlite3_bind_int64(q, t->ncols + 1, (sqlite3_int64)row->version);
    sqlite3_bind_int(q, t->ncols + 2, row->deleted);
    sqlite3_bind_text(q, t->ncols + 3, row->origin, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, t->ncols + 4, (sqlite3_int64)row->hlc);
    sqlite3_bind_int64(q, t->ncols + 5, (sqlite3_int64)row->cseq);
    uint8_t cv[4 * SYNC_MAX_COLS];
    for (int i = 0; i < t->ncols; i++) {
        cv[4 * i] = (uint8_t)row->colver[i];
        cv[4 * i + 1] = (uint8_t)(row->colver[i] >> 8);
        cv[4 * i + 2] = (uint8_t)(row->colver[i] >> 16);
        cv[4 * i + 3] = (uint8_t)(row->colver[i] >> 24);
    }
    sqlite3_bind_blob(q, t->ncols + 6, cv, 4 * t->ncols, SQLITE_STATIC);
    if (row->conflict)
        sqlite3_bind_int64(q, t->ncols + 7, row->conflict);
    else
        sqlite3_bind_null(q, t->ncols + 7);
    sqlite3_bind_int64(q, t->ncols + 8, (sqlite3_int64)sync_wall_ms());
    return run(q);
}

static int sq_conflict(cloud_store *cs, const cloud_conflict *c, int64_t *id)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_stmt *q = st->conflict;
    sqlite3_bind_int64(q, 1, (sqlite3_int64)sync_wall_ms());
    sqlite3_bind_text(q, 2, c->t->name, -1, SQLITE_STATIC);
    sync_sql_bind(q, 3, c->key);
    sqlite3_bind_text(q, 4, c->device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, (sqlite3_int64)c->seq);
    sqlite3_bind_int(q, 6, (int)c->op);
    sqlite3_bind_int64(q, 7, (sqlite3_int64)c->base_version);
    sqlite3_bind_int64(q, 8, (sqlite3_int64)c->server_version);
    sqlite3_bind_int64(q, 9, (sqlite3_int64)c->client_hlc);
    sqlite3_bind_int64(q, 10, (sqlite3_int64)c->server_hlc);
    sqlite3_bind_text(q, 11, c->server_origin, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 12, c->client_cbor, (int)c->client_len, SQLITE_STATIC);
    sqlite3_bind_blob(q, 13, c->server_cbor, (int)c->server_len, SQLITE_STATIC);
    sqlite3_bind_text(q, 14, c->policy, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 15, c->outcome, -1, SQLITE_STATIC);
    int rc = run(q);
    if (id)
        *id = rc == SYNC_OK ? (int64_t)sqlite3_last_insert_rowid(st->db) : 0;
    return rc;
}

static uint64_t sq_next_cseq(cloud_store *cs)
{
    sq_store *st = (sq_store *)cs;
    return ++st->cseq;
}

static int sq_table_cseq(cloud_store *cs, const sync_table *t, uint64_t *cseq)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_stmt *q = st->tst[t->index].maxcseq;
    int rc = sqlite3_step(q);
    *cseq = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(q, 0) : 0;
    sqlite3_reset(q);
    /* Compacted tombstones were changes too: the table's newest change never goes back. */
    if (*cseq < st->tst[t->index].compacted)
        *cseq = st->tst[t->index].compacted;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

/* Fills *row and *key from the current row of a page query (the columns, then _version,
 * _deleted, _origin, _hlc, _cseq); values point into the statement's memory. */
static void sq__page_row(sqlite3_stmt *q, const sync_table *t, cloud_row *row, sync_value *key)
{
    for (int i = 0; i < t->ncols; i++)
        sync_sql_column(q, i, &row->vals[i]);
    *key = row->vals[t->key];
    row->exists = 1;
    row->left = 0;
    row->conflict = 0;
    row->version = (uint64_t)sqlite3_column_int64(q, t->ncols);
    row->deleted = sqlite3_column_int(q, t->ncols + 1);
    const char *origin = (const char *)sqlite3_column_text(q, t->ncols + 2);
    snprintf(row->origin, sizeof row->origin, "%s", origin ? origin : "");
    row->hlc = (uint64_t)sqlite3_column_int64(q, t->ncols + 3);
    row->cseq = (uint64_t)sqlite3_column_int64(q, t->ncols + 4);
}

static int sq_pull(cloud_store *cs, const sync_table *t, uint64_t after, uint64_t limit,
                     cloud_row_cb cb, void *ctx, uint64_t *remaining)
{
    sq_store *st = (sq_store *)cs;
    table_st *ts = &st->tst[t->index];
    /* One read transaction, so the count and the page see the same snapshot. */
    if (run(st->begin_read) != SYNC_OK)
        return SYNC_ERR_DB;
    sqlite3_bind_int64(ts->count_after, 1, (sqlite3_int64)after);
    int rc = sqlite3_step(ts->count_after);
    *remaining = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(ts->count_after, 0) : 0;
    sqlite3_reset(ts->count_after);
    int ret = rc == SQLITE_ROW ? SYNC_OK : SYNC_ERR_DB;
    sqlite3_bind_int64(ts->pull, 1, (sqlite3_int64)after);
    sqlite3_bind_int64(ts->pull, 2, (sqlite3_int64)(limit > INT64_MAX ? INT64_MAX : limit));
    cloud_row row;
    memset(row.colver, 0, sizeof row.colver);
    while (ret == SYNC_OK && (rc = sqlite3_step(ts->pull)) == SQLITE_ROW) {
        sync_value key;
        sq__page_row(ts->pull, t, &row, &key);
        int c = cb(ctx, &key, &row);
        if (c == 1)
            break;
        if (c != 0)
            ret = c;
    }
    if (ret == SYNC_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = SYNC_ERR_DB;
    sqlite3_reset(ts->pull);
    run(st->commit);
    return ret;
}

static int sq_pull_keys(cloud_store *cs, const sync_table *t, const sync_value *after_key,
                        uint64_t limit, cloud_row_cb cb, void *ctx, uint64_t *remaining)
{
    sq_store *st = (sq_store *)cs;
    table_st *ts = &st->tst[t->index];
    const sync_column *kc = &t->cols[t->key];
    *remaining = 0;
    st->err[0] = '\0';
    /* Keys compare within their type (integers by value, text and blobs bytewise); SQLite
     * would compare a value of another type by its order across types (every integer below
     * every text), and the page would quietly start somewhere else. */
    if (after_key && after_key->type != kc->type) {
        snprintf(st->err, sizeof st->err, "column '%s': a %s value for a %s column", kc->name,
                 sync_vtype_name(after_key->type), sync_vtype_name(kc->type));
        return SYNC_ERR_SCHEMA;
    }
    sqlite3_stmt *count = after_key ? ts->count_keys_after : ts->count_all;
    sqlite3_stmt *page = after_key ? ts->keys_after : ts->keys_first;
    /* One read transaction, so the count and the page see the same snapshot. */
    if (run(st->begin_read) != SYNC_OK)
        return SYNC_ERR_DB;
    if (after_key)
        sync_sql_bind(count, 1, after_key);
    int rc = sqlite3_step(count);
    if (rc == SQLITE_ROW)
        *remaining = (uint64_t)sqlite3_column_int64(count, 0);
    sqlite3_reset(count);
    int ret = rc == SQLITE_ROW ? SYNC_OK : SYNC_ERR_DB;
    int n = 1;
    if (after_key)
        sync_sql_bind(page, n++, after_key);
    sqlite3_bind_int64(page, n, (sqlite3_int64)(limit > INT64_MAX ? INT64_MAX : limit));
    cloud_row row;
    memset(row.colver, 0, sizeof row.colver);
    while (ret == SYNC_OK && (rc = sqlite3_step(page)) == SQLITE_ROW) {
        sync_value key;
        sq__page_row(page, t, &row, &key);
        int c = cb(ctx, &key, &row);
        if (c == 1)
            break;
        if (c != 0)
            ret = c;
    }
    if (ret == SYNC_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = SYNC_ERR_DB;
    sqlite3_reset(page);
    run(st->commit);
    return ret;
}

/* ---- partitions ---- */

/* SYNC_OK if t was declared partitioned and part (may be NULL) has its partition column's
 * type, else an error with a message. The type is checked here because SQLite would compare
 * the text '12' equal to the integer 12 in the table's column, not in _sync_moves. */
static int sq__partitioned(sq_store *st, const sync_table *t, const sync_value *part)
{
    st->err[0] = '\0';
    if (!st->tst || st->tst[t->index].part_col < 0) {
        snprintf(st->err, sizeof st->err, "table '%s' is not partitioned in the store", t->name);
        return SYNC_ERR_STATE;
    }
    const sync_column *c = &t->cols[st->tst[t->index].part_col];
    if (part && part->type != c->type) {
        snprintf(st->err, sizeof st->err, "column '%s': a %s value for a %s column", c->name,
                 sync_vtype_name(part->type), sync_vtype_name(c->type));
        return SYNC_ERR_SCHEMA;
    }
    return SYNC_OK;
}

static int sq_partition(cloud_store *cs, const sync_table *t, int col)
{
    sq_store *st = (sq_store *)cs;
    st->err[0] = '\0';
    if (!st->tst) {
        snprintf(st->err, sizeof st->err, "the store is open read-only");
        return SYNC_ERR_STATE;
    }
    table_st *ts = &st->tst[t->index];
    if (col < 0 || col >= t->ncols || col == t->key ||
        (t->cols[col].type != SYNC_INT && t->cols[col].type != SYNC_TEXT)) {
        snprintf(st->err, sizeof st->err,
                 "table '%s': a partition column must be an integer or text column other than "
                 "the key",
                 t->name);
        return SYNC_ERR_SCHEMA;
    }
    if (ts->part_col == col)
        return SYNC_OK;
    if (ts->part_col >= 0) {
        snprintf(st->err, sizeof st->err, "table '%s' is already partitioned by '%s'", t->name,
                 t->cols[ts->part_col].name);
        return SYNC_ERR_STATE;
    }
    const char *tn = t->name, *cn = t->cols[col].name;
    char sql[16384];
    size_t at = 0;
    /* The index is named after the column too: a table partitioned by another column later
     * gets its own. */
    snprintf(sql, sizeof sql,
             "CREATE TABLE IF NOT EXISTS _sync_moves(tbl TEXT NOT NULL, part NOT NULL,"
             " pk NOT NULL, version INTEGER NOT NULL, cseq INTEGER NOT NULL,"
             " hlc INTEGER NOT NULL, origin TEXT NOT NULL, at_ms INTEGER NOT NULL,"
             " PRIMARY KEY (tbl, part, pk)) WITHOUT ROWID;"
             "CREATE INDEX IF NOT EXISTS _sync_moves_cseq ON _sync_moves(tbl, part, cseq);"
             "CREATE INDEX IF NOT EXISTS _sync_moves_at ON _sync_moves(tbl, at_ms);"
             "CREATE TABLE IF NOT EXISTS _sync_part_compacted(tbl TEXT NOT NULL, part NOT NULL,"
             " cseq INTEGER NOT NULL, PRIMARY KEY (tbl, part)) WITHOUT ROWID;"
             "CREATE INDEX IF NOT EXISTS \"_sync_%s_part_%s\" ON \"%s\"(\"%s\", _cseq);",
             tn, cn, tn, cn);
    int rc = sync_sql_exec(st->db, sql, "creating the partition tables", st->err, sizeof st->err);
    /* Index lookups: (col, _cseq), (tbl, part, cseq) and the horizon's primary key. */
    if (rc == SYNC_OK) {
        snprintf(sql, sizeof sql,
                 "SELECT max(coalesce((SELECT max(_cseq) FROM \"%s\" WHERE \"%s\" = ?1), 0),"
                 " coalesce((SELECT max(cseq) FROM _sync_moves WHERE tbl = ?2 AND part = ?1),"
                 " 0), coalesce((SELECT cseq FROM _sync_part_compacted WHERE tbl = ?2 AND part"
                 " = ?1), 0))",
                 tn, cn);
        rc = sync_sql_prepare(st->db, sql, &ts->part_max, st->err, sizeof st->err);
    }
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(
            st->db,
            "INSERT INTO _sync_moves(tbl, part, pk, version, cseq, hlc, origin, at_ms) VALUES "
            "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(tbl, part, pk) DO UPDATE SET version "
            "= excluded.version, cseq = excluded.cseq, hlc = excluded.hlc, origin = "
            "excluded.origin, at_ms = excluded.at_ms",
            &ts->leave_put, st->err, sizeof st->err);
    if (rc == SYNC_OK) {
        snprintf(sql, sizeof sql,
                 "SELECT (SELECT count(*) FROM \"%s\" WHERE \"%s\" = ?1 AND _cseq > ?2) +"
                 " (SELECT count(*) FROM _sync_moves WHERE tbl = ?3 AND part = ?1 AND cseq > ?2)",
                 tn, cn);
        rc = sync_sql_prepare(st->db, sql, &ts->part_count, st->err, sizeof st->err);
    }
    if (rc == SYNC_OK) {
        SQLCAT(sql, at, "SELECT ");
        for (int i = 0; i < t->ncols; i++)
            SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
        SQLCAT(sql, at,
               "_version, _deleted, _origin, _hlc, _cseq FROM \"%s\" WHERE \"%s\" = ?1 AND "
               "_cseq > ?2 ORDER BY _cseq LIMIT ?3",
               tn, cn);
        rc = sync_sql_prepare(st->db, sql, &ts->part_pull, st->err, sizeof st->err);
    }
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(st->db,
                              "SELECT pk, version, cseq, hlc, origin FROM _sync_moves WHERE "
                              "tbl = ?1 AND part = ?2 AND cseq > ?3 ORDER BY cseq LIMIT ?4",
                              &ts->moves_pull, st->err, sizeof st->err);
    /* One index seek per distinct value, not a scan of every row: the next value is the
     * smallest one above the last. */
    if (rc == SYNC_OK) {
        snprintf(sql, sizeof sql,
                 "WITH RECURSIVE p(v) AS (SELECT min(\"%s\") FROM \"%s\" UNION ALL SELECT"
                 " (SELECT min(\"%s\") FROM \"%s\" WHERE \"%s\" > p.v) FROM p WHERE p.v IS NOT"
                 " NULL) SELECT v FROM p WHERE v IS NOT NULL",
                 cn, tn, cn, tn, cn);
        rc = sync_sql_prepare(st->db, sql, &ts->part_values, st->err, sizeof st->err);
    }
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(st->db,
                              "SELECT count(*), max(cseq) FROM _sync_moves WHERE tbl = ?1 AND "
                              "at_ms < ?2",
                              &ts->moves_scan, st->err, sizeof st->err);
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(st->db,
                              "DELETE FROM _sync_moves WHERE tbl = ?1 AND at_ms < ?2 AND cseq "
                              "<= ?3",
                              &ts->moves_del, st->err, sizeof st->err);
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(st->db,
                              "SELECT cseq FROM _sync_part_compacted WHERE tbl = ?1 AND part = ?2",
                              &ts->part_cmp_get, st->err, sizeof st->err);
    /* What compaction is about to remove, by partition: the tombstones (by the partition column
     * they keep) and the leaves that tomb_del and moves_del delete with the same arguments. */
    if (rc == SYNC_OK) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO _sync_part_compacted(tbl, part, cseq) SELECT ?1, \"%s\", max(_cseq)"
                 " FROM \"%s\" WHERE _deleted = 1 AND _mtime < ?2 AND _cseq <= ?3 AND _conflict"
                 " IS NULL AND \"%s\" IS NOT NULL GROUP BY \"%s\" ON CONFLICT(tbl, part) DO"
                 " UPDATE SET cseq = max(cseq, excluded.cseq)",
                 cn, tn, cn, cn);
        rc = sync_sql_prepare(st->db, sql, &ts->tomb_parts, st->err, sizeof st->err);
    }
    if (rc == SYNC_OK)
        rc = sync_sql_prepare(
            st->db,
            "INSERT INTO _sync_part_compacted(tbl, part, cseq) SELECT ?1, part, max(cseq) FROM "
            "_sync_moves WHERE tbl = ?1 AND at_ms < ?2 AND cseq <= ?3 GROUP BY part ON "
            "CONFLICT(tbl, part) DO UPDATE SET cseq = max(cseq, excluded.cseq)",
            &ts->moves_parts, st->err, sizeof st->err);
    if (rc != SYNC_OK) {
        sqlite3_stmt **all[] = {&ts->part_max,     &ts->leave_put,   &ts->part_count,
                                &ts->part_pull,    &ts->moves_pull,  &ts->part_values,
                                &ts->moves_scan,   &ts->moves_del,   &ts->part_cmp_get,
                                &ts->tomb_parts,   &ts->moves_parts};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            sqlite3_finalize(*all[i]);
            *all[i] = NULL;
        }
        return rc;
    }
    ts->part_col = col;
    return SYNC_OK;
}

static int sq_part_cseq(cloud_store *cs, const sync_table *t, const sync_value *part,
                        uint64_t *cseq)
{
    sq_store *st = (sq_store *)cs;
    *cseq = 0;
    int rc = sq__partitioned(st, t, part);
    if (rc != SYNC_OK)
        return rc;
    sqlite3_stmt *q = st->tst[t->index].part_max;
    sync_sql_bind(q, 1, part);
    sqlite3_bind_text(q, 2, t->name, -1, SQLITE_STATIC);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *cseq = (uint64_t)sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return rc == SQLITE_ROW ? SYNC_OK : SYNC_ERR_DB;
}

static int sq_part_compacted(cloud_store *cs, const sync_table *t, const sync_value *part,
                             uint64_t *horizon)
{
    sq_store *st = (sq_store *)cs;
    *horizon = 0;
    int rc = sq__partitioned(st, t, part);
    if (rc != SYNC_OK)
        return rc;
    sqlite3_stmt *q = st->tst[t->index].part_cmp_get;
    sqlite3_bind_text(q, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(q, 2, part);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *horizon = (uint64_t)sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

static int sq_leave(cloud_store *cs, const sync_table *t, const sync_value *part,
                    const sync_value *key, uint64_t version, uint64_t cseq, uint64_t hlc,
                    const char *origin)
{
    sq_store *st = (sq_store *)cs;
    int rc = sq__partitioned(st, t, part);
    if (rc != SYNC_OK)
        return rc;
    sqlite3_stmt *q = st->tst[t->index].leave_put;
    sqlite3_bind_text(q, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(q, 2, part);
    sync_sql_bind(q, 3, key);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)version);
    sqlite3_bind_int64(q, 5, (sqlite3_int64)cseq);
    sqlite3_bind_int64(q, 6, (sqlite3_int64)hlc);
    sqlite3_bind_text(q, 7, origin ? origin : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 8, (sqlite3_int64)sync_wall_ms());
    return run(q);
}

/* Fills *row and *key from the current leave of a moves_pull query: a row with no values but
 * its key (which points into the statement's memory). */
static void sq__leave_row(sqlite3_stmt *q, const sync_table *t, cloud_row *row, sync_value *key)
{
    sync_sql_column(q, 0, key);
    for (int i = 0; i < t->ncols; i++)
        row->vals[i].type = SYNC_NULL;
    row->vals[t->key] = *key;
    row->exists = 1;
    row->deleted = 1;
    row->left = 1;
    row->conflict = 0;
    row->version = (uint64_t)sqlite3_column_int64(q, 1);
    row->cseq = (uint64_t)sqlite3_column_int64(q, 2);
    row->hlc = (uint64_t)sqlite3_column_int64(q, 3);
    const char *origin = (const char *)sqlite3_column_text(q, 4);
    snprintf(row->origin, sizeof row->origin, "%s", origin ? origin : "");
}

/* The partition's rows and its leaves come from two queries, each in cseq order and limited;
 * the page takes the lower cseq of the two heads each time. */
static int sq_pull_part(cloud_store *cs, const sync_table *t, const sync_value *part,
                        uint64_t after, uint64_t limit, cloud_row_cb cb, void *ctx,
                        uint64_t *remaining)
{
    sq_store *st = (sq_store *)cs;
    *remaining = 0;
    int ret = sq__partitioned(st, t, part);
    if (ret != SYNC_OK)
        return ret;
    table_st *ts = &st->tst[t->index];
    sqlite3_stmt *rows = ts->part_pull, *leaves = ts->moves_pull;
    sqlite3_int64 lim = limit > INT64_MAX ? INT64_MAX : (sqlite3_int64)limit;
    /* One read transaction, so the count and the page see the same snapshot. */
    if (run(st->begin_read) != SYNC_OK)
        return SYNC_ERR_DB;
    sync_sql_bind(ts->part_count, 1, part);
    sqlite3_bind_int64(ts->part_count, 2, (sqlite3_int64)after);
    sqlite3_bind_text(ts->part_count, 3, t->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(ts->part_count);
    if (rc == SQLITE_ROW)
        *remaining = (uint64_t)sqlite3_column_int64(ts->part_count, 0);
    else
        ret = SYNC_ERR_DB;
    sqlite3_reset(ts->part_count);
    sync_sql_bind(rows, 1, part);
    sqlite3_bind_int64(rows, 2, (sqlite3_int64)after);
    sqlite3_bind_int64(rows, 3, lim);
    sqlite3_bind_text(leaves, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(leaves, 2, part);
    sqlite3_bind_int64(leaves, 3, (sqlite3_int64)after);
    sqlite3_bind_int64(leaves, 4, lim);
    int rr = ret == SYNC_OK ? sqlite3_step(rows) : SQLITE_DONE;
    int lr = ret == SYNC_OK ? sqlite3_step(leaves) : SQLITE_DONE;
    cloud_row row;
    memset(row.colver, 0, sizeof row.colver);
    for (uint64_t n = 0; ret == SYNC_OK && n < limit && (rr == SQLITE_ROW || lr == SQLITE_ROW);
         n++) {
        int from_rows = rr == SQLITE_ROW &&
                        (lr != SQLITE_ROW || (uint64_t)sqlite3_column_int64(rows, t->ncols + 4) <=
                                                 (uint64_t)sqlite3_column_int64(leaves, 2));
        sync_value key;
        if (from_rows)
            sq__page_row(rows, t, &row, &key);
        else
            sq__leave_row(leaves, t, &row, &key);
        int c = cb(ctx, &key, &row);
        if (c == 1)
            break;
        if (c != 0) {
            ret = c;
            break;
        }
        if (from_rows)
            rr = sqlite3_step(rows);
        else
            lr = sqlite3_step(leaves);
    }
    if (ret == SYNC_OK &&
        ((rr != SQLITE_ROW && rr != SQLITE_DONE) || (lr != SQLITE_ROW && lr != SQLITE_DONE)))
        ret = SYNC_ERR_DB;
    sqlite3_reset(rows);
    sqlite3_reset(leaves);
    run(st->commit);
    return ret;
}

static int sq_partitions(cloud_store *cs, const sync_table *t, cloud_value_cb cb, void *ctx)
{
    sq_store *st = (sq_store *)cs;
    int ret = sq__partitioned(st, t, NULL);
    if (ret != SYNC_OK)
        return ret;
    sqlite3_stmt *q = st->tst[t->index].part_values;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        sync_value v;
        sync_sql_column(q, 0, &v);
        int x = cb(ctx, &v);
        if (x != 0) {
            ret = x == 1 ? SYNC_OK : x;
            break;
        }
    }
    if (ret == SYNC_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = SYNC_ERR_DB;
    sqlite3_reset(q);
    return ret;
}

static int sq_checksum(cloud_store *cs, const sync_table *t, char hex[65], long long *rows,
                         char *err, size_t errlen)
{
    sq_store *st = (sq_store *)cs;
    return sync_checksum_table(st->db, t, "_deleted = 0", hex, rows, err, errlen);
}

static int sq_compact(cloud_store *cs, const sync_table *t, int64_t before_ms,
                        uint64_t *removed)
{
    sq_store *st = (sq_store *)cs;
    table_st *ts = &st->tst[t->index];
    *removed = 0;
    sqlite3_bind_int64(ts->tomb_scan, 1, (sqlite3_int64)before_ms);
    int rc = sqlite3_step(ts->tomb_scan);
    uint64_t n = 0, cseq = 0, version = 0;
    if (rc == SQLITE_ROW) {
        n = (uint64_t)sqlite3_column_int64(ts->tomb_scan, 0);
        cseq = (uint64_t)sqlite3_column_int64(ts->tomb_scan, 1);
        version = (uint64_t)sqlite3_column_int64(ts->tomb_scan, 2);
    }
    sqlite3_reset(ts->tomb_scan);
    if (rc != SQLITE_ROW)
        return SYNC_ERR_DB;
    /* A partitioned table's old leaves go too: a partition pull from below its partition's
     * horizon is answered from the start, as a whole-table one is. */
    uint64_t leaves = 0, leaves_cseq = 0;
    if (ts->part_col >= 0) {
        sqlite3_bind_text(ts->moves_scan, 1, t->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ts->moves_scan, 2, (sqlite3_int64)before_ms);
        rc = sqlite3_step(ts->moves_scan);
        if (rc == SQLITE_ROW) {
            leaves = (uint64_t)sqlite3_column_int64(ts->moves_scan, 0);
            leaves_cseq = (uint64_t)sqlite3_column_int64(ts->moves_scan, 1);
        }
        sqlite3_reset(ts->moves_scan);
        if (rc != SQLITE_ROW)
            return SYNC_ERR_DB;
    }
    if (n == 0 && leaves == 0)
        return SYNC_OK;
    /* The table's horizon only rises: a replica whose cursor is below it may have missed a
     * delete that no longer exists, and must take the table whole. Only tombstones raise it
     * (whole-table replicas never get leaves), and only they the version floor. */
    if (cseq < ts->compacted)
        cseq = ts->compacted;
    if (version < ts->floor)
        version = ts->floor;
    if (n > 0) {
        /* Each partition's horizon first, from the tombstones about to go. */
        if (ts->part_col >= 0) {
            sqlite3_bind_text(ts->tomb_parts, 1, t->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(ts->tomb_parts, 2, (sqlite3_int64)before_ms);
            sqlite3_bind_int64(ts->tomb_parts, 3, (sqlite3_int64)cseq);
            if (run(ts->tomb_parts) != SYNC_OK)
                return SYNC_ERR_DB;
        }
        sqlite3_bind_int64(ts->tomb_del, 1, (sqlite3_int64)before_ms);
        sqlite3_bind_int64(ts->tomb_del, 2, (sqlite3_int64)cseq);
        if (run(ts->tomb_del) != SYNC_OK)
            return SYNC_ERR_DB;
        *removed = (uint64_t)sqlite3_changes(st->db);
    }
    if (leaves > 0) {
        sqlite3_bind_text(ts->moves_parts, 1, t->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ts->moves_parts, 2, (sqlite3_int64)before_ms);
        sqlite3_bind_int64(ts->moves_parts, 3, (sqlite3_int64)leaves_cseq);
        if (run(ts->moves_parts) != SYNC_OK)
            return SYNC_ERR_DB;
        sqlite3_bind_text(ts->moves_del, 1, t->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ts->moves_del, 2, (sqlite3_int64)before_ms);
        sqlite3_bind_int64(ts->moves_del, 3, (sqlite3_int64)leaves_cseq);
        if (run(ts->moves_del) != SYNC_OK)
            return SYNC_ERR_DB;
        *removed += (uint64_t)sqlite3_changes(st->db);
    }
    if (n == 0)
        return SYNC_OK;
    sqlite3_bind_text(st->compacted_put, 1, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st->compacted_put, 2, (sqlite3_int64)cseq);
    sqlite3_bind_int64(st->compacted_put, 3, (sqlite3_int64)version);
    if (run(st->compacted_put) != SYNC_OK)
        return SYNC_ERR_DB;
    /* Cached before the commit: were it rolled back, replicas would at worst resync a table in
     * full without need, and new rows start at a higher version than needed. Both are safe. */
    ts->compacted = cseq;
    ts->floor = version;
    return SYNC_OK;
}

/* One consumer per file: nobody else compacts it (see cloud_store_refresh). */
static int sq_refresh(cloud_store *cs)
{
    (void)cs;
    return SYNC_OK;
}

static uint64_t sq_compacted(const cloud_store *cs, const sync_table *t)
{
    const sq_store *st = (const sq_store *)cs;
    return st->tst[t->index].compacted;
}

static uint64_t sq_version_floor(const cloud_store *cs, const sync_table *t)
{
    const sq_store *st = (const sq_store *)cs;
    return st->tst[t->index].floor;
}

static int sq_devices(cloud_store *cs, cloud_device_cb cb, void *ctx)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_stmt *q = st->devices_sel;
    int rc, ret = SYNC_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        cloud_device_rec d = {
            .device = (const char *)sqlite3_column_text(q, 0),
            .last_seq = (uint64_t)sqlite3_column_int64(q, 1),
            .batches = (uint64_t)sqlite3_column_int64(q, 2),
            .records = (uint64_t)sqlite3_column_int64(q, 3),
            .applied = (uint64_t)sqlite3_column_int64(q, 4),
            .first_seen = sqlite3_column_int64(q, 5),
            .last_seen = sqlite3_column_int64(q, 6),
        };
        if (!d.device)
            continue;
        int x = cb(ctx, &d);
        if (x != 0) {
            ret = x == 1 ? SYNC_OK : x;
            break;
        }
    }
    if (ret == SYNC_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = SYNC_ERR_DB;
    sqlite3_reset(q);
    return ret;
}

static int sq_counts(cloud_store *cs, int64_t active_since_ms, cloud_counts *out)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_stmt *q = st->counts_sel;
    sqlite3_bind_int64(q, 1, active_since_ms);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        out->devices = (uint64_t)sqlite3_column_int64(q, 0);
        out->active = (uint64_t)sqlite3_column_int64(q, 1);
        out->conflicts_pending = (uint64_t)sqlite3_column_int64(q, 2);
    }
    sqlite3_reset(q);
    return rc == SQLITE_ROW ? SYNC_OK : SYNC_ERR_DB;
}

static int sq_conflicts(cloud_store *cs, int64_t id, int pending_only, int64_t limit,
                          cloud_conflict_cb cb, void *ctx)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_stmt *q = st->conflicts_sel;
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_int(q, 2, pending_only != 0);
    sqlite3_bind_int64(q, 3, limit > 0 ? limit : INT64_MAX);
    int rc, ret = SYNC_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        cloud_conflict_rec c;
        memset(&c, 0, sizeof c);
        c.id = sqlite3_column_int64(q, 0);
        c.at = sqlite3_column_int64(q, 1);
        c.table = (const char *)sqlite3_column_text(q, 2);
        sync_sql_column(q, 3, &c.key);
        c.device = (const char *)sqlite3_column_text(q, 4);
        c.seq = (uint64_t)sqlite3_column_int64(q, 5);
        c.op = (sync_op)sqlite3_column_int(q, 6);
        c.base_version = (uint64_t)sqlite3_column_int64(q, 7);
        c.server_version = (uint64_t)sqlite3_column_int64(q, 8);
        c.client_hlc = (uint64_t)sqlite3_column_int64(q, 9);
        c.server_hlc = (uint64_t)sqlite3_column_int64(q, 10);
        c.server_origin = (const char *)sqlite3_column_text(q, 11);
        c.client_cbor = sqlite3_column_blob(q, 12);
        c.client_len = (size_t)sqlite3_column_bytes(q, 12);
        c.server_cbor = sqlite3_column_blob(q, 13);
        c.server_len = (size_t)sqlite3_column_bytes(q, 13);
        c.policy = (const char *)sqlite3_column_text(q, 14);
        c.outcome = (const char *)sqlite3_column_text(q, 15);
        c.resolved_at = sqlite3_column_int64(q, 16);
        c.resolution = (const char *)sqlite3_column_text(q, 17);
        int r = cb(ctx, &c);
        if (r == 1)
            break;
        if (r != 0) {
            ret = r;
            break;
        }
    }
    if (ret == SYNC_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = SYNC_ERR_DB;
    sqlite3_reset(q);
    return ret;
}

static int sq_conflict_resolved(cloud_store *cs, const sync_table *t, const sync_value *key,
                                  int64_t id, const char *resolution)
{
    sq_store *st = (sq_store *)cs;
    sqlite3_stmt *q = st->conflict_done;
    sqlite3_bind_text(q, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(q, 2, key);
    sqlite3_bind_int64(q, 3, id);
    sqlite3_bind_int64(q, 4, (sqlite3_int64)sync_wall_ms());
    sqlite3_bind_text(q, 5, resolution, -1, SQLITE_STATIC);
    return run(q);
}

static const cloud_store_ops sq_ops = {
    .name = "SQLite",
    .close = sq_close,
    .errmsg = sq_errmsg,
    .describe = sq_describe,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .release = sq_release,
    .rollback_savepoint = sq_rollback_savepoint,
    .device_seq = sq_device_seq,
    .device_done = sq_device_done,
    .row_get = sq_row_get,
    .row_put = sq_row_put,
    .conflict = sq_conflict,
    .conflicts = sq_conflicts,
    .conflict_resolved = sq_conflict_resolved,
    .next_cseq = sq_next_cseq,
    .table_cseq = sq_table_cseq,
    .pull = sq_pull,
    .pull_keys = sq_pull_keys,
    .compact = sq_compact,
    .refresh = sq_refresh,
    .compacted = sq_compacted,
    .version_floor = sq_version_floor,
    .devices = sq_devices,
    .counts = sq_counts,
    .checksum = sq_checksum,
    .partition = sq_partition,
    .part_cseq = sq_part_cseq,
    .part_compacted = sq_part_compacted,
    .leave = sq_leave,
    .pull_part = sq_pull_part,
    .partitions = sq_partitions,
};

/* A new store object for path (no database opened yet), or NULL. */
static sq_store *sq_new(const char *path, const sync_schema *s)
{
    sq_store *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->base.ops = &sq_ops;
    st->schema = s;
    size_t n = strlen(path) + 8;
    if (!(st->desc = malloc(n))) {
        free(st);
        return NULL;
    }
    snprintf(st->desc, n, "SQLite %s", path);
    return st;
}

int cloud_store_sqlite_open(const char *path, const sync_schema *s, int sync_full,
                            cloud_store **out, char *err, size_t errlen)
{
    *out = NULL;
    sq_store *st = sq_new(path, s);
    if (!st)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    st->tst = calloc((size_t)sync_schema_ntables(s), sizeof *st->tst);
    int rc = st->tst ? SYNC_OK : sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    if (rc == SYNC_OK)
        rc = sync_sql_open(path, 1, sync_full ? "FULL" : "NORMAL", &st->db, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_exec(
            st->db,
            "BEGIN IMMEDIATE;"
            "CREATE TABLE IF NOT EXISTS _sync_state(id INTEGER PRIMARY KEY CHECK (id = 1),"
            " cseq INTEGER NOT NULL, schema_version INTEGER NOT NULL);"
            "CREATE TABLE IF NOT EXISTS _sync_devices(device TEXT PRIMARY KEY,"
            " last_seq INTEGER NOT NULL, applied INTEGER NOT NULL, records INTEGER NOT NULL,"
            " batches INTEGER NOT NULL, first_seen INTEGER, last_seen INTEGER);"
            "CREATE TABLE IF NOT EXISTS _sync_conflicts(id INTEGER PRIMARY KEY, at INTEGER NOT "
            "NULL, tbl TEXT NOT NULL, pk NOT NULL, device TEXT NOT NULL, seq INTEGER NOT NULL,"
            " op INTEGER NOT NULL, base_version INTEGER, server_version INTEGER,"
            " client_hlc INTEGER, server_hlc INTEGER, server_origin TEXT, client_values BLOB,"
            " server_values BLOB, policy TEXT NOT NULL, outcome TEXT NOT NULL,"
            " resolved_at INTEGER, resolution TEXT);"
            "CREATE TABLE IF NOT EXISTS _sync_compacted(tbl TEXT PRIMARY KEY,"
            " cseq INTEGER NOT NULL, version INTEGER NOT NULL);",
            "creating bookkeeping tables", err, errlen);
    if (rc == SYNC_OK) {
        /* Conflict logs made before manual resolution existed get its column. */
        sqlite3_stmt *p = NULL;
        if (sqlite3_prepare_v2(st->db, "SELECT resolution FROM _sync_conflicts LIMIT 0", -1, &p,
                               NULL) != SQLITE_OK)
            rc = sync_sql_exec(st->db, "ALTER TABLE _sync_conflicts ADD COLUMN resolution TEXT",
                               "adding a column", err, errlen);
        sqlite3_finalize(p);
    }
    for (int i = 0; rc == SYNC_OK && i < sync_schema_ntables(s); i++)
        rc = ensure_table(st, sync_schema_table(s, i), err, errlen);
    if (rc == SYNC_OK) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "INSERT INTO _sync_state(id, cseq, schema_version) VALUES (1, 0, %u) "
                 "ON CONFLICT(id) DO UPDATE SET schema_version = excluded.schema_version; COMMIT",
                 sync_schema_version(s));
        rc = sync_sql_exec(st->db, sql, "initialising _sync_state", err, errlen);
    }
    if (rc != SYNC_OK && st->db)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; rc == SYNC_OK && i < sync_schema_ntables(s); i++)
        rc = prepare_table(st, sync_schema_table(s, i), &st->tst[i], err, errlen);
    if (rc == SYNC_OK)
        rc = prepare_common(st, err, errlen);
    if (rc == SYNC_OK) {
        sqlite3_stmt *q;
        rc = sync_sql_prepare(st->db, "SELECT cseq FROM _sync_state WHERE id = 1", &q, err, errlen);
        if (rc == SYNC_OK && sqlite3_step(q) == SQLITE_ROW)
            st->cseq = (uint64_t)sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    if (rc != SYNC_OK) {
        sq_close(&st->base);
        return rc;
    }
    *out = &st->base;
    return SYNC_OK;
}

int cloud_store_sqlite_open_ro(const char *path, const sync_schema *s, cloud_store **out,
                               char *err, size_t errlen)
{
    *out = NULL;
    sq_store *st = sq_new(path, s);
    if (!st)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "cannot open %s: %s", path,
                             st->db ? sqlite3_errmsg(st->db) : "out of memory");
        sq_close(&st->base);
        return rc;
    }
    sqlite3_busy_timeout(st->db, 10000);
    *out = &st->base;
    return SYNC_OK;
}

