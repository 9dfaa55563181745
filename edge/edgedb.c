/* edgedb.c - the application database as syncedge sees it (see edgedb.h). */
#include "edgedb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"
#include "sync/sqlutil.h"

static const char *sql_type(sync_vtype t)
{
    switch (t) {
    case SYNC_INT:
        return "INTEGER";
    case SYNC_REAL:
        return "REAL";
    case SYNC_TEXT:
        return "TEXT";
    default:
        return "BLOB";
    }
}

static int select_tables(edge_db *e, const edge_config *c, char *err, size_t errlen)
{
    e->ntables = 0;
    e->nv = 0;
    for (int i = 0; i < sync_schema_ntables(e->schema); i++) {
        const sync_table *t = sync_schema_table(e->schema, i);
        if (!edge_config_syncs(c, t->name))
            continue;
        e->tables[e->ntables++] = t;
        if (t->ncols > e->nv)
            e->nv = t->ncols;
    }
    /* Every name in `tables` must be in the schema: a typo would silently sync nothing. */
    if (c->tables) {
        char list[1024];
        snprintf(list, sizeof list, "%s", c->tables);
        for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", "))
            if (!sync_schema_find(e->schema, tok, strlen(tok)))
                return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                   "tables: '%s' is not declared in the schema file", tok);
    }
    if (e->ntables == 0)
        return sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "no table to sync");
    return SYNC_OK;
}

/* Creates a synced table that does not exist, or checks that an existing one has every schema
 * column and the schema's key as its primary key. */
static int ensure_table(edge_db *e, const sync_table *t, char *err, size_t errlen)
{
    char sql[256];
    snprintf(sql, sizeof sql, "PRAGMA table_info(\"%s\")", t->name);
    sqlite3_stmt *st;
    int rc = sync_sql_prepare(e->db, sql, &st, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    uint64_t seen = 0;
    int ncols = 0, pkcols = 0, key_is_pk = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        ncols++;
        const char *name = (const char *)sqlite3_column_text(st, 1);
        int pk = sqlite3_column_int(st, 5);
        int ci = name ? sync_table_col(t, name, strlen(name)) : -1;
        if (pk)
            pkcols++;
        if (ci >= 0)
            seen |= 1ull << ci;
        if (ci == t->key && pk)
            key_is_pk = 1;
    }
    sqlite3_finalize(st);
    if (ncols == 0) {
        char create[16384];
        size_t at = (size_t)snprintf(create, sizeof create, "CREATE TABLE \"%s\"(", t->name);
        for (int i = 0; i < t->ncols; i++)
            at += (size_t)snprintf(create + at, sizeof create - at, "%s\"%s\" %s%s%s",
                                   i ? ", " : "", t->cols[i].name, sql_type(t->cols[i].type),
                                   i == t->key ? " PRIMARY KEY" : "",
                                   t->cols[i].notnull ? " NOT NULL" : "");
        snprintf(create + at, sizeof create - at, ")");
        sync_info("creating table '%s' from the schema", t->name);
        return sync_sql_exec(e->db, create, "creating a synced table", err, errlen);
    }
    for (int i = 0; i < t->ncols; i++)
        if (!(seen & (1ull << i)))
            return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                               "table '%s' in the database has no column '%s' that the schema "
                               "declares",
                               t->name, t->cols[i].name);
    if (!key_is_pk || pkcols != 1)
        return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                           "table '%s': the schema's key '%s' must be the table's only PRIMARY "
                           "KEY column",
                           t->name, t->cols[t->key].name);
    return SYNC_OK;
}

/* The bookkeeping tables. The outbox's sequence starts at the time in microseconds, and is moved
 * up to it at every start, so that a device whose database is recreated or restored from a
 * backup never reuses sequence numbers the cloud has seen (the cloud would take them for
 * duplicates). */
