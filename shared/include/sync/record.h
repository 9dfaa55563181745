/* record.h - the wire messages of the sync protocol (docs/protocol.md is the normative text,
 * with the CDDL): the upstream batch of change records, the cloud's ack, the downstream delta
 * and the retained row state.
 *
 * Encoders append to a sync_cbuf. Decoders are streaming and allocation-free: they validate the
 * structure strictly (key order, types, sizes against sync_limits) and hand each record/change
 * to a callback as it is read; strings in what they hand out point into the input buffer.
 * A decoder that returns an error may already have called the callback for earlier items, so
 * a consumer that must not act on half a batch decodes twice: once to validate, once to act.
 */
#ifndef SYNC_RECORD_H
#define SYNC_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "sync/cbor.h"
#include "sync/value.h"

#define SYNC_MAX_COLS 63 /* columns per table (a 64-bit changed-column mask fits them) */
#define SYNC_MAX_NAME 63 /* bytes in a table or column name */
#define SYNC_MAX_ID 64   /* bytes in a tenant or device id */

typedef enum sync_op {
    SYNC_OP_INSERT = 0, /* put the full row (also used when the edge re-inserts a key) */
    SYNC_OP_UPDATE = 1, /* change the listed columns of an existing row */
    SYNC_OP_DELETE = 2, /* delete the row (leaves a tombstone in the cloud) */
    SYNC_OP_LEAVE = 3,  /* downstream only, in a partition's changes: the row moved to another
                           partition (docs/protocol.md, "Partitions"); no columns */
} sync_op;

/* Ops that carry no columns. */
#define SYNC_OP_NOCOLS(op) ((op) == SYNC_OP_DELETE || (op) == SYNC_OP_LEAVE)

/* Size limits a decoder enforces; the cloud takes them from its config. */
typedef struct sync_limits {
    size_t max_records; /* records in one batch / changes in one delta */
    size_t max_value;   /* bytes in one text or blob value */
} sync_limits;

/* Defaults: 10000 records, 1 MiB values. */
void sync_limits_default(sync_limits *l);

typedef struct sync_colval {
    const char *name; /* column name, NOT NUL-terminated, points into the input */
    size_t name_len;
    sync_value v;
} sync_colval;

/* ---- upstream batch: sync/{tenant}/dev/{device}/up ---- */

typedef struct sync_batch_hdr {
    uint32_t schema_version; /* the edge's schema file version */
    const char *device;      /* not NUL-terminated */
    size_t device_len;
    uint64_t base_seq; /* record seq = base_seq + offset */
    size_t nrecords;
} sync_batch_hdr;

typedef struct sync_record {
    const char *table; /* not NUL-terminated */
    size_t table_len;
    sync_value key; /* primary key value */
    sync_op op;
    uint64_t base_version; /* server version the edit was made on (0 = none known) */
    uint64_t hlc;          /* hybrid logical clock of the edit */
    uint64_t seq;          /* absolute device sequence number */
    size_t ncols;          /* 0 for deletes */
    sync_colval cols[SYNC_MAX_COLS];
} sync_record;

/* Writes the batch header. The caller then appends exactly hdr->nrecords records with
 * sync_record_encode. */
int sync_batch_encode_hdr(sync_cbuf *b, const sync_batch_hdr *hdr);
/* Appends one record; base_seq is the batch's, so the record carries seq - base_seq. */
int sync_record_encode(sync_cbuf *b, const sync_record *r, uint64_t base_seq);

typedef int (*sync_batch_hdr_cb)(void *ctx, const sync_batch_hdr *hdr);
typedef int (*sync_record_cb)(void *ctx, const sync_record *r);

/* Decodes a batch. on_hdr is called once before the records (may be NULL); on_record once per
 * record. A callback returning nonzero stops decoding and that value is returned. Returns
 * SYNC_OK, SYNC_ERR_DECODE (shape), SYNC_ERR_TOOBIG (limits) with a message in err.
 * If hdr_out is not NULL it receives the header once it has been read (also on later errors). */
