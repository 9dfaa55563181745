/* bench_pipeline.c - the pipeline measured against the raw speed of its parts, on this machine,
 * in one run (scripts/bench.sh builds it in Release and runs it; docs/performance.md).
 *
 * Real processes only, as in the tests: the development Mosquitto (TLS, passwords, ACL) on a
 * free loopback port, synccloud on SQLite with its default settings (fsync before every ack,
 * retained row and JSON event per change), writer edges whose application is this program
 * (plain SQL through the sqlite3 API into the edge's own database), and replica edges.
 *
 * Measured, in this order:
 *  1. ceilings: Paho QoS 1 publish->receive messages/s through the same broker for a payload
 *     the size of one change; SQLite upserts/s (WAL, synchronous FULL as the cloud's store, one
 *     prepared statement, 500 rows per transaction) for the same sequence of inserts and
 *     updates the pipeline runs;
 *  2. throughput: changes/s from the first application commit on the writer edge(s) until a
 *     replica edge holds every change (and the time the cloud had applied them all), with one
 *     writer edge and with ten; pipeline_ratio = one edge's changes/s / the SQLite ceiling;
 *  3. latency at a steady 1,000 changes/s: application commit on edge-a -> the replica's apply
 *     (a trigger in the replica's database records each applied change; an inotify watch reads
 *     it at once), p50/p99/max;
 *  4. bootstrap: a new, empty replica until it holds the whole table;
 *  5. footprint: syncedge's RSS idle, and its peak while draining a backlog, beside a bare Paho
 *     MQTTAsync TLS client's RSS (tests/bench/paho_idle.c) connected to the same broker;
 *  6. payload bytes of one change (a one-column update; a ten-column insert) beside the same
 *     record as JSON;
 *  7. CPU: instructions per change of syncedge draining a backlog and of synccloud applying it
 *     (valgrind --tool=callgrind; a run with nothing to do is subtracted).
 * Prints a table and one machine-readable line starting with "bench:".
 *
 * Usage: bench_pipeline [--quick] [--skip-callgrind]
 *
 * Environment, to look into one part (docs/performance.md shows what each found):
 *   BENCH_CLOUD_ARGS="--events batches ..."  more synccloud flags, to compare settings
 *   BENCH_EDGE_ARGS="--pull-rows 5000"       more syncedge flags (every edge)
 *   BENCH_LOG_LEVEL=debug                    the daemons' log level (logs kept with TH_KEEP=1)
 *   BENCH_THROUGHPUT_ONLY=1 / BENCH_LATENCY_ONLY=1 / BENCH_CEILING_ONLY=1 /
 *   BENCH_BOOTSTRAP_ONLY=1 / BENCH_CALLGRIND_ONLY=1  one part only
 *   BENCH_INFLIGHT=N                         the MQTT ceiling's publish window (default 1000)
 *   BENCH_TRACE=1                            print the application's statements over 2 ms
 *   BENCH_LAT_DUMP=1                         print every latency sample (commit time, ms)
 *   BENCH_BOOTSTRAP_PRE=N                    with BENCH_BOOTSTRAP_ONLY: N changes before it
 *   BENCH_BOOTSTRAP_CALLGRIND=FILE           run the bootstrap's new replica under callgrind
 *                                            and print its instructions per row
 *   BENCH_DEFAULT_BUSY=1                     SQLite's busy_timeout for the application instead
 *                                            of a 0.2 ms retry loop
 */
#include "harness.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/log.h"
#include "sync/mqtt.h"
#include "sync/record.h"

#ifndef SYNCEDGE_BIN
#error "SYNCEDGE_BIN must be defined by the build"
#endif
#ifndef SYNCCLOUD_BIN
#error "SYNCCLOUD_BIN must be defined by the build"
#endif
#ifndef PAHO_IDLE_BIN
#error "PAHO_IDLE_BIN must be defined by the build"
#endif

#define BP_WRITERS 10   /* edge-a .. edge-j */
#define BP_TX 100       /* changes per application transaction (throughput runs) */
#define BP_RAW_TX 500   /* rows per transaction of the SQLite ceiling (the edge's batch_max) */
#define BP_MAX_ARGS 40  /* argv entries of a daemon */
#define BP_WAIT_S 600   /* longest wait for anything */
#define BP_LAT_RATE 1000 /* changes/s of the latency run */

/* ---- run sizes ---- */

typedef struct params {
    long thr_changes; /* per throughput run */
    long lat_seconds; /* of the latency run */
    long boot_rows;   /* rows of the bootstrap table */
    long drain;       /* backlog drained for the footprint */
    long cg_changes;  /* backlog of the callgrind runs */
    long mqtt_msgs;   /* messages of the MQTT ceiling */
} params;

static const params FULL = {100000, 10, 100000, 100000, 2000, 100000};
static const params QUICK = {20000, 3, 20000, 20000, 400, 20000};

/* ---- processes ---- */

typedef struct args {
    char *v[BP_MAX_ARGS + 1];
    int n;
} args;

static void args_add(args *a, const char *s)
{
    TH_CHECK(a->n < BP_MAX_ARGS, "too many arguments");
    a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
}

/* A workload of one writer: its own key range, and the rows it holds (to pick updates and to
 * know what the replicas must end with). */
typedef struct workload {
    long long id_base; /* its ids are id_base + 1 .. */
    long long next;    /* ids used so far */
    long long *ids;    /* live rows */
    int *qty;          /* their qty */
    size_t n, cap;
    long long qty_sum;
    uint64_t rng;
} workload;

typedef struct edge {
    const char *name; /* device id */
    const char *db;
    const char *log;
    pid_t pid;
    sqlite3 *app;                 /* the application's connection (writers) */
    sqlite3_stmt *ins, *upd;      /* its statements */
    workload w;
} edge;

static struct {
    params p;
    int skip_callgrind;
    const char *dir, *schema, *broker;
    int port;
    pid_t broker_pid;
    const char *cloud_db, *cloud_log;
    pid_t cloud_pid;
    edge writers[BP_WRITERS];
    edge replica; /* edge-r: holds every change; the throughput and latency runs read it */
    sqlite3 *rdb; /* our read connection to the replica's database */
    sqlite3 *cdb; /* our read connection to the cloud's store */
} B;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static int connected_pred(void *ctx)
{
    return file_has(ctx, "mqtt: connected");
}

static void wait_connected(const char *log, const char *who)
{
    TH_CHECK(th_wait_until(connected_pred, (void *)log, 30000) == 0, "%s never connected", who);
}

/* VmRSS or VmHWM of pid, in kB (-1 if unknown). */
static long proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = atol(line + n + 1);
            break;
        }
    fclose(f);
    return kb;
}

