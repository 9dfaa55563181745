/* metrics.c - the metrics registry and its Prometheus text rendering (see sync/metrics.h).
 *
 * Promise: every update is a few arithmetic instructions on a series the caller already holds;
 * all allocation, validation and escaping happen at registration and at a series' first
 * lookup, so rendering only copies prepared strings and formats numbers. The output is always
 * text that Prometheus' parser accepts: names are checked once, label values and HELP text are
 * escaped once, and the number of series is capped.
 */
#include "sync/metrics.h"

#include "sync/cbor.h"
#include "sync/err.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One series: a family's values for one tuple of label values. The public handle types wrap
 * it as their only member, so a handle and its series share one address. */
typedef struct metrics__series {
    const sync_metrics_family *fam; /* its family: type and histogram bounds */
    char *labels;      /* the label pairs as rendered, `a="x",b="y"` (escaped); "" if none */
    char *values;      /* the raw label values, each NUL-terminated, back to back */
    size_t valueslen;  /* bytes in values, NULs included */
    uint64_t n;        /* counter: integer part of the total; histogram: observations */
    double x;          /* counter: fractional additions; gauge: the value; histogram: sum */
    uint64_t *buckets; /* histogram: observations per bucket (not cumulative), nbounds + 1 */
} metrics__series;

struct sync_counter {
    metrics__series s;
};
struct sync_gauge {
    metrics__series s;
};
struct sync_histogram {
    metrics__series s;
};

struct sync_metrics_family {
    sync_metrics_type type;                    /* what its series hold, and its TYPE line */
    char *name;                                /* the full name, prefix included */
    char *help;                                /* HELP text, escaped; NULL for none */
    size_t nlabels;                            /* label names, 0..SYNC_METRICS_MAX_LABELS */
    char *labelnames[SYNC_METRICS_MAX_LABELS]; /* owned */
    double bounds[SYNC_METRICS_MAX_BOUNDS];    /* histogram: upper bounds, increasing */
    size_t nbounds;                            /* histogram: bounds used (+Inf not counted) */
    metrics__series **series;                  /* in creation order, owned */
    size_t nseries, cap;                       /* used and allocated entries of series */
};

struct sync_metrics {
    char *prefix;               /* "syncedge", or "" for no prefix */
    sync_metrics_family **fams; /* in registration order, owned */
    size_t nfams, cap;          /* used and allocated entries of fams */
};

static const char *type_name(sync_metrics_type t)
{
    switch (t) {
    case SYNC_METRICS_COUNTER:
        return "counter";
    case SYNC_METRICS_GAUGE:
        return "gauge";
    case SYNC_METRICS_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

/* ---- names ---- */

/* Nonzero if s[0..n) matches [a-zA-Z_:][a-zA-Z0-9_:]* (colon allowed) or
 * [a-zA-Z_][a-zA-Z0-9_]* (not). Done by hand: <ctype.h> would follow the locale. */
static int name_ok(const char *s, size_t n, int colon)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(colon && c == ':') && !(i > 0 && c >= '0' && c <= '9'))
            return 0;
    }
    return 1;
}

/* Nonzero if a + as and b + bs are the same string (no concatenation allocated). */
static int cat_eq(const char *a, const char *as, const char *b, const char *bs)
{
    size_t la = strlen(a), las = strlen(as), lb = strlen(b), lbs = strlen(bs);

    if (la + las != lb + lbs)
        return 0;
    for (size_t i = 0; i < la + las; i++) {
        char ca = i < la ? a[i] : as[i - la];
        char cb = i < lb ? b[i] : bs[i - lb];
        if (ca != cb)
            return 0;
    }
    return 1;
}

/* The names a family's samples carry: a histogram "x" writes x_bucket, x_sum and x_count. */
static const char *const plain_suffixes[] = {""};
static const char *const histogram_suffixes[] = {"_bucket", "_sum", "_count"};

