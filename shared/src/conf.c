/* conf.c - Mosquitto-style config files and command-line flags (see sync/conf.h). */
#include "sync/conf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sync/err.h"
#include "sync/log.h"

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int sync_conf_parse_file(const char *path, sync_conf_cb cb, void *ctx, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "Error: Unable to open config file %s: %s",
                           path, strerror(errno));
    char line[4096];
    int lineno = 0, rc = SYNC_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = sync_seterr(err, errlen, SYNC_ERR_INVAL, "%s:%d: line too long", path, lineno);
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *key = s;
        while (*s && !isspace((unsigned char)*s))
            s++;
        if (*s)
            *s++ = '\0';
        char *value = trim(s);
        char msg[512];
        rc = cb(ctx, key, value, msg, sizeof msg);
        if (rc != SYNC_OK) {
            sync_seterr(err, errlen, rc, "%s:%d: %s", path, lineno, msg);
            break;
        }
    }
    fclose(f);
    return rc;
}

/* Index of word `w` (length n) in the space-separated list, or -1. */
static int flag_index(const char *list, const char *w, size_t n)
{
    int i = 0;
    for (const char *p = list; p && *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if (e > p) {
            if ((size_t)(e - p) == n && strncmp(p, w, n) == 0)
                return i;
            i++;
        }
        p = e;
    }
    return -1;
}

int sync_conf_parse_args(int argc, char **argv, sync_args *a, sync_conf_cb cb, void *ctx, char *err,
                         size_t errlen)
{
    a->help = a->version = 0;
    a->set = 0;
    /* Pass 1: the config file, so that flags given anywhere override it. */
    for (int i = 1; i < argc; i++) {
        const char *file = NULL;
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Error: %s needs a file name",
                                   argv[i]);
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
        if (file) {
            int rc = sync_conf_parse_file(file, cb, ctx, err, errlen);
            if (rc != SYNC_OK)
                return rc;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--config=", 9) == 0)
            continue;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            a->help = 1;
            continue;
        }
        if (strcmp(arg, "--version") == 0) {
            a->version = 1;
            continue;
        }
        char msg[512];
        if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            int rc = cb(ctx, "log_level", "debug", msg, sizeof msg);
            if (rc != SYNC_OK)
                return sync_seterr(err, errlen, rc, "Error: %s", msg);
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Error: unexpected argument '%s' (see --help)", arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int fi = flag_index(a->flags, name, nlen);
        if (fi >= 0 && !eq) {
            a->set |= 1u << fi;
            continue;
        }
        char key[128];
        if (nlen >= sizeof key)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Error: unknown option '%s'", arg);
        for (size_t k = 0; k < nlen; k++)
            key[k] = name[k] == '-' ? '_' : name[k];
        key[nlen] = '\0';
        const char *value;
        if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc)
                return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Error: %s needs a value", arg);
            value = argv[++i];
        }
        int rc = cb(ctx, key, value, msg, sizeof msg);
        if (rc != SYNC_OK)
            return sync_seterr(err, errlen, rc, "Error: %s", msg);
    }
    return SYNC_OK;
}

int sync_conf_bool(const char *key, const char *value, int *out, char *err, size_t errlen)
{
    if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes") ||
        !strcmp(value, "on")) {
        *out = 1;
        return SYNC_OK;
    }
    if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no") ||
        !strcmp(value, "off")) {
        *out = 0;
        return SYNC_OK;
    }
    return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Invalid %s value (%s): expected true or false",
                       key, value);
}

int sync_conf_long(const char *key, const char *value, long min, long max, long *out, char *err,
                   size_t errlen)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end != '\0')
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Invalid %s value (%s): not an integer",
                           key, value);
    if (v < min || v > max)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid %s value (%s): must be between %ld and %ld", key, value, min,
                           max);
    *out = v;
    return SYNC_OK;
}

int sync_conf_double(const char *key, const char *value, double min, double max, double *out,
                     char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end != '\0' || !isfinite(v))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Invalid %s value (%s): not a number", key,
                           value);
    if (v < min || v > max)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid %s value (%s): must be between %g and %g", key, value, min,
                           max);
    *out = v;
    return SYNC_OK;
}

int sync_conf_str(char **dst, const char *value, char *err, size_t errlen)
{
    char *copy = strdup(value);
    if (!copy)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    free(*dst);
    *dst = copy;
    return SYNC_OK;
}

int sync_conf_read_secret(const char *path, char *buf, size_t n, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot open password file %s: %s", path,
                           strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH)) {
        fclose(f);
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "password file %s is readable by everyone: chmod 600 it", path);
    }
    if (!fgets(buf, (int)n, f)) {
        fclose(f);
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "password file %s is empty", path);
    }
    size_t got = strlen(buf);
    int next = got > 0 && buf[got - 1] == '\n' ? '\n' : fgetc(f);
    int whole = next == EOF || next == '\n' || next == '\r';
    fclose(f);
    if (!whole)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "password in %s is longer than %zu bytes",
                           path, n - 2);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0')
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "password file %s is empty", path);
    return SYNC_OK;
}

int sync_conf_set(const sync_opt *opts, size_t n, void *obj, const char *prog, const char *key,
                  const char *value, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const sync_opt *o = &opts[i];
        if (strcmp(key, o->key) != 0)
            continue;
        void *field = (char *)obj + o->off;
        switch (o->type) {
        case SYNC_OPT_STR:
            return sync_conf_str((char **)field, value, err, errlen);
        case SYNC_OPT_LONG:
            return sync_conf_long(key, value, o->min, o->max, (long *)field, err, errlen);
        case SYNC_OPT_BOOL:
            return sync_conf_bool(key, value, (int *)field, err, errlen);
        case SYNC_OPT_LOGLEVEL: {
            sync_log_level l;
            if (sync_log_parse_level(value, &l) != 0)
                return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                                   "Invalid %s value (%s): debug, info, notice, warning or error",
                                   key, value);
            *(int *)field = (int)l;
            return SYNC_OK;
        }
        case SYNC_OPT_LOGDEST:
            if (strcmp(value, "stderr") != 0 && strcmp(value, "syslog") != 0)
                return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                                   "Invalid %s value (%s): stderr or syslog", key, value);
            *(int *)field = strcmp(value, "syslog") == 0;
            return SYNC_OK;
        }
    }
    return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Unknown option '%s' (see %s --help)", key,
                       prog);
}

void sync_conf_free(const sync_opt *opts, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].type != SYNC_OPT_STR)
            continue;
        char **field = (char **)((char *)obj + opts[i].off);
        free(*field);
        *field = NULL;
    }
}
