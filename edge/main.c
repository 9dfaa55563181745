/* main.c - syncedge: configuration, the event loop, and shutdown.
 *
 * One thread owns the database: it takes MQTT messages from the queue that sync_mqtt fills on
 * Paho's threads, applies acks and deltas in one transaction per wake-up, and publishes the
 * next batch when none is in flight.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckpt.h"
#include "config.h"
#include "edgedb.h"
#include "metrics.h"
#include "outbox.h"
#include "policy.h"
#include "pull.h"
#include "replica.h"
#include "watch.h"
#include "sync/checksum.h"
#include "sync/conf.h"
#include "sync/daemon.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/json.h"
#include "sync/log.h"
#include "sync/mqtt.h"
#include "sync/topic.h"

#define EDGE_VERSION "0.1.0"
#define STATE_INTERVAL_S 2.0 /* least time between two state messages */
#define BACKLOG_MIN 5000     /* waiting changes that count as a backlog worth reporting */
#define BACKLOG_LOG_S 2.0    /* seconds between two progress lines */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int print_checksums(const edge_config *c, const sync_schema *s)
{
    edge_db db;
    char err[512];
    if (edge_db_open_ro(&db, c, s, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "syncedge: %s\n", err);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < db.ntables; i++) {
        char hex[65];
        long long rows;
        if (sync_checksum_table(db.db, db.tables[i], NULL, hex, &rows, err, sizeof err) !=
            SYNC_OK) {
            fprintf(stderr, "syncedge: %s\n", err);
            rc = 1;
            break;
        }
        printf("%s %lld %s\n", db.tables[i]->name, rows, hex);
    }
    edge_db_close(&db);
    return rc;
}

typedef struct edge {
    edge_config *cfg;
    edge_db db;
    edge_replica *rep;
    edge_outbox *out;
    edge_pull *pull; /* NULL when not a replica */
    sync_mqtt *mqtt;
    char up_topic[SYNC_TOPIC_MAX], ack_topic[SYNC_TOPIC_MAX], state_topic[SYNC_TOPIC_MAX];
    char resp_topic[SYNC_TOPIC_MAX], head_topic[SYNC_TOPIC_MAX];
    double sent_at;         /* when the batch in flight was (last) published; 0 = not yet */
    int resends;            /* of the batch in flight */
    int need_check;         /* look at the outbox even if no other connection committed */
    unsigned long connects; /* sync_mqtt_connects() last seen */
    uint64_t state_sig;     /* state_sig() of the last state message */
    double state_at;
    uint64_t last_sync_ms;  /* wall clock of the last ack (0: none since start) */
    edge_metrics *metrics;  /* NULL without metrics_file */
    /* progress of sending a large backlog (after a long time offline, or a first attach) */
    double backlog_started, backlog_logged, backlog_checked;
    unsigned long backlog_acked0; /* records acked before it started */
    long long backlog_total;
    char cmd_topic[SYNC_TOPIC_MAX], policy_topic[SYNC_TOPIC_MAX];
    edge_watch *watch;   /* NULL when inotify is not available */
    char password[256];  /* read at start for mqtt_open, then wiped */
    char will[160];
    /* The topics of the partition streams the client subscribes to (delta/T/P and head/T/P),
     * sorted; follow_partitions() keeps them in step with the policy. */
    char **part_subs;
    int npart_subs;
    unsigned long policy_gen; /* e->db.policy_gen when part_subs was made */
} edge;

/* Appends "cursor":{...},"lag":{...} and, while a catch-up runs, "pull":{...}: per stream, so
 * a table received by partitions shows as "sales/12", "sales/13"... */