/* CPU seconds (user + system) pid has used so far; -1 if unknown. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Adds the space-separated words of `extra` (NULL: none) to a. */
static void add_words(args *a, const char *extra)
{
    if (!extra || !*extra)
        return;
    char *copy = (char *)th_fmt("%s", extra), *save = NULL;
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
        args_add(a, w);
}

static args edge_args(const char *device, const char *db)
{
    args a = {{NULL}, 0};
    args_add(&a, SYNCEDGE_BIN);
    args_add(&a, "--database");
    args_add(&a, db);
    args_add(&a, "--schema");
    args_add(&a, B.schema);
    args_add(&a, "--tenant");
    args_add(&a, "demo");
    args_add(&a, "--device");
    args_add(&a, device);
    args_add(&a, "--broker");
    args_add(&a, B.broker);
    args_add(&a, "--password-file");
    args_add(&a, th_fmt("%s/%s.pass", B.dir, device));
    args_add(&a, "--cafile");
    args_add(&a, th_fmt("%s/ca.crt", B.dir));
    /* Writers only write: every edge replicating every change would multiply the replica work
     * by the number of edges on this one machine. edge-r (and edge-s) replicate. */
    args_add(&a, "--replica");
    args_add(&a, strcmp(device, "edge-r") == 0 || strcmp(device, "edge-s") == 0 ? "true" : "false");
    if (getenv("BENCH_LOG_LEVEL")) {
        args_add(&a, "--log-level");
        args_add(&a, getenv("BENCH_LOG_LEVEL"));
    }
    add_words(&a, getenv("BENCH_EDGE_ARGS"));
    return a;
}

static args cloud_args(void)
{
    args a = {{NULL}, 0};
    args_add(&a, SYNCCLOUD_BIN);
    args_add(&a, "--database");
    args_add(&a, B.cloud_db);
    args_add(&a, "--schema");
    args_add(&a, B.schema);
    args_add(&a, "--tenant");
    args_add(&a, "demo");
    args_add(&a, "--broker");
    args_add(&a, B.broker);
    args_add(&a, "--password-file");
    args_add(&a, th_fmt("%s/synccloud.pass", B.dir));
    args_add(&a, "--cafile");
    args_add(&a, th_fmt("%s/ca.crt", B.dir));
    if (getenv("BENCH_LOG_LEVEL")) {
        args_add(&a, "--log-level");
        args_add(&a, getenv("BENCH_LOG_LEVEL"));
    }
    /* More synccloud flags, space-separated (e.g. "--events batches"): to compare settings. */
    add_words(&a, getenv("BENCH_CLOUD_ARGS"));
    return a;
}

/* Prepends valgrind --tool=callgrind to a (when out is not NULL). */
static args under_callgrind(const args *a, const char *out)
{
    args r = {{NULL}, 0};
    if (out) {
        args_add(&r, "valgrind");
        args_add(&r, "--tool=callgrind");
        args_add(&r, "--quiet");
        args_add(&r, th_fmt("--callgrind-out-file=%s", out));
    }
    for (int i = 0; i < a->n; i++)
        args_add(&r, a->v[i]);
    return r;
}

static pid_t spawn(const char *log, const args *a)
{
    th_register_log(log);
    pid_t pid = th_spawn(log, a->v);
    TH_CHECK(pid > 0, "cannot start %s", a->v[0]);
    return pid;
}

static void start_edge(edge *e, const char *callgrind_out)
{
    args a = edge_args(e->name, e->db);
    args r = under_callgrind(&a, callgrind_out);
    e->log = th_fmt("%s/%s.%d.log", B.dir, e->name, rand());
    e->pid = spawn(e->log, &r);
}

static void stop_edge(edge *e)
{
    if (e->pid > 0)
        th_stop(e->pid, e->name, e->log, 1);
    e->pid = 0;
}

static void start_cloud(const char *callgrind_out)
{
    args a = cloud_args();
    args r = under_callgrind(&a, callgrind_out);
    B.cloud_log = th_fmt("%s/synccloud.%d.log", B.dir, rand());
    B.cloud_pid = spawn(B.cloud_log, &r);
}

/* ---- the workload ---- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static void workload_init(workload *w, int index, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->id_base = (long long)(index + 1) * 10000000LL;
    w->rng = seed ? seed : 1;
}

static void workload_free(workload *w)
{
    free(w->ids);
    free(w->qty);
}

/* An update of the qty of a random row of this writer (it has rows). */
static void workload_update(workload *w, long long *id, int *qty)
{
    int q = (int)(rnd(&w->rng) % 1000);
    size_t i = (size_t)(rnd(&w->rng) % w->n);
    if (q == w->qty[i])
        q = (q + 1) % 1000; /* always a real change */
    w->qty_sum += q - w->qty[i];
    w->qty[i] = q;
    *id = w->ids[i];
    *qty = q;
}

/* A new row of this writer. */
static void workload_insert(workload *w, long long *id, int *qty)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        w->ids = realloc(w->ids, w->cap * sizeof *w->ids);
        w->qty = realloc(w->qty, w->cap * sizeof *w->qty);
        TH_CHECK(w->ids && w->qty, "out of memory");
    }
    int q = (int)(rnd(&w->rng) % 1000);
    *id = w->id_base + ++w->next;
    w->ids[w->n] = *id;
    w->qty[w->n++] = q;
    w->qty_sum += q;
    *qty = q;
}

/* One step of the mix: half inserts of new rows, half updates. Sets *id and *qty, returns 1
 * for an insert. */
static int workload_next(workload *w, long long *id, int *qty)
{
    if (w->n > 0 && rnd(&w->rng) % 2 == 0) {
        workload_update(w, id, qty);
        return 0;
    }
    workload_insert(w, id, qty);
    return 1;
}

/* Binds a new row of the mix to an insert (or upsert) of (id, name, qty, price, ...). */
static void bind_new_row(sqlite3_stmt *s, long long id, int qty)
{
    char name[32];
    snprintf(name, sizeof name, "item-%lld", id);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 3, qty);
    sqlite3_bind_double(s, 4, (double)(id % 10000) / 100.0);
}

/* The application's busy handler: retry every 0.2 ms for up to 10 s. SQLite's own
 * busy_timeout sleeps 1, 2, 5, 10, ... ms between tries, so each brief overlap with syncedge's
 * write transactions (an ack: the acknowledged changes leave the outbox) would cost the
 * application several milliseconds. */
static int app_busy(void *ctx, int n)
{
    (void)ctx;
    if (n >= 50000)
        return 0;
    usleep(200);
    return 1;
}

