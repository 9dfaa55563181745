/* record.c - encoders and strict streaming decoders for the four wire messages: batch, ack,
 * delta and row (the CDDL is in docs/protocol.md).
 *
 * Promises:
 * - Encoders write exactly the CDDL shape with shortest-form integers. Given input that the
 *   decoders would refuse (an empty name, cols on a delete, an unknown op, ...), an encoder
 *   writes nothing and sets the buffer's sticky error to SYNC_ERR_INVAL, so a caller that only
 *   checks sync_cbuf.err at the end still notices.
 * - Decoders accept exactly the CDDL: map keys are small unsigned integers in strictly
 *   ascending order (so out-of-order, duplicate and unknown keys are errors), required keys
 *   must be present, lengths are definite, and sizes are checked against sync_limits. Nothing
 *   is allocated: each record/change/result is decoded into one struct on the stack and
 *   handed to the callback. Strings point into the input.
 * - Every error message starts with where the problem is ("batch: record 3: column 'qty': ")
 *   and says what is wrong, with the byte offset when one is known. Records, results and
 *   changes are numbered from 0, in the order they appear.
 * - When a callback stops a decode by returning nonzero, that value is returned and err is left
 *   as it was, so a callback may put its own message there (through its ctx).
 * - sync_limits may be NULL in every decoder: the defaults apply.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sync/err.h"
#include "sync/record.h"

void sync_limits_default(sync_limits *l)
{
    l->max_records = 10000;
    l->max_value = 1024 * 1024;
}

/* ==== decoding ==== */

/* The state of one decode call: the reader plus what an error message needs to say where. */
typedef struct rec__dec {
    sync_creader r;     /* position in the input */
    sync_limits lim;    /* the caller's limits, or the defaults */
    char *err;          /* caller's message buffer (may be NULL) */
    size_t errlen;      /* its size */
    const char *msg;    /* message kind: "batch", "ack", "delta", "row" */
    const char *item;   /* "record", "result", "change" while inside one, else NULL */
    size_t index;       /* number of that item, from 0 */
    const char *field;  /* name of the field being read, or NULL */
    const uint8_t *col; /* name of the column whose value is being read, or NULL */
    size_t col_len;     /* its length */
} rec__dec;

static void rec__start(rec__dec *d, const void *buf, size_t len, const sync_limits *lim,
                       const char *msg, char *err, size_t errlen)
{
    sync_creader_init(&d->r, buf, len);
    if (lim != NULL)
        d->lim = *lim;
    else
        sync_limits_default(&d->lim);
    d->err = err;
    d->errlen = errlen;
    d->msg = msg;
    d->item = NULL;
    d->index = 0;
    d->field = NULL;
    d->col = NULL;
    d->col_len = 0;
}

/* Offset of the next unread byte, which is where the next token starts. */
static size_t rec__at(const rec__dec *d)
{
    return (size_t)(d->r.p - d->r.start);
}

/* Copies a name from the input into out for a message. The name may hold any bytes, so
 * everything outside printable ASCII (and the quote and backslash) is written as \xNN. */
static void rec__printable(char *out, size_t outlen, const uint8_t *s, size_t n)
{
    size_t i, o = 0;

    for (i = 0; i < n && o + 5 < outlen; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'' && s[i] != '\\')
            out[o++] = (char)s[i];
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", s[i]);
    }
    out[o] = '\0';
}

/* Writes "<msg>: <item> <n>: <field or column>: <what>" into the caller's buffer and returns
 * code. */
static int rec__fail(rec__dec *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rec__fail(rec__dec *d, int code, const char *fmt, ...)
{
    char what[320], item[48] = "", place[4 * SYNC_MAX_NAME + 32] = "", name[4 * SYNC_MAX_NAME + 8];
    va_list ap;

    if (d->err == NULL || d->errlen == 0)
        return code;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (d->item != NULL)
        snprintf(item, sizeof item, ": %s %zu", d->item, d->index);
    if (d->col != NULL) {
        rec__printable(name, sizeof name, d->col, d->col_len);
        snprintf(place, sizeof place, ": column '%s'", name);
    } else if (d->field != NULL) {
        snprintf(place, sizeof place, ": %s", d->field);
    }
    return sync_seterr(d->err, d->errlen, code, "%s%s%s: %s", d->msg, item, place, what);
}

static const char *rec__tname(sync_ctype t)
{
    switch (t) {
    case SYNC_C_UINT:
        return "an unsigned integer";
    case SYNC_C_NEGINT:
        return "a negative integer";
    case SYNC_C_BYTES:
        return "a byte string";
    case SYNC_C_TEXT:
        return "a text string";
    case SYNC_C_ARRAY:
        return "an array";
    case SYNC_C_MAP:
        return "a map";
    case SYNC_C_BOOL:
        return "a boolean";
    case SYNC_C_NULL:
        return "null";
    case SYNC_C_FLOAT:
        return "a float";
    }
    return "an unknown item";
}

/* Reads the next token, with the reader's message prefixed by the location on failure. */
static int rec__next(rec__dec *d, sync_ctoken *t)
{
    char m[256];
    int rc;

    rc = sync_creader_next(&d->r, t, m, sizeof m);
    if (rc != SYNC_OK)
        return rec__fail(d, rc, "%s", m);
    return SYNC_OK;
}

/* Reads the next token and requires it to be of type want. */
static int rec__expect(rec__dec *d, sync_ctoken *t, sync_ctype want)
{
    size_t at = rec__at(d);
    int rc;

    rc = rec__next(d, t);
    if (rc != SYNC_OK)
        return rc;
    if (t->type != want)
        return rec__fail(d, SYNC_ERR_DECODE, "expected %s at byte %zu, found %s", rec__tname(want),
                         at, rec__tname(t->type));
    return SYNC_OK;
}

static int rec__uint(rec__dec *d, uint64_t *v)
{
    sync_ctoken t;
    int rc;

    rc = rec__expect(d, &t, SYNC_C_UINT);
    if (rc == SYNC_OK)
        *v = t.u.u;
    return rc;
}

/* Reads an op code (0 insert, 1 update, 2 delete; 3 leave where `leave` allows it: in the
 * changes of deltas and pages, never in an edge's records). */
static int rec__op(rec__dec *d, sync_op *op, int leave)
{
    size_t at = rec__at(d);
    uint64_t v = 0;
    int rc;

    rc = rec__uint(d, &v);
    if (rc != SYNC_OK)
        return rc;
    if (v > (leave ? SYNC_OP_LEAVE : SYNC_OP_DELETE))
        return rec__fail(d, SYNC_ERR_DECODE,
                         "op %" PRIu64 " at byte %zu is not 0 (insert), 1 (update), 2 (delete)%s",
                         v, at, leave ? " or 3 (leave)" : "");
    *op = (sync_op)v;
    return SYNC_OK;
}

/* Reads a text string of 1..max bytes (a table, column or device name); what names it in
 * messages. */
static int rec__name(rec__dec *d, const char *what, size_t max, const char **p, size_t *n)
{
    size_t at = rec__at(d);
    sync_ctoken t;
    int rc;

    rc = rec__next(d, &t);
    if (rc != SYNC_OK)
        return rc;
    if (t.type != SYNC_C_TEXT)
        return rec__fail(d, SYNC_ERR_DECODE, "expected a %s (text string) at byte %zu, found %s",
                         what, at, rec__tname(t.type));
    if (t.u.s.n == 0)
        return rec__fail(d, SYNC_ERR_DECODE, "%s at byte %zu is empty", what, at);
    if (t.u.s.n > max)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "%s of %zu bytes at byte %zu is longer than the %zu-byte maximum", what,
                         t.u.s.n, at, max);
    *p = (const char *)t.u.s.p;
    *n = t.u.s.n;
    return SYNC_OK;
}

