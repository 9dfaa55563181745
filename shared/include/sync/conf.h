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

/* A program's options as a table: each key names a field of the program's config struct. */
typedef enum sync_opt_type {
    SYNC_OPT_STR,      /* char *, owned (replaced on each set, freed by sync_conf_free) */
    SYNC_OPT_LONG,     /* long within [min, max] */
    SYNC_OPT_BOOL,     /* int 0/1 from true/false/yes/no/on/off/1/0 */
    SYNC_OPT_LOGLEVEL, /* int: a sync_log_level from debug|info|notice|warning|error */
    SYNC_OPT_LOGDEST,  /* int: 1 for syslog, 0 for stderr */
} sync_opt_type;

typedef struct sync_opt {
    const char *key;
    sync_opt_type type;
    size_t off;    /* offsetof the field in the config struct */
    long min, max; /* SYNC_OPT_LONG bounds */
} sync_opt;

/* Sets option `key` of the struct at obj from value, as the table says. Returns SYNC_OK, or
 * SYNC_ERR_INVAL with "Invalid KEY value (VALUE): why" or "Unknown option 'KEY' (see PROG
 * --help)". */
int sync_conf_set(const sync_opt *opts, size_t n, void *obj, const char *prog, const char *key,
                  const char *value, char *err, size_t errlen);
/* Frees every SYNC_OPT_STR field of the struct at obj and sets it to NULL. */
void sync_conf_free(const sync_opt *opts, size_t n, void *obj);

/* Reads the first line of a secret file (a password) into buf without its newline. Refuses a
 * file that is readable by other users with a warning-free error, so secrets stay 0600/0640. */
int sync_conf_read_secret(const char *path, char *buf, size_t n, char *err, size_t errlen);

#endif
