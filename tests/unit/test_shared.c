/* test_shared.c - unit tests of the rest of libsyncshared: schema.c, conf.c, topic.c, hlc.c,
 * json.c, checksum.c and sqlutil.c.
 *
 * Files (schemas, configs, secrets, SQLite databases) are written into a private directory made
 * with mkdtemp under $SYNC_TEST_TMP (or $TMPDIR, or /tmp) and removed at the end. Builders that
 * write into caller buffers are run with every too-small size and a canary after the buffer,
 * so an overflow shows up as a failed check rather than as luck. Each failed check prints
 * file:line; the exit status is nonzero if any check failed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/checksum.h"
#include "sync/conf.h"
#include "sync/log.h"
#include "sync/err.h"
#include "sync/hlc.h"
#include "sync/json.h"
#include "sync/record.h"
#include "sync/schema.h"
#include "sync/sqlutil.h"
#include "sync/topic.h"
#include "sync/value.h"

#include "unitcheck.h"

/* Writes text to file `name` in the temporary directory with exactly this mode; path receives
 * its full name (1024 bytes). Returns path, or NULL after reporting a failed check. */
static char *write_file(char *path, const char *name, const char *text, mode_t mode)
{
    int fd;
    size_t n = strlen(text);

    tpath(path, name);
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (!CHECK(fd >= 0))
        return NULL;
    CHECK(fchmod(fd, mode) == 0); /* the umask must not decide the mode */
    CHECK(write(fd, text, n) == (ssize_t)n);
    close(fd);
    return path;
}

static sync_value v_null(void)
{
    sync_value v;

    memset(&v, 0, sizeof v);
    v.type = SYNC_NULL;
    return v;
}

static sync_value v_int(int64_t i)
{
    sync_value v = v_null();

    v.type = SYNC_INT;
    v.u.i = i;
    return v;
}

static sync_value v_real(double f)
{
    sync_value v = v_null();

    v.type = SYNC_REAL;
    v.u.f = f;
    return v;
}

static sync_value v_text(const char *s, size_t n)
{
    sync_value v = v_null();

    v.type = SYNC_TEXT;
    v.u.b.p = (const uint8_t *)s;
    v.u.b.n = n;
    return v;
}

static sync_value v_blob(const void *p, size_t n)
{
    sync_value v = v_null();

    v.type = SYNC_BLOB;
    v.u.b.p = p;
    v.u.b.n = n;
    return v;
}

/* ---- schema.c ---- */

/* A schema using every feature: comments, blank lines, odd whitespace, the `int` alias. */
static const char valid_schema[] = "# inventory of the demo shop\n"
                                   "\n"
                                   "version 7   # bumped when columns change\n"
                                   "\n"
                                   "table items\n"
                                   "column id integer key\n"
                                   "\tcolumn  name   text notnull\n"
                                   "column price real\n"
                                   "column qty int\n"
                                   "column photo blob\n"
                                   "   # a comment between tables\n"
                                   "table notes\r\n"
                                   "column body text\n"
                                   "column k text notnull key\n";

static void test_schema_valid(void)
{
    char path[1024], err[256] = "";
    sync_schema *s = NULL;
    const sync_table *t, *u;

    if (!write_file(path, "valid.schema", valid_schema, 0600))
        return;
    if (!CHECK_RC(sync_schema_load(path, &s, err, sizeof err), SYNC_OK, err) || !CHECK(s))
        return;
    CHECK(sync_schema_version(s) == 7);
    CHECK(sync_schema_ntables(s) == 2);

    t = sync_schema_table(s, 0);
    if (CHECK(t != NULL)) {
        CHECK_STR(t->name, "items");
        CHECK(t->index == 0);
        CHECK(t->ncols == 5);
        CHECK(t->key == 0);
        CHECK_STR(t->cols[0].name, "id");
        CHECK(t->cols[0].type == SYNC_INT);
        CHECK(t->cols[0].notnull); /* the key is implicitly notnull */
        CHECK_STR(t->cols[1].name, "name");
        CHECK(t->cols[1].type == SYNC_TEXT);
        CHECK(t->cols[1].notnull);
        CHECK_STR(t->cols[2].name, "price");
        CHECK(t->cols[2].type == SYNC_REAL);
        CHECK(!t->cols[2].notnull);
        CHECK_STR(t->cols[3].name, "qty");
        CHECK(t->cols[3].type == SYNC_INT); /* `int` is an alias of integer */
        CHECK(!t->cols[3].notnull);
        CHECK_STR(t->cols[4].name, "photo");
        CHECK(t->cols[4].type == SYNC_BLOB);
    }
    u = sync_schema_table(s, 1);
    if (CHECK(u != NULL)) {
        CHECK_STR(u->name, "notes"); /* the CR of a CRLF line is not part of the name */
        CHECK(u->index == 1);
        CHECK(u->ncols == 2);
        CHECK(u->key == 1); /* key need not be the first column, options in any order */
        CHECK(u->cols[1].type == SYNC_TEXT);
        CHECK(u->cols[1].notnull);
        CHECK(!u->cols[0].notnull);
    }
    CHECK(sync_schema_table(s, 2) == NULL);
    CHECK(sync_schema_table(s, -1) == NULL);

    /* Lookups take a length, so names may come straight out of a payload without a NUL. */
    CHECK(sync_schema_find(s, "itemsXYZ", 5) == t);
    CHECK(sync_schema_find(s, "notes/x", 5) == u);
    CHECK(sync_schema_find(s, "item", 4) == NULL);
    CHECK(sync_schema_find(s, "items", 4) == NULL);
    CHECK(sync_schema_find(s, "itemsX", 6) == NULL);
    CHECK(sync_schema_find(s, "", 0) == NULL);
    if (t) {
        CHECK(sync_table_col(t, "pricey", 5) == 2);
        CHECK(sync_table_col(t, "qty\xff", 3) == 3);
        CHECK(sync_table_col(t, "idx", 2) == 0);
        CHECK(sync_table_col(t, "idx", 1) == -1);
        CHECK(sync_table_col(t, "photos", 6) == -1);
        CHECK(sync_table_col(t, "", 0) == -1);
    }
    sync_schema_free(s);
    sync_schema_free(NULL); /* allowed, like free() */
}

/* Loads text as a schema and expects code rc with a message "PATH:LINE: ..." that contains
 * needle. line > 0: that line; line == -1: some line number; line == 0: "PATH: ..." is enough
 * (an error about the whole file). */
static void schema_bad(const char *text, int rc, int line, const char *needle, int at)
{
    char path[1024], err[512] = "", prefix[1100];
    sync_schema *s = (sync_schema *)&checks; /* must be reset to NULL */
    int got;
    size_t pl;

    if (!write_file(path, "bad.schema", text, 0600))
        return;
    got = sync_schema_load(path, &s, err, sizeof err);
    checks++;
    if (got != rc || s != NULL) {
        failures++;
        fprintf(stderr, "%s:%d: schema load returned %d (%s), out %s, expected %d; message: %s\n",
                __FILE__, at, got, sync_strerror(got), s ? "not NULL" : "NULL", rc, err);
        if (got == SYNC_OK)
            sync_schema_free(s);
        return;
    }
    if (line > 0)
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    else
        snprintf(prefix, sizeof prefix, "%s:", path);
    pl = strlen(prefix);
    checks++;
    if (strncmp(err, prefix, pl) != 0 ||
        (line < 0 && (err[pl] < '1' || err[pl] > '9' || !strchr(err + pl, ':'))) ||
        !strstr(err, needle)) {
        failures++;
        fprintf(stderr,
                "%s:%d: schema message \"%s\" should start with \"%s%s\" and contain "
                "\"%s\"\n",
                __FILE__, at, err, prefix, line < 0 ? "LINE:" : "", needle);
    }
}

