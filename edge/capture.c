/* capture.c - write capture: triggers on each synced table that append every application
 * change to _sync_outbox in the application's own transaction.
 *
 * An outbox row holds the table, the operation, the key, the server version the change was made
 * on (from _sync_rows), the wall time in ms, a bitmask of the columns it sets, and those
 * columns' values in v0..vN (vI is the table's I-th schema column; untouched columns are NULL).
 * The triggers run only when _sync_ctl.applying is 0, which syncedge sets to 1 inside its own
 * transactions that apply downstream changes: other connections never see it, so application
 * writes are always captured and syncedge's are never echoed back.
 *
 * Tables the device may not write get BEFORE triggers that refuse the application's writes
 * instead (read-only by owner or by the cloud's policy), and tables it may write in some
 * partitions only get BEFORE triggers that refuse writes to rows outside them (policy.h); both
 * kinds also check _sync_ctl.applying, so syncedge's own applies go in.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "edgedb.h"
#include "sync/err.h"
#include "sync/sqlutil.h"

typedef struct sqlbuf {
    char s[65536];
    size_t n;
    int over;
} sqlbuf;

static void add(sqlbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(sqlbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof b->s - b->n)
        b->over = 1;
    else
        b->n += (size_t)w;
}

#define NOW_MS "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
#define ACTIVE "(SELECT applying FROM _sync_ctl WHERE id = 1) = 0"
/* The sequence number of a captured change: one above the last (the outbox's newest row, else
 * the last number ever given), but never below the clock in microseconds. Numbers then stay
 * ahead of every number used before even in a database restored from an older backup and
 * written by the application before syncedge starts again; otherwise the cloud would take
 * those changes for duplicates and drop them. max(seq) of the outbox is its last rowid (O(1))
 * and sees the rows an earlier trigger run of the same statement inserted. */
#define SEQ_NEXT                                                                                   \
    "max(coalesce((SELECT max(seq) FROM _sync_outbox), (SELECT seq FROM sqlite_sequence WHERE "   \
    "name = '_sync_outbox'), 0) + 1, CAST((julianday('now') - 2440587.5) * 86400000000.0 AS "      \
    "INTEGER))"

/* The known server version of the row with key expression `k` (NEW.x or OLD.x). The unary +
 * strips the key column's affinity: compared with an INTEGER column, _sync_rows.pk (declared
 * without a type) would get numeric affinity applied, which rules out its primary key index, and
 * every captured change would scan _sync_rows (measured: 3.7 ms per update at 50,000 rows). */
static void base_expr(sqlbuf *b, const sync_table *t, const char *k)
{
    add(b, "COALESCE((SELECT version FROM _sync_rows WHERE tbl = '%s' AND pk = +%s.\"%s\"), 0)",
        t->name, k, t->cols[t->key].name);
}

static void value_cols(sqlbuf *b, const sync_table *t)
{
    for (int i = 0; i < t->ncols; i++)
        add(b, ", v%d", i);
}

static unsigned long long full_mask(const sync_table *t)
{
    return t->ncols >= 64 ? ~0ull : ((1ull << t->ncols) - 1);
}

/* Appends s as an SQL string literal. */
static void add_str(sqlbuf *b, const char *s)
{
    char *q = sqlite3_mprintf("%Q", s);
    if (!q) {
        b->over = 1;
        return;
    }
    add(b, "%s", q);
    sqlite3_free(q);
}

/* The partition write triggers of a table whose write set is limited to partitions (policy.h):
 * BEFORE triggers that refuse an application's write to a row outside them, checking the row as
 * it was (UPDATE, DELETE) and as it will be (INSERT, UPDATE), so nothing the cloud would refuse
 * is queued. NULL is outside every partition.
 *
 * The message names the offending value. RAISE takes a literal only (SQLite before 3.47, and
 * the application's SQLite may be older than ours: an expression there would make the schema
 * unreadable to it), so the triggers hold one literal per value the device knows of (the
 * partitions it receives but may not write, and NULL) and a last one without the value for any
 * other. */
