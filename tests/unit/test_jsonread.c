/* test_jsonread.c - unit tests of the shared bounded JSON reader (shared/src/jsonread.c) and of
 * what syncctl reads with it from devices and consumers: device states and consumer statistics
 * (cloud/ctl/states.c), and the cells, ages and rates it prints (cloud/ctl/out.c).
 *
 * Device states are untrusted input, so besides the grammar the test checks every limit (input
 * size, nesting, values, number length), that every prefix of a valid document and thousands
 * of mutated and random documents end in a document or an error and never in a crash or an
 * over-read (inputs are copied to exact-size heap buffers without a terminator, so ASan sees
 * one byte too far), and that no control character, escape sequence or bidirectional override
 * reaches a terminal cell. Each failed check prints file:line; the exit status is nonzero if
 * any check failed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "out.h"
#include "states.h"
#include "sync/err.h"
#include "sync/jsonread.h"

#include "unitcheck.h"

static int parse_n(const char *text, size_t n, sync_jdoc **doc, char *err, size_t errlen)
{
    char *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    memcpy(copy, text, n);
    int rc = sync_jdoc_parse(copy, n, doc, err, errlen);
    free(copy);
    return rc;
}

static int parse(const char *text, sync_jdoc **doc, char *err, size_t errlen)
{
    return parse_n(text, strlen(text), doc, err, errlen);
}

/* Nonzero if text parses (the document is freed). */
static int parses(const char *text)
{
    sync_jdoc *d = NULL;
    char err[200];
    int rc = parse(text, &d, err, sizeof err);
    sync_jdoc_free(d);
    return rc == SYNC_OK;
}

/* text must be refused with code, a message naming a byte position, and no document. */
static void refused(const char *text, int code, int line)
{
    sync_jdoc *d = (sync_jdoc *)&d; /* must be reset to NULL */
    char err[200] = "";
    int rc = parse(text, &d, err, sizeof err);
    if (!check_at(rc == code && d == NULL && strstr(err, "JSON: ") != NULL, "refused", __FILE__,
                  line))
        fprintf(stderr, "    input %s: rc %d (%s), message '%s'\n", text, rc, sync_strerror(rc),
                err);
}
#define REFUSED(text, code) refused(text, code, __LINE__)

static void test_values(void)
{
    sync_jdoc *d;
    char err[200];
    const char *doc = " {\"s\": \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"n\": -12.5e1, \"u\": 42,"
                      "\"t\": true, \"f\": false, \"z\": null, \"a\": [1, [2, {}], []],"
                      "\"o\": {\"k\": \"v\"}, \"s\": \"second\"} \n";
    CHECK(parse(doc, &d, err, sizeof err) == SYNC_OK);
    const sync_jval *r = sync_jdoc_root(d);
    CHECK(sync_jval_type(r) == SYNC_JOBJECT && sync_jval_count(r) == 9);
    size_t len;
    const char *s = sync_jval_str(sync_jval_get(r, "s"), &len);
    CHECK(s && len == 12 && memcmp(s, "a\"b\\c/d\b\f\n\r\t", 12) == 0); /* the first "s" */
    double x;
    uint64_t u;
    int b;
    CHECK(sync_jval_double(sync_jval_get(r, "n"), &x) && x == -125.0);
    CHECK(!sync_jval_uint(sync_jval_get(r, "n"), &u));
    CHECK(sync_jval_uint(sync_jval_get(r, "u"), &u) && u == 42);
    CHECK(sync_jval_bool(sync_jval_get(r, "t"), &b) && b == 1);
    CHECK(sync_jval_bool(sync_jval_get(r, "f"), &b) && b == 0);
    const sync_jval *z = sync_jval_get(r, "z");
    CHECK(z != NULL && sync_jval_type(z) == SYNC_JNULL);
    CHECK(sync_jval_get(r, "missing") == NULL);
    const sync_jval *a = sync_jval_get(r, "a");
    CHECK(sync_jval_type(a) == SYNC_JARRAY && sync_jval_count(a) == 3);
    const sync_jval *e = sync_jval_first(a);
    CHECK(sync_jval_uint(e, &u) && u == 1 && sync_jval_key(e, NULL) == NULL);
    e = sync_jval_next(e);
    CHECK(sync_jval_count(e) == 2 &&
          sync_jval_type(sync_jval_next(sync_jval_first(e))) == SYNC_JOBJECT);
    e = sync_jval_next(e);
    CHECK(sync_jval_type(e) == SYNC_JARRAY && sync_jval_count(e) == 0 &&
          sync_jval_first(e) == NULL && sync_jval_next(e) == NULL);
    const sync_jval *o = sync_jval_get(r, "o");
    CHECK(strcmp(sync_jval_str(sync_jval_get(o, "k"), NULL), "v") == 0);
    CHECK(strcmp(sync_jval_key(sync_jval_first(o), &len), "k") == 0 && len == 1);
    /* Wrong types and NULL answer "absent". */
    CHECK(sync_jval_str(sync_jval_get(r, "u"), NULL) == NULL);
    CHECK(!sync_jval_bool(sync_jval_get(r, "u"), &b) &&
          !sync_jval_double(sync_jval_get(r, "s"), &x));
    CHECK(sync_jval_get(a, "s") == NULL && sync_jval_get(NULL, "s") == NULL);
    CHECK(sync_jval_count(NULL) == 0 && sync_jval_first(NULL) == NULL &&
          sync_jval_next(NULL) == NULL);
    CHECK(sync_jval_type(NULL) == SYNC_JNULL && !sync_jval_uint(NULL, &u));
    CHECK(sync_jval_key(NULL, NULL) == NULL && sync_jdoc_root(NULL) == NULL);
    sync_jdoc_free(d);
    sync_jdoc_free(NULL);

    /* Scalars alone are documents too. */
    CHECK(parses("0") && parses("\"\"") && parses("null") && parses(" true ") && parses("[]"));
}

