/* test_policies.c - every conflict policy on hand-made cases: batches go through the real
 * cloud applier and store exactly as synccloud runs them (validate, dedup, version check,
 * policy, commit, flush), and the test reads the acks and the stored rows back.
 *
 * The store is an SQLite file in a temp folder; with --pg it is a PostgreSQL database of a
 * throwaway server (th_pg_start), or the one of $SYNC_TEST_PG (a connection string; the test
 * empties its public schema before each case, so give it a database of its own).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloud/admin.h"
#include "cloud/apply.h"
#include "cloud/compact.h"
#include "cloud/config.h"
#include "cloud/outq.h"
#include "cloud/registry.h"
#include "cloud/resolve.h"
#include "cloud/rowcheck.h"
#include "cloud/store.h"
#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"
#include "sync/record.h"
#include "sync/schema.h"
#include "harness.h"

static int failures, checks;
static const char *pg; /* PostgreSQL connection string, or NULL: SQLite files */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* ---- a cloud on a temp store ---- */

typedef struct cloud {
    char dir[64];
    cloud_config cfg;
    sync_schema *schema;
    cloud_store *st;
    cloud_applier *ap;
    uint64_t seq[8]; /* next seq per device index */
} cloud;

static const char *const devices[] = {"dev-a", "dev-b", "dev-c", "mgr", "clerk", "pi"};

