/* cbor.h - the project's CBOR primitives: an append-only writer over a growable buffer
 * (encoding through libcbor's cbor_encode_* functions) and a strict, allocation-free pull
 * reader (decoding through libcbor's cbor_stream_decode, one data item per call).
 *
 * The reader accepts only what our protocol uses: unsigned and negative integers that fit
 * int64/uint64, definite-length byte and text strings, definite-length arrays and maps,
 * false/true/null, and half/single/double floats. Indefinite lengths, tags, undefined and
 * other simple values are rejected as SYNC_ERR_DECODE. Strings returned by the reader point
 * into the input buffer (no copy).
 */
#ifndef SYNC_CBOR_H
#define SYNC_CBOR_H

#include <stddef.h>
#include <stdint.h>

#include "sync/value.h"

/* ---- writer ---- */

typedef struct sync_cbuf {
    uint8_t *data; /* owned; NULL until the first write */
    size_t len;    /* bytes written */
    size_t cap;    /* bytes allocated */
    size_t max;    /* hard limit on len (0 = unlimited); beyond it writes fail with TOOBIG */
    int err;       /* first error (sticky): SYNC_OK, SYNC_ERR_NOMEM, SYNC_ERR_TOOBIG, or
                      SYNC_ERR_INVAL when an encoder was given something it cannot write */
} sync_cbuf;

/* Initialises an empty buffer; max = 0 means no limit. Never fails. */
void sync_cbuf_init(sync_cbuf *b, size_t max);
/* Releases the buffer's memory; the struct may be re-initialised afterwards. */
void sync_cbuf_free(sync_cbuf *b);
/* Forgets the content but keeps the allocation (and clears err), for reuse on a hot path. */
void sync_cbuf_reset(sync_cbuf *b);

/* Each append returns SYNC_OK or the sticky error; after an error the buffer content is
 * undefined and all further appends fail, so a caller may check only once, at the end. */
int sync_cbor_put_uint(sync_cbuf *b, uint64_t v);
int sync_cbor_put_int(sync_cbuf *b, int64_t v);
int sync_cbor_put_double(sync_cbuf *b, double v); /* smallest float width that is exact */
int sync_cbor_put_text(sync_cbuf *b, const void *s, size_t n);
int sync_cbor_put_cstr(sync_cbuf *b, const char *s);
int sync_cbor_put_bytes(sync_cbuf *b, const void *p, size_t n);
int sync_cbor_put_bool(sync_cbuf *b, int v);
/* Appends n bytes that already are one encoded data item (the caller vouches for them). */
int sync_cbor_put_raw(sync_cbuf *b, const void *p, size_t n);
int sync_cbor_put_null(sync_cbuf *b);
int sync_cbor_put_array(sync_cbuf *b, size_t count);
int sync_cbor_put_map(sync_cbuf *b, size_t count);
/* Appends a sync_value as the matching CBOR type. */
int sync_cbor_put_value(sync_cbuf *b, const sync_value *v);

/* Offset of the first byte of s[0..n) that breaks UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or n when all of it is well-formed. */
size_t sync_utf8_check(const void *s, size_t n);

/* ---- reader ---- */

typedef enum sync_ctype {
    SYNC_C_UINT,   /* u.u */
    SYNC_C_NEGINT, /* u.i, always < 0 and representable as int64 */
    SYNC_C_BYTES,  /* u.s */
    SYNC_C_TEXT,   /* u.s */
    SYNC_C_ARRAY,  /* u.count items follow */
    SYNC_C_MAP,    /* u.count key/value pairs follow */
    SYNC_C_BOOL,   /* u.u is 0 or 1 */
    SYNC_C_NULL,
    SYNC_C_FLOAT, /* u.f */
} sync_ctype;

typedef struct sync_ctoken {
    sync_ctype type;
    union {
        uint64_t u;
        int64_t i;
        double f;
        size_t count;
        struct {
            const uint8_t *p;
            size_t n;
        } s;
    } u;
} sync_ctoken;

typedef struct sync_creader {
    const uint8_t *p; /* next unread byte */
    const uint8_t *end;
    const uint8_t *start; /* for error offsets */
} sync_creader;

/* Starts reading buf[0..len). The reader borrows buf. */
void sync_creader_init(sync_creader *r, const void *buf, size_t len);

/* Reads the next data item's head into *t. Returns SYNC_OK, or SYNC_ERR_DECODE for
 * truncated input or an item type the protocol does not allow (message in err). */
int sync_creader_next(sync_creader *r, sync_ctoken *t, char *err, size_t errlen);

/* Skips one complete data item (recursively), refusing nesting deeper than max_depth. */
int sync_creader_skip(sync_creader *r, int max_depth, char *err, size_t errlen);

/* Nonzero when the whole input has been consumed. */
int sync_creader_done(const sync_creader *r);

/* Reads one token and converts it to a sync_value (uint/negint -> INT (uint > INT64_MAX is an
 * error), float -> REAL, text -> TEXT, bytes -> BLOB, null -> NULL). Arrays, maps and bools
 * are SYNC_ERR_DECODE. */
int sync_creader_value(sync_creader *r, sync_value *v, char *err, size_t errlen);

#endif