/* Reads a column value and applies the size limit to text and blob. */
static int rec__value(rec__dec *d, sync_value *v)
{
    size_t at = rec__at(d);
    char m[256];
    int rc;

    rc = sync_creader_value(&d->r, v, m, sizeof m);
    if (rc != SYNC_OK)
        return rec__fail(d, rc, "%s", m);
    if ((v->type == SYNC_TEXT || v->type == SYNC_BLOB) && v->u.b.n > d->lim.max_value)
        return rec__fail(d, SYNC_ERR_TOOBIG,
                         "%s value of %zu bytes at byte %zu exceeds the %zu-byte limit",
                         sync_vtype_name(v->type), v->u.b.n, at, d->lim.max_value);
    return SYNC_OK;
}

/* Reads a primary key: a value that is an integer, text or blob (null and real are refused,
 * as they cannot identify a row). */
static int rec__key(rec__dec *d, sync_value *v)
{
    size_t at = rec__at(d);
    int rc;

    rc = rec__value(d, v);
    if (rc != SYNC_OK)
        return rc;
    if (v->type == SYNC_NULL || v->type == SYNC_REAL)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "a key must be an integer, text or blob, found %s at byte %zu",
                         sync_vtype_name(v->type), at);
    return SYNC_OK;
}

/* Reads the count column name/value pairs of a cols map whose head has been read. The map
 * must have 1..SYNC_MAX_COLS entries with distinct names. */
static int rec__cols(rec__dec *d, size_t count, size_t map_at, sync_colval *cols, size_t *ncols)
{
    const char *name;
    size_t i, j, n, at;
    int rc;

    if (count == 0)
        return rec__fail(d, SYNC_ERR_DECODE, "the map of columns at byte %zu is empty", map_at);
    if (count > SYNC_MAX_COLS)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "the map of columns at byte %zu has %zu entries, more than the %d allowed",
                         map_at, count, SYNC_MAX_COLS);
    for (i = 0; i < count; i++) {
        at = rec__at(d);
        rc = rec__name(d, "column name", SYNC_MAX_NAME, &name, &n);
        if (rc != SYNC_OK)
            return rc;
        for (j = 0; j < i; j++) {
            if (cols[j].name_len == n && memcmp(cols[j].name, name, n) == 0) {
                d->col = (const uint8_t *)name;
                d->col_len = n;
                return rec__fail(d, SYNC_ERR_DECODE, "column appears twice (again at byte %zu)",
                                 at);
            }
        }
        cols[i].name = name;
        cols[i].name_len = n;
        d->col = (const uint8_t *)name;
        d->col_len = n;
        rc = rec__value(d, &cols[i].v);
        d->col = NULL;
        if (rc != SYNC_OK)
            return rc;
    }
    *ncols = count;
    return SYNC_OK;
}

/* Reads "cols / null": sets *is_null, and fills cols for a map. */
static int rec__cols_or_null(rec__dec *d, int *is_null, sync_colval *cols, size_t *ncols)
{
    size_t at = rec__at(d);
    sync_ctoken t;
    int rc;

    rc = rec__next(d, &t);
    if (rc != SYNC_OK)
        return rc;
    if (t.type == SYNC_C_NULL) {
        *is_null = 1;
        *ncols = 0;
        return SYNC_OK;
    }
    if (t.type != SYNC_C_MAP)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "expected a map of columns or null at byte %zu, found %s", at,
                         rec__tname(t.type));
    *is_null = 0;
    return rec__cols(d, t.u.count, at, cols, ncols);
}

/* Reads a map key, which must be an unsigned integer naming one of the nkeys fields and be
 * greater than the previous key (*last, -1 before the first). Sets d->field for messages. */
static int rec__mapkey(rec__dec *d, const char *const *names, unsigned nkeys, int *last,
                       unsigned *key)
{
    size_t at = rec__at(d);
    sync_ctoken t;
    int rc;

    d->field = NULL;
    rc = rec__next(d, &t);
    if (rc != SYNC_OK)
        return rc;
    if (t.type != SYNC_C_UINT)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "map key at byte %zu is %s, expected an unsigned integer", at,
                         rec__tname(t.type));
    if (t.u.u >= nkeys)
        return rec__fail(d, SYNC_ERR_DECODE, "unknown map key %" PRIu64 " at byte %zu", t.u.u, at);
    if ((int)t.u.u == *last)
        return rec__fail(d, SYNC_ERR_DECODE, "duplicate map key %" PRIu64 " (%s) at byte %zu",
                         t.u.u, names[t.u.u], at);
    if ((int)t.u.u < *last)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "map key %" PRIu64 " (%s) at byte %zu is out of order (after key %d)",
                         t.u.u, names[t.u.u], at, *last);
    *key = (unsigned)t.u.u;
    *last = (int)*key;
    d->field = names[*key];
    return SYNC_OK;
}

/* Fails with "missing key" if a key in the required bit set and below upto was not seen.
 * Called after the map, and before a key whose meaning depends on earlier ones (keys ascend,
 * so a smaller key that has not appeared by then never will). */
static int rec__need(rec__dec *d, const char *const *names, unsigned required, unsigned seen,
                     unsigned upto)
{
    unsigned k;

    for (k = 0; k < upto; k++) {
        if ((required & (1u << k)) && !(seen & (1u << k))) {
            d->field = NULL;
            return rec__fail(d, SYNC_ERR_DECODE, "missing map key %u (%s)", k, names[k]);
        }
    }
    return SYNC_OK;
}

/* Reads the head of an array of items (records, results, changes) and checks its length:
 * at least min, at most lim.max_records. */
static int rec__items(rec__dec *d, size_t min, const char *what, size_t *count)
{
    size_t at = rec__at(d);
    sync_ctoken t;
    int rc;

    rc = rec__expect(d, &t, SYNC_C_ARRAY);
    if (rc != SYNC_OK)
        return rc;
    *count = t.u.count;
    if (t.u.count < min)
        return rec__fail(d, SYNC_ERR_DECODE, "the array at byte %zu has no %s", at, what);
    if (t.u.count > d->lim.max_records)
        return rec__fail(d, SYNC_ERR_TOOBIG, "%zu %s at byte %zu exceed the limit of %zu",
                         t.u.count, what, at, d->lim.max_records);
    return SYNC_OK;
}

