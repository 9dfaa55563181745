/* pki.c - the CA, device certificates and the CRL with mbedTLS (see pki.h).
 *
 * Certificates come from mbedTLS's writer. mbedTLS 2.28 has no CRL writer, so the CRL's DER
 * is built here with mbedtls_asn1_write_*, which write backwards from the end of a buffer:
 * every structure is written last field first, then its header. The CRL is signed with
 * mbedtls_pk_sign, and both the signature and the parsed-back CRL are checked before it is
 * handed out.
 */
#include "pki.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>

#include "files.h"
#include "sync/err.h"
#include "sync/log.h"
#include "tls_compat.h"

/* id-ce-cRLReasons (2.5.29.21): the reason of one CRL entry. */
#define CTL_OID_CRL_REASON MBEDTLS_OID_ID_CE "\x15"

/* Validity starts this long before now, so a broker whose clock is a little behind the
 * machine that ran syncctl does not refuse a certificate issued a moment ago. */
#define CTL_BACKDATE_S 3600

#define CTL_RSA_BITS 3072
#define CTL_DER_MAX 8192 /* room for one certificate (RSA 3072 CA included) */
#define CTL_KEY_PEM_MAX 16000

static const char crt_header[] = "-----BEGIN CERTIFICATE-----\n";
static const char crt_footer[] = "-----END CERTIFICATE-----\n";
static const char crl_header[] = "-----BEGIN X509 CRL-----\n";
static const char crl_footer[] = "-----END X509 CRL-----\n";

struct ctl_rng {
    mbedtls_entropy_context entropy; /* the system's entropy sources */
    mbedtls_ctr_drbg_context drbg;   /* seeded from entropy; what everything draws from */
};

struct ctl_ca {
    mbedtls_x509_crt crt;    /* the CA certificate */
    mbedtls_pk_context key;  /* its private key */
    char dn[256];            /* its subject, as text: the issuer name of what it signs */
    unsigned char keyid[20]; /* its subjectKeyIdentifier (SHA-1 of the public key) */
};

/* mbedTLS's description of an error code, in buf. */
static const char *mberr(int rc, char *buf, size_t n)
{
    mbedtls_strerror(rc, buf, n);
    return buf;
}

static int tls_fail(char *err, size_t errlen, int rc, const char *what)
{
    char m[160];
    return sync_seterr(err, errlen,
                       rc == MBEDTLS_ERR_X509_ALLOC_FAILED ? SYNC_ERR_NOMEM : SYNC_ERR_INVAL,
                       "%s: %s", what, mberr(rc, m, sizeof m));
}

int ctl_rng_new(ctl_rng **out, char *err, size_t errlen)
{
    static const char pers[] = "syncctl";
    *out = NULL;
    ctl_rng *r = calloc(1, sizeof *r);
    if (!r)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    mbedtls_entropy_init(&r->entropy);
    mbedtls_ctr_drbg_init(&r->drbg);
    int rc = mbedtls_ctr_drbg_seed(&r->drbg, mbedtls_entropy_func, &r->entropy,
                                   (const unsigned char *)pers, sizeof pers - 1);
    if (rc != 0) {
        char m[160];
        ctl_rng_free(r);
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot seed the random generator: %s",
                           mberr(rc, m, sizeof m));
    }
    *out = r;
    return SYNC_OK;
}

void ctl_rng_free(ctl_rng *r)
{
    if (!r)
        return;
    mbedtls_ctr_drbg_free(&r->drbg);
    mbedtls_entropy_free(&r->entropy);
    free(r);
}

int ctl_rng_bytes(ctl_rng *r, unsigned char *buf, size_t n)
{
    /* One CTR-DRBG call returns at most MBEDTLS_CTR_DRBG_MAX_REQUEST bytes. */
    while (n > 0) {
        size_t k = n < MBEDTLS_CTR_DRBG_MAX_REQUEST ? n : MBEDTLS_CTR_DRBG_MAX_REQUEST;
        if (mbedtls_ctr_drbg_random(&r->drbg, buf, k) != 0)
            return SYNC_ERR_IO;
        buf += k;
        n -= k;
    }
    return SYNC_OK;
}

void ctl_identity_free(ctl_identity *id)
{
    if (id->key_pem)
        ctl_wipe(id->key_pem, id->key_len);
    free(id->key_pem);
    free(id->crt_pem);
    memset(id, 0, sizeof *id);
}

