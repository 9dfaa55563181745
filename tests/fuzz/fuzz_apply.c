/* fuzz_apply.c - libFuzzer target for the cloud's validate-and-apply path, driven exactly as
 * synccloud's consume loop drives it (cloud/main.c apply_group): a store transaction per group
 * of batches, cloud_applier_batch for each, COMMIT then cloud_applier_flush (or ROLLBACK then
 * cloud_applier_discard), catch-up requests through cloud_puller_handle outside any write
 * transaction, tombstone compaction through cloud_compact.
 *
 * The store is an in-memory SQLite database opened once per process (again only after an
 * input whose compaction removed tombstones: the store caches the horizons) and emptied after
 * every input, so each input runs against the same empty store and a crash reproduces from its
 * input alone. The
 * input format (a configuration variant, then frames: one message or step each) is described
 * in fuzz_fixture.h and README.md.
 *
 * Invariants checked (a failure aborts: libFuzzer keeps the input):
 * - cloud_applier_batch, commit, flush, compaction return SYNC_OK: nothing a device sends may
 *   make the cloud fail its transaction (that would stall every device sharing it);
 * - a refused batch writes nothing (sqlite3_total_changes unchanged);
 * - every batch whose header can be read gets exactly one ack, in order, on the sender's ack
 *   topic: REJECTED with a reason and no results when refused, else OK with one result per
 *   record, in order, with the record's seq, DUPLICATE exactly for seqs at or below the
 *   device's last_seq before the batch, REJECTED exactly for writes to a table another device
 *   owns, and last_seq = the highest seq;
 * - sending an accepted batch again changes nothing and is acked all DUPLICATE, each result
 *   carrying the row exactly as stored;
 * - every published message decodes with the edge's decoders and fits the schema (deltas, row
 *   states, pages), every event is well-formed JSON, and the last row state published for a
 *   key equals what the store holds;
 * - every applied change is published in a delta, once; within a delta cseqs ascend and the
 *   versions of a key ascend;
 * - a rolled back transaction leaves the store as it was and publishes nothing;
 * - catch-up pages hold the stored rows above the cursor in cseq order, answered only to the
 *   asking device with its correlation data;
 * - after each input: no live row holds NULL in a NOT NULL column, every stored version is at
 *   least 1; every 256 inputs PRAGMA quick_check is ok.
 * FUZZ_APPLY_KNOWN relaxes the checks of known findings (README.md); FUZZ_APPLY_TRACE prints
 * what each frame did.
 */
#include <inttypes.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cloud/apply.h"
#include "cloud/compact.h"
#include "cloud/config.h"
#include "cloud/outq.h"
#include "cloud/pull.h"
#include "cloud/store.h"
#include "fuzz_fixture.h"
#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/log.h"
#include "sync/mqtt.h"
#include "sync/record.h"
#include "sync/schema.h"
#include "sync/topic.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_apply: %s:%d: invariant failed: %s: ", __FILE__, __LINE__,       \
                    #cond);                                                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the world: schema, configurations, store ---- */

static sync_schema *schema;
#define FUZZ_PART_TABLE "notes"
#define FUZZ_PART_COL "body"
static cloud_config cfgs[FUZZ_VARIANTS];
static int cfg_ready[FUZZ_VARIANTS];
static cloud_store *st;
static sqlite3 *db;          /* the store's own connection */
static sqlite3 *last_opened; /* set by the auto extension on every sqlite3_open */
static int store_dirty;      /* compaction removed rows: reopen the store after this input */
static int trace;            /* FUZZ_APPLY_TRACE set: print what each frame did */

/* Nonzero if FUZZ_APPLY_KNOWN (a comma-separated list) names this known finding: its check is
 * then relaxed so that a long fuzzing run can look for other problems. Unset (CI, replays),
 * every check is strict. */
static int known(const char *tag)
{
    const char *k = getenv("FUZZ_APPLY_KNOWN");
    size_t n = strlen(tag);
    for (const char *p = k; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, tag, n) == 0)
            return 1;
        p = e ? e + 1 : p + len;
    }
    return 0;
}

enum { SQL_QUICK_CHECK, SQL_COUNT_FIXED };
static sqlite3_stmt *sql_fixed[SQL_COUNT_FIXED];
static sqlite3_stmt **sql_bad_rows; /* per synced table: rows breaking NOT NULL or version >= 1 */
static sqlite3_stmt **sql_scan;     /* per table of the database: every row, for fingerprints */
static sqlite3_stmt **sql_clear;    /* per table of the database: DELETE (NULL: keep) */
static int nscan;

/* SQLite calls this for every connection opened after sqlite3_auto_extension: it is how the
 * target gets the store's connection without a getter in the store's interface. */
static int capture_db(sqlite3 *d, char **errmsg, const sqlite3_api_routines *api)
{
    (void)errmsg;
    (void)api;
    last_opened = d;
    return SQLITE_OK;
}

static sqlite3_stmt *prep(const char *sql)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    FUZZ_CHECK(rc == SQLITE_OK, "preparing %s: %s", sql, sqlite3_errmsg(db));
    return s;
}

static void exec_sql(const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    FUZZ_CHECK(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
}

static void store_open(void)
{
    char err[512];
    int n = sync_schema_ntables(schema);

    last_opened = NULL;
    int rc = cloud_store_open(":memory:", schema, 0, &st, err, sizeof err);
    FUZZ_CHECK(rc == SYNC_OK && last_opened != NULL, "opening the store: %s", err);
    db = last_opened;
    exec_sql("PRAGMA synchronous=OFF");
    /* Partitioned now, so the tables that brings are scanned and emptied like the others. */
    const sync_table *pt = sync_schema_find(schema, FUZZ_PART_TABLE, strlen(FUZZ_PART_TABLE));
    FUZZ_CHECK(pt && cloud_store_partition(st, pt, sync_table_col(pt, FUZZ_PART_COL,
                                                                  strlen(FUZZ_PART_COL))) ==
                         SYNC_OK,
               "partitioning: %s", cloud_store_errmsg(st));
    sql_fixed[SQL_QUICK_CHECK] = prep("PRAGMA quick_check");
    sql_bad_rows = calloc((size_t)n, sizeof *sql_bad_rows);
    FUZZ_CHECK(sql_bad_rows, "out of memory");
    for (int i = 0; i < n; i++) {
        char sql[8192];
        const sync_table *t = sync_schema_table(schema, i);
        size_t at = (size_t)snprintf(sql, sizeof sql,
                                     "SELECT count(*) FROM \"%s\" WHERE %s OR "
                                     "(_deleted = 0 AND (0",
                                     t->name, known("client-base-version") ? "0" : "_version < 1");
        for (int c = 0; c < t->ncols; c++)
            if (t->cols[c].notnull && !known("update-nulls-notnull") &&
                !(t->cols[c].type == SYNC_REAL && known("nan-null")))
                at += (size_t)snprintf(sql + at, sizeof sql - at, " OR \"%s\" IS NULL",
                                       t->cols[c].name);
        snprintf(sql + at, sizeof sql - at, "))");
        sql_bad_rows[i] = prep(sql);
    }
    /* Every table the store made (synced and bookkeeping, whatever the store adds later) is
     * scanned for fingerprints and emptied between inputs; _sync_state keeps its one row (the
     * cseq counter, which the store caches anyway). */
    sqlite3_stmt *q = prep("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT "
                           "LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name");
    nscan = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        char sql[512];
        const char *name = (const char *)sqlite3_column_text(q, 0);
        sql_scan = realloc(sql_scan, (size_t)(nscan + 1) * sizeof *sql_scan);
        sql_clear = realloc(sql_clear, (size_t)(nscan + 1) * sizeof *sql_clear);
        FUZZ_CHECK(sql_scan && sql_clear, "out of memory");
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", name);
        sql_scan[nscan] = prep(sql);
        snprintf(sql, sizeof sql, "DELETE FROM \"%s\"", name);
        sql_clear[nscan] = strcmp(name, "_sync_state") == 0 ? NULL : prep(sql);
        nscan++;
    }
    sqlite3_finalize(q);
}

