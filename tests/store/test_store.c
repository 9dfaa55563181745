/* test_store.c - the cloud store's backends against the contract of cloud/store.h.
 *
 * Without arguments it checks the SQLite backend; with --pg it starts a throwaway PostgreSQL
 * server (th_pg_start) and checks the PostgreSQL backend the same way (partitioned tables
 * included: a partition's newest cseq, its pages of rows and leaves, the partition values and
 * the compaction of leaves with a horizon per partition; snapshot pages in key order, with
 * integer, text and blob keys compared as the edge's SQLite does, also in a database whose
 * default collation is ICU's), then what only it has:
 *   - values written and read back bit for bit (int64 extremes, doubles with -0.0, infinities,
 *     subnormals and large exponents, NaN stored as NULL as SQLite does, text in any UTF-8,
 *     blobs with NUL bytes, empty text and blobs that stay what they are), through row_get,
 *     catch-up pages and the checksum, which must equal SQLite's for the same rows, also in a
 *     database whose default collation is not C;
 *   - change sequence numbers rewound by rollbacks and kept by commits, across reopening;
 *   - a schema that grows (columns and tables added), an older schema and a column of another
 *     type refused with a message; a database not in UTF8 refused;
 *   - text with a NUL byte refused and only its batch (savepoint) lost;
 *   - two connections: a write transaction holds the counter until it commits, so the other
 *     writer gets the next numbers, while a catch-up read neither waits nor sees uncommitted
 *     rows;
 *   - a connection ended by the server is made again at the next transaction;
 *   - the description for logs never shows a password.
 */
#include "harness.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cloud/store.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"
#include "sync/schema.h"

static const char *pg; /* the PostgreSQL server's connection string with --pg */

static const char schema_v1[] = "version 1\n"
                                "table vals\n"
                                "column id integer key\n"
                                "column i integer\n"
                                "column r real\n"
                                "column t text\n"
                                "column b blob\n"
                                "table tkeys\n"
                                "column k text key\n"
                                "column v integer\n"
                                "table bkeys\n"
                                "column k blob key\n"
                                "column v real\n";

