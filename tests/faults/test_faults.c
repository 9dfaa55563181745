/* test_faults.c - fault injection: three edges write 21,000 changes while the test kills and
 * restarts the broker, the cloud and the edges, cuts edges off the network and wipes a
 * replica; afterwards every change must have been applied exactly once and every copy must be
 * identical.
 *
 * Real processes only: mosquitto with the development TLS config (scripts/devbroker.sh,
 * persistence on), synccloud, three writer edges (edge-a, edge-b, edge-c) that reach the broker
 * through their own th_proxy, and one pure replica (edge-d) that connects directly. The test
 * is also the three edges' application: with the sqlite3 API it writes small transactions of
 * inserts, updates, deletes and re-inserts on both tables of docs/examples/schema.conf, each
 * edge only in its own key space (items ids 1..100000 for a, 100001..200000 for b,
 * 200001..300000 for c; notes keys "a:...", "b:...", "c:..."), so no two devices touch the same
 * row and each change counts exactly once at the cloud. A change is counted when its statement
 * changed exactly one row and its transaction committed. The application keeps writing
 * whatever happens to its syncedge or its network.
 *
 * During the writing phase, at times drawn in advance, the test injects at least one of each:
 * kill -9 of the broker (restarted 0.5-3 s later, same config), kill -9 of synccloud, kill -9 of
 * each writer's syncedge, a 3-10 s network cut of a writer (its proxy resets every connection
 * and refuses new ones), and once, late, kill -9 of edge-d followed by the deletion of its
 * database (with -wal and -shm) and a restart that must rebuild it from the cloud.
 *
 * Then, with no more faults, it waits until every outbox is empty, the cloud's
 * _sync_devices.applied of each device equals the number of changes the application committed
 * there (more: applied twice; fewer: lost), and the --checksum outputs of the cloud and of the
 * four edges are identical. Finally every process must stop with status 0 on SIGTERM.
 *
 * Environment: FAULTS_SEED=N repeats a run (the seed is printed first and on failure; the fault
 * plan and each writer's sequence of changes come from it, only the timing of the machine
 * differs); FAULTS_CHANGES (default 21000) total changes; FAULTS_SECONDS (default 75) length of
 * the writing phase (longer under sanitizers); FAULTS_CONVERGE_S (default 300) how long the
 * copies may take to agree afterwards; TH_KEEP=1 keeps the folder with every database and log.
 *
 * With --pg, synccloud's store is a PostgreSQL database of a throwaway server (th_pg_start),
 * given to synccloud as a libpq keyword connection string; the test reads the cloud's counts
 * with psql (th_pg_int), a little less often while converging since each query is a process.
 * The PostgreSQL server stays up through every fault: killing synccloud leaves it to end the
 * dead connection and roll back its open transaction. On a failure, the row by row comparison
 * of the cloud with an edge compares keys only (by owner), not values.
 */
#include "harness.h"

#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYNCEDGE_BIN
#error "SYNCEDGE_BIN (path of the syncedge binary) must be defined by the build"
#endif
#ifndef SYNCCLOUD_BIN
#error "SYNCCLOUD_BIN (path of the synccloud binary) must be defined by the build"
#endif
#ifndef SYNC_SOURCE_DIR
#error "SYNC_SOURCE_DIR must be defined by the build"
#endif

#define FT_CHANGES 21000      /* default total of changes written by the three writers */
#define FT_SECONDS 75         /* default length of the writing phase */
#define FT_CONVERGE_S 300     /* default time the copies may take to agree afterwards */
#define FT_START_S 30         /* how long the daemons may take to start */
#define FT_WRITERS 3          /* edge-a, edge-b, edge-c */
#define FT_EDGES 4            /* the writers and the replica edge-d */
#define FT_REPLICA 3          /* index of edge-d */
#define FT_KEYS 100000        /* key numbers per writer and table */
#define FT_TX_MAX 20          /* statements per transaction */
#define FT_MAX_FAULTS 24      /* room in the fault plan */
#define FT_MAX_ARGS 40        /* argv entries of a daemon */
#define FT_CHECK_PERIOD 2     /* seconds between exactly-once checks while writing */
#define FT_SUM_PERIOD 1.0     /* seconds between two rounds of --checksum runs */
#define FT_REPORT_PERIOD 10   /* seconds between progress lines while converging */
#define FT_ANOMALIES_SHOWN 10 /* application anomalies printed in full */
#define FT_COUNT_PERIOD 0.25  /* seconds between count checks while converging (SQLite store) */
#define FT_COUNT_PERIOD_PG 1  /* the same with --pg: each cloud query is a psql */
#define FT_PG_KEYS_MAX 60000  /* bytes of key list the PostgreSQL row comparison sends at most */

/* ---- random numbers: xorshift64*, one seed for the whole run -------------------------- */

struct rng {
    uint64_t s; /* state, never 0 */
};

static uint64_t rnd(struct rng *r)
{
    uint64_t x = r->s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    /* One splitmix64 step spreads seeds like 1, 2, 3 over the whole state; 0 is not a state. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    r->s = (z ^ (z >> 31)) | 1;
}

/* Returns a number in 0 .. n-1. */
static int below(struct rng *r, int n)
{
    return (int)(rnd(r) % (uint64_t)n);
}

/* Returns a number in [lo, hi). */
static double uniform(struct rng *r, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(rnd(r) >> 11) / 9007199254740992.0);
}

/* ---- the test's state ------------------------------------------------------------------ */

struct args {
    char *v[FT_MAX_ARGS + 1]; /* NULL-terminated argv */
    int n;                    /* entries used */
};

/* Live and deleted key numbers of one table of one writer. */
struct keyset {
    unsigned char *st; /* per key number: 0 never used, 1 live, 2 deleted */
    int *live;         /* key numbers of live rows */
    int nlive;         /* entries in live */
    int *dead;         /* key numbers of deleted rows, for re-inserts */
    int ndead;         /* entries in dead */
    int next;          /* next never-used key number */
    int last;          /* key number touched last (edited again sometimes), or -1 */
};

struct edge {
    const char *name;               /* device id */
    char letter;                    /* 'a' .. 'd' */
    const char *db;                 /* database path */
    const char *log;                /* stderr of its syncedge */
    struct args args;               /* argv of its syncedge */
    const char *sum_cmd;            /* shell command printing its --checksum */
    pid_t pid;                      /* its syncedge, 0 while killed */
    int writer;                     /* 1 for a, b, c */
    int proxy_port;                 /* writers: port of its proxy */
    th_proxy *proxy;                /* writers: its way to the broker */
    int cut;                        /* 1 while its proxy is cut */
    sqlite3 *app;                   /* writers: the application's connection */
    struct rng rng;                 /* writers: the application's random numbers */
    struct keyset items;            /* writers: items ids id_base+1 .. id_base+FT_KEYS */
    struct keyset notes;            /* writers: notes keys "X:..." */
    long long id_base;              /* writers: 0, 100000, 200000 */
    long long share;                /* changes this writer must commit */
    long long counted;              /* changes committed so far */
    long long ins, upd, del, reins; /* counted changes by kind */
    long long txs;                  /* committed transactions */
    long long busy;      /* transactions rolled back because the database stayed locked */
    long long anomalies; /* transactions that failed otherwise (rows changed under the app) */
    long long uniq;      /* counter making updated values unique */
    char *sum;           /* latest --checksum output (owned, NULL if it failed) */
    long long outbox;    /* latest count of _sync_outbox (-1 unknown) */
    long long applied;   /* latest cloud _sync_devices.applied of this device (-1 unknown) */
};

enum fault_kind { F_BROKER, F_CLOUD, F_EDGE, F_CUT, F_WIPE, F_CORRUPT, F_NKINDS };

static const char *const kind_name[F_NKINDS] = {
    "broker kill -9", "synccloud kill -9", "syncedge kill -9",
    "network cut",    "replica wipe",      "replica corrupt",
};

struct fault {
    double at;     /* seconds after the start of writing */
    double length; /* how long the component stays down or cut off */
    double end;    /* when it is restored (set when it starts) */
    int kind;      /* enum fault_kind */
    int who;       /* edge index for F_EDGE and F_CUT */
    int state;     /* 0 planned, 1 in progress, 2 over */
};