static void store_close(void)
{
    for (int i = 0; i < SQL_COUNT_FIXED; i++)
        sqlite3_finalize(sql_fixed[i]);
    for (int i = 0; i < nscan; i++) {
        sqlite3_finalize(sql_scan[i]);
        sqlite3_finalize(sql_clear[i]);
    }
    for (int i = 0; i < sync_schema_ntables(schema); i++)
        sqlite3_finalize(sql_bad_rows[i]);
    free(sql_bad_rows);
    free(sql_scan);
    free(sql_clear);
    sql_bad_rows = NULL;
    sql_scan = sql_clear = NULL;
    nscan = 0;
    cloud_store_close(st);
    st = NULL;
    db = NULL;
}

/* Empties every table, so the next input starts from the same empty store (nothing to do
 * when the input wrote nothing: tc0 is sqlite3_total_changes at its start). */
static void store_reset(int tc0)
{
    if (store_dirty || getenv("FUZZ_APPLY_REOPEN")) {
        store_close();
        store_open();
        store_dirty = 0;
        return;
    }
    if (sqlite3_total_changes(db) == tc0)
        return;
    for (int i = 0; i < nscan; i++) {
        if (!sql_clear[i])
            continue;
        int rc = sqlite3_step(sql_clear[i]);
        sqlite3_reset(sql_clear[i]);
        FUZZ_CHECK(rc == SQLITE_DONE, "clearing: %s", sqlite3_errmsg(db));
    }
}

static void config_line(cloud_config *c, const char *key, const char *value)
{
    char err[256];
    int rc = cloud_config_set(c, key, value, err, sizeof err);
    FUZZ_CHECK(rc == SYNC_OK, "config %s %s: %s", key, value, err);
}

static cloud_config *config_of(unsigned variant)
{
    cloud_config *c = &cfgs[variant];
    if (cfg_ready[variant])
        return c;
    cloud_config_init(c);
    config_line(c, "tenant", FUZZ_TENANT);
    config_line(c, "database", ":memory:");
    config_line(c, "sync_full", "false");
    config_line(c, "role", "mgr manager");
    config_line(c, "role", "pi manager");
    config_line(c, "role", "clerk clerk");
    config_line(c, "priority", "manager,clerk");
    /* notes is split by its text column body: deltas, leaves, heads and pulls per partition. */
    config_line(c, "partition", FUZZ_PART_TABLE " " FUZZ_PART_COL);
    for (int i = 0; i < sync_schema_ntables(schema); i++) {
        char line[160];
        snprintf(line, sizeof line, "%s %s", sync_schema_table(schema, i)->name,
                 fuzz_policies[FUZZ_VAR_POLICY(variant)]);
        config_line(c, "policy", line);
    }
    if (variant & FUZZ_VAR_TIGHT) {
        config_line(c, "max_records", "4");
        config_line(c, "max_value", "16");
        config_line(c, "max_batch_bytes", "1024");
        config_line(c, "pull_rows", "2");
        config_line(c, "pull_bytes", "4096");
    }
    if (variant & FUZZ_VAR_QUIET) {
        config_line(c, "events", "batches");
        config_line(c, "publish_rows", "false");
    }
    char err[256];
    FUZZ_CHECK(cloud_config_check_schema(c, schema, err, sizeof err) == SYNC_OK, "%s", err);
    cfg_ready[variant] = 1;
    return c;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char text[8192], path[4096], err[512];
    const char *tmp = getenv("TMPDIR");

    trace = getenv("FUZZ_APPLY_TRACE") != NULL;
    sync_log_setup("fuzz_apply", trace ? SYNC_LOG_DEBUG : SYNC_LOG_ERR, 0);
    FUZZ_CHECK(fuzz_schema_text(text, sizeof text) == 0, "schema text too long");
    snprintf(path, sizeof path, "%s/fuzz_apply_schemaXXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    FUZZ_CHECK(fd >= 0, "mkstemp");
    FUZZ_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "writing the schema");
    close(fd);
    int rc = sync_schema_load(path, &schema, err, sizeof err);
    unlink(path);
    FUZZ_CHECK(rc == SYNC_OK, "schema: %s", err);
    /* Speed only: no memory statistics (a global mutex per allocation). Must come before
     * anything initialises SQLite (sqlite3_auto_extension does). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_auto_extension((void (*)(void))capture_db);
    store_open();
    return 0;
}

/* ---- checks on the store ---- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* A hash of every row of every table (synced and bookkeeping), in storage order. */
static uint64_t fingerprint(void)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < nscan; i++) {
        sqlite3_stmt *s = sql_scan[i];
        int rc;
        h = fnv(h, &i, sizeof i);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(s); c++) {
                int type = sqlite3_column_type(s, c);
                h = fnv(h, &type, sizeof type);
                if (type == SQLITE_INTEGER) {
                    sqlite3_int64 v = sqlite3_column_int64(s, c);
                    h = fnv(h, &v, sizeof v);
                } else if (type == SQLITE_FLOAT) {
                    double v = sqlite3_column_double(s, c);
                    h = fnv(h, &v, sizeof v);
                } else if (type != SQLITE_NULL) {
                    const void *p = sqlite3_column_blob(s, c);
                    h = fnv(h, p, (size_t)sqlite3_column_bytes(s, c));
                }
            }
        }
        sqlite3_reset(s);
        FUZZ_CHECK(rc == SQLITE_DONE, "scan: %s", sqlite3_errmsg(db));
    }
    return h;
}

/* After each input: no live row breaks NOT NULL, no row has a version below 1; and every 256
 * inputs (it re-prepares itself each time and walks every index: a sixth of the run time when
 * done every input) PRAGMA quick_check. */
static void check_store(void)
{
    static unsigned long n;
    int rc;
    if (n++ % 256 == 0 || trace) {
        sqlite3_stmt *q = sql_fixed[SQL_QUICK_CHECK];
        rc = sqlite3_step(q);
        const unsigned char *res = sqlite3_column_text(q, 0);
        FUZZ_CHECK(rc == SQLITE_ROW && res && strcmp((const char *)res, "ok") == 0,
                   "quick_check: %s", res ? (const char *)res : sqlite3_errmsg(db));
        sqlite3_reset(q);
    }
    for (int i = 0; i < sync_schema_ntables(schema); i++) {
        sqlite3_stmt *s = sql_bad_rows[i];
        rc = sqlite3_step(s);
        long long bad = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
        sqlite3_reset(s);
        FUZZ_CHECK(bad == 0,
                   "table '%s' holds %lld rows with a version below 1 or a NULL in a NOT NULL "
                   "column",
                   sync_schema_table(schema, i)->name, bad);
    }
}