int ctl_pki_cn_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c > 0x7e || strchr(",=+;\"\\<>#", c))
            return 0;
    }
    /* Leading or trailing spaces would need escaping in the name's text form. */
    return name[0] != ' ' && name[n - 1] != ' ';
}

static void hex(const unsigned char *b, size_t n, char *out, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* "YYYYMMDDhhmmss" in UTC, the form mbedtls_x509write_crt_set_validity takes. */
static void validity_str(time_t t, char out[16])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

static time_t x509_time(const mbedtls_x509_time *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = t->year - 1900;
    tm.tm_mon = t->mon - 1;
    tm.tm_mday = t->day;
    tm.tm_hour = t->hour;
    tm.tm_min = t->min;
    tm.tm_sec = t->sec;
    return timegm(&tm);
}

/* Generates a key: ECDSA P-256, or RSA 3072 when rsa is set. */
static int gen_key(mbedtls_pk_context *key, int rsa, ctl_rng *rng)
{
    int rc =
        mbedtls_pk_setup(key, mbedtls_pk_info_from_type(rsa ? MBEDTLS_PK_RSA : MBEDTLS_PK_ECKEY));
    if (rc != 0)
        return rc;
    if (rsa)
        return mbedtls_rsa_gen_key(mbedtls_pk_rsa(*key), mbedtls_ctr_drbg_random, &rng->drbg,
                                   CTL_RSA_BITS, 65537);
    return mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key),
                               mbedtls_ctr_drbg_random, &rng->drbg);
}

/* Puts the private key into id as PEM. */
static int put_key(mbedtls_pk_context *key, ctl_identity *id, char *err, size_t errlen)
{
    unsigned char *buf = calloc(1, CTL_KEY_PEM_MAX);
    if (!buf)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    int rc = mbedtls_pk_write_key_pem(key, buf, CTL_KEY_PEM_MAX);
    if (rc != 0) {
        ctl_wipe(buf, CTL_KEY_PEM_MAX);
        free(buf);
        return tls_fail(err, errlen, rc, "cannot encode the private key");
    }
    id->key_pem = (char *)buf;
    id->key_len = strlen(id->key_pem);
    return SYNC_OK;
}

/* Gives the certificate a random serial, signs it, and puts it into id as PEM with its
 * serial and fingerprint. */
static int sign_crt(mbedtls_x509write_cert *crt, ctl_rng *rng, ctl_identity *id, char *err,
                    size_t errlen)
{
    unsigned char serial[CTL_SERIAL_BYTES];
    if (ctl_rng_bytes(rng, serial, sizeof serial) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "the random generator failed");
    /* A positive INTEGER of exactly 16 bytes: top bit clear (else DER needs a 0x00 in front),
     * first byte nonzero (else DER drops it), so the hex form always has 32 digits. */
    serial[0] &= 0x7f;
    if (serial[0] == 0)
        serial[0] = 1;
    int rc = ctl_crt_set_serial(crt, serial, sizeof serial);
    if (rc != 0)
        return tls_fail(err, errlen, rc, "cannot set the serial");
    unsigned char *der = malloc(CTL_DER_MAX);
    size_t pem_cap = CTL_DER_MAX * 2;
    char *pem = malloc(pem_cap);
    if (!der || !pem) {
        free(der);
        free(pem);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    int n = mbedtls_x509write_crt_der(crt, der, CTL_DER_MAX, mbedtls_ctr_drbg_random, &rng->drbg);
    size_t olen = 0;
    unsigned char digest[32];
    if (n > 0) {
        const unsigned char *d = der + CTL_DER_MAX - n; /* written at the end of the buffer */
        rc = mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), d, (size_t)n, digest);
        if (rc == 0)
            rc = mbedtls_pem_write_buffer(crt_header, crt_footer, d, (size_t)n,
                                          (unsigned char *)pem, pem_cap, &olen);
    } else {
        rc = n;
    }
    free(der);
    if (rc != 0) {
        free(pem);
        return tls_fail(err, errlen, rc, "cannot sign the certificate");
    }
    id->crt_pem = pem;
    id->crt_len = olen - 1; /* olen counts the NUL */
    hex(serial, sizeof serial, id->serial, 1);
    hex(digest, sizeof digest, id->fingerprint, 0);
    return SYNC_OK;
}