struct ft {
    uint64_t seed;             /* of this run */
    long long changes;         /* total to write */
    double seconds;            /* length of the writing phase */
    int converge_s;            /* time allowed to converge */
    const char *dir;           /* temp folder: broker files, databases, logs */
    const char *schema;        /* docs/examples/schema.conf */
    int port;                  /* broker TLS port */
    const char *broker_log;    /* mosquitto's output */
    char *broker_argv[4];      /* mosquitto -c CONF */
    pid_t broker_pid;          /* 0 while killed */
    const char *cloud_db;      /* synccloud's store (a file, or a connection string with --pg) */
    const char *pg;            /* with --pg: the store's connection string for queries, else NULL */
    const char *cloud_log;     /* its stderr */
    struct args cloud_args;    /* its argv */
    const char *cloud_sum_cmd; /* shell command printing its --checksum */
    char *cloud_sum;           /* latest cloud --checksum output (owned, NULL if it failed) */
    pid_t cloud_pid;           /* 0 while killed */
    const char *sum_log;       /* stderr of the --checksum runs */
    struct edge edges[FT_EDGES];
    struct fault faults[FT_MAX_FAULTS];
    int nfaults;                /* entries in faults */
    int done_by_kind[F_NKINDS]; /* faults carried out, by kind */
    double t0;                  /* th_now() when writing started */
    double last_fault;          /* seconds after t0 of the last fault action (restores included) */
    double sums_at;             /* th_now() of the latest --checksum round */
    double checked_at;          /* th_now() of the latest count check while converging */
    int sums_equal;             /* latest round: every checksum equals the cloud's */
};

static struct ft T; /* one per process; static so the atexit handler sees the seed */
static int ft_passed;

static void on_exit_report(void)
{
    if (!ft_passed)
        fprintf(stderr, "faults: FAILED: FAULTS_SEED=%" PRIu64 " reproduces this run\n", T.seed);
}

/* Prints a line prefixed with the time since writing started. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;

    if (T.t0 > 0)
        printf("faults: t=%7.2f s  ", th_now() - T.t0);
    else
        printf("faults: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* Appends a marker line to a daemon's log, so its reader sees where the test struck. */
static void log_mark(const char *log, const char *what)
{
    FILE *f = fopen(log, "a");

    if (f == NULL)
        return;
    fprintf(f, "==== faults test, t=%.2f s: %s ====\n", th_now() - T.t0, what);
    fclose(f);
}

/* ---- daemons --------------------------------------------------------------------------- */

static void args_add(struct args *a, const char *s)
{
    TH_CHECK(a->n < FT_MAX_ARGS, "too many arguments");
    a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
}

static struct args edge_args(const struct edge *e, const char *broker)
{
    struct args a = {{NULL}, 0};
    const char *fixed[] = {
        "--ack-timeout", "3",    "--retry-min", "1",    "--retry-max", "3",
        "--replica",     "true", "--log-level", "info", "--log-dest",  "stderr",
    };
    size_t i;

    args_add(&a, SYNCEDGE_BIN);
    args_add(&a, "--database");
    args_add(&a, e->db);
    args_add(&a, "--schema");
    args_add(&a, T.schema);
    args_add(&a, "--tenant");
    args_add(&a, "demo");
    args_add(&a, "--device");
    args_add(&a, e->name);
    args_add(&a, "--broker");
    args_add(&a, broker);
    args_add(&a, "--password-file");
    args_add(&a, th_fmt("%s/%s.pass", T.dir, e->name));
    args_add(&a, "--cafile");
    args_add(&a, th_fmt("%s/ca.crt", T.dir));
    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        args_add(&a, fixed[i]);
    return a;
}

static struct args cloud_args(void)
{
    struct args a = {{NULL}, 0};
    const char *fixed[] = {
        "--retry-min", "1",           "--retry-max", "3",          "--events",
        "batches",     "--log-level", "info",        "--log-dest", "stderr",
    };
    size_t i;

    args_add(&a, SYNCCLOUD_BIN);
    args_add(&a, "--database");
    args_add(&a, T.cloud_db);
    args_add(&a, "--schema");
    args_add(&a, T.schema);
    args_add(&a, "--tenant");
    args_add(&a, "demo");
    args_add(&a, "--broker");
    args_add(&a, th_fmt("ssl://127.0.0.1:%d", T.port));
    args_add(&a, "--username");
    args_add(&a, "synccloud");
    args_add(&a, "--password-file");
    args_add(&a, th_fmt("%s/synccloud.pass", T.dir));
    args_add(&a, "--cafile");
    args_add(&a, th_fmt("%s/ca.crt", T.dir));
    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        args_add(&a, fixed[i]);
    return a;
}

static pid_t spawn(const char *log, char *const argv[])
{
    pid_t pid = th_spawn(log, argv);

    TH_CHECK(pid > 0, "cannot start %s", argv[0]);
    return pid;
}

/* kill -9 and reap. */
static void kill9(pid_t pid, const char *name)
{
    int st;

    TH_CHECK(th_kill(pid, SIGKILL) == 0, "cannot kill %s", name);
    st = th_wait_exit(pid, 10000, 1);
    TH_CHECK(st != -1, "%s (pid %ld) survived SIGKILL", name, (long)pid);
}

/* A daemon that should be running and is not has crashed: that fails the test at once. */
static void check_alive(void)
{
    int i;

    TH_CHECK(T.broker_pid == 0 || th_alive(T.broker_pid), "mosquitto (pid %ld) died by itself",
             (long)T.broker_pid);
    TH_CHECK(T.cloud_pid == 0 || th_alive(T.cloud_pid), "synccloud (pid %ld) died by itself",
             (long)T.cloud_pid);
    for (i = 0; i < FT_EDGES; i++)
        TH_CHECK(T.edges[i].pid == 0 || th_alive(T.edges[i].pid),
                 "syncedge %s (pid %ld) died by itself", T.edges[i].name, (long)T.edges[i].pid);
}

/* SIGTERM, then the process must exit with status 0 (see th_stop); says how long it took. */
static void stop(pid_t pid, const char *name, const char *log, int must_be_clean)
{
    say("%s stopped in %.2f s", name, th_stop(pid, name, log, must_be_clean));
}

/* ---- quiet SQL helpers (the databases may be missing or being rebuilt) ------------------ */

/* Returns the integer the query yields on dbpath, or -1 if anything fails. Never creates the
 * database and prints nothing. */
static long long q_int(const char *dbpath, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return v;
}

/* Returns the integer the query yields on the cloud's store, or -1 if anything fails. On
 * SQLite it prints nothing; on PostgreSQL (--pg) psql's message is printed. */
static long long cloud_int(const char *sql)
{
    long long v;

    if (T.pg == NULL)
        return q_int(T.cloud_db, sql);
    v = th_pg_int(T.pg, "%s", sql);
    return v == TH_SQL_ERR ? -1 : v;
}

/* The cloud's applied count of device, 0 if the cloud has not heard of it, -1 on error. */
static long long cloud_applied(const char *device)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT coalesce((SELECT applied FROM _sync_devices WHERE device = '%s'), 0)", device);
    return cloud_int(sql);
}

static int file_contains(const char *path, const char *needle)
{
    char *out = NULL;
    int rc = th_capture(&out, "grep -cF -- %s %s 2>/dev/null", th_shq(needle), th_shq(path));

    free(out);
    return rc == 0;
}

/* ---- the applications' writes ---------------------------------------------------------- */

static void keyset_init(struct keyset *ks)
{
    ks->st = calloc(FT_KEYS, 1);
    ks->live = calloc(FT_KEYS, sizeof(int));
    ks->dead = calloc(FT_KEYS, sizeof(int));
    TH_CHECK(ks->st != NULL && ks->live != NULL && ks->dead != NULL, "out of memory");
    ks->nlive = ks->ndead = ks->next = 0;
    ks->last = -1;
}

static void keyset_free(struct keyset *ks)
{
    free(ks->st);
    free(ks->live);
    free(ks->dead);
}

/* Rebuilds the lists from st[] (after st[] was brought in line with the database). */
static void keyset_relist(struct keyset *ks)
{
    int k;

    ks->nlive = ks->ndead = 0;
    ks->last = -1;
    for (k = 0; k < ks->next; k++) {
        if (ks->st[k] == 1)
            ks->live[ks->nlive++] = k;
        else if (ks->st[k] == 2)
            ks->dead[ks->ndead++] = k;
    }
}

static sqlite3_int64 item_id(const struct edge *e, int k)
{
    return (sqlite3_int64)(e->id_base + k + 1);
}

/* notes.k: "X:N" and a suffix with quotes, unicode and topic-level characters; the number right
 * after the prefix makes it easy to read back. */
