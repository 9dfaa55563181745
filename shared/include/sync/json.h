/* json.h - a tiny JSON writer into a caller's buffer, for events and status messages that
 * people read with mosquitto_sub. Output is truncated (never overflowed) when the buffer is
 * too small; sync_json_ok() tells whether everything fit.
 *
 * Text that is not valid UTF-8 has each broken byte replaced by U+FFFD.
 * Values render as: integers as numbers, reals with the fewest digits (15..17) that read back
 * exactly (non-finite as null), text as an escaped string, blobs as a string "x'HEX'" (the SQL
 * literal), NULL as null.
 */
#ifndef SYNC_JSON_H
#define SYNC_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "sync/value.h"

typedef struct sync_json {
    char *buf;
    size_t cap, len;
    int overflow;
    int need_comma; /* inside an object: a member was written */
} sync_json;

void sync_json_init(sync_json *j, char *buf, size_t cap);
void sync_json_begin(sync_json *j);                /* { */
void sync_json_end(sync_json *j);                  /* } */
void sync_json_key(sync_json *j, const char *key); /* "key": (with comma as needed) */
void sync_json_str(sync_json *j, const char *s, size_t n);
void sync_json_cstr(sync_json *j, const char *s);
void sync_json_u64(sync_json *j, uint64_t v);
void sync_json_i64(sync_json *j, int64_t v);
void sync_json_bool(sync_json *j, int v);
void sync_json_value(sync_json *j, const sync_value *v);
void sync_json_raw(sync_json *j, const char *s);
int sync_json_ok(const sync_json *j);

#endif
