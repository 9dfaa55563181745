/* store.c - the store interface of store.h, dispatched to the backend that opened the store
 * (see store_backend.h): SQLite for a file path, PostgreSQL for a connection string.
 */
#include <string.h>

#include "store_backend.h"

int cloud_store_is_pg(const char *database)
{
    if (!database)
        return 0;
    /* libpq's two spellings of a connection URI, or keyword=value connection strings (a file
     * path naming a database or a host that way would be odd enough). */
    return strncmp(database, "postgresql://", 13) == 0 ||
           strncmp(database, "postgres://", 11) == 0 || strstr(database, "dbname=") != NULL ||
           strstr(database, "host=") != NULL;
}

int cloud_store_open(const char *database, const sync_schema *s, int sync_full, cloud_store **out,
                     char *err, size_t errlen)
{
    if (cloud_store_is_pg(database))
        return cloud_store_pg_open(database, s, sync_full, out, err, errlen);
    return cloud_store_sqlite_open(database, s, sync_full, out, err, errlen);
}

int cloud_store_open_ro(const char *database, const sync_schema *s, cloud_store **out, char *err,
                        size_t errlen)
{
    if (cloud_store_is_pg(database))
        return cloud_store_pg_open_ro(database, s, out, err, errlen);
    return cloud_store_sqlite_open_ro(database, s, out, err, errlen);
}

void cloud_store_close(cloud_store *st)
{
    if (st)
        st->ops->close(st);
}

const char *cloud_store_errmsg(cloud_store *st)
{
    return st->ops->errmsg(st);
}

const char *cloud_store_describe(cloud_store *st)
{
    return st->ops->describe(st);
}

int cloud_store_begin(cloud_store *st)
{
    return st->ops->begin(st);
}

int cloud_store_commit(cloud_store *st)
{
    return st->ops->commit(st);
}

void cloud_store_rollback(cloud_store *st)
{
    st->ops->rollback(st);
}

int cloud_store_savepoint(cloud_store *st)
{
    return st->ops->savepoint(st);
}

int cloud_store_release(cloud_store *st)
{
    return st->ops->release(st);
}

void cloud_store_rollback_savepoint(cloud_store *st)
{
    st->ops->rollback_savepoint(st);
}

int cloud_store_device_seq(cloud_store *st, const char *device, uint64_t *last_seq)
{
    return st->ops->device_seq(st, device, last_seq);
}

int cloud_store_device_done(cloud_store *st, const char *device, uint64_t last_seq,
                            uint64_t applied, uint64_t records)
{
    return st->ops->device_done(st, device, last_seq, applied, records);
}

int cloud_store_row_get(cloud_store *st, const sync_table *t, const sync_value *key,
                        cloud_row *row)
{
    return st->ops->row_get(st, t, key, row);
}

int cloud_store_row_put(cloud_store *st, const sync_table *t, const sync_value *key,
                        const cloud_row *row)
{
    return st->ops->row_put(st, t, key, row);
}

int cloud_store_conflict(cloud_store *st, const cloud_conflict *c, int64_t *id)
{
    return st->ops->conflict(st, c, id);
}

/* Both backends hand conflicts over as read; text columns a row leaves NULL become "" here, so
 * callers never see a NULL string. */
typedef struct conflicts_adapter {
    cloud_conflict_cb cb;
    void *ctx;
} conflicts_adapter;

static int conflicts_defaults(void *ctx, const cloud_conflict_rec *in)
{
    const conflicts_adapter *ad = ctx;
    cloud_conflict_rec c = *in;
    if (!c.table)
        c.table = "";
    if (!c.device)
        c.device = "";
    if (!c.server_origin)
        c.server_origin = "";
    if (!c.policy)
        c.policy = "";
    if (!c.outcome)
        c.outcome = "";
    return ad->cb(ad->ctx, &c);
}

int cloud_store_conflicts(cloud_store *st, int64_t id, int pending_only, int64_t limit,
                          cloud_conflict_cb cb, void *ctx)
{
    conflicts_adapter ad = {cb, ctx};
    return st->ops->conflicts(st, id, pending_only, limit, conflicts_defaults, &ad);
}

