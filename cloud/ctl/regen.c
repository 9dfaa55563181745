/* regen.c - the CRL, password and ACL files from the registry, and the reload (regen.h). */
#include "regen.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aclgen.h"
#include "broker.h"
#include "files.h"
#include "passwd.h"
#include "sync/err.h"
#include "sync/log.h"

/* The certificates on the CRL: every suspended and removed device. */
struct revoked {
    ctl_revoked *v;
    char (*serials)[41]; /* the strings v[i].serial points to */
    size_t n, cap;
    int oom;
};

static int collect(void *ctx, const ctl_device *d)
{
    struct revoked *r = ctx;
    if (d->status == CTL_ACTIVE)
        return 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        ctl_revoked *nv = realloc(r->v, cap * sizeof *nv);
        if (nv)
            r->v = nv;
        char(*ns)[41] = nv ? realloc(r->serials, cap * sizeof *ns) : NULL;
        if (!ns) {
            r->oom = 1;
            return 1;
        }
        r->serials = ns;
        r->cap = cap;
    }
    snprintf(r->serials[r->n], sizeof r->serials[r->n], "%s", d->serial);
    r->v[r->n].when = d->revoked_at ? d->revoked_at : d->updated;
    r->v[r->n].reason = d->reason ? d->reason : CTL_REASON_CESSATION;
    r->n++;
    return 0;
}

int ctl_regen_crl(ctl_ctx *ctx, ctl_registry *r, ctl_rng *rng, ctl_ca *ca, char *err, size_t errlen)
{
    struct revoked rv = {NULL, NULL, 0, 0, 0};
    char *pem = NULL;
    size_t len = 0;
    unsigned long number = 0;
    char path[PATH_MAX];
    int rc = ctl_registry_each(r, NULL, collect, &rv, err, errlen);
    if (rv.oom)
        rc = sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    /* The strings move with realloc: point at them once the list is complete. */
    for (size_t i = 0; rc == SYNC_OK && i < rv.n; i++)
        rv.v[i].serial = rv.serials[i];
    if (rc == SYNC_OK)
        rc = ctl_registry_next_crl_number(r, &number, err, errlen);
    if (rc == SYNC_OK)
        rc = ctl_ca_crl(ca, rng, rv.v, rv.n, ctx->cfg.crl_days, number, &pem, &len, err, errlen);
    if (rc == SYNC_OK)
        rc = ctl_file_replace(ctl_path(ctx, "crl.pem", path, sizeof path), pem, len, 0644,
                              (gid_t)ctx->cfg.broker_gid, err, errlen);
    if (rc == SYNC_OK) {
        printf("wrote %s (CRL number %lu, %zu revoked, valid %ld days)\n", path, number, rv.n,
               ctx->cfg.crl_days);
        sync_notice("wrote %s: CRL number %lu, %zu revoked", path, number, rv.n);
    }
    free(pem);
    free(rv.v);
    free(rv.serials);
    return rc;
}

int ctl_regen(ctl_ctx *ctx, ctl_registry *r, ctl_rng *rng, unsigned what, char *err, size_t errlen)
{
    const ctl_config *c = &ctx->cfg;
    int rc = SYNC_OK;
    if (what & CTL_REGEN_CRL) {
        char crt[PATH_MAX], key[PATH_MAX];
        ctl_ca *ca;
        rc = ctl_ca_open(rng, ctl_path(ctx, "ca.crt", crt, sizeof crt),
                         ctl_path(ctx, "ca.key", key, sizeof key), &ca, err, errlen);
        if (rc == SYNC_OK) {
            rc = ctl_regen_crl(ctx, r, rng, ca, err, errlen);
            ctl_ca_close(ca);
        }
    }
    if (rc == SYNC_OK && (what & CTL_REGEN_PASSWD)) {
        rc = ctl_passwd_write(c->password_file, r, (gid_t)c->broker_gid, err, errlen);
        if (rc == SYNC_OK)
            printf("wrote %s\n", c->password_file);
    }
    if (rc == SYNC_OK && (what & CTL_REGEN_ACL)) {
        rc = ctl_acl_write(c->acl_file, r, c->cloud_user, c->admin_user, c->acl_extra,
                           c->cloud_config, (gid_t)c->broker_gid, err, errlen);
        if (rc == SYNC_OK)
            printf("wrote %s\n", c->acl_file);
    }
    return rc;
}

int ctl_reload(const ctl_ctx *ctx)
{
    char err[512];
    long pid = 0;
    int rc =
        ctl_broker_reload(ctx->cfg.broker_pid, ctx->cfg.broker_pid_file, &pid, err, sizeof err);
    if (rc == SYNC_OK) {
        printf("reloaded the broker (SIGHUP to pid %ld)\n", pid);
        sync_notice("sent SIGHUP to the broker (pid %ld)", pid);
        return 0;
    }
    if (rc == SYNC_ERR_STATE) {
        printf("The broker must reload its files now for this to take effect, e.g.\n"
               "  systemctl reload mosquitto    (or: kill -HUP <mosquitto's pid>)\n"
               "(set broker_pid_file in syncctl.conf to have syncctl do it)\n");
        return 0;
    }
    ctl_fail(ctx, 1, err);
    fprintf(stderr, "syncctl: the files are written; reload the broker by hand "
                    "(kill -HUP <mosquitto's pid>)\n");
    return 1;
}
