/* test_parts.c - syncedge's side of partitions (docs/protocol.md, "Partitions"), driven without
 * a broker: the edge library on a real SQLite file, policy messages, deltas and pages made with
 * the shared codec.
 *
 *   - a policy with partitions is stored (and survives a reopen); a malformed one is refused
 *     and the previous one stays;
 *   - the application's writes outside the partitions the device may write are refused by the
 *     triggers with the protocol's message, writes inside are captured;
 *   - a partition's delta advances that stream's cursor, the whole-table delta and other
 *     partitions' are ignored; a leave removes the row, a change of the leave's version after
 *     it is applied, an older one is not;
 *   - a partition's full resync sweeps that partition only, keeping rows with changes waiting;
 *   - a partition no longer received loses its rows (not those with changes waiting), its
 *     versions and its cursor; whole <-> partitions switch streams.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge/config.h"
#include "edge/edgedb.h"
#include "edge/policy.h"
#include "edge/pull.h"
#include "edge/replica.h"
#include "sync/err.h"
#include "sync/log.h"
#include "sync/record.h"
#include "sync/schema.h"
#include "sync/topic.h"
#include "unitcheck.h"

static char db_path[1024], schema_path[1024];
static sync_schema *schema;
static edge_config cfg;
static edge_db db;
static edge_replica *rep;
static edge_pull *pull;

static const char *const POLICY1 =
    "{\"device\":\"till-12\",\"receive\":[\"items\",\"sales\",\"regions\"],"
    "\"write\":[\"items\",\"sales\"],\"partitions\":{\"sales\":{\"column\":\"store_id\","
    "\"receive\":[12,13],\"write\":[12]},\"regions\":{\"receive\":[\"north\",\"it's\"],"
    "\"column\":\"region\"}},\"ts\":1}";

static void open_all(void)
{
    char err[512] = "";
    if (edge_db_open(&db, &cfg, schema, err, sizeof err) != SYNC_OK ||
        edge_replica_new(&db, &rep, err, sizeof err) != SYNC_OK ||
        edge_pull_new(&db, rep, &cfg, &pull, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "test_parts: opening: %s\n", err);
        exit(1);
    }
    edge_replica_set_pull(rep, pull);
}

static void close_all(void)
{
    edge_pull_free(pull);
    edge_replica_free(rep);
    edge_db_close(&db);
    pull = NULL;
    rep = NULL;
}

static long long q_int(const char *sql)
{
    sqlite3_stmt *s;
    long long v = -999;
    if (sqlite3_prepare_v2(db.db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    else
        fprintf(stderr, "test_parts: %s: %s\n", sql, sqlite3_errmsg(db.db));
    sqlite3_finalize(s);
    return v;
}

/* A policy message in its own transaction, as syncedge handles it. */
static int policy(const char *json, char *err, size_t errlen)
{
    if (edge_db_begin(&db, 1) != SYNC_OK)
        return SYNC_ERR_DB;
    int rc = edge_policy_on_message(&db, pull, json, strlen(json), err, errlen);
    if (rc == SYNC_ERR_DB || edge_db_commit(&db) != SYNC_OK) {
        edge_db_rollback(&db);
        edge_db_load_policy(&db, err, errlen);
        edge_pull_reload(pull);
    }
    return rc;
}

/* Runs sql as the application would, on a connection of its own; the error message (or "")
 * goes to msg. */
static int app(const char *sql, char *msg, size_t n)
{
    sqlite3 *a;
    char *em = NULL;
    if (sqlite3_open(db_path, &a) != SQLITE_OK)
        return SQLITE_ERROR;
    sqlite3_busy_timeout(a, 5000);
    int rc = sqlite3_exec(a, sql, NULL, NULL, &em);
    snprintf(msg, n, "%s", em ? em : "");
    sqlite3_free(em);
    sqlite3_close(a);
    return rc;
}

/* ---- deltas and pages ---- */

typedef struct chg {
    int64_t key;
    const char *tkey; /* text key (regions), else NULL */
    sync_op op;
    uint64_t version, cseq;
    int64_t store;      /* sales.store_id of an insert */
    const char *region; /* regions.region of an insert */
} chg;

