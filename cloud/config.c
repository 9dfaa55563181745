/* config.c - synccloud's configuration keys (see config.h and docs/operations.md). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/conf.h"
#include "sync/err.h"
#include "sync/log.h"
#include "sync/schema.h"
#include "sync/topic.h"
#include "store.h"

const char cloud_config_help[] =
    "Usage: synccloud [-c FILE] [--KEY VALUE ...] [--checksum] [-v] [-h]\n"
    "\n"
    "Consumes the change batches of every device of a tenant from the broker, applies them\n"
    "with version and conflict checks to its store, acknowledges them, and publishes the\n"
    "applied changes downstream (deltas, retained row states, JSON events).\n"
    "\n"
    "Every config-file key KEY is also the flag --KEY (with '-' for '_'):\n"
    "  database FILE|URL    the store (required): an SQLite file, or a PostgreSQL database\n"
    "                       (postgresql://USER@HOST/DB or 'host=H dbname=DB ...')\n"
    "  schema FILE          schema file shared with the edges (required)\n"
    "  tenant ID            tenant id (required)\n"
    "  broker URI           broker, e.g. ssl://127.0.0.1:8883 (default)\n"
    "  client_id ID         MQTT client id (default synccloud-TENANT; unique per process)\n"
    "  shared_group NAME    consume as one of several synccloud processes on one PostgreSQL\n"
    "                       store: subscribe through $share/NAME/... so the broker hands\n"
    "                       each message to one member of the group (default: alone)\n"
    "  username NAME        broker user name (default synccloud)\n"
    "  password_file FILE   file holding the broker password (mode 0600)\n"
    "  cafile FILE          CA certificate(s) to verify the broker\n"
    "  certfile FILE        client certificate (mutual TLS)\n"
    "  keyfile FILE         client private key (mutual TLS)\n"
    "  tls_insecure BOOL    skip the broker host name check (default false; testing only)\n"
    "  publish_rows BOOL    publish retained row states (default true)\n"
    "  events LEVEL         JSON events: none, batches (batches, conflicts, rejections)\n"
    "                       or changes (also the applied changes, one event per\n"
    "                       transaction; default)\n"
    "  sync_full BOOL       fsync every commit before acking (default true)\n"
    "  max_records N        change records accepted per batch (default 10000)\n"
    "  max_value BYTES      bytes accepted per text or blob value (default 1048576)\n"
    "  max_batch_bytes N    bytes accepted per batch message (default 16777216)\n"
    "  max_tx_batches N     batches committed in one transaction (default 64)\n"
    "  pull_rows N          rows per catch-up page (default 5000)\n"
    "  pull_bytes N         bytes per catch-up page (default 1048576)\n"
    "  head_interval SEC    republish the retained head this often (default 10)\n"
    "  stats_interval SEC   publish retained statistics this often (default 5; 0: never)\n"
    "  metrics_file FILE    write Prometheus metrics there (textfile collector; *.prom)\n"
    "  metrics_interval SEC rewrite metrics_file this often (default 15)\n"
    "  registry FILE        syncctl's device registry (registry.db): apply batches only from\n"
    "                       devices active in it for this tenant; others are dropped unacked\n"
    "  tombstone_retention SEC  keep tombstones of deleted rows this long (default 2592000,\n"
    "                       30 days; 0 keeps them forever); replicas away longer resync\n"
    "                       the table in full\n"
    "  compact_interval SEC look for tombstones to compact this often (default 3600)\n"
    "  session_expiry SEC   broker keeps our session this long offline (default 86400;\n"
    "                       0 with shared_group)\n"
    "  max_inflight N       QoS 1 publishes outstanding at once (default 1000)\n"
    "  keepalive SEC        MQTT keepalive (default 30)\n"
    "  retry_min SEC        first reconnect delay (default 1)\n"
    "  retry_max SEC        largest reconnect delay (default 30)\n"
    ;

const char cloud_config_help_more[] =
    "  receive WHO TABLES   tables WHO gets downstream (repeatable); WHO: a device id,\n"
    "                       role:NAME (see role) or *; TABLES: t1,t2 or *. Without any\n"
    "                       receive line every device gets every table\n"
    "  write WHO TABLES     tables WHO may change (repeatable; same forms). Without any\n"
    "                       write line every device may write every table\n"
    "                       TABLE=V1|V2 gives only those partitions of a partitioned table;\n"
    "                       a value is a literal, $device (the device id) or $NAME (the\n"
    "                       device's attribute NAME)\n"
    "  partition TABLE COL  split TABLE into partitions by the NOT NULL integer or text\n"
    "                       column COL (repeatable; docs/protocol.md, Partitions)\n"
    "  attr DEVICE NAME VALUE  an attribute of a device, for $NAME (repeatable)\n"
    "  policy TABLE P [resurrect]  conflict policy of a table (repeatable): lww (default),\n"
    "                       server-wins, priority, merge or manual; resurrect lets a winning\n"
    "                       update bring a deleted row back\n"
    "  role DEVICE ROLE     the role of a device, for the priority policy (repeatable)\n"
    "  priority ROLES       roles by rank, highest first, comma-separated (e.g. manager,clerk)\n"
    "  log_level LEVEL      debug, info, notice, warning or error (default info)\n"
    "  log_dest DEST        stderr or syslog (default stderr)\n"
    "\n"
    "Other flags:\n"
    "  -c, --config FILE    read KEY VALUE lines from FILE (flags override it)\n"
    "  --checksum           print TABLE ROWS SHA256 of the live rows of each table and exit\n"
    "  -v, --verbose        same as --log-level debug\n"
    "  -h, --help           this help\n"
    "  --version            print the version\n";

#define OPT(k, t, f, lo, hi)                                                                       \
    {                                                                                              \
        k, t, offsetof(cloud_config, f), lo, hi                                                    \
    }
static const sync_opt cloud_opts[] = {
    OPT("database", SYNC_OPT_STR, database, 0, 0),
    OPT("registry", SYNC_OPT_STR, registry, 0, 0),
    OPT("schema", SYNC_OPT_STR, schema, 0, 0),
    OPT("tenant", SYNC_OPT_STR, tenant, 0, 0),
    OPT("broker", SYNC_OPT_STR, broker, 0, 0),
    OPT("client_id", SYNC_OPT_STR, client_id, 0, 0),
    OPT("shared_group", SYNC_OPT_STR, shared_group, 0, 0),
    OPT("username", SYNC_OPT_STR, username, 0, 0),
    OPT("password_file", SYNC_OPT_STR, password_file, 0, 0),
    OPT("cafile", SYNC_OPT_STR, cafile, 0, 0),
    OPT("certfile", SYNC_OPT_STR, certfile, 0, 0),
    OPT("keyfile", SYNC_OPT_STR, keyfile, 0, 0),
    OPT("tls_insecure", SYNC_OPT_BOOL, tls_insecure, 0, 0),
    OPT("publish_rows", SYNC_OPT_BOOL, publish_rows, 0, 0),
    OPT("sync_full", SYNC_OPT_BOOL, sync_full, 0, 0),
    OPT("max_records", SYNC_OPT_LONG, max_records, 1, 1000000),
    OPT("max_value", SYNC_OPT_LONG, max_value, 16, 256L * 1024 * 1024),
    OPT("max_batch_bytes", SYNC_OPT_LONG, max_batch_bytes, 1024, 256L * 1024 * 1024),
    OPT("max_tx_batches", SYNC_OPT_LONG, max_tx_batches, 1, 100000),
    OPT("pull_rows", SYNC_OPT_LONG, pull_rows, 1, 100000),
    OPT("pull_bytes", SYNC_OPT_LONG, pull_bytes, 4096, 64L * 1024 * 1024),
    OPT("head_interval", SYNC_OPT_LONG, head_interval, 1, 86400),
    OPT("stats_interval", SYNC_OPT_LONG, stats_interval, 0, 86400),
    OPT("metrics_file", SYNC_OPT_STR, metrics_file, 0, 0),
    OPT("metrics_interval", SYNC_OPT_LONG, metrics_interval, 1, 86400),
    OPT("tombstone_retention", SYNC_OPT_LONG, tombstone_retention, 0, 100L * 365 * 86400),
    OPT("compact_interval", SYNC_OPT_LONG, compact_interval, 1, 86400 * 30),
    OPT("session_expiry", SYNC_OPT_LONG, session_expiry, 0, 0xFFFFFFFFL),
    OPT("keepalive", SYNC_OPT_LONG, keepalive, 5, 65535),
    OPT("retry_min", SYNC_OPT_LONG, retry_min, 1, 3600),
    OPT("retry_max", SYNC_OPT_LONG, retry_max, 1, 86400),
    OPT("max_inflight", SYNC_OPT_LONG, max_inflight, 1, 65535),
    OPT("log_level", SYNC_OPT_LOGLEVEL, log_level, 0, 0),
    OPT("log_dest", SYNC_OPT_LOGDEST, log_syslog, 0, 0),
    OPT("priority", SYNC_OPT_STR, priority, 0, 0),
};
#undef OPT
#define NOPTS (sizeof cloud_opts / sizeof cloud_opts[0])

void cloud_config_init(cloud_config *c)
{
    memset(c, 0, sizeof *c);
    c->publish_rows = 1;
    c->events = 2;
    c->sync_full = 1;
    c->max_records = 10000;
    c->max_value = 1024 * 1024;
    c->max_batch_bytes = 16L * 1024 * 1024;
    c->max_tx_batches = 64;
    c->pull_rows = 5000;
    c->pull_bytes = 1024 * 1024;
    c->head_interval = 10;
    c->stats_interval = 5;
    c->metrics_interval = 15;
    c->tombstone_retention = 30L * 86400;
    c->compact_interval = 3600;
    c->session_expiry = -1; /* unset: see cloud_config_finish */
    c->keepalive = 30;
    c->retry_min = 1;
    c->retry_max = 30;
    c->max_inflight = 1000;
    c->log_level = SYNC_LOG_INFO;
}

