/* policy.c - the cloud's receive/write policy for this device (see policy.h). */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"
#include "sync/jsonread.h"
#include "sync/log.h"
#include "sync/sqlutil.h"
#include "sync/topic.h"

/* ---- reading the policy's JSON ----
 * The message is parsed whole by the shared bounded reader (sync/jsonread.h), then walked.
 * Members are taken in the text's order, repeated ones included: lists of tables add up, and a
 * later partitions entry of a table replaces an earlier one. Anything of the wrong shape
 * refuses the whole message, so the previous policy stays. */

#define POLICY_STR 1024 /* bytes of a name or a text partition value, its NUL included */

/* The start of every message about a policy of the wrong shape (SYNC_ERR_DECODE). */
#define INVALID "the policy is not valid: "

/* 1 when member m's key is name (compared with its length: a key may hold \u0000). */
static int is_key(const sync_jval *m, const char *name)
{
    size_t n;
    const char *k = sync_jval_key(m, &n);
    return k && n == strlen(name) && memcmp(k, name, n) == 0;
}

/* Checks the n bytes of a name or text value the policy uses: it must not hold a NUL (it is
 * used as a C string) and must be shorter than POLICY_STR. Returns NULL or what is wrong. */
static const char *text_problem(const char *s, size_t n)
{
    if (memchr(s, '\0', n))
        return "a NUL character in a string";
    if (n >= POLICY_STR)
        return "a string too long";
    return NULL;
}

/* The bytes of string v (*n its length), or NULL with *why set when v is no string or one the
 * policy cannot use (text_problem). */
static const char *text_of(const sync_jval *v, size_t *n, const char **why)
{
    const char *s = sync_jval_str(v, n);
    *why = s ? text_problem(s, *n) : "a string expected";
    return *why ? NULL : s;
}

/* ---- the policy ---- */

typedef struct policy {
    uint8_t recv[EDGE_MAX_TABLES], wr[EDGE_MAX_TABLES];
    edge_parts parts[EDGE_MAX_TABLES];
} policy;

static policy *policy_new(void)
{
    policy *np = calloc(1, sizeof *np);
    for (int i = 0; np && i < EDGE_MAX_TABLES; i++)
        np->parts[i].col = -1;
    return np;
}

static void policy_free(policy *np)
{
    if (!np)
        return;
    for (int i = 0; i < EDGE_MAX_TABLES; i++)
        edge_parts_clear(&np->parts[i]);
    free(np);
}

/* Sets flags[slot] = 1 for each table named in list, a JSON array of names (member `what` of
 * the policy); unknown tables are skipped (the cloud's schema may know more). */
static int read_tables(const sync_jval *list, const char *what, const edge_db *e, uint8_t *flags,
                       char *err, size_t errlen)
{
    if (sync_jval_type(list) != SYNC_JARRAY)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                           INVALID "\"%s\": a list of tables expected", what);
    for (const sync_jval *v = sync_jval_first(list); v; v = sync_jval_next(v)) {
        size_t n;
        const char *why, *name = text_of(v, &n, &why);
        if (!name)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE, INVALID "\"%s\": %s", what, why);
        const sync_table *t = edge_db_table(e, name, n);
        int slot = t ? edge_db_slot(e, t) : -1;
        if (slot >= 0)
            flags[slot] = 1;
    }
    return SYNC_OK;
}

/* Appends the partition values in arr, a JSON array of integers and strings (member `what` of
 * the partitions of table `tbl`, a display name), to (*list, *n). */
static int read_values(const sync_jval *arr, const char *tbl, const char *what, sync_value **list,
                       int *n, char *err, size_t errlen)
{
    if (sync_jval_type(arr) != SYNC_JARRAY)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                           INVALID "partitions of %s: \"%s\": a list of partition values expected",
                           tbl, what);
    for (const sync_jval *x = sync_jval_first(arr); x; x = sync_jval_next(x)) {
        sync_value v;
        const char *why = NULL;
        if (sync_jval_type(x) == SYNC_JSTRING) {
            v.type = SYNC_TEXT;
            v.u.b.p = (const uint8_t *)text_of(x, &v.u.b.n, &why);
        } else {
            v.type = SYNC_INT;
            if (!sync_jval_int(x, &v.u.i))
                why = sync_jval_type(x) == SYNC_JNUMBER ? "a number that is not a 64-bit integer"
                                                        : "a number or a string expected";
        }
        if (why)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE, INVALID "partitions of %s: \"%s\": %s",
                               tbl, what, why);
        if (edge_parts_add(list, n, &v) != SYNC_OK)
            return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    return SYNC_OK;
}

