/* store.h - the cloud's store: synced tables with per-row version metadata, the device table
 * that deduplicates by sequence number, the conflict log, and the server change sequence.
 *
 * Two backends keep the same tables with the same meaning (store_backend.h): an SQLite file
 * (store_sqlite.c) and a PostgreSQL database (store_pg.c). The `database` setting chooses.
 *
 * Each synced table gets bookkeeping columns: _version (only goes up), _deleted (tombstone),
 * _origin (device that wrote the current state), _hlc (its timestamp), _cseq (server change
 * sequence of the current state, indexed for catch-up), _colver (per column, the version that
 * last set it: what the merge policy compares), _conflict (a pending manual conflict) and _mtime
 * (server wall clock of the last write, in ms: when a tombstone may be compacted).
 *
 * Everything the applier writes for a group of batches is one transaction, and each batch a
 * savepoint inside it, so a batch is applied whole or not at all, and the device's last_seq
 * commits with the data it describes.
 */
#ifndef CLOUD_STORE_H
#define CLOUD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sync/record.h"
#include "sync/schema.h"

typedef struct cloud_store cloud_store;

typedef struct cloud_row {
    int exists;  /* a row (live or tombstone) is stored for the key */
    int deleted; /* it is a tombstone */
    uint64_t version, hlc, cseq;
    char origin[SYNC_MAX_ID + 1];
    uint32_t colver[SYNC_MAX_COLS]; /* per column: the row version that last set it (merge) */
    int64_t conflict;               /* id of a pending (manual) conflict on the row, or 0 */
    int left; /* only from cloud_store_pull_part: not a row but the leave of a row that moved
                 to another partition (deleted = 1, no values but the key) */
    sync_value vals[SYNC_MAX_COLS]; /* every column; from row_get they point into the store's
                                       scratch memory, valid until the next row_get */
} cloud_row;

typedef struct cloud_conflict {
    const sync_table *t;
    const sync_value *key;
    const char *device; /* the writer whose change met a newer server state */
    uint64_t seq;
    sync_op op;
    uint64_t base_version, server_version;
    uint64_t client_hlc, server_hlc;
    const char *server_origin;
    const uint8_t *client_cbor; /* the change's columns as a CBOR map (or null) */
    size_t client_len;
    const uint8_t *server_cbor; /* the server row as a CBOR map (null for a tombstone) */
    size_t server_len;
    const char *policy;  /* "lww" */
    const char *outcome; /* "client-wins" | "server-wins" */
} cloud_conflict;

/* Nonzero if `database` names a PostgreSQL database: a URI starting with postgresql:// or
 * postgres://, or a keyword=value connection string containing dbname= or host=. Anything else
 * is the path of an SQLite file. */
int cloud_store_is_pg(const char *database);

/* Opens (creating) the store, creates or widens the synced tables from the schema. sync_full:
 * every commit is durable (fsynced) before it returns. database: see cloud_store_is_pg. On
 * error *out is NULL and err says why (never with a password of the connection string). */
int cloud_store_open(const char *database, const sync_schema *s, int sync_full,
                     cloud_store **out, char *err, size_t errlen);
/* Opens read-only (for --checksum). */
int cloud_store_open_ro(const char *database, const sync_schema *s, cloud_store **out,
                        char *err, size_t errlen);
void cloud_store_close(cloud_store *st);
/* What the store is, for logs: "SQLite FILE" or "PostgreSQL dbname=... host=... port=...
 * user=..." (never a password). Owned by the store. */
const char *cloud_store_describe(cloud_store *st);

/* Each returns SYNC_OK or SYNC_ERR_DB (message via cloud_store_errmsg). */
int cloud_store_begin(cloud_store *st);
int cloud_store_commit(cloud_store *st);
void cloud_store_rollback(cloud_store *st);
int cloud_store_savepoint(cloud_store *st);
int cloud_store_release(cloud_store *st);
void cloud_store_rollback_savepoint(cloud_store *st);
const char *cloud_store_errmsg(cloud_store *st);

/* The highest seq applied for a device (0 if the device is new). */
int cloud_store_device_seq(cloud_store *st, const char *device, uint64_t *last_seq);
/* Records that a batch from device was processed: last_seq rises to at least last_seq,
 * `applied` changes were applied and `records` received. */
int cloud_store_device_done(cloud_store *st, const char *device, uint64_t last_seq,
                            uint64_t applied, uint64_t records);

int cloud_store_row_get(cloud_store *st, const sync_table *t, const sync_value *key,
                        cloud_row *row);
/* Writes row (every column of row->vals plus metadata) for key. */
int cloud_store_row_put(cloud_store *st, const sync_table *t, const sync_value *key,
                        const cloud_row *row);
/* Logs a conflict; *id (may be NULL) receives its id. */
int cloud_store_conflict(cloud_store *st, const cloud_conflict *c, int64_t *id);