/* Loads a schema from text (owned by the caller). */
static sync_schema *schema(const char *text)
{
    static int n;
    char err[256];
    const char *path = th_fmt("%s/schema%d.conf", th_tmpdir(), n++);
    FILE *f = fopen(path, "w");
    TH_CHECK(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    sync_schema *s;
    TH_CHECK(sync_schema_load(path, &s, err, sizeof err) == SYNC_OK, "schema: %s", err);
    return s;
}

static cloud_store *open_store(const char *where, const sync_schema *s)
{
    cloud_store *st;
    char err[512];
    TH_CHECK(cloud_store_open(where, s, 0, &st, err, sizeof err) == SYNC_OK, "open %s: %s", where,
             err);
    return st;
}

/* An empty store: a new SQLite file, or the PostgreSQL database emptied. */
static const char *fresh(const char *name)
{
    if (!name) {
        TH_CHECK(th_pg_exec(pg, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public") == 0,
                 "cannot empty the database");
        return pg;
    }
    return th_fmt("%s/%s.db", th_tmpdir(), name);
}

/* ---- the values ---- */

static const int64_t ints[] = {INT64_MIN, INT64_MAX, 0, -1, 1, 9007199254740993LL, -2147483649LL};
#define NI (int)(sizeof ints / sizeof ints[0])
static double reals[] = {-0.0,    0.0,      1e308,  -1e308, DBL_MAX, DBL_MIN, 5e-324,
                         -5e-324, 0.1,      -123.456, 1e-300, 3.0,   0,       0,
                         0};
#define NR (int)(sizeof reals / sizeof reals[0])
static const char *texts[] = {
    "",
    "O'Brien said \"hi\"; DROP TABLE vals; -- \\ %s %d",
    "Gr\xc3\xbc\xc3\x9f" "e \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
    "line1\nline2\ttab\r\n\x01\x7f",
    "e\xcc\x81 (combining), \xef\xbb\xbf (BOM), \xf4\x8f\xbf\xbf (U+10FFFF)",
    NULL, /* a long one, made in main */
};
#define NT (int)(sizeof texts / sizeof texts[0])
static uint8_t blob_all[256], blob_big[70000];
static const struct {
    const uint8_t *p;
    size_t n;
} blobs[] = {{(const uint8_t *)"", 0},
             {(const uint8_t *)"\0", 1},
             {blob_all, sizeof blob_all},
             {blob_big, sizeof blob_big},
             {(const uint8_t *)"\0\0x\0", 4}};
#define NB (int)(sizeof blobs / sizeof blobs[0])
#define NROWS 40

static const char *text_keys[] = {"", "a", "A", "B", "a\x01", "ab", "a b/c", "\xc3\xa9", "z",
                                  "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "Z", "_", "10", "9"};
#define NTK (int)(sizeof text_keys / sizeof text_keys[0])
static const struct {
    const char *p;
    size_t n;
} blob_keys[] = {{"", 0}, {"\0", 1}, {"\0\0", 2}, {"\0\xff", 2}, {"\x01", 1}, {"\xff", 1}};
#define NBK (int)(sizeof blob_keys / sizeof blob_keys[0])

/* Row k of table vals: every value of every list comes up, and some NULLs. */
static void vals_row(int k, sync_value *v)
{
    v[0] = (sync_value){.type = SYNC_INT, .u.i = k < NI ? ints[k] : (int64_t)k * 1000003};
    v[1] = k % 9 == 8 ? (sync_value){.type = SYNC_NULL}
                      : (sync_value){.type = SYNC_INT, .u.i = ints[k % NI]};
    v[2] = k % 11 == 10 ? (sync_value){.type = SYNC_NULL}
                        : (sync_value){.type = SYNC_REAL, .u.f = reals[k % NR]};
    v[3] = k % 7 == 6 ? (sync_value){.type = SYNC_NULL}
                      : (sync_value){.type = SYNC_TEXT,
                                     .u.b = {(const uint8_t *)texts[k % NT], strlen(texts[k % NT])}};
    v[4] = k % 13 == 12 ? (sync_value){.type = SYNC_NULL}
                        : (sync_value){.type = SYNC_BLOB, .u.b = {blobs[k % NB].p, blobs[k % NB].n}};
}

/* What a value reads back as: NaN becomes NULL; SQLite may give 0.0 for -0.0. */
static int same(const sync_value *want, const sync_value *got, int exact_zero)
{
    if (want->type == SYNC_REAL && isnan(want->u.f))
        return got->type == SYNC_NULL;
    if (want->type != got->type)
        return 0;
    switch (want->type) {
    case SYNC_NULL:
        return 1;
    case SYNC_INT:
        return want->u.i == got->u.i;
    case SYNC_REAL:
        if (!exact_zero && want->u.f == 0.0)
            return got->u.f == 0.0;
        return memcmp(&want->u.f, &got->u.f, sizeof(double)) == 0;
    default:
        return want->u.b.n == got->u.b.n &&
               (want->u.b.n == 0 || memcmp(want->u.b.p, got->u.b.p, want->u.b.n) == 0);
    }
}

static cloud_row row_of(const sync_table *t, const sync_value *v, uint64_t cseq)
{
    cloud_row r;
    memset(&r, 0, sizeof r);
    r.exists = 1;
    r.version = 1;
    r.hlc = (uint64_t)1795000000000 << 16;
    r.cseq = cseq;
    snprintf(r.origin, sizeof r.origin, "dev-%" PRIu64, cseq % 3);
    for (int i = 0; i < t->ncols; i++) {
        r.vals[i] = v[i];
        r.colver[i] = (uint32_t)(i + 1) * 0x01010101u;
    }
    return r;
}

/* Writes every row of the three tables. */
static void write_all(cloud_store *st, const sync_schema *s)
{
    const sync_table *vt = sync_schema_table(s, 0), *tt = sync_schema_table(s, 1),
                     *bt = sync_schema_table(s, 2);
    sync_value v[SYNC_MAX_COLS];
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    for (int k = 0; k < NROWS; k++) {
        vals_row(k, v);
        cloud_row r = row_of(vt, v, cloud_store_next_cseq(st));
        r.deleted = k == NROWS - 1; /* a tombstone: not in the checksum, in the pages */
        TH_CHECK(cloud_store_row_put(st, vt, &v[0], &r) == SYNC_OK, "put vals %d: %s", k,
                 cloud_store_errmsg(st));
    }
    for (int k = 0; k < NTK; k++) {
        v[0] = (sync_value){.type = SYNC_TEXT, .u.b = {(const uint8_t *)text_keys[k],
                                                       strlen(text_keys[k])}};
        v[1] = (sync_value){.type = SYNC_INT, .u.i = k};
        cloud_row r = row_of(tt, v, cloud_store_next_cseq(st));
        TH_CHECK(cloud_store_row_put(st, tt, &v[0], &r) == SYNC_OK, "put tkeys: %s",
                 cloud_store_errmsg(st));
    }
    for (int k = 0; k < NBK; k++) {
        v[0] = (sync_value){.type = SYNC_BLOB,
                            .u.b = {(const uint8_t *)blob_keys[k].p, blob_keys[k].n}};
        v[1] = (sync_value){.type = SYNC_REAL, .u.f = k / 3.0};
        cloud_row r = row_of(bt, v, cloud_store_next_cseq(st));
        TH_CHECK(cloud_store_row_put(st, bt, &v[0], &r) == SYNC_OK, "put bkeys: %s",
                 cloud_store_errmsg(st));
    }
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
}

struct pulled {
    const sync_table *t;
    int n, exact_zero;
    uint64_t last;
};

static int check_pulled(void *ctx, const sync_value *key, const cloud_row *row)
{
    struct pulled *p = ctx;
    sync_value v[SYNC_MAX_COLS];
    int k = (int)(row->cseq - 1);
    TH_CHECK(row->cseq > p->last, "pages in cseq order: %" PRIu64 " after %" PRIu64, row->cseq,
             p->last);
    p->last = row->cseq;
    TH_CHECK(k >= 0 && k < NROWS, "cseq %" PRIu64 " of vals", row->cseq);
    vals_row(k, v);
    TH_CHECK(same(&v[0], key, 1), "pulled key of row %d", k);
    TH_CHECK(row->deleted == (k == NROWS - 1) && row->version == 1 && row->hlc >> 16 == 1795000000000,
             "pulled metadata of row %d", k);
    for (int i = 0; i < p->t->ncols; i++)
        TH_CHECK(same(&v[i], &row->vals[i], p->exact_zero), "pulled row %d column %d", k, i);
    p->n++;
    return 0;
}

/* Everything written reads back, by key and by page. Returns the checksums in sums. */
static void round_trip(const char *where, int exact_zero, char sums[3][80])
{
    sync_schema *s = schema(schema_v1);
    cloud_store *st = open_store(where, s);
    const sync_table *vt = sync_schema_table(s, 0);
    write_all(st, s);
    sync_value v[SYNC_MAX_COLS];
    cloud_row row;
    for (int k = 0; k < NROWS; k++) {
        vals_row(k, v);
        TH_CHECK(cloud_store_row_get(st, vt, &v[0], &row) == SYNC_OK && row.exists,
                 "get row %d: %s", k, cloud_store_errmsg(st));
        for (int i = 0; i < vt->ncols; i++)
            TH_CHECK(same(&v[i], &row.vals[i], exact_zero), "row %d column %d reads back otherwise",
                     k, i);
        TH_CHECK(row.cseq == (uint64_t)k + 1 && row.version == 1 && row.colver[2] == 0x03030303u &&
                     row.deleted == (k == NROWS - 1) && row.conflict == 0,
                 "metadata of row %d", k);
    }
    /* Keys of every kind find their rows. */
    for (int k = 0; k < NTK; k++) {
        sync_value key = {.type = SYNC_TEXT,
                          .u.b = {(const uint8_t *)text_keys[k], strlen(text_keys[k])}};
        TH_CHECK(cloud_store_row_get(st, sync_schema_table(s, 1), &key, &row) == SYNC_OK &&
                     row.exists && row.vals[1].u.i == k,
                 "text key %d", k);
    }
    for (int k = 0; k < NBK; k++) {
        sync_value key = {.type = SYNC_BLOB,
                          .u.b = {(const uint8_t *)blob_keys[k].p, blob_keys[k].n}};
        TH_CHECK(cloud_store_row_get(st, sync_schema_table(s, 2), &key, &row) == SYNC_OK &&
                     row.exists && row.vals[1].u.f == k / 3.0 && row.vals[0].u.b.n == blob_keys[k].n,
                 "blob key %d", k);
    }
    sync_value nokey = {.type = SYNC_INT, .u.i = 424242};
    TH_CHECK(cloud_store_row_get(st, vt, &nokey, &row) == SYNC_OK && !row.exists, "no row");
    /* Pages of 7 rows. */
    struct pulled p = {vt, 0, exact_zero, 0};
    uint64_t remaining, after = 0;
    do {
        int before = p.n;
        TH_CHECK(cloud_store_pull(st, vt, after, 7, check_pulled, &p, &remaining) == SYNC_OK,
                 "pull: %s", cloud_store_errmsg(st));
        TH_CHECK(remaining == (uint64_t)(NROWS - before), "remaining %" PRIu64 " at %d", remaining,
                 before);
        after = p.last;
    } while (p.n < NROWS && remaining > 7);
    TH_CHECK(p.n == NROWS, "pulled %d rows", p.n);
    uint64_t top;
    TH_CHECK(cloud_store_table_cseq(st, vt, &top) == SYNC_OK && top == NROWS, "table cseq");
    for (int i = 0; i < 3; i++) {
        char hex[65], err[256];
        long long n;
        TH_CHECK(cloud_store_checksum(st, sync_schema_table(s, i), hex, &n, err, sizeof err) ==
                     SYNC_OK,
                 "checksum: %s", err);
        snprintf(sums[i], 80, "%lld %s", n, hex);
    }
    cloud_store_close(st);
    /* --checksum's read-only opening gives the same. */
    char err[256];
    TH_CHECK(cloud_store_open_ro(where, s, &st, err, sizeof err) == SYNC_OK, "open_ro: %s", err);
    for (int i = 0; i < 3; i++) {
        char hex[65];
        long long n;
        TH_CHECK(cloud_store_checksum(st, sync_schema_table(s, i), hex, &n, err, sizeof err) ==
                         SYNC_OK &&
                     strcmp(th_fmt("%lld %s", n, hex), sums[i]) == 0,
                 "read-only checksum differs");
    }
    cloud_store_close(st);
    sync_schema_free(s);
}

/* Change sequence numbers: a rollback (of the transaction or of a savepoint) hands the same
 * numbers out again, a commit keeps them, also across reopening. */
static void cseq_rules(const char *where)
{
    sync_schema *s = schema(schema_v1);
    const sync_table *t = sync_schema_table(s, 1);
    cloud_store *st = open_store(where, s);
    sync_value v[2] = {{.type = SYNC_TEXT, .u.b = {(const uint8_t *)"k", 1}},
                       {.type = SYNC_INT, .u.i = 1}};
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin");
    uint64_t a = cloud_store_next_cseq(st), b = cloud_store_next_cseq(st);
    TH_CHECK(b == a + 1, "consecutive");
    cloud_store_rollback(st);
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin");
    TH_CHECK(cloud_store_next_cseq(st) == a, "a rollback hands the numbers out again");
    TH_CHECK(cloud_store_savepoint(st) == SYNC_OK, "savepoint");
    uint64_t c = cloud_store_next_cseq(st);
    cloud_row r = row_of(t, v, c);
    TH_CHECK(cloud_store_row_put(st, t, &v[0], &r) == SYNC_OK, "put");
    cloud_store_rollback_savepoint(st);
    TH_CHECK(cloud_store_next_cseq(st) == c, "a rolled-back savepoint hands its numbers out again");
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit");
    cloud_row got;
    TH_CHECK(cloud_store_row_get(st, t, &v[0], &got) == SYNC_OK && !got.exists,
             "the rolled-back savepoint's row is gone");
    cloud_store_close(st);
    st = open_store(where, s);
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin");
    TH_CHECK(cloud_store_next_cseq(st) == c + 1, "committed numbers are kept across reopening");
    cloud_store_rollback(st);
    /* The device table: the seq of a device rises with each batch. */
    uint64_t seq;
    TH_CHECK(cloud_store_begin(st) == SYNC_OK && cloud_store_device_seq(st, "d1", &seq) == SYNC_OK &&
                 seq == 0,
             "a new device");
    TH_CHECK(cloud_store_device_done(st, "d1", UINT64_MAX - 5, 3, 4) == SYNC_OK &&
                 cloud_store_commit(st) == SYNC_OK,
             "device_done");
    TH_CHECK(cloud_store_device_seq(st, "d1", &seq) == SYNC_OK && seq == UINT64_MAX - 5,
             "a seq above 2^63 is kept: %" PRIu64, seq);
    cloud_store_close(st);
    sync_schema_free(s);
}

/* A schema that grows is taken; an older one or a column of another type is refused. */
static void schema_changes(const char *where)
{
    sync_schema *s1 = schema(schema_v1);
    cloud_store *st = open_store(where, s1);
    write_all(st, s1);
    cloud_store_close(st);
    char v2[1024];
    snprintf(v2, sizeof v2, "%s%s", schema_v1,
             "column w integer\ntable more\ncolumn id integer key\ncolumn x text\n");
    v2[8] = '2'; /* "version 2" */
    sync_schema *s2 = schema(v2);
    st = open_store(where, s2);
    const sync_table *bt = sync_schema_table(s2, 2);
    sync_value key = {.type = SYNC_BLOB, .u.b = {(const uint8_t *)"\xff", 1}};
    cloud_row row;
    TH_CHECK(cloud_store_row_get(st, bt, &key, &row) == SYNC_OK && row.exists &&
                 row.vals[2].type == SYNC_NULL && row.vals[1].u.f == 5 / 3.0,
             "an old row in a widened table: the new column is NULL");
    cloud_store_close(st);
    char err[512];
    if (cloud_store_is_pg(where)) {
        TH_CHECK(cloud_store_open(where, s1, 0, &st, err, sizeof err) == SYNC_ERR_SCHEMA &&
                     st == NULL && strstr(err, "schema version 2") && strstr(err, "version 1"),
                 "an older schema is refused: %s", err);
        printf("store: an older schema: %s\n", err);
        char v3[1024];
        snprintf(v3, sizeof v3, "%s", v2);
        v3[8] = '3';
        char *i = strstr(v3, "column i integer");
        memcpy(i, "column i text   ", 16);
        sync_schema *s3 = schema(v3);
        TH_CHECK(cloud_store_open(where, s3, 0, &st, err, sizeof err) == SYNC_ERR_SCHEMA &&
                     strstr(err, "'i'") && strstr(err, "bigint"),
                 "a column of another type is refused: %s", err);
        printf("store: another type: %s\n", err);
        sync_schema_free(s3);
    }
    sync_schema_free(s1);
    sync_schema_free(s2);
}

/* ---- partitions ---- */

static const char schema_parts[] = "version 1\n"
                                   "table sales\n"
                                   "column id integer key\n"
                                   "column store integer notnull\n"
                                   "column amount real\n"
                                   "table notes\n"
                                   "column id text key\n"
                                   "column region text notnull\n"
                                   "column body text\n";

static sync_value ival(int64_t i)
{
    return (sync_value){.type = SYNC_INT, .u.i = i};
}

static sync_value tval(const char *s)
{
    return (sync_value){.type = SYNC_TEXT, .u.b = {(const uint8_t *)s, strlen(s)}};
}

/* Writes the row key in partition part with a new cseq (returned) inside the open transaction:
 * hlc is cseq << 16, the third column set. A row that moves from partition `from` (non-NULL)
 * leaves it by the same change: hlc cseq << 16 | 7, origin "mover-CSEQ". */
static uint64_t put_part(cloud_store *st, const sync_table *t, sync_value key, sync_value part,
                         uint64_t version, int deleted, const sync_value *from)
{
    uint64_t c = cloud_store_next_cseq(st);
    sync_value v[3] = {key, part,
                       t->cols[2].type == SYNC_REAL
                           ? (sync_value){.type = SYNC_REAL, .u.f = (double)c / 4}
                           : tval("body")};
    cloud_row r = row_of(t, v, c);
    r.version = version;
    r.deleted = deleted;
    r.hlc = c << 16;
    TH_CHECK(cloud_store_row_put(st, t, &key, &r) == SYNC_OK, "put cseq %" PRIu64 ": %s", c,
             cloud_store_errmsg(st));
    if (from) {
        char origin[32];
        snprintf(origin, sizeof origin, "mover-%" PRIu64, c);
        TH_CHECK(cloud_store_leave(st, t, from, &key, version, c, c << 16 | 7, origin) == SYNC_OK,
                 "leave at cseq %" PRIu64 ": %s", c, cloud_store_errmsg(st));
    }
    return c;
}

/* One change a partition pull must give: a row (or tombstone) or a leave. */
typedef struct want_item {
    uint64_t cseq, version;
    int64_t id;      /* the key (sales) */
    const char *tid; /* the key (notes), or NULL */
    int left, deleted;
} want_item;

struct part_pull {
    const sync_table *t;
    sync_value part;
    const want_item *want;
    int nwant;
    int at;      /* changes consumed so far */
    int calls;   /* callbacks in this call of pull_part */
    int stop_at; /* returns 1 at this callback (0: never) */
    int fail_at; /* returns SYNC_ERR_IO at this callback (0: never) */
};

static int check_part_item(void *ctx, const sync_value *key, const cloud_row *row)
{
    struct part_pull *p = ctx;
    p->calls++;
    if (p->stop_at == p->calls)
        return 1;
    if (p->fail_at == p->calls)
        return SYNC_ERR_IO;
    TH_CHECK(p->at < p->nwant, "more changes than %d in the partition (cseq %" PRIu64 ")", p->nwant,
             row->cseq);
    const want_item *w = &p->want[p->at];
    TH_CHECK(row->cseq == w->cseq, "change %d: cseq %" PRIu64 ", expected %" PRIu64, p->at,
             row->cseq, w->cseq);
    sync_value k = w->tid ? tval(w->tid) : ival(w->id);
    TH_CHECK(same(&k, key, 1) && same(&k, &row->vals[p->t->key], 1), "cseq %" PRIu64 ": the key",
             row->cseq);
    TH_CHECK(row->exists && row->left == w->left && row->deleted == (w->deleted || w->left) &&
                 row->version == w->version,
             "cseq %" PRIu64 ": left %d deleted %d version %" PRIu64, row->cseq, row->left,
             row->deleted, row->version);
    char origin[32];
    if (w->left)
        snprintf(origin, sizeof origin, "mover-%" PRIu64, w->cseq);
    else
        snprintf(origin, sizeof origin, "dev-%" PRIu64, w->cseq % 3);
    TH_CHECK(row->hlc == (w->cseq << 16 | (w->left ? 7 : 0)) && strcmp(row->origin, origin) == 0,
             "cseq %" PRIu64 ": hlc %" PRIu64 " origin %s", row->cseq, row->hlc, row->origin);
    for (int i = 0; i < p->t->ncols; i++) {
        if (i == p->t->key)
            continue;
        if (w->left)
            TH_CHECK(row->vals[i].type == SYNC_NULL, "cseq %" PRIu64 ": a leave has no values",
                     row->cseq);
        else if (i == 1)
            TH_CHECK(same(&p->part, &row->vals[1], 1), "cseq %" PRIu64 ": the partition column",
                     row->cseq);
        else
            TH_CHECK(row->vals[i].type != SYNC_NULL, "cseq %" PRIu64 ": column %d", row->cseq, i);
    }
    p->at++;
    return 0;
}

/* Pulls partition part in pages of `limit` and checks they give want, in order. */
static void part_pages(cloud_store *st, const sync_table *t, sync_value part, const want_item *want,
                       int nwant, uint64_t limit)
{
    struct part_pull p = {t, part, want, nwant, 0, 0, 0, 0};
    uint64_t after = 0, remaining;
    int pages = 0, got;
    do {
        int before = p.at;
        p.calls = 0;
        TH_CHECK(cloud_store_pull_part(st, t, &part, after, limit, check_part_item, &p,
                                       &remaining) == SYNC_OK,
                 "pull_part: %s", cloud_store_errmsg(st));
        got = p.at - before;
        TH_CHECK(remaining == (uint64_t)(nwant - before),
                 "%s: remaining %" PRIu64 " after %" PRIu64 ", expected %d", t->name, remaining,
                 after, nwant - before);
        TH_CHECK((uint64_t)got == (remaining < limit ? remaining : limit),
                 "%s: a page of %d after %" PRIu64, t->name, got, after);
        if (got)
            after = want[p.at - 1].cseq;
        pages++;
    } while (got);
    TH_CHECK(p.at == nwant && pages == (nwant + (int)limit - 1) / (int)limit + 1,
             "%s: %d changes in %d pages", t->name, p.at, pages);
}

static uint64_t part_cseq(cloud_store *st, const sync_table *t, sync_value part)
{
    uint64_t c = 12345;
    TH_CHECK(cloud_store_part_cseq(st, t, &part, &c) == SYNC_OK, "part_cseq: %s",
             cloud_store_errmsg(st));
    return c;
}

static uint64_t part_compacted(cloud_store *st, const sync_table *t, sync_value part)
{
    uint64_t c = 12345;
    TH_CHECK(cloud_store_part_compacted(st, t, &part, &c) == SYNC_OK, "part_compacted: %s",
             cloud_store_errmsg(st));
    return c;
}

/* Checks part_cseq and part_compacted of sales' partitions 1..6 against cseq[] and horizon[]. */
static void sales_parts_are(cloud_store *st, const sync_table *sales, const uint64_t cseq[6],
                            const uint64_t horizon[6], const char *when)
{
    for (int i = 0; i < 6; i++) {
        uint64_t c = part_cseq(st, sales, ival(i + 1)), h = part_compacted(st, sales, ival(i + 1));
        TH_CHECK(c == cseq[i] && h == horizon[i],
                 "%s: partition %d: part_cseq %" PRIu64 " (expected %" PRIu64
                 "), part_compacted %" PRIu64 " (expected %" PRIu64 ")",
                 when, i + 1, c, cseq[i], h, horizon[i]);
    }
}

struct part_values {
    sync_value v[8];
    char text[8][16];
    int n, stop_at, fail_at;
};

static int collect_value(void *ctx, const sync_value *v)
{
    struct part_values *pv = ctx;
    if (pv->n + 1 == pv->stop_at)
        return 1;
    if (pv->n + 1 == pv->fail_at)
        return SYNC_ERR_IO;
    TH_CHECK(pv->n < 8, "too many partitions");
    pv->v[pv->n] = *v;
    if (v->type == SYNC_TEXT) { /* valid during the callback only: kept */
        snprintf(pv->text[pv->n], sizeof pv->text[0], "%.*s", (int)v->u.b.n,
                 (const char *)v->u.b.p);
        pv->v[pv->n] = tval(pv->text[pv->n]);
    }
    pv->n++;
    return 0;
}

/* Nonzero if the n values of pv are exactly want (in any order). */
static int same_values(const struct part_values *pv, const sync_value *want, int n)
{
    if (pv->n != n)
        return 0;
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < n; j++)
            found |= same(&want[i], &pv->v[j], 1);
        if (!found)
            return 0;
    }
    return 1;
}

static int whole_no_left(void *ctx, const sync_value *key, const cloud_row *row)
{
    (void)key;
    TH_CHECK(row->left == 0, "a whole-table pull gave a leave (cseq %" PRIu64 ")", row->cseq);
    ++*(int *)ctx;
    return 0;
}

/* Partitioned tables: the partition's newest cseq (rows, tombstones and leaves), its pages
 * (rows and leaves in cseq order, remaining counts, a callback that stops or fails), one leave
 * per row and partition, the distinct partition values, compaction of old tombstones and
 * leaves: each partition's horizon rises to what was removed from it (others' stay), its
 * newest cseq never goes back, the table's horizon rises with tombstones only; all kept across
 * reopening. An integer (sales.store) and a text (notes.region) partition column. */
static void partitions(const char *where)
{
    sync_schema *s = schema(schema_parts);
    const sync_table *sales = sync_schema_table(s, 0), *notes = sync_schema_table(s, 1);
    cloud_store *st = open_store(where, s);
    sync_value s1 = ival(1), s2 = ival(2), s3 = ival(3), s4 = ival(4), s5 = ival(5), s6 = ival(6);
    uint64_t c;
    TH_CHECK(cloud_store_part_cseq(st, sales, &s1, &c) == SYNC_ERR_STATE,
             "a table not declared partitioned");
    TH_CHECK(cloud_store_partition(st, sales, 0) == SYNC_ERR_SCHEMA &&
                 cloud_store_partition(st, sales, 2) == SYNC_ERR_SCHEMA,
             "the key or a real column as partition column");
    TH_CHECK(cloud_store_partition(st, sales, 1) == SYNC_OK &&
                 cloud_store_partition(st, notes, 1) == SYNC_OK,
             "partition: %s", cloud_store_errmsg(st));
    TH_CHECK(cloud_store_partition(st, sales, 1) == SYNC_OK, "partition again: %s",
             cloud_store_errmsg(st));
    TH_CHECK(part_cseq(st, sales, s1) == 0, "an empty partition");

    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    TH_CHECK(put_part(st, sales, ival(1), s1, 1, 0, NULL) == 1, "a fresh store starts at cseq 1");
    put_part(st, sales, ival(2), s2, 1, 0, NULL);
    put_part(st, sales, ival(3), s1, 1, 0, NULL);
    put_part(st, sales, ival(4), s2, 1, 0, NULL);
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
    TH_CHECK(part_cseq(st, sales, s1) == 3 && part_cseq(st, sales, s2) == 4 &&
                 part_cseq(st, sales, s6) == 0,
             "part_cseq of rows");

    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    put_part(st, sales, ival(3), s2, 2, 0, &s1);  /* 5: 3 moves from 1 to 2 */
    put_part(st, sales, ival(2), s2, 2, 1, NULL); /* 6: 2 deleted, its tombstone stays in 2 */
    TH_CHECK(part_cseq(st, sales, s1) == 5, "a leave counts, also inside the transaction");
    put_part(st, sales, ival(5), s1, 1, 0, NULL); /* 7 */
    TH_CHECK(part_cseq(st, sales, s1) == 7 && part_cseq(st, sales, s2) == 6,
             "part_cseq inside the transaction (a tombstone counts)");
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));

    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    put_part(st, sales, ival(4), s1, 2, 0, &s2);  /* 8 */
    put_part(st, sales, ival(3), s1, 3, 0, &s2);  /* 9: 3 comes back to 1 */
    put_part(st, sales, ival(3), s2, 4, 0, &s1);  /* 10: and leaves 1 again: one leave kept */
    put_part(st, sales, ival(6), s2, 1, 0, NULL); /* 11 */
    put_part(st, sales, ival(7), s3, 1, 0, NULL); /* 12 */
    put_part(st, sales, ival(7), s3, 2, 1, NULL); /* 13: partition 3 has only a tombstone */
    put_part(st, sales, ival(8), s4, 1, 0, NULL); /* 14 */
    TH_CHECK(put_part(st, sales, ival(8), s5, 2, 0, &s4) == 15, /* 4 has only a leave */
             "cseq 15");
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));

    TH_CHECK(part_cseq(st, sales, s1) == 10 && part_cseq(st, sales, s2) == 11 &&
                 part_cseq(st, sales, s3) == 13 && part_cseq(st, sales, s4) == 15 &&
                 part_cseq(st, sales, s5) == 15 && part_cseq(st, sales, s6) == 0,
             "part_cseq: %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64,
             part_cseq(st, sales, s1), part_cseq(st, sales, s2), part_cseq(st, sales, s3),
             part_cseq(st, sales, s4), part_cseq(st, sales, s5));
    sync_value wrong = tval("1");
    TH_CHECK(cloud_store_part_cseq(st, sales, &wrong, &c) != SYNC_OK,
             "a text value for an integer partition column is refused");
    TH_CHECK(cloud_store_part_compacted(st, sales, &wrong, &c) != SYNC_OK,
             "part_compacted: a text value for an integer partition column is refused");
    printf("store: a partition value of another type: %s\n", cloud_store_errmsg(st));

    static const want_item in1[] = {{1, 1, 1, NULL, 0, 0},
                                    {7, 1, 5, NULL, 0, 0},
                                    {8, 2, 4, NULL, 0, 0},
                                    {10, 4, 3, NULL, 1, 0}};
    static const want_item in2[] = {{6, 2, 2, NULL, 0, 1},
                                    {8, 2, 4, NULL, 1, 0},
                                    {9, 3, 3, NULL, 1, 0},
                                    {10, 4, 3, NULL, 0, 0},
                                    {11, 1, 6, NULL, 0, 0}};
    static const want_item in3[] = {{13, 2, 7, NULL, 0, 1}};
    static const want_item in4[] = {{15, 2, 8, NULL, 1, 0}};
    static const want_item in5[] = {{15, 2, 8, NULL, 0, 0}};
    for (uint64_t limit = 1; limit <= 6; limit++) {
        part_pages(st, sales, s1, in1, 4, limit);
        part_pages(st, sales, s2, in2, 5, limit);
    }
    part_pages(st, sales, s3, in3, 1, 2);
    part_pages(st, sales, s4, in4, 1, 2);
    part_pages(st, sales, s5, in5, 1, 2);
    part_pages(st, sales, s6, NULL, 0, 2);

    /* A callback that stops: the change it stopped at is not consumed. One that fails: its
     * error is returned. */
    struct part_pull p = {sales, s2, in2, 5, 0, 0, 2, 0};
    uint64_t remaining;
    TH_CHECK(cloud_store_pull_part(st, sales, &s2, 0, 100, check_part_item, &p, &remaining) ==
                     SYNC_OK &&
                 p.calls == 2 && p.at == 1 && remaining == 5,
             "a callback that stops (%d calls, %d consumed)", p.calls, p.at);
    p.calls = 0;
    p.stop_at = 0;
    TH_CHECK(cloud_store_pull_part(st, sales, &s2, 6, 100, check_part_item, &p, &remaining) ==
                     SYNC_OK &&
                 p.at == 5 && remaining == 4,
             "the rest after the stop: %d", p.at);
    p = (struct part_pull){sales, s2, in2, 5, 0, 0, 0, 2};
    TH_CHECK(cloud_store_pull_part(st, sales, &s2, 0, 100, check_part_item, &p, &remaining) ==
                 SYNC_ERR_IO,
             "a callback's error is returned");

    /* Text partitions: equality is exact. */
    sync_value north = tval("north"), south = tval("south");
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    put_part(st, notes, tval("n1"), north, 1, 0, NULL);   /* 16 */
    put_part(st, notes, tval("n2"), south, 1, 0, NULL);   /* 17 */
    put_part(st, notes, tval("n3"), north, 1, 0, NULL);   /* 18 */
    put_part(st, notes, tval("n3"), south, 2, 0, &north); /* 19 */
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
    static const want_item north_want[] = {{16, 1, 0, "n1", 0, 0}, {19, 2, 0, "n3", 1, 0}};
    static const want_item south_want[] = {{17, 1, 0, "n2", 0, 0}, {19, 2, 0, "n3", 0, 0}};
    part_pages(st, notes, north, north_want, 2, 1);
    part_pages(st, notes, south, south_want, 2, 3);
    TH_CHECK(part_cseq(st, notes, north) == 19 && part_cseq(st, notes, south) == 19 &&
                 part_cseq(st, notes, tval("nort")) == 0 &&
                 part_cseq(st, notes, tval("North")) == 0,
             "text partitions");

    struct part_values pv = {0};
    sync_value sales_parts[] = {s1, s2, s3, s5};
    TH_CHECK(cloud_store_partitions(st, sales, collect_value, &pv) == SYNC_OK &&
                 same_values(&pv, sales_parts, 4),
             "the partitions of sales (%d)", pv.n);
    pv = (struct part_values){0};
    sync_value notes_parts[] = {north, south};
    TH_CHECK(cloud_store_partitions(st, notes, collect_value, &pv) == SYNC_OK &&
                 same_values(&pv, notes_parts, 2),
             "the partitions of notes (%d)", pv.n);
    pv = (struct part_values){.stop_at = 2};
    TH_CHECK(cloud_store_partitions(st, sales, collect_value, &pv) == SYNC_OK && pv.n == 1,
             "a callback that stops the partitions");
    pv = (struct part_values){.fail_at = 1};
    TH_CHECK(cloud_store_partitions(st, sales, collect_value, &pv) == SYNC_ERR_IO,
             "a callback's error is returned");

    /* The same after reopening (the tables exist already). */
    cloud_store_close(st);
    st = open_store(where, s);
    TH_CHECK(cloud_store_partition(st, sales, 1) == SYNC_OK &&
                 cloud_store_partition(st, notes, 1) == SYNC_OK,
             "partition an existing store: %s", cloud_store_errmsg(st));
    part_pages(st, sales, s2, in2, 5, 2);
    TH_CHECK(part_cseq(st, sales, s1) == 10, "part_cseq after reopening");

    /* Whole-table pulls and row_get never give a leave. */
    int n = 0;
    TH_CHECK(cloud_store_pull(st, sales, 0, 100, whole_no_left, &n, &remaining) == SYNC_OK &&
                 n == 8,
             "whole-table pull: %d rows", n);
    cloud_row row;
    row.left = 1;
    sync_value k3 = ival(3);
    TH_CHECK(cloud_store_row_get(st, sales, &k3, &row) == SYNC_OK && row.exists && !row.left &&
                 same(&s2, &row.vals[1], 1),
             "row_get");

    /* Compaction: nothing old enough, then every tombstone and leave. The table's horizon
     * rises to the newest tombstone (13; not to the newest leave, 15), the version floor to the
     * tombstones' (2); each partition's horizon to what it lost: 1 its leave at 10, 2 its
     * tombstone at 6 and leaves at 8 and 9, 3 its tombstone at 13, 4 its leave at 15; 5 and 6
     * lost nothing. No partition's newest cseq goes back. */
    static const uint64_t cseq_before[6] = {10, 11, 13, 15, 15, 0};
    static const uint64_t zero[6] = {0, 0, 0, 0, 0, 0};
    sales_parts_are(st, sales, cseq_before, zero, "before compaction");
    uint64_t removed = 99;
    TH_CHECK(cloud_store_begin(st) == SYNC_OK &&
                 cloud_store_compact(st, sales, (int64_t)sync_wall_ms() - 3600000, &removed) ==
                     SYNC_OK &&
                 cloud_store_commit(st) == SYNC_OK && removed == 0 &&
                 cloud_store_compacted(st, sales) == 0,
             "nothing to compact yet: %s", cloud_store_errmsg(st));
    sales_parts_are(st, sales, cseq_before, zero, "nothing compacted");
    TH_CHECK(cloud_store_begin(st) == SYNC_OK &&
                 cloud_store_compact(st, sales, (int64_t)sync_wall_ms() + 60000, &removed) ==
                     SYNC_OK &&
                 cloud_store_commit(st) == SYNC_OK,
             "compact: %s", cloud_store_errmsg(st));
    TH_CHECK(removed == 6 && cloud_store_compacted(st, sales) == 13 &&
                 cloud_store_version_floor(st, sales) == 2,
             "compaction removed %" PRIu64 ", horizon %" PRIu64 ", floor %" PRIu64, removed,
             cloud_store_compacted(st, sales), cloud_store_version_floor(st, sales));
    static const uint64_t horizon1[6] = {10, 9, 13, 15, 0, 0};
    sales_parts_are(st, sales, cseq_before, horizon1, "after compaction");
    static const want_item in1_after[] = {
        {1, 1, 1, NULL, 0, 0}, {7, 1, 5, NULL, 0, 0}, {8, 2, 4, NULL, 0, 0}};
    static const want_item in2_after[] = {{10, 4, 3, NULL, 0, 0}, {11, 1, 6, NULL, 0, 0}};
    part_pages(st, sales, s1, in1_after, 3, 2);
    part_pages(st, sales, s2, in2_after, 2, 2);
    part_pages(st, sales, s3, NULL, 0, 2);
    part_pages(st, sales, s4, NULL, 0, 2);
    /* A table with leaves and no tombstones: its horizon stays, its partition's rises. */
    TH_CHECK(cloud_store_begin(st) == SYNC_OK &&
                 cloud_store_compact(st, notes, (int64_t)sync_wall_ms() + 60000, &removed) ==
                     SYNC_OK &&
                 cloud_store_commit(st) == SYNC_OK,
             "compact notes: %s", cloud_store_errmsg(st));
    TH_CHECK(removed == 1 && cloud_store_compacted(st, notes) == 0 &&
                 cloud_store_version_floor(st, notes) == 0,
             "notes: removed %" PRIu64 ", horizon %" PRIu64, removed,
             cloud_store_compacted(st, notes));
    TH_CHECK(part_compacted(st, notes, north) == 19 && part_compacted(st, notes, south) == 0 &&
                 part_cseq(st, notes, north) == 19 && part_cseq(st, notes, south) == 19,
             "notes after compaction: north %" PRIu64 "/%" PRIu64 ", south %" PRIu64
             "/%" PRIu64,
             part_cseq(st, notes, north), part_compacted(st, notes, north),
             part_cseq(st, notes, south), part_compacted(st, notes, south));
    part_pages(st, notes, north, north_want, 1, 2);

    /* Horizons only rise, each by what its own partition loses; a leave alone leaves the
     * table's horizon where it is. Seen inside the compaction's transaction too. */
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    TH_CHECK(put_part(st, sales, ival(9), s5, 1, 0, NULL) == 20, "cseq 20");
    put_part(st, sales, ival(9), s5, 2, 1, NULL); /* 21: a tombstone in 5 */
    put_part(st, sales, ival(6), s6, 2, 0, &s2);  /* 22: 6 moves from 2 to 6 */
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
    static const uint64_t cseq_before2[6] = {10, 22, 13, 15, 21, 22};
    sales_parts_are(st, sales, cseq_before2, horizon1, "before the second compaction");
    TH_CHECK(cloud_store_begin(st) == SYNC_OK &&
                 cloud_store_compact(st, sales, (int64_t)sync_wall_ms() + 60000, &removed) ==
                     SYNC_OK,
             "compact again: %s", cloud_store_errmsg(st));
    static const uint64_t horizon2[6] = {10, 22, 13, 15, 21, 0};
    sales_parts_are(st, sales, cseq_before2, horizon2, "inside the second compaction");
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
    TH_CHECK(removed == 2 && cloud_store_compacted(st, sales) == 21 &&
                 cloud_store_version_floor(st, sales) == 2,
             "second compaction removed %" PRIu64 ", horizon %" PRIu64, removed,
             cloud_store_compacted(st, sales));
    sales_parts_are(st, sales, cseq_before2, horizon2, "after the second compaction");
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    put_part(st, sales, ival(10), s3, 1, 0, &s1); /* 23: only a leave is old enough below */
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
    TH_CHECK(cloud_store_begin(st) == SYNC_OK &&
                 cloud_store_compact(st, sales, (int64_t)sync_wall_ms() + 60000, &removed) ==
                     SYNC_OK &&
                 cloud_store_commit(st) == SYNC_OK,
             "compact a leave: %s", cloud_store_errmsg(st));
    static const uint64_t cseq3[6] = {23, 22, 23, 15, 21, 22};
    static const uint64_t horizon3[6] = {23, 22, 13, 15, 21, 0};
    TH_CHECK(removed == 1 && cloud_store_compacted(st, sales) == 21,
             "a leave alone: removed %" PRIu64 ", horizon %" PRIu64, removed,
             cloud_store_compacted(st, sales));
    sales_parts_are(st, sales, cseq3, horizon3, "after compacting a leave");

    cloud_store_close(st);
    st = open_store(where, s);
    TH_CHECK(cloud_store_compacted(st, sales) == 21 && cloud_store_compacted(st, notes) == 0,
             "the horizons after reopening: %" PRIu64 " %" PRIu64,
             cloud_store_compacted(st, sales), cloud_store_compacted(st, notes));
    TH_CHECK(cloud_store_partition(st, sales, 1) == SYNC_OK &&
                 cloud_store_partition(st, notes, 1) == SYNC_OK,
             "partition again: %s", cloud_store_errmsg(st));
    sales_parts_are(st, sales, cseq3, horizon3, "after reopening");
    TH_CHECK(part_compacted(st, notes, north) == 19 && part_compacted(st, notes, south) == 0 &&
                 part_cseq(st, notes, north) == 19,
             "notes' partition horizons after reopening");
    cloud_store_close(st);
    sync_schema_free(s);
}

