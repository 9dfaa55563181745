/* fuzz_record.c - libFuzzer target for the wire decoders of record.h: every message the cloud or
 * an edge decodes from the network (batch, ack, delta, row, pull, page, head), and the parser of
 * device topics.
 *
 * Each input goes to all seven decoders. For every decoder the target checks, and aborts (a
 * finding) when one fails:
 * - the decoder reports the same result with and without callbacks and error buffer;
 * - a failure comes with a NUL-terminated message that starts with the message kind;
 * - a decode under tighter limits succeeds only if the default decode does, with the same
 *   content (limits only ever refuse more);
 * - a message that decodes is re-encoded by the matching encoders without error, the
 *   re-encoding decodes to the same content, and encoding that again gives the same bytes;
 * - a message that decodes is no longer accepted with its last byte cut or a byte appended;
 * - a callback returning nonzero stops the decode with that value, the message left alone.
 * The input also goes, as a topic, to the parser of device topics (sync_topic_parse_dev): what
 * parses must have valid ids and build back to the same topic.
 * "Same content" compares a canonical description of every decoded field (strings by bytes,
 * reals by bits, every NaN alike: the encoder writes one canonical NaN).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/record.h"
#include "sync/topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports a broken invariant and aborts, so libFuzzer keeps the input as a crash. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_record: %s:%d: invariant failed: %s: ", __FILE__, __LINE__,      \
                    #cond);                                                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The seven decoders, by index. */
enum { M_BATCH, M_ACK, M_DELTA, M_ROW, M_PULL, M_PAGE, M_HEAD, M_COUNT };
static const char *const msg_name[M_COUNT] = {"batch", "ack",  "delta", "row",
                                              "pull",  "page", "head"};

/* What one decode produced: a canonical description of the content, the re-encoding, and for
 * the head (whose encoder takes every entry at once) the entries seen. */
typedef struct run {
    sync_cbuf desc;        /* canonical description of every decoded field */
    sync_cbuf enc;         /* the same content through the encoders */
    int describe, encode;  /* which of the two to build */
    uint64_t base_seq;     /* batch/ack: needed to encode the items */
    int saw_hdr;           /* batch: on_hdr was called */
    size_t calls;          /* callbacks made so far */
    size_t stop_at;        /* the callback with this number (from 1) stops the decode (0: none) */
    sync_batch_hdr hdr;    /* batch: what on_hdr got */
    sync_head_entry *ents; /* head: the entries, pointing into the input */
    size_t nents, capents;
} run;

/* ---- canonical description ---- */

static void d_str(sync_cbuf *b, const void *p, size_t n)
{
    sync_cbor_put_bytes(b, n ? p : NULL, n);
}

static void d_value(sync_cbuf *b, const sync_value *v)
{
    uint64_t bits;

    sync_cbor_put_uint(b, (uint64_t)v->type);
    switch (v->type) {
    case SYNC_INT:
        sync_cbor_put_int(b, v->u.i);
        break;
    case SYNC_REAL:
        if (isnan(v->u.f)) {
            bits = 0x7ff8000000000000ull;
        } else {
            memcpy(&bits, &v->u.f, sizeof bits);
        }
        sync_cbor_put_uint(b, bits);
        break;
    case SYNC_TEXT:
    case SYNC_BLOB:
        d_str(b, v->u.b.p, v->u.b.n);
        break;
    case SYNC_NULL:
        break;
    }
}

static void d_cols(sync_cbuf *b, const sync_colval *cols, size_t n)
{
    sync_cbor_put_uint(b, n);
    for (size_t i = 0; i < n; i++) {
        d_str(b, cols[i].name, cols[i].name_len);
        d_value(b, &cols[i].v);
    }
}

static void d_change(sync_cbuf *b, const sync_change *c)
{
    d_value(b, &c->key);
    sync_cbor_put_uint(b, (uint64_t)c->op);
    sync_cbor_put_uint(b, c->version);
    sync_cbor_put_uint(b, c->cseq);
    sync_cbor_put_uint(b, c->hlc);
    d_str(b, c->origin, c->origin_len);
    d_cols(b, c->cols, c->ncols);
}

/* ---- callbacks: describe and re-encode as the decoder goes ---- */

/* What a callback returns to stop a decode; the decoder must return it unchanged. */
#define FUZZ_STOP 4242

