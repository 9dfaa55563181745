/* metrics.h - counters, gauges and histograms rendered in Prometheus' text exposition format
 * (version 0.0.4), written to a file for node_exporter's textfile collector.
 *
 * A daemon makes one registry at start-up (sync_metrics_new), registers its metric families
 * there once, keeps the handles, and updates them on its hot paths: an update is O(1), never
 * allocates and never fails. Every few seconds it calls sync_metrics_write, which replaces the
 * file atomically (see docs/metrics.md for node_exporter's side).
 *
 * Names. Every metric is named PREFIX_NAME (PREFIX given to sync_metrics_new, e.g. "syncedge").
 * The full name must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* and
 * must not start with "__" (reserved by Prometheus); a histogram may not have a label "le".
 * Names that would collide in the output are refused too (a histogram "x" owns x_bucket, x_sum
 * and x_count). Counters should end in _total and carry a unit (_seconds, _bytes), as
 * Prometheus' naming guide asks; that is not enforced.
 *
 * Labels. A family is registered with its label names (at most SYNC_METRICS_MAX_LABELS);
 * each distinct tuple of label values is one series, created on first lookup. A family holds at
 * most SYNC_METRICS_MAX_SERIES series: beyond that a lookup of new values is refused with
 * SYNC_ERR_TOOBIG (existing series keep working), so a label fed from the outside (a device id)
 * can never grow the registry, the file or Prometheus' memory without bound. Label values are
 * any UTF-8 text; backslash, double quote and newline are escaped in the output.
 *
 * Numbers. Integer counters, bucket counts and _count are printed as exact integers; doubles
 * with the fewest digits (at most 17) that read back as the same double; infinities and NaN as
 * +Inf, -Inf and NaN. No sample carries a timestamp (the textfile collector refuses them).
 * node_exporter publishes the file's modification time as node_textfile_mtime_seconds{file=...},
 * so no "written at" metric is added here: alert on time() - node_textfile_mtime_seconds to
 * notice a daemon that stopped refreshing its file.
 *
 * Threads. Nothing here locks and the values are not atomic: one thread (the daemon's main
 * loop) registers, updates, renders and writes. Another thread (a Paho callback) must hand its
 * updates to that thread instead of calling these functions.
 *
 * A NULL handle is accepted by every update function and does nothing, and a NULL registry or
 * family makes registration and lookups fail with SYNC_ERR_INVAL (and a NULL handle), so a
 * daemon whose registration failed (and logged why) can run on without metrics.
 */
#ifndef SYNC_METRICS_H
#define SYNC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define SYNC_METRICS_MAX_LABELS 4   /* label names per family */
#define SYNC_METRICS_MAX_SERIES 256 /* series (label value tuples) per family */
#define SYNC_METRICS_MAX_BOUNDS 32  /* histogram bucket upper bounds, +Inf not counted */

typedef struct sync_metrics sync_metrics;               /* the registry */
typedef struct sync_metrics_family sync_metrics_family; /* one name, its HELP/TYPE, its series */
typedef struct sync_counter sync_counter;               /* one series of a counter */
typedef struct sync_gauge sync_gauge;                   /* one series of a gauge */
typedef struct sync_histogram sync_histogram;           /* one series of a histogram */

typedef enum sync_metrics_type {
    SYNC_METRICS_COUNTER,
    SYNC_METRICS_GAUGE,
    SYNC_METRICS_HISTOGRAM,
} sync_metrics_type;

/* ---- registry ---- */

/* Makes an empty registry whose metric names all start with "PREFIX_" (NULL or "" for none).
 * On success *out owns it (release with sync_metrics_free); on error *out is NULL and err says
 * why (SYNC_ERR_INVAL for a prefix that is not a valid metric name, SYNC_ERR_NOMEM). */
int sync_metrics_new(const char *prefix, sync_metrics **out, char *err, size_t errlen);

/* Frees the registry, its families and every series; all their handles become invalid.
 * NULL is accepted. */
void sync_metrics_free(sync_metrics *m);

/* ---- registration (at start-up; families are rendered in registration order) ---- */

/* Registers a family without labels and returns its one series in *out, owned by m. help is
 * the HELP text (any text; NULL or "" for no HELP line). On error *out is NULL, nothing is
 * registered, and the code is SYNC_ERR_INVAL (bad or colliding name, with a message naming
 * it) or SYNC_ERR_NOMEM. */
int sync_metrics_counter(sync_metrics *m, const char *name, const char *help, sync_counter **out,
                         char *err, size_t errlen);
int sync_metrics_gauge(sync_metrics *m, const char *name, const char *help, sync_gauge **out,
                       char *err, size_t errlen);
