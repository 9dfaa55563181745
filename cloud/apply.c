/* apply.c - validate, dedup, version-check and apply one batch (see apply.h). */
#include "apply.h"

#include "access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/json.h"
#include "sync/log.h"
#include "sync/record.h"
#include "sync/topic.h"

typedef struct tdelta {
    sync_cbuf body;     /* encoded changes of this table since the last flush */
    size_t n;           /* how many */
    uint64_t published; /* the table's newest cseq before body: the next delta's prev_cseq */
    uint64_t last;      /* cseq of the last change in body */
    int prev_read;      /* published was read from the store in this transaction */
} tdelta;

/* A partition stream (docs/protocol.md, "Partitions") touched by this transaction: its delta,
 * and its newest cseq before the transaction (the delta's prev_cseq), read at the first touch. */
typedef struct pdelta {
    const sync_table *t;
    sync_value part; /* a text value points into text */
    char *text;      /* owned copy of a text value */
    size_t text_cap;
    sync_cbuf body;
    size_t n;
    uint64_t prev, last;
} pdelta;

struct cloud_applier {
    cloud_store *st;
    const sync_schema *schema;
    const cloud_config *cfg;
    sync_limits lim;
    cloud_outq acks, rows, events;
    tdelta *deltas;          /* one per schema table */
    cloud_table_rule *rules; /* one per schema table */
    cloud_stats stats;

    /* The batch being handled. */
    const char *device;
    sync_batch_hdr hdr;
    int have_hdr;
    char reason[512];
    uint64_t last_seq; /* the device's last applied seq before this batch */
    uint64_t max_seq;  /* highest seq in the batch */
    uint64_t n_applied, n_conflicts, n_dups;
    int db_failed;
    sync_cbuf ack_body;
    sync_cbuf scratch; /* a row or column map being encoded */
    sync_cbuf scratch2;
    cloud_row row;          /* current server state of the record's row */
    cloud_row next;         /* the state we write */
    sync_ack_result result; /* large: kept off the stack */
    sync_change change;
    sync_hlc hlc; /* the cloud's own clock, for changes made by an administrator */
    cloud_registry *registry; /* devices allowed to sync, or NULL (not owned) */
    sync_cbuf changes;        /* change events of this transaction: "obj,obj,..." (JSON) */
    size_t nchanges;          /* how many */
    cloud_reach *wreach; /* per schema table: what of it the batch's device may write (access.h) */
    int *pcol;                /* per schema table: its partition column, or -1 */
    int partitioned;          /* some table has a partition column */
    pdelta *pd;               /* partition streams touched by this transaction */
    size_t npd, cappd;
    sync_cbuf scratch3;       /* a moved row's whole-row change for its new partition */
    int heads_sent;           /* every partition's head was published once */
};

/* Change events travel together: one `changes` event per transaction (split at this size)
 * instead of one message per change, which cost as much as the rest of the apply. */
#define CHANGES_EVENT_MAX (256 * 1024)

void cloud_applier_set_registry(cloud_applier *a, cloud_registry *r)
{
    a->registry = r;
}