static void note_key(const struct edge *e, int k, char *buf, size_t n)
{
    static const char *suffix[] = {"", " it's \"q\"", " Grüße ✓ 日本", "/x+y#", "  sp  ", " 😀"};

    snprintf(buf, n, "%c:%d%s", e->letter, k, suffix[k % 6]);
}

/* Brings a writer's key sets in line with its database, after a transaction failed. */
static void model_resync(struct edge *e)
{
    struct keyset *ks[2] = {&e->items, &e->notes};
    sqlite3_stmt *st = NULL;
    char lo[8], hi[8];
    int t, k, rc;

    for (t = 0; t < 2; t++)
        for (k = 0; k < ks[t]->next; k++)
            if (ks[t]->st[k] != 0)
                ks[t]->st[k] = 2;
    rc = sqlite3_prepare_v2(e->app, "SELECT id FROM items WHERE id BETWEEN ? AND ?", -1, &st, NULL);
    TH_CHECK(rc == SQLITE_OK, "%s: %s", e->name, sqlite3_errmsg(e->app));
    sqlite3_bind_int64(st, 1, item_id(e, 0));
    sqlite3_bind_int64(st, 2, item_id(e, FT_KEYS - 1));
    while (sqlite3_step(st) == SQLITE_ROW) {
        k = (int)(sqlite3_column_int64(st, 0) - e->id_base - 1);
        e->items.st[k] = 1;
        if (k >= e->items.next)
            e->items.next = k + 1;
    }
    sqlite3_finalize(st);
    snprintf(lo, sizeof(lo), "%c:", e->letter);
    snprintf(hi, sizeof(hi), "%c;", e->letter);
    rc = sqlite3_prepare_v2(e->app, "SELECT k FROM notes WHERE k >= ? AND k < ?", -1, &st, NULL);
    TH_CHECK(rc == SQLITE_OK, "%s: %s", e->name, sqlite3_errmsg(e->app));
    sqlite3_bind_text(st, 1, lo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hi, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        k = atoi((const char *)sqlite3_column_text(st, 0) + 2);
        if (k < 0 || k >= FT_KEYS)
            continue;
        e->notes.st[k] = 1;
        if (k >= e->notes.next)
            e->notes.next = k + 1;
    }
    sqlite3_finalize(st);
    keyset_relist(&e->items);
    keyset_relist(&e->notes);
}

static void bind_text(struct rng *r, sqlite3_stmt *st, int i, int nullable)
{
    static const char *fixed[] = {
        "",
        "O'Brien said \"hi\"; DROP TABLE items; --",
        "Grüße, naïve café ✓ 日本語 😀",
        "line1\nline2\ttab\r\n",
        "back\\slash %s %d",
    };
    char buf[2100];
    int v = below(r, 20), j, len;

    if (nullable && v < 3) {
        sqlite3_bind_null(st, i);
    } else if (v < 10) {
        sqlite3_bind_text(st, i, fixed[below(r, 5)], -1, SQLITE_TRANSIENT);
    } else if (v < 19) {
        snprintf(buf, sizeof(buf), "value %d", below(r, 100000));
        sqlite3_bind_text(st, i, buf, -1, SQLITE_TRANSIENT);
    } else {
        len = 200 + below(r, 1800);
        for (j = 0; j < len; j++)
            buf[j] = (char)('a' + below(r, 26));
        buf[len] = '\0';
        sqlite3_bind_text(st, i, buf, len, SQLITE_TRANSIENT);
    }
}

static void bind_int(struct rng *r, sqlite3_stmt *st, int i)
{
    if (below(r, 10) == 0)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_int64(st, i, (sqlite3_int64)below(r, 2001) - 1000);
}

static void bind_real(struct rng *r, sqlite3_stmt *st, int i)
{
    static const double fixed[] = {0.1, -123.456, 1e300, -1e-300, 3.0, 2.5e-7, 123456.789};
    int v = below(r, 20);

    if (v < 3)
        sqlite3_bind_null(st, i);
    else if (v < 8)
        sqlite3_bind_double(st, i, fixed[below(r, 7)]);
    else
        sqlite3_bind_double(st, i, ((double)(int64_t)(rnd(r) >> 11) - 4e15) / 1e6);
}

static void bind_blob(struct rng *r, sqlite3_stmt *st, int i)
{
    unsigned char buf[4096];
    int v = below(r, 20), len, j;

    if (v < 3) {
        sqlite3_bind_null(st, i);
        return;
    }
    len = v == 19 ? 4096 : below(r, 65);
    for (j = 0; j < len; j++)
        buf[j] = (unsigned char)(j % 5 == 0 ? 0 : rnd(r));
    sqlite3_bind_blob(st, i, buf, len, SQLITE_TRANSIENT);
}

static void bind_key(const struct edge *e, sqlite3_stmt *st, int i, int items, int k)
{
    char key[64];

    if (items) {
        sqlite3_bind_int64(st, i, item_id(e, k));
    } else {
        note_key(e, k, key, sizeof(key));
        sqlite3_bind_text(st, i, key, -1, SQLITE_TRANSIENT);
    }
}

/* Runs st on the application's connection. Returns NULL if it changed exactly one row, else a
 * description of the failure (static buffer). *busy is set if the database stayed locked. */
static const char *run_one(struct edge *e, sqlite3_stmt *st, int *busy)
{
    static char why[512];
    int rc;

    if (st == NULL) {
        snprintf(why, sizeof(why), "prepare: %s", sqlite3_errmsg(e->app));
        return why;
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        *busy = rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
        snprintf(why, sizeof(why), "%.200s: %s", sqlite3_sql(st), sqlite3_errmsg(e->app));
        sqlite3_finalize(st);
        return why;
    }
    if (sqlite3_changes(e->app) != 1) {
        snprintf(why, sizeof(why), "%.200s changed %d rows instead of 1", sqlite3_sql(st),
                 sqlite3_changes(e->app));
        sqlite3_finalize(st);
        return why;
    }
    sqlite3_finalize(st);
    return NULL;
}

static sqlite3_stmt *prep(struct edge *e, const char *sql)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(e->app, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static const char *do_insert(struct edge *e, int items, int k, int *busy)
{
    struct rng *r = &e->rng;
    sqlite3_stmt *st;

    if (items) {
        st = prep(e, "INSERT INTO items(id, name, qty, price, note, data) VALUES(?,?,?,?,?,?)");
        if (st != NULL) {
            bind_key(e, st, 1, 1, k);
            bind_text(r, st, 2, 1);
            bind_int(r, st, 3);
            bind_real(r, st, 4);
            bind_text(r, st, 5, 1);
            bind_blob(r, st, 6);
        }
    } else {
        st = prep(e, "INSERT INTO notes(k, body, n) VALUES(?,?,?)");
        if (st != NULL) {
            bind_key(e, st, 1, 0, k);
            bind_text(r, st, 2, 0);
            bind_int(r, st, 3);
        }
    }
    return run_one(e, st, busy);
}

/* Updates row k: a random subset of its columns plus one change that is sure to differ (a
 * counter incremented, or a text never used before), so the update is always captured. */
static const char *do_update(struct edge *e, int items, int k, int *busy)
{
    static const char *icols[] = {"name", "qty", "price", "note", "data"};
    static const char *ncols[] = {"body", "n"};
    struct rng *r = &e->rng;
    const char **cols = items ? icols : ncols;
    int ncol = items ? 5 : 2, mask, c, i = 1, bump_counter;
    char sql[320], uniq[64];
    size_t len;
    sqlite3_stmt *st;

    mask = below(r, 1 << ncol);
    /* The sure change: column 1 (qty or n) incremented, or column 0 (name or body) unique. */
    bump_counter = below(r, 2);
    mask &= bump_counter ? ~2 : ~1;
    len = (size_t)snprintf(sql, sizeof(sql), "UPDATE %s SET ", items ? "items" : "notes");
    if (bump_counter)
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s = coalesce(%s, 0) + 1", cols[1],
                                cols[1]);
    else
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s = ?", cols[0]);
    for (c = 0; c < ncol; c++)
        if (mask & (1 << c))
            len += (size_t)snprintf(sql + len, sizeof(sql) - len, ", %s = ?", cols[c]);
    snprintf(sql + len, sizeof(sql) - len, " WHERE %s = ?", items ? "id" : "k");
    st = prep(e, sql);
    if (st != NULL) {
        if (!bump_counter) {
            snprintf(uniq, sizeof(uniq), "%s update %lld", e->name, ++e->uniq);
            sqlite3_bind_text(st, i++, uniq, -1, SQLITE_TRANSIENT);
        }
        for (c = 0; c < ncol; c++) {
            if (!(mask & (1 << c)))
                continue;
            if (!items && c == 0)
                bind_text(r, st, i++, 0);
            else if (!items || c == 1)
                bind_int(r, st, i++);
            else if (c == 0 || c == 3)
                bind_text(r, st, i++, 1);
            else if (c == 2)
                bind_real(r, st, i++);
            else
                bind_blob(r, st, i++);
        }
        bind_key(e, st, i, items, k);
    }
    return run_one(e, st, busy);
}