static void cloud_open(cloud *c, const char *const *policy_lines)
{
    char err[512];
    memset(c, 0, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "/tmp/policiesXXXXXX");
    if (!mkdtemp(c->dir)) {
        perror("mkdtemp");
        exit(1);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/schema.conf", c->dir);
    FILE *f = fopen(path, "w");
    fputs("version 1\ntable items\ncolumn id integer key\ncolumn a text\ncolumn b integer\n"
          "table forms owner pi\ncolumn id integer key\ncolumn v text\n",
          f);
    fclose(f);
    if (sync_schema_load(path, &c->schema, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "schema: %s\n", err);
        exit(1);
    }
    cloud_config_init(&c->cfg);
    cloud_config_set(&c->cfg, "tenant", "t", err, sizeof err);
    snprintf(path, sizeof path, "%s/cloud.db", c->dir);
    if (pg && th_pg_exec(pg, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public") != 0)
        exit(1); /* every case starts from an empty store, as with a new file */
    cloud_config_set(&c->cfg, "database", pg ? pg : path, err, sizeof err);
    cloud_config_set(&c->cfg, "sync_full", "false", err, sizeof err);
    cloud_config_set(&c->cfg, "role", "mgr manager", err, sizeof err);
    cloud_config_set(&c->cfg, "role", "clerk clerk", err, sizeof err);
    cloud_config_set(&c->cfg, "priority", "manager,clerk", err, sizeof err);
    for (int i = 0; policy_lines && policy_lines[i]; i++)
        if (cloud_config_set(&c->cfg, "policy", policy_lines[i], err, sizeof err) != SYNC_OK) {
            fprintf(stderr, "policy: %s\n", err);
            exit(1);
        }
    if (cloud_store_open(c->cfg.database, c->schema, 0, &c->st, err, sizeof err) != SYNC_OK ||
        cloud_applier_new(c->st, c->schema, &c->cfg, &c->ap, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "cloud: %s\n", err);
        exit(1);
    }
    for (int i = 0; i < 8; i++)
        c->seq[i] = 1000;
}

static void cloud_close(cloud *c)
{
    char path[160];
    cloud_applier_free(c->ap);
    cloud_store_close(c->st);
    sync_schema_free(c->schema);
    cloud_config_free(&c->cfg);
    static const char *const files[] = {"schema.conf", "cloud.db", "cloud.db-wal", "cloud.db-shm"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", c->dir, files[i]);
        unlink(path);
    }
    rmdir(c->dir);
}

/* ---- one change, sent as a one-record batch ---- */

typedef struct change {
    const char *table;
    int64_t id;
    sync_op op;
    uint64_t base;
    uint64_t hlc;
    const char *a; /* NULL: not set (update) / NULL value (insert) */
    int64_t b;     /* -1: not set */
} change;

typedef struct result {
    sync_result code;
    uint64_t version;
    int deleted;
    char a[64];
    int64_t b;
    char reason[256];
    int refused_batch;
} result;

static int take_result(void *ctx, const sync_ack_result *r)
{
    result *out = ctx;
    out->code = r->result;
    out->version = r->version;
    out->deleted = r->deleted;
    out->a[0] = '\0';
    out->b = -1;
    for (size_t i = 0; i < r->ncols; i++) {
        if (r->cols[i].name_len == 1 && r->cols[i].name[0] == 'a' && r->cols[i].v.type == SYNC_TEXT)
            snprintf(out->a, sizeof out->a, "%.*s", (int)r->cols[i].v.u.b.n,
                     (const char *)r->cols[i].v.u.b.p);
        if (r->cols[i].name_len == 1 && r->cols[i].name[0] == 'b' && r->cols[i].v.type == SYNC_INT)
            out->b = r->cols[i].v.u.i;
    }
    if (r->result == SYNC_R_REJECTED)
        snprintf(out->reason, sizeof out->reason, "%.*s", (int)r->reason_len, r->reason);
    return 0;
}

static int take_hdr(void *ctx, const sync_ack_hdr *h)
{
    result *out = ctx;
    out->refused_batch = h->status == SYNC_ACK_REJECTED;
    if (out->refused_batch)
        snprintf(out->reason, sizeof out->reason, "%.*s", (int)h->reason_len, h->reason);
    return 0;
}

/* Sends `ch` from device dev (index into devices) with a fresh seq (or `seq` if nonzero, to
 * resend), applies it in its own transaction, and returns the ack's result. */
static result send_seq(cloud *c, int dev, const change *ch, uint64_t seq)
{
    sync_record r;
    memset(&r, 0, sizeof r);
    r.table = ch->table;
    r.table_len = strlen(ch->table);
    r.key.type = SYNC_INT;
    r.key.u.i = ch->id;
    r.op = ch->op;
    r.base_version = ch->base;
    r.hlc = ch->hlc;
    r.seq = seq ? seq : ++c->seq[dev];
    if (ch->op != SYNC_OP_DELETE) {
        if (ch->a || ch->op == SYNC_OP_INSERT) {
            sync_colval *cv = &r.cols[r.ncols++];
            cv->name = strcmp(ch->table, "items") == 0 ? "a" : "v";
            cv->name_len = 1;
            cv->v.type = ch->a ? SYNC_TEXT : SYNC_NULL;
            if (ch->a) {
                cv->v.u.b.p = (const uint8_t *)ch->a;
                cv->v.u.b.n = strlen(ch->a);
            }
        }
        if (ch->b >= 0) {
            sync_colval *cv = &r.cols[r.ncols++];
            cv->name = "b";
            cv->name_len = 1;
            cv->v.type = SYNC_INT;
            cv->v.u.i = ch->b;
        }
    }
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    sync_batch_hdr h = {1, devices[dev], strlen(devices[dev]), r.seq, 1};
    sync_batch_encode_hdr(&b, &h);
    sync_record_encode(&b, &r, r.seq);
    result out;
    memset(&out, 0, sizeof out);
    out.code = (sync_result)-1;
    if (b.err) {
        fprintf(stderr, "encode failed\n");
        exit(1);
    }
    if (cloud_store_begin(c->st) != SYNC_OK ||
        cloud_applier_batch(c->ap, devices[dev], b.data, b.len) != SYNC_OK ||
        cloud_store_commit(c->st) != SYNC_OK) {
        fprintf(stderr, "apply failed: %s\n", cloud_store_errmsg(c->st));
        exit(1);
    }
    cloud_outq q;
    cloud_outq_init(&q);
    cloud_applier_flush(c->ap, &q);
    char ack_topic[128];
    snprintf(ack_topic, sizeof ack_topic, "sync/t/dev/%s/ack", devices[dev]);
    for (cloud_msg *m = q.head; m; m = m->next)
        if (strcmp(m->topic, ack_topic) == 0)
            sync_ack_decode(m->payload, m->len, NULL, take_hdr, take_result, &out, NULL, 0);
    cloud_outq_clear(&q);
    sync_cbuf_free(&b);
    return out;
}

static result send(cloud *c, int dev, change ch)
{
    return send_seq(c, dev, &ch, 0);
}

/* Reads a stored row of items through the store's own query. */
typedef struct stored {
    int exists, deleted;
    uint64_t version;
    char a[64];
    int64_t b;
    int64_t conflict;
    char origin[80];
} stored;

static stored get(cloud *c, const char *table, int64_t id)
{
    stored s;
    memset(&s, 0, sizeof s);
    s.b = -1;
    cloud_row row;
    sync_value key = {.type = SYNC_INT, .u.i = id};
    const sync_table *t = sync_schema_find(c->schema, table, strlen(table));
    if (cloud_store_row_get(c->st, t, &key, &row) != SYNC_OK)
        exit(1);
    s.exists = row.exists;
    s.deleted = row.deleted;
    s.version = row.version;
    s.conflict = row.conflict;
    snprintf(s.origin, sizeof s.origin, "%s", row.origin);
    if (row.vals[1].type == SYNC_TEXT)
        snprintf(s.a, sizeof s.a, "%.*s", (int)row.vals[1].u.b.n, (const char *)row.vals[1].u.b.p);
    if (t->ncols > 2 && row.vals[2].type == SYNC_INT)
        s.b = row.vals[2].u.i;
    return s;
}

/* Counts conflict log rows with this outcome (NULL: all) through a second connection. */
#include <sqlite3.h>
static int conflicts(cloud *c, const char *outcome)
{
    char path[128], sql[256];
    if (pg)
        return (int)th_pg_int(pg, "SELECT count(*) FROM _sync_conflicts%s%s%s",
                              outcome ? " WHERE outcome = '" : "", outcome ? outcome : "",
                              outcome ? "'" : "");
    snprintf(path, sizeof path, "%s/cloud.db", c->dir);
    sqlite3 *db;
    sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM _sync_conflicts%s%s%s",
             outcome ? " WHERE outcome = '" : "", outcome ? outcome : "", outcome ? "'" : "");
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

enum { A, B, C, MGR, CLERK, PI };
#define HLC(ms) ((uint64_t)(ms) << 16)

/* ---- the cases ---- */

static void test_lww(void)
{
    cloud c;
    cloud_open(&c, NULL);
    result r = send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    CHECK(r.code == SYNC_R_APPLIED && r.version == 1, "insert: code %d v%llu", r.code,
          (unsigned long long)r.version);
    r = send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "from-b", -1});
    CHECK(r.code == SYNC_R_APPLIED && r.version == 2, "clean update: code %d", r.code);
    /* A edits on version 1 with a later clock: a conflict that A wins. */
    r = send(&c, A, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(300), "from-a", -1});
    CHECK(r.code == SYNC_R_WON && r.version == 3, "later clock: code %d v%llu", r.code,
          (unsigned long long)r.version);
    CHECK(strcmp(get(&c, "items", 1).a, "from-a") == 0, "stored a = %s", get(&c, "items", 1).a);
    /* C edits on version 1 with an earlier clock: loses, and learns the winning row. */
    r = send(&c, C, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(150), "from-c", -1});
    CHECK(r.code == SYNC_R_LOST && r.version == 3 && strcmp(r.a, "from-a") == 0,
          "earlier clock: code %d a=%s", r.code, r.a);
    CHECK(strcmp(get(&c, "items", 1).a, "from-a") == 0, "loser not applied");
    /* The same device editing on top of its own unacknowledged change is not a conflict. */
    r = send(&c, A, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(50), "a-again", -1});
    CHECK(r.code == SYNC_R_APPLIED, "own chain: code %d", r.code);
    /* Equal clocks: the larger device id wins, whoever comes second. */
    r = send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(50), "tie-b", -1});
    CHECK(r.code == SYNC_R_WON, "tie goes to dev-b > dev-a: code %d", r.code);
    CHECK(conflicts(&c, NULL) == 3 && conflicts(&c, "client-wins") == 2 &&
              conflicts(&c, "server-wins") == 1,
          "conflict log: %d total", conflicts(&c, NULL));
    cloud_close(&c);

    /* A device whose wall clock is three hours behind. Without having seen B's edit its own
     * later edit carries an earlier clock and loses (that is what clocks can know); once it has
     * seen B's change (as a replica does, through the delta), its hybrid clock moves past B's
     * and its next edit wins, however slow its wall clock is. */
    cloud_open(&c, NULL);
    const uint64_t t0 = 1795000000000ull, three_hours = 3ull * 3600 * 1000;
    sync_hlc clock_b = {0}, clock_c = {0};
    uint64_t hb = sync_hlc_tick(&clock_b, t0);
    send(&c, A,
         (change){"items", 7, SYNC_OP_INSERT, 0, sync_hlc_tick(&clock_b, t0 - 1000), "x", 1});
    send(&c, B, (change){"items", 7, SYNC_OP_UPDATE, 1, hb + 10, "b", -1});
    r = send(&c, C,
             (change){"items", 7, SYNC_OP_UPDATE, 1,
                      sync_hlc_tick(&clock_c, t0 + 60000 - three_hours), "c-unaware", -1});
    CHECK(r.code == SYNC_R_LOST, "skewed device unaware of b: code %d", r.code);
    sync_hlc_observe(&clock_c, hb + 10);
    r = send(&c, C,
             (change){"items", 7, SYNC_OP_UPDATE, 2,
                      sync_hlc_tick(&clock_c, t0 + 120000 - three_hours), "c-aware", -1});
    CHECK(r.code == SYNC_R_APPLIED && strcmp(get(&c, "items", 7).a, "c-aware") == 0,
          "skewed device after seeing b: code %d", r.code);
    r = send(&c, A, (change){"items", 7, SYNC_OP_UPDATE, 2, hb + 5, "a-stale", -1});
    CHECK(r.code == SYNC_R_LOST, "an edit older than c's, on an old version, loses: code %d",
          r.code);
    cloud_close(&c);
}

