/* cmd_device.c - `syncctl device add|list|show|suspend|resume|remove`.
 *
 * Every change takes DIR/.lock, changes the registry in one transaction, and then writes the
 * broker's files from the registry (regen.h) and reloads the broker. A device's private key
 * is written to its own folder only, and neither it nor a password ever reaches a log line or
 * an error message.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aclgen.h"
#include "ctl.h"
#include "files.h"
#include "passwd.h"
#include "pki.h"
#include "regen.h"
#include "registry.h"
#include "sync/err.h"
#include "sync/json.h"
#include "sync/log.h"
#include "sync/topic.h"

#define DEVICE_DAYS_DEFAULT 825 /* the longest validity browsers accept; a habit worth keeping */

/* Checks a tenant, device or role id; prints why not and returns 2, or returns 0. */
static int check_id(const char *what, const char *id)
{
    if (sync_id_valid(id, strlen(id)))
        return 0;
    fprintf(stderr,
            "Error: invalid %s '%s': 1-64 characters of A-Z a-z 0-9 _ . - (no '/', '+', '#', "
            "spaces or other characters: it becomes a topic level and a broker user name)\n",
            what, id);
    return 2;
}

static const char *reason_name(int reason)
{
    switch (reason) {
    case CTL_REASON_KEY_COMPROMISE:
        return "keyCompromise";
    case CTL_REASON_CESSATION:
        return "cessationOfOperation";
    case CTL_REASON_HOLD:
        return "certificateHold";
    }
    return "unspecified";
}

/* ---- device add ------------------------------------------------------------------------- */

/* The files of a new device, for removal if a later step fails. */
struct written {
    char paths[4][PATH_MAX];
    int n;
    char dir[PATH_MAX]; /* the folder, when we created it */
};

