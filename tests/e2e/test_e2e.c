/* test_e2e.c - end to end: an application writes 1,000 changes on edge A; the cloud and
 * edge B (a replica that starts from nothing) must end up with exactly the same rows.
 *
 * Real processes only: mosquitto with the development TLS config (scripts/devbroker.sh),
 * synccloud, and two syncedge. The test writes into A's database with plain SQL through the
 * sqlite3 API, as a separate application would, in several transactions: a seeded random
 * mix of inserts, updates of one or several columns (NULLs, extreme integers, reals, text with
 * quotes and unicode, blobs), deletes and re-inserts of deleted keys, on both tables of
 * docs/examples/schema.conf. It then waits until A's outbox is empty and the `--checksum`
 * outputs of A, of the cloud and of B are identical, and prints the throughput.
 *
 * Environment: E2E_SEED=N repeats a run (the seed is printed); TH_KEEP=1 keeps the folder with
 * every database and log.
 *
 * With --pg, synccloud's store is a PostgreSQL database of a throwaway server (th_pg_start),
 * named by a postgresql:// URL.
 */
#include "harness.h"

#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
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

#define E2E_CHANGES 1000    /* changes written on A */
#define E2E_CONVERGE_S 120  /* how long the copies may take to agree */
#define E2E_START_S 30      /* how long the daemons may take to start */
#define E2E_SUM_PERIOD 0.25 /* seconds between two rounds of --checksum runs */
#define E2E_MAX_ARGS 32
#define E2E_MAX_KEYS 2048

/* Everything the test and its wait predicates share. */
struct e2e {
    const char *dir;           /* temp folder: broker files, databases, logs */
    const char *schema;        /* docs/examples/schema.conf */
    const char *broker;        /* ssl://127.0.0.1:PORT */
    const char *a_db;          /* edge A: the application's database */
    const char *b_db;          /* edge B: created by syncedge from the schema */
    const char *cloud_db;      /* synccloud's store (a file, or a URL with --pg) */
    const char *pg;            /* with --pg: the store's connection string for queries */
    const char *sum_log;       /* stderr of the --checksum runs */
    const char *sum_cmd_a;     /* shell command printing A's checksums */
    const char *sum_cmd_b;     /* same for B */
    const char *sum_cmd_cloud; /* same for the cloud */
    int port;                  /* broker TLS port */
    pid_t broker_pid;          /* mosquitto */
    pid_t cloud_pid;           /* synccloud */
    pid_t a_pid;               /* syncedge of edge-a */
    pid_t b_pid;               /* syncedge of edge-b */
    char *sum_a;               /* latest --checksum output of A (owned, NULL if it failed) */
    char *sum_b;               /* same for B */
    char *sum_cloud;           /* same for the cloud */
    double sums_at;            /* th_now() of the latest --checksum round */
    long long outbox;          /* latest count of A's _sync_outbox */
};

struct args {
    char *v[E2E_MAX_ARGS + 1]; /* NULL-terminated argv */
    int n;                     /* entries used */
};

static void args_add(struct args *a, const char *s)
{
    TH_CHECK(a->n < E2E_MAX_ARGS, "too many arguments");
    a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
}

/* Returns the argv for syncedge of device on database db. */
static struct args edge_args(const struct e2e *e, const char *device, const char *db)
{
    struct args a = {{NULL}, 0};

    args_add(&a, SYNCEDGE_BIN);
    args_add(&a, "--database");
    args_add(&a, db);
    args_add(&a, "--schema");
    args_add(&a, e->schema);
    args_add(&a, "--tenant");
    args_add(&a, "demo");
    args_add(&a, "--device");
    args_add(&a, device);
    args_add(&a, "--broker");
    args_add(&a, e->broker);
    args_add(&a, "--password-file");
    args_add(&a, th_fmt("%s/%s.pass", e->dir, device));
    args_add(&a, "--cafile");
    args_add(&a, th_fmt("%s/ca.crt", e->dir));
    args_add(&a, "--replica");
    args_add(&a, "true");
    args_add(&a, "--metrics-file");
    args_add(&a, th_fmt("%s/%s.prom", e->dir, device));
    args_add(&a, "--metrics-interval");
    args_add(&a, "1");
    args_add(&a, "--log-level");
    args_add(&a, "info");
    args_add(&a, "--log-dest");
    args_add(&a, "stderr");
    return a;
}

/* Returns the argv for synccloud. */
static struct args cloud_args(const struct e2e *e)
{
    struct args a = {{NULL}, 0};