/* Adds an item's offset to the message's base_seq. */
static int rec__seq(rec__dec *d, uint64_t base_seq, uint64_t *seq)
{
    size_t at = rec__at(d);
    uint64_t off;
    int rc;

    rc = rec__uint(d, &off);
    if (rc != SYNC_OK)
        return rc;
    if (off > UINT64_MAX - base_seq)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "offset %" PRIu64 " at byte %zu overflows base_seq %" PRIu64, off, at,
                         base_seq);
    *seq = base_seq + off;
    return SYNC_OK;
}

/* Fails if bytes follow the top-level item. */
static int rec__finish(rec__dec *d)
{
    d->item = NULL;
    d->field = NULL;
    if (!sync_creader_done(&d->r))
        return rec__fail(d, SYNC_ERR_DECODE,
                         "trailing garbage: %zu byte%s after the end of the "
                         "message at byte %zu",
                         (size_t)(d->r.end - d->r.p), d->r.end - d->r.p == 1 ? "" : "s",
                         rec__at(d));
    return SYNC_OK;
}

/* ---- batch ---- */

static const char *const rec__batch_keys[] = {"schema_version", "device", "base_seq", "records"};
static const char *const rec__record_keys[] = {"table", "key", "op",  "base_version",
                                               "hlc",   "seq", "cols"};

/* Reads one record map into *r. */
static int rec__record(rec__dec *d, uint64_t base_seq, sync_record *r)
{
    const unsigned required = 0x3f; /* keys 0..5; 6 (cols) depends on op */
    unsigned key = 0, seen = 0;
    size_t i, npairs, at;
    int last = -1, rc;
    sync_ctoken t;

    r->ncols = 0;
    rc = rec__expect(d, &t, SYNC_C_MAP);
    npairs = t.u.count;
    for (i = 0; rc == SYNC_OK && i < npairs; i++) {
        rc = rec__mapkey(d, rec__record_keys, 7, &last, &key);
        if (rc == SYNC_OK && key == 6) /* whether cols are allowed depends on op */
            rc = rec__need(d, rec__record_keys, required, seen, key);
        if (rc != SYNC_OK)
            break;
        d->field = rec__record_keys[key];
        seen |= 1u << key;
        switch (key) {
        case 0:
            rc = rec__name(d, "table name", SYNC_MAX_NAME, &r->table, &r->table_len);
            break;
        case 1:
            rc = rec__key(d, &r->key);
            break;
        case 2:
            rc = rec__op(d, &r->op, 0);
            break;
        case 3:
            rc = rec__uint(d, &r->base_version);
            break;
        case 4:
            rc = rec__uint(d, &r->hlc);
            break;
        case 5:
            rc = rec__seq(d, base_seq, &r->seq);
            break;
        case 6:
            /* op (key 2) has been read: rec__need made sure of it. */
            at = rec__at(d);
            if (r->op == SYNC_OP_DELETE)
                return rec__fail(d, SYNC_ERR_DECODE,
                                 "a delete must not carry columns (value at byte %zu)", at);
            rc = rec__expect(d, &t, SYNC_C_MAP);
            if (rc == SYNC_OK)
                rc = rec__cols(d, t.u.count, at, r->cols, &r->ncols);
            break;
        }
    }
    if (rc != SYNC_OK)
        return rc;
    rc = rec__need(d, rec__record_keys, required, seen, 7);
    if (rc == SYNC_OK && r->op != SYNC_OP_DELETE && !(seen & (1u << 6))) {
        d->field = NULL;
        rc = rec__fail(d, SYNC_ERR_DECODE, "missing map key 6 (cols), required for an %s",
                       r->op == SYNC_OP_INSERT ? "insert" : "update");
    }
    return rc;
}

int sync_batch_decode(const void *buf, size_t len, const sync_limits *lim, sync_batch_hdr *hdr_out,
                      sync_batch_hdr_cb on_hdr, sync_record_cb on_record, void *ctx, char *err,
                      size_t errlen)
{
    const unsigned required = 0xf;
    unsigned key = 0, seen = 0;
    int last = -1, rc;
    sync_batch_hdr hdr;
    sync_record rec;
    sync_ctoken t;
    uint64_t v = 0;
    size_t i, j, npairs;
    rec__dec d;

    memset(&hdr, 0, sizeof hdr);
    rec__start(&d, buf, len, lim, "batch", err, errlen);
    rc = rec__expect(&d, &t, SYNC_C_MAP);
    npairs = t.u.count;
    for (i = 0; rc == SYNC_OK && i < npairs; i++) {
        rc = rec__mapkey(&d, rec__batch_keys, 4, &last, &key);
        if (rc == SYNC_OK && key == 3) /* the header must be complete before the records */
            rc = rec__need(&d, rec__batch_keys, required, seen, key);
        if (rc != SYNC_OK)
            return rc;
        d.field = rec__batch_keys[key];
        seen |= 1u << key;
        switch (key) {
        case 0: {
            size_t at = rec__at(&d);

            rc = rec__uint(&d, &v);
            if (rc == SYNC_OK && v > UINT32_MAX)
                rc = rec__fail(&d, SYNC_ERR_DECODE,
                               "%" PRIu64 " at byte %zu does not fit in 32 bits", v, at);
            hdr.schema_version = (uint32_t)v;
            break;
        }
        case 1:
            rc = rec__name(&d, "device id", SYNC_MAX_ID, &hdr.device, &hdr.device_len);
            break;
        case 2:
            rc = rec__uint(&d, &hdr.base_seq);
            break;
        case 3: {
            size_t at = rec__at(&d);

            rc = rec__items(&d, 1, "records", &hdr.nrecords);
            /* The reader moved iff the array head was read; nrecords may still be out of
             * limits (rc says so), but the caller gets base_seq to reject the batch with. */
            if (hdr_out != NULL && rec__at(&d) > at)
                *hdr_out = hdr;
            if (rc == SYNC_OK && on_hdr != NULL)
                if ((rc = on_hdr(ctx, &hdr)) != 0)
                    return rc;
            for (j = 0; rc == SYNC_OK && j < hdr.nrecords; j++) {
                d.item = "record";
                d.index = j;
                d.field = NULL;
                rc = rec__record(&d, hdr.base_seq, &rec);
                if (rc == SYNC_OK && on_record != NULL)
                    if ((rc = on_record(ctx, &rec)) != 0)
                        return rc;
            }
            d.item = NULL;
            break;
        }
        }
    }
    if (rc != SYNC_OK)
        return rc;
    rc = rec__need(&d, rec__batch_keys, required, seen, 4);
    if (rc != SYNC_OK)
        return rc;
    return rec__finish(&d);
}

