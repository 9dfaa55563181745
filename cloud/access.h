/* access.h - which tables, and which partitions of a table, each device receives and may write
 * (selective sync).
 *
 * Declared in synccloud's config with `receive WHO ENTRIES` and `write WHO ENTRIES` lines, WHO
 * being a device id, `role:NAME` (the `role DEVICE NAME` lines) or `*`, ENTRIES a comma-
 * separated list of `TABLE`, `TABLE=V1|V2` (partitions of a table with a `partition TABLE
 * COLUMN` line; a value is a literal, `$device` or `$NAME`, an `attr DEVICE NAME VALUE`) or
 * `*`. A device receives (writes) the union of the lines that name it, its role or everyone;
 * with no line of a kind, every device receives (writes) every table. A table with a schema
 * `owner` is writable by its owner only, whatever the lines say.
 *
 * The cloud enforces it (changes outside the write set are refused, pulls outside the receive
 * set are not answered) and tells each device its policy in a retained message, sync/{tenant}/
 * dev/{device}/policy (docs/protocol.md, "Selective sync" and "Partitions"), so the edge
 * refuses writes it would be refused and subscribes to what it receives only; syncctl writes
 * the broker's ACL from the same lines, so a device cannot read other topics either.
 */
#ifndef CLOUD_ACCESS_H
#define CLOUD_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sync/json.h"
#include "sync/schema.h"

/* Partitions of one table a device can be given at most (more are left out, with a warning). */
#define CLOUD_MAX_PARTS 64

/* What a device gets of one table in one direction. */
typedef struct cloud_reach {
    int whole;   /* the whole table */
    int nparts;  /* otherwise these partitions; none (and !whole): nothing */
    sync_value parts[CLOUD_MAX_PARTS]; /* typed as the partition column; text points into the
                                          config or the device id given */
} cloud_reach;

/* The schema index of t's partition column, or -1 when t has no `partition` line. */
int cloud_access_part_col(const cloud_config *c, const sync_table *t);

/* Fills *out with what device receives (write = 0) or may write (write = 1) of t. */
void cloud_access_reach(const cloud_config *c, const sync_table *t, const char *device, int write,
                        cloud_reach *out);

/* 1 when r includes the row whose partition value is v (the whole table includes every row;
 * v NULL or a NULL value: a row outside every partition, included only by the whole table). */
int cloud_reach_has(const cloud_reach *r, const sync_value *v);

/* A partition value as messages show it: 12, or 'north' (at most 64 bytes of it). */
void cloud_part_text(char *buf, size_t n, const sync_value *v);

/* Writes the device's policy as a JSON object into j:
 * {"device":…,"receive":[tables],"write":[tables],"partitions":{table:{"column":…,
 * "receive":[values],"write":[values]}},"ts":ms}; "partitions" only when a table is
 * partitioned, and in it "receive" ("write") only when that direction is not the whole table. */
void cloud_access_policy(const cloud_config *c, const sync_schema *s, const char *device,
                         sync_json *j);

#endif