static size_t suffixes(sync_metrics_type t, const char *const **out)
{
    if (t == SYNC_METRICS_HISTOGRAM) {
        *out = histogram_suffixes;
        return 3;
    }
    *out = plain_suffixes;
    return 1;
}

/* Returns the family of m whose name or sample names collide with a new family `name` of
 * type t, or NULL. */
static const sync_metrics_family *clash(const sync_metrics *m, const char *name,
                                        sync_metrics_type t)
{
    const char *const *ns, *const *os;
    size_t nn = suffixes(t, &ns);

    for (size_t f = 0; f < m->nfams; f++) {
        const sync_metrics_family *o = m->fams[f];
        size_t on = suffixes(o->type, &os);
        if (strcmp(o->name, name) == 0)
            return o;
        for (size_t i = 0; i < nn; i++)
            for (size_t j = 0; j < on; j++)
                if (cat_eq(name, ns[i], o->name, os[j]))
                    return o;
    }
    return NULL;
}

/* ---- escaping ---- */

/* Returns a new copy of s with backslash and newline escaped, and double quote too if quote
 * (label values escape all three, HELP text only the first two), or NULL without memory. */
static char *escape(const char *s, int quote)
{
    size_t n = 0;
    char *out, *p;

    for (const char *q = s; *q; q++)
        n += (*q == '\\' || *q == '\n' || (quote && *q == '"')) ? 2 : 1;
    out = p = malloc(n + 1);
    if (!out)
        return NULL;
    for (const char *q = s; *q; q++) {
        if (*q == '\\' || *q == '\n' || (quote && *q == '"')) {
            *p++ = '\\';
            *p++ = *q == '\n' ? 'n' : *q;
        } else {
            *p++ = *q;
        }
    }
    *p = '\0';
    return out;
}

/* ---- registry ---- */

int sync_metrics_new(const char *prefix, sync_metrics **out, char *err, size_t errlen)
{
    sync_metrics *m;

    *out = NULL;
    if (!prefix)
        prefix = "";
    if (*prefix && !name_ok(prefix, strlen(prefix), 1))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid metric prefix (%s): must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                           prefix);
    m = calloc(1, sizeof *m);
    if (!m || !(m->prefix = strdup(prefix))) {
        free(m);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "Out of memory for the metrics registry");
    }
    *out = m;
    return SYNC_OK;
}

static void series_free(metrics__series *s)
{
    if (!s)
        return;
    free(s->labels);
    free(s->values);
    free(s->buckets);
    free(s);
}

static void family_free(sync_metrics_family *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        series_free(f->series[i]);
    free(f->series);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labelnames[i]);
    free(f->name);
    free(f->help);
    free(f);
}

void sync_metrics_free(sync_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nfams; i++)
        family_free(m->fams[i]);
    free(m->fams);
    free(m->prefix);
    free(m);
}

/* Splits the comma-separated label names into f->labelnames, checking each. */
static int parse_labels(sync_metrics_family *f, const char *labels, char *err, size_t errlen)
{
    const char *p = labels;

    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (f->nlabels == SYNC_METRICS_MAX_LABELS)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Metric %s has too many labels (%s): at most %d", f->name, labels,
                               SYNC_METRICS_MAX_LABELS);
        if (!name_ok(p, n, 0))
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid label name (%.*s) of metric %s: must match "
                               "[a-zA-Z_][a-zA-Z0-9_]*",
                               (int)n, p, f->name);
        if (n >= 2 && p[0] == '_' && p[1] == '_')
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid label name (%.*s) of metric %s: names starting with __ "
                               "are reserved for Prometheus",
                               (int)n, p, f->name);
        if (f->type == SYNC_METRICS_HISTOGRAM && n == 2 && memcmp(p, "le", 2) == 0)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid label name (le) of histogram %s: le names its buckets",
                               f->name);
        for (size_t i = 0; i < f->nlabels; i++)
            if (strlen(f->labelnames[i]) == n && memcmp(f->labelnames[i], p, n) == 0)
                return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                                   "Duplicate label name (%.*s) of metric %s", (int)n, p, f->name);
        if (!(f->labelnames[f->nlabels] = strndup(p, n)))
            return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "Out of memory for metric %s", f->name);
        f->nlabels++;
        p = end ? end + 1 : NULL;
        if (p && !*p) /* "table," */
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid label name () of metric %s: must match "
                               "[a-zA-Z_][a-zA-Z0-9_]*",
                               f->name);
    }
    return SYNC_OK;
}

