/* gen_seeds.c - writes the seed corpora of the fuzzers with the real encoders of record.h:
 *     gen_seeds DIR      writes DIR/record/seed-* and DIR/apply/seed-*
 * (the `fuzz_seeds` build target runs it on tests/fuzz/corpus). The output is deterministic,
 * so running it again changes no file unless the encoders or the fixture changed.
 *
 * record/: one valid message of every kind (batches with every value type, nulls, blobs, the
 * integer and float extremes, the widest table; acks with every result code; deltas, rows,
 * pulls, pages, heads), a batch in non-shortest CBOR, and a few cut short.
 * apply/: inputs in fuzz_apply's format (fuzz_fixture.h): one valid batch per table, each
 * conflict policy on a conflicting edit, master mode, duplicates, refused batches of every
 * kind, grouped and rolled back transactions, catch-up requests, compaction, tight limits.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_fixture.h"
#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/record.h"

static const char *outdir;

static void die(const char *what)
{
    fprintf(stderr, "gen_seeds: %s\n", what);
    exit(1);
}

static void write_file(const char *sub, const char *name, const void *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", outdir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "gen_seeds: writing %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void write_buf(const char *sub, const char *name, const sync_cbuf *b)
{
    if (b->err != SYNC_OK)
        die(name);
    write_file(sub, name, b->data, b->len);
}

/* ---- values ---- */

static sync_value v_int(int64_t i)
{
    sync_value v = {.type = SYNC_INT, .u.i = i};
    return v;
}

static sync_value v_real(double f)
{
    sync_value v = {.type = SYNC_REAL, .u.f = f};
    return v;
}

static sync_value v_text(const char *s)
{
    sync_value v = {.type = SYNC_TEXT};
    v.u.b.p = (const uint8_t *)s;
    v.u.b.n = strlen(s);
    return v;
}

static sync_value v_blob(const void *p, size_t n)
{
    sync_value v = {.type = SYNC_BLOB};
    v.u.b.p = p;
    v.u.b.n = n;
    return v;
}

static sync_value v_null(void)
{
    sync_value v = {.type = SYNC_NULL};
    return v;
}

static void col(sync_colval *cols, size_t *n, const char *name, sync_value v)
{
    cols[*n].name = name;
    cols[*n].name_len = strlen(name);
    cols[*n].v = v;
    (*n)++;
}

/* ---- batches ---- */

typedef struct batch {
    sync_record r[16];
    size_t n;
} batch;

static sync_record *rec(batch *b, const char *table, sync_value key, sync_op op, uint64_t base,
                        uint64_t hlc)
{
    sync_record *r = &b->r[b->n++];
    memset(r, 0, sizeof *r);
    r->table = table;
    r->table_len = strlen(table);
    r->key = key;
    r->op = op;
    r->base_version = base;
    r->hlc = hlc;
    return r;
}

/* Encodes batch b from device dev, with seqs base_seq, base_seq + 1, ... */
static void encode_batch(sync_cbuf *out, const char *dev, uint32_t schema_version,
                         uint64_t base_seq, batch *b)
{
    sync_batch_hdr h = {schema_version, dev, strlen(dev), base_seq, b->n};
    sync_batch_encode_hdr(out, &h);
    for (size_t i = 0; i < b->n; i++) {
        b->r[i].seq = base_seq + i;
        sync_record_encode(out, &b->r[i], base_seq);
    }
}

static const uint8_t blob_bytes[] = {0x00, 0xff, 0xfc, 0xfd, 0xfe, 0x01, 0x7f};

#define HLC(ms) ((uint64_t)(ms) << 16)

/* An items insert with every column set (note NULL). */
static void items_insert(batch *b, int64_t id, const char *name, uint64_t hlc)
{
    sync_record *r = rec(b, "items", v_int(id), SYNC_OP_INSERT, 0, hlc);
    col(r->cols, &r->ncols, "id", v_int(id));
    col(r->cols, &r->ncols, "name", v_text(name));
    col(r->cols, &r->ncols, "qty", v_int(INT64_MAX));
    col(r->cols, &r->ncols, "price", v_real(1.5));
    col(r->cols, &r->ncols, "note", v_null());
    col(r->cols, &r->ncols, "data", v_blob(blob_bytes, sizeof blob_bytes));
}

static void items_update(batch *b, int64_t id, uint64_t base, uint64_t hlc, const char *name,
                         int64_t qty)
{
    sync_record *r = rec(b, "items", v_int(id), SYNC_OP_UPDATE, base, hlc);
    if (name)
        col(r->cols, &r->ncols, "name", v_text(name));
    if (qty >= 0)
        col(r->cols, &r->ncols, "qty", v_int(qty));
}

