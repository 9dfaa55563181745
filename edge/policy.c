/* policy.c - the cloud's receive/write policy for this device (see policy.h). */
#include "policy.h"

#include <stdio.h>
#include <string.h>

#include "sync/err.h"
#include "sync/log.h"

/* Sets flags[slot] = 1 for each table named in the JSON array of `key` ("key":["a","b"]).
 * Names are plain identifiers; unknown tables are skipped. Returns 0, or -1 when the key is
 * missing or the array is malformed. */
static int read_list(const edge_db *e, const char *p, size_t n, const char *key, uint8_t *flags)
{
    char pat[40];
    int pl = snprintf(pat, sizeof pat, "\"%s\":[", key);
    size_t i = 0;
    for (;; i++) {
        if (i + (size_t)pl > n)
            return -1;
        if (memcmp(p + i, pat, (size_t)pl) == 0)
            break;
    }
    i += (size_t)pl;
    for (;;) {
        if (i >= n)
            return -1;
        if (p[i] == ']')
            return 0;
        if (p[i] != '"')
            return -1;
        size_t start = ++i;
        while (i < n && p[i] != '"') {
            unsigned char c = (unsigned char)p[i];
            if (c == '\\' || c < 0x20)
                return -1; /* table names need no escapes */
            i++;
        }
        if (i >= n)
            return -1;
        const sync_table *t = edge_db_table(e, p + start, i - start);
        int slot = t ? edge_db_slot(e, t) : -1;
        if (slot >= 0)
            flags[slot] = 1;
        i++;
        if (i < n && p[i] == ',')
            i++;
    }
}

/* Removes the rows of t that this device may no longer hold: every row but those with local
 * changes still in the outbox, with their versions and dirty marks. Replica writes: not
 * captured. */
static int drop_rows(edge_db *e, const sync_table *t, long long *removed)
{
    char sql[1024];
    const char *k = t->cols[t->key].name;
    snprintf(sql, sizeof sql,
             "DELETE FROM \"%s\" WHERE \"%s\" NOT IN (SELECT pk FROM _sync_outbox WHERE tbl = ?1)",
             t->name, k);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(e->db, sql, -1, &st, NULL) != SQLITE_OK)
        return SYNC_ERR_DB;
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return SYNC_ERR_DB;
    *removed = sqlite3_changes(e->db);
    static const char *const more[] = {
        "DELETE FROM _sync_rows WHERE tbl = ?1 AND pk NOT IN (SELECT pk FROM _sync_outbox "
        "WHERE tbl = ?1)",
        "DELETE FROM _sync_dirty WHERE tbl = ?1",
        "DELETE FROM _sync_seen WHERE tbl = ?1",
        "DELETE FROM _sync_resync WHERE tbl = ?1",
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        if (sqlite3_prepare_v2(e->db, more[i], -1, &st, NULL) != SQLITE_OK)
            return SYNC_ERR_DB;
        sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return SYNC_ERR_DB;
    }
    return SYNC_OK;
}

static int store(edge_db *e, const uint8_t *recv, const uint8_t *wr)
{
    if (sqlite3_exec(e->db, "DELETE FROM _sync_policy", NULL, NULL, NULL) != SQLITE_OK)
        return SYNC_ERR_DB;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(e->db, "INSERT INTO _sync_policy(tbl, recv, wr) VALUES (?, ?, ?)", -1,
                           &st, NULL) != SQLITE_OK)
        return SYNC_ERR_DB;
    int rc = SQLITE_DONE;
    for (int i = 0; i < e->ntables && rc == SQLITE_DONE; i++) {
        sqlite3_bind_text(st, 1, e->tables[i]->name, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, recv[i]);
        sqlite3_bind_int(st, 3, wr[i]);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SYNC_OK : SYNC_ERR_DB;
}

int edge_policy_on_message(edge_db *e, edge_pull *p, const void *payload, size_t len, char *err,
                           size_t errlen)
{
    uint8_t recv[EDGE_MAX_TABLES] = {0}, wr[EDGE_MAX_TABLES] = {0};
    const char *s = payload;
    if (len == 0 || read_list(e, s, len, "receive", recv) != 0 ||
        read_list(e, s, len, "write", wr) != 0)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                           "a policy message without well-formed receive and write lists");
    int changed = !e->have_policy;
    for (int i = 0; i < e->ntables; i++)
        changed |= recv[i] != e->recv[i] || wr[i] != !e->readonly[i];
    if (!changed)
        return SYNC_OK;
    uint8_t old_recv[EDGE_MAX_TABLES];
    memcpy(old_recv, e->recv, sizeof old_recv);
    if (store(e, recv, wr) != SYNC_OK || edge_db_load_policy(e, err, errlen) != SYNC_OK ||
        edge_capture_install(e, err, errlen) != SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_DB, "applying the cloud's policy: %s",
                           sqlite3_errmsg(e->db));
    char summary[1024];
    size_t at = 0;
    for (int i = 0; i < e->ntables && at < sizeof summary; i++)
        at += (size_t)snprintf(summary + at, sizeof summary - at, "%s%s (%s%s)", i ? ", " : "",
                               e->tables[i]->name, recv[i] ? "receive" : "-",
                               wr[i] ? ", write" : "");
    sync_notice("the cloud's policy for this device: %s", summary);
    for (int i = 0; i < e->ntables; i++) {
        const sync_table *t = e->tables[i];
        if (recv[i] && !old_recv[i]) {
            sync_notice("policy: now receiving '%s'; pulling it", t->name);
            if (p && edge_pull_table_received(p, t, 1) != SYNC_OK)
                return sync_seterr(err, errlen, SYNC_ERR_DB, "%s", sqlite3_errmsg(e->db));
        } else if (!recv[i] && old_recv[i]) {
            if (p && edge_pull_table_received(p, t, 0) != SYNC_OK)
                return sync_seterr(err, errlen, SYNC_ERR_DB, "%s", sqlite3_errmsg(e->db));
            if (wr[i]) {
                sync_notice("policy: no longer receiving '%s'; its rows stay (this device "
                            "writes it)",
                            t->name);
                continue;
            }
            long long removed = 0;
            if (drop_rows(e, t, &removed) != SYNC_OK)
                return sync_seterr(err, errlen, SYNC_ERR_DB, "removing rows of '%s': %s",
                                   t->name, sqlite3_errmsg(e->db));
            sync_notice("policy: no longer receiving '%s': %lld rows removed", t->name, removed);
        }
    }
    return SYNC_OK;
}
