/* rig.c - the broker, the store, the consumers, the edges and their applications of one scale
 * test or benchmark run (see rig.h for the contract). */
#include "rig.h"

#include "harness.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define RIG_TX_MAX 20         /* changes per application transaction at most */
#define RIG_KEY_SPACE 1000000 /* items ids per edge */
#define RIG_BEGIN_TRIES 20    /* BEGIN IMMEDIATE attempts (5 s busy timeout each) */
#define RIG_DEV_EDGES 5       /* edge-a .. edge-e are the dev broker's own device users */

void rig_say(const struct rig *r, const char *fmt, ...)
{
    va_list ap;

    printf("%s: ", r->o.tag != NULL ? r->o.tag : "rig");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* ---- random numbers: splitmix64, one stream per application ------------------------------ */

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int below(uint64_t *s, int n)
{
    return (int)(rnd(s) % (uint64_t)n);
}

/* ---- daemons --------------------------------------------------------------------------- */

static void args_add(struct rig_args *a, const char *s)
{
    TH_CHECK(a->n < RIG_MAX_ARGS, "too many arguments");
    a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
}

static void args_extra(struct rig_args *a, const char *const *extra)
{
    int i;

    for (i = 0; i < RIG_MAX_EXTRA && extra[i] != NULL; i++)
        args_add(a, extra[i]);
}

static struct rig_args cloud_args(const struct rig *r, const char *client_id)
{
    struct rig_args a = {{NULL}, 0};

    args_add(&a, SYNCCLOUD_BIN);
    args_add(&a, "--database");
    args_add(&a, r->store);
    args_add(&a, "--schema");
    args_add(&a, r->schema);
    args_add(&a, "--tenant");
    args_add(&a, "demo");
    args_add(&a, "--broker");
    args_add(&a, th_fmt("ssl://127.0.0.1:%d", r->port));
    args_add(&a, "--client-id");
    args_add(&a, client_id);
    args_add(&a, "--username");
    args_add(&a, "synccloud");
    args_add(&a, "--password-file");
    args_add(&a, th_fmt("%s/synccloud.pass", r->dir));
    args_add(&a, "--cafile");
    args_add(&a, th_fmt("%s/ca.crt", r->dir));
    if (r->o.shared_group != NULL) {
        args_add(&a, "--shared-group");
        args_add(&a, r->o.shared_group);
    }
    args_add(&a, "--log-dest");
    args_add(&a, "stderr");
    args_extra(&a, r->o.cloud_extra);
    return a;
}

static struct rig_args edge_args(const struct rig *r, const struct rig_edge *e)
{
    struct rig_args a = {{NULL}, 0};

    args_add(&a, SYNCEDGE_BIN);
    args_add(&a, "--database");
    args_add(&a, e->db);
    args_add(&a, "--schema");
    args_add(&a, r->schema);
    args_add(&a, "--tenant");
    args_add(&a, "demo");
    args_add(&a, "--device");
    args_add(&a, e->name);
    args_add(&a, "--broker");
    args_add(&a, th_fmt("ssl://127.0.0.1:%d", r->port));
    args_add(&a, "--password-file");
    args_add(&a, th_fmt("%s/%s.pass", r->dir, e->name));
    args_add(&a, "--cafile");
    args_add(&a, th_fmt("%s/ca.crt", r->dir));
    args_add(&a, "--log-dest");
    args_add(&a, "stderr");
    args_extra(&a, r->o.edge_extra);
    return a;
}

static pid_t spawn(const char *log, char *const argv[])
{
    pid_t pid;

    th_register_log(log);
    pid = th_spawn(log, argv);
    TH_CHECK(pid > 0, "cannot start %s", argv[0]);
    return pid;
}

static int file_contains(const char *path, const char *needle)
{
    char *out = NULL;
    int rc = th_capture(&out, "grep -cF -- %s %s 2>/dev/null", th_shq(needle), th_shq(path));

    free(out);
    return rc == 0;
}

static void keys_init(struct rig_keys *k)
{
    k->cap = 1024;
    k->live = malloc((size_t)k->cap * sizeof(int));
    k->dead = malloc((size_t)k->cap * sizeof(int));
    TH_CHECK(k->live != NULL && k->dead != NULL, "out of memory");
    k->nlive = k->ndead = k->next = 0;
    k->last = -1;
}

/* Makes room for one more key number in live and dead (each holds at most next keys). */
static void keys_grow(struct rig_keys *k)
{
    if (k->next < k->cap)
        return;
    k->cap *= 2;
    k->live = realloc(k->live, (size_t)k->cap * sizeof(int));
    k->dead = realloc(k->dead, (size_t)k->cap * sizeof(int));
    TH_CHECK(k->live != NULL && k->dead != NULL, "out of memory");
}

static void keys_free(struct rig_keys *k)
{
    free(k->live);
    free(k->dead);
    k->live = k->dead = NULL;
}

void rig_setup(struct rig *r, const struct rig_opts *o)
{
    char extra[256] = "";
    size_t len = 0;
    int i;

    memset(r, 0, sizeof(*r));
    r->o = *o;
    TH_CHECK(o->nclouds >= 1 && o->nclouds <= RIG_MAX_CLOUDS, "1 to %d consumers", RIG_MAX_CLOUDS);
    TH_CHECK(o->nedges >= 1 && o->nedges <= RIG_MAX_EDGES, "1 to %d edges", RIG_MAX_EDGES);
    r->dir = th_tmpdir();
    TH_CHECK(r->dir != NULL, "no temp folder");
    r->port = th_free_port();
    TH_CHECK(r->port > 0, "no free port");
    r->schema = SYNC_SOURCE_DIR "/docs/examples/schema.conf";
    r->store = th_fmt("%s/cloud.db", r->dir);
    if (o->pg) {
        r->pg = th_pg_start();
        r->store = r->pg;
        th_register_log(th_fmt("%s/pg/postgres.log", r->dir));
    }
    r->broker_log = th_fmt("%s/mosquitto.log", r->dir);
    r->sum_log = th_fmt("%s/checksum.log", r->dir);
    th_register_log(r->broker_log);
    th_register_log(r->sum_log);

    for (i = RIG_DEV_EDGES; i < o->nedges; i++) {
        len += (size_t)snprintf(extra + len, sizeof(extra) - len, "%sedge-%c", len ? " " : "",
                                'a' + i);
        TH_CHECK(len < sizeof(extra), "too many edges");
    }
    TH_CHECK(th_run("DEVBROKER_EXTRA_USERS=%s bash %s/scripts/devbroker.sh setup %s %d >/dev/null",
                    th_shq(extra), th_shq(SYNC_SOURCE_DIR), th_shq(r->dir), r->port) == 0,
             "devbroker.sh setup failed");
    r->broker_argv[0] = "mosquitto";
    r->broker_argv[1] = "-c";
    r->broker_argv[2] = (char *)th_fmt("%s/mosquitto.conf", r->dir);
    r->broker_argv[3] = NULL;
    r->broker_pid = spawn(r->broker_log, r->broker_argv);
    TH_CHECK(th_wait_port(r->port, 10000) == 0, "mosquitto does not listen on %d", r->port);

    for (i = 0; i < o->nclouds; i++) {
        struct rig_cloud *c = &r->clouds[i];
        c->client_id = th_fmt("synccloud-%d", i + 1);
        c->args = cloud_args(r, c->client_id);
    }
    r->cloud_sum_cmd = th_checksum_cmd(r->clouds[0].args.v, r->clouds[0].args.n, r->sum_log);

    for (i = 0; i < o->nedges; i++) {
        struct rig_edge *e = &r->edges[i];
        e->letter = (char)('a' + i);
        e->name = th_fmt("edge-%c", e->letter);
        e->db = th_fmt("%s/%c.db", r->dir, e->letter);
        e->log = th_fmt("%s/%s.log", r->dir, e->name);
        e->id_base = (long long)i * RIG_KEY_SPACE;
        e->rng = o->seed ^ (0x1234567ULL * (uint64_t)(i + 1));
        e->outbox = e->applied = -1;
        keys_init(&e->items);
        keys_init(&e->notes);
        /* The application created its tables long before sync was installed. */
        TH_CHECK(th_sql_exec(e->db, "PRAGMA journal_mode=WAL;"
                                    "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT,"
                                    " qty INTEGER, price REAL, note TEXT, data BLOB);"
                                    "CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT NULL,"
                                    " n INTEGER)") == 0,
                 "cannot create %s", e->db);
        e->args = edge_args(r, e);
        e->sum_cmd = th_checksum_cmd(e->args.v, e->args.n, r->sum_log);
    }
}

void rig_start_cloud(struct rig *r, int i)
{
    struct rig_cloud *c = &r->clouds[i];

    TH_CHECK(c->pid == 0, "%s runs already", c->client_id);
    c->runs++;
    c->log = th_fmt("%s/%s.%d.log", r->dir, c->client_id, c->runs);
    c->pid = spawn(c->log, c->args.v);
}

void rig_start_edge(struct rig *r, int i)
{
    struct rig_edge *e = &r->edges[i];

    TH_CHECK(e->pid == 0, "%s runs already", e->name);
    e->pid = spawn(e->log, e->args.v);
}

void rig_check_alive(struct rig *r)
{
    int i;

    TH_CHECK(th_alive(r->broker_pid), "mosquitto (pid %ld) exited", (long)r->broker_pid);
    for (i = 0; i < r->o.nclouds; i++)
        TH_CHECK(r->clouds[i].pid == 0 || th_alive(r->clouds[i].pid),
                 "%s (pid %ld) exited by itself", r->clouds[i].client_id, (long)r->clouds[i].pid);
    for (i = 0; i < r->o.nedges; i++)
        TH_CHECK(r->edges[i].pid == 0 || th_alive(r->edges[i].pid),
                 "syncedge %s (pid %ld) exited by itself", r->edges[i].name, (long)r->edges[i].pid);
}

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

static int ready(void *ctx)
{
    struct rig *r = ctx;
    int i;

    rig_check_alive(r);
    for (i = 0; i < r->o.nclouds; i++)
        if (r->clouds[i].pid != 0 && !file_contains(r->clouds[i].log, "mqtt: connected"))
            return 0;
    for (i = 0; i < r->o.nedges; i++) {
        const struct rig_edge *e = &r->edges[i];
        if (e->pid == 0)
            continue;
        if (!file_contains(e->log, "mqtt: connected"))
            return 0;
        if (q_int(e->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
                         "'_sync_outbox'") != 1 ||
            q_int(e->db, "SELECT count(DISTINCT tbl_name) FROM sqlite_master WHERE type = "
                         "'trigger' AND tbl_name IN ('items', 'notes')") != 2)
            return 0;
    }
    return 1;
}

void rig_wait_ready(struct rig *r, int timeout_s)
{
    TH_CHECK(th_wait_until(ready, r, timeout_s * 1000) == 0,
             "the daemons did not connect and prepare their databases within %d s", timeout_s);
}

void rig_kill_cloud(struct rig *r, int i)
{
    struct rig_cloud *c = &r->clouds[i];

    TH_CHECK(th_kill(c->pid, SIGKILL) == 0, "cannot kill %s", c->client_id);
    TH_CHECK(th_wait_exit(c->pid, 10000, 1) != -1, "%s survived SIGKILL", c->client_id);
    c->pid = 0;
}

double rig_stop_cloud(struct rig *r, int i)
{
    struct rig_cloud *c = &r->clouds[i];
    double s = th_stop(c->pid, c->client_id, c->log, 1);

    c->pid = 0;
    return s;
}

/* ---- the applications' writes ---------------------------------------------------------- */

void rig_open_apps(struct rig *r)
{
    int i;

    for (i = 0; i < r->o.nedges; i++) {
        struct rig_edge *e = &r->edges[i];
        TH_CHECK(sqlite3_open_v2(e->db, &e->app, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK,
                 "open %s: %s", e->db, sqlite3_errmsg(e->app));
        sqlite3_busy_timeout(e->app, 5000);
    }
}

static void app_exec(struct rig_edge *e, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(e->app, sql, NULL, NULL, &msg);

    TH_CHECK(rc == SQLITE_OK, "%s: %s: %s", e->name, sql, msg ? msg : sqlite3_errstr(rc));
}

/* BEGIN IMMEDIATE takes the write lock at once, so the statements after it never meet a
 * locked database; syncedge holds the lock only briefly, so a few tries always suffice. */
static void app_begin(struct rig_edge *e)
{
    int tries, rc = SQLITE_BUSY;

    for (tries = 0; tries < RIG_BEGIN_TRIES && rc == SQLITE_BUSY; tries++)
        rc = sqlite3_exec(e->app, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    TH_CHECK(rc == SQLITE_OK, "%s: BEGIN IMMEDIATE: %s", e->name, sqlite3_errmsg(e->app));
}

static sqlite3_stmt *prep(struct rig_edge *e, const char *sql)
{
    sqlite3_stmt *st = NULL;

    TH_CHECK(sqlite3_prepare_v2(e->app, sql, -1, &st, NULL) == SQLITE_OK, "%s: prepare %s: %s",
             e->name, sql, sqlite3_errmsg(e->app));
    return st;
}

/* Runs st, which must change exactly one row, and finalizes it. */
static void run_one(struct rig_edge *e, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    TH_CHECK(rc == SQLITE_DONE, "%s: %s: %s", e->name, sqlite3_sql(st), sqlite3_errmsg(e->app));
    TH_CHECK(sqlite3_changes(e->app) == 1, "%s: %s changed %d rows instead of 1", e->name,
             sqlite3_sql(st), sqlite3_changes(e->app));
    sqlite3_finalize(st);
}

static void bind_key(struct rig_edge *e, sqlite3_stmt *st, int i, int items, int k)
{
    static const char *suffix[] = {"", " it's \"q\"", " Grüße ✓", "/x+y#", "  sp  "};
    char key[64];

    if (items) {
        sqlite3_bind_int64(st, i, (sqlite3_int64)(e->id_base + k + 1));
    } else {
        snprintf(key, sizeof(key), "%c:%d%s", e->letter, k, suffix[k % 5]);
        sqlite3_bind_text(st, i, key, -1, SQLITE_TRANSIENT);
    }
}

static void bind_text(struct rig_edge *e, sqlite3_stmt *st, int i, int nullable)
{
    static const char *fixed[] = {"", "O'Brien said \"hi\"", "naïve café ✓ 日本語", "a\nb\tc"};
    char buf[512];
    int v = below(&e->rng, 20), len, j;

    if (nullable && v < 3) {
        sqlite3_bind_null(st, i);
    } else if (v < 8) {
        sqlite3_bind_text(st, i, fixed[below(&e->rng, 4)], -1, SQLITE_TRANSIENT);
    } else if (v < 19) {
        snprintf(buf, sizeof(buf), "value %d", below(&e->rng, 100000));
        sqlite3_bind_text(st, i, buf, -1, SQLITE_TRANSIENT);
    } else {
        len = 100 + below(&e->rng, 400);
        for (j = 0; j < len; j++)
            buf[j] = (char)('a' + below(&e->rng, 26));
        sqlite3_bind_text(st, i, buf, len, SQLITE_TRANSIENT);
    }
}

static void bind_int(struct rig_edge *e, sqlite3_stmt *st, int i)
{
    if (below(&e->rng, 10) == 0)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_int64(st, i, (sqlite3_int64)below(&e->rng, 2001) - 1000);
}

static void bind_real(struct rig_edge *e, sqlite3_stmt *st, int i)
{
    if (below(&e->rng, 10) == 0)
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_double(st, i, ((double)(int64_t)(rnd(&e->rng) >> 11) - 4e15) / 1e6);
}

static void bind_blob(struct rig_edge *e, sqlite3_stmt *st, int i)
{
    unsigned char buf[64];
    int len = below(&e->rng, 65), j;

    if (len == 64) {
        sqlite3_bind_null(st, i);
        return;
    }
    for (j = 0; j < len; j++)
        buf[j] = (unsigned char)rnd(&e->rng);
    sqlite3_bind_blob(st, i, buf, len, SQLITE_TRANSIENT);
}

static void do_insert(struct rig_edge *e, int items, int k)
{
    sqlite3_stmt *st;

    if (items) {
        st = prep(e, "INSERT INTO items(id, name, qty, price, note, data) VALUES(?,?,?,?,?,?)");
        bind_key(e, st, 1, 1, k);
        bind_text(e, st, 2, 1);
        bind_int(e, st, 3);
        bind_real(e, st, 4);
        bind_text(e, st, 5, 1);
        bind_blob(e, st, 6);
    } else {
        st = prep(e, "INSERT INTO notes(k, body, n) VALUES(?,?,?)");
        bind_key(e, st, 1, 0, k);
        bind_text(e, st, 2, 0);
        bind_int(e, st, 3);
    }
    run_one(e, st);
}

/* Updates row k: a counter incremented or a never-used text (so the row really changes and the
 * trigger captures it), plus a random subset of the other columns. */
static void do_update(struct rig_edge *e, int items, int k)
{
    static const char *icols[] = {"name", "qty", "price", "note", "data"};
    static const char *ncols[] = {"body", "n"};
    const char **cols = items ? icols : ncols;
    int ncol = items ? 5 : 2, mask, c, i = 1, bump;
    char sql[320], uniq[64];
    size_t len;
    sqlite3_stmt *st;

    mask = below(&e->rng, 1 << ncol);
    bump = below(&e->rng, 2);
    mask &= bump ? ~2 : ~1;
    len = (size_t)snprintf(sql, sizeof(sql), "UPDATE %s SET ", items ? "items" : "notes");
    if (bump)
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s = coalesce(%s, 0) + 1", cols[1],
                                cols[1]);
    else
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s = ?", cols[0]);
    for (c = 0; c < ncol; c++)
        if (mask & (1 << c))
            len += (size_t)snprintf(sql + len, sizeof(sql) - len, ", %s = ?", cols[c]);
    snprintf(sql + len, sizeof(sql) - len, " WHERE %s = ?", items ? "id" : "k");
    st = prep(e, sql);
    if (!bump) {
        snprintf(uniq, sizeof(uniq), "%s update %lld", e->name, ++e->uniq);
        sqlite3_bind_text(st, i++, uniq, -1, SQLITE_TRANSIENT);
    }
    for (c = 0; c < ncol; c++) {
        if (!(mask & (1 << c)))
            continue;
        if (!items && c == 0)
            bind_text(e, st, i++, 0);
        else if (!items || c == 1)
            bind_int(e, st, i++);
        else if (c == 0 || c == 3)
            bind_text(e, st, i++, 1);
        else if (c == 2)
            bind_real(e, st, i++);
        else
            bind_blob(e, st, i++);
    }
    bind_key(e, st, i, items, k);
    run_one(e, st);
}

static void do_delete(struct rig_edge *e, int items, int k)
{
    sqlite3_stmt *st =
        prep(e, items ? "DELETE FROM items WHERE id = ?" : "DELETE FROM notes WHERE k = ?");

    bind_key(e, st, 1, items, k);
    run_one(e, st);
}

static int take(int *arr, int *n, int i)
{
    int k = arr[i];

    arr[i] = arr[--*n];
    return k;
}

/* One random change on one of e's tables, its key sets updated as the row now is. The caller
 * counts it only once the transaction commits (nothing here can fail without failing the
 * test, so the key sets never need to be rolled back). */
static void one_change(struct rig_edge *e)
{
    int items = below(&e->rng, 5) < 3; /* 60 % items, 40 % notes */
    struct rig_keys *ks = items ? &e->items : &e->notes;
    int v = below(&e->rng, 100), k;

    if (ks->nlive == 0 || v < 30) {
        keys_grow(ks);
        k = ks->next++;
        do_insert(e, items, k);
        ks->live[ks->nlive++] = k;
        e->ins++;
    } else if (v < 60) {
        k = ks->live[below(&e->rng, ks->nlive)];
        do_update(e, items, k);
        e->upd++;
    } else if (v < 78) {
        k = take(ks->live, &ks->nlive, below(&e->rng, ks->nlive));
        do_delete(e, items, k);
        ks->dead[ks->ndead++] = k;
        e->del++;
        if (ks->last == k)
            ks->last = -1;
        return;
    } else if (v < 90 && ks->ndead > 0) {
        k = take(ks->dead, &ks->ndead, below(&e->rng, ks->ndead));
        do_insert(e, items, k);
        ks->live[ks->nlive++] = k;
        e->reins++;
    } else {
        /* The same row edited again and again: every step must arrive, in order. */
        k = ks->last >= 0 ? ks->last : ks->live[below(&e->rng, ks->nlive)];
        do_update(e, items, k);
        e->upd++;
    }
    ks->last = k;
}

void rig_write(struct rig_edge *e, long long due, int max_tx)
{
    int n, size, i;

    for (n = 0; n < max_tx && e->counted < due; n++) {
        size = 1 + below(&e->rng, RIG_TX_MAX);
        if (size > due - e->counted)
            size = (int)(due - e->counted);
        app_begin(e);
        for (i = 0; i < size; i++)
            one_change(e);
        app_exec(e, "COMMIT");
        e->counted += size;
        e->txs++;
    }
}

/* ---- queries --------------------------------------------------------------------------- */

long long rig_cloud_int(struct rig *r, const char *sql)
{
    PGresult *res;
    long long v = -1;

    if (r->pg == NULL)
        return q_int(r->store, sql);
    if (r->pq == NULL || PQstatus(r->pq) != CONNECTION_OK) {
        PQfinish(r->pq);
        r->pq = PQconnectdb(th_fmt("%s application_name=rig", r->pg));
        if (PQstatus(r->pq) != CONNECTION_OK)
            return -1;
    }
    res = PQexec(r->pq, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0)
        v = PQgetisnull(res, 0, 0) ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

long long rig_applied(struct rig *r, const char *device)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT coalesce((SELECT applied FROM _sync_devices WHERE device = '%s'), 0)", device);
    return rig_cloud_int(r, sql);
}

long long rig_applied_total(struct rig *r)
{
    return rig_cloud_int(r, "SELECT coalesce(sum(applied), 0) FROM _sync_devices");
}

long long rig_outbox(const struct rig_edge *e)
{
    return q_int(e->db, "SELECT count(*) FROM _sync_outbox");
}

int rig_checksums(struct rig *r)
{
    int i, equal;

    free(r->cloud_sum);
    r->cloud_sum = th_output(r->cloud_sum_cmd);
    equal = r->cloud_sum != NULL && strstr(r->cloud_sum, "items ") != NULL &&
            strstr(r->cloud_sum, "notes ") != NULL;
    for (i = 0; i < r->o.nedges; i++) {
        struct rig_edge *e = &r->edges[i];
        free(e->sum);
        e->sum = th_output(e->sum_cmd);
        if (e->sum == NULL || r->cloud_sum == NULL || strcmp(e->sum, r->cloud_sum) != 0)
            equal = 0;
    }
    return equal;
}

int rig_cloud_stats(const char *log, struct rig_stats *s)
{
    char *out = NULL, *p;
    int rc = -1;

    /* The last such line: a log holds one run, which says it once, when it stops. */
    if (th_capture(&out, "grep -F 'stopping: ' %s | tail -n 1", th_shq(log)) == 0 && out != NULL &&
        (p = strstr(out, "stopping: ")) != NULL &&
        sscanf(p,
               "stopping: %lld batches, %lld changes received, %lld applied, %lld conflicts, "
               "%lld duplicates",
               &s->batches, &s->received, &s->applied, &s->conflicts, &s->duplicates) == 5)
        rc = 0;
    free(out);
    out = NULL;
    s->republished = -1;
    if (rc == 0 &&
        th_capture(&out, "grep -F 'retained rows published again' %s | tail -n 1", th_shq(log)) ==
            0 &&
        out != NULL && (p = strstr(out, "shared group ")) != NULL &&
        sscanf(p, "shared group %*s %lld", &s->republished) != 1)
        s->republished = -1;
    free(out);
    return rc;
}

void rig_teardown(struct rig *r)
{
    int i;

    for (i = 0; i < r->o.nedges; i++) {
        struct rig_edge *e = &r->edges[i];
        if (e->pid != 0)
            rig_say(r, "syncedge %s stopped in %.2f s", e->name,
                    th_stop(e->pid, e->name, e->log, 1));
        e->pid = 0;
    }
    for (i = 0; i < r->o.nclouds; i++)
        if (r->clouds[i].pid != 0)
            rig_say(r, "%s stopped in %.2f s", r->clouds[i].client_id, rig_stop_cloud(r, i));
    th_stop(r->broker_pid, "mosquitto", r->broker_log, 0);
    r->broker_pid = 0;
    PQfinish(r->pq);
    r->pq = NULL;
    th_pg_stop();
    for (i = 0; i < r->o.nedges; i++) {
        struct rig_edge *e = &r->edges[i];
        sqlite3_close(e->app);
        e->app = NULL;
        keys_free(&e->items);
        keys_free(&e->notes);
        free(e->sum);
        e->sum = NULL;
    }
    free(r->cloud_sum);
    r->cloud_sum = NULL;
}