/* ---- snapshot pages (pull_keys) ---- */

static const char schema_snap[] = "version 1\n"
                                  "table snapi\n"
                                  "column id integer key\n"
                                  "column v text\n"
                                  "column n integer\n"
                                  "table snapt\n"
                                  "column k text key\n"
                                  "column v text\n"
                                  "column n integer\n"
                                  "table snapb\n"
                                  "column k blob key\n"
                                  "column v text\n"
                                  "column n integer\n";

/* Keys in an order that is not theirs. Text: upper and lower case, bytes >= 0x80 (é, É, à, CJK,
 * an emoji) and digits, which a locale's collation orders otherwise than bytes do ("a" < "B",
 * "é" next to "e"); blobs: 0x80 and 0xff bytes, NULs and prefixes. */
static const int64_t snap_ints[] = {5,         -1, INT64_MAX, 0,  -9000000000LL, 1000,
                                    INT64_MIN, 1,  -2,        77, 3000000000LL,  -100};
static const char *snap_texts[] = {"a", "B", "\xc3\xa9", "A", "b", "Z", "_", "ab", "a b",
                                   "\xc3\x89", "e", "E", "", "10", "9", "\xe6\x97\xa5",
                                   "\xf0\x9f\x98\x80", "a\x01", "z", "\xc3\xa0"};
