/* store_pg.c - the PostgreSQL backend of the cloud store (see store.h), with libpq.
 *
 * The same tables, columns and meaning as store_sqlite.c, created or widened at open (the
 * schema file's INTEGER, REAL, TEXT and BLOB become bigint, double precision, text COLLATE "C"
 * and bytea; byte order for text is what SQLite compares, and no index depends on the C
 * library's locale data). The store refuses a database whose tables were made for a newer
 * schema version than the file's, or whose columns have other types than the schema says.
 *
 * Every statement is prepared once per connection (again after a reconnect) and exchanges
 * parameters and results in binary: integers, doubles (-0.0, infinities, subnormals), text and
 * bytes travel bit for bit, nothing is parsed or printed. Two things PostgreSQL cannot hold as
 * SQLite does: a NaN, which SQLite stores as NULL, is written as NULL here too; text containing
 * a NUL byte is refused with a message (PostgreSQL's text type cannot contain one).
 *
 * The change sequence (cseq). Replicas pull "rows with cseq > cursor" and move their cursor to
 * the last row they got, so a row must never become visible after a row with a higher cseq:
 * if it did, a replica that had already moved past it would never see it. With one process
 * writing that holds trivially; with several consumers on one database it holds only if cseqs
 * are handed out in commit order. So a write transaction takes the counter row of _sync_state
 * FOR UPDATE and keeps the lock until it commits (the new value is saved just before COMMIT):
 * the next writer reads the counter only after the previous one's rows are visible. The lock
 * is taken at BEGIN rather than at the first cseq: a transaction locks the rows it reads
 * (SELECT ... FOR UPDATE, so a row's version check and its write are never interleaved with
 * another consumer's), and locking the counter later than the rows would let two consumers
 * each hold what the other waits for (rows, then the counter, in one; the counter, then a row,
 * in the other). Taken first, it orders every write transaction and nothing can deadlock; the
 * price is that consumers' write transactions run one at a time (catch-up pulls, which take no
 * locks, and everything outside the store still run in parallel).
 *
 * Catch-up pulls read in a REPEATABLE READ, READ ONLY transaction of their own (the count and
 * the page see one snapshot of committed data); writes run in READ COMMITTED, whatever the
 * server's default is. A lost connection is re-established (and the statements prepared
 * again) at the start of the next transaction or read; the transaction it interrupted fails,
 * and the edges send its batches again.
 *
 * A partitioned table's leaves (rows that moved to another partition) are kept in a table of
 * its own, "_sync_TABLE_moves", whose part and pk columns have the types of the partition
 * column and of the key, so equality is exact and binary like everywhere else here. The
 * compaction horizon of each partition is in "_sync_TABLE_partcompacted" (part, cseq), typed
 * the same way.
 */
#include <ctype.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"
#include "sync/checksum.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/log.h"

/* Type OIDs of the built-in types used (fixed in pg_type.dat, the same on every server). */
#define PG_BOOL 16
#define PG_BYTEA 17
#define PG_INT8 20
#define PG_INT2 21
#define PG_INT4 23
#define PG_TEXT 25
#define PG_FLOAT8 701

#define PG_MAXP (SYNC_MAX_COLS + 16) /* parameters of one statement */
#define PG_SQL 32768                 /* room for one generated statement */

/* Serialises the creation and widening of tables by consumers that start together (a
 * transaction-level advisory lock; the two numbers are "sync" and "clou" in ASCII). */
#define PG_MIGRATE_LOCK "SELECT pg_advisory_xact_lock(1937337187, 1668050805)"

typedef struct pg_stmt {
    char name[32];       /* the prepared statement's name on the connection */
    char *sql;           /* its text (kept to prepare it again after a reconnect) */
    int nparams;         /* parameter count */
    Oid types[PG_MAXP];  /* parameter types */
} pg_stmt;

/* Indexes into a table's statements. */
enum {
    T_GET,
    T_GET_LOCK,
    T_PUT,
    T_MAXCSEQ,
    T_PULL,
    T_COUNT_AFTER,
    T_KEYS_FIRST,       /* a snapshot page from the first key */
    T_KEYS_AFTER,       /* a snapshot page after a key */
    T_COUNT_ALL,        /* rows of the table */
    T_COUNT_KEYS_AFTER, /* rows after a key */
    T_TOMB_SCAN,
    T_TOMB_DEL,
    T_N
};
/* Indexes into a partitioned table's statements (pg_partition registers them). */
enum {
    P_MAX,
    P_LEAVE,
    P_COUNT,
    P_PULL,
    P_MOVES_PULL,
    P_VALUES,
    P_MOVES_SCAN,
    P_MOVES_DEL,
    P_CMP_GET,     /* a partition's compaction horizon */
    P_TOMB_PARTS,  /* raises the horizons of the partitions whose tombstones compaction removes */
    P_MOVES_PARTS, /* the same for the leaves it removes */
    P_N
};
/* The common statements. */
enum {
    C_CLAIM,
    C_SAVE_CSEQ,
    C_DEV_GET,
    C_DEV_GET_LOCK,
    C_DEV_PUT,
    C_CONFLICT,
    C_CONFLICTS_SEL,
    C_CONFLICT_DONE,
    C_COMPACTED_PUT,
    C_COMPACTED_GET,
    C_DEVICES,
    C_COUNTS,
    C_N
};

typedef struct pg_table {
    int stmt[T_N];      /* index in pg_store.stmts of each statement */
    uint64_t compacted; /* tombstones with cseq <= this may be gone */
    uint64_t floor;     /* highest version of a compacted tombstone */
    int part_col;       /* partition column (schema index), or -1 */
    int pstmt[P_N];     /* with part_col >= 0: index in pg_store.stmts of each statement */
} pg_table;

typedef struct pg_store {
    cloud_store base; /* first: the ops table (store_backend.h) */
    PGconn *conn;
    const sync_schema *schema;
    int sync_full;     /* synchronous_commit on (else off) */
    int readonly;      /* opened by cloud_store_open_ro */
    pg_table *tst;     /* one per schema table */
    int common[C_N];   /* index in stmts of each common statement */
    pg_stmt *stmts;    /* every prepared statement */
    int nstmts, capstmts;
    int in_tx;         /* between begin and commit/rollback */
    int failed;        /* a statement of the transaction failed: only a rollback helps now */
    uint64_t cseq;     /* last handed out */
    uint64_t cseq_tx;  /* value at BEGIN, restored by a rollback */
    uint64_t cseq_sp;  /* value at SAVEPOINT */
    uint8_t *scratch;  /* copies of text/blob values from row_get; decoded conflict keys */
    size_t scratch_cap;
    char *hex;         /* a blob key as hex text (conflict log) */
    size_t hex_cap;
    char err[1024];    /* the last error, for cloud_store_errmsg */
    char desc[512];    /* for cloud_store_describe */
} pg_store;

/* Parameters of one statement, in binary. Text and bytes point to the caller's memory. */
typedef struct pg_params {
    int n;
    const char *vals[PG_MAXP];
    int lens[PG_MAXP];
    int fmts[PG_MAXP];
    char num[PG_MAXP][8]; /* big-endian numbers */
} pg_params;

static const cloud_store_ops pg_ops;

/* ---- errors ---- */

static void pg__seterr(pg_store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void pg__seterr(pg_store *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
    /* libpq's messages end with a newline (and may have a DETAIL line): one line for logs. */
    for (char *p = st->err; *p; p++)
        if (*p == '\n')
            *p = p[1] ? ' ' : '\0';
}

static void pg__result_err(pg_store *st, const char *what, const PGresult *r)
{
    const char *m = r ? PQresultErrorMessage(r) : "";
    if (!m || !*m)
        m = PQerrorMessage(st->conn);
    pg__seterr(st, "%s: %s", what, m && *m ? m : "unknown PostgreSQL error");
    if (st->in_tx)
        st->failed = 1;
}

/* Notices (e.g. "relation already exists, skipping") are for debugging; warnings are logged. */
static void pg__notice(void *arg, const char *msg)
{
    (void)arg;
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        n--;
    if (strncmp(msg, "WARNING", 7) == 0)
        sync_warn("store: PostgreSQL: %.*s", (int)n, msg);
    else
        sync_debug("store: PostgreSQL: %.*s", (int)n, msg);
}

/* ---- values in and out ---- */

static void put_be(char *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        b[i] = (char)(uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | (uint8_t)p[i];
    return v;
}

static void p_null(pg_params *p)
{
    p->vals[p->n] = NULL;
    p->lens[p->n] = 0;
    p->fmts[p->n] = 1;
    p->n++;
}

static void p_num(pg_params *p, uint64_t v, int n)
{
    put_be(p->num[p->n], v, n);
    p->vals[p->n] = p->num[p->n];
    p->lens[p->n] = n;
    p->fmts[p->n] = 1;
    p->n++;
}

static void p_int8(pg_params *p, int64_t v)
{
    p_num(p, (uint64_t)v, 8);
}

static void p_int4(pg_params *p, int32_t v)
{
    p_num(p, (uint64_t)(uint32_t)v, 4);
}

static void p_int2(pg_params *p, int16_t v)
{
    p_num(p, (uint64_t)(uint16_t)v, 2);
}

static void p_float8(pg_params *p, double d)
{
    uint64_t bits;
    if (isnan(d)) {
        p_null(p); /* SQLite stores a NaN as NULL: so does this store */
        return;
    }
    memcpy(&bits, &d, sizeof bits);
    p_num(p, bits, 8);
}

static void p_bytes(pg_params *p, const void *b, size_t n)
{
    p->vals[p->n] = b ? (const char *)b : "";
    p->lens[p->n] = (int)n;
    p->fmts[p->n] = 1;
    p->n++;
}

static void p_cstr(pg_params *p, const char *s)
{
    if (!s)
        p_null(p);
    else
        p_bytes(p, s, strlen(s));
}

/* Adds v as a value of a column of type want. An integer for a real column is converted (as
 * sync_column_check does); anything else that does not fit is an error. */
static int p_value(pg_store *st, pg_params *p, const sync_value *v, sync_vtype want,
                   const char *col)
{
    if (v->type == SYNC_NULL) {
        p_null(p);
        return SYNC_OK;
    }
    if (want == SYNC_REAL && (v->type == SYNC_REAL || v->type == SYNC_INT)) {
        p_float8(p, v->type == SYNC_REAL ? v->u.f : (double)v->u.i);
        return SYNC_OK;
    }
    if (v->type != want) {
        pg__seterr(st, "column '%s': a %s value for a %s column", col, sync_vtype_name(v->type),
                   sync_vtype_name(want));
        return SYNC_ERR_SCHEMA;
    }
    if ((v->type == SYNC_TEXT || v->type == SYNC_BLOB) && v->u.b.n > (size_t)0x7FFFFFFF) {
        pg__seterr(st, "column '%s': a value of %zu bytes is too large", col, v->u.b.n);
        return SYNC_ERR_TOOBIG;
    }
    switch (v->type) {
    case SYNC_INT:
        p_int8(p, v->u.i);
        break;
    case SYNC_TEXT:
        if (v->u.b.n && memchr(v->u.b.p, 0, v->u.b.n)) {
            pg__seterr(st, "column '%s': text containing a NUL byte (U+0000) cannot be stored "
                           "in PostgreSQL",
                       col);
            return SYNC_ERR_SCHEMA;
        }
        p_bytes(p, v->u.b.p, v->u.b.n);
        break;
    default:
        p_bytes(p, v->u.b.p, v->u.b.n);
        break;
    }
    return SYNC_OK;
}

/* An integer column of a result (NULL reads as 0, as sqlite3_column_int64 does). */
static int64_t r_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const char *p = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case PG_INT2:
        return (int16_t)get_be(p, 2);
    case PG_INT4:
        return (int32_t)get_be(p, 4);
    case PG_BOOL:
        return p[0] != 0;
    default:
        return (int64_t)get_be(p, 8);
    }
}

/* A column of a result as a sync_value (text and bytes point into the result). */
static void r_value(const PGresult *r, int row, int col, sync_value *v)
{
    if (PQgetisnull(r, row, col)) {
        v->type = SYNC_NULL;
        return;
    }
    const char *p = PQgetvalue(r, row, col);
    switch (PQftype(r, col)) {
    case PG_INT8:
    case PG_INT4:
    case PG_INT2:
        v->type = SYNC_INT;
        v->u.i = r_int(r, row, col);
        break;
    case PG_FLOAT8: {
        uint64_t bits = get_be(p, 8);
        v->type = SYNC_REAL;
        memcpy(&v->u.f, &bits, sizeof bits);
        break;
    }
    case PG_BYTEA:
        v->type = SYNC_BLOB;
        v->u.b.p = (const uint8_t *)p;
        v->u.b.n = (size_t)PQgetlength(r, row, col);
        break;
    default:
        v->type = SYNC_TEXT;
        v->u.b.p = (const uint8_t *)p;
        v->u.b.n = (size_t)PQgetlength(r, row, col);
        break;
    }
}

