/* cmd_status.c - `syncctl status` and `syncctl stats`: how the devices and the cloud are doing.
 *
 * Both read retained messages through the broker: status the devices' states
 * (sync/TENANT/dev/+/state), stats the cloud consumers' statistics (sync/TENANT/cloud/+/stats).
 * Retained messages arrive right after the subscription; collection ends once SETTLE_S pass
 * without a new one (or after --wait). status also asks synccloud for its store's view of every
 * device (the "devices" admin request) and merges both by device id; without an answer it
 * still prints the states, says so on stderr, and exits with EXIT_PARTIAL.
 *
 * What devices write is untrusted: states are read with the bounded reader (states.h), only
 * the device id of the topic (which the broker's ACL ties to the device) names a device, and
 * every cell goes through ctl_cell(), so no byte a device sent reaches the terminal raw.
 * docs/syncctl.md describes the columns and the JSON output.
 */
#include <cbor.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "ctl.h"
#include "link.h"
#include "out.h"
#include "states.h"
#include "sync/cbor.h"
#include "sync/conf.h"
#include "sync/err.h"
#include "sync/json.h"
#include "sync/record.h"
#include "sync/topic.h"

#define SETTLE_S 0.3            /* quiet time that ends the collection of retained messages */
#define MAX_MESSAGES 200000     /* retained messages kept (devices, consumers) */
#define MAX_PAYLOAD (64 * 1024) /* bytes of one state or statistics message */
#define MAX_TOTAL (64 << 20)    /* bytes of all messages kept */
#define MAX_SOURCES 2           /* topic filters collect() reads */
#define EXIT_PARTIAL 3          /* status: states shown, but synccloud did not answer */
/* status: how long after connecting to wait for the answer of a synccloud whose statistics
 * all say it stopped (a consumer that just started has this long to answer anyway). */
#define STOPPED_S 1.0

/* ---- collecting retained messages -------------------------------------------------------- */

/* One retained message: the id in its topic, and its payload. */
struct msg {
    char id[128];  /* the device or consumer level of the topic */
    char *payload; /* NUL-terminated copy, or NULL when too large */
    size_t len;    /* bytes the message had */
    size_t seq;    /* arrival order */
};

struct msgs {
    struct msg *v;
    size_t n, cap;
    size_t bytes;   /* payload bytes kept */
    size_t dropped; /* past MAX_MESSAGES or MAX_TOTAL, or with an id too long */
};

static void msgs_free(struct msgs *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].payload);
    free(m->v);
}

/* Keeps the message with id (an empty payload clears a retained message: skipped). */
static int msgs_add(struct msgs *m, const char *id, size_t idlen, const sync_mqtt_msg *x)
{
    if (x->len == 0)
        return SYNC_OK;
    if (m->n >= MAX_MESSAGES || idlen >= sizeof m->v->id ||
        m->bytes + (x->len <= MAX_PAYLOAD ? x->len : 0) > MAX_TOTAL) {
        m->dropped++;
        return SYNC_OK;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        struct msg *nv = realloc(m->v, cap * sizeof *nv);
        if (!nv)
            return SYNC_ERR_NOMEM;
        m->v = nv;
        m->cap = cap;
    }
    struct msg *e = &m->v[m->n];
    memcpy(e->id, id, idlen);
    e->id[idlen] = '\0';
    e->len = x->len;
    e->seq = m->n;
    e->payload = NULL;
    if (x->len <= MAX_PAYLOAD) {
        e->payload = malloc(x->len + 1);
        if (!e->payload)
            return SYNC_ERR_NOMEM;
        memcpy(e->payload, x->payload, x->len);
        e->payload[x->len] = '\0';
        m->bytes += x->len;
    }
    m->n++;
    return SYNC_OK;
}

static int by_id_then_seq(const void *a, const void *b)
{
    const struct msg *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts by id and keeps the newest message of each id. */
static void msgs_latest(struct msgs *m)
{
    if (m->n == 0)
        return;
    qsort(m->v, m->n, sizeof *m->v, by_id_then_seq);
    size_t o = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (o > 0 && strcmp(m->v[o - 1].id, m->v[i].id) == 0) {
            free(m->v[o - 1].payload);
            m->v[o - 1] = m->v[i];
        } else {
            m->v[o++] = m->v[i];
        }
    }
    m->n = o;
}

/* The id level of topic "sync/TENANT/KIND/ID/LEAF" (prefix = "sync/TENANT/KIND/"), or NULL. */
static const char *topic_id(const char *topic, const char *prefix, const char *leaf, size_t *len)
{
    size_t pl = strlen(prefix), ll = strlen(leaf), tl = strlen(topic);
    if (tl <= pl + ll + 1 || strncmp(topic, prefix, pl) != 0 || topic[tl - ll - 1] != '/' ||
        strcmp(topic + tl - ll, leaf) != 0)
        return NULL;
    const char *id = topic + pl;
    *len = tl - ll - 1 - pl;
    return memchr(id, '/', *len) ? NULL : id;
}