    args_add(&a, SYNCCLOUD_BIN);
    args_add(&a, "--database");
    args_add(&a, e->cloud_db);
    args_add(&a, "--schema");
    args_add(&a, e->schema);
    args_add(&a, "--tenant");
    args_add(&a, "demo");
    args_add(&a, "--broker");
    args_add(&a, e->broker);
    args_add(&a, "--username");
    args_add(&a, "synccloud");
    args_add(&a, "--password-file");
    args_add(&a, th_fmt("%s/synccloud.pass", e->dir));
    args_add(&a, "--cafile");
    args_add(&a, th_fmt("%s/ca.crt", e->dir));
    /* Conflicts on notes wait for a person (the manual-resolution phase below). */
    args_add(&a, "--policy");
    args_add(&a, "notes manual");
    args_add(&a, "--metrics-file");
    args_add(&a, th_fmt("%s/synccloud.prom", e->dir));
    args_add(&a, "--metrics-interval");
    args_add(&a, "1");
    args_add(&a, "--log-level");
    args_add(&a, "info");
    args_add(&a, "--log-dest");
    args_add(&a, "stderr");
    return a;
}

/* Returns the ROWS field of TABLE's line in a --checksum output, or -1 if there is none. */
static long long sum_rows(const char *sum, const char *table)
{
    size_t tl = strlen(table);
    const char *p = sum;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, table, tl) == 0 && p[tl] == ' ')
            return strtoll(p + tl + 1, NULL, 10);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

static int file_contains(const char *path, const char *needle)
{
    char *out = NULL;
    int rc = th_capture(&out, "grep -cF -- %s %s 2>/dev/null", th_shq(needle), th_shq(path));

    free(out);
    return rc == 0;
}

static void check_daemons_alive(const struct e2e *e)
{
    TH_CHECK(th_alive(e->cloud_pid), "synccloud exited early");
    TH_CHECK(th_alive(e->a_pid), "syncedge A exited early");
    TH_CHECK(th_alive(e->b_pid), "syncedge B exited early");
    TH_CHECK(th_alive(e->broker_pid), "mosquitto exited early");
}

/* Ready to write: every daemon logged in to the broker, A has its outbox and capture
 * triggers on both tables, and B created its tables from the schema. */
static int started(void *ctx)
{
    const struct e2e *e = ctx;
    const char *mlog = th_fmt("%s/mosquitto.log", e->dir);

    check_daemons_alive(e);
    return file_contains(mlog, "u'synccloud'") && file_contains(mlog, "u'edge-a'") &&
           file_contains(mlog, "u'edge-b'") &&
           th_sql_int(e->a_db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                               "name='_sync_outbox'") == 1 &&
           th_sql_int(e->a_db, "SELECT count(DISTINCT tbl_name) FROM sqlite_master WHERE "
                               "type='trigger' AND tbl_name IN ('items','notes')") == 2 &&
           th_run("test -f %s", th_shq(e->b_db)) == 0 &&
           th_sql_int(e->b_db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                               "name IN ('items','notes')") == 2;
}

/* Runs the three --checksum commands and keeps their outputs in e. */
static void take_checksums(struct e2e *e)
{
    e->sums_at = th_now();
    free(e->sum_a);
    free(e->sum_b);
    free(e->sum_cloud);
    e->sum_a = th_output(e->sum_cmd_a);
    e->sum_cloud = th_output(e->sum_cmd_cloud);
    e->sum_b = th_output(e->sum_cmd_b);
}

/* Converged: A's outbox is empty and the three checksums are identical and cover both
 * tables. The checksums are taken at most every E2E_SUM_PERIOD seconds. */
static int converged(void *ctx)
{
    struct e2e *e = ctx;

    check_daemons_alive(e);
    e->outbox = th_sql_int(e->a_db, "SELECT count(*) FROM _sync_outbox");
    if (e->outbox != 0)
        return 0;
    if (th_now() - e->sums_at < E2E_SUM_PERIOD)
        return 0;
    take_checksums(e);
    return e->sum_a != NULL && e->sum_b != NULL && e->sum_cloud != NULL &&
           sum_rows(e->sum_a, "items") >= 0 && sum_rows(e->sum_a, "notes") >= 0 &&
           strcmp(e->sum_a, e->sum_cloud) == 0 && strcmp(e->sum_a, e->sum_b) == 0;
}

/* ---- the application's writes -------------------------------------------------------- */