static void put_change(sync_cbuf *b, const char *table, const chg *c)
{
    sync_change x;
    memset(&x, 0, sizeof x);
    if (c->tkey) {
        x.key.type = SYNC_TEXT;
        x.key.u.b.p = (const uint8_t *)c->tkey;
        x.key.u.b.n = strlen(c->tkey);
    } else {
        x.key.type = SYNC_INT;
        x.key.u.i = c->key;
    }
    x.op = c->op;
    x.version = c->version;
    x.cseq = c->cseq;
    x.hlc = 1000 + c->cseq;
    x.origin = "office-1";
    x.origin_len = strlen(x.origin);
    if (c->op == SYNC_OP_INSERT && strcmp(table, "sales") == 0) {
        x.ncols = 3;
        x.cols[0].name = "id";
        x.cols[0].v.type = SYNC_INT;
        x.cols[0].v.u.i = c->key;
        x.cols[1].name = "store_id";
        x.cols[1].v.type = SYNC_INT;
        x.cols[1].v.u.i = c->store;
        x.cols[2].name = "amount";
        x.cols[2].v.type = SYNC_INT;
        x.cols[2].v.u.i = 7;
    } else if (c->op == SYNC_OP_INSERT) {
        x.ncols = 2;
        x.cols[0].name = "code";
        x.cols[0].v = x.key;
        x.cols[1].name = "region";
        x.cols[1].v.type = SYNC_TEXT;
        x.cols[1].v.u.b.p = (const uint8_t *)c->region;
        x.cols[1].v.u.b.n = strlen(c->region);
    }
    for (size_t i = 0; i < x.ncols; i++)
        x.cols[i].name_len = strlen(x.cols[i].name);
    sync_change_encode(b, &x);
}

/* Applies a delta of `table` on stream `stream` in a replica transaction. */
static int delta(const char *stream, const char *table, uint64_t prev, const chg *c, int n)
{
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    sync_delta_hdr h = {table, strlen(table), prev, (size_t)n};
    sync_delta_encode_hdr(&b, &h);
    for (int i = 0; i < n; i++)
        put_change(&b, table, &c[i]);
    char err[512] = "";
    int rc = b.err;
    if (rc == SYNC_OK && (rc = edge_db_begin(&db, 1)) == SYNC_OK) {
        rc = edge_replica_apply_stream(rep, stream, b.data, b.len, err, sizeof err);
        if (rc == SYNC_OK)
            rc = edge_db_commit(&db);
        else
            edge_db_rollback(&db);
    }
    if (rc != SYNC_OK)
        fprintf(stderr, "test_parts: delta on %s: %s (%s)\n", stream, sync_strerror(rc), err);
    sync_cbuf_free(&b);
    return rc;
}

static uint64_t cursor_of(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce((SELECT cseq FROM _sync_cursor WHERE tbl = '%s'), -1)", name);
    return (uint64_t)q_int(sql);
}

static int has_row(const char *table, long long id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE id = %lld", table, id);
    return (int)q_int(sql);
}

/* The pulls edge_pull_next asks for: answers every one that is not for `want` ("sales/12")
 * with an empty last page, and returns the first for `want` decoded in *req (its correlation in
 * corr), or 0 when none comes. */
static int next_pull(const char *want, sync_pull *req, uint8_t corr[8], char part[SYNC_TOPIC_MAX])
{
    for (int round = 0; round < 50; round++) {
        edge_pull_req r;
        if (edge_pull_next(pull, &r) != 1)
            return 0;
        char err[256];
        if (sync_pull_decode(r.payload, r.len, req, err, sizeof err) != SYNC_OK) {
            fprintf(stderr, "test_parts: a pull that does not decode: %s\n", err);
            return 0;
        }
        memcpy(corr, r.corr, 8);
        char name[SYNC_TOPIC_MAX] = "";
        int w = snprintf(name, sizeof name, "%.*s", (int)req->table_len, req->table);
        if (req->has_part) {
            name[w++] = '/';
            sync_topic_level(name + w, sizeof name - (size_t)w, &req->part);
        }
        memcpy(part, name, sizeof name);
        if (strcmp(name, want) == 0)
            return 1;
        /* someone else's: an empty last page */
        sync_cbuf b;
        sync_cbuf_init(&b, 0);
        sync_page_hdr h = {req->table, req->table_len, req->after, req->after, 1, 0, 0};
        sync_page_encode_hdr(&b, &h);
        sync_mqtt_msg m;
        memset(&m, 0, sizeof m);
        m.payload = b.data;
        m.len = b.len;
        m.corr = corr;
        m.corr_len = 8;
        edge_db_begin(&db, 1);
        if (edge_pull_on_page(pull, &m, err, sizeof err) != SYNC_OK)
            fprintf(stderr, "test_parts: page: %s\n", err);
        edge_db_commit(&db);
        sync_cbuf_free(&b);
    }
    return 0;
}

