/* test_ops.c - operating a running system with syncctl: `status`, `stats`, `resync`, and
 * `conflicts resolve --take COLUMN=VALUE`, against real servers.
 *
 * A Mosquitto with the development TLS config and ACL (scripts/devbroker.sh, which copies
 * broker-config/dev.acl: so the administrator's, the cloud's and the devices' grants for states,
 * statistics and commands are exercised too), synccloud on SQLite (statistics every second;
 * notes with the manual conflict policy), a writing edge A (replica false) and a replica B.
 * The test writes CHANGES changes on A with plain SQL, waits until A, the cloud and B agree, and
 * then checks:
 *   - `status --json`: one JSON document (parsed with syncctl's own reader), both devices
 *     online with nothing pending; A's record from the cloud with every change applied; B with
 *     lag 0 on every table and no cloud record (it never wrote); nothing on stderr; the table
 *     form shows the same;
 *   - `stats --json`: one consumer, online, changes_applied = CHANGES in its line and in the
 *     total; the table has a TOTAL line;
 *   - a conflict settled with `conflicts resolve ID --take body=...,n=...` (the issue's
 *     `--take VALUE` form) reaches the replica B;
 *   - `resync edge-b`: B's items were damaged while it was stopped, by writes its capture
 *     triggers skip (as syncedge's own applying transactions do), its version records left
 *     as they were: a row changed, one deleted, one added. Restarted, B stays different from the
 *     cloud; after `syncctl resync edge-b` its checksum equals the cloud's again;
 *   - with synccloud stopped, `status` still prints both devices (exit 3, the reason on
 *     stderr, fast since the consumers' statistics say it stopped), `stats` shows it offline;
 *     an edge killed -9 shows as "lost";
 *   - a broker that cannot be reached is exit 1, a bad device id exit 2, a tenant without
 *     statistics exit 1 with a clear message; `acl generate` grants the new topics.
 *
 * TH_KEEP=1 keeps the folder with every database and log.
 */
#include "harness.h"

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/err.h"
#include "sync/jsonread.h"

#ifndef SYNCEDGE_BIN
#error "SYNCEDGE_BIN (path of the syncedge binary) must be defined by the build"
#endif
#ifndef SYNCCLOUD_BIN
#error "SYNCCLOUD_BIN (path of the synccloud binary) must be defined by the build"
#endif
#ifndef SYNCCTL_BIN
#error "SYNCCTL_BIN (path of the syncctl binary) must be defined by the build"
#endif

#define INSERTS 200                           /* rows inserted on A */
#define UPDATES 50                            /* of them updated */
#define DELETES 10                            /* of them deleted */
#define CHANGES (INSERTS + UPDATES + DELETES) /* changes the cloud must apply */
#define WAIT_MS 60000                         /* how long anything may take to show */
#define MAX_ARGS 32

/* Everything the test and its wait predicates share. */
static struct {
    const char *dir;                       /* the temp folder */
    const char *schema;                    /* docs/examples/schema.conf */
    const char *broker;                    /* ssl://127.0.0.1:PORT */
    const char *a_db;                      /* edge A's database (the application's) */
    const char *b_db;                      /* edge B's database (a replica) */
    const char *cloud_db;                  /* synccloud's store */
    const char *ctl;                       /* the syncctl command line with the admin options */
    const char *sum_log;                   /* stderr of the --checksum runs */
    const char *sum_a, *sum_b, *sum_cloud; /* shell commands printing the checksums */
    pid_t broker_pid, cloud_pid, a_pid, b_pid;
    int b_runs; /* B's starts so far (its logs are edge-b.N.log) */
} t;

struct args {
    char *v[MAX_ARGS + 1];
    int n;
};

static void add(struct args *a, const char *s)
{
    TH_CHECK(a->n < MAX_ARGS, "too many arguments");
    a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
}

