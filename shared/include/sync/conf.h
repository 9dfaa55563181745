/* conf.h - configuration the way Mosquitto does it: a plain file of `key value` lines
 * (`#` comments, blank lines ignored) plus command-line flags that override the file.
 * Every key `some_key` is also the flag `--some-key VALUE` (or `--some-key=VALUE`).
 *
 * The parser knows no keys itself: it hands each (key, value) to the program's callback,
 * which uses the typed helpers below and returns SYNC_OK or an error with a message.
 */
#ifndef SYNC_CONF_H
#define SYNC_CONF_H

#include <stddef.h>

typedef int (*sync_conf_cb)(void *ctx, const char *key, const char *value, char *err,
                            size_t errlen);

/* Parses a config file line by line. Errors are prefixed with "PATH:LINE: ". */
int sync_conf_parse_file(const char *path, sync_conf_cb cb, void *ctx, char *err, size_t errlen);

/* What sync_conf_parse_args found besides key/value options. */
typedef struct sync_args {
    int help;          /* -h / --help */
    int version;       /* --version */
    const char *flags; /* in: space-separated boolean flags the program accepts, e.g. "checksum" */
    unsigned set;      /* out: bit i set when the i-th word of flags was given */
} sync_args;

/* Parses argv: first loads -c/--config FILE if given, then applies every --key value pair
 * (so flags override the file), and -v/--verbose as log_level debug. Unknown keys are reported
 * by the callback. Returns SYNC_OK or an error with a message. */
int sync_conf_parse_args(int argc, char **argv, sync_args *a, sync_conf_cb cb, void *ctx, char *err,
                         size_t errlen);

/* Typed helpers: each returns SYNC_OK or SYNC_ERR_INVAL with "Invalid KEY value (VALUE): why". */
int sync_conf_bool(const char *key, const char *value, int *out, char *err, size_t errlen);
int sync_conf_long(const char *key, const char *value, long min, long max, long *out, char *err,
                   size_t errlen);
int sync_conf_double(const char *key, const char *value, double min, double max, double *out,
                     char *err, size_t errlen);
/* Replaces *dst (freed) with a copy of value. */
int sync_conf_str(char **dst, const char *value, char *err, size_t errlen);

/* Reads the first line of a secret file (a password) into buf without its newline. Refuses a
 * file that is readable by other users with a warning-free error, so secrets stay 0600/0640. */
int sync_conf_read_secret(const char *path, char *buf, size_t n, char *err, size_t errlen);

#endif