int cloud_applier_new(cloud_store *st, const sync_schema *s, const cloud_config *c,
                      cloud_applier **out, char *err, size_t errlen)
{
    *out = NULL;
    cloud_applier *a = calloc(1, sizeof *a);
    if (!a)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    a->st = st;
    a->schema = s;
    a->cfg = c;
    a->lim.max_records = (size_t)c->max_records;
    a->lim.max_value = (size_t)c->max_value;
    cloud_outq_init(&a->acks);
    cloud_outq_init(&a->rows);
    cloud_outq_init(&a->events);
    sync_cbuf_init(&a->ack_body, 0);
    sync_cbuf_init(&a->scratch, 0);
    sync_cbuf_init(&a->scratch2, 0);
    sync_cbuf_init(&a->changes, 0);
    int n = sync_schema_ntables(s);
    a->deltas = calloc((size_t)n, sizeof *a->deltas);
    if (!a->deltas) {
        free(a);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    a->rules = calloc((size_t)n, sizeof *a->rules);
    a->wreach = calloc((size_t)n, sizeof *a->wreach);
    a->pcol = calloc((size_t)n, sizeof *a->pcol);
    sync_cbuf_init(&a->scratch3, 0);
    if (!a->rules || !a->wreach || !a->pcol) {
        cloud_applier_free(a);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        const sync_table *t = sync_schema_table(s, i);
        a->rules[i] = cloud_config_rule(c, t->name);
        a->pcol[i] = cloud_access_part_col(c, t);
        if (a->pcol[i] >= 0) {
            a->partitioned = 1;
            if (cloud_store_partition(st, t, a->pcol[i]) != SYNC_OK) {
                int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "partitioning '%s': %s", t->name,
                                     cloud_store_errmsg(st));
                cloud_applier_free(a);
                return rc;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        sync_cbuf_init(&a->deltas[i].body, 0);
        if (cloud_store_table_cseq(st, sync_schema_table(s, i), &a->deltas[i].published) !=
            SYNC_OK) {
            int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "reading change sequence: %s",
                                 cloud_store_errmsg(st));
            cloud_applier_free(a);
            return rc;
        }
    }
    *out = a;
    return SYNC_OK;
}

void cloud_applier_free(cloud_applier *a)
{
    if (!a)
        return;
    cloud_outq_clear(&a->acks);
    cloud_outq_clear(&a->rows);
    cloud_outq_clear(&a->events);
    for (int i = 0; i < sync_schema_ntables(a->schema); i++)
        sync_cbuf_free(&a->deltas[i].body);
    free(a->deltas);
    free(a->rules);
    free(a->wreach);
    free(a->pcol);
    for (size_t i = 0; i < a->cappd; i++) {
        sync_cbuf_free(&a->pd[i].body);
        free(a->pd[i].text);
    }
    free(a->pd);
    sync_cbuf_free(&a->scratch3);
    sync_cbuf_free(&a->ack_body);
    sync_cbuf_free(&a->scratch);
    sync_cbuf_free(&a->scratch2);
    sync_cbuf_free(&a->changes);
    free(a);
}

void cloud_applier_stats(const cloud_applier *a, cloud_stats *s)
{
    *s = a->stats;
}

/* ---- events ---- */

/* Queues the `changes` event of the change events gathered so far (if any). */
static int changes_event(cloud_applier *a)
{
    if (a->nchanges == 0)
        return SYNC_OK;
    char head[160], topic[SYNC_TOPIC_MAX];
    int n = snprintf(head, sizeof head, "{\"event\":\"changes\",\"ts\":%llu,\"count\":%zu,"
                     "\"changes\":[",
                     (unsigned long long)sync_wall_ms(), a->nchanges);
    int rc = sync_cbor_put_raw(&a->changes, "]}", 2);
    if (rc == SYNC_OK && !a->changes.err &&
        sync_topic_event(topic, sizeof topic, a->cfg->tenant, "changes") == SYNC_OK)
        rc = cloud_outq_add(&a->events, topic, head, (size_t)n, a->changes.data, a->changes.len,
                            0, 0);
    sync_cbuf_reset(&a->changes);
    a->nchanges = 0;
    return rc == SYNC_OK ? SYNC_OK : SYNC_ERR_NOMEM;
}

/* Adds one change event (a JSON object) to the transaction's `changes` event. */
static int change_event(cloud_applier *a, const sync_json *j)
{
    if (!sync_json_ok(j))
        return SYNC_OK;
    if (a->changes.len + j->len > CHANGES_EVENT_MAX && changes_event(a) != SYNC_OK)
        return SYNC_ERR_NOMEM;
    if ((a->nchanges && sync_cbor_put_raw(&a->changes, ",", 1) != SYNC_OK) ||
        sync_cbor_put_raw(&a->changes, j->buf, j->len) != SYNC_OK)
        return SYNC_ERR_NOMEM;
    a->nchanges++;
    return SYNC_OK;
}

static void event(cloud_applier *a, const char *kind, const sync_json *j)
{
    char topic[SYNC_TOPIC_MAX];
    if (!sync_json_ok(j) || sync_topic_event(topic, sizeof topic, a->cfg->tenant, kind) != SYNC_OK)
        return;
    cloud_outq_add(&a->events, topic, j->buf, j->len, NULL, 0, 0, 0);
}

void cloud_applier_event(cloud_applier *a, const char *kind, const sync_json *j)
{
    if (a->cfg->events >= 1)
        event(a, kind, j);
}

static void json_head(sync_json *j, const char *kind, const char *device)
{
    sync_json_begin(j);
    sync_json_key(j, "event");
    sync_json_cstr(j, kind);
    sync_json_key(j, "ts");
    sync_json_u64(j, sync_wall_ms());
    sync_json_key(j, "device");
    sync_json_cstr(j, device);
}

/* ---- validation pass ---- */

static int v_hdr(void *ctx, const sync_batch_hdr *h)
{
    cloud_applier *a = ctx;
    if (h->device_len != strlen(a->device) || memcmp(h->device, a->device, h->device_len) != 0)
        return sync_seterr(a->reason, sizeof a->reason, SYNC_ERR_DEVICE,
                           "device mismatch: the batch names device '%.*s' but was published "
                           "on the topic of '%s'",
                           (int)h->device_len, h->device, a->device);
    if (h->schema_version != sync_schema_version(a->schema))
        return sync_seterr(a->reason, sizeof a->reason, SYNC_ERR_SCHEMA,
                           "schema version mismatch: the edge uses version %u, the cloud "
                           "version %u",
                           h->schema_version, sync_schema_version(a->schema));
    return 0;
}

static int v_rec(void *ctx, const sync_record *r)
{
    cloud_applier *a = ctx;
    char why[256];
    const sync_table *t = sync_schema_find(a->schema, r->table, r->table_len);
    if (!t)
        return sync_seterr(a->reason, sizeof a->reason, SYNC_ERR_SCHEMA,
                           "change #%llu: unknown table '%.*s'", (unsigned long long)r->seq,
                           (int)r->table_len, r->table);
    sync_value key = r->key;
    if (sync_column_check(t, t->key, &key, why, sizeof why) != SYNC_OK)
        return sync_seterr(a->reason, sizeof a->reason, SYNC_ERR_SCHEMA, "change #%llu key: %s",
                           (unsigned long long)r->seq, why);
    uint64_t seen = 0;
    for (size_t i = 0; i < r->ncols; i++) {
        int c = sync_table_col(t, r->cols[i].name, r->cols[i].name_len);
        if (c < 0)
            return sync_seterr(a->reason, sizeof a->reason, SYNC_ERR_SCHEMA,
                               "change #%llu: table '%s' has no column '%.*s'",
                               (unsigned long long)r->seq, t->name, (int)r->cols[i].name_len,
                               r->cols[i].name);
        sync_value v = r->cols[i].v;
        if (sync_column_check(t, c, &v, why, sizeof why) != SYNC_OK)
            return sync_seterr(a->reason, sizeof a->reason, SYNC_ERR_SCHEMA, "change #%llu: %s",
                               (unsigned long long)r->seq, why);
        if (c == t->key && !sync_value_equal(&v, &key))
            return sync_seterr(a->reason, sizeof a->reason, SYNC_ERR_SCHEMA,
                               "change #%llu: key column '%s' differs from the record's key",
                               (unsigned long long)r->seq, t->cols[c].name);
        seen |= 1ull << c;
    }
    if (r->op == SYNC_OP_INSERT) {
        for (int c = 0; c < t->ncols; c++)
            if (t->cols[c].notnull && c != t->key && !(seen & (1ull << c)))
                return sync_seterr(a->reason, sizeof a->reason, SYNC_ERR_SCHEMA,
                                   "change #%llu: insert into '%s' lacks NOT NULL column '%s'",
                                   (unsigned long long)r->seq, t->name, t->cols[c].name);
    }
    return 0;
}

/* ---- apply pass ---- */

static int encode_cols_of_row(sync_cbuf *b, const sync_table *t, const cloud_row *row)
{
    if (!row->exists || row->deleted)
        return sync_cbor_put_null(b);
    sync_cbor_put_map(b, (size_t)t->ncols);
    for (int i = 0; i < t->ncols; i++) {
        sync_cbor_put_cstr(b, t->cols[i].name);
        sync_cbor_put_value(b, &row->vals[i]);
    }
    return b->err;
}

static void fill_cols_from_row(sync_colval *cols, size_t *ncols, const sync_table *t,
                               const cloud_row *row)
{
    *ncols = 0;
    if (!row->exists || row->deleted)
        return;
    for (int i = 0; i < t->ncols; i++) {
        cols[i].name = t->cols[i].name;
        cols[i].name_len = strlen(t->cols[i].name);
        cols[i].v = row->vals[i];
    }
    *ncols = (size_t)t->ncols;
}

static const char *const policy_name[] = {"lww", "server-wins", "priority", "merge", "manual"};

static int log_conflict(cloud_applier *a, const sync_table *t, const sync_record *r,
                        const sync_value *key, const char *outcome, int64_t *id)
{
    const char *policy = policy_name[a->rules[t->index].policy];
    sync_cbuf_reset(&a->scratch);
    sync_cbuf_reset(&a->scratch2);
    if (r->op == SYNC_OP_DELETE) {
        sync_cbor_put_null(&a->scratch);
    } else {
        sync_cbor_put_map(&a->scratch, r->ncols);
        for (size_t i = 0; i < r->ncols; i++) {
            sync_cbor_put_text(&a->scratch, r->cols[i].name, r->cols[i].name_len);
            sync_cbor_put_value(&a->scratch, &r->cols[i].v);
        }
    }
    encode_cols_of_row(&a->scratch2, t, &a->row);
    if (a->scratch.err || a->scratch2.err)
        return SYNC_ERR_NOMEM;
    cloud_conflict c = {
        .t = t,
        .key = key,
        .device = a->device,
        .seq = r->seq,
        .op = r->op,
        .base_version = r->base_version,
        .server_version = a->row.version,
        .client_hlc = r->hlc,
        .server_hlc = a->row.hlc,
        .server_origin = a->row.origin,
        .client_cbor = a->scratch.data,
        .client_len = a->scratch.len,
        .server_cbor = a->scratch2.data,
        .server_len = a->scratch2.len,
        .policy = policy,
        .outcome = outcome,
    };
    if (cloud_store_conflict(a->st, &c, id) != SYNC_OK)
        return SYNC_ERR_DB;
    a->stats.conflicts++;
    a->n_conflicts++;
    if (a->cfg->events >= 1) {
        char buf[1024];
        sync_json j;
        sync_json_init(&j, buf, sizeof buf);
        json_head(&j, "conflict", a->device);
        sync_json_key(&j, "table");
        sync_json_cstr(&j, t->name);
        sync_json_key(&j, "key");
        sync_json_value(&j, key);
        sync_json_key(&j, "policy");
        sync_json_cstr(&j, policy);
        sync_json_key(&j, "outcome");
        sync_json_cstr(&j, outcome);
        sync_json_key(&j, "base_version");
        sync_json_u64(&j, r->base_version);
        sync_json_key(&j, "server_version");
        sync_json_u64(&j, a->row.version);
        sync_json_key(&j, "server_origin");
        sync_json_cstr(&j, a->row.origin);
        sync_json_end(&j);
        event(a, "conflict", &j);
    }
    return SYNC_OK;
}

static const char *op_name(sync_op op)
{
    return op == SYNC_OP_INSERT ? "insert" : op == SYNC_OP_UPDATE ? "update" : "delete";
}

/* The `change` event of an applied change: with the key and the columns set when full, else
 * only what identifies the change, and "truncated": true. */
static void json_change(cloud_applier *a, sync_json *j, const sync_table *t, const sync_value *key,
                        sync_op op, const sync_change *c, int full)
{
    json_head(j, "change", a->device);
    sync_json_key(j, "table");
    sync_json_cstr(j, t->name);
    if (full) {
        sync_json_key(j, "key");
        sync_json_value(j, key);
    }
    sync_json_key(j, "op");
    sync_json_cstr(j, op_name(op));
    sync_json_key(j, "version");
    sync_json_u64(j, c->version);
    sync_json_key(j, "cseq");
    sync_json_u64(j, c->cseq);
    if (full && c->ncols) {
        sync_json_key(j, "cols");
        sync_json_begin(j);
        for (size_t i = 0; i < c->ncols; i++) {
            sync_json_key(j, c->cols[i].name);
            sync_json_value(j, &c->cols[i].v);
        }
        sync_json_end(j);
    }
    if (!full) {
        sync_json_key(j, "truncated");
        sync_json_bool(j, 1);
    }
    sync_json_end(j);
}

/* Queues the retained row message of `full` (a change holding the whole row) on topic. */
static int queue_row(cloud_applier *a, cloud_outq *q, const char *topic, const sync_table *t,
                     const sync_change *full)
{
    sync_cbuf_reset(&a->scratch);
    if (sync_row_encode(&a->scratch, t->name, strlen(t->name), full) != SYNC_OK ||
        cloud_outq_add(q, topic, a->scratch.data, a->scratch.len, NULL, 0, 1, 1) != SYNC_OK)
        return SYNC_ERR_NOMEM;
    return SYNC_OK;
}

int cloud_applier_row_message(cloud_applier *a, const sync_table *t, const sync_value *key,
                              const cloud_row *row, cloud_outq *q)
{
    char topic[SYNC_TOPIC_MAX];
    int pc = a->pcol[t->index];
    const sync_value *part = pc >= 0 && row->vals[pc].type != SYNC_NULL ? &row->vals[pc] : NULL;
    if (!row->exists ||
        sync_topic_row_part(topic, sizeof topic, a->cfg->tenant, t->name, part, key) != SYNC_OK)
        return SYNC_ERR_INVAL;
    cloud_row_change(t, key, row, &a->change);
    return queue_row(a, q, topic, t, &a->change);
}

/* Before the first change of a table in a transaction: the table's newest committed cseq,
 * which the delta of this transaction names as prev_cseq. A consumer alone on its store knows
 * it already (its own last delta); with several consumers sharing a PostgreSQL store the
 * others' transactions come between, and a delta naming our own last one would tell replicas
 * "nothing missed" across changes another consumer's lost delta held. Read under the store's
 * write lock, so nothing can commit in between. */
static int delta_prev(cloud_applier *a, const sync_table *t)
{
    tdelta *d = &a->deltas[t->index];
    if (d->prev_read)
        return SYNC_OK;
    if (cloud_store_table_cseq(a->st, t, &d->published) != SYNC_OK)
        return SYNC_ERR_DB;
    d->prev_read = 1;
    return SYNC_OK;
}

/* The stream of partition `part` of t in this transaction, added (with its prev_cseq read from
 * the store) at the first touch. Call before the change is written, under the write lock. NULL
 * on a database error or out of memory (a->db_failed tells which). */
static pdelta *part_touch(cloud_applier *a, const sync_table *t, const sync_value *part)
{
    for (size_t i = 0; i < a->npd; i++)
        if (a->pd[i].t == t && sync_value_equal(&a->pd[i].part, part))
            return &a->pd[i];
    if (a->npd == a->cappd) {
        size_t cap = a->cappd ? a->cappd * 2 : 8;
        pdelta *np = realloc(a->pd, cap * sizeof *np);
        if (!np)
            return NULL;
        memset(np + a->cappd, 0, (cap - a->cappd) * sizeof *np);
        for (size_t i = a->cappd; i < cap; i++)
            sync_cbuf_init(&np[i].body, 0);
        a->pd = np;
        a->cappd = cap;
    }
    pdelta *d = &a->pd[a->npd];
    d->t = t;
    d->part = *part;
    if (part->type == SYNC_TEXT) {
        size_t n = part->u.b.n;
        if (n + 1 > d->text_cap) {
            char *nt = realloc(d->text, n + 1);
            if (!nt)
                return NULL;
            d->text = nt;
            d->text_cap = n + 1;
        }
        memcpy(d->text, part->u.b.p, n);
        d->part.u.b.p = (const uint8_t *)d->text;
    }
    d->n = 0;
    sync_cbuf_reset(&d->body);
    if (cloud_store_part_cseq(a->st, t, part, &d->prev) != SYNC_OK) {
        a->db_failed = 1;
        return NULL;
    }
    d->last = d->prev;
    a->npd++;
    return d;
}

/* Partition bookkeeping of a change about to be written (row: the stored state before, had_row:
 * it existed; nx: the new state): touches the old and new partition streams, and records the
 * leave of a row that moves. *from, *to: the streams (NULL: none, or no move for *from).
 * Returns SYNC_OK, SYNC_ERR_DB or SYNC_ERR_NOMEM. */
static int part_before_put(cloud_applier *a, const sync_table *t, const sync_value *key,
                           int had_row, const cloud_row *row, const cloud_row *nx, pdelta **from,
                           pdelta **to)
{
    *from = *to = NULL;
    int pc = a->pcol[t->index];
    if (pc < 0)
        return SYNC_OK;
    const sync_value *oldp = had_row && row->vals[pc].type != SYNC_NULL ? &row->vals[pc] : NULL;
    const sync_value *newp = nx->vals[pc].type != SYNC_NULL ? &nx->vals[pc] : NULL;
    if (newp && !(*to = part_touch(a, t, newp)))
        return a->db_failed ? SYNC_ERR_DB : SYNC_ERR_NOMEM;
    if (!oldp || (newp && sync_value_equal(oldp, newp)))
        return SYNC_OK;
    if (!(*from = part_touch(a, t, oldp)))
        return a->db_failed ? SYNC_ERR_DB : SYNC_ERR_NOMEM;
    if (cloud_store_leave(a->st, t, oldp, key, nx->version, nx->cseq, nx->hlc, nx->origin) !=
        SYNC_OK) {
        a->db_failed = 1;
        return SYNC_ERR_DB;
    }
    return SYNC_OK;
}

/* Appends the change to the partition streams: as it is to its own partition's, or, for a row
 * that moved, a leave to the old one's and the whole row to the new one's. */
static int part_publish(cloud_applier *a, const sync_table *t, const sync_value *key,
                        const sync_change *c, pdelta *from, pdelta *to)
{
    if (from) {
        sync_change lv = *c;
        lv.op = SYNC_OP_LEAVE;
        lv.ncols = 0;
        if (sync_change_encode(&from->body, &lv) != SYNC_OK)
            return SYNC_ERR_NOMEM;
        from->n++;
        from->last = c->cseq;
    }
    if (!to)
        return SYNC_OK;
    int rc;
    if (from && c->op != SYNC_OP_DELETE) {
        sync_change full;
        cloud_row_change(t, key, &a->next, &full);
        full.origin = c->origin;
        full.origin_len = c->origin_len;
        rc = sync_change_encode(&to->body, &full);
    } else {
        rc = sync_change_encode(&to->body, c);
    }
    if (rc != SYNC_OK)
        return SYNC_ERR_NOMEM;
    to->n++;
    to->last = c->cseq;
    return SYNC_OK;
}

/* Queues the downstream effects of an applied change: the delta entry (and the partition
 * streams' entries), the retained row state and the change event. */
static int publish_change(cloud_applier *a, const sync_table *t, const sync_record *r,
                          const sync_value *key, uint64_t setmask, pdelta *from, pdelta *to)
{
    sync_change *c = &a->change;
    c->key = *key;
    c->op = r->op;
    c->version = a->next.version;
    c->cseq = a->next.cseq;
    c->hlc = a->next.hlc;
    c->origin = a->device;
    c->origin_len = strlen(a->device);
    c->ncols = 0;
    if (r->op != SYNC_OP_DELETE) {
        /* The columns this change set, in schema order, with their stored values. */
        for (int ci = 0; ci < t->ncols; ci++) {
            if (!(setmask & (1ull << ci)))
                continue;
            c->cols[c->ncols].name = t->cols[ci].name;
            c->cols[c->ncols].name_len = strlen(t->cols[ci].name);
            c->cols[c->ncols].v = a->next.vals[ci];
            c->ncols++;
        }
    }
    tdelta *d = &a->deltas[t->index];
    if (sync_change_encode(&d->body, c) != SYNC_OK)
        return SYNC_ERR_NOMEM;
    d->n++;
    d->last = c->cseq;
    if ((from || to) && part_publish(a, t, key, c, from, to) != SYNC_OK)
        return SYNC_ERR_NOMEM;

    if (a->cfg->publish_rows) {
        char topic[SYNC_TOPIC_MAX];
        /* A partitioned table's rows live under their partition; a row that moved is removed
         * from its old topic (an empty retained message). */
        if (from && sync_topic_row_part(topic, sizeof topic, a->cfg->tenant, t->name,
                                        &from->part, key) == SYNC_OK &&
            cloud_outq_add(&a->rows, topic, NULL, 0, NULL, 0, 1, 1) != SYNC_OK)
            return SYNC_ERR_NOMEM;
        if (sync_topic_row_part(topic, sizeof topic, a->cfg->tenant, t->name,
                                to ? &to->part : NULL, key) == SYNC_OK) {
            sync_change full;
            cloud_row_change(t, key, &a->next, &full);
            if (queue_row(a, &a->rows, topic, t, &full) != SYNC_OK)
                return SYNC_ERR_NOMEM;
        } else {
            sync_warn("row topic for a key of '%s' would be too long; not published", t->name);
        }
    }
    if (a->cfg->events >= 2) {
        char buf[4096];
        sync_json j;
        sync_json_init(&j, buf, sizeof buf);
        json_change(a, &j, t, key, r->op, c, 1);
        if (!sync_json_ok(&j)) {
            /* A huge row: say what changed without the key and values. */
            sync_json_init(&j, buf, sizeof buf);
            json_change(a, &j, t, key, r->op, c, 0);
        }
        if (change_event(a, &j) != SYNC_OK)
            return SYNC_ERR_NOMEM;
    }
    return SYNC_OK;
}

static int add_result(cloud_applier *a, uint64_t seq, sync_result code, uint64_t version,
                      const sync_table *t, int with_row)
{
    sync_ack_result *res = &a->result;
    res->seq = seq;
    res->result = code;
    res->version = version;
    res->has_row = with_row;
    res->deleted = with_row && (!a->row.exists || a->row.deleted);
    res->ncols = 0;
    if (with_row)
        fill_cols_from_row(res->cols, &res->ncols, t, &a->row);
    return sync_ack_result_encode(&a->ack_body, res, a->hdr.base_seq) == SYNC_OK ? SYNC_OK
                                                                                 : SYNC_ERR_NOMEM;
}

/* Records a refusal of one change by a rule (the batch goes on). */
static int refuse_record(cloud_applier *a, const sync_table *t, const sync_record *r,
                         const char *why)
{
    a->stats.refused++;
    sync_warn("refused change #%llu of device %s to '%s': %s", (unsigned long long)r->seq,
              a->device, t->name, why);
    if (a->cfg->events >= 1) {
        char buf[512];
        sync_json j;
        sync_json_init(&j, buf, sizeof buf);
        json_head(&j, "rejected", a->device);
        sync_json_key(&j, "seq");
        sync_json_u64(&j, r->seq);
        sync_json_key(&j, "table");
        sync_json_cstr(&j, t->name);
        sync_json_key(&j, "reason");
        sync_json_cstr(&j, why);
        sync_json_end(&j);
        event(a, "rejected", &j);
    }
    sync_ack_result *res = &a->result;
    res->seq = r->seq;
    res->result = SYNC_R_REJECTED;
    res->version = 0;
    res->has_row = res->deleted = 0;
    res->ncols = 0;
    res->reason = why;
    res->reason_len = strlen(why);
    return sync_ack_result_encode(&a->ack_body, res, a->hdr.base_seq) == SYNC_OK ? SYNC_OK
                                                                                 : SYNC_ERR_NOMEM;
}

/* For a device that may write some partitions of t only: 1 when the change keeps the row inside
 * them (the stored row's partition before, and the partition it has after), else 0 and why. */
static int part_writable(cloud_applier *a, const sync_table *t, const sync_record *r,
                         const cloud_row *row, char *why, size_t n)
{
    const cloud_reach *wr = &a->wreach[t->index];
    int pc = a->pcol[t->index];
    if (pc < 0)
        return 1;
    const sync_value *before =
        row->exists && !row->deleted && row->vals[pc].type != SYNC_NULL ? &row->vals[pc] : NULL;
    const sync_value *after = r->op == SYNC_OP_UPDATE || r->op == SYNC_OP_DELETE ? before : NULL;
    sync_value set;
    for (size_t i = 0; i < r->ncols; i++) {
        if (sync_table_col(t, r->cols[i].name, r->cols[i].name_len) != pc)
            continue;
        set = r->cols[i].v;
        sync_column_check(t, pc, &set, NULL, 0);
        after = set.type != SYNC_NULL ? &set : NULL;
    }
    const sync_value *out = before && !cloud_reach_has(wr, before)  ? before
                            : after && !cloud_reach_has(wr, after) ? after
                                                                    : NULL;
    if (!out)
        return 1;
    char v[80], list[256];
    cloud_part_text(v, sizeof v, out);
    size_t at = 0;
    list[0] = '\0';
    for (int i = 0; i < wr->nparts && at + 1 < sizeof list; i++) {
        char one[80];
        cloud_part_text(one, sizeof one, &wr->parts[i]);
        int w = snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "", one);
        at += w > 0 ? (size_t)w : 0;
    }
    snprintf(why, n,
             "row of table '%s' with %s = %s is outside the partitions device '%s' may write "
             "(%s = %s)",
             t->name, t->cols[pc].name, v, a->device, t->cols[pc].name, list);
    return 0;
}

