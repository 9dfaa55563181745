/* registry.c - the device registry in SQLite (see registry.h).
 *
 * Times are stored as ISO-8601 UTC text so that `sqlite3 registry.db` shows them readably;
 * the struct carries time_t. The file is created by us with mode 0600 before SQLite opens it
 * (its journal takes the same mode): it holds the devices' password hashes.
 */
#include "registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "files.h"
#include "sync/err.h"
#include "sync/sqlutil.h"

struct ctl_registry {
    sqlite3 *db;
};

static const char schema_sql[] =
    "CREATE TABLE devices(\n"
    "  device TEXT PRIMARY KEY,   -- certificate CN and broker user name: unique everywhere\n"
    "  tenant TEXT NOT NULL,      -- O= of the certificate\n"
    "  role TEXT,                 -- for synccloud's priority policy, NULL when none\n"
    "  status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'removed')),\n"
    "  serial TEXT NOT NULL UNIQUE,     -- certificate serial, hex\n"
    "  fingerprint TEXT NOT NULL,       -- SHA-256 of the certificate DER, hex\n"
    "  created TEXT NOT NULL,           -- ISO-8601 UTC\n"
    "  not_after TEXT NOT NULL,         -- certificate expiry, ISO-8601 UTC\n"
    "  updated TEXT NOT NULL,           -- last change of this row\n"
    "  revoked_at TEXT,                 -- last suspend or remove (the CRL's revocationDate)\n"
    "  reason INTEGER,                  -- CRL reason code while revoked\n"
    "  pw_hash TEXT                     -- Mosquitto password hash, NULL: certificate only\n"
    ");\n"
    "CREATE INDEX devices_tenant ON devices(tenant, device);\n"
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);\n"
    "INSERT INTO meta VALUES ('crl_number', 0);\n"
    "PRAGMA user_version = 1;\n";

static const char *const status_names[] = {"active", "suspended", "removed"};

const char *ctl_status_name(ctl_status s)
{
    return (unsigned)s < 3 ? status_names[s] : "unknown";
}

void ctl_time_iso(time_t t, char *buf)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static time_t parse_iso(const unsigned char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || sscanf((const char *)s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon,
                     &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

static int db_fail(ctl_registry *r, char *err, size_t errlen, const char *what)
{
    return sync_seterr(err, errlen, SYNC_ERR_DB, "registry: %s: %s", what, sqlite3_errmsg(r->db));
}

int ctl_registry_open(const char *path, ctl_open_mode mode, ctl_registry **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    if (mode == CTL_REG_CREATE) {
        int rc = ctl_file_create(path, "", 0, 0600, err, errlen);
        if (rc != SYNC_OK)
            return rc;
    } else if (access(path, F_OK) != 0) {
        return sync_seterr(err, errlen, SYNC_ERR_STATE,
                           "no registry at %s: run `syncctl ca init` first (or give --dir)", path);
    }
    ctl_registry *r = calloc(1, sizeof *r);
    if (!r)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    int flags = mode == CTL_REG_READ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (sqlite3_open_v2(path, &r->db, flags, NULL) != SQLITE_OK) {
        int rc = sync_seterr(err, errlen, SYNC_ERR_DB, "cannot open the registry %s: %s", path,
                             r->db ? sqlite3_errmsg(r->db) : "out of memory");
        ctl_registry_close(r);
        return rc;
    }
    sqlite3_busy_timeout(r->db, 10000);
    /* A rollback journal, not WAL: no -wal/-shm files beside a file that holds secrets, and a
     * registry that changes a few times a day does not need WAL's concurrency. */
    const char *setup = mode == CTL_REG_READ ? "PRAGMA query_only = 1"
                                             : "PRAGMA journal_mode = DELETE;"
                                               "PRAGMA synchronous = FULL";
    int rc = sync_sql_exec(r->db, setup, "registry setup", err, errlen);
    if (rc == SYNC_OK && mode == CTL_REG_CREATE)
        rc = sync_sql_exec(r->db, schema_sql, "creating the registry", err, errlen);
    if (rc == SYNC_OK && mode != CTL_REG_CREATE) {
        sqlite3_stmt *st;
        rc = sync_sql_prepare(r->db, "PRAGMA user_version", &st, err, errlen);
        if (rc == SYNC_OK) {
            int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
            sqlite3_finalize(st);
            if (v != 1)
                rc = sync_seterr(err, errlen, SYNC_ERR_DB,
                                 "%s is not a syncctl registry of this version (user_version %d)",
                                 path, v);
        }
    }
    if (rc != SYNC_OK) {
        ctl_registry_close(r);
        if (mode == CTL_REG_CREATE)
            unlink(path);
        return rc;
    }
    *out = r;
    return SYNC_OK;
}

void ctl_registry_close(ctl_registry *r)
{
    if (!r)
        return;
    sqlite3_close(r->db);
    free(r);
}

int ctl_registry_begin(ctl_registry *r, char *err, size_t errlen)
{
    return sync_sql_exec(r->db, "BEGIN IMMEDIATE", "begin", err, errlen);
}

int ctl_registry_commit(ctl_registry *r, char *err, size_t errlen)
{
    return sync_sql_exec(r->db, "COMMIT", "commit", err, errlen);
}

void ctl_registry_rollback(ctl_registry *r)
{
    sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
}

static const char select_cols[] = "SELECT device, tenant, role, status, serial, fingerprint, "
                                  "created, not_after, updated, revoked_at, reason, pw_hash "
                                  "FROM devices ";

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t n)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    snprintf(dst, n, "%s", s ? (const char *)s : "");
}

