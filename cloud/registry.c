/* registry.c - the device registry, read-only (see registry.h). */
#include "registry.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "sync/err.h"

struct cloud_registry {
    sqlite3 *db;
    sqlite3_stmt *get; /* tenant and status of a device */
};

int cloud_registry_open(const char *path, cloud_registry **out, char *err, size_t errlen)
{
    *out = NULL;
    cloud_registry *r = calloc(1, sizeof *r);
    if (!r)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, "SELECT tenant, status FROM devices WHERE device = ?", -1,
                           &r->get, NULL) != SQLITE_OK) {
        int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "cannot read the device registry %s: %s",
                             path, r->db ? sqlite3_errmsg(r->db) : "out of memory");
        cloud_registry_close(r);
        return rc;
    }
    /* syncctl holds its write transaction for milliseconds; wait rather than fail. */
    sqlite3_busy_timeout(r->db, 5000);
    *out = r;
    return SYNC_OK;
}

void cloud_registry_close(cloud_registry *r)
{
    if (!r)
        return;
    sqlite3_finalize(r->get);
    sqlite3_close(r->db);
    free(r);
}

int cloud_registry_allows(cloud_registry *r, const char *tenant, const char *device, char *why,
                          size_t whylen)
{
    sqlite3_bind_text(r->get, 1, device, -1, SQLITE_STATIC);
    int rc = sqlite3_step(r->get);
    int ret;
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(r->get, 0);
        const char *status = (const char *)sqlite3_column_text(r->get, 1);
        if (!t || strcmp(t, tenant) != 0)
            ret = sync_seterr(why, whylen, 0, "device '%s' is not registered for tenant '%s'",
                              device, tenant);
        else if (!status || strcmp(status, "active") != 0)
            ret = sync_seterr(why, whylen, 0, "device '%s' is %s", device,
                              status ? status : "of unknown status");
        else
            ret = 1;
    } else if (rc == SQLITE_DONE) {
        ret = sync_seterr(why, whylen, 0, "device '%s' is not registered", device);
    } else {
        ret = sync_seterr(why, whylen, SYNC_ERR_DB, "reading the device registry: %s",
                          sqlite3_errmsg(r->db));
    }
    sqlite3_reset(r->get);
    return ret;
}

int cloud_registry_each_active(cloud_registry *r, const char *tenant,
                               void (*cb)(void *ctx, const char *device), void *ctx)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT device FROM devices WHERE tenant = ? AND status = 'active'", -1,
                           &q, NULL) != SQLITE_OK)
        return SYNC_ERR_DB;
    sqlite3_bind_text(q, 1, tenant, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(q, 0);
        if (d)
            cb(ctx, d);
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}