/* What collect() gathers: the retained messages of sync/TENANT/KIND/+/LEAF. */
struct source {
    const char *kind, *leaf;
    struct msgs *out;
};

/* 1 if consumers published statistics and the latest of each says it stopped (online false,
 * from a clean stop or its Last Will). Past 64 reports it does not judge (and says 0). */
static int cloud_stopped(const struct msgs *m)
{
    if (m->n == 0 || m->n > 64)
        return 0;
    for (size_t i = 0; i < m->n; i++) {
        int newest = 1;
        for (size_t k = i + 1; k < m->n && newest; k++)
            newest = strcmp(m->v[k].id, m->v[i].id) != 0;
        ctl_stats st;
        char why[200];
        if (newest &&
            (!m->v[i].payload ||
             ctl_stats_read(m->v[i].payload, m->v[i].len, &st, why, sizeof why) != SYNC_OK ||
             st.online != 0))
            return 0;
    }
    return 1;
}

/* Collects the retained messages of the sources through l until SETTLE_S pass without one (at
 * most wait_s after connecting). With ask, waits for the answer of l's request as well, at
 * most the configured timeout; or until STOPPED_S after connecting when the last source is
 * the consumers' statistics and they all say synccloud stopped (then *stopped is set).
 * Returns SYNC_OK, or SYNC_ERR_TIMEOUT when the broker was not reached (err says why). */
static int collect(const ctl_ctx *ctx, ctl_link *l, const struct source *src, size_t nsrc,
                   double wait_s, int ask, int *stopped, char *err, size_t errlen)
{
    char prefix[MAX_SOURCES][SYNC_TOPIC_MAX];
    if (nsrc > MAX_SOURCES)
        nsrc = MAX_SOURCES;
    for (size_t i = 0; i < nsrc; i++)
        snprintf(prefix[i], sizeof prefix[i], "sync/%s/%s/", ctx->cfg.tenant, src[i].kind);
    double start = ctl_mono(), last = 0, timeout = (double)ctx->cfg.timeout;
    int stats_last = nsrc > 0 && strcmp(src[nsrc - 1].leaf, "stats") == 0;
    for (;;) {
        sync_mqtt_msg *list = ctl_link_poll(l, 50);
        double now = ctl_mono();
        int rc = SYNC_OK;
        while (list) {
            sync_mqtt_msg *x = list;
            list = x->next;
            for (size_t i = 0; i < nsrc && rc == SYNC_OK; i++) {
                size_t idlen;
                const char *id = topic_id(x->topic, prefix[i], src[i].leaf, &idlen);
                if (id)
                    rc = msgs_add(src[i].out, id, idlen, x);
            }
            last = now;
            sync_mqtt_msg_free(x);
        }
        if (rc != SYNC_OK)
            return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
        double ready = ctl_link_ready_at(l);
        if (ready == 0) {
            if (now - start >= timeout) {
                ctl_link_why(l, err, errlen);
                return SYNC_ERR_TIMEOUT;
            }
            continue;
        }
        double quiet_since = last > ready ? last : ready;
        int states_done = now - quiet_since >= SETTLE_S || now - ready >= wait_s;
        int answer_done = !ask || ctl_link_answer(l, NULL) || now - start >= timeout;
        if (!answer_done && states_done && stats_last && now - ready >= STOPPED_S &&
            cloud_stopped(src[nsrc - 1].out)) {
            *stopped = 1;
            answer_done = 1;
        }
        if (states_done && answer_done)
            return SYNC_OK;
    }
}

/* Reads --wait. Returns 0, or 2 after printing why the value is wrong. */
static int wait_opt(const ctl_opt *o, double *out)
{
    char err[256];
    if (o->value &&
        sync_conf_double(o->key, o->value, 0.1, 3600, out, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "Error: %s\n", err);
        return 2;
    }
    return 0;
}

/* ---- status -------------------------------------------------------------------------- */

/* A device as status shows it: its state message and synccloud's record, merged by id. */
struct device {
    const char *id;          /* the topic's device level, or the cloud's (owned elsewhere) */
    const struct msg *state; /* its retained state, or NULL */
    cbor_item_t *cloud;      /* synccloud's record of it, or NULL */
};

/* Everything one status run prints. */
struct status {
    struct device *v;
    size_t n;
    int cloud_answered; /* synccloud answered the devices request */
    uint64_t now;       /* ms since the epoch */
};

static int by_device(const void *a, const void *b)
{
    return strcmp(((const struct device *)a)->id, ((const struct device *)b)->id);
}

