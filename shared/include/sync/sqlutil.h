/* sqlutil.h - small SQLite helpers both daemons use: values in and out of statements, running
 * SQL with an error message, and opening a database with the project's pragmas. */
#ifndef SYNC_SQLUTIL_H
#define SYNC_SQLUTIL_H

#include <sqlite3.h>
#include <stddef.h>

#include "sync/value.h"

/* Binds v to parameter idx. Text/blob are bound SQLITE_STATIC: v's bytes must stay valid until
 * the statement is reset. Returns an SQLite result code. */
int sync_sql_bind(sqlite3_stmt *st, int idx, const sync_value *v);

/* Reads column idx of the current row into v (pointing into SQLite's memory: valid until the
 * statement is stepped, reset or finalized). */
void sync_sql_column(sqlite3_stmt *st, int idx, sync_value *v);

/* Runs one or more statements; on failure returns SYNC_ERR_DB with "what: sqlite message". */
int sync_sql_exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen);

/* Prepares a persistent statement; on failure returns SYNC_ERR_DB with the message. */
int sync_sql_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, char *err, size_t errlen);

/* Opens (creating if asked) a database in WAL mode with a busy timeout and the given
 * synchronous level ("FULL" or "NORMAL"). On error *db is NULL. */
int sync_sql_open(const char *path, int create, const char *synchronous, sqlite3 **db, char *err,
                  size_t errlen);

#endif