/* Checks the values of a partitions entry against its column (type, valid text, and that each
 * value makes a topic level). */
static int check_values(const sync_table *t, int col, const sync_value *list, int n, char *err,
                        size_t errlen)
{
    for (int i = 0; i < n; i++) {
        sync_value v = list[i];
        char why[256];
        if (v.type != t->cols[col].type)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                               "partitions of '%s': a %s value for column '%s' of type %s", t->name,
                               v.type == SYNC_INT ? "number" : "string", t->cols[col].name,
                               sync_vtype_name(t->cols[col].type));
        if (sync_column_check(t, col, &v, why, sizeof why) != SYNC_OK)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE, "partitions of '%s': %s", t->name,
                               why);
        char topic[SYNC_TOPIC_MAX];
        if (sync_topic_stream(topic, sizeof topic, "t", "delta", t->name, &v) != SYNC_OK ||
            strlen(topic) + SYNC_MAX_ID > sizeof topic)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                               "partitions of '%s': a value too long for a topic", t->name);
    }
    return SYNC_OK;
}

/* Reads the "partitions" object: {"TABLE":{"column":C,"receive":[...],"write":[...]},...}.
 * Entries of tables not synced here are checked for shape, then skipped. */
static int read_partitions(const sync_jval *obj, const edge_db *e, policy *np, char *err,
                           size_t errlen)
{
    if (sync_jval_type(obj) != SYNC_JOBJECT)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                           INVALID "\"partitions\": an object of partitions expected");
    for (const sync_jval *entry = sync_jval_first(obj); entry; entry = sync_jval_next(entry)) {
        size_t n;
        const char *name = sync_jval_key(entry, &n), *why = text_problem(name, n);
        if (why)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE, INVALID "\"partitions\": %s", why);
        const sync_table *t = edge_db_table(e, name, n);
        int slot = t ? edge_db_slot(e, t) : -1;
        /* For messages: the schema's name (never the message's bytes). */
        char tbl[SYNC_MAX_NAME + 3] = "a table not synced here";
        if (t)
            snprintf(tbl, sizeof tbl, "'%s'", t->name);
        if (sync_jval_type(entry) != SYNC_JOBJECT)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                               INVALID "partitions of %s: an object expected", tbl);
        edge_parts tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.col = -1;
        const char *col = NULL;
        size_t coln = 0;
        int rc = SYNC_OK;
        for (const sync_jval *m = sync_jval_first(entry); m && rc == SYNC_OK;
             m = sync_jval_next(m)) {
            if (is_key(m, "column")) {
                col = text_of(m, &coln, &why);
                if (!col)
                    rc = sync_seterr(err, errlen, SYNC_ERR_DECODE,
                                     INVALID "partitions of %s: \"column\": %s", tbl, why);
            } else if (is_key(m, "receive")) {
                rc = read_values(m, tbl, "receive", &tmp.recv, &tmp.nrecv, err, errlen);
                tmp.recv_limited = 1;
            } else if (is_key(m, "write")) {
                rc = read_values(m, tbl, "write", &tmp.wr, &tmp.nwr, err, errlen);
                tmp.write_limited = 1;
            }
        }
        if (rc != SYNC_OK || slot < 0) { /* slot < 0: a table not synced here */
            edge_parts_clear(&tmp);
            if (rc != SYNC_OK)
                return rc;
            continue;
        }
        int c = col ? sync_table_col(t, col, coln) : -1;
        int bad = SYNC_OK;
        if (!col)
            bad = sync_seterr(err, errlen, SYNC_ERR_DECODE, "partitions of '%s' name no column",
                              t->name);
        else if (c < 0)
            bad = sync_seterr(err, errlen, SYNC_ERR_DECODE,
                              "partitions of '%s' by column '%s', which the schema does not have",
                              t->name, col);
        else if (t->cols[c].type != SYNC_INT && t->cols[c].type != SYNC_TEXT)
            bad = sync_seterr(err, errlen, SYNC_ERR_DECODE,
                              "partitions of '%s' by column '%s' of type %s (integer or text "
                              "only)",
                              t->name, col, sync_vtype_name(t->cols[c].type));
        if (bad == SYNC_OK)
            bad = check_values(t, c, tmp.recv, tmp.nrecv, err, errlen);
        if (bad == SYNC_OK)
            bad = check_values(t, c, tmp.wr, tmp.nwr, err, errlen);
        if (bad != SYNC_OK) {
            edge_parts_clear(&tmp);
            return bad;
        }
        tmp.col = c;
        edge_parts_clear(&np->parts[slot]);
        np->parts[slot] = tmp;
    }
    return SYNC_OK;
}

