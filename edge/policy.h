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
 *
 * Partitions (docs/protocol.md, "Partitions"): the optional "partitions" object names, per
 * table, the partition column and the values the device receives and may write:
 * {"sales":{"column":"store_id","receive":[12],"write":[12]}} (numbers for an integer column,
 * strings for a text one; a direction without a list is the whole table). They are kept in
 * _sync_policy (pcol, precv, pwr) and _sync_policy_part, checked against the schema first (a
 * column the schema lacks or that is not integer or text, a value of the wrong type: the whole
 * message is refused and the previous policy stays). A write limited to partitions gets
 * triggers refusing rows outside them (capture.c); a table received by partitions is replicated
 * as one stream per partition (pull.h). When the partitions change: a partition now received is
 * pulled from 0; one no longer received loses its rows (except rows with local changes waiting),
 * their versions and its cursor; a table received whole before keeps only the rows of the
 * partitions it now receives; a table received whole instead of by partitions is pulled whole
 * from 0 and keeps its rows.
 */
#ifndef EDGE_POLICY_H
#define EDGE_POLICY_H

#include <stddef.h>

#include "edgedb.h"
#include "pull.h"

/* Handles a policy message inside a transaction begun with edge_db_begin(e, 1). Returns
 * SYNC_OK (also when nothing changed), SYNC_ERR_DECODE for a message that is not a valid policy
 * (it is ignored and nothing changes; err says why), SYNC_ERR_NOMEM, or SYNC_ERR_DB (the caller
 * rolls back and reloads the policy and the pull tracker). p may be NULL (not a replica). */
int edge_policy_on_message(edge_db *e, edge_pull *p, const void *payload, size_t len, char *err,
                           size_t errlen);

#endif
