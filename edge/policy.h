/* policy.h - the cloud's policy for this device: which tables it receives and which it may
 * write (selective sync; cloud/access.h has the rules, docs/protocol.md "Selective sync").
 *
 * The cloud publishes it retained on sync/{tenant}/dev/{device}/policy:
 * {"device":…,"receive":[tables],"write":[tables],"ts":ms}. syncedge keeps the last one in
 * _sync_policy, so it holds offline and across restarts. Tables the device may not write get
 * triggers that refuse the application's writes with an error (instead of queueing changes the
 * cloud would refuse). A table it no longer receives is no longer pulled or applied; if it may
 * not write it either, its rows are removed (it may no longer hold them), except rows with
 * local changes still waiting. A table it now receives is pulled from where it stands.
 */
#ifndef EDGE_POLICY_H
#define EDGE_POLICY_H

#include <stddef.h>

#include "edgedb.h"
#include "pull.h"

/* Handles a policy message inside a transaction begun with edge_db_begin(e, 1). Returns
 * SYNC_OK (also when nothing changed), SYNC_ERR_DECODE for a message that is not a policy (it
 * is ignored, err says why), or SYNC_ERR_DB. p may be NULL (not a replica). */
int edge_policy_on_message(edge_db *e, edge_pull *p, const void *payload, size_t len, char *err,
                           size_t errlen);

#endif