static void state_replica(edge *e, sync_json *j)
{
    const char *name;
    uint64_t c, h;
    sync_json_key(j, "cursor");
    sync_json_begin(j);
    for (int i = 0; i < edge_pull_nstreams(e->pull); i++)
        if (edge_pull_stream_at(e->pull, i, &name, &c, &h)) {
            sync_json_key(j, name);
            sync_json_u64(j, c);
        }
    sync_json_end(j);
    sync_json_key(j, "lag");
    sync_json_begin(j);
    for (int i = 0; i < edge_pull_nstreams(e->pull); i++)
        if (edge_pull_stream_at(e->pull, i, &name, &c, &h)) {
            sync_json_key(j, name);
            sync_json_u64(j, h > c ? h - c : 0);
        }
    sync_json_end(j);
    const char *t;
    uint64_t done, total;
    double rate;
    if (edge_pull_progress(e->pull, &t, &done, &total, &rate)) {
        char num[32];
        sync_json_key(j, "pull");
        sync_json_begin(j);
        sync_json_key(j, "table");
        sync_json_cstr(j, t);
        sync_json_key(j, "done");
        sync_json_u64(j, done);
        sync_json_key(j, "total");
        sync_json_u64(j, total);
        snprintf(num, sizeof num, "%.1f", rate);
        sync_json_key(j, "rows_per_s");
        sync_json_raw(j, num);
        sync_json_end(j);
    }
}

/* A fingerprint of what the state message tells, to publish it only when something moved. */
static uint64_t state_sig(edge *e, long long pending)
{
    uint64_t h = (uint64_t)pending * 1000003u ^ e->last_sync_ms;
    for (int i = 0; e->pull && i < edge_pull_nstreams(e->pull); i++) {
        const char *name;
        uint64_t c, hd;
        if (!edge_pull_stream_at(e->pull, i, &name, &c, &hd))
            continue;
        for (const char *k = name; *k; k++) /* streams come and go with the policy */
            h = h * 131 + (unsigned char)*k;
        h = h * 31 + c * 7 + hd;
    }
    const char *t;
    uint64_t done = 0, total = 0;
    double rate;
    if (e->pull && edge_pull_progress(e->pull, &t, &done, &total, &rate))
        h = h * 31 + done + 1;
    if (e->pull) /* a finished rebuild is news even when the cursors end where they were */
        h = h * 31 + edge_pull_rebuilds(e->pull);
    return h;
}

/* Begins a state message with what every form of it has. */
static void state_head(edge *e, sync_json *j, char *buf, size_t n, int online, long long pending)
{
    sync_json_init(j, buf, n);
    sync_json_begin(j);
    sync_json_key(j, "device");
    sync_json_cstr(j, e->cfg->device);
    sync_json_key(j, "online");
    sync_json_bool(j, online);
    if (!online) {
        sync_json_key(j, "clean");
        sync_json_bool(j, 1);
    }
    sync_json_key(j, "pending");
    sync_json_i64(j, pending);
    sync_json_key(j, "ts");
    sync_json_u64(j, sync_wall_ms());
}

static void publish_state(edge *e, int online)
{
    long long pending = edge_db_outbox_count(&e->db);
    char buf[16384];
    sync_json j;
    state_head(e, &j, buf, sizeof buf, online, pending);
    sync_json_key(&j, "version");
    sync_json_cstr(&j, EDGE_VERSION);
    sync_json_key(&j, "last_sync");
    sync_json_u64(&j, e->last_sync_ms);
    if (e->pull) {
        sync_json_key(&j, "rebuilds");
        sync_json_u64(&j, edge_pull_rebuilds(e->pull));
        state_replica(e, &j);
    }
    sync_json_end(&j);
    if (!sync_json_ok(&j)) { /* too many tables for the buffer: the short form */
        state_head(e, &j, buf, sizeof buf, online, pending);
        sync_json_end(&j);
    }
    if (sync_mqtt_publish(e->mqtt, e->state_topic, j.buf, j.len, 1, 1) == SYNC_OK) {
        e->state_sig = state_sig(e, pending);
        e->state_at = now_s();
    }
}

/* Progress of a backlog of BACKLOG_MIN or more changes: a line every BACKLOG_LOG_S with what
 * was sent, the rate and the time left, and one when it is all acknowledged. */