/* ---- statements ---- */

/* Registers a statement to prepare; returns its index or -1 (out of memory, message set). */
static int pg__stmt_add(pg_store *st, const char *name, const char *sql, int nparams,
                        const Oid *types)
{
    if (st->nstmts == st->capstmts) {
        int cap = st->capstmts ? 2 * st->capstmts : 32;
        pg_stmt *n = realloc(st->stmts, (size_t)cap * sizeof *n);
        if (!n) {
            pg__seterr(st, "out of memory");
            return -1;
        }
        st->stmts = n;
        st->capstmts = cap;
    }
    pg_stmt *s = &st->stmts[st->nstmts];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    if (!(s->sql = strdup(sql))) {
        pg__seterr(st, "out of memory");
        return -1;
    }
    s->nparams = nparams;
    if (nparams > 0)
        memcpy(s->types, types, (size_t)nparams * sizeof *types);
    return st->nstmts++;
}

/* Prepares the statements registered from index `first` on. */
static int pg__prepare_from(pg_store *st, int first)
{
    for (int i = first; i < st->nstmts; i++) {
        pg_stmt *s = &st->stmts[i];
        PGresult *r = PQprepare(st->conn, s->name, s->sql, s->nparams, s->types);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            char what[200];
            snprintf(what, sizeof what, "preparing \"%.120s\"", s->sql);
            pg__result_err(st, what, r);
        }
        PQclear(r);
        if (!ok)
            return SYNC_ERR_DB;
    }
    return SYNC_OK;
}

static int pg__prepare_all(pg_store *st)
{
    return pg__prepare_from(st, 0);
}

/* Runs prepared statement i with p; returns its result (caller PQclears) or NULL with the
 * message set. Inside a failed transaction nothing is sent: only a rollback helps. */
static PGresult *pg__run(pg_store *st, int i, const pg_params *p)
{
    if (st->in_tx && st->failed)
        return NULL; /* the message of the failure stays */
    PGresult *r = PQexecPrepared(st->conn, st->stmts[i].name, p ? p->n : 0, p ? p->vals : NULL,
                                 p ? p->lens : NULL, p ? p->fmts : NULL, 1);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        char what[64];
        snprintf(what, sizeof what, "%s", st->stmts[i].name);
        pg__result_err(st, what, r);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Runs a statement whose result is not needed. */
static int pg__run_ok(pg_store *st, int i, const pg_params *p)
{
    PGresult *r = pg__run(st, i, p);
    PQclear(r);
    return r ? SYNC_OK : SYNC_ERR_DB;
}

/* Runs plain SQL without parameters (transaction control, session settings). */
static int pg__exec(pg_store *st, const char *sql)
{
    PGresult *r = PQexec(st->conn, sql);
    ExecStatusType s = PQresultStatus(r);
    int ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok)
        pg__result_err(st, sql, r);
    PQclear(r);
    return ok ? SYNC_OK : SYNC_ERR_DB;
}

/* ---- connection ---- */

static int pg__session(pg_store *st)
{
    PQsetNoticeProcessor(st->conn, pg__notice, NULL);
    if (PQsetClientEncoding(st->conn, "UTF8") != 0) {
        pg__seterr(st, "cannot set the client encoding to UTF8: %s", PQerrorMessage(st->conn));
        return SYNC_ERR_DB;
    }
    const char *enc = PQparameterStatus(st->conn, "server_encoding");
    if (!enc || strcmp(enc, "UTF8") != 0) {
        pg__seterr(st,
                   "the database's encoding is %s; the store needs UTF8 (CREATE DATABASE ... "
                   "ENCODING 'UTF8' TEMPLATE template0)",
                   enc ? enc : "unknown");
        return SYNC_ERR_DB;
    }
    char sql[256];
    /* sync_full: a commit returns once its WAL is on disk, so no ack is ever sent for a change
     * a crash of the server could lose. Without it, a crash may lose the last transactions
     * (never corrupt anything), as SQLite's synchronous=NORMAL may on a power cut. */
    snprintf(sql, sizeof sql,
             "SET client_min_messages = warning; SET synchronous_commit = %s;%s",
             st->sync_full ? "on" : "off",
             st->readonly ? " SET default_transaction_read_only = on;" : "");
    return pg__exec(st, sql);
}

static void pg__describe(pg_store *st)
{
    const char *host = PQhost(st->conn);
    snprintf(st->desc, sizeof st->desc, "PostgreSQL dbname=%s user=%s host=%s port=%s",
             PQdb(st->conn) ? PQdb(st->conn) : "?", PQuser(st->conn) ? PQuser(st->conn) : "?",
             host && *host ? host : "(default)", PQport(st->conn) ? PQport(st->conn) : "?");
}

static int pg__connect(pg_store *st, const char *conninfo)
{
    /* Defaults first, then the connection string: whatever it sets wins. */
    const char *keys[8], *vals[8];
    int n = 0;
    keys[n] = "fallback_application_name";
    vals[n++] = "synccloud";
    if (!getenv("PGCONNECT_TIMEOUT")) {
        keys[n] = "connect_timeout";
        vals[n++] = "10";
    }
    /* A server that vanished (not just refused) is noticed in about a minute, not two hours. */
    keys[n] = "keepalives_idle";
    vals[n++] = "30";
    keys[n] = "keepalives_interval";
    vals[n++] = "10";
    keys[n] = "keepalives_count";
    vals[n++] = "3";
    keys[n] = "dbname";
    vals[n++] = conninfo;
    keys[n] = NULL;
    vals[n] = NULL;
    st->conn = PQconnectdbParams(keys, vals, 1);
    if (!st->conn) {
        pg__seterr(st, "out of memory");
        return SYNC_ERR_NOMEM;
    }
    if (PQstatus(st->conn) != CONNECTION_OK) {
        pg__seterr(st, "cannot connect to PostgreSQL: %s", PQerrorMessage(st->conn));
        return SYNC_ERR_DB;
    }
    pg__describe(st);
    return pg__session(st);
}

/* Outside a transaction: a connection that was lost is made again, with its statements. */
static int pg__ensure(pg_store *st)
{
    if (PQstatus(st->conn) == CONNECTION_OK)
        return SYNC_OK;
    PQreset(st->conn);
    if (PQstatus(st->conn) != CONNECTION_OK) {
        pg__seterr(st, "the connection to PostgreSQL is lost and cannot be made again: %s",
                   PQerrorMessage(st->conn));
        return SYNC_ERR_DB;
    }
    int rc = pg__session(st);
    if (rc == SYNC_OK)
        rc = pg__prepare_all(st);
    if (rc == SYNC_OK)
        sync_notice("store: the connection to PostgreSQL was lost; connected again (%s)",
                    st->desc);
    return rc;
}

/* Starts a transaction with sql; a connection found lost on the way (a server restart, an
 * administrator ending the session) is made again once. */
static int pg__start(pg_store *st, const char *sql)
{
    if (pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    if (pg__exec(st, sql) == SYNC_OK)
        return SYNC_OK;
    if (PQstatus(st->conn) != CONNECTION_BAD || pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    return pg__exec(st, sql);
}

/* ---- creating and checking the tables ---- */

#define SQLCAT(buf, at, ...)                                                                       \
    do {                                                                                           \
        int w_ = snprintf((buf) + (at), sizeof(buf) - (at), __VA_ARGS__);                          \
        (at) = (w_ < 0 || (size_t)w_ >= sizeof(buf) - (at)) ? sizeof(buf) - 1 : (at) + (size_t)w_; \
    } while (0)

static const char *pg_type(sync_vtype t)
{
    return t == SYNC_INT    ? "bigint"
           : t == SYNC_REAL ? "double precision"
           : t == SYNC_TEXT ? "text COLLATE \"C\""
                            : "bytea";
}

static Oid pg_oid(sync_vtype t)
{
    return t == SYNC_INT ? PG_INT8 : t == SYNC_REAL ? PG_FLOAT8 : t == SYNC_TEXT ? PG_TEXT : PG_BYTEA;
}

/* FNV-1a of the bytes of s, continuing from h (2166136261 to start). */
static uint32_t fnv1a(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Writes "_sync_TABLE_SUFFIX" into out (an index name): PostgreSQL cuts names at 63 bytes, so
 * a long table name is shortened and made unique again with a hash of the whole name. */
static void pg_index_name(char *out, size_t n, const char *table, const char *suffix)
{
    if (strlen(table) + strlen(suffix) + 7 <= 63) {
        snprintf(out, n, "_sync_%s_%s", table, suffix);
        return;
    }
    uint32_t h = fnv1a(2166136261u, table);
    snprintf(out, n, "_sync_%.40s_%08x_%s", table, (unsigned)h, suffix);
}

/* Runs SQL built by the caller inside the open transaction; err gets "what: message". */
static int pg__ddl(pg_store *st, const char *sql, const char *what, char *err, size_t errlen)
{
    if (pg__exec(st, sql) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "%s: %s", what, st->err);
    return SYNC_OK;
}

/* The columns table t has in the database: name and type OID, or none if it does not exist.
 * Returns the result (caller PQclears) or NULL with err set. */
static PGresult *pg__columns(pg_store *st, const char *table, char *err, size_t errlen)
{
    char quoted[SYNC_MAX_NAME + 3];
    snprintf(quoted, sizeof quoted, "\"%s\"", table);
    const char *vals[1] = {quoted};
    PGresult *r = PQexecParams(st->conn,
                               "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = "
                               "to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                               1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg__result_err(st, "reading the columns of a table", r);
        sync_seterr(err, errlen, SYNC_ERR_DB, "%s", st->err);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Type OID of column `name` in a pg__columns result, or 0 if there is no such column. */
static Oid pg__coltype(const PGresult *r, const char *name)
{
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), name) == 0)
            return (Oid)strtoul(PQgetvalue(r, i, 1), NULL, 10);
    return 0;
}

static const char *pg_type_name(Oid o)
{
    switch (o) {
    case PG_INT8:
        return "bigint";
    case PG_INT4:
        return "integer";
    case PG_INT2:
        return "smallint";
    case PG_FLOAT8:
        return "double precision";
    case PG_TEXT:
        return "text";
    case PG_BYTEA:
        return "bytea";
    case PG_BOOL:
        return "boolean";
    default:
        return "another type";
    }
}

/* The bookkeeping columns of a synced table. Those marked `addable` came later to
 * store_sqlite.c and are added to older tables; the others every table has had. */
static const struct {
    const char *name, *decl;
    Oid type;
    int addable;
} pg_meta[] = {
    {"_version", "bigint NOT NULL", PG_INT8, 0},
    {"_deleted", "smallint NOT NULL DEFAULT 0", PG_INT2, 0},
    {"_origin", "text COLLATE \"C\" NOT NULL", PG_TEXT, 0},
    {"_hlc", "bigint NOT NULL", PG_INT8, 0},
    {"_cseq", "bigint NOT NULL", PG_INT8, 0},
    {"_colver", "bytea", PG_BYTEA, 1},
    {"_conflict", "bigint", PG_INT8, 1},
    /* A tombstone without an _mtime (0) counts as old enough to compact. */
    {"_mtime", "bigint NOT NULL DEFAULT 0", PG_INT8, 1},
};
#define PG_NMETA (int)(sizeof pg_meta / sizeof pg_meta[0])

/* Creates a table, or adds the schema's columns it lacks (a schema that grew), and checks that
 * every column it has is of the type the schema gives. */
static int pg__ensure_table(pg_store *st, const sync_table *t, char *err, size_t errlen)
{
    char sql[PG_SQL], idx[80];
    size_t at = 0;
    SQLCAT(sql, at, "CREATE TABLE IF NOT EXISTS \"%s\"(", t->name);
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\" %s%s, ", t->cols[i].name, pg_type(t->cols[i].type),
               i == t->key ? " PRIMARY KEY" : "");
    for (int i = 0; i < PG_NMETA; i++)
        SQLCAT(sql, at, "%s %s%s", pg_meta[i].name, pg_meta[i].decl, i + 1 < PG_NMETA ? ", " : ")");
    if (at >= sizeof sql - 1)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "table '%s': statement too long", t->name);
    int rc = pg__ddl(st, sql, "creating a table", err, errlen);
    if (rc != SYNC_OK)
        return rc;
    PGresult *cols = pg__columns(st, t->name, err, errlen);
    if (!cols)
        return SYNC_ERR_DB;
    for (int i = 0; rc == SYNC_OK && i < PG_NMETA; i++) {
        Oid have = pg__coltype(cols, pg_meta[i].name);
        if (have == pg_meta[i].type)
            continue;
        if (have != 0) {
            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                             "table '%s' column %s is %s in the database; the store needs %s",
                             t->name, pg_meta[i].name, pg_type_name(have), pg_meta[i].decl);
        } else if (!pg_meta[i].addable) {
            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                             "table '%s' exists without the column %s: it was not made by "
                             "synccloud",
                             t->name, pg_meta[i].name);
        } else {
            snprintf(sql, sizeof sql, "ALTER TABLE \"%s\" ADD COLUMN %s %s", t->name,
                     pg_meta[i].name, pg_meta[i].decl);
            rc = pg__ddl(st, sql, "adding a column", err, errlen);
        }
    }
    for (int i = 0; rc == SYNC_OK && i < t->ncols; i++) {
        const sync_column *c = &t->cols[i];
        Oid have = pg__coltype(cols, c->name);
        if (have == pg_oid(c->type))
            continue;
        if (have != 0) {
            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                             "table '%s' column '%s' is %s in the database, but the schema says "
                             "%s (%s)",
                             t->name, c->name, pg_type_name(have), sync_vtype_name(c->type),
                             pg_type(c->type));
        } else if (i == t->key) {
            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                             "table '%s' exists with another key column than '%s'", t->name,
                             c->name);
        } else {
            snprintf(sql, sizeof sql, "ALTER TABLE \"%s\" ADD COLUMN \"%s\" %s", t->name, c->name,
                     pg_type(c->type));
            sync_notice("store: adding column '%s' to table '%s'", c->name, t->name);
            rc = pg__ddl(st, sql, "adding a column", err, errlen);
        }
    }
    PQclear(cols);
    if (rc != SYNC_OK)
        return rc;
    /* Catch-up reads by cseq; compaction finds old tombstones without scanning live rows. */
    pg_index_name(idx, sizeof idx, t->name, "cseq");
    snprintf(sql, sizeof sql, "CREATE INDEX IF NOT EXISTS \"%s\" ON \"%s\"(_cseq)", idx,
             t->name);
    if ((rc = pg__ddl(st, sql, "creating an index", err, errlen)) != SYNC_OK)
        return rc;
    pg_index_name(idx, sizeof idx, t->name, "tomb");
    snprintf(sql, sizeof sql,
             "CREATE INDEX IF NOT EXISTS \"%s\" ON \"%s\"(_mtime) WHERE _deleted = 1", idx,
             t->name);
    return pg__ddl(st, sql, "creating an index", err, errlen);
}

