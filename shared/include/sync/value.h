/* value.h - a typed column value as it travels between SQLite and CBOR.
 *
 * Text and blob values do not own their bytes: they point into the buffer they were decoded
 * from (a CBOR payload) or into SQLite's column memory, and are valid only as long as that is.
 * Text is not NUL-terminated.
 */
#ifndef SYNC_VALUE_H
#define SYNC_VALUE_H

#include <stddef.h>
#include <stdint.h>

typedef enum sync_vtype {
    SYNC_NULL = 0,
    SYNC_INT = 1,
    SYNC_REAL = 2,
    SYNC_TEXT = 3,
    SYNC_BLOB = 4,
} sync_vtype;

typedef struct sync_value {
    sync_vtype type; /* which member of u is valid */
    union {
        int64_t i; /* SYNC_INT */
        double f;  /* SYNC_REAL */
        struct {
            const uint8_t *p; /* first byte (may be NULL when n == 0) */
            size_t n;         /* length in bytes */
        } b;                  /* SYNC_TEXT and SYNC_BLOB */
    } u;
} sync_value;

/* Name of a value type as used in schema files and messages: "null", "integer", "real",
 * "text", "blob". */
const char *sync_vtype_name(sync_vtype t);

/* Nonzero if a and b hold the same type and the same value (bytes compared for text/blob). */
int sync_value_equal(const sync_value *a, const sync_value *b);

#endif
