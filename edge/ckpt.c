/* ckpt.c - background WAL checkpoints (see ckpt.h). */
#include "ckpt.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sync/err.h"
#include "sync/log.h"

struct edge_ckpt {
    sqlite3 *db;
    long period_ms;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    unsigned long runs, pages; /* under mu */
};

static void *ckpt_main(void *arg)
{
    edge_ckpt *c = arg;
    int last_log = -1, last_done = -1;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (c->period_ms % 1000) * 1000000L;
        ts.tv_sec += c->period_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        while (!c->stop && pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
            ;
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->mu);
        int nlog = -1, ndone = -1;
        int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &nlog, &ndone);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
            sync_debug("checkpoint: %s", sqlite3_errmsg(c->db));
        pthread_mutex_lock(&c->mu);
        /* Pages copied by this run: more backfilled than last time, in the same WAL. */
        if (rc == SQLITE_OK && ndone > 0 && (nlog != last_log || ndone != last_done)) {
            c->runs++;
            c->pages += (unsigned long)(last_log >= 0 && nlog >= last_log && ndone > last_done
                                            ? ndone - last_done
                                            : ndone);
        }
        last_log = nlog;
        last_done = ndone;
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int edge_ckpt_start(const char *database, long period_ms, edge_ckpt **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    if (period_ms <= 0)
        return SYNC_OK;
    edge_ckpt *c = calloc(1, sizeof *c);
    if (!c)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    c->period_ms = period_ms;
    /* Its own connection: checkpointing is independent of the main loop's transactions. The
     * checkpoint syncs as synchronous=NORMAL asks (the WAL before copying, the database after). */
    if (sqlite3_open_v2(database, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(c->db,
                     "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;"
                     /* it reads no tables: keep its page cache from growing (memory) */
                     "PRAGMA cache_size=-64;"
                     "SELECT count(*) FROM sqlite_master;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "checkpoint connection to %s: %s", database,
                             c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return rc;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->mu, NULL);
    if ((errno = pthread_create(&c->th, NULL, ckpt_main, c)) != 0) {
        int rc = sync_seterr(err, errlen, SYNC_ERR_IO, "checkpoint thread: %s", strerror(errno));
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        sqlite3_close(c->db);
        free(c);
        return rc;
    }
    *out = c;
    return SYNC_OK;
}

void edge_ckpt_stop(edge_ckpt *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->th, NULL);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    sqlite3_close(c->db);
    free(c);
}

void edge_ckpt_stats(edge_ckpt *c, unsigned long *runs, unsigned long *pages)
{
    *runs = *pages = 0;
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    *runs = c->runs;
    *pages = c->pages;
    pthread_mutex_unlock(&c->mu);
}