static int ensure_bookkeeping(edge_db *e, const edge_config *c, char *err, size_t errlen)
{
    char sql[4096];
    size_t at = (size_t)snprintf(
        sql, sizeof sql,
        "CREATE TABLE IF NOT EXISTS _sync_ctl(id INTEGER PRIMARY KEY CHECK (id = 1),"
        " applying INTEGER NOT NULL DEFAULT 0, hlc INTEGER NOT NULL DEFAULT 0,"
        " tenant TEXT NOT NULL, device TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS _sync_tables(tbl TEXT PRIMARY KEY, attached INTEGER);"
        "CREATE TABLE IF NOT EXISTS _sync_policy(tbl TEXT PRIMARY KEY, recv INTEGER NOT NULL,"
        " wr INTEGER NOT NULL, pcol TEXT, precv INTEGER NOT NULL DEFAULT 0,"
        " pwr INTEGER NOT NULL DEFAULT 0);"
        /* The partition values of _sync_policy's tables: dir 0 receive, 1 write. */
        "CREATE TABLE IF NOT EXISTS _sync_policy_part(tbl TEXT NOT NULL, dir INTEGER NOT NULL,"
        " val NOT NULL, PRIMARY KEY (tbl, dir, val)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _sync_cursor(tbl TEXT PRIMARY KEY, cseq INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS _sync_resync(tbl TEXT PRIMARY KEY);"
        "CREATE TABLE IF NOT EXISTS _sync_seen(tbl TEXT NOT NULL, pk NOT NULL,"
        " PRIMARY KEY (tbl, pk)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _sync_dirty(tbl TEXT NOT NULL, pk NOT NULL,"
        " after INTEGER NOT NULL, PRIMARY KEY (tbl, pk)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _sync_rows(tbl TEXT NOT NULL, pk NOT NULL,"
        " version INTEGER NOT NULL, gone INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (tbl, pk)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS _sync_outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " tbl TEXT NOT NULL, op INTEGER NOT NULL, pk NOT NULL, base INTEGER NOT NULL,"
        " ts INTEGER NOT NULL, mask INTEGER NOT NULL");
    for (int i = 0; i < e->nv; i++)
        at += (size_t)snprintf(sql + at, sizeof sql - at, ", v%d", i);
    at += (size_t)snprintf(
        sql + at, sizeof sql - at,
        ");"
        "CREATE INDEX IF NOT EXISTS _sync_outbox_row ON _sync_outbox(tbl, pk);"
        "CREATE TABLE IF NOT EXISTS _sync_dead(seq INTEGER PRIMARY KEY, tbl TEXT, op INTEGER,"
        " pk, base INTEGER, ts INTEGER, mask INTEGER, reason TEXT NOT NULL, at INTEGER NOT NULL");
    for (int i = 0; i < e->nv; i++)
        at += (size_t)snprintf(sql + at, sizeof sql - at, ", v%d", i);
    snprintf(sql + at, sizeof sql - at, ");");
    int rc = sync_sql_exec(e->db, sql, "creating bookkeeping tables", err, errlen);
    if (rc != SYNC_OK)
        return rc;
    /* A schema that grew wider than the outbox gets more value columns. */
    for (const char *tbl = "_sync_outbox"; tbl;
         tbl = strcmp(tbl, "_sync_outbox") ? NULL : "_sync_dead") {
        for (int i = 0; i < e->nv; i++) {
            char probe[128];
            snprintf(probe, sizeof probe, "SELECT v%d FROM %s LIMIT 0", i, tbl);
            sqlite3_stmt *pst = NULL;
            int exists = sqlite3_prepare_v2(e->db, probe, -1, &pst, NULL) == SQLITE_OK;
            sqlite3_finalize(pst);
            if (exists)
                continue;
            char alter[128];
            snprintf(alter, sizeof alter, "ALTER TABLE %s ADD COLUMN v%d", tbl, i);
            if ((rc = sync_sql_exec(e->db, alter, "widening the outbox", err, errlen)) != SYNC_OK)
                return rc;
        }
    }
    /* Databases made before partitions: _sync_policy learns the partition column and whether
     * each direction is limited to partitions, _sync_rows the flag of rows that left a
     * partition (edge_db_set_left). Older syncedge versions still read and write both. */
    static const char *const added[][2] = {
        {"_sync_policy", "pcol TEXT"},
        {"_sync_policy", "precv INTEGER NOT NULL DEFAULT 0"},
        {"_sync_policy", "pwr INTEGER NOT NULL DEFAULT 0"},
        {"_sync_rows", "gone INTEGER NOT NULL DEFAULT 0"},
    };
    for (size_t i = 0; i < sizeof added / sizeof added[0]; i++) {
        char probe[128], col[32];
        sscanf(added[i][1], "%31s", col);
        snprintf(probe, sizeof probe, "SELECT %s FROM %s LIMIT 0", col, added[i][0]);
        sqlite3_stmt *pst = NULL;
        int exists = sqlite3_prepare_v2(e->db, probe, -1, &pst, NULL) == SQLITE_OK;
        sqlite3_finalize(pst);
        if (exists)
            continue;
        char alter[160];
        snprintf(alter, sizeof alter, "ALTER TABLE %s ADD COLUMN %s", added[i][0], added[i][1]);
        if ((rc = sync_sql_exec(e->db, alter, "adding partitions to the bookkeeping", err,
                                errlen)) != SYNC_OK)
            return rc;
    }
    sqlite3_stmt *st;
    rc = sync_sql_prepare(e->db, "SELECT tenant, device FROM _sync_ctl WHERE id = 1", &st, err,
                          errlen);
    if (rc != SYNC_OK)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW) {
        char tenant[80], device[80];
        snprintf(tenant, sizeof tenant, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(device, sizeof device, "%s", (const char *)sqlite3_column_text(st, 1));
        sqlite3_finalize(st);
        if (strcmp(tenant, c->tenant) || strcmp(device, c->device))
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "database %s belongs to device '%s' of tenant '%s'; refusing to "
                               "run it as '%s' of '%s'",
                               c->database, device, tenant, c->device, c->tenant);
        return SYNC_OK;
    }
    sqlite3_finalize(st);
    rc = sync_sql_prepare(e->db,
                          "INSERT INTO _sync_ctl(id, applying, hlc, tenant, device) "
                          "VALUES (1, 0, 0, ?, ?)",
                          &st, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    sqlite3_bind_text(st, 1, c->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->device, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "initialising _sync_ctl: %s",
                           sqlite3_errmsg(e->db));
    /* At every start, not only the first: a database restored from an older backup would
     * otherwise number new changes with sequence numbers the cloud already applied, and the
     * cloud would acknowledge them as duplicates without applying them. Numbers are at most one
     * per change, so the clock (in microseconds) stays ahead of every number used before, unless
     * the clock went back (a device without a real-time clock before NTP: then nothing moves). */
    unsigned long long now_us = (unsigned long long)sync_wall_ms() * 1000ull;
    snprintf(sql, sizeof sql,
             "INSERT INTO sqlite_sequence(name, seq) SELECT '_sync_outbox', %llu "
             "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = '_sync_outbox');"
             "UPDATE sqlite_sequence SET seq = %llu WHERE name = '_sync_outbox' AND seq < %llu",
             now_us, now_us, now_us);
    return sync_sql_exec(e->db, sql, "initialising the outbox sequence", err, errlen);
}

