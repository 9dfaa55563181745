/* jsonread.h - a small, bounded JSON reader for messages other programs wrote.
 *
 * syncctl reads the retained JSON that devices publish (their state) and that cloud consumers
 * publish (their statistics). A device is not trusted: whatever bytes it sends, parsing ends
 * with a document or an error message, never a crash, an unbounded allocation or an unbounded
 * recursion. The limits below bound the input, the nesting and the number of values.
 *
 * The grammar is RFC 8259's, strictly: one value (with surrounding whitespace), objects,
 * arrays, strings with every escape (\uXXXX surrogate pairs become UTF-8; a lone surrogate
 * becomes U+FFFD), numbers, true, false, null. Raw control characters inside strings, trailing
 * commas, comments, leading zeros and anything after the value are errors. Bytes that are not
 * valid UTF-8 are passed through as they are: whoever prints a string decides what is safe.
 *
 * A document is one allocation family owned by the caller (ctl_json_parse / ctl_json_free);
 * every ctl_json pointer and string handed out points into it and lives as long as it does.
 * Every accessor accepts NULL (and a value of the wrong type) and then answers "absent", so
 * lookups chain: ctl_json_uint(ctl_json_get(ctl_json_get(root, "pull"), "done"), &n).
 */
#ifndef CTL_JSONREAD_H
#define CTL_JSONREAD_H

#include <stddef.h>
#include <stdint.h>

#define CTL_JSON_MAX_INPUT (1024 * 1024) /* bytes of text accepted */
#define CTL_JSON_MAX_DEPTH 32            /* arrays and objects nested in each other */
#define CTL_JSON_MAX_NODES 65536         /* values (members and elements included) */
#define CTL_JSON_MAX_NUMBER 64           /* characters of one number */

typedef enum ctl_json_type {
    CTL_JSON_NULL,
    CTL_JSON_BOOL,
    CTL_JSON_NUMBER,
    CTL_JSON_STRING,
    CTL_JSON_ARRAY,
    CTL_JSON_OBJECT,
} ctl_json_type;

typedef struct ctl_json ctl_json;         /* one value of a document */
typedef struct ctl_json_doc ctl_json_doc; /* a parsed document */

/* Parses len bytes of text (need not be NUL-terminated). On success *out holds the document
 * (the caller frees it with ctl_json_free) and SYNC_OK is returned. On error *out is NULL, err
 * says what is wrong and at which byte, and SYNC_ERR_DECODE (malformed), SYNC_ERR_TOOBIG (a
 * limit) or SYNC_ERR_NOMEM is returned. */
int ctl_json_parse(const char *text, size_t len, ctl_json_doc **out, char *err, size_t errlen);

/* Frees a document and everything in it. NULL is a no-op. */
void ctl_json_free(ctl_json_doc *d);

/* The document's top-level value (never NULL for a parsed document). */
const ctl_json *ctl_json_root(const ctl_json_doc *d);

/* The type of v; CTL_JSON_NULL for a NULL v. */
ctl_json_type ctl_json_typeof(const ctl_json *v);

/* The value of member key in object obj (the first one, if the key repeats), or NULL when obj
 * is no object or has no such member. Keys compare byte for byte. */
const ctl_json *ctl_json_get(const ctl_json *obj, const char *key);

/* Iteration: the first element or member of an array or object (NULL when empty or v is
 * neither), and the one after v (NULL after the last). */
const ctl_json *ctl_json_first(const ctl_json *v);
const ctl_json *ctl_json_next(const ctl_json *v);

/* Elements of an array or members of an object; 0 for anything else. */
size_t ctl_json_count(const ctl_json *v);

/* The key of v when v is a member of an object (NUL-terminated; *len, if given, gets its
 * length, as a key may hold \u0000), else NULL. */
const char *ctl_json_key(const ctl_json *v, size_t *len);

/* Each returns 1 and sets *out when v is of that kind, else returns 0 and leaves *out alone.
 * ctl_json_uint takes a number that is a non-negative integer: written as one (up to
 * UINT64_MAX, exactly), or of integral value below 2^53 (1e3, 12.0, -0). */
int ctl_json_bool(const ctl_json *v, int *out);
int ctl_json_number(const ctl_json *v, double *out);
int ctl_json_uint(const ctl_json *v, uint64_t *out);

/* The decoded bytes of a string (NUL-terminated; *len, if given, gets the length, as a string
 * may hold \u0000), or NULL when v is no string. */
const char *ctl_json_string(const ctl_json *v, size_t *len);

#endif