static void read_row(sqlite3_stmt *st, ctl_device *d)
{
    memset(d, 0, sizeof *d);
    copy_col(st, 0, d->device, sizeof d->device);
    copy_col(st, 1, d->tenant, sizeof d->tenant);
    copy_col(st, 2, d->role, sizeof d->role);
    const unsigned char *s = sqlite3_column_text(st, 3);
    d->status = CTL_ACTIVE;
    for (int i = 0; s && i < 3; i++)
        if (strcmp((const char *)s, status_names[i]) == 0)
            d->status = (ctl_status)i;
    copy_col(st, 4, d->serial, sizeof d->serial);
    copy_col(st, 5, d->fingerprint, sizeof d->fingerprint);
    d->created = parse_iso(sqlite3_column_text(st, 6));
    d->not_after = parse_iso(sqlite3_column_text(st, 7));
    d->updated = parse_iso(sqlite3_column_text(st, 8));
    d->revoked_at = parse_iso(sqlite3_column_text(st, 9));
    d->reason = sqlite3_column_int(st, 10);
    copy_col(st, 11, d->pw_hash, sizeof d->pw_hash);
}

int ctl_registry_get(ctl_registry *r, const char *device, ctl_device *out, char *err, size_t errlen)
{
    char sql[512];
    snprintf(sql, sizeof sql, "%sWHERE device = ?1", select_cols);
    sqlite3_stmt *st;
    int rc = sync_sql_prepare(r->db, sql, &st, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        read_row(st, out);
    else if (s == SQLITE_DONE)
        rc = sync_seterr(err, errlen, SYNC_ERR_STATE, "no device '%s' in the registry", device);
    else
        rc = db_fail(r, err, errlen, "reading a device");
    sqlite3_finalize(st);
    return rc;
}

int ctl_registry_add(ctl_registry *r, const ctl_device *d, char *err, size_t errlen)
{
    ctl_device old;
    char msg[256];
    int rc = ctl_registry_get(r, d->device, &old, msg, sizeof msg);
    if (rc == SYNC_OK)
        return sync_seterr(err, errlen, SYNC_ERR_STATE,
                           "device '%s' already exists (tenant %s, %s): device ids are unique "
                           "across tenants and never reused",
                           d->device, old.tenant, ctl_status_name(old.status));
    if (rc != SYNC_ERR_STATE)
        return sync_seterr(err, errlen, rc, "%s", msg);
    sqlite3_stmt *st;
    rc = sync_sql_prepare(r->db,
                          "INSERT INTO devices(device, tenant, role, status, serial, fingerprint,"
                          " created, not_after, updated, pw_hash)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7, ?9)",
                          &st, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    char created[21], not_after[21];
    ctl_time_iso(d->created, created);
    ctl_time_iso(d->not_after, not_after);
    sqlite3_bind_text(st, 1, d->device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, d->tenant, -1, SQLITE_STATIC);
    if (d->role[0])
        sqlite3_bind_text(st, 3, d->role, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ctl_status_name(d->status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, d->serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, d->fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, created, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, not_after, -1, SQLITE_STATIC);
    if (d->pw_hash[0])
        sqlite3_bind_text(st, 9, d->pw_hash, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(r, err, errlen, "adding a device");
    sqlite3_finalize(st);
    return rc;
}

int ctl_registry_set_status(ctl_registry *r, const char *device, ctl_status status, int reason,
                            time_t when, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sync_sql_prepare(r->db,
                              "UPDATE devices SET status = ?2, updated = ?3,"
                              " revoked_at = CASE WHEN ?2 = 'active' THEN NULL ELSE ?3 END,"
                              " reason = CASE WHEN ?2 = 'active' THEN NULL ELSE ?4 END"
                              " WHERE device = ?1",
                              &st, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    char now[21];
    ctl_time_iso(when, now);
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ctl_status_name(status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, reason);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(r, err, errlen, "changing a device's status");
    else if (sqlite3_changes(r->db) == 0)
        rc = sync_seterr(err, errlen, SYNC_ERR_STATE, "no device '%s' in the registry", device);
    sqlite3_finalize(st);
    return rc;
}

int ctl_registry_each(ctl_registry *r, const char *tenant, ctl_device_cb cb, void *ctx, char *err,
                      size_t errlen)
{
    char sql[512];
    snprintf(sql, sizeof sql, "%sWHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, device",
             select_cols);
    sqlite3_stmt *st;
    int rc = sync_sql_prepare(r->db, sql, &st, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    if (tenant)
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    int s;
    ctl_device d;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        read_row(st, &d);
        rc = cb(ctx, &d);
        if (rc != 0)
            break;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = db_fail(r, err, errlen, "listing devices");
    sqlite3_finalize(st);
    return rc;
}

int ctl_registry_next_crl_number(ctl_registry *r, unsigned long *out, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sync_sql_prepare(r->db,
                              "UPDATE meta SET value = value + 1 WHERE key = 'crl_number'"
                              " RETURNING value",
                              &st, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = (unsigned long)sqlite3_column_int64(st, 0);
    else
        rc = db_fail(r, err, errlen, "taking a CRL number");
    sqlite3_finalize(st);
    return rc;
}
