/* test_selective.c - selective sync by table: what each device receives and may write, from
 * synccloud's `receive` / `write` lines, against a real Mosquitto, synccloud and three syncedge.
 *
 * Roles: edge-a is a clerk (writes and receives items), edge-b is in the office (writes and
 * receives notes), edge-c is a manager (receives everything, writes nothing).
 *  1. edge-a writes items and a note while synccloud has never run (no policy yet: captured);
 *     synccloud then refuses the note (the change lands in edge-a's _sync_dead with the reason)
 *     and applies the items.
 *  2. Once its policy has arrived, edge-a's application cannot write notes: the write fails
 *     with an error that says why, and nothing is queued.
 *  3. edge-c holds every item and every note; edge-b holds the notes and no item; edge-a the
 *     items and no note (it never received the one it wrote).
 *  4. The rules change (synccloud restarted with other lines): edge-b now receives items too
 *     and gets them all; edge-c no longer receives notes and, as it may not write them, its
 *     notes are removed.
 *  5. The broker: `syncctl acl generate --cloud-config` writes edge-b's ACL block from the same
 *     lines (the deltas and rows of notes only, no events); with that block in the running
 *     broker, a client logged in as edge-b that subscribes to every delta gets the notes' and
 *     nothing of items.
 * Every check also reads the databases with plain SQL; the daemons must stop cleanly.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
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

#define SEL_WAIT_MS 30000
#define SEL_ITEMS 40
#define SEL_NOTES 25

static const char *dir, *broker;
static int port;
static pid_t cloud_pid, edge_pid[3];
static const char *const devices[3] = {"edge-a", "edge-b", "edge-c"};

static const char *db_of(int i)
{
    return th_fmt("%s/%c.db", dir, 'a' + i);
}

static pid_t start_edge(int i)
{
    char *argv[] = {SYNCEDGE_BIN, "--database", (char *)db_of(i), "--schema",
                    SYNC_SOURCE_DIR "/docs/examples/schema.conf", "--tenant", "demo", "--device",
                    (char *)devices[i], "--broker", (char *)broker, "--password-file",
                    (char *)th_fmt("%s/%s.pass", dir, devices[i]), "--cafile",
                    (char *)th_fmt("%s/ca.crt", dir), "--replica", "true", "--log-level", "info",
                    NULL};
    const char *log = th_fmt("%s/%s.log", dir, devices[i]);
    th_register_log(log);
    pid_t pid = th_spawn(log, argv);
    TH_CHECK(pid > 0, "cannot start syncedge %s", devices[i]);
    return pid;
}

/* synccloud with the given access lines ("--receive", "who tables", ...), NULL-terminated. */
static pid_t start_cloud(const char *log, const char *const *lines)
{
    char *argv[48] = {SYNCCLOUD_BIN, "--database", (char *)th_fmt("%s/cloud.db", dir),
                      "--schema", SYNC_SOURCE_DIR "/docs/examples/schema.conf", "--tenant",
                      "demo", "--broker", (char *)broker, "--username", "synccloud",
                      "--password-file", (char *)th_fmt("%s/synccloud.pass", dir), "--cafile",
                      (char *)th_fmt("%s/ca.crt", dir), "--log-level", "info", "--role",
                      "edge-a clerk", "--role", "edge-b office", "--role", "edge-c manager"};
    int n = 0;
    while (argv[n])
        n++;
    for (int i = 0; lines[i]; i++) {
        TH_CHECK(n < 46, "too many arguments");
        argv[n++] = (char *)lines[i];
    }
    argv[n] = NULL;
    th_register_log(log);
    pid_t pid = th_spawn(log, argv);
    TH_CHECK(pid > 0, "cannot start synccloud");
    return pid;
}

/* Waits until sql on db gives want (th_wait_sql with this test's patience). */
static void wait_sql(const char *db, const char *sql, long long want, const char *what)
{
    th_wait_sql(db, sql, want, SEL_WAIT_MS, what);
}

static void write_items(int from, int to)
{
    char sql[256];
    for (int i = from; i < to; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO items(id, name, qty) VALUES (%d, 'item %d', %d)",
                 i, i, i * 3);
        const char *e = th_sql_try(db_of(0), sql);
        TH_CHECK(e == NULL, "edge-a could not write an item: %s", e);
    }
}