/* Counts a callback; nonzero if this is the one that must stop the decode. */
static int stop_here(run *r)
{
    return ++r->calls == r->stop_at;
}

static int on_batch_hdr(void *ctx, const sync_batch_hdr *h)
{
    run *r = ctx;
    if (stop_here(r))
        return FUZZ_STOP;
    r->saw_hdr = 1;
    r->hdr = *h;
    r->base_seq = h->base_seq;
    if (r->describe) {
        sync_cbor_put_uint(&r->desc, h->schema_version);
        d_str(&r->desc, h->device, h->device_len);
        sync_cbor_put_uint(&r->desc, h->base_seq);
        sync_cbor_put_uint(&r->desc, h->nrecords);
    }
    if (r->encode)
        sync_batch_encode_hdr(&r->enc, h);
    return 0;
}

static int on_record(void *ctx, const sync_record *rec)
{
    run *r = ctx;
    if (stop_here(r))
        return FUZZ_STOP;
    FUZZ_CHECK(rec->seq >= r->base_seq, "record seq %llu below base_seq %llu",
               (unsigned long long)rec->seq, (unsigned long long)r->base_seq);
    FUZZ_CHECK(rec->op != SYNC_OP_DELETE || rec->ncols == 0, "a delete with %zu columns",
               rec->ncols);
    FUZZ_CHECK(rec->ncols <= SYNC_MAX_COLS, "%zu columns", rec->ncols);
    if (r->describe) {
        d_str(&r->desc, rec->table, rec->table_len);
        d_value(&r->desc, &rec->key);
        sync_cbor_put_uint(&r->desc, (uint64_t)rec->op);
        sync_cbor_put_uint(&r->desc, rec->base_version);
        sync_cbor_put_uint(&r->desc, rec->hlc);
        sync_cbor_put_uint(&r->desc, rec->seq);
        d_cols(&r->desc, rec->cols, rec->ncols);
    }
    if (r->encode)
        sync_record_encode(&r->enc, rec, r->base_seq);
    return 0;
}

static int on_ack_hdr(void *ctx, const sync_ack_hdr *h)
{
    run *r = ctx;
    if (stop_here(r))
        return FUZZ_STOP;
    r->base_seq = h->base_seq;
    if (r->describe) {
        sync_cbor_put_uint(&r->desc, h->base_seq);
        sync_cbor_put_uint(&r->desc, h->last_seq);
        sync_cbor_put_uint(&r->desc, (uint64_t)h->status);
        if (h->status == SYNC_ACK_REJECTED)
            d_str(&r->desc, h->reason, h->reason_len);
        sync_cbor_put_uint(&r->desc, h->nresults);
    }
    if (r->encode)
        sync_ack_encode_hdr(&r->enc, h);
    return 0;
}

static int on_ack_result(void *ctx, const sync_ack_result *res)
{
    run *r = ctx;
    if (stop_here(r))
        return FUZZ_STOP;
    FUZZ_CHECK(res->seq >= r->base_seq, "result seq below base_seq");
    FUZZ_CHECK(!!res->has_row == !!SYNC_RESULT_HAS_ROW(res->result),
               "result code %d with has_row %d", (int)res->result, res->has_row);
    FUZZ_CHECK(!res->deleted || res->ncols == 0, "a deleted row state with %zu columns",
               res->ncols);
    if (r->describe) {
        sync_cbor_put_uint(&r->desc, res->seq);
        sync_cbor_put_uint(&r->desc, (uint64_t)res->result);
        sync_cbor_put_uint(&r->desc, res->version);
        sync_cbor_put_uint(&r->desc, (uint64_t)res->has_row);
        sync_cbor_put_uint(&r->desc, (uint64_t)res->deleted);
        if (res->result == SYNC_R_REJECTED)
            d_str(&r->desc, res->reason, res->reason_len);
        d_cols(&r->desc, res->cols, res->ncols);
    }
    if (r->encode)
        sync_ack_result_encode(&r->enc, res, r->base_seq);
    return 0;
}

static int on_delta_hdr(void *ctx, const sync_delta_hdr *h)
{
    run *r = ctx;
    if (stop_here(r))
        return FUZZ_STOP;
    if (r->describe) {
        d_str(&r->desc, h->table, h->table_len);
        sync_cbor_put_uint(&r->desc, h->prev_cseq);
        sync_cbor_put_uint(&r->desc, h->nchanges);
    }
    if (r->encode)
        sync_delta_encode_hdr(&r->enc, h);
    return 0;
}