static void backlog_progress(edge *e)
{
    double now = now_s();
    /* Counting the outbox is not free: look twice a second at most. */
    if (now - e->backlog_checked < 0.5)
        return;
    e->backlog_checked = now;
    long long pending = edge_db_outbox_count(&e->db);
    edge_outbox_stats st;
    edge_outbox_stats_get(e->out, &st);
    if (e->backlog_started == 0) {
        if (pending < BACKLOG_MIN)
            return;
        e->backlog_started = e->backlog_logged = now;
        e->backlog_acked0 = st.records_acked;
        e->backlog_total = pending;
        sync_notice("sending a backlog of %lld changes", pending);
        return;
    }
    long long done = (long long)(st.records_acked - e->backlog_acked0);
    if (pending + done > e->backlog_total)
        e->backlog_total = pending + done; /* more were written meanwhile */
    double secs = now - e->backlog_started;
    double rate = secs > 0 ? (double)done / secs : 0;
    if (pending == 0) {
        sync_notice("backlog sent: %lld changes in %.1f s (%.0f changes/s)", done, secs, rate);
        e->backlog_started = 0;
    } else if (now - e->backlog_logged >= BACKLOG_LOG_S) {
        e->backlog_logged = now;
        if (rate > 0)
            sync_notice("sending the backlog: %lld/%lld changes (%.0f changes/s, about %.0f s "
                        "left)",
                        done, e->backlog_total, rate, (double)pending / rate);
        else
            sync_notice("sending the backlog: %lld/%lld changes%s", done, e->backlog_total,
                        sync_mqtt_connected(e->mqtt) ? " (no ack from the cloud yet)"
                                                       : " (waiting for the broker)");
    }
}

static void write_metrics(edge *e, int force)
{
    /* Checked first: the snapshot counts the outbox, which the loop must not do every turn. */
    if (!e->metrics || (!force && !edge_metrics_due(e->metrics, now_s())))
        return;
    edge_outbox_stats st;
    edge_outbox_stats_get(e->out, &st);
    uint64_t cursor[EDGE_MAX_TABLES], lag[EDGE_MAX_TABLES];
    for (int i = 0; e->pull && i < e->db.ntables; i++) {
        cursor[i] = edge_pull_cursor(e->pull, e->db.tables[i]);
        lag[i] = edge_pull_lag(e->pull, e->db.tables[i]);
    }
    edge_metrics_snapshot s = {
        .batches_sent = st.batches_sent,
        .changes_acked = st.records_acked,
        .changes_lost = st.lost,
        .changes_rejected = st.rejected,
        .changes_dead = st.dead,
        .downstream_applied = edge_replica_applied(e->rep),
        .pending = edge_db_outbox_count(&e->db),
        .last_sync_ms = e->last_sync_ms,
        .connected = sync_mqtt_connected(e->mqtt),
        .cursor = e->pull ? cursor : NULL,
        .lag = e->pull ? lag : NULL,
    };
    edge_metrics_tick(e->metrics, now_s(), &s, force);
}

/* A command from the cloud (syncctl through synccloud) on the device's cmd topic. */
static int handle_command(edge *e, const sync_mqtt_msg *m)
{
    static const char resync[] = "\"op\":\"resync\"";
    const size_t rn = sizeof resync - 1;
    int is_resync = 0;
    for (size_t i = 0; !is_resync && i + rn <= m->len; i++)
        is_resync = memcmp(m->payload + i, resync, rn) == 0;
    if (!is_resync) {
        sync_warn("ignoring an unknown command on %s (%zu bytes)", m->topic, m->len);
        return SYNC_OK;
    }
    if (!e->pull) {
        sync_notice("resync asked for, but this device is not a replica (replica false)");
        return SYNC_OK;
    }
    if (edge_pull_resync_all(e->pull, "an administrator asked for a resync") != SYNC_OK) {
        sync_error("starting the resync: %s", sqlite3_errmsg(e->db.db));
        return SYNC_ERR_DB;
    }
    return SYNC_OK;
}