static void items_delete(batch *b, int64_t id, uint64_t base, uint64_t hlc)
{
    rec(b, "items", v_int(id), SYNC_OP_DELETE, base, hlc);
}

static void notes_insert(batch *b, const char *k, const char *body)
{
    sync_record *r = rec(b, "notes", v_text(k), SYNC_OP_INSERT, 0, HLC(10));
    col(r->cols, &r->ncols, "body", v_text(body));
    col(r->cols, &r->ncols, "n", v_int(-1));
}

static void blobs_insert(batch *b, double r_value)
{
    sync_record *r = rec(b, "blobs", v_blob(blob_bytes, 3), SYNC_OP_INSERT, 0, HLC(10));
    col(r->cols, &r->ncols, "v", v_blob(NULL, 0));
    col(r->cols, &r->ncols, "r", v_real(r_value));
}

static void forms_insert(batch *b, int64_t id, const char *v)
{
    sync_record *r = rec(b, "forms", v_int(id), SYNC_OP_INSERT, 0, HLC(10));
    col(r->cols, &r->ncols, "v", v_text(v));
}

static char wide_names[61][8];

static void wide_insert(batch *b, int64_t id)
{
    sync_record *r = rec(b, FUZZ_WIDE, v_int(id), SYNC_OP_INSERT, 0, HLC(10));
    col(r->cols, &r->ncols, "id", v_int(id));
    for (int i = 1; i <= 61; i++) {
        snprintf(wide_names[i - 1], sizeof wide_names[i - 1], "c%02d", i);
        const char *t = fuzz_wide_type(i);
        sync_value v = t[0] == 'i'   ? v_int(i)
                       : t[0] == 'r' ? v_real(i + 0.25)
                       : t[0] == 't' ? v_text("w")
                                     : v_blob(blob_bytes, 1);
        col(r->cols, &r->ncols, wide_names[i - 1], v);
    }
    col(r->cols, &r->ncols, FUZZ_LONGCOL, v_text("long"));
}

/* ---- apply inputs: variant, then frames ---- */

typedef struct input {
    uint8_t *d;
    size_t len, cap;
    int frames;
} input;

static void raw(input *in, const void *p, size_t n)
{
    if (in->len + n > in->cap) {
        size_t cap = in->cap ? in->cap : 256;
        while (cap < in->len + n)
            cap *= 2;
        uint8_t *d = realloc(in->d, cap);
        if (!d)
            die("out of memory");
        in->d = d;
        in->cap = cap;
    }
    if (n)
        memcpy(in->d + in->len, p, n);
    in->len += n;
}

static void in_start(input *in, unsigned variant)
{
    uint8_t v = (uint8_t)variant;
    memset(in, 0, sizeof *in);
    raw(in, &v, 1);
}

static void frame(input *in, unsigned ctl, const void *payload, size_t n)
{
    uint8_t c = (uint8_t)ctl;
    if (in->frames++)
        raw(in, fuzz_sep, sizeof fuzz_sep);
    raw(in, &c, 1);
    raw(in, payload, n);
}

enum { DEV_A, DEV_B, DEV_MGR, DEV_CLERK, DEV_PI, DEV_Z, DEV_C, DEV_LONG };

#define CTL(dev, act) ((unsigned)(dev) | (unsigned)(act) << 3)

/* Adds a frame holding batch b sent by device dev (with ctl flags). */
static void frame_batch(input *in, int dev, unsigned flags, uint64_t base_seq, batch *b)
{
    sync_cbuf enc;
    sync_cbuf_init(&enc, 0);
    encode_batch(&enc, fuzz_devices[dev], FUZZ_SCHEMA_VERSION, base_seq, b);
    if (enc.err != SYNC_OK)
        die("encoding a batch");
    frame(in, CTL(dev, FUZZ_ACT_BATCH) | flags, enc.data, enc.len);
    sync_cbuf_free(&enc);
}

static void frame_pull(input *in, int dev, unsigned flags, const char *table, uint64_t after,
                       uint64_t limit, int full)
{
    sync_cbuf enc;
    sync_pull p = {.table = table, .table_len = strlen(table), .after = after, .limit = limit, .full = full};
    sync_cbuf_init(&enc, 0);
    sync_pull_encode(&enc, &p);
    if (enc.err != SYNC_OK)
        die("encoding a pull");
    frame(in, CTL(dev, FUZZ_ACT_PULL) | flags, enc.data, enc.len);
    sync_cbuf_free(&enc);
}