static void partition_triggers(edge_db *e, sqlbuf *b, const sync_table *t, const edge_parts *p)
{
    static const char *const ops[] = {"INSERT", "UPDATE", "DELETE"};
    static char in[16384], allowed[16384], msg[20000]; /* like b: single-threaded */
    const char *col = t->cols[p->col].name;
    char lit[1024];
    /* "12, 14" for IN (...), and "(store_id = 12 or 14)" for the messages */
    size_t at = 0, at2 = (size_t)snprintf(allowed, sizeof allowed, "(%s = ", col);
    in[0] = 0;
    for (int i = 0; i < p->nwr; i++) {
        if (edge_sql_literal(lit, sizeof lit, &p->wr[i]) != SYNC_OK) {
            b->over = 1;
            return;
        }
        at += (size_t)snprintf(in + at, sizeof in - at, "%s%s", i ? ", " : "", lit);
        at2 += (size_t)snprintf(allowed + at2, sizeof allowed - at2, "%s%s", i ? " or " : "", lit);
        if (at >= sizeof in || at2 >= sizeof allowed) {
            b->over = 1;
            return;
        }
    }
    snprintf(allowed + at2, sizeof allowed - at2, ")");
    for (int k = 0; k < 3; k++) {
        const char *row = k == 0 ? "NEW" : "OLD";
        add(b, "CREATE TRIGGER \"_sync_%s_pw_%s\" BEFORE %s ON \"%s\" WHEN " ACTIVE " AND (",
            t->name, ops[k], ops[k], t->name);
        add(b, "coalesce(%s.\"%s\" IN (%s), 0) = 0", row, col, in);
        if (k == 1)
            add(b, " OR coalesce(NEW.\"%s\" IN (%s), 0) = 0", col, in);
        add(b, ") BEGIN\n");
        for (int i = -1; i < (p->recv_limited ? p->nrecv : 0); i++) {
            if (i >= 0 && edge_parts_find(p->wr, p->nwr, &p->recv[i]) >= 0)
                continue;
            if (i >= 0)
                edge_sql_literal(lit, sizeof lit, &p->recv[i]);
            else
                snprintf(lit, sizeof lit, "NULL");
            snprintf(msg, sizeof msg,
                     "row of table %s with %s = %s is outside the partitions device %s may write "
                     "%s",
                     t->name, col, lit, e->device, allowed);
            add(b, " SELECT RAISE(ABORT, ");
            add_str(b, msg);
            /* The value that is outside: for an update the row's before, if that one is. */
            if (k == 1)
                add(b, ") WHERE (CASE WHEN coalesce(OLD.\"%s\" IN (%s), 0) = 0 THEN OLD.\"%s\" "
                    "ELSE NEW.\"%s\" END) IS %s;\n", col, in, col, col, lit);
            else
                add(b, ") WHERE %s.\"%s\" IS %s;\n", row, col, lit);
        }
        snprintf(msg, sizeof msg, "row of table %s is outside the partitions device %s may write %s",
                 t->name, e->device, allowed);
        add(b, " SELECT RAISE(ABORT, ");
        add_str(b, msg);
        add(b, ");\nEND;\n");
    }
}