/* Copies the histogram bounds into f after checking them. */
static int set_bounds(sync_metrics_family *f, const double *bounds, size_t nbounds, char *err,
                      size_t errlen)
{
    if (nbounds > SYNC_METRICS_MAX_BOUNDS)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid buckets of histogram %s: %zu bounds, at most %d", f->name,
                           nbounds, SYNC_METRICS_MAX_BOUNDS);
    if (nbounds && !bounds)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid buckets of histogram %s: no bounds given", f->name);
    for (size_t i = 0; i < nbounds; i++) {
        if (!isfinite(bounds[i]))
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid buckets of histogram %s: bound %zu (%g) is not finite "
                               "(the +Inf bucket is implicit)",
                               f->name, i, bounds[i]);
        if (i > 0 && !(bounds[i] > bounds[i - 1]))
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid buckets of histogram %s: bound %zu (%g) is not greater "
                               "than the one before (%g)",
                               f->name, i, bounds[i], bounds[i - 1]);
        f->bounds[i] = bounds[i];
    }
    f->nbounds = nbounds;
    return SYNC_OK;
}

/* Makes a series of f for values (f->nlabels of them, already checked) and appends it. */
static int series_add(sync_metrics_family *f, const char *const *values, metrics__series **out,
                      char *err, size_t errlen)
{
    metrics__series *s = calloc(1, sizeof *s);
    size_t lablen = 1, vlen = 0;
    char **esc = NULL;
    int rc = SYNC_ERR_NOMEM;

    *out = NULL;
    if (!s)
        goto err;
    s->fam = f;
    if (f->nlabels && !(esc = calloc(f->nlabels, sizeof *esc)))
        goto err;
    for (size_t i = 0; i < f->nlabels; i++) {
        if (!(esc[i] = escape(values[i], 1)))
            goto err;
        lablen += strlen(f->labelnames[i]) + strlen(esc[i]) + 4; /* name="value", */
        vlen += strlen(values[i]) + 1;
    }
    if (!(s->labels = malloc(lablen)) || !(s->values = malloc(vlen ? vlen : 1)))
        goto err;
    s->labels[0] = '\0';
    for (size_t i = 0, lp = 0, vp = 0; i < f->nlabels; i++) {
        size_t n = strlen(values[i]) + 1;
        lp +=
            (size_t)sprintf(s->labels + lp, "%s%s=\"%s\"", i ? "," : "", f->labelnames[i], esc[i]);
        memcpy(s->values + vp, values[i], n);
        vp += n;
    }
    s->valueslen = vlen;
    if (f->type == SYNC_METRICS_HISTOGRAM &&
        !(s->buckets = calloc(f->nbounds + 1, sizeof *s->buckets)))
        goto err;
    if (f->nseries == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        metrics__series **p;
        if (cap > SYNC_METRICS_MAX_SERIES)
            cap = SYNC_METRICS_MAX_SERIES;
        if (!(p = realloc(f->series, cap * sizeof *p)))
            goto err;
        f->series = p;
        f->cap = cap;
    }
    f->series[f->nseries++] = s;
    *out = s;
    rc = SYNC_OK;
    s = NULL;
err:
    for (size_t i = 0; esc && i < f->nlabels; i++)
        free(esc[i]);
    free(esc);
    series_free(s);
    if (rc != SYNC_OK)
        sync_seterr(err, errlen, rc, "Out of memory for a series of metric %s", f->name);
    return rc;
}