/* A pull of one partition of notes (split by body). */
static void frame_pull_part(input *in, int dev, const char *part, uint64_t after, int full)
{
    sync_cbuf enc;
    sync_pull p = {.table = "notes", .table_len = 5, .after = after, .limit = 2, .full = full,
                   .has_part = 1, .part = v_text(part)};
    sync_cbuf_init(&enc, 0);
    sync_pull_encode(&enc, &p);
    if (enc.err != SYNC_OK)
        die("encoding a pull");
    frame(in, CTL(dev, FUZZ_ACT_PULL), enc.data, enc.len);
    sync_cbuf_free(&enc);
}

/* A snapshot pull of items: from the start, or after key `after_key`. */
static void frame_pull_snap(input *in, int dev, uint64_t high, int has_key, int64_t after_key,
                            uint64_t limit)
{
    sync_cbuf enc;
    sync_pull p = {.table = "items", .table_len = 5, .limit = limit, .snap = 1,
                   .snap_high = high, .has_snap_key = has_key, .snap_key = v_int(after_key)};
    sync_cbuf_init(&enc, 0);
    sync_pull_encode(&enc, &p);
    if (enc.err != SYNC_OK)
        die("encoding a pull");
    frame(in, CTL(dev, FUZZ_ACT_PULL), enc.data, enc.len);
    sync_cbuf_free(&enc);
}

static void in_write(input *in, const char *name)
{
    write_file("apply", name, in->d, in->len);
    free(in->d);
}

static void one_batch(batch *b)
{
    b->n = 0;
}

/* ---- record corpus ---- */