static int on_change(void *ctx, const sync_change *c)
{
    run *r = ctx;
    if (stop_here(r))
        return FUZZ_STOP;
    FUZZ_CHECK(SYNC_OP_NOCOLS(c->op) == (c->ncols == 0), "op %d with %zu columns", (int)c->op,
               c->ncols);
    if (r->describe)
        d_change(&r->desc, c);
    if (r->encode)
        sync_change_encode(&r->enc, c);
    return 0;
}

static int on_page_hdr(void *ctx, const sync_page_hdr *h)
{
    run *r = ctx;
    if (stop_here(r))
        return FUZZ_STOP;
    FUZZ_CHECK(h->next >= h->after, "page next %llu below after %llu", (unsigned long long)h->next,
               (unsigned long long)h->after);
    if (r->describe) {
        d_str(&r->desc, h->table, h->table_len);
        sync_cbor_put_uint(&r->desc, h->after);
        sync_cbor_put_uint(&r->desc, h->next);
        sync_cbor_put_uint(&r->desc, (uint64_t)h->done);
        sync_cbor_put_uint(&r->desc, h->remaining);
        sync_cbor_put_uint(&r->desc, h->nchanges);
    }
    if (r->encode)
        sync_page_encode_hdr(&r->enc, h);
    return 0;
}

static int on_head(void *ctx, const sync_head_entry *e)
{
    run *r = ctx;
    if (stop_here(r))
        return FUZZ_STOP;
    if (r->nents == r->capents) {
        size_t cap = r->capents ? 2 * r->capents : 64;
        sync_head_entry *n = realloc(r->ents, cap * sizeof *n);
        FUZZ_CHECK(n != NULL, "out of memory");
        r->ents = n;
        r->capents = cap;
    }
    r->ents[r->nents++] = *e;
    if (r->describe) {
        d_str(&r->desc, e->table, e->table_len);
        sync_cbor_put_uint(&r->desc, e->cseq);
    }
    return 0;
}

/* ---- one decoder over one buffer ---- */

/* Runs decoder m over buf with limits lim (NULL: defaults). With r == NULL no callbacks and no
 * error buffer are given (the cheapest call); otherwise r collects the description and the
 * re-encoding, and err receives the message. */
static int decode(int m, const uint8_t *buf, size_t len, const sync_limits *lim, run *r, char *err,
                  size_t errlen)
{
    sync_batch_hdr hout;
    sync_change chg;
    const char *table = NULL;
    size_t table_len = 0;
    sync_pull pull;
    uint64_t cseq = 0;
    int rc;

    if (r) {
        sync_cbuf_reset(&r->desc);
        sync_cbuf_reset(&r->enc);
        r->saw_hdr = 0;
        r->calls = 0;
        r->nents = 0;
        r->base_seq = 0;
    }
    switch (m) {
    case M_BATCH:
        memset(&hout, 0xa5, sizeof hout);
        rc = sync_batch_decode(buf, len, lim, r ? &hout : NULL, r ? on_batch_hdr : NULL,
                               r ? on_record : NULL, r, err, errlen);
        if (r && r->saw_hdr)
            FUZZ_CHECK(hout.base_seq == r->hdr.base_seq && hout.nrecords == r->hdr.nrecords &&
                           hout.device == r->hdr.device &&
                           hout.schema_version == r->hdr.schema_version,
                       "hdr_out differs from the header given to on_hdr");
        return rc;
    case M_ACK:
        return sync_ack_decode(buf, len, lim, r ? on_ack_hdr : NULL, r ? on_ack_result : NULL, r,
                               err, errlen);
    case M_DELTA:
        return sync_delta_decode(buf, len, lim, r ? on_delta_hdr : NULL, r ? on_change : NULL, r,
                                 err, errlen);
    case M_ROW:
        rc = sync_row_decode(buf, len, lim, &chg, r ? &table : NULL, r ? &table_len : NULL, err,
                             errlen);
        if (rc == SYNC_OK && r) {
            FUZZ_CHECK(chg.op == SYNC_OP_INSERT || chg.op == SYNC_OP_DELETE, "row op %d",
                       (int)chg.op);
            FUZZ_CHECK((chg.op == SYNC_OP_DELETE) == (chg.ncols == 0), "row op %d, %zu columns",
                       (int)chg.op, chg.ncols);
            if (r->describe) {
                d_str(&r->desc, table, table_len);
                d_change(&r->desc, &chg);
            }
            if (r->encode)
                sync_row_encode(&r->enc, table, table_len, &chg);
        }
        return rc;
    case M_PULL:
        rc = sync_pull_decode(buf, len, &pull, err, errlen);
        if (rc == SYNC_OK && r) {
            FUZZ_CHECK(pull.limit > 0 && (pull.full == 0 || pull.full == 1), "pull limit %llu",
                       (unsigned long long)pull.limit);
            if (r->describe) {
                d_str(&r->desc, pull.table, pull.table_len);
                sync_cbor_put_uint(&r->desc, pull.after);
                sync_cbor_put_uint(&r->desc, pull.limit);
                sync_cbor_put_uint(&r->desc, (uint64_t)pull.full);
                sync_cbor_put_uint(&r->desc, (uint64_t)pull.has_part);
                if (pull.has_part)
                    d_value(&r->desc, &pull.part);
                sync_cbor_put_uint(&r->desc, (uint64_t)pull.snap);
                sync_cbor_put_uint(&r->desc, pull.snap_high);
                sync_cbor_put_uint(&r->desc, (uint64_t)pull.has_snap_key);
                if (pull.has_snap_key)
                    d_value(&r->desc, &pull.snap_key);
            }
            if (r->encode)
                sync_pull_encode(&r->enc, &pull);
        }
        return rc;
    case M_PAGE:
        return sync_page_decode(buf, len, lim, r ? on_page_hdr : NULL, r ? on_change : NULL, r, err,
                                errlen);
    case M_HEAD:
        rc = sync_head_decode(buf, len, &cseq, r ? on_head : NULL, r, err, errlen);
        if (rc == SYNC_OK && r) {
            if (r->describe)
                sync_cbor_put_uint(&r->desc, cseq);
            if (r->encode)
                sync_head_encode(&r->enc, cseq, r->ents, r->nents);
        }
        return rc;
    }
    abort();
}