int sync_metrics_family_new(sync_metrics *m, sync_metrics_type type, const char *name,
                            const char *help, const char *labels, const double *bounds,
                            size_t nbounds, sync_metrics_family **out, char *err, size_t errlen)
{
    sync_metrics_family *f = NULL;
    const sync_metrics_family *other;
    metrics__series *s;
    size_t plen;
    int rc;

    *out = NULL;
    if (!name)
        name = "";
    if (!m)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "No metrics registry for metric %s (its creation failed)", name);
    if (type != SYNC_METRICS_COUNTER && type != SYNC_METRICS_GAUGE &&
        type != SYNC_METRICS_HISTOGRAM)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Invalid type (%d) of metric %s", (int)type,
                           name);
    if (!name_ok(name, strlen(name), 1))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid metric name (%s): must match [a-zA-Z_:][a-zA-Z0-9_:]*", name);
    if (type != SYNC_METRICS_HISTOGRAM && nbounds)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Metric %s is a %s: only a histogram has bucket bounds", name,
                           type_name(type));
    if (help && sync_utf8_check(help, strlen(help)) != strlen(help))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "HELP text of metric %s is not UTF-8",
                           name);
    rc = SYNC_ERR_NOMEM;
    plen = strlen(m->prefix);
    if (!(f = calloc(1, sizeof *f)) || !(f->name = malloc(plen + strlen(name) + 2)))
        goto err;
    f->type = type;
    sprintf(f->name, "%s%s%s", m->prefix, plen ? "_" : "", name);
    if (help && *help && !(f->help = escape(help, 0)))
        goto err;
    if ((other = clash(m, f->name, type)) != NULL) {
        rc = sync_seterr(err, errlen, SYNC_ERR_INVAL,
                         "Metric name %s (a %s) collides with the %s %s already registered",
                         f->name, type_name(type), type_name(other->type), other->name);
        goto out;
    }
    if ((rc = parse_labels(f, labels, err, errlen)) != SYNC_OK)
        goto out;
    if (type == SYNC_METRICS_HISTOGRAM && (rc = set_bounds(f, bounds, nbounds, err, errlen)))
        goto out;
    rc = SYNC_ERR_NOMEM;
    if (m->nfams == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        sync_metrics_family **p = realloc(m->fams, cap * sizeof *p);
        if (!p)
            goto err;
        m->fams = p;
        m->cap = cap;
    }
    /* A family without labels has exactly one series, there from the start. */
    if (f->nlabels == 0 && (rc = series_add(f, NULL, &s, err, errlen)) != SYNC_OK)
        goto out;
    m->fams[m->nfams++] = f;
    *out = f;
    return SYNC_OK;
err:
    sync_seterr(err, errlen, rc, "Out of memory for metric %s", name);
out:
    family_free(f);
    return rc;
}

/* Registers a family without labels and returns its one series. */
static int register_plain(sync_metrics *m, sync_metrics_type type, const char *name,
                          const char *help, const double *bounds, size_t nbounds,
                          metrics__series **out, char *err, size_t errlen)
{
    sync_metrics_family *f;
    int rc = sync_metrics_family_new(m, type, name, help, NULL, bounds, nbounds, &f, err, errlen);

    *out = rc == SYNC_OK ? f->series[0] : NULL;
    return rc;
}

int sync_metrics_counter(sync_metrics *m, const char *name, const char *help, sync_counter **out,
                         char *err, size_t errlen)
{
    metrics__series *s;
    int rc = register_plain(m, SYNC_METRICS_COUNTER, name, help, NULL, 0, &s, err, errlen);

    *out = (sync_counter *)s; /* s is the first (only) member of a sync_counter */
    return rc;
}

int sync_metrics_gauge(sync_metrics *m, const char *name, const char *help, sync_gauge **out,
                       char *err, size_t errlen)
{
    metrics__series *s;
    int rc = register_plain(m, SYNC_METRICS_GAUGE, name, help, NULL, 0, &s, err, errlen);

    *out = (sync_gauge *)s;
    return rc;
}

