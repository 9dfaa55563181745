/* test_converge.c - randomized convergence: N edges (the real syncedge modules on their own
 * SQLite files) edit a small key space concurrently while the test plays the broker between
 * them and the real cloud applier: batches and deltas are delivered in random order, some twice,
 * some acks and deltas are lost (so edges resend and replicas catch up by pulling). Afterwards
 * every replica must equal the cloud, every outbox must be empty, and every conflict an edge was
 * told about must be in the conflict log. Halfway through, one edge goes away (its session
 * expires: whatever the cloud sends it is lost) while the cloud compacts every tombstone, so on
 * its return it must rebuild its tables from whole snapshots and drop the rows deleted meanwhile.
 * A third of the way in, another edge starts over from an empty database: it takes the tables
 * as key-ordered snapshots (3 rows a page) while the others write.
 * The seed is printed; CONVERGE_SEED repeats a run.
 *
 * The cloud's store is an SQLite file; with --pg it is a PostgreSQL database of a throwaway
 * server (th_pg_start), or the one of $SYNC_TEST_PG (emptied first: give it its own database).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cloud/apply.h"
#include "cloud/compact.h"
#include "cloud/config.h"
#include "cloud/outq.h"
#include "cloud/pull.h"
#include "cloud/store.h"
#include "edge/config.h"
#include "edge/edgedb.h"
#include "edge/outbox.h"
#include "edge/pull.h"
#include "edge/replica.h"
#include "sync/checksum.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"
#include "sync/mqtt.h"
#include "sync/record.h"
#include "sync/schema.h"
#include "harness.h"

#define NEDGES 4
#define ROUNDS 400    /* rounds with writes; then the network calms down */
#define MAX_CALM 4000 /* rounds allowed to converge */

static uint64_t rng, seed0;

static uint64_t rnd(void)
{
    /* splitmix64: the same seed gives the same decisions everywhere */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int chance(int percent)
{
    return (int)(rnd() % 100) < percent;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "converge: %s: %s\nconverge: FAILED: CONVERGE_SEED=%" PRIu64 "\n", what, err,
            seed0);
    exit(1);
}

/* ---- the "broker": message lists ---- */

enum kind { K_BATCH, K_PULL, K_ACK, K_DELTA, K_HEAD, K_PAGE };

typedef struct msg {
    struct msg *next;
    enum kind kind;
    int dev; /* sender (to the cloud) or receiver */
    uint8_t *payload;
    size_t len;
    uint8_t corr[8];
    size_t corr_len;
} msg;

typedef struct queue {
    msg *items[100000];
    int n;
} queue;

static void push(queue *q, enum kind k, int dev, const void *p, size_t n, const uint8_t *corr,
                 size_t corr_len)
{
    if (q->n == (int)(sizeof q->items / sizeof q->items[0]))
        die("queue", "full");
    msg *m = calloc(1, sizeof *m);
    m->kind = k;
    m->dev = dev;
    m->payload = malloc(n ? n : 1);
    memcpy(m->payload, p, n);
    m->len = n;
    if (corr_len) {
        memcpy(m->corr, corr, corr_len);
        m->corr_len = corr_len;
    }
    q->items[q->n++] = m;
}

static void shuffle(queue *q)
{
    for (int i = q->n - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1));
        msg *t = q->items[i];
        q->items[i] = q->items[j];
        q->items[j] = t;
    }
}

static void free_msg(msg *m)
{
    free(m->payload);
    free(m);
}

/* ---- the parties ---- */

typedef struct edge {
    edge_config cfg;
    edge_db db;
    edge_replica *rep;
    edge_pull *pull;
    edge_outbox *out;
    sqlite3 *app; /* the application's own connection */
    queue inbox;
    uint64_t sent_base; /* base seq of the in-flight batch last handed to the network */
    int sent_round;
    int away; /* offline: writes locally, sends nothing, and what is sent to it is lost */
    int deaf; /* deltas to it are lost (heads and pages still arrive) */
} edge;

static const sync_schema *schema;
static cloud_config ccfg;
static cloud_store *store;
static cloud_applier *applier;
static cloud_puller *puller;
static queue cloud_inbox;
static edge edges[NEDGES];
static char dir[64];
static const char *pg; /* the cloud's PostgreSQL store, or NULL: cloud.db in dir */

/* Results the edges were told, to hold against the conflict log. */
typedef struct told {
    char device[16];
    uint64_t seq;
    sync_result code;
} told;
static told tolds[200000];
static int ntold;