static int page(const char *table, uint64_t after, uint64_t next, const uint8_t corr[8],
                const chg *c, int n)
{
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    sync_page_hdr h = {table, strlen(table), after, next, 1, 0, (size_t)n};
    sync_page_encode_hdr(&b, &h);
    for (int i = 0; i < n; i++)
        put_change(&b, table, &c[i]);
    sync_mqtt_msg m;
    memset(&m, 0, sizeof m);
    m.payload = b.data;
    m.len = b.len;
    m.corr = (uint8_t *)corr;
    m.corr_len = 8;
    char err[256] = "";
    edge_db_begin(&db, 1);
    int rc = edge_pull_on_page(pull, &m, err, sizeof err);
    if (rc == SYNC_OK)
        rc = edge_db_commit(&db);
    else
        edge_db_rollback(&db);
    if (rc != SYNC_OK)
        fprintf(stderr, "test_parts: page: %s\n", err);
    sync_cbuf_free(&b);
    return rc;
}

static int stream_listed(const char *want)
{
    for (int i = 0; i < edge_pull_nstreams(pull); i++) {
        const char *name;
        uint64_t c, h;
        if (edge_pull_stream_at(pull, i, &name, &c, &h) && strcmp(name, want) == 0)
            return 1;
    }
    return 0;
}

static const sync_table *T(const char *name)
{
    return edge_db_table(&db, name, strlen(name));
}

/* ---- the tests ---- */

static void test_policy_and_writes(void)
{
    char err[512] = "", msg[512];
    CHECK_RC(policy(POLICY1, err, sizeof err), SYNC_OK, err);
    int s = edge_db_slot(&db, T("sales"));
    CHECK(edge_db_recv_mode(&db, s) == EDGE_RECV_PARTS);
    CHECK(db.parts[s].col == 1 && db.parts[s].nrecv == 2 && db.parts[s].nwr == 1 &&
          db.parts[s].write_limited);
    CHECK(edge_db_recv_mode(&db, edge_db_slot(&db, T("items"))) == EDGE_RECV_WHOLE);
    CHECK(q_int("SELECT count(*) FROM _sync_policy WHERE tbl = 'sales' AND pcol = 'store_id' AND "
                "precv = 1 AND pwr = 1") == 1);
    CHECK(q_int("SELECT count(*) FROM _sync_policy_part WHERE tbl = 'sales'") == 3);
    CHECK(q_int("SELECT count(*) FROM _sync_policy_part WHERE tbl = 'regions' AND dir = 0 AND "
                "val = 'it''s'") == 1);

    /* Writes: inside the partition captured, outside refused with the protocol's message. */
    long long before = q_int("SELECT count(*) FROM _sync_outbox");
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (1, 12, 5)", msg, sizeof msg) ==
          SQLITE_OK);
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (2, 13, 5)", msg, sizeof msg) ==
          SQLITE_CONSTRAINT);
    CHECK_STR(msg, "row of table sales with store_id = 13 is outside the partitions device "
                   "till-12 may write (store_id = 12)");
    /* A value the device knows nothing of: RAISE takes a literal only (see capture.c). */
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (3, 14, 5)", msg, sizeof msg) ==
          SQLITE_CONSTRAINT);
    CHECK_STR(msg, "row of table sales is outside the partitions device till-12 may write "
                   "(store_id = 12)");
    CHECK(app("UPDATE sales SET store_id = 13 WHERE id = 1", msg, sizeof msg) == SQLITE_CONSTRAINT);
    CHECK_STR(msg, "row of table sales with store_id = 13 is outside the partitions device "
                   "till-12 may write (store_id = 12)");
    CHECK(app("UPDATE sales SET amount = 6 WHERE id = 1", msg, sizeof msg) == SQLITE_OK);
    CHECK(q_int("SELECT count(*) FROM _sync_outbox") == before + 2);

    /* A row of store 13 from the cloud: neither updated nor deleted by the application. */
    chg c13 = {20, NULL, SYNC_OP_INSERT, 1, 102, 13, NULL};
    CHECK(delta("sales/13", "sales", 0, &c13, 1) == SYNC_OK);
    CHECK(has_row("sales", 20) == 1);
    CHECK(app("UPDATE sales SET amount = 1 WHERE id = 20", msg, sizeof msg) == SQLITE_CONSTRAINT);
    CHECK_STR(msg, "row of table sales with store_id = 13 is outside the partitions device "
                   "till-12 may write (store_id = 12)");
    CHECK(app("DELETE FROM sales WHERE id = 20", msg, sizeof msg) == SQLITE_CONSTRAINT);
    CHECK_STR(msg, "row of table sales with store_id = 13 is outside the partitions device "
                   "till-12 may write (store_id = 12)");
    CHECK(app("UPDATE sales SET store_id = 12 WHERE id = 20", msg, sizeof msg) ==
          SQLITE_CONSTRAINT);
    CHECK(has_row("sales", 20) == 1);
    CHECK(q_int("SELECT count(*) FROM _sync_outbox") == before + 2);
    /* Other tables as before: items writable, regions read-only. */
    CHECK(app("INSERT INTO items(id, name) VALUES (1, 'a')", msg, sizeof msg) == SQLITE_OK);
    CHECK(app("INSERT INTO regions(code, region) VALUES ('x', 'north')", msg, sizeof msg) ==
          SQLITE_CONSTRAINT);
    CHECK_HAS(msg, "table regions is read-only on device till-12");
}