void cloud_config_free(cloud_config *c)
{
    sync_conf_free(cloud_opts, NOPTS, c);
    free(c->rules);
    free(c->roles);
    free(c->grants);
    free(c->parts);
    free(c->attrs);
    c->rules = NULL;
    c->roles = NULL;
    c->grants = NULL;
    c->parts = NULL;
    c->attrs = NULL;
    c->nrules = c->nroles = c->ngrants = c->nparts = c->nattrs = 0;
}

static const char *const policy_names[] = {"lww", "server-wins", "priority", "merge", "manual"};

static int add_rule(cloud_config *c, const char *value, char *err, size_t errlen)
{
    char table[128], policy[32], extra[32];
    extra[0] = '\0';
    int n = sscanf(value, "%127s %31s %31s", table, policy, extra);
    if (n < 2 || (n == 3 && strcmp(extra, "resurrect") != 0))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid policy value (%s): expected 'TABLE POLICY [resurrect]'", value);
    cloud_table_rule r;
    memset(&r, 0, sizeof r);
    if (strlen(table) > SYNC_MAX_NAME)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid policy value (%s): table name "
                           "too long",
                           value);
    memcpy(r.table, table, strlen(table) + 1); /* length checked above */
    int found = 0;
    for (int i = 0; i < 5; i++) {
        if (strcmp(policy, policy_names[i]) == 0) {
            r.policy = (cloud_policy)i;
            found = 1;
        }
    }
    if (!found)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid policy value (%s): '%s' is not lww, server-wins, priority, "
                           "merge or manual",
                           value, policy);
    r.resurrect = n == 3;
    cloud_table_rule *nr = realloc(c->rules, (size_t)(c->nrules + 1) * sizeof *nr);
    if (!nr)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    c->rules = nr;
    for (int i = 0; i < c->nrules; i++)
        if (strcmp(c->rules[i].table, r.table) == 0)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid policy value (%s): table '%s' already has a policy", value,
                               r.table);
    c->rules[c->nrules++] = r;
    return SYNC_OK;
}

