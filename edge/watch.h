/* watch.h - wakes the edge's main loop as soon as the application commits to its database.
 *
 * Without it the loop finds new changes at its next poll (poll_ms). With it, a thread waits on
 * inotify for writes to the database file and its WAL in their folder (a folder watch also
 * sees a WAL that SQLite deletes and creates again) and wakes the MQTT poll, so a change leaves
 * within a fraction of a millisecond of its commit. The loop still polls: inotify can miss
 * writes on network filesystems, and the watch is an optimisation, never the only trigger.
 * Our own writes wake the loop too; it then sees from PRAGMA data_version that no other
 * connection committed and goes back to sleep.
 */
#ifndef EDGE_WATCH_H
#define EDGE_WATCH_H

#include <stddef.h>

#include "sync/mqtt.h"

typedef struct edge_watch edge_watch;

/* Starts watching `database` (a path) and waking m. On failure (no inotify, no room for a
 * watch) returns a SYNC_ERR_* with a message and the edge runs on its poll alone. */
int edge_watch_start(const char *database, sync_mqtt *m, edge_watch **out, char *err,
                     size_t errlen);
/* Stops the thread and frees the watch (NULL is fine). */
void edge_watch_stop(edge_watch *w);
/* Wake-ups so far (for tests and statistics). */
unsigned long edge_watch_wakeups(edge_watch *w);

#endif