/* Later hybrid logical clock wins; equal clocks go to the larger device id, so every consumer
 * decides the same way. */
static int client_is_later(const cloud_applier *a, const sync_record *r, const cloud_row *row)
{
    return r->hlc > row->hlc || (r->hlc == row->hlc && strcmp(a->device, row->origin) > 0);
}

static int ap_rec(void *ctx, const sync_record *r)
{
    cloud_applier *a = ctx;
    if (r->seq > a->max_seq)
        a->max_seq = r->seq;
    const sync_table *t = sync_schema_find(a->schema, r->table, r->table_len);
    if (r->seq <= a->last_seq) {
        /* Processed before; its first ack may never have arrived, and with it what became of
         * the change. Tell the row's current state so the edge converges anyway. */
        a->n_dups++;
        a->stats.duplicates++;
        sync_value dkey = r->key;
        sync_column_check(t, t->key, &dkey, NULL, 0);
        if (cloud_store_row_get(a->st, t, &dkey, &a->row) != SYNC_OK) {
            a->db_failed = 1;
            return SYNC_ERR_DB;
        }
        return add_result(a, r->seq, SYNC_R_DUPLICATE, a->row.version, t, 1);
    }
    const cloud_reach *wr = &a->wreach[t->index];
    if (!wr->whole && wr->nparts == 0) {
        char why[256];
        if (t->owner[0])
            snprintf(why, sizeof why,
                     "table '%s' is owned by device '%s'; other devices may not write it",
                     t->name, t->owner);
        else
            snprintf(why, sizeof why, "device '%s' may not write table '%s' (write lines)",
                     a->device, t->name);
        return refuse_record(a, t, r, why);
    }
    const cloud_table_rule *rule = &a->rules[t->index];
    sync_value key = r->key;
    sync_column_check(t, t->key, &key, NULL, 0);
    if (cloud_store_row_get(a->st, t, &key, &a->row) != SYNC_OK) {
        a->db_failed = 1;
        return SYNC_ERR_DB;
    }
    cloud_row *row = &a->row;
    int had_row = row->exists;
    if (!wr->whole) {
        char why[512];
        if (!part_writable(a, t, r, row, why, sizeof why))
            return refuse_record(a, t, r, why);
    }
    if (!row->exists) {
        /* Tombstones get compacted. A change made on top of a version of a row the store no
         * longer holds met a delete; one with no base is a new row. Either way the versions
         * go on above every version the key may have had, so replicas take what follows. */
        row->version = cloud_store_version_floor(a->st, t);
        if (r->base_version > 0 && r->op == SYNC_OP_UPDATE && row->version > 0) {
            /* Only once something was compacted (a floor above 0) can a missing row be a
             * compacted one. The base comes from the device: it is compared, never taken as a
             * version. A delete goes on below and leaves a tombstone above the floor. */
            row->exists = 1;
            row->deleted = 1;
        }
    }
    int same_writer = row->exists && strcmp(row->origin, a->device) == 0;
    int clean = !row->exists || row->version == r->base_version || same_writer;
    int rc;
    /* The columns this change sets (by schema index) and which of them it may set. */
    uint64_t cmask = 0;
    for (size_t i = 0; i < r->ncols; i++)
        cmask |= 1ull << sync_table_col(t, r->cols[i].name, r->cols[i].name_len);
    uint64_t take = cmask;
    sync_result code = clean ? SYNC_R_APPLIED : SYNC_R_WON;
    const char *outcome = "client-wins";
    if (row->exists && row->deleted && r->op != SYNC_OP_INSERT) {
        if (r->op == SYNC_OP_DELETE)
            return add_result(a, r->seq, SYNC_R_APPLIED, row->version, t, 0);
        /* An update of a deleted row brings it back only where the table's rule says so and the
         * update wins; otherwise the tombstone stands. */
        int back = rule->resurrect && (clean || client_is_later(a, r, row));
        if (!back) {
            if (!clean && (rc = log_conflict(a, t, r, &key, "server-wins", NULL)) != SYNC_OK) {
                a->db_failed = rc == SYNC_ERR_DB;
                return rc;
            }
            return add_result(a, r->seq, SYNC_R_LOST, row->version, t, 1);
        }
        if (!clean && (rc = log_conflict(a, t, r, &key, "client-wins", NULL)) != SYNC_OK) {
            a->db_failed = rc == SYNC_ERR_DB;
            return rc;
        }
        clean = 1; /* applied as a fresh row below (row->deleted: nothing is kept) */
    } else if (!clean) {
        int won = 0;
        switch (rule->policy) {
        case CLOUD_SERVER_WINS:
            won = 0;
            break;
        case CLOUD_PRIORITY: {
            int mine = cloud_config_rank(a->cfg, a->device);
            int theirs = cloud_config_rank(a->cfg, row->origin);
            won = mine != theirs ? mine < theirs : client_is_later(a, r, row);
            break;
        }
        case CLOUD_MERGE:
            if (r->op == SYNC_OP_UPDATE && !row->deleted) {
                /* Columns the server changed since the edit's base version conflict; the rest
                 * of the edit applies as it is. Conflicting columns go to the later clock. */
                int later = client_is_later(a, r, row);
                take = 0;
                for (int c = 0; c < t->ncols; c++) {
                    if (!(cmask & (1ull << c)))
                        continue;
                    if (row->colver[c] <= r->base_version || later)
                        take |= 1ull << c;
                }
                won = take != 0;
                if (won) {
                    code = SYNC_R_MERGED;
                    outcome = "merged";
                }
                break;
            }
            won = client_is_later(a, r, row);
            break;
        case CLOUD_MANUAL: {
            int64_t id = 0;
            if ((rc = log_conflict(a, t, r, &key, "pending", &id)) != SYNC_OK) {
                a->db_failed = rc == SYNC_ERR_DB;
                return rc;
            }
            /* The row keeps the server's value and is flagged until a person resolves it. */
            row->conflict = id;
            if (cloud_store_row_put(a->st, t, &key, row) != SYNC_OK) {
                a->db_failed = 1;
                return SYNC_ERR_DB;
            }
            return add_result(a, r->seq, SYNC_R_PENDING, row->version, t, 1);
        }
        case CLOUD_LWW:
        default:
            won = client_is_later(a, r, row);
            break;
        }
        if ((rc = log_conflict(a, t, r, &key, won ? outcome : "server-wins", NULL)) != SYNC_OK) {
            a->db_failed = rc == SYNC_ERR_DB;
            return rc;
        }
        if (!won)
            return add_result(a, r->seq, SYNC_R_LOST, row->version, t, 1);
    }
    if (delta_prev(a, t) != SYNC_OK) {
        a->db_failed = 1;
        return SYNC_ERR_DB;
    }
    cloud_row *nx = &a->next;
    nx->exists = 1;
    nx->deleted = r->op == SYNC_OP_DELETE;
    nx->version = row->version + 1;
    nx->hlc = r->hlc;
    nx->cseq = cloud_store_next_cseq(a->st);
    nx->conflict = row->exists ? row->conflict : 0;
    snprintf(nx->origin, sizeof nx->origin, "%s", a->device);
    int keep = r->op == SYNC_OP_UPDATE && row->exists && !row->deleted;
    for (int i = 0; i < t->ncols; i++) {
        /* An update keeps the columns it does not set; an insert or delete replaces all. */
        nx->vals[i] = row->vals[i];
        nx->colver[i] = row->colver[i];
        if (!keep && !(nx->deleted && i == a->pcol[t->index])) {
            /* (A tombstone keeps its partition: partition pulls must return it.) */
            nx->vals[i].type = SYNC_NULL;
            nx->colver[i] = (uint32_t)nx->version;
        }
    }
    nx->vals[t->key] = key;
    for (size_t i = 0; i < r->ncols; i++) {
        int c = sync_table_col(t, r->cols[i].name, r->cols[i].name_len);
        if (!(take & (1ull << c)))
            continue;
        nx->vals[c] = r->cols[i].v;
        nx->colver[c] = (uint32_t)nx->version;
        sync_column_check(t, c, &nx->vals[c], NULL, 0);
    }
    if (!nx->deleted)
        for (int i = 0; i < t->ncols; i++)
            if (t->cols[i].notnull && nx->vals[i].type == SYNC_NULL) {
                /* An update of a row the store does not hold leaves the columns it does not
                 * set empty; a NOT NULL one would reach every replica and fail there. */
                char why[256];
                snprintf(why, sizeof why,
                         "column '%s' of '%s' may not be null, and this change leaves it "
                         "empty (an update of a row the cloud does not hold)",
                         t->cols[i].name, t->name);
                return refuse_record(a, t, r, why);
            }
    pdelta *from = NULL, *to = NULL;
    if (a->partitioned && (rc = part_before_put(a, t, &key, had_row, row, nx, &from, &to)) != SYNC_OK)
        return rc;
    if (cloud_store_row_put(a->st, t, &key, nx) != SYNC_OK) {
        a->db_failed = 1;
        return SYNC_ERR_DB;
    }
    a->n_applied++;
    a->stats.applied++;
    uint64_t setmask = r->op == SYNC_OP_UPDATE && keep ? take : ~0ull >> (64 - t->ncols);
    if ((rc = publish_change(a, t, r, &key, setmask, from, to)) != SYNC_OK)
        return rc;
    if (code == SYNC_R_MERGED) {
        /* The writer gets the merged row, which is neither its value nor the old one. */
        *row = *nx;
        return add_result(a, r->seq, SYNC_R_MERGED, nx->version, t, 1);
    }
    return add_result(a, r->seq, code, nx->version, t, 0);
}

