/* jsonread.h - a small, bounded JSON reader for messages other programs wrote.
 *
 * syncctl reads with it the retained JSON that devices publish (their state) and that cloud
 * consumers publish (their statistics); syncedge reads the cloud's policy for the device. Such
 * input is not trusted: whatever bytes arrive, parsing ends with a document or an error
 * message, never a crash, an unbounded allocation or an unbounded recursion. The limits below
 * bound the input, the nesting and the number of values.
 *
 * The grammar is RFC 8259's, strictly: one value (with surrounding whitespace), objects,
 * arrays, strings with every escape (\uXXXX surrogate pairs become UTF-8; a lone surrogate
 * becomes U+FFFD), numbers, true, false, null. Raw control characters inside strings, trailing
 * commas, comments, leading zeros and anything after the value are errors. Bytes that are not
 * valid UTF-8 are passed through as they are: whoever prints a string decides what is safe.
 *
 * A document is one allocation family owned by the caller (sync_jdoc_parse / sync_jdoc_free);
 * every sync_jval pointer and string handed out points into it and lives as long as it does.
 * Every accessor accepts NULL (and a value of the wrong type) and then answers "absent", so
 * lookups chain: sync_jval_uint(sync_jval_get(sync_jval_get(root, "pull"), "done"), &n).
 */
#ifndef SYNC_JSONREAD_H
#define SYNC_JSONREAD_H

#include <stddef.h>
#include <stdint.h>

#define SYNC_JSON_MAX_INPUT (1024 * 1024) /* bytes of text accepted */
#define SYNC_JSON_MAX_DEPTH 32            /* arrays and objects nested in each other */
#define SYNC_JSON_MAX_NODES 65536         /* values (members and elements included) */
#define SYNC_JSON_MAX_NUMBER 64           /* characters of one number */

typedef enum sync_jtype {
    SYNC_JNULL,
    SYNC_JBOOL,
    SYNC_JNUMBER,
    SYNC_JSTRING,
    SYNC_JARRAY,
    SYNC_JOBJECT,
} sync_jtype;

typedef struct sync_jval sync_jval; /* one value of a document */
typedef struct sync_jdoc sync_jdoc; /* a parsed document */

/* Parses len bytes of text (need not be NUL-terminated). On success *out holds the document
 * (the caller frees it with sync_jdoc_free) and SYNC_OK is returned. On error *out is NULL,
 * err says what is wrong and at which byte, and SYNC_ERR_DECODE (malformed), SYNC_ERR_TOOBIG
 * (a limit) or SYNC_ERR_NOMEM is returned. */
int sync_jdoc_parse(const char *text, size_t len, sync_jdoc **out, char *err, size_t errlen);

/* Frees a document and everything in it. NULL is a no-op. */
void sync_jdoc_free(sync_jdoc *d);

/* How many lone surrogates d's strings and keys hold, each read as U+FFFD (0 for NULL). The
 * text is then not what its writer meant: a reader that takes strings as names (syncedge's
 * policy) refuses such a document. */
size_t sync_jdoc_replaced(const sync_jdoc *d);

/* The document's top-level value (never NULL for a parsed document). */
const sync_jval *sync_jdoc_root(const sync_jdoc *d);

/* The type of v; SYNC_JNULL for a NULL v. */
sync_jtype sync_jval_type(const sync_jval *v);

/* The value of member key in object obj (the first one, if the key repeats), or NULL when obj
 * is no object or has no such member. Keys compare byte for byte. */
const sync_jval *sync_jval_get(const sync_jval *obj, const char *key);

/* Iteration: the first element or member of an array or object (NULL when empty or v is
 * neither), and the one after v (NULL after the last). Members come in the text's order,
 * repeated keys included. */
const sync_jval *sync_jval_first(const sync_jval *v);
const sync_jval *sync_jval_next(const sync_jval *v);

/* Elements of an array or members of an object; 0 for anything else. */
size_t sync_jval_count(const sync_jval *v);

/* The key of v when v is a member of an object (NUL-terminated; *len, if given, gets its
 * length, as a key may hold \u0000), else NULL. */
const char *sync_jval_key(const sync_jval *v, size_t *len);

/* Each returns 1 and sets *out when v is of that kind, else returns 0 and leaves *out alone.
 * sync_jval_double takes any number (one too large for a double reads as +-HUGE_VAL).
 * sync_jval_uint takes a number that is a non-negative integer: written as one (up to
 * UINT64_MAX, exactly), or of integral value below 2^53 (1e3, 12.0, -0).
 * sync_jval_int is stricter, for identifiers and keys that must be exact: it takes only a
 * number written as an integer (digits with an optional '-', no fraction, no exponent) from
 * INT64_MIN to INT64_MAX; 1e3, 12.0 and 2^63 are refused. */
int sync_jval_bool(const sync_jval *v, int *out);
int sync_jval_double(const sync_jval *v, double *out);
int sync_jval_uint(const sync_jval *v, uint64_t *out);
int sync_jval_int(const sync_jval *v, int64_t *out);

/* The decoded bytes of a string (NUL-terminated; *len, if given, gets the length, as a string
 * may hold \u0000), or NULL when v is no string. */
const char *sync_jval_str(const sync_jval *v, size_t *len);

#endif