static const char *do_delete(struct edge *e, int items, int k, int *busy)
{
    sqlite3_stmt *st =
        prep(e, items ? "DELETE FROM items WHERE id = ?" : "DELETE FROM notes WHERE k = ?");

    if (st != NULL)
        bind_key(e, st, 1, items, k);
    return run_one(e, st, busy);
}

/* Per-transaction tallies, added to the edge's only when the transaction commits. */
struct tally {
    long long ins, upd, del, reins;
};

static int take(int *arr, int *n, int i)
{
    int k = arr[i];

    arr[i] = arr[--*n];
    return k;
}

/* One random change on one of the writer's tables. Returns NULL or why it failed. */
static const char *one_change(struct edge *e, struct tally *t, int *busy)
{
    struct rng *r = &e->rng;
    int items = below(r, 5) < 3; /* 60 % items, 40 % notes */
    struct keyset *ks = items ? &e->items : &e->notes;
    int v = below(r, 100), k, i;
    const char *why;

    if ((ks->nlive == 0 || v < 30) && ks->next < FT_KEYS) {
        k = ks->next++;
        if ((why = do_insert(e, items, k, busy)) != NULL)
            return why;
        ks->st[k] = 1;
        ks->live[ks->nlive++] = k;
        t->ins++;
    } else if (ks->nlive > 0 && v < 60) {
        k = ks->live[below(r, ks->nlive)];
        if ((why = do_update(e, items, k, busy)) != NULL)
            return why;
        t->upd++;
    } else if (ks->nlive > 0 && v < 78) {
        i = below(r, ks->nlive);
        k = ks->live[i];
        if ((why = do_delete(e, items, k, busy)) != NULL)
            return why;
        take(ks->live, &ks->nlive, i);
        ks->st[k] = 2;
        ks->dead[ks->ndead++] = k;
        t->del++;
        if (ks->last == k)
            ks->last = -1;
        return NULL;
    } else if (ks->ndead > 0 && v < 92) {
        i = below(r, ks->ndead);
        k = ks->dead[i];
        if ((why = do_insert(e, items, k, busy)) != NULL)
            return why;
        take(ks->dead, &ks->ndead, i);
        ks->st[k] = 1;
        ks->live[ks->nlive++] = k;
        t->reins++;
    } else if (ks->nlive > 0) {
        /* The same row edited again and again: every step must arrive, in order. */
        k = ks->last >= 0 ? ks->last : ks->live[below(r, ks->nlive)];
        if ((why = do_update(e, items, k, busy)) != NULL)
            return why;
        t->upd++;
    } else {
        /* Key space used up and nothing live: re-insert (there is a dead key then). */
        i = below(r, ks->ndead);
        k = ks->dead[i];
        if ((why = do_insert(e, items, k, busy)) != NULL)
            return why;
        take(ks->dead, &ks->ndead, i);
        ks->st[k] = 1;
        ks->live[ks->nlive++] = k;
        t->reins++;
    }
    ks->last = k;
    return NULL;
}

/* Runs sql on the application's connection; returns 0, or -1 with *busy set if locked. */
static int app_exec(struct edge *e, const char *sql, int *busy)
{
    int rc = sqlite3_exec(e->app, sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK)
        *busy = rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
    return rc == SQLITE_OK ? 0 : -1;
}

/* One transaction of 1..FT_TX_MAX changes (a single change sometimes in autocommit mode).
 * Counts its changes only if it commits; on any failure rolls back and re-reads the key sets
 * from the database. */
static void app_tx(struct edge *e)
{
    struct tally t = {0, 0, 0, 0};
    long long left = e->share - e->counted;
    int size = 1 + below(&e->rng, FT_TX_MAX), i, busy = 0, autocommit;
    const char *why = NULL;

    if (size > left)
        size = (int)left;
    autocommit = size == 1 && below(&e->rng, 2) == 0;
    if (!autocommit && app_exec(e, "BEGIN IMMEDIATE", &busy) != 0) {
        why = sqlite3_errmsg(e->app);
        goto failed;
    }
    for (i = 0; i < size; i++)
        if ((why = one_change(e, &t, &busy)) != NULL)
            goto failed;
    if (!autocommit && app_exec(e, "COMMIT", &busy) != 0) {
        why = sqlite3_errmsg(e->app);
        goto failed;
    }
    e->counted += size;
    e->ins += t.ins;
    e->upd += t.upd;
    e->del += t.del;
    e->reins += t.reins;
    e->txs++;
    return;

failed:
    if (!sqlite3_get_autocommit(e->app))
        sqlite3_exec(e->app, "ROLLBACK", NULL, NULL, NULL);
    if (busy) {
        e->busy++;
        say("app %s: transaction rolled back, database locked: %s", e->name, why);
    } else {
        /* Only the application writes its key space: a statement that does not find the row
         * state it expects means something else changed the application's rows. */
        e->anomalies++;
        if (e->anomalies <= FT_ANOMALIES_SHOWN)
            say("app %s: ANOMALY, transaction rolled back: %s", e->name, why);
    }
    model_resync(e);
}

/* Writes until the writer has committed its share of the changes due by `elapsed`. */
static void app_write(struct edge *e, double elapsed)
{
    double frac = elapsed >= T.seconds ? 1.0 : elapsed / T.seconds;
    long long due = (long long)((double)e->share * frac);

    if (due > e->share)
        due = e->share;
    /* A few transactions per call at most, so faults stay on time even when catching up. */
    for (int n = 0; n < 8 && e->counted < due; n++)
        app_tx(e);
}

/* ---- faults ---------------------------------------------------------------------------- */

/* Resources a fault occupies: two faults on the same one must not overlap. */
static int fault_resource(const struct fault *f)
{
    switch (f->kind) {
    case F_EDGE:
        return 2 + f->who;
    case F_CUT:
        return 2 + FT_EDGES + f->who;
    case F_WIPE:
    case F_CORRUPT:
        return 2 + FT_REPLICA;
    default:
        return f->kind;
    }
}

static double fault_length(struct rng *r, int kind)
{
    switch (kind) {
    case F_BROKER:
    case F_CLOUD:
        return uniform(r, 0.5, 3.0);
    case F_EDGE:
        return uniform(r, 0.3, 3.0);
    case F_CUT:
        return uniform(r, 3.0, 10.0);
    default:
        return uniform(r, 0.5, 2.0);
    }
}

/* Adds one fault of kind to the plan at a random time in [lo, hi) * seconds that does not
 * overlap another fault on the same resource (1 s apart), if one is found in 200 tries. */
static void plan_one(struct rng *r, int kind, int who, double lo, double hi)
{
    struct fault *f = &T.faults[T.nfaults++];
    int tries, j, clash;

    f->kind = kind;
    f->who = who;
    f->length = fault_length(r, kind);
    f->state = 0;
    for (tries = 0; tries < 200; tries++) {
        f->at = uniform(r, lo * T.seconds, hi * T.seconds);
        clash = 0;
        for (j = 0; j < T.nfaults - 1; j++) {
            const struct fault *g = &T.faults[j];
            if (fault_resource(g) == fault_resource(f) && f->at < g->at + g->length + 1.0 &&
                g->at < f->at + f->length + 1.0)
                clash = 1;
        }
        if (!clash)
            break;
    }
}

static int by_time(const void *a, const void *b)
{
    const struct fault *x = a, *y = b;

    return x->at < y->at ? -1 : x->at > y->at;
}