static struct args edge_args(const char *device, const char *db, int replica)
{
    struct args a = {{NULL}, 0};
    const char *v[] = {SYNCEDGE_BIN,
                       "--database",
                       db,
                       "--schema",
                       t.schema,
                       "--tenant",
                       "demo",
                       "--device",
                       device,
                       "--broker",
                       t.broker,
                       "--password-file",
                       th_fmt("%s/%s.pass", t.dir, device),
                       "--cafile",
                       th_fmt("%s/ca.crt", t.dir),
                       "--replica",
                       replica ? "true" : "false",
                       "--log-level",
                       "info",
                       "--log-dest",
                       "stderr"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        add(&a, v[i]);
    return a;
}

static struct args cloud_args(void)
{
    struct args a = {{NULL}, 0};
    const char *v[] = {SYNCCLOUD_BIN,
                       "--database",
                       t.cloud_db,
                       "--schema",
                       t.schema,
                       "--tenant",
                       "demo",
                       "--broker",
                       t.broker,
                       "--username",
                       "synccloud",
                       "--password-file",
                       th_fmt("%s/synccloud.pass", t.dir),
                       "--cafile",
                       th_fmt("%s/ca.crt", t.dir),
                       "--policy",
                       "notes manual",
                       "--stats-interval",
                       "1",
                       "--log-level",
                       "info",
                       "--log-dest",
                       "stderr"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        add(&a, v[i]);
    return a;
}

static pid_t spawn(const char *log, const struct args *a)
{
    th_register_log(log);
    pid_t pid = th_spawn(log, a->v);
    TH_CHECK(pid > 0, "cannot start %s", a->v[0]);
    return pid;
}

static void start_b(void)
{
    struct args a = edge_args("edge-b", t.b_db, 1);
    t.b_pid = spawn(th_fmt("%s/edge-b.%d.log", t.dir, ++t.b_runs), &a);
}

/* ---- running syncctl ---------------------------------------------------------------- */

/* What one syncctl run printed. */
struct run {
    int status; /* exit status */
    char *out;  /* stdout (owned) */
    char *err;  /* stderr (owned) */
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* Runs `syncctl ADMIN-OPTIONS ARGS` (args: a shell fragment, values quoted by the caller). */
static struct run ctl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct run ctl(const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    TH_CHECK(n > 0 && (size_t)n < sizeof args, "syncctl arguments too long");
    const char *errf = th_fmt("%s/ctl.err", t.dir);
    struct run r = {0, NULL, NULL};
    r.status = th_capture(&r.out, "%s %s 2>%s", t.ctl, args, th_shq(errf));
    TH_CHECK(r.out != NULL, "cannot run syncctl %s", args);
    r.err = th_output(th_fmt("cat %s", th_shq(errf)));
    TH_CHECK(r.err != NULL, "cannot read syncctl's stderr");
    return r;
}

/* Parses a JSON output; fails the test if it is not exactly one JSON document. */
static sync_jdoc *json_of(const struct run *r, const char *what)
{
    sync_jdoc *d = NULL;
    char err[256];
    TH_CHECK(sync_jdoc_parse(r->out, strlen(r->out), &d, err, sizeof err) == SYNC_OK,
             "%s: stdout is not one JSON document (%s), exit %d:\n%s\nstderr:\n%s", what, err,
             r->status, r->out, r->err);
    return d;
}

static uint64_t u64(const sync_jval *v, const char *key)
{
    uint64_t n;
    return sync_jval_uint(sync_jval_get(v, key), &n) ? n : UINT64_MAX;
}

static const char *str(const sync_jval *v, const char *key)
{
    const char *s = sync_jval_str(sync_jval_get(v, key), NULL);
    return s ? s : "(none)";
}

/* The element of array a whose "device" is id, or NULL. */
static const sync_jval *device_of(const sync_jval *a, const char *id)
{
    for (const sync_jval *e = sync_jval_first(a); e; e = sync_jval_next(e))
        if (strcmp(str(e, "device"), id) == 0)
            return e;
    return NULL;
}

/* ---- waiting ------------------------------------------------------------------------ */

static void check_alive(void)
{
    TH_CHECK(th_alive(t.broker_pid), "mosquitto exited early");
    TH_CHECK(th_alive(t.cloud_pid), "synccloud exited early");
    TH_CHECK(th_alive(t.a_pid), "syncedge A exited early");
    TH_CHECK(th_alive(t.b_pid), "syncedge B exited early");
}

static int file_count(const char *path, const char *needle)
{
    char *out = NULL;
    th_capture(&out, "grep -cF -- %s %s 2>/dev/null", th_shq(needle), th_shq(path));
    int n = out ? atoi(out) : 0;
    free(out);
    return n;
}

static int started(void *ctx)
{
    (void)ctx;
    const char *mlog = th_fmt("%s/mosquitto.log", t.dir);
    check_alive();
    return file_count(mlog, "u'synccloud'") > 0 && file_count(mlog, "u'edge-a'") > 0 &&
           file_count(mlog, "u'edge-b'") > 0 &&
           th_sql_int(t.a_db, "SELECT count(DISTINCT tbl_name) FROM sqlite_master WHERE "
                              "type='trigger' AND tbl_name IN ('items','notes')") == 2 &&
           th_run("test -f %s", th_shq(t.b_db)) == 0 &&
           th_sql_int(t.b_db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                              "name IN ('items','notes')") == 2;
}

/* The line of table in a --checksum output (owned by the harness), or "" if none. */
static const char *sum_line(const char *sum, const char *table)
{
    size_t tl = strlen(table);
    for (const char *p = sum; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > tl && strncmp(p, table, tl) == 0 && p[tl] == ' ')
            return th_fmt("%.*s", (int)n, p);
        p = nl ? nl + 1 : NULL;
    }
    return "";
}

/* A, the cloud and B hold the same rows, and A has nothing left to send. */
static int converged(void *ctx)
{
    (void)ctx;
    check_alive();
    if (th_sql_int(t.a_db, "SELECT count(*) FROM _sync_outbox") != 0)
        return 0;
    char *a = th_output(t.sum_a), *c = th_output(t.sum_cloud), *b = th_output(t.sum_b);
    int same = a && b && c && sum_line(a, "items")[0] && strcmp(a, c) == 0 && strcmp(a, b) == 0;
    free(a);
    free(b);
    free(c);
    return same;
}

/* B's items equal the cloud's. */
static int b_items_match(void *ctx)
{
    (void)ctx;
    char *c = th_output(t.sum_cloud), *b = th_output(t.sum_b);
    int same = b && c && sum_line(c, "items")[0] &&
               strcmp(sum_line(b, "items"), sum_line(c, "items")) == 0;
    free(b);
    free(c);
    return same;
}

/* B holds exactly the cloud's rows (A, a writer only, does not get the settled note). */
static int b_matches(void *ctx)
{
    (void)ctx;
    char *c = th_output(t.sum_cloud), *b = th_output(t.sum_b);
    int same = b && c && strcmp(b, c) == 0;
    free(b);
    free(c);
    return same;
}

static void wait_sql(const char *db, const char *sql, long long want, const char *what)
{
    th_wait_sql(db, sql, want, WAIT_MS, what);
}

/* ---- the phases --------------------------------------------------------------------- */

/* CHANGES changes on A: inserts, then updates, then deletes, each in its own transaction. */
static void write_changes(void)
{
    char *sql = malloc(64 * INSERTS + 64);
    TH_CHECK(sql != NULL, "out of memory");
    size_t n = (size_t)sprintf(sql, "BEGIN;");
    for (int i = 1; i <= INSERTS; i++)
        n += (size_t)sprintf(sql + n, "INSERT INTO items(id, name, qty) VALUES(%d, 'n%d', %d);", i,
                             i, i);
    sprintf(sql + n, "COMMIT;");
    TH_CHECK(th_sql_exec(t.a_db, "%s", sql) == 0, "inserts on A");
    TH_CHECK(th_sql_exec(t.a_db, "UPDATE items SET name = name || '-u' WHERE id <= %d", UPDATES) ==
                 0,
             "updates on A");
    TH_CHECK(th_sql_exec(t.a_db, "DELETE FROM items WHERE id > %d", INSERTS - DELETES) == 0,
             "deletes on A");
    free(sql);
}

/* Phase: status, as JSON and as a table, once everything converged. */
struct status_ok {
    struct run r;
    char why[512];
};

static int status_converged(void *ctx)
{
    struct status_ok *s = ctx;
    check_alive();
    run_free(&s->r);
    s->r = ctl("status --json --wait 10");
    sync_jdoc *d = NULL;
    char err[256];
    if (s->r.status != 0 || sync_jdoc_parse(s->r.out, strlen(s->r.out), &d, err, sizeof err)) {
        snprintf(s->why, sizeof s->why, "exit %d, stderr %s", s->r.status, s->r.err);
        return 0;
    }
    const sync_jval *root = sync_jdoc_root(d), *a = device_of(root, "edge-a"),
                    *b = device_of(root, "edge-b");
    const sync_jval *ac = sync_jval_get(a, "cloud");
    int ok = a && b && strcmp(str(a, "status"), "online") == 0 &&
             strcmp(str(b, "status"), "online") == 0 && u64(a, "pending") == 0 &&
             u64(b, "pending") == 0 && u64(b, "lag_total") == 0 && u64(ac, "applied") == CHANGES &&
             /* States from after the writes (an edge publishes at most every 2 s): A heard
              * an ack, B's cursor moved. */
             u64(a, "last_sync") > 0 && u64(sync_jval_get(b, "cursor"), "items") > 0;
    snprintf(s->why, sizeof s->why, "not yet: %s", s->r.out);
    sync_jdoc_free(d);
    return ok;
}

static void phase_status(void)
{
    struct status_ok s = {{0, NULL, NULL}, ""};
    TH_CHECK(th_wait_until(status_converged, &s, WAIT_MS) == 0,
             "syncctl status --json never showed both devices converged: %s", s.why);
    printf("ops: syncctl status --json:\n%s", s.r.out);
    TH_CHECK(s.r.err[0] == '\0', "status printed on stderr: %s", s.r.err);
    sync_jdoc *d = json_of(&s.r, "status --json");
    const sync_jval *root = sync_jdoc_root(d);
    TH_CHECK(sync_jval_type(root) == SYNC_JARRAY && sync_jval_count(root) == 2,
             "status --json must be an array of the 2 devices");
    const sync_jval *a = sync_jval_first(root), *b = sync_jval_next(a);
    TH_CHECK(strcmp(str(a, "device"), "edge-a") == 0 && strcmp(str(b, "device"), "edge-b") == 0,
             "devices not sorted by id");
    int online;
    TH_CHECK(sync_jval_bool(sync_jval_get(a, "online"), &online) && online,
             "edge-a: online is not true");
    TH_CHECK(strcmp(str(a, "version"), "(none)") != 0 && u64(a, "ts") != UINT64_MAX,
             "edge-a: no version or ts");
    TH_CHECK(u64(a, "last_sync") > 0 && u64(a, "last_sync") != UINT64_MAX,
             "edge-a: last_sync must be the time of its last ack");
    /* A writer has no replica fields; the replica has them for every table. */
    TH_CHECK(sync_jval_type(sync_jval_get(a, "lag")) == SYNC_JNULL &&
                 sync_jval_get(a, "lag") != NULL,
             "edge-a (not a replica) must have lag null");
    const sync_jval *lag = sync_jval_get(b, "lag"), *cursor = sync_jval_get(b, "cursor");
    TH_CHECK(u64(lag, "items") == 0 && u64(lag, "notes") == 0, "edge-b: lag per table not 0");
    TH_CHECK(u64(cursor, "items") > 0 && u64(cursor, "items") != UINT64_MAX,
             "edge-b: no items cursor");
    TH_CHECK(sync_jval_type(sync_jval_get(b, "pull")) == SYNC_JNULL, "edge-b: a pull runs");
    const sync_jval *ac = sync_jval_get(a, "cloud");
    TH_CHECK(u64(ac, "records") == CHANGES && u64(ac, "applied") == CHANGES &&
                 u64(ac, "batches") >= 1 && u64(ac, "last_seq") > 0 &&
                 u64(ac, "first_seen") <= u64(ac, "last_seen"),
             "edge-a: the cloud's record is wrong");
    TH_CHECK(sync_jval_type(sync_jval_get(b, "cloud")) == SYNC_JNULL,
             "edge-b never wrote: the cloud has no record of it");
    sync_jdoc_free(d);
    run_free(&s.r);

    struct run r = ctl("status");
    printf("ops: syncctl status:\n%s", r.out);
    TH_CHECK(r.status == 0 && r.err[0] == '\0', "status: exit %d, stderr %s", r.status, r.err);
    TH_CHECK(strstr(r.out, "DEVICE") && strstr(r.out, "CLOUD LAST SEEN") && strstr(r.out, "PULL") &&
                 strstr(r.out, "2 devices: 2 online, 0 offline"),
             "status table: header or summary missing");
    /* DEVICE is as wide as the longest id (6), then ONLINE. */
    const char *from = strstr(r.out, "\nedge-a ");
    const char *line_a = from ? th_fmt("%.*s", (int)strcspn(from + 1, "\n"), from + 1) : "";
    TH_CHECK(strncmp(line_a, "edge-a yes ", 11) == 0 && strstr(line_a, th_fmt(" %d ", CHANGES)),
             "status table: edge-a's line must say yes and %d applied: %s", CHANGES, line_a);
    run_free(&r);
}

static int stats_counted(void *ctx)
{
    struct run *r = ctx;
    run_free(r);
    *r = ctl("stats --json");
    sync_jdoc *d = NULL;
    char err[256];
    if (r->status != 0 || sync_jdoc_parse(r->out, strlen(r->out), &d, err, sizeof err))
        return 0;
    const sync_jval *c = sync_jval_first(sync_jval_get(sync_jdoc_root(d), "consumers"));
    int ok = u64(c, "changes_applied") == CHANGES;
    sync_jdoc_free(d);
    return ok;
}

static void phase_stats(void)
{
    struct run r = {0, NULL, NULL};
    TH_CHECK(th_wait_until(stats_counted, &r, WAIT_MS) == 0,
             "syncctl stats --json never counted %d changes: exit %d\n%s%s", CHANGES, r.status,
             r.out ? r.out : "", r.err ? r.err : "");
    printf("ops: syncctl stats --json:\n%s", r.out);
    TH_CHECK(r.err[0] == '\0', "stats printed on stderr: %s", r.err);
    sync_jdoc *d = json_of(&r, "stats --json");
    const sync_jval *root = sync_jdoc_root(d), *list = sync_jval_get(root, "consumers");
    TH_CHECK(sync_jval_count(list) == 1, "one consumer expected");
    const sync_jval *c = sync_jval_first(list), *tot = sync_jval_get(root, "total");
    int online = 0, stale = 1;
    TH_CHECK(strcmp(str(c, "consumer"), "synccloud-demo") == 0 &&
                 sync_jval_bool(sync_jval_get(c, "online"), &online) && online &&
                 sync_jval_bool(sync_jval_get(c, "stale"), &stale) && !stale,
             "the consumer must be synccloud-demo, online, not stale");
    TH_CHECK(u64(c, "devices_known") == 1 && u64(c, "rejections") == 0 &&
                 u64(c, "batches_applied") >= 1,
             "consumer counters wrong");
    TH_CHECK(u64(tot, "changes_applied") == CHANGES && u64(tot, "consumers") == 1 &&
                 u64(tot, "online") == 1 && u64(tot, "devices_known") == 1,
             "totals wrong");
    sync_jdoc_free(d);
    run_free(&r);

    r = ctl("stats");
    printf("ops: syncctl stats:\n%s", r.out);
    TH_CHECK(r.status == 0 && strstr(r.out, "synccloud-demo") && strstr(r.out, "\nTOTAL ") &&
                 strstr(r.out, th_fmt(" %d ", CHANGES)),
             "stats table: exit %d", r.status);
    run_free(&r);
}

/* Phase: B's edit of a note while stopped conflicts with A's (manual policy); while B is
 * stopped its items are damaged too (see the top comment). Returns when B runs again. */
static void damage_and_conflict(void)
{
    const char *note = "SELECT count(*) FROM notes WHERE k = 'conflict-me' AND ";
    TH_CHECK(th_sql_exec(t.a_db, "INSERT INTO notes(k, body, n) VALUES ('conflict-me', 'start', "
                                 "1)") == 0,
             "insert on A");
    wait_sql(t.b_db, th_fmt("%sbody = 'start'", note), 1, "B has the note");
    th_stop(t.b_pid, "syncedge B", th_fmt("%s/edge-b.%d.log", t.dir, t.b_runs), 1);
    TH_CHECK(th_sql_exec(t.b_db, "UPDATE notes SET body = 'from-b' WHERE k = 'conflict-me'") == 0,
             "update on B");
    /* Not captured: written the way syncedge applies the cloud's changes. */
    TH_CHECK(th_sql_exec(t.b_db, "BEGIN; UPDATE _sync_ctl SET applying = 1;"
                                 "UPDATE items SET name = 'damaged' WHERE id = 5;"
                                 "DELETE FROM items WHERE id = 6;"
                                 "INSERT INTO items(id, name) VALUES (99999, 'ghost');"
                                 "UPDATE _sync_ctl SET applying = 0; COMMIT") == 0,
             "damaging B");
    TH_CHECK(th_sql_int(t.b_db, "SELECT count(*) FROM _sync_outbox WHERE tbl = 'items'") == 0,
             "the damage was captured");
    TH_CHECK(th_sql_exec(t.a_db, "UPDATE notes SET body = 'from-a' WHERE k = 'conflict-me'") == 0,
             "update on A");
    wait_sql(t.cloud_db, th_fmt("%sbody = 'from-a'", note), 1, "the cloud has A's edit");
    start_b();
    wait_sql(t.cloud_db,
             "SELECT count(*) FROM _sync_conflicts WHERE tbl = 'notes' AND pk = 'conflict-me' AND "
             "outcome = 'pending' AND resolved_at IS NULL",
             1, "B's edit is a pending conflict");
}

static void phase_take_values(void)
{
    long long id = th_sql_int(t.cloud_db, "SELECT id FROM _sync_conflicts WHERE pk = "
                                          "'conflict-me' AND outcome = 'pending'");
    struct run r = ctl("conflicts list --json");
    TH_CHECK(r.status == 0 && strstr(r.out, "from-b"), "conflicts list --json: %s", r.out);
    run_free(&r);
    r = ctl("conflicts resolve %lld --take server,client", id);
    TH_CHECK(r.status == 2, "a --take that is neither side nor COLUMN=VALUE must be exit 2");
    run_free(&r);
    r = ctl("conflicts resolve %lld --take '=x'", id);
    TH_CHECK(r.status == 2 && strstr(r.err, "column name"), "--take =x: %s", r.err);
    run_free(&r);
    r = ctl("conflicts resolve %lld --take server --by 'two words'", id);
    TH_CHECK(r.status == 2 && strstr(r.err, "--by"), "an invalid --by must be refused: %s", r.err);
    run_free(&r);
    /* The value holds a comma that starts no COLUMN=: it stays in the value. */
    r = ctl("conflicts resolve %lld --take 'body=agreed, by both,n=7' --by ops --json", id);
    TH_CHECK(r.status == 0 && strstr(r.out, "\"ok\":true") && strstr(r.out, "\"version\""),
             "conflicts resolve --take COLUMN=VALUE: exit %d\n%s%s", r.status, r.out, r.err);
    printf("ops: conflicts resolve --take: %s", r.out);
    run_free(&r);
    const char *agreed = "SELECT count(*) FROM notes WHERE k = 'conflict-me' AND "
                         "body = 'agreed, by both' AND n = 7";
    wait_sql(t.cloud_db, agreed, 1, "the cloud has the settled note");
    wait_sql(t.b_db, agreed, 1, "B has the settled note");
}

static void phase_resync(void)
{
    /* B runs again, caught up with the cloud's changes, and still holds the damage: nothing
     * tells it that rows it already has are wrong. */
    wait_sql(t.b_db, "SELECT count(*) FROM items WHERE id = 99999", 1, "B keeps the ghost row");
    sleep(2);
    TH_CHECK(!b_items_match(NULL), "B's items match the cloud's before any resync");
    TH_CHECK(th_sql_int(t.b_db, "SELECT count(*) FROM items WHERE id = 99999") == 1,
             "B repaired itself");

    struct run r = ctl("resync -- -bad/");
    TH_CHECK(r.status == 2 && strstr(r.err, "device id"), "resync of a bad id: exit %d, %s",
             r.status, r.err);
    run_free(&r);
    /* --follow waits for the rebuild and says when it is over. */
    r = ctl("resync edge-b --by ops --follow --wait 60");
    printf("ops: syncctl resync edge-b --follow: %s", r.out);
    TH_CHECK(r.status == 0 && strstr(r.out, "resync of edge-b requested") &&
                 strstr(r.out, "edge-b rebuilt its tables from the cloud"),
             "resync --follow: exit %d\n%s%s", r.status, r.out, r.err);
    run_free(&r);
    TH_CHECK(b_items_match(NULL) || th_wait_until(b_items_match, NULL, WAIT_MS) == 0,
             "B's items never matched the cloud's after the resync");
    TH_CHECK(file_count(th_fmt("%s/edge-b.%d.log", t.dir, t.b_runs), "asked for a resync") == 1,
             "B's log does not show the resync command");
    TH_CHECK(th_sql_int(t.b_db, "SELECT count(*) FROM items WHERE id = 99999") == 0 &&
                 th_sql_int(t.b_db, "SELECT count(*) FROM items WHERE id = 6") == 1 &&
                 th_sql_int(t.b_db, "SELECT count(*) FROM items WHERE id = 5 AND "
                                    "name = 'n5-u'") == 1,
             "B's damaged rows are not repaired");
    TH_CHECK(th_wait_until(b_matches, NULL, WAIT_MS) == 0, "the cloud and B differ");
    r = ctl("resync edge-b --follow --wait 0");
    TH_CHECK(r.status == 2 && strstr(r.err, "--wait"), "resync --wait 0 must be refused: %s",
             r.err);
    run_free(&r);
    /* The JSON form of the answer. */
    r = ctl("resync edge-b --json");
    TH_CHECK(r.status == 0 && strstr(r.out, "\"ok\":true"), "resync --json: %s", r.out);
    run_free(&r);
}

/* Phase: A's database is restored from the backup taken after the first convergence. A has
 * sent changes since (the conflict phase), so the backup's outbox sequence is behind what the
 * cloud applied: new changes written after the restore must still be applied, not taken for
 * duplicates of the numbers the backup reuses. */
static void phase_restore(void)
{
    th_stop(t.a_pid, "syncedge A", th_fmt("%s/edge-a.log", t.dir), 1);
    TH_CHECK(th_run("cp %s/a.bak %s && rm -f %s-wal %s-shm", th_shq(t.dir), th_shq(t.a_db),
                    th_shq(t.a_db), th_shq(t.a_db)) == 0,
             "restoring A's backup");
    struct args a = edge_args("edge-a", t.a_db, 0);
    t.a_pid = spawn(th_fmt("%s/edge-a.2.log", t.dir), &a);
    TH_CHECK(th_sql_exec(t.a_db, "INSERT INTO items(id, name) VALUES (7001, 'after restore');"
                                 "INSERT INTO items(id, name) VALUES (7002, 'after restore')") == 0,
             "writes on the restored A");
    wait_sql(t.cloud_db, "SELECT count(*) FROM items WHERE id IN (7001, 7002)", 2,
             "changes written after restoring A's backup reach the cloud");
    wait_sql(t.a_db, "SELECT count(*) FROM _sync_outbox", 0, "the restored A's outbox empties");
    printf("ops: after restoring an older backup, A's new changes were applied\n");
}

static void phase_cloud_down(void)
{
    th_stop(t.cloud_pid, "synccloud", th_fmt("%s/synccloud.log", t.dir), 1);
    double t0 = th_now();
    struct run r = ctl("status");
    double took = th_now() - t0;
    printf("ops: syncctl status without synccloud (%.1f s, exit %d):\n%s%s", took, r.status, r.out,
           r.err);
    TH_CHECK(r.status == 3, "status without synccloud must be exit 3, was %d", r.status);
    TH_CHECK(strstr(r.out, "\nedge-a ") && strstr(r.out, "\nedge-b ") &&
                 strstr(r.out, "2 devices: 2 online"),
             "status without synccloud must still show both devices");
    TH_CHECK(strstr(r.err, "synccloud is not running"), "stderr must say why: %s", r.err);
    TH_CHECK(took < 8, "status took %.1f s although the statistics say synccloud stopped", took);
    run_free(&r);
    r = ctl("status --json");
    TH_CHECK(r.status == 3, "status --json without synccloud: exit %d", r.status);
    sync_jdoc *d = json_of(&r, "status --json without synccloud");
    const sync_jval *a = device_of(sync_jdoc_root(d), "edge-a");
    TH_CHECK(a && strcmp(str(a, "status"), "online") == 0 &&
                 sync_jval_type(sync_jval_get(a, "cloud")) == SYNC_JNULL,
             "edge-a without the cloud's answer");
    sync_jdoc_free(d);
    run_free(&r);
    r = ctl("stats --json");
    d = json_of(&r, "stats --json after the stop");
    int online = 1;
    const sync_jval *c = sync_jval_first(sync_jval_get(sync_jdoc_root(d), "consumers"));
    TH_CHECK(r.status == 0 && sync_jval_bool(sync_jval_get(c, "online"), &online) && !online &&
                 u64(sync_jval_get(sync_jdoc_root(d), "total"), "online") == 0,
             "stats must show the consumer offline: %s", r.out);
    /* Its last report counts B's conflict, settled since. */
    TH_CHECK(u64(c, "conflicts") == 1 && u64(c, "conflicts_pending") == 0 &&
                 u64(c, "changes_applied") >= CHANGES + 3,
             "the last statistics must count the conflict: %s", r.out);
    sync_jdoc_free(d);
    run_free(&r);

    /* An edge that dies leaves its Last Will: lost. */
    TH_CHECK(th_kill(t.a_pid, SIGKILL) == 0, "kill -9 A");
    th_wait_exit(t.a_pid, 10000, 1);
    struct run s = {0, NULL, NULL};
    double until = th_now() + WAIT_MS / 1000.0;
    for (;;) {
        run_free(&s);
        s = ctl("status --json");
        sync_jdoc *x = NULL;
        char err[256];
        int lost = 0;
        if (sync_jdoc_parse(s.out, strlen(s.out), &x, err, sizeof err) == SYNC_OK) {
            const sync_jval *e = device_of(sync_jdoc_root(x), "edge-a");
            int clean = 1;
            lost = strcmp(str(e, "status"), "lost") == 0 &&
                   sync_jval_bool(sync_jval_get(e, "clean"), &clean) && !clean;
        }
        sync_jdoc_free(x);
        if (lost)
            break;
        TH_CHECK(th_now() < until, "edge-a killed -9 never showed as lost:\n%s", s.out);
        usleep(200000);
    }
    run_free(&s);
    r = ctl("status");
    TH_CHECK(strstr(r.out, "\nedge-a lost "), "the table must say lost:\n%s", r.out);
    run_free(&r);
}

static void phase_errors(void)
{
    int port = th_free_port();
    char *out = NULL;
    int st =
        th_capture(&out, "%s status --broker ssl://127.0.0.1:%d --timeout 2 2>&1; echo \"exit=$?\"",
                   t.ctl, port);
    TH_CHECK(out && strstr(out, "could not reach the broker") && strstr(out, "exit=1"),
             "status with no broker: %s (%d)", out ? out : "", st);
    free(out);
    /* The admin may read tenant demo's statistics only: for another tenant there are none. */
    struct run r = ctl("stats --tenant other");
    TH_CHECK(r.status == 1 && strstr(r.err, "no cloud consumer of tenant 'other'"),
             "stats of a tenant without statistics: exit %d, %s", r.status, r.err);
    run_free(&r);
    r = ctl("stats --json --tenant other");
    TH_CHECK(r.status == 1 && strstr(r.out, "\"consumers\":[]"),
             "stats --json without statistics: exit %d, %s%s", r.status, r.out, r.err);
    run_free(&r);
    r = ctl("status --wait 0");
    TH_CHECK(r.status == 2, "--wait 0 must be refused");
    run_free(&r);

    /* The production ACL syncctl writes grants the same topics as dev.acl. */
    const char *pki = th_fmt("%s/pki", t.dir);
    TH_CHECK(th_run("%s --dir %s ca init >/dev/null 2>&1 && %s --dir %s device add demo shop-1 "
                    ">/dev/null 2>&1",
                    SYNCCTL_BIN, th_shq(pki), SYNCCTL_BIN, th_shq(pki)) == 0,
             "syncctl ca init / device add");
    char *acl = th_output(th_fmt("cat %s/acl", th_shq(pki)));
    TH_CHECK(acl && strstr(acl, "user admin\ntopic write sync/+/admin/req\n") &&
                 strstr(acl, "\ntopic read sync/+/dev/+/state\n") &&
                 strstr(acl, "\ntopic read sync/+/cloud/+/stats\n") &&
                 strstr(acl, "\ntopic read sync/demo/dev/shop-1/cmd\n") &&
                 strstr(acl, "\ntopic read sync/demo/dev/shop-1/policy\n") &&
                 strstr(acl, "user synccloud\ntopic readwrite sync/#\n"),
             "the generated ACL lacks the status, stats, cmd or policy grants:\n%s",
             acl ? acl : "");
    free(acl);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    t.dir = th_tmpdir();
    TH_CHECK(t.dir != NULL, "no temp folder");
    int port = th_free_port();
    TH_CHECK(port > 0, "no free port");
    t.schema = SYNC_SOURCE_DIR "/docs/examples/schema.conf";
    t.broker = th_fmt("ssl://127.0.0.1:%d", port);
    t.a_db = th_fmt("%s/a.db", t.dir);
    t.b_db = th_fmt("%s/b.db", t.dir);
    t.cloud_db = th_fmt("%s/cloud.db", t.dir);
    t.sum_log = th_fmt("%s/checksum.log", t.dir);
    th_register_log(t.sum_log);
    t.ctl = th_fmt("%s --tenant demo --broker %s --admin-user admin --admin-password-file "
                   "%s/admin.pass --cafile %s/ca.crt --timeout 20",
                   th_shq(SYNCCTL_BIN), t.broker, th_shq(t.dir), th_shq(t.dir));
    printf("ops: folder %s, broker %s\n", t.dir, t.broker);

    TH_CHECK(th_run("bash %s/scripts/devbroker.sh setup %s %d >/dev/null", th_shq(SYNC_SOURCE_DIR),
                    th_shq(t.dir), port) == 0,
             "devbroker.sh setup failed");
    char *brokerargv[] = {"mosquitto", "-c", (char *)th_fmt("%s/mosquitto.conf", t.dir), NULL};
    th_register_log(th_fmt("%s/mosquitto.log", t.dir));
    t.broker_pid = th_spawn(th_fmt("%s/mosquitto.log", t.dir), brokerargv);
    TH_CHECK(t.broker_pid > 0, "cannot start mosquitto");
    TH_CHECK(th_wait_port(port, 10000) == 0, "mosquitto does not listen on %d", port);

    TH_CHECK(th_sql_exec(t.a_db, "PRAGMA journal_mode=WAL;"
                                 "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT,"
                                 " qty INTEGER, price REAL, note TEXT, data BLOB);"
                                 "CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT NULL,"
                                 " n INTEGER)") == 0,
             "cannot create %s", t.a_db);
    struct args a = cloud_args();
    t.sum_cloud = th_checksum_cmd(a.v, a.n, t.sum_log);
    t.cloud_pid = spawn(th_fmt("%s/synccloud.log", t.dir), &a);
    a = edge_args("edge-a", t.a_db, 0);
    t.sum_a = th_checksum_cmd(a.v, a.n, t.sum_log);
    t.a_pid = spawn(th_fmt("%s/edge-a.log", t.dir), &a);
    a = edge_args("edge-b", t.b_db, 1);
    t.sum_b = th_checksum_cmd(a.v, a.n, t.sum_log);
    start_b();
    TH_CHECK(th_wait_until(started, NULL, 30000) == 0, "the daemons did not start within 30 s");

    write_changes();
    TH_CHECK(th_wait_until(converged, NULL, WAIT_MS) == 0, "A, the cloud and B did not converge");
    printf("ops: %d changes converged\n", CHANGES);
    /* An operator's backup of A's database, restored later (phase_restore). */
    TH_CHECK(th_run("sqlite3 -cmd '.timeout 10000' %s \".backup '%s/a.bak'\"", th_shq(t.a_db),
                    t.dir) == 0,
             "sqlite3 .backup of A");

    phase_status();
    phase_stats();
    damage_and_conflict();
    phase_take_values();
    phase_resync();
    phase_restore();
    phase_cloud_down();
    phase_errors();

    th_stop(t.b_pid, "syncedge B", th_fmt("%s/edge-b.%d.log", t.dir, t.b_runs), 1);
    th_stop(t.broker_pid, "mosquitto", th_fmt("%s/mosquitto.log", t.dir), 0);
    printf("ops: OK\n");
    return 0;
}