int cloud_store_conflict_resolved(cloud_store *st, const sync_table *t, const sync_value *key,
                                  int64_t id, const char *resolution)
{
    return st->ops->conflict_resolved(st, t, key, id, resolution);
}

uint64_t cloud_store_next_cseq(cloud_store *st)
{
    return st->ops->next_cseq(st);
}

int cloud_store_table_cseq(cloud_store *st, const sync_table *t, uint64_t *cseq)
{
    return st->ops->table_cseq(st, t, cseq);
}

int cloud_store_pull(cloud_store *st, const sync_table *t, uint64_t after, uint64_t limit,
                     cloud_row_cb cb, void *ctx, uint64_t *remaining)
{
    return st->ops->pull(st, t, after, limit, cb, ctx, remaining);
}

int cloud_store_pull_keys(cloud_store *st, const sync_table *t, const sync_value *after_key,
                          uint64_t limit, cloud_row_cb cb, void *ctx, uint64_t *remaining)
{
    return st->ops->pull_keys(st, t, after_key, limit, cb, ctx, remaining);
}

int cloud_store_compact(cloud_store *st, const sync_table *t, int64_t before_ms,
                        uint64_t *removed)
{
    return st->ops->compact(st, t, before_ms, removed);
}

int cloud_store_devices(cloud_store *st, cloud_device_cb cb, void *ctx)
{
    return st->ops->devices(st, cb, ctx);
}

int cloud_store_counts(cloud_store *st, int64_t active_since_ms, cloud_counts *out)
{
    memset(out, 0, sizeof *out);
    return st->ops->counts(st, active_since_ms, out);
}

int cloud_store_refresh(cloud_store *st)
{
    return st->ops->refresh(st);
}

uint64_t cloud_store_compacted(const cloud_store *st, const sync_table *t)
{
    return st->ops->compacted(st, t);
}

uint64_t cloud_store_version_floor(const cloud_store *st, const sync_table *t)
{
    return st->ops->version_floor(st, t);
}

int cloud_store_checksum(cloud_store *st, const sync_table *t, char hex[65], long long *rows,
                         char *err, size_t errlen)
{
    return st->ops->checksum(st, t, hex, rows, err, errlen);
}

int cloud_store_partition(cloud_store *st, const sync_table *t, int col)
{
    return st->ops->partition(st, t, col);
}

int cloud_store_part_cseq(cloud_store *st, const sync_table *t, const sync_value *part,
                          uint64_t *cseq)
{
    return st->ops->part_cseq(st, t, part, cseq);
}

int cloud_store_part_compacted(cloud_store *st, const sync_table *t, const sync_value *part,
                               uint64_t *horizon)
{
    return st->ops->part_compacted(st, t, part, horizon);
}

int cloud_store_leave(cloud_store *st, const sync_table *t, const sync_value *part,
                      const sync_value *key, uint64_t version, uint64_t cseq, uint64_t hlc,
                      const char *origin)
{
    return st->ops->leave(st, t, part, key, version, cseq, hlc, origin);
}

int cloud_store_pull_part(cloud_store *st, const sync_table *t, const sync_value *part,
                          uint64_t after, uint64_t limit, cloud_row_cb cb, void *ctx,
                          uint64_t *remaining)
{
    return st->ops->pull_part(st, t, part, after, limit, cb, ctx, remaining);
}

int cloud_store_partitions(cloud_store *st, const sync_table *t, cloud_value_cb cb, void *ctx)
{
    return st->ops->partitions(st, t, cb, ctx);
}

void cloud_row_change(const sync_table *t, const sync_value *key, const cloud_row *row,
                      sync_change *out)
{
    out->key = *key;
    out->op = row->left ? SYNC_OP_LEAVE : row->deleted ? SYNC_OP_DELETE : SYNC_OP_INSERT;
    out->version = row->version;
    out->cseq = row->cseq;
    out->hlc = row->hlc;
    out->origin = row->origin;
    out->origin_len = strlen(row->origin);
    out->ncols = 0;
    if (!row->exists || row->deleted)
        return;
    for (int i = 0; i < t->ncols; i++) {
        out->cols[i].name = t->cols[i].name;
        out->cols[i].name_len = strlen(t->cols[i].name);
        out->cols[i].v = row->vals[i];
    }
    out->ncols = (size_t)t->ncols;
}