int sync_batch_decode(const void *buf, size_t len, const sync_limits *lim, sync_batch_hdr *hdr_out,
                      sync_batch_hdr_cb on_hdr, sync_record_cb on_record, void *ctx, char *err,
                      size_t errlen);

/* ---- ack: sync/{tenant}/dev/{device}/ack ---- */

typedef enum sync_ack_status {
    SYNC_ACK_OK = 0,       /* batch processed; see per-record results */
    SYNC_ACK_REJECTED = 1, /* batch refused whole, nothing applied; reason given */
} sync_ack_status;

typedef enum sync_result {
    SYNC_R_APPLIED = 0,   /* applied cleanly; version is the row's new version */
    SYNC_R_WON = 1,       /* conflict, the edge's change won (applied); version is new */
    SYNC_R_LOST = 2,      /* conflict, the server's value was kept; row holds the winner */
    SYNC_R_DUPLICATE = 3, /* seq processed earlier (its first ack may have been lost): nothing
                             done; row holds the row's current state, version its version */
    SYNC_R_MERGED = 4,    /* conflict, merged column by column; row holds the merged state */
    SYNC_R_PENDING = 5,   /* conflict left for a person (manual policy); row holds the server's
                             state, which stays until the conflict is resolved */
    SYNC_R_REJECTED = 6,  /* refused by a rule (e.g. the table is owned by another device);
                             reason says why; nothing applied */
} sync_result;

/* 1 if a result of this code carries the row state (lost, duplicate, merged, pending). */
#define SYNC_RESULT_HAS_ROW(r)                                                                     \
    ((r) == SYNC_R_LOST || (r) == SYNC_R_DUPLICATE || (r) == SYNC_R_MERGED || (r) == SYNC_R_PENDING)

typedef struct sync_ack_hdr {
    uint64_t base_seq; /* the acked batch's base_seq */
    uint64_t last_seq; /* highest seq the ack covers: the edge may drop outbox rows <= it */
    sync_ack_status status;
    const char *reason; /* REJECTED only, not NUL-terminated */
    size_t reason_len;
    size_t nresults;
} sync_ack_hdr;

typedef struct sync_ack_result {
    uint64_t seq; /* absolute seq of the record */
    sync_result result;
    uint64_t version;   /* row version after the record (now, for DUPLICATE; 0 for REJECTED) */
    int has_row;        /* LOST, MERGED, PENDING: the row state follows, with deleted/cols */
    int deleted;        /* that state is a tombstone */
    const char *reason; /* REJECTED: why, not NUL-terminated */
    size_t reason_len;
    size_t ncols;
    sync_colval cols[SYNC_MAX_COLS];
} sync_ack_result;

int sync_ack_encode_hdr(sync_cbuf *b, const sync_ack_hdr *hdr);
int sync_ack_result_encode(sync_cbuf *b, const sync_ack_result *r, uint64_t base_seq);

typedef int (*sync_ack_hdr_cb)(void *ctx, const sync_ack_hdr *hdr);
typedef int (*sync_ack_result_cb)(void *ctx, const sync_ack_result *r);
int sync_ack_decode(const void *buf, size_t len, const sync_limits *lim, sync_ack_hdr_cb on_hdr,
                    sync_ack_result_cb on_result, void *ctx, char *err, size_t errlen);

/* ---- downstream delta: sync/{tenant}/delta/{table} ---- */

typedef struct sync_delta_hdr {
    const char *table; /* not NUL-terminated */
    size_t table_len;
    uint64_t prev_cseq; /* cseq of the last change in the previous delta on this topic (0: none) */
    size_t nchanges;
} sync_delta_hdr;

typedef struct sync_change {
    sync_value key;
    sync_op op;
    uint64_t version; /* row version after this change */
    uint64_t cseq;    /* server change sequence, increasing across the store */
    uint64_t hlc;
    const char *origin; /* device that wrote it, not NUL-terminated */
    size_t origin_len;
    size_t ncols; /* changed columns (all columns for an insert); 0 for delete */
    sync_colval cols[SYNC_MAX_COLS];
} sync_change;

int sync_delta_encode_hdr(sync_cbuf *b, const sync_delta_hdr *hdr);
int sync_change_encode(sync_cbuf *b, const sync_change *c);

