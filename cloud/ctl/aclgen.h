/* aclgen.h - the Mosquitto ACL file, generated from the registry.
 *
 * The topics are those of docs/protocol.md (and broker-config/dev.acl). Each active device
 * gets a `user` block that names its tenant and its own id, so a device can only publish
 * under its own id and only read its own tenant's downstream topics; suspended and removed
 * devices get no line at all. The cloud user gets readwrite on sync/# (Mosquitto checks a
 * $share/GROUP/... subscription against the topic without the prefix, so nothing more is
 * needed for shared subscriptions); the administrator asks the cloud and reads the devices'
 * states and the consumers' statistics. The acl_extra file, if any, is appended verbatim.
 */
#ifndef CTL_ACLGEN_H
#define CTL_ACLGEN_H

#include <stddef.h>
#include <sys/types.h>

#include "registry.h"

/* Renders the whole ACL file into *out (allocated, NUL-terminated, *len without the NUL; the
 * caller frees it). extra may be NULL; a configured extra file that cannot be read is an
 * error. */
/* cloud_conf: synccloud's config file, or NULL. With one, the devices of its tenant read the
 * deltas and rows of the tables its receive lines give them only (cloud/access.h). */
int ctl_acl_render(ctl_registry *r, const char *cloud_user, const char *admin_user,
                   const char *extra, const char *cloud_conf, char **out, size_t *len,
                   char *err, size_t errlen);

/* Renders the file and replaces path with it (crash-safe, files.h; mode 0644 and group
 * (unless (gid_t)-1) when new). */
int ctl_acl_write(const char *path, ctl_registry *r, const char *cloud_user, const char *admin_user,
                  const char *extra, const char *cloud_conf, gid_t group, char *err,
                  size_t errlen);

/* Sets *found to 1 if the file at path (an acl_extra file) has a `user NAME` line for user.
 * A NULL or missing path has none. Returns SYNC_OK or SYNC_ERR_IO. */
int ctl_acl_has_user(const char *path, const char *user, int *found, char *err, size_t errlen);

#endif