static const struct {
    const char *p;
    size_t n;
} snap_blobs[] = {{"\x80", 1}, {"", 0},       {"\xff", 1}, {"\0", 1}, {"\0\xff", 2}, {"\x01", 1},
                  {"\0\0", 2}, {"\xff\0", 2}, {"\x7f", 1}, {"A", 1},  {"a", 1}};
#define SNAP_MAX 20

/* One row of a snapshot table as the pages must give it. */
typedef struct snap_item {
    sync_value key;
    int idx; /* position in the key list (column n: idx * 1000 + version) */
    uint64_t version, cseq;
    int deleted; /* a tombstone: no values but the key */
    char v[24];  /* column v */
} snap_item;

/* What the edge's SQLite does with keys of one type: integers by value, text and blobs by
 * their bytes, a prefix first. */
static int key_cmp(const sync_value *a, const sync_value *b)
{
    if (a->type == SYNC_INT)
        return (a->u.i > b->u.i) - (a->u.i < b->u.i);
    size_t n = a->u.b.n < b->u.b.n ? a->u.b.n : b->u.b.n;
    int c = n ? memcmp(a->u.b.p, b->u.b.p, n) : 0;
    return c ? c : (a->u.b.n > b->u.b.n) - (a->u.b.n < b->u.b.n);
}