/* Applies everything that arrived, in one transaction. */
static void handle_messages(edge *e, sync_mqtt_msg *list)
{
    if (!list)
        return;
    if (edge_db_begin(&e->db, 1) != SYNC_OK) {
        sync_error("cannot begin a transaction: %s; messages will be handled again when the "
                   "broker redelivers them",
                   sqlite3_errmsg(e->db.db));
    } else {
        int ok = 1, settled = 0, cloud_seen = 0;
        for (sync_mqtt_msg *m = list; m && ok; m = m->next) {
            char err[512];
            if (strcmp(m->topic, e->ack_topic) == 0) {
                int done = 0;
                int rc = edge_outbox_on_ack(e->out, m->payload, m->len, &done, err, sizeof err);
                if (rc == SYNC_ERR_DB) {
                    sync_error("%s", err);
                    ok = 0;
                } else if (rc != SYNC_OK) {
                    sync_warn("ignoring a malformed ack: %s", err);
                }
                if (done && e->sent_at > 0)
                    edge_metrics_ack(e->metrics, now_s() - e->sent_at);
                settled |= done;
                e->last_sync_ms = sync_wall_ms();
                continue;
            }
            if (strcmp(m->topic, e->policy_topic) == 0) {
                /* A live (not retained) policy: a consumer just started or saw us. A batch sent
                 * while none was subscribed was dropped by the broker: send it again now
                 * rather than after ack_timeout. */
                if (!m->retained)
                    cloud_seen = 1;
                int rc = edge_policy_on_message(&e->db, e->pull, m->payload, m->len, err,
                                                sizeof err);
                if (rc == SYNC_ERR_DB) {
                    sync_error("%s", err);
                    ok = 0;
                } else if (rc != SYNC_OK) {
                    sync_error("ignoring the cloud's policy on %s (the previous one stays): %s",
                               m->topic, err);
                }
                continue;
            }
            if (strcmp(m->topic, e->cmd_topic) == 0) {
                if (handle_command(e, m) != SYNC_OK)
                    ok = 0;
                continue;
            }
            if (e->pull && strcmp(m->topic, e->resp_topic) == 0) {
                int rc = edge_pull_on_page(e->pull, m, err, sizeof err);
                if (rc == SYNC_ERR_DB) {
                    sync_error("%s", err);
                    ok = 0;
                } else if (rc != SYNC_OK) {
                    sync_warn("ignoring a malformed catch-up page: %s", err);
                }
                continue;
            }
            if (e->pull && strcmp(m->topic, e->head_topic) == 0) {
                if (edge_pull_on_head(e->pull, m->payload, m->len, err, sizeof err) != SYNC_OK)
                    sync_warn("ignoring a malformed head message: %s", err);
                continue;
            }
            const char *rest = sync_topic_after_tenant(m->topic, e->cfg->tenant);
            if (e->pull && rest && strncmp(rest, "head/", 5) == 0) { /* a partition's head */
                if (edge_pull_on_part_head(e->pull, rest + 5, m->payload, m->len, err,
                                           sizeof err) != SYNC_OK)
                    sync_warn("ignoring a malformed head message on %s: %s", m->topic, err);
                continue;
            }
            if (rest && strncmp(rest, "delta/", 6) == 0) {
                /* The stream is the topic's: delta/{table} or delta/{table}/{part}. */
                int rc = edge_replica_apply_stream(e->rep, rest + 6, m->payload, m->len, err,
                                                   sizeof err);
                if (rc == SYNC_ERR_DB) {
                    sync_error("%s", err);
                    ok = 0;
                } else if (rc != SYNC_OK) {
                    sync_warn("ignoring a malformed delta on %s: %s", m->topic, err);
                }
                continue;
            }
            sync_debug("ignoring a message on %s", m->topic);
        }
        if (ok && edge_db_commit(&e->db) == SYNC_OK) {
            if (cloud_seen && !settled && e->sent_at > 0) {
                sync_info("the cloud is back: sending the batch in flight again");
                e->sent_at = 0;
            }
            if (settled) {
                e->sent_at = 0;
                e->resends = 0;
                e->need_check = 1;
            }
        } else {
            edge_db_rollback(&e->db);
            /* The rows of an acked batch are still in the outbox: forget the batch and rebuild
             * it; the cloud recognises the sequence numbers and acks them as duplicates. */
            if (settled)
                e->need_check = 1;
            /* A policy taken in memory, and cursors moved with rows, that are not stored after
             * all. */
            char why[512];
            if (edge_db_load_policy(&e->db, why, sizeof why) != SYNC_OK)
                sync_error("%s", why);
            if (e->pull && edge_pull_reload(e->pull) != SYNC_OK)
                sync_error("reading the replica's cursors again: %s", sqlite3_errmsg(e->db.db));
        }
    }
    while (list) {
        sync_mqtt_msg *n = list->next;
        sync_mqtt_msg_free(list);
        list = n;
    }
}