static void test_streams_and_leaves(void)
{
    const sync_table *sales = T("sales");
    CHECK(edge_pull_find(pull, sales, "12") >= 0);
    CHECK(edge_pull_find(pull, sales, "13") >= 0);
    CHECK(edge_pull_find(pull, sales, "14") < 0);
    CHECK(edge_pull_find(pull, sales, NULL) < 0);
    CHECK(edge_pull_find(pull, T("items"), NULL) >= 0);
    CHECK(edge_pull_find(pull, T("regions"), "it%27s") >= 0);
    CHECK(stream_listed("sales/12") && stream_listed("sales/13") && stream_listed("items"));
    CHECK(!stream_listed("sales"));

    /* A partition's delta: applied, its stream's cursor moves. */
    chg in12 = {10, NULL, SYNC_OP_INSERT, 1, 100, 12, NULL};
    CHECK(delta("sales/12", "sales", 0, &in12, 1) == SYNC_OK);
    CHECK(has_row("sales", 10) == 1);
    CHECK(cursor_of("sales/12") == 100);
    CHECK(cursor_of("sales/13") == 102);
    /* The whole-table delta of a table received by partitions, another partition's, and a
     * delta whose topic names another table: ignored. */
    chg w = {11, NULL, SYNC_OP_INSERT, 1, 101, 12, NULL};
    CHECK(delta("sales", "sales", 0, &w, 1) == SYNC_OK);
    CHECK(delta("sales/14", "sales", 0, &w, 1) == SYNC_OK);
    CHECK(delta("items/12", "sales", 0, &w, 1) == SYNC_OK);
    CHECK(has_row("sales", 11) == 0);
    CHECK(cursor_of("sales") == 0 || cursor_of("sales") == (uint64_t)-1);
    CHECK(cursor_of("sales/14") == (uint64_t)-1);

    /* Leave at 2, then the move into 13 with the same version: applied. */
    chg leave10 = {10, NULL, SYNC_OP_LEAVE, 2, 103, 0, NULL};
    CHECK(delta("sales/12", "sales", 100, &leave10, 1) == SYNC_OK);
    CHECK(has_row("sales", 10) == 0);
    CHECK(q_int("SELECT version * 10 + gone FROM _sync_rows WHERE tbl = 'sales' AND pk = 10") ==
          21);
    CHECK(cursor_of("sales/12") == 103);
    chg move10 = {10, NULL, SYNC_OP_INSERT, 2, 103, 13, NULL};
    CHECK(delta("sales/13", "sales", 102, &move10, 1) == SYNC_OK);
    CHECK(q_int("SELECT store_id FROM sales WHERE id = 10") == 13);
    CHECK(q_int("SELECT version * 10 + gone FROM _sync_rows WHERE tbl = 'sales' AND pk = 10") ==
          20);
    CHECK(cursor_of("sales/13") == 103);

    /* Leave at 5; a change older than the leave that comes late is not applied, one of its
     * version is. */
    chg r21[] = {{21, NULL, SYNC_OP_INSERT, 3, 104, 12, NULL},
                 {21, NULL, SYNC_OP_LEAVE, 5, 106, 0, NULL}};
    CHECK(delta("sales/12", "sales", 103, r21, 2) == SYNC_OK);
    CHECK(has_row("sales", 21) == 0);
    chg old21 = {21, NULL, SYNC_OP_INSERT, 4, 105, 13, NULL};
    CHECK(delta("sales/13", "sales", 103, &old21, 1) == SYNC_OK);
    CHECK(has_row("sales", 21) == 0);
    chg new21 = {21, NULL, SYNC_OP_INSERT, 5, 106, 13, NULL};
    CHECK(delta("sales/13", "sales", 105, &new21, 1) == SYNC_OK);
    CHECK(has_row("sales", 21) == 1);

    /* The move in before the leave: the leave of the same version is old news. */
    chg in22 = {22, NULL, SYNC_OP_INSERT, 7, 110, 13, NULL};
    CHECK(delta("sales/13", "sales", 106, &in22, 1) == SYNC_OK);
    chg leave22 = {22, NULL, SYNC_OP_LEAVE, 7, 110, 0, NULL};
    CHECK(delta("sales/12", "sales", 106, &leave22, 1) == SYNC_OK);
    CHECK(q_int("SELECT store_id FROM sales WHERE id = 22") == 13);

    /* A leave of a row with a local change waiting: the row stays, marked to be read again. */
    char msg[256];
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (30, 12, 1)", msg, sizeof msg) ==
          SQLITE_OK);
    chg leave30 = {30, NULL, SYNC_OP_LEAVE, 2, 111, 0, NULL};
    CHECK(delta("sales/12", "sales", 110, &leave30, 1) == SYNC_OK);
    CHECK(has_row("sales", 30) == 1);
    CHECK(q_int("SELECT count(*) FROM _sync_dirty WHERE tbl = 'sales' AND pk = 30") == 1);
    /* A leave in a whole table's delta means nothing (items is received whole). */
    CHECK(has_row("items", 1) == 1);
    chg leave_item = {1, NULL, SYNC_OP_LEAVE, 9, 50, 0, NULL};
    CHECK(delta("items", "items", 0, &leave_item, 1) == SYNC_OK);
    CHECK(has_row("items", 1) == 1);

    /* Text partitions: the stream named by the value as a topic level. */
    chg reg = {0, "r1", SYNC_OP_INSERT, 1, 120, 0, "it's"};
    CHECK(delta("regions/it%27s", "regions", 0, &reg, 1) == SYNC_OK);
    CHECK(q_int("SELECT count(*) FROM regions WHERE code = 'r1'") == 1);
    CHECK(cursor_of("regions/it%27s") == 120);

    /* Heads: the table's entry in the whole head is ignored, the partition's head counts. */
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    sync_head_entry he = {"sales", 5, 999};
    sync_head_encode(&b, 999, &he, 1);
    char err[256] = "";
    CHECK_RC(edge_pull_on_head(pull, b.data, b.len, err, sizeof err), SYNC_OK, err);
    uint64_t lag0 = edge_pull_lag(pull, sales);
    CHECK(lag0 < 100);
    sync_cbuf_reset(&b);
    he.cseq = 150;
    sync_head_encode(&b, 150, &he, 1);
    CHECK_RC(edge_pull_on_part_head(pull, "sales/12", b.data, b.len, err, sizeof err), SYNC_OK,
             err);
    CHECK(edge_pull_lag(pull, sales) == lag0 + (150 - 111));
    sync_cbuf_free(&b);
}

