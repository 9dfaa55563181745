/* states.h - the retained JSON messages syncctl reads: a device's state and a cloud
 * consumer's statistics (docs/protocol.md "Device state"; docs/syncctl.md).
 *
 * Both are written by other programs, device states by devices, which are not trusted. Reading
 * one never fails on a field: a field that is missing or of the wrong type reads as absent
 * (CTL_NONE, -1, NaN or ""), text is cut to its buffer, and a map of tables keeps at most
 * CTL_STATE_MAX_TABLES entries. Only text that is no JSON object at all is an error. The
 * structs own nothing: they are plain values.
 */
#ifndef CTL_STATES_H
#define CTL_STATES_H

#include <stddef.h>
#include <stdint.h>

#define CTL_NONE UINT64_MAX     /* an absent number */
#define CTL_STATE_MAX_TABLES 64 /* tables kept of a cursor or lag map */
#define CTL_STATE_NAME_MAX 64   /* bytes kept of a table name or version */

/* One table's number in a device's cursor or lag map. */
typedef struct ctl_table_count {
    char name[CTL_STATE_NAME_MAX + 1]; /* the table (as sent: print it with care) */
    uint64_t n;                        /* its number */
} ctl_table_count;

/* A device's retained state. */
typedef struct ctl_devstate {
    int online;       /* 1, 0, or -1 when absent */
    int clean;        /* 1, 0, or -1 when absent (it is sent when online is false) */
    uint64_t pending; /* changes in the outbox, or CTL_NONE */
    uint64_t ts;      /* when the device wrote it (ms since the epoch), or CTL_NONE */
    char version[CTL_STATE_NAME_MAX + 1]; /* syncedge's version, or "" */
    uint64_t last_sync; /* replicas: last catch-up or delta applied (ms; 0 never) */
    uint64_t rebuilds;  /* replicas: whole-table rebuilds since syncedge started, or CTL_NONE */
    int has_cursor;     /* replicas: the cursor map was there */
    ctl_table_count cursor[CTL_STATE_MAX_TABLES]; /* per table: cseq reflected locally */
    size_t ncursor;                               /* entries used */
    int has_lag;                                  /* replicas: the lag map was there */
    ctl_table_count lag[CTL_STATE_MAX_TABLES];    /* per table: changes behind the head */
    size_t nlag;                                  /* entries used */
    uint64_t lag_total; /* sum of every lag entry read (saturates), CTL_NONE without */
    int has_pull;       /* a catch-up runs */
    char pull_table[CTL_STATE_NAME_MAX + 1]; /* its table, or "" */
    uint64_t pull_done;                      /* rows received so far, or CTL_NONE */
    uint64_t pull_total;                     /* rows expected, or CTL_NONE */
    double pull_rate;                        /* rows per second, or NaN */
} ctl_devstate;

/* A cloud consumer's retained statistics. */
typedef struct ctl_stats {
    char consumer[CTL_STATE_NAME_MAX + 1]; /* the name it gives itself, or "" */
    int online;                            /* 1, 0, or -1 when absent */
    uint64_t ts, started;                  /* ms since the epoch, or CTL_NONE */
    uint64_t interval_s;                   /* seconds between two reports, or CTL_NONE */
    /* Store-wide: every consumer of a shared store reports the same (take the maximum). */
    uint64_t devices_active, devices_known, conflicts_pending;
    /* This consumer's own counters since it started (add them up). */
    uint64_t batches_applied, changes_received, changes_applied, duplicates, conflicts, rejections;
    double changes_per_s;                   /* or NaN */
    double apply_p50, apply_p99, apply_max; /* ms per batch, or NaN */
} ctl_stats;

/* Reads a device's state from len bytes of JSON. Returns SYNC_OK, or an error with the
 * reason in err (not JSON, or not an object); *s is filled (all absent) either way. */
int ctl_devstate_read(const char *json, size_t len, ctl_devstate *s, char *err, size_t errlen);

/* Reads a consumer's statistics the same way. */
int ctl_stats_read(const char *json, size_t len, ctl_stats *s, char *err, size_t errlen);

#endif