static int app_trace(unsigned type, void *ctx, void *p, void *x)
{
    (void)ctx;
    if (type == SQLITE_TRACE_PROFILE && *(sqlite3_int64 *)x > 2000000) {
        char *sql = sqlite3_expanded_sql((sqlite3_stmt *)p);
        fprintf(stderr, "slow %.1f ms: %.200s\n", (double)*(sqlite3_int64 *)x / 1e6, sql ? sql : "?");
        sqlite3_free(sql);
    }
    return 0;
}

static void app_open(edge *e)
{
    TH_CHECK(sqlite3_open(e->db, &e->app) == SQLITE_OK, "open %s", e->db);
    if (getenv("BENCH_TRACE"))
        sqlite3_trace_v2(e->app, SQLITE_TRACE_PROFILE, app_trace, NULL);
    if (getenv("BENCH_DEFAULT_BUSY"))
        sqlite3_busy_timeout(e->app, 10000);
    else
        sqlite3_busy_handler(e->app, app_busy, NULL);
    char *msg = NULL;
    int rc = sqlite3_exec(e->app,
                          "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, name TEXT, "
                          "qty INTEGER, price REAL, t INTEGER);",
                          NULL, NULL, &msg);
    TH_CHECK(rc == SQLITE_OK, "%s: %s", e->db, msg ? msg : "?");
    TH_CHECK(sqlite3_prepare_v2(e->app,
                                "INSERT INTO items(id, name, qty, price, t) VALUES (?, ?, ?, ?, 0)",
                                -1, &e->ins, NULL) == SQLITE_OK &&
                 sqlite3_prepare_v2(e->app, "UPDATE items SET qty = ?, t = ? WHERE id = ?", -1,
                                    &e->upd, NULL) == SQLITE_OK,
             "prepare: %s", sqlite3_errmsg(e->app));
}

static void app_close(edge *e)
{
    sqlite3_finalize(e->ins);
    sqlite3_finalize(e->upd);
    sqlite3_close(e->app);
    e->app = NULL;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    TH_CHECK(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql,
             msg ? msg : "?");
}

/* Commits n changes of e's workload in one transaction. t_us > 0 stamps updates with it (the
 * latency run); inserts get t = 0. */
static double slow_s, slowest_s; /* time in application transactions over 5 ms */
static long slow_n;

static void app_write(edge *e, long n, double t_us)
{
    double t0 = th_now();
    exec(e->app, "BEGIN");
    for (long i = 0; i < n; i++) {
        long long id;
        int qty;
        sqlite3_stmt *s;
        if (workload_next(&e->w, &id, &qty)) {
            s = e->ins;
            bind_new_row(s, id, qty);
        } else {
            s = e->upd;
            sqlite3_bind_int(s, 1, qty);
            sqlite3_bind_int64(s, 2, t_us > 0 ? (long long)t_us : 0);
            sqlite3_bind_int64(s, 3, id);
        }
        TH_CHECK(sqlite3_step(s) == SQLITE_DONE && sqlite3_changes(e->app) == 1, "write: %s",
                 sqlite3_errmsg(e->app));
        sqlite3_reset(s);
    }
    exec(e->app, "COMMIT");
    double d = th_now() - t0;
    if (d > 0.005) {
        slow_s += d;
        slow_n++;
        if (d > slowest_s)
            slowest_s = d;
    }
}

/* ---- what the replica holds ---- */

static long long expect_rows(void)
{
    long long n = 0;
    for (int i = 0; i < BP_WRITERS; i++)
        n += (long long)B.writers[i].w.n;
    return n;
}

static long long expect_qty(void)
{
    long long s = 0;
    for (int i = 0; i < BP_WRITERS; i++)
        s += B.writers[i].w.qty_sum;
    return s;
}

static int db_holds(sqlite3 *db, long long rows, long long qty)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, "SELECT count(*), coalesce(sum(qty), 0) FROM items", -1, &s,
                           NULL) != SQLITE_OK)
        return 0;
    int ok = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) == rows &&
             sqlite3_column_int64(s, 1) == qty;
    sqlite3_finalize(s);
    return ok;
}

