/* config.h - synccloud's configuration: defaults, keys and flags, validation. */
#ifndef CLOUD_CONFIG_H
#define CLOUD_CONFIG_H

#include <stddef.h>

#include "sync/record.h"

/* How a table settles a conflict (docs/protocol.md, "Versions and conflicts"). */
typedef enum cloud_policy {
    CLOUD_LWW = 0,         /* the later hybrid logical clock wins (default) */
    CLOUD_SERVER_WINS = 1, /* the stored row always wins */
    CLOUD_PRIORITY = 2,    /* the writer whose role ranks higher wins; equal ranks: lww */
    CLOUD_MERGE = 3,       /* columns changed on one side only all apply; overlaps: lww */
    CLOUD_MANUAL = 4,      /* the stored row stays, the conflict waits for a person */
} cloud_policy;

typedef struct cloud_table_rule {
    char table[SYNC_MAX_NAME + 1];
    cloud_policy policy;
    int resurrect; /* an update that wins against a tombstone brings the row back */
} cloud_table_rule;

typedef struct cloud_role {
    char device[SYNC_MAX_ID + 1];
    char role[SYNC_MAX_ID + 1];
} cloud_role;

/* A `receive` or `write` line: which tables a device, a role or everyone gets or may write
 * (access.h). */
typedef struct cloud_grant {
    int write;                   /* 0: receive, 1: write */
    char who[SYNC_MAX_ID + 6];   /* a device id, "role:NAME" or "*" */
    char tables[1024];           /* comma-separated table names, or "*" */
} cloud_grant;

/* A `partition TABLE COLUMN` line (docs/protocol.md, "Partitions"). */
typedef struct cloud_partition {
    char table[SYNC_MAX_NAME + 1];
    char column[SYNC_MAX_NAME + 1];
} cloud_partition;

/* An `attr DEVICE NAME VALUE` line: a device's attribute, for `$NAME` in receive/write lines. */
typedef struct cloud_attr {
    char device[SYNC_MAX_ID + 1];
    char name[SYNC_MAX_ID + 1];
    char value[256];
} cloud_attr;

typedef struct cloud_config {
    char *database; /* SQLite store file, or a PostgreSQL connection string (store.h) */
    char *registry; /* syncctl's device registry, or NULL: every device may sync */
    char *schema;   /* schema file shared with the edges */
    char *tenant;
    char *broker;
    char *client_id; /* default: synccloud-TENANT */
    char *shared_group; /* MQTT 5 shared subscription group, or NULL: the only consumer */
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
    long stats_interval;  /* seconds between retained statistics (0: none) */
    char *metrics_file;   /* Prometheus text file, or NULL */
    long metrics_interval; /* seconds between rewrites of metrics_file */
    long tombstone_retention; /* seconds a tombstone is kept (0: forever) */
    long compact_interval;    /* seconds between compaction runs */
    long session_expiry;
    long keepalive;
    long retry_min, retry_max;
    long max_inflight;
    int log_level;
    int log_syslog;
    cloud_table_rule *rules; /* `policy` lines */
    int nrules;
    cloud_role *roles; /* `role` lines */
    int nroles;
    cloud_grant *grants; /* `receive` and `write` lines */
    int ngrants;
    cloud_partition *parts; /* `partition` lines */
    int nparts;
    cloud_attr *attrs; /* `attr` lines */
    int nattrs;
    char *priority; /* roles, highest first, comma-separated */
} cloud_config;

/* The rule for a table (the default lww rule when none is configured). */
cloud_table_rule cloud_config_rule(const cloud_config *c, const char *table);
/* The role of a device (a `role` line), or NULL. */
const char *cloud_config_role(const cloud_config *c, const char *device);
/* The partition column of a table (a `partition` line), or NULL. */
const char *cloud_config_partition(const cloud_config *c, const char *table);
/* 1 and *out when the n bytes at s are a decimal integer within 64 bits (a partition value of
 * an integer column), else 0. */
int cloud_config_int(const char *s, size_t n, long long *out);
/* A device's attribute (an `attr` line), or NULL. */
const char *cloud_config_attr(const cloud_config *c, const char *device, const char *name);
/* Rank of a device for the priority policy: 0 is highest; devices without a role, or whose role
 * is not listed in `priority`, rank below every listed role. */
int cloud_config_rank(const cloud_config *c, const char *device);
/* Checks the config against the schema: every `policy` line names a table of it; every
 * `partition` line a table and an integer or text NOT NULL column that is not the key; every
 * receive/write entry a table, and `TABLE=VALUES` only a partitioned table, with literals of
 * the column's type. */
struct sync_schema;
int cloud_config_check_schema(const cloud_config *c, const struct sync_schema *s, char *err,
                              size_t errlen);

void cloud_config_init(cloud_config *c);
void cloud_config_free(cloud_config *c);
int cloud_config_set(void *ctx, const char *key, const char *value, char *err, size_t errlen);
int cloud_config_finish(cloud_config *c, char *err, size_t errlen);

extern const char cloud_config_help[];
extern const char cloud_config_help_more[]; /* printed after cloud_config_help */

#endif