/* Names a value for messages. */
static const char *vdesc(const sync_value *v, char *buf, size_t n)
{
    switch (v->type) {
    case SYNC_INT:
        snprintf(buf, n, "integer %" PRId64, v->u.i);
        break;
    case SYNC_REAL:
        snprintf(buf, n, "real %.17g", v->u.f);
        break;
    case SYNC_TEXT:
    case SYNC_BLOB:
        snprintf(buf, n, "%s of %zu bytes", sync_vtype_name(v->type), v->u.b.n);
        break;
    default:
        snprintf(buf, n, "%s", sync_vtype_name(v->type));
        break;
    }
    return buf;
}

/* A row state as a message shows it. */
typedef struct shown {
    const char *what; /* "row message", "page", "duplicate ack" */
    int deleted;      /* a tombstone (or no row) */
    uint64_t version;
    int has_meta; /* hlc, cseq and origin are shown too */
    uint64_t hlc, cseq;
    const char *origin;
    size_t origin_len;
    const sync_colval *cols;
    size_t ncols;
} shown;

/* The row state a message shows for key must be what the store holds. */
static void check_against_store(const sync_table *t, const sync_value *key, const shown *s)
{
    cloud_row row;
    char a[96], b[96];
    int rc = cloud_store_row_get(st, t, key, &row);
    FUZZ_CHECK(rc == SYNC_OK, "row_get: %s", cloud_store_errmsg(st));
    int deleted = !row.exists || row.deleted;
    FUZZ_CHECK(s->deleted == deleted, "%s of '%s': deleted %d, store %d", s->what, t->name,
               s->deleted, deleted);
    FUZZ_CHECK(s->version == row.version, "%s of '%s': version %" PRIu64 ", store %" PRIu64,
               s->what, t->name, s->version, row.version);
    if (s->has_meta) {
        FUZZ_CHECK(row.exists, "%s of '%s': the store has no row", s->what, t->name);
        FUZZ_CHECK(s->hlc == row.hlc && s->cseq == row.cseq, "%s of '%s': hlc/cseq differ", s->what,
                   t->name);
        FUZZ_CHECK(s->origin_len == strlen(row.origin) &&
                       memcmp(s->origin, row.origin, s->origin_len) == 0,
                   "%s of '%s': origin differs", s->what, t->name);
    }
    if (deleted)
        return;
    FUZZ_CHECK(s->ncols == (size_t)t->ncols, "%s of '%s': %zu columns, the table has %d", s->what,
               t->name, s->ncols, t->ncols);
    for (size_t i = 0; i < s->ncols; i++) {
        int c = sync_table_col(t, s->cols[i].name, s->cols[i].name_len);
        FUZZ_CHECK(c >= 0, "%s of '%s': unknown column", s->what, t->name);
        int nan_null = s->cols[i].v.type == SYNC_REAL && isnan(s->cols[i].v.u.f) &&
                       row.vals[c].type == SYNC_NULL && known("nan-null");
        FUZZ_CHECK(nan_null || sync_value_equal(&s->cols[i].v, &row.vals[c]),
                   "%s of '%s', column '%s': shows %s, the store holds %s", s->what, t->name,
                   t->cols[c].name, vdesc(&s->cols[i].v, a, sizeof a),
                   vdesc(&row.vals[c], b, sizeof b));
    }
}

/* Columns a message carries must exist and fit the schema; an insert or a full row carries
 * every column, in schema order. */
static void check_cols(const char *what, const sync_table *t, const sync_value *key,
                       const sync_colval *cols, size_t ncols, int full)
{
    char why[256];
    if (full)
        FUZZ_CHECK(ncols == (size_t)t->ncols, "%s of '%s': %zu of %d columns", what, t->name, ncols,
                   t->ncols);
    for (size_t i = 0; i < ncols; i++) {
        int c = sync_table_col(t, cols[i].name, cols[i].name_len);
        FUZZ_CHECK(c >= 0, "%s of '%s': unknown column '%.*s'", what, t->name,
                   (int)cols[i].name_len, cols[i].name);
        if (full)
            FUZZ_CHECK((size_t)c == i, "%s of '%s': columns out of schema order", what, t->name);
        sync_value v = cols[i].v;
        if (v.type == SYNC_NULL && t->cols[c].notnull && known("update-nulls-notnull"))
            continue;
        FUZZ_CHECK(v.type != SYNC_INT || t->cols[c].type != SYNC_REAL,
                   "%s of '%s': an integer in real column '%s'", what, t->name, t->cols[c].name);
        FUZZ_CHECK(sync_column_check(t, c, &v, why, sizeof why) == SYNC_OK, "%s: %s", what, why);
        if (c == t->key)
            FUZZ_CHECK(sync_value_equal(&v, key), "%s of '%s': key column differs from the key",
                       what, t->name);
    }
}

static void check_key(const char *what, const sync_table *t, const sync_value *key)
{
    FUZZ_CHECK(key->type == t->cols[t->key].type, "%s of '%s': key of type %s", what, t->name,
               sync_vtype_name(key->type));
}

/* ---- JSON events: a small validating parser ---- */

static const char *js_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *js_string(const char *p, const char *e)
{
    const char *start;
    if (p >= e || *p != '"')
        return NULL;
    start = ++p;
    while (p < e && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (++p >= e)
                return NULL;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (p + i >= e || !strchr("0123456789abcdefABCDEF", p[i]) || !p[i])
                        return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
        p++;
    }
    if (p >= e || sync_utf8_check(start, (size_t)(p - start)) != (size_t)(p - start))
        return NULL;
    return p + 1;
}

static const char *js_digits(const char *p, const char *e)
{
    const char *s = p;
    while (p < e && *p >= '0' && *p <= '9')
        p++;
    return p > s ? p : NULL;
}

static const char *js_number(const char *p, const char *e)
{
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (!(p = js_digits(p, e)))
        return NULL;
    if (p < e && *p == '.' && !(p = js_digits(p + 1, e)))
        return NULL;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (!(p = js_digits(p, e)))
            return NULL;
    }
    return p;
}

static const char *js_value(const char *p, const char *e, int depth)
{
    p = js_ws(p, e);
    if (p >= e || depth > 16)
        return NULL;
    if (*p == '"')
        return js_string(p, e);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int obj = *p == '{';
        p = js_ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                if (!(p = js_string(js_ws(p, e), e)))
                    return NULL;
                p = js_ws(p, e);
                if (p >= e || *p != ':')
                    return NULL;
                p++;
            }
            if (!(p = js_value(p, e, depth + 1)))
                return NULL;
            p = js_ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            if (p < e && *p == close)
                return p + 1;
            return NULL;
        }
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(e - p) >= n && memcmp(p, lits[i], n) == 0)
            return p + n;
    }
    return js_number(p, e);
}