static void test_gap_and_resync(void)
{
    /* A gap in stream 12: a pull of that partition from its cursor. */
    chg in40[] = {{40, NULL, SYNC_OP_INSERT, 1, 500, 12, NULL},
                  {41, NULL, SYNC_OP_INSERT, 1, 501, 12, NULL}};
    CHECK(delta("sales/12", "sales", 400, in40, 2) == SYNC_OK);
    CHECK(has_row("sales", 40) == 1 && has_row("sales", 41) == 1);
    CHECK(cursor_of("sales/12") == 111); /* not past what it did not get */
    sync_pull req;
    uint8_t corr[8];
    char name[SYNC_TOPIC_MAX];
    CHECK(next_pull("sales/12", &req, corr, name));
    CHECK_STR(name, "sales/12");
    CHECK(req.has_part && req.part.type == SYNC_INT && req.part.u.i == 12);
    CHECK(req.after == 111 && !req.full);
    /* The cloud no longer holds what came after 111: the partition from the start. Row 41 is
     * in it, 40 is not; rows of 13 and rows with changes waiting (1, 30) stay. */
    chg snap[] = {{41, NULL, SYNC_OP_INSERT, 1, 501, 12, NULL},
                  {10, NULL, SYNC_OP_LEAVE, 2, 103, 0, NULL}};
    CHECK(page("sales", 0, 600, corr, snap, 2) == SYNC_OK);
    CHECK(has_row("sales", 40) == 0);
    CHECK(has_row("sales", 41) == 1);
    CHECK(has_row("sales", 1) == 1 && has_row("sales", 30) == 1);
    CHECK(has_row("sales", 20) == 1 && has_row("sales", 10) == 1 && has_row("sales", 21) == 1);
    CHECK(q_int("SELECT count(*) FROM _sync_rows WHERE tbl = 'sales' AND pk = 40") == 0);
    CHECK(cursor_of("sales/12") == 600);
    CHECK(q_int("SELECT count(*) FROM _sync_resync") == 0);
    CHECK(q_int("SELECT count(*) FROM _sync_seen") == 0);
    CHECK(edge_pull_rebuilds(pull) == 1);
}

