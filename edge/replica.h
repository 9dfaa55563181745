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

/* Applies one row state or change. op INSERT/UPDATE sets cols; DELETE removes the row; LEAVE
 * (from a partition's stream: the row moved to another partition) removes it like a delete and
 * remembers `version` as the one it left at (edge_db_set_left), so that the move into another
 * partition received here, which carries the same version, is applied after it.
 * force=1 applies even when the held version equals `version` (an ack telling us our change
 * lost: the local row holds the losing value at the same server version). */
int edge_replica_put(edge_replica *r, const sync_table *t, const sync_value *key, sync_op op,
                     const sync_colval *cols, size_t ncols, uint64_t version, int force,
                     uint64_t reread_from, uint64_t also_pending);
/* reread_from: a cseq after which a pull returns this row's state (the change's cseq - 1, or
 * a table cursor from before it), used if pending local changes keep part of it out.
 * also_pending: columns to treat as pending besides the outbox's (later changes of the same
 * acknowledged batch, whose rows are already gone from the outbox); all bits for a row. */

/* Tells the replica that the caller's transaction now applies many rows of table t (a delta
 * or a catch-up page): it looks once whether t has local changes waiting or rows marked dirty,
 * and while it has neither, edge_replica_put skips both per-row lookups. Nothing the replica
 * applies can add either (its writes are not captured; rows are marked dirty only when a
 * change is pending). t = NULL ends the hint; call it before the transaction ends. */
int edge_replica_hint(edge_replica *r, const sync_table *t);

/* Re-reads rows that lag their version (see edge_db_mark_dirty) once no local change to them is
 * pending: forgets their version and pulls their table from where they lag. Call after acks. */
int edge_replica_settle(edge_replica *r);

/* The catch-up tracker set with edge_replica_set_pull (may be NULL). */
struct edge_pull *edge_replica_pull(const edge_replica *r);

/* Our own change to a row was applied by the cloud, but this replica has since
 * seen (and, because the change was pending, not fully applied) a later version of the row:
 * unless more local changes to the row are pending, forgets the version held for the row and
 * pulls the table again from `cursor` (the table's cursor when the change was sent, below
 * every later change of the row), which brings the row's current state. */
int edge_replica_stale(edge_replica *r, const sync_table *t, const sync_value *key,
                       uint64_t cursor);

/* A local change to this row was refused by the cloud: drops the local row and the version held
 * for it, and pulls the table again from the start, which restores the cloud's row if it has
 * one. Inside a transaction begun with edge_db_begin(db, 1). */
int edge_replica_refused(edge_replica *r, const sync_table *t, const sync_value *key);

/* Decodes and applies one delta message of stream `stream`: what its topic names after delta/,
 * "table" for a whole table's delta, "table/part" for a partition's (the part as a topic
 * level); NULL takes the payload's table whole. A delta of a stream this device does not
 * receive (by the policy) is ignored. Returns SYNC_OK, or an error for a malformed message
 * (nothing more is applied from it) or a database failure. */
int edge_replica_apply_stream(edge_replica *r, const char *stream, const void *payload, size_t len,
                              char *err, size_t errlen);

/* Changes applied and skipped (already held or older) since start. */
unsigned long edge_replica_applied(const edge_replica *r);
unsigned long edge_replica_skipped(const edge_replica *r);

/* Largest HLC seen in downstream changes (to keep the edge's clock causal). */
uint64_t edge_replica_max_hlc(const edge_replica *r);

#endif
