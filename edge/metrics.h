/* metrics.h - syncedge's Prometheus metrics, written to metrics_file for node_exporter's
 * textfile collector every metrics_interval seconds (docs/metrics.md). Every series carries
 * the label device="ID", so several syncedge processes on one host (one per database) write
 * files that do not collide. Single-threaded: called from syncedge's main loop only.
 */
#ifndef EDGE_METRICS_H
#define EDGE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "edgedb.h"

typedef struct edge_metrics edge_metrics;

/* What the main loop knows at a refresh. */
typedef struct edge_metrics_snapshot {
    unsigned long batches_sent, changes_acked, changes_lost, changes_rejected, changes_dead;
    unsigned long downstream_applied;
    long long pending;    /* changes waiting in the outbox */
    uint64_t last_sync_ms; /* wall clock of the last ack (0: none yet) */
    int connected;
    /* per table of db (replicas only; NULL otherwise): the cursor (for a table received by
     * partitions, the lowest of its streams') and the changes announced and not applied yet
     * (summed over its streams) */
    const uint64_t *cursor, *lag;
} edge_metrics_snapshot;

/* Creates the metrics of the tables of db and writes the file once, so that a path that cannot
 * be written fails the start with a message. Returns SYNC_OK with *out = NULL when c has no
 * metrics_file. */
int edge_metrics_new(const edge_config *c, const edge_db *db, edge_metrics **out, char *err,
                     size_t errlen);
void edge_metrics_free(edge_metrics *m);

/* A batch was acknowledged `seconds` after it was (last) published. */
void edge_metrics_ack(edge_metrics *m, double seconds);

/* 1 when the file is due for a rewrite at now (monotonic seconds); m may be NULL (0). */
int edge_metrics_due(const edge_metrics *m, double now);

/* Rewrites the file when it is due (now: monotonic seconds), or at once when force. */
void edge_metrics_tick(edge_metrics *m, double now, const edge_metrics_snapshot *s, int force);

#endif
