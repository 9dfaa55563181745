/* daemon.c - command line, logging and signals common to both daemons (see sync/daemon.h). */
#include "sync/daemon.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "sync/err.h"
#include "sync/log.h"

/* Set from the signal handler: the only process-wide state here, as signals are per process. */
static volatile sig_atomic_t stop_flag, hup_flag;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_hup_signal(int sig)
{
    (void)sig;
    hup_flag = 1;
}

void sync_signals_setup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* SIGHUP would end the process (its default): `systemctl reload`, a closed terminal or a
     * broker-style "kill -HUP" must not stop syncing. */
    sa.sa_handler = on_hup_signal;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int sync_hup_requested(void)
{
    if (!hup_flag)
        return 0;
    hup_flag = 0;
    return 1;
}

int sync_stop_requested(void)
{
    return stop_flag != 0;
}

int sync_daemon_start(const sync_daemon *d, int argc, char **argv, unsigned *flags)
{
    char err[1024];
    sync_args a = {.flags = d->flags};
    sync_log_setup(d->name, SYNC_LOG_INFO, 0);
    if (sync_conf_parse_args(argc, argv, &a, d->set, d->cfg, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (a.help) {
        fputs(d->help, stdout);
        if (d->help_more)
            fputs(d->help_more, stdout);
        return 0;
    }
    if (a.version) {
        printf("%s %s\n", d->name, d->version);
        return 0;
    }
    sync_log_setup(d->name, (sync_log_level)*d->log_level, *d->log_syslog);
    if (d->finish(d->cfg, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    *flags = a.set;
    return -1;
}

int sync_daemon_main(const sync_daemon *d, int argc, char **argv)
{
    unsigned flags = 0;
    int rc = sync_daemon_start(d, argc, argv, &flags);
    if (rc >= 0) {
        d->free_cfg(d->cfg);
        return rc;
    }
    char err[1024];
    sync_schema *schema;
    if (sync_schema_load(*d->schema, &schema, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "%s: %s\n", d->name, err);
        d->free_cfg(d->cfg);
        return 2;
    }
    if (flags & 1u) {
        rc = d->checksum(d->cfg, schema);
    } else {
        sync_signals_setup();
        rc = d->run(d->cfg, schema);
    }
    sync_schema_free(schema);
    d->free_cfg(d->cfg);
    return rc;
}