/* The device id text of a cloud record, NUL-terminated into buf, or NULL. */
static const char *cloud_id(cbor_item_t *rec, char *buf, size_t cap)
{
    cbor_item_t *d = ctl_cbor_get(rec, "device");
    if (!d || !cbor_isa_string(d) || !cbor_string_is_definite(d) || cbor_string_length(d) >= cap ||
        cbor_string_length(d) == 0 || memchr(cbor_string_handle(d), 0, cbor_string_length(d)))
        return NULL;
    memcpy(buf, cbor_string_handle(d), cbor_string_length(d));
    buf[cbor_string_length(d)] = '\0';
    return buf;
}

/* Merges the states (sorted, one per id) and the cloud's records into s->v, sorted by id.
 * ids holds the cloud's ids (one SYNC_MAX_ID + 1 slot per record). */
static int merge(struct status *s, const struct msgs *states, cbor_item_t *list, char *ids)
{
    size_t nc = list && cbor_isa_array(list) ? cbor_array_size(list) : 0;
    s->v = calloc(states->n + nc + 1, sizeof *s->v);
    if (!s->v)
        return SYNC_ERR_NOMEM;
    for (size_t i = 0; i < states->n; i++) {
        s->v[s->n].id = states->v[i].id;
        s->v[s->n++].state = &states->v[i];
    }
    size_t nstates = s->n;
    for (size_t i = 0; i < nc; i++) {
        cbor_item_t *rec = cbor_array_handle(list)[i];
        char *buf = ids + i * (SYNC_MAX_ID + 1);
        const char *id = cloud_id(rec, buf, SYNC_MAX_ID + 1);
        if (!id)
            continue;
        struct device key = {id, NULL, NULL}, *hit = NULL;
        if (nstates)
            hit = bsearch(&key, s->v, nstates, sizeof *s->v, by_device);
        if (hit) {
            if (!hit->cloud)
                hit->cloud = rec;
        } else {
            s->v[s->n].id = id;
            s->v[s->n++].cloud = rec;
        }
    }
    qsort(s->v, s->n, sizeof *s->v, by_device);
    return SYNC_OK;
}

/* Reads d's state. Returns 1 with *st filled, or 0 (no state, or unreadable: *why says). */
static int read_state(const struct device *d, ctl_devstate *st, char *why, size_t n)
{
    why[0] = '\0';
    if (!d->state) {
        ctl_devstate_read("{}", 2, st, why, n); /* every field absent */
        return 0;
    }
    if (!d->state->payload) {
        ctl_devstate_read("{}", 2, st, why, n);
        snprintf(why, n, "state message of %zu bytes, more than %d", d->state->len, MAX_PAYLOAD);
        return 0;
    }
    return ctl_devstate_read(d->state->payload, d->state->len, st, why, n) == SYNC_OK;
}

static const char *status_word(const ctl_devstate *st, int readable)
{
    if (!readable || st->online < 0)
        return "unknown";
    if (st->online)
        return "online";
    return st->clean == 0 ? "lost" : "offline";
}

static uint64_t cloud_field(const struct device *d, const char *key)
{
    uint64_t v;
    return ctl_cbor_uint(ctl_cbor_get(d->cloud, key), &v) ? v : CTL_NONE;
}

static void json_counts(sync_json *j, const ctl_table_count *c, size_t n, int present)
{
    if (!present) {
        ctl_write_null(j);
        return;
    }
    sync_json_begin(j);
    for (size_t i = 0; i < n; i++) {
        sync_json_key(j, c[i].name); /* device text, escaped like any JSON string */
        sync_json_u64(j, c[i].n);
    }
    sync_json_end(j);
}

static void json_device(sync_json *j, void *arg)
{
    const struct device *d = arg;
    ctl_devstate st;
    char why[200];
    int ok = read_state(d, &st, why, sizeof why);
    sync_json_begin(j);
    sync_json_key(j, "device");
    sync_json_cstr(j, d->id);
    sync_json_key(j, "status");
    sync_json_cstr(j, status_word(&st, ok));
    sync_json_key(j, "online");
    if (st.online < 0)
        ctl_write_null(j);
    else
        sync_json_bool(j, st.online);
    sync_json_key(j, "clean");
    if (st.clean < 0)
        ctl_write_null(j);
    else
        sync_json_bool(j, st.clean);
    sync_json_key(j, "pending");
    ctl_write_uint_or_null(j, st.pending);
    sync_json_key(j, "ts");
    ctl_write_uint_or_null(j, st.ts);
    sync_json_key(j, "version");
    if (st.version[0])
        sync_json_cstr(j, st.version);
    else
        ctl_write_null(j);
    sync_json_key(j, "last_sync");
    ctl_write_uint_or_null(j, st.last_sync);
    sync_json_key(j, "cursor");
    json_counts(j, st.cursor, st.ncursor, st.has_cursor);
    sync_json_key(j, "lag");
    json_counts(j, st.lag, st.nlag, st.has_lag);
    sync_json_key(j, "lag_total");
    ctl_write_uint_or_null(j, st.lag_total);
    sync_json_key(j, "pull");
    if (st.has_pull) {
        sync_json_begin(j);
        sync_json_key(j, "table");
        sync_json_cstr(j, st.pull_table);
        sync_json_key(j, "done");
        ctl_write_uint_or_null(j, st.pull_done);
        sync_json_key(j, "total");
        ctl_write_uint_or_null(j, st.pull_total);
        sync_json_key(j, "rows_per_s");
        ctl_write_real(j, st.pull_rate);
        sync_json_end(j);
    } else {
        ctl_write_null(j);
    }
    if (d->state && !ok) {
        sync_json_key(j, "state_error");
        sync_json_cstr(j, why);
    }
    sync_json_key(j, "cloud");
    if (d->cloud) {
        static const char *const keys[] = {"last_seq", "batches",    "records",
                                           "applied",  "first_seen", "last_seen"};
        sync_json_begin(j);
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            sync_json_key(j, keys[i]);
            ctl_write_uint_or_null(j, cloud_field(d, keys[i]));
        }
        sync_json_end(j);
    } else {
        ctl_write_null(j);
    }
    sync_json_end(j);
}

