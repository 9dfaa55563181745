/* monitor.c - statistics, device events and metrics of a consumer (see monitor.h). */
#include "monitor.h"

#include "access.h"
#include "registry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/json.h"
#include "sync/log.h"
#include "sync/metrics.h"
#include "sync/topic.h"

#define ACTIVE_WINDOW_MS (5 * 60 * 1000) /* a device is active with a batch this recent */
#define SAMPLES_MAX 4096                 /* transaction times kept per interval (reservoir) */
#define DEVICES_MAX 100000               /* devices whose online flag is remembered */

typedef struct dev_flag {
    struct dev_flag *next;
    int online;
    int policy_sent; /* its policy was published by this process */
    char id[]; /* NUL-terminated */
} dev_flag;

struct cloud_monitor {
    const cloud_config *cfg;
    const sync_schema *schema;
    int policies_started; /* the known devices' policies were published */
    cloud_registry *reg;  /* registered devices get their policy at start too (borrowed) */
    cloud_store *st;
    cloud_applier *ap;
    char topic[SYNC_TOPIC_MAX]; /* sync/T/cloud/ID/stats */
    char will[256];
    size_t will_len;
    uint64_t started_ms;
    double next_stats; /* monotonic seconds; 0: publish at the first tick */
    double last_stats;
    uint64_t last_applied; /* applied changes at the last statistics, for the rate */
    /* transaction times of the current interval, ms */
    double samples[SAMPLES_MAX];
    size_t nsamples;
    uint64_t seen; /* transactions of the interval (>= nsamples) */
    uint64_t rng;
    double max_ms;
    /* Prometheus metrics (metrics_file), or NULL */
    sync_metrics *mx;
    double next_metrics;
    cloud_stats mx_last; /* applier counters already added to the metric counters */
    sync_counter *c_batches, *c_received, *c_applied, *c_conflicts, *c_duplicates, *c_rejected;
    sync_gauge *g_devices, *g_active, *g_pending, *g_started, *g_queue;
    sync_histogram *h_tx;
    /* devices' last known online flag */
    dev_flag **buckets;
    size_t nbuckets, ndevices;
};

static void id_for_topic(char *dst, size_t n, const char *id)
{
    size_t i = 0;
    for (; id[i] && i + 1 < n; i++)
        dst[i] = (id[i] == '/' || id[i] == '+' || id[i] == '#') ? '_' : id[i];
    dst[i] = '\0';
}

static int metrics_setup(cloud_monitor *m, char *err, size_t errlen);

int cloud_monitor_new(const cloud_config *c, const sync_schema *schema, cloud_store *st,
                      cloud_applier *ap, cloud_monitor **out, char *err, size_t errlen)
{
    *out = NULL;
    cloud_monitor *m = calloc(1, sizeof *m);
    if (!m)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    m->cfg = c;
    m->schema = schema;
    m->st = st;
    m->ap = ap;
    m->started_ms = sync_wall_ms();
    m->rng = m->started_ms | 1;
    char id[128];
    id_for_topic(id, sizeof id, c->client_id);
    int n = snprintf(m->topic, sizeof m->topic, "sync/%s/cloud/%s/stats", c->tenant, id);
    if (n < 0 || (size_t)n >= sizeof m->topic) {
        free(m);
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "client_id '%s' is too long for a topic",
                           c->client_id);
    }
    sync_json j;
    sync_json_init(&j, m->will, sizeof m->will);
    sync_json_begin(&j);
    sync_json_key(&j, "consumer");
    sync_json_cstr(&j, c->client_id);
    sync_json_key(&j, "online");
    sync_json_bool(&j, 0);
    sync_json_key(&j, "clean");
    sync_json_bool(&j, 0);
    sync_json_key(&j, "started");
    sync_json_u64(&j, m->started_ms);
    sync_json_end(&j);
    if (!sync_json_ok(&j)) {
        free(m);
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "client_id '%s' is too long",
                           c->client_id);
    }
    m->will_len = j.len;
    m->nbuckets = 1024;
    m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
    if (!m->buckets) {
        free(m);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    if (c->metrics_file) {
        char why[512];
        if (metrics_setup(m, why, sizeof why) != SYNC_OK) {
            cloud_monitor_free(m);
            return sync_seterr(err, errlen, SYNC_ERR_INVAL, "metrics_file %s: %s",
                               c->metrics_file, why);
        }
    }
    *out = m;
    return SYNC_OK;
}