static int item_cmp(const void *a, const void *b)
{
    return key_cmp(&((const snap_item *)a)->key, &((const snap_item *)b)->key);
}

/* Writes item it (version, tombstone or not) with a new cseq inside the open transaction. */
static void snap_put(cloud_store *st, const sync_table *t, snap_item *it, uint64_t version,
                     int deleted)
{
    it->version = version;
    it->deleted = deleted;
    it->cseq = cloud_store_next_cseq(st);
    snprintf(it->v, sizeof it->v, "v%d-%" PRIu64, it->idx, version);
    sync_value null = {.type = SYNC_NULL};
    sync_value v[3] = {it->key, deleted ? null : tval(it->v),
                       deleted ? null : ival(it->idx * 1000 + (int64_t)version)};
    cloud_row r = row_of(t, v, it->cseq);
    r.version = version;
    r.deleted = deleted;
    r.hlc = it->cseq << 16 | 5;
    TH_CHECK(cloud_store_row_put(st, t, &it->key, &r) == SYNC_OK, "%s: put: %s", t->name,
             cloud_store_errmsg(st));
}

/* Fills t with the n keys: inserted in a scrambled order, then some updated and some deleted
 * in a second transaction, so cseq order is not key order. items[] ends up in key order. */
static void snap_fill(cloud_store *st, const sync_table *t, const sync_value *keys, int n,
                      snap_item *items)
{
    TH_CHECK(n >= 7 && n <= SNAP_MAX && n % 7 != 0, "%d keys: 7 to %d, scrambled by 7", n,
             SNAP_MAX);
    for (int i = 0; i < n; i++)
        items[i] = (snap_item){.key = keys[i], .idx = i};
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    for (int j = 0; j < n; j++)
        snap_put(st, t, &items[j * 7 % n], 1, 0);
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin: %s", cloud_store_errmsg(st));
    for (int i = n - 1; i >= 0; i--) {
        if (i % 3 == 1)
            snap_put(st, t, &items[i], 2, 0);
        if (i % 4 == 2)
            snap_put(st, t, &items[i], 3, 1);
    }
    TH_CHECK(cloud_store_commit(st) == SYNC_OK, "commit: %s", cloud_store_errmsg(st));
    qsort(items, (size_t)n, sizeof *items, item_cmp);
    int scattered = 0, tombs = 0;
    for (int i = 0; i < n; i++) {
        scattered += i + 1 < n && items[i].cseq > items[i + 1].cseq;
        tombs += items[i].deleted;
    }
    TH_CHECK(scattered > 0 && tombs > 0, "%s: cseq not in key order, tombstones", t->name);
}