/* Draws the whole fault plan before anything runs, so a seed gives the same plan. */
static void plan_faults(struct rng *r)
{
    int total, i, kind;

    total = (int)(T.seconds / 7);
    if (total < 8)
        total = 8;
    if (total > 12)
        total = 12;
    total += below(r, 3);
    /* The wipe late in the writing phase, then one of each kind and each writer's kill. */
    plan_one(r, F_CORRUPT, FT_REPLICA, 0.35, 0.55);
    plan_one(r, F_WIPE, FT_REPLICA, 0.65, 0.80);
    plan_one(r, F_BROKER, 0, 0.06, 0.85);
    plan_one(r, F_CLOUD, 0, 0.06, 0.85);
    for (i = 0; i < FT_WRITERS; i++)
        plan_one(r, F_EDGE, i, 0.06, 0.85);
    plan_one(r, F_CUT, below(r, FT_WRITERS), 0.06, 0.85);
    while (T.nfaults < total) {
        kind = below(r, 4); /* broker, cloud, edge or cut */
        plan_one(r, kind, kind >= F_EDGE ? below(r, FT_WRITERS) : 0, 0.06, 0.85);
    }
    qsort(T.faults, (size_t)T.nfaults, sizeof(T.faults[0]), by_time);
}

static int resource_busy(const struct fault *f)
{
    int i;

    for (i = 0; i < T.nfaults; i++)
        if (&T.faults[i] != f && T.faults[i].state == 1 &&
            fault_resource(&T.faults[i]) == fault_resource(f))
            return 1;
    return 0;
}

static void fault_start(struct fault *f, double now)
{
    struct edge *e = &T.edges[f->who];
    const char *what;

    f->end = now + f->length;
    f->state = 1;
    T.done_by_kind[f->kind]++;
    T.last_fault = now;
    switch (f->kind) {
    case F_BROKER:
        what =
            th_fmt("kill -9 mosquitto (pid %ld), restart in %.2f s", (long)T.broker_pid, f->length);
        say("%s", what);
        kill9(T.broker_pid, "mosquitto");
        T.broker_pid = 0;
        log_mark(T.broker_log, what);
        break;
    case F_CLOUD:
        what =
            th_fmt("kill -9 synccloud (pid %ld), restart in %.2f s", (long)T.cloud_pid, f->length);
        say("%s", what);
        kill9(T.cloud_pid, "synccloud");
        T.cloud_pid = 0;
        log_mark(T.cloud_log, what);
        break;
    case F_EDGE:
        what = th_fmt("kill -9 syncedge %s (pid %ld), restart in %.2f s", e->name, (long)e->pid,
                      f->length);
        say("%s", what);
        kill9(e->pid, e->name);
        e->pid = 0;
        log_mark(e->log, what);
        break;
    case F_CUT:
        what = th_fmt("cut %s off the network for %.2f s", e->name, f->length);
        say("%s", what);
        th_proxy_cut(e->proxy, 1);
        e->cut = 1;
        log_mark(e->log, what);
        break;
    case F_CORRUPT: {
        what = th_fmt("kill -9 syncedge %s (pid %ld), overwrite its database header, restart in "
                      "%.2f s",
                      e->name, (long)e->pid, f->length);
        say("%s", what);
        kill9(e->pid, e->name);
        e->pid = 0;
        /* Garbage over the header and the WAL lost, as a failing SD card leaves it (with the WAL
         * in place SQLite would read page 1 from it and never notice): SQLite no longer
         * recognises the file, and syncedge must move it aside and rebuild from the cloud. */
        FILE *fp = fopen(e->db, "r+b");
        TH_CHECK(fp != NULL, "cannot open %s to damage it", e->db);
        for (int k = 0; k < 512; k++)
            fputc((k * 131 + 7) & 0xff, fp);
        fclose(fp);
        unlink(th_fmt("%s-wal", e->db));
        unlink(th_fmt("%s-shm", e->db));
        log_mark(e->log, what);
        break;
    }
    default:
        what = th_fmt("kill -9 syncedge %s (pid %ld), delete its database, restart in %.2f s",
                      e->name, (long)e->pid, f->length);
        say("%s", what);
        kill9(e->pid, e->name);
        e->pid = 0;
        TH_CHECK(unlink(e->db) == 0, "cannot delete %s", e->db);
        unlink(th_fmt("%s-wal", e->db));
        unlink(th_fmt("%s-shm", e->db));
        unlink(th_fmt("%s-journal", e->db));
        log_mark(e->log, what);
        break;
    }
}

static void fault_end(struct fault *f, double now)
{
    struct edge *e = &T.edges[f->who];

    f->state = 2;
    T.last_fault = now;
    switch (f->kind) {
    case F_BROKER:
        T.broker_pid = spawn(T.broker_log, T.broker_argv);
        say("mosquitto restarted (pid %ld)", (long)T.broker_pid);
        break;
    case F_CLOUD:
        T.cloud_pid = spawn(T.cloud_log, T.cloud_args.v);
        say("synccloud restarted (pid %ld)", (long)T.cloud_pid);
        break;
    case F_CUT:
        th_proxy_cut(e->proxy, 0);
        e->cut = 0;
        say("%s back on the network", e->name);
        log_mark(e->log, "network restored");
        break;
    default:
        e->pid = spawn(e->log, e->args.v);
        say("syncedge %s restarted (pid %ld)%s", e->name, (long)e->pid,
            f->kind == F_WIPE      ? " on an empty database"
            : f->kind == F_CORRUPT ? " on a damaged database"
                                   : "");
        break;
    }
}

/* Starts and ends the faults that are due. */
static void run_faults(double now)
{
    int i;

    for (i = 0; i < T.nfaults; i++) {
        struct fault *f = &T.faults[i];
        if (f->state == 0 && now >= f->at) {
            if (resource_busy(f))
                f->at = now + 0.5; /* still down from the previous one: a bit later */
            else
                fault_start(f, now);
        }
        if (f->state == 1 && now >= f->end)
            fault_end(f, now);
    }
}

static int faults_over(void)
{
    int i;

    for (i = 0; i < T.nfaults; i++)
        if (T.faults[i].state != 2)
            return 0;
    return 1;
}

/* ---- checks ---------------------------------------------------------------------------- */

/* Exactly-once, while it happens: the cloud can never have applied more of a device's changes
 * than the application committed (they are counted right after COMMIT). */
static void check_not_twice(void)
{
    int i;
    long long a;

    for (i = 0; i < FT_EDGES; i++) {
        struct edge *e = &T.edges[i];
        a = cloud_applied(e->name);
        if (a < 0)
            continue;
        e->applied = a;
        TH_CHECK(a <= e->counted,
                 "the cloud applied %lld changes of %s, which committed only %lld: some change "
                 "was applied more than once",
                 a, e->name, e->counted);
    }
}

/* Reads outboxes and applied counts into the edges. Returns 1 if every outbox is empty and
 * every applied count equals the committed count. */
static int counts_match(void)
{
    int i, ok = 1;

    for (i = 0; i < FT_EDGES; i++) {
        struct edge *e = &T.edges[i];
        e->outbox = q_int(e->db, "SELECT count(*) FROM _sync_outbox");
        e->applied = cloud_applied(e->name);
        if (e->outbox != 0 || e->applied != e->counted)
            ok = 0;
        TH_CHECK(e->applied <= e->counted,
                 "the cloud applied %lld changes of %s, which committed only %lld: some change "
                 "was applied more than once",
                 e->applied, e->name, e->counted);
    }
    return ok;
}

/* Runs every --checksum command; sets T.sums_equal. */
static void take_checksums(void)
{
    int i;

    T.sums_at = th_now();
    free(T.cloud_sum);
    T.cloud_sum = th_output(T.cloud_sum_cmd);
    T.sums_equal = T.cloud_sum != NULL && strstr(T.cloud_sum, "items ") != NULL &&
                   strstr(T.cloud_sum, "notes ") != NULL;
    for (i = 0; i < FT_EDGES; i++) {
        free(T.edges[i].sum);
        T.edges[i].sum = th_output(T.edges[i].sum_cmd);
        if (T.edges[i].sum == NULL || T.cloud_sum == NULL ||
            strcmp(T.edges[i].sum, T.cloud_sum) != 0)
            T.sums_equal = 0;
    }
}

static void print_status(FILE *out)
{
    int i;

    for (i = 0; i < FT_EDGES; i++) {
        const struct edge *e = &T.edges[i];
        fprintf(out, "faults:   %s: committed %lld, cloud applied %lld, outbox %lld, checksum %s\n",
                e->name, e->counted, e->applied, e->outbox,
                e->sum == NULL                                            ? "(failed)"
                : T.cloud_sum != NULL && strcmp(e->sum, T.cloud_sum) == 0 ? "= cloud"
                                                                          : "DIFFERS");
    }
}