static int write_file(struct written *w, const char *dir, const char *name, const void *data,
                      size_t len, mode_t mode, char *err, size_t errlen)
{
    char *path = w->paths[w->n];
    if (snprintf(path, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "path too long: %s", dir);
    int rc = ctl_file_create(path, data, len, mode, err, errlen);
    if (rc == SYNC_ERR_STATE)
        return sync_seterr(err, errlen, rc,
                           "%s exists already: refusing to overwrite it (choose another --out)",
                           path);
    if (rc == SYNC_OK)
        w->n++;
    return rc;
}

static void unwrite(struct written *w)
{
    while (w->n > 0)
        unlink(w->paths[--w->n]);
    if (w->dir[0])
        rmdir(w->dir);
}

/* Refuses a device id that some other broker user already has: a device would inherit its
 * password line or its ACL block. */
static int check_free_name(const ctl_ctx *ctx, const char *device, char *err, size_t errlen)
{
    const ctl_config *c = &ctx->cfg;
    if (strcmp(device, c->cloud_user) == 0)
        return sync_seterr(err, errlen, SYNC_ERR_STATE,
                           "'%s' is the cloud's broker user (cloud_user): choose another device id",
                           device);
    if (strcmp(device, c->admin_user) == 0)
        return sync_seterr(err, errlen, SYNC_ERR_STATE,
                           "'%s' is the administrators' broker user (admin_user): choose another "
                           "device id",
                           device);
    int found = 0;
    int rc = ctl_passwd_has_user(c->password_file, device, &found, err, errlen);
    if (rc == SYNC_OK && found)
        return sync_seterr(err, errlen, SYNC_ERR_STATE,
                           "the password file %s already has a user '%s' that is not a device "
                           "of the registry: choose another device id",
                           c->password_file, device);
    if (rc == SYNC_OK)
        rc = ctl_acl_has_user(c->acl_extra, device, &found, err, errlen);
    if (rc == SYNC_OK && found)
        return sync_seterr(err, errlen, SYNC_ERR_STATE,
                           "the acl_extra file %s already has a user '%s': choose another "
                           "device id",
                           c->acl_extra, device);
    return rc;
}

static void print_added(const ctl_ctx *ctx, const ctl_device *d, const char *out, int password)
{
    char until[21];
    ctl_time_iso(d->not_after, until);
    printf("Added device %s of tenant %s (serial %s, valid until %s).\n"
           "Install these files on the device; device.key%s secret (mode 0600, copy them\n"
           "over a secure channel and delete them here once installed):\n"
           "  %s/device.key\n"
           "  %s/device.crt\n"
           "  %s/ca.crt\n",
           d->device, d->tenant, d->serial, until, password ? " and device.pass are" : " is", out,
           out, out);
    if (password)
        printf("  %s/device.pass\n", out);
    printf("syncedge configuration for it (paths as installed on the device):\n"
           "  tenant %s\n"
           "  device %s\n"
           "  broker %s\n"
           "  certfile /etc/syncedge/device.crt\n"
           "  keyfile /etc/syncedge/device.key\n",
           d->tenant, d->device, ctx->cfg.broker);
    if (password)
        printf("  password_file /etc/syncedge/device.pass\n");
    printf("  # the CA that signed the broker's TLS certificate (this ca.crt only if it did):\n"
           "  cafile /etc/syncedge/broker-ca.crt\n");
    if (d->role[0])
        printf("For synccloud's priority policy, its synccloud.conf needs:\n  role %s %s\n",
               d->device, d->role);
}

int ctl_cmd_device_add(ctl_ctx *ctx, int argc, char **argv)
{
    ctl_opt opts[] = {
        {"role", 0, NULL}, {"password", 1, NULL}, {"days", 0, NULL}, {"out", 0, NULL}};
    const char *pos[2];
    int status = ctl_args(ctx, argc, argv, opts, 4, pos, 2, 2, NULL);
    if (status >= 0)
        return status;
    const char *tenant = pos[0], *device = pos[1], *role = opts[0].value;
    int password = opts[1].value != NULL;
    long days = DEVICE_DAYS_DEFAULT;
    if (check_id("tenant", tenant) || check_id("device id", device) ||
        (role && check_id("role", role)) || ctl_opt_long(&opts[2], 1, 36500, &days))
        return 2;
    char err[1024], out[PATH_MAX], path[PATH_MAX];
    if (opts[3].value)
        snprintf(out, sizeof out, "%s", opts[3].value);
    else if (snprintf(out, sizeof out, "%s/devices/%s", ctx->cfg.dir, device) >= (int)sizeof out)
        return ctl_fail(ctx, 2, "--dir is too long");

    ctl_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.device, sizeof d.device, "%s", device);
    snprintf(d.tenant, sizeof d.tenant, "%s", tenant);
    snprintf(d.role, sizeof d.role, "%s", role ? role : "");
    d.status = CTL_ACTIVE;

    int lock = ctl_lock(ctx->cfg.dir, err, sizeof err);
    if (lock < 0)
        return ctl_fail(ctx, 1, err);
    ctl_registry *r = NULL;
    ctl_rng *rng = NULL;
    ctl_ca *ca = NULL;
    ctl_identity id = {0};
    char pw[CTL_PW_MAX] = "", line[CTL_PW_MAX + 1];
    char *cacrt = NULL;
    size_t cacrt_len = 0;
    struct written w;
    memset(&w, 0, sizeof w);
    int in_tx = 0;
    int rc = ctl_registry_open(ctl_path(ctx, "registry.db", path, sizeof path), CTL_REG_WRITE, &r,
                               err, sizeof err);
    ctl_device old;
    if (rc == SYNC_OK && ctl_registry_get(r, device, &old, NULL, 0) == SYNC_OK)
        rc = sync_seterr(err, sizeof err, SYNC_ERR_STATE,
                         "device '%s' already exists (tenant %s, %s): device ids are unique "
                         "across tenants and never reused",
                         device, old.tenant, ctl_status_name(old.status));
    if (rc == SYNC_OK)
        rc = check_free_name(ctx, device, err, sizeof err);
    if (rc == SYNC_OK)
        rc = ctl_rng_new(&rng, err, sizeof err);
    if (rc == SYNC_OK) {
        char key[PATH_MAX];
        rc = ctl_ca_open(rng, ctl_path(ctx, "ca.crt", path, sizeof path),
                         ctl_path(ctx, "ca.key", key, sizeof key), &ca, err, sizeof err);
        if (rc == SYNC_OK)
            rc = ctl_file_read(path, &cacrt, &cacrt_len, err, sizeof err);
    }
    if (rc == SYNC_OK)
        rc = ctl_ca_issue(ca, rng, tenant, device, days, &id, err, sizeof err);
    if (rc == SYNC_OK && password) {
        if (ctl_passwd_generate(rng, pw, sizeof pw) != SYNC_OK)
            rc = sync_seterr(err, sizeof err, SYNC_ERR_IO, "the random generator failed");
        else
            rc = ctl_passwd_hash(rng, pw, d.pw_hash, sizeof d.pw_hash, err, sizeof err);
    }
    if (rc == SYNC_OK) {
        snprintf(d.serial, sizeof d.serial, "%s", id.serial);
        snprintf(d.fingerprint, sizeof d.fingerprint, "%s", id.fingerprint);
        d.created = time(NULL);
        d.not_after = id.not_after;
        rc = ctl_registry_begin(r, err, sizeof err);
        in_tx = rc == SYNC_OK;
    }
    if (rc == SYNC_OK)
        rc = ctl_registry_add(r, &d, err, sizeof err);
    /* The default folder's parent is closed (0700) like the folder itself: it holds keys. */
    if (rc == SYNC_OK && !opts[3].value)
        rc = ctl_mkdir(ctl_path(ctx, "devices", path, sizeof path), 0700, err, sizeof err);
    if (rc == SYNC_OK) {
        if (access(out, F_OK) != 0 && errno == ENOENT)
            snprintf(w.dir, sizeof w.dir, "%s", out);
        rc = ctl_mkdir(out, 0700, err, sizeof err);
        if (rc != SYNC_OK)
            w.dir[0] = '\0';
    }
    if (rc == SYNC_OK)
        rc = write_file(&w, out, "device.key", id.key_pem, id.key_len, 0600, err, sizeof err);
    if (rc == SYNC_OK)
        rc = write_file(&w, out, "device.crt", id.crt_pem, id.crt_len, 0644, err, sizeof err);
    if (rc == SYNC_OK)
        rc = write_file(&w, out, "ca.crt", cacrt, cacrt_len, 0644, err, sizeof err);
    if (rc == SYNC_OK && password) {
        int n = snprintf(line, sizeof line, "%s\n", pw);
        rc = write_file(&w, out, "device.pass", line, (size_t)n, 0600, err, sizeof err);
    }
    if (rc == SYNC_OK) {
        rc = ctl_registry_commit(r, err, sizeof err);
        in_tx = rc != SYNC_OK;
    }
    if (rc != SYNC_OK) {
        if (in_tx)
            ctl_registry_rollback(r);
        unwrite(&w);
        status = ctl_fail(ctx, 1, err);
    } else {
        sync_notice("added device %s of tenant %s (serial %s, sha256 %s%s)", device, tenant,
                    id.serial, id.fingerprint, password ? ", with a password" : "");
        print_added(ctx, &d, out, password);
        /* The device exists now; a file that cannot be written is fixed by running
         * `syncctl acl generate` once the cause is gone. */
        if (ctl_regen(ctx, r, rng, CTL_REGEN_PASSWD | CTL_REGEN_ACL, err, sizeof err) != SYNC_OK)
            status = ctl_fail(ctx, 1, err);
        else
            status = ctl_reload(ctx);
    }
    ctl_wipe(pw, sizeof pw);
    ctl_wipe(line, sizeof line);
    free(cacrt);
    ctl_identity_free(&id);
    ctl_ca_close(ca);
    ctl_rng_free(rng);
    ctl_registry_close(r);
    close(lock);
    return status;
}

