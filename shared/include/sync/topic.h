/* topic.h - building and parsing the topic tree (docs/protocol.md, "Topics").
 *
 *   sync/{tenant}/dev/{device}/up|ack|state     per-device
 *   sync/{tenant}/delta/{table}                 downstream deltas
 *   sync/{tenant}/rows/{table}/{key}            retained row state
 *   sync/{tenant}/delta/{table}/{part}          a partition's deltas (docs/protocol.md,
 *   sync/{tenant}/head/{table}/{part}           "Partitions"), its retained head and its
 *   sync/{tenant}/rows/{table}/{part}/{key}     retained rows
 *   sync/{tenant}/events/{kind}                 JSON events
 *
 * Tenant and device ids are 1..64 bytes of [A-Za-z0-9_.-] (so they can never contain a topic
 * separator or wildcard). Row keys are encoded into one topic level: integers in decimal,
 * text percent-encoded (every byte outside [A-Za-z0-9_.~-] as %XX), blobs as "x" + hex.
 * Builders return SYNC_OK or SYNC_ERR_NOSPACE if buf is too small.
 */
#ifndef SYNC_TOPIC_H
#define SYNC_TOPIC_H

#include <stddef.h>

#include "sync/value.h"

#define SYNC_TOPIC_MAX 512

int sync_id_valid(const char *id, size_t len);

int sync_topic_dev(char *buf, size_t n, const char *tenant, const char *device, const char *leaf);
int sync_topic_delta(char *buf, size_t n, const char *tenant, const char *table);
int sync_topic_row(char *buf, size_t n, const char *tenant, const char *table,
                   const sync_value *key);
int sync_topic_event(char *buf, size_t n, const char *tenant, const char *kind);
/* A partition value (or a key) as one topic level, the way row keys are written. */
int sync_topic_level(char *buf, size_t n, const sync_value *v);
/* "sync/{tenant}/{kind}/{table}", and "/{part}" after it when part is not NULL (kind "delta"
 * or "head"). */
int sync_topic_stream(char *buf, size_t n, const char *tenant, const char *kind,
                      const char *table, const sync_value *part);
/* The retained row topic, with the partition level when part is not NULL. */
int sync_topic_row_part(char *buf, size_t n, const char *tenant, const char *table,
                        const sync_value *part, const sync_value *key);

/* Parses "sync/{tenant}/dev/{device}/{leaf}". On success copies tenant and device
 * (NUL-terminated, each buffer at least SYNC_MAX_ID + 1 bytes) and points *leaf into topic.
 * Returns SYNC_ERR_TOPIC if the shape or an id is wrong. */
int sync_topic_parse_dev(const char *topic, char *tenant, char *device, const char **leaf);

/* Parses "sync/{tenant}/{kind}/..." and returns a pointer to the part after "sync/{tenant}/"
 * if the tenant matches, else NULL. */
const char *sync_topic_after_tenant(const char *topic, const char *tenant);

#endif