static int file_has(void *ctx)
{
    const char **a = ctx;
    return th_run("grep -q %s %s", th_shq(a[1]), th_shq(a[0])) == 0;
}

/* 5. syncctl's ACL from the same lines, enforced by the running broker. */
static void check_acl(pid_t broker_pid)
{
    const char *ctl = th_fmt("%s/ctl", dir), *conf = th_fmt("%s/cloud.conf", dir);
    FILE *f = fopen(conf, "w");
    TH_CHECK(f != NULL, "cannot write %s", conf);
    fprintf(f, "database %s/cloud.db\nschema %s\ntenant demo\nrole edge-b office\n"
               "receive role:office notes\nreceive edge-c *\nwrite role:office notes\n",
            dir, SYNC_SOURCE_DIR "/docs/examples/schema.conf");
    fclose(f);
    TH_CHECK(th_run("%s ca init --dir %s >/dev/null 2>&1 && %s device add demo edge-b --dir %s "
                    ">/dev/null 2>&1 && %s acl generate --dir %s --cloud-config %s >/dev/null",
                    SYNCCTL_BIN, th_shq(ctl), SYNCCTL_BIN, th_shq(ctl), SYNCCTL_BIN, th_shq(ctl),
                    th_shq(conf)) == 0,
             "syncctl ca init / device add / acl generate failed");
    /* edge-b's block in syncctl's file, from its user line to the next blank line. */
    char *block = th_output(th_fmt("awk '/^user edge-b$/{on=1} on&&/^$/{exit} on' %s/acl",
                                   th_shq(ctl)));
    TH_CHECK(block && strstr(block, "topic read sync/demo/delta/notes\n") &&
                 strstr(block, "topic read sync/demo/rows/notes/#\n") &&
                 !strstr(block, "delta/items") && !strstr(block, "delta/#") &&
                 !strstr(block, "events"),
             "syncctl's ACL block for edge-b does not follow the receive lines:\n%s",
             block ? block : "(none)");
    /* The running broker takes that block instead of dev.acl's edge-b block. */
    TH_CHECK(th_run("awk '/^user /{skip=($2==\"edge-b\")} !skip' %s/acl > %s/acl.new && "
                    "printf '\n%%s\n' %s >> %s/acl.new && mv %s/acl.new %s/acl",
                    th_shq(dir), th_shq(dir), th_shq(block), th_shq(dir), th_shq(dir),
                    th_shq(dir)) == 0,
             "cannot install edge-b's block");
    free(block);
    TH_CHECK(th_kill(broker_pid, SIGHUP) == 0, "cannot reload mosquitto");
    usleep(500 * 1000);
    char pass[256];
    TH_CHECK(th_read_first_line(th_fmt("%s/edge-b.pass", dir), pass, sizeof pass) == 0,
             "no password of edge-b");
    const char *out = th_fmt("%s/acl-sub.out", dir);
    char *sub[] = {"mosquitto_sub", "-h", "127.0.0.1", "-p", (char *)th_fmt("%d", port),
                   "--cafile", (char *)th_fmt("%s/ca.crt", dir), "-u", "edge-b", "-P", pass,
                   "-i", "acl-probe", "-v", "-t", "sync/demo/delta/+", "-t", "sync/demo/events/#",
                   NULL};
    pid_t probe = th_spawn(out, sub);
    TH_CHECK(probe > 0, "cannot start mosquitto_sub");
    usleep(500 * 1000);
    char cpass[256];
    TH_CHECK(th_read_first_line(th_fmt("%s/synccloud.pass", dir), cpass, sizeof cpass) == 0,
             "no password of synccloud");
    for (int i = 0; i < 2; i++)
        TH_CHECK(th_run("mosquitto_pub -h 127.0.0.1 -p %d --cafile %s/ca.crt -u synccloud -P %s "
                        "-q 1 -t sync/demo/%s -m probe-%d",
                        port, th_shq(dir), th_shq(cpass),
                        i ? "delta/notes" : "delta/items", i) == 0,
                 "mosquitto_pub failed");
    const char *want[] = {out, "sync/demo/delta/notes probe-1"};
    TH_CHECK(th_wait_until(file_has, want, 10000) == 0, "edge-b's probe got no notes delta");
    usleep(300 * 1000);
    th_kill(probe, SIGTERM);
    th_wait_exit(probe, 5000, 1);
    char *got = th_output(th_fmt("cat %s", th_shq(out)));
    TH_CHECK(got && !strstr(got, "delta/items") && !strstr(got, "events/"),
             "edge-b read topics the receive lines deny it:\n%s", got ? got : "");
    free(got);
    printf("selective: syncctl's ACL for edge-b lets it read the notes' deltas and not the "
           "items'\n");
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    dir = th_tmpdir();
    TH_CHECK(dir != NULL, "no temp folder");
    port = th_free_port();
    broker = th_fmt("ssl://127.0.0.1:%d", port);
    TH_CHECK(th_run("bash %s/scripts/devbroker.sh setup %s %d >/dev/null",
                    th_shq(SYNC_SOURCE_DIR), th_shq(dir), port) == 0,
             "devbroker.sh setup failed");
    char *brokerargv[] = {"mosquitto", "-c", (char *)th_fmt("%s/mosquitto.conf", dir), NULL};
    const char *mlog = th_fmt("%s/mosquitto.log", dir);
    th_register_log(mlog);
    pid_t broker_pid = th_spawn(mlog, brokerargv);
    TH_CHECK(broker_pid > 0 && th_wait_port(port, 10000) == 0, "mosquitto did not start");

    /* The applications' databases exist before sync is installed. */
    for (int i = 0; i < 3; i++)
        TH_CHECK(th_sql_exec(db_of(i), "PRAGMA journal_mode=WAL;"
                                       "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT,"
                                       " qty INTEGER, price REAL, note TEXT, data BLOB);"
                                       "CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT "
                                       "NULL, n INTEGER)") == 0,
                 "cannot create %s", db_of(i));
    for (int i = 0; i < 3; i++)
        edge_pid[i] = start_edge(i);
    wait_sql(db_of(0), "SELECT count(*) FROM sqlite_master WHERE name = '_sync_outbox'", 1,
             "edge-a attached");

    /* 1. Written before any policy exists: captured, then judged by the cloud. */
    write_items(1, SEL_ITEMS / 2 + 1);
    const char *e = th_sql_try(db_of(0), "INSERT INTO notes(k, body) VALUES ('from-a', 'clerk')");
    TH_CHECK(e == NULL, "without a policy yet, edge-a's note should be captured: %s", e);
    static const char *const rules1[] = {
        "--receive", "role:clerk items",        "--write",   "role:clerk items",
        "--receive", "role:office notes",       "--write",   "role:office notes",
        "--receive", "role:manager *",          NULL};
    cloud_pid = start_cloud(th_fmt("%s/synccloud.log", dir), rules1);
    wait_sql(db_of(0), "SELECT count(*) FROM _sync_outbox", 0, "edge-a's outbox emptied");
    wait_sql(db_of(0), "SELECT count(*) FROM _sync_dead WHERE tbl = 'notes' AND reason LIKE "
                       "'%may not write table ''notes''%'",
             1, "the note edge-a wrote is refused");
    wait_sql(th_fmt("%s/cloud.db", dir), "SELECT count(*) FROM notes", 0,
             "the cloud holds no note of edge-a");
    printf("selective: the cloud refused edge-a's note and applied its items\n");

    /* 2. With its policy, edge-a refuses notes at the source. */
    wait_sql(db_of(0), "SELECT count(*) FROM _sync_policy WHERE tbl = 'notes' AND wr = 0", 1,
             "edge-a stored its policy");
    e = th_sql_try(db_of(0), "INSERT INTO notes(k, body) VALUES ('again', 'clerk')");
    TH_CHECK(e && strstr(e, "notes is read-only on device edge-a"),
             "edge-a's application could write a note: %s", e ? e : "(no error)");
    TH_CHECK(th_sql_int(db_of(0), "SELECT count(*) FROM _sync_outbox") == 0 &&
                 th_sql_int(db_of(0), "SELECT count(*) FROM notes WHERE k = 'again'") == 0,
             "a refused write left something behind");
    printf("selective: edge-a's application gets \"%s\"\n", e);
    write_items(SEL_ITEMS / 2 + 1, SEL_ITEMS + 1);
    char sql[256];
    for (int i = 0; i < SEL_NOTES; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO notes(k, body, n) VALUES ('n%d', 'office', %d)", i,
                 i);
        e = th_sql_try(db_of(1), sql);
        TH_CHECK(e == NULL, "edge-b could not write a note: %s", e);
    }
    e = th_sql_try(db_of(1), "INSERT INTO items(id, name) VALUES (9999, 'office item')");
    TH_CHECK(e && strstr(e, "read-only on device edge-b"), "edge-b could write an item: %s",
             e ? e : "(no error)");

    /* 3. Each holds what it receives. */
    wait_sql(db_of(2), "SELECT count(*) FROM items", SEL_ITEMS, "edge-c (manager) has the items");
    wait_sql(db_of(2), "SELECT count(*) FROM notes", SEL_NOTES, "edge-c has the notes");
    wait_sql(db_of(1), "SELECT count(*) FROM _sync_outbox", 0, "edge-b's outbox emptied");
    wait_sql(db_of(0), "SELECT count(*) FROM items", SEL_ITEMS, "edge-a has its items");
    TH_CHECK(th_sql_int(db_of(1), "SELECT count(*) FROM items") == 0,
             "edge-b (office) holds %lld items", th_sql_int(db_of(1), "SELECT count(*) FROM items"));
    TH_CHECK(th_sql_int(db_of(0), "SELECT count(*) FROM notes WHERE k <> 'from-a'") == 0,
             "edge-a (clerk) holds notes of others");
    e = th_sql_try(db_of(2), "UPDATE items SET qty = 0 WHERE id = 1");
    TH_CHECK(e && strstr(e, "read-only on device edge-c"), "edge-c could write an item: %s",
             e ? e : "(no error)");
    printf("selective: edge-a holds %d items, edge-b %d notes and no item, edge-c both\n",
           SEL_ITEMS, SEL_NOTES);

    /* 4. New rules: the office receives items too; the manager no longer receives notes. */
    th_stop(cloud_pid, "synccloud", th_fmt("%s/synccloud.log", dir), 1);
    static const char *const rules2[] = {
        "--receive", "role:clerk items",        "--write",   "role:clerk items",
        "--receive", "role:office notes,items", "--write",   "role:office notes",
        "--receive", "role:manager items",      NULL};
    cloud_pid = start_cloud(th_fmt("%s/synccloud2.log", dir), rules2);
    wait_sql(db_of(1), "SELECT count(*) FROM items", SEL_ITEMS, "edge-b now has the items");
    wait_sql(db_of(2), "SELECT count(*) FROM notes", 0, "edge-c's notes are removed");
    TH_CHECK(th_sql_int(db_of(2), "SELECT count(*) FROM items") == SEL_ITEMS,
             "edge-c lost items it still receives");
    TH_CHECK(th_sql_int(db_of(1), "SELECT count(*) FROM notes") == SEL_NOTES,
             "edge-b lost notes");
    /* Writes the manager makes are still refused, and notes no longer reach it. */
    e = th_sql_try(db_of(1), "INSERT INTO notes(k, body) VALUES ('late', 'office')");
    TH_CHECK(e == NULL, "edge-b could not write a note: %s", e);
    wait_sql(th_fmt("%s/cloud.db", dir), "SELECT count(*) FROM notes WHERE k = 'late'", 1,
             "the late note reached the cloud");
    usleep(500 * 1000);
    TH_CHECK(th_sql_int(db_of(2), "SELECT count(*) FROM notes") == 0,
             "a note reached edge-c, which no longer receives notes");
    printf("selective: after the rules changed, edge-b pulled the items and edge-c dropped the "
           "notes\n");

    check_acl(broker_pid);

    for (int i = 0; i < 3; i++)
        th_stop(edge_pid[i], devices[i], th_fmt("%s/%s.log", dir, devices[i]), 1);
    th_stop(cloud_pid, "synccloud", th_fmt("%s/synccloud2.log", dir), 1);
    th_stop(broker_pid, "mosquitto", mlog, 0);
    printf("selective: OK\n");
    return 0;
}