struct snap_pull {
    const sync_table *t;
    const snap_item *items;
    int n;
    int at;          /* rows consumed so far: the next one must be items[at] */
    int calls;       /* callbacks in this call of pull_keys */
    int stop_at;     /* returns 1 at this callback (0: never) */
    int fail_at;     /* returns SYNC_ERR_IO at this callback (0: never) */
    sync_value last; /* the key of the last row consumed (bytes in last_buf) */
    uint8_t last_buf[16];
};

static int check_snap_row(void *ctx, const sync_value *key, const cloud_row *row)
{
    struct snap_pull *p = ctx;
    const char *tn = p->t->name;
    p->calls++;
    if (p->stop_at == p->calls)
        return 1;
    if (p->fail_at == p->calls)
        return SYNC_ERR_IO;
    TH_CHECK(p->at < p->n, "%s: more rows than %d (cseq %" PRIu64 ")", tn, p->n, row->cseq);
    const snap_item *w = &p->items[p->at];
    TH_CHECK(same(&w->key, key, 1) && same(&w->key, &row->vals[p->t->key], 1),
             "%s: row %d in key order is not key %d (cseq %" PRIu64 ", expected %" PRIu64 ")", tn,
             p->at, w->idx, row->cseq, w->cseq);
    char origin[32];
    snprintf(origin, sizeof origin, "dev-%" PRIu64, w->cseq % 3);
    TH_CHECK(row->exists && !row->left && row->conflict == 0 && row->deleted == w->deleted &&
                 row->version == w->version && row->cseq == w->cseq &&
                 row->hlc == (w->cseq << 16 | 5) && strcmp(row->origin, origin) == 0,
             "%s: key %d: deleted %d version %" PRIu64 " cseq %" PRIu64 " hlc %" PRIu64
             " origin %s",
             tn, w->idx, row->deleted, row->version, row->cseq, row->hlc, row->origin);
    sync_value null = {.type = SYNC_NULL};
    sync_value v = w->deleted ? null : tval(w->v);
    sync_value n = w->deleted ? null : ival(w->idx * 1000 + (int64_t)w->version);
    TH_CHECK(same(&v, &row->vals[1], 1) && same(&n, &row->vals[2], 1), "%s: key %d: the values", tn,
             w->idx);
    /* The key is valid during the callback only: kept, to continue after it. */
    p->last = *key;
    if (key->type != SYNC_INT) {
        TH_CHECK(key->u.b.n <= sizeof p->last_buf, "%s: a key of %zu bytes", tn, key->u.b.n);
        if (key->u.b.n)
            memcpy(p->last_buf, key->u.b.p, key->u.b.n);
        p->last.u.b.p = p->last_buf;
    }
    p->at++;
    return 0;
}

/* Copies key into *out (bytes in buf): what a caller sends back with the next request. */
static const sync_value *snap_copy(const sync_value *key, sync_value *out, uint8_t *buf)
{
    *out = *key;
    if (key->type != SYNC_INT && key->u.b.n) {
        memcpy(buf, key->u.b.p, key->u.b.n);
        out->u.b.p = buf;
    }
    return out;
}

/* Pages of `limit` rows from the start, each after the last key of the previous one: every row
 * once, in key order, and remaining right on each page. */
static void snap_pages(cloud_store *st, const sync_table *t, const snap_item *items, int n,
                       uint64_t limit)
{
    struct snap_pull p = {.t = t, .items = items, .n = n};
    const sync_value *after = NULL;
    sync_value next;
    uint8_t buf[16];
    int pages = 0, got;
    do {
        int before = p.at;
        uint64_t remaining = 12345;
        p.calls = 0;
        TH_CHECK(cloud_store_pull_keys(st, t, after, limit, check_snap_row, &p, &remaining) ==
                     SYNC_OK,
                 "%s: pull_keys: %s", t->name, cloud_store_errmsg(st));
        got = p.at - before;
        TH_CHECK(remaining == (uint64_t)(n - before),
                 "%s: limit %" PRIu64 ", page %d: remaining %" PRIu64 ", expected %d", t->name,
                 limit, pages, remaining, n - before);
        TH_CHECK((uint64_t)got == (remaining < limit ? remaining : limit) && p.calls == got,
                 "%s: limit %" PRIu64 ", page %d: %d rows", t->name, limit, pages, got);
        if (got)
            after = snap_copy(&p.last, &next, buf);
        pages++;
    } while (got);
    TH_CHECK(p.at == n && pages == (n + (int)limit - 1) / (int)limit + 1,
             "%s: limit %" PRIu64 ": %d rows in %d pages", t->name, limit, p.at, pages);
}

/* One page of every row after probe (not necessarily a stored key). */
static void snap_after(cloud_store *st, const sync_table *t, const snap_item *items, int n,
                       sync_value probe)
{
    int first = 0;
    while (first < n && key_cmp(&items[first].key, &probe) <= 0)
        first++;
    struct snap_pull p = {.t = t, .items = items, .n = n, .at = first};
    uint64_t remaining = 12345;
    TH_CHECK(cloud_store_pull_keys(st, t, &probe, (uint64_t)n, check_snap_row, &p, &remaining) ==
                     SYNC_OK &&
                 p.at == n && remaining == (uint64_t)(n - first),
             "%s: after a probe: from row %d, %d rows, remaining %" PRIu64 " (%s)", t->name, first,
             p.at - first, remaining, cloud_store_errmsg(st));
}

