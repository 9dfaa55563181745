/* cmd_broker.c - `syncctl acl generate`, `syncctl crl generate`, `syncctl broker reload`:
 * the broker's files written again from the registry, on their own. */
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include "ctl.h"
#include "files.h"
#include "pki.h"
#include "regen.h"
#include "registry.h"
#include "sync/err.h"

/* Writes the files in `what` from the registry under the lock, then reloads the broker. */
static int regen_cmd(ctl_ctx *ctx, int argc, char **argv, unsigned what)
{
    int status = ctl_args(ctx, argc, argv, NULL, 0, NULL, 0, 0, NULL);
    if (status >= 0)
        return status;
    char err[1024], path[PATH_MAX];
    int lock = ctl_lock(ctx->cfg.dir, err, sizeof err);
    if (lock < 0)
        return ctl_fail(ctx, 1, err);
    ctl_registry *r = NULL;
    ctl_rng *rng = NULL;
    /* Writable even for the ACL: a CRL takes a new CRL number. */
    int rc = ctl_registry_open(ctl_path(ctx, "registry.db", path, sizeof path), CTL_REG_WRITE, &r,
                               err, sizeof err);
    if (rc == SYNC_OK)
        rc = ctl_rng_new(&rng, err, sizeof err);
    if (rc == SYNC_OK)
        rc = ctl_regen(ctx, r, rng, what, err, sizeof err);
    status = rc == SYNC_OK ? ctl_reload(ctx) : ctl_fail(ctx, 1, err);
    ctl_rng_free(rng);
    ctl_registry_close(r);
    close(lock);
    return status;
}

int ctl_cmd_acl_generate(ctl_ctx *ctx, int argc, char **argv)
{
    return regen_cmd(ctx, argc, argv, CTL_REGEN_ACL);
}

int ctl_cmd_crl_generate(ctl_ctx *ctx, int argc, char **argv)
{
    return regen_cmd(ctx, argc, argv, CTL_REGEN_CRL);
}

int ctl_cmd_broker_reload(ctl_ctx *ctx, int argc, char **argv)
{
    int status = ctl_args(ctx, argc, argv, NULL, 0, NULL, 0, 0, NULL);
    if (status >= 0)
        return status;
    if (ctx->cfg.broker_pid <= 0 && !ctx->cfg.broker_pid_file)
        return ctl_fail(ctx, 2, "broker reload needs broker_pid_file or --broker-pid");
    return ctl_reload(ctx);
}