/* Sets what every certificate of ours has: v3, SHA-256, validity, key identifiers. */
static int crt_common(mbedtls_x509write_cert *crt, time_t nb, time_t na)
{
    char from[16], to[16];
    validity_str(nb, from);
    validity_str(na, to);
    mbedtls_x509write_crt_set_version(crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(crt, MBEDTLS_MD_SHA256);
    int rc = mbedtls_x509write_crt_set_validity(crt, from, to);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_subject_key_identifier(crt);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_authority_key_identifier(crt);
    return rc;
}

int ctl_pki_make_ca(ctl_rng *rng, const char *cn, long days, int rsa, ctl_identity *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!ctl_pki_cn_valid(cn))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid cn value (%s): 1-64 printable characters, none of , = + ; "
                           "\" \\ < > #",
                           cn);
    char subject[96];
    snprintf(subject, sizeof subject, "CN=%s", cn);
    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_x509_crt check;
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&crt);
    mbedtls_x509_crt_init(&check);
    time_t now = time(NULL);
    out->not_before = now - CTL_BACKDATE_S;
    out->not_after = now + (time_t)days * 86400;
    int rc = gen_key(&key, rsa, rng);
    if (rc != 0) {
        rc = tls_fail(err, errlen, rc, "cannot generate the CA key");
        goto err;
    }
    mbedtls_x509write_crt_set_subject_key(&crt, &key);
    mbedtls_x509write_crt_set_issuer_key(&crt, &key);
    rc = mbedtls_x509write_crt_set_subject_name(&crt, subject);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_issuer_name(&crt, subject);
    if (rc == 0)
        rc = crt_common(&crt, out->not_before, out->not_after);
    /* CA:TRUE with path length 0: it signs device certificates, never another CA. */
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_basic_constraints(&crt, 1, 0);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_KEY_CERT_SIGN |
                                                           MBEDTLS_X509_KU_CRL_SIGN);
    if (rc != 0) {
        rc = tls_fail(err, errlen, rc, "cannot build the CA certificate");
        goto err;
    }
    rc = sign_crt(&crt, rng, out, err, errlen);
    if (rc == SYNC_OK)
        rc = put_key(&key, out, err, errlen);
    if (rc != SYNC_OK)
        goto err;
    /* The certificate must verify as its own trust anchor. */
    uint32_t flags = 0;
    rc = mbedtls_x509_crt_parse(&check, (const unsigned char *)out->crt_pem, out->crt_len + 1);
    if (rc == 0)
        rc = mbedtls_x509_crt_verify(&check, &check, NULL, NULL, &flags, NULL, NULL);
    if (rc != 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_INVAL,
                         "the new CA certificate does not verify (flags 0x%x)", (unsigned)flags);
        goto err;
    }
    mbedtls_x509_crt_free(&check);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    return SYNC_OK;
err:
    mbedtls_x509_crt_free(&check);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    ctl_identity_free(out);
    return rc;
}

/* SHA-1 of the public key as mbedtls_pk_write_pubkey writes it: what mbedTLS puts in the
 * subjectKeyIdentifier of the certificates it writes (RFC 5280 4.2.1.2, method 1). */
static int key_id(mbedtls_pk_context *pk, unsigned char id[20])
{
    unsigned char buf[MBEDTLS_MPI_MAX_SIZE * 2 + 20];
    unsigned char *p = buf + sizeof buf;
    int n = mbedtls_pk_write_pubkey(&p, buf, pk);
    if (n < 0)
        return n;
    return mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA1), p, (size_t)n, id);
}

