/* out.h - printing what syncctl read from others: table cells made safe for a terminal,
 * ages and rates for people, and JSON documents written with the shared writer (sync/json.h).
 *
 * Text that devices wrote may hold anything, including terminal escape sequences. Every cell
 * goes through ctl_cell(), which prints only printable characters (others become '?').
 */
#ifndef CTL_OUT_H
#define CTL_OUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sync/json.h"

/* Copies n bytes of s into buf (size cap >= 1, NUL-terminated), cut to what fits: printable
 * ASCII and valid UTF-8 characters are kept, every other byte (control characters, escape
 * sequences' ESC, broken UTF-8) and the characters a terminal acts on (C1 controls,
 * bidirectional overrides) become '?'. Returns buf. */
char *ctl_safe(char *buf, size_t cap, const char *s, size_t n);

/* Prints s made safe (ctl_safe) as a cell of width characters followed by a space; a longer
 * value is cut with '~' as its last character. width 0: printed whole, then a newline (the
 * last column). Wide (CJK) characters count as one. */
void ctl_cell(FILE *f, const char *s, int width);

/* Now, in milliseconds since the epoch. */
uint64_t ctl_now_ms(void);

/* Writes how long ago then_ms was, seen at now_ms, into buf: "4s ago", "12m ago", "3h ago",
 * "5d ago" ("0s ago" for a time in the future: clocks differ). Returns buf. */
char *ctl_age(char *buf, size_t cap, uint64_t then_ms, uint64_t now_ms);

/* Writes a rate for people into buf: "850", "91k", "1.2M". Returns buf. */
char *ctl_rate(char *buf, size_t cap, double per_s);

/* Writes one JSON value with the shared writer: write(j, arg) is called on a buffer of
 * growing size until everything fits (up to 64 MiB), then the text goes to f. Returns 0, or
 * -1 when it does not fit or memory runs out (nothing is written then). */
int ctl_emit_json(FILE *f, void (*write)(sync_json *j, void *arg), void *arg);

/* JSON helpers on top of sync/json.h: null, a real number (null when not finite), and a
 * number or null for an absent (CTL_NONE) unsigned value. */
void ctl_write_null(sync_json *j);
void ctl_write_real(sync_json *j, double v);
void ctl_write_uint_or_null(sync_json *j, uint64_t v);

#endif