static int print_json(const struct status *s)
{
    /* One device per line: still one document, and easy to grep. */
    fputs("[", stdout);
    for (size_t i = 0; i < s->n; i++) {
        fputs(i ? ",\n" : "\n", stdout);
        if (ctl_emit_json(stdout, json_device, &s->v[i]) != 0)
            return -1;
    }
    fputs(s->n ? "\n]\n" : "]\n", stdout);
    return 0;
}

static const char *num(char *buf, size_t cap, uint64_t v)
{
    if (v == CTL_NONE)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%llu", (unsigned long long)v);
    return buf;
}

static void print_table(const struct status *s)
{
    int w = 6;
    for (size_t i = 0; i < s->n; i++)
        if ((int)strlen(s->v[i].id) > w)
            w = (int)strlen(s->v[i].id) > 64 ? 64 : (int)strlen(s->v[i].id);
    printf("%-*s %-7s %-8s %-8s %-10s %-15s %-10s %s\n", w, "DEVICE", "ONLINE", "PENDING", "LAG",
           "LAST SYNC", "CLOUD LAST SEEN", "APPLIED", "PULL");
    size_t online = 0, offline = 0, lost = 0, unknown = 0;
    uint64_t pending = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct device *d = &s->v[i];
        ctl_devstate st;
        char why[200], b[96], c[256];
        int ok = read_state(d, &st, why, sizeof why);
        if (d->state && !ok)
            fprintf(stderr, "syncctl: %s: %s\n", ctl_safe(b, sizeof b, d->id, strlen(d->id)), why);
        const char *word = status_word(&st, ok), *cell = "-";
        if (strcmp(word, "online") == 0) {
            online++;
            cell = "yes";
        } else if (strcmp(word, "offline") == 0) {
            offline++;
            cell = "no";
        } else if (strcmp(word, "lost") == 0) {
            lost++;
            cell = "lost";
        } else {
            unknown++;
            cell = d->state ? "?" : "-"; /* unreadable, or no state at all */
        }
        if (st.pending != CTL_NONE)
            pending += st.pending;
        ctl_cell(stdout, d->id, w);
        ctl_cell(stdout, cell, 7);
        ctl_cell(stdout, num(b, sizeof b, st.pending), 8);
        ctl_cell(stdout, num(b, sizeof b, st.lag_total), 8);
        ctl_cell(stdout,
                 st.last_sync == CTL_NONE ? "-"
                 : st.last_sync == 0      ? "never"
                                          : ctl_age(b, sizeof b, st.last_sync, s->now),
                 10);
        uint64_t seen = cloud_field(d, "last_seen"), applied = cloud_field(d, "applied");
        ctl_cell(stdout,
                 !s->cloud_answered ? "?"
                 : seen == CTL_NONE ? "-"
                 : seen == 0        ? "never"
                                    : ctl_age(b, sizeof b, seen, s->now),
                 15);
        ctl_cell(stdout, !s->cloud_answered ? "?" : num(b, sizeof b, applied), 10);
        if (st.has_pull) {
            char done[32], total[32], rate[32];
            num(done, sizeof done, st.pull_done);
            num(total, sizeof total, st.pull_total);
            snprintf(c, sizeof c, "%s%s%s/%s (%s rows/s)", st.pull_table,
                     st.pull_table[0] ? " " : "", st.pull_done == CTL_NONE ? "?" : done,
                     st.pull_total == CTL_NONE ? "?" : total,
                     isnan(st.pull_rate) ? "?" : ctl_rate(rate, sizeof rate, st.pull_rate));
            ctl_cell(stdout, c, 0);
        } else {
            ctl_cell(stdout, "-", 0);
        }
    }
    printf("%zu device%s: %zu online, %zu offline, %zu lost, %zu unknown; %llu change%s pending\n",
           s->n, s->n == 1 ? "" : "s", online, offline, lost, unknown, (unsigned long long)pending,
           pending == 1 ? "" : "s");
}