int cloud_applier_admin_change(cloud_applier *a, const char *who, const sync_table *t,
                               const sync_value *key, sync_op op, const sync_colval *cols,
                               size_t ncols, uint64_t *version, char *err, size_t errlen)
{
    cloud_row *row = &a->row, *nx = &a->next;
    sync_value k = *key;
    if (sync_column_check(t, t->key, &k, err, errlen) != SYNC_OK)
        return SYNC_ERR_SCHEMA;
    /* Validate everything before touching the store. */
    uint64_t mask = 0;
    for (size_t i = 0; i < ncols; i++) {
        int c = sync_table_col(t, cols[i].name, cols[i].name_len);
        if (c < 0)
            return sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "table '%s' has no column '%.*s'",
                               t->name, (int)cols[i].name_len, cols[i].name);
        if (c == t->key)
            return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                               "the key column '%s' cannot be changed", t->cols[c].name);
        sync_value v = cols[i].v;
        if (sync_column_check(t, c, &v, err, errlen) != SYNC_OK)
            return SYNC_ERR_SCHEMA;
        mask |= 1ull << c;
    }
    if (cloud_store_row_get(a->st, t, &k, row) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "%s", cloud_store_errmsg(a->st));
    int had_row = row->exists;
    if (!row->exists)
        row->version = cloud_store_version_floor(a->st, t);
    if (op == SYNC_OP_UPDATE && ncols == 0 && (!row->exists || row->deleted))
        op = SYNC_OP_DELETE; /* restating a tombstone (or nothing) leaves a tombstone */
    /* An update of a tombstone brings the row back with only the given columns. */
    int keep = op == SYNC_OP_UPDATE && row->exists && !row->deleted;
    if (delta_prev(a, t) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "%s", cloud_store_errmsg(a->st));
    nx->exists = 1;
    nx->deleted = op == SYNC_OP_DELETE;
    nx->version = row->version + 1;
    nx->hlc = sync_hlc_tick(&a->hlc, sync_wall_ms());
    if (nx->hlc <= row->hlc) /* stay after what it replaces, even against a fast device clock */
        nx->hlc = row->hlc + 1;
    nx->cseq = cloud_store_next_cseq(a->st);
    nx->conflict = 0; /* a person decided: the row is no longer flagged */
    snprintf(nx->origin, sizeof nx->origin, "%s", who);
    int pc = a->pcol[t->index];
    for (int i = 0; i < t->ncols; i++) {
        nx->vals[i] = keep || (nx->deleted && i == pc && had_row) ? row->vals[i]
                                                                  : (sync_value){.type = SYNC_NULL};
        nx->colver[i] = keep ? row->colver[i] : (uint32_t)nx->version;
    }
    nx->vals[t->key] = k;
    for (size_t i = 0; i < ncols && op != SYNC_OP_DELETE; i++) {
        int c = sync_table_col(t, cols[i].name, cols[i].name_len);
        nx->vals[c] = cols[i].v;
        sync_column_check(t, c, &nx->vals[c], NULL, 0);
        nx->colver[c] = (uint32_t)nx->version;
    }
    if (!nx->deleted)
        for (int i = 0; i < t->ncols; i++)
            if (t->cols[i].notnull && nx->vals[i].type == SYNC_NULL)
                return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                   "column '%s' of '%s' may not be null", t->cols[i].name,
                                   t->name);
    pdelta *from = NULL, *to = NULL;
    a->db_failed = 0;
    int prc = a->partitioned ? part_before_put(a, t, &k, had_row, row, nx, &from, &to) : SYNC_OK;
    if (prc != SYNC_OK)
        return sync_seterr(err, errlen, prc, "%s",
                           prc == SYNC_ERR_DB ? cloud_store_errmsg(a->st) : "out of memory");
    if (cloud_store_row_put(a->st, t, &k, nx) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "%s", cloud_store_errmsg(a->st));
    sync_record r;
    memset(&r, 0, sizeof r);
    r.op = keep ? SYNC_OP_UPDATE : op == SYNC_OP_DELETE ? SYNC_OP_DELETE : SYNC_OP_INSERT;
    const char *saved = a->device;
    a->device = who;
    int rc = publish_change(a, t, &r, &k, keep ? mask : ~0ull >> (64 - t->ncols), from, to);
    a->device = saved;
    if (rc != SYNC_OK)
        return sync_seterr(err, errlen, rc, "out of memory");
    a->stats.applied++;
    if (version)
        *version = nx->version;
    return SYNC_OK;
}

