/* answer.h - synccloud's answers to administrators' requests: asking, decoding, printing.
 *
 * An answer is a CBOR map with "ok" (bool) and, when false, "error" (text) (docs/protocol.md
 * "Administration"). It comes from synccloud through the broker's ACL, so it is decoded into a
 * libcbor tree (cbor_load), which the caller frees with cbor_decref.
 */
#ifndef CTL_ANSWER_H
#define CTL_ANSWER_H

#include <cbor.h>
#include <stdint.h>
#include <stdio.h>

#include "ctl.h"
#include "sync/cbor.h"

/* Sends req (freed here, also on error) to synccloud, waits up to the configured timeout and
 * decodes the answer. Returns its root when it says ok, or NULL after printing why not (the
 * broker or synccloud did not answer, or synccloud refused: its error is printed). */
cbor_item_t *ctl_ask(const ctl_ctx *ctx, sync_cbuf *req);

/* Decodes an answer's n bytes. Returns the root when it says ok, or NULL after printing why
 * not. */
cbor_item_t *ctl_answer_decode(const ctl_ctx *ctx, const uint8_t *a, size_t n);

/* The value of text key k in map m, or NULL (also when m is NULL or no map). */
cbor_item_t *ctl_cbor_get(cbor_item_t *m, const char *k);

/* Sets *out and returns 1 if it is an unsigned integer; else returns 0. */
int ctl_cbor_uint(cbor_item_t *it, uint64_t *out);

/* Writes item as JSON on f (blobs as "x'HEX'", as in the events); nesting past 32 levels is
 * written as null. */
void ctl_cbor_json(FILE *f, cbor_item_t *it);

/* Writes n bytes of text as a JSON string on f. */
void ctl_write_json_string(FILE *f, const unsigned char *s, size_t n);

#endif