static void test_server_wins(void)
{
    const char *const pol[] = {"items server-wins", NULL};
    cloud c;
    cloud_open(&c, pol);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "b", -1});
    result r = send(&c, C, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(900), "c", -1});
    CHECK(r.code == SYNC_R_LOST && strcmp(r.a, "b") == 0, "server keeps b: code %d a=%s", r.code,
          r.a);
    CHECK(conflicts(&c, "server-wins") == 1, "logged");
    cloud_close(&c);
}

static void test_priority(void)
{
    const char *const pol[] = {"items priority", NULL};
    cloud c;
    cloud_open(&c, pol);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    send(&c, MGR, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "manager", -1});
    /* The clerk's later edit on the old version loses to the manager's. */
    result r = send(&c, CLERK, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(900), "clerk", -1});
    CHECK(r.code == SYNC_R_LOST && strcmp(r.a, "manager") == 0, "clerk loses: code %d", r.code);
    send(&c, CLERK, (change){"items", 2, SYNC_OP_INSERT, 0, HLC(100), "c", 1});
    /* The manager's earlier edit on an old version still beats the clerk's state. */
    r = send(&c, MGR, (change){"items", 2, SYNC_OP_UPDATE, 0, HLC(50), "mgr", -1});
    CHECK(r.code == SYNC_R_WON && strcmp(get(&c, "items", 2).a, "mgr") == 0,
          "manager wins with an earlier clock: code %d", r.code);
    /* Equal ranks (two unranked devices) fall back to lww. */
    send(&c, A, (change){"items", 3, SYNC_OP_INSERT, 0, HLC(100), "a", 1});
    r = send(&c, B, (change){"items", 3, SYNC_OP_UPDATE, 0, HLC(50), "b", -1});
    CHECK(r.code == SYNC_R_LOST, "unranked: lww, earlier loses: code %d", r.code);
    cloud_close(&c);
}

static void test_merge(void)
{
    const char *const pol[] = {"items merge", NULL};
    cloud c;
    cloud_open(&c, pol);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "y", -1}); /* a, v2 */
    /* C changes b on version 1: disjoint from B's change, both apply. */
    result r = send(&c, C, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(150), NULL, 5});
    stored s = get(&c, "items", 1);
    CHECK(r.code == SYNC_R_MERGED && strcmp(r.a, "y") == 0 && r.b == 5,
          "disjoint: code %d a=%s b=%lld", r.code, r.a, (long long)r.b);
    CHECK(strcmp(s.a, "y") == 0 && s.b == 5 && s.version == 3, "merged row a=%s b=%lld v%llu", s.a,
          (long long)s.b, (unsigned long long)s.version);
    /* A changes a and b on version 1 with an early clock: a overlaps B (earlier: server keeps y)
     * and b overlaps C (earlier clock than C? C was 150, A is 120: keeps 5) -> nothing taken. */
    r = send(&c, A, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(120), "z", 9});
    CHECK(r.code == SYNC_R_LOST, "all overlapping and earlier: code %d", r.code);
    /* Overlapping with a later clock: taken. */
    r = send(&c, A, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(400), "w", -1});
    s = get(&c, "items", 1);
    CHECK(r.code == SYNC_R_MERGED && strcmp(s.a, "w") == 0 && s.b == 5,
          "later overlap: a=%s b=%lld", s.a, (long long)s.b);
    CHECK(conflicts(&c, "merged") == 2 && conflicts(&c, "server-wins") == 1, "log: merged %d",
          conflicts(&c, "merged"));
    cloud_close(&c);
}

static void test_manual(void)
{
    const char *const pol[] = {"items manual", NULL};
    cloud c;
    cloud_open(&c, pol);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "b", -1});
    result r = send(&c, C, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(900), "c", -1});
    stored s = get(&c, "items", 1);
    CHECK(r.code == SYNC_R_PENDING && strcmp(r.a, "b") == 0, "pending, server row: code %d a=%s",
          r.code, r.a);
    CHECK(strcmp(s.a, "b") == 0 && s.version == 2 && s.conflict > 0,
          "row keeps b at v2, flagged: a=%s conflict=%lld", s.a, (long long)s.conflict);
    CHECK(conflicts(&c, "pending") == 1, "logged as pending");
    cloud_close(&c);
}

static void test_tombstones(void)
{
    const char *const pol[] = {"forms lww", NULL};
    cloud c;
    cloud_open(&c, pol);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    result r = send(&c, A, (change){"items", 1, SYNC_OP_DELETE, 1, HLC(200), NULL, -1});
    CHECK(r.code == SYNC_R_APPLIED && r.version == 2, "delete: code %d v%llu", r.code,
          (unsigned long long)r.version);
    /* B updates the row it still has: the tombstone stands, B learns it. */
    r = send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(900), "b", -1});
    stored s = get(&c, "items", 1);
    CHECK(r.code == SYNC_R_LOST && r.deleted, "update of a deleted row: code %d deleted %d", r.code,
          r.deleted);
    CHECK(s.exists && s.deleted && s.version == 2, "still a tombstone at v2");
    /* A new insert under the same key brings a new row. */
    r = send(&c, C, (change){"items", 1, SYNC_OP_INSERT, 2, HLC(950), "new", 7});
    s = get(&c, "items", 1);
    CHECK(r.code == SYNC_R_APPLIED && !s.deleted && strcmp(s.a, "new") == 0 && s.version == 3,
          "re-insert: code %d", r.code);
    cloud_close(&c);

    const char *const res[] = {"items lww resurrect", NULL};
    cloud_open(&c, res);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    send(&c, A, (change){"items", 1, SYNC_OP_DELETE, 1, HLC(200), NULL, -1});
    r = send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(150), "early", -1});
    CHECK(r.code == SYNC_R_LOST, "resurrect table, earlier update still loses: code %d", r.code);
    r = send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(300), "later", -1});
    s = get(&c, "items", 1);
    CHECK(r.code == SYNC_R_WON && !s.deleted && strcmp(s.a, "later") == 0 && s.b == -1,
          "resurrect table, later update brings it back (a new row of its columns): code %d "
          "deleted %d",
          r.code, s.deleted);
    cloud_close(&c);
}