int ctl_cmd_status(ctl_ctx *ctx, int argc, char **argv)
{
    ctl_opt opts[] = {{"json", 1, NULL}, {"wait", 0, NULL}};
    int status = ctl_args(ctx, argc, argv, opts, 2, NULL, 0, 0, NULL);
    if (status >= 0)
        return status;
    double wait_s = 5;
    if ((status = wait_opt(&opts[1], &wait_s)) != 0)
        return status;
    /* The consumers' statistics tell whether synccloud is stopped, so that status need not
     * wait for its answer then. */
    char err[512], filter[2][SYNC_TOPIC_MAX] = {"", ""};
    const char *filters[] = {filter[0], filter[1]};
    ctl_link *l = NULL;
    int rc;
    if (ctx->cfg.tenant && sync_id_valid(ctx->cfg.tenant, strlen(ctx->cfg.tenant))) {
        snprintf(filter[0], sizeof filter[0], "sync/%s/dev/+/state", ctx->cfg.tenant);
        snprintf(filter[1], sizeof filter[1], "sync/%s/cloud/+/stats", ctx->cfg.tenant);
    }
    rc = ctl_link_open(ctx, filters, 2, &l, err, sizeof err);
    if (rc != SYNC_OK)
        return ctl_fail(ctx, rc == SYNC_ERR_INVAL ? 2 : 1, err);
    sync_cbuf req;
    sync_cbuf_init(&req, 0);
    sync_cbor_put_map(&req, 1);
    sync_cbor_put_cstr(&req, "op");
    sync_cbor_put_cstr(&req, "devices");
    rc = req.err ? req.err : ctl_link_request(l, req.data, req.len);
    sync_cbuf_free(&req);
    struct msgs states = {0}, stats = {0};
    struct source src[] = {{"dev", "state", &states}, {"cloud", "stats", &stats}};
    int stopped = 0;
    if (rc == SYNC_OK)
        rc = collect(ctx, l, src, 2, wait_s, 1, &stopped, err, sizeof err);
    else
        snprintf(err, sizeof err, "out of memory");
    msgs_free(&stats);
    if (rc != SYNC_OK) {
        msgs_free(&states);
        ctl_link_free(l);
        return ctl_fail(ctx, 1, err);
    }
    msgs_latest(&states);
    if (states.dropped)
        fprintf(stderr, "syncctl: %zu device states not shown (more than %d, or %d MiB)\n",
                states.dropped, MAX_MESSAGES, MAX_TOTAL >> 20);

    /* synccloud's view; without it, the states alone. */
    size_t alen = 0;
    const uint8_t *a = ctl_link_answer(l, &alen);
    cbor_item_t *root = NULL, *list = NULL;
    if (a)
        root = ctl_answer_decode(ctx, a, alen); /* prints a refusal */
    else if (stopped)
        ctl_fail(ctx, EXIT_PARTIAL,
                 "synccloud is not running: the statistics of every consumer say it stopped");
    else {
        ctl_link_why(l, err, sizeof err);
        ctl_fail(ctx, EXIT_PARTIAL, err);
    }
    if (root) {
        list = ctl_cbor_get(root, "devices");
        if (!list || !cbor_isa_array(list)) {
            ctl_fail(ctx, EXIT_PARTIAL, "synccloud's answer has no device list");
            cbor_decref(&root);
            list = NULL;
        }
    }
    ctl_link_free(l);
    if (!root)
        fprintf(stderr, "syncctl: showing the devices' own states only (columns from synccloud: "
                        "?)\n");

    struct status s = {NULL, 0, root != NULL, ctl_now_ms()};
    size_t nc = list ? cbor_array_size(list) : 0;
    char *ids = malloc((nc + 1) * (SYNC_MAX_ID + 1));
    status = ids && merge(&s, &states, list, ids) == SYNC_OK ? 0 : 1;
    if (status != 0) {
        ctl_fail(ctx, 1, "out of memory");
    } else if (opts[0].value) {
        if (print_json(&s) != 0)
            status = ctl_fail(ctx, 1, "out of memory");
    } else if (s.n == 0) {
        printf("no devices: none has a retained state on sync/%s/dev/+/state%s\n", ctx->cfg.tenant,
               root ? ", and synccloud's store knows none" : "");
    } else {
        print_table(&s);
    }
    if (status == 0 && !root)
        status = EXIT_PARTIAL;
    free(s.v);
    free(ids);
    if (root)
        cbor_decref(&root);
    msgs_free(&states);
    return status;
}

/* ---- stats --------------------------------------------------------------------------- */

/* One consumer's report, read. */
struct consumer {
    const struct msg *m; /* its retained message */
    int ok;              /* readable */
    char why[200];       /* else why not */
    ctl_stats st;
    int stale; /* says online, but its last report is too old */
};