/* Everything pull_keys promises, on one table filled with keys[n]; probes[] are keys to continue
 * after (stored or not), wrong[] after_keys of other types than the key. */
static void snap_table(cloud_store *st, const sync_table *t, const sync_value *keys, int n,
                       const sync_value *probes, int nprobes, const sync_value *wrong, int nwrong)
{
    snap_item items[SNAP_MAX];
    snap_fill(st, t, keys, n, items);
    struct snap_pull p = {.t = t, .items = items, .n = n};
    uint64_t remaining = 12345;

    /* A page of nothing still counts. */
    TH_CHECK(cloud_store_pull_keys(st, t, NULL, 0, check_snap_row, &p, &remaining) == SYNC_OK &&
                 p.calls == 0 && remaining == (uint64_t)n,
             "%s: limit 0: %d rows, remaining %" PRIu64, t->name, p.calls, remaining);
    for (uint64_t limit = 1; limit <= (uint64_t)n + 1; limit++)
        snap_pages(st, t, items, n, limit);
    for (int i = 0; i < nprobes; i++)
        snap_after(st, t, items, n, probes[i]);

    /* A callback that stops: that row is not consumed, the next page starts with it. */
    p = (struct snap_pull){.t = t, .items = items, .n = n, .stop_at = 3};
    TH_CHECK(cloud_store_pull_keys(st, t, NULL, 5, check_snap_row, &p, &remaining) == SYNC_OK &&
                 p.at == 2 && p.calls == 3 && remaining == (uint64_t)n,
             "%s: a callback that stops: %d rows, %d calls (%s)", t->name, p.at, p.calls,
             cloud_store_errmsg(st));
    sync_value next;
    uint8_t buf[16];
    p.calls = p.stop_at = 0;
    TH_CHECK(cloud_store_pull_keys(st, t, snap_copy(&p.last, &next, buf), 5, check_snap_row, &p,
                                   &remaining) == SYNC_OK &&
                 p.at == 7 && remaining == (uint64_t)(n - 2),
             "%s: after a stop: %d rows, remaining %" PRIu64, t->name, p.at, remaining);

    /* A callback that fails: its error comes back, and the read is over (a write can begin). */
    p = (struct snap_pull){.t = t, .items = items, .n = n, .fail_at = 2};
    TH_CHECK(cloud_store_pull_keys(st, t, NULL, 5, check_snap_row, &p, &remaining) == SYNC_ERR_IO &&
                 p.at == 1 && p.calls == 2,
             "%s: a callback that fails: %d rows, %d calls", t->name, p.at, p.calls);
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "%s: begin after a failed page: %s", t->name,
             cloud_store_errmsg(st));

    /* Not inside a write transaction. */
    p = (struct snap_pull){.t = t, .items = items, .n = n};
    TH_CHECK(cloud_store_pull_keys(st, t, NULL, 5, check_snap_row, &p, &remaining) != SYNC_OK &&
                 p.calls == 0,
             "%s: a snapshot page inside a write transaction", t->name);
    cloud_store_rollback(st);

    /* An after_key of another type is refused, not compared by some order across types. */
    for (int i = 0; i < nwrong; i++) {
        p = (struct snap_pull){.t = t, .items = items, .n = n};
        remaining = 12345;
        int rc = cloud_store_pull_keys(st, t, &wrong[i], 5, check_snap_row, &p, &remaining);
        const char *msg = cloud_store_errmsg(st);
        TH_CHECK(rc == SYNC_ERR_SCHEMA && p.calls == 0 && remaining == 0 &&
                     strstr(msg, t->cols[t->key].name) &&
                     strstr(msg, sync_vtype_name(wrong[i].type)),
                 "%s: a %s after_key: %s (%s)", t->name, sync_vtype_name(wrong[i].type),
                 sync_strerror(rc), msg);
    }
    snap_pages(st, t, items, n, 4); /* and nothing is left behind */
}

/* Snapshot pages of tables with integer, text and blob keys. */
static void snapshot_pages(const char *where)
{
    sync_schema *s = schema(schema_snap);
    cloud_store *st = open_store(where, s);
    sync_value keys[SNAP_MAX];
    static const uint8_t bytes[] = "\x00\x01\xfe";
    const sync_value text5 = tval("5"), int5 = ival(5), null = {.type = SYNC_NULL},
                     real = {.type = SYNC_REAL, .u.f = 5.0},
                     blob = {.type = SYNC_BLOB, .u.b = {bytes, 1}};

    int n = (int)(sizeof snap_ints / sizeof snap_ints[0]);
    for (int i = 0; i < n; i++)
        keys[i] = ival(snap_ints[i]);
    const sync_value iprobes[] = {ival(2), ival(-3), ival(INT64_MIN + 1), ival(INT64_MAX - 1),
                                  ival(-9000000001LL)};
    const sync_value iwrong[] = {text5, blob, real, null};
    snap_table(st, sync_schema_table(s, 0), keys, n, iprobes, 5, iwrong, 4);

    n = (int)(sizeof snap_texts / sizeof snap_texts[0]);
    for (int i = 0; i < n; i++)
        keys[i] = tval(snap_texts[i]);
    const sync_value tprobes[] = {tval("aa"), tval("\xc3\x80"),         tval("~"),
                                  tval("a"),  tval("\xf4\x8f\xbf\xbf"), tval("0")};
    const sync_value twrong[] = {int5, blob, null};
    snap_table(st, sync_schema_table(s, 1), keys, n, tprobes, 6, twrong, 3);

    n = (int)(sizeof snap_blobs / sizeof snap_blobs[0]);
    for (int i = 0; i < n; i++)
        keys[i] = (sync_value){.type = SYNC_BLOB,
                               .u.b = {(const uint8_t *)snap_blobs[i].p, snap_blobs[i].n}};
    const sync_value bprobes[] = {
        {.type = SYNC_BLOB, .u.b = {bytes, 2}},     /* 00 01 */
        {.type = SYNC_BLOB, .u.b = {bytes + 2, 1}}, /* fe */
        {.type = SYNC_BLOB, .u.b = {bytes, 0}},     /* empty: after the empty key */
    };
    const sync_value bwrong[] = {text5, int5};
    snap_table(st, sync_schema_table(s, 2), keys, n, bprobes, 3, bwrong, 2);

    cloud_store_close(st);
    sync_schema_free(s);
}

/* ---- PostgreSQL only ---- */

static const char *superuser(void)
{
    return th_fmt("host=127.0.0.1 port=%d dbname=postgres user=postgres", th_pg_port());
}

/* Text with a NUL byte: refused with a message, and only its savepoint is lost. */
static void nul_text(void)
{
    sync_schema *s = schema(schema_v1);
    const sync_table *t = sync_schema_table(s, 0);
    cloud_store *st = open_store(fresh(NULL), s);
    sync_value v[5];
    vals_row(3, v);
    v[3] = (sync_value){.type = SYNC_TEXT, .u.b = {(const uint8_t *)"a\0b", 3}};
    TH_CHECK(cloud_store_begin(st) == SYNC_OK && cloud_store_savepoint(st) == SYNC_OK, "begin");
    cloud_row r = row_of(t, v, cloud_store_next_cseq(st));
    TH_CHECK(cloud_store_row_put(st, t, &v[0], &r) != SYNC_OK &&
                 strstr(cloud_store_errmsg(st), "NUL"),
             "NUL in text: %s", cloud_store_errmsg(st));
    cloud_store_rollback_savepoint(st);
    TH_CHECK(cloud_store_savepoint(st) == SYNC_OK, "the next batch: %s", cloud_store_errmsg(st));
    vals_row(4, v);
    r = row_of(t, v, cloud_store_next_cseq(st));
    TH_CHECK(cloud_store_row_put(st, t, &v[0], &r) == SYNC_OK && cloud_store_release(st) == SYNC_OK &&
                 cloud_store_commit(st) == SYNC_OK,
             "the next batch applies: %s", cloud_store_errmsg(st));
    cloud_row got;
    vals_row(3, v);
    TH_CHECK(cloud_store_row_get(st, t, &v[0], &got) == SYNC_OK && !got.exists, "not stored");
    vals_row(4, v);
    TH_CHECK(cloud_store_row_get(st, t, &v[0], &got) == SYNC_OK && got.exists && got.cseq == 1,
             "stored, with the rolled-back batch's cseq");
    cloud_store_close(st);
    sync_schema_free(s);
}

/* Two connections: the second writer waits for the first to commit and then gets the next
 * number; a catch-up read during the first's transaction neither waits nor sees its rows. */