static int prepare_all(edge_db *e, char *err, size_t errlen)
{
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } list[] = {
        {&e->begin, "BEGIN IMMEDIATE"},
        {&e->commit, "COMMIT"},
        {&e->rollback, "ROLLBACK"},
        {&e->set_applying, "UPDATE _sync_ctl SET applying = ? WHERE id = 1"},
        {&e->version_get, "SELECT version, gone FROM _sync_rows WHERE tbl = ? AND pk = ?"},
        /* gone (edge_db_set_left) follows the version: a newer one brings its own flag, the
         * same one clears it when the row is back (a move into another partition received
         * here carries the version of the leave), an older one changes nothing. */
        {&e->version_put,
         "INSERT INTO _sync_rows(tbl, pk, version, gone) VALUES (?1, ?2, ?3, ?4) "
         "ON CONFLICT(tbl, pk) DO UPDATE SET gone = CASE WHEN excluded.version > version THEN "
         "excluded.gone WHEN excluded.version = version THEN min(gone, excluded.gone) ELSE gone "
         "END, version = max(version, excluded.version)"},
        {&e->pending, "SELECT op, mask FROM _sync_outbox WHERE tbl = ? AND pk = ?"},
        {&e->data_version_st, "PRAGMA data_version"},
        {&e->outbox_count, "SELECT count(*) FROM _sync_outbox"},
        {&e->version_del, "DELETE FROM _sync_rows WHERE tbl = ? AND pk = ?"},
        {&e->dirty_put, "INSERT INTO _sync_dirty(tbl, pk, after) VALUES (?1, ?2, ?3) "
                        "ON CONFLICT(tbl, pk) DO UPDATE SET after = min(after, excluded.after)"},
        {&e->dirty_del, "DELETE FROM _sync_dirty WHERE tbl = ? AND pk = ?"},
        {&e->dirty_all, "SELECT tbl, pk, after FROM _sync_dirty"},
        {&e->quiet_q, "SELECT NOT EXISTS (SELECT 1 FROM _sync_outbox WHERE tbl = ?1) AND "
                      "NOT EXISTS (SELECT 1 FROM _sync_dirty WHERE tbl = ?1)"},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
        int rc = sync_sql_prepare(e->db, list[i].sql, list[i].st, err, errlen);
        if (rc != SYNC_OK)
            return rc;
    }
    return SYNC_OK;
}

