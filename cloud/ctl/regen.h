/* regen.h - bringing the broker's files in line with the registry, then reloading it.
 *
 * The registry is the truth; the CRL, the password file and the ACL file are derived from it,
 * each written whole and crash-safely. So after any change (or any failure half-way) running
 * this again puts everything right.
 */
#ifndef CTL_REGEN_H
#define CTL_REGEN_H

#include <stddef.h>

#include "ctl.h"
#include "pki.h"
#include "registry.h"

#define CTL_REGEN_CRL 1u    /* DIR/crl.pem */
#define CTL_REGEN_PASSWD 2u /* the password file */
#define CTL_REGEN_ACL 4u    /* the ACL file */
#define CTL_REGEN_ALL 7u

/* Writes the files named in `what` from the registry r (open for writing: a CRL takes a new
 * CRL number) and prints one line per file on stdout. The CRL needs the CA (ca.crt, ca.key in
 * DIR). Returns SYNC_OK, or an error with a message naming the file that could not be
 * written (files before it are written). */
int ctl_regen(ctl_ctx *ctx, ctl_registry *r, ctl_rng *rng, unsigned what, char *err, size_t errlen);

/* Reloads the broker (broker.h) and prints what happened on stdout; without a configured pid
 * or pid file, prints that the broker must be reloaded by hand. Returns 0, or 1 after printing
 * why the reload failed. */
int ctl_reload(const ctl_ctx *ctx);

/* Writes DIR/crl.pem from the registry with the CA already open. */
int ctl_regen_crl(ctl_ctx *ctx, ctl_registry *r, ctl_rng *rng, ctl_ca *ca, char *err,
                  size_t errlen);

#endif