/* Creates the bookkeeping tables and the synced tables, in one transaction that holds the
 * migration lock, and records the schema version. */
static int pg__migrate(pg_store *st, const sync_schema *s, char *err, size_t errlen)
{
    int rc = pg__ddl(st, "BEGIN", "starting the store's set-up", err, errlen);
    if (rc != SYNC_OK)
        return rc;
    rc = pg__ddl(st, PG_MIGRATE_LOCK, "taking the set-up lock", err, errlen);
    /* Consumers already running take the counter row first in every write transaction, then
     * the rows and tables they change. The set-up takes it first too, before any other lock
     * (its DDL locks tables): in the other order a consumer starting beside running ones
     * deadlocked with them (seen in the scale test). Running consumers wait meanwhile. */
    if (rc == SYNC_OK) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "CREATE TABLE IF NOT EXISTS _sync_state(id integer PRIMARY KEY CHECK (id = 1),"
                 " cseq bigint NOT NULL, schema_version bigint NOT NULL);"
                 "INSERT INTO _sync_state(id, cseq, schema_version) VALUES (1, 0, %u)"
                 " ON CONFLICT (id) DO NOTHING;"
                 "SELECT 1 FROM _sync_state WHERE id = 1 FOR UPDATE",
                 sync_schema_version(s));
        rc = pg__ddl(st, sql, "locking the change counter", err, errlen);
    }
    if (rc == SYNC_OK)
        rc = pg__ddl(
            st,
            "CREATE TABLE IF NOT EXISTS _sync_devices(device text COLLATE \"C\" PRIMARY KEY,"
            " last_seq bigint NOT NULL, applied bigint NOT NULL, records bigint NOT NULL,"
            " batches bigint NOT NULL, first_seen bigint, last_seen bigint);"
            "CREATE TABLE IF NOT EXISTS _sync_conflicts(id bigint GENERATED BY DEFAULT AS "
            "IDENTITY PRIMARY KEY, at bigint NOT NULL, tbl text COLLATE \"C\" NOT NULL,"
            " pk_type smallint NOT NULL, pk text COLLATE \"C\" NOT NULL,"
            " device text NOT NULL, seq bigint NOT NULL, op smallint NOT NULL,"
            " base_version bigint, server_version bigint, client_hlc bigint, server_hlc bigint,"
            " server_origin text, client_values bytea, server_values bytea, policy text NOT NULL,"
            " outcome text NOT NULL, resolved_at bigint, resolution text);"
            "CREATE INDEX IF NOT EXISTS _sync_conflicts_row ON _sync_conflicts(tbl, pk)"
            " WHERE resolved_at IS NULL;"
            "CREATE TABLE IF NOT EXISTS _sync_compacted(tbl text COLLATE \"C\" PRIMARY KEY,"
            " cseq bigint NOT NULL, version bigint NOT NULL)",
            "creating bookkeeping tables", err, errlen);
    if (rc == SYNC_OK) {
        PGresult *r = PQexec(st->conn, "SELECT schema_version FROM _sync_state WHERE id = 1");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            pg__result_err(st, "reading the schema version", r);
            rc = sync_seterr(err, errlen, SYNC_ERR_DB, "%s", st->err);
        } else if (PQntuples(r) == 1) {
            unsigned long long have = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
            if (have > sync_schema_version(s))
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                 "the store was set up for schema version %llu, newer than "
                                 "version %u of the schema file: refusing to use it with an "
                                 "older schema (give synccloud the schema file of version %llu)",
                                 have, sync_schema_version(s), have);
        }
        PQclear(r);
    }
    for (int i = 0; rc == SYNC_OK && i < sync_schema_ntables(s); i++)
        rc = pg__ensure_table(st, sync_schema_table(s, i), err, errlen);
    if (rc == SYNC_OK) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "UPDATE _sync_state SET schema_version = %u WHERE id = 1 AND schema_version <> %u",
                 sync_schema_version(s), sync_schema_version(s));
        rc = pg__ddl(st, sql, "recording the schema version", err, errlen);
    }
    if (rc == SYNC_OK)
        rc = pg__ddl(st, "COMMIT", "committing the store's set-up", err, errlen);
    if (rc != SYNC_OK)
        PQclear(PQexec(st->conn, "ROLLBACK"));
    return rc;
}

