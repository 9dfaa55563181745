/* apply.h - the cloud's handling of one upstream batch: strict validation against the schema,
 * deduplication by (device, seq), the version check with last-writer-wins conflicts, and the
 * messages that result (ack, deltas, retained rows, events).
 *
 * Call cloud_applier_batch inside a store transaction. A batch that fails validation is
 * refused whole (nothing of it is applied; the ack says why) and does not fail the
 * transaction. The produced messages are held until cloud_applier_flush (after COMMIT) or
 * dropped by cloud_applier_discard (after ROLLBACK): nothing is acknowledged or published
 * before it is durable.
 */
#ifndef CLOUD_APPLY_H
#define CLOUD_APPLY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "outq.h"
#include "store.h"
#include "sync/schema.h"

typedef struct cloud_applier cloud_applier;

typedef struct cloud_stats {
    uint64_t batches;    /* batches processed (including refused ones) */
    uint64_t records;    /* records received in accepted batches */
    uint64_t applied;    /* changes applied (clean + conflicts won) */
    uint64_t conflicts;  /* conflicts (won + lost) */
    uint64_t duplicates; /* records already applied earlier */
    uint64_t rejected;   /* batches refused */
    uint64_t refused;    /* single changes refused by a rule (table owned by another device) */
    uint64_t unregistered; /* batches dropped unacked: device not active in the registry */
} cloud_stats;

int cloud_applier_new(cloud_store *st, const sync_schema *s, const cloud_config *c,
                      cloud_applier **out, char *err, size_t errlen);
void cloud_applier_free(cloud_applier *a);

/* Applies batches only from devices active in the registry r (NULL: from every device). A batch
 * from any other device is dropped without an ack (counted as rejected and unregistered, logged,
 * and told in a `rejected` event), so its edge keeps it and sends it again. r is not owned. */
struct cloud_registry;
void cloud_applier_set_registry(cloud_applier *a, struct cloud_registry *r);

/* Handles the payload of one message published on sync/TENANT/dev/DEVICE/up. Returns SYNC_OK
 * (also for a refused batch) or SYNC_ERR_DB/SYNC_ERR_NOMEM, after which the caller must roll
 * the transaction back and call cloud_applier_discard. */
int cloud_applier_batch(cloud_applier *a, const char *device, const void *payload, size_t len);

/* After COMMIT: queues, in this order, the acks, the deltas, the retained rows and the events
 * produced since the last flush or discard. */
int cloud_applier_flush(cloud_applier *a, cloud_outq *q);
/* After ROLLBACK: forgets them (and rewinds the delta links). */
void cloud_applier_discard(cloud_applier *a);

/* Queues the retained row message (sync/T/rows/TABLE/KEY, or rows/TABLE/PART/KEY for a
 * partitioned table) of a stored row, as it stands: for
 * rowcheck.c, which publishes a row's newest state again. SYNC_ERR_INVAL if the row does not
 * exist or its topic would be too long, SYNC_ERR_NOMEM. */
int cloud_applier_row_message(cloud_applier *a, const sync_table *t, const sync_value *key,
                              const cloud_row *row, cloud_outq *q);

/* Queues the retained head message: the newest committed cseq of every table, whichever
 * consumer committed it (read from the store: call it outside a transaction); and, on the first
 * call (and the first after cloud_applier_heads_again), every partition's retained head. */
int cloud_applier_head(cloud_applier *a, cloud_outq *q);
/* The next cloud_applier_head publishes every partition's head again (after a reconnect: the
 * broker may have lost its retained messages). */
void cloud_applier_heads_again(cloud_applier *a);

void cloud_applier_stats(const cloud_applier *a, cloud_stats *s);

/* A change made by an administrator (`who`, e.g. "@admin", never a device id) rather than a
 * device: validated against the schema, applied to the row of `key` with a new version and
 * change sequence (an UPDATE sets only `cols` on a live row, an INSERT replaces the row, a
 * DELETE leaves a tombstone; an UPDATE without columns restates the row as it is), any manual-conflict flag on the row cleared, and published like
 * any change at the next flush. Inside a store transaction. *version (may be NULL) receives
 * the row's new version. Returns SYNC_OK, SYNC_ERR_SCHEMA with a message for invalid input
 * (nothing written), or SYNC_ERR_DB/SYNC_ERR_NOMEM (roll back and discard). */
/* Queues a JSON event on sync/TENANT/events/KIND, published at the next flush (unless events
 * are off). */
struct sync_json;
void cloud_applier_event(cloud_applier *a, const char *kind, const struct sync_json *j);

int cloud_applier_admin_change(cloud_applier *a, const char *who, const sync_table *t,
                               const sync_value *key, sync_op op, const sync_colval *cols,
                               size_t ncols, uint64_t *version, char *err, size_t errlen);

#endif
