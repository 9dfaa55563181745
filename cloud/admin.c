/* admin.c - administrators' requests (see admin.h). */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "resolve.h"
#include "sync/hlc.h"
#include "sync/json.h"
#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/log.h"
#include "sync/topic.h"

#define ADMIN_MAX_VALUES 64

struct cloud_admin {
    cloud_store *st;
    cloud_applier *ap;
    const sync_schema *schema;
    const cloud_config *cfg;
    struct cloud_registry *reg; /* devices allowed to sync, or NULL (borrowed) */
    sync_cbuf out;  /* the answer being built */
    size_t nrows;   /* conflicts listed */
    unsigned long requests;
};

/* A decoded request; strings point into the message. */
typedef struct request {
    char op[16];
    uint64_t id, limit;
    int pending;
    char take[16];
    char by[64];
    char device[SYNC_MAX_ID + 1];
    sync_colval vals[ADMIN_MAX_VALUES];
    size_t nvals;
} request;

int cloud_admin_new(cloud_store *st, cloud_applier *ap, const sync_schema *s,
                    const cloud_config *c, cloud_admin **out, char *err, size_t errlen)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    (*out)->st = st;
    (*out)->ap = ap;
    (*out)->schema = s;
    (*out)->cfg = c;
    sync_cbuf_init(&(*out)->out, 0);
    return SYNC_OK;
}

void cloud_admin_free(cloud_admin *ad)
{
    if (!ad)
        return;
    sync_cbuf_free(&ad->out);
    free(ad);
}

static int text_into(sync_creader *r, char *dst, size_t n, const char *what, char *err,
                     size_t errlen)
{
    sync_ctoken t;
    if (sync_creader_next(r, &t, err, errlen) != SYNC_OK)
        return SYNC_ERR_DECODE;
    if (t.type != SYNC_C_TEXT || t.u.s.n >= n)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "'%s' must be a text of at most %zu bytes",
                           what, n - 1);
    memcpy(dst, t.u.s.p, t.u.s.n);
    dst[t.u.s.n] = '\0';
    return SYNC_OK;
}

static int uint_into(sync_creader *r, uint64_t *v, const char *what, char *err, size_t errlen)
{
    sync_ctoken t;
    if (sync_creader_next(r, &t, err, errlen) != SYNC_OK)
        return SYNC_ERR_DECODE;
    if (t.type != SYNC_C_UINT)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "'%s' must be an unsigned integer", what);
    *v = t.u.u;
    return SYNC_OK;
}