static int ap_hdr(void *ctx, const sync_batch_hdr *h)
{
    cloud_applier *a = ctx;
    a->hdr = *h;
    return 0;
}

static int refuse(cloud_applier *a, const char *ack_topic)
{
    a->stats.rejected++;
    sync_warn("refused a batch from device %s: %s", a->device, a->reason);
    if (a->have_hdr) {
        sync_ack_hdr ah = {
            .base_seq = a->hdr.base_seq,
            .last_seq = a->hdr.base_seq,
            .status = SYNC_ACK_REJECTED,
            .reason = a->reason,
            .reason_len = strlen(a->reason),
            .nresults = 0,
        };
        sync_cbuf_reset(&a->scratch);
        if (sync_ack_encode_hdr(&a->scratch, &ah) != SYNC_OK ||
            cloud_outq_add(&a->acks, ack_topic, a->scratch.data, a->scratch.len, NULL, 0, 1, 0) !=
                SYNC_OK)
            return SYNC_ERR_NOMEM;
    }
    if (a->cfg->events >= 1) {
        char buf[1024];
        sync_json j;
        sync_json_init(&j, buf, sizeof buf);
        json_head(&j, "rejected", a->device);
        if (a->have_hdr) {
            sync_json_key(&j, "first_seq");
            sync_json_u64(&j, a->hdr.base_seq);
            sync_json_key(&j, "records");
            sync_json_u64(&j, a->hdr.nrecords);
        }
        sync_json_key(&j, "reason");
        sync_json_cstr(&j, a->reason);
        sync_json_end(&j);
        event(a, "rejected", &j);
    }
    return SYNC_OK;
}