int sync_metrics_histogram(sync_metrics *m, const char *name, const char *help,
                           const double *bounds, size_t nbounds, sync_histogram **out, char *err,
                           size_t errlen)
{
    metrics__series *s;
    int rc =
        register_plain(m, SYNC_METRICS_HISTOGRAM, name, help, bounds, nbounds, &s, err, errlen);

    *out = (sync_histogram *)s;
    return rc;
}

/* Finds or creates the series of f (which must be of type t) with these label values. */
static int lookup(sync_metrics_family *f, sync_metrics_type t, const char *const *values,
                  metrics__series **out, char *err, size_t errlen)
{
    size_t vlen = 0;

    *out = NULL;
    if (!f)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "No metric family to look a %s up in (its registration failed)",
                           type_name(t));
    if (f->type != t)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Metric %s is a %s, not a %s", f->name,
                           type_name(f->type), type_name(t));
    for (size_t i = 0; i < f->nlabels; i++) {
        if (!values || !values[i])
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Metric %s: label %s has no value (NULL)", f->name,
                               f->labelnames[i]);
        size_t n = strlen(values[i]);
        if (sync_utf8_check(values[i], n) != n)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Metric %s: the value of label %s is not UTF-8", f->name,
                               f->labelnames[i]);
        vlen += n + 1;
    }
    for (size_t k = 0; k < f->nseries; k++) {
        const metrics__series *s = f->series[k];
        const char *v = s->values;
        size_t i;
        if (s->valueslen != vlen)
            continue;
        for (i = 0; i < f->nlabels; i++, v += strlen(v) + 1)
            if (strcmp(v, values[i]) != 0)
                break;
        if (i == f->nlabels) {
            *out = f->series[k];
            return SYNC_OK;
        }
    }
    if (f->nseries >= SYNC_METRICS_MAX_SERIES)
        return sync_seterr(err, errlen, SYNC_ERR_TOOBIG,
                           "Metric %s already has %d series, the most a family may have: new "
                           "label values (%s=\"%s\"%s) refused",
                           f->name, SYNC_METRICS_MAX_SERIES, f->labelnames[0], values[0],
                           f->nlabels > 1 ? ", ..." : "");
    return series_add(f, values, out, err, errlen);
}

int sync_metrics_counter_labeled(sync_metrics_family *f, const char *const *values,
                                 sync_counter **out, char *err, size_t errlen)
{
    metrics__series *s;
    int rc = lookup(f, SYNC_METRICS_COUNTER, values, &s, err, errlen);

    *out = (sync_counter *)s;
    return rc;
}

int sync_metrics_gauge_labeled(sync_metrics_family *f, const char *const *values, sync_gauge **out,
                               char *err, size_t errlen)
{
    metrics__series *s;
    int rc = lookup(f, SYNC_METRICS_GAUGE, values, &s, err, errlen);

    *out = (sync_gauge *)s;
    return rc;
}

int sync_metrics_histogram_labeled(sync_metrics_family *f, const char *const *values,
                                   sync_histogram **out, char *err, size_t errlen)
{
    metrics__series *s;
    int rc = lookup(f, SYNC_METRICS_HISTOGRAM, values, &s, err, errlen);

    *out = (sync_histogram *)s;
    return rc;
}

/* ---- updates ---- */

void sync_metrics_counter_inc(sync_counter *c)
{
    if (c)
        c->s.n++;
}

void sync_metrics_counter_add(sync_counter *c, uint64_t n)
{
    if (c)
        c->s.n += n;
}

void sync_metrics_counter_addf(sync_counter *c, double v)
{
    if (c && v > 0) /* false for NaN too */
        c->s.x += v;
}

void sync_metrics_gauge_set(sync_gauge *g, double v)
{
    if (g)
        g->s.x = v;
}

void sync_metrics_gauge_add(sync_gauge *g, double v)
{
    if (g)
        g->s.x += v;
}

void sync_metrics_histogram_observe(sync_histogram *h, double v)
{
    const sync_metrics_family *f;
    size_t lo = 0, hi;

    if (!h || isnan(v))
        return;
    f = h->s.fam;
    /* The first bound >= v; none (lo == nbounds) is the +Inf bucket. */
    hi = f->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    h->s.buckets[lo]++;
    h->s.n++;
    h->s.x += v;
}

