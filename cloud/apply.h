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
} cloud_stats;

int cloud_applier_new(cloud_store *st, const sync_schema *s, const cloud_config *c,
                      cloud_applier **out, char *err, size_t errlen);
void cloud_applier_free(cloud_applier *a);

/* Handles the payload of one message published on sync/TENANT/dev/DEVICE/up. Returns SYNC_OK
 * (also for a refused batch) or SYNC_ERR_DB/SYNC_ERR_NOMEM, after which the caller must roll
 * the transaction back and call cloud_applier_discard. */
int cloud_applier_batch(cloud_applier *a, const char *device, const void *payload, size_t len);

/* After COMMIT: queues, in this order, the acks, the deltas, the retained rows and the events
 * produced since the last flush or discard. */
int cloud_applier_flush(cloud_applier *a, cloud_outq *q);
/* After ROLLBACK: forgets them (and rewinds the delta links). */
void cloud_applier_discard(cloud_applier *a);

/* Queues the retained head message: the newest published cseq of every table. */
int cloud_applier_head(cloud_applier *a, cloud_outq *q);

void cloud_applier_stats(const cloud_applier *a, cloud_stats *s);

#endif
