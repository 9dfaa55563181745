/* checksum.c - content checksum of a synced table (see sync/checksum.h).
 *
 * Both entry points hash sync_values through the same function, so a table read from SQLite
 * and the same rows read from another store give the same digest.
 */
#include "sync/checksum.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mbedtls_compat.h"
#include "sync/err.h"
#include "sync/sqlutil.h"

struct sync_checksum {
    mbedtls_sha256_context h; /* running digest */
    long long rows;           /* rows added */
};

static void put_u64(mbedtls_sha256_context *h, uint8_t tag, uint64_t v)
{
    uint8_t b[9];
    b[0] = tag;
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    sync_sha256_update(h, b, sizeof b);
}

static void put_real(mbedtls_sha256_context *h, double d)
{
    if (d == 0.0)
        d = 0.0; /* -0.0 and 0.0 are the same value; a REAL column stores both as 0.0 */
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    put_u64(h, SYNC_REAL, bits);
}

/* Hashes one column value, normalised to the schema type so that storage class choices
 * (3 vs 3.0 in a real column) do not change the result. */
static void hash_value(mbedtls_sha256_context *h, const sync_value *v, sync_vtype want)
{
    switch (v->type) {
    case SYNC_NULL: {
        uint8_t z = 0;
        sync_sha256_update(h, &z, 1);
        return;
    }
    case SYNC_INT:
        if (want == SYNC_REAL)
            put_real(h, (double)v->u.i);
        else
            put_u64(h, SYNC_INT, (uint64_t)v->u.i);
        return;
    case SYNC_REAL:
        put_real(h, v->u.f);
        return;
    case SYNC_TEXT:
    case SYNC_BLOB:
    default:
        put_u64(h, (uint8_t)v->type, (uint64_t)v->u.b.n);
        if (v->u.b.n > 0)
            sync_sha256_update(h, v->u.b.p, v->u.b.n);
        return;
    }
}

sync_checksum *sync_checksum_new(void)
{
    sync_checksum *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    mbedtls_sha256_init(&c->h);
    sync_sha256_starts(&c->h);
    return c;
}

void sync_checksum_row(sync_checksum *c, const sync_table *t, const sync_value *vals)
{
    for (int i = 0; i < t->ncols; i++)
        hash_value(&c->h, &vals[i], t->cols[i].type);
    uint8_t sep = 0xFF;
    sync_sha256_update(&c->h, &sep, 1);
    c->rows++;
}

void sync_checksum_finish(sync_checksum *c, char hex[65], long long *rows)
{
    uint8_t digest[32];
    sync_sha256_finish(&c->h, digest);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    *rows = c->rows;
}

void sync_checksum_free(sync_checksum *c)
{
    if (!c)
        return;
    mbedtls_sha256_free(&c->h);
    free(c);
}

int sync_checksum_table(sqlite3 *db, const sync_table *t, const char *where, char hex[65],
                        long long *rows, char *err, size_t errlen)
{
    char sql[8192];
    size_t at = (size_t)snprintf(sql, sizeof sql, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        at +=
            (size_t)snprintf(sql + at, sizeof sql - at, "%s\"%s\"", i ? "," : "", t->cols[i].name);
    at += (size_t)snprintf(sql + at, sizeof sql - at,
                           " FROM \"%s\"%s%s ORDER BY \"%s\" COLLATE BINARY", t->name,
                           where ? " WHERE " : "", where ? where : "", t->cols[t->key].name);
    if (at >= sizeof sql)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "checksum query too long");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "checksum of '%s': %s", t->name,
                           sqlite3_errmsg(db));
    sync_checksum *c = sync_checksum_new();
    if (!c) {
        sqlite3_finalize(st);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    sync_value vals[SYNC_MAX_COLS];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < t->ncols; i++)
            sync_sql_column(st, i, &vals[i]);
        sync_checksum_row(c, t, vals);
    }
    int ret = SYNC_OK;
    if (rc != SQLITE_DONE)
        ret = sync_seterr(err, errlen, SYNC_ERR_DB, "checksum of '%s': %s", t->name,
                          sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sync_checksum_finish(c, hex, rows);
    sync_checksum_free(c);
    return ret;
}