/* ---- ack ---- */

static const char *const rec__ack_keys[] = {"base_seq", "last_seq", "status", "reason", "results"};
static const char *const rec__result_fields[] = {"offset", "code", "version", "row"};
static const char *const rec__result_names[] = {"applied", "won",     "lost",    "duplicate",
                                                "merged",  "pending", "rejected"};

/* Reads one result array: [offset, code, version] or, for code 2, [offset, 2, version, row]. */
static int rec__result(rec__dec *d, uint64_t base_seq, sync_ack_result *r)
{
    size_t at = rec__at(d), code_at, want;
    sync_ctoken t;
    uint64_t code;
    int rc;

    r->has_row = 0;
    r->deleted = 0;
    r->ncols = 0;
    rc = rec__expect(d, &t, SYNC_C_ARRAY);
    if (rc != SYNC_OK)
        return rc;
    if (t.u.count != 3 && t.u.count != 4)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "the array at byte %zu has %zu elements, expected 3 or 4", at, t.u.count);
    d->field = rec__result_fields[0];
    rc = rec__seq(d, base_seq, &r->seq);
    if (rc != SYNC_OK)
        return rc;
    d->field = rec__result_fields[1];
    code_at = rec__at(d);
    rc = rec__uint(d, &code);
    if (rc != SYNC_OK)
        return rc;
    if (code > SYNC_R_REJECTED)
        return rec__fail(d, SYNC_ERR_DECODE,
                         "code %" PRIu64 " at byte %zu is not 0 (applied), 1 (won), 2 (lost), "
                         "3 (duplicate), 4 (merged), 5 (pending) or 6 (rejected)",
                         code, code_at);
    r->result = (sync_result)code;
    want = SYNC_RESULT_HAS_ROW(r->result) || r->result == SYNC_R_REJECTED ? 4 : 3;
    if (t.u.count != want) {
        d->field = NULL;
        return rec__fail(d, SYNC_ERR_DECODE,
                         "a result with code %" PRIu64 " (%s) has %zu elements, "
                         "not %zu (array at byte %zu)",
                         code, rec__result_names[code], t.u.count, want, at);
    }
    d->field = rec__result_fields[2];
    rc = rec__uint(d, &r->version);
    r->reason = NULL;
    r->reason_len = 0;
    if (rc != SYNC_OK || want == 3)
        return rc;
    d->field = rec__result_fields[3];
    if (r->result == SYNC_R_REJECTED) {
        size_t rat = rec__at(d);
        rc = rec__expect(d, &t, SYNC_C_TEXT);
        if (rc != SYNC_OK)
            return rc;
        if (t.u.s.n > d->lim.max_value)
            return rec__fail(d, SYNC_ERR_TOOBIG, "reason of %zu bytes at byte %zu is too long",
                             t.u.s.n, rat);
        r->reason = (const char *)t.u.s.p;
        r->reason_len = t.u.s.n;
        return SYNC_OK;
    }
    r->has_row = 1;
    return rec__cols_or_null(d, &r->deleted, r->cols, &r->ncols);
}

int sync_ack_decode(const void *buf, size_t len, const sync_limits *lim, sync_ack_hdr_cb on_hdr,
                    sync_ack_result_cb on_result, void *ctx, char *err, size_t errlen)
{
    const unsigned required = 0x17; /* all but 3 (reason), which depends on status */
    unsigned key = 0, seen = 0;
    int last = -1, rc;
    sync_ack_result res;
    sync_ack_hdr hdr;
    sync_ctoken t;
    uint64_t v = 0;
    size_t i, j, at, npairs;
    rec__dec d;

    memset(&hdr, 0, sizeof hdr);
    rec__start(&d, buf, len, lim, "ack", err, errlen);
    rc = rec__expect(&d, &t, SYNC_C_MAP);
    npairs = t.u.count;
    for (i = 0; rc == SYNC_OK && i < npairs; i++) {
        rc = rec__mapkey(&d, rec__ack_keys, 5, &last, &key);
        if (rc == SYNC_OK && key >= 3) /* reason depends on status; results need the header */
            rc = rec__need(&d, rec__ack_keys, required, seen, key);
        if (rc != SYNC_OK)
            return rc;
        d.field = rec__ack_keys[key];
        seen |= 1u << key;
        at = rec__at(&d);
        switch (key) {
        case 0:
            rc = rec__uint(&d, &hdr.base_seq);
            break;
        case 1:
            rc = rec__uint(&d, &hdr.last_seq);
            break;
        case 2:
            rc = rec__uint(&d, &v);
            if (rc == SYNC_OK && v > SYNC_ACK_REJECTED)
                rc = rec__fail(&d, SYNC_ERR_DECODE,
                               "status %" PRIu64 " at byte %zu is not 0 (ok) or 1 (rejected)", v,
                               at);
            hdr.status = (sync_ack_status)v;
            break;
        case 3:
            if (hdr.status != SYNC_ACK_REJECTED)
                return rec__fail(&d, SYNC_ERR_DECODE,
                                 "a reason (at byte %zu) is only allowed when status is 1", at);
            rc = rec__expect(&d, &t, SYNC_C_TEXT);
            if (rc == SYNC_OK && t.u.s.n > d.lim.max_value)
                rc = rec__fail(&d, SYNC_ERR_TOOBIG,
                               "text of %zu bytes at byte %zu exceeds the %zu-byte limit", t.u.s.n,
                               at, d.lim.max_value);
            hdr.reason = (const char *)t.u.s.p;
            hdr.reason_len = t.u.s.n;
            break;
        case 4:
            if (hdr.status == SYNC_ACK_REJECTED && !(seen & (1u << 3))) {
                d.field = NULL;
                return rec__fail(&d, SYNC_ERR_DECODE,
                                 "missing map key 3 (reason), required when status is 1");
            }
            rc = rec__items(&d, 0, "results", &hdr.nresults);
            if (rc == SYNC_OK && on_hdr != NULL)
                if ((rc = on_hdr(ctx, &hdr)) != 0)
                    return rc;
            for (j = 0; rc == SYNC_OK && j < hdr.nresults; j++) {
                d.item = "result";
                d.index = j;
                d.field = NULL;
                rc = rec__result(&d, hdr.base_seq, &res);
                if (rc == SYNC_OK && on_result != NULL)
                    if ((rc = on_result(ctx, &res)) != 0)
                        return rc;
            }
            d.item = NULL;
            break;
        }
    }
    if (rc != SYNC_OK)
        return rc;
    rc = rec__need(&d, rec__ack_keys, required, seen, 5);
    if (rc != SYNC_OK)
        return rc;
    return rec__finish(&d);
}

/* ---- delta ---- */

static const char *const rec__delta_keys[] = {"table", "prev_cseq", "changes"};