static int parse(const sync_mqtt_msg *msg, request *q, char *err, size_t errlen)
{
    sync_creader r;
    sync_ctoken t;
    memset(q, 0, sizeof *q);
    q->pending = 1;
    q->limit = 100;
    snprintf(q->by, sizeof q->by, "@admin");
    sync_creader_init(&r, msg->payload, msg->len);
    if (sync_creader_next(&r, &t, err, errlen) != SYNC_OK)
        return SYNC_ERR_DECODE;
    if (t.type != SYNC_C_MAP || t.u.count > 16)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "a request is a CBOR map");
    for (size_t i = 0, n = t.u.count; i < n; i++) {
        char key[16];
        int rc = text_into(&r, key, sizeof key, "key", err, errlen);
        if (rc != SYNC_OK)
            return rc;
        if (strcmp(key, "op") == 0) {
            rc = text_into(&r, q->op, sizeof q->op, key, err, errlen);
        } else if (strcmp(key, "id") == 0) {
            rc = uint_into(&r, &q->id, key, err, errlen);
        } else if (strcmp(key, "limit") == 0) {
            rc = uint_into(&r, &q->limit, key, err, errlen);
        } else if (strcmp(key, "device") == 0) {
            rc = text_into(&r, q->device, sizeof q->device, key, err, errlen);
        } else if (strcmp(key, "take") == 0) {
            rc = text_into(&r, q->take, sizeof q->take, key, err, errlen);
        } else if (strcmp(key, "by") == 0) {
            char who[sizeof q->by - 1];
            rc = text_into(&r, who, sizeof who, key, err, errlen);
            /* '@' keeps an administrator's name apart from every device id. */
            if (rc == SYNC_OK)
                snprintf(q->by, sizeof q->by, "@%s", who);
        } else if (strcmp(key, "pending") == 0) {
            sync_ctoken b;
            if (sync_creader_next(&r, &b, err, errlen) != SYNC_OK || b.type != SYNC_C_BOOL)
                return sync_seterr(err, errlen, SYNC_ERR_DECODE, "'pending' must be a bool");
            q->pending = (int)b.u.u;
        } else if (strcmp(key, "values") == 0) {
            sync_ctoken m;
            if (sync_creader_next(&r, &m, err, errlen) != SYNC_OK || m.type != SYNC_C_MAP ||
                m.u.count > ADMIN_MAX_VALUES)
                return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                                   "'values' must be a map of at most %d columns",
                                   ADMIN_MAX_VALUES);
            for (size_t k = 0; k < m.u.count; k++) {
                sync_ctoken name;
                if (sync_creader_next(&r, &name, err, errlen) != SYNC_OK ||
                    name.type != SYNC_C_TEXT)
                    return sync_seterr(err, errlen, SYNC_ERR_DECODE, "column names are texts");
                q->vals[k].name = (const char *)name.u.s.p;
                q->vals[k].name_len = name.u.s.n;
                if (sync_creader_value(&r, &q->vals[k].v, err, errlen) != SYNC_OK)
                    return SYNC_ERR_DECODE;
            }
            q->nvals = m.u.count;
        } else {
            return sync_seterr(err, errlen, SYNC_ERR_DECODE, "unknown request key '%s'", key);
        }
        if (rc != SYNC_OK)
            return rc;
    }
    if (!sync_creader_done(&r))
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "bytes after the request");
    if (!q->op[0])
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "the request has no 'op'");
    return SYNC_OK;
}

static const char *op_word(sync_op op)
{
    return op == SYNC_OP_INSERT ? "insert" : op == SYNC_OP_UPDATE ? "update" : "delete";
}

static void put_kv_text(sync_cbuf *b, const char *k, const char *v)
{
    sync_cbor_put_cstr(b, k);
    sync_cbor_put_cstr(b, v ? v : "");
}

static void put_kv_uint(sync_cbuf *b, const char *k, uint64_t v)
{
    sync_cbor_put_cstr(b, k);
    sync_cbor_put_uint(b, v);
}

/* Appends one conflict as a map; the logged column maps go in as they are (CBOR already). */
static int add_conflict(void *ctx, const cloud_conflict_rec *c)
{
    cloud_admin *ad = ctx;
    sync_cbuf *b = &ad->out;
    sync_cbor_put_map(b, 15);
    put_kv_uint(b, "id", (uint64_t)c->id);
    put_kv_uint(b, "at", (uint64_t)c->at);
    put_kv_text(b, "table", c->table);
    sync_cbor_put_cstr(b, "key");
    sync_cbor_put_value(b, &c->key);
    put_kv_text(b, "device", c->device);
    put_kv_uint(b, "seq", c->seq);
    put_kv_text(b, "op", op_word(c->op));
    put_kv_text(b, "policy", c->policy);
    put_kv_text(b, "outcome", c->outcome);
    put_kv_uint(b, "base_version", c->base_version);
    put_kv_uint(b, "server_version", c->server_version);
    sync_cbor_put_cstr(b, "client");
    if (c->client_cbor && c->client_len)
        sync_cbor_put_raw(b, c->client_cbor, c->client_len);
    else
        sync_cbor_put_null(b);
    sync_cbor_put_cstr(b, "server");
    if (c->server_cbor && c->server_len)
        sync_cbor_put_raw(b, c->server_cbor, c->server_len);
    else
        sync_cbor_put_null(b);
    put_kv_uint(b, "resolved_at", (uint64_t)c->resolved_at);
    put_kv_text(b, "resolution", c->resolution);
    ad->nrows++;
    return b->err;
}

/* Answers {"ok": true, KEY: [rows]} in ad->out. fill writes the rows into ad->out (counting
 * ad->nrows) through a store call and returns its result. CBOR puts the array's length first:
 * the rows go to a buffer of their own, then the answer is the header, the count, and those
 * bytes. `what` names the read for an error message. */
