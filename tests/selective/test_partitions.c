/* test_partitions.c - selective sync by rows: a table split into partitions (`partition sales
 * store_id`), against a real Mosquitto, synccloud (SQLite, or PostgreSQL with --pg) and three
 * syncedge: two stores' tills and the office.
 *
 * edge-a is the till of store 12, edge-b the till of store 13 (role clerk, `attr … store N`,
 * `receive role:clerk items,sales=$store`, `write role:clerk sales=$store`); edge-c is the
 * office (role manager: every row, every write).
 *  1. Before synccloud ever ran, edge-a's application writes a sale of store 13 (no policy yet:
 *     captured). synccloud refuses it: it lands in edge-a's _sync_dead with the reason.
 *  2. With its policy, edge-a refuses the application's writes outside store 12 (an insert, and
 *     an update that would move its own row to store 13) with an error that says why.
 *  3. Each till ends holding exactly its store's sales, the office all of them (compared with
 *     the cloud's rows by count and by a fingerprint of ids and amounts).
 *  4. The office moves a sale from store 12 to 13 and one from 13 to 12: each moves between the
 *     tills' replicas, with its values; the retained row lives under its new partition only.
 *  5. edge-a is away while the office deletes and moves its store's sales and the tombstones
 *     and leaves are compacted: back, edge-a resyncs its partition in full and again holds
 *     exactly store 12's sales.
 *  6. The rules change (edge-a becomes the till of store 13): edge-a removes store 12's sales
 *     and receives store 13's.
 *  7. syncctl's ACL from the same lines: a client logged in as edge-a that subscribes to
 *     every sales topic gets store 12's partition only.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SYNCEDGE_BIN
#error "SYNCEDGE_BIN must be defined by the build"
#endif
#ifndef SYNCCLOUD_BIN
#error "SYNCCLOUD_BIN must be defined by the build"
#endif
#ifndef SYNCCTL_BIN
#error "SYNCCTL_BIN must be defined by the build"
#endif

#define PT_WAIT_MS 30000
#define PT_SALES 20 /* each till's own sales */

static const char *dir, *broker, *schema, *cloud_db, *pg;
static int port;
static pid_t cloud_pid, edge_pid[3];
static const char *const devices[3] = {"edge-a", "edge-b", "edge-c"};

static const char *db_of(int i)
{
    return th_fmt("%s/%c.db", dir, 'a' + i);
}

static pid_t start_edge(int i)
{
    char *argv[] = {SYNCEDGE_BIN, "--database", (char *)db_of(i), "--schema", (char *)schema,
                    "--tenant", "demo", "--device", (char *)devices[i], "--broker",
                    (char *)broker, "--password-file",
                    (char *)th_fmt("%s/%s.pass", dir, devices[i]), "--cafile",
                    (char *)th_fmt("%s/ca.crt", dir), "--replica", "true", "--log-level", "info",
                    NULL};
    const char *log = th_fmt("%s/%s.log", dir, devices[i]);
    th_register_log(log);
    pid_t pid = th_spawn(log, argv);
    TH_CHECK(pid > 0, "cannot start syncedge %s", devices[i]);
    return pid;
}

/* Writes synccloud's config with edge-a's store `store_a` and returns its path. */
static const char *cloud_conf(const char *name, int store_a)
{
    const char *path = th_fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    TH_CHECK(f != NULL, "cannot write %s", path);
    fprintf(f,
            "database %s\nschema %s\ntenant demo\nbroker %s\nusername synccloud\n"
            "password_file %s/synccloud.pass\ncafile %s/ca.crt\nlog_level info\n"
            "tombstone_retention 1\ncompact_interval 1\nhead_interval 2\n"
            "role edge-a clerk\nrole edge-b clerk\nrole edge-c manager\n"
            "partition sales store_id\n"
            "attr edge-a store %d\nattr edge-b store 13\n"
            "receive role:clerk items,sales=$store\nwrite role:clerk sales=$store\n"
            "receive role:manager *\nwrite role:manager *\n",
            cloud_db, schema, broker, dir, dir, store_a);
    fclose(f);
    return path;
}

static pid_t start_cloud(const char *conf, const char *log)
{
    char *argv[] = {SYNCCLOUD_BIN, "-c", (char *)conf, NULL};
    th_register_log(log);
    pid_t pid = th_spawn(log, argv);
    TH_CHECK(pid > 0, "cannot start synccloud");
    return pid;
}