/* ---- device list / show ----------------------------------------------------------------- */

/* Writes one device as a JSON object into buf (n bytes). */
static void device_json(const ctl_device *d, char *buf, size_t n)
{
    sync_json j;
    char t[21];
    sync_json_init(&j, buf, n);
    sync_json_begin(&j);
    sync_json_key(&j, "tenant");
    sync_json_cstr(&j, d->tenant);
    sync_json_key(&j, "device");
    sync_json_cstr(&j, d->device);
    sync_json_key(&j, "role");
    if (d->role[0])
        sync_json_cstr(&j, d->role);
    else
        sync_json_raw(&j, "null");
    sync_json_key(&j, "status");
    sync_json_cstr(&j, ctl_status_name(d->status));
    sync_json_key(&j, "serial");
    sync_json_cstr(&j, d->serial);
    sync_json_key(&j, "sha256");
    sync_json_cstr(&j, d->fingerprint);
    sync_json_key(&j, "created");
    ctl_time_iso(d->created, t);
    sync_json_cstr(&j, t);
    sync_json_key(&j, "not_after");
    ctl_time_iso(d->not_after, t);
    sync_json_cstr(&j, t);
    sync_json_key(&j, "updated");
    ctl_time_iso(d->updated, t);
    sync_json_cstr(&j, t);
    sync_json_key(&j, "revoked_at");
    if (d->status != CTL_ACTIVE) {
        ctl_time_iso(d->revoked_at, t);
        sync_json_cstr(&j, t);
    } else {
        sync_json_raw(&j, "null");
    }
    sync_json_key(&j, "reason");
    if (d->status != CTL_ACTIVE)
        sync_json_cstr(&j, reason_name(d->reason));
    else
        sync_json_raw(&j, "null");
    sync_json_key(&j, "password");
    sync_json_bool(&j, d->pw_hash[0] != '\0');
    sync_json_end(&j);
}