/* bounds: nbounds (0..SYNC_METRICS_MAX_BOUNDS) finite upper bounds in strictly increasing
 * order, copied; the +Inf bucket is implicit. An observation v lands in the first bucket with
 * v <= bound (Prometheus' "le": less or equal). */
int sync_metrics_histogram(sync_metrics *m, const char *name, const char *help,
                           const double *bounds, size_t nbounds, sync_histogram **out, char *err,
                           size_t errlen);

/* Registers a family with labels: labels is a comma-separated list of 1..SYNC_METRICS_MAX_LABELS
 * label names ("table" or "device,table"); bounds/nbounds are used only for a histogram (else
 * NULL and 0). *out is owned by m. The family has no series (and renders nothing) until a
 * sync_metrics_*_labeled lookup creates one. Errors as for sync_metrics_counter. */
int sync_metrics_family_new(sync_metrics *m, sync_metrics_type type, const char *name,
                            const char *help, const char *labels, const double *bounds,
                            size_t nbounds, sync_metrics_family **out, char *err, size_t errlen);

/* Finds the series of family f with these label values (values[i] for the i-th label name; as
 * many values as the family has labels), creating it with value 0 on first use. Look a series
 * up once (or once per new value) and keep the handle: the lookup is a linear scan, and the
 * first one allocates. The handle is owned by the registry. On error *out is NULL and the code
 * is SYNC_ERR_TOOBIG (the family already has SYNC_METRICS_MAX_SERIES series: new values are
 * refused, never added), SYNC_ERR_INVAL (f is of another type, a value is NULL or not UTF-8),
 * or SYNC_ERR_NOMEM. */
int sync_metrics_counter_labeled(sync_metrics_family *f, const char *const *values,
                                 sync_counter **out, char *err, size_t errlen);
int sync_metrics_gauge_labeled(sync_metrics_family *f, const char *const *values, sync_gauge **out,
                               char *err, size_t errlen);
int sync_metrics_histogram_labeled(sync_metrics_family *f, const char *const *values,
                                   sync_histogram **out, char *err, size_t errlen);

/* A family with one label that has one series, label="value" (a daemon's device or consumer id,
 * so several processes on one host keep their series apart): family_new + *_labeled in one
 * call. Errors as for those. */
int sync_metrics_counter_1(sync_metrics *m, const char *name, const char *help, const char *label,
                           const char *value, sync_counter **out, char *err, size_t errlen);
int sync_metrics_gauge_1(sync_metrics *m, const char *name, const char *help, const char *label,
                         const char *value, sync_gauge **out, char *err, size_t errlen);
int sync_metrics_histogram_1(sync_metrics *m, const char *name, const char *help,
                             const char *label, const char *value, const double *bounds,
                             size_t nbounds, sync_histogram **out, char *err, size_t errlen);

/* ---- updates (hot path: O(1), no allocation, no failure; NULL handles are ignored) ---- */

/* Adds 1 or n to a counter. Integer amounts are kept exactly (as a uint64). */
void sync_metrics_counter_inc(sync_counter *c);
void sync_metrics_counter_add(sync_counter *c, uint64_t n);
/* Adds a fractional amount (seconds, say). Counters only go up: an amount that is not > 0
 * (negative, zero, NaN) is ignored. Once a counter has a fractional part it renders as a
 * double (the integer part then reads back exactly only below 2^53). */
void sync_metrics_counter_addf(sync_counter *c, double v);

/* Sets a gauge, or moves it up (v > 0) or down (v < 0). */
void sync_metrics_gauge_set(sync_gauge *g, double v);
void sync_metrics_gauge_add(sync_gauge *g, double v);

/* Records one observation: its bucket (found by binary search over the bounds), _count and
 * _sum. A NaN observation is ignored (it would turn _sum into NaN for good). */
void sync_metrics_histogram_observe(sync_histogram *h, double v);

/* ---- output ---- */

/* Renders the whole registry in the text exposition format into a new NUL-terminated string:
 * *out is the caller's to free(), *len its length without the NUL. Returns SYNC_OK or
 * SYNC_ERR_NOMEM (then *out is NULL). Families without series are left out. */
int sync_metrics_render(sync_metrics *m, char **out, size_t *len);

/* Renders the registry and replaces the file at path with it atomically, mode 0644: the text
 * is written to "PATH.tmp.PID" in the same directory (a name the textfile collector ignores,
 * as it reads only *.prom) and renamed over path, so a reader sees the old file or the new
 * one, never a part. Returns SYNC_OK, SYNC_ERR_IO (with the path and the system's reason in
 * err; the temporary file is removed) or SYNC_ERR_NOMEM. */
int sync_metrics_write(sync_metrics *m, const char *path, char *err, size_t errlen);

#endif
