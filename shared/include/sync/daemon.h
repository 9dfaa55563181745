/* daemon.h - what syncedge and synccloud do alike before and around their main loop: command
 * line and config file, --help/--version, logging setup, and stopping on SIGINT/SIGTERM.
 */
#ifndef SYNC_DAEMON_H
#define SYNC_DAEMON_H

#include <stddef.h>

#include "sync/conf.h"
#include "sync/schema.h"

typedef struct sync_daemon {
    const char *name;    /* "syncedge" */
    const char *version; /* "0.1.0" */
    const char *help;    /* the --help text */
    const char *help_more; /* printed after it, or NULL (C limits one literal to 4095 bytes) */
    const char *flags;   /* boolean flags the program takes, e.g. "checksum" */
    sync_conf_cb set;    /* applies one key/value to cfg */
    int (*finish)(void *cfg, char *err, size_t errlen); /* checks and completes cfg */
    void *cfg;                                          /* the program's config struct */
    const int *log_level, *log_syslog;                  /* its logging fields, read after parsing */
    char *const *schema;                                /* its schema-file field */
    int (*checksum)(void *cfg, const sync_schema *s);   /* --checksum: print, return status */
    int (*run)(void *cfg, const sync_schema *s);        /* the daemon: return exit status */
    void (*free_cfg)(void *cfg);                        /* releases cfg at the end */
} sync_daemon;

/* The whole life of a daemon: sync_daemon_start, then the schema file, then either --checksum
 * or (after sync_signals_setup) run. Frees cfg and returns the exit status (2 for a bad
 * configuration or schema file, which has been printed). */
int sync_daemon_main(const sync_daemon *d, int argc, char **argv);

/* Parses argv into d->cfg, answers --help and --version, validates, and sets up logging.
 * Returns -1 when the program should go on (*flags then holds the bits of d->flags given), or
 * the exit status to return now (0 after --help/--version, 2 after a configuration error,
 * which has been printed). */
int sync_daemon_start(const sync_daemon *d, int argc, char **argv, unsigned *flags);

/* Makes SIGINT and SIGTERM request a stop (see sync_stop_requested), SIGHUP set a flag (see
 * sync_hup_requested) instead of ending the process, and ignores SIGPIPE. */
void sync_signals_setup(void);

/* 1 once after each SIGHUP (the flag is cleared), else 0. */
int sync_hup_requested(void);

/* Nonzero once SIGINT or SIGTERM has arrived. */
int sync_stop_requested(void);

#endif