static int keep_hdr(void *ctx, const sync_batch_hdr *h)
{
    cloud_applier *a = ctx;
    a->hdr = *h;
    a->have_hdr = 1;
    return v_hdr(ctx, h);
}

int cloud_applier_batch(cloud_applier *a, const char *device, const void *payload, size_t len)
{
    char topic[SYNC_TOPIC_MAX];
    sync_topic_dev(topic, sizeof topic, a->cfg->tenant, device, "ack");
    a->device = device;
    a->have_hdr = 0;
    a->reason[0] = '\0';
    a->stats.batches++;
    for (int i = 0; i < sync_schema_ntables(a->schema); i++)
        cloud_access_reach(a->cfg, sync_schema_table(a->schema, i), device, 1, &a->wreach[i]);
    if (a->registry) {
        char why[256];
        int ok = cloud_registry_allows(a->registry, a->cfg->tenant, device, why, sizeof why);
        if (ok != 1) {
            /* No ack: the edge keeps the batch and sends it again, so a device that is resumed
             * loses nothing, and one that is not never gets anything applied. */
            a->stats.rejected++;
            a->stats.unregistered++;
            sync_warn("dropped a batch from %s without acknowledging it: %s", device, why);
            if (a->cfg->events >= 1) {
                char buf[512];
                sync_json j;
                sync_json_init(&j, buf, sizeof buf);
                json_head(&j, "rejected", device);
                sync_json_key(&j, "reason");
                sync_json_cstr(&j, why);
                sync_json_key(&j, "acked");
                sync_json_bool(&j, 0);
                sync_json_end(&j);
                event(a, "rejected", &j);
            }
            return SYNC_OK;
        }
    }
    if (len > (size_t)a->cfg->max_batch_bytes) {
        snprintf(a->reason, sizeof a->reason,
                 "batch of %zu bytes exceeds the %ld-byte limit (max_batch_bytes)", len,
                 a->cfg->max_batch_bytes);
        /* Read just the header so the edge can be told. */
        sync_batch_hdr seen;
        seen.device = NULL;
        sync_batch_decode(payload, len, &a->lim, &seen, keep_hdr, NULL, a, NULL, 0);
        if (!a->have_hdr && seen.device != NULL) {
            a->hdr = seen;
            a->have_hdr = 1;
        }
        return refuse(a, topic);
    }
    /* Pass 1: validate everything before touching the store. */
    char derr[256];
    sync_batch_hdr seen;
    seen.device = NULL;
    int rc = sync_batch_decode(payload, len, &a->lim, &seen, keep_hdr, v_rec, a, derr, sizeof derr);
    if (rc != SYNC_OK && !a->have_hdr && seen.device != NULL) {
        /* The header decoded but the batch broke a limit before the header callback (too many
         * records): the edge must still get its refusal, or it would resend forever. */
        a->hdr = seen;
        a->have_hdr = 1;
    }
    if (rc != SYNC_OK) {
        if (a->reason[0] == '\0')
            snprintf(a->reason, sizeof a->reason, "%s", derr[0] ? derr : sync_strerror(rc));
        return refuse(a, topic);
    }
    /* Pass 2: apply, as one savepoint. */
    if (cloud_store_device_seq(a->st, device, &a->last_seq) != SYNC_OK)
        return SYNC_ERR_DB;
    if (cloud_store_savepoint(a->st) != SYNC_OK)
        return SYNC_ERR_DB;
    a->max_seq = 0;
    a->n_applied = a->n_conflicts = a->n_dups = 0;
    a->db_failed = 0;
    sync_cbuf_reset(&a->ack_body);
    rc = sync_batch_decode(payload, len, &a->lim, NULL, ap_hdr, ap_rec, a, derr, sizeof derr);
    if (rc == SYNC_OK && a->max_seq > a->last_seq &&
        cloud_store_device_done(a->st, device, a->max_seq, a->n_applied, a->hdr.nrecords) !=
            SYNC_OK)
        rc = SYNC_ERR_DB;
    if (rc != SYNC_OK) {
        cloud_store_rollback_savepoint(a->st);
        sync_error("applying a batch from %s failed: %s", device,
                   a->db_failed || rc == SYNC_ERR_DB ? cloud_store_errmsg(a->st)
                                                     : sync_strerror(rc));
        return rc == SYNC_ERR_NOMEM ? SYNC_ERR_NOMEM : SYNC_ERR_DB;
    }
    if (cloud_store_release(a->st) != SYNC_OK)
        return SYNC_ERR_DB;
    a->stats.records += a->hdr.nrecords;
    sync_ack_hdr ah = {
        .base_seq = a->hdr.base_seq,
        .last_seq = a->max_seq,
        .status = SYNC_ACK_OK,
        .nresults = a->hdr.nrecords,
    };
    sync_cbuf_reset(&a->scratch);
    if (sync_ack_encode_hdr(&a->scratch, &ah) != SYNC_OK || a->ack_body.err ||
        cloud_outq_add(&a->acks, topic, a->scratch.data, a->scratch.len, a->ack_body.data,
                       a->ack_body.len, 1, 0) != SYNC_OK)
        return SYNC_ERR_NOMEM;
    sync_debug("batch from %s: %zu changes (%llu applied, %llu conflicts, %llu duplicates)", device,
               a->hdr.nrecords, (unsigned long long)a->n_applied,
               (unsigned long long)a->n_conflicts, (unsigned long long)a->n_dups);
    if (a->cfg->events >= 1) {
        char buf[512];
        sync_json j;
        sync_json_init(&j, buf, sizeof buf);
        json_head(&j, "batch", device);
        sync_json_key(&j, "first_seq");
        sync_json_u64(&j, a->hdr.base_seq);
        sync_json_key(&j, "last_seq");
        sync_json_u64(&j, a->max_seq);
        sync_json_key(&j, "records");
        sync_json_u64(&j, a->hdr.nrecords);
        sync_json_key(&j, "applied");
        sync_json_u64(&j, a->n_applied);
        sync_json_key(&j, "conflicts");
        sync_json_u64(&j, a->n_conflicts);
        sync_json_key(&j, "duplicates");
        sync_json_u64(&j, a->n_dups);
        sync_json_end(&j);
        event(a, "batch", &j);
    }
    return SYNC_OK;
}