static void check_event(const cloud_msg *m)
{
    const char *p = (const char *)m->payload, *e = p + m->len;
    FUZZ_CHECK(m->len > 0 && p[0] == '{', "event on %s is not a JSON object", m->topic);
    const char *end = js_value(p, e, 0);
    FUZZ_CHECK(end && js_ws(end, e) == e, "event on %s is not valid JSON: %.*s", m->topic,
               (int)m->len, p);
}

/* ---- what one batch frame must produce ---- */

typedef struct recinfo {
    const sync_table *t; /* NULL: unknown table (the batch is refused) */
    sync_value key;
    uint64_t seq;
} recinfo;

typedef struct expect {
    const char *device;
    const uint8_t *payload;
    size_t len;
    int has_hdr;  /* the header can be read: an ack must come */
    int hdr_cb;   /* the decoder called on_hdr (the record count is within the limit) */
    int decoded;  /* the whole batch decodes */
    int rejected; /* the applier refused it */
    int replay;   /* a resend of an accepted batch: every result is DUPLICATE */
    sync_batch_hdr hdr;
    uint64_t last_before; /* the device's last_seq before the batch */
    recinfo *recs;
    size_t nrecs, cap;
} expect;

static int e_hdr(void *ctx, const sync_batch_hdr *h)
{
    expect *e = ctx;
    e->hdr_cb = 1;
    e->hdr = *h;
    return 0;
}

static int e_rec(void *ctx, const sync_record *r)
{
    expect *e = ctx;
    if (e->nrecs == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 16;
        recinfo *n = realloc(e->recs, cap * sizeof *n);
        FUZZ_CHECK(n != NULL, "out of memory");
        e->recs = n;
        e->cap = cap;
    }
    recinfo *ri = &e->recs[e->nrecs++];
    ri->t = sync_schema_find(schema, r->table, r->table_len);
    ri->key = r->key;
    ri->seq = r->seq;
    return 0;
}

/* Reads what the cloud must answer to this batch, before it is applied. */
static void expect_batch(expect *e, const cloud_config *c, const char *device,
                         const uint8_t *payload, size_t len)
{
    sync_limits lim = {(size_t)c->max_records, (size_t)c->max_value};
    memset(e, 0, sizeof *e);
    e->device = device;
    e->payload = payload;
    e->len = len;
    sync_batch_hdr h;
    memset(&h, 0, sizeof h);
    e->decoded = sync_batch_decode(payload, len, &lim, &h, e_hdr, e_rec, e, NULL, 0) == SYNC_OK;
    /* The decoder fills h once it has read the whole header (schema_version, device,
     * base_seq) and the head of the records array, also when the record count is then over
     * the limit: protocol.md says such a batch is refused with an ack ("oversized ... batch"),
     * and only one that "cannot even be decoded up to its header cannot be acked". */
    if (h.device != NULL && !e->hdr_cb)
        e->hdr = h;
    e->has_hdr = h.device != NULL || e->hdr_cb;
    if (cloud_store_device_seq(st, device, &e->last_before) != SYNC_OK)
        FUZZ_CHECK(0, "device_seq: %s", cloud_store_errmsg(st));
}

typedef struct ackctx {
    expect *e;
    size_t next; /* index of the next result */
    int saw_hdr;
} ackctx;

static int a_hdr(void *ctx, const sync_ack_hdr *h)
{
    ackctx *x = ctx;
    expect *e = x->e;
    x->saw_hdr = 1;
    FUZZ_CHECK(h->base_seq == e->hdr.base_seq, "ack base_seq %" PRIu64 ", batch %" PRIu64,
               h->base_seq, e->hdr.base_seq);
    if (trace)
        fprintf(stderr, "fuzz_apply: ack to %s%s: status %d, %zu results%s%.*s\n", e->device,
                e->replay ? " (resend)" : "", (int)h->status, h->nresults,
                h->reason_len ? ": " : "", (int)h->reason_len, h->reason ? h->reason : "");
    if (e->rejected) {
        FUZZ_CHECK(h->status == SYNC_ACK_REJECTED && h->nresults == 0 && h->reason_len > 0,
                   "refused batch acked with status %d, %zu results", (int)h->status, h->nresults);
        FUZZ_CHECK(h->last_seq == h->base_seq, "refused batch: last_seq %" PRIu64, h->last_seq);
        return 0;
    }
    uint64_t max = 0;
    for (size_t i = 0; i < e->nrecs; i++)
        if (e->recs[i].seq > max)
            max = e->recs[i].seq;
    FUZZ_CHECK(h->status == SYNC_ACK_OK && h->nresults == e->nrecs,
               "accepted batch of %zu records acked with status %d, %zu results", e->nrecs,
               (int)h->status, h->nresults);
    FUZZ_CHECK(h->last_seq == max, "ack last_seq %" PRIu64 ", highest seq %" PRIu64, h->last_seq,
               max);
    return 0;
}

/* Whether the n bytes at s contain the text w. */
static int has_words(const char *s, size_t n, const char *w)
{
    size_t k = strlen(w);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, w, k) == 0)
            return 1;
    return 0;
}

static int a_result(void *ctx, const sync_ack_result *r)
{
    ackctx *x = ctx;
    expect *e = x->e;
    size_t i = x->next++;
    FUZZ_CHECK(i < e->nrecs, "more results than records");
    if (trace)
        fprintf(stderr, "fuzz_apply:   seq %" PRIu64 " code %d version %" PRIu64 "%s\n", r->seq,
                (int)r->result, r->version,
                r->has_row ? (r->deleted ? " (row: deleted)" : " (row)") : "");
    const recinfo *ri = &e->recs[i];
    FUZZ_CHECK(r->seq == ri->seq, "result %zu has seq %" PRIu64 ", record %" PRIu64, i, r->seq,
               ri->seq);
    int dup = ri->seq <= e->last_before;
    FUZZ_CHECK((r->result == SYNC_R_DUPLICATE) == dup,
               "result %zu: code %d for seq %" PRIu64 " (device last_seq was %" PRIu64 ")", i,
               (int)r->result, ri->seq, e->last_before);
    if (dup) {
        if (e->replay) {
            shown s = {"duplicate ack", r->deleted, r->version, 0, 0, 0, NULL, 0,
                       r->cols,         r->ncols};
            check_against_store(ri->t, &ri->key, &s);
        }
        return 0;
    }
    FUZZ_CHECK(!e->replay, "a resent batch was not acked DUPLICATE (code %d)", (int)r->result);
    int foreign = ri->t->owner[0] && strcmp(ri->t->owner, e->device) != 0;
    /* The other refusal of one change: an update of a row the store does not hold that would
     * leave a NOT NULL column empty (it is never stored or published). */
    int hollow = !foreign && r->result == SYNC_R_REJECTED && r->reason &&
                 has_words(r->reason, r->reason_len, "may not be null");
    FUZZ_CHECK((r->result == SYNC_R_REJECTED) == (foreign || hollow),
               "result %zu: code %d for a write of %s to '%s' (owner '%s')", i, (int)r->result,
               e->device, ri->t->name, ri->t->owner);
    if (r->result != SYNC_R_REJECTED)
        FUZZ_CHECK(r->version >= 1 || known("client-base-version"),
                   "result %zu: code %d with version 0", i, (int)r->result);
    if (r->has_row && !r->deleted)
        check_cols("ack row", ri->t, &ri->key, r->cols, r->ncols, 1);
    return 0;
}