static void test_policy_change(void)
{
    char err[512] = "", msg[512];
    /* A change waiting for row 20 (of store 13), as if made before the policy limited writes. */
    CHECK(sqlite3_exec(db.db,
                       "INSERT INTO _sync_outbox(tbl, op, pk, base, ts, mask) VALUES "
                       "('sales', 1, 20, 1, 0, 4)",
                       NULL, NULL, NULL) == SQLITE_OK);
    long long s13 = q_int("SELECT count(*) FROM sales WHERE store_id = 13");
    CHECK(s13 >= 3);
    const char *p2 = "{\"device\":\"till-12\",\"receive\":[\"items\",\"sales\"],"
                     "\"write\":[\"items\",\"sales\"],\"partitions\":{\"sales\":{\"column\":"
                     "\"store_id\",\"receive\":[12],\"write\":[12]}},\"ts\":2}";
    CHECK_RC(policy(p2, err, sizeof err), SYNC_OK, err);
    CHECK(q_int("SELECT count(*) FROM sales WHERE store_id = 13") == 1);
    CHECK(has_row("sales", 20) == 1);
    CHECK(has_row("sales", 10) == 0 && has_row("sales", 21) == 0 && has_row("sales", 22) == 0);
    CHECK(q_int("SELECT count(*) FROM _sync_rows WHERE tbl = 'sales' AND pk IN (10, 21, 22)") == 0);
    CHECK(q_int("SELECT count(*) FROM _sync_rows WHERE tbl = 'sales' AND pk = 20") == 1);
    CHECK(has_row("sales", 41) == 1);
    CHECK(cursor_of("sales/13") == (uint64_t)-1);
    CHECK(cursor_of("sales/12") == 600);
    CHECK(edge_pull_find(pull, T("sales"), "13") < 0);
    CHECK(!stream_listed("sales/13") && stream_listed("sales/12"));
    /* regions is no longer received and not writable: its rows go. */
    CHECK(q_int("SELECT count(*) FROM regions") == 0);
    /* Only partition 12 to subscribe to. */
    int parts = 0;
    for (int i = 0; i < edge_pull_nstreams(pull); i++) {
        const sync_table *t;
        const sync_value *v;
        if (edge_pull_part_at(pull, i, &t, &v)) {
            parts++;
            CHECK(t == T("sales") && v->type == SYNC_INT && v->u.i == 12);
        }
    }
    CHECK(parts == 1);
    /* The triggers follow: 13 is a value the device no longer knows of. */
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (50, 13, 5)", msg, sizeof msg) ==
          SQLITE_CONSTRAINT);
    CHECK_STR(msg, "row of table sales is outside the partitions device till-12 may write "
                   "(store_id = 12)");

    /* The same policy again (a consumer starting): nothing happens. */
    CHECK_RC(policy(p2, err, sizeof err), SYNC_OK, err);
    CHECK(cursor_of("sales/12") == 600);

    /* Malformed policies are refused whole; the previous one stays. */
    static const char *const bad[] = {
        "{\"receive\":[\"sales\"],\"write\":[],\"partitions\":{\"sales\":{\"column\":\"store\","
        "\"receive\":[12]}}}",
        "{\"receive\":[\"sales\"],\"write\":[],\"partitions\":{\"sales\":{\"column\":\"price\","
        "\"receive\":[12]}}}",
        "{\"receive\":[\"sales\"],\"write\":[],\"partitions\":{\"sales\":{\"column\":"
        "\"store_id\",\"receive\":[\"12\"]}}}",
        "{\"receive\":[\"sales\"],\"write\":[],\"partitions\":{\"sales\":{\"column\":"
        "\"store_id\",\"receive\":[12.5]}}}",
        "{\"receive\":[\"sales\"],\"write\":[],\"partitions\":{\"sales\":{\"receive\":[12]}}}",
        "{\"receive\":[\"sales\"],\"write\":[],\"partitions\":{\"sales\":{\"column\":"
        "\"store_id\",\"receive\":[12}}}",
        "{\"receive\":[\"sales\"],\"partitions\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK_RC(policy(bad[i], err, sizeof err), SYNC_ERR_DECODE, err);
        CHECK(err[0] != 0);
    }
    CHECK(q_int("SELECT count(*) FROM _sync_policy WHERE tbl = 'sales' AND pcol = 'store_id' AND "
                "precv = 1 AND recv = 1 AND wr = 1") == 1);
    CHECK(has_row("sales", 41) == 1 && has_row("items", 1) == 1);
    CHECK(edge_pull_find(pull, T("sales"), "12") >= 0);
}

