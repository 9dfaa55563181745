/* store_backend.h - what a store backend provides (internal to cloud/store*.c).
 *
 * store.h is the interface the rest of the cloud calls; store.c turns each of those calls into
 * a call through the ops table of the backend that opened the store. A backend's own struct
 * begins with a `cloud_store` (so a pointer to one is a pointer to the other), and every
 * function of its table has exactly the contract of the store.h function of the same name.
 *
 * Backends: store_sqlite.c (a file path) and store_pg.c (a PostgreSQL connection string).
 */
#ifndef CLOUD_STORE_BACKEND_H
#define CLOUD_STORE_BACKEND_H

#include "store.h"

typedef struct cloud_store_ops {
    const char *name; /* "SQLite", "PostgreSQL": for logs */
    void (*close)(cloud_store *st);
    const char *(*errmsg)(cloud_store *st);
    const char *(*describe)(cloud_store *st);
    int (*begin)(cloud_store *st);
    int (*commit)(cloud_store *st);
    void (*rollback)(cloud_store *st);
    int (*savepoint)(cloud_store *st);
    int (*release)(cloud_store *st);
    void (*rollback_savepoint)(cloud_store *st);
    int (*device_seq)(cloud_store *st, const char *device, uint64_t *last_seq);
    int (*device_done)(cloud_store *st, const char *device, uint64_t last_seq, uint64_t applied,
                       uint64_t records);
    int (*row_get)(cloud_store *st, const sync_table *t, const sync_value *key, cloud_row *row);
    int (*row_put)(cloud_store *st, const sync_table *t, const sync_value *key,
                   const cloud_row *row);
    int (*conflict)(cloud_store *st, const cloud_conflict *c, int64_t *id);
    int (*conflicts)(cloud_store *st, int64_t id, int pending_only, int64_t limit,
                     cloud_conflict_cb cb, void *ctx);
    int (*conflict_resolved)(cloud_store *st, const sync_table *t, const sync_value *key,
                             int64_t id, const char *resolution);
    uint64_t (*next_cseq)(cloud_store *st);
    int (*table_cseq)(cloud_store *st, const sync_table *t, uint64_t *cseq);
    int (*pull)(cloud_store *st, const sync_table *t, uint64_t after, uint64_t limit,
                cloud_row_cb cb, void *ctx, uint64_t *remaining);
    int (*pull_keys)(cloud_store *st, const sync_table *t, const sync_value *after_key,
                     uint64_t limit, cloud_row_cb cb, void *ctx, uint64_t *remaining);
    int (*compact)(cloud_store *st, const sync_table *t, int64_t before_ms, uint64_t *removed);
    int (*refresh)(cloud_store *st);
    uint64_t (*compacted)(const cloud_store *st, const sync_table *t);
    uint64_t (*version_floor)(const cloud_store *st, const sync_table *t);
    int (*devices)(cloud_store *st, cloud_device_cb cb, void *ctx);
    int (*counts)(cloud_store *st, int64_t active_since_ms, cloud_counts *out);
    int (*checksum)(cloud_store *st, const sync_table *t, char hex[65], long long *rows,
                    char *err, size_t errlen);
    /* Partitions (store.h, "partitions"). */
    int (*partition)(cloud_store *st, const sync_table *t, int col);
    int (*part_cseq)(cloud_store *st, const sync_table *t, const sync_value *part, uint64_t *cseq);
    int (*part_compacted)(cloud_store *st, const sync_table *t, const sync_value *part,
                          uint64_t *horizon);
    int (*leave)(cloud_store *st, const sync_table *t, const sync_value *part,
                 const sync_value *key, uint64_t version, uint64_t cseq, uint64_t hlc,
                 const char *origin);
    int (*pull_part)(cloud_store *st, const sync_table *t, const sync_value *part, uint64_t after,
                     uint64_t limit, cloud_row_cb cb, void *ctx, uint64_t *remaining);
    int (*partitions)(cloud_store *st, const sync_table *t, cloud_value_cb cb, void *ctx);
} cloud_store_ops;

struct cloud_store {
    const cloud_store_ops *ops; /* the backend that opened the store */
};

/* The backends' constructors, with the contracts of cloud_store_open / cloud_store_open_ro. */
int cloud_store_sqlite_open(const char *path, const sync_schema *s, int sync_full,
                            cloud_store **out, char *err, size_t errlen);
int cloud_store_sqlite_open_ro(const char *path, const sync_schema *s, cloud_store **out,
                               char *err, size_t errlen);
int cloud_store_pg_open(const char *conninfo, const sync_schema *s, int sync_full,
                        cloud_store **out, char *err, size_t errlen);
int cloud_store_pg_open_ro(const char *conninfo, const sync_schema *s, cloud_store **out,
                           char *err, size_t errlen);

#endif
