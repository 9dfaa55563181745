/* test_metrics.c - unit tests of metrics.c, the Prometheus text exposition of the daemons.
 *
 * Builds small registries and compares the rendered text with the exact expected text
 * (counters, gauges, labeled series, histogram buckets, number spelling, escaping); feeds the
 * registration bad names, colliding names and bad bucket bounds and checks each is refused
 * with a message naming it; fills a labeled family to its series cap; and writes the file
 * twice into a private directory made with mkdtemp under $SYNC_TEST_TMP (or $TMPDIR, or /tmp)
 * to check it is replaced by rename with mode 0644 and leaves no temporary file. When promtool
 * happens to be installed, the written file is also checked with `promtool check metrics`.
 * Each failed check prints file:line; the exit status is nonzero if any check failed.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/err.h"
#include "sync/metrics.h"

#include "unitcheck.h"

/* Returns the whole of the open stream f as a new string (the caller frees it), or NULL. */
static char *slurp_stream(FILE *f)
{
    size_t cap = 4096, len = 0, n;
    char *p = malloc(cap);

    while (p && (n = fread(p + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return NULL;
            }
            p = q;
            cap *= 2;
        }
    }
    if (p)
        p[len] = '\0';
    return p;
}

/* Returns the contents of file path as a new string (the caller frees it), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *p;

    if (!f)
        return NULL;
    p = slurp_stream(f);
    fclose(f);
    return p;
}

/* The names in the temporary directory, sorted and joined by spaces, into out (1024 bytes). */
static char *dir_list(char *out)
{
    struct dirent **list;
    int n = scandir(tmpdir, &list, NULL, alphasort);

    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (list[i]->d_name[0] != '.') {
            if (out[0])
                strncat(out, " ", 1023 - strlen(out));
            strncat(out, list[i]->d_name, 1023 - strlen(out));
        }
        free(list[i]);
    }
    if (n >= 0)
        free(list);
    return out;
}

/* Renders m into a new string (the caller frees it), or reports a failed check and returns
 * NULL. */
static char *render(sync_metrics *m)
{
    char *text = NULL;
    size_t len = 0;

    if (!CHECK_RC(sync_metrics_render(m, &text, &len), SYNC_OK, ""))
        return NULL;
    CHECK(text && strlen(text) == len);
    return text;
}

/* ---- tests ---- */