/* Registers the statements of table t. */
static int pg__table_stmts(pg_store *st, const sync_table *t, pg_table *ts)
{
    char sql[PG_SQL], name[32];
    Oid types[PG_MAXP];
    const char *key = t->cols[t->key].name;
    Oid keytype = pg_oid(t->cols[t->key].type);
    size_t at = 0;
    ts->part_col = -1;

    SQLCAT(sql, at, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
    SQLCAT(sql, at,
           "_version, _deleted, _origin, _hlc, _cseq, _colver, _conflict FROM \"%s\" WHERE "
           "\"%s\" = $1",
           t->name, key);
    snprintf(name, sizeof name, "t%d_get", t->index);
    ts->stmt[T_GET] = pg__stmt_add(st, name, sql, 1, &keytype);
    SQLCAT(sql, at, " FOR UPDATE");
    snprintf(name, sizeof name, "t%d_get_lock", t->index);
    ts->stmt[T_GET_LOCK] = pg__stmt_add(st, name, sql, 1, &keytype);

    at = 0;
    SQLCAT(sql, at, "INSERT INTO \"%s\"(", t->name);
    for (int i = 0; i < t->ncols; i++) {
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
        types[i] = pg_oid(t->cols[i].type);
    }
    SQLCAT(sql, at, "_version, _deleted, _origin, _hlc, _cseq, _colver, _conflict, _mtime) VALUES (");
    static const Oid meta_types[8] = {PG_INT8, PG_INT2, PG_TEXT, PG_INT8,
                                      PG_INT8, PG_BYTEA, PG_INT8, PG_INT8};
    memcpy(types + t->ncols, meta_types, sizeof meta_types);
    for (int i = 0; i < t->ncols + 8; i++)
        SQLCAT(sql, at, "%s$%d", i ? ", " : "", i + 1);
    SQLCAT(sql, at, ") ON CONFLICT (\"%s\") DO UPDATE SET ", key);
    for (int i = 0; i < t->ncols; i++)
        if (i != t->key)
            SQLCAT(sql, at, "\"%s\" = excluded.\"%s\", ", t->cols[i].name, t->cols[i].name);
    SQLCAT(sql, at,
           "_version = excluded._version, _deleted = excluded._deleted, _origin = "
           "excluded._origin, _hlc = excluded._hlc, _cseq = excluded._cseq, _colver = "
           "excluded._colver, _conflict = excluded._conflict, _mtime = excluded._mtime");
    if (at >= sizeof sql - 1) {
        pg__seterr(st, "table '%s': statement too long", t->name);
        return SYNC_ERR_INVAL;
    }
    snprintf(name, sizeof name, "t%d_put", t->index);
    ts->stmt[T_PUT] = pg__stmt_add(st, name, sql, t->ncols + 8, types);

    snprintf(sql, sizeof sql, "SELECT max(_cseq) FROM \"%s\"", t->name);
    snprintf(name, sizeof name, "t%d_maxcseq", t->index);
    ts->stmt[T_MAXCSEQ] = pg__stmt_add(st, name, sql, 0, NULL);

    at = 0;
    SQLCAT(sql, at, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
    SQLCAT(sql, at,
           "_version, _deleted, _origin, _hlc, _cseq FROM \"%s\" WHERE _cseq > $1 ORDER BY _cseq "
           "LIMIT $2",
           t->name);
    static const Oid two_int8[2] = {PG_INT8, PG_INT8};
    snprintf(name, sizeof name, "t%d_pull", t->index);
    ts->stmt[T_PULL] = pg__stmt_add(st, name, sql, 2, two_int8);

    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\" WHERE _cseq > $1", t->name);
    snprintf(name, sizeof name, "t%d_count_after", t->index);
    ts->stmt[T_COUNT_AFTER] = pg__stmt_add(st, name, sql, 1, two_int8);

    /* Snapshot pages walk the primary key's index: a range, no sort. A text key is compared
     * bytewise as SQLite does; its column is text COLLATE "C" already (pg_type), which the
     * explicit COLLATE repeats so the order never depends on the database's default. */
    const char *coll = t->cols[t->key].type == SYNC_TEXT ? " COLLATE \"C\"" : "";
    at = 0;
    SQLCAT(sql, at, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
    SQLCAT(sql, at, "_version, _deleted, _origin, _hlc, _cseq FROM \"%s\" ", t->name);
    size_t head = at;
    SQLCAT(sql, at, "ORDER BY \"%s\"%s LIMIT $1", key, coll);
    snprintf(name, sizeof name, "t%d_keys_first", t->index);
    ts->stmt[T_KEYS_FIRST] = pg__stmt_add(st, name, sql, 1, two_int8);
    at = head;
    SQLCAT(sql, at, "WHERE \"%s\"%s > $1 ORDER BY \"%s\"%s LIMIT $2", key, coll, key, coll);
    const Oid key_int8[2] = {keytype, PG_INT8};
    snprintf(name, sizeof name, "t%d_keys_after", t->index);
    ts->stmt[T_KEYS_AFTER] = pg__stmt_add(st, name, sql, 2, key_int8);

    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", t->name);
    snprintf(name, sizeof name, "t%d_count_all", t->index);
    ts->stmt[T_COUNT_ALL] = pg__stmt_add(st, name, sql, 0, NULL);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\" WHERE \"%s\"%s > $1", t->name, key,
             coll);
    snprintf(name, sizeof name, "t%d_count_keys_after", t->index);
    ts->stmt[T_COUNT_KEYS_AFTER] = pg__stmt_add(st, name, sql, 1, &keytype);

    snprintf(sql, sizeof sql,
             "SELECT count(*), max(_cseq), max(_version) FROM \"%s\" WHERE _deleted = 1 AND "
             "_mtime < $1 AND _conflict IS NULL",
             t->name);
    snprintf(name, sizeof name, "t%d_tomb_scan", t->index);
    ts->stmt[T_TOMB_SCAN] = pg__stmt_add(st, name, sql, 1, two_int8);

    snprintf(sql, sizeof sql,
             "DELETE FROM \"%s\" WHERE _deleted = 1 AND _mtime < $1 AND _cseq <= $2 AND "
             "_conflict IS NULL",
             t->name);
    snprintf(name, sizeof name, "t%d_tomb_del", t->index);
    ts->stmt[T_TOMB_DEL] = pg__stmt_add(st, name, sql, 2, two_int8);

    for (int i = 0; i < T_N; i++)
        if (ts->stmt[i] < 0)
            return SYNC_ERR_NOMEM;
    return SYNC_OK;
}

static int pg__common_stmts(pg_store *st)
{
    static const struct {
        int id;
        const char *name, *sql;
        int n;
        Oid types[16];
    } list[] = {
        {C_CLAIM, "c_claim", "SELECT cseq FROM _sync_state WHERE id = 1 FOR UPDATE", 0, {0}},
        {C_SAVE_CSEQ, "c_save_cseq", "UPDATE _sync_state SET cseq = $1 WHERE id = 1", 1,
         {PG_INT8}},
        {C_DEV_GET, "c_dev_get", "SELECT last_seq FROM _sync_devices WHERE device = $1", 1,
         {PG_TEXT}},
        {C_DEV_GET_LOCK, "c_dev_get_lock",
         "SELECT last_seq FROM _sync_devices WHERE device = $1 FOR UPDATE", 1, {PG_TEXT}},
        /* last_seq is a uint64 kept in a signed bigint: greatest() would compare seqs above
         * 2^63 as negative. The applier only ever writes a higher seq, so plain assignment. */
        {C_DEV_PUT, "c_dev_put",
         "INSERT INTO _sync_devices(device, last_seq, applied, records, batches, first_seen, "
         "last_seen) VALUES ($1, $2, $3, $4, 1, $5, $5) ON CONFLICT (device) DO UPDATE SET "
         "last_seq = excluded.last_seq, applied = _sync_devices.applied + excluded.applied, "
         "records = _sync_devices.records + excluded.records, batches = _sync_devices.batches "
         "+ 1, last_seen = excluded.last_seen",
         5,
         {PG_TEXT, PG_INT8, PG_INT8, PG_INT8, PG_INT8}},
        {C_CONFLICT, "c_conflict",
         "INSERT INTO _sync_conflicts(at, tbl, pk_type, pk, device, seq, op, base_version, "
         "server_version, client_hlc, server_hlc, server_origin, client_values, server_values, "
         "policy, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
         "$15, $16) RETURNING id",
         16,
         {PG_INT8, PG_TEXT, PG_INT2, PG_TEXT, PG_TEXT, PG_INT8, PG_INT2, PG_INT8, PG_INT8,
          PG_INT8, PG_INT8, PG_TEXT, PG_BYTEA, PG_BYTEA, PG_TEXT, PG_TEXT}},
        {C_CONFLICTS_SEL, "c_conflicts_sel",
         "SELECT id, at, tbl, pk_type, pk, device, seq, op, base_version, server_version, "
         "client_hlc, server_hlc, server_origin, client_values, server_values, policy, outcome, "
         "resolved_at, resolution FROM _sync_conflicts WHERE ($1 = 0 OR id = $1) AND ($2 = 0 "
         "OR (outcome = 'pending' AND resolved_at IS NULL)) ORDER BY id DESC LIMIT $3",
         3,
         {PG_INT8, PG_INT4, PG_INT8}},
        {C_CONFLICT_DONE, "c_conflict_done",
         "UPDATE _sync_conflicts SET resolved_at = $5, resolution = CASE WHEN id = $4 THEN $6 "
         "ELSE 'superseded by #' || $4 END WHERE (id = $4 OR (tbl = $1 AND pk_type = $2 AND pk "
         "= $3 AND outcome = 'pending')) AND resolved_at IS NULL",
         6,
         {PG_TEXT, PG_INT2, PG_TEXT, PG_INT8, PG_INT8, PG_TEXT}},
        {C_DEVICES, "c_devices",
         "SELECT device, last_seq, batches, records, applied, first_seen, last_seen FROM "
         "_sync_devices ORDER BY device",
         0,
         {0}},
        {C_COUNTS, "c_counts",
         "SELECT (SELECT count(*) FROM _sync_devices), (SELECT count(*) FROM _sync_devices "
         "WHERE last_seen >= $1), (SELECT count(*) FROM _sync_conflicts WHERE outcome = "
         "'pending' AND resolved_at IS NULL)",
         1,
         {PG_INT8}},
        {C_COMPACTED_PUT, "c_compacted_put",
         "INSERT INTO _sync_compacted(tbl, cseq, version) VALUES ($1, $2, $3) ON CONFLICT (tbl) "
         "DO UPDATE SET cseq = greatest(_sync_compacted.cseq, excluded.cseq), version = "
         "greatest(_sync_compacted.version, excluded.version)",
         3,
         {PG_TEXT, PG_INT8, PG_INT8}},
        {C_COMPACTED_GET, "c_compacted_get",
         "SELECT cseq, version FROM _sync_compacted WHERE tbl = $1", 1, {PG_TEXT}},
    };
    for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
        if ((st->common[list[i].id] =
                 pg__stmt_add(st, list[i].name, list[i].sql, list[i].n, list[i].types)) < 0)
            return SYNC_ERR_NOMEM;
    return SYNC_OK;
}

/* Reads each table's compaction horizon and version floor: another consumer sharing the
 * database may have compacted since we last looked. */
static int pg__load_compacted(pg_store *st)
{
    for (int i = 0; i < sync_schema_ntables(st->schema); i++) {
        pg_params p = {0};
        p_cstr(&p, sync_schema_table(st->schema, i)->name);
        PGresult *r = pg__run(st, st->common[C_COMPACTED_GET], &p);
        if (!r)
            return SYNC_ERR_DB;
        if (PQntuples(r) == 1) {
            st->tst[i].compacted = (uint64_t)r_int(r, 0, 0);
            st->tst[i].floor = (uint64_t)r_int(r, 0, 1);
        }
        PQclear(r);
    }
    return SYNC_OK;
}

/* ---- open and close ---- */

static void pg_close(cloud_store *cs)
{
    pg_store *st = (pg_store *)cs;
    if (!st)
        return;
    if (st->conn)
        PQfinish(st->conn);
    for (int i = 0; i < st->nstmts; i++)
        free(st->stmts[i].sql);
    free(st->stmts);
    free(st->tst);
    free(st->scratch);
    free(st->hex);
    free(st);
}

static pg_store *pg__new(const sync_schema *s)
{
    pg_store *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->base.ops = &pg_ops;
    st->schema = s;
    snprintf(st->desc, sizeof st->desc, "PostgreSQL");
    return st;
}

int cloud_store_pg_open(const char *conninfo, const sync_schema *s, int sync_full,
                        cloud_store **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    pg_store *st = pg__new(s);
    if (!st)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    st->sync_full = sync_full;
    /* Steps with err write it; the others leave their message in st->err. */
    st->tst = calloc((size_t)sync_schema_ntables(s) + 1, sizeof *st->tst);
    int rc = st->tst ? SYNC_OK : SYNC_ERR_NOMEM;
    if (rc == SYNC_OK)
        rc = pg__connect(st, conninfo);
    if (rc == SYNC_OK)
        rc = pg__migrate(st, s, err, errlen);
    for (int i = 0; rc == SYNC_OK && i < sync_schema_ntables(s); i++)
        rc = pg__table_stmts(st, sync_schema_table(s, i), &st->tst[i]);
    if (rc == SYNC_OK)
        rc = pg__common_stmts(st);
    if (rc == SYNC_OK)
        rc = pg__prepare_all(st);
    /* Where earlier compactions left off, and the change sequence. */
    if (rc == SYNC_OK)
        rc = pg__load_compacted(st);
    if (rc == SYNC_OK) {
        PGresult *r = PQexecParams(st->conn, "SELECT cseq FROM _sync_state WHERE id = 1", 0, NULL,
                                   NULL, NULL, NULL, 1);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            st->cseq = (uint64_t)r_int(r, 0, 0);
        else {
            pg__result_err(st, "reading the change sequence", r);
            rc = SYNC_ERR_DB;
        }
        PQclear(r);
    }
    if (rc != SYNC_OK) {
        if (err && errlen && !err[0])
            sync_seterr(err, errlen, rc, "%s", st->err[0] ? st->err : sync_strerror(rc));
        pg_close(&st->base);
        return rc;
    }
    *out = &st->base;
    return SYNC_OK;
}

int cloud_store_pg_open_ro(const char *conninfo, const sync_schema *s, cloud_store **out,
                           char *err, size_t errlen)
{
    *out = NULL;
    pg_store *st = pg__new(s);
    if (!st)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    st->readonly = 1;
    int rc = pg__connect(st, conninfo);
    if (rc != SYNC_OK) {
        sync_seterr(err, errlen, rc, "%s", st->err);
        pg_close(&st->base);
        return rc;
    }
    *out = &st->base;
    return SYNC_OK;
}

static const char *pg_errmsg(cloud_store *cs)
{
    return ((pg_store *)cs)->err;
}

static const char *pg_describe(cloud_store *cs)
{
    return ((pg_store *)cs)->desc;
}

/* ---- transactions ---- */

static int pg_begin(cloud_store *cs)
{
    pg_store *st = (pg_store *)cs;
    if (st->in_tx) {
        pg__seterr(st, "a transaction is already open");
        return SYNC_ERR_STATE;
    }
    if (pg__start(st, "BEGIN ISOLATION LEVEL READ COMMITTED") != SYNC_OK)
        return SYNC_ERR_DB;
    st->in_tx = 1;
    st->failed = 0;
    /* The counter is locked until COMMIT (see the top of this file): its value now is every
     * committed change's, whoever wrote them. */
    PGresult *r = pg__run(st, st->common[C_CLAIM], NULL);
    if (!r || PQntuples(r) != 1) {
        if (r)
            pg__seterr(st, "_sync_state has no counter row");
        PQclear(r);
        PQclear(PQexec(st->conn, "ROLLBACK"));
        st->in_tx = 0;
        return SYNC_ERR_DB;
    }
    st->cseq = st->cseq_tx = (uint64_t)r_int(r, 0, 0);
    PQclear(r);
    /* Under the lock, what other consumers compacted is committed and visible: the version
     * floors the applier uses in this transaction are current. */
    if (pg__load_compacted(st) != SYNC_OK) {
        PQclear(PQexec(st->conn, "ROLLBACK"));
        st->in_tx = 0;
        return SYNC_ERR_DB;
    }
    return SYNC_OK;
}

static int pg_refresh(cloud_store *cs)
{
    pg_store *st = (pg_store *)cs;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    return pg__load_compacted(st);
}

static int pg_commit(cloud_store *cs)
{
    pg_store *st = (pg_store *)cs;
    if (!st->in_tx) {
        pg__seterr(st, "no transaction to commit");
        return SYNC_ERR_STATE;
    }
    if (st->failed)
        return SYNC_ERR_DB; /* the failure's message stays; the caller rolls back */
    if (st->cseq != st->cseq_tx) {
        pg_params p = {0};
        p_int8(&p, (int64_t)st->cseq);
        if (pg__run_ok(st, st->common[C_SAVE_CSEQ], &p) != SYNC_OK)
            return SYNC_ERR_DB;
    }
    PGresult *r = PQexec(st->conn, "COMMIT");
    /* A COMMIT of a transaction that failed says "ROLLBACK" and counts as success. */
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (!ok) {
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            pg__seterr(st, "COMMIT: the transaction was rolled back");
        else
            pg__result_err(st, "COMMIT", r);
    }
    PQclear(r);
    st->in_tx = 0;
    st->failed = 0;
    if (!ok)
        st->cseq = st->cseq_tx;
    return ok ? SYNC_OK : SYNC_ERR_DB;
}

static void pg_rollback(cloud_store *cs)
{
    pg_store *st = (pg_store *)cs;
    if (PQstatus(st->conn) == CONNECTION_OK && PQtransactionStatus(st->conn) != PQTRANS_IDLE)
        PQclear(PQexec(st->conn, "ROLLBACK"));
    st->in_tx = 0;
    st->failed = 0;
    st->cseq = st->cseq_tx;
}

static int pg_savepoint(cloud_store *cs)
{
    pg_store *st = (pg_store *)cs;
    if (st->failed)
        return SYNC_ERR_DB;
    st->cseq_sp = st->cseq;
    return pg__exec(st, "SAVEPOINT batch");
}

static int pg_release(cloud_store *cs)
{
    pg_store *st = (pg_store *)cs;
    if (st->failed)
        return SYNC_ERR_DB;
    return pg__exec(st, "RELEASE SAVEPOINT batch");
}

static void pg_rollback_savepoint(cloud_store *cs)
{
    pg_store *st = (pg_store *)cs;
    char keep[sizeof st->err];
    memcpy(keep, st->err, sizeof keep); /* the caller reports why the batch failed */
    st->failed = 0;
    if (pg__exec(st, "ROLLBACK TO SAVEPOINT batch") != SYNC_OK ||
        pg__exec(st, "RELEASE SAVEPOINT batch") != SYNC_OK)
        st->failed = 1; /* (the connection is gone): the whole transaction must go */
    memcpy(st->err, keep, sizeof keep);
    st->cseq = st->cseq_sp;
}

/* ---- devices ---- */

static int pg_device_seq(cloud_store *cs, const char *device, uint64_t *last_seq)
{
    pg_store *st = (pg_store *)cs;
    *last_seq = 0;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    pg_params p = {0};
    p_cstr(&p, device);
    PGresult *r = pg__run(st, st->common[st->in_tx ? C_DEV_GET_LOCK : C_DEV_GET], &p);
    if (!r)
        return SYNC_ERR_DB;
    if (PQntuples(r) == 1)
        *last_seq = (uint64_t)r_int(r, 0, 0);
    PQclear(r);
    return SYNC_OK;
}

static int pg_device_done(cloud_store *cs, const char *device, uint64_t last_seq,
                          uint64_t applied, uint64_t records)
{
    pg_store *st = (pg_store *)cs;
    pg_params p = {0};
    p_cstr(&p, device);
    p_int8(&p, (int64_t)last_seq);
    p_int8(&p, (int64_t)applied);
    p_int8(&p, (int64_t)records);
    p_int8(&p, sync_wall_ms());
    return pg__run_ok(st, st->common[C_DEV_PUT], &p);
}

/* ---- rows ---- */

static int reserve(uint8_t **buf, size_t *cap, size_t n)
{
    if (n <= *cap)
        return SYNC_OK;
    size_t c = *cap ? *cap : 4096;
    while (c < n)
        c *= 2;
    uint8_t *p = realloc(*buf, c);
    if (!p)
        return SYNC_ERR_NOMEM;
    *buf = p;
    *cap = c;
    return SYNC_OK;
}

static int pg_row_get(cloud_store *cs, const sync_table *t, const sync_value *key, cloud_row *row)
{
    pg_store *st = (pg_store *)cs;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    pg_params p = {0};
    int rc = p_value(st, &p, key, t->cols[t->key].type, t->cols[t->key].name);
    if (rc != SYNC_OK)
        return SYNC_ERR_DB;
    /* In a write transaction the row stays locked until COMMIT: what the version check saw is
     * what the write replaces. */
    PGresult *r = pg__run(st, st->tst[t->index].stmt[st->in_tx ? T_GET_LOCK : T_GET], &p);
    if (!r)
        return SYNC_ERR_DB;
    row->exists = PQntuples(r) == 1;
    row->left = 0;
    if (!row->exists) {
        PQclear(r);
        row->deleted = 0;
        row->version = row->hlc = row->cseq = 0;
        row->conflict = 0;
        memset(row->colver, 0, sizeof row->colver);
        row->origin[0] = '\0';
        for (int i = 0; i < t->ncols; i++)
            row->vals[i].type = SYNC_NULL;
        return SYNC_OK;
    }
    size_t need = 0;
    for (int i = 0; i < t->ncols; i++) {
        r_value(r, 0, i, &row->vals[i]);
        if (row->vals[i].type == SYNC_TEXT || row->vals[i].type == SYNC_BLOB)
            need += row->vals[i].u.b.n;
    }
    if (reserve(&st->scratch, &st->scratch_cap, need) != SYNC_OK) {
        PQclear(r);
        pg__seterr(st, "out of memory");
        return SYNC_ERR_NOMEM;
    }
    size_t at = 0;
    for (int i = 0; i < t->ncols; i++) {
        sync_value *v = &row->vals[i];
        if (v->type == SYNC_TEXT || v->type == SYNC_BLOB) {
            if (v->u.b.n)
                memcpy(st->scratch + at, v->u.b.p, v->u.b.n);
            v->u.b.p = st->scratch + at;
            at += v->u.b.n;
        }
    }
    int c = t->ncols;
    row->version = (uint64_t)r_int(r, 0, c);
    row->deleted = r_int(r, 0, c + 1) != 0;
    snprintf(row->origin, sizeof row->origin, "%s",
             PQgetisnull(r, 0, c + 2) ? "" : PQgetvalue(r, 0, c + 2));
    row->hlc = (uint64_t)r_int(r, 0, c + 3);
    row->cseq = (uint64_t)r_int(r, 0, c + 4);
    const uint8_t *cv = (const uint8_t *)PQgetvalue(r, 0, c + 5);
    int cvn = PQgetisnull(r, 0, c + 5) ? 0 : PQgetlength(r, 0, c + 5);
    for (int i = 0; i < t->ncols; i++) {
        /* Stored little-endian, 4 bytes a column; a missing entry (older row, wider schema)
         * counts as set by version 0. */
        row->colver[i] = 0;
        if ((i + 1) * 4 <= cvn)
            row->colver[i] = (uint32_t)cv[4 * i] | (uint32_t)cv[4 * i + 1] << 8 |
                             (uint32_t)cv[4 * i + 2] << 16 | (uint32_t)cv[4 * i + 3] << 24;
    }
    row->conflict = r_int(r, 0, c + 6);
    PQclear(r);
    return SYNC_OK;
}

static int pg_row_put(cloud_store *cs, const sync_table *t, const sync_value *key,
                      const cloud_row *row)
{
    pg_store *st = (pg_store *)cs;
    pg_params p = {0};
    for (int i = 0; i < t->ncols; i++)
        if (p_value(st, &p, i == t->key ? key : &row->vals[i], t->cols[i].type,
                    t->cols[i].name) != SYNC_OK) {
            if (st->in_tx)
                st->failed = 1; /* the batch is not applied: as if the statement had failed */
            return SYNC_ERR_DB;
        }
    p_int8(&p, (int64_t)row->version);
    p_int2(&p, (int16_t)(row->deleted != 0));
    p_cstr(&p, row->origin);
    p_int8(&p, (int64_t)row->hlc);
    p_int8(&p, (int64_t)row->cseq);
    uint8_t cv[4 * SYNC_MAX_COLS];
    for (int i = 0; i < t->ncols; i++) {
        cv[4 * i] = (uint8_t)row->colver[i];
        cv[4 * i + 1] = (uint8_t)(row->colver[i] >> 8);
        cv[4 * i + 2] = (uint8_t)(row->colver[i] >> 16);
        cv[4 * i + 3] = (uint8_t)(row->colver[i] >> 24);
    }
    p_bytes(&p, cv, 4 * (size_t)t->ncols);
    if (row->conflict)
        p_int8(&p, row->conflict);
    else
        p_null(&p);
    p_int8(&p, sync_wall_ms());
    return pg__run_ok(st, st->tst[t->index].stmt[T_PUT], &p);
}

/* ---- conflicts ---- */

/* Adds a row key as the conflict log keeps it: pk_type (the sync_vtype) and pk as text (an
 * integer in decimal, text as it is, a blob in lower-case hex). */
static int p_key(pg_store *st, pg_params *p, const sync_value *key, char *num, size_t numlen)
{
    p_int2(p, (int16_t)key->type);
    switch (key->type) {
    case SYNC_INT:
        snprintf(num, numlen, "%lld", (long long)key->u.i);
        p_cstr(p, num);
        return SYNC_OK;
    case SYNC_TEXT:
        return p_value(st, p, key, SYNC_TEXT, "key");
    case SYNC_BLOB: {
        if (reserve((uint8_t **)&st->hex, &st->hex_cap, 2 * key->u.b.n + 1) != SYNC_OK) {
            pg__seterr(st, "out of memory");
            return SYNC_ERR_NOMEM;
        }
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < key->u.b.n; i++) {
            st->hex[2 * i] = digits[key->u.b.p[i] >> 4];
            st->hex[2 * i + 1] = digits[key->u.b.p[i] & 15];
        }
        p_bytes(p, st->hex, 2 * key->u.b.n);
        return SYNC_OK;
    }
    default:
        pg__seterr(st, "a key must be an integer, text or a blob");
        return SYNC_ERR_SCHEMA;
    }
}