int ctl_ca_open(ctl_rng *rng, const char *crt_path, const char *key_path, ctl_ca **out, char *err,
                size_t errlen)
{
    *out = NULL;
    ctl_ca *ca = calloc(1, sizeof *ca);
    if (!ca)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    mbedtls_x509_crt_init(&ca->crt);
    mbedtls_pk_init(&ca->key);
    char *data = NULL;
    size_t len = 0;
    int rc = ctl_file_read(crt_path, &data, &len, err, errlen);
    if (rc != SYNC_OK)
        goto fail;
    rc = mbedtls_x509_crt_parse(&ca->crt, (const unsigned char *)data, len + 1);
    free(data);
    data = NULL;
    if (rc != 0) {
        char m[160];
        rc = sync_seterr(err, errlen, SYNC_ERR_INVAL, "%s is not a certificate: %s", crt_path,
                         mberr(rc, m, sizeof m));
        goto fail;
    }
    struct stat st;
    if (stat(key_path, &st) == 0 && (st.st_mode & 077))
        sync_warn("%s can be read by other users than its owner: chmod 600 it", key_path);
    rc = ctl_file_read(key_path, &data, &len, err, errlen);
    if (rc != SYNC_OK)
        goto fail;
    rc = ctl_pk_parse_key(&ca->key, (const unsigned char *)data, len + 1, mbedtls_ctr_drbg_random,
                          &rng->drbg);
    ctl_wipe(data, len);
    free(data);
    data = NULL;
    if (rc != 0) {
        /* The key's bytes stay out of the message: only that it could not be parsed. */
        rc = sync_seterr(err, errlen, SYNC_ERR_INVAL, "%s is not an unencrypted private key",
                         key_path);
        goto fail;
    }
    if (ctl_pk_check_pair(&ca->crt.pk, &ca->key, mbedtls_ctr_drbg_random, &rng->drbg) != 0) {
        rc =
            sync_seterr(err, errlen, SYNC_ERR_INVAL, "%s is not the key of %s", key_path, crt_path);
        goto fail;
    }
    if (mbedtls_x509_dn_gets(ca->dn, sizeof ca->dn, &ca->crt.subject) < 0 ||
        key_id(&ca->crt.pk, ca->keyid) != 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_INVAL, "cannot read the subject of %s", crt_path);
        goto fail;
    }
    *out = ca;
    return SYNC_OK;
fail:
    ctl_ca_close(ca);
    return rc;
}

void ctl_ca_close(ctl_ca *ca)
{
    if (!ca)
        return;
    mbedtls_x509_crt_free(&ca->crt);
    mbedtls_pk_free(&ca->key); /* mbedTLS wipes the key material */
    free(ca);
}

time_t ctl_ca_not_after(const ctl_ca *ca)
{
    return x509_time(&ca->crt.valid_to);
}

/* extendedKeyUsage's value: SEQUENCE { id-kp-clientAuth }. Written at the end of buf; returns
 * its length (and *start) or a negative mbedTLS error. */
static int eku_client_auth(unsigned char *buf, size_t cap, unsigned char **start)
{
    int ret;
    size_t len = 0;
    unsigned char *p = buf + cap;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_CLIENT_AUTH,
                                                     MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&p, buf, len));
    MBEDTLS_ASN1_CHK_ADD(
        len, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
    *start = p;
    return (int)len;
}

int ctl_ca_issue(ctl_ca *ca, ctl_rng *rng, const char *tenant, const char *device, long days,
                 ctl_identity *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    time_t now = time(NULL);
    out->not_before = now - CTL_BACKDATE_S;
    out->not_after = now + (time_t)days * 86400;
    time_t ca_end = ctl_ca_not_after(ca);
    if (out->not_after > ca_end) {
        char when[32];
        struct tm tm;
        gmtime_r(&ca_end, &tm);
        strftime(when, sizeof when, "%Y-%m-%d", &tm);
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "the CA expires on %s, before the %ld days asked: ask for fewer days",
                           when, days);
    }
    char subject[2 * 64 + 16];
    snprintf(subject, sizeof subject, "CN=%s,O=%s", device, tenant);
    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_x509_crt check;
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&crt);
    mbedtls_x509_crt_init(&check);
    unsigned char eku[32], *ekup = NULL;
    int ekulen = eku_client_auth(eku, sizeof eku, &ekup);
    int rc = gen_key(&key, 0, rng);
    if (rc != 0) {
        rc = tls_fail(err, errlen, rc, "cannot generate the device key");
        goto err;
    }
    mbedtls_x509write_crt_set_subject_key(&crt, &key);
    mbedtls_x509write_crt_set_issuer_key(&crt, &ca->key);
    rc = ekulen < 0 ? ekulen : mbedtls_x509write_crt_set_subject_name(&crt, subject);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_issuer_name(&crt, ca->dn);
    if (rc == 0)
        rc = crt_common(&crt, out->not_before, out->not_after);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                                                 MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE),
                                                 0, ekup, (size_t)ekulen);
    if (rc != 0) {
        rc = tls_fail(err, errlen, rc, "cannot build the device certificate");
        goto err;
    }
    rc = sign_crt(&crt, rng, out, err, errlen);
    if (rc == SYNC_OK)
        rc = put_key(&key, out, err, errlen);
    if (rc != SYNC_OK)
        goto err;
    /* It must chain to the CA, which also proves the issuer name came out byte for byte. */
    uint32_t flags = 0;
    rc = mbedtls_x509_crt_parse(&check, (const unsigned char *)out->crt_pem, out->crt_len + 1);
    if (rc == 0)
        rc = mbedtls_x509_crt_verify(&check, &ca->crt, NULL, NULL, &flags, NULL, NULL);
    if (rc != 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_INVAL,
                         "the new certificate does not verify against the CA (flags 0x%x)",
                         (unsigned)flags);
        goto err;
    }
    mbedtls_x509_crt_free(&check);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    return SYNC_OK;