/* Every kind of family and number, against the exact text Prometheus is meant to read. */
static void test_render(void)
{
    char err[256] = "";
    sync_metrics *m = NULL;
    sync_counter *changes, *busy, *big, *c;
    sync_gauge *depth, *items, *odd, *g, *g2;
    sync_histogram *batch, *apply, *h;
    sync_metrics_family *rows, *specials, *applyf, *errors;
    const double batch_bounds[] = {0.1, 0.5, 1, 2.5}, apply_bounds[] = {1};
    char *text;

    if (!CHECK_RC(sync_metrics_new("syncedge", &m, err, sizeof err), SYNC_OK, err))
        return;
    /* An empty registry renders as an empty string. */
    text = render(m);
    CHECK_TEXT(text, "");
    free(text);

    CHECK_RC(sync_metrics_counter(m, "changes_total",
                                  "Changes captured from the application's writes.", &changes, err,
                                  sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_counter(m, "busy_seconds_total",
                                  "Time spent applying.\nSecond line, a \\ backslash, a \"quote\".",
                                  &busy, err, sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_counter(m, "big_total", NULL, &big, err, sizeof err), SYNC_OK, err);
    CHECK_RC(sync_metrics_gauge(m, "queue_depth", "Batches waiting.", &depth, err, sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_GAUGE, "rows", "Rows per table.", "table",
                                     NULL, 0, &rows, err, sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_GAUGE, "specials", "", "kind", NULL, 0,
                                     &specials, err, sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_histogram(m, "batch_seconds", "Batch round trips.", batch_bounds, 4,
                                    &batch, err, sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_HISTOGRAM, "apply_seconds", "Apply time.",
                                     "device,table", apply_bounds, 1, &applyf, err, sizeof err),
             SYNC_OK, err);
    /* A labeled family that never gets a series is left out of the text. */
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_COUNTER, "errors_total", "Errors.", "kind",
                                     NULL, 0, &errors, err, sizeof err),
             SYNC_OK, err);

    sync_metrics_counter_inc(changes);
    sync_metrics_counter_inc(changes);
    sync_metrics_counter_add(changes, 5);
    /* Integer and fractional additions mix; amounts that are not > 0 are ignored. */
    sync_metrics_counter_inc(busy);
    sync_metrics_counter_addf(busy, 0.25);
    sync_metrics_counter_addf(busy, 1.5);
    sync_metrics_counter_addf(busy, -3);
    sync_metrics_counter_addf(busy, 0);
    sync_metrics_counter_addf(busy, NAN);
    /* Beyond 2^53: still printed exactly. */
    sync_metrics_counter_add(big, UINT64_MAX);
    sync_metrics_gauge_set(depth, 3);
    sync_metrics_gauge_add(depth, -0.5);

    CHECK_RC(sync_metrics_gauge_labeled(rows, (const char *[]){"items"}, &items, err, sizeof err),
             SYNC_OK, err);
    sync_metrics_gauge_set(items, 42);
    CHECK_RC(
        sync_metrics_gauge_labeled(rows, (const char *[]){"a\"b\\c\nd"}, &odd, err, sizeof err),
        SYNC_OK, err);
    sync_metrics_gauge_set(odd, 0.1);
    /* The same values give the same series back. */
    CHECK_RC(sync_metrics_gauge_labeled(rows, (const char *[]){"items"}, &g, err, sizeof err),
             SYNC_OK, err);
    CHECK(g == items);

    {
        static const char *const kinds[] = {"inf", "ninf", "nan", "big", "third", "tiny", "long"};
        const double vals[] = {INFINITY, -INFINITY, NAN, 1e21, 1.0 / 3, 1e-7, 123456789012345680.0};
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            g = NULL;
            CHECK_RC(sync_metrics_gauge_labeled(specials, &kinds[i], &g, err, sizeof err), SYNC_OK,
                     err);
            sync_metrics_gauge_set(g, vals[i]);
        }
    }

    /* 0.0625 -> le 0.1; 0.5 twice -> le 0.5 (le is "less or equal"); 0.75 -> le 1; 3 -> +Inf;
     * NaN ignored. */
    sync_metrics_histogram_observe(batch, 0.0625);
    sync_metrics_histogram_observe(batch, 0.5);
    sync_metrics_histogram_observe(batch, 0.75);
    sync_metrics_histogram_observe(batch, 3);
    sync_metrics_histogram_observe(batch, 0.5);
    sync_metrics_histogram_observe(batch, NAN);

    CHECK_RC(sync_metrics_histogram_labeled(applyf, (const char *[]){"edge-a", "items"}, &apply,
                                            err, sizeof err),
             SYNC_OK, err);
    sync_metrics_histogram_observe(apply, 0.5);
    sync_metrics_histogram_observe(apply, 2);
    /* Differing in the second value only is another series. */
    CHECK_RC(sync_metrics_histogram_labeled(applyf, (const char *[]){"edge-a", "orders"}, &h, err,
                                            sizeof err),
             SYNC_OK, err);
    CHECK(h != apply);
    sync_metrics_histogram_observe(h, 1);

    text = render(m);
    CHECK_TEXT(text,
               "# HELP syncedge_changes_total Changes captured from the application's writes.\n"
               "# TYPE syncedge_changes_total counter\n"
               "syncedge_changes_total 7\n"
               "# HELP syncedge_busy_seconds_total Time spent applying.\\nSecond line, a \\\\ "
               "backslash, a \"quote\".\n"
               "# TYPE syncedge_busy_seconds_total counter\n"
               "syncedge_busy_seconds_total 2.75\n"
               "# TYPE syncedge_big_total counter\n"
               "syncedge_big_total 18446744073709551615\n"
               "# HELP syncedge_queue_depth Batches waiting.\n"
               "# TYPE syncedge_queue_depth gauge\n"
               "syncedge_queue_depth 2.5\n"
               "# HELP syncedge_rows Rows per table.\n"
               "# TYPE syncedge_rows gauge\n"
               "syncedge_rows{table=\"items\"} 42\n"
               "syncedge_rows{table=\"a\\\"b\\\\c\\nd\"} 0.1\n"
               "# TYPE syncedge_specials gauge\n"
               "syncedge_specials{kind=\"inf\"} +Inf\n"
               "syncedge_specials{kind=\"ninf\"} -Inf\n"
               "syncedge_specials{kind=\"nan\"} NaN\n"
               "syncedge_specials{kind=\"big\"} 1e+21\n"
               "syncedge_specials{kind=\"third\"} 0.3333333333333333\n"
               "syncedge_specials{kind=\"tiny\"} 1e-07\n"
               "syncedge_specials{kind=\"long\"} 1.2345678901234568e+17\n"
               "# HELP syncedge_batch_seconds Batch round trips.\n"
               "# TYPE syncedge_batch_seconds histogram\n"
               "syncedge_batch_seconds_bucket{le=\"0.1\"} 1\n"
               "syncedge_batch_seconds_bucket{le=\"0.5\"} 3\n"
               "syncedge_batch_seconds_bucket{le=\"1\"} 4\n"
               "syncedge_batch_seconds_bucket{le=\"2.5\"} 4\n"
               "syncedge_batch_seconds_bucket{le=\"+Inf\"} 5\n"
               "syncedge_batch_seconds_sum 4.8125\n"
               "syncedge_batch_seconds_count 5\n"
               "# HELP syncedge_apply_seconds Apply time.\n"
               "# TYPE syncedge_apply_seconds histogram\n"
               "syncedge_apply_seconds_bucket{device=\"edge-a\",table=\"items\",le=\"1\"} 1\n"
               "syncedge_apply_seconds_bucket{device=\"edge-a\",table=\"items\",le=\"+Inf\"} 2\n"
               "syncedge_apply_seconds_sum{device=\"edge-a\",table=\"items\"} 2.5\n"
               "syncedge_apply_seconds_count{device=\"edge-a\",table=\"items\"} 2\n"
               "syncedge_apply_seconds_bucket{device=\"edge-a\",table=\"orders\",le=\"1\"} 1\n"
               "syncedge_apply_seconds_bucket{device=\"edge-a\",table=\"orders\",le=\"+Inf\"} 1\n"
               "syncedge_apply_seconds_sum{device=\"edge-a\",table=\"orders\"} 1\n"
               "syncedge_apply_seconds_count{device=\"edge-a\",table=\"orders\"} 1\n");
    free(text);

    /* Once a labeled counter has a series, its family appears. */
    CHECK_RC(sync_metrics_counter_labeled(errors, (const char *[]){"db"}, &c, err, sizeof err),
             SYNC_OK, err);
    sync_metrics_counter_inc(c);
    text = render(m);
    CHECK_HAS(text, "# HELP syncedge_errors_total Errors.\n"
                    "# TYPE syncedge_errors_total counter\n"
                    "syncedge_errors_total{kind=\"db\"} 1\n");
    free(text);

    /* NULL handles do nothing (a daemon whose registration failed runs on). */
    sync_metrics_counter_inc(NULL);
    sync_metrics_counter_add(NULL, 1);
    sync_metrics_counter_addf(NULL, 1);
    sync_metrics_gauge_set(NULL, 1);
    sync_metrics_gauge_add(NULL, 1);
    sync_metrics_histogram_observe(NULL, 1);

    /* Another gauge series of the same family is independent. */
    CHECK_RC(sync_metrics_gauge_labeled(rows, (const char *[]){"orders"}, &g2, err, sizeof err),
             SYNC_OK, err);
    CHECK(g2 != items && g2 != odd);
    sync_metrics_free(m);

    /* Without a prefix, names are used as given; a histogram without bounds has +Inf only. */
    CHECK_RC(sync_metrics_new(NULL, &m, err, sizeof err), SYNC_OK, err);
    CHECK_RC(sync_metrics_histogram(m, "x_seconds", NULL, NULL, 0, &h, err, sizeof err), SYNC_OK,
             err);
    sync_metrics_histogram_observe(h, -1);
    text = render(m);
    CHECK_TEXT(text, "# TYPE x_seconds histogram\n"
                     "x_seconds_bucket{le=\"+Inf\"} 1\n"
                     "x_seconds_sum -1\n"
                     "x_seconds_count 1\n");
    free(text);
    sync_metrics_free(m);
}