static void check_ack(const cloud_msg *m, expect *e)
{
    char topic[SYNC_TOPIC_MAX], err[512];
    sync_topic_dev(topic, sizeof topic, FUZZ_TENANT, e->device, "ack");
    FUZZ_CHECK(strcmp(m->topic, topic) == 0, "ack on %s, expected %s", m->topic, topic);
    ackctx x = {e, 0, 0};
    err[0] = '\0';
    int rc = sync_ack_decode(m->payload, m->len, NULL, a_hdr, a_result, &x, err, sizeof err);
    FUZZ_CHECK(rc == SYNC_OK && x.saw_hdr, "ack does not decode: %s", err);
    FUZZ_CHECK(x.next == (e->rejected ? 0 : e->nrecs), "ack has %zu results", x.next);
}

/* ---- deltas, rows, pages ---- */

#define DCTX_KEYS 256
typedef struct dctx {
    const sync_table *t;
    const char *what;
    uint64_t last_cseq; /* cseqs ascend (from the delta's prev_cseq, the page's cursor) */
    size_t n;           /* changes seen */
    int page;           /* full row states: compare every change with the store */
    int part;           /* a partition's stream: leaves allowed */
    int keyorder;       /* a snapshot page: keys ascend (from last_key), not cseqs */
    int have_key;
    sync_value last_key;
    size_t nkeys;       /* delta: the keys seen so far, with their last version */
    sync_value keys[DCTX_KEYS];
    uint64_t versions[DCTX_KEYS];
} dctx;

/* Keys as SQLite orders them: integers by value, text and blobs bytewise, shorter first. */
static int key_cmp(const sync_value *a, const sync_value *b)
{
    if (a->type == SYNC_INT && b->type == SYNC_INT)
        return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
    if (a->type != b->type)
        return a->type == SYNC_INT ? -1 : b->type == SYNC_INT ? 1 : (int)a->type - (int)b->type;
    size_t n = a->u.b.n < b->u.b.n ? a->u.b.n : b->u.b.n;
    int c = n ? memcmp(a->u.b.p, b->u.b.p, n) : 0;
    return c ? c : (a->u.b.n > b->u.b.n) - (a->u.b.n < b->u.b.n);
}

static int d_hdr(void *ctx, const sync_delta_hdr *h)
{
    dctx *x = ctx;
    FUZZ_CHECK(
        h->table_len == strlen(x->t->name) && memcmp(h->table, x->t->name, h->table_len) == 0,
        "delta names table '%.*s' on the topic of '%s'", (int)h->table_len, h->table, x->t->name);
    x->last_cseq = h->prev_cseq;
    return 0;
}

static int d_change(void *ctx, const sync_change *c)
{
    dctx *x = ctx;
    x->n++;
    check_key(x->what, x->t, &c->key);
    FUZZ_CHECK(c->version >= 1 || known("client-base-version"), "%s of '%s': version 0", x->what,
               x->t->name);
    if (x->keyorder) {
        FUZZ_CHECK(!x->have_key || key_cmp(&c->key, &x->last_key) > 0,
                   "%s of '%s': keys out of order", x->what, x->t->name);
        x->last_key = c->key;
        x->have_key = 1;
        if (c->cseq > x->last_cseq)
            x->last_cseq = c->cseq;
    } else {
        FUZZ_CHECK(c->cseq > x->last_cseq, "%s of '%s': cseq %" PRIu64 " after %" PRIu64,
                   x->what, x->t->name, c->cseq, x->last_cseq);
        x->last_cseq = c->cseq;
    }
    FUZZ_CHECK(sync_id_valid(c->origin, c->origin_len), "%s: origin is not a device id", x->what);
    /* In a delta, the versions of a key only go up, change after change. */
    size_t k;
    for (k = 0; !x->page && k < x->nkeys && !sync_value_equal(&x->keys[k], &c->key); k++)
        ;
    if (x->page) {
        /* A page holds distinct rows: nothing to track. */
    } else if (k < x->nkeys) {
        FUZZ_CHECK(c->version > x->versions[k] || known("client-base-version"),
                   "%s of '%s': version %" PRIu64 " follows version %" PRIu64 " of the same key",
                   x->what, x->t->name, c->version, x->versions[k]);
        x->versions[k] = c->version;
    } else if (x->nkeys < DCTX_KEYS) {
        x->keys[x->nkeys] = c->key;
        x->versions[x->nkeys++] = c->version;
    }
    FUZZ_CHECK(c->op != SYNC_OP_LEAVE || x->part, "%s of '%s': a leave outside a partition",
               x->what, x->t->name);
    check_cols(x->what, x->t, &c->key, c->cols, c->ncols,
               x->page ? !SYNC_OP_NOCOLS(c->op) : c->op == SYNC_OP_INSERT);
    if (x->page && c->op == SYNC_OP_LEAVE) {
        /* The row left the partition: the store holds it elsewhere (or gone), at least as new. */
        cloud_row row;
        FUZZ_CHECK(cloud_store_row_get(st, x->t, &c->key, &row) == SYNC_OK, "row_get");
        FUZZ_CHECK(!row.exists || row.version >= c->version, "page: a leave newer than the row");
    } else if (x->page) {
        FUZZ_CHECK(c->op != SYNC_OP_UPDATE, "page with an update");
        shown s = {"page",    c->op == SYNC_OP_DELETE, c->version, 1,       c->hlc, c->cseq,
                   c->origin, c->origin_len,           c->cols,    c->ncols};
        check_against_store(x->t, &c->key, &s);
    }
    return 0;
}

static const sync_table *table_of_topic(const char *rest, size_t len)
{
    const sync_table *t = sync_schema_find(schema, rest, len);
    FUZZ_CHECK(t != NULL, "message for unknown table '%.*s'", (int)len, rest);
    return t;
}

/* Checks one delta; returns its number of changes (0 for a partition's: the table's own delta
 * carries each change once). */
static size_t check_delta(const cloud_msg *m, const char *rest)
{
    static dctx x; /* large */
    char err[512] = "";
    memset(&x, 0, sizeof x);
    const char *slash = strchr(rest, '/');
    x.t = table_of_topic(rest, slash ? (size_t)(slash - rest) : strlen(rest));
    x.part = slash != NULL;
    FUZZ_CHECK(!x.part || strcmp(x.t->name, FUZZ_PART_TABLE) == 0,
               "a partition delta of an unpartitioned table: %s", m->topic);
    x.what = x.part ? "partition delta" : "delta";
    int rc = sync_delta_decode(m->payload, m->len, NULL, d_hdr, d_change, &x, err, sizeof err);
    FUZZ_CHECK(rc == SYNC_OK, "delta on %s does not decode: %s", m->topic, err);
    return x.part ? 0 : x.n;
}

/* A retained row state; when no later message in the queue is for the same key, it must be
 * what the store holds. */