static uint64_t rng; /* splitmix64 state: the same seed gives the same run everywhere */

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int below(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

/* Live and deleted key numbers of one table; the real key is derived from the number. */
struct keyset {
    int live[E2E_MAX_KEYS]; /* key numbers of the rows that exist */
    int nlive;              /* entries in live */
    int dead[E2E_MAX_KEYS]; /* key numbers of deleted rows, for re-inserts */
    int ndead;              /* entries in dead */
    int next;               /* next never-used key number */
    int last;               /* key number touched last (hot row), or -1 */
};

static int take(int *arr, int *n, int i)
{
    int k = arr[i];

    arr[i] = arr[--*n];
    return k;
}

/* items.id: mostly positive, some negative. */
static sqlite3_int64 item_id(int k)
{
    return k % 7 == 3 ? -(sqlite3_int64)k * 1000003 : (sqlite3_int64)k;
}

/* notes.k: text keys with quotes, unicode, spaces and topic-level characters. */
static const char *note_key(int k)
{
    switch (k % 6) {
    case 0:
        return th_fmt("note-%d", k);
    case 1:
        return th_fmt("it's \"%d\"", k);
    case 2:
        return th_fmt("Grüße %d ✓ 日本", k);
    case 3:
        return th_fmt("emoji-😀-%d", k);
    case 4:
        return th_fmt("a/b+c#%d", k);
    default:
        return th_fmt("  spaced %d  ", k);
    }
}

static void bind_text(sqlite3_stmt *st, int i, int nullable)
{
    static const char *fixed[] = {
        "",
        "O'Brien said \"hi\"; DROP TABLE items; --",
        "Grüße, naïve café ✓ 日本語 😀",
        "line1\nline2\ttab\r\n",
        "back\\slash %s %d",
    };
    char buf[2100];
    int r = below(20), i2, len;

    if (nullable && r < 3) {
        sqlite3_bind_null(st, i);
    } else if (r < 10) {
        sqlite3_bind_text(st, i, fixed[below(5)], -1, SQLITE_TRANSIENT);
    } else if (r < 19) {
        snprintf(buf, sizeof(buf), "value %" PRIu64, rnd() % 100000);
        sqlite3_bind_text(st, i, buf, -1, SQLITE_TRANSIENT);
    } else {
        len = 200 + below(1800);
        for (i2 = 0; i2 < len; i2++)
            buf[i2] = (char)('a' + below(26));
        buf[len] = '\0';
        sqlite3_bind_text(st, i, buf, len, SQLITE_TRANSIENT);
    }
}

static void bind_int(sqlite3_stmt *st, int i)
{
    static const sqlite3_int64 fixed[] = {
        0, -1, 1, INT64_MIN, INT64_MAX, (sqlite3_int64)9007199254740993LL, -2147483649LL,
    };
    int r = below(20);

    if (r < 3)
        sqlite3_bind_null(st, i);
    else if (r < 7)
        sqlite3_bind_int64(st, i, fixed[below(7)]);
    else
        sqlite3_bind_int64(st, i, (sqlite3_int64)below(2001) - 1000);
}

static void bind_real(sqlite3_stmt *st, int i)
{
    static const double fixed[] = {0.1, -123.456, 1e300, -1e-300, 3.0, 2.5e-7, 123456.789};
    int r = below(20);

    if (r < 3)
        sqlite3_bind_null(st, i);
    else if (r < 8)
        sqlite3_bind_double(st, i, fixed[below(7)]);
    else
        sqlite3_bind_double(st, i, ((double)(int64_t)(rnd() >> 11) - 4e15) / 1e6);
}

static void bind_blob(sqlite3_stmt *st, int i)
{
    unsigned char buf[4096];
    int r = below(20), len, j;

    if (r < 3) {
        sqlite3_bind_null(st, i);
        return;
    }
    len = r == 19 ? 4096 : below(65);
    for (j = 0; j < len; j++)
        buf[j] = (unsigned char)(j % 5 == 0 ? 0 : rnd());
    sqlite3_bind_blob(st, i, buf, len, SQLITE_TRANSIENT);
}

/* Prepares sql on db, failing the test with SQLite's message if it does not compile. */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    TH_CHECK(rc == SQLITE_OK, "prepare %s: %s", sql, sqlite3_errmsg(db));
    return st;
}

/* Steps st to completion, checks it changed exactly one row, finalizes it. */
static void run_one(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    TH_CHECK(rc == SQLITE_DONE, "%s: %s", sqlite3_sql(st), sqlite3_errmsg(db));
    TH_CHECK(sqlite3_changes(db) == 1, "%s changed %d rows", sqlite3_sql(st), sqlite3_changes(db));
    sqlite3_finalize(st);
}

static void bind_key(sqlite3_stmt *st, int i, int items, int k)
{
    if (items)
        sqlite3_bind_int64(st, i, item_id(k));
    else
        sqlite3_bind_text(st, i, note_key(k), -1, SQLITE_TRANSIENT);
}

static void do_insert(sqlite3 *db, int items, int k)
{
    sqlite3_stmt *st;

    if (items) {
        st = prep(db, "INSERT INTO items(id, name, qty, price, note, data) VALUES(?,?,?,?,?,?)");
        bind_key(st, 1, 1, k);
        bind_text(st, 2, 1);
        bind_int(st, 3);
        bind_real(st, 4);
        bind_text(st, 5, 1);
        bind_blob(st, 6);
    } else {
        st = prep(db, "INSERT INTO notes(k, body, n) VALUES(?,?,?)");
        bind_key(st, 1, 0, k);
        bind_text(st, 2, 0);
        bind_int(st, 3);
    }
    run_one(db, st);
}