/* Reads one change array: [key, op, version, cseq, hlc, origin, cols / null]. */
static int rec__change(rec__dec *d, sync_change *c)
{
    size_t at = rec__at(d);
    sync_ctoken t;
    int rc, is_null;

    c->ncols = 0;
    rc = rec__expect(d, &t, SYNC_C_ARRAY);
    if (rc != SYNC_OK)
        return rc;
    if (t.u.count != 7)
        return rec__fail(d, SYNC_ERR_DECODE, "the array at byte %zu has %zu elements, expected 7",
                         at, t.u.count);
    d->field = "key";
    rc = rec__key(d, &c->key);
    if (rc == SYNC_OK) {
        d->field = "op";
        rc = rec__op(d, &c->op, 1);
    }
    if (rc == SYNC_OK) {
        d->field = "version";
        rc = rec__uint(d, &c->version);
    }
    if (rc == SYNC_OK) {
        d->field = "cseq";
        rc = rec__uint(d, &c->cseq);
    }
    if (rc == SYNC_OK) {
        d->field = "hlc";
        rc = rec__uint(d, &c->hlc);
    }
    if (rc == SYNC_OK) {
        d->field = "origin";
        rc = rec__name(d, "device id", SYNC_MAX_ID, &c->origin, &c->origin_len);
    }
    if (rc != SYNC_OK)
        return rc;
    d->field = "cols";
    at = rec__at(d);
    rc = rec__cols_or_null(d, &is_null, c->cols, &c->ncols);
    if (rc != SYNC_OK)
        return rc;
    if (SYNC_OP_NOCOLS(c->op) && !is_null)
        return rec__fail(d, SYNC_ERR_DECODE, "a %s must have null, not columns, at byte %zu",
                         c->op == SYNC_OP_DELETE ? "delete" : "leave", at);
    if (!SYNC_OP_NOCOLS(c->op) && is_null)
        return rec__fail(d, SYNC_ERR_DECODE, "an %s needs a map of columns, found null at byte %zu",
                         c->op == SYNC_OP_INSERT ? "insert" : "update", at);
    return SYNC_OK;
}

/* Reads the n change arrays of a delta or a page, handing each to on_change (may be NULL); a
 * nonzero return from it stops the decode and is returned. */
static int rec__changes(rec__dec *d, size_t n, sync_change_cb on_change, void *ctx)
{
    sync_change chg;
    int rc = SYNC_OK;

    for (size_t j = 0; rc == SYNC_OK && j < n; j++) {
        d->item = "change";
        d->index = j;
        d->field = NULL;
        rc = rec__change(d, &chg);
        if (rc == SYNC_OK && on_change != NULL)
            rc = on_change(ctx, &chg);
    }
    d->item = NULL;
    return rc;
}

int sync_delta_decode(const void *buf, size_t len, const sync_limits *lim, sync_delta_hdr_cb on_hdr,
                      sync_change_cb on_change, void *ctx, char *err, size_t errlen)
{
    const unsigned required = 0x7;
    unsigned key = 0, seen = 0;
    int last = -1, rc;
    sync_delta_hdr hdr;
    sync_ctoken t;
    size_t i, npairs;
    rec__dec d;

    memset(&hdr, 0, sizeof hdr);
    rec__start(&d, buf, len, lim, "delta", err, errlen);
    rc = rec__expect(&d, &t, SYNC_C_MAP);
    npairs = t.u.count;
    for (i = 0; rc == SYNC_OK && i < npairs; i++) {
        rc = rec__mapkey(&d, rec__delta_keys, 3, &last, &key);
        if (rc == SYNC_OK && key == 2) /* the header must be complete before the changes */
            rc = rec__need(&d, rec__delta_keys, required, seen, key);
        if (rc != SYNC_OK)
            return rc;
        d.field = rec__delta_keys[key];
        seen |= 1u << key;
        switch (key) {
        case 0:
            rc = rec__name(&d, "table name", SYNC_MAX_NAME, &hdr.table, &hdr.table_len);
            break;
        case 1:
            rc = rec__uint(&d, &hdr.prev_cseq);
            break;
        case 2:
            rc = rec__items(&d, 1, "changes", &hdr.nchanges);
            if (rc == SYNC_OK && on_hdr != NULL)
                if ((rc = on_hdr(ctx, &hdr)) != 0)
                    return rc;
            if (rc == SYNC_OK && (rc = rec__changes(&d, hdr.nchanges, on_change, ctx)) != 0)
                return rc;
            break;
        }
    }
    if (rc != SYNC_OK)
        return rc;
    rc = rec__need(&d, rec__delta_keys, required, seen, 3);
    if (rc != SYNC_OK)
        return rc;
    return rec__finish(&d);
}

/* ---- row ---- */

static const char *const rec__row_keys[] = {"table", "key",    "version", "cseq",
                                            "hlc",   "origin", "cols"};

int sync_row_decode(const void *buf, size_t len, const sync_limits *lim, sync_change *out,
                    const char **table, size_t *table_len, char *err, size_t errlen)
{
    const unsigned required = 0x7f;
    unsigned key = 0, seen = 0;
    int last = -1, rc, is_null;
    const char *tab = NULL;
    size_t i, npairs, tab_len = 0;
    sync_ctoken t;
    rec__dec d;

    out->ncols = 0;
    rec__start(&d, buf, len, lim, "row", err, errlen);
    rc = rec__expect(&d, &t, SYNC_C_MAP);
    npairs = t.u.count;
    for (i = 0; rc == SYNC_OK && i < npairs; i++) {
        rc = rec__mapkey(&d, rec__row_keys, 7, &last, &key);
        if (rc != SYNC_OK)
            return rc;
        d.field = rec__row_keys[key];
        seen |= 1u << key;
        switch (key) {
        case 0:
            rc = rec__name(&d, "table name", SYNC_MAX_NAME, &tab, &tab_len);
            break;
        case 1:
            rc = rec__key(&d, &out->key);
            break;
        case 2:
            rc = rec__uint(&d, &out->version);
            break;
        case 3:
            rc = rec__uint(&d, &out->cseq);
            break;
        case 4:
            rc = rec__uint(&d, &out->hlc);
            break;
        case 5:
            rc = rec__name(&d, "device id", SYNC_MAX_ID, &out->origin, &out->origin_len);
            break;
        case 6:
            rc = rec__cols_or_null(&d, &is_null, out->cols, &out->ncols);
            out->op = is_null ? SYNC_OP_DELETE : SYNC_OP_INSERT;
            break;
        }
    }
    if (rc != SYNC_OK)
        return rc;
    rc = rec__need(&d, rec__row_keys, required, seen, 7);
    if (rc == SYNC_OK)
        rc = rec__finish(&d);
    if (rc != SYNC_OK)
        return rc;
    if (table != NULL)
        *table = tab;
    if (table_len != NULL)
        *table_len = tab_len;
    return SYNC_OK;
}