static int dev_of_topic(const char *topic)
{
    for (int i = 0; i < NEDGES; i++)
        if (strstr(topic, edges[i].cfg.device) && strstr(topic, "/dev/"))
            return i;
    return -1;
}

/* Delivers to edge i unless it is away (its broker session expired: the message is lost). */
static void deliver(int i, enum kind k, const cloud_msg *m, int with_corr)
{
    if (i < 0 || edges[i].away)
        return;
    push(&edges[i].inbox, k, 0, m->payload, m->len, with_corr ? m->corr : NULL,
         with_corr ? m->corr_len : 0);
}

static void route(cloud_outq *q)
{
    cloud_msg *m;
    while ((m = cloud_outq_pop(q))) {
        if (strstr(m->topic, "/dev/") && strstr(m->topic, "/ack")) {
            if (!chance(8)) /* an ack lost now and then: the edge must resend */
                deliver(dev_of_topic(m->topic), K_ACK, m, 0);
        } else if (strstr(m->topic, "/resp")) {
            deliver(dev_of_topic(m->topic), K_PAGE, m, 1);
        } else if (strstr(m->topic, "/delta/")) {
            for (int i = 0; i < NEDGES; i++) {
                if (chance(6)) /* lost: the replica must notice the gap and pull */
                    continue;
                if (edges[i].deaf) /* a starting replica loses every delta for a while */
                    continue;
                deliver(i, K_DELTA, m, 0);
                if (chance(10)) /* and sometimes delivered twice */
                    deliver(i, K_DELTA, m, 0);
            }
        } else if (strcmp(m->topic, "sync/t/head") == 0) {
            for (int i = 0; i < NEDGES; i++)
                deliver(i, K_HEAD, m, 0);
        }
        free(m);
    }
}

static int note_result(void *ctx, const sync_ack_result *r)
{
    int dev = *(int *)ctx;
    if (ntold < (int)(sizeof tolds / sizeof tolds[0])) {
        snprintf(tolds[ntold].device, sizeof tolds[ntold].device, "%s", edges[dev].cfg.device);
        tolds[ntold].seq = r->seq;
        tolds[ntold].code = r->result;
        ntold++;
    }
    return 0;
}

/* ---- one round ---- */

static void app_write(edge *e)
{
    char sql[256];
    if (chance(60)) {
        int id = 1 + (int)(rnd() % 6);
        int what = (int)(rnd() % 10);
        if (what < 3)
            snprintf(sql, sizeof sql,
                     "INSERT OR REPLACE INTO items(id, name, qty, price) VALUES (%d, 'n%d-%s', "
                     "%d, %d.5)",
                     id, (int)(rnd() % 100), e->cfg.device, (int)(rnd() % 50), (int)(rnd() % 9));
        else if (what < 8)
            snprintf(sql, sizeof sql, "UPDATE items SET %s WHERE id = %d",
                     chance(50) ? "qty = qty + 1" : "name = 'u-' || name", id);
        else
            snprintf(sql, sizeof sql, "DELETE FROM items WHERE id = %d", id);
    } else {
        /* notes merge column by column: concurrent edits of body and n both survive */
        int k = 1 + (int)(rnd() % 4);
        int what = (int)(rnd() % 10);
        if (what < 3)
            snprintf(sql, sizeof sql,
                     "INSERT OR IGNORE INTO notes(k, body, n) VALUES ('k%d', 'b-%s', 0)", k,
                     e->cfg.device);
        else if (what < 6)
            snprintf(sql, sizeof sql, "UPDATE notes SET body = body || '.' WHERE k = 'k%d'", k);
        else if (what < 9)
            snprintf(sql, sizeof sql, "UPDATE notes SET n = coalesce(n, 0) + %d WHERE k = 'k%d'",
                     1 + (int)(rnd() % 5), k);
        else
            snprintf(sql, sizeof sql, "DELETE FROM notes WHERE k = 'k%d'", k);
    }
    char *err = NULL;
    if (sqlite3_exec(e->app, sql, NULL, NULL, &err) != SQLITE_OK)
        die(sql, err);
}

static void app_sql(edge *e, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(e->app, sql, NULL, NULL, &err) != SQLITE_OK)
        die(sql, err);
}

