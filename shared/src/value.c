/* value.c - names and comparison of sync_value, the typed column value.
 *
 * Promise: both functions are total; they accept any sync_value, including one whose type field
 * holds a number outside the enum, without reading memory the value does not describe.
 */
#include <math.h>
#include <string.h>

#include "sync/value.h"

/* Returns the schema-file spelling of t, or "unknown" for a number outside the enum. */
const char *sync_vtype_name(sync_vtype t)
{
    switch (t) {
    case SYNC_NULL:
        return "null";
    case SYNC_INT:
        return "integer";
    case SYNC_REAL:
        return "real";
    case SYNC_TEXT:
        return "text";
    case SYNC_BLOB:
        return "blob";
    }
    return "unknown";
}

/* Returns nonzero if a and b have the same type and value. Reals compare numerically, except
 * that a NaN equals any NaN: the question asked here is "would storing b change a?", and a
 * NaN-valued column rewritten with NaN has not changed. As a consequence 0.0 equals -0.0.
 * Text and blob compare byte by byte; a NULL pointer with length 0 equals any empty string. */
int sync_value_equal(const sync_value *a, const sync_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case SYNC_NULL:
        return 1;
    case SYNC_INT:
        return a->u.i == b->u.i;
    case SYNC_REAL:
        if (isnan(a->u.f) || isnan(b->u.f))
            return isnan(a->u.f) && isnan(b->u.f);
        return a->u.f == b->u.f;
    case SYNC_TEXT:
    case SYNC_BLOB:
        if (a->u.b.n != b->u.b.n)
            return 0;
        return a->u.b.n == 0 || memcmp(a->u.b.p, b->u.b.p, a->u.b.n) == 0;
    }
    return 0;
}
