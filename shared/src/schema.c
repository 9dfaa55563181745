/* schema.c - loading and querying the schema file (see sync/schema.h). */
#include "sync/schema.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/topic.h"

#define SCHEMA_MAX_TABLES 256

struct sync_schema {
    uint32_t version;   /* the `version` line */
    int ntables;        /* tables declared */
    sync_table *tables; /* ntables entries, owned */
};

static int ident_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SYNC_MAX_NAME)
        return 0;
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    /* Our own bookkeeping tables and columns start with _sync / _ in the cloud. */
    return strncmp(s, "_sync", 5) != 0 && s[0] != '_';
}

static int type_of(const char *s, sync_vtype *t)
{
    static const struct {
        const char *name;
        sync_vtype type;
    } types[] = {{"integer", SYNC_INT},
                 {"int", SYNC_INT},
                 {"real", SYNC_REAL},
                 {"text", SYNC_TEXT},
                 {"blob", SYNC_BLOB}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(s, types[i].name) == 0) {
            *t = types[i].type;
            return 0;
        }
    }
    return -1;
}

/* Finishes a table: it must have exactly one key column. */
static int table_done(const sync_table *t, const char *path, int line, char *err, size_t errlen)
{
    if (t->key < 0)
        return sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "%s:%d: table '%s' has no key column",
                           path, line, t->name);
    return SYNC_OK;
}

int sync_schema_load(const char *path, sync_schema **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot open schema file %s: %s", path,
                           strerror(errno));
    sync_schema *s = calloc(1, sizeof *s);
    if (!s) {
        fclose(f);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    char line[1024];
    int lineno = 0, rc = SYNC_OK, have_version = 0;
    sync_table *cur = NULL;
    while (rc == SYNC_OK && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "%s:%d: line longer than %zu bytes",
                             path, lineno, sizeof line - 2);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *w[6];
        int nw = 0;
        for (char *tok = strtok(line, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
            if (nw == 6) {
                nw++;
                break;
            }
            w[nw++] = tok;
        }
        if (nw == 0)
            continue;
        if (nw > 5) {
            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "%s:%d: too many words", path, lineno);
        } else if (strcmp(w[0], "version") == 0) {
            char *end;
            errno = 0;
            unsigned long v = nw == 2 ? strtoul(w[1], &end, 10) : 0;
            if (nw != 2 || errno || *end || v == 0 || v > 0xFFFFFFFFul || w[1][0] == '-')
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                 "%s:%d: version needs a positive integer", path, lineno);
            s->version = (uint32_t)v;
            have_version = 1;
        } else if (strcmp(w[0], "table") == 0) {
            if ((nw != 2 && nw != 4) || !ident_ok(w[1])) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                 "%s:%d: 'table NAME [owner DEVICE]' needs an SQL identifier "
                                 "(letters, digits, _; at most %d bytes; not starting with _)",
                                 path, lineno, SYNC_MAX_NAME);
                break;
            }
            if (nw == 4 && (strcmp(w[2], "owner") != 0 || !sync_id_valid(w[3], strlen(w[3])))) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                 "%s:%d: expected 'owner DEVICE' after the table name, with a "
                                 "device id of 1-64 of A-Z a-z 0-9 _ . -",
                                 path, lineno);
                break;
            }
            if (cur && (rc = table_done(cur, path, lineno, err, errlen)) != SYNC_OK)
                break;
            if (sync_schema_find(s, w[1], strlen(w[1]))) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "%s:%d: table '%s' declared twice",
                                 path, lineno, w[1]);
                break;
            }
            if (s->ntables == SCHEMA_MAX_TABLES) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "%s:%d: more than %d tables", path,
                                 lineno, SCHEMA_MAX_TABLES);
                break;
            }
            sync_table *nt = realloc(s->tables, (size_t)(s->ntables + 1) * sizeof *nt);
            if (!nt) {
                rc = sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
                break;
            }
            s->tables = nt;
            cur = &s->tables[s->ntables];
            memset(cur, 0, sizeof *cur);
            snprintf(cur->name, sizeof cur->name, "%s", w[1]);
            cur->index = s->ntables++;
            cur->key = -1;
            if (nw == 4)
                snprintf(cur->owner, sizeof cur->owner, "%s", w[3]);
        } else if (strcmp(w[0], "column") == 0) {
            sync_vtype t;
            if (!cur) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "%s:%d: 'column' before any 'table'",
                                 path, lineno);
            } else if (nw < 3 || !ident_ok(w[1])) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                 "%s:%d: expected 'column NAME TYPE [key] [notnull]' with NAME an "
                                 "SQL identifier",
                                 path, lineno);
            } else if (type_of(w[2], &t) != 0) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                 "%s:%d: unknown type '%s' (integer, real, text or blob)", path,
                                 lineno, w[2]);
            } else if (sync_table_col(cur, w[1], strlen(w[1])) >= 0) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                 "%s:%d: column '%s' declared twice in table '%s'", path, lineno,
                                 w[1], cur->name);
            } else if (cur->ncols == SYNC_MAX_COLS) {
                rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                 "%s:%d: table '%s' has more than %d columns", path, lineno,
                                 cur->name, SYNC_MAX_COLS);
            } else {
                sync_column *c = &cur->cols[cur->ncols];
                snprintf(c->name, sizeof c->name, "%s", w[1]);
                c->type = t;
                for (int i = 3; i < nw && rc == SYNC_OK; i++) {
                    if (strcmp(w[i], "key") == 0) {
                        if (cur->key >= 0)
                            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                             "%s:%d: table '%s' already has key column '%s' "
                                             "(one key column per table)",
                                             path, lineno, cur->name, cur->cols[cur->key].name);
                        else if (t == SYNC_REAL)
                            rc =
                                sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                            "%s:%d: a real column cannot be the key", path, lineno);
                        cur->key = cur->ncols;
                        c->notnull = 1;
                    } else if (strcmp(w[i], "notnull") == 0) {
                        c->notnull = 1;
                    } else {
                        rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                                         "%s:%d: unknown column option '%s' (key, notnull)", path,
                                         lineno, w[i]);
                    }
                }
                cur->ncols++;
            }
        } else {
            rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                             "%s:%d: unknown keyword '%s' (version, table, column)", path, lineno,
                             w[0]);
        }
    }
    fclose(f);
    if (rc == SYNC_OK && cur)
        rc = table_done(cur, path, lineno, err, errlen);
    if (rc == SYNC_OK && !have_version)
        rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "%s:%d: missing 'version N' line", path,
                         lineno);
    if (rc == SYNC_OK && s->ntables == 0)
        rc = sync_seterr(err, errlen, SYNC_ERR_SCHEMA, "%s:%d: no tables declared", path, lineno);
    if (rc != SYNC_OK) {
        sync_schema_free(s);
        return rc;
    }
    *out = s;
    return SYNC_OK;
}