/* The lock waits of our connection. The application writes the same database, so our write
 * transactions (an ack, a delta) often find its write lock held for a fraction of a
 * millisecond. SQLite's busy_timeout handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between
 * tries; an application that commits at a steady pace (every 1 ms, say) then keeps colliding
 * with the retries, and a chain of 1+2+5+10+15 ms held the whole pipeline for 33 ms (seen
 * with perf trace of clock_nanosleep in syncedge). So: retry every 0.1 ms for the first
 * 2 ms, then every 0.5 ms, and give up after 10 s as before. */
#define EDGE_BUSY_TIMEOUT_S 10.0

static double busy_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int edge_busy(void *ctx, int n)
{
    edge_db *e = ctx;
    double now = busy_now();
    if (n == 0)
        e->busy_since = now;
    else if (now - e->busy_since > EDGE_BUSY_TIMEOUT_S)
        return 0;
    struct timespec d = {0, n < 20 ? 100000L : 500000L};
    nanosleep(&d, NULL);
    return 1;
}

/* Returns 1 if the file exists and SQLite finds it damaged (not a database, or quick_check
 * reports a problem), else 0. why receives what SQLite said. */
static int is_corrupt(const char *path, char *why, size_t whylen)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    sqlite3 *db = NULL;
    int corrupt = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 10000);
        sqlite3_stmt *q = NULL;
        int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &q, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            const char *r = (const char *)sqlite3_column_text(q, 0);
            if (!r || strcmp(r, "ok") != 0) {
                corrupt = 1;
                snprintf(why, whylen, "%s", r ? r : "quick_check failed");
            }
        } else if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB || rc == SQLITE_IOERR) {
            corrupt = 1;
            snprintf(why, whylen, "%s", sqlite3_errmsg(db));
        }
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    return corrupt;
}

/* Moves a damaged database (and its WAL and shared-memory files) out of the way. */
static int move_aside(const char *path, char *err, size_t errlen)
{
    char to[4096], from[4096];
    long now = (long)time(NULL);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(from, sizeof from, "%s%s", path, suffix[i]);
        snprintf(to, sizeof to, "%s.corrupt-%ld%s", path, now, suffix[i]);
        if (rename(from, to) != 0 && i == 0)
            return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot move %s aside: %s", from,
                               strerror(errno));
    }
    snprintf(to, sizeof to, "%s.corrupt-%ld", path, now);
    sync_error("the database %s is damaged and was moved to %s; rebuilding it from the cloud", path,
               to);
    return SYNC_OK;
}