static void gen_record(void)
{
    sync_cbuf o;
    batch b;

    sync_cbuf_init(&o, 0);

    /* Batches. */
    one_batch(&b);
    items_insert(&b, 1, "caf\xc3\xa9 \xf0\x9f\x98\x80", HLC(1000));
    items_update(&b, 1, 1, HLC(1001), NULL, 7);
    sync_record *r = rec(&b, "items", v_int(INT64_MIN), SYNC_OP_UPDATE, UINT64_MAX, UINT64_MAX);
    col(r->cols, &r->ncols, "qty", v_int(INT64_MIN));
    col(r->cols, &r->ncols, "note", v_null());
    items_delete(&b, 2, 5, HLC(1002));
    notes_insert(&b, "k/1 #+%", "body");
    blobs_insert(&b, 1e300);
    encode_batch(&o, "dev-a", FUZZ_SCHEMA_VERSION, 100, &b);
    write_buf("record", "seed-batch-mixed", &o);
    size_t mixed_len = o.len;
    uint8_t *mixed = malloc(o.len);
    if (!mixed)
        die("out of memory");
    memcpy(mixed, o.data, o.len);

    sync_cbuf_reset(&o);
    one_batch(&b);
    wide_insert(&b, 42);
    encode_batch(&o, fuzz_devices[DEV_LONG], FUZZ_SCHEMA_VERSION, UINT64_MAX - 1, &b);
    write_buf("record", "seed-batch-wide", &o);

    sync_cbuf_reset(&o);
    one_batch(&b);
    static const double reals[] = {
        0.0, -0.0, 1.5, 65504.0, 5.960464477539063e-08, 0.1, 3.4028234663852886e38, 1e-310, 1e308};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        r = rec(&b, "items", v_int((int64_t)i), SYNC_OP_UPDATE, 1, HLC(5));
        col(r->cols, &r->ncols, "price", v_real(reals[i]));
    }
    r = rec(&b, "items", v_int(100), SYNC_OP_UPDATE, 1, HLC(5));
    col(r->cols, &r->ncols, "price", v_real(NAN));
    r = rec(&b, "items", v_int(101), SYNC_OP_UPDATE, 1, HLC(5));
    col(r->cols, &r->ncols, "price", v_real(-INFINITY));
    encode_batch(&o, "z", FUZZ_SCHEMA_VERSION, 0, &b);
    write_buf("record", "seed-batch-reals", &o);

    /* The same small batch in non-shortest form: every integer with a 1-byte argument, and
     * the float as a double. {0: 7, 1: "z", 2: 0, 3: [{0: "items", 1: 1, 2: 2, 3: 0, 4: 0,
     * 5: 0}]} */
    static const uint8_t longform[] = {
        0xa4, 0x18, 0x00, 0x18, 0x07, 0x18, 0x01, 0x61, 'z',  0x18, 0x02, 0x19, 0x00, 0x00,
        0x18, 0x03, 0x81, 0xa6, 0x18, 0x00, 0x65, 'i',  't',  'e',  'm',  's',  0x18, 0x01,
        0x1a, 0x00, 0x00, 0x00, 0x01, 0x18, 0x02, 0x18, 0x02, 0x18, 0x03, 0x18, 0x00, 0x18,
        0x04, 0x1b, 0,    0,    0,    0,    0,    0,    0,    0,    0x18, 0x05, 0x18, 0x00};
    write_file("record", "seed-batch-longform", longform, sizeof longform);

    /* Acks. */
    sync_cbuf_reset(&o);
    sync_ack_hdr ah = {100, 107, SYNC_ACK_OK, NULL, 0, 7};
    sync_ack_encode_hdr(&o, &ah);
    for (int code = 0; code <= SYNC_R_REJECTED; code++) {
        sync_ack_result res;
        memset(&res, 0, sizeof res);
        res.seq = 100 + (uint64_t)code;
        res.result = (sync_result)code;
        res.version = (uint64_t)code + 1;
        if (SYNC_RESULT_HAS_ROW(res.result)) {
            res.has_row = 1;
            res.deleted = code == SYNC_R_DUPLICATE;
            if (!res.deleted) {
                col(res.cols, &res.ncols, "id", v_int(1));
                col(res.cols, &res.ncols, "name", v_text("winner"));
                col(res.cols, &res.ncols, "data", v_blob(blob_bytes, 2));
            }
        }
        if (res.result == SYNC_R_REJECTED) {
            res.reason = "table 'forms' is owned by device 'pi'";
            res.reason_len = strlen(res.reason);
        }
        sync_ack_result_encode(&o, &res, 100);
    }
    write_buf("record", "seed-ack-results", &o);
    size_t ack_len = o.len;
    uint8_t *ack = malloc(o.len);
    if (!ack)
        die("out of memory");
    memcpy(ack, o.data, o.len);

    sync_cbuf_reset(&o);
    sync_ack_hdr rej = {5, 5, SYNC_ACK_REJECTED, "schema version mismatch", 23, 0};
    sync_ack_encode_hdr(&o, &rej);
    write_buf("record", "seed-ack-rejected", &o);

    /* Delta, rows. */
    sync_change c;
    sync_cbuf_reset(&o);
    sync_delta_hdr dh = {"items", 5, 12, 3};
    sync_delta_encode_hdr(&o, &dh);
    memset(&c, 0, sizeof c);
    c.key = v_int(1);
    c.op = SYNC_OP_INSERT;
    c.version = 1;
    c.cseq = 13;
    c.hlc = HLC(5);
    c.origin = "dev-a";
    c.origin_len = 5;
    col(c.cols, &c.ncols, "id", v_int(1));
    col(c.cols, &c.ncols, "name", v_text(""));
    col(c.cols, &c.ncols, "price", v_real(-0.0));
    sync_change_encode(&o, &c);
    c.op = SYNC_OP_UPDATE;
    c.version = 2;
    c.cseq = 14;
    c.ncols = 0;
    col(c.cols, &c.ncols, "note", v_null());
    sync_change_encode(&o, &c);
    c.op = SYNC_OP_DELETE;
    c.version = 3;
    c.cseq = UINT64_MAX;
    c.ncols = 0;
    sync_change_encode(&o, &c);
    write_buf("record", "seed-delta", &o);

    sync_cbuf_reset(&o);
    memset(&c, 0, sizeof c);
    c.key = v_text("k/1 #+%");
    c.op = SYNC_OP_INSERT;
    c.version = 9;
    c.cseq = 99;
    c.hlc = HLC(9);
    c.origin = "mgr";
    c.origin_len = 3;
    col(c.cols, &c.ncols, "k", v_text("k/1 #+%"));
    col(c.cols, &c.ncols, "body", v_text("b"));
    col(c.cols, &c.ncols, "n", v_null());
    sync_row_encode(&o, "notes", 5, &c);
    write_buf("record", "seed-row-live", &o);
    sync_cbuf_reset(&o);
    c.op = SYNC_OP_DELETE;
    c.ncols = 0;
    c.key = v_blob(blob_bytes, sizeof blob_bytes);
    sync_row_encode(&o, "blobs", 5, &c);
    write_buf("record", "seed-row-tombstone", &o);

    /* Catch-up. */
    sync_cbuf_reset(&o);
    sync_pull p = {.table = "items", .table_len = 5, .after = 0, .limit = 100};
    sync_pull_encode(&o, &p);
    write_buf("record", "seed-pull", &o);
    sync_cbuf_reset(&o);
    p.full = 1;
    p.after = UINT64_MAX;
    p.limit = UINT64_MAX;
    sync_pull_encode(&o, &p);
    write_buf("record", "seed-pull-full", &o);
    sync_cbuf_reset(&o);
    sync_pull pp = {.table = "notes", .table_len = 5, .after = 3, .limit = 10, .has_part = 1,
                    .part = v_text("north")};
    sync_pull_encode(&o, &pp);
    write_buf("record", "seed-pull-part", &o);
    sync_cbuf_reset(&o);
    sync_pull ps = {.table = "items", .table_len = 5, .limit = 10, .snap = 1, .snap_high = 42,
                    .has_snap_key = 1, .snap_key = v_int(-7)};
    sync_pull_encode(&o, &ps);
    write_buf("record", "seed-pull-snapshot", &o);

    sync_cbuf_reset(&o);
    sync_page_hdr ph = {"items", 5, 10, 14, 0, 3, 2};
    sync_page_encode_hdr(&o, &ph);
    memset(&c, 0, sizeof c);
    c.key = v_int(-5);
    c.op = SYNC_OP_INSERT;
    c.version = 4;
    c.cseq = 11;
    c.hlc = 1;
    c.origin = "z";
    c.origin_len = 1;
    col(c.cols, &c.ncols, "id", v_int(-5));
    col(c.cols, &c.ncols, "qty", v_int(0));
    sync_change_encode(&o, &c);
    c.op = SYNC_OP_DELETE;
    c.cseq = 14;
    c.ncols = 0;
    sync_change_encode(&o, &c);
    write_buf("record", "seed-page", &o);
    sync_cbuf_reset(&o);
    sync_page_hdr empty = {"notes", 5, 7, 7, 1, 0, 0};
    sync_page_encode_hdr(&o, &empty);
    write_buf("record", "seed-page-empty", &o);

    sync_cbuf_reset(&o);
    sync_head_entry he[3] = {{"items", 5, 14}, {"notes", 5, 0}, {FUZZ_WIDE, 63, UINT64_MAX}};
    sync_head_encode(&o, UINT64_MAX, he, 3);
    write_buf("record", "seed-head", &o);

    /* Cut short by hand. */
    write_file("record", "seed-trunc-batch-half", mixed, mixed_len / 2);
    write_file("record", "seed-trunc-batch-1", mixed, mixed_len - 1);
    write_file("record", "seed-trunc-ack-1", ack, ack_len - 1);
    static const uint8_t trailing[] = {0xa2, 0x00, 0x01, 0x01, 0xa0, 0x00};
    write_file("record", "seed-head-trailing-byte", trailing, sizeof trailing);
    free(mixed);
    free(ack);
    sync_cbuf_free(&o);
}