err:
    mbedtls_x509_crt_free(&check);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    ctl_identity_free(out);
    return rc;
}

/* ---- CRL -------------------------------------------------------------------------------- */

/* Writes a SEQUENCE header for the len bytes just written. */
static int write_seq(unsigned char **p, unsigned char *start, size_t len)
{
    int ret;
    size_t n = 0;
    MBEDTLS_ASN1_CHK_ADD(n, mbedtls_asn1_write_len(p, start, len));
    MBEDTLS_ASN1_CHK_ADD(
        n, mbedtls_asn1_write_tag(p, start, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
    return (int)n;
}

/* Time as RFC 5280 wants it: UTCTime through 2049, GeneralizedTime from 2050. */
static int write_time(unsigned char **p, unsigned char *start, time_t t)
{
    struct tm tm;
    char s[24];
    gmtime_r(&t, &tm);
    int utc = tm.tm_year + 1900 < 2050;
    strftime(s, sizeof s, utc ? "%y%m%d%H%M%SZ" : "%Y%m%d%H%M%SZ", &tm);
    return mbedtls_asn1_write_tagged_string(
        p, start, utc ? MBEDTLS_ASN1_UTC_TIME : MBEDTLS_ASN1_GENERALIZED_TIME, s, strlen(s));
}

/* AlgorithmIdentifier of the signature: ECDSA without parameters (RFC 5758), RSA with NULL
 * parameters (RFC 4055). */
static int write_alg(unsigned char **p, unsigned char *start, const char *oid, size_t oid_len,
                     int with_null)
{
    int ret;
    size_t len = 0;
    if (with_null)
        MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_null(p, start));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(p, start, oid, oid_len));
    MBEDTLS_ASN1_CHK_ADD(len, write_seq(p, start, len));
    return (int)len;
}

/* Wraps the value_len bytes just written into Extension ::= SEQUENCE { extnID, extnValue
 * OCTET STRING } (not critical). Returns the whole Extension's length. */
static int wrap_ext(unsigned char **p, unsigned char *start, const char *oid, size_t oid_len,
                    size_t value_len)
{
    int ret;
    size_t len = value_len;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(p, start, value_len));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(p, start, MBEDTLS_ASN1_OCTET_STRING));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_oid(p, start, oid, oid_len));
    MBEDTLS_ASN1_CHK_ADD(len, write_seq(p, start, len));
    return (int)len;
}

/* Writes the serial given in hex as an INTEGER. */
static int write_serial(unsigned char **p, unsigned char *start, const char *serial)
{
    mbedtls_mpi n;
    mbedtls_mpi_init(&n);
    int rc = mbedtls_mpi_read_string(&n, 16, serial);
    if (rc == 0)
        rc = mbedtls_asn1_write_mpi(p, start, &n);
    mbedtls_mpi_free(&n);
    return rc;
}

/* One revokedCertificates entry: SEQUENCE { serial, revocationDate, { reasonCode } }. */
static int write_entry(unsigned char **p, unsigned char *start, const ctl_revoked *r)
{
    int ret;
    size_t len = 0, v = 0;
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_enum(p, start, r->reason));
    MBEDTLS_ASN1_CHK_ADD(
        len, wrap_ext(p, start, CTL_OID_CRL_REASON, MBEDTLS_OID_SIZE(CTL_OID_CRL_REASON), v));
    MBEDTLS_ASN1_CHK_ADD(len, write_seq(p, start, len)); /* crlEntryExtensions */
    MBEDTLS_ASN1_CHK_ADD(len, write_time(p, start, r->when));
    MBEDTLS_ASN1_CHK_ADD(len, write_serial(p, start, r->serial));
    MBEDTLS_ASN1_CHK_ADD(len, write_seq(p, start, len));
    return (int)len;
}

