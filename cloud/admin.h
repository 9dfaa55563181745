/* admin.h - requests from administrators (syncctl) over MQTT 5 request/response.
 *
 * A request is a CBOR map published on sync/TENANT/admin/req with a Response Topic under
 * sync/TENANT/admin/resp/ and Correlation Data; the broker's ACL lets only administrators
 * publish there. The answer is a CBOR map {"ok": bool, "error": text} plus what the request
 * asked for. Requests (docs/protocol.md, "Administration"):
 *   {"op": "conflicts", ? "pending": bool (default true), ? "limit": uint (default 100)}
 *       -> "conflicts": [* conflict map]
 *   {"op": "resolve", "id": uint, "take": "server" / "client" / "values",
 *    ? "values": {* column => value}, ? "by": text}
 *       -> "version": the row's new version; the result goes downstream like any change.
 */
#ifndef CLOUD_ADMIN_H
#define CLOUD_ADMIN_H

#include <stddef.h>

#include "apply.h"
#include "outq.h"
#include "store.h"
#include "sync/mqtt.h"
#include "sync/schema.h"

typedef struct cloud_admin cloud_admin;

int cloud_admin_new(cloud_store *st, cloud_applier *ap, const sync_schema *s,
                    const cloud_config *c, cloud_admin **out, char *err, size_t errlen);
void cloud_admin_free(cloud_admin *ad);

/* Devices a `resync` may name (NULL, the default: any valid device id). Borrowed. */
struct cloud_registry;
void cloud_admin_set_registry(cloud_admin *ad, struct cloud_registry *r);

/* Handles one request: runs it (in its own store transaction when it writes; call it outside
 * any), then queues on q what it published (for a resolution: the change) and the answer.
 * Returns SYNC_OK, or an error for a request that could not be answered at all (no usable
 * response topic; message in err). */
int cloud_admin_handle(cloud_admin *ad, const sync_mqtt_msg *msg, cloud_outq *q, char *err,
                       size_t errlen);

#endif
