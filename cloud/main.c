/* main.c - synccloud: configuration, the consume-apply-commit-publish loop, and shutdown.
 *
 * Messages from every device's up topic are taken from the sync_mqtt queue in groups; a group
 * is applied in one store transaction (each batch its own savepoint), committed, and only then
 * are the acks, deltas, row states and events published. A crash before the commit loses
 * nothing: the edges send unacknowledged batches again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "apply.h"
#include "compact.h"
#include "config.h"
#include "outq.h"
#include "pull.h"
#include "registry.h"
#include "monitor.h"
#include "rowcheck.h"
#include "store.h"
#include "sync/conf.h"
#include "sync/daemon.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"
#include "sync/mqtt.h"
#include "sync/record.h"
#include "sync/topic.h"

#define CLOUD_VERSION "0.1.0"
/* A retained row message not acknowledged by then is checked anyway (rowcheck.h). */
#define ROWCHECK_DEADLINE_S 10.0
/* On SIGTERM, the longest wait for what is queued to reach the broker. */
#define STOP_DRAIN_S 3.0

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int print_checksums(const cloud_config *c, const sync_schema *s)
{
    cloud_store *st;
    char err[512];
    if (cloud_store_open_ro(c->database, s, &st, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "synccloud: %s\n", err);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < sync_schema_ntables(s); i++) {
        const sync_table *t = sync_schema_table(s, i);
        char hex[65];
        long long rows;
        if (cloud_store_checksum(st, t, hex, &rows, err, sizeof err) != SYNC_OK) {
            fprintf(stderr, "synccloud: %s\n", err);
            rc = 1;
            break;
        }
        printf("%s %lld %s\n", t->name, rows, hex);
    }
    cloud_store_close(st);
    return rc;
}

/* Publishes what is queued, in order, while connected. What cannot be published now stays
 * queued for the next connection. */
static void publish_queue(sync_mqtt *m, cloud_outq *q, cloud_rowcheck *rows)
{
    cloud_msg *msg;
    while (q->head && sync_mqtt_connected(m)) {
        msg = q->head;
        int rc = msg->corr ? sync_mqtt_publish_rr(m, msg->topic, msg->payload, msg->len, msg->qos,
                                                  NULL, msg->corr, msg->corr_len)
                           : sync_mqtt_publish(m, msg->topic, msg->payload, msg->len, msg->qos,
                                               msg->retain);
        if (rc == SYNC_ERR_STATE || rc == SYNC_ERR_BUSY)
            return; /* keep it: publish when connected again / when the window has room */
        if (rc != SYNC_OK)
            sync_error("publish to %s is impossible (%zu bytes); dropped", msg->topic, msg->len);
        else if (rows)
            /* Delivered once every publish outstanding now (ours last) has completed. */
            cloud_rowcheck_note(rows, msg,
                                sync_mqtt_delivered(m) + (unsigned long)sync_mqtt_pending(m),
                                mono_s() + ROWCHECK_DEADLINE_S);
        free(cloud_outq_pop(q));
    }
}

/* Applies up to max_tx_batches batches from list in one transaction; catch-up requests met on
 * the way are moved to *pulls (answered after the commit, from committed data). Returns the
 * rest of the list. *changed is set when the transaction applied something. */
