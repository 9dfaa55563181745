/* registry.h - synccloud's read-only view of syncctl's device registry (registry.db): which
 * devices may sync. When configured (`registry FILE`), a batch is applied only if its device is
 * `active` in the registry for the tenant of its topic. The broker's ACL and CRL already keep a
 * suspended device out; this is the second lock, for brokers that were not reloaded yet, a
 * message queued before the suspension, or a misconfigured ACL. */
#ifndef CLOUD_REGISTRY_H
#define CLOUD_REGISTRY_H

#include <stddef.h>

typedef struct cloud_registry cloud_registry;

/* Opens the registry file read-only (it must exist: syncctl ca init creates it). On error *out
 * is NULL and err says why. */
int cloud_registry_open(const char *path, cloud_registry **out, char *err, size_t errlen);
void cloud_registry_close(cloud_registry *r);

/* 1 if device is active for tenant; 0 if not, with the reason in why ("device 'x' is
 * suspended", "... is not registered for tenant 't'", ...); a negative sync_err when the
 * registry cannot be read (why says so; the caller must not apply the batch either). */
int cloud_registry_allows(cloud_registry *r, const char *tenant, const char *device, char *why,
                          size_t whylen);

/* Calls cb(ctx, device) for every device active for tenant. Returns SYNC_OK or SYNC_ERR_DB. */
int cloud_registry_each_active(cloud_registry *r, const char *tenant,
                               void (*cb)(void *ctx, const char *device), void *ctx);

#endif