/* One integer from a query on db (-1 on any error). */
static long long q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    long long v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static sqlite3 *cloud_db(void)
{
    if (!B.cdb && sqlite3_open_v2(B.cloud_db, &B.cdb, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(B.cdb);
        B.cdb = NULL;
        return NULL;
    }
    sqlite3_busy_timeout(B.cdb, 1000);
    return B.cdb;
}

static long long cloud_applied(void)
{
    sqlite3 *db = cloud_db();
    return db ? q_int(db, "SELECT coalesce(sum(applied), 0) FROM _sync_devices") : -1;
}

/* Whether a replica's database has taken every change up to the cloud's newest (its cursor),
 * cheaply: counting the table while the pipeline runs would steal the CPU it measures. */
static int replica_at(sqlite3 *db, long long cseq)
{
    return q_int(db, "SELECT cseq FROM _sync_cursor WHERE tbl = 'items'") >= cseq;
}

/* Waits until the replica holds what the writers wrote: first until the cloud has applied
 * `applied_goal` changes (noting when), then until the replica's cursor reaches the cloud's
 * newest change, then checks its content (count and sum) once. Returns the seconds since t0
 * (th_now). */
static double wait_replica(double t0, long long applied_goal, double *cloud_s)
{
    long long rows = expect_rows(), qty = expect_qty();
    *cloud_s = -1;
    long long top = -1;
    for (;;) {
        double now = th_now();
        TH_CHECK(now - t0 < BP_WAIT_S, "the replica never caught up (%lld rows expected)", rows);
        if (*cloud_s < 0) {
            if (cloud_applied() < applied_goal) {
                usleep(2000);
                continue;
            }
            *cloud_s = now - t0;
        }
        if (top < 0)
            top = q_int(cloud_db(), "SELECT coalesce(max(_cseq), 0) FROM items");
        if (!replica_at(B.rdb, top)) {
            usleep(2000);
            continue;
        }
        double done = th_now() - t0;
        /* The cursor says so; the content must agree (else keep waiting: a later delta). */
        if (db_holds(B.rdb, rows, qty))
            return done;
        top = -1;
        usleep(20000);
    }
}

/* ---- 1. ceilings ---- */

/* Paho QoS 1 through the broker: a publisher and a subscriber (the same device user, on its
 * own state topic of another tenant, where nothing else listens). */
static double mqtt_ceiling(size_t payload, long n)
{
    char err[256];
    sync_mqtt *pub = NULL, *sub = NULL;
    char password[256];
    TH_CHECK(th_read_first_line(th_fmt("%s/edge-q.pass", B.dir), password, sizeof password) == 0,
             "password");
    sync_mqtt_opts o;
    sync_mqtt_opts_default(&o);
    o.uri = B.broker;
    o.username = "edge-q";
    o.password = password;
    o.cafile = th_fmt("%s/ca.crt", B.dir);
    o.clean_start = 1;
    o.max_inflight = getenv("BENCH_INFLIGHT") ? atoi(getenv("BENCH_INFLIGHT")) : 1000;
    o.client_id = "bench-sub";
    TH_CHECK(sync_mqtt_new(&o, &sub, err, sizeof err) == SYNC_OK, "%s", err);
    o.client_id = "bench-pub";
    TH_CHECK(sync_mqtt_new(&o, &pub, err, sizeof err) == SYNC_OK, "%s", err);
    const char *topic = "sync/raw/dev/edge-q/state";
    sync_mqtt_subscribe(sub, topic, 1);
    sync_mqtt_start(sub, err, sizeof err);
    sync_mqtt_start(pub, err, sizeof err);
    double t = th_now();
    /* The connection state moves in the owner's polls. */
    while (!(sync_mqtt_connected(sub) && sync_mqtt_connected(pub)) || th_now() - t < 0.5) {
        sync_mqtt_msg_free(sync_mqtt_poll(sub, 10));
        sync_mqtt_msg_free(sync_mqtt_poll(pub, 10));
        TH_CHECK(th_now() - t < 30, "the MQTT ceiling's clients never connected");
    }
    uint8_t *buf = calloc(1, payload);
    TH_CHECK(buf != NULL, "out of memory");
    long sent = 0, got = 0;
    double t0 = th_now();
    while (got < n) {
        while (sent < n) {
            int rc = sync_mqtt_publish(pub, topic, buf, payload, 1, 0);
            if (rc == SYNC_ERR_BUSY)
                break;
            TH_CHECK(rc == SYNC_OK, "publish: %s", sync_strerror(rc));
            sent++;
        }
        sync_mqtt_msg *m = sync_mqtt_poll(sub, 1);
        while (m) {
            sync_mqtt_msg *next = m->next;
            got++;
            sync_mqtt_msg_free(m);
            m = next;
        }
        sync_mqtt_msg_free(sync_mqtt_poll(pub, 0));
        TH_CHECK(th_now() - t0 < BP_WAIT_S, "the MQTT ceiling run stalled (%ld of %ld)", got, n);
    }
    double s = th_now() - t0;
    free(buf);
    sync_mqtt_free(pub);
    sync_mqtt_free(sub);
    return (double)n / s;
}

/* The writers' mix as upserts into a plain table: the same rows, WAL, synchronous FULL (as
 * the cloud's store), one prepared statement, BP_RAW_TX rows per transaction. */
static double sqlite_ceiling(long n)
{
    const char *path = th_fmt("%s/raw.db", B.dir);
    sqlite3 *db;
    TH_CHECK(sqlite3_open(path, &db) == SQLITE_OK, "open %s", path);
    exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
             "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL, "
             "t INTEGER)");
    sqlite3_stmt *s;
    TH_CHECK(sqlite3_prepare_v2(db,
                                "INSERT INTO items(id, name, qty, price, t) VALUES (?, ?, ?, ?, 0) "
                                "ON CONFLICT(id) DO UPDATE SET qty = excluded.qty",
                                -1, &s, NULL) == SQLITE_OK,
             "prepare: %s", sqlite3_errmsg(db));
    workload w;
    workload_init(&w, 0, 42);
    double t0 = th_now();
    for (long done = 0; done < n;) {
        exec(db, "BEGIN");
        for (long i = 0; i < BP_RAW_TX && done < n; i++, done++) {
            long long id;
            int qty;
            workload_next(&w, &id, &qty);
            bind_new_row(s, id, qty);
            TH_CHECK(sqlite3_step(s) == SQLITE_DONE, "upsert: %s", sqlite3_errmsg(db));
            sqlite3_reset(s);
        }
        exec(db, "COMMIT");
    }
    double secs = th_now() - t0;
    sqlite3_finalize(s);
    sqlite3_close(db);
    workload_free(&w);
    return (double)n / secs;
}

/* ---- 2. throughput ---- */

static double throughput(int nwriters, long n, double *cloud_rate)
{
    long long goal = cloud_applied() + n;
    double cpu_app = self_cpu_s(), cpu_cloud = proc_cpu_s(B.cloud_pid),
           cpu_broker = proc_cpu_s(B.broker_pid), cpu_rep = proc_cpu_s(B.replica.pid),
           cpu_w = 0;
    for (int i = 0; i < nwriters; i++)
        cpu_w -= proc_cpu_s(B.writers[i].pid);
    double t0 = th_now();
    long per = n / nwriters;
    /* Round-robin, one transaction at a time, as independent sites would. */
    for (long done = 0; done < per; done += BP_TX)
        for (int i = 0; i < nwriters; i++)
            app_write(&B.writers[i], per - done < BP_TX ? per - done : BP_TX, 0);
    double write_s = th_now() - t0;
    double cloud_s;
    double s = wait_replica(t0, goal, &cloud_s);
    for (int i = 0; i < nwriters; i++)
        cpu_w += proc_cpu_s(B.writers[i].pid);
    say("%d writer%s: %ld changes committed in %.2f s; the cloud had them all after %.2f s, the "
        "replica after %.2f s",
        nwriters, nwriters == 1 ? "" : "s", per * nwriters, write_s, cloud_s, s);
    say("  CPU seconds: application (this program, with the capture triggers) %.2f, syncedge "
        "writer%s %.2f, mosquitto %.2f, synccloud %.2f, replica syncedge %.2f",
        self_cpu_s() - cpu_app, nwriters == 1 ? "" : "s", cpu_w,
        proc_cpu_s(B.broker_pid) - cpu_broker, proc_cpu_s(B.cloud_pid) - cpu_cloud,
        proc_cpu_s(B.replica.pid) - cpu_rep);
    *cloud_rate = (double)(per * nwriters) / cloud_s;
    return (double)(per * nwriters) / s;
}

/* ---- 3. latency ---- */

typedef struct lat {
    double *v;
    size_t n, cap;
    volatile int stop;
    long long last_rowid;
    sqlite3 *db;
    int ifd;
} lat;

static void lat_collect(lat *L)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(L->db, "SELECT rowid, t FROM bench_seen WHERE rowid > ?", -1, &s,
                           NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(s, 1, L->last_rowid);
    double now = wall_us();
    while (sqlite3_step(s) == SQLITE_ROW) {
        L->last_rowid = sqlite3_column_int64(s, 0);
        if (L->n == L->cap) {
            L->cap = L->cap ? 2 * L->cap : 4096;
            L->v = realloc(L->v, L->cap * sizeof *L->v);
            TH_CHECK(L->v != NULL, "out of memory");
        }
        L->v[L->n++] = (now - (double)sqlite3_column_int64(s, 1)) / 1000.0;
        if (getenv("BENCH_LAT_DUMP"))
            fprintf(stderr, "lat %.0f %.3f\n", (double)sqlite3_column_int64(s, 1) / 1000.0,
                    L->v[L->n - 1]);
    }
    sqlite3_finalize(s);
}