/* Parses a policy message into np. Returns SYNC_OK, SYNC_ERR_DECODE with the reason, or
 * SYNC_ERR_NOMEM. */
static int parse(const edge_db *e, const char *s, size_t len, policy *np, char *err, size_t errlen)
{
    char why[256];
    sync_jdoc *doc;
    int rc = sync_jdoc_parse(s, len, &doc, why, sizeof why);
    if (rc == SYNC_ERR_NOMEM)
        return sync_seterr(err, errlen, rc, "out of memory");
    if (rc != SYNC_OK) /* malformed, or past the reader's limits */
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, INVALID "%s", why);
    const sync_jval *root = sync_jdoc_root(doc);
    int have_recv = 0, have_write = 0;
    if (sync_jval_type(root) != SYNC_JOBJECT)
        rc = sync_seterr(err, errlen, SYNC_ERR_DECODE, "the policy is not a JSON object");
    else if (sync_jdoc_replaced(doc) > 0) /* a name read as U+FFFD is not the cloud's name */
        rc = sync_seterr(err, errlen, SYNC_ERR_DECODE,
                         INVALID "a broken surrogate pair in a string");
    for (const sync_jval *m = sync_jval_first(root); m && rc == SYNC_OK; m = sync_jval_next(m)) {
        if (is_key(m, "receive")) {
            rc = read_tables(m, "receive", e, np->recv, err, errlen);
            have_recv = 1;
        } else if (is_key(m, "write")) {
            rc = read_tables(m, "write", e, np->wr, err, errlen);
            have_write = 1;
        } else if (is_key(m, "partitions")) {
            rc = read_partitions(m, e, np, err, errlen);
        }
    }
    sync_jdoc_free(doc);
    if (rc == SYNC_OK && (!have_recv || !have_write))
        rc = sync_seterr(err, errlen, SYNC_ERR_DECODE,
                         "a policy message without receive and write lists");
    return rc;
}

/* ---- storing it ---- */

static int exec_bind(edge_db *e, const char *sql, const char *a, const sync_value *v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(e->db, sql, -1, &st, NULL) != SQLITE_OK)
        return SYNC_ERR_DB;
    if (a)
        sqlite3_bind_text(st, 1, a, -1, SQLITE_TRANSIENT);
    if (v)
        sync_sql_bind(st, 2, v);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