void sync_schema_free(sync_schema *s)
{
    if (!s)
        return;
    free(s->tables);
    free(s);
}

uint32_t sync_schema_version(const sync_schema *s)
{
    return s->version;
}

int sync_schema_ntables(const sync_schema *s)
{
    return s->ntables;
}

const sync_table *sync_schema_table(const sync_schema *s, int i)
{
    return i >= 0 && i < s->ntables ? &s->tables[i] : NULL;
}

const sync_table *sync_schema_find(const sync_schema *s, const char *name, size_t len)
{
    for (int i = 0; i < s->ntables; i++) {
        const char *tn = s->tables[i].name;
        if (strlen(tn) == len && memcmp(tn, name, len) == 0)
            return &s->tables[i];
    }
    return NULL;
}

int sync_table_col(const sync_table *t, const char *name, size_t len)
{
    for (int i = 0; i < t->ncols; i++) {
        const char *cn = t->cols[i].name;
        if (strlen(cn) == len && memcmp(cn, name, len) == 0)
            return i;
    }
    return -1;
}

int sync_column_check(const sync_table *t, int col, sync_value *v, char *err, size_t errlen)
{
    const sync_column *c = &t->cols[col];
    if (v->type == SYNC_NULL) {
        if (c->notnull)
            return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                               "table '%s' column '%s': NULL is not allowed", t->name, c->name);
        return SYNC_OK;
    }
    if (c->type == SYNC_REAL && v->type == SYNC_INT) {
        v->type = SYNC_REAL;
        v->u.f = (double)v->u.i;
        return SYNC_OK;
    }
    if (v->type != c->type)
        return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                           "table '%s' column '%s': expected %s, got %s", t->name, c->name,
                           sync_vtype_name(c->type), sync_vtype_name(v->type));
    if (v->type == SYNC_REAL && isnan(v->u.f))
        /* SQLite stores a NaN as NULL, so it could never be kept or synced as sent. */
        return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                           "table '%s' column '%s': NaN cannot be stored", t->name, c->name);
    if (v->type == SYNC_TEXT) {
        size_t bad = sync_utf8_check(v->u.b.p, v->u.b.n);
        if (bad != v->u.b.n)
            return sync_seterr(err, errlen, SYNC_ERR_SCHEMA,
                               "table '%s' column '%s': text is not valid UTF-8 (byte %zu)",
                               t->name, c->name, bad);
    }
    return SYNC_OK;
}
