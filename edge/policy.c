/* policy.c - the cloud's receive/write policy for this device (see policy.h). */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"
#include "sync/log.h"
#include "sync/sqlutil.h"
#include "sync/topic.h"

/* ---- reading the policy's JSON ----
 * A small strict reader for the one object the cloud sends: whitespace, objects, arrays,
 * strings (escapes decoded to UTF-8), integers, and the literals; anything else is refused. */

#define JSON_DEPTH 16
#define JSON_STR 1024 /* bytes of a decoded string (table names, partition values) */

typedef struct jr {
    const char *start, *p, *end;
    char *err;
    size_t errlen;
} jr;

static int jr_fail(jr *j, const char *what)
{
    if (j->err && j->err[0] == 0)
        snprintf(j->err, j->errlen, "%s at byte %ld", what, (long)(j->p - j->start));
    return -1;
}

static int jr_peek(jr *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
    return j->p < j->end ? (unsigned char)*j->p : -1;
}

/* Consumes c (after whitespace) if it comes next; returns 1 if it did. */
static int jr_eat(jr *j, int c)
{
    if (jr_peek(j) != c)
        return 0;
    j->p++;
    return 1;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Reads a string into out (JSON_STR bytes, NUL-terminated; *n its length). */
static int jr_string(jr *j, char *out, size_t *n)
{
    if (jr_peek(j) != '"')
        return jr_fail(j, "a string expected");
    j->p++;
    size_t k = 0;
    for (;;) {
        if (j->p >= j->end)
            return jr_fail(j, "an unterminated string");
        unsigned c = (unsigned char)*j->p++;
        if (c == '"')
            break;
        if (c < 0x20)
            return jr_fail(j, "a control character in a string");
        if (c == '\\') {
            if (j->p >= j->end)
                return jr_fail(j, "an unterminated string");
            char e = *j->p++;
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *x = e ? strchr(from, e) : NULL;
            if (x) {
                c = (unsigned char)to[x - from];
            } else if (e == 'u' && j->end - j->p >= 4 && hex4(j->p, &c) == 0) {
                j->p += 4;
                if (c >= 0xD800 && c <= 0xDBFF) { /* a surrogate pair */
                    unsigned lo;
                    if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
                        hex4(j->p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return jr_fail(j, "a broken surrogate pair");
                    j->p += 6;
                    c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                } else if (c >= 0xDC00 && c <= 0xDFFF) {
                    return jr_fail(j, "a broken surrogate pair");
                }
                if (c == 0)
                    return jr_fail(j, "a NUL character in a string");
                /* UTF-8 */
                unsigned char u[4];
                int len = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
                if (len == 1) {
                    u[0] = (unsigned char)c;
                } else {
                    for (int i = len - 1; i > 0; i--, c >>= 6)
                        u[i] = (unsigned char)(0x80 | (c & 0x3F));
                    u[0] = (unsigned char)((len == 2 ? 0xC0 : len == 3 ? 0xE0 : 0xF0) | c);
                }
                if (k + (size_t)len >= JSON_STR)
                    return jr_fail(j, "a string too long");
                memcpy(out + k, u, (size_t)len);
                k += (size_t)len;
                continue;
            } else {
                return jr_fail(j, "a bad escape in a string");
            }
        }
        if (k + 1 >= JSON_STR)
            return jr_fail(j, "a string too long");
        out[k++] = (char)c;
    }
    out[k] = 0;
    *n = k;
    return 0;
}

/* Reads an integer (no fraction, no exponent). */
static int jr_int(jr *j, int64_t *out)
{
    jr_peek(j);
    const char *s = j->p;
    int neg = s < j->end && *s == '-';
    if (neg)
        s++;
    if (s >= j->end || *s < '0' || *s > '9')
        return jr_fail(j, "a number expected");
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; s < j->end && *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (lim - d) / 10)
            return jr_fail(j, "an integer out of range");
        v = v * 10 + d;
    }
    if (s < j->end && (*s == '.' || *s == 'e' || *s == 'E'))
        return jr_fail(j, "a number that is not an integer");
    j->p = s;
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

static int jr_skip(jr *j, int depth)
{
    int c = jr_peek(j);
    if (depth > JSON_DEPTH)
        return jr_fail(j, "nesting too deep");
    if (c == '"') {
        char s[JSON_STR];
        size_t n;
        return jr_string(j, s, &n);
    }
    if (c == '{' || c == '[') {
        int close = c == '{' ? '}' : ']';
        j->p++;
        if (jr_eat(j, close))
            return 0;
        do {
            if (c == '{') {
                char s[JSON_STR];
                size_t n;
                if (jr_string(j, s, &n) != 0 || !jr_eat(j, ':'))
                    return jr_fail(j, "a member expected");
            }
            if (jr_skip(j, depth + 1) != 0)
                return -1;
        } while (jr_eat(j, ','));
        return jr_eat(j, close) ? 0 : jr_fail(j, "an unterminated object or array");
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        /* numbers we do not use: any JSON number */
        j->p++;
        while (j->p < j->end && strchr("0123456789.eE+-", *j->p))
            j->p++;
        return 0;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(j->end - j->p) >= n && memcmp(j->p, lits[i], n) == 0) {
            j->p += n;
            return 0;
        }
    }
    return jr_fail(j, "a value expected");
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

/* Sets flags[slot] = 1 for each table named in a JSON array of names; unknown tables are
 * skipped (the cloud's schema may know more). */
static int read_tables(jr *j, const edge_db *e, uint8_t *flags)
{
    if (!jr_eat(j, '['))
        return jr_fail(j, "a list of tables expected");
    if (jr_eat(j, ']'))
        return 0;
    do {
        char s[JSON_STR];
        size_t n;
        if (jr_string(j, s, &n) != 0)
            return -1;
        const sync_table *t = edge_db_table(e, s, n);
        int slot = t ? edge_db_slot(e, t) : -1;
        if (slot >= 0)
            flags[slot] = 1;
    } while (jr_eat(j, ','));
    return jr_eat(j, ']') ? 0 : jr_fail(j, "an unterminated list of tables");
}

/* Reads a JSON array of partition values (numbers or strings) into (*list, *n). */
static int read_values(jr *j, sync_value **list, int *n)
{
    if (!jr_eat(j, '['))
        return jr_fail(j, "a list of partition values expected");
    if (jr_eat(j, ']'))
        return 0;
    do {
        char s[JSON_STR];
        size_t len;
        sync_value v;
        if (jr_peek(j) == '"') {
            if (jr_string(j, s, &len) != 0)
                return -1;
            v.type = SYNC_TEXT;
            v.u.b.p = (const uint8_t *)s;
            v.u.b.n = len;
        } else {
            v.type = SYNC_INT;
            if (jr_int(j, &v.u.i) != 0)
                return -1;
        }
        if (edge_parts_add(list, n, &v) != SYNC_OK)
            return jr_fail(j, "out of memory");
    } while (jr_eat(j, ','));
    return jr_eat(j, ']') ? 0 : jr_fail(j, "an unterminated list of partition values");
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

/* Reads the "partitions" object: {"TABLE":{"column":C,"receive":[...],"write":[...]},...}. */
static int read_partitions(jr *j, const edge_db *e, policy *np, char *err, size_t errlen)
{
    if (!jr_eat(j, '{'))
        return jr_fail(j, "an object of partitions expected");
    if (jr_eat(j, '}'))
        return 0;
    do {
        char name[JSON_STR], key[JSON_STR], col[JSON_STR] = "";
        size_t n, kn;
        if (jr_string(j, name, &n) != 0 || !jr_eat(j, ':') || !jr_eat(j, '{'))
            return jr_fail(j, "a table's partitions expected");
        edge_parts tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.col = -1;
        int have_col = 0, rc = 0;
        if (!jr_eat(j, '}')) {
            do {
                if (jr_string(j, key, &kn) != 0 || !jr_eat(j, ':')) {
                    rc = jr_fail(j, "a member expected");
                    break;
                }
                if (strcmp(key, "column") == 0) {
                    rc = jr_string(j, col, &kn);
                    have_col = 1;
                } else if (strcmp(key, "receive") == 0) {
                    rc = read_values(j, &tmp.recv, &tmp.nrecv);
                    tmp.recv_limited = 1;
                } else if (strcmp(key, "write") == 0) {
                    rc = read_values(j, &tmp.wr, &tmp.nwr);
                    tmp.write_limited = 1;
                } else {
                    rc = jr_skip(j, 2);
                }
            } while (rc == 0 && jr_eat(j, ','));
            if (rc == 0 && !jr_eat(j, '}'))
                rc = jr_fail(j, "an unterminated partitions entry");
        }
        if (rc != 0) {
            edge_parts_clear(&tmp);
            return -1;
        }
        const sync_table *t = edge_db_table(e, name, n);
        int slot = t ? edge_db_slot(e, t) : -1;
        if (slot < 0) { /* a table not synced here */
            edge_parts_clear(&tmp);
            continue;
        }
        int c = have_col ? sync_table_col(t, col, strlen(col)) : -1;
        int bad = SYNC_OK;
        if (!have_col)
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
    } while (jr_eat(j, ','));
    return jr_eat(j, '}') ? 0 : jr_fail(j, "an unterminated object of partitions");
}

/* Parses a policy message into np. Returns SYNC_OK or SYNC_ERR_DECODE with the reason. */
static int parse(const edge_db *e, const char *s, size_t len, policy *np, char *err, size_t errlen)
{
    char why[256] = "";
    jr j = {s, s, s + len, why, sizeof why};
    int have_recv = 0, have_write = 0, rc = 0;
    if (!jr_eat(&j, '{'))
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "the policy is not a JSON object");
    if (!jr_eat(&j, '}')) {
        do {
            char key[JSON_STR];
            size_t n;
            if (jr_string(&j, key, &n) != 0 || !jr_eat(&j, ':')) {
                rc = jr_fail(&j, "a member expected");
                break;
            }
            if (strcmp(key, "receive") == 0) {
                rc = read_tables(&j, e, np->recv);
                have_recv = 1;
            } else if (strcmp(key, "write") == 0) {
                rc = read_tables(&j, e, np->wr);
                have_write = 1;
            } else if (strcmp(key, "partitions") == 0) {
                rc = read_partitions(&j, e, np, err, errlen);
                if (rc == SYNC_ERR_DECODE)
                    return rc; /* err says why */
            } else {
                rc = jr_skip(&j, 1);
            }
        } while (rc == 0 && jr_eat(&j, ','));
        if (rc == 0 && !jr_eat(&j, '}'))
            rc = jr_fail(&j, "an unterminated object");
    }
    if (rc == 0 && jr_peek(&j) != -1)
        rc = jr_fail(&j, "bytes after the object");
    if (rc != 0)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "the policy is not valid JSON: %s", why);
    if (!have_recv || !have_write)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                           "a policy message without receive and write lists");
    return SYNC_OK;
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
        char lit[JSON_STR * 2 + 8];
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
        for (int k = 0; k < ngone; k++)
            if (gone[k].type == SYNC_TEXT)
                free((void *)gone[k].u.b.p);
        free(gone);
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