struct lister {
    int json;  /* print JSON */
    long rows; /* printed so far */
};

static int list_one(void *ctx, const ctl_device *d)
{
    struct lister *l = ctx;
    if (l->json) {
        char buf[2048];
        device_json(d, buf, sizeof buf);
        printf("%s\n  %s", l->rows ? "," : "", buf);
    } else {
        char until[21];
        ctl_time_iso(d->not_after, until);
        printf("%-16s %-24s %-12s %-10s %-21s %s\n", d->tenant, d->device,
               d->role[0] ? d->role : "-", ctl_status_name(d->status), until, d->serial);
    }
    l->rows++;
    return 0;
}

int ctl_cmd_device_list(ctl_ctx *ctx, int argc, char **argv)
{
    ctl_opt opts[] = {{"tenant", 0, NULL}, {"json", 1, NULL}};
    int status = ctl_args(ctx, argc, argv, opts, 2, NULL, 0, 0, NULL);
    if (status >= 0)
        return status;
    if (opts[0].value && check_id("tenant", opts[0].value))
        return 2;
    char err[1024], path[PATH_MAX];
    ctl_registry *r;
    if (ctl_registry_open(ctl_path(ctx, "registry.db", path, sizeof path), CTL_REG_READ, &r, err,
                          sizeof err) != SYNC_OK)
        return ctl_fail(ctx, 1, err);
    struct lister l = {opts[1].value != NULL, 0};
    if (l.json)
        printf("[");
    else
        printf("%-16s %-24s %-12s %-10s %-21s %s\n", "TENANT", "DEVICE", "ROLE", "STATUS",
               "EXPIRES", "SERIAL");
    int rc = ctl_registry_each(r, opts[0].value, list_one, &l, err, sizeof err);
    if (l.json)
        printf("%s]\n", l.rows ? "\n" : "");
    ctl_registry_close(r);
    return rc == SYNC_OK ? 0 : ctl_fail(ctx, 1, err);
}

int ctl_cmd_device_show(ctl_ctx *ctx, int argc, char **argv)
{
    ctl_opt opts[] = {{"json", 1, NULL}};
    const char *pos[1];
    int status = ctl_args(ctx, argc, argv, opts, 1, pos, 1, 1, NULL);
    if (status >= 0)
        return status;
    if (check_id("device id", pos[0]))
        return 2;
    char err[1024], path[PATH_MAX];
    ctl_registry *r;
    ctl_device d;
    if (ctl_registry_open(ctl_path(ctx, "registry.db", path, sizeof path), CTL_REG_READ, &r, err,
                          sizeof err) != SYNC_OK)
        return ctl_fail(ctx, 1, err);
    int rc = ctl_registry_get(r, pos[0], &d, err, sizeof err);
    ctl_registry_close(r);
    if (rc != SYNC_OK)
        return ctl_fail(ctx, 1, err);
    if (opts[0].value) {
        char buf[2048];
        device_json(&d, buf, sizeof buf);
        printf("%s\n", buf);
        return 0;
    }
    char created[21], until[21], updated[21], revoked[21];
    ctl_time_iso(d.created, created);
    ctl_time_iso(d.not_after, until);
    ctl_time_iso(d.updated, updated);
    ctl_time_iso(d.revoked_at, revoked);
    printf("device      %s\n"
           "tenant      %s\n"
           "role        %s\n"
           "status      %s\n"
           "serial      %s\n"
           "sha256      %s\n"
           "created     %s\n"
           "expires     %s\n"
           "updated     %s\n",
           d.device, d.tenant, d.role[0] ? d.role : "-", ctl_status_name(d.status), d.serial,
           d.fingerprint, created, until, updated);
    if (d.status != CTL_ACTIVE)
        printf("revoked     %s (%s)\n", revoked, reason_name(d.reason));
    printf("password    %s\n", d.pw_hash[0] ? "yes" : "no (certificate only)");
    return 0;
}

