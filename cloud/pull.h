/* pull.h - answering replicas' catch-up requests (docs/protocol.md, "Catch-up").
 *
 * A request on sync/TENANT/dev/DEVICE/pull names a table and a cursor; the answer is one page
 * of full row states above the cursor, in cseq order, published to the device's own
 * sync/TENANT/dev/DEVICE/resp with the request's Correlation Data. Pages are read outside any
 * write transaction, so they show only committed changes.
 */
#ifndef CLOUD_PULL_H
#define CLOUD_PULL_H

#include <stddef.h>

#include "config.h"
#include "outq.h"
#include "store.h"
#include "sync/mqtt.h"
#include "sync/schema.h"

typedef struct cloud_puller cloud_puller;

int cloud_puller_new(cloud_store *st, const sync_schema *s, const cloud_config *c,
                     cloud_puller **out, char *err, size_t errlen);
void cloud_puller_free(cloud_puller *p);

/* Answers one request from `device`, queueing the page on q. Returns SYNC_OK, or an error with
 * a message for a request that was refused (malformed, unknown table, foreign response topic)
 * or could not be read (SYNC_ERR_DB). */
int cloud_puller_handle(cloud_puller *p, const char *device, const sync_mqtt_msg *msg,
                        cloud_outq *q, char *err, size_t errlen);

/* Pages served and rows sent since start. */
/* Pages and rows sent, and how many requests were answered with a whole table because the
 * replica was behind the compaction horizon. */
void cloud_puller_stats(const cloud_puller *p, unsigned long *pages, unsigned long *rows,
                        unsigned long *full);

#endif