static void *lat_main(void *arg)
{
    lat *L = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct pollfd pf = {.fd = L->ifd, .events = POLLIN};
    while (!L->stop) {
        if (poll(&pf, 1, 20) > 0)
            while (read(L->ifd, buf, sizeof buf) > 0)
                ;
        lat_collect(L);
    }
    lat_collect(L);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void latency(long seconds, double *p50, double *p99, double *max, size_t *count)
{
    /* The replica notes each change it applies, with the writer's commit time. */
    exec(B.rdb, "CREATE TABLE IF NOT EXISTS bench_seen(t INTEGER);"
                "CREATE TRIGGER IF NOT EXISTS bench_seen_u AFTER UPDATE ON items WHEN NEW.t > 0 "
                "BEGIN INSERT INTO bench_seen(t) VALUES (NEW.t); END;"
                "CREATE TRIGGER IF NOT EXISTS bench_seen_i AFTER INSERT ON items WHEN NEW.t > 0 "
                "BEGIN INSERT INTO bench_seen(t) VALUES (NEW.t); END;");
    lat L;
    memset(&L, 0, sizeof L);
    TH_CHECK(sqlite3_open_v2(B.replica.db, &L.db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK,
             "open replica");
    sqlite3_busy_timeout(L.db, 1000);
    L.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    TH_CHECK(L.ifd >= 0 && inotify_add_watch(L.ifd, B.dir, IN_MODIFY) >= 0, "inotify: %s",
             strerror(errno));
    pthread_t th;
    TH_CHECK(pthread_create(&th, NULL, lat_main, &L) == 0, "thread");
    edge *e = &B.writers[0];
    long total = seconds * BP_LAT_RATE;
    double start = wall_us();
    for (long i = 0; i < total; i++) {
        double due = start + (double)i * 1e6 / BP_LAT_RATE;
        double now = wall_us();
        if (due > now)
            usleep((useconds_t)(due - now));
        /* One update per transaction, stamped with the time just before its commit. */
        long long id;
        int qty;
        workload_update(&e->w, &id, &qty);
        exec(e->app, "BEGIN");
        sqlite3_bind_int(e->upd, 1, qty);
        sqlite3_bind_int64(e->upd, 2, (long long)wall_us());
        sqlite3_bind_int64(e->upd, 3, id);
        TH_CHECK(sqlite3_step(e->upd) == SQLITE_DONE, "update: %s", sqlite3_errmsg(e->app));
        sqlite3_reset(e->upd);
        exec(e->app, "COMMIT");
    }
    double write_s = (wall_us() - start) / 1e6;
    double dummy;
    wait_replica(th_now(), 0, &dummy);
    usleep(200000);
    L.stop = 1;
    pthread_join(th, NULL);
    close(L.ifd);
    sqlite3_close(L.db);
    say("latency: %ld changes in %.2f s (%.0f/s); %zu seen applied on the replica", total, write_s,
        (double)total / write_s, L.n);
    /* The first second warms up (TLS sessions are open already; caches are not). */
    size_t skip = L.n > (size_t)BP_LAT_RATE * 2 ? (size_t)BP_LAT_RATE : 0;
    size_t n = L.n - skip;
    TH_CHECK(n > 0, "no latency sample");
    qsort(L.v + skip, n, sizeof *L.v, cmp_double);
    *p50 = L.v[skip + n / 2];
    *p99 = L.v[skip + (size_t)((double)n * 0.99)];
    *max = L.v[skip + n - 1];
    *count = n;
    free(L.v);
}

/* Total instructions of a callgrind output file (its "summary:" or "totals:" line). */
static double callgrind_total(const char *path)
{
    FILE *f = fopen(path, "r");
    TH_CHECK(f != NULL, "no callgrind output %s", path);
    char line[4096];
    double total = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "summary:", 8) == 0 || strncmp(line, "totals:", 7) == 0)
            total = strtod(strchr(line, ':') + 1, NULL);
    fclose(f);
    TH_CHECK(total > 0, "no total in %s", path);
    return total;
}

/* ---- 4. bootstrap ---- */