static void test_reopen(void)
{
    close_all();
    open_all();
    char msg[512];
    int s = edge_db_slot(&db, T("sales"));
    CHECK(edge_db_recv_mode(&db, s) == EDGE_RECV_PARTS);
    CHECK(db.parts[s].nrecv == 1 && db.parts[s].recv[0].u.i == 12 && db.parts[s].nwr == 1);
    CHECK(edge_pull_find(pull, T("sales"), "12") >= 0);
    CHECK(edge_pull_find(pull, T("sales"), NULL) < 0);
    uint64_t c = 0, h = 0;
    const char *name = NULL;
    for (int i = 0; i < edge_pull_nstreams(pull); i++)
        if (edge_pull_stream_at(pull, i, &name, &c, &h) && strcmp(name, "sales/12") == 0)
            break;
    CHECK(name && strcmp(name, "sales/12") == 0 && c == 600);
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (51, 14, 5)", msg, sizeof msg) ==
          SQLITE_CONSTRAINT);
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (51, 12, 5)", msg, sizeof msg) ==
          SQLITE_OK);
}

static void test_whole_and_back(void)
{
    char err[512] = "";
    /* Partitions -> whole: the whole-table stream from 0, rows stay. */
    long long rows = q_int("SELECT count(*) FROM sales");
    const char *whole = "{\"receive\":[\"items\",\"sales\"],\"write\":[\"items\",\"sales\"],"
                        "\"partitions\":{}}";
    CHECK_RC(policy(whole, err, sizeof err), SYNC_OK, err);
    CHECK(q_int("SELECT count(*) FROM sales") == rows);
    CHECK(edge_pull_find(pull, T("sales"), NULL) >= 0);
    CHECK(edge_pull_find(pull, T("sales"), "12") < 0);
    CHECK(cursor_of("sales") == 0);
    CHECK(cursor_of("sales/12") == (uint64_t)-1);
    CHECK(stream_listed("sales") && !stream_listed("sales/12"));
    sync_pull req;
    uint8_t corr[8];
    char name[SYNC_TOPIC_MAX];
    CHECK(next_pull("sales", &req, corr, name));
    CHECK(!req.has_part && req.after == 0);
    char msg[256];
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (52, 14, 5)", msg, sizeof msg) ==
          SQLITE_OK);
    /* Whole -> partitions: rows outside them go, except those with changes waiting (52, 20). */
    chg c = {60, NULL, SYNC_OP_INSERT, 1, 700, 15, NULL};
    CHECK(delta("sales", "sales", 0, &c, 1) == SYNC_OK);
    CHECK(has_row("sales", 60) == 1);
    const char *p12 = "{\"receive\":[\"items\",\"sales\"],\"write\":[\"items\",\"sales\"],"
                      "\"partitions\":{\"sales\":{\"column\":\"store_id\",\"receive\":[12]}}}";
    CHECK_RC(policy(p12, err, sizeof err), SYNC_OK, err);
    CHECK(has_row("sales", 60) == 0);
    CHECK(has_row("sales", 52) == 1 && has_row("sales", 20) == 1 && has_row("sales", 41) == 1);
    CHECK(q_int("SELECT count(*) FROM sales WHERE store_id <> 12") == 2);
    CHECK(cursor_of("sales/12") == 0);
    CHECK(cursor_of("sales") == 0);
    CHECK(next_pull("sales/12", &req, corr, name));
    CHECK(req.has_part && req.part.u.i == 12 && req.after == 0);
    /* Write whole now (no write list): any store may be written. */
    CHECK(app("INSERT INTO sales(id, store_id, amount) VALUES (53, 14, 5)", msg, sizeof msg) ==
          SQLITE_OK);
}

