/* pull.h - catch-up for a replica: knowing how far each stream is applied (its cursor), noticing
 * when changes were missed, and pulling them from the cloud page by page.
 *
 * A stream is what the cloud publishes as one sequence of deltas: a whole table
 * (delta/{table}, its entry in head, pulls without `part`), or one partition of a table the
 * policy has the device receive by partitions (delta/{table}/{part}, head/{table}/{part}, pulls
 * with `part`; docs/protocol.md, "Partitions"). Everything below is per stream; a stream's
 * cursor is the _sync_cursor row named after the table, or "{table}/{part}" with the part
 * written as one topic level. Streams are numbered while the policy stays the same: the
 * whole-table stream of table slot i is stream i; partition streams follow.
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

/* The name of a stream's cursor: the table's name, or "{table}/{part}" (part as a topic level,
 * sync_topic_level) when part is not NULL. */
int edge_stream_name(char *buf, size_t n, const sync_table *t, const sync_value *part);

/* The stream of table t that the device receives: the whole table (level NULL), or the
 * partition whose topic level is `level` ("12" of delta/sales/12). -1 when the device does not
 * receive that stream (by the policy: a table received by partitions has no whole-table stream,
 * and the other way round). */
int edge_pull_find(const edge_pull *p, const sync_table *t, const char *level);

/* A delta of stream s was applied (inside the transaction): advances the cursor if it follows
 * on, or marks a gap. */
int edge_pull_on_delta(edge_pull *p, int s, uint64_t prev, uint64_t last);

/* Handles the retained head message (whole-table streams). */
int edge_pull_on_head(edge_pull *p, const void *payload, size_t len, char *err, size_t errlen);

/* Handles the retained head of one partition, from topic head/{table}/{part}: stream is
 * "{table}/{part}" (the topic's levels after head/). */
int edge_pull_on_part_head(edge_pull *p, const char *stream, const void *payload, size_t len,
                           char *err, size_t errlen);

/* The cursor of table t (0 if t is not synced here); for a table received by partitions, the
 * lowest cursor of its streams (what every partition is applied up to). */
uint64_t edge_pull_cursor(const edge_pull *p, const sync_table *t);

/* A change with cseq `cseq + 1` or later arrived for a row this replica does not hold: moves
 * t's cursor back to `cseq` (never forward) and pulls from there, which brings that row whole.
 * For a table received by partitions, every partition stream of it (the row's partition may
 * not be known here). Inside the transaction. */
int edge_pull_rewind(edge_pull *p, const sync_table *t, uint64_t cseq);
/* The same for stream s alone. */
int edge_pull_rewind_stream(edge_pull *p, int s, uint64_t cseq);

/* Every stream needs a pull (the broker had no session for us). */
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

/* The transaction in which pages, deltas or acks were handled was rolled back: takes the
 * streams of the policy in the database (edge_db_load_policy first), reads the cursors again,
 * forgets the request in flight (its answer will be ignored) and pulls every stream from its
 * saved cursor. */
int edge_pull_reload(edge_pull *p);

/* Rebuilds every stream from the cloud, as after a stay longer than the tombstone window:
 * pulls each whole (`full` requests from cursor 0), then removes the rows the cloud no longer
 * holds (for a partition stream, rows of that partition only), keeping rows with local changes
 * still on their way. Inside a transaction; survives a restart (_sync_resync). */
int edge_pull_resync_all(edge_pull *p, const char *why);

/* The policy in db changed (policy.c has stored the cursors of the streams that start, at 0,
 * and removed those of the streams that stop): takes its streams, keeping the state of those
 * that go on, reading the cursor of those that start and pulling them. A request in flight for
 * a stream that stopped is forgotten. Inside the policy's transaction. */
int edge_pull_policy_changed(edge_pull *p);

/* The streams, for the state message: for i in 0 .. edge_pull_nstreams() - 1,
 * edge_pull_stream_at returns 1 with the stream's name ("sales" or "sales/12", living until the
 * policy changes), cursor and head when the state reports it (every table's whole stream
 * except those of tables received by partitions, and every partition stream), else 0. */
int edge_pull_nstreams(const edge_pull *p);
int edge_pull_stream_at(const edge_pull *p, int i, const char **name, uint64_t *cursor,
                        uint64_t *head);
/* 1 with the table and partition value of stream i when it is a partition stream the device
 * receives (its topics are to be subscribed to), else 0. *part lives until the policy
 * changes. */
int edge_pull_part_at(const edge_pull *p, int i, const sync_table **t, const sync_value **part);
/* Changes of t the cloud announced and this replica has not applied (summed over the streams
 * of a table received by partitions). */
uint64_t edge_pull_lag(const edge_pull *p, const sync_table *t);

/* Whole-table resyncs finished since the start (a state message follows each). */
unsigned long edge_pull_rebuilds(const edge_pull *p);

/* Returns 1 and the progress of a catch-up that is under way (stream name, rows done, rows in
 * all, rate), or 0 when none runs. *table lives until the policy changes. */
int edge_pull_progress(const edge_pull *p, const char **table, uint64_t *done, uint64_t *total,
                       double *rows_per_s);

/* Publishes the next request on m, if any (edge_pull_next + publish). */
void edge_pull_drive(edge_pull *p, sync_mqtt *m);

/* 1 while any stream is behind or being pulled. */
int edge_pull_busy(const edge_pull *p);

#endif
