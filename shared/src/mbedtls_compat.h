/* mbedtls_compat.h - the one place that knows mbedTLS 2.28 (Debian 12) from 3.x names. */
#ifndef SYNC_MBEDTLS_COMPAT_H
#define SYNC_MBEDTLS_COMPAT_H

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define sync_sha256_starts(ctx) mbedtls_sha256_starts((ctx), 0)
#define sync_sha256_update(ctx, p, n) mbedtls_sha256_update((ctx), (p), (n))
#define sync_sha256_finish(ctx, out) mbedtls_sha256_finish((ctx), (out))
#else
#define sync_sha256_starts(ctx) mbedtls_sha256_starts_ret((ctx), 0)
#define sync_sha256_update(ctx, p, n) mbedtls_sha256_update_ret((ctx), (p), (n))
#define sync_sha256_finish(ctx, out) mbedtls_sha256_finish_ret((ctx), (out))
#endif

#endif