static int list_answer(cloud_admin *ad, const request *q, const char *key, const char *what,
                       int (*fill)(cloud_admin *ad, const request *q), char *err, size_t errlen)
{
    sync_cbuf body = ad->out;
    sync_cbuf_init(&ad->out, 0);
    ad->nrows = 0;
    int rc = fill(ad, q);
    sync_cbuf rows = ad->out;
    ad->out = body;
    if (rc != SYNC_OK) {
        sync_cbuf_free(&rows);
        return sync_seterr(err, errlen, rc, "reading %s: %s", what,
                           rc == SYNC_ERR_DB ? cloud_store_errmsg(ad->st) : sync_strerror(rc));
    }
    sync_cbor_put_map(&ad->out, 2);
    sync_cbor_put_cstr(&ad->out, "ok");
    sync_cbor_put_bool(&ad->out, 1);
    sync_cbor_put_cstr(&ad->out, key);
    sync_cbor_put_array(&ad->out, ad->nrows);
    sync_cbor_put_raw(&ad->out, rows.data, rows.len);
    sync_cbuf_free(&rows);
    return SYNC_OK;
}

static int fill_conflicts(cloud_admin *ad, const request *q)
{
    int64_t limit = q->limit > 10000 ? 10000 : (int64_t)q->limit;
    return cloud_store_conflicts(ad->st, 0, q->pending, limit, add_conflict, ad);
}

static int resolve(cloud_admin *ad, const request *q, cloud_outq *out, char *err, size_t errlen)
{
    int take = strcmp(q->take, "values") == 0 ? CLOUD_TAKE_VALUES : cloud_take_parse(q->take);
    if (take < 0)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "'take' must be server, client or values (not '%s')", q->take);
    if (q->id == 0)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "resolve needs the conflict's 'id'");
    if ((take == CLOUD_TAKE_VALUES) != (q->nvals > 0))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "give 'values' exactly when 'take' is values");
    if (cloud_store_begin(ad->st) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "%s", cloud_store_errmsg(ad->st));
    uint64_t version = 0;
    int rc = cloud_resolve(ad->ap, ad->st, ad->schema, (int64_t)q->id, (cloud_take)take, q->vals,
                           q->nvals, q->by, &version, err, errlen);
    if (rc == SYNC_OK && cloud_store_commit(ad->st) != SYNC_OK)
        rc = sync_seterr(err, errlen, SYNC_ERR_DB, "%s", cloud_store_errmsg(ad->st));
    if (rc != SYNC_OK) {
        cloud_store_rollback(ad->st);
        cloud_applier_discard(ad->ap);
        return rc;
    }
    cloud_applier_flush(ad->ap, out); /* the change goes downstream before the answer */
    sync_cbor_put_map(&ad->out, 2);
    sync_cbor_put_cstr(&ad->out, "ok");
    sync_cbor_put_bool(&ad->out, 1);
    put_kv_uint(&ad->out, "version", version);
    return SYNC_OK;
}

void cloud_admin_set_registry(cloud_admin *ad, struct cloud_registry *r)
{
    ad->reg = r;
}

static int add_device(void *ctx, const cloud_device_rec *d)
{
    cloud_admin *ad = ctx;
    sync_cbuf *b = &ad->out;
    sync_cbor_put_map(b, 7);
    put_kv_text(b, "device", d->device);
    put_kv_uint(b, "last_seq", d->last_seq);
    put_kv_uint(b, "batches", d->batches);
    put_kv_uint(b, "records", d->records);
    put_kv_uint(b, "applied", d->applied);
    put_kv_uint(b, "first_seen", d->first_seen > 0 ? (uint64_t)d->first_seen : 0);
    put_kv_uint(b, "last_seen", d->last_seen > 0 ? (uint64_t)d->last_seen : 0);
    ad->nrows++;
    return b->err;
}

static int fill_devices(cloud_admin *ad, const request *q)
{
    (void)q;
    return cloud_store_devices(ad->st, add_device, ad);
}

/* Tells a device to rebuild its replica from the cloud: a command on its own cmd topic, kept
 * by its broker session while it is offline. */