static int add_role(cloud_config *c, const char *value, char *err, size_t errlen)
{
    char device[128], role[128];
    if (sscanf(value, "%127s %127s", device, role) != 2 || !sync_id_valid(device, strlen(device)) ||
        !sync_id_valid(role, strlen(role)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid role value (%s): expected 'DEVICE ROLE', both ids", value);
    cloud_role *nr = realloc(c->roles, (size_t)(c->nroles + 1) * sizeof *nr);
    if (!nr)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    c->roles = nr;
    /* Both were checked to be ids of at most SYNC_MAX_ID bytes. */
    memcpy(c->roles[c->nroles].device, device, strlen(device) + 1);
    memcpy(c->roles[c->nroles].role, role, strlen(role) + 1);
    c->nroles++;
    return SYNC_OK;
}

/* `receive WHO TABLES` / `write WHO TABLES`: WHO a device id, role:NAME or *; TABLES a
 * comma-separated list of tables or *. Table names are checked against the schema later
 * (cloud_config_check_schema). */
static int add_grant(cloud_config *c, int write, const char *value, char *err, size_t errlen)
{
    const char *key = write ? "write" : "receive";
    char who[128], tables[1024], extra[8];
    int n = sscanf(value, "%127s %1023s %7s", who, tables, extra);
    if (n != 2)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid %s value (%s): expected 'WHO TABLE[,TABLE...]' (WHO: a device "
                           "id, role:NAME or *; TABLE: a table or *)",
                           key, value);
    const char *id = strncmp(who, "role:", 5) == 0 ? who + 5 : who;
    if (strcmp(who, "*") != 0 && !sync_id_valid(id, strlen(id)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid %s value (%s): '%s' is not a device id, role:NAME or *", key,
                           value, who);
    for (const char *p = tables; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t tlen = eq ? (size_t)(eq - p) : len;
        if (tlen == 0 || tlen > SYNC_MAX_NAME)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid %s value (%s): empty or too long table name", key, value);
        if (eq) {
            /* TABLE=V1|V2: no empty value; the values are checked against the column later. */
            size_t vlen = len - tlen - 1, at = 0;
            const char *v = eq + 1;
            int bad = vlen == 0 || v[0] == '|' || v[vlen - 1] == '|';
            for (; !bad && at + 1 < vlen; at++)
                bad = v[at] == '|' && v[at + 1] == '|';
            if (bad)
                return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                                   "Invalid %s value (%s): '%.*s' needs values after '=', "
                                   "separated by '|'",
                                   key, value, (int)len, p);
        }
        p += len + (e ? 1 : 0);
        if (e && !*p)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid %s value (%s): trailing comma", key, value);
    }
    cloud_grant *ng = realloc(c->grants, (size_t)(c->ngrants + 1) * sizeof *ng);
    if (!ng)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    c->grants = ng;
    cloud_grant *g = &c->grants[c->ngrants++];
    memset(g, 0, sizeof *g);
    g->write = write;
    /* Both fit: who is "*", or an id of at most SYNC_MAX_ID bytes after "role:"; tables was
     * read with the field's size. */
    memcpy(g->who, who, strlen(who) + 1);
    memcpy(g->tables, tables, strlen(tables) + 1);
    return SYNC_OK;
}

/* `partition TABLE COLUMN` (checked against the schema later). */
static int add_partition(cloud_config *c, const char *value, char *err, size_t errlen)
{
    char table[128], column[128], extra[8];
    if (sscanf(value, "%127s %127s %7s", table, column, extra) != 2 ||
        strlen(table) > SYNC_MAX_NAME || strlen(column) > SYNC_MAX_NAME)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid partition value (%s): expected 'TABLE COLUMN'", value);
    for (int i = 0; i < c->nparts; i++)
        if (strcmp(c->parts[i].table, table) == 0)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid partition value (%s): table '%s' already has a "
                               "partition column",
                               value, table);
    cloud_partition *np = realloc(c->parts, (size_t)(c->nparts + 1) * sizeof *np);
    if (!np)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    c->parts = np;
    memcpy(np[c->nparts].table, table, strlen(table) + 1);
    memcpy(np[c->nparts].column, column, strlen(column) + 1);
    c->nparts++;
    return SYNC_OK;
}

/* `attr DEVICE NAME VALUE`: VALUE is the rest of the line (a partition value). */
static int add_attr(cloud_config *c, const char *value, char *err, size_t errlen)
{
    char device[128], name[128];
    int off = 0;
    if (sscanf(value, "%127s %127s %n", device, name, &off) != 2 || off == 0 ||
        !sync_id_valid(device, strlen(device)) || !sync_id_valid(name, strlen(name)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid attr value (%s): expected 'DEVICE NAME VALUE' (DEVICE and "
                           "NAME ids)",
                           value);
    const char *v = value + off;
    size_t vlen = strlen(v);
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (vlen == 0)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid attr value (%s): expected 'DEVICE NAME VALUE'", value);
    if (vlen >= sizeof c->attrs->value || memchr(v, '|', vlen) || memchr(v, ',', vlen))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid attr value (%s): VALUE must be 1-255 bytes without '|' or ','",
                           value);
    for (int i = 0; i < c->nattrs; i++)
        if (strcmp(c->attrs[i].device, device) == 0 && strcmp(c->attrs[i].name, name) == 0)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid attr value (%s): device '%s' already has '%s'", value,
                               device, name);
    cloud_attr *na = realloc(c->attrs, (size_t)(c->nattrs + 1) * sizeof *na);
    if (!na)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    c->attrs = na;
    cloud_attr *a = &na[c->nattrs++];
    memcpy(a->device, device, strlen(device) + 1);
    memcpy(a->name, name, strlen(name) + 1);
    memcpy(a->value, v, vlen);
    a->value[vlen] = '\0';
    return SYNC_OK;
}

int cloud_config_int(const char *s, size_t n, long long *out)
{
    char num[32], *end = NULL;
    if (n == 0 || n >= sizeof num)
        return 0;
    memcpy(num, s, n);
    num[n] = '\0';
    errno = 0;
    long long x = strtoll(num, &end, 10);
    if (*end || end == num || errno == ERANGE)
        return 0;
    *out = x;
    return 1;
}

const char *cloud_config_partition(const cloud_config *c, const char *table)
{
    for (int i = 0; i < c->nparts; i++)
        if (strcmp(c->parts[i].table, table) == 0)
            return c->parts[i].column;
    return NULL;
}

const char *cloud_config_attr(const cloud_config *c, const char *device, const char *name)
{
    for (int i = 0; i < c->nattrs; i++)
        if (strcmp(c->attrs[i].device, device) == 0 && strcmp(c->attrs[i].name, name) == 0)
            return c->attrs[i].value;
    return NULL;
}

const char *cloud_config_role(const cloud_config *c, const char *device)
{
    const char *role = NULL;
    for (int i = 0; i < c->nroles; i++)
        if (strcmp(c->roles[i].device, device) == 0)
            role = c->roles[i].role;
    return role;
}

cloud_table_rule cloud_config_rule(const cloud_config *c, const char *table)
{
    for (int i = 0; i < c->nrules; i++)
        if (strcmp(c->rules[i].table, table) == 0)
            return c->rules[i];
    cloud_table_rule def;
    memset(&def, 0, sizeof def);
    snprintf(def.table, sizeof def.table, "%s", table);
    return def;
}

int cloud_config_rank(const cloud_config *c, const char *device)
{
    const char *role = NULL;
    for (int i = 0; i < c->nroles; i++)
        if (strcmp(c->roles[i].device, device) == 0)
            role = c->roles[i].role;
    int rank = 0;
    size_t rl = role ? strlen(role) : 0;
    for (const char *p = c->priority; role && p && *p; rank++) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == rl && strncmp(p, role, n) == 0)
            return rank;
        if (!e)
            break;
        p = e + 1;
    }
    return 1 << 20; /* unranked */
}