static void check_row(const cloud_msg *m, const char *rest)
{
    static sync_change c; /* large */
    char err[512] = "", topic[SYNC_TOPIC_MAX];
    const char *table;
    size_t table_len;
    const char *slash = strchr(rest, '/');
    FUZZ_CHECK(slash != NULL, "row topic %s", m->topic);
    const sync_table *t = table_of_topic(rest, (size_t)(slash - rest));
    int pc = strcmp(t->name, FUZZ_PART_TABLE) == 0
                 ? sync_table_col(t, FUZZ_PART_COL, strlen(FUZZ_PART_COL))
                 : -1;
    if (m->len == 0) {
        /* Only a row that left a partition has its old topic emptied. */
        FUZZ_CHECK(pc >= 0 && strchr(slash + 1, '/') != NULL, "empty row message on %s",
                   m->topic);
        return;
    }
    int rc = sync_row_decode(m->payload, m->len, NULL, &c, &table, &table_len, err, sizeof err);
    FUZZ_CHECK(rc == SYNC_OK, "row on %s does not decode: %s", m->topic, err);
    FUZZ_CHECK(table_len == strlen(t->name) && memcmp(table, t->name, table_len) == 0,
               "row names another table than its topic");
    check_key("row", t, &c.key);
    FUZZ_CHECK(c.version >= 1 || known("client-base-version"), "row message with version 0");
    FUZZ_CHECK(sync_id_valid(c.origin, c.origin_len), "row: origin is not a device id");
    check_cols("row", t, &c.key, c.cols, c.ncols, c.op != SYNC_OP_DELETE);
    if (pc >= 0 && c.op != SYNC_OP_DELETE) {
        /* Under its partition: the value of the partition column. */
        const sync_value *part = NULL;
        for (size_t i = 0; i < c.ncols; i++)
            if ((int)i == pc)
                part = &c.cols[i].v;
        FUZZ_CHECK(part != NULL, "row of a partitioned table without its partition");
        rc = sync_topic_row_part(topic, sizeof topic, FUZZ_TENANT, t->name, part, &c.key);
    } else {
        rc = sync_topic_row(topic, sizeof topic, FUZZ_TENANT, t->name, &c.key);
        if (pc >= 0 && rc == SYNC_OK) {
            /* A tombstone keeps its partition level: rows/notes/PART/KEY; compare the key. */
            const char *tail = strrchr(topic, '/');
            size_t tl = strlen(tail), ml = strlen(m->topic);
            if (ml > tl && strcmp(m->topic + ml - tl, tail) == 0)
                snprintf(topic, sizeof topic, "%s", m->topic);
        }
    }
    FUZZ_CHECK(rc == SYNC_OK && strcmp(topic, m->topic) == 0, "row topic %s, but its key makes %s",
               m->topic, topic);
    int n = 0;
    for (const cloud_msg *o = m->next; o; o = o->next)
        if (++n > 256 || strcmp(o->topic, m->topic) == 0)
            return;
    shown s = {"row message", c.op == SYNC_OP_DELETE, c.version, 1,      c.hlc, c.cseq,
               c.origin,      c.origin_len,           c.cols,    c.ncols};
    check_against_store(t, &c.key, &s);
}

/* A partition's retained head: one entry, its table, the same cseq as the top. */
static int one_entry(void *ctx, const sync_head_entry *e)
{
    uint64_t *c = ctx;
    FUZZ_CHECK(e->table_len == strlen(FUZZ_PART_TABLE) &&
                   memcmp(e->table, FUZZ_PART_TABLE, e->table_len) == 0 && c[1]++ == 0,
               "partition head entries");
    c[0] = e->cseq;
    return 0;
}

static void check_part_head(const cloud_msg *m)
{
    uint64_t top = 0, c[2] = {0, 0};
    char err[256] = "";
    FUZZ_CHECK(sync_head_decode(m->payload, m->len, &top, one_entry, c, err, sizeof err) ==
                       SYNC_OK &&
                   c[1] == 1 && c[0] == top,
               "partition head on %s: %s", m->topic, err);
}

/* Checks what one committed transaction published: acks for the batches in exps, deltas, row
 * states and events. With quiet set, neither row states nor change events may appear. Returns
 * the number of changes in the deltas. */
static size_t check_output(const cloud_outq *q, expect *exps, size_t nexp, int quiet)
{
    static const char prefix[] = "sync/" FUZZ_TENANT "/";
    size_t ei = 0, changes = 0;
    for (const cloud_msg *m = q->head; m; m = m->next) {
        FUZZ_CHECK(strncmp(m->topic, prefix, sizeof prefix - 1) == 0, "topic %s", m->topic);
        const char *rest = m->topic + sizeof prefix - 1;
        size_t tl = strlen(m->topic);
        if (strncmp(rest, "dev/", 4) == 0 && tl > 4 && strcmp(m->topic + tl - 4, "/ack") == 0) {
            while (ei < nexp && !exps[ei].has_hdr)
                ei++;
            FUZZ_CHECK(ei < nexp, "an ack too many: %s", m->topic);
            FUZZ_CHECK(m->qos == 1 && !m->retain, "ack qos/retain");
            check_ack(m, &exps[ei++]);
        } else if (strncmp(rest, "delta/", 6) == 0) {
            changes += check_delta(m, rest + 6);
        } else if (strncmp(rest, "rows/", 5) == 0) {
            FUZZ_CHECK(!quiet, "a row state with publish_rows off");
            FUZZ_CHECK(m->retain, "row state not retained");
            check_row(m, rest + 5);
        } else if (strncmp(rest, "head/" FUZZ_PART_TABLE "/", 6 + strlen(FUZZ_PART_TABLE)) == 0) {
            FUZZ_CHECK(m->retain, "partition head not retained");
            check_part_head(m);
        } else if (strncmp(rest, "events/", 7) == 0) {
            FUZZ_CHECK(!quiet || strcmp(rest + 7, "changes") != 0,
                       "changes event with events=batches");
            check_event(m);
        } else {
            FUZZ_CHECK(0, "unexpected topic %s", m->topic);
        }
    }
    while (ei < nexp && !exps[ei].has_hdr)
        ei++;
    FUZZ_CHECK(ei == nexp, "batch %zu of the transaction got no ack", ei);
    return changes;
}

/* ---- one input ---- */

typedef struct frame {
    unsigned ctl;
    const uint8_t *p;
    size_t n;
} frame;

/* Compaction is exactly ctl FUZZ_CTL_COMPACT with no payload: an input whose compaction removes
 * tombstones makes the store be reopened after it (several times the cost of an input), so
 * such inputs must stay rare among random mutations. */
static int is_compact(const frame *f)
{
    return f->ctl == FUZZ_CTL_COMPACT && f->n == 0;
}

/* Every other frame but a pull is a batch. */
static int is_batch(const frame *f)
{
    return FUZZ_CTL_ACTION(f->ctl) != FUZZ_ACT_PULL && !is_compact(f);
}

static size_t split(const uint8_t *data, size_t size, frame *out, size_t max)
{
    size_t nf = 0, start = 0;
    for (size_t i = 0; i <= size && nf < max; i++) {
        int sep = i + sizeof fuzz_sep <= size && memcmp(data + i, fuzz_sep, sizeof fuzz_sep) == 0;
        if (!sep && i < size)
            continue;
        if (i > start) {
            out[nf].ctl = data[start];
            out[nf].p = data + start + 1;
            out[nf].n = i - start - 1;
            nf++;
        }
        if (sep) {
            i += sizeof fuzz_sep - 1;
            start = i + 1;
        }
    }
    return nf;
}