/* A logged conflict as read back; strings and blobs are valid during the callback only. */
typedef struct cloud_conflict_rec {
    int64_t id, at;      /* at: ms since the epoch, server clock */
    const char *table;
    sync_value key;
    const char *device;  /* the writer */
    uint64_t seq;
    sync_op op;
    uint64_t base_version, server_version, client_hlc, server_hlc;
    const char *server_origin;
    const uint8_t *client_cbor; /* the change's columns (CBOR map), NULL for a delete */
    size_t client_len;
    const uint8_t *server_cbor; /* the server row then (CBOR map), NULL for a tombstone */
    size_t server_len;
    const char *policy, *outcome;
    int64_t resolved_at;    /* 0: not resolved */
    const char *resolution; /* how it was resolved (NULL if not) */
} cloud_conflict_rec;
typedef int (*cloud_conflict_cb)(void *ctx, const cloud_conflict_rec *c);
/* Calls cb for logged conflicts, newest first: only conflict `id` when id > 0, only pending
 * (manual, unresolved) ones when pending_only, at most limit (<= 0: all). cb returns 0 to go
 * on, 1 to stop, or an error that is returned. */
int cloud_store_conflicts(cloud_store *st, int64_t id, int pending_only, int64_t limit,
                          cloud_conflict_cb cb, void *ctx);
/* Marks conflict id resolved (with the words of `resolution`), and every other pending conflict
 * of the same row as superseded by it. Inside a write transaction. */
int cloud_store_conflict_resolved(cloud_store *st, const sync_table *t, const sync_value *key,
                                  int64_t id, const char *resolution);

/* Hands out the next server change sequence number. The counter is saved by the transaction
 * and rewound by a rollback. */
uint64_t cloud_store_next_cseq(cloud_store *st);
/* The cseq of the newest change stored for a table (0 if none), for delta `prev` links. */
int cloud_store_table_cseq(cloud_store *st, const sync_table *t, uint64_t *cseq);

/* A stored row as the whole-row change that retained row messages and catch-up pages carry:
 * INSERT with every column, or DELETE without columns for a tombstone (LEAVE, without columns,
 * for a row->left from a partition pull). out points into row and t (no copies). */
void cloud_row_change(const sync_table *t, const sync_value *key, const cloud_row *row,
                      sync_change *out);

/* What the store knows of a device that sent batches (_sync_devices). */
typedef struct cloud_device_rec {
    const char *device;
    uint64_t last_seq; /* highest change sequence number applied */
    uint64_t batches;  /* batches processed */
    uint64_t records;  /* records received */
    uint64_t applied;  /* changes applied */
    int64_t first_seen, last_seen; /* ms since the epoch, server clock (0: unknown) */
} cloud_device_rec;
typedef int (*cloud_device_cb)(void *ctx, const cloud_device_rec *d);
/* Calls cb for every device that ever sent a batch, by device id; the record's strings live
 * until cb returns. cb returns 0 to go on, 1 to stop, or an error that is returned. */
int cloud_store_devices(cloud_store *st, cloud_device_cb cb, void *ctx);

/* Store-wide figures for the cloud's statistics (the same for every consumer of the store). */
typedef struct cloud_counts {
    uint64_t devices;           /* devices that ever sent a batch */
    uint64_t active;            /* of them, those with a batch at or after active_since_ms */
    uint64_t conflicts_pending; /* conflicts waiting for a person (manual, unresolved) */
} cloud_counts;
int cloud_store_counts(cloud_store *st, int64_t active_since_ms, cloud_counts *out);

typedef int (*cloud_row_cb)(void *ctx, const sync_value *key, const cloud_row *row);
/* Rows of a table whose cseq is above `after`, in cseq order, at most `limit`: for each, fills
 * *row (values valid during the callback only) and *key and calls cb, which returns 0 to go on,
 * 1 to stop early (that row is not consumed), or an error. *remaining receives how many rows
 * above `after` the table holds in all (for progress). Read-only: call outside a write
 * transaction so pages show only committed data. */
int cloud_store_pull(cloud_store *st, const sync_table *t, uint64_t after, uint64_t limit,
                     cloud_row_cb cb, void *ctx, uint64_t *remaining);
/* Rows of t in key order, tombstones included, whose key is above *after_key (every row when
 * after_key is NULL), at most limit: for the snapshot pages of a new replica (docs/protocol.md,
 * "Catch-up"). Otherwise like cloud_store_pull: cb gets each row and its key (valid during the
 * callback), returns 0 to go on, 1 to stop (that row not consumed) or an error that is
 * returned; *remaining receives the number of rows whose key is above after_key. Read-only:
 * call outside a write transaction. An after_key of another type than the key column is
 * refused with SYNC_ERR_SCHEMA (message via cloud_store_errmsg). */
int cloud_store_pull_keys(cloud_store *st, const sync_table *t, const sync_value *after_key,
                          uint64_t limit, cloud_row_cb cb, void *ctx, uint64_t *remaining);

