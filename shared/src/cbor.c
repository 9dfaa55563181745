/* cbor.c - the CBOR writer (growable buffer over libcbor's encoders) and the strict pull
 * reader (libcbor's allocation-free cbor_stream_decode, one data item per call).
 *
 * Promises:
 * - The writer emits shortest-form heads (libcbor picks the smallest argument width) and the
 *   smallest float width that decodes back to the same bits; it never writes more than
 *   sync_cbuf.max bytes.
 * - The reader never allocates, never recurses (except sync_creader_skip, which is bounded by
 *   its depth argument) and never reads outside [start, end). Everything the protocol does not
 *   use is refused with SYNC_ERR_DECODE and a message naming the byte offset of the item.
 *   Text strings are also checked to be well-formed UTF-8 (RFC 3629), so no caller can receive
 *   a text value that a strict peer would later refuse.
 */
#include <cbor.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sync/cbor.h"
#include "sync/err.h"

/* libcbor changed the length parameter of its string and collection callbacks from size_t
 * (0.8) to uint64_t (0.9 and later). All our callbacks take this type, so adapting to another
 * libcbor version is this one line. */
#if CBOR_MAJOR_VERSION == 0 && CBOR_MINOR_VERSION < 9
typedef size_t cbor__len;
#else
typedef uint64_t cbor__len;
#endif

#define CBOR__HEAD_MAX 9   /* longest CBOR head: initial byte + 8-byte argument */
#define CBOR__FIRST_CAP 64 /* first allocation; small messages then never reallocate */

/* ==== writer ==== */

/* Initialises an empty buffer that will refuse to grow past max bytes (0: no limit). */
void sync_cbuf_init(sync_cbuf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->err = SYNC_OK;
}

/* Frees the memory and leaves b empty with the same max, so it is usable again at once. */
void sync_cbuf_free(sync_cbuf *b)
{
    free(b->data);
    sync_cbuf_init(b, b->max);
}

/* Empties b and clears its error, keeping the allocation for the next message. */
void sync_cbuf_reset(sync_cbuf *b)
{
    b->len = 0;
    b->err = SYNC_OK;
}

/* Appends n bytes, doubling the allocation as needed (capped at max). Returns the sticky error:
 * SYNC_ERR_TOOBIG when len would pass max, SYNC_ERR_NOMEM when realloc fails; in both cases
 * the content is left as it was and every later append fails the same way. */