/* What the CRL says, besides who signs it. */
struct crl_in {
    const ctl_revoked *list; /* revoked certificates */
    size_t n;                /* how many */
    time_t this_update, next_update;
    int number;          /* cRLNumber */
    const char *alg_oid; /* signature algorithm */
    size_t alg_oid_len;
    int alg_null; /* write NULL parameters (RSA) */
};

/* TBSCertList (RFC 5280 5.1.2), written at the end of buf. Returns its length (and *start),
 * or a negative mbedTLS error. */
static int write_tbs(const ctl_ca *ca, const struct crl_in *in, unsigned char *buf, size_t cap,
                     unsigned char **start)
{
    int ret;
    unsigned char *p = buf + cap;
    size_t len = 0, ext = 0, v = 0;
    /* crlExtensions [0] EXPLICIT: the CRL number and the issuer's key identifier, both
     * required of a conforming CA (RFC 5280 5.2.1, 5.2.3). */
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_int(&p, buf, in->number));
    MBEDTLS_ASN1_CHK_ADD(ext, wrap_ext(&p, buf, MBEDTLS_OID_CRL_NUMBER,
                                       MBEDTLS_OID_SIZE(MBEDTLS_OID_CRL_NUMBER), v));
    v = 0;
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_raw_buffer(&p, buf, ca->keyid, sizeof ca->keyid));
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_len(&p, buf, v));
    MBEDTLS_ASN1_CHK_ADD(v, mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 0));
    MBEDTLS_ASN1_CHK_ADD(v, write_seq(&p, buf, v));
    MBEDTLS_ASN1_CHK_ADD(ext, wrap_ext(&p, buf, MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER,
                                       MBEDTLS_OID_SIZE(MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER), v));
    MBEDTLS_ASN1_CHK_ADD(ext, write_seq(&p, buf, ext));
    MBEDTLS_ASN1_CHK_ADD(ext, mbedtls_asn1_write_len(&p, buf, ext));
    MBEDTLS_ASN1_CHK_ADD(
        ext, mbedtls_asn1_write_tag(&p, buf,
                                    MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0));
    len += ext;
    /* revokedCertificates: absent, not empty, when nothing is revoked (RFC 5280 5.1.2.6). */
    if (in->n > 0) {
        size_t all = 0;
        for (size_t i = in->n; i-- > 0;)
            MBEDTLS_ASN1_CHK_ADD(all, write_entry(&p, buf, &in->list[i]));
        MBEDTLS_ASN1_CHK_ADD(all, write_seq(&p, buf, all));
        len += all;
    }
    MBEDTLS_ASN1_CHK_ADD(len, write_time(&p, buf, in->next_update));
    MBEDTLS_ASN1_CHK_ADD(len, write_time(&p, buf, in->this_update));
    /* The issuer exactly as the CA certificate's subject, byte for byte. */
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&p, buf, ca->crt.subject_raw.p,
                                                            ca->crt.subject_raw.len));
    MBEDTLS_ASN1_CHK_ADD(len, write_alg(&p, buf, in->alg_oid, in->alg_oid_len, in->alg_null));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_int(&p, buf, 1)); /* version v2 */
    MBEDTLS_ASN1_CHK_ADD(len, write_seq(&p, buf, len));
    *start = p;
    return (int)len;
}

/* CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }, written at
 * the end of buf. Returns its length (and *start) or a negative mbedTLS error. */
static int write_crl(const struct crl_in *in, const unsigned char *tbs, size_t tbs_len,
                     const unsigned char *sig, size_t sig_len, unsigned char *buf, size_t cap,
                     unsigned char **start)
{
    int ret;
    unsigned char *p = buf + cap;
    size_t len = 0;
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_bitstring(&p, buf, sig, sig_len * 8));
    MBEDTLS_ASN1_CHK_ADD(len, write_alg(&p, buf, in->alg_oid, in->alg_oid_len, in->alg_null));
    MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_raw_buffer(&p, buf, tbs, tbs_len));
    MBEDTLS_ASN1_CHK_ADD(len, write_seq(&p, buf, len));
    *start = p;
    return (int)len;
}

