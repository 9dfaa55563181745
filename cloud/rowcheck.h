/* rowcheck.h - with several consumers on one store, the broker's retained row messages end at
 * each row's newest state.
 *
 * The retained message of sync/T/rows/TABLE/KEY is the last one the broker received. When two
 * consumers change one row in quick succession, each publishes the state it committed, and the
 * older state can reach the broker last. So a consumer of a shared group notes every retained
 * row message it hands to the broker, and once the broker has acknowledged it (or after a
 * deadline, if the connection was lost), reads the row again: if the store holds a newer
 * change, it publishes that state too, and notes it in turn. This cannot end stale: whichever
 * message reached the broker last, its sender reads the store after the broker took it, so a
 * newer commit is either seen by that read or published after it.
 */
#ifndef CLOUD_ROWCHECK_H
#define CLOUD_ROWCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "apply.h"
#include "outq.h"
#include "store.h"
#include "sync/schema.h"

typedef struct cloud_rowcheck cloud_rowcheck;

/* The store and applier are borrowed (they must outlive the checker). */
int cloud_rowcheck_new(cloud_store *st, const sync_schema *s, const char *tenant,
                       cloud_applier *ap, cloud_rowcheck **out, char *err, size_t errlen);
void cloud_rowcheck_free(cloud_rowcheck *rc);

/* Notes a message just handed to the broker. Only retained row messages of the tenant are
 * kept (anything else is ignored): the row is read again once sync_mqtt_delivered() reaches
 * `delivered_target` or at `deadline` (seconds, the caller's clock). SYNC_OK, or SYNC_ERR_NOMEM
 * (the row is then not checked, and said so in the log). */
int cloud_rowcheck_note(cloud_rowcheck *rc, const cloud_msg *msg, unsigned long delivered_target,
                        double deadline);

/* Reads again every noted row whose message was delivered (`delivered` is
 * sync_mqtt_delivered()) or whose deadline passed at `now`, and queues on q the newest state of
 * each one that changed since. Outside a transaction. Returns how many were queued, or a
 * negative SYNC_ERR_* (SYNC_ERR_DB: the rows not read stay noted). */
int cloud_rowcheck_run(cloud_rowcheck *rc, unsigned long delivered, double now, cloud_outq *q);

/* Rows noted and not checked yet; rows published again since creation. */
size_t cloud_rowcheck_waiting(const cloud_rowcheck *rc);
uint64_t cloud_rowcheck_republished(const cloud_rowcheck *rc);

#endif