static void edge_send(int i, int round)
{
    edge *e = &edges[i];
    if (e->away)
        return;
    const uint8_t *p;
    size_t n, nrec;
    uint64_t base;
    int rc = edge_outbox_prepare(e->out, &p, &n);
    if (rc < 0)
        die("prepare", sync_strerror(rc));
    if (rc == 1) {
        edge_outbox_inflight(e->out, &p, &n, &base, &nrec);
        /* New batch, or an old one whose ack is overdue: hand it to the network. */
        if (base != e->sent_base || round - e->sent_round > 6) {
            push(&cloud_inbox, K_BATCH, i, p, n, NULL, 0);
            if (chance(15))
                push(&cloud_inbox, K_BATCH, i, p, n, NULL, 0); /* QoS 1 may deliver twice */
            e->sent_base = base;
            e->sent_round = round;
        }
    }
    edge_pull_req req;
    if (edge_pull_next(e->pull, &req) == 1)
        push(&cloud_inbox, K_PULL, i, req.payload, req.len, req.corr, req.corr_len);
}

static void cloud_round(int round)
{
    shuffle(&cloud_inbox);
    cloud_outq q;
    cloud_outq_init(&q);
    /* synccloud republishes the retained head every head_interval: so does this cloud, every
     * 20 rounds, so a replica whose last deltas were lost still learns how far the tables are. */
    if (round % 20 == 0)
        cloud_applier_head(applier, &q);
    char err[512];
    for (int k = 0; k < cloud_inbox.n; k++) {
        msg *m = cloud_inbox.items[k];
        if (m->kind == K_BATCH) {
            if (cloud_store_begin(store) != SYNC_OK ||
                cloud_applier_batch(applier, edges[m->dev].cfg.device, m->payload, m->len) !=
                    SYNC_OK ||
                cloud_store_commit(store) != SYNC_OK)
                die("cloud apply", cloud_store_errmsg(store));
            cloud_applier_flush(applier, &q);
            if (chance(30))
                cloud_applier_head(applier, &q);
        } else {
            sync_mqtt_msg req;
            memset(&req, 0, sizeof req);
            req.payload = m->payload;
            req.len = m->len;
            req.corr = m->corr;
            req.corr_len = m->corr_len;
            if (cloud_puller_handle(puller, edges[m->dev].cfg.device, &req, &q, err, sizeof err) !=
                SYNC_OK)
                die("pull", err);
        }
        free_msg(m);
    }
    cloud_inbox.n = 0;
    route(&q);
}

static void edge_receive(int i)
{
    edge *e = &edges[i];
    if (e->inbox.n == 0)
        return;
    shuffle(&e->inbox);
    if (edge_db_begin(&e->db, 1) != SYNC_OK)
        die("edge begin", sqlite3_errmsg(e->db.db));
    char err[512];
    for (int k = 0; k < e->inbox.n; k++) {
        msg *m = e->inbox.items[k];
        int rc = SYNC_OK, done = 0;
        if (m->kind == K_ACK) {
            sync_ack_decode(m->payload, m->len, NULL, NULL, note_result, &i, NULL, 0);
            rc = edge_outbox_on_ack(e->out, m->payload, m->len, &done, err, sizeof err);
        } else if (m->kind == K_DELTA) {
            rc = edge_replica_apply_stream(e->rep, NULL, m->payload, m->len, err, sizeof err);
        } else if (m->kind == K_HEAD) {
            rc = edge_pull_on_head(e->pull, m->payload, m->len, err, sizeof err);
        } else if (m->kind == K_PAGE) {
            sync_mqtt_msg page;
            memset(&page, 0, sizeof page);
            page.payload = m->payload;
            page.len = m->len;
            page.corr = m->corr;
            page.corr_len = m->corr_len;
            rc = edge_pull_on_page(e->pull, &page, err, sizeof err);
        }
        if (rc != SYNC_OK)
            die("edge receive", err);
        free_msg(m);
    }
    e->inbox.n = 0;
    if (edge_db_commit(&e->db) != SYNC_OK)
        die("edge commit", sqlite3_errmsg(e->db.db));
}

static uint64_t table_head(const sync_table *t)
{
    uint64_t c = 0;
    cloud_store_table_cseq(store, t, &c);
    return c;
}