static void test_strings(void)
{
    sync_jdoc *d;
    char err[200];
    size_t len;
    struct {
        const char *json, *want;
        size_t wlen, replaced; /* replaced: lone surrogates (sync_jdoc_replaced) */
    } cases[] = {
        {"\"\\u00e9\"", "\xC3\xA9", 2, 0},
        {"\"\\u20AC\"", "\xE2\x82\xAC", 3, 0},
        {"\"\\ud83d\\ude00\"", "\xF0\x9F\x98\x80", 4, 0}, /* a surrogate pair */
        {"\"\\ud83dx\"", "\xEF\xBF\xBDx", 4, 1},          /* lone high surrogate */
        {"\"\\ude00\"", "\xEF\xBF\xBD", 3, 1},            /* lone low surrogate */
        {"\"\\ud83d\\u0041\"",
         "\xEF\xBF\xBD"
         "A",
         4, 1},                                                   /* high then no low */
        {"\"\\ude00\\ud83d\"", "\xEF\xBF\xBD\xEF\xBF\xBD", 6, 2}, /* low then high */
        {"\"\\uFFFD\"", "\xEF\xBF\xBD", 3, 0},                    /* U+FFFD itself */
        {"\"a\\u0000b\"", "a\0b", 3, 0},                          /* an embedded NUL */
        {"\"\xC3\xA9\xFF\"", "\xC3\xA9\xFF", 3, 0},               /* bytes pass through */
        {"\"\x1b\"x", NULL, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = parse(cases[i].json, &d, err, sizeof err);
        if (!cases[i].want) {
            CHECK(rc == SYNC_ERR_DECODE);
            continue;
        }
        const char *s = rc == SYNC_OK ? sync_jval_str(sync_jdoc_root(d), &len) : NULL;
        if (!CHECK(s && len == cases[i].wlen && memcmp(s, cases[i].want, len) == 0 &&
                   s[len] == '\0'))
            fprintf(stderr, "    case %zu: %s\n", i, rc == SYNC_OK ? "wrong bytes" : err);
        CHECK(sync_jdoc_replaced(d) == cases[i].replaced);
        sync_jdoc_free(d);
    }
    /* A lone surrogate in a key counts too. */
    CHECK(parse("{\"\\udc00\": [\"\\ud800\"]}", &d, err, sizeof err) == SYNC_OK &&
          sync_jdoc_replaced(d) == 2);
    sync_jdoc_free(d);
    CHECK(sync_jdoc_replaced(NULL) == 0);
    /* Keys are decoded the same way, and the first of a repeated key wins; iteration sees
     * every member in the text's order. */
    CHECK(parse("{\"k\\u0065y\": 1, \"key\": 2}", &d, err, sizeof err) == SYNC_OK);
    uint64_t u;
    CHECK(sync_jval_uint(sync_jval_get(sync_jdoc_root(d), "key"), &u) && u == 1);
    const sync_jval *m = sync_jval_first(sync_jdoc_root(d));
    CHECK(strcmp(sync_jval_key(m, NULL), "key") == 0 && sync_jval_uint(m, &u) && u == 1);
    m = sync_jval_next(m);
    CHECK(strcmp(sync_jval_key(m, NULL), "key") == 0 && sync_jval_uint(m, &u) && u == 2);
    CHECK(sync_jval_next(m) == NULL);
    sync_jdoc_free(d);
}

static void test_numbers(void)
{
    struct {
        const char *json;
        int is_uint;
        uint64_t u;
        int is_int; /* sync_jval_int: written as an integer, within int64_t */
        int64_t i;
        double num;
    } cases[] = {
        {"0", 1, 0, 1, 0, 0},
        {"-0", 1, 0, 1, 0, 0}, /* integral, and zero */
        {"12", 1, 12, 1, 12, 12},
        {"18446744073709551615", 1, UINT64_MAX, 0, 0, 18446744073709551615.0},
        {"18446744073709551616", 0, 0, 0, 0, 18446744073709551616.0},
        {"9223372036854775807", 1, INT64_MAX, 1, INT64_MAX, 9223372036854775807.0},
        {"9223372036854775808", 1, 9223372036854775808ULL, 0, 0, 9223372036854775808.0},
        {"-9223372036854775808", 0, 0, 1, INT64_MIN, -9223372036854775808.0},
        {"-9223372036854775809", 0, 0, 0, 0, -9223372036854775809.0},
        {"1e3", 1, 1000, 0, 0, 1000}, /* integral, but not written as an integer */
        {"12.0", 1, 12, 0, 0, 12},
        {"1.5", 0, 0, 0, 0, 1.5},
        {"-1", 0, 0, 1, -1, -1},
        {"2.5E-3", 0, 0, 0, 0, 0.0025},
        {"1e400", 0, 0, 0, 0, HUGE_VAL},
        {"9007199254740993.0", 0, 0, 0, 0, 9007199254740992.0}, /* 2^53 and past: not exact */
        {"9007199254740991.0", 1, 9007199254740991ULL, 0, 0, 9007199254740991.0},
        {"1733500000000", 1, 1733500000000ULL, 1, 1733500000000LL, 1733500000000.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sync_jdoc *d;
        char err[200];
        uint64_t u = 7;
        int64_t n = 7;
        double x = 0;
        if (!CHECK(parse(cases[i].json, &d, err, sizeof err) == SYNC_OK)) {
            fprintf(stderr, "    %s: %s\n", cases[i].json, err);
            continue;
        }
        const sync_jval *r = sync_jdoc_root(d);
        int is = sync_jval_uint(r, &u), is_int = sync_jval_int(r, &n);
        if (!CHECK(is == cases[i].is_uint && (!is || u == cases[i].u) &&
                   is_int == cases[i].is_int && (is_int ? n == cases[i].i : n == 7) &&
                   sync_jval_double(r, &x) && x == cases[i].num))
            fprintf(stderr, "    %s: uint %d %llu, int %d %lld, number %g\n", cases[i].json, is,
                    (unsigned long long)u, is_int, (long long)n, x);
        sync_jdoc_free(d);
    }
    /* Not numbers: no integer either. */
    int64_t n = 7;
    sync_jdoc *d;
    char err[200];
    CHECK(parse("[\"1\", true, null]", &d, err, sizeof err) == SYNC_OK);
    for (const sync_jval *e = sync_jval_first(sync_jdoc_root(d)); e; e = sync_jval_next(e))
        CHECK(!sync_jval_int(e, &n) && n == 7);
    CHECK(!sync_jval_int(NULL, &n) && n == 7);
    sync_jdoc_free(d);
}

static void test_errors(void)
{
    static const char *const malformed[] = {
        "",
        " ",
        "[",
        "]",
        "{",
        "}",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{a:1}",
        "{\"a\" 1}",
        "{\"a\":}",
        "{1:2}",
        "[1 2]",
        "01",
        "-01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "tru",
        "nul",
        "falsey",
        "True",
        "NaN",
        "Infinity",
        "-Infinity",
        "'a'",
        "\"abc",
        "\"\\\"",
        "\"\\x\"",
        "\"\\u12G4\"",
        "\"\\u12\"",
        "\"a\tb\"",
        "\"a\nb\"",
        "[1] x",
        "{} {}",
        "/* c */ 1",
        "1 // c",
        "[1,\n2",
        "\"\\",
        "{\"a\":1 \"b\":2}",
        "\xEF\xBB\xBF{}",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
        refused(malformed[i], SYNC_ERR_DECODE, __LINE__);
    /* A NUL byte inside the text is no JSON either. */
    sync_jdoc *d = NULL;
    char err[200];
    CHECK(parse_n("[1,\0 2]", 7, &d, err, sizeof err) == SYNC_ERR_DECODE && d == NULL);
    CHECK(parse_n("\"a\0b\"", 5, &d, err, sizeof err) == SYNC_ERR_DECODE && d == NULL);
    /* The message says where. */
    CHECK(parse("[1, 2, x]", &d, err, sizeof err) == SYNC_ERR_DECODE &&
          strstr(err, "at byte 7") != NULL && strstr(err, "'x'") != NULL);
    CHECK(parse("[1, 2", &d, err, sizeof err) == SYNC_ERR_DECODE &&
          strstr(err, "end of the text") != NULL);
    /* A NULL text of length 0 is an empty text. */
    CHECK(sync_jdoc_parse(NULL, 0, &d, err, sizeof err) == SYNC_ERR_DECODE && d == NULL);
}

/* A document of n nested arrays. */
static char *nested(int n)
{
    char *s = malloc((size_t)n * 2 + 1);
    for (int i = 0; i < n; i++) {
        s[i] = '[';
        s[2 * n - 1 - i] = ']';
    }
    s[2 * n] = '\0';
    return s;
}

static void test_limits(void)
{
    char *s = nested(SYNC_JSON_MAX_DEPTH);
    CHECK(parses(s));
    free(s);
    s = nested(SYNC_JSON_MAX_DEPTH + 1);
    REFUSED(s, SYNC_ERR_TOOBIG);
    free(s);
    /* Deep nesting far past the limit is refused without recursing that deep. */
    s = nested(200000);
    REFUSED(s, SYNC_ERR_TOOBIG);
    free(s);

    /* Values: the root array and its elements count. */
    size_t n = SYNC_JSON_MAX_NODES - 1;
    s = malloc(n * 2 + 2);
    s[0] = '[';
    for (size_t i = 0; i < n; i++) {
        s[1 + 2 * i] = '0';
        s[2 + 2 * i] = i + 1 < n ? ',' : ']';
    }
    s[n * 2 + 1] = '\0';
    sync_jdoc *d;
    char err[200];
    CHECK(parse(s, &d, err, sizeof err) == SYNC_OK && sync_jval_count(sync_jdoc_root(d)) == n);
    sync_jdoc_free(d);
    s[n * 2] = ',';
    char *more = malloc(n * 2 + 4);
    memcpy(more, s, n * 2 + 1);
    memcpy(more + n * 2 + 1, "0]", 3);
    REFUSED(more, SYNC_ERR_TOOBIG);
    free(more);
    free(s);

    /* Input size. */
    size_t big = SYNC_JSON_MAX_INPUT + 1;
    s = malloc(big + 1);
    memset(s, ' ', big);
    s[0] = '0';
    s[big] = '\0';
    REFUSED(s, SYNC_ERR_TOOBIG);
    s[big - 1] = '\0'; /* exactly the limit: fine */
    CHECK(parses(s));
    free(s);

    /* Number length. */
    char num[SYNC_JSON_MAX_NUMBER + 2];
    memset(num, '1', sizeof num - 1);
    num[sizeof num - 1] = '\0';
    REFUSED(num, SYNC_ERR_TOOBIG);
    num[SYNC_JSON_MAX_NUMBER] = '\0';
    CHECK(parses(num));
}

/* splitmix64: the same sequence everywhere. */
static uint64_t rng = 0x5eed;
static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void test_hostile(void)
{
    const char *valid =
        "{\"device\":\"edge-a\",\"online\":true,\"pending\":12,\"ts\":1733500000000,"
        "\"version\":\"0.1.0\",\"last_sync\":1733499999000,\"cursor\":{\"items\":1234},"
        "\"lag\":{\"items\":3},\"pull\":{\"table\":\"items\",\"done\":5000,\"total\":100000,"
        "\"rows_per_s\":91000.0},\"s\":\"\\u00e9\\ud83d\\ude00\\n\",\"a\":[null,false,-1e-3]}";
    size_t n = strlen(valid);
    /* Every proper prefix is an error, the whole is a document. */
    int prefixes_ok = 1;
    for (size_t i = 0; i < n; i++) {
        sync_jdoc *d = NULL;
        char err[200];
        if (parse_n(valid, i, &d, err, sizeof err) == SYNC_OK || d != NULL)
            prefixes_ok = 0;
        sync_jdoc_free(d);
    }
    CHECK(prefixes_ok);
    CHECK(parses(valid));
    /* Mutations: bytes changed, inserted and removed; and random text of JSON's characters.
     * Each must end in a document or an error (ASan and UBSan watch the rest). */
    static const char alphabet[] = "{}[]\":,\\u0123456789abcdefEe+-.tnrl \x01\x1b\xff";
    char buf[512];
    int results_ok = 1;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = n;
        memcpy(buf, valid, n);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits && len > 1 && len < sizeof buf - 1; e++) {
            size_t at = (size_t)(rnd() % len);
            char c = alphabet[rnd() % (sizeof alphabet - 1)];
            switch (rnd() % 3) {
            case 0:
                buf[at] = c;
                break;
            case 1:
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = c;
                len++;
                break;
            default:
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
        }
        if (iter % 4 == 3) {
            len = (size_t)(rnd() % 64);
            for (size_t i = 0; i < len; i++)
                buf[i] = alphabet[rnd() % (sizeof alphabet - 1)];
        }
        sync_jdoc *d = NULL;
        char err[200] = "";
        int rc = parse_n(buf, len, &d, err, sizeof err);
        if ((rc == SYNC_OK) != (d != NULL) || (rc != SYNC_OK && strncmp(err, "JSON: ", 6) != 0))
            results_ok = 0;
        /* Reading a mutated state must never fail on a field either. */
        ctl_devstate st;
        if ((ctl_devstate_read(buf, len, &st, err, sizeof err) == SYNC_OK) !=
            (rc == SYNC_OK && sync_jval_type(sync_jdoc_root(d)) == SYNC_JOBJECT))
            results_ok = 0;
        sync_jdoc_free(d);
    }
    CHECK(results_ok);
}

static void test_devstate(void)
{
    char err[200];
    ctl_devstate s;
    const char *full =
        "{\"device\":\"edge-a\",\"online\":true,\"pending\":12,\"ts\":1733500000000,"
        "\"version\":\"0.1.0\",\"last_sync\":1733499999000,\"cursor\":{\"items\":1234,"
        "\"notes\":7},\"lag\":{\"items\":3,\"notes\":4},\"pull\":{\"table\":\"items\","
        "\"done\":5000,\"total\":100000,\"rows_per_s\":91000.0}}";
    CHECK(ctl_devstate_read(full, strlen(full), &s, err, sizeof err) == SYNC_OK);
    CHECK(s.online == 1 && s.clean == -1 && s.pending == 12 && s.ts == 1733500000000ULL);
    CHECK(strcmp(s.version, "0.1.0") == 0 && s.last_sync == 1733499999000ULL);
    CHECK(s.has_cursor && s.ncursor == 2 && strcmp(s.cursor[1].name, "notes") == 0 &&
          s.cursor[1].n == 7);
    CHECK(s.has_lag && s.nlag == 2 && s.lag_total == 7);
    CHECK(s.has_pull && strcmp(s.pull_table, "items") == 0 && s.pull_done == 5000 &&
          s.pull_total == 100000 && s.pull_rate == 91000.0);

    /* The Last Will: only two fields. */
    const char *will = "{\"online\":false,\"clean\":false}";
    CHECK(ctl_devstate_read(will, strlen(will), &s, err, sizeof err) == SYNC_OK);
    CHECK(s.online == 0 && s.clean == 0 && s.pending == CTL_NONE && s.ts == CTL_NONE &&
          s.last_sync == CTL_NONE && !s.has_cursor && !s.has_lag && s.lag_total == CTL_NONE &&
          !s.has_pull && s.version[0] == '\0');

    /* Wrong types read as absent; bad lag entries are skipped; text is cut. */
    char odd[2048];
    snprintf(odd, sizeof odd,
             "{\"online\":\"yes\",\"clean\":1,\"pending\":-1,\"ts\":1.5,\"version\":\"%0100d\","
             "\"last_sync\":\"x\",\"cursor\":[1],\"lag\":{\"a\":\"1\",\"b\":2,\"c\":-3,\"d\":4,"
             "\"\\u001b[2J\":1},\"pull\":{\"table\":7,\"done\":null,\"rows_per_s\":\"fast\"}}",
             0);
    CHECK(ctl_devstate_read(odd, strlen(odd), &s, err, sizeof err) == SYNC_OK);
    CHECK(s.online == -1 && s.clean == -1 && s.pending == CTL_NONE && s.ts == CTL_NONE);
    CHECK(strlen(s.version) == CTL_STATE_NAME_MAX && s.last_sync == CTL_NONE && !s.has_cursor);
    CHECK(s.has_lag && s.nlag == 3 && s.lag_total == 7 && strcmp(s.lag[2].name, "\x1b[2J") == 0);
    CHECK(s.has_pull && s.pull_table[0] == '\0' && s.pull_done == CTL_NONE &&
          s.pull_total == CTL_NONE && isnan(s.pull_rate));

    /* Many tables: the first CTL_STATE_MAX_TABLES are kept; lag sums saturate. */
    char *many = malloc(100 * 40 + 64);
    size_t o = (size_t)sprintf(many, "{\"lag\":{");
    for (int i = 0; i < 100; i++)
        o += (size_t)sprintf(many + o, "%s\"t%d\":18446744073709551615", i ? "," : "", i);
    sprintf(many + o, "}}");
    CHECK(ctl_devstate_read(many, strlen(many), &s, err, sizeof err) == SYNC_OK);
    CHECK(s.nlag == CTL_STATE_MAX_TABLES && s.lag_total == CTL_NONE - 1);
    free(many);

    /* Only a non-object is an error; the fields are all absent then. */
    CHECK(ctl_devstate_read("[]", 2, &s, err, sizeof err) == SYNC_ERR_DECODE &&
          strstr(err, "not an object") && s.online == -1 && s.pending == CTL_NONE);
    CHECK(ctl_devstate_read("online", 6, &s, err, sizeof err) == SYNC_ERR_DECODE);
}

static void test_stats(void)
{
    char err[200];
    ctl_stats s;
    const char *full =
        "{\"consumer\":\"synccloud\",\"online\":true,\"ts\":1733500005000,\"started\":"
        "1733500000000,\"interval_s\":5,\"devices_active\":2,\"devices_known\":3,"
        "\"batches_applied\":10,\"changes_received\":1001,\"changes_applied\":1000,"
        "\"duplicates\":1,\"conflicts\":1,\"conflicts_pending\":0,"
        "\"rejections\":2,\"changes_per_s\":123.5,\"apply_ms\":{\"p50\":0.5,\"p99\":4,"
        "\"max\":9.25}}";
    CHECK(ctl_stats_read(full, strlen(full), &s, err, sizeof err) == SYNC_OK);
    CHECK(strcmp(s.consumer, "synccloud") == 0 && s.online == 1 && s.ts == 1733500005000ULL &&
          s.started == 1733500000000ULL && s.interval_s == 5);
    CHECK(s.devices_active == 2 && s.devices_known == 3 && s.batches_applied == 10 &&
          s.changes_received == 1001 && s.changes_applied == 1000 && s.duplicates == 1 &&
          s.conflicts == 1 && s.conflicts_pending == 0 && s.rejections == 2);
    CHECK(s.changes_per_s == 123.5 && s.apply_p50 == 0.5 && s.apply_p99 == 4 &&
          s.apply_max == 9.25);
    const char *bare = "{\"online\":false,\"changes_per_s\":1e999}";
    CHECK(ctl_stats_read(bare, strlen(bare), &s, err, sizeof err) == SYNC_OK);
    CHECK(s.online == 0 && s.changes_applied == CTL_NONE && s.ts == CTL_NONE &&
          isnan(s.changes_per_s) && isnan(s.apply_max) && s.consumer[0] == '\0');
    CHECK(ctl_stats_read("\"x\"", 3, &s, err, sizeof err) == SYNC_ERR_DECODE);
}

/* What ctl_cell printed. */
static char *cell_text(const char *s, int width)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ctl_cell(f, s, width);
    fclose(f);
    return buf;
}

static void test_out(void)
{
    char buf[64];
    /* Control characters, ESC sequences, C1 controls, bidi overrides and broken UTF-8 go. */
    CHECK(strcmp(ctl_safe(buf, sizeof buf, "a\x1b[31mb\n\r\t\x7f", 11), "a?[31mb????") == 0);
    CHECK(strcmp(ctl_safe(buf, sizeof buf,
                          "x\xC2\x9B"
                          "1m",
                          5),
                 "x?1m") == 0);
    CHECK(strcmp(ctl_safe(buf, sizeof buf, "\xE2\x80\xAEtxt", 6), "?txt") == 0);
    CHECK(strcmp(ctl_safe(buf, sizeof buf,
                          "Gr\xC3\xBC\xC3\x9F"
                          "e \xE2\x9C\x93",
                          11),
                 "Gr\xC3\xBC\xC3\x9F"
                 "e \xE2\x9C\x93") == 0);
    /* A lead byte without its follower, 0xFF, a surrogate, a character cut short. */
    CHECK(strcmp(ctl_safe(buf, sizeof buf, "\xC3(\xFF\xED\xA0\x80\xF0\x9F\x98", 9), "?(???????") ==
          0);
    CHECK(strcmp(ctl_safe(buf, sizeof buf, "a\0b", 3), "a?b") == 0);
    /* Cut to the buffer, never in the middle of a character. */
    CHECK(strcmp(ctl_safe(buf, 4, "abcdef", 6), "abc") == 0);
    CHECK(strcmp(ctl_safe(buf, 4, "ab\xC3\xBC", 4), "ab") == 0);

    char *c = cell_text("edge-a", 8);
    CHECK(strcmp(c, "edge-a   ") == 0);
    free(c);
    c = cell_text("a-very-long-device", 8);
    CHECK(strcmp(c, "a-very-~ ") == 0);
    free(c);
    c = cell_text("\xC3\xBC\xC3\xBC\xC3\xBC", 4); /* three characters, six bytes */
    CHECK(strcmp(c, "\xC3\xBC\xC3\xBC\xC3\xBC  ") == 0);
    free(c);
    c = cell_text("\xC3\xBC\xC3\xBC\xC3\xBC\xC3\xBC\xC3\xBC", 3);
    CHECK(strcmp(c, "\xC3\xBC\xC3\xBC~ ") == 0);
    free(c);
    c = cell_text("last\x1b]0;title\x07", 0);
    CHECK(strcmp(c, "last?]0;title?\n") == 0);
    free(c);

    CHECK(strcmp(ctl_age(buf, sizeof buf, 1000, 4500), "3s ago") == 0);
    CHECK(strcmp(ctl_age(buf, sizeof buf, 5000, 1000), "0s ago") == 0);
    CHECK(strcmp(ctl_age(buf, sizeof buf, 0, 119999), "119s ago") == 0);
    CHECK(strcmp(ctl_age(buf, sizeof buf, 0, 12 * 60000), "12m ago") == 0);
    CHECK(strcmp(ctl_age(buf, sizeof buf, 0, 3 * 3600000ULL), "3h ago") == 0);
    CHECK(strcmp(ctl_age(buf, sizeof buf, 0, 5 * 86400000ULL), "5d ago") == 0);
    CHECK(strcmp(ctl_rate(buf, sizeof buf, 850), "850") == 0);
    CHECK(strcmp(ctl_rate(buf, sizeof buf, 1234), "1.2k") == 0);
    CHECK(strcmp(ctl_rate(buf, sizeof buf, 91000), "91k") == 0);
    CHECK(strcmp(ctl_rate(buf, sizeof buf, 2.5e6), "2.5M") == 0);
    CHECK(strcmp(ctl_rate(buf, sizeof buf, NAN), "?") == 0);
}

int main(void)
{
    test_values();
    test_strings();
    test_numbers();
    test_errors();
    test_limits();
    test_hostile();
    test_devstate();
    test_stats();
    test_out();
    if (failures != 0) {
        fprintf(stderr, "test_jsonread: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_jsonread: all %d checks passed\n", checks);
    return 0;
}
