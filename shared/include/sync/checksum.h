/* checksum.h - a content checksum of a synced table, the same on an edge database and on the
 * cloud store, so "are these replicas identical?" is one comparison (tests, demo, operators).
 *
 * Rows are read ordered by key; each schema column is hashed (SHA-256, mbedTLS) as a type tag
 * and its value normalised to the schema type (an integral value in a real column hashes as
 * a real), so the result does not depend on SQLite's storage class choices.
 */
#ifndef SYNC_CHECKSUM_H
#define SYNC_CHECKSUM_H

#include <sqlite3.h>

#include "sync/schema.h"
#include "sync/value.h"

/* Checksums table t in db. `where` is an optional SQL condition fixed by the caller (never
 * user input), e.g. "_deleted = 0" for the cloud's live rows. hex receives 64 hex digits + NUL.
 * Returns SYNC_OK or SYNC_ERR_DB with a message. */
int sync_checksum_table(sqlite3 *db, const sync_table *t, const char *where, char hex[65],
                        long long *rows, char *err, size_t errlen);

/* The same checksum for rows that do not come from SQLite (the cloud's PostgreSQL store): the
 * caller feeds every row, in the order of the key as SQLite's BINARY collation sorts it
 * (integers numerically; text and blobs by their bytes, memcmp-style, a prefix first), and
 * gets exactly what sync_checksum_table gives for the same rows. */
typedef struct sync_checksum sync_checksum;
/* A new, empty checksum (free with sync_checksum_free), or NULL when out of memory. */
sync_checksum *sync_checksum_new(void);
/* Adds one row: vals[i] is the value of column i of t (every column, schema order). */
void sync_checksum_row(sync_checksum *c, const sync_table *t, const sync_value *vals);
/* Writes the result (64 hex digits + NUL) and the number of rows added. c stays allocated. */
void sync_checksum_finish(sync_checksum *c, char hex[65], long long *rows);
void sync_checksum_free(sync_checksum *c);

#endif