/* Bad and colliding names, bad labels and bounds are refused with a message naming them, and
 * leave nothing half-registered behind. */
static void test_errors(void)
{
    char err[256];
    sync_metrics *m = NULL;
    sync_counter *c = NULL;
    sync_gauge *g = NULL;
    sync_histogram *h = NULL;
    sync_metrics_family *f = NULL, *cf = NULL, *gf = NULL;
    const double ok_bounds[] = {1, 2};
    char *text;

    err[0] = '\0';
    CHECK_RC(sync_metrics_new("sync-edge", &m, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK(m == NULL);
    CHECK_HAS(err, "Invalid metric prefix (sync-edge)");

    if (!CHECK_RC(sync_metrics_new("syncedge", &m, err, sizeof err), SYNC_OK, err))
        return;

    /* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]* */
    {
        static const char *const bad[] = {"", "9lives", "a-b", "a b", "caf\xc3\xa9", "a.b"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char want[64];
            err[0] = '\0';
            c = (sync_counter *)&c; /* must be reset to NULL */
            CHECK_RC(sync_metrics_counter(m, bad[i], "h", &c, err, sizeof err), SYNC_ERR_INVAL,
                     err);
            CHECK(c == NULL);
            snprintf(want, sizeof want, "Invalid metric name (%s)", bad[i]);
            CHECK_HAS(err, want);
            CHECK_HAS(err, "[a-zA-Z_:][a-zA-Z0-9_:]*");
        }
        CHECK_RC(sync_metrics_counter(m, NULL, "h", &c, err, sizeof err), SYNC_ERR_INVAL, err);
    }
    CHECK_RC(sync_metrics_gauge(m, "_a:b9", NULL, &g, err, sizeof err), SYNC_OK, err);
    CHECK_RC(sync_metrics_gauge(m, ":c", NULL, &g, err, sizeof err), SYNC_OK, err);

    /* Label names: [a-zA-Z_][a-zA-Z0-9_]*, no __ prefix, no duplicates, at most 4. */
    {
        static const struct {
            const char *labels, *want;
        } bad[] = {
            {"__x", "Invalid label name (__x) of metric syncedge_l: names starting with __ are "
                    "reserved"},
            {"1a", "Invalid label name (1a) of metric syncedge_l: must match"},
            {"a:b", "Invalid label name (a:b)"},
            {"table,", "Invalid label name ()"},
            {",table", "Invalid label name ()"},
            {"device, table", "Invalid label name ( table)"},
            {"a,b,a", "Duplicate label name (a) of metric syncedge_l"},
            {"a,b,c,d,e", "Metric syncedge_l has too many labels (a,b,c,d,e): at most 4"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            err[0] = '\0';
            f = (sync_metrics_family *)&f;
            CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_GAUGE, "l", "h", bad[i].labels, NULL,
                                             0, &f, err, sizeof err),
                     SYNC_ERR_INVAL, err);
            CHECK(f == NULL);
            CHECK_HAS(err, bad[i].want);
        }
    }
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_HISTOGRAM, "lat_seconds", "h", "table,le",
                                     ok_bounds, 2, &f, err, sizeof err),
             SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Invalid label name (le) of histogram syncedge_lat_seconds");
    /* "le" is only reserved in histograms. */
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_GAUGE, "l", "h", "a,b,c,le", NULL, 0, &gf, err,
                                     sizeof err),
             SYNC_OK, err);

    /* Names that collide in the output. */
    CHECK_RC(sync_metrics_gauge(m, "l", "again", &g, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Metric name syncedge_l (a gauge) collides with the gauge syncedge_l");
    CHECK_RC(sync_metrics_counter(m, "l", "again", &c, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "collides with the gauge syncedge_l");
    CHECK_RC(sync_metrics_histogram(m, "lat_seconds", "h", ok_bounds, 2, &h, err, sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_counter(m, "lat_seconds_count", "h", &c, err, sizeof err), SYNC_ERR_INVAL,
             err);
    CHECK_HAS(err, "syncedge_lat_seconds_count (a counter) collides with the histogram "
                   "syncedge_lat_seconds");
    CHECK_RC(sync_metrics_gauge(m, "x_sum", "h", &g, err, sizeof err), SYNC_OK, err);
    CHECK_RC(sync_metrics_histogram(m, "x", "h", ok_bounds, 2, &h, err, sizeof err), SYNC_ERR_INVAL,
             err);
    CHECK_HAS(err, "collides with the gauge syncedge_x_sum");

    /* Bucket bounds: finite, strictly increasing, at most 32, histograms only. */
    {
        static const double dup[] = {1, 1}, down[] = {2, 1}, inf[] = {1, INFINITY}, nan_[] = {NAN};
        double many[SYNC_METRICS_MAX_BOUNDS + 1];
        for (int i = 0; i <= SYNC_METRICS_MAX_BOUNDS; i++)
            many[i] = i;
        CHECK_RC(sync_metrics_histogram(m, "h1", "h", dup, 2, &h, err, sizeof err), SYNC_ERR_INVAL,
                 err);
        CHECK_HAS(err, "Invalid buckets of histogram syncedge_h1: bound 1 (1) is not greater "
                       "than the one before (1)");
        CHECK_RC(sync_metrics_histogram(m, "h1", "h", down, 2, &h, err, sizeof err), SYNC_ERR_INVAL,
                 err);
        CHECK_HAS(err, "bound 1 (1) is not greater than the one before (2)");
        CHECK_RC(sync_metrics_histogram(m, "h1", "h", inf, 2, &h, err, sizeof err), SYNC_ERR_INVAL,
                 err);
        CHECK_HAS(err, "bound 1 (inf) is not finite (the +Inf bucket is implicit)");
        CHECK_RC(sync_metrics_histogram(m, "h1", "h", nan_, 1, &h, err, sizeof err), SYNC_ERR_INVAL,
                 err);
        CHECK_HAS(err, "is not finite");
        CHECK_RC(sync_metrics_histogram(m, "h1", "h", many, SYNC_METRICS_MAX_BOUNDS + 1, &h, err,
                                        sizeof err),
                 SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "33 bounds, at most 32");
        CHECK(h == NULL);
        CHECK_RC(sync_metrics_histogram(m, "h1", "h", many, SYNC_METRICS_MAX_BOUNDS, &h, err,
                                        sizeof err),
                 SYNC_OK, err);
        CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_COUNTER, "c_total", "h", "a", ok_bounds, 2,
                                         &f, err, sizeof err),
                 SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "Metric c_total is a counter: only a histogram has bucket bounds");
    }

    /* HELP text must be UTF-8 (Prometheus refuses the file otherwise). */
    CHECK_RC(sync_metrics_gauge(m, "bad_help", "caf\xe9", &g, err, sizeof err), SYNC_ERR_INVAL,
             err);
    CHECK_HAS(err, "HELP text of metric bad_help is not UTF-8");

    /* Label values: of the family's type, not NULL, UTF-8. */
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_COUNTER, "ops_total", "h", "op,table", NULL, 0,
                                     &cf, err, sizeof err),
             SYNC_OK, err);
    g = (sync_gauge *)&g;
    CHECK_RC(sync_metrics_gauge_labeled(cf, (const char *[]){"a", "b"}, &g, err, sizeof err),
             SYNC_ERR_INVAL, err);
    CHECK(g == NULL);
    CHECK_HAS(err, "Metric syncedge_ops_total is a counter, not a gauge");
    CHECK_RC(sync_metrics_histogram_labeled(cf, (const char *[]){"a", "b"}, &h, err, sizeof err),
             SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "is a counter, not a histogram");
    if (gf) {
        CHECK_RC(sync_metrics_counter_labeled(gf, (const char *[]){"a", "b", "c", "d"}, &c, err,
                                              sizeof err),
                 SYNC_ERR_INVAL, err);
        CHECK_HAS(err, "is a gauge, not a counter");
    }
    /* A registry or family whose creation failed (NULL) refuses lookups instead of crashing. */
    c = (sync_counter *)&c;
    CHECK_RC(sync_metrics_counter_labeled(NULL, (const char *[]){"a"}, &c, err, sizeof err),
             SYNC_ERR_INVAL, err);
    CHECK(c == NULL);
    CHECK_HAS(err, "No metric family to look a counter up in");
    CHECK_RC(sync_metrics_counter(NULL, "n_total", "h", &c, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK(c == NULL);
    CHECK_HAS(err, "No metrics registry for metric n_total");
    CHECK_RC(sync_metrics_counter_labeled(cf, (const char *[]){"a", NULL}, &c, err, sizeof err),
             SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Metric syncedge_ops_total: label table has no value (NULL)");
    CHECK_RC(sync_metrics_counter_labeled(cf, NULL, &c, err, sizeof err), SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "label op has no value");
    CHECK_RC(sync_metrics_counter_labeled(cf, (const char *[]){"\xff", "b"}, &c, err, sizeof err),
             SYNC_ERR_INVAL, err);
    CHECK_HAS(err, "Metric syncedge_ops_total: the value of label op is not UTF-8");
    /* Empty and non-ASCII values are fine. */
    CHECK_RC(
        sync_metrics_counter_labeled(cf, (const char *[]){"", "caf\xc3\xa9"}, &c, err, sizeof err),
        SYNC_OK, err);
    sync_metrics_counter_inc(c);

    /* Only what was accepted is rendered. */
    text = render(m);
    CHECK_HAS(text, "# HELP syncedge_ops_total h\n"
                    "# TYPE syncedge_ops_total counter\n"
                    "syncedge_ops_total{op=\"\",table=\"caf\xc3\xa9\"} 1\n");
    CHECK(text && !strstr(text, "9lives") && !strstr(text, "bad_help") &&
          !strstr(text, "# TYPE syncedge_x ") &&
          !strstr(text, "# TYPE syncedge_lat_seconds_count"));
    /* h1 was refused four times, then registered once. */
    CHECK(text && strstr(text, "# TYPE syncedge_h1 histogram\n") &&
          !strstr(strstr(text, "# TYPE syncedge_h1 histogram\n") + 1, "# TYPE syncedge_h1 "));
    CHECK(text && strstr(text, "# TYPE syncedge__a:b9 gauge\nsyncedge__a:b9 0\n"));
    free(text);
    sync_metrics_free(m);
}

/* A labeled family takes SYNC_METRICS_MAX_SERIES series and refuses more, keeping the ones it
 * has. */
static void test_cap(void)
{
    char err[256] = "", v[32];
    sync_metrics *m = NULL;
    sync_metrics_family *f = NULL;
    sync_counter *first = NULL, *c = NULL;
    const char *vals[1] = {v};
    char *text;
    int lines = 0, ok = 1;

    if (!CHECK_RC(sync_metrics_new("synccloud", &m, err, sizeof err), SYNC_OK, err))
        return;
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_COUNTER, "batches_total", "Batches.", "device",
                                     NULL, 0, &f, err, sizeof err),
             SYNC_OK, err);
    for (int i = 0; i < SYNC_METRICS_MAX_SERIES; i++) {
        snprintf(v, sizeof v, "dev-%d", i);
        if (sync_metrics_counter_labeled(f, vals, &c, err, sizeof err) != SYNC_OK || !c)
            ok = 0;
        sync_metrics_counter_add(c, (uint64_t)i);
        if (i == 0)
            first = c;
    }
    CHECK(ok);
    snprintf(v, sizeof v, "dev-%d", SYNC_METRICS_MAX_SERIES);
    c = first;
    CHECK_RC(sync_metrics_counter_labeled(f, vals, &c, err, sizeof err), SYNC_ERR_TOOBIG, err);
    CHECK(c == NULL);
    CHECK_HAS(err, "Metric synccloud_batches_total already has 256 series, the most a family "
                   "may have: new label values (device=\"dev-256\") refused");
    /* Existing series are still found, and still count. */
    snprintf(v, sizeof v, "dev-0");
    CHECK_RC(sync_metrics_counter_labeled(f, vals, &c, err, sizeof err), SYNC_OK, err);
    CHECK(c == first);
    sync_metrics_counter_inc(c);

    text = render(m);
    for (const char *p = text; p && *p; p = strchr(p, '\n') + 1)
        if (*p != '#')
            lines++;
    CHECK(lines == SYNC_METRICS_MAX_SERIES);
    CHECK_HAS(text, "synccloud_batches_total{device=\"dev-0\"} 1\n");
    CHECK_HAS(text, "synccloud_batches_total{device=\"dev-255\"} 255\n");
    CHECK(text && !strstr(text, "dev-256"));
    free(text);
    sync_metrics_free(m);
}