/* ---- rendering ---- */

typedef struct metrics__buf {
    char *p;         /* the text, NUL-terminated; NULL before the first put */
    size_t len, cap; /* its length (without the NUL) and allocated size */
    int nomem;       /* an allocation failed: the text is incomplete */
} metrics__buf;

static void put(metrics__buf *b, const char *s)
{
    size_t n = strlen(s);

    if (b->nomem)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;
        while (b->len + n + 1 > cap)
            cap *= 2;
        if (!(p = realloc(b->p, cap))) {
            b->nomem = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* Formats v as Prometheus reads it: +Inf, -Inf, NaN, or the fewest significant digits (up to
 * 17) that read back as the same double. printf follows LC_NUMERIC, which the daemons leave
 * at "C" (they never call setlocale), so the decimal point is a point. */
static void fmt_double(char *b, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(b, n, "NaN");
    } else if (isinf(v)) {
        snprintf(b, n, v > 0 ? "+Inf" : "-Inf");
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(b, n, "%.*g", prec, v);
            if (strtod(b, NULL) == v)
                break;
        }
    }
}

static void fmt_u64(char *b, size_t n, uint64_t v)
{
    snprintf(b, n, "%" PRIu64, v);
}

/* Writes one sample line: NAME SUFFIX{LABELS[,EXTRA]} VALUE. */
static void sample(metrics__buf *b, const char *name, const char *suffix, const char *labels,
                   const char *extra, const char *value)
{
    put(b, name);
    put(b, suffix);
    if (*labels || extra) {
        put(b, "{");
        put(b, labels);
        if (extra) {
            put(b, *labels ? "," : "");
            put(b, extra);
        }
        put(b, "}");
    }
    put(b, " ");
    put(b, value);
    put(b, "\n");
}

static void render_series(metrics__buf *b, const sync_metrics_family *f, const metrics__series *s)
{
    char num[64], le[80];
    uint64_t cum = 0;

    switch (f->type) {
    case SYNC_METRICS_COUNTER:
        /* Integers stay exact; a fractional part makes the total a double. */
        if (s->x == 0)
            fmt_u64(num, sizeof num, s->n);
        else
            fmt_double(num, sizeof num, (double)s->n + s->x);
        sample(b, f->name, "", s->labels, NULL, num);
        break;
    case SYNC_METRICS_GAUGE:
        fmt_double(num, sizeof num, s->x);
        sample(b, f->name, "", s->labels, NULL, num);
        break;
    case SYNC_METRICS_HISTOGRAM:
        for (size_t i = 0; i <= f->nbounds; i++) {
            cum += s->buckets[i];
            if (i < f->nbounds)
                fmt_double(num, sizeof num, f->bounds[i]);
            snprintf(le, sizeof le, "le=\"%s\"", i < f->nbounds ? num : "+Inf");
            fmt_u64(num, sizeof num, cum);
            sample(b, f->name, "_bucket", s->labels, le, num);
        }
        fmt_double(num, sizeof num, s->x);
        sample(b, f->name, "_sum", s->labels, NULL, num);
        fmt_u64(num, sizeof num, s->n);
        sample(b, f->name, "_count", s->labels, NULL, num);
        break;
    }
}

int sync_metrics_render(sync_metrics *m, char **out, size_t *len)
{
    metrics__buf b = {NULL, 0, 0, 0};

    *out = NULL;
    *len = 0;
    put(&b, ""); /* an empty registry is an empty string, not NULL */
    for (size_t i = 0; i < m->nfams; i++) {
        const sync_metrics_family *f = m->fams[i];
        if (f->nseries == 0)
            continue;
        if (f->help) {
            put(&b, "# HELP ");
            put(&b, f->name);
            put(&b, " ");
            put(&b, f->help);
            put(&b, "\n");
        }
        put(&b, "# TYPE ");
        put(&b, f->name);
        put(&b, " ");
        put(&b, type_name(f->type));
        put(&b, "\n");
        for (size_t k = 0; k < f->nseries; k++)
            render_series(&b, f, f->series[k]);
    }
    if (b.nomem) {
        free(b.p);
        return SYNC_ERR_NOMEM;
    }
    *out = b.p;
    *len = b.len;
    return SYNC_OK;
}