static int quiet(void)
{
    if (cloud_inbox.n)
        return 0;
    /* Every replica's cursor has reached the cloud's newest change of every table. */
    for (int t = 0; t < sync_schema_ntables(schema); t++) {
        const sync_table *tab = sync_schema_table(schema, t);
        uint64_t head = table_head(tab);
        for (int i = 0; i < NEDGES; i++)
            if (edge_pull_cursor(edges[i].pull,
                                 edge_db_table(&edges[i].db, tab->name, strlen(tab->name))) < head)
                return 0;
    }
    for (int i = 0; i < NEDGES; i++) {
        const uint8_t *p;
        size_t n, nrec;
        uint64_t base;
        if (edges[i].inbox.n || edge_outbox_inflight(edges[i].out, &p, &n, &base, &nrec) ||
            edge_db_outbox_count(&edges[i].db) != 0 || edge_pull_busy(edges[i].pull))
            return 0;
    }
    return 1;
}

/* ---- setup and checks ---- */

static void open_edge(int i, const char *schema_path)
{
    edge *e = &edges[i];
    char err[512], path[128], dev[16];
    edge_config_init(&e->cfg);
    snprintf(path, sizeof path, "%s/e%d.db", dir, i);
    snprintf(dev, sizeof dev, "dev-%c", 'a' + i);
    edge_config_set(&e->cfg, "database", path, err, sizeof err);
    edge_config_set(&e->cfg, "schema", schema_path, err, sizeof err);
    edge_config_set(&e->cfg, "tenant", "t", err, sizeof err);
    edge_config_set(&e->cfg, "device", dev, err, sizeof err);
    char bm[16];
    snprintf(bm, sizeof bm, "%d", 1 + (int)(rnd() % 12));
    edge_config_set(&e->cfg, "batch_max", bm, err, sizeof err);
    edge_config_set(&e->cfg, "pull_rows", "3", err, sizeof err); /* many small pages */
    if (edge_config_finish(&e->cfg, err, sizeof err) != SYNC_OK ||
        edge_db_open(&e->db, &e->cfg, schema, err, sizeof err) != SYNC_OK ||
        edge_replica_new(&e->db, &e->rep, err, sizeof err) != SYNC_OK ||
        edge_pull_new(&e->db, e->rep, &e->cfg, &e->pull, err, sizeof err) != SYNC_OK ||
        edge_outbox_new(&e->db, e->rep, &e->cfg, &e->out, err, sizeof err) != SYNC_OK)
        die("edge", err);
    edge_replica_set_pull(e->rep, e->pull);
    if (sqlite3_open(path, &e->app) != SQLITE_OK)
        die("app", sqlite3_errmsg(e->app));
    sqlite3_busy_timeout(e->app, 5000);
}

/* Edge i starts over from an empty database (a new device, a lost disk) while the others go on
 * writing: it takes the tables as snapshots in key order, 3 rows a page, its cursors held at 0
 * until the last page, then catches up with what changed meanwhile. What was on its way to it
 * is lost with it. */
static void reset_edge(int i, const char *schema_path)
{
    edge *e = &edges[i];
    for (int k = 0; k < e->inbox.n; k++)
        free_msg(e->inbox.items[k]);
    e->inbox.n = 0;
    edge_outbox_free(e->out);
    edge_pull_free(e->pull);
    edge_replica_free(e->rep);
    edge_db_close(&e->db);
    sqlite3_close(e->app);
    edge_config_free(&e->cfg);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int k = 0; k < 3; k++) {
        char path[160];
        snprintf(path, sizeof path, "%s/e%d.db%s", dir, i, suffix[k]);
        unlink(path);
    }
    e->sent_base = 0;
    e->sent_round = -100;
    open_edge(i, schema_path);
}

/* check_conflict_log on a PostgreSQL store. */
static void check_conflict_log_pg(void)
{
    int won = 0, lost = 0, merged = 0;
    for (int i = 0; i < ntold; i++) {
        told *t = &tolds[i];
        if (t->code != SYNC_R_WON && t->code != SYNC_R_MERGED && t->code != SYNC_R_LOST)
            continue;
        won += t->code == SYNC_R_WON;
        lost += t->code == SYNC_R_LOST;
        merged += t->code == SYNC_R_MERGED;
        long long n = th_pg_int(pg,
                                "SELECT count(*) FROM _sync_conflicts WHERE device = '%s' AND "
                                "seq = %lld",
                                t->device, (long long)t->seq);
        if (n != 1 && !(t->code == SYNC_R_LOST && n == 0)) {
            char why[256];
            snprintf(why, sizeof why, "%.15s seq %" PRIu64 " was told %d but the log has %lld rows",
                     t->device, t->seq, (int)t->code, n);
            die("conflict log", why);
        }
    }
    long long logged = th_pg_int(pg, "SELECT count(*) FROM _sync_conflicts");
    printf("converge: conflicts: %lld logged; edges were told %d won, %d lost, %d merged\n",
           logged, won, lost, merged);
    if (won + merged == 0 || logged == 0)
        die("conflicts", "the run produced no conflicts, so it tested nothing");
}