static int install_table(edge_db *e, const sync_table *t, int first, char *err, size_t errlen)
{
    static const char *const ops[] = {"INSERT", "UPDATE", "DELETE"};
    static sqlbuf b; /* big; the daemon is single-threaded here */
    const char *key = t->cols[t->key].name;
    b.n = 0;
    b.over = 0;
    add(&b,
        "DROP TRIGGER IF EXISTS \"_sync_%s_ins\"; DROP TRIGGER IF EXISTS \"_sync_%s_upd\"; "
        "DROP TRIGGER IF EXISTS \"_sync_%s_del\";\n",
        t->name, t->name, t->name);
    for (int k = 0; k < 3; k++)
        add(&b,
            "DROP TRIGGER IF EXISTS \"_sync_%s_ro_%s\"; DROP TRIGGER IF EXISTS "
            "\"_sync_%s_pw_%s\";\n",
            t->name, ops[k], t->name, ops[k]);

    int slot = edge_db_slot(e, t);
    int by_owner = t->owner[0] && strcmp(t->owner, e->device) != 0;
    const edge_parts *parts = slot >= 0 && e->parts[slot].col >= 0 && e->parts[slot].write_limited
                                  ? &e->parts[slot]
                                  : NULL;
    /* Limited to no partition at all: not writable. */
    int none = parts && parts->nwr == 0;
    if (by_owner || (slot >= 0 && e->readonly[slot]) || none) {
        /* Master mode and we are not the master, or the cloud's write rules leave this device
         * out (policy.h): the application may read this table but not write it (the cloud
         * would refuse the changes). syncedge's own applies still go in. */
        for (int k = 0; k < 3; k++) {
            if (by_owner)
                add(&b,
                    "CREATE TRIGGER \"_sync_%s_ro_%s\" BEFORE %s ON \"%s\" WHEN " ACTIVE
                    " BEGIN SELECT RAISE(ABORT, 'table %s is owned by device %s: read-only on "
                    "this device'); END;\n",
                    t->name, ops[k], ops[k], t->name, t->name, t->owner);
            else
                add(&b,
                    "CREATE TRIGGER \"_sync_%s_ro_%s\" BEFORE %s ON \"%s\" WHEN " ACTIVE
                    " BEGIN SELECT RAISE(ABORT, 'table %s is read-only on device %s: the "
                    "cloud''s write rules do not let it write this table'); END;\n",
                    t->name, ops[k], ops[k], t->name, t->name, e->device);
        }
        if (first)
            add(&b, "INSERT INTO _sync_tables(tbl, attached) VALUES ('%s', " NOW_MS ");\n",
                t->name);
        goto run;
    }

    /* INSERT: the full row. */
    add(&b, "CREATE TRIGGER \"_sync_%s_ins\" AFTER INSERT ON \"%s\" WHEN " ACTIVE " BEGIN\n",
        t->name, t->name);
    add(&b, " INSERT INTO _sync_outbox(seq, tbl, op, pk, base, ts, mask");
    value_cols(&b, t);
    add(&b, ") VALUES (" SEQ_NEXT ", '%s', 0, NEW.\"%s\", ", t->name, key);
    base_expr(&b, t, "NEW");
    add(&b, ", " NOW_MS ", %llu", full_mask(t));
    for (int i = 0; i < t->ncols; i++)
        add(&b, ", NEW.\"%s\"", t->cols[i].name);
    add(&b, ");\nEND;\n");

    /* UPDATE: changed columns only; a key change is a delete of the old key and an insert of
     * the new one. */
    add(&b, "CREATE TRIGGER \"_sync_%s_upd\" AFTER UPDATE ON \"%s\" WHEN " ACTIVE " BEGIN\n",
        t->name, t->name);
    add(&b,
        " INSERT INTO _sync_outbox(seq, tbl, op, pk, base, ts, mask) SELECT " SEQ_NEXT
        ", '%s', 2, OLD.\"%s\", ",
        t->name, key);
    base_expr(&b, t, "OLD");
    add(&b, ", " NOW_MS ", 0 WHERE NEW.\"%s\" IS NOT OLD.\"%s\";\n", key, key);
    add(&b, " INSERT INTO _sync_outbox(seq, tbl, op, pk, base, ts, mask");
    value_cols(&b, t);
    add(&b, ") SELECT " SEQ_NEXT ", '%s', 0, NEW.\"%s\", ", t->name, key);
    base_expr(&b, t, "NEW");
    add(&b, ", " NOW_MS ", %llu", full_mask(t));
    for (int i = 0; i < t->ncols; i++)
        add(&b, ", NEW.\"%s\"", t->cols[i].name);
    add(&b, " WHERE NEW.\"%s\" IS NOT OLD.\"%s\";\n", key, key);
    add(&b, " INSERT INTO _sync_outbox(seq, tbl, op, pk, base, ts, mask");
    value_cols(&b, t);
    add(&b, ") SELECT " SEQ_NEXT ", '%s', 1, NEW.\"%s\", ", t->name, key);
    base_expr(&b, t, "NEW");
    add(&b, ", " NOW_MS ", m");
    for (int i = 0; i < t->ncols; i++)
        add(&b, ", CASE WHEN NEW.\"%s\" IS NOT OLD.\"%s\" THEN NEW.\"%s\" END", t->cols[i].name,
            t->cols[i].name, t->cols[i].name);
    add(&b, " FROM (SELECT 0");
    for (int i = 0; i < t->ncols; i++)
        add(&b, " | ((NEW.\"%s\" IS NOT OLD.\"%s\") << %d)", t->cols[i].name, t->cols[i].name, i);
    add(&b, " AS m) WHERE NEW.\"%s\" IS OLD.\"%s\" AND m <> 0;\nEND;\n", key, key);

    /* DELETE: the key only. */
    add(&b, "CREATE TRIGGER \"_sync_%s_del\" AFTER DELETE ON \"%s\" WHEN " ACTIVE " BEGIN\n",
        t->name, t->name);
    add(&b,
        " INSERT INTO _sync_outbox(seq, tbl, op, pk, base, ts, mask) VALUES (" SEQ_NEXT
        ", '%s', 2, OLD.\"%s\", ",
        t->name, key);
    base_expr(&b, t, "OLD");
    add(&b, ", " NOW_MS ", 0);\nEND;\n");

    if (parts)
        partition_triggers(e, &b, t, parts);

    /* First attach: rows the application wrote before syncedge knew the table are changes too. */
    if (first) {
        add(&b, "INSERT INTO _sync_outbox(tbl, op, pk, base, ts, mask");
        value_cols(&b, t);
        add(&b, ") SELECT '%s', 0, \"%s\", 0, " NOW_MS ", %llu", t->name, key, full_mask(t));
        for (int i = 0; i < t->ncols; i++)
            add(&b, ", \"%s\"", t->cols[i].name);
        add(&b, " FROM \"%s\" ORDER BY \"%s\";\n", t->name, key);
        add(&b, "INSERT INTO _sync_tables(tbl, attached) VALUES ('%s', " NOW_MS ");\n", t->name);
    }
run:
    if (b.over)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "table '%s': trigger SQL too long",
                           t->name);
    char what[128];
    snprintf(what, sizeof what, "installing capture triggers on '%s'", t->name);
    return sync_sql_exec(e->db, b.s, what, err, errlen);
}

int edge_capture_install(edge_db *e, char *err, size_t errlen)
{
    sqlite3_stmt *known;
    int rc =
        sync_sql_prepare(e->db, "SELECT 1 FROM _sync_tables WHERE tbl = ?", &known, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    for (int i = 0; i < e->ntables && rc == SYNC_OK; i++) {
        const sync_table *t = e->tables[i];
        sqlite3_bind_text(known, 1, t->name, -1, SQLITE_STATIC);
        int first = sqlite3_step(known) != SQLITE_ROW;
        sqlite3_reset(known);
        rc = install_table(e, t, first, err, errlen);
    }
    sqlite3_finalize(known);
    return rc;
}
