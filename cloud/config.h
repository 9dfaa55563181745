/* config.h - synccloud's configuration: defaults, keys and flags, validation. */
#ifndef CLOUD_CONFIG_H
#define CLOUD_CONFIG_H

#include <stddef.h>

typedef struct cloud_config {
    char *database; /* SQLite store file */
    char *schema;   /* schema file shared with the edges */
    char *tenant;
    char *broker;
    char *client_id; /* default: synccloud-TENANT */
    char *username;  /* default: synccloud */
    char *password_file;
    char *cafile, *certfile, *keyfile;
    int tls_insecure;
    int publish_rows;     /* retained sync/T/rows/TABLE/KEY messages */
    int events;           /* JSON events: 0 none, 1 batches/conflicts/rejections, 2 + changes */
    int sync_full;        /* fsync every commit (PRAGMA synchronous=FULL) */
    long max_records;     /* records per batch */
    long max_value;       /* bytes per text/blob value */
    long max_batch_bytes; /* bytes per batch message */
    long max_tx_batches;  /* batches committed together */
    long pull_rows;       /* rows per catch-up page */
    long pull_bytes;      /* bytes per catch-up page */
    long head_interval;   /* seconds between republished heads */
    long session_expiry;
    long keepalive;
    long retry_min, retry_max;
    long max_inflight;
    int log_level;
    int log_syslog;
} cloud_config;

void cloud_config_init(cloud_config *c);
void cloud_config_free(cloud_config *c);
int cloud_config_set(void *ctx, const char *key, const char *value, char *err, size_t errlen);
int cloud_config_finish(cloud_config *c, char *err, size_t errlen);

extern const char cloud_config_help[];

#endif