static int pg_conflict(cloud_store *cs, const cloud_conflict *c, int64_t *id)
{
    pg_store *st = (pg_store *)cs;
    pg_params p = {0};
    char num[32];
    if (id)
        *id = 0;
    p_int8(&p, sync_wall_ms());
    p_cstr(&p, c->t->name);
    if (p_key(st, &p, c->key, num, sizeof num) != SYNC_OK) {
        if (st->in_tx)
            st->failed = 1;
        return SYNC_ERR_DB;
    }
    p_cstr(&p, c->device);
    p_int8(&p, (int64_t)c->seq);
    p_int2(&p, (int16_t)c->op);
    p_int8(&p, (int64_t)c->base_version);
    p_int8(&p, (int64_t)c->server_version);
    p_int8(&p, (int64_t)c->client_hlc);
    p_int8(&p, (int64_t)c->server_hlc);
    p_cstr(&p, c->server_origin);
    if (c->client_cbor)
        p_bytes(&p, c->client_cbor, c->client_len);
    else
        p_null(&p);
    if (c->server_cbor)
        p_bytes(&p, c->server_cbor, c->server_len);
    else
        p_null(&p);
    p_cstr(&p, c->policy);
    p_cstr(&p, c->outcome);
    PGresult *r = pg__run(st, st->common[C_CONFLICT], &p);
    if (!r)
        return SYNC_ERR_DB;
    if (id && PQntuples(r) == 1)
        *id = r_int(r, 0, 0);
    PQclear(r);
    return SYNC_OK;
}

static int unhex(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                : -1;
}

/* Reads the key of a conflict log row back into *key (a blob into st->scratch). */
static int r_key(pg_store *st, const PGresult *r, int row, int tcol, int kcol, sync_value *key)
{
    int type = (int)r_int(r, row, tcol);
    const char *s = PQgetvalue(r, row, kcol);
    size_t n = (size_t)PQgetlength(r, row, kcol);
    switch (type) {
    case SYNC_INT:
        key->type = SYNC_INT;
        key->u.i = strtoll(s, NULL, 10);
        return SYNC_OK;
    case SYNC_BLOB:
        if (reserve(&st->scratch, &st->scratch_cap, n / 2 + 1) != SYNC_OK)
            return SYNC_ERR_NOMEM;
        for (size_t i = 0; i + 1 < n; i += 2) {
            int hi = unhex(s[i]), lo = unhex(s[i + 1]);
            st->scratch[i / 2] = (uint8_t)((hi < 0 ? 0 : hi) << 4 | (lo < 0 ? 0 : lo));
        }
        key->type = SYNC_BLOB;
        key->u.b.p = st->scratch;
        key->u.b.n = n / 2;
        return SYNC_OK;
    default:
        key->type = SYNC_TEXT;
        key->u.b.p = (const uint8_t *)s;
        key->u.b.n = n;
        return SYNC_OK;
    }
}

static const char *r_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int pg_devices(cloud_store *cs, cloud_device_cb cb, void *ctx)
{
    pg_store *st = (pg_store *)cs;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    pg_params p = {0};
    PGresult *r = pg__run(st, st->common[C_DEVICES], &p);
    if (!r)
        return SYNC_ERR_DB;
    int ret = SYNC_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        cloud_device_rec d = {
            .device = r_str(r, i, 0),
            .last_seq = (uint64_t)r_int(r, i, 1),
            .batches = (uint64_t)r_int(r, i, 2),
            .records = (uint64_t)r_int(r, i, 3),
            .applied = (uint64_t)r_int(r, i, 4),
            .first_seen = r_int(r, i, 5),
            .last_seen = r_int(r, i, 6),
        };
        if (!d.device)
            continue;
        int x = cb(ctx, &d);
        if (x != 0) {
            ret = x == 1 ? SYNC_OK : x;
            break;
        }
    }
    PQclear(r);
    return ret;
}