typedef int (*sync_delta_hdr_cb)(void *ctx, const sync_delta_hdr *hdr);
typedef int (*sync_change_cb)(void *ctx, const sync_change *c);
int sync_delta_decode(const void *buf, size_t len, const sync_limits *lim, sync_delta_hdr_cb on_hdr,
                      sync_change_cb on_change, void *ctx, char *err, size_t errlen);

/* ---- retained row state: sync/{tenant}/rows/{table}/{key} ----
 * Encoded as a delta-shaped change of the full row: same sync_change struct, op is INSERT for a
 * live row (cols = every column) or DELETE for a tombstone (ncols = 0). */
int sync_row_encode(sync_cbuf *b, const char *table, size_t table_len, const sync_change *c);
int sync_row_decode(const void *buf, size_t len, const sync_limits *lim, sync_change *out,
                    const char **table, size_t *table_len, char *err, size_t errlen);

/* ---- catch-up: request sync/{tenant}/dev/{device}/pull, response .../resp ----
 * A replica that missed changes asks for the rows of a table whose cseq is above its cursor;
 * the cloud answers with one page of full row states (tombstones as deletes) in cseq order.
 * Both travel as MQTT 5 request/response (Response Topic + Correlation Data). */

typedef struct sync_pull {
    const char *table; /* not NUL-terminated */
    size_t table_len;
    uint64_t after; /* the replica's cursor: rows with cseq > after are wanted */
    uint64_t limit; /* rows per page wanted (the cloud may send fewer) */
    int full;       /* 1: continuing a full resync: serve from `after` even if tombstones
                       below it were compacted (optional on the wire, default false) */
    int has_part;    /* 1: the pull is for one partition of the table (optional on the wire) */
    sync_value part; /* that partition's value: an integer or text (decoded text points into
                        the input) */
    int snap;           /* 1: a snapshot page, in key order (a new replica; docs/protocol.md,
                           "Catch-up"); after is then 0 */
    uint64_t snap_high; /* the snapshot's cseq from the first page's `next` (0: start one) */
    int has_snap_key;   /* 1: continue after snap_key (the last key of the previous page) */
    sync_value snap_key;
} sync_pull;

int sync_pull_encode(sync_cbuf *b, const sync_pull *p);
int sync_pull_decode(const void *buf, size_t len, sync_pull *out, char *err, size_t errlen);

typedef struct sync_page_hdr {
    const char *table; /* not NUL-terminated */
    size_t table_len;
    uint64_t after;     /* the request's cursor, echoed */
    uint64_t next;      /* the cursor after this page */
    int done;           /* 1: the replica is now up to date with the table as of `next` */
    uint64_t remaining; /* rows with cseq above next at the time of the page (for progress) */
    size_t nchanges;    /* rows in this page (may be 0) */
} sync_page_hdr;

/* Writes the page header; the caller then appends nchanges sync_change_encode items (an
 * INSERT with every column for a live row, a DELETE for a tombstone). */
int sync_page_encode_hdr(sync_cbuf *b, const sync_page_hdr *hdr);
typedef int (*sync_page_hdr_cb)(void *ctx, const sync_page_hdr *hdr);
int sync_page_decode(const void *buf, size_t len, const sync_limits *lim, sync_page_hdr_cb on_hdr,
                     sync_change_cb on_change, void *ctx, char *err, size_t errlen);

/* ---- head: sync/{tenant}/head, retained ----
 * The cseq of the newest change of every table, republished after changes and periodically, so
 * a replica that lost deltas (a broker that restarted from an older snapshot, an expired
 * session) notices even when no further delta comes. */

typedef struct sync_head_entry {
    const char *table; /* not NUL-terminated when decoded */
    size_t table_len;
    uint64_t cseq;
} sync_head_entry;

int sync_head_encode(sync_cbuf *b, uint64_t cseq, const sync_head_entry *tables, size_t n);
typedef int (*sync_head_cb)(void *ctx, const sync_head_entry *e);
int sync_head_decode(const void *buf, size_t len, uint64_t *cseq, sync_head_cb on_table, void *ctx,
                     char *err, size_t errlen);

#endif
