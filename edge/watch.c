/* watch.c - inotify on the application's database (see watch.h). */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "sync/err.h"
#include "sync/log.h"

struct edge_watch {
    sync_mqtt *m;
    int ifd;      /* inotify */
    int stop[2];  /* a pipe: the owner writes a byte to end the thread */
    char base[NAME_MAX + 1]; /* the database's file name */
    size_t base_len;
    pthread_t th;
    atomic_ulong wakeups;
};

/* Whether an event's file is the database or one of its companions (-wal, -journal). */
static int ours(const edge_watch *w, const struct inotify_event *ev)
{
    if (ev->len == 0 || strncmp(ev->name, w->base, w->base_len) != 0)
        return 0;
    const char *rest = ev->name + w->base_len;
    return *rest == '\0' || strcmp(rest, "-wal") == 0 || strcmp(rest, "-journal") == 0;
}

static void *watch_main(void *arg)
{
    edge_watch *w = arg;
    /* Room for many events at once; inotify never splits one. */
    char buf[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
        __attribute__((aligned(__alignof__(struct inotify_event))));
    struct pollfd pf[2] = {{.fd = w->ifd, .events = POLLIN}, {.fd = w->stop[0], .events = POLLIN}};
    for (;;) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            sync_warn("watch: poll: %s; new changes are found by polling only", strerror(errno));
            return NULL;
        }
        if (pf[1].revents)
            return NULL;
        ssize_t n = read(w->ifd, buf, sizeof buf);
        if (n <= 0) {
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            sync_warn("watch: read: %s; new changes are found by polling only",
                      n < 0 ? strerror(errno) : "end of file");
            return NULL;
        }
        int hit = 0;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & IN_Q_OVERFLOW)
                hit = 1; /* events were lost: look anyway */
            else if (ours(w, ev))
                hit = 1;
            p += sizeof *ev + ev->len;
        }
        if (hit) {
            atomic_fetch_add(&w->wakeups, 1);
            sync_mqtt_wake(w->m);
        }
    }
}

int edge_watch_start(const char *database, sync_mqtt *m, edge_watch **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    const char *slash = strrchr(database, '/');
    const char *base = slash ? slash + 1 : database;
    char dir[PATH_MAX];
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", slash == database ? 1 : (int)(slash - database),
                 database);
    else
        snprintf(dir, sizeof dir, ".");
    if (strlen(base) > NAME_MAX || strlen(dir) >= sizeof dir - 1)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "watch: path too long: %s", database);
    edge_watch *w = calloc(1, sizeof *w);
    if (!w)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    w->m = m;
    w->stop[0] = w->stop[1] = -1;
    snprintf(w->base, sizeof w->base, "%s", base);
    w->base_len = strlen(w->base);
    atomic_init(&w->wakeups, 0);
    w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    int rc;
    if (w->ifd < 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_IO, "watch: inotify: %s", strerror(errno));
        goto fail;
    }
    /* IN_MODIFY: a write (a commit appends to the WAL); IN_CLOSE_WRITE and IN_MOVED_TO: other
     * ways a rollback-journal database changes. */
    if (inotify_add_watch(w->ifd, dir, IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_IO, "watch: cannot watch %s: %s", dir,
                         strerror(errno));
        goto fail;
    }
    if (pipe(w->stop) != 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_IO, "watch: pipe: %s", strerror(errno));
        goto fail;
    }
    if ((errno = pthread_create(&w->th, NULL, watch_main, w)) != 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_IO, "watch: thread: %s", strerror(errno));
        goto fail;
    }
    *out = w;
    return SYNC_OK;
fail:
    if (w->ifd >= 0)
        close(w->ifd);
    if (w->stop[0] >= 0) {
        close(w->stop[0]);
        close(w->stop[1]);
    }
    free(w);
    return rc;
}

void edge_watch_stop(edge_watch *w)
{
    if (!w)
        return;
    char b = 1;
    while (write(w->stop[1], &b, 1) < 0 && errno == EINTR)
        ;
    pthread_join(w->th, NULL);
    close(w->ifd);
    close(w->stop[0]);
    close(w->stop[1]);
    free(w);
}

unsigned long edge_watch_wakeups(edge_watch *w)
{
    return w ? atomic_load(&w->wakeups) : 0;
}