static int converged(void *ctx)
{
    static double reported;
    double now = th_now();

    (void)ctx;
    check_alive();
    if (now - T.checked_at < (T.pg != NULL ? FT_COUNT_PERIOD_PG : FT_COUNT_PERIOD))
        return 0;
    T.checked_at = now;
    if (!counts_match()) {
        T.sums_equal = 0;
    } else if (now - T.sums_at >= FT_SUM_PERIOD) {
        take_checksums();
        if (T.sums_equal)
            return 1;
    }
    if (now - reported >= FT_REPORT_PERIOD) {
        reported = now;
        if (now - T.sums_at > FT_REPORT_PERIOD)
            take_checksums(); /* show the checksums even while the counts do not match */
        say("converging:");
        print_status(stdout);
    }
    return 0;
}

/* Prints one line per table of each output side by side with the cloud's. */
static void print_sum_diff(void)
{
    int i;

    fprintf(stderr, "---- checksums: cloud ----\n%s", T.cloud_sum ? T.cloud_sum : "(failed)\n");
    for (i = 0; i < FT_EDGES; i++) {
        const struct edge *e = &T.edges[i];
        fprintf(stderr, "---- checksums: %s (%s) ----\n%s", e->name,
                e->sum != NULL && T.cloud_sum != NULL && strcmp(e->sum, T.cloud_sum) == 0
                    ? "same as the cloud"
                    : "DIFFERS from the cloud",
                e->sum ? e->sum : "(failed)\n");
    }
}

/* Prints the rows of a two-column query (owner, count or sample) on one line. */
static void print_query(sqlite3 *db, const char *label, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int n = 0;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "      %s: (query failed: %s)\n", label, sqlite3_errmsg(db));
        return;
    }
    fprintf(stderr, "      %s:", label);
    while (sqlite3_step(st) == SQLITE_ROW) {
        fprintf(stderr, " %s=%s", (const char *)sqlite3_column_text(st, 0),
                (const char *)sqlite3_column_text(st, 1));
        n++;
    }
    fprintf(stderr, "%s\n", n == 0 ? " none" : "");
    sqlite3_finalize(st);
}

/* Appends the SQL literal of the edge's key in column 0 of st to list (a bigint, or a text with
 * its quotes doubled). Returns 0, or -1 if it does not fit in FT_PG_KEYS_MAX bytes. */
static int pg_key_append(char *list, size_t *len, sqlite3_stmt *st, int text)
{
    const char *k;
    size_t at = *len;
    int w;

    if (at + 2 >= FT_PG_KEYS_MAX)
        return -1;
    if (at > 0)
        list[at++] = ',';
    if (!text) {
        w = snprintf(list + at, FT_PG_KEYS_MAX - at, "%lld",
                     (long long)sqlite3_column_int64(st, 0));
        if (w < 0 || (size_t)w >= FT_PG_KEYS_MAX - at)
            return -1;
        *len = at + (size_t)w;
        return 0;
    }
    k = (const char *)sqlite3_column_text(st, 0);
    list[at++] = '\'';
    for (; k != NULL && *k != '\0'; k++) {
        if (at + 3 >= FT_PG_KEYS_MAX)
            return -1;
        if (*k == '\'')
            list[at++] = '\'';
        list[at++] = *k;
    }
    if (at + 2 >= FT_PG_KEYS_MAX)
        return -1;
    list[at++] = '\'';
    list[at] = '\0';
    *len = at;
    return 0;
}

/* The --pg counterpart of print_row_diff: a PostgreSQL store cannot be attached to the edge's
 * SQLite database, so the edge's keys of each owner go to PostgreSQL as an array literal, and
 * PostgreSQL counts the live keys the edge lacks and the edge's keys that have no live row at the
 * cloud, with the smallest of each as a sample (for notes, the number after "X:"). Tells lost
 * and extra rows apart, but does not compare values. */
static void print_row_diff_pg(const struct edge *e)
{
    static const struct {
        const char *name, *key, *type, *sample;
    } tables[] = {
        {"items", "id", "bigint", "min(%s)"},
        {"notes", "k", "text", "min(substring(%s from '^.:([0-9]+)')::bigint)"},
    };
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char *list;
    const char *cond, *arr;
    size_t i, len;
    long long live, missing, extra;
    int w, n, text, fits;

    list = malloc(FT_PG_KEYS_MAX);
    if (list == NULL)
        return;
    if (sqlite3_open_v2(e->db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "    %s: cannot open its database: %s\n", e->name, sqlite3_errmsg(db));
        sqlite3_close(db);
        free(list);
        return;
    }
    sqlite3_busy_timeout(db, 5000);
    fprintf(stderr,
            "    %s compared with the cloud's live rows (by owner of the key; keys only, values "
            "are not compared with --pg):\n",
            e->name);
    for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        const char *t = tables[i].name, *k = tables[i].key;
        text = strcmp(tables[i].type, "text") == 0;
        fprintf(stderr, "    table %s\n", t);
        for (w = 0; w < FT_WRITERS; w++) {
            /* The same condition selects an owner's keys in SQLite and in PostgreSQL: text
             * compares byte by byte in both (the test cluster has the C locale). */
            if (text)
                cond = th_fmt("k >= '%c:' AND k < '%c;'", 'a' + w, 'a' + w);
            else
                cond = th_fmt("id BETWEEN %lld AND %lld", (long long)w * FT_KEYS + 1,
                              (long long)(w + 1) * FT_KEYS);
            len = 0;
            list[0] = '\0';
            n = 0;
            fits = 1;
            if (sqlite3_prepare_v2(db, th_fmt("SELECT %s FROM %s WHERE %s", k, t, cond), -1, &st,
                                   NULL) != SQLITE_OK) {
                fprintf(stderr, "      %c: (query failed: %s)\n", 'a' + w, sqlite3_errmsg(db));
                continue;
            }
            while (fits && sqlite3_step(st) == SQLITE_ROW) {
                fits = pg_key_append(list, &len, st, text) == 0;
                n++;
            }
            sqlite3_finalize(st);
            if (!fits) {
                fprintf(stderr, "      %c: more keys at the edge than fit in a query (%d bytes)\n",
                        'a' + w, FT_PG_KEYS_MAX);
                continue;
            }
            arr = th_fmt("ARRAY[%s]::%s[]", list, tables[i].type);
            live = th_pg_int(T.pg, "SELECT count(*) FROM %s WHERE _deleted = 0 AND %s", t, cond);
            missing = th_pg_int(
                T.pg, "SELECT count(*) FROM %s WHERE _deleted = 0 AND %s AND %s <> ALL(%s)", t,
                cond, k, arr);
            extra =
                th_pg_int(T.pg,
                          "SELECT count(*) FROM unnest(%s) u(k) WHERE NOT EXISTS (SELECT 1 FROM "
                          "%s c WHERE c.%s = u.k AND c._deleted = 0)",
                          arr, t, k);
            fprintf(stderr,
                    "      %c: %lld live at the cloud, %d at the edge; missing at the edge %lld, "
                    "extra at the edge (deleted or unknown at the cloud) %lld\n",
                    'a' + w, live, n, missing, extra);
            if (missing > 0)
                fprintf(stderr, "        smallest missing: %lld\n",
                        th_pg_int(T.pg,
                                  "SELECT %s FROM %s WHERE _deleted = 0 AND %s AND %s <> ALL(%s)",
                                  th_fmt(tables[i].sample, k), t, cond, k, arr));
            if (extra > 0)
                fprintf(stderr, "        smallest extra: %lld\n",
                        th_pg_int(T.pg,
                                  "SELECT %s FROM unnest(%s) u(k) WHERE NOT EXISTS (SELECT 1 "
                                  "FROM %s c WHERE c.%s = u.k AND c._deleted = 0)",
                                  th_fmt(tables[i].sample, "u.k"), arr, t, k));
        }
    }
    sqlite3_close(db);
    free(list);
}

/* Row by row comparison of the cloud's live rows with one edge's table, grouped by the writer
 * that owns the key, with a few sample keys: tells lost, extra and stale rows apart. */