static void two_writers(void)
{
    sync_schema *s = schema(schema_v1);
    const sync_table *t = sync_schema_table(s, 1);
    const char *where = fresh(NULL);
    cloud_store *mine = open_store(where, s);
    int ready[2], done[2];
    TH_CHECK(pipe(ready) == 0 && pipe(done) == 0, "pipe");
    fflush(NULL);
    pid_t child = fork();
    TH_CHECK(child >= 0, "fork");
    if (child == 0) {
        /* The other consumer (its own connection; the parent's is not touched here). */
        char err[512], c = 'x';
        cloud_store *other;
        if (cloud_store_open(where, s, 0, &other, err, sizeof err) != SYNC_OK ||
            cloud_store_begin(other) != SYNC_OK)
            _exit(2);
        sync_value v[2] = {{.type = SYNC_TEXT, .u.b = {(const uint8_t *)"other", 5}},
                           {.type = SYNC_INT, .u.i = 7}};
        cloud_row r = row_of(t, v, cloud_store_next_cseq(other));
        if (cloud_store_row_put(other, t, &v[0], &r) != SYNC_OK ||
            write(ready[1], &c, 1) != 1)
            _exit(3);
        if (read(done[0], &c, 1) != 1) /* the parent has read the page */
            _exit(4);
        usleep(400000);
        int ok = cloud_store_commit(other) == SYNC_OK;
        cloud_store_close(other);
        _exit(ok ? 0 : 5);
    }
    char c;
    TH_CHECK(read(ready[0], &c, 1) == 1, "the other writer did not start");
    uint64_t remaining = 99;
    struct pulled p = {t, 0, 1, 0};
    double t0 = th_now();
    TH_CHECK(cloud_store_pull(mine, t, 0, 100, check_pulled, &p, &remaining) == SYNC_OK &&
                 p.n == 0 && remaining == 0,
             "a page during the other's transaction sees none of its rows (%d, %" PRIu64 ")", p.n,
             remaining);
    TH_CHECK(th_now() - t0 < 0.3, "the page waited %.2f s", th_now() - t0);
    TH_CHECK(write(done[1], "x", 1) == 1, "pipe");
    t0 = th_now();
    TH_CHECK(cloud_store_begin(mine) == SYNC_OK, "begin: %s", cloud_store_errmsg(mine));
    double waited = th_now() - t0;
    uint64_t next = cloud_store_next_cseq(mine);
    cloud_store_rollback(mine);
    int status;
    TH_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
                 WEXITSTATUS(status) == 0,
             "the other writer failed (%d)", status);
    TH_CHECK(waited > 0.3, "begin did not wait for the other writer's commit (%.2f s)", waited);
    TH_CHECK(next == 2, "the next number after the other's commit is 2, not %" PRIu64, next);
    printf("store: a second writer waited %.2f s for the first one's commit, then got cseq %" PRIu64
           "\n",
           waited, next);
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    close(done[1]);
    cloud_store_close(mine);
    sync_schema_free(s);
}

/* A session ended by the server: the next transaction connects again. */
static void reconnect(void)
{
    sync_schema *s = schema(schema_v1);
    const sync_table *t = sync_schema_table(s, 1);
    cloud_store *st = open_store(fresh(NULL), s);
    TH_CHECK(th_pg_int(pg, "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE "
                           "application_name = 'synccloud'") == 1,
             "the store's session was not found");
    sync_value v[2] = {{.type = SYNC_TEXT, .u.b = {(const uint8_t *)"after", 5}},
                       {.type = SYNC_INT, .u.i = 1}};
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin after the session ended: %s",
             cloud_store_errmsg(st));
    cloud_row r = row_of(t, v, cloud_store_next_cseq(st));
    TH_CHECK(cloud_store_row_put(st, t, &v[0], &r) == SYNC_OK && cloud_store_commit(st) == SYNC_OK,
             "write after reconnecting: %s", cloud_store_errmsg(st));
    /* Ended in the middle of a transaction: that one fails, the next works. */
    TH_CHECK(cloud_store_begin(st) == SYNC_OK, "begin");
    th_pg_int(pg, "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE "
                  "application_name = 'synccloud'");
    r = row_of(t, v, cloud_store_next_cseq(st));
    TH_CHECK(cloud_store_row_put(st, t, &v[0], &r) != SYNC_OK || cloud_store_commit(st) != SYNC_OK,
             "a transaction whose session ended cannot commit");
    cloud_store_rollback(st);
    TH_CHECK(cloud_store_begin(st) == SYNC_OK && cloud_store_commit(st) == SYNC_OK,
             "the next transaction: %s", cloud_store_errmsg(st));
    cloud_store_close(st);
    sync_schema_free(s);
}

static void connection_strings(void)
{
    TH_CHECK(cloud_store_is_pg("postgresql://u@h/db") && cloud_store_is_pg("postgres://h/db") &&
                 cloud_store_is_pg("host=h dbname=d") && cloud_store_is_pg("dbname=d") &&
                 !cloud_store_is_pg("/var/lib/synccloud/cloud.db") && !cloud_store_is_pg("x.db"),
             "which setting names PostgreSQL");
    sync_schema *s = schema(schema_v1);
    const char *with_pw[] = {
        th_fmt("%s password=s3cret-word", pg),
        th_fmt("postgresql://synccloud:s3cret-word@127.0.0.1:%d/synctest?application_name=x",
               th_pg_port()),
    };
    for (int i = 0; i < 2; i++) {
        cloud_store *st = open_store(with_pw[i], s);
        const char *d = cloud_store_describe(st);
        TH_CHECK(strstr(d, "PostgreSQL") && strstr(d, "synctest") && !strstr(d, "s3cret"),
                 "describe: %s", d);
        cloud_store_close(st);
    }
    char err[512];
    cloud_store *st;
    TH_CHECK(cloud_store_open(th_fmt("postgresql://synccloud:s3cret-word@127.0.0.1:%d/nosuchdb",
                                     th_pg_port()),
                              s, 0, &st, err, sizeof err) != SYNC_OK &&
                 strstr(err, "nosuchdb") && !strstr(err, "s3cret"),
             "a failed connection says why, without the password: %s", err);
    printf("store: %s\n", err);
    /* The store needs a UTF8 database. */
    TH_CHECK(th_pg_exec(superuser(), "CREATE DATABASE ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' "
                                     "LC_CTYPE 'C' TEMPLATE template0 OWNER synccloud") == 0,
             "create database");
    TH_CHECK(cloud_store_open(th_fmt("host=127.0.0.1 port=%d dbname=ascii user=synccloud",
                                     th_pg_port()),
                              s, 0, &st, err, sizeof err) != SYNC_OK &&
                 strstr(err, "SQL_ASCII") && strstr(err, "UTF8"),
             "a database not in UTF8 is refused: %s", err);
    sync_schema_free(s);
}

int main(int argc, char **argv)
{
    char sq[3][80], pq[3][80], icu[3][80];
    static char longtext[100001];

    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    sync_log_setup("test_store", SYNC_LOG_ERR, 0);
    pg = argc > 1 && strcmp(argv[1], "--pg") == 0 ? th_pg_start() : NULL;
    reals[12] = INFINITY;
    reals[13] = -INFINITY;
    reals[14] = NAN;
    for (int i = 0; i < 256; i++)
        blob_all[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof blob_big; i++)
        blob_big[i] = (uint8_t)(i % 3 ? i * 2654435761u >> 13 : 0);
    for (size_t i = 0; i < sizeof longtext - 1; i++)
        longtext[i] = (char)('a' + i % 26);
    texts[NT - 1] = longtext;

    round_trip(fresh("rt"), 0, sq);
    cseq_rules(fresh("cseq"));
    schema_changes(fresh("schema"));
    partitions(fresh("parts"));
    snapshot_pages(fresh("snap"));
    printf("store: SQLite: values, pages, checksums, change sequence, schema changes, "
           "partitions and snapshot pages\n");
    if (pg) {
        round_trip(fresh(NULL), 1, pq);
        for (int i = 0; i < 3; i++)
            TH_CHECK(strcmp(sq[i], pq[i]) == 0, "table %d: SQLite's checksum %s, PostgreSQL's %s",
                     i, sq[i], pq[i]);
        /* A database whose default collation sorts "a" before "B" orders the same. */
        TH_CHECK(th_pg_exec(superuser(), "CREATE DATABASE icu LOCALE_PROVIDER icu ICU_LOCALE "
                                         "'en-US' LOCALE 'C' TEMPLATE template0 OWNER synccloud") ==
                     0,
                 "create database icu");
        round_trip(th_fmt("host=127.0.0.1 port=%d dbname=icu user=synccloud", th_pg_port()), 1,
                   icu);
        for (int i = 0; i < 3; i++)
            TH_CHECK(strcmp(sq[i], icu[i]) == 0, "table %d (ICU database): %s vs %s", i, sq[i],
                     icu[i]);
        printf("store: PostgreSQL: values bit for bit; checksums equal SQLite's:\n");
        for (int i = 0; i < 3; i++)
            printf("  %s\n", pq[i]);
        cseq_rules(fresh(NULL));
        schema_changes(fresh(NULL));
        partitions(fresh(NULL));
        printf("store: PostgreSQL: partitions\n");
        snapshot_pages(fresh(NULL));
        /* Text keys in bytes' order also where the database's default collation is ICU's. */
        snapshot_pages(th_fmt("host=127.0.0.1 port=%d dbname=icu user=synccloud", th_pg_port()));
        printf("store: PostgreSQL: snapshot pages in key order\n");
        nul_text();
        two_writers();
        reconnect();
        connection_strings();
        th_pg_stop();
    }
    printf("store: OK\n");
    return 0;
}
