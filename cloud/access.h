/* access.h - which tables each device receives and may write (selective sync, table level).
 *
 * Declared in synccloud's config with `receive WHO TABLES` and `write WHO TABLES` lines, WHO
 * being a device id, `role:NAME` (the `role DEVICE NAME` lines) or `*`, TABLES a comma-
 * separated list or `*`. A device receives (writes) the union of the lines that name it, its
 * role or everyone; with no line of a kind, every device receives (writes) every table. A
 * table with a schema `owner` is writable by its owner only, whatever the lines say.
 *
 * The cloud enforces it (changes to other tables are refused, pulls of other tables are not
 * answered) and tells each device its policy in a retained message, sync/{tenant}/dev/
 * {device}/policy (docs/protocol.md, "Selective sync"), so the edge refuses writes it would be
 * refused and subscribes to what it receives only; syncctl writes the broker's ACL from the
 * same lines, so a device cannot read other tables' topics either.
 */
#ifndef CLOUD_ACCESS_H
#define CLOUD_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sync/json.h"
#include "sync/schema.h"

/* 1 when table t is in the receive (write = 0) or write (write = 1) set of device. */
int cloud_access_allows(const cloud_config *c, const sync_schema *s, const char *device,
                        const sync_table *t, int write);

/* Fills mask[t->index] (one byte per table of s) with cloud_access_allows for every table. */
void cloud_access_mask(const cloud_config *c, const sync_schema *s, const char *device, int write,
                       uint8_t *mask);

/* Writes the device's policy as a JSON object into j:
 * {"device":…,"receive":[tables],"write":[tables],"ts":ms}. */
void cloud_access_policy(const cloud_config *c, const sync_schema *s, const char *device,
                         sync_json *j);

#endif
