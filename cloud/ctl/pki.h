/* pki.h - keys, certificates and the CRL of syncctl's CA, with mbedTLS.
 *
 * Everything is made in memory and handed back as PEM; writing files is the caller's job
 * (files.h), so a failure never leaves half an identity on disk. Private keys live only in
 * buffers that the *_free functions wipe. Every certificate and CRL made here is parsed back
 * and checked against the CA before it is returned.
 */
#ifndef CTL_PKI_H
#define CTL_PKI_H

#include <stddef.h>
#include <time.h>

#define CTL_SERIAL_BYTES 16 /* random serial of every certificate: 128 bits, 127 of them random */

/* CRL reason codes (RFC 5280, CRLReason) that syncctl uses. */
#define CTL_REASON_KEY_COMPROMISE 1
#define CTL_REASON_CESSATION 5 /* cessationOfOperation: a removed device */
#define CTL_REASON_HOLD 6      /* certificateHold: a suspended device */

/* A CTR-DRBG seeded from the system's entropy: every key, serial, salt and password. */
typedef struct ctl_rng ctl_rng;

/* Creates and seeds a generator. Returns SYNC_OK, or SYNC_ERR_IO with a message (no entropy),
 * SYNC_ERR_NOMEM. The caller frees it with ctl_rng_free. */
int ctl_rng_new(ctl_rng **out, char *err, size_t errlen);
void ctl_rng_free(ctl_rng *r);
/* Fills buf with n random bytes. Returns SYNC_OK or SYNC_ERR_IO. */
int ctl_rng_bytes(ctl_rng *r, unsigned char *buf, size_t n);

/* A private key and its certificate, PEM, owned by the struct. */
typedef struct ctl_identity {
    char *key_pem;                         /* NUL-terminated; wiped and freed by _free */
    size_t key_len;                        /* bytes without the NUL */
    char *crt_pem;                         /* NUL-terminated */
    size_t crt_len;                        /* bytes without the NUL */
    char serial[2 * CTL_SERIAL_BYTES + 1]; /* upper-case hex, as `openssl x509 -serial` */
    char fingerprint[65];                  /* SHA-256 of the certificate's DER, lower hex */
    time_t not_before, not_after;          /* validity */
} ctl_identity;

/* Wipes the key, frees both buffers and zeroes the struct. NULL fields are fine. */
void ctl_identity_free(ctl_identity *id);

/* Nonzero if name is acceptable as the CA's common name: 1..64 printable ASCII characters
 * without , = + ; " \ < > # (so the name reads back exactly as it was written). */
int ctl_pki_cn_valid(const char *name);

/* Makes a CA: a new key (ECDSA P-256, or RSA 3072 with rsa set) and a self-signed certificate
 * CN=cn valid for days, basicConstraints CA:TRUE pathlen 0, keyUsage keyCertSign|cRLSign,
 * signed with SHA-256. On error *out is empty and a message says why. */
int ctl_pki_make_ca(ctl_rng *rng, const char *cn, long days, int rsa, ctl_identity *out, char *err,
                    size_t errlen);

/* The CA's key and certificate, loaded to sign. */
typedef struct ctl_ca ctl_ca;

/* Loads the CA from its certificate and key files and checks that they belong together (rng:
 * mbedTLS 3.x wants one for that). The key file's content is wiped from memory after parsing.
 * Returns SYNC_OK, SYNC_ERR_STATE when a file does not exist (no CA yet), or
 * SYNC_ERR_IO/SYNC_ERR_INVAL with a message. */
int ctl_ca_open(ctl_rng *rng, const char *crt_path, const char *key_path, ctl_ca **out, char *err,
                size_t errlen);
void ctl_ca_close(ctl_ca *ca);

/* Issues a device identity: a new ECDSA P-256 key and a certificate for subject
 * CN=device, O=tenant, signed by the CA with SHA-256, valid for days from now (but never past
 * the CA's own expiry: that is an error), basicConstraints CA:FALSE, keyUsage
 * digitalSignature, extendedKeyUsage clientAuth, a random serial. The ids must already be
 * valid (sync_id_valid). On error *out is empty. */
int ctl_ca_issue(ctl_ca *ca, ctl_rng *rng, const char *tenant, const char *device, long days,
                 ctl_identity *out, char *err, size_t errlen);

/* One certificate on the CRL. */
typedef struct ctl_revoked {
    const char *serial; /* hex, as ctl_identity.serial */
    time_t when;        /* revocationDate */
    int reason;         /* a CTL_REASON_* code */
} ctl_revoked;

/* Makes a signed X.509 v2 CRL in PEM: thisUpdate now, nextUpdate now + days, the n revoked
 * certificates with their reasons, the CRL number `number` and the CA's key identifier.
 * *pem is allocated (NUL-terminated; *len without the NUL) and the caller frees it. */
int ctl_ca_crl(ctl_ca *ca, ctl_rng *rng, const ctl_revoked *list, size_t n, long days,
               unsigned long number, char **pem, size_t *len, char *err, size_t errlen);

/* The CA certificate's expiry (notAfter). */
time_t ctl_ca_not_after(const ctl_ca *ca);

#endif
