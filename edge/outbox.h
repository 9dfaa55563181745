/* outbox.h - publishing captured changes: reads the oldest rows of _sync_outbox into one CBOR
 * batch, keeps it in flight until the cloud's ack for it arrives, then removes exactly those
 * rows and records the versions the cloud gave them. One batch is in flight at a time, which
 * keeps the device's changes in order even with several cloud consumers.
 */
#ifndef EDGE_OUTBOX_H
#define EDGE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "edgedb.h"
#include "replica.h"

typedef struct edge_outbox edge_outbox;

/* rep may be NULL when the device is not a replica (winning rows from lost conflicts are then
 * still written through it, so it is required in practice; see main.c). */
int edge_outbox_new(edge_db *db, edge_replica *rep, const edge_config *c, edge_outbox **out,
                    char *err, size_t errlen);
void edge_outbox_free(edge_outbox *o);

/* If no batch is in flight and the outbox has rows, builds the next batch. Returns 1 and sets
 * *payload and *len (owned by o, valid until the batch is acked) when a batch is ready to publish,
 * 0 when there is nothing to send, or a negative sync_err. Rows that cannot be sent (a value
 * that does not fit the schema) are moved to _sync_dead with the reason and logged. */
int edge_outbox_prepare(edge_outbox *o, const uint8_t **payload, size_t *len);

/* The in-flight batch, if any: returns 1 and its payload, else 0. */
int edge_outbox_inflight(edge_outbox *o, const uint8_t **payload, size_t *len, uint64_t *base_seq,
                         size_t *nrecords);

/* Handles an ack message (inside a transaction begun with edge_db_begin(db, 1)). An ack for
 * another batch than the one in flight is ignored (a duplicate of an old ack). Returns SYNC_OK
 * or an error; *done is set to 1 when the in-flight batch was settled by this ack. */
int edge_outbox_on_ack(edge_outbox *o, const void *payload, size_t len, int *done, char *err,
                       size_t errlen);

/* Totals since start, for status and logs. */
typedef struct edge_outbox_stats {
    unsigned long batches_sent, records_acked, rejected, lost, dead;
} edge_outbox_stats;
void edge_outbox_stats_get(const edge_outbox *o, edge_outbox_stats *s);

#endif