static int resync(cloud_admin *ad, const request *q, cloud_outq *out, char *err, size_t errlen)
{
    if (!q->device[0] || !sync_id_valid(q->device, strlen(q->device)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "resync needs a valid 'device'");
    char why[256];
    if (ad->reg && cloud_registry_allows(ad->reg, ad->cfg->tenant, q->device, why, sizeof why) != 1)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "device %s: %s", q->device, why);
    char topic[SYNC_TOPIC_MAX], body[256];
    uint64_t now = sync_wall_ms();
    sync_json j;
    sync_json_init(&j, body, sizeof body);
    sync_json_begin(&j);
    sync_json_key(&j, "op");
    sync_json_cstr(&j, "resync");
    sync_json_key(&j, "id");
    sync_json_u64(&j, now);
    sync_json_key(&j, "by");
    sync_json_cstr(&j, q->by);
    sync_json_key(&j, "ts");
    sync_json_u64(&j, now);
    sync_json_end(&j);
    if (sync_topic_dev(topic, sizeof topic, ad->cfg->tenant, q->device, "cmd") != SYNC_OK ||
        !sync_json_ok(&j) || cloud_outq_add(out, topic, j.buf, j.len, NULL, 0, 1, 0) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "cannot queue the command");
    sync_notice("admin %s asked device %s to resync", q->by, q->device);
    sync_cbor_put_map(&ad->out, 2);
    sync_cbor_put_cstr(&ad->out, "ok");
    sync_cbor_put_bool(&ad->out, 1);
    put_kv_uint(&ad->out, "id", now);
    return SYNC_OK;
}

int cloud_admin_handle(cloud_admin *ad, const sync_mqtt_msg *msg, cloud_outq *q, char *err,
                       size_t errlen)
{
    char prefix[SYNC_TOPIC_MAX];
    int n = snprintf(prefix, sizeof prefix, "sync/%s/admin/resp/", ad->cfg->tenant);
    /* Answers go only under the tenant's admin/resp/ tree: a request cannot aim them at a
     * device's topics. */
    if (!msg->response_topic || strncmp(msg->response_topic, prefix, (size_t)n) != 0 ||
        strlen(msg->response_topic) <= (size_t)n || strpbrk(msg->response_topic + n, "+#"))
        return sync_seterr(err, errlen, SYNC_ERR_TOPIC,
                           "admin request without a response topic under %s; ignored", prefix);
    ad->requests++;
    request r;
    char why[512] = "";
    sync_cbuf_reset(&ad->out);
    int rc = parse(msg, &r, why, sizeof why);
    if (rc == SYNC_OK) {
        if (strcmp(r.op, "conflicts") == 0)
            rc = list_answer(ad, &r, "conflicts", "the conflict log", fill_conflicts, why,
                             sizeof why);
        else if (strcmp(r.op, "resolve") == 0)
            rc = resolve(ad, &r, q, why, sizeof why);
        else if (strcmp(r.op, "devices") == 0)
            rc = list_answer(ad, &r, "devices", "the devices", fill_devices, why, sizeof why);
        else if (strcmp(r.op, "resync") == 0)
            rc = resync(ad, &r, q, why, sizeof why);
        else if (strcmp(r.op, "ping") == 0) {
            sync_cbor_put_map(&ad->out, 1);
            sync_cbor_put_cstr(&ad->out, "ok");
            rc = sync_cbor_put_bool(&ad->out, 1);
        } else
            rc = sync_seterr(why, sizeof why, SYNC_ERR_INVAL, "unknown op '%s'", r.op);
    }
    if (rc != SYNC_OK || ad->out.err) {
        if (rc == SYNC_OK)
            snprintf(why, sizeof why, "out of memory");
        sync_warn("admin request '%s' refused: %s", rc == SYNC_ERR_DECODE ? "?" : r.op, why);
        sync_cbuf_reset(&ad->out);
        sync_cbor_put_map(&ad->out, 2);
        sync_cbor_put_cstr(&ad->out, "ok");
        sync_cbor_put_bool(&ad->out, 0);
        put_kv_text(&ad->out, "error", why);
    }
    if (ad->out.err ||
        cloud_outq_add_response(q, msg->response_topic, ad->out.data, ad->out.len, NULL, 0,
                                msg->corr, msg->corr_len) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    return SYNC_OK;
}