/* Compaction: old tombstones go, the horizon and version floor rise, and what comes later for
 * those keys behaves as if the tombstone were still there. */
static void test_compaction(void)
{
    cloud c;
    cloud_open(&c, NULL);
    const sync_table *t = sync_schema_find(c.schema, "items", 5);
    for (int64_t id = 1; id <= 3; id++)
        send(&c, A, (change){"items", id, SYNC_OP_INSERT, 0, HLC(100), "x", id});
    send(&c, A, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(110), "y", -1});
    send(&c, A, (change){"items", 1, SYNC_OP_DELETE, 2, HLC(120), NULL, -1}); /* v3 */
    send(&c, A, (change){"items", 2, SYNC_OP_DELETE, 1, HLC(130), NULL, -1}); /* v2 */
    uint64_t removed = 0;
    char err[256];
    /* A retention of an hour keeps today's tombstones. */
    CHECK(cloud_compact(c.st, c.schema, 3600, sync_wall_ms(), &removed, err, sizeof err) ==
                  SYNC_OK &&
              removed == 0 && cloud_store_compacted(c.st, t) == 0,
          "young tombstones kept: removed %llu", (unsigned long long)removed);
    /* An hour later they go; live rows stay. */
    CHECK(cloud_compact(c.st, c.schema, 3600, sync_wall_ms() + 3601000, &removed, err,
                        sizeof err) == SYNC_OK &&
              removed == 2,
          "two tombstones removed: %llu (%s)", (unsigned long long)removed, err);
    CHECK(!get(&c, "items", 1).exists && !get(&c, "items", 2).exists && get(&c, "items", 3).exists,
          "tombstones gone, live row kept");
    uint64_t head = 0;
    cloud_store_table_cseq(c.st, t, &head);
    CHECK(cloud_store_compacted(c.st, t) == head && cloud_store_version_floor(c.st, t) == 3,
          "horizon %llu (head %llu), floor %llu", (unsigned long long)cloud_store_compacted(c.st, t),
          (unsigned long long)head, (unsigned long long)cloud_store_version_floor(c.st, t));
    /* A late update made on the old row still meets a delete: no resurrection. */
    result r = send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 2, HLC(900), "late", -1});
    CHECK(r.code == SYNC_R_LOST && r.deleted && !get(&c, "items", 1).exists,
          "update of a compacted row loses and is told deleted: code %d deleted %d", r.code,
          r.deleted);
    /* A new row under a compacted key starts above every version the key had. */
    r = send(&c, C, (change){"items", 2, SYNC_OP_INSERT, 0, HLC(950), "again", 5});
    stored s = get(&c, "items", 2);
    CHECK(r.code == SYNC_R_APPLIED && s.exists && !s.deleted && s.version == 4,
          "re-insert after compaction: code %d v%llu", r.code, (unsigned long long)s.version);
    /* The horizon survives a restart of the store. */
    cloud_store_close(c.st);
    cloud_applier_free(c.ap);
    if (cloud_store_open(c.cfg.database, c.schema, 0, &c.st, err, sizeof err) != SYNC_OK ||
        cloud_applier_new(c.st, c.schema, &c.cfg, &c.ap, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "reopen: %s\n", err);
        exit(1);
    }
    CHECK(cloud_store_compacted(c.st, t) == head && cloud_store_version_floor(c.st, t) == 3,
          "horizon and floor kept across a restart");
    /* Retention 0 keeps tombstones forever. */
    send(&c, A, (change){"items", 3, SYNC_OP_DELETE, 1, HLC(990), NULL, -1});
    CHECK(cloud_compact(c.st, c.schema, 0, sync_wall_ms() + 86400000LL * 365, &removed, err,
                        sizeof err) == SYNC_OK &&
              removed == 0 && get(&c, "items", 3).deleted,
          "retention 0 compacts nothing");
    cloud_close(&c);
}

/* Flushes the applier after a resolution and returns the number of delta messages, of retained
 * row messages for `topic_row`, and of `resolved` events. */
static void flushed(cloud *c, int *deltas, int *rows, int *events, const char *topic_row)
{
    cloud_outq q;
    cloud_outq_init(&q);
    cloud_applier_flush(c->ap, &q);
    *deltas = *rows = *events = 0;
    for (cloud_msg *m = q.head; m; m = m->next) {
        *deltas += strcmp(m->topic, "sync/t/delta/items") == 0;
        *rows += strcmp(m->topic, topic_row) == 0;
        *events += strcmp(m->topic, "sync/t/events/resolved") == 0;
    }
    cloud_outq_clear(&q);
}

/* ---- several consumers on one PostgreSQL store ---- */

/* A second consumer on the store of c: its own connection and applier, as a second synccloud
 * process of a shared group would have. */
typedef struct consumer {
    cloud_store *st;
    cloud_applier *ap;
} consumer;

static void consumer_open(consumer *k, cloud *c)
{
    char err[512];
    if (cloud_store_open(c->cfg.database, c->schema, 0, &k->st, err, sizeof err) != SYNC_OK ||
        cloud_applier_new(k->st, c->schema, &c->cfg, &k->ap, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "second consumer: %s\n", err);
        exit(1);
    }
}

static void consumer_close(consumer *k)
{
    cloud_applier_free(k->ap);
    cloud_store_close(k->st);
}

static int delta_hdr(void *ctx, const sync_delta_hdr *h)
{
    *(uint64_t *)ctx = h->prev_cseq;
    return 0;
}

static int head_table(void *ctx, const sync_head_entry *e)
{
    if (e->table_len == 5 && memcmp(e->table, "items", 5) == 0)
        *(uint64_t *)ctx = e->cseq;
    return 0;
}

/* Applies one update of items `id` from device dev through consumer (st, ap) in a transaction
 * of its own, and flushes what it produced into q. */