/* ==== encoding ==== */

/* Marks b as holding an invalid message (unless it already failed) and returns its error. */
static int rec__inval(sync_cbuf *b)
{
    if (b->err == SYNC_OK)
        b->err = SYNC_ERR_INVAL;
    return b->err;
}

static int rec__name_ok(const char *p, size_t n, size_t max)
{
    return n >= 1 && n <= max && p != NULL;
}

static int rec__key_ok(const sync_value *v)
{
    return v->type == SYNC_INT || v->type == SYNC_TEXT || v->type == SYNC_BLOB;
}

/* Nonzero if cols can be encoded as a cols map the decoders accept: 1..SYNC_MAX_COLS entries,
 * valid distinct names. Value types are checked by sync_cbor_put_value. */
static int rec__cols_ok(const sync_colval *cols, size_t ncols)
{
    size_t i, j;

    if (ncols == 0 || ncols > SYNC_MAX_COLS)
        return 0;
    for (i = 0; i < ncols; i++) {
        if (!rec__name_ok(cols[i].name, cols[i].name_len, SYNC_MAX_NAME))
            return 0;
        for (j = 0; j < i; j++) {
            if (cols[j].name_len == cols[i].name_len &&
                memcmp(cols[j].name, cols[i].name, cols[i].name_len) == 0)
                return 0;
        }
    }
    return 1;
}

static int rec__put_cols(sync_cbuf *b, const sync_colval *cols, size_t ncols)
{
    size_t i;

    sync_cbor_put_map(b, ncols);
    for (i = 0; i < ncols; i++) {
        sync_cbor_put_text(b, cols[i].name, cols[i].name_len);
        sync_cbor_put_value(b, &cols[i].v);
    }
    return b->err;
}

/* Writes the batch map up to the head of the records array. Refuses (SYNC_ERR_INVAL) a device
 * id outside 1..SYNC_MAX_ID bytes and nrecords == 0. */
int sync_batch_encode_hdr(sync_cbuf *b, const sync_batch_hdr *hdr)
{
    if (!rec__name_ok(hdr->device, hdr->device_len, SYNC_MAX_ID) || hdr->nrecords == 0)
        return rec__inval(b);
    sync_cbor_put_map(b, 4);
    sync_cbor_put_uint(b, 0);
    sync_cbor_put_uint(b, hdr->schema_version);
    sync_cbor_put_uint(b, 1);
    sync_cbor_put_text(b, hdr->device, hdr->device_len);
    sync_cbor_put_uint(b, 2);
    sync_cbor_put_uint(b, hdr->base_seq);
    sync_cbor_put_uint(b, 3);
    return sync_cbor_put_array(b, hdr->nrecords);
}

/* Writes one record map. Refuses (SYNC_ERR_INVAL) a bad table name or key type, an unknown
 * op, seq < base_seq, columns on a delete and missing or invalid columns otherwise. */
int sync_record_encode(sync_cbuf *b, const sync_record *r, uint64_t base_seq)
{
    int has_cols = r->op != SYNC_OP_DELETE;

    if (!rec__name_ok(r->table, r->table_len, SYNC_MAX_NAME) || !rec__key_ok(&r->key) ||
        (unsigned)r->op > SYNC_OP_DELETE || r->seq < base_seq ||
        (has_cols ? !rec__cols_ok(r->cols, r->ncols) : r->ncols != 0))
        return rec__inval(b);
    sync_cbor_put_map(b, has_cols ? 7 : 6);
    sync_cbor_put_uint(b, 0);
    sync_cbor_put_text(b, r->table, r->table_len);
    sync_cbor_put_uint(b, 1);
    sync_cbor_put_value(b, &r->key);
    sync_cbor_put_uint(b, 2);
    sync_cbor_put_uint(b, r->op);
    sync_cbor_put_uint(b, 3);
    sync_cbor_put_uint(b, r->base_version);
    sync_cbor_put_uint(b, 4);
    sync_cbor_put_uint(b, r->hlc);
    sync_cbor_put_uint(b, 5);
    sync_cbor_put_uint(b, r->seq - base_seq);
    if (has_cols) {
        sync_cbor_put_uint(b, 6);
        rec__put_cols(b, r->cols, r->ncols);
    }
    return b->err;
}

/* Writes the ack map up to the head of the results array; the reason is written iff the status
 * is REJECTED. Refuses (SYNC_ERR_INVAL) an unknown status. */
int sync_ack_encode_hdr(sync_cbuf *b, const sync_ack_hdr *hdr)
{
    int rejected = hdr->status == SYNC_ACK_REJECTED;

    if ((unsigned)hdr->status > SYNC_ACK_REJECTED ||
        (rejected && hdr->reason == NULL && hdr->reason_len != 0))
        return rec__inval(b);
    sync_cbor_put_map(b, rejected ? 5 : 4);
    sync_cbor_put_uint(b, 0);
    sync_cbor_put_uint(b, hdr->base_seq);
    sync_cbor_put_uint(b, 1);
    sync_cbor_put_uint(b, hdr->last_seq);
    sync_cbor_put_uint(b, 2);
    sync_cbor_put_uint(b, hdr->status);
    if (rejected) {
        sync_cbor_put_uint(b, 3);
        sync_cbor_put_text(b, hdr->reason, hdr->reason_len);
    }
    sync_cbor_put_uint(b, 4);
    return sync_cbor_put_array(b, hdr->nresults);
}

/* Writes one result array; a LOST result carries the winning row (null when deleted). Refuses
 * (SYNC_ERR_INVAL) an unknown code, seq < base_seq, and a LOST result without a valid row. */
int sync_ack_result_encode(sync_cbuf *b, const sync_ack_result *r, uint64_t base_seq)
{
    int lost = SYNC_RESULT_HAS_ROW(r->result);
    int rejected = r->result == SYNC_R_REJECTED;

    if ((unsigned)r->result > SYNC_R_REJECTED || r->seq < base_seq ||
        (lost && (!r->has_row || (!r->deleted && !rec__cols_ok(r->cols, r->ncols)))) ||
        (rejected &&
         (r->reason == NULL || sync_utf8_check(r->reason, r->reason_len) != r->reason_len)))
        return rec__inval(b);
    sync_cbor_put_array(b, lost || rejected ? 4 : 3);
    sync_cbor_put_uint(b, r->seq - base_seq);
    sync_cbor_put_uint(b, r->result);
    sync_cbor_put_uint(b, r->version);
    if (rejected)
        return sync_cbor_put_text(b, r->reason, r->reason_len);
    if (lost) {
        if (r->deleted)
            sync_cbor_put_null(b);
        else
            rec__put_cols(b, r->cols, r->ncols);
    }
    return b->err;
}

/* Writes the delta map up to the head of the changes array. Refuses (SYNC_ERR_INVAL) a bad
 * table name and nchanges == 0. */