/* Queues the retained head of one partition stream: sync/T/head/TABLE/PART. */
static int part_head(cloud_applier *a, cloud_outq *q, const sync_table *t, const sync_value *part,
                     uint64_t cseq)
{
    char topic[SYNC_TOPIC_MAX];
    if (sync_topic_stream(topic, sizeof topic, a->cfg->tenant, "head", t->name, part) != SYNC_OK)
        return SYNC_OK; /* its delta topic was too long as well, and said so */
    sync_head_entry e = {.table = t->name, .table_len = strlen(t->name), .cseq = cseq};
    sync_cbuf_reset(&a->scratch3);
    if (sync_head_encode(&a->scratch3, cseq, &e, 1) != SYNC_OK)
        return SYNC_ERR_NOMEM;
    return cloud_outq_add(q, topic, a->scratch3.data, a->scratch3.len, NULL, 0, 1, 1);
}

struct heads_ctx {
    cloud_applier *a;
    cloud_outq *q;
    const sync_table *t;
};

static int head_of_part(void *ctx, const sync_value *v)
{
    struct heads_ctx *h = ctx;
    uint64_t c = 0;
    if (cloud_store_part_cseq(h->a->st, h->t, v, &c) != SYNC_OK)
        return SYNC_ERR_DB;
    return part_head(h->a, h->q, h->t, v, c);
}

