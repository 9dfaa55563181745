/* monitor.h - what synccloud tells the people who watch it: a retained statistics message,
 * device online/offline events, and (when configured) a Prometheus metrics file.
 *
 * Statistics: retained JSON on sync/{tenant}/cloud/{client_id}/stats every stats_interval
 * seconds (docs/protocol.md, "Cloud statistics"), {"online":false,"clean":true} on a clean stop
 * and the same with "clean":false as the connection's Last Will. Counters are this consumer's
 * since it started; devices and pending conflicts are read from the store, so every consumer of
 * a shared store reports the same figures for them.
 *
 * Device events: the live (not retained) state messages of the devices, sync/{tenant}/dev/+/
 * state, become `online` / `offline` events on sync/{tenant}/events/device when a device's
 * online flag changes. With a shared group the subscription is shared too, so one consumer
 * reports each change.
 *
 * Policies: each device's retained sync/{tenant}/dev/{device}/policy (access.h), published once
 * per process for every device it knows and for each device whose state it sees.
 *
 * Single-threaded: every function is called from synccloud's main loop.
 */
#ifndef CLOUD_MONITOR_H
#define CLOUD_MONITOR_H

#include <stddef.h>
#include <stdint.h>

#include "apply.h"
#include "config.h"
#include "outq.h"
#include "store.h"
#include "sync/mqtt.h"
#include "sync/schema.h"

typedef struct cloud_monitor cloud_monitor;

/* Creates the monitor of a consumer using store st and applier ap (both borrowed: they must
 * outlive it). On error *out is NULL and err says why (e.g. an unwritable metrics file). */
int cloud_monitor_new(const cloud_config *c, const sync_schema *schema, cloud_store *st,
                      cloud_applier *ap, cloud_monitor **out, char *err, size_t errlen);
void cloud_monitor_free(cloud_monitor *m);

/* The statistics topic and the Last Will payload for the consumer's MQTT options; both live as
 * long as m. */
const char *cloud_monitor_topic(const cloud_monitor *m);
const char *cloud_monitor_will(const cloud_monitor *m, size_t *len);

/* One write transaction took `seconds` from its start to its commit and applied `batches`
 * batches. */
void cloud_monitor_tx(cloud_monitor *m, double seconds, unsigned long batches);

/* A message on a device's state topic: queues an online/offline event on q when the device's
 * online flag changed (retained messages only record the flag). */
void cloud_monitor_on_state(cloud_monitor *m, const sync_mqtt_msg *msg, cloud_outq *q);

/* The device registry (or NULL): its active devices of the tenant get their policy at start. */
struct cloud_registry;
void cloud_monitor_set_registry(cloud_monitor *m, struct cloud_registry *r);

/* Queues the retained policy (access.h) of every device the store, the registry and the
 * config know; once per process (call it when connected). Devices that show up later on their
 * state topic get theirs then. */
void cloud_monitor_policies(cloud_monitor *m, cloud_outq *q);

/* Publishes the statistics when they are due (now: a monotonic clock in seconds), and
 * rewrites the metrics file when it is due. */
void cloud_monitor_tick(cloud_monitor *m, double now, cloud_outq *q);

/* Queues the final statistics with "online":false,"clean":true (a clean stop). */
void cloud_monitor_stop(cloud_monitor *m, cloud_outq *q);

#endif