int sync_delta_encode_hdr(sync_cbuf *b, const sync_delta_hdr *hdr)
{
    if (!rec__name_ok(hdr->table, hdr->table_len, SYNC_MAX_NAME) || hdr->nchanges == 0)
        return rec__inval(b);
    sync_cbor_put_map(b, 3);
    sync_cbor_put_uint(b, 0);
    sync_cbor_put_text(b, hdr->table, hdr->table_len);
    sync_cbor_put_uint(b, 1);
    sync_cbor_put_uint(b, hdr->prev_cseq);
    sync_cbor_put_uint(b, 2);
    return sync_cbor_put_array(b, hdr->nchanges);
}

/* Fields a change and a row share, checked the same way for both; a leave (max_op LEAVE) is a
 * change only. */
static int rec__change_ok(const sync_change *c, sync_op max_op)
{
    if (!rec__key_ok(&c->key) || (unsigned)c->op > (unsigned)max_op ||
        !rec__name_ok(c->origin, c->origin_len, SYNC_MAX_ID))
        return 0;
    return SYNC_OP_NOCOLS(c->op) ? c->ncols == 0 : rec__cols_ok(c->cols, c->ncols);
}

/* Writes one change array; a delete or leave gets null instead of columns. */
int sync_change_encode(sync_cbuf *b, const sync_change *c)
{
    if (!rec__change_ok(c, SYNC_OP_LEAVE))
        return rec__inval(b);
    sync_cbor_put_array(b, 7);
    sync_cbor_put_value(b, &c->key);
    sync_cbor_put_uint(b, c->op);
    sync_cbor_put_uint(b, c->version);
    sync_cbor_put_uint(b, c->cseq);
    sync_cbor_put_uint(b, c->hlc);
    sync_cbor_put_text(b, c->origin, c->origin_len);
    if (SYNC_OP_NOCOLS(c->op))
        return sync_cbor_put_null(b);
    return rec__put_cols(b, c->cols, c->ncols);
}

/* Writes a complete row message: a delete (tombstone) gets null, any other op its columns. */
int sync_row_encode(sync_cbuf *b, const char *table, size_t table_len, const sync_change *c)
{
    if (!rec__name_ok(table, table_len, SYNC_MAX_NAME) || !rec__change_ok(c, SYNC_OP_DELETE))
        return rec__inval(b);
    sync_cbor_put_map(b, 7);
    sync_cbor_put_uint(b, 0);
    sync_cbor_put_text(b, table, table_len);
    sync_cbor_put_uint(b, 1);
    sync_cbor_put_value(b, &c->key);
    sync_cbor_put_uint(b, 2);
    sync_cbor_put_uint(b, c->version);
    sync_cbor_put_uint(b, 3);
    sync_cbor_put_uint(b, c->cseq);
    sync_cbor_put_uint(b, 4);
    sync_cbor_put_uint(b, c->hlc);
    sync_cbor_put_uint(b, 5);
    sync_cbor_put_text(b, c->origin, c->origin_len);
    sync_cbor_put_uint(b, 6);
    if (c->op == SYNC_OP_DELETE)
        return sync_cbor_put_null(b);
    return rec__put_cols(b, c->cols, c->ncols);
}

/* ==== catch-up: pull, page, head ==== */

static const char *const rec__pull_keys[] = {"table", "after", "limit",   "full",
                                             "part",  "snap",  "snap_key"};

int sync_pull_encode(sync_cbuf *b, const sync_pull *p)
{
    if (!rec__name_ok(p->table, p->table_len, SYNC_MAX_NAME) || p->limit == 0 ||
        (p->has_part && p->part.type != SYNC_INT && p->part.type != SYNC_TEXT) ||
        (p->snap && (p->after != 0 || p->full || p->has_part)) ||
        (p->has_snap_key && (!p->snap || !rec__key_ok(&p->snap_key))))
        return rec__inval(b);
    sync_cbor_put_map(b, 3 + (p->full ? 1 : 0) + (p->has_part ? 1 : 0) + (p->snap ? 1 : 0) +
                             (p->has_snap_key ? 1 : 0));
    sync_cbor_put_uint(b, 0);
    sync_cbor_put_text(b, p->table, p->table_len);
    sync_cbor_put_uint(b, 1);
    sync_cbor_put_uint(b, p->after);
    sync_cbor_put_uint(b, 2);
    sync_cbor_put_uint(b, p->limit);
    if (p->full) {
        sync_cbor_put_uint(b, 3);
        sync_cbor_put_bool(b, 1);
    }
    if (p->has_part) {
        sync_cbor_put_uint(b, 4);
        sync_cbor_put_value(b, &p->part);
    }
    if (p->snap) {
        sync_cbor_put_uint(b, 5);
        sync_cbor_put_uint(b, p->snap_high);
    }
    if (p->has_snap_key) {
        sync_cbor_put_uint(b, 6);
        sync_cbor_put_value(b, &p->snap_key);
    }
    return b->err ? SYNC_ERR_NOMEM : SYNC_OK;
}

int sync_pull_decode(const void *buf, size_t len, sync_pull *out, char *err, size_t errlen)
{
    const unsigned required = 0x7;
    unsigned key = 0, seen = 0;
    int last = -1, rc;
    sync_ctoken t;
    size_t i, npairs;
    rec__dec d;

    memset(out, 0, sizeof *out);
    rec__start(&d, buf, len, NULL, "pull", err, errlen);
    rc = rec__expect(&d, &t, SYNC_C_MAP);
    npairs = t.u.count;
    for (i = 0; rc == SYNC_OK && i < npairs; i++) {
        rc = rec__mapkey(&d, rec__pull_keys, 7, &last, &key);
        if (rc != SYNC_OK)
            return rc;
        seen |= 1u << key;
        switch (key) {
        case 0:
            rc = rec__name(&d, "table name", SYNC_MAX_NAME, &out->table, &out->table_len);
            break;
        case 1:
            rc = rec__uint(&d, &out->after);
            break;
        case 2:
            rc = rec__uint(&d, &out->limit);
            if (rc == SYNC_OK && out->limit == 0)
                rc = rec__fail(&d, SYNC_ERR_DECODE, "limit is 0");
            break;
        case 3:
            rc = rec__expect(&d, &t, SYNC_C_BOOL);
            out->full = rc == SYNC_OK && t.u.u;
            break;
        case 4: {
            size_t at = rec__at(&d);
            rc = rec__value(&d, &out->part);
            if (rc == SYNC_OK && out->part.type != SYNC_INT && out->part.type != SYNC_TEXT)
                rc = rec__fail(&d, SYNC_ERR_DECODE,
                               "a partition must be an integer or text, found %s at byte %zu",
                               sync_vtype_name(out->part.type), at);
            out->has_part = rc == SYNC_OK;
            break;
        }
        case 5:
            rc = rec__uint(&d, &out->snap_high);
            out->snap = rc == SYNC_OK;
            break;
        case 6:
            rc = rec__key(&d, &out->snap_key);
            out->has_snap_key = rc == SYNC_OK;
            break;
        }
    }
    if (rc != SYNC_OK)
        return rc;
    rc = rec__need(&d, rec__pull_keys, required, seen, 7);
    if (rc != SYNC_OK)
        return rc;
    if (out->snap && (out->after != 0 || out->full || out->has_part))
        return rec__fail(&d, SYNC_ERR_DECODE,
                         "a snapshot pull (key 5) must have after 0, and no full or part");
    if (out->has_snap_key && !out->snap)
        return rec__fail(&d, SYNC_ERR_DECODE, "snap_key (key 6) without snap (key 5)");
    if (rc != SYNC_OK)
        return rc;
    return rec__finish(&d);
}