static void apply_one(cloud *c, cloud_store *st, cloud_applier *ap, int dev, int64_t id,
                      const char *a, uint64_t hlc, cloud_outq *q)
{
    sync_record r;
    memset(&r, 0, sizeof r);
    r.table = "items";
    r.table_len = 5;
    r.key.type = SYNC_INT;
    r.key.u.i = id;
    r.op = SYNC_OP_UPDATE;
    r.hlc = hlc;
    r.seq = ++c->seq[dev];
    r.ncols = 1;
    r.cols[0].name = "a";
    r.cols[0].name_len = 1;
    r.cols[0].v.type = SYNC_TEXT;
    r.cols[0].v.u.b.p = (const uint8_t *)a;
    r.cols[0].v.u.b.n = strlen(a);
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    sync_batch_hdr h = {1, devices[dev], strlen(devices[dev]), r.seq, 1};
    sync_batch_encode_hdr(&b, &h);
    sync_record_encode(&b, &r, r.seq);
    if (b.err || cloud_store_begin(st) != SYNC_OK ||
        cloud_applier_batch(ap, devices[dev], b.data, b.len) != SYNC_OK ||
        cloud_store_commit(st) != SYNC_OK) {
        fprintf(stderr, "apply failed: %s\n", cloud_store_errmsg(st));
        exit(1);
    }
    sync_cbuf_free(&b);
    cloud_applier_flush(ap, q);
}

/* apply_one, returning the prev_cseq its delta on items names (UINT64_MAX: no delta). */
static uint64_t apply_via(cloud *c, cloud_store *st, cloud_applier *ap, int dev, int64_t id,
                          const char *a, uint64_t hlc)
{
    cloud_outq q;
    cloud_outq_init(&q);
    apply_one(c, st, ap, dev, id, a, hlc, &q);
    uint64_t prev = UINT64_MAX;
    for (cloud_msg *m = q.head; m; m = m->next)
        if (strcmp(m->topic, "sync/t/delta/items") == 0)
            sync_delta_decode(m->payload, m->len, NULL, delta_hdr, NULL, &prev, NULL, 0);
    cloud_outq_clear(&q);
    return prev;
}

static uint64_t head_of(cloud_applier *ap)
{
    cloud_outq q;
    cloud_outq_init(&q);
    uint64_t cseq = 0, top = 0;
    if (cloud_applier_head(ap, &q) == SYNC_OK && q.head)
        sync_head_decode(q.head->payload, q.head->len, &top, head_table, &cseq, NULL, 0);
    cloud_outq_clear(&q);
    return cseq;
}

/* Two consumers take turns: each delta must name the change the other committed just before
 * as prev_cseq (a replica that missed the other's delta then notices), and either consumer's
 * head must count the other's changes. */
static void test_two_consumers(void)
{
    cloud c;
    cloud_open(&c, NULL);
    consumer k;
    consumer_open(&k, &c);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(1000), "one", 1}); /* cseq 1 */
    CHECK(apply_via(&c, k.st, k.ap, B, 1, "two", HLC(2000)) == 1,
          "the second consumer's delta must follow the first's change (cseq 1)");
    CHECK(apply_via(&c, c.st, c.ap, A, 1, "three", HLC(3000)) == 2,
          "the first consumer's next delta must follow the second's change (cseq 2)");
    CHECK(apply_via(&c, k.st, k.ap, B, 1, "four", HLC(4000)) == 3, "and back again (cseq 3)");
    CHECK(head_of(c.ap) == 4 && head_of(k.ap) == 4, "head %llu / %llu, want 4 from both",
          (unsigned long long)head_of(c.ap), (unsigned long long)head_of(k.ap));
    stored s = get(&c, "items", 1);
    CHECK(s.version == 4 && strcmp(s.a, "four") == 0, "row: version %llu a '%s'",
          (unsigned long long)s.version, s.a);
    consumer_close(&k);
    cloud_close(&c);
}

/* apply_one, keeping the retained row message the flush queued (the caller frees it); NULL if
 * there was none. */
static cloud_msg *row_msg_via(cloud *c, cloud_store *st, cloud_applier *ap, int dev, int64_t id,
                              const char *a, uint64_t hlc)
{
    cloud_outq q;
    cloud_outq_init(&q);
    apply_one(c, st, ap, dev, id, a, hlc, &q);
    cloud_msg *m, *keep = NULL;
    while ((m = cloud_outq_pop(&q)) != NULL) {
        if (!keep && m->retain && strncmp(m->topic, "sync/t/rows/items/", 18) == 0) {
            m->next = NULL;
            keep = m;
        } else {
            free(m);
        }
    }
    return keep;
}

/* Version in a retained row message. */
static uint64_t row_version(const cloud_msg *m)
{
    static sync_change chg;
    const char *t;
    size_t tl;
    if (!m || sync_row_decode(m->payload, m->len, NULL, &chg, &t, &tl, NULL, 0) != SYNC_OK)
        return 0;
    return chg.version;
}

/* The retained row messages of two consumers can reach the broker in the wrong order; the
 * checker of the one whose state is older publishes the newer state once its own message is
 * delivered, and the other one publishes nothing more. */
static void test_rowcheck(void)
{
    cloud c;
    cloud_open(&c, NULL);
    consumer k;
    consumer_open(&k, &c);
    char err[256];
    cloud_rowcheck *rc_c = NULL, *rc_k = NULL;
    CHECK(cloud_rowcheck_new(c.st, c.schema, "t", c.ap, &rc_c, err, sizeof err) == SYNC_OK &&
              cloud_rowcheck_new(k.st, c.schema, "t", k.ap, &rc_k, err, sizeof err) == SYNC_OK,
          "rowcheck_new: %s", err);
    send(&c, A, (change){"items", 7, SYNC_OP_INSERT, 0, HLC(1000), "v1", 1});
    cloud_msg *old = row_msg_via(&c, c.st, c.ap, A, 7, "v2", HLC(2000));
    cloud_msg *newer = row_msg_via(&c, k.st, k.ap, B, 7, "v3", HLC(3000));
    CHECK(row_version(old) == 2 && row_version(newer) == 3, "row messages carry versions %llu, %llu",
          (unsigned long long)row_version(old), (unsigned long long)row_version(newer));
    /* Each consumer hands its message to the broker: delivered when the count reaches 5. */
    cloud_rowcheck_note(rc_c, old, 5, 100.0);
    cloud_rowcheck_note(rc_k, newer, 5, 100.0);
    cloud_outq q;
    cloud_outq_init(&q);
    CHECK(cloud_rowcheck_run(rc_c, 4, 1.0, &q) == 0 && q.n == 0 &&
              cloud_rowcheck_waiting(rc_c) == 1,
          "a row whose message is not delivered yet is not read");
    CHECK(cloud_rowcheck_run(rc_c, 5, 1.0, &q) == 1 && q.n == 1, "the older state's sender must "
          "publish the newer state (queued %zu)", q.n);
    CHECK(q.head && strcmp(q.head->topic, "sync/t/rows/items/7") == 0 && q.head->retain &&
              row_version(q.head) == 3,
          "republished: topic %s version %llu", q.head ? q.head->topic : "-",
          (unsigned long long)row_version(q.head));
    CHECK(cloud_rowcheck_waiting(rc_c) == 0 && cloud_rowcheck_republished(rc_c) == 1,
          "checked rows are forgotten");
    cloud_outq_clear(&q);
    CHECK(cloud_rowcheck_run(rc_k, 0, 100.0, &q) == 0 && q.n == 0,
          "the newest state's sender publishes nothing more (at its deadline)");
    /* Other retained messages (the head) are not rows. */
    cloud_applier_head(c.ap, &q);
    CHECK(q.n == 1, "head queued");
    cloud_rowcheck_note(rc_c, q.head, 0, 0.0);
    CHECK(cloud_rowcheck_waiting(rc_c) == 0, "the head message is not a row to check");
    cloud_outq_clear(&q);
    free(old);
    free(newer);
    cloud_rowcheck_free(rc_c);
    cloud_rowcheck_free(rc_k);
    consumer_close(&k);
    cloud_close(&c);
}

