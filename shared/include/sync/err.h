/* err.h - the one error enum of the project and its messages.
 *
 * Every fallible function returns an int that is SYNC_OK (0) or a negative sync_err.
 * Where a person will read the cause, the function also fills a caller-provided message
 * buffer (char *err, size_t errlen) with a sentence naming the bad value.
 */
#ifndef SYNC_ERR_H
#define SYNC_ERR_H

#include <stddef.h>

typedef enum sync_err {
    SYNC_OK = 0,
    SYNC_ERR_NOMEM = -1,    /* allocation failed */
    SYNC_ERR_INVAL = -2,    /* bad argument or bad value in a config/schema file */
    SYNC_ERR_IO = -3,       /* file or socket error */
    SYNC_ERR_DECODE = -4,   /* CBOR is malformed, truncated or of the wrong shape */
    SYNC_ERR_TOOBIG = -5,   /* a value, record or batch exceeds a configured limit */
    SYNC_ERR_SCHEMA = -6,   /* unknown table/column, wrong type, schema mismatch */
    SYNC_ERR_DB = -7,       /* SQLite (or other store) error */
    SYNC_ERR_MQTT = -8,     /* broker connection or Paho error */
    SYNC_ERR_NOSPACE = -9,  /* an output buffer is too small */
    SYNC_ERR_TOPIC = -10,   /* topic does not match the expected shape */
    SYNC_ERR_DEVICE = -11,  /* record's device/tenant does not match the topic */
    SYNC_ERR_TIMEOUT = -12, /* an operation did not finish in time */
    SYNC_ERR_STATE = -13,   /* call not valid in the object's current state */
    SYNC_ERR_BUSY = -14,    /* a window or queue is full right now: try again shortly */
    SYNC_ERR_NOTFOUND = -15, /* the named object (a conflict, a device) does not exist */
} sync_err;

/* Returns a static, human-readable description of a sync_err (never NULL). */
const char *sync_strerror(int err);

/* Writes a printf-style message into err (if err != NULL and errlen > 0) and returns code.
 * Lets error paths be written as `return sync_seterr(err, errlen, SYNC_ERR_INVAL, "...", x);`. */
int sync_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
