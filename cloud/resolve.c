/* resolve.c - settling a pending conflict by hand (see resolve.h). */
#include "resolve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/json.h"
#include "sync/log.h"

int cloud_take_parse(const char *s)
{
    if (strcmp(s, "server") == 0)
        return CLOUD_TAKE_SERVER;
    if (strcmp(s, "client") == 0)
        return CLOUD_TAKE_CLIENT;
    return -1;
}

/* What resolve needs of the logged conflict, copied out of the store's row. */
typedef struct found {
    int hit;
    char table[SYNC_MAX_NAME + 1];
    char device[SYNC_MAX_ID + 1];
    char outcome[32];
    char resolution[128];
    int64_t resolved_at;
    sync_op op;
    sync_value key;
    uint8_t *keybuf;  /* owned copy of a text/blob key */
    uint8_t *client;  /* owned copy of the writer's columns (CBOR map), NULL for a delete */
    size_t client_len;
} found;

static int take_conflict(void *ctx, const cloud_conflict_rec *c)
{
    found *f = ctx;
    f->hit = 1;
    snprintf(f->table, sizeof f->table, "%s", c->table);
    snprintf(f->device, sizeof f->device, "%s", c->device);
    snprintf(f->outcome, sizeof f->outcome, "%s", c->outcome);
    snprintf(f->resolution, sizeof f->resolution, "%s", c->resolution ? c->resolution : "");
    f->resolved_at = c->resolved_at;
    f->op = c->op;
    f->key = c->key;
    if ((c->key.type == SYNC_TEXT || c->key.type == SYNC_BLOB) && c->key.u.b.n) {
        if (!(f->keybuf = malloc(c->key.u.b.n)))
            return SYNC_ERR_NOMEM;
        memcpy(f->keybuf, c->key.u.b.p, c->key.u.b.n);
        f->key.u.b.p = f->keybuf;
    }
    if (c->client_cbor && c->client_len) {
        if (!(f->client = malloc(c->client_len)))
            return SYNC_ERR_NOMEM;
        memcpy(f->client, c->client_cbor, c->client_len);
        f->client_len = c->client_len;
    }
    return 1;
}

/* Reads the writer's columns (a CBOR map of name => value, or null) into cols. */
static int client_cols(const found *f, sync_colval *cols, size_t *n, char *err, size_t errlen)
{
    sync_creader r;
    sync_ctoken t;
    *n = 0;
    if (!f->client)
        return SYNC_OK;
    sync_creader_init(&r, f->client, f->client_len);
    if (sync_creader_next(&r, &t, err, errlen) != SYNC_OK)
        return SYNC_ERR_DECODE;
    if (t.type == SYNC_C_NULL)
        return SYNC_OK;
    if (t.type != SYNC_C_MAP || t.u.count > SYNC_MAX_COLS)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "the logged change is not a column map");
    for (size_t i = 0; i < t.u.count; i++) {
        sync_ctoken k;
        if (sync_creader_next(&r, &k, err, errlen) != SYNC_OK || k.type != SYNC_C_TEXT)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE, "a logged column has no name");
        cols[i].name = (const char *)k.u.s.p;
        cols[i].name_len = k.u.s.n;
        if (sync_creader_value(&r, &cols[i].v, err, errlen) != SYNC_OK)
            return SYNC_ERR_DECODE;
    }
    *n = t.u.count;
    return SYNC_OK;
}

static int nibble(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* A value typed by a person arrives as text: converts it to the column's type (integers and
 * reals must parse whole; a blob is x'HEX' or HEX). Other values pass as they are. */
static int from_text(const sync_column *col, sync_value *v, uint8_t **blob, char *err,
                     size_t errlen)
{
    if (v->type != SYNC_TEXT || col->type == SYNC_TEXT)
        return SYNC_OK;
    char buf[128];
    size_t n = v->u.b.n;
    if (col->type != SYNC_BLOB) {
        if (n == 0 || n >= sizeof buf)
            return sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "'%.*s' is not a number for '%s'",
                               (int)(n > 40 ? 40 : n), (const char *)v->u.b.p, col->name);
        memcpy(buf, v->u.b.p, n);
        buf[n] = '\0';
        char *end;
        errno = 0;
        if (col->type == SYNC_INT) {
            long long x = strtoll(buf, &end, 10);
            if (*end || errno)
                return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                   "'%s' is not an integer for '%s'", buf, col->name);
            v->type = SYNC_INT;
            v->u.i = x;
        } else {
            double x = strtod(buf, &end);
            if (*end || errno)
                return sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "'%s' is not a number for '%s'",
                                   buf, col->name);
            v->type = SYNC_REAL;
            v->u.f = x;
        }
        return SYNC_OK;
    }
    const char *p = (const char *)v->u.b.p;
    if (n >= 3 && (p[0] == 'x' || p[0] == 'X') && p[1] == '\'' && p[n - 1] == '\'') {
        p += 2;
        n -= 3;
    }
    if (n % 2)
        return sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "a blob for '%s' is x'HEX' (even digits)",
                           col->name);
    if (!(*blob = malloc(n / 2 + 1)))
        return SYNC_ERR_NOMEM;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = nibble(p[2 * i]), lo = nibble(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "a blob for '%s' is x'HEX'",
                               col->name);
        (*blob)[i] = (uint8_t)(hi << 4 | lo);
    }
    v->type = SYNC_BLOB;
    v->u.b.p = *blob;
    v->u.b.n = n / 2;
    return SYNC_OK;
}