static int pg_counts(cloud_store *cs, int64_t active_since_ms, cloud_counts *out)
{
    pg_store *st = (pg_store *)cs;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    pg_params p = {0};
    p_int8(&p, active_since_ms);
    PGresult *r = pg__run(st, st->common[C_COUNTS], &p);
    if (!r)
        return SYNC_ERR_DB;
    if (PQntuples(r) == 1) {
        out->devices = (uint64_t)r_int(r, 0, 0);
        out->active = (uint64_t)r_int(r, 0, 1);
        out->conflicts_pending = (uint64_t)r_int(r, 0, 2);
    }
    PQclear(r);
    return SYNC_OK;
}

static int pg_conflicts(cloud_store *cs, int64_t id, int pending_only, int64_t limit,
                        cloud_conflict_cb cb, void *ctx)
{
    pg_store *st = (pg_store *)cs;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    pg_params p = {0};
    p_int8(&p, id);
    p_int4(&p, pending_only != 0);
    p_int8(&p, limit > 0 ? limit : INT64_MAX);
    PGresult *r = pg__run(st, st->common[C_CONFLICTS_SEL], &p);
    if (!r)
        return SYNC_ERR_DB;
    int ret = SYNC_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        cloud_conflict_rec c;
        memset(&c, 0, sizeof c);
        c.id = r_int(r, i, 0);
        c.at = r_int(r, i, 1);
        c.table = r_str(r, i, 2);
        if ((ret = r_key(st, r, i, 3, 4, &c.key)) != SYNC_OK) {
            pg__seterr(st, "out of memory");
            break;
        }
        c.device = r_str(r, i, 5);
        c.seq = (uint64_t)r_int(r, i, 6);
        c.op = (sync_op)r_int(r, i, 7);
        c.base_version = (uint64_t)r_int(r, i, 8);
        c.server_version = (uint64_t)r_int(r, i, 9);
        c.client_hlc = (uint64_t)r_int(r, i, 10);
        c.server_hlc = (uint64_t)r_int(r, i, 11);
        c.server_origin = r_str(r, i, 12);
        c.client_cbor = (const uint8_t *)r_str(r, i, 13);
        c.client_len = c.client_cbor ? (size_t)PQgetlength(r, i, 13) : 0;
        c.server_cbor = (const uint8_t *)r_str(r, i, 14);
        c.server_len = c.server_cbor ? (size_t)PQgetlength(r, i, 14) : 0;
        c.policy = r_str(r, i, 15);
        c.outcome = r_str(r, i, 16);
        c.resolved_at = r_int(r, i, 17);
        c.resolution = r_str(r, i, 18);
        int x = cb(ctx, &c);
        if (x == 1)
            break;
        if (x != 0) {
            ret = x;
            break;
        }
    }
    PQclear(r);
    return ret;
}

static int pg_conflict_resolved(cloud_store *cs, const sync_table *t, const sync_value *key,
                                int64_t id, const char *resolution)
{
    pg_store *st = (pg_store *)cs;
    pg_params p = {0};
    char num[32];
    p_cstr(&p, t->name);
    if (p_key(st, &p, key, num, sizeof num) != SYNC_OK) {
        if (st->in_tx)
            st->failed = 1;
        return SYNC_ERR_DB;
    }
    p_int8(&p, id);
    p_int8(&p, sync_wall_ms());
    p_cstr(&p, resolution);
    return pg__run_ok(st, st->common[C_CONFLICT_DONE], &p);
}

/* ---- change sequence, catch-up, compaction ---- */

static uint64_t pg_next_cseq(cloud_store *cs)
{
    /* Inside a write transaction the counter row is locked (pg_begin), so this is the next
     * number for the whole database, not only for this connection. */
    return ++((pg_store *)cs)->cseq;
}

static int pg_table_cseq(cloud_store *cs, const sync_table *t, uint64_t *cseq)
{
    pg_store *st = (pg_store *)cs;
    *cseq = 0;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    PGresult *r = pg__run(st, st->tst[t->index].stmt[T_MAXCSEQ], NULL);
    if (!r)
        return SYNC_ERR_DB;
    if (PQntuples(r) == 1)
        *cseq = (uint64_t)r_int(r, 0, 0);
    PQclear(r);
    /* Compacted tombstones were changes too: the table's newest change never goes back. */
    if (*cseq < st->tst[t->index].compacted)
        *cseq = st->tst[t->index].compacted;
    return SYNC_OK;
}

/* Fills *row and *key from row i of a page query (the columns, then _version, _deleted,
 * _origin, _hlc, _cseq); values point into the result. */
static void pg__page_row(const PGresult *r, int i, const sync_table *t, cloud_row *row,
                         sync_value *key)
{
    for (int c = 0; c < t->ncols; c++)
        r_value(r, i, c, &row->vals[c]);
    *key = row->vals[t->key];
    int c = t->ncols;
    row->exists = 1;
    row->left = 0;
    row->version = (uint64_t)r_int(r, i, c);
    row->deleted = r_int(r, i, c + 1) != 0;
    snprintf(row->origin, sizeof row->origin, "%s",
             PQgetisnull(r, i, c + 2) ? "" : PQgetvalue(r, i, c + 2));
    row->hlc = (uint64_t)r_int(r, i, c + 3);
    row->cseq = (uint64_t)r_int(r, i, c + 4);
    row->conflict = 0;
}

/* A catch-up page in one read-only snapshot, so the count and the page agree (it takes no
 * locks): *remaining from statement `count` with the parameters in p, then the rows of
 * statement `page` with the same parameters and the limit after them, handed to cb. */