/* write() replaces the file by rename, 0644 whatever the umask, and leaves no temp file. */
static void test_write(void)
{
    char err[256] = "", path[1024], other[1024], names[1024];
    sync_metrics *m = NULL;
    sync_counter *writes = NULL;
    sync_gauge *rows = NULL;
    sync_histogram *lat = NULL;
    sync_metrics_family *rowsf = NULL;
    const double bounds[] = {0.005, 0.05, 0.5, 5};
    struct stat st1, st2;
    char *text = NULL, *file = NULL, *old = NULL;
    FILE *reader;
    mode_t mask;

    if (!CHECK_RC(sync_metrics_new("syncedge", &m, err, sizeof err), SYNC_OK, err))
        return;
    CHECK_RC(
        sync_metrics_counter(m, "writes_total", "Metrics files written.", &writes, err, sizeof err),
        SYNC_OK, err);
    CHECK_RC(sync_metrics_family_new(m, SYNC_METRICS_GAUGE, "rows", "Rows per table.", "table",
                                     NULL, 0, &rowsf, err, sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_gauge_labeled(rowsf, (const char *[]){"odd \"one\"\\\n"}, &rows, err,
                                        sizeof err),
             SYNC_OK, err);
    CHECK_RC(sync_metrics_histogram(m, "batch_seconds", "Batch round trips.", bounds, 4, &lat, err,
                                    sizeof err),
             SYNC_OK, err);
    sync_metrics_gauge_set(rows, 12);
    sync_metrics_histogram_observe(lat, 0.01);
    sync_metrics_counter_inc(writes);

    tpath(path, "syncedge.prom");
    mask = umask(077); /* the file must still be 0644 */
    CHECK_RC(sync_metrics_write(m, path, err, sizeof err), SYNC_OK, err);
    umask(mask);
    CHECK(stat(path, &st1) == 0 && (st1.st_mode & 07777) == 0644);
    file = slurp(path);
    text = render(m);
    CHECK_TEXT(file, text ? text : "");
    free(file);
    free(text);

    /* A reader that opened the first file keeps reading it whole while it is replaced. */
    reader = fopen(path, "r");
    CHECK(reader != NULL);
    sync_metrics_counter_inc(writes);
    sync_metrics_gauge_set(rows, 13);
    CHECK_RC(sync_metrics_write(m, path, err, sizeof err), SYNC_OK, err);
    CHECK(stat(path, &st2) == 0 && (st2.st_mode & 07777) == 0644);
    CHECK(st1.st_ino != st2.st_ino); /* a new file renamed over the old, not rewritten in place */
    file = slurp(path);
    text = render(m);
    CHECK_TEXT(file, text ? text : "");
    CHECK_HAS(file, "syncedge_writes_total 2\n");
    CHECK_HAS(file, "syncedge_rows{table=\"odd \\\"one\\\"\\\\\\n\"} 13\n");
    if (reader) {
        old = slurp_stream(reader);
        fclose(reader);
        CHECK_HAS(old, "syncedge_writes_total 1\n");
        CHECK_HAS(old, "syncedge_batch_seconds_count 1\n"); /* to the end */
        free(old);
    }
    free(file);
    free(text);
    CHECK_TEXT(dir_list(names), "syncedge.prom");

    /* promtool, when it happens to be installed, must accept the file. */
    if (system("command -v promtool >/dev/null 2>&1") == 0) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "promtool check metrics < '%s'", path);
        CHECK(system(cmd) == 0);
    } else {
        printf("test_metrics: promtool not installed, file not checked with it\n");
    }

    /* Failures: the directory is missing; the target is a directory (rename fails after the
     * temp file was written: it must be removed). */
    tpath(other, "missing/x.prom");
    CHECK_RC(sync_metrics_write(m, other, err, sizeof err), SYNC_ERR_IO, err);
    CHECK_HAS(err, "Cannot create ");
    CHECK_HAS(err, "missing/x.prom.tmp.");
    CHECK_HAS(err, "No such file or directory");
    tpath(other, "adir");
    CHECK(mkdir(other, 0755) == 0);
    CHECK_RC(sync_metrics_write(m, other, err, sizeof err), SYNC_ERR_IO, err);
    CHECK_HAS(err, "Cannot rename ");
    CHECK_TEXT(dir_list(names), "adir syncedge.prom");
    sync_metrics_free(m);
}

int main(void)
{
    if (tmp_setup("test_metrics") != 0)
        return 1;
    test_render();
    test_errors();
    test_cap();
    test_write();
    tmp_cleanup();
    if (failures != 0) {
        fprintf(stderr, "test_metrics: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_metrics: all %d checks passed\n", checks);
    return 0;
}
