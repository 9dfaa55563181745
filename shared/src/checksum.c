/* checksum.c - content checksum of a synced table (see sync/checksum.h). */
#include "sync/checksum.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mbedtls_compat.h"
#include "sync/err.h"

static void put_u64(mbedtls_sha256_context *h, uint8_t tag, uint64_t v)
{
    uint8_t b[9];
    b[0] = tag;
    for (int i = 0; i < 8; i++)
        b[1 + i] = (uint8_t)(v >> (56 - 8 * i));
    sync_sha256_update(h, b, sizeof b);
}

/* Hashes one column value, normalised to the schema type so that storage class choices
 * (3 vs 3.0 in a real column) do not change the result. */
static void hash_value(mbedtls_sha256_context *h, sqlite3_stmt *st, int i, sync_vtype want)
{
    int t = sqlite3_column_type(st, i);
    if (t == SQLITE_NULL) {
        uint8_t z = 0;
        sync_sha256_update(h, &z, 1);
        return;
    }
    if (want == SYNC_REAL && (t == SQLITE_INTEGER || t == SQLITE_FLOAT)) {
        double d = sqlite3_column_double(st, i);
        if (d == 0.0)
            d = 0.0; /* -0.0 and 0.0 are the same value; a REAL column stores both as 0.0 */
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        put_u64(h, SYNC_REAL, bits);
        return;
    }
    if (t == SQLITE_INTEGER) {
        put_u64(h, SYNC_INT, (uint64_t)sqlite3_column_int64(st, i));
        return;
    }
    if (t == SQLITE_FLOAT) {
        double d = sqlite3_column_double(st, i);
        if (d == 0.0)
            d = 0.0;
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        put_u64(h, SYNC_REAL, bits);
        return;
    }
    const void *p =
        t == SQLITE_TEXT ? (const void *)sqlite3_column_text(st, i) : sqlite3_column_blob(st, i);
    int n = sqlite3_column_bytes(st, i);
    put_u64(h, t == SQLITE_TEXT ? SYNC_TEXT : SYNC_BLOB, (uint64_t)n);
    if (n > 0)
        sync_sha256_update(h, p, (size_t)n);
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
    mbedtls_sha256_context h;
    mbedtls_sha256_init(&h);
    sync_sha256_starts(&h);
    long long n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < t->ncols; i++)
            hash_value(&h, st, i, t->cols[i].type);
        uint8_t sep = 0xFF;
        sync_sha256_update(&h, &sep, 1);
        n++;
    }
    int ret = SYNC_OK;
    if (rc != SQLITE_DONE)
        ret = sync_seterr(err, errlen, SYNC_ERR_DB, "checksum of '%s': %s", t->name,
                          sqlite3_errmsg(db));
    sqlite3_finalize(st);
    uint8_t digest[32];
    sync_sha256_finish(&h, digest);
    mbedtls_sha256_free(&h);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    *rows = n;
    return ret;
}