static void check_conflict_log(void)
{
    char path[128];
    if (pg) {
        check_conflict_log_pg();
        return;
    }
    snprintf(path, sizeof path, "%s/cloud.db", dir);
    sqlite3 *db;
    sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM _sync_conflicts WHERE device = ? AND seq = ?", -1,
                       &st, NULL);
    int won = 0, lost = 0, merged = 0;
    for (int i = 0; i < ntold; i++) {
        told *t = &tolds[i];
        if (t->code != SYNC_R_WON && t->code != SYNC_R_MERGED && t->code != SYNC_R_LOST)
            continue;
        won += t->code == SYNC_R_WON;
        lost += t->code == SYNC_R_LOST;
        merged += t->code == SYNC_R_MERGED;
        sqlite3_bind_text(st, 1, t->device, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)t->seq);
        int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_reset(st);
        /* A lost update of a row the writer itself had deleted is not a conflict; everything
         * else told as won, lost or merged must be logged exactly once. */
        if (n != 1 && !(t->code == SYNC_R_LOST && n == 0)) {
            char why[256];
            snprintf(why, sizeof why, "%.15s seq %" PRIu64 " was told %d but the log has %d rows",
                     t->device, t->seq, (int)t->code, n);
            die("conflict log", why);
        }
    }
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "SELECT count(*) FROM _sync_conflicts", -1, &st, NULL);
    int logged = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    printf("converge: conflicts: %d logged; edges were told %d won, %d lost, %d merged\n", logged,
           won, lost, merged);
    if (won + merged == 0 || logged == 0)
        die("conflicts", "the run produced no conflicts, so it tested nothing");
}

