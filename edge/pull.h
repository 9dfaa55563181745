/* pull.h - catch-up for a replica: knowing how far each table is applied (its cursor), noticing
 * when changes were missed, and pulling them from the cloud page by page.
 *
 * A table's cursor is the cseq up to which every change of that table is reflected locally;
 * it is kept in _sync_cursor and moves in the same transaction as the rows it covers, so a pull
 * interrupted by a crash resumes from the last page applied. A table needs a pull when a delta
 * arrives whose prev_cseq is above the cursor (a gap), when the cloud's retained head says it
 * is further than the cursor and no delta fills the difference within a grace period, and after
 * a connect on which the broker had no session for us (first contact, expiry, broker loss).
 * An empty replica thus rebuilds itself with a full pull from cursor 0.
 */
#ifndef EDGE_PULL_H
#define EDGE_PULL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "edgedb.h"
#include "replica.h"
#include "sync/mqtt.h"

typedef struct edge_pull edge_pull;

int edge_pull_new(edge_db *db, edge_replica *rep, const edge_config *c, edge_pull **out, char *err,
                  size_t errlen);
void edge_pull_free(edge_pull *p);

/* A delta for table t was applied (inside the transaction): advances the cursor if it follows
 * on, or marks a gap. */
int edge_pull_on_delta(edge_pull *p, const sync_table *t, uint64_t prev, uint64_t last);

/* Handles the retained head message. */
int edge_pull_on_head(edge_pull *p, const void *payload, size_t len, char *err, size_t errlen);

/* The cursor of table t (0 if t is not synced here). */
uint64_t edge_pull_cursor(const edge_pull *p, const sync_table *t);

/* A change with cseq `cseq + 1` or later arrived for a row this replica does not hold: moves
 * t's cursor back to `cseq` (never forward) and pulls from there, which brings that row whole.
 * Inside the transaction. */
int edge_pull_rewind(edge_pull *p, const sync_table *t, uint64_t cseq);

/* Every table needs a pull (the broker had no session for us). */
void edge_pull_all(edge_pull *p, const char *why);

/* Handles a page (inside a transaction begun with edge_db_begin(db, 1)). A page that does not
 * answer the request in flight is ignored. */
int edge_pull_on_page(edge_pull *p, const sync_mqtt_msg *msg, char *err, size_t errlen);

/* A request to publish: everything points into p and stays valid until the next call. */
typedef struct edge_pull_req {
    const char *topic, *response_topic;
    const uint8_t *payload, *corr;
    size_t len, corr_len;
} edge_pull_req;

/* Returns 1 and fills *req when a request should go out now (a table needs a pull, or the one in
 * flight got no answer in time), 0 when none, or an error. The request counts as in flight. */
int edge_pull_next(edge_pull *p, edge_pull_req *req);
/* The request from edge_pull_next could not be published: it will be made again. */
void edge_pull_unsent(edge_pull *p);

/* The connection on which edge_pull_on_page asks for the next page of a catch-up before it
 * applies the current one, so the cloud prepares it meanwhile (NULL: it does not). */
void edge_pull_set_mqtt(edge_pull *p, sync_mqtt *m);

/* The transaction in which pages, deltas or acks were handled was rolled back: reads the
 * cursors again from the database, forgets the request in flight (its answer will be
 * ignored) and pulls every table from its saved cursor. */
int edge_pull_reload(edge_pull *p);

/* Rebuilds every table from the cloud, as after a stay longer than the tombstone window: pulls
 * each whole (`full` requests from cursor 0), then removes the rows the cloud no longer holds,
 * keeping rows with local changes still on their way. Inside a transaction; survives a
 * restart (_sync_resync). */
int edge_pull_resync_all(edge_pull *p, const char *why);

/* The policy (policy.h) now lets the device receive t (received = 1: pull it from its cursor)
 * or no longer (0: forget its catch-up state and set its cursor to 0, so receiving it again
 * starts from the beginning). Inside a transaction. */
int edge_pull_table_received(edge_pull *p, const sync_table *t, int received);

/* Whole-table resyncs finished since the start (a state message follows each). */
unsigned long edge_pull_rebuilds(const edge_pull *p);

/* The newest cseq of t the cloud told of (head or delta). */
uint64_t edge_pull_head(const edge_pull *p, const sync_table *t);

/* Returns 1 and the progress of a catch-up that is under way (table, rows done, rows in all,
 * rate), or 0 when none runs. *table lives as long as p. */
int edge_pull_progress(const edge_pull *p, const char **table, uint64_t *done, uint64_t *total,
                       double *rows_per_s);

/* Publishes the next request on m, if any (edge_pull_next + publish). */
void edge_pull_drive(edge_pull *p, sync_mqtt *m);

/* 1 while any table is behind or being pulled. */
int edge_pull_busy(const edge_pull *p);

#endif