static void send_batch(edge *e, const uint8_t *p, size_t n, int resend)
{
    int rc = sync_mqtt_publish(e->mqtt, e->up_topic, p, n, 1, 0);
    if (rc == SYNC_OK) {
        e->sent_at = now_s();
        if (resend)
            e->resends++;
    } else {
        e->sent_at = 0; /* send when connected again */
    }
}

static void pump(edge *e)
{
    if (!sync_mqtt_connected(e->mqtt))
        return;
    unsigned long c = sync_mqtt_connects(e->mqtt);
    const uint8_t *p;
    size_t n, nrec;
    uint64_t base;
    int inflight = edge_outbox_inflight(e->out, &p, &n, &base, &nrec);
    if (c != e->connects) {
        e->connects = c;
        publish_state(e, 1);
        /* No session at the broker: whatever it would have queued for us is gone. */
        if (e->pull && !sync_mqtt_session_present(e->mqtt))
            edge_pull_all(e->pull, "the broker had no session for this device");
        /* The ack of a batch sent on the old connection may never come: send it again now. */
        if (inflight) {
            sync_info("resending batch %llu (%zu changes) after reconnecting",
                      (unsigned long long)base, nrec);
            send_batch(e, p, n, 1);
        }
    }
    if (e->pull)
        edge_pull_drive(e->pull, e->mqtt);
    if (inflight) {
        double age = now_s() - e->sent_at;
        if (e->sent_at == 0 || age > (double)e->cfg->ack_timeout) {
            if (e->sent_at != 0)
                sync_warn("no ack for batch %llu (%zu changes) after %.0f s; sending it again",
                          (unsigned long long)base, nrec, age);
            send_batch(e, p, n, 1);
        }
        return;
    }
    if (!e->need_check && !edge_db_changed(&e->db))
        return;
    int rc = edge_outbox_prepare(e->out, &p, &n);
    if (rc == 1) {
        edge_outbox_inflight(e->out, &p, &n, &base, &nrec);
        sync_debug("publishing batch %llu: %zu changes, %zu bytes", (unsigned long long)base, nrec,
                   n);
        e->resends = 0;
        send_batch(e, p, n, 0);
    } else {
        e->need_check = 0;
    }
}

/* Makes the MQTT client (not started) with every subscription: the device's own topics and, as
 * a replica, the whole-table deltas, the head, the answers to its pulls, and the topics of the
 * partition streams in e->part_subs. */