/* A number from the cloud's store (SQLite file or PostgreSQL). */
static long long cloud_int(const char *sql)
{
    return pg ? th_pg_int(pg, "%s", sql) : th_sql_int(cloud_db, "%s", sql);
}

/* Waits until sql on db (NULL: the cloud's store) gives want. */
static int cloud_is(void *ctx)
{
    const char **q = ctx;
    return cloud_int(q[0]) == strtoll(q[1], NULL, 10);
}

static void wait_sql(const char *db, const char *sql, long long want, const char *what)
{
    if (db) {
        th_wait_sql(db, sql, want, PT_WAIT_MS, what);
        return;
    }
    const char *q[2] = {sql, th_fmt("%lld", want)};
    TH_CHECK(th_wait_until(cloud_is, q, PT_WAIT_MS) == 0, "%s: `%s` on the cloud gives %lld, not %lld",
             what, sql, cloud_int(sql), want);
}

static void app_ok(int i, const char *sql)
{
    const char *e = th_sql_try(db_of(i), sql);
    TH_CHECK(e == NULL, "%s's application could not run `%s`: %s", devices[i], sql, e);
}

/* Count and fingerprint of the live sales of one store, as SQL for an edge or for the cloud. */
static const char *count_sql(int cloud, int store)
{
    return th_fmt("SELECT count(*) FROM sales WHERE store_id = %d%s", store,
                  cloud ? " AND _deleted = 0" : "");
}

static const char *print_sql(int cloud, int store)
{
    return th_fmt("SELECT coalesce(sum(id * 1000003 + amount), 0) FROM sales WHERE store_id = "
                  "%d%s",
                  store, cloud ? " AND _deleted = 0" : "");
}

/* Waits until edge i holds exactly the cloud's sales of `store` and none of `other`. */
static void holds_exactly(int i, int store, int other, const char *what)
{
    long long n = cloud_int(count_sql(1, store)), fp = cloud_int(print_sql(1, store));
    TH_CHECK(n > 0, "the cloud holds no sale of store %d", store);
    wait_sql(db_of(i), count_sql(0, store), n, what);
    wait_sql(db_of(i), print_sql(0, store), fp, what);
    if (other)
        wait_sql(db_of(i), count_sql(0, other), 0, what);
    printf("partitions: %s holds the %lld sales of store %d%s (%s)\n", devices[i], n, store,
           other ? th_fmt(" and none of store %d", other) : "", what);
}

/* 1 when edge i's application is refused a sale of store 13 (its policy has arrived); the
 * attempt is rolled back either way, so nothing is captured. */
static int refuses_13(void *ctx)
{
    const char **why = ctx;
    const char *e = th_sql_try(db_of(0), "BEGIN; INSERT INTO sales(id, store_id, amount) VALUES "
                                         "(99, 13, 1); ROLLBACK;");
    if (!e)
        return 0;
    *why = e; /* (kept by the harness) */
    th_sql_try(db_of(0), "ROLLBACK"); /* the refused insert left the transaction open */
    return 1;
}

/* The retained row messages of sale `id`, by topic (mosquitto_sub as edge-c, the office, whose
 * dev ACL reads every row); one line per topic. */
static char *retained_of(int id)
{
    char cpass[256];
    TH_CHECK(th_read_first_line(th_fmt("%s/edge-c.pass", dir), cpass, sizeof cpass) == 0,
             "no password of edge-c");
    return th_output(th_fmt("mosquitto_sub -h 127.0.0.1 -p %d --cafile %s/ca.crt -u edge-c "
                            "-P %s -i retained-probe -t 'sync/demo/rows/sales/+/%d' -W 2 -F %%t "
                            "--retained-only 2>/dev/null; true",
                            port, th_shq(dir), th_shq(cpass), id));
}

static int file_has(void *ctx)
{
    const char **a = ctx;
    return th_run("grep -q %s %s", th_shq(a[1]), th_shq(a[0])) == 0;
}