static int cbuf__append(sync_cbuf *b, const void *p, size_t n)
{
    size_t need, cap;
    uint8_t *data;

    if (b->err != SYNC_OK)
        return b->err;
    if (n == 0)
        return SYNC_OK;
    if (n > SIZE_MAX - b->len || (b->max != 0 && b->len + n > b->max))
        return b->err = SYNC_ERR_TOOBIG;
    need = b->len + n;
    if (need > b->cap) {
        cap = b->cap != 0 ? b->cap : CBOR__FIRST_CAP;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (b->max != 0 && cap > b->max)
            cap = b->max; /* still >= need, checked above */
        data = realloc(b->data, cap);
        if (data == NULL)
            return b->err = SYNC_ERR_NOMEM;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return SYNC_OK;
}

/* Appends a head that a libcbor encoder wrote into a CBOR__HEAD_MAX scratch array; n is the
 * encoder's return value. An encoder returning 0 ("does not fit") cannot happen for a 9-byte
 * scratch; should a future libcbor do it anyway, the buffer is marked invalid rather than
 * silently missing an item. */
static int cbuf__head(sync_cbuf *b, const unsigned char *head, size_t n)
{
    if (b->err != SYNC_OK)
        return b->err;
    if (n == 0)
        return b->err = SYNC_ERR_INVAL;
    return cbuf__append(b, head, n);
}

int sync_cbor_put_uint(sync_cbuf *b, uint64_t v)
{
    unsigned char head[CBOR__HEAD_MAX];

    return cbuf__head(b, head, cbor_encode_uint(v, head, sizeof head));
}

/* CBOR stores a negative integer v as the unsigned -1 - v, which cannot overflow for any
 * int64 (INT64_MIN becomes INT64_MAX). */
int sync_cbor_put_int(sync_cbuf *b, int64_t v)
{
    unsigned char head[CBOR__HEAD_MAX];

    if (v >= 0)
        return cbuf__head(b, head, cbor_encode_uint((uint64_t)v, head, sizeof head));
    return cbuf__head(b, head, cbor_encode_negint((uint64_t)(-1 - v), head, sizeof head));
}

/* Nonzero if v converts to float and back without change. The range test comes first because
 * converting an out-of-range finite double to float is undefined behaviour in C. */
static int cbor__single_exact(double v)
{
    float f;

    if (isinf(v))
        return 1;
    if (v > FLT_MAX || v < -FLT_MAX)
        return 0;
    f = (float)v;
    return (double)f == v; /* the conversion keeps the sign of zero, so == is exact here */
}

/* Encodes f as a half float into out (3 bytes) if that is exact, and returns the length, or 0
 * if f needs more bits. libcbor 0.8's cbor_encode_half does not round-trip every float (it
 * truncates mantissas and maps some large finite values to NaN), so instead of predicting its
 * behaviour we decode its output with our own reader and compare the bits. */
static size_t cbor__half_exact(float f, unsigned char *out)
{
    sync_creader r;
    sync_ctoken t;
    double want = f;
    size_t n;

    n = cbor_encode_half(f, out, 3);
    if (n != 3)
        return 0;
    sync_creader_init(&r, out, n);
    if (sync_creader_next(&r, &t, NULL, 0) != SYNC_OK || t.type != SYNC_C_FLOAT)
        return 0;
    return memcmp(&t.u.f, &want, sizeof want) == 0 ? n : 0;
}

/* Writes v as a half, single or double float, whichever is the shortest that decodes to the
 * same bits. Every NaN is written as the canonical half NaN 0xf97e00 (payloads are dropped). */
int sync_cbor_put_double(sync_cbuf *b, double v)
{
    unsigned char head[CBOR__HEAD_MAX];
    size_t n;

    if (isnan(v)) {
        n = cbor_encode_half(NAN, head, sizeof head);
    } else if (cbor__single_exact(v)) {
        n = cbor__half_exact((float)v, head);
        if (n == 0)
            n = cbor_encode_single((float)v, head, sizeof head);
    } else {
        n = cbor_encode_double(v, head, sizeof head);
    }
    return cbuf__head(b, head, n);
}

/* s may be NULL when n is 0. */
int sync_cbor_put_text(sync_cbuf *b, const void *s, size_t n)
{
    unsigned char head[CBOR__HEAD_MAX];

    cbuf__head(b, head, cbor_encode_string_start(n, head, sizeof head));
    return cbuf__append(b, s, n);
}

/* s must be a NUL-terminated string (not NULL); the NUL is not written. */
int sync_cbor_put_cstr(sync_cbuf *b, const char *s)
{
    return sync_cbor_put_text(b, s, strlen(s));
}

/* p may be NULL when n is 0. */
int sync_cbor_put_bytes(sync_cbuf *b, const void *p, size_t n)
{
    unsigned char head[CBOR__HEAD_MAX];

    cbuf__head(b, head, cbor_encode_bytestring_start(n, head, sizeof head));
    return cbuf__append(b, p, n);
}

int sync_cbor_put_raw(sync_cbuf *b, const void *p, size_t n)
{
    return cbuf__append(b, p, n);
}

int sync_cbor_put_bool(sync_cbuf *b, int v)
{
    unsigned char head[CBOR__HEAD_MAX];

    return cbuf__head(b, head, cbor_encode_bool(v != 0, head, sizeof head));
}

int sync_cbor_put_null(sync_cbuf *b)
{
    unsigned char head[CBOR__HEAD_MAX];

    return cbuf__head(b, head, cbor_encode_null(head, sizeof head));
}

/* Writes a definite-length array head; the caller then appends exactly count items. */
int sync_cbor_put_array(sync_cbuf *b, size_t count)
{
    unsigned char head[CBOR__HEAD_MAX];

    return cbuf__head(b, head, cbor_encode_array_start(count, head, sizeof head));
}

/* Writes a definite-length map head; the caller then appends exactly count key/value pairs. */
int sync_cbor_put_map(sync_cbuf *b, size_t count)
{
    unsigned char head[CBOR__HEAD_MAX];

    return cbuf__head(b, head, cbor_encode_map_start(count, head, sizeof head));
}

/* Writes v as the CBOR type matching v->type. A type outside the enum would leave a hole in
 * the message, so it sets the sticky error SYNC_ERR_INVAL instead of writing anything. */
int sync_cbor_put_value(sync_cbuf *b, const sync_value *v)
{
    switch (v->type) {
    case SYNC_NULL:
        return sync_cbor_put_null(b);
    case SYNC_INT:
        return sync_cbor_put_int(b, v->u.i);
    case SYNC_REAL:
        return sync_cbor_put_double(b, v->u.f);
    case SYNC_TEXT:
        return sync_cbor_put_text(b, v->u.b.p, v->u.b.n);
    case SYNC_BLOB:
        return sync_cbor_put_bytes(b, v->u.b.p, v->u.b.n);
    }
    if (b->err == SYNC_OK)
        b->err = SYNC_ERR_INVAL;
    return b->err;
}

/* ==== reader ==== */

/* What one cbor_stream_decode call reports back through the callbacks. */
typedef struct cbor__item {
    sync_ctoken *t;      /* filled by the callback for an accepted item */
    const char *refused; /* NULL, or a description of a well-formed but disallowed item */
} cbor__item;

static void cbor__uint(void *ctx, uint64_t v)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_UINT;
    it->t->u.u = v;
}