/* Tombstone compaction. Removes tombstones written before before_ms (server wall clock) and
 * raises the table's horizon to the highest cseq removed: a replica whose cursor is below the
 * horizon may have missed a delete the store no longer holds, so its catch-up must take the
 * table whole. The highest version removed becomes the table's version floor: a row created
 * again for a compacted key starts above it, so replicas that held the old row take the new one.
 * For a partitioned table it also removes the leaves recorded before before_ms, and raises the
 * horizon of each partition that lost tombstones (by the partition column they hold) or
 * leaves to the highest cseq removed from it (cloud_store_part_compacted). Leaves do not raise
 * the table's horizon: whole-table replicas never get them.
 * Call inside a write transaction; the horizons are saved by it. *removed receives the number
 * of tombstones (and leaves) removed. */
int cloud_store_compact(cloud_store *st, const sync_table *t, int64_t before_ms,
                        uint64_t *removed);
/* Reads again what another consumer sharing the database may have changed since: each table's
 * compaction horizon and version floor. A no-op for SQLite (one consumer per file); PostgreSQL
 * also does it at every cloud_store_begin, under the lock that orders write transactions.
 * Returns SYNC_OK or SYNC_ERR_DB. */
int cloud_store_refresh(cloud_store *st);
/* The table's compaction horizon (0: nothing compacted yet): the highest cseq of a removed
 * tombstone, for whole-table pulls (a partition pull uses cloud_store_part_compacted). */
uint64_t cloud_store_compacted(const cloud_store *st, const sync_table *t);
/* The table's version floor (0: nothing compacted yet). */
uint64_t cloud_store_version_floor(const cloud_store *st, const sync_table *t);

/* ---- partitions (docs/protocol.md, "Partitions") ---- */

/* Declares t partitioned by column col (schema index: an integer or text column, not the key).
 * Creates, if missing, what the partition queries need: an index on (col, _cseq) and the record
 * of rows that left a partition (_sync_moves). Call once after open, before anything below
 * for t. */
int cloud_store_partition(cloud_store *st, const sync_table *t, int col);
/* The cseq of the newest change of partition `part` of t (0 if none): the highest _cseq of its
 * rows (tombstones included: a tombstone keeps its partition column), of the leaves recorded
 * for it, and of what compaction removed from it (cloud_store_part_compacted), so it never goes
 * back: a replica that missed a delta of the partition notices by prev_cseq even when the
 * delta's changes were compacted since. Index lookups only. Inside or outside a write
 * transaction. */
int cloud_store_part_cseq(cloud_store *st, const sync_table *t, const sync_value *part,
                          uint64_t *cseq);
/* The compaction horizon of partition `part` of t: the highest cseq of its tombstones and its
 * leaves that compaction removed (0: none). A partition pull whose `after` is below it may
 * concern a delete or a leave the store no longer holds, so it is answered from the start;
 * other partitions' compactions do not raise it. Read from the store (so with several
 * consumers sharing a PostgreSQL database it sees the others' compactions once committed), with
 * an index lookup. Inside or outside a write transaction. */
int cloud_store_part_compacted(cloud_store *st, const sync_table *t, const sync_value *part,
                               uint64_t *horizon);
/* Records, inside a write transaction, that row `key` left partition `part` by the change
 * (version, cseq, hlc, origin): one record per (table, part, key), replaced by a later leave of
 * the same row from the same partition. The record's time (server clock, ms) decides when
 * compaction removes it. */
int cloud_store_leave(cloud_store *st, const sync_table *t, const sync_value *part,
                      const sync_value *key, uint64_t version, uint64_t cseq, uint64_t hlc,
                      const char *origin);
/* cloud_store_pull for one partition: the rows with col = part and _cseq > after (tombstones
 * included) and the leaves of part with cseq > after, merged in cseq order, at most limit in
 * all. A leave reaches cb as a row with left = 1, deleted = 1, its version, cseq, hlc and
 * origin, and no values. *remaining: rows and leaves above after. Read-only: call outside a
 * write transaction. */
int cloud_store_pull_part(cloud_store *st, const sync_table *t, const sync_value *part,
                          uint64_t after, uint64_t limit, cloud_row_cb cb, void *ctx,
                          uint64_t *remaining);
/* Calls cb for every distinct value of t's partition column among its rows (tombstones
 * included), so a starting consumer can publish every partition's head. The value is valid
 * during the callback. cb returns 0 to go on, 1 to stop, or an error that is returned. */
typedef int (*cloud_value_cb)(void *ctx, const sync_value *v);
int cloud_store_partitions(cloud_store *st, const sync_table *t, cloud_value_cb cb, void *ctx);

int cloud_store_checksum(cloud_store *st, const sync_table *t, char hex[65], long long *rows,
                         char *err, size_t errlen);

#endif