static int store(edge_db *e, const policy *np)
{
    if (sqlite3_exec(e->db, "DELETE FROM _sync_policy; DELETE FROM _sync_policy_part", NULL, NULL,
                     NULL) != SQLITE_OK)
        return SYNC_ERR_DB;
    sqlite3_stmt *st, *pt;
    if (sqlite3_prepare_v2(e->db,
                           "INSERT INTO _sync_policy(tbl, recv, wr, pcol, precv, pwr) VALUES "
                           "(?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return SYNC_ERR_DB;
    if (sqlite3_prepare_v2(e->db, "INSERT INTO _sync_policy_part(tbl, dir, val) VALUES (?, ?, ?)",
                           -1, &pt, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return SYNC_ERR_DB;
    }
    int rc = SQLITE_DONE;
    for (int i = 0; i < e->ntables && rc == SQLITE_DONE; i++) {
        const sync_table *t = e->tables[i];
        const edge_parts *p = &np->parts[i];
        sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, np->recv[i]);
        sqlite3_bind_int(st, 3, np->wr[i]);
        if (p->col >= 0)
            sqlite3_bind_text(st, 4, t->cols[p->col].name, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 4);
        sqlite3_bind_int(st, 5, p->col >= 0 && p->recv_limited);
        sqlite3_bind_int(st, 6, p->col >= 0 && p->write_limited);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        for (int d = 0; d < 2 && p->col >= 0; d++) {
            const sync_value *list = d ? p->wr : p->recv;
            for (int k = 0; k < (d ? p->nwr : p->nrecv) && rc == SQLITE_DONE; k++) {
                sqlite3_bind_text(pt, 1, t->name, -1, SQLITE_STATIC);
                sqlite3_bind_int(pt, 2, d);
                sync_sql_bind(pt, 3, &list[k]);
                rc = sqlite3_step(pt);
                sqlite3_reset(pt);
            }
        }
    }
    sqlite3_finalize(st);
    sqlite3_finalize(pt);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

/* ---- what a change of policy does to the rows and the streams ---- */

/* Removes the rows of t matching `cond` (SQL over t's columns), except rows with local changes
 * still in the outbox, with their versions and dirty marks. Replica writes: not captured. */
static int remove_rows(edge_db *e, const sync_table *t, const char *cond, long long *removed)
{
    const char *k = t->cols[t->key].name;
    char *rows = sqlite3_mprintf("SELECT \"%w\" FROM \"%w\" WHERE (%s) AND \"%w\" NOT IN (SELECT "
                                 "pk FROM _sync_outbox WHERE tbl = ?1)",
                                 k, t->name, cond, k);
    char *sql[3] = {
        sqlite3_mprintf("DELETE FROM _sync_rows WHERE tbl = ?1 AND pk IN (%s)", rows),
        sqlite3_mprintf("DELETE FROM _sync_dirty WHERE tbl = ?1 AND pk IN (%s)", rows),
        sqlite3_mprintf("DELETE FROM \"%w\" WHERE (%s) AND \"%w\" NOT IN (SELECT pk FROM "
                        "_sync_outbox WHERE tbl = ?1)",
                        t->name, cond, k),
    };
    int rc = rows ? SYNC_OK : SYNC_ERR_NOMEM;
    for (int i = 0; i < 3 && rc == SYNC_OK; i++) {
        rc = sql[i] ? exec_bind(e, sql[i], t->name, NULL) : SYNC_ERR_NOMEM;
        if (i == 2 && rc == SYNC_OK)
            *removed = sqlite3_changes(e->db);
    }
    for (int i = 0; i < 3; i++)
        sqlite3_free(sql[i]);
    sqlite3_free(rows);
    return rc;
}

/* "store_id IN (12, 13)" (in = 1) or "coalesce(store_id IN (12, 13), 0) = 0" (in = 0) for the
 * values of list; sqlite3_free it. An empty list matches nothing (in) or everything (not in). */
static char *values_cond(const sync_table *t, int col, const sync_value *list, int n, int in)
{
    if (n == 0)
        return sqlite3_mprintf("%s", in ? "0" : "1");
    sqlite3_str *s = sqlite3_str_new(NULL);
    sqlite3_str_appendf(s, in ? "\"%w\" IN (" : "coalesce(\"%w\" IN (", t->cols[col].name);
    for (int i = 0; i < n; i++) {
        char lit[POLICY_STR * 2 + 8]; /* every quote doubled */
        if (edge_sql_literal(lit, sizeof lit, &list[i]) != SYNC_OK) {
            sqlite3_free(sqlite3_str_finish(s));
            return NULL;
        }
        sqlite3_str_appendf(s, "%s%s", i ? ", " : "", lit);
    }
    sqlite3_str_appendall(s, in ? ")" : "), 0) = 0");
    return sqlite3_str_finish(s);
}

static int set_cursor0(edge_db *e, const char *name)
{
    int rc = exec_bind(e,
                       "INSERT INTO _sync_cursor(tbl, cseq) VALUES (?1, 0) ON CONFLICT(tbl) DO "
                       "UPDATE SET cseq = 0",
                       name, NULL);
    if (rc == SYNC_OK)
        rc = exec_bind(e, "DELETE FROM _sync_seen WHERE tbl = ?1", name, NULL);
    if (rc == SYNC_OK)
        rc = exec_bind(e, "DELETE FROM _sync_resync WHERE tbl = ?1", name, NULL);
    return rc;
}

static int forget_stream(edge_db *e, const char *name)
{
    int rc = exec_bind(e, "DELETE FROM _sync_cursor WHERE tbl = ?1", name, NULL);
    if (rc == SYNC_OK)
        rc = exec_bind(e, "DELETE FROM _sync_seen WHERE tbl = ?1", name, NULL);
    if (rc == SYNC_OK)
        rc = exec_bind(e, "DELETE FROM _sync_resync WHERE tbl = ?1", name, NULL);
    return rc;
}

/* The values of a partitions-received table, or none. */
static void recv_values(int mode, const edge_parts *p, const sync_value **list, int *n)
{
    *list = mode == EDGE_RECV_PARTS ? p->recv : NULL;
    *n = mode == EDGE_RECV_PARTS ? p->nrecv : 0;
}

/* Carries out what the change from the old to the new policy (in e) means for table slot i:
 * cursors of streams that start or stop, rows the device may no longer hold. */
static int apply_table(edge_db *e, int i, int old_mode, const edge_parts *old, char *err,
                       size_t errlen)
{
    const sync_table *t = e->tables[i];
    int mode = edge_db_recv_mode(e, i);
    const edge_parts *now = &e->parts[i];
    const sync_value *ov, *nv;
    int on, nn;
    recv_values(old_mode, old, &ov, &on);
    recv_values(mode, now, &nv, &nn);
    long long removed = 0;
    char *cond = NULL;
    int rc = SYNC_OK;
    char name[SYNC_TOPIC_MAX];

    /* The whole-table stream: stopping sets its cursor to 0, so taking the whole table again
     * starts from the beginning (rows received meanwhile by partitions stay). */
    if ((old_mode == EDGE_RECV_WHOLE) != (mode == EDGE_RECV_WHOLE) && rc == SYNC_OK)
        rc = set_cursor0(e, t->name);
    if (old_mode != EDGE_RECV_WHOLE && mode == EDGE_RECV_WHOLE)
        sync_notice("policy: now receiving '%s' whole; pulling it%s", t->name,
                    old_mode == EDGE_RECV_PARTS ? " from the start" : "");
    /* Partition streams: one that stops is forgotten, one that starts is pulled from 0. */
    for (int k = 0; k < on && rc == SYNC_OK; k++)
        if (edge_parts_find(nv, nn, &ov[k]) < 0 || old->col != now->col) {
            if (edge_stream_name(name, sizeof name, t, &ov[k]) != SYNC_OK)
                continue;
            rc = forget_stream(e, name);
        }
    for (int k = 0; k < nn && rc == SYNC_OK; k++)
        if (edge_parts_find(ov, on, &nv[k]) < 0 || old->col != now->col) {
            if (edge_stream_name(name, sizeof name, t, &nv[k]) != SYNC_OK)
                continue;
            rc = set_cursor0(e, name);
            sync_notice("policy: now receiving partition '%s'; pulling it", name);
        }
    if (rc != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "policy: the cursors of '%s': %s", t->name,
                           sqlite3_errmsg(e->db));

    /* Rows: the device may no longer hold those of a partition it stopped receiving. */
    if (mode == EDGE_RECV_PARTS &&
        (old_mode == EDGE_RECV_WHOLE || (old_mode == EDGE_RECV_PARTS && old->col != now->col))) {
        cond = values_cond(t, now->col, nv, nn, 0);
    } else if (mode == EDGE_RECV_PARTS && old_mode == EDGE_RECV_PARTS) {
        sync_value *gone = NULL;
        int ngone = 0;
        for (int k = 0; k < on; k++)
            if (edge_parts_find(nv, nn, &ov[k]) < 0 &&
                edge_parts_add(&gone, &ngone, &ov[k]) != SYNC_OK)
                rc = SYNC_ERR_NOMEM;
        if (ngone > 0 && rc == SYNC_OK)
            cond = values_cond(t, now->col, gone, ngone, 1);
        edge_values_free(gone, ngone);
    } else if (mode == EDGE_RECV_NONE && old_mode != EDGE_RECV_NONE) {
        /* Not received at all any more: as for a whole table (policy.h). */
        if (e->readonly[i])
            cond = sqlite3_mprintf("1");
        else
            sync_notice("policy: no longer receiving '%s'; its rows stay (this device writes it)",
                        t->name);
    }
    if (rc != SYNC_OK)
        return sync_seterr(err, errlen, rc, "policy: out of memory");
    if (!cond)
        return SYNC_OK;
    rc = remove_rows(e, t, cond, &removed);
    sqlite3_free(cond);
    if (rc != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "removing rows of '%s': %s", t->name,
                           sqlite3_errmsg(e->db));
    if (mode == EDGE_RECV_NONE)
        sync_notice("policy: no longer receiving '%s': %lld rows removed", t->name, removed);
    else
        sync_notice("policy: '%s' is received by partitions: %lld rows of other partitions "
                    "removed (rows with local changes waiting stay)",
                    t->name, removed);
    return SYNC_OK;
}

/* One line saying what the device receives and writes. */
static void log_policy(const edge_db *e)
{
    char summary[2048];
    size_t at = 0;
    for (int i = 0; i < e->ntables && at < sizeof summary; i++) {
        const edge_parts *p = &e->parts[i];
        char rp[256] = "", wp[256] = "";
        for (int d = 0; d < 2 && p->col >= 0; d++) {
            char *out = d ? wp : rp;
            if (!(d ? p->write_limited : p->recv_limited))
                continue;
            size_t o = (size_t)snprintf(out, 256, " %s=", e->tables[i]->cols[p->col].name);
            for (int k = 0; k < (d ? p->nwr : p->nrecv) && o < 256; k++) {
                char lit[128];
                if (edge_sql_literal(lit, sizeof lit, d ? &p->wr[k] : &p->recv[k]) != SYNC_OK)
                    snprintf(lit, sizeof lit, "...");
                o += (size_t)snprintf(out + o, 256 - o, "%s%s", k ? "|" : "", lit);
            }
        }
        at +=
            (size_t)snprintf(summary + at, sizeof summary - at, "%s%s (%s%s%s%s)", i ? ", " : "",
                             e->tables[i]->name, e->recv[i] ? "receive" : "-", e->recv[i] ? rp : "",
                             !e->readonly[i] ? ", write" : "", !e->readonly[i] ? wp : "");
    }
    sync_notice("the cloud's policy for this device: %s", summary);
}

int edge_policy_on_message(edge_db *e, edge_pull *p, const void *payload, size_t len, char *err,
                           size_t errlen)
{
    policy *np = policy_new();
    if (!np)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    int rc = parse(e, payload, len, np, err, errlen);
    if (rc != SYNC_OK) {
        policy_free(np);
        return rc;
    }
    int changed = !e->have_policy;
    for (int i = 0; i < e->ntables; i++)
        changed |= np->recv[i] != e->recv[i] || np->wr[i] != !e->readonly[i] ||
                   !edge_parts_equal(&np->parts[i], &e->parts[i]);
    if (!changed) {
        policy_free(np);
        return SYNC_OK;
    }
    /* The old policy, to compare with: its partitions move out of e, the new ones come in
     * from the database. */
    policy *old = policy_new();
    if (!old) {
        policy_free(np);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    int old_mode[EDGE_MAX_TABLES];
    for (int i = 0; i < e->ntables; i++) {
        old_mode[i] = edge_db_recv_mode(e, i);
        old->recv[i] = e->recv[i];
        old->wr[i] = !e->readonly[i];
        old->parts[i] = e->parts[i];
        memset(&e->parts[i], 0, sizeof e->parts[i]);
        e->parts[i].col = -1;
    }
    rc = SYNC_OK;
    if (store(e, np) != SYNC_OK || edge_db_load_policy(e, err, errlen) != SYNC_OK ||
        edge_capture_install(e, err, errlen) != SYNC_OK)
        rc = sync_seterr(err, errlen, SYNC_ERR_DB, "applying the cloud's policy: %s",
                         sqlite3_errmsg(e->db));
    if (rc == SYNC_OK)
        log_policy(e);
    for (int i = 0; i < e->ntables && rc == SYNC_OK; i++)
        rc = apply_table(e, i, old_mode[i], &old->parts[i], err, errlen);
    if (rc == SYNC_OK && p && edge_pull_policy_changed(p) != SYNC_OK)
        rc = sync_seterr(err, errlen, SYNC_ERR_DB, "the replica's streams: %s",
                         sqlite3_errmsg(e->db));
    policy_free(old);
    policy_free(np);
    return rc;
}