/* Writes all n bytes of p to fd (write may take less, or be interrupted). */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int sync_metrics_write(sync_metrics *m, const char *path, char *err, size_t errlen)
{
    char *text = NULL, *tmp = NULL;
    size_t len, tlen = strlen(path) + 32;
    int fd = -1, rc, e;

    if (sync_metrics_render(m, &text, &len) != SYNC_OK || !(tmp = malloc(tlen))) {
        free(text);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "Out of memory writing metrics to %s",
                           path);
    }
    /* The process id keeps two processes given the same path from writing one temp file. */
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_IO, "Cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    /* 0644 whatever the umask: node_exporter usually runs as another user. */
    if (fchmod(fd, 0644) != 0 || write_all(fd, text, len) != 0) {
        e = errno;
        close(fd);
        rc = sync_seterr(err, errlen, SYNC_ERR_IO, "Cannot write %s: %s", tmp, strerror(e));
        goto unlink;
    }
    /* No fsync, on purpose. rename() alone makes the replacement atomic for readers: the
     * collector opens either the old complete file or the new one, never a torn one. fsync
     * would only add durability across a power loss, and this file needs none: it is
     * rewritten every few seconds and describes a process that a reboot restarts anyway.
     * After a power loss some file systems can leave the renamed file empty or short; the
     * collector then reports node_textfile_scrape_error until the daemon's next write
     * replaces it. Not syncing spares an SD card a flush every refresh and the main loop a
     * stall of up to seconds on a busy disk. */
    if (close(fd) != 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_IO, "Cannot write %s: %s", tmp, strerror(errno));
        goto unlink;
    }
    if (rename(tmp, path) != 0) {
        rc = sync_seterr(err, errlen, SYNC_ERR_IO, "Cannot rename %s to %s: %s", tmp, path,
                         strerror(errno));
        goto unlink;
    }
    rc = SYNC_OK;
    goto out;
unlink:
    unlink(tmp);
out:
    free(tmp);
    free(text);
    return rc;
}

int sync_metrics_counter_1(sync_metrics *m, const char *name, const char *help, const char *label,
                           const char *value, sync_counter **out, char *err, size_t errlen)
{
    sync_metrics_family *f;
    *out = NULL;
    int rc = sync_metrics_family_new(m, SYNC_METRICS_COUNTER, name, help, label, NULL, 0, &f, err,
                                     errlen);
    return rc == SYNC_OK ? sync_metrics_counter_labeled(f, &value, out, err, errlen) : rc;
}

int sync_metrics_gauge_1(sync_metrics *m, const char *name, const char *help, const char *label,
                         const char *value, sync_gauge **out, char *err, size_t errlen)
{
    sync_metrics_family *f;
    *out = NULL;
    int rc = sync_metrics_family_new(m, SYNC_METRICS_GAUGE, name, help, label, NULL, 0, &f, err,
                                     errlen);
    return rc == SYNC_OK ? sync_metrics_gauge_labeled(f, &value, out, err, errlen) : rc;
}

int sync_metrics_histogram_1(sync_metrics *m, const char *name, const char *help,
                             const char *label, const char *value, const double *bounds,
                             size_t nbounds, sync_histogram **out, char *err, size_t errlen)
{
    sync_metrics_family *f;
    *out = NULL;
    int rc = sync_metrics_family_new(m, SYNC_METRICS_HISTOGRAM, name, help, label, bounds,
                                     nbounds, &f, err, errlen);
    return rc == SYNC_OK ? sync_metrics_histogram_labeled(f, &value, out, err, errlen) : rc;
}