/* Totals over the consumers: counters summed, store-wide values the maximum of the live ones
 * (or of all when none is live). */
struct totals {
    size_t consumers, live;
    uint64_t batches_applied, changes_received, changes_applied, duplicates, conflicts, rejections;
    uint64_t devices_active, devices_known, conflicts_pending;
    double changes_per_s, apply_max;
};

static void add_sat(uint64_t *sum, uint64_t v)
{
    if (v == CTL_NONE)
        return;
    if (*sum == CTL_NONE)
        *sum = 0;
    *sum = v > CTL_NONE - 1 - *sum ? CTL_NONE - 1 : *sum + v;
}

static void take_max(uint64_t *m, uint64_t v)
{
    if (v != CTL_NONE && (*m == CTL_NONE || v > *m))
        *m = v;
}

static void totals_of(const struct consumer *c, size_t n, struct totals *t)
{
    memset(t, 0, sizeof *t);
    t->batches_applied = t->changes_received = t->changes_applied = t->duplicates = CTL_NONE;
    t->conflicts = t->rejections = CTL_NONE;
    t->devices_active = t->devices_known = t->conflicts_pending = CTL_NONE;
    t->apply_max = NAN;
    t->consumers = n;
    for (size_t i = 0; i < n; i++)
        t->live += c[i].ok && c[i].st.online == 1 && !c[i].stale;
    for (size_t i = 0; i < n; i++) {
        if (!c[i].ok)
            continue;
        const ctl_stats *s = &c[i].st;
        int live = s->online == 1 && !c[i].stale;
        add_sat(&t->batches_applied, s->batches_applied);
        add_sat(&t->changes_received, s->changes_received);
        add_sat(&t->changes_applied, s->changes_applied);
        add_sat(&t->duplicates, s->duplicates);
        add_sat(&t->conflicts, s->conflicts);
        add_sat(&t->rejections, s->rejections);
        if (live || t->live == 0) {
            take_max(&t->devices_active, s->devices_active);
            take_max(&t->devices_known, s->devices_known);
            take_max(&t->conflicts_pending, s->conflicts_pending);
        }
        if (live && !isnan(s->changes_per_s))
            t->changes_per_s += s->changes_per_s;
        if (!isnan(s->apply_max) && (isnan(t->apply_max) || s->apply_max > t->apply_max))
            t->apply_max = s->apply_max;
    }
}

struct stats_doc {
    const struct consumer *c;
    size_t n;
    const struct totals *t;
};

static void json_stats(sync_json *j, void *arg)
{
    const struct stats_doc *d = arg;
    sync_json_begin(j);
    sync_json_key(j, "consumers");
    sync_json_raw(j, "[");
    for (size_t i = 0; i < d->n; i++) {
        const struct consumer *c = &d->c[i];
        const ctl_stats *s = &c->st;
        if (i)
            sync_json_raw(j, ",");
        sync_json_begin(j);
        sync_json_key(j, "consumer");
        sync_json_cstr(j, c->m->id);
        if (!c->ok) {
            sync_json_key(j, "error");
            sync_json_cstr(j, c->why);
            sync_json_end(j);
            continue;
        }
        sync_json_key(j, "name");
        sync_json_cstr(j, s->consumer);
        sync_json_key(j, "online");
        if (s->online < 0)
            ctl_write_null(j);
        else
            sync_json_bool(j, s->online);
        sync_json_key(j, "stale");
        sync_json_bool(j, c->stale);
        static const struct {
            const char *key;
            size_t off;
        } u[] = {
            {"ts", offsetof(ctl_stats, ts)},
            {"started", offsetof(ctl_stats, started)},
            {"interval_s", offsetof(ctl_stats, interval_s)},
            {"devices_active", offsetof(ctl_stats, devices_active)},
            {"devices_known", offsetof(ctl_stats, devices_known)},
            {"batches_applied", offsetof(ctl_stats, batches_applied)},
            {"changes_received", offsetof(ctl_stats, changes_received)},
            {"changes_applied", offsetof(ctl_stats, changes_applied)},
            {"duplicates", offsetof(ctl_stats, duplicates)},
            {"conflicts", offsetof(ctl_stats, conflicts)},
            {"conflicts_pending", offsetof(ctl_stats, conflicts_pending)},
            {"rejections", offsetof(ctl_stats, rejections)},
        };
        for (size_t k = 0; k < sizeof u / sizeof u[0]; k++) {
            sync_json_key(j, u[k].key);
            ctl_write_uint_or_null(j, *(const uint64_t *)((const char *)s + u[k].off));
        }
        sync_json_key(j, "changes_per_s");
        ctl_write_real(j, s->changes_per_s);
        sync_json_key(j, "apply_ms");
        sync_json_begin(j);
        sync_json_key(j, "p50");
        ctl_write_real(j, s->apply_p50);
        sync_json_key(j, "p99");
        ctl_write_real(j, s->apply_p99);
        sync_json_key(j, "max");
        ctl_write_real(j, s->apply_max);
        sync_json_end(j);
        sync_json_end(j);
    }
    sync_json_raw(j, "]");
    sync_json_key(j, "total");
    if (d->n == 0) {
        ctl_write_null(j);
    } else {
        const struct totals *t = d->t;
        sync_json_begin(j);
        sync_json_key(j, "consumers");
        sync_json_u64(j, t->consumers);
        sync_json_key(j, "online");
        sync_json_u64(j, t->live);
        sync_json_key(j, "devices_active");
        ctl_write_uint_or_null(j, t->devices_active);
        sync_json_key(j, "devices_known");
        ctl_write_uint_or_null(j, t->devices_known);
        sync_json_key(j, "batches_applied");
        ctl_write_uint_or_null(j, t->batches_applied);
        sync_json_key(j, "changes_received");
        ctl_write_uint_or_null(j, t->changes_received);
        sync_json_key(j, "changes_applied");
        ctl_write_uint_or_null(j, t->changes_applied);
        sync_json_key(j, "duplicates");
        ctl_write_uint_or_null(j, t->duplicates);
        sync_json_key(j, "conflicts");
        ctl_write_uint_or_null(j, t->conflicts);
        sync_json_key(j, "conflicts_pending");
        ctl_write_uint_or_null(j, t->conflicts_pending);
        sync_json_key(j, "rejections");
        ctl_write_uint_or_null(j, t->rejections);
        sync_json_key(j, "changes_per_s");
        ctl_write_real(j, t->changes_per_s);
        sync_json_key(j, "apply_ms_max");
        ctl_write_real(j, t->apply_max);
        sync_json_end(j);
    }
    sync_json_end(j);
}

