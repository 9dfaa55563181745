/* replica.h - applying the cloud's downstream changes to the local tables.
 *
 * A change is applied only if its version is newer than the version this replica holds for
 * the row (so redelivered or reordered deltas are harmless). Columns the application changed
 * locally and the cloud has not acknowledged yet are left alone: the cloud's answer to those
 * pending changes (its ack, or the delta of the outcome) settles them. Must be called inside a
 * transaction begun with edge_db_begin(e, 1), so nothing applied here is captured again.
 */
#ifndef EDGE_REPLICA_H
#define EDGE_REPLICA_H

#include "edgedb.h"
#include "sync/record.h"

typedef struct edge_replica edge_replica;
struct edge_pull;

/* Tells the replica which catch-up tracker to inform of each applied delta (may be NULL). */
void edge_replica_set_pull(edge_replica *r, struct edge_pull *p);

/* Prepares per-table statements. On error *out is NULL. */
int edge_replica_new(edge_db *db, edge_replica **out, char *err, size_t errlen);
void edge_replica_free(edge_replica *r);

/* Applies one row state or change. op INSERT/UPDATE sets cols; DELETE removes the row.
 * force=1 applies even when the held version equals `version` (an ack telling us our change
 * lost: the local row holds the losing value at the same server version). */
int edge_replica_put(edge_replica *r, const sync_table *t, const sync_value *key, sync_op op,
                     const sync_colval *cols, size_t ncols, uint64_t version, int force);

/* A local change to this row was refused by the cloud: drops the local row and the version held
 * for it, and pulls the table again from the start, which restores the cloud's row if it has
 * one. Inside a transaction begun with edge_db_begin(db, 1). */
int edge_replica_refused(edge_replica *r, const sync_table *t, const sync_value *key);

/* Decodes and applies one delta message. Returns SYNC_OK, or an error for a malformed message
 * (nothing more is applied from it) or a database failure. */
int edge_replica_apply_delta(edge_replica *r, const void *payload, size_t len, char *err,
                             size_t errlen);

/* Changes applied and skipped (already held or older) since start. */
unsigned long edge_replica_applied(const edge_replica *r);
unsigned long edge_replica_skipped(const edge_replica *r);

/* Largest HLC seen in downstream changes (to keep the edge's clock causal). */
uint64_t edge_replica_max_hlc(const edge_replica *r);

#endif