int main(int argc, char **argv)
{
    const char *env = getenv("CONVERGE_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    rng = seed0 = seed;
    printf("converge: seed %" PRIu64 " (CONVERGE_SEED=%" PRIu64 " repeats this run)\n", seed, seed);
    sync_log_setup("converge", getenv("CONVERGE_DEBUG") ? SYNC_LOG_DEBUG : SYNC_LOG_ERR, 0);
    snprintf(dir, sizeof dir, "/tmp/convergeXXXXXX");
    if (!mkdtemp(dir))
        die("mkdtemp", "failed");
    printf("converge: folder %s (kept if the test fails)\n", dir);
    if (argc > 1 && strcmp(argv[1], "--pg") == 0) {
        pg = getenv("SYNC_TEST_PG");
        if (!pg || !*pg)
            pg = th_pg_start();
        else if (th_pg_exec(pg, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"))
            die("SYNC_TEST_PG", "cannot empty the database");
        printf("converge: the cloud's store on PostgreSQL (%s)\n", pg);
    }
    char schema_path[256], err[512], path[128];
    snprintf(schema_path, sizeof schema_path, "%s/docs/examples/schema.conf", SYNC_SOURCE_DIR);
    sync_schema *s;
    if (sync_schema_load(schema_path, &s, err, sizeof err) != SYNC_OK)
        die("schema", err);
    schema = s;
    cloud_config_init(&ccfg);
    cloud_config_set(&ccfg, "tenant", "t", err, sizeof err);
    snprintf(path, sizeof path, "%s/cloud.db", dir);
    cloud_config_set(&ccfg, "database", pg ? pg : path, err, sizeof err);
    cloud_config_set(&ccfg, "policy", "notes merge", err, sizeof err);
    cloud_config_set(&ccfg, "pull_rows", "3", err, sizeof err);
    if (cloud_store_open(ccfg.database, schema, 0, &store, err, sizeof err) != SYNC_OK ||
        cloud_applier_new(store, schema, &ccfg, &applier, err, sizeof err) != SYNC_OK ||
        cloud_puller_new(store, schema, &ccfg, &puller, err, sizeof err) != SYNC_OK)
        die("cloud", err);
    for (int i = 0; i < NEDGES; i++)
        open_edge(i, schema_path);

    int round = 0, writes = 0;
    const int away_from = ROUNDS / 2, away_until = ROUNDS / 2 + 60;
    uint64_t compacted = 0;
    for (; round < ROUNDS + MAX_CALM; round++) {
        /* The last edge goes away for a while; tombstones are compacted meanwhile. Row 1000,
         * which no random write touches, is deleted while it is away: only the sweep at the end
         * of its full resync can remove it there. */
        if (round == 5)
            app_sql(&edges[0], "INSERT INTO items(id, name, qty) VALUES (1000, 'probe', 1)");
        if (round == ROUNDS / 3) {
            reset_edge(1, schema_path);
            edges[1].deaf = 1; /* while its snapshot runs and after: only pulls can fill in */
        }
        if (round == ROUNDS / 3 + 40)
            edges[1].deaf = 0;
        if (round == away_from)
            edges[NEDGES - 1].away = 1;
        if (round == away_from + 5)
            app_sql(&edges[0], "DELETE FROM items WHERE id = 1000");
        if (round > away_from && round < away_until && round % 10 == 0) {
            uint64_t n = 0;
            /* A retention of 1 s, one second in the future: every tombstone goes. */
            if (cloud_compact(store, schema, 1, sync_wall_ms() + 1001, &n, err, sizeof err) !=
                SYNC_OK)
                die("compact", err);
            compacted += n;
        }
        if (round == away_until) {
            edges[NEDGES - 1].away = 0;
            edges[NEDGES - 1].sent_round = -100; /* resend what is in flight at once */
            edge_pull_all(edges[NEDGES - 1].pull, "back after its session expired");
        }
        if (round < ROUNDS) {
            for (int i = 0; i < NEDGES; i++)
                if (chance(50)) {
                    app_write(&edges[i]);
                    writes++;
                }
        } else if (quiet()) {
            break;
        } else if (round > ROUNDS + 50) {
            usleep(2000); /* let the catch-up timers (head grace, pull resend) run */
        }
        for (int i = 0; i < NEDGES; i++)
            edge_send(i, round);
        cloud_round(round);
        for (int i = 0; i < NEDGES; i++)
            edge_receive(i);
    }
    if (!quiet())
        die("convergence", "the network never went quiet");
    printf("converge: %d writes by %d edges, quiet after %d rounds\n", writes, NEDGES, round);
    unsigned long pages, rows, full;
    cloud_puller_stats(puller, &pages, &rows, &full);
    printf("converge: %" PRIu64 " tombstones compacted while %s was away; %lu full resyncs of a "
           "table, %lu pages\n",
           compacted, edges[NEDGES - 1].cfg.device, full, pages);
    if (compacted == 0 || full == 0)
        die("compaction", "no tombstone was compacted or no replica resynced in full, so the "
                          "compaction path was not tested");

    /* Every replica equals the cloud. */
    for (int t = 0; t < sync_schema_ntables(schema); t++) {
        const sync_table *tab = sync_schema_table(schema, t);
        char want[65], got[65];
        long long wn, gn;
        if (cloud_store_checksum(store, tab, want, &wn, err, sizeof err) != SYNC_OK)
            die("checksum", err);
        for (int i = 0; i < NEDGES; i++) {
            if (sync_checksum_table(edges[i].db.db, tab, NULL, got, &gn, err, sizeof err) !=
                SYNC_OK)
                die("checksum", err);
            if (strcmp(want, got) != 0 || wn != gn) {
                char why[256];
                snprintf(why, sizeof why, "%s differs from the cloud on '%s' (%lld vs %lld rows)",
                         edges[i].cfg.device, tab->name, gn, wn);
                die("divergence", why);
            }
        }
        printf("converge: %s: %lld rows, %s on the cloud and all %d edges\n", tab->name, wn, want,
               NEDGES);
    }
    check_conflict_log();

    for (int i = 0; i < NEDGES; i++) {
        edge_outbox_free(edges[i].out);
        edge_pull_free(edges[i].pull);
        edge_replica_free(edges[i].rep);
        edge_db_close(&edges[i].db);
        sqlite3_close(edges[i].app);
        edge_config_free(&edges[i].cfg);
    }
    cloud_puller_free(puller);
    cloud_applier_free(applier);
    cloud_store_close(store);
    cloud_config_free(&ccfg);
    sync_schema_free(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "converge: could not remove %s\n", dir);
    th_pg_stop();
    printf("converge: OK\n");
    return 0;
}