/* Two consumers apply to the same rows at the same time, each from its own thread and
 * connection, updates whose HLCs interleave: whatever order they are applied in, each row must
 * end with the update of the highest HLC, its version must count exactly the updates that were
 * applied (each one produced a delta), and the change sequence must count them too. */
#include <pthread.h>
#define TC_ROWS 5
#define TC_UPDATES 150 /* per consumer */

typedef struct tc_arg {
    cloud *c;
    cloud_store *st;
    cloud_applier *ap;
    int dev;
    int applied; /* updates that produced a delta (the others lost to a later HLC) */
    pthread_barrier_t *go; /* both start together */
} tc_arg;

static void *tc_run(void *p)
{
    tc_arg *t = p;
    pthread_barrier_wait(t->go);
    for (int i = 0; i < TC_UPDATES; i++) {
        char a[32];
        snprintf(a, sizeof a, "%s-%d", devices[t->dev], i);
        uint64_t prev = apply_via(t->c, t->st, t->ap, t->dev, 1 + i % TC_ROWS, a,
                                  HLC(1000000 + 2 * i + t->dev));
        t->applied += prev != UINT64_MAX;
    }
    return NULL;
}

static void test_concurrent_consumers(void)
{
    cloud c;
    cloud_open(&c, NULL);
    for (int id = 1; id <= TC_ROWS; id++)
        send(&c, C, (change){"items", id, SYNC_OP_INSERT, 0, HLC(1000), "start", 0});
    consumer k;
    consumer_open(&k, &c);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    tc_arg ta = {&c, c.st, c.ap, A, 0, &go}, tb = {&c, k.st, k.ap, B, 0, &go};
    pthread_t th;
    if (pthread_create(&th, NULL, tc_run, &tb) != 0) {
        perror("pthread_create");
        exit(1);
    }
    tc_run(&ta);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&go);
    int applied = ta.applied + tb.applied;
    printf("test_policies: concurrent consumers applied %d + %d of %d updates\n", ta.applied,
           tb.applied, 2 * TC_UPDATES);
    CHECK(applied >= TC_ROWS, "only %d updates applied", applied);
    for (int id = 1; id <= TC_ROWS; id++) {
        int last = TC_UPDATES - 1; /* the highest i with 1 + i % TC_ROWS == id */
        while (1 + last % TC_ROWS != id)
            last--;
        char want[32];
        snprintf(want, sizeof want, "%s-%d", devices[B], last); /* B's HLC is the higher */
        stored s = get(&c, "items", id);
        CHECK(strcmp(s.a, want) == 0, "row %d holds '%s', want '%s'", id, s.a, want);
    }
    long long versions = th_pg_int(pg, "SELECT sum(_version) FROM items");
    CHECK(versions == TC_ROWS + applied, "sum of versions %lld, want %d", versions,
          TC_ROWS + applied);
    long long cseq = th_pg_int(pg, "SELECT max(_cseq) FROM items");
    CHECK(cseq == TC_ROWS + applied, "newest cseq %lld, want %d", cseq, TC_ROWS + applied);
    CHECK(th_pg_int(pg, "SELECT cseq FROM _sync_state WHERE id = 1") == cseq,
          "the change counter is not the newest change");
    consumer_close(&k);
    cloud_close(&c);
}

