/* passwd.c - device passwords and the Mosquitto password file (see passwd.h). */
#include "passwd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "files.h"
#include "sync/err.h"
#include "tls_compat.h"

int ctl_passwd_generate(ctl_rng *rng, char *out, size_t n)
{
    unsigned char raw[CTL_PW_RANDOM_BYTES];
    size_t olen = 0;
    if (n < CTL_PW_MAX || ctl_rng_bytes(rng, raw, sizeof raw) != SYNC_OK)
        return SYNC_ERR_IO;
    /* 24 bytes are a multiple of 3: base64 without '=' padding, 32 characters. */
    int rc = mbedtls_base64_encode((unsigned char *)out, n, &olen, raw, sizeof raw);
    ctl_wipe(raw, sizeof raw);
    if (rc != 0)
        return SYNC_ERR_IO;
    for (size_t i = 0; i < olen; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[olen] = '\0';
    return SYNC_OK;
}

int ctl_passwd_hash(ctl_rng *rng, const char *password, char *out, size_t n, char *err,
                    size_t errlen)
{
    unsigned char salt[CTL_PW_SALT_BYTES], hash[64];
    char salt64[32], hash64[96];
    size_t slen = 0, hlen = 0;
    if (ctl_rng_bytes(rng, salt, sizeof salt) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "the random generator failed");
    int rc = ctl_pbkdf2_sha512((const unsigned char *)password, strlen(password), salt, sizeof salt,
                               CTL_PW_ITERATIONS, hash, sizeof hash);
    if (rc == 0)
        rc =
            mbedtls_base64_encode((unsigned char *)salt64, sizeof salt64, &slen, salt, sizeof salt);
    if (rc == 0)
        rc =
            mbedtls_base64_encode((unsigned char *)hash64, sizeof hash64, &hlen, hash, sizeof hash);
    ctl_wipe(hash, sizeof hash);
    if (rc != 0)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "cannot hash the password (mbedTLS -0x%04x)", (unsigned)-rc);
    if (snprintf(out, n, "$7$%d$%s$%s", CTL_PW_ITERATIONS, salt64, hash64) >= (int)n)
        return sync_seterr(err, errlen, SYNC_ERR_NOSPACE, "password hash too long");
    return SYNC_OK;
}

/* Length of the user name at the start of a password-file line (up to ':'), or -1 when the
 * line has no ':' (a comment or something we do not understand: kept as it is). */
static long line_user(const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    return colon ? (long)(colon - line) : -1;
}

int ctl_passwd_has_user(const char *path, const char *user, int *found, char *err, size_t errlen)
{
    char *data;
    size_t len;
    *found = 0;
    int rc = ctl_file_read(path, &data, &len, err, errlen);
    if (rc == SYNC_ERR_STATE)
        return SYNC_OK;
    if (rc != SYNC_OK)
        return rc;
    size_t ulen = strlen(user);
    for (char *line = data; line < data + len;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        long u = line_user(line, ll);
        if (u >= 0 && (size_t)u == ulen && memcmp(line, user, ulen) == 0)
            *found = 1;
        line += ll + 1;
    }
    ctl_wipe(data, len);
    free(data);
    return SYNC_OK;
}

/* The growing new content of the file. */
struct out {
    char *buf;
    size_t len, cap;
    int oom;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->oom)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = (o->cap ? o->cap * 2 : 4096) + n;
        char *nb = malloc(cap);
        if (!nb) {
            o->oom = 1;
            return;
        }
        /* Copy and wipe rather than realloc: the old block would keep hashes in freed memory. */
        if (o->buf) {
            memcpy(nb, o->buf, o->len);
            ctl_wipe(o->buf, o->cap);
            free(o->buf);
        }
        o->buf = nb;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* The devices that get a line: active, with a password. */
struct entries {
    ctl_device *v;
    size_t n, cap;
    char *written; /* per entry: its line is in the output already */
    int oom;
};

static int collect(void *ctx, const ctl_device *d)
{
    struct entries *e = ctx;
    if (d->status != CTL_ACTIVE || !d->pw_hash[0])
        return 0;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        ctl_device *nv = realloc(e->v, cap * sizeof *nv);
        if (!nv) {
            e->oom = 1;
            return 1;
        }
        e->v = nv;
        e->cap = cap;
    }
    e->v[e->n++] = *d;
    return 0;
}

static void put_entry(struct out *o, const ctl_device *d)
{
    put(o, d->device, strlen(d->device));
    put(o, ":", 1);
    put(o, d->pw_hash, strlen(d->pw_hash));
    put(o, "\n", 1);
}

int ctl_passwd_write(const char *path, ctl_registry *r, gid_t group, char *err, size_t errlen)
{
    struct entries e = {NULL, 0, 0, NULL, 0};
    struct out o = {NULL, 0, 0, 0};
    char *old = NULL;
    size_t oldlen = 0;
    int rc = ctl_registry_each(r, NULL, collect, &e, err, errlen);
    if (rc != SYNC_OK || e.oom) {
        rc = e.oom ? sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory") : rc;
        goto done;
    }
    rc = ctl_file_read(path, &old, &oldlen, err, errlen);
    if (rc == SYNC_ERR_STATE && e.n == 0) {
        rc = SYNC_OK; /* no file and nothing to put in one */
        goto done;
    }
    if (rc != SYNC_OK && rc != SYNC_ERR_STATE)
        goto done;
    e.written = calloc(e.n + 1, 1);
    if (!e.written) {
        rc = sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (char *line = old; line && line < old + oldlen;) {
        char *nl = memchr(line, '\n', (size_t)(old + oldlen - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(old + oldlen - line);
        long u = line_user(line, ll);
        char user[SYNC_MAX_ID + 1];
        int device = 0;
        if (u > 0 && u <= SYNC_MAX_ID) {
            memcpy(user, line, (size_t)u);
            user[u] = '\0';
            ctl_device d;
            char msg[256];
            int g = ctl_registry_get(r, user, &d, msg, sizeof msg);
            if (g != SYNC_OK && g != SYNC_ERR_STATE) {
                rc = sync_seterr(err, errlen, g, "%s", msg);
                goto done;
            }
            device = g == SYNC_OK;
        }
        if (!device) {
            put(&o, line, ll); /* another user's line, or not a user line: keep it */
            put(&o, "\n", 1);
        } else {
            /* A device's line: its current entry while it may log in, else nothing. */
            for (size_t i = 0; i < e.n; i++) {
                if (!e.written[i] && strcmp(e.v[i].device, user) == 0) {
                    put_entry(&o, &e.v[i]);
                    e.written[i] = 1;
                }
            }
        }
        line += ll + 1;
    }
    for (size_t i = 0; i < e.n; i++)
        if (!e.written[i])
            put_entry(&o, &e.v[i]);
    if (o.oom) {
        rc = sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
        goto done;
    }
    rc = ctl_file_replace(path, o.buf ? o.buf : "", o.len, group == (gid_t)-1 ? 0600 : 0640, group,
                          err, errlen);
done:
    if (old)
        ctl_wipe(old, oldlen);
    free(old);
    if (o.buf)
        ctl_wipe(o.buf, o.cap);
    free(o.buf);
    if (e.v)
        ctl_wipe(e.v, e.cap * sizeof *e.v);
    free(e.v);
    free(e.written);
    return rc;
}