static sync_mqtt_msg *apply_group(const cloud_config *c, cloud_store *st, cloud_applier *ap,
                                  cloud_monitor *mon, sync_mqtt_msg *list, cloud_outq *q,
                                  sync_mqtt_msg **pulls, int *changed)
{
    double t0 = mono_s();
    unsigned long batches = 0;
    if (cloud_store_begin(st) != SYNC_OK) {
        sync_error("store: cannot begin a transaction: %s", cloud_store_errmsg(st));
        /* Drop the group: the edges resend whatever is not acked. */
        for (long i = 0; list && i < c->max_tx_batches; i++) {
            sync_mqtt_msg *n = list->next;
            sync_mqtt_msg_free(list);
            list = n;
        }
        return list;
    }
    int ok = 1;
    cloud_stats before;
    cloud_applier_stats(ap, &before);
    for (long i = 0; list && i < c->max_tx_batches; i++) {
        sync_mqtt_msg *m = list;
        list = m->next;
        char tenant[SYNC_MAX_ID + 1], device[SYNC_MAX_ID + 1];
        const char *leaf;
        int parsed = sync_topic_parse_dev(m->topic, tenant, device, &leaf) == SYNC_OK &&
                     strcmp(tenant, c->tenant) == 0;
        char admin_topic[SYNC_TOPIC_MAX];
        snprintf(admin_topic, sizeof admin_topic, "sync/%s/admin/req", c->tenant);
        /* Catch-up and admin requests are answered after the commit, from committed data. */
        if ((parsed && strcmp(leaf, "pull") == 0) || strcmp(m->topic, admin_topic) == 0) {
            m->next = *pulls;
            *pulls = m;
            i--;
            continue;
        }
        if (parsed && strcmp(leaf, "state") == 0) {
            cloud_monitor_on_state(mon, m, q);
            sync_mqtt_msg_free(m);
            i--;
            continue;
        }
        if (ok && parsed && strcmp(leaf, "up") == 0) {
            batches++;
            int rc = cloud_applier_batch(ap, device, m->payload, m->len);
            if (rc != SYNC_OK)
                ok = 0;
        } else if (ok) {
            sync_debug("ignoring a message on %s", m->topic);
        }
        sync_mqtt_msg_free(m);
    }
    if (ok && cloud_store_commit(st) == SYNC_OK) {
        cloud_monitor_tx(mon, mono_s() - t0, batches);
        cloud_applier_flush(ap, q);
        cloud_stats after;
        cloud_applier_stats(ap, &after);
        *changed |= after.applied != before.applied;
    } else {
        sync_error("store: transaction failed (%s); rolled back, the devices will resend",
                   cloud_store_errmsg(st));
        cloud_store_rollback(st);
        cloud_applier_discard(ap);
    }
    return list;
}