int cloud_resolve(cloud_applier *ap, cloud_store *st, const sync_schema *s, int64_t id,
                  cloud_take take, const sync_colval *vals, size_t nvals, const char *who,
                  uint64_t *version, char *err, size_t errlen)
{
    found f;
    memset(&f, 0, sizeof f);
    int rc = cloud_store_conflicts(st, id, 0, 1, take_conflict, &f);
    sync_colval *cols = NULL;
    uint8_t **blobs = NULL;
    if (rc != SYNC_OK) {
        rc = rc == SYNC_ERR_DB ? sync_seterr(err, errlen, rc, "%s", cloud_store_errmsg(st))
                               : sync_seterr(err, errlen, rc, "out of memory");
        goto out;
    }
    if (!f.hit) {
        rc = sync_seterr(err, errlen, SYNC_ERR_NOTFOUND, "there is no conflict #%lld",
                         (long long)id);
        goto out;
    }
    if (f.resolved_at) {
        rc = sync_seterr(err, errlen, SYNC_ERR_STATE, "conflict #%lld is resolved already (%s)",
                         (long long)id, f.resolution);
        goto out;
    }
    if (strcmp(f.outcome, "pending") != 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_STATE,
                         "conflict #%lld was settled by its table's policy (%s); only pending "
                         "conflicts wait for a person",
                         (long long)id, f.outcome);
        goto out;
    }
    const sync_table *t = sync_schema_find(s, f.table, strlen(f.table));
    if (!t) {
        rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                         "conflict #%lld is on table '%s', which the schema no longer has",
                         (long long)id, f.table);
        goto out;
    }
    sync_op op = SYNC_OP_UPDATE;
    size_t n = 0;
    const sync_colval *use = NULL;
    if (take == CLOUD_TAKE_CLIENT) {
        if (!(cols = calloc(SYNC_MAX_COLS, sizeof *cols))) {
            rc = sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
            goto out;
        }
        if ((rc = client_cols(&f, cols, &n, err, errlen)) != SYNC_OK)
            goto out;
        op = f.op;
        use = cols;
    } else if (take == CLOUD_TAKE_VALUES) {
        if (nvals == 0 || nvals > SYNC_MAX_COLS) {
            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "give 1 to %d column values",
                             SYNC_MAX_COLS);
            goto out;
        }
        if (!(cols = calloc(SYNC_MAX_COLS, sizeof *cols)) ||
            !(blobs = calloc(nvals, sizeof *blobs))) {
            rc = sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < nvals; i++) {
            cols[i] = vals[i];
            int c = sync_table_col(t, vals[i].name, vals[i].name_len);
            if (c >= 0 && (rc = from_text(&t->cols[c], &cols[i].v, &blobs[i], err, errlen)) !=
                              SYNC_OK)
                goto out;
        }
        use = cols;
        n = nvals;
    }
    uint64_t v = 0;
    if ((rc = cloud_applier_admin_change(ap, who, t, &f.key, op, use, n, &v, err, errlen)) !=
        SYNC_OK)
        goto out;
    char how[96];
    snprintf(how, sizeof how, "%s by %s",
             take == CLOUD_TAKE_SERVER   ? "took the server's value"
             : take == CLOUD_TAKE_CLIENT ? "took the writer's change"
                                         : "set given values",
             who);
    if (cloud_store_conflict_resolved(st, t, &f.key, id, how) != SYNC_OK) {
        rc = sync_seterr(err, errlen, SYNC_ERR_DB, "%s", cloud_store_errmsg(st));
        goto out;
    }
    char buf[1024];
    sync_json j;
    sync_json_init(&j, buf, sizeof buf);
    sync_json_begin(&j);
    sync_json_key(&j, "event");
    sync_json_cstr(&j, "resolved");
    sync_json_key(&j, "ts");
    sync_json_u64(&j, sync_wall_ms());
    sync_json_key(&j, "conflict");
    sync_json_i64(&j, id);
    sync_json_key(&j, "table");
    sync_json_cstr(&j, t->name);
    sync_json_key(&j, "key");
    sync_json_value(&j, &f.key);
    sync_json_key(&j, "take");
    sync_json_cstr(&j, take == CLOUD_TAKE_SERVER   ? "server"
                       : take == CLOUD_TAKE_CLIENT ? "client"
                                                   : "values");
    sync_json_key(&j, "writer");
    sync_json_cstr(&j, f.device);
    sync_json_key(&j, "by");
    sync_json_cstr(&j, who);
    sync_json_key(&j, "version");
    sync_json_u64(&j, v);
    sync_json_end(&j);
    cloud_applier_event(ap, "resolved", &j);
    sync_notice("conflict #%lld on '%s' resolved: %s; the row is now version %llu",
                (long long)id, t->name, how, (unsigned long long)v);
    if (version)
        *version = v;
out:
    for (size_t i = 0; blobs && i < nvals; i++)
        free(blobs[i]);
    free(blobs);
    free(cols);
    free(f.keybuf);
    free(f.client);
    return rc;
}