/* 7. syncctl's ACL from the same lines, enforced by the running broker. */
static void check_acl(pid_t broker_pid, const char *conf)
{
    const char *ctl = th_fmt("%s/ctl", dir);
    TH_CHECK(th_run("%s ca init --dir %s >/dev/null 2>&1 && %s device add demo edge-a --dir %s "
                    ">/dev/null 2>&1 && %s acl generate --dir %s --cloud-config %s >/dev/null",
                    SYNCCTL_BIN, th_shq(ctl), SYNCCTL_BIN, th_shq(ctl), SYNCCTL_BIN, th_shq(ctl),
                    th_shq(conf)) == 0,
             "syncctl ca init / device add / acl generate failed");
    char *block = th_output(th_fmt("awk '/^user edge-a$/{on=1} on&&/^$/{exit} on' %s/acl",
                                   th_shq(ctl)));
    TH_CHECK(block && strstr(block, "topic read sync/demo/delta/sales/12\n") &&
                 strstr(block, "topic read sync/demo/head/sales/12\n") &&
                 strstr(block, "topic read sync/demo/rows/sales/12/#\n") &&
                 strstr(block, "topic read sync/demo/delta/items\n") &&
                 !strstr(block, "sales/13") && !strstr(block, "delta/sales\n") &&
                 !strstr(block, "rows/sales/#") && !strstr(block, "delta/#") &&
                 !strstr(block, "events"),
             "syncctl's ACL block for edge-a does not follow the partition lines:\n%s",
             block ? block : "(none)");
    TH_CHECK(th_run("awk '/^user /{skip=($2==\"edge-a\")} !skip' %s/acl > %s/acl.new && "
                    "printf '\n%%s\n' %s >> %s/acl.new && mv %s/acl.new %s/acl",
                    th_shq(dir), th_shq(dir), th_shq(block), th_shq(dir), th_shq(dir),
                    th_shq(dir)) == 0,
             "cannot install edge-a's block");
    free(block);
    TH_CHECK(th_kill(broker_pid, SIGHUP) == 0, "cannot reload mosquitto");
    usleep(500 * 1000);
    char pass[256], cpass[256];
    TH_CHECK(th_read_first_line(th_fmt("%s/edge-a.pass", dir), pass, sizeof pass) == 0 &&
                 th_read_first_line(th_fmt("%s/synccloud.pass", dir), cpass, sizeof cpass) == 0,
             "no passwords");
    const char *out = th_fmt("%s/acl-sub.out", dir);
    char *sub[] = {"mosquitto_sub", "-h", "127.0.0.1", "-p", (char *)th_fmt("%d", port),
                   "--cafile", (char *)th_fmt("%s/ca.crt", dir), "-u", "edge-a", "-P", pass,
                   "-i", "acl-probe", "-v", "-t", "sync/demo/delta/sales/+", "-t",
                   "sync/demo/delta/sales/13", "-t", "sync/demo/delta/sales", "-t",
                   "sync/demo/rows/sales/#", "-t", "sync/demo/head/sales/+", NULL};
    pid_t probe = th_spawn(out, sub);
    TH_CHECK(probe > 0, "cannot start mosquitto_sub");
    usleep(500 * 1000);
    static const char *const topics[] = {"delta/sales/13", "delta/sales", "rows/sales/13/1",
                                         "head/sales/13", "delta/sales/12"};
    for (int i = 0; i < 5; i++)
        TH_CHECK(th_run("mosquitto_pub -h 127.0.0.1 -p %d --cafile %s/ca.crt -u synccloud -P %s "
                        "-q 1 -t sync/demo/%s -m probe-%d",
                        port, th_shq(dir), th_shq(cpass), topics[i], i) == 0,
                 "mosquitto_pub failed");
    const char *want[] = {out, "sync/demo/delta/sales/12 probe-4"};
    TH_CHECK(th_wait_until(file_has, want, 10000) == 0, "edge-a's probe got no store 12 delta");
    usleep(300 * 1000);
    th_kill(probe, SIGTERM);
    th_wait_exit(probe, 5000, 1);
    char *got = th_output(th_fmt("cat %s", th_shq(out)));
    /* Retained messages of store 12 may arrive too; nothing of store 13 or the whole table. */
    TH_CHECK(got && !strstr(got, "sales/13") && !strstr(got, "delta/sales ") &&
                 !strstr(got, "probe-0") && !strstr(got, "probe-1") && !strstr(got, "probe-2") &&
                 !strstr(got, "probe-3"),
             "edge-a read topics of another store:\n%s", got ? got : "");
    free(got);
    printf("partitions: syncctl's ACL lets edge-a read store 12's partition and nothing of "
           "store 13's\n");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    dir = th_tmpdir();
    TH_CHECK(dir != NULL, "no temp folder");
    if (argc > 1 && strcmp(argv[1], "--pg") == 0) {
        pg = th_pg_start();
        cloud_db = th_fmt("postgresql://synccloud@127.0.0.1:%d/synctest", th_pg_port());
    } else {
        cloud_db = th_fmt("%s/cloud.db", dir);
    }
    port = th_free_port();
    broker = th_fmt("ssl://127.0.0.1:%d", port);
    schema = th_fmt("%s/schema.conf", dir);
    FILE *f = fopen(schema, "w");
    TH_CHECK(f != NULL, "cannot write the schema");
    fprintf(f, "version 1\n\ntable items\ncolumn id integer key\ncolumn name text\n\n"
               "table sales\ncolumn id integer key\ncolumn store_id integer notnull\n"
               "column amount integer\ncolumn note text\n");
    fclose(f);
    TH_CHECK(th_run("bash %s/scripts/devbroker.sh setup %s %d >/dev/null",
                    th_shq(SYNC_SOURCE_DIR), th_shq(dir), port) == 0,
             "devbroker.sh setup failed");
    char *brokerargv[] = {"mosquitto", "-c", (char *)th_fmt("%s/mosquitto.conf", dir), NULL};
    const char *mlog = th_fmt("%s/mosquitto.log", dir);
    th_register_log(mlog);
    pid_t broker_pid = th_spawn(mlog, brokerargv);
    TH_CHECK(broker_pid > 0 && th_wait_port(port, 10000) == 0, "mosquitto did not start");

    for (int i = 0; i < 3; i++)
        TH_CHECK(th_sql_exec(db_of(i), "PRAGMA journal_mode=WAL;"
                                       "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);"
                                       "CREATE TABLE sales(id INTEGER PRIMARY KEY, store_id "
                                       "INTEGER NOT NULL, amount INTEGER, note TEXT)") == 0,
                 "cannot create %s", db_of(i));
    for (int i = 0; i < 3; i++)
        edge_pid[i] = start_edge(i);
    wait_sql(db_of(0), "SELECT count(*) FROM sqlite_master WHERE name = '_sync_outbox'", 1,
             "edge-a attached");

    /* 1. A sale of the other store, written before any policy exists. */
    app_ok(0, "INSERT INTO sales(id, store_id, amount) VALUES (1, 13, 5)");
    const char *conf1 = cloud_conf("cloud1.conf", 12);
    cloud_pid = start_cloud(conf1, th_fmt("%s/synccloud.log", dir));
    wait_sql(db_of(0), "SELECT count(*) FROM _sync_dead WHERE tbl = 'sales' AND reason LIKE "
                       "'%outside the partitions device ''edge-a'' may write%'",
             1, "the cloud refuses edge-a's sale of store 13");
    wait_sql(NULL, "SELECT count(*) FROM sales", 0, "the cloud holds no sale of edge-a's");
    printf("partitions: the cloud refused edge-a's sale of store 13\n");

    /* 2. With its policy, edge-a refuses writes outside its store at the source. */
    const char *why = "";
    TH_CHECK(th_wait_until(refuses_13, &why, PT_WAIT_MS) == 0,
             "edge-a's application can still write sales of store 13");
    TH_CHECK(strstr(why, "outside the partitions device edge-a may write") &&
                 strstr(why, "store_id = 12"),
             "edge-a's refusal does not say why: %s", why);
    printf("partitions: edge-a's application gets \"%s\"\n", why);

    /* 3. The tills and the office write; each till holds its store's sales only. */
    char sql[256];
    for (int i = 0; i < PT_SALES; i++) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO sales(id, store_id, amount) VALUES (%d, 12, %d)", 1200 + i, i * 7);
        app_ok(0, sql);
        snprintf(sql, sizeof sql,
                 "INSERT INTO sales(id, store_id, amount) VALUES (%d, 13, %d)", 1300 + i, i * 11);
        app_ok(1, sql);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(sql, sizeof sql,
                 "INSERT INTO sales(id, store_id, amount, note) VALUES (%d, %d, %d, 'office')",
                 5000 + i, i % 2 ? 13 : 12, 100 + i);
        app_ok(2, sql);
        snprintf(sql, sizeof sql, "INSERT INTO items(id, name) VALUES (%d, 'item %d')", i, i);
        app_ok(2, sql);
    }
    wait_sql(NULL, "SELECT count(*) FROM sales WHERE _deleted = 0", 2 * PT_SALES + 5,
             "the cloud holds every sale");
    holds_exactly(0, 12, 13, "its own store");
    holds_exactly(1, 13, 12, "its own store");
    wait_sql(db_of(2), "SELECT count(*) FROM sales", 2 * PT_SALES + 5, "the office has them all");
    wait_sql(db_of(0), "SELECT count(*) FROM items", 5, "edge-a has the items");
    const char *e = th_sql_try(db_of(0), "UPDATE sales SET store_id = 13 WHERE id = 1200");
    TH_CHECK(e && strstr(e, "outside the partitions device edge-a may write"),
             "edge-a could move its sale to store 13: %s", e ? e : "(no error)");
    TH_CHECK(th_sql_int(db_of(0), "SELECT count(*) FROM _sync_outbox") == 0,
             "a refused write left a change queued");

    /* 4. The office moves a sale each way. */
    app_ok(2, "UPDATE sales SET store_id = 13, amount = amount + 1000 WHERE id = 1205");
    app_ok(2, "UPDATE sales SET store_id = 12 WHERE id = 1310");
    wait_sql(db_of(0), "SELECT count(*) FROM sales WHERE id = 1205", 0, "1205 left edge-a");
    wait_sql(db_of(1), "SELECT count(*) FROM sales WHERE id = 1205 AND amount = 1035", 1,
             "1205 reached edge-b whole");
    wait_sql(db_of(0), "SELECT count(*) FROM sales WHERE id = 1310 AND amount = 110", 1,
             "1310 reached edge-a whole");
    wait_sql(db_of(1), "SELECT count(*) FROM sales WHERE id = 1310", 0, "1310 left edge-b");
    holds_exactly(0, 12, 13, "after the moves");
    holds_exactly(1, 13, 12, "after the moves");
    char *ret = retained_of(1205);
    TH_CHECK(ret && strcmp(ret, "sync/demo/rows/sales/13/1205\n") == 0,
             "the retained row of 1205 should be under store 13 only, found:\n%s",
             ret ? ret : "(nothing)");
    free(ret);
    printf("partitions: sales moved between the stores' tills, and their retained rows too\n");

    /* 5. edge-a is away while its store's rows are deleted and moved, and the tombstones and
     * leaves are compacted: it resyncs its partition in full. */
    th_stop(edge_pid[0], "edge-a", th_fmt("%s/edge-a.log", dir), 1);
    app_ok(2, "DELETE FROM sales WHERE id = 1201");
    app_ok(2, "UPDATE sales SET store_id = 13 WHERE id = 1202");
    app_ok(2, "INSERT INTO sales(id, store_id, amount) VALUES (5005, 12, 55)");
    wait_sql(NULL, "SELECT count(*) FROM sales WHERE id = 1201", 0,
             "the tombstone of 1201 is compacted");
    wait_sql(NULL, "SELECT count(*) FROM sales WHERE id = 1202 AND store_id = 13", 1,
             "1202 moved in the cloud");
    sleep(3); /* past the retention of 1202's leave, and a compaction run */
    edge_pid[0] = start_edge(0);
    holds_exactly(0, 12, 13, "after a full resync of its partition");
    wait_sql(db_of(0), "SELECT count(*) FROM sales WHERE id IN (1201, 1202)", 0,
             "the deleted and the moved sale are gone from edge-a");

    /* 6. edge-a becomes the till of store 13. */
    th_stop(cloud_pid, "synccloud", th_fmt("%s/synccloud.log", dir), 1);
    const char *conf2 = cloud_conf("cloud2.conf", 13);
    cloud_pid = start_cloud(conf2, th_fmt("%s/synccloud2.log", dir));
    holds_exactly(0, 13, 12, "after it became store 13's till");
    app_ok(0, "INSERT INTO sales(id, store_id, amount) VALUES (1400, 13, 9)");
    wait_sql(db_of(1), "SELECT count(*) FROM sales WHERE id = 1400", 1,
             "edge-a's new sale reached store 13's other till");

    check_acl(broker_pid, conf1);

    for (int i = 0; i < 3; i++)
        th_stop(edge_pid[i], devices[i], th_fmt("%s/%s.log", dir, devices[i]), 1);
    th_stop(cloud_pid, "synccloud", th_fmt("%s/synccloud2.log", dir), 1);
    th_stop(broker_pid, "mosquitto", mlog, 0);
    th_pg_stop();
    printf("partitions: OK\n");
    return 0;
}