/* libcbor hands over the encoded argument n of a negative integer, whose value is -1 - n. */
static void cbor__negint(void *ctx, uint64_t n)
{
    cbor__item *it = ctx;

    if (n > (uint64_t)INT64_MAX) {
        it->refused = "negative integer below INT64_MIN";
        return;
    }
    it->t->type = SYNC_C_NEGINT;
    it->t->u.i = -1 - (int64_t)n;
}

static void cbor__on_uint8(void *ctx, uint8_t v)
{
    cbor__uint(ctx, v);
}

static void cbor__on_uint16(void *ctx, uint16_t v)
{
    cbor__uint(ctx, v);
}

static void cbor__on_uint32(void *ctx, uint32_t v)
{
    cbor__uint(ctx, v);
}

static void cbor__on_uint64(void *ctx, uint64_t v)
{
    cbor__uint(ctx, v);
}

static void cbor__on_negint8(void *ctx, uint8_t v)
{
    cbor__negint(ctx, v);
}

static void cbor__on_negint16(void *ctx, uint16_t v)
{
    cbor__negint(ctx, v);
}

static void cbor__on_negint32(void *ctx, uint32_t v)
{
    cbor__negint(ctx, v);
}

static void cbor__on_negint64(void *ctx, uint64_t v)
{
    cbor__negint(ctx, v);
}

static void cbor__on_bytes(void *ctx, cbor_data p, cbor__len n)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_BYTES;
    it->t->u.s.p = p;
    it->t->u.s.n = (size_t)n; /* n <= the input length, which is a size_t */
}

static void cbor__on_text(void *ctx, cbor_data p, cbor__len n)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_TEXT;
    it->t->u.s.p = p;
    it->t->u.s.n = (size_t)n;
}

/* Collection counts are not bounded by the input length (a 9-byte head may claim 2^64 items);
 * consumers loop item by item and hit the end of the input, so no allocation follows them. */
static void cbor__on_array(void *ctx, cbor__len n)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_ARRAY;
    it->t->u.count = (size_t)n;
}

static void cbor__on_map(void *ctx, cbor__len n)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_MAP;
    it->t->u.count = (size_t)n;
}

static void cbor__on_float(void *ctx, float f)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_FLOAT;
    it->t->u.f = f; /* widening to double is exact */
}

static void cbor__on_double(void *ctx, double f)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_FLOAT;
    it->t->u.f = f;
}

static void cbor__on_bool(void *ctx, bool v)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_BOOL;
    it->t->u.u = v ? 1 : 0;
}

static void cbor__on_null(void *ctx)
{
    cbor__item *it = ctx;

    it->t->type = SYNC_C_NULL;
}

static void cbor__on_indef_bytes(void *ctx)
{
    ((cbor__item *)ctx)->refused = "indefinite-length byte string";
}

static void cbor__on_indef_text(void *ctx)
{
    ((cbor__item *)ctx)->refused = "indefinite-length text string";
}

