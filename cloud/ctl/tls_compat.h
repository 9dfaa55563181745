/* tls_compat.h - the one place of syncctl that knows mbedTLS 2.28 (Debian 12) from 3.x names,
 * like shared/src/mbedtls_compat.h does for the daemons. Everything else calls the ctl_*
 * spellings below and stays the same on both.
 */
#ifndef CTL_TLS_COMPAT_H
#define CTL_TLS_COMPAT_H

#include <stddef.h>

#include <mbedtls/bignum.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
/* 3.x: signing takes the size of the signature buffer, parsing a key takes an RNG (for
 * blinding). */
#define ctl_pk_sign(pk, md, hash, hlen, sig, sig_size, sig_len, rng, p_rng)                        \
    mbedtls_pk_sign((pk), (md), (hash), (hlen), (sig), (sig_size), (sig_len), (rng), (p_rng))
#define ctl_pk_parse_key(pk, key, keylen, rng, p_rng)                                              \
    mbedtls_pk_parse_key((pk), (key), (keylen), NULL, 0, (rng), (p_rng))
#define ctl_pk_check_pair(pub, prv, rng, p_rng) mbedtls_pk_check_pair((pub), (prv), (rng), (p_rng))
#else
/* 2.28: mbedtls_pk_sign trusts the buffer to hold MBEDTLS_PK_SIGNATURE_MAX_SIZE bytes. */
#define ctl_pk_sign(pk, md, hash, hlen, sig, sig_size, sig_len, rng, p_rng)                        \
    ((void)(sig_size),                                                                             \
     mbedtls_pk_sign((pk), (md), (hash), (hlen), (sig), (sig_len), (rng), (p_rng)))
#define ctl_pk_parse_key(pk, key, keylen, rng, p_rng)                                              \
    ((void)(rng), (void)(p_rng), mbedtls_pk_parse_key((pk), (key), (keylen), NULL, 0))
#define ctl_pk_check_pair(pub, prv, rng, p_rng)                                                    \
    ((void)(rng), (void)(p_rng), mbedtls_pk_check_pair((pub), (prv)))
#endif

/* Sets a certificate's serial from big-endian bytes. 3.4 added set_serial_raw and deprecated
 * the MPI form; 2.28 has only the MPI form. Returns 0 or an mbedTLS error. */
static inline int ctl_crt_set_serial(mbedtls_x509write_cert *crt, const unsigned char *serial,
                                     size_t len)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03040000
    return mbedtls_x509write_crt_set_serial_raw(crt, (unsigned char *)serial, len);
#else
    mbedtls_mpi n;
    mbedtls_mpi_init(&n);
    int rc = mbedtls_mpi_read_binary(&n, serial, len);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_serial(crt, &n);
    mbedtls_mpi_free(&n);
    return rc;
#endif
}

/* PBKDF2-HMAC-SHA512 of password and salt into out. 3.3 added the _ext form without an MD
 * context; 2.28 has only the form that takes an HMAC-ready context. Returns 0 or an mbedTLS
 * error. */
static inline int ctl_pbkdf2_sha512(const unsigned char *password, size_t plen,
                                    const unsigned char *salt, size_t slen, unsigned iterations,
                                    unsigned char *out, size_t outlen)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03030000
    return mbedtls_pkcs5_pbkdf2_hmac_ext(MBEDTLS_MD_SHA512, password, plen, salt, slen, iterations,
                                         (uint32_t)outlen, out);
#else
    mbedtls_md_context_t md;
    mbedtls_md_init(&md);
    int rc = mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA512), 1);
    if (rc == 0)
        rc = mbedtls_pkcs5_pbkdf2_hmac(&md, password, plen, salt, slen, iterations,
                                       (uint32_t)outlen, out);
    mbedtls_md_free(&md);
    return rc;
#endif
}

#endif
