/* cmd_ca.c - `syncctl ca init`: the CA, the registry and the first (empty) CRL. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "files.h"
#include "pki.h"
#include "regen.h"
#include "registry.h"
#include "sync/err.h"
#include "sync/log.h"

#define CA_DAYS_DEFAULT 3650
#define CA_CN_DEFAULT "syncedge device CA"

int ctl_cmd_ca_init(ctl_ctx *ctx, int argc, char **argv)
{
    ctl_opt opts[] = {{"cn", 0, NULL}, {"days", 0, NULL}, {"key_type", 0, NULL}};
    int status = ctl_args(ctx, argc, argv, opts, 3, NULL, 0, 0, NULL);
    if (status >= 0)
        return status;
    long days = CA_DAYS_DEFAULT;
    if (ctl_opt_long(&opts[1], 1, 36500, &days) != 0)
        return 2;
    const char *cn = opts[0].value ? opts[0].value : CA_CN_DEFAULT;
    const char *type = opts[2].value ? opts[2].value : "ec";
    if (strcmp(type, "ec") != 0 && strcmp(type, "rsa") != 0) {
        fprintf(stderr, "Error: Invalid key_type value (%s): ec or rsa\n", type);
        return 2;
    }
    if (!ctl_pki_cn_valid(cn)) {
        fprintf(stderr,
                "Error: Invalid cn value (%s): 1-64 printable characters, none of , = + ; \" \\ "
                "< > #, no space at either end\n",
                cn);
        return 2;
    }
    char err[1024], key[PATH_MAX], crt[PATH_MAX], reg[PATH_MAX], devs[PATH_MAX];
    ctl_path(ctx, "ca.key", key, sizeof key);
    ctl_path(ctx, "ca.crt", crt, sizeof crt);
    ctl_path(ctx, "registry.db", reg, sizeof reg);
    ctl_path(ctx, "devices", devs, sizeof devs);
    /* DIR is traversable by all: the broker may read crl.pem, passwd and acl from it. What is
     * secret in it (ca.key, registry.db, devices/) is closed by its own mode. */
    if (ctl_mkdir(ctx->cfg.dir, 0755, err, sizeof err) != SYNC_OK)
        return ctl_fail(ctx, 1, err);
    int lock = ctl_lock(ctx->cfg.dir, err, sizeof err);
    if (lock < 0)
        return ctl_fail(ctx, 1, err);
    const char *const mine[] = {key, crt, reg};
    for (int i = 0; i < 3; i++) {
        if (access(mine[i], F_OK) == 0) {
            snprintf(err, sizeof err,
                     "%s exists: %s already has a CA; refusing to overwrite it (use another "
                     "--dir for a new CA)",
                     mine[i], ctx->cfg.dir);
            close(lock);
            return ctl_fail(ctx, 1, err);
        }
    }
    ctl_rng *rng = NULL;
    ctl_identity id = {0};
    ctl_registry *r = NULL;
    ctl_ca *ca = NULL;
    int made = 0; /* how many of mine[] we created: removed again on failure */
    int rc = ctl_rng_new(&rng, err, sizeof err);
    if (rc == SYNC_OK) {
        if (strcmp(type, "rsa") == 0)
            printf("generating an RSA %d key (a few seconds)...\n", 3072);
        rc = ctl_pki_make_ca(rng, cn, days, strcmp(type, "rsa") == 0, &id, err, sizeof err);
    }
    /* The key file is created exclusively with mode 0600 and written once: never a moment
     * with the key in a file others could open. */
    if (rc == SYNC_OK &&
        (rc = ctl_file_create(key, id.key_pem, id.key_len, 0600, err, sizeof err)) == SYNC_OK)
        made = 1;
    if (rc == SYNC_OK &&
        (rc = ctl_file_create(crt, id.crt_pem, id.crt_len, 0644, err, sizeof err)) == SYNC_OK)
        made = 2;
    if (rc == SYNC_OK &&
        (rc = ctl_registry_open(reg, CTL_REG_CREATE, &r, err, sizeof err)) == SYNC_OK)
        made = 3;
    if (rc == SYNC_OK)
        rc = ctl_mkdir(devs, 0700, err, sizeof err);
    if (rc == SYNC_OK)
        rc = ctl_ca_open(rng, crt, key, &ca, err, sizeof err);
    if (rc == SYNC_OK)
        rc = ctl_regen_crl(ctx, r, rng, ca, err, sizeof err);
    if (rc == SYNC_OK) {
        char until[21];
        ctl_time_iso(id.not_after, until);
        printf("Created the CA \"%s\" (%s, SHA-256, serial %s, valid until %s):\n"
               "  %s  its private key (mode 0600): keep it here and a copy offline\n"
               "  %s  its certificate: the broker's cafile for device certificates\n"
               "  %s  the device registry\n"
               "A Mosquitto listener for device certificates:\n"
               "  require_certificate true\n"
               "  use_identity_as_username true\n"
               "  cafile %s\n"
               "  crlfile %s/crl.pem\n"
               "Next: syncctl device add TENANT DEVICE\n",
               cn, strcmp(type, "rsa") == 0 ? "RSA 3072" : "ECDSA P-256", id.serial, until, key,
               crt, reg, crt, ctx->cfg.dir);
        sync_notice("created the CA \"%s\" in %s (serial %s)", cn, ctx->cfg.dir, id.serial);
    } else {
        for (int i = made; i-- > 0;)
            unlink(mine[i]);
    }
    ctl_ca_close(ca);
    ctl_registry_close(r);
    ctl_identity_free(&id);
    ctl_rng_free(rng);
    close(lock);
    return rc == SYNC_OK ? 0 : ctl_fail(ctx, 1, err);
}