/* A failed decode must leave a message that starts with the message kind. */
static void check_message(int m, int rc, const char *err, size_t errlen)
{
    FUZZ_CHECK(memchr(err, '\0', errlen) != NULL, "%s: error message not NUL-terminated",
               msg_name[m]);
    FUZZ_CHECK(err[0] != '\0', "%s: decode failed (%d) without a message", msg_name[m], rc);
    size_t n = strlen(msg_name[m]);
    FUZZ_CHECK(strncmp(err, msg_name[m], n) == 0 && err[n] == ':',
               "%s: message does not say where: %s", msg_name[m], err);
    FUZZ_CHECK(rc == SYNC_ERR_DECODE || rc == SYNC_ERR_TOOBIG, "%s: unexpected code %d (%s)",
               msg_name[m], rc, err);
}

static run first, second, tight, stopper;

/* Nonzero if the two buffers hold the same bytes. */
static int same(const sync_cbuf *a, const sync_cbuf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* A heap copy of p[0..len) plus `extra` zero bytes, sized exactly so that ASan reports any read
 * past its end (the caller frees it). */
static uint8_t *copy_in(const uint8_t *p, size_t len, size_t extra)
{
    uint8_t *c = malloc(len + extra ? len + extra : 1);
    FUZZ_CHECK(c != NULL, "out of memory");
    if (len)
        memcpy(c, p, len);
    memset(c + len, 0, extra);
    return c;
}

static void fuzz_one(int m, const uint8_t *data, size_t size)
{
    static const sync_limits small = {3, 8};
    char err[512], err2[512];
    int rc, rc0, rct;

    first.describe = first.encode = 1;
    err[0] = '\0';
    rc = decode(m, data, size, NULL, &first, err, sizeof err);
    rc0 = decode(m, data, size, NULL, NULL, NULL, 0);
    FUZZ_CHECK(rc == rc0, "%s: %d with callbacks, %d without", msg_name[m], rc, rc0);

    tight.describe = 1;
    tight.encode = 0;
    err2[0] = '\0';
    rct = decode(m, data, size, &small, &tight, err2, sizeof err2);
    if (rct == SYNC_OK) {
        FUZZ_CHECK(rc == SYNC_OK, "%s: accepted under tight limits, refused by default: %s",
                   msg_name[m], err);
        FUZZ_CHECK(same(&tight.desc, &first.desc), "%s: content differs under tight limits",
                   msg_name[m]);
    } else {
        check_message(m, rct, err2, sizeof err2);
    }
    /* A callback that returns nonzero stops the decode: that value comes back, and the error
     * buffer is left as it was (record.c's promise). */
    stopper.stop_at = 1 + size % 3;
    if (first.calls >= stopper.stop_at) {
        snprintf(err2, sizeof err2, "untouched");
        rct = decode(m, data, size, NULL, &stopper, err2, sizeof err2);
        FUZZ_CHECK(rct == FUZZ_STOP && strcmp(err2, "untouched") == 0,
                   "%s: a callback stopped the decode at call %zu, which returned %d, message %s",
                   msg_name[m], stopper.stop_at, rct, err2);
    }
    if (rc != SYNC_OK) {
        check_message(m, rc, err, sizeof err);
        return;
    }
    FUZZ_CHECK(first.desc.err == SYNC_OK, "describing failed");
    FUZZ_CHECK(first.enc.err == SYNC_OK,
               "%s: decoded, but the encoders refuse the content (error %d)", msg_name[m],
               first.enc.err);

    /* Re-encoded: decodes to the same content, and is a fixed point of decode+encode. */
    second.describe = second.encode = 1;
    err2[0] = '\0';
    rc = decode(m, first.enc.data, first.enc.len, NULL, &second, err2, sizeof err2);
    FUZZ_CHECK(rc == SYNC_OK, "%s: the re-encoding does not decode: %s", msg_name[m], err2);
    FUZZ_CHECK(same(&second.desc, &first.desc),
               "%s: round trip changed the content (%zu vs %zu description bytes)", msg_name[m],
               first.desc.len, second.desc.len);
    FUZZ_CHECK(second.enc.err == SYNC_OK && same(&second.enc, &first.enc),
               "%s: encoding is not a fixed point (%zu vs %zu bytes)", msg_name[m], first.enc.len,
               second.enc.len);

    /* A complete message is exactly its bytes: one less or one more is refused. */
    if (size > 0) {
        uint8_t *cut = copy_in(data, size - 1, 0);
        rc = decode(m, cut, size - 1, NULL, NULL, NULL, 0);
        free(cut);
        FUZZ_CHECK(rc != SYNC_OK, "%s: still accepted with the last byte cut", msg_name[m]);
    }
    uint8_t *longer = copy_in(data, size, 1);
    rc = decode(m, longer, size + 1, NULL, NULL, NULL, 0);
    free(longer);
    FUZZ_CHECK(rc != SYNC_OK, "%s: accepted with a byte appended", msg_name[m]);
}

/* The device topics the cloud parses (the device level of sync/T/dev/+/up is whatever the
 * publisher chose): a topic that parses has valid ids and a one-level leaf, and builds back to
 * itself. */
static void fuzz_topic(const uint8_t *data, size_t size)
{
    char tenant[SYNC_MAX_ID + 1], device[SYNC_MAX_ID + 1], back[SYNC_TOPIC_MAX];
    const char *leaf = NULL;
    char *topic = malloc(size + 1);
    FUZZ_CHECK(topic != NULL, "out of memory");
    memcpy(topic, data, size);
    topic[size] = '\0'; /* an MQTT topic has no NUL: it ends at the first one */
    if (sync_topic_parse_dev(topic, tenant, device, &leaf) == SYNC_OK) {
        size_t tl = strlen(topic);
        FUZZ_CHECK(sync_id_valid(tenant, strlen(tenant)) && sync_id_valid(device, strlen(device)),
                   "topic: parsed ids are not ids");
        FUZZ_CHECK(leaf > topic && leaf < topic + tl && *leaf && !strchr(leaf, '/'),
                   "topic: leaf is not one level");
        if (tl < sizeof back) {
            sync_topic_dev(back, sizeof back, tenant, device, leaf);
            FUZZ_CHECK(strcmp(back, topic) == 0, "topic: %s parses, but builds back as %s", topic,
                       back);
        }
    }
    const char *rest = sync_topic_after_tenant(topic, "acme");
    if (rest)
        FUZZ_CHECK(strncmp(topic, "sync/acme/", 10) == 0 && rest == topic + 10,
                   "topic: after_tenant");
    free(topic);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int m = 0; m < M_COUNT; m++)
        fuzz_one(m, data, size);
    fuzz_topic(data, size);
    return 0;
}