/* Updates a random non-empty subset of the non-key columns of row k. */
static void do_update(sqlite3 *db, int items, int k)
{
    static const char *icols[] = {"name", "qty", "price", "note", "data"};
    static const char *ncols[] = {"body", "n"};
    const char **cols = items ? icols : ncols;
    int ncol = items ? 5 : 2, mask, c, i = 1;
    char sql[256];
    size_t len;
    sqlite3_stmt *st;

    mask = 1 + below((1 << ncol) - 1);
    len = (size_t)snprintf(sql, sizeof(sql), "UPDATE %s SET ", items ? "items" : "notes");
    for (c = 0; c < ncol; c++)
        if (mask & (1 << c))
            len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s%s = ?", i++ > 1 ? ", " : "",
                                    cols[c]);
    snprintf(sql + len, sizeof(sql) - len, " WHERE %s = ?", items ? "id" : "k");
    st = prep(db, sql);
    i = 1;
    for (c = 0; c < ncol; c++) {
        if (!(mask & (1 << c)))
            continue;
        if (!items && c == 0)
            bind_text(st, i++, 0);
        else if (!items)
            bind_int(st, i++);
        else if (c == 0 || c == 3)
            bind_text(st, i++, 1);
        else if (c == 1)
            bind_int(st, i++);
        else if (c == 2)
            bind_real(st, i++);
        else
            bind_blob(st, i++);
    }
    bind_key(st, i, items, k);
    run_one(db, st);
}

static void do_delete(sqlite3 *db, int items, int k)
{
    sqlite3_stmt *st =
        prep(db, items ? "DELETE FROM items WHERE id = ?" : "DELETE FROM notes WHERE k = ?");

    bind_key(st, 1, items, k);
    run_one(db, st);
}

struct counts {
    int ins;   /* inserts of new keys */
    int upd;   /* updates */
    int del;   /* deletes */
    int reins; /* inserts of previously deleted keys */
    int txs;   /* transactions (an autocommit statement counts as one) */
};

