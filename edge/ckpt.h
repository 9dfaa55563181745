/* ckpt.h - checkpoints the database's WAL from a background thread, a little at a time.
 *
 * In WAL mode with synchronous=NORMAL (the application's usual setting, and syncedge's), a
 * commit does not fsync; the WAL is flushed when a checkpoint copies it into the database. By
 * default SQLite checkpoints from whichever connection's commit finds 1,000 pages or more in the
 * WAL: that commit then fsyncs about 4 MB of WAL, copies it and fsyncs the database (10-18 ms
 * measured on the benchmark's disk, perf trace of fdatasync), inside the application's commit or
 * inside syncedge's loop (a replica applying deltas stops for that long). Every fsync on the
 * same disk (the cloud's store, on one machine) waits behind it too.
 *
 * This thread runs a PASSIVE checkpoint (it never blocks writers nor readers) every
 * checkpoint_ms on a connection of its own, so each flush is a few dozen pages and the
 * 1,000-page threshold of the other connections is seldom reached. Nothing new in the WAL:
 * no I/O at all. SQLite's own auto-checkpoints stay as they were, as the fallback.
 */
#ifndef EDGE_CKPT_H
#define EDGE_CKPT_H

#include <stddef.h>

typedef struct edge_ckpt edge_ckpt;

/* Starts the thread on `database` (a path). period_ms 0: nothing is started, *out is NULL. */
int edge_ckpt_start(const char *database, long period_ms, edge_ckpt **out, char *err,
                    size_t errlen);
/* Stops the thread and closes its connection (NULL is fine). */
void edge_ckpt_stop(edge_ckpt *c);
/* Checkpoints that copied pages, and pages copied, so far. */
void edge_ckpt_stats(edge_ckpt *c, unsigned long *runs, unsigned long *pages);

#endif