int edge_db_open(edge_db *e, const edge_config *c, const sync_schema *s, char *err, size_t errlen)
{
    char why[256];
    if (is_corrupt(c->database, why, sizeof why)) {
        if (!c->rebuild_corrupt)
            return sync_seterr(err, errlen, SYNC_ERR_DB,
                               "the database %s is damaged (%s); rebuild_corrupt is off",
                               c->database, why);
        sync_error("SQLite reports the database %s damaged: %s", c->database, why);
        int mrc = move_aside(c->database, err, errlen);
        if (mrc != SYNC_OK)
            return mrc;
    }
    memset(e, 0, sizeof *e);
    e->schema = s;
    for (int i = 0; i < EDGE_MAX_TABLES; i++)
        e->parts[i].col = -1;
    snprintf(e->device, sizeof e->device, "%s", c->device);
    int rc = select_tables(e, c, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    /* NORMAL in WAL mode: a crash never corrupts, and a change lost to a power cut is one the
     * application's own commit also lost. The application's connection keeps its own setting. */
    rc = sync_sql_open(c->database, 1, "NORMAL", &e->db, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    sqlite3_busy_handler(e->db, edge_busy, e);
    /* A small page cache: syncedge touches the outbox's tail and the rows it applies, and the
     * operating system caches the file anyway (SQLite's default, 2 MB, was most of our memory
     * above a bare MQTT client once a large table had gone through). */
    rc = edge_db_cache(e, 0) == SYNC_OK
             ? SYNC_OK
             : sync_seterr(err, errlen, SYNC_ERR_DB, "setting the page cache: %s",
                           sqlite3_errmsg(e->db));
    if (rc == SYNC_OK)
        rc = sync_sql_exec(e->db, "BEGIN IMMEDIATE", "locking the database", err, errlen);
    for (int i = 0; i < e->ntables && rc == SYNC_OK; i++)
        rc = ensure_table(e, e->tables[i], err, errlen);
    if (rc == SYNC_OK)
        rc = ensure_bookkeeping(e, c, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_exec(e->db, "UPDATE _sync_ctl SET applying = 0 WHERE id = 1",
                           "resetting _sync_ctl", err, errlen);
    if (rc == SYNC_OK)
        rc = edge_db_load_policy(e, err, errlen);
    if (rc == SYNC_OK)
        rc = edge_capture_install(e, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_sql_exec(e->db, "COMMIT", "committing the attach", err, errlen);
    else
        sqlite3_exec(e->db, "ROLLBACK", NULL, NULL, NULL);
    if (rc == SYNC_OK)
        rc = prepare_all(e, err, errlen);
    if (rc != SYNC_OK) {
        edge_db_close(e);
        return rc;
    }
    edge_db_changed(e);
    return SYNC_OK;
}

int edge_db_open_ro(edge_db *e, const edge_config *c, const sync_schema *s, char *err,
                    size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->schema = s;
    for (int i = 0; i < EDGE_MAX_TABLES; i++)
        e->parts[i].col = -1;
    int rc = select_tables(e, c, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    if (sqlite3_open_v2(c->database, &e->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        rc = sync_seterr(err, errlen, SYNC_ERR_DB, "cannot open %s: %s", c->database,
                         e->db ? sqlite3_errmsg(e->db) : "out of memory");
        edge_db_close(e);
        return rc;
    }
    sqlite3_busy_timeout(e->db, 10000);
    return SYNC_OK;
}

void edge_db_close(edge_db *e)
{
    sqlite3_stmt *all[] = {e->begin,        e->commit,      e->rollback,  e->set_applying,
                           e->version_get,  e->version_put, e->pending,   e->data_version_st,
                           e->outbox_count, e->version_del, e->dirty_put, e->dirty_del, e->quiet_q,
                           e->dirty_all};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    for (int i = 0; i < EDGE_MAX_TABLES; i++)
        edge_parts_clear(&e->parts[i]);
    sqlite3_close(e->db);
    memset(e, 0, sizeof *e);
}

static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SYNC_OK : SYNC_ERR_DB;
}

int edge_db_begin(edge_db *e, int applying)
{
    if (step_reset(e->begin) != SYNC_OK)
        return SYNC_ERR_DB;
    if (applying) {
        sqlite3_bind_int(e->set_applying, 1, 1);
        if (step_reset(e->set_applying) != SYNC_OK) {
            edge_db_rollback(e);
            return SYNC_ERR_DB;
        }
    }
    return SYNC_OK;
}

int edge_db_commit(edge_db *e)
{
    /* The flag goes back to 0 inside the same transaction, so nobody ever sees it set. */
    sqlite3_bind_int(e->set_applying, 1, 0);
    if (step_reset(e->set_applying) != SYNC_OK || step_reset(e->commit) != SYNC_OK) {
        sync_error("commit failed: %s", sqlite3_errmsg(e->db));
        edge_db_rollback(e);
        return SYNC_ERR_DB;
    }
    return SYNC_OK;
}

void edge_db_rollback(edge_db *e)
{
    if (!sqlite3_get_autocommit(e->db))
        step_reset(e->rollback);
}

int edge_db_version_left(edge_db *e, const sync_table *t, const sync_value *key,
                         uint64_t *version, int *left)
{
    sqlite3_bind_text(e->version_get, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(e->version_get, 2, key);
    int rc = sqlite3_step(e->version_get);
    *version = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(e->version_get, 0) : 0;
    if (left)
        *left = rc == SQLITE_ROW && sqlite3_column_int(e->version_get, 1) != 0;
    sqlite3_reset(e->version_get);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

int edge_db_version(edge_db *e, const sync_table *t, const sync_value *key, uint64_t *version)
{
    return edge_db_version_left(e, t, key, version, NULL);
}

static int put_version(edge_db *e, const sync_table *t, const sync_value *key, uint64_t version,
                       int gone)
{
    sqlite3_bind_text(e->version_put, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(e->version_put, 2, key);
    sqlite3_bind_int64(e->version_put, 3, (sqlite3_int64)version);
    sqlite3_bind_int(e->version_put, 4, gone);
    return step_reset(e->version_put);
}

int edge_db_set_version(edge_db *e, const sync_table *t, const sync_value *key, uint64_t version)
{
    return put_version(e, t, key, version, 0);
}

int edge_db_set_left(edge_db *e, const sync_table *t, const sync_value *key, uint64_t version)
{
    return put_version(e, t, key, version, 1);
}

int edge_db_forget(edge_db *e, const sync_table *t, const sync_value *key)
{
    sqlite3_bind_text(e->version_del, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(e->version_del, 2, key);
    return step_reset(e->version_del);
}

int edge_db_mark_dirty(edge_db *e, const sync_table *t, const sync_value *key, uint64_t after)
{
    sqlite3_bind_text(e->dirty_put, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(e->dirty_put, 2, key);
    sqlite3_bind_int64(e->dirty_put, 3, (sqlite3_int64)after);
    return step_reset(e->dirty_put);
}

int edge_db_clear_dirty(edge_db *e, const sync_table *t, const sync_value *key)
{
    sqlite3_bind_text(e->dirty_del, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(e->dirty_del, 2, key);
    return step_reset(e->dirty_del);
}

int edge_db_pending(edge_db *e, const sync_table *t, const sync_value *key, uint64_t *mask)
{
    *mask = 0;
    sqlite3_bind_text(e->pending, 1, t->name, -1, SQLITE_STATIC);
    sync_sql_bind(e->pending, 2, key);
    int rc;
    while ((rc = sqlite3_step(e->pending)) == SQLITE_ROW) {
        int op = sqlite3_column_int(e->pending, 0);
        *mask |= op == 1 ? (uint64_t)sqlite3_column_int64(e->pending, 1) : ~0ull;
    }
    sqlite3_reset(e->pending);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

int edge_db_table_quiet(edge_db *e, const sync_table *t, int *quiet)
{
    sqlite3_bind_text(e->quiet_q, 1, t->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(e->quiet_q);
    *quiet = rc == SQLITE_ROW && sqlite3_column_int(e->quiet_q, 0);
    sqlite3_reset(e->quiet_q);
    return rc == SQLITE_ROW ? SYNC_OK : SYNC_ERR_DB;
}

int edge_db_changed(edge_db *e)
{
    int v = 0;
    if (sqlite3_step(e->data_version_st) == SQLITE_ROW)
        v = sqlite3_column_int(e->data_version_st, 0);
    sqlite3_reset(e->data_version_st);
    int changed = v != e->data_version;
    e->data_version = v;
    return changed;
}

long long edge_db_outbox_count(edge_db *e)
{
    long long n = -1;
    if (sqlite3_step(e->outbox_count) == SQLITE_ROW)
        n = sqlite3_column_int64(e->outbox_count, 0);
    sqlite3_reset(e->outbox_count);
    return n;
}

#define EDGE_CACHE_KIB 512 /* the page cache in steady state */

int edge_db_cache(edge_db *e, long kib)
{
    if (kib <= 0)
        kib = EDGE_CACHE_KIB;
    if (kib == e->cache_kib)
        return SYNC_OK;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA cache_size = -%ld", kib);
    if (sqlite3_exec(e->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return SYNC_ERR_DB;
    sync_debug("page cache: %ld KiB", kib);
    e->cache_kib = kib;
    return SYNC_OK;
}

int edge_db_slot(const edge_db *e, const sync_table *t)
{
    for (int i = 0; i < e->ntables; i++)
        if (e->tables[i] == t)
            return i;
    return -1;
}

int edge_db_recv_mode(const edge_db *e, int slot)
{
    if (slot < 0 || !e->recv[slot])
        return EDGE_RECV_NONE;
    return e->parts[slot].col >= 0 && e->parts[slot].recv_limited ? EDGE_RECV_PARTS
                                                                   : EDGE_RECV_WHOLE;
}

/* ---- partition value lists ---- */

static int value_copy(sync_value *dst, const sync_value *src)
{
    *dst = *src;
    if (src->type != SYNC_TEXT && src->type != SYNC_BLOB)
        return SYNC_OK;
    uint8_t *b = malloc(src->u.b.n + 1);
    if (!b)
        return SYNC_ERR_NOMEM;
    if (src->u.b.n)
        memcpy(b, src->u.b.p, src->u.b.n);
    b[src->u.b.n] = 0;
    dst->u.b.p = b;
    return SYNC_OK;
}

void edge_values_free(sync_value *list, int n)
{
    for (int i = 0; i < n; i++)
        if (list[i].type == SYNC_TEXT || list[i].type == SYNC_BLOB)
            free((void *)list[i].u.b.p);
    free(list);
}

void edge_parts_clear(edge_parts *p)
{
    edge_values_free(p->recv, p->nrecv);
    edge_values_free(p->wr, p->nwr);
    memset(p, 0, sizeof *p);
    p->col = -1;
}

int edge_parts_find(const sync_value *list, int n, const sync_value *v)
{
    for (int i = 0; i < n; i++)
        if (sync_value_equal(&list[i], v))
            return i;
    return -1;
}

int edge_parts_add(sync_value **list, int *n, const sync_value *v)
{
    if (edge_parts_find(*list, *n, v) >= 0)
        return SYNC_OK;
    sync_value *nl = realloc(*list, (size_t)(*n + 1) * sizeof *nl);
    if (!nl)
        return SYNC_ERR_NOMEM;
    *list = nl;
    if (value_copy(&nl[*n], v) != SYNC_OK)
        return SYNC_ERR_NOMEM;
    (*n)++;
    return SYNC_OK;
}

int edge_parts_copy(edge_parts *dst, const edge_parts *src)
{
    edge_parts_clear(dst);
    dst->col = src->col;
    dst->recv_limited = src->recv_limited;
    dst->write_limited = src->write_limited;
    for (int i = 0; i < src->nrecv; i++)
        if (edge_parts_add(&dst->recv, &dst->nrecv, &src->recv[i]) != SYNC_OK)
            goto nomem;
    for (int i = 0; i < src->nwr; i++)
        if (edge_parts_add(&dst->wr, &dst->nwr, &src->wr[i]) != SYNC_OK)
            goto nomem;
    return SYNC_OK;
nomem:
    edge_parts_clear(dst);
    return SYNC_ERR_NOMEM;
}

static int same_set(const sync_value *a, int na, const sync_value *b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (edge_parts_find(b, nb, &a[i]) < 0)
            return 0;
    return 1;
}

int edge_parts_equal(const edge_parts *a, const edge_parts *b)
{
    if (a->col != b->col)
        return 0;
    if (a->col < 0)
        return 1;
    return a->recv_limited == b->recv_limited && a->write_limited == b->write_limited &&
           same_set(a->recv, a->nrecv, b->recv, b->nrecv) && same_set(a->wr, a->nwr, b->wr, b->nwr);
}

int edge_sql_literal(char *buf, size_t n, const sync_value *v)
{
    char *lit = v->type == SYNC_INT    ? sqlite3_mprintf("%lld", (long long)v->u.i)
                : v->type == SYNC_TEXT ? sqlite3_mprintf("%.*Q", (int)v->u.b.n, v->u.b.p)
                                       : NULL;
    if (!lit)
        return v->type == SYNC_INT || v->type == SYNC_TEXT ? SYNC_ERR_NOMEM : SYNC_ERR_INVAL;
    size_t len = strlen(lit);
    if (len < n)
        memcpy(buf, lit, len + 1);
    sqlite3_free(lit);
    return len < n ? SYNC_OK : SYNC_ERR_NOSPACE;
}

/* Reads the partition values of _sync_policy_part into the parts of e (their col and limits
 * set already). */
static int load_parts(edge_db *e, char *err, size_t errlen)
{
    sqlite3_stmt *q;
    int rc = sync_sql_prepare(e->db, "SELECT tbl, dir, val FROM _sync_policy_part", &q, err,
                              errlen);
    if (rc != SYNC_OK)
        return rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        const sync_table *t = name ? edge_db_table(e, name, strlen(name)) : NULL;
        int slot = t ? edge_db_slot(e, t) : -1;
        if (slot < 0 || e->parts[slot].col < 0)
            continue;
        edge_parts *p = &e->parts[slot];
        sync_value v;
        sync_sql_column(q, 2, &v);
        if (v.type != t->cols[p->col].type)
            continue; /* cannot happen: stored from a checked policy */
        int r = sqlite3_column_int(q, 1) == 0 ? edge_parts_add(&p->recv, &p->nrecv, &v)
                                              : edge_parts_add(&p->wr, &p->nwr, &v);
        if (r != SYNC_OK) {
            sqlite3_finalize(q);
            return sync_seterr(err, errlen, r, "reading _sync_policy_part: out of memory");
        }
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? SYNC_OK
                             : sync_seterr(err, errlen, SYNC_ERR_DB,
                                           "reading _sync_policy_part: %s", sqlite3_errmsg(e->db));
}

/* Reads the stored policy (_sync_policy, _sync_policy_part) into e; none stored: every table
 * received whole, none read-only by policy. */
static int load_policy(edge_db *e, char *err, size_t errlen)
{
    for (int i = 0; i < e->ntables; i++) {
        e->recv[i] = 1;
        e->readonly[i] = 0;
    }
    for (int i = 0; i < EDGE_MAX_TABLES; i++)
        edge_parts_clear(&e->parts[i]);
    e->have_policy = 0;
    sqlite3_stmt *q;
    int rc = sync_sql_prepare(e->db, "SELECT tbl, recv, wr, pcol, precv, pwr FROM _sync_policy",
                              &q, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    int first = 1;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        if (first) { /* a stored policy lists every table of the schema it was made for */
            for (int i = 0; i < e->ntables; i++) {
                e->recv[i] = 0;
                e->readonly[i] = 1;
            }
            first = 0;
        }
        e->have_policy = 1;
        const sync_table *t = name ? edge_db_table(e, name, strlen(name)) : NULL;
        int slot = t ? edge_db_slot(e, t) : -1;
        if (slot < 0)
            continue;
        e->recv[slot] = (uint8_t)(sqlite3_column_int(q, 1) != 0);
        e->readonly[slot] = (uint8_t)(sqlite3_column_int(q, 2) == 0);
        const char *pcol = (const char *)sqlite3_column_text(q, 3);
        if (!pcol)
            continue;
        int c = sync_table_col(t, pcol, strlen(pcol));
        if (c < 0 || (t->cols[c].type != SYNC_INT && t->cols[c].type != SYNC_TEXT)) {
            /* The schema changed under a stored policy: hold and write none of the table until
             * the cloud's next policy says what this device may. */
            sync_error("policy: the partition column '%s' of '%s' is no longer an integer or "
                       "text column of the schema; the table is neither received nor written "
                       "until the cloud sends a new policy",
                       pcol, t->name);
            e->recv[slot] = 0;
            e->readonly[slot] = 1;
            continue;
        }
        e->parts[slot].col = c;
        e->parts[slot].recv_limited = sqlite3_column_int(q, 4) != 0;
        e->parts[slot].write_limited = sqlite3_column_int(q, 5) != 0;
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "reading _sync_policy: %s",
                           sqlite3_errmsg(e->db));
    return load_parts(e, err, errlen);
}

int edge_db_load_policy(edge_db *e, char *err, size_t errlen)
{
    e->policy_gen++;
    return load_policy(e, err, errlen);
}

const sync_table *edge_db_table(const edge_db *e, const char *name, size_t len)
{
    for (int i = 0; i < e->ntables; i++)
        if (strlen(e->tables[i]->name) == len && memcmp(e->tables[i]->name, name, len) == 0)
            return e->tables[i];
    return NULL;
}