static double bootstrap(long rows)
{
    edge *w = &B.writers[0];
    long long have = expect_rows();
    /* Top the table up to `rows` with inserts from edge-a (the mix, without its updates). */
    exec(w->app, "BEGIN");
    for (long long i = have; i < rows; i++) {
        long long id;
        int qty;
        workload_insert(&w->w, &id, &qty);
        bind_new_row(w->ins, id, qty);
        TH_CHECK(sqlite3_step(w->ins) == SQLITE_DONE, "insert: %s", sqlite3_errmsg(w->app));
        sqlite3_reset(w->ins);
    }
    exec(w->app, "COMMIT");
    double dummy;
    wait_replica(th_now(), 0, &dummy);
    /* A new replica with an empty database. */
    edge fresh = {.name = "edge-s", .db = th_fmt("%s/s.db", B.dir)};
    const char *cg = getenv("BENCH_BOOTSTRAP_CALLGRIND");
    double t0 = th_now();
    start_edge(&fresh, cg);
    sqlite3 *db = NULL;
    long long want_rows = expect_rows(), want_qty = expect_qty();
    long long top = q_int(cloud_db(), "SELECT coalesce(max(_cseq), 0) FROM items");
    for (;;) {
        if (!db && access(fresh.db, F_OK) == 0 &&
            sqlite3_open_v2(fresh.db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            sqlite3_close(db);
            db = NULL;
        }
        if (db && replica_at(db, top) && db_holds(db, want_rows, want_qty))
            break;
        TH_CHECK(th_now() - t0 < BP_WAIT_S, "the new replica never caught up");
        usleep(5000);
    }
    double s = th_now() - t0;
    sqlite3_close(db);
    say("bootstrap: a new replica held %lld rows %.2f s after it was started", want_rows, s);
    stop_edge(&fresh);
    if (cg) /* includes start-up and the TLS handshake: compare runs, not absolute figures */
        say("bootstrap: syncedge ran %.0f instructions per row (callgrind, %s)",
            callgrind_total(cg) / (double)want_rows, cg);
    return s;
}

/* ---- 5. footprint ---- */

typedef struct footprint {
    long edge_idle_kb, paho_kb, drain_peak_kb;
    long edge_idle_anon_kb, paho_anon_kb; /* memory of its own (RssAnon): no shared library */
    double drain_rate;
} footprint;

static void measure_footprint(long backlog, footprint *f)
{
    /* A bare Paho client, connected and subscribed like the replica is. */
    const char *plog = th_fmt("%s/paho_idle.log", B.dir);
    args a = {{NULL}, 0};
    args_add(&a, PAHO_IDLE_BIN);
    args_add(&a, B.broker);
    args_add(&a, "viewer");
    args_add(&a, th_fmt("%s/viewer.pass", B.dir));
    args_add(&a, th_fmt("%s/ca.crt", B.dir));
    args_add(&a, "sync/demo/delta/+");
    pid_t p = spawn(plog, &a);
    double t0 = th_now();
    while (!file_has(plog, "connected"))
        TH_CHECK(th_now() - t0 < 30 && th_alive(p), "paho_idle never connected");
    usleep(500000);
    f->paho_kb = proc_kb(p, "VmRSS");
    f->paho_anon_kb = proc_kb(p, "RssAnon");
    f->edge_idle_kb = proc_kb(B.replica.pid, "VmRSS");
    f->edge_idle_anon_kb = proc_kb(B.replica.pid, "RssAnon");
    th_stop(p, "paho_idle", plog, 1);
    /* edge-a away while its application writes a backlog; then it drains it. */
    edge *e = &B.writers[0];
    stop_edge(e);
    long long goal = cloud_applied() + backlog;
    for (long done = 0; done < backlog; done += 1000)
        app_write(e, backlog - done < 1000 ? backlog - done : 1000, 0);
    t0 = th_now();
    start_edge(e, NULL);
    double cloud_s;
    wait_replica(t0, goal, &cloud_s);
    f->drain_peak_kb = proc_kb(e->pid, "VmHWM");
    f->drain_rate = (double)backlog / cloud_s;
    say("footprint: Paho TLS client %ld kB (%ld kB its own), syncedge idle %ld kB (%ld kB its "
        "own), peak %ld kB while draining %ld changes (%.0f changes/s to the cloud)",
        f->paho_kb, f->paho_anon_kb, f->edge_idle_kb, f->edge_idle_anon_kb, f->drain_peak_kb,
        backlog, f->drain_rate);
}

/* ---- 6. payload ---- */

typedef struct payload {
    size_t upd1, upd1_json, ins10, ins10_json;
} payload;

/* Bytes one record adds to a batch. */
static size_t record_bytes(const sync_record *r)
{
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    sync_record_encode(&b, r, r->seq);
    size_t n = b.err ? 0 : b.len;
    sync_cbuf_free(&b);
    return n;
}

static void measure_payload(payload *p)
{
    uint64_t hlc = ((uint64_t)1796000000000ull << 16) | 3; /* a wall clock in 2026, counter 3 */
    sync_record r;
    memset(&r, 0, sizeof r);
    r.table = "items";
    r.table_len = 5;
    r.key.type = SYNC_INT;
    r.key.u.i = 20001234;
    r.op = SYNC_OP_UPDATE;
    r.base_version = 7;
    r.hlc = hlc;
    r.seq = 123456;
    r.ncols = 1;
    r.cols[0] = (sync_colval){.name = "qty", .name_len = 3, .v = {.type = SYNC_INT, .u.i = 42}};
    p->upd1 = record_bytes(&r);
    char json[2048];
    p->upd1_json = (size_t)snprintf(json, sizeof json,
                                    "{\"table\":\"items\",\"key\":20001234,\"op\":\"update\","
                                    "\"seq\":123456,\"base\":7,\"hlc\":%" PRIu64
                                    ",\"cols\":{\"qty\":42}}",
                                    hlc);
    /* Ten columns: a key, integers, reals and short texts, as a sensor or a sale would have. */
    static const char *const names[] = {"id", "site", "sensor", "kind", "value", "unit",
                                        "min", "max", "ts", "note"};
    memset(&r, 0, sizeof r);
    r.table = "readings";
    r.table_len = 8;
    r.key.type = SYNC_INT;
    r.key.u.i = 98765432;
    r.op = SYNC_OP_INSERT;
    r.hlc = hlc;
    r.seq = 123457;
    r.ncols = 10;
    sync_value v[10] = {
        {.type = SYNC_INT, .u.i = 98765432},
        {.type = SYNC_INT, .u.i = 17},
        {.type = SYNC_INT, .u.i = 4242},
        {.type = SYNC_TEXT, .u.b = {(const uint8_t *)"temp", 4}},
        {.type = SYNC_REAL, .u.f = 21.5},
        {.type = SYNC_TEXT, .u.b = {(const uint8_t *)"C", 1}},
        {.type = SYNC_REAL, .u.f = 18.25},
        {.type = SYNC_REAL, .u.f = 23.75},
        {.type = SYNC_INT, .u.i = 1796000000},
        {.type = SYNC_TEXT, .u.b = {(const uint8_t *)"ok", 2}},
    };
    for (int i = 0; i < 10; i++)
        r.cols[i] = (sync_colval){.name = names[i], .name_len = strlen(names[i]), .v = v[i]};
    p->ins10 = record_bytes(&r);
    p->ins10_json = (size_t)snprintf(
        json, sizeof json,
        "{\"table\":\"readings\",\"key\":98765432,\"op\":\"insert\",\"seq\":123457,\"base\":0,"
        "\"hlc\":%" PRIu64 ",\"cols\":{\"id\":98765432,\"site\":17,\"sensor\":4242,\"kind\":"
        "\"temp\",\"value\":21.5,\"unit\":\"C\",\"min\":18.25,\"max\":23.75,\"ts\":1796000000,"
        "\"note\":\"ok\"}}",
        hlc);
}

/* ---- 7. CPU ---- */

static int applied_pred(void *ctx)
{
    return cloud_applied() >= *(long long *)ctx;
}

/* Instructions of syncedge draining n changes (minus a run with none), and of synccloud
 * applying n changes (minus a run with none). */
static void measure_cpu(long n, double *edge_ipc, double *cloud_ipc)
{
    edge *e = &B.writers[0];
    double dummy;
    /* The edge. */
    stop_edge(e);
    const char *idle_out = th_fmt("%s/cg-edge-idle.out", B.dir);
    start_edge(e, idle_out);
    wait_connected(e->log, "syncedge under callgrind");
    sleep(1);
    stop_edge(e);
    long long goal = cloud_applied() + n;
    for (long done = 0; done < n; done += BP_TX)
        app_write(e, n - done < BP_TX ? n - done : BP_TX, 0);
    const char *busy_out = th_fmt("%s/cg-edge.out", B.dir);
    start_edge(e, busy_out);
    wait_replica(th_now(), goal, &dummy);
    sleep(1);
    stop_edge(e);
    *edge_ipc = (callgrind_total(busy_out) - callgrind_total(idle_out)) / (double)n;
    /* The cloud: its idle run, then a backlog waiting for it. */
    th_stop(B.cloud_pid, "synccloud", B.cloud_log, 1);
    idle_out = th_fmt("%s/cg-cloud-idle.out", B.dir);
    start_cloud(idle_out);
    wait_connected(B.cloud_log, "synccloud under callgrind");
    sleep(1);
    th_stop(B.cloud_pid, "synccloud", B.cloud_log, 1);
    start_edge(e, NULL);
    goal = cloud_applied() + n;
    for (long done = 0; done < n; done += BP_TX)
        app_write(e, n - done < BP_TX ? n - done : BP_TX, 0);
    busy_out = th_fmt("%s/cg-cloud.out", B.dir);
    start_cloud(busy_out);
    TH_CHECK(th_wait_until(applied_pred, &goal, BP_WAIT_S * 1000) == 0,
             "synccloud under callgrind never applied the backlog");
    wait_replica(th_now(), goal, &dummy);
    sleep(1);
    th_stop(B.cloud_pid, "synccloud", B.cloud_log, 1);
    *cloud_ipc = (callgrind_total(busy_out) - callgrind_total(idle_out)) / (double)n;
    start_cloud(NULL);
    wait_connected(B.cloud_log, "synccloud");
    say("cpu: syncedge %.0f, synccloud %.0f instructions per change (%ld changes)", *edge_ipc,
        *cloud_ipc, n);
}

/* ---- setup ---- */

static void setup(void)
{
    B.dir = th_tmpdir();
    TH_CHECK(B.dir != NULL, "no temp folder");
    B.port = th_free_port();
    B.broker = th_fmt("ssl://127.0.0.1:%d", B.port);
    TH_CHECK(th_run("DEVBROKER_EXTRA_USERS='edge-f edge-g edge-h edge-i edge-j edge-q edge-r "
                    "edge-s' bash %s/scripts/devbroker.sh setup %s %d >/dev/null",
                    th_shq(SYNC_SOURCE_DIR), th_shq(B.dir), B.port) == 0,
             "devbroker.sh setup failed");
    args a = {{NULL}, 0};
    args_add(&a, "mosquitto");
    args_add(&a, "-c");
    args_add(&a, th_fmt("%s/mosquitto.conf", B.dir));
    B.broker_pid = spawn(th_fmt("%s/mosquitto.log", B.dir), &a);
    TH_CHECK(th_wait_port(B.port, 10000) == 0, "mosquitto does not listen on %d", B.port);
    B.schema = th_fmt("%s/schema.conf", B.dir);
    FILE *f = fopen(B.schema, "w");
    TH_CHECK(f != NULL, "write %s", B.schema);
    fputs("version 1\ntable items\ncolumn id integer key\ncolumn name text\n"
          "column qty integer\ncolumn price real\ncolumn t integer\n",
          f);
    fclose(f);
    B.cloud_db = th_fmt("%s/cloud.db", B.dir);
    for (int i = 0; i < BP_WRITERS; i++) {
        edge *e = &B.writers[i];
        e->name = th_fmt("edge-%c", 'a' + i);
        e->db = th_fmt("%s/%c.db", B.dir, 'a' + i);
        workload_init(&e->w, i, 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1));
        app_open(e);
    }
    B.replica = (edge){.name = "edge-r", .db = th_fmt("%s/r.db", B.dir)};
}

