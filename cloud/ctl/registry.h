/* registry.h - the device registry: one SQLite file (DIR/registry.db, mode 0600) that is the
 * truth about every device syncctl ever issued. The broker's password, ACL and CRL files are
 * all derived from it, so they can always be written again from scratch.
 *
 * A device row is never deleted: `remove` only marks it, so its certificate stays revoked and
 * its id is never given to another device.
 */
#ifndef CTL_REGISTRY_H
#define CTL_REGISTRY_H

#include <stddef.h>
#include <time.h>

#include "sync/record.h"

typedef enum ctl_status {
    CTL_ACTIVE = 0,    /* may connect */
    CTL_SUSPENDED = 1, /* locked out, on the CRL with certificateHold; may be resumed */
    CTL_REMOVED = 2,   /* locked out for good, on the CRL forever */
} ctl_status;

/* "active", "suspended" or "removed". */
const char *ctl_status_name(ctl_status s);

/* One device as the registry holds it. */
typedef struct ctl_device {
    char device[SYNC_MAX_ID + 1]; /* the id: certificate CN and broker user name; unique */
    char tenant[SYNC_MAX_ID + 1]; /* the tenant (O= in the certificate) */
    char role[SYNC_MAX_ID + 1];   /* role for the priority conflict policy; "" when none */
    ctl_status status;
    char serial[41];      /* certificate serial, upper-case hex */
    char fingerprint[65]; /* SHA-256 of the certificate's DER, lower-case hex */
    time_t created;       /* when it was added */
    time_t not_after;     /* when its certificate expires */
    time_t updated;       /* last change of its row */
    time_t revoked_at;    /* when it was last suspended or removed; 0 while active */
    int reason;           /* CRL reason code while revoked (CTL_REASON_*), else 0 */
    char pw_hash[160];    /* its Mosquitto password-file hash ($7$...); "" without password */
} ctl_device;

typedef struct ctl_registry ctl_registry;

typedef enum ctl_open_mode {
    CTL_REG_READ = 0,   /* read only (list, show) */
    CTL_REG_WRITE = 1,  /* read and write an existing registry */
    CTL_REG_CREATE = 2, /* create a new one: the file must not exist */
} ctl_open_mode;

/* Opens the registry at path. A missing registry (without CTL_REG_CREATE) is SYNC_ERR_STATE
 * with a message that says to run `syncctl ca init`; CTL_REG_CREATE on an existing file is
 * SYNC_ERR_STATE too. The caller closes it with ctl_registry_close. */
int ctl_registry_open(const char *path, ctl_open_mode mode, ctl_registry **out, char *err,
                      size_t errlen);
void ctl_registry_close(ctl_registry *r);

/* A write transaction (BEGIN IMMEDIATE: a second syncctl waits, then sees our changes). */
int ctl_registry_begin(ctl_registry *r, char *err, size_t errlen);
int ctl_registry_commit(ctl_registry *r, char *err, size_t errlen);
void ctl_registry_rollback(ctl_registry *r);

/* Adds a device. An id that exists already (in any tenant, in any status) is SYNC_ERR_STATE
 * with a message naming its tenant and status. */
int ctl_registry_add(ctl_registry *r, const ctl_device *d, char *err, size_t errlen);

/* Reads one device into *out. An unknown id is SYNC_ERR_STATE with a message. */
int ctl_registry_get(ctl_registry *r, const char *device, ctl_device *out, char *err,
                     size_t errlen);

/* Sets a device's status; reason and when are recorded for suspended and removed (and
 * cleared for active). Returns SYNC_OK, SYNC_ERR_STATE for an unknown id, or SYNC_ERR_DB. */
int ctl_registry_set_status(ctl_registry *r, const char *device, ctl_status status, int reason,
                            time_t when, char *err, size_t errlen);

/* Calls cb for every device (of tenant, or of all tenants when tenant is NULL), ordered by
 * tenant and id. A nonzero return from cb stops the walk and is returned. Otherwise returns
 * SYNC_OK or SYNC_ERR_DB with a message. */
typedef int (*ctl_device_cb)(void *ctx, const ctl_device *d);
int ctl_registry_each(ctl_registry *r, const char *tenant, ctl_device_cb cb, void *ctx, char *err,
                      size_t errlen);

/* Takes the next CRL number (1, 2, ...): every CRL gets a larger one. */
int ctl_registry_next_crl_number(ctl_registry *r, unsigned long *out, char *err, size_t errlen);

/* "YYYY-MM-DDThh:mm:ssZ" of t, the form the registry stores. buf holds at least 21 bytes. */
void ctl_time_iso(time_t t, char *buf);

#endif
