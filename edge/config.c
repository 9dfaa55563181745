/* config.c - syncedge's configuration keys (see config.h and docs/operations.md). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "sync/conf.h"
#include "sync/err.h"
#include "sync/log.h"
#include "sync/topic.h"

const char edge_config_help[] =
    "Usage: syncedge [-c FILE] [--KEY VALUE ...] [--checksum] [-v] [-h]\n"
    "\n"
    "Attaches to an application's SQLite database, captures every change to the synced\n"
    "tables with triggers, publishes them to the cloud over MQTT (TLS), and applies the\n"
    "cloud's downstream changes to the local tables.\n"
    "\n"
    "Every config-file key KEY is also the flag --KEY (with '-' for '_'):\n"
    "  database FILE        application SQLite database (required)\n"
    "  schema FILE          schema file shared with the cloud (required)\n"
    "  tables LIST          comma-separated tables to sync (default: all in the schema)\n"
    "  tenant ID            tenant id (required)\n"
    "  device ID            this device's id (required)\n"
    "  broker URI           broker, e.g. ssl://broker.example.com:8883 (default "
    "ssl://127.0.0.1:8883)\n"
    "  client_id ID         MQTT client id (default: the device id)\n"
    "  username NAME        broker user name (default: the device id)\n"
    "  password_file FILE   file holding the broker password (mode 0600)\n"
    "  cafile FILE          CA certificate(s) to verify the broker\n"
    "  certfile FILE        client certificate (mutual TLS)\n"
    "  keyfile FILE         client private key (mutual TLS)\n"
    "  tls_insecure BOOL    skip the broker host name check (default false; testing only)\n"
    "  replica BOOL         apply the cloud's downstream changes (default true)\n"
    "  rebuild_corrupt BOOL a database that fails SQLite's quick_check at start is kept\n"
    "                       as FILE.corrupt-TIME and rebuilt from the cloud (default true)\n"
    "  batch_max N          change records per batch (default 500)\n"
    "  batch_bytes N        payload bytes per batch (default 262144)\n"
    "  max_value BYTES      largest text/blob value sent; larger ones are set aside in\n"
    "                       _sync_dead (default 1048576, the cloud's default limit)\n"
    "  pull_rows N          rows per catch-up page when pulling missed changes (default 5000)\n"
    "  catchup_cache_kb KB  SQLite page cache while a catch-up of 5,000 rows or more runs\n"
    "                       (default 8192; 512 otherwise; 0: keep 512)\n"
    "  pull_snapshot BOOL   a table this replica never had comes in key order, then the\n"
    "                       changes made meanwhile (default true; false: in change order)\n"
    "  ack_timeout SECONDS  resend a batch whose ack has not come (default 30)\n"
    "  poll_ms MS           how often to look for new changes (default 50)\n"
    "  checkpoint_ms MS     checkpoint the database's WAL from a background thread this\n"
    "                       often, so no checkpoint flushes much at once (default 50;\n"
    "                       0: only SQLite's automatic checkpoints)\n"
    "  metrics_file FILE    write Prometheus metrics there (textfile collector; *.prom)\n"
    "  metrics_interval SEC rewrite metrics_file this often (default 15)\n"
    "  session_expiry SEC   broker keeps our session this long offline (default 604800)\n"
    "  keepalive SEC        MQTT keepalive (default 30)\n"
    "  retry_min SEC        first reconnect delay (default 1)\n"
    "  retry_max SEC        largest reconnect delay (default 60)\n"
    "  log_level LEVEL      debug, info, notice, warning or error (default info)\n"
    "  log_dest DEST        stderr or syslog (default stderr)\n"
    "\n"
    "Other flags:\n"
    "  -c, --config FILE    read KEY VALUE lines from FILE (flags override it)\n"
    "  --checksum           print TABLE ROWS SHA256 for each synced table and exit\n"
    "  -v, --verbose        same as --log-level debug\n"
    "  -h, --help           this help\n"
    "  --version            print the version\n";

#define OPT(k, t, f, lo, hi)                                                                       \
    {                                                                                              \
        k, t, offsetof(edge_config, f), lo, hi                                                     \
    }
static const sync_opt edge_opts[] = {
    OPT("database", SYNC_OPT_STR, database, 0, 0),
    OPT("schema", SYNC_OPT_STR, schema, 0, 0),
    OPT("tables", SYNC_OPT_STR, tables, 0, 0),
    OPT("tenant", SYNC_OPT_STR, tenant, 0, 0),
    OPT("device", SYNC_OPT_STR, device, 0, 0),
    OPT("broker", SYNC_OPT_STR, broker, 0, 0),
    OPT("client_id", SYNC_OPT_STR, client_id, 0, 0),
    OPT("username", SYNC_OPT_STR, username, 0, 0),
    OPT("password_file", SYNC_OPT_STR, password_file, 0, 0),
    OPT("cafile", SYNC_OPT_STR, cafile, 0, 0),
    OPT("certfile", SYNC_OPT_STR, certfile, 0, 0),
    OPT("keyfile", SYNC_OPT_STR, keyfile, 0, 0),
    OPT("tls_insecure", SYNC_OPT_BOOL, tls_insecure, 0, 0),
    OPT("replica", SYNC_OPT_BOOL, replica, 0, 0),
    OPT("rebuild_corrupt", SYNC_OPT_BOOL, rebuild_corrupt, 0, 0),
    OPT("batch_max", SYNC_OPT_LONG, batch_max, 1, 10000),
    OPT("batch_bytes", SYNC_OPT_LONG, batch_bytes, 1024, 64L * 1024 * 1024),
    OPT("max_value", SYNC_OPT_LONG, max_value, 16, 256L * 1024 * 1024),
    OPT("pull_rows", SYNC_OPT_LONG, pull_rows, 1, 100000),
    OPT("catchup_cache_kb", SYNC_OPT_LONG, catchup_cache_kb, 0, 4L * 1024 * 1024),
    OPT("pull_snapshot", SYNC_OPT_BOOL, pull_snapshot, 0, 0),
    OPT("ack_timeout", SYNC_OPT_LONG, ack_timeout, 1, 86400),
    OPT("poll_ms", SYNC_OPT_LONG, poll_ms, 1, 60000),
    OPT("checkpoint_ms", SYNC_OPT_LONG, checkpoint_ms, 0, 3600000),
    OPT("metrics_file", SYNC_OPT_STR, metrics_file, 0, 0),
    OPT("metrics_interval", SYNC_OPT_LONG, metrics_interval, 1, 86400),
    OPT("session_expiry", SYNC_OPT_LONG, session_expiry, 0, 0xFFFFFFFFL),
    OPT("keepalive", SYNC_OPT_LONG, keepalive, 5, 65535),
    OPT("retry_min", SYNC_OPT_LONG, retry_min, 1, 3600),
    OPT("retry_max", SYNC_OPT_LONG, retry_max, 1, 86400),
    OPT("log_level", SYNC_OPT_LOGLEVEL, log_level, 0, 0),
    OPT("log_dest", SYNC_OPT_LOGDEST, log_syslog, 0, 0),
};
#undef OPT
#define NOPTS (sizeof edge_opts / sizeof edge_opts[0])

void edge_config_init(edge_config *c)
{
    memset(c, 0, sizeof *c);
    c->replica = 1;
    c->rebuild_corrupt = 1;
    c->batch_max = 500;
    c->batch_bytes = 256 * 1024;
    c->max_value = 1024 * 1024;
    c->pull_rows = 5000;
    c->catchup_cache_kb = 8192;
    c->pull_snapshot = 1;
    c->ack_timeout = 30;
    c->poll_ms = 50;
    c->checkpoint_ms = 50;
    c->metrics_interval = 15;
    c->session_expiry = 7 * 24 * 3600;
    c->keepalive = 30;
    c->retry_min = 1;
    c->retry_max = 60;
    c->log_level = SYNC_LOG_INFO;
}

void edge_config_free(edge_config *c)
{
    sync_conf_free(edge_opts, NOPTS, c);
}

int edge_config_set(void *ctx, const char *key, const char *value, char *err, size_t errlen)
{
    return sync_conf_set(edge_opts, NOPTS, ctx, "syncedge", key, value, err, errlen);
}

int edge_config_finish(edge_config *c, char *err, size_t errlen)
{
    const char *missing = !c->database ? "database"
                          : !c->schema ? "schema"
                          : !c->tenant ? "tenant"
                          : !c->device ? "device"
                                       : NULL;
    if (missing)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Error: '%s' is required (config file or --%s)", missing, missing);
    if (!sync_id_valid(c->tenant, strlen(c->tenant)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid tenant value (%s): 1-64 of A-Z a-z 0-9 _ . -", c->tenant);
    if (!sync_id_valid(c->device, strlen(c->device)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid device value (%s): 1-64 of A-Z a-z 0-9 _ . -", c->device);
    if (c->retry_max < c->retry_min)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "retry_max (%ld) is below retry_min (%ld)",
                           c->retry_max, c->retry_min);
    int rc = SYNC_OK;
    if (!c->broker)
        rc = sync_conf_str(&c->broker, "ssl://127.0.0.1:8883", err, errlen);
    if (rc == SYNC_OK && !c->client_id)
        rc = sync_conf_str(&c->client_id, c->device, err, errlen);
    if (rc == SYNC_OK && !c->username)
        rc = sync_conf_str(&c->username, c->device, err, errlen);
    return rc;
}

int edge_config_syncs(const edge_config *c, const char *name)
{
    if (!c->tables || !*c->tables)
        return 1;
    size_t n = strlen(name);
    for (const char *p = c->tables; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && strncmp(p, name, n) == 0)
            return 1;
        p = e;
    }
    return 0;
}
