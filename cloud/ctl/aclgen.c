/* aclgen.c - the Mosquitto ACL file from the registry (see aclgen.h). */
#include "aclgen.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloud/access.h"
#include "cloud/config.h"
#include "files.h"
#include "sync/conf.h"
#include "sync/schema.h"
#include "sync/err.h"
#include "sync/topic.h"

/* The text being built. */
struct text {
    char *buf;
    size_t len, cap;
    int oom;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap ? t->cap * 2 : 8192) + (size_t)n;
        char *nb = realloc(t->buf, cap);
        if (!nb) {
            t->oom = 1;
            return;
        }
        t->buf = nb;
        t->cap = cap;
    }
}

/* One device's block. The leaves follow docs/protocol.md: the device publishes batches (up),
 * its state (also its Last Will) and catch-up requests (pull); it reads the acks, catch-up
 * pages, commands (cmd: `syncctl resync`) and its retained policy (selective sync) meant for
 * it and its own retained state, and as a replica its tenant's deltas, row states, events and
 * head. */
/* synccloud's receive rules, when the ACL follows them. */
struct rules {
    cloud_config cc;
    sync_schema *schema;
    int narrow; /* there is at least one receive line */
};

struct block_ctx {
    struct text *t;
    const struct rules *rules; /* or NULL */
};

static int device_block(void *ctx, const ctl_device *d)
{
    struct block_ctx *bc = ctx;
    struct text *t = bc->t;
    const struct rules *ru = bc->rules;
    if (d->status != CTL_ACTIVE)
        return 0;
    const char *T = d->tenant, *D = d->device;
    add(t, "\n# device %s of tenant %s\n", D, T);
    add(t, "user %s\n", D);
    add(t, "topic write sync/%s/dev/%s/up\n", T, D);
    add(t, "topic write sync/%s/dev/%s/pull\n", T, D);
    add(t, "topic readwrite sync/%s/dev/%s/state\n", T, D);
    add(t, "topic read sync/%s/dev/%s/ack\n", T, D);
    add(t, "topic read sync/%s/dev/%s/resp\n", T, D);
    add(t, "topic read sync/%s/dev/%s/cmd\n", T, D);
    add(t, "topic read sync/%s/dev/%s/policy\n", T, D);
    if (ru && ru->narrow && strcmp(ru->cc.tenant, T) == 0) {
        /* Selective sync: the tables it receives, and no events (they carry every table). */
        add(t, "# the tables it receives (synccloud's receive lines)\n");
        for (int i = 0; i < sync_schema_ntables(ru->schema); i++) {
            const sync_table *tb = sync_schema_table(ru->schema, i);
            cloud_reach r;
            cloud_access_reach(&ru->cc, tb, D, 0, &r);
            if (r.whole) {
                add(t, "topic read sync/%s/delta/%s\n", T, tb->name);
                add(t, "topic read sync/%s/rows/%s/#\n", T, tb->name);
                if (cloud_access_part_col(&ru->cc, tb) >= 0) {
                    add(t, "topic read sync/%s/delta/%s/+\n", T, tb->name);
                    add(t, "topic read sync/%s/head/%s/+\n", T, tb->name);
                }
                continue;
            }
            /* Partitions only: their streams, heads and rows, never the whole table's. */
            for (int k = 0; k < r.nparts; k++) {
                char part[SYNC_TOPIC_MAX];
                if (sync_topic_level(part, sizeof part, &r.parts[k]) != SYNC_OK)
                    continue;
                add(t, "topic read sync/%s/delta/%s/%s\n", T, tb->name, part);
                add(t, "topic read sync/%s/head/%s/%s\n", T, tb->name, part);
                add(t, "topic read sync/%s/rows/%s/%s/#\n", T, tb->name, part);
            }
        }
        add(t, "topic read sync/%s/head\n", T);
        return 0;
    }
    add(t, "topic read sync/%s/delta/#\n", T);
    add(t, "topic read sync/%s/rows/#\n", T);
    add(t, "topic read sync/%s/events/#\n", T);
    add(t, "topic read sync/%s/head\n", T);
    add(t, "topic read sync/%s/head/#\n", T);
    return 0;
}

