/* edgedb.h - syncedge's view of the application database: opening it, the bookkeeping tables
 * (_sync_ctl, _sync_outbox, _sync_rows, _sync_dead), the synced tables, and the small
 * statements the outbox and replica modules share.
 *
 * All of it lives in the application's own database file so that a captured change and the
 * application's write are committed (or lost) together.
 */
#ifndef EDGE_EDGEDB_H
#define EDGE_EDGEDB_H

#include <sqlite3.h>
#include <stdint.h>

#include "config.h"
#include "sync/schema.h"

#define EDGE_MAX_TABLES 256

/* The partitions of one table the policy names (docs/protocol.md, "Partitions"): which values
 * of its partition column the device receives and may write. */
typedef struct edge_parts {
    int col;           /* the partition column (index in the table's columns); -1: none named */
    int recv_limited;  /* 1: the table is received for the values in recv only (else whole) */
    int write_limited; /* 1: the device may write rows whose column holds a value in wr only */
    int nrecv, nwr;
    sync_value *recv, *wr; /* owned, text bytes included (edge_parts_clear frees them) */
} edge_parts;

/* Frees the value lists of p and sets it to "no partitions" (col -1). */
void edge_parts_clear(edge_parts *p);
/* Copies src into dst (which must be clear); SYNC_ERR_NOMEM leaves dst clear. */
int edge_parts_copy(edge_parts *dst, const edge_parts *src);
/* Appends a copy of v (an integer or text) to list (*list, *n) unless it holds it already. */
int edge_parts_add(sync_value **list, int *n, const sync_value *v);
/* Frees a list made by edge_parts_add, text bytes included. */
void edge_values_free(sync_value *list, int n);
/* Index of v in list, or -1. */
int edge_parts_find(const sync_value *list, int n, const sync_value *v);
/* 1 when a and b name the same column, limits and value sets (in any order). */
int edge_parts_equal(const edge_parts *a, const edge_parts *b);
/* Writes v as an SQL literal (12, 'it''s'); returns SYNC_ERR_NOSPACE when it does not fit. */
int edge_sql_literal(char *buf, size_t n, const sync_value *v);

typedef struct edge_db {
    sqlite3 *db;
    const sync_schema *schema; /* borrowed */
    int ntables;               /* synced tables */
    const sync_table *tables[EDGE_MAX_TABLES];
    int nv;                       /* value columns v0..v(nv-1) in the outbox */
    int data_version;             /* last PRAGMA data_version seen */
    double busy_since;            /* monotonic start of the current wait for a lock */
    long cache_kib;               /* page cache set now (edge_db_cache) */
    char device[SYNC_MAX_ID + 1]; /* this device: tables owned by others are read-only */
    /* The cloud's policy for this device (policy.h), by position in tables; without one every
     * table is received and none is read-only by policy. */
    int have_policy;
    unsigned long policy_gen;          /* counts edge_db_load_policy calls (what follows it) */
    uint8_t recv[EDGE_MAX_TABLES];     /* 1: the device receives the table (whole, or by the
                                          partitions in parts) */
    uint8_t readonly[EDGE_MAX_TABLES]; /* 1: the policy does not let it write the table */
    edge_parts parts[EDGE_MAX_TABLES]; /* partitions named by the policy, by position */
    sqlite3_stmt *begin, *commit, *rollback, *set_applying, *version_get, *version_put, *pending,
        *data_version_st, *outbox_count, *version_del, *dirty_put, *dirty_del, *dirty_all,
        *quiet_q;
} edge_db;

/* Sets the connection's page cache: kib KiB (a large catch-up writes rows all over the
 * tables, and a small cache then rereads pages for every row), or back to the small default
 * with kib = 0. */
int edge_db_cache(edge_db *e, long kib);

/* Reads the policy stored in _sync_policy (and its partitions, _sync_policy_part) into
 * have_policy, recv, readonly and parts. */
int edge_db_load_policy(edge_db *e, char *err, size_t errlen);

/* The table's position in e->tables, or -1. */
int edge_db_slot(const edge_db *e, const sync_table *t);

/* How the device receives the table at slot: not at all, whole, or some partitions only. */
enum { EDGE_RECV_NONE = 0, EDGE_RECV_WHOLE = 1, EDGE_RECV_PARTS = 2 };
int edge_db_recv_mode(const edge_db *e, int slot);

/* Opens the database (creating it if missing), creates missing synced tables from the schema,
 * checks existing ones have the schema's columns and key, creates the bookkeeping tables and
 * installs capture triggers (capturing rows already present the first time a table is
 * attached). Refuses a database attached earlier as another tenant/device. */
int edge_db_open(edge_db *e, const edge_config *c, const sync_schema *s, char *err, size_t errlen);
void edge_db_close(edge_db *e);

/* Opens read-only for --checksum (no bookkeeping is touched). */
int edge_db_open_ro(edge_db *e, const edge_config *c, const sync_schema *s, char *err,
                    size_t errlen);

/* Transactions. applying=1 marks the transaction as applying downstream changes, so the capture
 * triggers ignore it (no echo). BEGIN IMMEDIATE: we always write. */
int edge_db_begin(edge_db *e, int applying);
int edge_db_commit(edge_db *e);
void edge_db_rollback(edge_db *e);

/* Known server version of a row (0 if none). */
int edge_db_version(edge_db *e, const sync_table *t, const sync_value *key, uint64_t *version);
/* The same, and *left = 1 when that version is the one at which the row left a partition this
 * replica receives (see edge_db_set_left). */
int edge_db_version_left(edge_db *e, const sync_table *t, const sync_value *key,
                         uint64_t *version, int *left);
/* Raises the known server version of a row (never lowers it). */
int edge_db_set_version(edge_db *e, const sync_table *t, const sync_value *key, uint64_t version);
/* The row left the partition it was received by at `version` (a leave, op 3): remembered as
 * its version with the flag _sync_rows.gone, so that a later change of this version or above is
 * applied (the move into another partition received here carries the same version) and older
 * ones are not. Never lowers the version; applying any change at or above it clears the flag. */
int edge_db_set_left(edge_db *e, const sync_table *t, const sync_value *key, uint64_t version);
/* A row whose local values lag its held version (a downstream change was applied only in part
 * because local changes to it were pending): remembered in _sync_dirty with the cseq after which
 * a pull returns the row, until it can be re-read (see edge_replica_settle). */
int edge_db_mark_dirty(edge_db *e, const sync_table *t, const sync_value *key, uint64_t after);
int edge_db_clear_dirty(edge_db *e, const sync_table *t, const sync_value *key);

/* Forgets the server version known for a row. */
int edge_db_forget(edge_db *e, const sync_table *t, const sync_value *key);
/* Columns of a row with local changes not yet acknowledged: the OR of the outbox masks, all
 * bits when an insert or delete is pending, 0 when nothing is. */
int edge_db_pending(edge_db *e, const sync_table *t, const sync_value *key, uint64_t *mask);

/* *quiet = 1 when table t has no local change waiting in the outbox and no row marked dirty,
 * else 0: a replica applying many rows in one transaction then needs neither per-row check. */
int edge_db_table_quiet(edge_db *e, const sync_table *t, int *quiet);
/* Nonzero when another connection has committed since the last call. */
int edge_db_changed(edge_db *e);
/* Rows in the outbox. */
long long edge_db_outbox_count(edge_db *e);

/* Finds a synced table by name; NULL if the name is not synced here. */
const sync_table *edge_db_table(const edge_db *e, const char *name, size_t len);

/* Installs the capture triggers (capture.c). */
int edge_capture_install(edge_db *e, char *err, size_t errlen);

#endif
