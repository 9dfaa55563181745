/* sqlutil.c - SQLite helpers (see sync/sqlutil.h). */
#include "sync/sqlutil.h"

#include <stdio.h>

#include "sync/err.h"

int sync_sql_bind(sqlite3_stmt *st, int idx, const sync_value *v)
{
    switch (v->type) {
    case SYNC_INT:
        return sqlite3_bind_int64(st, idx, v->u.i);
    case SYNC_REAL:
        return sqlite3_bind_double(st, idx, v->u.f);
    case SYNC_TEXT:
        return sqlite3_bind_text64(st, idx,
                                   (const char *)(v->u.b.p ? v->u.b.p : (const uint8_t *)""),
                                   v->u.b.n, SQLITE_STATIC, SQLITE_UTF8);
    case SYNC_BLOB:
        return sqlite3_bind_blob64(st, idx, v->u.b.p ? (const void *)v->u.b.p : (const void *)"",
                                   v->u.b.n, SQLITE_STATIC);
    case SYNC_NULL:
    default:
        return sqlite3_bind_null(st, idx);
    }
}

void sync_sql_column(sqlite3_stmt *st, int idx, sync_value *v)
{
    switch (sqlite3_column_type(st, idx)) {
    case SQLITE_INTEGER:
        v->type = SYNC_INT;
        v->u.i = sqlite3_column_int64(st, idx);
        break;
    case SQLITE_FLOAT:
        v->type = SYNC_REAL;
        v->u.f = sqlite3_column_double(st, idx);
        break;
    case SQLITE_TEXT:
        v->type = SYNC_TEXT;
        v->u.b.p = sqlite3_column_text(st, idx);
        v->u.b.n = (size_t)sqlite3_column_bytes(st, idx);
        break;
    case SQLITE_BLOB:
        v->type = SYNC_BLOB;
        v->u.b.p = sqlite3_column_blob(st, idx);
        v->u.b.n = (size_t)sqlite3_column_bytes(st, idx);
        break;
    default:
        v->type = SYNC_NULL;
        break;
    }
}

int sync_sql_exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc =
            sync_seterr(err, errlen, SYNC_ERR_DB, "%s: %s", what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return rc;
    }
    return SYNC_OK;
}

int sync_sql_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return sync_seterr(err, errlen, SYNC_ERR_DB, "preparing \"%.120s\": %s", sql,
                           sqlite3_errmsg(db));
    }
    return SYNC_OK;
}

int sync_sql_open(const char *path, int create, const char *synchronous, sqlite3 **db, char *err,
                  size_t errlen)
{
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, db, flags, NULL) != SQLITE_OK) {
        int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "cannot open database %s: %s", path,
                             *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return rc;
    }
    sqlite3_busy_timeout(*db, 10000);
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;", synchronous);
    int rc = sync_sql_exec(*db, sql, path, err, errlen);
    if (rc != SYNC_OK) {
        sqlite3_close(*db);
        *db = NULL;
    }
    return rc;
}