/* A duration for people: "45s", "12m", "3h", "2d". */
static const char *duration(char *buf, size_t cap, uint64_t from_ms, uint64_t to_ms)
{
    if (from_ms == CTL_NONE || to_ms == CTL_NONE || to_ms < from_ms) {
        snprintf(buf, cap, "-");
        return buf;
    }
    ctl_age(buf, cap, from_ms, to_ms);
    char *sp = strchr(buf, ' ');
    if (sp)
        *sp = '\0'; /* "3h ago" -> "3h" */
    return buf;
}

static const char *ms3(char *buf, size_t cap, double p50, double p99, double max)
{
    char a[16] = "-", b[16] = "-", c[16] = "-";
    if (!isnan(p50))
        snprintf(a, sizeof a, "%.1f", p50);
    if (!isnan(p99))
        snprintf(b, sizeof b, "%.1f", p99);
    if (!isnan(max))
        snprintf(c, sizeof c, "%.1f", max);
    snprintf(buf, cap, "%s/%s/%s", a, b, c);
    return buf;
}

static void stats_row(const char *name, int w, const char *online, const char *up,
                      const char *reported, uint64_t active, uint64_t known, uint64_t batches,
                      uint64_t changes, double per_s, uint64_t conflicts, uint64_t pending,
                      uint64_t rejections, const char *apply)
{
    char b[32], k[32], c[72], r[32];
    ctl_cell(stdout, name, w);
    ctl_cell(stdout, online, 6);
    ctl_cell(stdout, up, 6);
    ctl_cell(stdout, reported, 9);
    snprintf(c, sizeof c, "%s/%s", num(b, sizeof b, active), num(k, sizeof k, known));
    ctl_cell(stdout, c, 9);
    ctl_cell(stdout, num(b, sizeof b, batches), 10);
    ctl_cell(stdout, num(b, sizeof b, changes), 11);
    ctl_cell(stdout, isnan(per_s) ? "-" : ctl_rate(r, sizeof r, per_s), 9);
    ctl_cell(stdout, num(b, sizeof b, conflicts), 9);
    ctl_cell(stdout, num(b, sizeof b, pending), 10);
    ctl_cell(stdout, num(b, sizeof b, rejections), 8);
    ctl_cell(stdout, apply, 0);
}