/* ---- device suspend / resume / remove --------------------------------------------------- */

/* Moves a device to status `to` and brings the CRL, password and ACL files in line. */
static int change_status(ctl_ctx *ctx, int argc, char **argv, ctl_status to)
{
    ctl_opt opts[] = {{"compromised", 1, NULL}};
    const char *pos[1];
    int status = ctl_args(ctx, argc, argv, opts, to == CTL_REMOVED ? 1 : 0, pos, 1, 1, NULL);
    if (status >= 0)
        return status;
    const char *device = pos[0];
    if (check_id("device id", device))
        return 2;
    int compromised = opts[0].value != NULL;
    int reason = to == CTL_SUSPENDED ? CTL_REASON_HOLD
                 : compromised       ? CTL_REASON_KEY_COMPROMISE
                                     : CTL_REASON_CESSATION;
    char err[1024], path[PATH_MAX];
    int lock = ctl_lock(ctx->cfg.dir, err, sizeof err);
    if (lock < 0)
        return ctl_fail(ctx, 1, err);
    ctl_registry *r = NULL;
    ctl_rng *rng = NULL;
    ctl_device d;
    int rc = ctl_registry_open(ctl_path(ctx, "registry.db", path, sizeof path), CTL_REG_WRITE, &r,
                               err, sizeof err);
    if (rc == SYNC_OK)
        rc = ctl_registry_begin(r, err, sizeof err);
    if (rc == SYNC_OK)
        rc = ctl_registry_get(r, device, &d, err, sizeof err);
    int nothing = 0;
    if (rc == SYNC_OK) {
        if (d.status == CTL_REMOVED && to != CTL_REMOVED)
            rc = sync_seterr(err, sizeof err, SYNC_ERR_STATE,
                             "device '%s' is removed: its certificate stays revoked for good "
                             "(add a device with a new id instead)",
                             device);
        else if (d.status == to &&
                 !(to == CTL_REMOVED && compromised && d.reason != CTL_REASON_KEY_COMPROMISE))
            nothing = 1;
        else if (to == CTL_ACTIVE && d.status != CTL_SUSPENDED)
            nothing = 1;
    }
    if (rc == SYNC_OK && !nothing)
        rc = ctl_registry_set_status(r, device, to, reason, time(NULL), err, sizeof err);
    if (rc == SYNC_OK)
        rc = ctl_registry_commit(r, err, sizeof err);
    else if (r)
        ctl_registry_rollback(r);
    if (rc == SYNC_OK && nothing) {
        printf("device %s of tenant %s is %s already: nothing to do\n", device, d.tenant,
               ctl_status_name(d.status));
        status = 0;
    } else if (rc == SYNC_OK) {
        static const char *const done[] = {"resumed", "suspended", "removed"};
        printf("%s device %s of tenant %s (serial %s)\n", done[to], device, d.tenant, d.serial);
        sync_notice("%s device %s of tenant %s (serial %s%s%s)", done[to], device, d.tenant,
                    d.serial, to == CTL_ACTIVE ? "" : ", CRL reason ",
                    to == CTL_ACTIVE ? "" : reason_name(reason));
        rc = ctl_rng_new(&rng, err, sizeof err);
        if (rc == SYNC_OK)
            rc = ctl_regen(ctx, r, rng, CTL_REGEN_ALL, err, sizeof err);
        if (rc != SYNC_OK) {
            ctl_fail(ctx, 1, err);
            status = ctl_fail(ctx, 1,
                              "the registry is changed but the broker's files are not all "
                              "written: fix the cause, then run `syncctl crl generate` and "
                              "`syncctl acl generate`");
        } else {
            status = ctl_reload(ctx);
        }
    } else {
        status = ctl_fail(ctx, 1, err);
    }
    ctl_rng_free(rng);
    ctl_registry_close(r);
    close(lock);
    return status;
}

int ctl_cmd_device_suspend(ctl_ctx *ctx, int argc, char **argv)
{
    return change_status(ctx, argc, argv, CTL_SUSPENDED);
}

int ctl_cmd_device_resume(ctl_ctx *ctx, int argc, char **argv)
{
    return change_status(ctx, argc, argv, CTL_ACTIVE);
}

int ctl_cmd_device_remove(ctl_ctx *ctx, int argc, char **argv)
{
    return change_status(ctx, argc, argv, CTL_REMOVED);
}