/* ---- apply corpus ---- */

static void gen_apply(void)
{
    input in;
    batch b;

    /* One valid batch per table, from the right devices, in one input. */
    in_start(&in, 0);
    one_batch(&b);
    items_insert(&b, 1, "one", HLC(100));
    items_insert(&b, -9, "minus", HLC(100));
    frame_batch(&in, DEV_A, 0, 1, &b);
    one_batch(&b);
    notes_insert(&b, "k/1 #+%", "body");
    notes_insert(&b, "", "empty key");
    frame_batch(&in, DEV_B, 0, 1, &b);
    one_batch(&b);
    blobs_insert(&b, 2.5);
    frame_batch(&in, DEV_C, 0, 1, &b);
    one_batch(&b);
    forms_insert(&b, 1, "by the owner");
    frame_batch(&in, DEV_PI, 0, 1, &b);
    one_batch(&b);
    wide_insert(&b, 7);
    frame_batch(&in, DEV_LONG, 0, 1, &b);
    in_write(&in, "seed-every-table");

    /* A conflicting edit under each policy: A inserts, B updates on v1, C updates on v1
     * later (a conflict), A updates on v1 again (own chain), then a delete and an update of
     * the tombstone. Priority uses mgr and clerk. */
    static const char *const names[8] = {
        "seed-lww",    "seed-server-wins",   "seed-priority",        "seed-merge",
        "seed-manual", "seed-lww-resurrect", "seed-merge-resurrect", "seed-priority-resurrect"};
    for (unsigned pol = 0; pol < 8; pol++) {
        int x = pol == 2 || pol == 7 ? DEV_MGR : DEV_B;
        int y = pol == 2 || pol == 7 ? DEV_CLERK : DEV_C;
        in_start(&in, pol);
        one_batch(&b);
        items_insert(&b, 1, "orig", HLC(100));
        frame_batch(&in, DEV_A, 0, 10, &b);
        one_batch(&b);
        items_update(&b, 1, 1, HLC(200), "from-x", -1);
        frame_batch(&in, x, 0, 10, &b);
        one_batch(&b);
        items_update(&b, 1, 1, HLC(300), NULL, 5);
        items_update(&b, 1, 1, HLC(50), "from-y", -1);
        frame_batch(&in, y, 0, 10, &b);
        one_batch(&b);
        items_update(&b, 1, 1, HLC(400), "a-again", 6);
        frame_batch(&in, DEV_A, 0, 11, &b);
        one_batch(&b);
        items_delete(&b, 1, 4, HLC(500));
        frame_batch(&in, x, 0, 11, &b);
        one_batch(&b);
        items_update(&b, 1, 3, HLC(900), "after-delete", -1);
        items_update(&b, 2, 7, HLC(900), "never-seen", -1);
        frame_batch(&in, y, 0, 12, &b);
        in_write(&in, names[pol]);
    }

    /* Master mode: another device's write is refused per change, the owner's applies. */
    in_start(&in, 0);
    one_batch(&b);
    forms_insert(&b, 1, "not the owner");
    items_insert(&b, 3, "still applies", HLC(1));
    frame_batch(&in, DEV_A, 0, 1, &b);
    one_batch(&b);
    forms_insert(&b, 1, "owner");
    frame_batch(&in, DEV_PI, 0, 1, &b);
    in_write(&in, "seed-owner");

    /* The same batch twice, and an older seq after a newer one. */
    in_start(&in, 0);
    one_batch(&b);
    items_insert(&b, 1, "x", HLC(1));
    frame_batch(&in, DEV_Z, 0, 5000, &b);
    frame_batch(&in, DEV_Z, 0, 5000, &b);
    one_batch(&b);
    items_update(&b, 1, 1, HLC(2), "older seq", -1);
    frame_batch(&in, DEV_Z, 0, 4000, &b);
    in_write(&in, "seed-duplicates");

    /* Refused batches: each frame is refused whole for one reason. */
    in_start(&in, 0);
    sync_cbuf enc;
    sync_cbuf_init(&enc, 0);
    one_batch(&b);
    items_insert(&b, 1, "x", HLC(1));
    encode_batch(&enc, "dev-b", FUZZ_SCHEMA_VERSION, 1, &b); /* sent on dev-a's topic */
    frame(&in, CTL(DEV_A, 0), enc.data, enc.len);
    sync_cbuf_reset(&enc);
    encode_batch(&enc, "dev-a", FUZZ_SCHEMA_VERSION + 1, 1, &b);
    frame(&in, CTL(DEV_A, 1), enc.data, enc.len);
    size_t cut = enc.len - 3;
    frame(&in, CTL(DEV_A, 2), enc.data, cut);
    sync_cbuf_free(&enc);
    one_batch(&b);
    sync_record *r = rec(&b, "nope", v_int(1), SYNC_OP_DELETE, 1, 1);
    frame_batch(&in, DEV_A, 0, 2, &b);
    one_batch(&b);
    r = rec(&b, "items", v_int(1), SYNC_OP_UPDATE, 1, 1);
    col(r->cols, &r->ncols, "nope", v_int(1));
    frame_batch(&in, DEV_A, 0, 3, &b);
    one_batch(&b);
    r = rec(&b, "items", v_int(1), SYNC_OP_UPDATE, 1, 1);
    col(r->cols, &r->ncols, "qty", v_text("not an integer"));
    frame_batch(&in, DEV_A, 0, 4, &b);
    one_batch(&b);
    r = rec(&b, "notes", v_text("k"), SYNC_OP_INSERT, 0, 1);
    col(r->cols, &r->ncols, "n", v_int(1)); /* body is NOT NULL */
    frame_batch(&in, DEV_A, 0, 5, &b);
    one_batch(&b);
    r = rec(&b, "items", v_int(1), SYNC_OP_UPDATE, 1, 1);
    col(r->cols, &r->ncols, "id", v_int(2)); /* differs from the key */
    frame_batch(&in, DEV_A, 0, 6, &b);
    one_batch(&b);
    r = rec(&b, "items", v_text("1"), SYNC_OP_DELETE, 1, 1); /* key of the wrong type */
    frame_batch(&in, DEV_A, 0, 7, &b);
    one_batch(&b);
    r = rec(&b, "notes", v_text("k"), SYNC_OP_INSERT, 0, 1);
    col(r->cols, &r->ncols, "body", v_text("\xed\xa0\x80")); /* UTF-16 surrogate */
    frame_batch(&in, DEV_A, 0, 8, &b);
    static const uint8_t garbage[] = {0xa4, 0x00};
    frame(&in, CTL(DEV_A, 0), garbage, sizeof garbage);
    in_write(&in, "seed-refused");

    /* Transactions: two batches grouped and committed, two grouped and rolled back, then the
     * rolled back ones again. */
    in_start(&in, 0);
    one_batch(&b);
    items_insert(&b, 1, "grouped", HLC(1));
    frame_batch(&in, DEV_A, FUZZ_CTL_GROUP, 1, &b);
    one_batch(&b);
    items_update(&b, 1, 1, HLC(2), "grouped 2", -1);
    frame_batch(&in, DEV_B, 0, 1, &b);
    one_batch(&b);
    items_insert(&b, 2, "rolled back", HLC(3));
    frame_batch(&in, DEV_A, FUZZ_CTL_GROUP, 2, &b);
    one_batch(&b);
    items_update(&b, 1, 2, HLC(4), "rolled back too", -1);
    frame_batch(&in, DEV_B, FUZZ_CTL_ROLLBACK, 2, &b);
    one_batch(&b);
    items_insert(&b, 2, "rolled back", HLC(3));
    frame_batch(&in, DEV_A, 0, 2, &b);
    in_write(&in, "seed-transactions");

    /* Catch-up: rows, then pulls (with and without a response topic, full, unknown table,
     * a one-row page). */
    in_start(&in, 0);
    one_batch(&b);
    items_insert(&b, 1, "a", HLC(1));
    items_insert(&b, 2, "b", HLC(1));
    items_delete(&b, 3, 0, HLC(1));
    notes_insert(&b, "n", "x");
    frame_batch(&in, DEV_A, 0, 1, &b);
    frame_pull(&in, DEV_B, 0, "items", 0, 100, 0);
    frame_pull(&in, DEV_B, FUZZ_CTL_GROUP, "items", 1, 1, 0);
    frame_pull(&in, DEV_C, 0, "notes", 0, 1, 1);
    frame_pull(&in, DEV_C, 0, "nope", 0, 1, 0);
    in_write(&in, "seed-pull");

    /* Partitions (notes by body): rows in two partitions, one moved by an update and one by an
     * insert over it, a delete, pulls of each partition (one-row pages through the leaves),
     * a compaction, and pulls from below the partition's horizon. */
    in_start(&in, 0);
    one_batch(&b);
    notes_insert(&b, "a", "north");
    notes_insert(&b, "b", "north");
    notes_insert(&b, "c", "south");
    frame_batch(&in, DEV_A, 0, 1, &b);
    one_batch(&b);
    r = rec(&b, "notes", v_text("a"), SYNC_OP_UPDATE, 1, HLC(11));
    col(r->cols, &r->ncols, "body", v_text("south"));
    notes_insert(&b, "c", "north");
    r = rec(&b, "notes", v_text("b"), SYNC_OP_DELETE, 1, HLC(12));
    frame_batch(&in, DEV_B, 0, 1, &b);
    frame_pull_part(&in, DEV_C, "north", 0, 0);
    frame_pull_part(&in, DEV_C, "south", 1, 0);
    frame_pull_part(&in, DEV_C, "nowhere", 0, 1);
    frame(&in, FUZZ_CTL_COMPACT, "", 0);
    frame_pull_part(&in, DEV_C, "north", 1, 0);
    frame_pull(&in, DEV_C, 0, "notes", 0, 100, 0);
    in_write(&in, "seed-partitions");

    /* Snapshot pages: key order, one row a page, then from the last key of a page. */
    in_start(&in, 0);
    one_batch(&b);
    items_insert(&b, 5, "e", HLC(1));
    items_insert(&b, -3, "a", HLC(1));
    items_insert(&b, 9, "z", HLC(1));
    items_delete(&b, 7, 0, HLC(1));
    frame_batch(&in, DEV_A, 0, 1, &b);
    frame_pull_snap(&in, DEV_B, 0, 0, 0, 2);
    frame_pull_snap(&in, DEV_B, 4, 1, 5, 2);
    frame_pull_snap(&in, DEV_B, 4, 1, 100, 2);
    in_write(&in, "seed-snapshot");

    /* Compaction: a deleted row is compacted, the key is used again, a replica behind the
     * horizon pulls. */
    in_start(&in, 0);
    one_batch(&b);
    items_insert(&b, 1, "a", HLC(1));
    items_insert(&b, 2, "b", HLC(1));
    frame_batch(&in, DEV_A, 0, 1, &b);
    one_batch(&b);
    items_delete(&b, 1, 1, HLC(2));
    frame_batch(&in, DEV_B, 0, 1, &b);
    frame(&in, FUZZ_CTL_COMPACT, "", 0);
    one_batch(&b);
    items_insert(&b, 1, "again", HLC(3));
    items_update(&b, 2, 1, HLC(3), "b2", -1);
    frame_batch(&in, DEV_C, 0, 1, &b);
    one_batch(&b);
    items_update(&b, 1, 2, HLC(4), "on the compacted version", -1);
    frame_batch(&in, DEV_A, 0, 3, &b);
    frame_pull(&in, DEV_B, 0, "items", 1, 100, 0);
    frame_pull(&in, DEV_B, 0, "items", 1, 100, 1);
    in_write(&in, "seed-compaction");

    /* Tight limits: a batch within them, one with a long value, one of 4 records (the most
     * allowed). (One with more records is regress-too-many-records-gets-ack.) */
    in_start(&in, FUZZ_VAR_TIGHT);
    one_batch(&b);
    items_insert(&b, 1, "ok", HLC(1));
    frame_batch(&in, DEV_A, 0, 1, &b);
    one_batch(&b);
    for (int i = 0; i < 4; i++)
        items_delete(&b, 10 + i, 1, HLC(2));
    frame_batch(&in, DEV_A, 0, 2, &b);
    one_batch(&b);
    items_insert(&b, 2, "a name longer than sixteen bytes", HLC(1));
    frame_batch(&in, DEV_A, 0, 10, &b);
    one_batch(&b);
    wide_insert(&b, 1);
    wide_insert(&b, 2); /* over max_batch_bytes: refused from its header alone */
    frame_batch(&in, DEV_B, 0, 1, &b);
    frame_pull(&in, DEV_B, 0, "items", 0, 100, 0);
    in_write(&in, "seed-tight");

    /* A text key whose row topic would be too long (every '/' takes 3 bytes), and one that
     * fits; a row whose change event does not fit its buffer (sent truncated). */
    in_start(&in, 0);
    static char long_key[201], plain_key[61];
    memset(long_key, '/', sizeof long_key - 1);
    memset(plain_key, 'k', sizeof plain_key - 1);
    one_batch(&b);
    notes_insert(&b, long_key, "long key");
    notes_insert(&b, plain_key, "plain key");
    frame_batch(&in, DEV_A, 0, 1, &b);
    static uint8_t big[2500];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    one_batch(&b);
    r = rec(&b, "items", v_int(5), SYNC_OP_INSERT, 0, HLC(1));
    col(r->cols, &r->ncols, "data", v_blob(big, sizeof big));
    frame_batch(&in, DEV_B, 0, 1, &b);
    in_write(&in, "seed-long-key-big-row");

    /* Quiet outputs, merge policy, a batch of the widest table. */
    in_start(&in, FUZZ_VAR_QUIET | 3);
    one_batch(&b);
    wide_insert(&b, 1);
    frame_batch(&in, DEV_A, 0, 1, &b);
    one_batch(&b);
    r = rec(&b, FUZZ_WIDE, v_int(1), SYNC_OP_UPDATE, 1, HLC(20));
    col(r->cols, &r->ncols, FUZZ_LONGCOL, v_text("changed"));
    col(r->cols, &r->ncols, "c61", v_real(0.5)); /* c61 is real */
    frame_batch(&in, DEV_B, 0, 1, &b);
    in_write(&in, "seed-quiet-wide");
}

int main(int argc, char **argv)
{
    char path[1024];
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds DIR   (writes DIR/record/seed-* and DIR/apply/seed-*)\n");
        return 2;
    }
    outdir = argv[1];
    const char *subs[] = {"", "/record", "/apply"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", outdir, subs[i]);
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "gen_seeds: mkdir %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    gen_record();
    gen_apply();
    return 0;
}