/* Applies one random change to table items (items != 0) or notes. */
static void one_change(sqlite3 *db, struct keyset *ks, int items, struct counts *n)
{
    int r = below(100), k;

    if (ks->nlive == 0 || (r < 30 && ks->next < E2E_MAX_KEYS)) {
        k = ks->next++;
        do_insert(db, items, k);
        ks->live[ks->nlive++] = k;
        n->ins++;
    } else if (r < 60) {
        k = ks->live[below(ks->nlive)];
        do_update(db, items, k);
        n->upd++;
    } else if (r < 75) {
        k = take(ks->live, &ks->nlive, below(ks->nlive));
        do_delete(db, items, k);
        ks->dead[ks->ndead++] = k;
        n->del++;
        if (ks->last == k)
            ks->last = -1;
        return;
    } else if (r < 87 && ks->ndead > 0) {
        k = take(ks->dead, &ks->ndead, below(ks->ndead));
        do_insert(db, items, k);
        ks->live[ks->nlive++] = k;
        n->reins++;
    } else {
        /* The same row edited again and again: the edge must keep every step in order. */
        k = ks->last >= 0 ? ks->last : ks->live[below(ks->nlive)];
        do_update(db, items, k);
        n->upd++;
    }
    ks->last = k;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    TH_CHECK(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
}

/* Writes E2E_CHANGES changes into A's database in transactions of random size (some in
 * autocommit mode), plus one rolled-back transaction that must never reach anyone. */
static void write_changes(const struct e2e *e, struct counts *n)
{
    static struct keyset items, notes; /* large: keep them off the stack */
    sqlite3 *db = NULL;
    int done = 0, size, i, autocommit, rolled_back = 0;

    items.last = notes.last = -1;
    TH_CHECK(sqlite3_open_v2(e->a_db, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK, "open %s: %s",
             e->a_db, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 5000);
    while (done < E2E_CHANGES) {
        size = 1 + below(80);
        if (size > E2E_CHANGES - done)
            size = E2E_CHANGES - done;
        autocommit = below(6) == 0;
        if (!autocommit)
            exec_sql(db, "BEGIN IMMEDIATE");
        for (i = 0; i < size; i++) {
            int on_items = below(5) < 3; /* 60 % items, 40 % notes */
            one_change(db, on_items ? &items : &notes, on_items, n);
        }
        if (!autocommit)
            exec_sql(db, "COMMIT");
        n->txs += autocommit ? size : 1;
        done += size;
        if (!rolled_back && done > E2E_CHANGES / 2) {
            exec_sql(db, "BEGIN IMMEDIATE");
            exec_sql(db, "INSERT INTO items(id, name) VALUES(999999999, 'rolled back');"
                         "UPDATE notes SET body = 'rolled back';"
                         "DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT 3)");
            exec_sql(db, "ROLLBACK");
            rolled_back = 1;
        }
    }
    sqlite3_close(db);
}

/* ---- the test -------------------------------------------------------------------------- */

static pid_t spawn(const char *log, const struct args *a)
{
    pid_t pid;

    th_register_log(log);
    pid = th_spawn(log, a->v);
    TH_CHECK(pid > 0, "cannot start %s", a->v[0]);
    return pid;
}

/* A condition on one database: `sql` yields `want`. pg: db is a PostgreSQL connection
 * string. */
struct sql_is {
    const char *db, *sql;
    long long want;
    int pg;
};

static long long db_int(const char *db, int pg, const char *sql)
{
    return pg ? th_pg_int(db, "%s", sql) : th_sql_int(db, "%s", sql);
}

static int sql_is(void *ctx)
{
    const struct sql_is *q = ctx;
    return db_int(q->db, q->pg, q->sql) == q->want;
}

static void wait_db(const char *db, int pg, const char *sql, long long want, const char *what)
{
    struct sql_is q = {db, sql, want, pg};
    TH_CHECK(th_wait_until(sql_is, &q, 30000) == 0, "%s: `%s` on %s never gave %lld (now %lld)",
             what, sql, db, want, db_int(db, pg, sql));
}

static void wait_sql(const char *db, const char *sql, long long want, const char *what)
{
    wait_db(db, 0, sql, want, what);
}

/* The cloud's store, whichever it is. */
static long long cloud_int(const struct e2e *e, const char *sql)
{
    return e->pg ? th_pg_int(e->pg, "%s", sql) : th_sql_int(e->cloud_db, "%s", sql);
}

static void wait_cloud(const struct e2e *e, const char *sql, long long want, const char *what)
{
    wait_db(e->pg ? e->pg : e->cloud_db, e->pg != NULL, sql, want, what);
}

/* The value of one series (the whole text before the value, e.g.
 * `syncedge_outbox_pending{device="edge-a"}`) in a Prometheus text file, or -1. */
static double prom_value(const char *path, const char *series)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    size_t n = strlen(series);
    double v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            v = strtod(line + n + 1, NULL);
    fclose(f);
    return v;
}

struct prom_is {
    const char *path, *series;
    double want;
};

static int prom_is(void *ctx)
{
    const struct prom_is *q = ctx;
    return prom_value(q->path, q->series) == q->want;
}

static void wait_prom(const char *path, const char *series, double want)
{
    struct prom_is q = {path, series, want};
    TH_CHECK(th_wait_until(prom_is, &q, 15000) == 0, "%s: %s is %g, not %g", path, series,
             prom_value(path, series), want);
}

/* The metrics files (metrics_file, refreshed every second here) tell what the stores say. */
static void check_metrics(const struct e2e *e)
{
    const char *cloud = th_fmt("%s/synccloud.prom", e->dir);
    const char *a = th_fmt("%s/edge-a.prom", e->dir), *b = th_fmt("%s/edge-b.prom", e->dir);
    long long applied = cloud_int(e, "SELECT sum(applied) FROM _sync_devices");
    long long top = cloud_int(e, "SELECT max(_cseq) FROM items");
    TH_CHECK(applied > 0 && top > 0, "the cloud applied %lld changes, items at %lld", applied, top);
    wait_prom(cloud, "synccloud_changes_applied_total{consumer=\"synccloud-demo\"}",
              (double)applied);
    wait_prom(cloud, "synccloud_devices_known{consumer=\"synccloud-demo\"}",
              (double)cloud_int(e, "SELECT count(*) FROM _sync_devices"));
    wait_prom(a, "syncedge_outbox_pending{device=\"edge-a\"}", 0);
    wait_prom(a, "syncedge_connected{device=\"edge-a\"}", 1);
    wait_prom(b, "syncedge_replica_cursor{device=\"edge-b\",table=\"items\"}", (double)top);
    wait_prom(b, "syncedge_replica_lag_changes{device=\"edge-b\",table=\"items\"}", 0);
    double acked = prom_value(a, "syncedge_changes_acked_total{device=\"edge-a\"}");
    double acks = prom_value(a, "syncedge_ack_seconds_count{device=\"edge-a\"}");
    TH_CHECK(acked >= E2E_CHANGES / 2 && acks > 0, "edge-a's metrics: %g changes acked in %g acks",
             acked, acks);
    printf("e2e: metrics files agree with the stores (%lld changes applied, cursor %lld)\n",
           applied, top);
}

static int watch_done(void *ctx)
{
    char *out = th_output(th_fmt("cat %s", th_shq(ctx)));
    const char *off = out ? strstr(out, "{\"event\":\"offline\"") : NULL;
    int ok = off && strstr(off, "\"event\":\"online\"") != NULL;
    free(out);
    return ok;
}

/* B stopped cleanly and came back: an offline event with clean true, then an online one, and
 * the retained statistics of the consumer, which counted the changes. */
static void check_watch(const char *log)
{
    TH_CHECK(th_wait_until(watch_done, (void *)log, 10000) == 0,
             "no offline then online event of edge-b in %s", log);
    char *out = th_output(th_fmt("cat %s", th_shq(log)));
    TH_CHECK(out != NULL, "cannot read %s", log);
    const char *off = strstr(out, "sync/demo/events/device {\"event\":\"offline\"");
    TH_CHECK(off && strstr(off, "\"device\":\"edge-b\",\"clean\":true}"),
             "the offline event is not edge-b's clean stop:\n%s", out);
    TH_CHECK(strstr(off, "{\"event\":\"online\"") &&
                 strstr(strstr(off, "{\"event\":\"online\""), "\"device\":\"edge-b\""),
             "no online event of edge-b after its offline one:\n%s", out);
    const char *st = strstr(out, "sync/demo/cloud/synccloud-demo/stats {");
    TH_CHECK(st && strstr(st, "\"online\":true") && strstr(st, "\"changes_applied\":"),
             "no retained statistics of synccloud-demo:\n%s", out);
    free(out);
    printf("e2e: device events and cloud statistics seen by a watcher\n");
}

/* A conflict on a table with the manual policy, settled with syncctl through the broker:
 * B edits a note while it is offline, A edits the same note meanwhile; when B comes back its
 * edit is a pending conflict. `syncctl conflicts list` shows it, `conflicts resolve --set`
 * settles it, and the settled row reaches A and B like any change. Returns B's new pid. */
static pid_t manual_conflict(struct e2e *e)
{
    const char *ctl = th_fmt("%s --tenant demo --broker %s --admin-user admin "
                             "--admin-password-file %s/admin.pass --cafile %s/ca.crt --timeout 20",
                             SYNCCTL_BIN, e->broker, e->dir, e->dir);
    const char *row = "SELECT count(*) FROM notes WHERE k = 'conflict-me' AND body = ";
    TH_CHECK(th_sql_exec(e->a_db, "INSERT INTO notes(k, body) VALUES ('conflict-me', 'start')") ==
                 0,
             "insert on A");
    wait_sql(e->b_db, th_fmt("%s'start'", row), 1, "B holds the note");
    th_stop(e->b_pid, "syncedge B", th_fmt("%s/edge-b.log", e->dir), 1);
    TH_CHECK(th_sql_exec(e->b_db, "UPDATE notes SET body = 'from-b' WHERE k = 'conflict-me'") == 0,
             "update on B");
    TH_CHECK(th_sql_exec(e->a_db, "UPDATE notes SET body = 'from-a' WHERE k = 'conflict-me'") == 0,
             "update on A");
    wait_cloud(e, th_fmt("%s'from-a'", row), 1, "A's edit applied");
    struct args a = edge_args(e, "edge-b", e->b_db);
    pid_t b = spawn(th_fmt("%s/edge-b2.log", e->dir), &a);
    wait_cloud(e,
             "SELECT count(*) FROM _sync_conflicts WHERE tbl = 'notes' AND pk = 'conflict-me' AND "
             "outcome = 'pending' AND resolved_at IS NULL",
             1, "B's edit is a pending conflict");
    long long id = cloud_int(e, "SELECT id FROM _sync_conflicts WHERE pk = "
                                "'conflict-me' AND outcome = 'pending'");
    TH_CHECK(cloud_int(e, th_fmt("%s'from-a'", row)) == 1, "the cloud kept A's value");
    char *list = th_output(th_fmt("%s conflicts list --json", ctl));
    TH_CHECK(list && strstr(list, "\"conflict-me\"") && strstr(list, "from-b") &&
                 strstr(list, "\"pending\""),
             "syncctl conflicts list --json does not show it:\n%s", list ? list : "(failed)");
    free(list);
    char *table = th_output(th_fmt("%s conflicts list", ctl));
    TH_CHECK(table && strstr(table, "conflict-me") && strstr(table, "edge-b"),
             "the table does not show it:\n%s", table ? table : "(failed)");
    printf("e2e: syncctl conflicts list:\n%s", table);
    free(table);
    char *out = th_output(th_fmt("%s conflicts resolve %lld --set body=agreed --by e2e", ctl, id));
    TH_CHECK(out && strstr(out, "resolved"), "resolve failed: %s", out ? out : "(failed)");
    printf("e2e: %s", out);
    free(out);
    /* Settled rows travel like any change: the cloud, A and B all hold it. */
    wait_cloud(e, th_fmt("%s'agreed'", row), 1, "cloud has the settled row");
    wait_sql(e->a_db, th_fmt("%s'agreed'", row), 1, "A has the settled row");
    wait_sql(e->b_db, th_fmt("%s'agreed'", row), 1, "B has the settled row");
    TH_CHECK(cloud_int(e, th_fmt("SELECT count(*) FROM _sync_conflicts WHERE id = %lld AND "
                                 "resolved_at IS NOT NULL AND resolution LIKE '%%@e2e%%'",
                                 id)) == 1,
             "the conflict log does not record the resolution");
    out = th_output(th_fmt("%s conflicts resolve %lld --take server 2>&1; echo \"exit=$?\"", ctl,
                           id));
    TH_CHECK(out && strstr(out, "resolved already") && strstr(out, "exit=1"),
             "a second resolve was not refused: %s", out ? out : "(failed)");
    free(out);
    return b;
}

static uint64_t pick_seed(void)
{
    const char *s = getenv("E2E_SEED");

    if (s != NULL && *s != '\0')
        return strtoull(s, NULL, 0);
    return (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
}

int main(int argc, char **argv)
{
    static struct e2e e; /* zeroed */
    struct counts n = {0, 0, 0, 0, 0};
    struct args a;
    char *brokerargv[4];
    uint64_t seed = pick_seed();
    double t_start, t_written, t_done;
    long long a_items, a_notes;

    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    rng = seed;
    printf("e2e: seed %" PRIu64 " (E2E_SEED=%" PRIu64 " repeats this run)\n", seed, seed);

    e.dir = th_tmpdir();
    TH_CHECK(e.dir != NULL, "no temp folder");
    e.port = th_free_port();
    TH_CHECK(e.port > 0, "no free port");
    e.schema = SYNC_SOURCE_DIR "/docs/examples/schema.conf";
    e.broker = th_fmt("ssl://127.0.0.1:%d", e.port);
    e.a_db = th_fmt("%s/a.db", e.dir);
    e.b_db = th_fmt("%s/b.db", e.dir);
    e.cloud_db = th_fmt("%s/cloud.db", e.dir);
    if (argc > 1 && strcmp(argv[1], "--pg") == 0) {
        e.pg = th_pg_start();
        e.cloud_db = th_fmt("postgresql://synccloud@127.0.0.1:%d/synctest", th_pg_port());
        th_register_log(th_fmt("%s/pg/postgres.log", e.dir));
    }
    e.sum_log = th_fmt("%s/checksum.log", e.dir);
    th_register_log(e.sum_log);
    printf("e2e: folder %s, broker %s\n", e.dir, e.broker);

    TH_CHECK(th_run("bash %s/scripts/devbroker.sh setup %s %d >/dev/null", th_shq(SYNC_SOURCE_DIR),
                    th_shq(e.dir), e.port) == 0,
             "devbroker.sh setup failed");
    brokerargv[0] = "mosquitto";
    brokerargv[1] = "-c";
    brokerargv[2] = (char *)th_fmt("%s/mosquitto.conf", e.dir);
    brokerargv[3] = NULL;
    th_register_log(th_fmt("%s/mosquitto.log", e.dir));
    e.broker_pid = th_spawn(th_fmt("%s/mosquitto.log", e.dir), brokerargv);
    TH_CHECK(e.broker_pid > 0, "cannot start mosquitto");
    TH_CHECK(th_wait_port(e.port, 10000) == 0, "mosquitto does not listen on %d", e.port);

    /* Edge A's application created its tables long before sync was installed. */
    TH_CHECK(th_sql_exec(e.a_db, "PRAGMA journal_mode=WAL;"
                                 "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT,"
                                 " qty INTEGER, price REAL, note TEXT, data BLOB);"
                                 "CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT NULL,"
                                 " n INTEGER)") == 0,
             "cannot create %s", e.a_db);

    a = cloud_args(&e);
    e.sum_cmd_cloud = th_checksum_cmd(a.v, a.n, e.sum_log);
    e.cloud_pid = spawn(th_fmt("%s/synccloud.log", e.dir), &a);
    a = edge_args(&e, "edge-a", e.a_db);
    e.sum_cmd_a = th_checksum_cmd(a.v, a.n, e.sum_log);
    e.a_pid = spawn(th_fmt("%s/edge-a.log", e.dir), &a);
    a = edge_args(&e, "edge-b", e.b_db);
    e.sum_cmd_b = th_checksum_cmd(a.v, a.n, e.sum_log);
    e.b_pid = spawn(th_fmt("%s/edge-b.log", e.dir), &a);
    TH_CHECK(th_wait_until(started, &e, E2E_START_S * 1000) == 0,
             "the daemons did not connect and prepare their databases within %d s", E2E_START_S);

    t_start = th_now();
    write_changes(&e, &n);
    t_written = th_now();
    printf("e2e: wrote %d changes on A in %.2f s: %d inserts, %d updates, %d deletes, "
           "%d re-inserts, %d transactions\n",
           E2E_CHANGES, t_written - t_start, n.ins, n.upd, n.del, n.reins, n.txs);
    TH_CHECK(n.ins + n.upd + n.del + n.reins == E2E_CHANGES, "counted %d changes",
             n.ins + n.upd + n.del + n.reins);

    if (th_wait_until(converged, &e, E2E_CONVERGE_S * 1000) != 0) {
        take_checksums(&e); /* the outbox may never have emptied: show the state now */
        fprintf(stderr,
                "e2e: no convergence after %d s (outbox of A: %lld rows)\n"
                "---- checksum A ----\n%s---- checksum cloud ----\n%s"
                "---- checksum B ----\n%s",
                E2E_CONVERGE_S, e.outbox, e.sum_a ? e.sum_a : "(failed)\n",
                e.sum_cloud ? e.sum_cloud : "(failed)\n", e.sum_b ? e.sum_b : "(failed)\n");
        TH_FAIL("A, the cloud and B did not converge within %d s", E2E_CONVERGE_S);
    }
    t_done = th_now();
    printf("e2e: converged %.2f s after the first write (%.2f s after the last): %.0f changes/s\n",
           t_done - t_start, t_done - t_written, E2E_CHANGES / (t_done - t_start));
    printf("e2e: checksums (A = cloud = B):\n%s", e.sum_a);

    /* The checksum tool itself must count what SQL counts. */
    a_items = th_sql_int(e.a_db, "SELECT count(*) FROM items");
    a_notes = th_sql_int(e.a_db, "SELECT count(*) FROM notes");
    TH_CHECK(a_items > 0 && a_notes > 0, "A has %lld items and %lld notes", a_items, a_notes);
    TH_CHECK(sum_rows(e.sum_cloud, "items") == a_items, "cloud has %lld items, A has %lld",
             sum_rows(e.sum_cloud, "items"), a_items);
    TH_CHECK(sum_rows(e.sum_cloud, "notes") == a_notes, "cloud has %lld notes, A has %lld",
             sum_rows(e.sum_cloud, "notes"), a_notes);
    TH_CHECK(sum_rows(e.sum_a, "items") == a_items, "A's checksum counts %lld items, SQL %lld",
             sum_rows(e.sum_a, "items"), a_items);
    TH_CHECK(th_sql_int(e.b_db, "SELECT count(*) FROM items") == a_items &&
                 th_sql_int(e.b_db, "SELECT count(*) FROM notes") == a_notes,
             "B's row counts differ from A's");
    TH_CHECK(th_sql_int(e.b_db, "SELECT count(*) FROM items WHERE id = 999999999") == 0,
             "a rolled-back insert reached B");

    check_metrics(&e);
    /* SIGHUP (systemctl reload, a closed terminal) must not stop either daemon. */
    TH_CHECK(th_kill(e.cloud_pid, SIGHUP) == 0 && th_kill(e.a_pid, SIGHUP) == 0, "kill -HUP");
    usleep(500 * 1000);
    TH_CHECK(th_alive(e.cloud_pid) && th_alive(e.a_pid), "a daemon ended on SIGHUP");
    TH_CHECK(th_run("grep -q SIGHUP %s && grep -q SIGHUP %s",
                    th_shq(th_fmt("%s/synccloud.log", e.dir)),
                    th_shq(th_fmt("%s/edge-a.log", e.dir))) == 0,
             "SIGHUP was not noted in the logs");
    /* What a watcher sees while B goes away and comes back (manual_conflict restarts it):
     * the cloud's device events and statistics, read as the dashboard's viewer user. */
    const char *watch_log = th_fmt("%s/watch.out", e.dir);
    char viewer_pass[256];
    TH_CHECK(th_read_first_line(th_fmt("%s/viewer.pass", e.dir), viewer_pass,
                                sizeof viewer_pass) == 0,
             "no viewer password");
    char *subargv[] = {"mosquitto_sub", "-h", "127.0.0.1", "-p", (char *)th_fmt("%d", e.port),
                       "--cafile", (char *)th_fmt("%s/ca.crt", e.dir), "-u", "viewer", "-P",
                       viewer_pass, "-v", "-t", "sync/demo/events/device", "-t",
                       "sync/demo/cloud/+/stats", NULL};
    pid_t watcher = th_spawn(watch_log, subargv);
    TH_CHECK(watcher > 0, "cannot start mosquitto_sub");
    usleep(300 * 1000); /* subscribed before B stops */
    e.b_pid = manual_conflict(&e);
    check_watch(watch_log);
    th_kill(watcher, SIGTERM);
    th_wait_exit(watcher, 5000, 1);

    th_stop(e.a_pid, "syncedge A", th_fmt("%s/edge-a.log", e.dir), 1);
    th_stop(e.b_pid, "syncedge B", th_fmt("%s/edge-b2.log", e.dir), 1);
    th_stop(e.cloud_pid, "synccloud", th_fmt("%s/synccloud.log", e.dir), 1);
    th_stop(e.broker_pid, "mosquitto", th_fmt("%s/mosquitto.log", e.dir), 0);
    th_pg_stop();
    free(e.sum_a);
    free(e.sum_b);
    free(e.sum_cloud);
    printf("e2e: OK\n");
    return 0;
}