static void test_rollback_and_resync(void)
{
    char err[512] = "";
    /* A policy taken in a transaction that is rolled back leaves nothing once reloaded (what
     * syncedge's main loop does after a failed transaction). */
    const char *p1213 = "{\"receive\":[\"items\",\"sales\"],\"write\":[\"items\",\"sales\"],"
                        "\"partitions\":{\"sales\":{\"column\":\"store_id\",\"receive\":[12,13]}}}";
    CHECK(edge_db_begin(&db, 1) == SYNC_OK);
    CHECK_RC(edge_policy_on_message(&db, pull, p1213, strlen(p1213), err, sizeof err), SYNC_OK,
             err);
    CHECK(edge_pull_find(pull, T("sales"), "13") >= 0);
    edge_db_rollback(&db);
    CHECK_RC(edge_db_load_policy(&db, err, sizeof err), SYNC_OK, err);
    CHECK(edge_pull_reload(pull) == SYNC_OK);
    CHECK(edge_pull_find(pull, T("sales"), "13") < 0);
    CHECK(edge_pull_find(pull, T("sales"), "12") >= 0);
    CHECK(cursor_of("sales/13") == (uint64_t)-1);

    /* A resync asked for: every stream from 0 in full; the partition's sweep keeps to it. */
    chg c70 = {70, NULL, SYNC_OP_INSERT, 1, 800, 12, NULL};
    CHECK(delta("sales/12", "sales", 0, &c70, 1) == SYNC_OK);
    CHECK(has_row("sales", 70) == 1);
    CHECK(edge_db_begin(&db, 1) == SYNC_OK);
    CHECK(edge_pull_resync_all(pull, "a test") == SYNC_OK);
    CHECK(edge_db_commit(&db) == SYNC_OK);
    CHECK(q_int("SELECT count(*) FROM _sync_resync WHERE tbl = 'sales/12'") == 1);
    CHECK(cursor_of("sales/12") == 0);
    sync_pull req;
    uint8_t corr[8];
    char name[SYNC_TOPIC_MAX];
    unsigned long rebuilt = edge_pull_rebuilds(pull);
    CHECK(next_pull("sales/12", &req, corr, name));
    CHECK(req.full && req.after == 0 && req.has_part && req.part.u.i == 12);
    chg snap = {41, NULL, SYNC_OP_INSERT, 1, 501, 12, NULL};
    CHECK(page("sales", 0, 900, corr, &snap, 1) == SYNC_OK);
    CHECK(has_row("sales", 70) == 0);
    CHECK(has_row("sales", 41) == 1);
    CHECK(has_row("sales", 1) == 1 && has_row("sales", 51) == 1);  /* changes waiting */
    CHECK(has_row("sales", 20) == 1 && has_row("sales", 53) == 1); /* other partitions */
    CHECK(cursor_of("sales/12") == 900);
    CHECK(q_int("SELECT count(*) FROM _sync_resync WHERE tbl = 'sales/12'") == 0);
    CHECK(edge_pull_rebuilds(pull) > rebuilt);
}

int main(void)
{
    sync_log_setup("test_parts", SYNC_LOG_ERR, 0);
    if (tmp_setup("test_parts") != 0)
        return 1;
    tpath(db_path, "app.db");
    tpath(schema_path, "schema.conf");
    FILE *f = fopen(schema_path, "w");
    if (!f)
        return 1;
    fputs("version 1\n"
          "table items\ncolumn id integer key\ncolumn name text\n"
          "table sales\ncolumn id integer key\ncolumn store_id integer notnull\n"
          "column amount integer\ncolumn price real\n"
          "table regions\ncolumn code text key\ncolumn region text notnull\n",
          f);
    fclose(f);
    char err[512];
    if (sync_schema_load(schema_path, &schema, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "schema: %s\n", err);
        return 1;
    }
    edge_config_init(&cfg);
    edge_config_set(&cfg, "database", db_path, err, sizeof err);
    edge_config_set(&cfg, "schema", schema_path, err, sizeof err);
    edge_config_set(&cfg, "tenant", "t", err, sizeof err);
    edge_config_set(&cfg, "device", "till-12", err, sizeof err);
    if (edge_config_finish(&cfg, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "config: %s\n", err);
        return 1;
    }
    open_all();
    test_policy_and_writes();
    test_streams_and_leaves();
    test_gap_and_resync();
    test_policy_change();
    test_reopen();
    test_whole_and_back();
    test_rollback_and_resync();
    close_all();
    edge_config_free(&cfg);
    sync_schema_free(schema);
    if (failures == 0)
        tmp_cleanup();
    else
        fprintf(stderr, "test_parts: files kept in %s\n", tmpdir);
    printf("test_parts: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