static void print_row_diff(const struct edge *e)
{
    static const struct {
        const char *name, *key, *owner, *differ;
    } tables[] = {
        {"items", "id", "char(97 + (%s.id - 1) / 100000)",
         "c.name IS NOT x.name OR c.qty IS NOT x.qty OR c.price IS NOT x.price OR "
         "c.note IS NOT x.note OR c.data IS NOT x.data"},
        {"notes", "k", "substr(%s.k, 1, 1)", "c.body IS NOT x.body OR c.n IS NOT x.n"},
    };
    sqlite3 *db = NULL;
    char *sql;
    size_t i;
    const char *oc, *ox;

    if (T.pg != NULL) {
        print_row_diff_pg(e);
        return;
    }
    if (sqlite3_open_v2(T.cloud_db, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return;
    }
    sqlite3_busy_timeout(db, 5000);
    sql = sqlite3_mprintf("ATTACH %Q AS x", e->db);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "    %s: cannot attach its database: %s\n", e->name, sqlite3_errmsg(db));
        sqlite3_free(sql);
        sqlite3_close(db);
        return;
    }
    sqlite3_free(sql);
    fprintf(stderr, "    %s compared with the cloud's live rows (by owner of the key):\n", e->name);
    for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        const char *t = tables[i].name, *k = tables[i].key;
        oc = th_fmt(tables[i].owner, "c");
        ox = th_fmt(tables[i].owner, "x");
        fprintf(stderr, "    table %s\n", t);
        sql = sqlite3_mprintf("SELECT %s, count(*) FROM main.%s c WHERE c._deleted = 0 AND NOT "
                              "EXISTS (SELECT 1 FROM x.%s x WHERE x.%s = c.%s) GROUP BY 1",
                              oc, t, t, k, k);
        print_query(db, "missing at the edge", sql);
        sqlite3_free(sql);
        sql = sqlite3_mprintf("SELECT %s, group_concat(quote(%s), ' ') FROM (SELECT c.%s FROM "
                              "main.%s c WHERE c._deleted = 0 AND NOT EXISTS (SELECT 1 FROM x.%s x "
                              "WHERE x.%s = c.%s) LIMIT 5) c GROUP BY 1",
                              oc, k, k, t, t, k, k);
        print_query(db, "  sample", sql);
        sqlite3_free(sql);
        sql = sqlite3_mprintf("SELECT %s, count(*) FROM x.%s x WHERE NOT EXISTS (SELECT 1 FROM "
                              "main.%s c WHERE c.%s = x.%s AND c._deleted = 0) GROUP BY 1",
                              ox, t, t, k, k);
        print_query(db, "extra at the edge (deleted or unknown at the cloud)", sql);
        sqlite3_free(sql);
        sql = sqlite3_mprintf("SELECT %s, count(*) FROM main.%s c JOIN x.%s x ON x.%s = c.%s "
                              "WHERE c._deleted = 0 AND (%s) GROUP BY 1",
                              oc, t, t, k, k, tables[i].differ);
        print_query(db, "different values", sql);
        sqlite3_free(sql);
        sql = sqlite3_mprintf("SELECT %s, group_concat(quote(%s), ' ') FROM (SELECT c.%s FROM "
                              "main.%s c JOIN x.%s x ON x.%s = c.%s WHERE c._deleted = 0 AND (%s) "
                              "LIMIT 5) c GROUP BY 1",
                              oc, k, k, t, t, k, k, tables[i].differ);
        print_query(db, "  sample", sql);
        sqlite3_free(sql);
    }
    sqlite3_close(db);
}

/* After convergence: each writer's own rows, as its application knows them, are the rows its
 * database and the cloud hold in its key space. */
static void check_models(void)
{
    int i;
    char sql[512];
    long long n;

    for (i = 0; i < FT_WRITERS; i++) {
        const struct edge *e = &T.edges[i];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM items WHERE id BETWEEN %lld AND %lld",
                 e->id_base + 1, e->id_base + FT_KEYS);
        n = q_int(e->db, sql);
        TH_CHECK(n == e->items.nlive, "%s holds %lld of its items, its application wrote %d",
                 e->name, n, e->items.nlive);
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM items WHERE _deleted = 0 AND id BETWEEN %lld AND %lld",
                 e->id_base + 1, e->id_base + FT_KEYS);
        n = cloud_int(sql);
        TH_CHECK(n == e->items.nlive, "the cloud holds %lld items of %s, its application wrote %d",
                 n, e->name, e->items.nlive);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM notes WHERE k >= '%c:' AND k < '%c;'",
                 e->letter, e->letter);
        n = q_int(e->db, sql);
        TH_CHECK(n == e->notes.nlive, "%s holds %lld of its notes, its application wrote %d",
                 e->name, n, e->notes.nlive);
        TH_CHECK(q_int(e->db, "SELECT count(*) FROM _sync_dead") == 0,
                 "%s has changes in _sync_dead", e->name);
    }
}

/* ---- setup ----------------------------------------------------------------------------- */

static long long env_ll(const char *name, long long def, long long min)
{
    const char *s = getenv(name);
    char *end;
    long long v;

    if (s == NULL || *s == '\0')
        return def;
    v = strtoll(s, &end, 0);
    TH_CHECK(*end == '\0' && v >= min, "%s=%s: expected a number of at least %lld", name, s, min);
    return v;
}