static const char *const rec__page_keys[] = {"table", "after",     "next",
                                             "done",  "remaining", "changes"};

int sync_page_encode_hdr(sync_cbuf *b, const sync_page_hdr *hdr)
{
    if (!rec__name_ok(hdr->table, hdr->table_len, SYNC_MAX_NAME) || hdr->next < hdr->after)
        return rec__inval(b);
    sync_cbor_put_map(b, 6);
    sync_cbor_put_uint(b, 0);
    sync_cbor_put_text(b, hdr->table, hdr->table_len);
    sync_cbor_put_uint(b, 1);
    sync_cbor_put_uint(b, hdr->after);
    sync_cbor_put_uint(b, 2);
    sync_cbor_put_uint(b, hdr->next);
    sync_cbor_put_uint(b, 3);
    sync_cbor_put_bool(b, hdr->done);
    sync_cbor_put_uint(b, 4);
    sync_cbor_put_uint(b, hdr->remaining);
    sync_cbor_put_uint(b, 5);
    return sync_cbor_put_array(b, hdr->nchanges);
}

int sync_page_decode(const void *buf, size_t len, const sync_limits *lim, sync_page_hdr_cb on_hdr,
                     sync_change_cb on_change, void *ctx, char *err, size_t errlen)
{
    const unsigned required = 0x3f;
    unsigned key = 0, seen = 0;
    int last = -1, rc;
    sync_page_hdr hdr;
    sync_ctoken t;
    size_t i, npairs;
    rec__dec d;

    memset(&hdr, 0, sizeof hdr);
    rec__start(&d, buf, len, lim, "page", err, errlen);
    rc = rec__expect(&d, &t, SYNC_C_MAP);
    npairs = t.u.count;
    for (i = 0; rc == SYNC_OK && i < npairs; i++) {
        rc = rec__mapkey(&d, rec__page_keys, 6, &last, &key);
        if (rc == SYNC_OK && key == 5)
            rc = rec__need(&d, rec__page_keys, required, seen, key);
        if (rc != SYNC_OK)
            return rc;
        d.field = rec__page_keys[key];
        seen |= 1u << key;
        switch (key) {
        case 0:
            rc = rec__name(&d, "table name", SYNC_MAX_NAME, &hdr.table, &hdr.table_len);
            break;
        case 1:
            rc = rec__uint(&d, &hdr.after);
            break;
        case 2:
            rc = rec__uint(&d, &hdr.next);
            if (rc == SYNC_OK && hdr.next < hdr.after)
                rc = rec__fail(&d, SYNC_ERR_DECODE, "next %" PRIu64 " is below after %" PRIu64,
                               hdr.next, hdr.after);
            break;
        case 3:
            rc = rec__expect(&d, &t, SYNC_C_BOOL);
            hdr.done = rc == SYNC_OK && t.u.u;
            break;
        case 4:
            rc = rec__uint(&d, &hdr.remaining);
            break;
        case 5:
            rc = rec__items(&d, 0, "changes", &hdr.nchanges);
            if (rc == SYNC_OK && on_hdr != NULL)
                if ((rc = on_hdr(ctx, &hdr)) != 0)
                    return rc;
            if (rc == SYNC_OK && (rc = rec__changes(&d, hdr.nchanges, on_change, ctx)) != 0)
                return rc;
            break;
        }
    }
    if (rc != SYNC_OK)
        return rc;
    rc = rec__need(&d, rec__page_keys, required, seen, 6);
    if (rc != SYNC_OK)
        return rc;
    return rec__finish(&d);
}

static const char *const rec__head_keys[] = {"cseq", "tables"};

int sync_head_encode(sync_cbuf *b, uint64_t cseq, const sync_head_entry *tables, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!rec__name_ok(tables[i].table, tables[i].table_len, SYNC_MAX_NAME))
            return rec__inval(b);
    sync_cbor_put_map(b, 2);
    sync_cbor_put_uint(b, 0);
    sync_cbor_put_uint(b, cseq);
    sync_cbor_put_uint(b, 1);
    sync_cbor_put_map(b, n);
    for (i = 0; i < n; i++) {
        sync_cbor_put_text(b, tables[i].table, tables[i].table_len);
        sync_cbor_put_uint(b, tables[i].cseq);
    }
    return b->err;
}

int sync_head_decode(const void *buf, size_t len, uint64_t *cseq, sync_head_cb on_table, void *ctx,
                     char *err, size_t errlen)
{
    const unsigned required = 0x3;
    unsigned key = 0, seen = 0;
    int last = -1, rc;
    sync_ctoken t;
    size_t i, j, npairs, n;
    sync_head_entry e;
    rec__dec d;

    *cseq = 0;
    rec__start(&d, buf, len, NULL, "head", err, errlen);
    rc = rec__expect(&d, &t, SYNC_C_MAP);
    npairs = t.u.count;
    for (i = 0; rc == SYNC_OK && i < npairs; i++) {
        rc = rec__mapkey(&d, rec__head_keys, 2, &last, &key);
        if (rc != SYNC_OK)
            return rc;
        seen |= 1u << key;
        if (key == 0) {
            rc = rec__uint(&d, cseq);
            continue;
        }
        rc = rec__expect(&d, &t, SYNC_C_MAP);
        n = t.u.count;
        if (rc == SYNC_OK && n > d.lim.max_records)
            rc = rec__fail(&d, SYNC_ERR_TOOBIG, "%zu tables exceed the limit of %zu", n,
                           d.lim.max_records);
        for (j = 0; rc == SYNC_OK && j < n; j++) {
            rc = rec__name(&d, "table name", SYNC_MAX_NAME, &e.table, &e.table_len);
            if (rc == SYNC_OK)
                rc = rec__uint(&d, &e.cseq);
            if (rc == SYNC_OK && on_table != NULL)
                if ((rc = on_table(ctx, &e)) != 0)
                    return rc;
        }
    }
    if (rc != SYNC_OK)
        return rc;
    rc = rec__need(&d, rec__head_keys, required, seen, 2);
    if (rc != SYNC_OK)
        return rc;
    return rec__finish(&d);
}