static int mqtt_open(edge *e, char *err, size_t errlen)
{
    const edge_config *c = e->cfg;
    sync_mqtt_opts mo;
    sync_mqtt_opts_default(&mo);
    mo.uri = c->broker;
    mo.client_id = c->client_id;
    mo.username = c->username;
    mo.password = e->password[0] ? e->password : NULL;
    mo.cafile = c->cafile;
    mo.certfile = c->certfile;
    mo.keyfile = c->keyfile;
    mo.tls_insecure = c->tls_insecure;
    /* A persistent session: the broker queues our acks and deltas while we are away. */
    mo.clean_start = 0;
    mo.session_expiry = (uint32_t)c->session_expiry;
    mo.keepalive = (int)c->keepalive;
    mo.retry_min = (int)c->retry_min;
    mo.retry_max = (int)c->retry_max;
    mo.will_topic = e->state_topic;
    mo.will_payload = e->will;
    mo.will_len = strlen(e->will);
    mo.will_retain = 1;
    int rc = sync_mqtt_new(&mo, &e->mqtt, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    sync_mqtt_subscribe(e->mqtt, e->ack_topic, 1);
    sync_mqtt_subscribe(e->mqtt, e->cmd_topic, 1);
    sync_mqtt_subscribe(e->mqtt, e->policy_topic, 1);
    if (e->pull)
        edge_pull_set_mqtt(e->pull, e->mqtt);
    if (c->replica) {
        char delta[SYNC_TOPIC_MAX];
        snprintf(delta, sizeof delta, "sync/%s/delta/+", c->tenant);
        sync_mqtt_subscribe(e->mqtt, delta, 1);
        sync_mqtt_subscribe(e->mqtt, e->resp_topic, 1);
        sync_mqtt_subscribe(e->mqtt, e->head_topic, 1);
        for (int i = 0; i < e->npart_subs; i++)
            sync_mqtt_subscribe(e->mqtt, e->part_subs[i], 1);
    }
    return SYNC_OK;
}

static void free_list(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The topics of the partition streams the policy has this replica receive: delta/{table}/{part}
 * and head/{table}/{part} of each, sorted. */
static int part_topics(edge *e, char ***out, int *nout)
{
    *out = NULL;
    *nout = 0;
    int n = 0, cap = 0;
    char **list = NULL;
    for (int i = 0; e->pull && i < edge_pull_nstreams(e->pull); i++) {
        const sync_table *t;
        const sync_value *part;
        if (!edge_pull_part_at(e->pull, i, &t, &part))
            continue;
        for (int k = 0; k < 2; k++) {
            char topic[SYNC_TOPIC_MAX];
            if (sync_topic_stream(topic, sizeof topic, e->cfg->tenant, k ? "head" : "delta",
                                  t->name, part) != SYNC_OK)
                continue; /* policy.c refuses values too long for a topic */
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **nl = realloc(list, (size_t)cap * sizeof *nl);
                if (!nl) {
                    free_list(list, n);
                    return SYNC_ERR_NOMEM;
                }
                list = nl;
            }
            if (!(list[n] = strdup(topic))) {
                free_list(list, n);
                return SYNC_ERR_NOMEM;
            }
            n++;
        }
    }
    if (n > 1)
        qsort(list, (size_t)n, sizeof *list, cmp_str);
    *out = list;
    *nout = n;
    return SYNC_OK;
}

static int same_topics(char **a, int na, char **b, int nb)
{
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return 0;
    return 1;
}

/* Follows the policy's partitions with the subscriptions: a partition stream the replica now
 * receives is subscribed to (its delta and head topics), one it no longer receives is
 * unsubscribed from, on the connection in use and on every later connect. */
static void follow_partitions(edge *e)
{
    if (!e->pull || e->db.policy_gen == e->policy_gen)
        return; /* the policy has not been read again since */
    char **want;
    int n;
    if (part_topics(e, &want, &n) != SYNC_OK)
        return; /* out of memory: the next turn tries again */
    e->policy_gen = e->db.policy_gen;
    if (same_topics(want, n, e->part_subs, e->npart_subs)) {
        free_list(want, n);
        return;
    }
    /* Both lists are sorted: one pass finds what came and what went. */
    int i = 0, k = 0, added = 0, removed = 0;
    while (i < n || k < e->npart_subs) {
        int c = i == n                ? 1
                : k == e->npart_subs ? -1
                                      : strcmp(want[i], e->part_subs[k]);
        if (c < 0) {
            if (sync_mqtt_subscribe(e->mqtt, want[i], 1) == SYNC_OK)
                added++;
            i++;
        } else if (c > 0) {
            sync_mqtt_unsubscribe(e->mqtt, e->part_subs[k]);
            removed++;
            k++;
        } else {
            i++;
            k++;
        }
    }
    sync_notice("replica: the partitions received changed: %d stream topic%s subscribed, %d "
                "unsubscribed",
                added, added == 1 ? "" : "s", removed);
    free_list(e->part_subs, e->npart_subs);
    e->part_subs = want;
    e->npart_subs = n;
}

static int run(edge_config *c, const sync_schema *schema)
{
    char err[512];
    edge e;
    memset(&e, 0, sizeof e);
    e.cfg = c;
    e.need_check = 1;
    if (c->password_file && sync_conf_read_secret(c->password_file, e.password,
                                                  sizeof e.password, err, sizeof err) != SYNC_OK) {
        sync_error("%s", err);
        return 1;
    }
    if (edge_db_open(&e.db, c, schema, err, sizeof err) != SYNC_OK) {
        sync_error("%s", err);
        return 1;
    }
    int status = 1;
    if (edge_replica_new(&e.db, &e.rep, err, sizeof err) != SYNC_OK ||
        edge_outbox_new(&e.db, e.rep, c, &e.out, err, sizeof err) != SYNC_OK) {
        sync_error("%s", err);
        goto out;
    }
    sync_topic_dev(e.up_topic, sizeof e.up_topic, c->tenant, c->device, "up");
    sync_topic_dev(e.ack_topic, sizeof e.ack_topic, c->tenant, c->device, "ack");
    sync_topic_dev(e.state_topic, sizeof e.state_topic, c->tenant, c->device, "state");
    sync_topic_dev(e.resp_topic, sizeof e.resp_topic, c->tenant, c->device, "resp");
    sync_topic_dev(e.cmd_topic, sizeof e.cmd_topic, c->tenant, c->device, "cmd");
    sync_topic_dev(e.policy_topic, sizeof e.policy_topic, c->tenant, c->device, "policy");
    snprintf(e.head_topic, sizeof e.head_topic, "sync/%s/head", c->tenant);
    if (c->replica) {
        if (edge_pull_new(&e.db, e.rep, c, &e.pull, err, sizeof err) != SYNC_OK) {
            sync_error("%s", err);
            goto out;
        }
        edge_replica_set_pull(e.rep, e.pull);
    }
    if (edge_metrics_new(c, &e.db, &e.metrics, err, sizeof err) != SYNC_OK) {
        sync_error("%s", err);
        goto out;
    }
    snprintf(e.will, sizeof e.will, "{\"device\":\"%s\",\"online\":false,\"clean\":false}",
             c->device);
    e.policy_gen = e.db.policy_gen;
    int mrc = part_topics(&e, &e.part_subs, &e.npart_subs);
    if (mrc == SYNC_OK)
        mrc = mqtt_open(&e, err, sizeof err);
    memset(e.password, 0, sizeof e.password); /* the client has its copy */
    if (mrc != SYNC_OK) {
        sync_error("%s", mrc == SYNC_ERR_NOMEM ? "out of memory" : err);
        goto out;
    }
    sync_notice("syncedge " EDGE_VERSION " started: device %s of tenant %s, database %s, %d "
                "table%s, %lld change%s waiting",
                c->device, c->tenant, c->database, e.db.ntables, e.db.ntables == 1 ? "" : "s",
                edge_db_outbox_count(&e.db), edge_db_outbox_count(&e.db) == 1 ? "" : "s");
    /* Commits of the application wake the loop at once (watch.h); else it finds them within
     * poll_ms. */
    if (edge_watch_start(c->database, e.mqtt, &e.watch, err, sizeof err) != SYNC_OK)
        sync_notice("%s; new changes are found every %ld ms", err, c->poll_ms);
    edge_ckpt *ckpt = NULL;
    if (edge_ckpt_start(c->database, c->checkpoint_ms, &ckpt, err, sizeof err) != SYNC_OK)
        sync_warn("%s; the WAL is checkpointed by SQLite's automatic checkpoints only", err);
    sync_mqtt_start(e.mqtt, err, sizeof err);
    while (!sync_stop_requested()) {
        sync_mqtt_msg *msgs = sync_mqtt_poll(e.mqtt, (int)c->poll_ms);
        handle_messages(&e, msgs);
        follow_partitions(&e);
        pump(&e);
        /* Tell watchers how much is waiting and how far the replica is, at most every
         * STATE_INTERVAL_S and only when something moved. */
        if (sync_mqtt_connected(e.mqtt) && now_s() - e.state_at > STATE_INTERVAL_S) {
            e.state_at = now_s();
            if (state_sig(&e, edge_db_outbox_count(&e.db)) != e.state_sig)
                publish_state(&e, 1);
        }
        if (sync_hup_requested()) {
            sync_notice("SIGHUP: the configuration is read only at start (restart to change "
                        "it); writing the state and metrics now");
            publish_state(&e, 1);
            write_metrics(&e, 1);
        }
        write_metrics(&e, 0);
        backlog_progress(&e);
    }
    status = 0;
    edge_outbox_stats st;
    edge_outbox_stats_get(e.out, &st);
    sync_notice("stopping: %lu batches sent, %lu changes acked, %lu lost a conflict, %lu "
                "rejected, %lu downstream changes applied; %lld waiting in the outbox",
                st.batches_sent, st.records_acked, st.lost, st.rejected,
                edge_replica_applied(e.rep), edge_db_outbox_count(&e.db));
    if (e.mqtt && sync_mqtt_connected(e.mqtt))
        publish_state(&e, 0);
    if (e.mqtt)
        write_metrics(&e, 1);
    edge_watch_stop(e.watch);
    unsigned long ck_runs, ck_pages;
    edge_ckpt_stats(ckpt, &ck_runs, &ck_pages);
    if (ckpt)
        sync_info("background checkpoints: %lu, %lu pages", ck_runs, ck_pages);
    edge_ckpt_stop(ckpt);
out:
    sync_mqtt_free(e.mqtt);
    edge_metrics_free(e.metrics);
    edge_pull_free(e.pull);
    edge_outbox_free(e.out);
    edge_replica_free(e.rep);
    edge_db_close(&e.db);
    free_list(e.part_subs, e.npart_subs);
    memset(e.password, 0, sizeof e.password);
    return status;
}

/* Adapters from the generic daemon to this program's typed functions. */
static int finish(void *cfg, char *err, size_t errlen)
{
    return edge_config_finish(cfg, err, errlen);
}

static int checksum(void *cfg, const sync_schema *s)
{
    return print_checksums(cfg, s);
}

static int daemon_run(void *cfg, const sync_schema *s)
{
    return run(cfg, s);
}

static void free_cfg(void *cfg)
{
    edge_config_free(cfg);
}

int main(int argc, char **argv)
{
    /* Paho's two threads, the watch thread and ours would each get a malloc arena of their
     * own; two are plenty for what syncedge allocates, and each arena costs resident memory. */
    mallopt(M_ARENA_MAX, 2);
    edge_config c;
    edge_config_init(&c);
    sync_daemon d = {
        .name = "syncedge",
        .version = EDGE_VERSION,
        .help = edge_config_help,
        .flags = "checksum",
        .set = edge_config_set,
        .finish = finish,
        .cfg = &c,
        .log_level = &c.log_level,
        .log_syslog = &c.log_syslog,
        .schema = &c.schema,
        .checksum = checksum,
        .run = daemon_run,
        .free_cfg = free_cfg,
    };
    return sync_daemon_main(&d, argc, argv);
}