int cloud_applier_flush(cloud_applier *a, cloud_outq *q)
{
    cloud_outq_move(q, &a->acks);
    int rc = SYNC_OK;
    sync_cbuf hdr;
    sync_cbuf_init(&hdr, 0);
    for (int i = 0; i < sync_schema_ntables(a->schema); i++) {
        tdelta *d = &a->deltas[i];
        if (d->n == 0)
            continue;
        const sync_table *t = sync_schema_table(a->schema, i);
        sync_delta_hdr h = {
            .table = t->name,
            .table_len = strlen(t->name),
            .prev_cseq = d->published,
            .nchanges = d->n,
        };
        char topic[SYNC_TOPIC_MAX];
        sync_topic_delta(topic, sizeof topic, a->cfg->tenant, t->name);
        sync_cbuf_reset(&hdr);
        if (sync_delta_encode_hdr(&hdr, &h) != SYNC_OK || d->body.err ||
            cloud_outq_add(q, topic, hdr.data, hdr.len, d->body.data, d->body.len, 1, 0) != SYNC_OK)
            rc = SYNC_ERR_NOMEM;
        d->published = d->last;
        d->n = 0;
        sync_cbuf_reset(&d->body);
    }
    for (int i = 0; i < sync_schema_ntables(a->schema); i++)
        a->deltas[i].prev_read = 0;
    for (size_t i = 0; i < a->npd; i++) {
        pdelta *pd = &a->pd[i];
        if (pd->n == 0)
            continue;
        sync_delta_hdr h = {
            .table = pd->t->name,
            .table_len = strlen(pd->t->name),
            .prev_cseq = pd->prev,
            .nchanges = pd->n,
        };
        char topic[SYNC_TOPIC_MAX];
        sync_cbuf_reset(&hdr);
        if (sync_topic_stream(topic, sizeof topic, a->cfg->tenant, "delta", pd->t->name,
                              &pd->part) != SYNC_OK) {
            sync_warn("a partition topic of '%s' would be too long; not published", pd->t->name);
            continue;
        }
        /* The head names the partition's newest committed change, whichever consumer made it
         * (with several sharing a store, another may have committed a later one already). */
        uint64_t head = pd->last, stored = 0;
        if (cloud_store_part_cseq(a->st, pd->t, &pd->part, &stored) == SYNC_OK && stored > head)
            head = stored;
        if (sync_delta_encode_hdr(&hdr, &h) != SYNC_OK || pd->body.err ||
            cloud_outq_add(q, topic, hdr.data, hdr.len, pd->body.data, pd->body.len, 1, 0) !=
                SYNC_OK ||
            part_head(a, q, pd->t, &pd->part, head) != SYNC_OK)
            rc = SYNC_ERR_NOMEM;
    }
    a->npd = 0;
    sync_cbuf_free(&hdr);
    cloud_outq_move(q, &a->rows);
    if (changes_event(a) != SYNC_OK)
        rc = SYNC_ERR_NOMEM;
    cloud_outq_move(q, &a->events);
    return rc;
}

int cloud_applier_head(cloud_applier *a, cloud_outq *q)
{
    int n = sync_schema_ntables(a->schema);
    sync_head_entry *e = calloc((size_t)n, sizeof *e);
    if (!e)
        return SYNC_ERR_NOMEM;
    uint64_t top = 0;
    for (int i = 0; i < n; i++) {
        const sync_table *t = sync_schema_table(a->schema, i);
        e[i].table = t->name;
        e[i].table_len = strlen(t->name);
        /* The store's newest committed change: with several consumers on one store, the
         * others' changes count too. */
        uint64_t c = 0;
        e[i].cseq = a->deltas[i].published;
        if (cloud_store_table_cseq(a->st, t, &c) == SYNC_OK && c > e[i].cseq)
            e[i].cseq = c;
        if (e[i].cseq > top)
            top = e[i].cseq;
    }
    char topic[SYNC_TOPIC_MAX];
    snprintf(topic, sizeof topic, "sync/%s/head", a->cfg->tenant);
    sync_cbuf_reset(&a->scratch);
    int rc = sync_head_encode(&a->scratch, top, e, (size_t)n);
    free(e);
    if (rc == SYNC_OK)
        rc = cloud_outq_add(q, topic, a->scratch.data, a->scratch.len, NULL, 0, 1, 1);
    /* Every partition's head, once per process (after that each follows its changes). */
    for (int i = 0; rc == SYNC_OK && !a->heads_sent && i < n; i++) {
        if (a->pcol[i] < 0)
            continue;
        struct heads_ctx h = {a, q, sync_schema_table(a->schema, i)};
        rc = cloud_store_partitions(a->st, h.t, head_of_part, &h);
        if (rc != SYNC_OK)
            sync_error("publishing the partition heads of '%s': %s", h.t->name,
                       rc == SYNC_ERR_DB ? cloud_store_errmsg(a->st) : sync_strerror(rc));
    }
    if (rc == SYNC_OK)
        a->heads_sent = 1;
    return rc;
}

void cloud_applier_heads_again(cloud_applier *a)
{
    a->heads_sent = 0;
}

void cloud_applier_discard(cloud_applier *a)
{
    cloud_outq_clear(&a->acks);
    cloud_outq_clear(&a->rows);
    cloud_outq_clear(&a->events);
    sync_cbuf_reset(&a->changes);
    a->nchanges = 0;
    for (int i = 0; i < sync_schema_ntables(a->schema); i++) {
        a->deltas[i].n = 0;
        a->deltas[i].prev_read = 0;
        sync_cbuf_reset(&a->deltas[i].body);
    }
    a->npd = 0;
}