static void test_schema_errors(void)
{
    char path[1024], err[256] = "", name64[SYNC_MAX_NAME + 2], name63[SYNC_MAX_NAME + 1];
    char text[4096], *p;
    sync_schema *s = (sync_schema *)&checks;
    int i;

    tpath(path, "does-not-exist.schema");
    CHECK_RC(sync_schema_load(path, &s, err, sizeof err), SYNC_ERR_IO, err);
    CHECK(s == NULL);
    CHECK_HAS(err, path);

    /* The file-level errors have no line to name; the file must still be named. */
    schema_bad("table t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 0, "version", __LINE__);
    schema_bad("# only a comment\n\n", SYNC_ERR_SCHEMA, 0, "version", __LINE__);
    schema_bad("version 1\n", SYNC_ERR_SCHEMA, 0, "no tables", __LINE__);
    schema_bad("version 1\n# table t\n", SYNC_ERR_SCHEMA, 0, "no tables", __LINE__);

    schema_bad("version 0\ntable t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 1, "version",
               __LINE__);
    schema_bad("\nversion -1\ntable t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 2, "version",
               __LINE__);
    schema_bad("version abc\ntable t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 1, "version",
               __LINE__);
    schema_bad("version 1.5\ntable t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 1, "version",
               __LINE__);
    schema_bad("version 3x\ntable t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 1, "version",
               __LINE__);
    schema_bad("version\ntable t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 1, "version",
               __LINE__);
    schema_bad("version 1 2\ntable t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 1, "version",
               __LINE__);
    schema_bad("version 4294967296\ntable t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 1,
               "version", __LINE__);

    schema_bad("version 1\ncolumn id integer key\ntable t\n", SYNC_ERR_SCHEMA, 2, "before",
               __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ncolumn x varchar\n", SYNC_ERR_SCHEMA, 4,
               "varchar", __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ncolumn x texts\n", SYNC_ERR_SCHEMA, 4,
               "texts", __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integers key\n", SYNC_ERR_SCHEMA, 3, "integers",
               __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ncolumn x\n", SYNC_ERR_SCHEMA, 4,
               "column", __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ncolumn x text unique\n", SYNC_ERR_SCHEMA,
               4, "unique", __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ncolumn x text notnull key extra\n",
               SYNC_ERR_SCHEMA, 4, "", __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ncolumn id2 text key\n", SYNC_ERR_SCHEMA,
               4, "key", __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key key\n", SYNC_ERR_SCHEMA, 3, "key",
               __LINE__);
    schema_bad("version 1\ntable t\ncolumn id real key\n", SYNC_ERR_SCHEMA, 3, "real", __LINE__);
    /* No key: reported when the table ends, at the next table or at the end of the file. */
    schema_bad("version 1\ntable t\ncolumn a text\n", SYNC_ERR_SCHEMA, -1, "'t'", __LINE__);
    schema_bad("version 1\ntable t\ncolumn a text\ntable u\ncolumn id integer key\n",
               SYNC_ERR_SCHEMA, -1, "'t'", __LINE__);
    schema_bad("version 1\ntable t\ntable u\ncolumn id integer key\n", SYNC_ERR_SCHEMA, -1, "'t'",
               __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ntable t\ncolumn id integer key\n",
               SYNC_ERR_SCHEMA, 4, "twice", __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ncolumn a text\ncolumn a blob\n",
               SYNC_ERR_SCHEMA, 5, "twice", __LINE__);
    schema_bad("version 1\nview v\n", SYNC_ERR_SCHEMA, 2, "view", __LINE__);
    schema_bad("version 1\ntable\n", SYNC_ERR_SCHEMA, 2, "", __LINE__);
    schema_bad("version 1\ntable a b\n", SYNC_ERR_SCHEMA, 2, "", __LINE__);

    /* Reserved and invalid names, for tables and for columns. */
    schema_bad("version 1\ntable _t\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 2, "", __LINE__);
    schema_bad("version 1\ntable _sync_log\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 2, "",
               __LINE__);
    schema_bad("version 1\ntable t\ncolumn _x integer key\n", SYNC_ERR_SCHEMA, 3, "", __LINE__);
    schema_bad("version 1\ntable t\ncolumn id integer key\ncolumn _sync text\n", SYNC_ERR_SCHEMA, 4,
               "", __LINE__);
    schema_bad("version 1\ntable 1abc\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 2, "", __LINE__);
    schema_bad("version 1\ntable a-b\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 2, "", __LINE__);
    schema_bad("version 1\ntable t\ncolumn 1abc integer key\n", SYNC_ERR_SCHEMA, 3, "", __LINE__);
    schema_bad("version 1\ntable t\ncolumn a-b integer key\n", SYNC_ERR_SCHEMA, 3, "", __LINE__);
    schema_bad("version 1\ntable t\ncolumn a\"b integer key\n", SYNC_ERR_SCHEMA, 3, "", __LINE__);
    schema_bad("version 1\ntable t\xc3\xa9\ncolumn id integer key\n", SYNC_ERR_SCHEMA, 2, "",
               __LINE__);

    memset(name64, 'n', SYNC_MAX_NAME + 1);
    name64[SYNC_MAX_NAME + 1] = '\0';
    memcpy(name63, name64, SYNC_MAX_NAME);
    name63[SYNC_MAX_NAME] = '\0';
    snprintf(text, sizeof text, "version 1\ntable %s\ncolumn id integer key\n", name64);
    schema_bad(text, SYNC_ERR_SCHEMA, 2, "", __LINE__);
    snprintf(text, sizeof text, "version 1\ntable t\ncolumn %s integer key\n", name64);
    schema_bad(text, SYNC_ERR_SCHEMA, 3, "", __LINE__);

    /* 63 bytes is the longest legal name. */
    snprintf(text, sizeof text, "version 1\ntable %s\ncolumn %s integer key\n", name63, name63);
    if (write_file(path, "long.schema", text, 0600)) {
        CHECK_RC(sync_schema_load(path, &s, err, sizeof err), SYNC_OK, err);
        if (s) {
            CHECK(sync_schema_find(s, name63, SYNC_MAX_NAME) != NULL);
            sync_schema_free(s);
        }
    }

    /* 63 columns fit (a 64-bit changed-column mask), the 64th is refused at its line. */
    p = text + sprintf(text, "version 1\ntable wide\ncolumn c0 integer key\n");
    for (i = 1; i < SYNC_MAX_COLS; i++)
        p += sprintf(p, "column c%d text\n", i);
    if (write_file(path, "wide.schema", text, 0600)) {
        CHECK_RC(sync_schema_load(path, &s, err, sizeof err), SYNC_OK, err);
        if (s) {
            CHECK(sync_schema_table(s, 0)->ncols == SYNC_MAX_COLS);
            sync_schema_free(s);
        }
    }
    sprintf(p, "column c%d text\n", SYNC_MAX_COLS);
    schema_bad(text, SYNC_ERR_SCHEMA, 3 + SYNC_MAX_COLS, "", __LINE__);

    /* Regression test (fixed bug: schema.c reads lines with a fixed 1024-byte fgets and treats
     * the rest of a longer line as a new line): a comment of any length must be ignored, or at
     * the very least the long line must be refused at its own line number. Today a 1500-byte
     * comment on line 2 gives "PATH:3: unknown keyword 'xxx...'". */
    for (i = 0; i < 2; i++) {
        int rc;

        p = text + sprintf(text, "version 1\n%s# ", i == 0 ? "" : "table t ");
        memset(p, 'x', 1500);
        strcpy(p + 1500,
               i == 0 ? "\ntable t\ncolumn id integer key\n" : "\ncolumn id integer key\n");
        if (!write_file(path, "comment.schema", text, 0600))
            break;
        strcpy(err, "");
        rc = sync_schema_load(path, &s, err, sizeof err);
        if (!CHECK(rc == SYNC_OK || strstr(err, ":2: ") != NULL))
            fprintf(stderr, "    (long comment, case %d: %s)\n", i, err);
        sync_schema_free(rc == SYNC_OK ? s : NULL);
    }
}

static void test_column_check(void)
{
    static const char text[] = "version 1\n"
                               "table items\n"
                               "column id integer key\n"
                               "column name text notnull\n"
                               "column price real\n"
                               "column qty integer\n"
                               "column photo blob\n"
                               "column note text\n";
    static const char *bad_utf8[] = {
        "\xff",             /* never valid */
        "a\x80",            /* lone continuation byte */
        "\xc0\x80",         /* overlong NUL */
        "\xe0\x80\xaf",     /* overlong '/' */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* beyond U+10FFFF */
        "\xe2\x82",         /* truncated euro sign */
        "ok\xc3",           /* truncated at the end */
    };
    static const char *good_utf8[] = {
        "h\xc3\xa9llo",     /* e acute, 2 bytes */
        "\xe2\x82\xac",     /* euro sign, 3 bytes */
        "\xf0\x9f\x98\x80", /* emoji, 4 bytes */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF */
    };
    char path[1024], err[256] = "";
    sync_schema *s = NULL;
    const sync_table *t;
    sync_value v;
    size_t i;
    uint8_t b[2] = {1, 2};

    if (!write_file(path, "check.schema", text, 0600))
        return;
    if (!CHECK_RC(sync_schema_load(path, &s, err, sizeof err), SYNC_OK, err))
        return;
    t = sync_schema_find(s, "items", 5);
    if (!CHECK(t != NULL)) {
        sync_schema_free(s);
        return;
    }

    v = v_int(3);
    CHECK_RC(sync_column_check(t, 2, &v, err, sizeof err), SYNC_OK, err);
    CHECK(v.type == SYNC_REAL && v.u.f == 3.0); /* converted in place */
    v = v_int(-9007199254740992LL);
    CHECK_RC(sync_column_check(t, 2, &v, err, sizeof err), SYNC_OK, err);
    CHECK(v.type == SYNC_REAL && v.u.f == -9007199254740992.0);
    v = v_real(2.5);
    CHECK_RC(sync_column_check(t, 2, &v, err, sizeof err), SYNC_OK, err);
    CHECK(v.type == SYNC_REAL && v.u.f == 2.5);
    /* SQLite keeps a NaN as NULL: refused; infinities are stored as they are. */
    v = v_real(NAN);
    CHECK_RC(sync_column_check(t, 2, &v, err, sizeof err), SYNC_ERR_SCHEMA, NULL);
    CHECK_HAS(err, "column 'price': NaN cannot be stored");
    v = v_real(-INFINITY);
    CHECK_RC(sync_column_check(t, 2, &v, err, sizeof err), SYNC_OK, err);
    v = v_int(7);
    CHECK_RC(sync_column_check(t, 3, &v, err, sizeof err), SYNC_OK, err);
    CHECK(v.type == SYNC_INT && v.u.i == 7); /* an integer column keeps the integer */
    v = v_int(1);
    CHECK_RC(sync_column_check(t, 0, &v, err, sizeof err), SYNC_OK, err);
    v = v_blob(b, sizeof b);
    CHECK_RC(sync_column_check(t, 4, &v, err, sizeof err), SYNC_OK, err);
    v = v_blob(NULL, 0);
    CHECK_RC(sync_column_check(t, 4, &v, err, sizeof err), SYNC_OK, err);

    v = v_null();
    CHECK_RC(sync_column_check(t, 5, &v, err, sizeof err), SYNC_OK, err);
    CHECK_RC(sync_column_check(t, 2, &v, err, sizeof err), SYNC_OK, err);
    strcpy(err, "");
    CHECK_RC(sync_column_check(t, 1, &v, err, sizeof err), SYNC_ERR_SCHEMA, err);
    CHECK_HAS(err, "'name'");
    CHECK_HAS(err, "NULL");
    strcpy(err, "");
    CHECK_RC(sync_column_check(t, 0, &v, err, sizeof err), SYNC_ERR_SCHEMA, err);
    CHECK_HAS(err, "'id'");

    v = v_real(1.0);
    CHECK_RC(sync_column_check(t, 3, &v, err, sizeof err), SYNC_ERR_SCHEMA, err);
    CHECK_HAS(err, "column 'qty': expected integer, got real");
    v = v_real(1.0);
    CHECK_RC(sync_column_check(t, 0, &v, err, sizeof err), SYNC_ERR_SCHEMA, err);
    v = v_text("5", 1);
    CHECK_RC(sync_column_check(t, 2, &v, err, sizeof err), SYNC_ERR_SCHEMA, err);
    CHECK_HAS(err, "column 'price': expected real, got text");
    v = v_text("ab", 2);
    CHECK_RC(sync_column_check(t, 4, &v, err, sizeof err), SYNC_ERR_SCHEMA, err);
    CHECK_HAS(err, "column 'photo': expected blob, got text");
    v = v_blob("ab", 2);
    CHECK_RC(sync_column_check(t, 5, &v, err, sizeof err), SYNC_ERR_SCHEMA, err);
    CHECK_HAS(err, "column 'note': expected text, got blob");
    v = v_int(1);
    CHECK_RC(sync_column_check(t, 1, &v, err, sizeof err), SYNC_ERR_SCHEMA, err);
    CHECK_HAS(err, "expected text, got integer");
    CHECK(v.type == SYNC_INT && v.u.i == 1); /* a refused value is left alone */

    for (i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        v = v_text(bad_utf8[i], strlen(bad_utf8[i]));
        strcpy(err, "");
        if (!CHECK_RC(sync_column_check(t, 5, &v, err, sizeof err), SYNC_ERR_SCHEMA, err))
            fprintf(stderr, "    (bad UTF-8 case %zu)\n", i);
        CHECK_HAS(err, "UTF-8");
    }
    for (i = 0; i < sizeof good_utf8 / sizeof good_utf8[0]; i++) {
        v = v_text(good_utf8[i], strlen(good_utf8[i]));
        if (!CHECK_RC(sync_column_check(t, 1, &v, err, sizeof err), SYNC_OK, err))
            fprintf(stderr, "    (good UTF-8 case %zu)\n", i);
    }
    /* The length is what counts: a NUL byte is valid UTF-8, a bad byte past n is not looked at. */
    v = v_text("a\0b", 3);
    CHECK_RC(sync_column_check(t, 5, &v, err, sizeof err), SYNC_OK, err);
    v = v_text("ab\xff", 2);
    CHECK_RC(sync_column_check(t, 5, &v, err, sizeof err), SYNC_OK, err);
    v = v_text(NULL, 0);
    CHECK_RC(sync_column_check(t, 1, &v, err, sizeof err), SYNC_OK, err);
    sync_schema_free(s);
}

/* ---- conf.c ---- */

#define LOG_MAX 32

/* What the config callback saw, in order. */
typedef struct conf_log {
    int n;
    char key[LOG_MAX][64];
    char value[LOG_MAX][256];
} conf_log;

/* Accepts every key except "bad" (refused with a message) and records the pairs. */
static int log_cb(void *ctx, const char *key, const char *value, char *err, size_t errlen)
{
    conf_log *l = ctx;

    if (strcmp(key, "bad") == 0)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Invalid bad value (%s): refused", value);
    if (l->n == LOG_MAX)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "too many keys");
    snprintf(l->key[l->n], sizeof l->key[0], "%s", key);
    snprintf(l->value[l->n], sizeof l->value[0], "%s", value);
    l->n++;
    return SYNC_OK;
}

/* The last value given for key, or NULL. */
static const char *log_get(const conf_log *l, const char *key)
{
    int i;

    for (i = l->n - 1; i >= 0; i--) {
        if (strcmp(l->key[i], key) == 0)
            return l->value[i];
    }
    return NULL;
}

static void test_conf_file(void)
{
    static const char text[] = "# broker settings\n"
                               "\n"
                               "   \t \n"
                               "port 1883\n"
                               "  host   example.org  \n"
                               "\t# an indented comment\n"
                               "name  a value with   inner spaces  \t\n"
                               "crlf yes\r\n"
                               "last no-newline";
    char path[1024], err[512] = "", *line, *p;
    conf_log l;
    size_t i;

    memset(&l, 0, sizeof l);
    if (!write_file(path, "a.conf", text, 0600))
        return;
    CHECK_RC(sync_conf_parse_file(path, log_cb, &l, err, sizeof err), SYNC_OK, err);
    CHECK(l.n == 5);
    CHECK_STR(l.key[0], "port");
    CHECK_STR(l.value[0], "1883");
    CHECK_STR(l.key[1], "host");
    CHECK_STR(l.value[1], "example.org");
    CHECK_STR(l.key[2], "name");
    CHECK_STR(l.value[2], "a value with   inner spaces");
    CHECK_STR(l.key[3], "crlf");
    CHECK_STR(l.value[3], "yes");
    CHECK_STR(l.key[4], "last");
    CHECK_STR(l.value[4], "no-newline");

    /* The callback's refusal is reported with the file and the line. */
    memset(&l, 0, sizeof l);
    if (write_file(path, "b.conf", "# c\nport 1\n\nbad 2\nport 3\n", 0600)) {
        char want[1100];

        CHECK_RC(sync_conf_parse_file(path, log_cb, &l, err, sizeof err), SYNC_ERR_INVAL, err);
        snprintf(want, sizeof want, "%s:4: ", path);
        CHECK(strncmp(err, want, strlen(want)) == 0);
        CHECK_HAS(err, "Invalid bad value (2): refused");
        CHECK(l.n == 1); /* stopped at the bad line */
    }

    tpath(path, "missing.conf");
    CHECK_RC(sync_conf_parse_file(path, log_cb, &l, err, sizeof err), SYNC_ERR_IO, err);
    CHECK_HAS(err, path);

    /* A line longer than the parser's buffer is refused, not split into two lines. */
    line = malloc(10000);
    if (CHECK(line != NULL)) {
        p = line + sprintf(line, "port 1\nname ");
        for (i = 0; i < 5000; i++)
            *p++ = 'x';
        strcpy(p, "\nport 2\n");
        memset(&l, 0, sizeof l);
        if (write_file(path, "long.conf", line, 0600)) {
            char want[1100];

            CHECK(sync_conf_parse_file(path, log_cb, &l, err, sizeof err) != SYNC_OK);
            snprintf(want, sizeof want, "%s:2: ", path);
            CHECK(strncmp(err, want, strlen(want)) == 0);
            CHECK(log_get(&l, "port") && strcmp(log_get(&l, "port"), "2") != 0);
        }
        free(line);
    }
}

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void test_conf_args(void)
{
    char path[1024], badpath[1024], missing[1024], err[512] = "";
    conf_log l;
    sync_args a;
    int rc;

    if (!write_file(path, "args.conf", "port 1883\nhost filehost\n", 0600) ||
        !write_file(badpath, "argsbad.conf", "port 1\nbad 1\n", 0600))
        return;
    tpath(missing, "nope.conf");

    /* -c is read first wherever it stands, so flags always win over the file. */
    {
        char *argv[] = {"prog", "--port", "9", "-c", path};

        memset(&l, 0, sizeof l);
        memset(&a, 0, sizeof a);
        a.help = a.version = 7;
        a.set = 99;
        CHECK_RC(sync_conf_parse_args(ARGC(argv), argv, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK_STR(log_get(&l, "port"), "9");
        CHECK_STR(log_get(&l, "host"), "filehost");
        CHECK_STR(l.key[0], "port");
        CHECK_STR(l.value[0], "1883"); /* the file came first */
        CHECK(a.help == 0 && a.version == 0 && a.set == 0);
    }
    {
        char *argv[] = {"prog", "--config", path, "--port=10", "--host", "arg-host"};

        memset(&l, 0, sizeof l);
        memset(&a, 0, sizeof a);
        CHECK_RC(sync_conf_parse_args(ARGC(argv), argv, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK_STR(log_get(&l, "port"), "10");
        CHECK_STR(log_get(&l, "host"), "arg-host");
        CHECK(l.n == 4);
    }
    /* Regression test (fixed bug): every option takes --key=value, but pass 1 of
     * sync_conf_parse_args only knows "-c FILE" and "--config FILE", so "--config=FILE" is not
     * loaded: it reaches the callback as the key "config" (an unknown key in the daemons). */
    {
        char opt[1100];
        char *argv[] = {"prog", "--port", "9", opt};

        snprintf(opt, sizeof opt, "--config=%s", path);
        memset(&l, 0, sizeof l);
        memset(&a, 0, sizeof a);
        rc = sync_conf_parse_args(ARGC(argv), argv, &a, log_cb, &l, err, sizeof err);
        CHECK_RC(rc, SYNC_OK, err);
        CHECK_STR(log_get(&l, "host"), "filehost");
        CHECK_STR(log_get(&l, "port"), "9");
        CHECK(log_get(&l, "config") == NULL);
    }
    /* Dashes become underscores; --k=v and --k v; a value may start with a dash or hold '='. */
    {
        char *argv[] = {"prog",        "--max-batch-size=500",
                        "--log-level", "info",
                        "--offset",    "-5",
                        "--url=a=b",   "--empty=",
                        "--a-b-c_d",   "x y"};

        memset(&l, 0, sizeof l);
        memset(&a, 0, sizeof a);
        CHECK_RC(sync_conf_parse_args(ARGC(argv), argv, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK_STR(log_get(&l, "max_batch_size"), "500");
        CHECK_STR(log_get(&l, "log_level"), "info");
        CHECK_STR(log_get(&l, "offset"), "-5");
        CHECK_STR(log_get(&l, "url"), "a=b");
        CHECK_STR(log_get(&l, "empty"), "");
        CHECK_STR(log_get(&l, "a_b_c_d"), "x y");
        CHECK(l.n == 6);
    }
    /* -v is log_level debug, and a later --log-level still overrides it (flags apply in order). */
    {
        char *argv[] = {"prog", "-v"};
        char *argv2[] = {"prog", "--verbose", "--log-level", "warning"};

        memset(&l, 0, sizeof l);
        memset(&a, 0, sizeof a);
        CHECK_RC(sync_conf_parse_args(ARGC(argv), argv, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK_STR(log_get(&l, "log_level"), "debug");
        memset(&l, 0, sizeof l);
        CHECK_RC(sync_conf_parse_args(ARGC(argv2), argv2, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK_STR(l.value[0], "debug");
        CHECK_STR(log_get(&l, "log_level"), "warning");
    }
    {
        char *argv[] = {"prog", "-h"};
        char *argv2[] = {"prog", "--help", "--version"};

        memset(&l, 0, sizeof l);
        memset(&a, 0, sizeof a);
        CHECK_RC(sync_conf_parse_args(ARGC(argv), argv, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK(a.help == 1 && a.version == 0 && l.n == 0);
        CHECK_RC(sync_conf_parse_args(ARGC(argv2), argv2, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK(a.help == 1 && a.version == 1 && l.n == 0);
    }
    /* Boolean flags take no value and set their bit; a prefix of a flag is not that flag. */
    {
        char *argv[] = {"prog", "--once", "--port", "5", "--checksum"};
        char *argv2[] = {"prog", "--dry-run"};
        char *argv3[] = {"prog", "--check"};

        memset(&l, 0, sizeof l);
        memset(&a, 0, sizeof a);
        a.flags = "checksum dry-run  once";
        CHECK_RC(sync_conf_parse_args(ARGC(argv), argv, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK(a.set == (1u | 4u));
        CHECK(l.n == 1);
        CHECK_STR(log_get(&l, "port"), "5");
        CHECK_RC(sync_conf_parse_args(ARGC(argv2), argv2, &a, log_cb, &l, err, sizeof err), SYNC_OK,
                 err);
        CHECK(a.set == 2u);
        CHECK_RC(sync_conf_parse_args(ARGC(argv3), argv3, &a, log_cb, &l, err, sizeof err),
                 SYNC_ERR_INVAL, err);
        a.flags = NULL; /* no flags at all: --dry-run is then a key that needs a value */
        CHECK_RC(sync_conf_parse_args(ARGC(argv2), argv2, &a, log_cb, &l, err, sizeof err),
                 SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "--dry-run");
    }
    /* Refusals. */
    {
        char *missing_value[] = {"prog", "--port"};
        char *missing_file[] = {"prog", "--port", "1", "-c"};
        char *positional[] = {"prog", "--port", "1", "extra"};
        char *short_opt[] = {"prog", "-x"};
        char *dashdash[] = {"prog", "--"};
        char *refused[] = {"prog", "--bad", "7"};
        char *bad_file[] = {"prog", "-c", badpath};
        char *no_file[] = {"prog", "-c", missing};

        memset(&a, 0, sizeof a);
        memset(&l, 0, sizeof l);
        strcpy(err, "");
        CHECK_RC(sync_conf_parse_args(ARGC(missing_value), missing_value, &a, log_cb, &l, err,
                                      sizeof err),
                 SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "--port");
        strcpy(err, "");
        CHECK_RC(
            sync_conf_parse_args(ARGC(missing_file), missing_file, &a, log_cb, &l, err, sizeof err),
            SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "-c");
        strcpy(err, "");
        CHECK_RC(
            sync_conf_parse_args(ARGC(positional), positional, &a, log_cb, &l, err, sizeof err),
            SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "extra");
        CHECK_RC(sync_conf_parse_args(ARGC(short_opt), short_opt, &a, log_cb, &l, err, sizeof err),
                 SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "-x");
        CHECK_RC(sync_conf_parse_args(ARGC(dashdash), dashdash, &a, log_cb, &l, err, sizeof err),
                 SYNC_ERR_INVAL, err);
        strcpy(err, "");
        CHECK_RC(sync_conf_parse_args(ARGC(refused), refused, &a, log_cb, &l, err, sizeof err),
                 SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "Invalid bad value (7)");
        strcpy(err, "");
        rc = sync_conf_parse_args(ARGC(bad_file), bad_file, &a, log_cb, &l, err, sizeof err);
        CHECK_RC(rc, SYNC_ERR_INVAL, err);
        CHECK_HAS(err, badpath);
        CHECK_HAS(err, ":2: ");
        rc = sync_conf_parse_args(ARGC(no_file), no_file, &a, log_cb, &l, err, sizeof err);
        CHECK_RC(rc, SYNC_ERR_IO, err);
    }
}

static void test_conf_typed(void)
{
    static const char *yes[] = {"true", "1", "yes", "on"};
    static const char *no[] = {"false", "0", "no", "off"};
    static const char *not_bool[] = {"", "maybe", "2", "truex", " true"};
    static const char *not_long[] = {"",
                                     "abc",
                                     "12abc",
                                     "1.5",
                                     "0x10",
                                     "5 ",
                                     "99999999999999999999999",
                                     "-99999999999999999999999"};
    static const char *not_double[] = {"", "abc", "1.5x", "nan", "inf", "-inf", "1e999", "--1"};
    char err[256] = "", *str = NULL;
    int b;
    long v;
    double d;
    size_t i;

    for (i = 0; i < 4; i++) {
        b = -1;
        CHECK_RC(sync_conf_bool("k", yes[i], &b, err, sizeof err), SYNC_OK, err);
        CHECK(b == 1);
        b = -1;
        CHECK_RC(sync_conf_bool("k", no[i], &b, err, sizeof err), SYNC_OK, err);
        CHECK(b == 0);
    }
    for (i = 0; i < sizeof not_bool / sizeof not_bool[0]; i++) {
        if (!CHECK_RC(sync_conf_bool("tls", not_bool[i], &b, err, sizeof err), SYNC_ERR_INVAL, err))
            fprintf(stderr, "    (value \"%s\")\n", not_bool[i]);
    }
    CHECK_HAS(err, "Invalid tls value ( true)");

    CHECK_RC(sync_conf_long("port", "42", 1, 65535, &v, err, sizeof err), SYNC_OK, err);
    CHECK(v == 42);
    CHECK_RC(sync_conf_long("port", "1", 1, 65535, &v, err, sizeof err), SYNC_OK, err);
    CHECK(v == 1);
    CHECK_RC(sync_conf_long("port", "65535", 1, 65535, &v, err, sizeof err), SYNC_OK, err);
    CHECK(v == 65535);
    CHECK_RC(sync_conf_long("n", "-7", -10, 10, &v, err, sizeof err), SYNC_OK, err);
    CHECK(v == -7);
    CHECK_RC(sync_conf_long("port", "0", 1, 65535, &v, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Invalid port value (0)");
    CHECK_RC(sync_conf_long("port", "65536", 1, 65535, &v, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "65535");
    CHECK_RC(sync_conf_long("n", "-11", -10, 10, &v, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_RC(sync_conf_long("n", "9223372036854775807", LONG_MIN, LONG_MAX, &v, err, sizeof err),
             SYNC_OK, err);
    CHECK(v == LONG_MAX);
    CHECK_RC(sync_conf_long("n", "-9223372036854775808", LONG_MIN, LONG_MAX, &v, err, sizeof err),
             SYNC_OK, err);
    CHECK(v == LONG_MIN);
    for (i = 0; i < sizeof not_long / sizeof not_long[0]; i++) {
        v = 12345;
        if (!CHECK_RC(sync_conf_long("n", not_long[i], LONG_MIN, LONG_MAX, &v, err, sizeof err),
                      SYNC_ERR_INVAL, err))
            fprintf(stderr, "    (value \"%s\")\n", not_long[i]);
        CHECK(v == 12345);
    }

    CHECK_RC(sync_conf_double("r", "0.5", 0, 1, &d, err, sizeof err), SYNC_OK, err);
    CHECK(d == 0.5);
    CHECK_RC(sync_conf_double("r", "1e3", 0, 1e6, &d, err, sizeof err), SYNC_OK, err);
    CHECK(d == 1000.0);
    CHECK_RC(sync_conf_double("r", "-2", -2, 2, &d, err, sizeof err), SYNC_OK, err);
    CHECK(d == -2.0);
    CHECK_RC(sync_conf_double("r", "1.0001", 0, 1, &d, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Invalid r value (1.0001)");
    CHECK_RC(sync_conf_double("r", "-0.1", 0, 1, &d, err, sizeof err), SYNC_ERR_INVAL, err);
    for (i = 0; i < sizeof not_double / sizeof not_double[0]; i++) {
        if (!CHECK_RC(sync_conf_double("r", not_double[i], -1e308, 1e308, &d, err, sizeof err),
                      SYNC_ERR_INVAL, err))
            fprintf(stderr, "    (value \"%s\")\n", not_double[i]);
    }

    CHECK_RC(sync_conf_str(&str, "first", err, sizeof err), SYNC_OK, err);
    CHECK_STR(str, "first");
    CHECK_RC(sync_conf_str(&str, "second", err, sizeof err), SYNC_OK, err); /* frees "first" */
    CHECK_STR(str, "second");
    free(str);
}

static void test_conf_secret(void)
{
    char path[1024], err[256] = "", buf[64];

    if (write_file(path, "pw1", "s3cret pass\nsecond line\n", 0600)) {
        memset(buf, 'z', sizeof buf);
        CHECK_RC(sync_conf_read_secret(path, buf, sizeof buf, err, sizeof err), SYNC_OK, err);
        CHECK_STR(buf, "s3cret pass");
    }
    if (write_file(path, "pw2", "crlf\r\n", 0640)) { /* group-readable is allowed */
        CHECK_RC(sync_conf_read_secret(path, buf, sizeof buf, err, sizeof err), SYNC_OK, err);
        CHECK_STR(buf, "crlf");
    }
    if (write_file(path, "pw3", "no newline", 0400)) {
        CHECK_RC(sync_conf_read_secret(path, buf, sizeof buf, err, sizeof err), SYNC_OK, err);
        CHECK_STR(buf, "no newline");
    }
    if (write_file(path, "pw4", "visible\n", 0644)) {
        strcpy(err, "");
        CHECK_RC(sync_conf_read_secret(path, buf, sizeof buf, err, sizeof err), SYNC_ERR_INVAL,
                 err);
        CHECK_HAS(err, path);
    }
    if (write_file(path, "pw5", "visible\n", 0604)) {
        CHECK_RC(sync_conf_read_secret(path, buf, sizeof buf, err, sizeof err), SYNC_ERR_INVAL,
                 err);
    }
    if (write_file(path, "pw6", "", 0600)) {
        strcpy(err, "");
        CHECK_RC(sync_conf_read_secret(path, buf, sizeof buf, err, sizeof err), SYNC_ERR_INVAL,
                 err);
        CHECK_HAS(err, "empty");
    }
    if (write_file(path, "pw7", "\nsecond\n", 0600)) {
        CHECK_RC(sync_conf_read_secret(path, buf, sizeof buf, err, sizeof err), SYNC_ERR_INVAL,
                 err);
    }
    /* Regression test (fixed bug): a first line longer than the buffer is silently cut to
     * n - 1 bytes today (fgets stops early), so a daemon would log in with the wrong password.
     * A secret that does not fit must be refused. */
    if (write_file(path, "pw8", "0123456789abcdef\n", 0600)) {
        char small[8];

        CHECK(sync_conf_read_secret(path, small, sizeof small, err, sizeof err) != SYNC_OK);
        CHECK_RC(sync_conf_read_secret(path, buf, 17, err, sizeof err), SYNC_OK, err);
        CHECK_STR(buf, "0123456789abcdef"); /* exactly fits with its NUL */
    }
    tpath(path, "pw-missing");
    strcpy(err, "");
    CHECK_RC(sync_conf_read_secret(path, buf, sizeof buf, err, sizeof err), SYNC_ERR_IO, err);
    CHECK_HAS(err, path);
}

/* ---- topic.c ---- */

enum { T_DEV, T_DELTA, T_EVENT, T_ROW };

static int build_topic(int kind, char *buf, size_t n, const char *a, const char *b, const char *c,
                       const sync_value *key)
{
    switch (kind) {
    case T_DEV:
        return sync_topic_dev(buf, n, a, b, c);
    case T_DELTA:
        return sync_topic_delta(buf, n, a, b);
    case T_EVENT:
        return sync_topic_event(buf, n, a, b);
    default:
        return sync_topic_row(buf, n, a, b, key);
    }
}

#define TOPIC_BUF (SYNC_TOPIC_MAX + 64)
#define CANARY 0xA5

/* Builds the topic with every buffer size from 0 to strlen(want) + 1 and a large one: each
 * size too small must give NOSPACE, the exact size and the large one the string want, and no
 * size may write a byte at or past buf[n]. */
static void expect_topic(int kind, const char *a, const char *b, const char *c,
                         const sync_value *key, const char *want, int at)
{
    unsigned char big[TOPIC_BUF];
    size_t len = strlen(want), n, k;
    int rc, bad_n = -1, over_n = -1;

    for (n = 0; n <= len + 1; n++) {
        memset(big, CANARY, sizeof big);
        rc = build_topic(kind, (char *)big, n, a, b, c, key);
        if ((n <= len && rc != SYNC_ERR_NOSPACE) ||
            (n == len + 1 && (rc != SYNC_OK || strcmp((char *)big, want) != 0)))
            bad_n = bad_n < 0 ? (int)n : bad_n;
        for (k = n; k < sizeof big; k++) {
            if (big[k] != CANARY) {
                over_n = over_n < 0 ? (int)n : over_n;
                break;
            }
        }
    }
    memset(big, CANARY, sizeof big);
    rc = build_topic(kind, (char *)big, sizeof big - 1, a, b, c, key);
    checks += 3;
    if (rc != SYNC_OK || strcmp((char *)big, want) != 0) {
        failures++;
        fprintf(stderr, "%s:%d: topic is \"%.*s\" (rc %d), expected \"%s\"\n", __FILE__, at,
                (int)(sizeof big - 1), (char *)big, rc, want);
    }
    if (bad_n >= 0) {
        failures++;
        fprintf(stderr, "%s:%d: topic \"%s\" with a %d-byte buffer: wrong result\n", __FILE__, at,
                want, bad_n);
    }
    if (over_n >= 0) {
        failures++;
        fprintf(stderr, "%s:%d: topic \"%s\" with a %d-byte buffer: wrote past the buffer\n",
                __FILE__, at, want, over_n);
    }
}

static void expect_row(const sync_value *key, const char *want_key, int at)
{
    char want[TOPIC_BUF];

    snprintf(want, sizeof want, "sync/acme/rows/items/%s", want_key);
    expect_topic(T_ROW, "acme", "items", NULL, key, want, at);
}

static void test_topic_build(void)
{
    static const uint8_t blob[] = {0x00, 0xff, 0x10, 0xab};
    sync_value k;
    char buf[TOPIC_BUF], longkey[300], longwant[TOPIC_BUF];
    size_t i;

    expect_topic(T_DEV, "acme", "dev-1", "up", NULL, "sync/acme/dev/dev-1/up", __LINE__);
    expect_topic(T_DEV, "t.1", "D_9", "state", NULL, "sync/t.1/dev/D_9/state", __LINE__);
    expect_topic(T_DELTA, "acme", "items", NULL, NULL, "sync/acme/delta/items", __LINE__);
    expect_topic(T_EVENT, "acme", "conflict", NULL, NULL, "sync/acme/events/conflict", __LINE__);

    k = v_int(42);
    expect_row(&k, "42", __LINE__);
    k = v_int(0);
    expect_row(&k, "0", __LINE__);
    k = v_int(-7);
    expect_row(&k, "-7", __LINE__);
    k = v_int(INT64_MIN);
    expect_row(&k, "-9223372036854775808", __LINE__);
    k = v_int(INT64_MAX);
    expect_row(&k, "9223372036854775807", __LINE__);

    k = v_text("abc", 3);
    expect_row(&k, "abc", __LINE__);
    k = v_text("AZaz09_.~-", 10);
    expect_row(&k, "AZaz09_.~-", __LINE__);
    k = v_text("a b", 3);
    expect_row(&k, "a%20b", __LINE__);
    k = v_text("a/b", 3);
    expect_row(&k, "a%2Fb", __LINE__);
    k = v_text("+", 1);
    expect_row(&k, "%2B", __LINE__);
    k = v_text("#", 1);
    expect_row(&k, "%23", __LINE__);
    k = v_text("%", 1);
    expect_row(&k, "%25", __LINE__);
    k = v_text("100%", 4);
    expect_row(&k, "100%25", __LINE__);
    k = v_text("h\xc3\xa9", 3);
    expect_row(&k, "h%C3%A9", __LINE__);
    k = v_text("a\0b", 3);
    expect_row(&k, "a%00b", __LINE__);
    k = v_text("$SYS\n", 5);
    expect_row(&k, "%24SYS%0A", __LINE__);
    k = v_text("", 0);
    expect_row(&k, "%", __LINE__);
    k = v_text(NULL, 0);
    expect_row(&k, "%", __LINE__);
    k = v_blob(blob, sizeof blob);
    expect_row(&k, "x00FF10AB", __LINE__);
    k = v_blob(NULL, 0);
    expect_row(&k, "x", __LINE__);
    k = v_blob("%", 1);
    expect_row(&k, "x25", __LINE__);

    /* A key that only fits when every byte needs escaping is counted as three bytes each. */
    memset(longkey, '/', 150);
    k = v_text(longkey, 150);
    strcpy(longwant, "");
    for (i = 0; i < 150; i++)
        strcat(longwant, "%2F");
    expect_row(&k, longwant, __LINE__);

    /* Only integer, text and blob keys exist. */
    k = v_null();
    CHECK(sync_topic_row(buf, sizeof buf, "acme", "items", &k) != SYNC_OK);
    k = v_real(1.5);
    CHECK(sync_topic_row(buf, sizeof buf, "acme", "items", &k) != SYNC_OK);
}

static void test_topic_ids(void)
{
    char id[80];

    memset(id, 'a', sizeof id);
    CHECK(!sync_id_valid("", 0));
    CHECK(!sync_id_valid(NULL, 0));
    CHECK(sync_id_valid("a", 1));
    CHECK(sync_id_valid("AZaz09_.-", 9));
    CHECK(sync_id_valid(id, SYNC_MAX_ID));
    CHECK(!sync_id_valid(id, SYNC_MAX_ID + 1));
    CHECK(sync_id_valid("abc/", 3)); /* only len bytes are looked at */
    CHECK(!sync_id_valid("a/b", 3));
    CHECK(!sync_id_valid("a+b", 3));
    CHECK(!sync_id_valid("a#b", 3));
    CHECK(!sync_id_valid("a b", 3));
    CHECK(!sync_id_valid("a\0b", 3));
    CHECK(!sync_id_valid("$SYS", 4));
    CHECK(!sync_id_valid("h\xc3\xa9", 3));
    CHECK(!sync_id_valid("a~b", 3)); /* ~ is allowed in row keys, not in ids */
    CHECK(!sync_id_valid("a%b", 3));
}

/* Expects topic to be refused by sync_topic_parse_dev. */
static void parse_bad(const char *topic, int at)
{
    char tenant[SYNC_MAX_ID + 1], device[SYNC_MAX_ID + 1];
    const char *leaf = NULL;
    int rc = sync_topic_parse_dev(topic, tenant, device, &leaf);

    checks++;
    if (rc != SYNC_ERR_TOPIC) {
        failures++;
        fprintf(stderr, "%s:%d: sync_topic_parse_dev(\"%s\") returned %d, expected %d\n", __FILE__,
                at, topic, rc, SYNC_ERR_TOPIC);
    }
}

static void test_topic_parse(void)
{
    /* Output buffers of exactly SYNC_MAX_ID + 1 bytes followed by a canary. */
    struct {
        char tenant[SYNC_MAX_ID + 1];
        char canary1[8];
        char device[SYNC_MAX_ID + 1];
        char canary2[8];
    } o;
    char topic[400], id64[SYNC_MAX_ID + 1], id65[SYNC_MAX_ID + 2];
    const char *leaf = NULL;
    int rc;

    memset(id64, 't', SYNC_MAX_ID);
    id64[SYNC_MAX_ID] = '\0';
    memset(id65, 'u', SYNC_MAX_ID + 1);
    id65[SYNC_MAX_ID + 1] = '\0';

    snprintf(topic, sizeof topic, "sync/acme/dev/dev-1/up");
    rc = sync_topic_parse_dev(topic, o.tenant, o.device, &leaf);
    CHECK_RC(rc, SYNC_OK, NULL);
    if (rc == SYNC_OK) {
        CHECK_STR(o.tenant, "acme");
        CHECK_STR(o.device, "dev-1");
        CHECK(leaf == topic + strlen("sync/acme/dev/dev-1/"));
        CHECK_STR(leaf, "up");
    }

    snprintf(topic, sizeof topic, "sync/%s/dev/%s/state", id64, id64);
    memset(&o, CANARY, sizeof o);
    rc = sync_topic_parse_dev(topic, o.tenant, o.device, &leaf);
    CHECK_RC(rc, SYNC_OK, NULL);
    if (rc == SYNC_OK) {
        CHECK_STR(o.tenant, id64);
        CHECK_STR(o.device, id64);
        CHECK_STR(leaf, "state");
    }
    CHECK(memcmp(o.canary1, "\xA5\xA5\xA5\xA5\xA5\xA5\xA5\xA5", 8) == 0);
    CHECK(memcmp(o.canary2, "\xA5\xA5\xA5\xA5\xA5\xA5\xA5\xA5", 8) == 0);

    parse_bad("", __LINE__);
    parse_bad("sync", __LINE__);
    parse_bad("sync/", __LINE__);
    parse_bad("sync/acme", __LINE__);
    parse_bad("sync/acme/", __LINE__);
    parse_bad("sync/acme/dev", __LINE__);
    parse_bad("sync/acme/dev/", __LINE__);
    parse_bad("sync/acme/dev/d1", __LINE__);
    parse_bad("sync/acme/dev/d1/", __LINE__);     /* empty leaf */
    parse_bad("sync/acme/dev/d1/up/x", __LINE__); /* extra level */
    parse_bad("sync/acme/dev/d1/up/", __LINE__);  /* extra empty level */
    parse_bad("Sync/acme/dev/d1/up", __LINE__);   /* wrong prefix */
    parse_bad("/sync/acme/dev/d1/up", __LINE__);  /* wrong prefix */
    parse_bad("syncx/acme/dev/d1/up", __LINE__);  /* wrong prefix */
    parse_bad("other/acme/dev/d1/up", __LINE__);  /* wrong prefix */
    parse_bad("sync/acme/devs/d1/up", __LINE__);  /* wrong kind */
    parse_bad("sync/acme/delta/items", __LINE__); /* wrong kind */
    parse_bad("sync//dev/d1/up", __LINE__);       /* empty tenant */
    parse_bad("sync/acme/dev//up", __LINE__);     /* empty device */
    parse_bad("sync/ac me/dev/d1/up", __LINE__);  /* invalid tenant */
    parse_bad("sync/+/dev/d1/up", __LINE__);      /* wildcard tenant */
    parse_bad("sync/acme/dev/#/up", __LINE__);    /* wildcard device */
    parse_bad("sync/acme/dev/d+1/up", __LINE__);  /* invalid device */
    parse_bad("sync/acme/dev/d\xc3\xa9/up", __LINE__);
    snprintf(topic, sizeof topic, "sync/%s/dev/d1/up", id65);
    parse_bad(topic, __LINE__);
    snprintf(topic, sizeof topic, "sync/acme/dev/%s/up", id65);
    parse_bad(topic, __LINE__);

    CHECK_STR(sync_topic_after_tenant("sync/acme/delta/items", "acme"), "delta/items");
    CHECK_STR(sync_topic_after_tenant("sync/acme/", "acme"), "");
    CHECK(sync_topic_after_tenant("sync/acme2/delta/items", "acme") == NULL);
    CHECK(sync_topic_after_tenant("sync/acm/delta/items", "acme") == NULL);
    CHECK(sync_topic_after_tenant("sync/acme", "acme") == NULL);
    CHECK(sync_topic_after_tenant("sync/", "acme") == NULL);
    CHECK(sync_topic_after_tenant("", "acme") == NULL);
    CHECK(sync_topic_after_tenant("snyc/acme/delta", "acme") == NULL);
    CHECK(sync_topic_after_tenant("xsync/acme/delta", "acme") == NULL);
}

/* ---- hlc.c ---- */

static void test_hlc(void)
{
    sync_hlc c = {0};
    uint64_t t1, t2, t3, t4, t5, prev, now, w1, w2, remote;
    int i, mono = 1;

    t1 = sync_hlc_tick(&c, 1000);
    CHECK(t1 == (uint64_t)1000 << 16);
    CHECK(SYNC_HLC_MS(t1) == 1000);
    t2 = sync_hlc_tick(&c, 1000); /* the wall clock stalls */
    CHECK(t2 > t1);
    CHECK(SYNC_HLC_MS(t2) == 1000);
    t3 = sync_hlc_tick(&c, 400); /* and steps back */
    CHECK(t3 > t2);
    CHECK(SYNC_HLC_MS(t3) == 1000);
    t4 = sync_hlc_tick(&c, 1001); /* and catches up */
    CHECK(t4 > t3);
    CHECK(t4 == (uint64_t)1001 << 16);
    CHECK(c.last == t4);

    /* A long stall overflows the 16-bit counter into the next millisecond: still increasing. */
    prev = t4;
    for (i = 0; i < 70000; i++) {
        now = sync_hlc_tick(&c, 1001);
        if (now <= prev)
            mono = 0;
        prev = now;
    }
    CHECK(mono);
    CHECK(SYNC_HLC_MS(prev) == 1002);

    /* A timestamp seen from elsewhere, far ahead of our clock, bounds all later ticks. */
    remote = ((uint64_t)5000 << 16) | 7;
    sync_hlc_observe(&c, remote);
    t5 = sync_hlc_tick(&c, 1003);
    CHECK(t5 > remote);
    CHECK(SYNC_HLC_MS(t5) == 5000);
    sync_hlc_observe(&c, (uint64_t)10 << 16); /* an old one changes nothing */
    now = sync_hlc_tick(&c, 1004);
    CHECK(now > t5);
    CHECK(SYNC_HLC_MS(now) == 5000);
    CHECK(sync_hlc_tick(&c, 6000) == (uint64_t)6000 << 16);

    CHECK(SYNC_HLC_MS(((uint64_t)123 << 16) | 0xFFFF) == 123);
    CHECK(SYNC_HLC_MS((uint64_t)0xFFFF) == 0);

    w1 = sync_wall_ms();
    w2 = sync_wall_ms();
    CHECK(w1 > 1577836800000ull); /* after 2020-01-01 */
    CHECK(w1 < 4102444800000ull); /* before 2100-01-01 */
    CHECK(w2 >= w1);
    c.last = 0;
    CHECK(SYNC_HLC_MS(sync_hlc_tick(&c, w1)) == w1);
}

/* ---- json.c ---- */

/* Renders one value alone into out (cap bytes) and returns out; "(overflow)" if it did not fit. */
static const char *json_of(const sync_value *v, char *out, size_t cap)
{
    sync_json j;

    sync_json_init(&j, out, cap);
    sync_json_value(&j, v);
    return sync_json_ok(&j) ? out : "(overflow)";
}

/* The document the overflow test writes at every buffer size. */
static void json_doc(sync_json *j)
{
    static const uint8_t blob[] = {0xde, 0xad, 0x00, 0x0f};
    sync_value v;

    sync_json_begin(j);
    sync_json_key(j, "a");
    sync_json_i64(j, -5);
    sync_json_key(j, "s");
    sync_json_cstr(j, "q\"b\\s\n\t\x01\x1f\x7f\xc3\xa9");
    sync_json_key(j, "u");
    sync_json_u64(j, UINT64_MAX);
    sync_json_key(j, "t");
    sync_json_bool(j, 1);
    sync_json_key(j, "f");
    sync_json_bool(j, 0);
    sync_json_key(j, "o");
    sync_json_begin(j);
    sync_json_key(j, "x");
    v = v_real(3.0);
    sync_json_value(j, &v);
    sync_json_key(j, "e");
    sync_json_begin(j);
    sync_json_end(j);
    sync_json_end(j);
    sync_json_key(j, "n");
    v = v_null();
    sync_json_value(j, &v);
    sync_json_key(j, "b");
    v = v_blob(blob, sizeof blob);
    sync_json_value(j, &v);
    sync_json_key(j, "k\"ey");
    sync_json_str(j, "ab\0c", 4);
    sync_json_key(j, "raw");
    sync_json_raw(j, "[1,2]");
    sync_json_end(j);
}

static const char json_want[] = "{\"a\":-5,"
                                "\"s\":\"q\\\"b\\\\s\\u000a\\u0009\\u0001\\u001f\x7f\xc3\xa9\","
                                "\"u\":18446744073709551615,"
                                "\"t\":true,"
                                "\"f\":false,"
                                "\"o\":{\"x\":3.0,\"e\":{}},"
                                "\"n\":null,"
                                "\"b\":\"x'DEAD000F'\","
                                "\"k\\\"ey\":\"ab\\u0000c\","
                                "\"raw\":[1,2]}";

static void test_json(void)
{
    static const double reals[] = {
        3.0, -2.5, 0.1, 1e300, 1e22, -1e-300, 123456789.0, 0.0, 4503599627370497.0};
    char out[256], big[512];
    sync_json j;
    sync_value v;
    size_t i, n, len = strlen(json_want), k;
    int bad_n = -1, over_n = -1;

    sync_json_init(&j, out, sizeof out);
    json_doc(&j);
    CHECK(sync_json_ok(&j));
    CHECK_STR(out, json_want);
    CHECK(j.len == len);

    sync_json_init(&j, out, sizeof out);
    sync_json_begin(&j);
    sync_json_end(&j);
    CHECK_STR(out, "{}");

    v = v_real(3.0);
    CHECK_STR(json_of(&v, out, sizeof out), "3.0");
    v = v_real(-2.5);
    CHECK_STR(json_of(&v, out, sizeof out), "-2.5");
    v = v_real(0.1);
    CHECK_STR(json_of(&v, out, sizeof out), "0.1"); /* the shortest form that reads back exactly */
    v = v_real(0.1 + 0.2);
    CHECK_STR(json_of(&v, out, sizeof out), "0.30000000000000004");
    /* Every finite real reads back exactly and never looks like an integer. */
    for (i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        v = v_real(reals[i]);
        json_of(&v, out, sizeof out);
        if (!CHECK(strpbrk(out, ".eE") != NULL && strtod(out, NULL) == reals[i]))
            fprintf(stderr, "    (%.17g printed as \"%s\")\n", reals[i], out);
    }
    v = v_real(INFINITY);
    CHECK_STR(json_of(&v, out, sizeof out), "null");
    v = v_real(-INFINITY);
    CHECK_STR(json_of(&v, out, sizeof out), "null");
    v = v_real(NAN);
    CHECK_STR(json_of(&v, out, sizeof out), "null");
    v = v_int(INT64_MIN);
    CHECK_STR(json_of(&v, out, sizeof out), "-9223372036854775808");
    v = v_int(42);
    CHECK_STR(json_of(&v, out, sizeof out), "42");
    v = v_text("h\xc3\xa9", 3);
    CHECK_STR(json_of(&v, out, sizeof out), "\"h\xc3\xa9\"");
    v = v_text(NULL, 0);
    CHECK_STR(json_of(&v, out, sizeof out), "\"\"");
    v = v_blob(NULL, 0);
    CHECK_STR(json_of(&v, out, sizeof out), "\"x''\"");
    v = v_null();
    CHECK_STR(json_of(&v, out, sizeof out), "null");

    /* Every buffer too small is reported, never written past, and stays NUL-terminated. */
    for (n = 0; n <= len + 1; n++) {
        memset(big, CANARY, sizeof big);
        sync_json_init(&j, big, n);
        json_doc(&j);
        if (n <= len) {
            if (sync_json_ok(&j) || (n > 0 && memchr(big, '\0', n) == NULL))
                bad_n = bad_n < 0 ? (int)n : bad_n;
        } else if (!sync_json_ok(&j) || strcmp(big, json_want) != 0) {
            bad_n = bad_n < 0 ? (int)n : bad_n;
        }
        for (k = n; k < sizeof big; k++) {
            if ((unsigned char)big[k] != CANARY) {
                over_n = over_n < 0 ? (int)n : over_n;
                break;
            }
        }
    }
    if (!CHECK(bad_n < 0))
        fprintf(stderr, "    (first wrong result with a %d-byte buffer)\n", bad_n);
    if (!CHECK(over_n < 0))
        fprintf(stderr, "    (wrote past a %d-byte buffer)\n", over_n);

    /* Once overflowed, later small writes that would fit are not appended. */
    memset(big, CANARY, sizeof big);
    sync_json_init(&j, big, 8);
    sync_json_raw(&j, "{\"a\":");
    sync_json_raw(&j, "\"too long\"");
    sync_json_raw(&j, "1");
    CHECK(!sync_json_ok(&j));
    CHECK_STR(big, "{\"a\":");
}

/* ---- checksum.c ---- */

static const char cks_schema[] = "version 1\n"
                                 "table a\n"
                                 "column id integer key\n"
                                 "column price real\n"
                                 "column name text\n"
                                 "column data blob\n"
                                 "table b\n"
                                 "column id integer key\n"
                                 "column price real\n"
                                 "column name text\n"
                                 "column data blob\n"
                                 "table c\n"
                                 "column id integer key\n"
                                 "column price real\n"
                                 "column name text\n"
                                 "column data blob\n"
                                 "table z1\n"
                                 "column id integer key\n"
                                 "column price real\n"
                                 "table z2\n"
                                 "column id integer key\n"
                                 "column price real\n"
                                 "table k1\n"
                                 "column k text key\n"
                                 "column v integer\n"
                                 "table k2\n"
                                 "column k text key\n"
                                 "column v integer\n"
                                 "table k3\n"
                                 "column k text key\n"
                                 "column v integer\n"
                                 "table empty\n"
                                 "column id integer key\n"
                                 "table missing\n"
                                 "column id integer key\n";

/* Table a declares price REAL, so SQLite stores 3 as a real; table b gives price no type, so
 * SQLite keeps what it is given: the integer 3. b's rows are inserted in another order. */
static const char cks_sql[] =
    "CREATE TABLE a(id INTEGER PRIMARY KEY, price REAL, name TEXT, data BLOB);"
    "CREATE TABLE b(id INTEGER PRIMARY KEY, price, name TEXT, data BLOB);"
    "CREATE TABLE c(id INTEGER PRIMARY KEY, price REAL, name TEXT, data BLOB);"
    "CREATE TABLE empty(id INTEGER PRIMARY KEY);"
    "INSERT INTO a VALUES(1, 3.0, 'x', x'41');"
    "INSERT INTO a VALUES(2, 2.5, NULL, NULL);"
    "INSERT INTO a VALUES(3, -1.0, '', x'');"
    "INSERT INTO a VALUES(4, NULL, 'ab', NULL);"
    "INSERT INTO b VALUES(4, NULL, 'ab', NULL);"
    "INSERT INTO b VALUES(3, -1, '', x'');"
    "INSERT INTO b VALUES(1, 3, 'x', x'41');"
    "INSERT INTO b VALUES(2, 2.5, NULL, NULL);"
    "INSERT INTO c SELECT * FROM a WHERE id <= 2;"
    "CREATE TABLE z1(id INTEGER PRIMARY KEY, price REAL);"
    "CREATE TABLE z2(id INTEGER PRIMARY KEY, price);"
    "INSERT INTO z1 VALUES(1, -0.0);"
    "INSERT INTO z2 VALUES(1, -0.0);"
    "CREATE TABLE k1(k TEXT PRIMARY KEY COLLATE NOCASE, v INTEGER);"
    "CREATE TABLE k2(k TEXT PRIMARY KEY, v INTEGER);"
    "INSERT INTO k1 VALUES('B', 1), ('a', 2);"
    "INSERT INTO k2 VALUES('B', 1), ('a', 2);"
    "CREATE TABLE k3(k TEXT PRIMARY KEY, v INTEGER);"
    "INSERT INTO k3 VALUES('a', 2), ('B', 1);";

typedef struct cks_ctx {
    sqlite3 *db;
    sync_schema *s;
    char a[65]; /* checksum of table a */
} cks_ctx;

/* Checksums table `name`; returns SYNC_OK or the error, hex and rows filled on success. */
static int cks(cks_ctx *x, const char *name, const char *where, char hex[65], long long *rows)
{
    char err[256] = "";
    const sync_table *t = sync_schema_find(x->s, name, strlen(name));
    int rc;

    if (!t)
        return SYNC_ERR_SCHEMA;
    rc = sync_checksum_table(x->db, t, where, hex, rows, err, sizeof err);
    if (rc != SYNC_OK && rc != SYNC_ERR_DB)
        fprintf(stderr, "checksum of %s: %s\n", name, err);
    return rc;
}

/* Applies sql to table b inside a savepoint, checks that b's checksum now differs from a's
 * (or equals it when same != 0), and undoes the change. */
static void cks_mutation(cks_ctx *x, const char *sql, int same, long long want_rows, int at)
{
    char hex[65] = "", err[256] = "";
    long long rows = -1;
    int rc;

    if (sync_sql_exec(x->db, "SAVEPOINT m", "savepoint", err, sizeof err) != SYNC_OK ||
        sync_sql_exec(x->db, sql, sql, err, sizeof err) != SYNC_OK) {
        checks++;
        failures++;
        fprintf(stderr, "%s:%d: %s\n", __FILE__, at, err);
        return;
    }
    rc = cks(x, "b", NULL, hex, &rows);
    checks++;
    if (rc != SYNC_OK || (strcmp(hex, x->a) == 0) != same || rows != want_rows) {
        failures++;
        fprintf(stderr, "%s:%d: after \"%s\": rc %d, rows %lld (want %lld), checksum %s %s %s\n",
                __FILE__, at, sql, rc, rows, want_rows, hex, same ? "should equal" : "equals",
                x->a);
    }
    sync_sql_exec(x->db, "ROLLBACK TO m; RELEASE m", "rollback", err, sizeof err);
}

static int is_hex64(const char *h)
{
    size_t i;

    for (i = 0; i < 64; i++) {
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return 0;
    }
    return h[64] == '\0';
}

static void test_checksum(void)
{
    char path[1024], err[256] = "", hb[65] = "", hc[65] = "", hw[65] = "", he[65] = "";
    cks_ctx x;
    long long rows = -1, rb = -1, rc_rows = -1, rw = -1;
    sqlite3_stmt *st = NULL;
    int i;

    memset(&x, 0, sizeof x);
    if (!write_file(path, "cks.schema", cks_schema, 0600))
        return;
    if (!CHECK_RC(sync_schema_load(path, &x.s, err, sizeof err), SYNC_OK, err))
        return;
    if (!CHECK(sqlite3_open_v2(tpath(path, "cks.db"), &x.db,
                               SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK) ||
        !CHECK_RC(sync_sql_exec(x.db, cks_sql, "setup", err, sizeof err), SYNC_OK, err))
        goto out;

    /* The test means something only if SQLite really stored an integer in b and a real in a. */
    CHECK(sqlite3_prepare_v2(x.db,
                             "SELECT (SELECT typeof(price) FROM a WHERE id = 1) || ' ' || "
                             "(SELECT typeof(price) FROM b WHERE id = 1)",
                             -1, &st, NULL) == SQLITE_OK);
    if (st) {
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(st, 0), "real integer");
        sqlite3_finalize(st);
    }

    CHECK_RC(cks(&x, "a", NULL, x.a, &rows), SYNC_OK, NULL);
    CHECK(is_hex64(x.a));
    CHECK(rows == 4);
    CHECK_RC(cks(&x, "b", NULL, hb, &rb), SYNC_OK, NULL);
    CHECK(rb == 4);
    CHECK_STR(hb, x.a); /* 3 and 3.0 in a real column, and insertion order, do not matter */

    /* Each of these changes one thing about b and must change its checksum. */
    cks_mutation(&x, "UPDATE b SET price = 3.5 WHERE id = 1", 0, 4, __LINE__);
    cks_mutation(&x, "UPDATE b SET price = 4 WHERE id = 1", 0, 4, __LINE__);
    cks_mutation(&x, "UPDATE b SET price = 3.0 WHERE id = 1", 1, 4, __LINE__);
    cks_mutation(&x, "UPDATE b SET price = -1.0 WHERE id = 3", 1, 4, __LINE__);
    cks_mutation(&x, "UPDATE b SET price = NULL WHERE id = 1", 0, 4, __LINE__);
    cks_mutation(&x, "UPDATE b SET name = 'y' WHERE id = 1", 0, 4, __LINE__);
    cks_mutation(&x, "INSERT INTO b VALUES(5, 1.0, 'z', NULL)", 0, 5, __LINE__);
    cks_mutation(&x, "INSERT INTO b VALUES(0, NULL, NULL, NULL)", 0, 5, __LINE__);
    cks_mutation(&x, "DELETE FROM b WHERE id = 2", 0, 3, __LINE__);
    cks_mutation(&x, "UPDATE b SET id = 5 WHERE id = 1", 0, 4, __LINE__);
    cks_mutation(&x, "UPDATE b SET name = '' WHERE id = 2", 0, 4, __LINE__);    /* NULL -> '' */
    cks_mutation(&x, "UPDATE b SET name = NULL WHERE id = 3", 0, 4, __LINE__);  /* '' -> NULL */
    cks_mutation(&x, "UPDATE b SET data = NULL WHERE id = 3", 0, 4, __LINE__);  /* x'' -> NULL */
    cks_mutation(&x, "UPDATE b SET data = 'A' WHERE id = 1", 0, 4, __LINE__);   /* blob -> text */
    cks_mutation(&x, "UPDATE b SET name = x'78' WHERE id = 1", 0, 4, __LINE__); /* text -> blob */
    /* The same bytes moved to the neighbouring column. */
    cks_mutation(&x, "UPDATE b SET name = NULL, data = 'ab' WHERE id = 4", 0, 4, __LINE__);

    /* where filters rows: a restricted to ids 1 and 2 hashes like c, which holds just those. */
    CHECK_RC(cks(&x, "a", "id <= 2", hw, &rw), SYNC_OK, NULL);
    CHECK(rw == 2);
    CHECK_RC(cks(&x, "c", NULL, hc, &rc_rows), SYNC_OK, NULL);
    CHECK(rc_rows == 2);
    CHECK_STR(hw, hc);
    CHECK(strcmp(hw, x.a) != 0);
    CHECK_RC(cks(&x, "a", "id > 100", hw, &rw), SYNC_OK, NULL);
    CHECK(rw == 0);

    /* No rows: SHA-256 of nothing. */
    CHECK_RC(cks(&x, "empty", NULL, he, &rows), SYNC_OK, NULL);
    CHECK(rows == 0);
    CHECK_STR(he, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK_STR(hw, he);

    /* Errors come back as SYNC_ERR_DB with a message naming the table. */
    {
        const sync_table *t = sync_schema_find(x.s, "missing", 7);
        char hex[65];

        strcpy(err, "");
        if (CHECK(t != NULL)) {
            CHECK_RC(sync_checksum_table(x.db, t, NULL, hex, &rows, err, sizeof err), SYNC_ERR_DB,
                     err);
            CHECK_HAS(err, "missing");
        }
        t = sync_schema_find(x.s, "a", 1);
        strcpy(err, "");
        CHECK_RC(sync_checksum_table(x.db, t, "no_such_column = 1", hex, &rows, err, sizeof err),
                 SYNC_ERR_DB, err);
        CHECK_HAS(err, "no_such_column");
    }

    /* Rows are hashed in key order, not in the order they were stored. */
    CHECK_RC(cks(&x, "k2", NULL, hb, &rb), SYNC_OK, NULL);
    CHECK_RC(cks(&x, "k3", NULL, hc, &rc_rows), SYNC_OK, NULL);
    CHECK(rb == 2 && rc_rows == 2);
    CHECK_STR(hc, hb);

    /* Regression test (fixed bug): a REAL column makes SQLite store -0.0 as 0.0, a column
     * without a declared type keeps -0.0; checksum.c hashes the raw bits, so two replicas that
     * hold the same value (-0.0 = 0.0 in SQL) get different checksums. Normalising -0.0 to 0.0
     * before hashing would fix it. */
    CHECK_RC(cks(&x, "z1", NULL, hb, &rb), SYNC_OK, NULL);
    CHECK_RC(cks(&x, "z2", NULL, hc, &rc_rows), SYNC_OK, NULL);
    CHECK_STR(hc, hb);

    /* Regression test (fixed bug): rows are read "ORDER BY key" with the column's own collation,
     * so an edge table whose text key is declared COLLATE NOCASE (edgedb.c accepts existing
     * tables) reads 'a' before 'B' where the cloud reads 'B' before 'a': same rows, different
     * checksums. "ORDER BY key COLLATE BINARY" would fix it. */
    CHECK_RC(cks(&x, "k1", NULL, hb, &rb), SYNC_OK, NULL);
    CHECK_RC(cks(&x, "k2", NULL, hc, &rc_rows), SYNC_OK, NULL);
    CHECK_STR(hc, hb);

    /* The checksum is stable: the same table twice gives the same digest. */
    for (i = 0; i < 2; i++) {
        CHECK_RC(cks(&x, "b", NULL, hb, &rb), SYNC_OK, NULL);
        CHECK_STR(hb, x.a);
    }
out:
    if (x.db)
        sqlite3_close(x.db);
    sync_schema_free(x.s);
}

/* ---- sqlutil.c ---- */

static void test_sqlutil(void)
{
    static const uint8_t blob[] = {0x00, 0x01, 0xfe, 0xff};
    char path[1024], err[256] = "";
    sqlite3 *db = (sqlite3 *)&checks;
    sqlite3_stmt *st = NULL, *bad = (sqlite3_stmt *)&checks;
    sync_value in[6], out;
    int i;

    tpath(path, "nodb.sqlite");
    CHECK_RC(sync_sql_open(path, 0, "NORMAL", &db, err, sizeof err), SYNC_ERR_DB, err);
    CHECK(db == NULL);
    CHECK_HAS(err, path);
    CHECK(access(path, F_OK) != 0); /* not created */

    tpath(path, "util.sqlite");
    if (!CHECK_RC(sync_sql_open(path, 1, "FULL", &db, err, sizeof err), SYNC_OK, err) || !db)
        return;
    if (CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK)) {
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
    }
    if (CHECK(sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK)) {
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        CHECK(sqlite3_column_int(st, 0) == 2); /* FULL */
        sqlite3_finalize(st);
    }

    strcpy(err, "");
    CHECK_RC(sync_sql_exec(db, "CREATE TABLE", "making t", err, sizeof err), SYNC_ERR_DB, err);
    CHECK(strncmp(err, "making t: ", 10) == 0);
    CHECK_RC(sync_sql_exec(db, "CREATE TABLE t(v); CREATE TABLE u(v)", "x", err, sizeof err),
             SYNC_OK, err);
    strcpy(err, "");
    CHECK_RC(sync_sql_prepare(db, "SELECT nope FROM t", &bad, err, sizeof err), SYNC_ERR_DB, err);
    CHECK(bad == NULL);
    CHECK_HAS(err, "nope");

    /* Every type goes in and comes back; empty text and blob stay text and blob, not NULL. */
    in[0] = v_int(INT64_MIN);
    in[1] = v_real(-0.25);
    in[2] = v_text("h\xc3\xa9\0x", 4);
    in[3] = v_blob(blob, sizeof blob);
    in[4] = v_text(NULL, 0);
    in[5] = v_blob(NULL, 0);
    if (CHECK_RC(sync_sql_prepare(db, "INSERT INTO t VALUES(?1)", &st, err, sizeof err), SYNC_OK,
                 err)) {
        for (i = 0; i < 6; i++) {
            CHECK(sync_sql_bind(st, 1, &in[i]) == SQLITE_OK);
            CHECK(sqlite3_step(st) == SQLITE_DONE);
            sqlite3_reset(st);
        }
        out = v_null();
        CHECK(sync_sql_bind(st, 1, &out) == SQLITE_OK);
        CHECK(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_finalize(st);
    }
    if (CHECK_RC(
            sync_sql_prepare(db, "SELECT v, typeof(v) FROM t ORDER BY rowid", &st, err, sizeof err),
            SYNC_OK, err)) {
        for (i = 0; i < 7; i++) {
            if (!CHECK(sqlite3_step(st) == SQLITE_ROW))
                break;
            memset(&out, 0x5a, sizeof out);
            sync_sql_column(st, 0, &out);
            if (i < 6) {
                if (!CHECK(sync_value_equal(&out, &in[i])))
                    fprintf(stderr, "    (value %d, stored as %s)\n", i,
                            (const char *)sqlite3_column_text(st, 1));
            } else {
                CHECK(out.type == SYNC_NULL);
            }
        }
        CHECK(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

/* The option table behind both daemons' configuration. */
struct opt_cfg {
    char *name;
    long n;
    int flag;
    int level;
    int use_syslog;
};

static void test_conf_table(void)
{
    static const sync_opt opts[] = {
        {"name", SYNC_OPT_STR, offsetof(struct opt_cfg, name), 0, 0},
        {"n", SYNC_OPT_LONG, offsetof(struct opt_cfg, n), 1, 10},
        {"flag", SYNC_OPT_BOOL, offsetof(struct opt_cfg, flag), 0, 0},
        {"log_level", SYNC_OPT_LOGLEVEL, offsetof(struct opt_cfg, level), 0, 0},
        {"log_dest", SYNC_OPT_LOGDEST, offsetof(struct opt_cfg, use_syslog), 0, 0},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    struct opt_cfg c = {NULL, 0, 0, 0, 0};
    char err[256];

    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "name", "first", err, sizeof err), SYNC_OK, err);
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "name", "second", err, sizeof err), SYNC_OK, err);
    CHECK_STR(c.name, "second");
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "n", "7", err, sizeof err), SYNC_OK, err);
    CHECK(c.n == 7);
    strcpy(err, "");
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "n", "11", err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Invalid n value (11)");
    CHECK(c.n == 7);
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "flag", "on", err, sizeof err), SYNC_OK, err);
    CHECK(c.flag == 1);
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "flag", "maybe", err, sizeof err), SYNC_ERR_INVAL,
             err);
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "log_level", "warning", err, sizeof err), SYNC_OK,
             err);
    CHECK(c.level == SYNC_LOG_WARNING);
    strcpy(err, "");
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "log_level", "loud", err, sizeof err),
             SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Invalid log_level value (loud)");
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "log_dest", "syslog", err, sizeof err), SYNC_OK,
             err);
    CHECK(c.use_syslog == 1);
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "log_dest", "file", err, sizeof err),
             SYNC_ERR_INVAL, err);
    strcpy(err, "");
    CHECK_RC(sync_conf_set(opts, n, &c, "prog", "nope", "1", err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Unknown option 'nope' (see prog --help)");
    sync_conf_free(opts, n, &c);
    CHECK(c.name == NULL);
}

int main(void)
{
    if (tmp_setup("test_shared") != 0)
        return 1;
    test_schema_valid();
    test_schema_errors();
    test_column_check();
    test_conf_file();
    test_conf_args();
    test_conf_typed();
    test_conf_table();
    test_conf_secret();
    test_topic_build();
    test_topic_ids();
    test_topic_parse();
    test_hlc();
    test_json();
    test_checksum();
    test_sqlutil();
    tmp_cleanup();
    if (failures != 0) {
        fprintf(stderr, "test_shared: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_shared: all %d checks passed\n", checks);
    return 0;
}