/* Parses the PEM back and checks that it lists n certificates. */
static int check_crl(const char *pem, size_t olen, size_t n, char *err, size_t errlen)
{
    mbedtls_x509_crl crl;
    mbedtls_x509_crl_init(&crl);
    int rc = mbedtls_x509_crl_parse(&crl, (const unsigned char *)pem, olen);
    size_t count = 0;
    for (const mbedtls_x509_crl_entry *e = &crl.entry; rc == 0 && e && e->serial.len; e = e->next)
        count++;
    mbedtls_x509_crl_free(&crl);
    if (rc != 0)
        return tls_fail(err, errlen, rc, "the new CRL does not parse");
    if (count != n)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "the new CRL lists %zu certificates, not %zu", count, n);
    return SYNC_OK;
}

int ctl_ca_crl(ctl_ca *ca, ctl_rng *rng, const ctl_revoked *list, size_t n, long days,
               unsigned long number, char **pem, size_t *len, char *err, size_t errlen)
{
    *pem = NULL;
    *len = 0;
    if (number > INT_MAX)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "CRL number %lu is too large", number);
    struct crl_in in = {list, n, time(NULL), 0, (int)number, NULL, 0, 0};
    in.next_update = in.this_update + (time_t)days * 86400;
    mbedtls_pk_type_t type =
        mbedtls_pk_can_do(&ca->key, MBEDTLS_PK_ECDSA) ? MBEDTLS_PK_ECDSA : MBEDTLS_PK_RSA;
    in.alg_null = type == MBEDTLS_PK_RSA;
    if (mbedtls_oid_get_oid_by_sig_alg(type, MBEDTLS_MD_SHA256, &in.alg_oid, &in.alg_oid_len) != 0)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "the CA's key type cannot sign a CRL");
    for (size_t i = 0; i < n; i++) {
        size_t sl = strlen(list[i].serial);
        if (sl == 0 || sl > 40 || strspn(list[i].serial, "0123456789abcdefABCDEF") != sl)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL, "bad serial '%s' in the registry",
                               list[i].serial);
    }
    /* An entry takes at most ~70 bytes; the rest is the issuer, times and extensions. */
    size_t cap = 4096 + ca->crt.subject_raw.len + n * 96;
    unsigned char *tbsbuf = malloc(cap), *crlbuf = malloc(cap + 1024);
    size_t pem_cap = (cap + 1024) * 2;
    char *out = malloc(pem_cap);
    unsigned char sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE], hash[32];
    size_t sig_len = 0, olen = 0;
    unsigned char *tbs = NULL, *der = NULL;
    int rc = SYNC_ERR_NOMEM;
    if (!tbsbuf || !crlbuf || !out) {
        sync_seterr(err, errlen, rc, "out of memory");
        goto done;
    }
    int tbs_len = write_tbs(ca, &in, tbsbuf, cap, &tbs);
    int r = tbs_len < 0 ? tbs_len
                        : mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), tbs,
                                     (size_t)tbs_len, hash);
    if (r == 0)
        r = ctl_pk_sign(&ca->key, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, sizeof sig, &sig_len,
                        mbedtls_ctr_drbg_random, &rng->drbg);
    /* The CA certificate's public key must accept the signature, or the broker will not. */
    if (r == 0)
        r = mbedtls_pk_verify(&ca->crt.pk, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, sig_len);
    int der_len =
        r != 0 ? r : write_crl(&in, tbs, (size_t)tbs_len, sig, sig_len, crlbuf, cap + 1024, &der);
    if (der_len > 0)
        r = mbedtls_pem_write_buffer(crl_header, crl_footer, der, (size_t)der_len,
                                     (unsigned char *)out, pem_cap, &olen);
    else
        r = der_len;
    if (r != 0) {
        rc = tls_fail(err, errlen, r, "cannot make the CRL");
        goto done;
    }
    rc = check_crl(out, olen, n, err, errlen);
    if (rc != SYNC_OK)
        goto done;
    *pem = out;
    *len = olen - 1;
    out = NULL;
done:
    free(tbsbuf);
    free(crlbuf);
    free(out);
    return rc;
}