int cloud_config_check_schema(const cloud_config *c, const struct sync_schema *s, char *err,
                              size_t errlen)
{
    for (int i = 0; i < c->nrules; i++)
        if (!sync_schema_find(s, c->rules[i].table, strlen(c->rules[i].table)))
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "policy for table '%s', which the schema does not declare",
                               c->rules[i].table);
    for (int i = 0; i < c->nparts; i++) {
        const cloud_partition *pt = &c->parts[i];
        const sync_table *t = sync_schema_find(s, pt->table, strlen(pt->table));
        if (!t)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "partition %s %s: the schema declares no table '%s'", pt->table,
                               pt->column, pt->table);
        int col = sync_table_col(t, pt->column, strlen(pt->column));
        if (col < 0)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "partition %s %s: table '%s' has no column '%s'", pt->table,
                               pt->column, pt->table, pt->column);
        const sync_column *cd = &t->cols[col];
        if (col == t->key || !cd->notnull ||
            (cd->type != SYNC_INT && cd->type != SYNC_TEXT))
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "partition %s %s: the partition column must be an integer or text "
                               "column declared notnull, and not the key",
                               pt->table, pt->column);
    }
    for (int i = 0; i < c->ngrants; i++) {
        const char *p = c->grants[i].tables;
        const char *kind = c->grants[i].write ? "write" : "receive";
        if (strcmp(p, "*") == 0)
            continue;
        while (*p) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            const char *eq = memchr(p, '=', len);
            size_t tlen = eq ? (size_t)(eq - p) : len;
            const sync_table *t = sync_schema_find(s, p, tlen);
            if (!t)
                return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                                   "%s %s: the schema declares no table '%.*s'", kind,
                                   c->grants[i].who, (int)tlen, p);
            const char *pcol = cloud_config_partition(c, t->name);
            if (eq && !pcol)
                return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                                   "%s %s: '%.*s' names partitions of '%s', which has no "
                                   "partition line",
                                   kind, c->grants[i].who, (int)len, p, t->name);
            for (const char *v = eq ? eq + 1 : p + len; v < p + len;) {
                const char *bar = memchr(v, '|', (size_t)(p + len - v));
                size_t vlen = bar ? (size_t)(bar - v) : (size_t)(p + len - v);
                int col = sync_table_col(t, pcol, strlen(pcol));
                long long x;
                if (v[0] != '$' && t->cols[col].type == SYNC_INT && !cloud_config_int(v, vlen, &x))
                    return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                                       "%s %s: '%.*s' is not an integer, and partition "
                                       "column '%s' of '%s' is one",
                                       kind, c->grants[i].who, (int)vlen, v, pcol, t->name);
                v += vlen + 1;
            }
            p += len + (e ? 1 : 0);
        }
    }
    return SYNC_OK;
}