/* Reads synccloud's config file and its schema. */
static int load_rules(const char *path, struct rules *ru, char *err, size_t errlen)
{
    cloud_config_init(&ru->cc);
    ru->schema = NULL;
    char why[512];
    int rc = sync_conf_parse_file(path, cloud_config_set, &ru->cc, why, sizeof why);
    if (rc == SYNC_OK && (!ru->cc.tenant || !ru->cc.schema))
        rc = sync_seterr(why, sizeof why, SYNC_ERR_INVAL, "it sets no tenant or no schema");
    if (rc == SYNC_OK)
        rc = sync_schema_load(ru->cc.schema, &ru->schema, why, sizeof why);
    if (rc == SYNC_OK)
        rc = cloud_config_check_schema(&ru->cc, ru->schema, why, sizeof why);
    if (rc != SYNC_OK) {
        sync_schema_free(ru->schema);
        cloud_config_free(&ru->cc);
        return sync_seterr(err, errlen, rc, "cloud_config %s: %s", path, why);
    }
    for (int i = 0; i < ru->cc.ngrants; i++)
        if (!ru->cc.grants[i].write)
            ru->narrow = 1;
    return SYNC_OK;
}

int ctl_acl_render(ctl_registry *r, const char *cloud_user, const char *admin_user,
                   const char *extra, const char *cloud_conf, char **out, size_t *len,
                   char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    struct rules ru;
    memset(&ru, 0, sizeof ru);
    if (cloud_conf && load_rules(cloud_conf, &ru, err, errlen) != SYNC_OK)
        return SYNC_ERR_INVAL;
    struct block_ctx bc = {NULL, cloud_conf ? &ru : NULL};
    struct text t = {NULL, 0, 0, 0};
    add(&t, "# Mosquitto ACL written by syncctl from its device registry. Do not edit: the next\n"
            "# `syncctl device ...` or `syncctl acl generate` replaces this file. Put other\n"
            "# users into the acl_extra file, which is appended at the end.\n"
            "# Only active devices have a block; anything not granted here is denied.\n");
    add(&t, "\n# The cloud consumer: every tenant's device topics (commands to devices included),\n"
            "# downstream tree and its own statistics (cloud/CONSUMER/stats).\n");
    add(&t, "user %s\ntopic readwrite sync/#\n", cloud_user);
    add(&t, "\n# Administrators (syncctl conflicts, resync, status, stats): requests to the cloud\n"
            "# and their answers.\n");
    add(&t, "user %s\ntopic write sync/+/admin/req\ntopic read sync/+/admin/resp/#\n", admin_user);
    add(&t, "# syncctl status: every device's retained state.\n"
            "topic read sync/+/dev/+/state\n");
    add(&t, "# syncctl stats: the cloud consumers' retained statistics.\n"
            "topic read sync/+/cloud/+/stats\n");
    bc.t = &t;
    int rc = ctl_registry_each(r, NULL, device_block, &bc, err, errlen);
    if (cloud_conf) {
        sync_schema_free(ru.schema);
        cloud_config_free(&ru.cc);
    }
    if (rc != SYNC_OK) {
        free(t.buf);
        return rc;
    }
    if (extra) {
        char *data;
        size_t n;
        rc = ctl_file_read(extra, &data, &n, err, errlen);
        if (rc != SYNC_OK) {
            free(t.buf);
            return sync_seterr(err, errlen, SYNC_ERR_IO, "acl_extra: cannot read %s", extra);
        }
        add(&t, "\n# ---- %s (acl_extra), verbatim ----\n", extra);
        add(&t, "%s%s", data, n > 0 && data[n - 1] != '\n' ? "\n" : "");
        free(data);
    }
    if (t.oom) {
        free(t.buf);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    *out = t.buf;
    *len = t.len;
    return SYNC_OK;
}

int ctl_acl_write(const char *path, ctl_registry *r, const char *cloud_user,
                  const char *admin_user, const char *extra, const char *cloud_conf,
                  gid_t group, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc = ctl_acl_render(r, cloud_user, admin_user, extra, cloud_conf, &text, &len, err,
                            errlen);
    if (rc != SYNC_OK)
        return rc;
    rc = ctl_file_replace(path, text, len, 0644, group, err, errlen);
    free(text);
    return rc;
}

int ctl_acl_has_user(const char *path, const char *user, int *found, char *err, size_t errlen)
{
    *found = 0;
    if (!path)
        return SYNC_OK;
    char *data;
    size_t len;
    int rc = ctl_file_read(path, &data, &len, err, errlen);
    if (rc == SYNC_ERR_STATE)
        return SYNC_OK;
    if (rc != SYNC_OK)
        return rc;
    size_t ulen = strlen(user);
    for (char *line = data; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        if (strncmp(s, "user", 4) == 0 && isspace((unsigned char)s[4])) {
            s += 5;
            while (isspace((unsigned char)*s))
                s++;
            /* Mosquitto takes the rest of the line, trailing blanks removed, as the name. */
            size_t n = strlen(s);
            while (n > 0 && isspace((unsigned char)s[n - 1]))
                n--;
            if (n == ulen && strncmp(s, user, n) == 0)
                *found = 1;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(data);
    return SYNC_OK;
}
