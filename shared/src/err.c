/* err.c - descriptions of the sync_err codes and the helper that fills message buffers.
 *
 * Promise: sync_strerror never returns NULL, and sync_seterr never writes past errlen and
 * always leaves a NUL-terminated message when it writes at all.
 */
#include <stdarg.h>
#include <stdio.h>

#include "sync/err.h"

/* Returns a static description of err. Codes this build does not know (including positive
 * values, which no function of the project returns) get a generic text, never NULL. */
const char *sync_strerror(int err)
{
    switch (err) {
    case SYNC_OK:
        return "success";
    case SYNC_ERR_NOMEM:
        return "out of memory";
    case SYNC_ERR_INVAL:
        return "invalid argument or value";
    case SYNC_ERR_IO:
        return "input/output error";
    case SYNC_ERR_DECODE:
        return "malformed or unexpected message";
    case SYNC_ERR_TOOBIG:
        return "size limit exceeded";
    case SYNC_ERR_SCHEMA:
        return "schema mismatch";
    case SYNC_ERR_DB:
        return "database error";
    case SYNC_ERR_MQTT:
        return "MQTT error";
    case SYNC_ERR_NOSPACE:
        return "output buffer too small";
    case SYNC_ERR_TOPIC:
        return "unexpected topic";
    case SYNC_ERR_DEVICE:
        return "device does not match the topic";
    case SYNC_ERR_TIMEOUT:
        return "timed out";
    case SYNC_ERR_STATE:
        return "operation not valid in the current state";
    case SYNC_ERR_BUSY:
        return "busy: try again shortly";
    case SYNC_ERR_NOTFOUND:
        return "not found";
    }
    return "unknown error";
}

/* Formats the message into err when there is room for at least the terminating NUL; a long
 * message is truncated, never overflowed. Returns code unchanged so that error paths stay one
 * line long. */
int sync_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return code;
    va_start(ap, fmt);
    if (vsnprintf(err, errlen, fmt, ap) < 0)
        err[0] = '\0'; /* an encoding error leaves the buffer unspecified */
    va_end(ap);
    return code;
}
