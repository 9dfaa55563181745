/* metrics.c - syncedge's Prometheus metrics (see metrics.h). */
#include "metrics.h"

#include <stdlib.h>

#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"
#include "sync/metrics.h"

struct edge_metrics {
    const edge_config *cfg;
    const edge_db *db;
    sync_metrics *mx;
    double next;
    edge_metrics_snapshot last; /* counters already added */
    sync_counter *batches, *acked, *lost, *rejected, *dead, *applied;
    sync_gauge *pending, *last_sync, *connected, *started;
    sync_gauge *cursor[EDGE_MAX_TABLES], *lag[EDGE_MAX_TABLES];
    sync_histogram *ack;
};

/* One series with the label device="ID" (several syncedge on one host: one file each). */
static int counter(edge_metrics *m, const char *name, const char *help, sync_counter **out,
                   char *err, size_t errlen)
{
    return sync_metrics_counter_1(m->mx, name, help, "device", m->cfg->device, out, err, errlen);
}

static int gauge(edge_metrics *m, const char *name, const char *help, sync_gauge **out,
                 char *err, size_t errlen)
{
    return sync_metrics_gauge_1(m->mx, name, help, "device", m->cfg->device, out, err, errlen);
}

static int setup(edge_metrics *m, char *err, size_t errlen)
{
    static const double ack_bounds[] = {0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2,
                                        0.5,   1,     2,    5,    10,   30};
    int rc = sync_metrics_new("syncedge", &m->mx, err, errlen);
    if (rc == SYNC_OK)
        rc = counter(m, "batches_sent_total", "Change batches published (resends included)",
                     &m->batches, err, errlen);
    if (rc == SYNC_OK)
        rc = counter(m, "changes_acked_total", "Local changes the cloud acknowledged", &m->acked,
                     err, errlen);
    if (rc == SYNC_OK)
        rc = counter(m, "changes_lost_total", "Local changes that lost a conflict", &m->lost, err,
                     errlen);
    if (rc == SYNC_OK)
        rc = counter(m, "changes_rejected_total", "Local changes the cloud refused", &m->rejected,
                     err, errlen);
    if (rc == SYNC_OK)
        rc = counter(m, "changes_dead_total", "Changes moved to _sync_dead (never to be sent)",
                     &m->dead, err, errlen);
    if (rc == SYNC_OK)
        rc = counter(m, "downstream_applied_total", "Changes from the cloud applied locally",
                     &m->applied, err, errlen);
    if (rc == SYNC_OK)
        rc = gauge(m, "outbox_pending", "Local changes waiting to be acknowledged", &m->pending,
                   err, errlen);
    if (rc == SYNC_OK)
        rc = gauge(m, "last_sync_timestamp_seconds", "When the last ack came (Unix time; 0: "
                   "none since the start)", &m->last_sync, err, errlen);
    if (rc == SYNC_OK)
        rc = gauge(m, "connected", "1 while connected to the broker", &m->connected, err, errlen);
    if (rc == SYNC_OK)
        rc = gauge(m, "start_time_seconds", "When the process started (Unix time)", &m->started,
                   err, errlen);
    if (rc == SYNC_OK)
        rc = sync_metrics_histogram_1(m->mx, "ack_seconds", "Time from publishing a batch to its ack",
                                      "device", m->cfg->device, ack_bounds,
                                      sizeof ack_bounds / sizeof *ack_bounds, &m->ack, err, errlen);
    if (rc == SYNC_OK && m->cfg->replica) {
        sync_metrics_family *fc, *fl;
        rc = sync_metrics_family_new(m->mx, SYNC_METRICS_GAUGE, "replica_cursor",
                    "Change sequence up to which the table is applied here", "device,table", NULL,
                    0, &fc, err, errlen);
        if (rc == SYNC_OK)
            rc = sync_metrics_family_new(m->mx, SYNC_METRICS_GAUGE, "replica_lag_changes",
                        "Changes of the table the cloud has and this replica not yet",
                        "device,table", NULL, 0, &fl, err, errlen);
        for (int i = 0; rc == SYNC_OK && i < m->db->ntables; i++) {
            const char *v[] = {m->cfg->device, m->db->tables[i]->name};
            rc = sync_metrics_gauge_labeled(fc, v, &m->cursor[i], err, errlen);
            if (rc == SYNC_OK)
                rc = sync_metrics_gauge_labeled(fl, v, &m->lag[i], err, errlen);
        }
    }
    if (rc == SYNC_OK) {
        sync_metrics_gauge_set(m->started, (double)sync_wall_ms() / 1000.0);
        rc = sync_metrics_write(m->mx, m->cfg->metrics_file, err, errlen);
    }
    return rc;
}

int edge_metrics_new(const edge_config *c, const edge_db *db, edge_metrics **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!c->metrics_file)
        return SYNC_OK;
    edge_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    m->cfg = c;
    m->db = db;
    char why[512];
    if (setup(m, why, sizeof why) != SYNC_OK) {
        edge_metrics_free(m);
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "metrics_file %s: %s", c->metrics_file,
                           why);
    }
    *out = m;
    return SYNC_OK;
}

void edge_metrics_free(edge_metrics *m)
{
    if (!m)
        return;
    sync_metrics_free(m->mx);
    free(m);
}

void edge_metrics_ack(edge_metrics *m, double seconds)
{
    if (m)
        sync_metrics_histogram_observe(m->ack, seconds);
}

int edge_metrics_due(const edge_metrics *m, double now)
{
    return m && now >= m->next;
}

void edge_metrics_tick(edge_metrics *m, double now, const edge_metrics_snapshot *s, int force)
{
    if (!m || (!force && !edge_metrics_due(m, now)))
        return;
    m->next = now + (double)m->cfg->metrics_interval;
    sync_metrics_counter_add(m->batches, s->batches_sent - m->last.batches_sent);
    sync_metrics_counter_add(m->acked, s->changes_acked - m->last.changes_acked);
    sync_metrics_counter_add(m->lost, s->changes_lost - m->last.changes_lost);
    sync_metrics_counter_add(m->rejected, s->changes_rejected - m->last.changes_rejected);
    sync_metrics_counter_add(m->dead, s->changes_dead - m->last.changes_dead);
    sync_metrics_counter_add(m->applied, s->downstream_applied - m->last.downstream_applied);
    m->last = *s;
    sync_metrics_gauge_set(m->pending, (double)s->pending);
    sync_metrics_gauge_set(m->last_sync, (double)s->last_sync_ms / 1000.0);
    sync_metrics_gauge_set(m->connected, s->connected ? 1 : 0);
    for (int i = 0; s->cursor && i < m->db->ntables; i++) {
        sync_metrics_gauge_set(m->cursor[i], (double)s->cursor[i]);
        sync_metrics_gauge_set(m->lag[i], (double)s->lag[i]);
    }
    char err[512];
    if (sync_metrics_write(m->mx, m->cfg->metrics_file, err, sizeof err) != SYNC_OK)
        sync_warn("metrics: %s", err);
}