/* ---- metrics ---- */

/* One series with the label consumer="CLIENT_ID": two consumers on one host write two files
 * that node_exporter merges, and the label keeps their series apart. */
static int mx_counter(cloud_monitor *m, const char *name, const char *help, sync_counter **out,
                      char *err, size_t errlen)
{
    return sync_metrics_counter_1(m->mx, name, help, "consumer", m->cfg->client_id, out, err,
                                  errlen);
}

static int mx_gauge(cloud_monitor *m, const char *name, const char *help, sync_gauge **out,
                    char *err, size_t errlen)
{
    return sync_metrics_gauge_1(m->mx, name, help, "consumer", m->cfg->client_id, out, err,
                                errlen);
}

static int metrics_setup(cloud_monitor *m, char *err, size_t errlen)
{
    static const double tx_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                       0.05,   0.1,   0.2,   0.5,   1,    2, 5};
    int rc = sync_metrics_new("synccloud", &m->mx, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_counter(m, "batches_total", "Change batches processed (refused ones included)",
                        &m->c_batches, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_counter(m, "changes_received_total", "Change records received in accepted batches",
                        &m->c_received, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_counter(m, "changes_applied_total", "Changes applied to the store", &m->c_applied,
                        err, errlen);
    if (rc == SYNC_OK)
        rc = mx_counter(m, "conflicts_total", "Changes that met a newer stored version",
                        &m->c_conflicts, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_counter(m, "duplicates_total", "Records received again and acknowledged unapplied",
                        &m->c_duplicates, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_counter(m, "batches_rejected_total", "Batches refused whole", &m->c_rejected, err,
                        errlen);
    if (rc == SYNC_OK)
        rc = mx_gauge(m, "devices_known", "Devices that ever sent a batch (store-wide)",
                      &m->g_devices, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_gauge(m, "devices_active", "Devices with a batch in the last 5 minutes "
                      "(store-wide)", &m->g_active, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_gauge(m, "conflicts_pending", "Conflicts waiting for a person (store-wide)",
                      &m->g_pending, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_gauge(m, "publish_queue_messages", "Messages committed and not yet published",
                      &m->g_queue, err, errlen);
    if (rc == SYNC_OK)
        rc = mx_gauge(m, "start_time_seconds", "When the process started (Unix time)",
                      &m->g_started, err, errlen);
    if (rc == SYNC_OK)
        rc = sync_metrics_histogram_1(m->mx, "transaction_seconds",
                                      "Time from a write transaction's start to its commit",
                                      "consumer", m->cfg->client_id, tx_bounds,
                                      sizeof tx_bounds / sizeof *tx_bounds, &m->h_tx, err, errlen);
    if (rc == SYNC_OK) {
        sync_metrics_gauge_set(m->g_started, (double)m->started_ms / 1000.0);
        /* Fail at start, not silently later, when the file cannot be written. */
        rc = sync_metrics_write(m->mx, m->cfg->metrics_file, err, errlen);
    }
    return rc;
}

static void metrics_write(cloud_monitor *m, size_t queued)
{
    cloud_stats s;
    cloud_applier_stats(m->ap, &s);
    sync_metrics_counter_add(m->c_batches, s.batches - m->mx_last.batches);
    sync_metrics_counter_add(m->c_received, s.records - m->mx_last.records);
    sync_metrics_counter_add(m->c_applied, s.applied - m->mx_last.applied);
    sync_metrics_counter_add(m->c_conflicts, s.conflicts - m->mx_last.conflicts);
    sync_metrics_counter_add(m->c_duplicates, s.duplicates - m->mx_last.duplicates);
    sync_metrics_counter_add(m->c_rejected, s.rejected - m->mx_last.rejected);
    m->mx_last = s;
    cloud_counts cnt;
    if (cloud_store_counts(m->st, (int64_t)sync_wall_ms() - ACTIVE_WINDOW_MS, &cnt) == SYNC_OK) {
        sync_metrics_gauge_set(m->g_devices, (double)cnt.devices);
        sync_metrics_gauge_set(m->g_active, (double)cnt.active);
        sync_metrics_gauge_set(m->g_pending, (double)cnt.conflicts_pending);
    }
    sync_metrics_gauge_set(m->g_queue, (double)queued);
    char err[512];
    if (sync_metrics_write(m->mx, m->cfg->metrics_file, err, sizeof err) != SYNC_OK)
        sync_warn("metrics: %s", err);
}

void cloud_monitor_free(cloud_monitor *m)
{
    if (!m)
        return;
    sync_metrics_free(m->mx);
    for (size_t i = 0; i < m->nbuckets; i++)
        for (dev_flag *d = m->buckets[i], *n; d; d = n) {
            n = d->next;
            free(d);
        }
    free(m->buckets);
    free(m);
}

const char *cloud_monitor_topic(const cloud_monitor *m)
{
    return m->topic;
}

const char *cloud_monitor_will(const cloud_monitor *m, size_t *len)
{
    *len = m->will_len;
    return m->will;
}

void cloud_monitor_tx(cloud_monitor *m, double seconds, unsigned long batches)
{
    if (batches == 0)
        return;
    sync_metrics_histogram_observe(m->h_tx, seconds);
    double ms = seconds * 1000.0;
    if (ms > m->max_ms)
        m->max_ms = ms;
    m->seen++;
    if (m->nsamples < SAMPLES_MAX) {
        m->samples[m->nsamples++] = ms;
        return;
    }
    /* Reservoir sampling: every transaction of the interval is equally likely to be kept. */
    m->rng = m->rng * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t k = (m->rng >> 11) % m->seen;
    if (k < SAMPLES_MAX)
        m->samples[k] = ms;
}

/* ---- device events ---- */

/* The boolean value of the top-level-looking key `key` in a JSON text: 1, 0, or -1 when absent
 * or not a boolean. A small scan, not a parser: the state messages are flat objects written by
 * syncedge; anything else yields -1 and no event. */
static int json_bool(const uint8_t *p, size_t n, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 < n; i++) {
        if (p[i] != '"' || memcmp(p + i + 1, key, kl) != 0 || p[i + 1 + kl] != '"')
            continue;
        size_t j = i + kl + 2;
        while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\n' || p[j] == '\r'))
            j++;
        if (j >= n || p[j] != ':')
            continue;
        j++;
        while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\n' || p[j] == '\r'))
            j++;
        if (n - j >= 4 && memcmp(p + j, "true", 4) == 0)
            return 1;
        if (n - j >= 5 && memcmp(p + j, "false", 5) == 0)
            return 0;
    }
    return -1;
}

static size_t hash_id(const char *s)
{
    size_t h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

/* The entry of device, created (offline, no policy sent) when missing; NULL when the table is
 * full or memory is short. */
static dev_flag *find_dev(cloud_monitor *m, const char *device, int *created)
{
    dev_flag **b = &m->buckets[hash_id(device) % m->nbuckets];
    *created = 0;
    for (dev_flag *d = *b; d; d = d->next)
        if (strcmp(d->id, device) == 0)
            return d;
    if (m->ndevices >= DEVICES_MAX)
        return NULL;
    size_t n = strlen(device) + 1;
    dev_flag *d = malloc(sizeof *d + n);
    if (!d)
        return NULL;
    memcpy(d->id, device, n);
    d->online = -1;
    d->policy_sent = 0;
    d->next = *b;
    *b = d;
    m->ndevices++;
    *created = 1;
    return d;
}

/* Publishes device's policy (retained) once per process. */
static void send_policy(cloud_monitor *m, const char *device, cloud_outq *q)
{
    int created;
    dev_flag *d = find_dev(m, device, &created);
    if (d && d->policy_sent)
        return;
    char buf[16384], topic[SYNC_TOPIC_MAX];
    sync_json j;
    sync_json_init(&j, buf, sizeof buf);
    cloud_access_policy(m->cfg, m->schema, device, &j);
    if (!sync_json_ok(&j) || sync_topic_dev(topic, sizeof topic, m->cfg->tenant, device,
                                            "policy") != SYNC_OK) {
        sync_error("the policy of device %s does not fit in a message", device);
        return;
    }
    if (cloud_outq_add(q, topic, j.buf, j.len, NULL, 0, 1, 1) == SYNC_OK && d)
        d->policy_sent = 1;
}

static int policy_of_known(void *ctx, const cloud_device_rec *d)
{
    void **args = ctx;
    send_policy(args[0], d->device, args[1]);
    return 0;
}

static void policy_of_registered(void *ctx, const char *device)
{
    void **args = ctx;
    send_policy(args[0], device, args[1]);
}

void cloud_monitor_set_registry(cloud_monitor *m, cloud_registry *r)
{
    m->reg = r;
}

void cloud_monitor_policies(cloud_monitor *m, cloud_outq *q)
{
    if (m->policies_started)
        return;
    m->policies_started = 1;
    void *args[] = {m, q};
    if (cloud_store_devices(m->st, policy_of_known, args) != SYNC_OK)
        sync_warn("policies: reading the devices failed: %s", cloud_store_errmsg(m->st));
    for (int i = 0; i < m->cfg->ngrants; i++) {
        const char *who = m->cfg->grants[i].who;
        if (strcmp(who, "*") != 0 && strncmp(who, "role:", 5) != 0)
            send_policy(m, who, q);
    }
    for (int i = 0; i < m->cfg->nroles; i++)
        send_policy(m, m->cfg->roles[i].device, q);
    if (m->reg && cloud_registry_each_active(m->reg, m->cfg->tenant, policy_of_registered, args) !=
                      SYNC_OK)
        sync_warn("policies: reading the device registry failed");
}

/* Records device's flag; returns the previous one (-1: unknown). */
static int swap_flag(cloud_monitor *m, const char *device, int online)
{
    int created;
    dev_flag *d = find_dev(m, device, &created);
    if (!d)
        return -1;
    int was = d->online;
    d->online = online;
    return was;
}

void cloud_monitor_on_state(cloud_monitor *m, const sync_mqtt_msg *msg, cloud_outq *q)
{
    char tenant[SYNC_MAX_ID + 1], device[SYNC_MAX_ID + 1];
    const char *leaf;
    if (sync_topic_parse_dev(msg->topic, tenant, device, &leaf) != SYNC_OK ||
        strcmp(leaf, "state") != 0 || strcmp(tenant, m->cfg->tenant) != 0)
        return;
    /* Every device that shows up gets its policy (once per process; retained). */
    send_policy(m, device, q);
    int online = json_bool(msg->payload, msg->len, "online");
    if (online < 0)
        return;
    int was = swap_flag(m, device, online);
    /* A retained state tells how a device was before we came; only a live one is news. */
    if (msg->retained || was == online || m->cfg->events < 1)
        return;
    int clean = online ? -1 : json_bool(msg->payload, msg->len, "clean");
    char buf[512], topic[SYNC_TOPIC_MAX];
    sync_json j;
    sync_json_init(&j, buf, sizeof buf);
    sync_json_begin(&j);
    sync_json_key(&j, "event");
    sync_json_cstr(&j, online ? "online" : "offline");
    sync_json_key(&j, "ts");
    sync_json_u64(&j, sync_wall_ms());
    sync_json_key(&j, "device");
    sync_json_cstr(&j, device);
    if (!online) {
        sync_json_key(&j, "clean");
        sync_json_bool(&j, clean == 1);
    }
    sync_json_end(&j);
    if (sync_json_ok(&j) && sync_topic_event(topic, sizeof topic, m->cfg->tenant, "device") ==
                                SYNC_OK)
        cloud_outq_add(q, topic, j.buf, j.len, NULL, 0, 0, 0);
    sync_info("device %s is %s", device,
              online ? "online" : clean == 1
                                      ? "offline (clean stop)"
                                      : "offline (connection lost)");
}

/* ---- statistics ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void put_num(sync_json *j, const char *key, double v)
{
    char num[48];
    snprintf(num, sizeof num, "%.3f", isfinite(v) ? v : 0.0);
    sync_json_key(j, key);
    sync_json_raw(j, num);
}

static void publish_stats(cloud_monitor *m, double now, int online, cloud_outq *q)
{
    cloud_stats s;
    cloud_applier_stats(m->ap, &s);
    cloud_counts cnt;
    uint64_t wall = sync_wall_ms();
    int have_counts =
        cloud_store_counts(m->st, (int64_t)wall - ACTIVE_WINDOW_MS, &cnt) == SYNC_OK;
    if (!have_counts)
        sync_warn("statistics: reading the store's counts failed: %s",
                  cloud_store_errmsg(m->st));
    double secs = m->last_stats > 0 ? now - m->last_stats : 0;
    double rate = secs > 0 ? (double)(s.applied - m->last_applied) / secs : 0;
    qsort(m->samples, m->nsamples, sizeof *m->samples, cmp_double);
    /* Nearest rank: the smallest sample with at least q of them at or below it. */
    double p50 = m->nsamples ? m->samples[(m->nsamples + 1) / 2 - 1] : 0;
    double p99 = m->nsamples ? m->samples[(size_t)ceil((double)m->nsamples * 0.99) - 1] : 0;

    char buf[1024];
    sync_json j;
    sync_json_init(&j, buf, sizeof buf);
    sync_json_begin(&j);
    sync_json_key(&j, "consumer");
    sync_json_cstr(&j, m->cfg->client_id);
    sync_json_key(&j, "online");
    sync_json_bool(&j, online);
    if (!online) {
        sync_json_key(&j, "clean");
        sync_json_bool(&j, 1);
    }
    sync_json_key(&j, "ts");
    sync_json_u64(&j, wall);
    sync_json_key(&j, "started");
    sync_json_u64(&j, m->started_ms);
    sync_json_key(&j, "interval_s");
    sync_json_u64(&j, (uint64_t)m->cfg->stats_interval);
    if (have_counts) {
        sync_json_key(&j, "devices_known");
        sync_json_u64(&j, cnt.devices);
        sync_json_key(&j, "devices_active");
        sync_json_u64(&j, cnt.active);
        sync_json_key(&j, "conflicts_pending");
        sync_json_u64(&j, cnt.conflicts_pending);
    }
    sync_json_key(&j, "batches_applied");
    sync_json_u64(&j, s.batches - s.rejected);
    sync_json_key(&j, "changes_received");
    sync_json_u64(&j, s.records);
    sync_json_key(&j, "changes_applied");
    sync_json_u64(&j, s.applied);
    sync_json_key(&j, "duplicates");
    sync_json_u64(&j, s.duplicates);
    sync_json_key(&j, "conflicts");
    sync_json_u64(&j, s.conflicts);
    sync_json_key(&j, "rejections");
    sync_json_u64(&j, s.rejected);
    put_num(&j, "changes_per_s", rate);
    sync_json_key(&j, "apply_ms");
    sync_json_begin(&j);
    put_num(&j, "p50", p50);
    put_num(&j, "p99", p99);
    put_num(&j, "max", m->max_ms);
    sync_json_key(&j, "transactions");
    sync_json_u64(&j, m->seen);
    sync_json_end(&j);
    sync_json_end(&j);
    if (sync_json_ok(&j))
        cloud_outq_add(q, m->topic, j.buf, j.len, NULL, 0, 1, 1);
    m->last_stats = now;
    m->last_applied = s.applied;
    m->nsamples = 0;
    m->seen = 0;
    m->max_ms = 0;
}

void cloud_monitor_tick(cloud_monitor *m, double now, cloud_outq *q)
{
    if (m->mx && now >= m->next_metrics) {
        metrics_write(m, q->n);
        m->next_metrics = now + (double)m->cfg->metrics_interval;
    }
    if (m->cfg->stats_interval > 0 && now >= m->next_stats) {
        publish_stats(m, now, 1, q);
        m->next_stats = now + (double)m->cfg->stats_interval;
    }
}

void cloud_monitor_stop(cloud_monitor *m, cloud_outq *q)
{
    if (m->mx)
        metrics_write(m, q->n);
    if (m->cfg->stats_interval > 0)
        publish_stats(m, m->last_stats, 0, q);
}