static int run(cloud_config *c, const sync_schema *schema)
{
    char err[512];
    char password[256] = "";
    if (c->password_file && sync_conf_read_secret(c->password_file, password, sizeof password, err,
                                                  sizeof err) != SYNC_OK) {
        sync_error("%s", err);
        return 1;
    }
    cloud_store *st = NULL;
    cloud_applier *ap = NULL;
    cloud_puller *puller = NULL;
    cloud_registry *reg = NULL;
    cloud_admin *admin = NULL;
    cloud_rowcheck *rows = NULL; /* with a shared group: see rowcheck.h */
    cloud_monitor *mon = NULL;
    sync_mqtt *m = NULL;
    cloud_outq q;
    cloud_outq_init(&q);
    int status = 1;
    if (cloud_config_check_schema(c, schema, err, sizeof err) != SYNC_OK) {
        sync_error("%s", err);
        return 2;
    }
    if (cloud_store_open(c->database, schema, c->sync_full, &st, err, sizeof err) != SYNC_OK ||
        cloud_applier_new(st, schema, c, &ap, err, sizeof err) != SYNC_OK ||
        (c->registry && cloud_registry_open(c->registry, &reg, err, sizeof err) != SYNC_OK)) {
        sync_error("%s", err);
        goto out;
    }
    cloud_applier_set_registry(ap, reg);
    if (cloud_monitor_new(c, schema, st, ap, &mon, err, sizeof err) != SYNC_OK ||
        cloud_admin_new(st, ap, schema, c, &admin, err, sizeof err) != SYNC_OK ||
        (c->shared_group && c->publish_rows &&
         cloud_rowcheck_new(st, schema, c->tenant, ap, &rows, err, sizeof err) != SYNC_OK)) {
        sync_error("%s", err);
        goto out;
    }
    sync_mqtt_opts mo;
    sync_mqtt_opts_default(&mo);
    mo.uri = c->broker;
    mo.client_id = c->client_id;
    mo.username = c->username;
    mo.password = password[0] ? password : NULL;
    mo.cafile = c->cafile;
    mo.certfile = c->certfile;
    mo.keyfile = c->keyfile;
    mo.tls_insecure = c->tls_insecure;
    /* A persistent session: batches published while we are down wait for us at the broker. */
    mo.clean_start = 0;
    mo.session_expiry = (uint32_t)c->session_expiry;
    mo.keepalive = (int)c->keepalive;
    mo.retry_min = (int)c->retry_min;
    mo.retry_max = (int)c->retry_max;
    mo.max_inflight = (int)c->max_inflight;
    /* Watchers see a consumer that vanished as offline, not as stuck at its last figures. */
    if (c->stats_interval > 0) {
        mo.will_topic = cloud_monitor_topic(mon);
        mo.will_payload = cloud_monitor_will(mon, &mo.will_len);
        mo.will_retain = 1;
    }
    if (sync_mqtt_new(&mo, &m, err, sizeof err) != SYNC_OK) {
        sync_error("%s", err);
        goto out;
    }
    /* With a shared group, the broker hands each batch, pull and admin request to one member
     * of the group. Per-device order holds because an edge has one batch in flight at a time;
     * the store's write lock orders the members' transactions (store_pg.c). */
    char share[SYNC_MAX_ID + 16] = "";
    if (c->shared_group)
        snprintf(share, sizeof share, "$share/%s/", c->shared_group);
    char filter[SYNC_TOPIC_MAX + sizeof share];
    snprintf(filter, sizeof filter, "%ssync/%s/dev/+/up", share, c->tenant);
    sync_mqtt_subscribe(m, filter, 1);
    snprintf(filter, sizeof filter, "%ssync/%s/dev/+/pull", share, c->tenant);
    sync_mqtt_subscribe(m, filter, 1);
    snprintf(filter, sizeof filter, "%ssync/%s/admin/req", share, c->tenant);
    sync_mqtt_subscribe(m, filter, 1);
    /* Devices' states, for online/offline events (monitor.h). */
    snprintf(filter, sizeof filter, "%ssync/%s/dev/+/state", share, c->tenant);
    sync_mqtt_subscribe(m, filter, 1);
    char admin_topic[SYNC_TOPIC_MAX];
    snprintf(admin_topic, sizeof admin_topic, "sync/%s/admin/req", c->tenant);
    cloud_admin_set_registry(admin, reg);
    cloud_monitor_set_registry(mon, reg);
    if (cloud_puller_new(st, schema, c, &puller, err, sizeof err) != SYNC_OK) {
        sync_error("%s", err);
        goto out;
    }
    /* The store describes itself: a connection string may hold a password. */
    sync_notice("synccloud " CLOUD_VERSION " started: tenant %s, store %s, schema version %u, %s",
                c->tenant, cloud_store_describe(st), sync_schema_version(schema),
                reg ? "devices checked against the registry" : "no device registry");
    sync_mqtt_start(m, err, sizeof err);
    unsigned long connects = 0;
    int head_dirty = 1;
    double head_at = 0;
    double compact_at = -1e18; /* the first round compacts */
    while (!sync_stop_requested()) {
        sync_mqtt_msg *list = sync_mqtt_poll(m, 100);
        sync_mqtt_msg *pulls = NULL;
        while (list)
            list = apply_group(c, st, ap, mon, list, &q, &pulls, &head_dirty);
        /* Catch-up requests, oldest first, after the acks and deltas of what was committed. */
        sync_mqtt_msg *rev = NULL;
        while (pulls) {
            sync_mqtt_msg *n = pulls->next;
            pulls->next = rev;
            rev = pulls;
            pulls = n;
        }
        while (rev) {
            sync_mqtt_msg *n = rev->next;
            char tenant[SYNC_MAX_ID + 1], device[SYNC_MAX_ID + 1];
            const char *leaf;
            char why[256];
            if (strcmp(rev->topic, admin_topic) == 0) {
                if (cloud_admin_handle(admin, rev, &q, err, sizeof err) != SYNC_OK)
                    sync_warn("%s", err);
                sync_mqtt_msg_free(rev);
                rev = n;
                continue;
            }
            sync_topic_parse_dev(rev->topic, tenant, device, &leaf);
            if (reg && cloud_registry_allows(reg, c->tenant, device, why, sizeof why) != 1)
                sync_warn("ignored a pull from %s: %s", device, why);
            else if (cloud_puller_handle(puller, device, rev, &q, err, sizeof err) != SYNC_OK)
                sync_warn("%s", err);
            sync_mqtt_msg_free(rev);
            rev = n;
        }
        /* The retained head: soon after changes, after every reconnect, and every
         * head_interval seconds, so replicas notice changes they never received. */
        double now = mono_s();
        unsigned long cn = sync_mqtt_connects(m);
        if (cn != connects || (head_dirty && now - head_at > 0.25) ||
            now - head_at > (double)c->head_interval) {
            if (cn != connects)
                cloud_applier_heads_again(ap); /* the broker may have lost retained heads */
            if (sync_mqtt_connected(m) && cloud_applier_head(ap, &q) == SYNC_OK) {
                connects = cn;
                head_dirty = 0;
                head_at = now;
            }
        }
        if (now - compact_at >= (double)c->compact_interval) {
            compact_at = now;
            if (cloud_compact(st, schema, c->tombstone_retention, sync_wall_ms(), NULL, err,
                              sizeof err) != SYNC_OK)
                sync_error("%s", err);
        }
        if (sync_hup_requested())
            sync_notice("SIGHUP: the configuration is read only at start (restart to change "
                        "it); the device registry is read on every batch already");
        if (sync_mqtt_connected(m)) {
            cloud_monitor_policies(mon, &q);
            cloud_monitor_tick(mon, now, &q);
        }
        if (rows && cloud_rowcheck_run(rows, sync_mqtt_delivered(m), now, &q) > 0)
            sync_debug("rowcheck: published newer states of rows another consumer overtook");
        publish_queue(m, &q, rows);
    }
    /* What was committed goes out before we do (acks, deltas, retained rows, events): up to
     * STOP_DRAIN_S while the broker takes it. Batches arriving now are not applied; their
     * edges send them again. */
    cloud_monitor_stop(mon, &q);
    double until = mono_s() + STOP_DRAIN_S;
    while ((q.head || sync_mqtt_pending(m) > 0) && sync_mqtt_connected(m) && mono_s() < until) {
        publish_queue(m, &q, NULL);
        for (sync_mqtt_msg *x = sync_mqtt_poll(m, 20), *next; x; x = next) {
            next = x->next;
            sync_mqtt_msg_free(x);
        }
    }
    status = 0;
    cloud_stats s;
    cloud_applier_stats(ap, &s);
    sync_notice("stopping: %llu batches, %llu changes received, %llu applied, %llu conflicts, "
                "%llu duplicates, %llu batches refused; %zu messages unpublished",
                (unsigned long long)s.batches, (unsigned long long)s.records,
                (unsigned long long)s.applied, (unsigned long long)s.conflicts,
                (unsigned long long)s.duplicates, (unsigned long long)s.rejected, q.n);
    if (rows)
        sync_notice("shared group %s: %llu retained rows published again after another "
                    "consumer's older state overtook ours",
                    c->shared_group, (unsigned long long)cloud_rowcheck_republished(rows));
out:
    sync_mqtt_free(m);
    cloud_outq_clear(&q);
    cloud_applier_free(ap);
    cloud_puller_free(puller);
    cloud_registry_close(reg);
    cloud_admin_free(admin);
    cloud_rowcheck_free(rows);
    cloud_monitor_free(mon);
    cloud_store_close(st);
    memset(password, 0, sizeof password);
    return status;
}

/* Adapters from the generic daemon to this program's typed functions. */
static int finish(void *cfg, char *err, size_t errlen)
{
    return cloud_config_finish(cfg, err, errlen);
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
    cloud_config_free(cfg);
}

int main(int argc, char **argv)
{
    cloud_config c;
    cloud_config_init(&c);
    sync_daemon d = {
        .name = "synccloud",
        .version = CLOUD_VERSION,
        .help = cloud_config_help,
        .help_more = cloud_config_help_more,
        .flags = "checksum",
        .set = cloud_config_set,
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
