/* schema.h - the synced tables, declared once in a schema file that edge and cloud both read.
 *
 * File format (plain text, `#` comments):
 *     version 3
 *     table forms owner pi-master     (master mode: only that device writes it)
 *     table items
 *     column id integer key
 *     column name text notnull
 *     column price real
 * TYPE is integer | real | text | blob; each table has exactly one `key` column. Names are
 * SQL identifiers ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes, not starting with `_sync`), so
 * SQL built from the schema never contains anything that came from a payload.
 */
#ifndef SYNC_SCHEMA_H
#define SYNC_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "sync/record.h"
#include "sync/value.h"

typedef struct sync_column {
    char name[SYNC_MAX_NAME + 1]; /* NUL-terminated identifier */
    sync_vtype type;              /* SYNC_INT, SYNC_REAL, SYNC_TEXT or SYNC_BLOB */
    int notnull;                  /* NULL is refused */
} sync_column;

typedef struct sync_table {
    char name[SYNC_MAX_NAME + 1]; /* NUL-terminated identifier */
    int index;                    /* position in the schema (0-based) */
    int key;                      /* index of the primary key column in cols */
    int ncols;                    /* number of columns */
    char owner[SYNC_MAX_ID + 1];  /* master mode: the only device that may write it ("" = any) */
    sync_column cols[SYNC_MAX_COLS];
} sync_table;

typedef struct sync_schema sync_schema;

/* Loads and validates a schema file. On success *out owns the schema (free with
 * sync_schema_free). On error *out is NULL and err says "PATH:LINE: what". */
int sync_schema_load(const char *path, sync_schema **out, char *err, size_t errlen);
void sync_schema_free(sync_schema *s);

uint32_t sync_schema_version(const sync_schema *s);
int sync_schema_ntables(const sync_schema *s);
const sync_table *sync_schema_table(const sync_schema *s, int i);
/* Looks a table up by name (name need not be NUL-terminated); NULL if unknown. */
const sync_table *sync_schema_find(const sync_schema *s, const char *name, size_t len);

/* Index of the column with this name, or -1. */
int sync_table_col(const sync_table *t, const char *name, size_t len);

/* Checks that v may be stored in column c: type matches (an integer is accepted for a real
 * column and converted in place), NULL only if the column allows it (never for the key).
 * Text must be well-formed UTF-8 (SQLite stores whatever it is given; the wire refuses it).
 * Returns SYNC_OK or SYNC_ERR_SCHEMA with "column 'x': expected integer, got text". */
int sync_column_check(const sync_table *t, int col, sync_value *v, char *err, size_t errlen);

#endif