/* Resolving pending (manual) conflicts by hand: each way of taking a side, and the refusals. */
static void test_resolve(void)
{
    const char *const pol[] = {"items manual", NULL};
    cloud c;
    cloud_open(&c, pol);
    char err[256];
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "b", -1});
    send(&c, C, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(900), "c", 9}); /* pending */
    int64_t id = get(&c, "items", 1).conflict;
    CHECK(id > 0, "row flagged");
    /* Bad input changes nothing. */
    sync_colval bad = {.name = "nope", .name_len = 4, .v = {.type = SYNC_INT}};
    cloud_store_begin(c.st);
    int rc = cloud_resolve(c.ap, c.st, c.schema, id, CLOUD_TAKE_VALUES, &bad, 1, "@admin", NULL,
                           err, sizeof err);
    cloud_store_commit(c.st);
    CHECK(rc == SYNC_ERR_SCHEMA && strstr(err, "no column 'nope'"), "unknown column: %d %s", rc,
          err);
    CHECK(get(&c, "items", 1).version == 2 && get(&c, "items", 1).conflict == id,
          "nothing written for bad input");
    cloud_store_begin(c.st);
    rc = cloud_resolve(c.ap, c.st, c.schema, 999, CLOUD_TAKE_SERVER, NULL, 0, "@admin", NULL, err,
                       sizeof err);
    cloud_store_commit(c.st);
    CHECK(rc == SYNC_ERR_NOTFOUND, "unknown conflict: %d", rc);
    /* Taking the writer's change: C's columns over the row, a new version, flag cleared. */
    uint64_t v = 0;
    cloud_store_begin(c.st);
    rc = cloud_resolve(c.ap, c.st, c.schema, id, CLOUD_TAKE_CLIENT, NULL, 0, "@admin", &v, err,
                       sizeof err);
    cloud_store_commit(c.st);
    stored s = get(&c, "items", 1);
    CHECK(rc == SYNC_OK && v == 3 && s.version == 3 && strcmp(s.a, "c") == 0 && s.b == 9 &&
              s.conflict == 0 && strcmp(s.origin, "@admin") == 0,
          "take client: rc %d v%llu a=%s b=%lld flag %lld (%s)", rc, (unsigned long long)s.version,
          s.a, (long long)s.b, (long long)s.conflict, err);
    int deltas, rows, events;
    flushed(&c, &deltas, &rows, &events, "sync/t/rows/items/1");
    CHECK(deltas == 1 && rows == 1 && events == 1,
          "published downstream: %d deltas, %d rows, %d events", deltas, rows, events);
    CHECK(conflicts(&c, "pending") == 1, "the log keeps the conflict");
    cloud_store_begin(c.st);
    rc = cloud_resolve(c.ap, c.st, c.schema, id, CLOUD_TAKE_SERVER, NULL, 0, "@admin", NULL, err,
                       sizeof err);
    cloud_store_commit(c.st);
    CHECK(rc == SYNC_ERR_STATE && strstr(err, "resolved already"), "twice: %d %s", rc, err);
    /* A later edit is fine again (the row is no longer flagged), a stale one pends again. */
    result r = send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 2, HLC(950), "stale", -1});
    CHECK(r.code == SYNC_R_PENDING, "stale edit pends again: %d", r.code);
    id = get(&c, "items", 1).conflict;
    /* Given values; the key cannot change; other columns stay. */
    sync_colval keyset = {.name = "id", .name_len = 2, .v = {.type = SYNC_INT, .u.i = 5}};
    cloud_store_begin(c.st);
    rc = cloud_resolve(c.ap, c.st, c.schema, id, CLOUD_TAKE_VALUES, &keyset, 1, "@admin", NULL,
                       err, sizeof err);
    cloud_store_commit(c.st);
    CHECK(rc == SYNC_ERR_SCHEMA, "key column refused: %d", rc);
    sync_colval set = {.name = "a", .name_len = 1,
                       .v = {.type = SYNC_TEXT, .u.b = {(const uint8_t *)"agreed", 6}}};
    cloud_store_begin(c.st);
    rc = cloud_resolve(c.ap, c.st, c.schema, id, CLOUD_TAKE_VALUES, &set, 1, "@admin", &v, err,
                       sizeof err);
    cloud_store_commit(c.st);
    s = get(&c, "items", 1);
    CHECK(rc == SYNC_OK && s.version == 4 && strcmp(s.a, "agreed") == 0 && s.b == 9 &&
              s.conflict == 0,
          "take values: rc %d v%llu a=%s b=%lld (%s)", rc, (unsigned long long)s.version, s.a,
          (long long)s.b, err);
    flushed(&c, &deltas, &rows, &events, "sync/t/rows/items/1");
    /* A conflict settled by a policy is not for a person. */
    cloud_close(&c);
    cloud_open(&c, NULL);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "b", -1});
    send(&c, C, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(900), "c", -1}); /* lww: client-wins */
    cloud_store_begin(c.st);
    rc = cloud_resolve(c.ap, c.st, c.schema, 1, CLOUD_TAKE_SERVER, NULL, 0, "@admin", NULL, err,
                       sizeof err);
    cloud_store_commit(c.st);
    CHECK(rc == SYNC_ERR_STATE && strstr(err, "policy"), "settled by lww: %d %s", rc, err);
    cloud_close(&c);
}

/* The device registry: only active devices of the tenant get batches applied; the others are
 * dropped without an ack, and their batch applies once they are active again. */
static void test_registry(void)
{
    cloud c;
    cloud_open(&c, NULL);
    char path[160], err[256];
    snprintf(path, sizeof path, "%s/registry.db", c.dir);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db,
                 "CREATE TABLE devices(device TEXT PRIMARY KEY, tenant TEXT NOT NULL, status TEXT "
                 "NOT NULL);"
                 "INSERT INTO devices VALUES ('dev-a', 't', 'active'), ('dev-b', 't', "
                 "'suspended'), ('dev-c', 'other', 'active');",
                 NULL, NULL, NULL);
    cloud_registry *reg;
    if (cloud_registry_open(path, &reg, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "registry: %s\n", err);
        exit(1);
    }
    cloud_applier_set_registry(c.ap, reg);
    result r = send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "a", 1});
    CHECK(r.code == SYNC_R_APPLIED, "active device applied: %d", r.code);
    r = send(&c, B, (change){"items", 2, SYNC_OP_INSERT, 0, HLC(100), "b", 1});
    CHECK((int)r.code == -1 && !get(&c, "items", 2).exists, "suspended: no ack, nothing applied");
    r = send(&c, C, (change){"items", 3, SYNC_OP_INSERT, 0, HLC(100), "c", 1});
    CHECK((int)r.code == -1 && !get(&c, "items", 3).exists, "other tenant: no ack, not applied");
    r = send(&c, MGR, (change){"items", 4, SYNC_OP_INSERT, 0, HLC(100), "m", 1});
    CHECK((int)r.code == -1 && !get(&c, "items", 4).exists, "unregistered: no ack, not applied");
    cloud_stats st;
    cloud_applier_stats(c.ap, &st);
    CHECK(st.unregistered == 3, "counted: %llu", (unsigned long long)st.unregistered);
    /* Resumed: the same batch (same seq), sent again, is applied. */
    sqlite3_exec(db, "UPDATE devices SET status = 'active' WHERE device = 'dev-b'", NULL, NULL,
                 NULL);
    r = send_seq(&c, B, &(change){"items", 2, SYNC_OP_INSERT, 0, HLC(100), "b", 1}, c.seq[B]);
    CHECK(r.code == SYNC_R_APPLIED && get(&c, "items", 2).exists, "resumed: applied (%d)", r.code);
    sqlite3_close(db);
    cloud_applier_set_registry(c.ap, NULL);
    cloud_registry_close(reg);
    unlink(path);
    cloud_close(&c);
}

/* Sends an admin request (a CBOR map already encoded in b) and returns the answer's bytes in
 * out (caller frees) plus how many other messages (the published change) came with it. */
static size_t admin_call(cloud_admin *ad, const sync_cbuf *b, const char *resp, uint8_t **out,
                         int *others)
{
    sync_mqtt_msg m;
    memset(&m, 0, sizeof m);
    m.topic = "sync/t/admin/req";
    m.payload = b->data;
    m.len = b->len;
    m.response_topic = (char *)(uintptr_t)resp;
    uint8_t corr[2] = {7, 9};
    m.corr = corr;
    m.corr_len = 2;
    cloud_outq q;
    cloud_outq_init(&q);
    char err[256];
    *out = NULL;
    *others = 0;
    size_t n = 0;
    if (cloud_admin_handle(ad, &m, &q, err, sizeof err) != SYNC_OK) {
        cloud_outq_clear(&q);
        return 0;
    }
    for (cloud_msg *x = q.head; x; x = x->next) {
        if (strcmp(x->topic, resp) == 0 && x->corr_len == 2 && !*out) {
            *out = malloc(x->len);
            memcpy(*out, x->payload, x->len);
            n = x->len;
        } else {
            (*others)++;
        }
    }
    cloud_outq_clear(&q);
    return n;
}

