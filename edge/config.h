/* config.h - syncedge's configuration: defaults, config-file keys and flags, validation. */
#ifndef EDGE_CONFIG_H
#define EDGE_CONFIG_H

#include <stddef.h>

typedef struct edge_config {
    char *database; /* the application's SQLite file */
    char *schema;   /* schema file shared with the cloud */
    char *tables;   /* comma list of tables to sync (NULL: all in the schema) */
    char *tenant;
    char *device;
    char *broker;    /* Paho URI */
    char *client_id; /* default: the device id */
    char *username;  /* default: the device id */
    char *password_file;
    char *cafile, *certfile, *keyfile;
    int tls_insecure;
    int replica;         /* apply downstream deltas */
    int rebuild_corrupt; /* move a corrupt database aside and start afresh */
    long batch_max;      /* records per batch */
    long batch_bytes;    /* payload bytes per batch */
    long max_value;      /* bytes per text/blob value (the cloud's limit) */
    long pull_rows;      /* rows asked for per catch-up page */
    long catchup_cache_kb; /* page cache during a big catch-up (0: the steady-state one) */
    int pull_snapshot;     /* a stream never had starts with snapshot pages in key order */
    long ack_timeout;    /* seconds before an unacknowledged batch is sent again */
    long poll_ms;        /* how often the outbox is checked for new rows */
    long checkpoint_ms;  /* background WAL checkpoint period (0: SQLite's auto-checkpoint only) */
    char *metrics_file;  /* Prometheus text file, or NULL */
    long metrics_interval; /* seconds between rewrites of metrics_file */
    long session_expiry; /* seconds the broker keeps our session (queued deltas) */
    long keepalive;
    long retry_min, retry_max;
    int log_level;
    int log_syslog;
} edge_config;

void edge_config_init(edge_config *c);
void edge_config_free(edge_config *c);
/* The sync_conf_cb for syncedge's keys. */
int edge_config_set(void *ctx, const char *key, const char *value, char *err, size_t errlen);
/* Checks required keys and fills derived defaults. */
int edge_config_finish(edge_config *c, char *err, size_t errlen);
/* Nonzero if table `name` is to be synced. */
int edge_config_syncs(const edge_config *c, const char *name);

extern const char edge_config_help[];

#endif