static void machine(char *out, size_t n)
{
    char model[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            snprintf(model, sizeof model, "%.200s", c ? c + 2 : line);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    struct utsname u;
    uname(&u);
    snprintf(out, n, "%ld cores, %s, Linux %s, SQLite %s", sysconf(_SC_NPROCESSORS_ONLN), model,
             u.release, sqlite3_libversion());
}

int main(int argc, char **argv)
{
    B.p = FULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            B.p = QUICK;
            quick = 1;
        } else if (strcmp(argv[i], "--skip-callgrind") == 0) {
            B.skip_callgrind = 1;
        } else {
            fprintf(stderr, "usage: bench_pipeline [--quick] [--skip-callgrind]\n");
            return 2;
        }
    }
    th_init();
    sync_log_setup("bench", SYNC_LOG_WARNING, 0);
    if (!B.skip_callgrind && th_run("valgrind --version >/dev/null 2>&1") != 0) {
        say("valgrind not found: no instruction counts");
        B.skip_callgrind = 1;
    }
    setup();
    char mach[512];
    machine(mach, sizeof mach);
    say("%s run on %s", quick ? "quick" : "full", mach);

    /* 1. ceilings, before any daemon runs. */
    payload pl;
    measure_payload(&pl);
    double mqtt_rate = mqtt_ceiling(pl.upd1, B.p.mqtt_msgs);
    say("ceiling: Paho QoS 1 publish->receive %.0f messages/s (%zu-byte payloads)", mqtt_rate,
        pl.upd1);
    if (getenv("BENCH_CEILING_ONLY"))
        return 0;
    double sqlite_rate = sqlite_ceiling(B.p.thr_changes);
    say("ceiling: SQLite %.0f upserts/s (the same mix, WAL, synchronous FULL, %d per "
        "transaction)",
        sqlite_rate, BP_RAW_TX);

    /* The deployment: cloud, replica, edge-a. */
    start_cloud(NULL);
    wait_connected(B.cloud_log, "synccloud");
    start_edge(&B.replica, NULL);
    wait_connected(B.replica.log, "edge-r");
    start_edge(&B.writers[0], NULL);
    wait_connected(B.writers[0].log, "edge-a");
    double t0 = th_now();
    while (sqlite3_open_v2(B.replica.db, &B.rdb, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
           sqlite3_exec(B.rdb, "SELECT 1 FROM items LIMIT 1", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(B.rdb);
        B.rdb = NULL;
        TH_CHECK(th_now() - t0 < 30, "the replica never created its tables");
        usleep(50000);
    }
    sqlite3_busy_timeout(B.rdb, 5000);

    /* 2. throughput. */
    double cloud1, cloud10;
    if (getenv("BENCH_THROUGHPUT_ONLY")) {
        double r = throughput(1, B.p.thr_changes, &cloud1);
        printf("throughput 1 edge %.0f changes/s (cloud %.0f/s); %ld slow transactions, %.2f s, "
               "slowest %.3f s\n",
               r, cloud1, slow_n, slow_s, slowest_s);
        return 0;
    }
    if (getenv("BENCH_BOOTSTRAP_ONLY")) {
        /* BENCH_BOOTSTRAP_PRE=N: N changes first, as the full run's throughput parts leave a
         * table whose rows' change sequences are scattered over it. */
        long pre = getenv("BENCH_BOOTSTRAP_PRE") ? atol(getenv("BENCH_BOOTSTRAP_PRE")) : 2000;
        throughput(1, pre > 0 ? pre : 2000, &cloud1);
        printf("bootstrap %ld rows %.2f s\n", B.p.boot_rows, bootstrap(B.p.boot_rows));
        return 0;
    }
    if (getenv("BENCH_CALLGRIND_ONLY")) {
        throughput(1, 2000, &cloud1);
        double edge_ipc, cloud_ipc;
        measure_cpu(B.p.cg_changes, &edge_ipc, &cloud_ipc);
        printf("instructions per change: syncedge %.0f synccloud %.0f\n", edge_ipc, cloud_ipc);
        return 0;
    }
    if (getenv("BENCH_LATENCY_ONLY")) {
        throughput(1, 2000, &cloud1);
        double p50, p99, pmax;
        size_t nlat;
        latency(B.p.lat_seconds, &p50, &p99, &pmax, &nlat);
        printf("latency p50 %.2f p99 %.2f max %.2f ms (%zu)\n", p50, p99, pmax, nlat);
        return 0;
    }
    double rate1 = throughput(1, B.p.thr_changes, &cloud1);
    for (int i = 1; i < BP_WRITERS; i++)
        start_edge(&B.writers[i], NULL);
    for (int i = 1; i < BP_WRITERS; i++)
        wait_connected(B.writers[i].log, B.writers[i].name);
    double rate10 = throughput(BP_WRITERS, B.p.thr_changes, &cloud10);
    for (int i = 1; i < BP_WRITERS; i++)
        stop_edge(&B.writers[i]);

    /* 3. latency. */
    double p50, p99, pmax;
    size_t nlat;
    latency(B.p.lat_seconds, &p50, &p99, &pmax, &nlat);

    /* 4. bootstrap. */
    double boot_s = bootstrap(B.p.boot_rows);

    /* 5. footprint. */
    footprint fp;
    measure_footprint(B.p.drain, &fp);

    /* 7. CPU. */
    double edge_ipc = -1, cloud_ipc = -1;
    if (!B.skip_callgrind)
        measure_cpu(B.p.cg_changes, &edge_ipc, &cloud_ipc);

    /* Everything must stop cleanly. */
    sqlite3_close(B.rdb);
    sqlite3_close(B.cdb);
    stop_edge(&B.writers[0]);
    stop_edge(&B.replica);
    th_stop(B.cloud_pid, "synccloud", B.cloud_log, 1);
    th_stop(B.broker_pid, "mosquitto", th_fmt("%s/mosquitto.log", B.dir), 0);
    for (int i = 0; i < BP_WRITERS; i++) {
        app_close(&B.writers[i]);
        workload_free(&B.writers[i].w);
    }

    double ratio = rate1 / sqlite_rate;
    printf("\n%s run, %s\n\n", quick ? "Quick" : "Full", mach);
    printf("| measure | value |\n| --- | --- |\n");
    printf("| ceiling: Paho QoS 1 publish→receive, %zu-byte payload | %.0f msg/s |\n", pl.upd1,
           mqtt_rate);
    printf("| ceiling: SQLite upserts, same mix, WAL, FULL, %d/tx | %.0f rows/s |\n", BP_RAW_TX,
           sqlite_rate);
    printf("| sync, 1 edge → cloud → replica (%ld changes) | %.0f changes/s (cloud: %.0f/s) |\n",
           B.p.thr_changes, rate1, cloud1);
    printf("| sync, 10 edges → cloud → replica (%ld changes) | %.0f changes/s (cloud: %.0f/s) |\n",
           B.p.thr_changes, rate10, cloud10);
    printf("| pipeline_ratio (1 edge / SQLite ceiling) | %.3f |\n", ratio);
    printf("| latency commit → replica at %d/s, p50 / p99 / max | %.2f / %.2f / %.2f ms |\n",
           BP_LAT_RATE, p50, p99, pmax);
    printf("| bootstrap of a new replica, %ld rows | %.2f s |\n", B.p.boot_rows, boot_s);
    printf("| RSS: bare Paho TLS client / syncedge idle | %.1f / %.1f MB |\n", fp.paho_kb / 1024.0,
           fp.edge_idle_kb / 1024.0);
    printf("| RssAnon (no shared libraries): bare Paho TLS client / syncedge idle | %.1f / %.1f "
           "MB |\n",
           fp.paho_anon_kb / 1024.0, fp.edge_idle_anon_kb / 1024.0);
    printf("| RSS: syncedge peak draining %ld changes (%.0f changes/s) | %.1f MB |\n", B.p.drain,
           fp.drain_rate, fp.drain_peak_kb / 1024.0);
    printf("| payload: one-column update / as JSON | %zu / %zu bytes |\n", pl.upd1, pl.upd1_json);
    printf("| payload: ten-column insert / as JSON | %zu / %zu bytes |\n", pl.ins10,
           pl.ins10_json);
    if (edge_ipc >= 0)
        printf("| instructions per change: syncedge / synccloud | %.0f / %.0f |\n", edge_ipc,
               cloud_ipc);
    printf("\nbench: mode=%s mqtt_msgs_per_s=%.0f sqlite_upserts_per_s=%.0f "
           "sync_changes_per_s_1edge=%.0f sync_changes_per_s_10edges=%.0f "
           "cloud_changes_per_s_1edge=%.0f pipeline_ratio=%.3f latency_p50_ms=%.2f "
           "latency_p99_ms=%.2f latency_max_ms=%.2f latency_samples=%zu bootstrap_rows=%ld "
           "bootstrap_s=%.2f paho_rss_kb=%ld edge_idle_rss_kb=%ld paho_anon_kb=%ld "
           "edge_idle_anon_kb=%ld edge_drain_peak_rss_kb=%ld "
           "drain_changes_per_s=%.0f payload_update1_bytes=%zu payload_update1_json_bytes=%zu "
           "payload_insert10_bytes=%zu payload_insert10_json_bytes=%zu edge_instr_per_change=%.0f "
           "cloud_instr_per_change=%.0f\n",
           quick ? "quick" : "full", mqtt_rate, sqlite_rate, rate1, rate10, cloud1, ratio, p50,
           p99, pmax, nlat, B.p.boot_rows, boot_s, fp.paho_kb, fp.edge_idle_kb, fp.paho_anon_kb,
           fp.edge_idle_anon_kb, fp.drain_peak_kb,
           fp.drain_rate, pl.upd1, pl.upd1_json, pl.ins10, pl.ins10_json, edge_ipc, cloud_ipc);
    return 0;
}