/* Finds text `needle` inside CBOR bytes (answers are small; enough to check their content). */
static int has(const uint8_t *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, needle, k) == 0)
            return 1;
    return 0;
}

/* The admin request path synccloud serves on sync/TENANT/admin/req. */
static void test_admin(void)
{
    const char *const pol[] = {"items manual", NULL};
    cloud c;
    cloud_open(&c, pol);
    cloud_admin *ad;
    char err[256];
    if (cloud_admin_new(c.st, c.ap, c.schema, &c.cfg, &ad, err, sizeof err) != SYNC_OK)
        exit(1);
    send(&c, A, (change){"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1});
    send(&c, B, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "b", -1});
    send(&c, C, (change){"items", 1, SYNC_OP_UPDATE, 1, HLC(900), "from-c", -1});
    int64_t id = get(&c, "items", 1).conflict;
    const char *resp = "sync/t/admin/resp/ctl1";
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    uint8_t *out;
    int others;
    /* List: the pending conflict with both sides. */
    sync_cbor_put_map(&b, 1);
    sync_cbor_put_cstr(&b, "op");
    sync_cbor_put_cstr(&b, "conflicts");
    size_t n = admin_call(ad, &b, resp, &out, &others);
    CHECK(n > 0 && has(out, n, "conflicts") && has(out, n, "from-c") && has(out, n, "pending") &&
              has(out, n, "dev-c") && others == 0,
          "conflicts listed (%zu bytes)", n);
    free(out);
    /* Resolve with given values, sent as the request carries them. */
    sync_cbuf_reset(&b);
    sync_cbor_put_map(&b, 5);
    sync_cbor_put_cstr(&b, "op");
    sync_cbor_put_cstr(&b, "resolve");
    sync_cbor_put_cstr(&b, "id");
    sync_cbor_put_uint(&b, (uint64_t)id);
    sync_cbor_put_cstr(&b, "take");
    sync_cbor_put_cstr(&b, "values");
    sync_cbor_put_cstr(&b, "values");
    sync_cbor_put_map(&b, 1);
    sync_cbor_put_cstr(&b, "a");
    sync_cbor_put_cstr(&b, "settled");
    sync_cbor_put_cstr(&b, "by");
    sync_cbor_put_cstr(&b, "alice");
    n = admin_call(ad, &b, resp, &out, &others);
    stored s = get(&c, "items", 1);
    CHECK(n > 0 && has(out, n, "version") && !has(out, n, "error") && strcmp(s.a, "settled") == 0 &&
              strcmp(s.origin, "@alice") == 0 && others >= 2,
          "resolved through the request: a=%s origin=%s, %d messages published", s.a, s.origin,
          others);
    free(out);
    /* Again: refused with the reason in the answer. */
    n = admin_call(ad, &b, resp, &out, &others);
    CHECK(n > 0 && has(out, n, "resolved already") && others == 0, "second resolve refused");
    free(out);
    /* Garbage and unknown ops get an answer with the error; a response topic elsewhere, none. */
    sync_cbuf_reset(&b);
    sync_cbor_put_uint(&b, 5);
    n = admin_call(ad, &b, resp, &out, &others);
    CHECK(n > 0 && has(out, n, "error"), "garbage answered with an error");
    free(out);
    sync_cbuf_reset(&b);
    sync_cbor_put_map(&b, 1);
    sync_cbor_put_cstr(&b, "op");
    sync_cbor_put_cstr(&b, "drop-tables");
    n = admin_call(ad, &b, resp, &out, &others);
    CHECK(n > 0 && has(out, n, "unknown op"), "unknown op refused");
    free(out);
    n = admin_call(ad, &b, "sync/t/dev/dev-a/ack", &out, &others);
    CHECK(n == 0 && out == NULL && others == 0, "no answer aimed at a device's topic");
    sync_cbuf_free(&b);
    cloud_admin_free(ad);
    cloud_close(&c);
}

static void test_master_mode(void)
{
    cloud c;
    cloud_open(&c, NULL);
    result r = send(&c, A, (change){"forms", 1, SYNC_OP_INSERT, 0, HLC(100), "from-a", -1});
    CHECK(r.code == SYNC_R_REJECTED && strstr(r.reason, "owned by device 'pi'"),
          "non-owner refused: code %d reason '%s'", r.code, r.reason);
    CHECK(!get(&c, "forms", 1).exists, "nothing stored");
    r = send(&c, PI, (change){"forms", 1, SYNC_OP_INSERT, 0, HLC(100), "from-pi", -1});
    CHECK(r.code == SYNC_R_APPLIED && strcmp(get(&c, "forms", 1).a, "from-pi") == 0,
          "owner applies: code %d", r.code);
    cloud_close(&c);
}

static void test_duplicates(void)
{
    cloud c;
    cloud_open(&c, NULL);
    change ch = {"items", 1, SYNC_OP_INSERT, 0, HLC(100), "x", 1};
    result r = send_seq(&c, A, &ch, 5000);
    CHECK(r.code == SYNC_R_APPLIED, "first: code %d", r.code);
    change ch2 = {"items", 1, SYNC_OP_UPDATE, 1, HLC(200), "changed", -1};
    r = send_seq(&c, A, &ch2, 5000); /* the same seq again, even with other content */
    CHECK(r.code == SYNC_R_DUPLICATE && strcmp(get(&c, "items", 1).a, "x") == 0,
          "redelivery is acked, not applied: code %d", r.code);
    cloud_close(&c);
}

int main(int argc, char **argv)
{
    sync_log_setup("test_policies", SYNC_LOG_ERR, 0);
    if (argc > 1 && strcmp(argv[1], "--pg") == 0) {
        pg = getenv("SYNC_TEST_PG");
        if (!pg || !*pg)
            pg = th_pg_start();
        printf("test_policies: store on PostgreSQL (%s)\n", pg);
    }
    test_lww();
    test_server_wins();
    test_priority();
    test_merge();
    test_manual();
    test_tombstones();
    test_compaction();
    test_resolve();
    test_registry();
    test_admin();
    test_master_mode();
    test_duplicates();
    if (pg) {
        test_two_consumers();
        test_rowcheck();
        test_concurrent_consumers();
    }
    th_pg_stop();
    if (failures) {
        fprintf(stderr, "test_policies: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_policies: all %d checks passed\n", checks);
    return 0;
}