int cloud_config_set(void *ctx, const char *key, const char *value, char *err, size_t errlen)
{
    cloud_config *c = ctx;
    if (strcmp(key, "policy") == 0)
        return add_rule(c, value, err, errlen);
    if (strcmp(key, "role") == 0)
        return add_role(c, value, err, errlen);
    if (strcmp(key, "receive") == 0 || strcmp(key, "write") == 0)
        return add_grant(c, key[0] == 'w', value, err, errlen);
    if (strcmp(key, "partition") == 0)
        return add_partition(c, value, err, errlen);
    if (strcmp(key, "attr") == 0)
        return add_attr(c, value, err, errlen);
    if (strcmp(key, "events") == 0) {
        static const char *const levels[] = {"none", "batches", "changes"};
        for (int i = 0; i < 3; i++) {
            if (strcmp(value, levels[i]) == 0) {
                c->events = i;
                return SYNC_OK;
            }
        }
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid events value (%s): none, batches or changes", value);
    }
    return sync_conf_set(cloud_opts, NOPTS, ctx, "synccloud", key, value, err, errlen);
}

int cloud_config_finish(cloud_config *c, char *err, size_t errlen)
{
    const char *missing = !c->database ? "database"
                          : !c->schema ? "schema"
                          : !c->tenant ? "tenant"
                                       : NULL;
    if (missing)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Error: '%s' is required (config file or --%s)", missing, missing);
    if (!sync_id_valid(c->tenant, strlen(c->tenant)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid tenant value (%s): 1-64 of A-Z a-z 0-9 _ . -", c->tenant);
    if (c->retry_max < c->retry_min)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "retry_max (%ld) is below retry_min (%ld)",
                           c->retry_max, c->retry_min);
    if (c->shared_group && !sync_id_valid(c->shared_group, strlen(c->shared_group)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid shared_group value (%s): 1-64 of A-Z a-z 0-9 _ . -",
                           c->shared_group);
    if (c->shared_group && !cloud_store_is_pg(c->database))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "shared_group needs a PostgreSQL store: an SQLite file (%s) is for "
                           "one synccloud process only",
                           c->database);
    /* A shared group's member keeps no session: Mosquitto goes on handing a member with a
     * persistent session its share of batches and pulls while it is offline, where they wait
     * for it instead of going to a member that runs (measured: a third of the batches stalled
     * until the edges resent them). Alone, a session lets batches wait for us at the broker. */
    if (c->session_expiry < 0)
        c->session_expiry = c->shared_group ? 0 : 86400;
    int rc = SYNC_OK;
    if (!c->broker)
        rc = sync_conf_str(&c->broker, "ssl://127.0.0.1:8883", err, errlen);
    if (rc == SYNC_OK && !c->username)
        rc = sync_conf_str(&c->username, "synccloud", err, errlen);
    if (rc == SYNC_OK && !c->client_id) {
        char id[128];
        snprintf(id, sizeof id, "synccloud-%s", c->tenant);
        rc = sync_conf_str(&c->client_id, id, err, errlen);
    }
    return rc;
}