static void cbor__on_indef_array(void *ctx)
{
    ((cbor__item *)ctx)->refused = "indefinite-length array";
}

static void cbor__on_indef_map(void *ctx)
{
    ((cbor__item *)ctx)->refused = "indefinite-length map";
}

static void cbor__on_tag(void *ctx, uint64_t tag)
{
    (void)tag;
    ((cbor__item *)ctx)->refused = "tag";
}

static void cbor__on_undefined(void *ctx)
{
    ((cbor__item *)ctx)->refused = "undefined";
}

static void cbor__on_break(void *ctx)
{
    ((cbor__item *)ctx)->refused = "break code outside an indefinite-length item";
}

/* Every member is set: cbor_stream_decode calls them without checking for NULL. */
static const struct cbor_callbacks cbor__callbacks = {
    .uint8 = cbor__on_uint8,
    .uint16 = cbor__on_uint16,
    .uint32 = cbor__on_uint32,
    .uint64 = cbor__on_uint64,
    .negint8 = cbor__on_negint8,
    .negint16 = cbor__on_negint16,
    .negint32 = cbor__on_negint32,
    .negint64 = cbor__on_negint64,
    .byte_string_start = cbor__on_indef_bytes,
    .byte_string = cbor__on_bytes,
    .string = cbor__on_text,
    .string_start = cbor__on_indef_text,
    .indef_array_start = cbor__on_indef_array,
    .array_start = cbor__on_array,
    .indef_map_start = cbor__on_indef_map,
    .map_start = cbor__on_map,
    .tag = cbor__on_tag,
    .float2 = cbor__on_float,
    .float4 = cbor__on_float,
    .float8 = cbor__on_double,
    .undefined = cbor__on_undefined,
    .null = cbor__on_null,
    .boolean = cbor__on_bool,
    .indef_break = cbor__on_break,
};

/* Returns the offset of the first byte of s[0..n) that breaks UTF-8 well-formedness as RFC
 * 3629 defines it (no overlong forms, no surrogates, nothing above U+10FFFF), or n if there is
 * none. The second byte's allowed range is what excludes the overlong and surrogate forms. */
static size_t cbor__utf8_bad(const uint8_t *s, size_t n)
{
    size_t i = 0, k, more;
    uint8_t c, lo, hi;

    while (i < n) {
        c = s[i];
        lo = 0x80;
        hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            if (c == 0xe0)
                lo = 0xa0; /* below: overlong */
            else if (c == 0xed)
                hi = 0x9f; /* above: UTF-16 surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            if (c == 0xf0)
                lo = 0x90; /* below: overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above: beyond U+10FFFF */
        } else {
            return i; /* continuation byte, 0xc0/0xc1 (overlong) or 0xf5..0xff */
        }
        if (more > n - i - 1)
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i + 1;
        for (k = 2; k <= more; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return i + k;
        }
        i += more + 1;
    }
    return n;
}

size_t sync_utf8_check(const void *s, size_t n)
{
    return cbor__utf8_bad(s, n);
}

/* A buffer for the empty input, so that a reader never does arithmetic on a NULL pointer. */
static const uint8_t cbor__empty[1];

/* Starts reading buf[0..len); buf may be NULL when len is 0. */
void sync_creader_init(sync_creader *r, const void *buf, size_t len)
{
    if (buf == NULL) {
        buf = cbor__empty;
        len = 0;
    }
    r->start = buf;
    r->p = r->start;
    r->end = r->start + len;
}

/* Reads one item head into *t and moves past it (past the payload too, for strings). On error
 * the reader does not move and *t is unspecified. The message names the item's byte offset. */