int ctl_cmd_stats(ctl_ctx *ctx, int argc, char **argv)
{
    ctl_opt opts[] = {{"json", 1, NULL}, {"wait", 0, NULL}};
    int status = ctl_args(ctx, argc, argv, opts, 2, NULL, 0, 0, NULL);
    if (status >= 0)
        return status;
    double wait_s = 5;
    if ((status = wait_opt(&opts[1], &wait_s)) != 0)
        return status;
    char err[512], filter[SYNC_TOPIC_MAX] = "";
    const char *filters[] = {filter};
    if (ctx->cfg.tenant && sync_id_valid(ctx->cfg.tenant, strlen(ctx->cfg.tenant)))
        snprintf(filter, sizeof filter, "sync/%s/cloud/+/stats", ctx->cfg.tenant);
    ctl_link *l = NULL;
    int rc = ctl_link_open(ctx, filters, 1, &l, err, sizeof err);
    if (rc != SYNC_OK)
        return ctl_fail(ctx, rc == SYNC_ERR_INVAL ? 2 : 1, err);
    struct msgs m = {0};
    struct source src = {"cloud", "stats", &m};
    int stopped = 0;
    rc = collect(ctx, l, &src, 1, wait_s, 0, &stopped, err, sizeof err);
    ctl_link_free(l);
    if (rc != SYNC_OK) {
        msgs_free(&m);
        return ctl_fail(ctx, 1, err);
    }
    msgs_latest(&m);
    struct consumer *c = calloc(m.n + 1, sizeof *c);
    if (!c) {
        msgs_free(&m);
        return ctl_fail(ctx, 1, "out of memory");
    }
    uint64_t now = ctl_now_ms();
    for (size_t i = 0; i < m.n; i++) {
        c[i].m = &m.v[i];
        if (!m.v[i].payload)
            snprintf(c[i].why, sizeof c[i].why, "statistics of %zu bytes, more than %d", m.v[i].len,
                     MAX_PAYLOAD);
        else
            c[i].ok = ctl_stats_read(m.v[i].payload, m.v[i].len, &c[i].st, c[i].why,
                                     sizeof c[i].why) == SYNC_OK;
        /* A consumer killed without a clean stop leaves "online": true behind. */
        const ctl_stats *s = &c[i].st;
        uint64_t every = s->interval_s != CTL_NONE && s->interval_s < 86400 ? s->interval_s : 5;
        uint64_t limit_ms = (every * 3 > 15 ? every * 3 : 15) * 1000;
        c[i].stale = c[i].ok && s->online == 1 &&
                     (s->ts == CTL_NONE || (now > s->ts && now - s->ts > limit_ms));
    }
    struct totals t;
    totals_of(c, m.n, &t);
    if (m.n == 0)
        fprintf(stderr,
                "syncctl: no cloud consumer of tenant '%s' has published statistics on "
                "sync/%s/cloud/+/stats: is synccloud running (a version that publishes them), "
                "and may user '%s' read that topic (the broker's ACL)?\n",
                ctx->cfg.tenant, ctx->cfg.tenant, ctx->cfg.admin_user);
    status = m.n == 0 ? 1 : 0;
    if (opts[0].value) {
        struct stats_doc d = {c, m.n, &t};
        if (ctl_emit_json(stdout, json_stats, &d) != 0)
            status = ctl_fail(ctx, 1, "out of memory");
        else
            fputs("\n", stdout);
    } else if (m.n > 0) {
        int w = 8;
        for (size_t i = 0; i < m.n; i++)
            if ((int)strlen(m.v[i].id) > w)
                w = (int)strlen(m.v[i].id) > 48 ? 48 : (int)strlen(m.v[i].id);
        printf("%-*s %-6s %-6s %-9s %-9s %-10s %-11s %-9s %-9s %-10s %-8s %s\n", w, "CONSUMER",
               "ONLINE", "UP", "REPORTED", "DEVICES", "BATCHES", "CHANGES", "CHANGES/S",
               "CONFLICTS", "TO RESOLVE", "REJECTED", "APPLY ms p50/p99/max");
        for (size_t i = 0; i < m.n; i++) {
            const ctl_stats *s = &c[i].st;
            char up[32], rep[32], ms[64];
            if (!c[i].ok) {
                char b[96];
                fprintf(stderr, "syncctl: consumer %s: %s\n",
                        ctl_safe(b, sizeof b, m.v[i].id, strlen(m.v[i].id)), c[i].why);
                stats_row(m.v[i].id, w, "?", "-", "-", CTL_NONE, CTL_NONE, CTL_NONE, CTL_NONE, NAN,
                          CTL_NONE, CTL_NONE, CTL_NONE, "-");
                continue;
            }
            stats_row(m.v[i].id, w,
                      s->online < 0 ? "?"
                      : c[i].stale  ? "stale"
                      : s->online   ? "yes"
                                    : "no",
                      duration(up, sizeof up, s->started, s->ts),
                      s->ts == CTL_NONE ? "-" : ctl_age(rep, sizeof rep, s->ts, now),
                      s->devices_active, s->devices_known, s->batches_applied, s->changes_applied,
                      s->changes_per_s, s->conflicts, s->conflicts_pending, s->rejections,
                      ms3(ms, sizeof ms, s->apply_p50, s->apply_p99, s->apply_max));
        }
        char on[32], ms[64];
        snprintf(on, sizeof on, "%zu/%zu", t.live, t.consumers);
        stats_row("TOTAL", w, on, "", "", t.devices_active, t.devices_known, t.batches_applied,
                  t.changes_applied, t.changes_per_s, t.conflicts, t.conflicts_pending,
                  t.rejections, ms3(ms, sizeof ms, NAN, NAN, t.apply_max));
    }
    free(c);
    msgs_free(&m);
    return status;
}
