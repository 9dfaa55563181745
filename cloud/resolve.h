/* resolve.h - settling a pending conflict by hand (tables with the `manual` policy, or any
 * conflict still pending): the row takes the server's value, the writer's value, or values a
 * person gives, gets a new version, loses its flag, and goes downstream like any change. */
#ifndef CLOUD_RESOLVE_H
#define CLOUD_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "apply.h"
#include "store.h"
#include "sync/record.h"
#include "sync/schema.h"

typedef enum cloud_take {
    CLOUD_TAKE_SERVER, /* keep the row as the server has it */
    CLOUD_TAKE_CLIENT, /* apply the change the writer made (its columns, or its delete) */
    CLOUD_TAKE_VALUES, /* set the given columns */
} cloud_take;

/* Parses "server" or "client" (VALUES is chosen by giving columns). Returns -1 if neither. */
int cloud_take_parse(const char *s);

/* Resolves pending conflict `id` as `take` says (vals: the columns for CLOUD_TAKE_VALUES) on
 * behalf of `who`. Inside a store transaction; the change and a `resolved` event are published
 * at the applier's next flush. *version (may be NULL) receives the row's new version.
 * Returns SYNC_OK; SYNC_ERR_NOTFOUND (no such conflict), SYNC_ERR_STATE (not pending: settled
 * by a policy or resolved already) or SYNC_ERR_SCHEMA (bad columns), with a message and nothing
 * written; or SYNC_ERR_DB/SYNC_ERR_NOMEM (roll back and discard). */
int cloud_resolve(cloud_applier *ap, cloud_store *st, const sync_schema *s, int64_t id,
                  cloud_take take, const sync_colval *vals, size_t nvals, const char *who,
                  uint64_t *version, char *err, size_t errlen);

#endif
