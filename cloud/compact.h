/* compact.h - tombstone compaction: deleted rows are kept as tombstones (so a late update does
 * not bring them back and replicas learn of the delete) for `tombstone_retention` seconds, then
 * removed. Replicas that were away longer than that take the table whole on their next pull. */
#ifndef CLOUD_COMPACT_H
#define CLOUD_COMPACT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Removes, in one transaction, the tombstones of every table older than retention_s seconds
 * before now_ms (server wall clock). retention_s 0 does nothing. *removed (may be NULL) receives
 * the number removed. Returns SYNC_OK or an error with a message; on error nothing is removed. */
int cloud_compact(cloud_store *st, const sync_schema *s, long retention_s, int64_t now_ms,
                  uint64_t *removed, char *err, size_t errlen);

#endif