static void free_expects(expect *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].recs);
}

/* Applies one batch inside the open transaction and checks what can be checked at once. */
static void apply_one(cloud_applier *a, expect *e)
{
    cloud_stats s0, s1;
    cloud_applier_stats(a, &s0);
    int tc0 = sqlite3_total_changes(db);
    int rc = cloud_applier_batch(a, e->device, e->payload, e->len);
    FUZZ_CHECK(rc == SYNC_OK, "cloud_applier_batch failed with %d (%s): %s", rc, sync_strerror(rc),
               cloud_store_errmsg(st));
    cloud_applier_stats(a, &s1);
    FUZZ_CHECK(s1.batches == s0.batches + 1, "batches counter");
    e->rejected = s1.rejected != s0.rejected;
    if (e->rejected)
        FUZZ_CHECK(sqlite3_total_changes(db) == tc0, "a refused batch wrote %d rows",
                   sqlite3_total_changes(db) - tc0);
    else
        FUZZ_CHECK(e->decoded && e->has_hdr, "accepted a batch that does not decode");
}

static void commit_and_flush(cloud_applier *a, cloud_outq *q)
{
    int rc = cloud_store_commit(st);
    FUZZ_CHECK(rc == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
    rc = cloud_applier_flush(a, q);
    FUZZ_CHECK(rc == SYNC_OK, "flush: %d", rc);
}

/* Sends an accepted batch again, in its own transaction: nothing may change, and every result
 * must be DUPLICATE with the row as stored. */
static void replay(cloud_applier *a, const cloud_config *c, const expect *orig, int quiet)
{
    expect e;
    cloud_outq q;
    FUZZ_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    expect_batch(&e, c, orig->device, orig->payload, orig->len);
    e.replay = 1;
    int tc0 = sqlite3_total_changes(db);
    apply_one(a, &e);
    FUZZ_CHECK(!e.rejected, "a resent batch was refused");
    FUZZ_CHECK(sqlite3_total_changes(db) == tc0, "a resent batch wrote %d rows",
               sqlite3_total_changes(db) - tc0);
    cloud_outq_init(&q);
    commit_and_flush(a, &q);
    for (const cloud_msg *m = q.head; m; m = m->next)
        FUZZ_CHECK(strstr(m->topic, "/delta/") == NULL && strstr(m->topic, "/rows/") == NULL,
                   "a resent batch published %s", m->topic);
    check_output(&q, &e, 1, quiet);
    cloud_outq_clear(&q);
    free(e.recs);
}

/* Runs frames[i..j) (batch frames) as one transaction. */
static void run_transaction(cloud_applier *a, unsigned variant, const frame *f, size_t n)
{
    const cloud_config *c = config_of(variant);
    int rollback = (f[n - 1].ctl & FUZZ_CTL_ROLLBACK) != 0;
    uint64_t fp0 = rollback ? fingerprint() : 0;
    expect *exps = calloc(n, sizeof *exps);
    cloud_outq q;
    cloud_stats s0, s1;
    FUZZ_CHECK(exps != NULL, "out of memory");
    cloud_applier_stats(a, &s0);
    FUZZ_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    for (size_t i = 0; i < n; i++) {
        expect_batch(&exps[i], c, fuzz_devices[FUZZ_CTL_DEVICE(f[i].ctl)], f[i].p, f[i].n);
        apply_one(a, &exps[i]);
    }
    cloud_outq_init(&q);
    if (trace)
        fprintf(stderr, "fuzz_apply: transaction of %zu batches ends with %s\n", n,
                rollback ? "ROLLBACK" : "COMMIT");
    if (rollback) {
        cloud_store_rollback(st);
        cloud_applier_discard(a);
        FUZZ_CHECK(fingerprint() == fp0, "the store differs after a rollback");
        FUZZ_CHECK(cloud_applier_flush(a, &q) == SYNC_OK && q.n == 0,
                   "%zu messages published after a rollback", q.n);
    } else {
        commit_and_flush(a, &q);
        size_t changes = check_output(&q, exps, n, (variant & FUZZ_VAR_QUIET) != 0);
        cloud_applier_stats(a, &s1);
        /* Every change applied is published in a delta, once. */
        FUZZ_CHECK(changes == s1.applied - s0.applied, "%zu changes in deltas, %" PRIu64 " applied",
                   changes, s1.applied - s0.applied);
        cloud_outq_clear(&q);
        for (size_t i = 0; i < n; i++)
            if (!exps[i].rejected)
                replay(a, c, &exps[i], (variant & FUZZ_VAR_QUIET) != 0);
    }
    cloud_outq_clear(&q);
    free_expects(exps, n);
    free(exps);
}

typedef struct pagectx {
    dctx d; /* first: the change callback takes the context as a dctx */
    int saw;
    sync_page_hdr h;
} pagectx;

static int pg_hdr(void *ctx, const sync_page_hdr *h)
{
    pagectx *x = ctx;
    FUZZ_CHECK(h->table_len == strlen(x->d.t->name) &&
                   memcmp(h->table, x->d.t->name, h->table_len) == 0,
               "page for another table");
    x->saw = 1;
    x->h = *h;
    x->d.last_cseq = h->after;
    return 0;
}

/* Answers one catch-up request and checks the page against the store. */
static void run_pull(cloud_puller *p, const cloud_config *c, const frame *f)
{
    const char *device = fuzz_devices[FUZZ_CTL_DEVICE(f->ctl)];
    char topic[SYNC_TOPIC_MAX], resp[SYNC_TOPIC_MAX], err[512] = "";
    static uint8_t corr[] = {'c', 'o', 'r', 'r', 0, 1};
    sync_topic_dev(topic, sizeof topic, FUZZ_TENANT, device, "pull");
    sync_topic_dev(resp, sizeof resp, FUZZ_TENANT, device, "resp");
    sync_mqtt_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.topic = topic;
    msg.payload = (uint8_t *)(uintptr_t)f->p; /* the puller only reads it */
    msg.len = f->n;
    msg.response_topic = (f->ctl & FUZZ_CTL_GROUP) ? NULL : resp;
    msg.corr = corr;
    msg.corr_len = sizeof corr;
    sync_pull req;
    int req_ok = sync_pull_decode(f->p, f->n, &req, NULL, 0) == SYNC_OK;
    cloud_outq q;
    cloud_outq_init(&q);
    int rc = cloud_puller_handle(p, device, &msg, &q, err, sizeof err);
    if (rc != SYNC_OK) {
        if (trace)
            fprintf(stderr, "fuzz_apply: pull refused: %s\n", err);
        FUZZ_CHECK(q.n == 0, "a refused pull published %zu messages", q.n);
        FUZZ_CHECK(rc != SYNC_ERR_DB && rc != SYNC_ERR_NOMEM, "pull failed: %s", err);
        const sync_table *rt = req_ok ? sync_schema_find(schema, req.table, req.table_len) : NULL;
        int part_ok = !req_ok || !req.has_part ||
                      (rt && strcmp(rt->name, FUZZ_PART_TABLE) == 0 &&
                       req.part.type == SYNC_TEXT);
        sync_value sk = req.snap_key;
        int key_ok = !req_ok || !req.has_snap_key ||
                     (rt && sync_column_check(rt, rt->key, &sk, NULL, 0) == SYNC_OK);
        FUZZ_CHECK(!req_ok || !rt || !part_ok || !key_ok, "a valid pull was refused: %s", err);
        return;
    }
    FUZZ_CHECK(req_ok, "a malformed pull was answered");
    FUZZ_CHECK(q.n == 1 && strcmp(q.head->topic, resp) == 0, "pull answer on %s",
               q.n ? q.head->topic : "(none)");
    FUZZ_CHECK(q.head->corr_len == sizeof corr && memcmp(q.head->corr, corr, sizeof corr) == 0,
               "pull answer lost its correlation data");
    const sync_table *t = sync_schema_find(schema, req.table, req.table_len);
    pagectx x;
    memset(&x, 0, sizeof x);
    x.d.t = t;
    x.d.what = "page";
    x.d.page = 1;
    x.d.part = req.has_part;
    x.d.keyorder = req.snap;
    if (req.has_snap_key) {
        x.d.last_key = req.snap_key;
        sync_column_check(t, t->key, &x.d.last_key, NULL, 0);
        x.d.have_key = 1;
    }
    int rc2 =
        sync_page_decode(q.head->payload, q.head->len, NULL, pg_hdr, d_change, &x, err, sizeof err);
    FUZZ_CHECK(rc2 == SYNC_OK && x.saw, "page does not decode: %s", err);
    if (req.snap) {
        /* A snapshot page: key order, `next` the snapshot's cseq (the table's newest for the
         * first page: nothing else writes here meanwhile), every row at or below it. */
        uint64_t high = req.snap_high;
        if (high == 0)
            FUZZ_CHECK(cloud_store_table_cseq(st, t, &high) == SYNC_OK, "table_cseq");
        FUZZ_CHECK(x.h.after == 0 && x.h.next == high, "snapshot page after %" PRIu64
                   ", next %" PRIu64 " (snapshot %" PRIu64 ")", x.h.after, x.h.next, high);
        FUZZ_CHECK(req.snap_high != 0 || x.d.last_cseq <= high, "snapshot row above its cseq");
        FUZZ_CHECK(x.h.done == (x.h.remaining == 0), "page done %d with %" PRIu64 " remaining",
                   x.h.done, x.h.remaining);
        cloud_outq_clear(&q);
        return;
    }
    uint64_t horizon = 0;
    if (req.has_part)
        FUZZ_CHECK(cloud_store_part_compacted(st, t, &req.part, &horizon) == SYNC_OK,
                   "part_compacted");
    else
        horizon = cloud_store_compacted(st, t);
    FUZZ_CHECK(x.h.after == req.after ||
                   (x.h.after == 0 && !req.full && req.after > 0 && req.after < horizon),
               "page after %" PRIu64 " for a request after %" PRIu64, x.h.after, req.after);
    uint64_t limit = req.limit < (uint64_t)c->pull_rows ? req.limit : (uint64_t)c->pull_rows;
    FUZZ_CHECK(x.h.nchanges <= limit && x.d.n == x.h.nchanges,
               "page of %zu rows (limit %" PRIu64 ")", x.h.nchanges, limit);
    FUZZ_CHECK(x.h.next == x.d.last_cseq, "page next %" PRIu64 ", last row %" PRIu64, x.h.next,
               x.d.last_cseq);
    FUZZ_CHECK(x.h.done == (x.h.remaining == 0), "page done %d with %" PRIu64 " remaining",
               x.h.done, x.h.remaining);
    if (trace)
        fprintf(stderr,
                "fuzz_apply: page of '%s' for %s: after %" PRIu64 ", %zu rows, next %" PRIu64
                ", done %d\n",
                t->name, device, x.h.after, x.h.nchanges, x.h.next, x.h.done);
    cloud_outq_clear(&q);
}

typedef struct headctx {
    int n;
    uint64_t max;
} headctx;

static int on_head(void *ctx, const sync_head_entry *e)
{
    headctx *h = ctx;
    const sync_table *t = sync_schema_table(schema, h->n++);
    FUZZ_CHECK(t && e->table_len == strlen(t->name) && memcmp(e->table, t->name, e->table_len) == 0,
               "head entry %d", h->n - 1);
    if (e->cseq > h->max)
        h->max = e->cseq;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    frame f[FUZZ_MAX_FRAMES];
    char err[512];
    if (size < 1)
        return 0;
    unsigned variant = data[0] & (FUZZ_VARIANTS - 1);
    int tc0 = sqlite3_total_changes(db);
    const cloud_config *c = config_of(variant);
    size_t nf = split(data + 1, size - 1, f, FUZZ_MAX_FRAMES);
    cloud_applier *a = NULL;
    cloud_puller *p = NULL;
    int rc = cloud_applier_new(st, schema, c, &a, err, sizeof err);
    FUZZ_CHECK(rc == SYNC_OK, "applier: %s", err);
    for (size_t i = 0; i < nf;) {
        if (FUZZ_CTL_ACTION(f[i].ctl) == FUZZ_ACT_PULL) {
            if (!p)
                FUZZ_CHECK(cloud_puller_new(st, schema, c, &p, err, sizeof err) == SYNC_OK,
                           "puller: %s", err);
            run_pull(p, c, &f[i]);
            i++;
        } else if (is_compact(&f[i])) {
            uint64_t removed = 0;
            rc = cloud_compact(st, schema, 1, (int64_t)1 << 62, &removed, err, sizeof err);
            FUZZ_CHECK(rc == SYNC_OK, "compaction: %s", err);
            if (trace)
                fprintf(stderr, "fuzz_apply: compaction removed %" PRIu64 " tombstones\n", removed);
            /* Only a compaction that removed something moves the horizons the store caches. */
            store_dirty |= removed > 0;
            i++;
        } else {
            size_t j = i + 1;
            while (j < nf && is_batch(&f[j]) && (f[j - 1].ctl & FUZZ_CTL_GROUP) &&
                   !(f[j - 1].ctl & FUZZ_CTL_ROLLBACK))
                j++;
            run_transaction(a, variant, &f[i], j - i);
            i = j;
        }
    }
    /* The retained head names every table with the newest cseq published. */
    cloud_outq q;
    cloud_outq_init(&q);
    FUZZ_CHECK(cloud_applier_head(a, &q) == SYNC_OK && q.n >= 1 &&
                   strcmp(q.head->topic, "sync/" FUZZ_TENANT "/head") == 0,
               "head");
    for (const cloud_msg *m = q.head->next; m; m = m->next)
        check_part_head(m); /* and each partition's, once per applier */
    uint64_t top = 0;
    headctx hc = {0, 0};
    FUZZ_CHECK(sync_head_decode(q.head->payload, q.head->len, &top, on_head, &hc, err,
                                sizeof err) == SYNC_OK,
               "head does not decode: %s", err);
    FUZZ_CHECK(hc.n == sync_schema_ntables(schema) && top == hc.max,
               "head: %d tables, cseq %" PRIu64 " (max %" PRIu64 ")", hc.n, top, hc.max);
    cloud_outq_clear(&q);
    cloud_applier_free(a);
    cloud_puller_free(p);
    check_store();
    store_reset(tc0);
    return 0;
}
