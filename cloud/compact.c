/* compact.c - tombstone compaction (see compact.h). */
#include "compact.h"

#include "sync/err.h"
#include "sync/log.h"

int cloud_compact(cloud_store *st, const sync_schema *s, long retention_s, int64_t now_ms,
                  uint64_t *removed, char *err, size_t errlen)
{
    uint64_t total = 0;
    if (removed)
        *removed = 0;
    if (retention_s <= 0)
        return SYNC_OK;
    int64_t before = now_ms - (int64_t)retention_s * 1000;
    if (cloud_store_begin(st) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "compaction: %s", cloud_store_errmsg(st));
    for (int i = 0; i < sync_schema_ntables(s); i++) {
        const sync_table *t = sync_schema_table(s, i);
        uint64_t n = 0;
        if (cloud_store_compact(st, t, before, &n) != SYNC_OK) {
            int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "compacting '%s': %s", t->name,
                                 cloud_store_errmsg(st));
            cloud_store_rollback(st);
            return rc;
        }
        if (n > 0)
            sync_notice("compaction: removed %llu tombstones (or partition leaves) of '%s' "
                        "older than %ld s (replicas of the whole table behind change %llu will "
                        "resync it in full)",
                        (unsigned long long)n, t->name, retention_s,
                        (unsigned long long)cloud_store_compacted(st, t));
        total += n;
    }
    if (cloud_store_commit(st) != SYNC_OK) {
        int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "compaction: %s", cloud_store_errmsg(st));
        cloud_store_rollback(st);
        return rc;
    }
    if (removed)
        *removed = total;
    return SYNC_OK;
}