int sync_creader_next(sync_creader *r, sync_ctoken *t, char *err, size_t errlen)
{
    size_t at = (size_t)(r->p - r->start);
    cbor__item it = {t, NULL};
    struct cbor_decoder_result res;
    uint8_t ib;
    size_t bad;

    res = cbor_stream_decode(r->p, (size_t)(r->end - r->p), &cbor__callbacks, &it);
    if (res.status == CBOR_DECODER_NEDATA)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                           "truncated CBOR at byte %zu (the input ends at byte %zu)", at,
                           (size_t)(r->end - r->start));
    if (res.status != CBOR_DECODER_FINISHED) {
        /* libcbor gives no reason, but the initial byte tells which rule was broken. */
        ib = r->p[0];
        if (ib >> 5 == 6)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                               "tag (initial byte 0x%02x) at byte %zu is not allowed", ib, at);
        if (ib >> 5 == 7 && (ib & 0x1f) <= 24)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                               "simple value (initial byte 0x%02x) at byte %zu is not allowed", ib,
                               at);
        return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                           "malformed CBOR: reserved initial byte 0x%02x at byte %zu", ib, at);
    }
    if (it.refused != NULL)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "%s at byte %zu is not allowed",
                           it.refused, at);
    if (t->type == SYNC_C_TEXT) {
        bad = cbor__utf8_bad(t->u.s.p, t->u.s.n);
        if (bad != t->u.s.n)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                               "text string at byte %zu is not valid UTF-8 (byte %zu of the "
                               "string is 0x%02x)",
                               at, bad, t->u.s.p[bad]);
    }
    r->p += res.read;
    return SYNC_OK;
}

/* Skips one whole item. max_depth counts container levels: 0 accepts only a scalar, 1 an array
 * or map of scalars, and so on. The recursion is at most max_depth deep, and every item costs
 * at least one input byte, so a head claiming 2^64 elements fails at the end of the input. */
int sync_creader_skip(sync_creader *r, int max_depth, char *err, size_t errlen)
{
    size_t at = (size_t)(r->p - r->start);
    sync_ctoken t;
    size_t i;
    int rc;

    rc = sync_creader_next(r, &t, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    if (t.type != SYNC_C_ARRAY && t.type != SYNC_C_MAP)
        return SYNC_OK;
    if (max_depth <= 0)
        return sync_seterr(err, errlen, SYNC_ERR_DECODE, "%s at byte %zu is nested too deeply",
                           t.type == SYNC_C_MAP ? "map" : "array", at);
    for (i = 0; i < t.u.count; i++) {
        rc = sync_creader_skip(r, max_depth - 1, err, errlen);
        if (rc == SYNC_OK && t.type == SYNC_C_MAP)
            rc = sync_creader_skip(r, max_depth - 1, err, errlen);
        if (rc != SYNC_OK)
            return rc;
    }
    return SYNC_OK;
}

int sync_creader_done(const sync_creader *r)
{
    return r->p >= r->end;
}

/* Names a token type for messages, with its article. */
static const char *cbor__found(sync_ctype t)
{
    switch (t) {
    case SYNC_C_ARRAY:
        return "an array";
    case SYNC_C_MAP:
        return "a map";
    case SYNC_C_BOOL:
        return "a boolean";
    default:
        return "an unexpected item";
    }
}

/* Reads one item as a column value. Text and blob values point into the input. */
int sync_creader_value(sync_creader *r, sync_value *v, char *err, size_t errlen)
{
    size_t at = (size_t)(r->p - r->start);
    sync_ctoken t;
    int rc;

    rc = sync_creader_next(r, &t, err, errlen);
    if (rc != SYNC_OK)
        return rc;
    switch (t.type) {
    case SYNC_C_UINT:
        if (t.u.u > (uint64_t)INT64_MAX)
            return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                               "unsigned integer %" PRIu64 " at byte %zu does not fit a signed "
                               "64-bit integer",
                               t.u.u, at);
        v->type = SYNC_INT;
        v->u.i = (int64_t)t.u.u;
        return SYNC_OK;
    case SYNC_C_NEGINT:
        v->type = SYNC_INT;
        v->u.i = t.u.i;
        return SYNC_OK;
    case SYNC_C_FLOAT:
        v->type = SYNC_REAL;
        v->u.f = t.u.f;
        return SYNC_OK;
    case SYNC_C_TEXT:
    case SYNC_C_BYTES:
        v->type = t.type == SYNC_C_TEXT ? SYNC_TEXT : SYNC_BLOB;
        v->u.b.p = t.u.s.p;
        v->u.b.n = t.u.s.n;
        return SYNC_OK;
    case SYNC_C_NULL:
        v->type = SYNC_NULL;
        return SYNC_OK;
    default:
        return sync_seterr(err, errlen, SYNC_ERR_DECODE,
                           "expected a value (integer, real, text, blob or null) at byte %zu, "
                           "found %s",
                           at, cbor__found(t.type));
    }
}