static int pg__page(pg_store *st, const sync_table *t, int count, int page, pg_params *p,
                    uint64_t limit, cloud_row_cb cb, void *ctx, uint64_t *remaining)
{
    pg_table *ts = &st->tst[t->index];
    if (pg__start(st, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != SYNC_OK)
        return SYNC_ERR_DB;
    PGresult *r = pg__run(st, ts->stmt[count], p);
    int ret = r ? SYNC_OK : SYNC_ERR_DB;
    if (r && PQntuples(r) == 1)
        *remaining = (uint64_t)r_int(r, 0, 0);
    PQclear(r);
    r = NULL;
    if (ret == SYNC_OK) {
        p_int8(p, (int64_t)(limit > INT64_MAX ? INT64_MAX : limit));
        r = pg__run(st, ts->stmt[page], p);
        if (!r)
            ret = SYNC_ERR_DB;
    }
    cloud_row row;
    memset(row.colver, 0, sizeof row.colver);
    for (int i = 0; ret == SYNC_OK && i < PQntuples(r); i++) {
        sync_value key;
        pg__page_row(r, i, t, &row, &key);
        int x = cb(ctx, &key, &row);
        if (x == 1)
            break;
        if (x != 0)
            ret = x;
    }
    PQclear(r);
    PQclear(PQexec(st->conn, "COMMIT"));
    return ret;
}

/* Pages are read from committed data only. */
static int pg__no_tx(pg_store *st)
{
    if (!st->in_tx)
        return SYNC_OK;
    /* It would read this transaction's uncommitted rows (and SQLite refuses it too). */
    pg__seterr(st, "a catch-up page cannot be read inside a write transaction");
    return SYNC_ERR_STATE;
}

static int pg_pull(cloud_store *cs, const sync_table *t, uint64_t after, uint64_t limit,
                   cloud_row_cb cb, void *ctx, uint64_t *remaining)
{
    pg_store *st = (pg_store *)cs;
    *remaining = 0;
    int rc = pg__no_tx(st);
    if (rc != SYNC_OK)
        return rc;
    pg_params p = {0};
    p_int8(&p, (int64_t)after);
    return pg__page(st, t, T_COUNT_AFTER, T_PULL, &p, limit, cb, ctx, remaining);
}

static int pg_pull_keys(cloud_store *cs, const sync_table *t, const sync_value *after_key,
                        uint64_t limit, cloud_row_cb cb, void *ctx, uint64_t *remaining)
{
    pg_store *st = (pg_store *)cs;
    const sync_column *kc = &t->cols[t->key];
    *remaining = 0;
    int rc = pg__no_tx(st);
    if (rc != SYNC_OK)
        return rc;
    /* p_value would take a NULL, or an integer for a real column: a key has exactly its type. */
    pg_params p = {0};
    if (after_key) {
        if (after_key->type != kc->type) {
            pg__seterr(st, "column '%s': a %s value for a %s column", kc->name,
                       sync_vtype_name(after_key->type), sync_vtype_name(kc->type));
            return SYNC_ERR_SCHEMA;
        }
        if ((rc = p_value(st, &p, after_key, kc->type, kc->name)) != SYNC_OK)
            return rc;
    }
    return pg__page(st, t, after_key ? T_COUNT_KEYS_AFTER : T_COUNT_ALL,
                    after_key ? T_KEYS_AFTER : T_KEYS_FIRST, &p, limit, cb, ctx, remaining);
}

static int pg_compact(cloud_store *cs, const sync_table *t, int64_t before_ms, uint64_t *removed)
{
    pg_store *st = (pg_store *)cs;
    pg_table *ts = &st->tst[t->index];
    *removed = 0;
    pg_params p = {0};
    p_int8(&p, before_ms);
    PGresult *r = pg__run(st, ts->stmt[T_TOMB_SCAN], &p);
    if (!r)
        return SYNC_ERR_DB;
    uint64_t n = 0, cseq = 0, version = 0;
    if (PQntuples(r) == 1) {
        n = (uint64_t)r_int(r, 0, 0);
        cseq = (uint64_t)r_int(r, 0, 1);
        version = (uint64_t)r_int(r, 0, 2);
    }
    PQclear(r);
    /* A partitioned table's old leaves go too: a partition pull from below its partition's
     * horizon is answered from the start, as a whole-table one is. */
    uint64_t leaves = 0, leaves_cseq = 0;
    if (ts->part_col >= 0) {
        if (!(r = pg__run(st, ts->pstmt[P_MOVES_SCAN], &p)))
            return SYNC_ERR_DB;
        if (PQntuples(r) == 1) {
            leaves = (uint64_t)r_int(r, 0, 0);
            leaves_cseq = (uint64_t)r_int(r, 0, 1);
        }
        PQclear(r);
    }
    if (n == 0 && leaves == 0)
        return SYNC_OK;
    /* The table's horizon only rises: a replica whose cursor is below it may have missed a
     * delete that no longer exists, and must take the table whole. Only tombstones raise it
     * (whole-table replicas never get leaves), and only they the version floor. */
    if (cseq < ts->compacted)
        cseq = ts->compacted;
    if (version < ts->floor)
        version = ts->floor;
    if (n > 0) {
        pg_params d = {0};
        p_int8(&d, before_ms);
        p_int8(&d, (int64_t)cseq);
        /* Each partition's horizon first, from the tombstones about to go. */
        if (ts->part_col >= 0 && pg__run_ok(st, ts->pstmt[P_TOMB_PARTS], &d) != SYNC_OK)
            return SYNC_ERR_DB;
        if (!(r = pg__run(st, ts->stmt[T_TOMB_DEL], &d)))
            return SYNC_ERR_DB;
        *removed = strtoull(PQcmdTuples(r), NULL, 10);
        PQclear(r);
    }
    if (leaves > 0) {
        pg_params d = {0};
        p_int8(&d, before_ms);
        p_int8(&d, (int64_t)leaves_cseq);
        if (pg__run_ok(st, ts->pstmt[P_MOVES_PARTS], &d) != SYNC_OK)
            return SYNC_ERR_DB;
        if (!(r = pg__run(st, ts->pstmt[P_MOVES_DEL], &d)))
            return SYNC_ERR_DB;
        *removed += strtoull(PQcmdTuples(r), NULL, 10);
        PQclear(r);
    }
    if (n == 0)
        return SYNC_OK;
    pg_params q = {0};
    p_cstr(&q, t->name);
    p_int8(&q, (int64_t)cseq);
    p_int8(&q, (int64_t)version);
    if (pg__run_ok(st, st->common[C_COMPACTED_PUT], &q) != SYNC_OK)
        return SYNC_ERR_DB;
    /* Cached before the commit: were it rolled back, replicas would at worst resync a table in
     * full without need, and new rows start at a higher version than needed. Both are safe. */
    ts->compacted = cseq;
    ts->floor = version;
    return SYNC_OK;
}

static uint64_t pg_compacted(const cloud_store *cs, const sync_table *t)
{
    return ((const pg_store *)cs)->tst[t->index].compacted;
}

static uint64_t pg_version_floor(const cloud_store *cs, const sync_table *t)
{
    return ((const pg_store *)cs)->tst[t->index].floor;
}

/* ---- partitions ---- */

/* Writes "_sync_TABLE_part_COL" into out (the index on (COL, _cseq)): named after the column
 * too, so a table partitioned by another column later gets its own. Shortened, with a hash of
 * both names, when PostgreSQL would cut it. */
static void pg_part_index_name(char *out, size_t n, const char *table, const char *col)
{
    if (strlen(table) + strlen(col) + 12 <= 63) {
        snprintf(out, n, "_sync_%s_part_%s", table, col);
        return;
    }
    uint32_t h = fnv1a(fnv1a(2166136261u, table) * 16777619u, col);
    snprintf(out, n, "_sync_%.20s_part_%.20s_%08x", table, col, (unsigned)h);
}

/* SYNC_OK if t was declared partitioned, else SYNC_ERR_STATE with a message. */
static int pg__partitioned(pg_store *st, const sync_table *t)
{
    if (st->tst && st->tst[t->index].part_col >= 0)
        return SYNC_OK;
    pg__seterr(st, "table '%s' is not partitioned in the store", t->name);
    return SYNC_ERR_STATE;
}

/* Creates (in one transaction under the set-up lock, as pg__migrate) the moves table of t, its
 * table of partition horizons (cmp) and the index on (col, _cseq). Those tables made for a
 * partition column of another type are of no use to this one's partitions: they are made
 * again. */
static int pg__partition_ddl(pg_store *st, const sync_table *t, int col, const char *moves,
                             const char *cmp)
{
    char sql[PG_SQL], idx[80], err[256];
    const sync_column *c = &t->cols[col], *k = &t->cols[t->key];
    if (pg__start(st, "BEGIN") != SYNC_OK)
        return SYNC_ERR_DB;
    int rc = pg__exec(st, PG_MIGRATE_LOCK);
    if (rc == SYNC_OK)
        rc = pg__exec(st, "SELECT 1 FROM _sync_state WHERE id = 1 FOR UPDATE");
    if (rc == SYNC_OK) {
        PGresult *cols = pg__columns(st, moves, err, sizeof err);
        if (!cols)
            rc = SYNC_ERR_DB;
        Oid part = cols ? pg__coltype(cols, "part") : 0, pk = cols ? pg__coltype(cols, "pk") : 0;
        PQclear(cols);
        if (rc == SYNC_OK && ((part && part != pg_oid(c->type)) || (pk && pk != pg_oid(k->type)))) {
            sync_notice("store: table '%s' is now partitioned by '%s' (%s): its leaves of "
                        "another partition column are dropped",
                        t->name, c->name, sync_vtype_name(c->type));
            snprintf(sql, sizeof sql, "DROP TABLE \"%s\"", moves);
            rc = pg__exec(st, sql);
        }
    }
    if (rc == SYNC_OK) {
        PGresult *cols = pg__columns(st, cmp, err, sizeof err);
        if (!cols)
            rc = SYNC_ERR_DB;
        Oid part = cols ? pg__coltype(cols, "part") : 0;
        PQclear(cols);
        if (rc == SYNC_OK && part && part != pg_oid(c->type)) {
            snprintf(sql, sizeof sql, "DROP TABLE \"%s\"", cmp);
            rc = pg__exec(st, sql);
        }
    }
    if (rc == SYNC_OK) {
        size_t at = 0;
        SQLCAT(sql, at,
               "CREATE TABLE IF NOT EXISTS \"%s\"(part %s NOT NULL, pk %s NOT NULL,"
               " version bigint NOT NULL, cseq bigint NOT NULL, hlc bigint NOT NULL,"
               " origin text COLLATE \"C\" NOT NULL, at_ms bigint NOT NULL,"
               " PRIMARY KEY (part, pk));",
               moves, pg_type(c->type), pg_type(k->type));
        pg_index_name(idx, sizeof idx, t->name, "mvcseq");
        SQLCAT(sql, at, "CREATE INDEX IF NOT EXISTS \"%s\" ON \"%s\"(part, cseq);", idx, moves);
        pg_index_name(idx, sizeof idx, t->name, "mvat");
        SQLCAT(sql, at, "CREATE INDEX IF NOT EXISTS \"%s\" ON \"%s\"(at_ms);", idx, moves);
        SQLCAT(sql, at,
               "CREATE TABLE IF NOT EXISTS \"%s\"(part %s PRIMARY KEY, cseq bigint NOT NULL);",
               cmp, pg_type(c->type));
        pg_part_index_name(idx, sizeof idx, t->name, c->name);
        SQLCAT(sql, at, "CREATE INDEX IF NOT EXISTS \"%s\" ON \"%s\"(\"%s\", _cseq)", idx, t->name,
               c->name);
        rc = pg__exec(st, sql);
    }
    if (rc == SYNC_OK) {
        PGresult *r = PQexec(st->conn, "COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK || strcmp(PQcmdStatus(r), "COMMIT") != 0) {
            pg__result_err(st, "COMMIT", r);
            rc = SYNC_ERR_DB;
        }
        PQclear(r);
    }
    if (rc != SYNC_OK && PQtransactionStatus(st->conn) != PQTRANS_IDLE)
        PQclear(PQexec(st->conn, "ROLLBACK"));
    return rc;
}

/* Registers the partition statements of t (moves: its moves table, cmp: its partition
 * horizons) into ts->pstmt. */
static int pg__part_stmts(pg_store *st, const sync_table *t, int col, const char *moves,
                          const char *cmp, pg_table *ts)
{
    char sql[PG_SQL], name[32];
    const char *tn = t->name, *cn = t->cols[col].name;
    Oid ct = pg_oid(t->cols[col].type);
    size_t at = 0;

    /* Index lookups: (col, _cseq) of the table, (part, cseq) of the moves and the horizon's
     * primary key. */
    snprintf(sql, sizeof sql,
             "SELECT greatest((SELECT max(_cseq) FROM \"%s\" WHERE \"%s\" = $1),"
             " (SELECT max(cseq) FROM \"%s\" WHERE part = $1),"
             " (SELECT cseq FROM \"%s\" WHERE part = $1))",
             tn, cn, moves, cmp);
    snprintf(name, sizeof name, "t%d_part_max", t->index);
    ts->pstmt[P_MAX] = pg__stmt_add(st, name, sql, 1, &ct);

    snprintf(sql, sizeof sql,
             "INSERT INTO \"%s\"(part, pk, version, cseq, hlc, origin, at_ms) VALUES ($1, $2, "
             "$3, $4, $5, $6, $7) ON CONFLICT (part, pk) DO UPDATE SET version = "
             "excluded.version, cseq = excluded.cseq, hlc = excluded.hlc, origin = "
             "excluded.origin, at_ms = excluded.at_ms",
             moves);
    Oid leave_types[7] = {ct,     pg_oid(t->cols[t->key].type), PG_INT8, PG_INT8, PG_INT8, PG_TEXT,
                          PG_INT8};
    snprintf(name, sizeof name, "t%d_leave", t->index);
    ts->pstmt[P_LEAVE] = pg__stmt_add(st, name, sql, 7, leave_types);

    Oid part_after[3] = {ct, PG_INT8, PG_INT8};
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM \"%s\" WHERE \"%s\" = $1 AND _cseq > $2) +"
             " (SELECT count(*) FROM \"%s\" WHERE part = $1 AND cseq > $2)",
             tn, cn, moves);
    snprintf(name, sizeof name, "t%d_part_count", t->index);
    ts->pstmt[P_COUNT] = pg__stmt_add(st, name, sql, 2, part_after);

    SQLCAT(sql, at, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "\"%s\", ", t->cols[i].name);
    SQLCAT(sql, at,
           "_version, _deleted, _origin, _hlc, _cseq FROM \"%s\" WHERE \"%s\" = $1 AND _cseq > "
           "$2 ORDER BY _cseq LIMIT $3",
           tn, cn);
    if (at >= sizeof sql - 1) {
        pg__seterr(st, "table '%s': statement too long", tn);
        return SYNC_ERR_INVAL;
    }
    snprintf(name, sizeof name, "t%d_part_pull", t->index);
    ts->pstmt[P_PULL] = pg__stmt_add(st, name, sql, 3, part_after);

    snprintf(sql, sizeof sql,
             "SELECT pk, version, cseq, hlc, origin FROM \"%s\" WHERE part = $1 AND cseq > $2 "
             "ORDER BY cseq LIMIT $3",
             moves);
    snprintf(name, sizeof name, "t%d_moves_pull", t->index);
    ts->pstmt[P_MOVES_PULL] = pg__stmt_add(st, name, sql, 3, part_after);

    /* One index seek per distinct value, not a scan of every row (PostgreSQL has no skip
     * scan): the next value is the smallest one above the last. */
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE p(v) AS (SELECT min(\"%s\") FROM \"%s\" UNION ALL SELECT"
             " (SELECT min(\"%s\") FROM \"%s\" WHERE \"%s\" > p.v) FROM p WHERE p.v IS NOT NULL)"
             " SELECT v FROM p WHERE v IS NOT NULL",
             cn, tn, cn, tn, cn);
    snprintf(name, sizeof name, "t%d_part_values", t->index);
    ts->pstmt[P_VALUES] = pg__stmt_add(st, name, sql, 0, NULL);

    static const Oid two_int8[2] = {PG_INT8, PG_INT8};
    snprintf(sql, sizeof sql, "SELECT count(*), max(cseq) FROM \"%s\" WHERE at_ms < $1", moves);
    snprintf(name, sizeof name, "t%d_moves_scan", t->index);
    ts->pstmt[P_MOVES_SCAN] = pg__stmt_add(st, name, sql, 1, two_int8);

    snprintf(sql, sizeof sql, "DELETE FROM \"%s\" WHERE at_ms < $1 AND cseq <= $2", moves);
    snprintf(name, sizeof name, "t%d_moves_del", t->index);
    ts->pstmt[P_MOVES_DEL] = pg__stmt_add(st, name, sql, 2, two_int8);

    snprintf(sql, sizeof sql, "SELECT cseq FROM \"%s\" WHERE part = $1", cmp);
    snprintf(name, sizeof name, "t%d_part_cmp", t->index);
    ts->pstmt[P_CMP_GET] = pg__stmt_add(st, name, sql, 1, &ct);

    /* What compaction is about to remove, by partition: the tombstones (by the partition column
     * they keep) and the leaves that T_TOMB_DEL and P_MOVES_DEL delete with the same
     * parameters. */
    snprintf(sql, sizeof sql,
             "INSERT INTO \"%s\"(part, cseq) SELECT \"%s\", max(_cseq) FROM \"%s\" WHERE"
             " _deleted = 1 AND _mtime < $1 AND _cseq <= $2 AND _conflict IS NULL AND \"%s\" IS"
             " NOT NULL GROUP BY \"%s\" ON CONFLICT (part) DO UPDATE SET cseq ="
             " greatest(\"%s\".cseq, excluded.cseq)",
             cmp, cn, tn, cn, cn, cmp);
    snprintf(name, sizeof name, "t%d_tomb_parts", t->index);
    ts->pstmt[P_TOMB_PARTS] = pg__stmt_add(st, name, sql, 2, two_int8);

    snprintf(sql, sizeof sql,
             "INSERT INTO \"%s\"(part, cseq) SELECT part, max(cseq) FROM \"%s\" WHERE at_ms <"
             " $1 AND cseq <= $2 GROUP BY part ON CONFLICT (part) DO UPDATE SET cseq ="
             " greatest(\"%s\".cseq, excluded.cseq)",
             cmp, moves, cmp);
    snprintf(name, sizeof name, "t%d_moves_parts", t->index);
    ts->pstmt[P_MOVES_PARTS] = pg__stmt_add(st, name, sql, 2, two_int8);

    for (int i = 0; i < P_N; i++)
        if (ts->pstmt[i] < 0)
            return SYNC_ERR_NOMEM;
    return SYNC_OK;
}

static int pg_partition(cloud_store *cs, const sync_table *t, int col)
{
    pg_store *st = (pg_store *)cs;
    if (!st->tst || st->readonly) {
        pg__seterr(st, "the store is open read-only");
        return SYNC_ERR_STATE;
    }
    pg_table *ts = &st->tst[t->index];
    if (col < 0 || col >= t->ncols || col == t->key ||
        (t->cols[col].type != SYNC_INT && t->cols[col].type != SYNC_TEXT)) {
        pg__seterr(st,
                   "table '%s': a partition column must be an integer or text column other "
                   "than the key",
                   t->name);
        return SYNC_ERR_SCHEMA;
    }
    if (ts->part_col == col)
        return SYNC_OK;
    if (ts->part_col >= 0) {
        pg__seterr(st, "table '%s' is already partitioned by '%s'", t->name,
                   t->cols[ts->part_col].name);
        return SYNC_ERR_STATE;
    }
    if (st->in_tx) {
        pg__seterr(st, "a table cannot be declared partitioned inside a transaction");
        return SYNC_ERR_STATE;
    }
    char moves[80], cmp[80];
    pg_index_name(moves, sizeof moves, t->name, "moves");
    pg_index_name(cmp, sizeof cmp, t->name, "partcompacted");
    int first = st->nstmts;
    int rc = pg__partition_ddl(st, t, col, moves, cmp);
    if (rc == SYNC_OK)
        rc = pg__part_stmts(st, t, col, moves, cmp, ts);
    if (rc == SYNC_OK)
        rc = pg__prepare_from(st, first);
    if (rc != SYNC_OK) {
        /* Forgotten again, so a later call can register them anew. */
        for (int i = first; i < st->nstmts; i++) {
            char sql[64];
            snprintf(sql, sizeof sql, "DEALLOCATE \"%s\"", st->stmts[i].name);
            if (PQstatus(st->conn) == CONNECTION_OK)
                PQclear(PQexec(st->conn, sql)); /* (not prepared: an error, ignored) */
            free(st->stmts[i].sql);
        }
        st->nstmts = first;
        return rc;
    }
    ts->part_col = col;
    return SYNC_OK;
}

/* One number about partition `part` of t from the per-table statement `which` (P_MAX or
 * P_CMP_GET); 0 when it finds no row. */
static int pg__part_number(pg_store *st, const sync_table *t, const sync_value *part, int which,
                           uint64_t *out)
{
    *out = 0;
    int rc = pg__partitioned(st, t);
    if (rc != SYNC_OK)
        return rc;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    const sync_column *c = &t->cols[st->tst[t->index].part_col];
    pg_params p = {0};
    if ((rc = p_value(st, &p, part, c->type, c->name)) != SYNC_OK)
        return rc;
    PGresult *r = pg__run(st, st->tst[t->index].pstmt[which], &p);
    if (!r)
        return SYNC_ERR_DB;
    if (PQntuples(r) == 1)
        *out = (uint64_t)r_int(r, 0, 0);
    PQclear(r);
    return SYNC_OK;
}

static int pg_part_cseq(cloud_store *cs, const sync_table *t, const sync_value *part,
                        uint64_t *cseq)
{
    return pg__part_number((pg_store *)cs, t, part, P_MAX, cseq);
}

static int pg_part_compacted(cloud_store *cs, const sync_table *t, const sync_value *part,
                             uint64_t *horizon)
{
    return pg__part_number((pg_store *)cs, t, part, P_CMP_GET, horizon);
}

static int pg_leave(cloud_store *cs, const sync_table *t, const sync_value *part,
                    const sync_value *key, uint64_t version, uint64_t cseq, uint64_t hlc,
                    const char *origin)
{
    pg_store *st = (pg_store *)cs;
    int rc = pg__partitioned(st, t);
    if (rc != SYNC_OK)
        return rc;
    const sync_column *c = &t->cols[st->tst[t->index].part_col], *k = &t->cols[t->key];
    pg_params p = {0};
    if (p_value(st, &p, part, c->type, c->name) != SYNC_OK ||
        p_value(st, &p, key, k->type, k->name) != SYNC_OK) {
        if (st->in_tx)
            st->failed = 1; /* as if the statement had failed (pg_row_put) */
        return SYNC_ERR_DB;
    }
    p_int8(&p, (int64_t)version);
    p_int8(&p, (int64_t)cseq);
    p_int8(&p, (int64_t)hlc);
    p_cstr(&p, origin ? origin : "");
    p_int8(&p, sync_wall_ms());
    return pg__run_ok(st, st->tst[t->index].pstmt[P_LEAVE], &p);
}

/* Fills *row and *key from leave i of a moves query: a row with no values but its key (which
 * points into the result). */
static void pg__leave_row(const PGresult *r, int i, const sync_table *t, cloud_row *row,
                          sync_value *key)
{
    r_value(r, i, 0, key);
    for (int c = 0; c < t->ncols; c++)
        row->vals[c].type = SYNC_NULL;
    row->vals[t->key] = *key;
    row->exists = 1;
    row->deleted = 1;
    row->left = 1;
    row->conflict = 0;
    row->version = (uint64_t)r_int(r, i, 1);
    row->cseq = (uint64_t)r_int(r, i, 2);
    row->hlc = (uint64_t)r_int(r, i, 3);
    snprintf(row->origin, sizeof row->origin, "%s",
             PQgetisnull(r, i, 4) ? "" : PQgetvalue(r, i, 4));
}

/* The partition's rows and its leaves come from two queries, each in cseq order and limited;
 * the page takes the lower cseq of the two heads each time. */
static int pg_pull_part(cloud_store *cs, const sync_table *t, const sync_value *part,
                        uint64_t after, uint64_t limit, cloud_row_cb cb, void *ctx,
                        uint64_t *remaining)
{
    pg_store *st = (pg_store *)cs;
    *remaining = 0;
    int ret = pg__partitioned(st, t);
    if (ret != SYNC_OK)
        return ret;
    pg_table *ts = &st->tst[t->index];
    const sync_column *c = &t->cols[ts->part_col];
    if (st->in_tx) {
        pg__seterr(st, "a catch-up page cannot be read inside a write transaction");
        return SYNC_ERR_STATE;
    }
    pg_params p = {0};
    if ((ret = p_value(st, &p, part, c->type, c->name)) != SYNC_OK)
        return ret;
    p_int8(&p, (int64_t)after);
    /* One read-only snapshot, so the count and the page agree; it takes no locks. */
    if (pg__start(st, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != SYNC_OK)
        return SYNC_ERR_DB;
    PGresult *r = pg__run(st, ts->pstmt[P_COUNT], &p), *rows = NULL, *leaves = NULL;
    ret = r ? SYNC_OK : SYNC_ERR_DB;
    if (r && PQntuples(r) == 1)
        *remaining = (uint64_t)r_int(r, 0, 0);
    PQclear(r);
    p_int8(&p, (int64_t)(limit > INT64_MAX ? INT64_MAX : limit));
    if (ret == SYNC_OK && !(rows = pg__run(st, ts->pstmt[P_PULL], &p)))
        ret = SYNC_ERR_DB;
    if (ret == SYNC_OK && !(leaves = pg__run(st, ts->pstmt[P_MOVES_PULL], &p)))
        ret = SYNC_ERR_DB;
    int nr = rows ? PQntuples(rows) : 0, nl = leaves ? PQntuples(leaves) : 0, ir = 0, il = 0;
    cloud_row row;
    memset(row.colver, 0, sizeof row.colver);
    for (uint64_t n = 0; ret == SYNC_OK && n < limit && (ir < nr || il < nl); n++) {
        int from_rows = ir < nr && (il == nl || (uint64_t)r_int(rows, ir, t->ncols + 4) <=
                                                    (uint64_t)r_int(leaves, il, 2));
        sync_value key;
        if (from_rows)
            pg__page_row(rows, ir, t, &row, &key);
        else
            pg__leave_row(leaves, il, t, &row, &key);
        int x = cb(ctx, &key, &row);
        if (x == 1)
            break;
        if (x != 0) {
            ret = x;
            break;
        }
        if (from_rows)
            ir++;
        else
            il++;
    }
    PQclear(rows);
    PQclear(leaves);
    PQclear(PQexec(st->conn, "COMMIT"));
    return ret;
}

static int pg_partitions(cloud_store *cs, const sync_table *t, cloud_value_cb cb, void *ctx)
{
    pg_store *st = (pg_store *)cs;
    int ret = pg__partitioned(st, t);
    if (ret != SYNC_OK)
        return ret;
    if (!st->in_tx && pg__ensure(st) != SYNC_OK)
        return SYNC_ERR_DB;
    PGresult *r = pg__run(st, st->tst[t->index].pstmt[P_VALUES], NULL);
    if (!r)
        return SYNC_ERR_DB;
    for (int i = 0; i < PQntuples(r); i++) {
        sync_value v;
        r_value(r, i, 0, &v);
        int x = cb(ctx, &v);
        if (x != 0) {
            ret = x == 1 ? SYNC_OK : x;
            break;
        }
    }
    PQclear(r);
    return ret;
}

/* The live rows in key order, hashed as sync_checksum_table hashes SQLite's (checksum.h): the
 * key order is SQLite's BINARY one (text compared as bytes: COLLATE "C"), and the rows come one
 * at a time, so a table of any size needs no more memory than a row. */
static int pg_checksum(cloud_store *cs, const sync_table *t, char hex[65], long long *rows,
                       char *err, size_t errlen)
{
    pg_store *st = (pg_store *)cs;
    char sql[PG_SQL];
    size_t at = 0;
    *rows = 0;
    if (pg__ensure(st) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "checksum of '%s': %s", t->name, st->err);
    SQLCAT(sql, at, "SELECT ");
    for (int i = 0; i < t->ncols; i++)
        SQLCAT(sql, at, "%s\"%s\"", i ? ", " : "", t->cols[i].name);
    SQLCAT(sql, at, " FROM \"%s\" WHERE _deleted = 0 ORDER BY \"%s\"%s", t->name,
           t->cols[t->key].name, t->cols[t->key].type == SYNC_TEXT ? " COLLATE \"C\"" : "");
    if (at >= sizeof sql - 1)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "checksum query too long");
    sync_checksum *c = sync_checksum_new();
    if (!c)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    int ret = SYNC_OK;
    if (!PQsendQueryParams(st->conn, sql, 0, NULL, NULL, NULL, NULL, 1) ||
        !PQsetSingleRowMode(st->conn)) {
        ret = sync_seterr(err, errlen, SYNC_ERR_DB, "checksum of '%s': %s", t->name,
                          PQerrorMessage(st->conn));
    }
    sync_value vals[SYNC_MAX_COLS];
    PGresult *r;
    /* Every result is read (and freed), also after an error, so the connection is usable. */
    while ((r = PQgetResult(st->conn)) != NULL) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE && ret == SYNC_OK) {
            for (int i = 0; i < t->ncols; i++)
                r_value(r, 0, i, &vals[i]);
            sync_checksum_row(c, t, vals);
        } else if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK && ret == SYNC_OK) {
            pg__result_err(st, "checksum", r);
            ret = sync_seterr(err, errlen, SYNC_ERR_DB, "checksum of '%s': %s", t->name,
                              PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    sync_checksum_finish(c, hex, rows);
    sync_checksum_free(c);
    if (ret != SYNC_OK)
        *rows = 0;
    return ret;
}

static const cloud_store_ops pg_ops = {
    .name = "PostgreSQL",
    .close = pg_close,
    .errmsg = pg_errmsg,
    .describe = pg_describe,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .release = pg_release,
    .rollback_savepoint = pg_rollback_savepoint,
    .device_seq = pg_device_seq,
    .device_done = pg_device_done,
    .row_get = pg_row_get,
    .row_put = pg_row_put,
    .conflict = pg_conflict,
    .conflicts = pg_conflicts,
    .conflict_resolved = pg_conflict_resolved,
    .next_cseq = pg_next_cseq,
    .table_cseq = pg_table_cseq,
    .pull = pg_pull,
    .pull_keys = pg_pull_keys,
    .compact = pg_compact,
    .refresh = pg_refresh,
    .compacted = pg_compacted,
    .version_floor = pg_version_floor,
    .devices = pg_devices,
    .counts = pg_counts,
    .checksum = pg_checksum,
    .partition = pg_partition,
    .part_cseq = pg_part_cseq,
    .part_compacted = pg_part_compacted,
    .leave = pg_leave,
    .pull_part = pg_pull_part,
    .partitions = pg_partitions,
};