static uint64_t pick_seed(void)
{
    const char *s = getenv("FAULTS_SEED");
    struct timespec ts;

    if (s != NULL && *s != '\0')
        return strtoull(s, NULL, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* Ready to write: every daemon logged in, the writers' capture triggers are in place on both
 * tables and the replica created its tables. */
static int started(void *ctx)
{
    int i;

    (void)ctx;
    check_alive();
    if (!file_contains(T.broker_log, "u'synccloud'"))
        return 0;
    for (i = 0; i < FT_EDGES; i++) {
        const struct edge *e = &T.edges[i];
        if (!file_contains(T.broker_log, th_fmt("u'%s'", e->name)))
            return 0;
        if (q_int(e->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                         "('items', 'notes', '_sync_outbox')") != 3)
            return 0;
        if (e->writer && q_int(e->db, "SELECT count(DISTINCT tbl_name) FROM sqlite_master WHERE "
                                      "type = 'trigger' AND tbl_name IN ('items', 'notes')") != 2)
            return 0;
    }
    return 1;
}

/* Starts everything; with pg (--pg), synccloud's store is a throwaway PostgreSQL server's. */
static void setup(struct rng *master, int pg)
{
    int i;

    T.dir = th_tmpdir();
    TH_CHECK(T.dir != NULL, "no temp folder");
    T.port = th_free_port();
    TH_CHECK(T.port > 0, "no free port");
    T.schema = SYNC_SOURCE_DIR "/docs/examples/schema.conf";
    T.cloud_db = th_fmt("%s/cloud.db", T.dir);
    if (pg) {
        /* The keyword form (e2e uses the URL form): synccloud recognises both. */
        T.pg = th_pg_start();
        T.cloud_db = T.pg;
    }
    T.cloud_log = th_fmt("%s/synccloud.log", T.dir);
    T.broker_log = th_fmt("%s/mosquitto.log", T.dir);
    T.sum_log = th_fmt("%s/checksum.log", T.dir);
    th_register_log(T.sum_log);
    th_register_log(T.broker_log);
    th_register_log(T.cloud_log);
    printf("faults: folder %s, broker ssl://127.0.0.1:%d, cloud store %s\n", T.dir, T.port,
           T.cloud_db);

    TH_CHECK(th_run("bash %s/scripts/devbroker.sh setup %s %d >/dev/null", th_shq(SYNC_SOURCE_DIR),
                    th_shq(T.dir), T.port) == 0,
             "devbroker.sh setup failed");
    T.broker_argv[0] = "mosquitto";
    T.broker_argv[1] = "-c";
    T.broker_argv[2] = (char *)th_fmt("%s/mosquitto.conf", T.dir);
    T.broker_argv[3] = NULL;
    T.broker_pid = spawn(T.broker_log, T.broker_argv);
    TH_CHECK(th_wait_port(T.port, 10000) == 0, "mosquitto does not listen on %d", T.port);

    T.cloud_args = cloud_args();
    T.cloud_sum_cmd = th_checksum_cmd(T.cloud_args.v, T.cloud_args.n, T.sum_log);

    for (i = 0; i < FT_EDGES; i++) {
        struct edge *e = &T.edges[i];
        const char *broker;

        e->letter = (char)('a' + i);
        e->name = th_fmt("edge-%c", e->letter);
        e->db = th_fmt("%s/%c.db", T.dir, e->letter);
        e->log = th_fmt("%s/%s.log", T.dir, e->name);
        e->writer = i < FT_WRITERS;
        e->outbox = e->applied = -1;
        th_register_log(e->log);
        if (e->writer) {
            e->proxy_port = th_free_port();
            TH_CHECK(e->proxy_port > 0, "no free port");
            e->proxy = th_proxy_start(e->proxy_port, T.port);
            TH_CHECK(e->proxy != NULL, "cannot start the proxy of %s", e->name);
            broker = th_fmt("ssl://127.0.0.1:%d", e->proxy_port);
            /* Each writer's changes come from a stream of its own: the same seed writes the
             * same changes whatever the timing. */
            rng_seed(&e->rng, rnd(master));
            keyset_init(&e->items);
            keyset_init(&e->notes);
            e->id_base = (long long)i * FT_KEYS;
            e->share = T.changes / FT_WRITERS + (i < T.changes % FT_WRITERS ? 1 : 0);
            /* The application created its tables long before sync was installed. */
            TH_CHECK(th_sql_exec(e->db, "PRAGMA journal_mode=WAL;"
                                        "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT,"
                                        " qty INTEGER, price REAL, note TEXT, data BLOB);"
                                        "CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT NULL,"
                                        " n INTEGER)") == 0,
                     "cannot create %s", e->db);
        } else {
            broker = th_fmt("ssl://127.0.0.1:%d", T.port);
        }
        e->args = edge_args(e, broker);
        e->sum_cmd = th_checksum_cmd(e->args.v, e->args.n, T.sum_log);
    }

    T.cloud_pid = spawn(T.cloud_log, T.cloud_args.v);
    for (i = 0; i < FT_EDGES; i++)
        T.edges[i].pid = spawn(T.edges[i].log, T.edges[i].args.v);
    TH_CHECK(th_wait_until(started, NULL, FT_START_S * 1000) == 0,
             "the daemons did not connect and prepare their databases within %d s", FT_START_S);

    for (i = 0; i < FT_WRITERS; i++) {
        struct edge *e = &T.edges[i];
        TH_CHECK(sqlite3_open_v2(e->db, &e->app, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK,
                 "open %s: %s", e->db, sqlite3_errmsg(e->app));
        sqlite3_busy_timeout(e->app, 5000);
    }
}

int main(int argc, char **argv)
{
    struct rng master;
    double now, next_check = 0, t_written, t_done, waited;
    long long total = 0, busy = 0, anomalies = 0;
    int i, all_written, pg = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "--pg") == 0) {
        pg = 1;
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--pg]\n", argv[0]);
        return 2;
    }
    th_init();
    atexit(on_exit_report);
    T.seed = pick_seed();
    printf("faults: seed %" PRIu64 " (FAULTS_SEED=%" PRIu64 " reproduces this run)\n", T.seed,
           T.seed);
    T.changes = env_ll("FAULTS_CHANGES", FT_CHANGES, FT_WRITERS);
    T.seconds = (double)env_ll("FAULTS_SECONDS", FT_SECONDS, 10);
    T.converge_s = (int)env_ll("FAULTS_CONVERGE_S", FT_CONVERGE_S, 10);
    printf("faults: %lld changes over a writing phase of %.0f s (FAULTS_CHANGES, "
           "FAULTS_SECONDS); convergence allowed %d s (FAULTS_CONVERGE_S)\n",
           T.changes, T.seconds, T.converge_s);
    rng_seed(&master, T.seed);
    plan_faults(&master);
    printf("faults: plan (seconds after writing starts):\n");
    for (i = 0; i < T.nfaults; i++) {
        const struct fault *f = &T.faults[i];
        printf("faults:   %6.1f  %s", f->at, kind_name[f->kind]);
        if (f->kind == F_EDGE || f->kind == F_CUT || f->kind == F_WIPE || f->kind == F_CORRUPT)
            printf(" edge-%c", 'a' + f->who);
        printf(" for %.1f s\n", f->length);
    }

    setup(&master, pg);

    /* ---- the writing phase, with faults ---- */
    T.t0 = th_now();
    say("writing starts");
    for (;;) {
        now = th_now() - T.t0;
        run_faults(now);
        all_written = 1;
        for (i = 0; i < FT_WRITERS; i++) {
            app_write(&T.edges[i], now);
            if (T.edges[i].counted < T.edges[i].share)
                all_written = 0;
        }
        check_alive();
        if (now >= next_check) {
            check_not_twice();
            next_check = now + FT_CHECK_PERIOD;
        }
        if (all_written && now >= T.seconds && faults_over())
            break;
        usleep(5000);
    }
    t_written = th_now();
    for (i = 0; i < FT_WRITERS; i++) {
        const struct edge *e = &T.edges[i];
        total += e->counted;
        busy += e->busy;
        anomalies += e->anomalies;
        say("%s wrote %lld changes in %lld transactions: %lld inserts, %lld updates, %lld "
            "deletes, %lld re-inserts; %lld rolled back (locked), %lld anomalies",
            e->name, e->counted, e->txs, e->ins, e->upd, e->del, e->reins, e->busy, e->anomalies);
    }
    say("writing over after %.1f s; %d faults, the last %.1f s ago", t_written - T.t0, T.nfaults,
        t_written - T.t0 - T.last_fault);
    TH_CHECK(total == T.changes, "committed %lld changes instead of %lld", total, T.changes);

    /* ---- convergence ---- */
    if (th_wait_until(converged, NULL, T.converge_s * 1000) != 0) {
        counts_match();
        take_checksums();
        fprintf(stderr, "faults: no convergence %d s after the writing phase\n", T.converge_s);
        print_status(stderr);
        fprintf(stderr, "faults: total committed %lld, cloud applied in all: %lld\n", total,
                cloud_int("SELECT coalesce(sum(applied), 0) FROM _sync_devices"));
        for (i = 0; i < F_NKINDS; i++)
            fprintf(stderr, "faults:   %-18s %d\n", kind_name[i], T.done_by_kind[i]);
        print_sum_diff();
        for (i = 0; i < FT_EDGES; i++)
            if (T.edges[i].sum == NULL || T.cloud_sum == NULL ||
                strcmp(T.edges[i].sum, T.cloud_sum) != 0)
                print_row_diff(&T.edges[i]);
        TH_FAIL("the cloud and the edges did not converge within %d s after writing (last fault "
                "%.1f s before the end of writing)",
                T.converge_s, t_written - T.t0 - T.last_fault);
    }
    t_done = th_now();
    waited = t_done - T.t0 - T.last_fault;
    say("converged %.1f s after the last fault (%.1f s after writing ended)", waited,
        t_done - t_written);
    for (i = 0; i < FT_EDGES; i++)
        say("  %s: committed %lld, cloud applied %lld", T.edges[i].name, T.edges[i].counted,
            T.edges[i].applied);
    say("  total: %lld changes, applied exactly once", total);
    for (i = 0; i < F_NKINDS; i++)
        say("  faults: %-18s %d", kind_name[i], T.done_by_kind[i]);
    say("checksums (cloud = edge-a = edge-b = edge-c = edge-d):");
    fputs(T.cloud_sum, stdout);
    TH_CHECK(cloud_int("SELECT coalesce(sum(applied), 0) FROM _sync_devices") == total,
             "the cloud's applied counts of all devices do not add up to %lld", total);
    check_models();
    TH_CHECK(anomalies == 0,
             "%lld application transactions found their own rows changed under them (see the "
             "ANOMALY lines)",
             anomalies);

    /* The damaged replica must have been noticed and rebuilt, not silently reused. */
    TH_CHECK(file_contains(T.edges[FT_REPLICA].log, "is damaged and was moved to"),
             "%s never reported its damaged database as moved aside", T.edges[FT_REPLICA].name);

    /* ---- orderly stop ---- */
    for (i = 0; i < FT_EDGES; i++)
        stop(T.edges[i].pid, th_fmt("syncedge %s", T.edges[i].name), T.edges[i].log, 1);
    stop(T.cloud_pid, "synccloud", T.cloud_log, 1);
    stop(T.broker_pid, "mosquitto", T.broker_log, 0);
    th_pg_stop(); /* a no-op without --pg */
    for (i = 0; i < FT_WRITERS; i++) {
        struct edge *e = &T.edges[i];
        th_proxy_stop(e->proxy);
        e->proxy = NULL;
        sqlite3_close(e->app);
        keyset_free(&e->items);
        keyset_free(&e->notes);
    }
    for (i = 0; i < FT_EDGES; i++)
        free(T.edges[i].sum);
    free(T.cloud_sum);
    say("OK (%lld changes, %d faults, %lld transactions rolled back on a locked database)", total,
        T.nfaults, busy);
    ft_passed = 1;
    return 0;
}
